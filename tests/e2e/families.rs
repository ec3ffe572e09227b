//! Today's CNN families as exporters write them, through every stage a user runs: `inspect`,
//! `analyze` (evaluate → heatmaps → clusters), `assign`, `retrain` (one epoch) and the written
//! model evaluated again. The fixtures (models/scripts/make_family_fixtures.py) are the gated
//! family (SiLU as x·σ(x), squeeze-excitation, HardSwish, ReduceMean) and the channel-split
//! family (Split or Slice with computed ranges, channel shuffle, ReduceMean + ReduceMax), each
//! from PyTorch's default exporter (opset 20, weights partly in `NAME.onnx.data`) and from the
//! TorchScript exporter (opset 17). Their heatmaps are checked against Zennit in `relevance.rs`,
//! their gradients against PyTorch in core's retrain tests.

use crate::common::{arg, fixtures, fmnist_config, fmnist_data, hudd, stderr, stdout};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn every_family_fixture_runs_inspect_analyze_assign_retrain_and_reloads() {
    for name in ["gates_dynamo", "gates_ts", "shuffle_dynamo", "shuffle_ts", "routing_dynamo", "routing_ts"] {
        let work = tempfile::tempdir().unwrap();
        // The model as a user has it: the ONNX file and, for the default exporter, its weights file.
        let model = work.path().join(format!("{name}.onnx"));
        std::fs::copy(fixtures().join(format!("models/{name}.onnx")), &model).unwrap();
        let data_file = fixtures().join(format!("models/{name}.onnx.data"));
        if data_file.exists() {
            std::fs::copy(&data_file, work.path().join(format!("{name}.onnx.data"))).unwrap();
        }
        let (m, config, data) = (arg(&model), arg(&fmnist_config()), arg(&fmnist_data()));

        let o = hudd(&["inspect", &m]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let run = work.path().join("run");
        let o = hudd(&["analyze", "-m", &m, "-c", &config, "-d", &data, "-o", &arg(&run), "-q"]);
        assert!(o.status.success(), "{name}: analyze: {}", stderr(&o));
        let clusters = json(&run.join("clusters.json"));
        let layers = clusters["layers"].as_array().unwrap();
        assert!(layers.len() >= 3, "{name}: heatmaps of several layers clustered");
        assert!(clusters["best_layer"].as_str().is_some_and(|l| !l.is_empty()), "{name}");
        // The default layers hold the global pooling, which the exporters write as a reduction.
        let graph = hudd_core::model::Model::load(&model).unwrap().graph().clone();
        let pooling = graph.nodes.iter().rfind(|n| matches!(n.op_type.as_str(), "ReduceMean" | "ReduceSum"));
        let pooled = &pooling.unwrap().outputs[0];
        assert!(
            layers.iter().any(|l| l["name"] == pooled.as_str()),
            "{name}: the global pooling `{pooled}` is a default layer: {:?}",
            layers.iter().map(|l| l["name"].clone()).collect::<Vec<_>>()
        );

        let o = hudd(&["assign", "--run", &arg(&run), "-q"]);
        assert!(o.status.success(), "{name}: assign: {}", stderr(&o));
        if name == "gates_dynamo" {
            // The analysed model's own files are refused as output, before any training.
            for target in [model.clone(), work.path().join("gates_dynamo.onnx.data")] {
                let o = hudd(&["retrain", "--run", &arg(&run), "--labels", "auto", "-o", &arg(&target), "-q"]);
                assert!(!o.status.success(), "{name}: --out {} was accepted", target.display());
                assert!(stderr(&o).contains("refusing to write"), "{name}: {}", stderr(&o));
            }
            assert!(!run.join("retrain/retrain.json").exists(), "{name}: nothing trained");
        }
        let out = work.path().join("m2.onnx");
        let o = hudd(&[
            "retrain",
            "--run",
            &arg(&run),
            "--labels",
            "auto",
            "-o",
            &arg(&out),
            "--epochs",
            "1",
            "--seed",
            "1",
            "-q",
        ]);
        assert!(o.status.success(), "{name}: retrain: {}", stderr(&o));
        assert!(stdout(&o).contains("after"), "{name}: {}", stdout(&o));
        assert_ne!(std::fs::read(&out).unwrap(), std::fs::read(&model).unwrap(), "{name}: the weights changed");

        // The layout is kept: the default exporter's external weights go to `m2.onnx.data`.
        let r = json(&run.join("retrain/retrain.json"));
        let data_out = work.path().join("m2.onnx.data");
        assert_eq!(data_out.exists(), data_file.exists(), "{name}: the weights file follows the input's layout");
        assert_eq!(r["retrained_data"].is_object(), data_file.exists(), "{name}: {}", r["retrained_data"]);

        // The written model reloads and evaluates, from a folder of its own (the weights file
        // keeps its name; the ONNX file may be renamed).
        let moved = tempfile::tempdir().unwrap();
        let copy = moved.path().join("retrained.onnx");
        std::fs::copy(&out, &copy).unwrap();
        if data_out.exists() {
            std::fs::copy(&data_out, moved.path().join("m2.onnx.data")).unwrap();
        }
        let eval = moved.path().join("eval");
        let o = hudd(&["evaluate", "-m", &arg(&copy), "-c", &config, "-d", &data, "-o", &arg(&eval), "-q"]);
        assert!(o.status.success(), "{name}: the retrained model evaluates: {}", stderr(&o));
        let summary = json(&eval.join("results/summary.json"));
        let test = summary["splits"].as_array().unwrap().iter().find(|s| s["split"] == "test").unwrap();
        assert_eq!(test["correct"], r["after"]["right"], "{name}: the record measures the written model");
    }
}
