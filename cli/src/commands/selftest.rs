//! `hudd selftest`: the shipped oracle checks (ISO 26262-8 §11 tool qualification), on the fixtures
//! embedded in this binary (or a folder laid out as the repository).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::selftest::{self, Check};

/// Compares this build's evaluate, relevance, clustering and retraining with the references that
/// onnxruntime, Zennit, scipy + kneed and PyTorch computed on committed fixtures (embedded in the
/// binary), with the test suite's tolerances. Takes a few seconds. Exit status 0 when every check
/// passes, 1 otherwise; every report bundle carries the same checks in `tool_confidence`.
#[derive(Debug, Args)]
pub struct SelftestArgs {
    /// Read the fixtures from this folder (laid out as the repository: models/, tests/fixtures/)
    /// instead of the embedded copies.
    #[arg(long, value_name = "DIR")]
    fixtures: Option<PathBuf>,
    /// Also write the results as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

macro_rules! embedded {
    ($($path:literal,)*) => {
        &[$(($path, include_bytes!(concat!("../../../", $path)) as &[u8]),)*]
    };
}

/// The fixture files of [`selftest::FILES`], embedded (a test checks the two lists agree).
pub const FILES: &[(&str, &[u8])] = embedded![
    "models/fashion-mnist/fmnist_cnn.onnx",
    "models/fashion-mnist/hudd.toml",
    "tests/fixtures/fmnist/reference/reference.json",
    "tests/fixtures/fmnist/reference/test_logits_onnxruntime.npy",
    "tests/fixtures/fmnist/test/ankle-boot/00000.png",
    "tests/fixtures/fmnist/test/bag/00081.png",
    "tests/fixtures/fmnist/test/pullover/00001.png",
    "tests/fixtures/fmnist/test/t-shirt/00121.png",
    "tests/fixtures/models/misc_ops.onnx",
    "tests/fixtures/lrp/misc_ops/index.json",
    "tests/fixtures/lrp/misc_ops/hudd/image.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_conv0_Conv_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_act0_LeakyRelu_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_pad_Pad_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_conv1_Conv_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_down_Conv_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_pool_MaxPool_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_up_ConvTranspose_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_act1_Sigmoid_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_avg_AveragePool_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/_flatten_Flatten_output_0.npy",
    "tests/fixtures/lrp/misc_ops/hudd/logits.npy",
    "tests/fixtures/cluster/reference/reference.json",
    "tests/fixtures/cluster/reference/distances/_classifier_classifier.0_Gemm_output_0.npy",
    "tests/fixtures/cluster/reference/distances/logits.npy",
    "tests/fixtures/cluster/heatmaps/_classifier_classifier.0_Gemm_output_0.npy",
    "tests/fixtures/cluster/heatmaps/logits.npy",
    "tests/fixtures/retrain/misc_ops/index.json",
    "tests/fixtures/retrain/misc_ops/input.npy",
    "tests/fixtures/retrain/misc_ops/targets.npy",
    "tests/fixtures/retrain/misc_ops/outputs.npy",
    "tests/fixtures/retrain/misc_ops/grad/0.npy",
    "tests/fixtures/retrain/misc_ops/grad/1.npy",
    "tests/fixtures/retrain/misc_ops/grad/2.npy",
    "tests/fixtures/retrain/misc_ops/grad/3.npy",
    "tests/fixtures/retrain/misc_ops/grad/4.npy",
    "tests/fixtures/retrain/misc_ops/grad/5.npy",
    "tests/fixtures/retrain/misc_ops/grad/6.npy",
    "tests/fixtures/retrain/misc_ops/grad/7.npy",
    "tests/fixtures/retrain/misc_ops/grad/8.npy",
    "tests/fixtures/retrain/misc_ops/grad/9.npy",
    "tests/fixtures/retrain/misc_ops/after/0.npy",
    "tests/fixtures/retrain/misc_ops/after/1.npy",
    "tests/fixtures/retrain/misc_ops/after/2.npy",
    "tests/fixtures/retrain/misc_ops/after/3.npy",
    "tests/fixtures/retrain/misc_ops/after/4.npy",
    "tests/fixtures/retrain/misc_ops/after/5.npy",
    "tests/fixtures/retrain/misc_ops/after/6.npy",
    "tests/fixtures/retrain/misc_ops/after/7.npy",
    "tests/fixtures/retrain/misc_ops/after/8.npy",
    "tests/fixtures/retrain/misc_ops/after/9.npy",
];

pub fn run(args: SelftestArgs) -> Result<()> {
    let (checks, seconds) = match &args.fixtures {
        Some(dir) => timed(|| Ok(selftest::run(dir)))?,
        None => embedded_checks()?,
    };
    println!("{:<11} {:<14} {:>7} {:>8}  result", "check", "oracle", "values", "worst");
    for c in &checks {
        println!(
            "{:<11} {:<14} {:>7} {:>8}  {}: {}",
            c.check,
            c.oracle,
            c.values,
            worst(c.worst),
            if c.passed { "pass" } else { "FAIL" },
            c.detail
        );
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&checks).context("serialising the results")?;
        hudd_core::fsio::write_atomic(path, &json)?;
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.passed).map(|c| c.check.as_str()).collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} oracle checks failed ({}): this build of hudd does not reproduce its references; do not use its \
             results as evidence",
            failed.len(),
            checks.len(),
            failed.join(", ")
        );
    }
    println!("\nall {} oracle checks passed in {seconds:.1} s (worst: {} of its tolerance)", checks.len(), {
        let w = checks.iter().map(|c| c.worst).fold(0.0, f64::max);
        worst(w)
    });
    Ok(())
}

/// The checks on the embedded fixtures, and the seconds they took.
pub fn embedded_checks() -> Result<(Vec<Check>, f64)> {
    let dir = selftest::unpack(FILES).context("unpacking the embedded fixtures")?;
    let out = timed(|| Ok(selftest::run(&dir)));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed().as_secs_f64()))
}

/// A deviation as a share of its tolerance, e.g. `0.03×`.
fn worst(w: f64) -> String {
    if w.is_finite() {
        format!("{w:.2}×")
    } else {
        "—".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_files_are_the_ones_the_checks_read() {
        let embedded: Vec<&str> = FILES.iter().map(|(p, _)| *p).collect();
        assert_eq!(embedded, selftest::FILES);
    }
}
