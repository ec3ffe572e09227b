//! Two-sample statistics for cluster explanations: the Kolmogorov–Smirnov distance between two
//! samples of a numeric column and its asymptotic p-value, and Pearson's chi-square test of a
//! categorical column's counts in two groups. Checked against scipy (`ks_2samp`,
//! `special.kolmogorov`, `chi2_contingency(correction=False)`) on committed fixtures
//! (`models/scripts/make_explain_reference.py`).

use std::collections::BTreeMap;

/// The two-sample Kolmogorov–Smirnov statistic `D = sup |F_a − F_b|` (empirical CDFs; ties
/// handled by stepping over every copy of a value at once). 0 when either sample is empty.
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let sorted = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (a, b) = (sorted(a), sorted(b));
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = if a[i] <= b[j] { a[i] } else { b[j] };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    d
}

/// The Kolmogorov distribution's survival function `Q(λ) = P(K > λ)`
/// (`scipy.special.kolmogorov`): the asymptotic p-value of a two-sample KS test is
/// `Q(sqrt(n·m / (n + m)) · D)`.
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda.is_nan() || lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.18 {
        // P(K ≤ λ) = sqrt(2π)/λ · Σ exp(−(2k−1)² π² / (8λ²)): fast for small λ.
        let c = -std::f64::consts::PI.powi(2) / (8.0 * lambda * lambda);
        let sum: f64 = (1..=8).map(|k| ((2 * k - 1) as f64).powi(2)).map(|s| (c * s).exp()).sum();
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / lambda * sum).clamp(0.0, 1.0)
    } else {
        // Q(λ) = 2 Σ (−1)^(k−1) exp(−2k²λ²): fast for large λ.
        let sum: f64 = (1..=20)
            .map(|k| {
                let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * (k * k) as f64 * lambda * lambda).exp()
            })
            .sum();
        (2.0 * sum).clamp(0.0, 1.0)
    }
}

/// The two-sample KS test's asymptotic p-value for statistic `d` on samples of `n` and `m`.
pub fn ks_p_value(d: f64, n: usize, m: usize) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let en = (n * m) as f64 / (n + m) as f64;
    kolmogorov_sf(en.sqrt() * d)
}

/// Pearson's chi-square test of independence on a 2 × V table (the counts of each value in two
/// groups; values absent from both ignored): `(statistic, degrees of freedom, p-value)`, without
/// continuity correction. `None` when the table has fewer than two values or an empty group.
pub fn chi_square(a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>) -> Option<(f64, usize, f64)> {
    let values: Vec<&String> =
        a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let (na, nb) = (a.values().sum::<usize>() as f64, b.values().sum::<usize>() as f64);
    if values.len() < 2 || na == 0.0 || nb == 0.0 {
        return None;
    }
    let n = na + nb;
    let mut stat = 0.0;
    for v in &values {
        let (ca, cb) = (*a.get(*v).unwrap_or(&0) as f64, *b.get(*v).unwrap_or(&0) as f64);
        let col = ca + cb;
        for (observed, row) in [(ca, na), (cb, nb)] {
            let expected = row * col / n;
            stat += (observed - expected).powi(2) / expected;
        }
    }
    let df = values.len() - 1;
    Some((stat, df, chi2_sf(stat, df as f64)))
}

/// The chi-square distribution's survival function with `df` degrees of freedom:
/// `Q(df/2, x/2)`, the regularised upper incomplete gamma function.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return 1.0;
    }
    gamma_q(df / 2.0, x / 2.0)
}

/// The regularised upper incomplete gamma function `Q(a, x)` (series below `a + 1`, Lentz's
/// continued fraction above; Numerical Recipes §6.2).
pub(crate) fn gamma_q(a: f64, x: f64) -> f64 {
    let log_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_front.exp()).clamp(0.0, 1.0)
    } else {
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_front.exp() * h).clamp(0.0, 1.0)
    }
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error below 1e-15).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let sum = G[1..].iter().enumerate().fold(G[0], |s, (i, g)| s + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// The adjusted Rand index of two labellings of the same items (Hubert & Arabie 1985, as
/// scikit-learn's `adjusted_rand_score`): 1 for the same partition, about 0 for independent ones.
/// Two trivial partitions that agree (one cluster each, or every item alone in both) give 1.
pub fn adjusted_rand_index<A: Ord, B: Ord>(a: &[A], b: &[B]) -> f64 {
    let n = a.len().min(b.len());
    let pairs = |k: usize| (k * k.saturating_sub(1) / 2) as f64;
    let mut cells: BTreeMap<(&A, &B), usize> = BTreeMap::new();
    let mut rows: BTreeMap<&A, usize> = BTreeMap::new();
    let mut cols: BTreeMap<&B, usize> = BTreeMap::new();
    for (x, y) in a.iter().zip(b).take(n) {
        *cells.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let index: f64 = cells.values().map(|&k| pairs(k)).sum();
    let (sa, sb): (f64, f64) = (rows.values().map(|&k| pairs(k)).sum(), cols.values().map(|&k| pairs(k)).sum());
    let expected = if n < 2 { 0.0 } else { sa * sb / pairs(n) };
    let max = (sa + sb) / 2.0;
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::adjusted_rand_index as ari;

    #[test]
    fn adjusted_rand_index_as_scikit_learn_documents_it() {
        // scikit-learn's documented examples.
        assert_eq!(ari(&[0, 0, 1, 1], &[0, 0, 1, 1]), 1.0);
        assert_eq!(ari(&[0, 0, 1, 1], &[1, 1, 0, 0]), 1.0, "names do not matter");
        assert!((ari(&[0, 0, 1, 2], &[0, 0, 1, 1]) - 0.5714285714285715).abs() < 1e-15);
        assert!((ari(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.5714285714285715).abs() < 1e-15);
        assert_eq!(ari(&[0, 0, 0, 0], &[0, 1, 2, 3]), 0.0);
        assert!((ari(&[0, 0, 1, 1], &[0, 1, 0, 1]) + 0.5).abs() < 1e-15);
        assert_eq!(ari(&[0, 0, 0], &[5, 5, 5]), 1.0, "one cluster each");
        assert_eq!(ari::<i32, i32>(&[], &[]), 1.0);
    }

    use super::*;

    /// Against scipy (`models/scripts/make_explain_reference.py`).
    #[test]
    fn equal_to_scipy() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/explain/reference.json");
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
        let floats = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array().expect("array").iter().filter_map(|x| x.as_f64()).collect()
        };
        let counts = |v: &serde_json::Value| -> BTreeMap<String, usize> {
            v.as_object().expect("object").iter().map(|(k, c)| (k.clone(), c.as_u64().unwrap_or(0) as usize)).collect()
        };
        let ks = r["ks"].as_array().expect("ks");
        assert!(ks.len() >= 7);
        for (i, case) in ks.iter().enumerate() {
            let (a, b) = (floats(&case["a"]), floats(&case["b"]));
            let d = ks_statistic(&a, &b);
            assert!((d - case["statistic"].as_f64().unwrap_or(f64::NAN)).abs() < 1e-12, "case {i}: {d}");
            let p = ks_p_value(d, a.len(), b.len());
            assert!((p - case["p_asymptotic"].as_f64().unwrap_or(f64::NAN)).abs() < 1e-10, "case {i}: {p}");
        }
        for case in r["kolmogorov"].as_array().expect("kolmogorov") {
            let (x, want) = (case["lambda"].as_f64().unwrap_or(f64::NAN), case["sf"].as_f64().unwrap_or(f64::NAN));
            assert!((kolmogorov_sf(x) - want).abs() < 1e-12, "λ = {x}: {} vs {want}", kolmogorov_sf(x));
        }
        for (i, case) in r["chi_square"].as_array().expect("chi_square").iter().enumerate() {
            let (stat, df, p) = chi_square(&counts(&case["a"]), &counts(&case["b"])).expect("a 2 × V table");
            let want = case["statistic"].as_f64().unwrap_or(f64::NAN);
            assert!((stat - want).abs() <= 1e-9 * want.max(1.0), "case {i}: {stat} vs {want}");
            assert_eq!(df as u64, case["dof"].as_u64().unwrap_or(0), "case {i}");
            assert!((p - case["p"].as_f64().unwrap_or(f64::NAN)).abs() < 1e-12, "case {i}: {p}");
        }
    }

    #[test]
    fn ks_statistic_by_hand() {
        assert_eq!(ks_statistic(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(ks_statistic(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        // Ties across samples: F_a(1) = 1/2, F_b(1) = 1/4.
        assert!((ks_statistic(&[1.0, 2.0], &[1.0, 3.0, 3.0, 3.0]) - 0.75).abs() < 1e-12);
        assert_eq!(ks_statistic(&[], &[1.0]), 0.0);
    }

    #[test]
    fn gamma_and_chi_square_by_hand() {
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        // df = 2: Q = exp(−x/2).
        for x in [0.1, 1.0, 3.0, 10.0, 40.0] {
            assert!((chi2_sf(x, 2.0) - (-x / 2.0).exp()).abs() < 1e-12, "{x}");
        }
        assert_eq!(chi2_sf(0.0, 3.0), 1.0);
        assert_eq!(kolmogorov_sf(0.0), 1.0);
    }
}
