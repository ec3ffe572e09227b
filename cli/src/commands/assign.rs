//! `hudd assign`: the unsafe set (HUDD's Step 4).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::assign;
use hudd_core::run::RunDir;

use super::{ExecOptions, ShardArg};
use crate::progress::Bars;

/// Picks the improvement images most likely to fail for the same reasons as the test errors, so
/// that engineers label only those (HUDD's Step 4, mode ClosestU). Every improvement image is
/// explained at the run's best layer with the run's preset and start rule; its distance to a
/// root-cause cluster (of 2 or more members) is the distance to the cluster's nearest member, with
/// the run's normalisation. Each cluster takes ceil(2 × its test members) images: repeatedly the
/// globally closest (image, cluster) pair whose cluster has room is assigned, and an image whose
/// closest cluster is full goes to its next-closest one. The improvement images need no labels.
/// Writes RUN/unsafe/unsafe.csv (image,cluster,distance,rank), RUN/unsafe/to-label.csv
/// (image,cluster,label: fill in the labels), RUN/unsafe/<cluster>/ with the images and
/// RUN/unsafe/cluster-<cluster>.gif, and RUN/unsafe/unsafe.json (parameters, quotas, fill) last.
#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The run folder (as `hudd analyze` writes it).
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Folder of improvement images, searched recursively (default: the run's dataset's
    /// improvement split). Labels are not needed; class folder names are ignored.
    #[arg(long, value_name = "DIR")]
    improvement: Option<PathBuf>,
    /// The model (default: the file the run recorded; it must be the model the run analysed).
    #[arg(long, short = 'm', value_name = "MODEL.onnx")]
    model: Option<PathBuf>,
    /// Images per model run (default: the run's `[run] batch_size`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: Option<u32>,
    /// Speed of the GIFs, in images per minute.
    #[arg(long, default_value_t = 100.0, value_name = "N")]
    gif_rate: f64,
    /// With --shard, the shard computes its images' distances only (the costly part); `hudd merge
    /// RUN` then allocates over all of them and writes RUN/unsafe/.
    #[command(flatten)]
    shard: ShardArg,
    #[command(flatten)]
    exec: ExecOptions,
}

pub fn run(args: AssignArgs) -> Result<()> {
    if !(args.gif_rate > 0.0 && args.gif_rate.is_finite()) {
        bail!("--gif-rate must be a positive number of images per minute");
    }
    let run = RunDir::new(&args.run);
    let bars = Bars::new(args.exec.quiet);
    let batch = args.batch_size.map(|b| b as usize);
    let (model, improvement) = (args.model.as_deref(), args.improvement.as_deref());
    if let Some(shard) = args.shard.shard {
        let (dir, d) = args
            .exec
            .in_pool(|| Ok(assign::assign_shard(&run, model, improvement, batch, shard, &bars)?))
            .with_context(|| format!("shard {shard} of the improvement images of {}", args.run.display()))?;
        println!(
            "{} improvement image(s) of this shard {}, {} skipped",
            d.rows.len(),
            compared_at(&d.parameters),
            d.skipped.len()
        );
        ShardArg::done(shard, &dir, &args.run);
        return Ok(());
    }
    let _lock = run.lock("hudd assign")?;
    let set = args
        .exec
        .in_pool(|| Ok(assign::assign_run(&run, model, improvement, batch, args.gif_rate, &bars)?))
        .with_context(|| format!("assigning improvement images to the clusters of {}", args.run.display()))?;
    print_summary(&run, &set);
    Ok(())
}

/// Quotas and fill per cluster, and where the files are.
pub fn print_summary(run: &RunDir, set: &assign::UnsafeSet) {
    let r = &set.record;
    println!("{} improvement images {} ({} skipped)\n", r.candidates, compared_at(&r.parameters), r.skipped.len());
    println!("{:>8} {:>13} {:>6} {:>6}", "cluster", "test members", "quota", "fill");
    for c in &r.clusters {
        println!("{:>8} {:>13} {:>6} {:>6}", c.cluster, c.test_members, c.quota, c.fill);
    }
    println!("\nunsafe set: {} images: {}", set.assigned.len(), run.unsafe_csv().display());
    println!("to label:   {}", run.to_label_csv().display());
}

/// `explained at LAYER` (heatmaps) or `compared by their activations at LAYER`.
fn compared_at(p: &assign::AssignParameters) -> String {
    match p.features {
        hudd_core::heatmaps::Features::Heatmaps => format!("explained at {}", p.layer),
        hudd_core::heatmaps::Features::Activations => format!("compared by their activations at {}", p.layer),
    }
}
