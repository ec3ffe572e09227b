//! hudd-report: the schema of a hudd report bundle, shared by the `hudd` CLI (which writes it) and
//! the browser viewer (which reads it). Serde types only: no pipeline, no tract, no candle.
//!
//! # Format
//!
//! A bundle is one folder:
//!
//! ```text
//! BUNDLE/index.html      the viewer, with report.json and the viewer's WebAssembly inlined
//! BUNDLE/report.json     a [`Report`] (the same JSON as in index.html)
//! BUNDLE/images/…        thumbnails, heatmaps, GIFs and WICD-curve data, named by the report
//! BUNDLE/manifest.json   a [`Manifest`]: the SHA-256 of every other file (written last)
//! ```
//!
//! `report.json` starts with `{"format": "hudd-report", "format_version": N, "hudd_version": …}`.
//! [`read_report`] checks the format, then the version: a newer version is a clear error, an
//! older one is migrated step by step to the current one. Additive changes use `#[serde(default)]`;
//! a breaking change bumps [`FORMAT_VERSION`] and adds a migration. Bundles of every released
//! version are kept under `tests/fixtures/bundles/` and a test reads them all.
//!
//! Units: accuracies are fractions in `[0, 1]`; timings are seconds; distances are the layer's
//! Euclidean distances; paths inside the bundle are relative, with `/`.
//!
//! Every string in a report may come from user data (file names, labels, metadata): readers must
//! render them as text, never as markup.
//!
//! ```
//! let json = r#"{"format":"hudd-report","format_version":99,"hudd_version":"9.0.0"}"#;
//! assert!(matches!(hudd_report::read_report(json), Err(hudd_report::ReadError::Newer { .. })));
//! ```

#![deny(missing_docs)]

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod migrate;

/// `report.json`'s format name.
pub const FORMAT: &str = "hudd-report";
/// The version this crate writes and reads natively (2: closed sets are enums, layers say why they
/// cannot be the best layer; version 1 is migrated on reading).
pub const FORMAT_VERSION: u32 = 2;
/// `manifest.json`'s format name.
pub const MANIFEST_FORMAT: &str = "hudd-bundle-manifest";
/// Its version.
pub const MANIFEST_VERSION: u32 = 1;

/// A closed set of names: an enum whose JSON form, [`Display`](std::fmt::Display) and `name()`
/// are the listed strings, and `ALL` its values in order.
macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name, as written in the report.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

closed_set! {
    /// The LRP preset of the heatmaps (which rule each layer gets).
    Preset {
        /// The original HUDD toolset's rules.
        Hudd = "hudd",
        /// Zennit's `EpsilonPlus`.
        EpsilonPlus = "epsilon-plus",
        /// Zennit's `EpsilonPlusFlat`.
        EpsilonPlusFlat = "epsilon-plus-flat",
        /// Zennit's `EpsilonGammaBox`.
        EpsilonGammaBox = "epsilon-gamma-box",
        /// Zennit's `EpsilonAlpha2Beta1`.
        EpsilonAlpha2Beta1 = "epsilon-alpha2-beta1",
    }
}

closed_set! {
    /// The tree that is cut.
    Linkage {
        /// Ward on the rows of the row-max-normalised distance matrix (HUDD).
        WardRows = "ward-rows",
        /// Ward on the heatmaps.
        Ward = "ward",
        /// Average linkage on the heatmap distances.
        Average = "average",
    }
}

closed_set! {
    /// Heatmap normalisation before distances.
    Normalize {
        /// Raw relevance (HUDD).
        None = "none",
        /// Unit L2 norm.
        L2 = "l2",
        /// Cosine dissimilarity.
        Cosine = "cosine",
    }
}

closed_set! {
    /// How the best layer is chosen.
    LayerRule {
        /// Lowest WICD at the chosen k (HUDD).
        Wicd = "wicd",
        /// Highest mean silhouette.
        Silhouette = "silhouette",
    }
}

closed_set! {
    /// How a layer's number of clusters was chosen.
    KChoice {
        /// The knee of the WICD curve (HUDD).
        Knee = "knee",
        /// No knee: the fallback ([`Layer::k_choice_reason`] says why).
        Fallback = "fallback",
        /// Given by the user.
        Fixed = "fixed",
        /// The number of clusters HDBSCAN found (the feature path).
        Hdbscan = "hdbscan",
    }
}

closed_set! {
    /// The clustering method.
    Method {
        /// HUDD: Ward on the rows of the row-max-normalised distances, k by the knee.
        Hudd = "hudd",
        /// Ward linkage on the features.
        Ward = "ward",
        /// Average linkage.
        Average = "average",
        /// The feature path: UMAP then HDBSCAN, with noise.
        Hdbscan = "hdbscan",
    }
}

closed_set! {
    /// Why a layer cannot be the best layer.
    Exclusion {
        /// The image itself.
        Input = "input",
        /// The explained output: its heatmap is the start vector of the relevance.
        ExplainedOutput = "explained output",
    }
}

closed_set! {
    /// The kind of model.
    #[derive(Default)]
    Task {
        /// A classifier.
        #[default]
        Classification = "classification",
        /// A regressor.
        Regression = "regression",
    }
}

closed_set! {
    /// A dataset split.
    Split {
        /// The training set.
        Train = "train",
        /// The test set whose errors are explained.
        Test = "test",
        /// The improvement set (unsafe-set candidates).
        Improvement = "improvement",
    }
}

closed_set! {
    /// The kind of a metadata column.
    ColumnKind {
        /// Numbers: explained by variance.
        Numeric = "numeric",
        /// Categories: explained by Gini impurity.
        Categorical = "categorical",
    }
}

/// Why a report or manifest cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Not JSON, or not the expected shape.
    #[error("not a valid {what}: {reason}")]
    Invalid {
        /// `report` or `manifest`.
        what: &'static str,
        /// serde's message.
        reason: String,
    },
    /// Another format.
    #[error("format `{found}` is not `{expected}`")]
    Format {
        /// The expected format name.
        expected: &'static str,
        /// The format found.
        found: String,
    },
    /// Written by a newer hudd.
    #[error(
        "format version {found} is newer than this hudd reads ({supported}); open it with hudd {hudd_version} or later"
    )]
    Newer {
        /// The version found.
        found: u32,
        /// The newest version this crate reads.
        supported: u32,
        /// The hudd version that wrote it.
        hudd_version: String,
    },
}

/// A report: everything a reviewer or auditor needs about one root-cause run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The hudd version that wrote the report.
    pub hudd_version: String,
    /// A stable identifier of the run (hex SHA-256 of the model, the data and the clusters): the
    /// same run bundled twice keeps its id, so that reviewer notes stay attached to it.
    pub report_id: String,
    /// How the run was made.
    pub run: Run,
    /// The model.
    pub model: ModelSummary,
    /// The dataset splits.
    pub datasets: Vec<DatasetSplit>,
    /// Accuracy per split and class.
    pub evaluation: Evaluation,
    /// The root-cause clusters (`None` when fewer than two test images were Wrong).
    #[serde(default)]
    pub analysis: Option<Analysis>,
    /// Every image the report shows, referenced by index from clusters.
    #[serde(default)]
    pub images: Vec<ImageEntry>,
    /// The unsafe set (improvement images assigned to clusters), when computed.
    #[serde(default)]
    pub unsafe_set: Option<UnsafeSet>,
    /// Retraining results, when the model was retrained.
    #[serde(default)]
    pub retraining: Option<Retraining>,
    /// Inputs that were skipped, with the reason.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// What the tool that wrote the report is and how far it is to be trusted (ISO 26262-8 §11).
    #[serde(default)]
    pub tool_confidence: Option<ToolConfidence>,
}

/// The tool-qualification record of a report: the build that wrote it, the oracle checks that build
/// passed when it wrote it (`hudd selftest`), and the known limitations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolConfidence {
    /// hudd's version.
    pub version: String,
    /// The git commit it was built from (`-dirty`: with uncommitted changes; `unknown` outside git).
    pub commit: String,
    /// Cargo profile (`release`, `debug`).
    pub profile: String,
    /// Target triple.
    pub target: String,
    /// `rustc --version` of the compiler.
    pub rustc: String,
    /// The shipped oracle checks, run by this build while writing the report (their time is the
    /// `selftest` entry of the run's timings, so that this record repeats exactly).
    pub selftest: Vec<SelftestCheck>,
    /// The LRP rule each heatmap layer got in this run.
    #[serde(default)]
    pub rules: Vec<RuleUse>,
    /// What hudd does not do, or does only approximately.
    pub limitations: Vec<String>,
}

/// One oracle check of `hudd selftest`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SelftestCheck {
    /// `evaluate`, `relevance`, `clustering`, `retraining`.
    pub check: String,
    /// The outside tool whose committed results are the reference.
    pub oracle: String,
    /// What was compared.
    pub compared: String,
    /// Values or decisions compared.
    pub values: usize,
    /// The largest deviation as a share of its tolerance (≤ 1 passes).
    pub worst: f64,
    /// Whether every value was within tolerance.
    pub passed: bool,
    /// The worst case, or the first failure.
    pub detail: String,
}

/// Where an LRP rule was used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleUse {
    /// The heatmap layer (ONNX tensor).
    pub layer: String,
    /// The op that produces it.
    pub op: String,
    /// The rule (empty: the layer passes relevance through unchanged).
    pub rule: String,
}

/// How the run was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The hudd version that ran the analysis.
    pub tool_version: String,
    /// The command line, one argument per entry.
    pub command_line: Vec<String>,
    /// The resolved configuration (`hudd.toml` with overrides), as JSON.
    pub config: serde_json::Value,
    /// Every seed of a random choice, by what it seeded (e.g. `simulate`).
    #[serde(default)]
    pub seeds: BTreeMap<String, u64>,
    /// Seconds per stage, in order.
    #[serde(default)]
    pub timings: Vec<Timing>,
    /// When the analysis started, as seconds since 1970-01-01 UTC.
    #[serde(default)]
    pub started_unix_s: Option<u64>,
    /// Stages a resumed run read back from its run folder (completed earlier from the same inputs)
    /// instead of redoing them; their seconds are not in `timings`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reused_stages: Vec<String>,
    /// The folder the command ran in (relative paths of `command_line` start there), so that
    /// `hudd verify --rerun` can run it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// Seconds spent in one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Stage name (`evaluate`, `heatmaps`, `distances`, `clustering`, `pictures`, …).
    pub stage: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    /// File name (without folders).
    pub file_name: String,
    /// The model's identity: the hex SHA-256 of the ONNX file, or, when the model keeps weights in
    /// files beside it (`weights`), of the list of every file's size and SHA-256.
    pub sha256: String,
    /// Size of the ONNX file in bytes.
    pub bytes: u64,
    /// The files beside the ONNX file that hold its external weights (PyTorch's `NAME.onnx.data`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<WeightsFile>,
    /// ONNX producer (e.g. `pytorch 2.5`).
    #[serde(default)]
    pub producer: String,
    /// ONNX opset.
    #[serde(default)]
    pub opset: i64,
    /// Inputs.
    pub inputs: Vec<TensorSummary>,
    /// Outputs.
    pub outputs: Vec<TensorSummary>,
    /// Number of nodes of each ONNX op type.
    pub op_counts: BTreeMap<String, usize>,
}

/// A file of a model's external weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsFile {
    /// Its name beside the ONNX file.
    pub file_name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

/// A model input or output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSummary {
    /// ONNX name.
    pub name: String,
    /// Dimensions; symbolic ones by name (e.g. `batch`).
    pub shape: Vec<String>,
    /// Element type (e.g. `f32`).
    pub elem_type: String,
}

/// One dataset split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSplit {
    /// `train`, `test` or `improvement`.
    pub split: Split,
    /// Images evaluated.
    pub images: usize,
    /// Images skipped (unreadable, wrong shape, unknown label).
    pub skipped: usize,
    /// Hex SHA-256 of the sorted list of image paths (evaluated and skipped), one per line, each
    /// followed by `\n`: the same list gives the same hash.
    pub sha256: String,
}

/// The model's accuracy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// `classification` or `regression`.
    pub task: Task,
    /// Class names (classification), in output order.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Per split.
    pub splits: Vec<SplitEvaluation>,
}

/// One split's accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitEvaluation {
    /// Split name.
    pub split: Split,
    /// Images evaluated.
    pub images: usize,
    /// Images the model got right.
    pub correct: usize,
    /// `correct / images`.
    pub accuracy: f64,
    /// Per expected class (classification).
    #[serde(default)]
    pub per_class: Vec<ClassAccuracy>,
    /// `confusion[expected][predicted]` image counts (classification).
    #[serde(default)]
    pub confusion: Option<Vec<Vec<usize>>>,
}

/// Accuracy on the images of one expected class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAccuracy {
    /// Class name.
    pub class: String,
    /// Images of that class.
    pub images: usize,
    /// Of which correct.
    pub correct: usize,
    /// `correct / images` (0 when there are none).
    pub accuracy: f64,
}

/// The root-cause clusters of every layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// LRP preset of the heatmaps.
    pub preset: Preset,
    /// The clustering method (absent in bundles made before the feature path: a tree method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// What the feature path tried and with which seed (method `hdbscan`), as a sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_path: Option<String>,
    /// Linkage (`ward-rows` is HUDD's).
    pub linkage: Linkage,
    /// Heatmap normalisation before distances.
    pub normalize: Normalize,
    /// How the best layer is chosen (`wicd` or `silhouette`).
    pub layer_rule: LayerRule,
    /// How k is chosen.
    pub k_selection: String,
    /// Number of clustered (Wrong test) images.
    pub images: usize,
    /// Index into `layers` of the best layer.
    pub best_layer: Option<usize>,
    /// Speed of the flipbook and GIFs, in images per minute.
    pub images_per_minute: f64,
    /// Metadata column names; [`ImageEntry::metadata`] has one value per column.
    #[serde(default)]
    pub metadata_columns: Vec<String>,
    /// When a metadata column explains a cluster (absent in bundles made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_rule: Option<ExplanationRule>,
    /// Layers in the model's order (the input first).
    pub layers: Vec<Layer>,
    /// Other clusterings of the same images, summarised for comparison (e.g. the feature path
    /// that `hudd demo` writes to `RUN/feature-path/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
}

/// Another clustering of the same images, summarised beside the report's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    /// The run subfolder it was read from (`feature-path`).
    pub folder: String,
    /// Its method.
    pub method: Method,
    /// Its parameters, as a sentence.
    pub description: String,
    /// Its best layer.
    pub best_layer: Option<String>,
    /// Clusters at the best layer.
    pub clusters: usize,
    /// Images in no cluster at the best layer.
    pub noise: usize,
    /// Silhouette at the best layer.
    pub silhouette: f64,
    /// Against the known causes, when the data has a `cause` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_causes: Option<KnownCauses>,
    /// `[explained, clusters]`: clusters of 2 or more images that a metadata column explains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained: Option<[usize; 2]>,
    /// Each cluster of the best layer, the largest first.
    pub summary: Vec<AlternativeCluster>,
}

/// One cluster of an [`Alternative`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlternativeCluster {
    /// Number of images.
    pub size: usize,
    /// Its top explanation (or "unexplained …").
    pub headline: String,
    /// Its majority known cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_cause: Option<KnownCause>,
}

/// When a metadata column explains a cluster: its separation from the other clustered images (KS
/// distance for a numeric column, total variation distance for a categorical one) is at least
/// `separation_min` and the separation's p-value, Bonferroni-corrected for the columns tested, is
/// below `alpha`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationRule {
    /// Smallest separation, 0–1.
    pub separation_min: f64,
    /// Largest corrected p-value.
    pub alpha: f64,
}

/// One layer's clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// ONNX tensor name.
    pub name: String,
    /// Heatmap shape without the image axis.
    pub shape: Vec<usize>,
    /// The WICD curve.
    pub curve: Vec<CurvePoint>,
    /// Chosen number of clusters.
    pub k: usize,
    /// `knee`, `fallback` or `fixed`.
    pub k_choice: KChoice,
    /// Why the fallback was used.
    #[serde(default)]
    pub k_choice_reason: Option<String>,
    /// WICD at k on the raw distances (lower is better).
    pub score: f64,
    /// Mean silhouette of the partition.
    pub silhouette: f64,
    /// The layer whose heatmaps the member heatmap images show (the layer itself when spatial,
    /// else the input), if any.
    #[serde(default)]
    pub heatmap_layer: Option<String>,
    /// Why the layer cannot be the best layer, if it cannot: `input` (the image itself) or
    /// `explained output` (its heatmap is the start vector of the relevance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<Exclusion>,
    /// The WICD curve as CSV in the bundle (`k,wicd,gradient`).
    #[serde(default)]
    pub curve_file: Option<String>,
    /// Clusters, the largest first.
    pub clusters: Vec<Cluster>,
    /// The tree the clusters were cut from (the best layer; absent in older bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dendrogram: Option<Dendrogram>,
    /// A 2-D map of the clustered images (the best layer; absent in older bundles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<Map>,
    /// How well the clusters separate the causes known by construction, when the data has a
    /// `cause` column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_causes: Option<KnownCauses>,
    /// Images in no cluster (the feature path's noise: HDBSCAN found them in no dense region),
    /// indices into [`Report::images`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noise: Vec<usize>,
    /// The feature path's parameter grid on this layer, the chosen trial first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trials: Vec<FeatureTrial>,
}

/// One trial of the feature path's grid on a layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureTrial {
    /// UMAP's metric (`euclidean` or `cosine`).
    pub metric: String,
    /// UMAP's components (0: HDBSCAN on the features).
    pub components: usize,
    /// HDBSCAN's `min_cluster_size`.
    pub min_cluster_size: usize,
    /// Clusters found.
    pub clusters: usize,
    /// Images in no cluster.
    pub noise: usize,
    /// Mean silhouette of the clustered points, if 2 or more clusters.
    #[serde(default)]
    pub silhouette: Option<f64>,
    /// Whether this trial is the layer's result.
    pub chosen: bool,
}

/// A layer's clusters against the causes known by construction (a `cause` metadata column; the
/// simulator writes one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownCauses {
    /// The column.
    pub column: String,
    /// Size-weighted share of each cluster's majority cause, 0–1.
    pub purity: f64,
    /// Each cause other than `none` among the clustered images, the most frequent first.
    pub causes: Vec<CauseCount>,
    /// The causes that are the majority of some cluster.
    pub covered: Vec<String>,
}

/// A cause and its number of clustered images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CauseCount {
    /// The cause.
    pub cause: String,
    /// Clustered images with it.
    pub images: usize,
}

/// A cluster's majority cause.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnownCause {
    /// The cause most of its images have.
    pub cause: String,
    /// Their share of the cluster, 0–1.
    pub share: f64,
}

/// A layer's hierarchical clustering tree, numbered as SciPy numbers a linkage matrix: leaves
/// `0..n`, the cluster made by merge `s` is `n + s`. Cutting it into the layer's `k` clusters
/// ([`Dendrogram::cut`]) gives the layer's clusters, numbered the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dendrogram {
    /// Leaf `i` is image `leaves[i]` (an index into [`Report::images`]).
    pub leaves: Vec<usize>,
    /// The two clusters each merge joins, in merge order (`n − 1` merges).
    pub merges: Vec<[usize; 2]>,
    /// Each merge's height (the linkage's dissimilarity; non-decreasing for Ward and average).
    pub heights: Vec<f64>,
}

impl Dendrogram {
    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Cluster index per leaf after cutting the tree into `k` clusters (see [`cut`]).
    pub fn cut(&self, k: usize) -> Vec<usize> {
        cut(&self.merges, self.leaves.len(), k)
    }
}

/// Cluster labels of `n` leaves after replaying the first `n − k` of `merges` (SciPy's numbering:
/// merge `s` makes cluster `n + s`), numbered `0..k` by [`canonical`]: the largest cluster first,
/// ties by their first leaf. Merges that name a cluster not yet made are ignored.
pub fn cut(merges: &[[usize; 2]], n: usize, k: usize) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..n + merges.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for (step, &[a, b]) in merges.iter().enumerate().take(n.saturating_sub(k)) {
        let new = n + step;
        if a >= new || b >= new {
            continue;
        }
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        parent[ra] = new;
        parent[rb] = new;
    }
    let roots: Vec<usize> = (0..n).map(|i| find(&mut parent, i)).collect();
    canonical(&roots)
}

/// Renumbers arbitrary labels `0..k`: the largest cluster first, ties by the first member.
pub fn canonical(labels: &[usize]) -> Vec<usize> {
    let mut groups: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        groups.entry(l).or_insert((0, i)).0 += 1;
    }
    let mut order: Vec<(usize, (usize, usize))> = groups.into_iter().collect();
    order.sort_by_key(|&(_, (size, first))| (std::cmp::Reverse(size), first));
    let map: BTreeMap<usize, usize> = order.iter().enumerate().map(|(new, &(old, _))| (old, new)).collect();
    labels.iter().map(|l| map[l]).collect()
}

/// A 2-D map of a layer's clustered images: nearby points have similar heatmaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Map {
    /// How the points were computed, e.g. `classical MDS of the layer's heatmap distances`.
    pub method: String,
    /// Share of the distances' variance the two axes show, 0–1.
    pub explained: f64,
    /// Point `i` is image `images[i]` (an index into [`Report::images`]).
    pub images: Vec<usize>,
    /// `[x, y]` per image.
    pub points: Vec<[f64; 2]>,
}

/// One point of a WICD curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Number of clusters.
    pub k: usize,
    /// WICD on the row-normalised distances.
    pub wicd: f64,
    /// Its fourth-order gradient (what the knee is found on).
    pub gradient: f64,
}

/// One root-cause cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// 1-based id, the largest cluster first.
    pub cluster_id: usize,
    /// Members, the medoid first, then by distance to it.
    pub members: Vec<Member>,
    /// Animated GIF of the members, in the bundle.
    #[serde(default)]
    pub gif: Option<String>,
    /// Mean heatmap picture, in the bundle.
    #[serde(default)]
    pub mean_heatmap: Option<String>,
    /// Metadata columns ranked by how well they explain the cluster.
    #[serde(default)]
    pub explanations: Vec<Explanation>,
    /// Its majority cause, when the data has causes known by construction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_cause: Option<KnownCause>,
}

/// A member of a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Index into [`Report::images`].
    pub image: usize,
    /// Distance to the medoid.
    pub distance_to_medoid: f64,
    /// The member's heatmap picture (same size as its thumbnail), in the bundle.
    #[serde(default)]
    pub heatmap: Option<String>,
}

/// How well one metadata column explains a cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Column name.
    pub column: String,
    /// `numeric` or `categorical`.
    pub kind: ColumnKind,
    /// Within-cluster variance (Gini impurity) over that of all clustered images.
    pub ratio: f64,
    /// `1 − ratio`.
    pub reduction: f64,
    /// One line, e.g. `eyelid 0.35 vs 0.55 overall (range 0.02–0.98), KS 0.52`.
    pub summary: String,
    /// KS (numeric) or total variation (categorical) distance between the cluster and the other
    /// clustered images, 0–1 (absent in bundles made before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separation: Option<f64>,
    /// The separation's p-value, Bonferroni-corrected for the columns tested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Whether the column explains the cluster under [`Analysis::explanation_rule`]; the columns
    /// are ranked, so a cluster whose first explanation has `Some(false)` is unexplained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explains: Option<bool>,
    /// The paper's RQ1 figure for the column, e.g. `eyelid −87% variance`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rq1: Option<String>,
    /// The cluster's values against all clustered images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histogram: Option<Histogram>,
}

/// Counts of a column's values in a cluster and among all clustered images: equal-width bins
/// (numeric: `edges` has one more entry than the counts) or one bin per value (categorical:
/// `labels`, the most frequent first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Numeric: bin edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    /// Categorical: the values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The cluster's count per bin.
    pub cluster: Vec<usize>,
    /// All clustered images' count per bin.
    pub all: Vec<usize>,
}

impl Cluster {
    /// Whether the cluster was assessed and no metadata column explains it.
    pub fn unexplained(&self) -> bool {
        self.explanations.first().and_then(|e| e.explains) == Some(false)
    }
}

/// An image shown by the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// Path relative to the dataset root.
    pub name: String,
    /// Split.
    pub split: Split,
    /// Expected class or target, as text.
    pub expected: String,
    /// Predicted class or output, as text.
    pub predicted: String,
    /// Thumbnail in the bundle.
    pub thumbnail: String,
    /// Metadata values, one per [`Analysis::metadata_columns`].
    #[serde(default)]
    pub metadata: Vec<String>,
}

/// The improvement images assigned to root-cause clusters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsafeSet {
    /// The layer whose clusters the images were assigned to.
    pub layer: String,
    /// Improvement images considered.
    pub candidates: usize,
    /// Per cluster.
    pub clusters: Vec<UnsafeCluster>,
    /// The allocation (`closest-u`: HUDD's ClosestU).
    #[serde(default)]
    pub mode: String,
    /// The improvement folder.
    #[serde(default)]
    pub improvement: String,
    /// Improvement images that could not be read.
    #[serde(default)]
    pub skipped: usize,
}

/// The unsafe images of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnsafeCluster {
    /// Cluster id in the layer.
    pub cluster_id: usize,
    /// Indexes into [`Report::images`], nearest first (the order of selection).
    pub images: Vec<usize>,
    /// Each image's distance to the cluster's nearest test member, aligned with `images`.
    #[serde(default)]
    pub distances: Vec<f64>,
    /// The cluster's test members (Wrong test images).
    #[serde(default)]
    pub test_members: usize,
    /// How many images the cluster could take (ClosestU: 2 × test members).
    #[serde(default)]
    pub quota: usize,
    /// Animated GIF of the assigned images, in the bundle.
    #[serde(default)]
    pub gif: Option<String>,
}

/// Retraining results (`hudd retrain`, and `hudd compare` when it ran), on the test split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Retraining {
    /// Test accuracy before.
    pub accuracy_before: f64,
    /// Test accuracy after.
    pub accuracy_after: f64,
    /// Seed of the retraining (validation draw, shuffles, dropout).
    pub seed: u64,
    /// Per root-cause cluster of the best layer.
    #[serde(default)]
    pub clusters: Vec<RetrainingGain>,
    /// Accuracy on the test members of all root-cause clusters, before.
    #[serde(default)]
    pub failing_before: f64,
    /// The same after retraining.
    #[serde(default)]
    pub failing_after: f64,
    /// Epochs trained and the one kept.
    #[serde(default)]
    pub epochs: usize,
    /// The kept epoch (0: the original weights).
    #[serde(default)]
    pub chosen_epoch: usize,
    /// The retrained model file (as `hudd retrain --out` named it).
    #[serde(default)]
    pub retrained_model: String,
    /// Its SHA-256.
    #[serde(default)]
    pub retrained_sha256: String,
    /// HUDD against the baselines at the same labelling budget (`hudd compare`).
    #[serde(default)]
    pub comparison: Option<Comparison>,
}

/// Retraining's effect on one cluster's kind of error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainingGain {
    /// Cluster id.
    pub cluster_id: usize,
    /// Accuracy gain, in percentage points, on the cluster's test members.
    pub gain_pp: f64,
    /// The cluster's test members.
    #[serde(default)]
    pub members: usize,
    /// Of which the retrained model gets right.
    #[serde(default)]
    pub right_after: usize,
}

/// `hudd compare`: test accuracy before and after each selection method, over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Images labelled per method (the unsafe set's size).
    pub budget: usize,
    /// Retrainings per method.
    pub repeats: usize,
    /// First seed; repeat `r` uses `seed + r`.
    pub seed: u64,
    /// `before`, then `hudd`, `hudd-all` (when run), `bl1`, `bl2`.
    pub methods: Vec<MethodResult>,
    /// HUDD against each baseline (from 5 repeats on; empty below).
    #[serde(default)]
    pub tests: Vec<ComparisonTest>,
}

/// A HUDD selection against one baseline on one measure, over the repeats (two-sided tests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonTest {
    /// `hudd`, or the variant `hudd-all`.
    pub method: String,
    /// `bl1` or `bl2`.
    pub baseline: String,
    /// `overall` or `failing-clusters`.
    pub measure: String,
    /// The method's mean accuracy minus the baseline's (a fraction).
    pub difference: f64,
    /// Welch's t-test p-value; none when neither method's accuracy varied.
    pub welch_p: Option<f64>,
    /// Mann–Whitney U test p-value.
    pub mann_whitney_p: Option<f64>,
}

/// One method (or the model before retraining) over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// `before`, `hudd` (the balanced unsafe set), `bl1` (random wrong improvement images) or
    /// `bl2` (random improvement images).
    pub method: String,
    /// Test accuracy.
    pub overall: MeanSd,
    /// Accuracy on the test members of the root-cause clusters.
    pub failing_clusters: MeanSd,
    /// Per cluster, in the order of [`Retraining::clusters`].
    pub per_cluster: Vec<ClusterMeanSd>,
    /// Images the method had labelled (0 for `before`).
    #[serde(default)]
    pub labelled: usize,
    /// Per repeat, the labelled images trained on (the rest were held out or not kept).
    #[serde(default)]
    pub trained: Vec<usize>,
    /// Per repeat, the kept epoch (0: the model unchanged).
    #[serde(default)]
    pub kept_epochs: Vec<usize>,
}

/// Mean and sample standard deviation over the repeats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MeanSd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (n − 1); none for one repeat (older reports wrote 0).
    #[serde(default)]
    pub sd: Option<f64>,
}

/// One cluster's accuracy over the repeats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMeanSd {
    /// Cluster id.
    pub cluster_id: usize,
    /// Its test members.
    pub members: usize,
    /// Accuracy on them.
    pub accuracy: MeanSd,
}

/// A skipped input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// Split.
    pub split: Split,
    /// Image path.
    pub image: String,
    /// Why.
    pub reason: String,
}

/// `manifest.json`: every file of the bundle (except itself) with its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// [`MANIFEST_VERSION`].
    pub format_version: u32,
    /// The report's id.
    pub report_id: String,
    /// Files, sorted by path.
    pub files: Vec<ManifestFile>,
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the bundle, with `/`.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Hex SHA-256.
    pub sha256: String,
}

impl Report {
    /// The best layer, if any.
    pub fn best_layer(&self) -> Option<&Layer> {
        let a = self.analysis.as_ref()?;
        a.layers.get(a.best_layer?)
    }

    /// The report as JSON that is safe to inline in an HTML `<script>` element: `<`, `>` and `&`
    /// are written as `\u003c`, `\u003e` and `\u0026` (they only occur inside JSON strings), so
    /// no data can close the element.
    pub fn to_inline_json(&self) -> Result<String, serde_json::Error> {
        Ok(escape_for_script(&serde_json::to_string(self)?))
    }
}

/// Escapes JSON text for inlining in an HTML `<script>` element (see [`Report::to_inline_json`]).
pub fn escape_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Reads a `report.json` of any released version, migrating older versions to the current one.
pub fn read_report(json: &str) -> Result<Report, ReadError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ReadError::Invalid { what: "report", reason: e.to_string() })?;
    let value = migrate::to_current(value)?;
    serde_json::from_value(value).map_err(|e| ReadError::Invalid { what: "report", reason: e.to_string() })
}

/// Reads a `manifest.json`.
pub fn read_manifest(json: &str) -> Result<Manifest, ReadError> {
    let m: Manifest =
        serde_json::from_str(json).map_err(|e| ReadError::Invalid { what: "manifest", reason: e.to_string() })?;
    if m.format != MANIFEST_FORMAT {
        return Err(ReadError::Format { expected: MANIFEST_FORMAT, found: m.format });
    }
    if m.format_version > MANIFEST_VERSION {
        return Err(ReadError::Newer {
            found: m.format_version,
            supported: MANIFEST_VERSION,
            hudd_version: "a newer version".into(),
        });
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_json_cannot_close_a_script_element() {
        let s = escape_for_script(r#"{"a":"</script><img src=x onerror=alert(1)>&"}"#);
        assert!(!s.contains('<') && !s.contains('>') && !s.contains('&'));
        let v: serde_json::Value = serde_json::from_str(&s).expect("still JSON");
        assert_eq!(v["a"], "</script><img src=x onerror=alert(1)>&");
    }

    #[test]
    fn cutting_a_tree_by_hand() {
        // 4 leaves: (0,1) → 4, (2,3) → 5, (4,5) → 6.
        let merges = [[0, 1], [2, 3], [4, 5]];
        assert_eq!(cut(&merges, 4, 4), vec![0, 1, 2, 3]);
        assert_eq!(cut(&merges, 4, 3), vec![0, 0, 1, 2]);
        assert_eq!(cut(&merges, 4, 2), vec![0, 0, 1, 1]);
        assert_eq!(cut(&merges, 4, 1), vec![0; 4]);
        assert_eq!(cut(&merges, 4, 9), vec![0, 1, 2, 3], "more clusters than leaves: every leaf alone");
        // The largest cluster is numbered first: (2,3) then (4,1) → {1,2,3} is cluster 0.
        assert_eq!(cut(&[[2, 3], [4, 1], [5, 0]], 4, 2), vec![1, 0, 0, 0]);
        // A merge naming a cluster that does not exist yet is ignored, not a panic.
        assert_eq!(cut(&[[0, 9], [1, 2]], 3, 1), vec![1, 0, 0]);
        assert_eq!(canonical(&[7, 3, 3, 9]), vec![1, 0, 0, 2]);
    }

    #[test]
    fn other_formats_and_garbage_are_refused() {
        let other = r#"{"format":"hudd-clusters","format_version":1,"hudd_version":"0.1.0"}"#;
        assert!(matches!(read_report(other), Err(ReadError::Format { .. })));
        assert!(matches!(read_report("{"), Err(ReadError::Invalid { .. })));
        let old = r#"{"format":"hudd-report","format_version":0,"hudd_version":"0.0.1"}"#;
        assert!(matches!(read_report(old), Err(ReadError::Invalid { .. })));
    }
}
