#!/usr/bin/env python3
"""A recurrent image classifier: the 28 rows of a Fashion-MNIST image read as a sequence by one ONNX
LSTM node, its last hidden state as the 10 logits. The engine runs it, but no relevance rule explains
LSTM: `hudd analyze` must refuse it before any stage runs, naming the node and the op.

    /tmp/torchenv/bin/python models/scripts/make_lstm_fixture.py

Writes tests/fixtures/models/lstm.onnx (seeded random weights: only the graph matters).
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]


def main():
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
    onnx.save(model, str(ROOT / "tests" / "fixtures" / "models" / "lstm.onnx"))


if __name__ == "__main__":
    main()
