#!/usr/bin/env python3
"""Reference for hudd's UMAP graph (issue 16): umap-learn's smooth_knn_dist and fuzzy_simplicial_set.

Input: the heatmaps fixture (tests/fixtures/cluster/heatmaps, 44 images). Output:
tests/fixtures/cluster/umap/reference.json — for two layers and n_neighbors 5 and 15: the exact
k nearest neighbours (the point itself first; numpy's stable argsort of the scipy distances), then
umap-learn's sigmas, rhos and the symmetrised graph (`set_op_mix_ratio` 1, `local_connectivity` 1)
as (row, column, weight) triples; and the labels of the whole feature path (umap-learn, then
hdbscan) on the seeded blobs of tests/fixtures/cluster/density/reference.json and on every
layer of the heatmaps fixture (three seeds each).

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install numpy scipy umap-learn hdbscan scikit-learn
    /tmp/refenv/bin/python models/scripts/make_umap_reference.py tests/fixtures/cluster/heatmaps \
        tests/fixtures/cluster/umap/reference.json
"""
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
from scipy.spatial.distance import pdist, squareform
from umap.umap_ import fuzzy_simplicial_set

LAYERS = ("/features/features.5/MaxPool_output_0", "/classifier/classifier.0/Gemm_output_0")


def main():
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    index = json.loads((src / "index.json").read_text())
    cases = []
    for layer in index["layers"]:
        if layer["tensor"] not in LAYERS:
            continue
        x = np.load(src / layer["file"]).astype(np.float64)
        x = x.reshape(len(x), -1)
        d = squareform(pdist(x))
        n = len(d)
        for k in (5, 15):
            # The point itself first, then by distance (stable: ties by index).
            order = np.array([[i] + [j for j in np.argsort(d[i], kind="stable") if j != i][: k - 1] for i in range(n)])
            dists = np.take_along_axis(d, order, axis=1)
            dists[:, 0] = 0.0
            graph, sigmas, rhos = fuzzy_simplicial_set(
                x, k, np.random.RandomState(0), "euclidean", knn_indices=order, knn_dists=dists)
            g = graph.tocoo()
            cases.append({"name": layer["tensor"], "file": layer["file"], "k": k,
                          "indices": order.tolist(), "sigmas": np.asarray(sigmas).tolist(),
                          "rhos": np.asarray(rhos).tolist(),
                          "graph": sorted([int(r), int(c), float(v)] for r, c, v in zip(g.row, g.col, g.data))})
    # The whole feature path on the seeded blobs of make_density_reference.py: UMAP (15 neighbours,
    # 2 components, min_dist 0.1, seed 0) then HDBSCAN (min_cluster_size 15).
    import hdbscan
    import umap
    blobs = json.loads((dst.parent.parent / "density" / "reference.json").read_text())["blobs"]["points"]
    embedded = umap.UMAP(n_neighbors=15, n_components=2, min_dist=0.1, random_state=0).fit_transform(np.array(blobs))
    pipeline = hdbscan.HDBSCAN(min_cluster_size=15).fit(embedded).labels_.tolist()
    # `hudd cluster --method hdbscan` on the heatmaps themselves, one trial (euclidean, 2 components,
    # min_dist 0, min_cluster_size 5): umap-learn + hdbscan per layer under seeds 0, 1, 2. On 44
    # images some layers split differently from seed to seed; the test compares only the layers
    # where umap-learn's three partitions agree ("stable").
    heatmap_path = []
    for layer in index["layers"]:
        x = np.load(src / layer["file"]).astype(np.float64)
        x = x.reshape(len(x), -1)
        runs = []
        for seed in (0, 1, 2):
            e = umap.UMAP(n_neighbors=15, n_components=2, min_dist=0.0, random_state=seed).fit_transform(x)
            runs.append(hdbscan.HDBSCAN(min_cluster_size=5).fit(e).labels_.tolist())
        from sklearn.metrics import adjusted_rand_score
        stable = all(adjusted_rand_score(runs[0], r) == 1.0 for r in runs[1:])
        heatmap_path.append({"name": layer["tensor"], "labels": runs, "stable": bool(stable)})
    reference = {"generator": f"make_umap_reference.py (numpy {np.__version__}, umap-learn {version('umap-learn')}, "
                              f"hdbscan {version('hdbscan')})",
                 "cases": cases, "blobs_umap_hdbscan": pipeline, "heatmap_feature_path": heatmap_path}
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(reference) + "\n")


if __name__ == "__main__":
    main()
