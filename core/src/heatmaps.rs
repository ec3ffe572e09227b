//! The heatmap stage: relevance of chosen layers for a list of images, streamed to `.npy` files.
//!
//! # Format
//! `H/<sanitized tensor name>.npy` — one per layer: `N × <tensor dims>` float32, C order, rows in the
//! order of `index.json`'s `images`. `H/index.json`:
//! ```json
//! {"format": "hudd-heatmaps", "format_version": 1, "hudd_version": "0.1.0",
//!  "model": "fmnist_cnn.onnx", "preset": "hudd", "start": "predicted", "output_layer": "logits",
//!  "images": ["test/coat/00012.png", …],
//!  "skipped": [{"image": "…", "reason": "…"}],
//!  "layers": [{"tensor": "/features/features.0/Conv_output_0", "file": "_features_features.0_Conv_output_0.npy",
//!              "shape": [16, 28, 28], "node": "/features/features.0/Conv", "op": "Conv", "rule": "epsilon(0.000000001)"}]}
//! ```
//! `shape` excludes the image axis. Sanitising keeps letters, digits, `-`, `_` and `.`; every other
//! character becomes `_` (the index maps names to files either way).
//!
//! Sharded ([`compute_shard_to_folder`], `--shard I/N`): a shard folder is a heatmaps folder of the
//! shard's images (see [`crate::shard`]); [`merge`] concatenates a complete set into the folder of
//! the whole run, byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3, ArrayD};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::InputSpec;
use crate::dataset::Skipped;
use crate::error::{Error, Result};
use crate::fsio::write_json;
use crate::model::Op;
pub use crate::npy::Dtype;
use crate::npy::{read_f32, NpyWriter};
use crate::progress::Progress;
use crate::relevance::{Explainer, Preset, Start};
use crate::shard::{Shard, ShardRecord, Stage};

/// What the stage writes per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Features {
    /// LRP relevance (HUDD's heatmaps).
    #[default]
    Heatmaps,
    /// The layer's activations (the forward pass only, no relevance): what the model computed
    /// rather than what its decision rests on.
    Activations,
}

impl Features {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            Features::Heatmaps => "heatmaps",
            Features::Activations => "activations",
        }
    }

    /// Whether these are heatmaps (what a file says when it says nothing).
    pub fn is_heatmaps(&self) -> bool {
        *self == Features::Heatmaps
    }
}

impl std::fmt::Display for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which layers get heatmaps.
#[derive(Debug, Clone, PartialEq)]
pub enum Layers {
    /// HUDD's set: the input and the output of every Conv, Gemm/MatMul, pooling and Flatten node.
    Default,
    /// Every activation tensor the propagation visits, input and logits included.
    All,
    /// These ONNX tensor names.
    Names(Vec<String>),
}

impl std::str::FromStr for Layers {
    type Err = String;
    /// `default`, `all`, or tensor names separated by commas.
    fn from_str(s: &str) -> std::result::Result<Layers, String> {
        Ok(match s {
            "default" => Layers::Default,
            "all" => Layers::All,
            names => {
                let names: Vec<String> =
                    names.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
                if names.is_empty() {
                    return Err("give `default`, `all` or tensor names separated by commas".into());
                }
                Layers::Names(names)
            }
        })
    }
}

/// How relevance starts, per image.
#[derive(Debug, Clone, PartialEq)]
pub enum StartRule {
    /// The predicted class's logit (HUDD).
    Predicted,
    /// The labelled class's logit (labels given per image).
    Label,
    /// This class's logit.
    Class(usize),
    /// Every output as it is.
    AllOutputs,
    /// Regressors (HUDD): only the worst output against the image's targets
    /// ([`ImageRef::targets`]); with `keypoints`, the worst (x, y) pair.
    Worst {
        /// Outputs are (x, y) keypoint pairs.
        keypoints: bool,
    },
}

impl std::fmt::Display for StartRule {
    /// The rule's name, as on the command line and in `index.json` (`predicted`, `class=3`, …).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartRule::Predicted => f.write_str("predicted"),
            StartRule::Label => f.write_str("label"),
            StartRule::Class(c) => write!(f, "class={c}"),
            StartRule::AllOutputs => f.write_str("all"),
            StartRule::Worst { keypoints: false } => f.write_str("worst"),
            StartRule::Worst { keypoints: true } => f.write_str("worst-keypoint"),
        }
    }
}

impl std::str::FromStr for StartRule {
    type Err = String;
    /// Parses what [`Display`](std::fmt::Display) writes.
    fn from_str(s: &str) -> std::result::Result<StartRule, String> {
        Ok(match s {
            "predicted" => StartRule::Predicted,
            "label" => StartRule::Label,
            "all" => StartRule::AllOutputs,
            "worst" => StartRule::Worst { keypoints: false },
            "worst-keypoint" => StartRule::Worst { keypoints: true },
            s => match s.strip_prefix("class=").and_then(|n| n.parse().ok()) {
                Some(c) => StartRule::Class(c),
                None => {
                    return Err(format!(
                        "`{s}` is not a start rule: predicted, label, class=N, all, worst or worst-keypoint"
                    ))
                }
            },
        })
    }
}

/// One image to explain.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    /// The file.
    pub path: PathBuf,
    /// Its name in outputs.
    pub image: String,
    /// Its class, for [`StartRule::Label`].
    pub label: Option<usize>,
    /// Its regression targets, for [`StartRule::Worst`].
    pub targets: Option<Vec<f32>>,
}

/// The images of `hudd heatmaps`: a folder (searched recursively, sorted by path) or a text file
/// with one path per line (relative to the text file; `#` starts a comment). An image's label is
/// its parent folder's name when that is one of `classes` (for [`StartRule::Label`]). Returns the
/// images and the folder's files that are not images, or not regular files, each with the reason.
pub fn images_to_explain(path: &Path, classes: &[String]) -> Result<(Vec<ImageRef>, Vec<Skipped>)> {
    let (files, not_images) = if path.is_dir() {
        crate::dataset::image_files(path)?
    } else {
        let text = crate::fsio::read_to_string(path).map_err(|e| Error::io("cannot read image list", path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let files = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| crate::dataset::ImageFile { path: base.join(l), image: l.to_string() })
            .collect();
        (files, Vec::new())
    };
    let images = files
        .into_iter()
        .map(|crate::dataset::ImageFile { path, image }| {
            let label = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .and_then(|n| classes.iter().position(|c| c == n));
            ImageRef { path, image, label, targets: None }
        })
        .collect();
    Ok((images, not_images))
}

/// One layer's file, as listed in `index.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerFile {
    /// ONNX tensor name.
    pub tensor: String,
    /// File name inside the heatmap folder.
    pub file: String,
    /// Tensor shape without the image axis.
    pub shape: Vec<usize>,
    /// The node that produces the tensor (empty for the model input).
    #[serde(default)]
    pub node: String,
    /// That node's op (`Conv+BatchNormalization` for merged layers).
    #[serde(default)]
    pub op: String,
    /// The rule of that node, when it is a linear layer.
    #[serde(default)]
    pub rule: Option<String>,
}

/// `index.json`: written by [`compute_to_folder`] and [`HeatmapSet::write`], read by [`HeatmapIndex::read`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeatmapIndex {
    /// [`FORMAT`].
    pub format: String,
    /// 1.
    pub format_version: u32,
    /// hudd's version.
    #[serde(default)]
    pub hudd_version: String,
    /// The model file name.
    #[serde(default)]
    pub model: String,
    /// The preset.
    #[serde(default)]
    pub preset: Preset,
    /// The start rule.
    #[serde(default)]
    pub start: String,
    /// The explained output tensor (where relevance starts; its heatmap is the start vector, so
    /// it is never the best layer), when it is among the layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_layer: Option<String>,
    /// `activations` when the files hold the layers' activations instead of relevance (absent:
    /// heatmaps).
    #[serde(default, skip_serializing_if = "Features::is_heatmaps")]
    pub features: Features,
    /// How the `.npy` files store the values (`f32` when absent: files written before `--dtype`).
    #[serde(default, skip_serializing_if = "Dtype::is_f32")]
    pub dtype: Dtype,
    /// Images in row order.
    pub images: Vec<String>,
    /// Images that could not be read.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// One entry per layer file.
    pub layers: Vec<LayerFile>,
    /// Layers that were computed but not kept (`hudd analyze --keep-heatmaps best|none`): their
    /// tensor names, in propagation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
}

/// `index.json`'s format name.
pub const FORMAT: &str = "hudd-heatmaps";

impl HeatmapIndex {
    /// This index with only the layers `keep` (indices, in any order; kept in index order), the
    /// others added to `dropped`, and the layers dropped; `dir` names the folder in the error
    /// when an index is out of range.
    fn keeping(&self, keep: &[usize], dir: &Path) -> Result<(HeatmapIndex, Vec<LayerFile>)> {
        let n_layers = self.layers.len();
        if let Some(&i) = keep.iter().find(|&&i| i >= n_layers) {
            return Err(Error::Output {
                what: "heatmaps",
                path: dir.join("index.json"),
                reason: format!("no layer {i} to keep ({n_layers} layers)"),
            });
        }
        let (kept, dropped): (Vec<_>, Vec<_>) = self.layers.iter().enumerate().partition(|(i, _)| keep.contains(i));
        let dropped: Vec<LayerFile> = dropped.into_iter().map(|(_, l)| l.clone()).collect();
        let mut index = self.clone();
        index.layers = kept.into_iter().map(|(_, l)| l.clone()).collect();
        index.dropped.extend(dropped.iter().map(|l| l.tensor.clone()));
        Ok((index, dropped))
    }

    /// Reads `dir/index.json`, checking its format.
    pub fn read(dir: &Path) -> Result<HeatmapIndex> {
        let path = dir.join("index.json");
        let bad = |reason: String| Error::Output { what: "heatmaps folder", path: path.clone(), reason };
        let text = crate::fsio::read_to_string(&path).map_err(|e| {
            Error::io("cannot read the heatmaps index (is this a folder written by `hudd heatmaps`?)", &path, e)
        })?;
        let index: HeatmapIndex = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if index.format != FORMAT {
            return Err(bad(format!("format `{}` is not `{FORMAT}`", index.format)));
        }
        Ok(index)
    }
}

/// Options of [`compute`].
#[derive(Debug, Clone)]
pub struct HeatmapOptions {
    /// Rules.
    pub preset: Preset,
    /// Layers to write.
    pub layers: Layers,
    /// Start relevance.
    pub start: StartRule,
    /// Images per propagation batch.
    pub batch_size: usize,
    /// Relevance (heatmaps) or activations.
    pub features: Features,
    /// How the files store the values (computations keep f32).
    pub dtype: Dtype,
}

/// Characters kept in file names; everything else becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect()
}

/// The ops whose outputs HUDD's default layer set holds.
fn in_default_layers(op: &Op) -> bool {
    matches!(
        op,
        Op::Conv(_)
            | Op::ConvTranspose(_)
            | Op::Gemm { .. }
            | Op::MatMul
            | Op::MaxPool(_)
            | Op::AveragePool { .. }
            | Op::GlobalAveragePool
            | Op::GlobalMaxPool
            // Global pooling as the default PyTorch exporter writes it (and squeeze-excitation's).
            | Op::Reduce { .. }
            | Op::Flatten { .. }
    )
}

/// A set of heatmaps: the index and, per layer, an `N × D` matrix — in memory (just computed by
/// [`compute`]) or in a heatmaps folder (opened by [`HeatmapSet::open`], read one layer at a time).
#[derive(Debug, Clone)]
pub struct HeatmapSet {
    /// What `index.json` holds.
    pub index: HeatmapIndex,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Memory(Vec<Array2<f32>>),
    Folder(PathBuf),
}

impl HeatmapSet {
    /// Opens a heatmaps folder (`index.json` and one `.npy` per layer).
    pub fn open(dir: &Path) -> Result<HeatmapSet> {
        Ok(HeatmapSet { index: HeatmapIndex::read(dir)?, source: Source::Folder(dir.to_path_buf()) })
    }

    /// Images in row order.
    pub fn images(&self) -> &[String] {
        &self.index.images
    }

    /// The layers, in index order.
    pub fn layers(&self) -> &[LayerFile] {
        &self.index.layers
    }

    /// The input layer (the one no node produces), if it has heatmaps.
    pub fn input_layer(&self) -> Option<&LayerFile> {
        self.index.layers.iter().find(|l| l.node.is_empty())
    }

    /// Layer `i`'s heatmaps as an `N × D` matrix (borrowed when in memory, read when in a folder).
    pub fn layer(&self, i: usize) -> Result<std::borrow::Cow<'_, Array2<f32>>> {
        let entry = self.index.layers.get(i).ok_or_else(|| Error::Output {
            what: "heatmaps",
            path: PathBuf::from("index.json"),
            reason: format!("no layer {i} ({} layers)", self.index.layers.len()),
        })?;
        let dir = match &self.source {
            Source::Memory(layers) => {
                return layers.get(i).map(std::borrow::Cow::Borrowed).ok_or_else(|| Error::Output {
                    what: "heatmaps",
                    path: PathBuf::from(&entry.file),
                    reason: "not in memory".into(),
                })
            }
            Source::Folder(dir) => dir,
        };
        let n = self.index.images.len();
        let path = dir.join(&entry.file);
        let (shape, values) = read_f32(&path)?;
        let rows = shape.first().copied().unwrap_or(0);
        if rows != n {
            return Err(Error::Output {
                what: "heatmaps",
                path,
                reason: format!("{rows} rows for {n} images in index.json"),
            });
        }
        let d = values.len() / n.max(1);
        Array2::from_shape_vec((n, d), values).map(std::borrow::Cow::Owned).map_err(|e| Error::Output {
            what: "heatmaps",
            path,
            reason: e.to_string(),
        })
    }

    /// Writes the set as a heatmaps folder into `dir` (index.json last: it marks a complete folder).
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.write_layers(dir, &(0..self.index.layers.len()).collect::<Vec<_>>())
    }

    /// Writes only the layers `keep` (indices, in any order; written in index order) as a heatmaps
    /// folder into `dir`; the index lists the others as `dropped`. The images are all kept, so an
    /// empty `keep` still writes an index of the images.
    pub fn write_layers(&self, dir: &Path, keep: &[usize]) -> Result<()> {
        let (index, _) = self.index.keeping(keep, dir)?;
        let kept: Vec<usize> = (0..self.index.layers.len()).filter(|i| keep.contains(i)).collect();
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
        let mut sink = FolderSink::new(dir, self.index.dtype)?;
        sink.start(&index.layers, self.index.images.len())?;
        for (w, &i) in kept.iter().enumerate() {
            let x = self.layer(i)?;
            let standard = x.as_standard_layout();
            match standard.as_slice() {
                // f32 is written from the values' own memory, f16 encoded through a small buffer.
                Some(values) => sink.writers[w].append(values)?,
                None => sink.writers[w].append(&standard.iter().copied().collect::<Vec<_>>())?,
            }
        }
        sink.finish(&index)
    }
}

/// Computes heatmaps of `images` (see the module docs) and keeps them in memory. Each image is
/// decoded once; images that fail to decode are recorded as skipped (when none can be read, the set
/// has no rows and no layers).
pub fn compute(
    explainer: &Explainer<'_>,
    spec: &InputSpec,
    images: &[ImageRef],
    options: &HeatmapOptions,
    progress: &dyn Progress,
) -> Result<HeatmapSet> {
    let mut sink = MemorySink::default();
    let index = run(explainer, spec, images, options, &mut sink, progress)?;
    let n = index.images.len();
    let layers = sink
        .layers
        .into_iter()
        .zip(&index.layers)
        .map(|(values, l)| {
            let d = l.shape.iter().product::<usize>();
            Array2::from_shape_vec((n, d), values).map_err(|e| Error::Output {
                what: "heatmaps",
                path: PathBuf::from(&l.file),
                reason: e.to_string(),
            })
        })
        .collect::<Result<_>>()?;
    Ok(HeatmapSet { index, source: Source::Memory(layers) })
}

/// Computes every heatmap as [`compute`] does and keeps none: the index says which images were
/// explained. For benchmarks that time decoding and the arithmetic without storing the results.
pub fn compute_discarding(
    explainer: &Explainer<'_>,
    spec: &InputSpec,
    images: &[ImageRef],
    options: &HeatmapOptions,
    progress: &dyn Progress,
) -> Result<HeatmapIndex> {
    run(explainer, spec, images, options, &mut DiscardSink, progress)
}

/// Computes heatmaps of `images` and streams them into the folder `out` (`hudd heatmaps`): memory
/// stays bounded, batches are computed in parallel a few at a time and appended to each layer's
/// file in order. Each image is decoded once; images that fail to decode are recorded as skipped.
pub fn compute_to_folder(
    explainer: &Explainer<'_>,
    spec: &InputSpec,
    images: &[ImageRef],
    options: &HeatmapOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<HeatmapIndex> {
    let mut sink = FolderSink::new(out, options.dtype)?;
    let index = run(explainer, spec, images, options, &mut sink, progress)?;
    if index.images.is_empty() {
        return Err(no_readable_image(images.len(), &index.skipped));
    }
    sink.finish(&index)?;
    Ok(index)
}

fn no_readable_image(images: usize, skipped: &[Skipped]) -> Error {
    Error::NoReadableImage {
        images,
        first: skipped.first().map(|s| format!("{}: {}", s.image, s.reason)).unwrap_or_default(),
    }
}

/// [`compute_to_folder`] for `shard` of `images` (all of them, sorted: see [`crate::shard`]): writes
/// the shard folder `out/shards/heatmaps-<I>-of-<N>/` (a heatmaps folder of the shard's images,
/// possibly none readable) and its `shard.json`. Returns the folder and its index.
pub fn compute_shard_to_folder(
    explainer: &Explainer<'_>,
    spec: &InputSpec,
    images: &[ImageRef],
    options: &HeatmapOptions,
    out: &Path,
    shard: Shard,
    progress: &dyn Progress,
) -> Result<(PathBuf, HeatmapIndex)> {
    let dir = crate::shard::begin(out, Stage::Heatmaps, shard)?;
    let part = &images[shard.range(images.len(), options.batch_size.max(1))];
    let mut sink = FolderSink::new(&dir, options.dtype)?;
    let index = run(explainer, spec, part, options, &mut sink, progress)?;
    sink.finish(&index)?;
    let names: Vec<&str> = images.iter().map(|i| i.image.as_str()).collect();
    let (spec_text, layers, start) = (format!("{spec:?}"), format!("{:?}", options.layers), options.start.to_string());
    let identity = [explainer.model().sha256(), options.preset.name(), &layers, &start, &spec_text, &names.join("\n")];
    let batch = options.batch_size.max(1);
    ShardRecord::new(Stage::Heatmaps, shard, batch, images.len(), part.len(), &identity, serde_json::json!({}))
        .write(&dir)?;
    Ok((dir, index))
}

/// Writes the heatmaps folder `out` of the whole run from the complete set of heatmaps shards (see
/// [`crate::shard::find`]): each layer's rows concatenated in shard order, one `index.json`; the
/// same bytes as the unsharded run. Memory holds no layer: the files are streamed.
pub fn merge(shards: &[(PathBuf, ShardRecord)], out: &Path) -> Result<HeatmapIndex> {
    let indexes: Vec<HeatmapIndex> = shards.iter().map(|(p, _)| HeatmapIndex::read(p)).collect::<Result<_>>()?;
    let Some(first) = indexes.first() else {
        return Err(Error::Shards { path: out.to_path_buf(), reason: "no shard to merge".into() });
    };
    let with_rows: Vec<usize> = (0..indexes.len()).filter(|&k| !indexes[k].images.is_empty()).collect();
    let mut merged = HeatmapIndex {
        images: indexes.iter().flat_map(|i| i.images.iter().cloned()).collect(),
        skipped: indexes.iter().flat_map(|i| i.skipped.iter().cloned()).collect(),
        layers: with_rows.first().map(|&k| indexes[k].layers.clone()).unwrap_or_default(),
        output_layer: with_rows.first().and_then(|&k| indexes[k].output_layer.clone()),
        ..first.clone()
    };
    let total: usize = shards.iter().map(|(_, r)| r.taken).sum();
    if merged.images.is_empty() {
        return Err(no_readable_image(total, &merged.skipped));
    }
    for (k, (i, (path, _))) in indexes.iter().zip(shards).enumerate() {
        let same = i.format == first.format
            && i.model == first.model
            && i.preset == first.preset
            && i.start == first.start
            && i.dtype == first.dtype
            && (i.images.is_empty() || (i.layers == merged.layers && i.output_layer == merged.output_layer));
        if !same {
            return Err(Error::Shards {
                path: path.join("index.json"),
                reason: format!("shard {k}'s model, preset, start rule, dtype or layers differ from the others'"),
            });
        }
    }
    let sink = FolderSink::new(out, merged.dtype)?;
    for l in &merged.layers {
        let parts: Vec<PathBuf> = with_rows.iter().map(|&k| shards[k].0.join(&l.file)).collect();
        crate::npy::concat_rows(&parts, &out.join(&l.file))?;
    }
    merged.hudd_version = crate::VERSION.into();
    sink.finish(&merged)?;
    Ok(merged)
}

/// Where the batches of heatmaps go, in row order.
trait Sink: Send {
    /// Before the first batch: the layers and the most rows there can be.
    fn start(&mut self, layers: &[LayerFile], max_rows: usize) -> Result<()>;
    /// One batch: per layer, the batch's rows.
    fn append(&mut self, layers: &[ndarray::ArrayD<f32>]) -> Result<()>;
}

/// Keeps nothing: for measuring the computation alone.
struct DiscardSink;

impl Sink for DiscardSink {
    fn start(&mut self, _layers: &[LayerFile], _max_rows: usize) -> Result<()> {
        Ok(())
    }
    fn append(&mut self, _layers: &[ndarray::ArrayD<f32>]) -> Result<()> {
        Ok(())
    }
}

#[derive(Default)]
struct MemorySink {
    layers: Vec<Vec<f32>>,
}

impl Sink for MemorySink {
    fn start(&mut self, layers: &[LayerFile], max_rows: usize) -> Result<()> {
        self.layers = layers.iter().map(|l| Vec::with_capacity(max_rows * l.shape.iter().product::<usize>())).collect();
        Ok(())
    }
    fn append(&mut self, layers: &[ndarray::ArrayD<f32>]) -> Result<()> {
        for (acc, arr) in self.layers.iter_mut().zip(layers) {
            // A view in standard layout borrows the data when it already is (no copy).
            let standard = arr.as_standard_layout();
            match standard.as_slice() {
                Some(values) => acc.extend_from_slice(values),
                None => acc.extend(standard.iter().copied()),
            }
        }
        Ok(())
    }
}

struct FolderSink {
    dir: PathBuf,
    writers: Vec<NpyWriter>,
    /// Bytes appended since the files were last synced.
    unsynced: usize,
    /// How the files store the values.
    dtype: Dtype,
}

/// Bytes the writing thread appends between syncs: the disk works while the next batches are
/// computed, instead of all at the end.
const SYNC_EVERY: usize = 256 << 20;

impl FolderSink {
    /// Removes an old `index.json` (it marks a complete folder) before any file is rewritten.
    fn new(dir: &Path, dtype: Dtype) -> Result<FolderSink> {
        let old_index = dir.join("index.json");
        if old_index.exists() {
            std::fs::remove_file(&old_index).map_err(|e| Error::io("cannot remove old index", &old_index, e))?;
        }
        Ok(FolderSink { dir: dir.to_path_buf(), writers: Vec::new(), unsynced: 0, dtype })
    }

    fn finish(self, index: &HeatmapIndex) -> Result<()> {
        for w in self.writers {
            w.finish()?;
        }
        write_json(&self.dir.join("index.json"), "heatmap index", index)
    }
}

impl Sink for FolderSink {
    fn start(&mut self, layers: &[LayerFile], max_rows: usize) -> Result<()> {
        self.writers = layers
            .iter()
            .map(|l| NpyWriter::create_rows(&self.dir.join(&l.file), max_rows, &l.shape, self.dtype))
            .collect::<Result<_>>()?;
        Ok(())
    }
    fn append(&mut self, layers: &[ndarray::ArrayD<f32>]) -> Result<()> {
        for (w, arr) in self.writers.iter_mut().zip(layers) {
            // A view in standard layout borrows the data when it already is (no copy).
            let standard = arr.as_standard_layout();
            match standard.as_slice() {
                Some(values) => w.append(values)?,
                None => w.append(&standard.iter().copied().collect::<Vec<_>>())?,
            }
            self.unsynced += self.dtype.size() * arr.len();
        }
        if self.unsynced >= SYNC_EVERY {
            for w in &mut self.writers {
                w.sync()?;
            }
            self.unsynced = 0;
        }
        Ok(())
    }
}

/// Bytes that one image's values of `layers` take in memory (f32), from the model's tensor
/// shapes; `None` when a shape is not known before running.
pub fn bytes_per_image(explainer: &Explainer<'_>, layers: &Layers) -> Result<Option<u64>> {
    let graph = explainer.model().graph();
    let mut values: u64 = 0;
    for c in chosen_layers(explainer, layers)? {
        let Some(fact) = graph.tensors.get(&c.tensor) else { return Ok(None) };
        // The batch axis (symbolic, or fixed at 1) counts as 1; another unknown axis makes it unknown.
        let mut n: u64 = 1;
        for (axis, d) in fact.shape.iter().enumerate() {
            match d.fixed() {
                Some(d) => n = n.saturating_mul(d as u64),
                None if axis == 0 => {}
                None => return Ok(None),
            }
        }
        values = values.saturating_add(n);
    }
    Ok(Some(values.saturating_mul(4)))
}

/// Rewrites the heatmaps folder `dir` to keep only the layers `keep` (indices into its index):
/// the index, listing the others as `dropped`, is replaced first, then their files are removed.
pub fn prune(dir: &Path, keep: &[usize]) -> Result<()> {
    let (index, dropped) = HeatmapIndex::read(dir)?.keeping(keep, dir)?;
    write_json(&dir.join("index.json"), "heatmap index", &index)?;
    for l in dropped {
        let path = dir.join(&l.file);
        std::fs::remove_file(&path).map_err(|e| Error::io("cannot remove a dropped layer's heatmaps", &path, e))?;
    }
    Ok(())
}

/// Rewrites the heatmaps folder `dir` with only the layers `keep`, stored as `dtype`: written into
/// a sibling folder (`<dir>.rewrite`), which then takes `dir`'s place.
pub fn rewrite(dir: &Path, keep: &[usize], dtype: Dtype) -> Result<()> {
    let mut set = HeatmapSet::open(dir)?;
    set.index.dtype = dtype;
    let mut name = dir.as_os_str().to_owned();
    name.push(".rewrite");
    let fresh = PathBuf::from(name);
    crate::fsio::remove_dir_if_exists(&fresh, "cannot remove an old partial folder")?;
    set.write_layers(&fresh, keep)?;
    crate::fsio::remove_dir_if_exists(dir, "cannot remove the streamed heatmaps")?;
    std::fs::rename(&fresh, dir).map_err(|e| Error::io("cannot move the rewritten heatmaps into place", dir, e))
}

/// A layer to write: its tensor, the node and op that produce it, and that node's rule.
struct Chosen {
    tensor: String,
    node: String,
    op: String,
    rule: Option<String>,
}

/// The layers `options.layers` names, in propagation order, each with its step and rule.
fn chosen_layers(explainer: &Explainer<'_>, layers: &Layers) -> Result<Vec<Chosen>> {
    let program = explainer.program();
    // Every tensor the propagation visits, with the step that produces it.
    let mut produced: BTreeMap<String, (&crate::relevance::Step, Option<String>)> = BTreeMap::new();
    let mut order: Vec<String> = vec![program.input.clone()];
    for s in &program.steps {
        let rule = s.rule.as_ref().map(|r| r.name());
        for t in s.aliases.iter().chain(std::iter::once(&s.output)) {
            produced.insert(t.clone(), (s, rule.clone()));
            order.push(t.clone());
        }
    }
    let chosen: Vec<String> = match layers {
        Layers::All => order.clone(),
        Layers::Default => order
            .iter()
            .filter(|t| **t == program.input || produced.get(*t).is_some_and(|(step, _)| in_default_layers(&step.op)))
            .cloned()
            .collect(),
        Layers::Names(names) => {
            if let Some(n) = names.iter().find(|n| !order.contains(n)) {
                return Err(Error::UnknownLayer { layer: n.clone(), available: order.join(", ") });
            }
            names.clone()
        }
    };
    Ok(chosen
        .into_iter()
        .map(|tensor| {
            let (node, op, rule) = produced
                .get(&tensor)
                .map(|(s, rule)| (s.node.clone(), s.label.clone(), rule.clone()))
                .unwrap_or_default();
            Chosen { tensor, node, op, rule }
        })
        .collect())
}

/// What the computing threads hand to the writing thread.
enum Write {
    /// Before the first batch: the layers and the most rows there can be.
    Start(Vec<LayerFile>, usize),
    /// One batch: per layer, the batch's rows.
    Append(Vec<ndarray::ArrayD<f32>>),
}

/// The float activations one relevance batch may hold (1 GiB). Larger batches of large models spent
/// most of their time faulting in fresh pages: ResNet-50 at 224² (199 MiB of activations per image)
/// took 74.9 s for 64 images in batches of 64 and 21–22.5 s in batches of 5 to 8; EfficientNet-B0
/// (103 MiB) 51 s and 10–16 s (2 cores, BENCHMARKS.md).
const RELEVANCE_BATCH_BYTES: u64 = 1 << 30;

/// Images per relevance batch: the configured batch size, fewer when a batch's activations
/// (`floats_per_image` each; 0 when unknown) would pass [`RELEVANCE_BATCH_BYTES`]. An image's
/// relevance is the same bits in any batch, so this changes speed and memory only.
pub fn relevance_batch(configured: usize, floats_per_image: u64) -> usize {
    let fit = RELEVANCE_BATCH_BYTES / floats_per_image.saturating_mul(4).max(1);
    configured.max(1).min(usize::try_from(fit).unwrap_or(usize::MAX).max(1))
}

/// The propagation loop shared by [`compute`] and [`compute_to_folder`]. Batches are computed a
/// wave at a time on rayon's threads while a writing thread appends the previous wave to `sink`,
/// in image order: writing overlaps computing instead of following it.
fn run(
    explainer: &Explainer<'_>,
    spec: &InputSpec,
    images: &[ImageRef],
    options: &HeatmapOptions,
    sink: &mut dyn Sink,
    progress: &dyn Progress,
) -> Result<HeatmapIndex> {
    let model = explainer.model();
    let program = explainer.program();
    let chosen = chosen_layers(explainer, &options.layers)?;
    let names: Vec<String> = chosen.iter().map(|c| c.tensor.clone()).collect();
    let batch_size = relevance_batch(options.batch_size, model.graph().float_values_per_image());
    let threads = rayon::current_num_threads().max(1);
    let mut layers: Vec<LayerFile> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    let mut skipped: Vec<Skipped> = Vec::new();
    progress.start("heatmaps", images.len() as u64);
    // A wave's worth of batches may wait for the writer: one wave is computed while the previous
    // one is written, and memory stays within two waves.
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Write>(threads);
    let computed: Result<()> = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<()> {
            for message in receiver {
                match message {
                    Write::Start(layers, max_rows) => sink.start(&layers, max_rows)?,
                    Write::Append(values) => sink.append(&values)?,
                }
            }
            Ok(())
        });
        let computing = (|| -> Result<()> {
            for wave in images.chunks(batch_size * threads) {
                let results: Vec<Result<Batch>> = wave
                    .par_chunks(batch_size)
                    .map(|chunk| {
                        let r = explain_batch(explainer, spec, chunk, &options.start, &names, options.features);
                        progress.advance(chunk.len() as u64);
                        r
                    })
                    .collect();
                for r in results {
                    let batch = r?;
                    skipped.extend(batch.skipped);
                    if batch.images.is_empty() {
                        continue;
                    }
                    if layers.is_empty() {
                        layers = layer_files(&chosen, &batch.layers, options.features);
                        if sender.send(Write::Start(layers.clone(), images.len() - skipped.len())).is_err() {
                            return Ok(()); // The writer stopped: its error is reported below.
                        }
                    }
                    if sender.send(Write::Append(batch.layers)).is_err() {
                        return Ok(());
                    }
                    rows.extend(batch.images);
                }
            }
            Ok(())
        })();
        drop(sender);
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A computing error comes first; otherwise the writer's.
        computing.and(written)
    });
    computed?;
    progress.finish();
    Ok(HeatmapIndex {
        format: FORMAT.into(),
        format_version: 1,
        hudd_version: crate::VERSION.into(),
        model: model.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        preset: options.preset,
        start: options.start.to_string(),
        output_layer: layers.iter().any(|l| l.tensor == program.start).then(|| program.start.clone()),
        features: options.features,
        dtype: options.dtype,
        images: rows,
        skipped,
        layers,
        dropped: Vec::new(),
    })
}

/// The files of the chosen layers, named after their tensors (unique names), shaped like one row of
/// the first batch.
fn layer_files(chosen: &[Chosen], first: &[ndarray::ArrayD<f32>], features: Features) -> Vec<LayerFile> {
    let mut used_files: std::collections::HashSet<String> = std::collections::HashSet::new();
    chosen
        .iter()
        .zip(first)
        .map(|(Chosen { tensor, node, op, rule }, arr)| {
            let stem = sanitize(tensor);
            let mut file = format!("{stem}.npy");
            let mut k = 2;
            while !used_files.insert(file.clone()) {
                file = format!("{stem}-{k}.npy");
                k += 1;
            }
            LayerFile {
                tensor: tensor.clone(),
                file,
                shape: arr.shape()[1..].to_vec(),
                node: node.clone(),
                op: op.clone(),
                rule: rule.clone().filter(|_| features == Features::Heatmaps),
            }
        })
        .collect()
}

struct Batch {
    images: Vec<String>,
    skipped: Vec<Skipped>,
    layers: Vec<ndarray::ArrayD<f32>>,
}

fn explain_batch(
    explainer: &Explainer<'_>,
    spec: &InputSpec,
    chunk: &[ImageRef],
    start: &StartRule,
    chosen: &[String],
    features: Features,
) -> Result<Batch> {
    let mut tensors: Vec<Array3<f32>> = Vec::with_capacity(chunk.len());
    let mut used: Vec<&ImageRef> = Vec::with_capacity(chunk.len());
    let mut skipped = Vec::new();
    for im in chunk {
        match crate::input::load(&im.path, spec) {
            Ok(t) => {
                tensors.push(t);
                used.push(im);
            }
            Err(reason) => skipped.push(Skipped { image: im.image.clone(), reason }),
        }
    }
    if used.is_empty() {
        return Ok(Batch { images: Vec::new(), skipped, layers: Vec::new() });
    }
    let start = match start {
        StartRule::Predicted => Start::Predicted,
        StartRule::Class(c) => Start::Classes(vec![*c; used.len()]),
        StartRule::AllOutputs => Start::AllOutputs,
        StartRule::Worst { keypoints } => Start::Worst {
            targets: used
                .iter()
                .map(|im| {
                    im.targets
                        .clone()
                        .ok_or_else(|| Error::NoStart { image: im.image.clone(), what: "regression targets" })
                })
                .collect::<Result<_>>()?,
            keypoints: *keypoints,
        },
        StartRule::Label => Start::Classes(
            used.iter()
                .map(|im| im.label.ok_or_else(|| Error::NoStart { image: im.image.clone(), what: "class label" }))
                .collect::<Result<_>>()?,
        ),
    };
    let batch = crate::input::stack(&tensors, spec);
    let mut values = match features {
        Features::Heatmaps => explainer.explain(batch.view(), &start)?,
        Features::Activations => explainer.model().run_with_activations(batch.view())?.tensors,
    };
    let mut layers: Vec<ArrayD<f32>> = chosen
        .iter()
        .map(|t| values.remove(t).ok_or_else(|| Error::RelevanceNotReached { layer: t.clone() }))
        .collect::<Result<_>>()?;
    // A heatmap holding NaN or ±inf has no distance to anything: the image is skipped, not clustered
    // as if its relevance were zero.
    let finite: Vec<usize> = (0..used.len())
        .filter(|&i| {
            layers.iter().all(|l| {
                let row = l.index_axis(ndarray::Axis(0), i);
                match row.as_slice() {
                    Some(values) => all_finite(values),
                    None => row.iter().all(|v| v.is_finite()),
                }
            })
        })
        .collect();
    if finite.len() < used.len() {
        for (i, im) in used.iter().enumerate() {
            if !finite.contains(&i) {
                skipped.push(Skipped { image: im.image.clone(), reason: NON_FINITE_HEATMAP.into() });
            }
        }
        for l in &mut layers {
            *l = l.select(ndarray::Axis(0), &finite);
        }
    }
    Ok(Batch { images: finite.iter().map(|&i| used[i].image.clone()).collect(), skipped, layers })
}

/// Whether every value is finite. Tests the exponent bits a block at a time without stopping at
/// each value, so the loop vectorises (an early exit per value made this check 2 % of the
/// AlexNet-like model's heatmap time).
fn all_finite(values: &[f32]) -> bool {
    const EXPONENT: u32 = 0x7f80_0000;
    values
        .chunks(1024)
        .all(|block| block.iter().fold(0u32, |acc, v| acc | u32::from(v.to_bits() & EXPONENT == EXPONENT)) == 0)
}

/// The skip reason of an image whose relevance holds NaN or ±inf at some layer.
pub const NON_FINITE_HEATMAP: &str =
    "its relevance is NaN or infinite at some layer (the model's output or a rule's denominator); not clustered";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::progress::Silent;

    #[test]
    fn relevance_batches_of_large_models_stay_within_the_memory_bound() {
        // ResNet-50 at 224²: 52.1 M floats of activations per image.
        assert_eq!(relevance_batch(64, 52_128_848), 5);
        // Small models keep the configured batch; unknown sizes too; never 0.
        assert_eq!(relevance_batch(64, 44_826), 64);
        assert_eq!(relevance_batch(64, 0), 64);
        assert_eq!(relevance_batch(0, 10), 1);
        assert_eq!(relevance_batch(8, u64::MAX), 1);
    }

    #[test]
    fn all_finite_finds_any_nan_or_infinity_anywhere() {
        let mut values = vec![1.5f32; 3000];
        values[17] = -0.0;
        values[2999] = f32::MAX;
        values[5] = f32::MIN_POSITIVE / 2.0; // subnormal
        assert!(all_finite(&values));
        assert!(all_finite(&[]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 1023, 1024, 2999] {
                let mut v = values.clone();
                v[at] = bad;
                assert!(!all_finite(&v), "{bad} at {at}");
            }
        }
    }

    /// A sink that fails on its `fail_at`-th batch, counting what it was given.
    struct Failing {
        fail_at: usize,
        appended: usize,
    }

    impl Sink for Failing {
        fn start(&mut self, _layers: &[LayerFile], _max_rows: usize) -> Result<()> {
            Ok(())
        }
        fn append(&mut self, _layers: &[ndarray::ArrayD<f32>]) -> Result<()> {
            self.appended += 1;
            if self.appended == self.fail_at {
                return Err(Error::Output { what: "heatmaps", path: "disk".into(), reason: "full".into() });
            }
            Ok(())
        }
    }

    fn images(root: &Path, n: usize) -> Vec<ImageRef> {
        let dir = root.join("tests/fixtures/fmnist/test/coat");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files
            .into_iter()
            .cycle()
            .take(n)
            .enumerate()
            .map(|(i, path)| ImageRef { path, image: format!("{i}.png"), label: None, targets: None })
            .collect()
    }

    /// The repository root, the Fashion-MNIST fixture model and its input.
    fn fixture_model() -> (PathBuf, Model, InputSpec) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let model = Model::load(root.join("models/fashion-mnist/fmnist_cnn.onnx")).unwrap();
        let config = crate::Config::load(Some(&root.join("models/fashion-mnist/hudd.toml")), &[]).unwrap();
        let spec = config.input_spec(model.info()).unwrap();
        (root, model, spec)
    }

    /// HUDD's heatmaps of `layers` from the predicted class, in f32, batches of 2.
    fn fixture_options(layers: Layers) -> HeatmapOptions {
        HeatmapOptions {
            preset: Preset::Hudd,
            layers,
            start: StartRule::Predicted,
            batch_size: 2,
            features: Features::Heatmaps,
            dtype: Dtype::F32,
        }
    }

    #[test]
    fn the_writing_threads_error_stops_the_run_and_is_reported() {
        let (root, model, spec) = fixture_model();
        let explainer = Explainer::new(&model, &spec.domain(), "logits", Preset::Hudd).unwrap();
        let options = fixture_options(Layers::Default);
        let images = images(&root, 40);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        // The writer fails on the 3rd of 20 batches: the error comes back, and the computing side
        // stops instead of computing the other 17 batches or waiting forever on a full channel.
        let mut sink = Failing { fail_at: 3, appended: 0 };
        let err = pool.install(|| run(&explainer, &spec, &images, &options, &mut sink, &Silent)).unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        assert_eq!(sink.appended, 3, "nothing is handed to a writer that has failed");
        // Without a failure every batch arrives, in order, once.
        let mut sink = Failing { fail_at: usize::MAX, appended: 0 };
        let index = pool.install(|| run(&explainer, &spec, &images, &options, &mut sink, &Silent)).unwrap();
        assert_eq!(sink.appended, 20);
        assert_eq!(index.images, images.iter().map(|i| i.image.clone()).collect::<Vec<_>>());
        // A computing error (an unreadable start: no labels) comes back as well.
        let labelled = HeatmapOptions { start: StartRule::Label, ..options };
        let mut sink = Failing { fail_at: usize::MAX, appended: 0 };
        let err = pool.install(|| run(&explainer, &spec, &images, &labelled, &mut sink, &Silent)).unwrap_err();
        assert!(matches!(err, Error::NoStart { .. }), "{err}");
    }

    /// A set of three layers kept in memory, with `rows` images.
    fn memory_set(rows: usize) -> HeatmapSet {
        let layer = |name: &str, d: usize| LayerFile {
            tensor: name.into(),
            file: format!("{name}.npy"),
            shape: vec![d],
            node: String::new(),
            op: String::new(),
            rule: None,
        };
        let index = HeatmapIndex {
            format: FORMAT.into(),
            format_version: 1,
            hudd_version: String::new(),
            model: "m.onnx".into(),
            preset: Preset::Hudd,
            start: "predicted".into(),
            output_layer: None,
            features: Features::Heatmaps,
            dtype: Dtype::F32,
            images: (0..rows).map(|i| format!("{i}.png")).collect(),
            skipped: Vec::new(),
            layers: vec![layer("a", 2), layer("b", 3), layer("c", 1)],
            dropped: Vec::new(),
        };
        let values = |d: usize, k: f32| Array2::from_shape_fn((rows, d), |(r, c)| k + (r * d + c) as f32);
        HeatmapSet { index, source: Source::Memory(vec![values(2, 0.0), values(3, 100.0), values(1, 200.0)]) }
    }

    #[test]
    fn writing_some_layers_keeps_their_rows_and_lists_the_others_as_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let set = memory_set(4);
        let out = dir.path().join("h");
        // Asked for in any order, written in the index's order.
        set.write_layers(&out, &[2, 0]).unwrap();
        let back = HeatmapSet::open(&out).unwrap();
        assert_eq!(back.layers().iter().map(|l| l.tensor.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(back.index.dropped, ["b"]);
        assert_eq!(back.images(), set.images());
        assert_eq!(*back.layer(0).unwrap(), *set.layer(0).unwrap());
        assert_eq!(*back.layer(1).unwrap(), *set.layer(2).unwrap());
        assert!(!out.join("b.npy").exists());
        // Nothing kept: an index of the images, every layer dropped.
        let none = dir.path().join("none");
        set.write_layers(&none, &[]).unwrap();
        let back = HeatmapSet::open(&none).unwrap();
        assert!(back.layers().is_empty());
        assert_eq!(back.index.dropped, ["a", "b", "c"]);
        assert_eq!(back.images().len(), 4);
        // A layer that is not there is refused before anything is written.
        let bad = dir.path().join("bad");
        let err = set.write_layers(&bad, &[3]).unwrap_err();
        assert!(err.to_string().contains("no layer 3"), "{err}");
        assert!(!bad.exists());
        // The whole set: nothing dropped, and the index says so by leaving `dropped` out.
        let whole = dir.path().join("whole");
        set.write(&whole).unwrap();
        assert!(!std::fs::read_to_string(whole.join("index.json")).unwrap().contains("dropped"));
    }

    #[test]
    fn pruning_a_folder_keeps_the_chosen_layers_files_and_removes_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let set = memory_set(3);
        set.write(dir.path()).unwrap();
        prune(dir.path(), &[1]).unwrap();
        let back = HeatmapSet::open(dir.path()).unwrap();
        assert_eq!(back.layers().len(), 1);
        assert_eq!(back.layers()[0].tensor, "b");
        assert_eq!(back.index.dropped, ["a", "c"]);
        assert_eq!(*back.layer(0).unwrap(), *set.layer(1).unwrap());
        assert!(!dir.path().join("a.npy").exists() && !dir.path().join("c.npy").exists());
        let err = prune(dir.path(), &[1]).unwrap_err();
        assert!(err.to_string().contains("no layer 1"), "{err}");
    }

    #[test]
    fn rewriting_a_folder_changes_its_type_and_keeps_the_chosen_layers() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("h");
        let set = memory_set(3);
        set.write(&out).unwrap();
        rewrite(&out, &[0, 2], Dtype::F16).unwrap();
        let back = HeatmapSet::open(&out).unwrap();
        assert_eq!(back.index.dtype, Dtype::F16);
        assert_eq!(back.layers().iter().map(|l| l.tensor.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(back.index.dropped, ["b"]);
        // Small integers are exact in half floats.
        assert_eq!(*back.layer(0).unwrap(), *set.layer(0).unwrap());
        assert_eq!(*back.layer(1).unwrap(), *set.layer(2).unwrap());
        assert!(!out.join("b.npy").exists());
        assert!(!dir.path().join("h.rewrite").exists());
    }

    #[test]
    fn the_bytes_per_image_are_those_of_the_computed_rows() {
        let (root, model, spec) = fixture_model();
        let explainer = Explainer::new(&model, &spec.domain(), "logits", Preset::Hudd).unwrap();
        for layers in [Layers::Default, Layers::All] {
            let options = fixture_options(layers.clone());
            let set = compute(&explainer, &spec, &images(&root, 2), &options, &Silent).unwrap();
            let values: usize = (0..set.layers().len()).map(|i| set.layer(i).unwrap().ncols()).sum();
            assert_eq!(bytes_per_image(&explainer, &layers).unwrap(), Some(4 * values as u64), "{layers:?}");
        }
    }
}
