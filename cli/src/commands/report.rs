//! `hudd report`: a run folder → a self-contained report bundle that opens offline in a browser.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use hudd_core::bundle::{self, ViewerAssets};
use hudd_core::run::RunDir;

use crate::progress::Bars;

/// The viewer, built by viewer/build.sh and embedded at compile time, so that `hudd` writes
/// working bundles on machines with nothing but the Rust toolchain.
pub const VIEWER: ViewerAssets<'static> = ViewerAssets {
    template: include_str!("../../../viewer/assets/bundle.html"),
    style: include_str!("../../../viewer/assets/style.css"),
    glue: include_str!("../../../viewer/dist/hudd_viewer.js"),
    wasm: include_bytes!("../../../viewer/dist/hudd_viewer_bg.wasm"),
};

/// Writes the report bundle of a run folder (as `hudd analyze` writes it; `analyze` and `demo`
/// also write one at the end): BUNDLE/index.html — the viewer with the report and its WebAssembly
/// inlined, which opens by double-click from file:// with no server and no network —
/// BUNDLE/report.json (the same report, for tools), BUNDLE/images/ (thumbnails, heatmaps, the best layer's GIFs,
/// WICD curves) and BUNDLE/manifest.json (the SHA-256 of every file; check it with `hudd verify`).
/// An existing bundle at BUNDLE is replaced only once the new one is complete.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run folder.
    #[arg(long, value_name = "RUN")]
    run: PathBuf,
    /// The bundle folder (default: RUN/report).
    #[arg(long, short = 'o', value_name = "BUNDLE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    exec: super::ExecOptions,
}

pub fn run(args: ReportArgs) -> Result<()> {
    let run = RunDir::new(&args.run);
    let _lock = run.lock("hudd report")?;
    let out = args.out.clone().unwrap_or_else(|| run.default_report());
    // The analysis's last stage digest, so that a later `hudd analyze` finds the run up to date.
    let log = hudd_core::run::StageLog::read(&run);
    let inputs = log.stages.last().map(|r| r.inputs.clone());
    args.exec.in_pool(|| write_bundle(&run, &out, args.exec.quiet, inputs.as_deref()))
}

/// Whether `out` is the intact bundle that completed `run` (see `complete.json`).
pub fn is_current(run: &RunDir, out: &Path) -> bool {
    let Ok(Some(c)) = run.completion() else { return false };
    c.bundle == run.shown(out) && bundle::verify(out).is_ok_and(|v| v.is_intact() && v.report_id == c.report_id)
}

/// Writes the bundle of `run` to `out` and says where it is; `inputs` is the digest of the
/// analysis's last stage, recorded in `complete.json`.
pub fn write_bundle(run: &RunDir, out: &Path, quiet: bool, inputs: Option<&str>) -> Result<()> {
    let bars = Bars::new(quiet);
    let mut assembled =
        bundle::assemble(run, &bars).with_context(|| format!("reading the run folder {}", run.root().display()))?;
    // The tool-qualification record: this build, its oracle checks run now, the rules of this run.
    let (checks, seconds) = super::selftest::embedded_checks()?;
    let failed = checks.iter().filter(|c| !c.passed).count();
    if failed > 0 {
        eprintln!(
            "warning: {failed} of {} oracle checks failed (run `hudd selftest`); the report records it",
            checks.len()
        );
    }
    assembled.report.tool_confidence = Some(hudd_core::selftest::confidence(&checks, run));
    assembled.report.run.timings.push(hudd_report::Timing { stage: "selftest".into(), seconds });
    let manifest = bundle::write(out, &assembled, &VIEWER, &bars)
        .with_context(|| format!("writing the report bundle {}", out.display()))?;
    hudd_core::Progress::stage_complete(&bars, "report");
    run.mark_complete(&manifest.report_id, out, inputs).context("marking the run complete")?;
    let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
    println!(
        "report:   {} ({} files, {:.1} MB; open it in a browser, no server needed)",
        out.join("index.html").display(),
        manifest.files.len() + 1,
        bytes as f64 / 1e6
    );
    Ok(())
}
