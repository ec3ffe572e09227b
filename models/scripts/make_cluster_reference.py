#!/usr/bin/env python3
"""Reference run of HUDD's clustering with scipy + kneed, for hudd's tests (issue 4).

Input: a heatmaps folder written by `hudd heatmaps` (index.json + one .npy per layer). The committed
fixture, tests/fixtures/cluster/heatmaps, holds the heatmaps of the 44 error-inducing images of the
Fashion-MNIST fixture (tests/fixtures/fmnist/wrong.txt lists them), made with

    target/release/hudd heatmaps -m models/fashion-mnist/fmnist_cnn.onnx -c models/fashion-mnist/hudd.toml \
        --images tests/fixtures/fmnist/wrong.txt -o tests/fixtures/cluster/heatmaps

Output (tests/fixtures/cluster/reference/): reference.json — per layer the WICD curve, its gradient,
kneed's knee, the partition at that k (as sorted member lists), the score, and the best layer; plus
kneed's knee for seeded test curves — and distances/<layer file> (scipy pdist as a float32 N×N .npy).

    .venv-torch/bin/pip install scipy kneed==0.8.5
    .venv-torch/bin/python models/scripts/make_cluster_reference.py tests/fixtures/cluster/heatmaps \
        tests/fixtures/cluster/reference

The algorithm is HUDD's (../shared/docs/hudd-reference.md §3), written here from its definition:
row-max normalisation, Ward (optimal ordering) on the rows of the normalised matrix, maxclust cuts,
WICD on the upper triangle, gradientO4 with dx = 4, KneeLocator(concave, increasing, S=1).
"""
import json
import sys
from pathlib import Path

import kneed
import numpy as np
import scipy
from kneed import KneeLocator
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist, squareform


def wicd(m, labels):
    ids = sorted(set(labels))
    n = len(labels)
    total = 0.0
    for c in ids:
        idx = np.where(labels == c)[0]
        if len(idx) < 2:
            continue
        sub = m[np.ix_(idx, idx)]
        total += len(idx) / n * sub[np.triu_indices(len(idx), 1)].mean()
    return total / len(ids)


def gradient_o4(f, dx):
    n = len(f)
    g = np.zeros(n)
    for i in range(2, n - 2):
        g[i] = (f[i - 2] - 8 * f[i - 1] + 8 * f[i + 1] - f[i + 2]) / 12.0
    g[0] = f[1] - f[0]
    g[1] = f[2] - f[1]
    g[n - 2] = f[n - 2] - f[n - 3]
    g[n - 1] = f[n - 1] - f[n - 2]
    return g / dx


def partition(labels):
    groups = {}
    for i, l in enumerate(labels):
        groups.setdefault(int(l), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def layer_reference(x, optimal_ordering=True):
    n = len(x)
    d = squareform(pdist(x.astype(np.float64)))
    dn = d / d.max(axis=1, keepdims=True)
    z = linkage(dn, method="ward", optimal_ordering=optimal_ordering)
    ks = list(range(2, min(max(n // 2, 2), 500, n) + 1))
    curve = [wicd(dn, fcluster(z, k, criterion="maxclust")) for k in ks]
    grad = gradient_o4(np.array(curve), 4.0)
    knee = KneeLocator(ks, grad, S=1.0, curve="concave", direction="increasing").knee
    out = {"ks": ks, "wicd": curve, "gradient": grad.tolist(), "knee": None if knee is None else int(knee)}
    if knee is not None:
        labels = fcluster(z, int(knee), criterion="maxclust")
        out["partition"] = partition(labels)
        out["score"] = wicd(d, labels)
    return d, out


def kneed_cases():
    rng = np.random.default_rng(0)
    cases = []
    x = list(range(1, 31))
    for i in range(12):
        # Saturating curves with noise, plus a few harder shapes.
        t = np.array(x, dtype=float)
        y = (1 - np.exp(-t / rng.uniform(2, 10))) + rng.normal(0, 0.02 * (i % 4), len(x))
        if i % 3 == 2:
            y = np.log(t) + rng.normal(0, 0.05, len(x))
        for curve in ("concave", "convex"):
            for direction in ("increasing", "decreasing"):
                yy = y if direction == "increasing" else y[::-1]
                yy = yy if curve == "concave" else -yy + yy.max()
                knee = KneeLocator(x, yy, S=1.0, curve=curve, direction=direction).knee
                cases.append({"x": x, "y": yy.tolist(), "curve": curve, "direction": direction,
                              "knee": None if knee is None else float(knee)})
    # No knee: a straight line, and a convex curve sought as concave.
    for y in (np.array(x, dtype=float), np.array(x, dtype=float) ** 2):
        knee = KneeLocator(x, y, S=1.0, curve="concave", direction="increasing").knee
        cases.append({"x": x, "y": y.tolist(), "curve": "concave", "direction": "increasing",
                      "knee": None if knee is None else float(knee)})
    return cases


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    index = json.loads((src / "index.json").read_text())
    (dst / "distances").mkdir(parents=True, exist_ok=True)
    layers = []
    for layer in index["layers"]:
        x = np.load(src / layer["file"])
        x = x.reshape(len(x), -1)
        d, ref = layer_reference(x)
        np.save(dst / "distances" / layer["file"], d.astype(np.float32))
        layers.append({"name": layer["tensor"], "file": layer["file"], **ref})
    input_name = index["layers"][0]["tensor"]
    scored = [(l["score"], l["name"]) for l in layers if "score" in l and l["name"] != input_name]
    reference = {
        "generator": f"make_cluster_reference.py (numpy {np.__version__}, scipy {scipy.__version__}, "
                     f"kneed {kneed.__version__})",
        "images": index["images"],
        "layers": layers,
        "best_layer": min(scored)[1] if scored else None,
        "kneed": kneed_cases(),
    }
    (dst / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    print(f"{len(layers)} layers; best layer {reference['best_layer']}")
    for l in layers:
        print(f"  {l['name']:<45} k={l['knee']} score={l.get('score')}")


if __name__ == "__main__":
    main()
