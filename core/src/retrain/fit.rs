//! The fine-tuning loop: epochs of seeded shuffled batches, decoded as they are needed, and the
//! epoch to keep chosen on a held-out validation set.

use std::path::PathBuf;

use ndarray::ArrayD;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Loss, Mode, Net, SgdParams, Targets, Trainer};
use crate::config::InputSpec;
use crate::dataset::Label;
use crate::error::{Error, Result};
use crate::model::{argmax, Model, Weights};
use crate::progress::Progress;
use crate::rng::Rng;

/// One training or validation image.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The image file.
    pub path: PathBuf,
    /// What the model should produce for it.
    pub label: Label,
}

/// Settings of one fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// The optimiser.
    pub sgd: SgdParams,
    /// The loss.
    pub loss: Loss,
    /// Index of the graph output that is trained.
    pub output: usize,
    /// Seed of the shuffles and of dropout.
    pub seed: u64,
    /// Which epoch's weights to keep.
    pub keep: Keep,
}

/// Which epoch's weights a fine-tuning keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Keep {
    /// The epoch that does best on the validation images (accuracy, then loss; for regression,
    /// loss); the original weights when no epoch beats them.
    #[default]
    Best,
    /// The last epoch's.
    Last,
}

/// What one epoch achieved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0: the model before training; then 1, 2, ….
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (none for epoch 0).
    pub train_loss: Option<f64>,
    /// Mean loss on the validation images.
    pub validation_loss: f64,
    /// Classification: the fraction of validation images classified right.
    pub validation_accuracy: Option<f64>,
}

/// The result: the weights of the chosen epoch and the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The trainable weights of the chosen epoch, by ONNX name.
    pub weights: Weights,
    /// Every epoch, 0 (before training) first.
    pub history: Vec<EpochRecord>,
    /// The chosen epoch (0: no epoch beat the original model on the validation images).
    pub chosen: usize,
    /// Wall-clock seconds of each epoch's training steps (decoding included, validation not);
    /// the only field that differs between identical runs.
    pub epoch_seconds: Vec<f64>,
}

/// Fine-tunes `model` on `train`, keeping the epoch that does best on `validation` (accuracy for
/// classification, then loss; loss for regression; an earlier epoch on ties), or the last one.
pub fn fit(
    model: &Model,
    spec: &InputSpec,
    train: &[Example],
    validation: &[Example],
    options: &FitOptions,
    progress: &dyn Progress,
) -> Result<Fitted> {
    if train.is_empty() || validation.is_empty() {
        return Err(Error::Training { reason: "no training or no validation images".into() });
    }
    let batch = options.batch_size.max(1);
    let net = Net::new(model)?;
    let mut history = vec![validate(&net, spec, validation, options)?];
    let mut best = (0, net.weights()?);
    let mut trainer = Trainer::new(net, options.sgd, options.output, options.loss);
    let mut rng = Rng::new(options.seed);
    let steps = train.len().div_ceil(batch) as u64;
    let mut epoch_seconds = Vec::with_capacity(options.epochs);
    for epoch in 1..=options.epochs {
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        progress.start(&format!("epoch {epoch}/{}", options.epochs), steps);
        let mut total = 0.0;
        let started = std::time::Instant::now();
        for (step, chunk) in order.chunks(batch).enumerate() {
            let examples: Vec<&Example> = chunk.iter().map(|&i| &train[i]).collect();
            let (x, targets) = load_batch(spec, &examples, options.loss)?;
            let loss = trainer.step(x.view(), &targets, Mode::Train, rng.next_u64())?;
            if !loss.is_finite() {
                // Diverged: every later step would train on NaN weights. Stop; nothing is written.
                progress.finish();
                return Err(Error::Training {
                    reason: format!(
                        "training diverged at epoch {epoch}, step {} of {steps}: the loss is {loss} (the weights \
                         overflowed); no model was written. Retrain with a smaller learning rate (--lr, now {}), \
                         e.g. a tenth of it",
                        step + 1,
                        options.sgd.lr
                    ),
                });
            }
            total += f64::from(loss) * examples.len() as f64;
            progress.advance(1);
        }
        progress.finish();
        epoch_seconds.push(started.elapsed().as_secs_f64());
        let mut record = validate(trainer.net(), spec, validation, options)?;
        record.epoch = epoch;
        record.train_loss = Some(total / train.len() as f64);
        progress.message(&format!("{} ({:.1} s)", summary(&record), epoch_seconds[epoch - 1]));
        if options.keep == Keep::Last || better(&record, &history[best.0]) {
            best = (epoch, trainer.net().weights()?);
        }
        history.push(record);
    }
    Ok(Fitted { weights: best.1, history, chosen: best.0, epoch_seconds })
}

/// `epoch 3: loss 0.412, validation loss 0.388, accuracy 91.2 %`.
pub fn summary(r: &EpochRecord) -> String {
    let mut s = format!("epoch {}:", r.epoch);
    if let Some(l) = r.train_loss {
        s += &format!(" loss {l:.4},");
    }
    s += &format!(" validation loss {:.4}", r.validation_loss);
    if let Some(a) = r.validation_accuracy {
        s += &format!(", accuracy {:.1} %", 100.0 * a);
    }
    s
}

fn better(a: &EpochRecord, b: &EpochRecord) -> bool {
    match (a.validation_accuracy, b.validation_accuracy) {
        (Some(x), Some(y)) if x != y => x > y,
        _ => a.validation_loss < b.validation_loss,
    }
}

/// Decodes a batch (in parallel) and its targets.
fn load_batch(spec: &InputSpec, examples: &[&Example], loss: Loss) -> Result<(ArrayD<f32>, Targets)> {
    let images = examples
        .par_iter()
        .map(|e| {
            crate::input::load(&e.path, spec)
                .map_err(|reason| Error::Training { reason: format!("cannot read {}: {reason}", e.path.display()) })
        })
        .collect::<Result<Vec<_>>>()?;
    let x = crate::input::stack(&images, spec);
    let targets = match loss {
        Loss::CrossEntropy => Targets::Classes(
            examples
                .iter()
                .map(|e| match &e.label {
                    Label::Class(c) => Ok(*c as u32),
                    Label::Target(_) => Err(Error::Training {
                        reason: format!("{} has regression targets, the loss is cross-entropy", e.path.display()),
                    }),
                })
                .collect::<Result<_>>()?,
        ),
        Loss::Mse => {
            let rows = examples
                .iter()
                .map(|e| match &e.label {
                    Label::Target(t) => Ok(t.clone()),
                    Label::Class(_) => Err(Error::Training {
                        reason: format!("{} has a class label, the loss is MSE", e.path.display()),
                    }),
                })
                .collect::<Result<Vec<_>>>()?;
            let width = rows.first().map_or(0, Vec::len);
            if rows.iter().any(|r| r.len() != width) {
                return Err(Error::Training { reason: "regression targets of different lengths".into() });
            }
            Targets::Values(
                ArrayD::from_shape_vec(ndarray::IxDyn(&[rows.len(), width]), rows.concat())
                    .expect("rows × width values"),
            )
        }
    };
    Ok((x, targets))
}

/// Loss and accuracy of `net` on `examples` (dropout off).
fn validate(net: &Net, spec: &InputSpec, examples: &[Example], options: &FitOptions) -> Result<EpochRecord> {
    let (mut loss, mut right) = (0.0, 0usize);
    for chunk in examples.chunks(options.batch_size.max(1)) {
        let refs: Vec<&Example> = chunk.iter().collect();
        let (x, targets) = load_batch(spec, &refs, options.loss)?;
        let (l, outputs) = net.evaluate(x.view(), options.output, &targets, options.loss)?;
        loss += f64::from(l) * chunk.len() as f64;
        if let Targets::Classes(classes) = &targets {
            let width = outputs.len() / chunk.len().max(1);
            right += classes
                .iter()
                .enumerate()
                .filter(|(i, &c)| argmax(&outputs[i * width..(i + 1) * width]) == c as usize)
                .count();
        }
    }
    let n = examples.len() as f64;
    Ok(EpochRecord {
        epoch: 0,
        train_loss: None,
        validation_loss: loss / n,
        validation_accuracy: (options.loss == Loss::CrossEntropy).then(|| right as f64 / n),
    })
}
