#!/usr/bin/env python3
"""Python side of `hudd bench cluster --feature-path`: umap-learn + hdbscan on the same rows, timed.

The same trial as hudd's bench: UMAP (15 neighbours, 2 components, min_dist 0, euclidean,
init "pca" as hudd starts its layout, random_state 0 — which makes umap-learn single-threaded, as
hudd's seeded layout is) then HDBSCAN (min_cluster_size 15, min_samples = min_cluster_size).
The first call compiles umap-learn's numba kernels; a warm-up on 500 rows is run and not timed.

    /tmp/refenv/bin/pip install numpy umap-learn hdbscan
    target/release/hudd bench cluster --synthetic 4000 --dims 4096 --feature-path --write-npy /tmp/syn4k.npy
    /tmp/refenv/bin/python models/scripts/bench_feature_path.py /tmp/syn4k.npy
"""
import resource
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def run(x):
    import hdbscan
    import umap
    t = time.perf_counter()
    e = umap.UMAP(n_neighbors=15, n_components=2, min_dist=0.0, init="pca", random_state=0).fit_transform(x)
    t_umap = time.perf_counter() - t
    t = time.perf_counter()
    labels = hdbscan.HDBSCAN(min_cluster_size=15).fit(e).labels_
    return t_umap, time.perf_counter() - t, labels


def main():
    x = np.load(sys.argv[1], mmap_mode="r")
    x = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)
    run(x[:500])
    t_umap, t_hdbscan, labels = run(x)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"N {len(x)} D {x.shape[1]}: umap {t_umap:.2f} s, hdbscan {t_hdbscan:.2f} s, "
          f"clusters {labels.max() + 1}, noise {(labels < 0).sum()}, peak {peak:.2f} GiB")


if __name__ == "__main__":
    main()
