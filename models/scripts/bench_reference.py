#!/usr/bin/env python3
"""Python reference for `hudd bench evaluate`: the same work (decode PNGs, scale, run the ONNX
model in batches, arg-max) with PIL + numpy + onnxruntime, timed the same way (median of N runs after
one warm-up). Figures go side by side with hudd's in BENCHMARKS.md.

    .venv-torch/bin/python models/scripts/bench_reference.py MODEL.onnx DATA [--repeat 3]
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


def run(sess, paths, batch):
    name = sess.get_inputs()[0].name
    predicted = []
    for i in range(0, len(paths), batch):
        x = np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32) for p in paths[i:i + batch]])
        x = (x * np.float32(1 / 255.0))[:, None, :, :]
        predicted.append(sess.run(None, {name: x})[0].argmax(1))
    return np.concatenate(predicted)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batch-sizes", default="1,16,64")
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
                run(sess, paths, batch)
                if i:
                    times.append(time.perf_counter() - t)
            m = statistics.median(times)
            print(f"{threads:>7} {batch:>6} {m:>10.3f} {len(paths) / m:>10.0f}")


if __name__ == "__main__":
    main()
