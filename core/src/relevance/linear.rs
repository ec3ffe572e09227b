//! Linear maps `y = L(x; W) + b` and their transposes, the layers relevance rules act on.
//!
//! A map's parameters are a type of its own: dense layers and convolutions carry [`Weights`] of
//! their rank (a dense layer without a weight cannot be represented), average pooling carries
//! [`NoWeights`]. Rules modify parameters through [`Params::modified`].

use ndarray::{s, Array, Array1, Array2, ArrayD, ArrayView2, ArrayViewMut2, Axis, Dimension, Ix2, Ix4, IxDyn};
use rayon::prelude::*;

use crate::conv::{axpy_into, Window};
use crate::matmul::{matmul, Threads};
use ndarray::ShapeBuilder;

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
    let Some(b) = bias else { return };
    let channels = y.shape().get(1).copied().unwrap_or(0);
    let plane = y.len() / (y.shape()[0] * channels).max(1);
    match y.as_slice_mut() {
        // Standard layout (what the products return): one contiguous plane per image and channel.
        Some(all) if plane > 0 => all.chunks_exact_mut(plane).zip(b.iter().cycle()).for_each(|(p, &v)| {
            p.iter_mut().for_each(|x| *x += v);
        }),
        _ => {
            for (c, mut lane) in y.axis_iter_mut(Axis(1)).enumerate() {
                lane += b[c];
            }
        }
    }
}

/// A dense layer: `y = x Wᵀ + b` with `W` of shape `[out, in]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dense;

fn as_matrix<S: ndarray::Data<Elem = f32>>(a: &ndarray::ArrayBase<S, IxDyn>) -> ArrayView2<'_, f32> {
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
        let x = x.as_standard_layout();
        let mut y = dense_rows(as_matrix(&x), params.weight.t()).into_dyn();
        add_bias(&mut y, params.bias.as_ref());
        y
    }

    fn backward(&self, s: &ArrayD<f32>, params: &Weights<Ix2>, input_shape: &[usize]) -> ArrayD<f32> {
        let s = s.as_standard_layout();
        let g = dense_rows(as_matrix(&s), params.weight.view());
        g.into_shape_with_order(IxDyn(input_shape)).expect("input shape")
    }
}

/// `x · w` for a batch of rows `x`, in products of [`DENSE_ROWS`] rows (the last one padded with
/// zero rows): the same product shape for any batch (see [`chunking`]).
fn dense_rows(x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>) -> Array2<f32> {
    let (n, width) = x.dim();
    let mut y = Array2::<f32>::zeros((n, w.ncols()));
    let mut block = Array2::<f32>::zeros((DENSE_ROWS, width));
    let mut out = Array2::<f32>::zeros((DENSE_ROWS, w.ncols()));
    let blocks = x.axis_chunks_iter(Axis(0), DENSE_ROWS);
    for (rows, mut dst) in blocks.zip(y.axis_chunks_iter_mut(Axis(0), DENSE_ROWS)) {
        let r = rows.nrows();
        block.slice_mut(s![..r, ..]).assign(&rows);
        block.slice_mut(s![r.., ..]).fill(0.0);
        matmul(out.view_mut(), block.view(), w, false, Threads::All);
        dst.assign(&out.slice(s![..r, ..]));
    }
    y
}

/// A 2-D convolution over NCHW tensors (ONNX `Conv` semantics, explicit pads).
///
/// Both directions are packed matrix products batched over images: a chunk of images is unfolded
/// into one column matrix (im2col, `[cg·kh·kw, images·ho·wo]`) and multiplied by the group's
/// weight in one product, so that late layers with few output positions still make products wide
/// enough for the kernels.
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

/// Column-matrix elements per chunk of images (16 MiB of f32): large enough for the kernels to
/// run at speed, small enough to stay near the caches and bound the memory a batch takes.
const CHUNK_ELEMENTS: usize = 1 << 22;

/// Output positions per image from which stride-1 convolutions use shifted views instead of
/// unfolding (28 × 28: the wide grid's extra columns then cost under 15 %).
const SHIFTED_MIN_POSITIONS: usize = 784;

/// The most images one product covers.
const MAX_IMAGES_PER_PRODUCT: usize = 8;

/// Rows (images) per dense product. The weight is read (and packed) once per product and a row
/// costs little, so dense products take more images than convolutions do: 8 read AlexNet-like's
/// 9 MB first dense weight twice as often as 16 (its two large dense steps take 24 % and 35 % less
/// time with 16).
const DENSE_ROWS: usize = 16;

/// Images per product, from the layer's geometry alone, and whether each product should use every
/// thread (when the batch makes fewer products than threads).
///
/// Every product of a layer has the same shape, whatever the batch size or thread count (the last
/// chunk is padded with zero images): the kernels pick their blocking and code path by shape, so
/// an image's relevance is then the same bits in any batch, on any number of threads.
fn chunking(images: usize, per_image: usize) -> (usize, Threads) {
    let chunk = (CHUNK_ELEMENTS / per_image.max(1)).clamp(1, MAX_IMAGES_PER_PRODUCT);
    (chunk, Threads::for_products(images.div_ceil(chunk)))
}

thread_local! {
    /// Each thread's reusable buffer for column matrices (see [`with_scratch`]).
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` on `len` floats of this thread's scratch buffer (their values are left over from an
/// earlier use: `f` must write before it reads). Reusing it saves zeroing tens of MB per product
/// and faulting fresh pages in. A nested call (rayon may run another chunk on this thread while a
/// product waits) finds the buffer taken and uses a new one. Buffers longer than
/// [`CHUNK_ELEMENTS`] (one large image's columns) are not kept: the thread would hold them for the
/// rest of the process, into stages that need the memory.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|cell| cell.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    if buf.len() <= CHUNK_ELEMENTS {
        SCRATCH.with(|cell| {
            // Keep the larger of this buffer and one a nested call may have put back.
            let other = cell.take();
            cell.set(if other.len() > buf.len() { other } else { buf });
        });
    }
    out
}

impl Conv2d {
    /// Output height and width for an input of height and width `hw`.
    pub fn output_hw(&self, hw: [usize; 2]) -> [usize; 2] {
        self.window().output_hw(hw)
    }

    /// The sliding window (shared with the retraining translator's convolution).
    fn window(&self) -> Window {
        Window { kernel: self.kernel, strides: self.strides, dilations: self.dilations, pads: self.pads }
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
        let hw = self.output_hw([x.shape()[2], x.shape()[3]]);
        if self.is_depthwise(x.shape()[1]) {
            self.apply_depthwise(x, w)
        } else if self.shifts_pay(hw) {
            self.apply_shifted(x, w)
        } else {
            self.apply_unfolded(x, w)
        }
    }

    /// `convᵀ(s; w)`: the gradient of `Σ conv(x; w) ⊙ s` with respect to `x` (shape `input_shape`).
    pub fn apply_transposed(&self, s: &ArrayD<f32>, w: &Array<f32, Ix4>, input_shape: &[usize]) -> ArrayD<f32> {
        if self.is_depthwise(input_shape[1]) {
            self.apply_transposed_depthwise(s, w, input_shape)
        } else if self.shifts_pay([s.shape()[2], s.shape()[3]]) {
            self.apply_transposed_shifted(s, w, input_shape)
        } else {
            self.apply_transposed_unfolded(s, w, input_shape)
        }
    }

    /// Whether every output channel reads one input channel of `c` (depthwise, any channel
    /// multiplier): as products, each group's would be one row deep (`[cog, kh·kw]` by a column
    /// matrix kh·kw times the plane), so these run as a direct stencil over the planes instead.
    fn is_depthwise(&self, c: usize) -> bool {
        self.groups > 1 && self.groups == c
    }

    /// The rows and columns each kernel cell reaches (see [`Window::valid_outputs`]).
    fn reaches(&self, hw: [usize; 2], out: [usize; 2]) -> [Vec<(usize, usize, usize)>; 2] {
        let window = self.window();
        [
            (0..self.kernel[0]).map(|i| window.valid_outputs(0, i, hw[0], out[0])).collect(),
            (0..self.kernel[1]).map(|j| window.valid_outputs(1, j, hw[1], out[1])).collect(),
        ]
    }

    /// Depthwise `conv(x; w)` as a direct stencil: each output plane, one task, is the sum over the
    /// kernel cells of its input plane's shifted rows times the cell's weight, a row at a time (the
    /// output row stays in the first-level cache). An output value sums its cells in one fixed
    /// order: the same bits in any batch, on any number of threads.
    fn apply_depthwise(&self, x: &ArrayD<f32>, w: &Array<f32, Ix4>) -> ArrayD<f32> {
        let w = w.as_standard_layout();
        let x = x.as_standard_layout();
        let (n, c, h, wi) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let co = w.shape()[0];
        let cog = co / self.groups;
        let [ho, wo] = self.output_hw([h, wi]);
        let [kh, kw] = self.kernel;
        let (sh, sw) = (self.strides[0], self.strides[1]);
        let [rows, columns] = self.reaches([h, wi], [ho, wo]);
        let xs = x.as_slice().expect("standard layout");
        let ws = w.as_slice().expect("standard layout");
        let mut y = vec![0.0f32; n * co * ho * wo];
        y.par_chunks_mut((ho * wo).max(1)).enumerate().for_each(|(p, plane)| {
            let (b, o) = (p / co, p % co);
            let src = &xs[(b * c + o / cog) * h * wi..][..h * wi];
            let kernel = &ws[o * kh * kw..][..kh * kw];
            for (oh, line) in plane.chunks_mut(wo).enumerate() {
                for (i, &(oh_lo, oh_hi, ih0)) in rows.iter().enumerate() {
                    if !(oh_lo..oh_hi).contains(&oh) {
                        continue;
                    }
                    let ih = ih0 + (oh - oh_lo) * sh;
                    let input = &src[ih * wi..(ih + 1) * wi];
                    for (j, &(lo, hi, iw0)) in columns.iter().enumerate() {
                        if lo == hi {
                            continue;
                        }
                        let wv = kernel[i * kw + j];
                        if sw == 1 {
                            axpy_into(&mut line[lo..hi], wv, &input[iw0..iw0 + (hi - lo)]);
                        } else {
                            for (d, v) in line[lo..hi].iter_mut().zip(input[iw0..].iter().step_by(sw)) {
                                *d += wv * v;
                            }
                        }
                    }
                }
            }
        });
        Array::from_shape_vec(IxDyn(&[n, co, ho, wo]), y).expect("output length")
    }

    /// The transpose of [`Self::apply_depthwise`]: each input plane, one task, gathers the
    /// relevance of the output channels that read it, every kernel cell's weight times the
    /// output rows added into the input rows the cell read.
    fn apply_transposed_depthwise(&self, s: &ArrayD<f32>, w: &Array<f32, Ix4>, input_shape: &[usize]) -> ArrayD<f32> {
        let w = w.as_standard_layout();
        let s = s.as_standard_layout();
        let (n, c, h, wi) = (input_shape[0], input_shape[1], input_shape[2], input_shape[3]);
        let co = w.shape()[0];
        let cog = co / self.groups;
        let (ho, wo) = (s.shape()[2], s.shape()[3]);
        let [kh, kw] = self.kernel;
        let (sh, sw) = (self.strides[0], self.strides[1]);
        let [rows, columns] = self.reaches([h, wi], [ho, wo]);
        let ss = s.as_slice().expect("standard layout");
        let ws = w.as_slice().expect("standard layout");
        let mut dx = vec![0.0f32; n * c * h * wi];
        dx.par_chunks_mut((h * wi).max(1)).enumerate().for_each(|(p, plane)| {
            let (b, g) = (p / c, p % c);
            for o in g * cog..(g + 1) * cog {
                let src = &ss[(b * co + o) * ho * wo..][..ho * wo];
                let kernel = &ws[o * kh * kw..][..kh * kw];
                for (oh, line) in src.chunks(wo).enumerate() {
                    for (i, &(oh_lo, oh_hi, ih0)) in rows.iter().enumerate() {
                        if !(oh_lo..oh_hi).contains(&oh) {
                            continue;
                        }
                        let ih = ih0 + (oh - oh_lo) * sh;
                        let input = &mut plane[ih * wi..(ih + 1) * wi];
                        for (j, &(lo, hi, iw0)) in columns.iter().enumerate() {
                            if lo == hi {
                                continue;
                            }
                            let wv = kernel[i * kw + j];
                            if sw == 1 {
                                axpy_into(&mut input[iw0..iw0 + (hi - lo)], wv, &line[lo..hi]);
                            } else {
                                for (d, v) in input[iw0..].iter_mut().step_by(sw).zip(&line[lo..hi]) {
                                    *d += wv * v;
                                }
                            }
                        }
                    }
                }
            }
        });
        Array::from_shape_vec(IxDyn(&[n, c, h, wi]), dx).expect("gradient length")
    }

    /// Whether the products over shifted views ([`Self::apply_shifted`]) beat unfolding: for
    /// stride 1, when an image has enough output positions for wide products on its own.
    fn shifts_pay(&self, out: [usize; 2]) -> bool {
        self.strides == [1, 1] && out[0] * out[1] >= SHIFTED_MIN_POSITIONS
    }

    /// The padded input's geometry for the shifted products: row width, and the length of one
    /// channel's plane (with slack at the end, so that the last kernel offset's view stays inside).
    fn padded_plane(&self, hw: [usize; 2]) -> (usize, usize) {
        let wp = hw[1] + self.pads[1] + self.pads[3];
        let hp = hw[0] + self.pads[0] + self.pads[2];
        (wp, hp * wp + self.dilations[1] * (self.kernel[1] - 1))
    }

    /// Offset of kernel cell `(i, j)` in a padded plane of row width `wp`.
    fn shift(&self, i: usize, j: usize, wp: usize) -> usize {
        i * self.dilations[0] * wp + j * self.dilations[1]
    }

    /// Kernel cell `(i, j)` of group `g`'s weight as a `[cog, cg]` matrix (a strided view).
    fn weight_cell<'a>(
        &self,
        w: &'a ndarray::ArrayView4<'_, f32>,
        g: usize,
        i: usize,
        j: usize,
    ) -> ArrayView2<'a, f32> {
        let cog = w.shape()[0] / self.groups;
        w.slice(s![g * cog..(g + 1) * cog, .., i, j]).reborrow()
    }

    /// Stride-1 convolution without unfolding: on the zero-padded input, the output over a grid as
    /// wide as the padded rows is `Σ_{i,j} W_ij · shift_ij(x)`, one product per kernel cell whose
    /// right operand is a view of the padded input (no copy); the columns past the output's width
    /// are dropped.
    fn apply_shifted(&self, x: &ArrayD<f32>, w: &Array<f32, Ix4>) -> ArrayD<f32> {
        let w = w.as_standard_layout();
        let w = w.view().into_dimensionality::<Ix4>().expect("4-D weight");
        let x = x.as_standard_layout();
        let (n, c, h, wi) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let co = w.shape()[0];
        let [ho, wo] = self.output_hw([h, wi]);
        let (cg, cog) = (c / self.groups, co / self.groups);
        let (wp, plane) = self.padded_plane([h, wi]);
        let x4 = x.view().into_dimensionality::<Ix4>().expect("NCHW input");
        let mut y = ndarray::Array4::<f32>::zeros((n, co, ho, wo));
        let threads = Threads::for_products(n);
        y.outer_iter_mut().collect::<Vec<_>>().into_par_iter().enumerate().for_each(|(b, mut yb)| {
            let mut padded = vec![0.0f32; cg * plane];
            let mut wide = Array2::<f32>::zeros((cog, ho * wp));
            for g in 0..self.groups {
                for (ci, dst) in padded.chunks_mut(plane).enumerate() {
                    for (r, src) in x4.slice(s![b, g * cg + ci, .., ..]).outer_iter().enumerate() {
                        let at = (r + self.pads[0]) * wp + self.pads[1];
                        dst[at..at + wi].copy_from_slice(src.as_slice().expect("standard-layout input"));
                    }
                }
                for i in 0..self.kernel[0] {
                    for j in 0..self.kernel[1] {
                        let off = self.shift(i, j, wp);
                        let rhs = ArrayView2::from_shape((cg, ho * wp).strides((plane, 1)), &padded[off..])
                            .expect("the plane's slack keeps every shifted view inside");
                        let first = i == 0 && j == 0;
                        matmul(wide.view_mut(), self.weight_cell(&w, g, i, j), rhs, !first, threads);
                    }
                }
                for (o, row) in wide.outer_iter().enumerate() {
                    let row = row.as_slice().expect("contiguous rows");
                    let mut dst = yb.index_axis_mut(Axis(0), g * cog + o);
                    for (oh, mut line) in dst.outer_iter_mut().enumerate() {
                        line.as_slice_mut()
                            .expect("standard-layout output")
                            .copy_from_slice(&row[oh * wp..oh * wp + wo]);
                    }
                }
            }
        });
        y.into_dyn()
    }

    /// The transpose of [`Self::apply_shifted`]: the relevance, laid on the wide grid (zero past the
    /// output's width), is multiplied by each kernel cell's transposed weight and added into a view
    /// of the padded input gradient; the padding is dropped at the end.
    fn apply_transposed_shifted(&self, s: &ArrayD<f32>, w: &Array<f32, Ix4>, input_shape: &[usize]) -> ArrayD<f32> {
        let w = w.as_standard_layout();
        let w = w.view().into_dimensionality::<Ix4>().expect("4-D weight");
        let (n, c, h, wi) = (input_shape[0], input_shape[1], input_shape[2], input_shape[3]);
        let co = w.shape()[0];
        let (cg, cog) = (c / self.groups, co / self.groups);
        let (ho, wo) = (s.shape()[2], s.shape()[3]);
        let (wp, plane) = self.padded_plane([h, wi]);
        let s4 = s.view().into_dimensionality::<Ix4>().expect("NCHW relevance");
        let mut dx = ndarray::Array4::<f32>::zeros((n, c, h, wi));
        let threads = Threads::for_products(n);
        dx.outer_iter_mut().collect::<Vec<_>>().into_par_iter().enumerate().for_each(|(b, mut dxb)| {
            let mut wide = Array2::<f32>::zeros((cog, ho * wp));
            let mut padded = vec![0.0f32; cg * plane];
            for g in 0..self.groups {
                for (o, mut row) in wide.outer_iter_mut().enumerate() {
                    let row = row.as_slice_mut().expect("contiguous rows");
                    for (oh, src) in s4.slice(s![b, g * cog + o, .., ..]).outer_iter().enumerate() {
                        for (d, v) in row[oh * wp..oh * wp + wo].iter_mut().zip(src.iter()) {
                            *d = *v;
                        }
                    }
                }
                padded.fill(0.0);
                for i in 0..self.kernel[0] {
                    for j in 0..self.kernel[1] {
                        let off = self.shift(i, j, wp);
                        let dst = ArrayViewMut2::from_shape((cg, ho * wp).strides((plane, 1)), &mut padded[off..])
                            .expect("the plane's slack keeps every shifted view inside");
                        matmul(dst, self.weight_cell(&w, g, i, j).t(), wide.view(), true, threads);
                    }
                }
                for (ci, src) in padded.chunks(plane).enumerate() {
                    let mut dst = dxb.index_axis_mut(Axis(0), g * cg + ci);
                    for (r, mut line) in dst.outer_iter_mut().enumerate() {
                        let at = (r + self.pads[0]) * wp + self.pads[1];
                        line.as_slice_mut().expect("standard-layout gradient").copy_from_slice(&src[at..at + wi]);
                    }
                }
            }
        });
        dx.into_dyn()
    }

    /// `conv(x; w)` by unfolding chunks of images (im2col) into one wide product per group.
    fn apply_unfolded(&self, x: &ArrayD<f32>, w: &Array<f32, Ix4>) -> ArrayD<f32> {
        let w = w.as_standard_layout();
        let x = x.as_standard_layout();
        let (n, c, h, wi) = (x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]);
        let co = w.shape()[0];
        let out = self.output_hw([h, wi]);
        let hw = out[0] * out[1];
        let (cg, cog) = (c / self.groups, co / self.groups);
        let k = cg * self.kernel[0] * self.kernel[1];
        let x4 = x.view().into_dimensionality::<Ix4>().expect("NCHW input");
        let mut y = ndarray::Array4::<f32>::zeros((n, co, out[0], out[1]));
        let (chunk, threads) = chunking(n, k * hw);
        y.axis_chunks_iter_mut(Axis(0), chunk).collect::<Vec<_>>().into_par_iter().enumerate().for_each(
            |(ci, mut ych)| {
                let (b0, nb) = (ci * chunk, ych.shape()[0]);
                // `chunk` images wide even when fewer remain: the padding columns stay zero.
                let mut cols = Array2::<f32>::zeros((k, chunk * hw));
                with_scratch(cog * chunk * hw, |z| {
                    // Every cell is written by the product (it does not read its destination).
                    let mut z = ArrayViewMut2::from_shape((cog, chunk * hw), z).expect("scratch length");
                    for g in 0..self.groups {
                        for i in 0..nb {
                            let block = cols.slice_mut(s![.., i * hw..(i + 1) * hw]);
                            let planes = x4.slice(s![b0 + i, g * cg..(g + 1) * cg, .., ..]);
                            self.window().im2col(planes, out, block);
                        }
                        matmul(z.view_mut(), self.weight_matrix(&w.view(), g), cols.view(), false, threads);
                        for i in 0..nb {
                            let mut dst = ych.slice_mut(s![i, g * cog..(g + 1) * cog, .., ..]);
                            let src = z.slice(s![.., i * hw..(i + 1) * hw]);
                            for (mut d, s) in dst.outer_iter_mut().zip(src.outer_iter()) {
                                // One channel's plane (`d` is standard layout, `s` one contiguous row).
                                d.as_slice_mut()
                                    .expect("standard-layout output")
                                    .copy_from_slice(s.as_slice().expect("row"));
                            }
                        }
                    }
                });
            },
        );
        y.into_dyn()
    }

    /// `convᵀ(s; w)` by products into unfolded columns, folded back (col2im).
    fn apply_transposed_unfolded(&self, s: &ArrayD<f32>, w: &Array<f32, Ix4>, input_shape: &[usize]) -> ArrayD<f32> {
        let w = w.as_standard_layout();
        let (n, c) = (input_shape[0], input_shape[1]);
        let co = w.shape()[0];
        let (cg, cog) = (c / self.groups, co / self.groups);
        let out = [s.shape()[2], s.shape()[3]];
        let hw = out[0] * out[1];
        let k = cg * self.kernel[0] * self.kernel[1];
        let s4 = s.view().into_dimensionality::<Ix4>().expect("NCHW relevance");
        let (h, wi) = (input_shape[2], input_shape[3]);
        let mut dx = ndarray::Array4::<f32>::zeros((n, c, h, wi));
        let (chunk, threads) = chunking(n, k * hw);
        dx.axis_chunks_iter_mut(Axis(0), chunk).collect::<Vec<_>>().into_par_iter().enumerate().for_each(
            |(ci, mut dch)| {
                let (b0, nb) = (ci * chunk, dch.shape()[0]);
                // `chunk` images wide even when fewer remain: the padding columns stay zero.
                let mut sg = Array2::<f32>::zeros((cog, chunk * hw));
                with_scratch(k * chunk * hw, |cols| {
                    // Every cell is written by the product (it does not read its destination).
                    let mut cols = ArrayViewMut2::from_shape((k, chunk * hw), cols).expect("scratch length");
                    for g in 0..self.groups {
                        for i in 0..nb {
                            let src = s4.slice(s![b0 + i, g * cog..(g + 1) * cog, .., ..]);
                            let mut dst = sg.slice_mut(s![.., i * hw..(i + 1) * hw]);
                            for (mut d, s) in dst.outer_iter_mut().zip(src.outer_iter()) {
                                // One channel's plane: one copy when contiguous (any input layout).
                                let d = d.as_slice_mut().expect("rows of a new matrix are contiguous");
                                match s.as_slice() {
                                    Some(s) => d.copy_from_slice(s),
                                    None => d.iter_mut().zip(s.iter()).for_each(|(d, s)| *d = *s),
                                }
                            }
                        }
                        matmul(cols.view_mut(), self.weight_matrix(&w.view(), g).t(), sg.view(), false, threads);
                        for i in 0..nb {
                            let block = cols.slice(s![.., i * hw..(i + 1) * hw]);
                            let mut image = dch.index_axis_mut(Axis(0), i);
                            let image = image.as_slice_mut().expect("new gradient array");
                            let planes = &mut image[g * cg * h * wi..(g + 1) * cg * h * wi];
                            self.window().col2im(block, planes, [h, wi], out);
                        }
                    }
                });
            },
        );
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
            (
                Conv2d { strides: [3, 2], pads: [2, 0, 1, 1], dilations: [2, 1], groups: 1, kernel: [3, 3] },
                [2, 3, 9, 7],
                2,
            ),
            (
                Conv2d { strides: [1, 1], pads: [2, 2, 0, 2], dilations: [1, 2], groups: 1, kernel: [2, 3] },
                [1, 2, 5, 6],
                3,
            ),
            // AlexNet's first layer (sides not multiples of the stride), and a column stride alone.
            (
                Conv2d { strides: [4, 4], pads: [2, 2, 2, 2], dilations: [1, 1], groups: 1, kernel: [11, 11] },
                [1, 3, 23, 21],
                2,
            ),
            (
                Conv2d { strides: [1, 3], pads: [1, 0, 1, 2], dilations: [1, 1], groups: 1, kernel: [3, 4] },
                [2, 2, 5, 10],
                3,
            ),
        ]
        .into_iter()
        .chain(depthwise_convs())
        .collect()
    }

    /// Depthwise convolutions (one input channel per group): the direct stencil's cases.
    fn depthwise_convs() -> Vec<(Conv2d, [usize; 4], usize)> {
        vec![
            // MobileNet's: 3 × 3, stride 1 and 2 (odd and even sides).
            (
                Conv2d { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 5, kernel: [3, 3] },
                [2, 5, 9, 7],
                5,
            ),
            (
                Conv2d { strides: [2, 2], pads: [0, 0, 1, 1], dilations: [1, 1], groups: 3, kernel: [3, 3] },
                [3, 3, 8, 9],
                3,
            ),
            // EfficientNet's 5 × 5, a channel multiplier of 2, dilation, asymmetric pads.
            (
                Conv2d { strides: [1, 2], pads: [2, 1, 2, 3], dilations: [2, 1], groups: 4, kernel: [5, 5] },
                [1, 4, 11, 10],
                8,
            ),
            // A kernel wider than the padded reach of some outputs: cells that reach no output.
            (
                Conv2d { strides: [3, 1], pads: [4, 4, 0, 0], dilations: [1, 1], groups: 2, kernel: [5, 5] },
                [2, 2, 3, 3],
                2,
            ),
        ]
    }

    #[test]
    fn depthwise_stencil_and_products_agree() {
        for (k, (conv, xs, co)) in depthwise_convs().into_iter().enumerate() {
            let x = tensor(&xs, 70 + k as u64);
            let w = tensor(&[co, 1, conv.kernel[0], conv.kernel[1]], 80 + k as u64);
            let w4: Array<f32, Ix4> = w.clone().into_dimensionality().unwrap();
            assert!(conv.is_depthwise(xs[1]), "case {k}");
            let direct = conv.apply(&x, &w4);
            let products = conv.apply_unfolded(&x, &w4);
            assert_eq!(direct.shape(), products.shape(), "case {k}");
            assert!(direct.iter().zip(products.iter()).all(|(a, b)| (a - b).abs() < 1e-5), "case {k}: forward");
            let s = tensor(direct.shape(), 90 + k as u64);
            let t_direct = conv.apply_transposed(&s, &w4, x.shape());
            let t_products = conv.apply_transposed_unfolded(&s, &w4, x.shape());
            assert_eq!(t_direct.shape(), x.shape(), "case {k}");
            assert!(t_direct.iter().zip(t_products.iter()).all(|(a, b)| (a - b).abs() < 1e-5), "case {k}: transposed");
        }
    }

    #[test]
    fn scratch_is_reused_nested_calls_get_their_own_and_large_ones_are_not_kept() {
        // A new thread: its scratch starts empty whatever other tests did.
        std::thread::spawn(|| {
            let first = with_scratch(10, |b| {
                b.fill(1.0);
                b.as_ptr() as usize
            });
            let again = with_scratch(8, |b| b.as_ptr() as usize);
            assert_eq!(first, again, "the buffer is reused");
            with_scratch(4, |outer| {
                with_scratch(4, |inner| assert_ne!(outer.as_ptr(), inner.as_ptr(), "a nested call's own buffer"));
            });
            with_scratch(CHUNK_ELEMENTS + 1, |b| b[CHUNK_ELEMENTS] = 2.0);
            let kept = SCRATCH.with(|cell| {
                let buf = cell.take();
                let len = buf.len();
                cell.set(buf);
                len
            });
            assert!(kept <= CHUNK_ELEMENTS, "a buffer of {kept} floats stayed with the thread");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_bias_goes_to_its_channel_in_any_layout() {
        for shape in [&[3, 4, 5, 2][..], &[3, 4][..], &[2, 4, 1, 1][..]] {
            let y = tensor(shape, 1);
            let b = Array1::from(values(4, 2));
            let mut expected = y.clone();
            expected.indexed_iter_mut().for_each(|(i, v)| *v += b[i[1]]);
            let mut standard = y.clone();
            add_bias(&mut standard, Some(&b));
            assert_eq!(standard, expected, "standard layout {shape:?}");
            // Not in standard layout: a reversed batch axis.
            let mut reversed = y.clone();
            reversed.invert_axis(Axis(0));
            add_bias(&mut reversed, Some(&b));
            reversed.invert_axis(Axis(0));
            assert_eq!(reversed, expected, "other layout {shape:?}");
        }
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
    fn shifted_and_unfolded_products_agree() {
        // Stride-1 cases, forced down both paths (the choice between them goes by size).
        let cases = [
            (
                Conv2d { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, kernel: [3, 3] },
                [2, 3, 6, 5],
                4,
            ),
            (
                Conv2d { strides: [1, 1], pads: [0, 2, 1, 0], dilations: [2, 1], groups: 1, kernel: [2, 3] },
                [1, 2, 7, 8],
                3,
            ),
            (
                Conv2d { strides: [1, 1], pads: [2, 2, 2, 2], dilations: [1, 1], groups: 2, kernel: [5, 5] },
                [3, 4, 9, 9],
                6,
            ),
            (
                Conv2d { strides: [1, 1], pads: [0, 0, 0, 0], dilations: [1, 1], groups: 1, kernel: [1, 1] },
                [1, 5, 4, 3],
                2,
            ),
        ];
        for (k, (conv, xs, co)) in cases.into_iter().enumerate() {
            let x = tensor(&xs, 40 + k as u64);
            let w = tensor(&[co, xs[1] / conv.groups, conv.kernel[0], conv.kernel[1]], 50 + k as u64);
            let w4: Array<f32, Ix4> = w.clone().into_dimensionality().unwrap();
            let shifted = conv.apply_shifted(&x, &w4);
            let naive = conv_naive(&conv, &x, &w);
            assert_eq!(shifted.shape(), naive.shape(), "case {k}");
            assert!(shifted.iter().zip(naive.iter()).all(|(a, b)| (a - b).abs() < 1e-5), "case {k}: forward");
            assert!(conv.apply_unfolded(&x, &w4).iter().zip(naive.iter()).all(|(a, b)| (a - b).abs() < 1e-5));
            let s = tensor(naive.shape(), 60 + k as u64);
            let t_shifted = conv.apply_transposed_shifted(&s, &w4, x.shape());
            let t_unfolded = conv.apply_transposed_unfolded(&s, &w4, x.shape());
            assert_eq!(t_shifted.shape(), x.shape());
            assert!(t_shifted.iter().zip(t_unfolded.iter()).all(|(a, b)| (a - b).abs() < 1e-5), "case {k}: transposed");
            let (lhs, rhs): (f32, f32) = ((&naive * &s).sum(), (&x * &t_shifted).sum());
            assert!((lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0), "case {k}: {lhs} vs {rhs}");
        }
    }

    #[test]
    fn an_image_gives_the_same_bits_in_any_batch_on_any_threads() {
        // Both convolution paths (28 × 28 shifted, 8 × 8 unfolded; 576 inputs per output, past the
        // kernels' 512-deep blocks), the depthwise stencil and a dense layer: image 0 alone, in a
        // batch of 5 and of 19, on 1 and 3 threads.
        let conv = Conv2d { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, kernel: [3, 3] };
        let w = weights4(&tensor(&[8, 64, 3, 3], 7));
        let depthwise = Conv2d { groups: 64, ..conv.clone() };
        let wd = weights4(&tensor(&[64, 1, 3, 3], 11));
        let dense = weights2(&tensor(&[10, 700], 8));
        let mut reference: Option<Vec<Vec<f32>>> = None;
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for batch in [1, 5, 19] {
                let first = |a: ArrayD<f32>| a.index_axis(Axis(0), 0).iter().copied().collect::<Vec<f32>>();
                let got = pool.install(|| {
                    let mut out = Vec::new();
                    for side in [28, 8] {
                        let x = tensor(&[batch, 64, side, side], 9);
                        let y = conv.forward(&x, &w);
                        out.push(first(conv.backward(&y, &w, x.shape())));
                        out.push(first(y));
                        let y = depthwise.forward(&x, &wd);
                        out.push(first(depthwise.backward(&y, &wd, x.shape())));
                        out.push(first(y));
                    }
                    let x = tensor(&[batch, 700], 10);
                    let y = Dense.forward(&x, &dense);
                    out.push(first(Dense.backward(&y, &dense, x.shape())));
                    out.push(first(y));
                    out
                });
                match &reference {
                    None => reference = Some(got),
                    Some(r) => assert!(r == &got, "{threads} threads, batch {batch}: other bits"),
                }
            }
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
