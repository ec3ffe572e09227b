//! `hudd compare`: HUDD's unsafe set against random selection at the same labelling budget (the
//! paper's RQ2).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hudd_core::retrain::{self, CompareRecord, MeanSd, Method};
use hudd_core::run::RunDir;

use super::retrain::TrainingFlags;
use super::ExecOptions;
use crate::progress::Bars;

/// Retrains the model R times with each of three labelled sets of the same size — the number of
/// images in the unsafe set, i.e. what the engineers label — and compares the test accuracy:
/// hudd (the unsafe set, balanced as `hudd bootstrap` does, bootstrap seed SEED + r), bl1 (random
/// improvement images that the analysed model gets wrong) and bl2 (random improvement images),
/// drawn with seed SEED + r; every retraining uses the same settings and retrain seed SEED + r.
/// Prints mean ± sd (sample, n − 1) of the test accuracy overall and on the test members of the
/// root-cause clusters, before and after, and writes RUN/retrain/compare.json. The baselines need
/// labels for every improvement image: `auto` (the data's own) or a CSV that labels them all. For
/// a regressor, "wrong" means a loss above the configured threshold.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The run folder, after `hudd assign`.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Labels of the improvement images: `auto` for the data's own (class folders or manifest), or
    /// a CSV with `path` (or `image`) and `label` covering every improvement image.
    #[arg(long, value_name = "CSV|auto")]
    labels: String,
    /// Retrainings per method.
    #[arg(long, default_value_t = 3, value_name = "R", value_parser = clap::value_parser!(u32).range(1..))]
    repeats: u32,
    #[command(flatten)]
    training: TrainingFlags,
    #[command(flatten)]
    exec: ExecOptions,
}

pub fn run(args: CompareArgs) -> Result<()> {
    let options = args.training.options()?;
    let run = RunDir::new(&args.run);
    let _lock = run.lock("hudd compare")?;
    let bars = Bars::new(args.exec.quiet);
    let csv = (args.labels != "auto").then(|| Path::new(&args.labels));
    let record = args
        .exec
        .in_pool(|| Ok(retrain::compare(&run, csv, args.repeats as usize, options.seed, &options, &bars)?))
        .with_context(|| format!("comparing HUDD with the baselines on {}", args.run.display()))?;
    print_table(&record);
    println!("\nrecord: {}", run.compare_json().display());
    Ok(())
}

fn cell(m: &MeanSd, sd: bool) -> String {
    if sd {
        format!("{:.1} ± {:.1}", 100.0 * m.mean, 100.0 * m.sd)
    } else {
        format!("{:.1}", 100.0 * m.mean)
    }
}

/// Test accuracy (%) before and after each method, mean ± sd over the repeats.
pub fn print_table(r: &CompareRecord) {
    if r.improvement_wrong < r.budget {
        println!(
            "note: the model gets only {} improvement image(s) wrong; bl1 labels those instead of {}",
            r.improvement_wrong, r.budget
        );
    }
    println!("budget: {} labelled image(s) per method, {} repeat(s), seeds {}…\n", r.budget, r.repeats, r.seed);
    print!("{:<26}{:>10}", "test accuracy (%)", "before");
    for m in Method::ALL {
        print!("{:>14}", m.name());
    }
    println!();
    let line = |label: &str, before: String, f: &dyn Fn(Method) -> String| {
        print!("{label:<26}{before:>10}");
        for m in Method::ALL {
            print!("{:>14}", f(m));
        }
        println!();
    };
    line("overall", cell(&r.before.overall, false), &|m| cell(&r.method(m).overall, true));
    line("root-cause clusters", cell(&r.before.failing_clusters, false), &|m| {
        cell(&r.method(m).failing_clusters, true)
    });
    for (i, c) in r.before.per_cluster.iter().enumerate() {
        line(&format!("  cluster {} ({} img)", c.cluster, c.members), cell(&c.accuracy, false), &|m| {
            r.method(m).per_cluster.get(i).map_or_else(String::new, |c| cell(&c.accuracy, true))
        });
    }
}
