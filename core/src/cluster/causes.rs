//! Scoring clusters against causes known by construction: when the data has a `cause` column (the
//! simulator writes one; so can any dataset whose errors were labelled), how well the clusters
//! separate the causes.
//!
//! - **Purity**: the size-weighted share of each cluster's majority cause,
//!   `Σ_c max_cause |c ∩ cause| / N` (1: every cluster holds one cause).
//! - **Coverage**: the causes that are the majority of some cluster, among the causes of the
//!   clustered images other than `none` (an error without a known cause is no root cause to find).
//!
//! The column is ground truth, not an observation: it is scored here and never used to explain a
//! cluster ([`super::metadata::explain`] leaves it out).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::metadata::Metadata;

/// The column that holds each image's known cause.
pub const CAUSE_COLUMN: &str = "cause";
/// The value of an image without a known cause (not counted in the coverage).
pub const NO_CAUSE: &str = "none";
/// Causes with at least this many clustered images should be covered (issue 16's goal).
pub const MIN_COVERED: usize = 5;

/// How well a partition separates the known causes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseScores {
    /// Size-weighted share of each cluster's majority cause, 0–1.
    pub purity: f64,
    /// Each cause (other than `none`) among the clustered images and how many images have it,
    /// the most frequent first.
    pub causes: Vec<(String, usize)>,
    /// The causes of [`CauseScores::causes`] that are the majority of some cluster.
    pub covered: Vec<String>,
    /// Each cluster's majority cause, in cluster order (ties: the cause first in name order).
    pub majority: Vec<String>,
    /// The share of each cluster's images that have its majority cause.
    pub shares: Vec<f64>,
}

impl CauseScores {
    /// Covered causes over all causes (1 when there are none).
    pub fn coverage(&self) -> f64 {
        if self.causes.is_empty() {
            1.0
        } else {
            self.covered.len() as f64 / self.causes.len() as f64
        }
    }

    /// The causes with at least `min` images that no cluster holds as its majority.
    pub fn uncovered(&self, min: usize) -> Vec<(String, usize)> {
        self.causes.iter().filter(|(c, n)| *n >= min && !self.covered.contains(c)).cloned().collect()
    }

    /// One line: `purity 0.83, coverage 4 of 5 causes (not covered: sector-border, 7 images)`.
    pub fn summary(&self) -> String {
        let missing = self.uncovered(1);
        let tail = if missing.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = missing.iter().map(|(c, n)| format!("{c}, {n} images")).collect();
            format!(" (not covered: {})", list.join("; "))
        };
        format!("purity {:.2}, coverage {} of {} causes{tail}", self.purity, self.covered.len(), self.causes.len())
    }
}

/// The scores of `clusters` (member indices into `meta`'s rows), or `None` without a
/// [`CAUSE_COLUMN`] or without clustered images.
pub fn score(meta: &Metadata, clusters: &[Vec<usize>]) -> Option<CauseScores> {
    let col = meta.columns.iter().position(|c| c == CAUSE_COLUMN)?;
    let cause_of = |i: usize| meta.rows.get(i).and_then(|r| r.get(col)).map_or("", |v| v.trim());
    let n: usize = clusters.iter().map(Vec::len).sum();
    if n == 0 {
        return None;
    }
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    let mut majority = Vec::with_capacity(clusters.len());
    let mut shares = Vec::with_capacity(clusters.len());
    let mut held = 0usize;
    for members in clusters {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in members {
            *counts.entry(cause_of(i)).or_default() += 1;
            *totals.entry(cause_of(i)).or_default() += 1;
        }
        // The largest count; on ties the first in name order (BTreeMap order, strict >).
        let best = counts.iter().fold(None, |b: Option<(&str, usize)>, (&c, &k)| match b {
            Some((_, bk)) if bk >= k => b,
            _ => Some((c, k)),
        });
        if let Some((c, k)) = best {
            held += k;
            majority.push(c.to_string());
            shares.push(k as f64 / members.len() as f64);
        } else {
            majority.push(String::new());
            shares.push(0.0);
        }
    }
    let mut causes: Vec<(String, usize)> =
        totals.into_iter().filter(|(c, _)| *c != NO_CAUSE && !c.is_empty()).map(|(c, k)| (c.to_string(), k)).collect();
    causes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let covered = causes.iter().filter(|(c, _)| majority.contains(c)).map(|(c, _)| c.clone()).collect();
    Some(CauseScores { purity: held as f64 / n as f64, causes, covered, majority, shares })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(causes: &[&str]) -> Metadata {
        Metadata {
            columns: vec!["eyelid".into(), CAUSE_COLUMN.into()],
            rows: causes.iter().map(|c| vec!["0.5".to_string(), c.to_string()]).collect(),
            info: Vec::new(),
        }
    }

    #[test]
    fn purity_and_coverage_by_hand() {
        let m = meta(&["closed", "closed", "glare", "glare", "glare", "none", "dark"]);
        // {closed, closed, glare}, {glare, glare, none}, {dark}: majorities closed, glare, dark.
        let s = score(&m, &[vec![0, 1, 2], vec![3, 4, 5], vec![6]]).unwrap();
        assert!((s.purity - 5.0 / 7.0).abs() < 1e-12);
        assert_eq!(s.majority, ["closed", "glare", "dark"]);
        assert_eq!(s.shares, [2.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(s.causes, [("glare".to_string(), 3), ("closed".to_string(), 2), ("dark".to_string(), 1)]);
        assert_eq!(s.coverage(), 1.0);
        // One cluster of everything: glare covered only.
        let s = score(&m, &[(0..7).collect()]).unwrap();
        assert!((s.purity - 3.0 / 7.0).abs() < 1e-12);
        assert_eq!(s.covered, ["glare"]);
        assert_eq!(s.uncovered(2), [("closed".to_string(), 2)]);
        assert_eq!(s.summary(), "purity 0.43, coverage 1 of 3 causes (not covered: closed, 2 images; dark, 1 images)");
        // Pure clusters: purity 1.
        let s = score(&m, &[vec![0, 1], vec![2, 3, 4], vec![5], vec![6]]).unwrap();
        assert_eq!(s.purity, 1.0);
    }

    #[test]
    fn ties_take_the_first_cause_by_name_and_no_column_scores_nothing() {
        let m = meta(&["b", "a"]);
        assert_eq!(score(&m, &[vec![0, 1]]).unwrap().majority, ["a"]);
        let mut without = meta(&["a"]);
        without.columns[1] = "other".into();
        assert!(score(&without, &[vec![0]]).is_none());
        assert!(score(&m, &[]).is_none());
    }
}
