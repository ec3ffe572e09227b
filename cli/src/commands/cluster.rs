//! `hudd cluster`: HUDD's clustering of an existing heatmaps folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hudd_core::cluster::metadata::{self, Metadata};
use hudd_core::cluster::report::{self, Clustering};
use hudd_core::cluster::{LayerRule, Linkage, Options};
use hudd_core::distance::Normalize;
use hudd_core::heatmaps::HeatmapSet;
use hudd_core::run::RunDir;

use super::ExecOptions;
use crate::progress::Bars;

/// Clustering choices shared by `hudd cluster` and `hudd analyze`. The defaults are HUDD's.
#[derive(Debug, Args)]
pub struct ClusterOptionArgs {
    /// The tree that is cut: ward-rows (HUDD: Ward on the rows of the row-max-normalised distance
    /// matrix), ward (Ward on the heatmaps) or average (average linkage).
    #[arg(long, value_enum, default_value_t = Linkage::WardRows, value_name = "METHOD")]
    linkage: Linkage,
    /// Heatmap normalisation before distances: none (HUDD), l2 (unit length: compares where the
    /// model looked, not how confident it was) or cosine (1 − cosine similarity).
    #[arg(long, value_enum, default_value_t = Normalize::None, value_name = "HOW")]
    normalize: Normalize,
    /// Best-layer rule: wicd (HUDD: lowest WICD at the chosen k) or silhouette (highest mean
    /// silhouette).
    #[arg(long, value_enum, default_value_t = LayerRule::Wicd, value_name = "RULE")]
    layer_rule: LayerRule,
    /// Use this many clusters on every layer instead of the knee of the WICD curve.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    k: Option<u32>,
}

impl ClusterOptionArgs {
    pub fn options(&self) -> Options {
        Options {
            linkage: self.linkage,
            normalize: self.normalize,
            layer_rule: self.layer_rule,
            fixed_k: self.k.map(|k| k as usize),
        }
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
    #[command(flatten)]
    exec: ExecOptions,
}

pub fn run(args: ClusterArgs) -> Result<()> {
    let options = args.cluster.options();
    let set = HeatmapSet::open(&args.heatmaps)?;
    let metadata = args.metadata.as_deref().map(|p| Metadata::from_csv(p, set.images())).transpose()?;
    let bars = Bars::new(args.exec.quiet);
    let out = RunDir::new(&args.out);
    let analysis = args
        .exec
        .in_pool(|| Ok(report::cluster_all(&set, &options, metadata.as_ref(), &out, &bars)?))
        .with_context(|| format!("clustering into {}", args.out.display()))?;
    report::write(&out, &analysis).with_context(|| format!("writing clusters to {}", args.out.display()))?;
    print_summary(&analysis);
    println!("\nclusters: {}", out.clusters_json().display());
    Ok(())
}

/// The per-layer table, then the best layer's clusters with their top explanation.
pub fn print_summary(analysis: &Clustering) {
    let r = &analysis.report;
    // With known causes (a `cause` column), each layer's purity too.
    let known = r.layers.iter().any(|l| l.causes.is_some());
    let purity = |l: &hudd_core::cluster::report::LayerResult| match (&l.causes, known) {
        (Some(c), _) => format!(" {:>7.2}", c.purity),
        (None, true) => format!(" {:>7}", "-"),
        (None, false) => String::new(),
    };
    println!(
        "{:<50} {:>4} {:>10} {:>10}{}  k chosen by",
        "layer",
        "k",
        "WICD",
        "silhouette",
        if known { format!(" {:>7}", "purity") } else { String::new() }
    );
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
        println!("{:<50} {:>4} {:>10.4} {:>10.3}{}  {how}{mark}", l.name, l.k, l.score, l.silhouette, purity(l));
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
    for (i, c) in l.clusters.iter().enumerate() {
        let cause = l
            .causes
            .as_ref()
            .and_then(|k| Some(format!("  [cause {} {:.0}%]", k.majority.get(i)?, 100.0 * k.shares.get(i)?)))
            .unwrap_or_default();
        println!("  cluster {:>3}: {:>5} image(s)  {}{cause}", c.id, c.size, metadata::headline(&c.explanations));
    }
    if let Some((explained, total)) = analysis.explained() {
        println!(
            "\n{explained} of {total} clusters (of 2+ images) explained by a metadata column: KS or TV distance to the \
             other clustered images ≥ {}, p < {} (Bonferroni over the columns)",
            metadata::SEPARATION_MIN,
            metadata::ALPHA
        );
    }
    if let Some(c) = analysis.causes() {
        println!(
            "known causes (column `{}`, never an explanation): {}",
            hudd_core::cluster::causes::CAUSE_COLUMN,
            c.summary()
        );
    }
}
