//! Datasets: the train, test and improvement splits, their images, labels and metadata.
//!
//! # Layout
//! ```text
//! DATA/train/<class>/*.png          ImageFolder: the folder name is the label
//! DATA/test/<class>/*.jpg
//! DATA/improvement/<class>/*.bmp
//! DATA/test/manifest.csv            optional: `path,label[,metadata…]`, paths relative to the split folder
//! ```
//! HUDD's names are accepted too: `DATA/TrainingSet`, `DATA/TestSet`, `DATA/ImprovementSet`, also
//! under `DATA/DataSets/`. Any subset of the three splits may be present.
//!
//! When a split has `manifest.csv`, it defines the split: `path` and `label` columns, every other
//! column is metadata (e.g. simulator parameters) carried through every later stage. A regression
//! task needs a manifest; its `label` holds the targets separated by spaces, or `[task] targets` names
//! the columns that hold them.
//!
//! Files that are not images are recorded as skipped with a reason (hidden files are ignored);
//! images that fail to decode are skipped later, when they are read. A split without any image and a
//! label outside the configured classes are errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{TaskConfig, TaskKind};
use crate::error::{Error, Result};
use crate::input::is_image_path;

/// Name of the optional per-split manifest file.
pub const MANIFEST: &str = "manifest.csv";

/// One of the three datasets of the HUDD pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Split {
    /// The data the model was trained on.
    Train,
    /// The test set whose errors HUDD explains.
    Test,
    /// Unlabelled candidates from which the unsafe set is chosen.
    Improvement,
}

impl Split {
    /// All splits in pipeline order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Test, Split::Improvement];

    /// `train`, `test` or `improvement` (also the results file name).
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Improvement => "improvement",
        }
    }

    fn folder_names(self) -> [&'static str; 2] {
        match self {
            Split::Train => ["train", "TrainingSet"],
            Split::Test => ["test", "TestSet"],
            Split::Improvement => ["improvement", "ImprovementSet"],
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an image should produce.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub enum Label {
    /// Index into [`Dataset::classes`].
    Class(usize),
    /// Regression targets in model-output order.
    Target(Vec<f32>),
}

/// One image of a split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The file.
    pub path: PathBuf,
    /// The path relative to the dataset root, with `/` separators: the image's name in every output.
    pub image: String,
    /// Expected output.
    pub label: Label,
    /// Metadata values, aligned with [`SplitData::metadata_columns`].
    pub metadata: Vec<String>,
}

/// A file that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Skipped {
    /// Path relative to the dataset root, `/` separators.
    pub image: String,
    /// Why it was skipped.
    pub reason: String,
}

/// One split's images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitData {
    /// Which split.
    pub split: Split,
    /// Its folder.
    pub dir: PathBuf,
    /// Images in sorted path order.
    pub samples: Vec<Sample>,
    /// Files found but not usable.
    pub skipped: Vec<Skipped>,
    /// Names of the manifest's metadata columns (empty without a manifest).
    pub metadata_columns: Vec<String>,
}

/// Where a classifier's class names and their logit order come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassSource {
    /// `[task] classes` (or a regression task, which has none).
    #[default]
    Config,
    /// Guessed: the class folder names, sorted. Right only when the model's logits are in that order.
    FolderNames,
}

/// A dataset: its splits and, for classification, the class names in logit order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    /// The dataset folder.
    pub root: PathBuf,
    /// Class names in logit order (empty for regression).
    pub classes: Vec<String>,
    /// The splits present, in [`Split::ALL`] order.
    pub splits: Vec<SplitData>,
    /// Where [`classes`](Self::classes) come from.
    pub class_source: ClassSource,
    /// Descriptions of metadata columns ([`COLUMNS_FILE`]; empty without one).
    pub columns: Vec<ColumnInfo>,
}

/// A raw entry before labels are resolved.
struct Entry {
    path: PathBuf,
    image: String,
    label: String,
    targets: Option<Vec<f32>>,
    metadata: Vec<String>,
}

/// The optional file at the dataset root that describes metadata columns: `column,description,unit,min,max`
/// (every field but `column` may be empty), e.g. `eyelid,eyelid openness (0 closed; 1 wide open),,0,1`.
pub const COLUMNS_FILE: &str = "columns.csv";

/// What one metadata column measures (a row of [`COLUMNS_FILE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    /// The column's name in the manifests.
    pub column: String,
    /// What it measures, e.g. `eyelid openness (0 closed; 1 wide open)`.
    pub description: String,
    /// Its unit, e.g. `°` (may be empty).
    pub unit: String,
    /// The range the data can take, when known.
    pub range: Option<[f64; 2]>,
}

/// Reads [`COLUMNS_FILE`] under `root`; no file, no descriptions.
pub fn read_columns(root: &Path) -> Result<Vec<ColumnInfo>> {
    let path = root.join(COLUMNS_FILE);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let bad = |reason: String| Error::Csv { what: "columns", path: path.clone(), reason };
    let mut reader = crate::fsio::csv_reader(&path).map_err(|e| bad(e.to_string()))?;
    let header: Vec<String> = reader.headers().map_err(|e| bad(e.to_string()))?.iter().map(str::to_string).collect();
    let at = |name: &str| header.iter().position(|h| h == name);
    let column =
        at("column").ok_or_else(|| bad("no `column` column (expected column,description,unit,min,max)".into()))?;
    let mut out: Vec<ColumnInfo> = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.map_err(|e| bad(format!("row {}: {e}", line + 2)))?;
        let field = |i: Option<usize>| i.and_then(|i| row.get(i)).unwrap_or("").trim().to_string();
        let number = |name: &str| -> Result<Option<f64>> {
            let text = field(at(name));
            if text.is_empty() {
                return Ok(None);
            }
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(Some)
                .ok_or_else(|| bad(format!("row {}: `{name}` is `{text}`, not a finite number", line + 2)))
        };
        let range = match (number("min")?, number("max")?) {
            (Some(lo), Some(hi)) if lo <= hi => Some([lo, hi]),
            (None, None) => None,
            _ => return Err(bad(format!("row {}: give both `min` and `max`, with min ≤ max", line + 2))),
        };
        let name = field(Some(column));
        if name.is_empty() || out.iter().any(|c| c.column == name) {
            return Err(bad(format!("row {}: the column name is empty or listed twice", line + 2)));
        }
        out.push(ColumnInfo { column: name, description: field(at("description")), unit: field(at("unit")), range });
    }
    Ok(out)
}

impl Dataset {
    /// Finds the splits under `root` and lists their images and labels.
    pub fn open(root: &Path, task: &TaskConfig) -> Result<Dataset> {
        if !root.is_dir() {
            return Err(Error::DatasetLayout {
                path: root.to_path_buf(),
                reason: "the dataset folder does not exist or is not a folder".into(),
            });
        }
        let mut found = Vec::new();
        for split in Split::ALL {
            let dir = [root.to_path_buf(), root.join("DataSets")]
                .iter()
                .flat_map(|base| split.folder_names().map(|n| base.join(n)))
                .find(|d| d.is_dir());
            if let Some(dir) = dir {
                found.push((split, dir));
            }
        }
        if found.is_empty() {
            return Err(Error::DatasetLayout {
                path: root.to_path_buf(),
                reason: "no split folder found; expected train/, test/ and/or improvement/ (or HUDD's \
                         TrainingSet/, TestSet/, ImprovementSet/) holding one folder per class"
                    .into(),
            });
        }

        let mut raw = Vec::new();
        for (split, dir) in found {
            let manifest = dir.join(MANIFEST);
            let (entries, skipped, columns) = if manifest.is_file() {
                read_manifest(root, &dir, &manifest, task)?
            } else if task.kind == TaskKind::Regression {
                return Err(Error::DatasetLayout {
                    path: dir,
                    reason: format!("a regression task needs `{MANIFEST}` (path,label,…) in every split folder"),
                });
            } else {
                let (e, s) = scan_class_folders(root, &dir)?;
                (e, s, Vec::new())
            };
            if entries.is_empty() {
                return Err(Error::EmptySplit { split: split.name().into(), path: dir, skipped: skipped.len() });
            }
            raw.push((split, dir, entries, skipped, columns));
        }

        let classes: Vec<String> = match (task.kind, &task.classes) {
            (TaskKind::Regression, _) => Vec::new(),
            (TaskKind::Classification, Some(c)) => {
                let unique: BTreeSet<&String> = c.iter().collect();
                if unique.len() != c.len() || c.is_empty() {
                    return Err(Error::Config("`[task] classes` must be non-empty and without duplicates".into()));
                }
                c.clone()
            }
            (TaskKind::Classification, None) => {
                let set: BTreeSet<String> =
                    raw.iter().flat_map(|(_, _, entries, _, _)| entries.iter().map(|e| e.label.clone())).collect();
                set.into_iter().collect()
            }
        };

        let mut splits = Vec::new();
        for (split, dir, entries, skipped, metadata_columns) in raw {
            let mut samples = Vec::with_capacity(entries.len());
            for e in entries {
                let label = match task.kind {
                    TaskKind::Regression => Label::Target(e.targets.unwrap_or_default()),
                    TaskKind::Classification => match classes.iter().position(|c| *c == e.label) {
                        Some(i) => Label::Class(i),
                        None => {
                            return Err(Error::UnknownLabel {
                                label: e.label,
                                path: e.path,
                                n_classes: classes.len(),
                                classes: abbreviate(&classes),
                            })
                        }
                    },
                };
                samples.push(Sample { path: e.path, image: e.image, label, metadata: e.metadata });
            }
            samples.sort_by(|a, b| a.image.cmp(&b.image));
            splits.push(SplitData { split, dir, samples, skipped, metadata_columns });
        }
        let class_source = match (task.kind, &task.classes) {
            (TaskKind::Classification, None) => ClassSource::FolderNames,
            _ => ClassSource::Config,
        };
        let columns = read_columns(root)?;
        Ok(Dataset { root: root.to_path_buf(), classes, splits, class_source, columns })
    }

    /// The data of one split, if present.
    pub fn split(&self, split: Split) -> Option<&SplitData> {
        self.splits.iter().find(|s| s.split == split)
    }

    /// The hex SHA-256 of everything an analysis reads from the dataset: the class names and their
    /// source, and per split its metadata columns, its skipped files and every image's name, label,
    /// metadata and file SHA-256 (where the dataset lies does not count). The files are hashed in
    /// parallel; one that cannot be read counts by its error, as the evaluation will skip it.
    pub fn fingerprint(&self, progress: &dyn crate::progress::Progress) -> String {
        use rayon::prelude::*;
        let total: usize = self.splits.iter().map(|s| s.samples.len()).sum();
        progress.start("hashing the data", total as u64);
        let mut text = format!("classes {:?} {:?}\ncolumns {:?}\n", self.classes, self.class_source, self.columns);
        for s in &self.splits {
            text.push_str(&format!("split {} {:?} {:?}\n", s.split.name(), s.metadata_columns, s.skipped));
            let lines: Vec<String> = s
                .samples
                .par_iter()
                .map(|x| {
                    let hash = crate::fsio::sha256_file(&x.path).unwrap_or_else(|e| format!("unreadable: {e}"));
                    progress.advance(1);
                    format!("{:?} {:?} {:?} {hash}\n", x.image, x.label, x.metadata)
                })
                .collect();
            text.extend(lines);
        }
        progress.finish();
        crate::fsio::sha256_hex(text.as_bytes())
    }
}

/// An image file and its name relative to the folder it was found in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// The file.
    pub path: PathBuf,
    /// Its path relative to the searched folder, `/` separators.
    pub image: String,
}

/// Every image file under `dir`, recursively, in sorted path order (hidden files ignored), and the
/// other files as skipped; names are relative to `dir` with `/` separators.
pub fn image_files(dir: &Path) -> Result<(Vec<ImageFile>, Vec<Skipped>)> {
    let walk = Walk::from(dir)?;
    let mut images = Vec::new();
    let mut skipped = walk.skipped(dir);
    for f in walk.files {
        let name = relative(dir, &f);
        if is_image_path(&f) {
            images.push(ImageFile { path: f, image: name });
        } else {
            skipped.push(Skipped { image: name, reason: not_image_reason(&f) });
        }
    }
    Ok((images, skipped))
}

pub(crate) fn abbreviate(classes: &[String]) -> String {
    let shown: Vec<&str> = classes.iter().take(8).map(String::as_str).collect();
    if classes.len() > shown.len() {
        format!("{}, …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// `path` relative to `root`, `/`-separated (the path as given when it is not under `root`).
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("cannot list folder", dir, e))?;
    let mut paths = Vec::new();
    for entry in rd {
        paths.push(entry.map_err(|e| Error::io("cannot list folder", dir, e))?.path());
    }
    paths.sort();
    Ok(paths)
}

/// What a recursive walk found: files, and folders it did not enter because they were reached
/// again through a symbolic link (a loop, or a second way to the same folder).
#[derive(Default)]
struct Walk {
    files: Vec<PathBuf>,
    revisits: Vec<PathBuf>,
    /// Entries that are neither folders nor regular files of sane size, with the reason.
    specials: Vec<(PathBuf, String)>,
    visited: std::collections::HashSet<PathBuf>,
}

impl Walk {
    /// Walks `dir`, entering every folder once however many links lead to it.
    fn from(dir: &Path) -> Result<Walk> {
        let mut walk = Walk::default();
        walk.enter(dir)?;
        Ok(walk)
    }

    /// Enters `dir` unless it was entered already; returns whether it did.
    fn enter(&mut self, dir: &Path) -> Result<bool> {
        let real = std::fs::canonicalize(dir).map_err(|e| Error::io("cannot resolve folder", dir, e))?;
        if !self.visited.insert(real) {
            self.revisits.push(dir.to_path_buf());
            return Ok(false);
        }
        for p in sorted_entries(dir)? {
            if is_hidden(&p) {
                continue;
            }
            if p.is_dir() {
                self.enter(&p)?;
            } else if let Err(e) = crate::fsio::check_regular(&p, crate::fsio::IMAGE_LIMIT) {
                // A named pipe would block the reader, a device never ends: skipped, never opened.
                self.specials.push((p, e.to_string()));
            } else {
                self.files.push(p);
            }
        }
        Ok(true)
    }

    /// The revisited folders and the special files as skips, named relative to `root`.
    fn skipped(&self, root: &Path) -> Vec<Skipped> {
        let revisits = self.revisits.iter().map(|d| Skipped {
            image: relative(root, d),
            reason: "folder reached a second time through a symbolic link (a loop or a duplicate); not walked again"
                .into(),
        });
        let specials = self.specials.iter().map(|(p, why)| Skipped { image: relative(root, p), reason: why.clone() });
        revisits.chain(specials).collect()
    }
}

fn scan_class_folders(root: &Path, dir: &Path) -> Result<(Vec<Entry>, Vec<Skipped>)> {
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    // One walk over all class folders: a folder reached twice (a link loop, or a link from one class
    // into another) is walked once, by the first class in sorted order, and the rest are recorded.
    let mut walk = Walk::default();
    let real = std::fs::canonicalize(dir).map_err(|e| Error::io("cannot resolve folder", dir, e))?;
    walk.visited.insert(real);
    for p in sorted_entries(dir)? {
        if is_hidden(&p) {
            continue;
        }
        if !p.is_dir() {
            skipped.push(Skipped { image: relative(root, &p), reason: "not inside a class folder".into() });
            continue;
        }
        let label = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let before = walk.files.len();
        walk.enter(&p)?;
        let files: Vec<PathBuf> = walk.files.drain(before..).collect();
        for f in files {
            if is_image_path(&f) {
                entries.push(Entry {
                    image: relative(root, &f),
                    path: f,
                    label: label.clone(),
                    targets: None,
                    metadata: vec![],
                });
            } else {
                skipped.push(Skipped { image: relative(root, &f), reason: not_image_reason(&f) });
            }
        }
    }
    skipped.extend(walk.skipped(root));
    Ok((entries, skipped))
}

fn not_image_reason(p: &Path) -> String {
    match p.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("not an image file (extension .{ext}; hudd reads png, jpg, jpeg, bmp)"),
        None => "not an image file (no extension; hudd reads png, jpg, jpeg, bmp)".into(),
    }
}

/// A manifest's `path` as a relative path inside its split folder (`.` parts dropped), or why it is
/// not one: absolute paths and `..` would read images from outside the dataset.
fn inside(rel: &str) -> std::result::Result<PathBuf, String> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`path` `{rel}` leaves the split folder; manifest paths are relative to it, without `..`"
                ))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("`path` `{rel}` names no file"));
    }
    Ok(out)
}

type ManifestRead = (Vec<Entry>, Vec<Skipped>, Vec<String>);

/// The regression targets of the images that `dir/manifest.csv` lists, by file (empty when the
/// folder has no manifest).
pub fn manifest_targets(dir: &Path, task: &TaskConfig) -> Result<std::collections::HashMap<PathBuf, Vec<f32>>> {
    let manifest = dir.join(MANIFEST);
    if !manifest.is_file() {
        return Ok(Default::default());
    }
    let (entries, _, _) = read_manifest(dir, dir, &manifest, task)?;
    Ok(entries.into_iter().filter_map(|e| Some((e.path, e.targets?))).collect())
}

fn read_manifest(root: &Path, dir: &Path, manifest: &Path, task: &TaskConfig) -> Result<ManifestRead> {
    let err = |line: u64, reason: String| Error::Manifest { path: manifest.to_path_buf(), line, reason };
    let mut reader =
        csv::ReaderBuilder::new().flexible(false).from_path(manifest).map_err(|e| err(0, e.to_string()))?;
    let headers: Vec<String> =
        reader.headers().map_err(|e| err(1, e.to_string()))?.iter().map(|h| h.trim().to_string()).collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let path_col = col("path").ok_or_else(|| err(1, format!("no `path` column (columns: {})", headers.join(", "))))?;
    let target_cols: Option<Vec<usize>> = match (&task.targets, task.kind) {
        (Some(names), TaskKind::Regression) => Some(
            names
                .iter()
                .map(|n| col(n).ok_or_else(|| err(1, format!("target column `{n}` from `[task] targets` is missing"))))
                .collect::<Result<_>>()?,
        ),
        _ => None,
    };
    let label_col = col("label");
    if label_col.is_none() && target_cols.is_none() {
        return Err(err(1, format!("no `label` column (columns: {})", headers.join(", "))));
    }
    let used: BTreeSet<usize> =
        [Some(path_col), label_col].into_iter().flatten().chain(target_cols.iter().flatten().copied()).collect();
    let meta_cols: Vec<usize> = (0..headers.len()).filter(|i| !used.contains(i)).collect();
    let columns = meta_cols.iter().map(|&i| headers[i].clone()).collect();

    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut lines = std::collections::HashMap::new();
    for (row_ix, record) in reader.records().enumerate() {
        let line = row_ix as u64 + 2;
        let record = record.map_err(|e| err(line, e.to_string()))?;
        let field = |i: usize| record.get(i).unwrap_or("").trim();
        let rel = field(path_col);
        if rel.is_empty() {
            return Err(err(line, "empty `path`".into()));
        }
        let path = dir.join(inside(rel).map_err(|reason| err(line, reason))?);
        let image = relative(root, &path);
        if let Some(first) = lines.insert(image.clone(), line) {
            return Err(err(
                line,
                format!("`{rel}` is listed a second time (first on line {first}); list every image once"),
            ));
        }
        let label = label_col.map(|c| field(c).to_string()).unwrap_or_default();
        let targets = match task.kind {
            TaskKind::Classification => None,
            TaskKind::Regression => {
                let texts: Vec<&str> = match &target_cols {
                    Some(cols) => cols.iter().map(|&c| field(c)).collect(),
                    None => label.split(|c: char| c.is_whitespace() || c == ';').filter(|s| !s.is_empty()).collect(),
                };
                let values: std::result::Result<Vec<f32>, _> = texts.iter().map(|t| t.parse::<f32>()).collect();
                match values {
                    Ok(v) if !v.is_empty() && v.iter().all(|x| x.is_finite()) => Some(v),
                    _ => return Err(err(line, format!("targets `{}` are not finite numbers", texts.join(" ")))),
                }
            }
        };
        if task.kind == TaskKind::Classification && label.is_empty() {
            return Err(err(line, format!("empty `label` for `{rel}`")));
        }
        if !path.exists() {
            skipped.push(Skipped { image, reason: "listed in the manifest but the file does not exist".into() });
            continue;
        }
        if let Err(e) = crate::fsio::check_regular(&path, crate::fsio::IMAGE_LIMIT) {
            skipped.push(Skipped { image, reason: e.to_string() });
            continue;
        }
        if !is_image_path(&path) {
            skipped.push(Skipped { image, reason: not_image_reason(&path) });
            continue;
        }
        let metadata = meta_cols.iter().map(|&c| field(c).to_string()).collect();
        entries.push(Entry { path, image, label, targets, metadata });
    }
    Ok((entries, skipped, columns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn image_folder_layout_with_sorted_classes_and_skips() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(&r.join("test/zebra/b.png"));
        touch(&r.join("test/zebra/a.PNG"));
        touch(&r.join("test/apple/x.jpg"));
        touch(&r.join("test/apple/readme.txt"));
        touch(&r.join("test/apple/.DS_Store"));
        touch(&r.join("test/stray.png"));
        touch(&r.join("train/apple/y.bmp"));
        let ds = Dataset::open(r, &TaskConfig::default()).unwrap();
        assert_eq!(ds.classes, ["apple", "zebra"]);
        assert_eq!(ds.class_source, ClassSource::FolderNames);
        let test = ds.split(Split::Test).unwrap();
        let names: Vec<&str> = test.samples.iter().map(|s| s.image.as_str()).collect();
        assert_eq!(names, ["test/apple/x.jpg", "test/zebra/a.PNG", "test/zebra/b.png"]);
        assert_eq!(test.samples[1].label, Label::Class(1));
        let skipped: Vec<&str> = test.skipped.iter().map(|s| s.image.as_str()).collect();
        assert_eq!(skipped, ["test/apple/readme.txt", "test/stray.png"]);
        assert!(ds.split(Split::Improvement).is_none());
    }

    #[test]
    fn hudd_folder_names_are_accepted() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("DataSets/TestSet/a/1.png"));
        touch(&d.path().join("DataSets/TrainingSet/a/2.png"));
        let ds = Dataset::open(d.path(), &TaskConfig::default()).unwrap();
        assert_eq!(ds.splits.iter().map(|s| s.split).collect::<Vec<_>>(), [Split::Train, Split::Test]);
    }

    #[test]
    fn configured_classes_fix_the_order_and_reject_unknown_labels() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("test/b/1.png"));
        touch(&d.path().join("test/a/1.png"));
        let task = TaskConfig { classes: Some(vec!["b".into(), "a".into()]), ..TaskConfig::default() };
        let ds = Dataset::open(d.path(), &task).unwrap();
        assert_eq!(ds.split(Split::Test).unwrap().samples[0].label, Label::Class(1));
        assert_eq!(ds.class_source, ClassSource::Config);
        let task = TaskConfig { classes: Some(vec!["b".into()]), ..TaskConfig::default() };
        let err = Dataset::open(d.path(), &task).unwrap_err();
        assert!(matches!(err, Error::UnknownLabel { ref label, .. } if label == "a"), "{err}");
    }

    #[test]
    fn empty_split_and_missing_layout_are_errors() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Dataset::open(d.path(), &TaskConfig::default()), Err(Error::DatasetLayout { .. })));
        touch(&d.path().join("test/a/notes.txt"));
        let err = Dataset::open(d.path(), &TaskConfig::default()).unwrap_err();
        assert!(matches!(err, Error::EmptySplit { skipped: 1, .. }), "{err}");
        assert!(Dataset::open(&d.path().join("nope"), &TaskConfig::default()).is_err());
    }

    #[test]
    fn manifest_carries_metadata_and_regression_targets() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("test/img/1.png"));
        touch(&d.path().join("test/img/2.png"));
        std::fs::write(
            d.path().join("test/manifest.csv"),
            "path,label,yaw,lighting\nimg/2.png,1.5 2,10.0,dark\nimg/1.png,3 4,-3,bright\nimg/3.png,0 0,1,dark\n",
        )
        .unwrap();
        let task = TaskConfig { kind: TaskKind::Regression, ..TaskConfig::default() };
        let ds = Dataset::open(d.path(), &task).unwrap();
        let test = ds.split(Split::Test).unwrap();
        assert_eq!(test.metadata_columns, ["yaw", "lighting"]);
        assert_eq!(test.samples[0].image, "test/img/1.png");
        assert_eq!(test.samples[0].label, Label::Target(vec![3.0, 4.0]));
        assert_eq!(test.samples[0].metadata, ["-3", "bright"]);
        assert_eq!(test.skipped.len(), 1);
        assert!(test.skipped[0].reason.contains("does not exist"));

        let task =
            TaskConfig { kind: TaskKind::Regression, targets: Some(vec!["yaw".into()]), ..TaskConfig::default() };
        let ds = Dataset::open(d.path(), &task).unwrap();
        let test = ds.split(Split::Test).unwrap();
        assert_eq!(test.samples[1].label, Label::Target(vec![10.0]));
        assert_eq!(test.metadata_columns, ["lighting"]);
    }

    #[cfg(unix)]
    #[test]
    fn link_loops_are_walked_once_and_recorded() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(&r.join("test/bag/1.png"));
        touch(&r.join("test/coat/2.png"));
        std::os::unix::fs::symlink("..", r.join("test/bag/loop")).unwrap();
        std::os::unix::fs::symlink("../..", r.join("test/coat/up")).unwrap();
        std::os::unix::fs::symlink("../bag", r.join("test/coat/bag")).unwrap();
        let ds = Dataset::open(r, &TaskConfig::default()).unwrap();
        let test = ds.split(Split::Test).unwrap();
        let names: Vec<&str> = test.samples.iter().map(|s| s.image.as_str()).collect();
        assert_eq!(names, ["test/bag/1.png", "test/coat/2.png"]);
        let skipped: Vec<&str> = test.skipped.iter().map(|s| s.image.as_str()).collect();
        // `up` leads to the dataset root, outside the split: walked once; its `test` is cut.
        assert_eq!(skipped, ["test/bag/loop", "test/coat/bag", "test/coat/up/test"], "{:?}", test.skipped);
        assert!(test.skipped.iter().all(|s| s.reason.contains("symbolic link")));
        let (files, skipped) = image_files(&r.join("test")).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
    }

    #[test]
    fn manifest_paths_stay_inside_the_split_and_are_listed_once() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("test/a/1.png"));
        touch(&d.path().join("outside.png"));
        let manifest = d.path().join("test/manifest.csv");
        for (text, needle) in [
            ("path,label\n../outside.png,a\n", "leaves the split folder"),
            ("path,label\n/etc/passwd.png,a\n", "leaves the split folder"),
            ("path,label\na/../../outside.png,a\n", "leaves the split folder"),
            ("path,label\na/1.png,a\n./a/1.png,b\n", "listed a second time (first on line 2)"),
        ] {
            std::fs::write(&manifest, text).unwrap();
            let err = Dataset::open(d.path(), &TaskConfig::default()).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
        std::fs::write(&manifest, "path,label\n./a/1.png,a\n").unwrap();
        let ds = Dataset::open(d.path(), &TaskConfig::default()).unwrap();
        assert_eq!(ds.split(Split::Test).unwrap().samples[0].image, "test/a/1.png");
    }

    #[test]
    fn bad_manifests_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("test/1.png"));
        std::fs::write(d.path().join("test/manifest.csv"), "path,label\n1.png,x y\n").unwrap();
        let task = TaskConfig { kind: TaskKind::Regression, ..TaskConfig::default() };
        let err = Dataset::open(d.path(), &task).unwrap_err();
        assert!(matches!(err, Error::Manifest { line: 2, .. }), "{err}");
        std::fs::write(d.path().join("test/manifest.csv"), "file,label\n1.png,a\n").unwrap();
        let err = Dataset::open(d.path(), &TaskConfig::default()).unwrap_err();
        assert!(err.to_string().contains("no `path` column"), "{err}");
        std::fs::remove_file(d.path().join("test/manifest.csv")).unwrap();
        assert!(Dataset::open(d.path(), &task).unwrap_err().to_string().contains("needs `manifest.csv`"));
    }

    #[test]
    fn columns_csv_describes_metadata_and_bad_rows_are_named() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("test/a/1.png"));
        assert!(
            Dataset::open(d.path(), &TaskConfig::default()).unwrap().columns.is_empty(),
            "no file, no descriptions"
        );
        let file = d.path().join(COLUMNS_FILE);
        std::fs::write(&file, "column,description,unit,min,max\neyelid,eyelid openness,,0,1\nyaw,head yaw,°,,\n")
            .unwrap();
        let ds = Dataset::open(d.path(), &TaskConfig::default()).unwrap();
        assert_eq!(ds.columns.len(), 2);
        assert_eq!((ds.columns[0].description.as_str(), ds.columns[0].range), ("eyelid openness", Some([0.0, 1.0])));
        assert_eq!((ds.columns[1].unit.as_str(), ds.columns[1].range), ("°", None));
        for (text, why) in [
            ("column,min,max\nx,1,0\n", "min ≤ max"),
            ("column,min,max\nx,0,\n", "both `min` and `max`"),
            ("column,min,max\nx,0,inf\n", "not a finite number"),
            ("column\nx\nx\n", "listed twice"),
            ("name\nx\n", "no `column` column"),
        ] {
            std::fs::write(&file, text).unwrap();
            let err = Dataset::open(d.path(), &TaskConfig::default()).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(COLUMNS_FILE), "{text:?}: {err}");
        }
        // The descriptions are part of the data's fingerprint (a resumed run redoes its stages).
        let print = || Dataset::open(d.path(), &TaskConfig::default()).unwrap().fingerprint(&crate::progress::Silent);
        std::fs::write(&file, "column,description\neyelid,openness\n").unwrap();
        let before = print();
        std::fs::write(&file, "column,description\neyelid,eyelid openness\n").unwrap();
        assert_ne!(print(), before);
    }
}
