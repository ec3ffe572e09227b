#!/usr/bin/env python3
"""PyTorch side of the retraining benchmark (BENCHMARKS.md, `hudd retrain`): one epoch of the same
fine-tuning that `hudd retrain` does, on the same model, images, batch size and optimiser.

The gaze model (models/scripts/make_gaze.py's GazeNet) is rebuilt in PyTorch and given the ONNX
file's weights; one epoch of SGD (lr 1e-3, momentum 0.9, weight decay 5e-4, cross-entropy, dropout
active) runs over the images of DATA/train/manifest.csv in a seeded shuffled order, batch 128. As
hudd does, each batch's PNG files are decoded when the batch is needed ("decoding included"); the
same epoch on tensors decoded beforehand is timed too.

    .venv-torch/bin/python models/scripts/bench_retrain.py --data DATA [--threads 2] [--repeats 3]

Prints one JSON line: seconds per epoch (each repeat), images, torch version, threads.
"""
import argparse
import csv
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def gaze_net():
    spec = importlib.util.spec_from_file_location("make_gaze", ROOT / "models/scripts/make_gaze.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.GazeNet(), module.CLASSES


def decode(paths):
    return torch.from_numpy(
        np.stack([np.asarray(Image.open(p), dtype=np.float32) / 255.0 for p in paths])[:, None])


def epoch(model, paths, labels, order, batch, predecoded=None):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    t0 = time.perf_counter()
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        x = predecoded[idx] if predecoded is not None else decode([paths[j] for j in idx])
        opt.zero_grad()
        loss = loss_fn(model(x), labels[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--model", default=ROOT / "models/gaze/gaze_cnn.onnx", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net, classes = gaze_net()
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(str(args.model)).graph.initializer}
    rows = list(csv.DictReader(open(args.data / "train" / "manifest.csv")))
    paths = [args.data / "train" / r["path"] for r in rows]
    labels = torch.tensor([classes.index(r["label"]) for r in rows])
    order = torch.randperm(len(rows))
    with_decoding, predecoded = [], []
    everything = decode(paths)
    for _ in range(args.repeats):
        net.load_state_dict(weights)
        with_decoding.append(epoch(net, paths, labels, order, args.batch))
        net.load_state_dict(weights)
        predecoded.append(epoch(net, paths, labels, order, args.batch, everything))
    print(json.dumps({
        "images": len(rows),
        "batch": args.batch,
        "threads": args.threads,
        "torch": torch.__version__,
        "epoch_seconds_decoding_included": [round(s, 3) for s in with_decoding],
        "epoch_seconds_predecoded": [round(s, 3) for s in predecoded],
    }))


if __name__ == "__main__":
    main()
