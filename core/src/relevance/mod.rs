//! Layer-wise relevance propagation (LRP), designed like Zennit: a [`Rule`] is a small value, each
//! op family has one propagation step ([`LinearMap`] for dense, convolution and average-pooling
//! layers; winner-takes-all for max pooling; splits and reshapes for the rest), and a [`Preset`]
//! maps layers to rules.
//!
//! [`Explainer::new`] rewrites the model graph once ([`Program`]: batch norms merged, shape
//! computations dropped, unsupported ops reported with their node) and [`Explainer::explain`] then
//! propagates a batch. The relevance of a tensor is the relevance value itself, shaped like the tensor
//! (Zennit's `.grad` of that tensor under the composite), not activation × relevance.

pub mod composite;
pub mod linear;
pub mod pool;
pub mod program;
pub mod rule;

use std::collections::{BTreeMap, HashSet};

use ndarray::{ArrayD, ArrayViewD, Axis};

pub use composite::{LayerKind, Preset};
pub use linear::{Conv2d, Dense, LinearMap, Params};
pub use pool::{AvgPool2d, GlobalAvgPool, Window};
pub use program::{Program, Step, StepKind};
pub use rule::{stabilize, Rule};

use crate::config::InputSpec;
use crate::error::{Error, Result};
use crate::model::Model;

/// Where relevance starts, at the explained output.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// Classifiers (HUDD): the predicted class's logit, every other logit zeroed.
    Predicted,
    /// Classifiers: the logit of the given class of each image (e.g. its label), others zeroed.
    Classes(Vec<usize>),
    /// Every output value as it is.
    AllOutputs,
}

/// Relevance of every tensor visited, by ONNX tensor name, batch first.
pub type Relevances = BTreeMap<String, ArrayD<f32>>;

/// Computes relevance for batches of images with one model and one preset.
#[derive(Debug)]
pub struct Explainer<'m> {
    model: &'m Model,
    program: Program,
}

impl<'m> Explainer<'m> {
    /// Prepares relevance propagation towards model output `output` (the rules of `preset`; input
    /// bounds for z^B from `spec`). Fails before any work on an op without a relevance rule.
    pub fn new(model: &'m Model, spec: &InputSpec, output: &str, preset: Preset) -> Result<Self> {
        let probe = ArrayD::<f32>::zeros(ndarray::IxDyn(&spec.batch_shape(1)));
        let acts = model.run_with_activations(probe.view())?;
        let data: HashSet<String> = acts.tensors.keys().cloned().collect();
        let low = (0..spec.channels).map(|c| (0.0 * spec.scale - spec.mean[c]) / spec.std[c]).collect();
        let high = (0..spec.channels).map(|c| (255.0 * spec.scale - spec.mean[c]) / spec.std[c]).collect();
        let program = Program::new(model.graph(), model.path(), &data, output, preset, &(low, high))?;
        Ok(Explainer { model, program })
    }

    /// The rewritten graph with the rule of every step.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Runs the model on `batch` and propagates relevance from the output to the input.
    pub fn explain(&self, batch: ArrayViewD<'_, f32>, start: &Start) -> Result<Relevances> {
        let acts = self.model.run_with_activations(batch)?;
        let out = acts.tensors.get(&self.program.start).ok_or_else(|| Error::ModelInterface {
            path: self.model.path().to_path_buf(),
            reason: format!("the explained output `{}` is not a float tensor", self.program.start),
        })?;
        let r0 = start_relevance(out, start)?;
        self.program.propagate(&acts.tensors, r0)
    }
}

/// The start relevance for `output` (`[N, K]`, or any shape for [`Start::AllOutputs`]).
pub fn start_relevance(output: &ArrayD<f32>, start: &Start) -> Result<ArrayD<f32>> {
    if *start == Start::AllOutputs {
        return Ok(output.clone());
    }
    let n = output.shape()[0];
    let flat =
        output.as_standard_layout().into_owned().into_shape_with_order((n, output.len() / n.max(1))).map_err(|e| {
            Error::ShapeMismatch { tensor: "output".into(), actual: output.shape().to_vec(), expected: e.to_string() }
        })?;
    let mut r = ndarray::Array2::<f32>::zeros(flat.raw_dim());
    for (i, row) in flat.axis_iter(Axis(0)).enumerate() {
        let c = match start {
            Start::Predicted => crate::evaluate::argmax(row.as_slice().unwrap_or(&row.to_vec())),
            Start::Classes(cs) => *cs.get(i).ok_or_else(|| Error::Config(format!("no start class for image {i}")))?,
            Start::AllOutputs => unreachable!(),
        };
        if c >= row.len() {
            return Err(Error::Config(format!("start class {c} is outside the model's {} outputs", row.len())));
        }
        r[[i, c]] = row[c];
    }
    r.into_shape_with_order(output.raw_dim()).map_err(|e| Error::ShapeMismatch {
        tensor: "output".into(),
        actual: output.shape().to_vec(),
        expected: e.to_string(),
    })
}
