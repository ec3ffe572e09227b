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

fn assert_clean_failure(out: &std::process::Output, needles: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "exit 1 expected; stderr:\n{}", stderr(out));
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "message should mention `{n}`:\n{err}");
    }
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
    assert_clean_failure(&o, &["1 inconsistent"]);
    assert!(stdout(&o).contains("inconsistent manifest.json names report 0000"), "{}", stdout(&o));
    let mut m: serde_json::Value = serde_json::from_str(&original).unwrap();
    m["files"][0]["bytes"] = 1.into();
    std::fs::write(&manifest_path, serde_json::to_string(&m).unwrap()).unwrap();
    assert_clean_failure(&hudd(&["verify", &arg(&bundle)]), &["1 changed"]);
}
