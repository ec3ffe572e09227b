//! Relevance through reductions and index ops (`ReduceMean`/`ReduceSum`/`ReduceMax`,
//! `GlobalMaxPool`, `Slice`, `Split`, `Gather`) and through element-wise products of two
//! activations.
//!
//! - A mean or a sum is a linear map without parameters ([`Reduce`]): it takes the Norm rule, as
//!   average pooling does in Zennit (`R_x = x ⊙ mapᵀ(R / stab(map(x)))`).
//! - A maximum routes each output's relevance to the first input position holding the maximum
//!   (winner takes all, as max pooling: [`max_relevance`]).
//! - Pure index ops route relevance back to the positions they read ([`scatter_axis`]), summing
//!   where one input position feeds several outputs: conservative, and equal to the gradient.
//! - A product of two activations ([`split_product`]) gives all relevance to the signal when the
//!   other operand is a gate (a sigmoid of a squeeze-excitation branch, or x·σ(x) written out):
//!   the signal-only gate of Pahde et al. (CVPRW 2023); otherwise half to each operand, AttnLRP's
//!   uniform rule (Achtibat et al., ICML 2024, Prop. 3.2).

use ndarray::{ArrayD, Axis, IxDyn};

use super::linear::{LinearMap, NoWeights};

/// A mean or a sum over some axes, the reduced axes kept with size 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reduce {
    /// The reduced axes (sorted, without repeats).
    pub axes: Vec<usize>,
    /// A mean (else a sum).
    pub mean: bool,
}

impl Reduce {
    fn count(&self, shape: &[usize]) -> usize {
        self.axes.iter().map(|&a| shape[a]).product::<usize>().max(1)
    }

    /// The output shape (reduced axes of size 1) for an input of `shape`.
    pub fn output_shape(&self, shape: &[usize]) -> Vec<usize> {
        shape.iter().enumerate().map(|(i, &d)| if self.axes.contains(&i) { 1 } else { d }).collect()
    }
}

impl LinearMap for Reduce {
    type Params = NoWeights;

    fn forward(&self, x: &ArrayD<f32>, _params: &NoWeights) -> ArrayD<f32> {
        let mut y = x.clone();
        for &a in &self.axes {
            y = y.sum_axis(Axis(a)).insert_axis(Axis(a));
        }
        if self.mean {
            y /= self.count(x.shape()) as f32;
        }
        y
    }

    fn backward(&self, s: &ArrayD<f32>, _params: &NoWeights, input_shape: &[usize]) -> ArrayD<f32> {
        let scale = if self.mean { 1.0 / self.count(input_shape) as f32 } else { 1.0 };
        let spread = s.broadcast(IxDyn(input_shape)).expect("the reduced shape broadcasts to the input's");
        spread.mapv(|v| v * scale)
    }
}

/// Linear interpolation's matrices as a map (`Resize` in linear mode).
impl LinearMap for crate::model::Matrices {
    type Params = NoWeights;

    fn forward(&self, x: &ArrayD<f32>, _params: &NoWeights) -> ArrayD<f32> {
        self.apply(x)
    }

    fn backward(&self, s: &ArrayD<f32>, _params: &NoWeights, _input_shape: &[usize]) -> ArrayD<f32> {
        self.apply_transposed(s)
    }
}

/// A constant factor broadcast over the input (a `Mul` or `Div` by a constant that no canonizer
/// folded into a layer): a diagonal linear map.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagonal {
    /// The factor, broadcastable to the input.
    pub factor: ArrayD<f32>,
}

impl LinearMap for Diagonal {
    type Params = NoWeights;

    fn forward(&self, x: &ArrayD<f32>, _params: &NoWeights) -> ArrayD<f32> {
        x * &self.factor
    }

    fn backward(&self, s: &ArrayD<f32>, _params: &NoWeights, input_shape: &[usize]) -> ArrayD<f32> {
        sum_to_shape(&(s * &self.factor), input_shape)
    }
}

/// Sums a broadcast result back to `shape` (leading axes dropped, axes of size 1 summed).
pub fn sum_to_shape(a: &ArrayD<f32>, shape: &[usize]) -> ArrayD<f32> {
    if a.shape() == shape {
        return a.clone();
    }
    let mut out = a.clone();
    while out.ndim() > shape.len() {
        out = out.sum_axis(Axis(0));
    }
    for (ax, &s) in shape.iter().enumerate() {
        if s == 1 && out.shape()[ax] != 1 {
            out = out.sum_axis(Axis(ax)).insert_axis(Axis(ax));
        }
    }
    out
}

/// Winner takes all over `axes`: each output's relevance (`r`, the reduced axes of size 1) goes
/// to the first position of its group in `x` that holds the group's maximum (NaN never wins).
pub fn max_relevance(x: &ArrayD<f32>, r: &ArrayD<f32>, axes: &[usize]) -> ArrayD<f32> {
    let rank = x.ndim();
    // Kept axes first, reduced axes last: one row per output value.
    let order: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).chain(axes.iter().copied()).collect();
    let kept: usize = (0..rank).filter(|a| !axes.contains(a)).map(|a| x.shape()[a]).product();
    let group = x.len() / kept.max(1);
    let xs = x.view().permuted_axes(IxDyn(&order)).as_standard_layout().into_owned();
    let rs = r.view().permuted_axes(IxDyn(&order)).as_standard_layout().into_owned();
    let (xv, rv) = (xs.as_slice().unwrap_or(&[]), rs.as_slice().unwrap_or(&[]));
    let mut out = vec![0.0f32; xs.len()];
    if group > 0 {
        for (row, (values, &rel)) in xv.chunks_exact(group).zip(rv).enumerate() {
            let mut best: Option<usize> = None;
            for (i, &v) in values.iter().enumerate() {
                if !v.is_nan() && best.is_none_or(|b| v > values[b]) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                out[row * group + b] = rel;
            }
        }
    }
    let permuted = ArrayD::from_shape_vec(xs.raw_dim(), out).expect("same size");
    let mut inverse = vec![0; rank];
    for (i, &o) in order.iter().enumerate() {
        inverse[o] = i;
    }
    permuted.permuted_axes(IxDyn(&inverse)).as_standard_layout().into_owned()
}

/// Routes `r` back through a gather along `axis`: entry `k` of `r` along `axis` came from index
/// `indices[k]` of an axis of length `len`. Entries read twice receive both shares.
pub fn scatter_axis(r: &ArrayD<f32>, axis: usize, len: usize, indices: &[usize]) -> ArrayD<f32> {
    let mut shape = r.shape().to_vec();
    shape[axis] = len;
    let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
    for (k, &i) in indices.iter().enumerate() {
        let mut lane = out.index_axis_mut(Axis(axis), i);
        lane += &r.index_axis(Axis(axis), k);
    }
    out
}

/// How a product of two activations shares its relevance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductRule {
    /// All relevance to the operand at this index; the other is a gate (signal-only gate).
    Signal(usize),
    /// Half to each operand (AttnLRP's uniform rule).
    Uniform,
}

/// The relevance of each operand of `a ⊙ b` (broadcasting) under `rule`: shaped like the
/// operands `shapes`.
pub fn split_product(r: &ArrayD<f32>, shapes: [&[usize]; 2], rule: ProductRule) -> [ArrayD<f32>; 2] {
    let share = |ix: usize, w: f32| {
        let part = if w == 1.0 { r.clone() } else { r * w };
        sum_to_shape(&part, shapes[ix])
    };
    match rule {
        ProductRule::Signal(s) => {
            let mut out = [ArrayD::zeros(IxDyn(shapes[0])), ArrayD::zeros(IxDyn(shapes[1]))];
            out[s] = share(s, 1.0);
            out
        }
        ProductRule::Uniform => [share(0, 0.5), share(1, 0.5)],
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn};

    use super::super::linear::tests::tensor;
    use super::super::rule::Rule;
    use super::*;

    #[test]
    fn a_mean_under_the_norm_rule_conserves_and_equals_global_average_pooling() {
        let x = tensor(&[2, 3, 4, 5], 7).mapv(|v| v.abs() + 0.1);
        let r = tensor(&[2, 3, 1, 1], 8);
        let rule = Rule::Norm { stabilizer: 1e-9 };
        let reduce = Reduce { axes: vec![2, 3], mean: true };
        let got = rule.propagate(&reduce, &x, &NoWeights, &r);
        let want = rule.propagate(&super::super::GlobalAvgPool, &x, &NoWeights, &r);
        assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0)));
        // Over other axes, sums included: relevance is conserved per output value.
        for (axes, mean) in [(vec![1], false), (vec![1, 3], true), (vec![0, 2], false)] {
            let map = Reduce { axes: axes.clone(), mean };
            let r = ArrayD::from_elem(IxDyn(&map.output_shape(x.shape())), 1.0);
            let got = rule.propagate(&map, &x, &NoWeights, &r);
            assert_eq!(got.shape(), x.shape());
            assert!((got.sum() - r.sum()).abs() < 1e-3, "{axes:?}: {} vs {}", got.sum(), r.sum());
        }
    }

    #[test]
    fn a_diagonal_map_conserves_relevance_and_sums_broadcast_factors() {
        let x = tensor(&[2, 3, 2, 2], 3).mapv(|v| v.abs() + 0.5);
        let factor = ArrayD::from_shape_vec(IxDyn(&[1, 3, 1, 1]), vec![2.0, -0.5, 4.0]).unwrap();
        let map = Diagonal { factor };
        let r = tensor(&[2, 3, 2, 2], 4);
        let got = Rule::Norm { stabilizer: 1e-9 }.propagate(&map, &x, &NoWeights, &r);
        assert!(got.iter().zip(&r).all(|(a, b)| (a - b).abs() < 1e-4), "each output has one input");
        let back = map.backward(&ArrayD::ones(IxDyn(&[2, 3, 2, 2])), &NoWeights, &[2, 3, 2, 2]);
        assert_eq!(back[[1, 2, 1, 0]], 4.0);
    }

    #[test]
    fn the_maximum_takes_all_relevance_and_the_first_tie_wins() {
        // Two groups of four (reduced over axis 1 of [2, 4]): maxima at 2 and at 0 (tie with 3).
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 4]), vec![1.0, f32::NAN, 3.0, -1.0, 5.0, 2.0, 0.0, 5.0]).unwrap();
        let r = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![0.7, -2.0]).unwrap();
        let got = max_relevance(&x, &r, &[1]);
        assert_eq!(got.iter().copied().collect::<Vec<_>>(), [0.0, 0.0, 0.7, 0.0, -2.0, 0.0, 0.0, 0.0]);
        // Over the spatial axes of [1, 2, 2, 2] (global max pooling), channel by channel.
        let x = tensor(&[1, 2, 2, 2], 5);
        let r = ArrayD::from_shape_vec(IxDyn(&[1, 2, 1, 1]), vec![1.0, 2.0]).unwrap();
        let got = max_relevance(&x, &r, &[2, 3]);
        for c in 0..2 {
            let plane = x.index_axis(Axis(1), c);
            let m = plane.iter().copied().fold(f32::MIN, f32::max);
            let at = plane.iter().position(|&v| v == m).unwrap();
            let g: Vec<f32> = got.index_axis(Axis(1), c).iter().copied().collect();
            assert_eq!(g.iter().filter(|v| **v != 0.0).count(), 1);
            assert_eq!(g[at], r[[0, c, 0, 0]]);
        }
    }

    #[test]
    fn gathered_entries_route_back_and_repeats_add_up() {
        let r = ArrayD::from_shape_vec(IxDyn(&[1, 3, 2]), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let got = scatter_axis(&r, 1, 4, &[3, 0, 3]);
        assert_eq!(got.shape(), [1, 4, 2]);
        assert_eq!(got.iter().copied().collect::<Vec<_>>(), [3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 6.0, 8.0]);
        assert_eq!(got.sum(), r.sum());
    }

    #[test]
    fn a_gate_gives_its_signal_everything_and_a_plain_product_shares_evenly() {
        let r = tensor(&[2, 3, 2, 2], 9);
        let [signal, gate] = split_product(&r, [&[2, 3, 2, 2], &[2, 3, 1, 1]], ProductRule::Signal(0));
        assert_eq!(signal, r);
        assert_eq!(gate.shape(), [2, 3, 1, 1]);
        assert!(gate.iter().all(|v| *v == 0.0));
        let [gate, signal] = split_product(&r, [&[2, 3, 1, 1], &[2, 3, 2, 2]], ProductRule::Signal(1));
        assert_eq!((signal, gate.sum()), (r.clone(), 0.0));
        let [a, b] = split_product(&r, [&[2, 3, 2, 2], &[2, 3, 1, 1]], ProductRule::Uniform);
        assert!((a.sum() + b.sum() - r.sum()).abs() < 1e-4);
        assert!((b[[1, 2, 0, 0]] - r.index_axis(Axis(0), 1).index_axis(Axis(0), 2).sum() / 2.0).abs() < 1e-5);
    }
}
