//! The root-cause analysis: evaluate → heatmaps of the Wrong test images → clusters of every
//! layer → cluster folders and pictures. [`analyze`] is the composition of the stages, each of
//! which takes and returns values (`Evaluation`, `HeatmapSet`, `Clustering`), and each value is
//! written to the run folder ([`RunDir`]) by a step of its own:
//!
//! - `results/` — as `hudd evaluate`;
//! - `heatmaps/` — as `hudd heatmaps` (one `.npy` per layer and `index.json`); with
//!   [`KeepHeatmaps::Best`] or [`KeepHeatmaps::None`] only some layers, written after clustering;
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
use crate::run::stages::{self, Stage, StageLog};
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

/// Which layers' heatmaps the run folder keeps (`RUN/heatmaps/`). Every default layer is computed
/// and clustered either way; this only decides what stays written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum KeepHeatmaps {
    /// Every clustered layer (`hudd cluster` can recluster them, an interrupted run resumes
    /// after the heatmaps).
    #[default]
    All,
    /// The best layer's (what `hudd assign` compares against), and the input's when the best
    /// layer is not spatial (what the overlays show); written after clustering.
    Best,
    /// No layer: `index.json` lists the images and the dropped layers only. `hudd assign` cannot
    /// run on such a run.
    None,
}

impl KeepHeatmaps {
    /// The option's name.
    pub fn name(self) -> &'static str {
        match self {
            KeepHeatmaps::All => "all",
            KeepHeatmaps::Best => "best",
            KeepHeatmaps::None => "none",
        }
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
    /// Which layers' heatmaps are written.
    pub keep: KeepHeatmaps,
    /// The most bytes of heatmaps held in memory (`None`: no limit). A larger set is streamed to
    /// `RUN/heatmaps/` as it is computed and clustered one layer at a time from there.
    pub memory_limit: Option<u64>,
    /// How the run was made (command line, seeds), recorded in `run.json`; the configuration and
    /// timings are filled in by `analyze`.
    pub run: hudd_report::Run,
    /// Redo every stage, even those a previous run into the same folder completed from the same
    /// inputs.
    pub force: bool,
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
    /// The stages read back from the run folder instead of redone.
    pub reused: Vec<Stage>,
    /// The digest of the last stage's inputs (see [`crate::run::stages`]).
    pub inputs: Option<String>,
    /// Every stage was reused and the run folder is complete from these inputs (its report
    /// included): nothing was written.
    pub up_to_date: bool,
}

/// Runs the analysis into `run` (see the module documentation): the composition of the stages.
///
/// A stage that completed in `run` before, from the same inputs, with its files intact (see
/// [`crate::run::stages`]), is read back instead of redone, unless `options.force`; once a stage is
/// redone, every later one is too.
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
    let mut steps = Steps::new(run, options.force);
    let mut timings = Timings::default();

    steps.digest(Stage::Evaluate, &stage_inputs(model, data, config, progress));
    let evaluation = if steps.reuse(Stage::Evaluate)? {
        Evaluation::read_cache(&run.evaluation_json())?
    } else {
        let t = Instant::now();
        let evaluation = evaluator.run(progress)?;
        evaluation.write(&run.results())?;
        let readable = evaluation.write_cache(&run.evaluation_json())?;
        timings.add("evaluate", t.elapsed().as_secs_f64());
        steps.done(Stage::Evaluate, readable, progress)?;
        evaluation
    };
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
        let up_to_date = steps.finish(&timings, &mut record)?;
        return Ok(AnalyzeOutcome {
            evaluation,
            analysis: None,
            wrong: images.len(),
            overlay_layer: None,
            reused: steps.reused,
            inputs: steps.last,
            up_to_date,
        });
    }

    let heat_options = heatmap_options(&options.heatmaps, evaluation.task, config.task.loss);
    let keep = options.keep;
    steps.digest(Stage::Heatmaps, &[("heatmaps", heatmap_parameters(&heat_options, keep))]);
    // Held in memory unless larger than the limit (`None` when the shapes are not known: held).
    let bytes =
        heatmaps::bytes_per_image(&explainer, &heat_options.layers)?.map(|b| b.saturating_mul(images.len() as u64));
    let too_large = matches!((options.memory_limit, bytes), (Some(limit), Some(b)) if b > limit);
    // Computed now and streamed to the folder (exact f32 values there until the end of the run).
    let mut streamed = false;
    let heatmaps = if steps.reuse(Stage::Heatmaps)? {
        HeatmapSet::open(&run.heatmaps())?
    } else if too_large {
        streamed = true;
        let gb = |b: u64| b as f64 / 1e9;
        progress.message(&format!(
            "heatmaps: about {:.2} GB, more than the {:.2} GB held in memory: streamed to {} and clustered one layer at \
             a time from there",
            gb(bytes.unwrap_or(0)),
            gb(options.memory_limit.unwrap_or(0)),
            run.heatmaps().display()
        ));
        let t = Instant::now();
        remove_heatmaps(run)?;
        // The clustering reads these files: f32 whatever `--dtype` says, so that it clusters the
        // computed values as an in-memory run does; stored as asked at the end.
        let exact = HeatmapOptions { dtype: heatmaps::Dtype::F32, ..heat_options.clone() };
        heatmaps::compute_to_folder(&explainer, evaluator.input_spec(), &images, &exact, &run.heatmaps(), progress)?;
        timings.add("heatmaps", t.elapsed().as_secs_f64());
        // Resumable only when the files stay as written.
        steps.done(Stage::Heatmaps, keep == KeepHeatmaps::All && heat_options.dtype.is_f32(), progress)?;
        HeatmapSet::open(&run.heatmaps())?
    } else {
        let t = Instant::now();
        let heatmaps = heatmaps::compute(&explainer, evaluator.input_spec(), &images, &heat_options, progress)?;
        if keep == KeepHeatmaps::All {
            heatmaps.write(&run.heatmaps())?;
        } else {
            // Written after clustering (the best layer is not known yet); an older run's files
            // would otherwise stand beside them.
            remove_heatmaps(run)?;
        }
        timings.add("heatmaps", t.elapsed().as_secs_f64());
        // Not all layers written: a rerun computes them again (nothing to resume from).
        steps.done(Stage::Heatmaps, keep == KeepHeatmaps::All, progress)?;
        heatmaps
    };

    let metadata = metadata_of(heatmaps.images(), &evaluation, test, &data.columns);
    steps.digest(Stage::Clusters, &[("clustering", format!("{:?}", options.cluster))]);
    let mut clustering = if steps.reuse(Stage::Clusters)? {
        Clustering { report: report::ClustersReport::read(run)?, layers: Vec::new(), timings: Timings::default() }
    } else {
        let clustering = report::cluster_all(&heatmaps, &options.cluster, Some(&metadata), run, progress)?;
        timings.extend(&clustering.timings);
        report::write_clusters(run, &clustering)?;
        steps.done(Stage::Clusters, true, progress)?;
        clustering
    };

    steps.digest(Stage::Pictures, &[("pictures", format!("{:?}", options.pictures))]);
    let overlay_layer = if steps.reuse(Stage::Pictures)? {
        overlay_entry(&heatmaps, &clustering).map(|i| heatmaps.layers()[i].tensor.clone())
    } else {
        let t = Instant::now();
        let layer = write_pictures(run, &heatmaps, &clustering, &images, &options.pictures, progress)?;
        timings.add("pictures", t.elapsed().as_secs_f64());
        steps.done(Stage::Pictures, true, progress)?;
        layer
    };

    // What stays written, after the pictures (which read the overlay layer). Only for heatmaps this
    // run computed (a reused stage kept every layer as asked): in memory, or streamed as f32.
    let stored_as_asked = !streamed || heat_options.dtype.is_f32();
    if keep != KeepHeatmaps::All || !stored_as_asked {
        let t = Instant::now();
        let kept = kept_layers(&heatmaps, &clustering, keep);
        if !streamed {
            heatmaps.write_layers(&run.heatmaps(), &kept)?;
        } else if stored_as_asked {
            heatmaps::prune(&run.heatmaps(), &kept)?;
        } else {
            heatmaps::rewrite(&run.heatmaps(), &kept, heat_options.dtype)?;
        }
        timings.add("heatmaps", t.elapsed().as_secs_f64());
    }

    record.set_clustered(heatmaps.images(), &metadata, test, &evaluation.classes);
    let up_to_date = steps.finish(&timings, &mut record)?;
    clustering.timings = timings;
    Ok(AnalyzeOutcome {
        evaluation,
        analysis: Some(clustering),
        wrong: images.len(),
        overlay_layer,
        reused: steps.reused,
        inputs: steps.last,
        up_to_date,
    })
}

/// The parameters of the first stage: the model, the configuration (less the parallelism and the
/// batch size, which do not change results: the engine runs every image alone, see
/// [`crate::model::BatchPolicy::engine_batch`]) and the data.
fn stage_inputs(
    model: &Model,
    data: &Dataset,
    config: &Config,
    progress: &dyn Progress,
) -> Vec<(&'static str, String)> {
    let json = |v: serde_json::Result<String>| v.unwrap_or_default();
    vec![
        ("model", model.sha256().to_string()),
        ("input", json(serde_json::to_string(&config.input))),
        ("task", json(serde_json::to_string(&config.task))),
        ("seed", config.run.seed.to_string()),
        ("data", data.fingerprint(progress)),
    ]
}

/// The layers `keep` writes: see [`KeepHeatmaps`].
pub fn kept_layers(heatmaps: &HeatmapSet, clustering: &Clustering, keep: KeepHeatmaps) -> Vec<usize> {
    match keep {
        KeepHeatmaps::All => (0..heatmaps.layers().len()).collect(),
        KeepHeatmaps::None => Vec::new(),
        KeepHeatmaps::Best => {
            let mut kept: Vec<usize> =
                clustering.best().into_iter().chain(overlay_entry(heatmaps, clustering)).collect();
            kept.sort_unstable();
            kept.dedup();
            kept
        }
    }
}

/// Removes `RUN/heatmaps/`.
fn remove_heatmaps(run: &RunDir) -> Result<()> {
    crate::fsio::remove_dir_if_exists(&run.heatmaps(), "cannot remove old heatmaps")
}

/// The heatmap options that change heatmaps (all but the batch size), and which are kept.
fn heatmap_parameters(o: &HeatmapOptions, keep: KeepHeatmaps) -> String {
    let features = match o.features {
        crate::heatmaps::Features::Heatmaps => String::new(),
        other => format!(", features {other}"),
    };
    // Said only when not the default, so that runs from before `--dtype` are still reused.
    let dtype = if o.dtype.is_f32() { String::new() } else { format!(", dtype {}", o.dtype) };
    // Likewise: runs that kept every layer before `--keep-heatmaps` are still reused.
    let keep = if keep == KeepHeatmaps::All { String::new() } else { format!(", keep {}", keep.name()) };
    format!("preset {:?}, layers {:?}, start {}{features}{dtype}{keep}", o.preset, o.layers, o.start)
}

/// Which stages a run reuses and which it redoes, and the stage log (see [`crate::run::stages`]).
struct Steps<'a> {
    run: &'a RunDir,
    log: StageLog,
    /// Still reusing: no stage has been redone yet.
    reusing: bool,
    /// The current stage's digest.
    last: Option<String>,
    current: Option<Stage>,
    reused: Vec<Stage>,
}

impl<'a> Steps<'a> {
    fn new(run: &'a RunDir, force: bool) -> Steps<'a> {
        // Forced, the log is empty: no stage is reusable, and the first one clears the folder.
        let log = if force { StageLog::default() } else { StageLog::read(run) };
        Steps { run, log, reusing: true, last: None, current: None, reused: Vec::new() }
    }

    /// Sets the digest of `stage` from the previous stage's and `parameters`.
    fn digest(&mut self, stage: Stage, parameters: &[(&str, String)]) {
        self.last = Some(stages::digest(stage, self.last.as_deref(), parameters));
        self.current = Some(stage);
    }

    /// Whether the current stage is reused; when not, this and every later stage's record is
    /// forgotten, and the first stage redone clears the completion marker and the old report.
    fn reuse(&mut self, stage: Stage) -> Result<bool> {
        let inputs = self.last.clone().unwrap_or_default();
        if self.reusing && self.log.reusable(self.run, stage, &inputs) {
            self.reused.push(stage);
            return Ok(true);
        }
        if self.reusing {
            self.run.begin(stage <= Stage::Clusters)?;
            self.log.forget_from(self.run, stage)?;
            self.reusing = false;
        }
        Ok(false)
    }

    /// The current stage's files are written: records it (when `reusable`) and tells `progress`.
    fn done(&mut self, stage: Stage, reusable: bool, progress: &dyn Progress) -> Result<()> {
        if reusable {
            let inputs = self.last.clone().unwrap_or_default();
            self.log.complete(self.run, stage, &inputs)?;
        }
        progress.stage_complete(stage.name());
        Ok(())
    }

    /// After the last stage: when every stage was reused and the run is complete from these inputs,
    /// touches nothing and returns true; otherwise writes `timings.json` (when clustered) and
    /// `run.json` with this invocation's timings and the reused stages.
    fn finish(&mut self, timings: &Timings, record: &mut RunRecord) -> Result<bool> {
        if self.reusing {
            let complete = self.run.completion().ok().flatten();
            if complete.is_some_and(|c| c.inputs.is_some() && c.inputs == self.last) && self.run.run_json().is_file() {
                return Ok(true);
            }
            // Every stage reused, but the report is missing or from other inputs.
            self.run.begin(false)?;
        }
        record.run.timings = timings.to_schema();
        record.run.reused_stages = self.reused.iter().map(|s| s.name().to_string()).collect();
        if self.current.is_some_and(|s| s >= Stage::Clusters) {
            crate::fsio::write_json(&self.run.timings_json(), "timings", timings)?;
        }
        record.write(self.run)?;
        Ok(false)
    }
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
pub fn metadata_of(
    images: &[String],
    evaluation: &Evaluation,
    test: &SplitEvaluation,
    info: &[crate::dataset::ColumnInfo],
) -> Metadata {
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
    Metadata { columns, rows: values, info: info.to_vec() }
}

/// The heatmaps layer whose maps the overlays show: the best layer's own when spatial, else the
/// input's; `None` without a best layer or a spatial heatmap.
pub fn overlay_entry(heatmaps: &HeatmapSet, clustering: &Clustering) -> Option<usize> {
    let best = clustering.best()?;
    let layers = heatmaps.layers();
    let spatial = |i: &usize| pictures::channels_height_width(&layers[*i].shape).is_some();
    Some(best).filter(spatial).or_else(|| layers.iter().position(|l| l.node.is_empty()))
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
    crate::fsio::remove_dir_if_exists(&dir, "cannot remove old cluster folders")?;
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

    let Some(entry) = overlay_entry(heatmaps, clustering) else { return Ok(None) };
    let layers = heatmaps.layers();
    let Some(best) = clustering.best() else { return Ok(None) };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn keeping_the_best_layer_keeps_the_input_too_when_the_best_is_not_spatial() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/cluster/heatmaps");
        let set = HeatmapSet::open(&root).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut clustering =
            report::cluster_all(&set, &ClusterOptions::default(), None, &RunDir::new(dir.path()), &Silent).unwrap();
        let position = |tensor: &str| set.layers().iter().position(|l| l.tensor.contains(tensor)).unwrap();
        let (input, conv, dense) = (position("image"), position("features.3/Conv"), position("classifier.0/Gemm"));
        let all: Vec<usize> = (0..set.layers().len()).collect();
        assert_eq!(kept_layers(&set, &clustering, KeepHeatmaps::All), all);
        assert!(kept_layers(&set, &clustering, KeepHeatmaps::None).is_empty());
        clustering.report.best_layer = Some(set.layers()[conv].tensor.clone());
        assert_eq!(kept_layers(&set, &clustering, KeepHeatmaps::Best), vec![conv]);
        // A dense best layer: its overlays show the input's heatmaps, which are kept as well.
        clustering.report.best_layer = Some(set.layers()[dense].tensor.clone());
        let mut expected = vec![input, dense];
        expected.sort_unstable();
        assert_eq!(kept_layers(&set, &clustering, KeepHeatmaps::Best), expected);
        clustering.report.best_layer = None;
        assert!(kept_layers(&set, &clustering, KeepHeatmaps::Best).is_empty());
    }
}
