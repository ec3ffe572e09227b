#!/usr/bin/env python3
"""Small Fashion-MNIST models that exercise the rest of hudd's LRP ops, with Zennit references.

- bn_residual: Conv-BatchNorm pairs kept as separate ONNX nodes (merged by hudd as by Zennit's
  canonizer), a residual Add (a Zennit `Sum` module in the reference twin) and GlobalAveragePool.
- depthwise: a depthwise (groups = channels) strided convolution, a 1x1 convolution, AveragePool.
- misc_ops: Pad, Concat, ConvTranspose, Mul by a constant, LeakyRelu, Sigmoid.
- keras_nhwc: the committed tf2onnx model (NHWC input, Transpose, MatMul + Add), explained through a
  PyTorch twin that reads the ONNX weights.

Each torch model is trained briefly (one epoch on 20,000 training images, seed 0), exported with the
TorchScript exporter, and explained with every preset's Zennit composite on the same 4 test images.

    .venv-torch/bin/python models/scripts/make_lrp_models.py   # after make_fashion_mnist.py and make_keras_fixture.py
"""
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper
from PIL import Image
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import (EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat,
                               LayerMapComposite, layer_map_base)
from zennit.layer import Sum
from zennit.rules import Epsilon, ZPlus

sys.path.insert(0, str(Path(__file__).parent))
from make_fashion_mnist import read_idx, to_input, sanitize  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"


def composites(canonizers):
    def hudd():
        return LayerMapComposite(layer_map=layer_map_base(1e-9) + [
            (torch.nn.Conv2d, Epsilon(epsilon=1e-9)),
            (torch.nn.ConvTranspose2d, Epsilon(epsilon=1e-9)),
            (torch.nn.Linear, ZPlus(stabilizer=1e-9, zero_params="bias")),
        ], canonizers=canonizers())
    return {
        "hudd": hudd,
        "epsilon-plus": lambda: EpsilonPlus(canonizers=canonizers()),
        "epsilon-plus-flat": lambda: EpsilonPlusFlat(canonizers=canonizers()),
        "epsilon-gamma-box": lambda: EpsilonGammaBox(low=0.0, high=1.0, canonizers=canonizers()),
        "epsilon-alpha2-beta1": lambda: EpsilonAlpha2Beta1(canonizers=canonizers()),
    }


class BnResidual(nn.Module):
    def __init__(self, zennit_sum=False):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU())
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 10)
        self.zennit_sum = zennit_sum
        self.sum = Sum()

    def forward(self, x):
        x = self.stem(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        # The exported model adds with ONNX Add; Zennit sees the same sum as its `Sum` module (Norm rule).
        out = self.sum(torch.stack([x, out], dim=-1)) if self.zennit_sum else out + x
        return self.fc(self.flatten(self.pool(self.relu2(out))))


class Depthwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, stride=2, groups=8), nn.ReLU(),
            nn.Conv2d(8, 16, 1), nn.ReLU(),
            nn.AvgPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        return self.fc(self.flatten(self.features(x)))


class MiscOps(nn.Module):
    """Covers Pad, Concat, ConvTranspose, Mul by a constant, LeakyRelu and Sigmoid."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 4, 3, padding=1)
        self.act0 = nn.LeakyReLU(0.1)
        self.pad = nn.ZeroPad2d(1)
        self.conv1 = nn.Conv2d(4, 4, 3)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.act1 = nn.Sigmoid()
        self.avg = nn.AvgPool2d(4)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 7 * 7, 10)

    def forward(self, x):
        x = self.conv1(self.pad(self.act0(self.conv0(x))))
        x = torch.cat([self.down(x), self.pool(x)], dim=1)
        x = self.act1(self.up(x)) * 0.5
        return self.fc(self.flatten(self.avg(x)))


class KerasTwin(nn.Module):
    """The tf2onnx graph of keras_nhwc.onnx in PyTorch: NHWC in, same weights."""

    def __init__(self, onnx_path):
        super().__init__()
        g = onnx.load(str(onnx_path)).graph
        init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
        convs = [n for n in g.node if n.op_type == "Conv"]
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2)
        for conv, node in zip([self.conv1, self.conv2], convs):
            conv.weight.data = init[node.input[1]]
            conv.bias.data = init[node.input[2]]
        matmul = next(n for n in g.node if n.op_type == "MatMul")
        add = next(n for n in g.node if n.op_type == "Add")
        w = init[matmul.input[1]]
        b = next(init[i] for i in add.input if i in init)
        self.fc = nn.Linear(w.shape[0], w.shape[1])
        self.fc.weight.data = w.t().contiguous()
        self.fc.bias.data = b
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        x = self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))
        return self.fc(x.permute(0, 2, 3, 1).flatten(1))


def keras_twin_tensors(onnx_path):
    """KerasTwin module -> the ONNX tensor its output matches (converted Keras graphs)."""
    g = onnx.load(str(onnx_path)).graph
    by_op = {}
    for n in g.node:
        by_op.setdefault(n.op_type, []).append(n.output[0])
    return {"conv1": by_op["Conv"][0], "relu1": by_op["Relu"][0], "pool": by_op["MaxPool"][0],
            "conv2": by_op["Conv"][1], "relu2": by_op["Relu"][1], "fc": g.output[0].name}


def train(model, epochs=1, n=20000):
    x = read_idx("train-images-idx3-ubyte.gz")[:n]
    y = torch.from_numpy(read_idx("train-labels-idx1-ubyte.gz")[:n].astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(to_input(x[idx.numpy()])), y[idx]).backward()
            opt.step()
    return model.eval()


def export(model, path):
    torch.onnx.export(model, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"], do_constant_folding=False,
                      training=torch.onnx.TrainingMode.PRESERVE,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def node_outputs(path):
    """ONNX node name's module path -> output tensor, for the TorchScript exporter's names."""
    out = {}
    for node in onnx.load(str(path)).graph.node:
        parts = node.name.strip("/").split("/")
        if len(parts) >= 2:
            out[parts[-2]] = node.output[0]
        elif len(parts) == 1:
            out.setdefault(parts[0], node.output[0])
    return out


def reference(name, model_for_zennit, tensor_of, x, canonizers, images=None, extra=None):
    """Zennit relevance of every hooked module output (keys of `tensor_of`, written under the ONNX
    tensor names it maps to) and of the input, for every preset: tests/fixtures/lrp/<name>/."""
    out_dir = FIX / "lrp" / name
    index = dict(extra or {})
    index.update({"images": images or IMAGES, "zennit": importlib.metadata.version("zennit"),
                  "torch": torch.__version__, "start": "predicted-logit", "presets": {}})
    for preset, make in composites(canonizers).items():
        outputs = {}

        def keep(key):
            def hook(module, inp, out):
                out.retain_grad()
                outputs[key] = out
            return hook

        handles = [m.register_forward_hook(keep(n)) for n, m in model_for_zennit.named_modules() if n in tensor_of]
        xin = x.clone().requires_grad_(True)
        with make().context(model_for_zennit) as modified:
            logits = modified(xin)
            onehot = torch.zeros_like(logits)
            onehot[torch.arange(len(logits)), logits.argmax(1)] = 1.0
            logits.backward(gradient=(logits * onehot).detach())
        for h in handles:
            h.remove()
        (out_dir / preset).mkdir(parents=True, exist_ok=True)
        files = {"image": f"{preset}/image.npy"}
        np.save(out_dir / files["image"], xin.grad.numpy().astype(np.float32))
        for key, t in outputs.items():
            if t.grad is None:
                continue
            f = f"{preset}/{sanitize(tensor_of[key])}.npy"
            np.save(out_dir / f, t.grad.numpy().astype(np.float32))
            files[tensor_of[key]] = f
        index["presets"][preset] = files
        print(name, preset, len(files), "tensors")
    (out_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n")


ref = json.loads((FIX / "fmnist" / "reference" / "reference.json").read_text())
IMAGES = [ref["splits"]["test"]["images"][i] for i in (0, 40, 120, 250)]


def main():
    torch.manual_seed(0)
    x = to_input(np.stack([np.asarray(Image.open(FIX / "fmnist" / p)) for p in IMAGES]))

    # BatchNorm kept + residual Add + GlobalAveragePool.
    bn = train(BnResidual())
    path = FIX / "models" / "bn_residual.onnx"
    ops = export(bn, path)
    print("bn_residual ops:", ops)
    twin = BnResidual(zennit_sum=True)
    twin.load_state_dict(bn.state_dict())
    twin.eval()
    names = node_outputs(path)
    tensor_of = {"stem.0": names["stem.0"], "stem.1": names["stem.1"], "stem.2": names["stem.2"],
                 "conv1": names["conv1"], "bn1": names["bn1"], "relu1": names["relu1"], "conv2": names["conv2"],
                 "bn2": names["bn2"], "sum": next(n.output[0] for n in onnx.load(str(path)).graph.node if n.op_type == "Add"),
                 "relu2": names["relu2"], "pool": names["pool"], "flatten": names["flatten"], "fc": "logits"}
    reference("bn_residual", twin, tensor_of, x, lambda: [SequentialMergeBatchNorm()])

    # Depthwise convolution + AveragePool.
    dw = train(Depthwise())
    path = FIX / "models" / "depthwise.onnx"
    print("depthwise ops:", export(dw, path))
    names = node_outputs(path)
    tensor_of = {f"features.{i}": names[f"features.{i}"] for i in range(7)}
    tensor_of.update({"flatten": names["flatten"], "fc": "logits"})
    reference("depthwise", dw, tensor_of, x, lambda: [])

    # Pad, Concat, ConvTranspose, Mul, LeakyRelu, Sigmoid.
    misc = train(MiscOps())
    path = FIX / "models" / "misc_ops.onnx"
    print("misc_ops ops:", export(misc, path))
    names = node_outputs(path)
    modules = ["conv0", "act0", "pad", "conv1", "down", "pool", "up", "act1", "avg", "flatten"]
    tensor_of = {m: names[m] for m in modules}
    tensor_of["fc"] = "logits"
    reference("misc_ops", misc, tensor_of, x, lambda: [])

    # Keras / tf2onnx, NHWC.
    path = FIX / "models" / "keras_nhwc.onnx"
    twin = KerasTwin(path).eval()
    tensor_of = keras_twin_tensors(path)
    reference("keras_nhwc", twin, tensor_of, x.permute(0, 2, 3, 1).contiguous(), lambda: [])


if __name__ == "__main__":
    main()
