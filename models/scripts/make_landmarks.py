#!/usr/bin/env python3
"""Train the landmark reference model (KPNet-like, direct coordinates) on hudd's simulator data.

    cargo build --release -p hudd-cli
    .venv-torch/bin/python models/scripts/make_landmarks.py

Writes models/landmarks/landmarks_cnn.onnx (dynamic batch, input `image` 1×64×64 in [0, 1], output
`landmarks`: pupil x, y, inner corner x, y, outer corner x, y in pixels) and model-card.json. Data:
`hudd simulate landmarks --train 8000 --test 2000 --improvement 0 --train-causes natural --seed 3`.
"""
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from make_gaze import seed_everything, simulate  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "models" / "landmarks"
SEED = 0
DATA_SEED = 3
SIZES = {"train": 8000, "test": 2000}
EPOCHS = 12
BATCH = 64
LR = 1e-3
THRESHOLD = 4.0


class KpNet(nn.Module):
    """Convolutions, then dense layers regressing the 3 keypoints (scaled to pixels at the end)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.head = nn.Sequential(nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 6))

    def forward(self, x):
        return self.head(self.flatten(self.features(x))) * 64.0


def load(split_dir):
    rows = list(csv.DictReader(open(split_dir / "manifest.csv")))
    x = np.stack([np.asarray(Image.open(split_dir / r["path"]), dtype=np.float32) / 255.0 for r in rows])[:, None]
    y = np.array([[float(v) for v in r["label"].split()] for r in rows], dtype=np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def keypoint_distance(pred, y):
    return (pred - y).reshape(len(y), 3, 2).norm(dim=2).mean(dim=1)


def main():
    seed_everything(SEED)
    (xtr, ytr), (xte, yte) = simulate("landmarks", SIZES, DATA_SEED, load)
    model = KpNet()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    t0 = time.time()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            loss = keypoint_distance(model(xtr[idx]), ytr[idx]).mean()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            d = keypoint_distance(model(xte), yte)
        print(f"epoch {epoch + 1}: test mean keypoint distance {d.mean():.3f} px, "
              f"Wrong (> {THRESHOLD} px) {int((d > THRESHOLD).sum())}/{len(d)}", flush=True)
    model.eval()
    with torch.no_grad():
        d = keypoint_distance(model(xte), yte)
    OUT.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(2, 1, 64, 64),), str(OUT / "landmarks_cnn.onnx"), dynamo=False,
                      opset_version=17, input_names=["image"], output_names=["landmarks"],
                      dynamic_axes={"image": {0: "batch"}, "landmarks": {0: "batch"}})
    card = {
        "model": "landmarks_cnn.onnx",
        "architecture": "KPNet-like, direct coordinates: conv5x5(32)-pool-conv3x3(64)-pool-conv3x3(64)-pool-fc128-fc6, ReLU, x64",
        "input": "image: N x 1 x 64 x 64, grayscale in [0, 1] (pixel / 255)",
        "outputs": "pupil x, y, inner corner x, y, outer corner x, y (pixels)",
        "training_command": "cargo build --release -p hudd-cli && .venv-torch/bin/python models/scripts/make_landmarks.py",
        "data": f"hudd simulate landmarks --train {SIZES['train']} --test {SIZES['test']} --improvement 0 --train-causes natural --seed {DATA_SEED}",
        "seed": SEED, "epochs": EPOCHS, "batch": BATCH, "optimizer": f"Adam, lr {LR}",
        "loss": "mean keypoint distance", "torch": torch.__version__,
        "train_seconds": round(time.time() - t0, 1),
        "test_images": len(yte),
        "test_mean_keypoint_distance_px": float(d.mean()),
        "threshold_px": THRESHOLD,
        "test_errors": int((d > THRESHOLD).sum()),
    }
    (OUT / "model-card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps({k: card[k] for k in ("test_mean_keypoint_distance_px", "test_errors", "train_seconds")}))


if __name__ == "__main__":
    main()
