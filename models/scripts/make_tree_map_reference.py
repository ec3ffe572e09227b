#!/usr/bin/env python3
"""Reference for the tree and the 2-D map that hudd stores in clusters.json and the report (issue 15).

Input: the heatmaps fixture of make_cluster_reference.py (tests/fixtures/cluster/heatmaps).
Output: tests/fixtures/cluster/reference/tree_map.json — per layer

- `heights`: the merge heights of scipy's Ward linkage on the rows of the row-max-normalised
  distance matrix (HUDD's tree; the same linkage as make_cluster_reference.py), in merge order;
- `mds`: classical (Torgerson) MDS of the heatmap distances by numpy's eigh: the two largest
  eigenvalues of B = -1/2 J D^2 J, the share of trace(B) they hold, and the points (sign and
  rotation are not fixed by the method, so tests compare the points' pairwise distances).

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install numpy scipy==1.17.1
    /tmp/refenv/bin/python models/scripts/make_tree_map_reference.py tests/fixtures/cluster/heatmaps \
        tests/fixtures/cluster/reference/tree_map.json
"""
import json
import sys
from pathlib import Path

import numpy as np
import scipy
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist, squareform


def classical_mds(d):
    n = len(d)
    j = np.eye(n) - np.ones((n, n)) / n
    b = -0.5 * j @ (d * d) @ j
    values, vectors = np.linalg.eigh(b)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    top = np.clip(values[:2], 0, None)
    points = vectors[:, :2] * np.sqrt(top)
    return {
        "eigenvalues": values[:3].tolist(),
        "explained": float(top.sum() / np.trace(b)),
        "points": points.tolist(),
    }


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    index = json.loads((src / "index.json").read_text())
    layers = []
    for layer in index["layers"]:
        x = np.load(src / layer["file"]).astype(np.float64)
        x = x.reshape(len(x), -1)
        d = squareform(pdist(x))
        dn = d / d.max(axis=1, keepdims=True)
        z = linkage(dn, method="ward")
        layers.append({"name": layer["tensor"], "file": layer["file"], "heights": z[:, 2].tolist(),
                       "mds": classical_mds(d)})
    reference = {
        "generator": f"make_tree_map_reference.py (numpy {np.__version__}, scipy {scipy.__version__})",
        "layers": layers,
    }
    dst.write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
