//! The test step: run the model on every split and judge each image Correct or Wrong.
//!
//! [`Evaluator::new`] validates the configuration against the model and the dataset before any image
//! is read (input shape, output choice, class count); [`Evaluator::run`] then reads images in batches,
//! in parallel over batches (rayon), and returns one [`ResultRow`] per image plus the skipped files.
//! [`Evaluation::write`] writes HUDD's result files:
//!
//! # Format
//! - `results/<split>.csv` — classification: `image,result,expected,predicted,<one score column per
//!   class, named after it>`; regression: `image,result,loss,target_0…,prediction_0…`. Then one
//!   column per metadata column of the split's manifest. `result` is `Correct` or `Wrong`; `image` is
//!   the path relative to the dataset folder. Rows in sorted image order.
//! - `results/skipped.csv` — `split,image,reason` for every file not evaluated.
//! - `results/summary.json` — counts and accuracy per split and per class (written last).
//!
//! Sharded ([`Evaluator::run_shard`], `--shard I/N`): each split's images are split as
//! [`crate::shard`] describes; a shard folder holds the same three kinds of files for its images
//! (the files found but unusable are listed by shard 0), and [`merge`] writes the files of the
//! whole run from them, byte for byte.

use std::path::Path;

use ndarray::Array3;
use rayon::prelude::*;
use serde::Serialize;

use crate::config::{Config, InputSpec, Parallelism, RegressionLoss, TaskConfig, TaskKind};
use crate::dataset::{ClassSource, Dataset, Label, Sample, Skipped, Split, SplitData};
use crate::error::{Error, Result};
use crate::fsio::{write_atomic, write_json};
use crate::model::{Dim, Model};
use crate::progress::Progress;
use crate::shard::{Shard, ShardRecord, Stage};

pub use crate::model::argmax;

/// The skip reason of an image whose model output holds NaN or ±inf.
pub const NON_FINITE: &str = "the model's output for this image is NaN or infinite (no prediction can be read)";

/// What the model produced for one image.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub enum Prediction {
    /// Classification: the arg-max class and the raw output (logit) of every class.
    Class {
        /// Predicted class index.
        predicted: usize,
        /// One score per class, in class order.
        scores: Vec<f32>,
    },
    /// Regression: the outputs and the loss against the targets.
    Regression {
        /// The model's outputs, flattened.
        predictions: Vec<f32>,
        /// The configured loss.
        loss: f32,
    },
}

/// One evaluated image.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ResultRow {
    /// Path relative to the dataset root.
    pub image: String,
    /// Correct (true) or Wrong.
    pub correct: bool,
    /// The expected output.
    pub label: Label,
    /// What the model said.
    pub prediction: Prediction,
    /// Metadata values (see [`SplitEvaluation::metadata_columns`]).
    pub metadata: Vec<String>,
}

/// Results of one split.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SplitEvaluation {
    /// Which split.
    pub split: Split,
    /// One row per evaluated image, sorted by image.
    pub rows: Vec<ResultRow>,
    /// Files that were not evaluated (found but unusable, or failed to decode).
    pub skipped: Vec<Skipped>,
    /// Metadata column names.
    pub metadata_columns: Vec<String>,
}

/// Per-class counts.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ClassStats {
    /// Class name.
    pub class: String,
    /// Images of this class.
    pub total: usize,
    /// Of which Correct.
    pub correct: usize,
}

impl SplitEvaluation {
    /// Number of Correct rows.
    pub fn correct(&self) -> usize {
        self.rows.iter().filter(|r| r.correct).count()
    }

    /// Share of Correct rows (0 when empty).
    pub fn accuracy(&self) -> f64 {
        if self.rows.is_empty() {
            0.0
        } else {
            self.correct() as f64 / self.rows.len() as f64
        }
    }

    /// Counts per class (classification only; empty otherwise).
    pub fn per_class(&self, classes: &[String]) -> Vec<ClassStats> {
        let mut stats: Vec<ClassStats> =
            classes.iter().map(|c| ClassStats { class: c.clone(), total: 0, correct: 0 }).collect();
        for r in &self.rows {
            if let Label::Class(c) = r.label {
                if let Some(s) = stats.get_mut(c) {
                    s.total += 1;
                    s.correct += usize::from(r.correct);
                }
            }
        }
        stats
    }
}

/// Results of every split.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Classification or regression.
    pub task: TaskKind,
    /// Class names (classification).
    pub classes: Vec<String>,
    /// Where the class names come from (configured, or guessed from folder names).
    pub class_source: ClassSource,
    /// The model output that was judged.
    pub output: String,
    /// One entry per split present, in pipeline order.
    pub splits: Vec<SplitEvaluation>,
}

/// Runs a model over a dataset.
#[derive(Debug)]
pub struct Evaluator<'a> {
    model: &'a Model,
    data: &'a Dataset,
    spec: InputSpec,
    task: TaskConfig,
    output_index: usize,
    batch_size: usize,
    parallelism: Parallelism,
}

impl<'a> Evaluator<'a> {
    /// Checks that the configuration, the model and the dataset fit together, and compiles the model
    /// for the batch size, so that every contradiction is reported before any image is read.
    pub fn new(model: &'a Model, data: &'a Dataset, config: &Config) -> Result<Self> {
        let spec = config.input_spec(model.info())?;
        let outputs = &model.info().outputs;
        let output_index = config.task.output_index(model.info())?;
        let out = &outputs[output_index];
        if config.task.kind == TaskKind::Classification {
            let per_image: Option<usize> = out.shape.iter().skip(1).map(Dim::fixed).product();
            if let Some(n) = per_image.filter(|_| out.shape.len() >= 2) {
                if n != data.classes.len() {
                    return Err(Error::Config(format!(
                        "model output `{}` has {n} values per image (shape {}) but the dataset has {} classes \
                         ({}); list the classes in logit order in `[task] classes`",
                        out.name,
                        Dim::display(&out.shape),
                        data.classes.len(),
                        data.classes.join(", ")
                    )));
                }
            }
        }
        model.prepare(&spec.image_shape())?;
        Ok(Evaluator {
            model,
            data,
            spec,
            task: config.task.clone(),
            output_index,
            batch_size: config.run.batch_size,
            parallelism: config.run.parallelism,
        })
    }

    /// The ONNX name of the model output that is evaluated (and explained).
    pub fn output_name(&self) -> &str {
        &self.model.info().outputs[self.output_index].name
    }

    /// The resolved preprocessing.
    pub fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    /// Evaluates every split present.
    pub fn run(&self, progress: &dyn Progress) -> Result<Evaluation> {
        self.run_shard(Shard::WHOLE, progress)
    }

    /// Evaluates `shard`'s part of every split present (see [`crate::shard`]): a shard may hold
    /// no image of a small split.
    pub fn run_shard(&self, shard: Shard, progress: &dyn Progress) -> Result<Evaluation> {
        let mut splits = Vec::new();
        for data in &self.data.splits {
            splits.push(self.run_part(data, shard, progress)?);
        }
        Ok(Evaluation {
            task: self.task.kind,
            classes: self.data.classes.clone(),
            class_source: self.data.class_source,
            output: self.model.info().outputs[self.output_index].name.clone(),
            splits,
        })
    }

    /// Evaluates one split. A split whose every image fails to decode is an error.
    pub fn run_split(&self, data: &SplitData, progress: &dyn Progress) -> Result<SplitEvaluation> {
        self.run_part(data, Shard::WHOLE, progress)
    }

    /// Writes `evaluation` (made by [`run_shard`](Self::run_shard)) as the shard folder
    /// `out/shards/evaluate-<I>-of-<N>/`, `shard.json` last; returns the folder.
    pub fn write_shard(&self, evaluation: &Evaluation, shard: Shard, out: &Path) -> Result<std::path::PathBuf> {
        let dir = crate::shard::begin(out, Stage::Evaluate, shard)?;
        evaluation.write(&dir)?;
        let taken = self.data.splits.iter().map(|d| shard.range(d.samples.len(), self.batch_size).len()).sum();
        self.shard_record(shard, taken).write(&dir)?;
        Ok(dir)
    }

    /// The record of `shard` (see [`crate::shard`]): what the shards of one run share.
    fn shard_record(&self, shard: Shard, taken: usize) -> ShardRecord {
        let names: Vec<String> = self
            .data
            .splits
            .iter()
            .flat_map(|d| d.samples.iter().map(move |s| format!("{}/{}", d.split, s.image)))
            .collect();
        let total = names.len();
        let (spec, task) = (format!("{:?}", self.spec), format!("{:?}", self.task));
        let identity = [self.model.sha256(), spec.as_str(), task.as_str(), &names.join("\n")];
        ShardRecord::new(Stage::Evaluate, shard, self.batch_size, total, taken, &identity, serde_json::json!({}))
    }

    fn run_part(&self, data: &SplitData, shard: Shard, progress: &dyn Progress) -> Result<SplitEvaluation> {
        let samples = &data.samples[shard.range(data.samples.len(), self.batch_size)];
        progress.start(&format!("evaluate {}", data.split), samples.len() as u64);
        let one = |chunk: &[Sample]| {
            let r = self.run_batch(chunk);
            progress.advance(chunk.len() as u64);
            r
        };
        let batches: Vec<Result<(Vec<ResultRow>, Vec<Skipped>)>> = match self.parallelism {
            Parallelism::Batches => samples.par_chunks(self.batch_size).map(one).collect(),
            Parallelism::Engine => samples.chunks(self.batch_size).map(one).collect(),
        };
        progress.finish();
        let mut rows = Vec::with_capacity(samples.len());
        // The files found but unusable belong to shard 0.
        let mut skipped = if shard.index() == 0 { data.skipped.clone() } else { Vec::new() };
        for b in batches {
            let (r, s) = b?;
            rows.extend(r);
            skipped.extend(s);
        }
        let non_finite = skipped.iter().filter(|k| k.reason == NON_FINITE).count();
        if rows.is_empty() && non_finite > 0 && shard.is_whole() {
            return Err(Error::ModelInterface {
                path: self.model.path().to_path_buf(),
                reason: format!(
                    "the model's output `{}` is NaN or infinite for all {non_finite} readable images of split `{}`; \
                     the model or its input normalisation (`[input] scale, mean, std`) is broken",
                    self.model.info().outputs[self.output_index].name,
                    data.split
                ),
            });
        }
        if rows.is_empty() && shard.is_whole() {
            return Err(Error::EmptySplit {
                split: data.split.name().into(),
                path: data.dir.clone(),
                skipped: skipped.len(),
            });
        }
        skipped.sort_by(|a, b| a.image.cmp(&b.image));
        Ok(SplitEvaluation { split: data.split, rows, skipped, metadata_columns: data.metadata_columns.clone() })
    }

    fn run_batch(&self, chunk: &[Sample]) -> Result<(Vec<ResultRow>, Vec<Skipped>)> {
        let mut tensors: Vec<Array3<f32>> = Vec::with_capacity(chunk.len());
        let mut used: Vec<&Sample> = Vec::with_capacity(chunk.len());
        let mut skipped = Vec::new();
        for s in chunk {
            match crate::input::load(&s.path, &self.spec) {
                Ok(t) => {
                    tensors.push(t);
                    used.push(s);
                }
                Err(reason) => skipped.push(Skipped { image: s.image.clone(), reason }),
            }
        }
        if used.is_empty() {
            return Ok((Vec::new(), skipped));
        }
        let batch = crate::input::stack(&tensors, &self.spec);
        let outputs = self.model.run(batch.view())?;
        let out = &outputs[self.output_index];
        let n = used.len();
        let per_image = out.len() / n.max(1);
        if out.shape().first() != Some(&n) || per_image == 0 {
            return Err(Error::ShapeMismatch {
                tensor: self.model.info().outputs[self.output_index].name.clone(),
                actual: out.shape().to_vec(),
                expected: format!("a batch of {n} as the first axis"),
            });
        }
        let flat: Vec<f32> = out.iter().copied().collect();
        let mut rows = Vec::with_capacity(n);
        for (i, s) in used.iter().enumerate() {
            let values = &flat[i * per_image..(i + 1) * per_image];
            if values.iter().any(|v| !v.is_finite()) {
                // No class or loss can be read from it: never Correct, never Wrong.
                skipped.push(Skipped { image: s.image.clone(), reason: NON_FINITE.into() });
                continue;
            }
            rows.push(self.judge(s, values)?);
        }
        Ok((rows, skipped))
    }

    fn judge(&self, s: &Sample, values: &[f32]) -> Result<ResultRow> {
        let (correct, prediction) = match &s.label {
            Label::Class(expected) => {
                if values.len() != self.data.classes.len() {
                    return Err(Error::Config(format!(
                        "the model gives {} values per image but the dataset has {} classes; list the classes \
                         in logit order in `[task] classes`",
                        values.len(),
                        self.data.classes.len()
                    )));
                }
                let predicted = argmax(values);
                (predicted == *expected, Prediction::Class { predicted, scores: values.to_vec() })
            }
            Label::Target(targets) => {
                let loss = loss(self.task.loss, targets, values).map_err(|why| Error::Mismatch {
                    what: "targets and model outputs",
                    reason: format!("{}: {why}", s.image),
                })?;
                (loss <= self.task.threshold, Prediction::Regression { predictions: values.to_vec(), loss })
            }
        };
        Ok(ResultRow {
            image: s.image.clone(),
            correct,
            label: s.label.clone(),
            prediction,
            metadata: s.metadata.clone(),
        })
    }
}

/// The logit order that the predictions of `split` fit best, found greedily on the confusion
/// counts (the largest count first, each class and logit used once), and the accuracy it gives:
/// `order[logit]` is the class. `None` when the rows are not classifications of `k` classes.
fn logit_order_fit(split: &SplitEvaluation, k: usize) -> Option<(Vec<usize>, f64)> {
    let mut counts = vec![vec![0usize; k]; k];
    for r in &split.rows {
        match (&r.label, &r.prediction) {
            (Label::Class(c), Prediction::Class { predicted, .. }) if *c < k && *predicted < k => {
                counts[*predicted][*c] += 1;
            }
            _ => return None,
        }
    }
    let mut cells: Vec<(usize, usize, usize)> =
        (0..k).flat_map(|l| (0..k).map(move |c| (l, c))).map(|(l, c)| (counts[l][c], l, c)).collect();
    // Largest count first; ties by logit then class, so the result does not depend on the sort.
    cells.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let (mut order, mut used) = (vec![usize::MAX; k], vec![false; k]);
    let mut right = 0;
    for (n, l, c) in cells {
        if order[l] == usize::MAX && !used[c] {
            order[l] = c;
            used[c] = true;
            right += n;
        }
    }
    Some((order, right as f64 / split.rows.len().max(1) as f64))
}

/// Per-image regression loss.
pub fn loss(kind: RegressionLoss, targets: &[f32], predictions: &[f32]) -> std::result::Result<f32, String> {
    if targets.len() != predictions.len() {
        return Err(format!("{} targets but the model gives {} values", targets.len(), predictions.len()));
    }
    let n = targets.len() as f32;
    match kind {
        RegressionLoss::Mse => Ok(targets.iter().zip(predictions).map(|(t, p)| (t - p) * (t - p)).sum::<f32>() / n),
        RegressionLoss::MeanKeypointDistance => {
            if !targets.len().is_multiple_of(2) {
                return Err(format!("{} targets cannot be (x, y) keypoints", targets.len()));
            }
            let d: f32 = targets
                .chunks(2)
                .zip(predictions.chunks(2))
                .map(|(t, p)| ((t[0] - p[0]).powi(2) + (t[1] - p[1]).powi(2)).sqrt())
                .sum();
            Ok(d / (n / 2.0))
        }
    }
}

/// `summary.json`.
#[derive(Serialize, serde::Deserialize)]
struct Summary {
    format: String,
    format_version: u32,
    task: TaskKind,
    output: String,
    classes: Vec<String>,
    /// `config` or `folder-names` (absent in files written before it existed: `config`).
    #[serde(default)]
    classes_from: ClassSource,
    splits: Vec<SplitSummary>,
}

#[derive(Serialize, serde::Deserialize)]
struct SplitSummary {
    split: Split,
    evaluated: usize,
    correct: usize,
    wrong: usize,
    skipped: usize,
    accuracy: f64,
    per_class: Vec<ClassStats>,
}

impl Evaluation {
    /// When the class names were guessed from folder names and the predictions say the guess is
    /// wrong, the likely cause and the fix: a split's accuracy is below chance (1 / classes), or
    /// another order of the logits fits the predictions far better (at least 1.5 × the accuracy and
    /// 10 points more). `None` otherwise.
    pub fn guessed_class_order_problem(&self) -> Option<String> {
        if self.class_source != ClassSource::FolderNames || self.classes.len() < 2 {
            return None;
        }
        let k = self.classes.len();
        let chance = 1.0 / k as f64;
        let split = self
            .split(Split::Test)
            .filter(|s| !s.rows.is_empty())
            .or_else(|| self.splits.iter().find(|s| !s.rows.is_empty()))?;
        let accuracy = split.accuracy();
        let order = logit_order_fit(split, k);
        let fit = order.as_ref().map_or(0.0, |(_, a)| *a);
        let reordered = fit >= 1.5 * accuracy && fit >= accuracy + 0.10;
        if accuracy >= chance && !reordered {
            return None;
        }
        let mut text = format!(
            "{} accuracy is {:.1} % ({:.1} % is chance for {k} classes) with the class order guessed from the \
             sorted folder names ({})",
            split.split,
            100.0 * accuracy,
            100.0 * chance,
            crate::dataset::abbreviate(&self.classes)
        );
        if let Some((order, fit)) = order.filter(|_| reordered) {
            let names: Vec<String> = order.iter().map(|&c| self.classes[c].clone()).collect();
            text.push_str(&format!(
                "; the predictions fit this logit order far better ({:.1} %): classes = [{}]",
                100.0 * fit,
                names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
            ));
        }
        text.push_str(
            "; the model's logits are probably in another order: list the classes in logit order in `[task] classes` \
             of hudd.toml",
        );
        Some(text)
    }

    /// A classifier that predicts one class for every test image (at least 10 images, at least 2
    /// classes among their labels): its "root causes" would be the expected classes alone. The
    /// message names the class and the likely cause. `None` otherwise.
    pub fn single_class_problem(&self) -> Option<String> {
        let split = self.split(Split::Test).filter(|s| s.rows.len() >= 10)?;
        let mut predicted = split.rows.iter().map(|r| match r.prediction {
            Prediction::Class { predicted, .. } => Some(predicted),
            Prediction::Regression { .. } => None,
        });
        let first = predicted.next()??;
        if !predicted.all(|p| p == Some(first)) {
            return None;
        }
        let expected: std::collections::HashSet<String> = split.rows.iter().map(|r| format!("{:?}", r.label)).collect();
        if expected.len() < 2 {
            return None;
        }
        let name = self.classes.get(first).cloned().unwrap_or_else(|| first.to_string());
        Some(format!(
            "the model predicts `{name}` for all {} test images ({:.1} % accuracy): its errors will cluster by \
             expected class alone. The likely cause is the input preprocessing (scale, mean and std, channel \
             order, layout in `[input]` of hudd.toml) or the output (`[task]`), not the data",
            split.rows.len(),
            100.0 * split.accuracy()
        ))
    }

    /// Writes the whole evaluation, every row, as JSON to `path` (`RUN/evaluation.json`), for a
    /// resumed run to read back, and returns whether reading it back gives exactly this
    /// evaluation (it does for finite scores; a cache that does not is not to be reused).
    pub fn write_cache(&self, path: &Path) -> Result<bool> {
        write_json(path, "evaluation", self)?;
        Ok(Evaluation::read_cache(path).is_ok_and(|back| &back == self))
    }

    /// Reads what [`write_cache`](Self::write_cache) wrote.
    pub fn read_cache(path: &Path) -> Result<Evaluation> {
        let text = crate::fsio::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Output {
            what: "evaluation",
            path: path.to_path_buf(),
            reason: format!("unreadable ({e}); rerun `hudd analyze --force`"),
        })
    }

    /// The evaluation of one split, if present.
    pub fn split(&self, split: Split) -> Option<&SplitEvaluation> {
        self.splits.iter().find(|s| s.split == split)
    }

    /// Writes `<dir>/<split>.csv`, `<dir>/skipped.csv` and `<dir>/summary.json` (see the module docs),
    /// each atomically, the summary last.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let present: Vec<Split> = self.splits.iter().map(|s| s.split).collect();
        remove_stale(dir, &present)?;
        for s in &self.splits {
            let path = dir.join(format!("{}.csv", s.split.name()));
            write_atomic(&path, &self.split_csv(s, &path)?)?;
        }
        let skipped_path = dir.join("skipped.csv");
        let mut w = csv::Writer::from_writer(Vec::new());
        let csv_err =
            |p: &Path, e: csv::Error| Error::Output { what: "results", path: p.to_path_buf(), reason: e.to_string() };
        w.write_record(["split", "image", "reason"]).map_err(|e| csv_err(&skipped_path, e))?;
        for s in &self.splits {
            for k in &s.skipped {
                w.write_record([s.split.name(), &k.image, &k.reason]).map_err(|e| csv_err(&skipped_path, e))?;
            }
        }
        write_atomic(&skipped_path, &into_bytes(w, &skipped_path)?)?;
        let summary = Summary {
            format: SUMMARY_FORMAT.into(),
            format_version: 1,
            task: self.task,
            output: self.output.clone(),
            classes: self.classes.clone(),
            classes_from: self.class_source,
            splits: self
                .splits
                .iter()
                .map(|s| SplitSummary {
                    split: s.split,
                    evaluated: s.rows.len(),
                    correct: s.correct(),
                    wrong: s.rows.len() - s.correct(),
                    skipped: s.skipped.len(),
                    accuracy: s.accuracy(),
                    per_class: s.per_class(&self.classes),
                })
                .collect(),
        };
        write_json(&dir.join("summary.json"), "summary", &summary)
    }

    fn split_csv(&self, s: &SplitEvaluation, path: &Path) -> Result<Vec<u8>> {
        let err = |e: csv::Error| Error::Output { what: "results", path: path.to_path_buf(), reason: e.to_string() };
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = vec!["image".into(), "result".into()];
        let width = s.rows.first().map(|r| match &r.prediction {
            Prediction::Regression { predictions, .. } => predictions.len(),
            Prediction::Class { .. } => 0,
        });
        match self.task {
            TaskKind::Classification => {
                header.extend(["expected".into(), "predicted".into()]);
                header.extend(self.classes.iter().cloned());
            }
            TaskKind::Regression => {
                let m = width.unwrap_or(0);
                header.push("loss".into());
                header.extend((0..m).map(|i| format!("target_{i}")));
                header.extend((0..m).map(|i| format!("prediction_{i}")));
            }
        }
        header.extend(s.metadata_columns.iter().cloned());
        w.write_record(&header).map_err(err)?;
        for r in &s.rows {
            let mut rec: Vec<String> = vec![r.image.clone(), if r.correct { "Correct" } else { "Wrong" }.into()];
            match (&r.label, &r.prediction) {
                (Label::Class(e), Prediction::Class { predicted, scores }) => {
                    rec.push(self.classes[*e].clone());
                    rec.push(self.classes[*predicted].clone());
                    rec.extend(scores.iter().map(|v| v.to_string()));
                }
                (Label::Target(t), Prediction::Regression { predictions, loss }) => {
                    rec.push(loss.to_string());
                    rec.extend(t.iter().map(|v| v.to_string()));
                    rec.extend(predictions.iter().map(|v| v.to_string()));
                }
                _ => {}
            }
            rec.extend(r.metadata.iter().cloned());
            w.write_record(&rec).map_err(err)?;
        }
        into_bytes(w, path)
    }
}

/// `summary.json`'s format name.
const SUMMARY_FORMAT: &str = "hudd-evaluation";

/// A rerun into the same folder must not leave an old summary (it marks the results complete)
/// beside half-written results, nor result files of splits this run did not evaluate.
fn remove_stale(dir: &Path, present: &[Split]) -> Result<()> {
    let stale = std::iter::once("summary.json".to_string())
        .chain(Split::ALL.iter().filter(|s| !present.contains(s)).map(|s| format!("{}.csv", s.name())));
    for name in stale {
        let p = dir.join(name);
        if p.exists() {
            std::fs::remove_file(&p).map_err(|e| Error::io("cannot remove old result file", &p, e))?;
        }
    }
    Ok(())
}

/// Writes `<dir>/<split>.csv`, `skipped.csv` and `summary.json` of the whole run from the complete
/// set of evaluate shards (see [`crate::shard::find`]): the same bytes as the unsharded run.
pub fn merge(shards: &[(std::path::PathBuf, ShardRecord)], dir: &Path) -> Result<()> {
    let mut summaries = Vec::with_capacity(shards.len());
    for (path, _) in shards {
        let p = path.join("summary.json");
        let text = crate::fsio::read_to_string(&p).map_err(|e| Error::io("cannot read the shard's summary", &p, e))?;
        let s: Summary = serde_json::from_str(&text)
            .map_err(|e| Error::Shards { path: p.clone(), reason: format!("unreadable summary: {e}") })?;
        summaries.push(s);
    }
    let Some(first) = summaries.first() else {
        return Err(Error::Shards { path: dir.to_path_buf(), reason: "no shard to merge".into() });
    };
    let split_names: Vec<Split> = first.splits.iter().map(|s| s.split).collect();
    for (s, (path, _)) in summaries.iter().zip(shards) {
        let same = s.format == SUMMARY_FORMAT
            && s.task == first.task
            && s.output == first.output
            && s.classes == first.classes
            && s.splits.iter().map(|x| x.split).eq(split_names.iter().copied());
        if !same {
            return Err(Error::Shards {
                path: path.join("summary.json"),
                reason: "the shard evaluated other splits, classes or outputs than shard 0".into(),
            });
        }
    }
    remove_stale(dir, &split_names)?;
    let mut merged = Summary {
        format: SUMMARY_FORMAT.into(),
        format_version: 1,
        task: first.task,
        output: first.output.clone(),
        classes: first.classes.clone(),
        classes_from: first.classes_from,
        splits: Vec::new(),
    };
    for (k, split) in split_names.iter().enumerate() {
        let name = format!("{}.csv", split.name());
        let mut header: Option<Vec<u8>> = None;
        let mut body = Vec::new();
        for ((path, _), s) in shards.iter().zip(&summaries) {
            let p = path.join(&name);
            let bytes = crate::fsio::read(&p, crate::fsio::FILE_LIMIT)
                .map_err(|e| Error::io("cannot read the shard's results", &p, e))?;
            let (head, rows) = split_header(&bytes, &p)?;
            // An empty shard's regression header has no target columns: take one with rows.
            if s.splits[k].evaluated > 0 {
                match &header {
                    Some(h) if h.as_slice() != head => {
                        return Err(Error::Shards {
                            path: p,
                            reason: "its columns differ from the other shards'".into(),
                        })
                    }
                    Some(_) => {}
                    None => header = Some(head.to_vec()),
                }
            }
            body.extend_from_slice(rows);
        }
        let mut split = SplitSummary {
            split: *split,
            evaluated: 0,
            correct: 0,
            wrong: 0,
            skipped: 0,
            accuracy: 0.0,
            per_class: first.splits[k]
                .per_class
                .iter()
                .map(|c| ClassStats { class: c.class.clone(), total: 0, correct: 0 })
                .collect(),
        };
        for s in &summaries {
            let x = &s.splits[k];
            split.evaluated += x.evaluated;
            split.correct += x.correct;
            split.wrong += x.wrong;
            split.skipped += x.skipped;
            for (acc, c) in split.per_class.iter_mut().zip(&x.per_class) {
                acc.total += c.total;
                acc.correct += c.correct;
            }
        }
        let Some(header) = header else {
            return Err(Error::Shards {
                path: dir.to_path_buf(),
                reason: format!("no image of the {split} split could be evaluated in any shard", split = split.split),
            });
        };
        // As SplitEvaluation::accuracy.
        split.accuracy = split.correct as f64 / split.evaluated as f64;
        write_atomic(&dir.join(&name), &[header, body].concat())?;
        merged.splits.push(split);
    }
    // skipped.csv: per split in pipeline order, sorted by image (as the unsharded run sorts them).
    let skipped_path = dir.join("skipped.csv");
    let mut per_split: Vec<Vec<csv::StringRecord>> = vec![Vec::new(); split_names.len()];
    for (path, _) in shards {
        let p = path.join("skipped.csv");
        let mut r = crate::fsio::csv_reader(&p)
            .map_err(|e| Error::Shards { path: p.clone(), reason: format!("unreadable: {e}") })?;
        for rec in r.records() {
            let rec = rec.map_err(|e| Error::Shards { path: p.clone(), reason: format!("unreadable: {e}") })?;
            let k = split_names.iter().position(|s| Some(s.name()) == rec.get(0)).ok_or_else(|| Error::Shards {
                path: p.clone(),
                reason: format!("a skipped file of an unknown split `{}`", rec.get(0).unwrap_or_default()),
            })?;
            per_split[k].push(rec);
        }
    }
    let csv_err = |e: csv::Error| Error::Output { what: "results", path: skipped_path.clone(), reason: e.to_string() };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["split", "image", "reason"]).map_err(csv_err)?;
    for mut recs in per_split {
        recs.sort_by(|a, b| a.get(1).cmp(&b.get(1)));
        for rec in &recs {
            w.write_record(rec).map_err(csv_err)?;
        }
    }
    write_atomic(&skipped_path, &into_bytes(w, &skipped_path)?)?;
    write_json(&dir.join("summary.json"), "summary", &merged)
}

/// A CSV file's header record (with its line end) and the rest.
fn split_header<'b>(bytes: &'b [u8], path: &Path) -> Result<(&'b [u8], &'b [u8])> {
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes);
    let mut rec = csv::ByteRecord::new();
    r.read_byte_record(&mut rec)
        .map_err(|e| Error::Shards { path: path.to_path_buf(), reason: format!("unreadable: {e}") })?;
    let end = r.position().byte() as usize;
    Ok(bytes.split_at(end.min(bytes.len())))
}

fn into_bytes(w: csv::Writer<Vec<u8>>, path: &Path) -> Result<Vec<u8>> {
    w.into_inner().map_err(|e| Error::Output { what: "results", path: path.to_path_buf(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5]), 1);
    }

    #[test]
    fn losses() {
        assert_eq!(loss(RegressionLoss::Mse, &[1.0, 2.0], &[1.0, 4.0]).unwrap(), 2.0);
        // Keypoints (0,0)->(3,4) = 5 px and (1,1)->(1,1) = 0 px: mean 2.5 px.
        let d = loss(RegressionLoss::MeanKeypointDistance, &[0.0, 0.0, 1.0, 1.0], &[3.0, 4.0, 1.0, 1.0]).unwrap();
        assert_eq!(d, 2.5);
        assert!(loss(RegressionLoss::MeanKeypointDistance, &[0.0], &[0.0]).is_err());
        assert!(loss(RegressionLoss::Mse, &[0.0], &[0.0, 1.0]).is_err());
    }
}
