//! Step 4 of HUDD: the unsafe set. Improvement images (labelled or not) are explained at the run's
//! best layer with the run's preset and start rule, their distance to every root-cause cluster of
//! 2 or more members is the distance to the nearest member (single linkage, the clustering's own
//! distance and normalisation), and HUDD's ClosestU allocation picks the images to label:
//!
//! - each cluster has a quota of ceil(2 × its test members);
//! - repeatedly, the globally closest (image, cluster) pair whose cluster still has room is taken;
//!   an image whose closest cluster is full goes to its next-closest cluster with room;
//! - it stops when every quota is filled or every image is assigned. There is no distance
//!   threshold, and no sentinel value (the original marked used pairs with 1000.0, which breaks
//!   when distances exceed it).
//!
//! Improvement heatmaps are computed in batches and reduced at once to one distance per cluster
//! (one matrix product per batch against the members' heatmaps): memory holds the members and one
//! batch, never the whole improvement set.
//!
//! The two halves are apart: [`distances`] (the heatmaps and distances: the cost, shardable with
//! `--shard I/N`, see [`crate::shard`]) and [`allocate`] (ClosestU over all images at once). A
//! shard folder holds its images' `distances.csv` and `skipped.csv`; [`merge_shards`] allocates
//! over the concatenation and writes the same files as the unsharded run.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cluster::report::ClustersReport;
use crate::config::Config;
use crate::dataset::Skipped;
use crate::distance::{self, Normalize};
use crate::error::{Error, Result};
use crate::fsio::{write_atomic, write_json};
use crate::heatmaps::{self, Features, HeatmapOptions, HeatmapSet, ImageRef, Layers, StartRule};
use crate::model::Model;
use crate::pictures;
use crate::progress::{Progress, Silent};
use crate::relevance::{Explainer, Preset};
use crate::run::{RunDir, RunRecord};
use crate::shard::{Shard, ShardRecord, Stage};

/// `unsafe.json`'s format name.
pub const FORMAT: &str = "hudd-unsafe";
/// Its version.
pub const FORMAT_VERSION: u32 = 1;

/// One image picked by ClosestU.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// Row of the image in the distance matrix.
    pub image: usize,
    /// Column (cluster) it was assigned to.
    pub cluster: usize,
    /// Its distance to that cluster.
    pub distance: f64,
    /// Order of selection within the cluster, from 1.
    pub rank: usize,
}

/// `(distance, image, cluster)` ordered by `f64::total_cmp`, then image, then cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate(f64, usize, usize);

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1)).then(self.2.cmp(&other.2))
    }
}

/// HUDD's ClosestU allocation (see the module documentation) on `distances[image][cluster]`
/// (NaN distances are never picked) with one quota per cluster; picks in selection order. Ties go
/// to the lower image, then the lower cluster.
pub fn closest_u(distances: &[Vec<f64>], quotas: &[usize]) -> Vec<Pick> {
    // Each image's clusters, nearest first.
    let order: Vec<Vec<usize>> = distances
        .iter()
        .map(|row| {
            let mut c: Vec<usize> = (0..row.len().min(quotas.len())).filter(|&c| !row[c].is_nan()).collect();
            c.sort_by(|&a, &b| row[a].total_cmp(&row[b]).then(a.cmp(&b)));
            c
        })
        .collect();
    // One entry per image: its nearest cluster not yet known to be full.
    let mut next = vec![0usize; distances.len()];
    let mut heap: BinaryHeap<Reverse<Candidate>> = order
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.first().map(|&c| Reverse(Candidate(distances[i][c], i, c))))
        .collect();
    let mut fill = vec![0usize; quotas.len()];
    let mut room: usize = quotas.iter().sum();
    let mut picks = Vec::new();
    while room > 0 {
        let Some(Reverse(Candidate(d, i, c))) = heap.pop() else { break };
        if fill[c] < quotas[c] {
            fill[c] += 1;
            room -= 1;
            picks.push(Pick { image: i, cluster: c, distance: d, rank: fill[c] });
            continue;
        }
        // Full: the image competes again with its next-closest cluster that has room.
        next[i] += 1;
        while let Some(&c2) = order[i].get(next[i]) {
            if fill[c2] < quotas[c2] {
                heap.push(Reverse(Candidate(distances[i][c2], i, c2)));
                break;
            }
            next[i] += 1;
        }
    }
    picks
}

/// ClosestU's quota of a cluster with `members` test members: ceil(2 × members).
pub fn quota(members: usize) -> usize {
    2 * members
}

/// One cluster of the unsafe set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterFill {
    /// Cluster id at the best layer.
    pub cluster: usize,
    /// Its test members (Wrong test images).
    pub test_members: usize,
    /// ceil(2 × test members).
    pub quota: usize,
    /// Improvement images assigned to it.
    pub fill: usize,
}

/// One assigned improvement image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assigned {
    /// Path relative to the improvement folder.
    pub image: String,
    /// The file.
    #[serde(skip)]
    pub path: PathBuf,
    /// Cluster id.
    pub cluster: usize,
    /// Distance to the cluster's nearest member.
    pub distance: f64,
    /// Order of selection within the cluster, from 1.
    pub rank: usize,
}

/// The parameters the unsafe set was made with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignParameters {
    /// `closest-u` (HUDD).
    pub mode: String,
    /// The layer (the run's best layer).
    pub layer: String,
    /// The run's LRP preset.
    pub preset: Preset,
    /// The run's start rule.
    pub start: String,
    /// The run's heatmap normalisation.
    pub normalize: Normalize,
    /// What was compared: the images' heatmaps, or their activations when the run clustered
    /// activations (absent: heatmaps, as in files written before it existed).
    #[serde(default, skip_serializing_if = "Features::is_heatmaps")]
    pub features: Features,
    /// `single linkage` (distance to the nearest member).
    pub distance: String,
    /// The improvement folder.
    pub improvement: String,
}

/// `unsafe.json`: the unsafe set's record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsafeRecord {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// hudd's version.
    pub hudd_version: String,
    /// Parameters.
    pub parameters: AssignParameters,
    /// Improvement images explained.
    pub candidates: usize,
    /// Improvement images that could not be read.
    pub skipped: Vec<Skipped>,
    /// Per cluster of 2 or more members: quota and fill.
    pub clusters: Vec<ClusterFill>,
    /// Seeds of random choices: ClosestU makes none (`null`); `hudd bootstrap` records its own.
    pub seed: Option<u64>,
    /// SHA-256 of the run's `clusters.json` the set was assigned to: once the run is analysed
    /// again, the stages after `hudd assign` refuse the set (absent in sets written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters_sha256: Option<String>,
    /// Each unsafe image's SHA-256 (path relative to the improvement folder → hex): an image
    /// replaced since `hudd assign` is refused by the stages that read it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub images_sha256: std::collections::BTreeMap<String, String>,
}

impl UnsafeRecord {
    /// Why the set no longer belongs to `run` (analysed again since, or an unsafe image changed),
    /// or `None` when it does.
    pub fn stale(&self, run: &RunDir) -> Result<Option<String>> {
        if let Some(recorded) = &self.clusters_sha256 {
            let now = crate::fsio::sha256_file(&run.clusters_json())?;
            if &now != recorded {
                return Ok(Some(
                    "the unsafe set was assigned to other clusters than the run's clusters.json (the run was \
                     analysed again since `hudd assign`); rerun `hudd assign`"
                        .into(),
                ));
            }
        }
        // Hashed in parallel, as `UnsafeSet::write` hashed them; the first changed image by name.
        let improvement = Path::new(&self.parameters.improvement);
        let changed = self.images_sha256.par_iter().find_map_first(|(image, recorded)| {
            let now = crate::fsio::sha256_file(&improvement.join(image)).ok();
            (now.as_ref() != Some(recorded)).then(|| (image, now.is_some()))
        });
        Ok(changed.map(|(image, exists)| {
            format!(
                "the unsafe image `{image}` {} since `hudd assign` (in {}); rerun `hudd assign`",
                if exists { "changed" } else { "is gone or unreadable" },
                improvement.display()
            )
        }))
    }
}

/// The unsafe set, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsafeSet {
    /// What `unsafe.json` holds.
    pub record: UnsafeRecord,
    /// The assigned images, by cluster id, then rank.
    pub assigned: Vec<Assigned>,
    /// Every image's distances (`distances.csv`).
    pub distances: Distances,
}

/// The whole step on a run folder: the run's model (or `model`, which must be the analysed one) and
/// configuration (`batch_size` overriding its `[run] batch_size`), the improvement images of `dir`
/// (default: the run's improvement split), [`distances`] (the listing's skips first), [`allocate`],
/// then [`UnsafeSet::write`].
pub fn assign_run(
    run: &RunDir,
    model: Option<&Path>,
    dir: Option<&Path>,
    batch_size: Option<usize>,
    gif_per_minute: f64,
    progress: &dyn Progress,
) -> Result<UnsafeSet> {
    let (config, model, dir, images, listing) = prepare(run, model, dir, batch_size)?;
    let mut d = distances(&model, &config, run, &images, &dir, progress)?;
    // The folder's files that are not images first, then the images that could not be read.
    d.skipped.splice(0..0, listing);
    let set = allocate(d);
    set.write(run, gif_per_minute, 256)?;
    Ok(set)
}

/// What the merge of assign shards needs besides the distances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardParameters {
    /// As recorded in `unsafe.json`.
    pub parameters: AssignParameters,
    /// The improvement folder, absolute (the images are copied from there).
    pub improvement_path: PathBuf,
    /// The unsafe set's clusters (id, test members), in column order.
    pub clusters: Vec<(usize, usize)>,
    /// SHA-256 of the run's `clusters.json`: a run analysed again since is refused.
    pub clusters_sha256: String,
    /// The improvement folder's files that are not images or not regular files (every shard
    /// lists the same folder; the merge records them once, as an unsharded run does).
    #[serde(default)]
    pub listing_skipped: Vec<Skipped>,
}

/// [`assign_run`]'s first half for `shard` of the improvement images: writes the shard folder
/// `RUN/shards/assign-<I>-of-<N>/` (`distances.csv`, `skipped.csv`, `shard.json` last). Returns the
/// folder and the shard's distances.
pub fn assign_shard(
    run: &RunDir,
    model: Option<&Path>,
    dir: Option<&Path>,
    batch_size: Option<usize>,
    shard: Shard,
    progress: &dyn Progress,
) -> Result<(PathBuf, Distances)> {
    let (config, model, dir, images, listing) = prepare(run, model, dir, batch_size)?;
    let batch = config.run.batch_size.max(1);
    let out = crate::shard::begin(run.root(), Stage::Assign, shard)?;
    let part = &images[shard.range(images.len(), batch)];
    let d = distances(&model, &config, run, part, &dir, progress)?;
    write_atomic(&out.join("distances.csv"), &d.csv(&out.join("distances.csv"))?)?;
    let skipped_path = out.join("skipped.csv");
    let mut w = csv::Writer::from_writer(Vec::new());
    let bad = |e: csv::Error| Error::Output { what: "shard", path: skipped_path.clone(), reason: e.to_string() };
    w.write_record(["image", "reason"]).map_err(bad)?;
    for k in &d.skipped {
        w.write_record([&k.image, &k.reason]).map_err(bad)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Output {
        what: "shard",
        path: skipped_path.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(&skipped_path, &bytes)?;
    let clusters_sha256 = crate::fsio::sha256_file(&run.clusters_json())?;
    let improvement_path = std::path::absolute(&dir).map_err(|e| Error::io("cannot resolve the folder", &dir, e))?;
    let parameters = ShardParameters {
        parameters: d.parameters.clone(),
        improvement_path,
        clusters: d.clusters.clone(),
        clusters_sha256: clusters_sha256.clone(),
        listing_skipped: listing,
    };
    let names: Vec<&str> = images.iter().map(|i| i.image.as_str()).collect();
    let params = serde_json::to_value(&parameters).map_err(|e| Error::Output {
        what: "shard",
        path: out.clone(),
        reason: e.to_string(),
    })?;
    let params_text = params.to_string();
    let identity = [model.sha256(), &clusters_sha256, &params_text, &names.join("\n")];
    ShardRecord::new(Stage::Assign, shard, batch, images.len(), part.len(), &identity, params).write(&out)?;
    Ok((out, d))
}

/// Allocates the unsafe set over the complete set of assign shards (see [`crate::shard::find`])
/// and writes `RUN/unsafe/` as [`assign_run`] does: the same bytes.
pub fn merge_shards(run: &RunDir, shards: &[(PathBuf, ShardRecord)], gif_per_minute: f64) -> Result<UnsafeSet> {
    let Some((first_dir, first)) = shards.first() else {
        return Err(Error::Shards { path: run.root().to_path_buf(), reason: "no shard to merge".into() });
    };
    let p: ShardParameters = first.parameters(first_dir)?;
    let now = crate::fsio::sha256_file(&run.clusters_json())?;
    if now != p.clusters_sha256 {
        return Err(Error::Shards {
            path: run.clusters_json(),
            reason: "the run was analysed again after the shards were made; rerun the assign shards".into(),
        });
    }
    let mut d = Distances {
        parameters: p.parameters.clone(),
        clusters: p.clusters.clone(),
        images: Vec::new(),
        paths: Vec::new(),
        rows: Vec::new(),
        skipped: p.listing_skipped.clone(),
    };
    let mut seen: std::collections::HashMap<String, PathBuf> = std::collections::HashMap::new();
    for (dir, shard) in shards {
        let csv = dir.join("distances.csv");
        let (images, rows) = Distances::read_csv(&csv, &p.clusters)?;
        let sp = dir.join("skipped.csv");
        let mut skipped = Vec::new();
        let mut r = crate::fsio::csv_reader(&sp)
            .map_err(|e| Error::Shards { path: sp.clone(), reason: format!("unreadable: {e}") })?;
        for rec in r.records() {
            let rec = rec.map_err(|e| Error::Shards { path: sp.clone(), reason: format!("unreadable: {e}") })?;
            skipped.push(Skipped {
                image: rec.get(0).unwrap_or_default().into(),
                reason: rec.get(1).unwrap_or_default().into(),
            });
        }
        // What the shard wrote must be what it took: every image once, in one shard, still there.
        let bad = |reason: String| Error::Shards { path: csv.clone(), reason: format!("{reason}; rerun this shard") };
        if images.len() + skipped.len() != shard.taken {
            return Err(bad(format!(
                "{} image(s) and {} skip(s), but the shard took {} images (shard.json)",
                images.len(),
                skipped.len(),
                shard.taken
            )));
        }
        for name in images.iter().chain(skipped.iter().map(|s| &s.image)) {
            if let Some(other) = seen.insert(name.clone(), dir.clone()) {
                return Err(bad(format!("`{name}` is listed twice (also in {})", other.display())));
            }
        }
        for (name, row) in images.iter().zip(&rows) {
            if let Some(v) = row.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
                return Err(bad(format!("`{name}` has the distance {v}; distances are finite and not negative")));
            }
            if !p.improvement_path.join(name).is_file() {
                return Err(bad(format!("`{name}` is not in {} any more", p.improvement_path.display())));
            }
        }
        d.paths.extend(images.iter().map(|i| p.improvement_path.join(i)));
        d.images.extend(images);
        d.rows.extend(rows);
        d.skipped.extend(skipped);
    }
    let set = allocate(d);
    set.write(run, gif_per_minute, 256)?;
    Ok(set)
}

/// The distances of improvement images to the clusters of the unsafe set ([`distances`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Distances {
    /// As recorded in `unsafe.json`.
    pub parameters: AssignParameters,
    /// The clusters of 2 or more members: (id, test members), in column order.
    pub clusters: Vec<(usize, usize)>,
    /// The images explained (paths relative to the improvement folder), in row order.
    pub images: Vec<String>,
    /// Their files.
    pub paths: Vec<PathBuf>,
    /// Per image, its distance to each cluster (nearest member).
    pub rows: Vec<Vec<f64>>,
    /// Improvement images that could not be read.
    pub skipped: Vec<Skipped>,
}

impl Distances {
    /// `distances.csv`: `image,cluster_<id>,…` (shortest round-trip decimal of each distance).
    fn csv(&self, path: &Path) -> Result<Vec<u8>> {
        let bad = |e: csv::Error| Error::Output { what: "unsafe set", path: path.to_path_buf(), reason: e.to_string() };
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["image".to_string()];
        header.extend(self.clusters.iter().map(|(id, _)| format!("cluster_{id}")));
        w.write_record(&header).map_err(bad)?;
        for (image, row) in self.images.iter().zip(&self.rows) {
            let mut rec = vec![image.clone()];
            rec.extend(row.iter().map(|v| format!("{v}")));
            w.write_record(&rec).map_err(bad)?;
        }
        w.into_inner().map_err(|e| Error::Output {
            what: "unsafe set",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Reads a shard's `distances.csv` (its images and rows), checking its columns.
    fn read_csv(path: &Path, clusters: &[(usize, usize)]) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
        let bad = |reason: String| Error::Shards { path: path.to_path_buf(), reason };
        let mut r = crate::fsio::csv_reader(path).map_err(|e| bad(format!("unreadable: {e}")))?;
        let header = r.headers().map_err(|e| bad(format!("unreadable: {e}")))?.clone();
        let want: Vec<String> = std::iter::once("image".to_string())
            .chain(clusters.iter().map(|(id, _)| format!("cluster_{id}")))
            .collect();
        if !header.iter().eq(want.iter().map(String::as_str)) {
            return Err(bad(format!("its columns are not {}", want.join(","))));
        }
        let (mut images, mut rows) = (Vec::new(), Vec::new());
        for rec in r.records() {
            let rec = rec.map_err(|e| bad(format!("unreadable: {e}")))?;
            images.push(rec[0].to_string());
            let row = rec.iter().skip(1).map(|v| v.parse::<f64>()).collect::<std::result::Result<Vec<f64>, _>>();
            rows.push(row.map_err(|e| bad(format!("a distance of `{}` is not a number: {e}", &rec[0])))?);
        }
        Ok((images, rows))
    }
}

/// The configuration (`batch_size` overriding its `[run] batch_size`), the model, the improvement
/// folder, its images and the skips of its listing.
type Prepared = (Config, Model, PathBuf, Vec<ImageRef>, Vec<Skipped>);

fn prepare(run: &RunDir, model: Option<&Path>, dir: Option<&Path>, batch_size: Option<usize>) -> Result<Prepared> {
    let (record, mut config, model) = run_model(run, model)?;
    if let Some(b) = batch_size {
        config.run.batch_size = b.max(1);
    }
    let (dir, images, listing) = improvement_images(&record, &config, dir)?;
    Ok((config, model, dir, images, listing))
}

/// The run's configuration (as `run.json` recorded it) and the model to explain with: `model`, or
/// the file the run recorded; refused when its SHA-256 is not the analysed model's.
pub fn run_model(run: &RunDir, model: Option<&Path>) -> Result<(RunRecord, Config, Model)> {
    let record = RunRecord::read(run)?;
    let bad = |reason: String| Error::Bundle { path: run.run_json(), reason };
    let config = record.config(run)?;
    let path = match (model, &record.model_path) {
        (Some(m), _) => m.to_path_buf(),
        (None, Some(p)) => PathBuf::from(p),
        (None, None) => {
            return Err(bad(
                "the run does not record its model file (made by an older hudd); give it with --model".into()
            ))
        }
    };
    let model = Model::load(&path)?;
    if model.sha256() != record.model.sha256 {
        return Err(Error::ModelInterface {
            path,
            reason: format!(
                "this is not the model the run analysed (SHA-256 {} instead of {}); give that model with --model",
                model.sha256(),
                record.model.sha256
            ),
        });
    }
    Ok((record, config, model))
}

/// The improvement images: every image under `dir` (recursively; class folders are not read as
/// labels), or under the run's dataset's improvement split (`improvement/` or `ImprovementSet/`).
/// For a regressor, the targets of a `manifest.csv` in that folder go with the images, for the
/// start rules that need them (HUDD's worst keypoint). Also returns the folder's files that are not
/// images (or not regular files: pipes, devices), each with the reason: skips of the listing.
pub fn improvement_images(
    record: &RunRecord,
    config: &Config,
    dir: Option<&Path>,
) -> Result<(PathBuf, Vec<ImageRef>, Vec<Skipped>)> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let root = record.data_root.as_ref().ok_or_else(|| Error::DatasetLayout {
                path: PathBuf::from("run.json"),
                reason: "the run does not record its dataset (made by an older hudd); give --improvement DIR".into(),
            })?;
            let root = PathBuf::from(root);
            ["improvement", "ImprovementSet"].iter().map(|n| root.join(n)).find(|p| p.is_dir()).ok_or_else(|| {
                Error::DatasetLayout {
                    path: root.clone(),
                    reason: "the dataset has no improvement split; give --improvement DIR".into(),
                }
            })?
        }
    };
    let (mut images, listing) = heatmaps::images_to_explain(&dir, &[])?;
    if images.is_empty() {
        return Err(Error::DatasetLayout { path: dir, reason: "no image found".into() });
    }
    if config.task.kind == crate::config::TaskKind::Regression {
        let targets = crate::dataset::manifest_targets(&dir, &config.task)?;
        for im in &mut images {
            im.targets = targets.get(&im.path).cloned();
        }
    }
    Ok((dir, images, listing))
}

/// [`assign_run`]'s first half: the distance of every image of `images` to every cluster of 2 or more
/// members at the run's best layer.
pub fn distances(
    model: &Model,
    config: &Config,
    run: &RunDir,
    images: &[ImageRef],
    improvement: &Path,
    progress: &dyn Progress,
) -> Result<Distances> {
    let batch_size = config.run.batch_size;
    let spec = config.input_spec(model.info())?;
    let output = &model.info().outputs[config.task.output_index(model.info())?].name;
    let clusters = ClustersReport::read(run)?;
    let bad = |reason: String| Error::Bundle { path: run.clusters_json(), reason };
    let best = clusters.best_layer.clone().ok_or_else(|| bad("the run has no best layer to assign to".into()))?;
    let layer = clusters
        .layers
        .iter()
        .find(|l| l.name == best)
        .ok_or_else(|| bad(format!("the best layer `{best}` has no clustering")))?;
    let set = HeatmapSet::open(&run.heatmaps())?;
    let li = set.layers().iter().position(|l| l.tensor == best).ok_or_else(|| {
        if set.index.dropped.contains(&best) {
            Error::Bundle {
                path: run.heatmaps().join("index.json"),
                reason: format!(
                    "the run did not keep the heatmaps of its best layer `{best}` (`hudd analyze \
                         --keep-heatmaps none`); rerun `hudd analyze` with --keep-heatmaps best or all"
                ),
            }
        } else {
            bad(format!("the run's heatmaps have no layer `{best}` (rerun `hudd analyze`)"))
        }
    })?;
    let heat = set.layer(li)?;
    let row_of: std::collections::HashMap<&str, usize> =
        set.images().iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    // The members of every cluster of 2 or more, as rows of one matrix.
    let eligible: Vec<&crate::cluster::report::ClusterEntry> = layer.clusters.iter().filter(|c| c.size >= 2).collect();
    if eligible.is_empty() {
        return Err(bad(format!("no cluster of `{best}` has 2 or more members: nothing to assign to")));
    }
    let mut owner = Vec::new();
    let mut rows = Vec::new();
    for (k, c) in eligible.iter().enumerate() {
        for m in &c.members {
            let r = *row_of
                .get(m.image.as_str())
                .ok_or_else(|| bad(format!("cluster member `{}` has no heatmap (rerun `hudd analyze`)", m.image)))?;
            rows.push(r);
            owner.push(k);
        }
    }
    let members: Array2<f32> = heat.select(Axis(0), &rows);
    drop(heat);
    let explainer = Explainer::new(model, &spec.domain(), output, set.index.preset)?;
    let (explainer, spec) = (&explainer, &spec);
    let start: StartRule = set.index.start.parse().map_err(|e: String| bad(e))?;
    let options = HeatmapOptions {
        preset: set.index.preset,
        layers: Layers::Names(vec![best.clone()]),
        start: start.clone(),
        batch_size: batch_size.max(1),
        // The clusters were made from these: heatmaps or activations.
        features: set.index.features,
        // Kept in memory: computed and compared in f32.
        dtype: crate::npy::Dtype::F32,
    };
    let normalize = clusters.parameters.normalize;
    let chunk = batch_size.max(1) * rayon::current_num_threads().max(1) * 4;
    let mut names: Vec<usize> = Vec::new();
    let mut dist: Vec<Vec<f64>> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    let by_name: std::collections::HashMap<&str, usize> =
        images.iter().enumerate().map(|(i, im)| (im.image.as_str(), i)).collect();
    progress.start("assign", images.len() as u64);
    for part in images.chunks(chunk) {
        let h = heatmaps::compute(explainer, spec, part, &options, &Silent)?;
        skipped.extend(h.index.skipped.iter().cloned());
        if !h.images().is_empty() {
            let x = h.layer(0)?;
            let d = distance::cross(x.view(), members.view(), normalize);
            let reduced: Vec<Vec<f64>> = (0..d.nrows())
                .into_par_iter()
                .map(|i| {
                    let mut best = vec![f64::INFINITY; eligible.len()];
                    for (&k, &v) in owner.iter().zip(d.row(i).iter()) {
                        best[k] = best[k].min(v);
                    }
                    best
                })
                .collect();
            names.extend(h.images().iter().map(|n| by_name[n.as_str()]));
            dist.extend(reduced);
        }
        progress.advance(part.len() as u64);
    }
    progress.finish();
    Ok(Distances {
        parameters: AssignParameters {
            mode: "closest-u".into(),
            layer: best,
            preset: set.index.preset,
            start: start.to_string(),
            normalize,
            features: set.index.features,
            distance: "single linkage (distance to the nearest member)".into(),
            improvement: improvement.display().to_string(),
        },
        clusters: eligible.iter().map(|c| (c.id, c.size)).collect(),
        images: names.iter().map(|&i| images[i].image.clone()).collect(),
        paths: names.iter().map(|&i| images[i].path.clone()).collect(),
        rows: dist,
        skipped,
    })
}

/// [`assign_run`]'s second half: HUDD's ClosestU over all the images of `d`.
pub fn allocate(d: Distances) -> UnsafeSet {
    let quotas: Vec<usize> = d.clusters.iter().map(|&(_, size)| quota(size)).collect();
    let picks = closest_u(&d.rows, &quotas);
    let mut fill = vec![0usize; d.clusters.len()];
    let mut assigned: Vec<Assigned> = picks
        .iter()
        .map(|p| {
            fill[p.cluster] += 1;
            Assigned {
                image: d.images[p.image].clone(),
                path: d.paths[p.image].clone(),
                cluster: d.clusters[p.cluster].0,
                distance: p.distance,
                rank: p.rank,
            }
        })
        .collect();
    assigned.sort_by_key(|a| (a.cluster, a.rank));
    let record = UnsafeRecord {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        hudd_version: crate::VERSION.into(),
        parameters: d.parameters.clone(),
        candidates: d.rows.len(),
        skipped: d.skipped.clone(),
        clusters: d
            .clusters
            .iter()
            .zip(&quotas)
            .zip(&fill)
            .map(|((&(cluster, test_members), &quota), &fill)| ClusterFill { cluster, test_members, quota, fill })
            .collect(),
        seed: None,
        clusters_sha256: None,
        images_sha256: Default::default(),
    };
    UnsafeSet { record, assigned, distances: d }
}

impl UnsafeSet {
    /// Writes `RUN/unsafe/`: `unsafe.csv` (`image,cluster,distance,rank`), `distances.csv`
    /// (`image,cluster_<id>,…`: every explained image's distance to every cluster), `to-label.csv`
    /// (`image,cluster,label`, label empty), per cluster a folder of its images and a GIF, and
    /// `unsafe.json` last (it marks the set complete; an old one is removed first).
    /// `unsafe.json` records the SHA-256 of `clusters.json` and of every assigned image (see
    /// [`UnsafeRecord::stale`]).
    pub fn write(&self, run: &RunDir, gif_per_minute: f64, max_side: u32) -> Result<()> {
        let mut record = self.record.clone();
        record.clusters_sha256 = Some(crate::fsio::sha256_file(&run.clusters_json())?);
        record.images_sha256 = self
            .assigned
            .par_iter()
            .map(|a| Ok((a.image.clone(), crate::fsio::sha256_file(&a.path)?)))
            .collect::<Result<_>>()?;
        let dir = run.unsafe_dir();
        let json = run.unsafe_json();
        if json.exists() {
            std::fs::remove_file(&json).map_err(|e| Error::io("cannot remove old result", &json, e))?;
        }
        for c in &self.record.clusters {
            crate::fsio::remove_dir_if_exists(&run.unsafe_cluster(c.cluster), "cannot remove old cluster folder")?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create folder", &dir, e))?;
        let csv = |header: &str, row: &dyn Fn(&Assigned) -> Vec<String>| -> Result<Vec<u8>> {
            let mut w = csv::Writer::from_writer(Vec::new());
            let bad = |e: csv::Error| Error::Output { what: "unsafe set", path: dir.clone(), reason: e.to_string() };
            w.write_record(header.split(',')).map_err(bad)?;
            for a in &self.assigned {
                w.write_record(row(a)).map_err(bad)?;
            }
            w.into_inner().map_err(|e| Error::Output { what: "unsafe set", path: dir.clone(), reason: e.to_string() })
        };
        let unsafe_csv = csv("image,cluster,distance,rank", &|a| {
            vec![a.image.clone(), a.cluster.to_string(), format!("{}", a.distance), a.rank.to_string()]
        })?;
        write_atomic(&run.unsafe_csv(), &unsafe_csv)?;
        write_atomic(&run.unsafe_distances(), &self.distances.csv(&run.unsafe_distances())?)?;
        let to_label = csv("image,cluster,label", &|a| vec![a.image.clone(), a.cluster.to_string(), String::new()])?;
        write_atomic(&run.to_label_csv(), &to_label)?;
        self.record.clusters.par_iter().try_for_each(|c| -> Result<()> {
            let members: Vec<&Assigned> = self.assigned.iter().filter(|a| a.cluster == c.cluster).collect();
            if members.is_empty() {
                return Ok(());
            }
            let cdir = run.unsafe_cluster(c.cluster);
            std::fs::create_dir_all(&cdir).map_err(|e| Error::io("cannot create folder", &cdir, e))?;
            let mut frames = Vec::with_capacity(members.len());
            for a in &members {
                pictures::copy(&a.path, &cdir.join(crate::run::member_file(&a.image)))?;
                frames.push(pictures::open(&a.path)?);
            }
            let refs: Vec<&image::DynamicImage> = frames.iter().collect();
            pictures::write_gif(&run.unsafe_gif(c.cluster), &refs, gif_per_minute, max_side)
        })?;
        write_json(&json, "unsafe set", &record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_u_equals_the_python_reference() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/assign/closest_u.json");
        let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 5);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let dist: Vec<Vec<f64>> = serde_json::from_value(case["distances"].clone()).unwrap();
            let members: Vec<usize> = serde_json::from_value(case["members"].clone()).unwrap();
            let quotas: Vec<usize> = members.iter().map(|&m| quota(m)).collect();
            let want: Vec<usize> = serde_json::from_value(case["quotas"].clone()).unwrap();
            assert_eq!(quotas, want, "{name}");
            let got = closest_u(&dist, &quotas);
            let want = case["picks"].as_array().unwrap();
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g.image, w["image"].as_u64().unwrap() as usize, "{name}");
                assert_eq!(g.cluster, w["cluster"].as_u64().unwrap() as usize, "{name}");
                assert_eq!(g.rank, w["rank"].as_u64().unwrap() as usize, "{name}");
                assert_eq!(g.distance, w["distance"].as_f64().unwrap(), "{name}");
            }
        }
    }

    #[test]
    fn a_full_cluster_sends_the_image_to_its_next_closest() {
        // Every image prefers cluster 0, which takes one (quota 1); image 1 then competes for
        // cluster 1 (0.8) and wins it over image 2 (0.85); nothing is left for image 2.
        let d = vec![vec![0.1, 0.9], vec![0.2, 0.8], vec![5.0, 0.85]];
        let picks = closest_u(&d, &[1, 1]);
        let got: Vec<(usize, usize)> = picks.iter().map(|p| (p.image, p.cluster)).collect();
        assert_eq!(got, [(0, 0), (1, 1)]);
        assert!(closest_u(&d, &[0, 0]).is_empty());
        assert!(closest_u(&[vec![f64::NAN, 1.0]], &[1, 1]).iter().all(|p| p.cluster == 1));
    }
}
