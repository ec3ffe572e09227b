//! `--shard I/N` and `hudd merge`: every sharded stage, merged, writes the same bytes as one
//! unsharded run (on the Fashion-MNIST fixture, with an unreadable image and a stray file, shards
//! that hold no image, and uneven batches); incomplete or foreign shard sets are refused.

use std::path::{Path, PathBuf};

use crate::common::{
    arg, assert_clean_failure, copy_tree, fmnist_config, fmnist_data, fmnist_model, hudd, stderr, stdout,
};

/// Every file under `dir` (relative paths, sorted), without the shard folders.
fn files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "shards") {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `a` and `b` hold the same files with the same bytes.
fn assert_same_tree(a: &Path, b: &Path) {
    let (fa, fb) = (files(a), files(b));
    assert_eq!(fa, fb, "the same files in {} and {}", a.display(), b.display());
    assert!(!fa.is_empty());
    for f in &fa {
        assert!(std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(), "{} differs", f.display());
    }
}

fn ok(args: &[&str]) -> String {
    let o = hudd(args);
    assert!(o.status.success(), "hudd {}: {}", args.join(" "), stderr(&o));
    stdout(&o)
}

/// The fixture with an unreadable test image and a file that is no image.
fn data_with_bad_files(work: &Path) -> PathBuf {
    let data = work.join("data");
    copy_tree(&fmnist_data(), &data);
    std::fs::write(data.join("test/coat/broken.png"), b"not a png").unwrap();
    std::fs::write(data.join("improvement/broken.png"), b"not a png").unwrap();
    std::fs::write(data.join("test/coat/notes.txt"), b"a stray file").unwrap();
    data
}

#[test]
fn sharded_evaluate_and_heatmaps_merge_into_the_unsharded_bytes() {
    let work = tempfile::tempdir().unwrap();
    let data = data_with_bad_files(work.path());
    let (model, config, d) = (arg(&fmnist_model()), arg(&fmnist_config()), arg(&data));
    let (whole, sharded) = (work.path().join("whole"), work.path().join("sharded"));
    let common = ["-m", &model, "-c", &config, "-q", "--batch-size", "16"];

    // evaluate: 100 train, 301 test, 100 improvement images in batches of 16; 3 shards.
    ok(&[&["evaluate", "-d", &d, "-o", &arg(&whole)], &common[..]].concat());
    for i in 0..3 {
        let out =
            ok(&[&["evaluate", "-d", &d, "-o", &arg(&sharded), "--shard", &format!("{i}/3")], &common[..]].concat());
        assert!(out.contains("hudd merge"), "{out}");
    }
    let out = ok(&["merge", &arg(&sharded)]);
    assert!(out.contains("evaluate: 3 shards merged"), "{out}");
    assert_same_tree(&whole.join("results"), &sharded.join("results"));
    let skipped = std::fs::read_to_string(whole.join("results/skipped.csv")).unwrap();
    assert!(skipped.contains("broken.png") && skipped.contains("notes.txt"), "{skipped}");

    // heatmaps of the test split; 9 shards of 19 batches, and 25 shards: some hold nothing.
    let images = arg(&data.join("test"));
    let h = work.path().join("h");
    ok(&[&["heatmaps", "-i", &images, "-o", &arg(&h)], &common[..]].concat());
    for n in [9, 25] {
        let hs = work.path().join(format!("h{n}"));
        for i in 0..n {
            ok(&[&["heatmaps", "-i", &images, "-o", &arg(&hs), "--shard", &format!("{i}/{n}")], &common[..]].concat());
        }
        ok(&["merge", &arg(&hs), "--stage", "heatmaps"]);
        assert_same_tree(&h, &hs);
    }
    let index = std::fs::read_to_string(h.join("index.json")).unwrap();
    assert!(index.contains("broken.png"), "the unreadable image is recorded");

    // A missing shard, an unfinished one, and one from another command are refused; nothing is
    // written.
    let hm = work.path().join("hm");
    for i in [0, 2] {
        ok(&[&["heatmaps", "-i", &images, "-o", &arg(&hm), "--shard", &format!("{i}/3")], &common[..]].concat());
    }
    let o = hudd(&["merge", &arg(&hm)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("shard(s) 1 of 3 are missing"), "{}", stderr(&o));
    assert!(!hm.join("index.json").exists());
    std::fs::create_dir_all(hm.join("shards/heatmaps-1-of-3")).unwrap();
    assert!(stderr(&hudd(&["merge", &arg(&hm)])).contains("shard(s) 1 of 3 did not finish"));
    let other = ["-m", &model, "-c", &config, "-q", "--batch-size", "16", "--preset", "epsilon-plus"];
    ok(&[&["heatmaps", "-i", &images, "-o", &arg(&hm), "--shard", "1/3"], &other[..]].concat());
    let o = hudd(&["merge", &arg(&hm)]);
    assert!(stderr(&o).contains("other inputs than shard 0"), "{}", stderr(&o));
    assert!(!hm.join("index.json").exists());
    let o = hudd(&["heatmaps", "-i", &images, "-o", &arg(&hm), "--shard", "3/3", "-m", &model]);
    assert_eq!(o.status.code(), Some(2), "a shard that does not exist is a usage error");
    assert!(stderr(&o).contains("from 0 to 2"), "{}", stderr(&o));
}

#[test]
fn sharded_assign_merges_into_the_unsharded_unsafe_set() {
    let work = tempfile::tempdir().unwrap();
    let data = data_with_bad_files(work.path());
    let run = work.path().join("run");
    let (model, config) = (arg(&fmnist_model()), arg(&fmnist_config()));
    ok(&["analyze", "-m", &model, "-c", &config, "-d", &arg(&data), "-o", &arg(&run), "-q"]);
    let assign = |extra: &[&str]| ok(&[&["assign", "--run", &arg(&run), "-q", "--batch-size", "8"], extra].concat());
    assign(&[]);
    let whole = work.path().join("whole-unsafe");
    copy_tree(&run.join("unsafe"), &whole);
    let distances = std::fs::read_to_string(whole.join("distances.csv")).unwrap();
    assert_eq!(distances.lines().count(), 1 + 100, "every readable improvement image has its row");
    std::fs::remove_dir_all(run.join("unsafe")).unwrap();
    for i in 0..4 {
        let out = assign(&["--shard", &format!("{i}/4")]);
        assert!(out.contains(&format!("shard {i}/4")), "{out}");
        assert!(!run.join("unsafe/unsafe.json").exists(), "a shard does not allocate");
    }
    let out = ok(&["merge", &arg(&run)]);
    assert!(out.contains("assign: 4 shards merged") && out.contains("quota"), "{out}");
    assert_same_tree(&whole, &run.join("unsafe"));

    // A shard's distances.csv edited (issue 33, row 10): rows deleted or duplicated, a NaN or a
    // negative distance, an image renamed since; each refused, naming the file, and no partial
    // unsafe set is left.
    let csv = run.join("shards/assign-0-of-4/distances.csv");
    let original = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let (first, second) = (lines[1], lines[2]);
    let value = first.split(',').nth(1).unwrap();
    let image = first.split(',').next().unwrap();
    let edits = [
        (original.replacen(&format!("{second}\n"), "", 1), "but the shard took"),
        (original.replacen(second, first, 1), "is listed twice"),
        (original.replacen(first, &first.replacen(value, "NaN", 1), 1), "the distance NaN"),
        (original.replacen(first, &first.replacen(value, "-1", 1), 1), "the distance -1"),
    ];
    for (text, needle) in edits {
        std::fs::remove_dir_all(run.join("unsafe")).unwrap();
        std::fs::write(&csv, text).unwrap();
        let o = hudd(&["merge", &arg(&run)]);
        assert_clean_failure(&o, &[needle, "distances.csv"]);
        assert!(!run.join("unsafe").exists(), "no partial unsafe set ({needle})");
        std::fs::write(&csv, &original).unwrap();
        ok(&["merge", &arg(&run)]);
    }
    let moved = data.join("improvement").join(image);
    std::fs::rename(&moved, moved.with_extension("moved")).unwrap();
    std::fs::remove_dir_all(run.join("unsafe")).unwrap();
    let o = hudd(&["merge", &arg(&run)]);
    assert_clean_failure(&o, &[&format!("`{image}` is not in"), "distances.csv"]);
    assert!(!run.join("unsafe").exists(), "no partial unsafe set");
    std::fs::rename(moved.with_extension("moved"), &moved).unwrap();

    // The run analysed again after the shards: refused.
    let mut clusters = std::fs::read(run.join("clusters.json")).unwrap();
    clusters.push(b'\n');
    std::fs::write(run.join("clusters.json"), clusters).unwrap();
    let o = hudd(&["merge", &arg(&run)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("analysed again"), "{}", stderr(&o));
}
