#!/usr/bin/env python3
"""Python side of `hudd bench cluster`: HUDD's clustering with scipy + kneed (the functions of
make_cluster_reference.py: pdist, row-max normalisation, Ward with optimal ordering on the rows,
fcluster for every k, WICD, gradientO4, KneeLocator, score) on the same heatmaps, timed per layer.

    .venv-torch/bin/python models/scripts/bench_cluster.py RUN/heatmaps
    .venv-torch/bin/python models/scripts/bench_cluster.py synthetic.npy     # from hudd bench cluster --write-npy

`--no-optimal-ordering` drops scipy's optimal leaf ordering (HUDD asks for it; it reorders leaves for
plotting, costs O(N³) and does not change any partition).
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_cluster_reference import layer_reference  # noqa: E402


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    ordering = "--no-optimal-ordering" not in sys.argv
    src = Path(args[0])
    if src.is_dir():
        index = json.loads((src / "index.json").read_text())
        layers = [(l["tensor"], src / l["file"]) for l in index["layers"]]
    else:
        layers = [("synthetic", src)]
    print(f"{'layer':<45} {'N':>7} {'D':>8} {'total_s':>10} {'k':>4}")
    total = 0.0
    for name, path in layers:
        x = np.load(path, mmap_mode="r")
        x = np.asarray(x).reshape(len(x), -1)
        t = time.perf_counter()
        _, ref = layer_reference(x, optimal_ordering=ordering)
        dt = time.perf_counter() - t
        total += dt
        print(f"{name:<45} {x.shape[0]:>7} {x.shape[1]:>8} {dt:>10.3f} {ref['knee']!s:>4}", flush=True)
    print(f"{'total':<45} {'':>7} {'':>8} {total:>10.3f}")


if __name__ == "__main__":
    main()
