//! The report bundle: `hudd report` / `hudd verify`, old report versions, and the viewer in a real
//! headless Chromium opening `index.html` from file:// (see `webdriver.rs` for when that runs).

use std::path::Path;

use serde_json::json;

use crate::common::{arg, copy_tree, fixtures, hudd, small_demo as demo, stderr, stdout};
use crate::webdriver::{file_url, Browser, ARROW_LEFT, ARROW_RIGHT};

fn read_report(bundle: &Path) -> hudd_report::Report {
    hudd_report::read_report(&std::fs::read_to_string(bundle.join("report.json")).unwrap()).unwrap()
}

#[test]
fn demo_writes_a_complete_bundle_that_matches_the_run() {
    let bundle = demo().join("report");
    let report = read_report(&bundle);
    // The best layer carries its tree and map; cut at the chosen k, the tree gives its clusters.
    let analysis = report.analysis.as_ref().unwrap();
    let best_index = analysis.best_layer.unwrap();
    for (i, layer) in analysis.layers.iter().enumerate() {
        assert_eq!(layer.dendrogram.is_some(), i == best_index, "{}", layer.name);
        assert_eq!(layer.map.is_some(), i == best_index, "{}", layer.name);
    }
    let best = &analysis.layers[best_index];
    let tree = best.dendrogram.as_ref().unwrap();
    assert_eq!(tree.leaves.len(), analysis.images);
    assert_eq!(tree.merges.len(), analysis.images - 1);
    assert!(tree.heights.windows(2).all(|w| w[0] <= w[1]));
    let labels = tree.cut(best.k);
    for (leaf, &image) in tree.leaves.iter().enumerate() {
        let stored = best.clusters.iter().position(|c| c.members.iter().any(|m| m.image == image)).unwrap();
        assert_eq!(labels[leaf], stored, "image {image}");
    }
    // The simulator's causes: the best layer's purity, each cluster's majority cause.
    let known = best.known_causes.as_ref().expect("the demo's data has a cause column");
    assert!(known.purity > 0.0 && known.purity <= 1.0);
    assert!(best.clusters.iter().all(|c| c.known_cause.as_ref().is_some_and(|k| k.share > 0.0 && k.share <= 1.0)));
    let map = best.map.as_ref().unwrap();
    assert_eq!(map.points.len(), analysis.images);
    assert_eq!(map.images, tree.leaves);
    assert!(map.explained > 0.0 && map.explained <= 1.0, "{}", map.explained);
    assert!(map.points.iter().all(|p| p[0].is_finite() && p[1].is_finite()));
    // The retraining section is retrain.json and compare.json of the run.
    let retrain: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo().join("run/retrain/retrain.json")).unwrap()).unwrap();
    let t = report.retraining.as_ref().expect("the demo retrains");
    assert_eq!(Some(t.accuracy_after), retrain["after"]["overall"].as_f64());
    assert_eq!(Some(t.failing_after), retrain["after"]["failing_clusters"].as_f64());
    assert_eq!(t.retrained_sha256, retrain["retrained"]["sha256"].as_str().unwrap());
    let per = retrain["after"]["per_cluster"].as_array().unwrap();
    assert_eq!(t.clusters.len(), per.len());
    assert!(t.clusters.iter().zip(per).all(|(g, p)| Some(g.right_after as u64) == p["right"].as_u64()));
    let compare: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo().join("run/retrain/compare.json")).unwrap()).unwrap();
    let c = t.comparison.as_ref().expect("the demo compares");
    let names: Vec<&str> = c.methods.iter().map(|m| m.method.as_str()).collect();
    assert_eq!(names, ["before", "hudd", "bl1", "bl2"]);
    for m in &c.methods {
        assert_eq!(Some(m.overall.mean), compare[&m.method]["overall"]["mean"].as_f64(), "{}", m.method);
        assert_eq!(m.per_cluster.len(), t.clusters.len());
    }
    assert_eq!(report.format, "hudd-report");
    assert_eq!(report.model.file_name, "gaze_cnn.onnx");
    let model = std::fs::read(demo().join("model/gaze_cnn.onnx")).unwrap();
    assert_eq!(report.model.sha256, hudd_core::fsio::sha256_hex(&model));
    assert!(report.model.op_counts.get("Conv").is_some_and(|n| *n > 0));
    assert_eq!(report.run.seeds.get("simulate"), Some(&2026));
    assert!(report.run.command_line.iter().any(|a| a == "demo"));
    assert!(report.run.timings.iter().any(|t| t.stage == "heatmaps"));
    let splits: Vec<&str> = report.datasets.iter().map(|d| d.split.name()).collect();
    assert_eq!(splits, ["train", "test", "improvement"]);
    // The data hash is the SHA-256 of the sorted image list.
    let test_csv = std::fs::read_to_string(demo().join("run/results/test.csv")).unwrap();
    let mut names: Vec<&str> = test_csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    names.sort_unstable();
    let list: String = names.iter().map(|n| format!("{n}\n")).collect();
    let test = report.datasets.iter().find(|d| d.split.name() == "test").unwrap();
    assert_eq!(test.sha256, hudd_core::fsio::sha256_hex(list.as_bytes()));
    // Accuracy and confusion agree with the result file.
    let eval = report.evaluation.splits.iter().find(|s| s.split.name() == "test").unwrap();
    let correct = test_csv.lines().skip(1).filter(|l| l.split(',').nth(1) == Some("Correct")).count();
    assert_eq!(eval.correct, correct);
    let confusion = eval.confusion.as_ref().unwrap();
    assert_eq!(confusion.iter().flatten().sum::<usize>(), eval.images);
    assert_eq!((0..confusion.len()).map(|i| confusion[i][i]).sum::<usize>(), correct);
    // Clusters: every layer partitions the clustered images; medoid first; files exist.
    let analysis = report.analysis.as_ref().unwrap();
    assert_eq!(analysis.images, eval.images - correct);
    assert!(analysis.best_layer.is_some());
    for layer in &analysis.layers {
        let mut seen: Vec<usize> = layer.clusters.iter().flat_map(|c| c.members.iter().map(|m| m.image)).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..analysis.images).collect::<Vec<_>>(), "{}", layer.name);
        assert_eq!(layer.clusters.len(), layer.k);
        for c in &layer.clusters {
            assert_eq!(c.members[0].distance_to_medoid, 0.0, "medoid first");
            for m in &c.members {
                if let Some(h) = &m.heatmap {
                    assert!(bundle.join(h).is_file(), "{h}");
                }
            }
            if Some(layer) == report.best_layer() {
                assert!(bundle.join(c.gif.as_ref().unwrap()).is_file(), "the best layer's clusters have GIFs");
            }
        }
    }
    for im in &report.images {
        assert!(bundle.join(&im.thumbnail).is_file());
    }
    // The unsafe set (the demo runs `hudd assign` and `hudd bootstrap`): as unsafe.csv and
    // unsafe.json say, nearest first, with thumbnails, GIFs and the engineers' labels.
    let u = report.unsafe_set.as_ref().expect("the demo's bundle has the unsafe set");
    assert_eq!(Some(u.layer.as_str()), report.best_layer().map(|l| l.name.as_str()));
    assert_eq!(u.mode, "closest-u");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(demo().join("run/unsafe/unsafe.json")).unwrap()).unwrap();
    assert_eq!(u.candidates, record["candidates"].as_u64().unwrap() as usize);
    let unsafe_csv = std::fs::read_to_string(demo().join("run/unsafe/unsafe.csv")).unwrap();
    let rows: Vec<Vec<&str>> = unsafe_csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(u.clusters.iter().map(|c| c.images.len()).sum::<usize>(), rows.len());
    let balanced = std::fs::read_to_string(demo().join("run/unsafe/balanced.csv")).unwrap();
    for (c, fill) in u.clusters.iter().zip(record["clusters"].as_array().unwrap()) {
        assert_eq!(c.cluster_id, fill["cluster"].as_u64().unwrap() as usize);
        assert_eq!(
            (c.quota, c.images.len()),
            (fill["quota"].as_u64().unwrap() as usize, fill["fill"].as_u64().unwrap() as usize)
        );
        assert_eq!(c.quota, 2 * c.test_members);
        assert_eq!(c.distances.len(), c.images.len());
        assert!(c.distances.windows(2).all(|w| w[0] <= w[1]), "nearest first: {:?}", c.distances);
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|r| r[1] == c.cluster_id.to_string()).collect();
        for ((&i, &d), row) in c.images.iter().zip(&c.distances).zip(mine) {
            let im = &report.images[i];
            assert_eq!((im.name.as_str(), im.split.name()), (row[0], "improvement"));
            // JSON's decimal → f64 may differ by an ulp (serde_json's default parser).
            let want = row[2].parse::<f64>().unwrap();
            assert!((d - want).abs() <= 1e-12 * want.abs().max(1e-12), "{d} vs {want}");
            assert!(bundle.join(&im.thumbnail).is_file());
            // The engineers' label where bootstrap kept the image, else none.
            let label = balanced.lines().find_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0] == im.name && f[1] == c.cluster_id.to_string()).then(|| f[3].to_string())
            });
            assert_eq!(im.expected, label.unwrap_or_default(), "{}", im.name);
        }
        if !c.images.is_empty() {
            assert!(bundle.join(c.gif.as_ref().unwrap()).is_file());
        }
    }
    assert!(report.images.iter().any(|im| im.split.name() == "improvement" && !im.expected.is_empty()), "labels shown");
    // index.html inlines the same report; the manifest lists every file; verify agrees.
    let html = std::fs::read_to_string(bundle.join("index.html")).unwrap();
    assert!(html.contains(&report.report_id));
    assert!(!html.contains("{{HUDD_"), "every placeholder is filled");
    let o = hudd(&["verify", &arg(&bundle)]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("intact"), "{}", stdout(&o));
}

#[test]
fn verify_reports_changed_missing_and_extra_files() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b");
    copy_tree(&demo().join("report"), &bundle);
    let thumb = bundle.join("images/thumbs/0.png");
    let mut bytes = std::fs::read(&thumb).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&thumb, bytes).unwrap();
    std::fs::remove_file(bundle.join("images/curves/0.csv")).unwrap();
    std::fs::write(bundle.join("images/extra.txt"), "not written by hudd").unwrap();
    // The unsafe set's files are covered too.
    let gif = read_report(&bundle).unsafe_set.unwrap().clusters.iter().find_map(|c| c.gif.clone()).unwrap();
    std::fs::write(bundle.join(&gif), b"GIF89a").unwrap();
    let o = hudd(&["verify", &arg(&bundle)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("changed  images/thumbs/0.png"), "{out}");
    assert!(out.contains(&format!("changed  {gif}")), "{out}");
    assert!(out.contains("missing  images/curves/0.csv"), "{out}");
    assert!(out.contains("extra    images/extra.txt"), "{out}");
    assert!(stderr(&o).contains("2 changed, 1 missing, 1 extra"), "{}", stderr(&o));
    // Not a bundle at all.
    let o = hudd(&["verify", &arg(dir.path())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("manifest.json"), "{}", stderr(&o));
}

#[test]
fn report_rewrites_a_bundle_in_place_and_refuses_foreign_folders() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    copy_tree(&demo().join("run"), &run);
    let bundle = dir.path().join("bundle");
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&bundle), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = read_report(&bundle);
    // Same run → same report id (reviewer notes stay attached); the bundle is replaced whole.
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&bundle), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_report(&bundle).report_id, first.report_id);
    assert_eq!(first.report_id, read_report(&demo().join("report")).report_id);
    assert!(!dir.path().join(".bundle.partial").exists() && !dir.path().join(".bundle.old").exists());
    assert!(first.retraining.as_ref().is_some_and(|t| t.comparison.is_some()));
    // Retraining records of another model or other clusters (an analysis rerun into the folder)
    // stay out of the report; a comparison of other clusters too.
    let compare_json = run.join("retrain/compare.json");
    let compare = std::fs::read_to_string(&compare_json).unwrap();
    let mut c: serde_json::Value = serde_json::from_str(&compare).unwrap();
    c["before"]["per_cluster"][0]["cluster"] = serde_json::json!(999);
    std::fs::write(&compare_json, c.to_string()).unwrap();
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&bundle), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = read_report(&bundle).retraining.expect("retrain.json still matches");
    assert!(t.comparison.is_none(), "compare.json describes other clusters");
    let retrain_json = run.join("retrain/retrain.json");
    let retrain = std::fs::read_to_string(&retrain_json).unwrap();
    let mut r: serde_json::Value = serde_json::from_str(&retrain).unwrap();
    r["model"]["sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(&retrain_json, r.to_string()).unwrap();
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&bundle), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(read_report(&bundle).retraining.is_none(), "retrain.json is another model's");
    std::fs::write(&retrain_json, retrain).unwrap();
    std::fs::write(&compare_json, compare).unwrap();
    // A folder that is not a bundle is never replaced.
    let foreign = dir.path().join("mine");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.txt"), "mine").unwrap();
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&foreign), "-q"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a hudd bundle"), "{}", stderr(&o));
    assert!(foreign.join("thesis.txt").is_file());
    // An incomplete run (no clusters.json) is refused with the next step.
    std::fs::remove_file(run.join("clusters.json")).unwrap();
    let o = hudd(&["report", "--run", &arg(&run), "--out", &arg(&bundle), "-q"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("rerun `hudd analyze`"), "{}", stderr(&o));
    assert!(bundle.join("manifest.json").is_file(), "the old bundle survives a failed report");
}

#[test]
fn every_released_report_version_stays_readable() {
    let dir = fixtures().join("bundles");
    let mut versions = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let report = hudd_report::read_report(&std::fs::read_to_string(path.join("report.json")).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(report.format_version, hudd_report::FORMAT_VERSION, "migrated to the current version");
        let analysis = report.analysis.expect("an analysis");
        // Every version says (or learns by migration) which layers could not be the best one.
        let excluded: Vec<(&str, hudd_report::Exclusion)> =
            analysis.layers.iter().filter_map(|l| l.excluded.map(|e| (l.name.as_str(), e))).collect();
        assert_eq!(
            excluded,
            [("image", hudd_report::Exclusion::Input), ("logits", hudd_report::Exclusion::ExplainedOutput)],
            "{}",
            path.display()
        );
        let best = analysis.best_layer.expect("a best layer");
        assert!(analysis.layers[best].excluded.is_none());
        let v = hudd_core::bundle::verify(&path).unwrap();
        assert!(v.is_intact(), "{}: {v:?}", path.display());
        versions.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    versions.sort();
    let released: Vec<String> = (1..=hudd_report::FORMAT_VERSION).map(|v| format!("v{v}")).collect();
    assert_eq!(versions, released, "one fixture bundle per released version");
}

/// The viewer on the demo's bundle, from file://, as a reviewer uses it.
#[test]
fn viewer_opens_from_file_and_navigates_overlays_and_exports_notes() {
    let Some(b) = Browser::start() else { return };
    let bundle = demo().join("report");
    let report = read_report(&bundle);
    let analysis = report.analysis.as_ref().unwrap();
    let best = &analysis.layers[analysis.best_layer.unwrap()];
    b.goto(&file_url(&bundle.join("index.html")));
    // Overview: the best layer's clusters as cards, and the layers table.
    let cards = b.wait_for("document.querySelectorAll('[data-testid=cluster-card]').length");
    assert_eq!(cards, json!(best.clusters.len()));
    let rows = b.script("return document.querySelectorAll('[data-testid=layer-row]').length;", json!([]));
    assert_eq!(rows, json!(analysis.layers.len()));
    let text = b.script("return document.body.innerText;", json!([])).as_str().unwrap().to_string();
    assert!(text.contains("gaze_cnn.onnx") && text.contains("★ best"), "{text}");
    assert!(
        b.script("return !!document.querySelector('[data-testid=wicd-curve] polyline');", json!([])) == json!(true)
    );
    // The unsafe set's summary table: one row per cluster.
    let u = report.unsafe_set.as_ref().unwrap();
    let rows = b.script("return document.querySelectorAll('[data-testid=unsafe-row]').length;", json!([]));
    assert_eq!(rows, json!(u.clusters.len()));
    // The retraining section: the comparison table and a bar per cluster and method.
    let t = report.retraining.as_ref().expect("the demo retrains");
    let c = t.comparison.as_ref().expect("the demo compares");
    let rows = b.script("return document.querySelectorAll('[data-testid=method-row]').length;", json!([]));
    assert_eq!(rows, json!(4), "before, hudd, bl1, bl2");
    let bars = b.script(
        "return document.querySelectorAll('[data-testid=retraining-chart] [data-testid=bar]').length;",
        json!([]),
    );
    assert_eq!(bars, json!(4 * t.clusters.len()));
    let hudd_bars = b.script(
        "return Array.from(document.querySelectorAll('[data-testid=bar][data-method=hudd]')).map(r => r.querySelector('title').textContent);",
        json!([]),
    );
    let hudd = c.methods.iter().find(|m| m.method == "hudd").unwrap();
    let first =
        format!("cluster {}: hudd {:.2}%", hudd.per_cluster[0].cluster_id, 100.0 * hudd.per_cluster[0].accuracy.mean);
    assert!(hudd_bars[0].as_str().unwrap().starts_with(&first), "{hudd_bars}");
    let summary = b.script("return document.querySelector('[data-testid=retraining-summary]').innerText;", json!([]));
    assert!(summary.as_str().unwrap().contains("gaze_cnn.retrained.onnx"), "{summary}");

    // → opens the first cluster; its grid loads the members' images (medoid first).
    b.keys(&[ARROW_RIGHT]);
    b.wait_for("document.querySelector('[data-testid=cluster-page]')");
    let first = &best.clusters[0];
    let title = b.wait_for("document.querySelector('[data-testid=cluster-title]').innerText");
    assert!(title.as_str().unwrap().contains(&format!("cluster {} ", first.cluster_id)), "{title}");
    let members = b.script("return document.querySelectorAll('[data-testid=member]').length;", json!([]));
    assert_eq!(members, json!(first.members.len()));
    b.wait_for("Array.from(document.querySelectorAll('[data-testid=member-grid] img.thumb')).slice(0, 4).every(i => i.complete && i.naturalWidth > 0)");
    let medoid = &report.images[first.members[0].image].name;
    let stage = b.script("return document.querySelector('[data-testid=stage-name]').innerText;", json!([]));
    assert_eq!(stage, json!(medoid));
    // Its unsafe images, beside the members, with their pictures loaded.
    if let Some(uc) = u.clusters.iter().find(|c| c.cluster_id == first.cluster_id && !c.images.is_empty()) {
        let n = b.script("return document.querySelectorAll('[data-testid=unsafe-image]').length;", json!([]));
        assert_eq!(n, json!(uc.images.len()));
        b.script("document.querySelector('[data-testid=unsafe-set]').scrollIntoView();", json!([]));
        b.wait_for("Array.from(document.querySelectorAll('[data-testid=unsafe-image] img')).slice(0, 3).every(i => i.complete && i.naturalWidth > 0)");
        b.script("window.scrollTo(0, 0);", json!([]));
    }

    // j / k step through images; → / ← between clusters.
    b.keys(&["j", "j"]);
    let second = &report.images[first.members[2 % first.members.len()].image].name;
    assert_eq!(b.wait_for("document.querySelector('[data-testid=stage-name]').innerText"), json!(second));
    b.keys(&["k"]);
    let one = &report.images[first.members[1 % first.members.len()].image].name;
    assert_eq!(b.script("return document.querySelector('[data-testid=stage-name]').innerText;", json!([])), json!(one));
    if best.clusters.len() > 1 {
        b.keys(&[ARROW_RIGHT]);
        let want = format!("cluster {} ", best.clusters[1].cluster_id);
        b.wait_for(&format!("document.querySelector('[data-testid=cluster-title]').innerText.includes({want:?})"));
        b.keys(&[ARROW_LEFT]);
        let want = format!("cluster {} ", first.cluster_id);
        b.wait_for(&format!("document.querySelector('[data-testid=cluster-title]').innerText.includes({want:?})"));
    }

    // The overlay toggles the stacked heatmaps; the slider sets their opacity.
    let shown = "getComputedStyle(document.querySelector('[data-testid=stage] img.heatmap')).display";
    assert_eq!(b.script(&format!("return {shown};"), json!([])), json!("none"));
    b.click("[data-testid=overlay-toggle]");
    b.wait_for(&format!("{shown} === 'block'"));
    b.wait_for("document.querySelector('[data-testid=stage] img.heatmap').naturalWidth > 0");
    b.script(
        "const s = document.querySelector('[data-testid=opacity]'); s.value = '0.25'; s.dispatchEvent(new Event('input', {bubbles: true}));",
        json!([]),
    );
    b.wait_for("getComputedStyle(document.querySelector('[data-testid=stage] img.heatmap')).opacity === '0.25'");
    b.click("[data-testid=overlay-toggle]");
    b.wait_for(&format!("{shown} === 'none'"));

    // Space plays the flipbook (the image advances by itself), space again pauses.
    let before = b.script("return document.querySelector('[data-testid=stage-name]').innerText;", json!([]));
    b.keys(&[" "]);
    if first.members.len() > 1 {
        b.wait_for(&format!("document.querySelector('[data-testid=stage-name]').innerText !== {before}"));
    }
    b.keys(&[" "]);
    b.wait_for("document.querySelector('[data-testid=play]').innerText.includes('play')");

    // ? shows the help; Esc closes it, Esc again returns to the overview.
    b.keys(&["?"]);
    b.wait_for("document.querySelector('[data-testid=help]')");
    b.keys(&["\u{E00C}"]);
    b.wait_for("!document.querySelector('[data-testid=help]')");

    // Reviewer notes: typed, kept in localStorage, exported as JSON, imported back.
    b.click("[data-testid=note-label]");
    b.keys(&["g", "l", "a", "r", "e"]);
    let key = format!("hudd-notes:{}", report.report_id);
    b.wait_for(&format!("(localStorage.getItem({key:?}) || '').includes('glare')"));
    b.click("[data-testid=notes-export]");
    let file = b.downloaded(&format!("hudd-notes-{}.json", &report.report_id[..12]));
    let exported: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported["format"], "hudd-notes");
    assert_eq!(exported["report_id"], json!(report.report_id));
    let note_key = format!("{}#{}", best.name, first.cluster_id);
    assert_eq!(exported["notes"][&note_key]["label"], "glare");
    b.script("localStorage.clear();", json!([]));
    b.goto(&file_url(&bundle.join("index.html")));
    b.wait_for("document.querySelectorAll('[data-testid=cluster-card]').length");
    b.upload("[data-testid=notes-import]", &file);
    b.wait_for("document.querySelector('[data-testid=notes-status]').innerText.includes('imported 1')");
    b.wait_for("document.body.innerText.includes('glare')");
}

/// The review tools on the demo's bundle, from file://: links to views and Back, zoom, filter and
/// sort, selection export as CSV, the confusion matrix's drill-down, the all-images page, the
/// dendrogram's cut slider (k and the cards change) and the map.
#[test]
fn viewer_review_tools_work_on_the_demo_bundle() {
    let Some(b) = Browser::start() else { return };
    let bundle = demo().join("report");
    let report = read_report(&bundle);
    let analysis = report.analysis.as_ref().unwrap();
    let li = analysis.best_layer.unwrap();
    let best = &analysis.layers[li];
    let tree = best.dendrogram.as_ref().expect("the best layer's tree is in the report");
    let url = file_url(&bundle.join("index.html"));
    let text = |css: &str| {
        b.script(&format!("return document.querySelector({css:?}).innerText;"), json!([])).as_str().unwrap().to_string()
    };
    let count = |css: &str| {
        b.script(&format!("return document.querySelectorAll({css:?}).length;"), json!([])).as_u64().unwrap() as usize
    };

    // A link to an image of a cluster opens it; Back returns to the view before.
    let c = best.clusters.iter().find(|c| c.members.len() >= 3).unwrap_or(&best.clusters[0]);
    let pos = c.members.len().min(3);
    b.goto(&format!("{url}#/layer/{li}/cluster/{}/image/{pos}", c.cluster_id));
    b.wait_for("document.querySelector('[data-testid=stage-name]')");
    assert_eq!(text("[data-testid=stage-name]"), report.images[c.members[pos - 1].image].name);
    b.script(&format!("location.hash = '#/layer/{li}';"), json!([]));
    b.wait_for("document.querySelector('[data-testid=overview]')");
    b.script("history.back();", json!([]));
    b.wait_for("document.querySelector('[data-testid=cluster-page]')");
    assert!(text("[data-testid=cluster-title]").contains(&format!("cluster {} ", c.cluster_id)));

    // z zooms the stage's pictures to full size, z again back.
    let width = "document.querySelector('[data-testid=panel-image] img.thumb').getBoundingClientRect().width";
    let small = b.script(&format!("return {width};"), json!([])).as_f64().unwrap();
    b.keys(&["z"]);
    b.wait_for("document.querySelector('[data-testid=stage]').classList.contains('zoomed')");
    let large = b.script(&format!("return {width};"), json!([])).as_f64().unwrap();
    assert!(large > small, "zoomed {large} > {small}");
    assert_eq!(
        b.script(
            "return getComputedStyle(document.querySelector('[data-testid=panel-image] img.thumb')).imageRendering;",
            json!([])
        ),
        json!("pixelated"),
        "nearest-neighbour scaling"
    );
    b.keys(&["z"]);
    b.wait_for("!document.querySelector('[data-testid=stage]').classList.contains('zoomed')");

    // Filter the members by a metadata column: as many as the report says pass.
    let column = &analysis.metadata_columns[0];
    let k = 0;
    let values: Vec<f64> =
        c.members.iter().map(|m| report.images[m.image].metadata[k].parse::<f64>().unwrap()).collect();
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let want = values.iter().filter(|&&v| v < median).count();
    b.script(
        &format!("const s = document.querySelector('[data-testid=filter-key]'); s.value = {column:?}; s.dispatchEvent(new Event('change'));"),
        json!([]),
    );
    b.script(
        &format!("const i = document.querySelector('[data-testid=filter-value]'); i.value = '<{median}'; i.dispatchEvent(new Event('input'));"),
        json!([]),
    );
    b.wait_for(&format!("document.querySelectorAll('[data-testid=member]').length === {want}"));

    // Select every shown member (click the first, shift-click the last) and export them as CSV.
    if want > 0 {
        b.script("document.querySelectorAll('[data-testid=member]')[0].click();", json!([]));
        b.script(
            "const m = document.querySelectorAll('[data-testid=member]'); m[m.length - 1].dispatchEvent(new MouseEvent('click', {shiftKey: true, bubbles: true}));",
            json!([]),
        );
        b.wait_for(&format!(
            "document.querySelector('[data-testid=selection-count]').innerText.startsWith('{want} selected')"
        ));
        b.click("[data-testid=selection-export]");
        let file = b.downloaded(&format!("hudd-selection-{}.csv", &report.report_id[..12]));
        let csv = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("image,layer,cluster,expected,predicted,distance_to_medoid,"), "{csv}");
        assert_eq!(lines.len(), want + 1, "{csv}");
        assert!(lines[1..].iter().all(|l| l.contains(&format!(",{},{},", best.name, c.cluster_id))), "{csv}");
    }
    b.script(
        "const s = document.querySelector('[data-testid=filter-key]'); s.value = ''; s.dispatchEvent(new Event('change'));",
        json!([]),
    );

    // The confusion matrix: a cell opens the images of that confusion.
    b.keys(&["\u{E00C}"]);
    b.wait_for("document.querySelector('[data-testid=overview]')");
    let test = report.evaluation.splits.iter().find(|s| s.split == hudd_report::Split::Test).unwrap();
    let m = test.confusion.as_ref().unwrap();
    let first_cell = (0..m.len()).flat_map(|i| (0..m.len()).map(move |j| (i, j))).find(|&(i, j)| i != j && m[i][j] > 0);
    let (i, j) = first_cell.expect("the demo has errors");
    b.script("window.scrollTo(0, 0);", json!([]));
    b.click("details.per-class > summary");
    b.click("[data-testid=confusion-cell]");
    b.wait_for("document.querySelector('[data-testid=confusion-drill]')");
    assert_eq!(count("[data-testid=confusion-image]"), m[i][j]);
    let drill = text("[data-testid=confusion-drill]");
    let classes = &report.evaluation.classes;
    assert!(drill.contains(&format!("expected {}, predicted {}", classes[i], classes[j])), "{drill}");

    // All clustered images, filtered to one cluster.
    b.click("[data-testid=all-images]");
    b.wait_for("document.querySelector('[data-testid=images-page]')");
    assert_eq!(count("[data-testid=member]"), analysis.images);
    b.script(
        "const s = document.querySelector('[data-testid=filter-key]'); s.value = 'cluster'; s.dispatchEvent(new Event('change'));",
        json!([]),
    );
    let id = best.clusters[0].cluster_id;
    b.script(
        &format!("const i = document.querySelector('[data-testid=filter-value]'); i.value = '{id}..{id}'; i.dispatchEvent(new Event('input'));"),
        json!([]),
    );
    b.wait_for(&format!(
        "document.querySelectorAll('[data-testid=member]').length === {}",
        best.clusters[0].members.len()
    ));
    b.script(
        "const s = document.querySelector('[data-testid=filter-key]'); s.value = ''; s.dispatchEvent(new Event('change'));",
        json!([]),
    );
    b.keys(&["\u{E00C}"]);
    b.wait_for("document.querySelector('[data-testid=overview]')");

    // The dendrogram: cut one cluster finer, the cards are the cut's clusters.
    assert_eq!(text("[data-testid=cut-k]"), best.k.to_string());
    assert_eq!(count("[data-testid=map-point]"), analysis.images);
    let finer = best.k + 1;
    b.script(
        &format!("const s = document.querySelector('[data-testid=cut-slider]'); s.value = '{finer}'; s.dispatchEvent(new Event('input'));"),
        json!([]),
    );
    b.wait_for(&format!("document.querySelectorAll('[data-testid=cut-card]').length === {finer}"));
    assert_eq!(text("[data-testid=cut-k]"), finer.to_string());
    assert_eq!(count("[data-testid=cluster-card]"), 0);
    let labels = tree.cut(finer);
    let mut sizes = vec![0usize; finer];
    labels.iter().for_each(|&l| sizes[l] += 1);
    let shown: Vec<String> = serde_json::from_value(b.script(
        "return Array.from(document.querySelectorAll('[data-testid=cut-card] .size')).map(e => e.innerText);",
        json!([]),
    ))
    .unwrap();
    assert_eq!(shown, sizes.iter().map(|n| format!("{n} images")).collect::<Vec<_>>());
    b.click("[data-testid=cut-reset]");
    b.wait_for(&format!("document.querySelectorAll('[data-testid=cluster-card]').length === {}", best.clusters.len()));
}

/// Labels, file names and metadata that look like markup are shown as text and never run.
#[test]
fn hostile_names_and_labels_render_as_text() {
    let Some(b) = Browser::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let run = demo().join("run");
    let mut assembled =
        hudd_core::bundle::assemble(&hudd_core::run::RunDir::new(&run), &hudd_core::progress::Silent).unwrap();
    let script = "<script>window.__xss = 1</script>";
    let img = "\"><img src=x onerror=\"window.__xss = 2\">";
    {
        let r = &mut assembled.report;
        r.model.file_name = format!("{img}.onnx");
        let analysis = r.analysis.as_mut().unwrap();
        let best = analysis.best_layer.unwrap();
        let medoid = analysis.layers[best].clusters[0].members[0].image;
        analysis.layers[best].clusters[0].explanations[0].summary = script.into();
        r.images[medoid].name = format!("test/{img}.png");
        r.images[medoid].expected = script.into();
        r.images[medoid].predicted = img.into();
        if let Some(v) = r.images[medoid].metadata.first_mut() {
            *v = img.into();
        }
        r.evaluation.classes[0] = script.into();
        r.skipped.push(hudd_report::Skipped {
            split: hudd_report::Split::Test,
            image: format!("{img}.png"),
            reason: script.into(),
        });
    }
    let bundle = dir.path().join("hostile");
    hudd_core::bundle::write(&bundle, &assembled, &hudd_cli_viewer(), &hudd_core::progress::Silent).unwrap();
    b.goto(&file_url(&bundle.join("index.html")));
    b.wait_for("document.querySelectorAll('[data-testid=cluster-card]').length");
    let text = b.script("return document.body.innerText;", json!([])).as_str().unwrap().to_string();
    assert!(text.contains(script), "the explanation is shown as text: {text}");
    assert!(text.contains(&format!("{img}.onnx")), "{text}");
    b.keys(&[ARROW_RIGHT]);
    b.wait_for("document.querySelector('[data-testid=stage-name]')");
    let name = b.script("return document.querySelector('[data-testid=stage-name]').innerText;", json!([]));
    assert_eq!(name, json!(format!("test/{img}.png")));
    let text = b.script("return document.body.innerText;", json!([])).as_str().unwrap().to_string();
    assert!(text.contains(script) && text.contains(img), "{text}");
    // Nothing ran and no element was injected.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(b.script("return window.__xss === undefined;", json!([])), json!(true));
    assert_eq!(b.script("return document.querySelectorAll('img[src=x]').length;", json!([])), json!(0));
    let scripts = b.script("return document.querySelectorAll('script').length;", json!([]));
    assert_eq!(scripts, json!(4), "only the page's own script elements");
    // Defence in depth: even markup inserted into the page could not run script, because the
    // Content-Security-Policy only allows the page's own inline scripts (by hash).
    b.script(
        "document.body.insertAdjacentHTML('beforeend', '<img src=\"x\" onerror=\"window.__csp = 1\"><script>window.__csp = 2</script>');",
        json!([]),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(b.script("return window.__csp === undefined;", json!([])), json!(true), "CSP blocks inline handlers");
    let html = std::fs::read_to_string(bundle.join("index.html")).unwrap();
    assert!(
        html.contains("script-src 'sha256-") && !html.contains("'unsafe-inline' 'wasm"),
        "scripts allowed by hash only"
    );
}

/// The viewer the `hudd` binary embeds (the same files `cli/src/commands/report.rs` includes).
fn hudd_cli_viewer() -> hudd_core::bundle::ViewerAssets<'static> {
    hudd_core::bundle::ViewerAssets {
        template: include_str!("../../viewer/assets/bundle.html"),
        style: include_str!("../../viewer/assets/style.css"),
        glue: include_str!("../../viewer/dist/hudd_viewer.js"),
        wasm: include_bytes!("../../viewer/dist/hudd_viewer_bg.wasm"),
    }
}
