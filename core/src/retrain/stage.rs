//! HUDD's Step 7 on a run folder: fine-tune the analysed model on its training split plus a
//! labelled set of extra images (the balanced unsafe set, or a baseline's), write the new ONNX
//! file, and measure it on the test split, overall, per class and per root-cause cluster.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{fit, EpochRecord, Example, FitOptions, Keep, Loss, SgdParams};
use crate::cluster::report::ClustersReport;
use crate::config::Config;
use crate::dataset::{Dataset, Label, Split};
use crate::error::{Error, Result};
use crate::evaluate::{Evaluator, SplitEvaluation};
use crate::fsio::write_json;
use crate::model::{Layout, Model};
use crate::progress::Progress;
use crate::rng::Rng;
use crate::run::RunDir;

/// `retrain.json`'s format name.
pub const FORMAT: &str = "hudd-retrain";
/// Its version.
pub const FORMAT_VERSION: u32 = 1;

/// One labelled image added to the training images, `copies` times (the balanced set's copies).
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    /// The image file.
    pub path: PathBuf,
    /// Its label.
    pub label: Label,
    /// How many times it is in the training set (at least 1).
    pub copies: usize,
    /// The group its validation draw is stratified by: the root-cause cluster of an unsafe image,
    /// the class of a baseline's (0 for regression).
    pub stratum: usize,
}

/// Where the images that choose the kept epoch come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum ValidationFrom {
    /// A share of the labelled images added (the unsafe set, or a baseline's), drawn per stratum
    /// (root-cause cluster, or class): images the analysed model never trained on. Those images
    /// are not trained on.
    #[default]
    Labelled,
    /// A share of the training split and the labelled images together (the original toolset's
    /// choice). The analysed model was trained on most of them, so it often looks best: the
    /// retraining then keeps epoch 0, the unchanged model.
    Training,
}

/// Settings of `hudd retrain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainOptions {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// The optimiser.
    pub sgd: SgdParams,
    /// Share of the distinct images of [`RetrainOptions::validation_from`] held out to choose the
    /// epoch (never test images).
    pub validation_fraction: f64,
    /// Where the held-out images come from.
    #[serde(default = "training_for_old_records")]
    pub validation_from: ValidationFrom,
    /// Seed of the validation draw, the shuffles and dropout.
    pub seed: u64,
    /// Which epoch to keep.
    pub keep: Keep,
}

/// Records written before [`ValidationFrom`] existed held out from the training images.
fn training_for_old_records() -> ValidationFrom {
    ValidationFrom::Training
}

impl Default for RetrainOptions {
    fn default() -> Self {
        RetrainOptions {
            epochs: 5,
            batch_size: 128,
            sgd: SgdParams::default(),
            validation_fraction: 0.2,
            validation_from: ValidationFrom::Labelled,
            seed: 0,
            keep: Keep::Best,
        }
    }
}

/// Test accuracy of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    /// Class name.
    pub class: String,
    /// Test images of the class.
    pub total: usize,
    /// Of which right.
    pub right: usize,
    /// `right / total` (0 when empty).
    pub accuracy: f64,
}

/// How a model does on the test members of one root-cause cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterAccuracy {
    /// Cluster id (as in `clusters.json`, best layer).
    pub cluster: usize,
    /// Its test members (all Wrong for the analysed model).
    pub members: usize,
    /// Of which the model gets right.
    pub right: usize,
    /// `right / members`.
    pub accuracy: f64,
}

/// A model's test accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// Test images evaluated.
    pub total: usize,
    /// Of which right.
    pub right: usize,
    /// `right / total`.
    pub overall: f64,
    /// Per class (classification; empty for regression).
    pub per_class: Vec<ClassAccuracy>,
    /// Per cluster of the best layer, by id.
    pub per_cluster: Vec<ClusterAccuracy>,
    /// On the test members of all root-cause clusters together.
    pub failing_clusters: f64,
}

/// The hyperparameters as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyperparameters {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// SGD learning rate.
    pub lr: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD weight decay (L2, added to the gradient).
    pub weight_decay: f64,
    /// The loss.
    pub loss: Loss,
    /// Share held out for validation.
    pub validation_fraction: f64,
    /// Where the held-out images came from.
    #[serde(default = "training_for_old_records")]
    pub validation_from: ValidationFrom,
    /// Which epoch was kept: the best on validation, or the last.
    pub keep: Keep,
    /// Every layer is fine-tuned from the model's own weights.
    pub trainable_weights: usize,
}

/// Image counts of the fine-tuning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataCounts {
    /// Images of the training split.
    pub train_images: usize,
    /// Distinct extra (labelled unsafe or baseline) images.
    pub extra_images: usize,
    /// Extra images with their copies.
    pub extra_copies: usize,
    /// Held out for validation (distinct images).
    pub validation_images: usize,
    /// Distinct extra images trained on (those not held out).
    #[serde(default)]
    pub extra_trained: usize,
    /// Training examples per epoch (copies counted).
    pub training_examples: usize,
}

/// `RUN/retrain/retrain.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainRecord {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// hudd's version.
    pub hudd_version: String,
    /// The analysed model: file and SHA-256.
    pub model: FileRef,
    /// The retrained model.
    pub retrained: FileRef,
    /// The retrained model's external weights file, when the analysed model kept its weights
    /// outside its ONNX file (PyTorch's default exporter): written beside it as `NAME.data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrained_data: Option<FileRef>,
    /// What the extra images were (`"unsafe set"`, `"bl1"`, …).
    pub extra: String,
    /// Settings.
    pub hyperparameters: Hyperparameters,
    /// Seeds: `retrain` (validation draw, shuffles, dropout) and, where the caller drew the extra
    /// images, theirs (`bootstrap`, `baseline`).
    pub seeds: BTreeMap<String, u64>,
    /// Image counts.
    pub data: DataCounts,
    /// Every epoch, 0 (the model before training) first.
    pub history: Vec<EpochRecord>,
    /// The kept epoch (with `keep: best`, best validation accuracy, then loss; 0: none beat the
    /// original).
    pub chosen_epoch: usize,
    /// Whether the written model is the analysed one unchanged (the kept epoch is 0: no epoch did
    /// better on the held-out images).
    #[serde(default)]
    pub unchanged: bool,
    /// The analysed model on the test split.
    pub before: Accuracy,
    /// The retrained model on the test split.
    pub after: Accuracy,
    /// Wall-clock seconds of each epoch's training steps (the only field that differs between
    /// identical runs).
    #[serde(default)]
    pub epoch_seconds: Vec<f64>,
}

/// A file and its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    /// Path as given.
    pub path: String,
    /// SHA-256 of the bytes.
    pub sha256: String,
}

/// What a retraining needs from the run folder: the model, its configuration, the dataset and the
/// root-cause clusters (test members of each cluster of the best layer).
#[derive(Debug)]
pub struct RunContext {
    /// The analysed model.
    pub model: Model,
    /// The run's configuration.
    pub config: Config,
    /// The run's dataset (training and test splits needed).
    pub data: Dataset,
    /// Cluster id → its test members (dataset-relative names).
    pub clusters: BTreeMap<usize, Vec<String>>,
}

impl RunContext {
    /// Reads the run folder (`run.json`, `clusters.json`) and opens its model and dataset.
    pub fn open(run: &RunDir) -> Result<RunContext> {
        let (record, config, model) = crate::assign::run_model(run, None)?;
        let bad = |reason: String| Error::Bundle { path: run.run_json(), reason };
        let root =
            record.data_root.ok_or_else(|| bad("the run does not record its dataset (rerun `hudd analyze`)".into()))?;
        let data = Dataset::open(Path::new(&root), &config.task)?;
        for split in [Split::Train, Split::Test] {
            if data.split(split).is_none_or(|s| s.samples.is_empty()) {
                return Err(Error::DatasetLayout {
                    path: PathBuf::from(&root),
                    reason: format!("retraining needs the {} split, and the dataset has no images there", split.name()),
                });
            }
        }
        let report = ClustersReport::read(run)?;
        let bad = |reason: String| Error::Bundle { path: run.clusters_json(), reason };
        let best = report.best_layer.clone().ok_or_else(|| bad("the run has no best layer".into()))?;
        let layer =
            report.layers.iter().find(|l| l.name == best).ok_or_else(|| bad(format!("no clustering of `{best}`")))?;
        let clusters =
            layer.clusters.iter().map(|c| (c.id, c.members.iter().map(|m| m.image.clone()).collect())).collect();
        Ok(RunContext { model, config, data, clusters })
    }

    /// What the run's labels are.
    pub fn label_kind(&self) -> crate::bootstrap::LabelKind {
        crate::bootstrap::LabelKind::of(self.config.task.kind, self.data.classes.clone())
    }

    /// The loss that fits the task: cross-entropy for classes, MSE for regression.
    pub fn loss(&self) -> Loss {
        Loss::for_task(self.config.task.kind)
    }

    /// The analysed (or any same-interface) model on the test split.
    pub fn test_accuracy(&self, model: &Model, progress: &dyn Progress) -> Result<Accuracy> {
        let evaluator = Evaluator::new(model, &self.data, &self.config)?;
        let test = self.data.split(Split::Test).expect("checked in open");
        let e = evaluator.run_split(test, progress)?;
        Ok(accuracy(&e, &self.data.classes, &self.clusters))
    }
}

fn ratio(right: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        right as f64 / total as f64
    }
}

/// Accuracy of an evaluated test split, overall, per class and per cluster.
pub fn accuracy(e: &SplitEvaluation, classes: &[String], clusters: &BTreeMap<usize, Vec<String>>) -> Accuracy {
    let right_of: HashMap<&str, bool> = e.rows.iter().map(|r| (r.image.as_str(), r.correct)).collect();
    // A regression dataset has no classes: no per-class figures.
    let per_class = e
        .per_class(classes)
        .into_iter()
        .map(|s| ClassAccuracy {
            accuracy: ratio(s.correct, s.total),
            class: s.class,
            total: s.total,
            right: s.correct,
        })
        .collect();
    let per_cluster: Vec<ClusterAccuracy> = clusters
        .iter()
        .map(|(&cluster, members)| {
            let right = members.iter().filter(|m| right_of.get(m.as_str()).copied().unwrap_or(false)).count();
            ClusterAccuracy { cluster, members: members.len(), right, accuracy: ratio(right, members.len()) }
        })
        .collect();
    let (r, m) = per_cluster.iter().fold((0, 0), |(r, m), c| (r + c.right, m + c.members));
    Accuracy {
        total: e.rows.len(),
        right: e.correct(),
        overall: e.accuracy(),
        per_class,
        per_cluster,
        failing_clusters: ratio(r, m),
    }
}

/// The result of [`retrain`]: the new weights and the record.
#[derive(Debug)]
pub struct Retrained {
    /// The fitted weights, to write into the analysed model's graph ([`Retrained::write`]).
    pub weights: crate::model::Weights,
    /// What `retrain.json` holds (without the file paths filled in by [`Retrained::write`]).
    pub record: RetrainRecord,
}

/// The training examples (copies repeated) and the validation images, and how many distinct
/// extra images are trained on. [`ValidationFrom::Labelled`]: `round(share × extra)` extra images
/// held out (at least one, and one left to train on), shared among the strata by largest
/// remainder and drawn at random within each; [`ValidationFrom::Training`]: that share of the
/// training and extra images together.
fn split_for_validation(
    train: &[crate::dataset::Sample],
    extra: &[Labelled],
    options: &RetrainOptions,
) -> Result<(Vec<Example>, Vec<Example>, usize)> {
    // The distinct images, each with its copies: training split first, then the extra images.
    let mut pool: Vec<(Example, usize)> =
        train.iter().map(|s| (Example { path: s.path.clone(), label: s.label.clone() }, 1)).collect();
    pool.extend(extra.iter().map(|l| (Example { path: l.path.clone(), label: l.label.clone() }, l.copies.max(1))));
    let mut rng = Rng::new(options.seed ^ 0x0005_EED0_F7A1_1D00);
    let held_out: std::collections::BTreeSet<usize> = match options.validation_from {
        ValidationFrom::Training => {
            let mut order: Vec<usize> = (0..pool.len()).collect();
            rng.shuffle(&mut order);
            let held = ((pool.len() as f64 * options.validation_fraction).round() as usize)
                .clamp(1, pool.len().saturating_sub(1).max(1));
            order[..held].iter().copied().collect()
        }
        ValidationFrom::Labelled => {
            if extra.len() < 2 {
                return Err(Error::Training {
                    reason: format!(
                        "{} labelled image(s) to retrain on: too few to hold out images that choose the kept \
                         epoch (at least 2 needed). Label more images, or hold out from the training images \
                         too (--validation-from training)",
                        extra.len()
                    ),
                });
            }
            let held = ((extra.len() as f64 * options.validation_fraction).round() as usize).clamp(1, extra.len() - 1);
            let mut strata: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for (i, l) in extra.iter().enumerate() {
                strata.entry(l.stratum).or_default().push(train.len() + i);
            }
            let mut out = std::collections::BTreeSet::new();
            for (members, quota) in
                strata.values().zip(largest_remainder(&strata.values().map(Vec::len).collect::<Vec<_>>(), held))
            {
                let mut members = members.clone();
                rng.shuffle(&mut members);
                out.extend(members.into_iter().take(quota));
            }
            out
        }
    };
    let validation: Vec<Example> = held_out.iter().map(|&i| pool[i].0.clone()).collect();
    let training: Vec<Example> = (0..pool.len())
        .filter(|i| !held_out.contains(i))
        .flat_map(|i| std::iter::repeat_n(pool[i].0.clone(), pool[i].1))
        .collect();
    let extra_trained = extra.len() - held_out.iter().filter(|&&i| i >= train.len()).count();
    Ok((training, validation, extra_trained))
}

/// `total` shared in proportion to `sizes` (Hamilton's method; ties to the earlier group), never
/// more than a group's size.
fn largest_remainder(sizes: &[usize], total: usize) -> Vec<usize> {
    let sum: usize = sizes.iter().sum();
    if sum == 0 {
        return vec![0; sizes.len()];
    }
    let total = total.min(sum);
    let mut quotas: Vec<usize> = sizes.iter().map(|&s| s * total / sum).collect();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    // The largest remainders s·total mod sum first.
    order.sort_by_key(|&i| std::cmp::Reverse((sizes[i] * total) % sum));
    let mut left = total - quotas.iter().sum::<usize>();
    for i in order.into_iter().cycle().take(sizes.len() * 2) {
        if left == 0 {
            break;
        }
        if quotas[i] < sizes[i] {
            quotas[i] += 1;
            left -= 1;
        }
    }
    quotas
}

/// Fine-tunes the run's model on its training split plus `extra`, keeps the epoch that does best
/// on a seeded validation draw (see [`ValidationFrom`]), and measures the result on the test split.
/// `before` is the analysed model's test accuracy (computed once by the caller for repeats).
pub fn retrain(
    ctx: &RunContext,
    extra: &[Labelled],
    what: &str,
    options: &RetrainOptions,
    before: &Accuracy,
    progress: &dyn Progress,
) -> Result<Retrained> {
    if !(options.validation_fraction > 0.0 && options.validation_fraction < 1.0) {
        return Err(Error::Training { reason: "the validation share must be between 0 and 1 (exclusive)".into() });
    }
    let spec = ctx.config.input_spec(ctx.model.info())?;
    let output = ctx.config.task.output_index(ctx.model.info())?;
    let train = ctx.data.split(Split::Train).expect("checked in open");
    let (training, validation, extra_trained) = split_for_validation(&train.samples, extra, options)?;
    let fit_options = FitOptions {
        epochs: options.epochs,
        batch_size: options.batch_size,
        sgd: options.sgd,
        loss: ctx.loss(),
        output,
        seed: options.seed,
        keep: options.keep,
    };
    let fitted = fit(&ctx.model, &spec, &training, &validation, &fit_options, progress)?;
    let onnx = ctx.model.with_weights(&fitted.weights, &Layout::SelfContained)?.onnx;
    let retrained = Model::from_bytes(&onnx, ctx.model.path().with_extension("retrained.onnx"))?;
    let after = ctx.test_accuracy(&retrained, progress)?;
    let record = RetrainRecord {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        hudd_version: crate::VERSION.into(),
        model: FileRef { path: ctx.model.path().display().to_string(), sha256: ctx.model.sha256().to_string() },
        retrained: FileRef { path: String::new(), sha256: String::new() },
        retrained_data: None,
        extra: what.to_string(),
        hyperparameters: Hyperparameters {
            epochs: options.epochs,
            batch_size: options.batch_size,
            lr: options.sgd.lr,
            momentum: options.sgd.momentum,
            weight_decay: options.sgd.weight_decay,
            loss: ctx.loss(),
            validation_fraction: options.validation_fraction,
            validation_from: options.validation_from,
            keep: options.keep,
            trainable_weights: fitted.weights.len(),
        },
        seeds: BTreeMap::from([("retrain".to_string(), options.seed)]),
        data: DataCounts {
            train_images: train.samples.len(),
            extra_images: extra.len(),
            extra_copies: extra.iter().map(|l| l.copies.max(1)).sum(),
            validation_images: validation.len(),
            extra_trained,
            training_examples: training.len(),
        },
        history: fitted.history,
        chosen_epoch: fitted.chosen,
        unchanged: fitted.chosen == 0,
        before: before.clone(),
        after,
        epoch_seconds: fitted.epoch_seconds,
    };
    Ok(Retrained { weights: fitted.weights, record })
}

impl Retrained {
    /// Writes the model to `out` (its weights into `model`'s graph, laid out as `model` is: with
    /// external weights, those go to `OUT.data` beside it) and the record to
    /// `RUN/retrain/retrain.json`, all atomically (the model first).
    ///
    /// Errors ([`Error::WouldOverwrite`]): `out` or its weights file is the analysed model or one
    /// of its weights files (check the run's own files first with [`output_files`]).
    pub fn write(mut self, model: &Model, run: &RunDir, out: &Path) -> Result<RetrainRecord> {
        let targets = model_files(model, out)?;
        let layout = Layout::beside(out);
        let files = model.with_weights(&self.weights, &layout)?;
        files.write(out, &layout)?;
        self.record.retrained =
            FileRef { path: out.display().to_string(), sha256: crate::fsio::sha256_hex(&files.onnx) };
        self.record.retrained_data = files
            .data
            .as_ref()
            .zip(targets.get(1))
            .map(|(d, path)| FileRef { path: path.display().to_string(), sha256: crate::fsio::sha256_hex(d) });
        write_json(&run.retrain_json(), "retraining record", &self.record)?;
        Ok(self.record)
    }
}

/// The files a retrained model written to `out` takes: `out`, and `OUT.data` when the analysed
/// model keeps weights outside its ONNX file. Call it before training, to fail before the work.
///
/// Errors ([`Error::WouldOverwrite`]): one of them is the analysed model or one of its weights
/// files, lies inside the dataset, or inside the run folder anywhere but `RUN/retrain/` (where the
/// records `retrain.json` and `compare.json` are refused too).
pub fn output_files(ctx: &RunContext, run: &RunDir, out: &Path) -> Result<Vec<PathBuf>> {
    let targets = model_files(&ctx.model, out)?;
    for target in &targets {
        let refuse = |what: String| {
            Err(Error::WouldOverwrite {
                path: target.clone(),
                what,
                hint: "write the retrained model outside the dataset and the run folder, or into RUN/retrain/ \
                       (--out)"
                    .into(),
            })
        };
        if crate::fsio::is_inside(target, &ctx.data.root) {
            return refuse(format!("inside the run's dataset {}", ctx.data.root.display()));
        }
        let records = [run.retrain_json(), run.compare_json()];
        if records.iter().any(|r| crate::fsio::same_file(r, target)) {
            return refuse("one of the run's records".into());
        }
        if crate::fsio::is_inside(target, run.root()) && !crate::fsio::is_inside(target, &run.retrain_dir()) {
            return refuse(format!("inside the run folder {}, whose files are the run's record", run.root().display()));
        }
    }
    Ok(targets)
}

/// The files a retrained `model` written to `out` takes (see [`output_files`]), checked against
/// the model's own files only.
fn model_files(model: &Model, out: &Path) -> Result<Vec<PathBuf>> {
    let external = model.external_files()?;
    let mut targets = vec![out.to_path_buf()];
    if let (false, Layout::Beside(name)) = (external.is_empty(), Layout::beside(out)) {
        targets.push(out.with_file_name(name));
    }
    let inputs: Vec<PathBuf> = std::iter::once(model.path().to_path_buf()).chain(external).collect();
    for target in &targets {
        if let Some(input) = inputs.iter().find(|i| crate::fsio::same_file(i, target)) {
            return Err(Error::WouldOverwrite {
                path: target.clone(),
                what: format!("the analysed model's file {}", input.display()),
                hint: "write the retrained model under another name (--out)".into(),
            });
        }
    }
    Ok(targets)
}

/// The balanced unsafe set of `RUN/unsafe/balanced.csv` as training images: the improvement
/// folder's file, its label (a class name or targets, as `kind` says) and copies.
pub fn balanced_set(run: &RunDir, kind: &crate::bootstrap::LabelKind) -> Result<Vec<Labelled>> {
    let (record, _) = crate::bootstrap::read_unsafe(run)?;
    let path = run.balanced_csv();
    let bad = |reason: String| Error::Bundle { path: path.clone(), reason };
    let mut reader = crate::fsio::csv_reader(&path)
        .map_err(|e| bad(format!("the run has no balanced set ({e}); run `hudd bootstrap` first")))?;
    let improvement = Path::new(&record.parameters.improvement);
    reader
        .deserialize::<crate::bootstrap::BalancedRow>()
        .map(|row| {
            let row = row.map_err(|e| bad(format!("balanced.csv cannot be read ({e}); rerun `hudd bootstrap`")))?;
            let label = kind.parse(&row.label).map_err(|reason| bad(format!("`{}`: {reason}", row.image)))?;
            Ok(Labelled { path: improvement.join(&row.image), label, copies: row.copies, stratum: row.cluster })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::Sample;

    fn extra(strata: &[usize]) -> Vec<Labelled> {
        strata
            .iter()
            .enumerate()
            .map(|(i, &s)| Labelled {
                path: PathBuf::from(format!("x/{i}.png")),
                label: Label::Class(s),
                copies: 1 + i % 3,
                stratum: s,
            })
            .collect()
    }

    fn train(n: usize) -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                path: PathBuf::from(format!("t/{i}.png")),
                image: format!("{i}.png"),
                label: Label::Class(0),
                metadata: vec![],
            })
            .collect()
    }

    #[test]
    fn largest_remainder_shares_in_proportion() {
        assert_eq!(largest_remainder(&[10, 10, 10], 6), vec![2, 2, 2]);
        // 1.5, 0.9, 0.6: floors 1, 0, 0; the two largest remainders (0.9, 0.6) get one each.
        assert_eq!(largest_remainder(&[5, 3, 2], 3), vec![1, 1, 1]);
        assert_eq!(largest_remainder(&[6, 3, 1], 5), vec![3, 2, 0]);
        assert_eq!(largest_remainder(&[1, 1, 1], 2).iter().sum::<usize>(), 2);
        assert_eq!(largest_remainder(&[2, 1], 9), vec![2, 1]);
        assert_eq!(largest_remainder(&[], 3), Vec::<usize>::new());
    }

    #[test]
    fn labelled_validation_holds_out_added_images_per_stratum_and_never_trains_on_them() {
        // 40 images in stratum 0, 10 in stratum 1; a fifth held out: 8 and 2.
        let strata: Vec<usize> = (0..50).map(|i| usize::from(i >= 40)).collect();
        let extra = extra(&strata);
        let options = RetrainOptions { validation_fraction: 0.2, ..Default::default() };
        let (training, validation, trained) = split_for_validation(&train(100), &extra, &options).unwrap();
        assert_eq!(validation.len(), 10);
        assert_eq!(trained, 40);
        assert!(validation.iter().all(|v| v.path.starts_with("x")), "only labelled images validate");
        let held = |s: usize| validation.iter().filter(|v| v.label == Label::Class(s)).count();
        assert_eq!((held(0), held(1)), (8, 2));
        for v in &validation {
            assert!(!training.iter().any(|t| t.path == v.path), "{} is trained on", v.path.display());
        }
        // Every training image once, every kept labelled image with its copies.
        let copies: usize =
            extra.iter().filter(|l| !validation.iter().any(|v| v.path == l.path)).map(|l| l.copies).sum();
        assert_eq!(training.len(), 100 + copies);
        // Seeded: the same draw again, another with another seed.
        assert_eq!(split_for_validation(&train(100), &extra, &options).unwrap().1, validation);
        let other = RetrainOptions { seed: 9, ..options.clone() };
        assert_ne!(split_for_validation(&train(100), &extra, &other).unwrap().1, validation);
    }

    #[test]
    fn training_validation_draws_from_both_and_one_labelled_image_is_too_few() {
        let options = RetrainOptions { validation_from: ValidationFrom::Training, ..Default::default() };
        let (_, validation, _) = split_for_validation(&train(90), &extra(&[0; 10]), &options).unwrap();
        assert_eq!(validation.len(), 20);
        assert!(validation.iter().any(|v| v.path.starts_with("t")));
        let err = split_for_validation(&train(90), &extra(&[0]), &RetrainOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--validation-from training"), "{err}");
    }
}
