#!/usr/bin/env python3
"""Reference for HUDD's ClosestU allocation (../shared/docs/hudd-reference.md §4), written from the
definition and independently of hudd's implementation: repeatedly, among the images not yet
assigned, find each one's closest cluster that still has room, and assign the globally closest such
(image, cluster) pair; stop when every quota is filled or no image is left. Quotas are
ceil(2 × test members). Ties go to the lower image index, then the lower cluster index.

Writes tests/fixtures/assign/closest_u.json: several cases (distance matrices image × cluster,
test-member counts) with the expected picks in selection order. Standard library only:

    python3 models/scripts/make_assign_reference.py
"""
import json
import math
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "assign" / "closest_u.json"


def closest_u(dist, members):
    quotas = [math.ceil(2 * m) for m in members]
    fill = [0] * len(quotas)
    free = set(range(len(dist)))
    picks = []
    while free and any(f < q for f, q in zip(fill, quotas)):
        best = None
        for i in sorted(free):
            room = [(d, c) for c, d in enumerate(dist[i]) if fill[c] < quotas[c]]
            if not room:
                continue
            d, c = min(room)
            if best is None or (d, i, c) < best:
                best = (d, i, c)
        if best is None:
            break
        d, i, c = best
        fill[c] += 1
        free.remove(i)
        picks.append({"image": i, "cluster": c, "distance": d, "rank": fill[c]})
    return quotas, picks


def main():
    rng = random.Random(20261202)
    cases = []
    # Small hand-made case: image 0 is closest to cluster 0 for everyone; cluster 0 fills up.
    cases.append({"name": "overflow to the next-closest cluster",
                  "members": [1, 2],
                  "distances": [[0.1, 0.9], [0.2, 0.3], [0.3, 0.35], [0.4, 5.0], [5.0, 0.5], [7.0, 8.0], [1500.0, 2000.0]]})
    # Distances above 1000 (the original's sentinel) must not be special.
    cases.append({"name": "distances beyond 1000", "members": [2, 1],
                  "distances": [[1000.0 + rng.random() * 5000, 1000.0 + rng.random() * 5000] for _ in range(9)]})
    for k in range(3):
        n_img, n_clu = rng.randint(20, 60), rng.randint(2, 6)
        members = [rng.randint(2, 6) for _ in range(n_clu)]
        dist = [[round(rng.uniform(0.0, 10.0), 6) for _ in range(n_clu)] for _ in range(n_img)]
        cases.append({"name": f"random {k}", "members": members, "distances": dist})
    # Fewer images than the quotas: every image is assigned.
    cases.append({"name": "more room than images", "members": [5, 5],
                  "distances": [[rng.random(), rng.random()] for _ in range(7)]})
    for c in cases:
        c["quotas"], c["picks"] = closest_u(c["distances"], c["members"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    print(f"{len(cases)} cases: {OUT}")


if __name__ == "__main__":
    main()
