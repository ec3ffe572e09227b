//! The model graph rewritten for relevance propagation: one [`Step`] per node that carries
//! activations from the input to the explained output, in topological order.
//!
//! The graph is canonized first ([`super::canonize`]: batch norms and per-channel affine constants
//! merged into the layer before them, gates found); then:
//! - any other `BatchNormalization` passes relevance through (Zennit's `Pass`);
//! - a trailing `Softmax`/`LogSoftmax` is skipped: relevance starts at the logits;
//! - nodes that only compute shapes (integer tensors) are not steps;
//! - a `Split` is one step per output that reaches the explained output.
//!
//! Each step is built by one exhaustive match on the node's decoded [`Op`] ([`rule_of`] says, from
//! the same match, what each op gets); any op on the data path without a rule is reported, with
//! its node, before any work starts.

use std::collections::{BTreeMap, HashMap, HashSet};

use ndarray::{Array1, ArrayD, Axis, Ix2, Ix4, IxDyn, Slice};

use super::canonize::{fold_affine, product_rule, scales_a_gate, Folded};
use super::composite::{LayerKind, Preset};
use super::linear::{Conv2d, Dense, LinearMap, NoWeights, Weights};
use super::pool::{max_pool_relevance, AvgPool2d, GlobalAvgPool, Window};
use super::routing::{max_relevance, scatter_axis, split_product, sum_to_shape, Diagonal, ProductRule, Reduce};
use super::rule::{stabilize, BoundRule, Rule};
use crate::error::{Error, Result};
use crate::model::fuse_movements;
use crate::model::{
    axis_index, gather_indices, scatter_sources, split_sizes, where_mask, Activations, AutoPad, Axes, ConvAttrs,
    ElemType, Graph, Node, Op, PadMode, PoolAttrs, Reduction, Selection, SliceAttrs, Weight,
};
use crate::model::{Interpolation, Operand, Recipe};

/// How one node propagates relevance.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// A dense layer with its (merged) parameters.
    Dense(Weights<Ix2>),
    /// A 2-D convolution with its (merged) parameters.
    Conv(ConvSpec, Weights<Ix4>),
    /// A 2-D transposed convolution.
    ConvTranspose(ConvSpec, Weights<Ix4>),
    /// Max pooling (winner takes all).
    MaxPool(PoolSpec),
    /// Average pooling (Norm rule).
    AvgPool(PoolSpec, bool),
    /// Global average pooling (Norm rule).
    GlobalAvgPool,
    /// Sum of several activations (and constants): proportional split (Norm rule).
    Add,
    /// Multiplication by a constant factor: the gradient.
    Scale(f32),
    /// Relevance unchanged (activations, dropout, unmerged batch norm, subtraction of a constant).
    Pass,
    /// Reshape back to the input's shape (Flatten, Reshape, Squeeze, Unsqueeze).
    Reshape,
    /// Inverse permutation.
    Transpose(Vec<usize>),
    /// Crop the padding away: `[begin_0, …, begin_n, end_0, …, end_n]`, constant or computed by
    /// the graph (the integer tensor of that name).
    Pad(IntSource),
    /// Split along an axis.
    Concat(i64),
    /// A mean or sum over axes (Norm rule); `keep_dims` false: the output lacks the reduced axes.
    Reduce {
        /// The reduced axes.
        over: Over,
        /// A mean (else a sum).
        mean: bool,
        /// The output keeps the reduced axes.
        keep_dims: bool,
    },
    /// Linear interpolation (`Resize` in linear mode): a constant linear map (Norm rule); its sizes
    /// when the graph computes them.
    Interpolate(Interpolation, Operand),
    /// A maximum over axes (winner takes all).
    ReduceMax {
        /// The reduced axes.
        over: Over,
        /// The output keeps the reduced axes.
        keep_dims: bool,
    },
    /// A product (or quotient) of two activations, by the rule the canonizer chose.
    Product(ProductRule),
    /// Multiplication by a constant tensor that no layer absorbed (Norm rule on the diagonal map).
    Diagonal(ArrayD<f32>),
    /// A strided range of some axes: relevance back to the positions read.
    Slice(SliceAttrs),
    /// A slice whose ranges the graph computes (`starts`, `ends`, `axes`, `steps`; absent ones
    /// take ONNX's defaults), read from each forward run.
    SliceComputed([Option<IntSource>; 4]),
    /// Output `index` of a split into `parts` parts along `axis` (sizes as the op's).
    SplitPart {
        /// The axis.
        axis: i64,
        /// The parts' sizes, or equal parts.
        sizes: Option<Vec<usize>>,
        /// Number of outputs.
        parts: usize,
        /// Which output this step is.
        index: usize,
    },
    /// Data movement (GatherND, GatherElements, Expand, Tile, DepthToSpace, SpaceToDepth):
    /// each output's relevance back to the input element it copies, added up where one is copied
    /// several times.
    Select {
        /// The op.
        selection: Selection,
        /// Its integer operand (indices, shape, repeats), for those that read one.
        operand: Operand,
    },
    /// `Where` with a constant condition and one activation operand: the activation's relevance
    /// where it was taken, the constant's share stays with it.
    Where {
        /// The condition (nonzero: the first operand), as stored.
        cond: ArrayD<i64>,
        /// Whether the activation is the first operand (else the second).
        first: bool,
    },
    /// Entries picked along an axis by constant indices: relevance back to the entries, added up
    /// where one is read twice.
    Gather {
        /// The axis.
        axis: i64,
        /// The indices (any shape).
        indices: ArrayD<i64>,
    },
}

/// The axes a reduction step works on.
#[derive(Debug, Clone, PartialEq)]
pub enum Over {
    /// The op's axes (or every axis).
    Axes(Axes),
    /// Every axis after the channels (global pooling).
    Spatial,
}

impl Over {
    fn resolve(&self, rank: usize) -> std::result::Result<Vec<usize>, String> {
        match self {
            Over::Spatial => Ok((2..rank).collect()),
            Over::Axes(a) => Ok(a.resolve(rank)?.unwrap_or_else(|| (0..rank).collect())),
        }
    }
}

/// Where a node's integer operands (a `Pad`'s amounts, a `Slice`'s ranges) come from.
#[derive(Debug, Clone, PartialEq)]
pub enum IntSource {
    /// Constant amounts.
    Const(Vec<i64>),
    /// Computed by the graph: the integer tensor of this name.
    Tensor(String),
}

/// Geometry attributes of a convolution (pads resolved per input size at run time).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvSpec {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub strides: [usize; 2],
    /// `[dh, dw]`.
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]` when explicit.
    pub pads: [usize; 4],
    /// ONNX `auto_pad`.
    pub auto_pad: AutoPad,
    /// Groups.
    pub groups: usize,
}

/// Geometry attributes of a pooling window.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub strides: [usize; 2],
    /// `[dh, dw]`.
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]` when explicit.
    pub pads: [usize; 4],
    /// ONNX `auto_pad`.
    pub auto_pad: AutoPad,
}

/// One propagation step.
#[derive(Debug, Clone)]
pub struct Step {
    /// The ONNX node (for a merged layer, the linear node).
    pub node: String,
    /// The node's op (for a merged layer, the linear node's).
    pub op: Op,
    /// The ONNX op types of the node and of the node merged into it, if any
    /// (`Conv+BatchNormalization`): for people, never parsed.
    pub label: String,
    /// Input activations, by tensor name.
    pub inputs: Vec<String>,
    /// The output tensor relevance arrives at.
    pub output: String,
    /// Other tensors that carry the same relevance as `output` (a merged layer's inner output).
    pub aliases: Vec<String>,
    /// Whether the forward run's value of `output` is the step's own (false: a layer whose merged
    /// nodes lie behind a transpose, so its rule recomputes its output from the merged weights).
    pub forward_output: bool,
    /// How relevance crosses the step.
    pub kind: StepKind,
    /// The rule, for linear layers.
    pub rule: Option<Rule>,
    /// The rule bound to the step's parameters (set with `rule`).
    pub(crate) bound: Option<Bound>,
}

/// The tensors a step's relevance arrives at while [`Program::new`] merges nodes into it.
struct Carrier {
    /// The last merged node's output.
    output: String,
    /// The outputs before it.
    aliases: Vec<String>,
    /// The op types, joined by `+`.
    label: String,
}

impl Carrier {
    fn of(node: &Node) -> Carrier {
        Carrier { output: node.outputs[0].clone(), aliases: Vec::new(), label: node.op_type.clone() }
    }

    /// `next` merged into the step: its output now carries the step's relevance.
    fn merge(&mut self, next: &Node, merged: &mut HashSet<String>) {
        self.aliases.push(std::mem::replace(&mut self.output, next.outputs[0].clone()));
        self.label = format!("{}+{}", self.label, next.op_type);
        merged.insert(next.name.clone());
    }
}

/// A step's rule bound to its parameters, by the kind of parameters.
#[derive(Debug, Clone)]
pub(crate) enum Bound {
    /// A dense layer's.
    Dense(BoundRule<Weights<Ix2>>),
    /// A convolution's (or transposed convolution's).
    Conv(BoundRule<Weights<Ix4>>),
    /// A map without parameters (average pooling, sums).
    Free(BoundRule<NoWeights>),
}

impl Bound {
    /// Linear passes the rule makes for input `x` (see [`BoundRule::passes`]).
    pub(crate) fn passes(&self, x: &ArrayD<f32>, output_known: bool) -> usize {
        match self {
            Bound::Dense(b) => b.passes(x, output_known),
            Bound::Conv(b) => b.passes(x, output_known),
            Bound::Free(b) => b.passes(x, output_known),
        }
    }
}

/// The whole rewritten graph and the rules chosen for it.
#[derive(Debug, Clone)]
pub struct Program {
    /// Steps in topological order.
    pub steps: Vec<Step>,
    /// The model input.
    pub input: String,
    /// Where relevance starts (the explained output, before a trailing Softmax).
    pub start: String,
    /// The preset the rules come from.
    pub preset: Preset,
    /// The model file (for messages).
    pub model: std::path::PathBuf,
}

/// What building a step may read: the graph, the model file (for messages) and the names of the
/// activations.
pub(super) struct Ctx<'a> {
    pub(super) graph: &'a Graph,
    pub(super) path: &'a std::path::Path,
    pub(super) data: &'a HashSet<String>,
}

/// The ONNX op types relevance propagation explains (those [`rule_of`] gives a rule), sorted.
pub fn supported_ops() -> Vec<&'static str> {
    Op::examples().into_iter().filter(|(_, op)| rule_of(op).is_some()).map(|(name, _)| name).collect()
}

/// What relevance propagation does with `op`, for people (`hudd inspect`): the rule family, from
/// the same cases as [`build`]; `None` when no rule explains it.
pub fn rule_of(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm { .. } | Op::MatMul => "the preset's layer rule",
        Op::MaxPool(_) | Op::GlobalMaxPool => "winner takes all",
        Op::Reduce { reduction: Reduction::Max, .. } => "winner takes all",
        Op::AveragePool { .. } | Op::GlobalAveragePool | Op::Reduce { .. } | Op::Interpolate(_) => {
            "norm (ε on the linear map)"
        }
        Op::BatchNormalization { .. } => "merged into the layer before it, else pass",
        Op::Activation(_) | Op::Dropout | Op::Identity | Op::Cast { .. } => "pass",
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Transpose { .. } => {
            "routing (reshape)"
        }
        Op::Pad { .. } | Op::Concat { .. } | Op::Split { .. } | Op::Slice(_) | Op::Gather { .. } | Op::Select(_) => {
            "routing"
        }
        Op::Where => "routing (a constant condition; the constant operand keeps its share)",
        Op::Add => "norm (proportional split; constants absorb)",
        Op::Sub => "merged into the layer before it, else pass (scalar) or norm",
        Op::Mul | Op::Div => {
            "merged into the layer before it; by a constant: gradient (scalar; pass when it scales a gated \
             product) or norm; of two activations: signal-only gate, else uniform"
        }
        Op::Softmax | Op::LogSoftmax => "skipped at the output (relevance starts at the logits)",
        Op::Constant | Op::Shape { .. } | Op::Range | Op::ConstantOfShape { .. } | Op::Equal | Op::Other(_) => {
            return None
        }
    })
}

/// How a node on the data path becomes a step.
fn build(node: &Node, c: &Ctx<'_>) -> Result<StepKind> {
    Ok(match &node.op {
        Op::Conv(a) => build_conv(node, c, a, false)?,
        Op::ConvTranspose(a) => build_conv(node, c, a, true)?,
        Op::Gemm { alpha, beta, trans_a, trans_b } => build_gemm(node, c, *alpha, *beta, *trans_a, *trans_b)?,
        Op::MatMul => build_matmul(node, c)?,
        Op::MaxPool(p) => StepKind::MaxPool(pool_spec(node, c, p)?),
        Op::AveragePool { pool, count_include_pad } => StepKind::AvgPool(pool_spec(node, c, pool)?, *count_include_pad),
        Op::GlobalAveragePool => StepKind::GlobalAvgPool,
        Op::GlobalMaxPool => StepKind::ReduceMax { over: Over::Spatial, keep_dims: true },
        Op::Interpolate(interpolation) => {
            let sizes = interpolation
                .sizes_operand(c.graph)
                .map_err(|e| unsupported(c, node, &format!("its sizes cannot be evaluated: {e}")))?;
            StepKind::Interpolate(interpolation.clone(), sizes)
        }
        Op::Reduce { reduction, axes, keep_dims } => {
            if let Axes::Computed(name) = axes {
                return Err(unsupported(c, node, &format!("the axes `{name}` are computed by the graph")));
            }
            let over = Over::Axes(axes.clone());
            match reduction {
                Reduction::Max => StepKind::ReduceMax { over, keep_dims: *keep_dims },
                Reduction::Mean | Reduction::Sum => {
                    StepKind::Reduce { over, mean: *reduction == Reduction::Mean, keep_dims: *keep_dims }
                }
            }
        }
        Op::BatchNormalization { .. } | Op::Activation(_) | Op::Dropout | Op::Identity | Op::Cast { .. } => {
            StepKind::Pass
        }
        Op::Flatten { .. } | Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => StepKind::Reshape,
        Op::Slice(attrs) => match attrs {
            Some(a) => StepKind::Slice(a.clone()),
            None => StepKind::SliceComputed(std::array::from_fn(|i| {
                let name = node.inputs.get(i + 1).filter(|n| !n.is_empty())?;
                Some(match c.graph.weight(name) {
                    Some(Weight::I64(a)) => IntSource::Const(a.iter().copied().collect()),
                    _ => IntSource::Tensor(name.clone()),
                })
            })),
        },
        Op::Split { axis, sizes } => {
            // One step per output: `Program::new` sets the index.
            StepKind::SplitPart { axis: *axis, sizes: sizes.clone(), parts: node.outputs.len(), index: 0 }
        }
        Op::Gather { axis } => match node.inputs.get(1).map(|n| (n, c.graph.weight(n))) {
            Some((_, Some(Weight::I64(indices)))) => StepKind::Gather { axis: *axis, indices: indices.clone() },
            _ => return Err(unsupported(c, node, "the indices must be an integer constant")),
        },
        Op::Select(selection) => {
            let operand = match node.inputs.get(1).filter(|n| !n.is_empty()) {
                Some(name) if selection.has_operand() => match c.graph.weight(name) {
                    Some(Weight::I64(a)) => Operand::Const(a.clone()),
                    Some(_) => return Err(unsupported(c, node, "its second input must be an integer tensor")),
                    // Computed from shapes (PyTorch's index and shape tensors follow the batch).
                    None => Operand::Computed(
                        Recipe::new(c.graph, name)
                            .map_err(|e| unsupported(c, node, &format!("its second input cannot be evaluated: {e}")))?,
                    ),
                },
                _ if selection.has_operand() => return Err(unsupported(c, node, "its second input is missing")),
                _ => Operand::None,
            };
            StepKind::Select { selection: selection.clone(), operand }
        }
        Op::Where => build_where(node, c)?,
        Op::Transpose { perm } => StepKind::Transpose(perm.clone().unwrap_or_default()),
        Op::Pad { mode, pads } => build_pad(node, c, *mode, pads.as_deref())?,
        Op::Concat { axis } => StepKind::Concat(*axis),
        Op::Add => StepKind::Add,
        Op::Sub => build_sub(node, c)?,
        Op::Mul => build_scale(node, c, false)?,
        Op::Div => build_scale(node, c, true)?,
        Op::Softmax
        | Op::LogSoftmax
        | Op::Constant
        | Op::Shape { .. }
        | Op::Range
        | Op::ConstantOfShape { .. }
        | Op::Equal
        | Op::Other(_) => return Err(unsupported(c, node, "no relevance rule for it")),
    })
}

/// `Where(cond, a, b)` with a constant condition and exactly one activation operand (the
/// exporters' masked fills: adaptive pooling, padding masks).
fn build_where(node: &Node, c: &Ctx<'_>) -> Result<StepKind> {
    let input = |i: usize| node.inputs.get(i).map(String::as_str).unwrap_or("");
    let Some(Weight::I64(cond)) = c.graph.weight(input(0)) else {
        return Err(unsupported(c, node, "the condition must be a constant"));
    };
    match (c.data.contains(input(1)), c.data.contains(input(2))) {
        (true, false) => Ok(StepKind::Where { cond: cond.clone(), first: true }),
        (false, true) => Ok(StepKind::Where { cond: cond.clone(), first: false }),
        _ => Err(unsupported(c, node, "exactly one of the two operands may be an activation")),
    }
}

pub(super) fn unsupported(c: &Ctx<'_>, node: &Node, what: &str) -> Error {
    Error::UnsupportedByStage {
        path: c.path.to_path_buf(),
        node: node.name.clone(),
        op: node.op_type.clone(),
        stage: "heatmaps",
        reason: what.to_string(),
    }
}

fn pair(v: &[usize], default: usize) -> [usize; 2] {
    match v {
        [a, b] => [*a, *b],
        _ => [default, default],
    }
}

fn quad(v: &[usize]) -> [usize; 4] {
    match v {
        [t, l, b, r] => [*t, *l, *b, *r],
        _ => [0; 4],
    }
}

pub(super) fn weight_f32<'a>(c: &'a Ctx<'_>, node: &Node, ix: usize) -> Result<Option<&'a ArrayD<f32>>> {
    let Some(name) = node.inputs.get(ix).filter(|s| !s.is_empty()) else { return Ok(None) };
    match c.graph.weight(name) {
        Some(Weight::F32(a)) => Ok(Some(a)),
        _ if c.data.contains(name) => Err(unsupported(c, node, &format!("input `{name}` must be a constant weight"))),
        _ => Err(unsupported(c, node, &format!("input `{name}` is not a float constant"))),
    }
}

fn conv_spec(node: &Node, c: &Ctx<'_>, a: &ConvAttrs, w: &ArrayD<f32>) -> Result<ConvSpec> {
    if w.ndim() != 4 {
        return Err(unsupported(c, node, "only 2-D convolutions are supported"));
    }
    Ok(ConvSpec {
        kernel: [w.shape()[2], w.shape()[3]],
        strides: pair(&a.strides, 1),
        dilations: pair(&a.dilations, 1),
        pads: quad(&a.pads),
        auto_pad: a.auto_pad,
        groups: a.groups,
    })
}

fn bias(c: &Ctx<'_>, node: &Node, ix: usize) -> Result<Option<Array1<f32>>> {
    Ok(weight_f32(c, node, ix)?.map(|b| b.iter().copied().collect()))
}

fn build_conv(node: &Node, c: &Ctx<'_>, a: &ConvAttrs, transposed: bool) -> Result<StepKind> {
    let w = weight_f32(c, node, 1)?.ok_or_else(|| unsupported(c, node, "no weight"))?;
    let spec = conv_spec(node, c, a, w)?;
    let weight = w.clone().into_dimensionality::<Ix4>().map_err(|_| unsupported(c, node, "weight must be 4-D"))?;
    let params = Weights { weight, bias: bias(c, node, 2)? };
    Ok(if transposed { StepKind::ConvTranspose(spec, params) } else { StepKind::Conv(spec, params) })
}

fn build_gemm(node: &Node, c: &Ctx<'_>, alpha: f32, beta: f32, trans_a: bool, trans_b: bool) -> Result<StepKind> {
    if trans_a {
        return Err(unsupported(c, node, "transA = 1: the batch must be the first axis"));
    }
    let b = weight_f32(c, node, 1)?.ok_or_else(|| unsupported(c, node, "no weight"))?;
    let b2 = b.view().into_dimensionality::<ndarray::Ix2>().map_err(|_| unsupported(c, node, "weight must be 2-D"))?;
    let w = if trans_b { b2.to_owned() } else { b2.t().to_owned() } * alpha;
    let out = w.nrows();
    let bias = match weight_f32(c, node, 2)? {
        None => None,
        Some(cb) => {
            let flat: Vec<f32> = cb.iter().map(|v| v * beta).collect();
            Some(match flat.len() {
                1 => Array1::from_elem(out, flat[0]),
                n if n == out => Array1::from(flat),
                _ => return Err(unsupported(c, node, "bias C must have one value per output")),
            })
        }
    };
    Ok(StepKind::Dense(Weights { weight: w, bias }))
}

fn build_matmul(node: &Node, c: &Ctx<'_>) -> Result<StepKind> {
    let b = weight_f32(c, node, 1)?.ok_or_else(|| unsupported(c, node, "the second operand must be a weight"))?;
    let b2 = b.view().into_dimensionality::<ndarray::Ix2>().map_err(|_| unsupported(c, node, "weight must be 2-D"))?;
    Ok(StepKind::Dense(Weights { weight: b2.t().to_owned(), bias: None }))
}

fn build_pad(node: &Node, c: &Ctx<'_>, mode: PadMode, attr: Option<&[i64]>) -> Result<StepKind> {
    if mode != PadMode::Constant {
        return Err(unsupported(c, node, "only constant padding"));
    }
    let pads = match attr {
        Some(p) => IntSource::Const(p.to_vec()),
        None => match node.inputs.get(1).map(|n| (n, c.graph.weight(n))) {
            Some((_, Some(Weight::I64(a)))) => IntSource::Const(a.iter().copied().collect()),
            Some((name, None)) => IntSource::Tensor(name.clone()),
            _ => return Err(unsupported(c, node, "pads must be integers")),
        },
    };
    if node.inputs.get(3).is_some_and(|s| !s.is_empty()) {
        return Err(unsupported(c, node, "padding a subset of axes"));
    }
    Ok(StepKind::Pad(pads))
}

/// The constant operand of a `Mul`, `Div` or `Sub` with one activation.
fn constant_operand<'a>(c: &'a Ctx<'_>, node: &Node) -> Result<&'a ArrayD<f32>> {
    let Some(name) = node.inputs.iter().find(|n| !c.data.contains(*n)) else {
        return Err(unsupported(c, node, "both operands are activations"));
    };
    match c.graph.weight(name) {
        Some(Weight::F32(a)) => Ok(a),
        _ => Err(unsupported(c, node, &format!("operand `{name}` is neither an activation nor a float constant"))),
    }
}

/// `Mul`/`Div`: of two activations, the canonizer's product rule; by a scalar, the gradient (as
/// Zennit computes an unhooked multiplication), or nothing when the scalar belongs to a gate
/// ([`scales_a_gate`]); by a tensor, the Norm rule on the diagonal map.
fn build_scale(node: &Node, c: &Ctx<'_>, divide: bool) -> Result<StepKind> {
    if node.inputs.len() == 2 && node.inputs.iter().all(|i| c.data.contains(i)) {
        return Ok(StepKind::Product(product_rule(c, node)));
    }
    let k = constant_operand(c, node)?;
    if divide && !c.data.contains(&node.inputs[0]) {
        return Err(unsupported(c, node, "dividing a constant by an activation"));
    }
    if k.len() == 1 {
        if scales_a_gate(c, node, &node.inputs[usize::from(!c.data.contains(&node.inputs[0]))]) {
            return Ok(StepKind::Pass);
        }
        let k = k.iter().copied().next().unwrap_or(1.0);
        return Ok(StepKind::Scale(if divide { 1.0 / k } else { k }));
    }
    Ok(StepKind::Diagonal(if divide { k.mapv(|v| 1.0 / v) } else { k.clone() }))
}

/// `Sub` of a constant: a scalar passes relevance on; a tensor is a shift, as `Add` of a
/// constant (Norm rule, the constant absorbs its share).
fn build_sub(node: &Node, c: &Ctx<'_>) -> Result<StepKind> {
    if node.inputs.iter().all(|i| c.data.contains(i)) {
        return Err(unsupported(c, node, "a difference of two activations"));
    }
    let k = constant_operand(c, node)?;
    if !c.data.contains(&node.inputs[0]) {
        return Err(unsupported(c, node, "subtracting an activation from a constant"));
    }
    Ok(if k.len() == 1 { StepKind::Pass } else { StepKind::Add })
}

fn pool_spec(node: &Node, c: &Ctx<'_>, p: &PoolAttrs) -> Result<PoolSpec> {
    if p.kernel.len() != 2 {
        return Err(unsupported(c, node, "only 2-D pooling"));
    }
    Ok(PoolSpec {
        kernel: [p.kernel[0], p.kernel[1]],
        strides: pair(&p.strides, 1),
        dilations: pair(&p.dilations, 1),
        pads: quad(&p.pads),
        auto_pad: p.auto_pad,
    })
}

/// Explicit `[top, left, bottom, right]` pads for an input of `hw`, resolving `auto_pad`.
fn resolve_pads(
    auto: AutoPad,
    pads: [usize; 4],
    hw: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    dil: [usize; 2],
) -> [usize; 4] {
    match auto {
        AutoPad::SameUpper | AutoPad::SameLower => {
            let mut p = [0; 4];
            for ax in 0..2 {
                let out = hw[ax].div_ceil(strides[ax]);
                let total = ((out - 1) * strides[ax] + dil[ax] * (kernel[ax] - 1) + 1).saturating_sub(hw[ax]);
                let small = total / 2;
                let (begin, end) =
                    if auto == AutoPad::SameUpper { (small, total - small) } else { (total - small, small) };
                p[ax] = begin;
                p[ax + 2] = end;
            }
            p
        }
        AutoPad::Valid => [0; 4],
        AutoPad::NotSet => pads,
    }
}

impl Program {
    /// Rewrites `graph` for relevance propagation towards `output`. `data` names the float tensors a
    /// forward run produces (batched activations); `bounds` are the input's lowest and highest values
    /// per channel (for z^B). Fails, naming node and op, on any op of the data path that is not
    /// supported.
    pub fn new(
        graph: &Graph,
        path: &std::path::Path,
        data: &HashSet<String>,
        output: &str,
        preset: Preset,
        bounds: &(Vec<f32>, Vec<f32>),
    ) -> Result<Program> {
        let input = graph.inputs.first().map(|i| i.name.clone()).unwrap_or_default();
        let c = Ctx { graph, path, data };
        // Where relevance starts: skip a trailing Softmax.
        let mut start = output.to_string();
        if let Some(p) = graph.producer_of(output) {
            if matches!(p.op, Op::Softmax | Op::LogSoftmax) {
                start = p.inputs[0].clone();
            }
        }
        // Activations: the float tensors that depend on the input. The engine's run names most of
        // them (`data`); the graph's inferred types name the ones it computes inside a fused op
        // (an LSTM's states), so that such a node is found on the path and refused by name.
        // Data movements through tensors without the batch first, fused (the forward run keeps
        // only batch-first tensors).
        let nodes = fuse_movements(graph, data);
        let reach = {
            let mut reach: HashSet<&str> = [input.as_str()].into();
            for n in &nodes {
                if n.inputs.iter().any(|i| reach.contains(i.as_str())) {
                    reach.extend(n.outputs.iter().map(String::as_str));
                }
            }
            reach
        };
        let activation = |t: &str| {
            data.contains(t)
                || (reach.contains(t)
                    && graph
                        .tensors
                        .get(t)
                        .is_some_and(|f| matches!(f.elem_type, ElemType::F32 | ElemType::F16 | ElemType::F64)))
        };
        // Nodes on the data path from the input to `start`.
        let needed = {
            let mut needed: HashSet<&str> = [start.as_str()].into();
            for n in nodes.iter().rev() {
                if n.outputs.iter().any(|o| needed.contains(o.as_str())) {
                    for i in n.inputs.iter().filter(|i| activation(i)) {
                        needed.insert(i);
                    }
                }
            }
            needed
        };
        let on_path = |n: &Node| {
            n.outputs.iter().any(|o| needed.contains(o.as_str()) && activation(o))
                && n.inputs.iter().any(|i| activation(i))
        };
        let mut steps: Vec<Step> = Vec::new();
        let mut merged: HashSet<String> = HashSet::new();
        // A transpose a layer's merged chain passed through, and what its step carries.
        let mut through: HashMap<String, Carrier> = HashMap::new();
        for node in nodes.iter().filter(|n| on_path(n)) {
            if merged.contains(&node.name) {
                continue;
            }
            let mut kind = build(node, &c)?;
            let mut own = through.remove(&node.name).unwrap_or_else(|| Carrier::of(node));
            let mut forward_output = true;
            if matches!(kind, StepKind::Dense(_) | StepKind::Conv(..)) {
                // The nodes merged behind a transpose belong to the transpose's step.
                let mut behind: Option<(String, Carrier)> = None;
                for folded in fold_affine(&mut kind, node, &own.output, &c)? {
                    match (folded, &mut behind) {
                        (Folded::Through(t), _) => behind = Some((t.name.clone(), Carrier::of(t))),
                        (Folded::Affine(next), None) => own.merge(next, &mut merged),
                        (Folded::Affine(next), Some((_, carrier))) => carrier.merge(next, &mut merged),
                    }
                }
                if let Some((name, carrier)) = behind {
                    through.insert(name, carrier);
                    forward_output = false;
                }
            }
            let Carrier { output, aliases, label } = own;
            let inputs: Vec<String> = match &kind {
                StepKind::Dense(_)
                | StepKind::Conv(..)
                | StepKind::ConvTranspose(..)
                | StepKind::Reshape
                | StepKind::Pad(_)
                | StepKind::Slice(_)
                | StepKind::SliceComputed(_)
                | StepKind::SplitPart { .. }
                | StepKind::Select { .. }
                | StepKind::Gather { .. } => {
                    vec![node.inputs[0].clone()]
                }
                StepKind::Where { first, .. } => vec![node.inputs[if *first { 1 } else { 2 }].clone()],
                // Both operands, in order (a product of a tensor with itself reads it twice).
                StepKind::Product(_) => node.inputs.clone(),
                _ => node.inputs.iter().filter(|i| data.contains(*i)).cloned().collect(),
            };
            let step = Step {
                node: node.name.clone(),
                op: node.op.clone(),
                label,
                inputs,
                output,
                aliases,
                forward_output,
                kind,
                rule: None,
                bound: None,
            };
            match &step.kind {
                // A split: one step per output that reaches the explained output.
                StepKind::SplitPart { axis, sizes, parts, .. } => {
                    for (index, out) in node.outputs.iter().enumerate() {
                        if needed.contains(out.as_str()) && activation(out) {
                            let kind = StepKind::SplitPart { axis: *axis, sizes: sizes.clone(), parts: *parts, index };
                            steps.push(Step { output: out.clone(), kind, ..step.clone() });
                        }
                    }
                }
                _ => steps.push(step),
            }
        }
        // Rules.
        // The one layer a preset's first-layer map applies to, if any.
        let kinds = preset.first_layer_kinds();
        let first = steps.iter().position(|s| step_layer_kind(s).is_some_and(|k| kinds.contains(&k)));
        for (ix, s) in steps.iter_mut().enumerate() {
            s.rule = match step_layer_kind(s) {
                Some(k) => Some(preset.rule(k, first == Some(ix), bounds)?),
                None => match s.kind {
                    StepKind::AvgPool(..)
                    | StepKind::GlobalAvgPool
                    | StepKind::Add
                    | StepKind::Reduce { .. }
                    | StepKind::Interpolate(..)
                    | StepKind::Diagonal(_) => Some(Rule::Norm { stabilizer: preset.stabilizer() }),
                    _ => None,
                },
            };
            s.bound = s.rule.as_ref().map(|rule| match &s.kind {
                StepKind::Dense(p) => Bound::Dense(rule.bind(p)),
                StepKind::Conv(_, p) | StepKind::ConvTranspose(_, p) => Bound::Conv(rule.bind(p)),
                _ => Bound::Free(rule.bind(&NoWeights)),
            });
        }
        Ok(Program { steps, input, start, preset, model: path.to_path_buf() })
    }

    /// Every tensor [`Program::propagate`] reads from the forward run, sorted: each step's inputs
    /// and output, computed pads, and the start tensor.
    pub fn reads(&self) -> Vec<String> {
        let mut names: Vec<String> = vec![self.start.clone()];
        for s in &self.steps {
            names.extend(s.inputs.iter().cloned());
            names.push(s.output.clone());
            match &s.kind {
                StepKind::Pad(IntSource::Tensor(t)) => names.push(t.clone()),
                StepKind::SliceComputed(parts) => names.extend(parts.iter().flatten().filter_map(|p| match p {
                    IntSource::Tensor(t) => Some(t.clone()),
                    IntSource::Const(_) => None,
                })),
                _ => {}
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Propagates `start_relevance` (shaped like the start tensor) back to the input through the
    /// activations of one forward run, returning the relevance of every tensor visited.
    pub fn propagate(
        &self,
        activations: &Activations,
        start_relevance: ArrayD<f32>,
    ) -> Result<BTreeMap<String, ArrayD<f32>>> {
        let acts = &activations.tensors;
        let mut rel: BTreeMap<String, ArrayD<f32>> = BTreeMap::new();
        rel.insert(self.start.clone(), start_relevance);
        for step in self.steps.iter().rev() {
            // Taken out while its step runs (no copy), put back below.
            let Some(r) = rel.remove(&step.output) else { continue };
            for a in &step.aliases {
                rel.insert(a.clone(), r.clone());
            }
            let contributions = self.step_back(step, &r, acts, &activations.integers);
            rel.insert(step.output.clone(), r);
            let contributions = contributions?;
            for (name, c) in contributions {
                match rel.get_mut(&name) {
                    Some(existing) if existing.shape() == c.shape() => *existing += &c,
                    _ => {
                        rel.insert(name, c);
                    }
                }
            }
        }
        Ok(rel)
    }

    fn step_back(
        &self,
        step: &Step,
        r: &ArrayD<f32>,
        acts: &BTreeMap<String, ArrayD<f32>>,
        integers: &BTreeMap<String, ArrayD<i64>>,
    ) -> Result<Vec<(String, ArrayD<f32>)>> {
        let act = |name: &str| -> Result<&ArrayD<f32>> {
            acts.get(name).ok_or_else(|| Error::ModelInterface {
                path: self.model.clone(),
                reason: format!(
                    "node `{}` ({}) reads `{name}`, which the engine computes inside another op and does not \
                     expose, so relevance cannot pass through it; `hudd inspect --ops` lists the supported ops",
                    step.node, step.label
                ),
            })
        };
        let x_name = step.inputs.first().cloned().unwrap_or_default();
        // 2-D convolutions and pooling read `[N, C, H, W]` tensors: checked here, once, so that
        // the maps below can rely on it.
        let act4 = |name: &str| -> Result<&ArrayD<f32>> {
            let x = act(name)?;
            for (tensor, t) in [(name, x), (step.output.as_str(), r)] {
                if t.ndim() != 4 {
                    return Err(Error::ShapeMismatch {
                        tensor: tensor.to_string(),
                        actual: t.shape().to_vec(),
                        expected: format!("[N, C, H, W] at node `{}`", step.node),
                    });
                }
            }
            Ok(x)
        };
        let one = |v: ArrayD<f32>| Ok(vec![(x_name.clone(), v)]);
        let rule = step.rule.clone().unwrap_or(Rule::Pass);
        // The layer's own output from the forward run (`z` of ε, the mask of γ).
        let output = if step.forward_output { acts.get(&step.output) } else { None };
        match &step.kind {
            StepKind::Dense(_) => {
                let x = act(&x_name)?;
                let flat = x.as_standard_layout().into_owned();
                let n = flat.shape()[0];
                let x2 = flat.into_shape_with_order(IxDyn(&[n, x.len() / n.max(1)])).map_err(shape_err)?;
                let r2 = r
                    .as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(IxDyn(&[n, r.len() / n.max(1)]))
                    .map_err(shape_err)?;
                let out = match &step.bound {
                    Some(Bound::Dense(b)) => b.propagate(&Dense, &x2, &r2, output),
                    _ => r2,
                };
                one(out.into_shape_with_order(x.raw_dim()).map_err(shape_err)?)
            }
            StepKind::Conv(spec, _) => {
                let x = act4(&x_name)?;
                let hw = [x.shape()[2], x.shape()[3]];
                let conv = Conv2d {
                    strides: spec.strides,
                    pads: resolve_pads(spec.auto_pad, spec.pads, hw, spec.kernel, spec.strides, spec.dilations),
                    dilations: spec.dilations,
                    groups: spec.groups,
                    kernel: spec.kernel,
                };
                one(match &step.bound {
                    Some(Bound::Conv(b)) => b.propagate(&conv, x, r, output),
                    _ => r.clone(),
                })
            }
            StepKind::ConvTranspose(spec, _) => {
                let x = act4(&x_name)?;
                let out_hw = [r.shape()[2], r.shape()[3]];
                let map = ConvTranspose2d {
                    conv: Conv2d {
                        strides: spec.strides,
                        pads: spec.pads,
                        dilations: spec.dilations,
                        groups: spec.groups,
                        kernel: spec.kernel,
                    },
                    out_hw,
                };
                one(match &step.bound {
                    Some(Bound::Conv(b)) => b.propagate(&map, x, r, output),
                    _ => r.clone(),
                })
            }
            StepKind::MaxPool(spec) => {
                let x = act4(&x_name)?;
                one(max_pool_relevance(&window(spec, x, r), x, r, output))
            }
            StepKind::AvgPool(spec, include_pad) => {
                let x = act4(&x_name)?;
                let map = AvgPool2d { window: window(spec, x, r), count_include_pad: *include_pad };
                one(match &step.bound {
                    Some(Bound::Free(b)) => b.propagate(&map, x, r, output),
                    _ => r.clone(),
                })
            }
            StepKind::GlobalAvgPool => {
                let x = act(&x_name)?;
                one(match &step.bound {
                    Some(Bound::Free(b)) => b.propagate(&GlobalAvgPool, x, r, output),
                    _ => r.clone(),
                })
            }
            StepKind::Pass => one(r.clone()),
            StepKind::Scale(k) => one(r * *k),
            StepKind::Reshape => {
                let x = act(&x_name)?;
                one(r.as_standard_layout().into_owned().into_shape_with_order(x.raw_dim()).map_err(shape_err)?)
            }
            StepKind::Transpose(perm) => {
                let perm: Vec<usize> = if perm.is_empty() { (0..r.ndim()).rev().collect() } else { perm.clone() };
                let mut inverse = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p] = i;
                }
                one(r.view().permuted_axes(IxDyn(&inverse)).as_standard_layout().into_owned())
            }
            StepKind::Pad(source) => {
                let pads: Vec<i64> = self.ints(step, source, integers)?;
                let nd = r.ndim();
                let mut v = r.view();
                for ax in 0..nd {
                    let (b, e) = (pads.get(ax).copied().unwrap_or(0), pads.get(ax + nd).copied().unwrap_or(0));
                    let len = v.shape()[ax] as isize;
                    v.slice_axis_inplace(Axis(ax), Slice::from(b as isize..len - e as isize));
                }
                one(v.to_owned())
            }
            StepKind::Concat(axis) => {
                let ax = if *axis < 0 { (r.ndim() as i64 + axis) as usize } else { *axis as usize };
                let mut offset = 0;
                let mut out = Vec::new();
                for name in &step.inputs {
                    let size = act(name)?.shape()[ax];
                    out.push((name.clone(), r.slice_axis(Axis(ax), Slice::from(offset..offset + size)).to_owned()));
                    offset += size;
                }
                Ok(out)
            }
            StepKind::Reduce { over, mean, keep_dims } => {
                let x = act(&x_name)?;
                let map = Reduce { axes: over.resolve(x.ndim()).map_err(|e| self.step_error(step, &e))?, mean: *mean };
                let r = self.kept_dims(step, r, &map.output_shape(x.shape()), *keep_dims)?;
                let output = output.map(|o| o.view().into_shape_with_order(r.raw_dim()).map(|v| v.to_owned()));
                let output = match output {
                    Some(Ok(o)) => Some(o),
                    _ => None,
                };
                one(match &step.bound {
                    Some(Bound::Free(b)) => b.propagate(&map, x, &r, output.as_ref()),
                    _ => r.broadcast(x.raw_dim()).map(|v| v.to_owned()).ok_or_else(|| shape_err_of(&r, x))?,
                })
            }
            StepKind::Interpolate(interpolation, sizes) => {
                let x = act(&x_name)?;
                let sizes = sizes.value(x.shape()[0]).map_err(|e| self.step_error(step, &e))?;
                let map = interpolation
                    .sized(sizes.as_deref())
                    .and_then(|i| i.matrices(x.shape()))
                    .map_err(|e| self.step_error(step, &e))?;
                one(match &step.bound {
                    Some(Bound::Free(b)) => b.propagate(&map, x, r, output),
                    _ => map.apply_transposed(r),
                })
            }
            StepKind::ReduceMax { over, keep_dims } => {
                let x = act(&x_name)?;
                let axes = over.resolve(x.ndim()).map_err(|e| self.step_error(step, &e))?;
                let kept = Reduce { axes: axes.clone(), mean: false }.output_shape(x.shape());
                let r = self.kept_dims(step, r, &kept, *keep_dims)?;
                one(max_relevance(x, &r, &axes))
            }
            StepKind::Product(rule) => {
                let (a, b) = (act(&step.inputs[0])?, act(&step.inputs[1])?);
                let [ra, rb] = split_product(r, [a.shape(), b.shape()], *rule);
                Ok(vec![(step.inputs[0].clone(), ra), (step.inputs[1].clone(), rb)])
            }
            StepKind::Diagonal(factor) => {
                let x = act(&x_name)?;
                let map = Diagonal { factor: factor.clone() };
                one(match &step.bound {
                    Some(Bound::Free(b)) => b.propagate(&map, x, r, output),
                    _ => r.clone(),
                })
            }
            StepKind::Slice(_) | StepKind::SliceComputed(_) => {
                let x = act(&x_name)?;
                let computed;
                let attrs = match &step.kind {
                    StepKind::SliceComputed(parts) => {
                        let [starts, ends, axes, steps] = std::array::from_fn(|i| {
                            parts[i].as_ref().map(|p| self.ints(step, p, integers)).transpose()
                        });
                        computed = SliceAttrs {
                            starts: starts?.unwrap_or_default(),
                            ends: ends?.unwrap_or_default(),
                            axes: axes?,
                            steps: steps?,
                        };
                        &computed
                    }
                    StepKind::Slice(attrs) => attrs,
                    _ => unreachable!("matched above"),
                };
                let ranges = attrs.resolve(x.shape()).map_err(|e| self.step_error(step, &e))?;
                let mut back = r.clone();
                for range in ranges {
                    back = scatter_axis(&back, range.axis, x.shape()[range.axis], &range.indices());
                }
                one(back)
            }
            StepKind::SplitPart { axis, sizes, parts, index } => {
                let x = act(&x_name)?;
                let ax = axis_index(*axis, x.ndim()).map_err(|e| self.step_error(step, &e))?;
                let len = x.shape()[ax];
                let sizes = split_sizes(sizes.as_deref(), *parts, len);
                let start: usize = sizes.iter().take(*index).sum();
                let size = sizes.get(*index).copied().unwrap_or(0);
                if start + size > len || r.shape().get(ax) != Some(&size) {
                    return Err(self.step_error(step, &format!("part {index} ({size} at {start}) of {len}")));
                }
                one(scatter_axis(r, ax, len, &(start..start + size).collect::<Vec<_>>()))
            }
            StepKind::Gather { axis, indices } => {
                let x = act(&x_name)?;
                let ax = axis_index(*axis, x.ndim()).map_err(|e| self.step_error(step, &e))?;
                let len = x.shape()[ax];
                let picked = gather_indices(indices.iter().copied(), len).map_err(|e| self.step_error(step, &e))?;
                // The indices' axes stand where the gathered axis stood: as one axis, then routed.
                let mut shape = x.shape().to_vec();
                shape[ax] = picked.len();
                let flat =
                    r.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&shape)).map_err(shape_err)?;
                one(scatter_axis(&flat, ax, len, &picked))
            }
            StepKind::Select { selection, operand } => {
                let x = act(&x_name)?;
                let batch = x.shape().first().copied().unwrap_or(1);
                let operand = operand.value(batch).map_err(|e| self.step_error(step, &e))?;
                let sources =
                    selection.sources(x.shape(), operand.as_deref()).map_err(|e| self.step_error(step, &e))?;
                one(scatter_sources(r, &sources, x.shape()).map_err(|e| self.step_error(step, &e))?)
            }
            StepKind::Where { cond, first } => {
                let x = act(&x_name)?;
                let mask = where_mask(cond, r.shape()).map_err(|e| self.step_error(step, &e))?;
                let taken = ndarray::Zip::from(r).and(&mask).map_collect(|&r, &m| if m == *first { r } else { 0.0 });
                one(if taken.shape() == x.shape() { taken } else { sum_to_shape(&taken, x.shape()) })
            }
            StepKind::Add => {
                let eps = match rule {
                    Rule::Norm { stabilizer } => stabilizer,
                    _ => self.preset.stabilizer(),
                };
                // z = Σ inputs (+ constants): recomputed from the output activation.
                let z = act(&step.output)?;
                let mut out = Vec::new();
                for name in &step.inputs {
                    let x = act(name)?;
                    let contribution = if x.shape() == r.shape() {
                        // One pass: x · r / z.
                        ndarray::Zip::from(r).and(z).and(x).map_collect(|&r, &z, &x| x * (r / stabilize(z, eps)))
                    } else {
                        let share = ndarray::Zip::from(r).and(z).map_collect(|&r, &z| r / stabilize(z, eps));
                        sum_to_shape(&(&share * x), x.shape())
                    };
                    out.push((name.clone(), contribution));
                }
                Ok(out)
            }
        }
    }
}

fn shape_err_of(r: &ArrayD<f32>, x: &ArrayD<f32>) -> Error {
    Error::ShapeMismatch {
        tensor: "relevance".into(),
        actual: r.shape().to_vec(),
        expected: format!("a shape that broadcasts to {:?}", x.shape()),
    }
}

impl Program {
    /// The values of an integer operand: a constant, or the tensor of that name from the run.
    fn ints(&self, step: &Step, source: &IntSource, integers: &BTreeMap<String, ArrayD<i64>>) -> Result<Vec<i64>> {
        match source {
            IntSource::Const(v) => Ok(v.clone()),
            IntSource::Tensor(name) => integers
                .get(name)
                .map(|a| a.iter().copied().collect())
                .ok_or_else(|| self.step_error(step, &format!("the engine did not compute `{name}`"))),
        }
    }

    /// An error that names the step's node.
    fn step_error(&self, step: &Step, what: &str) -> Error {
        Error::ModelInterface {
            path: self.model.clone(),
            reason: format!("node `{}` ({}): {what}", step.node, step.label),
        }
    }

    /// A reduction's relevance `r` with the reduced axes present (size 1): `kept` is that shape.
    fn kept_dims(&self, step: &Step, r: &ArrayD<f32>, kept: &[usize], keep_dims: bool) -> Result<ArrayD<f32>> {
        if keep_dims && r.shape() == kept {
            return Ok(r.clone());
        }
        r.as_standard_layout().into_owned().into_shape_with_order(IxDyn(kept)).map_err(|_| {
            self.step_error(
                step,
                &format!("relevance of shape {:?} does not fit the reduced shape {kept:?}", r.shape()),
            )
        })
    }
}

fn window(spec: &PoolSpec, x: &ArrayD<f32>, r: &ArrayD<f32>) -> Window {
    let hw = [x.shape()[2], x.shape()[3]];
    Window {
        kernel: spec.kernel,
        strides: spec.strides,
        pads: resolve_pads(spec.auto_pad, spec.pads, hw, spec.kernel, spec.strides, spec.dilations),
        dilations: spec.dilations,
        output: [r.shape()[2], r.shape()[3]],
    }
}

fn shape_err(e: ndarray::ShapeError) -> Error {
    Error::ShapeMismatch { tensor: "relevance".into(), actual: vec![], expected: e.to_string() }
}

fn step_layer_kind(s: &Step) -> Option<LayerKind> {
    match s.kind {
        StepKind::Dense(_) => Some(LayerKind::Dense),
        StepKind::Conv(..) | StepKind::ConvTranspose(..) => Some(LayerKind::Conv),
        _ => None,
    }
}

/// A transposed convolution: the transpose of [`Conv2d`] with the same weight.
#[derive(Debug, Clone)]
struct ConvTranspose2d {
    conv: Conv2d,
    out_hw: [usize; 2],
}

impl LinearMap for ConvTranspose2d {
    type Params = Weights<Ix4>;

    fn forward(&self, x: &ArrayD<f32>, params: &Weights<Ix4>) -> ArrayD<f32> {
        let co = params.weight.shape()[1] * self.conv.groups;
        let shape = [x.shape()[0], co, self.out_hw[0], self.out_hw[1]];
        let mut y = self.conv.apply_transposed(x, &params.weight, &shape);
        if let Some(b) = &params.bias {
            for (c, mut lane) in y.axis_iter_mut(Axis(1)).enumerate() {
                lane += b[c];
            }
        }
        y
    }

    fn backward(&self, s: &ArrayD<f32>, params: &Weights<Ix4>, _input_shape: &[usize]) -> ArrayD<f32> {
        self.conv.apply(s, &params.weight)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use ndarray::{ArrayD, Axis, IxDyn};

    use super::super::linear::tests::tensor;
    use super::super::linear::{Conv2d, Dense, LinearMap, Weights};
    use super::*;
    use crate::model::{Attribute, Dim, ElemType, Graph, Node, TensorInfo, Weight};

    fn node(name: &str, op: &str, inputs: &[&str], attrs: &[(&str, Attribute)]) -> Node {
        let attributes: BTreeMap<String, Attribute> = attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Node {
            name: name.into(),
            op_type: op.into(),
            op: Op::decode(op, &attributes, &[], |_| None).unwrap(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![format!("{name}_out")],
            attributes,
        }
    }

    /// A graph from input `x` to output `fc_out`.
    fn graph_x_to_fc(nodes: Vec<Node>, weights: BTreeMap<String, Weight>) -> Graph {
        let info =
            |n: &str| TensorInfo { name: n.into(), shape: vec![Dim::Symbolic("N".into())], elem_type: ElemType::F32 };
        Graph {
            inputs: vec![info("x")],
            outputs: vec![info("fc_out")],
            nodes,
            weights,
            tensors: BTreeMap::new(),
            opset: 17,
            producer: "test".into(),
        }
    }

    /// x → Conv(pad 1) → Relu → MaxPool(2) → Flatten → Gemm, all biases zero; activations computed
    /// here with the same maps.
    fn tiny() -> (Graph, BTreeMap<String, ArrayD<f32>>) {
        let w_conv = tensor(&[3, 1, 3, 3], 1);
        let w_fc = tensor(&[4, 27], 2);
        let mut weights = BTreeMap::new();
        weights.insert("wc".to_string(), Weight::F32(w_conv.clone()));
        weights.insert("bc".to_string(), Weight::F32(ArrayD::zeros(IxDyn(&[3]))));
        weights.insert("wf".to_string(), Weight::F32(w_fc.clone()));
        weights.insert("bf".to_string(), Weight::F32(ArrayD::zeros(IxDyn(&[4]))));
        let nodes = vec![
            node("conv", "Conv", &["x", "wc", "bc"], &[("pads", Attribute::Ints(vec![1, 1, 1, 1]))]),
            node("relu", "Relu", &["conv_out"], &[]),
            node(
                "pool",
                "MaxPool",
                &["relu_out"],
                &[("kernel_shape", Attribute::Ints(vec![2, 2])), ("strides", Attribute::Ints(vec![2, 2]))],
            ),
            node("flat", "Flatten", &["pool_out"], &[]),
            node("fc", "Gemm", &["flat_out", "wf", "bf"], &[("transB", Attribute::Int(1))]),
        ];
        let graph = graph_x_to_fc(nodes, weights);
        let x = tensor(&[2, 1, 6, 6], 3).mapv(|v| v.abs() + 0.1);
        let conv = Conv2d { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, kernel: [3, 3] };
        let c = conv.apply(&x, &w_conv.into_dimensionality().unwrap());
        let r = c.mapv(|v| v.max(0.0));
        let mut p = ArrayD::<f32>::zeros(IxDyn(&[2, 3, 3, 3]));
        for b in 0..2 {
            for ch in 0..3 {
                for i in 0..3 {
                    for j in 0..3 {
                        let window =
                            [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(di, dj)| r[[b, ch, 2 * i + di, 2 * j + dj]]);
                        p[[b, ch, i, j]] = window.into_iter().fold(f32::MIN, f32::max);
                    }
                }
            }
        }
        let f = p.clone().into_shape_with_order(IxDyn(&[2, 27])).unwrap();
        let y = Dense.forward(&f, &Weights { weight: w_fc.into_dimensionality().unwrap(), bias: None });
        let acts: BTreeMap<String, ArrayD<f32>> =
            [("x", x), ("conv_out", c), ("relu_out", r), ("pool_out", p), ("flat_out", f), ("fc_out", y)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        (graph, acts)
    }

    #[test]
    fn relevance_is_conserved_layer_to_layer_without_biases() {
        let (graph, acts) = tiny();
        let data: HashSet<String> = acts.keys().cloned().collect();
        let bounds = (vec![0.0], vec![1.0]);
        for preset in [Preset::EpsilonPlus, Preset::EpsilonGammaBox] {
            let program = Program::new(&graph, "tiny.onnx".as_ref(), &data, "fc_out", preset, &bounds).unwrap();
            let y = &acts["fc_out"];
            let start = super::super::start_relevance(y, &super::super::Start::Predicted).unwrap();
            let all = Activations { tensors: acts.clone(), integers: BTreeMap::new() };
            let rel = program.propagate(&all, start.clone()).unwrap();
            for b in 0..2 {
                let total = start.index_axis(Axis(0), b).sum();
                for t in ["flat_out", "pool_out", "relu_out", "conv_out", "x"] {
                    let s = rel[t].index_axis(Axis(0), b).sum();
                    assert!((s - total).abs() <= 1e-3 * total.abs(), "{preset}: {t}: {s} vs {total}");
                }
            }
        }
    }

    #[test]
    fn auto_pad_resolves_like_onnx() {
        // 5 wide, kernel 3, stride 2: 3 outputs need 7 inputs, 2 pads; SAME_UPPER puts the odd one last.
        assert_eq!(resolve_pads(AutoPad::SameUpper, [9; 4], [5, 6], [3, 2], [2, 2], [1, 1]), [1, 0, 1, 0]);
        assert_eq!(resolve_pads(AutoPad::SameUpper, [0; 4], [6, 6], [3, 3], [2, 2], [1, 1]), [0, 0, 1, 1]);
        assert_eq!(resolve_pads(AutoPad::SameLower, [0; 4], [6, 6], [3, 3], [2, 2], [1, 1]), [1, 1, 0, 0]);
        assert_eq!(resolve_pads(AutoPad::Valid, [1, 2, 3, 4], [6, 6], [3, 3], [1, 1], [1, 1]), [0; 4]);
        assert_eq!(resolve_pads(AutoPad::NotSet, [1, 2, 3, 4], [6, 6], [3, 3], [1, 1], [1, 1]), [1, 2, 3, 4]);
    }

    #[test]
    fn ops_without_a_rule_are_reported_with_their_node() {
        let (mut graph, acts) = tiny();
        graph.nodes[1].op_type = "Sin".into();
        graph.nodes[1].op = Op::Other("Sin".into());
        let data: HashSet<String> = acts.keys().cloned().collect();
        let err = Program::new(&graph, "tiny.onnx".as_ref(), &data, "fc_out", Preset::Hudd, &(vec![0.0], vec![1.0]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("node `relu`") && err.contains("Sin"), "{err}");
    }

    /// x → Conv → `then` (nodes after the convolution, reading `conv_out`) → Flatten → Gemm; the
    /// activations computed by `forward` from the convolution's output.
    fn conv_then(
        w_conv: &ArrayD<f32>,
        b_conv: &ArrayD<f32>,
        then: Vec<Node>,
        consts: &[(&str, ArrayD<f32>)],
        forward: impl Fn(&ArrayD<f32>) -> Vec<(String, ArrayD<f32>)>,
    ) -> (Graph, BTreeMap<String, ArrayD<f32>>) {
        let w_fc = tensor(&[4, 3 * 4 * 4], 12);
        let mut weights: BTreeMap<String, Weight> = BTreeMap::new();
        weights.insert("wc".into(), Weight::F32(w_conv.clone()));
        weights.insert("bc".into(), Weight::F32(b_conv.clone()));
        weights.insert("wf".into(), Weight::F32(w_fc.clone()));
        for (n, a) in consts {
            weights.insert(n.to_string(), Weight::F32(a.clone()));
        }
        let last = then.last().map_or("conv_out".to_string(), |n| n.outputs[0].clone());
        let mut nodes = vec![node("conv", "Conv", &["x", "wc", "bc"], &[("pads", Attribute::Ints(vec![1, 1, 1, 1]))])];
        nodes.extend(then);
        nodes.push(node("flat", "Flatten", &[&last], &[]));
        nodes.push(node("fc", "Gemm", &["flat_out", "wf"], &[("transB", Attribute::Int(1))]));
        let graph = graph_x_to_fc(nodes, weights);
        let x = tensor(&[2, 1, 4, 4], 13).mapv(|v| v.abs() + 0.1);
        let conv = Conv2d { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, kernel: [3, 3] };
        let mut c = conv.apply(&x, &w_conv.clone().into_dimensionality().unwrap());
        for (ch, mut lane) in c.axis_iter_mut(Axis(1)).enumerate() {
            lane += b_conv[[ch]];
        }
        let mut acts: BTreeMap<String, ArrayD<f32>> = BTreeMap::new();
        acts.insert("x".into(), x);
        acts.insert("conv_out".into(), c.clone());
        let mut y = c.clone();
        for (name, a) in forward(&c) {
            y = a.clone();
            acts.insert(name, a);
        }
        let f = y.into_shape_with_order(IxDyn(&[2, 48])).unwrap();
        let out = Dense.forward(&f, &Weights { weight: w_fc.into_dimensionality().unwrap(), bias: None });
        acts.insert("flat_out".into(), f);
        acts.insert("fc_out".into(), out);
        (graph, acts)
    }

    fn input_relevance(graph: &Graph, acts: &BTreeMap<String, ArrayD<f32>>, preset: Preset) -> (Program, ArrayD<f32>) {
        let data: HashSet<String> = acts.keys().cloned().collect();
        let program = Program::new(graph, "t.onnx".as_ref(), &data, "fc_out", preset, &(vec![0.0], vec![1.0])).unwrap();
        let start = super::super::start_relevance(&acts["fc_out"], &super::super::Start::Predicted).unwrap();
        let all = Activations { tensors: acts.clone(), integers: BTreeMap::new() };
        let rel = program.propagate(&all, start).unwrap();
        (program, rel["x"].clone())
    }

    #[test]
    fn per_channel_mul_and_add_after_a_convolution_merge_into_it() {
        // Batch norm as tf2onnx writes it: Conv → Mul(s) → Add(t), s and t of shape [C, 1, 1].
        let (w, b) = (tensor(&[3, 1, 3, 3], 10), tensor(&[3], 11));
        let s = ArrayD::from_shape_vec(IxDyn(&[3, 1, 1]), vec![2.0, -0.5, 1.5]).unwrap();
        let t = ArrayD::from_shape_vec(IxDyn(&[1, 3, 1, 1]), vec![0.1, -0.2, 0.3]).unwrap();
        let then = vec![node("mul", "Mul", &["conv_out", "s"], &[]), node("add", "Add", &["t", "mul_out"], &[])];
        let (split, acts) = conv_then(&w, &b, then, &[("s", s.clone()), ("t", t.clone())], |c| {
            let m = c * &s;
            let a = &m + &t;
            vec![("mul_out".to_string(), m), ("add_out".to_string(), a)]
        });
        // The same network with the factors merged by hand: W·s, b·s + t.
        let mut merged_w = w.clone();
        for (o, mut row) in merged_w.axis_iter_mut(Axis(0)).enumerate() {
            row *= s[[o, 0, 0]];
        }
        let merged_b = ArrayD::from_shape_fn(IxDyn(&[3]), |i| b[[i[0]]] * s[[i[0], 0, 0]] + t[[0, i[0], 0, 0]]);
        let (one, one_acts) = conv_then(&merged_w, &merged_b, vec![], &[], |_| vec![]);
        for preset in [Preset::Hudd, Preset::EpsilonPlus, Preset::EpsilonAlpha2Beta1] {
            let (program, got) = input_relevance(&split, &acts, preset);
            let conv = &program.steps[0];
            assert_eq!((conv.label.as_str(), conv.output.as_str()), ("Conv+Mul+Add", "add_out"), "{preset}");
            assert_eq!(conv.aliases, ["conv_out", "mul_out"]);
            assert_eq!(program.steps.len(), 3, "conv (merged), flatten, dense");
            let (_, want) = input_relevance(&one, &one_acts, preset);
            let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
            assert!(err <= 1e-4 * scale, "{preset}: {err} of {scale}");
        }
    }

    #[test]
    fn gelu_written_out_passes_relevance_on_as_the_gelu_op_does() {
        // erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7): the same values in every form.
        let erf = |v: f32| {
            let t = 1.0 / (1.0 + 0.327_591_1 * v.abs());
            let p = t * (0.254_829_6 + t * (-0.284_496_7 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
            (1.0 - p * (-v * v).exp()).copysign(v)
        };
        let (w, b) = (tensor(&[3, 1, 3, 3], 20), tensor(&[3], 21));
        let scalar = |v: f32| ArrayD::from_elem(IxDyn(&[]), v);
        let consts = [("r2", scalar(std::f32::consts::SQRT_2)), ("one", scalar(1.0)), ("half", scalar(0.5))];
        let gate = |c: &ArrayD<f32>| {
            let d = c.mapv(|v| v / std::f32::consts::SQRT_2);
            let e = d.mapv(erf);
            let a = e.mapv(|v| v + 1.0);
            (d, e, a)
        };
        let gelu = |c: &ArrayD<f32>| c * &gate(c).2 * 0.5;
        let (op, op_acts) = conv_then(&w, &b, vec![node("gelu", "Gelu", &["conv_out"], &[])], &[], |c| {
            vec![("gelu_out".to_string(), gelu(c))]
        });
        // TorchScript: (x · (1 + erf(x / √2))) · 0.5.
        let torchscript = vec![
            node("div", "Div", &["conv_out", "r2"], &[]),
            node("erf", "Erf", &["div_out"], &[]),
            node("add", "Add", &["erf_out", "one"], &[]),
            node("mul", "Mul", &["conv_out", "add_out"], &[]),
            node("mul1", "Mul", &["mul_out", "half"], &[]),
        ];
        let (ts, ts_acts) = conv_then(&w, &b, torchscript, &consts, |c| {
            let (d, e, a) = gate(c);
            let m = c * &a;
            let y = &m * 0.5;
            [("div_out", d), ("erf_out", e), ("add_out", a), ("mul_out", m), ("mul1_out", y)]
                .map(|(n, v)| (n.to_string(), v))
                .to_vec()
        });
        // tf2onnx (Keras): (0.5 · x) · (1 + erf(x / √2)), the constants first.
        let keras = vec![
            node("scaled", "Mul", &["half", "conv_out"], &[]),
            node("div", "Div", &["conv_out", "r2"], &[]),
            node("erf", "Erf", &["div_out"], &[]),
            node("add", "Add", &["one", "erf_out"], &[]),
            node("mul", "Mul", &["scaled_out", "add_out"], &[]),
        ];
        let (tf, tf_acts) = conv_then(&w, &b, keras, &consts, |c| {
            let (d, e, a) = gate(c);
            let h = c * 0.5;
            let y = &h * &a;
            [("scaled_out", h), ("div_out", d), ("erf_out", e), ("add_out", a), ("mul_out", y)]
                .map(|(n, v)| (n.to_string(), v))
                .to_vec()
        });
        for preset in [Preset::Hudd, Preset::EpsilonPlus] {
            let (_, want) = input_relevance(&op, &op_acts, preset);
            let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
            for (form, graph, acts) in [("TorchScript", &ts, &ts_acts), ("tf2onnx", &tf, &tf_acts)] {
                let (_, got) = input_relevance(graph, acts, preset);
                let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(err <= 1e-5 * scale, "{preset}, {form}: {err} of {scale}");
            }
        }
    }

    #[test]
    fn a_per_channel_factor_away_from_any_layer_is_a_diagonal_map_and_conserves() {
        // Conv → Relu → Mul([1, C, 1, 1]): not adjacent to the convolution, so not merged.
        let (w, b) = (tensor(&[3, 1, 3, 3], 10), ArrayD::zeros(IxDyn(&[3])));
        let s = ArrayD::from_shape_vec(IxDyn(&[1, 3, 1, 1]), vec![2.0, 0.5, 3.0]).unwrap();
        let then = vec![node("relu", "Relu", &["conv_out"], &[]), node("mul", "Mul", &["relu_out", "s"], &[])];
        let (graph, acts) = conv_then(&w, &b, then, &[("s", s.clone())], |c| {
            let r = c.mapv(|v| v.max(0.0));
            let m = &r * &s;
            vec![("relu_out".to_string(), r), ("mul_out".to_string(), m)]
        });
        let (program, _) = input_relevance(&graph, &acts, Preset::EpsilonPlus);
        assert!(program.steps.iter().any(|st| matches!(st.kind, StepKind::Diagonal(_))));
        let start = super::super::start_relevance(&acts["fc_out"], &super::super::Start::Predicted).unwrap();
        let all = Activations { tensors: acts.clone(), integers: BTreeMap::new() };
        let rel = program.propagate(&all, start).unwrap();
        let (a, b) = (rel["mul_out"].sum(), rel["relu_out"].sum());
        assert!((a - b).abs() <= 1e-3 * a.abs(), "the diagonal map conserves: {a} vs {b}");
    }
}
