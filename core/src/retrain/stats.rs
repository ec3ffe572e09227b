//! Two-sample tests for `hudd compare`: Welch's t-test and the Mann–Whitney U test, two-sided,
//! as SciPy computes them (`ttest_ind(equal_var=False)`, `mannwhitneyu(method="auto")`); checked
//! against SciPy's values in `tests/fixtures/stats/reference.json`.

use serde::{Deserialize, Serialize};

use crate::cluster::stats::{gamma_q, ln_gamma};

/// A test's statistic and two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    /// Welch: t of `a − b`; Mann–Whitney: U of `a`.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p: f64,
}

fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (mean, x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0))
}

/// Welch's t-test of equal means. `None` with fewer than two values in a sample, or when neither
/// sample varies (t is undefined: SciPy gives NaN).
pub fn welch(a: &[f64], b: &[f64]) -> Option<TestResult> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let ((ma, va), (mb, vb)) = (mean_var(a), mean_var(b));
    let (sa, sb) = (va / a.len() as f64, vb / b.len() as f64);
    let se2 = sa + sb;
    if se2 <= 0.0 || !se2.is_finite() {
        return None;
    }
    let t = (ma - mb) / se2.sqrt();
    let df = se2 * se2 / (sa * sa / (a.len() as f64 - 1.0) + sb * sb / (b.len() as f64 - 1.0));
    // P(|T| ≥ |t|) = I_{df / (df + t²)}(df / 2, 1 / 2).
    let p = incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    Some(TestResult { statistic: t, p: p.clamp(0.0, 1.0) })
}

/// The Mann–Whitney U test. Exact when there are no ties and a sample has at most 8 values, else
/// the normal approximation with the tie and continuity corrections. `None` for an empty sample.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<TestResult> {
    if a.is_empty() || b.is_empty() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return None;
    }
    let (n1, n2) = (a.len(), b.len());
    let n = n1 + n2;
    // Average ranks (1-based) of the pooled values; the sizes of the tied groups.
    let mut pooled: Vec<(f64, usize)> = a.iter().chain(b).copied().zip(0..).collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut ranks = vec![0.0; n];
    let mut ties = Vec::new();
    let mut i = 0;
    while i < n {
        let j = (i..n).find(|&j| pooled[j].0 != pooled[i].0).unwrap_or(n);
        let rank = (i + 1 + j) as f64 / 2.0;
        for p in &pooled[i..j] {
            ranks[p.1] = rank;
        }
        ties.push((j - i) as f64);
        i = j;
    }
    let r1: f64 = ranks[..n1].iter().sum();
    let u1 = r1 - (n1 * (n1 + 1)) as f64 / 2.0;
    let u = u1.max((n1 * n2) as f64 - u1);
    let tied = ties.iter().any(|&t| t > 1.0);
    let p = if (n1 > 8 && n2 > 8) || tied {
        let tie_term: f64 = ties.iter().map(|t| t * t * t - t).sum();
        let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
        let s = (n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
        if s > 0.0 {
            2.0 * normal_sf((u - n1f * n2f / 2.0 - 0.5) / s)
        } else {
            1.0
        }
    } else {
        2.0 * exact_u_sf(n1, n2, u.round() as usize)
    };
    Some(TestResult { statistic: u1, p: p.clamp(0.0, 1.0) })
}

/// P(U ≥ u) under the null, no ties: the share of the C(n1 + n2, n1) rank sets whose U is ≥ u.
fn exact_u_sf(n1: usize, n2: usize, u: usize) -> f64 {
    // counts[i][j][k]: arrangements of i values of one sample and j of the other with U = k
    // (U counting the pairs where a value of the first sample is above one of the second).
    let max = n1 * n2;
    let mut prev: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n2 + 1];
    for row in prev.iter_mut() {
        row[0] = 1.0; // i = 0: U = 0 for any j.
    }
    for i in 1..=n1 {
        let mut cur: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; n2 + 1];
        cur[0][0] = 1.0;
        for j in 1..=n2 {
            for k in 0..=i * j {
                // The largest value is from the first sample (adds j pairs) or the second.
                let from_first = if k >= j { prev[j][k - j] } else { 0.0 };
                cur[j][k] = from_first + cur[j - 1][k];
            }
        }
        prev = cur;
    }
    let counts = &prev[n2];
    let total: f64 = counts.iter().sum();
    counts[u.min(max + 1)..].iter().sum::<f64>() / total
}

/// The regularized incomplete beta function I_x(a, b) (continued fraction, modified Lentz).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front = (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut h = d;
    for m in 1..500 {
        let m = f64::from(m);
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + num / c;
            if c.abs() < TINY {
                c = TINY;
            }
            h *= d * c;
            if num == 0.0 {
                break;
            }
        }
        if (d * c - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// P(Z ≥ z) for a standard normal Z: erfc(z / √2) / 2, with erfc from the regularized
/// incomplete gamma function Q(1/2, x²) (the chi-square test's).
fn normal_sf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let q = gamma_q(0.5, x * x);
    if x >= 0.0 {
        0.5 * q
    } else {
        1.0 - 0.5 * q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Case {
        a: Vec<f64>,
        b: Vec<f64>,
        welch_t: Option<f64>,
        welch_p: Option<f64>,
        mann_whitney_u: f64,
        mann_whitney_p: Option<f64>,
    }

    #[derive(Deserialize)]
    struct Reference {
        cases: Vec<Case>,
    }

    fn close(x: f64, y: f64, what: &str) {
        assert!((x - y).abs() <= 1e-9 + 1e-7 * y.abs(), "{what}: {x} vs SciPy {y}");
    }

    #[test]
    fn welch_and_mann_whitney_equal_scipys() {
        let r: Reference =
            serde_json::from_str(include_str!("../../../tests/fixtures/stats/reference.json")).expect("fixture");
        assert!(r.cases.len() >= 10);
        for (i, c) in r.cases.iter().enumerate() {
            let w = welch(&c.a, &c.b);
            match (w, c.welch_t, c.welch_p) {
                (Some(w), Some(t), Some(p)) => {
                    close(w.statistic, t, &format!("case {i} t"));
                    close(w.p, p, &format!("case {i} Welch p"));
                }
                (None, None, None) => {}
                (w, t, p) => panic!("case {i}: Welch {w:?} vs SciPy t {t:?}, p {p:?}"),
            }
            let u = mann_whitney(&c.a, &c.b).expect("non-empty samples");
            close(u.statistic, c.mann_whitney_u, &format!("case {i} U"));
            close(u.p, c.mann_whitney_p.expect("SciPy p"), &format!("case {i} Mann–Whitney p"));
        }
    }

    #[test]
    fn special_functions_at_known_values() {
        close(ln_gamma(5.0), 24f64.ln(), "ln Γ(5)");
        close(ln_gamma(0.5), std::f64::consts::PI.sqrt().ln(), "ln Γ(1/2)");
        close(normal_sf(0.0), 0.5, "Φ(0)");
        close(normal_sf(1.959_963_984_540_054), 0.025, "1.96");
        close(normal_sf(-1.0), 0.841_344_746_068_542_9, "Φ(1)");
        close(incomplete_beta(2.0, 3.0, 0.4), 0.5248, "I_0.4(2, 3)");
        // Exact U: n1 = n2 = 2 has 6 arrangements, U ≥ 4 in one.
        close(exact_u_sf(2, 2, 4), 1.0 / 6.0, "P(U ≥ 4)");
        close(exact_u_sf(2, 2, 0), 1.0, "P(U ≥ 0)");
        assert!(welch(&[1.0], &[2.0, 3.0]).is_none());
        assert!(mann_whitney(&[], &[1.0]).is_none());
    }
}
