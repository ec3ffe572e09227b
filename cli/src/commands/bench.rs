//! `hudd bench`: the benchmark harness. Times pipeline stages on the user's own model and data under
//! several settings and prints a table (figures for BENCHMARKS.md come from here).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hudd_core::config::Parallelism;
use hudd_core::progress::Silent;
use hudd_core::{Dataset, Evaluator, Model};

/// Benchmarks a pipeline stage under several settings (median of repeated runs, after one warm-up).
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    stage: Stage,
}

#[derive(Debug, Subcommand)]
enum Stage {
    /// The test step: images/s of reading, preprocessing and running the model on every split,
    /// for each combination of parallelism, thread count and batch size.
    Evaluate(EvaluateBench),
    /// LRP heatmaps of every layer (`--layers all`) for a folder of images, written to a temporary
    /// folder: images/s and the achieved GFLOP/s, per thread count and batch size.
    Heatmaps(HeatmapsBench),
    /// HUDD's clustering (distances, Ward, WICD curve, knee) of a heatmaps folder or of synthetic
    /// heatmaps of any size; seconds per layer and peak memory.
    Cluster(super::bench_cluster::ClusterBench),
    /// `hudd assign` (the unsafe set) beside `hudd heatmaps` of the same images at the same layer,
    /// and sharded (`--shard I/N` processes at once + `hudd merge`); seconds, images/s, peak memory.
    Assign(super::bench_assign::AssignBench),
    /// One epoch of `hudd retrain`'s fine-tuning over a dataset's training split (decoding
    /// included), repeated; seconds per epoch and images/s.
    Retrain(super::bench_retrain::RetrainBench),
}

#[derive(Debug, Args)]
struct HeatmapsBench {
    /// The exported ONNX model.
    #[arg(long, short = 'm', value_name = "MODEL.onnx")]
    model: PathBuf,
    /// Folder of images (searched recursively).
    #[arg(long, short = 'i', value_name = "DIR")]
    images: PathBuf,
    /// Configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use only the first N images.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Preset.
    #[arg(long, value_enum, default_value_t = hudd_core::relevance::Preset::Hudd)]
    preset: hudd_core::relevance::Preset,
    /// Timed runs per setting.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Thread counts to try.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    threads: Vec<usize>,
    /// Batch sizes to try.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize])]
    batch_sizes: Vec<usize>,
    /// Compute the heatmaps and drop them instead of writing them: times decoding and the
    /// arithmetic alone (the figure the machine's fp32 peak bounds), without the `.npy` writes.
    #[arg(long)]
    discard: bool,
    /// How the written files store the values.
    #[arg(long, value_enum, default_value_t = hudd_core::heatmaps::Dtype::F32)]
    dtype: hudd_core::heatmaps::Dtype,
}

#[derive(Debug, Args)]
struct EvaluateBench {
    /// The exported ONNX model.
    #[arg(long, short = 'm', value_name = "MODEL.onnx")]
    model: PathBuf,
    /// Dataset folder (as for `hudd evaluate`).
    #[arg(long, short = 'd', value_name = "DATA")]
    data: PathBuf,
    /// Configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Timed runs per setting.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Thread counts to try.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    threads: Vec<usize>,
    /// Batch sizes to try.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    batch_sizes: Vec<usize>,
}

impl BenchArgs {
    /// Whether the benchmark trains a model.
    pub fn trains(&self) -> bool {
        matches!(self.stage, Stage::Retrain(_))
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.stage {
        Stage::Evaluate(a) => bench_evaluate(a),
        Stage::Heatmaps(a) => bench_heatmaps(a),
        Stage::Cluster(a) => super::bench_cluster::run(a),
        Stage::Assign(a) => super::bench_assign::run(a),
        Stage::Retrain(a) => super::bench_retrain::run(a),
    }
}

fn bench_evaluate(a: EvaluateBench) -> Result<()> {
    let mut modes = vec![Parallelism::Batches];
    if cfg!(feature = "tract-threads") {
        modes.push(Parallelism::Engine);
    }
    println!(
        "{:<10} {:>7} {:>6} {:>8} {:>10} {:>10}",
        "parallel", "threads", "batch", "images", "median_s", "images/s"
    );
    for mode in modes {
        let mut model = Model::load(&a.model)?;
        model.set_parallel_engine(mode == Parallelism::Engine)?;
        for &threads in &a.threads {
            let pool = super::pool(threads)?;
            for &batch in &a.batch_sizes {
                let name = match mode {
                    Parallelism::Batches => "batches",
                    Parallelism::Engine => "engine",
                };
                let overrides = [format!("run.batch_size={batch}"), format!("run.parallelism={name}")];
                let config = hudd_core::Config::load(a.config.as_deref(), &overrides)?;
                let data = Dataset::open(&a.data, &config.task)?;
                let evaluator = Evaluator::new(&model, &data, &config)?;
                let mut times = Vec::with_capacity(a.repeat);
                let mut images = 0;
                for i in 0..=a.repeat {
                    let t = Instant::now();
                    let e = pool.install(|| evaluator.run(&Silent))?;
                    if i > 0 {
                        times.push(t.elapsed().as_secs_f64());
                    }
                    images = e.splits.iter().map(|s| s.rows.len()).sum::<usize>();
                }
                times.sort_by(f64::total_cmp);
                let median = times[times.len() / 2];
                println!(
                    "{name:<10} {threads:>7} {batch:>6} {images:>8} {median:>10.3} {:>10.0}",
                    images as f64 / median
                );
            }
        }
    }
    Ok(())
}

fn bench_heatmaps(a: HeatmapsBench) -> Result<()> {
    use hudd_core::heatmaps::{compute_discarding, compute_to_folder, HeatmapOptions, ImageRef, Layers, StartRule};
    let config = hudd_core::Config::load(a.config.as_deref(), &[])?;
    let model = Model::load(&a.model)?;
    let spec = config.input_spec(model.info())?;
    let output = &model.info().outputs[config.task.output_index(model.info())?].name;
    let (files, _) = hudd_core::dataset::image_files(&a.images)?;
    let images: Vec<ImageRef> = files
        .into_iter()
        .take(a.limit)
        .map(|f| ImageRef { path: f.path, image: f.image, label: None, targets: None })
        .collect();
    let preset = a.preset;
    let explainer = hudd_core::relevance::Explainer::new(&model, &spec.domain(), output, preset)?;
    let flops = explainer.flops_per_image()?;
    println!(
        "{} images, preset {}, ~{:.1} MFLOP per image (forward + relevance of linear layers){}",
        images.len(),
        preset,
        flops as f64 / 1e6,
        if a.discard { ", heatmaps discarded" } else { ", heatmaps written" }
    );
    println!("{:>7} {:>6} {:>10} {:>10} {:>8}", "threads", "batch", "median_s", "images/s", "GFLOP/s");
    let out = tempfile_dir()?;
    for &threads in &a.threads {
        let pool = super::pool(threads)?;
        for &batch in &a.batch_sizes {
            let options = HeatmapOptions {
                preset,
                layers: Layers::All,
                start: StartRule::Predicted,
                batch_size: batch,
                features: hudd_core::heatmaps::Features::Heatmaps,
                dtype: a.dtype,
            };
            let mut times = Vec::new();
            for i in 0..=a.repeat {
                let t = Instant::now();
                if a.discard {
                    pool.install(|| compute_discarding(&explainer, &spec, &images, &options, &Silent))?;
                } else {
                    pool.install(|| compute_to_folder(&explainer, &spec, &images, &options, &out, &Silent))?;
                }
                if i > 0 {
                    times.push(t.elapsed().as_secs_f64());
                }
            }
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            let rate = images.len() as f64 / median;
            println!("{threads:>7} {batch:>6} {median:>10.3} {rate:>10.1} {:>8.2}", rate * flops as f64 / 1e9);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    Ok(())
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hudd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}
