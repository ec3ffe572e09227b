//! LRP rules as values, after Zennit's `BasicHook`: a rule is a list of groups, each a sum of
//! branches `(input modifier, parameter modifier, sign)`, an optional mask on the layer's original
//! output and a weight. One generic step ([`Rule::propagate`]) applies any rule to any
//! [`LinearMap`] (dense, convolution, pooling), so each op family has one propagation step and each
//! rule one definition.
//!
//! For a group with branches `i`:
//! ```text
//! z_i = sign_i · map(g_i(a); ρ_i(W), ρ_i(b))          forward with modified input and parameters
//! s   = mask ⊙ R / stab(Σ_i z_i)                       stab(z) = z + ε·(z ≥ 0 ? 1 : −1)
//! R_a = Σ_groups weight · Σ_i sign_i · g_i(a) ⊙ mapᵀ(s; ρ_i(W))
//! ```
//! `mapᵀ` is the transpose of the linear part (the gradient of `Σ map(x)·s` with respect to `x`).

use std::borrow::Cow;

use ndarray::{ArrayD, Axis, Zip};

use super::linear::{LinearMap, ParamMod, Params};
use crate::error::{Error, Result};

/// Zennit's stabiliser: `z + ε·sign0(z)` with `sign0(z) = 1` for `z ≥ 0`, else `−1`.
pub fn stabilize(z: f32, epsilon: f32) -> f32 {
    if z >= 0.0 {
        z + epsilon
    } else {
        z - epsilon
    }
}

/// An LRP rule. Construct with the named constructors, which validate parameters.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Rule {
    /// `R_in = R` — activations, and layers whose relevance passes through unchanged.
    Pass,
    /// LRP-ε (Bach 2015): `R_a = a ⊙ mapᵀ(R / stab_ε(aWᵀ + b))`; ε = 0 is LRP-0. Middle and upper layers.
    Epsilon {
        /// ε.
        epsilon: f32,
        /// Treat the bias as zero.
        zero_bias: bool,
    },
    /// z⁺ (α1β0, Montavon 2017), generalised to negative inputs as in Zennit: positive
    /// contributions only. Lower layers.
    ZPlus {
        /// Stabiliser ε.
        stabilizer: f32,
        /// Treat the bias as zero.
        zero_bias: bool,
    },
    /// αβ (Bach 2015): α times the positive and −β times the negative contributions, α − β = 1.
    AlphaBeta {
        /// α ≥ 1.
        alpha: f32,
        /// β = α − 1.
        beta: f32,
        /// Stabiliser ε.
        stabilizer: f32,
        /// Treat the bias as zero.
        zero_bias: bool,
    },
    /// γ (Montavon 2019), generalised as in Zennit: weights `W + γW⁺` favour positive contributions.
    /// Lower and middle layers.
    Gamma {
        /// γ ≥ 0.
        gamma: f32,
        /// Stabiliser ε.
        stabilizer: f32,
        /// Treat the bias as zero.
        zero_bias: bool,
    },
    /// z^B (Montavon 2017) for the input layer of bounded inputs: `low ≤ a ≤ high` per channel.
    ZBox {
        /// Lowest input value per channel (one value: every channel).
        low: Vec<f32>,
        /// Highest input value per channel.
        high: Vec<f32>,
        /// Stabiliser ε.
        stabilizer: f32,
    },
    /// Flat (Lapuschkin 2019): relevance spread uniformly over the receptive field.
    Flat {
        /// Stabiliser ε.
        stabilizer: f32,
    },
    /// w² (Montavon 2017): relevance spread in proportion to the squared weights; input layer of
    /// unbounded inputs.
    WSquare {
        /// Stabiliser ε.
        stabilizer: f32,
        /// Treat the bias as zero.
        zero_bias: bool,
    },
    /// Norm (Zennit): `R_a = a ⊙ mapᵀ(R / stab(map(a)))` for parameter-free linear ops (average
    /// pooling, sums).
    Norm {
        /// Stabiliser ε.
        stabilizer: f32,
    },
}

/// Zennit's default stabiliser.
pub const DEFAULT_STABILIZER: f32 = 1e-6;

impl Rule {
    /// LRP-ε with the bias included.
    pub fn epsilon(epsilon: f32) -> Rule {
        Rule::Epsilon { epsilon, zero_bias: false }
    }
    /// z⁺ with the bias included.
    pub fn zplus(stabilizer: f32) -> Rule {
        Rule::ZPlus { stabilizer, zero_bias: false }
    }
    /// αβ; rejects α − β ≠ 1 and negative values, as Zennit does.
    pub fn alpha_beta(alpha: f32, beta: f32) -> Result<Rule> {
        if alpha < 0.0 || beta < 0.0 || ((alpha - beta) - 1.0).abs() > 1e-6 {
            return Err(Error::Config(format!(
                "the αβ rule needs α, β ≥ 0 and α − β = 1 (got α = {alpha}, β = {beta})"
            )));
        }
        Ok(Rule::AlphaBeta { alpha, beta, stabilizer: DEFAULT_STABILIZER, zero_bias: false })
    }
    /// γ; rejects γ < 0.
    pub fn gamma(gamma: f32) -> Result<Rule> {
        if gamma < 0.0 || !gamma.is_finite() {
            return Err(Error::Config(format!("the γ rule needs γ ≥ 0 (got {gamma})")));
        }
        Ok(Rule::Gamma { gamma, stabilizer: DEFAULT_STABILIZER, zero_bias: false })
    }
    /// z^B with per-channel bounds; rejects `low > high`.
    pub fn zbox(low: Vec<f32>, high: Vec<f32>) -> Result<Rule> {
        if low.is_empty() || low.len() != high.len() || low.iter().zip(&high).any(|(l, h)| l > h) {
            return Err(Error::Config("the z^B rule needs as many low as high bounds, each low ≤ high".into()));
        }
        Ok(Rule::ZBox { low, high, stabilizer: DEFAULT_STABILIZER })
    }
    /// The same rule with the bias treated as zero (Zennit's `zero_params='bias'`).
    pub fn without_bias(self) -> Rule {
        match self {
            Rule::Epsilon { epsilon, .. } => Rule::Epsilon { epsilon, zero_bias: true },
            Rule::ZPlus { stabilizer, .. } => Rule::ZPlus { stabilizer, zero_bias: true },
            Rule::AlphaBeta { alpha, beta, stabilizer, .. } => {
                Rule::AlphaBeta { alpha, beta, stabilizer, zero_bias: true }
            }
            Rule::Gamma { gamma, stabilizer, .. } => Rule::Gamma { gamma, stabilizer, zero_bias: true },
            Rule::WSquare { stabilizer, .. } => Rule::WSquare { stabilizer, zero_bias: true },
            other => other,
        }
    }

    /// Short name with parameters, as recorded in outputs (`epsilon(1e-6)`).
    pub fn name(&self) -> String {
        match self {
            Rule::Pass => "pass".into(),
            Rule::Epsilon { epsilon, zero_bias } => format!("epsilon({epsilon}{})", nb(*zero_bias)),
            Rule::ZPlus { stabilizer, zero_bias } => format!("zplus({stabilizer}{})", nb(*zero_bias)),
            Rule::AlphaBeta { alpha, beta, zero_bias, .. } => format!("alpha{alpha}-beta{beta}{}", nb(*zero_bias)),
            Rule::Gamma { gamma, zero_bias, .. } => format!("gamma({gamma}{})", nb(*zero_bias)),
            Rule::ZBox { .. } => "zbox".into(),
            Rule::Flat { .. } => "flat".into(),
            Rule::WSquare { zero_bias, .. } => format!("wsquare{}", nb(*zero_bias)),
            Rule::Norm { .. } => "norm".into(),
        }
    }

    /// Number of modified linear passes the rule makes (each a forward and a transposed pass), plus
    /// one when it masks by the layer's original output.
    pub fn branch_count(&self) -> usize {
        let (groups, _) = self.groups();
        groups.iter().map(|g| g.branches.len()).sum::<usize>() + usize::from(groups.iter().any(|g| g.mask != Mask::All))
    }

    fn groups(&self) -> (Vec<Group>, f32) {
        use InputMod as I;
        use ParamMod as P;
        let b = |zero: bool, m: ParamMod| if zero { P::Zero } else { m };
        let br = |input, weight, bias| Branch { input, weight, bias, sign: 1.0 };
        match self {
            Rule::Pass => (Vec::new(), 0.0),
            Rule::Epsilon { epsilon, zero_bias } => {
                (vec![Group::all(vec![br(I::Identity, P::Identity, b(*zero_bias, P::Identity))], 1.0)], *epsilon)
            }
            Rule::Norm { stabilizer } => {
                (vec![Group::all(vec![br(I::Identity, P::Identity, P::Identity)], 1.0)], *stabilizer)
            }
            Rule::ZPlus { stabilizer, zero_bias } => (vec![plus_group(*zero_bias, 1.0)], *stabilizer),
            Rule::AlphaBeta { alpha, beta, stabilizer, zero_bias } => {
                let minus = Group::all(
                    vec![
                        br(I::Positive, P::Negative, b(*zero_bias, P::Negative)),
                        br(I::Negative, P::Positive, P::Zero),
                    ],
                    -beta,
                );
                (vec![plus_group(*zero_bias, *alpha), minus], *stabilizer)
            }
            Rule::Gamma { gamma, stabilizer, zero_bias } => {
                let (g, zb) = (*gamma, *zero_bias);
                let up = Group {
                    branches: vec![
                        br(I::Positive, P::GammaUp(g), b(zb, P::GammaUp(g))),
                        br(I::Negative, P::GammaDown(g), P::Zero),
                    ],
                    mask: Mask::Positive,
                    weight: 1.0,
                };
                let down = Group {
                    branches: vec![
                        br(I::Positive, P::GammaDown(g), b(zb, P::GammaDown(g))),
                        br(I::Negative, P::GammaUp(g), P::Zero),
                    ],
                    mask: Mask::Negative,
                    weight: 1.0,
                };
                (vec![up, down], *stabilizer)
            }
            Rule::ZBox { stabilizer, .. } => (
                vec![Group::all(
                    vec![
                        br(I::Identity, P::Identity, P::Identity),
                        Branch { input: I::Low, weight: P::Positive, bias: P::Positive, sign: -1.0 },
                        Branch { input: I::High, weight: P::Negative, bias: P::Negative, sign: -1.0 },
                    ],
                    1.0,
                )],
                *stabilizer,
            ),
            Rule::Flat { stabilizer } => (vec![Group::all(vec![br(I::Ones, P::Ones, P::Zero)], 1.0)], *stabilizer),
            Rule::WSquare { stabilizer, zero_bias } => {
                (vec![Group::all(vec![br(I::Ones, P::Square, b(*zero_bias, P::Square))], 1.0)], *stabilizer)
            }
        }
    }

    /// Propagates relevance `r_out` at the output of `map` (input `x`, parameters `params`) to its
    /// input. All tensors carry the batch as their first axis. For repeated use on one layer, bind
    /// the rule once with [`Rule::bind`].
    pub fn propagate<M: LinearMap>(
        &self,
        map: &M,
        x: &ArrayD<f32>,
        params: &M::Params,
        r_out: &ArrayD<f32>,
    ) -> ArrayD<f32> {
        self.bind(params).propagate(map, x, r_out, None)
    }

    /// The rule bound to one layer's parameters: every branch's modified parameters are computed
    /// here, once, instead of in every batch.
    pub fn bind<P: Params>(&self, params: &P) -> BoundRule<P> {
        let (groups, epsilon) = self.groups();
        let params_of =
            groups.iter().map(|g| g.branches.iter().map(|br| params.modified(br.weight, br.bias)).collect()).collect();
        let plain = |br: &Branch| {
            br.input == InputMod::Identity
                && br.weight == ParamMod::Identity
                && br.sign == 1.0
                && (br.bias == ParamMod::Identity || !params.has_bias())
        };
        let plain_groups = groups.iter().map(|g| g.branches.len() == 1 && plain(&g.branches[0])).collect();
        BoundRule { rule: self.clone(), groups, epsilon, params: params_of, plain_groups, original: params.clone() }
    }
}

/// A rule bound to one layer's parameters (see [`Rule::bind`]).
#[derive(Debug, Clone)]
pub struct BoundRule<P> {
    rule: Rule,
    groups: Vec<Group>,
    epsilon: f32,
    /// Modified parameters per group and branch.
    params: Vec<Vec<P>>,
    /// Groups whose only branch is the layer itself (`z` is the layer's own output).
    plain_groups: Vec<bool>,
    original: P,
}

impl<P: Params> BoundRule<P> {
    /// The rule.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }

    /// Linear passes (forward or transposed) that [`BoundRule::propagate`] makes for input `x`, with
    /// or without the layer's output known. For throughput figures.
    pub fn passes(&self, x: &ArrayD<f32>, output_known: bool) -> usize {
        let (nonneg, nonpos) = sign_extent(x);
        let mut n = usize::from(!output_known && self.groups.iter().any(|g| g.mask != Mask::All));
        for ((group, params), &plain) in self.groups.iter().zip(&self.params).zip(&self.plain_groups) {
            let live = group
                .branches
                .iter()
                .zip(params)
                .filter(|(br, p)| p.has_bias() || !zero_input(br.input, nonneg, nonpos))
                .count();
            n += live + if plain && output_known { 0 } else { live };
        }
        n
    }

    /// Propagates relevance `r_out` at the output of `map` to its input `x`.
    ///
    /// `output`, when given, is the layer's own output `map(x; W) + b` from the forward run (shaped
    /// like `r_out`); a rule whose denominator is that output (ε, LRP-0) or that masks by it (γ)
    /// then uses it instead of recomputing it. Branches whose modified input is zero (the negative
    /// part of non-negative inputs, as after a ReLU) are skipped: they contribute nothing.
    pub fn propagate<M: LinearMap<Params = P>>(
        &self,
        map: &M,
        x: &ArrayD<f32>,
        r_out: &ArrayD<f32>,
        output: Option<&ArrayD<f32>>,
    ) -> ArrayD<f32> {
        if self.groups.is_empty() {
            return r_out.clone();
        }
        let output = output.filter(|o| o.shape() == r_out.shape());
        let needs_original = self.groups.iter().any(|g| g.mask != Mask::All);
        let computed;
        let original = match (needs_original, output) {
            (false, _) => None,
            (true, Some(o)) => Some(o),
            (true, None) => {
                computed = map.forward(x, &self.original);
                Some(&computed)
            }
        };
        let (nonneg, nonpos) = sign_extent(x);
        let mut r_in: Option<ArrayD<f32>> = None;
        for ((group, params), &plain) in self.groups.iter().zip(&self.params).zip(&self.plain_groups) {
            // A branch whose modified input is zero and that has no bias adds nothing to `z` or `R`.
            let live: Vec<(&Branch, &P, Cow<'_, ArrayD<f32>>)> = group
                .branches
                .iter()
                .zip(params)
                .filter(|(br, p)| p.has_bias() || !zero_input(br.input, nonneg, nonpos))
                .map(|(br, p)| (br, p, self.modify_input(br.input, x, nonneg, nonpos)))
                .collect();
            let z: Cow<'_, ArrayD<f32>> = match output {
                Some(o) if plain => Cow::Borrowed(o),
                _ => {
                    let mut z: Option<ArrayD<f32>> = None;
                    for (br, p, a) in &live {
                        let y = map.forward(a, p);
                        match &mut z {
                            None if br.sign == 1.0 => z = Some(y),
                            None => z = Some(y * br.sign),
                            Some(z) => z.scaled_add(br.sign, &y),
                        }
                    }
                    // No live branch: only a bias could contribute, and it takes no relevance.
                    Cow::Owned(z.unwrap_or_else(|| ArrayD::zeros(r_out.raw_dim())))
                }
            };
            let eps = self.epsilon;
            let mut s = Zip::from(r_out).and(&*z).map_collect(|&r, &z| r / stabilize(z, eps));
            if let Some(orig) = original {
                let mask = group.mask;
                Zip::from(&mut s).and(orig).for_each(|s, &o| {
                    let keep = match mask {
                        Mask::All => true,
                        Mask::Positive => o > 0.0,
                        Mask::Negative => o < 0.0,
                    };
                    if !keep {
                        *s = 0.0;
                    }
                });
            }
            for (br, p, a) in &live {
                let mut c = map.backward(&s, p, x.shape());
                let k = group.weight * br.sign;
                match &mut r_in {
                    // The first contribution is written in place of the transposed pass's result.
                    None => {
                        Zip::from(&mut c).and(&**a).for_each(|c, &a| *c *= k * a);
                        r_in = Some(c);
                    }
                    Some(r_in) => Zip::from(r_in).and(&**a).and(&c).for_each(|r, &a, &c| *r += k * a * c),
                }
            }
        }
        r_in.unwrap_or_else(|| ArrayD::zeros(x.raw_dim()))
    }

    /// The input as branch modifier `m` sees it; `x` itself where the modifier changes nothing (the
    /// positive part of a non-negative input, as after a ReLU).
    fn modify_input<'a>(&self, m: InputMod, x: &'a ArrayD<f32>, nonneg: bool, nonpos: bool) -> Cow<'a, ArrayD<f32>> {
        match m {
            InputMod::Identity => Cow::Borrowed(x),
            InputMod::Positive if nonneg => Cow::Borrowed(x),
            InputMod::Negative if nonpos => Cow::Borrowed(x),
            InputMod::Positive => Cow::Owned(x.mapv(|v| v.max(0.0))),
            InputMod::Negative => Cow::Owned(x.mapv(|v| v.min(0.0))),
            InputMod::Ones => Cow::Owned(ArrayD::ones(x.raw_dim())),
            InputMod::Low | InputMod::High => {
                let Rule::ZBox { low, high, .. } = &self.rule else { return Cow::Borrowed(x) };
                let bound = if m == InputMod::Low { low } else { high };
                Cow::Owned(per_channel(x, bound))
            }
        }
    }
}

/// Whether input modifier `m` yields zeros for an input that is all `≥ 0` (`nonneg`) or all `≤ 0`.
fn zero_input(m: InputMod, nonneg: bool, nonpos: bool) -> bool {
    (m == InputMod::Negative && nonneg) || (m == InputMod::Positive && nonpos)
}

/// Whether every value of `x` is `≥ 0`, and whether every value is `≤ 0`.
fn sign_extent(x: &ArrayD<f32>) -> (bool, bool) {
    // Over the contiguous slice when there is one (vectorised; the second test stops early), as
    // every activation of the forward run is.
    match x.as_slice_memory_order() {
        Some(v) => (v.iter().all(|&v| v >= 0.0), v.iter().all(|&v| v <= 0.0)),
        None => x.iter().fold((true, true), |(nn, np), &v| (nn && v >= 0.0, np && v <= 0.0)),
    }
}

fn nb(zero_bias: bool) -> &'static str {
    if zero_bias {
        ", no bias"
    } else {
        ""
    }
}

/// A tensor shaped like `x` holding `values[c]` on channel `c` (axis 1); one value fills all.
fn per_channel(x: &ArrayD<f32>, values: &[f32]) -> ArrayD<f32> {
    let mut out = ArrayD::<f32>::zeros(x.raw_dim());
    if x.ndim() < 2 {
        out.fill(values[0]);
        return out;
    }
    for (c, mut lane) in out.axis_iter_mut(Axis(1)).enumerate() {
        lane.fill(if values.len() == 1 { values[0] } else { values.get(c).copied().unwrap_or(values[0]) });
    }
    out
}

fn plus_group(zero_bias: bool, weight: f32) -> Group {
    let bias = if zero_bias { ParamMod::Zero } else { ParamMod::Positive };
    Group::all(
        vec![
            Branch { input: InputMod::Positive, weight: ParamMod::Positive, bias, sign: 1.0 },
            Branch { input: InputMod::Negative, weight: ParamMod::Negative, bias: ParamMod::Zero, sign: 1.0 },
        ],
        weight,
    )
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum InputMod {
    Identity,
    Positive,
    Negative,
    Ones,
    Low,
    High,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mask {
    All,
    Positive,
    Negative,
}

#[derive(Debug, Clone)]
struct Branch {
    input: InputMod,
    weight: ParamMod,
    bias: ParamMod,
    sign: f32,
}

#[derive(Debug, Clone)]
struct Group {
    branches: Vec<Branch>,
    mask: Mask,
    weight: f32,
}

impl Group {
    fn all(branches: Vec<Branch>, weight: f32) -> Group {
        Group { branches, mask: Mask::All, weight }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array1, Array2, ArrayD, IxDyn};

    use super::super::linear::tests::tensor;
    use super::super::linear::{Conv2d, Dense, LinearMap, Weights};
    use super::*;

    type M = Array2<f64>;

    fn pos(m: &M) -> M {
        m.mapv(|v| v.max(0.0))
    }
    fn neg(m: &M) -> M {
        m.mapv(|v| v.min(0.0))
    }
    fn stab(m: &M, eps: f64) -> M {
        m.mapv(|z| if z >= 0.0 { z + eps } else { z - eps })
    }
    fn row_bias(n: usize, b: &Array1<f64>) -> M {
        Array2::from_shape_fn((n, b.len()), |(_, j)| b[j])
    }

    /// The closed-form matrix replica of each rule (the formulas of the Zennit tests), in f64.
    /// `a` is `[n, in]`, `w` is `[out, in]`, `b` has length `out`, `r` is `[n, out]`.
    fn replica(rule: &Rule, a: &M, w: &M, b: &Array1<f64>, r: &M, low: f64, high: f64) -> M {
        let n = a.nrows();
        let bias = |f: fn(f64) -> f64| row_bias(n, &b.mapv(f));
        match rule {
            Rule::Epsilon { epsilon, zero_bias } => {
                let bb = if *zero_bias { bias(|_| 0.0) } else { bias(|v| v) };
                let z = a.dot(&w.t()) + bb;
                a * &(r / &stab(&z, *epsilon as f64)).dot(w)
            }
            Rule::ZPlus { stabilizer, .. } => {
                let z = pos(a).dot(&pos(w).t()) + neg(a).dot(&neg(w).t()) + bias(|v| v.max(0.0));
                let s = r / &stab(&z, *stabilizer as f64);
                pos(a) * &s.dot(&pos(w)) + neg(a) * &s.dot(&neg(w))
            }
            Rule::AlphaBeta { alpha, beta, stabilizer, .. } => {
                let e = *stabilizer as f64;
                let za = pos(a).dot(&pos(w).t()) + neg(a).dot(&neg(w).t()) + bias(|v| v.max(0.0));
                let zb = pos(a).dot(&neg(w).t()) + neg(a).dot(&pos(w).t()) + bias(|v| v.min(0.0));
                let sa = r / &stab(&za, e);
                let sb = r / &stab(&zb, e);
                (pos(a) * &sa.dot(&pos(w)) + neg(a) * &sa.dot(&neg(w))) * (*alpha as f64)
                    - (pos(a) * &sb.dot(&neg(w)) + neg(a) * &sb.dot(&pos(w))) * (*beta as f64)
            }
            Rule::Gamma { gamma, stabilizer, .. } => {
                let (g, e) = (*gamma as f64, *stabilizer as f64);
                let up = w + &(pos(w) * g);
                let down = w + &(neg(w) * g);
                let z = a.dot(&w.t()) + bias(|v| v);
                let zp = pos(a).dot(&up.t()) + neg(a).dot(&down.t()) + row_bias(n, &b.mapv(|v| v + g * v.max(0.0)));
                let zn = pos(a).dot(&down.t()) + neg(a).dot(&up.t()) + row_bias(n, &b.mapv(|v| v + g * v.min(0.0)));
                let sp = r * &z.mapv(|v| f64::from(u8::from(v > 0.0))) / stab(&zp, e);
                let sn = r * &z.mapv(|v| f64::from(u8::from(v < 0.0))) / stab(&zn, e);
                pos(a) * &sp.dot(&up) + neg(a) * &sp.dot(&down) + pos(a) * &sn.dot(&down) + neg(a) * &sn.dot(&up)
            }
            Rule::ZBox { stabilizer, .. } => {
                let l = a.mapv(|_| low);
                let h = a.mapv(|_| high);
                let z = a.dot(&w.t()) - l.dot(&pos(w).t()) - h.dot(&neg(w).t());
                let s = r / &stab(&z, *stabilizer as f64);
                a * &s.dot(w) - l * &s.dot(&pos(w)) - h * &s.dot(&neg(w))
            }
            Rule::WSquare { stabilizer, .. } => {
                let w2 = w.mapv(|v| v * v);
                let z = a.mapv(|_| 1.0).dot(&w2.t()) + bias(|v| v * v);
                (r / &stab(&z, *stabilizer as f64)).dot(&w2)
            }
            Rule::Flat { stabilizer } => {
                // Ones wherever the layer connects an input to an output (all of a dense layer; the
                // receptive fields of a convolution's equivalent dense matrix).
                let ones = w.mapv(|v| if v != 0.0 { 1.0 } else { 0.0 });
                let z = a.mapv(|_| 1.0).dot(&ones.t());
                (r / &stab(&z, *stabilizer as f64)).dot(&ones)
            }
            Rule::Norm { .. } | Rule::Pass => unreachable!(),
        }
    }

    fn rules() -> Vec<Rule> {
        vec![
            Rule::epsilon(1e-6),
            Rule::epsilon(1.0),
            Rule::epsilon(1e-6).without_bias(),
            Rule::zplus(1e-6),
            Rule::alpha_beta(2.0, 1.0).unwrap(),
            Rule::alpha_beta(1.0, 0.0).unwrap(),
            Rule::gamma(0.25).unwrap(),
            Rule::gamma(0.5).unwrap(),
            Rule::zbox(vec![-3.0], vec![3.0]).unwrap(),
            Rule::WSquare { stabilizer: 1e-6, zero_bias: false },
            Rule::Flat { stabilizer: 1e-6 },
        ]
    }

    fn to64(a: &ArrayD<f32>) -> M {
        let n = a.shape()[0];
        a.mapv(f64::from).into_shape_with_order((n, a.len() / n)).unwrap()
    }

    fn assert_close(got: &ArrayD<f32>, want: &M, what: &str) {
        let got = to64(got);
        let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let err = (&got - want).iter().fold(0.0f64, |m, v| m.max(v.abs())) / scale;
        assert!(err < 1e-4, "{what}: relative error {err}");
    }

    #[test]
    fn dense_rules_equal_their_closed_form() {
        let a = tensor(&[4, 16], 1);
        let w = tensor(&[15, 16], 2);
        let b: Array1<f32> = tensor(&[15], 3).into_shape_with_order(15).unwrap();
        let p = Weights { weight: w.clone().into_dimensionality().unwrap(), bias: Some(b.clone()) };
        let r = Dense.forward(&a, &p); // as Zennit's tests: the output is the relevance
        for rule in rules() {
            let got = rule.propagate(&Dense, &a, &p, &r);
            let want = replica(&rule, &to64(&a), &to64(&w), &b.mapv(f64::from), &to64(&r), -3.0, 3.0);
            assert_close(&got, &want, &rule.name());
        }
    }

    #[test]
    fn skipped_branches_and_the_known_output_change_nothing() {
        // One-signed inputs make the z⁺/αβ/γ branches of the other sign zero; the bias of the
        // positive branches must still count. Passing the layer's output must give the same result.
        let w = tensor(&[15, 16], 2);
        let b: Array1<f32> = tensor(&[15], 3).into_shape_with_order(15).unwrap();
        let p = Weights { weight: w.clone().into_dimensionality().unwrap(), bias: Some(b.clone()) };
        for a in [tensor(&[4, 16], 1).mapv(f32::abs), tensor(&[4, 16], 1).mapv(|v| -v.abs())] {
            let out = Dense.forward(&a, &p);
            let r = tensor(&[4, 15], 5);
            for rule in rules() {
                let want = replica(&rule, &to64(&a), &to64(&w), &b.mapv(f64::from), &to64(&r), -3.0, 3.0);
                let bound = rule.bind(&p);
                assert_close(&bound.propagate(&Dense, &a, &r, None), &want, &rule.name());
                assert_close(&bound.propagate(&Dense, &a, &r, Some(&out)), &want, &format!("{} (output)", rule.name()));
            }
        }
        // Passes: z⁺ without bias on non-negative inputs runs one branch (forward + transposed);
        // ε with the output known runs only the transposed pass; γ with both signs runs 4 + 4 + 1.
        let nonneg = tensor(&[2, 16], 1).mapv(f32::abs);
        let mixed = tensor(&[2, 16], 1);
        assert_eq!(Rule::zplus(1e-9).without_bias().bind(&p).passes(&nonneg, true), 2);
        assert_eq!(Rule::zplus(1e-9).bind(&p).passes(&mixed, true), 4);
        assert_eq!(Rule::epsilon(1e-9).bind(&p).passes(&mixed, true), 1);
        assert_eq!(Rule::epsilon(1e-9).bind(&p).passes(&mixed, false), 2);
        assert_eq!(Rule::gamma(0.25).unwrap().bind(&p).passes(&mixed, false), 9);
    }

    /// The dense matrix of a convolution (its Jacobian) and the bias spread over output positions.
    fn conv_as_dense(conv: &Conv2d, xs: &[usize], w: &ArrayD<f32>, b: &Array1<f32>) -> (M, Array1<f64>) {
        let inp: usize = xs[1..].iter().product();
        let one = |i: usize| {
            let mut e = ArrayD::<f32>::zeros(IxDyn(&[1, xs[1], xs[2], xs[3]]));
            e.as_slice_mut().unwrap()[i] = 1.0;
            conv.forward(&e, &Weights { weight: w.clone().into_dimensionality().unwrap(), bias: None })
        };
        let y0 = one(0);
        let out = y0.len();
        let mut m = Array2::<f64>::zeros((out, inp));
        for i in 0..inp {
            for (o, v) in one(i).iter().enumerate() {
                m[[o, i]] = f64::from(*v);
            }
        }
        let per = out / b.len();
        (m, Array1::from_shape_fn(out, |o| f64::from(b[o / per])))
    }

    #[test]
    fn conv_rules_equal_the_closed_form_of_the_equivalent_dense_layer() {
        let cases = [
            (
                Conv2d { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [1, 1], groups: 1, kernel: [3, 3] },
                [2, 3, 5, 5],
                3,
            ),
            (
                Conv2d { strides: [2, 2], pads: [0, 1, 1, 0], dilations: [1, 1], groups: 1, kernel: [2, 3] },
                [2, 1, 6, 7],
                2,
            ),
            (
                Conv2d { strides: [1, 1], pads: [1, 1, 1, 1], dilations: [2, 2], groups: 3, kernel: [3, 3] },
                [1, 3, 6, 6],
                3,
            ),
        ];
        for (k, (conv, xs, co)) in cases.into_iter().enumerate() {
            let a = tensor(&xs, 40 + k as u64);
            let w = tensor(&[co, xs[1] / conv.groups, conv.kernel[0], conv.kernel[1]], 50 + k as u64);
            let b: Array1<f32> = tensor(&[co], 60 + k as u64).into_shape_with_order(co).unwrap();
            let p = Weights { weight: w.clone().into_dimensionality().unwrap(), bias: Some(b.clone()) };
            let r = conv.forward(&a, &p);
            let (m, bb) = conv_as_dense(&conv, &xs, &w, &b);
            for rule in rules() {
                let got = rule.propagate(&conv, &a, &p, &r);
                let want = replica(&rule, &to64(&a), &m, &bb, &to64(&r), -3.0, 3.0);
                assert_close(&got, &want, &format!("conv case {k}, {}", rule.name()));
            }
        }
    }

    #[test]
    fn conserving_rules_conserve() {
        // LRP-0 and z^B without bias, and z⁺ on non-negative inputs without bias: Σ R_in = Σ R_out.
        let a = tensor(&[3, 12], 7).mapv(f32::abs);
        let p = Weights { weight: tensor(&[9, 12], 8).into_dimensionality().unwrap(), bias: None };
        let r = tensor(&[3, 9], 9).mapv(f32::abs);
        for rule in [
            Rule::epsilon(0.0),
            Rule::zplus(1e-9),
            Rule::zbox(vec![0.0], vec![1.0]).unwrap(),
            Rule::Flat { stabilizer: 1e-9 },
        ] {
            let got = rule.propagate(&Dense, &a, &p, &r);
            for n in 0..3 {
                let (sin, sout) = (got.index_axis(Axis(0), n).sum(), r.index_axis(Axis(0), n).sum());
                assert!((sin - sout).abs() < 1e-3 * sout.abs(), "{}: {sin} vs {sout}", rule.name());
            }
        }
        let zp = Rule::zplus(1e-9).propagate(&Dense, &a, &p, &r);
        assert!(zp.iter().all(|v| *v >= 0.0), "z⁺ relevance is non-negative for non-negative inputs and relevance");
    }

    #[test]
    fn constructors_validate() {
        assert!(Rule::alpha_beta(2.0, 0.5).is_err());
        assert!(Rule::alpha_beta(-1.0, -2.0).is_err());
        assert!(Rule::gamma(-0.1).is_err());
        assert!(Rule::zbox(vec![1.0], vec![0.0]).is_err());
        assert_eq!(
            Rule::Pass.propagate(
                &Dense,
                &tensor(&[1, 2], 1),
                &Weights { weight: tensor(&[2, 2], 3).into_dimensionality().unwrap(), bias: None },
                &tensor(&[1, 2], 2)
            ),
            tensor(&[1, 2], 2)
        );
    }
}
