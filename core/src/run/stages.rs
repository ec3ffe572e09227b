//! `RUN/stages.json`: the analysis stages that completed, each with the digest of its inputs and
//! the size and SHA-256 of every file it wrote. A rerun into the same folder reuses a stage whose
//! inputs are unchanged and whose files are intact, and redoes that stage's successors only when
//! it redoes the stage (`hudd analyze --force` redoes all).
//!
//! A stage's digest covers the hudd build (version and commit), the digest of the stage before
//! it and the stage's own parameters; the first stage's parameters hold the model's SHA-256, the
//! resolved configuration and every image's name, label, metadata and SHA-256. The thread count
//! and the parallelism are left out: the results do not depend on them. The batch size is in: the
//! engine's kernels depend on the batch's shape, so logits and relevance differ at float rounding.
//!
//! The log is written atomically after each stage's files, so a killed run leaves it describing
//! exactly the stages whose files are complete.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RunDir;
use crate::error::{Error, Result};
use crate::fsio::{sha256_file, sha256_hex, write_json};

/// `stages.json`'s format name.
pub const FORMAT: &str = "hudd-stages";
/// Its version.
pub const FORMAT_VERSION: u32 = 1;

/// A stage of the analysis, in run order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// `results/` and `evaluation.json`.
    Evaluate,
    /// `heatmaps/`.
    Heatmaps,
    /// `distances/` and `clusters.json`.
    Clusters,
    /// `clusters/` (member copies, GIFs, overlays).
    Pictures,
}

impl Stage {
    /// Every stage, in run order.
    pub const ALL: [Stage; 4] = [Stage::Evaluate, Stage::Heatmaps, Stage::Clusters, Stage::Pictures];

    /// The stage's name in messages and in `stages.json`.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Evaluate => "evaluate",
            Stage::Heatmaps => "heatmaps",
            Stage::Clusters => "clusters",
            Stage::Pictures => "pictures",
        }
    }

    /// The files and folders the stage writes.
    pub fn outputs(self, run: &RunDir) -> Vec<PathBuf> {
        match self {
            Stage::Evaluate => vec![run.results(), run.evaluation_json()],
            Stage::Heatmaps => vec![run.heatmaps()],
            Stage::Clusters => vec![run.root().join("distances"), run.clusters_json()],
            Stage::Pictures => vec![run.pictures()],
        }
    }
}

/// The digest of a stage's inputs: the hudd build, the previous stage's digest and the stage's
/// parameters (`name = value` pairs, in the given order).
pub fn digest(stage: Stage, previous: Option<&str>, parameters: &[(&str, String)]) -> String {
    let mut text = format!(
        "{FORMAT} {FORMAT_VERSION}\nhudd {} {}\nstage {}\nprevious {}\n",
        crate::VERSION,
        env!("HUDD_BUILD_COMMIT"),
        stage.name(),
        previous.unwrap_or("-")
    );
    for (name, value) in parameters {
        text.push_str(&format!("{name} = {value}\n"));
    }
    sha256_hex(text.as_bytes())
}

/// One file a stage wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the run folder, `/` separators.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

/// One completed stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Which stage.
    pub stage: Stage,
    /// The digest of its inputs (see [`digest`]).
    pub inputs: String,
    /// Every file it wrote, sorted by path.
    pub files: Vec<OutputFile>,
}

/// `RUN/stages.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageLog {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The completed stages, in run order.
    pub stages: Vec<StageRecord>,
}

impl Default for StageLog {
    fn default() -> Self {
        StageLog { format: FORMAT.into(), format_version: FORMAT_VERSION, stages: Vec::new() }
    }
}

impl StageLog {
    /// Reads `RUN/stages.json`. A missing, unreadable or foreign file is an empty log: every stage
    /// is redone, nothing is lost.
    pub fn read(run: &RunDir) -> StageLog {
        crate::fsio::read_to_string(run.stages_json())
            .ok()
            .and_then(|t| serde_json::from_str::<StageLog>(&t).ok())
            .filter(|l| l.format == FORMAT && l.format_version == FORMAT_VERSION)
            .unwrap_or_default()
    }

    /// The SHA-256 that `stage`'s record holds for its file `path` (relative to the run folder,
    /// `/` separators), if the stage completed and wrote it.
    pub fn recorded_sha256(&self, stage: Stage, path: &str) -> Option<&str> {
        self.get(stage)?.files.iter().find(|f| f.path == path).map(|f| f.sha256.as_str())
    }

    /// The record of `stage`, if it completed.
    pub fn get(&self, stage: Stage) -> Option<&StageRecord> {
        self.stages.iter().find(|r| r.stage == stage)
    }

    /// Whether `stage` completed from inputs with digest `inputs` and its files are still exactly
    /// what it wrote (none missing, changed or added).
    pub fn reusable(&self, run: &RunDir, stage: Stage, inputs: &str) -> bool {
        let Some(record) = self.get(stage).filter(|r| r.inputs == inputs) else { return false };
        matches!(hash_outputs(run, stage), Ok(files) if files == record.files)
    }

    /// Forgets `stage` and every later one, and writes the log: their files are about to be
    /// rewritten.
    pub fn forget_from(&mut self, run: &RunDir, stage: Stage) -> Result<()> {
        let before = self.stages.len();
        self.stages.retain(|r| r.stage < stage);
        if self.stages.len() != before || !run.stages_json().exists() {
            self.write(run)?;
        }
        Ok(())
    }

    /// Records that `stage` completed from inputs `inputs`, hashing the files it wrote, and writes
    /// the log.
    pub fn complete(&mut self, run: &RunDir, stage: Stage, inputs: &str) -> Result<()> {
        let files = hash_outputs(run, stage)?;
        self.stages.retain(|r| r.stage != stage);
        self.stages.push(StageRecord { stage, inputs: inputs.into(), files });
        self.stages.sort_by_key(|r| r.stage);
        self.write(run)
    }

    fn write(&self, run: &RunDir) -> Result<()> {
        write_json(&run.stages_json(), "stage log", self)
    }
}

/// The files under a stage's outputs, sorted by path, with sizes and hashes.
fn hash_outputs(run: &RunDir, stage: Stage) -> Result<Vec<OutputFile>> {
    let mut paths = Vec::new();
    for out in stage.outputs(run) {
        collect(&out, &mut paths)?;
    }
    let mut files = paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).map_err(|e| Error::io("cannot read", p, e))?;
            let rel = p.strip_prefix(run.root()).unwrap_or(p);
            let path = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            Ok(OutputFile { path, bytes: meta.len(), sha256: sha256_file(p)? })
        })
        .collect::<Result<Vec<_>>>()?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Every file at or under `path`; a symbolic link counts as a file (hashed through it) and is not
/// descended into (a stage writes none).
fn collect(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if meta.is_file() || meta.file_type().is_symlink() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::io("cannot list", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot list", path, e))?;
        collect(&entry.path(), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_reused_only_with_the_same_inputs_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::create_dir_all(run.heatmaps()).unwrap();
        std::fs::write(run.heatmaps().join("a.npy"), b"one").unwrap();
        let mut log = StageLog::read(&run);
        assert!(log.stages.is_empty());
        let inputs = digest(Stage::Heatmaps, Some("e"), &[("preset", "hudd".into())]);
        log.complete(&run, Stage::Heatmaps, &inputs).unwrap();
        let log = StageLog::read(&run);
        assert_eq!(log.get(Stage::Heatmaps).unwrap().files[0].path, "heatmaps/a.npy");
        assert!(log.reusable(&run, Stage::Heatmaps, &inputs));
        let other = digest(Stage::Heatmaps, Some("e"), &[("preset", "epsilon".into())]);
        assert!(!log.reusable(&run, Stage::Heatmaps, &other), "other parameters");
        assert_ne!(digest(Stage::Heatmaps, Some("f"), &[("preset", "hudd".into())]), inputs, "other predecessor");
        std::fs::write(run.heatmaps().join("a.npy"), b"two").unwrap();
        assert!(!log.reusable(&run, Stage::Heatmaps, &inputs), "a changed file");
        std::fs::write(run.heatmaps().join("a.npy"), b"one").unwrap();
        std::fs::write(run.heatmaps().join("b.npy"), b"").unwrap();
        assert!(!log.reusable(&run, Stage::Heatmaps, &inputs), "an added file");
        std::fs::remove_dir_all(run.heatmaps()).unwrap();
        assert!(!log.reusable(&run, Stage::Heatmaps, &inputs), "missing files");
    }

    #[test]
    fn forgetting_a_stage_forgets_its_successors() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        let mut log = StageLog::default();
        for s in Stage::ALL {
            log.complete(&run, s, s.name()).unwrap();
        }
        log.forget_from(&run, Stage::Clusters).unwrap();
        let kept: Vec<Stage> = StageLog::read(&run).stages.iter().map(|r| r.stage).collect();
        assert_eq!(kept, [Stage::Evaluate, Stage::Heatmaps]);
    }

    #[test]
    fn an_unreadable_log_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        std::fs::write(run.stages_json(), "{ not json").unwrap();
        assert_eq!(StageLog::read(&run), StageLog::default());
    }
}
