//! Stochastic gradient descent exactly as PyTorch's `torch.optim.SGD` (no dampening, no
//! Nesterov): `g ← ∇ + λ·w`; `b ← g` on the first step, else `b ← μ·b + g`; `w ← w − η·b`.

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use super::net::candle_err;
use crate::error::Result;

/// SGD's hyperparameters. The default is [`SgdParams::HUDD`], the original toolset's, which the
/// retraining study kept (BENCHMARKS.md, issue 33): lr 1e-2 gained more on Fashion-MNIST but made
/// the demo's retraining on HUDD's selection keep the unchanged model in 2 of 3 repeats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SgdParams {
    /// Learning rate η.
    pub lr: f64,
    /// Momentum μ (0: none).
    pub momentum: f64,
    /// L2 weight decay λ, added to the gradient.
    pub weight_decay: f64,
}

impl SgdParams {
    /// The original toolset's: lr 1e-3, momentum 0.9, weight decay 5e-4.
    pub const HUDD: SgdParams = SgdParams { lr: 1e-3, momentum: 0.9, weight_decay: 5e-4 };
}

impl Default for SgdParams {
    fn default() -> Self {
        SgdParams::HUDD
    }
}

/// The optimiser's state: one momentum buffer per variable.
#[derive(Debug)]
pub(crate) struct Sgd {
    params: SgdParams,
    buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub(crate) fn new(params: SgdParams, vars: usize) -> Sgd {
        Sgd { params, buffers: vec![None; vars] }
    }

    /// Updates every variable that has a gradient in `grads` (others keep their value and buffer,
    /// as in PyTorch, where a parameter without gradient is skipped).
    pub(crate) fn step(&mut self, vars: &[(String, Var)], grads: &GradStore) -> Result<()> {
        let SgdParams { lr, momentum, weight_decay } = self.params;
        for ((name, var), buffer) in vars.iter().zip(self.buffers.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let mut update = || -> candle_core::Result<()> {
                let w = var.as_tensor();
                let mut g = grad.clone();
                if weight_decay != 0.0 {
                    g = (g + w.affine(weight_decay, 0.0)?)?;
                }
                if momentum != 0.0 {
                    g = match buffer.take() {
                        None => g,
                        Some(b) => (b.affine(momentum, 0.0)? + g)?,
                    };
                    *buffer = Some(g.detach());
                }
                var.set(&(w - g.affine(lr, 0.0)?)?.detach())
            };
            update().map_err(|e| candle_err(name, e))?;
        }
        Ok(())
    }
}
