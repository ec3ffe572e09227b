#!/usr/bin/env python3
"""Train the gaze reference model on data from hudd's own simulator and export it to ONNX.

Run once from the repository root (the ONNX file and model card are committed):

    cargo build --release -p hudd-cli
    .venv-torch/bin/pip install -r models/scripts/requirements-torch.txt
    .venv-torch/bin/python models/scripts/make_gaze.py

Writes models/gaze/gaze_cnn.onnx (dynamic batch, input `image` 1×64×64 in [0, 1], output `logits`
in the class order of models/gaze/hudd.toml) and models/gaze/model-card.json. The training data is
`hudd simulate gaze --train 12000 --test 3000 --improvement 0 --train-causes rare --seed 1`
(seed 1: the demo and the tests use other seeds, so the model never saw their images; rare: the
planted causes at a fifth of their natural rate, the HUDD paper's scenario of a training set that
seldom shows the unsafe conditions, so that the model errs on them and retraining has something
to fix).
"""
import csv
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "models" / "gaze"
CLASSES = ["center", "right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right"]
SEED = 0
DATA_SEED = 1
TRAIN_CAUSES = "rare"
SIZES = {"train": 12000, "test": 3000}
EPOCHS = 10
BATCH = 64
LR = 1e-3


class GazeNet(nn.Module):
    """AlexNet-like, for 64×64 grayscale eyes."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 96, 3, padding=1), nn.ReLU(),
            nn.Conv2d(96, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Dropout(0.3),
                                        nn.Linear(128, len(CLASSES)))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def load(split_dir):
    rows = list(csv.DictReader(open(split_dir / "manifest.csv")))
    x = np.stack([np.asarray(Image.open(split_dir / r["path"]), dtype=np.float32) / 255.0 for r in rows])[:, None]
    y = np.array([CLASSES.index(r["label"]) for r in rows])
    return torch.from_numpy(x), torch.from_numpy(y)


def seed_everything(seed):
    """Seeds Python, numpy and torch and makes torch deterministic."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def simulate(task, sizes, seed, load_split, train_causes="natural"):
    """Runs `hudd simulate TASK` (release build) into a temporary folder and returns
    `load_split(train dir), load_split(test dir)`."""
    hudd = ROOT / "target" / "release" / "hudd"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / task
        subprocess.run([str(hudd), "simulate", task, "--train", str(sizes["train"]), "--test", str(sizes["test"]),
                        "--improvement", "0", "--train-causes", train_causes, "--seed", str(seed), "-o", str(data), "-q"], check=True)
        return load_split(data / "train"), load_split(data / "test")


def main():
    seed_everything(SEED)
    (xtr, ytr), (xte, yte) = simulate("gaze", SIZES, DATA_SEED, load, TRAIN_CAUSES)
    model = GazeNet()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xtr))
        total = 0.0
        for i in range(0, len(xtr), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xtr[idx]), ytr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1}: loss {total / len(xtr):.4f}, test accuracy {acc:.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        pred = model(xte).argmax(1)
    per_class = {c: {"total": int((yte == k).sum()), "correct": int(((yte == k) & (pred == k)).sum())}
                 for k, c in enumerate(CLASSES)}
    OUT.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(2, 1, 64, 64),), str(OUT / "gaze_cnn.onnx"), dynamo=False,
                      opset_version=17, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    card = {
        "model": "gaze_cnn.onnx",
        "architecture": "AlexNet-like: conv5x5(32)-pool-conv3x3(64)-pool-conv3x3(96)-conv3x3(64)-pool-fc128-dropout-fc9, ReLU",
        "input": "image: N x 1 x 64 x 64, grayscale in [0, 1] (pixel / 255)",
        "classes": CLASSES,
        "training_command": "cargo build --release -p hudd-cli && .venv-torch/bin/python models/scripts/make_gaze.py",
        "data": f"hudd simulate gaze --train {SIZES['train']} --test {SIZES['test']} --improvement 0 --train-causes {TRAIN_CAUSES} --seed {DATA_SEED}",
        "seed": SEED,
        "epochs": EPOCHS,
        "batch": BATCH,
        "optimizer": f"Adam, lr {LR}",
        "torch": torch.__version__,
        "train_seconds": round(time.time() - t0, 1),
        "test_images": len(yte),
        "test_accuracy": float((pred == yte).float().mean()),
        "test_errors": int((pred != yte).sum()),
        "per_class": per_class,
    }
    (OUT / "model-card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps({k: card[k] for k in ("test_accuracy", "test_errors", "train_seconds")}))


if __name__ == "__main__":
    sys.exit(main())
