//! `hudd bench assign`: the unsafe set's cost beside the heatmaps alone, and sharded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::heatmaps::{self, HeatmapOptions, HeatmapSet, Layers};
use hudd_core::progress::Silent;
use hudd_core::run::RunDir;

/// Times `hudd assign` on a run's improvement images beside `hudd heatmaps` of the same images at
/// the same one layer (the run's best layer, preset and start rule), then the same assignment in N
/// shards run at once as separate processes (`--shard I/N`, cores split between them) plus
/// `hudd merge`. Works on a scratch copy of the run (run.json, clusters.json, heatmaps/): the run
/// itself is not changed. Prints seconds, images/s and peak resident memory per stage.
#[derive(Debug, Args)]
pub struct AssignBench {
    /// The run folder (as `hudd analyze` writes it).
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Folder of improvement images (default: the run's improvement split).
    #[arg(long, value_name = "DIR")]
    improvement: Option<PathBuf>,
    /// Shards to try besides the unsharded run (0: none).
    #[arg(long, value_delimiter = ',', default_values_t = [2usize])]
    shards: Vec<usize>,
    /// Timed runs per stage (the median is printed).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
}

/// Peak resident memory since the last reset (Linux: VmHWM), in GiB.
fn peak_gib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0 / 1024.0)
}

/// Resets the peak to the current resident memory (Linux ≥ 4.0; elsewhere the peak is the
/// process's).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let e = e?;
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))
                .with_context(|| format!("cannot copy {}", e.path().display()))?;
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(a: AssignBench) -> Result<()> {
    let source = RunDir::new(&a.run);
    let scratch = std::env::temp_dir().join(format!("hudd-bench-assign-{}", std::process::id()));
    let run = RunDir::new(&scratch);
    let result = bench(&a, &source, &run);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn bench(a: &AssignBench, source: &RunDir, run: &RunDir) -> Result<()> {
    for f in [source.run_json(), source.clusters_json()] {
        let to = run.root().join(f.file_name().context("a file name")?);
        std::fs::create_dir_all(run.root())?;
        std::fs::copy(&f, &to).with_context(|| format!("cannot copy {}", f.display()))?;
    }
    copy_dir(&source.heatmaps(), &run.heatmaps())?;
    let (record, config, model) = hudd_core::assign::run_model(run, None)?;
    let (dir, images, _) = hudd_core::assign::improvement_images(&record, &config, a.improvement.as_deref())?;
    let improvement = a.improvement.clone().unwrap_or_else(|| dir.clone());
    let spec = config.input_spec(model.info())?;
    let output = &model.info().outputs[config.task.output_index(model.info())?].name;
    let clusters = hudd_core::cluster::report::ClustersReport::read(run)?;
    let best = clusters.best_layer.clone().context("the run has no best layer")?;
    let set = HeatmapSet::open(&run.heatmaps())?;
    let explainer = hudd_core::relevance::Explainer::new(&model, &spec.domain(), output, set.index.preset)?;
    let options = HeatmapOptions {
        preset: set.index.preset,
        layers: Layers::Names(vec![best.clone()]),
        start: set.index.start.parse().map_err(anyhow::Error::msg)?,
        batch_size: config.run.batch_size,
        features: set.index.features,
        dtype: set.index.dtype,
    };
    let cores = rayon::current_num_threads();
    println!(
        "{} improvement images at layer {best}, batch {}, {cores} threads, {} run(s) per stage",
        images.len(),
        config.run.batch_size,
        a.repeat
    );
    println!("{:<28} {:>10} {:>10} {:>12}", "stage", "median_s", "images/s", "peak_GiB");
    let line = |stage: &str, s: f64, peak: Option<f64>| {
        let peak = peak.map(|g| format!("{g:.2}")).unwrap_or_else(|| "-".into());
        println!("{stage:<28} {s:>10.2} {:>10.1} {peak:>12}", images.len() as f64 / s);
    };

    let h_out = run.root().join("bench-heatmaps");
    let mut times = Vec::new();
    reset_peak();
    for _ in 0..a.repeat {
        let t = Instant::now();
        heatmaps::compute_to_folder(&explainer, &spec, &images, &options, &h_out, &Silent)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let heat_s = median(times);
    line("heatmaps (one layer)", heat_s, peak_gib());
    std::fs::remove_dir_all(&h_out).ok();

    let mut times = Vec::new();
    reset_peak();
    for _ in 0..a.repeat {
        let t = Instant::now();
        hudd_core::assign::assign_run(run, None, Some(&improvement), None, 100.0, &Silent)?;
        times.push(t.elapsed().as_secs_f64());
    }
    let assign_s = median(times);
    line("assign", assign_s, peak_gib());
    println!("{:<28} {:>+9.1}%", "assign over heatmaps", 100.0 * (assign_s / heat_s - 1.0));
    let whole = std::fs::read(run.unsafe_csv())?;

    let exe = std::env::current_exe().context("cannot find the hudd binary")?;
    for &n in a.shards.iter().filter(|&&n| n > 1) {
        let threads = (cores / n).max(1);
        let mut times = Vec::new();
        for _ in 0..a.repeat {
            std::fs::remove_dir_all(run.root().join("shards")).ok();
            let t = Instant::now();
            let children: Vec<std::process::Child> = (0..n)
                .map(|i| {
                    std::process::Command::new(&exe)
                        .args(["assign", "--run"])
                        .arg(run.root())
                        .arg("--improvement")
                        .arg(&improvement)
                        .args(["--shard", &format!("{i}/{n}"), "-j", &threads.to_string(), "-q"])
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .context("cannot start a shard")
                })
                .collect::<Result<_>>()?;
            for mut c in children {
                if !c.wait()?.success() {
                    bail!("a shard failed");
                }
            }
            let merge = std::process::Command::new(&exe)
                .args(["merge"])
                .arg(run.root())
                .stdout(std::process::Stdio::null())
                .status()?;
            if !merge.success() {
                bail!("the merge failed");
            }
            times.push(t.elapsed().as_secs_f64());
        }
        let s = median(times);
        line(&format!("assign, {n} shards × {threads} thread(s)"), s, None);
        println!("{:<28} {:>+9.1}%", format!("{n} shards over unsharded"), 100.0 * (s / assign_s - 1.0));
        let same = std::fs::read(run.unsafe_csv())? == whole;
        println!("{:<28} {}", "merged unsafe.csv", if same { "identical to the unsharded run's" } else { "DIFFERS" });
        if !same {
            bail!("the merged unsafe set differs from the unsharded one");
        }
    }
    Ok(())
}
