//! RQ2 of the paper: does retraining on HUDD's unsafe set beat retraining on random improvement
//! images at the same labelling budget?
//!
//! The budget is the number of images the engineers label: the unsafe set's size. Per repeat
//! `r` (seed `seed + r`):
//! - **hudd**: the unsafe set, balanced with bootstrap seed `seed + r`;
//! - **bl1**: that many improvement images drawn at random among those the analysed model gets
//!   wrong (for a regressor: whose loss exceeds the configured threshold; all of them when
//!   fewer);
//! - **bl2**: that many improvement images drawn at random;
//! - **hudd-all** (a variant, on request): every labelled unsafe image, each cluster brought to
//!   the largest cluster's size by copies as the bootstrap draws them — the original keeps only
//!   the `ceil(test members)` closest per cluster, and so trains on about half of what was
//!   labelled.
//!
//! Each is added to the training split and the model is retrained with the same settings and
//! retrain seed `seed + r`; the test accuracy, overall and on the root-cause clusters' members,
//! is summarised as mean and sample standard deviation (n − 1; none for one repeat). From
//! [`MIN_TESTED_REPEATS`] repeats on, HUDD is tested against each baseline (Welch's t and
//! Mann–Whitney U, two-sided), as the paper repeated its retrainings ten times.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::stage::{retrain, Accuracy, Labelled, RetrainOptions, RunContext};
use super::stats::{self, TestResult};
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
/// Its version (2: `sd` may be absent, per-repeat counts, the tests).
pub const FORMAT_VERSION: u32 = 2;
/// Repeats from which HUDD is tested against the baselines.
pub const MIN_TESTED_REPEATS: usize = 5;

/// A selection method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// HUDD's balanced unsafe set.
    Hudd,
    /// A variant of HUDD: every labelled unsafe image, balanced by copies.
    HuddAll,
    /// Random improvement images the model gets wrong.
    Bl1,
    /// Random improvement images.
    Bl2,
}

impl Method {
    /// Every method, in table order.
    pub const ALL: [Method; 4] = [Method::Hudd, Method::HuddAll, Method::Bl1, Method::Bl2];
    /// The paper's: HUDD and its two baselines.
    pub const PAPER: [Method; 3] = [Method::Hudd, Method::Bl1, Method::Bl2];

    /// The key in `compare.json`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Hudd => "hudd",
            Method::HuddAll => "hudd-all",
            Method::Bl1 => "bl1",
            Method::Bl2 => "bl2",
        }
    }

    /// Whether it is a baseline (random selection) rather than a HUDD selection.
    pub fn is_baseline(self) -> bool {
        matches!(self, Method::Bl1 | Method::Bl2)
    }
}

/// Mean and sample standard deviation over the repeats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); none for fewer than two values.
    #[serde(default)]
    pub sd: Option<f64>,
}

impl MeanSd {
    /// Of `values` (0, no sd, when empty).
    pub fn of(values: &[f64]) -> MeanSd {
        let n = values.len() as f64;
        if values.is_empty() {
            return MeanSd { mean: 0.0, sd: None };
        }
        let mean = values.iter().sum::<f64>() / n;
        let sd =
            (values.len() >= 2).then(|| (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        MeanSd { mean, sd }
    }
}

/// What a test compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Measure {
    /// Test accuracy.
    Overall,
    /// Accuracy on the test members of the root-cause clusters.
    FailingClusters,
}

impl Measure {
    /// Both, in table order.
    pub const ALL: [Measure; 2] = [Measure::Overall, Measure::FailingClusters];

    /// As the table says it.
    pub fn label(self) -> &'static str {
        match self {
            Measure::Overall => "overall",
            Measure::FailingClusters => "root-cause clusters",
        }
    }
}

/// A HUDD selection against one baseline on one measure, over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Significance {
    /// `hudd`, or the variant `hudd-all`.
    #[serde(default = "hudd")]
    pub method: Method,
    /// The baseline.
    pub baseline: Method,
    /// What is compared.
    pub measure: Measure,
    /// Mean of the method's repeats minus the baseline's.
    pub difference: f64,
    /// Welch's t-test (t of HUDD − baseline, two-sided p); none when neither varies.
    pub welch: Option<TestResult>,
    /// Mann–Whitney U test (U of HUDD, two-sided p).
    pub mann_whitney: Option<TestResult>,
}

fn hudd() -> Method {
    Method::Hudd
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
    /// Images the method had labelled (the budget; fewer for BL1 when the model gets fewer
    /// improvement images wrong).
    #[serde(default)]
    pub labelled: usize,
    /// Distinct labelled images added to the retraining (HUDD: those its bootstrap keeps, the
    /// `ceil(test members)` closest per cluster).
    pub images: usize,
    /// With their copies.
    pub copies: usize,
    /// Of the images added, those held out to choose the epoch.
    #[serde(default)]
    pub validation: usize,
    /// Of the images added, those trained on.
    #[serde(default)]
    pub trained: usize,
    /// The kept epoch.
    pub chosen_epoch: usize,
    /// Whether the kept model is the analysed one unchanged (epoch 0 kept).
    #[serde(default)]
    pub unchanged: bool,
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
    /// Improvement images the analysed model could read (BL2's pool).
    #[serde(default)]
    pub improvement_images: usize,
    /// Of the unsafe set's images, those the analysed model gets wrong (BL1 takes only such
    /// images, which takes knowing every improvement image's label).
    #[serde(default)]
    pub unsafe_wrong: usize,
    /// Repeats per method.
    pub repeats: usize,
    /// First seed; repeat `r` uses `seed + r`.
    pub seed: u64,
    /// HUDD against each baseline, overall and on the root-cause clusters; empty below
    /// [`MIN_TESTED_REPEATS`] repeats.
    #[serde(default)]
    pub tests: Vec<Significance>,
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
    /// The variant: every labelled unsafe image, balanced (when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hudd_all: Option<Summary>,
}

impl CompareRecord {
    /// The summary of `method`, when it was run.
    pub fn method(&self, method: Method) -> Option<&Summary> {
        match method {
            Method::Hudd => Some(&self.hudd),
            Method::HuddAll => self.hudd_all.as_ref(),
            Method::Bl1 => Some(&self.bl1),
            Method::Bl2 => Some(&self.bl2),
        }
    }

    /// The methods that were run, in table order, with their summaries.
    pub fn methods(&self) -> Vec<(Method, &Summary)> {
        Method::ALL.iter().filter_map(|&m| self.method(m).map(|s| (m, s))).collect()
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
/// improvement image, or `None` for the improvement data's own labels; `variant`: also run
/// `hudd-all`.
pub fn compare(
    run: &RunDir,
    labels: Option<&Path>,
    repeats: usize,
    seed: u64,
    options: &RetrainOptions,
    variant: bool,
    progress: &dyn Progress,
) -> Result<CompareRecord> {
    Ok(compare_keeping_first(run, labels, repeats, seed, options, variant, progress)?.0)
}

/// [`compare`], also returning HUDD's first retraining (seed `seed`): the model and record that
/// `hudd bootstrap --seed SEED` then `hudd retrain --seed SEED` with the same settings give, so a
/// caller that wants both (the demo) trains it once.
pub fn compare_keeping_first(
    run: &RunDir,
    labels: Option<&Path>,
    repeats: usize,
    seed: u64,
    options: &RetrainOptions,
    variant: bool,
    progress: &dyn Progress,
) -> Result<(CompareRecord, super::Retrained)> {
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
    let wrong_set: std::collections::HashSet<&str> = wrong.iter().copied().collect();
    let label_of: HashMap<&str, &Label> = pool.iter().map(|(i, l)| (i.as_str(), l)).collect();
    let labelled = |images: &[&str]| -> Vec<Labelled> {
        images
            .iter()
            .map(|i| {
                let label = label_of[i].clone();
                let stratum = match label {
                    Label::Class(c) => c,
                    Label::Target(_) => 0,
                };
                Labelled { path: dir.join(i), label, copies: 1, stratum }
            })
            .collect()
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
    let no_cut = BTreeMap::new();
    let methods: Vec<Method> = Method::ALL.into_iter().filter(|&m| variant || m != Method::HuddAll).collect();
    let mut results: BTreeMap<Method, (Vec<Accuracy>, Vec<Repeat>)> = BTreeMap::new();
    let mut first = None;
    for r in 0..repeats {
        let s = seed.wrapping_add(r as u64);
        for &method in &methods {
            let extra = match method {
                // As `hudd bootstrap --seed s` balances it (without rewriting balanced.csv); the
                // variant without the cut to ceil(test members) per cluster.
                Method::Hudd | Method::HuddAll => {
                    bootstrap::balance(&unsafe_rows, if method == Method::Hudd { &members } else { &no_cut }, s)
                        .into_iter()
                        .map(|(row, copies)| {
                            let label = label_of.get(row.image.as_str()).ok_or_else(|| Error::Training {
                                reason: format!("the unsafe image `{}` has no label", row.image),
                            })?;
                            Ok(Labelled {
                                path: dir.join(&row.image),
                                label: (*label).clone(),
                                copies,
                                stratum: row.cluster,
                            })
                        })
                        .collect::<Result<Vec<_>>>()?
                }
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
            let data = done.record.data.clone();
            let a = done.record.after.clone();
            let entry = results.entry(method).or_default();
            entry.1.push(Repeat {
                seed: s,
                labelled: if method.is_baseline() { extra.len() } else { budget },
                images: extra.len(),
                copies: extra.iter().map(|l| l.copies).sum(),
                validation: extra.len() - data.extra_trained,
                trained: data.extra_trained,
                chosen_epoch: done.record.chosen_epoch,
                unchanged: done.record.unchanged,
                overall: a.overall,
                failing_clusters: a.failing_clusters,
            });
            entry.0.push(a);
            if method == Method::Hudd && first.is_none() {
                first = Some(done);
            }
        }
    }
    let mut summary = |m: Method| {
        let (a, reps) = results.remove(&m).unwrap_or_default();
        Summary::of(&a, reps)
    };
    let (hudd, bl1, bl2) = (summary(Method::Hudd), summary(Method::Bl1), summary(Method::Bl2));
    let hudd_all = variant.then(|| summary(Method::HuddAll));
    let mut tests = Vec::new();
    if repeats >= MIN_TESTED_REPEATS {
        let baselines = [(Method::Bl1, &bl1), (Method::Bl2, &bl2)];
        tests = significance(Method::Hudd, &hudd, &baselines);
        if let Some(all) = &hudd_all {
            tests.extend(significance(Method::HuddAll, all, &baselines));
        }
    }
    let record = CompareRecord {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        hudd_version: crate::VERSION.into(),
        budget,
        improvement_wrong: wrong.len(),
        improvement_images: all.len(),
        unsafe_wrong: unsafe_rows.iter().filter(|r| wrong_set.contains(r.image.as_str())).count(),
        repeats,
        seed,
        tests,
        options: options.clone(),
        before: Summary::of(std::slice::from_ref(&before), vec![]),
        hudd,
        bl1,
        bl2,
        hudd_all,
    };
    write_json(&run.compare_json(), "comparison", &record)?;
    Ok((record, first.expect("at least one repeat of hudd")))
}

/// A HUDD selection against each baseline on both measures, from the repeats' accuracies.
fn significance(method: Method, hudd: &Summary, baselines: &[(Method, &Summary)]) -> Vec<Significance> {
    let values = |s: &Summary, m: Measure| -> Vec<f64> {
        s.repeats
            .iter()
            .map(|r| match m {
                Measure::Overall => r.overall,
                Measure::FailingClusters => r.failing_clusters,
            })
            .collect()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    baselines
        .iter()
        .flat_map(|&(baseline, s)| {
            Measure::ALL.map(|measure| {
                let (h, b) = (values(hudd, measure), values(s, measure));
                Significance {
                    method,
                    baseline,
                    measure,
                    difference: mean(&h) - mean(&b),
                    welch: stats::welch(&h, &b),
                    mann_whitney: stats::mann_whitney(&h, &b),
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let m = MeanSd::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m.mean, 2.5);
        assert!((m.sd.unwrap() - 1.290_994_448_735_805_6).abs() < 1e-12, "{:?}", m.sd);
        assert_eq!(MeanSd::of(&[0.7]), MeanSd { mean: 0.7, sd: None });
        assert_eq!(MeanSd::of(&[]), MeanSd { mean: 0.0, sd: None });
        // A record of format 1 (sd always a number) still reads.
        let old: MeanSd = serde_json::from_str(r#"{"mean": 0.5, "sd": 0.0}"#).unwrap();
        assert_eq!(old.sd, Some(0.0));
    }

    fn repeat(overall: f64, failing: f64) -> Repeat {
        Repeat {
            seed: 0,
            labelled: 10,
            images: 10,
            copies: 10,
            validation: 2,
            trained: 8,
            chosen_epoch: 1,
            unchanged: false,
            overall,
            failing_clusters: failing,
        }
    }

    #[test]
    fn each_baseline_is_tested_on_both_measures() {
        let summary = |v: &[(f64, f64)]| Summary {
            overall: MeanSd::of(&[]),
            failing_clusters: MeanSd::of(&[]),
            per_cluster: vec![],
            repeats: v.iter().map(|&(o, f)| repeat(o, f)).collect(),
        };
        let hudd = summary(&[(0.80, 0.5), (0.81, 0.6), (0.82, 0.55), (0.80, 0.65), (0.79, 0.52)]);
        let bl = summary(&[(0.80, 0.1), (0.81, 0.2), (0.80, 0.15), (0.82, 0.12), (0.81, 0.18)]);
        let tests = significance(Method::Hudd, &hudd, &[(Method::Bl1, &bl), (Method::Bl2, &bl)]);
        assert_eq!(tests.len(), 4);
        let failing = tests.iter().find(|t| t.measure == Measure::FailingClusters).unwrap();
        assert!((failing.difference - 0.414).abs() < 1e-9, "{}", failing.difference);
        assert!(failing.welch.unwrap().p < 0.001 && failing.welch.unwrap().statistic > 0.0);
        // Five against five, every HUDD value above: U = 25, the exact two-sided p = 2/252.
        let u = failing.mann_whitney.unwrap();
        assert_eq!(u.statistic, 25.0);
        assert!((u.p - 2.0 / 252.0).abs() < 1e-12, "{}", u.p);
        let overall = tests.iter().find(|t| t.measure == Measure::Overall).unwrap();
        assert!(overall.welch.unwrap().p > 0.5);
    }
}
