//! Density clustering (HDBSCAN) of feature rows, for the feature-space path of issue 16: clusters of
//! any shape and number, and **noise** — images in no dense region, which belong to no cluster.
//!
//! The algorithm is `petal-clustering`'s HDBSCAN (Campello et al. 2015: mutual reachability with
//! `min_samples` neighbours, minimum spanning tree, condensed tree with `min_cluster_size`,
//! excess-of-mass selection), with the defaults of the Python `hdbscan` package: `min_samples =
//! min_cluster_size`, `alpha = 1`, Euclidean distances, no single all-embracing cluster. Its
//! labels agree with that package's on the committed fixtures
//! (`models/scripts/make_density_reference.py`; the adjusted Rand index is checked in the tests).
//! The result does not depend on the order of the clusters the crate returns: clusters are
//! numbered by size, the largest first, ties by their first member.

use ndarray::{Array2, ArrayView2};
use petal_clustering::{Fit, HDbscan};

/// `min_cluster_size` unless told otherwise.
pub const DEFAULT_MIN_CLUSTER_SIZE: usize = 5;

/// HDBSCAN's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DensityOptions {
    /// The smallest group of images that counts as a cluster (2 or more).
    pub min_cluster_size: usize,
    /// Neighbours that make a point a core point (`None`: `min_cluster_size`).
    pub min_samples: Option<usize>,
}

impl Default for DensityOptions {
    fn default() -> Self {
        DensityOptions { min_cluster_size: DEFAULT_MIN_CLUSTER_SIZE, min_samples: None }
    }
}

/// Density clusters of `N` rows.
#[derive(Debug, Clone, PartialEq)]
pub struct DensityClusters {
    /// Cluster per row, `0..k` (the largest first), or `None` for noise.
    pub labels: Vec<Option<usize>>,
    /// Number of clusters.
    pub k: usize,
}

impl DensityClusters {
    /// Rows in no cluster.
    pub fn noise(&self) -> usize {
        self.labels.iter().filter(|l| l.is_none()).count()
    }

    /// The members of each cluster, in row order.
    pub fn members(&self) -> Vec<Vec<usize>> {
        members_of(&self.labels, self.k)
    }
}

/// The members of each of `k` clusters, in row order, from labels where `None` is noise.
pub fn members_of(labels: &[Option<usize>], k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); k];
    for (i, l) in labels.iter().enumerate() {
        if let Some(l) = l {
            out[*l].push(i);
        }
    }
    out
}

/// HDBSCAN of the rows of `x` (`N × D`, finite values). Fewer rows than `min_cluster_size` (or
/// than 2) are all noise.
pub fn hdbscan<T: Copy + Into<f64>>(x: ArrayView2<'_, T>, options: &DensityOptions) -> DensityClusters {
    let n = x.nrows();
    let min_cluster_size = options.min_cluster_size.max(2);
    let min_samples = options.min_samples.unwrap_or(min_cluster_size).max(1);
    if n < min_cluster_size.max(2) || n <= min_samples {
        return DensityClusters { labels: vec![None; n], k: 0 };
    }
    let x64: Array2<f64> = x.mapv(Into::into);
    // The Python package's core distance is the distance to the `min_samples`-th neighbour other
    // than the point itself; petal-clustering counts the point among its neighbours.
    let mut model: HDbscan<f64, _> =
        HDbscan { min_cluster_size, min_samples: min_samples + 1, alpha: 1.0, ..HDbscan::default() };
    let (clusters, _noise, _scores) = model.fit(&x64, None);
    // Number clusters by size, the largest first, ties by their first member.
    let mut groups: Vec<Vec<usize>> = clusters
        .into_values()
        .map(|mut m| {
            m.sort_unstable();
            m
        })
        .collect();
    groups.retain(|g| !g.is_empty());
    groups.sort_by_key(|g| (std::cmp::Reverse(g.len()), g[0]));
    let mut labels = vec![None; n];
    for (c, g) in groups.iter().enumerate() {
        for &i in g {
            labels[i] = Some(c);
        }
    }
    DensityClusters { labels, k: groups.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_dense_groups_and_an_outlier() {
        let mut rows = Vec::new();
        for i in 0..8 {
            rows.push([f32::from(i as u8) * 0.01, 0.0]);
            rows.push([10.0 + f32::from(i as u8) * 0.01, 10.0]);
        }
        rows.push([100.0, -100.0]);
        let x = Array2::from_shape_fn((rows.len(), 2), |(i, j)| rows[i][j]);
        let c = hdbscan(x.view(), &DensityOptions { min_cluster_size: 3, min_samples: None });
        assert_eq!(c.k, 2);
        assert_eq!(c.noise(), 1);
        assert_eq!(c.labels[16], None, "the outlier is noise");
        assert_eq!(c.labels[0], Some(0), "ties by size: the group of row 0 first");
        assert!((0..16).all(|i| c.labels[i] == Some(i % 2)));
        assert_eq!(c.members()[1], (0..8).map(|i| 2 * i + 1).collect::<Vec<_>>());
    }

    #[test]
    fn too_few_rows_are_noise() {
        let x = Array2::<f32>::zeros((3, 2));
        let c = hdbscan(x.view(), &DensityOptions::default());
        assert_eq!((c.k, c.noise()), (0, 3));
        let empty = Array2::<f32>::zeros((0, 2));
        assert_eq!(hdbscan(empty.view(), &DensityOptions::default()).labels, Vec::<Option<usize>>::new());
    }
}
