#!/usr/bin/env python3
"""Two broken variants of the Fashion-MNIST CNN whose logits are NaN, for hudd's hostile-input tests:

- nan_bias.onnx: the last layer's first bias is NaN, so every image's logits hold NaN (an
  explainable graph: `hudd analyze` must stop on it, not cluster zeros);
- nan_corner.onnx: logits + 1e-30 * sqrt(0.5 - top-left pixel) (not 0 *: an engine may fold it), NaN exactly for the images whose
  top-left pixel is brighter than half (a test draws one such image; the others stay finite).

    /tmp/torchenv/bin/python models/scripts/make_nan_fixtures.py

Writes tests/fixtures/models/nan_bias.onnx and tests/fixtures/models/nan_corner.onnx.
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "models" / "fashion-mnist" / "fmnist_cnn.onnx"
OUT = ROOT / "tests" / "fixtures" / "models"


def nan_bias():
    model = onnx.load(str(SOURCE))
    bias = next(i for i in model.graph.initializer if i.name == "classifier.3.bias")
    values = numpy_helper.to_array(bias).copy()
    values[0] = np.nan
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.checker.check_model(model)
    onnx.save(model, str(OUT / "nan_bias.onnx"))


def nan_corner():
    model = onnx.load(str(SOURCE))
    g = model.graph
    last = g.node[-1]
    last.output[0] = "raw_logits"
    consts = {
        "corner_starts": np.array([0, 0], dtype=np.int64),
        "corner_ends": np.array([1, 1], dtype=np.int64),
        "corner_axes": np.array([2, 3], dtype=np.int64),
        "half": np.array(0.5, dtype=np.float32),
        "tiny": np.array(1e-30, dtype=np.float32),
        "column": np.array([-1, 1], dtype=np.int64),
    }
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    g.node.extend(
        [
            helper.make_node("Slice", ["image", "corner_starts", "corner_ends", "corner_axes"], ["corner"], name="corner"),
            helper.make_node("Sub", ["half", "corner"], ["headroom"], name="headroom"),
            helper.make_node("Sqrt", ["headroom"], ["root"], name="root"),
            helper.make_node("Mul", ["root", "tiny"], ["nan_or_zero"], name="nan_or_zero"),
            helper.make_node("Reshape", ["nan_or_zero", "column"], ["nan_column"], name="nan_column"),
            helper.make_node("Add", ["raw_logits", "nan_column"], ["logits"], name="logits"),
        ]
    )
    onnx.checker.check_model(model)
    onnx.save(model, str(OUT / "nan_corner.onnx"))


if __name__ == "__main__":
    nan_bias()
    nan_corner()
