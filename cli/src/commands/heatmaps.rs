//! `hudd heatmaps`: LRP relevance of every chosen layer for a list of images.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::dataset::ImageFile;
use hudd_core::heatmaps::{self, HeatmapOptions, ImageRef, Layers, StartRule};
use hudd_core::relevance::Preset;
use hudd_core::Model;

use super::RunOptions;
use crate::progress::Bars;

/// Computes layer-wise relevance (LRP) heatmaps and writes, per layer, H/<tensor>.npy
/// (N × tensor dims, float32) and H/index.json (tensor names, shapes, nodes, ops, rules, images in
/// row order, skipped files). The relevance of a layer is the relevance value of each activation
/// (as Zennit's gradient of that tensor under the composite), not activation × relevance.
#[derive(Debug, Args)]
pub struct HeatmapsArgs {
    /// The exported ONNX model.
    #[arg(long, short = 'm', value_name = "MODEL.onnx")]
    model: PathBuf,
    /// A folder of images (searched recursively, sorted by path) or a text file with one path per
    /// line (relative paths are relative to the text file).
    #[arg(long, short = 'i', value_name = "DIR|LIST.txt")]
    images: PathBuf,
    /// Rules: hudd (the original toolset: z+ dense, epsilon conv), epsilon-plus, epsilon-plus-flat,
    /// epsilon-gamma-box, epsilon-alpha2-beta1 (Zennit's composites).
    #[arg(long, default_value = "hudd", value_name = "PRESET")]
    preset: String,
    /// `default` (input and the output of every Conv, Gemm/MatMul, pooling and Flatten node), `all`
    /// (every activation), or ONNX tensor names separated by commas.
    #[arg(long, default_value = "default", value_name = "LAYERS")]
    layers: String,
    /// Start relevance: `predicted` (the predicted class's logit, HUDD), `label` (the class named by
    /// each image's folder), `class=N`, or `all` (every output as it is, for regressors).
    #[arg(long, default_value = "predicted", value_name = "START")]
    start: String,
    /// Output folder.
    #[arg(long, short = 'o', value_name = "H")]
    out: PathBuf,
    #[command(flatten)]
    run: RunOptions,
}

fn image_list(path: &Path) -> Result<(Vec<ImageFile>, usize)> {
    if path.is_dir() {
        let (images, skipped) = hudd_core::dataset::image_files(path)?;
        return Ok((images, skipped.len()));
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read image list {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let images = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| ImageFile { path: base.join(l), image: l.to_string() })
        .collect();
    Ok((images, 0))
}

pub fn run(args: HeatmapsArgs) -> Result<()> {
    let config = args.run.config()?;
    let preset = Preset::from_name(&args.preset)?;
    let layers = match args.layers.as_str() {
        "default" => Layers::Default,
        "all" => Layers::All,
        names => Layers::Names(names.split(',').map(|s| s.trim().to_string()).collect()),
    };
    let start = match args.start.as_str() {
        "predicted" => StartRule::Predicted,
        "label" => StartRule::Label,
        "all" => StartRule::AllOutputs,
        s => match s.strip_prefix("class=").and_then(|n| n.parse().ok()) {
            Some(c) => StartRule::Class(c),
            None => bail!("--start must be `predicted`, `label`, `class=N` or `all` (got `{s}`)"),
        },
    };
    let model = Model::load(&args.model)?;
    let spec = config
        .input_spec(model.info())
        .with_context(|| format!("the configuration does not fit the model {}", args.model.display()))?;
    let output = match &config.task.output {
        Some(o) => o.clone(),
        None if model.info().outputs.len() == 1 => model.info().outputs[0].name.clone(),
        None => bail!("the model has several outputs; choose one with `[task] output` or `--set task.output=NAME`"),
    };
    let (list, not_images) = image_list(&args.images)?;
    if list.is_empty() {
        bail!("no image found in {}", args.images.display());
    }
    let classes = config.task.classes.clone().unwrap_or_default();
    let images: Vec<ImageRef> = list
        .into_iter()
        .map(|ImageFile { path, image }| {
            let label = path
                .parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .and_then(|n| classes.iter().position(|c| c == n));
            ImageRef { path, image, label, targets: None }
        })
        .collect();
    let options = HeatmapOptions { preset, layers, start, batch_size: config.run.batch_size };
    let bars = Bars::new(args.run.quiet);
    let index =
        args.run.in_pool(|| Ok(heatmaps::compute(&model, &spec, &output, &images, &options, &args.out, &bars)?))?;
    println!("{:<50} {:<28} {:>14}", "layer", "op", "values/image");
    for l in &index.layers {
        println!("{:<50} {:<28} {:>14}", l.tensor, l.op, l.shape.iter().product::<usize>());
    }
    println!("\n{} image(s), preset {}, start {}", index.images.len(), index.preset, index.start);
    let skipped = index.skipped.len() + not_images;
    if skipped > 0 {
        println!("{skipped} file(s) skipped (unreadable ones are listed in index.json)");
    }
    println!("heatmaps: {}", args.out.display());
    Ok(())
}
