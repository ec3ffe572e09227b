//! `hudd simulate`: the embedded eye simulator writes a dataset with known root causes.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use hudd_sim::dataset::{write, Sizes, Task};
use hudd_sim::Causes;

/// Writes a simulated dataset: DATA/{train,test,improvement}/ with one PNG per image and a
/// manifest.csv per split carrying every simulator parameter (gaze yaw/pitch, eyelid openness,
/// head pose, exposure, contrast, skin, glare, blur, noise) as metadata. The training split draws
/// the planted causes of error (nearly closed eyelids, extreme head poses, underexposure, glare)
/// at a fifth of their natural rate unless `--train-causes natural`; the test and improvement
/// splits at their natural rate. The same seed gives byte-identical files.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    #[command(subcommand)]
    task: SimTask,
}

#[derive(Debug, Subcommand)]
enum SimTask {
    /// 64×64 grayscale eyes labelled with the gaze direction: 8 sectors of 45° and the centre
    /// (one folder per class).
    Gaze(SimOptions),
    /// The same eyes labelled with landmarks in pixels: pupil centre and the two eye corners
    /// (label = `x0 y0 x1 y1 x2 y2`); a regression task.
    Landmarks(SimOptions),
}

#[derive(Debug, Args)]
struct SimOptions {
    /// Training images.
    #[arg(long, default_value_t = 6000)]
    train: usize,
    /// Test images.
    #[arg(long, default_value_t = 2000)]
    test: usize,
    /// Improvement images.
    #[arg(long, default_value_t = 2000)]
    improvement: usize,
    /// How often the training split draws the planted causes of error: `rare` (a fifth of the
    /// natural rate, the HUDD paper's scenario of a training distribution that seldom produces the
    /// unsafe conditions) or `natural` (as the test and improvement splits).
    #[arg(long, value_enum, default_value_t = TrainCauses::Rare)]
    train_causes: TrainCauses,
    /// Seed: the same seed gives the same images.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (new or empty).
    #[arg(long, short = 'o', value_name = "DATA")]
    out: PathBuf,
    /// Do not draw a progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TrainCauses {
    Rare,
    Natural,
}

pub fn run(args: SimulateArgs) -> Result<()> {
    let (task, o) = match args.task {
        SimTask::Gaze(o) => (Task::Gaze, o),
        SimTask::Landmarks(o) => (Task::Landmarks, o),
    };
    let sizes = Sizes { train: o.train, test: o.test, improvement: o.improvement };
    let train = match o.train_causes {
        TrainCauses::Rare => Causes::Rare,
        TrainCauses::Natural => Causes::Natural,
    };
    simulate(&o.out, task, sizes, train, o.seed, o.quiet)?;
    println!(
        "{} images ({} train, {} test, {} improvement), seed {}: {}",
        o.train + o.test + o.improvement,
        o.train,
        o.test,
        o.improvement,
        o.seed,
        o.out.display()
    );
    Ok(())
}

/// Writes the dataset with a progress bar (also used by `hudd demo`).
pub fn simulate(out: &std::path::Path, task: Task, sizes: Sizes, train: Causes, seed: u64, quiet: bool) -> Result<()> {
    use hudd_core::Progress;
    let bars = crate::progress::Bars::new(quiet);
    bars.start("simulate", (sizes.train + sizes.test + sizes.improvement) as u64);
    write(out, task, sizes, train, seed, &|n| bars.advance(n as u64))
        .with_context(|| format!("simulating a dataset into {}", out.display()))?;
    bars.finish();
    Ok(())
}
