//! Step 7: retraining the model itself, from its own weights (the only user of candle).
//!
//! [`Net`] is the ONNX graph translated into candle operations, with the float weights in
//! trainable slots as variables; [`Trainer`] fine-tunes it with PyTorch's SGD (momentum, weight
//! decay) on batches of images; [`Net::weights`] hands the new values back as [`Weights`], which
//! [`crate::Model::with_weights`] writes into the same graph. No candle type leaves this module.

mod compare;
mod conv;
mod fit;
mod net;
mod pool;
mod sgd;
mod stage;
mod stats;

use candle_core::Tensor;
use ndarray::{ArrayD, ArrayViewD};

pub use compare::{
    compare, compare_keeping_first, ClusterSummary, CompareRecord, MeanSd, Measure, Method, Repeat, Significance,
    Summary, MIN_TESTED_REPEATS,
};
pub use fit::{fit, summary, EpochRecord, Example, FitOptions, Fitted, Keep};
pub use net::{trains, Mode, Net};
pub use sgd::SgdParams;
pub use stage::{
    accuracy, balanced_set, output_files, retrain, Accuracy, ClassAccuracy, ClusterAccuracy, DataCounts, FileRef,
    Hyperparameters, Labelled, RetrainOptions, RetrainRecord, Retrained, RunContext, ValidationFrom,
};
pub use stats::TestResult;

use crate::error::{Error, Result};
use crate::model::Weights;
use crate::rng::Rng;
use net::{candle_err, softmax, to_array, to_tensor};

/// The training loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Classification: mean cross-entropy of the softmax of the logits. A model that ends in a
    /// softmax is trained on the softmax's input, one that ends in a log-softmax on its output.
    CrossEntropy,
    /// Regression: mean squared error over every output value (PyTorch's `MSELoss`).
    Mse,
}

impl Loss {
    /// The loss that fits a task: cross-entropy for classes, MSE for regression.
    pub fn for_task(kind: crate::config::TaskKind) -> Loss {
        match kind {
            crate::config::TaskKind::Classification => Loss::CrossEntropy,
            crate::config::TaskKind::Regression => Loss::Mse,
        }
    }
}

/// What a batch should produce.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// One class index per image.
    Classes(Vec<u32>),
    /// The output values, batch first, the output's shape.
    Values(ArrayD<f32>),
}

impl Net {
    /// The loss of a batch and its gradient with respect to every trainable weight (by ONNX
    /// name). `output` is the index of the graph output that is trained; `seed` drives dropout.
    pub fn gradients(
        &self,
        input: ArrayViewD<'_, f32>,
        output: usize,
        targets: &Targets,
        loss: Loss,
        mode: Mode,
        seed: u64,
    ) -> Result<(f32, Weights)> {
        let (value, grads) = self.backward(input, output, targets, loss, mode, &mut Rng::new(seed))?;
        let mut out = Weights::new();
        for (name, var) in self.vars() {
            let g = match grads.get(var.as_tensor()) {
                Some(g) => to_array(g).map_err(|e| candle_err(name, e))?,
                None => ArrayD::zeros(var.as_tensor().dims()),
            };
            out.insert(name.clone(), g);
        }
        Ok((value, out))
    }

    fn backward(
        &self,
        input: ArrayViewD<'_, f32>,
        output: usize,
        targets: &Targets,
        loss: Loss,
        mode: Mode,
        rng: &mut Rng,
    ) -> Result<(f32, candle_core::backprop::GradStore)> {
        let (l, _) = self.loss(input, output, targets, loss, mode, rng)?;
        let value = scalar(&l)?;
        let grads = l.backward().map_err(|e| candle_err("loss (backward)", e))?;
        Ok((value, grads))
    }

    /// The loss of a batch at inference (dropout off) and the values the loss read (the logits
    /// or outputs), flattened, batch first.
    pub fn evaluate(
        &self,
        input: ArrayViewD<'_, f32>,
        output: usize,
        targets: &Targets,
        loss: Loss,
    ) -> Result<(f32, Vec<f32>)> {
        let (l, y) = self.loss(input, output, targets, loss, Mode::Eval, &mut Rng::new(0))?;
        let value = scalar(&l)?;
        let values = y.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| candle_err("output", e))?;
        Ok((value, values))
    }

    /// The loss tensor and the tensor it read.
    fn loss(
        &self,
        input: ArrayViewD<'_, f32>,
        output: usize,
        targets: &Targets,
        loss: Loss,
        mode: Mode,
        rng: &mut Rng,
    ) -> Result<(Tensor, Tensor)> {
        let name = self.output_name(output)?;
        let (head, softmax_kind) = self.head(name).unwrap_or((name, None));
        // A softmax at the end: its input holds the logits.
        let (read, log_probs) = match (loss, softmax_kind) {
            (Loss::CrossEntropy, Some(false)) => (head, false),
            (Loss::CrossEntropy, Some(true)) => (name, true),
            _ => (name, false),
        };
        let x = to_tensor(input, self.device()).map_err(|e| candle_err("input", e))?;
        let values = self.run(&x, mode, rng, Some(read))?;
        let y = values.get(read).ok_or_else(|| Error::Training {
            reason: format!("output `{read}` is not computed from the input: {}", self.path().display()),
        })?;
        let l = match (loss, targets) {
            (Loss::CrossEntropy, Targets::Classes(classes)) => {
                let logp = if log_probs { y.clone() } else { softmax(y, 1, true).map_err(|e| candle_err(read, e))? };
                let t = Tensor::from_vec(classes.clone(), classes.len(), self.device())
                    .map_err(|e| candle_err("targets", e))?;
                candle_nn::loss::nll(&logp, &t)
            }
            (Loss::Mse, Targets::Values(v)) => {
                let t = to_tensor(v.view(), self.device()).map_err(|e| candle_err("targets", e))?;
                candle_nn::loss::mse(y, &t)
            }
            (loss, _) => {
                return Err(Error::Training { reason: format!("the targets do not fit the loss {loss:?}") });
            }
        };
        Ok((l.map_err(|e| candle_err("loss", e))?, y.clone()))
    }

    fn output_name(&self, output: usize) -> Result<&str> {
        self.outputs().get(output).map(String::as_str).ok_or_else(|| Error::Training {
            reason: format!("the model has no output {output}: {}", self.path().display()),
        })
    }
}

/// The value of a loss tensor.
fn scalar(loss: &Tensor) -> Result<f32> {
    loss.to_scalar::<f32>().map_err(|e| candle_err("loss", e))
}

/// Fine-tunes a [`Net`] with PyTorch's SGD.
#[derive(Debug)]
pub struct Trainer {
    net: Net,
    sgd: sgd::Sgd,
    output: usize,
    loss: Loss,
}

impl Trainer {
    /// A trainer of `output` (graph output index) of `net` under `loss`.
    pub fn new(net: Net, params: SgdParams, output: usize, loss: Loss) -> Trainer {
        let sgd = sgd::Sgd::new(params, net.vars().len());
        Trainer { net, sgd, output, loss }
    }

    /// One optimiser step on a batch; returns the batch's loss before the step.
    pub fn step(&mut self, input: ArrayViewD<'_, f32>, targets: &Targets, mode: Mode, seed: u64) -> Result<f32> {
        let (value, grads) = self.net.backward(input, self.output, targets, self.loss, mode, &mut Rng::new(seed))?;
        self.sgd.step(self.net.vars(), &grads)?;
        Ok(value)
    }

    /// The network being trained.
    pub fn net(&self) -> &Net {
        &self.net
    }
}

#[cfg(test)]
mod tests;
