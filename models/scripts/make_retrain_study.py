#!/usr/bin/env python3
"""The retraining study's real dataset (issue 33, BENCHMARKS.md "Retraining study").

A Fashion-MNIST CNN (the architecture of models/fashion-mnist/fmnist_cnn.onnx) trained on 12,000
training images only, so that 18,000 other training images are unseen improvement images:

    apt-get install dataset-fashion-mnist
    .venv-torch/bin/python models/scripts/make_retrain_study.py OUT

Writes (nothing in the repository)
- OUT/fmnist12k.onnx                 TorchScript exporter, opset 17, dynamic batch
- OUT/hudd.toml                      models/fashion-mnist/hudd.toml
- OUT/card.json                      sizes, seed, accuracies
- OUT/data/{train,test,improvement}/<class>/<index>.png
      train: 12,000 seeded-random training images (the model's training set),
      improvement: 18,000 others from the training file,
      test: the 10,000 t10k images.
About 4 minutes on 2 cores.
"""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fashion_mnist as fm  # noqa: E402

N_TRAIN = 12_000
N_IMPROVEMENT = 18_000
# More passes than the reference model's 3: 12,000 images reach about 87 % test accuracy.
EPOCHS = 10


def write_pngs(root, images, labels, indices):
    for i in indices:
        d = root / fm.CLASSES[labels[i]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(d / f"{i}.png")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    if out.exists():
        sys.exit(f"{out} exists; give a new folder")
    torch.manual_seed(fm.SEED)
    torch.set_num_threads(2)
    x = fm.read_idx("train-images-idx3-ubyte.gz")
    y = fm.read_idx("train-labels-idx1-ubyte.gz")
    xt = fm.read_idx("t10k-images-idx3-ubyte.gz")
    yt = fm.read_idx("t10k-labels-idx1-ubyte.gz")
    order = np.random.default_rng(fm.SEED).permutation(len(y))
    train_ix = np.sort(order[:N_TRAIN])
    improvement_ix = np.sort(order[N_TRAIN:N_TRAIN + N_IMPROVEMENT])
    fm.EPOCHS = EPOCHS
    model = fm.FashionCnn()
    fm.train(model, x[train_ix], y[train_ix])
    model.eval()
    card = {
        "architecture": "models/fashion-mnist/fmnist_cnn.onnx's",
        "seed": fm.SEED,
        "epochs": fm.EPOCHS,
        "optimizer": f"Adam lr {fm.LR}, batch {fm.BATCH}",
        "train_images": N_TRAIN,
        "improvement_images": N_IMPROVEMENT,
        "test_images": len(yt),
        "train_accuracy": fm.accuracy(model, x[train_ix], y[train_ix]),
        "improvement_accuracy": fm.accuracy(model, x[improvement_ix], y[improvement_ix]),
        "test_accuracy": fm.accuracy(model, xt, yt),
        "torch": torch.__version__,
    }
    out.mkdir(parents=True)
    torch.onnx.export(
        model, fm.to_input(xt[:1]), out / "fmnist12k.onnx", dynamo=False, opset_version=17,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
    shutil.copy(fm.MODEL_DIR / "hudd.toml", out / "hudd.toml")
    write_pngs(out / "data" / "train", x, y, train_ix)
    write_pngs(out / "data" / "improvement", x, y, improvement_ix)
    write_pngs(out / "data" / "test", xt, yt, range(len(yt)))
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
