//! Subcommands: one file each. Shared options live here.

mod analyze;
mod assign;
mod bench;
mod bench_assign;
mod bench_cluster;
mod bench_retrain;
mod bootstrap;
mod cluster;
mod compare;
mod demo;
mod evaluate;
mod heatmaps;
mod inspect;
mod merge;
mod report;
mod retrain;
mod selftest;
mod simulate;
mod verify;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

/// hudd — find the root causes of a deep neural network's errors (HUDD: heatmap-based unsupervised
/// debugging of DNNs) and retrain the network against them.
///
/// Exit status: 0 on success, 1 when the work failed (the message says why and what to do),
/// 2 for a usage error.
#[derive(Debug, Parser)]
#[command(name = "hudd", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the model on every split of a dataset and write HUDD's result files (the test step).
    Evaluate(evaluate::EvaluateArgs),
    /// Compute LRP relevance heatmaps of every chosen layer for a set of images.
    Heatmaps(heatmaps::HeatmapsArgs),
    /// The whole pipeline on the embedded default: simulated eyes with known root causes and the
    /// shipped gaze model. Start here.
    Demo(demo::DemoArgs),
    /// Find the root causes of the model's test errors: evaluate, heatmaps of the Wrong images,
    /// clusters of every layer, cluster folders and GIFs.
    Analyze(analyze::AnalyzeArgs),
    /// Pick the improvement images to label: assign them to the root-cause clusters (HUDD's
    /// ClosestU), the unsafe set.
    Assign(assign::AssignArgs),
    /// Check the engineers' labels of the unsafe set and balance it (HUDD's bootstrap).
    Bootstrap(bootstrap::BootstrapArgs),
    /// Fine-tune the ONNX model on its training split plus the labelled, balanced unsafe set and
    /// write the retrained ONNX file.
    Retrain(retrain::RetrainArgs),
    /// Compare retraining on HUDD's unsafe set with random selection at the same labelling budget.
    Compare(compare::CompareArgs),
    /// Combine the shard folders of `--shard I/N` runs into the files one unsharded run writes.
    Merge(merge::MergeArgs),
    /// Write a run's self-contained report bundle (index.html opens offline in a browser).
    Report(report::ReportArgs),
    /// Check a report bundle against its manifest (changed, missing or extra files) and its records
    /// against each other.
    Verify(verify::VerifyArgs),
    /// Run the shipped oracle checks (LRP vs Zennit, clustering vs scipy + kneed, evaluate vs
    /// onnxruntime, retraining vs PyTorch) on the fixtures embedded in this binary.
    Selftest(selftest::SelftestArgs),
    /// Cluster an existing heatmaps folder (HUDD's Ward + knee selection, best layer).
    Cluster(cluster::ClusterArgs),
    /// Write a simulated eye dataset (gaze classes or landmarks) with known root causes.
    Simulate(simulate::SimulateArgs),
    /// Show a model's inputs, outputs and operators, or the operators hudd supports.
    Inspect(inspect::InspectArgs),
    /// Time pipeline stages on your model and data under several settings.
    Bench(bench::BenchArgs),
}

/// The exported model (every command that runs one).
#[derive(Debug, Args)]
pub struct ModelArg {
    /// The exported ONNX model.
    #[arg(long, short = 'm', value_name = "MODEL.onnx")]
    pub model: PathBuf,
}

impl ModelArg {
    /// Loads the model with the configured parallelism.
    pub fn load(&self, config: &hudd_core::Config) -> Result<hudd_core::Model> {
        let mut model = hudd_core::Model::load(&self.model)?;
        model.set_parallel_engine(config.run.parallelism == hudd_core::config::Parallelism::Engine)?;
        Ok(model)
    }
}

/// The model and dataset of a run (`hudd evaluate`, `hudd analyze`).
#[derive(Debug, Args)]
pub struct ModelData {
    #[command(flatten)]
    pub model: ModelArg,
    /// Dataset folder: train/, test/, improvement/ (or HUDD's TrainingSet/, TestSet/,
    /// ImprovementSet/), each with one folder per class or a manifest.csv.
    #[arg(long, short = 'd', value_name = "DATA")]
    pub data: PathBuf,
}

impl ModelData {
    /// Loads the model (with the configured parallelism) and opens the dataset.
    pub fn open(&self, config: &hudd_core::Config) -> Result<(hudd_core::Model, hudd_core::Dataset)> {
        let model = self.model.load(config)?;
        let data = hudd_core::Dataset::open(&self.data, &config.task)?;
        if data.class_source == hudd_core::dataset::ClassSource::FolderNames {
            eprintln!(
                "classes: guessed from the sorted folder names ({}); right only if the model's logits are in \
                 this order — list them in logit order in `[task] classes` of hudd.toml",
                data.classes.join(", ")
            );
        }
        Ok((model, data))
    }
}

/// `--shard I/N` (`hudd evaluate`, `hudd heatmaps`, `hudd assign`).
#[derive(Debug, Args)]
pub struct ShardArg {
    /// Do shard I of N only (0 ≤ I < N): the images, sorted by path, are cut into N runs of whole
    /// batches, and this run does run I. Results go to OUT/shards/<stage>-I-of-N/ (OUT: this
    /// command's --out or --run); when all N are done, `hudd merge OUT` writes the files that one
    /// unsharded run writes, byte for byte. On Slurm: --shard $SLURM_ARRAY_TASK_ID/N; on a
    /// Kubernetes Indexed Job: --shard $JOB_COMPLETION_INDEX/N.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<hudd_core::shard::Shard>,
}

impl ShardArg {
    /// What to print when a shard is done.
    pub fn done(shard: hudd_core::shard::Shard, dir: &std::path::Path, out: &std::path::Path) {
        println!(
            "
shard {shard}: {}",
            dir.display()
        );
        println!("when all {} shards are done: hudd merge {}", shard.count(), out.display());
    }
}

/// How a command runs: threads and progress bars (every command that computes).
#[derive(Debug, Args)]
pub struct ExecOptions {
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Do not draw progress bars.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl ExecOptions {
    /// Runs `f` on a thread pool of the requested size (the one place where hudd's worker pool is
    /// built).
    pub fn in_pool<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        match self.threads {
            None => f(),
            Some(n) => pool(usize::from(n))?.install(f),
        }
    }
}

/// A worker pool of `threads` threads (at most [`max_threads`]).
pub fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    let max = max_threads();
    if threads > max {
        bail!(
            "-j {threads} asks for more worker threads than make sense here: this machine has {} cores; \
             give at most {max} (4 per core), or leave -j out for one per core",
            cores()
        );
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().context("cannot start worker threads")
}

/// The cores this process may use.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most worker threads a command accepts: 4 per core (more only adds memory and switching).
pub fn max_threads() -> usize {
    4 * cores()
}

/// Options shared by every command that runs a model: the configuration and how to run.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// Configuration file (`hudd.toml`: [input], [task], [run]); flags override it.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one configuration value, `section.key=value` (repeatable), e.g.
    /// `--set input.layout=nhwc --set task.output=logits`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Images per model run (overrides `[run] batch_size`).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    #[command(flatten)]
    pub exec: ExecOptions,
}

/// Says how much memory the activations of the batches in flight take, when it is a lot (over
/// 2 GB) or more than this machine has free: a large input otherwise fails late or swaps without a
/// word.
pub fn warn_memory(model: &hudd_core::Model, batch_size: usize, threads: Option<u16>) {
    let per_image = model.graph().float_values_per_image().saturating_mul(4);
    let parallel = threads.map_or_else(cores, usize::from) as u64;
    let total = per_image.saturating_mul(batch_size as u64).saturating_mul(parallel);
    let available = available_memory();
    if total < 2_000_000_000 && available.is_none_or(|a| total < a) {
        return;
    }
    let gb = |b: u64| b as f64 / 1e9;
    let free = match available {
        Some(a) if total >= a => format!(", more than the {:.1} GB available", gb(a)),
        _ => String::new(),
    };
    eprintln!(
        "memory: the activations take about {:.1} GB ({:.1} MB per image × batch {batch_size} × {parallel} batches in \
         parallel{free}); lower --batch-size or -j if this machine runs short",
        gb(total),
        per_image as f64 / 1e6
    );
}

/// The most bytes of heatmaps `hudd analyze` holds in memory: `gb` gigabytes, or half the memory
/// available now (no limit where that is not known).
pub fn heatmap_memory(gb: Option<f64>) -> Result<Option<u64>> {
    memory_limit(gb, available_memory)
}

/// [`heatmap_memory`] with the available memory from `available` (read only when no limit is given).
fn memory_limit(gb: Option<f64>, available: impl FnOnce() -> Option<u64>) -> Result<Option<u64>> {
    match gb {
        Some(gb) if gb.is_finite() && gb > 0.0 => Ok(Some((gb * 1e9) as u64)),
        Some(_) => bail!("--heatmap-memory must be a positive number of gigabytes"),
        None => Ok(available().map(|a| a / 2)),
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes (Linux; `None` elsewhere).
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The configuration file that belongs to `model`: `hudd.toml` in the model's folder.
pub fn beside(model: &std::path::Path) -> Option<PathBuf> {
    let candidate = model.parent().unwrap_or(std::path::Path::new(".")).join("hudd.toml");
    candidate.is_file().then_some(candidate)
}

/// How this run was made, for the report: the command line, the seeds and the start time.
pub fn run_info(seeds: &[(&str, u64)]) -> hudd_report::Run {
    hudd_report::Run {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: std::env::args().collect(),
        config: serde_json::Value::Null,
        seeds: seeds.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        timings: Vec::new(),
        started_unix_s: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs()),
        reused_stages: Vec::new(),
        working_dir: std::env::current_dir().ok().map(|d| d.display().to_string()),
    }
}

impl RunOptions {
    /// Loads the configuration with every override applied: `--config`, or else the `hudd.toml`
    /// beside `model` (announced), or else the defaults.
    pub fn config(&self, model: &std::path::Path) -> Result<hudd_core::Config> {
        let mut overrides = self.overrides.clone();
        if let Some(b) = self.batch_size {
            overrides.push(format!("run.batch_size={b}"));
        }
        let file = match &self.config {
            Some(c) => Some(c.clone()),
            None => beside(model).inspect(|found| {
                eprintln!("configuration: {} (found beside the model; --config chooses another)", found.display())
            }),
        };
        let cfg = hudd_core::Config::load(file.as_deref(), &overrides)?;
        Ok(cfg)
    }

    /// Runs `f` on a thread pool of the requested size.
    pub fn in_pool<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        self.exec.in_pool(f)
    }
}

impl Cli {
    /// Whether the command trains a model (`retrain`, `compare`, `demo`, `bench retrain`): training
    /// frees and reallocates the same large tensors every step.
    pub fn trains(&self) -> bool {
        match &self.command {
            Command::Retrain(_) | Command::Compare(_) | Command::Demo(_) => true,
            Command::Bench(b) => b.trains(),
            _ => false,
        }
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Evaluate(a) => evaluate::run(a),
        Command::Heatmaps(a) => heatmaps::run(a),
        Command::Analyze(a) => analyze::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Assign(a) => assign::run(a),
        Command::Bootstrap(a) => bootstrap::run(a),
        Command::Retrain(a) => retrain::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Merge(a) => merge::run(a),
        Command::Cluster(a) => cluster::run(a),
        Command::Report(a) => report::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Selftest(a) => selftest::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Simulate(a) => simulate::run(a),
        Command::Bench(a) => bench::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_commands_that_train_keep_freed_memory() {
        let trains = |args: &[&str]| Cli::try_parse_from(args).unwrap().trains();
        assert!(trains(&["hudd", "retrain", "--run", "r", "--labels", "auto", "--out", "m2.onnx"]));
        assert!(trains(&["hudd", "demo"]));
        assert!(!trains(&["hudd", "analyze", "-m", "m.onnx", "-d", "d", "-o", "r"]));
        assert!(!trains(&["hudd", "bench", "cluster", "--heatmaps", "h"]));
    }

    #[test]
    fn the_heatmap_memory_is_given_in_gigabytes_or_half_the_available() {
        assert_eq!(heatmap_memory(Some(2.5)).unwrap(), Some(2_500_000_000));
        assert!(heatmap_memory(Some(0.0)).is_err());
        assert!(heatmap_memory(Some(f64::NAN)).is_err());
        // The available memory changes from one reading to the next (other processes, other
        // tests): the default is checked on a given value.
        assert_eq!(memory_limit(None, || Some(12_000_000_000)).unwrap(), Some(6_000_000_000));
        assert_eq!(memory_limit(None, || None).unwrap(), None, "no limit where the memory is not known");
        assert_eq!(
            memory_limit(Some(1.0), || unreachable!("not read when a limit is given")).unwrap(),
            Some(1_000_000_000)
        );
        assert!(available_memory().is_some_and(|a| a > 0), "MemAvailable is read on Linux");
    }
}
