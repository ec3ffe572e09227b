#!/usr/bin/env python3
"""Reference values for hudd's cluster explanations (core/src/cluster/stats.rs): the two-sample
Kolmogorov-Smirnov statistic (scipy.stats.ks_2samp), the Kolmogorov distribution's survival
function (scipy.special.kolmogorov) and Pearson's chi-square test without continuity correction
(scipy.stats.chi2_contingency(correction=False)) on seeded samples. Run once from the repository
root; the JSON is committed and the Rust tests only compare:

    python3 -m venv .venv-ref && .venv-ref/bin/pip install scipy==1.17.1 numpy
    .venv-ref/bin/python models/scripts/make_explain_reference.py

Writes tests/fixtures/explain/reference.json.
"""
import json
from pathlib import Path

import numpy as np
import scipy
from scipy import special, stats

rng = np.random.default_rng(7)
ks = []
for n, m, shift, scale, rounding in [
    (5, 40, 0.0, 1.0, None),
    (12, 300, 0.8, 1.0, None),
    (144, 297, -0.5, 0.6, None),
    (30, 30, 0.0, 0.2, None),
    (7, 434, 2.0, 1.0, None),
    (50, 400, 0.3, 1.0, 1),  # ties: values rounded to 1 decimal
    (20, 60, 0.0, 1.0, 0),  # many ties: integers
]:
    a = rng.normal(shift, scale, n)
    b = rng.normal(0.0, 1.0, m)
    if rounding is not None:
        a, b = np.round(a, rounding), np.round(b, rounding)
    d = stats.ks_2samp(a, b).statistic
    en = n * m / (n + m)
    ks.append({
        "a": a.tolist(),
        "b": b.tolist(),
        "statistic": float(d),
        "p_asymptotic": float(special.kolmogorov(np.sqrt(en) * d)),
    })

kolmogorov = [{"lambda": x, "sf": float(special.kolmogorov(x))} for x in [0.05, 0.3, 0.6, 0.9, 1.0, 1.17, 1.19, 1.5, 2.5, 4.0]]

chi = []
for counts_a, counts_b in [
    ({"day": 7}, {"day": 100, "dark": 50}),
    ({"day": 2, "dark": 10}, {"day": 200, "dark": 40}),
    ({"left": 3, "right": 3, "up": 1}, {"left": 100, "right": 90, "up": 120, "down": 80}),
    ({"a": 40, "b": 41}, {"a": 400, "b": 390}),
    ({"x": 1, "y": 0}, {"x": 0, "y": 5}),
]:
    values = sorted(set(counts_a) | set(counts_b))
    table = np.array([[counts_a.get(v, 0) for v in values], [counts_b.get(v, 0) for v in values]])
    table = table[:, table.sum(0) > 0]
    stat, p, dof, _ = stats.chi2_contingency(table, correction=False)
    chi.append({"a": counts_a, "b": counts_b, "statistic": float(stat), "dof": int(dof), "p": float(p)})

out = Path("tests/fixtures/explain/reference.json")
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({"scipy": scipy.__version__, "ks": ks, "kolmogorov": kolmogorov, "chi_square": chi}, indent=1) + "\n")
print(f"wrote {out}")
