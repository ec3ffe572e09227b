//! The report bundle: a run folder (as `analyze` writes it) → one self-contained folder that
//! reviewers open offline and auditors archive.
//!
//! ```text
//! BUNDLE/index.html          the viewer with report.json and its WebAssembly inlined (opens from file://)
//! BUNDLE/report.json         the report (schema: the `hudd-report` crate)
//! BUNDLE/images/thumbs/I.png           thumbnail of report image I (longest side ≤ 128 px)
//! BUNDLE/images/heatmaps/H/I.png       heatmap of image I at heatmap layer H (RGBA, stacked over the thumbnail)
//! BUNDLE/images/gifs/L/C.gif           animated GIF of cluster C of the best layer L
//! BUNDLE/images/mean/L/C.png           mean heatmap of cluster C of layer L (the best layer)
//! BUNDLE/images/curves/L.csv           WICD curve of layer L (k,wicd,gradient)
//! BUNDLE/images/unsafe/C.gif           animated GIF of the improvement images assigned to cluster C (the unsafe set)
//! BUNDLE/manifest.json       SHA-256 of every other file, written last
//! ```
//!
//! File names inside the bundle are generated numbers, never data: names, labels and metadata
//! only appear as JSON strings. The bundle is built in a hidden sibling folder and renamed into
//! place, so an interrupted run never leaves a folder that looks complete. [`verify`] re-hashes a
//! bundle against its manifest.

mod html;
mod retraining;
mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use html::{render_index, ViewerAssets};
pub use verify::{compare, verify, Reproduction, Verification};

use crate::cluster::report::ClustersReport;
use crate::error::{Error, Result};
use crate::fsio::{sha256_file, sha256_hex, write_json};
use crate::heatmaps::{HeatmapSet, LayerFile};
use crate::pictures;
use crate::progress::Progress;
use crate::run::{RunDir, RunRecord};
use hudd_report as schema;

/// Longest side of thumbnails, in pixels.
pub const THUMBNAIL_SIDE: u32 = 128;

/// What a bundle file holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// These bytes.
    Bytes(Vec<u8>),
    /// A copy of this file.
    Copy(PathBuf),
}

/// A file of the bundle (besides `index.html`, `report.json` and `manifest.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct BundleFile {
    /// Path relative to the bundle, with `/`.
    pub path: String,
    /// Its content.
    pub content: Content,
}

/// A report and its files, ready to write.
#[derive(Debug, Clone)]
pub struct Assembled {
    /// The report.
    pub report: schema::Report,
    /// Its images and data files.
    pub files: Vec<BundleFile>,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Bundle { path: path.to_path_buf(), reason: reason.into() }
}

/// Reads a run folder (`run.json`, `clusters.json`, `heatmaps/`, `clusters/`) into a report and
/// its pictures.
pub fn assemble(run: &RunDir, progress: &dyn Progress) -> Result<Assembled> {
    let record = RunRecord::read(run)?;
    let (clusters, clusters_sha) = if record.clustered {
        let (c, text) = ClustersReport::read_with_bytes(run)?;
        (Some(c), sha256_hex(&text))
    } else {
        (None, "none".to_string())
    };
    let mut id_text = format!("model {}\n", record.model.sha256);
    for d in &record.datasets {
        id_text.push_str(&format!("{} {}\n", d.split, d.sha256));
    }
    id_text.push_str(&format!("clusters {clusters_sha}\n"));
    let alternative = match &clusters {
        Some(c) => alternative(run, c)?,
        None => None,
    };
    if let Some((_, sha)) = &alternative {
        id_text.push_str(&format!("{ALTERNATIVE} {sha}\n"));
    }
    let report_id = sha256_hex(id_text.as_bytes());

    let mut files = Vec::new();
    let mut images = Vec::new();
    let analysis = match &clusters {
        Some(c) => {
            let mut a = assemble_analysis(run, &record, c, &mut images, &mut files, progress)?;
            a.alternatives = alternative.into_iter().map(|(a, _)| a).collect();
            Some(a)
        }
        None => None,
    };
    // An unsafe set (and the retraining from it) that no longer belongs to the run is left out.
    let stale = match run.unsafe_json().is_file() {
        true => crate::bootstrap::read_unsafe_unchecked(run)?.0.stale(run)?,
        false => None,
    };
    if let Some(reason) = &stale {
        progress.message(&format!("the report leaves out {}: {reason}", run.unsafe_dir().display()));
    }
    let unsafe_set = match &clusters {
        Some(c) if run.unsafe_json().is_file() && stale.is_none() => {
            Some(assemble_unsafe(run, c, &mut images, &mut files, progress)?)
        }
        _ => None,
    };
    let retraining = match &clusters {
        Some(c) if stale.is_none() => retraining::assemble(run, &record.model.sha256, c)?,
        _ => None,
    };
    let report = schema::Report {
        format: schema::FORMAT.into(),
        format_version: schema::FORMAT_VERSION,
        hudd_version: env!("CARGO_PKG_VERSION").into(),
        report_id,
        run: record.run,
        model: record.model,
        datasets: record.datasets,
        evaluation: record.evaluation,
        analysis,
        images,
        unsafe_set,
        retraining,
        skipped: record.skipped,
        tool_confidence: None,
    };
    Ok(Assembled { report, files })
}

/// The run subfolder of another clustering of the same images that the report summarises (`hudd demo`
/// writes the feature path there; so does `hudd cluster --heatmaps RUN/heatmaps -o RUN/feature-path`).
pub const ALTERNATIVE: &str = "feature-path";

/// The clustering in `RUN/feature-path/`, if any, summarised, with the SHA-256 of its
/// `clusters.json`.
fn alternative(run: &RunDir, main: &ClustersReport) -> Result<Option<(schema::Alternative, String)>> {
    let dir = RunDir::new(run.root().join(ALTERNATIVE));
    if !dir.clusters_json().is_file() {
        return Ok(None);
    }
    let (report, text) = ClustersReport::read_with_bytes(&dir)?;
    if report.images != main.images {
        return Err(bad(
            &dir.clusters_json(),
            format!(
                "it clusters {} images, the run {}: it is not a clustering of this run's heatmaps (remove the folder or \
                 rerun `hudd cluster --heatmaps RUN/heatmaps -o RUN/{ALTERNATIVE}`)",
                report.images, main.images
            ),
        ));
    }
    let c = crate::cluster::report::Clustering { report, layers: Vec::new(), timings: Default::default() };
    let best = c.best().map(|i| &c.report.layers[i]);
    let known_causes = c.causes().map(known_causes);
    let summary = best
        .map(|l| {
            l.clusters
                .iter()
                .enumerate()
                .map(|(i, cl)| schema::AlternativeCluster {
                    size: cl.size,
                    headline: crate::cluster::metadata::headline(&cl.explanations),
                    known_cause: l.causes.as_ref().and_then(|k| {
                        Some(schema::KnownCause { cause: k.majority.get(i)?.clone(), share: *k.shares.get(i)? })
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    let p = &c.report.parameters;
    let alternative = schema::Alternative {
        folder: ALTERNATIVE.into(),
        method: p.method().into(),
        description: {
            let how = p.feature_path.as_ref().map_or_else(|| format!("{} linkage", p.linkage), |f| f.describe());
            match p.features {
                crate::heatmaps::Features::Activations => {
                    format!("{how}; on the layers' activations, not their heatmaps")
                }
                crate::heatmaps::Features::Heatmaps => how,
            }
        },
        best_layer: best.map(|l| l.name.clone()),
        clusters: best.map_or(0, |l| l.k),
        noise: best.map_or(0, |l| l.noise.len()),
        silhouette: best.map_or(0.0, |l| l.silhouette),
        known_causes,
        explained: c.explained().map(|(e, t)| [e, t]),
        summary,
    };
    Ok(Some((alternative, sha256_hex(&text))))
}

/// A layer's scores against the known causes, as the report records them.
fn known_causes(k: &crate::cluster::causes::CauseScores) -> schema::KnownCauses {
    schema::KnownCauses {
        column: crate::cluster::causes::CAUSE_COLUMN.into(),
        purity: k.purity,
        causes: k
            .causes
            .iter()
            .map(|(cause, images)| schema::CauseCount { cause: cause.clone(), images: *images })
            .collect(),
        covered: k.covered.clone(),
    }
}

/// The unsafe set (`RUN/unsafe/`, when `hudd assign` wrote it): per cluster its improvement images
/// in selection order (nearest first) with their distances, thumbnails from the cluster folders,
/// the GIF, quota and fill; the engineers' labels (`balanced.csv`) as the images' expected class.
fn assemble_unsafe(
    run: &RunDir,
    clusters: &ClustersReport,
    images: &mut Vec<schema::ImageEntry>,
    files: &mut Vec<BundleFile>,
    progress: &dyn Progress,
) -> Result<schema::UnsafeSet> {
    // Whether the set still belongs to the run was asked by the caller (`assemble`).
    let (record, rows) = crate::bootstrap::read_unsafe_unchecked(run)?;
    if clusters.best_layer.as_deref() != Some(record.parameters.layer.as_str()) {
        return Err(bad(
            &run.unsafe_json(),
            format!(
                "the unsafe set was assigned to layer `{}`, not to the run's best layer (rerun `hudd assign`)",
                record.parameters.layer
            ),
        ));
    }
    let mut labels: HashMap<String, String> = HashMap::new();
    if run.balanced_csv().is_file() {
        let path = run.balanced_csv();
        let mut r = crate::fsio::csv_reader(&path).map_err(|e| bad(&path, e.to_string()))?;
        for row in r.deserialize::<crate::bootstrap::BalancedRow>() {
            let row =
                row.map_err(|e| bad(&path, format!("balanced.csv cannot be read ({e}); rerun `hudd bootstrap`")))?;
            labels.insert(row.image, row.label);
        }
    }
    progress.start("unsafe set thumbnails", rows.len() as u64);
    let thumbs: Vec<Vec<u8>> = rows
        .par_iter()
        .map(|r| {
            let png = pictures::thumbnail_png(
                &run.unsafe_cluster(r.cluster).join(crate::run::member_file(&r.image)),
                THUMBNAIL_SIDE,
            )?;
            progress.advance(1);
            Ok(png)
        })
        .collect::<Result<_>>()?;
    progress.finish();
    let mut per_cluster: Vec<schema::UnsafeCluster> = record
        .clusters
        .iter()
        .map(|c| {
            let gif_src = run.unsafe_gif(c.cluster);
            let gif = gif_src.is_file().then(|| {
                let path = format!("images/unsafe/{}.gif", c.cluster);
                files.push(BundleFile { path: path.clone(), content: Content::Copy(gif_src) });
                path
            });
            schema::UnsafeCluster {
                cluster_id: c.cluster,
                images: Vec::new(),
                distances: Vec::new(),
                test_members: c.test_members,
                quota: c.quota,
                gif,
            }
        })
        .collect();
    for (r, png) in rows.iter().zip(thumbs) {
        let Some(uc) = per_cluster.iter_mut().find(|c| c.cluster_id == r.cluster) else {
            return Err(bad(
                &run.unsafe_csv(),
                format!(
                    "image `{}` is assigned to cluster {}, which unsafe.json does not list (rerun `hudd assign`)",
                    r.image, r.cluster
                ),
            ));
        };
        let i = images.len();
        let thumbnail = format!("images/thumbs/{i}.png");
        files.push(BundleFile { path: thumbnail.clone(), content: Content::Bytes(png) });
        images.push(schema::ImageEntry {
            name: r.image.clone(),
            split: schema::Split::Improvement,
            expected: labels.get(&r.image).cloned().unwrap_or_default(),
            predicted: String::new(),
            thumbnail,
            metadata: Vec::new(),
        });
        uc.images.push(i);
        uc.distances.push(r.distance);
    }
    Ok(schema::UnsafeSet {
        layer: record.parameters.layer.clone(),
        candidates: record.candidates,
        clusters: per_cluster,
        mode: record.parameters.mode.clone(),
        improvement: record.parameters.improvement.clone(),
        skipped: record.skipped.len(),
    })
}

fn assemble_analysis(
    run: &RunDir,
    record: &RunRecord,
    clusters: &ClustersReport,
    images: &mut Vec<schema::ImageEntry>,
    files: &mut Vec<BundleFile>,
    progress: &dyn Progress,
) -> Result<schema::Analysis> {
    // Explanations assessed against the threshold (clusters.json version 2 and later).
    let assessed = clusters.format_version >= 2;
    let heat_dir = run.heatmaps();
    let set = HeatmapSet::open(&heat_dir)?;
    if set.images().iter().ne(record.images.iter().map(|i| &i.name)) {
        return Err(bad(&heat_dir, "the heatmaps are not those of the images in run.json (rerun `hudd analyze`)"));
    }
    let index: HashMap<&str, usize> = record.images.iter().enumerate().map(|(i, im)| (im.name.as_str(), i)).collect();
    let clusters_dir = run.pictures();
    // Each image's copy in the run folder, from the first layer that clusters it (HUDD's layers
    // hold every image; the feature path leaves noise out of a layer's clusters); an image that is
    // noise in every layer is read from the dataset.
    let mut sources: Vec<Option<PathBuf>> = vec![None; record.images.len()];
    for layer in &clusters.layers {
        for c in &layer.clusters {
            for m in &c.members {
                if let Some(&i) = index.get(m.image.as_str()) {
                    sources[i].get_or_insert_with(|| run.member_copy(&layer.name, c.id, &m.image));
                }
            }
        }
    }
    if let Some(root) = &record.data_root {
        for (source, im) in sources.iter_mut().zip(&record.images) {
            if source.is_none() {
                *source = Some(Path::new(root).join(&im.name)).filter(|p| p.is_file());
            }
        }
    }
    progress.start("thumbnails", record.images.len() as u64);
    let thumbs: Vec<Vec<u8>> = record
        .images
        .par_iter()
        .zip(&sources)
        .map(|(im, src)| {
            let src = src.as_ref().ok_or_else(|| {
                bad(&clusters_dir, format!("image `{}` is in no cluster folder (rerun `hudd analyze`)", im.name))
            })?;
            let png = pictures::thumbnail_png(src, THUMBNAIL_SIDE)?;
            progress.advance(1);
            Ok(png)
        })
        .collect::<Result<_>>()?;
    progress.finish();
    for (i, (im, png)) in record.images.iter().zip(thumbs).enumerate() {
        let thumbnail = format!("images/thumbs/{i}.png");
        files.push(BundleFile { path: thumbnail.clone(), content: Content::Bytes(png) });
        images.push(schema::ImageEntry {
            name: im.name.clone(),
            split: schema::Split::Test,
            expected: im.expected.clone(),
            predicted: im.predicted.clone(),
            thumbnail,
            metadata: im.metadata.clone(),
        });
    }

    // Heatmap pictures: a layer's own heatmaps when spatial, else the input's.
    let spatial = |e: &LayerFile| pictures::channels_height_width(&e.shape).is_some();
    let input = set.layers().iter().position(|e| e.node.is_empty() && spatial(e));
    let heat_of: Vec<Option<usize>> = clusters
        .layers
        .iter()
        .map(|l| set.layers().iter().position(|e| e.tensor == l.name && spatial(e)).or(input))
        .collect();
    let mut needed: Vec<usize> = heat_of.iter().flatten().copied().collect();
    needed.sort_unstable();
    needed.dedup();
    progress.start("heatmap pictures", (needed.len() * record.images.len()) as u64);
    for &h in &needed {
        let entry = &set.layers()[h];
        let x = set.layer(h)?;
        let pngs: Vec<Option<Vec<u8>>> = (0..x.nrows())
            .into_par_iter()
            .map(|i| {
                let row = x.row(i).to_vec();
                let png =
                    pictures::spatial(&entry.shape, &row).map(|(hh, ww, map)| pictures::heatmap_png(&map, hh, ww));
                progress.advance(1);
                png
            })
            .collect();
        for (i, png) in pngs.into_iter().enumerate() {
            if let Some(png) = png {
                files.push(BundleFile { path: format!("images/heatmaps/{h}/{i}.png"), content: Content::Bytes(png) });
            }
        }
    }
    progress.finish();

    let best = clusters.best_layer.as_ref().and_then(|b| clusters.layers.iter().position(|l| &l.name == b));
    let image_indices = |names: &[String]| -> Result<Vec<usize>> {
        names
            .iter()
            .map(|name| {
                index.get(name.as_str()).copied().ok_or_else(|| {
                    bad(&run.clusters_json(), format!("image `{name}` of the tree or map is not in run.json"))
                })
            })
            .collect()
    };
    let mut layers = Vec::new();
    for (li, l) in clusters.layers.iter().enumerate() {
        let mut csv = String::from("k,wicd,gradient\n");
        for p in &l.curve {
            csv.push_str(&format!("{},{},{}\n", p.k, p.wicd, p.gradient));
        }
        let curve_file = format!("images/curves/{li}.csv");
        files.push(BundleFile { path: curve_file.clone(), content: Content::Bytes(csv.into_bytes()) });
        let mut out_clusters = Vec::new();
        for (ci, c) in l.clusters.iter().enumerate() {
            let known_cause = l.causes.as_ref().and_then(|k| {
                Some(schema::KnownCause { cause: k.majority.get(ci)?.clone(), share: *k.shares.get(ci)? })
            });
            let mut members: Vec<schema::Member> = c
                .members
                .iter()
                .map(|m| {
                    let i = *index.get(m.image.as_str()).ok_or_else(|| {
                        bad(&clusters_dir, format!("cluster member `{}` is not in run.json", m.image))
                    })?;
                    Ok(schema::Member {
                        image: i,
                        distance_to_medoid: m.distance_to_medoid,
                        heatmap: heat_of[li].map(|h| format!("images/heatmaps/{h}/{i}.png")),
                    })
                })
                .collect::<Result<_>>()?;
            let medoid = index.get(c.medoid.as_str()).copied();
            members.sort_by(|a, b| {
                (Some(b.image) == medoid)
                    .cmp(&(Some(a.image) == medoid))
                    .then(a.distance_to_medoid.total_cmp(&b.distance_to_medoid))
                    .then(a.image.cmp(&b.image))
            });
            let gif_src = run.gif(&l.name, c.id);
            // GIFs of the best layer only (the run folder keeps every layer's; the viewer's
            // flipbook plays any cluster): all layers' GIFs would be most of the bundle.
            let gif = (Some(li) == best && gif_src.is_file()).then(|| {
                let path = format!("images/gifs/{li}/{}.gif", c.id);
                files.push(BundleFile { path: path.clone(), content: Content::Copy(gif_src) });
                path
            });
            let mean_src = run.mean_heatmap(&l.name, c.id);
            let mean_heatmap = mean_src.is_file().then(|| {
                let path = format!("images/mean/{li}/{}.png", c.id);
                files.push(BundleFile { path: path.clone(), content: Content::Copy(mean_src) });
                path
            });
            out_clusters.push(schema::Cluster {
                cluster_id: c.id,
                members,
                gif,
                mean_heatmap,
                explanations: c
                    .explanations
                    .iter()
                    .map(|e| schema::Explanation {
                        column: e.column.clone(),
                        kind: e.kind,
                        ratio: e.ratio,
                        reduction: e.reduction,
                        summary: e.summary(),
                        separation: assessed.then_some(e.separation),
                        p_value: assessed.then_some(e.p_value),
                        explains: assessed.then_some(e.explains),
                        rq1: Some(e.rq1_summary()),
                        histogram: e.histogram.clone(),
                    })
                    .collect(),
                known_cause,
            });
        }
        let (k_choice, k_choice_reason) = crate::schema::k_choice(&l.k_choice);
        layers.push(schema::Layer {
            name: l.name.clone(),
            shape: l.shape.clone(),
            curve: l.curve.iter().map(|p| schema::CurvePoint { k: p.k, wicd: p.wicd, gradient: p.gradient }).collect(),
            k: l.k,
            k_choice,
            k_choice_reason,
            score: l.score,
            silhouette: l.silhouette,
            heatmap_layer: heat_of[li].map(|h| set.layers()[h].tensor.clone()),
            excluded: if clusters.input_layer.as_ref() == Some(&l.name) {
                Some(schema::Exclusion::Input)
            } else if clusters.output_layer.as_ref() == Some(&l.name) {
                Some(schema::Exclusion::ExplainedOutput)
            } else {
                None
            },
            curve_file: Some(curve_file),
            clusters: out_clusters,
            dendrogram: match &l.tree {
                Some(t) => Some(schema::Dendrogram {
                    leaves: image_indices(&t.images)?,
                    merges: t.merges.clone(),
                    heights: t.heights.clone(),
                }),
                None => None,
            },
            noise: image_indices(&l.noise)?,
            trials: l
                .feature_path
                .as_ref()
                .map(|f| {
                    f.trials
                        .iter()
                        .enumerate()
                        .map(|(i, t)| schema::FeatureTrial {
                            metric: t.metric.name().into(),
                            components: t.components,
                            min_cluster_size: t.min_cluster_size,
                            clusters: t.clusters,
                            noise: t.noise,
                            silhouette: t.silhouette,
                            chosen: i == f.chosen,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            known_causes: l.causes.as_ref().map(known_causes),
            map: match &l.map {
                Some(m) => Some(schema::Map {
                    method: m.method.clone(),
                    explained: m.explained,
                    images: image_indices(&m.images)?,
                    points: m.points.clone(),
                }),
                None => None,
            },
        });
    }
    let p = &clusters.parameters;
    Ok(schema::Analysis {
        method: Some(p.method().into()),
        feature_path: p.feature_path.as_ref().map(crate::cluster::feature::FeatureOptions::describe),
        preset: p.preset.into(),
        linkage: p.linkage.into(),
        normalize: p.normalize.into(),
        layer_rule: p.layer_rule.into(),
        k_selection: p.k_selection.clone(),
        images: record.images.len(),
        best_layer: best,
        images_per_minute: record.images_per_minute,
        metadata_columns: record.metadata_columns.clone(),
        alternatives: Vec::new(),
        explanation_rule: (assessed && !record.metadata_columns.is_empty()).then_some(schema::ExplanationRule {
            separation_min: crate::cluster::metadata::SEPARATION_MIN,
            alpha: crate::cluster::metadata::ALPHA,
        }),
        layers,
    })
}

/// Writes the bundle to `out` (replacing an earlier bundle there) and returns its manifest.
///
/// The files are written into a hidden sibling folder, `manifest.json` last, and the folder is
/// then renamed to `out`: a bundle that is there is complete. `out` must not be a folder that is
/// not a bundle (it would be replaced).
pub fn write(
    out: &Path,
    assembled: &Assembled,
    viewer: &ViewerAssets<'_>,
    progress: &dyn Progress,
) -> Result<schema::Manifest> {
    if out.exists() {
        if !out.is_dir() {
            return Err(bad(out, "the bundle path exists and is not a folder; choose another bundle folder"));
        }
        let empty = std::fs::read_dir(out).map_err(|e| Error::io("cannot read", out, e))?.next().is_none();
        if !empty {
            replaceable(out)?;
        }
    }
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into());
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create folder", parent, e))?;
    let tmp = parent.join(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("cannot remove an interrupted bundle", &tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io("cannot create folder", &tmp, e))?;

    let manifest = match write_into(&tmp, assembled, viewer, progress) {
        Ok(m) => m,
        Err(e) => {
            // Best effort: the hidden folder never looks like a bundle, and the next write removes it.
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };

    if out.exists() {
        let old = parent.join(format!(".{name}.old"));
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| Error::io("cannot remove", &old, e))?;
        }
        std::fs::rename(out, &old).map_err(|e| Error::io("cannot move the old bundle aside", out, e))?;
        std::fs::rename(&tmp, out).map_err(|e| Error::io("cannot move the new bundle into place", out, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io("cannot remove the old bundle", &old, e))?;
    } else {
        std::fs::rename(&tmp, out).map_err(|e| Error::io("cannot move the new bundle into place", out, e))?;
    }
    Ok(manifest)
}

/// Removes the bundle at `bundle` (nothing when there is none), refusing, as [`write`] does, a
/// folder that holds files hudd did not write.
pub fn remove(bundle: &Path) -> Result<()> {
    if !bundle.exists() {
        return Ok(());
    }
    if !bundle.is_dir() {
        return Err(bad(bundle, "the report path exists and is not a folder; move it away"));
    }
    replaceable(bundle)?;
    std::fs::remove_dir_all(bundle).map_err(|e| Error::io("cannot remove the old report bundle", bundle, e))
}

/// Whether the existing folder `out` may be replaced by a new bundle: it must be a hudd bundle
/// (its `manifest.json` one that hudd wrote) holding nothing besides the files that manifest
/// lists, so that no file of the user's is deleted with it.
fn replaceable(out: &Path) -> Result<()> {
    let path = out.join("manifest.json");
    let foreign = |why: &str| {
        bad(
            out,
            format!("the folder exists and is not a hudd bundle ({why}); refusing to replace it, choose another bundle folder"),
        )
    };
    let text = match crate::fsio::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => return Err(foreign("no readable manifest.json")),
    };
    let manifest = hudd_report::read_manifest(&text).map_err(|e| foreign(&format!("manifest.json: {e}")))?;
    let listed: std::collections::BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    let extra: Vec<String> = files_under(out)?.into_iter().filter(|p| !listed.contains(p.as_str())).collect();
    if !extra.is_empty() {
        let shown: Vec<&str> = extra.iter().take(5).map(String::as_str).collect();
        return Err(bad(
            out,
            format!(
                "the bundle folder holds {} file(s) that hudd did not write ({}{}); replacing the bundle would \
                 delete them: move them out, or choose another bundle folder",
                extra.len(),
                shown.join(", "),
                if extra.len() > shown.len() { ", …" } else { "" }
            ),
        ));
    }
    Ok(())
}

/// Writes every file of the bundle into `tmp`, `manifest.json` last.
fn write_into(
    tmp: &Path,
    assembled: &Assembled,
    viewer: &ViewerAssets<'_>,
    progress: &dyn Progress,
) -> Result<schema::Manifest> {
    progress.start("bundle", assembled.files.len() as u64 + 3);
    assembled.files.par_iter().try_for_each(|f| -> Result<()> {
        let path = tmp.join(&f.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create folder", dir, e))?;
        }
        match &f.content {
            Content::Bytes(b) => std::fs::write(&path, b).map_err(|e| Error::io("cannot write", &path, e))?,
            Content::Copy(from) => {
                std::fs::copy(from, &path).map_err(|e| Error::io("cannot copy into the bundle", from, e))?;
            }
        }
        progress.advance(1);
        Ok(())
    })?;
    let report_path = tmp.join("report.json");
    let mut json = serde_json::to_vec_pretty(&assembled.report).map_err(|e| Error::Output {
        what: "report",
        path: report_path.clone(),
        reason: e.to_string(),
    })?;
    json.push(b'\n');
    std::fs::write(&report_path, &json).map_err(|e| Error::io("cannot write", &report_path, e))?;
    let index = render_index(viewer, &assembled.report)?;
    let index_path = tmp.join("index.html");
    std::fs::write(&index_path, index).map_err(|e| Error::io("cannot write", &index_path, e))?;
    progress.advance(2);

    let manifest = manifest_of(tmp, &assembled.report.report_id)?;
    write_json(&tmp.join("manifest.json"), "manifest", &manifest)?;
    progress.advance(1);
    progress.finish();
    Ok(manifest)
}

/// Every file under `dir` except `manifest.json`, as sorted `/`-separated relative paths.
fn files_under(dir: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io("cannot read folder", dir, e))? {
            let entry = entry.map_err(|e| Error::io("cannot read folder", dir, e))?;
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let parts: Vec<String> =
                    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
                out.push(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.retain(|p| p != "manifest.json");
    out.sort();
    Ok(out)
}

fn manifest_of(dir: &Path, report_id: &str) -> Result<schema::Manifest> {
    let files = files_under(dir)?
        .into_par_iter()
        .map(|path| {
            let full = dir.join(&path);
            let bytes = std::fs::metadata(&full).map_err(|e| Error::io("cannot read", &full, e))?.len();
            Ok(schema::ManifestFile { sha256: sha256_file(&full)?, bytes, path })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(schema::Manifest {
        format: schema::MANIFEST_FORMAT.into(),
        format_version: schema::MANIFEST_VERSION,
        report_id: report_id.into(),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    const TEMPLATE: &str = "<meta content=\"{{HUDD_SCRIPT_HASHES}}\"><style>{{HUDD_STYLE}}</style>\
        <script id=\"hudd-report\" type=\"application/json\">{{HUDD_REPORT_JSON}}</script>\
        <script id=\"w\">{{HUDD_WASM_GZIP_BASE64}}</script><script>{{HUDD_VIEWER_GLUE}}</script>";

    fn assembled(files: Vec<BundleFile>) -> Assembled {
        let report = schema::Report {
            format: schema::FORMAT.into(),
            format_version: schema::FORMAT_VERSION,
            hudd_version: "0".into(),
            report_id: "id".into(),
            run: schema::Run::default(),
            model: schema::ModelSummary::default(),
            datasets: vec![],
            evaluation: schema::Evaluation::default(),
            analysis: None,
            images: vec![],
            unsafe_set: None,
            retraining: None,
            skipped: vec![],
            tool_confidence: None,
        };
        Assembled { report, files }
    }

    #[test]
    fn an_interrupted_write_leaves_no_bundle_and_the_old_one_intact() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("bundle");
        let viewer = ViewerAssets { template: TEMPLATE, style: "p{}", glue: "start()", wasm: b"\0asm" };
        let good = vec![BundleFile { path: "images/a.png".into(), content: Content::Bytes(vec![1, 2, 3]) }];
        let missing = vec![BundleFile { path: "images/b.gif".into(), content: Content::Copy(dir.path().join("gone")) }];
        // A failure half-way (a file cannot be copied): nothing at `out`.
        assert!(write(&out, &assembled(missing.clone()), &viewer, &Silent).is_err());
        assert!(!out.exists());
        assert!(!dir.path().join(".bundle.partial").exists(), "the half-written folder is removed");
        // A complete bundle: every file listed, the manifest last, verify agrees.
        let manifest = write(&out, &assembled(good), &viewer, &Silent).unwrap();
        let listed: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(listed, ["images/a.png", "index.html", "report.json"]);
        assert!(verify(&out).unwrap().is_intact());
        let html = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(html.contains("'sha256-") && html.contains("start()") && !html.contains("{{HUDD_"));
        // A failed rewrite keeps the old bundle whole.
        assert!(write(&out, &assembled(missing), &viewer, &Silent).is_err());
        assert!(verify(&out).unwrap().is_intact());
        assert!(out.join("images/a.png").is_file());
    }

    #[test]
    fn a_folder_with_files_hudd_did_not_write_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let viewer = ViewerAssets { template: TEMPLATE, style: "p{}", glue: "start()", wasm: b"\0asm" };
        let files = || vec![BundleFile { path: "images/a.png".into(), content: Content::Bytes(vec![1, 2, 3]) }];
        // A folder with someone else's manifest.json.
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("manifest.json"), r#"{"name": "my-app", "version": "1.0"}"#).unwrap();
        std::fs::write(other.join("app.js"), "x").unwrap();
        let err = write(&other, &assembled(files()), &viewer, &Silent).unwrap_err();
        assert!(err.to_string().contains("not a hudd bundle"), "{err}");
        assert!(other.join("app.js").is_file() && other.join("manifest.json").is_file());
        // A bundle with a reviewer's exported notes beside it.
        let out = dir.path().join("bundle");
        write(&out, &assembled(files()), &viewer, &Silent).unwrap();
        std::fs::write(out.join("notes.json"), "{}").unwrap();
        let err = write(&out, &assembled(files()), &viewer, &Silent).unwrap_err();
        assert!(err.to_string().contains("1 file(s) that hudd did not write (notes.json)"), "{err}");
        assert!(out.join("notes.json").is_file());
        // Once moved out, the bundle is replaced.
        std::fs::remove_file(out.join("notes.json")).unwrap();
        write(&out, &assembled(files()), &viewer, &Silent).unwrap();
    }

    #[test]
    fn verify_sees_records_that_contradict_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let viewer = ViewerAssets { template: TEMPLATE, style: "p{}", glue: "start()", wasm: b"\0asm" };
        let out = dir.path().join("bundle");
        write(&out, &assembled(vec![]), &viewer, &Silent).unwrap();
        assert!(verify(&out).unwrap().is_intact());
        let manifest_path = out.join("manifest.json");
        let original = std::fs::read_to_string(&manifest_path).unwrap();
        // Another report id in the manifest.
        std::fs::write(&manifest_path, original.replace("\"report_id\": \"id\"", "\"report_id\": \"forged\"")).unwrap();
        let v = verify(&out).unwrap();
        assert!(!v.is_intact() && v.inconsistent[0].contains("forged"), "{v:?}");
        // A size that is not the file's.
        let mut m: schema::Manifest = serde_json::from_str(&original).unwrap();
        m.files[0].bytes += 1;
        std::fs::write(&manifest_path, serde_json::to_string(&m).unwrap()).unwrap();
        let v = verify(&out).unwrap();
        assert_eq!(v.changed, [m.files[0].path.clone()], "{v:?}");
        // index.html's report edited and its hash updated in the manifest: still caught.
        let html_path = out.join("index.html");
        let html =
            std::fs::read_to_string(&html_path).unwrap().replace("\"hudd_version\":\"0\"", "\"hudd_version\":\"9\"");
        std::fs::write(&html_path, &html).unwrap();
        let mut m: schema::Manifest = serde_json::from_str(&original).unwrap();
        let entry = m.files.iter_mut().find(|f| f.path == "index.html").unwrap();
        entry.sha256 = sha256_hex(html.as_bytes());
        entry.bytes = html.len() as u64;
        std::fs::write(&manifest_path, serde_json::to_string(&m).unwrap()).unwrap();
        let v = verify(&out).unwrap();
        assert!(v.changed.is_empty(), "{v:?}");
        assert_eq!(v.inconsistent, ["the report inlined in index.html differs from report.json"]);
    }
}
