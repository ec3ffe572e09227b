//! The model adapter against onnxruntime: outputs and every intermediate activation, for models from
//! the TorchScript exporter, the dynamo exporter and tf2onnx (NHWC).

use hudd_core::config::InputSpec;
use hudd_core::model::{AutoPad, BatchPolicy, Dim, ElemType, Layout, Model, ModelFiles, Op, Weights};
use hudd_core::Config;
use ndarray::ArrayD;

use crate::common::*;

fn spec(model: &Model, overrides: &[&str]) -> InputSpec {
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let cfg = Config::load(Some(&fmnist_config()), &ov).unwrap();
    cfg.input_spec(model.info()).unwrap()
}

fn images(split: &str) -> Vec<String> {
    reference()["splits"][split]["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

fn batch(paths: &[String], spec: &InputSpec) -> ArrayD<f32> {
    let tensors: Vec<_> = paths.iter().map(|p| hudd_core::input::load(&fmnist_data().join(p), spec).unwrap()).collect();
    hudd_core::input::stack(&tensors, spec)
}

fn check_logits(model_path: &std::path::Path, overrides: &[&str], reference_name: &str) {
    let model = Model::load(model_path).unwrap();
    let spec = spec(&model, overrides);
    for split in ["train", "test", "improvement"] {
        let x = batch(&images(split), &spec);
        let out = model.run(x.view()).unwrap();
        let (shape, expected) = read_npy(&fmnist_data().join(format!("reference/{split}_{reference_name}.npy")));
        assert_eq!(out[0].shape(), shape.as_slice());
        let got: Vec<f32> = out[0].iter().copied().collect();
        let err = max_rel_err(&got, &expected);
        assert!(err <= 1e-5, "{}: {split}: max error {err} vs onnxruntime", model_path.display());
    }
}

#[test]
fn torchscript_export_matches_onnxruntime() {
    check_logits(&fmnist_model(), &[], "logits_onnxruntime");
}

#[test]
fn torchscript_export_matches_pytorch() {
    check_logits(&fmnist_model(), &[], "logits_torch");
}

#[test]
fn dynamo_export_matches_onnxruntime() {
    check_logits(&fixtures().join("models/fmnist_cnn_dynamo.onnx"), &[], "logits_dynamo_onnxruntime");
}

#[test]
fn tf2onnx_nhwc_export_matches_onnxruntime() {
    let path = fixtures().join("models/keras_nhwc.onnx");
    let model = Model::load(&path).unwrap();
    // The layout is read off the model's [N, 28, 28, 1] input.
    let auto = Config::default().input_spec(model.info()).unwrap();
    assert_eq!(auto.layout, hudd_core::config::Layout::Nhwc);
    check_logits(&path, &["input.layout=nhwc"], "logits_keras_onnxruntime");
}

#[test]
fn tflite_model_converted_with_tf2onnx_matches_onnxruntime() {
    // Keras → .tflite → ONNX (`tf2onnx --tflite`; models/scripts/make_tflite_fixture.py).
    let path = fixtures().join("models/tflite_nhwc.onnx");
    let model = Model::load(&path).unwrap();
    assert_eq!(Config::default().input_spec(model.info()).unwrap().layout, hudd_core::config::Layout::Nhwc);
    check_logits(&path, &["input.layout=nhwc"], "logits_tflite_onnxruntime");
}

#[test]
fn every_intermediate_activation_matches_onnxruntime() {
    let model = Model::load(fmnist_model()).unwrap();
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fmnist_data().join("reference/activations.json")).unwrap())
            .unwrap();
    let paths: Vec<String> =
        index["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let x = batch(&paths, &spec(&model, &[]));
    let acts = model.run_with_activations(x.view()).unwrap();
    let tensors = index["tensors"].as_object().unwrap();
    assert!(tensors.len() >= 8, "the reference covers every layer");
    for (name, entry) in tensors {
        let got = acts.tensors.get(name).unwrap_or_else(|| panic!("activation `{name}` missing"));
        let (shape, expected) = read_npy(&fmnist_data().join("reference").join(entry["file"].as_str().unwrap()));
        assert_eq!(got.shape(), shape.as_slice(), "{name}");
        let err = max_rel_err(&got.iter().copied().collect::<Vec<_>>(), &expected);
        assert!(err <= 1e-5, "activation `{name}`: max error {err}");
    }
    // The input and every node output of the graph are there, by ONNX name.
    for node in &model.graph().nodes {
        for out in node.outputs.iter().filter(|o| !o.is_empty()) {
            assert!(acts.tensors.contains_key(out), "node `{}` output `{out}` missing", node.name);
        }
    }
    assert!(acts.tensors.contains_key("image"));
}

#[test]
fn graph_is_plain_data_in_topological_order() {
    let model = Model::load(fmnist_model()).unwrap();
    let g = model.graph();
    assert_eq!(model.info().inputs[0].name, "image");
    assert_eq!(
        model.info().inputs[0].shape,
        [Dim::Symbolic("batch".into()), Dim::Fixed(1), Dim::Fixed(28), Dim::Fixed(28)]
    );
    assert_eq!(model.batch_policy(), BatchPolicy::Dynamic);
    let counts = g.op_counts();
    assert_eq!(counts.get("Conv"), Some(&2));
    assert_eq!(counts.get("Gemm"), Some(&2));
    let mut seen: std::collections::HashSet<&str> = ["image"].into();
    seen.extend(g.weights.keys().map(String::as_str));
    for n in &g.nodes {
        for i in n.inputs.iter().filter(|i| !i.is_empty()) {
            assert!(seen.contains(i.as_str()), "node `{}` reads `{i}` before it is produced", n.name);
        }
        seen.extend(n.outputs.iter().map(String::as_str));
    }
    let conv = g.nodes.iter().find(|n| n.op_type == "Conv").unwrap();
    let w = g.weight(&conv.inputs[1]).unwrap();
    assert_eq!(w.shape(), &[16, 1, 3, 3]);
    assert_eq!(conv.attributes["pads"].as_ints(), Some(&[1i64, 1, 1, 1][..]));
    let gemm = g.nodes.iter().find(|n| n.op_type == "Gemm").unwrap();
    assert_eq!(gemm.attributes["transB"].as_int(), Some(1));
}

#[test]
fn results_do_not_depend_on_batch_size() {
    // Bit for bit: the outputs and every activation of an image are the same alone or in a batch.
    let model = Model::load(fmnist_model()).unwrap();
    let spec = spec(&model, &[]);
    let paths: Vec<String> = images("test").into_iter().take(7).collect();
    let all = model.run_with_activations(batch(&paths, &spec).view()).unwrap().tensors;
    let logits = model.run(batch(&paths, &spec).view()).unwrap().remove(0);
    assert_eq!(logits, all[&model.info().outputs[0].name], "run and run_with_activations agree");
    assert!(all.len() > 5, "{:?}", all.keys());
    for (i, p) in paths.iter().enumerate() {
        let one = model.run_with_activations(batch(std::slice::from_ref(p), &spec).view()).unwrap().tensors;
        assert_eq!(one.keys().collect::<Vec<_>>(), all.keys().collect::<Vec<_>>());
        for (name, t) in &one {
            let row = all[name].index_axis(ndarray::Axis(0), i);
            assert!(t.index_axis(ndarray::Axis(0), 0) == row, "image {i}, tensor {name}");
        }
    }
}

#[test]
fn fixed_batch_models_run_any_batch() {
    let model = Model::load(fixtures().join("models/fmnist_cnn_batch1.onnx")).unwrap();
    assert_eq!(model.batch_policy(), BatchPolicy::Fixed(1));
    let spec = spec(&model, &[]);
    let paths: Vec<String> = images("test").into_iter().take(5).collect();
    let out = model.run(batch(&paths, &spec).view()).unwrap().remove(0);
    assert_eq!(out.shape(), &[5, 10]);
    let (_, expected) = read_npy(&fmnist_data().join("reference/test_logits_onnxruntime.npy"));
    let got: Vec<f32> = out.iter().copied().collect();
    assert!(max_rel_err(&got, &expected[..50]) <= 1e-5);
}

#[test]
fn the_graph_knows_every_tensors_shape_and_type_without_a_forward_run() {
    let model = Model::load(fmnist_model()).unwrap();
    let g = model.graph();
    let conv = g.nodes.iter().find(|n| matches!(n.op, Op::Conv(_))).unwrap();
    let Op::Conv(attrs) = &conv.op else { unreachable!() };
    assert_eq!(
        (attrs.kernel.as_slice(), attrs.pads.as_slice(), attrs.auto_pad),
        (&[3, 3][..], &[1, 1, 1, 1][..], AutoPad::NotSet)
    );
    let fact = &g.tensors[&conv.outputs[0]];
    assert!(fact.batched);
    assert_eq!(fact.elem_type, ElemType::F32);
    assert_eq!(&fact.shape[1..], &[Dim::Fixed(16), Dim::Fixed(28), Dim::Fixed(28)]);
    for n in &g.nodes {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            assert!(g.tensors.contains_key(o), "no fact for `{o}` of node `{}`", n.name);
        }
    }
    // The activations a forward run produces are exactly the batched float tensors.
    let spec = spec(&model, &[]);
    let acts = model.run_with_activations(batch(&images("test")[..2], &spec).view()).unwrap();
    let ran: std::collections::HashSet<String> = acts.tensors.keys().cloned().collect();
    assert_eq!(model.activation_names(&spec.batch_shape(1)[1..]).unwrap(), ran);
}

#[test]
fn a_model_written_back_with_new_weights_runs_with_them() {
    let model = Model::load(fmnist_model()).unwrap();
    let g = model.graph();
    // Unchanged weights: the same file, byte for byte.
    let original = ModelFiles { onnx: std::fs::read(fmnist_model()).unwrap(), data: None };
    for layout in [Layout::SelfContained, Layout::Beside("m.onnx.data".into())] {
        assert_eq!(model.with_weights(&Weights::of(g), &layout).unwrap(), original);
        assert_eq!(model.with_weights(&Weights::new(), &layout).unwrap(), original);
    }
    // The last dense layer doubled: the logits double, exactly.
    let last = g.nodes.iter().rev().find(|n| matches!(n.op, Op::Gemm { .. })).unwrap();
    let mut new = Weights::new();
    for w in &last.inputs[1..3] {
        new.insert(w.clone(), g.weight(w).unwrap().as_f32().unwrap() * 2.0);
    }
    let bytes = model.with_weights(&new, &Layout::SelfContained).unwrap().onnx;
    let written = Model::from_bytes(&bytes, "doubled.onnx".into()).unwrap();
    assert_eq!(written.graph().nodes, g.nodes, "same nodes, names and attributes");
    assert_eq!(written.graph().weight(&last.inputs[1]).unwrap().as_f32(), new.get(&last.inputs[1]));
    let spec = spec(&model, &[]);
    let x = batch(&images("test")[..4], &spec);
    let before = model.run(x.view()).unwrap().remove(0);
    let after = written.run(x.view()).unwrap().remove(0);
    assert_eq!(after, before * 2.0);
    // Wrong names and shapes are refused, naming the weight.
    let mut bad = Weights::new();
    bad.insert("no-such-weight", ndarray::ArrayD::zeros(ndarray::IxDyn(&[1])));
    assert!(model.with_weights(&bad, &Layout::SelfContained).unwrap_err().to_string().contains("no-such-weight"));
    let mut bad = Weights::new();
    bad.insert(last.inputs[2].clone(), ndarray::ArrayD::zeros(ndarray::IxDyn(&[3])));
    assert!(model.with_weights(&bad, &Layout::SelfContained).unwrap_err().to_string().contains("shape"));
}

#[test]
fn a_weight_the_file_computes_is_written_as_an_initializer_of_its_own() {
    // Two convolution biases share one zero initializer through `Identity` nodes.
    let model = Model::load(fixtures().join("models/identity_weights.onnx")).unwrap();
    let g = model.graph();
    let routed: Vec<&str> = g.nodes.iter().filter(|n| n.op == Op::Identity).map(|n| n.outputs[0].as_str()).collect();
    assert!(routed.len() >= 2, "{routed:?}");
    let mut new = Weights::new();
    let old = g.weight(routed[0]).unwrap().as_f32().unwrap();
    new.insert(routed[0], old.mapv(|v| v + 1.0));
    let written =
        Model::from_bytes(&model.with_weights(&new, &Layout::SelfContained).unwrap().onnx, "changed.onnx".into())
            .unwrap();
    let wg = written.graph();
    assert_eq!(wg.nodes.len(), g.nodes.len() - 1, "the Identity that computed the weight is gone");
    assert_eq!(wg.weight(routed[0]).unwrap().as_f32(), new.get(routed[0]));
    assert_eq!(wg.weight(routed[1]), g.weight(routed[1]), "the weight it shared a source with is unchanged");
    let spec = spec(&model, &[]);
    let x = batch(&images("test")[..2], &spec);
    assert_ne!(written.run(x.view()).unwrap(), model.run(x.view()).unwrap());
}
