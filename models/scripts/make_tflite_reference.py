#!/usr/bin/env python3
"""Zennit references for the TFLite-converted fixture (tests/fixtures/models/tflite_nhwc.onnx),
explained through the same PyTorch twin as the tf2onnx Keras fixture (the graphs agree: NHWC
input, two Conv + Relu, MaxPool, Transpose + Reshape, MatMul + Add).

    .venv-torch/bin/python models/scripts/make_tflite_reference.py   # after make_tflite_fixture.py

Writes tests/fixtures/lrp/tflite_nhwc/.
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from make_fashion_mnist import to_input  # noqa: E402
from make_lrp_models import FIX, IMAGES, KerasTwin, keras_twin_tensors, reference  # noqa: E402


def main():
    path = FIX / "models" / "tflite_nhwc.onnx"
    twin = KerasTwin(path).eval()
    g = onnx.load(str(path)).graph
    tensor_of = keras_twin_tensors(path)
    x = to_input(np.stack([np.asarray(Image.open(FIX / "fmnist" / p)) for p in IMAGES]))
    reference("tflite_nhwc", twin, tensor_of, x.permute(0, 2, 3, 1).contiguous(), lambda: [])
    # The input's relevance under the model's own input name (the converter's, not `image`).
    index_path = FIX / "lrp" / "tflite_nhwc" / "index.json"
    index = json.loads(index_path.read_text())
    for files in index["presets"].values():
        files[g.input[0].name] = files.pop("image")
    index_path.write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
