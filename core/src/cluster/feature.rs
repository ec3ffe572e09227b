//! The feature-space path (issue 16; after SAFE, TOSEM'23, and the 99-pipeline study, TOSEM'24):
//! per layer, the images' features (heatmaps or activations, one row each) →
//! optionally their leading principal components (many wide rows) → UMAP ([`super::umap`], on
//! the exact nearest neighbours of [`super::neighbours`], its layout started from the rows'
//! principal components as umap-learn's `init="pca"`) → HDBSCAN ([`super::density`]).
//! Clusters can take any shape and number; images in no dense region are **noise**, in no
//! cluster.
//!
//! A small grid of parameters is tried per layer — UMAP's metric and number of components,
//! HDBSCAN's `min_cluster_size` — and scored by the mean silhouette of the clustered points
//! in the space they were clustered in (noise excluded; over a seeded sample of
//! [`FeatureOptions::silhouette_sample`] clustered points when there are more). The best trial
//! is the layer's result and the best layer is the one whose result scores highest. Every trial
//! is recorded. The embedding is seeded: same rows and options, same clusters, on any machine.
//!
//! Neither the `N × N` distances nor a tree is made: memory is the rows, the neighbour graph and
//! the embedding, which is what lets this path cluster hundreds of thousands of images.

use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::density::{hdbscan, DensityOptions};
use super::neighbours::{knn, pca, Metric};
use super::umap::{fuzzy_simplicial_set, layout_init, smooth_knn_dist, LayoutOptions};
use crate::rng::Rng;

/// What HDBSCAN clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Embed {
    /// The features themselves (their principal components when many and wide).
    None,
    /// Their UMAP embedding.
    #[default]
    Umap,
}

impl Embed {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            Embed::None => "none",
            Embed::Umap => "umap",
        }
    }
}

impl std::fmt::Display for Embed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Rows above which features wider than [`PCA_DIMS`] are first reduced to their principal
/// components: exact neighbours cost `N² × width`.
pub const PCA_ROWS: usize = 20_000;
/// Principal components kept then.
pub const PCA_DIMS: usize = 64;

/// The feature path's options. The grid is every combination of `metrics`, `components` and
/// `min_cluster_sizes` (with `embed = none`, `metrics` and `components` are not used: one
/// Euclidean trial per `min_cluster_size`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureOptions {
    /// What HDBSCAN clusters.
    pub embed: Embed,
    /// UMAP's metrics tried.
    pub metrics: Vec<Metric>,
    /// UMAP's numbers of components tried.
    pub components: Vec<usize>,
    /// HDBSCAN's `min_cluster_size` values tried.
    pub min_cluster_sizes: Vec<usize>,
    /// UMAP's `n_neighbors`.
    pub neighbours: usize,
    /// UMAP's `min_dist` (0: points of a cluster may coincide, which suits clustering).
    pub min_dist: f64,
    /// Most points the silhouette is computed on (a seeded sample beyond).
    pub silhouette_sample: usize,
    /// Seed of the principal components, the layout and the silhouette sample.
    pub seed: u64,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        FeatureOptions {
            embed: Embed::Umap,
            metrics: vec![Metric::Euclidean, Metric::Cosine],
            components: vec![2, 5],
            min_cluster_sizes: vec![5, 10, 20],
            neighbours: 15,
            min_dist: 0.0,
            silhouette_sample: 10_000,
            seed: 0,
        }
    }
}

impl FeatureOptions {
    /// The options as a sentence, for reports.
    pub fn describe(&self) -> String {
        let list = |v: Vec<String>| v.join(" | ");
        let sizes = list(self.min_cluster_sizes.iter().map(|s| s.to_string()).collect());
        let embed = match self.embed {
            Embed::Umap => format!(
                "UMAP (n_neighbors {}, min_dist {}, metric {}, components {}; exact neighbours, of the first {PCA_DIMS} \
                 principal components beyond {PCA_ROWS} images), then ",
                self.neighbours,
                self.min_dist,
                list(self.metrics.iter().map(|m| m.name().to_string()).collect()),
                list(self.components.iter().map(|c| c.to_string()).collect()),
            ),
            Embed::None => String::new(),
        };
        format!(
            "{embed}HDBSCAN (min_cluster_size {sizes}, min_samples = min_cluster_size); the trial with the highest \
             silhouette of the clustered points (noise excluded, at most {} points); seed {}",
            self.silhouette_sample, self.seed
        )
    }
}

/// One trial of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// UMAP's metric (Euclidean on the features when not embedded).
    pub metric: Metric,
    /// UMAP's components (`0`: not embedded).
    pub components: usize,
    /// HDBSCAN's `min_cluster_size`.
    pub min_cluster_size: usize,
    /// Clusters found.
    pub clusters: usize,
    /// Images in no cluster.
    pub noise: usize,
    /// Mean silhouette of the clustered points (`None` with fewer than 2 clusters).
    pub silhouette: Option<f64>,
}

/// One layer's result.
#[derive(Debug, Clone)]
pub struct FeatureClusters {
    /// Cluster per image, `0..k` (the largest first), or `None` for noise.
    pub labels: Vec<Option<usize>>,
    /// Number of clusters.
    pub k: usize,
    /// Every trial, in grid order (metric, then components, then `min_cluster_size`).
    pub trials: Vec<Trial>,
    /// The chosen trial's index.
    pub chosen: usize,
    /// The points HDBSCAN clustered in the chosen trial (`N × components`, or the features).
    pub points: Array2<f64>,
    /// A 2-D map: the chosen embedding when it has 2 components, else a 2-component UMAP of the
    /// same graph (the first two principal components without an embedding).
    pub map: Vec<[f64; 2]>,
    /// Principal components the features were reduced to first, if they were.
    pub pca: Option<usize>,
    /// Seconds per step (`pca`, `neighbours`, `umap`, `hdbscan`, `silhouette`), summed over the
    /// grid.
    pub timings: Vec<(&'static str, f64)>,
}

impl FeatureClusters {
    /// The chosen trial's silhouette (−1 without one: never better than a layer with one).
    pub fn score(&self) -> f64 {
        self.trials[self.chosen].silhouette.unwrap_or(-1.0)
    }

    /// The members of each cluster, in image order.
    pub fn members(&self) -> Vec<Vec<usize>> {
        super::density::members_of(&self.labels, self.k)
    }

    /// A cluster's representative: the member nearest the members' mean in the clustered space,
    /// and each member's distance to it there.
    pub fn medoid(&self, members: &[usize]) -> (usize, Vec<f64>) {
        let dim = self.points.ncols();
        let mut mean = vec![0.0f64; dim];
        for &i in members {
            for (m, v) in mean.iter_mut().zip(self.points.row(i)) {
                *m += v / members.len() as f64;
            }
        }
        let dist = |i: usize, p: &[f64]| -> f64 {
            self.points.row(i).iter().zip(p).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt()
        };
        let m = members.iter().copied().fold(None, |best: Option<(usize, f64)>, i| {
            let d = dist(i, &mean);
            match best {
                Some((_, bd)) if bd <= d => best,
                _ => Some((i, d)),
            }
        });
        let m = m.map_or(0, |(i, _)| i);
        let at: Vec<f64> = self.points.row(m).to_vec();
        (m, members.iter().map(|&j| dist(j, &at)).collect())
    }
}

/// The best trial so far.
struct Best {
    /// Its silhouette (−∞ without one).
    value: f64,
    /// Its index in the grid.
    trial: usize,
    labels: Vec<Option<usize>>,
    k: usize,
    /// The points it clustered.
    points: Array2<f64>,
}

/// Clusters the rows of `x` (`N × D`, N ≥ 2, finite) by the feature path.
pub fn cluster_features(x: ArrayView2<'_, f32>, options: &FeatureOptions) -> FeatureClusters {
    let n = x.nrows();
    let timings = std::cell::RefCell::new(Vec::<(&'static str, f64)>::new());
    let timed = |step: &'static str, t: Instant| {
        let mut all = timings.borrow_mut();
        let s = t.elapsed().as_secs_f64();
        match all.iter_mut().find(|(name, _)| *name == step) {
            Some((_, v)) => *v += s,
            None => all.push((step, s)),
        }
    };
    let t = Instant::now();
    let reduced = (n > PCA_ROWS && x.ncols() > PCA_DIMS).then(|| pca(x, PCA_DIMS, options.seed));
    if reduced.is_some() {
        timed("pca", t);
    }
    let rows = reduced.as_ref().map_or(x, |r| r.view());
    let sizes: Vec<usize> = if options.min_cluster_sizes.is_empty() {
        vec![super::density::DEFAULT_MIN_CLUSTER_SIZE]
    } else {
        options.min_cluster_sizes.clone()
    };
    let mut trials = Vec::new();
    // The best so far: (silhouette, labels, points); the first of equal scores wins.
    let mut best: Option<Best> = None;
    let mut best_graph = None;
    // The rows' principal components, the layouts' start.
    let mut start: Option<Array2<f64>> = None;
    let mut consider = |trials: &mut Vec<Trial>, metric: Metric, components: usize, points: &Array2<f64>| -> bool {
        let mut improved = false;
        for &size in &sizes {
            let t = Instant::now();
            let c = hdbscan(points.view(), &DensityOptions { min_cluster_size: size, min_samples: None });
            timed("hdbscan", t);
            let t = Instant::now();
            let s = (c.k >= 2).then(|| silhouette(points, &c.labels, options.silhouette_sample, options.seed));
            timed("silhouette", t);
            trials.push(Trial {
                metric,
                components,
                min_cluster_size: size,
                clusters: c.k,
                noise: c.noise(),
                silhouette: s,
            });
            let value = s.unwrap_or(f64::NEG_INFINITY);
            if best.as_ref().is_none_or(|b| value > b.value) {
                best = Some(Best { value, trial: trials.len() - 1, labels: c.labels, k: c.k, points: points.clone() });
                improved = true;
            }
        }
        improved
    };
    match options.embed {
        Embed::None => {
            let points = rows.mapv(f64::from);
            consider(&mut trials, Metric::Euclidean, 0, &points);
        }
        Embed::Umap => {
            let metrics = if options.metrics.is_empty() { vec![Metric::Euclidean] } else { options.metrics.clone() };
            let components = if options.components.is_empty() { vec![2] } else { options.components.clone() };
            // The layout starts from the rows' principal components (umap-learn's `init="pca"`).
            let t = Instant::now();
            let widest = components.iter().copied().max().unwrap_or(2).max(2);
            let start = start.insert(pca(rows, widest, options.seed).mapv(f64::from));
            timed("umap", t);
            let init = |c: usize| first_columns(start, c);
            for &metric in &metrics {
                let neighbours = options.neighbours.max(2);
                let t = Instant::now();
                let k = knn(rows, neighbours, metric);
                timed("neighbours", t);
                let t = Instant::now();
                let (sigmas, rhos) = smooth_knn_dist(&k.distances, neighbours as f64);
                let graph = fuzzy_simplicial_set(&k, &sigmas, &rhos);
                drop(k);
                timed("umap", t);
                let mut improved = false;
                for &c in &components {
                    let layout_options = LayoutOptions {
                        components: c.max(1),
                        min_dist: options.min_dist,
                        seed: options.seed,
                        ..LayoutOptions::default()
                    };
                    let t = Instant::now();
                    let points = layout_init(init(c.max(1)), &graph, &layout_options);
                    timed("umap", t);
                    improved |= consider(&mut trials, metric, c.max(1), &points);
                }
                // The best trial's graph (its map may need another layout of it).
                if improved {
                    best_graph = Some(graph);
                }
            }
        }
    }
    let Best { trial: chosen, labels, k, points, .. } = best.expect("the grid has a trial");
    let t = Instant::now();
    let map: Vec<[f64; 2]> = if points.ncols() == 2 && options.embed == Embed::Umap {
        points.rows().into_iter().map(|r| [r[0], r[1]]).collect()
    } else if let Some(graph) = best_graph.filter(|_| options.embed == Embed::Umap) {
        let two =
            LayoutOptions { components: 2, min_dist: options.min_dist, seed: options.seed, ..LayoutOptions::default() };
        let init = start.as_ref().map_or_else(|| Array2::zeros((n, 2)), |s| first_columns(s, 2));
        layout_init(init, &graph, &two).rows().into_iter().map(|r| [r[0], r[1]]).collect()
    } else {
        let p = pca(rows, 2, options.seed);
        p.rows().into_iter().map(|r| [f64::from(r[0]), f64::from(*r.get(1).unwrap_or(&0.0))]).collect()
    };
    timed("umap", t);
    let timings = timings.into_inner();
    FeatureClusters { labels, k, trials, chosen, points, map, pca: reduced.map(|r| r.ncols()), timings }
}

/// The first `c` columns of `a` (zero columns beyond its width).
fn first_columns(a: &Array2<f64>, c: usize) -> Array2<f64> {
    Array2::from_shape_fn((a.nrows(), c), |(i, j)| if j < a.ncols() { a[[i, j]] } else { 0.0 })
}

/// Mean silhouette of the clustered points (noise excluded; a singleton cluster's points count
/// 0, as scikit-learn defines it), over a seeded sample of `cap` of them when there are more.
pub fn silhouette(points: &Array2<f64>, labels: &[Option<usize>], cap: usize, seed: u64) -> f64 {
    let mut clustered: Vec<usize> = (0..labels.len()).filter(|&i| labels[i].is_some()).collect();
    if clustered.len() > cap.max(2) {
        Rng::new(seed ^ 0x5111_0e77e).shuffle(&mut clustered);
        clustered.truncate(cap.max(2));
        clustered.sort_unstable();
    }
    let k = clustered.iter().filter_map(|&i| labels[i]).max().map_or(0, |m| m + 1);
    if k < 2 {
        return 0.0;
    }
    let label = |i: usize| labels[i].unwrap_or(0);
    let mut size = vec![0usize; k];
    for &i in &clustered {
        size[label(i)] += 1;
    }
    use rayon::prelude::*;
    // Each point's value in parallel, summed in order: the same total on any number of threads.
    let values: Vec<f64> = clustered
        .par_iter()
        .map(|&i| {
            if size[label(i)] < 2 {
                return 0.0;
            }
            let mut sums = vec![0.0f64; k];
            let pi = points.row(i);
            for &j in &clustered {
                let d = pi.iter().zip(points.row(j)).map(|(a, b)| (a - b).powi(2)).sum::<f64>().sqrt();
                sums[label(j)] += d;
            }
            let a = sums[label(i)] / (size[label(i)] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != label(i) && size[c] > 0)
                .map(|c| sums[c] / size[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let m = a.max(b);
            if m > 0.0 && b.is_finite() {
                (b - a) / m
            } else {
                0.0
            }
        })
        .collect();
    values.iter().sum::<f64>() / clustered.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four blobs of 40 in 10-D and 4 far outliers.
    fn blobs() -> Array2<f32> {
        let mut rng = Rng::new(3);
        Array2::from_shape_fn((164, 10), |(i, j)| {
            if i >= 160 {
                return 40.0 * (i - 159) as f32 * if j % 2 == 0 { 1.0 } else { -1.0 };
            }
            let centre = if j == i % 4 { 12.0 } else { 0.0 };
            centre + rng.next_f64() as f32
        })
    }

    fn small() -> FeatureOptions {
        FeatureOptions { components: vec![2], min_cluster_sizes: vec![5, 10], ..FeatureOptions::default() }
    }

    #[test]
    fn blobs_are_found_and_outliers_are_noise() {
        let x = blobs();
        let c = cluster_features(x.view(), &small());
        assert_eq!(c.k, 4, "{:?}", c.trials);
        for i in 0..160 {
            assert_eq!(c.labels[i], c.labels[i % 4], "image {i}");
            assert!(c.labels[i].is_some());
        }
        assert_eq!(c.trials.len(), 4, "2 metrics × 1 component count × 2 sizes");
        assert!(c.score() > 0.5);
        assert_eq!(c.map.len(), 164);
        let members = c.members();
        assert_eq!(members.iter().map(Vec::len).sum::<usize>(), 164 - c.trials[c.chosen].noise);
        let (m, d) = c.medoid(&members[0]);
        assert!(members[0].contains(&m));
        assert_eq!(d[members[0].iter().position(|&i| i == m).unwrap()], 0.0);
    }

    #[test]
    fn same_seed_same_clusters_and_the_grid_is_recorded() {
        let x = blobs();
        let a = cluster_features(x.view(), &small());
        let b = cluster_features(x.view(), &small());
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.trials, b.trials);
        assert_eq!(a.map, b.map);
        let best = a.trials.iter().filter_map(|t| t.silhouette).fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(a.trials[a.chosen].silhouette, Some(best), "the chosen trial scores highest");
    }

    #[test]
    fn the_result_does_not_depend_on_the_number_of_threads() {
        let x = blobs();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| cluster_features(x.view(), &small()))
        };
        let (one, three) = (run(1), run(3));
        assert_eq!(one.labels, three.labels);
        assert_eq!(one.trials, three.trials);
        assert_eq!(one.map, three.map);
        // The principal components (the layout's start) too, on enough rows for several chunks.
        let wide = Array2::from_shape_fn((9000, 12), |(i, j)| ((i * 31 + j * 7) % 23) as f32 + (i % 5) as f32);
        let pca = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| super::super::neighbours::pca(wide.view(), 3, 1))
        };
        assert_eq!(pca(1), pca(3));
    }

    #[test]
    fn without_an_embedding_hdbscan_clusters_the_features() {
        let x = blobs();
        let c = cluster_features(x.view(), &FeatureOptions { embed: Embed::None, ..small() });
        assert_eq!(c.k, 4);
        assert!(c.trials.iter().all(|t| t.components == 0 && t.metric == Metric::Euclidean));
        assert!((160..164).all(|i| c.labels[i].is_none()), "outliers are noise");
    }

    #[test]
    fn silhouette_excludes_noise_and_samples_with_its_seed() {
        let p = Array2::from_shape_vec((5, 1), vec![0.0, 1.0, 10.0, 11.0, 100.0]).unwrap();
        let labels = [Some(0), Some(0), Some(1), Some(1), None];
        // Every point: a = 1; b = 10.5 for the outer points (0 and 11), 9.5 for the inner ones.
        let s0 = (10.5 - 1.0) / 10.5;
        let s1 = (9.5 - 1.0) / 9.5;
        let expected = (s0 + s1 + s1 + s0) / 4.0;
        assert!((silhouette(&p, &labels, 100, 0) - expected).abs() < 1e-12);
        let sample = silhouette(&p, &labels, 2, 7);
        assert_eq!(sample, silhouette(&p, &labels, 2, 7));
    }
}
