#!/usr/bin/env python3
"""Zennit reference relevance for hudd's LRP engine (the outside oracle).

For every preset hudd offers, computes with Zennit the relevance at every module output (and at the
input) of the Fashion-MNIST CNN, with the weights read from the committed ONNX file, for a few
committed test images; writes them as .npy keyed by the ONNX tensor names of the same model.

    .venv-torch/bin/python models/scripts/make_lrp_reference.py

Writes tests/fixtures/lrp/fmnist/<preset>/*.npy and tests/fixtures/lrp/fmnist/index.json.
Start relevance (HUDD's): the predicted class's logit, every other logit zeroed.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from make_fashion_mnist import FashionCnn, to_input  # noqa: E402
from make_lrp_models import reference  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
N_IMAGES = 4


def load_model(onnx_path):
    model = FashionCnn()
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(str(onnx_path)).graph.initializer}
    model.load_state_dict({k: weights[k] for k in model.state_dict()})
    return model.eval()


def onnx_tensor_names(onnx_path):
    """Module name -> ONNX output tensor name (the TorchScript exporter names nodes /a/a.0/Op)."""
    g = onnx.load(str(onnx_path)).graph
    names = {}
    for node in g.node:
        parts = node.name.strip("/").split("/")
        if len(parts) >= 2:
            names[parts[-2]] = node.output[0]
    return names


def main():
    onnx_path = ROOT / "models" / "fashion-mnist" / "fmnist_cnn.onnx"
    model = load_model(onnx_path)
    tensor_of = onnx_tensor_names(onnx_path)
    tensor_of["classifier.3"] = "logits"
    ref = json.loads((FIX / "fmnist" / "reference" / "reference.json").read_text())
    # The first images of the test subset in row order, plus the first Wrong ones (HUDD explains errors).
    images = ref["splits"]["test"]["images"]
    x_all = to_input(np.stack([np.asarray(Image.open(FIX / "fmnist" / p)) for p in images]))
    with torch.no_grad():
        pred = model(x_all).argmax(1).numpy()
    labels = [p.split("/")[1] for p in images]
    classes = ref["classes"]
    wrong = [i for i, (p, l) in enumerate(zip(pred, labels)) if classes[p] != l]
    chosen = sorted(set([0] + wrong[:N_IMAGES - 1]))[:N_IMAGES]
    chosen_paths = [images[i] for i in chosen]
    x = x_all[chosen]

    reference("fmnist", model, tensor_of, x, lambda: [], images=chosen_paths,
              extra={"model": "models/fashion-mnist/fmnist_cnn.onnx"})


if __name__ == "__main__":
    main()
