#!/usr/bin/env python3
"""A freshly initialised residual CNN exported as PyTorch exports ResNets for inference, with Zennit
references: batch norms folded into the convolutions (do_constant_folding=True, eval mode), so the
folded biases are all equal (zero) and the exporter routes the duplicates through `Identity` nodes
(`onnx::Conv_…`). hudd must read such weights as weights.

    .venv-torch/bin/python models/scripts/make_identity_fixture.py   # after make_fashion_mnist.py

Writes tests/fixtures/models/identity_weights.onnx and tests/fixtures/lrp/identity_weights/.
"""
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn
from PIL import Image
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.layer import Sum

sys.path.insert(0, str(Path(__file__).parent))
from make_fashion_mnist import to_input  # noqa: E402
from make_lrp_models import FIX, IMAGES, reference  # noqa: E402


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.sum, self.relu2 = Sum(), nn.ReLU()

    def forward(self, x):
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(self.sum(torch.stack([x, y], dim=-1)))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.relu = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.block = Block(8)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(self.flatten(self.gap(self.block(x))))


class Exported(TinyResNet):
    """The same network with the residual as `+` (what the exporter sees)."""

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.conv(x))))
        b = self.block
        y = b.bn2(b.conv2(b.relu1(b.bn1(b.conv1(x)))))
        return self.fc(self.flatten(self.gap(b.relu2(x + y))))


def main():
    torch.manual_seed(0)
    model = TinyResNet().eval()
    exported = Exported().eval()
    exported.load_state_dict(model.state_dict())
    path = FIX / "models" / "identity_weights.onnx"
    torch.onnx.export(exported, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=False, opset_version=17,
                      input_names=["image"], output_names=["logits"], do_constant_folding=True,
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    g = onnx.load(str(path)).graph
    ops = [n.op_type for n in g.node]
    print("ops:", ops)
    assert "Identity" in ops and "BatchNormalization" not in ops, "the export must fold BN and share constants"
    out = {}
    for n in g.node:
        out[n.name] = n.output[0]
    convs = [n.output[0] for n in g.node if n.op_type == "Conv"]
    relus = [n.output[0] for n in g.node if n.op_type == "Relu"]
    tensor_of = {"bn": convs[0], "relu": relus[0], "pool": next(n.output[0] for n in g.node if n.op_type == "MaxPool"),
                 "block.bn1": convs[1], "block.relu1": relus[1], "block.bn2": convs[2],
                 "block.sum": next(n.output[0] for n in g.node if n.op_type == "Add"), "block.relu2": relus[2],
                 "gap": next(n.output[0] for n in g.node if n.op_type == "GlobalAveragePool"),
                 "flatten": next(n.output[0] for n in g.node if n.op_type == "Flatten"), "fc": "logits"}
    x = to_input(np.stack([np.asarray(Image.open(FIX / "fmnist" / p)) for p in IMAGES]))
    reference("identity_weights", model, tensor_of, x, lambda: [SequentialMergeBatchNorm()])


if __name__ == "__main__":
    main()
