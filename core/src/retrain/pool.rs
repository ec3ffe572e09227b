//! 2-D max and average pooling with any kernel, stride, padding, dilation and ceil mode, as
//! candle custom ops with their own backward.
//!
//! candle 0.11.1's pooling backward requires kernel = stride, and its reduce-max backward hands
//! the gradient to every tied maximum. PyTorch (the oracle) hands it to the first maximum of the
//! window in row-major order, which matters wherever ReLU leaves flat zero regions. These ops
//! follow PyTorch: the forward keeps the first maximum, the backward scatters each output's
//! gradient to that cell (max) or spreads it evenly over the window's counted cells (average).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::model::AutoPad;

/// Padding of one axis: (begin, end), from `auto_pad` or the explicit pads.
pub(super) fn axis_pads(
    input: usize,
    k: usize,
    s: usize,
    d: usize,
    auto: AutoPad,
    explicit: (usize, usize),
) -> (usize, usize) {
    match auto {
        AutoPad::NotSet => explicit,
        AutoPad::Valid => (0, 0),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let out = input.div_ceil(s);
            let total = ((out.saturating_sub(1)) * s + d * (k - 1) + 1).saturating_sub(input);
            if auto == AutoPad::SameUpper {
                (total / 2, total - total / 2)
            } else {
                (total - total / 2, total / 2)
            }
        }
    }
}

/// One spatial axis of a pooling window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PoolAxis {
    pub k: usize,
    pub s: usize,
    pub d: usize,
    /// Padding before the input.
    pub begin: usize,
    /// Explicit padding after the input (without the cells that `ceil_mode` adds).
    pub pad_end: usize,
    pub input: usize,
    pub out: usize,
}

impl PoolAxis {
    pub fn new(
        input: usize,
        k: usize,
        s: usize,
        d: usize,
        auto: AutoPad,
        explicit: (usize, usize),
        ceil: bool,
    ) -> candle_core::Result<PoolAxis> {
        if k == 0 || s == 0 || d == 0 {
            candle_core::bail!("pooling with a zero kernel, stride or dilation");
        }
        let (begin, pad_end) = axis_pads(input, k, s, d, auto, explicit);
        let reach = d * (k - 1) + 1;
        let padded = input + begin + pad_end;
        if padded < reach {
            candle_core::bail!("the pooling window ({k}) is larger than the padded input ({padded})");
        }
        let span = padded - reach;
        let mut out = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
        // The last window must start inside the input or its leading padding.
        if ceil && (out - 1) * s >= input + begin {
            out -= 1;
        }
        Ok(PoolAxis { k, s, d, begin, pad_end, input, out })
    }

    /// The input cells of window `o`: the first one's index and how many (`d` apart); the taps
    /// inside the input are contiguous.
    fn taps(&self, o: usize) -> (usize, usize) {
        let start = o * self.s;
        // Tap i reads start + i·d − begin; the first with start + i·d ≥ begin …
        let lo = self.begin.saturating_sub(start).div_ceil(self.d).min(self.k);
        // … and those before the end of the input.
        let hi = (self.input + self.begin).saturating_sub(start).div_ceil(self.d).min(self.k);
        if lo >= hi {
            return (0, 0);
        }
        (start + lo * self.d - self.begin, hi - lo)
    }

    /// Cells of window `o` inside the input, or inside the input and its explicit padding.
    pub fn count(&self, o: usize, with_pads: bool) -> usize {
        let (lo, hi) =
            if with_pads { (0, self.begin + self.input + self.pad_end) } else { (self.begin, self.begin + self.input) };
        (0..self.k).filter(|i| (lo..hi).contains(&(o * self.s + i * self.d))).count()
    }
}

/// What a window reduces to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reduce {
    Max,
    Avg { include_pad: bool },
}

/// Pooling over the last two axes of an `N×C×H×W` f32 tensor.
#[derive(Debug, Clone)]
pub(super) struct Pool2d {
    pub reduce: Reduce,
    pub axes: [PoolAxis; 2],
}

impl Pool2d {
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op1(self.clone())
    }

    fn planes(&self, layout: &Layout) -> candle_core::Result<(usize, usize)> {
        let dims = layout.shape().dims();
        let [n, c, h, w] = dims else { candle_core::bail!("pooling needs N×C×H×W, got {dims:?}") };
        if *h != self.axes[0].input || *w != self.axes[1].input {
            candle_core::bail!("pooling set up for {}×{}, got {h}×{w}", self.axes[0].input, self.axes[1].input);
        }
        Ok((n * c, h * w))
    }

    fn out_shape(&self, layout: &Layout) -> Shape {
        let d = layout.shape().dims();
        Shape::from((d[0], d[1], self.axes[0].out, self.axes[1].out))
    }

    /// Divisor of output (oh, ow) for average pooling.
    fn divisor(&self, oh: usize, ow: usize, include_pad: bool) -> f32 {
        (self.axes[0].count(oh, include_pad) * self.axes[1].count(ow, include_pad)).max(1) as f32
    }

    /// The windows' input cells on both axes, per output row and column (see [`PoolAxis::taps`]).
    fn windows(&self) -> Windows {
        let [ah, aw] = &self.axes;
        Windows {
            rows: (0..ah.out).map(|o| ah.taps(o)).collect(),
            cols: (0..aw.out).map(|o| aw.taps(o)).collect(),
            d: [ah.d, aw.d],
            width: aw.input,
        }
    }
}

/// Precomputed window cells: `(first input index, count)` per output row and per output column.
struct Windows {
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
    d: [usize; 2],
    width: usize,
}

impl Windows {
    /// Input offsets (within a plane) of the window of (oh, ow), in row-major order.
    fn cells(&self, oh: usize, ow: usize) -> impl Iterator<Item = usize> + '_ {
        let ((y0, ny), (x0, nx)) = (self.rows[oh], self.cols[ow]);
        let [dy, dx] = self.d;
        (0..ny).flat_map(move |i| (0..nx).map(move |j| (y0 + i * dy) * self.width + x0 + j * dx))
    }

    /// Input offset of the window maximum of (oh, ow): the first in row-major order, as PyTorch;
    /// `None` when the window holds no input cell.
    fn argmax(&self, plane: &[f32], oh: usize, ow: usize) -> Option<usize> {
        let mut best: Option<(usize, f32)> = None;
        for at in self.cells(oh, ow) {
            let v = plane[at];
            if best.is_none_or(|(_, b)| v > b || v.is_nan()) {
                best = Some((at, v));
            }
        }
        best.map(|(at, _)| at)
    }
}

/// The f32 values of a contiguous tensor (the custom ops work on f32 only).
pub(super) fn f32_slice<'a>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = storage else { candle_core::bail!("hudd's training ops need f32 tensors") };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("hudd's training ops need contiguous tensors")
    };
    Ok(&v[start..end])
}

impl CustomOp1 for Pool2d {
    fn name(&self) -> &'static str {
        "hudd-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout)?;
        let (planes, plane) = self.planes(layout)?;
        let (oh, ow) = (self.axes[0].out, self.axes[1].out);
        let mut out = vec![0f32; planes * oh * ow];
        let win = self.windows();
        out.par_chunks_mut(oh * ow).zip(x.par_chunks(plane)).for_each(|(o, p)| {
            for r in 0..oh {
                for c in 0..ow {
                    o[r * ow + c] = match self.reduce {
                        Reduce::Max => win.argmax(p, r, c).map_or(f32::NEG_INFINITY, |at| p[at]),
                        Reduce::Avg { include_pad } => {
                            win.cells(r, c).map(|at| p[at]).sum::<f32>() / self.divisor(r, c, include_pad)
                        }
                    };
                }
            }
        });
        Ok((CpuStorage::F32(out), self.out_shape(layout)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let grad = arg.contiguous()?.apply_op2_no_bwd(&grad_res.contiguous()?, &PoolGrad(self.clone()))?;
        Ok(Some(grad))
    }
}

/// The gradient of [`Pool2d`] with respect to its input: `(input, output gradient) → input
/// gradient`.
struct PoolGrad(Pool2d);

impl CustomOp2 for PoolGrad {
    fn name(&self) -> &'static str {
        "hudd-pool2d-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let pool = &self.0;
        let x = f32_slice(s1, l1)?;
        let g = f32_slice(s2, l2)?;
        let (planes, plane) = pool.planes(l1)?;
        let (oh, ow) = (pool.axes[0].out, pool.axes[1].out);
        if g.len() != planes * oh * ow {
            candle_core::bail!("pooling gradient of {} values for {} outputs", g.len(), planes * oh * ow);
        }
        let mut dx = vec![0f32; planes * plane];
        let win = pool.windows();
        dx.par_chunks_mut(plane).zip(x.par_chunks(plane)).zip(g.par_chunks(oh * ow)).for_each(|((d, p), g)| {
            for r in 0..oh {
                for c in 0..ow {
                    let gv = g[r * ow + c];
                    match pool.reduce {
                        Reduce::Max => {
                            if let Some(at) = win.argmax(p, r, c) {
                                d[at] += gv;
                            }
                        }
                        Reduce::Avg { include_pad } => {
                            let share = gv / pool.divisor(r, c, include_pad);
                            for at in win.cells(r, c) {
                                d[at] += share;
                            }
                        }
                    }
                }
            }
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::*;

    fn axis(input: usize, k: usize, s: usize, pads: (usize, usize), ceil: bool) -> PoolAxis {
        PoolAxis::new(input, k, s, 1, AutoPad::NotSet, pads, ceil).unwrap()
    }

    #[test]
    fn output_sizes_follow_pytorch_with_and_without_ceil_mode() {
        // (input, kernel, stride, pads, ceil) → output, as torch.nn.functional.max_pool2d gives.
        assert_eq!(axis(7, 2, 2, (0, 0), false).out, 3);
        assert_eq!(axis(7, 2, 2, (0, 0), true).out, 4);
        assert_eq!(axis(6, 3, 2, (1, 1), true).out, 4);
        assert_eq!(axis(5, 3, 2, (1, 1), true).out, 3);
        assert_eq!(axis(8, 3, 3, (0, 0), true).out, 3);
        // The last window would start in the end padding: dropped.
        assert_eq!(axis(5, 2, 2, (1, 1), true).out, 3);
    }

    fn pool(reduce: Reduce, x: &Tensor, k: usize, s: usize, pads: (usize, usize)) -> Pool2d {
        let (_, _, h, w) = x.dims4().unwrap();
        Pool2d { reduce, axes: [axis(h, k, s, pads, false), axis(w, k, s, pads, false)] }
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn non_overlapping_windows_agree_with_candles_pooling_and_route_the_gradient_to_the_maximum() {
        let x = Var::from_tensor(
            &Tensor::arange(0f32, 2.0 * 3.0 * 8.0 * 6.0, &Device::Cpu)
                .unwrap()
                .reshape((2, 3, 8, 6))
                .unwrap()
                .sin()
                .unwrap(),
        )
        .unwrap();
        let weights = Tensor::arange(0f32, 2.0 * 3.0 * 4.0 * 3.0, &Device::Cpu).unwrap().reshape((2, 3, 4, 3)).unwrap();
        for reduce in [Reduce::Max, Reduce::Avg { include_pad: true }] {
            let ours = pool(reduce, &x, 2, 2, (0, 0)).apply(&x).unwrap();
            let theirs = if reduce == Reduce::Max { x.max_pool2d(2).unwrap() } else { x.avg_pool2d(2).unwrap() };
            assert!(max_diff(&ours, &theirs) < 1e-6, "{reduce:?} forward");
            let g = (ours * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let g = g.get(&x).unwrap();
            if reduce == Reduce::Max {
                // Each window's weight lands on its maximum (sin has no ties here).
                let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let ws = weights.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let mut expected = vec![0f32; xs.len()];
                for (o, w) in ws.iter().enumerate() {
                    let (plane, r, c) = (o / 12, o % 12 / 3, o % 3);
                    let cells = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(i, j)| plane * 48 + (2 * r + i) * 6 + 2 * c + j);
                    let best = cells.into_iter().max_by(|a, b| xs[*a].total_cmp(&xs[*b])).unwrap();
                    expected[best] += w;
                }
                assert_eq!(g.flatten_all().unwrap().to_vec1::<f32>().unwrap(), expected);
            } else {
                let g2 = (theirs * &weights).unwrap().sum_all().unwrap().backward().unwrap();
                assert!(max_diff(g, g2.get(&x).unwrap()) < 1e-6, "{reduce:?} backward");
            }
        }
    }

    #[test]
    fn a_tied_maximum_gets_the_gradient_once_at_its_first_cell() {
        let x = Var::from_tensor(&Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap();
        let y = pool(Reduce::Max, &x, 2, 2, (0, 0)).apply(&x).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(g, [1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn overlapping_padded_windows_count_their_cells() {
        // 1×1×3×3 of ones, 3×3 windows, stride 2, padding 1: four windows of 4 input cells each.
        let x = Var::from_tensor(&Tensor::ones((1, 1, 3, 3), candle_core::DType::F32, &Device::Cpu).unwrap()).unwrap();
        let with = pool(Reduce::Avg { include_pad: true }, &x, 3, 2, (1, 1)).apply(&x).unwrap();
        let without = pool(Reduce::Avg { include_pad: false }, &x, 3, 2, (1, 1)).apply(&x).unwrap();
        assert_eq!(with.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [4.0 / 9.0; 4]);
        assert_eq!(without.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [1.0; 4]);
        // The centre cell sits in all four windows.
        let g = without.sum_all().unwrap().backward().unwrap();
        let g: Vec<f32> = g.get(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(g, [0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]);
        let m = pool(Reduce::Max, &x, 3, 2, (1, 1)).apply(&x).unwrap();
        assert_eq!(m.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [1.0; 4]);
    }
}
