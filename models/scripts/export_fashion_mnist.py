#!/usr/bin/env python3
"""Writes the 10,000 Fashion-MNIST test images (Debian package dataset-fashion-mnist) as PNG in
hudd's ImageFolder layout, for benchmarks: OUT/test/<class>/<index>.png.

    .venv-torch/bin/python models/scripts/export_fashion_mnist.py /tmp/fmnist-full
"""
import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image

D = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def idx(name):
    raw = gzip.open(D / name).read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def main():
    x, y = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
    out = Path(sys.argv[1])
    for i, (im, label) in enumerate(zip(x, y)):
        p = out / "test" / CLASSES[label] / f"{i:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im, "L").save(p)


if __name__ == "__main__":
    main()
