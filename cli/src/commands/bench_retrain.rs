//! `hudd bench retrain`: one epoch of `hudd retrain`'s fine-tuning on the training split of a
//! dataset, timed per repeat (the PyTorch side is `models/scripts/bench_retrain.py`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::progress::Silent;
use hudd_core::retrain::{fit, Example, FitOptions, Keep, SgdParams};
use hudd_core::{Config, Dataset, Model, Split};

/// Times epochs of the retraining loop (SGD lr 1e-3, momentum 0.9, weight decay 5e-4, every layer
/// trainable, dropout active; PNG decoding of each batch included) over every image of DATA/train,
/// in a seeded shuffled order. Prints the seconds of each timed epoch, the median and images/s.
#[derive(Debug, Args)]
pub struct RetrainBench {
    /// The exported ONNX model.
    #[arg(long, short = 'm', value_name = "MODEL.onnx")]
    model: PathBuf,
    /// Configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Dataset folder with a train split.
    #[arg(long, short = 'd', value_name = "DATA")]
    data: PathBuf,
    /// Images per optimiser step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Timed epochs (each from the model's own weights).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Worker threads.
    #[arg(long, short = 'j', default_value_t = 2)]
    threads: usize,
}

pub fn run(a: RetrainBench) -> Result<()> {
    let config = Config::load(a.config.as_deref(), &[])?;
    let model = Model::load(&a.model)?;
    let data = Dataset::open(&a.data, &config.task)?;
    let train = data.split(Split::Train).context("the dataset has no train split")?;
    if train.samples.len() < 2 {
        bail!("the train split needs at least 2 images: {}", a.data.display());
    }
    let examples: Vec<Example> =
        train.samples.iter().map(|s| Example { path: s.path.clone(), label: s.label.clone() }).collect();
    let spec = config.input_spec(model.info())?;
    let options = FitOptions {
        epochs: 1,
        batch_size: a.batch_size.max(1),
        sgd: SgdParams::HUDD,
        loss: hudd_core::retrain::Loss::for_task(config.task.kind),
        output: config.task.output_index(model.info())?,
        seed: 0,
        keep: Keep::Last,
    };
    let pool = super::pool(a.threads)?;
    println!("{} images, batch {}, {} thread(s)", examples.len(), options.batch_size, a.threads);
    let mut seconds = Vec::new();
    for r in 0..a.repeat.max(1) {
        // One image validates (not timed): the figure is the epoch's training steps.
        let fitted = pool.install(|| fit(&model, &spec, &examples, &examples[..1], &options, &Silent))?;
        let s = fitted.epoch_seconds[0];
        println!("epoch {}: {s:.2} s ({:.0} images/s)", r + 1, examples.len() as f64 / s);
        seconds.push(s);
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    println!("median {median:.2} s per epoch, {:.0} images/s", examples.len() as f64 / median);
    Ok(())
}
