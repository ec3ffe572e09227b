//! Trust, second round (issue 33): a hostile or careless user's input on the stages added since the
//! first round. Each case is a clear error or a recorded skip, never a hang, a silent reuse or an
//! overwritten input.

use std::path::Path;

use crate::common::*;

/// A copy of two classes of the fixture's test split, and one of its improvement split.
fn small_data() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for class in ["bag", "coat"] {
        for split in ["test", "improvement"] {
            copy_tree(&fmnist_data().join(split).join(class), &d.path().join(split).join(class));
        }
    }
    d
}

#[cfg(unix)]
fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Row 5: a named pipe called `x.png` in a split (opening it would block until a writer came) is
/// never opened: a recorded skip for `analyze`, left out of the candidates of `assign`.
#[cfg(unix)]
#[test]
fn a_named_pipe_among_the_images_is_a_recorded_skip() {
    let data = small_data();
    mkfifo(&data.path().join("test/bag/x.png"));
    mkfifo(&data.path().join("improvement/coat/y.png"));
    let run = tempfile::tempdir().unwrap();
    let o = analyze_fmnist(data.path(), run.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let skipped = std::fs::read_to_string(run.path().join("results/skipped.csv")).unwrap();
    let row = skipped.lines().find(|l| l.contains("test/bag/x.png")).unwrap_or_else(|| panic!("{skipped}"));
    assert!(row.contains("named pipe"), "{row}");
    let o = hudd_within(&["assign", "--run", &arg(run.path()), "-q"], 600);
    assert!(o.status.success(), "{}", stderr(&o));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("unsafe/unsafe.json")).unwrap()).unwrap();
    assert_eq!(record["candidates"], 20, "the 20 improvement images, not the pipe: {record}");
    // The pipe is a recorded skip of the unsafe set too, as is a file that is not an image; a
    // sharded assign, merged, records them once, as the unsharded run does.
    std::fs::write(data.path().join("improvement/notes.txt"), "not an image").unwrap();
    let o = hudd_within(&["assign", "--run", &arg(run.path()), "--batch-size", "8", "-q"], 600);
    assert!(o.status.success(), "{}", stderr(&o));
    let unsharded = std::fs::read(run.path().join("unsafe/unsafe.json")).unwrap();
    let record: serde_json::Value = serde_json::from_slice(&unsharded).unwrap();
    let skipped = record["skipped"].as_array().unwrap();
    let reason =
        |name: &str| skipped.iter().find(|k| k["image"] == name).map(|k| k["reason"].as_str().unwrap().to_string());
    assert!(reason("coat/y.png").is_some_and(|r| r.contains("named pipe")), "{skipped:?}");
    assert!(reason("notes.txt").is_some(), "{skipped:?}");
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    for i in 0..2 {
        let shard = format!("{i}/2");
        let o = hudd_within(&["assign", "--run", &arg(run.path()), "--shard", &shard, "--batch-size", "8", "-q"], 600);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = hudd_within(&["merge", &arg(run.path())], 600);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(run.path().join("unsafe/unsafe.json")).unwrap(), unsharded, "merged as unsharded");
}

/// Row 6: `/dev/zero` (a device that never ends) or a named pipe as the model is refused at once.
#[cfg(unix)]
#[test]
fn a_device_or_pipe_as_the_model_is_refused_without_reading_it() {
    let o = hudd_within(&["inspect", "/dev/zero"], 60);
    assert_clean_failure(&o, &["/dev/zero", "not a regular file (a device)"]);
    let dir = tempfile::tempdir().unwrap();
    let pipe = dir.path().join("model.onnx");
    mkfifo(&pipe);
    let o = hudd_within(&["inspect", &arg(&pipe)], 60);
    assert_clean_failure(&o, &["model.onnx", "named pipe"]);
    let data = small_data();
    let o = hudd_within(
        &["analyze", "-m", "/dev/zero", "-d", &arg(data.path()), "-o", &arg(&dir.path().join("run")), "-q"],
        60,
    );
    assert_clean_failure(&o, &["not a regular file"]);
}

/// Row 2: `hudd retrain --out` naming one of the run's records, a file inside the run other than
/// under `RUN/retrain/`, or a file in the dataset is refused before any training, and the file is
/// untouched; `RUN/retrain/M2.onnx` is allowed.
#[test]
fn retrain_never_writes_over_the_runs_records_or_the_data() {
    let data = tempfile::tempdir().unwrap();
    copy_tree(&fmnist_data(), data.path());
    let (_work, run) = assigned_run(data.path());
    let retrain = |out: &Path| {
        let (run, out) = (arg(&run), arg(out));
        hudd(&["retrain", "--run", &run, "--labels", "auto", "-o", &out, "--epochs", "1", "-q"])
    };
    // balanced.csv exists once `hudd bootstrap` ran; the refusal comes before the bootstrap.
    let o = hudd(&["bootstrap", "--run", &arg(&run), "--labels", "auto"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for out in [
        run.join("clusters.json"),
        run.join("unsafe/balanced.csv"),
        run.join("run.json"),
        run.join("retrain.onnx"),
        run.join("retrain/retrain.json"),
        data.path().join("test/m2.onnx"),
    ] {
        let before = std::fs::read(&out).ok();
        let o = retrain(&out);
        assert_clean_failure(&o, &["refusing to write"]);
        assert_eq!(std::fs::read(&out).ok(), before, "{} untouched", out.display());
    }
    let o = retrain(&run.join("retrain/m2.onnx"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run.join("retrain/m2.onnx").is_file());
}

/// Row 3: one writer per run. While a process holds the run's lock, `analyze`, `assign`,
/// `bootstrap`, `retrain`, `report`, `compare`, `evaluate` and `cluster` into it are
/// refused at once, naming the holder; afterwards they run.
#[test]
fn a_second_writer_of_a_run_is_refused_naming_the_first() {
    let (_work, run) = assigned_run(&fmnist_data());
    // A shard folder for `hudd merge` to find (empty: the lock refuses before it is read).
    std::fs::create_dir_all(run.join("shards/assign-0-of-1")).unwrap();
    let before = results_of(&run);
    let held = hudd_core::run::RunDir::new(&run).lock("hudd analyze").unwrap();
    let r = arg(&run);
    let (model, config, data) = (arg(&fmnist_model()), arg(&fmnist_config()), arg(&fmnist_data()));
    let heatmaps = arg(&run.join("heatmaps"));
    for args in [
        vec!["analyze", "-m", &model, "-c", &config, "-d", &data, "-o", &r, "-q"],
        vec!["assign", "--run", &r, "-q"],
        vec!["bootstrap", "--run", &r, "--labels", "auto"],
        vec!["retrain", "--run", &r, "--labels", "auto", "-o", "/tmp/never.onnx", "-q"],
        vec!["report", "--run", &r, "-q"],
        vec!["compare", "--run", &r, "--labels", "auto", "-q"],
        vec!["evaluate", "-m", &model, "-c", &config, "-d", &data, "-o", &r, "-q"],
        vec!["cluster", "--heatmaps", &heatmaps, "-o", &r, "-q"],
        vec!["merge", &r],
    ] {
        let o = hudd_within(&args, 120);
        assert_clean_failure(&o, &["is being written by `hudd analyze`", &std::process::id().to_string()]);
    }
    assert_eq!(results_of(&run), before, "nothing of the run changed");
    drop(held);
    let o = hudd(&["bootstrap", "--run", &r, "--labels", "auto"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every file of a run folder (the lock aside) with its SHA-256, by relative path.
fn results_of(run: &Path) -> std::collections::BTreeMap<String, String> {
    files_under(run)
        .into_iter()
        .filter(|(rel, _)| rel != hudd_core::run::lock::FILE)
        .map(|(rel, path)| (rel, hudd_core::fsio::sha256_file(&path).unwrap()))
        .collect()
}

/// Row 4: analysing a run again (other clusters) leaves its earlier unsafe set out of the report
/// and the later stages refuse it until `hudd assign` reruns; an unsafe image replaced after
/// `hudd assign` is refused by name.
#[test]
fn an_unsafe_set_of_earlier_clusters_or_changed_images_is_never_used() {
    let data = tempfile::tempdir().unwrap();
    copy_tree(&fmnist_data(), data.path());
    let (_work, run) = assigned_run(data.path());
    let r = arg(&run);
    let o = analyze_fmnist(data.path(), &run, &["--k", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("analysed again since `hudd assign`"), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("report/report.json")).unwrap()).unwrap();
    assert!(report["unsafe_set"].is_null(), "the stale set is left out of the report");
    let o = hudd(&["bootstrap", "--run", &r, "--labels", "auto"]);
    assert_clean_failure(&o, &["rerun `hudd assign`"]);
    let o = hudd(&["assign", "--run", &r, "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hudd(&["bootstrap", "--run", &r, "--labels", "auto"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // One unsafe image replaced by another image after `hudd assign`.
    let unsafe_csv = std::fs::read_to_string(run.join("unsafe/unsafe.csv")).unwrap();
    let first = unsafe_csv.lines().nth(1).unwrap().split(',').next().unwrap().to_string();
    let improvement = data.path().join("improvement");
    let other = std::fs::read_dir(improvement.join("bag")).unwrap().next().unwrap().unwrap().path();
    let target = improvement.join(&first);
    let replacement = if other == target { improvement.join("coat") } else { other };
    let replacement = if replacement.is_dir() {
        std::fs::read_dir(replacement).unwrap().next().unwrap().unwrap().path()
    } else {
        replacement
    };
    std::fs::copy(&replacement, &target).unwrap();
    let o = hudd(&["bootstrap", "--run", &r, "--labels", "auto"]);
    assert_clean_failure(&o, &[&format!("the unsafe image `{first}` changed"), "rerun `hudd assign`"]);
}

fn analyze_fmnist(data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    hudd_within(&analyze_args(data, run, extra), 600)
}

/// Row 15: output into a pipe whose reader stopped (`hudd inspect --ops | head -1`) ends quietly:
/// no panic message, the status of a process ended by SIGPIPE.
#[cfg(unix)]
#[test]
fn a_closed_output_pipe_ends_the_command_quietly() {
    // A pipe whose reading end is closed before hudd writes a byte.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_hudd")).args(["inspect", "--ops"]).stdout(writer).output();
    let o = o.unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{err}");
    assert_eq!(o.status.code(), Some(141), "{err}");
}

/// Row 11: absurd epoch counts are usage errors (exit 2) naming the allowed range, not a panic or
/// an 800 TB allocation; a demo's `--repeats` is bounded too.
#[test]
fn absurd_epoch_and_repeat_counts_are_usage_errors() {
    for epochs in ["18446744073709551615", "100000000000000", "0"] {
        let o =
            hudd(&["retrain", "--run", "/nonexistent", "--labels", "auto", "-o", "/tmp/m2.onnx", "--epochs", epochs]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("--epochs") && !stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
    let o = hudd(&["compare", "--run", "/nonexistent", "--labels", "auto", "--epochs", "100000000000000"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = hudd(&["demo", "--repeats", "4000000000"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// Row 16: `hudd analyze --method hdbscan` runs through the report: an image that is noise in
/// the first layer takes its thumbnail from a layer that clusters it (or from the dataset), and
/// the bundle verifies.
#[test]
fn the_feature_path_analysis_runs_through_the_report() {
    let run = tempfile::tempdir().unwrap();
    let o = analyze_fmnist(&fmnist_data(), run.path(), &["--method", "hdbscan"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let clusters: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("clusters.json")).unwrap()).unwrap();
    let noise = clusters["layers"][0]["noise"].as_array().map_or(0, Vec::len);
    assert!(noise > 0, "the case needs noise in the first layer: {}", clusters["layers"][0]);
    let o = hudd(&["verify", &arg(&run.path().join("report"))]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("report/report.json")).unwrap()).unwrap();
    assert_eq!(report["images"].as_array().unwrap().len(), clusters["images"].as_u64().unwrap() as usize);
}

/// Row 17: a model that predicts one class for every test image (here: the inputs scaled to
/// nothing) is named with its class and the likely cause, by `evaluate` and `analyze`.
#[test]
fn a_model_that_predicts_one_class_is_called_out() {
    let out = tempfile::tempdir().unwrap();
    let squash = ["--set", "input.std=[100000.0]"];
    let o = analyze_fmnist(&fmnist_data(), out.path(), &squash);
    assert!(o.status.success(), "{}", stderr(&o));
    let warning = "warning: the model predicts `sandal` for all 300 test images (10.0 % accuracy)";
    assert!(stderr(&o).contains(warning) && stderr(&o).contains("input preprocessing"), "{}", stderr(&o));
    // Analysed again from the same inputs: nothing runs, and the stage line says so.
    let o = analyze_fmnist(&fmnist_data(), out.path(), &squash);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stdout(&o).contains("-0.0 s") && !stdout(&o).contains("stages: ;"), "{}", stdout(&o));
    let mut args = vec!["evaluate", "-m", "", "-c", "", "-d", "", "-o", "", "-q"];
    let (m, c, d, e) =
        (arg(&fmnist_model()), arg(&fmnist_config()), arg(&fmnist_data()), arg(&out.path().join("evaluation")));
    for (i, v) in [(2, &m), (4, &c), (6, &d), (8, &e)] {
        args[i] = v;
    }
    args.extend(squash);
    let o = hudd(&args);
    assert!(o.status.success() && stderr(&o).contains(warning), "{}", stderr(&o));
}

/// Row 13: a diverging retrain (`--lr 1e6`) stops at the first non-finite loss, naming the epoch,
/// the step, the loss and what to try, and writes no model.
#[test]
fn a_diverging_retrain_stops_and_writes_no_model() {
    let (work, run) = assigned_run(&fmnist_data());
    let out = work.path().join("m2.onnx");
    let o =
        hudd(&["retrain", "--run", &arg(&run), "--labels", "auto", "-o", &arg(&out), "--lr", "1e6", "--epochs", "3"]);
    assert_clean_failure(&o, &["training diverged at epoch", "step", "the loss is NaN", "--lr, now 1000000"]);
    assert!(!out.exists(), "no model is written");
    assert!(!run.join("retrain/retrain.json").exists(), "no record of a retraining that did not happen");
}

/// Row 9: a `clusters.json` edited after the analysis (here two clusters given one id) is refused
/// by `assign` and `report`, naming the file; rewriting it as it was makes the run usable again.
#[test]
fn an_edited_clusters_json_is_refused() {
    let run = tempfile::tempdir().unwrap();
    let o = analyze_fmnist(&fmnist_data(), run.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = run.path().join("clusters.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let edited = original.replacen("\"id\": 2,", "\"id\": 1,", 1);
    assert_ne!(edited, original, "the case needs a cluster 2");
    std::fs::write(&path, &edited).unwrap();
    for args in [vec!["assign", "--run", &arg(run.path()), "-q"], vec!["report", "--run", &arg(run.path()), "-q"]] {
        let o = hudd(&args);
        assert_clean_failure(&o, &["clusters.json was changed after `hudd analyze` wrote it"]);
    }
    std::fs::write(&path, &original).unwrap();
    let o = hudd(&["assign", "--run", &arg(run.path()), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Row 18 (and section 2): when the kept epoch is 0 (here `--lr 0`: no epoch can do better), the
/// terminal and `retrain.json` say the written model is the analysed one unchanged.
#[test]
fn an_unchanged_model_is_not_called_retrained() {
    let (work, run) = assigned_run(&fmnist_data());
    let out = work.path().join("m2.onnx");
    let o = hudd(&["retrain", "--run", &arg(&run), "--labels", "auto", "-o", &arg(&out), "--lr", "0", "--epochs", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("holds the analysed weights unchanged"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("retrained model:"), "{}", stdout(&o));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("retrain/retrain.json")).unwrap()).unwrap();
    assert_eq!((record["unchanged"].as_bool(), record["chosen_epoch"].as_u64()), (Some(true), Some(0)));
}
