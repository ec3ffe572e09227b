//! The kneedle algorithm (Satopää et al. 2011) exactly as Python's `kneed` `KneeLocator` runs it
//! (version 0.8.5, `interp_method="interp1d"`, offline mode), and HUDD's fourth-order gradient.
//!
//! `kneed`'s steps: the curve is normalised to `[0, 1]` on both axes, flipped for the
//! curve/direction combination, and the difference curve `y − x` is searched for local maxima
//! (with `>=` against both neighbours, ends compared with themselves); each maximum sets a
//! threshold `y_max − S·mean(Δx)`, a local minimum resets it to 0, and the first point whose
//! successor falls below the threshold is the knee.

/// The shape of the curve a knee is sought on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// Concave (a knee).
    Concave,
    /// Convex (an elbow).
    Convex,
}

/// Whether the curve rises or falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Increasing.
    Increasing,
    /// Decreasing.
    Decreasing,
}

/// The knee of `y(x)` (x strictly increasing) as `kneed.KneeLocator(x, y, S=sensitivity,
/// curve, direction).knee`: the x value of the knee, or `None` where `kneed` finds none.
pub fn kneedle(x: &[f64], y: &[f64], sensitivity: f64, curve: Curve, direction: Direction) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let xn = normalize(x)?;
    let yn = transform(&normalize(y)?, direction, curve);
    let diff: Vec<f64> = yn.iter().zip(&xn).map(|(y, x)| y - x).collect();
    let maxima = rel_extrema(&diff, |a, b| a >= b);
    let minima = rel_extrema(&diff, |a, b| a <= b);
    let first = *maxima.first()?;
    let mean_dx = (xn[n - 1] - xn[0]) / (n - 1) as f64;
    let tmx: Vec<f64> = maxima.iter().map(|&i| diff[i] - sensitivity * mean_dx.abs()).collect();
    let (mut max_ix, mut threshold, mut threshold_index) = (0usize, 0.0f64, 0usize);
    for (i, &xi) in xn.iter().enumerate().skip(first) {
        if xi == 1.0 {
            break;
        }
        if maxima.contains(&i) {
            threshold = tmx[max_ix];
            threshold_index = i;
            max_ix += 1;
        }
        if minima.contains(&i) {
            threshold = 0.0;
        }
        if diff[i + 1] < threshold {
            let k = match (curve, direction) {
                (Curve::Convex, Direction::Decreasing) | (Curve::Concave, Direction::Increasing) => threshold_index,
                (Curve::Convex, Direction::Increasing) | (Curve::Concave, Direction::Decreasing) => {
                    n - 1 - threshold_index
                }
            };
            return Some(x[k]);
        }
    }
    None
}

/// `(a − min) / (max − min)`; `None` for a constant curve (kneed divides by zero there).
fn normalize(a: &[f64]) -> Option<Vec<f64>> {
    let (lo, hi) = a.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    (hi > lo && hi.is_finite() && lo.is_finite()).then(|| a.iter().map(|v| (v - lo) / (hi - lo)).collect())
}

/// kneed's `transform_y`: every case becomes a concave increasing curve.
fn transform(y: &[f64], direction: Direction, curve: Curve) -> Vec<f64> {
    let max = y.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    match (direction, curve) {
        (Direction::Decreasing, Curve::Concave) => y.iter().rev().copied().collect(),
        (Direction::Decreasing, Curve::Convex) => y.iter().map(|v| max - v).collect(),
        (Direction::Increasing, Curve::Convex) => y.iter().rev().map(|v| max - v).collect(),
        (Direction::Increasing, Curve::Concave) => y.to_vec(),
    }
}

/// scipy's `argrelextrema(a, cmp, order=1, mode="clip")`: indices where `cmp(a[i], a[i±1])` holds,
/// with the ends compared with themselves.
fn rel_extrema(a: &[f64], cmp: impl Fn(f64, f64) -> bool) -> Vec<usize> {
    let n = a.len();
    (0..n).filter(|&i| cmp(a[i], a[(i + 1).min(n - 1)]) && cmp(a[i], a[i.saturating_sub(1)])).collect()
}

/// HUDD's `gradientO4(f, dx)`: fourth-order central differences inside, first differences at the
/// two ends on each side, all divided by `dx`. Curves shorter than 5 points use first differences
/// throughout.
pub fn gradient_o4(f: &[f64], dx: f64) -> Vec<f64> {
    let n = f.len();
    match n {
        0 => Vec::new(),
        1 => vec![0.0],
        _ => (0..n)
            .map(|i| {
                let g = if i >= 2 && i + 2 < n {
                    (f[i - 2] - 8.0 * f[i - 1] + 8.0 * f[i + 1] - f[i + 2]) / 12.0
                } else if i < 2 {
                    f[(i + 1).min(n - 1)] - f[i.min(n - 2)]
                } else {
                    f[i.max(1)] - f[i.max(1) - 1]
                };
                g / dx
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Knees as `kneed` 0.8.5 finds them (checked by running it; more vectors in
    /// tests/fixtures/cluster/reference.json, written by models/scripts/make_cluster_reference.py).
    #[test]
    fn textbook_curves() {
        // kneed's own documentation example: the knee of 1/x-like decreasing convex data.
        let x: Vec<f64> = (1..=10).map(f64::from).collect();
        let y = [7.0, 4.0, 3.0, 2.0, 1.5, 1.2, 1.0, 0.9, 0.85, 0.8];
        assert_eq!(kneedle(&x, &y, 1.0, Curve::Convex, Direction::Decreasing), Some(4.0));
        // A concave increasing saturation curve.
        let y: Vec<f64> = x.iter().map(|v| 1.0 - (-v / 2.0f64).exp()).collect();
        assert_eq!(kneedle(&x, &y, 1.0, Curve::Concave, Direction::Increasing), Some(4.0));
        // A straight line has no knee; a constant has none either.
        assert_eq!(kneedle(&x, &x, 1.0, Curve::Concave, Direction::Increasing), None);
        assert_eq!(kneedle(&x, &[1.0; 10], 1.0, Curve::Concave, Direction::Increasing), None);
    }

    #[test]
    fn gradient_o4_formula() {
        let f = [0.0, 1.0, 4.0, 9.0, 16.0, 25.0, 36.0];
        let g = gradient_o4(&f, 4.0);
        // Inside: the exact derivative of x², 2x, divided by dx = 4.
        assert_eq!(g[2..5].to_vec(), vec![4.0 / 4.0, 6.0 / 4.0, 8.0 / 4.0]);
        assert_eq!(g[0], 0.25);
        assert_eq!(g[1], 0.75);
        assert_eq!(g[5], 2.25);
        assert_eq!(g[6], 2.75);
        assert_eq!(gradient_o4(&[3.0, 5.0], 1.0), vec![2.0, 2.0]);
    }
}
