//! `hudd heatmaps`: LRP relevance of every chosen layer for a list of images.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::heatmaps::{self, Dtype, Features, HeatmapOptions, Layers, StartRule};
use hudd_core::relevance::{Explainer, Preset};

use super::{ModelArg, RunOptions, ShardArg};
use crate::progress::Bars;

/// Computes layer-wise relevance (LRP) heatmaps and writes, per layer, H/<tensor>.npy
/// (N × tensor dims, float32) and H/index.json (tensor names, shapes, nodes, ops, rules, images in
/// row order, skipped files). The relevance of a layer is the relevance value of each activation
/// (as Zennit's gradient of that tensor under the composite), not activation × relevance.
#[derive(Debug, Args)]
pub struct HeatmapsArgs {
    #[command(flatten)]
    model: ModelArg,
    /// A folder of images (searched recursively, sorted by path) or a text file with one path per
    /// line (relative paths are relative to the text file).
    #[arg(long, short = 'i', value_name = "DIR|LIST.txt")]
    images: PathBuf,
    /// Rules: hudd (the original toolset: z+ dense, epsilon conv), or one of Zennit's composites.
    #[arg(long, value_enum, default_value_t = Preset::Hudd, value_name = "PRESET")]
    preset: Preset,
    /// heatmaps (LRP relevance) or activations (each layer's output, no relevance); index.json
    /// records which.
    #[arg(long, value_enum, default_value_t = Features::Heatmaps, value_name = "WHAT")]
    features: Features,
    /// How the `.npy` files store the values: f32, or f16 (half the bytes and the disk time;
    /// values rounded to about 3 significant digits, read back as f32 by `hudd cluster`).
    #[arg(long, value_enum, default_value_t = Dtype::F32, value_name = "TYPE")]
    dtype: Dtype,
    /// `default` (input and the output of every Conv, Gemm/MatMul, pooling and Flatten node), `all`
    /// (every activation), or ONNX tensor names separated by commas.
    #[arg(long, default_value = "default", value_name = "LAYERS")]
    layers: Layers,
    /// Start relevance: `predicted` (the predicted class's logit, HUDD), `label` (the class named by
    /// each image's folder), `class=N`, `all` (every output as it is, for regressors).
    #[arg(long, default_value = "predicted", value_name = "START", value_parser = start_rule)]
    start: StartRule,
    /// Output folder.
    #[arg(long, short = 'o', value_name = "H")]
    out: PathBuf,
    #[command(flatten)]
    shard: ShardArg,
    #[command(flatten)]
    run: RunOptions,
}

/// `--start`: the rules that need no per-image targets (worst and worst-keypoint are chosen by
/// `hudd analyze` for regressors).
fn start_rule(s: &str) -> Result<StartRule, String> {
    match s.parse::<StartRule>()? {
        StartRule::Worst { .. } => {
            Err("`worst` needs regression targets; `hudd analyze` uses it for regressors".into())
        }
        rule => Ok(rule),
    }
}

pub fn run(args: HeatmapsArgs) -> Result<()> {
    let config = args.run.config(&args.model.model)?;
    let model = args.model.load(&config)?;
    super::warn_memory(&model, config.run.batch_size, args.run.exec.threads);
    let fits = || format!("the configuration does not fit the model {}", args.model.model.display());
    let spec = config.input_spec(model.info()).with_context(fits)?;
    let output = &model.info().outputs[config.task.output_index(model.info()).with_context(fits)?].name;
    let classes = config.task.classes.clone().unwrap_or_default();
    let (images, not_images) = heatmaps::images_to_explain(&args.images, &classes)?;
    if images.is_empty() {
        bail!("no image found in {}", args.images.display());
    }
    let explainer = Explainer::new(&model, &spec.domain(), output, args.preset)?;
    let options = HeatmapOptions {
        preset: args.preset,
        layers: args.layers,
        start: args.start,
        batch_size: config.run.batch_size,
        features: args.features,
        dtype: args.dtype,
    };
    let bars = Bars::new(args.run.exec.quiet);
    if let Some(shard) = args.shard.shard {
        let (dir, index) = args.run.in_pool(|| {
            Ok(heatmaps::compute_shard_to_folder(&explainer, &spec, &images, &options, &args.out, shard, &bars)?)
        })?;
        println!("{} image(s) of this shard explained, {} skipped", index.images.len(), index.skipped.len());
        ShardArg::done(shard, &dir, &args.out);
        return Ok(());
    }
    let index = args
        .run
        .in_pool(|| Ok(heatmaps::compute_to_folder(&explainer, &spec, &images, &options, &args.out, &bars)?))?;
    println!("{:<50} {:<28} {:>14}", "layer", "op", "values/image");
    for l in &index.layers {
        println!("{:<50} {:<28} {:>14}", l.tensor, l.op, l.shape.iter().product::<usize>());
    }
    println!("\n{} image(s), preset {}, start {}", index.images.len(), index.preset, index.start);
    let skipped = index.skipped.len() + not_images.len();
    if skipped > 0 {
        println!("{skipped} file(s) skipped (unreadable ones are listed in index.json)");
    }
    println!("heatmaps: {}", args.out.display());
    Ok(())
}
