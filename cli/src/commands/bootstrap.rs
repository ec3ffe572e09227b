//! `hudd bootstrap`: the labelled unsafe set, balanced (HUDD's Step 6).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hudd_core::bootstrap::{self, LabelSource};
use hudd_core::run::RunDir;

/// Checks the engineers' labels of the unsafe set and balances it as HUDD does: each cluster
/// keeps its ceil(test members) closest images, then draws more of them (with replacement,
/// weights 1 − d/Σd over their distances, seeded) until it has as many as the largest cluster.
/// Writes RUN/unsafe/balanced.csv (image,cluster,copies,label) and records the seed in
/// RUN/unsafe/unsafe.json. Labels with problems (unknown paths, labels outside the classes,
/// unsafe images without a label) are listed together and nothing is written.
#[derive(Debug, Args)]
pub struct BootstrapArgs {
    /// The run folder, after `hudd assign`.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// A CSV with a `path` (or `image`) and a `label` column — e.g. RUN/unsafe/to-label.csv filled
    /// in; paths relative to the improvement folder, or absolute — or `auto` for the labels the
    /// improvement data carries (class folders or manifest).
    #[arg(long, value_name = "CSV|auto")]
    labels: String,
    /// Seed of the balancing draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: BootstrapArgs) -> Result<()> {
    let run = RunDir::new(&args.run);
    let context = || format!("balancing the unsafe set of {}", args.run.display());
    let (record, rows) = bootstrap::read_unsafe(&run).with_context(context)?;
    let (source, classes) = if args.labels == "auto" {
        bootstrap::known_labels(&run).with_context(context)?
    } else {
        let classes = hudd_core::run::RunRecord::read(&run).with_context(context)?.evaluation.classes;
        (LabelSource::Csv(PathBuf::from(&args.labels)), classes)
    };
    let labels =
        bootstrap::labels(&source, Path::new(&record.parameters.improvement), &rows, &classes).with_context(context)?;
    let members: BTreeMap<usize, usize> = record.clusters.iter().map(|c| (c.cluster, c.test_members)).collect();
    let balanced = bootstrap::balance(&rows, &members, args.seed);
    let written =
        bootstrap::write_balanced(&run, &record, &balanced, &labels, &classes, args.seed).with_context(context)?;
    let mut per: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for r in &written {
        let e = per.entry(r.cluster).or_default();
        e.0 += 1;
        e.1 += r.copies;
    }
    println!("{:>8} {:>7} {:>10}", "cluster", "images", "balanced");
    for (c, (images, total)) in per {
        println!("{c:>8} {images:>7} {total:>10}");
    }
    println!("\nbalanced set: {} (seed {})", run.unsafe_dir().join("balanced.csv").display(), args.seed);
    Ok(())
}
