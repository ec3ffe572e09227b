//! `hudd cluster`: HUDD's clustering of an existing heatmaps folder.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use hudd_core::cluster::metadata::Metadata;
use hudd_core::cluster::report::{self, Clustering, HeatmapSet};
use hudd_core::cluster::{LayerRule, Linkage, Options};
use hudd_core::distance::Normalize;

use crate::progress::Bars;

/// Clustering choices shared by `hudd cluster` and `hudd analyze`. The defaults are HUDD's.
#[derive(Debug, Args)]
pub struct ClusterOptionArgs {
    /// The tree that is cut: `ward-rows` (HUDD: Ward on the rows of the row-max-normalised
    /// distance matrix), `ward` (Ward on the heatmaps) or `average` (average linkage).
    #[arg(long, default_value = "ward-rows", value_name = "METHOD")]
    linkage: String,
    /// Heatmap normalisation before distances: `none` (HUDD), `l2` (unit length: compares where
    /// the model looked, not how confident it was) or `cosine` (1 − cosine similarity).
    #[arg(long, default_value = "none", value_name = "HOW")]
    normalize: String,
    /// Best-layer rule: `wicd` (HUDD: lowest WICD at the chosen k) or `silhouette` (highest mean
    /// silhouette).
    #[arg(long, default_value = "wicd", value_name = "RULE")]
    layer_rule: String,
    /// Use this many clusters on every layer instead of the knee of the WICD curve.
    #[arg(long, value_name = "K")]
    k: Option<usize>,
}

impl ClusterOptionArgs {
    pub fn options(&self) -> Result<Options> {
        let Some(linkage) = Linkage::parse(&self.linkage) else {
            bail!("--linkage must be `ward-rows`, `ward` or `average` (got `{}`)", self.linkage)
        };
        let Some(normalize) = Normalize::parse(&self.normalize) else {
            bail!("--normalize must be `none`, `l2` or `cosine` (got `{}`)", self.normalize)
        };
        let Some(layer_rule) = LayerRule::parse(&self.layer_rule) else {
            bail!("--layer-rule must be `wicd` or `silhouette` (got `{}`)", self.layer_rule)
        };
        if self.k.is_some_and(|k| k < 1) {
            bail!("--k must be at least 1");
        }
        Ok(Options { linkage, normalize, layer_rule, fixed_k: self.k })
    }
}

/// Clusters the heatmaps of every layer in a folder written by `hudd heatmaps` (HUDD's Ward + knee
/// selection, best layer) and writes OUT/clusters.json, OUT/distances/<layer>.npy and
/// OUT/timings.json.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Heatmaps folder (index.json and one .npy per layer).
    #[arg(long, value_name = "H")]
    heatmaps: PathBuf,
    /// Output folder.
    #[arg(long, short = 'o', value_name = "OUT")]
    out: PathBuf,
    /// CSV with an `image` column (names as in the heatmaps index) and metadata columns that
    /// explain clusters, e.g. RUN/results/test.csv.
    #[arg(long, value_name = "CSV")]
    metadata: Option<PathBuf>,
    #[command(flatten)]
    cluster: ClusterOptionArgs,
    /// Worker threads (default: one per core).
    #[arg(long, short = 'j', value_name = "N")]
    threads: Option<usize>,
    /// Do not draw progress bars.
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    let options = args.cluster.options()?;
    let set = HeatmapSet::open(&args.heatmaps)?;
    let metadata = args.metadata.as_deref().map(|p| Metadata::from_csv(p, &set.images)).transpose()?;
    let bars = Bars::new(args.quiet);
    let work = || -> Result<Clustering> { Ok(report::cluster_all(&set, &options, metadata.as_ref(), &bars)?) };
    let analysis = match args.threads {
        None => work()?,
        Some(n) => rayon::ThreadPoolBuilder::new().num_threads(n.max(1)).build()?.install(work)?,
    };
    report::write(&args.out, &analysis).with_context(|| format!("writing clusters to {}", args.out.display()))?;
    print_summary(&analysis);
    println!("\nclusters: {}", args.out.join("clusters.json").display());
    Ok(())
}

/// The per-layer table, then the best layer's clusters with their top explanation.
pub fn print_summary(analysis: &Clustering) {
    let r = &analysis.report;
    println!("{:<50} {:>4} {:>10} {:>10}  k chosen by", "layer", "k", "score", "silhouette");
    for l in &r.layers {
        let how = match &l.k_choice {
            hudd_core::cluster::KChoice::Knee => "knee".to_string(),
            hudd_core::cluster::KChoice::Fixed => "--k".to_string(),
            hudd_core::cluster::KChoice::Fallback { .. } => "fallback (no knee; see clusters.json)".to_string(),
        };
        let name = Some(l.name.as_str());
        let mark = if r.best_layer.as_deref() == name {
            " ← best"
        } else if r.input_layer.as_deref() == name {
            " (input: never the best layer)"
        } else if r.output_layer.as_deref() == name {
            " (explained output: never the best layer)"
        } else {
            ""
        };
        println!("{:<50} {:>4} {:>10.4} {:>10.3}  {how}{mark}", l.name, l.k, l.score, l.silhouette);
    }
    let Some(best) = analysis.best() else {
        println!("\nno best layer (only the input layer was clustered)");
        return;
    };
    let l = &r.layers[best];
    println!(
        "\nbest layer {} ({} images, {} clusters, parameters: {} linkage, normalize {}, layer rule {}):",
        l.name, r.images, l.k, r.parameters.linkage, r.parameters.normalize, r.parameters.layer_rule
    );
    for c in &l.clusters {
        let why = c.explanations.first().map(|e| e.summary()).unwrap_or_else(|| "—".into());
        println!("  cluster {:>3}: {:>5} image(s)  {why}", c.id, c.size);
    }
}
