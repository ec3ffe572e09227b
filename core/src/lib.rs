//! # hudd-core — Heatmap-based Unsupervised Debugging of DNNs, as a library
//!
//! HUDD (Fahmy, Pastore, Bagherzadeh, Briand) explains why an image model fails: it computes
//! layer-wise relevance heatmaps for the test images the model gets wrong, clusters them into
//! root-cause clusters, and retrains the model on images that resemble each cluster.
//!
//! The pipeline, one module per stage:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | load | [`model`] | ONNX file → runnable model, graph as plain data, every activation |
//! | data | [`dataset`], [`input`] | splits, labels, metadata; images → tensors |
//! | test | [`evaluate`] | Correct/Wrong per image, HUDD's result files |
//! | relevance | [`relevance`], [`heatmaps`] | LRP rules and presets; per-layer heatmaps of images |
//! | distance | [`distance`] | Euclidean distance matrices of heatmaps |
//! | cluster | [`cluster`] | Ward linkage, k by knee, best layer, metadata explanations |
//! | root causes | [`analyze`], [`pictures`] | the whole run: cluster folders, GIFs, overlays, `run.json` |
//! | run folder | [`run`] | `RunDir`: the run folder's layout; `run.json` |
//! | unsafe set | [`assign`] | improvement images → clusters (HUDD's ClosestU), `RUN/unsafe/` |
//! | labels, balancing | [`bootstrap`] | the engineers' labels, HUDD's bootstrap balancing, `RUN/unsafe/balanced.csv` |
//! | sharding | [`shard`] | `--shard I/N`: a deterministic split of the images, shard folders, `hudd merge` |
//! | report | [`bundle`] | run folder → self-contained report bundle (schema: `hudd-report`); `verify` |
//!
//! The library prints nothing and keeps no global state: long stages report through a
//! [`Progress`] the caller provides, and every failure is an [`Error`] naming the file, node or
//! image concerned.
//!
//! ```
//! use hudd_core::{Config, Dataset, Evaluator, Model, progress::Silent};
//!
//! let model = Model::load("../models/fashion-mnist/fmnist_cnn.onnx")?;
//! let config = Config::load(Some("../models/fashion-mnist/hudd.toml".as_ref()), &[])?;
//! let data = Dataset::open("../tests/fixtures/fmnist".as_ref(), &config.task)?;
//! let evaluation = Evaluator::new(&model, &data, &config)?.run(&Silent)?;
//! let test = evaluation.split(hudd_core::Split::Test).unwrap();
//! assert!(test.accuracy() > 0.8);
//! # Ok::<(), hudd_core::Error>(())
//! ```
#![deny(missing_docs)]

pub mod analyze;
pub mod assign;
pub mod bootstrap;
pub mod bundle;
pub mod cluster;
pub mod config;
pub mod conv;
pub mod dataset;
pub mod distance;
pub mod error;
pub mod evaluate;
pub mod fsio;
pub mod heatmaps;
pub mod input;
mod matmul;
pub mod model;
pub mod npy;
pub mod pictures;
pub mod progress;
pub mod relevance;
pub mod retrain;
pub mod rng;
pub mod run;
pub mod schema;
pub mod selftest;
pub mod shard;

pub use config::Config;
pub use dataset::{Dataset, Split};
pub use error::{Error, Result};
pub use evaluate::{Evaluation, Evaluator};
pub use model::Model;
pub use progress::Progress;

/// The version of hudd, as recorded in every output.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
