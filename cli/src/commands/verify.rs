//! `hudd verify`: checks a report bundle against its manifest, and optionally reproduces it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

/// Re-hashes every file of a report bundle and compares it with BUNDLE/manifest.json: reports
/// each changed, missing or extra file, and each record that contradicts report.json (the
/// manifest's report id, the report inlined in index.html, and — for a bundle inside a run folder —
/// the run's complete.json). With --rerun, then runs the recorded `hudd analyze` command again (in
/// its recorded folder, into a temporary run folder, every stage redone) and compares the new
/// bundle with this one: every report field but the run block and the tool record, and every
/// file. Exit status 0 when the bundle is intact (and reproduced), 1 otherwise.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle folder (written by `hudd report`).
    #[arg(value_name = "BUNDLE")]
    bundle: PathBuf,
    /// Also re-run the analysis from the recorded command, model, configuration and data, and
    /// check that it gives this bundle again. The model and data must still be where they were
    /// (a moved or changed model or data shows as differing `model`, `datasets` or `analysis`
    /// fields).
    #[arg(long)]
    rerun: bool,
    /// With --rerun: keep the rerun's folder here (default: a temporary folder, removed when the
    /// bundle is reproduced).
    #[arg(long, value_name = "RUN", requires = "rerun")]
    rerun_into: Option<PathBuf>,
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
    if args.rerun {
        rerun(&args.bundle, args.rerun_into.as_deref())?;
    }
    Ok(())
}

/// Re-runs the bundle's `hudd analyze` into a fresh folder and compares the bundles.
fn rerun(bundle: &Path, into: Option<&Path>) -> Result<()> {
    let path = bundle.join("report.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let report = hudd_report::read_report(&text).with_context(|| format!("reading {}", path.display()))?;
    let args = analyze_arguments(&report.run.command_line)?;
    let mut temp = None;
    let run_dir = match into {
        Some(dir) => {
            if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
                bail!("--rerun-into {} is not an empty folder; name a new one", dir.display());
            }
            dir.to_path_buf()
        }
        None => {
            let dir =
                tempfile::Builder::new().prefix("hudd-rerun-").tempdir().context("creating a temporary folder")?;
            let run = dir.path().join("run");
            temp = Some(dir);
            run
        }
    };
    let cwd = report.run.working_dir.as_deref().map(PathBuf::from).filter(|d| d.is_dir());
    let mut command = std::process::Command::new(std::env::current_exe().context("finding the hudd binary")?);
    command.args(&args).arg("--out").arg(&run_dir).arg("--force").arg("--quiet");
    if let Some(dir) = &cwd {
        command.current_dir(dir);
    }
    println!(
        "rerun:  hudd {} (in {})",
        args.join(" "),
        cwd.as_ref().map_or_else(|| ".".to_string(), |d| d.display().to_string())
    );
    let output = command.output().context("running hudd analyze again")?;
    if !output.status.success() {
        bail!(
            "the rerun failed ({}); the model or data may have moved or changed:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let again = run_dir.join("report");
    let r = hudd_core::bundle::compare(bundle, &again).context("comparing the rerun's bundle")?;
    if let Some(build) = &r.other_build {
        println!("note:   another hudd build made the rerun: {build}");
    }
    if !r.not_rerun.is_empty() {
        println!(
            "note:   not rerun (made by later commands): {}; the analysis's images and files are compared",
            r.not_rerun.join(", ")
        );
    }
    for f in &r.differing_fields {
        println!("differs field {f}");
    }
    for f in &r.differing_files {
        println!("differs file  {f}");
    }
    if !r.is_reproduced() {
        // Keep the evidence: the temporary folder is not removed.
        if let Some(dir) = temp {
            let _ = dir.keep();
        }
        bail!(
            "the rerun did not reproduce the bundle: {} of {} fields and {} of {} files differ (the rerun: {})",
            r.differing_fields.len(),
            r.fields.len(),
            r.differing_files.len(),
            r.files,
            run_dir.display()
        );
    }
    println!(
        "reproduced: {} report fields and {} files identical (run block aside){}",
        r.fields.len(),
        r.files,
        into.map(|d| format!("; the rerun is in {}", d.display())).unwrap_or_default()
    );
    Ok(())
}

/// The recorded command's arguments for `hudd analyze`, less those naming where it wrote
/// (`--out`, `--report`) and the ones the rerun sets itself (`--force`, `--quiet`).
fn analyze_arguments(command_line: &[String]) -> Result<Vec<String>> {
    if command_line.get(1).map(String::as_str) != Some("analyze") {
        bail!(
            "--rerun re-runs `hudd analyze`; this bundle was made by `{}`",
            command_line.iter().skip(1).take(1).cloned().collect::<Vec<_>>().join(" ")
        );
    }
    let mut out = Vec::new();
    let mut args = command_line.iter().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-o" | "--out" | "--report" => {
                args.next();
            }
            "--force" | "-q" | "--quiet" => {}
            _ if a.starts_with("--out=") || a.starts_with("--report=") => {}
            _ if a.starts_with("-o") && a.len() > 2 && !a.starts_with("--") => {}
            _ => out.push(a.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rerun_drops_the_output_arguments() {
        let line: Vec<String> =
            ["hudd", "analyze", "-m", "m.onnx", "-o", "R", "--report=B", "-q", "-d", "D", "-oX", "--preset", "epsilon"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(analyze_arguments(&line).unwrap(), ["analyze", "-m", "m.onnx", "-d", "D", "--preset", "epsilon"]);
        let demo: Vec<String> = ["hudd", "demo"].iter().map(|s| s.to_string()).collect();
        assert!(analyze_arguments(&demo).unwrap_err().to_string().contains("`demo`"));
    }
}
