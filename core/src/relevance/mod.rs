//! Layer-wise relevance propagation (LRP), designed like Zennit: a [`Rule`] is a small value, one
//! propagation step per op family ([`LinearMap`] for dense and convolution layers), and presets map
//! layers to rules.
//!
//! This module is being built up stage by stage (issue 3): the rules and the linear op families
//! exist and are tested against their closed forms; the graph walk, presets and `hudd heatmaps`
//! follow.

pub mod linear;
pub mod rule;

pub use linear::{Conv2d, Dense, LinearMap, Params};
pub use rule::{stabilize, Rule};
