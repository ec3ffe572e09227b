#!/usr/bin/env python3
"""Models for hudd's hostile-input tests (tests/e2e/hostile.rs), all derived from the Fashion-MNIST CNN
or built from scratch with seeded weights:

- lstm.onnx: the 28 rows of an image read as a sequence by one ONNX LSTM node, its last hidden
  state as the 10 logits. The engine runs it, but no relevance rule explains LSTM: `hudd analyze`
  must refuse it before any stage, naming the node and the op.
- nan_bias.onnx: the CNN with its last layer's first bias NaN, so every image's logits hold NaN (an
  explainable graph: `hudd analyze` must stop on it, not cluster zeros).
- nan_corner.onnx: the CNN's logits + 1e-30 * sqrt(0.5 - top-left pixel) (not 0 *: an engine may
  fold it), NaN exactly for the images whose top-left pixel is brighter than half.
- large_input.onnx: a 3 × 4000 × 4000 input, one 3 × 3 convolution to 8 channels and a global
  average pool (~0.7 GB of activations per image): hudd must say how much memory a batch takes.

    /tmp/torchenv/bin/python models/scripts/make_hostile_fixtures.py

Writes tests/fixtures/models/{lstm,nan_bias,nan_corner,large_input}.onnx.
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "models" / "fashion-mnist" / "fmnist_cnn.onnx"
OUT = ROOT / "tests" / "fixtures" / "models"


def lstm():
    rng = np.random.default_rng(0)
    hidden, features = 10, 28
    w = numpy_helper.from_array(rng.normal(0, 0.1, (1, 4 * hidden, features)).astype(np.float32), "W")
    r = numpy_helper.from_array(rng.normal(0, 0.1, (1, 4 * hidden, hidden)).astype(np.float32), "R")
    seq_shape = numpy_helper.from_array(np.array([1, 28, 28], dtype=np.int64), "seq_shape")
    out_shape = numpy_helper.from_array(np.array([1, hidden], dtype=np.int64), "out_shape")
    nodes = [
        helper.make_node("Reshape", ["input", "seq_shape"], ["rows"], name="rows"),
        helper.make_node("Transpose", ["rows"], ["seq"], perm=[1, 0, 2], name="time_major"),
        helper.make_node("LSTM", ["seq", "W", "R"], ["Y", "Y_h"], hidden_size=hidden, name="lstm"),
        helper.make_node("Reshape", ["Y_h", "out_shape"], ["logits"], name="logits"),
    ]
    graph = helper.make_graph(
        nodes,
        "lstm_classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, hidden])],
        [w, r, seq_shape, out_shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="hudd-fixture")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(OUT / "lstm.onnx"))


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


def large_input():
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["image", "w"], ["conv"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("GlobalAveragePool", ["conv"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["logits"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "large_input",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 4000, 4000])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="hudd-fixture")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(OUT / "large_input.onnx"))


if __name__ == "__main__":
    lstm()
    nan_bias()
    nan_corner()
    large_input()
