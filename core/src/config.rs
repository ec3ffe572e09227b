//! Configuration: the `hudd.toml` file, command-line overrides, and its validation against a model.
//!
//! A configuration says how images become model input (`[input]`), what the model's output means
//! (`[task]`) and how work is run (`[run]`). Every field has a default; fields left out of `[input]`
//! are taken from the model's declared input shape when [`Config::input_spec`] validates the
//! configuration against a model, before any work starts.
//!
//! # Format
//! ```toml
//! [input]
//! size = [28, 28]                # height, width the model expects (default: from the model)
//! channels = 1                   # 1 = grayscale, 3 = RGB (default: from the model)
//! layout = "nchw"                # or "nhwc" (default: from the model's input shape)
//! scale = 0.00392156862745098    # pixel (0..255) * scale, then (x - mean) / std per channel
//! mean = [0.0]                   # one value, or one per channel
//! std = [1.0]
//! resize = "stretch"             # or "center-crop", "pad"
//!
//! [task]
//! kind = "classification"        # or "regression"
//! output = "logits"              # which model output to use when there are several
//! classes = ["t-shirt", "trouser"]   # logit order; default: sorted class-folder names
//! # regression: loss = "mse" | "mean-keypoint-distance", threshold = 4.0, targets = ["x", "y"]
//!
//! [run]
//! batch_size = 64
//! seed = 0
//! parallelism = "batches"        # or "engine" (needs the `tract-threads` feature)
//! ```
//! ```
//! let cfg = hudd_core::Config::from_toml_str("[run]\nbatch_size = 8\n").unwrap();
//! assert_eq!(cfg.run.batch_size, 8);
//! assert_eq!(cfg.task.kind, hudd_core::config::TaskKind::Classification);
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{Dim, ModelInfo};

/// The whole configuration (`hudd.toml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// How images become the model's input tensor.
    pub input: InputConfig,
    /// What the model computes and how its output is judged.
    pub task: TaskConfig,
    /// Batch size, threads and seed.
    pub run: RunConfig,
}

/// `[input]`: preprocessing. Unset fields are read off the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// `[height, width]` in pixels.
    pub size: Option<[usize; 2]>,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: Option<usize>,
    /// Axis order of the input tensor.
    pub layout: Option<Layout>,
    /// Factor applied to 0..255 pixel values before mean/std.
    pub scale: f32,
    /// Per-channel mean subtracted after scaling (one value applies to every channel).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation divided by after the mean.
    pub std: Vec<f32>,
    /// What to do with images of another size.
    pub resize: ResizeMode,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            size: None,
            channels: None,
            layout: None,
            scale: 1.0 / 255.0,
            mean: vec![0.0],
            std: vec![1.0],
            resize: ResizeMode::Stretch,
        }
    }
}

/// Axis order of an image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Batch, channels, height, width (PyTorch).
    Nchw,
    /// Batch, height, width, channels (TensorFlow/Keras, TFLite).
    Nhwc,
}

/// How an image of another size is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Resize to exactly the input size (aspect ratio may change).
    Stretch,
    /// Scale so the image covers the input, then cut the centre.
    CenterCrop,
    /// Scale so the image fits inside the input, then pad with black.
    Pad,
}

/// `[task]`: what the model computes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Classification or regression.
    pub kind: TaskKind,
    /// Name of the model output to use; needed only when the model has several.
    pub output: Option<String>,
    /// Class names in logit order; default: sorted class-folder names.
    pub classes: Option<Vec<String>>,
    /// Regression loss that decides Correct/Wrong.
    pub loss: RegressionLoss,
    /// Regression: an image is Wrong when its loss exceeds this.
    pub threshold: f32,
    /// Regression: manifest columns that hold the targets, in output order. Default: the `label`
    /// column, holding the targets separated by spaces.
    pub targets: Option<Vec<String>>,
}

impl TaskConfig {
    /// The index of the model output that is evaluated and explained: `[task] output`, or the
    /// only output.
    pub fn output_index(&self, info: &crate::model::ModelInfo) -> Result<usize> {
        let outputs = &info.outputs;
        let names = || outputs.iter().map(|o| format!("`{}`", o.name)).collect::<Vec<_>>().join(", ");
        match &self.output {
            Some(name) => outputs.iter().position(|o| &o.name == name).ok_or_else(|| {
                Error::Config(format!(
                    "`[task] output = \"{name}\"` is not an output of the model (outputs: {})",
                    names()
                ))
            }),
            None if outputs.len() == 1 => Ok(0),
            None => Err(Error::Config(format!(
                "the model has {} outputs ({}); choose one with `[task] output` or `--set task.output=NAME`",
                outputs.len(),
                names()
            ))),
        }
    }
}

impl Default for TaskConfig {
    fn default() -> Self {
        TaskConfig {
            kind: TaskKind::Classification,
            output: None,
            classes: None,
            loss: RegressionLoss::Mse,
            threshold: 4.0,
            targets: None,
        }
    }
}

/// The kind of model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    /// One logit per class; Wrong when the arg-max differs from the label.
    Classification,
    /// Real-valued outputs; Wrong when the loss exceeds `threshold`.
    Regression,
}

/// Loss of a regression model, per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegressionLoss {
    /// Mean squared error over all outputs.
    Mse,
    /// Outputs are (x, y) pairs; mean Euclidean distance between predicted and true points
    /// (HUDD's keypoint error, in pixels).
    MeanKeypointDistance,
}

/// `[run]`: execution settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Images per model run.
    pub batch_size: usize,
    /// Seed of every random choice; recorded in every output.
    pub seed: u64,
    /// How the cores are used.
    pub parallelism: Parallelism,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig { batch_size: 64, seed: 0, parallelism: Parallelism::Batches }
    }
}

/// How inference uses the cores (the worker pool's size is the caller's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parallelism {
    /// Batches run in parallel, each on one core. Fastest for small CNNs (see BENCHMARKS.md).
    Batches,
    /// Batches run one after another and the engine spreads each matrix product over the cores:
    /// less memory for large models. Needs hudd built with the `tract-threads` feature.
    Engine,
}

/// The fully resolved preprocessing, validated against the model: what [`crate::input`] needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// 1 or 3.
    pub channels: usize,
    /// Axis order.
    pub layout: Layout,
    /// Pixel scale factor.
    pub scale: f32,
    /// Mean per channel (length `channels`).
    pub mean: Vec<f32>,
    /// Standard deviation per channel (length `channels`).
    pub std: Vec<f32>,
    /// Resize mode.
    pub resize: ResizeMode,
}

impl InputSpec {
    /// Shape of one image's tensor without the batch axis.
    pub fn image_shape(&self) -> [usize; 3] {
        match self.layout {
            Layout::Nchw => [self.channels, self.height, self.width],
            Layout::Nhwc => [self.height, self.width, self.channels],
        }
    }

    /// Shape of a batch of `n` images.
    pub fn batch_shape(&self, n: usize) -> [usize; 4] {
        let [a, b, c] = self.image_shape();
        [n, a, b, c]
    }

    /// What the relevance needs to know about the input: the image tensor's shape and each
    /// channel's lowest and highest value after preprocessing (pixels 0 and 255).
    pub fn domain(&self) -> crate::relevance::InputDomain {
        let bound =
            |pixel: f32| (0..self.channels).map(|c| (pixel * self.scale - self.mean[c]) / self.std[c]).collect();
        crate::relevance::InputDomain { image_shape: self.image_shape().to_vec(), low: bound(0.0), high: bound(255.0) }
    }
}

impl Config {
    /// Parses a configuration from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Config> {
        toml::from_str(text).map_err(|e| Error::ConfigSyntax { path: "<text>".into(), reason: e.to_string() })
    }

    /// Loads `path` (or the defaults when `None`) and applies `overrides`, each
    /// `dotted.key=value` with a TOML value (`run.batch_size=32`, `input.layout="nhwc"`; a bare
    /// word is taken as a string).
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config> {
        let (mut table, shown): (toml::Table, std::path::PathBuf) = match path {
            Some(p) => {
                let text = crate::fsio::read_to_string(p).map_err(|e| Error::io("cannot read configuration", p, e))?;
                let t = text
                    .parse::<toml::Table>()
                    .map_err(|e| Error::ConfigSyntax { path: p.to_path_buf(), reason: e.to_string() })?;
                (t, p.to_path_buf())
            }
            None => (toml::Table::new(), "<defaults>".into()),
        };
        let from_file = table.clone();
        for ov in overrides {
            apply_override(&mut table, ov)?;
        }
        Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            // Blame what is wrong: the file, unless it reads without the overrides.
            if !overrides.is_empty() && Config::deserialize(toml::Value::Table(from_file)).is_ok() {
                let shown: Vec<String> = overrides.iter().map(|o| format!("`--set {o}`")).collect();
                Error::Config(format!("{}: {}", shown.join(", "), e.message().trim()))
            } else {
                Error::ConfigSyntax { path: shown, reason: e.to_string() }
            }
        })
    }

    /// Checks the configuration and resolves `[input]` against the model's declared input, so that
    /// a contradiction (wrong size, channel count, layout) is reported before any work.
    pub fn input_spec(&self, model: &ModelInfo) -> Result<InputSpec> {
        let input = model.inputs.first().ok_or_else(|| Error::Config("the model declares no input".into()))?;
        let cfg = &self.input;
        if self.run.batch_size == 0 {
            return Err(Error::Config("`[run] batch_size` must be at least 1".into()));
        }
        if input.shape.len() != 4 {
            return Err(Error::Config(format!(
                "model input `{}` has rank {} (shape {}); hudd analyses image models with a 4-D input \
                 (N,C,H,W or N,H,W,C)",
                input.name,
                input.shape.len(),
                Dim::display(&input.shape)
            )));
        }
        let fixed = |i: usize| input.shape[i].fixed();
        let layout = match cfg.layout {
            Some(l) => l,
            None => match (fixed(1), fixed(3)) {
                (Some(1 | 3), Some(c)) if c != 1 && c != 3 => Layout::Nchw,
                (Some(c), Some(1 | 3)) if c != 1 && c != 3 => Layout::Nhwc,
                (Some(1 | 3), None) => Layout::Nchw,
                (None, Some(1 | 3)) => Layout::Nhwc,
                _ => Layout::Nchw,
            },
        };
        let (c_ax, h_ax, w_ax) = match layout {
            Layout::Nchw => (1, 2, 3),
            Layout::Nhwc => (3, 1, 2),
        };
        let declared = |ax: usize, what: &str, configured: Option<usize>| -> Result<usize> {
            match (fixed(ax), configured) {
                (Some(m), Some(c)) if m != c => Err(Error::Config(format!(
                    "`[input]` says {what} = {c} but model input `{}` has shape {} ({} layout: {what} = {m}); \
                     fix `[input]` (layout, size, channels) to match the model",
                    input.name,
                    Dim::display(&input.shape),
                    layout_name(layout)
                ))),
                (_, Some(c)) => Ok(c),
                (Some(m), None) => Ok(m),
                (None, None) => Err(Error::Config(format!(
                    "model input `{}` has a dynamic {what} ({}); set it in `[input]`",
                    input.name,
                    Dim::display(&input.shape)
                ))),
            }
        };
        let channels = declared(c_ax, "channels", cfg.channels)?;
        let height = declared(h_ax, "height", cfg.size.map(|s| s[0]))?;
        let width = declared(w_ax, "width", cfg.size.map(|s| s[1]))?;
        if channels != 1 && channels != 3 {
            return Err(Error::Config(format!(
                "model input `{}` has {channels} channels in {} layout (shape {}); hudd reads grayscale (1) \
                 or RGB (3) images — if the model is NHWC set `[input] layout = \"nhwc\"`",
                input.name,
                layout_name(layout),
                Dim::display(&input.shape)
            )));
        }
        if height == 0 || width == 0 {
            return Err(Error::Config("`[input] size` must be positive".into()));
        }
        let per_channel = |v: &[f32], what: &str| -> Result<Vec<f32>> {
            match v.len() {
                1 => Ok(vec![v[0]; channels]),
                n if n == channels => Ok(v.to_vec()),
                n => Err(Error::Config(format!(
                    "`[input] {what}` has {n} values; give 1 or one per channel ({channels})"
                ))),
            }
        };
        let mean = per_channel(&cfg.mean, "mean")?;
        let std = per_channel(&cfg.std, "std")?;
        let show = |v: &[f32]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ");
        if !cfg.scale.is_finite() || cfg.scale <= 0.0 {
            return Err(Error::Config(format!(
                "`[input] scale = {}` must be a positive finite number (pixels 0..255 are multiplied by it; \
                 1/255 maps them to 0..1)",
                cfg.scale
            )));
        }
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::Config(format!("`[input] mean = [{}]` must hold finite numbers", show(&mean))));
        }
        if std.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(Error::Config(format!(
                "`[input] std = [{}]` must hold positive finite numbers (the per-channel standard deviations)",
                show(&std)
            )));
        }
        let elements = channels.saturating_mul(height).saturating_mul(width);
        if elements > MAX_IMAGE_ELEMENTS {
            return Err(Error::Config(format!(
                "the model input is {channels} × {height} × {width} = {elements} values per image \
                 ({:.1} GB as f32); hudd accepts at most {MAX_IMAGE_ELEMENTS} ({} MB) — check `[input] size` \
                 and the model's declared input",
                elements as f64 * 4e-9,
                MAX_IMAGE_ELEMENTS * 4 / 1_000_000
            )));
        }
        Ok(InputSpec { height, width, channels, layout, scale: cfg.scale, mean, std, resize: cfg.resize })
    }
}

/// The most values one input image may have: 64 Mi (256 MB as f32, e.g. 3 × 4096 × 5461). A
/// larger declared input is almost always a mistake (a dynamic size filled in wrongly).
pub const MAX_IMAGE_ELEMENTS: usize = 64 << 20;

fn layout_name(l: Layout) -> &'static str {
    match l {
        Layout::Nchw => "NCHW",
        Layout::Nhwc => "NHWC",
    }
}

fn apply_override(table: &mut toml::Table, ov: &str) -> Result<()> {
    let bad = |why: &str| Error::Config(format!("override `{ov}`: {why}; write it as section.key=value"));
    let (key, raw) = ov.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.len() != 2 || path.iter().any(|p| p.is_empty()) {
        return Err(bad("the key must be `section.key`"));
    }
    let raw = raw.trim();
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").ok_or_else(|| bad("empty value"))?,
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let section = table.entry(path[0].to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let section = section.as_table_mut().ok_or_else(|| bad("that section is not a table"))?;
    section.insert(path[1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ElemType, TensorInfo};

    fn info(shape: &[Option<usize>]) -> ModelInfo {
        ModelInfo {
            inputs: vec![TensorInfo {
                name: "x".into(),
                shape: shape.iter().map(|d| d.map(Dim::Fixed).unwrap_or_else(|| Dim::Symbolic("N".into()))).collect(),
                elem_type: ElemType::F32,
            }],
            outputs: vec![],
        }
    }

    #[test]
    fn defaults_are_read_off_the_model() {
        let spec = Config::default().input_spec(&info(&[None, Some(1), Some(28), Some(28)])).unwrap();
        assert_eq!((spec.channels, spec.height, spec.width, spec.layout), (1, 28, 28, Layout::Nchw));
        assert_eq!(spec.mean, vec![0.0]);
        let nhwc = Config::default().input_spec(&info(&[None, Some(32), Some(32), Some(3)])).unwrap();
        assert_eq!((nhwc.channels, nhwc.layout), (3, Layout::Nhwc));
        assert_eq!(nhwc.mean.len(), 3);
    }

    #[test]
    fn size_contradicting_the_model_is_an_error_naming_both() {
        let cfg = Config::from_toml_str("[input]\nsize = [32, 32]\n").unwrap();
        let err = cfg.input_spec(&info(&[None, Some(1), Some(28), Some(28)])).unwrap_err().to_string();
        assert!(err.contains("height = 32") && err.contains("height = 28"), "{err}");
    }

    #[test]
    fn wrong_layout_is_explained() {
        let cfg = Config::from_toml_str("[input]\nlayout = \"nchw\"\n").unwrap();
        let err = cfg.input_spec(&info(&[None, Some(28), Some(28), Some(1)])).unwrap_err().to_string();
        assert!(err.contains("nhwc"), "{err}");
    }

    #[test]
    fn mean_length_must_match_channels() {
        let cfg = Config::from_toml_str("[input]\nmean = [0.1, 0.2]\n").unwrap();
        assert!(cfg.input_spec(&info(&[None, Some(3), Some(8), Some(8)])).is_err());
    }

    #[test]
    fn normalisation_must_be_finite_and_positive() {
        for (text, needle) in [
            ("[input]\nmean = [inf]\n", "mean = [inf]"),
            ("[input]\nmean = [nan]\n", "mean = [NaN]"),
            ("[input]\nstd = [-1.0]\n", "std = [-1]"),
            ("[input]\nstd = [0.0]\n", "std = [0]"),
            ("[input]\nscale = -1.0\n", "scale = -1"),
            ("[input]\nscale = 0.0\n", "scale = 0"),
        ] {
            let cfg = Config::from_toml_str(text).unwrap();
            let err = cfg.input_spec(&info(&[Some(1), Some(1), Some(28), Some(28)])).unwrap_err();
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn an_absurd_input_size_is_refused_before_any_allocation() {
        let err = Config::default().input_spec(&info(&[Some(1), Some(3), Some(100_000), Some(100_000)])).unwrap_err();
        assert!(err.to_string().contains("30000000000 values per image"), "{err}");
        assert!(Config::default().input_spec(&info(&[Some(1), Some(3), Some(1024), Some(1024)])).is_ok());
    }

    #[test]
    fn a_bad_override_is_blamed_not_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hudd.toml");
        std::fs::write(&p, "[input]\nlayout = \"nchw\"\n").unwrap();
        let err = Config::load(Some(&p), &["input.layuot=nhwc".into()]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`--set input.layuot=nhwc`") && text.contains("layuot"), "{text}");
        assert!(!text.contains("hudd.toml"), "{text}");
        std::fs::write(&p, "[input]\nlayuot = \"nchw\"\n").unwrap();
        let err = Config::load(Some(&p), &["run.batch_size=8".into()]).unwrap_err();
        assert!(err.to_string().contains("hudd.toml"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Config::from_toml_str("[input]\nsise = [1, 2]\n").unwrap_err().to_string();
        assert!(err.contains("sise"), "{err}");
    }

    #[test]
    fn overrides_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hudd.toml");
        std::fs::write(&p, "[run]\nbatch_size = 8\n[input]\nlayout = \"nchw\"\n").unwrap();
        let cfg = Config::load(Some(&p), &["run.batch_size=3".into(), "input.layout=nhwc".into()]).unwrap();
        assert_eq!(cfg.run.batch_size, 3);
        assert_eq!(cfg.input.layout, Some(Layout::Nhwc));
        assert!(Config::load(None, &["batch_size=3".into()]).is_err());
        assert!(Config::load(None, &["run.batch_size=\"x\"".into()]).is_err());
    }
}
