//! Clustering a heatmaps folder (as `hudd heatmaps` writes it) layer by layer, and the files that
//! record it: `clusters.json` (parameters, per layer the WICD curve, `k`, score and clusters with
//! members, medoid and metadata explanations; the best layer, with its tree and 2-D map),
//! `distances/<layer>.npy` (the
//! `N × N` float32 distance matrix of each layer) and `timings.json` (kept apart so that reruns
//! of the same data give an identical `clusters.json`).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::causes::CauseScores;
use super::feature::{cluster_features, FeatureOptions, Trial};
use super::metadata::{explain, Explanation, Metadata};
use super::{cluster_distances, KChoice, LayerClusters, LayerRule, Linkage, Method, Options};
use crate::distance::{self, Normalize};
use crate::error::{Error, Result};
use crate::fsio::write_json;
use crate::heatmaps::{Features, HeatmapSet, LayerFile};
use crate::npy::NpyWriter;
use crate::progress::Progress;
use crate::relevance::Preset;
use crate::run::RunDir;

/// `clusters.json`'s format name.
pub const FORMAT: &str = "hudd-clusters";
/// Its version. 2: explanations carry `separation`, `p_value`, `explains`, `range` and
/// `histogram` (a version-1 file's explanations were never assessed against the threshold).
/// 3: the best layer carries its `tree` and `map`; a layer its `causes` when the data has a
/// `cause` column. 4: `parameters.method` and the feature path (`hdbscan`): a layer's `noise`,
/// its `feature_path` trials, `k_choice` `hdbscan`, no distances file.
pub const FORMAT_VERSION: u32 = 4;

/// The parameters a clustering ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parameters {
    /// `hudd`, `ward`, `average` or `hdbscan` (absent before version 4: the tree method that
    /// `linkage` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// The feature path's options and seed (`hdbscan`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_path: Option<FeatureOptions>,
    /// `ward-rows` (HUDD), `ward` or `average`.
    pub linkage: Linkage,
    /// `none` (HUDD), `l2` or `cosine`.
    pub normalize: Normalize,
    /// `wicd` (HUDD) or `silhouette`.
    pub layer_rule: LayerRule,
    /// A fixed k, if any.
    pub fixed_k: Option<usize>,
    /// How k is chosen otherwise.
    pub k_selection: String,
    /// The LRP preset of the heatmaps.
    pub preset: Preset,
    /// `activations` when the layers' activations were clustered instead of their heatmaps.
    #[serde(default, skip_serializing_if = "Features::is_heatmaps")]
    pub features: Features,
}

/// One point of a layer's WICD curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Number of clusters.
    pub k: usize,
    /// WICD on the normalised distances.
    pub wicd: f64,
    /// Its fourth-order gradient.
    pub gradient: f64,
}

/// One member of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Image path (relative to the dataset root).
    pub image: String,
    /// Distance to the cluster's medoid (the layer's distances).
    pub distance_to_medoid: f64,
}

/// One cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterEntry {
    /// 1-based, the largest cluster first.
    pub id: usize,
    /// Number of members.
    pub size: usize,
    /// The member with the least total distance to the others.
    pub medoid: String,
    /// Members in image order.
    pub members: Vec<Member>,
    /// Metadata columns ranked by how well they explain the cluster (empty without metadata).
    pub explanations: Vec<Explanation>,
}

/// One layer's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerResult {
    /// ONNX tensor name.
    pub name: String,
    /// Heatmap shape (without the image axis).
    pub shape: Vec<usize>,
    /// The heatmaps file (in the heatmaps folder).
    pub heatmaps: String,
    /// The distance matrix file (in `distances/`).
    pub distances: String,
    /// WICD curve.
    pub curve: Vec<CurvePoint>,
    /// Chosen k.
    pub k: usize,
    /// How k was chosen.
    pub k_choice: KChoice,
    /// The layer's score: WICD on the raw distances at k (lower is better) for the tree methods;
    /// for `hdbscan` the chosen trial's silhouette (higher is better, −1 without 2 clusters).
    pub score: f64,
    /// Mean silhouette of the partition.
    pub silhouette: f64,
    /// The clusters.
    pub clusters: Vec<ClusterEntry>,
    /// The tree the clusters were cut from (the best layer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<Tree>,
    /// A 2-D map of the images (the best layer only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<Map>,
    /// How well the clusters separate the known causes (a `cause` metadata column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causes: Option<CauseScores>,
    /// Images in no cluster (the feature path's noise), in image order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noise: Vec<String>,
    /// The feature path's grid on this layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_path: Option<LayerFeaturePath>,
}

/// What the feature path tried on a layer, and what it chose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerFeaturePath {
    /// Every trial, in grid order.
    pub trials: Vec<Trial>,
    /// Index of the chosen trial (the highest silhouette).
    pub chosen: usize,
    /// Principal components the features were reduced to before the neighbours, if they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pca: Option<usize>,
}

/// A layer's hierarchical clustering tree, numbered as SciPy numbers a linkage matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// Leaf `i` is this image (the heatmaps' image order).
    pub images: Vec<String>,
    /// The clusters each merge joins: leaves `0..N`, merge `s` makes cluster `N + s`.
    pub merges: Vec<[usize; 2]>,
    /// Each merge's height (the linkage's dissimilarity).
    pub heights: Vec<f64>,
}

/// A 2-D map of a layer's images ([`super::map`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Map {
    /// How the points were computed.
    pub method: String,
    /// Share of the distances' variance the two axes show, 0–1.
    pub explained: f64,
    /// Point `i` is this image.
    pub images: Vec<String>,
    /// `[x, y]` per image.
    pub points: Vec<[f64; 2]>,
}

/// `clusters.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClustersReport {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// hudd's version.
    pub hudd_version: String,
    /// Parameters.
    pub parameters: Parameters,
    /// Number of clustered images.
    pub images: usize,
    /// The input tensor (never the best layer).
    pub input_layer: Option<String>,
    /// The explained output tensor (never the best layer: its heatmap is the start vector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_layer: Option<String>,
    /// The best layer's tensor name.
    pub best_layer: Option<String>,
    /// Layers in index order.
    pub layers: Vec<LayerResult>,
    /// Where the timings are (`timings.json`).
    pub timings: String,
}

impl Parameters {
    /// The method (files before version 4 name only the tree).
    pub fn method(&self) -> Method {
        self.method.unwrap_or(match self.linkage {
            Linkage::WardRows => Method::Hudd,
            Linkage::Ward => Method::Ward,
            Linkage::Average => Method::Average,
        })
    }
}

impl ClustersReport {
    /// Reads `RUN/clusters.json`, checking its format.
    pub fn read(run: &RunDir) -> Result<ClustersReport> {
        Ok(Self::read_with_bytes(run)?.0)
    }

    /// [`read`](Self::read), with the file's bytes (the report's id hashes them).
    pub fn read_with_bytes(run: &RunDir) -> Result<(ClustersReport, Vec<u8>)> {
        let path = run.clusters_json();
        let text = crate::fsio::read(&path, crate::fsio::FILE_LIMIT).map_err(|e| {
            Error::io("the run is incomplete: clusters.json is missing (rerun `hudd analyze`)", &path, e)
        })?;
        let bad = |reason: String| Error::Bundle { path: path.clone(), reason };
        // What `hudd analyze` wrote, as its stage log recorded it: an edited file is not read.
        let log = crate::run::StageLog::read(run);
        if let Some(recorded) = log.recorded_sha256(crate::run::Stage::Clusters, "clusters.json") {
            if recorded != crate::fsio::sha256_hex(&text) {
                return Err(bad(
                    "clusters.json was changed after `hudd analyze` wrote it (RUN/stages.json records another \
                     SHA-256); hudd reads only the clustering it made: rerun `hudd analyze`"
                        .into(),
                ));
            }
        }
        let c: ClustersReport =
            serde_json::from_slice(&text).map_err(|e| bad(format!("clusters.json is not valid: {e}")))?;
        if c.format != FORMAT {
            return Err(bad(format!("format `{}` is not `{FORMAT}`", c.format)));
        }
        if c.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "clusters.json version {} is newer than this hudd reads ({FORMAT_VERSION}); update hudd",
                c.format_version
            )));
        }
        Ok((c, text))
    }
}

/// Seconds per stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// `(stage, seconds)` in order.
    pub stages: Vec<(String, f64)>,
}

impl Timings {
    /// Adds `seconds` to `stage` (created at the end if new).
    pub fn add(&mut self, stage: &str, seconds: f64) {
        match self.stages.iter_mut().find(|(s, _)| s == stage) {
            Some((_, t)) => *t += seconds,
            None => self.stages.push((stage.to_string(), seconds)),
        }
    }

    /// Adds every stage of `other`.
    pub fn extend(&mut self, other: &Timings) {
        for (s, v) in &other.stages {
            self.add(s, *v);
        }
    }

    /// As the report records them.
    pub fn to_schema(&self) -> Vec<hudd_report::Timing> {
        self.stages
            .iter()
            .map(|(stage, seconds)| hudd_report::Timing { stage: stage.clone(), seconds: *seconds })
            .collect()
    }
}

/// A clustering of every layer, in memory.
#[derive(Debug, Clone)]
pub struct Clustering {
    /// What `clusters.json` holds.
    pub report: ClustersReport,
    /// Per layer (index order) the tree method's partition; empty for the feature path (its
    /// result is all in the report) and when the clustering was read back from a run
    /// folder (`clusters.json`). The distances are on disk (`distances/`); in memory only the best
    /// layer's are kept, the others are `0 × 0`.
    pub layers: Vec<LayerClusters>,
    /// Timings of the stages run here.
    pub timings: Timings,
}

impl Clustering {
    /// The best layer's index.
    pub fn best(&self) -> Option<usize> {
        let name = self.report.best_layer.as_ref()?;
        self.report.layers.iter().position(|l| &l.name == name)
    }

    /// The paper's RQ1 measure on the best layer: of the clusters with 2 or more images, how many
    /// have a numeric metadata column whose variance within the cluster is at least 50 % below its
    /// variance over all clustered images; `(explained, clusters)`.
    /// `None` without a best layer.
    pub fn rq1(&self) -> Option<(usize, usize)> {
        let best = self.best()?;
        let clusters: Vec<&ClusterEntry> = self.report.layers[best].clusters.iter().filter(|c| c.size >= 2).collect();
        let explained = clusters
            .iter()
            .filter(|c| c.explanations.iter().any(|e| e.kind == hudd_report::ColumnKind::Numeric && e.reduction >= 0.5))
            .count();
        Some((explained, clusters.len()))
    }

    /// The best layer's scores against the known causes, if the data has a `cause` column.
    pub fn causes(&self) -> Option<&CauseScores> {
        self.report.layers.get(self.best()?)?.causes.as_ref()
    }

    /// On the best layer: of the clusters with 2 or more images, how many a metadata column
    /// explains (see [`super::metadata`]); `(explained, clusters)`. `None` without a best layer
    /// or without metadata.
    pub fn explained(&self) -> Option<(usize, usize)> {
        let best = self.best()?;
        let clusters: Vec<&ClusterEntry> = self.report.layers[best].clusters.iter().filter(|c| c.size >= 2).collect();
        if clusters.iter().all(|c| c.explanations.is_empty()) {
            return None;
        }
        Some((clusters.iter().filter(|c| c.explanations.iter().any(|e| e.explains)).count(), clusters.len()))
    }
}

/// Clusters every layer of `set` into the run folder `run`. `metadata`, when given, has one row
/// per image of the set.
///
/// Each layer's `N × N` distances are written to `distances/<layer>.npy` as soon as the layer is
/// clustered and then dropped, except those of the best layer so far (its map needs them), so
/// memory holds one layer's distances and the best one's, not every layer's. An earlier
/// `clusters.json` is removed first: the folder is complete again only when [`write`] or
/// [`write_clusters`] writes the new one.
pub fn cluster_all(
    set: &HeatmapSet,
    options: &Options,
    metadata: Option<&Metadata>,
    run: &RunDir,
    progress: &dyn Progress,
) -> Result<Clustering> {
    let n = set.images().len();
    if n < 2 {
        return Err(Error::TooFewImages { stage: "clustering", needed: 2, found: n, path: None });
    }
    if let Some(m) = metadata {
        if m.rows.len() != n {
            return Err(Error::Mismatch {
                what: "metadata and heatmaps",
                reason: format!("{} metadata rows for {n} images", m.rows.len()),
            });
        }
    }
    let json = run.clusters_json();
    if json.exists() {
        std::fs::remove_file(&json).map_err(|e| Error::io("cannot remove old result", &json, e))?;
    }
    let input_layer = set.input_layer().map(|l| l.tensor.clone());
    let output_layer = set.index.output_layer.clone();
    let excluded = |name: &str| input_layer.as_deref() == Some(name) || output_layer.as_deref() == Some(name);
    // The best layer so far, by the rule of `best_layer` (the first of equal values wins).
    let mut best_so_far: Option<(usize, f64)> = None;
    // The best layer's map: its distances (tree methods) or its points (the feature path).
    let mut best_map: Option<BestMap> = None;
    let mut timings = Timings::default();
    let mut layers: Vec<LayerClusters> = Vec::new();
    let mut reports = Vec::new();
    let layer_rule = if options.feature.is_some() { LayerRule::Silhouette } else { options.layer_rule };
    progress.start("clusters", set.layers().len() as u64);
    for (i, entry) in set.layers().iter().enumerate() {
        let x = set.layer(i)?;
        let (report, value, map) = match &options.feature {
            Some(feature) => {
                let t = Instant::now();
                let f = cluster_features(x.view(), feature);
                drop(x);
                timings.add("feature path", t.elapsed().as_secs_f64());
                let report = feature_layer(entry, set.images(), &f, metadata);
                (report, -f.score(), BestMap::Points(f.map))
            }
            None => {
                let t = Instant::now();
                let d = distance::pairwise(x.view(), options.normalize);
                drop(x);
                timings.add("distances", t.elapsed().as_secs_f64());
                let t = Instant::now();
                let mut c = cluster_distances(d, options);
                timings.add("clustering", t.elapsed().as_secs_f64());
                let report = tree_layer(entry, set.images(), &c, metadata);
                write_distances(run, &entry.file, &c.distances)?;
                let value = match layer_rule {
                    LayerRule::Wicd => c.score,
                    LayerRule::Silhouette => -c.silhouette,
                };
                let distances = std::mem::replace(&mut c.distances, ndarray::Array2::zeros((0, 0)));
                let tree = Tree { images: set.images().to_vec(), merges: c.merges.clone(), heights: c.heights.clone() };
                layers.push(c);
                (report, value, BestMap::Distances(distances, tree))
            }
        };
        if !excluded(&entry.tensor) && best_so_far.is_none_or(|(_, b)| value < b) {
            best_so_far = Some((i, value));
            best_map = Some(map);
        }
        reports.push(report);
        progress.advance(1);
    }
    progress.finish();
    let best = best_so_far.map(|(i, _)| i);
    if let (Some(b), Some(map)) = (best, best_map) {
        match map {
            BestMap::Distances(d, tree) => {
                let t = Instant::now();
                let map = super::map::classical_mds(&d);
                timings.add("map", t.elapsed().as_secs_f64());
                reports[b].tree = Some(tree);
                reports[b].map = Some(Map {
                    method: super::map::METHOD.into(),
                    explained: map.explained,
                    images: set.images().to_vec(),
                    points: map.points,
                });
            }
            BestMap::Points(points) => {
                let method = match options.feature.as_ref().map(|f| f.embed) {
                    Some(super::feature::Embed::None) => "the first two principal components of the layer's features",
                    _ => "UMAP of the layer's features (2 components, the feature path's graph)",
                };
                reports[b].map =
                    Some(Map { method: method.into(), explained: 0.0, images: set.images().to_vec(), points });
            }
        }
    }
    let method = options.method();
    let k_selection = match method {
        Method::Hdbscan => "HDBSCAN (excess of mass) on the UMAP embedding; the grid's trial with the highest silhouette (noise excluded)",
        _ => "kneedle (kneed 0.8.5: concave, increasing, S = 1) on gradientO4(WICD, dx = 4), k = 2..=clamp(N/2, 2, 500)",
    };
    let report = ClustersReport {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        hudd_version: crate::VERSION.into(),
        parameters: Parameters {
            method: Some(method),
            feature_path: options.feature.clone(),
            linkage: options.linkage,
            normalize: options.normalize,
            layer_rule,
            fixed_k: options.fixed_k.filter(|_| method != Method::Hdbscan),
            k_selection: k_selection.into(),
            preset: set.index.preset,
            features: set.index.features,
        },
        images: n,
        input_layer,
        output_layer,
        best_layer: best.map(|i| reports[i].name.clone()),
        layers: reports,
        timings: "timings.json".into(),
    };
    Ok(Clustering { report, layers, timings })
}

/// What the best layer's map is made from.
enum BestMap {
    /// A tree method's distances and tree.
    Distances(ndarray::Array2<f64>, Tree),
    /// The feature path's 2-D points.
    Points(Vec<[f64; 2]>),
}

/// A tree method's layer result.
fn tree_layer(entry: &LayerFile, images: &[String], c: &LayerClusters, metadata: Option<&Metadata>) -> LayerResult {
    let members = c.members();
    let explanations = metadata.map(|m| explain(m, &members)).unwrap_or_else(|| vec![Vec::new(); members.len()]);
    let causes = metadata.and_then(|m| super::causes::score(m, &members));
    let clusters = entries(images, &members, explanations, |m| c.medoid(m));
    LayerResult {
        name: entry.tensor.clone(),
        shape: entry.shape.clone(),
        heatmaps: entry.file.clone(),
        distances: entry.file.clone(),
        curve: c
            .ks
            .iter()
            .zip(&c.wicd)
            .zip(&c.gradient)
            .map(|((&k, &wicd), &gradient)| CurvePoint { k, wicd, gradient })
            .collect(),
        k: c.k,
        k_choice: c.choice.clone(),
        score: c.score,
        silhouette: c.silhouette,
        clusters,
        tree: None,
        map: None,
        causes,
        noise: Vec::new(),
        feature_path: None,
    }
}

/// The feature path's layer result: explanations compare a cluster with the other clustered
/// images (noise is in no comparison), known causes count clustered images only.
fn feature_layer(
    entry: &LayerFile,
    images: &[String],
    f: &super::feature::FeatureClusters,
    metadata: Option<&Metadata>,
) -> LayerResult {
    let members = f.members();
    let clustered: Vec<usize> = (0..images.len()).filter(|&i| f.labels[i].is_some()).collect();
    let explanations = match metadata {
        Some(m) => {
            let position: std::collections::HashMap<usize, usize> =
                clustered.iter().enumerate().map(|(p, &i)| (i, p)).collect();
            let sub = m.subset(&clustered);
            let local: Vec<Vec<usize>> = members.iter().map(|g| g.iter().map(|i| position[i]).collect()).collect();
            explain(&sub, &local)
        }
        None => vec![Vec::new(); members.len()],
    };
    let causes = metadata.and_then(|m| super::causes::score(m, &members));
    let clusters = entries(images, &members, explanations, |m| f.medoid(m));
    let score = f.score();
    LayerResult {
        name: entry.tensor.clone(),
        shape: entry.shape.clone(),
        heatmaps: entry.file.clone(),
        distances: String::new(),
        curve: Vec::new(),
        k: f.k,
        k_choice: KChoice::Hdbscan,
        score,
        silhouette: score,
        clusters,
        tree: None,
        map: None,
        causes,
        noise: (0..images.len()).filter(|&i| f.labels[i].is_none()).map(|i| images[i].clone()).collect(),
        feature_path: Some(LayerFeaturePath { trials: f.trials.clone(), chosen: f.chosen, pca: f.pca }),
    }
}

/// The clusters' entries: id, size, medoid, members with their distance to it, explanations.
fn entries(
    images: &[String],
    members: &[Vec<usize>],
    explanations: Vec<Vec<Explanation>>,
    medoid: impl Fn(&[usize]) -> (usize, Vec<f64>),
) -> Vec<ClusterEntry> {
    members
        .iter()
        .zip(explanations)
        .enumerate()
        .map(|(id, (m, explanations))| {
            let (centre, dist) = medoid(m);
            ClusterEntry {
                id: id + 1,
                size: m.len(),
                medoid: images[centre].clone(),
                members: m
                    .iter()
                    .zip(dist)
                    .map(|(&i, d)| Member { image: images[i].clone(), distance_to_medoid: d })
                    .collect(),
                explanations,
            }
        })
        .collect()
}

/// Writes `timings.json`, then `clusters.json` (the distances are already written by
/// [`cluster_all`]). `clusters.json` is written last: its presence marks a complete result.
pub fn write(run: &RunDir, analysis: &Clustering) -> Result<()> {
    write_json(&run.timings_json(), "timings", &analysis.timings)?;
    write_clusters(run, analysis)
}

/// Writes `clusters.json` (the distances are already written by [`cluster_all`]).
pub fn write_clusters(run: &RunDir, analysis: &Clustering) -> Result<()> {
    write_json(&run.clusters_json(), "clusters", &analysis.report)
}

/// `distances/<file>`: the `N × N` matrix as float32.
fn write_distances(run: &RunDir, file: &str, d: &ndarray::Array2<f64>) -> Result<()> {
    let n = d.nrows();
    let mut w = NpyWriter::create(&run.distances(file), &[n, n])?;
    let mut row: Vec<f32> = Vec::with_capacity(n);
    for r in d.rows() {
        row.clear();
        row.extend(r.iter().map(|&v| v as f32));
        w.append(&row)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::feature::{FeatureClusters, Trial};
    use crate::cluster::neighbours::Metric;

    /// Noise is in no comparison: a cluster is explained against the other *clustered* images.
    #[test]
    fn feature_path_explanations_leave_the_noise_out() {
        // Cluster 1: images 0..20 (eyelid 0.20–0.29); cluster 2: 20..40 (0.60–0.69); noise: 40..60,
        // drawn like cluster 1. With the noise among "the others", cluster 1's KS distance would be 0.5.
        let eyelid = |i: usize| if (20..40).contains(&i) { 0.6 } else { 0.2 } + (i % 10) as f64 / 100.0;
        let images: Vec<String> = (0..60).map(|i| format!("{i}.png")).collect();
        let meta = Metadata {
            columns: vec!["eyelid".into()],
            rows: (0..60).map(|i| vec![format!("{:.2}", eyelid(i))]).collect(),
            info: Vec::new(),
        };
        let labels: Vec<Option<usize>> = (0..60).map(|i| [Some(0), Some(1), None][i / 20]).collect();
        let trial = Trial {
            metric: Metric::Euclidean,
            components: 2,
            min_cluster_size: 5,
            clusters: 2,
            noise: 20,
            silhouette: Some(0.5),
        };
        let f = FeatureClusters {
            labels,
            k: 2,
            trials: vec![trial],
            chosen: 0,
            points: ndarray::Array2::from_shape_fn((60, 2), |(i, j)| eyelid(i) * (j + 1) as f64),
            map: vec![[0.0, 0.0]; 60],
            pca: None,
            timings: Vec::new(),
        };
        let entry = LayerFile {
            tensor: "conv".into(),
            file: "conv.npy".into(),
            shape: vec![4],
            node: String::new(),
            op: String::new(),
            rule: None,
        };
        let r = feature_layer(&entry, &images, &f, Some(&meta));
        assert_eq!(r.noise, images[40..].to_vec());
        assert_eq!(r.clusters.iter().map(|c| c.size).collect::<Vec<_>>(), [20, 20]);
        let first = &r.clusters[0].explanations[0];
        assert_eq!(first.column, "eyelid");
        assert_eq!(first.separation, 1.0, "compared with cluster 2 only: {first:?}");
        assert_eq!(r.k_choice, KChoice::Hdbscan);
        assert!(r.distances.is_empty() && r.curve.is_empty());
    }
}
