//! `hudd bench cluster`: the clustering stage (distances, Ward, WICD curve, knee) on real heatmaps
//! or on synthetic heatmap-like data of any size, with the peak memory of the process; with
//! `--feature-path`, the feature-space path instead (neighbours, UMAP, HDBSCAN).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use hudd_core::cluster::feature::{cluster_features, FeatureOptions};
use hudd_core::cluster::neighbours::Metric;
use hudd_core::cluster::{cluster_distances, Options};
use hudd_core::distance::{pairwise, Normalize};
use hudd_core::heatmaps::HeatmapSet;
use ndarray::Array2;

/// Times HUDD's clustering of every layer of a heatmaps folder (`--heatmaps`), or of `--synthetic N`
/// heatmaps of `--dims D` values (seeded clusters of sparse non-negative patterns scaled by a
/// random confidence, plus noise; `--write-npy` saves them for the Python reference).
#[derive(Debug, Args)]
pub struct ClusterBench {
    /// A folder written by `hudd heatmaps` / `hudd analyze` (RUN/heatmaps).
    #[arg(long, value_name = "H", conflicts_with = "synthetic")]
    heatmaps: Option<PathBuf>,
    /// Number of synthetic heatmaps.
    #[arg(long, value_name = "N")]
    synthetic: Option<usize>,
    /// Values per synthetic heatmap.
    #[arg(long, default_value_t = 50_000, value_name = "D")]
    dims: usize,
    /// Number of planted clusters in the synthetic data.
    #[arg(long, default_value_t = 12)]
    planted: usize,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the synthetic heatmaps as an N × D float32 .npy file.
    #[arg(long, value_name = "FILE")]
    write_npy: Option<PathBuf>,
    /// Time the feature-space path instead of HUDD's, one trial (what `--method hdbscan` runs per
    /// grid point): exact 15 nearest neighbours without the N × N distances (of the first 64
    /// principal components beyond 20,000 rows), UMAP into 2 dimensions (seed `--seed`), HDBSCAN
    /// with `--min-cluster-size`, the silhouette. "dist_s" is then the components and neighbours.
    #[arg(long)]
    feature_path: bool,
    /// HDBSCAN's smallest cluster (with `--feature-path`).
    #[arg(long, default_value_t = 15, value_name = "N")]
    min_cluster_size: usize,
}

/// splitmix64 → uniform [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32
    }
}

fn synthetic(n: usize, d: usize, planted: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng(seed);
    // Prototypes: about 5 % of positions active, like the relevant region of a heatmap.
    let prototypes: Vec<Vec<f32>> = (0..planted.max(1))
        .map(|_| (0..d).map(|_| if rng.next() < 0.05 { rng.next() } else { 0.0 }).collect())
        .collect();
    let mut x = Array2::<f32>::zeros((n, d));
    for (i, mut row) in x.rows_mut().into_iter().enumerate() {
        let p = &prototypes[i % prototypes.len()];
        let scale = 0.5 + 1.5 * rng.next();
        row.iter_mut().zip(p).for_each(|(v, &q)| *v = scale * q + 0.02 * (rng.next() - 0.5));
    }
    x
}

/// Peak resident memory of this process (Linux), in GiB.
fn peak_gib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0 / 1024.0)
}

/// How a layer is clustered.
enum Path {
    /// HUDD's (Ward on the rows, WICD knee).
    Hudd(Options),
    /// UMAP then HDBSCAN.
    Feature { seed: u64, min_cluster_size: usize },
}

fn time_layer(name: &str, x: Array2<f32>, path: &Path) -> (f64, f64) {
    let (n, d) = x.dim();
    let (t_dist, t_cluster, k, extra) = match path {
        Path::Hudd(options) => {
            let t = Instant::now();
            let dist = pairwise(x.view(), Normalize::None);
            drop(x);
            let t_dist = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let k = cluster_distances(dist, options).k;
            (t_dist, t.elapsed().as_secs_f64(), k, String::new())
        }
        Path::Feature { seed, min_cluster_size } => {
            let options = FeatureOptions {
                metrics: vec![Metric::Euclidean],
                components: vec![2],
                min_cluster_sizes: vec![*min_cluster_size],
                seed: *seed,
                ..FeatureOptions::default()
            };
            let c = cluster_features(x.view(), &options);
            drop(x);
            let step = |s: &str| c.timings.iter().find(|(n, _)| *n == s).map_or(0.0, |(_, v)| *v);
            let steps: Vec<String> = c.timings.iter().map(|(s, v)| format!("{s} {v:.3} s")).collect();
            let noise = c.trials[c.chosen].noise;
            let pca = c.pca.map_or(String::new(), |p| format!(", {p} principal components first"));
            (
                step("pca") + step("neighbours"),
                step("umap") + step("hdbscan") + step("silhouette"),
                c.k,
                format!("  ({}; noise {noise}{pca})", steps.join(", ")),
            )
        }
    };
    println!("{name:<45} {n:>7} {d:>8} {t_dist:>10.3} {t_cluster:>10.3} {:>10.3} {k:>4}{extra}", t_dist + t_cluster);
    (t_dist, t_cluster)
}

pub fn run(a: ClusterBench) -> Result<()> {
    let options = if a.feature_path {
        Path::Feature { seed: a.seed, min_cluster_size: a.min_cluster_size }
    } else {
        Path::Hudd(Options::default())
    };
    println!("{:<45} {:>7} {:>8} {:>10} {:>10} {:>10} {:>4}", "layer", "N", "D", "dist_s", "cluster_s", "total_s", "k");
    let (mut td, mut tc) = (0.0, 0.0);
    match (&a.heatmaps, a.synthetic) {
        (Some(dir), _) => {
            let set = HeatmapSet::open(dir)?;
            for (i, l) in set.layers().iter().enumerate() {
                let (d, c) = time_layer(&l.tensor, set.layer(i)?.into_owned(), &options);
                td += d;
                tc += c;
            }
        }
        (None, Some(n)) => {
            let t = Instant::now();
            let x = synthetic(n, a.dims, a.planted, a.seed);
            println!("(synthetic data generated in {:.1} s)", t.elapsed().as_secs_f64());
            if let Some(p) = &a.write_npy {
                let mut w = hudd_core::npy::NpyWriter::create(p, &[n, a.dims])?;
                w.append(x.as_slice().unwrap_or(&[]))?;
                w.finish()?;
            }
            let (d, c) = time_layer("synthetic", x, &options);
            td += d;
            tc += c;
        }
        (None, None) => bail!("give --heatmaps H or --synthetic N"),
    }
    println!("{:<45} {:>7} {:>8} {td:>10.3} {tc:>10.3} {:>10.3}", "total", "", "", td + tc);
    match peak_gib() {
        Some(g) => println!("peak memory (VmHWM): {g:.2} GiB"),
        None => println!("peak memory: not available on this platform"),
    }
    Ok(())
}
