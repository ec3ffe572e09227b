//! RQ2 of the paper: does retraining on HUDD's unsafe set beat retraining on random improvement
//! images at the same labelling budget?
//!
//! The budget is the number of images the engineers label: the unsafe set's size. Per repeat
//! `r` (seed `seed + r`):
//! - **hudd**: the unsafe set, balanced with bootstrap seed `seed + r`;
//! - **bl1**: that many improvement images drawn at random among those the analysed model gets
//!   wrong (for a regressor: whose loss exceeds the configured threshold; all of them when
//!   fewer);
//! - **bl2**: that many improvement images drawn at random.
//!
//! Each is added to the training split and the model is retrained with the same settings and
//! retrain seed `seed + r`; the test accuracy, overall and on the root-cause clusters' members,
//! is summarised as mean and sample standard deviation (n − 1; 0 for one repeat).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::stage::{retrain, Accuracy, Labelled, RetrainOptions, RunContext};
use crate::bootstrap::{self, LabelSource};
use crate::dataset::{Label, Sample, Split, SplitData};
use crate::error::{Error, Result};
use crate::evaluate::Evaluator;
use crate::fsio::write_json;
use crate::progress::Progress;
use crate::rng::Rng;
use crate::run::RunDir;

/// `compare.json`'s format name.
pub const FORMAT: &str = "hudd-compare";
/// Its version.
pub const FORMAT_VERSION: u32 = 1;

/// A selection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// HUDD's balanced unsafe set.
    Hudd,
    /// Random improvement images the model gets wrong.
    Bl1,
    /// Random improvement images.
    Bl2,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 3] = [Method::Hudd, Method::Bl1, Method::Bl2];

    /// The key in `compare.json`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Hudd => "hudd",
            Method::Bl1 => "bl1",
            Method::Bl2 => "bl2",
        }
    }
}

/// Mean and sample standard deviation over the repeats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1; 0 for fewer than two values).
    pub sd: f64,
}

impl MeanSd {
    /// Of `values` (0 ± 0 when empty).
    pub fn of(values: &[f64]) -> MeanSd {
        let n = values.len() as f64;
        if values.is_empty() {
            return MeanSd { mean: 0.0, sd: 0.0 };
        }
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() < 2 {
            0.0
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        MeanSd { mean, sd }
    }
}

/// One cluster's accuracy over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// Cluster id.
    pub cluster: usize,
    /// Its test members.
    pub members: usize,
    /// Accuracy on them.
    pub accuracy: MeanSd,
}

/// One retraining of one method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repeat {
    /// Seed of the draw (bootstrap for hudd) and of the retraining.
    pub seed: u64,
    /// Distinct labelled images added.
    pub images: usize,
    /// With their copies.
    pub copies: usize,
    /// The kept epoch.
    pub chosen_epoch: usize,
    /// Test accuracy.
    pub overall: f64,
    /// Accuracy on the root-cause clusters' members.
    pub failing_clusters: f64,
}

/// A method (or the model before retraining) over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Test accuracy.
    pub overall: MeanSd,
    /// Accuracy on the test members of the root-cause clusters.
    pub failing_clusters: MeanSd,
    /// Per cluster of the best layer.
    pub per_cluster: Vec<ClusterSummary>,
    /// Every repeat (empty for `before`).
    pub repeats: Vec<Repeat>,
}

impl Summary {
    fn of(accuracies: &[Accuracy], repeats: Vec<Repeat>) -> Summary {
        let pick = |f: &dyn Fn(&Accuracy) -> f64| MeanSd::of(&accuracies.iter().map(f).collect::<Vec<_>>());
        let per_cluster = accuracies
            .first()
            .map(|a| {
                a.per_cluster
                    .iter()
                    .enumerate()
                    .map(|(i, c)| ClusterSummary {
                        cluster: c.cluster,
                        members: c.members,
                        accuracy: pick(&|a| a.per_cluster[i].accuracy),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Summary { overall: pick(&|a| a.overall), failing_clusters: pick(&|a| a.failing_clusters), per_cluster, repeats }
    }
}

/// `RUN/retrain/compare.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRecord {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// hudd's version.
    pub hudd_version: String,
    /// Images labelled per method (the unsafe set's size).
    pub budget: usize,
    /// Improvement images the analysed model gets wrong (BL1's pool).
    pub improvement_wrong: usize,
    /// Repeats per method.
    pub repeats: usize,
    /// First seed; repeat `r` uses `seed + r`.
    pub seed: u64,
    /// The retraining settings (the seed is replaced per repeat).
    pub options: RetrainOptions,
    /// The analysed model (standard deviations 0).
    pub before: Summary,
    /// HUDD's unsafe set.
    pub hudd: Summary,
    /// Random wrongly-predicted improvement images.
    pub bl1: Summary,
    /// Random improvement images.
    pub bl2: Summary,
}

impl CompareRecord {
    /// The summary of `method`.
    pub fn method(&self, method: Method) -> &Summary {
        match method {
            Method::Hudd => &self.hudd,
            Method::Bl1 => &self.bl1,
            Method::Bl2 => &self.bl2,
        }
    }
}

/// The improvement images with their labels (every one must have a label), relative to the
/// improvement folder.
fn labelled_improvement(
    run: &RunDir,
    ctx: &RunContext,
    improvement: &str,
    labels: Option<&Path>,
) -> Result<(PathBuf, Vec<(String, Label)>)> {
    let dir = PathBuf::from(improvement);
    let (images, _) = crate::heatmaps::images_to_explain(&dir, &[])?;
    let needed: Vec<(String, String)> = images.iter().map(|i| (i.image.clone(), String::new())).collect();
    let source = match labels {
        Some(csv) => LabelSource::Csv(csv.to_path_buf()),
        None => bootstrap::known_labels(run)?.0,
    };
    let map = bootstrap::label_images(&source, &dir, &needed, &ctx.label_kind())?;
    let mut list: Vec<(String, Label)> = map.labels.into_iter().collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((dir, list))
}

/// Runs the comparison and writes `RUN/retrain/compare.json`. `labels`: a CSV labelling every
/// improvement image, or `None` for the improvement data's own labels.
pub fn compare(
    run: &RunDir,
    labels: Option<&Path>,
    repeats: usize,
    seed: u64,
    options: &RetrainOptions,
    progress: &dyn Progress,
) -> Result<CompareRecord> {
    if repeats == 0 {
        return Err(Error::Training { reason: "at least one repeat is needed".into() });
    }
    let ctx = RunContext::open(run)?;
    let (unsafe_record, unsafe_rows) = bootstrap::read_unsafe(run)?;
    let (dir, pool) = labelled_improvement(run, &ctx, &unsafe_record.parameters.improvement, labels)?;
    let budget = unsafe_rows.len();
    let members: BTreeMap<usize, usize> = unsafe_record.clusters.iter().map(|c| (c.cluster, c.test_members)).collect();
    // The analysed model on the improvement images: BL1's pool.
    let split = SplitData {
        split: Split::Improvement,
        dir: dir.clone(),
        samples: pool
            .iter()
            .map(|(image, label)| Sample {
                path: dir.join(image),
                image: image.clone(),
                label: label.clone(),
                metadata: vec![],
            })
            .collect(),
        skipped: vec![],
        metadata_columns: vec![],
    };
    let evaluation = Evaluator::new(&ctx.model, &ctx.data, &ctx.config)?.run_split(&split, progress)?;
    let wrong: Vec<&str> = evaluation.rows.iter().filter(|r| !r.correct).map(|r| r.image.as_str()).collect();
    let label_of: HashMap<&str, &Label> = pool.iter().map(|(i, l)| (i.as_str(), l)).collect();
    let labelled = |images: &[&str]| -> Vec<Labelled> {
        images.iter().map(|i| Labelled { path: dir.join(i), label: label_of[i].clone(), copies: 1 }).collect()
    };
    // The images the model could read (an unreadable file is in no method's set).
    let all: Vec<&str> = evaluation.rows.iter().map(|r| r.image.as_str()).collect();
    let draw = |from: &[&str], seed: u64| -> Vec<Labelled> {
        let mut v = from.to_vec();
        Rng::new(seed ^ 0x0B15_E11E_0000_0000).shuffle(&mut v);
        v.truncate(budget);
        v.sort_unstable();
        labelled(&v)
    };
    let before = ctx.test_accuracy(&ctx.model, progress)?;
    let mut results: BTreeMap<Method, (Vec<Accuracy>, Vec<Repeat>)> = BTreeMap::new();
    for r in 0..repeats {
        let s = seed.wrapping_add(r as u64);
        for method in Method::ALL {
            let extra = match method {
                // As `hudd bootstrap --seed s` balances it (without rewriting balanced.csv).
                Method::Hudd => bootstrap::balance(&unsafe_rows, &members, s)
                    .into_iter()
                    .map(|(row, copies)| {
                        let label = label_of.get(row.image.as_str()).ok_or_else(|| Error::Training {
                            reason: format!("the unsafe image `{}` has no label", row.image),
                        })?;
                        Ok(Labelled { path: dir.join(&row.image), label: (*label).clone(), copies })
                    })
                    .collect::<Result<Vec<_>>>()?,
                Method::Bl1 => draw(&wrong, s),
                Method::Bl2 => draw(&all, s),
            };
            progress.message(&format!("repeat {}/{repeats}: {} ({} images)", r + 1, method.name(), extra.len()));
            let done = retrain(
                &ctx,
                &extra,
                method.name(),
                &RetrainOptions { seed: s, ..options.clone() },
                &before,
                progress,
            )?;
            let a = done.record.after;
            let entry = results.entry(method).or_default();
            entry.1.push(Repeat {
                seed: s,
                images: extra.len(),
                copies: extra.iter().map(|l| l.copies).sum(),
                chosen_epoch: done.record.chosen_epoch,
                overall: a.overall,
                failing_clusters: a.failing_clusters,
            });
            entry.0.push(a);
        }
    }
    let mut summary = |m: Method| {
        let (a, reps) = results.remove(&m).unwrap_or_default();
        Summary::of(&a, reps)
    };
    let record = CompareRecord {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        hudd_version: crate::VERSION.into(),
        budget,
        improvement_wrong: wrong.len(),
        repeats,
        seed,
        options: options.clone(),
        before: Summary::of(std::slice::from_ref(&before), vec![]),
        hudd: summary(Method::Hudd),
        bl1: summary(Method::Bl1),
        bl2: summary(Method::Bl2),
    };
    write_json(&run.compare_json(), "comparison", &record)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let m = MeanSd::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.mean, 2.5);
        assert!((m.sd - 1.290_994_448_735_805_6).abs() < 1e-12, "{}", m.sd);
        assert_eq!(MeanSd::of(&[0.7]), MeanSd { mean: 0.7, sd: 0.0 });
        assert_eq!(MeanSd::of(&[]), MeanSd { mean: 0.0, sd: 0.0 });
    }
}
