//! Filtering, sorting and selecting images (a cluster's members, or every clustered image of a
//! layer), and the selection as CSV.
//!
//! Keys of an image: `distance` (to its cluster's medoid), `expected`, `predicted`, `name`,
//! `cluster` (its cluster's id), `cut` (its cluster in a live re-cut of the tree, when there is
//! one) and every metadata column. A filter is `KEY` with a condition: `<0.3`, `>0.3`,
//! `0.2..0.4` (numbers), or text that the value must contain (case-insensitive).

use hudd_report::{Cluster, ImageEntry, Layer, Report};

/// The fixed sort and filter keys before the metadata columns.
pub const FIXED_KEYS: [&str; 5] = ["distance", "expected", "predicted", "name", "cluster"];

/// One image in a grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Index into [`Report::images`].
    pub image: usize,
    /// Its cluster's id.
    pub cluster_id: usize,
    /// Its cluster's index in the layer.
    pub cluster: usize,
    /// Its index among the cluster's members.
    pub member: usize,
    /// Distance to its cluster's medoid.
    pub distance: f64,
    /// Its cluster (1-based) in a live re-cut of the tree, if any.
    pub cut: Option<usize>,
}

/// The members of cluster `index` of a layer, in member order (medoid first).
pub fn cluster_rows(cluster: &Cluster, index: usize) -> Vec<Row> {
    cluster
        .members
        .iter()
        .enumerate()
        .map(|(member, m)| Row {
            image: m.image,
            cluster_id: cluster.cluster_id,
            cluster: index,
            member,
            distance: m.distance_to_medoid,
            cut: None,
        })
        .collect()
}

/// Every clustered image of `layer`, in image order; `cut`, when given, is the re-cut cluster
/// (0-based) of each leaf of the layer's dendrogram.
pub fn layer_rows(layer: &Layer, cut: Option<&[usize]>) -> Vec<Row> {
    let mut rows: Vec<Row> = layer.clusters.iter().enumerate().flat_map(|(i, c)| cluster_rows(c, i)).collect();
    if let Some(labels) = cut {
        with_cut(&mut rows, layer, labels);
    }
    rows.sort_by_key(|r| r.image);
    rows
}

/// Sets each row's [`Row::cut`] from `labels`, the re-cut cluster (0-based) of each leaf of the
/// layer's dendrogram.
pub fn with_cut(rows: &mut [Row], layer: &Layer, labels: &[usize]) {
    let Some(tree) = &layer.dendrogram else { return };
    let of: std::collections::HashMap<usize, usize> =
        tree.leaves.iter().zip(labels).map(|(&image, &l)| (image, l + 1)).collect();
    rows.iter_mut().for_each(|r| r.cut = of.get(&r.image).copied());
}

/// The value of `key` for `row`, as text.
pub fn value(report: &Report, row: &Row, key: &str) -> String {
    let Some(im) = report.images.get(row.image) else { return String::new() };
    match key {
        "distance" => row.distance.to_string(),
        "expected" => im.expected.clone(),
        "predicted" => im.predicted.clone(),
        "name" => im.name.clone(),
        "cluster" => row.cluster_id.to_string(),
        "cut" => row.cut.map(|c| c.to_string()).unwrap_or_default(),
        column => metadata(report, im, column),
    }
}

fn metadata(report: &Report, image: &ImageEntry, column: &str) -> String {
    let columns = report.analysis.as_ref().map(|a| a.metadata_columns.as_slice()).unwrap_or_default();
    columns.iter().position(|c| c == column).and_then(|k| image.metadata.get(k).cloned()).unwrap_or_default()
}

/// Whether `value` passes the filter `condition` (empty: everything passes).
pub fn passes(value: &str, condition: &str) -> bool {
    let c = condition.trim();
    if c.is_empty() {
        return true;
    }
    let number = |s: &str| s.trim().parse::<f64>().ok();
    let v = number(value);
    if let (Some(v), Some((lo, hi))) = (v, c.split_once("..")) {
        if let (Some(lo), Some(hi)) = (number(lo), number(hi)) {
            return lo <= v && v <= hi;
        }
    }
    if let (Some(v), Some(rest)) = (v, c.strip_prefix('<')) {
        if let Some(x) = number(rest.trim_start_matches('=')) {
            return if rest.starts_with('=') { v <= x } else { v < x };
        }
    }
    if let (Some(v), Some(rest)) = (v, c.strip_prefix('>')) {
        if let Some(x) = number(rest.trim_start_matches('=')) {
            return if rest.starts_with('=') { v >= x } else { v > x };
        }
    }
    value.to_lowercase().contains(&c.to_lowercase())
}

/// The rows to show (indices into `rows`): those whose `filter_key` passes `condition`, sorted
/// by `sort_key` (numbers as numbers, then text; ties in row order), descending when
/// `descending`. An empty `sort_key` keeps the row order.
pub fn shown(
    report: &Report,
    rows: &[Row],
    filter_key: &str,
    condition: &str,
    sort_key: &str,
    descending: bool,
) -> Vec<usize> {
    let mut out: Vec<usize> = (0..rows.len())
        .filter(|&i| filter_key.is_empty() || passes(&value(report, &rows[i], filter_key), condition))
        .collect();
    if !sort_key.is_empty() {
        let keyed: Vec<(Option<f64>, String)> = rows
            .iter()
            .map(|row| {
                let v = value(report, row, sort_key);
                (v.trim().parse::<f64>().ok().filter(|x| x.is_finite()), v)
            })
            .collect();
        out.sort_by(|&a, &b| {
            let (ka, kb) = (&keyed[a], &keyed[b]);
            let order = match (ka.0, kb.0) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => ka.1.cmp(&kb.1),
            };
            if descending { order.reverse() } else { order }.then(a.cmp(&b))
        });
    }
    out
}

/// A selected member: `(layer index, image index into [`Report::images`])`.
pub type Selected = (usize, usize);

/// The selection as CSV: `image,layer,cluster,expected,predicted,distance_to_medoid,<metadata
/// columns…>`, one row per selected member, in layer, cluster and member order; fields quoted where
/// they need it, and a leading `=`, `+`, `-` or `@` of a text field defused for spreadsheets.
pub fn selection_csv(report: &Report, selected: &std::collections::BTreeSet<Selected>) -> String {
    let columns = report.analysis.as_ref().map(|a| a.metadata_columns.clone()).unwrap_or_default();
    let mut header =
        ["image", "layer", "cluster", "expected", "predicted", "distance_to_medoid"].map(String::from).to_vec();
    header.extend(columns.iter().cloned());
    let mut lines = vec![row(&header)];
    if let Some(a) = &report.analysis {
        for (li, l) in a.layers.iter().enumerate() {
            for c in &l.clusters {
                for m in c.members.iter().filter(|m| selected.contains(&(li, m.image))) {
                    let Some(im) = report.images.get(m.image) else { continue };
                    let mut fields = vec![
                        im.name.clone(),
                        l.name.clone(),
                        c.cluster_id.to_string(),
                        im.expected.clone(),
                        im.predicted.clone(),
                        m.distance_to_medoid.to_string(),
                    ];
                    fields.extend(columns.iter().map(|k| metadata(report, im, k)));
                    lines.push(row(&fields));
                }
            }
        }
    }
    lines.join("\n") + "\n"
}

fn row(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) || f.starts_with(['=', '+', '-', '@']) && f.parse::<f64>().is_err() {
                // Quoted; a leading formula character is defused for spreadsheets.
                let f = if f.starts_with(['=', '+', '-', '@']) { format!("'{f}") } else { f.clone() };
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}
