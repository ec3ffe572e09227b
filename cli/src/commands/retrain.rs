//! `hudd retrain`: fine-tune the ONNX model itself on its training split plus the labelled,
//! balanced unsafe set, and write the improved ONNX file (HUDD's Step 7).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::retrain::{self, Accuracy, Keep, RetrainOptions, RetrainRecord, RunContext, SgdParams, ValidationFrom};
use hudd_core::run::RunDir;

use super::ExecOptions;
use crate::progress::Bars;

/// Retrains the analysed model from its own weights, every layer, with candle: the run's training
/// split plus the balanced unsafe set (each image as many times as `hudd bootstrap` copied it),
/// SGD with momentum and weight decay, no augmentation; cross-entropy for a classifier, mean
/// squared error for a regressor (labels: its targets in output order, separated by spaces). A
/// seeded share of the labelled images, drawn per root-cause cluster, is held out and not trained
/// on (images the analysed model never saw; --validation-from training draws from the training
/// split too, as the original toolset); the epoch that does best on them is kept (highest
/// accuracy, then lowest loss; for a regressor lowest loss; epoch 0, the original weights, when
/// none beats them — said as "unchanged"). The new
/// weights go back into the same ONNX graph, so OUT runs wherever the original ran. Writes OUT
/// and RUN/retrain/retrain.json (hyperparameters, seeds, per-epoch history, the chosen epoch, test
/// accuracy before and after: overall, per class and per root-cause cluster). Same inputs and
/// seeds give the same OUT bytes, whatever -j.
#[derive(Debug, Args)]
pub struct RetrainArgs {
    /// The run folder, after `hudd assign`.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// The engineers' labels of the unsafe set (a CSV with `path` or `image`, and `label`; e.g.
    /// RUN/unsafe/to-label.csv filled in), or `auto` for the labels the improvement data carries.
    /// They are checked and balanced as `hudd bootstrap` does (RUN/unsafe/balanced.csv).
    #[arg(long, value_name = "CSV|auto")]
    labels: String,
    /// Where to write the retrained model: the analysed model's graph with the new weights. A
    /// model that keeps its weights in a file beside it (PyTorch's default exporter:
    /// NAME.onnx.data) is written the same way: M2.onnx and M2.onnx.data. The analysed model's own
    /// files are refused.
    #[arg(long, short = 'o', value_name = "M2.onnx")]
    out: PathBuf,
    /// Seed of the bootstrap balancing (as `hudd bootstrap --seed`).
    #[arg(long, default_value_t = 0, value_name = "SEED")]
    bootstrap_seed: u64,
    #[command(flatten)]
    training: TrainingFlags,
    #[command(flatten)]
    exec: ExecOptions,
}

/// The fine-tuning settings (`hudd retrain`, `hudd compare`): HUDD's, except the held-out images,
/// which follow the retraining study (BENCHMARKS.md).
#[derive(Debug, Args)]
pub struct TrainingFlags {
    /// Passes over the training images (1 to 100,000).
    #[arg(long, default_value_t = 5, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    epochs: u32,
    /// Images per optimiser step.
    #[arg(long, default_value_t = 128, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// SGD learning rate (the original toolset's; in the retraining study 1e-2 gained more on
    /// Fashion-MNIST and collapsed on the demo, BENCHMARKS.md; lower it if the training diverges).
    #[arg(long, default_value_t = SgdParams::default().lr, value_name = "LR")]
    lr: f64,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9, value_name = "M")]
    momentum: f64,
    /// SGD weight decay (L2).
    #[arg(long, default_value_t = 5e-4, value_name = "L2")]
    weight_decay: f64,
    /// Share of the images of --validation-from held out to choose the kept epoch (and not
    /// trained on).
    #[arg(long, default_value_t = 0.2, value_name = "SHARE")]
    validation: f64,
    /// Where the held-out images come from: `labelled`, the labelled images added (the unsafe
    /// set, or a baseline's), drawn per root-cause cluster (per class for a baseline) — images the
    /// analysed model never trained on; or `training`, the training split and the labelled images
    /// together, as the original HUDD toolset (the analysed model was trained on most of them, so
    /// it tends to keep epoch 0, the unchanged model).
    #[arg(long, value_enum, default_value_t = ValidationFrom::Labelled, value_name = "FROM")]
    validation_from: ValidationFrom,
    /// Seed of the validation draw, the shuffles and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Which epoch's weights to write: the best on the held-out images, or the last.
    #[arg(long, value_enum, default_value_t = Keep::Best)]
    keep: Keep,
}

impl TrainingFlags {
    pub fn options(&self) -> Result<RetrainOptions> {
        if !(self.validation > 0.0 && self.validation < 1.0) {
            bail!("--validation must be a share between 0 and 1, e.g. 0.1");
        }
        for (name, v) in [("--lr", self.lr), ("--momentum", self.momentum), ("--weight-decay", self.weight_decay)] {
            if !(v >= 0.0 && v.is_finite()) {
                bail!("{name} must be a finite number ≥ 0");
            }
        }
        Ok(RetrainOptions {
            epochs: self.epochs as usize,
            batch_size: self.batch_size as usize,
            sgd: SgdParams { lr: self.lr, momentum: self.momentum, weight_decay: self.weight_decay },
            validation_fraction: self.validation,
            validation_from: self.validation_from,
            seed: self.seed,
            keep: self.keep,
        })
    }
}

pub fn run(args: RetrainArgs) -> Result<()> {
    let options = args.training.options()?;
    let run = RunDir::new(&args.run);
    let _lock = run.lock("hudd retrain")?;
    let bars = Bars::new(args.exec.quiet);
    let record = args
        .exec
        .in_pool(|| retrain_run(&run, &args.labels, args.bootstrap_seed, &options, &args.out, &bars))
        .with_context(|| format!("retraining the model of {}", args.run.display()))?;
    print_record(&record);
    say_written(&record, &args.out);
    println!("record: {}", run.retrain_json().display());
    Ok(())
}

/// Labels and balances the unsafe set, retrains and writes OUT and `retrain.json`.
pub fn retrain_run(
    run: &RunDir,
    labels: &str,
    bootstrap_seed: u64,
    options: &RetrainOptions,
    out: &Path,
    bars: &Bars,
) -> Result<RetrainRecord> {
    let ctx = RunContext::open(run)?;
    retrain::output_files(&ctx, run, out)?;
    let csv = (labels != "auto").then(|| Path::new(labels));
    let done =
        hudd_core::bootstrap::bootstrap(run, csv, bootstrap_seed).context("labelling and balancing the unsafe set")?;
    super::bootstrap::say_ignored(done.ignored_labels);
    let extra = retrain::balanced_set(run, &ctx.label_kind())?;
    let before = ctx.test_accuracy(&ctx.model, bars)?;
    let mut done = retrain::retrain(&ctx, &extra, "unsafe set", options, &before, bars)?;
    done.record.seeds.insert("bootstrap".into(), bootstrap_seed);
    Ok(done.write(&ctx.model, run, out)?)
}

/// Where the model went, and whether it is the analysed one unchanged (the kept epoch is 0).
pub fn say_written(record: &RetrainRecord, out: &Path) {
    if record.unchanged {
        println!(
            "\nno epoch did better than the analysed model on the {} held-out images: {} holds the analysed \
             weights unchanged (try more --epochs or another --lr; --keep last writes the last epoch)",
            record.data.validation_images,
            out.display()
        );
    } else {
        println!("\nretrained model: {}", out.display());
    }
}

/// The history and the before/after table.
pub fn print_record(r: &RetrainRecord) {
    println!(
        "{} training examples per epoch: {} training image(s) and {} {} image(s) ({} with copies), less {} held out",
        r.data.training_examples,
        r.data.train_images,
        r.data.extra_images,
        r.extra,
        r.data.extra_copies,
        r.data.validation_images
    );
    for h in &r.history {
        let mark = if h.epoch == r.chosen_epoch { "  ← kept" } else { "" };
        println!("  {}{mark}", retrain::summary(h));
    }
    println!();
    print_accuracy_table(&[("before", &r.before), ("after", &r.after)]);
}

/// Test accuracy overall, on the root-cause clusters' members, and per cluster, one column per
/// model.
pub fn print_accuracy_table(columns: &[(&str, &Accuracy)]) {
    let pct = |x: f64| format!("{:.1} %", 100.0 * x);
    print!("{:<24}", "test accuracy");
    for (name, _) in columns {
        print!("{name:>10}");
    }
    println!();
    let row = |label: &str, f: &dyn Fn(&Accuracy) -> String| {
        print!("{label:<24}");
        for (_, a) in columns {
            print!("{:>10}", f(a));
        }
        println!();
    };
    row("overall", &|a| pct(a.overall));
    row("root-cause clusters", &|a| pct(a.failing_clusters));
    if let Some((_, first)) = columns.first() {
        for (i, c) in first.per_cluster.iter().enumerate() {
            row(&format!("  cluster {} ({} img)", c.cluster, c.members), &|a| {
                a.per_cluster.get(i).map_or_else(String::new, |c| format!("{}/{}", c.right, c.members))
            });
        }
    }
}
