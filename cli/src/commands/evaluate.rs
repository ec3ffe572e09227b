//! `hudd evaluate`: the test step.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hudd_core::config::TaskKind;
use hudd_core::{Evaluation, Evaluator};

use super::{ModelData, RunOptions, ShardArg};
use crate::progress::Bars;

/// Runs the model on train/, test/ and improvement/ (whichever exist) and writes
/// RUN/results/{train,test,improvement}.csv (image,result,expected,predicted,one score per class,
/// metadata), RUN/results/skipped.csv (files that could not be used, with the reason) and
/// RUN/results/summary.json; prints accuracy per split and per class.
#[derive(Debug, Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    input: ModelData,
    /// Run folder; results go to RUN/results/.
    #[arg(long, short = 'o', value_name = "RUN")]
    out: PathBuf,
    #[command(flatten)]
    shard: ShardArg,
    #[command(flatten)]
    run: RunOptions,
}

pub fn run(args: EvaluateArgs) -> Result<()> {
    let config = args.run.config(&args.input.model.model)?;
    let (model, data) = args.input.open(&config)?;
    let evaluator = Evaluator::new(&model, &data, &config)
        .with_context(|| format!("the configuration does not fit the model {}", args.input.model.model.display()))?;
    let bars = Bars::new(args.run.exec.quiet);
    if let Some(shard) = args.shard.shard {
        let evaluation = args.run.in_pool(|| Ok(evaluator.run_shard(shard, &bars)?))?;
        let dir = evaluator
            .write_shard(&evaluation, shard, &args.out)
            .with_context(|| format!("writing shard {shard} into {}", args.out.display()))?;
        print_summary(&evaluation);
        ShardArg::done(shard, &dir, &args.out);
        return Ok(());
    }
    let out = hudd_core::run::RunDir::new(&args.out);
    let _lock = out.lock("hudd evaluate")?;
    let evaluation = args.run.in_pool(|| Ok(evaluator.run(&bars)?))?;
    let results = out.results();
    evaluation.write(&results).with_context(|| format!("writing results to {}", results.display()))?;
    print_summary(&evaluation);
    for reason in [evaluation.guessed_class_order_problem(), evaluation.single_class_problem()].into_iter().flatten() {
        eprintln!("warning: {reason}");
    }
    println!("\nresults: {}", results.display());
    Ok(())
}

fn print_summary(e: &Evaluation) {
    println!("{:<12} {:>8} {:>8} {:>8} {:>8} {:>9}", "split", "images", "correct", "wrong", "skipped", "accuracy");
    for s in &e.splits {
        let c = s.correct();
        println!(
            "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8.2}%",
            s.split.name(),
            s.rows.len(),
            c,
            s.rows.len() - c,
            s.skipped.len(),
            100.0 * s.accuracy()
        );
    }
    if e.task == TaskKind::Classification {
        print!("\n{:<20}", "class");
        for s in &e.splits {
            print!(" {:>18}", s.split.name());
        }
        println!();
        let stats: Vec<_> = e.splits.iter().map(|s| s.per_class(&e.classes)).collect();
        for (c, class) in e.classes.iter().enumerate() {
            print!("{class:<20}");
            for st in &stats {
                let st = &st[c];
                let acc = if st.total == 0 { 0.0 } else { 100.0 * st.correct as f64 / st.total as f64 };
                print!(" {:>10} {:>6.1}%", format!("{}/{}", st.correct, st.total), acc);
            }
            println!();
        }
    }
    let skipped: usize = e.splits.iter().map(|s| s.skipped.len()).sum();
    if skipped > 0 {
        println!("\n{skipped} file(s) skipped; reasons in results/skipped.csv");
    }
}
