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

pub fn run(args: SelftestArgs) -> Result<()> {
    let (checks, seconds) = match &args.fixtures {
        Some(dir) => timed(|| Ok(selftest::run(dir)))?,
        None => embedded_checks()?,
    };
    println!("{:<11} {:<14} {:>7} {:>8}  result", "check", "oracle", "values", "worst");
    for c in &checks {
        // A failure's cause goes on lines of its own below the table.
        let result = if c.passed { format!("pass: {}", c.detail) } else { "FAIL (below)".into() };
        println!("{:<11} {:<14} {:>7} {:>8}  {result}", c.check, c.oracle, c.values, worst(c.worst));
    }
    for c in checks.iter().filter(|c| !c.passed) {
        eprintln!("\n{} failed: {}", c.check, c.detail);
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&checks).context("serialising the results")?;
        hudd_core::fsio::write_atomic(path, &json)?;
    }
    let failed: Vec<&str> = checks.iter().filter(|c| !c.passed).map(|c| c.check.as_str()).collect();
    let unrun = checks.iter().filter(|c| !c.passed && c.values == 0).count();
    if let (Some(dir), true) = (&args.fixtures, unrun == checks.len()) {
        bail!(
            "no oracle check could run: {} lacks the fixture files (it must be laid out as the repository: models/, \
             tests/fixtures/; without --fixtures, hudd uses the copies it embeds)",
            dir.display()
        );
    }
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
    let dir = selftest::unpack(selftest::FILES).context("unpacking the embedded fixtures")?;
    let out = timed(|| Ok(selftest::run(&dir)));
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed().as_secs_f64()))
}

/// A deviation as a share of its tolerance, e.g. `0.03×`; `—` when there is no measure (a check
/// that could not run records the largest float, as JSON has no infinity).
fn worst(w: f64) -> String {
    if w.is_finite() && w < f64::MAX {
        format!("{w:.2}×")
    } else {
        "—".into()
    }
}
