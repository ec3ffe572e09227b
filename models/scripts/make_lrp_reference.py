#!/usr/bin/env python3
"""Zennit reference relevance for hudd's LRP engine (the outside oracle).

For every preset hudd offers, computes with Zennit the relevance at every module output (and at the
input) of the Fashion-MNIST CNN, with the weights read from the committed ONNX file, for a few
committed test images; writes them as .npy keyed by the ONNX tensor names of the same model.

    .venv-torch/bin/python models/scripts/make_lrp_reference.py

Writes tests/fixtures/lrp/fmnist/<preset>/*.npy and tests/fixtures/lrp/fmnist/index.json.
Start relevance (HUDD's): the predicted class's logit, every other logit zeroed.
"""
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from PIL import Image
from zennit.composites import (EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat,
                               LayerMapComposite, layer_map_base)
from zennit.rules import Epsilon, ZPlus

sys.path.insert(0, str(Path(__file__).parent))
from make_fashion_mnist import FashionCnn, to_input  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "lrp" / "fmnist"
N_IMAGES = 4


def hudd_composite():
    """The original HUDD toolset's rules: z+ without bias for dense layers, epsilon 1e-9 for convs."""
    return LayerMapComposite(layer_map=layer_map_base(1e-9) + [
        (torch.nn.Conv2d, Epsilon(epsilon=1e-9)),
        (torch.nn.Linear, ZPlus(stabilizer=1e-9, zero_params="bias")),
    ])


PRESETS = {
    "hudd": hudd_composite,
    "epsilon-plus": lambda: EpsilonPlus(),
    "epsilon-plus-flat": lambda: EpsilonPlusFlat(),
    # Inputs are pixel/255: bounds [0, 1].
    "epsilon-gamma-box": lambda: EpsilonGammaBox(low=0.0, high=1.0),
    "epsilon-alpha2-beta1": lambda: EpsilonAlpha2Beta1(),
}


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


def sanitize(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


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

    index = {"model": "models/fashion-mnist/fmnist_cnn.onnx", "images": chosen_paths,
             "start": "predicted-logit", "zennit": importlib.metadata.version("zennit"),
             "torch": torch.__version__, "presets": {}}
    for preset, make in PRESETS.items():
        outputs = {}

        def keep(name):
            def hook(module, inp, out):
                out.retain_grad()
                outputs[name] = out
            return hook

        handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if n in tensor_of]
        composite = make()
        xin = x.clone().requires_grad_(True)
        with composite.context(model) as modified:
            logits = modified(xin)
            onehot = torch.zeros_like(logits)
            onehot[torch.arange(len(logits)), logits.argmax(1)] = 1.0
            start = (logits * onehot).detach()
            logits.backward(gradient=start)
        for h in handles:
            h.remove()
        files = {"image": f"{preset}/image.npy"}
        (OUT / preset).mkdir(parents=True, exist_ok=True)
        np.save(OUT / preset / "image.npy", xin.grad.numpy().astype(np.float32))
        for module, out in outputs.items():
            name = tensor_of[module]
            f = f"{preset}/{sanitize(name)}.npy"
            np.save(OUT / f, out.grad.numpy().astype(np.float32))
            files[name] = f
        index["presets"][preset] = files
        total_in = float(xin.grad.sum())
        print(f"{preset}: {len(files)} tensors; relevance sum at input {total_in:.4f} vs start {float(start.sum()):.4f}")
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
