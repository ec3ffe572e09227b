//! UMAP's graph (McInnes, Healy & Melville 2018), the deterministic half of the embedding that the
//! feature-space path of issue 16 will cluster: exact k nearest neighbours, the smoothed
//! neighbour distances (`ρ`, `σ` per point) and the fuzzy simplicial set (the symmetrised
//! membership graph). Written from umap-learn 0.5's definitions (`smooth_knn_dist`,
//! `compute_membership_strengths`, `fuzzy_simplicial_set` with `set_op_mix_ratio = 1`,
//! `local_connectivity = 1`) and checked against it (`models/scripts/make_umap_reference.py`).
//! The layout optimisation, the seeded half, is not here yet (ARCHITECTURE.md says why no crate
//! does it).

use std::collections::BTreeMap;

use ndarray::Array2;

/// umap-learn's tolerance of the σ search.
const SMOOTH_K_TOLERANCE: f64 = 1e-5;
/// umap-learn's floor of σ, as a share of the mean neighbour distance.
const MIN_K_DIST_SCALE: f64 = 1e-3;
/// Bisection steps of the σ search.
const SIGMA_STEPS: usize = 64;

/// Each point's `k` nearest neighbours, itself first (distance 0), then by distance (ties by
/// index).
#[derive(Debug, Clone, PartialEq)]
pub struct Knn {
    /// Neighbour indices per point.
    pub indices: Vec<Vec<usize>>,
    /// Their distances.
    pub distances: Vec<Vec<f64>>,
}

/// The exact `k` nearest neighbours from a distance matrix (`k` is clamped to `N`).
pub fn knn(d: &Array2<f64>, k: usize) -> Knn {
    let n = d.nrows();
    let k = k.min(n);
    let mut indices = Vec::with_capacity(n);
    let mut distances = Vec::with_capacity(n);
    for i in 0..n {
        let mut order: Vec<usize> = (0..n).collect();
        // The point itself first, whatever its distance to itself.
        order.sort_by(|&a, &b| (a != i).cmp(&(b != i)).then(d[[i, a]].total_cmp(&d[[i, b]])).then(a.cmp(&b)));
        order.truncate(k);
        distances.push(order.iter().map(|&j| if j == i { 0.0 } else { d[[i, j]] }).collect());
        indices.push(order);
    }
    Knn { indices, distances }
}

/// `(σ, ρ)` per point: `ρ` the distance to the nearest other neighbour, `σ` such that
/// `Σ_j exp(−max(0, d_j − ρ) / σ) = log₂ k` over the neighbours other than the point itself.
pub fn smooth_knn_dist(distances: &[Vec<f64>], k: f64) -> (Vec<f64>, Vec<f64>) {
    let target = k.log2();
    let all: Vec<f64> = distances.iter().flatten().copied().collect();
    let mean_all = all.iter().sum::<f64>() / all.len().max(1) as f64;
    let mut sigmas = Vec::with_capacity(distances.len());
    let mut rhos = Vec::with_capacity(distances.len());
    for row in distances {
        let non_zero: Vec<f64> = row.iter().copied().filter(|&x| x > 0.0).collect();
        // local_connectivity = 1: the first non-zero distance.
        let rho = non_zero.first().copied().unwrap_or(0.0);
        let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..SIGMA_STEPS {
            let psum: f64 = row
                .iter()
                .skip(1)
                .map(|&x| {
                    let d = x - rho;
                    if d > 0.0 {
                        (-(d / mid)).exp()
                    } else {
                        1.0
                    }
                })
                .sum();
            if (psum - target).abs() < SMOOTH_K_TOLERANCE {
                break;
            }
            if psum > target {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                mid = if hi.is_infinite() { mid * 2.0 } else { (lo + hi) / 2.0 };
            }
        }
        let floor = if rho > 0.0 {
            MIN_K_DIST_SCALE * row.iter().sum::<f64>() / row.len().max(1) as f64
        } else {
            MIN_K_DIST_SCALE * mean_all
        };
        sigmas.push(mid.max(floor));
        rhos.push(rho);
    }
    (sigmas, rhos)
}

/// The fuzzy simplicial set: membership `w_ij = exp(−max(0, d_ij − ρ_i) / σ_i)` of each point's
/// neighbours (0 for itself), symmetrised by the fuzzy union `w + wᵀ − w ∘ wᵀ`; entries `(i, j)`
/// with `i ≠ j` and a positive weight, in index order.
pub fn fuzzy_simplicial_set(knn: &Knn, sigmas: &[f64], rhos: &[f64]) -> BTreeMap<(usize, usize), f64> {
    let mut w: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for (i, (row, dists)) in knn.indices.iter().zip(&knn.distances).enumerate() {
        for (&j, &d) in row.iter().zip(dists) {
            let v = if j == i {
                0.0
            } else if d - rhos[i] <= 0.0 || sigmas[i] == 0.0 {
                1.0
            } else {
                (-((d - rhos[i]) / sigmas[i])).exp()
            };
            if v != 0.0 {
                w.insert((i, j), v);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (&(i, j), &a) in &w {
        let b = w.get(&(j, i)).copied().unwrap_or(0.0);
        let v = a + b - a * b;
        if v != 0.0 {
            out.insert((i, j), v);
            out.insert((j, i), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, n), |(i, j)| (i as f64 - j as f64).abs())
    }

    #[test]
    fn neighbours_are_the_point_then_the_nearest() {
        let k = knn(&line(6), 3);
        assert_eq!(k.indices[0], [0, 1, 2]);
        assert_eq!(k.indices[3], [3, 2, 4], "ties by index");
        assert_eq!(k.distances[3], [0.0, 1.0, 1.0]);
    }

    #[test]
    fn sigma_solves_its_equation_and_the_graph_is_symmetric() {
        let d = line(12);
        let k = knn(&d, 5);
        let (sigmas, rhos) = smooth_knn_dist(&k.distances, 5.0);
        for (i, (s, r)) in sigmas.iter().zip(&rhos).enumerate() {
            assert_eq!(*r, 1.0, "the nearest other point is 1 away");
            let psum: f64 = k.distances[i].iter().skip(1).map(|&x| (-(x - r).max(0.0) / s).exp()).sum();
            assert!((psum - 5f64.log2()).abs() < 1e-4, "point {i}: {psum}");
        }
        let g = fuzzy_simplicial_set(&k, &sigmas, &rhos);
        for (&(i, j), &v) in &g {
            assert_ne!(i, j);
            assert!(v > 0.0 && v <= 1.0);
            assert_eq!(g.get(&(j, i)), Some(&v));
        }
        // Nearest neighbours are fully connected.
        assert_eq!(g.get(&(0, 1)), Some(&1.0));
    }
}
