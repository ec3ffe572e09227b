//! The root-cause analysis: evaluate → heatmaps of the Wrong test images → clusters of every
//! layer → cluster folders and pictures. Writes into a run folder:
//!
//! - `results/` — as `hudd evaluate`;
//! - `heatmaps/` — as `hudd heatmaps` (one `.npy` per layer and `index.json`);
//! - `distances/<layer>.npy`, `clusters.json`, `timings.json` — see [`crate::cluster::report`];
//! - `clusters/<layer>/<id>/` — each cluster's member images, and `clusters/<layer>/cluster-<id>.gif`;
//!   for the best layer also `clusters/<layer>/<id>/overlays/*.png` (each member's heatmap over
//!   the image) and `clusters/<layer>/<id>/mean-heatmap.png`.
//!
//! Overlays need a spatial heatmap: when the best layer is not spatial (a dense layer), the input
//! layer's heatmap of the same images is drawn instead, and the report says which layer it is.
//! - `run.json` — how the run was made, the model, the evaluation summary and the clustered
//!   images (see [`crate::bundle::record`]), what `hudd report` needs besides `clusters.json`.
//!
//! `clusters.json` is written last; a run folder without it is incomplete.
//!
//! Relevance starts at the predicted class (HUDD). Regressors have no predicted class: relevance
//! starts at the output farthest from its target (`start: worst`), or, when the loss is the mean
//! keypoint distance, at the farthest (x, y) keypoint (`start: worst-keypoint`), as HUDD does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::bundle::record::{self, RunImage, RunRecord};
use crate::cluster::metadata::Metadata;
use crate::cluster::report::{self, Clustering, HeatmapSet};
use crate::cluster::Options as ClusterOptions;
use crate::config::{Config, TaskKind};
use crate::dataset::{Dataset, Label, Split};
use crate::error::{Error, Result};
use crate::evaluate::{Evaluation, Evaluator};
use crate::heatmaps::{self, sanitize, HeatmapOptions, ImageRef};
use crate::model::Model;
use crate::pictures;
use crate::progress::Progress;
use crate::relevance::Explainer;

/// Options of the pictures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PictureOptions {
    /// GIF speed in images per minute.
    pub gif_per_minute: f64,
    /// Longest side of GIF frames and overlays, in pixels (larger images are downscaled).
    pub max_side: u32,
}

impl Default for PictureOptions {
    fn default() -> Self {
        PictureOptions { gif_per_minute: 100.0, max_side: 256 }
    }
}

/// Everything `analyze` needs besides the model, data and configuration.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Heatmaps (preset, layers, start, batch size).
    pub heatmaps: HeatmapOptions,
    /// Clustering.
    pub cluster: ClusterOptions,
    /// Pictures.
    pub pictures: PictureOptions,
    /// How the run was made (command line, seeds), recorded in `run.json`; the configuration and
    /// timings are filled in by `analyze`.
    pub run: hudd_report::Run,
}

/// What `analyze` produced.
#[derive(Debug, Clone)]
pub struct AnalyzeOutcome {
    /// The evaluation of every split.
    pub evaluation: Evaluation,
    /// The clusters (`None` when fewer than 2 test images were Wrong: nothing to cluster).
    pub analysis: Option<Clustering>,
    /// Number of Wrong test images.
    pub wrong: usize,
    /// The layer whose heatmaps the overlays show.
    pub overlay_layer: Option<String>,
}

/// Runs the analysis into `out` (see the module documentation).
pub fn analyze(
    model: &Model,
    data: &Dataset,
    config: &Config,
    options: &AnalyzeOptions,
    out: &Path,
    progress: &dyn Progress,
) -> Result<AnalyzeOutcome> {
    let evaluator = Evaluator::new(model, data, config)?;
    // Refuse a model the heatmaps stage cannot explain before any stage runs.
    let explainer = Explainer::new(model, evaluator.input_spec(), evaluator.output_name(), options.heatmaps.preset)?;
    // From here on the run folder is rewritten: an old clusters.json would claim a complete result.
    let stale = out.join("clusters.json");
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(|e| Error::io("cannot remove old result", &stale, e))?;
    }
    let stale = out.join(record::FILE);
    if stale.exists() {
        std::fs::remove_file(&stale).map_err(|e| Error::io("cannot remove old result", &stale, e))?;
    }
    let spec = evaluator.input_spec().clone();
    let t = Instant::now();
    let evaluation = evaluator.run(progress)?;
    evaluation.write(&out.join("results"))?;
    let t_evaluate = t.elapsed().as_secs_f64();
    let (datasets, evaluation_summary, skipped) = record::evaluation_summary(&evaluation);
    let mut run = options.run.clone();
    run.config = serde_json::to_value(config).unwrap_or_default();
    let mut record = RunRecord {
        format: record::FORMAT.into(),
        format_version: record::FORMAT_VERSION,
        run,
        model: record::model_summary(model),
        datasets,
        evaluation: evaluation_summary,
        skipped,
        clustered: false,
        metadata_columns: Vec::new(),
        images: Vec::new(),
        images_per_minute: options.pictures.gif_per_minute,
    };
    let test = evaluation.split(Split::Test).ok_or_else(|| {
        Error::Config(format!(
            "the dataset has no test split; analyze explains the test set's errors ({})",
            data.root.display()
        ))
    })?;
    let samples: HashMap<&str, &crate::dataset::Sample> =
        data.split(Split::Test).map(|s| s.samples.iter().map(|x| (x.image.as_str(), x)).collect()).unwrap_or_default();
    let wrong: Vec<&crate::evaluate::ResultRow> = test.rows.iter().filter(|r| !r.correct).collect();
    let images: Vec<ImageRef> = wrong
        .iter()
        .filter_map(|r| samples.get(r.image.as_str()))
        .map(|s| ImageRef {
            path: s.path.clone(),
            image: s.image.clone(),
            label: match s.label {
                Label::Class(c) => Some(c),
                Label::Target(_) => None,
            },
            targets: match &s.label {
                Label::Target(t) => Some(t.clone()),
                Label::Class(_) => None,
            },
        })
        .collect();
    if images.len() < 2 {
        record.run.timings = vec![hudd_report::Timing { stage: "evaluate".into(), seconds: t_evaluate }];
        record.write(out)?;
        return Ok(AnalyzeOutcome { evaluation, analysis: None, wrong: images.len(), overlay_layer: None });
    }
    let t = Instant::now();
    let heat_dir = out.join("heatmaps");
    // Regressors have no predicted class: relevance starts at the worst output (HUDD's worst
    // keypoint when the loss is the mean keypoint distance).
    let mut heat_options = options.heatmaps.clone();
    if evaluation.task == TaskKind::Regression && heat_options.start == heatmaps::StartRule::Predicted {
        let keypoints = config.task.loss == crate::config::RegressionLoss::MeanKeypointDistance;
        heat_options.start = heatmaps::StartRule::Worst { keypoints };
    }
    heatmaps::compute_with(&explainer, &spec, &images, &heat_options, &heat_dir, progress)?;
    let t_heatmaps = t.elapsed().as_secs_f64();
    let set = HeatmapSet::open(&heat_dir)?;
    let metadata = metadata_of(&set, &evaluation, test);
    let mut analysis = report::cluster_all(&set, &options.cluster, Some(&metadata), progress)?;
    let t = Instant::now();
    let paths: HashMap<&str, &Path> = images.iter().map(|i| (i.image.as_str(), i.path.as_path())).collect();
    let overlay_layer = write_pictures(&set, &analysis, &paths, &options.pictures, &out.join("clusters"), progress)?;
    let mut timings = crate::cluster::report::Timings::default();
    timings.add("evaluate", t_evaluate);
    timings.add("heatmaps", t_heatmaps);
    for (s, v) in &analysis.timings.stages {
        timings.add(s, *v);
    }
    timings.add("pictures", t.elapsed().as_secs_f64());
    record.run.timings = timings
        .stages
        .iter()
        .map(|(stage, seconds)| hudd_report::Timing { stage: stage.clone(), seconds: *seconds })
        .collect();
    analysis.timings = timings;
    let test_rows: HashMap<&str, &crate::evaluate::ResultRow> =
        test.rows.iter().map(|r| (r.image.as_str(), r)).collect();
    record.clustered = true;
    record.metadata_columns = metadata.columns.clone();
    record.images = set
        .images
        .iter()
        .zip(&metadata.rows)
        .map(|(name, values)| {
            let (expected, predicted) = test_rows
                .get(name.as_str())
                .map(|r| record::expected_predicted(r, &evaluation.classes))
                .unwrap_or_default();
            RunImage { name: name.clone(), expected, predicted, metadata: values.clone() }
        })
        .collect();
    record.write(out)?;
    report::write(out, &analysis)?;
    Ok(AnalyzeOutcome { evaluation, analysis: Some(analysis), wrong: images.len(), overlay_layer })
}

/// Metadata of the clustered images: the manifest's columns, plus `expected` and `predicted`
/// classes for classifiers (clusters often gather one confusion).
fn metadata_of(set: &HeatmapSet, evaluation: &Evaluation, test: &crate::evaluate::SplitEvaluation) -> Metadata {
    let rows: HashMap<&str, &crate::evaluate::ResultRow> = test.rows.iter().map(|r| (r.image.as_str(), r)).collect();
    let classify = evaluation.task == TaskKind::Classification;
    let mut columns = test.metadata_columns.clone();
    if classify {
        columns.extend(["expected".to_string(), "predicted".to_string()]);
    }
    let values = set
        .images
        .iter()
        .map(|image| {
            let Some(r) = rows.get(image.as_str()) else { return vec![String::new(); columns.len()] };
            let mut v = r.metadata.clone();
            if classify {
                let (expected, predicted) = record::expected_predicted(r, &evaluation.classes);
                v.extend([expected, predicted]);
            }
            v
        })
        .collect();
    Metadata { columns, rows: values }
}

/// A member's file name inside a cluster folder: its dataset path with `/` → `__`, sanitised.
pub fn member_file(image: &str) -> String {
    sanitize(&image.replace('/', "__"))
}

/// Writes `clusters/<layer>/<id>/` folders, GIFs and, for the best layer, overlays. Returns the
/// layer whose heatmaps the overlays show.
fn write_pictures(
    set: &HeatmapSet,
    analysis: &Clustering,
    paths: &HashMap<&str, &Path>,
    options: &PictureOptions,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<Option<String>> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io("cannot remove old cluster folders", dir, e))?;
    }
    let path_of = |image: &str| -> Result<PathBuf> {
        paths.get(image).map(|p| p.to_path_buf()).ok_or_else(|| Error::Output {
            what: "cluster folder",
            path: dir.to_path_buf(),
            reason: format!("no file for image `{image}`"),
        })
    };
    let total: usize = analysis.report.layers.iter().map(|l| l.clusters.len()).sum();
    progress.start("pictures", total as u64);
    let jobs: Vec<(&str, &crate::cluster::report::ClusterEntry)> =
        analysis.report.layers.iter().flat_map(|l| l.clusters.iter().map(move |c| (l.name.as_str(), c))).collect();
    jobs.par_iter().try_for_each(|(layer, c)| -> Result<()> {
        let ldir = dir.join(sanitize(layer));
        let cdir = ldir.join(c.id.to_string());
        std::fs::create_dir_all(&cdir).map_err(|e| Error::io("cannot create folder", &cdir, e))?;
        let files: Vec<PathBuf> = c.members.iter().map(|m| path_of(&m.image)).collect::<Result<_>>()?;
        for (m, f) in c.members.iter().zip(&files) {
            pictures::copy(f, &cdir.join(member_file(&m.image)))?;
        }
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        pictures::write_gif(
            &ldir.join(format!("cluster-{}.gif", c.id)),
            &refs,
            options.gif_per_minute,
            options.max_side,
        )?;
        progress.advance(1);
        Ok(())
    })?;
    progress.finish();
    // Overlays for the best layer.
    let Some(best) = analysis.best() else { return Ok(None) };
    let best_entry = &set.layers[best];
    let spatial_entry = if pictures::channels_height_width(&best_entry.shape).is_some() {
        Some(best_entry)
    } else {
        set.layers.iter().find(|l| l.node.is_empty())
    };
    let Some(entry) = spatial_entry else { return Ok(None) };
    let heat = set.load(entry)?;
    let row_of: HashMap<&str, usize> = set.images.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let ldir = dir.join(sanitize(&analysis.report.layers[best].name));
    analysis.report.layers[best].clusters.par_iter().try_for_each(|c| -> Result<()> {
        let cdir = ldir.join(c.id.to_string());
        let mut mean: Option<(usize, usize, Vec<f32>)> = None;
        for m in &c.members {
            let row = row_of.get(m.image.as_str()).copied().ok_or_else(|| Error::Output {
                what: "heatmap overlays",
                path: cdir.clone(),
                reason: format!("cluster member `{}` has no row in the heatmaps", m.image),
            })?;
            let values = heat.row(row).to_vec();
            let Some((h, w, map)) = pictures::spatial(&entry.shape, &values) else { continue };
            let file = member_file(&m.image);
            let png = Path::new(&file).with_extension("png");
            pictures::write_overlay(
                &cdir.join("overlays").join(png),
                &path_of(&m.image)?,
                &map,
                h,
                w,
                options.max_side,
            )?;
            match &mut mean {
                None => mean = Some((h, w, map)),
                Some((_, _, acc)) => acc.iter_mut().zip(&map).for_each(|(a, v)| *a += v),
            }
        }
        if let Some((h, w, acc)) = mean {
            let k = c.members.len().max(1) as f32;
            let avg: Vec<f32> = acc.iter().map(|v| v / k).collect();
            pictures::write_map(&cdir.join("mean-heatmap.png"), &avg, h, w)?;
        }
        Ok(())
    })?;
    Ok(Some(entry.tensor.clone()))
}
