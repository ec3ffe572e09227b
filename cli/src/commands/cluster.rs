//! `hudd cluster`: HUDD's clustering of an existing heatmaps folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hudd_core::cluster::feature::{Embed, FeatureOptions};
use hudd_core::cluster::metadata::{self, Metadata};
use hudd_core::cluster::neighbours::Metric;
use hudd_core::cluster::report::{self, Clustering};
use hudd_core::cluster::{LayerRule, Linkage, Method, Options};
use hudd_core::distance::Normalize;
use hudd_core::heatmaps::HeatmapSet;
use hudd_core::run::RunDir;

use super::ExecOptions;
use crate::progress::Bars;

/// Clustering choices shared by `hudd cluster` and `hudd analyze`. The defaults are HUDD's.
#[derive(Debug, Args)]
pub struct ClusterOptionArgs {
    /// How the images are clustered: hudd (Ward on the rows of the row-max-normalised distance
    /// matrix, k by the knee of WICD), ward (Ward on the heatmaps), average (average linkage), or
    /// hdbscan: the feature-space path (UMAP of each layer's features, then HDBSCAN; clusters of
    /// any shape and number, images in no dense region are noise; no N × N distances, so it scales
    /// to hundreds of thousands of images; see --embed, --min-cluster-size, --umap-metric,
    /// --umap-components, --seed).
    #[arg(long, value_enum, value_name = "METHOD", conflicts_with = "linkage")]
    method: Option<Method>,
    /// The tree that is cut (older spelling of --method: ward-rows = hudd, ward, average).
    #[arg(long, value_enum, value_name = "TREE", hide = true)]
    linkage: Option<Linkage>,
    /// Heatmap normalisation before distances (tree methods): none (HUDD), l2 (unit length:
    /// compares where the model looked, not how confident it was) or cosine (1 − cosine
    /// similarity).
    #[arg(long, value_enum, default_value_t = Normalize::None, value_name = "HOW")]
    normalize: Normalize,
    /// Best-layer rule of the tree methods: wicd (HUDD: lowest WICD at the chosen k) or silhouette
    /// (highest mean silhouette). The hdbscan method always uses the silhouette of its clustered
    /// points.
    #[arg(long, value_enum, default_value_t = LayerRule::Wicd, value_name = "RULE")]
    layer_rule: LayerRule,
    /// Use this many clusters on every layer instead of the knee of the WICD curve (tree methods).
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    k: Option<u32>,
    /// With --method hdbscan: what HDBSCAN clusters, umap (the UMAP embedding of the features) or
    /// none (the features themselves).
    #[arg(long, value_enum, default_value_t = Embed::Umap, value_name = "HOW")]
    embed: Embed,
    /// With --method hdbscan: HDBSCAN's min_cluster_size values to try (comma-separated); the
    /// trial whose clustered points have the highest silhouette is kept.
    #[arg(long, value_delimiter = ',', default_values_t = [5u32, 10, 20], value_name = "N,…",
          value_parser = clap::value_parser!(u32).range(2..))]
    min_cluster_size: Vec<u32>,
    /// With --method hdbscan: UMAP metrics to try (euclidean, cosine; comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Metric::Euclidean, Metric::Cosine], value_name = "M,…")]
    umap_metric: Vec<Metric>,
    /// With --method hdbscan: UMAP's numbers of components to try (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [2u32, 5], value_name = "N,…",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    umap_components: Vec<u32>,
    /// With --method hdbscan: UMAP's n_neighbors.
    #[arg(long, default_value_t = 15, value_name = "N", value_parser = clap::value_parser!(u32).range(2..))]
    umap_neighbours: u32,
    /// With --method hdbscan: seed of the UMAP layout (and of the principal components and the
    /// silhouette sample); recorded in clusters.json. Same data and seed, same clusters.
    #[arg(long, default_value_t = 0, value_name = "S")]
    seed: u64,
}

impl ClusterOptionArgs {
    /// The options, or an error for a flag that the method does not use.
    pub fn options(&self) -> anyhow::Result<Options> {
        let method = self.method.unwrap_or(match self.linkage {
            None | Some(Linkage::WardRows) => Method::Hudd,
            Some(Linkage::Ward) => Method::Ward,
            Some(Linkage::Average) => Method::Average,
        });
        let feature = (method == Method::Hdbscan).then(|| FeatureOptions {
            embed: self.embed,
            metrics: self.umap_metric.clone(),
            components: self.umap_components.iter().map(|&c| c as usize).collect(),
            min_cluster_sizes: self.min_cluster_size.iter().map(|&s| s as usize).collect(),
            neighbours: self.umap_neighbours as usize,
            seed: self.seed,
            ..FeatureOptions::default()
        });
        if feature.is_some() {
            if self.k.is_some() {
                anyhow::bail!("--k applies to the tree methods (hudd, ward, average); --method hdbscan finds the number of clusters itself (tune it with --min-cluster-size)");
            }
            if self.layer_rule != LayerRule::Wicd {
                anyhow::bail!("--layer-rule applies to the tree methods; --method hdbscan always picks the layer with the highest silhouette of its clustered points");
            }
            if self.normalize != Normalize::None {
                anyhow::bail!("--normalize applies to the tree methods; with --method hdbscan choose the metric with --umap-metric euclidean,cosine");
            }
        }
        Ok(Options {
            linkage: method.linkage().unwrap_or_default(),
            normalize: self.normalize,
            layer_rule: self.layer_rule,
            fixed_k: self.k.map(|k| k as usize),
            feature,
        })
    }

    /// The seeds these options use, for the report.
    pub fn seeds(&self) -> Vec<(&'static str, u64)> {
        if self.method == Some(Method::Hdbscan) {
            vec![("clustering", self.seed)]
        } else {
            Vec::new()
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
    let options = args.cluster.options()?;
    let set = HeatmapSet::open(&args.heatmaps)?;
    let metadata = args.metadata.as_deref().map(|p| Metadata::from_csv(p, set.images())).transpose()?;
    let bars = Bars::new(args.exec.quiet);
    let out = RunDir::new(&args.out);
    let _lock = out.lock("hudd cluster")?;
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
    let feature = r.parameters.method() == Method::Hdbscan;
    println!(
        "{:<50} {:>4} {:>10} {:>10}{}  {}",
        "layer",
        "k",
        if feature { "noise" } else { "WICD" },
        "silhouette",
        if known { format!(" {:>7}", "purity") } else { String::new() },
        if feature { "chosen trial (metric, components, min_cluster_size)" } else { "k chosen by" }
    );
    for l in &r.layers {
        let how = match (&l.k_choice, &l.feature_path) {
            (_, Some(f)) => f
                .trials
                .get(f.chosen)
                .map_or(String::new(), |t| format!("{}, {}, {}", t.metric, t.components, t.min_cluster_size)),
            (hudd_core::cluster::KChoice::Knee, _) => "knee".to_string(),
            (hudd_core::cluster::KChoice::Fixed, _) => "--k".to_string(),
            (hudd_core::cluster::KChoice::Fallback { .. }, _) => "fallback (no knee; see clusters.json)".to_string(),
            (hudd_core::cluster::KChoice::Hdbscan, _) => "hdbscan".to_string(),
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
        let second = if feature { format!("{:>10}", l.noise.len()) } else { format!("{:>10.4}", l.score) };
        // A feature-path layer with fewer than 2 clusters has no silhouette.
        let silhouette = if feature && l.k < 2 { format!("{:>10}", "–") } else { format!("{:>10.3}", l.silhouette) };
        println!("{:<50} {:>4} {second} {silhouette}{}  {how}{mark}", l.name, l.k, purity(l));
    }
    let Some(best) = analysis.best() else {
        println!("\nno best layer (only the input layer was clustered)");
        return;
    };
    let l = &r.layers[best];
    if feature {
        println!(
            "\nbest layer {} ({} images: {} clusters, {} noise; method hdbscan: {}):",
            l.name,
            r.images,
            l.k,
            l.noise.len(),
            r.parameters.feature_path.as_ref().map(|f| f.describe()).unwrap_or_default()
        );
    } else {
        println!(
            "\nbest layer {} ({} images, {} clusters, parameters: {} linkage, normalize {}, layer rule {}):",
            l.name, r.images, l.k, r.parameters.linkage, r.parameters.normalize, r.parameters.layer_rule
        );
    }
    for (i, c) in l.clusters.iter().enumerate() {
        let cause = l
            .causes
            .as_ref()
            .and_then(|k| Some(format!("  [cause {} {:.0}%]", k.majority.get(i)?, 100.0 * k.shares.get(i)?)))
            .unwrap_or_default();
        println!("  cluster {:>3}: {:>5} image(s)  {}{cause}", c.id, c.size, metadata::headline(&c.explanations));
    }
    if !l.noise.is_empty() {
        println!(
            "  noise:       {:>5} image(s)  in no cluster (not counted in coverage or explanations)",
            l.noise.len()
        );
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

/// Two clusterings of the same images side by side (the demo: HUDD's and the feature path's):
/// best layer, clusters, noise, silhouette and, with known causes, purity and coverage.
pub fn print_side_by_side(a: &Clustering, b: &Clustering) {
    let column = |c: &Clustering| -> Vec<String> {
        let r = &c.report;
        let best = c.best().map(|i| &r.layers[i]);
        let method = match r.parameters.method() {
            Method::Hdbscan => "feature path (UMAP + HDBSCAN)".to_string(),
            m => format!("{m}"),
        };
        let causes = c.causes();
        vec![
            method,
            best.map_or("-".into(), |l| l.name.clone()),
            best.map_or("-".into(), |l| l.k.to_string()),
            best.map_or("-".into(), |l| format!("{} of {}", l.noise.len(), r.images)),
            best.map_or("-".into(), |l| format!("{:.3}", l.silhouette)),
            causes.map_or("-".into(), |k| format!("{:.2}", k.purity)),
            causes.map_or("-".into(), |k| format!("{} of {}", k.covered.len(), k.causes.len())),
            c.explained().map_or("-".into(), |(e, t)| format!("{e} of {t}")),
        ]
    };
    let rows = ["", "best layer", "clusters", "noise", "silhouette", "purity", "coverage", "explained clusters"];
    let (left, right) = (column(a), column(b));
    let w = left.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(12);
    for ((name, l), r) in rows.iter().zip(&left).zip(&right) {
        println!("  {name:<20} {l:<w$}  {r}");
    }
    for (what, c) in [("HUDD", a), ("feature path", b)] {
        if let Some(k) = c.causes() {
            let missing = k.uncovered(hudd_core::cluster::causes::MIN_COVERED);
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|(c, n)| format!("{c} ({n} images)")).collect();
                println!("  {what}: not covered: {}", list.join(", "));
            }
        }
    }
}
