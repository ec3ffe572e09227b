//! `hudd merge`: shard folders → the files of one unsharded run.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::run::RunDir;
use hudd_core::shard::{self, Stage};
use hudd_core::{assign, evaluate, heatmaps};

/// Combines the shard folders that `--shard I/N` runs wrote under OUT/shards/ into the files one
/// unsharded run writes, byte for byte: `evaluate` shards into OUT/results/, `heatmaps` shards into
/// OUT itself (index.json and one .npy per layer), `assign` shards into OUT/unsafe/ (ClosestU runs
/// here, over every shard's distances). Every shard 0..N-1 must be present and complete and made
/// by the same command (model, parameters, images, batch size); otherwise nothing is written and
/// the error names the missing or foreign shards. The shard folders are kept.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The folder the sharded command wrote to: its --out (evaluate, heatmaps) or --run (assign).
    #[arg(value_name = "OUT")]
    out: PathBuf,
    /// Merge this stage only (default: every stage with shard folders under OUT/shards/).
    #[arg(long, value_name = "STAGE", value_parser = ["evaluate", "heatmaps", "assign"])]
    stage: Option<String>,
    /// Speed of the unsafe set's GIFs (assign), in images per minute.
    #[arg(long, default_value_t = 100.0, value_name = "N")]
    gif_rate: f64,
}

pub fn run(args: MergeArgs) -> Result<()> {
    if !(args.gif_rate > 0.0 && args.gif_rate.is_finite()) {
        bail!("--gif-rate must be a positive number of images per minute");
    }
    let stages = match args.stage.as_deref() {
        Some(name) => vec![Stage::ALL.into_iter().find(|s| s.name() == name).context("unknown stage")?],
        None => shard::stages(&args.out)?,
    };
    if stages.is_empty() {
        bail!(
            "no shard folders in {}: run `hudd evaluate|heatmaps|assign … --shard I/N` first",
            shard::shards_dir(&args.out).display()
        );
    }
    // Evaluate and assign shards merge into a run folder, which is locked; heatmap shards into a
    // heatmaps folder, as `hudd heatmaps` writes one.
    let _lock = match stages.iter().any(|s| *s != Stage::Heatmaps) {
        true => Some(RunDir::new(&args.out).lock("hudd merge")?),
        false => None,
    };
    for stage in stages {
        let shards = shard::find(&args.out, stage)?;
        let n = shards.len();
        let context = || format!("merging the {n} {stage} shards of {}", args.out.display());
        match stage {
            Stage::Evaluate => {
                let results = RunDir::new(&args.out).results();
                evaluate::merge(&shards, &results).with_context(context)?;
                println!("{stage}: {n} shards merged into {}", results.display());
            }
            Stage::Heatmaps => {
                let index = heatmaps::merge(&shards, &args.out).with_context(context)?;
                println!(
                    "{stage}: {n} shards merged into {} ({} images, {} layers)",
                    args.out.display(),
                    index.images.len(),
                    index.layers.len()
                );
            }
            Stage::Assign => {
                let run = RunDir::new(&args.out);
                let set = assign::merge_shards(&run, &shards, args.gif_rate).with_context(context)?;
                println!("{stage}: {n} shards merged");
                super::assign::print_summary(&run, &set);
            }
        }
    }
    Ok(())
}
