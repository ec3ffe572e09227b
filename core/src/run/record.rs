//! `RUN/run.json`: what a report needs from a run besides `clusters.json` — how the run was made,
//! the model, the data and its evaluation, and the clustered images with their metadata. Written
//! by `analyze` before `clusters.json` (which is written last and marks the run complete).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::RunDir;
use crate::cluster::metadata::Metadata;
use crate::config::Config;
use crate::dataset::Label;
use crate::error::{Error, Result};
use crate::evaluate::{Evaluation, Prediction, ResultRow, SplitEvaluation};
use crate::fsio::{sha256_hex, write_json};
use crate::model::{Dim, Model};
use hudd_report as schema;

/// `run.json`'s format name.
pub const FORMAT: &str = "hudd-run";
/// Its version.
pub const FORMAT_VERSION: u32 = 1;
/// Its file name in a run folder.
pub const FILE: &str = "run.json";

/// One clustered image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunImage {
    /// Path relative to the dataset root.
    pub name: String,
    /// Expected class or targets, as text.
    pub expected: String,
    /// Predicted class or outputs, as text.
    pub predicted: String,
    /// Metadata values, one per [`RunRecord::metadata_columns`].
    pub metadata: Vec<String>,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// How the run was made (timings filled in at the end).
    pub run: schema::Run,
    /// The model.
    pub model: schema::ModelSummary,
    /// The splits.
    pub datasets: Vec<schema::DatasetSplit>,
    /// Accuracy per split and class.
    pub evaluation: schema::Evaluation,
    /// Skipped inputs.
    pub skipped: Vec<schema::Skipped>,
    /// Whether `clusters.json` belongs to the run (false when fewer than 2 test images were Wrong).
    pub clustered: bool,
    /// Metadata columns of the clustered images.
    pub metadata_columns: Vec<String>,
    /// The clustered images, in the heatmaps' row order.
    pub images: Vec<RunImage>,
    /// GIF and flipbook speed.
    pub images_per_minute: f64,
    /// The model file, as an absolute path (for later stages: `hudd assign`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_path: Option<String>,
    /// The dataset folder, as an absolute path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_root: Option<String>,
}

impl RunRecord {
    /// The record of a run that has been evaluated (not yet clustered).
    pub fn new(
        mut run: schema::Run,
        config: &Config,
        model: &Model,
        evaluation: &Evaluation,
        images_per_minute: f64,
    ) -> RunRecord {
        run.config = serde_json::to_value(config).unwrap_or_default();
        let (datasets, evaluation, skipped) = evaluation_summary(evaluation);
        RunRecord {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            run,
            model: model_summary(model),
            datasets,
            evaluation,
            skipped,
            clustered: false,
            metadata_columns: Vec::new(),
            images: Vec::new(),
            images_per_minute,
            model_path: std::path::absolute(model.path()).ok().map(|p| p.display().to_string()),
            data_root: None,
        }
    }

    /// Records the clustered images (in heatmap row order) with their metadata.
    pub fn set_clustered(
        &mut self,
        images: &[String],
        metadata: &Metadata,
        test: &SplitEvaluation,
        classes: &[String],
    ) {
        let rows: HashMap<&str, &ResultRow> = test.rows.iter().map(|r| (r.image.as_str(), r)).collect();
        self.clustered = true;
        self.metadata_columns = metadata.columns.clone();
        self.images = images
            .iter()
            .zip(&metadata.rows)
            .map(|(name, values)| {
                let (expected, predicted) =
                    rows.get(name.as_str()).map(|r| expected_predicted(r, classes)).unwrap_or_default();
                RunImage { name: name.clone(), expected, predicted, metadata: values.clone() }
            })
            .collect();
    }

    /// Writes `RUN/run.json`.
    pub fn write(&self, run: &RunDir) -> Result<()> {
        write_json(&run.run_json(), "run record", self)
    }

    /// The configuration the run was made with, as recorded (`run` names the file in errors).
    pub fn config(&self, run: &RunDir) -> Result<Config> {
        serde_json::from_value(self.run.config.clone()).map_err(|e| Error::Bundle {
            path: run.run_json(),
            reason: format!("the recorded configuration cannot be read: {e}"),
        })
    }

    /// Reads `RUN/run.json`.
    pub fn read(run: &RunDir) -> Result<RunRecord> {
        let path = run.run_json();
        let text = crate::fsio::read_to_string(&path).map_err(|e| {
            Error::io("the run folder has no run.json (rerun `hudd analyze`, which writes it)", &path, e)
        })?;
        let bad = |reason: String| Error::Bundle { path: path.clone(), reason };
        let record: RunRecord = serde_json::from_str(&text).map_err(|e| bad(format!("run.json is not valid: {e}")))?;
        if record.format != FORMAT {
            return Err(bad(format!("format `{}` is not `{FORMAT}`", record.format)));
        }
        if record.format_version > FORMAT_VERSION {
            return Err(bad(format!(
                "run.json version {} is newer than this hudd reads ({FORMAT_VERSION}); update hudd",
                record.format_version
            )));
        }
        Ok(record)
    }
}

/// The model's summary: file name, SHA-256, inputs, outputs, op counts.
pub fn model_summary(model: &Model) -> schema::ModelSummary {
    let tensor = |t: &crate::model::TensorInfo| schema::TensorSummary {
        name: t.name.clone(),
        shape: t
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => n.to_string(),
                Dim::Symbolic(s) => s.clone(),
            })
            .collect(),
        elem_type: format!("{:?}", t.elem_type).to_lowercase(),
    };
    let graph = model.graph();
    schema::ModelSummary {
        file_name: model.path().file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        sha256: model.sha256().to_string(),
        bytes: model.file_bytes(),
        weights: model
            .weight_files()
            .iter()
            .map(|w| schema::WeightsFile { file_name: w.name.clone(), bytes: w.bytes, sha256: w.sha256.clone() })
            .collect(),
        producer: graph.producer.clone(),
        opset: graph.opset,
        inputs: model.info().inputs.iter().map(tensor).collect(),
        outputs: model.info().outputs.iter().map(tensor).collect(),
        op_counts: graph.op_counts(),
    }
}

/// The splits (counts and the hash of their sorted image lists), accuracy per split and class with
/// confusion matrices, and the skipped inputs.
pub fn evaluation_summary(
    evaluation: &Evaluation,
) -> (Vec<schema::DatasetSplit>, schema::Evaluation, Vec<schema::Skipped>) {
    let classify = !evaluation.classes.is_empty();
    let mut datasets = Vec::new();
    let mut splits = Vec::new();
    let mut skipped = Vec::new();
    for s in &evaluation.splits {
        let mut names: Vec<&str> =
            s.rows.iter().map(|r| r.image.as_str()).chain(s.skipped.iter().map(|k| k.image.as_str())).collect();
        names.sort_unstable();
        let list: String = names.iter().map(|n| format!("{n}\n")).collect();
        datasets.push(schema::DatasetSplit {
            split: s.split.into(),
            images: s.rows.len(),
            skipped: s.skipped.len(),
            sha256: sha256_hex(list.as_bytes()),
        });
        splits.push(split_summary(s, &evaluation.classes, classify));
        skipped.extend(s.skipped.iter().map(|k| schema::Skipped {
            split: s.split.into(),
            image: k.image.clone(),
            reason: k.reason.clone(),
        }));
    }
    (
        datasets,
        schema::Evaluation { task: evaluation.task.into(), classes: evaluation.classes.clone(), splits },
        skipped,
    )
}

fn split_summary(s: &SplitEvaluation, classes: &[String], classify: bool) -> schema::SplitEvaluation {
    let correct = s.correct();
    let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let per_class = s
        .per_class(classes)
        .into_iter()
        .map(|c| schema::ClassAccuracy {
            accuracy: frac(c.correct, c.total),
            class: c.class,
            images: c.total,
            correct: c.correct,
        })
        .collect();
    let confusion = classify.then(|| {
        let mut m = vec![vec![0usize; classes.len()]; classes.len()];
        for r in &s.rows {
            if let (Label::Class(e), Prediction::Class { predicted, .. }) = (&r.label, &r.prediction) {
                if let Some(cell) = m.get_mut(*e).and_then(|row| row.get_mut(*predicted)) {
                    *cell += 1;
                }
            }
        }
        m
    });
    schema::SplitEvaluation {
        split: s.split.into(),
        images: s.rows.len(),
        correct,
        accuracy: frac(correct, s.rows.len()),
        per_class,
        confusion,
    }
}

/// A result row's expected and predicted values as text.
pub fn expected_predicted(row: &ResultRow, classes: &[String]) -> (String, String) {
    let class = |c: usize| classes.get(c).cloned().unwrap_or_else(|| c.to_string());
    let numbers = |v: &[f32]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(" ");
    let expected = match &row.label {
        Label::Class(c) => class(*c),
        Label::Target(t) => numbers(t),
    };
    let predicted = match &row.prediction {
        Prediction::Class { predicted, .. } => class(*predicted),
        Prediction::Regression { predictions, loss } => format!("{} (loss {loss:.3})", numbers(predictions)),
    };
    (expected, predicted)
}
