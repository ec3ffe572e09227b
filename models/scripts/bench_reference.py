#!/usr/bin/env python3
"""Python reference for `hudd bench evaluate`: the same work (decode PNGs, scale, run the ONNX
model in batches, arg-max) with PIL + numpy + onnxruntime, timed the same way (median of N runs after
one warm-up). Figures go side by side with hudd's in BENCHMARKS.md.

    .venv-torch/bin/python models/scripts/bench_reference.py MODEL.onnx DATA [--repeat 3]
    .venv-torch/bin/python models/scripts/bench_reference.py /tmp/bench/resnet18.onnx DATA --size 224 --rgb
"""
import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def images(data):
    paths = []
    for split in ("train", "test", "improvement"):
        d = Path(data) / split
        if d.is_dir():
            paths += sorted(p for p in d.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    return paths


def load(path, size, rgb):
    im = Image.open(path).convert("RGB" if rgb else "L")
    if size and im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float32)
    return a.transpose(2, 0, 1) if rgb else a[None]


def run(sess, paths, batch, size=None, rgb=False):
    name = sess.get_inputs()[0].name
    predicted = []
    for i in range(0, len(paths), batch):
        x = np.stack([load(p, size, rgb) for p in paths[i:i + batch]]) * np.float32(1 / 255.0)
        predicted.append(sess.run(None, {name: x})[0].argmax(1))
    return np.concatenate(predicted)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch-sizes", default="1,16,64")
    ap.add_argument("--size", type=int, help="resize to SIZE x SIZE (bilinear), as hudd's `resize = \"stretch\"`")
    ap.add_argument("--rgb", action="store_true", help="three channels (the images converted to RGB)")
    a = ap.parse_args()
    paths = images(a.data)
    print(f"onnxruntime {ort.__version__}, {len(paths)} images, {os.cpu_count()} cpus")
    print(f"{'threads':>7} {'batch':>6} {'median_s':>10} {'images/s':>10}")
    for threads in map(int, a.threads.split(",")):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
        for batch in map(int, a.batch_sizes.split(",")):
            times = []
            for i in range(a.repeat + 1):
                t = time.perf_counter()
                run(sess, paths, batch, a.size, a.rgb)
                if i:
                    times.append(time.perf_counter() - t)
            m = statistics.median(times)
            print(f"{threads:>7} {batch:>6} {m:>10.3f} {len(paths) / m:>10.0f}")


if __name__ == "__main__":
    main()
