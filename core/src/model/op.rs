//! ONNX operators as a closed set of typed values, decoded once when the model loads.
//!
//! Every stage that reads the network's structure (relevance propagation, and the candle
//! translator of the retraining stage) matches on [`Op`] instead of re-reading attribute strings,
//! so the compiler lists the cases a stage leaves out. Attribute defaults are ONNX's. An op that
//! hudd runs through the engine but no stage interprets is [`Op::Other`], with its ONNX name.

use std::collections::BTreeMap;

use serde::Serialize;

use super::graph::Attribute;

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
    /// `min(max(x, min), max)`; bounds from attributes (opset < 11) or constant inputs.
    Clip,
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
    Cast,
    /// Flatten to 2-D at `axis` (default 1).
    Flatten {
        /// The first axis of the second dimension.
        axis: i64,
    },
    /// Reshape to the shape given by the second input.
    Reshape,
    /// Remove axes of size 1.
    Squeeze,
    /// Insert axes of size 1.
    Unsqueeze,
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
    /// Decodes a node's op from its ONNX op type and attributes. `weight_shape` is the shape of
    /// the node's second input when that is a constant (a convolution's kernel size).
    /// Errors name the attribute that does not fit ONNX's definition.
    pub fn decode(
        op_type: &str,
        attributes: &BTreeMap<String, Attribute>,
        weight_shape: Option<&[usize]>,
    ) -> Result<Op, String> {
        let a = Attrs(attributes);
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
            "Clip" => Op::Activation(Activation::Clip),
            "Dropout" => Op::Dropout,
            "Identity" => Op::Identity,
            "Cast" => Op::Cast,
            "Flatten" => Op::Flatten { axis: a.int("axis").unwrap_or(1) },
            "Reshape" => Op::Reshape,
            "Squeeze" => Op::Squeeze,
            "Unsqueeze" => Op::Unsqueeze,
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

    /// Whether the op is a linear layer with weights (convolution or dense).
    pub fn is_linear(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::ConvTranspose(_) | Op::Gemm { .. } | Op::MatMul)
    }
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
    fn convolution_defaults_come_from_onnx_and_the_weight() {
        let op = Op::decode("Conv", &attrs(&[("group", Attribute::Int(4))]), Some(&[8, 1, 3, 5])).unwrap();
        let Op::Conv(c) = op else { panic!("{op:?}") };
        assert_eq!(c.kernel, [3, 5]);
        assert_eq!((c.strides, c.dilations, c.pads), (vec![1, 1], vec![1, 1], vec![0; 4]));
        assert_eq!((c.groups, c.auto_pad), (4, AutoPad::NotSet));
        let same = attrs(&[("auto_pad", Attribute::String("SAME_LOWER".into()))]);
        let Op::Conv(c) = Op::decode("Conv", &same, Some(&[1, 1, 3, 3])).unwrap() else { panic!() };
        assert_eq!(c.auto_pad, AutoPad::SameLower);
    }

    #[test]
    fn malformed_attributes_are_named() {
        let bad = attrs(&[("auto_pad", Attribute::String("SOMETIMES".into()))]);
        assert!(Op::decode("Conv", &bad, None).unwrap_err().contains("auto_pad"));
        let neg = attrs(&[("kernel_shape", Attribute::Ints(vec![2, 2])), ("strides", Attribute::Ints(vec![-1, 1]))]);
        assert!(Op::decode("MaxPool", &neg, None).unwrap_err().contains("strides"));
        assert!(Op::decode("MaxPool", &BTreeMap::new(), None).unwrap_err().contains("kernel_shape"));
    }

    #[test]
    fn gemm_flags_and_unknown_ops() {
        let g = attrs(&[("transB", Attribute::Int(1)), ("alpha", Attribute::Float(0.5))]);
        assert_eq!(
            Op::decode("Gemm", &g, None).unwrap(),
            Op::Gemm { alpha: 0.5, beta: 1.0, trans_a: false, trans_b: true }
        );
        assert_eq!(Op::decode("Erf", &BTreeMap::new(), None).unwrap(), Op::Other("Erf".into()));
    }
}
