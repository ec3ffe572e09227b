//! Linear maps `y = L(x; W) + b` and their transposes, the layers relevance rules act on.
//!
//! A map's parameters are a type of its own: dense layers and convolutions carry [`Weights`] of
//! their rank (a dense layer without a weight cannot be represented), average pooling carries
//! [`NoWeights`]. Rules modify parameters through [`Params::modified`].

use ndarray::{s, Array, Array1, Array2, ArrayD, ArrayView2, Axis, Dimension, Ix2, Ix4, IxDyn};
use rayon::prelude::*;

/// How a rule modifies one parameter value (`w⁺`, `w + γw⁺`, …).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamMod {
    /// Unchanged.
    Identity,
    /// `max(p, 0)`.
    Positive,
    /// `min(p, 0)`.
    Negative,
    /// `0` (for a bias: dropped).
    Zero,
    /// `1`.
    Ones,
    /// `p²`.
    Square,
    /// `p + γ·p⁺`
    GammaUp(f32),
    /// `p + γ·p⁻`
    GammaDown(f32),
}

impl ParamMod {
    /// The modified value.
    pub fn apply(self, v: f32) -> f32 {
        match self {
            ParamMod::Identity => v,
            ParamMod::Positive => v.max(0.0),
            ParamMod::Negative => v.min(0.0),
            ParamMod::Zero => 0.0,
            ParamMod::Ones => 1.0,
            ParamMod::Square => v * v,
            ParamMod::GammaUp(g) => v + g * v.max(0.0),
            ParamMod::GammaDown(g) => v + g * v.min(0.0),
        }
    }
}

/// The parameters of a linear map, as rules see them.
pub trait Params: Clone + std::fmt::Debug + Send + Sync {
    /// The parameters with `weight` applied to every weight and `bias` to every bias.
    fn modified(&self, weight: ParamMod, bias: ParamMod) -> Self;
    /// Whether there is a bias.
    fn has_bias(&self) -> bool;
}

/// A weight of rank `D` (dense: `[out, in]`; convolution: `[out, in / groups, kh, kw]`) and an
/// optional bias, one value per output channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights<D: Dimension> {
    /// The weight.
    pub weight: Array<f32, D>,
    /// The bias.
    pub bias: Option<Array1<f32>>,
}

impl<D: Dimension> Params for Weights<D> {
    fn modified(&self, weight: ParamMod, bias: ParamMod) -> Self {
        Weights {
            weight: if weight == ParamMod::Identity {
                self.weight.clone()
            } else {
                self.weight.mapv(|v| weight.apply(v))
            },
            bias: match (&self.bias, bias) {
                (_, ParamMod::Zero) | (None, _) => None,
                (Some(b), ParamMod::Identity) => Some(b.clone()),
                (Some(b), m) => Some(b.mapv(|v| m.apply(v))),
            },
        }
    }
    fn has_bias(&self) -> bool {
        self.bias.is_some()
    }
}

/// The parameters of a map that has none (average pooling).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoWeights;

impl Params for NoWeights {
    fn modified(&self, _weight: ParamMod, _bias: ParamMod) -> Self {
        NoWeights
    }
    fn has_bias(&self) -> bool {
        false
    }
}

/// A map `y = L(x; W) + b` that is linear in `x`, with the batch as the first axis of `x` and `y`
/// and the bias added on axis 1.
pub trait LinearMap: Sync {
    /// Its parameters.
    type Params: Params;
    /// `L(x; W) + b`.
    fn forward(&self, x: &ArrayD<f32>, params: &Self::Params) -> ArrayD<f32>;
    /// `Lᵀ(s; W)`: the gradient of `Σ L(x; W) ⊙ s` with respect to `x`, shaped like the input.
    fn backward(&self, s: &ArrayD<f32>, params: &Self::Params, input_shape: &[usize]) -> ArrayD<f32>;
}

fn add_bias(y: &mut ArrayD<f32>, bias: Option<&Array1<f32>>) {
    if let Some(b) = bias {
        for (c, mut lane) in y.axis_iter_mut(Axis(1)).enumerate() {
            lane += b[c];
        }
    }
}

/// A dense layer: `y = x Wᵀ + b` with `W` of shape `[out, in]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dense;

fn as_matrix(a: &ArrayD<f32>) -> ArrayView2<'_, f32> {
    let n = a.shape()[0];
    a.view()
        .into_shape_with_order((n, a.len() / n.max(1)))
        .expect("contiguous tensor")
        .into_dimensionality::<Ix2>()
        .expect("2-D")
}

impl LinearMap for Dense {
    type Params = Weights<Ix2>;

    fn forward(&self, x: &ArrayD<f32>, params: &Weights<Ix2>) -> ArrayD<f32> {
        let mut y = as_matrix(&x.as_standard_layout().into_owned()).dot(&params.weight.t()).into_dyn();
        add_bias(&mut y, params.bias.as_ref());
        y
    }

    fn backward(&self, s: &ArrayD<f32>, params: &Weights<Ix2>, input_shape: &[usize]) -> ArrayD<f32> {
        let g: Array2<f32> = as_matrix(&s.as_standard_layout().into_owned()).dot(&params.weight);
        g.into_shape_with_order(IxDyn(input_shape)).expect("input shape")
    }
}

/// A 2-D convolution over NCHW tensors (ONNX `Conv` semantics, explicit pads).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    /// `[stride_h, stride_w]`.
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// `[dilation_h, dilation_w]`.
    pub dilations: [usize; 2],
    /// Number of groups (`in_channels` for depthwise).
    pub groups: usize,
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
}

impl Conv2d {
    /// Output height and width for an input of height and width `hw`.
    pub fn output_hw(&self, hw: [usize; 2]) -> [usize; 2] {
        let hp = hw[0] + self.pads[0] + self.pads[2];
        let wp = hw[1] + self.pads[1] + self.pads[3];
        let eh = self.dilations[0] * (self.kernel[0] - 1) + 1;
        let ew = self.dilations[1] * (self.kernel[1] - 1) + 1;
        [(hp.saturating_sub(eh)) / self.strides[0] + 1, (wp.saturating_sub(ew)) / self.strides[1] + 1]
    }

    /// im2col of one image's group: `[cg·kh·kw, ho·wo]`, zero outside the input (padding).
    fn im2col(&self, x: ndarray::ArrayView3<'_, f32>, c0: usize, cg: usize, out: [usize; 2]) -> Array2<f32> {
        let [kh, kw] = self.kernel;
        let (h, w) = (x.shape()[1] as isize, x.shape()[2] as isize);
        let mut cols = Array2::<f32>::zeros((cg * kh * kw, out[0] * out[1]));
        for c in 0..cg {
            let plane = x.index_axis(Axis(0), c0 + c);
            for i in 0..kh {
                for j in 0..kw {
                    let row = (c * kh + i) * kw + j;
                    let mut dst = cols.row_mut(row);
                    for oh in 0..out[0] {
                        let ih = (oh * self.strides[0] + i * self.dilations[0]) as isize - self.pads[0] as isize;
                        if ih < 0 || ih >= h {
                            continue;
                        }
                        for ow in 0..out[1] {
                            let iw = (ow * self.strides[1] + j * self.dilations[1]) as isize - self.pads[1] as isize;
                            if iw >= 0 && iw < w {
                                dst[oh * out[1] + ow] = plane[[ih as usize, iw as usize]];
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    /// Adds columns back into one image's group (the transpose of [`Self::im2col`]).
    fn col2im(
        &self,
        cols: &Array2<f32>,
        dx: &mut ndarray::ArrayViewMut3<'_, f32>,
        c0: usize,
        cg: usize,
        out: [usize; 2],
    ) {
        let [kh, kw] = self.kernel;
        let (h, w) = (dx.shape()[1] as isize, dx.shape()[2] as isize);
        for c in 0..cg {
            for i in 0..kh {
                for j in 0..kw {
                    let src = cols.row((c * kh + i) * kw + j);
                    for oh in 0..out[0] {
                        let ih = (oh * self.strides[0] + i * self.dilations[0]) as isize - self.pads[0] as isize;
                        if ih < 0 || ih >= h {
                            continue;
                        }
                        for ow in 0..out[1] {
                            let iw = (ow * self.strides[1] + j * self.dilations[1]) as isize - self.pads[1] as isize;
                            if iw >= 0 && iw < w {
                                dx[[c0 + c, ih as usize, iw as usize]] += src[oh * out[1] + ow];
                            }
                        }
                    }
                }
            }
        }
    }

    fn weight_matrix<'a>(&self, w: &'a ndarray::ArrayView4<'_, f32>, group: usize) -> ArrayView2<'a, f32> {
        let co = w.shape()[0];
        let cog = co / self.groups;
        let k = w.len() / co.max(1);
        // `w` is in standard layout (the callers make it so): the reshape cannot fail.
        let all = w.view().into_shape_with_order((co, k)).expect("contiguous weight");
        all.slice_move(s![group * cog..(group + 1) * cog, ..])
    }

    /// `conv(x; w)` without bias.
    pub fn apply(&self, x: &ArrayD<f32>, w: &Array<f32, Ix4>) -> ArrayD<f32> {
        let w = w.as_standard_layout();
        let (n, c, h, wi) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let co = w.shape()[0];
        let out = self.output_hw([h, wi]);
        let cg = c / self.groups;
        let cog = co / self.groups;
        let x4 = x.view().into_dimensionality::<ndarray::Ix4>().expect("NCHW input");
        let images: Vec<ndarray::Array3<f32>> = (0..n)
            .into_par_iter()
            .map(|b| {
                let xi = x4.index_axis(Axis(0), b);
                let mut yi = ndarray::Array3::<f32>::zeros((co, out[0], out[1]));
                for g in 0..self.groups {
                    let cols = self.im2col(xi, g * cg, cg, out);
                    let z = self.weight_matrix(&w.view(), g).dot(&cols);
                    let z = z.into_shape_with_order((cog, out[0], out[1])).expect("group output");
                    yi.slice_mut(s![g * cog..(g + 1) * cog, .., ..]).assign(&z);
                }
                yi
            })
            .collect();
        stack_images(&images, [n, co, out[0], out[1]]).into_dyn()
    }

    /// `convᵀ(s; w)`: the gradient of `Σ conv(x; w) ⊙ s` with respect to `x` (shape `input_shape`).
    pub fn apply_transposed(&self, s: &ArrayD<f32>, w: &Array<f32, Ix4>, input_shape: &[usize]) -> ArrayD<f32> {
        let w = w.as_standard_layout();
        let (n, c) = (input_shape[0], input_shape[1]);
        let co = w.shape()[0];
        let cg = c / self.groups;
        let cog = co / self.groups;
        let out = [s.shape()[2], s.shape()[3]];
        let s4 = s.view().into_dimensionality::<ndarray::Ix4>().expect("NCHW relevance");
        let images: Vec<ndarray::Array3<f32>> = (0..n)
            .into_par_iter()
            .map(|b| {
                let si = s4.index_axis(Axis(0), b);
                let mut dxi = ndarray::Array3::<f32>::zeros((c, input_shape[2], input_shape[3]));
                for g in 0..self.groups {
                    let sg = si.slice(s![g * cog..(g + 1) * cog, .., ..]).as_standard_layout().into_owned();
                    let sg = sg.into_shape_with_order((cog, out[0] * out[1])).expect("group relevance");
                    let cols = self.weight_matrix(&w.view(), g).t().dot(&sg);
                    self.col2im(&cols, &mut dxi.view_mut(), g * cg, cg, out);
                }
                dxi
            })
            .collect();
        let dx = stack_images(&images, [n, c, input_shape[2], input_shape[3]]);
        dx.into_dyn()
    }
}

impl LinearMap for Conv2d {
    type Params = Weights<Ix4>;

    fn forward(&self, x: &ArrayD<f32>, params: &Weights<Ix4>) -> ArrayD<f32> {
        let mut y = self.apply(x, &params.weight);
        add_bias(&mut y, params.bias.as_ref());
        y
    }

    fn backward(&self, s: &ArrayD<f32>, params: &Weights<Ix4>, input_shape: &[usize]) -> ArrayD<f32> {
        self.apply_transposed(s, &params.weight, input_shape)
    }
}

fn stack_images(images: &[ndarray::Array3<f32>], shape: [usize; 4]) -> ndarray::Array4<f32> {
    let mut out = ndarray::Array4::<f32>::zeros(shape);
    for (mut dst, src) in out.axis_iter_mut(Axis(0)).zip(images) {
        dst.assign(src);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Seeded pseudo-random values in [-1, 1) (splitmix64), so tests need no RNG crate.
    pub fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        (0..n)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Weights of a convolution (a 4-D `w`), without bias.
    pub fn weights4(w: &ArrayD<f32>) -> Weights<Ix4> {
        Weights { weight: w.clone().into_dimensionality().unwrap(), bias: None }
    }

    /// Weights of a dense layer (a 2-D `w`), without bias.
    pub fn weights2(w: &ArrayD<f32>) -> Weights<Ix2> {
        Weights { weight: w.clone().into_dimensionality().unwrap(), bias: None }
    }

    pub fn tensor(shape: &[usize], seed: u64) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), values(shape.iter().product(), seed)).unwrap()
    }

    /// Naive direct convolution, the definition.
    fn conv_naive(conv: &Conv2d, x: &ArrayD<f32>, w: &ArrayD<f32>) -> ArrayD<f32> {
        let (n, c, h, wi) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let co = w.shape()[0];
        let [ho, wo] = conv.output_hw([h, wi]);
        let (cg, cog) = (c / conv.groups, co / conv.groups);
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[n, co, ho, wo]));
        for b in 0..n {
            for o in 0..co {
                let g = o / cog;
                for oh in 0..ho {
                    for ow in 0..wo {
                        let mut acc = 0.0;
                        for ci in 0..cg {
                            for i in 0..conv.kernel[0] {
                                for j in 0..conv.kernel[1] {
                                    let ih =
                                        (oh * conv.strides[0] + i * conv.dilations[0]) as isize - conv.pads[0] as isize;
                                    let iw =
                                        (ow * conv.strides[1] + j * conv.dilations[1]) as isize - conv.pads[1] as isize;
                                    if ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < wi {
                                        acc += x[[b, g * cg + ci, ih as usize, iw as usize]] * w[[o, ci, i, j]];
                                    }
                                }
                            }
                        }
                        y[[b, o, oh, ow]] = acc;
                    }
                }
            }
        }
        y
    }

    fn convs() -> Vec<(Conv2d, [usize; 4], usize)> {
        vec![
            (
                Conv2d { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, kernel: [3, 3] },
                [2, 3, 6, 5],
                4,
            ),
            (
                Conv2d { strides: [2, 1], pads: [0, 1, 2, 0], dilations: [1, 2], groups: 1, kernel: [3, 2] },
                [1, 2, 7, 8],
                3,
            ),
            (
                Conv2d { strides: [2, 2], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 4, kernel: [3, 3] },
                [2, 4, 7, 7],
                4,
            ),
            (
                Conv2d { strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], groups: 2, kernel: [1, 1] },
                [1, 4, 3, 3],
                6,
            ),
        ]
    }

    #[test]
    fn conv_forward_matches_the_definition() {
        for (k, (conv, xs, co)) in convs().into_iter().enumerate() {
            let x = tensor(&xs, k as u64);
            let w = tensor(&[co, xs[1] / conv.groups, conv.kernel[0], conv.kernel[1]], 100 + k as u64);
            let y = conv.forward(&x, &weights4(&w));
            let r = conv_naive(&conv, &x, &w);
            assert_eq!(y.shape(), r.shape());
            assert!(y.iter().zip(r.iter()).all(|(a, b)| (a - b).abs() < 1e-5), "case {k}");
        }
    }

    #[test]
    fn backward_is_the_transpose_of_forward() {
        // <L(x), s> = <x, Lᵀ(s)> for every map.
        for (k, (conv, xs, co)) in convs().into_iter().enumerate() {
            let x = tensor(&xs, 10 + k as u64);
            let p = weights4(&tensor(&[co, xs[1] / conv.groups, conv.kernel[0], conv.kernel[1]], 20));
            let y = conv.forward(&x, &p);
            let s = tensor(y.shape(), 30 + k as u64);
            let lhs: f32 = (&y * &s).sum();
            let rhs: f32 = (&x * &conv.backward(&s, &p, x.shape())).sum();
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "case {k}: {lhs} vs {rhs}");
        }
        let x = tensor(&[3, 5], 1);
        let p = weights2(&tensor(&[4, 5], 2));
        let s = tensor(&[3, 4], 3);
        let lhs: f32 = (&Dense.forward(&x, &p) * &s).sum();
        let rhs: f32 = (&x * &Dense.backward(&s, &p, x.shape())).sum();
        assert!((lhs - rhs).abs() < 1e-4);
    }
}
