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
    let o = hudd(&[
        "analyze",
        "-m",
        &arg(&fmnist_model()),
        "-c",
        &arg(&fmnist_config()),
        "-d",
        &arg(&fmnist_data()),
        "-o",
        &arg(out.path()),
        "-q",
    ]);
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
            // Explanations from the expected/predicted classes, best first.
            if c.size >= 2 {
                assert!(!c.explanations.is_empty());
                assert!(c.explanations.windows(2).all(|w| w[0].ratio <= w[1].ratio));
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
