//! `hudd heatmaps`: files, index, layer choice, skips and batch invariance, against Zennit.

use crate::common::*;

fn heatmaps(images: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args: Vec<String> = vec![
        "heatmaps".into(),
        "-m".into(),
        arg(&fmnist_model()),
        "-c".into(),
        arg(&fmnist_config()),
        "-i".into(),
        arg(images),
        "-o".into(),
        arg(out),
        "-q".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    hudd(&args)
}

fn index(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap()
}

#[test]
fn heatmap_files_match_zennit_through_the_cli() {
    let zennit = fixtures().join("lrp/fmnist");
    let reference = index(&zennit);
    // The reference images, listed in a text file (paths relative to it).
    let work = tempfile::tempdir().unwrap();
    let list = work.path().join("images.txt");
    let lines: Vec<String> =
        reference["images"].as_array().unwrap().iter().map(|p| arg(&fmnist_data().join(p.as_str().unwrap()))).collect();
    std::fs::write(&list, lines.join("\n")).unwrap();
    let out = work.path().join("h");
    let o = heatmaps(&list, &out, &["--preset", "epsilon-gamma-box", "--layers", "all", "--batch-size", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let idx = index(&out);
    assert_eq!(idx["format"], "hudd-heatmaps");
    assert_eq!(idx["preset"], "epsilon-gamma-box");
    assert_eq!(idx["images"].as_array().unwrap().len(), 4);
    let files = reference["presets"]["epsilon-gamma-box"].as_object().unwrap();
    let layers = idx["layers"].as_array().unwrap();
    for (tensor, file) in files {
        let entry =
            layers.iter().find(|l| l["tensor"] == tensor.as_str()).unwrap_or_else(|| panic!("{tensor} missing"));
        let (shape, got) = read_npy(&out.join(entry["file"].as_str().unwrap()));
        let (want_shape, want) = read_npy(&zennit.join(file.as_str().unwrap()));
        assert_eq!(shape, want_shape, "{tensor}");
        let num: f32 = got.iter().zip(&want).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
        let den: f32 = want.iter().map(|b| b * b).sum::<f32>().sqrt();
        assert!(num / den <= 1e-4, "{tensor}: {}", num / den);
        assert_eq!(entry["shape"].as_array().unwrap().len(), shape.len() - 1);
    }
    let first_conv = layers.iter().find(|l| l["op"] == "Conv").unwrap();
    assert_eq!(first_conv["rule"], "zbox", "z^B on the first convolution");
}

#[test]
fn default_layers_are_hudds_and_batches_do_not_matter() {
    let work = tempfile::tempdir().unwrap();
    let images = fmnist_data().join("test/coat");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    assert!(heatmaps(&images, &a, &["--batch-size", "1", "-j", "1"]).status.success());
    let o = heatmaps(&images, &b, &["--batch-size", "7", "-j", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let idx = index(&a);
    let ops: Vec<&str> = idx["layers"].as_array().unwrap().iter().map(|l| l["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["", "Conv", "MaxPool", "Conv", "MaxPool", "Flatten", "Gemm", "Gemm"]);
    let mut names: Vec<String> =
        std::fs::read_dir(&images).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let rows: Vec<&str> = idx["images"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(rows, names, "rows in sorted path order");
    for l in idx["layers"].as_array().unwrap() {
        let f = l["file"].as_str().unwrap();
        let (sa, va) = read_npy(&a.join(f));
        let (sb, vb) = read_npy(&b.join(f));
        assert_eq!(sa, sb);
        assert_eq!(sa[0], 30);
        // The same bits: every product has one shape whatever the batch or thread count.
        assert!(va == vb, "{f}: batches of 1 on 1 thread and of 7 on 2 threads differ");
    }
    // z+ (the hudd preset's dense rule) gives non-negative relevance below the dense layers.
    let (_, dense_in) = read_npy(&a.join("_flatten_Flatten_output_0.npy"));
    assert!(dense_in.iter().all(|v| *v >= -1e-6));
}

#[test]
fn half_float_files_hold_the_values_rounded_and_cluster() {
    let work = tempfile::tempdir().unwrap();
    let images = fmnist_data().join("test/coat");
    let (full, half) = (work.path().join("f32"), work.path().join("f16"));
    assert!(heatmaps(&images, &full, &[]).status.success());
    let o = heatmaps(&images, &half, &["--dtype", "f16"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let idx = index(&half);
    assert_eq!(idx["dtype"], "f16");
    assert!(index(&full).get("dtype").is_none(), "f32 is not written: older readers see what they know");
    for l in idx["layers"].as_array().unwrap() {
        let f = l["file"].as_str().unwrap();
        let (shape, want) = read_npy(&full.join(f));
        let bytes = std::fs::read(half.join(f)).unwrap();
        assert!(std::str::from_utf8(&bytes[10..90]).unwrap().contains("'descr': '<f2'"), "{f}");
        let values: usize = shape.iter().product();
        assert_eq!(bytes.len() % 64, (2 * values) % 64, "{f}: a 64-byte header and two bytes a value");
        assert!(bytes.len() < std::fs::metadata(full.join(f)).unwrap().len() as usize / 2 + 256, "{f}");
        // Read back through the library (widened): each value within f16's rounding of the f32 one.
        let (_, got) = hudd_core::npy::read_f32(&half.join(f)).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= w.abs() / 1024.0 + scale * 1e-4, "{f}: {g} for {w}");
        }
    }
    // `hudd cluster` reads them as it reads f32 files.
    let o = hudd(&["cluster", "--heatmaps", &arg(&half), "-o", &arg(&work.path().join("c"))]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(work.path().join("c/clusters.json").exists());
}

#[test]
fn bad_layer_names_unreadable_images_and_unsupported_ops() {
    let work = tempfile::tempdir().unwrap();
    let images = work.path().join("imgs");
    copy_tree(&fmnist_data().join("test/bag"), &images);
    std::fs::write(images.join("broken.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    let out = work.path().join("h");
    let o = heatmaps(&images, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let idx = index(&out);
    assert_eq!(idx["images"].as_array().unwrap().len(), 30);
    assert_eq!(idx["skipped"][0]["image"], "broken.png");
    let (shape, _) = read_npy(&out.join("image.npy"));
    assert_eq!(shape[0], 30, "rows = readable images");

    let o = heatmaps(&images, &work.path().join("h2"), &["--layers", "conv9"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("layer `conv9` is not an activation")
            && stderr(&o).contains("/features/features.0/Conv_output_0")
    );

    let o = heatmaps(&images, &work.path().join("h3"), &["--preset", "zplus"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(stderr(&o).contains("possible values: hudd, epsilon-plus, epsilon-plus-flat"), "{}", stderr(&o));

    let mut args: Vec<String> =
        vec!["heatmaps".into(), "-m".into(), arg(&fixtures().join("models/unsupported_op.onnx"))];
    args.extend(["-i".into(), arg(&images), "-o".into(), arg(&work.path().join("h4"))]);
    let o = hudd(&args);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("mystery_node"), "{}", stderr(&o));
}
