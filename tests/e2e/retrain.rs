//! `hudd retrain` on the Fashion-MNIST fixture: the retrained ONNX file runs in the engine, its
//! bytes do not depend on the thread count, `retrain.json` records what the issue asks for, and
//! bad input is refused before any training.

use crate::common::{arg, assigned_run, fmnist_config, fmnist_data, fmnist_model, hudd, stderr, stdout};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn retrain_writes_a_model_that_runs_and_does_not_depend_on_the_thread_count() {
    let (work, run) = assigned_run(&fmnist_data());
    let (config, data) = (arg(&fmnist_config()), arg(&fmnist_data()));

    let retrain = |out: &str, threads: &str, quiet: bool| {
        let out = arg(&work.path().join(out));
        let run = arg(&run);
        let mut args = vec!["retrain", "--run", &run, "--labels", "auto", "-o", &out, "--epochs", "2"];
        args.extend(["--lr", "0.05", "--batch-size", "32", "--keep", "last", "--seed", "3", "-j", threads]);
        if quiet {
            args.push("-q");
        }
        let o = hudd(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        (std::fs::read(&out).unwrap(), stdout(&o), stderr(&o))
    };
    let (one, printed, _) = retrain("m2-j1.onnx", "1", true);
    let (two, _, progress) = retrain("m2-j2.onnx", "2", false);
    // Each epoch's loss and validation accuracy reach stderr even when it is not a terminal.
    for epoch in ["epoch 1: loss", "epoch 2: loss"] {
        assert!(progress.contains(epoch) && progress.contains("validation loss"), "{progress}");
    }
    assert!(one == two, "same inputs and seed, the same bytes with 1 or 2 threads");
    assert!(one != std::fs::read(fmnist_model()).unwrap(), "the weights changed");
    assert!(printed.contains("before") && printed.contains("after") && printed.contains("cluster"), "{printed}");

    let r = json(&run.join("retrain/retrain.json"));
    assert_eq!(r["format"], "hudd-retrain");
    let h = &r["hyperparameters"];
    assert_eq!((h["epochs"].as_u64(), h["batch_size"].as_u64(), h["lr"].as_f64()), (Some(2), Some(32), Some(0.05)));
    assert_eq!((h["momentum"].as_f64(), h["weight_decay"].as_f64()), (Some(0.9), Some(5e-4)), "HUDD's defaults");
    assert_eq!(h["loss"], "cross-entropy");
    assert_eq!(h["trainable_weights"], 8, "every conv and dense weight and bias of the fixture model");
    assert_eq!((r["seeds"]["retrain"].as_u64(), r["seeds"]["bootstrap"].as_u64()), (Some(3), Some(0)));
    assert_eq!(r["history"].as_array().unwrap().len(), 3, "epoch 0 (before) and two epochs");
    assert_eq!(r["chosen_epoch"], 2, "--keep last");
    assert!(r["history"][1]["train_loss"].as_f64().unwrap() > 0.0);
    let balanced = std::fs::read_to_string(run.join("unsafe/balanced.csv")).unwrap();
    let copies: u64 = balanced.lines().skip(1).map(|l| l.rsplit(',').nth(1).unwrap().parse::<u64>().unwrap()).sum();
    let d = &r["data"];
    assert_eq!(d["extra_copies"].as_u64(), Some(copies), "the balanced set, copies counted");
    assert_eq!(d["train_images"], 100);
    // The kept epoch is chosen on a fifth of the labelled images, which are not trained on.
    assert_eq!((h["validation_from"].as_str(), h["validation_fraction"].as_f64()), (Some("labelled"), Some(0.2)));
    let extra = d["extra_images"].as_u64().unwrap();
    let held = d["validation_images"].as_u64().unwrap();
    assert_eq!(held, (extra as f64 * 0.2).round() as u64, "{d}");
    assert_eq!(d["extra_trained"].as_u64(), Some(extra - held));
    assert!(d["training_examples"].as_u64().unwrap() < 100 + copies, "held-out images are not trained on: {d}");

    // Accuracy before and after, overall, per class, per cluster; checked against `hudd evaluate`
    // of the written model.
    let clusters = json(&run.join("clusters.json"));
    let best = clusters["best_layer"].as_str().unwrap();
    let layer = clusters["layers"].as_array().unwrap().iter().find(|l| l["name"] == best).unwrap();
    for side in ["before", "after"] {
        let a = &r[side];
        assert_eq!(a["total"], 300);
        assert_eq!(a["per_class"].as_array().unwrap().len(), 10);
        assert_eq!(a["per_cluster"].as_array().unwrap().len(), layer["clusters"].as_array().unwrap().len());
    }
    assert_eq!(r["before"]["failing_clusters"], 0.0, "the cluster members are the Wrong test images");
    let evaluated = work.path().join("eval");
    let o = hudd(&[
        "evaluate",
        "-m",
        &arg(&work.path().join("m2-j1.onnx")),
        "-c",
        &config,
        "-d",
        &data,
        "-o",
        &arg(&evaluated),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let test = std::fs::read_to_string(evaluated.join("results/test.csv")).unwrap();
    let header: Vec<&str> = test.lines().next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "result").unwrap();
    let right = test.lines().skip(1).filter(|l| l.split(',').nth(col) == Some("Correct")).count();
    assert_eq!(r["after"]["right"].as_u64(), Some(right as u64), "the record measures the written model");

    // The original toolset's choice: a share of the training and labelled images together.
    let out = arg(&work.path().join("m2-training.onnx"));
    let run_arg = arg(&run);
    let o = hudd(&[
        "retrain",
        "--run",
        &run_arg,
        "--labels",
        "auto",
        "-o",
        &out,
        "--epochs",
        "1",
        "--validation-from",
        "training",
        "--validation",
        "0.1",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r = json(&run.join("retrain/retrain.json"));
    assert_eq!(r["hyperparameters"]["validation_from"], "training");
    let distinct = 100 + r["data"]["extra_images"].as_u64().unwrap();
    assert_eq!(r["data"]["validation_images"].as_u64(), Some((distinct as f64 * 0.1).round() as u64));
}

#[test]
fn retrain_refuses_bad_settings_and_a_folder_that_is_not_a_run() {
    let work = tempfile::tempdir().unwrap();
    let run = work.path().join("run");
    let out = arg(&work.path().join("m2.onnx"));
    let o = hudd(&["retrain", "--run", &arg(&run), "--labels", "auto", "-o", &out, "--validation", "1.5"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--validation must be a share"), "{}", stderr(&o));
    let o = hudd(&["retrain", "--run", &arg(&run), "--labels", "auto", "-o", &out]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("run.json"), "{}", stderr(&o));
    assert!(!work.path().join("m2.onnx").exists());
}

#[test]
fn compare_retrains_each_method_at_the_same_budget_and_summarises_the_repeats() {
    let (_work, run) = assigned_run(&fmnist_data());
    let run_arg = arg(&run);
    let compare = |repeats: &str, variant: bool| {
        let mut args = vec![
            "compare",
            "--run",
            &run_arg,
            "--labels",
            "auto",
            "--repeats",
            repeats,
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--lr",
            "0.05",
            "--seed",
            "4",
            "-q",
        ];
        if variant {
            args.push("--hudd-all");
        }
        let o = hudd(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = std::fs::read_to_string(run.join("retrain/compare.json")).unwrap();
        (serde_json::from_str::<serde_json::Value>(&text).unwrap(), stdout(&o))
    };
    let (r, printed) = compare("2", false);
    assert!(r.get("hudd_all").is_none() && !printed.contains("hudd-all"), "the variant only on request");
    for m in ["before", "hudd", "bl1", "bl2", "images labelled", "trained on", "kept epoch", "unchanged model"] {
        assert!(printed.contains(m), "{m}: {printed}");
    }
    assert!(printed.contains("no test of HUDD against the baselines: 2 repeat(s), 5 needed"), "{printed}");
    assert_eq!(r["format_version"], 2);
    assert_eq!(r["tests"].as_array().map(Vec::len), Some(0), "no p-values from 2 repeats");
    let budget = r["budget"].as_u64().unwrap();
    let unsafe_rows = std::fs::read_to_string(run.join("unsafe/unsafe.csv")).unwrap().lines().count() as u64 - 1;
    assert_eq!(budget, unsafe_rows, "the budget is what the engineers label: the unsafe set");
    for key in ["overall", "failing_clusters"] {
        assert!(r["before"][key]["sd"].is_null(), "one value has no sd: {}", r["before"][key]);
        for m in ["hudd", "bl1", "bl2"] {
            let v = &r[m][key];
            assert!(v["mean"].as_f64().unwrap() >= 0.0 && v["sd"].as_f64().unwrap() >= 0.0, "{m}.{key}: {v}");
        }
    }
    let wrong = r["improvement_wrong"].as_u64().unwrap();
    let unsafe_wrong = r["unsafe_wrong"].as_u64().unwrap();
    assert!(unsafe_wrong <= budget.min(wrong) && r["improvement_images"].as_u64() == Some(100), "{r}");
    assert!(printed.contains(&format!("gets {unsafe_wrong} of the {budget} unsafe images wrong")), "{printed}");
    for (m, expected) in [("bl1", budget.min(wrong)), ("bl2", budget)] {
        let reps = r[m]["repeats"].as_array().unwrap();
        assert_eq!(reps.len(), 2);
        assert!(
            reps.iter().all(|x| x["images"].as_u64() == Some(expected)
                && x["copies"].as_u64() == Some(expected)
                && x["labelled"].as_u64() == Some(expected)),
            "{m}"
        );
        assert_eq!((reps[0]["seed"].as_u64(), reps[1]["seed"].as_u64()), (Some(4), Some(5)));
    }
    for m in ["hudd", "bl1", "bl2"] {
        for x in r[m]["repeats"].as_array().unwrap() {
            let n = |k: &str| x[k].as_u64().unwrap();
            assert_eq!(n("trained") + n("validation"), n("images"), "{m}: {x}");
            assert_eq!(n("validation"), (n("images") as f64 * 0.2).round().max(1.0) as u64, "{m}: {x}");
            assert_eq!(x["unchanged"].as_bool(), Some(n("chosen_epoch") == 0), "{m}: {x}");
        }
    }
    // hudd: every image of the unsafe set labelled, the balanced set's ceil(test members)
    // distinct images per cluster added.
    let members: u64 = r["before"]["per_cluster"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["members"].as_u64().unwrap() >= 2)
        .map(|c| c["members"].as_u64().unwrap())
        .sum();
    for x in r["hudd"]["repeats"].as_array().unwrap() {
        assert!(x["images"].as_u64().unwrap() <= members && x["labelled"].as_u64() == Some(budget), "{x}");
    }
    // The mean is the mean of the repeats.
    let reps = r["bl2"]["repeats"].as_array().unwrap();
    let mean = (reps[0]["overall"].as_f64().unwrap() + reps[1]["overall"].as_f64().unwrap()) / 2.0;
    assert!((r["bl2"]["overall"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12);

    // Five repeats with the variant: HUDD and hudd-all against each baseline, both measures, with
    // p-values in [0, 1]; hudd-all adds every labelled unsafe image.
    let (five, printed) = compare("5", true);
    assert!(printed.contains("two-sided p-values over 5 repeats") && printed.contains("Mann–Whitney U"), "{printed}");
    assert!(printed.contains("hudd-all vs bl1, root-cause clusters"), "{printed}");
    for x in five["hudd_all"]["repeats"].as_array().unwrap() {
        assert_eq!((x["images"].as_u64(), x["labelled"].as_u64()), (Some(budget), Some(budget)), "{x}");
    }
    let tests = five["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 8, "{tests:?}");
    for t in tests {
        assert!(["hudd", "hudd-all"].contains(&t["method"].as_str().unwrap()), "{t}");
        assert!(["bl1", "bl2"].contains(&t["baseline"].as_str().unwrap()), "{t}");
        assert!(["overall", "failing-clusters"].contains(&t["measure"].as_str().unwrap()), "{t}");
        let p = t["mann_whitney"]["p"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{t}");
        assert!(t["welch"].is_null() || (0.0..=1.0).contains(&t["welch"]["p"].as_f64().unwrap()), "{t}");
    }
    // Repeat r uses seed + r: the first two of five are the two above, record for record.
    for m in ["hudd", "bl1", "bl2"] {
        assert_eq!(five[m]["repeats"][0], r[m]["repeats"][0], "{m}: same seed, same retraining");
        assert_eq!(five[m]["repeats"][1], r[m]["repeats"][1], "{m}");
    }

    // Through to the report a reviewer opens: the variant's row, the kept epochs and the tests.
    let work = tempfile::tempdir().unwrap();
    let o = hudd(&[
        "retrain",
        "--run",
        &run_arg,
        "--labels",
        "auto",
        "-o",
        &arg(&work.path().join("m2.onnx")),
        "--epochs",
        "1",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bundle = work.path().join("bundle");
    let o = hudd(&["report", "--run", &run_arg, "--out", &arg(&bundle), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("report.json")).unwrap()).unwrap();
    let c = &report["retraining"]["comparison"];
    let methods: Vec<&str> = c["methods"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["before", "hudd", "hudd-all", "bl1", "bl2"]);
    assert_eq!(c["methods"][2]["kept_epochs"].as_array().map(Vec::len), Some(5));
    assert!(c["methods"][0]["overall"]["sd"].is_null(), "the model before has no spread");
    assert_eq!(c["tests"].as_array().map(Vec::len), Some(8));
    assert_eq!(c["tests"][4]["method"], "hudd-all");
}

/// The landmark regressor: `--labels auto` takes the targets from the simulator's manifest into
/// balanced.csv, the model retrains with MSE, and the comparison's BL1 draws the images whose
/// keypoint error exceeds the threshold.
#[test]
fn the_landmark_regressor_retrains_on_its_targets() {
    let work = tempfile::tempdir().unwrap();
    let (data, run) = (work.path().join("data"), work.path().join("run"));
    let o = hudd(&[
        "simulate",
        "landmarks",
        "--train",
        "60",
        "--test",
        "200",
        "--improvement",
        "120",
        "--seed",
        "11",
        "-o",
        &arg(&data),
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let root = crate::common::root();
    let (model, config) = (root.join("models/landmarks/landmarks_cnn.onnx"), root.join("models/landmarks/hudd.toml"));
    let o = hudd(&["analyze", "-m", &arg(&model), "-c", &arg(&config), "-d", &arg(&data), "-o", &arg(&run), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hudd(&["assign", "--run", &arg(&run), "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = work.path().join("m2.onnx");
    let o = hudd(&[
        "retrain",
        "--run",
        &arg(&run),
        "--labels",
        "auto",
        "-o",
        &arg(&out),
        "--epochs",
        "1",
        "--lr",
        "1e-4",
        "--keep",
        "last",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&out).unwrap() != std::fs::read(&model).unwrap(), "the weights changed");

    // balanced.csv carries the six targets of each image, as the manifest has them.
    let manifest = std::fs::read_to_string(data.join("improvement/manifest.csv")).unwrap();
    let target_of: std::collections::HashMap<&str, Vec<f32>> = manifest
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            (f.next().unwrap(), f.next().unwrap().split(' ').map(|v| v.parse().unwrap()).collect())
        })
        .collect();
    let balanced = std::fs::read_to_string(run.join("unsafe/balanced.csv")).unwrap();
    assert!(balanced.lines().count() > 1, "{balanced}");
    for line in balanced.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let values: Vec<f32> = f[3].split(' ').map(|v| v.parse().unwrap()).collect();
        assert_eq!(values, target_of[f[0]], "{line}");
    }
    // Labels with the wrong number of targets (issue 33, row 12): bootstrap names the image and
    // both counts, and writes nothing.
    let labels = work.path().join("labels.csv");
    let unsafe_set = std::fs::read_to_string(run.join("unsafe/unsafe.csv")).unwrap();
    let rows: String =
        unsafe_set.lines().skip(1).map(|l| format!("{},1 2 3\n", l.split(',').next().unwrap())).collect();
    std::fs::write(&labels, format!("path,label\n{rows}")).unwrap();
    let o = hudd(&["bootstrap", "--run", &arg(&run), "--labels", &arg(&labels)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let first = unsafe_set.lines().nth(1).unwrap().split(',').next().unwrap();
    let e = stderr(&o);
    assert!(e.contains("has 6 value(s) per image") && e.contains(&format!("`{first}` has 3 target(s)")), "{e}");
    assert_eq!(std::fs::read_to_string(run.join("unsafe/balanced.csv")).unwrap(), balanced, "nothing rewritten");

    let r = json(&run.join("retrain/retrain.json"));
    assert_eq!(r["hyperparameters"]["loss"], "mse");
    assert!(r["history"][1]["validation_accuracy"].is_null(), "a regressor has a validation loss only");
    assert!(r["history"][1]["validation_loss"].as_f64().unwrap() > 0.0);
    assert!(r["after"]["per_class"].as_array().unwrap().is_empty());
    assert_eq!(r["after"]["total"], 200);

    let o = hudd(&[
        "compare",
        "--run",
        &arg(&run),
        "--labels",
        "auto",
        "--repeats",
        "1",
        "--epochs",
        "1",
        "--lr",
        "1e-4",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = json(&run.join("retrain/compare.json"));
    let wrong = c["improvement_wrong"].as_u64().unwrap();
    assert!(wrong > 0 && wrong < 120, "the images whose keypoint error exceeds 4 px: {wrong}");
    assert_eq!(c["bl1"]["repeats"][0]["images"].as_u64(), Some(c["budget"].as_u64().unwrap().min(wrong)));
}
