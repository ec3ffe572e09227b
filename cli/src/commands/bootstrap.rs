//! `hudd bootstrap`: the labelled unsafe set, balanced (HUDD's Step 6).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hudd_core::bootstrap::{self, BalancedRow};
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
    let _lock = run.lock("hudd bootstrap")?;
    let csv = (args.labels != "auto").then(|| Path::new(&args.labels));
    let done = bootstrap::bootstrap(&run, csv, args.seed)
        .with_context(|| format!("balancing the unsafe set of {}", args.run.display()))?;
    say_ignored(done.ignored_labels);
    print_summary(&done.rows);
    println!("\nbalanced set: {} (seed {})", run.unsafe_dir().join("balanced.csv").display(), args.seed);
    Ok(())
}

/// Says how many labelled rows named images outside the unsafe set (normal when the labels cover
/// more, e.g. the whole improvement folder).
pub fn say_ignored(rows: usize) {
    if rows > 0 {
        println!("labels: {rows} labelled row(s) for images outside the unsafe set ignored");
    }
}

/// Images and balanced copies per cluster.
pub fn print_summary(rows: &[BalancedRow]) {
    let mut per: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for r in rows {
        let e = per.entry(r.cluster).or_default();
        e.0 += 1;
        e.1 += r.copies;
    }
    println!("{:>8} {:>7} {:>10}", "cluster", "images", "balanced");
    for (c, (images, total)) in per {
        println!("{c:>8} {images:>7} {total:>10}");
    }
}
