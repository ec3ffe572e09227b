//! `hudd assign` on the Fashion-MNIST fixture: the unsafe set, checked against the clustering's
//! own distance matrix (the members of the clusters, given back as improvement images, fall into
//! their own clusters at distance 0; every other distance is the nearest member's in
//! `distances/<layer>.npy`), and ClosestU's quotas.

use std::collections::HashMap;

use hudd_core::cluster::report::ClustersReport;

use crate::common::{arg, fmnist_config, fmnist_data, fmnist_model, hudd, read_npy, stderr, stdout};

#[test]
fn assign_picks_the_unsafe_set_with_the_clusterings_distances() {
    let work = tempfile::tempdir().unwrap();
    let run = work.path().join("run");
    let (model, config) = (arg(&fmnist_model()), arg(&fmnist_config()));
    let o = hudd(&["analyze", "-m", &model, "-c", &config, "-d", &arg(&fmnist_data()), "-o", &arg(&run), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let clusters: ClustersReport =
        serde_json::from_str(&std::fs::read_to_string(run.join("clusters.json")).unwrap()).unwrap();
    let best = clusters.layers.iter().find(|l| Some(&l.name) == clusters.best_layer.as_ref()).unwrap();

    // The clustered (Wrong) test images, flattened into one unlabelled folder.
    let improvement = work.path().join("improvement");
    std::fs::create_dir_all(&improvement).unwrap();
    let mut copy_of = HashMap::new();
    for c in &best.clusters {
        for m in &c.members {
            let flat = m.image.replace('/', "__");
            std::fs::copy(fmnist_data().join(&m.image), improvement.join(&flat)).unwrap();
            copy_of.insert(flat, (m.image.clone(), c.id));
        }
    }
    // An unreadable file is skipped and recorded, not fatal.
    std::fs::write(improvement.join("broken.png"), b"not a png").unwrap();
    let o = hudd(&["assign", "--run", &arg(&run), "--improvement", &arg(&improvement), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("quota"), "{}", stdout(&o));

    // Distances of the clustering, by image name.
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("heatmaps/index.json")).unwrap()).unwrap();
    let names: Vec<String> = serde_json::from_value(index["images"].clone()).unwrap();
    let row: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let (shape, d) = read_npy(&run.join("distances").join(&best.distances));
    let n = shape[0];
    let dist = |a: &str, b: &str| f64::from(d[row[a] * n + row[b]]);

    let csv = std::fs::read_to_string(run.join("unsafe/unsafe.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("image,cluster,distance,rank"));
    let eligible: HashMap<usize, &hudd_core::cluster::report::ClusterEntry> =
        best.clusters.iter().filter(|c| c.size >= 2).map(|c| (c.id, c)).collect();
    let mut fill: HashMap<usize, usize> = HashMap::new();
    let mut assigned = 0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (image, cluster, distance, rank): (&str, usize, f64, usize) =
            (f[0], f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap());
        let (original, own) = &copy_of[image];
        let target = eligible[&cluster];
        let nearest = target.members.iter().map(|m| dist(original, &m.image)).fold(f64::INFINITY, f64::min);
        assert!((distance - nearest).abs() <= 1e-4 * nearest.max(1.0), "{image}: {distance} vs {nearest}");
        if eligible.contains_key(own) {
            assert_eq!(cluster, *own, "{image}: a member of cluster {own} falls into its own cluster");
            assert!(distance < 1e-3, "{image}: {distance}");
        }
        *fill.entry(cluster).or_default() += 1;
        assert_eq!(rank, fill[&cluster], "ranks count the selection order within a cluster");
        assigned += 1;
    }
    // Every image found a place: the quotas (2 × members) exceed the images.
    assert_eq!(assigned, copy_of.len());
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("unsafe/unsafe.json")).unwrap()).unwrap();
    assert_eq!(record["parameters"]["mode"], "closest-u");
    assert_eq!(record["candidates"], copy_of.len());
    assert_eq!(record["skipped"][0]["image"], "broken.png");
    assert_eq!(record["parameters"]["layer"], best.name.as_str());
    for c in record["clusters"].as_array().unwrap() {
        let id = c["cluster"].as_u64().unwrap() as usize;
        assert_eq!(c["quota"].as_u64().unwrap() as usize, 2 * eligible[&id].size);
        assert_eq!(c["fill"].as_u64().unwrap() as usize, fill.get(&id).copied().unwrap_or(0));
        if fill.contains_key(&id) {
            assert!(run.join(format!("unsafe/cluster-{id}.gif")).is_file());
            assert_eq!(std::fs::read_dir(run.join(format!("unsafe/{id}"))).unwrap().count(), fill[&id]);
        }
    }
    let to_label = std::fs::read_to_string(run.join("unsafe/to-label.csv")).unwrap();
    assert!(to_label.starts_with("image,cluster,label\n"));
    assert!(to_label.lines().skip(1).all(|l| l.ends_with(',')), "labels are left empty");

    // Same inputs, same unsafe set.
    let o = hudd(&["assign", "--run", &arg(&run), "--improvement", &arg(&improvement), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(run.join("unsafe/unsafe.csv")).unwrap(), csv);

    // Step 5 and 6: the engineers' labels (here the true classes, from the fixture's folders) and
    // the balanced set.
    let labels = work.path().join("labels.csv");
    let mut text = String::from("path,label\n");
    for (flat, (original, _)) in &copy_of {
        let class = original.split('/').nth(1).unwrap();
        text.push_str(&format!("{},{class}\n", improvement.join(flat).display()));
    }
    std::fs::write(&labels, &text).unwrap();
    let balance = |seed: &str| hudd(&["bootstrap", "--run", &arg(&run), "--labels", &arg(&labels), "--seed", seed]);
    let o = balance("5");
    assert!(o.status.success(), "{}", stderr(&o));
    let balanced = std::fs::read_to_string(run.join("unsafe/balanced.csv")).unwrap();
    assert!(balanced.starts_with("image,cluster,copies,label\n"));
    let mut totals: HashMap<usize, usize> = HashMap::new();
    for line in balanced.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        *totals.entry(f[1].parse().unwrap()).or_default() += f[2].parse::<usize>().unwrap();
        assert_eq!(f[3], copy_of[f[0]].0.split('/').nth(1).unwrap(), "the label travels with the image");
    }
    let largest = eligible.values().map(|c| c.size).max().unwrap();
    assert!(totals.values().all(|&t| t == largest), "every cluster balanced to {largest}: {totals:?}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("unsafe/unsafe.json")).unwrap()).unwrap();
    assert_eq!(record["seed"], 5);
    assert!(balance("5").status.success());
    assert_eq!(std::fs::read_to_string(run.join("unsafe/balanced.csv")).unwrap(), balanced, "same seed, same file");
    // Bad labels: every problem at once, nothing rewritten.
    std::fs::write(&labels, format!("{}nowhere.png,coat\n", text.replacen(",coat\n", ",unicorn\n", 1))).unwrap();
    let o = balance("6");
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("label `unicorn`") && !e.contains("nowhere.png"), "{e}");
    assert_eq!(std::fs::read_to_string(run.join("unsafe/balanced.csv")).unwrap(), balanced);
    // Labels for more images than the unsafe set are normal (issue 33, row 8): the rows that
    // matter are used, the others counted.
    std::fs::write(&labels, format!("{text}nowhere.png,coat\n")).unwrap();
    let o = balance("5");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("labels: 1 labelled row(s) for images outside the unsafe set ignored"),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read_to_string(run.join("unsafe/balanced.csv")).unwrap(), balanced);

    // The run's model is checked: another model is refused.
    let other = arg(&crate::common::fixtures().join("models/bn_residual.onnx"));
    let o = hudd(&["assign", "--run", &arg(&run), "--improvement", &arg(&improvement), "-m", &other, "-q"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not the model the run analysed"), "{}", stderr(&o));
}
