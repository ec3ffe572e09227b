//! ONNX operators as a closed set of typed values, decoded once when the model loads.
//!
//! Every stage that reads the network's structure (relevance propagation, and the candle
//! translator of the retraining stage) matches on [`Op`] instead of re-reading attribute strings,
//! so the compiler lists the cases a stage leaves out. Attribute defaults are ONNX's. An op that
//! hudd runs through the engine but no stage interprets is [`Op::Other`], with its ONNX name.

use std::collections::BTreeMap;

use serde::Serialize;

use super::graph::{Attribute, Weight};
use super::interpolate::Interpolation;
use super::select::Selection;

/// ONNX `auto_pad`: how a convolution or pooling window pads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AutoPad {
    /// The explicit `pads` apply.
    #[default]
    NotSet,
    /// Output size = ⌈input / stride⌉; an odd total padding puts the extra cell at the end.
    SameUpper,
    /// As `SameUpper`, the extra cell at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

/// Geometry of a convolution (`Conv`, `ConvTranspose`); one entry per spatial axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConvAttrs {
    /// Kernel size per spatial axis (`kernel_shape`, or the weight's trailing dimensions).
    pub kernel: Vec<usize>,
    /// Strides (default 1).
    pub strides: Vec<usize>,
    /// `[begin_0, …, begin_n, end_0, …, end_n]` (default 0).
    pub pads: Vec<usize>,
    /// Dilations (default 1).
    pub dilations: Vec<usize>,
    /// Channel groups (default 1).
    pub groups: usize,
    /// `auto_pad`.
    pub auto_pad: AutoPad,
    /// `ConvTranspose` only: extra cells at the end of each output axis (default 0).
    pub output_padding: Vec<usize>,
}

/// Geometry of a pooling window (`MaxPool`, `AveragePool`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolAttrs {
    /// Window size per spatial axis (`kernel_shape`).
    pub kernel: Vec<usize>,
    /// Strides (default 1).
    pub strides: Vec<usize>,
    /// `[begin_0, …, begin_n, end_0, …, end_n]` (default 0).
    pub pads: Vec<usize>,
    /// Dilations (default 1).
    pub dilations: Vec<usize>,
    /// `auto_pad`.
    pub auto_pad: AutoPad,
    /// Output sizes rounded up instead of down.
    pub ceil_mode: bool,
}

/// An element-wise activation function.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "function", rename_all = "kebab-case")]
pub enum Activation {
    /// `max(0, x)`.
    Relu,
    /// `x` for `x ≥ 0`, else `alpha·x` (default 0.01).
    LeakyRelu {
        /// Negative slope.
        alpha: f32,
    },
    /// `x` for `x ≥ 0`, else `slope·x` with a learned slope (second input).
    PRelu,
    /// `x` for `x ≥ 0`, else `alpha·(eˣ − 1)` (default 1).
    Elu {
        /// Scale of the negative part.
        alpha: f32,
    },
    /// `gamma·x` for `x > 0`, else `gamma·alpha·(eˣ − 1)`.
    Selu {
        /// Default 1.67326.
        alpha: f32,
        /// Default 1.0507.
        gamma: f32,
    },
    /// `ln(1 + eˣ)`.
    Softplus,
    /// `1 / (1 + e⁻ˣ)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `max(alpha·x + beta, 0)` capped at 1 (defaults 0.2, 0.5).
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `min(max(x, min), max)`; bounds from attributes (opset < 11) or inputs.
    Clip {
        /// The lower bound.
        min: Bound,
        /// The upper bound.
        max: Bound,
    },
    /// `x · min(max(x + 3, 0), 6) / 6` (MobileNetV3).
    HardSwish,
    /// `x · Φ(x)` (`approximate = "none"`) or its tanh approximation.
    Gelu {
        /// The tanh approximation.
        tanh: bool,
    },
    /// `x · tanh(ln(1 + eˣ))`.
    Mish,
    /// The error function `erf(x)`: exact GELU as the TorchScript exporter and tf2onnx write it out,
    /// `x · (1 + erf(x / √2)) / 2` (the shifted `erf` is then the product's gate).
    Erf,
}

/// A `Clip` bound.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// Not given: no bound on that side.
    Unbounded,
    /// A constant.
    At(f32),
    /// Computed by the graph (the input is not a constant).
    Computed,
}

impl Bound {
    /// The constant bound, if any; `Err` when the graph computes it.
    pub fn constant(self) -> Result<Option<f32>, String> {
        match self {
            Bound::Unbounded => Ok(None),
            Bound::At(v) => Ok(Some(v)),
            Bound::Computed => Err("the bounds must be constants".into()),
        }
    }
}

/// What a reduction computes over its axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduction {
    /// `ReduceMean`.
    Mean,
    /// `ReduceSum`.
    Sum,
    /// `ReduceMax`.
    Max,
}

/// The axes an op works on, from its attribute (older opsets) or its constant input (opset 13+
/// for `ReduceSum`, `Squeeze`, `Unsqueeze`; 18+ for the other reductions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Axes {
    /// Not given: the op's default (a reduction: every axis; `Squeeze`: every axis of size 1).
    Default,
    /// The listed axes (negative counts from the end); empty means none.
    Listed(Vec<i64>),
    /// Computed by the graph (the input tensor of this name is not a constant).
    Computed(String),
}

/// `axis` (negative counts from the end) as an index into `rank` axes; an error says it is out of
/// range.
pub fn axis_index(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    usize::try_from(a).ok().filter(|&a| a < rank).ok_or_else(|| format!("axis {axis} is out of range for rank {rank}"))
}

/// The sizes of a `Split`'s parts of an axis of `len`: the given `sizes`, or `parts` equal parts of
/// ⌈len / parts⌉, the last one smaller (ONNX's `num_outputs` rule).
pub fn split_sizes(sizes: Option<&[usize]>, parts: usize, len: usize) -> Vec<usize> {
    match sizes {
        Some(s) => s.to_vec(),
        None => {
            let each = len.div_ceil(parts.max(1));
            (0..parts).map(|i| each.min(len.saturating_sub(i * each))).collect()
        }
    }
}

/// A `Gather`'s indices into an axis of `len` (negative counts from the end); an error says an
/// index is out of range.
pub fn gather_indices(indices: impl IntoIterator<Item = i64>, len: usize) -> Result<Vec<usize>, String> {
    indices
        .into_iter()
        .map(|i| {
            let j = if i < 0 { i + len as i64 } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < len)
                .ok_or_else(|| format!("index {i} is out of range for {len} entries"))
        })
        .collect()
}

impl Axes {
    /// The axes as indices into a tensor of rank `rank`, sorted without repeats, or `None` for
    /// [`Axes::Default`]; an error names an axis out of range or computed axes.
    pub fn resolve(&self, rank: usize) -> Result<Option<Vec<usize>>, String> {
        match self {
            Axes::Default => Ok(None),
            Axes::Computed(name) => Err(format!("the axes are computed by the graph (`{name}`), not constants")),
            Axes::Listed(v) => {
                let mut out = v.iter().map(|&a| axis_index(a, rank)).collect::<Result<Vec<_>, _>>()?;
                out.sort_unstable();
                out.dedup();
                Ok(Some(out))
            }
        }
    }
}

/// `Slice`'s ranges, from attributes (opset < 10) or constant inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SliceAttrs {
    /// First index per sliced axis (negative counts from the end; clamped).
    pub starts: Vec<i64>,
    /// End (exclusive) per sliced axis (clamped; `i64::MAX` for "to the end").
    pub ends: Vec<i64>,
    /// The sliced axes (default `0..starts.len()`).
    pub axes: Option<Vec<i64>>,
    /// Steps (default 1; negative walks backwards).
    pub steps: Option<Vec<i64>>,
}

/// One sliced axis, resolved against its length: the kept indices are `start, start + step, …`
/// (`count` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceAxis {
    /// The axis.
    pub axis: usize,
    /// The first kept index.
    pub start: usize,
    /// The step between kept indices (never 0).
    pub step: i64,
    /// How many indices are kept.
    pub count: usize,
}

impl SliceAxis {
    /// The kept indices, in output order.
    pub fn indices(&self) -> Vec<usize> {
        (0..self.count).map(|i| (self.start as i64 + i as i64 * self.step) as usize).collect()
    }
}

impl SliceAttrs {
    /// The kept range of each sliced axis of a tensor of `shape`, as ONNX defines the clamping.
    pub fn resolve(&self, shape: &[usize]) -> Result<Vec<SliceAxis>, String> {
        let rank = shape.len() as i64;
        let n = self.starts.len();
        if self.ends.len() != n {
            return Err(format!("{} starts but {} ends", n, self.ends.len()));
        }
        let axes: Vec<i64> = self.axes.clone().unwrap_or_else(|| (0..n as i64).collect());
        let steps: Vec<i64> = self.steps.clone().unwrap_or_else(|| vec![1; n]);
        if axes.len() != n || steps.len() != n {
            return Err("starts, ends, axes and steps differ in length".into());
        }
        let mut out: Vec<SliceAxis> = Vec::with_capacity(n);
        for i in 0..n {
            let a = if axes[i] < 0 { axes[i] + rank } else { axes[i] };
            if !(0..rank).contains(&a) || out.iter().any(|s| s.axis as i64 == a) {
                return Err(format!("axis {} is out of range or repeated", axes[i]));
            }
            let dim = shape[a as usize] as i64;
            let step = steps[i];
            if step == 0 {
                return Err("a step of 0".into());
            }
            let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
            let (start, end) = (norm(self.starts[i]), norm(self.ends[i]));
            let (start, end) = if step > 0 {
                (start.clamp(0, dim), end.clamp(0, dim))
            } else {
                (start.clamp(0, dim - 1), end.clamp(-1, dim - 1))
            };
            let count = if step > 0 {
                if end > start {
                    (end - start + step - 1) / step
                } else {
                    0
                }
            } else if start > end {
                (start - end + (-step) - 1) / (-step)
            } else {
                0
            };
            out.push(SliceAxis { axis: a as usize, start: start.max(0) as usize, step, count: count as usize });
        }
        Ok(out)
    }
}

/// ONNX `Pad` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PadMode {
    /// Pad with a constant (default 0).
    Constant,
    /// Mirror without the edge.
    Reflect,
    /// Repeat the edge.
    Edge,
    /// Wrap around.
    Wrap,
}

/// The op types [`Op::decode`] knows, sorted (a unit test checks each against it). `Resize` and
/// `Upsample` are not listed: they decode to a variant only in nearest mode with constant scales
/// or sizes (inputs, which the examples lack).
const KNOWN: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "ConvTranspose",
    "DepthToSpace",
    "Div",
    "Dropout",
    "Elu",
    "Equal",
    "Erf",
    "Expand",
    "Flatten",
    "Gather",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "HardSwish",
    "Identity",
    "LeakyRelu",
    "LogSoftmax",
    "MatMul",
    "MaxPool",
    "Mish",
    "Mul",
    "PRelu",
    "Pad",
    "Range",
    "ReduceMax",
    "ReduceMean",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Selu",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Softplus",
    "SpaceToDepth",
    "Split",
    "Squeeze",
    "Sub",
    "Tanh",
    "Tile",
    "Transpose",
    "Unsqueeze",
    "Where",
];

/// One ONNX operator with its attributes decoded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op")]
pub enum Op {
    /// Convolution.
    Conv(ConvAttrs),
    /// Transposed convolution.
    ConvTranspose(ConvAttrs),
    /// `alpha·A'·B' + beta·C`, `'` = transposed when the flag is set.
    Gemm {
        /// Default 1.
        alpha: f32,
        /// Default 1.
        beta: f32,
        /// `transA`.
        trans_a: bool,
        /// `transB`.
        trans_b: bool,
    },
    /// Matrix product.
    MatMul,
    /// Max pooling.
    MaxPool(PoolAttrs),
    /// Average pooling.
    AveragePool {
        /// The window.
        pool: PoolAttrs,
        /// Padded cells count in the divisor.
        count_include_pad: bool,
    },
    /// Mean over all spatial positions.
    GlobalAveragePool,
    /// Max over all spatial positions.
    GlobalMaxPool,
    /// Inference-mode batch normalisation.
    BatchNormalization {
        /// Added to the variance (default 1e-5).
        epsilon: f32,
    },
    /// An element-wise activation.
    Activation(Activation),
    /// Dropout (identity at inference).
    Dropout,
    /// Identity.
    Identity,
    /// Element type conversion.
    Cast {
        /// The ONNX element type converted to (`to`).
        to: i64,
    },
    /// Flatten to 2-D at `axis` (default 1).
    Flatten {
        /// The first axis of the second dimension.
        axis: i64,
    },
    /// Reshape to the shape given by the second input.
    Reshape {
        /// A 0 in the shape is a size of 0, not a copy of the input's (`allowzero`).
        allow_zero: bool,
    },
    /// Remove axes of size 1.
    Squeeze {
        /// The removed axes.
        axes: Axes,
    },
    /// Insert axes of size 1.
    Unsqueeze {
        /// Where the new axes stand in the output.
        axes: Axes,
    },
    /// A reduction (`ReduceMean`, `ReduceSum`, `ReduceMax`) over some axes.
    Reduce {
        /// What is computed.
        reduction: Reduction,
        /// Over which axes.
        axes: Axes,
        /// The reduced axes stay, with size 1 (default true).
        keep_dims: bool,
    },
    /// Parts of the input along an axis, one per output.
    Split {
        /// The axis (negative counts from the end).
        axis: i64,
        /// The size of each part (the `split` attribute or constant input); `None`: equal parts
        /// (the last one smaller when the size does not divide), one per output.
        sizes: Option<Vec<usize>>,
    },
    /// A strided range of some axes; `None` when the ranges are computed by the graph.
    Slice(Option<SliceAttrs>),
    /// Entries along `axis` picked by the integer indices of the second input.
    Gather {
        /// The axis (negative counts from the end).
        axis: i64,
    },
    /// Data movement: each output element a copy of one input element (`GatherND`,
    /// `GatherElements`, `Expand`, `Tile`, `DepthToSpace`, `SpaceToDepth`).
    Select(Selection),
    /// `Resize` / `Upsample` in linear mode with constant scales or sizes: a constant linear map.
    Interpolate(Interpolation),
    /// `Where(cond, a, b)`: `a` where `cond` holds, else `b` (broadcasting).
    Where,
    /// The shape of a tensor, axes `start..end` (an integer tensor: shape arithmetic).
    Shape {
        /// First axis (negative counts from the end; default 0).
        start: i64,
        /// One past the last axis (default: the rank).
        end: Option<i64>,
    },
    /// `start, start + delta, …` below `limit` (shape arithmetic).
    Range,
    /// A tensor of the shape given by the input, every element `value` (shape arithmetic; `None`
    /// when the value is not an integer).
    ConstantOfShape {
        /// The fill value (default 0).
        value: Option<i64>,
    },
    /// Element-wise equality, as 0 or 1 (shape arithmetic).
    Equal,
    /// Permute axes (`perm`; reversed when absent).
    Transpose {
        /// The permutation, if given.
        perm: Option<Vec<usize>>,
    },
    /// Padding.
    Pad {
        /// How cells are filled.
        mode: PadMode,
        /// The `pads` attribute (opset < 11); later opsets give them as the second input.
        pads: Option<Vec<i64>>,
    },
    /// Concatenation along `axis`.
    Concat {
        /// The axis (negative counts from the end).
        axis: i64,
    },
    /// Element-wise sum (broadcasting).
    Add,
    /// Element-wise difference.
    Sub,
    /// Element-wise product.
    Mul,
    /// Element-wise quotient.
    Div,
    /// Softmax.
    Softmax,
    /// Log-softmax.
    LogSoftmax,
    /// A constant tensor (its value is one of the graph's weights).
    Constant,
    /// An op no stage of hudd interprets (the engine may still run it).
    Other(String),
}

impl Op {
    /// Decodes a node's op from its ONNX op type, attributes and inputs: `inputs` names each
    /// input tensor, `constant` gives the value of those that are constants (a convolution's
    /// kernel size, the axes of an opset-18 reduction, a slice's ranges).
    /// Errors name the attribute or input that does not fit ONNX's definition.
    pub fn decode<'w>(
        op_type: &str,
        attributes: &BTreeMap<String, Attribute>,
        inputs: &[String],
        constant: impl Fn(&str) -> Option<&'w Weight>,
    ) -> Result<Op, String> {
        let a = Attrs(attributes);
        let input = |ix: usize| inputs.get(ix).filter(|n| !n.is_empty());
        let weight_shape = input(1).and_then(|n| constant(n)).map(Weight::shape);
        // An integer list from attribute `attr`, else from input `ix`: `None` when neither is given.
        let listed = |attr: &str, ix: usize| -> Result<Axes, String> {
            if let Some(v) = a.ints(attr) {
                return Ok(Axes::Listed(v.to_vec()));
            }
            let Some(name) = input(ix) else { return Ok(Axes::Default) };
            match constant(name) {
                Some(Weight::I64(v)) => Ok(Axes::Listed(v.iter().copied().collect())),
                Some(_) => Err(format!("input `{name}` ({attr}) is not an integer tensor")),
                None => Ok(Axes::Computed(name.clone())),
            }
        };
        let reduce = |reduction: Reduction| -> Result<Op, String> {
            let axes = match listed("axes", 1)? {
                // An empty list: every axis, unless `noop_with_empty_axes` makes it the identity.
                Axes::Listed(v) if v.is_empty() && a.int("noop_with_empty_axes").unwrap_or(0) == 0 => Axes::Default,
                axes => axes,
            };
            Ok(Op::Reduce { reduction, axes, keep_dims: a.int("keepdims").unwrap_or(1) != 0 })
        };
        Ok(match op_type {
            "Conv" | "ConvTranspose" => {
                let kernel = match a.usizes("kernel_shape")? {
                    Some(k) => k,
                    None => weight_shape.map(|s| s.iter().skip(2).copied().collect()).unwrap_or_default(),
                };
                let rank = kernel.len();
                let attrs = ConvAttrs {
                    strides: a.usizes("strides")?.unwrap_or_else(|| vec![1; rank]),
                    pads: a.usizes("pads")?.unwrap_or_else(|| vec![0; 2 * rank]),
                    dilations: a.usizes("dilations")?.unwrap_or_else(|| vec![1; rank]),
                    groups: a.int("group").unwrap_or(1).max(1) as usize,
                    auto_pad: a.auto_pad()?,
                    output_padding: a.usizes("output_padding")?.unwrap_or_else(|| vec![0; rank]),
                    kernel,
                };
                if op_type == "Conv" {
                    Op::Conv(attrs)
                } else {
                    Op::ConvTranspose(attrs)
                }
            }
            "Gemm" => Op::Gemm {
                alpha: a.float("alpha").unwrap_or(1.0),
                beta: a.float("beta").unwrap_or(1.0),
                trans_a: a.int("transA").unwrap_or(0) != 0,
                trans_b: a.int("transB").unwrap_or(0) != 0,
            },
            "MatMul" => Op::MatMul,
            "MaxPool" => Op::MaxPool(a.pool()?),
            "AveragePool" => {
                Op::AveragePool { pool: a.pool()?, count_include_pad: a.int("count_include_pad").unwrap_or(0) != 0 }
            }
            "GlobalAveragePool" => Op::GlobalAveragePool,
            "GlobalMaxPool" => Op::GlobalMaxPool,
            "BatchNormalization" => Op::BatchNormalization { epsilon: a.float("epsilon").unwrap_or(1e-5) },
            "Relu" => Op::Activation(Activation::Relu),
            "LeakyRelu" => Op::Activation(Activation::LeakyRelu { alpha: a.float("alpha").unwrap_or(0.01) }),
            "PRelu" => Op::Activation(Activation::PRelu),
            "Elu" => Op::Activation(Activation::Elu { alpha: a.float("alpha").unwrap_or(1.0) }),
            "Selu" => Op::Activation(Activation::Selu {
                alpha: a.float("alpha").unwrap_or(1.673_263_2),
                gamma: a.float("gamma").unwrap_or(1.050_701),
            }),
            "Softplus" => Op::Activation(Activation::Softplus),
            "Sigmoid" => Op::Activation(Activation::Sigmoid),
            "Tanh" => Op::Activation(Activation::Tanh),
            "HardSigmoid" => Op::Activation(Activation::HardSigmoid {
                alpha: a.float("alpha").unwrap_or(0.2),
                beta: a.float("beta").unwrap_or(0.5),
            }),
            "Clip" => {
                // Opset < 11: attributes `min`/`max`; later: optional scalar inputs 1 and 2.
                let bound = |attr: &str, ix: usize| -> Result<Bound, String> {
                    if let Some(v) = a.float(attr) {
                        return Ok(Bound::At(v));
                    }
                    let Some(name) = input(ix) else { return Ok(Bound::Unbounded) };
                    match constant(name) {
                        Some(Weight::F32(v)) if v.len() == 1 => Ok(Bound::At(v.iter().copied().next().unwrap_or(0.0))),
                        Some(_) => Err(format!("input `{name}` ({attr}) is not a float scalar")),
                        None => Ok(Bound::Computed),
                    }
                };
                Op::Activation(Activation::Clip { min: bound("min", 1)?, max: bound("max", 2)? })
            }
            "HardSwish" => Op::Activation(Activation::HardSwish),
            "Mish" => Op::Activation(Activation::Mish),
            "Erf" => Op::Activation(Activation::Erf),
            "Gelu" => Op::Activation(Activation::Gelu {
                tanh: match a.string("approximate").unwrap_or("none") {
                    "none" => false,
                    "tanh" => true,
                    m => return Err(format!("attribute `approximate` = `{m}` is not none or tanh")),
                },
            }),
            "ReduceMean" => reduce(Reduction::Mean)?,
            "ReduceSum" => reduce(Reduction::Sum)?,
            "ReduceMax" => reduce(Reduction::Max)?,
            "Split" => {
                let sizes = match listed("split", 1)? {
                    Axes::Default => None,
                    Axes::Listed(v) => Some(
                        v.iter()
                            .map(|&x| usize::try_from(x).map_err(|_| format!("split size {x} is negative")))
                            .collect::<Result<Vec<_>, _>>()?,
                    ),
                    Axes::Computed(name) => return Err(format!("the split sizes `{name}` are not a constant")),
                };
                Op::Split { axis: a.int("axis").unwrap_or(0), sizes }
            }
            "Slice" => {
                let part =
                    |attr: &str, ix: usize| listed(attr, if a.ints("starts").is_some() { usize::MAX } else { ix });
                Op::Slice(match (part("starts", 1)?, part("ends", 2)?, part("axes", 3)?, part("steps", 4)?) {
                    (Axes::Listed(starts), Axes::Listed(ends), axes, steps)
                        if !matches!(axes, Axes::Computed(_)) && !matches!(steps, Axes::Computed(_)) =>
                    {
                        let list = |x: Axes| match x {
                            Axes::Listed(v) => Some(v),
                            _ => None,
                        };
                        Some(SliceAttrs { starts, ends, axes: list(axes), steps: list(steps) })
                    }
                    _ => None,
                })
            }
            "Gather" => Op::Gather { axis: a.int("axis").unwrap_or(0) },
            "GatherND" => Op::Select(Selection::GatherNd {
                batch_dims: usize::try_from(a.int("batch_dims").unwrap_or(0))
                    .map_err(|_| "attribute `batch_dims` is negative".to_string())?,
            }),
            "GatherElements" => Op::Select(Selection::GatherElements { axis: a.int("axis").unwrap_or(0) }),
            "Expand" => Op::Select(Selection::Expand),
            "Tile" => Op::Select(Selection::Tile),
            "DepthToSpace" | "SpaceToDepth" => {
                let blocksize = a
                    .int("blocksize")
                    .and_then(|b| usize::try_from(b).ok())
                    .filter(|&b| b > 0)
                    .ok_or("attribute `blocksize` is missing or not positive")?;
                if op_type == "SpaceToDepth" {
                    Op::Select(Selection::SpaceToDepth { blocksize })
                } else {
                    let crd = match a.string("mode").unwrap_or("DCR") {
                        "DCR" => false,
                        "CRD" => true,
                        m => return Err(format!("attribute `mode` = `{m}` is not DCR or CRD")),
                    };
                    Op::Select(Selection::DepthToSpace { blocksize, crd })
                }
            }
            "Where" => Op::Where,
            "Resize" | "Upsample" => resize(op_type, &a, inputs, &constant),
            "Shape" => Op::Shape { start: a.int("start").unwrap_or(0), end: a.int("end") },
            "Range" => Op::Range,
            "ConstantOfShape" => Op::ConstantOfShape {
                value: match attributes.get("value") {
                    None => Some(0),
                    Some(Attribute::Tensor(Weight::I64(v))) => v.iter().next().copied(),
                    Some(_) => None,
                },
            },
            "Equal" => Op::Equal,
            "Dropout" => Op::Dropout,
            "Identity" => Op::Identity,
            "Cast" => Op::Cast { to: a.int("to").ok_or("attribute `to` is missing")? },
            "Flatten" => Op::Flatten { axis: a.int("axis").unwrap_or(1) },
            "Reshape" => Op::Reshape { allow_zero: a.int("allowzero").unwrap_or(0) != 0 },
            "Squeeze" => Op::Squeeze { axes: listed("axes", 1)? },
            "Unsqueeze" => Op::Unsqueeze { axes: listed("axes", 1)? },
            "Transpose" => {
                let perm = a.usizes("perm")?;
                if let Some(p) = &perm {
                    // A permutation of 0..rank (an engine grows buffers to the largest entry).
                    let mut seen = vec![false; p.len()];
                    for &x in p {
                        match seen.get_mut(x) {
                            Some(s) if !*s => *s = true,
                            _ => {
                                return Err(format!("attribute `perm` = {p:?} is not a permutation of 0..{}", p.len()))
                            }
                        }
                    }
                }
                Op::Transpose { perm }
            }
            "Pad" => Op::Pad {
                mode: match a.string("mode").unwrap_or("constant") {
                    "constant" => PadMode::Constant,
                    "reflect" => PadMode::Reflect,
                    "edge" => PadMode::Edge,
                    "wrap" => PadMode::Wrap,
                    m => return Err(format!("attribute `mode` = `{m}` is not constant, reflect, edge or wrap")),
                },
                pads: a.ints("pads").map(<[i64]>::to_vec),
            },
            "Concat" => Op::Concat { axis: a.int("axis").unwrap_or(0) },
            "Add" => Op::Add,
            "Sub" => Op::Sub,
            "Mul" => Op::Mul,
            "Div" => Op::Div,
            "Softmax" => Op::Softmax,
            "LogSoftmax" => Op::LogSoftmax,
            "Constant" => Op::Constant,
            other => Op::Other(other.to_string()),
        })
    }

    /// Every ONNX op type that decodes to a variant other than [`Op::Other`], sorted, each with
    /// its op as decoded with default attributes (what the stages' tables are listed from).
    pub fn examples() -> Vec<(&'static str, Op)> {
        // The attributes without a default: a pooling window and a cast's target.
        let attributes: BTreeMap<String, Attribute> = [
            ("kernel_shape".to_string(), Attribute::Ints(vec![1, 1])),
            ("to".to_string(), Attribute::Int(1)),
            ("blocksize".to_string(), Attribute::Int(2)),
        ]
        .into();
        KNOWN
            .iter()
            .filter_map(|&name| Op::decode(name, &attributes, &[], |_| None).ok().map(|op| (name, op)))
            .collect()
    }

    /// Whether the op is a linear layer with weights (convolution or dense).
    pub fn is_linear(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm { .. } | Op::MatMul)
    }
}

/// `Resize` / `Upsample` with constant scales or sizes: in nearest mode a [`Selection`], in linear
/// mode (without antialiasing) an [`Interpolation`]; anything else (cubic interpolation, computed
/// scales, other coordinate modes) is [`Op::Other`]: no stage interprets it yet.
fn resize<'w>(op_type: &str, a: &Attrs<'_>, inputs: &[String], constant: &impl Fn(&str) -> Option<&'w Weight>) -> Op {
    use super::select::{Coordinate, Rounding};
    let other = || Op::Other(op_type.to_string());
    // Upsample (opset 7) called linear interpolation "bilinear".
    let linear = match a.string("mode").unwrap_or("nearest") {
        "nearest" => false,
        "linear" | "bilinear" if a.int("antialias").unwrap_or(0) == 0 => true,
        _ => return other(),
    };
    // Upsample has neither attribute: its output cell o reads floor(o / scale) (asymmetric, down).
    let upsample = op_type == "Upsample";
    let coordinate = match a.string("coordinate_transformation_mode").unwrap_or(if upsample {
        "asymmetric"
    } else {
        "half_pixel"
    }) {
        "half_pixel" => Coordinate::HalfPixel,
        "pytorch_half_pixel" => Coordinate::PytorchHalfPixel,
        "asymmetric" => Coordinate::Asymmetric,
        "align_corners" => Coordinate::AlignCorners,
        _ => return other(),
    };
    let rounding = match a.string("nearest_mode").unwrap_or(if upsample { "floor" } else { "round_prefer_floor" }) {
        "round_prefer_floor" => Rounding::RoundPreferFloor,
        "round_prefer_ceil" => Rounding::RoundPreferCeil,
        "floor" => Rounding::Floor,
        "ceil" => Rounding::Ceil,
        _ => return other(),
    };
    let input = |ix: usize| inputs.get(ix).filter(|n| !n.is_empty()).and_then(|n| constant(n));
    // Upsample (opset ≤ 9) reads the scales as input 1; Resize reads roi, scales, sizes.
    let (scales_at, sizes_at) = if op_type == "Upsample" { (1, usize::MAX) } else { (2, 3) };
    let scales = match input(scales_at) {
        Some(Weight::F32(s)) if !s.is_empty() => Some(s.iter().copied().collect()),
        _ => None,
    };
    let sizes = match input(sizes_at) {
        Some(Weight::I64(s)) if !s.is_empty() => match s.iter().map(|&d| usize::try_from(d).ok()).collect() {
            Some(v) => Some(v),
            None => return other(),
        },
        _ => None,
    };
    // Sizes computed from the input's shape (the exporters write `Concat(Shape(x)[:2], [h, w])`
    // for `interpolate(size=…)`): evaluated for each batch.
    let computed = inputs.get(sizes_at).filter(|n| !n.is_empty() && sizes.is_none() && constant(n).is_none());
    if linear && scales.is_none() {
        if let Some(name) = computed {
            return Op::Interpolate(Interpolation { coordinate, scales, sizes, computed_sizes: Some(name.clone()) });
        }
    }
    if scales.is_none() && sizes.is_none() {
        return other();
    }
    if linear {
        return Op::Interpolate(Interpolation { coordinate, scales, sizes, computed_sizes: None });
    }
    Op::Select(Selection::Resize { coordinate, rounding, scales, sizes })
}

/// Typed access to a node's attributes.
struct Attrs<'a>(&'a BTreeMap<String, Attribute>);

impl Attrs<'_> {
    fn int(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(Attribute::as_int)
    }

    fn float(&self, name: &str) -> Option<f32> {
        self.0.get(name).and_then(Attribute::as_float)
    }

    fn string(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Attribute::as_str)
    }

    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.0.get(name).and_then(Attribute::as_ints)
    }

    /// A list of sizes; negative entries are malformed.
    fn usizes(&self, name: &str) -> Result<Option<Vec<usize>>, String> {
        let Some(v) = self.ints(name) else { return Ok(None) };
        v.iter()
            .map(|&x| usize::try_from(x).map_err(|_| format!("attribute `{name}` has a negative entry ({x})")))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn auto_pad(&self) -> Result<AutoPad, String> {
        Ok(match self.string("auto_pad").unwrap_or("NOTSET") {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => {
                return Err(format!("attribute `auto_pad` = `{other}` is not NOTSET, SAME_UPPER, SAME_LOWER or VALID"))
            }
        })
    }

    fn pool(&self) -> Result<PoolAttrs, String> {
        let kernel = self.usizes("kernel_shape")?.ok_or("attribute `kernel_shape` is missing")?;
        let rank = kernel.len();
        Ok(PoolAttrs {
            strides: self.usizes("strides")?.unwrap_or_else(|| vec![1; rank]),
            pads: self.usizes("pads")?.unwrap_or_else(|| vec![0; 2 * rank]),
            dilations: self.usizes("dilations")?.unwrap_or_else(|| vec![1; rank]),
            auto_pad: self.auto_pad()?,
            ceil_mode: self.int("ceil_mode").unwrap_or(0) != 0,
            kernel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(list: &[(&str, Attribute)]) -> BTreeMap<String, Attribute> {
        list.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    }

    #[test]
    fn clip_bounds_come_from_attributes_or_constant_inputs() {
        let six = Weight::F32(ndarray::arr0(6.0f32).into_dyn());
        let names = ["x".to_string(), "lo".to_string(), "hi".to_string()];
        let clip = |a: &BTreeMap<String, Attribute>, inputs: &[String]| {
            Op::decode("Clip", a, inputs, |n| if n == "hi" { Some(&six) } else { None }).unwrap()
        };
        // Opset < 11: attributes.
        let old = attrs(&[("min", Attribute::Float(0.0)), ("max", Attribute::Float(6.0))]);
        let want = Op::Activation(Activation::Clip { min: Bound::At(0.0), max: Bound::At(6.0) });
        assert_eq!(clip(&old, &names[..1]), want);
        // Opset 11+: a constant upper bound, a computed lower one, none at all.
        let got = clip(&BTreeMap::new(), &names);
        assert_eq!(got, Op::Activation(Activation::Clip { min: Bound::Computed, max: Bound::At(6.0) }));
        let got = clip(&BTreeMap::new(), &names[..1]);
        assert_eq!(got, Op::Activation(Activation::Clip { min: Bound::Unbounded, max: Bound::Unbounded }));
        assert!(Bound::Computed.constant().is_err(), "retraining needs constant bounds");
    }

    /// Decodes with a float weight of `weight_shape` as the second input, when given.
    fn decode(
        op: &str,
        attributes: &BTreeMap<String, Attribute>,
        weight_shape: Option<&[usize]>,
    ) -> Result<Op, String> {
        let w = weight_shape.map(|s| Weight::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(s))));
        let inputs = vec!["x".to_string(), "w".to_string()];
        Op::decode(op, attributes, &inputs, |n| if n == "w" { w.as_ref() } else { None })
    }

    /// Decodes with integer constants as inputs 1.. (`None`: a computed input).
    fn decode_ints(
        op: &str,
        attributes: &BTreeMap<String, Attribute>,
        consts: &[Option<Vec<i64>>],
    ) -> Result<Op, String> {
        let ws: Vec<Option<Weight>> = consts
            .iter()
            .map(|c| {
                c.as_ref().map(|v| {
                    Weight::I64(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[v.len()]), v.clone()).unwrap())
                })
            })
            .collect();
        let mut inputs = vec!["x".to_string()];
        inputs.extend((1..=consts.len()).map(|i| format!("in{i}")));
        Op::decode(op, attributes, &inputs, |n| {
            n.strip_prefix("in").and_then(|i| i.parse::<usize>().ok()).and_then(|i| ws[i - 1].as_ref())
        })
    }

    #[test]
    fn convolution_defaults_come_from_onnx_and_the_weight() {
        let op = decode("Conv", &attrs(&[("group", Attribute::Int(4))]), Some(&[8, 1, 3, 5])).unwrap();
        let Op::Conv(c) = op else { panic!("{op:?}") };
        assert_eq!(c.kernel, [3, 5]);
        assert_eq!((c.strides, c.dilations, c.pads), (vec![1, 1], vec![1, 1], vec![0; 4]));
        assert_eq!((c.groups, c.auto_pad), (4, AutoPad::NotSet));
        let same = attrs(&[("auto_pad", Attribute::String("SAME_LOWER".into()))]);
        let Op::Conv(c) = decode("Conv", &same, Some(&[1, 1, 3, 3])).unwrap() else { panic!() };
        assert_eq!(c.auto_pad, AutoPad::SameLower);
    }

    #[test]
    fn malformed_attributes_are_named() {
        let bad = attrs(&[("auto_pad", Attribute::String("SOMETIMES".into()))]);
        assert!(decode("Conv", &bad, None).unwrap_err().contains("auto_pad"));
        let neg = attrs(&[("kernel_shape", Attribute::Ints(vec![2, 2])), ("strides", Attribute::Ints(vec![-1, 1]))]);
        assert!(decode("MaxPool", &neg, None).unwrap_err().contains("strides"));
        assert!(decode("MaxPool", &BTreeMap::new(), None).unwrap_err().contains("kernel_shape"));
    }

    #[test]
    fn upsample_reads_down_from_asymmetric_coordinates_and_resize_defaults_to_half_pixel() {
        use super::super::select::{Coordinate, Rounding};
        let Op::Select(Selection::Resize { coordinate, rounding, scales, .. }) =
            decode("Upsample", &BTreeMap::new(), Some(&[4])).unwrap()
        else {
            panic!("nearest Upsample is a selection")
        };
        assert_eq!((coordinate, rounding, scales.map(|s| s.len())), (Coordinate::Asymmetric, Rounding::Floor, Some(4)));
        let linear = attrs(&[("mode", Attribute::String("linear".into()))]);
        let Op::Interpolate(i) = decode("Upsample", &linear, Some(&[4])).unwrap() else { panic!("linear") };
        assert_eq!(i.coordinate, Coordinate::Asymmetric);
        // Resize reads its scales as input 2: here input 1 is the roi, so nothing is decoded.
        assert_eq!(decode("Resize", &BTreeMap::new(), Some(&[4])).unwrap(), Op::Other("Resize".into()));
    }

    #[test]
    fn gemm_flags_and_unknown_ops() {
        let g = attrs(&[("transB", Attribute::Int(1)), ("alpha", Attribute::Float(0.5))]);
        assert_eq!(
            decode("Gemm", &g, None).unwrap(),
            Op::Gemm { alpha: 0.5, beta: 1.0, trans_a: false, trans_b: true }
        );
        assert_eq!(decode("Erf", &BTreeMap::new(), None).unwrap(), Op::Activation(Activation::Erf));
        assert_eq!(decode("Erfc", &BTreeMap::new(), None).unwrap(), Op::Other("Erfc".into()));
    }

    #[test]
    fn reductions_read_their_axes_from_the_attribute_or_the_opset_18_input() {
        let keep0 = attrs(&[("keepdims", Attribute::Int(0))]);
        let want = |axes: Axes, keep_dims| Op::Reduce { reduction: Reduction::Mean, axes, keep_dims };
        assert_eq!(
            decode_ints("ReduceMean", &keep0, &[Some(vec![-1, -2])]).unwrap(),
            want(Axes::Listed(vec![-1, -2]), false)
        );
        let attr = attrs(&[("axes", Attribute::Ints(vec![2, 3]))]);
        assert_eq!(decode_ints("ReduceMean", &attr, &[]).unwrap(), want(Axes::Listed(vec![2, 3]), true));
        assert_eq!(decode_ints("ReduceMean", &BTreeMap::new(), &[]).unwrap(), want(Axes::Default, true));
        // An empty list means every axis, unless noop_with_empty_axes = 1 (then none).
        assert_eq!(decode_ints("ReduceMean", &BTreeMap::new(), &[Some(vec![])]).unwrap(), want(Axes::Default, true));
        let noop = attrs(&[("noop_with_empty_axes", Attribute::Int(1))]);
        assert_eq!(decode_ints("ReduceMean", &noop, &[Some(vec![])]).unwrap(), want(Axes::Listed(vec![]), true));
        assert_eq!(
            decode_ints("ReduceMean", &BTreeMap::new(), &[None]).unwrap(),
            want(Axes::Computed("in1".into()), true)
        );
        let Op::Reduce { reduction, .. } = decode_ints("ReduceMax", &BTreeMap::new(), &[]).unwrap() else { panic!() };
        assert_eq!(reduction, Reduction::Max);
        assert_eq!(Axes::Listed(vec![-1, 1, 1]).resolve(4).unwrap(), Some(vec![1, 3]));
        assert!(Axes::Listed(vec![4]).resolve(4).unwrap_err().contains("out of range"));
        assert!(Axes::Computed("a".into()).resolve(4).unwrap_err().contains("computed"));
    }

    #[test]
    fn split_slice_cast_and_shape_ops_decode_their_inputs() {
        let ax1 = attrs(&[("axis", Attribute::Int(1))]);
        assert_eq!(
            decode_ints("Split", &ax1, &[Some(vec![2, 6])]).unwrap(),
            Op::Split { axis: 1, sizes: Some(vec![2, 6]) }
        );
        let n = attrs(&[("axis", Attribute::Int(1)), ("num_outputs", Attribute::Int(2))]);
        assert_eq!(decode_ints("Split", &n, &[]).unwrap(), Op::Split { axis: 1, sizes: None });
        assert!(decode_ints("Split", &ax1, &[Some(vec![-1, 2])]).unwrap_err().contains("negative"));
        let sl = decode_ints("Slice", &BTreeMap::new(), &[Some(vec![0]), Some(vec![4]), Some(vec![1]), Some(vec![2])])
            .unwrap();
        let Op::Slice(Some(s)) = sl else { panic!("{sl:?}") };
        assert_eq!(
            (s.starts.clone(), s.ends.clone(), s.axes.clone(), s.steps.clone()),
            (vec![0], vec![4], Some(vec![1]), Some(vec![2]))
        );
        assert_eq!(decode_ints("Slice", &BTreeMap::new(), &[Some(vec![0]), None]).unwrap(), Op::Slice(None));
        let old = attrs(&[("starts", Attribute::Ints(vec![1])), ("ends", Attribute::Ints(vec![3]))]);
        let Op::Slice(Some(s)) = decode_ints("Slice", &old, &[]).unwrap() else { panic!() };
        assert_eq!((s.starts, s.ends, s.axes, s.steps), (vec![1], vec![3], None, None));
        let to = attrs(&[("to", Attribute::Int(1))]);
        assert_eq!(decode("Cast", &to, None).unwrap(), Op::Cast { to: 1 });
        assert!(decode("Cast", &BTreeMap::new(), None).unwrap_err().contains("to"));
        let z = attrs(&[("allowzero", Attribute::Int(1))]);
        assert_eq!(decode("Reshape", &z, None).unwrap(), Op::Reshape { allow_zero: true });
        assert_eq!(
            decode_ints("Unsqueeze", &BTreeMap::new(), &[Some(vec![0])]).unwrap(),
            Op::Unsqueeze { axes: Axes::Listed(vec![0]) }
        );
        assert_eq!(decode_ints("Squeeze", &BTreeMap::new(), &[]).unwrap(), Op::Squeeze { axes: Axes::Default });
        assert_eq!(decode("HardSwish", &BTreeMap::new(), None).unwrap(), Op::Activation(Activation::HardSwish));
        let tanh = attrs(&[("approximate", Attribute::String("tanh".into()))]);
        assert_eq!(decode("Gelu", &tanh, None).unwrap(), Op::Activation(Activation::Gelu { tanh: true }));
    }

    #[test]
    fn slices_clamp_and_step_as_onnx_defines() {
        let s = |starts: Vec<i64>, ends: Vec<i64>, steps: Option<Vec<i64>>| SliceAttrs {
            starts,
            ends,
            axes: Some(vec![1]),
            steps,
        };
        let resolve = |a: SliceAttrs| a.resolve(&[2, 10]).unwrap()[0].indices();
        assert_eq!(resolve(s(vec![2], vec![5], None)), [2, 3, 4]);
        assert_eq!(resolve(s(vec![-3], vec![i64::MAX], None)), [7, 8, 9]);
        assert_eq!(resolve(s(vec![1], vec![10], Some(vec![4]))), [1, 5, 9]);
        assert_eq!(resolve(s(vec![-1], vec![i64::MIN], Some(vec![-3]))), [9, 6, 3, 0]);
        assert_eq!(resolve(s(vec![8], vec![2], None)), Vec::<usize>::new());
        assert_eq!(resolve(s(vec![-100], vec![100], Some(vec![5]))), [0, 5]);
        assert!(s(vec![0], vec![1], Some(vec![0])).resolve(&[2, 10]).unwrap_err().contains("step"));
    }

    #[test]
    fn every_known_op_type_decodes_to_its_own_variant() {
        let examples = Op::examples();
        assert_eq!(examples.len(), KNOWN.len(), "each known op decodes with default attributes");
        for (name, op) in examples {
            assert_ne!(op, Op::Other(name.to_string()), "{name}");
        }
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    }

    #[test]
    fn split_sizes_and_gather_indices_follow_onnx() {
        assert_eq!(split_sizes(None, 3, 7), [3, 3, 1]);
        assert_eq!(split_sizes(None, 2, 8), [4, 4]);
        assert_eq!(split_sizes(Some(&[2, 6]), 2, 8), [2, 6]);
        assert_eq!(gather_indices([0, -1, 2], 3).unwrap(), [0, 2, 2]);
        assert!(gather_indices([3], 3).unwrap_err().contains("out of range"));
        assert!(gather_indices([-4], 3).is_err());
        assert_eq!((axis_index(-1, 4), axis_index(3, 4)), (Ok(3), Ok(3)));
        assert!(axis_index(4, 4).is_err() && axis_index(-5, 4).is_err());
    }
}
