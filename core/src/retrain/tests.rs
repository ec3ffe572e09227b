//! Oracles: the engine (tract) for the forward, PyTorch for gradients and SGD steps
//! (`models/scripts/make_retrain_reference.py` writes `tests/fixtures/retrain/`).

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};

use super::*;
use crate::model::{Layout, Model};
use crate::npy;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

use crate::selftest::RetrainIndex as Index;

struct Fixture {
    name: String,
    dir: PathBuf,
    index: Index,
    model: Model,
    input: ArrayD<f32>,
    targets: Targets,
}

fn array(path: &Path) -> ArrayD<f32> {
    let (shape, values) = npy::read_f32(path).unwrap();
    ArrayD::from_shape_vec(IxDyn(&shape), values).unwrap()
}

fn fixtures() -> Vec<Fixture> {
    let dir = root().join("tests/fixtures/retrain");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names
        .into_iter()
        .map(|dir| {
            let index: Index = serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
            let model = Model::load(root().join(&index.model)).unwrap();
            let t = array(&dir.join("targets.npy"));
            let targets = match index.loss {
                Loss::CrossEntropy => Targets::Classes(t.iter().map(|&c| c as u32).collect()),
                Loss::Mse => Targets::Values(t),
            };
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            Fixture { name, input: array(&dir.join("input.npy")), dir, index, model, targets }
        })
        .collect()
}

/// `max |a − b| / max(1, |b|)`.
fn rel_err(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f32::max)
}

#[test]
fn the_fixtures_cover_every_lrp_fixture_model() {
    let covered: Vec<String> = fixtures().iter().map(|f| f.index.model.clone()).collect();
    for m in [
        "bn_residual",
        "depthwise",
        "identity_weights",
        "keras_nhwc",
        "misc_ops",
        "tflite_nhwc",
        "gates_dynamo",
        "gates_ts",
        "shuffle_dynamo",
        "shuffle_ts",
        "routing_dynamo",
        "routing_ts",
    ] {
        assert!(covered.contains(&format!("tests/fixtures/models/{m}.onnx")), "{m}");
    }
    assert!(covered.iter().any(|m| m.ends_with("fmnist_cnn.onnx")));
    // Keras' applications as tf2onnx writes them (the coverage matrix's NHWC fixtures).
    for family in
        ["resnet", "densenet", "mobilenet_v2", "mobilenet_v3", "efficientnet", "efficientnet_v2", "space_to_depth"]
    {
        let m = format!("tests/fixtures/families/keras_{family}_tf2onnx.onnx");
        assert!(covered.contains(&m), "{m}");
    }
    // GELU as one `Gelu` op and written out with `Erf`; bilinear resampling (Resize in linear mode);
    // opset 9's Upsample.
    for m in ["gelu_dynamo", "gelu_ts", "bilinear_dynamo", "bilinear_ts", "upsample_ts9"] {
        let m = format!("tests/fixtures/families/{m}.onnx");
        assert!(covered.contains(&m), "{m}");
    }
}

#[test]
fn the_forward_equals_the_engine_within_1e_5() {
    let mut models: Vec<PathBuf> = fixtures().iter().map(|f| root().join(&f.index.model)).collect();
    for extra in [
        "models/gaze/gaze_cnn.onnx",
        "models/landmarks/landmarks_cnn.onnx",
        "tests/fixtures/models/fmnist_cnn_batch1.onnx",
        "tests/fixtures/models/fmnist_cnn_dynamo.onnx",
    ] {
        models.push(root().join(extra));
    }
    models.dedup();
    let mut rng = Rng::new(5);
    for path in models {
        let model = Model::load(&path).unwrap();
        let net = Net::new(&model).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut shape = vec![3];
        shape.extend(model.graph().inputs[0].shape.iter().skip(1).map(|d| d.fixed().unwrap()));
        let n: usize = shape.iter().product();
        let x = ArrayD::from_shape_vec(IxDyn(&shape), (0..n).map(|_| rng.next_f64() as f32).collect()).unwrap();
        let engine = model.run(x.view()).unwrap();
        let candle = net.forward(x.view(), Mode::Eval, 0).unwrap();
        let err = rel_err(&candle[0], &engine[0]);
        assert!(err < 1e-5, "{}: forward differs from the engine by {err}", path.display());
    }
}

#[test]
fn the_forward_equals_onnxruntime_on_the_fixture_batches() {
    for f in fixtures() {
        let net = Net::new(&f.model).unwrap();
        let out = net.forward(f.input.view(), Mode::Eval, 0).unwrap();
        let err = rel_err(&out[0], &array(&f.dir.join("outputs.npy")));
        assert!(err < 1e-5, "{}: {err}", f.name);
    }
}

#[test]
fn gradients_equal_pytorchs_within_1e_4_relative() {
    for f in fixtures() {
        let net = Net::new(&f.model).unwrap();
        let expected: Vec<&str> = f.index.weights.iter().map(|w| w.name.as_str()).collect();
        let mut trainable = net.trainable();
        trainable.sort_unstable();
        let mut sorted = expected.clone();
        sorted.sort_unstable();
        assert_eq!(trainable, sorted, "{}: the trainable weights", f.name);
        let (loss, grads) = net.gradients(f.input.view(), 0, &f.targets, f.index.loss, Mode::Eval, 0).unwrap();
        assert!(
            (loss - f.index.loss_value).abs() <= 1e-5 * f.index.loss_value.abs().max(1.0),
            "{}: loss {loss}",
            f.name
        );
        for w in &f.index.weights {
            let reference = array(&f.dir.join("grad").join(&w.file));
            let g = grads.get(&w.name).unwrap();
            let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
            let err = g.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-4 * scale + 1e-7, "{} / {}: gradient off by {err} (largest {scale})", f.name, w.name);
        }
    }
}

fn trained(f: &Fixture) -> Trainer {
    let params =
        SgdParams { lr: f.index.sgd.lr, momentum: f.index.sgd.momentum, weight_decay: f.index.sgd.weight_decay };
    let mut t = Trainer::new(Net::new(&f.model).unwrap(), params, 0, f.index.loss);
    for _ in 0..f.index.sgd.steps {
        t.step(f.input.view(), &f.targets, Mode::Eval, 0).unwrap();
    }
    t
}

#[test]
fn sgd_steps_with_momentum_and_weight_decay_give_pytorchs_weights() {
    for f in fixtures() {
        let w = trained(&f).net().weights().unwrap();
        for r in &f.index.weights {
            let err = rel_err(w.get(&r.name).unwrap(), &array(&f.dir.join("after").join(&r.file)));
            assert!(err <= 1e-5, "{} / {}: {err}", f.name, r.name);
        }
    }
}

#[test]
fn written_back_models_run_in_the_engine_as_in_candle() {
    for f in fixtures() {
        let t = trained(&f);
        let weights = t.net().weights().unwrap();
        let files = f.model.with_weights(&weights, &Layout::SelfContained).unwrap();
        assert_eq!(files.data, None, "{}: self-contained", f.name);
        let reloaded = Model::from_bytes(&files.onnx, f.dir.join("m2.onnx")).unwrap();
        let engine = reloaded.run(f.input.view()).unwrap();
        let candle = t.net().forward(f.input.view(), Mode::Eval, 0).unwrap();
        assert!(rel_err(&candle[0], &engine[0]) < 1e-5, "{}", f.name);
        // The steps changed the outputs.
        assert!(rel_err(&engine[0], &f.model.run(f.input.view()).unwrap()[0]) > 1e-4, "{}", f.name);

        // Written as the original was laid out, into a folder of its own: the same model.
        let external = !f.model.external_files().unwrap().is_empty();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("m2.onnx");
        let layout = Layout::beside(&out);
        let files = f.model.with_weights(&weights, &layout).unwrap();
        assert_eq!(files.data.is_some(), external, "{}: external weights stay external", f.name);
        files.write(&out, &layout).unwrap();
        let written = Model::load(&out).unwrap();
        let expected: Vec<PathBuf> = if external { vec![dir.path().join("m2.onnx.data")] } else { vec![] };
        assert_eq!(written.external_files().unwrap(), expected, "{}", f.name);
        assert_eq!(
            written.run(f.input.view()).unwrap()[0],
            engine[0],
            "{}: both layouts hold the same weights",
            f.name
        );
    }
}

#[test]
fn unchanged_external_weights_are_copied_into_the_new_weights_file() {
    let f = fixtures().into_iter().find(|f| f.name == "gates_dynamo").unwrap();
    let originals = f.model.external_files().unwrap();
    assert_eq!(originals.len(), 1, "the default exporter's fixture keeps weights outside");
    // One weight changed; the others, external or not, keep their values.
    let all = crate::model::Weights::of(f.model.graph());
    let (name, value) = all.iter().find(|(n, _)| n.ends_with("fc.weight")).unwrap();
    let mut one = crate::model::Weights::new();
    one.insert(name, value.mapv(|v| v * 0.5));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("half.onnx");
    let layout = Layout::beside(&out);
    let files = f.model.with_weights(&one, &layout).unwrap();
    files.write(&out, &layout).unwrap();
    let written = Model::load(&out).unwrap();
    let got = crate::model::Weights::of(written.graph());
    assert_eq!(got.len(), all.len());
    for (n, v) in all.iter() {
        let want = if n == name { value.mapv(|v| v * 0.5) } else { v.clone() };
        assert_eq!(got.get(n), Some(&want), "{n}");
    }
    // The original's weights file is as long as the new one (the same tensors, same types).
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert_eq!(len(&dir.path().join("half.onnx.data")), len(&originals[0]));
    // Unchanged and self-contained: every external weight inlined, nothing else changed.
    let inline = f.model.with_weights(&crate::model::Weights::new(), &Layout::SelfContained).unwrap();
    let reloaded = Model::from_bytes(&inline.onnx, dir.path().join("x/inline.onnx")).unwrap();
    assert!(reloaded.external_files().unwrap().is_empty());
    assert_eq!(reloaded.run(f.input.view()).unwrap(), f.model.run(f.input.view()).unwrap());
}

#[test]
fn an_external_location_outside_the_model_folder_is_refused() {
    let f = fixtures().into_iter().find(|f| f.name == "gates_dynamo").unwrap();
    let bytes = std::fs::read(f.model.path()).unwrap();
    let data_name = "gates_dynamo.onnx.data";
    let evil = "../../../../etc/x.data";
    assert_eq!(data_name.len(), evil.len(), "same length keeps the protobuf lengths valid");
    let hostile: Vec<u8> = replace_all(&bytes, data_name.as_bytes(), evil.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let e = Model::from_bytes(&hostile, dir.path().join("m.onnx")).unwrap_err().to_string();
    assert!(e.contains("not a file name beside the model"), "{e}");
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn training_repeats_bit_for_bit() {
    let f = fixtures().into_iter().find(|f| f.name == "misc_ops").unwrap();
    let (a, b) = (trained(&f).net().weights().unwrap(), trained(&f).net().weights().unwrap());
    assert_eq!(a, b);
}

#[test]
fn dropout_is_seeded_and_off_at_inference() {
    let f = fixtures().into_iter().find(|f| f.name == "bn_residual").unwrap();
    let net = Net::new(&f.model).unwrap();
    let eval = net.forward(f.input.view(), Mode::Eval, 1).unwrap();
    // The fixture has no dropout: training mode changes nothing either.
    assert_eq!(eval, net.forward(f.input.view(), Mode::Train, 1).unwrap());
}

#[test]
fn an_op_without_translation_is_named() {
    let model = Model::load(root().join("tests/fixtures/models/unexplainable.onnx")).unwrap();
    let e = Net::new(&model).unwrap_err();
    assert!(matches!(&e, Error::UnsupportedByStage { op, stage: "retrain", .. } if op == "Sin"), "{e}");
    assert!(e.to_string().contains("retrain stage"), "{e}");
}

mod fitting {
    use super::*;
    use crate::progress::Silent;
    use crate::{Config, Dataset, Split};

    fn examples() -> (Model, crate::config::InputSpec, Vec<Example>, Vec<Example>) {
        let model = Model::load(root().join("models/fashion-mnist/fmnist_cnn.onnx")).unwrap();
        let config = Config::load(Some(&root().join("models/fashion-mnist/hudd.toml")), &[]).unwrap();
        let spec = config.input_spec(model.info()).unwrap();
        let data = Dataset::open(&root().join("tests/fixtures/fmnist"), &config.task).unwrap();
        let of = |split| -> Vec<Example> {
            data.split(split)
                .unwrap()
                .samples
                .iter()
                .map(|s| Example { path: s.path.clone(), label: s.label.clone() })
                .collect()
        };
        (model, spec, of(Split::Train), of(Split::Test))
    }

    #[test]
    fn fine_tuning_lowers_the_training_loss_repeatably_and_keeps_the_best_epoch() {
        let (model, spec, train, validation) = examples();
        let options = FitOptions {
            epochs: 2,
            batch_size: 32,
            sgd: SgdParams { lr: 0.01, ..SgdParams::default() },
            loss: Loss::CrossEntropy,
            output: 0,
            seed: 11,
            keep: Keep::Best,
        };
        let a = fit(&model, &spec, &train, &validation, &options, &Silent).unwrap();
        assert_eq!(a.history.len(), 3);
        assert_eq!(a.history[0].train_loss, None);
        let (l1, l2) = (a.history[1].train_loss.unwrap(), a.history[2].train_loss.unwrap());
        assert!(l2 < l1, "training loss {l1} then {l2}");
        let best = &a.history[a.chosen];
        assert!(a.history.iter().all(|h| h.validation_accuracy <= best.validation_accuracy));
        let b = fit(&model, &spec, &train, &validation, &options, &Silent).unwrap();
        assert_eq!(
            (&a.weights, &a.history, a.chosen),
            (&b.weights, &b.history, b.chosen),
            "same inputs and seed, same result"
        );
        assert_eq!(a.epoch_seconds.len(), 2);
        let last =
            fit(&model, &spec, &train, &validation, &FitOptions { keep: Keep::Last, ..options.clone() }, &Silent)
                .unwrap();
        assert_eq!((last.chosen, &last.history), (2, &a.history), "the same epochs, the last one kept");
        if a.chosen != 2 {
            assert_ne!(last.weights, a.weights);
        }
        let other = fit(&model, &spec, &train, &validation, &FitOptions { seed: 12, ..options }, &Silent).unwrap();
        assert_ne!(a.history[1].train_loss, other.history[1].train_loss, "the seed drives the shuffle");
    }

    #[test]
    fn empty_sets_are_refused() {
        let (model, spec, train, _) = examples();
        let options = FitOptions {
            epochs: 1,
            batch_size: 8,
            sgd: SgdParams::default(),
            loss: Loss::Mse,
            output: 0,
            seed: 1,
            keep: Keep::Last,
        };
        let e = fit(&model, &spec, &train, &[], &options, &Silent).unwrap_err();
        assert!(e.to_string().contains("no validation"), "{e}");
        let e = fit(&model, &spec, &train[..2], &train[2..4], &options, &Silent).unwrap_err();
        assert!(e.to_string().contains("class label"), "{e}");
    }
}
