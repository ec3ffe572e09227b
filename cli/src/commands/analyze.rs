//! `hudd analyze`: evaluate → heatmaps of the Wrong test images → root-cause clusters.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::analyze::{analyze, AnalyzeOptions, AnalyzeOutcome, KeepHeatmaps, PictureOptions};
use hudd_core::heatmaps::{Dtype, Features, HeatmapOptions, Layers, StartRule};
use hudd_core::relevance::Preset;
use hudd_core::run::RunDir;

use super::cluster::{print_summary, ClusterOptionArgs};
use super::{ModelData, RunOptions};
use crate::progress::Bars;

/// Finds the root causes of the model's errors on the test set: evaluates every split, computes
/// LRP heatmaps of the Wrong test images at every default layer, clusters each layer (HUDD's Ward
/// and knee) and picks the best layer. Writes RUN/results/, RUN/heatmaps/, RUN/distances/,
/// RUN/clusters.json (clusters, members, medoids, metadata explanations), RUN/timings.json and
/// RUN/clusters/<layer>/<id>/ with the member images, an animated GIF per cluster and, for the
/// best layer, heatmap overlays; RUN/run.json (model, data, evaluation); and the report bundle
/// RUN/report/ (open RUN/report/index.html in a browser; see `hudd report`).
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    input: ModelData,
    /// Run folder.
    #[arg(long, short = 'o', value_name = "RUN")]
    out: PathBuf,
    /// LRP preset: which rule each layer gets (hudd: the original toolset's; the others are
    /// Zennit's composites).
    #[arg(long, value_enum, default_value_t = Preset::Hudd)]
    preset: Preset,
    /// What is clustered per layer: heatmaps (LRP relevance, HUDD) or activations (the layer's
    /// output for the image: no relevance is computed; the overlays then show activations, and
    /// `hudd assign` compares the improvement images' activations).
    #[arg(long, value_enum, default_value_t = Features::Heatmaps, value_name = "WHAT")]
    features: Features,
    /// How RUN/heatmaps/ stores the values: f32, or f16 (half the bytes; this run's clustering and
    /// pictures use the f32 values it computed; `hudd assign` and resumed runs read the stored ones).
    #[arg(long, value_enum, default_value_t = Dtype::F32, value_name = "TYPE")]
    dtype: Dtype,
    /// Which layers' heatmaps RUN/heatmaps/ keeps: all (every clustered layer; a rerun resumes
    /// after the heatmaps, `hudd cluster` can recluster them), best (the best layer's, plus the
    /// input's when the best layer is not spatial; enough for `hudd assign` and the report), or
    /// none (`hudd assign` then cannot run). Every layer is clustered either way (from memory, or
    /// from the streamed files beyond --heatmap-memory).
    #[arg(long, value_enum, default_value_t = KeepHeatmaps::All, value_name = "WHICH")]
    keep_heatmaps: KeepHeatmaps,
    /// The most gigabytes of heatmaps held in memory (default: half the memory available when the
    /// run starts). A larger set is streamed to RUN/heatmaps/ as it is computed (as f32, rewritten
    /// at the end under --dtype f16) and clustered one layer at a time from there: the same
    /// clusters, and a large test set fits.
    #[arg(long, value_name = "GB")]
    heatmap_memory: Option<f64>,
    #[command(flatten)]
    cluster: ClusterOptionArgs,
    /// Report bundle folder (default: RUN/report).
    #[arg(long, value_name = "BUNDLE")]
    report: Option<PathBuf>,
    /// Speed of the cluster GIFs, in images per minute.
    #[arg(long, default_value_t = 100.0, value_name = "N")]
    gif_rate: f64,
    /// Redo every stage. Without it, a rerun into the same RUN folder reuses each stage that an
    /// earlier run completed there from the same model, configuration, data (every image's
    /// SHA-256) and options, whose files are intact (RUN/stages.json records them), and redoes
    /// the rest: an interrupted run resumes where it stopped.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    run: RunOptions,
}

pub fn run(args: AnalyzeArgs) -> Result<()> {
    let config = args.run.config(&args.input.model.model)?;
    let cluster = args.cluster.options()?;
    let preset = args.preset;
    if !(args.gif_rate > 0.0 && args.gif_rate.is_finite()) {
        bail!("--gif-rate must be a positive number of images per minute");
    }
    let run_dir = RunDir::new(&args.out);
    let _lock = run_dir.lock("hudd analyze")?;
    let report_dir = args.report.clone().unwrap_or_else(|| run_dir.default_report());
    let (model, data) = args.input.open(&config)?;
    super::warn_memory(&model, config.run.batch_size, args.run.exec.threads);
    let options = AnalyzeOptions {
        heatmaps: HeatmapOptions {
            preset,
            layers: Layers::Default,
            start: StartRule::Predicted,
            batch_size: config.run.batch_size,
            features: args.features,
            dtype: args.dtype,
        },
        cluster,
        pictures: PictureOptions { gif_per_minute: args.gif_rate, ..PictureOptions::default() },
        keep: args.keep_heatmaps,
        memory_limit: super::heatmap_memory(args.heatmap_memory)?,
        run: super::run_info(&args.cluster.seeds()),
        force: args.force,
    };
    let bars = Bars::new(args.run.exec.quiet);
    let outcome = args
        .run
        .in_pool(|| Ok(analyze(&model, &data, &config, &options, &run_dir, &bars)?))
        .with_context(|| format!("analysing {} on {}", args.input.model.model.display(), args.input.data.display()))?;
    if !outcome.reused.is_empty() {
        let names: Vec<&str> = outcome.reused.iter().map(|s| s.name()).collect();
        println!(
            "reused from {} (completed earlier from the same inputs; --force redoes them): {}",
            run_dir.root().display(),
            names.join(", ")
        );
    }
    let test = outcome.evaluation.split(hudd_core::Split::Test);
    if let Some(t) = test {
        println!("test: {} images, {} Wrong ({:.2}% accuracy)\n", t.rows.len(), outcome.wrong, 100.0 * t.accuracy());
    }
    if let Some(reason) = outcome.evaluation.single_class_problem() {
        eprintln!("warning: {reason}\n");
    }
    let Some(analysis) = &outcome.analysis else {
        println!("fewer than 2 Wrong test images: nothing to cluster (results: {})", run_dir.results().display());
        return finish(&run_dir, &report_dir, &outcome, args.run.exec.quiet);
    };
    print_summary(analysis);
    if let Some(l) = &outcome.overlay_layer {
        if Some(l) != analysis.report.best_layer.as_ref() {
            println!("(the best layer is not spatial: overlays show the heatmaps of {l})");
        }
    }
    println!("\n{}", stage_times(&analysis.timings, &outcome.reused));
    println!("\nclusters: {}", run_dir.clusters_json().display());
    println!("pictures: {}", run_dir.pictures().display());
    finish(&run_dir, &report_dir, &outcome, args.run.exec.quiet)
}

/// `stages: evaluate 7.3 s, heatmaps 23.2 s (reused), …, total 46.1 s`.
fn stage_times(timings: &hudd_core::cluster::report::Timings, reused: &[hudd_core::run::stages::Stage]) -> String {
    let reused: Vec<&str> = reused.iter().map(|s| s.name()).collect();
    let parts: Vec<String> = timings
        .stages
        .iter()
        .map(|(stage, seconds)| {
            let mark = if reused.contains(&stage.as_str()) { " (reused)" } else { "" };
            format!("{stage} {seconds:.1} s{mark}")
        })
        .collect();
    if parts.is_empty() {
        return "stages: none run (every stage was reused)".into();
    }
    let total: f64 = timings.stages.iter().map(|(_, s)| s).fold(0.0, |a, b| a + b);
    format!("stages: {}; total {total:.1} s", parts.join(", "))
}

/// The report bundle, unless the run was already complete from the same inputs with this bundle.
fn finish(run: &RunDir, report: &std::path::Path, outcome: &AnalyzeOutcome, quiet: bool) -> Result<()> {
    if outcome.up_to_date && super::report::is_current(run, report) {
        println!(
            "report:   {} (the run was complete and its inputs are unchanged: nothing was rewritten)",
            report.join("index.html").display()
        );
        return Ok(());
    }
    // The unsafe set of an earlier analysis is not this one's: said even with --quiet.
    if run.unsafe_json().is_file() {
        if let Ok(Some(reason)) = hudd_core::bootstrap::read_unsafe_unchecked(run).and_then(|(r, _)| r.stale(run)) {
            eprintln!("warning: {reason}; until then the report leaves it out and `hudd bootstrap`, `retrain` and `compare` refuse it");
        }
    }
    super::report::write_bundle(run, report, quiet, outcome.inputs.as_deref())
}
