#!/usr/bin/env python3
"""The Fashion-MNIST CNN with its first Relu replaced by Sin: a model the engine runs but that hudd
cannot explain (no relevance rule for Sin). `hudd analyze` must refuse it before any stage runs.

    .venv-torch/bin/python models/scripts/make_unexplainable_fixture.py

Writes tests/fixtures/models/unexplainable.onnx.
"""
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[2]


def main():
    model = onnx.load(str(ROOT / "models" / "fashion-mnist" / "fmnist_cnn.onnx"))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    relu.op_type = "Sin"
    relu.name = "sin_instead_of_relu"
    onnx.checker.check_model(model)
    onnx.save(model, str(ROOT / "tests" / "fixtures" / "models" / "unexplainable.onnx"))


if __name__ == "__main__":
    main()
