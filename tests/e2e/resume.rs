//! Resumable, reproducible runs: a run killed after any stage and rerun gives the same bytes as an
//! uninterrupted one; a rerun reuses only stages whose inputs and files are unchanged; thread
//! count and batch size do not change the results (the unsafe set's included); `hudd verify --rerun` reproduces a bundle.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{analyze_args, arg, copy_tree, files_under, fmnist_data, hudd, stderr, stdout};

fn analyze(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let o = hudd(&analyze_args(data, out, extra));
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// Every result file of a run folder, by path: what must not depend on how the run was made. The
/// records of how it was made (`run.json`, `timings.json`, the bundle's manifest and the HTML
/// that inlines the report) are left out, and `report.json` is compared without its run block.
fn results(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for (rel, path) in files_under(run) {
        if ["run.json", "timings.json", "report/manifest.json", "report/index.html"].contains(&rel.as_str()) {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if rel == "report/report.json" {
            let mut report: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            report.as_object_mut().unwrap().remove("run");
            bytes = serde_json::to_vec_pretty(&report).unwrap();
        }
        files.insert(rel, bytes);
    }
    files
}

fn assert_same(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>, what: &str) {
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(a), names(b), "{what}: other files");
    let differ: Vec<&String> = a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, _)| k).collect();
    assert!(differ.is_empty(), "{what}: these files differ: {differ:?}");
}

/// Runs `hudd analyze` with `HUDD_PAUSE_AFTER=stage`, waits until it says it paused, and kills it
/// (SIGKILL on Unix).
fn analyze_killed_after(data: &Path, out: &Path, stage: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hudd"))
        .args(analyze_args(data, out, &[]))
        .env("HUDD_PAUSE_AFTER", stage)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains(&format!("paused after stage {stage}")) {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    panic!("hudd never paused after {stage} ({status}): {}", seen.join("\n"));
}

#[test]
fn a_run_killed_after_any_stage_resumes_to_the_same_bytes() {
    let data = fmnist_data();
    let whole = tempfile::tempdir().unwrap();
    let o = analyze(&data, whole.path(), &[]);
    assert!(!stdout(&o).contains("reused"), "a fresh run reuses nothing: {}", stdout(&o));
    let reference = results(whole.path());
    assert!(reference.contains_key("stages.json") && reference.contains_key("complete.json"));

    let stages = ["evaluate", "heatmaps", "clusters", "pictures", "report"];
    for (i, stage) in stages.iter().enumerate() {
        let run = tempfile::tempdir().unwrap();
        analyze_killed_after(&data, run.path(), stage);
        assert!(!run.path().join("complete.json").exists(), "killed after {stage}: not complete");
        let o = analyze(&data, run.path(), &[]);
        let text = stdout(&o);
        let reused = stages[..=i.min(3)].join(", ");
        assert!(
            text.contains(&format!("(completed earlier from the same inputs; --force redoes them): {reused}\n")),
            "after {stage}: {text}"
        );
        assert_same(&reference, &results(run.path()), &format!("killed after {stage}, then rerun"));
    }
}

#[test]
fn a_complete_run_is_left_alone_and_force_redoes_every_stage() {
    let data = fmnist_data();
    let run = tempfile::tempdir().unwrap();
    analyze(&data, run.path(), &[]);
    let before = results(run.path());
    let run_json = std::fs::read(run.path().join("run.json")).unwrap();
    let o = analyze(&data, run.path(), &[]);
    assert!(stdout(&o).contains("nothing was rewritten"), "{}", stdout(&o));
    assert_eq!(std::fs::read(run.path().join("run.json")).unwrap(), run_json, "run.json untouched");
    assert!(hudd(&["verify", &arg(&run.path().join("report"))]).status.success());

    let o = analyze(&data, run.path(), &["--force"]);
    assert!(!stdout(&o).contains("reused"), "{}", stdout(&o));
    assert_ne!(std::fs::read(run.path().join("run.json")).unwrap(), run_json, "redone: a new run record");
    assert_same(&before, &results(run.path()), "forced rerun");
}

#[test]
fn changed_inputs_or_damaged_files_redo_the_stages_they_feed() {
    let data = tempfile::tempdir().unwrap();
    copy_tree(&fmnist_data(), data.path());
    let run = tempfile::tempdir().unwrap();
    analyze(data.path(), run.path(), &[]);
    let reference = results(run.path());
    let reused = |o: &std::process::Output| {
        let text = stdout(o);
        text.lines()
            .find_map(|l| l.split_once("--force redoes them): ").map(|(_, s)| s.to_string()))
            .unwrap_or_default()
    };

    // A damaged heatmap file: the heatmaps and everything after them are redone, to the same bytes.
    let npy = std::fs::read_dir(run.path().join("heatmaps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "npy"))
        .unwrap();
    let mut bytes = std::fs::read(&npy).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&npy, bytes).unwrap();
    let o = analyze(data.path(), run.path(), &[]);
    assert_eq!(reused(&o), "evaluate");
    assert_same(&reference, &results(run.path()), "damaged heatmap, rerun");

    // Other clustering options: evaluation and heatmaps are reused, the clustering is redone.
    let o = analyze(data.path(), run.path(), &["--linkage", "average"]);
    assert_eq!(reused(&o), "evaluate, heatmaps");

    // One test image's bytes changed (same name, same label): everything is redone.
    let test = data.path().join("test");
    let class = std::fs::read_dir(&test).unwrap().map(|e| e.unwrap().path()).find(|p| p.is_dir()).unwrap();
    let mut images: Vec<_> = std::fs::read_dir(&class).unwrap().map(|e| e.unwrap().path()).collect();
    images.sort();
    std::fs::copy(&images[1], &images[0]).unwrap();
    let o = analyze(data.path(), run.path(), &[]);
    assert_eq!(reused(&o), "", "{}", stdout(&o));
}

#[test]
fn results_do_not_depend_on_threads_or_batch_size() {
    let data = fmnist_data();
    let one = tempfile::tempdir().unwrap();
    analyze(&data, one.path(), &["-j", "1", "--set", "run.batch_size=7"]);
    let two = tempfile::tempdir().unwrap();
    analyze(&data, two.path(), &["-j", "2", "--set", "run.batch_size=64"]);
    // The unsafe set too: assigned with other threads and batch sizes.
    for (run, threads, batch) in [(one.path(), "1", "3"), (two.path(), "2", "64")] {
        let o = hudd(&["assign", "--run", &arg(run), "-j", threads, "--batch-size", batch, "-q"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (a, b) = (results(one.path()), results(two.path()));
    assert!(a.keys().any(|k| k.starts_with("heatmaps/")) && a.contains_key("unsafe/unsafe.csv"), "{:?}", a.keys());
    assert_same(&a, &b, "-j 1 and batches of 7 against -j 2 and batches of 64");
    // Neither is part of the stages' inputs: with another batch size the run is up to date.
    let o = analyze(&data, two.path(), &["--set", "run.batch_size=8"]);
    assert!(stdout(&o).contains("nothing was rewritten"), "{}", stdout(&o));
}

#[test]
fn verify_rerun_reproduces_a_bundle_and_names_what_changed() {
    let data = tempfile::tempdir().unwrap();
    copy_tree(&fmnist_data(), data.path());
    let run = tempfile::tempdir().unwrap();
    analyze(data.path(), run.path(), &[]);
    let bundle = arg(&run.path().join("report"));
    let o = hudd(&["verify", &bundle, "--rerun"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("reproduced: "), "{}", stdout(&o));

    // The data changed since: a Wrong test image now holds another image's pixels.
    let wrong = std::fs::read_to_string(data.path().join("wrong.txt")).unwrap();
    let first = wrong.lines().find(|l| l.starts_with("test/")).unwrap().trim();
    let image = data.path().join(first);
    let other = std::fs::read_dir(image.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p != &image && p.extension().is_some_and(|e| e == "png"))
        .unwrap();
    std::fs::copy(&other, &image).unwrap();
    let kept = tempfile::tempdir().unwrap();
    let into = kept.path().join("rerun");
    let o = hudd(&["verify", &bundle, "--rerun", "--rerun-into", &arg(&into)]);
    assert!(!o.status.success());
    let text = stdout(&o);
    assert!(text.contains("differs field analysis"), "{text}");
    assert!(stderr(&o).contains("the rerun did not reproduce the bundle"), "{}", stderr(&o));
    assert!(into.join("report/report.json").is_file(), "the rerun is kept");
}
