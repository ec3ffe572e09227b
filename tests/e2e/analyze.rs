//! `hudd analyze` on the Fashion-MNIST fixture: every output file, consistent with clusters.json.

use std::collections::BTreeSet;
use std::path::Path;

use hudd_core::cluster::report::ClustersReport;

use crate::common::{arg, fmnist_config, fmnist_data, fmnist_model, hudd, stderr, stdout};

fn gif_frames(path: &Path) -> usize {
    let mut dec = gif::DecodeOptions::new().read_info(std::fs::File::open(path).unwrap()).unwrap();
    let mut n = 0;
    while dec.read_next_frame().unwrap().is_some() {
        n += 1;
    }
    n
}

fn run_analyze(data: &Path, out: &Path) -> std::process::Output {
    let (model, config) = (arg(&fmnist_model()), arg(&fmnist_config()));
    hudd(&["analyze", "-m", &model, "-c", &config, "-d", &arg(data), "-o", &arg(out), "-q"])
}

/// `hudd analyze` of the Fashion-MNIST fixture into `out`, with `options` (no `-q` unless given).
fn analyze_fixture(out: &Path, options: &[&str]) -> std::process::Output {
    let (model, config, data) = (arg(&fmnist_model()), arg(&fmnist_config()), arg(&fmnist_data()));
    let mut args = vec!["analyze", "-m", &model, "-c", &config, "-d", &data, "-o"];
    let out = arg(out);
    args.push(&out);
    args.extend_from_slice(options);
    hudd(&args)
}

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn analyze_writes_results_heatmaps_clusters_and_pictures() {
    let out = tempfile::tempdir().unwrap();
    // A stale folder from an earlier run must not survive.
    std::fs::create_dir_all(out.path().join("clusters/stale-layer")).unwrap();
    let o = run_analyze(&fmnist_data(), out.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("29 Wrong"), "{text}");
    assert!(text.contains("← best"), "{text}");
    assert!(text.contains("cluster   1:"), "{text}");
    let run = out.path();
    for f in ["results/test.csv", "results/summary.json", "heatmaps/index.json", "clusters.json", "timings.json"] {
        assert!(run.join(f).is_file(), "{f}");
    }
    assert!(!run.join("clusters/stale-layer").exists());

    // The clustered images are exactly the Wrong test images.
    let csv = std::fs::read_to_string(run.join("results/test.csv")).unwrap();
    let wrong: BTreeSet<String> = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("Wrong"))
        .map(|l| l.split(',').next().unwrap().to_string())
        .collect();
    let report: ClustersReport =
        serde_json::from_str(&std::fs::read_to_string(run.join("clusters.json")).unwrap()).unwrap();
    assert_eq!(report.images, wrong.len());
    let best = report.best_layer.clone().expect("a best layer");
    assert_ne!(Some(&best), report.input_layer.as_ref());
    assert_eq!(report.output_layer.as_deref(), Some("logits"), "the explained output is recorded");
    assert!(text.contains("(explained output: never the best layer)"), "{text}");
    let timings = std::fs::read_to_string(run.join("timings.json")).unwrap();
    for stage in ["evaluate", "heatmaps", "distances", "clustering", "pictures"] {
        assert!(timings.contains(stage), "{stage} in {timings}");
    }
    for layer in &report.layers {
        let clustered: BTreeSet<String> =
            layer.clusters.iter().flat_map(|c| c.members.iter().map(|m| m.image.clone())).collect();
        assert_eq!(clustered, wrong, "{}: every Wrong image in exactly one cluster", layer.name);
        assert_eq!(layer.clusters.iter().map(|c| c.size).sum::<usize>(), wrong.len());
        assert!(run.join("distances").join(&layer.distances).is_file());
        let dir = run.join("clusters").join(hudd_core::heatmaps::sanitize(&layer.name));
        for c in &layer.clusters {
            let cdir = dir.join(c.id.to_string());
            let expected: BTreeSet<String> = c.members.iter().map(|m| m.image.replace('/', "__")).collect();
            let mut found = files(&cdir);
            found.remove("mean-heatmap.png");
            assert_eq!(found, expected, "{} cluster {}", layer.name, c.id);
            assert_eq!(gif_frames(&dir.join(format!("cluster-{}.gif", c.id))), c.size);
            // Explanations from the expected/predicted classes: those that explain first, then
            // by separation.
            if c.size >= 2 {
                assert!(!c.explanations.is_empty());
                let key = |e: &hudd_core::cluster::metadata::Explanation| (!e.explains, -e.separation);
                assert!(c.explanations.windows(2).all(|w| key(&w[0]) <= key(&w[1])), "{:?}", c.explanations);
                assert!(c.explanations.iter().all(|e| (0.0..=1.0).contains(&e.separation) && e.histogram.is_some()));
            }
            if layer.name == best {
                assert_eq!(files(&cdir.join("overlays")).len(), c.size);
                assert!(cdir.join("mean-heatmap.png").is_file());
            } else {
                assert!(!cdir.join("overlays").exists());
            }
        }
    }
}

#[test]
fn manifest_metadata_explains_clusters_with_the_papers_variance_ratio() {
    // The fixture's test split with a manifest: a numeric column (the image's index in its class
    // folder, from the file name) and a categorical one (upper/lower garment).
    let data = tempfile::tempdir().unwrap();
    crate::common::copy_tree(&fmnist_data().join("test"), &data.path().join("test"));
    let mut manifest = String::from("path,label,number,garment\n");
    let mut values = std::collections::HashMap::new();
    for class in std::fs::read_dir(data.path().join("test")).unwrap() {
        let class = class.unwrap().file_name().to_string_lossy().into_owned();
        for f in files(&data.path().join("test").join(&class)) {
            let number: f64 = f.trim_end_matches(".png").parse().unwrap();
            let garment = if ["trouser", "dress"].contains(&class.as_str()) { "lower" } else { "other" };
            manifest.push_str(&format!("{class}/{f},{class},{number},{garment}\n"));
            values.insert(format!("test/{class}/{f}"), number);
        }
    }
    std::fs::write(data.path().join("test/manifest.csv"), manifest).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = run_analyze(data.path(), out.path());
    assert!(o.status.success(), "{}", stderr(&o));
    // The summary names the criterion, WICD, and every stage's time.
    let printed = crate::common::stdout(&o);
    for line in ["clusters (of 2+ images) explained by a metadata column", "WICD", "stages: evaluate ", "total "] {
        assert!(printed.contains(line), "{line}: {printed}");
    }
    let report: ClustersReport =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("clusters.json")).unwrap()).unwrap();
    let layer = report.layers.iter().find(|l| Some(&l.name) == report.best_layer.as_ref()).unwrap();
    let all: Vec<f64> = layer.clusters.iter().flat_map(|c| c.members.iter().map(|m| values[&m.image])).collect();
    let var = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / v.len() as f64
    };
    let mut checked = 0;
    for c in layer.clusters.iter().filter(|c| c.size >= 2) {
        let columns: Vec<&str> = c.explanations.iter().map(|e| e.column.as_str()).collect();
        for col in ["number", "expected", "predicted"] {
            assert!(columns.contains(&col), "cluster {}: {columns:?}", c.id);
        }
        let e = c.explanations.iter().find(|e| e.column == "number").unwrap();
        assert_eq!(e.kind.name(), "numeric");
        let mine: Vec<f64> = c.members.iter().map(|m| values[&m.image]).collect();
        let ratio = var(&mine) / var(&all);
        assert!((e.ratio - ratio).abs() < 1e-9, "cluster {}: {} vs {ratio}", c.id, e.ratio);
        assert!((e.reduction - (1.0 - ratio)).abs() < 1e-9);
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn regressors_are_explained_from_their_worst_output() {
    // The Fashion-MNIST CNN read as a regressor of its 10 outputs (targets all 0, MSE above 15 is
    // Wrong): relevance starts at each image's worst output (largest |output − target|), as
    // index.json records, so the output layer's heatmap has one non-zero value per image.
    let data = tempfile::tempdir().unwrap();
    crate::common::copy_tree(&fmnist_data().join("test"), &data.path().join("test"));
    let mut manifest = String::from("path,label\n");
    for class in std::fs::read_dir(data.path().join("test")).unwrap() {
        let class = class.unwrap().file_name().to_string_lossy().into_owned();
        for f in files(&data.path().join("test").join(&class)) {
            manifest.push_str(&format!("{class}/{f},{}\n", ["0"; 10].join(" ")));
        }
    }
    std::fs::write(data.path().join("test/manifest.csv"), manifest).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = hudd(&[
        "analyze",
        "-m",
        &arg(&fmnist_model()),
        "-c",
        &arg(&fmnist_config()),
        "--set",
        "task.kind=regression",
        "--set",
        "task.loss=mse",
        "--set",
        "task.threshold=15",
        "--set",
        "task.classes=[]",
        "-d",
        &arg(data.path()),
        "-o",
        &arg(out.path()),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let index = std::fs::read_to_string(out.path().join("heatmaps/index.json")).unwrap();
    assert!(index.contains("\"start\": \"worst\""), "{index}");
    assert!(out.path().join("clusters.json").is_file());
    let (shape, logits) = crate::common::read_npy(&out.path().join("heatmaps/logits.npy"));
    assert_eq!(shape[1], 10);
    for row in logits.chunks(10) {
        assert_eq!(row.iter().filter(|v| **v != 0.0).count(), 1, "{row:?}");
    }
}

#[test]
fn landmark_model_on_simulated_eyes_is_explained_from_its_worst_keypoint() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = hudd(&[
        "simulate",
        "landmarks",
        "--train",
        "0",
        "--test",
        "300",
        "--improvement",
        "0",
        "--seed",
        "11",
        "-o",
        &arg(&data),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = crate::common::root();
    let out = dir.path().join("run");
    let (model, config) = (root.join("models/landmarks/landmarks_cnn.onnx"), root.join("models/landmarks/hudd.toml"));
    let o = hudd(&["analyze", "-m", &arg(&model), "-c", &arg(&config), "-d", &arg(&data), "-o", &arg(&out), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let index = std::fs::read_to_string(out.join("heatmaps/index.json")).unwrap();
    assert!(index.contains("\"start\": \"worst-keypoint\""), "{index}");
    // The last dense layer's output (the 6 coordinates before the ×64 scaling).
    let parsed: serde_json::Value = serde_json::from_str(&index).unwrap();
    let last = parsed["layers"].as_array().unwrap().last().unwrap()["file"].as_str().unwrap().to_string();
    let (shape, rel) = crate::common::read_npy(&out.join("heatmaps").join(last));
    assert_eq!(shape[1], 6);
    for row in rel.chunks(6) {
        let nonzero: Vec<usize> = (0..6).filter(|&i| row[i] != 0.0).collect();
        assert!(nonzero.len() <= 2 && nonzero.iter().all(|&i| i / 2 == nonzero[0] / 2), "one keypoint: {row:?}");
    }
    let report: ClustersReport =
        serde_json::from_str(&std::fs::read_to_string(out.join("clusters.json")).unwrap()).unwrap();
    assert!(report.best_layer.is_some());
    // The regressor's report bundle: no classes, no confusion matrix, targets and outputs as numbers.
    let bundle = hudd_report::read_report(&std::fs::read_to_string(out.join("report/report.json")).unwrap()).unwrap();
    assert_eq!(bundle.evaluation.task.name(), "regression");
    assert!(bundle.evaluation.classes.is_empty());
    assert!(bundle.evaluation.splits.iter().all(|s| s.confusion.is_none() && s.per_class.is_empty()));
    let image = &bundle.images[0];
    assert_eq!(image.expected.split(' ').count(), 6, "{}", image.expected);
    assert!(image.predicted.contains("(loss "), "{}", image.predicted);
    assert!(hudd_core::bundle::verify(&out.join("report")).unwrap().is_intact());
}

/// A test set the model gets (almost) all right: no clusters, but results and a report bundle
/// that says so.
#[test]
fn analyze_with_nothing_to_cluster_still_writes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    crate::common::copy_tree(&fmnist_data().join("train"), &data.join("train"));
    let wrong = std::fs::read_to_string(fmnist_data().join("wrong.txt")).unwrap();
    // Three Correct test images of one class.
    let class = fmnist_data().join("test/bag");
    let mut n = 0;
    for e in std::fs::read_dir(&class).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if n < 3 && !wrong.contains(&format!("test/bag/{name}")) {
            std::fs::create_dir_all(data.join("test/bag")).unwrap();
            std::fs::copy(class.join(&name), data.join("test/bag").join(&name)).unwrap();
            n += 1;
        }
    }
    let run = dir.path().join("run");
    let o = run_analyze(&data, &run);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing to cluster"), "{}", stdout(&o));
    assert!(!run.join("clusters.json").exists());
    let text = std::fs::read_to_string(run.join("report/report.json")).unwrap();
    let report = hudd_report::read_report(&text).unwrap();
    assert!(report.analysis.is_none() && report.images.is_empty());
    assert_eq!(report.evaluation.splits.iter().find(|s| s.split.name() == "test").unwrap().images, 3);
    assert!(hudd_core::bundle::verify(&run.join("report")).unwrap().is_intact());
}

#[test]
fn a_model_the_heatmaps_stage_cannot_explain_is_refused_before_any_stage_runs() {
    // Sin runs in the engine, but has no relevance rule.
    let model = crate::common::fixtures().join("models/unexplainable.onnx");
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let (m, c, d, r) = (arg(&model), arg(&fmnist_config()), arg(&fmnist_data()), arg(&run));
    let hudd_on = |command: &str| hudd(&[command, "-m", &m, "-c", &c, "-d", &d, "-o", &r, "-q"]);
    let o = hudd_on("analyze");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("sin_instead_of_relu") && err.contains("`Sin`") && err.contains("heatmaps stage"), "{err}");
    assert!(!run.join("results").exists(), "nothing was evaluated");
    // The test step alone still runs it.
    let o = hudd_on("evaluate");
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `--features activations`: the heatmaps stage writes the layers' activations (no relevance),
/// index.json and clusters.json say so, the logits layer holds exactly the logits that the
/// evaluation wrote for each Wrong image, and the feature path clusters them.
#[test]
fn activations_are_clustered_instead_of_heatmaps() {
    let out = tempfile::tempdir().unwrap();
    let o = analyze_fixture(
        out.path(),
        &["--features", "activations", "--method", "hdbscan", "--min-cluster-size", "3", "-q"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let run = out.path();
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("heatmaps/index.json")).unwrap()).unwrap();
    assert_eq!(index["features"], "activations");
    assert!(index["layers"].as_array().unwrap().iter().all(|l| l["rule"].is_null()), "no relevance rule");
    let report: ClustersReport =
        serde_json::from_str(&std::fs::read_to_string(run.join("clusters.json")).unwrap()).unwrap();
    assert_eq!(report.parameters.features.name(), "activations");
    assert_eq!(report.parameters.method(), hudd_core::cluster::Method::Hdbscan);
    assert!(report.best_layer.is_some());
    // The logits layer: the evaluation's logits, image by image.
    let csv = std::fs::read_to_string(run.join("results/test.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let classes = header.iter().position(|h| *h == "predicted").unwrap() + 1;
    let logits_file = index["layers"].as_array().unwrap().iter().find(|l| l["tensor"] == "logits").unwrap()["file"]
        .as_str()
        .unwrap()
        .to_string();
    let (shape, values) = crate::common::read_npy(&run.join("heatmaps").join(logits_file));
    let images: Vec<&str> = index["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(shape, [images.len(), 10]);
    for (i, image) in images.iter().enumerate() {
        let row: Vec<&str> = csv.lines().find(|l| l.split(',').next() == Some(image)).unwrap().split(',').collect();
        for c in 0..10 {
            let want: f32 = row[classes + c].parse().unwrap();
            let got = values[i * 10 + c];
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{image} class {c}: {got} vs {want}");
        }
    }
    // The unsafe set compares the improvement images' activations with the clusters' members.
    let o = hudd(&["assign", "--run", &arg(run), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let unsafe_csv = std::fs::read_to_string(run.join("unsafe/unsafe.csv")).unwrap();
    assert!(unsafe_csv.lines().count() > 1, "{unsafe_csv}");
    assert!(stdout(&o).contains("compared by their activations at"), "{}", stdout(&o));
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("unsafe/unsafe.json")).unwrap()).unwrap();
    assert_eq!(record["parameters"]["features"], "activations");
    let noise: BTreeSet<&String> =
        report.layers.iter().find(|l| Some(&l.name) == report.best_layer.as_ref()).unwrap().noise.iter().collect();
    let clusters: usize =
        report.layers.iter().find(|l| Some(&l.name) == report.best_layer.as_ref()).unwrap().clusters.len();
    assert!(clusters >= 1 && noise.len() < images.len());
}

/// `--dtype f16`: RUN/heatmaps holds half floats, but the run clusters the f32 values it computed,
/// so its distances and clusters are those of an f32 run, byte for byte.
#[test]
fn half_float_heatmaps_change_the_files_not_the_clusters() {
    let work = tempfile::tempdir().unwrap();
    let (full, half) = (work.path().join("f32"), work.path().join("f16"));
    assert!(run_analyze(&fmnist_data(), &full).status.success());
    let o = analyze_fixture(&half, &["--dtype", "f16", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(half.join("heatmaps/index.json")).unwrap()).unwrap();
    assert_eq!(index["dtype"], "f16");
    for l in index["layers"].as_array().unwrap() {
        let f = l["file"].as_str().unwrap();
        let (a, b) = (std::fs::metadata(full.join("heatmaps").join(f)).unwrap(), half.join("heatmaps").join(f));
        assert!(std::fs::metadata(&b).unwrap().len() < a.len() / 2 + 256, "{f}: not half the bytes");
    }
    let distances = files(&full.join("distances"));
    assert!(!distances.is_empty());
    assert_eq!(distances, files(&half.join("distances")));
    for f in &distances {
        let same = std::fs::read(full.join("distances").join(f)).unwrap()
            == std::fs::read(half.join("distances").join(f)).unwrap();
        assert!(same, "distances/{f} differ: clustered from the rounded files, not the computed values");
    }
    let clusters = |run: &Path| -> ClustersReport {
        serde_json::from_str(&std::fs::read_to_string(run.join("clusters.json")).unwrap()).unwrap()
    };
    let (a, b) = (clusters(&full), clusters(&half));
    assert_eq!(a.best_layer, b.best_layer);
    assert_eq!(serde_json::to_value(&a.layers).unwrap(), serde_json::to_value(&b.layers).unwrap());

    // Streamed (more than --heatmap-memory): the folder holds f32 values while the run clusters
    // them, and half floats once it is done; the same distances, the same files as in memory.
    let streamed = work.path().join("streamed");
    let o = analyze_fixture(&streamed, &["--dtype", "f16", "--heatmap-memory", "0.000001"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("streamed to"), "{}", stderr(&o));
    for f in &distances {
        let same = std::fs::read(full.join("distances").join(f)).unwrap()
            == std::fs::read(streamed.join("distances").join(f)).unwrap();
        assert!(same, "distances/{f} differ: clustered from the rounded files, not the computed values");
    }
    assert_eq!(files(&streamed.join("heatmaps")), files(&half.join("heatmaps")));
    for f in files(&half.join("heatmaps")) {
        let same = std::fs::read(half.join("heatmaps").join(&f)).unwrap()
            == std::fs::read(streamed.join("heatmaps").join(&f)).unwrap();
        assert!(same, "heatmaps/{f}: not the in-memory run's half floats");
    }
    assert!(!work.path().join("streamed/heatmaps.rewrite").exists());
}

/// `--keep-heatmaps best|none`: every layer is still clustered (the same clusters.json), only the
/// files differ; `best` keeps what `hudd assign` needs (the same unsafe set), `none` keeps an
/// index of the images, and `hudd assign` then says what to do. A rerun that keeps every layer
/// computes them again instead of reusing the partial folder.
#[test]
fn keep_heatmaps_writes_fewer_layers_and_clusters_the_same() {
    let work = tempfile::tempdir().unwrap();
    let (all, best) = (work.path().join("all"), work.path().join("best"));
    let analyze = |out: &Path, keep: &str| {
        let o = analyze_fixture(out, &["-q", "--keep-heatmaps", keep]);
        assert!(o.status.success(), "{}", stderr(&o));
        o
    };
    let assign = |run: &Path| {
        let improvement = arg(&fmnist_data().join("improvement"));
        hudd(&["assign", "--run", &arg(run), "--improvement", &improvement, "-q"])
    };
    let index = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("heatmaps/index.json")).unwrap()).unwrap()
    };
    let tensors = |v: &serde_json::Value| -> Vec<String> {
        v["layers"].as_array().unwrap().iter().map(|l| l["tensor"].as_str().unwrap().to_string()).collect()
    };
    analyze(&all, "all");
    let every = tensors(&index(&all));
    assert!(index(&all).get("dropped").is_none());
    let clusters = std::fs::read(all.join("clusters.json")).unwrap();
    let report: ClustersReport = serde_json::from_slice(&clusters).unwrap();
    let best_layer = report.best_layer.clone().unwrap();
    assert!(assign(&all).status.success());

    analyze(&best, "best");
    assert_eq!(std::fs::read(best.join("clusters.json")).unwrap(), clusters, "clustered from the same values");
    let kept = index(&best);
    // The fixture's best layer is spatial: no input layer is needed for its overlays.
    assert_eq!(tensors(&kept), vec![best_layer.clone()]);
    let dropped: Vec<String> = serde_json::from_value(kept["dropped"].clone()).unwrap();
    assert_eq!(dropped, every.iter().filter(|t| **t != best_layer).cloned().collect::<Vec<_>>());
    let file = kept["layers"][0]["file"].as_str().unwrap();
    assert_eq!(files(&best.join("heatmaps")), BTreeSet::from(["index.json".to_string(), file.to_string()]));
    assert_eq!(
        std::fs::read(best.join("heatmaps").join(file)).unwrap(),
        std::fs::read(all.join("heatmaps").join(file)).unwrap()
    );
    assert!(best.join("report/index.html").is_file());
    let o = assign(&best);
    assert!(o.status.success(), "{}", stderr(&o));
    let unsafe_set = |run: &Path| std::fs::read_to_string(run.join("unsafe/unsafe.csv")).unwrap();
    assert_eq!(unsafe_set(&best), unsafe_set(&all));

    // Larger than the memory allowed: streamed to the folder and clustered from there, one layer
    // at a time; the same clusters, and the same files once pruned to the best layer.
    let streamed = work.path().join("streamed");
    let o = analyze_fixture(&streamed, &["--keep-heatmaps", "best", "--heatmap-memory", "0.000001"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("clustered one layer at a time"), "{}", stderr(&o));
    assert_eq!(std::fs::read(streamed.join("clusters.json")).unwrap(), clusters);
    assert_eq!(index(&streamed), kept);
    assert_eq!(files(&streamed.join("heatmaps")), files(&best.join("heatmaps")));
    assert_eq!(
        std::fs::read(streamed.join("heatmaps").join(file)).unwrap(),
        std::fs::read(best.join("heatmaps").join(file)).unwrap()
    );

    // Over the run that kept everything: the old layers' files go.
    analyze(&all, "none");
    assert_eq!(std::fs::read(all.join("clusters.json")).unwrap(), clusters);
    assert!(tensors(&index(&all)).is_empty());
    assert_eq!(serde_json::from_value::<Vec<String>>(index(&all)["dropped"].clone()).unwrap(), every);
    assert_eq!(files(&all.join("heatmaps")), BTreeSet::from(["index.json".to_string()]));
    assert!(all.join("report/index.html").is_file());
    crate::common::assert_clean_failure(&assign(&all), &["did not keep the heatmaps", "--keep-heatmaps best or all"]);

    // Keeping every layer again: computed, not taken from the partial folder.
    let o = analyze(&all, "all");
    let reused = stdout(&o).lines().find(|l| l.starts_with("reused from")).map(str::to_string).unwrap_or_default();
    assert!(reused.ends_with(": evaluate"), "only the evaluation is reused: {reused}");
    assert_eq!(tensors(&index(&all)), every);
    assert_eq!(std::fs::read(all.join("clusters.json")).unwrap(), clusters);
}
