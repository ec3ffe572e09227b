//! The error type of `hudd-core`, grouped by pipeline stage.
//!
//! Every variant names what it is about (file, node, op, tensor, image) so that a message alone tells
//! the user what was wrong and what to do; paths come last in each message.

use std::path::PathBuf;

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- I/O -------------------------------------------------------------------------------
    /// A file or folder could not be read or written.
    #[error("{action}: {source}: {path}")]
    Io {
        /// What was attempted (`"cannot read model"`).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    // ---- model -----------------------------------------------------------------------------
    /// The file is not a readable ONNX model.
    #[error("not a valid ONNX model ({reason}); re-export it or check the file is complete: {path}")]
    MalformedModel {
        /// The model file.
        path: PathBuf,
        /// What the decoder or checker said.
        reason: String,
    },
    /// A node uses an operator the inference engine does not implement.
    #[error(
        "node `{node}` uses op `{op}`, which hudd cannot run; supported ops are listed by \
         `hudd inspect --ops`: {path}"
    )]
    UnsupportedOp {
        /// The model file.
        path: PathBuf,
        /// The ONNX node name (or its first output when unnamed).
        node: String,
        /// The ONNX op type.
        op: String,
    },
    /// A node's op runs in the engine, but a later stage cannot interpret it.
    #[error(
        "node `{node}` uses op `{op}`, which hudd can run but the {stage} stage cannot handle ({reason}); \
         `hudd inspect --ops` lists what each stage supports: {path}"
    )]
    UnsupportedByStage {
        /// The model file.
        path: PathBuf,
        /// The ONNX node name.
        node: String,
        /// The ONNX op type.
        op: String,
        /// The stage (`heatmaps`).
        stage: &'static str,
        /// What the stage lacks.
        reason: String,
    },
    /// The engine rejected the model while preparing it (shape inference, optimisation).
    #[error("cannot prepare the model for inference{}: {reason}: {path}", at_node(node, op))]
    ModelPreparation {
        /// The model file.
        path: PathBuf,
        /// The node the engine complained about, when it said.
        node: Option<String>,
        /// That node's op type, when known.
        op: Option<String>,
        /// The engine's message.
        reason: String,
    },
    /// Running the model failed.
    #[error("inference failed on a batch of {batch} image(s): {reason}: {path}")]
    Inference {
        /// The model file.
        path: PathBuf,
        /// Batch size of the failing run.
        batch: usize,
        /// The engine's message.
        reason: String,
    },
    /// The model's inputs or outputs do not fit what hudd needs.
    #[error("{reason}: {path}")]
    ModelInterface {
        /// The model file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// A weight cannot take the value given to it (writing a model back).
    #[error("weight `{tensor}` {reason}: {path}")]
    Weight {
        /// The model file.
        path: PathBuf,
        /// The ONNX tensor name.
        tensor: String,
        /// What does not fit.
        reason: String,
    },
    /// A tensor has a different shape than expected.
    #[error("tensor `{tensor}` has shape {actual:?} but {expected} was expected")]
    ShapeMismatch {
        /// The ONNX tensor name.
        tensor: String,
        /// The shape found.
        actual: Vec<usize>,
        /// The shape (or rule) that was expected.
        expected: String,
    },

    // ---- configuration ---------------------------------------------------------------------
    /// The configuration file is not valid TOML or has wrong fields.
    #[error("invalid configuration: {reason}: {path}")]
    ConfigSyntax {
        /// The configuration file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The configuration contradicts itself or the model.
    #[error("invalid configuration: {0}")]
    Config(String),

    // ---- stages ----------------------------------------------------------------------------
    /// A layer asked for is not an activation of the model.
    #[error(
        "layer `{layer}` is not an activation of the model (available: {available}); `hudd heatmaps --layers all` writes them all"
    )]
    UnknownLayer {
        /// The tensor name asked for.
        layer: String,
        /// The model's activation tensors.
        available: String,
    },
    /// The relevance never reached a chosen layer.
    #[error("no relevance reached layer `{layer}`: it is not on the path from the input to the explained output")]
    RelevanceNotReached {
        /// The tensor name.
        layer: String,
    },
    /// An image lacks what its start rule needs.
    #[error("image `{image}` has no {what}, which the start rule needs; use `--start predicted`")]
    NoStart {
        /// The image.
        image: String,
        /// `class label` or `regression targets`.
        what: &'static str,
    },
    /// Not one of the images could be decoded.
    #[error("none of the {images} images could be read (first: {first})")]
    NoReadableImage {
        /// How many were tried.
        images: usize,
        /// The first image and why it failed.
        first: String,
    },
    /// A stage needs more images than it has.
    #[error("{stage} needs at least {needed} images, {found} given{}", at_path(path))]
    TooFewImages {
        /// The stage (`clustering`).
        stage: &'static str,
        /// How many it needs.
        needed: usize,
        /// How many it has.
        found: usize,
        /// Where they came from, when a folder.
        path: Option<PathBuf>,
    },
    /// Two inputs of one stage disagree (e.g. metadata rows and heatmap rows).
    #[error("{what} do not match: {reason}")]
    Mismatch {
        /// What was compared.
        what: &'static str,
        /// How they differ.
        reason: String,
    },
    /// Retraining failed inside the training engine (a shape or numeric problem it reports).
    #[error("retraining failed: {reason}")]
    Training {
        /// What the engine said, with the node concerned.
        reason: String,
    },
    /// The viewer built into hudd cannot be used.
    #[error("the embedded viewer is broken ({reason}); rebuild hudd after viewer/build.sh")]
    Viewer {
        /// What is wrong with it.
        reason: String,
    },

    // ---- data ------------------------------------------------------------------------------
    /// The dataset folder does not have a usable layout.
    #[error("{reason}: {path}")]
    DatasetLayout {
        /// The dataset folder (or the split folder).
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A split exists but holds no usable image.
    #[error("split `{split}` holds no usable image ({skipped} skipped); add images or remove the folder: {path}")]
    EmptySplit {
        /// The split's name.
        split: String,
        /// The split's folder.
        path: PathBuf,
        /// How many files were skipped as unreadable.
        skipped: usize,
    },
    /// A label is not one of the configured classes.
    #[error(
        "label `{label}` is not one of the {n_classes} configured classes ({classes}); fix the label \
         or list the class in `[task] classes`: {path}"
    )]
    UnknownLabel {
        /// The unknown label.
        label: String,
        /// Where it came from (class folder or manifest).
        path: PathBuf,
        /// Number of configured classes.
        n_classes: usize,
        /// The configured classes, abbreviated.
        classes: String,
    },
    /// A manifest (CSV) is malformed.
    #[error("manifest line {line}: {reason}: {path}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line number (0 when the whole file is affected).
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another process is writing the run folder.
    #[error(
        "{run} is being written by {holder}; wait until it finishes, or write to another folder \
         (one command writes a run at a time)"
    )]
    RunBusy {
        /// The run folder.
        run: PathBuf,
        /// The command holding its lock, as it described itself.
        holder: String,
    },
    /// An output would replace one of the command's inputs.
    #[error("refusing to write {path}: it is {what}; {hint}")]
    WouldOverwrite {
        /// The output path.
        path: PathBuf,
        /// Which input it is.
        what: String,
        /// What to do instead.
        hint: String,
    },
    /// A run folder or report bundle is incomplete, or not what hudd wrote.
    #[error("{reason}: {path}")]
    Bundle {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// Labels of the unsafe set that cannot be used.
    #[error("{count} problem(s) with the labels from {origin} (the first 20): {problems}; fix them and rerun (nothing was written)")]
    Labels {
        /// The labels CSV, or `the improvement data`.
        origin: String,
        /// How many problems.
        count: usize,
        /// The first 20, separated by `; `.
        problems: String,
    },
    /// A CSV the user gives (metadata, labels) cannot be used.
    #[error("{what} CSV: {reason}: {path}")]
    Csv {
        /// `metadata` or `labels`.
        what: &'static str,
        /// The CSV file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Shard folders that cannot be merged (missing, incomplete, from different runs).
    #[error("cannot merge the shards: {reason}: {path}")]
    Shards {
        /// The shard folder, or the folder holding them.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A result file could not be written.
    #[error("cannot write {what}: {reason}: {path}")]
    Output {
        /// What was being written.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn at_node(node: &Option<String>, op: &Option<String>) -> String {
    match (node, op) {
        (Some(n), Some(o)) => format!(" at node `{n}` (op `{o}`)"),
        (Some(n), None) => format!(" at node `{n}`"),
        _ => String::new(),
    }
}

fn at_path(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!(": {}", p.display())).unwrap_or_default()
}

impl Error {
    /// Wraps an I/O error with what was attempted and on which path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
}
