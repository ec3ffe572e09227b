//! A 2-D map of a layer's clustered images: classical (Torgerson) multidimensional scaling of
//! the layer's heatmap distances.
//!
//! With `S` the squared distances and `J = I − 11ᵀ/N` the centring matrix, `B = −½·J·S·J` is the
//! Gram matrix of the centred heatmaps (the distances are Euclidean, so `B` is positive
//! semi-definite). The map's axes are `B`'s two leading eigenvectors scaled by the square roots of
//! their eigenvalues: the projection of the heatmaps onto their two principal axes, so that the
//! map's distances are the heatmap distances as far as two dimensions can show them.
//!
//! `B` is never formed: subspace iteration multiplies by it through `S` row by row (`O(N²)` per
//! iteration, `O(N)` memory beyond the distances). The start vectors are fixed and each axis'
//! sign is fixed (its largest coordinate positive), so the map is deterministic.

use ndarray::Array2;
use rayon::prelude::*;

/// How the map is made, as the report names it.
pub const METHOD: &str = "classical MDS (Torgerson) of the layer's heatmap distances";

/// Most subspace iterations.
const MAX_ITERATIONS: usize = 300;
/// Convergence: largest change of a unit-length axis between iterations.
const TOLERANCE: f64 = 1e-9;

/// A 2-D map.
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    /// `[x, y]` per image, in the distances' order.
    pub points: Vec<[f64; 2]>,
    /// Share of the total variance (`trace B`) the two axes show, 0–1.
    pub explained: f64,
}

/// Classical MDS of `d` (`N × N`, symmetric, zero diagonal, Euclidean) into two dimensions.
pub fn classical_mds(d: &Array2<f64>) -> Map {
    let n = d.nrows();
    if n == 0 {
        return Map { points: Vec::new(), explained: 0.0 };
    }
    // trace B = (1 / 2N) · Σ_ij d_ij².
    let total: f64 = d.iter().map(|v| v * v).sum::<f64>() / (2.0 * n as f64);
    if n < 2 || total <= 0.0 || !total.is_finite() {
        return Map { points: vec![[0.0, 0.0]; n], explained: 0.0 };
    }
    // Fixed, non-degenerate start vectors.
    let mut v: [Vec<f64>; 2] = [
        (0..n).map(|i| ((i as f64 + 1.0) * 0.618_033_988_749_895).fract() - 0.5).collect(),
        (0..n).map(|i| ((i as f64 + 1.0) * 0.414_213_562_373_095).fract() - 0.5).collect(),
    ];
    orthonormalize(&mut v);
    // Subspace iteration: the plane of the two axes converges at the rate λ₃/λ₂ whatever λ₁/λ₂
    // is, so convergence is judged on the plane (how much of the new basis lies outside the old).
    for _ in 0..MAX_ITERATIONS {
        let mut w = gram_times(d, &v);
        orthonormalize(&mut w);
        let outside = (0..2)
            .map(|a| {
                let (p0, p1) = (dot(&v[0], &w[a]), dot(&v[1], &w[a]));
                (0..n).map(|i| (w[a][i] - p0 * v[0][i] - p1 * v[1][i]).abs()).fold(0.0f64, f64::max)
            })
            .fold(0.0f64, f64::max);
        v = w;
        if outside < TOLERANCE {
            break;
        }
    }
    // Rayleigh–Ritz in the plane: the axes are the eigenvectors of the 2 × 2 matrix Vᵀ·B·V.
    let w = gram_times(d, &v);
    let (h00, h01, h11) = (dot(&v[0], &w[0]), dot(&v[0], &w[1]), dot(&v[1], &w[1]));
    let theta = 0.5 * (2.0 * h01).atan2(h00 - h11);
    let (c, s) = (theta.cos(), theta.sin());
    let mut v = [
        (0..n).map(|i| c * v[0][i] + s * v[1][i]).collect::<Vec<f64>>(),
        (0..n).map(|i| -s * v[0][i] + c * v[1][i]).collect::<Vec<f64>>(),
    ];
    let lambda = [c * c * h00 + 2.0 * s * c * h01 + s * s * h11, s * s * h00 - 2.0 * s * c * h01 + c * c * h11];
    // The larger eigenvalue first (the rotation puts it first; kept for rounding).
    let mut lambda = lambda;
    if lambda[1] > lambda[0] {
        v.swap(0, 1);
        lambda.swap(0, 1);
    }
    fix_signs(&mut v);
    // An eigenvalue at the level of rounding noise is zero (points on a line have no second axis).
    let noise = 1e-12 * total;
    let lambda = lambda.map(|l| if l > noise { l } else { 0.0 });
    let scale = lambda.map(f64::sqrt);
    let points = (0..n).map(|i| [v[0][i] * scale[0], v[1][i] * scale[1]]).collect();
    Map { points, explained: ((lambda[0] + lambda[1]) / total).clamp(0.0, 1.0) }
}

/// `B·v` for both vectors: `−½·J·S·J·v`, one pass over the rows of `d`.
fn gram_times(d: &Array2<f64>, v: &[Vec<f64>; 2]) -> [Vec<f64>; 2] {
    let centred = v.clone().map(centre);
    let rows: Vec<[f64; 2]> = (0..d.nrows())
        .into_par_iter()
        .map(|i| {
            let row = d.row(i);
            let mut s = [0.0f64; 2];
            for (j, &x) in row.iter().enumerate() {
                let sq = x * x;
                s[0] += sq * centred[0][j];
                s[1] += sq * centred[1][j];
            }
            s
        })
        .collect();
    let [a, b]: [Vec<f64>; 2] = [0, 1].map(|k| rows.iter().map(|r| -0.5 * r[k]).collect::<Vec<f64>>());
    [centre(a), centre(b)]
}

fn centre(mut v: Vec<f64>) -> Vec<f64> {
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    v.iter_mut().for_each(|x| *x -= mean);
    v
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Gram–Schmidt (twice, for orthogonality in floating point); a vector that vanishes, or whose
/// part orthogonal to the first is at the level of rounding noise, is replaced by a fixed one.
fn orthonormalize(v: &mut [Vec<f64>; 2]) {
    let n = v[0].len();
    let norm = |x: &[f64]| dot(x, x).sqrt();
    let scale = |x: &mut Vec<f64>, by: f64| x.iter_mut().for_each(|e| *e /= by);
    let first = norm(&v[0]);
    if first > 0.0 && first.is_finite() {
        scale(&mut v[0], first);
    } else {
        v[0] = centre((0..n).map(|i| i as f64).collect());
        let f = norm(&v[0]).max(f64::MIN_POSITIVE);
        scale(&mut v[0], f);
    }
    let project_out = |v: &mut [Vec<f64>; 2]| {
        for _ in 0..2 {
            let p = dot(&v[0], &v[1]);
            let (a, b) = v.split_at_mut(1);
            b[0].iter_mut().zip(&a[0]).for_each(|(y, x)| *y -= p * x);
        }
    };
    let before = norm(&v[1]);
    project_out(v);
    let after = norm(&v[1]);
    if !(after.is_finite() && after > 1e-9 * before && after > 0.0) {
        v[1] = centre((0..n).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect());
        project_out(v);
    }
    let second = norm(&v[1]).max(f64::MIN_POSITIVE);
    scale(&mut v[1], second);
}

/// Each axis' coordinate of largest magnitude positive (the first on ties).
fn fix_signs(v: &mut [Vec<f64>; 2]) {
    for axis in v.iter_mut() {
        let largest = axis.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
        if largest < 0.0 {
            axis.iter_mut().for_each(|x| *x = -*x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distances(points: &[Vec<f64>]) -> Array2<f64> {
        let n = points.len();
        Array2::from_shape_fn((n, n), |(i, j)| {
            points[i].iter().zip(&points[j]).map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt()
        })
    }

    fn map_distances(m: &Map) -> Array2<f64> {
        distances(&m.points.iter().map(|p| p.to_vec()).collect::<Vec<_>>())
    }

    #[test]
    fn points_in_a_plane_are_recovered_up_to_rotation() {
        let v = crate::relevance::linear::tests::values(2 * 40, 3);
        let points: Vec<Vec<f64>> =
            (0..40).map(|i| vec![f64::from(v[2 * i]) * 10.0, f64::from(v[2 * i + 1]) * 3.0]).collect();
        let d = distances(&points);
        let m = classical_mds(&d);
        let back = map_distances(&m);
        for (a, b) in back.iter().zip(d.iter()) {
            assert!((a - b).abs() < 1e-8 * d.iter().fold(1.0f64, |x, &y| x.max(y)), "{a} vs {b}");
        }
        assert!((m.explained - 1.0).abs() < 1e-9, "two dimensions show everything: {}", m.explained);
    }

    #[test]
    fn the_map_is_the_projection_on_the_two_principal_axes() {
        // A symmetric 3-D grid: its principal axes are x (spread 4), y (spread 2), z (spread 0.5).
        let mut points = Vec::new();
        for x in [-4.0, -2.0, 0.0, 2.0, 4.0] {
            for y in [-2.0, 0.0, 2.0] {
                for z in [-0.5, 0.5] {
                    points.push(vec![x, y, z]);
                }
            }
        }
        let d = distances(&points);
        let m = classical_mds(&d);
        let plane: Vec<Vec<f64>> = points.iter().map(|p| vec![p[0], p[1]]).collect();
        let want = distances(&plane);
        for (a, b) in map_distances(&m).iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        }
        // The x axis first: its spread is the larger.
        let xs: Vec<f64> = m.points.iter().map(|p| p[0].abs()).collect();
        assert!((xs.iter().fold(0.0f64, |a, &b| a.max(b)) - 4.0).abs() < 1e-7);
        // Variance shares: x 8, y 8/3, z 0.25 (per point) → (8 + 8/3) / (8 + 8/3 + 0.25).
        let share = (8.0 + 8.0 / 3.0) / (8.0 + 8.0 / 3.0 + 0.25);
        assert!((m.explained - share).abs() < 1e-9, "{} vs {share}", m.explained);
    }

    #[test]
    fn degenerate_inputs_give_a_map_not_a_panic() {
        assert!(classical_mds(&Array2::zeros((0, 0))).points.is_empty());
        assert_eq!(classical_mds(&Array2::zeros((1, 1))).points, vec![[0.0, 0.0]]);
        // Identical images: every point at the origin.
        assert!(classical_mds(&Array2::zeros((5, 5))).points.iter().all(|p| p == &[0.0, 0.0]));
        // Points on a line: the second axis is zero.
        let d = distances(&(0..6).map(|i| vec![f64::from(i)]).collect::<Vec<_>>());
        let m = classical_mds(&d);
        assert!(m.points.iter().all(|p| p[1].abs() < 1e-9), "{:?}", m);
        assert!((m.explained - 1.0).abs() < 1e-9);
    }

    #[test]
    fn the_map_is_deterministic() {
        let v = crate::relevance::linear::tests::values(3 * 30, 9);
        let points: Vec<Vec<f64>> = (0..30).map(|i| (0..3).map(|k| f64::from(v[3 * i + k])).collect()).collect();
        let d = distances(&points);
        assert_eq!(classical_mds(&d), classical_mds(&d));
    }
}
