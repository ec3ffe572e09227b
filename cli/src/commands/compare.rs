//! `hudd compare`: HUDD's unsafe set against random selection at the same labelling budget (the
//! paper's RQ2).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hudd_core::retrain::{self, CompareRecord, MeanSd, Summary, MIN_TESTED_REPEATS};
use hudd_core::run::RunDir;

use super::retrain::TrainingFlags;
use super::ExecOptions;
use crate::progress::Bars;

/// Retrains the model R times with each of three labelled sets of the same size — the number of
/// images in the unsafe set, i.e. what the engineers label — and compares the test accuracy:
/// hudd (the unsafe set, balanced as `hudd bootstrap` does, bootstrap seed SEED + r), bl1 (random
/// improvement images that the analysed model gets wrong) and bl2 (random improvement images),
/// drawn with seed SEED + r; every retraining uses the same settings and retrain seed SEED + r,
/// and chooses its kept epoch on images held out from its own labelled images (see
/// --validation-from). Prints mean ± sd (sample, n − 1; from 2 repeats) of the test accuracy
/// overall and on the test members of the root-cause clusters, before and after, the images each
/// method labelled and trained on, the kept epochs, and — from 5 repeats — two-sided p-values of
/// HUDD against each baseline (Welch's t-test and Mann–Whitney U); writes
/// RUN/retrain/compare.json. The baselines need labels for every improvement image: `auto` (the
/// data's own) or a CSV that labels them all. For a regressor, "wrong" means a loss above the
/// configured threshold.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The run folder, after `hudd assign`.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// Labels of the improvement images: `auto` for the data's own (class folders or manifest), or
    /// a CSV with `path` (or `image`) and `label` covering every improvement image.
    #[arg(long, value_name = "CSV|auto")]
    labels: String,
    /// Retrainings per method (1 to 1,000); p-values from 5 on (the paper repeated 10 times).
    #[arg(long, default_value_t = 5, value_name = "R", value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeats: u32,
    /// Also retrain on a variant of HUDD's selection, `hudd-all`: every labelled unsafe image, each
    /// cluster brought to the largest one's size by copies (the original keeps the ceil(test
    /// members) closest images per cluster, about half of what was labelled).
    #[arg(long)]
    hudd_all: bool,
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
        .in_pool(|| {
            Ok(retrain::compare(&run, csv, args.repeats as usize, options.seed, &options, args.hudd_all, &bars)?)
        })
        .with_context(|| format!("comparing HUDD with the baselines on {}", args.run.display()))?;
    print_table(&record);
    println!("\nrecord: {}", run.compare_json().display());
    Ok(())
}

/// `88.7 ± 0.2`, or `88.7` without a spread (one repeat, or the model before).
fn cell(m: &MeanSd) -> String {
    match m.sd {
        Some(sd) => format!("{:.1} ± {:.1}", 100.0 * m.mean, 100.0 * sd),
        None => format!("{:.1}", 100.0 * m.mean),
    }
}

/// `4` when every repeat gives the same, else `3–5`.
fn range(values: impl Iterator<Item = usize>) -> String {
    let v: Vec<usize> = values.collect();
    match (v.iter().min(), v.iter().max()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a}–{b}"),
        _ => String::new(),
    }
}

/// `0.012`, or `< 0.001`.
fn p_value(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => "< 0.001".into(),
        Some(p) => format!("{p:.3}"),
        None => "—".into(),
    }
}

/// Test accuracy (%) before and after each method, mean ± sd over the repeats, what each method
/// labelled and trained on, the kept epochs, and the tests.
pub fn print_table(r: &CompareRecord) {
    if r.improvement_wrong < r.budget {
        println!(
            "note: the model gets only {} improvement image(s) wrong; bl1 labels those instead of {}",
            r.improvement_wrong, r.budget
        );
    }
    println!("budget: {} labelled image(s) per method, {} repeat(s), seeds {}…", r.budget, r.repeats, r.seed);
    if r.improvement_images > 0 {
        let share = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
        println!(
            "the analysed model gets {} of the {} unsafe images wrong ({:.1} %), {} of all {} improvement images \
             ({:.1} %): bl1 draws only wrong ones, which takes labelling every improvement image\n",
            r.unsafe_wrong,
            r.budget,
            share(r.unsafe_wrong, r.budget),
            r.improvement_wrong,
            r.improvement_images,
            share(r.improvement_wrong, r.improvement_images)
        );
    } else {
        println!();
    }
    let methods = r.methods();
    print!("{:<26}{:>10}", "test accuracy (%)", "before");
    for (m, _) in &methods {
        print!("{:>14}", m.name());
    }
    println!();
    let line = |label: &str, before: String, f: &dyn Fn(&Summary) -> String| {
        print!("{label:<26}{before:>10}");
        for (_, s) in &methods {
            print!("{:>14}", f(s));
        }
        println!();
    };
    line("overall", cell(&r.before.overall), &|s| cell(&s.overall));
    line("root-cause clusters", cell(&r.before.failing_clusters), &|s| cell(&s.failing_clusters));
    for (i, c) in r.before.per_cluster.iter().enumerate() {
        line(&format!("  cluster {} ({} img)", c.cluster, c.members), cell(&c.accuracy), &|s| {
            s.per_cluster.get(i).map_or_else(String::new, |c| cell(&c.accuracy))
        });
    }
    line("images labelled", String::new(), &|s| range(s.repeats.iter().map(|x| x.labelled)));
    line("  trained on", String::new(), &|s| range(s.repeats.iter().map(|x| x.trained)));
    line("  held out (epoch choice)", String::new(), &|s| range(s.repeats.iter().map(|x| x.validation)));
    line("kept epoch", String::new(), &|s| range(s.repeats.iter().map(|x| x.chosen_epoch)));
    line("  unchanged model", String::new(), &|s| {
        format!("{} of {}", s.repeats.iter().filter(|x| x.unchanged).count(), s.repeats.len())
    });
    if r.tests.is_empty() {
        if r.repeats < MIN_TESTED_REPEATS {
            println!(
                "\nno test of HUDD against the baselines: {} repeat(s), {MIN_TESTED_REPEATS} needed (--repeats)",
                r.repeats
            );
        }
        return;
    }
    println!("\nHUDD against each baseline, two-sided p-values over {} repeats:", r.repeats);
    println!("{:<40}{:>12}{:>12}{:>16}", "", "difference", "Welch's t", "Mann–Whitney U");
    for t in &r.tests {
        println!(
            "{:<40}{:>12}{:>12}{:>16}",
            format!("{} vs {}, {}", t.method.name(), t.baseline.name(), t.measure.label()),
            format!("{:+.1} pp", 100.0 * t.difference),
            p_value(t.welch.map(|w| w.p)),
            p_value(t.mann_whitney.map(|u| u.p)),
        );
    }
}
