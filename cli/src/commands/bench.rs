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

pub fn run(args: BenchArgs) -> Result<()> {
    match args.stage {
        Stage::Evaluate(a) => bench_evaluate(a),
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
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().context("thread pool")?;
            for &batch in &a.batch_sizes {
                let config = hudd_core::Config::load(a.config.as_deref(), &[format!("run.batch_size={batch}")])?;
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
                let name = match mode {
                    Parallelism::Batches => "batches",
                    Parallelism::Engine => "engine",
                };
                println!(
                    "{name:<10} {threads:>7} {batch:>6} {images:>8} {median:>10.3} {:>10.0}",
                    images as f64 / median
                );
            }
        }
    }
    Ok(())
}
