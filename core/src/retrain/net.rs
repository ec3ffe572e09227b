//! The model's ONNX graph as a trainable candle network.
//!
//! [`Net::new`] translates the nodes on the data path of a [`Graph`] (those that compute float
//! activations with the batch as first axis) into candle operations once; [`Net::forward`] runs
//! them in graph order. Float weights in trainable slots (convolution and dense weights and
//! biases, batch-norm scale and shift, PReLU slopes, constants added to activations) become
//! [`Var`]s; everything else (batch-norm statistics, constants that scale or shift the input,
//! integer shapes) stays fixed.
//!
//! Work-arounds for candle 0.11.1 (see `shared/docs/lrp-and-engines.md` §3):
//! - convolution is a custom op ([`super::conv`]) with any stride, dilation, groups and
//!   asymmetric padding: candle's backward derives the output padding of both axes from the height
//!   alone and is several times slower than PyTorch's on the CPU;
//! - pooling is a custom op ([`super::pool`]): candle's pooling backward requires kernel = stride
//!   and its max backward gives the gradient to every tied maximum.
//!
//! Reshape-like nodes take their output shape from the graph's shape facts (the batch axis
//! replaced by the batch size), so the integer subgraphs that exporters emit to compute shapes
//! never run here; computed `Pad` amounts are read from one engine run at construction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use candle_core::{Device, Tensor, Var};
use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::error::{Error, Result};
use crate::model::fuse_movements;
use crate::model::{
    axis_index, broadcast_shape, gather_indices, split_sizes, where_mask, Activation, Activations, AutoPad, Axes,
    ConvAttrs, Dim, ElemType, Graph, Model, Node, Op, PadMode, PoolAttrs, Reduction, Selection, SliceAttrs, TensorFact,
    Weight, Weights,
};
use crate::model::{Interpolation, Operand, Recipe};
use crate::rng::Rng;

use super::conv::Conv2d;
use super::pool::{axis_pads, Pool2d, PoolAxis, Reduce};

/// Whether the network runs as in training (dropout active) or as at inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Inference: dropout is the identity.
    Eval,
    /// Training: dropout zeroes activations at random (seeded) and rescales the rest.
    Train,
}

/// Element-wise binary ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// One translated node.
#[derive(Debug, Clone)]
enum Kind {
    Conv(ConvAttrs),
    ConvTranspose(ConvAttrs),
    Gemm {
        alpha: f32,
        beta: f32,
        trans_b: bool,
    },
    MatMul,
    MaxPool(PoolAttrs),
    AvgPool(PoolAttrs, bool),
    GlobalAvgPool,
    BatchNorm {
        epsilon: f32,
    },
    Act(Activation),
    Clip {
        min: Option<f32>,
        max: Option<f32>,
    },
    Dropout {
        ratio: f32,
    },
    Pass,
    /// Output shape from the graph's facts.
    Reshape,
    Transpose(Option<Vec<usize>>),
    Pad {
        pads: Vec<i64>,
        value: f32,
    },
    Concat(i64),
    Binary(Binary),
    Softmax {
        axis: i64,
        log: bool,
    },
    /// A mean, sum or maximum over axes (`None`: every axis after the channels).
    Reduce {
        reduction: Reduction,
        axes: Option<Axes>,
        keep_dims: bool,
    },
    Slice(SliceAttrs),
    /// Output `index` of a split into `parts` along `axis`.
    SplitPart {
        axis: i64,
        sizes: Option<Vec<usize>>,
        parts: usize,
        index: usize,
    },
    Gather {
        axis: i64,
        /// The indices, flattened, and their shape.
        indices: Vec<i64>,
        shape: Vec<usize>,
    },
    /// Linear interpolation: per resized axis, a product with its constant matrix; its sizes when
    /// the graph computes them.
    Interpolate(Interpolation, Operand),
    /// Data movement, as one `index_select` of the flattened input (model::Selection).
    Select {
        selection: Selection,
        operand: Operand,
    },
    /// `Where` with a constant condition; the step's inputs are the two operands.
    Where {
        cond: ndarray::ArrayD<i64>,
    },
}

#[derive(Debug, Clone)]
struct Step {
    node: String,
    op_type: String,
    kind: Kind,
    /// Input tensor names (empty string: omitted).
    inputs: Vec<String>,
    output: String,
    /// The output's shape facts, for reshapes (`batched`: axis 0 is the batch).
    shape: Vec<Dim>,
    batched: bool,
}

/// The graph as a candle network with its trainable weights.
pub struct Net {
    steps: Vec<Step>,
    input: String,
    outputs: Vec<String>,
    /// Trainable weights, by ONNX tensor name, in the order they are first used.
    params: Vec<(String, Var)>,
    /// Fixed float weights the steps read.
    consts: HashMap<String, Tensor>,
    device: Device,
    path: std::path::PathBuf,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("steps", &self.steps.len()).field("params", &self.params.len()).finish()
    }
}

/// A candle error as hudd's, naming the node.
pub(crate) fn candle_err(node: &str, e: candle_core::Error) -> Error {
    Error::Training { reason: format!("node `{node}`: {e}") }
}

/// Inputs of `node` that hold trainable weights.
fn trainable_slots(node: &Node) -> &'static [usize] {
    match node.op {
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm { .. } | Op::BatchNormalization { .. } => &[1, 2],
        Op::Activation(Activation::PRelu) => &[1],
        Op::MatMul | Op::Add => &[0, 1],
        _ => &[],
    }
}

pub(crate) fn to_tensor(a: ArrayViewD<'_, f32>, device: &Device) -> candle_core::Result<Tensor> {
    let values: Vec<f32> = a.iter().copied().collect();
    Tensor::from_vec(values, a.shape(), device)
}

/// A candle tensor as an ndarray array.
pub(crate) fn to_array(t: &Tensor) -> candle_core::Result<ArrayD<f32>> {
    let shape = t.dims().to_vec();
    let values = t.flatten_all()?.to_vec1::<f32>()?;
    Ok(ArrayD::from_shape_vec(IxDyn(&shape), values).expect("candle's shape matches its element count"))
}

impl Net {
    /// Translates `model`'s graph. Errors ([`Error::UnsupportedByStage`], stage `retrain`) name
    /// the first node that cannot be trained, and why.
    pub fn new(model: &Model) -> Result<Net> {
        let graph = model.graph();
        let path = model.path().to_path_buf();
        let unsupported = |node: &Node, reason: &str| Error::UnsupportedByStage {
            path: path.clone(),
            node: node.name.clone(),
            op: node.op_type.clone(),
            stage: "retrain",
            reason: reason.to_string(),
        };
        let input = graph
            .inputs
            .first()
            .map(|i| i.name.clone())
            .ok_or_else(|| Error::ModelInterface { path: path.clone(), reason: "the model has no input".into() })?;
        let mut probe: Option<Probe> = None;
        let facts = match graph.tensors.is_empty() {
            true => probe.insert(Probe::run(model)?).facts(),
            false => graph.tensors.clone(),
        };
        let data: HashSet<String> =
            facts.iter().filter(|(_, f)| f.batched && f.elem_type == ElemType::F32).map(|(n, _)| n.clone()).collect();
        let device = Device::Cpu;
        let mut steps = Vec::new();
        let mut trainable: Vec<String> = Vec::new();
        let mut fixed: BTreeSet<String> = BTreeSet::new();
        let mut computed_pads: Vec<(usize, String)> = Vec::new();
        // Slices whose ranges the graph computes: (step, the node's inputs after the data).
        let mut computed_slices: Vec<(usize, Vec<String>)> = Vec::new();
        // Data movements through tensors without the batch first are one step.
        for node in &fuse_movements(graph, &data) {
            // A split is one step per output; every other op has one float output.
            let outputs: Vec<(usize, &String)> = match node.op {
                Op::Split { .. } => node.outputs.iter().enumerate().filter(|(_, o)| data.contains(*o)).collect(),
                _ => node.outputs.first().filter(|o| data.contains(*o)).map(|o| (0, o)).into_iter().collect(),
            };
            if outputs.is_empty() {
                continue;
            }
            let kind = translate(graph, &facts, node, &data).map_err(|r| unsupported(node, &r))?;
            if let (Kind::Pad { .. }, Some(pads)) = (&kind, pad_tensor(graph, node)) {
                computed_pads.push((steps.len(), pads));
            }
            if let Op::Slice(None) = node.op {
                computed_slices.push((steps.len(), node.inputs.iter().skip(1).cloned().collect()));
            }
            let float_inputs = float_inputs(&kind);
            for (ix, name) in node.inputs.iter().enumerate() {
                if name.is_empty() || data.contains(name) || !float_inputs.contains(&ix) {
                    continue;
                }
                match graph.weight(name) {
                    Some(Weight::F32(_)) => {
                        if trainable_slots(node).contains(&ix) {
                            if !trainable.contains(name) {
                                trainable.push(name.clone());
                            }
                        } else {
                            fixed.insert(name.clone());
                        }
                    }
                    _ => {
                        return Err(unsupported(
                            node,
                            &format!("input `{name}` is neither an activation nor a float constant"),
                        ))
                    }
                }
            }
            for &(index, output) in &outputs {
                let fact = facts.get(output);
                let kind = match &kind {
                    Kind::SplitPart { axis, sizes, parts, .. } => {
                        Kind::SplitPart { axis: *axis, sizes: sizes.clone(), parts: *parts, index }
                    }
                    k => k.clone(),
                };
                // `Where`'s condition is held by the step; its inputs are the two operands.
                let inputs = match kind {
                    Kind::Where { .. } => node.inputs.iter().skip(1).cloned().collect(),
                    _ => node.inputs.clone(),
                };
                steps.push(Step {
                    node: node.name.clone(),
                    op_type: node.op_type.clone(),
                    kind,
                    inputs,
                    output: output.clone(),
                    shape: fact.map(|f| f.shape.clone()).unwrap_or_default(),
                    batched: fact.is_some_and(|f| f.batched),
                });
            }
        }
        if !computed_pads.is_empty() || !computed_slices.is_empty() {
            let mut names: Vec<String> = computed_pads.iter().map(|(_, n)| n.clone()).collect();
            names.extend(
                computed_slices
                    .iter()
                    .flat_map(|(_, ins)| ins.iter().filter(|n| !n.is_empty() && graph.weight(n).is_none()))
                    .cloned(),
            );
            let probe = match probe {
                Some(p) => p,
                None => Probe::run(model)?,
            };
            let integers = probe.batch_independent_integers(model, &names)?;
            for (ix, name) in computed_pads {
                if let Kind::Pad { pads, .. } = &mut steps[ix].kind {
                    *pads = integers[&name].clone();
                }
            }
            for (ix, inputs) in computed_slices {
                // Each of starts, ends, axes, steps: constant, computed, or absent (None).
                let part = |i: usize| -> Result<Option<Vec<i64>>> {
                    let Some(name) = inputs.get(i).filter(|n| !n.is_empty()) else { return Ok(None) };
                    match (graph.weight(name), integers.get(name)) {
                        (Some(Weight::I64(a)), _) => Ok(Some(a.iter().copied().collect())),
                        (None, Some(v)) => Ok(Some(v.clone())),
                        _ => Err(Error::UnsupportedByStage {
                            path: path.clone(),
                            node: steps[ix].node.clone(),
                            op: steps[ix].op_type.clone(),
                            stage: "retrain",
                            reason: format!("the slice's input `{name}` is not an integer tensor"),
                        }),
                    }
                };
                let attrs = SliceAttrs {
                    starts: part(0)?.unwrap_or_default(),
                    ends: part(1)?.unwrap_or_default(),
                    axes: part(2)?,
                    steps: part(3)?,
                };
                steps[ix].kind = Kind::Slice(attrs);
            }
        }
        let outputs: Vec<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
        let weight = |name: &str| graph.weight(name).and_then(Weight::as_f32).expect("checked above: a float weight");
        // A weight in a trainable slot is trained everywhere it is read.
        fixed.retain(|n| !trainable.contains(n));
        let params = trainable
            .into_iter()
            .map(|n| {
                let var = to_tensor(weight(&n).view(), &device).and_then(|t| Var::from_tensor(&t));
                var.map(|v| (n.clone(), v)).map_err(|e| candle_err(&n, e))
            })
            .collect::<Result<Vec<_>>>()?;
        let consts = fixed
            .into_iter()
            .map(|n| to_tensor(weight(&n).view(), &device).map(|t| (n.clone(), t)).map_err(|e| candle_err(&n, e)))
            .collect::<Result<HashMap<_, _>>>()?;
        Ok(Net { steps, input, outputs, params, consts, device, path })
    }

    /// Names of the trainable weights, in the order the graph first uses them.
    pub fn trainable(&self) -> Vec<&str> {
        self.params.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The current values of the trainable weights.
    pub fn weights(&self) -> Result<Weights> {
        let mut w = Weights::new();
        for (name, var) in &self.params {
            w.insert(name.clone(), to_array(var.as_tensor()).map_err(|e| candle_err(name, e))?);
        }
        Ok(w)
    }

    pub(crate) fn vars(&self) -> &[(String, Var)] {
        &self.params
    }

    pub(crate) fn outputs(&self) -> &[String] {
        &self.outputs
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// The model file the network was translated from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Every graph output for a batch (first axis), as arrays, in declaration order.
    pub fn forward(&self, input: ArrayViewD<'_, f32>, mode: Mode, seed: u64) -> Result<Vec<ArrayD<f32>>> {
        let x = to_tensor(input, &self.device).map_err(|e| candle_err(&self.input, e))?;
        let values = self.run(&x, mode, &mut Rng::new(seed), None)?;
        self.outputs
            .iter()
            .map(|o| {
                let t = values.get(o).ok_or_else(|| Error::Training {
                    reason: format!("output `{o}` is not computed from the input: {}", self.path.display()),
                })?;
                to_array(t).map_err(|e| candle_err(o, e))
            })
            .collect()
    }

    /// Runs the steps on `x`; stops after the step that writes `until` when given.
    pub(crate) fn run(
        &self,
        x: &Tensor,
        mode: Mode,
        rng: &mut Rng,
        until: Option<&str>,
    ) -> Result<HashMap<String, Tensor>> {
        let mut values: HashMap<String, Tensor> = HashMap::new();
        values.insert(self.input.clone(), x.clone());
        let batch = x.dim(0).map_err(|e| candle_err(&self.input, e))?;
        for step in &self.steps {
            let y = self
                .step(step, &values, batch, mode, rng)
                .map_err(|e| candle_err(&format!("{}` ({}", step.node, step.op_type), e))?;
            values.insert(step.output.clone(), y);
            if until == Some(step.output.as_str()) {
                break;
            }
        }
        Ok(values)
    }

    /// The output that a loss should read: `name`'s producer, and whether it is a softmax or
    /// log-softmax over the last axis (whose input then holds the logits).
    pub(crate) fn head<'a>(&'a self, name: &'a str) -> Option<(&'a str, Option<bool>)> {
        let step = self.steps.iter().find(|s| s.output == name)?;
        Some(match step.kind {
            Kind::Softmax { log, .. } => (step.inputs[0].as_str(), Some(log)),
            _ => (name, None),
        })
    }

    fn value<'a>(&'a self, values: &'a HashMap<String, Tensor>, name: &str) -> candle_core::Result<&'a Tensor> {
        if let Some(t) = values.get(name) {
            return Ok(t);
        }
        if let Some((_, v)) = self.params.iter().find(|(n, _)| n == name) {
            return Ok(v.as_tensor());
        }
        self.consts.get(name).ok_or_else(|| candle_core::Error::Msg(format!("tensor `{name}` was not computed")))
    }

    fn step(
        &self,
        step: &Step,
        values: &HashMap<String, Tensor>,
        batch: usize,
        mode: Mode,
        rng: &mut Rng,
    ) -> candle_core::Result<Tensor> {
        let arg = |ix: usize| -> candle_core::Result<Option<&Tensor>> {
            match step.inputs.get(ix).filter(|n| !n.is_empty()) {
                Some(n) => self.value(values, n).map(Some),
                None => Ok(None),
            }
        };
        let x = arg(0)?.ok_or_else(|| candle_core::Error::Msg("no input".into()))?;
        match &step.kind {
            Kind::Conv(a) => conv(x, req(arg(1)?)?, arg(2)?, a),
            Kind::ConvTranspose(a) => conv_transpose(x, req(arg(1)?)?, arg(2)?, a),
            Kind::Gemm { alpha, beta, trans_b } => {
                let w = req(arg(1)?)?;
                let w = if *trans_b { w.t()? } else { w.clone() };
                let mut y = x.matmul(&w.contiguous()?)?;
                if *alpha != 1.0 {
                    y = y.affine(f64::from(*alpha), 0.0)?;
                }
                match arg(2)? {
                    Some(c) if *beta != 0.0 => y.broadcast_add(&c.affine(f64::from(*beta), 0.0)?),
                    _ => Ok(y),
                }
            }
            Kind::MatMul => req(arg(0)?)?.broadcast_matmul(req(arg(1)?)?),
            Kind::MaxPool(p) => pool(x, p, Reduce::Max),
            Kind::AvgPool(p, include_pad) => pool(x, p, Reduce::Avg { include_pad: *include_pad }),
            Kind::GlobalAvgPool => {
                let dims: Vec<usize> = (2..x.rank()).collect();
                x.mean_keepdim(dims)
            }
            Kind::BatchNorm { epsilon } => {
                let (scale, bias, mean, var) = (req(arg(1)?)?, req(arg(2)?)?, req(arg(3)?)?, req(arg(4)?)?);
                let mut shape = vec![1; x.rank()];
                shape[1] = scale.elem_count();
                let inv =
                    (var.affine(1.0, f64::from(*epsilon))?.sqrt()?.recip()?.mul(scale))?.reshape(shape.clone())?;
                let shift = (bias - (mean * inv.flatten_all()?)?)?.reshape(shape)?;
                x.broadcast_mul(&inv)?.broadcast_add(&shift)
            }
            Kind::Act(a) => activation(x, *a, arg(1)?),
            Kind::Clip { min, max } => {
                let lo = match arg(1)? {
                    Some(t) => Some(t.flatten_all()?.to_vec1::<f32>()?[0]),
                    None => *min,
                };
                let hi = match arg(2)? {
                    Some(t) => Some(t.flatten_all()?.to_vec1::<f32>()?[0]),
                    None => *max,
                };
                let mut y = x.clone();
                if let Some(lo) = lo {
                    y = y.maximum(lo)?;
                }
                if let Some(hi) = hi {
                    y = y.minimum(hi)?;
                }
                Ok(y)
            }
            Kind::Dropout { ratio } => match mode {
                Mode::Train if *ratio > 0.0 => {
                    let keep = 1.0 - *ratio;
                    let mask: Vec<f32> = (0..x.elem_count())
                        .map(|_| if rng.next_f64() < f64::from(keep) { 1.0 / keep } else { 0.0 })
                        .collect();
                    x.mul(&Tensor::from_vec(mask, x.dims(), x.device())?)
                }
                _ => Ok(x.clone()),
            },
            Kind::Pass => Ok(x.clone()),
            Kind::Reshape => {
                let shape: Vec<usize> = step
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(i, d)| match d {
                        Dim::Fixed(n) if !(i == 0 && step.batched) => Ok(*n),
                        _ if i == 0 && step.batched => Ok(batch),
                        _ => Err(candle_core::Error::Msg(format!("axis {i} of `{}` has no fixed size", step.output))),
                    })
                    .collect::<candle_core::Result<_>>()?;
                x.contiguous()?.reshape(shape)
            }
            Kind::Transpose(perm) => {
                let perm: Vec<usize> = perm.clone().unwrap_or_else(|| (0..x.rank()).rev().collect());
                x.permute(perm)?.contiguous()
            }
            Kind::Pad { pads, value } => {
                let rank = x.rank();
                if pads.len() != 2 * rank {
                    candle_core::bail!("{} pads for a rank-{rank} tensor", pads.len());
                }
                let mut y = x.clone();
                for axis in 0..rank {
                    y = pad_signed(&y, axis, pads[axis], pads[axis + rank], *value)?;
                }
                Ok(y)
            }
            Kind::Concat(axis) => {
                let parts = (0..step.inputs.len())
                    .map(|i| req(arg(i)?).cloned())
                    .collect::<candle_core::Result<Vec<Tensor>>>()?;
                Tensor::cat(&parts, norm_axis(*axis, x.rank())?)
            }
            Kind::Binary(op) => {
                let (a, b) = (req(arg(0)?)?, req(arg(1)?)?);
                match op {
                    Binary::Add => a.broadcast_add(b),
                    Binary::Sub => a.broadcast_sub(b),
                    Binary::Mul => a.broadcast_mul(b),
                    Binary::Div => a.broadcast_div(b),
                }
            }
            Kind::Softmax { axis, log } => softmax(x, norm_axis(*axis, x.rank())?, *log),
            Kind::Reduce { reduction, axes, keep_dims } => {
                let rank = x.rank();
                let axes: Vec<usize> = match axes {
                    None => (2..rank).collect(),
                    Some(a) => a.resolve(rank).map_err(candle_core::Error::Msg)?.unwrap_or_else(|| (0..rank).collect()),
                };
                let mut y = x.clone();
                for &a in &axes {
                    y = match reduction {
                        Reduction::Mean => y.mean_keepdim(a)?,
                        Reduction::Sum => y.sum_keepdim(a)?,
                        Reduction::Max => y.max_keepdim(a)?,
                    };
                }
                if *keep_dims {
                    Ok(y)
                } else {
                    let shape: Vec<usize> =
                        y.dims().iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect();
                    y.reshape(shape)
                }
            }
            Kind::Slice(attrs) => {
                let mut y = x.clone();
                for range in attrs.resolve(x.dims()).map_err(candle_core::Error::Msg)? {
                    y = if range.step == 1 {
                        y.narrow(range.axis, range.start, range.count)?
                    } else {
                        let ix: Vec<u32> = range.indices().into_iter().map(|i| i as u32).collect();
                        let n = ix.len();
                        // index_select reads contiguous tensors only (an earlier narrow is a view).
                        y.contiguous()?.index_select(&Tensor::from_vec(ix, n, y.device())?, range.axis)?
                    };
                }
                Ok(y)
            }
            Kind::SplitPart { axis, sizes, parts, index } => {
                let ax = norm_axis(*axis, x.rank())?;
                let sizes = split_sizes(sizes.as_deref(), *parts, x.dim(ax)?);
                let start: usize = sizes.iter().take(*index).sum();
                let size = sizes.get(*index).copied().unwrap_or(0);
                x.narrow(ax, start, size)
            }
            Kind::Gather { axis, indices, shape } => {
                let ax = norm_axis(*axis, x.rank())?;
                let ix: Vec<u32> = gather_indices(indices.iter().copied(), x.dim(ax)?)
                    .map_err(candle_core::Error::Msg)?
                    .into_iter()
                    .map(|i| i as u32)
                    .collect();
                let n = ix.len();
                let y = x.contiguous()?.index_select(&Tensor::from_vec(ix, n, x.device())?, ax)?;
                let mut dims: Vec<usize> = x.dims()[..ax].to_vec();
                dims.extend(shape);
                dims.extend(&x.dims()[ax + 1..]);
                y.reshape(dims)
            }
            Kind::Interpolate(interpolation, sizes) => {
                let batch = x.dims().first().copied().unwrap_or(1);
                let sizes = sizes.value(batch).map_err(candle_core::Error::Msg)?;
                let matrices = interpolation
                    .sized(sizes.as_deref())
                    .and_then(|i| i.matrices(x.dims()))
                    .map_err(candle_core::Error::Msg)?;
                let last = x.rank() - 1;
                let mut y = x.clone();
                for (axis, a) in &matrices.0 {
                    // The axis last, times aᵀ ([len, out]), back in place.
                    let (out, len) = a.dim();
                    let at = Tensor::from_iter(a.t().iter().copied(), y.device())?.reshape((len, out))?;
                    y = y.transpose(*axis, last)?.contiguous()?.broadcast_matmul(&at)?.transpose(*axis, last)?;
                }
                y.contiguous()
            }
            Kind::Select { selection, operand } => {
                let batch = x.dims().first().copied().unwrap_or(1);
                let operand = operand.value(batch).map_err(candle_core::Error::Msg)?;
                let sources = selection.sources(x.dims(), operand.as_deref()).map_err(candle_core::Error::Msg)?;
                if x.elem_count() > u32::MAX as usize {
                    candle_core::bail!("{} elements are more than a u32 index reaches", x.elem_count());
                }
                let shape = sources.shape().to_vec();
                let ix: Vec<u32> = sources.iter().map(|&s| s as u32).collect();
                let n = ix.len();
                x.contiguous()?.flatten_all()?.index_select(&Tensor::from_vec(ix, n, x.device())?, 0)?.reshape(shape)
            }
            Kind::Where { cond } => {
                let other = req(arg(1)?)?;
                let m = |e: String| candle_core::Error::Msg(e);
                let shape =
                    broadcast_shape(cond.shape(), &broadcast_shape(x.dims(), other.dims()).map_err(m)?).map_err(m)?;
                let mask = where_mask(cond, &shape).map_err(m)?;
                let mask = Tensor::from_iter(mask.iter().map(|&b| u8::from(b)), x.device())?.reshape(shape.clone())?;
                mask.where_cond(&x.broadcast_as(shape.clone())?, &other.broadcast_as(shape)?)
            }
        }
    }
}

fn req(t: Option<&Tensor>) -> candle_core::Result<&Tensor> {
    t.ok_or_else(|| candle_core::Error::Msg("a required input is missing".into()))
}

fn norm_axis(axis: i64, rank: usize) -> candle_core::Result<usize> {
    axis_index(axis, rank).map_err(candle_core::Error::Msg)
}

/// Which inputs of a translated node are float tensors (activations or weights).
fn float_inputs(kind: &Kind) -> Vec<usize> {
    match kind {
        Kind::Conv(_) | Kind::ConvTranspose(_) | Kind::Gemm { .. } => vec![0, 1, 2],
        Kind::BatchNorm { .. } => vec![0, 1, 2, 3, 4],
        Kind::Act(Activation::PRelu) | Kind::MatMul | Kind::Binary(_) => vec![0, 1],
        Kind::Clip { .. } => vec![0, 1, 2],
        Kind::Where { .. } => vec![1, 2],
        Kind::Concat(_) => (0..64).collect(),
        _ => vec![0],
    }
}

/// The name of a `Pad` node's computed (non-constant) pads tensor.
fn pad_tensor(graph: &Graph, node: &Node) -> Option<String> {
    let name = node.inputs.get(1).filter(|n| !n.is_empty())?;
    graph.weight(name).is_none().then(|| name.clone())
}

/// Integer tensors computed by the graph (computed pads), read from engine runs on batches of one
/// and two zero images; they must not depend on the batch size.
/// Image shape of the model's input (axes after the batch); open axes count as 1.
fn image_shape(model: &Model) -> Vec<usize> {
    model.graph().inputs[0].shape.iter().skip(1).map(|d| d.fixed().unwrap_or(1)).collect()
}

/// The engine's run on zero batches of 1 and 2 images: what the translation reads when the file
/// does not say it (tensor facts, computed pads). Made once per translation, at first need.
struct Probe([Activations; 2]);

impl Probe {
    fn run(model: &Model) -> Result<Probe> {
        let image = image_shape(model);
        let run = |batch: usize| -> Result<Activations> {
            let mut shape = vec![batch];
            shape.extend_from_slice(&image);
            model.run_with_activations(ArrayD::<f32>::zeros(IxDyn(&shape)).view())
        };
        Ok(Probe([run(1)?, run(2)?]))
    }

    /// Tensor facts, for graphs whose file declares no input shape that the engine can follow
    /// symbolically: a float tensor is an activation when its first axis follows the batch.
    fn facts(&self) -> BTreeMap<String, TensorFact> {
        let [one, two] = &self.0;
        two.tensors
            .iter()
            .map(|(name, a)| {
                let batched = a.shape().first() == Some(&2)
                    && one.tensors.get(name).and_then(|b| b.shape().first().copied()) == Some(1);
                let shape = a.shape().iter().map(|&d| Dim::Fixed(d)).collect();
                (name.clone(), TensorFact { elem_type: ElemType::F32, shape, batched })
            })
            .collect()
    }

    /// The integer tensors `names` (computed pads), which must not depend on the batch size.
    fn batch_independent_integers(&self, model: &Model, names: &[String]) -> Result<BTreeMap<String, Vec<i64>>> {
        let [one, two] = &self.0;
        names
            .iter()
            .map(|n| {
                let missing = || Error::Training {
                    reason: format!("the engine did not compute `{n}`: {}", model.path().display()),
                };
                let a = one.integers.get(n).ok_or_else(missing)?;
                if two.integers.get(n) != Some(a) {
                    return Err(Error::Training {
                        reason: format!(
                            "the pads `{n}` depend on the batch size, which retraining cannot follow: {}",
                            model.path().display()
                        ),
                    });
                }
                Ok((n.clone(), a.iter().copied().collect()))
            })
            .collect()
    }
}

fn attr_f32(node: &Node, name: &str) -> Option<f32> {
    node.attributes.get(name).and_then(|a| a.as_float())
}

/// A constant scalar input of `node`, if it has one.
fn const_scalar(graph: &Graph, node: &Node, ix: usize) -> std::result::Result<Option<f32>, String> {
    let Some(name) = node.inputs.get(ix).filter(|n| !n.is_empty()) else { return Ok(None) };
    match graph.weight(name) {
        Some(Weight::F32(a)) if a.len() == 1 => Ok(a.iter().next().copied()),
        Some(Weight::I64(a)) if a.len() == 1 => Ok(a.iter().next().map(|&v| v as f32)),
        _ => Err(format!("input `{name}` must be a constant scalar")),
    }
}

/// Whether retraining translates `op` to candle (forward and backward) at all; [`translate`] may
/// still refuse a node for its attributes (a 3-D convolution, computed axes). Listed by
/// `hudd inspect --ops` beside the other stages.
pub fn trains(op: &Op) -> bool {
    match op {
        Op::Conv(_)
        | Op::ConvTranspose(_)
        | Op::Gemm { .. }
        | Op::MatMul
        | Op::MaxPool(_)
        | Op::AveragePool { .. }
        | Op::GlobalAveragePool
        | Op::GlobalMaxPool
        | Op::BatchNormalization { .. }
        | Op::Activation(_)
        | Op::Dropout
        | Op::Identity
        | Op::Cast { .. }
        | Op::Flatten { .. }
        | Op::Reshape { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Reduce { .. }
        | Op::Split { .. }
        | Op::Slice(_)
        | Op::Gather { .. }
        | Op::Select(_)
        | Op::Interpolate(_)
        | Op::Where
        | Op::Transpose { .. }
        | Op::Pad { .. }
        | Op::Concat { .. }
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Div
        | Op::Softmax
        | Op::LogSoftmax => true,
        Op::Constant | Op::Shape { .. } | Op::Range | Op::ConstantOfShape { .. } | Op::Equal | Op::Other(_) => false,
    }
}

/// How a node on the data path becomes a step; the error says what is not supported.
fn translate(
    graph: &Graph,
    facts: &BTreeMap<String, TensorFact>,
    node: &Node,
    data: &HashSet<String>,
) -> std::result::Result<Kind, String> {
    let weight_at = |ix: usize| node.inputs.get(ix).and_then(|n| graph.weight(n));
    let is_data = |ix: usize| node.inputs.get(ix).is_some_and(|n| data.contains(n));
    Ok(match &node.op {
        Op::Conv(a) | Op::ConvTranspose(a) => {
            if a.kernel.len() != 2 && weight_at(1).map(|w| w.shape().len()) != Some(4) {
                return Err("only 2-D convolutions are supported".into());
            }
            if !matches!(weight_at(1), Some(Weight::F32(_))) {
                return Err("the kernel must be a float constant".into());
            }
            if a.dilations.len() == 2 && a.dilations[0] != a.dilations[1] {
                return Err("unequal dilations per axis".into());
            }
            if matches!(node.op, Op::ConvTranspose(_)) {
                if !matches!(a.auto_pad, AutoPad::NotSet | AutoPad::Valid) {
                    return Err("auto_pad SAME on a transposed convolution".into());
                }
                if node.attributes.contains_key("output_shape") {
                    return Err("the `output_shape` attribute".into());
                }
                if a.strides.len() == 2 && a.strides[0] != a.strides[1] {
                    return Err("unequal strides on a transposed convolution".into());
                }
                Kind::ConvTranspose(a.clone())
            } else {
                Kind::Conv(a.clone())
            }
        }
        Op::Gemm { alpha, beta, trans_a, trans_b } => {
            if *trans_a {
                return Err("transA = 1: the batch must be the first axis".into());
            }
            if is_data(1) {
                return Err("the second operand must be a weight".into());
            }
            Kind::Gemm { alpha: *alpha, beta: *beta, trans_b: *trans_b }
        }
        Op::MatMul => Kind::MatMul,
        Op::MaxPool(p) => {
            if node.outputs.get(1).is_some_and(|o| !o.is_empty()) {
                return Err("the indices output".into());
            }
            Kind::MaxPool(p.clone())
        }
        Op::AveragePool { pool, count_include_pad } => Kind::AvgPool(pool.clone(), *count_include_pad),
        Op::GlobalAveragePool => Kind::GlobalAvgPool,
        Op::BatchNormalization { epsilon } => {
            if node.attributes.get("training_mode").and_then(|a| a.as_int()) == Some(1) {
                return Err("training_mode = 1".into());
            }
            Kind::BatchNorm { epsilon: *epsilon }
        }
        Op::Activation(Activation::Clip { min, max }) => Kind::Clip { min: min.constant()?, max: max.constant()? },
        Op::Activation(a) => Kind::Act(*a),
        Op::Dropout => {
            let ratio = match const_scalar(graph, node, 1)? {
                Some(r) => r,
                None => attr_f32(node, "ratio").unwrap_or(0.5),
            };
            if !(0.0..1.0).contains(&ratio) {
                return Err(format!("ratio {ratio} is not in [0, 1)"));
            }
            Kind::Dropout { ratio }
        }
        Op::Identity => Kind::Pass,
        Op::Cast { to } => {
            if !matches!(to, 1 | 10 | 11) {
                return Err("a cast of an activation to a non-float type".into());
            }
            Kind::Pass
        }
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => Kind::Reshape,
        Op::Reduce { reduction, axes, keep_dims } => {
            if let Axes::Computed(name) = axes {
                return Err(format!("the axes `{name}` are computed by the graph"));
            }
            Kind::Reduce { reduction: *reduction, axes: Some(axes.clone()), keep_dims: *keep_dims }
        }
        Op::GlobalMaxPool => Kind::Reduce { reduction: Reduction::Max, axes: None, keep_dims: true },
        // Computed ranges are filled in from an engine run (see `Net::new`).
        Op::Slice(attrs) => {
            Kind::Slice(attrs.clone().unwrap_or(SliceAttrs { starts: vec![], ends: vec![], axes: None, steps: None }))
        }
        Op::Split { axis, sizes } => {
            Kind::SplitPart { axis: *axis, sizes: sizes.clone(), parts: node.outputs.len(), index: 0 }
        }
        Op::Gather { axis } => match weight_at(1) {
            Some(Weight::I64(ix)) => {
                Kind::Gather { axis: *axis, indices: ix.iter().copied().collect(), shape: ix.shape().to_vec() }
            }
            _ => return Err("the indices must be an integer constant".into()),
        },
        Op::Select(selection) => {
            let operand = match node.inputs.get(1).filter(|n| !n.is_empty()) {
                Some(name) if selection.has_operand() => match graph.weight(name) {
                    Some(Weight::I64(a)) => Operand::Const(a.clone()),
                    Some(_) => return Err("the second input must be an integer tensor".into()),
                    None => Operand::Computed(
                        Recipe::new(graph, name).map_err(|e| format!("the second input cannot be evaluated: {e}"))?,
                    ),
                },
                _ if selection.has_operand() => return Err("the second input is missing".into()),
                _ => Operand::None,
            };
            Kind::Select { selection: selection.clone(), operand }
        }
        Op::Interpolate(interpolation) => {
            let sizes =
                interpolation.sizes_operand(graph).map_err(|e| format!("the sizes cannot be evaluated: {e}"))?;
            Kind::Interpolate(interpolation.clone(), sizes)
        }
        Op::Where => match weight_at(0) {
            Some(Weight::I64(cond)) if !(is_data(1) && is_data(2)) => Kind::Where { cond: cond.clone() },
            Some(Weight::I64(_)) => return Err("both operands are activations".into()),
            _ => return Err("the condition must be a constant".into()),
        },
        Op::Transpose { perm } => Kind::Transpose(perm.clone()),
        Op::Pad { mode, pads } => {
            if *mode != PadMode::Constant {
                return Err("only constant padding".into());
            }
            if node.inputs.get(3).is_some_and(|s| !s.is_empty()) {
                return Err("padding a subset of axes".into());
            }
            let value = const_scalar(graph, node, 2)?.or(attr_f32(node, "value")).unwrap_or(0.0);
            let pads = match (pads, weight_at(1)) {
                (Some(p), _) => p.clone(),
                (None, Some(Weight::I64(a))) => a.iter().copied().collect(),
                (None, Some(_)) => return Err("pads must be integers".into()),
                // Computed by the graph: filled in from an engine run.
                (None, None) => Vec::new(),
            };
            Kind::Pad { pads, value }
        }
        Op::Concat { axis } => Kind::Concat(*axis),
        Op::Add => Kind::Binary(Binary::Add),
        Op::Sub => Kind::Binary(Binary::Sub),
        Op::Mul => Kind::Binary(Binary::Mul),
        Op::Div => Kind::Binary(Binary::Div),
        Op::Softmax | Op::LogSoftmax => {
            let log = matches!(node.op, Op::LogSoftmax);
            let rank = facts.get(&node.outputs[0]).map_or(2, |f| f.shape.len()) as i64;
            let axis = match node.attributes.get("axis").and_then(|a| a.as_int()) {
                Some(a) => a,
                None if graph.opset >= 13 => -1,
                None => 1,
            };
            // Before opset 13 the op flattens from `axis` on: the same as one axis only when it is the last.
            if graph.opset < 13 && (axis + rank) % rank != rank - 1 {
                return Err("softmax over several axes (opset < 13)".into());
            }
            Kind::Softmax { axis, log }
        }
        Op::Constant => return Err("a constant on the data path".into()),
        Op::Shape { .. } | Op::Range | Op::ConstantOfShape { .. } | Op::Equal => {
            return Err("shape arithmetic on the data path".into())
        }
        Op::Other(op) => return Err(format!("`{op}` has no candle translation")),
    })
}

/// `[begin_h, begin_w, end_h, end_w]`; anything but four entries is no padding.
fn quad(v: &[usize]) -> [usize; 4] {
    match v {
        [t, l, b, r] => [*t, *l, *b, *r],
        _ => [0; 4],
    }
}

fn pair(v: &[usize], default: usize) -> [usize; 2] {
    match v {
        [a, b] => [*a, *b],
        _ => [default, default],
    }
}

/// Pads axis `axis` with `before`/`after` cells of `value`; negative amounts crop.
fn pad_signed(x: &Tensor, axis: usize, before: i64, after: i64, value: f32) -> candle_core::Result<Tensor> {
    let mut y = x.clone();
    if before < 0 {
        let n = y.dim(axis)?;
        let cut = (-before) as usize;
        y = y.narrow(axis, cut.min(n), n.saturating_sub(cut))?;
    }
    if after < 0 {
        let n = y.dim(axis)?;
        y = y.narrow(axis, 0, n.saturating_sub((-after) as usize))?;
    }
    pad_const(&y, axis, before.max(0) as usize, after.max(0) as usize, value)
}

/// Pads axis `axis` with `before`/`after` cells of `value`.
fn pad_const(x: &Tensor, axis: usize, before: usize, after: usize, value: f32) -> candle_core::Result<Tensor> {
    if before == 0 && after == 0 {
        return Ok(x.clone());
    }
    if value == 0.0 {
        return x.pad_with_zeros(axis, before, after);
    }
    let slab = |n: usize| -> candle_core::Result<Tensor> {
        let mut dims = x.dims().to_vec();
        dims[axis] = n;
        Tensor::full(value, dims, x.device())?.to_dtype(x.dtype())
    };
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(slab(before)?);
    }
    parts.push(x.clone());
    if after > 0 {
        parts.push(slab(after)?);
    }
    Tensor::cat(&parts, axis)
}

fn conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, a: &ConvAttrs) -> candle_core::Result<Tensor> {
    let (_, c, h, wd) = x.dims4()?;
    let (m, _, kh, kw) = w.dims4()?;
    let [sh, sw] = pair(&a.strides, 1);
    let [dh, dw] = pair(&a.dilations, 1);
    let p = quad(&a.pads);
    let (pt, pb) = axis_pads(h, kh, sh, dh, a.auto_pad, (p[0], p[2]));
    let (pl, pr) = axis_pads(wd, kw, sw, dw, a.auto_pad, (p[1], p[3]));
    let (hp, wp) = (h + pt + pb, wd + pl + pr);
    let (reach_h, reach_w) = (dh * (kh - 1) + 1, dw * (kw - 1) + 1);
    if hp < reach_h || wp < reach_w {
        candle_core::bail!("the kernel ({kh}×{kw}) is larger than the padded input ({hp}×{wp})");
    }
    let groups = a.groups.max(1);
    if c % groups != 0 || m % groups != 0 {
        candle_core::bail!("{groups} groups do not divide {c} input channels and {m} filters");
    }
    let op = Conv2d {
        channels: c,
        input: [h, wd],
        filters: m,
        kernel: [kh, kw],
        stride: [sh, sw],
        dilation: [dh, dw],
        begin: [pt, pl],
        out: [(hp - reach_h) / sh + 1, (wp - reach_w) / sw + 1],
        groups,
    };
    op.apply(x, w, b)
}

fn conv_transpose(x: &Tensor, w: &Tensor, b: Option<&Tensor>, a: &ConvAttrs) -> candle_core::Result<Tensor> {
    let [s, _] = pair(&a.strides, 1);
    let [d, _] = pair(&a.dilations, 1);
    let groups = a.groups.max(1);
    let full = if groups == 1 {
        x.conv_transpose2d(w, 0, 0, s, d)?
    } else {
        let xs = x.chunk(groups, 1)?;
        let ws = w.chunk(groups, 0)?;
        let parts = xs
            .iter()
            .zip(&ws)
            .map(|(x, w)| x.conv_transpose2d(w, 0, 0, s, d))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&parts, 1)?
    };
    let p = if a.auto_pad == AutoPad::Valid { [0; 4] } else { quad(&a.pads) };
    let [oph, opw] = pair(&a.output_padding, 0);
    let (_, _, fh, fw) = full.dims4()?;
    let y = full.pad_with_zeros(2, 0, oph)?.pad_with_zeros(3, 0, opw)?;
    let (h, wd) = ((fh + oph).saturating_sub(p[0] + p[2]), (fw + opw).saturating_sub(p[1] + p[3]));
    let y = y.narrow(2, p[0], h)?.narrow(3, p[1], wd)?;
    match b {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?),
        None => Ok(y),
    }
}

fn pool_axes(x: &Tensor, p: &PoolAttrs) -> candle_core::Result<[PoolAxis; 2]> {
    let (_, _, h, w) = x.dims4()?;
    let [kh, kw] = pair(&p.kernel, 1);
    let [sh, sw] = pair(&p.strides, 1);
    let [dh, dw] = pair(&p.dilations, 1);
    let pads = quad(&p.pads);
    Ok([
        PoolAxis::new(h, kh, sh, dh, p.auto_pad, (pads[0], pads[2]), p.ceil_mode)?,
        PoolAxis::new(w, kw, sw, dw, p.auto_pad, (pads[1], pads[3]), p.ceil_mode)?,
    ])
}

fn pool(x: &Tensor, p: &PoolAttrs, reduce: Reduce) -> candle_core::Result<Tensor> {
    Pool2d { reduce, axes: pool_axes(x, p)? }.apply(x)
}

fn activation(x: &Tensor, a: Activation, slope: Option<&Tensor>) -> candle_core::Result<Tensor> {
    match a {
        Activation::Relu => x.relu(),
        Activation::LeakyRelu { alpha } => x.relu()? - x.neg()?.relu()?.affine(f64::from(alpha), 0.0)?,
        Activation::PRelu => {
            let slope = req(slope)?;
            // [C] slopes apply per channel (axis 1), as the exporters mean them.
            let slope = if slope.rank() == 1 && x.rank() > 2 && slope.elem_count() > 1 {
                let mut shape = vec![1; x.rank() - 1];
                shape[0] = slope.elem_count();
                slope.reshape(shape)?
            } else {
                slope.clone()
            };
            x.relu()? - x.neg()?.relu()?.broadcast_mul(&slope)?
        }
        Activation::Elu { alpha } => elu(x, alpha, 1.0),
        Activation::Selu { alpha, gamma } => elu(x, alpha, gamma),
        Activation::Softplus => softplus(x),
        Activation::Sigmoid => (x.neg()?.exp()? + 1.0)?.recip(),
        Activation::Tanh => x.tanh(),
        Activation::HardSigmoid { alpha, beta } => {
            x.affine(f64::from(alpha), f64::from(beta))?.maximum(0f32)?.minimum(1f32)
        }
        Activation::Clip { .. } => Ok(x.clone()),
        Activation::HardSwish => x.mul(&x.affine(1.0, 3.0)?.maximum(0f32)?.minimum(6f32)?)?.affine(1.0 / 6.0, 0.0),
        Activation::Gelu { tanh: false } => x.gelu_erf(),
        Activation::Gelu { tanh: true } => x.gelu(),
        Activation::Mish => x.mul(&softplus(x)?.tanh()?),
        Activation::Erf => x.erf(),
    }
}

/// ln(1 + eˣ) = max(x, 0) + ln(1 + e^-|x|), without overflow.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// `gamma·x` for x > 0, else `gamma·alpha·(eˣ − 1)`.
fn elu(x: &Tensor, alpha: f32, gamma: f32) -> candle_core::Result<Tensor> {
    let neg = (x.minimum(0f32)?.exp()? - 1.0)?.affine(f64::from(alpha), 0.0)?;
    (x.relu()? + neg)?.affine(f64::from(gamma), 0.0)
}

/// Softmax or log-softmax over `axis`, stable.
pub(crate) fn softmax(x: &Tensor, axis: usize, log: bool) -> candle_core::Result<Tensor> {
    let shifted = x.broadcast_sub(&x.max_keepdim(axis)?.detach())?;
    let sum = shifted.exp()?.sum_keepdim(axis)?;
    if log {
        shifted.broadcast_sub(&sum.log()?)
    } else {
        shifted.exp()?.broadcast_div(&sum)
    }
}
