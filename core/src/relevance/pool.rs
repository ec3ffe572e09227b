//! Pooling for relevance propagation: max pooling routes each output's relevance to the winner of
//! its window (the gradient, as Zennit uses it), average pooling is a [`LinearMap`] for the Norm rule.
//!
//! Window geometry follows ONNX (`kernel_shape`, `strides`, `pads = [top, left, bottom, right]`,
//! `dilations`); the output size is taken from the forward activation, so `ceil_mode` needs no
//! separate rule. Padded positions never win a max window. Ties go to the first maximum in
//! row-major window order, as PyTorch's max-pool gradient does.

use ndarray::{Array4, ArrayD, Axis, Ix4};
use rayon::prelude::*;

use super::linear::{LinearMap, NoWeights};

/// Geometry of a 2-D pooling window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[sh, sw]`.
    pub strides: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// `[dh, dw]`.
    pub dilations: [usize; 2],
    /// Output `[height, width]` (from the forward pass).
    pub output: [usize; 2],
}

impl Window {
    /// Input positions `(h, w)` of window `(oh, ow)` inside an `h × w` input, in row-major order.
    fn positions(&self, oh: usize, ow: usize, h: usize, w: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (i0, j0) = (
            (oh * self.strides[0]) as isize - self.pads[0] as isize,
            (ow * self.strides[1]) as isize - self.pads[1] as isize,
        );
        (0..self.kernel[0]).flat_map(move |i| {
            (0..self.kernel[1]).filter_map(move |j| {
                let ih = i0 + (i * self.dilations[0]) as isize;
                let iw = j0 + (j * self.dilations[1]) as isize;
                (ih >= 0 && iw >= 0 && (ih as usize) < h && (iw as usize) < w).then_some((ih as usize, iw as usize))
            })
        })
    }

    /// The real (unpadded) positions of window `o` along `axis` of an input `size` long: the first
    /// position and how many kernel positions land inside (consecutive ones, `dilations` apart).
    fn span(&self, o: usize, axis: usize, size: usize) -> (usize, usize) {
        let start = (o * self.strides[axis]) as isize - self.pads[axis] as isize;
        let d = self.dilations[axis] as isize;
        // The first kernel index k with start + k·d ≥ 0, and the end of those with start + k·d < size.
        let first = if start >= 0 { 0 } else { ((-start) + d - 1) / d };
        let end = if (size as isize) > start { ((size as isize - start) + d - 1) / d } else { 0 };
        let (first, end) = (first as usize, (end as usize).min(self.kernel[axis]));
        if first >= end {
            return (0, 0);
        }
        ((start + first as isize * d) as usize, end - first)
    }

    /// Number of window positions counted by the average, ONNX `count_include_pad` semantics:
    /// with it, positions in the explicit padding count (but not those beyond it, as PyTorch).
    fn count(&self, oh: usize, ow: usize, h: usize, w: usize, include_pad: bool) -> usize {
        if !include_pad {
            return self.positions(oh, ow, h, w).count();
        }
        let span = |o: usize, ax: usize, size: usize| {
            let start = (o * self.strides[ax]) as isize - self.pads[ax] as isize;
            let end = (start + (self.dilations[ax] * (self.kernel[ax] - 1) + 1) as isize)
                .min((size + self.pads[ax + 2]) as isize);
            let start = start.max(-(self.pads[ax] as isize));
            ((end - start).max(0) as usize).div_ceil(self.dilations[ax])
        };
        span(oh, 0, h) * span(ow, 1, w)
    }
}

fn as4(a: &ArrayD<f32>) -> ndarray::ArrayView4<'_, f32> {
    a.view().into_dimensionality::<Ix4>().expect("NCHW tensor")
}

/// Winner-takes-all: each output's relevance goes to the first maximum of its window. Planes
/// (image × channel) run in parallel; outputs without relevance are not searched.
///
/// `pooled`, when given, is the layer's output from the forward run (shaped like `r_out`): in a
/// plane without NaN each window's maximum is then known (max pooling selects a value, it rounds
/// nothing), and the search stops at the first position holding it instead of comparing the whole
/// window. A window where no position holds the given value, and every window of a plane with NaN
/// (where engines' maxima differ), is searched by comparison.
pub fn max_pool_relevance(
    window: &Window,
    x: &ArrayD<f32>,
    r_out: &ArrayD<f32>,
    pooled: Option<&ArrayD<f32>>,
) -> ArrayD<f32> {
    let (x, r_out) = (x.as_standard_layout(), r_out.as_standard_layout());
    let (n, c, h, w) = x.view().into_dimensionality::<Ix4>().expect("NCHW tensor").dim();
    let [oh_n, ow_n] = window.output;
    let mut r_in = Array4::<f32>::zeros((n, c, h, w));
    let (xs, rs) = (x.as_slice().expect("standard layout"), r_out.as_slice().expect("standard layout"));
    let pooled = pooled.filter(|p| p.shape() == r_out.shape()).map(|p| p.as_standard_layout());
    let ps = pooled.as_ref().map(|p| p.as_slice().expect("standard layout"));
    let planes = r_in.as_slice_mut().expect("new array");
    // Each window's real (unpadded) positions are a range of kernel rows times a range of kernel
    // columns, computed once per output row and column instead of filtered per position.
    let rows: Vec<_> = (0..oh_n).map(|oh| window.span(oh, 0, h)).collect();
    let cols: Vec<_> = (0..ow_n).map(|ow| window.span(ow, 1, w)).collect();
    let [dh, dw] = window.dilations;
    planes.par_chunks_mut((h * w).max(1)).enumerate().for_each(|(p, dst)| {
        let plane = &xs[p * h * w..(p + 1) * h * w];
        let rel = &rs[p * oh_n * ow_n..(p + 1) * oh_n * ow_n];
        let maxima = ps.map(|ps| &ps[p * oh_n * ow_n..(p + 1) * oh_n * ow_n]).filter(|_| !has_nan(plane));
        for (oh, &(ih0, ki)) in rows.iter().enumerate() {
            for (ow, &(iw0, kj)) in cols.iter().enumerate() {
                let r = rel[oh * ow_n + ow];
                if r == 0.0 || ki == 0 || kj == 0 {
                    continue;
                }
                let found = maxima.and_then(|m| {
                    let m = m[oh * ow_n + ow];
                    (0..ki).find_map(|i| {
                        let row = (ih0 + i * dh) * w + iw0;
                        (0..kj).map(|j| row + j * dw).find(|&at| plane[at] == m)
                    })
                });
                let at = found.unwrap_or_else(|| {
                    // Row-major over the window, the first maximum wins; a number beats NaN.
                    let mut at = ih0 * w + iw0;
                    let mut best = plane[at];
                    for i in 0..ki {
                        let row = (ih0 + i * dh) * w + iw0;
                        for j in 0..kj {
                            let v = plane[row + j * dw];
                            if v > best || (best.is_nan() && !v.is_nan()) {
                                (at, best) = (row + j * dw, v);
                            }
                        }
                    }
                    at
                });
                dst[at] += r;
            }
        }
    });
    r_in.into_dyn()
}

/// Whether `values` hold a NaN (a block at a time, so that it vectorises).
fn has_nan(values: &[f32]) -> bool {
    values.chunks(64).any(|block| block.iter().fold(false, |any, v| any | v.is_nan()))
}

/// Average pooling as a linear map (no parameters); with [`super::Rule::Norm`] it splits each
/// output's relevance over its window in proportion to the inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct AvgPool2d {
    /// The window.
    pub window: Window,
    /// ONNX `count_include_pad`.
    pub count_include_pad: bool,
}

impl LinearMap for AvgPool2d {
    type Params = NoWeights;

    fn forward(&self, x: &ArrayD<f32>, _params: &NoWeights) -> ArrayD<f32> {
        let x4 = as4(x);
        let (n, c, h, w) = x4.dim();
        let [oh_n, ow_n] = self.window.output;
        let mut y = Array4::<f32>::zeros((n, c, oh_n, ow_n));
        for ((b, ch, oh, ow), v) in y.indexed_iter_mut() {
            let sum: f32 = self.window.positions(oh, ow, h, w).map(|(i, j)| x4[[b, ch, i, j]]).sum();
            *v = sum / self.window.count(oh, ow, h, w, self.count_include_pad).max(1) as f32;
        }
        y.into_dyn()
    }

    fn backward(&self, s: &ArrayD<f32>, _params: &NoWeights, input_shape: &[usize]) -> ArrayD<f32> {
        let s4 = as4(s);
        let (h, w) = (input_shape[2], input_shape[3]);
        let mut dx = Array4::<f32>::zeros((input_shape[0], input_shape[1], h, w));
        for ((b, ch, oh, ow), v) in s4.indexed_iter() {
            let share = v / self.window.count(oh, ow, h, w, self.count_include_pad).max(1) as f32;
            for (i, j) in self.window.positions(oh, ow, h, w) {
                dx[[b, ch, i, j]] += share;
            }
        }
        dx.into_dyn()
    }
}

/// Global average pooling over every axis after the first two (`[N, C, …] → [N, C, 1, …]`).
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalAvgPool;

impl LinearMap for GlobalAvgPool {
    type Params = NoWeights;

    fn forward(&self, x: &ArrayD<f32>, _params: &NoWeights) -> ArrayD<f32> {
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let spatial = x.len() / (n * c).max(1);
        let flat = x.as_standard_layout().into_owned().into_shape_with_order((n, c, spatial)).expect("contiguous");
        let mean = flat.mean_axis(Axis(2)).expect("non-empty");
        let mut shape = vec![n, c];
        shape.extend(std::iter::repeat_n(1, x.ndim() - 2));
        mean.into_shape_with_order(shape).expect("shape").into_dyn()
    }

    fn backward(&self, s: &ArrayD<f32>, _params: &NoWeights, input_shape: &[usize]) -> ArrayD<f32> {
        let (n, c) = (input_shape[0], input_shape[1]);
        let spatial: usize = input_shape[2..].iter().product();
        let s2 = s.as_standard_layout().into_owned().into_shape_with_order((n, c)).expect("[N, C, 1, 1]");
        let mut dx = ndarray::Array3::<f32>::zeros((n, c, spatial));
        for ((b, ch), v) in s2.indexed_iter() {
            dx.slice_mut(ndarray::s![b, ch, ..]).fill(v / spatial as f32);
        }
        dx.into_shape_with_order(input_shape.to_vec()).expect("input shape").into_dyn()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::IxDyn;

    use super::super::linear::tests::tensor;
    use super::super::Rule;
    use super::*;

    fn win(k: usize, s: usize, p: usize, out: usize) -> Window {
        Window { kernel: [k, k], strides: [s, s], pads: [p; 4], dilations: [1, 1], output: [out, out] }
    }

    #[test]
    fn max_pool_ties_go_to_the_first_maximum_and_overlaps_accumulate() {
        // 1×1×3×3 input, all equal: 2×2 windows with stride 1 → 4 windows, each winner at its
        // top-left position; pixel (0,0),(0,1),(1,0),(1,1) each win once.
        let x = ArrayD::<f32>::ones(IxDyn(&[1, 1, 3, 3]));
        let r = ArrayD::from_shape_vec(IxDyn(&[1, 1, 2, 2]), vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let out = max_pool_relevance(&win(2, 1, 0, 2), &x, &r, None);
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), vec![1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        // Overlapping 3×3 stride-1 windows on a peak: the peak collects every window's relevance.
        let mut x = ArrayD::<f32>::zeros(IxDyn(&[1, 1, 4, 4]));
        x[[0, 0, 1, 2]] = 5.0;
        let r = ArrayD::<f32>::ones(IxDyn(&[1, 1, 2, 2]));
        let out = max_pool_relevance(&win(3, 1, 0, 2), &x, &r, None);
        assert_eq!(out[[0, 0, 1, 2]], 4.0);
        assert_eq!(out.sum(), 4.0);
    }

    /// The definition: every window's positions filtered one by one, the first maximum wins.
    fn max_pool_relevance_naive(window: &Window, x: &ArrayD<f32>, r: &ArrayD<f32>) -> ArrayD<f32> {
        let (x, r) = (as4(x), as4(r));
        let (n, c, h, w) = x.dim();
        let mut out = Array4::<f32>::zeros((n, c, h, w));
        for ((b, ch, oh, ow), &rv) in r.indexed_iter() {
            let mut best: Option<((usize, usize), f32)> = None;
            for (i, j) in window.positions(oh, ow, h, w) {
                let v = x[[b, ch, i, j]];
                if best.is_none_or(|(_, m)| v > m || (m.is_nan() && !v.is_nan())) {
                    best = Some(((i, j), v));
                }
            }
            if let Some(((i, j), _)) = best {
                out[[b, ch, i, j]] += rv;
            }
        }
        out.into_dyn()
    }

    #[test]
    fn max_pool_routing_matches_the_definition_for_any_geometry() {
        // Strides, pads (uneven, and ceil-mode outputs whose last windows overhang the input),
        // dilations, ties (values rounded to a coarse grid) and NaNs.
        let cases = [
            ([3, 3], [2, 2], [0, 0, 0, 0], [1, 1], [9, 9], [4, 4]),
            ([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], [8, 8], [4, 4]),
            ([2, 3], [1, 2], [0, 1, 1, 0], [1, 1], [5, 7], [5, 4]),
            ([3, 3], [2, 2], [0, 0, 0, 0], [1, 1], [8, 8], [4, 4]),
            ([2, 2], [1, 1], [1, 1, 1, 1], [2, 2], [6, 5], [5, 4]),
            ([3, 2], [3, 3], [2, 0, 2, 1], [2, 1], [7, 7], [3, 3]),
        ];
        for (seed, (kernel, strides, pads, dilations, [h, w], output)) in cases.into_iter().enumerate() {
            let window = Window { kernel, strides, pads, dilations, output };
            let mut x = tensor(&[2, 3, h, w], seed as u64).mapv(|v| (v * 4.0).round());
            x.iter_mut().step_by(11).for_each(|v| *v = f32::NAN);
            let r = tensor(&[2, 3, output[0], output[1]], 100 + seed as u64);
            let fast = max_pool_relevance(&window, &x, &r, None);
            let naive = max_pool_relevance_naive(&window, &x, &r);
            assert_eq!(fast, naive, "case {seed}: {window:?}");
            // With the forward run's output the search stops at the first position holding the
            // maximum: the same winners, with or without NaN in the planes.
            let clean = x.mapv(|v| if v.is_nan() { -3.0 } else { v });
            let pooled = window_reduce(&window, &clean, f32::max);
            let with = max_pool_relevance(&window, &clean, &r, Some(&pooled));
            assert_eq!(with, max_pool_relevance_naive(&window, &clean, &r), "case {seed} (pooled): {window:?}");
            let pooled = window_reduce(&window, &x, f32::max);
            assert_eq!(max_pool_relevance(&window, &x, &r, Some(&pooled)), naive, "case {seed} (NaN, pooled)");
        }
    }

    /// `f` folded over each window's real positions (NaN where a window has none): `f32::max`
    /// gives the forward run's max pooling.
    fn window_reduce(window: &Window, x: &ArrayD<f32>, f: fn(f32, f32) -> f32) -> ArrayD<f32> {
        let x = as4(x);
        let (n, c, h, w) = x.dim();
        let [oh_n, ow_n] = window.output;
        let mut y = Array4::<f32>::from_elem((n, c, oh_n, ow_n), f32::NAN);
        for ((b, ch, oh, ow), v) in y.indexed_iter_mut() {
            *v = window.positions(oh, ow, h, w).map(|(i, j)| x[[b, ch, i, j]]).reduce(f).unwrap_or(f32::NAN);
        }
        y.into_dyn()
    }

    #[test]
    fn a_pooled_value_is_trusted_only_where_it_can_be_checked() {
        // A value the window does not hold (an engine computing in another precision) and, in a
        // plane with NaN, a value the window holds that is not its maximum (an engine whose max
        // does not skip NaN): the winners are those of the comparison search.
        let window = Window { kernel: [3, 3], strides: [2, 2], pads: [1; 4], dilations: [1, 1], output: [4, 4] };
        let x = tensor(&[2, 3, 8, 8], 7).mapv(|v| (v * 4.0).round());
        let r = tensor(&[2, 3, 4, 4], 8);
        let naive = max_pool_relevance_naive(&window, &x, &r);
        let absent = window_reduce(&window, &x, f32::max).mapv(|v| v + 0.5);
        assert_eq!(max_pool_relevance(&window, &x, &r, Some(&absent)), naive);
        let mut x = x;
        x.iter_mut().step_by(13).for_each(|v| *v = f32::NAN);
        let naive = max_pool_relevance_naive(&window, &x, &r);
        let minima = window_reduce(&window, &x, f32::min);
        assert_eq!(max_pool_relevance(&window, &x, &r, Some(&minima)), naive);
    }

    #[test]
    fn padded_positions_never_win() {
        let x = ArrayD::from_elem(IxDyn(&[1, 1, 2, 2]), -1.0f32);
        let r = ArrayD::<f32>::ones(IxDyn(&[1, 1, 2, 2]));
        let out = max_pool_relevance(&win(2, 1, 1, 2), &x, &r, None);
        // Window (0,0) covers padding and pixel (0,0) only: the negative pixel still wins.
        assert_eq!(out.sum(), 4.0);
        assert_eq!(out[[0, 0, 0, 0]], 4.0, "every window's first real maximum is pixel (0,0)");
    }

    #[test]
    fn average_pool_backward_is_its_transpose_and_norm_conserves() {
        for (k, s, p, inc) in [(2, 2, 0, false), (3, 2, 1, false), (3, 2, 1, true), (3, 1, 1, true)] {
            let x = tensor(&[2, 3, 7, 7], 5).mapv(f32::abs);
            let out = (7 + 2 * p - k) / s + 1;
            let map = AvgPool2d { window: win(k, s, p, out), count_include_pad: inc };
            let y = map.forward(&x, &NoWeights);
            let sv = tensor(y.shape(), 6);
            let lhs = (&y * &sv).sum();
            let rhs = (&x * &map.backward(&sv, &NoWeights, x.shape())).sum();
            assert!((lhs - rhs).abs() < 1e-4 * lhs.abs().max(1.0));
            let r = y.clone();
            let r_in = Rule::Norm { stabilizer: 1e-12 }.propagate(&map, &x, &NoWeights, &r);
            assert!((r_in.sum() - r.sum()).abs() < 1e-3 * r.sum(), "Norm conserves ({k},{s},{p},{inc})");
        }
        let x = tensor(&[2, 3, 4, 5], 9);
        let y = GlobalAvgPool.forward(&x, &NoWeights);
        assert_eq!(y.shape(), &[2, 3, 1, 1]);
        assert!((y[[1, 2, 0, 0]] - x.slice(ndarray::s![1, 2, .., ..]).mean().unwrap()).abs() < 1e-6);
    }

    #[test]
    fn count_include_pad_counts_explicit_padding_only() {
        let w = win(3, 2, 1, 2);
        // Window (0,0) of a 3×3 input with pad 1: 2×2 real pixels, 3×3 with padding.
        assert_eq!(w.count(0, 0, 3, 3, false), 4);
        assert_eq!(w.count(0, 0, 3, 3, true), 9);
    }
}
