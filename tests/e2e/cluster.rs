//! Clustering against the committed scipy + kneed reference run
//! (models/scripts/make_cluster_reference.py on tests/fixtures/cluster/heatmaps: the heatmaps of the
//! 44 error-inducing Fashion-MNIST fixture images).

use std::collections::HashMap;
use std::path::PathBuf;

use hudd_core::cluster::knee::{kneedle, Curve, Direction};
use hudd_core::cluster::report::ClustersReport;
use serde_json::Value;

use crate::common::{arg, fixtures, hudd, read_npy, stderr, stdout};

fn reference() -> Value {
    let p = fixtures().join("cluster/reference/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn heatmaps() -> PathBuf {
    fixtures().join("cluster/heatmaps")
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-12)
}

fn run_cluster(extra: &[&str]) -> (tempfile::TempDir, ClustersReport) {
    let out = tempfile::tempdir().unwrap();
    let mut args = vec!["cluster".to_string(), "--heatmaps".into(), arg(&heatmaps()), "-o".into(), arg(out.path())];
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = hudd(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("← best"), "{}", stdout(&o));
    let report: ClustersReport =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("clusters.json")).unwrap()).unwrap();
    (out, report)
}

#[test]
fn hudd_clustering_equals_scipy_and_kneed() {
    let reference = reference();
    let (out, report) = run_cluster(&[]);
    let images: Vec<String> =
        reference["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let index: HashMap<&str, usize> = images.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let layers = reference["layers"].as_array().unwrap();
    assert_eq!(report.layers.len(), layers.len());
    for (got, want) in report.layers.iter().zip(layers) {
        let name = want["name"].as_str().unwrap();
        assert_eq!(got.name, name);
        // Distances: scipy's pdist.
        let (_, d) = read_npy(&out.path().join("distances").join(&got.distances));
        let (_, dref) = read_npy(&fixtures().join("cluster/reference/distances").join(want["file"].as_str().unwrap()));
        let scale = dref.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (a, b) in d.iter().zip(&dref) {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1e-3 * scale), "{name}: distance {a} vs scipy {b}");
        }
        // The WICD curve and its gradient.
        let ks: Vec<usize> = want["ks"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        assert_eq!(got.curve.iter().map(|p| p.k).collect::<Vec<_>>(), ks, "{name}");
        for (p, (w, g)) in
            got.curve.iter().zip(want["wicd"].as_array().unwrap().iter().zip(want["gradient"].as_array().unwrap()))
        {
            assert!(close(p.wicd, w.as_f64().unwrap(), 1e-6), "{name} k={}: WICD {} vs {w}", p.k, p.wicd);
            assert!(
                (p.gradient - g.as_f64().unwrap()).abs() < 1e-8,
                "{name} k={}: gradient {} vs {g}",
                p.k,
                p.gradient
            );
        }
        // The knee, the partition and the score.
        let knee = want["knee"].as_u64().expect("the reference found a knee on every fixture layer") as usize;
        assert_eq!(got.k, knee, "{name}");
        assert_eq!(got.k_choice, hudd_core::cluster::KChoice::Knee);
        let mut partition: Vec<Vec<usize>> = got
            .clusters
            .iter()
            .map(|c| {
                let mut m: Vec<usize> = c.members.iter().map(|m| index[m.image.as_str()]).collect();
                m.sort_unstable();
                m
            })
            .collect();
        partition.sort_by_key(|g| (std::cmp::Reverse(g.len()), g[0]));
        let want_partition: Vec<Vec<usize>> = serde_json::from_value(want["partition"].clone()).unwrap();
        assert_eq!(partition, want_partition, "{name}");
        assert!(
            close(got.score, want["score"].as_f64().unwrap(), 1e-6),
            "{name}: score {} vs {}",
            got.score,
            want["score"]
        );
        // Medoids are members, at distance 0 from themselves.
        for c in &got.clusters {
            let m = c.members.iter().find(|m| m.image == c.medoid).expect("the medoid is a member");
            assert_eq!(m.distance_to_medoid, 0.0);
        }
    }
    assert_eq!(report.best_layer.as_deref(), reference["best_layer"].as_str());
    assert_eq!(report.input_layer.as_deref(), Some("image"));
}

/// The tree's heights against scipy's linkage and the map against classical MDS by numpy's eigh
/// (models/scripts/make_tree_map_reference.py), every layer; and `hudd cluster` stores them for
/// the best layer.
#[test]
fn tree_and_map_equal_scipy_and_numpy() {
    let p = fixtures().join("cluster/reference/tree_map.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let pairwise = |points: &[[f64; 2]]| -> Vec<f64> {
        let mut out = Vec::new();
        for (i, a) in points.iter().enumerate() {
            for b in &points[i + 1..] {
                out.push(((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt());
            }
        }
        out
    };
    let (_, report) = run_cluster(&[]);
    for want in reference["layers"].as_array().unwrap() {
        let name = want["name"].as_str().unwrap();
        let (shape, x) = read_npy(&heatmaps().join(want["file"].as_str().unwrap()));
        let n = shape[0];
        let x = ndarray::Array2::from_shape_vec((n, x.len() / n), x).unwrap();
        let c = hudd_core::cluster::cluster_layer(x.view(), &hudd_core::cluster::Options::default());
        let heights: Vec<f64> = serde_json::from_value(want["heights"].clone()).unwrap();
        assert_eq!(c.heights.len(), heights.len());
        for (a, b) in c.heights.iter().zip(&heights) {
            assert!(close(*a, *b, 1e-6), "{name}: height {a} vs scipy {b}");
        }
        let map = hudd_core::cluster::map::classical_mds(&c.distances);
        let mds = &want["mds"];
        assert!(
            close(map.explained, mds["explained"].as_f64().unwrap(), 1e-6),
            "{name}: {} vs {}",
            map.explained,
            mds["explained"]
        );
        let points: Vec<[f64; 2]> = serde_json::from_value(mds["points"].clone()).unwrap();
        let (got, expected) = (pairwise(&map.points), pairwise(&points));
        let scale = expected.iter().fold(0.0f64, |m, &v| m.max(v));
        for (a, b) in got.iter().zip(&expected) {
            assert!((a - b).abs() <= 1e-5 * scale, "{name}: map distance {a} vs numpy {b}");
        }
        // The best layer's tree and map in clusters.json are these.
        let layer = report.layers.iter().find(|l| l.name == name).unwrap();
        if report.best_layer.as_deref() == Some(name) {
            let tree = layer.tree.as_ref().expect("the best layer's tree");
            assert_eq!(tree.merges, c.merges);
            assert_eq!(tree.heights, c.heights);
            assert_eq!(layer.map.as_ref().expect("the best layer's map").points, map.points);
        } else {
            assert!(layer.tree.is_none() && layer.map.is_none(), "{name}");
        }
    }
}

/// HDBSCAN against the Python `hdbscan` package (models/scripts/make_density_reference.py): seeded
/// blobs with uniform noise, and every layer of the heatmaps fixture, at two `min_cluster_size`
/// each; noise compared as a label of its own.
#[test]
fn hdbscan_agrees_with_the_python_package() {
    use hudd_core::cluster::density::{hdbscan, DensityOptions};
    use hudd_core::cluster::stats::adjusted_rand_index;
    let p = fixtures().join("cluster/density/reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let results = std::cell::RefCell::new(Vec::new());
    let check = |what: &str, x: ndarray::Array2<f32>, labels: &Value| {
        for (size, want) in labels.as_object().unwrap() {
            let want: Vec<i64> = serde_json::from_value(want.clone()).unwrap();
            let options = DensityOptions { min_cluster_size: size.parse().unwrap(), min_samples: None };
            let got: Vec<i64> = hdbscan(x.view(), &options).labels.iter().map(|l| l.map_or(-1, |l| l as i64)).collect();
            let noise = |l: &[i64]| l.iter().filter(|&&v| v < 0).count();
            let ari = adjusted_rand_index(&got, &want);
            results.borrow_mut().push((format!("{what}, min_cluster_size {size}"), ari, noise(&got), noise(&want)));
        }
    };
    let points: Vec<Vec<f32>> = serde_json::from_value(reference["blobs"]["points"].clone()).unwrap();
    let x = ndarray::Array2::from_shape_fn((points.len(), points[0].len()), |(i, j)| points[i][j]);
    check("blobs", x, &reference["blobs"]["labels"]);
    for layer in reference["layers"].as_array().unwrap() {
        let (shape, x) = read_npy(&heatmaps().join(layer["file"].as_str().unwrap()));
        let n = shape[0];
        let x = ndarray::Array2::from_shape_vec((n, x.len() / n), x).unwrap();
        check(layer["name"].as_str().unwrap(), x, &layer["labels"]);
    }
    // Mutual reachability distances tie often (core distances dominate), and the two packages
    // may break a tie in the condensed tree differently: a point at a cluster's edge falls out as
    // noise in one and stays in the other (seen: one of the 330 blob points).
    let results = results.into_inner();
    let table: Vec<String> = results.iter().map(|(w, a, g, p)| format!("{w}: ARI {a:.3}, noise {g} vs {p}")).collect();
    for (what, ari, got, want) in &results {
        assert!(*ari > 0.99, "{what}: ARI {ari}\n{}", table.join("\n"));
        assert!(got.abs_diff(*want) <= 1, "{what}: noise {got} vs {want}\n{}", table.join("\n"));
    }
    let exact = results.iter().filter(|r| r.1 == 1.0).count();
    assert!(exact * 4 >= results.len() * 3, "{exact} of {} identical\n{}", results.len(), table.join("\n"));
}

/// UMAP's graph against umap-learn (models/scripts/make_umap_reference.py): the k nearest
/// neighbours, each point's rho and sigma, and the symmetrised fuzzy simplicial set, on two fixture
/// layers at k = 5 and 15. umap-learn works in float32 and stops its sigma search within 1e-5 of
/// the target sum, so sigmas and weights agree to about 1e-3, not to the last bit.
#[test]
fn umap_graph_equals_umap_learn() {
    use hudd_core::cluster::umap::{fuzzy_simplicial_set, knn, smooth_knn_dist};
    let p = fixtures().join("cluster/umap/reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let (name, k) = (case["name"].as_str().unwrap(), case["k"].as_u64().unwrap() as usize);
        let (shape, x) = read_npy(&heatmaps().join(case["file"].as_str().unwrap()));
        let n = shape[0];
        let x = ndarray::Array2::from_shape_vec((n, x.len() / n), x).unwrap();
        let d = hudd_core::distance::pairwise(x.view(), hudd_core::distance::Normalize::None);
        let got = knn(&d, k);
        let indices: Vec<Vec<usize>> = serde_json::from_value(case["indices"].clone()).unwrap();
        assert_eq!(got.indices, indices, "{name} k={k}");
        let (sigmas, rhos) = smooth_knn_dist(&got.distances, k as f64);
        let want_s: Vec<f64> = serde_json::from_value(case["sigmas"].clone()).unwrap();
        let want_r: Vec<f64> = serde_json::from_value(case["rhos"].clone()).unwrap();
        for i in 0..n {
            assert!(close(rhos[i], want_r[i], 1e-5), "{name} k={k} point {i}: rho {} vs {}", rhos[i], want_r[i]);
            assert!(close(sigmas[i], want_s[i], 1e-3), "{name} k={k} point {i}: sigma {} vs {}", sigmas[i], want_s[i]);
        }
        let graph = fuzzy_simplicial_set(&got, &sigmas, &rhos);
        let want: Vec<(usize, usize, f64)> = serde_json::from_value(case["graph"].clone()).unwrap();
        assert_eq!(graph.len(), want.len(), "{name} k={k}: edges");
        for (i, j, w) in want {
            let v = graph.get(&(i, j)).copied().unwrap_or(f64::NAN);
            assert!((v - w).abs() < 1e-3, "{name} k={k} edge ({i}, {j}): {v} vs {w}");
        }
    }
}

/// The feature path (UMAP, then HDBSCAN) on the seeded blobs against umap-learn + hdbscan: UMAP is
/// stochastic and the two initial layouts differ (umap-learn's spectral, hudd's seeded uniform), so
/// the partitions are compared by ARI, not equality; the same seed gives the same embedding.
#[test]
fn umap_then_hdbscan_agrees_with_umap_learn_and_hdbscan() {
    use hudd_core::cluster::density::{hdbscan, DensityOptions};
    use hudd_core::cluster::stats::adjusted_rand_index;
    use hudd_core::cluster::umap::{umap, LayoutOptions};
    let density: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cluster/density/reference.json")).unwrap())
            .unwrap();
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cluster/umap/reference.json")).unwrap())
            .unwrap();
    let points: Vec<Vec<f32>> = serde_json::from_value(density["blobs"]["points"].clone()).unwrap();
    let x = ndarray::Array2::from_shape_fn((points.len(), points[0].len()), |(i, j)| points[i][j]);
    let d = hudd_core::distance::pairwise(x.view(), hudd_core::distance::Normalize::None);
    let options = LayoutOptions { seed: 0, ..LayoutOptions::default() };
    let embedded = umap(&d, 15, &options);
    assert_eq!(embedded, umap(&d, 15, &options), "the same seed, the same embedding");
    assert_ne!(embedded, umap(&d, 15, &LayoutOptions { seed: 1, ..options }), "the seed is used");
    let labels: Vec<i64> =
        hdbscan(embedded.mapv(|v| v as f32).view(), &DensityOptions { min_cluster_size: 15, min_samples: None })
            .labels
            .iter()
            .map(|l| l.map_or(-1, |l| l as i64))
            .collect();
    let want: Vec<i64> = serde_json::from_value(reference["blobs_umap_hdbscan"].clone()).unwrap();
    let ari = adjusted_rand_index(&labels, &want);
    assert!(ari > 0.95, "ARI {ari} against umap-learn + hdbscan (0.992 when written)\n{labels:?}\n{want:?}");
}

/// `hudd bench cluster` runs both paths on synthetic data and reports what it timed.
#[test]
fn bench_cluster_times_both_paths() {
    for extra in [&[][..], &["--feature-path", "--min-cluster-size", "5"][..]] {
        let mut args = vec!["bench", "cluster", "--synthetic", "120", "--dims", "64", "--planted", "3"];
        args.extend_from_slice(extra);
        let o = hudd(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        let row = text.lines().find(|l| l.starts_with("synthetic")).unwrap_or_else(|| panic!("{text}"));
        let k: usize = row.split_whitespace().nth(6).unwrap().parse().unwrap();
        assert!(k >= 2, "{row}");
        assert_eq!(row.contains("umap"), !extra.is_empty(), "{row}");
        assert!(text.contains("peak memory"), "{text}");
    }
}

#[test]
fn kneedle_equals_kneed() {
    let cases = reference()["kneed"].as_array().unwrap().clone();
    assert!(cases.iter().any(|c| c["knee"].is_null()), "the reference includes curves without a knee");
    for (i, c) in cases.iter().enumerate() {
        let x: Vec<f64> = serde_json::from_value(c["x"].clone()).unwrap();
        let y: Vec<f64> = serde_json::from_value(c["y"].clone()).unwrap();
        let curve = if c["curve"] == "concave" { Curve::Concave } else { Curve::Convex };
        let direction = if c["direction"] == "increasing" { Direction::Increasing } else { Direction::Decreasing };
        assert_eq!(kneedle(&x, &y, 1.0, curve, direction), c["knee"].as_f64(), "case {i}: {c}");
    }
}

#[test]
fn reruns_write_identical_clusters_json_and_alternatives_are_recorded() {
    let (a, _) = run_cluster(&[]);
    let (b, _) = run_cluster(&["-j", "1"]);
    let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("clusters.json")).unwrap();
    assert_eq!(read(&a), read(&b), "same data, same clusters.json (timings live in timings.json)");
    assert!(a.path().join("timings.json").exists());

    let (_, alt) =
        run_cluster(&["--linkage", "average", "--normalize", "l2", "--layer-rule", "silhouette", "--k", "3"]);
    assert_eq!(alt.parameters.linkage.name(), "average");
    assert_eq!(alt.parameters.normalize.name(), "l2");
    assert_eq!(alt.parameters.layer_rule.name(), "silhouette");
    assert!(alt.layers.iter().all(|l| l.k == 3 && l.clusters.len() == 3));
    let best = alt.layers.iter().filter(|l| l.name != "image").map(|l| l.silhouette).fold(f64::MIN, f64::max);
    let chosen = alt.layers.iter().find(|l| Some(&l.name) == alt.best_layer.as_ref()).unwrap();
    assert_eq!(chosen.silhouette, best, "silhouette rule picks the highest silhouette");
}

#[test]
fn bad_cluster_input_is_a_clear_error() {
    let out = tempfile::tempdir().unwrap();
    let o = hudd(&["cluster", "--heatmaps", &arg(out.path()), "-o", &arg(&out.path().join("x"))]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("hudd heatmaps"), "{}", stderr(&o));
    let o = hudd(&["cluster", "--heatmaps", &arg(&heatmaps()), "-o", &arg(out.path()), "--linkage", "single"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(stderr(&o).contains("possible values: ward-rows, ward, average"), "{}", stderr(&o));
    let o = hudd(&["cluster", "--heatmaps", &arg(&heatmaps()), "-o", &arg(out.path()), "--method", "single"]);
    assert!(stderr(&o).contains("possible values: hudd, ward, average, hdbscan"), "{}", stderr(&o));
    // A flag the method does not use is refused, not ignored.
    for extra in [&["--k", "3"][..], &["--layer-rule", "silhouette"], &["--normalize", "l2"]] {
        let mut args = vec!["cluster", "--heatmaps", &arg(&heatmaps()), "-o", &arg(out.path()), "--method", "hdbscan"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = hudd(&args);
        assert!(!o.status.success(), "{extra:?}");
        assert!(stderr(&o).contains("applies to the tree methods"), "{extra:?}: {}", stderr(&o));
    }
    let o = hudd(&[
        "cluster",
        "--heatmaps",
        &arg(&heatmaps()),
        "-o",
        &arg(out.path()),
        "--method",
        "hdbscan",
        "--min-cluster-size",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Worker threads: 1 to 65535 (0 used to mean 1 silently; 100000 used to hang).
    for j in ["0", "100000"] {
        let o = hudd(&["cluster", "--heatmaps", &arg(&heatmaps()), "-o", &arg(out.path()), "-j", j]);
        assert_eq!(o.status.code(), Some(2), "-j {j}: {}", stderr(&o));
    }
}

/// Writes a heatmaps folder: the input, a convolution and the explained logits of 8 images whose
/// errors all share one predicted class (class 0). The logits' relevance is the start vector: one
/// non-zero entry, the predicted logit, positive for half of the images and negative for the rest.
fn one_predicted_class(dir: &std::path::Path, record_output: bool) {
    let value = |i: usize, j: usize| ((i * 7 + j * 13) % 11) as f32 / 11.0;
    let write = |file: &str, rows: Vec<Vec<f32>>| {
        let mut w = hudd_core::npy::NpyWriter::create(&dir.join(file), &[rows.len(), rows[0].len()]).unwrap();
        for r in &rows {
            w.append(r).unwrap();
        }
        w.finish().unwrap();
    };
    write("image.npy", (0..8).map(|i| (0..6).map(|j| value(i, j)).collect()).collect());
    // Two loose groups: a real, imperfect structure.
    write("conv.npy", (0..8).map(|i| (0..6).map(|j| value(i, j) + if i < 4 { 3.0 } else { 0.0 }).collect()).collect());
    write(
        "logits.npy",
        (0..8)
            .map(|i| {
                (0..3)
                    .map(|j| {
                        if j == 0 {
                            if i % 2 == 0 {
                                2.0 + i as f32
                            } else {
                                -1.0 - i as f32
                            }
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect(),
    );
    let mut index = serde_json::json!({
        "format": "hudd-heatmaps", "format_version": 1, "preset": "hudd",
        "images": (0..8).map(|i| format!("test/{i}.png")).collect::<Vec<_>>(),
        "layers": [
            {"tensor": "image", "file": "image.npy", "shape": [6], "node": ""},
            {"tensor": "conv", "file": "conv.npy", "shape": [6], "node": "conv"},
            {"tensor": "logits", "file": "logits.npy", "shape": [3], "node": "fc"},
        ],
    });
    if record_output {
        index["output_layer"] = "logits".into();
    }
    std::fs::write(dir.join("index.json"), serde_json::to_string(&index).unwrap()).unwrap();
}

#[test]
fn the_explained_output_is_never_the_best_layer() {
    for record_output in [false, true] {
        let h = tempfile::tempdir().unwrap();
        one_predicted_class(h.path(), record_output);
        let out = tempfile::tempdir().unwrap();
        let args = [
            "cluster",
            "--heatmaps",
            &arg(h.path()),
            "-o",
            &arg(out.path()),
            "--normalize",
            "l2",
            "--layer-rule",
            "silhouette",
        ];
        let o = hudd(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let report: ClustersReport =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("clusters.json")).unwrap()).unwrap();
        let logits = report.layers.iter().find(|l| l.name == "logits").unwrap();
        assert!(logits.silhouette > 0.99, "the start vector splits only the logit's sign: {}", logits.silhouette);
        if record_output {
            assert_eq!(report.output_layer.as_deref(), Some("logits"));
            assert_eq!(report.best_layer.as_deref(), Some("conv"));
            assert!(stdout(&o).contains("logits") && stdout(&o).contains("(explained output: never the best layer)"));
        } else {
            // A heatmaps folder that does not name its output (written before hudd recorded it):
            // the logits win, which is what the exclusion prevents.
            assert_eq!(report.best_layer.as_deref(), Some("logits"));
        }
    }
}

/// `hudd cluster --method hdbscan` (one trial: euclidean, 2 components, min_cluster_size 5) on the
/// heatmaps fixture agrees with umap-learn + hdbscan on every layer where umap-learn's own
/// partitions agree across seeds (models/scripts/make_umap_reference.py); noise is recorded
/// as noise, never as a cluster, and the parameters and seed are recorded.
#[test]
fn the_feature_path_agrees_with_umap_learn_and_hdbscan_on_heatmaps() {
    use hudd_core::cluster::stats::adjusted_rand_index;
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cluster/umap/reference.json")).unwrap())
            .unwrap();
    let one = [
        "--method",
        "hdbscan",
        "--umap-metric",
        "euclidean",
        "--umap-components",
        "2",
        "--min-cluster-size",
        "5",
        "--seed",
        "0",
    ];
    let (_, report) = run_cluster(&one);
    assert_eq!(report.parameters.method(), hudd_core::cluster::Method::Hdbscan);
    let fp = report.parameters.feature_path.as_ref().expect("the feature path's options are recorded");
    assert_eq!((fp.seed, fp.min_cluster_sizes.as_slice(), fp.neighbours), (0, &[5usize][..], 15));
    let images: Vec<String> =
        serde_json::from_str::<Value>(&std::fs::read_to_string(heatmaps().join("index.json")).unwrap()).unwrap()
            ["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
    let mut compared = 0;
    for want in reference["heatmap_feature_path"].as_array().unwrap() {
        let layer = report.layers.iter().find(|l| l.name == want["name"]).unwrap();
        // Every image is in exactly one cluster or in the noise.
        let mut labels = vec![None; images.len()];
        for c in &layer.clusters {
            for m in &c.members {
                let i = images.iter().position(|x| *x == m.image).unwrap();
                assert!(labels[i].replace(c.id as i64).is_none(), "{} in two clusters", m.image);
            }
        }
        for n in &layer.noise {
            let i = images.iter().position(|x| x == n).unwrap();
            assert!(labels[i].replace(-1).is_none(), "{n} is noise and in a cluster");
        }
        assert!(labels.iter().all(Option::is_some), "{}: an image is neither clustered nor noise", layer.name);
        assert_eq!(layer.noise.len(), labels.iter().filter(|l| **l == Some(-1)).count());
        assert!(layer.clusters.iter().all(|c| c.size >= 5), "{}: clusters of 5 or more", layer.name);
        let trials = &layer.feature_path.as_ref().unwrap().trials;
        assert_eq!(trials.len(), 1);
        assert_eq!((trials[0].clusters, trials[0].noise), (layer.k, layer.noise.len()));
        if !want["stable"].as_bool().unwrap() {
            continue;
        }
        let ours: Vec<i64> = labels.iter().map(|l| l.unwrap()).collect();
        let theirs: Vec<i64> = serde_json::from_value(want["labels"][0].clone()).unwrap();
        let ari = adjusted_rand_index(&ours, &theirs);
        assert!(ari >= 0.9, "{}: ARI {ari} against umap-learn + hdbscan\n{ours:?}\n{theirs:?}", layer.name);
        compared += 1;
    }
    assert!(compared >= 3, "the reference has stable layers to compare");
}

/// The default grid is tried per layer and recorded; the chosen trial has the highest silhouette;
/// the same seed gives the same clusters.json, another seed is recorded.
#[test]
fn the_feature_path_grid_is_recorded_and_seeded() {
    let (a, report) = run_cluster(&["--method", "hdbscan"]);
    let (b, _) = run_cluster(&["--method", "hdbscan", "-j", "1"]);
    let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("clusters.json")).unwrap();
    assert_eq!(read(&a), read(&b), "same data and seed, same clusters.json");
    assert!(!a.path().join("distances").exists(), "the feature path writes no N × N distances");
    for l in &report.layers {
        let fp = l.feature_path.as_ref().unwrap();
        assert_eq!(fp.trials.len(), 2 * 2 * 3, "metrics × components × min_cluster_size");
        let best = fp.trials.iter().filter_map(|t| t.silhouette).fold(f64::NEG_INFINITY, f64::max);
        if best.is_finite() {
            assert_eq!(fp.trials[fp.chosen].silhouette, Some(best), "{}", l.name);
        }
        assert_eq!(l.k_choice, hudd_core::cluster::KChoice::Hdbscan);
        assert!(l.curve.is_empty());
    }
    let best = report.layers.iter().find(|l| Some(&l.name) == report.best_layer.as_ref()).unwrap();
    assert!(best.map.as_ref().is_some_and(|m| m.method.contains("UMAP")), "the best layer's map is its UMAP");
    let (_, other) =
        run_cluster(&["--method", "hdbscan", "--seed", "7", "--umap-components", "2", "--min-cluster-size", "5"]);
    assert_eq!(other.parameters.feature_path.unwrap().seed, 7);
}
