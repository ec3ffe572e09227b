#!/usr/bin/env python3
"""Zennit side of `hudd bench heatmaps`: relevance at every layer for N images, timed the same way
(median of N runs after one warm-up, images decoded from PNG in every run).

    .venv-torch/bin/python models/scripts/bench_zennit.py fmnist IMAGES_DIR [--limit 1000]
    .venv-torch/bin/python models/scripts/bench_zennit.py alexnet128 IMAGES_DIR --onnx /tmp/alexnet128.onnx

    .venv-torch/bin/python models/scripts/bench_zennit.py resnet18 IMAGES_DIR --preset epsilon-plus --onnx /tmp/resnet18.onnx

`resnet50` and `efficientnet_b0` are torchvision's (seeded, batch norms away from the identity), written
by PyTorch's default exporter; EfficientNet is explained through the coverage matrix's generic twin
(models/scripts/make_torchvision_families.py: no Zennit canonizer ships for it).

`alexnet128` and `resnet18` also write their model (seeded random weights: speed only) as ONNX for
hudd to run on the same images (--onnx). `resnet18` is torchvision's ResNet-18 at 224x224 RGB with
non-trivial BatchNorm statistics; Zennit explains it with its ResNet canonizer (BatchNorm merged into
the convolutions, the residual sums given their own rule), as the issue asks.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper
from PIL import Image
from zennit.composites import EpsilonPlus, LayerMapComposite, layer_map_base
from zennit.torchvision import ResNetCanonizer
from zennit.rules import Epsilon, ZPlus

sys.path.insert(0, str(Path(__file__).parent))
from make_fashion_mnist import FashionCnn  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class AlexNet128(nn.Module):
    """AlexNet-like for 128x128 RGB (as the paper's head-pose case)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(nn.Linear(256 * 3 * 3, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                                        nn.Linear(1024, 9))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def resnet18():
    """torchvision's ResNet-18 (1000 classes), seeded random weights, BatchNorms with non-trivial
    running statistics and affine parameters (a freshly initialised BatchNorm is the identity)."""
    return torchvision_model("resnet18", keep_inplace=True)


def torchvision_model(name, keep_inplace=False, num_classes=1000):
    """torchvision's `name` (1000 classes unless said), seeded random weights, batch norms away from
    the identity, ReLUs not in place unless `keep_inplace` (Zennit's hooks keep their outputs)."""
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if hasattr(m, "inplace") and not keep_inplace:
                m.inplace = False
    return model


def hudd_composite(canonizers=None):
    return LayerMapComposite(layer_map=layer_map_base(1e-9) + [
        (torch.nn.Conv2d, Epsilon(epsilon=1e-9)),
        (torch.nn.Linear, ZPlus(stabilizer=1e-9, zero_params="bias")),
    ], canonizers=canonizers)


def load(paths, rgb, size):
    arrs = []
    for p in paths:
        im = Image.open(p).convert("RGB" if rgb else "L")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        a = np.asarray(im, dtype=np.float32) / 255.0
        arrs.append(a.transpose(2, 0, 1) if rgb else a[None])
    return torch.from_numpy(np.stack(arrs))


# hudd's default layers (`hudd heatmaps --layers default`): the outputs of every convolution, dense and
# pooling layer (and the input).
DEFAULT_LAYERS = (nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


def run(model, composite_fn, paths, rgb, size, batch, write=None, layers=None):
    """Relevance at every leaf module's output (or those of the `layers` types) and at the input.
    With `write`, the arrays are kept and written there at the end, one .npy per layer, each synced
    to disk (as hudd's are)."""
    keep = []
    kept = None

    def hook(module, inp, out):
        out.retain_grad()
        keep.append(out)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not list(m.children()) and (layers is None or isinstance(m, layers))]
    with composite_fn().context(model) as modified:
        for i in range(0, len(paths), batch):
            keep.clear()
            x = load(paths[i:i + batch], rgb, size).requires_grad_(True)
            out = modified(x)
            onehot = torch.zeros_like(out)
            onehot[torch.arange(len(out)), out.argmax(1)] = 1.0
            out.backward(gradient=(out * onehot).detach())
            arrays = [t.grad.numpy() for t in keep if t.grad is not None] + [x.grad.numpy()]
            if write is not None:
                kept = [[a.copy()] for a in arrays] if kept is None else [k + [a.copy()] for k, a in zip(kept, arrays)]
    for h in handles:
        h.remove()
    if write is not None:
        write.mkdir(parents=True, exist_ok=True)
        for i, parts in enumerate(kept):
            path = write / f"layer{i:02d}.npy"
            with open(path, "wb") as f:
                np.save(f, np.concatenate(parts))
                f.flush()
                os.fsync(f.fileno())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", choices=["fmnist", "alexnet128", "resnet18", "resnet50", "efficientnet_b0"])
    ap.add_argument("images")
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--preset", default="hudd", choices=["hudd", "epsilon-plus"])
    ap.add_argument("--onnx", help="write the alexnet128 or resnet18 model here")
    ap.add_argument("--write", type=Path, help="write every layer's relevance here as .npy (synced), as hudd does")
    ap.add_argument("--layers", choices=["all", "default"], default="all",
                    help="default: only hudd's default layers (convolution, dense and pooling outputs)")
    a = ap.parse_args()
    paths = sorted(p for p in Path(a.images).rglob("*.png"))[:a.limit]
    torch.manual_seed(0)
    if a.model == "fmnist":
        model, rgb, size = FashionCnn(), False, 28
        weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
                   for t in onnx.load(str(ROOT / "models/fashion-mnist/fmnist_cnn.onnx")).graph.initializer}
        model.load_state_dict({k: weights[k] for k in model.state_dict()})
    else:
        if a.model in ("resnet50", "efficientnet_b0"):
            model, rgb, size = torchvision_model(a.model).eval(), True, 224
        else:
            model, rgb, size = (AlexNet128(), True, 128) if a.model == "alexnet128" else (resnet18(), True, 224)
        if a.onnx and a.model in ("resnet50", "efficientnet_b0"):
            # PyTorch's default exporter, as users export today (weights in NAME.onnx.data).
            torch.onnx.export(model, (torch.zeros(2, 3, size, size),), a.onnx, input_names=["image"],
                              output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
        elif a.onnx:
            torch.onnx.export(model.eval(), (torch.zeros(2, 3, size, size),), a.onnx, dynamo=False, opset_version=17,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    model.eval()
    if a.model == "efficientnet_b0":
        # No Zennit canonizer ships for EfficientNet: the generic torch.fx twin of the coverage
        # matrix's oracle (batch norms merged, Norm on sums and means, signal-only gates).
        from make_torchvision_families import twin
        model = twin(model)
    if a.preset == "hudd":
        composite_fn = hudd_composite
    elif a.model in ("resnet18", "resnet50"):
        def composite_fn():
            return EpsilonPlus(canonizers=[ResNetCanonizer()])
    else:
        composite_fn = EpsilonPlus
    print(f"zennit, torch {torch.__version__}, {len(paths)} images, model {a.model}, preset {a.preset}")
    print(f"{'threads':>7} {'batch':>6} {'median_s':>10} {'images/s':>10}")
    for threads in map(int, a.threads.split(",")):
        torch.set_num_threads(threads)
        times = []
        # --repeat 0: one run, timed (for whole-process comparisons: no warm-up).
        for i in range(a.repeat + 1):
            t = time.perf_counter()
            run(model, composite_fn, paths, rgb, size, a.batch, a.write,
                DEFAULT_LAYERS if a.layers == "default" else None)
            if i or a.repeat == 0:
                times.append(time.perf_counter() - t)
        m = statistics.median(times)
        print(f"{threads:>7} {a.batch:>6} {m:>10.3f} {len(paths) / m:>10.1f}")


if __name__ == "__main__":
    main()
