#!/usr/bin/env python3
"""Reference p-values for `hudd compare`'s tests (core/src/retrain/stats.rs), from SciPy.

    .venv-torch/bin/python models/scripts/make_stats_reference.py

Writes tests/fixtures/stats/reference.json: pairs of samples, shaped like `hudd compare`'s
repeated accuracies (few values, often tied), with SciPy's two-sided Welch t-test
(`ttest_ind(equal_var=False)`) and Mann–Whitney U (`mannwhitneyu`, method "auto": exact without
ties when a sample has at most 8 values, else the normal approximation with tie and continuity
corrections).
"""
import json
from pathlib import Path

import numpy as np
import scipy
from scipy import stats

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "stats" / "reference.json"


def case(a, b):
    t = stats.ttest_ind(a, b, equal_var=False)
    u = stats.mannwhitneyu(a, b, alternative="two-sided")
    fin = lambda v: None if not np.isfinite(v) else float(v)
    return {"a": list(map(float, a)), "b": list(map(float, b)),
            "welch_t": fin(t.statistic), "welch_p": fin(t.pvalue),
            "mann_whitney_u": float(u.statistic), "mann_whitney_p": fin(u.pvalue)}


def main():
    rng = np.random.default_rng(33)
    cases = [
        ([0.082, 0.031, 0.140, 0.095, 0.061], [0.136, 0.120, 0.151, 0.109, 0.164]),
        ([0.887, 0.885, 0.889, 0.886, 0.890], [0.888, 0.886, 0.887, 0.889, 0.891]),
        ([0.1, 0.2, 0.2, 0.3, 0.1], [0.2, 0.2, 0.4, 0.5, 0.3]),           # ties: asymptotic
        ([0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.1]),
        ([0.5, 0.6, 0.7], [0.1, 0.2, 0.3, 0.4, 0.45, 0.55, 0.65]),         # exact, unequal sizes
        ([1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]),           # exact, extreme
        ([0.3, 0.3, 0.3, 0.3, 0.3], [0.3, 0.3, 0.3, 0.3, 0.3]),            # no spread at all
    ]
    for n in (5, 10, 12):
        a = np.round(rng.normal(0.5, 0.05, n), 4)
        b = np.round(rng.normal(0.55, 0.08, n), 4)
        cases.append((a.tolist(), b.tolist()))
    a = np.round(rng.uniform(0, 1, 9), 3)
    cases.append((a.tolist(), np.round(a + rng.normal(0.1, 0.1, 9), 3).tolist()))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"scipy": scipy.__version__, "cases": [case(a, b) for a, b in cases]}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
