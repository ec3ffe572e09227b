//! The run folder: one type, [`RunDir`], owns its layout, so that no other module joins its names.
//!
//! ```text
//! RUN/results/                  the evaluation (`hudd evaluate`'s files: one CSV per split, summary.json)
//! RUN/heatmaps/                 the Wrong test images' heatmaps (`hudd heatmaps`'s files: <tensor>.npy, index.json;
//!                               with `--keep-heatmaps best|none` only some layers, the others listed as `dropped`)
//! RUN/distances/<layer>.npy     each layer's N × N distances (float32)
//! RUN/clusters/<layer>/<id>/    each cluster's member images; for the best layer also overlays/*.png and mean-heatmap.png
//! RUN/clusters/<layer>/cluster-<id>.gif
//! RUN/timings.json              seconds per stage (apart, so that clusters.json repeats exactly)
//! RUN/run.json                  how the run was made, the model, the evaluation, the clustered images (RunRecord)
//! RUN/evaluation.json           the evaluation as read back by a resumed run (Evaluation)
//! RUN/clusters.json             the clusters (ClustersReport)
//! RUN/stages.json               the completed stages, their inputs' digests and files (StageLog)
//! RUN/complete.json             written after the report bundle: the whole run is complete (Completion)
//! RUN/unsafe/                   the unsafe set (`hudd assign`): unsafe.csv, distances.csv, to-label.csv, <id>/, cluster-<id>.gif, unsafe.json last
//! RUN/shards/<stage>-<I>-of-<N>/ shard folders of sharded stages (`--shard I/N`; see `shard`), merged by `hudd merge`
//! RUN/report/                   the report bundle, by default
//! RUN/.hudd-lock                the writer lock (see `lock`): held by the command writing the run
//! ```
//!
//! `hudd cluster --out OUT` writes the clustering part of this layout (`distances/`, `timings.json`,
//! `clusters.json`) into `OUT`, which is a [`RunDir`] too.

pub mod lock;
pub mod record;
pub mod stages;

use std::path::{Path, PathBuf};

pub use lock::RunLock;
pub use record::{RunImage, RunRecord};
pub use stages::{Stage, StageLog};

use crate::error::{Error, Result};
use crate::heatmaps::sanitize;

/// A run folder (see the module documentation). Only paths: creating it touches nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run folder at `root`.
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `results/`: the evaluation's files.
    pub fn results(&self) -> PathBuf {
        self.root.join("results")
    }

    /// `heatmaps/`: a heatmaps folder (index.json and one .npy per layer).
    pub fn heatmaps(&self) -> PathBuf {
        self.root.join("heatmaps")
    }

    /// `distances/<file>`: a layer's distance matrix (`file` is the layer's heatmaps file name).
    pub fn distances(&self, file: &str) -> PathBuf {
        self.root.join("distances").join(file)
    }

    /// `clusters.json`: the clusters.
    pub fn clusters_json(&self) -> PathBuf {
        self.root.join("clusters.json")
    }

    /// `evaluation.json`: the evaluation, every row, as a resumed run reads it back.
    pub fn evaluation_json(&self) -> PathBuf {
        self.root.join("evaluation.json")
    }

    /// `stages.json`: the completed stages (see [`StageLog`]).
    pub fn stages_json(&self) -> PathBuf {
        self.root.join("stages.json")
    }

    /// `timings.json`.
    pub fn timings_json(&self) -> PathBuf {
        self.root.join("timings.json")
    }

    /// `run.json` (see [`RunRecord`]).
    pub fn run_json(&self) -> PathBuf {
        self.root.join(record::FILE)
    }

    /// `clusters/`: the pictures of every layer's clusters.
    pub fn pictures(&self) -> PathBuf {
        self.root.join("clusters")
    }

    /// `clusters/<layer>/`.
    pub fn layer_pictures(&self, layer: &str) -> PathBuf {
        self.pictures().join(sanitize(layer))
    }

    /// `clusters/<layer>/<id>/`: the cluster's member images.
    pub fn cluster_folder(&self, layer: &str, id: usize) -> PathBuf {
        self.layer_pictures(layer).join(id.to_string())
    }

    /// A member's copy in its cluster folder: its dataset path with `/` → `__`, sanitised.
    pub fn member_copy(&self, layer: &str, id: usize, image: &str) -> PathBuf {
        self.cluster_folder(layer, id).join(member_file(image))
    }

    /// `clusters/<layer>/cluster-<id>.gif`.
    pub fn gif(&self, layer: &str, id: usize) -> PathBuf {
        self.layer_pictures(layer).join(format!("cluster-{id}.gif"))
    }

    /// A member's heatmap overlay: `clusters/<layer>/<id>/overlays/<member>.png`.
    pub fn overlay(&self, layer: &str, id: usize, image: &str) -> PathBuf {
        let png = Path::new(&member_file(image)).with_extension("png");
        self.cluster_folder(layer, id).join("overlays").join(png)
    }

    /// `clusters/<layer>/<id>/mean-heatmap.png`.
    pub fn mean_heatmap(&self, layer: &str, id: usize) -> PathBuf {
        self.cluster_folder(layer, id).join("mean-heatmap.png")
    }

    /// `unsafe/`: the unsafe set (`hudd assign`).
    pub fn unsafe_dir(&self) -> PathBuf {
        self.root.join("unsafe")
    }

    /// `unsafe/unsafe.csv`.
    pub fn unsafe_csv(&self) -> PathBuf {
        self.unsafe_dir().join("unsafe.csv")
    }

    /// `unsafe/unsafe.json`: parameters, quotas and fill; written last (marks the set complete).
    pub fn unsafe_json(&self) -> PathBuf {
        self.unsafe_dir().join("unsafe.json")
    }

    /// `unsafe/distances.csv`: every improvement image's distance to every cluster of the unsafe set.
    pub fn unsafe_distances(&self) -> PathBuf {
        self.unsafe_dir().join("distances.csv")
    }

    /// `unsafe/balanced.csv`: the labelled, balanced unsafe set (`hudd bootstrap`).
    pub fn balanced_csv(&self) -> PathBuf {
        self.unsafe_dir().join("balanced.csv")
    }

    /// `unsafe/to-label.csv`: the file engineers fill in.
    pub fn to_label_csv(&self) -> PathBuf {
        self.unsafe_dir().join("to-label.csv")
    }

    /// `unsafe/<id>/`: a cluster's assigned improvement images.
    pub fn unsafe_cluster(&self, id: usize) -> PathBuf {
        self.unsafe_dir().join(id.to_string())
    }

    /// `unsafe/cluster-<id>.gif`.
    pub fn unsafe_gif(&self, id: usize) -> PathBuf {
        self.unsafe_dir().join(format!("cluster-{id}.gif"))
    }

    /// `retrain/`: what `hudd retrain` and `hudd compare` write.
    pub fn retrain_dir(&self) -> PathBuf {
        self.root.join("retrain")
    }

    /// `retrain/retrain.json`: hyperparameters, seeds, history and accuracy of `hudd retrain`.
    pub fn retrain_json(&self) -> PathBuf {
        self.retrain_dir().join("retrain.json")
    }

    /// `retrain/compare.json`: HUDD against the baselines (`hudd compare`).
    pub fn compare_json(&self) -> PathBuf {
        self.retrain_dir().join("compare.json")
    }

    /// `report/`: where `hudd analyze` and `hudd report` write the bundle by default.
    pub fn default_report(&self) -> PathBuf {
        self.root.join("report")
    }

    /// `complete.json`: written after everything else, the report bundle included (see
    /// [`Completion`]).
    pub fn complete_json(&self) -> PathBuf {
        self.root.join("complete.json")
    }

    /// Whether the whole run, its report bundle included, is complete (`complete.json` is there).
    pub fn is_complete(&self) -> bool {
        self.complete_json().is_file()
    }

    /// The completion record, if the run is complete.
    pub fn completion(&self) -> Result<Option<Completion>> {
        let path = self.complete_json();
        if !path.is_file() {
            return Ok(None);
        }
        let text = crate::fsio::read_to_string(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        let c: Completion = serde_json::from_str(&text).map_err(|e| Error::Output {
            what: "completion record",
            path: path.clone(),
            reason: format!("unreadable ({e}); rerun `hudd report --run` to rewrite it"),
        })?;
        Ok(Some(c))
    }

    /// Marks the run complete: its results and the bundle with `report_id` at `bundle`; `inputs`
    /// is the digest of the last analysis stage (see [`stages`]), when the analysis wrote one.
    pub fn mark_complete(&self, report_id: &str, bundle: &Path, inputs: Option<&str>) -> Result<()> {
        let record = Completion {
            format: COMPLETION_FORMAT.into(),
            hudd_version: env!("CARGO_PKG_VERSION").into(),
            report_id: report_id.into(),
            bundle: self.shown(bundle),
            inputs: inputs.map(str::to_string),
        };
        crate::fsio::write_json(&self.complete_json(), "completion record", &record)
    }

    /// `path` as [`Completion::bundle`] records it: relative to the run folder when inside it.
    pub fn shown(&self, path: &Path) -> String {
        let shown = path.strip_prefix(&self.root).unwrap_or(path);
        shown.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
    }

    /// Removes the completion marker, `run.json` and the old default report bundle before a run
    /// rewrites the folder, so that an interrupted rerun never looks complete, and no old report
    /// stays beside new results; `clusters.json` too when `clusters` (the clustering is redone).
    /// A report folder holding files hudd did not write stops it.
    pub fn begin(&self, clusters: bool) -> Result<()> {
        let mut stale = vec![self.complete_json(), self.run_json()];
        if clusters {
            stale.push(self.clusters_json());
        }
        for stale in stale {
            if stale.exists() {
                std::fs::remove_file(&stale).map_err(|e| Error::io("cannot remove old result", &stale, e))?;
            }
        }
        crate::bundle::remove(&self.default_report())
    }
}

/// `complete.json`'s format name.
pub const COMPLETION_FORMAT: &str = "hudd-run-complete";

/// `complete.json`: the run folder's one completion marker, written after every stage and the
/// report bundle; [`RunDir::begin`] removes it first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Completion {
    /// [`COMPLETION_FORMAT`].
    pub format: String,
    /// The hudd that completed the run.
    pub hudd_version: String,
    /// The id of the run's report.
    pub report_id: String,
    /// Where the bundle was written (relative to the run folder when inside it).
    pub bundle: String,
    /// The digest of the last analysis stage's inputs (see [`stages`]): a rerun with the same
    /// inputs finds the run up to date. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

/// A member's file name inside a cluster folder: its dataset path with `/` → `__`, sanitised.
///
/// The map is one-to-one: a name that the replacement alone cannot be read back from (one that
/// already holds `__`, or a character that sanitising changes) gets the first 12 hex digits of its
/// path's SHA-256 before the extension, so that `a/b.png` and `a__b.png` stay two files.
pub fn member_file(image: &str) -> String {
    let flat = sanitize(&image.replace('/', "__"));
    let plain = !image.contains("__") && sanitize(image) == image.replace('/', "_");
    if plain {
        return flat;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(image.as_bytes());
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    match flat.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}~{tag}.{ext}"),
        _ => format!("{flat}~{tag}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_documented_one() {
        let run = RunDir::new("R");
        let p = |p: PathBuf| p.to_string_lossy().replace('\\', "/");
        assert_eq!(p(run.results()), "R/results");
        assert_eq!(p(run.heatmaps()), "R/heatmaps");
        assert_eq!(p(run.distances("conv1.npy")), "R/distances/conv1.npy");
        assert_eq!(p(run.clusters_json()), "R/clusters.json");
        assert_eq!(p(run.timings_json()), "R/timings.json");
        assert_eq!(p(run.run_json()), "R/run.json");
        assert_eq!(p(run.member_copy("a/b:0", 3, "test/coat/x.png")), "R/clusters/a_b_0/3/test__coat__x.png");
        assert_eq!(p(run.gif("l", 2)), "R/clusters/l/cluster-2.gif");
        assert_eq!(p(run.overlay("l", 2, "test/x.jpg")), "R/clusters/l/2/overlays/test__x.png");
        assert_eq!(p(run.mean_heatmap("l", 2)), "R/clusters/l/2/mean-heatmap.png");
        assert_eq!(p(run.default_report()), "R/report");
    }

    #[test]
    fn member_files_are_one_to_one() {
        assert_eq!(member_file("test/coat/x_1.png"), "test__coat__x_1.png", "plain names stay readable");
        let names = ["test/coat/a/b.png", "test/coat/a__b.png", "test/coat/a:b.png", "test/coat/a_b.png"];
        let files: std::collections::BTreeSet<String> = names.iter().map(|n| member_file(n)).collect();
        assert_eq!(files.len(), names.len(), "{files:?}");
        assert!(member_file("test/coat/a__b.png").starts_with("test__coat__a__b~"));
        assert!(member_file("test/coat/a__b.png").ends_with(".png"));
        // Tagged names hold `~`, which no plain name can: the two kinds never meet.
        assert_eq!(files.iter().filter(|f| f.contains('~')).count(), 2);
    }

    #[test]
    fn begin_removes_the_completion_marker() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::write(run.clusters_json(), "{}").unwrap();
        std::fs::write(run.run_json(), "{}").unwrap();
        run.mark_complete("abc", &run.default_report(), Some("d")).unwrap();
        assert!(run.is_complete());
        assert_eq!(run.completion().unwrap().unwrap().bundle, "report");
        assert_eq!(run.completion().unwrap().unwrap().inputs.as_deref(), Some("d"));
        run.begin(true).unwrap();
        assert!(!run.is_complete() && !run.run_json().exists() && !run.clusters_json().exists());
        assert_eq!(run.completion().unwrap(), None);
    }
}
