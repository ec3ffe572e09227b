//! 2-D convolution with bias as a candle custom op: im2col and one matrix product per image and
//! group, with its own backward (the input gradient by the transposed product and col2im, the
//! kernel gradient by the product with the columns, the bias gradient by a sum per filter).
//!
//! candle 0.11.1's CPU convolution backward goes through `conv_transpose2d` (a dot product per
//! output cell) and a convolution whose kernel is the whole output gradient; on the gaze model it
//! made training about five times slower than PyTorch. This op handles any stride, dilation,
//! groups and asymmetric zero padding directly (no padded copy, no crop, no subsampling).
//!
//! Deterministic whatever the thread count: images are independent, and the kernel gradient sums
//! fixed chunks of images, each in image order, then the chunks in order.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayView3, ArrayViewMut2};
use rayon::prelude::*;

use super::pool::f32_slice;
use crate::conv::Window;

/// Images per partial sum of the kernel gradient (fixed, so that the sum does not depend on the
/// number of threads).
const CHUNK: usize = 4;

/// The geometry of one convolution: input `N×C×H×W`, kernel `M×(C/groups)×KH×KW`, output
/// `N×M×OH×OW`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Conv2d {
    /// Input channels and spatial size.
    pub channels: usize,
    pub input: [usize; 2],
    /// Output channels and kernel size.
    pub filters: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Zero padding before the input on each axis (the padding after it only shows in `out`).
    pub begin: [usize; 2],
    pub out: [usize; 2],
    pub groups: usize,
}

impl Conv2d {
    /// `x ⋆ w + b` (`b`: one value per filter; zeros when the node has none).
    pub fn apply(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> candle_core::Result<Tensor> {
        let b = match b {
            Some(b) => b.flatten_all()?.contiguous()?,
            None => Tensor::zeros(self.filters, w.dtype(), w.device())?,
        };
        x.contiguous()?.apply_op3(&w.contiguous()?, &b, *self)
    }

    /// Input channels per group.
    fn cg(&self) -> usize {
        self.channels / self.groups
    }

    /// Filters per group.
    fn mg(&self) -> usize {
        self.filters / self.groups
    }

    /// Rows of one group's columns: `C/groups × KH × KW`.
    fn k(&self) -> usize {
        self.cg() * self.kernel[0] * self.kernel[1]
    }

    /// Output cells per plane.
    fn p(&self) -> usize {
        self.out[0] * self.out[1]
    }

    fn plane(&self) -> usize {
        self.input[0] * self.input[1]
    }

    /// 1×1, stride 1, no padding: the columns are the input itself.
    fn pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.begin == [0, 0] && self.out == self.input
    }

    fn check(&self, what: &str, layout: &Layout, dims: [usize; 4]) -> candle_core::Result<usize> {
        let got = layout.shape().dims();
        match got {
            [n, a, b, c] if [*a, *b, *c] == dims[1..] => Ok(*n),
            _ => candle_core::bail!("convolution {what}: expected N×{:?}, got {got:?}", &dims[1..]),
        }
    }

    fn x_dims(&self) -> [usize; 4] {
        [0, self.channels, self.input[0], self.input[1]]
    }

    fn w_dims(&self) -> [usize; 4] {
        [self.filters, self.cg(), self.kernel[0], self.kernel[1]]
    }

    fn y_dims(&self) -> [usize; 4] {
        [0, self.filters, self.out[0], self.out[1]]
    }

    /// The sliding window (shared with relevance propagation: `crate::conv`).
    fn window(&self) -> Window {
        let end = |axis: usize| {
            let reach = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
            ((self.out[axis].max(1) - 1) * self.stride[axis] + reach)
                .saturating_sub(self.input[axis] + self.begin[axis])
        };
        Window {
            kernel: self.kernel,
            strides: self.stride,
            dilations: self.dilation,
            pads: [self.begin[0], self.begin[1], end(0), end(1)],
        }
    }

    /// The group's planes of one image `x` (`C×H×W`).
    fn planes<'a>(&self, x: &'a [f32], g: usize) -> ArrayView3<'a, f32> {
        let len = self.cg() * self.plane();
        ArrayView3::from_shape((self.cg(), self.input[0], self.input[1]), &x[g * len..(g + 1) * len])
            .expect("cg planes of H×W")
    }

    /// The columns of group `g` of one image `x` (`C×H×W`) into `cols` (`K × P`).
    fn im2col(&self, x: &[f32], g: usize, cols: &mut [f32]) {
        let (k, p) = (self.k(), self.p());
        self.window().im2col(self.planes(x, g), self.out, view_mut(cols, k, p));
    }

    /// Adds the columns `cols` (`K × P`) of group `g` back into one image's gradient `dx`.
    fn col2im(&self, cols: &[f32], g: usize, dx: &mut [f32]) {
        let len = self.cg() * self.plane();
        self.window().col2im(view(cols, self.k(), self.p()), &mut dx[g * len..(g + 1) * len], self.input, self.out);
    }

    /// One group's columns of image `x`: borrowed when pointwise, else built in `buf`.
    fn columns<'a>(&self, x: &'a [f32], g: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        if self.pointwise() {
            &x[g * self.cg() * self.plane()..][..self.k() * self.p()]
        } else {
            buf.resize(self.k() * self.p(), 0.0);
            self.im2col(x, g, buf);
            buf
        }
    }
}

fn view(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), &data[..rows * cols]).expect("rows × cols values")
}

fn view_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut data[..rows * cols]).expect("rows × cols values")
}

impl CustomOp3 for Conv2d {
    fn name(&self) -> &'static str {
        "hudd-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let n = self.check("input", l1, self.x_dims())?;
        self.check("kernel", l2, self.w_dims())?;
        let (x, w, b) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?, f32_slice(s3, l3)?);
        if b.len() != self.filters {
            candle_core::bail!("convolution bias: {} values for {} filters", b.len(), self.filters);
        }
        let (k, p, mg) = (self.k(), self.p(), self.mg());
        let image_in = self.channels * self.plane();
        let mut y = vec![0f32; n * self.filters * p];
        if n > 0 {
            y.par_chunks_mut(self.filters * p).zip(x.par_chunks(image_in)).for_each(|(y, x)| {
                let mut buf = Vec::new();
                for (plane, &bias) in y.chunks_mut(p).zip(b) {
                    plane.fill(bias);
                }
                for g in 0..self.groups {
                    let cols = self.columns(x, g, &mut buf);
                    let mut out = view_mut(&mut y[g * mg * p..], mg, p);
                    general_mat_mul(1.0, &view(&w[g * mg * k..], mg, k), &view(cols, k, p), 1.0, &mut out);
                }
            });
        }
        Ok((CpuStorage::F32(y), Shape::from((n, self.filters, self.out[0], self.out[1]))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() { Some(grad.apply_op2_no_bwd(&w.contiguous()?, &InputGrad(*self))?) } else { None };
        let dw = if w.track_op() { Some(x.contiguous()?.apply_op2_no_bwd(&grad, &KernelGrad(*self))?) } else { None };
        let db = if b.track_op() { Some(grad.apply_op1_no_bwd(&BiasGrad(*self))?) } else { None };
        Ok((dx, dw, db))
    }
}

/// `(output gradient, kernel) → input gradient`.
struct InputGrad(Conv2d);

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "hudd-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let c = &self.0;
        let n = c.check("output gradient", l1, c.y_dims())?;
        c.check("kernel", l2, c.w_dims())?;
        let (dy, w) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let (k, p, mg) = (c.k(), c.p(), c.mg());
        let image_in = c.channels * c.plane();
        let mut dx = vec![0f32; n * image_in];
        if n > 0 {
            dx.par_chunks_mut(image_in).zip(dy.par_chunks(c.filters * p)).for_each(|(dx, dy)| {
                let mut cols = vec![0f32; k * p];
                for g in 0..c.groups {
                    let wg = view(&w[g * mg * k..], mg, k);
                    let dyg = view(&dy[g * mg * p..], mg, p);
                    if c.pointwise() {
                        let mut out = view_mut(&mut dx[g * k * p..], k, p);
                        general_mat_mul(1.0, &wg.t(), &dyg, 0.0, &mut out);
                    } else {
                        general_mat_mul(1.0, &wg.t(), &dyg, 0.0, &mut view_mut(&mut cols, k, p));
                        c.col2im(&cols, g, dx);
                    }
                }
            });
        }
        Ok((CpuStorage::F32(dx), Shape::from((n, c.channels, c.input[0], c.input[1]))))
    }
}

/// `(input, output gradient) → kernel gradient`.
struct KernelGrad(Conv2d);

impl CustomOp2 for KernelGrad {
    fn name(&self) -> &'static str {
        "hudd-conv2d-kernel-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let c = &self.0;
        let n = c.check("input", l1, c.x_dims())?;
        if c.check("output gradient", l2, c.y_dims())? != n {
            candle_core::bail!("convolution gradient: batch sizes differ");
        }
        let (x, dy) = (f32_slice(s1, l1)?, f32_slice(s2, l2)?);
        let (k, p, mg) = (c.k(), c.p(), c.mg());
        let (image_in, image_out) = (c.channels * c.plane(), c.filters * p);
        let size = c.filters * k;
        // Partial sums over fixed chunks of images, then their sum in chunk order.
        let partial: Vec<Vec<f32>> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|chunk| {
                let mut dw = vec![0f32; size];
                let mut buf = Vec::new();
                for i in chunk * CHUNK..((chunk + 1) * CHUNK).min(n) {
                    let (x, dy) = (&x[i * image_in..][..image_in], &dy[i * image_out..][..image_out]);
                    for g in 0..c.groups {
                        let cols = c.columns(x, g, &mut buf);
                        let mut out = view_mut(&mut dw[g * mg * k..], mg, k);
                        general_mat_mul(1.0, &view(&dy[g * mg * p..], mg, p), &view(cols, k, p).t(), 1.0, &mut out);
                    }
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; size];
        for part in &partial {
            for (a, b) in dw.iter_mut().zip(part) {
                *a += b;
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from(&c.w_dims())))
    }
}

/// `output gradient → bias gradient`: the sum over images and cells of each filter's plane, in
/// image order.
struct BiasGrad(Conv2d);

impl candle_core::CustomOp1 for BiasGrad {
    fn name(&self) -> &'static str {
        "hudd-conv2d-bias-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let c = &self.0;
        c.check("output gradient", layout, c.y_dims())?;
        let dy = f32_slice(storage, layout)?;
        let mut db = vec![0f32; c.filters];
        for image in dy.chunks(c.filters * c.p()) {
            for (d, plane) in db.iter_mut().zip(image.chunks(c.p())) {
                *d += plane.iter().sum::<f32>();
            }
        }
        Ok((CpuStorage::F32(db), Shape::from(c.filters)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;

    fn seq(dims: &[usize], scale: f32) -> Tensor {
        let n: usize = dims.iter().product();
        Tensor::arange(0f32, n as f32, &Device::Cpu)
            .unwrap()
            .affine(f64::from(scale), 0.3)
            .unwrap()
            .sin()
            .unwrap()
            .reshape(dims)
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
    }

    /// candle's own convolution as the reference for the forward and both gradients (on a square
    /// input: candle's backward gets uneven sizes wrong, see the module documentation of `net`).
    #[test]
    fn forward_and_gradients_agree_with_candles_convolution() {
        for (groups, stride, dilation, pad) in [(1, 1, 1, 0), (1, 2, 1, 1), (2, 1, 2, 2), (4, 2, 1, 1), (1, 1, 1, 1)] {
            let (c, m, kh) = (4, 8, if groups == 4 { 1 } else { 3 });
            let x = Var::from_tensor(&seq(&[3, c, 9, 9], 0.37)).unwrap();
            let w = Var::from_tensor(&seq(&[m, c / groups, kh, kh], 0.91)).unwrap();
            let reach = dilation * (kh - 1) + 1;
            let out = [(9 + 2 * pad - reach) / stride + 1; 2];
            let op = Conv2d {
                channels: c,
                input: [9, 9],
                filters: m,
                kernel: [kh, kh],
                stride: [stride; 2],
                dilation: [dilation; 2],
                begin: [pad; 2],
                out,
                groups,
            };
            let b = Var::from_tensor(&seq(&[m], 1.7)).unwrap();
            let ours = op.apply(&x, &w, Some(&b)).unwrap();
            let theirs = x
                .conv2d(&w, pad, stride, dilation, groups)
                .unwrap()
                .broadcast_add(&b.reshape((1, m, 1, 1)).unwrap())
                .unwrap();
            let what = format!("groups {groups}, stride {stride}, dilation {dilation}, pad {pad}");
            assert_eq!(ours.dims(), theirs.dims(), "{what}");
            assert!(max_diff(&ours, &theirs) < 1e-4, "{what}: forward");
            let weights = seq(ours.dims(), 0.13);
            let g1 = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (theirs * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("input", &x), ("kernel", &w), ("bias", &b)] {
                let (a, b) = (g1.get(v).unwrap(), g2.get(v).unwrap());
                assert!(max_diff(a, b) < 1e-3, "{what}: {name} gradient differs by {}", max_diff(a, b));
            }
        }
    }

    #[test]
    fn asymmetric_padding_and_unequal_strides() {
        // 1×1×4×5 input, 2×2 kernel of ones, stride (2, 1), padding top 1 / left 0: each output is
        // the sum of the window's input cells that exist.
        let x = Tensor::arange(1f32, 21.0, &Device::Cpu).unwrap().reshape((1, 1, 4, 5)).unwrap();
        let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        let op = Conv2d {
            channels: 1,
            input: [4, 5],
            filters: 1,
            kernel: [2, 2],
            stride: [2, 1],
            dilation: [1, 1],
            begin: [1, 0],
            out: [2, 4],
            groups: 1,
        };
        let y: Vec<f32> = op.apply(&x, &w, None).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // Row 0 reads input row 0 only (the row above is padding); row 1 reads rows 1 and 2.
        assert_eq!(y, [3.0, 5.0, 7.0, 9.0, 6.0 + 7.0 + 11.0 + 12.0, 40.0, 44.0, 48.0]);
    }
}
