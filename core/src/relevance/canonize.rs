//! Canonizers: the graph rewrites made before any rule is chosen, as Zennit's canonizers make them
//! on a PyTorch model. Propagation ([`super::program`]) never looks at the graph again.
//!
//! - [`fold_affine`]: the chain of per-channel affine nodes after a convolution or dense layer —
//!   `BatchNormalization`, and `Mul`/`Div`/`Add`/`Sub` by a constant that is the same for every
//!   position of a channel (batch norm and Keras' `Normalization`/`Rescaling` as tf2onnx writes
//!   them, a `MatMul`'s bias) — is merged into the layer's weight and bias (Zennit's
//!   `SequentialMergeBatchNorm`, extended to the written-out forms): `W' = W·s`, `b' = b·s + t`.
//!   The merged nodes' outputs carry the layer's relevance. The chain may pass through one
//!   `Transpose` (tf2onnx's way back to NHWC after a convolution): the transpose stays as a step
//!   after the merged layer, and carries the outputs of the nodes merged behind it.
//! - [`product_rule`]: a `Mul` of two activations where one is a gate (its producer a `Sigmoid` or
//!   `HardSigmoid`, a `Clip` with both bounds shifted and scaled by scalars — tf2onnx's Keras
//!   hard sigmoid —, or an `Erf` so shifted and scaled — exact GELU written out: squeeze-excitation,
//!   SiLU/Swish written as x·σ(x), hard-swish, GELU) is a signal-only gate; a
//!   `Div` of two activations holds the divisor constant (all relevance to the dividend).

use ndarray::{Array1, ArrayD, Axis};

use super::linear::Weights;
use super::program::{unsupported, weight_f32, Ctx, StepKind};
use super::routing::ProductRule;
use crate::error::Result;
use crate::model::{Activation, Bound, Node, Op, Weight};

/// What one folded node did to the layer.
enum Affine {
    /// Scale each output channel (`Mul`, `Div`).
    Scale(Vec<f32>),
    /// Shift each output channel (`Add`, `Sub`).
    Shift(Vec<f32>),
}

/// A node [`fold_affine`] merged into a layer.
pub(super) enum Folded<'g> {
    /// A per-channel affine node, merged into the layer's weight and bias.
    Affine(&'g Node),
    /// A `Transpose` the chain passes through (tf2onnx's NCHW → NHWC after each convolution): it
    /// stays, after the merged layer; the affine nodes behind it are merged all the same.
    Through(&'g Node),
}

/// Merges the per-channel affine nodes that follow the linear layer of `kind` (output `output`)
/// into its parameters, for as long as each is the only reader of the tensor before it and that
/// tensor is no graph output; a convolution's chain may pass through one `Transpose` when an
/// affine node follows it. Returns the folded nodes, in order (empty: nothing merged).
pub(super) fn fold_affine<'g>(kind: &mut StepKind, node: &Node, output: &str, c: &Ctx<'g>) -> Result<Vec<Folded<'g>>> {
    let mut folded = Vec::new();
    let mut current = output.to_string();
    // The channel axis of `current`, when a transpose moved it (a convolution's output: axis 1).
    let mut axis = None;
    loop {
        let readers = c.graph.consumers_of(&current);
        if readers.len() != 1 || c.graph.outputs.iter().any(|o| o.name == current) {
            break;
        }
        let next = readers[0];
        if let (Op::Transpose { perm: Some(perm) }, StepKind::Conv(..), None) = (&next.op, &*kind, axis) {
            let moved = perm.iter().position(|&p| p == 1);
            let beyond = c.graph.consumers_of(&next.outputs[0]);
            let merges = beyond.len() == 1
                && !c.graph.outputs.iter().any(|o| o.name == next.outputs[0])
                && per_channel(kind, node, beyond[0], &next.outputs[0], moved, c).is_some();
            if perm.len() != 4 || moved.is_none() || !merges {
                break;
            }
            axis = moved;
            folded.push(Folded::Through(next));
            current = next.outputs[0].clone();
            continue;
        }
        let merged = match next.op {
            Op::BatchNormalization { epsilon } if axis.is_none() => merge_batch_norm(kind, next, epsilon, c)?,
            // A `MatMul` followed by the bias `Add` is one dense layer (the existing exporters' form).
            Op::Add | Op::Sub | Op::Mul | Op::Div => match per_channel(kind, node, next, &current, axis, c) {
                Some(Affine::Scale(s)) => scale_outputs(kind, &s, None),
                Some(Affine::Shift(t)) => shift_outputs(kind, &t),
                None => false,
            },
            _ => false,
        };
        if !merged {
            break;
        }
        folded.push(Folded::Affine(next));
        current = next.outputs[0].clone();
    }
    Ok(folded)
}

/// The per-output-channel values of `next`'s constant operand, when `next` applies the same
/// affine change to every position of a channel of `current` (the layer's output, its channel
/// moved to `moved` by a transpose).
fn per_channel(
    kind: &StepKind,
    node: &Node,
    next: &Node,
    current: &str,
    moved: Option<usize>,
    c: &Ctx<'_>,
) -> Option<Affine> {
    let channels = out_channels(kind)?;
    // The channel axis of the layer's output: axis 1 of a convolution's or a dense layer's; a
    // `MatMul` may run on more than two axes, its channel is the trailing one.
    let (rank, axis) = match kind {
        StepKind::Conv(..) => (4, Some(moved.unwrap_or(1))),
        _ if node.op == Op::MatMul => (0, None),
        _ => (2, Some(1)),
    };
    let [a, b] = [next.inputs.first()?, next.inputs.get(1)?];
    let (ours, other) = if a == current {
        (0, b)
    } else if b == current {
        (1, a)
    } else {
        return None;
    };
    // x − t and x / s only: t − x and s / x are not affine in x with a positive orientation.
    if ours == 1 && matches!(next.op, Op::Sub | Op::Div) {
        return None;
    }
    let Some(Weight::F32(w)) = c.graph.weight(other) else { return None };
    let values = channel_values(w, rank, axis, channels)?;
    Some(match next.op {
        Op::Mul => Affine::Scale(values),
        Op::Div => {
            if values.contains(&0.0) {
                return None;
            }
            Affine::Scale(values.iter().map(|v| 1.0 / v).collect())
        }
        Op::Add => Affine::Shift(values),
        Op::Sub => Affine::Shift(values.iter().map(|v| -v).collect()),
        _ => return None,
    })
}

/// `w`'s value per channel when it broadcasts against an output of `rank` axes with `channels` on
/// axis `axis` (rank 0: any rank, `axis` None: the channel last) and is constant along every other
/// axis; `None` otherwise.
fn channel_values(w: &ArrayD<f32>, rank: usize, axis: Option<usize>, channels: usize) -> Option<Vec<f32>> {
    let shape = w.shape();
    let channel_axis = match (rank, axis) {
        (0, _) | (_, None) => shape.len().checked_sub(1),
        // Right-aligned broadcasting: the output's axis `a` is `w`'s axis `a − (rank − w.ndim)`.
        (r, Some(a)) if shape.len() <= r => (a + shape.len()).checked_sub(r),
        _ => return None,
    };
    // Every axis but the channel axis has size 1 (after the left padding of broadcasting).
    for (i, &d) in shape.iter().enumerate() {
        if Some(i) != channel_axis && d != 1 {
            return None;
        }
    }
    let n = channel_axis.and_then(|ax| shape.get(ax)).copied().unwrap_or(1);
    let flat: Vec<f32> = w.iter().copied().collect();
    match n {
        1 => Some(vec![flat.first().copied().unwrap_or(0.0); channels]),
        n if n == channels => Some(flat),
        _ => None,
    }
}

fn merge_batch_norm(kind: &mut StepKind, bn: &Node, eps: f32, c: &Ctx<'_>) -> Result<bool> {
    let get = |ix: usize| -> Result<Vec<f32>> {
        Ok(weight_f32(c, bn, ix)?.ok_or_else(|| unsupported(c, bn, "missing statistics"))?.iter().copied().collect())
    };
    let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
    let scale: Vec<f32> = gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
    // Statistics of another channel count: not this layer's batch norm (nothing is changed).
    if [beta.len(), mean.len()].iter().any(|&n| n != scale.len()) || out_channels(kind) != Some(scale.len()) {
        return Ok(false);
    }
    // (x − mean)·s + beta: a shift by −mean, a scale, then a shift by beta.
    Ok(shift_outputs(kind, &mean.iter().map(|m| -m).collect::<Vec<_>>()) && scale_outputs(kind, &scale, Some(&beta)))
}

/// The output channels of a dense or convolution step.
fn out_channels(kind: &StepKind) -> Option<usize> {
    match kind {
        StepKind::Dense(p) => Some(p.weight.nrows()),
        StepKind::Conv(_, p) => Some(p.weight.shape()[0]),
        _ => None,
    }
}

/// `W ← s·W`, `b ← b·s (+ shift)` per output channel; false (nothing changed) when the channel
/// counts differ.
fn scale_outputs(kind: &mut StepKind, scale: &[f32], shift: Option<&[f32]>) -> bool {
    fn apply<D: ndarray::Dimension + ndarray::RemoveAxis>(
        p: &mut Weights<D>,
        scale: &[f32],
        shift: Option<&[f32]>,
    ) -> bool {
        if p.weight.shape()[0] != scale.len() || shift.is_some_and(|t| t.len() != scale.len()) {
            return false;
        }
        for (o, mut row) in p.weight.axis_iter_mut(Axis(0)).enumerate() {
            row *= scale[o];
        }
        p.bias = match (&p.bias, shift) {
            (None, None) => None,
            (b, t) => Some(Array1::from_iter(
                (0..scale.len()).map(|o| b.as_ref().map_or(0.0, |b| b[o]) * scale[o] + t.map_or(0.0, |t| t[o])),
            )),
        };
        true
    }
    match kind {
        StepKind::Dense(p) => apply(p, scale, shift),
        StepKind::Conv(_, p) => apply(p, scale, shift),
        _ => false,
    }
}

/// `b ← b + t` per output channel; false when the channel counts differ.
fn shift_outputs(kind: &mut StepKind, shift: &[f32]) -> bool {
    fn apply<D: ndarray::Dimension>(p: &mut Weights<D>, shift: &[f32]) -> bool {
        if p.weight.shape()[0] != shift.len() {
            return false;
        }
        let b0 = p.bias.clone().unwrap_or_else(|| Array1::zeros(shift.len()));
        p.bias = Some(Array1::from_iter((0..shift.len()).map(|o| b0[o] + shift[o])));
        true
    }
    match kind {
        StepKind::Dense(p) => apply(p, shift),
        StepKind::Conv(_, p) => apply(p, shift),
        _ => false,
    }
}

/// Whether `tensor` is a gate: the output of a sigmoid, a hard sigmoid, a hard sigmoid written
/// out (a `Clip` with both bounds, then shifted and scaled by scalars: tf2onnx's Keras
/// `hard_sigmoid`, `relu6(x + 3) / 6`), or a shifted and scaled `erf` (exact GELU written out,
/// `x · (1 + erf(x / √2)) · 0.5`: its Φ(x) is the gate, as σ(x) is SiLU's).
fn is_gate(c: &Ctx<'_>, tensor: &str) -> bool {
    let mut tensor = tensor;
    // Each step moves to an earlier node: the walk ends.
    while let Some(p) = c.graph.producer_of(tensor) {
        match p.op {
            Op::Activation(Activation::Sigmoid | Activation::HardSigmoid { .. } | Activation::Erf) => return true,
            Op::Activation(Activation::Clip { min, max }) => {
                return matches!((min, max), (Bound::At(_), Bound::At(_)));
            }
            Op::Mul | Op::Div | Op::Add | Op::Sub if p.inputs.len() == 2 => {
                let scalar = |name: &str| matches!(c.graph.weight(name), Some(Weight::F32(k)) if k.len() == 1);
                tensor = if scalar(&p.inputs[1]) {
                    &p.inputs[0]
                } else if scalar(&p.inputs[0]) && matches!(p.op, Op::Mul | Op::Add) {
                    &p.inputs[1]
                } else {
                    return false;
                };
            }
            _ => return false,
        }
    }
    false
}

/// Whether the scalar `Mul`/`Div` `node` scales a gated product — its activation is the output of
/// a product with a gate, or its output is the signal of one (the only reader): the factor then
/// belongs to the gate, `(x·g)·k = x·(k·g)`, and relevance passes through it. Exact GELU as the
/// exporters write it out is such a product: `(x · (1 + erf(x/√2))) · 0.5` (TorchScript) or
/// `(0.5 · x) · (1 + erf(x/√2))` (tf2onnx); without this, the `0.5` would halve the relevance that
/// the `Gelu` op passes on whole.
pub(super) fn scales_a_gate(c: &Ctx<'_>, node: &Node, activation: &str) -> bool {
    let gated = |product: &Node| {
        product.op == Op::Mul
            && product.inputs.len() == 2
            && product.inputs.iter().all(|i| c.data.contains(i))
            && matches!(product_rule(c, product), ProductRule::Signal(_))
    };
    if c.graph.producer_of(activation).is_some_and(gated) {
        return true;
    }
    match c.graph.consumers_of(&node.outputs[0])[..] {
        [reader] if gated(reader) => {
            let other = reader.inputs.iter().find(|i| **i != node.outputs[0]);
            other.is_some_and(|g| is_gate(c, g))
        }
        _ => false,
    }
}

/// How a `Mul` or `Div` of two activations (`node`) shares its relevance: a `Mul` with exactly one
/// gate operand gives everything to the other (signal-only gate), a `Div` holds its divisor
/// constant, any other product shares evenly (uniform rule).
pub(super) fn product_rule(c: &Ctx<'_>, node: &Node) -> ProductRule {
    if node.op == Op::Div {
        return ProductRule::Signal(0);
    }
    match (is_gate(c, &node.inputs[0]), is_gate(c, &node.inputs[1])) {
        (false, true) => ProductRule::Signal(0),
        (true, false) => ProductRule::Signal(1),
        _ => ProductRule::Uniform,
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::*;

    fn arr(shape: &[usize], v: Vec<f32>) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    #[test]
    fn channel_values_accept_only_per_channel_constants() {
        // A convolution's output [N, 3, H, W].
        assert_eq!(channel_values(&arr(&[3, 1, 1], vec![1., 2., 3.]), 4, Some(1), 3), Some(vec![1., 2., 3.]));
        assert_eq!(channel_values(&arr(&[1, 3, 1, 1], vec![1., 2., 3.]), 4, Some(1), 3), Some(vec![1., 2., 3.]));
        assert_eq!(channel_values(&arr(&[], vec![2.]), 4, Some(1), 3), Some(vec![2.; 3]));
        assert_eq!(channel_values(&arr(&[1], vec![2.]), 4, Some(1), 3), Some(vec![2.; 3]));
        // [3] broadcasts over the width, not the channels; [1, 1, 1, 3] neither.
        assert_eq!(channel_values(&arr(&[3], vec![1., 2., 3.]), 4, Some(1), 3), None);
        assert_eq!(channel_values(&arr(&[1, 1, 1, 3], vec![1., 2., 3.]), 4, Some(1), 3), None);
        assert_eq!(channel_values(&arr(&[3, 2, 1], vec![0.; 6]), 4, Some(1), 3), None);
        // A dense layer's output [N, 3]; a MatMul's channel is its last axis at any rank.
        assert_eq!(channel_values(&arr(&[3], vec![1., 2., 3.]), 2, Some(1), 3), Some(vec![1., 2., 3.]));
        assert_eq!(channel_values(&arr(&[1, 3], vec![1., 2., 3.]), 2, Some(1), 3), Some(vec![1., 2., 3.]));
        assert_eq!(channel_values(&arr(&[1, 1, 3], vec![1., 2., 3.]), 0, None, 3), Some(vec![1., 2., 3.]));
        assert_eq!(channel_values(&arr(&[2], vec![1., 2.]), 2, Some(1), 3), None);
        // Behind a transpose to NHWC the channel is the last axis: [3] and [1, 1, 1, 3] fit.
        assert_eq!(channel_values(&arr(&[3], vec![1., 2., 3.]), 4, Some(3), 3), Some(vec![1., 2., 3.]));
        assert_eq!(channel_values(&arr(&[1, 1, 1, 3], vec![1., 2., 3.]), 4, Some(3), 3), Some(vec![1., 2., 3.]));
        assert_eq!(channel_values(&arr(&[1, 3, 1, 1], vec![1., 2., 3.]), 4, Some(3), 3), None);
    }

    #[test]
    fn folding_scales_and_shifts_each_output_channel() {
        let weight = arr(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).into_dimensionality().unwrap();
        let mut kind = StepKind::Dense(Weights { weight, bias: None });
        assert!(scale_outputs(&mut kind, &[2.0, -1.0], None));
        let StepKind::Dense(p) = &kind else { panic!() };
        assert_eq!(p.weight.row(1).to_vec(), [-4., -5., -6.]);
        assert!(p.bias.is_none(), "no bias appears from a scale alone");
        assert!(shift_outputs(&mut kind, &[0.5, 1.0]));
        assert!(scale_outputs(&mut kind, &[2.0, 3.0], Some(&[1.0, 0.0])));
        let StepKind::Dense(p) = &kind else { panic!() };
        assert_eq!(p.bias.as_ref().unwrap().to_vec(), [2.0, 3.0]);
        assert!(!scale_outputs(&mut kind, &[1.0; 3], None), "three channels do not fit two");
        assert!(!shift_outputs(&mut kind, &[1.0; 3]));
    }
}
