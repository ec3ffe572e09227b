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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array3;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::InputSpec;
use crate::dataset::Skipped;
use crate::error::{Error, Result};
use crate::fsio::write_atomic;
use crate::model::{Model, Op};
use crate::npy::NpyWriter;
use crate::progress::Progress;
use crate::relevance::{Explainer, Preset, Start};

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

/// `index.json`: written by [`compute`], read by [`HeatmapIndex::read`].
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
    pub preset: String,
    /// The start rule.
    #[serde(default)]
    pub start: String,
    /// The explained output tensor (where relevance starts; its heatmap is the start vector, so
    /// it is never the best layer), when it is among the layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_layer: Option<String>,
    /// Images in row order.
    pub images: Vec<String>,
    /// Images that could not be read.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// One entry per layer file.
    pub layers: Vec<LayerFile>,
}

/// `index.json`'s format name.
pub const FORMAT: &str = "hudd-heatmaps";

impl HeatmapIndex {
    /// Reads `dir/index.json`, checking its format.
    pub fn read(dir: &Path) -> Result<HeatmapIndex> {
        let path = dir.join("index.json");
        let bad = |reason: String| Error::Output { what: "heatmaps folder", path: path.clone(), reason };
        let text = std::fs::read_to_string(&path).map_err(|e| {
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
            | Op::Flatten { .. }
    )
}

/// Computes heatmaps of `images` and writes them to `out` (see the module docs). Images that fail to
/// decode are recorded as skipped. Memory stays bounded: batches are computed in parallel a few at a
/// time and appended to each layer's file in order.
pub fn compute(
    model: &Model,
    spec: &InputSpec,
    output: &str,
    images: &[ImageRef],
    options: &HeatmapOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<HeatmapIndex> {
    let explainer = Explainer::new(model, spec, output, options.preset)?;
    compute_with(&explainer, spec, images, options, out, progress)
}

/// [`compute`] with an explainer prepared beforehand (`options.preset` must be its preset), so that
/// a model the heatmaps stage cannot explain is refused before any earlier stage runs.
pub fn compute_with(
    explainer: &Explainer<'_>,
    spec: &InputSpec,
    images: &[ImageRef],
    options: &HeatmapOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<HeatmapIndex> {
    let model = explainer.model();
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
    let chosen: Vec<String> = match &options.layers {
        Layers::All => order.clone(),
        Layers::Default => order
            .iter()
            .filter(|t| **t == program.input || produced.get(*t).is_some_and(|(step, _)| in_default_layers(&step.op)))
            .cloned()
            .collect(),
        Layers::Names(names) => {
            for n in names {
                if !order.contains(n) {
                    return Err(Error::Config(format!(
                        "layer `{n}` is not an activation of the model (available: {}); `hudd heatmaps --layers all` writes them all",
                        order.join(", ")
                    )));
                }
            }
            names.clone()
        }
    };
    // Unreadable images are found first, so that every file's row count is known before writing.
    let checks: Vec<Option<Skipped>> = images
        .par_iter()
        .map(|im| crate::input::decode(&im.path).err().map(|reason| Skipped { image: im.image.clone(), reason }))
        .collect();
    let skipped: Vec<Skipped> = checks.iter().flatten().cloned().collect();
    let good: Vec<&ImageRef> = images.iter().zip(&checks).filter(|(_, c)| c.is_none()).map(|(i, _)| i).collect();
    if good.is_empty() {
        return Err(Error::Config(format!(
            "none of the {} images could be read (first: {})",
            images.len(),
            skipped.first().map(|s| format!("{}: {}", s.image, s.reason)).unwrap_or_default()
        )));
    }
    // index.json marks a complete folder: an old one goes before any file is rewritten.
    let old_index = out.join("index.json");
    if old_index.exists() {
        std::fs::remove_file(&old_index).map_err(|e| Error::io("cannot remove old index", &old_index, e))?;
    }
    let batch_size = options.batch_size.max(1);
    let threads = rayon::current_num_threads().max(1);
    let mut used_files: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut writers: Option<Vec<NpyWriter>> = None;
    let mut layers: Vec<LayerFile> = Vec::new();
    let mut rows: Vec<String> = Vec::new();
    progress.start("heatmaps", good.len() as u64);
    for wave in good.chunks(batch_size * threads) {
        let results: Vec<Result<Batch>> = wave
            .par_chunks(batch_size)
            .map(|chunk| {
                let r = explain_batch(explainer, spec, chunk, &options.start, &chosen);
                progress.advance(chunk.len() as u64);
                r
            })
            .collect();
        for r in results {
            let batch = r?;
            if writers.is_none() {
                let mut ws = Vec::new();
                for (t, arr) in chosen.iter().zip(&batch.layers) {
                    let shape: Vec<usize> = arr.shape()[1..].to_vec();
                    let stem = sanitize(t);
                    let mut file = format!("{stem}.npy");
                    let mut k = 2;
                    while !used_files.insert(file.clone()) {
                        file = format!("{stem}-{k}.npy");
                        k += 1;
                    }
                    let (node, op, rule) = produced
                        .get(t)
                        .map(|(s, rule)| (s.node.clone(), s.label.clone(), rule.clone()))
                        .unwrap_or_default();
                    layers.push(LayerFile {
                        tensor: t.clone(),
                        file: file.clone(),
                        shape: shape.clone(),
                        node,
                        op,
                        rule,
                    });
                    let mut full = vec![good.len()];
                    full.extend(&shape);
                    ws.push((out.join(&file), full));
                }
                writers = Some(ws.into_iter().map(|(p, s)| NpyWriter::create(&p, &s)).collect::<Result<_>>()?);
            }
            if let Some(ws) = writers.as_mut() {
                for (w, arr) in ws.iter_mut().zip(&batch.layers) {
                    // A view in standard layout borrows the data when it already is (no copy).
                    let standard = arr.as_standard_layout();
                    match standard.as_slice() {
                        Some(values) => w.append(values)?,
                        None => w.append(&standard.iter().copied().collect::<Vec<_>>())?,
                    }
                }
            }
            rows.extend(batch.images);
        }
    }
    progress.finish();
    for w in writers.unwrap_or_default() {
        w.finish()?;
    }
    let index = HeatmapIndex {
        format: FORMAT.into(),
        format_version: 1,
        hudd_version: crate::VERSION.into(),
        model: model.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        preset: options.preset.name().to_string(),
        start: match options.start {
            StartRule::Predicted => "predicted".into(),
            StartRule::Label => "label".into(),
            StartRule::Class(c) => format!("class={c}"),
            StartRule::AllOutputs => "all".into(),
            StartRule::Worst { keypoints: false } => "worst".into(),
            StartRule::Worst { keypoints: true } => "worst-keypoint".into(),
        },
        output_layer: layers.iter().any(|l| l.tensor == program.start).then(|| program.start.clone()),
        images: rows,
        skipped,
        layers,
    };
    let mut json = serde_json::to_vec_pretty(&index).map_err(|e| Error::Output {
        what: "heatmap index",
        path: out.join("index.json"),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    write_atomic(&out.join("index.json"), &json)?;
    Ok(index)
}

struct Batch {
    images: Vec<String>,
    layers: Vec<ndarray::ArrayD<f32>>,
}

fn explain_batch(
    explainer: &Explainer<'_>,
    spec: &InputSpec,
    used: &[&ImageRef],
    start: &StartRule,
    chosen: &[String],
) -> Result<Batch> {
    let tensors: Vec<Array3<f32>> = used
        .iter()
        .map(|im| {
            crate::input::load(&im.path, spec).map_err(|reason| Error::Output {
                what: "heatmaps",
                path: im.path.clone(),
                reason: format!("the image changed while being read: {reason}"),
            })
        })
        .collect::<Result<_>>()?;
    let start = match start {
        StartRule::Predicted => Start::Predicted,
        StartRule::Class(c) => Start::Classes(vec![*c; used.len()]),
        StartRule::AllOutputs => Start::AllOutputs,
        StartRule::Worst { keypoints } => Start::Worst {
            targets: used
                .iter()
                .map(|im| im.targets.clone().ok_or_else(|| Error::Config(format!("no targets for `{}`", im.image))))
                .collect::<Result<_>>()?,
            keypoints: *keypoints,
        },
        StartRule::Label => Start::Classes(
            used.iter()
                .map(|im| {
                    im.label.ok_or_else(|| Error::Config(format!("no label for `{}`; use --start predicted", im.image)))
                })
                .collect::<Result<_>>()?,
        ),
    };
    let batch = crate::input::stack(&tensors, spec);
    let mut rel = explainer.explain(batch.view(), &start)?;
    let layers = chosen
        .iter()
        .map(|t| {
            rel.remove(t).ok_or_else(|| {
                Error::Config(format!("no relevance reached layer `{t}`; it is not on the path to the output"))
            })
        })
        .collect::<Result<_>>()?;
    Ok(Batch { images: used.iter().map(|i| i.image.clone()).collect(), layers })
}
