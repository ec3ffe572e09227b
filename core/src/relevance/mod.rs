//! Layer-wise relevance propagation (LRP), designed like Zennit: a [`Rule`] is a small value, each
//! op family has one propagation step ([`LinearMap`] for dense, convolution and average-pooling
//! layers; winner-takes-all for max pooling; splits and reshapes for the rest), and a [`Preset`]
//! maps layers to rules.
//!
//! [`Explainer::new`] rewrites the model graph once ([`Program`]: batch norms merged, shape
//! computations dropped, unsupported ops reported with their node) and [`Explainer::explain`] then
//! propagates a batch. The relevance of a tensor is the relevance value itself, shaped like the tensor
//! (Zennit's `.grad` of that tensor under the composite), not activation × relevance.

mod canonize;
pub mod composite;
pub mod linear;
pub mod pool;
pub mod program;
pub mod routing;
pub mod rule;

use std::collections::{BTreeMap, HashSet};

use ndarray::{ArrayD, ArrayViewD, Axis};

pub use composite::{LayerKind, Preset};
pub use linear::{Conv2d, Dense, LinearMap, NoWeights, ParamMod, Params, Weights};
pub use pool::{AvgPool2d, GlobalAvgPool, Window};
pub use program::{Program, Step, StepKind};
pub use rule::{stabilize, BoundRule, Rule};

use crate::error::{Error, Result};
use crate::model::Model;

/// Where relevance starts, at the explained output.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// Classifiers (HUDD): the predicted class's logit, every other logit zeroed.
    Predicted,
    /// Classifiers: the logit of the given class of each image (e.g. its label), others zeroed.
    Classes(Vec<usize>),
    /// Every output value as it is (regressors).
    AllOutputs,
    /// Regressors (HUDD): per image only the worst output against its targets — the value with the
    /// largest absolute error, or with `keypoints` the (x, y) pair with the largest distance.
    Worst {
        /// Targets per image, in output order.
        targets: Vec<Vec<f32>>,
        /// Outputs are (x, y) pairs.
        keypoints: bool,
    },
}

/// Relevance of every tensor visited, by ONNX tensor name, batch first.
pub type Relevances = BTreeMap<String, ArrayD<f32>>;

/// Computes relevance for batches of images with one model and one preset.
#[derive(Debug)]
pub struct Explainer<'m> {
    model: &'m Model,
    program: Program,
    image_shape: Vec<usize>,
    /// The tensors the propagation reads (sorted): the forward run asks the engine for these only.
    needed: Vec<String>,
}

/// What the relevance needs to know about the model input (from the preprocessing, e.g.
/// `InputSpec::domain`): one image's tensor shape without the batch axis, and the lowest and
/// highest value each channel can take (the bounds of the z^B rule).
#[derive(Debug, Clone, PartialEq)]
pub struct InputDomain {
    /// One image's tensor shape, without the batch axis.
    pub image_shape: Vec<usize>,
    /// Lowest value per channel.
    pub low: Vec<f32>,
    /// Highest value per channel.
    pub high: Vec<f32>,
}

impl<'m> Explainer<'m> {
    /// Prepares relevance propagation towards model output `output` (the rules of `preset`; input
    /// bounds for z^B from `input`). Fails before any work on an op without a relevance rule.
    pub fn new(model: &'m Model, input: &InputDomain, output: &str, preset: Preset) -> Result<Self> {
        let data: HashSet<String> = model.activation_names(&input.image_shape)?;
        let bounds = (input.low.clone(), input.high.clone());
        let program = Program::new(model.graph(), model.path(), &data, output, preset, &bounds)?;
        let needed = program.reads();
        Ok(Explainer { model, program, image_shape: input.image_shape.clone(), needed })
    }

    /// The model it explains.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// The rewritten graph with the rule of every step.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// Floating-point operations per image of the dense and convolution layers that one explanation
    /// runs: the forward run plus the passes each bound rule makes (2 per multiply-add), counted on
    /// a probe image of mid-grey (0.5) inputs: branches of inputs that cannot occur are skipped,
    /// as they are at run time. Other ops are cheap in comparison and not counted. For throughput
    /// figures (GFLOP/s).
    pub fn flops_per_image(&self) -> Result<u64> {
        let mut shape = vec![1];
        shape.extend(&self.image_shape);
        let probe = ArrayD::<f32>::from_elem(ndarray::IxDyn(&shape), 0.5);
        let acts = self.model.run_with_activations(probe.view())?;
        let spatial =
            |name: &str| acts.tensors.get(name).map(|a| a.shape().iter().skip(2).product::<usize>()).unwrap_or(1);
        let mut total: u64 = 0;
        for s in &self.program.steps {
            let macs = match &s.kind {
                StepKind::Dense(p) => p.weight.len(),
                StepKind::Conv(_, p) => p.weight.len() * spatial(&s.output),
                StepKind::ConvTranspose(_, p) => {
                    p.weight.len() * spatial(s.inputs.first().map(String::as_str).unwrap_or(""))
                }
                _ => 0,
            };
            let x = s.inputs.first().and_then(|i| acts.tensors.get(i));
            let passes = match (&s.bound, x) {
                (Some(b), Some(x)) => b.passes(x, acts.tensors.contains_key(&s.output)),
                _ => 0,
            };
            total += 2 * (macs * (1 + passes)) as u64;
        }
        Ok(total)
    }

    /// Runs the model on `batch` and propagates relevance from the output to the input.
    pub fn explain(&self, batch: ArrayViewD<'_, f32>, start: &Start) -> Result<Relevances> {
        let acts = self.model.run_with_named(batch, &self.needed)?;
        let out = acts.tensors.get(&self.program.start).ok_or_else(|| Error::ModelInterface {
            path: self.model.path().to_path_buf(),
            reason: format!("the explained output `{}` is not a float tensor", self.program.start),
        })?;
        let r0 = start_relevance(out, start)?;
        self.program.propagate(&acts, r0)
    }
}

/// The start relevance for `output` (`[N, K]`, or any shape for [`Start::AllOutputs`]).
pub fn start_relevance(output: &ArrayD<f32>, start: &Start) -> Result<ArrayD<f32>> {
    if *start == Start::AllOutputs {
        return Ok(output.clone());
    }
    if let Start::Worst { targets, keypoints } = start {
        return worst_relevance(output, targets, *keypoints);
    }
    let n = output.shape()[0];
    let flat =
        output.as_standard_layout().into_owned().into_shape_with_order((n, output.len() / n.max(1))).map_err(|e| {
            Error::ShapeMismatch { tensor: "output".into(), actual: output.shape().to_vec(), expected: e.to_string() }
        })?;
    let mut r = ndarray::Array2::<f32>::zeros(flat.raw_dim());
    for (i, row) in flat.axis_iter(Axis(0)).enumerate() {
        let c = match start {
            Start::Predicted => match row.as_slice() {
                Some(values) => crate::model::argmax(values),
                None => crate::model::argmax(&row.to_vec()),
            },
            Start::Classes(cs) => *cs.get(i).ok_or_else(|| Error::Mismatch {
                what: "start classes and images",
                reason: format!("no start class for image {i}"),
            })?,
            Start::AllOutputs | Start::Worst { .. } => unreachable!("handled above"),
        };
        if c >= row.len() {
            return Err(Error::Mismatch {
                what: "start class and model outputs",
                reason: format!("start class {c} is outside the model's {} outputs", row.len()),
            });
        }
        r[[i, c]] = row[c];
    }
    r.into_shape_with_order(output.raw_dim()).map_err(|e| Error::ShapeMismatch {
        tensor: "output".into(),
        actual: output.shape().to_vec(),
        expected: e.to_string(),
    })
}

fn worst_relevance(output: &ArrayD<f32>, targets: &[Vec<f32>], keypoints: bool) -> Result<ArrayD<f32>> {
    let n = output.shape()[0];
    let per = output.len() / n.max(1);
    let flat: Vec<f32> = output.iter().copied().collect();
    let mut r = vec![0.0f32; flat.len()];
    for i in 0..n {
        let t = targets.get(i).ok_or_else(|| Error::Mismatch {
            what: "regression targets and images",
            reason: format!("no targets for image {i}"),
        })?;
        let p = &flat[i * per..(i + 1) * per];
        if t.len() != per || (keypoints && !per.is_multiple_of(2)) {
            return Err(Error::Mismatch {
                what: "regression targets and model outputs",
                reason: format!("image {i} has {} targets for {per} outputs", t.len()),
            });
        }
        let keep: Vec<usize> = if keypoints {
            let k = (0..per / 2)
                .max_by(|&a, &b| {
                    let d = |k: usize| (p[2 * k] - t[2 * k]).powi(2) + (p[2 * k + 1] - t[2 * k + 1]).powi(2);
                    d(a).total_cmp(&d(b)).then(b.cmp(&a))
                })
                .unwrap_or(0);
            vec![2 * k, 2 * k + 1]
        } else {
            let j = (0..per)
                .max_by(|&a, &b| (p[a] - t[a]).abs().total_cmp(&(p[b] - t[b]).abs()).then(b.cmp(&a)))
                .unwrap_or(0);
            vec![j]
        };
        for j in keep {
            r[i * per + j] = p[j];
        }
    }
    ArrayD::from_shape_vec(output.raw_dim(), r).map_err(|e| Error::ShapeMismatch {
        tensor: "output".into(),
        actual: output.shape().to_vec(),
        expected: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forward run asks the engine only for the tensors the program reads (so that it may fuse
    /// a convolution with its batch norm): the relevances equal those from every activation, on a
    /// model with merged batch norms and a residual sum.
    #[test]
    fn asking_for_the_read_tensors_only_changes_no_relevance() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let model = Model::load(root.join("tests/fixtures/models/bn_residual.onnx")).unwrap();
        let shape: Vec<usize> = model.graph().inputs[0].shape.iter().skip(1).map(|d| d.fixed().unwrap()).collect();
        let channels = shape[0];
        let domain = InputDomain { image_shape: shape.clone(), low: vec![0.0; channels], high: vec![1.0; channels] };
        let output = model.info().outputs[0].name.clone();
        let explainer = Explainer::new(&model, &domain, &output, Preset::EpsilonPlus).unwrap();
        let reads = explainer.program().reads();
        let everything = model
            .run_with_activations(ArrayD::<f32>::zeros(ndarray::IxDyn(&[1, channels, shape[1], shape[2]])).view())
            .unwrap();
        assert!(
            reads.len() < everything.tensors.len(),
            "fewer tensors asked for: {} of {}",
            reads.len(),
            everything.tensors.len()
        );
        let mut rng = crate::rng::Rng::new(3);
        let mut full = vec![3];
        full.extend(&shape);
        let n: usize = full.iter().product();
        let x = ArrayD::from_shape_vec(ndarray::IxDyn(&full), (0..n).map(|_| rng.next_f64() as f32).collect()).unwrap();
        let fused = explainer.explain(x.view(), &Start::Predicted).unwrap();
        let acts = model.run_with_activations(x.view()).unwrap();
        let r0 = start_relevance(&acts.tensors[&output], &Start::Predicted).unwrap();
        let all = explainer.program().propagate(&acts, r0).unwrap();
        assert_eq!(fused.keys().collect::<Vec<_>>(), all.keys().collect::<Vec<_>>());
        for (name, r) in &all {
            let d = fused[name].iter().zip(r).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let scale = r.iter().map(|v| v.abs()).fold(0.0f32, f32::max).max(1e-6);
            assert!(d <= 1e-5 * scale, "{name}: {d} of {scale}");
        }
    }

    #[test]
    fn start_relevance_keeps_one_logit_or_the_worst_output() {
        let y = ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 3]), vec![1.0, 5.0, 2.0, -1.0, -3.0, -2.0]).unwrap();
        let r = start_relevance(&y, &Start::Predicted).unwrap();
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![0.0, 5.0, 0.0, -1.0, 0.0, 0.0]);
        let r = start_relevance(&y, &Start::Classes(vec![2, 1])).unwrap();
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![0.0, 0.0, 2.0, 0.0, -3.0, 0.0]);
        assert!(start_relevance(&y, &Start::Classes(vec![3, 0])).is_err());
        // Keypoints (x, y): image 0 misses its second point by 5 px, its first by 1 px.
        let k = ArrayD::from_shape_vec(ndarray::IxDyn(&[1, 4]), vec![1.0, 0.0, 3.0, 4.0]).unwrap();
        let start = Start::Worst { targets: vec![vec![0.0, 0.0, 0.0, 0.0]], keypoints: true };
        assert_eq!(start_relevance(&k, &start).unwrap().iter().copied().collect::<Vec<_>>(), vec![0.0, 0.0, 3.0, 4.0]);
        let start = Start::Worst { targets: vec![vec![0.0, 0.0, 3.0, 0.0]], keypoints: false };
        assert_eq!(start_relevance(&k, &start).unwrap().iter().copied().collect::<Vec<_>>(), vec![0.0, 0.0, 0.0, 4.0]);
    }
}
