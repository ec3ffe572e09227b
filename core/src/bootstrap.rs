//! Steps 5 and 6 of HUDD: the engineers' labels of the unsafe set, and bootstrap balancing.
//!
//! Labels come from any CSV with a `path` (or `image`) column and a `label` column — paths
//! relative to the improvement folder, or absolute — such as `RUN/unsafe/to-label.csv` once filled
//! in, or, with `auto`, from the improvement data itself (class folders or a manifest). A label is
//! a class name, or for a regressor its targets in output order separated by spaces (as in a
//! regression manifest). Every problem (unknown paths, labels outside the classes, targets that
//! are not finite numbers or of different lengths, unsafe images without a label) is reported at
//! once, and nothing is written.
//!
//! Balancing (as HUDD, `hudd-reference.md` §5, with a proper seeded draw): each cluster keeps its
//! ceil(|test members|) closest assigned images, then draws more of them, with replacement and
//! weights `1 − d/Σd` over the kept images' distances `d`, until it has as many as the largest
//! cluster. When every weight is zero (a single kept image, or all distances zero) the draw is
//! uniform.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::assign::UnsafeRecord;
use crate::config::TaskKind;
use crate::dataset::Label;
use crate::error::{Error, Result};
use crate::fsio::{write_atomic, write_json};
use crate::rng::Rng;
use crate::run::RunDir;

/// Where labels come from.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelSource {
    /// A `path,label` CSV.
    Csv(PathBuf),
    /// The improvement data's own labels, per image.
    Known(Vec<(PathBuf, Label)>),
}

/// What the labels of a run are: its classes (in logit order), or regression targets.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelKind {
    /// Class names; a label is one of them.
    Classes(Vec<String>),
    /// Regression targets; a label is a list of finite numbers.
    Targets,
}

impl LabelKind {
    /// The kind of the run's labels (from `run.json`).
    pub fn of_run(run: &RunDir) -> Result<LabelKind> {
        let record = crate::run::RunRecord::read(run)?;
        Ok(LabelKind::of(record_kind(run, &record)?, record.evaluation.classes))
    }

    /// From a task kind and its classes.
    pub fn of(kind: TaskKind, classes: Vec<String>) -> LabelKind {
        match kind {
            TaskKind::Classification => LabelKind::Classes(classes),
            TaskKind::Regression => LabelKind::Targets,
        }
    }

    /// A label as `balanced.csv` writes it: the class name, or the targets separated by spaces
    /// (shortest text that reads back as the same `f32`).
    pub fn text(&self, label: &Label) -> String {
        match (self, label) {
            (LabelKind::Classes(classes), Label::Class(c)) => classes.get(*c).cloned().unwrap_or_default(),
            (_, Label::Target(t)) => t.iter().map(f32::to_string).collect::<Vec<_>>().join(" "),
            (LabelKind::Targets, Label::Class(c)) => c.to_string(),
        }
    }

    /// Reads a label written by [`LabelKind::text`] or by an engineer; the reason when it does not
    /// fit.
    pub fn parse(&self, text: &str) -> std::result::Result<Label, String> {
        match self {
            LabelKind::Classes(classes) => classes
                .iter()
                .position(|c| c == text)
                .map(Label::Class)
                .ok_or_else(|| format!("label `{text}` is not one of the classes")),
            LabelKind::Targets => {
                let values: Vec<f32> = text
                    .split([' ', ','])
                    .filter(|t| !t.is_empty())
                    .map(|t| t.parse::<f32>().ok().filter(|v| v.is_finite()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| format!("label `{text}` is not a list of finite numbers (the targets)"))?;
                if values.is_empty() {
                    return Err(format!("label `{text}` holds no targets"));
                }
                Ok(Label::Target(values))
            }
        }
    }
}

fn record_kind(run: &RunDir, record: &crate::run::RunRecord) -> Result<TaskKind> {
    Ok(record.config(run)?.task.kind)
}

/// The whole step: reads the unsafe set, checks the labels (`None`: the improvement data's own),
/// balances with `seed` and writes `balanced.csv` (see [`write_balanced`]).
pub fn bootstrap(run: &RunDir, labels_csv: Option<&Path>, seed: u64) -> Result<Bootstrapped> {
    let (record, rows) = read_unsafe(run)?;
    let (source, kind) = match labels_csv {
        None => known_labels(run)?,
        Some(csv) => (LabelSource::Csv(csv.to_path_buf()), LabelKind::of_run(run)?),
    };
    let labels = labels(&source, Path::new(&record.parameters.improvement), &rows, &kind)?;
    if kind == LabelKind::Targets {
        check_target_count(run, &labels, &source)?;
    }
    let members: BTreeMap<usize, usize> = record.clusters.iter().map(|c| (c.cluster, c.test_members)).collect();
    let balanced = balance(&rows, &members, seed);
    let rows = write_balanced(run, &record, &balanced, &labels.labels, &kind, seed)?;
    Ok(Bootstrapped { rows, ignored_labels: labels.ignored })
}

/// A regressor's labels must hold as many targets as the model's output has values (when the run
/// records a fixed output shape): one error names every image that does not, with both counts.
fn check_target_count(run: &RunDir, labels: &Labels, source: &LabelSource) -> Result<()> {
    let record = crate::run::RunRecord::read(run)?;
    let config = record.config(run)?;
    let outputs = &record.model.outputs;
    let output = match &config.task.output {
        Some(name) => outputs.iter().find(|o| &o.name == name),
        None => outputs.first(),
    };
    // Values per image: the product of the output's dimensions after the batch, when all are fixed.
    let Some((output, width)) = output.and_then(|o| {
        o.shape.iter().skip(1).map(|d| d.parse::<usize>().ok()).product::<Option<usize>>().map(|w| (o, w))
    }) else {
        return Ok(());
    };
    let mut wrong: Vec<String> = labels
        .labels
        .iter()
        .filter_map(|(image, l)| match l {
            Label::Target(t) if t.len() != width => Some(format!("`{image}` has {} target(s)", t.len())),
            _ => None,
        })
        .collect();
    if wrong.is_empty() {
        return Ok(());
    }
    wrong.sort();
    let count = wrong.len();
    wrong.truncate(20);
    let origin = match source {
        LabelSource::Csv(p) => p.display().to_string(),
        LabelSource::Known(_) => "the improvement data".into(),
    };
    Err(Error::Labels {
        origin,
        count,
        problems: format!("the model's output `{}` has {width} value(s) per image: {}", output.name, wrong.join("; ")),
    })
}

/// What [`bootstrap`] wrote, and how many labelled rows it ignored (see [`Labels::ignored`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrapped {
    /// The rows of `balanced.csv`.
    pub rows: Vec<BalancedRow>,
    /// Labelled rows of the labels CSV for images outside the unsafe set.
    pub ignored_labels: usize,
}

/// The labels the run's improvement data carries (class folders or a manifest, targets included:
/// `--labels auto`), and the kind of the run's labels.
pub fn known_labels(run: &RunDir) -> Result<(LabelSource, LabelKind)> {
    let record = crate::run::RunRecord::read(run)?;
    let bad = |reason: String| Error::Bundle { path: run.run_json(), reason };
    let config = record.config(run)?;
    let root =
        record.data_root.clone().ok_or_else(|| bad("the run does not record its dataset; give --labels CSV".into()))?;
    let data = crate::Dataset::open(Path::new(&root), &config.task)?;
    let split = data.split(crate::Split::Improvement).ok_or_else(|| Error::DatasetLayout {
        path: PathBuf::from(&root),
        reason: "the dataset has no improvement split to take labels from; give --labels CSV".into(),
    })?;
    let list = split.samples.iter().map(|s| (s.path.clone(), s.label.clone())).collect();
    Ok((LabelSource::Known(list), LabelKind::of(config.task.kind, record.evaluation.classes)))
}

/// One row of `unsafe.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsafeRow {
    /// Path relative to the improvement folder.
    pub image: String,
    /// Cluster id.
    pub cluster: usize,
    /// Distance to the cluster's nearest member.
    pub distance: f64,
    /// Order of selection within the cluster.
    pub rank: usize,
}

/// One row of `balanced.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BalancedRow {
    /// Path relative to the improvement folder.
    pub image: String,
    /// Cluster id.
    pub cluster: usize,
    /// How many times the image is in the balanced set (1 + its draws).
    pub copies: usize,
    /// Its label: a class name, or a regressor's targets separated by spaces.
    pub label: String,
}

/// Reads `RUN/unsafe/unsafe.json` and `RUN/unsafe/unsafe.csv`.
///
/// Errors: besides unreadable files, a set that no longer belongs to the run
/// ([`UnsafeRecord::stale`]: analysed again since, or an unsafe image changed).
pub fn read_unsafe(run: &RunDir) -> Result<(UnsafeRecord, Vec<UnsafeRow>)> {
    let (record, rows) = read_unsafe_unchecked(run)?;
    if let Some(reason) = record.stale(run)? {
        return Err(Error::Bundle { path: run.unsafe_dir(), reason });
    }
    Ok((record, rows))
}

/// [`read_unsafe`] without asking whether the set still belongs to the run.
pub fn read_unsafe_unchecked(run: &RunDir) -> Result<(UnsafeRecord, Vec<UnsafeRow>)> {
    let json = run.unsafe_json();
    let text = crate::fsio::read_to_string(&json)
        .map_err(|e| Error::io("the run has no complete unsafe set (run `hudd assign` first)", &json, e))?;
    let record: UnsafeRecord = serde_json::from_str(&text)
        .map_err(|e| Error::Bundle { path: json.clone(), reason: format!("unsafe.json is not valid: {e}") })?;
    let csv_path = run.unsafe_csv();
    let bad = |e: &dyn std::fmt::Display| Error::Bundle {
        path: csv_path.clone(),
        reason: format!("unsafe.csv cannot be read ({e}); rerun `hudd assign`"),
    };
    let rows = crate::fsio::csv_reader(&csv_path)
        .map_err(|e| bad(&e))?
        .deserialize()
        .collect::<std::result::Result<Vec<UnsafeRow>, _>>()
        .map_err(|e| bad(&e))?;
    Ok((record, rows))
}

/// The label of every unsafe image, from `source`. `improvement` is the folder the unsafe set's
/// paths are relative to; `kind` what a label is. One error lists every problem (the first 20 and
/// the count). See [`label_images`].
pub fn labels(source: &LabelSource, improvement: &Path, rows: &[UnsafeRow], kind: &LabelKind) -> Result<Labels> {
    let needed: Vec<(String, String)> =
        rows.iter().map(|r| (r.image.clone(), format!(" (cluster {})", r.cluster))).collect();
    label_images(source, improvement, &needed, kind)
}

/// The labels of the images a stage needs, and how many labelled CSV rows named other images.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Labels {
    /// Image path (relative to the improvement folder) → its label.
    pub labels: HashMap<String, Label>,
    /// Labelled rows of the CSV for images the stage does not need (a labels file may cover more
    /// than the unsafe set, e.g. the whole improvement folder): ignored, and counted.
    pub ignored: usize,
}

/// The label of each of `needed` (image path relative to `improvement`, and a note for the
/// message), from `source`. CSV rows for other images are ignored and counted; one image labelled
/// twice with different labels, a header that names a column twice (or both `path` and `image`),
/// a label that does not parse and a needed image without a label are problems. Regression targets
/// must all have the same length. One error lists every problem.
pub fn label_images(
    source: &LabelSource,
    improvement: &Path,
    needed: &[(String, String)],
    kind: &LabelKind,
) -> Result<Labels> {
    let known: std::collections::HashSet<&str> = needed.iter().map(|(i, _)| i.as_str()).collect();
    let base = std::path::absolute(improvement).unwrap_or_else(|_| improvement.to_path_buf());
    let relative = |p: &Path| -> String {
        let p = if p.is_absolute() {
            p.strip_prefix(&base).map(Path::to_path_buf).unwrap_or_else(|_| p.to_path_buf())
        } else {
            p.to_path_buf()
        };
        p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
    };
    let mut problems: Vec<String> = Vec::new();
    let mut out = HashMap::new();
    let mut ignored = 0;
    let what = match source {
        LabelSource::Csv(path) => {
            let bad = |reason: String| Error::Csv { what: "labels", path: path.clone(), reason };
            let mut reader = crate::fsio::csv_reader(path).map_err(|e| bad(e.to_string()))?;
            let header: Vec<String> =
                reader.headers().map_err(|e| bad(e.to_string()))?.iter().map(str::to_string).collect();
            let cols = |names: &[&str]| -> Vec<usize> {
                header.iter().enumerate().filter(|(_, h)| names.contains(&h.as_str())).map(|(i, _)| i).collect()
            };
            let one = |names: &[&str], what: &str| -> Result<usize> {
                match cols(names)[..] {
                    [i] => Ok(i),
                    [] => Err(bad(format!("no {what} column"))),
                    ref many => Err(bad(format!(
                        "the header names {what} {} times (columns {}): which one is meant?",
                        many.len(),
                        many.iter().map(|i| (i + 1).to_string()).collect::<Vec<_>>().join(" and ")
                    ))),
                }
            };
            let path_col = one(&["path", "image"], "`path` (or `image`)")?;
            let label_col = one(&["label"], "`label`")?;
            // The line and label text each image was first labelled with.
            let mut first: HashMap<String, (usize, String)> = HashMap::new();
            for (line, row) in reader.records().enumerate() {
                let row = row.map_err(|e| bad(format!("line {}: {e}", line + 2)))?;
                let image = relative(Path::new(row.get(path_col).unwrap_or("")));
                let label = row.get(label_col).unwrap_or("").trim();
                if label.is_empty() {
                    continue;
                }
                match first.get(&image) {
                    Some((at, was)) if was != label => {
                        problems.push(format!(
                            "line {}: `{image}` is labelled `{label}` here and `{was}` on line {at}",
                            line + 2
                        ));
                        continue;
                    }
                    Some(_) => continue,
                    None => {
                        first.insert(image.clone(), (line + 2, label.to_string()));
                    }
                }
                if !known.contains(image.as_str()) {
                    ignored += 1;
                    continue;
                }
                match kind.parse(label) {
                    Ok(l) => {
                        out.insert(image, l);
                    }
                    Err(reason) => problems.push(format!("line {}: {reason}", line + 2)),
                }
            }
            path.display().to_string()
        }
        LabelSource::Known(list) => {
            for (p, l) in list {
                let image = relative(&std::path::absolute(p).unwrap_or_else(|_| p.clone()));
                if known.contains(image.as_str()) {
                    out.insert(image, l.clone());
                }
            }
            "the improvement data".to_string()
        }
    };
    for (image, note) in needed {
        if !out.contains_key(image) {
            problems.push(format!("`{image}`{note} has no label"));
        }
    }
    let mut widths: Vec<(usize, &str)> = needed
        .iter()
        .filter_map(|(image, _)| match out.get(image) {
            Some(Label::Target(t)) => Some((t.len(), image.as_str())),
            _ => None,
        })
        .collect();
    widths.sort_unstable();
    widths.dedup_by_key(|(n, _)| *n);
    if widths.len() > 1 {
        let seen: Vec<String> = widths.iter().map(|(n, image)| format!("{n} (e.g. `{image}`)")).collect();
        problems.push(format!("the targets have different lengths: {}", seen.join(", ")));
    }
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(20).map(String::as_str).collect();
        return Err(Error::Labels { origin: what, count: problems.len(), problems: shown.join("; ") });
    }
    Ok(Labels { labels: out, ignored })
}

/// Balances the unsafe set (see the module documentation): per cluster, its kept images with how
/// many copies each gets. `members` gives each cluster's number of test members.
pub fn balance(rows: &[UnsafeRow], members: &BTreeMap<usize, usize>, seed: u64) -> Vec<(UnsafeRow, usize)> {
    let mut by_cluster: BTreeMap<usize, Vec<&UnsafeRow>> = BTreeMap::new();
    for r in rows {
        by_cluster.entry(r.cluster).or_default().push(r);
    }
    let kept: BTreeMap<usize, Vec<&UnsafeRow>> = by_cluster
        .into_iter()
        .map(|(c, mut v)| {
            v.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.rank.cmp(&b.rank)));
            v.truncate(members.get(&c).copied().unwrap_or(v.len()).max(1));
            (c, v)
        })
        .collect();
    let target = kept.values().map(Vec::len).max().unwrap_or(0);
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for (_, v) in kept {
        let mut copies = vec![1usize; v.len()];
        let total: f64 = v.iter().map(|r| r.distance).sum();
        let mut weights: Vec<f64> =
            v.iter().map(|r| if total > 0.0 { (1.0 - r.distance / total).max(0.0) } else { 0.0 }).collect();
        if weights.iter().all(|&w| w <= 0.0) {
            weights = vec![1.0; v.len()];
        }
        let sum: f64 = weights.iter().sum();
        for _ in v.len()..target {
            let mut u = rng.next_f64() * sum;
            let mut pick = weights.len() - 1;
            for (i, &w) in weights.iter().enumerate() {
                if u < w {
                    pick = i;
                    break;
                }
                u -= w;
            }
            copies[pick] += 1;
        }
        out.extend(v.into_iter().cloned().zip(copies));
    }
    out
}

/// Writes `RUN/unsafe/balanced.csv` (`image,cluster,copies,label`) and records `seed` in
/// `unsafe.json`.
pub fn write_balanced(
    run: &RunDir,
    record: &UnsafeRecord,
    balanced: &[(UnsafeRow, usize)],
    labels: &HashMap<String, Label>,
    kind: &LabelKind,
    seed: u64,
) -> Result<Vec<BalancedRow>> {
    let path = run.balanced_csv();
    let bad = |e: csv::Error| Error::Output { what: "balanced set", path: path.clone(), reason: e.to_string() };
    let rows: Vec<BalancedRow> = balanced
        .iter()
        .map(|(r, copies)| BalancedRow {
            image: r.image.clone(),
            cluster: r.cluster,
            copies: *copies,
            label: labels.get(&r.image).map(|l| kind.text(l)).unwrap_or_default(),
        })
        .collect();
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &rows {
        w.serialize(r).map_err(bad)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::Output {
        what: "balanced set",
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_atomic(&path, &bytes)?;
    let mut record = record.clone();
    record.seed = Some(seed);
    write_json(&run.unsafe_json(), "unsafe set", &record)?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(image: &str, cluster: usize, distance: f64, rank: usize) -> UnsafeRow {
        UnsafeRow { image: image.into(), cluster, distance, rank }
    }

    #[test]
    fn every_cluster_reaches_the_largest_and_the_seed_decides() {
        let rows = vec![
            row("a", 1, 0.1, 1),
            row("b", 1, 0.2, 2),
            row("c", 1, 0.3, 3),
            row("d", 1, 0.4, 4),
            row("e", 2, 0.5, 1),
            row("f", 2, 1.5, 2),
            row("g", 3, 2.0, 1),
        ];
        let members = BTreeMap::from([(1, 3), (2, 2), (3, 1)]);
        let b = balance(&rows, &members, 7);
        let per: BTreeMap<usize, usize> = b.iter().fold(BTreeMap::new(), |mut m, (r, c)| {
            *m.entry(r.cluster).or_default() += c;
            m
        });
        assert_eq!(per, BTreeMap::from([(1, 3), (2, 3), (3, 3)]), "kept ceil(members), then drawn up to 3");
        assert!(!b.iter().any(|(r, _)| r.image == "d"), "the farthest beyond ceil(members) is dropped");
        assert_eq!(b, balance(&rows, &members, 7));
        // Weights 1 − d/Σd: in cluster 2, `e` (0.75) is drawn three times as often as `f` (0.25).
        let mut wins = 0;
        for seed in 0..400 {
            let b = balance(&rows, &members, seed);
            wins += usize::from(b.iter().any(|(r, c)| r.image == "e" && *c == 2));
        }
        assert!((260..340).contains(&wins), "{wins} of 400 draws chose e");
    }

    #[test]
    fn labels_report_every_problem_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![row("x/1.png", 1, 0.1, 1), row("x/2.png", 1, 0.2, 2), row("y/3.png", 2, 0.3, 1)];
        let classes = LabelKind::Classes(vec!["cat".to_string(), "dog".to_string()]);
        let csv = dir.path().join("l.csv");
        let abs = dir.path().join("imp/x/2.png");
        std::fs::write(&csv, format!("path,label\nx/1.png,dog\n{},cat\nzz.png,dog\nx/1.png,cat\n", abs.display()))
            .unwrap();
        let e =
            labels(&LabelSource::Csv(csv.clone()), &dir.path().join("imp"), &rows, &classes).unwrap_err().to_string();
        assert!(e.contains("`y/3.png` (cluster 2) has no label"), "{e}");
        // Issue 33, row 7: one image twice with different labels.
        assert!(e.contains("line 5: `x/1.png` is labelled `cat` here and `dog` on line 2"), "{e}");
        assert!(e.contains("2 problem(s)"), "{e}");
        std::fs::write(&csv, "image,cluster,label\nx/1.png,1,dog\nx/2.png,1,cat\ny/3.png,2,bird\n").unwrap();
        let e =
            labels(&LabelSource::Csv(csv.clone()), &dir.path().join("imp"), &rows, &classes).unwrap_err().to_string();
        assert!(e.contains("label `bird` is not one of the classes"), "{e}");
        // Issue 33, row 8: rows beyond the unsafe set (here `zz.png`) are normal: ignored and counted;
        // the same label twice is no conflict.
        std::fs::write(
            &csv,
            "image,cluster,label\nx/1.png,1,dog\nx/2.png,1,cat\ny/3.png,2,dog\nzz.png,,cat\nx/1.png,1,dog\n",
        )
        .unwrap();
        let all = labels(&LabelSource::Csv(csv.clone()), &dir.path().join("imp"), &rows, &classes).unwrap();
        assert_eq!(all.ignored, 1);
        // Row 7: a header that names the label (or the path) column twice.
        for header in ["path,label,label", "path,image,label"] {
            std::fs::write(&csv, format!("{header}\nx/1.png,dog,cat\n")).unwrap();
            let e = labels(&LabelSource::Csv(csv.clone()), &dir.path().join("imp"), &rows, &classes)
                .unwrap_err()
                .to_string();
            assert!(e.contains("2 times (columns 2 and 3)") || e.contains("2 times (columns 1 and 2)"), "{e}");
        }
        let l = all.labels;
        assert_eq!(
            (&l["x/1.png"], &l["x/2.png"], &l["y/3.png"]),
            (&Label::Class(1), &Label::Class(0), &Label::Class(1))
        );
    }

    #[test]
    fn regression_labels_are_targets_of_one_length() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![row("a.png", 1, 0.1, 1), row("b.png", 1, 0.2, 2), row("c.png", 2, 0.3, 1)];
        let csv = dir.path().join("l.csv");
        let imp = dir.path().join("imp");
        std::fs::write(&csv, "path,label\na.png,1.5 2\nb.png,3 4\nc.png,\"5,6\"\n").unwrap();
        let l = labels(&LabelSource::Csv(csv.clone()), &imp, &rows, &LabelKind::Targets).unwrap().labels;
        assert_eq!(l["a.png"], Label::Target(vec![1.5, 2.0]));
        assert_eq!(l["c.png"], Label::Target(vec![5.0, 6.0]), "commas separate targets too");
        std::fs::write(&csv, "path,label\na.png,1 2\nb.png,3 nan\nc.png,5 6 7\n").unwrap();
        let e = labels(&LabelSource::Csv(csv), &imp, &rows, &LabelKind::Targets).unwrap_err().to_string();
        assert!(e.contains("`3 nan` is not a list of finite numbers"), "{e}");
        assert!(e.contains("different lengths: 2 (e.g. `a.png`), 3 (e.g. `c.png`)"), "{e}");
        // What balanced.csv writes reads back as the same values.
        let t = Label::Target(vec![0.1, 31.337, -2.0e-7]);
        assert_eq!(LabelKind::Targets.parse(&LabelKind::Targets.text(&t)).unwrap(), t);
        let k = LabelKind::Classes(vec!["cat".into(), "dog".into()]);
        assert_eq!(k.parse(&k.text(&Label::Class(1))).unwrap(), Label::Class(1));
    }
}
