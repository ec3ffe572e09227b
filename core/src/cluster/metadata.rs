//! Explanations of clusters from image metadata (e.g. the simulator parameters in a manifest).
//!
//! For a numeric column, the paper's RQ1 metric: the variance of the column within the cluster
//! divided by its variance over all clustered images; `reduction = 1 − ratio` (87 % means the
//! cluster's images agree on that parameter far more than the error images do in general). For a
//! categorical column the same with the Gini impurity in place of the variance, plus the
//! cluster's distribution of values. Columns are ranked per cluster by ratio, lowest first;
//! constant columns and clusters of one image explain nothing and are left out.

use hudd_report::ColumnKind;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Metadata of the clustered images: column names and one row of values per image.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// Column names.
    pub columns: Vec<String>,
    /// Values per image (same order as the images clustered), one per column.
    pub rows: Vec<Vec<String>>,
}

impl Metadata {
    /// Reads a CSV with an `image` column (e.g. `results/test.csv`) and keeps one row per image of
    /// `images`, in that order; every other column is metadata.
    pub fn from_csv(path: &Path, images: &[String]) -> Result<Metadata> {
        let bad = |reason: String| Error::Csv { what: "metadata", path: path.to_path_buf(), reason };
        let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
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
        Ok(Metadata { columns: keep.iter().map(|&i| header[i].clone()).collect(), rows })
    }
}

/// How one column explains one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The column.
    pub column: String,
    /// `numeric` or `categorical`.
    pub kind: ColumnKind,
    /// Within-cluster variance (Gini impurity) over that of all clustered images.
    pub ratio: f64,
    /// `1 − ratio`.
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
}

impl Explanation {
    /// One line for a summary: `eyelid −87% variance, mean 0.12 (all 0.48)`.
    pub fn summary(&self) -> String {
        let what = match self.kind {
            ColumnKind::Numeric => "variance",
            ColumnKind::Categorical => "impurity",
        };
        // A negative reduction is an increase: the cluster is more spread than all images.
        let sign = if self.reduction < 0.0 { '+' } else { '−' };
        let mut s = format!("{} {sign}{:.0}% {what}", self.column, 100.0 * self.reduction.abs());
        if let (Some(m), Some(all)) = (self.mean, self.overall_mean) {
            s.push_str(&format!(", mean {} (all {})", short(m), short(all)));
        }
        if let Some(d) = &self.distribution {
            if let Some((v, c)) = d.iter().max_by_key(|(v, c)| (**c, std::cmp::Reverse(v.as_str()))) {
                let total: usize = d.values().sum();
                s.push_str(&format!(", {c}/{total} `{v}`"));
            }
        }
        s
    }
}

fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

enum Column {
    Numeric(Vec<Option<f64>>),
    Categorical(Vec<String>),
}

fn column(meta: &Metadata, c: usize) -> Column {
    let values: Vec<&str> = meta.rows.iter().map(|r| r.get(c).map_or("", |s| s.trim())).collect();
    let numeric = values.iter().all(|v| v.is_empty() || v.parse::<f64>().is_ok_and(f64::is_finite))
        && values.iter().any(|v| !v.is_empty());
    if numeric {
        Column::Numeric(values.iter().map(|v| v.parse().ok()).collect())
    } else {
        Column::Categorical(values.iter().map(|v| v.to_string()).collect())
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

/// Ranked explanations of each cluster (`clusters[c]` lists image indices into `meta.rows`).
pub fn explain(meta: &Metadata, clusters: &[Vec<usize>]) -> Vec<Vec<Explanation>> {
    let columns: Vec<Column> = (0..meta.columns.len()).map(|c| column(meta, c)).collect();
    clusters
        .iter()
        .map(|members| {
            if members.len() < 2 {
                return Vec::new();
            }
            let mut out: Vec<Explanation> = Vec::new();
            for (name, col) in meta.columns.iter().zip(&columns) {
                match col {
                    Column::Numeric(v) => {
                        let all = variance(v.iter().flatten().copied());
                        let within = variance(members.iter().filter_map(|&i| v.get(i).copied().flatten()));
                        if let (Some((va, ma)), Some((vw, mw))) = (all, within) {
                            if va > 0.0 {
                                out.push(Explanation {
                                    column: name.clone(),
                                    kind: ColumnKind::Numeric,
                                    ratio: vw / va,
                                    reduction: 1.0 - vw / va,
                                    mean: Some(mw),
                                    overall_mean: Some(ma),
                                    distribution: None,
                                });
                            }
                        }
                    }
                    Column::Categorical(v) => {
                        let (ga, _) = gini(v.iter());
                        let (gw, dist) = gini(members.iter().filter_map(|&i| v.get(i)));
                        if ga > 0.0 {
                            out.push(Explanation {
                                column: name.clone(),
                                kind: ColumnKind::Categorical,
                                ratio: gw / ga,
                                reduction: 1.0 - gw / ga,
                                mean: None,
                                overall_mean: None,
                                distribution: Some(dist),
                            });
                        }
                    }
                }
            }
            out.sort_by(|a, b| a.ratio.total_cmp(&b.ratio).then_with(|| a.column.cmp(&b.column)));
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parameter_that_sets_a_cluster_apart_ranks_first() {
        // Images 0..4 share eyelid ≈ 0.1; the others spread. Glare is noise; `lighting` is
        // categorical and pure in the cluster.
        let rows: Vec<Vec<String>> = (0..10)
            .map(|i| {
                let eyelid = if i < 4 { 0.1 + 0.01 * i as f64 } else { 0.2 + 0.08 * i as f64 };
                let glare = ((i * 7) % 10) as f64;
                let light = if i < 4 {
                    "dark"
                } else if i % 2 == 0 {
                    "day"
                } else {
                    "dark"
                };
                vec![eyelid.to_string(), glare.to_string(), light.to_string(), "same".into()]
            })
            .collect();
        let meta = Metadata { columns: vec!["eyelid".into(), "glare".into(), "lighting".into(), "k".into()], rows };
        let ex = explain(&meta, &[vec![0, 1, 2, 3], vec![9]]);
        assert_eq!(ex[0][0].column, "lighting", "pure categorical: impurity 0");
        assert_eq!(ex[0][0].ratio, 0.0);
        assert_eq!(ex[0][1].column, "eyelid");
        assert!(ex[0][1].reduction > 0.95, "{:?}", ex[0][1]);
        assert!((ex[0][1].mean.unwrap() - 0.115).abs() < 1e-12);
        assert!(ex[0].iter().all(|e| e.column != "k"), "constant columns explain nothing");
        assert!(ex[1].is_empty(), "a single image explains nothing");
        assert!(ex[0][1].summary().starts_with("eyelid −"), "{}", ex[0][1].summary());
        assert!(ex[0][0].summary().contains("4/4 `dark`"), "{}", ex[0][0].summary());
        // A cluster more spread than all images: an increase, not "−-20%".
        let mut wider = ex[0][1].clone();
        wider.reduction = -0.2;
        assert!(wider.summary().starts_with("eyelid +20% variance"), "{}", wider.summary());
    }
}
