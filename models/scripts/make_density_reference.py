#!/usr/bin/env python3
"""Reference run of HDBSCAN (the Python `hdbscan` package) for hudd's density clustering (issue 16).

Output: tests/fixtures/cluster/density/reference.json with

- `blobs`: 330 seeded points in 8 dimensions (4 Gaussian blobs of different sizes and spreads, plus
  30 uniform noise points) and HDBSCAN's labels for min_cluster_size 5 and 15 (-1: noise);
- `layers`: for every layer of the heatmaps fixture (tests/fixtures/cluster/heatmaps, the 44
  error-inducing Fashion-MNIST images), HDBSCAN's labels of the flattened heatmaps for
  min_cluster_size 3 and 5.

HDBSCAN's defaults otherwise: min_samples = min_cluster_size, alpha 1, Euclidean metric,
excess-of-mass cluster selection, no single cluster.

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install numpy hdbscan
    /tmp/refenv/bin/python models/scripts/make_density_reference.py tests/fixtures/cluster/heatmaps \
        tests/fixtures/cluster/density/reference.json
"""
import json
import sys
from importlib.metadata import version
from pathlib import Path

import hdbscan
import numpy as np


def labels(x, min_cluster_size):
    return hdbscan.HDBSCAN(min_cluster_size=min_cluster_size).fit(x.astype(np.float64)).labels_.tolist()


def blobs():
    rng = np.random.default_rng(16)
    centres = rng.uniform(-20, 20, size=(4, 8))
    parts = [c + rng.normal(0, s, size=(n, 8)) for c, n, s in zip(centres, (120, 80, 60, 40), (1.0, 1.5, 0.7, 2.0))]
    parts.append(rng.uniform(-30, 30, size=(30, 8)))
    x = np.round(np.concatenate(parts), 6)
    return {"points": x.tolist(), "labels": {str(m): labels(x, m) for m in (5, 15)}}


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    index = json.loads((src / "index.json").read_text())
    layers = []
    for layer in index["layers"]:
        x = np.load(src / layer["file"]).astype(np.float64)
        x = x.reshape(len(x), -1)
        layers.append({"name": layer["tensor"], "file": layer["file"],
                       "labels": {str(m): labels(x, m) for m in (3, 5)}})
    reference = {
        "generator": f"make_density_reference.py (numpy {np.__version__}, hdbscan {version('hdbscan')})",
        "blobs": blobs(),
        "layers": layers,
    }
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(reference) + "\n")


if __name__ == "__main__":
    main()
