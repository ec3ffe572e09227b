//! `Resize` / `Upsample` in linear mode (bilinear on images): each output cell is a weighted sum of
//! the two input cells beside its coordinate, axis by axis. Along one axis that is a constant
//! matrix `A` (`[out, len]`, non-negative, each row summing to 1), so the op is a linear map with
//! no parameters: relevance propagates through it with the ε rule on that map (as through average
//! pooling), and the retraining translator multiplies by the matrices.

use ndarray::{Array2, ArrayD, ArrayView2};
use serde::Serialize;

use super::graph::Graph;
use super::ints::Recipe;
use super::select::{output_size, Coordinate, Operand};

/// `Resize` (`Upsample`) with `mode = "linear"` and constant scales or sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Interpolation {
    /// How an output coordinate maps to the input (`coordinate_transformation_mode`).
    pub coordinate: Coordinate,
    /// Per axis: the scale (from the constant `scales` input) …
    pub scales: Option<Vec<f32>>,
    /// … or the output size (from the constant `sizes` input) …
    pub sizes: Option<Vec<usize>>,
    /// … or the integer tensor that computes the sizes from shapes (see [`Self::sized`]).
    pub computed_sizes: Option<String>,
}

impl Interpolation {
    /// What a stage evaluates for each batch: the recipe of the sizes the graph computes, if any.
    pub fn sizes_operand(&self, graph: &Graph) -> Result<Operand, String> {
        Ok(match &self.computed_sizes {
            Some(name) => Operand::Computed(Recipe::new(graph, name)?),
            None => Operand::None,
        })
    }

    /// The interpolation with its sizes given (`sizes`, evaluated for the batch at hand, when the
    /// graph computes them; ignored otherwise).
    pub fn sized(&self, sizes: Option<&ArrayD<i64>>) -> Result<Interpolation, String> {
        let (Some(name), Some(sizes)) = (&self.computed_sizes, sizes) else {
            return match &self.computed_sizes {
                Some(name) => Err(format!("Resize: the sizes `{name}` were not evaluated")),
                None => Ok(self.clone()),
            };
        };
        let sizes = sizes
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("Resize: the sizes `{name}` hold {d}")))
            .collect::<Result<Vec<usize>, String>>()?;
        Ok(Interpolation { sizes: Some(sizes), computed_sizes: None, ..self.clone() })
    }

    /// For an input of `shape`: the axes the op resizes, each with its matrix (the sizes constant
    /// or given by [`Self::sized`]).
    pub fn matrices(&self, shape: &[usize]) -> Result<Matrices, String> {
        let mut out = Vec::new();
        for (axis, &len) in shape.iter().enumerate() {
            let (size, scale) = output_size(axis, len, shape.len(), self.scales.as_deref(), self.sizes.as_deref())?;
            if size == len && scale == 1.0 {
                continue;
            }
            if len == 0 || size > MAX_SIDE {
                return Err(format!("Resize: axis {axis} from {len} to {size} cells"));
            }
            let mut a = Array2::<f32>::zeros((size, len));
            for o in 0..size {
                // Outside the input the edge cell is repeated (ONNX's reference pads with the edge).
                let x = self.coordinate.map(o, len, size, scale).clamp(0.0, (len - 1) as f64);
                let low = x.floor() as usize;
                let high = (low + 1).min(len - 1);
                let frac = (x - low as f64) as f32;
                a[[o, low]] += 1.0 - frac;
                a[[o, high]] += frac;
            }
            out.push((axis, a));
        }
        Ok(Matrices(out))
    }
}

/// The longest side a resized axis may have (a corrupt scale would otherwise ask for terabytes).
const MAX_SIDE: usize = 1 << 20;

/// An [`Interpolation`]'s matrices for one input shape: per resized axis, `[out, len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrices(pub Vec<(usize, Array2<f32>)>);

impl Matrices {
    /// The op on `x` (shaped as the matrices were made for).
    pub fn apply(&self, x: &ArrayD<f32>) -> ArrayD<f32> {
        let mut y = x.clone();
        for (axis, a) in &self.0 {
            y = along(&y, *axis, a.view());
        }
        y
    }

    /// The transpose: `s`, shaped as the output, back to the input's shape.
    pub fn apply_transposed(&self, s: &ArrayD<f32>) -> ArrayD<f32> {
        let mut r = s.clone();
        for (axis, a) in self.0.iter().rev() {
            r = along(&r, *axis, a.t());
        }
        r
    }
}

/// `a` applied along `axis` of `x`: `y[…, o, …] = Σ_i a[o, i] · x[…, i, …]`.
fn along(x: &ArrayD<f32>, axis: usize, a: ArrayView2<'_, f32>) -> ArrayD<f32> {
    // Move the axis last, multiply the rows by aᵀ, move it back.
    let last = x.ndim() - 1;
    let mut moved = x.view();
    moved.swap_axes(axis, last);
    let moved = moved.as_standard_layout();
    let len = x.shape()[axis];
    let rows = moved.len() / len.max(1);
    let flat = moved.view().into_shape_with_order((rows, len)).expect("standard layout");
    let product = flat.dot(&a.t());
    let mut shape = moved.shape().to_vec();
    shape[last] = a.shape()[0];
    let mut y = product.into_shape_with_order(ndarray::IxDyn(&shape)).expect("rows × out").into_dyn();
    y.swap_axes(axis, last);
    y.as_standard_layout().into_owned()
}

#[cfg(test)]
mod tests {
    use ndarray::{Axis, IxDyn};

    use super::*;

    fn f32s(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
    }

    fn close(a: &ArrayD<f32>, b: &ArrayD<f32>) -> bool {
        a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn linear_resize_follows_the_onnx_examples() {
        let data = f32s(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        let up = |coordinate| Interpolation {
            coordinate,
            scales: Some(vec![1.0, 1.0, 2.0, 2.0]),
            sizes: None,
            computed_sizes: None,
        };
        let want = [1., 1.25, 1.75, 2., 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3., 3.25, 3.75, 4.];
        assert!(close(
            &up(Coordinate::HalfPixel).matrices(data.shape()).unwrap().apply(&data),
            &f32s(&[1, 1, 4, 4], &want)
        ));
        let third = 1.0 / 3.0;
        let want: Vec<f32> =
            (0..4).flat_map(|i| (0..4).map(move |j| 1.0 + (2.0 * i as f32 + j as f32) * third)).collect();
        assert!(close(
            &up(Coordinate::AlignCorners).matrices(data.shape()).unwrap().apply(&data),
            &f32s(&[1, 1, 4, 4], &want)
        ));
        let down = Interpolation {
            coordinate: Coordinate::HalfPixel,
            scales: Some(vec![1.0, 1.0, 0.6, 0.6]),
            sizes: None,
            computed_sizes: None,
        };
        let data = f32s(&[1, 1, 2, 4], &[1., 2., 3., 4., 5., 6., 7., 8.]);
        assert!(close(
            &down.matrices(data.shape()).unwrap().apply(&data),
            &f32s(&[1, 1, 1, 2], &[2.666_666_5, 4.333_333])
        ));
        // Sizes instead of scales; the batch and channel axes untouched.
        let sized = Interpolation {
            coordinate: Coordinate::PytorchHalfPixel,
            scales: None,
            sizes: Some(vec![1, 1, 1, 3]),
            computed_sizes: None,
        };
        let x = f32s(&[1, 1, 1, 2], &[0., 4.]);
        let got = sized.matrices(x.shape()).unwrap().apply(&x);
        assert!(close(&got, &f32s(&[1, 1, 1, 3], &[0., 2., 4.])), "{got}");
    }

    #[test]
    fn computed_sizes_are_taken_for_the_batch_at_hand() {
        let op = Interpolation {
            coordinate: Coordinate::AlignCorners,
            scales: None,
            sizes: None,
            computed_sizes: Some("sizes".into()),
        };
        assert!(op.sized(None).is_err(), "not evaluated");
        let sizes = ArrayD::from_shape_vec(IxDyn(&[4]), vec![3i64, 1, 1, 3]).unwrap();
        let x = f32s(&[3, 1, 1, 2], &[0., 4., 1., 1., 2., 0.]);
        let got = op.sized(Some(&sizes)).unwrap().matrices(x.shape()).unwrap().apply(&x);
        assert!(close(&got, &f32s(&[3, 1, 1, 3], &[0., 2., 4., 1., 1., 1., 2., 1., 0.])), "{got}");
        let negative = ArrayD::from_shape_vec(IxDyn(&[4]), vec![3i64, 1, 1, -3]).unwrap();
        assert!(op.sized(Some(&negative)).is_err());
    }

    #[test]
    fn a_scale_past_any_image_is_refused() {
        let op = Interpolation {
            coordinate: Coordinate::HalfPixel,
            scales: Some(vec![1.0, 1.0, 1e9, 1.0]),
            sizes: None,
            computed_sizes: None,
        };
        assert!(op.matrices(&[1, 1, 4, 4]).is_err());
        let op = Interpolation {
            coordinate: Coordinate::HalfPixel,
            scales: Some(vec![1.0, 2.0]),
            sizes: None,
            computed_sizes: None,
        };
        assert!(op.matrices(&[1, 1, 4, 4]).is_err(), "two scales for four axes");
    }

    #[test]
    fn rows_sum_to_one_and_the_transpose_is_the_adjoint() {
        let shape = [2, 3, 5, 7];
        for coordinate in
            [Coordinate::HalfPixel, Coordinate::PytorchHalfPixel, Coordinate::Asymmetric, Coordinate::AlignCorners]
        {
            for scales in [vec![1.0, 1.0, 2.0, 1.5], vec![1.0, 1.0, 0.5, 0.75]] {
                let op = Interpolation { coordinate, scales: Some(scales.clone()), sizes: None, computed_sizes: None };
                let m = op.matrices(&shape).unwrap();
                for (_, a) in &m.0 {
                    assert!(a.iter().all(|&w| w >= 0.0));
                    assert!(a.sum_axis(Axis(1)).iter().all(|s| (s - 1.0).abs() < 1e-6), "{coordinate:?} {scales:?}");
                }
                let x = ArrayD::from_shape_fn(IxDyn(&shape), |i| (i[0] + 2 * i[1] + 3 * i[2] + 5 * i[3]) as f32 * 0.1);
                let y = m.apply(&x);
                let s = y.mapv(|v| (v * 7.0).sin());
                let lhs = (&y * &s).sum();
                let rhs = (&x * &m.apply_transposed(&s)).sum();
                assert!((lhs - rhs).abs() <= 1e-3 * lhs.abs().max(1.0), "{coordinate:?} {scales:?}: {lhs} vs {rhs}");
            }
        }
    }
}
