//! UMAP (McInnes, Healy & Melville 2018) for the feature-space path of issue 16. Its graph is
//! deterministic: exact k nearest neighbours, the smoothed
//! neighbour distances (`ρ`, `σ` per point) and the fuzzy simplicial set (the symmetrised
//! membership graph). Written from umap-learn 0.5's definitions (`smooth_knn_dist`,
//! `compute_membership_strengths`, `fuzzy_simplicial_set` with `set_op_mix_ratio = 1`,
//! `local_connectivity = 1`) and checked against it (`models/scripts/make_umap_reference.py`).
//! The layout ([`layout`]) is umap-learn's stochastic gradient descent run sequentially with
//! hudd's seeded generator (ARCHITECTURE.md says why no crate does it): its partitions are
//! checked by ARI against umap-learn + hdbscan, not by equality.

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

/// The curve `1 / (1 + a·d^(2b))` that UMAP's layout pulls neighbours along: `(a, b)` fitted by
/// least squares (Levenberg–Marquardt from `(1, 1)`, as umap-learn's `find_ab_params` with scipy's
/// `curve_fit`) to 1 below `min_dist` and `exp(−(d − min_dist) / spread)` above, at 300 points on
/// `[0, 3·spread]`.
pub fn find_ab(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs.iter().map(|&x| if x < min_dist { 1.0 } else { (-(x - min_dist) / spread).exp() }).collect();
    let residuals = |a: f64, b: f64| -> f64 {
        xs.iter().zip(&ys).map(|(&x, &y)| (1.0 / (1.0 + a * x.powf(2.0 * b)) - y).powi(2)).sum()
    };
    let (mut a, mut b, mut lambda) = (1.0f64, 1.0f64, 1e-3f64);
    let mut cost = residuals(a, b);
    for _ in 0..500 {
        // Jacobian of f(x) = 1 / (1 + a·x^(2b)).
        let (mut jtj, mut jtr) = ([[0.0f64; 2]; 2], [0.0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            let p = if x > 0.0 { x.powf(2.0 * b) } else { 0.0 };
            let f = 1.0 / (1.0 + a * p);
            let (da, db) = (-f * f * p, if x > 0.0 { -f * f * a * p * 2.0 * x.ln() } else { 0.0 });
            let r = f - y;
            jtj[0][0] += da * da;
            jtj[0][1] += da * db;
            jtj[1][1] += db * db;
            jtr[0] += da * r;
            jtr[1] += db * r;
        }
        let (m00, m11, m01) = (jtj[0][0] * (1.0 + lambda), jtj[1][1] * (1.0 + lambda), jtj[0][1]);
        let det = m00 * m11 - m01 * m01;
        if det == 0.0 || !det.is_finite() {
            break;
        }
        let (sa, sb) = ((m11 * jtr[0] - m01 * jtr[1]) / det, (m00 * jtr[1] - m01 * jtr[0]) / det);
        let (na, nb) = (a - sa, b - sb);
        let next = residuals(na, nb);
        if next.is_finite() && next < cost {
            let done = (cost - next) <= 1e-15 * cost.max(1e-300);
            (a, b, cost, lambda) = (na, nb, next, lambda / 10.0);
            if done {
                break;
            }
        } else {
            lambda *= 10.0;
            if lambda > 1e12 {
                break;
            }
        }
    }
    (a, b)
}

/// The layout's parameters (umap-learn's defaults but for the seed, which is hudd's to record).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayoutOptions {
    /// Dimensions of the embedding.
    pub components: usize,
    /// Epochs of stochastic gradient descent (`None`: 500 up to 10,000 points, else 200).
    pub epochs: Option<usize>,
    /// Smallest distance between embedded points (the curve's shoulder).
    pub min_dist: f64,
    /// Scale of the embedded distances.
    pub spread: f64,
    /// Negative samples per positive one.
    pub negative_sample_rate: usize,
    /// Seed of the initial layout and of the negative samples.
    pub seed: u64,
}

impl Default for LayoutOptions {
    fn default() -> Self {
        LayoutOptions { components: 2, epochs: None, min_dist: 0.1, spread: 1.0, negative_sample_rate: 5, seed: 0 }
    }
}

/// The embedding of `n` points whose fuzzy simplicial set is `graph`: umap-learn's
/// `optimize_layout_euclidean` run sequentially (attraction along each edge as often as its
/// weight says, repulsion from seeded negative samples, gradients clipped to ±4, a learning rate
/// falling linearly from 1), from a seeded uniform layout in `[−10, 10]`. Same graph and options,
/// same embedding, on any machine and thread count.
pub fn layout(n: usize, graph: &BTreeMap<(usize, usize), f64>, options: &LayoutOptions) -> Array2<f64> {
    let dim = options.components.max(1);
    let mut rng = crate::rng::Rng::new(options.seed);
    let emb = Array2::from_shape_fn((n, dim), |_| 20.0 * rng.next_f64() - 10.0);
    layout_from(emb, graph, options, &mut rng)
}

/// [`layout`] from the start `init` (`n × components`), scaled as umap-learn scales its
/// spectral and PCA starts: the largest coordinate becomes 10, plus seeded noise of 10⁻⁴. A start
/// that already shows the data's large-scale structure (e.g. its principal components) keeps
/// clusters whole that a uniform start on many points splits.
pub fn layout_init(init: Array2<f64>, graph: &BTreeMap<(usize, usize), f64>, options: &LayoutOptions) -> Array2<f64> {
    let mut rng = crate::rng::Rng::new(options.seed);
    let top = init.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let scale = if top > 0.0 { 10.0 / top } else { 1.0 };
    let emb = init.mapv(|v| v * scale + 1e-4 * (2.0 * rng.next_f64() - 1.0));
    layout_from(emb, graph, options, &mut rng)
}

fn layout_from(
    mut emb: Array2<f64>,
    graph: &BTreeMap<(usize, usize), f64>,
    options: &LayoutOptions,
    rng: &mut crate::rng::Rng,
) -> Array2<f64> {
    let (n, dim) = emb.dim();
    let epochs = options.epochs.unwrap_or(if n <= 10_000 { 500 } else { 200 });
    if n < 2 || graph.is_empty() || epochs == 0 {
        return emb;
    }
    let (a, b) = find_ab(options.spread, options.min_dist);
    // Edges too weak to be sampled once in all the epochs are dropped, as umap-learn does.
    let top = graph.values().copied().fold(0.0f64, f64::max);
    let edges: Vec<(usize, usize, f64)> =
        graph.iter().filter(|(_, &w)| w >= top / epochs as f64).map(|(&(i, j), &w)| (i, j, w)).collect();
    let per_sample: Vec<f64> = edges.iter().map(|e| top / e.2).collect();
    let per_negative: Vec<f64> = per_sample.iter().map(|p| p / options.negative_sample_rate as f64).collect();
    let mut next_sample = per_sample.clone();
    let mut next_negative = per_negative.clone();
    let clip = |g: f64| g.clamp(-4.0, 4.0);
    let mut delta = vec![0.0f64; dim];
    for epoch in 0..epochs {
        let alpha = 1.0 - epoch as f64 / epochs as f64;
        let now = epoch as f64;
        for (e, &(j, k, _)) in edges.iter().enumerate() {
            if next_sample[e] > now {
                continue;
            }
            let dist_sq: f64 = (0..dim).map(|d| (emb[[j, d]] - emb[[k, d]]).powi(2)).sum();
            let coeff =
                if dist_sq > 0.0 { -2.0 * a * b * dist_sq.powf(b - 1.0) / (a * dist_sq.powf(b) + 1.0) } else { 0.0 };
            for d in 0..dim {
                delta[d] = clip(coeff * (emb[[j, d]] - emb[[k, d]])) * alpha;
            }
            for d in 0..dim {
                emb[[j, d]] += delta[d];
                emb[[k, d]] -= delta[d];
            }
            next_sample[e] += per_sample[e];
            let negatives = ((now - next_negative[e]) / per_negative[e]).max(0.0) as usize;
            for _ in 0..negatives {
                let other = rng.below(n);
                if other == j {
                    continue;
                }
                let dist_sq: f64 = (0..dim).map(|d| (emb[[j, d]] - emb[[other, d]]).powi(2)).sum();
                let coeff =
                    if dist_sq > 0.0 { 2.0 * b / ((0.001 + dist_sq) * (a * dist_sq.powf(b) + 1.0)) } else { 0.0 };
                if coeff > 0.0 {
                    for d in 0..dim {
                        let g = clip(coeff * (emb[[j, d]] - emb[[other, d]]));
                        emb[[j, d]] += g * alpha;
                    }
                }
            }
            next_negative[e] += negatives as f64 * per_negative[e];
        }
    }
    emb
}

/// UMAP of the points whose distances are `d`: [`knn`], [`smooth_knn_dist`],
/// [`fuzzy_simplicial_set`], [`layout`].
pub fn umap(d: &Array2<f64>, neighbours: usize, options: &LayoutOptions) -> Array2<f64> {
    let k = knn(d, neighbours.max(2));
    let (sigmas, rhos) = smooth_knn_dist(&k.distances, neighbours.max(2) as f64);
    let graph = fuzzy_simplicial_set(&k, &sigmas, &rhos);
    layout(d.nrows(), &graph, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, n), |(i, j)| (i as f64 - j as f64).abs())
    }

    #[test]
    fn the_curve_parameters_equal_umap_learns() {
        // umap-learn 0.5.12's find_ab_params(1.0, min_dist).
        for (min_dist, a, b) in [
            (0.0, 1.93280839734315, 0.7904949732233831),
            (0.1, 1.5769434602697652, 0.8950608778515733),
            (0.5, 0.5830300203414425, 1.3341669924314914),
        ] {
            let (ga, gb) = find_ab(1.0, min_dist);
            assert!(
                (ga - a).abs() < 1e-4 * a && (gb - b).abs() < 1e-4 * b,
                "min_dist {min_dist}: ({ga}, {gb}) vs ({a}, {b})"
            );
        }
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
