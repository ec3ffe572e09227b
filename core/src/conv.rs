//! The sliding window of a 2-D convolution and its column transforms (im2col and its transpose,
//! col2im), shared by relevance propagation (`relevance::Conv2d`) and the retraining translator's
//! convolution op (`retrain::conv`): one definition of which input cell each kernel tap of each
//! output reads.

use ndarray::{ArrayView2, ArrayView3, ArrayViewMut2, Axis};

/// The geometry of a 2-D window: kernel, strides, dilations and zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[stride_h, stride_w]`.
    pub strides: [usize; 2],
    /// `[dilation_h, dilation_w]`.
    pub dilations: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
}

/// `dst += src` (equal lengths), four values per step: col2im's runs are short (7 to 31 values),
/// too short for the compiler's own vector loop, which then runs them one value at a time.
#[inline]
pub fn add_into(dst: &mut [f32], src: &[f32]) {
    // 1 · v is v exactly: the same bits as an addition.
    axpy_into(dst, 1.0, src);
}

/// `dst += a · src` (equal lengths), four values per step: col2im's and a depthwise convolution's
/// rows are short (7 values at 7 × 7), too short for the compiler's own vector loop.
#[inline]
pub fn axpy_into(dst: &mut [f32], a: f32, src: &[f32]) {
    debug_assert_eq!(dst.len(), src.len(), "axpy_into: lengths differ");
    let whole = src.len() / 4 * 4;
    let (dst4, dst_rest) = dst.split_at_mut(whole);
    let (src4, src_rest) = src.split_at(whole);
    for (d, s) in dst4.chunks_exact_mut(4).zip(src4.chunks_exact(4)) {
        let (p, q): ([f32; 4], [f32; 4]) = (d.try_into().expect("four"), s.try_into().expect("four"));
        d.copy_from_slice(&[p[0] + a * q[0], p[1] + a * q[1], p[2] + a * q[2], p[3] + a * q[3]]);
    }
    for (d, s) in dst_rest.iter_mut().zip(src_rest) {
        *d += a * s;
    }
}

impl Window {
    /// Output height and width for an input of height and width `hw`.
    pub fn output_hw(&self, hw: [usize; 2]) -> [usize; 2] {
        let hp = hw[0] + self.pads[0] + self.pads[2];
        let wp = hw[1] + self.pads[1] + self.pads[3];
        let eh = self.dilations[0] * (self.kernel[0] - 1) + 1;
        let ew = self.dilations[1] * (self.kernel[1] - 1) + 1;
        [(hp.saturating_sub(eh)) / self.strides[0] + 1, (wp.saturating_sub(ew)) / self.strides[1] + 1]
    }

    /// For kernel index `k` along `axis` (0 rows, 1 columns): the outputs `lo..hi` whose input
    /// lies inside the image, `len` long (the others read padding), among `out` outputs, and the
    /// input index of output `lo`.
    pub fn valid_outputs(&self, axis: usize, k: usize, len: usize, out: usize) -> (usize, usize, usize) {
        let (stride, offset) = (self.strides[axis], k * self.dilations[axis]);
        let pad = self.pads[axis];
        // i = o·stride + offset − pad must satisfy 0 ≤ i < len.
        let lo = if offset >= pad { 0 } else { (pad - offset).div_ceil(stride) };
        let hi = if len + pad > offset { ((len + pad - offset - 1) / stride + 1).min(out) } else { 0 };
        let lo = lo.min(hi);
        (lo, hi, (lo * stride + offset).saturating_sub(pad))
    }

    /// im2col of the planes `x` (`[cg, h, w]`, rows contiguous: one image's group) into `cols`
    /// (`[cg·kh·kw, ho·wo]`, each row contiguous, any row stride): every cell is written, zero
    /// where the window reads padding.
    pub fn im2col(&self, x: ArrayView3<'_, f32>, out: [usize; 2], mut cols: ArrayViewMut2<'_, f32>) {
        let cg = x.shape()[0];
        let [kh, kw] = self.kernel;
        let (h, w) = (x.shape()[1], x.shape()[2]);
        let [ho, wo] = out;
        for c in 0..cg {
            let plane = x.index_axis(Axis(0), c);
            for i in 0..kh {
                for j in 0..kw {
                    let mut dst = cols.row_mut((c * kh + i) * kw + j);
                    let dst = dst.as_slice_mut().expect("column rows are contiguous");
                    let (lo, hi, iw0) = self.valid_outputs(1, j, w, wo);
                    for oh in 0..ho {
                        let row = &mut dst[oh * wo..(oh + 1) * wo];
                        let ih = (oh * self.strides[0] + i * self.dilations[0]) as isize - self.pads[0] as isize;
                        if ih < 0 || ih >= h as isize || lo == hi {
                            row.fill(0.0);
                            continue;
                        }
                        let src = plane.row(ih as usize);
                        let src = src.as_slice().expect("standard-layout input");
                        row[..lo].fill(0.0);
                        row[hi..].fill(0.0);
                        if self.strides[1] == 1 {
                            row[lo..hi].copy_from_slice(&src[iw0..iw0 + (hi - lo)]);
                        } else {
                            for (d, v) in row[lo..hi].iter_mut().zip(src[iw0..].iter().step_by(self.strides[1])) {
                                *d = *v;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds columns back into one image's group (the transpose of [`Self::im2col`]); `dx` holds
    /// the group's planes of the image's gradient (`[cg, h, w]`, contiguous, `cg` = the columns'
    /// rows / kernel cells).
    ///
    /// With a column stride the positions one column row reaches are `sw` apart: they are added
    /// into a phase-major copy of each channel's plane (`[sh·sw phases, ⌈h/sh⌉, ⌈w/sw⌉]`, where
    /// those positions are consecutive and the additions run on whole vectors), folded into the
    /// plane once at the end.
    pub fn col2im(&self, cols: ArrayView2<'_, f32>, dx: &mut [f32], hw: [usize; 2], out: [usize; 2]) {
        let [kh, kw] = self.kernel;
        let cg = cols.shape()[0] / (kh * kw).max(1);
        let [h, w] = hw;
        let [ho, wo] = out;
        let (sh, sw) = (self.strides[0], self.strides[1]);
        // The valid outputs of each kernel row and column are the same for every channel.
        let rows: Vec<_> = (0..kh).map(|i| self.valid_outputs(0, i, h, ho)).collect();
        let columns: Vec<_> = (0..kw).map(|j| self.valid_outputs(1, j, w, wo)).collect();
        let (hq, wq) = (h.div_ceil(sh), w.div_ceil(sw));
        let mut phases = if sw > 1 { vec![0.0f32; sh * sw * hq * wq] } else { Vec::new() };
        for c in 0..cg {
            let plane = &mut dx[c * h * w..(c + 1) * h * w];
            phases.fill(0.0);
            for (i, &(oh_lo, oh_hi, ih0)) in rows.iter().enumerate() {
                for (j, &(lo, hi, iw0)) in columns.iter().enumerate() {
                    if lo == hi {
                        continue;
                    }
                    let src = cols.row((c * kh + i) * kw + j);
                    let src = src.as_slice().expect("column rows are contiguous");
                    for oh in oh_lo..oh_hi {
                        let ih = ih0 + (oh - oh_lo) * sh;
                        let row = &src[oh * wo + lo..oh * wo + hi];
                        let dst = if sw == 1 {
                            &mut plane[ih * w + iw0..ih * w + iw0 + row.len()]
                        } else {
                            let at = (((ih % sh) * sw + iw0 % sw) * hq + ih / sh) * wq + iw0 / sw;
                            &mut phases[at..at + row.len()]
                        };
                        add_into(dst, row);
                    }
                }
            }
            if sw > 1 {
                for (ih, line) in plane.chunks_mut(w).enumerate() {
                    for (px, phase) in phases[(ih % sh) * sw * hq * wq..].chunks(hq * wq).take(sw).enumerate() {
                        let phase = &phase[(ih / sh) * wq..(ih / sh + 1) * wq];
                        for (d, v) in line[px..].iter_mut().step_by(sw).zip(phase) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_into_adds_every_value_of_any_length() {
        for len in 0..14 {
            let src: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 1.0).collect();
            let mut dst: Vec<f32> = (0..len).map(|i| (i * i) as f32).collect();
            let expected: Vec<f32> = dst.iter().zip(&src).map(|(d, s)| d + s).collect();
            add_into(&mut dst, &src);
            assert_eq!(dst, expected, "length {len}");
        }
    }

    #[test]
    fn axpy_into_adds_every_scaled_value_of_any_length() {
        for len in 0..14 {
            let src: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 1.0).collect();
            let mut dst: Vec<f32> = (0..len).map(|i| (i * i) as f32).collect();
            let expected: Vec<f32> = dst.iter().zip(&src).map(|(d, s)| d + -1.5 * s).collect();
            axpy_into(&mut dst, -1.5, &src);
            assert_eq!(dst, expected, "length {len}");
        }
    }

    #[test]
    fn col2im_is_the_transpose_of_im2col() {
        // ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩ for every geometry (strides, dilations, asymmetric pads).
        let windows = [
            Window { kernel: [3, 3], strides: [1, 1], dilations: [1, 1], pads: [1, 1, 1, 1] },
            Window { kernel: [3, 2], strides: [2, 3], dilations: [1, 2], pads: [0, 1, 2, 0] },
            Window { kernel: [1, 1], strides: [2, 2], dilations: [1, 1], pads: [0, 0, 0, 0] },
            Window { kernel: [5, 5], strides: [1, 2], dilations: [2, 1], pads: [2, 2, 2, 2] },
        ];
        for w in windows {
            let (cg, hw) = (2, [7, 9]);
            let out = w.output_hw(hw);
            let k = cg * w.kernel[0] * w.kernel[1];
            let p = out[0] * out[1];
            let x = ndarray::Array3::from_shape_fn((cg, hw[0], hw[1]), |(c, i, j)| {
                ((c * 31 + i * 7 + j) % 11) as f32 - 5.0
            });
            let c = ndarray::Array2::from_shape_fn((k, p), |(r, q)| ((r * 13 + q * 3) % 7) as f32 - 3.0);
            let mut cols = ndarray::Array2::<f32>::from_elem((k, p), f32::NAN);
            w.im2col(x.view(), out, cols.view_mut());
            let mut back = vec![0.0f32; cg * hw[0] * hw[1]];
            w.col2im(c.view(), &mut back, hw, out);
            let lhs: f64 = cols.iter().zip(c.iter()).map(|(a, b)| f64::from(a * b)).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| f64::from(a * b)).sum();
            assert!(cols.iter().all(|v| v.is_finite()), "{w:?}: every column cell written");
            assert!((lhs - rhs).abs() < 1e-6 * lhs.abs().max(1.0), "{w:?}: {lhs} vs {rhs}");
        }
    }
}
