//! Bad input never panics: each case gives a clear error (exit 1) or a recorded skip.

use std::path::Path;

use crate::common::*;

fn evaluate(model: &Path, data: &Path, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let run = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = vec![
        "evaluate".into(),
        "-m".into(),
        arg(model),
        "-c".into(),
        arg(&fmnist_config()),
        "-d".into(),
        arg(data),
        "-o".into(),
        arg(run.path()),
        "-q".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    (hudd(&args), run)
}

/// A copy of two classes of the fixture's test split.
fn small_data() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for class in ["bag", "coat"] {
        copy_tree(&fmnist_data().join("test").join(class), &d.path().join("test").join(class));
    }
    d
}

#[test]
fn corrupt_truncated_and_non_image_files_are_recorded_skips() {
    let data = small_data();
    let bag = data.path().join("test/bag");
    let good = std::fs::read_dir(&bag).unwrap().next().unwrap().unwrap().path();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(bag.join("truncated.png"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(bag.join("garbage.jpg"), b"\xff\xd8\xff this is not really a jpeg").unwrap();
    std::fs::write(bag.join("notes.txt"), b"hello").unwrap();
    std::fs::write(bag.join("empty.png"), b"").unwrap();
    let (out, run) = evaluate(&fmnist_model(), data.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("4 file(s) skipped"), "{}", stdout(&out));
    let skipped = std::fs::read_to_string(run.path().join("results/skipped.csv")).unwrap();
    for (name, why) in [
        ("truncated.png", "corrupt or truncated"),
        ("garbage.jpg", "corrupt or truncated"),
        ("notes.txt", "not an image file"),
        ("empty.png", "empty file"),
    ] {
        let line = skipped.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("{name} not in\n{skipped}"));
        assert!(line.starts_with("test,test/bag/") && line.contains(why), "{line}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("results/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["splits"][0]["skipped"], 4);
    assert_eq!(summary["splits"][0]["evaluated"], 60);
}

#[test]
fn images_of_another_size_are_resized_not_rejected() {
    let data = small_data();
    let src = std::fs::read_dir(data.path().join("test/bag")).unwrap().next().unwrap().unwrap().path();
    let img = image::open(&src).unwrap().resize_exact(56, 40, image::imageops::FilterType::Nearest);
    img.to_rgb8().save(data.path().join("test/bag/big_rgb.png")).unwrap();
    let (out, run) = evaluate(&fmnist_model(), data.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(run.path().join("results/test.csv")).unwrap();
    assert!(csv.contains("test/bag/big_rgb.png,"), "{csv}");
}

#[test]
fn empty_split_is_an_error() {
    let data = small_data();
    std::fs::create_dir_all(data.path().join("improvement/bag")).unwrap();
    std::fs::write(data.path().join("improvement/bag/readme.txt"), b"x").unwrap();
    let (out, _) = evaluate(&fmnist_model(), data.path(), &[]);
    assert_clean_failure(&out, &["split `improvement` holds no usable image", "improvement"]);
}

#[test]
fn split_whose_every_image_is_corrupt_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("test/bag")).unwrap();
    std::fs::write(d.path().join("test/bag/a.png"), b"not a png").unwrap();
    let (out, _) = evaluate(&fmnist_model(), d.path(), &[]);
    assert_clean_failure(&out, &["split `test` holds no usable image (1 skipped)"]);
}

#[test]
fn unknown_label_is_an_error() {
    let data = small_data();
    copy_tree(&fmnist_data().join("test/bag"), &data.path().join("test/handbag"));
    let (out, _) = evaluate(&fmnist_model(), data.path(), &[]);
    assert_clean_failure(&out, &["label `handbag` is not one of the 10 configured classes", "[task] classes"]);
}

#[test]
fn missing_dataset_layout_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let (out, _) = evaluate(&fmnist_model(), d.path(), &[]);
    assert_clean_failure(&out, &["no split folder found"]);
}

#[test]
fn malformed_model_is_an_error_naming_the_file() {
    let d = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fmnist_model()).unwrap();
    let broken = d.path().join("broken.onnx");
    std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
    let (out, _) = evaluate(&broken, &fmnist_data(), &[]);
    assert_clean_failure(&out, &["not a valid ONNX model", "broken.onnx"]);
    let text = d.path().join("text.onnx");
    std::fs::write(&text, b"hello world, not a protobuf").unwrap();
    let (out, _) = evaluate(&text, &fmnist_data(), &[]);
    assert_clean_failure(&out, &["not a valid ONNX model", "text.onnx"]);
    let (out, _) = evaluate(&d.path().join("missing.onnx"), &fmnist_data(), &[]);
    assert_clean_failure(&out, &["cannot read model", "missing.onnx"]);
}

#[test]
fn unsupported_op_names_the_node_and_op() {
    let model = fixtures().join("models/unsupported_op.onnx");
    let (out, _) = evaluate(&model, &fmnist_data(), &[]);
    assert_clean_failure(&out, &["node `mystery_node`", "op `HuddNoSuchOp`", "unsupported_op.onnx"]);
}

#[test]
fn configuration_contradicting_the_model_is_an_error_before_any_work() {
    let data = small_data();
    let (out, run) = evaluate(&fmnist_model(), data.path(), &["--set", "input.size=[32, 32]"]);
    assert_clean_failure(&out, &["height = 32", "height = 28", "image"]);
    assert!(!run.path().join("results").exists(), "nothing written");
    let (out, _) = evaluate(&fmnist_model(), data.path(), &["--set", "input.layout=nhwc"]);
    assert_clean_failure(&out, &["NHWC"]);
    let (out, _) = evaluate(&fmnist_model(), data.path(), &["--set", "task.output=probs"]);
    assert_clean_failure(&out, &["output = \"probs\"` is not an output", "`logits`"]);
    let (out, _) = evaluate(&fmnist_model(), data.path(), &["--set", "task.classes=[\"bag\", \"coat\"]"]);
    assert_clean_failure(&out, &["10 values per image", "2 classes"]);
    let (out, _) = evaluate(&fmnist_model(), data.path(), &["--set", "input.sise=3"]);
    assert_clean_failure(&out, &["sise"]);
}

#[test]
fn engine_parallelism_without_the_feature_says_how_to_get_it() {
    let data = small_data();
    let (out, _) = evaluate(&fmnist_model(), data.path(), &["--set", "run.parallelism=engine"]);
    if cfg!(feature = "tract-threads") {
        assert!(out.status.success(), "{}", stderr(&out));
    } else {
        assert_clean_failure(&out, &["tract-threads"]);
    }
}
