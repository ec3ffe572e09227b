//! End-to-end tests of the `hudd` binary and the library on committed real fixtures
//! (Fashion-MNIST images, models exported by PyTorch and tf2onnx, onnxruntime reference outputs).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod analyze;
mod assign;
mod bad_input;
mod bundle;
mod cluster;
mod common;
mod demo;
mod evaluate;
mod families;
mod heatmaps;
mod hostile;
mod matrix;
mod model;
mod relevance;
mod resume;
mod retrain;
mod shard;
mod trust;
mod webdriver;
