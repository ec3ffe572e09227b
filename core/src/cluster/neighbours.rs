//! Nearest neighbours of feature rows without the `N × N` distance matrix, for the feature-space
//! path (UMAP's graph): what lets it cluster far more images than HUDD's exact path.
//!
//! - [`knn`]: each row's `k` nearest rows, exact. Candidates come from a blocked float32 matrix
//!   product (`‖a‖² + ‖b‖² − 2·a·b` on centred rows, a bounded heap per row, a few spare
//!   candidates); the distances of the kept candidates are then recomputed in float64 from the
//!   rows, so that the values (and, but for float32 near-ties, the order) are the exact ones.
//!   Memory: the rows and one block of `64 × N` products per thread.
//! - [`pca`]: the rows' leading principal components (randomised subspace iteration, Halko,
//!   Martinsson & Tropp 2011, with seeded start vectors), which the path uses before the
//!   neighbours when rows are many and wide (see [`super::feature`]): the cost of exact neighbours
//!   is `N² × width`.

use std::collections::BinaryHeap;

use ndarray::{s, Array1, Array2, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::umap::Knn;
use crate::rng::Rng;

/// Rows per product block.
const BLOCK: usize = 64;
/// Extra candidates kept from the float32 products, re-ranked in float64.
const SPARE: usize = 4;

/// The distance between feature rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Metric {
    /// `‖a − b‖`.
    #[default]
    Euclidean,
    /// `1 − cos(a, b)`: the direction only. A zero row has no direction; it sits at the centre
    /// of the unit sphere, at distance ½ from every other row.
    Cosine,
}

impl Metric {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The rows the metric compares with Euclidean distances: unit rows for cosine (then
/// `1 − cos = ‖a − b‖² / 2`), centred (distances do not change, cancellation does).
fn prepared(x: ArrayView2<'_, f32>, metric: Metric) -> Array2<f32> {
    let mut z = x.as_standard_layout().into_owned();
    let width = z.ncols().max(1);
    let Some(values) = z.as_slice_mut() else { unreachable!("standard layout") };
    if metric == Metric::Cosine {
        values.par_chunks_mut(width).for_each(|r| {
            let norm = r.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
            if norm > 0.0 {
                r.iter_mut().for_each(|v| *v = (f64::from(*v) / norm) as f32);
            }
        });
    }
    let mean = column_means(z.view());
    if let Some(values) = z.as_slice_mut() {
        values.par_chunks_mut(width).for_each(|r| {
            for (v, m) in r.iter_mut().zip(&mean) {
                *v = (f64::from(*v) - m) as f32;
            }
        });
    }
    z
}

/// Each column's mean, accumulated in float64.
fn column_means(x: ArrayView2<'_, f32>) -> Vec<f64> {
    let mut sums = vec![0.0f64; x.ncols()];
    for r in x.rows() {
        for (s, &v) in sums.iter_mut().zip(r) {
            *s += f64::from(v);
        }
    }
    let n = x.nrows().max(1) as f64;
    sums.into_iter().map(|s| s / n).collect()
}

/// The metric between two rows, in float64.
fn exact_distance(a: ArrayView1<'_, f32>, b: ArrayView1<'_, f32>, metric: Metric) -> f64 {
    match metric {
        Metric::Euclidean => a.iter().zip(b).map(|(&p, &q)| (f64::from(p) - f64::from(q)).powi(2)).sum::<f64>().sqrt(),
        Metric::Cosine => {
            let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
            for (&p, &q) in a.iter().zip(b) {
                let (p, q) = (f64::from(p), f64::from(q));
                ab += p * q;
                aa += p * p;
                bb += q * q;
            }
            if aa > 0.0 && bb > 0.0 {
                (1.0 - ab / (aa.sqrt() * bb.sqrt())).max(0.0)
            } else if aa == 0.0 && bb == 0.0 {
                0.0
            } else {
                0.5
            }
        }
    }
}

/// A candidate: squared distance, then index (the heap's top is the worst kept).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate(f32, u32);

impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// Each row's `k` nearest rows under `metric` (`k` clamped to `N`): the row itself first at
/// distance 0, then by distance, ties by index ([`Knn`], as [`super::umap::knn`] orders them).
pub fn knn(x: ArrayView2<'_, f32>, k: usize, metric: Metric) -> Knn {
    let n = x.nrows();
    let k = k.min(n);
    if n == 0 || k == 0 {
        return Knn { indices: vec![Vec::new(); n], distances: vec![Vec::new(); n] };
    }
    let z = prepared(x, metric);
    let norms: Vec<f32> = z.axis_iter(Axis(0)).map(|r| r.dot(&r)).collect();
    let keep = (k + SPARE).min(n);
    let rows: Vec<(Vec<usize>, Vec<f64>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .flat_map_iter(|b| {
            let (lo, hi) = (b * BLOCK, ((b + 1) * BLOCK).min(n));
            let products = z.slice(s![lo..hi, ..]).dot(&z.t());
            let norms = &norms;
            (lo..hi).map(move |i| {
                let g = products.row(i - lo);
                let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(keep + 1);
                for (j, (&gij, &nj)) in g.iter().zip(norms).enumerate() {
                    let d2 = if j == i { f32::NEG_INFINITY } else { (norms[i] + nj - 2.0 * gij).max(0.0) };
                    if heap.len() < keep {
                        heap.push(Candidate(d2, j as u32));
                    } else if let Some(top) = heap.peek() {
                        if Candidate(d2, j as u32) < *top {
                            heap.pop();
                            heap.push(Candidate(d2, j as u32));
                        }
                    }
                }
                let xi = x.row(i);
                let mut exact: Vec<(f64, usize)> = heap
                    .into_iter()
                    .map(|Candidate(_, j)| {
                        let j = j as usize;
                        if j == i {
                            return (f64::NEG_INFINITY, j);
                        }
                        (exact_distance(xi, x.row(j), metric), j)
                    })
                    .collect();
                exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                exact.truncate(k);
                let indices = exact.iter().map(|e| e.1).collect();
                let distances = exact.iter().map(|e| e.0.max(0.0)).collect();
                (indices, distances)
            })
        })
        .collect();
    let (indices, distances) = rows.into_iter().unzip();
    Knn { indices, distances }
}

/// The rows' coordinates on their `dims` leading principal axes (`N × dims`, float32; fewer
/// when the rows are fewer or narrower): randomised subspace iteration (`dims + 10` seeded
/// start vectors, 4 power iterations, each followed by re-orthonormalisation), then the exact
/// decomposition of the small projected problem. Each axis' sign is fixed (its largest
/// coordinate positive), so the result is deterministic for a seed.
pub fn pca(x: ArrayView2<'_, f32>, dims: usize, seed: u64) -> Array2<f32> {
    let (n, width) = x.dim();
    let dims = dims.min(n).min(width);
    if dims == 0 {
        return Array2::zeros((n, 0));
    }
    let l = (dims + 10).min(n).min(width);
    let mean: Array1<f32> = column_means(x).into_iter().map(|m| m as f32).collect();
    // (X − 1μᵀ)·W and (X − 1μᵀ)ᵀ·Q without forming the centred rows.
    let times = |w: &Array2<f32>| -> Array2<f32> {
        let mut y = par_dot(x, w.view());
        let shift = mean.dot(w);
        for mut r in y.rows_mut() {
            r -= &shift;
        }
        y
    };
    let times_t = |q: &Array2<f32>| -> Array2<f32> {
        let mut y = x.t().dot(q);
        let sums = q.sum_axis(Axis(0));
        for (mut r, &m) in y.axis_iter_mut(Axis(0)).zip(&mean) {
            r.scaled_add(-m, &sums);
        }
        y
    };
    let mut rng = Rng::new(seed);
    let omega = Array2::from_shape_fn((width, l), |_| (2.0 * rng.next_f64() - 1.0) as f32);
    let mut q = orthonormal(times(&omega));
    for _ in 0..4 {
        let p = orthonormal(times_t(&q));
        q = orthonormal(times(&p));
    }
    // B = Qᵀ(X − 1μᵀ) (l × width); B·Bᵀ = U·Σ²·Uᵀ; the scores are Q·U·Σ.
    let b = times_t(&q).reversed_axes();
    let bbt = b.mapv(f64::from).dot(&b.mapv(f64::from).t());
    let (values, vectors) = symmetric_eigen(bbt);
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&i, &j| values[j].total_cmp(&values[i]));
    let mut basis = Array2::<f32>::zeros((l, dims));
    for (c, &e) in order.iter().take(dims).enumerate() {
        let s = values[e].max(0.0).sqrt();
        for r in 0..l {
            basis[[r, c]] = (vectors[[r, e]] * s) as f32;
        }
    }
    let mut scores = q.dot(&basis);
    for mut c in scores.axis_iter_mut(Axis(1)) {
        let top = c.iter().copied().fold((0.0f32, 0.0f32), |m, v| if v.abs() > m.0 { (v.abs(), v) } else { m }).1;
        if top < 0.0 {
            c.mapv_inplace(|v| -v);
        }
    }
    scores
}

/// `a · b` with the rows of `a` split over the threads.
fn par_dot(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Array2<f32> {
    let blocks: Vec<Array2<f32>> = (0..a.nrows().div_ceil(4096))
        .into_par_iter()
        .map(|i| a.slice(s![i * 4096..((i + 1) * 4096).min(a.nrows()), ..]).dot(&b))
        .collect();
    let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
    ndarray::concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, b.ncols())))
}

/// The columns of `y` made orthonormal (modified Gram–Schmidt in float64, twice for accuracy);
/// a column that vanishes stays zero. Sums run over fixed chunks added in order, so the result
/// does not depend on the number of threads.
fn orthonormal(y: Array2<f32>) -> Array2<f32> {
    const CHUNK: usize = 4096;
    let dot = |a: &[f64], b: &[f64]| -> f64 {
        let parts: Vec<f64> = a
            .par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .map(|(x, y)| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>())
            .collect();
        parts.iter().sum()
    };
    let mut cols: Vec<Vec<f64>> = y.axis_iter(Axis(1)).map(|c| c.iter().map(|&v| f64::from(v)).collect()).collect();
    for _ in 0..2 {
        for c in 0..cols.len() {
            let (done, rest) = cols.split_at_mut(c);
            let v = &mut rest[0];
            for u in done.iter() {
                let p = dot(u, v);
                v.par_iter_mut().zip(u.par_iter()).for_each(|(x, a)| *x -= p * a);
            }
            let norm = dot(v, v).sqrt();
            let scale = if norm > 1e-300 { 1.0 / norm } else { 0.0 };
            v.par_iter_mut().for_each(|x| *x *= scale);
        }
    }
    Array2::from_shape_fn(y.dim(), |(r, c)| cols[c][r] as f32)
}

/// Eigenvalues and eigenvectors (columns) of a small symmetric matrix: cyclic Jacobi rotations
/// until the off-diagonal is negligible.
fn symmetric_eigen(mut a: Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut v = Array2::<f64>::eye(n);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[[i, j]].powi(2))
            .sum();
        let scale: f64 = (0..n).map(|i| a[[i, i]].powi(2)).sum::<f64>().max(1e-300);
        if off <= 1e-26 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[[p, q]].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * a[[p, q]]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[[k, p]], a[[k, q]]);
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[[p, k]], a[[q, k]]);
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[[i, i]]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distance::{pairwise, Normalize};

    fn rows(n: usize, d: usize, seed: u64) -> Array2<f32> {
        let mut rng = Rng::new(seed);
        Array2::from_shape_fn((n, d), |(i, _)| (rng.next_f64() * 4.0 - 2.0) as f32 + (i % 3) as f32 * 3.0)
    }

    #[test]
    fn neighbours_equal_those_of_the_distance_matrix() {
        let x = rows(150, 20, 1);
        for (metric, normalize) in [(Metric::Euclidean, Normalize::None), (Metric::Cosine, Normalize::Cosine)] {
            let fast = knn(x.view(), 10, metric);
            let exact = super::super::umap::knn(&pairwise(x.view(), normalize), 10);
            assert_eq!(fast.indices, exact.indices, "{metric}");
            for (a, b) in fast.distances.iter().flatten().zip(exact.distances.iter().flatten()) {
                assert!((a - b).abs() < 1e-9 * b.abs().max(1.0), "{metric}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn a_zero_row_and_k_beyond_n_do_not_panic() {
        let mut x = rows(5, 3, 2);
        x.row_mut(0).fill(0.0);
        let k = knn(x.view(), 9, Metric::Cosine);
        assert_eq!(k.indices.len(), 5);
        assert!(k.indices.iter().enumerate().all(|(i, r)| r.len() == 5 && r[0] == i));
        assert_eq!(knn(Array2::<f32>::zeros((0, 3)).view(), 5, Metric::Euclidean).indices.len(), 0);
    }

    #[test]
    fn principal_components_keep_the_variance_of_a_low_rank_set() {
        // Rank-3 rows in 40 dimensions: 3 components keep every distance.
        let mut rng = Rng::new(5);
        let basis = Array2::from_shape_fn((3, 40), |_| rng.next_f64() as f32 - 0.5);
        let coef = Array2::from_shape_fn((200, 3), |(i, j)| ((i * 7 + j * 13) % 17) as f32 - 8.0);
        let x = coef.dot(&basis) + 3.0;
        let p = pca(x.view(), 3, 9);
        assert_eq!(p.dim(), (200, 3));
        let (d, dp) = (pairwise(x.view(), Normalize::None), pairwise(p.view(), Normalize::None));
        for (a, b) in d.iter().zip(dp.iter()) {
            assert!((a - b).abs() < 1e-3 * a.max(1.0), "{a} vs {b}");
        }
        assert_eq!(pca(x.view(), 3, 9), p, "same seed, same components");
        // Axes ordered by variance.
        let var = |c: usize| p.column(c).iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
        assert!(var(0) >= var(1) && var(1) >= var(2));
    }

    #[test]
    fn jacobi_diagonalises() {
        let a = Array2::from_shape_vec((3, 3), vec![4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 1.0]).unwrap();
        let (values, v) = symmetric_eigen(a.clone());
        let back = v.dot(&Array2::from_diag(&Array1::from(values))).dot(&v.t());
        for (x, y) in a.iter().zip(back.iter()) {
            assert!((x - y).abs() < 1e-10);
        }
    }
}
