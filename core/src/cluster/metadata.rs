//! Explanations of clusters from image metadata (e.g. the simulator parameters in a manifest).
//!
//! Each metadata column is compared between a cluster's images and the other clustered images by a
//! measure that sees a shift of the values as well as a narrowing: for a numeric column the
//! two-sample Kolmogorov–Smirnov distance (the largest gap between the two empirical CDFs), for a
//! categorical one the total variation distance between the two value distributions (the share
//! of images that would have to change value). A column **explains** a cluster when that
//! separation is at least [`SEPARATION_MIN`] and its p-value (KS asymptotic, or Pearson's
//! chi-square), Bonferroni-corrected for the number of columns tested, is below [`ALPHA`]. A
//! cluster with no such column is **unexplained**; columns are ranked by separation, the ones that
//! explain first. A column constant over all clustered images, and clusters of one image, explain
//! nothing.
//!
//! The paper's RQ1 metric is kept as a separate figure: the variance of a numeric column within the
//! cluster over its variance among all clustered images (`ratio`; `reduction = 1 − ratio`), Gini
//! impurity for a categorical column.

use hudd_report::{ColumnKind, Histogram};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::stats;
use crate::dataset::ColumnInfo;
use crate::error::{Error, Result};

/// The smallest separation (KS or total variation distance) with which a column explains a cluster.
pub const SEPARATION_MIN: f64 = 0.3;

/// The largest Bonferroni-corrected p-value with which a column explains a cluster.
pub const ALPHA: f64 = 0.01;

/// Bins of a numeric column's histogram.
pub const HISTOGRAM_BINS: usize = 10;

/// Metadata of the clustered images: column names and one row of values per image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// Column names.
    pub columns: Vec<String>,
    /// Values per image (same order as the images clustered), one per column.
    pub rows: Vec<Vec<String>>,
    /// What some columns measure (the dataset's `columns.csv`).
    pub info: Vec<ColumnInfo>,
}

impl Metadata {
    /// The rows `rows` (indices into this table's rows), in that order.
    pub fn subset(&self, rows: &[usize]) -> Metadata {
        Metadata {
            columns: self.columns.clone(),
            rows: rows.iter().filter_map(|&i| self.rows.get(i).cloned()).collect(),
            info: self.info.clone(),
        }
    }

    /// Reads a CSV with an `image` column (e.g. `results/test.csv`) and keeps one row per image of
    /// `images`, in that order; every other column is metadata.
    pub fn from_csv(path: &Path, images: &[String]) -> Result<Metadata> {
        let bad = |reason: String| Error::Csv { what: "metadata", path: path.to_path_buf(), reason };
        let mut reader = crate::fsio::csv_reader(path).map_err(|e| bad(e.to_string()))?;
        let header: Vec<String> =
            reader.headers().map_err(|e| bad(e.to_string()))?.iter().map(str::to_string).collect();
        let image_col = header.iter().position(|h| h == "image").ok_or_else(|| bad("no `image` column".to_string()))?;
        let keep: Vec<usize> = (0..header.len()).filter(|&i| i != image_col).collect();
        let mut by_image = HashMap::new();
        for (line, row) in reader.records().enumerate() {
            let row = row.map_err(|e| bad(format!("row {}: {e}", line + 2)))?;
            let values: Vec<String> = keep.iter().map(|&i| row.get(i).unwrap_or("").to_string()).collect();
            by_image.insert(row.get(image_col).unwrap_or("").to_string(), values);
        }
        let rows = images
            .iter()
            .map(|image| by_image.get(image).cloned().ok_or_else(|| bad(format!("no row for image `{image}`"))))
            .collect::<Result<_>>()?;
        Ok(Metadata { columns: keep.iter().map(|&i| header[i].clone()).collect(), rows, info: Vec::new() })
    }
}

/// How one column explains one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The column.
    pub column: String,
    /// `numeric` or `categorical`.
    pub kind: ColumnKind,
    /// RQ1: within-cluster variance (Gini impurity) over that of all clustered images.
    pub ratio: f64,
    /// RQ1: `1 − ratio`.
    pub reduction: f64,
    /// Numeric: the cluster's mean.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mean: Option<f64>,
    /// Numeric: the mean over all clustered images.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub overall_mean: Option<f64>,
    /// Categorical: the cluster's count of each value.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub distribution: Option<BTreeMap<String, usize>>,
    /// KS distance (numeric) or total variation distance (categorical) between the cluster and
    /// the other clustered images, 0–1.
    #[serde(default)]
    pub separation: f64,
    /// The separation's p-value, Bonferroni-corrected for the columns tested.
    #[serde(default = "one")]
    pub p_value: f64,
    /// Whether the column explains the cluster (separation ≥ [`SEPARATION_MIN`], p < [`ALPHA`]).
    #[serde(default)]
    pub explains: bool,
    /// Numeric: the column's range: as the dataset's `columns.csv` declares it, else the smallest
    /// and largest value among all clustered images.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub range: Option<[f64; 2]>,
    /// What the column measures (the dataset's `columns.csv`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub description: Option<String>,
    /// The column's unit (the dataset's `columns.csv`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unit: Option<String>,
    /// The cluster against all clustered images, for a small chart.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub histogram: Option<Histogram>,
}

fn one() -> f64 {
    1.0
}

impl Explanation {
    /// One line for a summary: `eyelid 0.35 vs 0.55 overall (range 0.02–0.98), KS 0.52` or
    /// `lighting 7/7 `dark` (38% overall), TV 0.62`.
    pub fn summary(&self) -> String {
        match self.kind {
            ColumnKind::Numeric => {
                let mut s = self.column.clone();
                // `2.5 px`, but `12°`.
                let unit = match self.unit.as_deref() {
                    Some(u) if u.chars().next().is_some_and(char::is_alphanumeric) => format!(" {u}"),
                    Some(u) => u.to_string(),
                    None => String::new(),
                };
                if let (Some(m), Some(all)) = (self.mean, self.overall_mean) {
                    s.push_str(&format!(" {}{unit} vs {}{unit} overall", short(m), short(all)));
                }
                match (self.description.as_deref().filter(|d| !d.is_empty()), self.range) {
                    (Some(d), Some([lo, hi])) => s.push_str(&format!(" ({d}, {}–{}{unit})", short(lo), short(hi))),
                    (Some(d), None) => s.push_str(&format!(" ({d})")),
                    (None, Some([lo, hi])) => s.push_str(&format!(" (range {}–{}{unit})", short(lo), short(hi))),
                    (None, None) => {}
                }
                s.push_str(&format!(", KS {:.2}", self.separation));
                s
            }
            ColumnKind::Categorical => {
                let mut s = self.column.clone();
                if let Some(d) = self.description.as_deref().filter(|d| !d.is_empty()) {
                    s.push_str(&format!(" ({d})"));
                }
                let top = self.distribution.as_ref().and_then(|d| {
                    d.iter().max_by_key(|(v, c)| (**c, std::cmp::Reverse(v.as_str()))).map(|(v, c)| (v, *c, d))
                });
                if let Some((v, c, d)) = top {
                    let total: usize = d.values().sum();
                    s.push_str(&format!(" {c}/{total} `{v}`"));
                    if let Some(h) = &self.histogram {
                        let all: usize = h.all.iter().sum();
                        if let Some(k) = h.labels.iter().position(|l| l == v).filter(|_| all > 0) {
                            s.push_str(&format!(" ({:.0}% overall)", 100.0 * h.all[k] as f64 / all as f64));
                        }
                    }
                }
                s.push_str(&format!(", TV {:.2}", self.separation));
                s
            }
        }
    }

    /// The paper's RQ1 figure for this column: `eyelid −87% variance`.
    pub fn rq1_summary(&self) -> String {
        let what = match self.kind {
            ColumnKind::Numeric => "variance",
            ColumnKind::Categorical => "impurity",
        };
        // A negative reduction is an increase: the cluster is more spread than all images.
        let sign = if self.reduction < 0.0 { '+' } else { '−' };
        format!("{} {sign}{:.0}% {what}", self.column, 100.0 * self.reduction.abs())
    }
}

/// A cluster's headline: the best explaining column's summary, or `unexplained` with the best
/// column that fell short; `—` without metadata.
pub fn headline(explanations: &[Explanation]) -> String {
    match explanations.first() {
        None => "—".into(),
        Some(e) if e.explains => e.summary(),
        Some(e) => format!("unexplained (closest: {})", e.summary()),
    }
}

fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A column over all clustered images: what every cluster is compared against, computed once.
enum Column {
    /// Numbers (empty cells are missing).
    Numeric(NumericColumn),
    /// Anything else.
    Categorical(CategoricalColumn),
}

struct NumericColumn {
    values: Vec<Option<f64>>,
    variance: f64,
    mean: f64,
    lo: f64,
    hi: f64,
    /// All clustered images' counts per histogram bin.
    counts: Vec<usize>,
}

struct CategoricalColumn {
    values: Vec<String>,
    gini: f64,
    counts: BTreeMap<String, usize>,
    /// The values, the most frequent first.
    labels: Vec<String>,
}

/// Column `c`, or `None` when it is constant over all clustered images (it explains nothing).
fn column(meta: &Metadata, c: usize) -> Option<Column> {
    let values: Vec<&str> = meta.rows.iter().map(|r| r.get(c).map_or("", |s| s.trim())).collect();
    let numeric = values.iter().all(|v| v.is_empty() || v.parse::<f64>().is_ok_and(f64::is_finite))
        && values.iter().any(|v| !v.is_empty());
    if numeric {
        let values: Vec<Option<f64>> = values.iter().map(|v| v.parse().ok()).collect();
        let (variance, mean) = variance(values.iter().flatten().copied())?;
        if variance <= 0.0 {
            return None;
        }
        let lo = values.iter().flatten().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().flatten().copied().fold(f64::NEG_INFINITY, f64::max);
        let counts = bin_counts(values.iter().flatten().copied(), lo, hi);
        Some(Column::Numeric(NumericColumn { values, variance, mean, lo, hi, counts }))
    } else {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        let (gini, counts) = gini(values.iter());
        if gini <= 0.0 {
            return None;
        }
        let mut labels: Vec<(&String, &usize)> = counts.iter().collect();
        labels.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let labels = labels.into_iter().map(|(k, _)| k.clone()).collect();
        Some(Column::Categorical(CategoricalColumn { values, gini, counts, labels }))
    }
}

fn variance(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    Some((v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64, mean))
}

fn gini<'a>(values: impl Iterator<Item = &'a String>) -> (f64, BTreeMap<String, usize>) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v.clone()).or_default() += 1;
    }
    let n: usize = counts.values().sum();
    let g = 1.0 - counts.values().map(|&c| (c as f64 / n.max(1) as f64).powi(2)).sum::<f64>();
    (g, counts)
}

/// Counts of `values` in [`HISTOGRAM_BINS`] equal-width bins over `[lo, hi]`.
fn bin_counts(values: impl Iterator<Item = f64>, lo: f64, hi: f64) -> Vec<usize> {
    let width = (hi - lo) / HISTOGRAM_BINS as f64;
    let mut c = vec![0; HISTOGRAM_BINS];
    for v in values {
        c[(((v - lo) / width) as usize).min(HISTOGRAM_BINS - 1)] += 1;
    }
    c
}

fn numeric(
    name: &str,
    info: Option<&ColumnInfo>,
    col: &NumericColumn,
    members: &[usize],
    in_cluster: &[bool],
) -> Option<Explanation> {
    let v = &col.values;
    let cluster: Vec<f64> = members.iter().filter_map(|&i| v.get(i).copied().flatten()).collect();
    let others: Vec<f64> = v.iter().zip(in_cluster).filter(|(_, &inside)| !inside).filter_map(|(x, _)| *x).collect();
    let (vw, mw) = variance(cluster.iter().copied())?;
    let d = stats::ks_statistic(&cluster, &others);
    let width = (col.hi - col.lo) / HISTOGRAM_BINS as f64;
    Some(Explanation {
        column: name.to_string(),
        kind: ColumnKind::Numeric,
        ratio: vw / col.variance,
        reduction: 1.0 - vw / col.variance,
        mean: Some(mw),
        overall_mean: Some(col.mean),
        distribution: None,
        separation: d,
        p_value: stats::ks_p_value(d, cluster.len(), others.len()),
        explains: false,
        range: Some(info.and_then(|i| i.range).unwrap_or([col.lo, col.hi])),
        description: info.map(|i| i.description.clone()).filter(|d| !d.is_empty()),
        unit: info.map(|i| i.unit.clone()).filter(|u| !u.is_empty()),
        histogram: Some(Histogram {
            edges: (0..=HISTOGRAM_BINS).map(|i| col.lo + width * i as f64).collect(),
            labels: Vec::new(),
            cluster: bin_counts(cluster.iter().copied(), col.lo, col.hi),
            all: col.counts.clone(),
        }),
    })
}

fn categorical(
    name: &str,
    info: Option<&ColumnInfo>,
    col: &CategoricalColumn,
    members: &[usize],
    in_cluster: &[bool],
) -> Option<Explanation> {
    let v = &col.values;
    let (gw, dist) = gini(members.iter().filter_map(|&i| v.get(i)));
    let (_, others) = gini(v.iter().zip(in_cluster).filter(|(_, &inside)| !inside).map(|(x, _)| x));
    let (nc, no) = (dist.values().sum::<usize>() as f64, others.values().sum::<usize>() as f64);
    let share =
        |m: &BTreeMap<String, usize>, k: &str, n: f64| if n > 0.0 { *m.get(k).unwrap_or(&0) as f64 / n } else { 0.0 };
    let tv = if no > 0.0 {
        0.5 * col.counts.keys().map(|k| (share(&dist, k, nc) - share(&others, k, no)).abs()).sum::<f64>()
    } else {
        0.0
    };
    let p = stats::chi_square(&dist, &others).map_or(1.0, |(_, _, p)| p);
    let histogram = Histogram {
        edges: Vec::new(),
        cluster: col.labels.iter().map(|l| *dist.get(l).unwrap_or(&0)).collect(),
        all: col.labels.iter().map(|l| col.counts[l]).collect(),
        labels: col.labels.clone(),
    };
    Some(Explanation {
        column: name.to_string(),
        kind: ColumnKind::Categorical,
        ratio: gw / col.gini,
        reduction: 1.0 - gw / col.gini,
        mean: None,
        overall_mean: None,
        distribution: Some(dist),
        separation: tv,
        p_value: p,
        explains: false,
        range: None,
        description: info.map(|i| i.description.clone()).filter(|d| !d.is_empty()),
        unit: None,
        histogram: Some(histogram),
    })
}

/// Ranked explanations of each cluster (`clusters[c]` lists image indices into `meta.rows`): the
/// columns that explain it first, then by separation, largest first.
pub fn explain(meta: &Metadata, clusters: &[Vec<usize>]) -> Vec<Vec<Explanation>> {
    let columns: Vec<Option<Column>> = (0..meta.columns.len()).map(|c| column(meta, c)).collect();
    clusters
        .iter()
        .map(|members| {
            if members.len() < 2 {
                return Vec::new();
            }
            let mut in_cluster = vec![false; meta.rows.len()];
            for &i in members {
                if let Some(x) = in_cluster.get_mut(i) {
                    *x = true;
                }
            }
            let mut out: Vec<Explanation> = meta
                .columns
                .iter()
                .zip(&columns)
                // Known causes are ground truth, scored apart (super::causes), never an explanation.
                .filter(|(name, _)| name.as_str() != super::causes::CAUSE_COLUMN)
                .filter_map(|(name, col)| {
                    let info = meta.info.iter().find(|i| &i.column == name);
                    match col {
                        Some(Column::Numeric(c)) => numeric(name, info, c, members, &in_cluster),
                        Some(Column::Categorical(c)) => categorical(name, info, c, members, &in_cluster),
                        None => None,
                    }
                })
                .collect();
            let tested = out.len() as f64;
            for e in &mut out {
                e.p_value = (e.p_value * tested).min(1.0);
                e.explains = e.separation >= SEPARATION_MIN && e.p_value < ALPHA;
            }
            out.sort_by(|a, b| {
                b.explains
                    .cmp(&a.explains)
                    .then_with(|| b.separation.total_cmp(&a.separation))
                    .then_with(|| a.p_value.total_cmp(&b.p_value))
                    .then_with(|| a.column.cmp(&b.column))
            });
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic uniform draw in [0, 1).
    fn uniform(state: &mut u64) -> f64 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// 200 clustered images: 0..40 are cluster A (eyes nearly closed: eyelid shifted, not narrowed;
    /// lighting mostly `dark`), 40..70 cluster B (a random draw like the rest), the others spread.
    /// `glare` is 0 for 90 % of all images and for all of A; `k` is constant.
    fn table() -> Metadata {
        let mut state = 3;
        let rows = (0..200)
            .map(|i| {
                let u = uniform(&mut state);
                let eyelid = if i < 40 { 0.15 + 0.4 * u } else { 0.35 + 0.4 * u };
                let glare = if i < 40 || uniform(&mut state) < 0.9 { 0.0 } else { uniform(&mut state) };
                let light = if i < 40 {
                    if i % 8 == 0 {
                        "day"
                    } else {
                        "dark"
                    }
                } else if i % 2 == 0 {
                    "day"
                } else {
                    "dark"
                };
                let yaw = 40.0 * uniform(&mut state) - 20.0;
                vec![format!("{eyelid:.4}"), format!("{glare:.4}"), light.into(), format!("{yaw:.3}"), "7".into()]
            })
            .collect();
        let columns = ["eyelid", "glare", "lighting", "yaw", "k"].map(String::from).to_vec();
        Metadata { columns, rows, info: Vec::new() }
    }

    #[test]
    fn a_shifted_column_explains_a_cluster_and_a_random_cluster_is_unexplained() {
        let meta = table();
        let ex = explain(&meta, &[(0..40).collect(), (40..70).collect(), vec![199]]);
        let a = &ex[0];
        // The shift is seen although the spread is the same (RQ1 alone would miss it).
        assert_eq!(a[0].column, "eyelid");
        assert!(a[0].explains && a[0].separation > 0.45, "{:?}", a[0]);
        assert!(a[0].reduction.abs() < 0.5, "the variance barely changes: {}", a[0].reduction);
        assert!(a[0].p_value < 1e-6);
        assert!(a[1].column == "lighting" && a[1].explains, "over-represented `dark`: {:?}", a[1]);
        // Glare 0 in the cluster is the common case among all images: no explanation, however
        // large its variance reduction.
        let glare = a.iter().find(|e| e.column == "glare").expect("glare tested");
        assert!(!glare.explains && glare.reduction > 0.99, "{glare:?}");
        assert!(a.iter().all(|e| e.column != "k"), "a column constant over the run explains nothing");
        assert!(a.iter().filter(|e| e.explains).count() == 2);
        assert!(headline(a).starts_with("eyelid 0."), "{}", headline(a));
        assert!(
            a[0].summary().contains("overall (range 0.15") && a[0].summary().contains(", KS 0."),
            "{}",
            a[0].summary()
        );
        assert!(a[1].summary().contains("`dark`") && a[1].summary().contains("% overall), TV"), "{}", a[1].summary());
        // Histograms: 10 bins, the cluster's counts inside all images' counts.
        let h = a[0].histogram.as_ref().expect("histogram");
        assert_eq!(
            (h.edges.len(), h.cluster.len(), h.cluster.iter().sum::<usize>(), h.all.iter().sum::<usize>()),
            (11, 10, 40, 200)
        );
        assert!(h.cluster.iter().zip(&h.all).all(|(c, a)| c <= a));
        let h = a[1].histogram.as_ref().expect("histogram");
        assert_eq!(h.labels.len(), 2);
        // A cluster drawn like the rest: nothing passes, and it says so.
        let b = &ex[1];
        assert!(!b.is_empty() && b.iter().all(|e| !e.explains), "{b:?}");
        assert!(headline(b).starts_with("unexplained (closest: "), "{}", headline(b));
        assert!(ex[2].is_empty(), "a single image explains nothing");
        assert_eq!(headline(&ex[2]), "—");
    }

    #[test]
    fn described_columns_are_quoted_with_their_unit_and_declared_range() {
        let mut meta = table();
        let info = |column: &str, description: &str, unit: &str, range| ColumnInfo {
            column: column.into(),
            description: description.into(),
            unit: unit.into(),
            range,
        };
        meta.info = vec![
            info("eyelid", "eyelid openness, 0 closed to 1 wide open", "", Some([0.0, 1.0])),
            info("yaw", "head yaw", "°", None),
            info("lighting", "light source", "", None),
        ];
        let ex = explain(&meta, &[(0..40).collect()]);
        let by = |c: &str| ex[0].iter().find(|e| e.column == c).expect("column tested").summary();
        let eyelid = by("eyelid");
        assert!(eyelid.contains(" overall (eyelid openness, 0 closed to 1 wide open, 0–1), KS "), "{eyelid}");
        // No declared range: the one in the data.
        assert!(by("yaw").contains("° vs ") && by("yaw").contains("° overall (head yaw, -19."), "{}", by("yaw"));
        assert!(by("lighting").starts_with("lighting (light source) "), "{}", by("lighting"));
    }

    #[test]
    fn the_rq1_figure_is_kept_beside_the_ranking() {
        let meta = table();
        let ex = explain(&meta, &[(0..40).collect()]);
        let glare = ex[0].iter().find(|e| e.column == "glare").expect("glare tested");
        assert_eq!(glare.rq1_summary(), "glare −100% variance");
        let mut wider = glare.clone();
        wider.reduction = -0.2;
        assert!(wider.rq1_summary().starts_with("glare +20% variance"), "{}", wider.rq1_summary());
    }
}
