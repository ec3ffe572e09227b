//! `hudd verify`: checks a report bundle against its manifest.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

/// Re-hashes every file of a report bundle and compares it with BUNDLE/manifest.json: reports
/// each changed, missing or extra file, and each record that contradicts report.json (the
/// manifest's report id, the report inlined in index.html, and — for a bundle inside a run folder —
/// the run's complete.json). Exit status 0 when the bundle is intact, 1 otherwise.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle folder (written by `hudd report`).
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
}

pub fn run(args: VerifyArgs) -> Result<()> {
    let v = hudd_core::bundle::verify(&args.bundle)
        .with_context(|| format!("verifying the bundle {}", args.bundle.display()))?;
    for (what, files) in [("changed", &v.changed), ("missing", &v.missing), ("extra", &v.extra)] {
        for f in files {
            println!("{what:<8} {f}");
        }
    }
    for problem in &v.inconsistent {
        println!("inconsistent {problem}");
    }
    if !v.is_intact() {
        bail!(
            "the bundle is not as written: {} changed, {} missing, {} extra file(s) of {} listed, {} inconsistent record(s): {}",
            v.changed.len(),
            v.missing.len(),
            v.extra.len(),
            v.checked,
            v.inconsistent.len(),
            args.bundle.display()
        );
    }
    println!(
        "intact: {} files match manifest.json (report {}): {}",
        v.checked,
        &v.report_id[..v.report_id.len().min(12)],
        args.bundle.display()
    );
    Ok(())
}
