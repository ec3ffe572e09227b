//! The root-cause analysis: evaluate → heatmaps of the Wrong test images → clusters of every
//! layer → cluster folders and pictures. [`analyze`] is the composition of the stages, each of
//! which takes and returns values (`Evaluation`, `HeatmapSet`, `Clustering`), and each value is
//! written to the run folder ([`RunDir`]) by a step of its own:
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
//!   images (see [`crate::run::record`]), what `hudd report` needs besides `clusters.json`.
//!
//! `clusters.json` is written last; a run folder without it is incomplete.
//!
//! Relevance starts at the predicted class (HUDD). Regressors have no predicted class: relevance
//! starts at the output farthest from its target (`start: worst`), or, when the loss is the mean
//! keypoint distance, at the farthest (x, y) keypoint (`start: worst-keypoint`), as HUDD does.

use std::collections::HashMap;
use std::time::Instant;

use image::DynamicImage;
use rayon::prelude::*;

use crate::cluster::metadata::Metadata;
use crate::cluster::report::{self, Clustering, Timings};
use crate::cluster::Options as ClusterOptions;
use crate::config::{Config, RegressionLoss, TaskKind};
use crate::dataset::{Dataset, Label, Split};
use crate::error::{Error, Result};
use crate::evaluate::{Evaluation, Evaluator, ResultRow, SplitEvaluation};
use crate::heatmaps::{self, HeatmapOptions, HeatmapSet, ImageRef, StartRule};
use crate::model::Model;
use crate::pictures;
use crate::progress::Progress;
use crate::relevance::Explainer;
use crate::run::record::{self, RunRecord};
use crate::run::RunDir;

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

/// Runs the analysis into `run` (see the module documentation): the composition of the stages.
pub fn analyze(
    model: &Model,
    data: &Dataset,
    config: &Config,
    options: &AnalyzeOptions,
    run: &RunDir,
    progress: &dyn Progress,
) -> Result<AnalyzeOutcome> {
    let evaluator = Evaluator::new(model, data, config)?;
    // Refuse a model the heatmaps stage cannot explain before any stage runs.
    let explainer =
        Explainer::new(model, &evaluator.input_spec().domain(), evaluator.output_name(), options.heatmaps.preset)?;
    // From here on the run folder is rewritten: an old clusters.json would claim a complete result.
    run.begin()?;
    let mut timings = Timings::default();

    let t = Instant::now();
    let evaluation = evaluator.run(progress)?;
    evaluation.write(&run.results())?;
    timings.add("evaluate", t.elapsed().as_secs_f64());
    if let Some(reason) = evaluation.guessed_class_order_problem() {
        // Its "root causes" would be the label mix-up: stop before explaining it.
        return Err(Error::Config(format!("{reason} (the evaluation is in {})", run.results().display())));
    }
    let mut record = RunRecord::new(options.run.clone(), config, model, &evaluation, options.pictures.gif_per_minute);
    record.data_root = std::path::absolute(&data.root).ok().map(|p| p.display().to_string());
    let test = evaluation.split(Split::Test).ok_or_else(|| Error::DatasetLayout {
        path: data.root.clone(),
        reason: "the dataset has no test split; analyze explains the test set's errors".into(),
    })?;
    let images = wrong_images(data, test);
    if images.len() < 2 {
        record.run.timings = timings.to_schema();
        record.write(run)?;
        return Ok(AnalyzeOutcome { evaluation, analysis: None, wrong: images.len(), overlay_layer: None });
    }

    let t = Instant::now();
    let heat_options = heatmap_options(&options.heatmaps, evaluation.task, config.task.loss);
    let heatmaps = heatmaps::compute(&explainer, evaluator.input_spec(), &images, &heat_options, progress)?;
    heatmaps.write(&run.heatmaps())?;
    timings.add("heatmaps", t.elapsed().as_secs_f64());

    let metadata = metadata_of(heatmaps.images(), &evaluation, test);
    let mut clustering = report::cluster_all(&heatmaps, &options.cluster, Some(&metadata), progress)?;
    timings.extend(&clustering.timings);

    let t = Instant::now();
    let overlay_layer = write_pictures(run, &heatmaps, &clustering, &images, &options.pictures, progress)?;
    timings.add("pictures", t.elapsed().as_secs_f64());

    record.run.timings = timings.to_schema();
    clustering.timings = timings;
    record.set_clustered(heatmaps.images(), &metadata, test, &evaluation.classes);
    record.write(run)?;
    report::write(run, &clustering)?;
    Ok(AnalyzeOutcome { evaluation, analysis: Some(clustering), wrong: images.len(), overlay_layer })
}

/// The Wrong test images, in result order, with their labels or targets.
pub fn wrong_images(data: &Dataset, test: &SplitEvaluation) -> Vec<ImageRef> {
    let samples: HashMap<&str, &crate::dataset::Sample> =
        data.split(Split::Test).map(|s| s.samples.iter().map(|x| (x.image.as_str(), x)).collect()).unwrap_or_default();
    test.rows
        .iter()
        .filter(|r| !r.correct)
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
        .collect()
}

/// The heatmap options of a task: regressors have no predicted class, so relevance starts at the
/// worst output (HUDD's worst keypoint when the loss is the mean keypoint distance).
pub fn heatmap_options(options: &HeatmapOptions, task: TaskKind, loss: RegressionLoss) -> HeatmapOptions {
    let mut o = options.clone();
    if task == TaskKind::Regression && o.start == StartRule::Predicted {
        o.start = StartRule::Worst { keypoints: loss == RegressionLoss::MeanKeypointDistance };
    }
    o
}

/// Metadata of the clustered images: the manifest's columns, plus `expected` and `predicted`
/// classes for classifiers (clusters often gather one confusion).
pub fn metadata_of(images: &[String], evaluation: &Evaluation, test: &SplitEvaluation) -> Metadata {
    let rows: HashMap<&str, &ResultRow> = test.rows.iter().map(|r| (r.image.as_str(), r)).collect();
    let classify = evaluation.task == TaskKind::Classification;
    let mut columns = test.metadata_columns.clone();
    if classify {
        columns.extend(["expected".to_string(), "predicted".to_string()]);
    }
    let values = images
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

/// The pictures stage: writes `clusters/<layer>/<id>/` folders, GIFs and, for the best layer,
/// overlays and mean heatmaps. Each image is decoded once. Returns the layer whose heatmaps the
/// overlays show (the best layer when spatial, else the input).
pub fn write_pictures(
    run: &RunDir,
    heatmaps: &HeatmapSet,
    clustering: &Clustering,
    images: &[ImageRef],
    options: &PictureOptions,
    progress: &dyn Progress,
) -> Result<Option<String>> {
    let dir = run.pictures();
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io("cannot remove old cluster folders", &dir, e))?;
    }
    let by_name: HashMap<&str, &ImageRef> = images.iter().map(|i| (i.image.as_str(), i)).collect();
    let image_of = |image: &str| -> Result<&ImageRef> {
        by_name.get(image).copied().ok_or_else(|| Error::Output {
            what: "cluster folder",
            path: dir.clone(),
            reason: format!("no file for image `{image}`"),
        })
    };
    // Every clustered image, decoded once for all layers' GIFs and the overlays.
    let clustered = heatmaps.images();
    progress.start("decoding", clustered.len() as u64);
    let decoded: Vec<DynamicImage> = clustered
        .par_iter()
        .map(|name| {
            let p = pictures::open(&image_of(name)?.path);
            progress.advance(1);
            p
        })
        .collect::<Result<_>>()?;
    progress.finish();
    let row_of: HashMap<&str, usize> = clustered.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let row = |image: &str| -> Result<usize> {
        row_of.get(image).copied().ok_or_else(|| Error::Output {
            what: "cluster folder",
            path: dir.clone(),
            reason: format!("cluster member `{image}` has no row in the heatmaps"),
        })
    };

    let total: usize = clustering.report.layers.iter().map(|l| l.clusters.len()).sum();
    progress.start("pictures", total as u64);
    let jobs: Vec<(&str, &report::ClusterEntry)> =
        clustering.report.layers.iter().flat_map(|l| l.clusters.iter().map(move |c| (l.name.as_str(), c))).collect();
    jobs.par_iter().try_for_each(|(layer, c)| -> Result<()> {
        let cdir = run.cluster_folder(layer, c.id);
        std::fs::create_dir_all(&cdir).map_err(|e| Error::io("cannot create folder", &cdir, e))?;
        let mut frames = Vec::with_capacity(c.members.len());
        for m in &c.members {
            pictures::copy(&image_of(&m.image)?.path, &run.member_copy(layer, c.id, &m.image))?;
            frames.push(&decoded[row(&m.image)?]);
        }
        pictures::write_gif(&run.gif(layer, c.id), &frames, options.gif_per_minute, options.max_side)?;
        progress.advance(1);
        Ok(())
    })?;
    progress.finish();

    // Overlays for the best layer, from a spatial heatmap: the best layer's own, else the input's.
    let Some(best) = clustering.best() else { return Ok(None) };
    let layers = heatmaps.layers();
    let spatial = |i: &usize| pictures::channels_height_width(&layers[*i].shape).is_some();
    let Some(entry) = Some(best).filter(spatial).or_else(|| layers.iter().position(|l| l.node.is_empty())) else {
        return Ok(None);
    };
    let shape = &layers[entry].shape;
    let heat = heatmaps.layer(entry)?;
    let best_layer = &clustering.report.layers[best];
    best_layer.clusters.par_iter().try_for_each(|c| -> Result<()> {
        let mut mean: Option<(usize, usize, Vec<f32>)> = None;
        for m in &c.members {
            let r = row(&m.image)?;
            let values = heat.row(r).to_vec();
            let Some((h, w, map)) = pictures::spatial(shape, &values) else { continue };
            pictures::write_overlay(
                &run.overlay(&best_layer.name, c.id, &m.image),
                &decoded[r],
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
            pictures::write_map(&run.mean_heatmap(&best_layer.name, c.id), &avg, h, w)?;
        }
        Ok(())
    })?;
    Ok(Some(layers[entry].tensor.clone()))
}
