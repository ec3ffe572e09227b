//! Root-cause clusters of one layer's heatmaps, HUDD's way (../shared/docs/hudd-reference.md §3):
//!
//! 1. `D` = Euclidean distances between the flattened heatmaps ([`crate::distance`]).
//! 2. `Dn` = `D` with each row divided by its maximum.
//! 3. Ward linkage on the rows of `Dn` (each image is its profile of distances to the others).
//! 4. For every `k = 2..=clamp(N/2, 2, 500)`: WICD of the cut into `k` clusters, on `Dn`.
//! 5. `k` = the knee ([`knee::kneedle`], concave increasing, S = 1) of the fourth-order gradient
//!    of the WICD curve ([`knee::gradient_o4`], dx = 4). Where kneedle finds no knee, the
//!    fallback is the point of the gradient curve farthest above the chord joining its ends (the
//!    knee without kneedle's threshold), or the smallest `k` for a flat curve; the result says so.
//! 6. Score = WICD on `D` at that `k`; the best layer has the lowest score (the input excluded).
//!
//! Alternatives ([`Options`]): Ward or average linkage directly on `D`, a fixed `k`, heatmaps
//! normalised before the distances, and the silhouette of the partition as the layer score.

pub mod causes;
pub mod density;
pub mod feature;
pub mod knee;
pub mod map;
pub mod metadata;
pub mod neighbours;
pub mod report;
pub mod stats;
pub mod umap;

use kodama::{linkage, Method as Kodama};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::distance::{self, Normalize};

/// HUDD's largest `k`.
pub const MAX_K: usize = 500;

/// Which tree is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Linkage {
    /// Ward on the rows of the row-max-normalised distance matrix (HUDD).
    #[default]
    WardRows,
    /// Ward on the heatmaps themselves (their Euclidean distances).
    Ward,
    /// Average linkage on the heatmap distances.
    Average,
}

impl Linkage {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            Linkage::WardRows => "ward-rows",
            Linkage::Ward => "ward",
            Linkage::Average => "average",
        }
    }
}

impl std::fmt::Display for Linkage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the best layer is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LayerRule {
    /// Lowest WICD on the raw distances at the chosen `k` (HUDD).
    #[default]
    Wicd,
    /// Highest mean silhouette of the chosen partition.
    Silhouette,
}

impl LayerRule {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            LayerRule::Wicd => "wicd",
            LayerRule::Silhouette => "silhouette",
        }
    }
}

impl std::fmt::Display for LayerRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The clustering method, as `--method` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Method {
    /// HUDD: Ward on the rows of the row-max-normalised distances, k by the knee of WICD.
    #[default]
    Hudd,
    /// Ward linkage on the features, k by the knee.
    Ward,
    /// Average linkage on the feature distances, k by the knee.
    Average,
    /// The feature-space path: UMAP (or the features, `--embed none`), then HDBSCAN, which leaves
    /// noise ([`feature`]).
    Hdbscan,
}

impl Method {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Hudd => "hudd",
            Method::Ward => "ward",
            Method::Average => "average",
            Method::Hdbscan => "hdbscan",
        }
    }

    /// The tree a tree method cuts (`None` for HDBSCAN).
    pub fn linkage(self) -> Option<Linkage> {
        match self {
            Method::Hudd => Some(Linkage::WardRows),
            Method::Ward => Some(Linkage::Ward),
            Method::Average => Some(Linkage::Average),
            Method::Hdbscan => None,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Clustering options; the defaults are HUDD's.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    /// The tree.
    pub linkage: Linkage,
    /// Heatmap normalisation before distances.
    pub normalize: Normalize,
    /// Best-layer rule.
    pub layer_rule: LayerRule,
    /// A fixed number of clusters instead of the knee.
    pub fixed_k: Option<usize>,
    /// The feature-space path instead of a tree (`--method hdbscan`); `linkage`, `fixed_k` and
    /// `layer_rule` do not apply then (the layer rule is the silhouette).
    pub feature: Option<feature::FeatureOptions>,
}

impl Options {
    /// The method these options run.
    pub fn method(&self) -> Method {
        match (&self.feature, self.linkage) {
            (Some(_), _) => Method::Hdbscan,
            (None, Linkage::WardRows) => Method::Hudd,
            (None, Linkage::Ward) => Method::Ward,
            (None, Linkage::Average) => Method::Average,
        }
    }
}

/// How `k` was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "method")]
pub enum KChoice {
    /// kneedle's knee of the WICD gradient (HUDD).
    Knee,
    /// No knee: the fallback described in the module documentation.
    Fallback {
        /// Why, and what was chosen.
        reason: String,
    },
    /// Given by the user.
    Fixed,
    /// The number of clusters HDBSCAN found (the feature path has no `k` to choose).
    Hdbscan,
}

/// One layer's clusters.
#[derive(Debug, Clone)]
pub struct LayerClusters {
    /// The `k` values tried.
    pub ks: Vec<usize>,
    /// WICD on the normalised distances, per `k`.
    pub wicd: Vec<f64>,
    /// Its fourth-order gradient (what the knee is sought on).
    pub gradient: Vec<f64>,
    /// The chosen number of clusters.
    pub k: usize,
    /// How it was chosen.
    pub choice: KChoice,
    /// WICD on the raw distances at `k`.
    pub score: f64,
    /// Mean silhouette of the partition (raw distances).
    pub silhouette: f64,
    /// Cluster index per image, `0..k`, clusters numbered by size (largest first), ties by their
    /// first member.
    pub labels: Vec<usize>,
    /// The tree: merge `s` joins the two clusters named (leaves `0..N`, merge `s` makes `N + s`).
    pub merges: Vec<[usize; 2]>,
    /// Each merge's height (the linkage's dissimilarity).
    pub heights: Vec<f64>,
    /// The distances the partition was made from (after normalisation), `N × N` (`0 × 0` once
    /// [`report::cluster_all`] has written them to the run folder and no longer needs them).
    pub distances: Array2<f64>,
}

impl LayerClusters {
    /// The members of each cluster, in image order.
    pub fn members(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.k];
        for (i, &l) in self.labels.iter().enumerate() {
            out[l].push(i);
        }
        out
    }

    /// The medoid of `members` (least total distance to the others; the first on ties) and each
    /// member's distance to it.
    pub fn medoid(&self, members: &[usize]) -> (usize, Vec<f64>) {
        let total = |i: usize| members.iter().map(|&j| self.distances[[i, j]]).sum::<f64>();
        let best = members.iter().copied().fold(None, |best: Option<(usize, f64)>, i| {
            let t = total(i);
            match best {
                Some((_, bt)) if bt <= t => best,
                _ => Some((i, t)),
            }
        });
        let m = best.map_or(0, |(i, _)| i);
        (m, members.iter().map(|&j| self.distances[[m, j]]).collect())
    }
}

/// Largest `k` tried for `n` images: `clamp(n/2, 2, 500)`, at most `n`.
pub fn max_k(n: usize) -> usize {
    (n / 2).clamp(2, MAX_K).min(n)
}

/// Clusters the rows of `heatmaps` (`N × D`, N ≥ 2).
pub fn cluster_layer(heatmaps: ArrayView2<'_, f32>, options: &Options) -> LayerClusters {
    let d = distance::pairwise(heatmaps, options.normalize);
    cluster_distances(d, options)
}

/// Clusters from a precomputed distance matrix `d` (`N × N`, symmetric, zero diagonal, N ≥ 2).
pub fn cluster_distances(d: Array2<f64>, options: &Options) -> LayerClusters {
    let n = d.nrows();
    let dn = distance::row_max_normalized(&d);
    let mut condensed = match options.linkage {
        Linkage::WardRows => distance::condensed(&distance::pairwise(dn.view(), Normalize::None)),
        Linkage::Ward | Linkage::Average => distance::condensed(&d),
    };
    let method = if options.linkage == Linkage::Average { Kodama::Average } else { Kodama::Ward };
    let dendrogram = linkage(&mut condensed, n, method);
    let merges: Vec<[usize; 2]> = dendrogram.steps().iter().map(|s| [s.cluster1, s.cluster2]).collect();
    let heights: Vec<f64> = dendrogram.steps().iter().map(|s| s.dissimilarity).collect();
    let ks: Vec<usize> = (2..=max_k(n)).collect();
    let wicd = wicd_curve(&dn, &merges, &ks);
    let gradient = knee::gradient_o4(&wicd, 4.0);
    let (k, choice) = match options.fixed_k {
        Some(k) => (k.clamp(1, n), KChoice::Fixed),
        None => choose_k(&ks, &gradient),
    };
    let labels = cut(&merges, n, k);
    LayerClusters {
        score: wicd_of(&d, &labels),
        silhouette: silhouette(&d, &labels),
        ks,
        wicd,
        gradient,
        k,
        choice,
        labels,
        merges,
        heights,
        distances: d,
    }
}

fn choose_k(ks: &[usize], gradient: &[f64]) -> (usize, KChoice) {
    let x: Vec<f64> = ks.iter().map(|&k| k as f64).collect();
    if let Some(k) = knee::kneedle(&x, gradient, 1.0, knee::Curve::Concave, knee::Direction::Increasing) {
        return (k as usize, KChoice::Knee);
    }
    let lo = gradient.iter().fold(f64::INFINITY, |m, &v| m.min(v));
    let hi = gradient.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    if ks.len() < 3 || hi <= lo || !hi.is_finite() {
        let k = ks.first().copied().unwrap_or(2);
        return (
            k,
            KChoice::Fallback {
                reason: format!(
                    "kneedle found no knee: the WICD gradient has {} point(s) and is flat; k = {k}, the smallest tried",
                    ks.len()
                ),
            },
        );
    }
    let span = (ks.len() - 1) as f64;
    let best = (0..ks.len())
        .map(|i| ((gradient[i] - lo) / (hi - lo) - i as f64 / span, i))
        .fold((f64::NEG_INFINITY, 0), |b, c| if c.0 > b.0 { c } else { b })
        .1;
    (
        ks[best],
        KChoice::Fallback {
            reason: format!(
                "kneedle found no knee above its threshold; k = {}, the point of the WICD gradient farthest above the chord joining its ends",
                ks[best]
            ),
        },
    )
}

/// Cluster labels after replaying the first `n − k` merges (SciPy's cluster numbering of the
/// dendrogram: leaves `0..n`, the cluster made at step `i` is `n + i`), renumbered by size
/// ([`canonical`]). The viewer re-cuts the report's tree with the same function.
pub fn cut(merges: &[[usize; 2]], n: usize, k: usize) -> Vec<usize> {
    hudd_report::cut(merges, n, k)
}

pub use hudd_report::canonical;

/// `WICD(M, labels) = (1/K)·Σ_{|c| ≥ 2} (|c|/N)·mean_{i<j ∈ c} M[i][j]` (the upper triangle of
/// `M`; singletons count in `K` and add 0).
pub fn wicd_of(m: &Array2<f64>, labels: &[usize]) -> f64 {
    let n = labels.len();
    let k = labels.iter().max().map_or(0, |&l| l + 1);
    let mut sum = vec![0.0f64; k];
    let mut size = vec![0usize; k];
    for i in 0..n {
        size[labels[i]] += 1;
        for j in i + 1..n {
            if labels[i] == labels[j] {
                sum[labels[i]] += m[[i, j]];
            }
        }
    }
    let total: f64 = (0..k)
        .filter(|&c| size[c] >= 2)
        .map(|c| size[c] as f64 / n as f64 * sum[c] / (size[c] * (size[c] - 1) / 2) as f64)
        .sum();
    total / k.max(1) as f64
}

/// WICD for every `k` in `ks`, replaying the merges from the leaves: each pair of images is visited
/// once, when its two clusters merge, so the whole curve costs `O(N²)`.
fn wicd_curve(m: &Array2<f64>, merges: &[[usize; 2]], ks: &[usize]) -> Vec<f64> {
    let n = m.nrows();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut within: Vec<f64> = vec![0.0; n + merges.len()];
    let term = |size: usize, w: f64| {
        if size >= 2 {
            size as f64 / n as f64 * w / (size * (size - 1) / 2) as f64
        } else {
            0.0
        }
    };
    let mut total = 0.0f64;
    let mut at_k = std::collections::HashMap::new();
    let mut clusters = n;
    if ks.contains(&clusters) {
        at_k.insert(clusters, 0.0);
    }
    for (step, &[a, b]) in merges.iter().enumerate() {
        let (ma, mb) = (std::mem::take(&mut members[a]), std::mem::take(&mut members[b]));
        let mut cross = 0.0f64;
        for &i in &ma {
            for &j in &mb {
                cross += if i < j { m[[i, j]] } else { m[[j, i]] };
            }
        }
        let w = within[a] + within[b] + cross;
        total += term(ma.len() + mb.len(), w) - term(ma.len(), within[a]) - term(mb.len(), within[b]);
        within[n + step] = w;
        let mut merged = ma;
        merged.extend(mb);
        members.push(merged);
        clusters -= 1;
        if ks.contains(&clusters) {
            at_k.insert(clusters, total / clusters as f64);
        }
    }
    ks.iter().map(|k| at_k.get(k).copied().unwrap_or(0.0)).collect()
}

/// Mean silhouette over all images (a singleton's is 0, as scikit-learn defines it).
pub fn silhouette(d: &Array2<f64>, labels: &[usize]) -> f64 {
    let n = labels.len();
    let k = labels.iter().max().map_or(0, |&l| l + 1);
    if k < 2 || n == 0 {
        return 0.0;
    }
    let mut size = vec![0usize; k];
    for &l in labels {
        size[l] += 1;
    }
    let total: f64 = (0..n)
        .map(|i| {
            if size[labels[i]] < 2 {
                return 0.0;
            }
            let mut sums = vec![0.0f64; k];
            for j in 0..n {
                sums[labels[j]] += d[[i, j]];
            }
            let a = sums[labels[i]] / (size[labels[i]] - 1) as f64;
            let b = (0..k)
                .filter(|&c| c != labels[i] && size[c] > 0)
                .map(|c| sums[c] / size[c] as f64)
                .fold(f64::INFINITY, f64::min);
            let m = a.max(b);
            if m > 0.0 {
                (b - a) / m
            } else {
                0.0
            }
        })
        .sum();
    total / n as f64
}

/// The best layer's index among `layers` (name, clusters): lowest score (WICD) or highest
/// silhouette; layers for which `exclude` holds (the input) do not compete.
pub fn best_layer<'a>(
    layers: impl IntoIterator<Item = (&'a str, &'a LayerClusters)>,
    rule: LayerRule,
    exclude: impl Fn(&str) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, (name, c)) in layers.into_iter().enumerate() {
        if exclude(name) {
            continue;
        }
        let v = match rule {
            LayerRule::Wicd => c.score,
            LayerRule::Silhouette => -c.silhouette,
        };
        if best.is_none_or(|(_, b)| v < b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated blobs in 2-D.
    fn blobs() -> Array2<f32> {
        let v = crate::relevance::linear::tests::values(60 * 2, 7);
        Array2::from_shape_fn((60, 2), |(i, j)| {
            let centre = [[0.0, 0.0], [50.0, 0.0], [0.0, 50.0]][i % 3][j];
            centre + v[i * 2 + j]
        })
    }

    #[test]
    fn separated_blobs_are_found() {
        let x = blobs();
        for linkage in [Linkage::WardRows, Linkage::Ward, Linkage::Average] {
            let c = cluster_layer(x.view(), &Options { linkage, fixed_k: Some(3), ..Options::default() });
            for (i, &l) in c.labels.iter().enumerate() {
                assert_eq!(l, c.labels[i % 3], "{}: image {i}", linkage.name());
            }
            assert!(c.silhouette > 0.9);
        }
    }

    #[test]
    fn incremental_wicd_equals_the_definition() {
        let x = blobs();
        let d = distance::pairwise(x.view(), Normalize::None);
        let dn = distance::row_max_normalized(&d);
        let mut condensed = distance::condensed(&d);
        let dend = linkage(&mut condensed, 60, Kodama::Ward);
        let merges: Vec<[usize; 2]> = dend.steps().iter().map(|s| [s.cluster1, s.cluster2]).collect();
        let ks: Vec<usize> = (2..=30).collect();
        let curve = wicd_curve(&dn, &merges, &ks);
        for (&k, &w) in ks.iter().zip(&curve) {
            let direct = wicd_of(&dn, &cut(&merges, 60, k));
            assert!((w - direct).abs() < 1e-12 * direct.abs().max(1.0), "k = {k}: {w} vs {direct}");
        }
    }

    #[test]
    fn the_tree_cut_at_k_is_the_partition() {
        let x = blobs();
        let c = cluster_layer(x.view(), &Options { fixed_k: Some(5), ..Options::default() });
        assert_eq!(c.merges.len(), 59);
        assert_eq!(c.heights.len(), 59);
        assert!(c.heights.windows(2).all(|w| w[0] <= w[1]), "Ward heights never decrease");
        assert_eq!(cut(&c.merges, 60, 5), c.labels);
    }

    #[test]
    fn wicd_and_silhouette_by_hand() {
        let d = Array2::from_shape_vec((3, 3), vec![0.0, 1.0, 4.0, 1.0, 0.0, 5.0, 4.0, 5.0, 0.0]).unwrap();
        // Clusters {0,1}, {2}: (1/2)·(2/3)·1.
        assert!((wicd_of(&d, &[0, 0, 1]) - 1.0 / 3.0).abs() < 1e-12);
        // Silhouettes: 0: a=1, b=4 → 0.75; 1: a=1, b=5 → 0.8; 2: singleton → 0.
        assert!((silhouette(&d, &[0, 0, 1]) - (0.75 + 0.8) / 3.0).abs() < 1e-12);
    }

    #[test]
    fn max_k_is_hudds_clamp() {
        assert_eq!(max_k(2), 2);
        assert_eq!(max_k(3), 2);
        assert_eq!(max_k(29), 14);
        assert_eq!(max_k(5000), 500);
    }

    #[test]
    fn best_layer_excludes_the_input() {
        let x = blobs();
        let c = cluster_layer(x.view(), &Options::default());
        let mut worse = c.clone();
        worse.score += 1.0;
        let layers = [("input", &c), ("conv", &worse)];
        assert_eq!(best_layer(layers, LayerRule::Wicd, |n| n == "input"), Some(1));
        assert_eq!(best_layer(layers, LayerRule::Wicd, |_| false), Some(0));
    }
}
