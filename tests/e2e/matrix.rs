//! The coverage matrix: every CNN family engineers ship (torchvision's constructors and blocks at
//! reduced widths, seeded; models/scripts/make_torchvision_families.py), as PyTorch's default and
//! TorchScript exporters write them, and Keras' applications as tf2onnx converts them
//! (models/scripts/make_keras_families.py, NHWC), through every stage a user runs, and their
//! heatmaps against Zennit (for the Keras models through an ONNX twin:
//! models/scripts/make_onnx_references.py). `tests/fixtures/families/index.json` lists the fixtures; the README's matrix is this.

use std::path::{Path, PathBuf};

use hudd_core::model::Model;
use hudd_core::relevance::{Explainer, Preset, Start};
use hudd_core::Config;

use crate::common::{arg, fixtures, fmnist_config, fmnist_data, hudd, read_npy, stderr, stdout};

struct Fixture {
    name: String,
    size: usize,
    /// `nchw` (PyTorch) or `nhwc` (tf2onnx).
    layout: String,
    model: PathBuf,
}

fn families() -> PathBuf {
    fixtures().join("families")
}

fn matrix() -> Vec<Fixture> {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(families().join("index.json")).unwrap()).unwrap();
    index["fixtures"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, f)| Fixture {
            name: name.clone(),
            size: f["size"].as_u64().unwrap() as usize,
            layout: f["layout"].as_str().unwrap_or("nchw").to_string(),
            model: families().join(format!("{name}.onnx")),
        })
        .collect()
}

/// The configuration overrides for a fixture: three channels at its size and layout, pixels / 255.
fn overrides(f: &Fixture) -> Vec<String> {
    let size = f.size;
    vec![
        format!("input.size=[{size}, {size}]"),
        format!("input.layout=\"{}\"", f.layout),
        "input.channels=3".into(),
        "input.mean=[0.0, 0.0, 0.0]".into(),
        "input.std=[1.0, 1.0, 1.0]".into(),
    ]
}

fn l2_rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

#[test]
fn the_matrix_holds_every_family_for_both_exporters() {
    let names: Vec<String> = matrix().into_iter().map(|f| f.name).collect();
    for family in [
        "resnet",
        "resnext",
        "wide_resnet",
        "vgg",
        "alexnet",
        "squeezenet",
        "densenet",
        "googlenet",
        "inception_v3",
        "mobilenet_v2",
        "mobilenet_v3",
        "mnasnet",
        "efficientnet",
        "efficientnet_v2",
        "regnet_x",
        "regnet_y",
        "shufflenet_v2",
    ] {
        for exporter in ["dynamo", "ts"] {
            let name = format!("{family}_{exporter}");
            assert!(names.contains(&name), "{name} is missing from the matrix");
        }
    }
    assert!(names.contains(&"vgg_small_dynamo".to_string()), "adaptive pooling that upsamples");
    // Exact GELU: one `Gelu` op (default exporter) and written out with `Erf` (TorchScript).
    // Bilinear resampling both ways (Resize in linear mode).
    // Opset 9's Upsample (the TorchScript exporter at opset_version=9).
    for name in ["gelu_dynamo", "gelu_ts", "bilinear_dynamo", "bilinear_ts", "upsample_ts9"] {
        assert!(names.contains(&name.to_string()), "{name} is missing from the matrix");
    }
    // Keras' applications as tf2onnx converts them (NHWC; models/scripts/make_keras_families.py).
    for family in
        ["resnet", "densenet", "mobilenet_v2", "mobilenet_v3", "efficientnet", "efficientnet_v2", "space_to_depth"]
    {
        let name = format!("keras_{family}_tf2onnx");
        assert!(names.contains(&name), "{name} is missing from the matrix");
    }
    for f in matrix() {
        let len = std::fs::metadata(&f.model).unwrap().len();
        assert!(len < 2 << 20, "{}: {len} bytes; fixtures stay under 2 MB", f.name);
    }
}

/// hudd's relevance at every convolution and dense layer and at the input equals Zennit's (the
/// family's layers canonized generically: merged batch norms, Norm on sums and means, signal-only
/// gates), presets `epsilon-plus` and `hudd`, relative L2 error ≤ 1e-4 per image.
#[test]
fn every_family_matches_zennit_for_both_exporters() {
    let mut failures = Vec::new();
    for f in matrix() {
        let dir = families().join("lrp").join(&f.name);
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
        let model = Model::load(&f.model).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let spec = Config::load(Some(&fmnist_config()), &overrides(&f)).unwrap().input_spec(model.info()).unwrap();
        let (shape, values) = read_npy(&dir.join(index["input"].as_str().unwrap()));
        let batch = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), values).unwrap();
        let presets = index["presets"].as_object().unwrap();
        assert!(presets.contains_key("hudd") && presets.contains_key("epsilon-plus"), "{}", f.name);
        for (preset_name, files) in presets {
            let what = format!("{}/{preset_name}", f.name);
            let preset = Preset::from_name(preset_name).unwrap();
            let output = model.info().outputs[0].name.clone();
            let explainer =
                Explainer::new(&model, &spec.domain(), &output, preset).unwrap_or_else(|e| panic!("{what}: {e}"));
            let rel = explainer.explain(batch.view(), &Start::Predicted).unwrap_or_else(|e| panic!("{what}: {e}"));
            let files = files.as_object().unwrap();
            assert!(files.len() >= 5, "{what}: the reference covers the layers ({})", files.len());
            for (tensor, file) in files {
                let (shape, want) = read_npy(&dir.join(file.as_str().unwrap()));
                let got = if tensor == "image" { rel.get(&model.info().inputs[0].name) } else { rel.get(tensor) };
                let got = got.unwrap_or_else(|| panic!("{what}: no relevance for `{tensor}`"));
                assert_eq!(got.shape(), shape.as_slice(), "{what}: {tensor}");
                let got: Vec<f32> = got.iter().copied().collect();
                let per = want.len() / shape[0];
                for i in 0..shape[0] {
                    let err = l2_rel_err(&got[i * per..(i + 1) * per], &want[i * per..(i + 1) * per]);
                    if err > 1e-4 {
                        failures.push(format!("{what}: tensor `{tensor}`, image {i}: relative L2 error {err:.2e}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} tensors differ from Zennit:\n{}", failures.len(), failures.join("\n"));
}

/// A small copy of the Fashion-MNIST fixture (train 20, test 40, improvement 20 images).
fn small_dataset(at: &Path) {
    for (split, per_class) in [("train", 2), ("test", 4), ("improvement", 2)] {
        let src = fmnist_data().join(split);
        let mut classes: Vec<_> = std::fs::read_dir(&src).unwrap().map(|e| e.unwrap().path()).collect();
        classes.sort();
        for class in classes.iter().filter(|c| c.is_dir()) {
            let mut files: Vec<_> = std::fs::read_dir(class).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            let dst = at.join(split).join(class.file_name().unwrap());
            std::fs::create_dir_all(&dst).unwrap();
            for f in files.iter().take(per_class) {
                std::fs::copy(f, dst.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
}

fn set_args(f: &Fixture) -> Vec<String> {
    overrides(f).into_iter().flat_map(|o| ["--set".to_string(), o]).collect()
}

/// inspect → analyze → assign → retrain (one epoch) → the written model evaluated from a folder
/// of its own, for every fixture.
#[test]
fn every_family_runs_every_stage_for_both_exporters() {
    let data = tempfile::tempdir().unwrap();
    small_dataset(data.path());
    let (config, data) = (arg(&fmnist_config()), arg(data.path()));
    for f in matrix() {
        let name = &f.name;
        let work = tempfile::tempdir().unwrap();
        let model = work.path().join(format!("{name}.onnx"));
        std::fs::copy(&f.model, &model).unwrap();
        let data_file = families().join(format!("{name}.onnx.data"));
        if data_file.exists() {
            std::fs::copy(&data_file, work.path().join(format!("{name}.onnx.data"))).unwrap();
        }
        let m = arg(&model);
        let set = set_args(&f);
        let with_set =
            |args: &[&str]| -> Vec<String> { args.iter().map(|s| s.to_string()).chain(set.iter().cloned()).collect() };
        let o = hudd(&["inspect", &m]);
        assert!(o.status.success(), "{name}: inspect: {}", stderr(&o));
        let run = work.path().join("run");
        let o = hudd(&with_set(&["analyze", "-m", &m, "-c", &config, "-d", &data, "-o", &arg(&run), "-q"]));
        assert!(o.status.success(), "{name}: analyze: {}", stderr(&o));
        let clusters: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("clusters.json")).unwrap()).unwrap();
        assert!(clusters["layers"].as_array().unwrap().len() >= 2, "{name}: several layers clustered");
        let o = hudd(&["assign", "--run", &arg(&run), "-q"]);
        assert!(o.status.success(), "{name}: assign: {}", stderr(&o));
        let out = work.path().join("m2.onnx");
        let o = hudd(&["retrain", "--run", &arg(&run), "--labels", "auto", "-o", &arg(&out), "--epochs", "1", "-q"]);
        assert!(o.status.success(), "{name}: retrain: {}", stderr(&o));
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("retrain/retrain.json")).unwrap()).unwrap();
        assert_eq!(record["retrained_data"].is_object(), data_file.exists(), "{name}: the layout is kept");
        let moved = tempfile::tempdir().unwrap();
        std::fs::copy(&out, moved.path().join("m2.onnx")).unwrap();
        if data_file.exists() {
            std::fs::copy(work.path().join("m2.onnx.data"), moved.path().join("m2.onnx.data")).unwrap();
        }
        let eval = moved.path().join("eval");
        let o = hudd(&with_set(&[
            "evaluate",
            "-m",
            &arg(&moved.path().join("m2.onnx")),
            "-c",
            &config,
            "-d",
            &data,
            "-o",
            &arg(&eval),
            "-q",
        ]));
        assert!(o.status.success(), "{name}: the retrained model evaluates: {}", stderr(&o));
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(eval.join("results/summary.json")).unwrap()).unwrap();
        let test = summary["splits"].as_array().unwrap().iter().find(|s| s["split"] == "test").unwrap();
        assert_eq!(test["correct"], record["after"]["right"], "{name}: the record measures the written model");
    }
}

/// Issue 33, row 1: a model's external weights (`NAME.onnx.data`) are part of its identity. Other
/// weights in the same layout are another model: a rerun into the same run redoes everything, the
/// run records each file's size and SHA-256, and `assign` refuses the run's model once its
/// weights changed after the analysis.
#[test]
fn other_external_weights_are_another_model() {
    let f = matrix().into_iter().find(|f| f.name == "resnet_dynamo").unwrap();
    let data = tempfile::tempdir().unwrap();
    small_dataset(data.path());
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("m.onnx");
    let weights = work.path().join("resnet_dynamo.onnx.data");
    std::fs::copy(&f.model, &model).unwrap();
    std::fs::copy(families().join("resnet_dynamo.onnx.data"), &weights).unwrap();
    let run = work.path().join("run");
    let mut args: Vec<String> = ["analyze", "-m", &arg(&model), "-c", &arg(&fmnist_config())]
        .into_iter()
        .chain(["-d", &arg(data.path()), "-o", &arg(&run), "-q"])
        .map(String::from)
        .collect();
    args.extend(set_args(&f));
    let o = hudd(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let recorded = |what: &str| -> serde_json::Value {
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
        record["model"][what].clone()
    };
    let sha = |p: &Path| hudd_core::fsio::sha256_file(p).unwrap();
    let first = recorded("sha256");
    assert_ne!(first.as_str(), Some(sha(&model).as_str()), "the identity covers more than the .onnx file");
    assert_eq!(recorded("weights")[0]["file_name"], "resnet_dynamo.onnx.data");
    assert_eq!(recorded("weights")[0]["sha256"].as_str(), Some(sha(&weights).as_str()));

    // Other weights, same layout (one float's low bit): nothing of the earlier analysis is reused.
    let flip = |at: usize| {
        let mut bytes = std::fs::read(&weights).unwrap();
        let i = (bytes.len() * at / 4) & !3;
        bytes[i] ^= 1;
        std::fs::write(&weights, bytes).unwrap();
    };
    flip(2);
    let o = hudd(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(!text.contains("nothing was rewritten") && !text.contains("--force redoes them"), "{text}");
    assert_ne!(recorded("sha256"), first);
    assert_eq!(recorded("weights")[0]["sha256"].as_str(), Some(sha(&weights).as_str()));

    // Weights changed after the analysis: the run's later stages refuse the model.
    flip(3);
    let o = hudd(&["assign", "--run", &arg(&run), "-q"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("not the model the run analysed"), "{}", stderr(&o));
}
