//! `hudd evaluate` on the committed Fashion-MNIST subset.

use crate::common::*;

fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(str::to_string).collect();
    (header, lines.map(|l| l.split(',').map(str::to_string).collect()).collect())
}

#[test]
fn evaluate_writes_hudd_results_equal_to_pytorch() {
    let run = tempfile::tempdir().unwrap();
    let out = hudd(&[
        "evaluate",
        "--model",
        fmnist_model().to_str().unwrap(),
        "--config",
        fmnist_config().to_str().unwrap(),
        "--data",
        fmnist_data().to_str().unwrap(),
        "--out",
        run.path().to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    let reference = reference();
    for split in ["train", "test", "improvement"] {
        let (header, rows) = read_csv(&run.path().join(format!("results/{split}.csv")));
        assert_eq!(header[..4], ["image", "result", "expected", "predicted"]);
        assert_eq!(header[4], "t-shirt");
        assert_eq!(header.len(), 14);
        let ref_split = &reference["splits"][split];
        let images: Vec<&str> = ref_split["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let got_images: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(got_images, images, "rows in sorted image order, paths relative to DATA");
        let correct = rows.iter().filter(|r| r[1] == "Correct").count();
        assert_eq!(correct as u64, ref_split["torch_correct"].as_u64().unwrap(), "{split}: accuracy equals PyTorch's");
        for r in &rows {
            assert_eq!(r[1] == "Correct", r[2] == r[3], "{r:?}");
            assert_eq!(r[0].split('/').nth(1).unwrap(), r[2], "expected = class folder");
        }
        // Logit columns equal onnxruntime's to 1e-5.
        let (_, expected) = read_npy(&fmnist_data().join(format!("reference/{split}_logits_onnxruntime.npy")));
        let got: Vec<f32> = rows.iter().flat_map(|r| r[4..14].iter().map(|v| v.parse::<f32>().unwrap())).collect();
        assert!(max_rel_err(&got, &expected) <= 1e-5);
        let acc = format!("{:.2}%", 100.0 * ref_split["torch_accuracy"].as_f64().unwrap());
        assert!(printed.contains(&acc), "accuracy {acc} printed:\n{printed}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("results/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["format"], "hudd-evaluation");
    assert_eq!(summary["splits"][1]["evaluated"], 300);
    assert_eq!(summary["splits"][1]["per_class"].as_array().unwrap().len(), 10);
    let (header, rows) = read_csv(&run.path().join("results/skipped.csv"));
    assert_eq!(header, ["split", "image", "reason"]);
    assert!(rows.is_empty());
    assert!(printed.lines().any(|l| l.starts_with("coat") && l.contains("21/30")), "{printed}");
}

#[test]
fn batch_size_and_threads_do_not_change_results() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for (dir, extra) in [(&a, ["--batch-size", "1", "-j", "1"]), (&b, ["--batch-size", "37", "-j", "2"])] {
        let mut args: Vec<String> = vec![
            "evaluate".into(),
            "-m".into(),
            arg(&fmnist_model()),
            "-c".into(),
            arg(&fmnist_config()),
            "-d".into(),
            arg(&fmnist_data()),
            "-o".into(),
            arg(dir.path()),
            "-q".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = hudd(&args);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let read = |d: &tempfile::TempDir| -> Vec<String> {
        let text = std::fs::read_to_string(d.path().join("results/test.csv")).unwrap();
        text.lines().map(str::to_string).collect()
    };
    let (ra, rb) = (read(&a), read(&b));
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb).skip(1) {
        let xs: Vec<&str> = x.split(',').collect();
        let ys: Vec<&str> = y.split(',').collect();
        assert_eq!(xs[..4], ys[..4]);
        let fx: Vec<f32> = xs[4..].iter().map(|v| v.parse().unwrap()).collect();
        let fy: Vec<f32> = ys[4..].iter().map(|v| v.parse().unwrap()).collect();
        assert!(max_rel_err(&fx, &fy) <= 1e-5);
    }
}

#[test]
fn manifest_metadata_is_carried_into_results() {
    let data = tempfile::tempdir().unwrap();
    let test = data.path().join("test");
    copy_tree(&fmnist_data().join("test/bag"), &test.join("bag"));
    copy_tree(&fmnist_data().join("test/coat"), &test.join("coat"));
    let mut manifest = String::from("path,label,lighting,yaw\n");
    for (i, e) in std::fs::read_dir(test.join("bag")).unwrap().enumerate() {
        let name = e.unwrap().file_name().into_string().unwrap();
        manifest.push_str(&format!("bag/{name},bag,dark,{i}\n"));
    }
    std::fs::write(test.join("manifest.csv"), manifest).unwrap();
    let run = tempfile::tempdir().unwrap();
    let out = hudd(&[
        "evaluate",
        "-m",
        fmnist_model().to_str().unwrap(),
        "-c",
        fmnist_config().to_str().unwrap(),
        "-d",
        data.path().to_str().unwrap(),
        "-o",
        run.path().to_str().unwrap(),
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(run.path().join("results/test.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[14..], ["lighting", "yaw"]);
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 30, "the manifest, not the folders, defines the split");
    assert!(rows.iter().all(|r| r.contains(",dark,")));
}

#[test]
fn inspect_describes_the_model() {
    let out = hudd(&["inspect", fmnist_model().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = stdout(&out);
    assert!(s.contains("input     image [batch, 1, 28, 28] F32"), "{s}");
    assert!(s.contains("output    logits [batch, 10] F32"), "{s}");
    assert!(s.contains("Conv") && s.contains("Gemm"), "{s}");
    let out = hudd(&["inspect", "--ops", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |op: &str| {
        let r = rows.as_array().unwrap().iter().find(|r| r["op"] == op).unwrap_or_else(|| panic!("{op}: {rows}"));
        (r["evaluate"].as_bool().unwrap(), r["heatmaps"].as_str().map(str::to_string), r["retrain"].as_bool().unwrap())
    };
    assert_eq!(row("Conv"), (true, Some("the preset's layer rule".into()), true));
    assert_eq!(row("MaxPool"), (true, Some("winner takes all".into()), true));
    assert_eq!(row("ReduceMean"), (true, Some("norm (ε on the linear map)".into()), true));
    assert_eq!(row("HardSwish"), (true, Some("pass".into()), true));
    assert_eq!(row("Split").1.as_deref(), Some("routing"));
    assert_eq!(row("Sin"), (true, None, false), "runs, cannot be explained or retrained");
    assert_eq!(row("Erf"), (true, Some("pass".into()), true), "exact GELU written out");
    let text = stdout(&hudd(&["inspect", "--ops"]));
    assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Sin", "yes", "-", "-"]), "{text}");
    let out = hudd(&["inspect", "--json", fmnist_model().to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["op_counts"]["Conv"], 2);
    let conv = v["op_support"].as_array().unwrap().iter().find(|r| r["op"] == "Conv").unwrap();
    assert_eq!((conv["heatmaps"].as_str(), conv["retrain"].as_bool()), (Some("the preset's layer rule"), Some(true)));
}

#[test]
fn rerun_into_the_same_folder_leaves_no_stale_results() {
    let run = tempfile::tempdir().unwrap();
    let stale = run.path().join("results/improvement.csv");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::write(&stale, "old").unwrap();
    let data = tempfile::tempdir().unwrap();
    copy_tree(&fmnist_data().join("test/bag"), &data.path().join("test/bag"));
    let out = hudd(&[
        "evaluate",
        "-m",
        &arg(&fmnist_model()),
        "-c",
        &arg(&fmnist_config()),
        "-d",
        &arg(data.path()),
        "-o",
        &arg(run.path()),
        "-q",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stale.exists(), "a split this run did not evaluate keeps no result file");
    assert!(run.path().join("results/test.csv").exists());
    let names: Vec<String> = std::fs::read_dir(run.path().join("results"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
}
