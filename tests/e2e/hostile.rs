//! Input a hostile or careless user gives: each case a clear error or a recorded skip, never a
//! silent wrong result, a hang, or a lost file (issue 14's table, row by row).

use std::path::Path;

use hudd_core::cluster::report::ClustersReport;

use crate::common::*;

/// A copy of two classes of the fixture's test split.
fn small_data() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for class in ["bag", "coat"] {
        copy_tree(&fmnist_data().join("test").join(class), &d.path().join("test").join(class));
    }
    d
}

fn fmnist(command: &str, data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> =
        [command, "-m", &arg(&fmnist_model()), "-c", &arg(&fmnist_config())].iter().map(|s| s.to_string()).collect();
    args.extend(["-d".into(), arg(data), "-o".into(), arg(out), "-q".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    hudd(&args)
}

fn skipped_csv(run: &Path) -> String {
    std::fs::read_to_string(run.join("results/skipped.csv")).unwrap()
}

#[cfg(unix)]
#[test]
fn link_loops_in_the_data_are_walked_once_and_recorded() {
    let data = small_data();
    std::os::unix::fs::symlink("..", data.path().join("test/bag/loop")).unwrap();
    std::os::unix::fs::symlink("../..", data.path().join("test/coat/up")).unwrap();
    let run = tempfile::tempdir().unwrap();
    let o = fmnist("evaluate", data.path(), run.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("results/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["splits"][0]["evaluated"], 60, "every image once: {summary}");
    let skipped = skipped_csv(run.path());
    assert!(skipped.contains("test/bag/loop") && skipped.contains("symbolic link"), "{skipped}");
}

#[test]
fn manifests_that_list_an_image_twice_or_leave_the_data_folder_are_errors() {
    let data = small_data();
    let first = std::fs::read_dir(data.path().join("test/bag")).unwrap().next().unwrap().unwrap().file_name();
    let first = first.to_string_lossy();
    std::fs::write(data.path().parent().unwrap().join("outside.png"), b"x").ok();
    for (rows, needle) in [
        (format!("bag/{first},bag\nbag/{first},coat\n"), "listed a second time (first on line 2)"),
        ("../../outside.png,bag\n".to_string(), "leaves the split folder"),
        ("/etc/hostname.png,bag\n".to_string(), "leaves the split folder"),
    ] {
        std::fs::write(data.path().join("test/manifest.csv"), format!("path,label\n{rows}")).unwrap();
        let run = tempfile::tempdir().unwrap();
        let o = fmnist("analyze", data.path(), run.path(), &[]);
        assert_clean_failure(&o, &[needle, "manifest.csv"]);
        assert!(!run.path().join("clusters.json").exists());
    }
}

#[test]
fn member_images_whose_names_flatten_alike_stay_two_files() {
    let data = small_data();
    // A test image the model gets wrong, twice, under names that `/` → `__` maps to one file.
    let wrong = std::fs::read_to_string(fmnist_data().join("wrong.txt")).unwrap();
    let src = wrong.lines().find(|l| l.starts_with("test/coat/") || l.starts_with("test/bag/")).unwrap();
    let class = src.split('/').nth(1).unwrap();
    let dir = data.path().join("test").join(class);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::copy(fmnist_data().join(src), dir.join("a/b.png")).unwrap();
    let mut other = image::open(fmnist_data().join(src)).unwrap().to_luma8();
    other.put_pixel(0, 0, image::Luma([255]));
    other.save(dir.join("a__b.png")).unwrap();
    let run = tempfile::tempdir().unwrap();
    let o = fmnist("analyze", data.path(), run.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: ClustersReport =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("clusters.json")).unwrap()).unwrap();
    let run_dir = hudd_core::run::RunDir::new(run.path());
    let mut seen = 0;
    for layer in &report.layers {
        for c in &layer.clusters {
            for m in &c.members {
                let copy = run_dir.member_copy(&layer.name, c.id, &m.image);
                let original = data.path().join(&m.image);
                assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&original).unwrap(), "{}", m.image);
                seen += usize::from(m.image.ends_with("a/b.png") || m.image.ends_with("a__b.png"));
            }
        }
    }
    assert_eq!(seen, 2 * report.layers.len(), "both images are clustered in every layer");
}

#[test]
fn report_never_deletes_files_it_did_not_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_data();
    let run = dir.path().join("run");
    let o = fmnist("analyze", data.path(), &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A folder of someone else's, with a manifest.json of its own.
    let web = dir.path().join("web");
    std::fs::create_dir_all(&web).unwrap();
    std::fs::write(web.join("manifest.json"), r#"{"short_name": "app"}"#).unwrap();
    std::fs::write(web.join("index.html"), "mine").unwrap();
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&web), "-q"]);
    assert_clean_failure(&o, &["not a hudd bundle"]);
    assert_eq!(std::fs::read_to_string(web.join("index.html")).unwrap(), "mine");
    // A bundle with a reviewer's exported notes in it.
    let bundle = dir.path().join("bundle");
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&bundle), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(bundle.join("hudd-notes.json"), "{\"notes\": 1}").unwrap();
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&bundle), "-q"]);
    assert_clean_failure(&o, &["hudd-notes.json", "move them out"]);
    assert!(bundle.join("hudd-notes.json").is_file());
}

#[test]
fn verify_catches_an_edited_manifest_or_inlined_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = small_data();
    let run = dir.path().join("run");
    let o = fmnist("analyze", data.path(), &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bundle = run.join("report");
    assert!(hudd(&["verify", &arg(&bundle)]).status.success());
    let manifest_path = bundle.join("manifest.json");
    let original = std::fs::read_to_string(&manifest_path).unwrap();
    let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
    m["report_id"] = "0".repeat(64).into();
    std::fs::write(&manifest_path, serde_json::to_string(&m).unwrap()).unwrap();
    let o = hudd(&["verify", &arg(&bundle)]);
    // Against report.json, and against the run folder's completion record.
    assert_clean_failure(&o, &["2 inconsistent"]);
    assert!(stdout(&o).contains("inconsistent manifest.json names report 0000"), "{}", stdout(&o));
    let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
    m["files"][0]["bytes"] = 1.into();
    std::fs::write(&manifest_path, serde_json::to_string(&m).unwrap()).unwrap();
    assert_clean_failure(&hudd(&["verify", &arg(&bundle)]), &["1 changed"]);
}

#[test]
fn nan_logits_are_skipped_per_image_and_stop_the_run_when_everywhere() {
    let data = small_data();
    // One image with a bright top-left pixel: nan_corner.onnx's logits are NaN for it alone.
    let src = std::fs::read_dir(data.path().join("test/bag")).unwrap().next().unwrap().unwrap().path();
    let mut img = image::open(&src).unwrap().to_luma8();
    img.put_pixel(0, 0, image::Luma([255]));
    img.save(data.path().join("test/bag/bright-corner.png")).unwrap();
    let run = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/nan_corner.onnx");
    let args = ["evaluate", "-m", &arg(&model), "-c", &arg(&fmnist_config()), "-d", &arg(data.path())];
    let o = hudd(&[&args[..], &["-o", &arg(run.path()), "-q"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let skipped = skipped_csv(run.path());
    let line = skipped.lines().find(|l| l.contains("bright-corner.png")).unwrap_or_else(|| panic!("{skipped}"));
    assert!(line.contains("NaN or infinite"), "{line}");
    let test = std::fs::read_to_string(run.path().join("results/test.csv")).unwrap();
    assert!(!test.contains("bright-corner.png") && !test.contains("NaN"), "never Correct or Wrong");
    // NaN for every image: the analysis stops instead of clustering zeros.
    let model = fixtures().join("models/nan_bias.onnx");
    let run = tempfile::tempdir().unwrap();
    let args = ["analyze", "-m", &arg(&model), "-c", &arg(&fmnist_config()), "-d", &arg(data.path())];
    let o = hudd(&[&args[..], &["-o", &arg(run.path()), "-q"]].concat());
    assert_clean_failure(&o, &["NaN or infinite for all 61 readable images of split `test`", "nan_bias.onnx"]);
    assert!(!run.path().join("clusters.json").exists() && !run.path().join("heatmaps").exists());
}

#[test]
fn a_recurrent_model_is_refused_naming_the_lstm_node() {
    let data = small_data();
    let run = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/lstm.onnx");
    let args = ["analyze", "-m", &arg(&model), "-c", &arg(&fmnist_config()), "-d", &arg(data.path())];
    let o = hudd(&[&args[..], &["-o", &arg(run.path()), "-q"]].concat());
    assert_clean_failure(&o, &["node `lstm`", "op `LSTM`", "no relevance rule", "lstm.onnx"]);
    assert!(!run.path().join("results").exists(), "refused before any stage");
}

#[test]
fn impossible_normalisation_and_bad_overrides_are_named() {
    let data = small_data();
    let run = tempfile::tempdir().unwrap();
    for (set, needle) in [
        ("input.scale=-1", "`[input] scale = -1` must be a positive"),
        ("input.std=[-1]", "`[input] std = [-1]` must hold positive"),
        ("input.mean=[inf]", "`[input] mean = [inf]` must hold finite"),
        ("input.layuot=nhwc", "`--set input.layuot=nhwc`"),
    ] {
        let o = fmnist("evaluate", data.path(), run.path(), &["--set", set]);
        assert_clean_failure(&o, &[needle]);
        assert!(!stderr(&o).contains("hudd.toml"), "the file is not to blame: {}", stderr(&o));
    }
}

#[test]
fn absurd_thread_counts_are_refused() {
    let data = small_data();
    let run = tempfile::tempdir().unwrap();
    let o = fmnist("evaluate", data.path(), run.path(), &["-j", "60000"]);
    assert_clean_failure(&o, &["-j 60000", "4 per core"]);
}

#[test]
fn an_image_header_declaring_a_gigapixel_is_a_recorded_skip() {
    let data = small_data();
    // A valid PNG of 1 × 1 whose IHDR says 100000 × 100000 (the CRC fixed up).
    let mut png = Vec::new();
    image::GrayImage::new(1, 1).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(data.path().join("test/bag/huge.png"), &png).unwrap();
    let run = tempfile::tempdir().unwrap();
    let o = fmnist("evaluate", data.path(), run.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let skipped = skipped_csv(run.path());
    assert!(skipped.contains("huge.png") && skipped.contains("100000 × 100000 pixels"), "{skipped}");
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn guessed_class_order_is_announced_and_stops_below_chance() {
    let data = small_data();
    // The model alone in a folder: no hudd.toml beside it, no --config; the folder names, sorted,
    // are not the model's logit order.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.onnx");
    std::fs::copy(fmnist_model(), &model).unwrap();
    let all = tempfile::tempdir().unwrap();
    copy_tree(&fmnist_data().join("test"), &all.path().join("test"));
    let run = dir.path().join("run");
    let o = hudd(&["analyze", "-m", &arg(&model), "-d", &arg(all.path()), "-o", &arg(&run), "-q"]);
    assert_clean_failure(
        &o,
        &["guessed from the sorted folder names", "fit this logit order far better", "[task] classes"],
    );
    // The order it suggests is the model's (models/fashion-mnist/hudd.toml).
    let config = std::fs::read_to_string(fmnist_config()).unwrap();
    let logit_order = config.lines().find(|l| l.starts_with("classes = ")).unwrap();
    assert!(stderr(&o).contains(logit_order), "{}", stderr(&o));
    assert!(stderr(&o).contains("classes: guessed from the sorted folder names (ankle-boot, bag,"), "{}", stderr(&o));
    assert!(!run.join("clusters.json").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["classes_from"], "folder-names");
    // With hudd.toml beside the model, it is found without --config, and announced.
    std::fs::copy(fmnist_config(), dir.path().join("hudd.toml")).unwrap();
    let o = hudd(&["evaluate", "-m", &arg(&model), "-d", &arg(data.path()), "-o", &arg(&run), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("found beside the model"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("guessed"), "{}", stderr(&o));
    all.close().unwrap();
}

#[test]
fn an_interrupted_rerun_leaves_no_report_that_verifies_beside_new_results() {
    let data = small_data();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let o = fmnist("analyze", data.path(), &run, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let complete = run.join("complete.json");
    let marker: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&complete).unwrap()).unwrap();
    assert_eq!(marker["bundle"], "report");
    assert!(hudd(&["verify", &arg(&run.join("report"))]).status.success());
    // Killed as the completion marker goes (the rerun has begun): no marker, no old report. (The
    // same inputs would find the run up to date: --force makes it a rerun.)
    let mut args: Vec<String> =
        ["analyze", "-m", &arg(&fmnist_model()), "-c", &arg(&fmnist_config())].iter().map(|s| s.to_string()).collect();
    args.extend(["-d".into(), arg(data.path()), "-o".into(), arg(&run), "-q".into(), "--force".into()]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hudd")).args(&args).spawn().unwrap();
    while complete.exists() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!complete.exists());
    let o = hudd(&["verify", &arg(&run.join("report"))]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    // A report that survives beside an incomplete run is not called intact either.
    let o = fmnist("analyze", data.path(), &run, &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::remove_file(&complete).unwrap();
    let o = hudd(&["verify", &arg(&run.join("report"))]);
    assert_clean_failure(&o, &["1 inconsistent"]);
    assert!(stdout(&o).contains("is incomplete (no complete.json"), "{}", stdout(&o));
}

#[test]
fn a_large_input_says_how_much_memory_a_batch_takes() {
    // One class, where the model has 8 outputs: the run stops right after the model and data are
    // checked, having said how much memory it would take.
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("test/a")).unwrap();
    std::fs::write(d.path().join("test/a/x.png"), b"not a png").unwrap();
    let run = tempfile::tempdir().unwrap();
    let model = fixtures().join("models/large_input.onnx");
    let o = hudd(&["analyze", "-m", &arg(&model), "-d", &arg(d.path()), "-o", &arg(run.path()), "-q", "-j", "1"]);
    assert_clean_failure(&o, &["8 values per image"]);
    let err = stderr(&o);
    // 3 × 4000² input + 8 × 4000² convolution + 16 pooled values, f32: ~704 MB per image.
    assert!(err.contains("memory: the activations take about 45.1 GB (704.0 MB per image × batch 64"), "{err}");
}

#[test]
fn selftest_passes_and_fails_on_a_deviating_reference() {
    let o = hudd(&["selftest"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    for check in ["evaluate    onnxruntime", "relevance   Zennit", "clustering  scipy + kneed", "retraining  PyTorch"] {
        assert!(out.contains(check), "{out}");
    }
    assert!(out.contains("all 4 oracle checks passed"), "{out}");
    // The same fixtures from a folder, one reference weight moved by 1 %: the retraining check fails.
    let dir = tempfile::tempdir().unwrap();
    for (f, _) in hudd_core::selftest::FILES {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root().join(f), &to).unwrap();
    }
    let after = dir.path().join("tests/fixtures/retrain/misc_ops/after/0.npy");
    let mut bytes = std::fs::read(&after).unwrap();
    let last = bytes.len() - 4;
    let v = f32::from_le_bytes(bytes[last..].try_into().unwrap()) * 1.01 + 1e-3;
    bytes[last..].copy_from_slice(&v.to_le_bytes());
    std::fs::write(&after, bytes).unwrap();
    std::fs::remove_file(dir.path().join("tests/fixtures/cluster/reference/reference.json")).unwrap();
    let json = dir.path().join("selftest.json");
    let o = hudd(&["selftest", "--fixtures", &arg(dir.path()), "--json", &arg(&json)]);
    assert_clean_failure(&o, &["2 of 4 oracle checks failed (clustering, retraining)"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(out.contains("FAIL (below)"), "{out}");
    assert!(err.contains("retraining failed: `conv0.weight` after 2 SGD steps"), "{err}");
    assert!(err.contains("clustering failed: could not run") && err.contains("reference.json"), "{err}");
    let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(results.as_array().unwrap().iter().filter(|c| c["passed"] == true).count(), 2);
    // Issue 33, row 14: an empty folder says what is missing, and no check prints a measure.
    let empty = tempfile::tempdir().unwrap();
    let o = hudd(&["selftest", "--fixtures", &arg(empty.path())]);
    assert_clean_failure(&o, &["no oracle check could run", "lacks the fixture files"]);
    assert!(!stdout(&o).contains("17976931348623157"), "no 309-digit number: {}", stdout(&o));
}

#[test]
fn every_bundle_carries_the_tool_confidence_record() {
    let data = small_data();
    let run = tempfile::tempdir().unwrap();
    let o = fmnist("analyze", data.path(), run.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("report/report.json")).unwrap()).unwrap();
    let t = &report["tool_confidence"];
    assert_eq!(t["version"], env!("CARGO_PKG_VERSION"));
    assert!(t["rustc"].as_str().unwrap().starts_with("rustc "), "{t}");
    assert!(t["target"].as_str().unwrap().contains('-') && !t["profile"].as_str().unwrap().is_empty(), "{t}");
    let commit = t["commit"].as_str().unwrap();
    assert!(commit == "unknown" || commit.len() >= 40, "{commit}");
    let checks = t["selftest"].as_array().unwrap();
    assert_eq!(checks.len(), 4);
    assert!(checks.iter().all(|c| c["passed"] == true && c["values"].as_u64().unwrap() > 0), "{checks:?}");
    // The rule of every heatmap layer of this run, from its heatmaps index.
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("heatmaps/index.json")).unwrap()).unwrap();
    let rules = t["rules"].as_array().unwrap();
    assert_eq!(rules.len(), index["layers"].as_array().unwrap().len());
    assert!(rules.iter().any(|r| r["rule"].as_str().unwrap_or("").contains("epsilon")), "{rules:?}");
    let limits = t["limitations"].as_array().unwrap();
    assert!(limits.iter().any(|l| l.as_str().unwrap().contains("LSTM")), "{limits:?}");
}

#[test]
fn a_model_the_engine_panics_on_is_an_error_without_a_panic_message() {
    // Found by the fuzzer (fuzz/regressions/onnx/): tract indexes out of bounds on this graph.
    let model = root().join("fuzz/regressions/onnx/onnx-seed0-103591.bin");
    let o = hudd(&["inspect", &arg(&model)]);
    assert_clean_failure(&o, &["the inference engine failed on it: internal error", "onnx-seed0-103591.bin"]);
    assert!(!stderr(&o).contains("thread 'main' panicked"), "{}", stderr(&o));
    // And one it no longer reaches: an output no node produces is refused by hudd itself.
    let model = root().join("fuzz/regressions/onnx/onnx-seed0-48530.bin");
    assert_clean_failure(&hudd(&["inspect", &arg(&model)]), &["graph output `logits` is produced by no node"]);
}
