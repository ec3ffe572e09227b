//! `hudd demo`: the whole pipeline on the embedded default — simulated eyes and the shipped gaze
//! model — with nothing but the `hudd` binary.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hudd_core::analyze::{analyze, AnalyzeOptions, KeepHeatmaps, PictureOptions};
use hudd_core::cluster::Options as ClusterOptions;
use hudd_core::heatmaps::{Dtype, Features, HeatmapOptions, Layers, StartRule};
use hudd_core::relevance::Preset;
use hudd_core::run::RunDir;
use hudd_core::{Config, Dataset, Model};
use hudd_sim::dataset::{Sizes, Task};

use super::cluster::{print_side_by_side, print_summary};
use super::simulate::simulate;
use crate::progress::Bars;

/// The gaze model (models/gaze/gaze_cnn.onnx, trained by models/scripts/make_gaze.py) and its
/// configuration, built into the binary.
const MODEL: &[u8] = include_bytes!("../../../models/gaze/gaze_cnn.onnx");
const CONFIG: &str = include_str!("../../../models/gaze/hudd.toml");
const MARKER: &str = ".hudd-demo";

/// Runs every pipeline stage that exists on the embedded default: simulates eye images with known
/// root causes (`hudd simulate gaze`), evaluates the shipped gaze model on them, computes the
/// heatmaps of its test errors, clusters them and explains each cluster by the simulator
/// parameters that set it apart (e.g. "eyelid −87% variance"), assigns the improvement images to
/// the clusters (the unsafe set, `hudd assign`), balances them with the simulator's labels
/// (`hudd bootstrap --labels auto`), retrains the model on its training split plus that set
/// (`hudd retrain`, written to OUT/model/gaze_cnn.retrained.onnx) and compares it with random
/// selection at the same labelling budget (`hudd compare`). The simulator's training split draws
/// the planted causes at a fifth of their natural rate, the improvement split at their natural
/// rate. Writes OUT/data (the images and manifests), OUT/model (the models and the
/// configuration), OUT/run (as `hudd analyze`, with OUT/run/unsafe/ and OUT/run/retrain/) and
/// OUT/report/index.html, the report bundle to open in a browser.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Output folder (new, empty, or an earlier demo's, which is replaced).
    #[arg(long, short = 'o', default_value = "hudd-demo", value_name = "DIR")]
    out: PathBuf,
    /// Dataset size: small (800 images), default (7,500: 4,000 improvement images) or large
    /// (24,000).
    #[arg(long, value_enum, default_value_t = Size::Default)]
    size: Size,
    /// Seed of the simulator, the bootstrap, the retraining and the baselines' draws.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Epochs of each retraining (`hudd retrain` defaults to 5; one keeps the demo short; 0: no
    /// retraining and no comparison, the demo stops after the balanced unsafe set).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    epochs: u32,
    /// Retrainings per method in the comparison with the baselines (0: no comparison).
    #[arg(long, default_value_t = 1, value_name = "R", value_parser = clap::value_parser!(u32).range(0..=1_000))]
    repeats: u32,
    /// Stop after the clusters and their explanations (and the report): no unsafe set, no
    /// retraining.
    #[arg(long)]
    clusters_only: bool,
    /// Do not draw progress bars.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Size {
    Small,
    Default,
    Large,
}

impl Size {
    fn sizes(self) -> Sizes {
        match self {
            Size::Small => Sizes { train: 100, test: 600, improvement: 100 },
            // The improvement split is at least three times the unsafe set (its quotas add up
            // to twice the test errors, about 20 % of the test split), so that the unsafe set is
            // a selection and BL2 draws other images.
            Size::Default => Sizes { train: 500, test: 3000, improvement: 4000 },
            Size::Large => Sizes { train: 2000, test: 10000, improvement: 12000 },
        }
    }
}

/// The feature path's folder in the demo's run folder.
const FEATURE_PATH: &str = "feature-path";

/// The layer whose activations the demo's feature path clusters: the flattened output of the gaze
/// model's last convolution block, which its classifier head reads — the model's own embedding of
/// an image, the kind of representation SAFE and the 99-pipeline study cluster.
const FEATURE_LAYER: &str = "/flatten/Flatten_output_0";

/// The feature path (`--method hdbscan`, default grid) on the model's features: the activations at
/// [`FEATURE_LAYER`] of the same Wrong test images, with the same metadata as HUDD's clustering,
/// written to `dir` (`clusters.json`, `timings.json`).
fn feature_path(
    model: &Model,
    data: &Dataset,
    config: &Config,
    outcome: &hudd_core::analyze::AnalyzeOutcome,
    dir: &RunDir,
    bars: &Bars,
) -> Result<hudd_core::cluster::report::Clustering> {
    let test = outcome.evaluation.split(hudd_core::Split::Test).context("the evaluation has no test split")?;
    // The analysis has checked that the configuration fits the model.
    let spec = config.input_spec(model.info())?;
    let output = &model.info().outputs[config.task.output_index(model.info())?].name;
    let explainer = hudd_core::relevance::Explainer::new(model, &spec.domain(), output, Preset::Hudd)?;
    let options = HeatmapOptions {
        preset: Preset::Hudd,
        layers: Layers::Names(vec![FEATURE_LAYER.into()]),
        start: StartRule::Predicted,
        batch_size: config.run.batch_size,
        features: Features::Activations,
        dtype: Dtype::F32,
    };
    let images = hudd_core::analyze::wrong_images(data, test);
    let set = hudd_core::heatmaps::compute(&explainer, &spec, &images, &options, bars)
        .with_context(|| format!("computing the activations at {FEATURE_LAYER}"))?;
    let metadata = hudd_core::analyze::metadata_of(set.images(), &outcome.evaluation, test, &data.columns);
    let options = ClusterOptions {
        feature: Some(hudd_core::cluster::feature::FeatureOptions::default()),
        ..ClusterOptions::default()
    };
    std::fs::create_dir_all(dir.root()).with_context(|| format!("cannot create {}", dir.root().display()))?;
    let clustering = hudd_core::cluster::report::cluster_all(&set, &options, Some(&metadata), dir, bars)?;
    hudd_core::cluster::report::write(dir, &clustering)?;
    Ok(clustering)
}

/// Empties `out` if it is an earlier demo's folder; refuses any other non-empty folder.
fn prepare(out: &Path) -> Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .filter(|e| e.as_ref().map_or(true, |e| e.file_name() != hudd_core::run::lock::FILE));
        if entries.next().is_some() {
            if !out.join(MARKER).exists() {
                bail!(
                    "the output folder holds files that `hudd demo` did not write; choose a new folder with --out: {}",
                    out.display()
                );
            }
            for sub in ["data", "model", "run", "report"] {
                let p = out.join(sub);
                if p.exists() {
                    std::fs::remove_dir_all(&p).with_context(|| format!("cannot remove {}", p.display()))?;
                }
            }
        }
    }
    std::fs::create_dir_all(out.join("model")).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join(MARKER), "written by `hudd demo`; the folder is replaced by the next demo\n")?;
    Ok(())
}

pub fn run(args: DemoArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let out = &args.out;
    let _lock = RunDir::new(out).lock("hudd demo")?;
    // An earlier demo's run folder may be in use (`hudd compare --run OUT/run`): refuse before
    // removing it.
    let earlier = out.join("run");
    let earlier_lock = if earlier.is_dir() { Some(RunDir::new(&earlier).lock("hudd demo")?) } else { None };
    prepare(out)?;
    drop(earlier_lock);
    let _run_lock = RunDir::new(out.join("run")).lock("hudd demo")?;
    let model_path = out.join("model/gaze_cnn.onnx");
    let config_path = out.join("model/hudd.toml");
    std::fs::write(&model_path, MODEL).with_context(|| format!("cannot write {}", model_path.display()))?;
    std::fs::write(&config_path, CONFIG).with_context(|| format!("cannot write {}", config_path.display()))?;
    let data_dir = out.join("data");
    let sizes = args.size.sizes();
    println!(
        "simulating {} eye images ({} train, {} test, {} improvement; seed {})",
        sizes.train + sizes.test + sizes.improvement,
        sizes.train,
        sizes.test,
        sizes.improvement,
        args.seed
    );
    simulate(&data_dir, Task::Gaze, sizes, hudd_sim::Causes::Rare, args.seed, args.quiet)?;
    let config = Config::load(Some(&config_path), &[])?;
    let model = Model::load(&model_path)?;
    let data = Dataset::open(&data_dir, &config.task)?;
    let options = AnalyzeOptions {
        heatmaps: HeatmapOptions {
            preset: Preset::Hudd,
            layers: Layers::Default,
            start: StartRule::Predicted,
            batch_size: config.run.batch_size,
            features: Features::Heatmaps,
            dtype: Dtype::F32,
        },
        cluster: ClusterOptions::default(),
        pictures: PictureOptions::default(),
        // As `hudd analyze` by default: every layer's heatmaps stay in the run folder.
        keep: KeepHeatmaps::All,
        memory_limit: super::heatmap_memory(None)?,
        run: super::run_info(&[("simulate", args.seed)]),
        // The demo shows every stage at work.
        force: true,
    };
    let run_dir = RunDir::new(out.join("run"));
    let bars = Bars::new(args.quiet);
    let outcome = analyze(&model, &data, &config, &options, &run_dir, &bars).context("running the analysis")?;
    for s in &outcome.evaluation.splits {
        println!("{:<12} accuracy {:>6.2}% ({} images)", s.split.name(), 100.0 * s.accuracy(), s.rows.len());
    }
    println!("{} Wrong test images\n", outcome.wrong);
    match &outcome.analysis {
        Some(a) => {
            print_summary(a);
            if let Some((explained, total)) = a.rq1() {
                println!(
                    "{explained} of {total} clusters (of 2+ images) have a simulator parameter whose variance drops by \
                     ≥ 50% (the paper's RQ1 variance-reduction share)"
                );
            }
            // The feature-space path on the model's features of the same images, beside HUDD's.
            let feature_dir = RunDir::new(out.join("run").join(FEATURE_PATH));
            let feature = feature_path(&model, &data, &config, &outcome, &feature_dir, &bars)
                .context("clustering the model's features by the feature path (UMAP + HDBSCAN)")?;
            println!(
                "\nthe feature-space path on the model's features, the activations at {FEATURE_LAYER} of the same \
                 images ({}):",
                feature_dir.clusters_json().display()
            );
            print_side_by_side(a, &feature);
        }
        None => println!("fewer than 2 Wrong test images: nothing to cluster"),
    }
    if args.clusters_only {
        println!("\n--clusters-only: no unsafe set and no retraining");
    } else if outcome.analysis.as_ref().is_some_and(|a| a.best().is_some()) {
        // Steps 4–6: the unsafe set from the improvement split, labelled by the simulator.
        println!();
        let set = hudd_core::assign::assign_run(&run_dir, None, None, None, 100.0, &bars)
            .context("assigning the improvement images (the unsafe set)")?;
        super::assign::print_summary(&run_dir, &set);
        let balanced = hudd_core::bootstrap::bootstrap(&run_dir, None, args.seed)
            .context("balancing the unsafe set with the simulator's labels")?;
        println!();
        super::bootstrap::print_summary(&balanced.rows);
        // Step 7: retrain on the training split + the balanced set, then against the baselines.
        if args.epochs == 0 {
            println!("\nno retraining (--epochs 0): the balanced unsafe set is {}", run_dir.balanced_csv().display());
        } else {
            retrain_and_compare(&args, &run_dir, out, &bars)?;
        }
    }
    println!("\ndata:     {}", data_dir.display());
    println!("results:  {}", run_dir.results().display());
    println!("clusters: {} and {}", run_dir.clusters_json().display(), run_dir.pictures().display());
    super::report::write_bundle(&run_dir, &out.join("report"), args.quiet, outcome.inputs.as_deref())?;
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Step 7: retrains on the training split + the balanced set, then compares with the baselines.
fn retrain_and_compare(args: &DemoArgs, run_dir: &RunDir, out: &Path, bars: &Bars) -> Result<()> {
    let options =
        hudd_core::retrain::RetrainOptions { epochs: args.epochs as usize, seed: args.seed, ..Default::default() };
    let retrained = out.join("model/gaze_cnn.retrained.onnx");
    if args.repeats == 0 {
        println!("\nretraining the model on the training split + the balanced unsafe set");
        let record = super::retrain::retrain_run(run_dir, "auto", args.seed, &options, &retrained, bars)
            .context("retraining the model")?;
        super::retrain::print_record(&record);
        super::retrain::say_written(&record, &retrained);
        return Ok(());
    }
    // The comparison's first HUDD retraining is `hudd retrain`'s (the balanced set of the
    // bootstrap above, the same seeds and settings): trained once, written as the retrained model.
    println!(
        "\nretraining the model on the training split + the balanced unsafe set, and on random selections at \
         the same labelling budget ({} repeat(s))",
        args.repeats
    );
    let (compared, mut first) = hudd_core::retrain::compare_keeping_first(
        run_dir,
        None,
        args.repeats as usize,
        args.seed,
        &options,
        false,
        bars,
    )
    .context("retraining and comparing HUDD with the baselines")?;
    first.record.extra = "unsafe set".into();
    first.record.seeds.insert("bootstrap".into(), args.seed);
    let ctx = hudd_core::retrain::RunContext::open(run_dir)?;
    hudd_core::retrain::output_files(&ctx, run_dir, &retrained)?;
    let record = first.write(&ctx.model, run_dir, &retrained).context("writing the retrained model")?;
    super::retrain::print_record(&record);
    super::retrain::say_written(&record, &retrained);
    println!("\ncompared with random selection at the same labelling budget:");
    super::compare::print_table(&compared);
    Ok(())
}
