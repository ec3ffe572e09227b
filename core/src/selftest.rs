//! The oracle checks hudd ships (`hudd selftest`, ISO 26262-8 §11 tool qualification): each stage's
//! result on committed fixtures against the reference an outside tool computed once.
//!
//! | check | oracle | fixture (paths from the repository root) |
//! |---|---|---|
//! | `evaluate` | onnxruntime | the Fashion-MNIST CNN's logits on the LRP fixture images |
//! | `relevance` | Zennit | `tests/fixtures/lrp/misc_ops/` (every op family of `misc_ops.onnx`), preset `hudd` |
//! | `clustering` | scipy + kneed | `tests/fixtures/cluster/`: distances, WICD curve, knee, partition, score of two layers; kneedle on every reference curve |
//! | `retraining` | PyTorch | `tests/fixtures/retrain/misc_ops/`: loss, gradients, two SGD steps with momentum and weight decay |
//!
//! [`FILES`] holds every file the checks read, embedded at build time, so that the check runs on
//! the machine where hudd is used, on the build that is used. Tolerances are the test
//! suite's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn};
use serde::Deserialize;

use crate::cluster::knee::{kneedle, Curve, Direction};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::relevance::{Explainer, Preset, Start};
use crate::retrain::{Loss, Mode, Net, SgdParams, Targets, Trainer};
use crate::Config;

/// The Fashion-MNIST images the evaluate and relevance checks read (the LRP fixture's).
const IMAGES: [&str; 4] =
    ["test/ankle-boot/00000.png", "test/bag/00081.png", "test/pullover/00001.png", "test/t-shirt/00121.png"];

/// Layers of the clustering fixture that the check clusters (the two smallest files).
const CLUSTER_LAYERS: [&str; 2] = ["_classifier_classifier.0_Gemm_output_0.npy", "logits.npy"];

macro_rules! embedded {
    ($($path:literal,)*) => {
        &[$(($path, include_bytes!(concat!("../../", $path)) as &[u8]),)*]
    };
}

/// Every file the checks read, relative to the repository root, with its bytes (embedded at build
/// time, so that the checks run on the machine and the build in use: see [`unpack`]).
pub const FILES: &[(&str, &[u8])] = embedded![
    "models/fashion-mnist/fmnist_cnn.onnx",
    "models/fashion-mnist/hudd.toml",
    "tests/fixtures/fmnist/reference/reference.json",
    "tests/fixtures/fmnist/reference/test_logits_onnxruntime.npy",
    "tests/fixtures/fmnist/test/ankle-boot/00000.png",
    "tests/fixtures/fmnist/test/bag/00081.png",
    "tests/fixtures/fmnist/test/pullover/00001.png",
    "tests/fixtures/fmnist/test/t-shirt/00121.png",
    "tests/fixtures/models/misc_ops.onnx",
    "tests/fixtures/lrp/misc_ops/index.json",
    "tests/fixtures/lrp/misc_ops/hudd/image.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_conv0_Conv_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_act0_LeakyRelu_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_pad_Pad_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_conv1_Conv_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_down_Conv_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_pool_MaxPool_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_up_ConvTranspose_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_act1_Sigmoid_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_avg_AveragePool_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_flatten_Flatten_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/logits.npy",
    "tests/fixtures/cluster/reference/reference.json",
    "tests/fixtures/cluster/reference/distances/_classifier_classifier.0_Gemm_output_0.npy",
    "tests/fixtures/cluster/reference/distances/logits.npy",
    "tests/fixtures/cluster/heatmaps/_classifier_classifier.0_Gemm_output_0.npy",
    "tests/fixtures/cluster/heatmaps/logits.npy",
    "tests/fixtures/retrain/misc_ops/index.json",
    "tests/fixtures/retrain/misc_ops/input.npy",
    "tests/fixtures/retrain/misc_ops/targets.npy",
    "tests/fixtures/retrain/misc_ops/outputs.npy",
    "tests/fixtures/retrain/misc_ops/grad/0.npy",
    "tests/fixtures/retrain/misc_ops/grad/1.npy",
    "tests/fixtures/retrain/misc_ops/grad/2.npy",
    "tests/fixtures/retrain/misc_ops/grad/3.npy",
    "tests/fixtures/retrain/misc_ops/grad/4.npy",
    "tests/fixtures/retrain/misc_ops/grad/5.npy",
    "tests/fixtures/retrain/misc_ops/grad/6.npy",
    "tests/fixtures/retrain/misc_ops/grad/7.npy",
    "tests/fixtures/retrain/misc_ops/grad/8.npy",
    "tests/fixtures/retrain/misc_ops/grad/9.npy",
    "tests/fixtures/retrain/misc_ops/after/0.npy",
    "tests/fixtures/retrain/misc_ops/after/1.npy",
    "tests/fixtures/retrain/misc_ops/after/2.npy",
    "tests/fixtures/retrain/misc_ops/after/3.npy",
    "tests/fixtures/retrain/misc_ops/after/4.npy",
    "tests/fixtures/retrain/misc_ops/after/5.npy",
    "tests/fixtures/retrain/misc_ops/after/6.npy",
    "tests/fixtures/retrain/misc_ops/after/7.npy",
    "tests/fixtures/retrain/misc_ops/after/8.npy",
    "tests/fixtures/retrain/misc_ops/after/9.npy",
];

/// The outcome of one check (the report's record of it).
pub use hudd_report::SelftestCheck as Check;

/// Runs every check on the fixture files under `root` (laid out as [`FILES`] names them).
/// A check that cannot run (a file missing or unreadable) is a failed check, not an error.
pub fn run(root: &Path) -> Vec<Check> {
    let checks: [(&str, &str, &str, CheckFn); 4] = [
        ("evaluate", "onnxruntime", "logits of the Fashion-MNIST CNN on 4 test images", evaluate),
        ("relevance", "Zennit", "LRP relevance (preset hudd) at every layer of misc_ops.onnx, 4 images", relevance),
        (
            "clustering",
            "scipy + kneed",
            "distances, WICD curve, gradient, knee, partition and score of 2 layers; kneedle on every reference curve",
            clustering,
        ),
        (
            "retraining",
            "PyTorch",
            "loss, gradient of every weight and 2 SGD steps (momentum 0.9, weight decay 5e-4) on misc_ops.onnx",
            retraining,
        ),
    ];
    checks
        .iter()
        .map(|(check, oracle, compared, f)| {
            let (values, worst, passed, detail) = match f(root) {
                Ok(t) => (t.values, t.worst.min(f64::MAX), t.failure.is_none(), t.failure.unwrap_or(t.worst_at)),
                // JSON has no infinity: the largest number says "no measure".
                Err(e) => (0, f64::MAX, false, format!("could not run: {e}")),
            };
            Check {
                check: check.to_string(),
                oracle: oracle.to_string(),
                compared: compared.to_string(),
                values,
                worst,
                passed,
                detail,
            }
        })
        .collect()
}

/// One check: the fixture root → its deviations.
type CheckFn = fn(&Path) -> Result<Tally>;

/// Deviations seen by one check.
#[derive(Default)]
struct Tally {
    values: usize,
    worst: f64,
    worst_at: String,
    failure: Option<String>,
}

impl Tally {
    /// Records a deviation `err` against `tolerance` for `what`.
    fn add(&mut self, err: f64, tolerance: f64, what: impl FnOnce() -> String) {
        self.values += 1;
        let ratio = if err.is_nan() { f64::INFINITY } else { err / tolerance };
        let first_failure = ratio > 1.0 && self.failure.is_none();
        if !first_failure && ratio < self.worst && self.values > 1 {
            return;
        }
        let text = format!("{}: {err:.2e} (tolerance {tolerance:.0e})", what());
        if first_failure {
            self.failure = Some(text.clone());
        }
        if ratio >= self.worst || self.values == 1 {
            self.worst = ratio;
            self.worst_at = text;
        }
    }

    /// Records a decision that must equal the reference's.
    fn same<T: PartialEq + std::fmt::Debug>(&mut self, got: T, want: T, what: &str) {
        let err = if got == want { 0.0 } else { f64::INFINITY };
        self.add(err, 1.0, || format!("{what}: {got:?}, reference {want:?}"));
    }
}

fn array(path: &Path) -> Result<ArrayD<f32>> {
    let (shape, values) = crate::npy::read_f32(path)?;
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| Error::Output {
        what: "array",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = crate::fsio::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Output {
        what: "reference",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn fixture_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Output { what: "reference", path: path.to_path_buf(), reason: reason.into() }
}

/// The fixture images as one batch for `model` under the Fashion-MNIST configuration.
fn images(root: &Path, model: &Model) -> Result<ArrayD<f32>> {
    let config = Config::load(Some(&root.join("models/fashion-mnist/hudd.toml")), &[])?;
    let spec = config.input_spec(model.info())?;
    let data = root.join("tests/fixtures/fmnist");
    let tensors = IMAGES
        .iter()
        .map(|p| crate::input::load(&data.join(p), &spec).map_err(|reason| fixture_error(&data.join(p), reason)))
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::input::stack(&tensors, &spec).into_dyn())
}

/// `|a − b| / max(1, |b|)`.
fn rel(a: f32, b: f32) -> f64 {
    f64::from((a - b).abs() / b.abs().max(1.0))
}

fn evaluate(root: &Path) -> Result<Tally> {
    let model = Model::load(root.join("models/fashion-mnist/fmnist_cnn.onnx"))?;
    let logits = model.run(images(root, &model)?.view())?.swap_remove(0);
    #[derive(Deserialize)]
    struct Split {
        images: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Reference {
        splits: HashMap<String, Split>,
    }
    let reference_path = root.join("tests/fixtures/fmnist/reference/reference.json");
    let reference: Reference = json(&reference_path)?;
    let test = reference.splits.get("test").ok_or_else(|| fixture_error(&reference_path, "no test split"))?;
    let want = array(&root.join("tests/fixtures/fmnist/reference/test_logits_onnxruntime.npy"))?;
    let mut t = Tally::default();
    for (i, image) in IMAGES.iter().enumerate() {
        let row = test
            .images
            .iter()
            .position(|p| p == image)
            .ok_or_else(|| fixture_error(&reference_path, format!("{image} is not in the reference")))?;
        for c in 0..want.shape()[1] {
            let (got, exp) = (logits[[i, c]], want[[row, c]]);
            t.add(rel(got, exp), 1e-4, || format!("{image}, logit {c}: {got} vs {exp}"));
        }
    }
    Ok(t)
}

fn relevance(root: &Path) -> Result<Tally> {
    let dir = root.join("tests/fixtures/lrp/misc_ops");
    #[derive(Deserialize)]
    struct Index {
        images: Vec<String>,
        presets: HashMap<String, std::collections::BTreeMap<String, String>>,
    }
    let index: Index = json(&dir.join("index.json"))?;
    if index.images != IMAGES {
        return Err(fixture_error(&dir.join("index.json"), "the reference was made on other images"));
    }
    let files = index.presets.get("hudd").ok_or_else(|| fixture_error(&dir.join("index.json"), "no hudd preset"))?;
    let model = Model::load(root.join("tests/fixtures/models/misc_ops.onnx"))?;
    let config = Config::load(Some(&root.join("models/fashion-mnist/hudd.toml")), &[])?;
    let spec = config.input_spec(model.info())?;
    let output = model.info().outputs[0].name.clone();
    let explainer = Explainer::new(&model, &spec.domain(), &output, Preset::Hudd)?;
    let rel_maps = explainer.explain(images(root, &model)?.view(), &Start::Predicted)?;
    let mut t = Tally::default();
    for (tensor, file) in files {
        let want = array(&dir.join(file))?;
        let got =
            rel_maps.get(tensor).ok_or_else(|| fixture_error(&dir.join(file), format!("no relevance at {tensor}")))?;
        t.same(got.shape(), want.shape(), &format!("shape of `{tensor}`"));
        if got.shape() != want.shape() {
            continue;
        }
        // Per image: the relative L2 error of the whole map.
        for (i, image) in IMAGES.iter().enumerate().take(want.shape()[0]) {
            let (g, w) = (got.index_axis(ndarray::Axis(0), i), want.index_axis(ndarray::Axis(0), i));
            let num: f64 = g.iter().zip(w.iter()).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>().sqrt();
            let den: f64 = w.iter().map(|b| f64::from(*b).powi(2)).sum::<f64>().sqrt().max(1e-30);
            t.add(num / den, 1e-4, || format!("`{tensor}`, image {image}: relative L2 error"));
        }
    }
    Ok(t)
}

fn clustering(root: &Path) -> Result<Tally> {
    let dir = root.join("tests/fixtures/cluster");
    #[derive(Deserialize)]
    struct Layer {
        file: String,
        ks: Vec<usize>,
        wicd: Vec<f64>,
        gradient: Vec<f64>,
        knee: Option<usize>,
        partition: Vec<Vec<usize>>,
        score: f64,
    }
    #[derive(Deserialize)]
    struct Kneed {
        x: Vec<f64>,
        y: Vec<f64>,
        curve: String,
        direction: String,
        knee: Option<f64>,
    }
    #[derive(Deserialize)]
    struct Reference {
        layers: Vec<Layer>,
        kneed: Vec<Kneed>,
    }
    let reference: Reference = json(&dir.join("reference/reference.json"))?;
    let mut t = Tally::default();
    for file in CLUSTER_LAYERS {
        let layer = reference
            .layers
            .iter()
            .find(|l| l.file == file)
            .ok_or_else(|| fixture_error(&dir.join("reference/reference.json"), format!("no layer {file}")))?;
        let path = dir.join("heatmaps").join(file);
        let heatmaps = array(&path)?;
        let (n, width): (usize, usize) = (heatmaps.shape()[0], heatmaps.shape()[1..].iter().product());
        let flat = heatmaps.into_shape_with_order((n, width)).map_err(|e| fixture_error(&path, e.to_string()))?;
        let c = crate::cluster::cluster_layer(flat.view(), &crate::cluster::Options::default());
        let want_d = array(&dir.join("reference/distances").join(file))?;
        let raw: Array2<f64> = crate::distance::pairwise(flat.view(), crate::distance::Normalize::None);
        let scale = want_d.iter().fold(0f32, |m, v| m.max(v.abs()));
        for ((i, j), got) in raw.indexed_iter() {
            let want = want_d[[i, j]];
            let tol = 1e-4 * f64::from(want.abs().max(1e-3 * scale));
            t.add((got - f64::from(want)).abs(), tol.max(f64::MIN_POSITIVE), || {
                format!("{file}: distance ({i}, {j}) {got} vs scipy {want}")
            });
        }
        t.same(&c.ks, &layer.ks, &format!("{file}: k values"));
        for ((k, got), want) in c.ks.iter().zip(&c.wicd).zip(&layer.wicd) {
            t.add((got - want).abs(), 1e-6 * want.abs().max(1e-12), || format!("{file}: WICD at k = {k}"));
        }
        for ((k, got), want) in c.ks.iter().zip(&c.gradient).zip(&layer.gradient) {
            t.add((got - want).abs(), 1e-8, || format!("{file}: gradient at k = {k}"));
        }
        t.same(Some(c.k), layer.knee, &format!("{file}: knee"));
        let mut partition: Vec<Vec<usize>> = c.members();
        partition.sort_by_key(|g| (std::cmp::Reverse(g.len()), g.first().copied()));
        t.same(&partition, &layer.partition, &format!("{file}: partition"));
        t.add((c.score - layer.score).abs(), 1e-6 * layer.score.abs().max(1e-12), || format!("{file}: score"));
    }
    for (i, case) in reference.kneed.iter().enumerate() {
        let curve = if case.curve == "concave" { Curve::Concave } else { Curve::Convex };
        let direction = if case.direction == "increasing" { Direction::Increasing } else { Direction::Decreasing };
        t.same(kneedle(&case.x, &case.y, 1.0, curve, direction), case.knee, &format!("kneed curve {i}: knee"));
    }
    Ok(t)
}

/// `tests/fixtures/retrain/<model>/index.json` (made by `models/scripts/make_retrain_reference.py`).
#[derive(Deserialize)]
pub(crate) struct RetrainIndex {
    /// The model file, from the repository root.
    pub(crate) model: String,
    pub(crate) loss: Loss,
    pub(crate) loss_value: f32,
    pub(crate) sgd: SgdReference,
    pub(crate) weights: Vec<WeightFile>,
}

/// The optimiser steps of a retraining reference.
#[derive(Deserialize)]
pub(crate) struct SgdReference {
    pub(crate) lr: f64,
    pub(crate) momentum: f64,
    pub(crate) weight_decay: f64,
    pub(crate) steps: usize,
}

/// A weight of a retraining reference and its file (in `grad/` and `after/`).
#[derive(Deserialize)]
pub(crate) struct WeightFile {
    pub(crate) name: String,
    pub(crate) file: String,
}

fn retraining(root: &Path) -> Result<Tally> {
    let dir = root.join("tests/fixtures/retrain/misc_ops");
    let index: RetrainIndex = json(&dir.join("index.json"))?;
    let model = Model::load(root.join(&index.model))?;
    let input = array(&dir.join("input.npy"))?;
    let t_raw = array(&dir.join("targets.npy"))?;
    let targets = match index.loss {
        Loss::CrossEntropy => Targets::Classes(t_raw.iter().map(|&c| c as u32).collect()),
        Loss::Mse => Targets::Values(t_raw),
    };
    let mut t = Tally::default();
    let net = Net::new(&model)?;
    let out = net.forward(input.view(), Mode::Eval, 0)?;
    let want_out = array(&dir.join("outputs.npy"))?;
    for (got, want) in out[0].iter().zip(want_out.iter()) {
        t.add(rel(*got, *want), 1e-5, || format!("forward output {got} vs {want}"));
    }
    let (loss, grads) = net.gradients(input.view(), 0, &targets, index.loss, Mode::Eval, 0)?;
    t.add(rel(loss, index.loss_value), 1e-5, || format!("loss {loss} vs {}", index.loss_value));
    for w in &index.weights {
        let want = array(&dir.join("grad").join(&w.file))?;
        let got =
            grads.get(&w.name).ok_or_else(|| fixture_error(&dir.join("index.json"), format!("no `{}`", w.name)))?;
        let scale = f64::from(want.iter().fold(0f32, |m, v| m.max(v.abs())));
        let err = got.iter().zip(want.iter()).fold(0f64, |m, (a, b)| m.max(f64::from((a - b).abs())));
        t.add(err, 1e-4 * scale + 1e-7, || format!("gradient of `{}` (largest {scale:.2e})", w.name));
    }
    let params = SgdParams { lr: index.sgd.lr, momentum: index.sgd.momentum, weight_decay: index.sgd.weight_decay };
    let mut trainer = Trainer::new(net, params, 0, index.loss);
    for _ in 0..index.sgd.steps {
        trainer.step(input.view(), &targets, Mode::Eval, 0)?;
    }
    let after = trainer.net().weights()?;
    for w in &index.weights {
        let want = array(&dir.join("after").join(&w.file))?;
        let got =
            after.get(&w.name).ok_or_else(|| fixture_error(&dir.join("index.json"), format!("no `{}`", w.name)))?;
        let err = got.iter().zip(want.iter()).fold(0f64, |m, (a, b)| m.max(rel(*a, *b)));
        t.add(err, 1e-5, || format!("`{}` after {} SGD steps", w.name, index.sgd.steps));
    }
    Ok(t)
}

/// The build that is running: version, commit, profile, target, compiler (recorded by build.rs).
pub fn build() -> hudd_report::ToolConfidence {
    hudd_report::ToolConfidence {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: env!("HUDD_BUILD_COMMIT").into(),
        profile: env!("HUDD_BUILD_PROFILE").into(),
        target: env!("HUDD_BUILD_TARGET").into(),
        rustc: env!("HUDD_BUILD_RUSTC").into(),
        ..Default::default()
    }
}

/// The tool-qualification record of a report on `run`: [`build`], the `checks`, the rule of every
/// heatmap layer of the run, and the known limitations.
pub fn confidence(checks: &[Check], run: &crate::run::RunDir) -> hudd_report::ToolConfidence {
    let rules = crate::heatmaps::HeatmapIndex::read(&run.heatmaps())
        .map(|index| {
            index
                .layers
                .iter()
                .map(|l| hudd_report::RuleUse {
                    layer: l.tensor.clone(),
                    op: l.op.clone(),
                    rule: l.rule.clone().unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    hudd_report::ToolConfidence { selftest: checks.to_vec(), rules, limitations: limitations(), ..build() }
}

/// What hudd does not do, or does only approximately (each a sentence for the report).
pub fn limitations() -> Vec<String> {
    vec![
        format!(
            "Relevance (LRP) explains only these ONNX ops: {}; a model with any other op on the path from the input \
             to the explained output is refused before any stage runs (recurrent ops such as LSTM, attention, \
             Resize, Gather on activations are not explained).",
            crate::relevance::program::supported_ops().join(", ")
        ),
        "Heatmaps are LRP relevance, checked against Zennit on the shipped fixture models; their meaning for other \
         architectures rests on the rules, not on a check."
            .into(),
        "HUDD's clustering computes the exact N × N distance matrix of the error images per layer: memory and time \
         grow with N²."
            .into(),
        "Images are decoded to 8-bit grayscale or RGB; 16-bit and alpha channels are reduced, images over 64 Mpx are \
         skipped."
            .into(),
        "Retraining fine-tunes every float weight with SGD; BatchNormalization statistics stay frozen, there is no \
         augmentation, and the checked optimiser is PyTorch's SGD with momentum and weight decay."
            .into(),
        "Metadata explanations describe a cluster by its simulator or manifest columns; a cluster can have a cause no \
         column records."
            .into(),
    ]
}

/// Writes `files` (path, bytes; [`FILES`]) under a new folder in the system's temporary folder and
/// returns it.
pub fn unpack(files: &[(&str, &[u8])]) -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("hudd-selftest-{}", std::process::id()));
    for (path, bytes) in files {
        let full = base.join(path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
        }
        std::fs::write(&full, bytes).map_err(|e| Error::io("cannot write", &full, e))?;
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn every_check_passes_on_the_committed_fixtures() {
        for c in run(&repo()) {
            assert!(c.passed && c.values > 0 && c.worst <= 1.0, "{c:?}");
        }
    }

    #[test]
    fn the_embedded_checks_pass_and_the_file_list_is_complete() {
        let dir = unpack(FILES).unwrap();
        let checks = run(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(checks.iter().all(|c| c.passed), "{checks:?}");
        let grads = FILES.iter().filter(|(f, _)| f.contains("retrain/misc_ops/grad/")).count();
        let index: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("tests/fixtures/retrain/misc_ops/index.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(grads, index["weights"].as_array().unwrap().len());
    }
}
