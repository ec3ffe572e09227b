//! LRP heatmaps against Zennit (the outside oracle): every preset, every layer, every image, on
//! models covering every op family (see models/scripts/make_lrp_reference.py and make_lrp_models.py).

use hudd_core::model::Model;
use hudd_core::relevance::{Explainer, Preset, Start};
use hudd_core::Config;

use crate::common::*;

fn l2_rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

/// Compares hudd's relevance with the Zennit reference in `tests/fixtures/lrp/<name>/` for every
/// preset, tensor and image: relative L2 error ≤ 1e-4.
fn matches_zennit(name: &str, model: &std::path::Path, overrides: &[&str]) {
    let dir = fixtures().join("lrp").join(name);
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let model = Model::load(model).unwrap();
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let spec = Config::load(Some(&fmnist_config()), &ov).unwrap().input_spec(model.info()).unwrap();
    let tensors: Vec<_> = index["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| hudd_core::input::load(&fmnist_data().join(p.as_str().unwrap()), &spec).unwrap())
        .collect();
    let batch = hudd_core::input::stack(&tensors, &spec);
    let presets = index["presets"].as_object().unwrap();
    assert_eq!(presets.len(), Preset::ALL.len(), "{name}: the reference covers every preset");
    for (preset_name, files) in presets {
        let what = format!("{name}/{preset_name}");
        let preset = Preset::from_name(preset_name).unwrap();
        let output = model.info().outputs[0].name.clone();
        let explainer = Explainer::new(&model, &spec.domain(), &output, preset).unwrap();
        let rel = explainer.explain(batch.view(), &Start::Predicted).unwrap();
        let files = files.as_object().unwrap();
        assert!(files.len() >= 6, "{what}: the reference covers every layer");
        for (tensor, file) in files {
            let (shape, want) = read_npy(&dir.join(file.as_str().unwrap()));
            let got = rel.get(tensor).unwrap_or_else(|| panic!("{what}: no relevance for `{tensor}`"));
            assert_eq!(got.shape(), shape.as_slice(), "{what}: {tensor}");
            let got: Vec<f32> = got.iter().copied().collect();
            let per = want.len() / shape[0];
            for i in 0..shape[0] {
                let err = l2_rel_err(&got[i * per..(i + 1) * per], &want[i * per..(i + 1) * per]);
                assert!(err <= 1e-4, "{what}: tensor `{tensor}`, image {i}: relative L2 error {err:.2e}");
            }
        }
    }
}

#[test]
fn fashion_mnist_cnn_matches_zennit() {
    matches_zennit("fmnist", &fmnist_model(), &[]);
}

#[test]
fn unfolded_batch_norm_residual_add_and_global_pooling_match_zennit() {
    matches_zennit("bn_residual", &fixtures().join("models/bn_residual.onnx"), &[]);
}

#[test]
fn depthwise_convolution_and_average_pooling_match_zennit() {
    matches_zennit("depthwise", &fixtures().join("models/depthwise.onnx"), &[]);
}

#[test]
fn keras_nhwc_model_from_tf2onnx_matches_zennit() {
    matches_zennit("keras_nhwc", &fixtures().join("models/keras_nhwc.onnx"), &["input.layout=nhwc"]);
}

#[test]
fn tflite_model_converted_with_tf2onnx_matches_zennit() {
    matches_zennit("tflite_nhwc", &fixtures().join("models/tflite_nhwc.onnx"), &["input.layout=nhwc"]);
}

#[test]
fn pad_concat_conv_transpose_scaling_and_other_activations_match_zennit() {
    matches_zennit("misc_ops", &fixtures().join("models/misc_ops.onnx"), &[]);
}

#[test]
fn weights_routed_through_identity_nodes_by_the_exporter_are_weights() {
    // PyTorch's export of a fresh residual network with folded batch norms: equal zero biases
    // shared through `Identity` nodes (models/scripts/make_identity_fixture.py).
    let path = fixtures().join("models/identity_weights.onnx");
    let model = Model::load(&path).unwrap();
    assert!(model.graph().nodes.iter().any(|n| n.op_type == "Identity"));
    matches_zennit("identity_weights", &path, &[]);
}

/// Today's CNN families as both PyTorch exporters write them (models/scripts/make_family_fixtures.py):
/// SiLU as x·σ(x), squeeze-excitation with σ and hard-σ gates (signal-only gate), HardSwish, a
/// residual sum, batch norms folded by the exporter or merged by hudd, global pooling as ReduceMean.
#[test]
fn gated_families_match_zennit_with_a_signal_only_gate_for_both_exporters() {
    for exporter in ["dynamo", "ts"] {
        let path = fixtures().join(format!("models/gates_{exporter}.onnx"));
        matches_zennit(&format!("gates_{exporter}"), &path, &[]);
    }
    // The default exporter's file keeps some weights in `gates_dynamo.onnx.data`.
    assert!(fixtures().join("models/gates_dynamo.onnx.data").is_file());
}

/// ShuffleNetV2's channel split (Split / Slice), channel shuffle, Concat, and a head of the
/// spatial mean (ReduceMean, Norm) and maximum (ReduceMax, winner takes all).
#[test]
fn channel_split_shuffle_and_reductions_match_zennit_for_both_exporters() {
    for exporter in ["dynamo", "ts"] {
        let path = fixtures().join(format!("models/shuffle_{exporter}.onnx"));
        let model = Model::load(&path).unwrap();
        let ops = model.graph().op_counts();
        let split = if exporter == "dynamo" { "Split" } else { "Slice" };
        assert!(ops.contains_key(split) && ops.contains_key("ReduceMax"), "{exporter}: {ops:?}");
        matches_zennit(&format!("shuffle_{exporter}"), &path, &[]);
    }
}

/// Gather with constant indices (one repeated), strided slices, a channel roll between
/// pixel_unshuffle and pixel_shuffle (DepthToSpace), nearest upsampling (Resize), `repeat` (Expand +
/// Tile) and `gather` (GatherElements, its indices expanded to the batch by shape arithmetic that
/// hudd evaluates per batch), Mish (decomposed as x·tanh(softplus x) by the TorchScript exporter: the
/// uniform rule then returns all relevance to x, as Pass does), a product of two signals (uniform
/// rule), a quotient by a sigmoid (divisor held constant), ReduceSum (Norm) and global max pooling
/// (ReduceMax / GlobalMaxPool).
#[test]
fn gather_strided_slices_products_quotients_and_sums_match_zennit_for_both_exporters() {
    for exporter in ["dynamo", "ts"] {
        let path = fixtures().join(format!("models/routing_{exporter}.onnx"));
        let ops = Model::load(&path).unwrap().graph().op_counts();
        for op in
            ["Gather", "Slice", "Div", "Mul", "ReduceSum", "DepthToSpace", "Resize", "Tile", "Expand", "GatherElements"]
        {
            assert!(ops.contains_key(op), "{exporter}: {op} in {ops:?}");
        }
        matches_zennit(&format!("routing_{exporter}"), &path, &[]);
    }
}
