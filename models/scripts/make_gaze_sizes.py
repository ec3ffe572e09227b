"""The gaze model at a larger input size, for measuring how `hudd analyze` grows with image size.

Usage: python make_gaze_sizes.py SIZE OUT_DIR   (SIZE a multiple of 8, e.g. 128 or 224)

Writes OUT_DIR/gaze_cnn_SIZE.onnx and OUT_DIR/hudd_SIZE.toml. The convolutions keep their weights
(they do not depend on the size); the first dense layer, which reads the last feature map
(64 x SIZE/8 x SIZE/8 instead of 64 x 8 x 8), gets each 8 x 8 weight map stretched to SIZE/8 x SIZE/8
(nearest cell) and scaled by (8 / (SIZE/8))^2: an average over the stretched cells, so the model
still tells gaze directions on the simulator's 64 x 64 eyes stretched to SIZE (hudd's `resize =
"stretch"`). Not a trained model: its accuracy differs from the shipped one, its cost is what is
measured. Needs `onnx` and `numpy` only.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    size, out = int(sys.argv[1]), Path(sys.argv[2])
    if size % 8:
        sys.exit("SIZE must be a multiple of 8")
    s = size // 8
    model = onnx.load(ROOT / "models/gaze/gaze_cnn.onnx")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = size, size
    del model.graph.value_info[:]
    for t in model.graph.initializer:
        if t.name == "classifier.0.weight":
            w = numpy_helper.to_array(t).reshape(128, 64, 8, 8)
            cell = (np.arange(s) * 8) // s
            stretched = w[:, :, cell][:, :, :, cell] * (8.0 / s) ** 2
            t.CopyFrom(numpy_helper.from_array(stretched.reshape(128, 64 * s * s).astype(np.float32), t.name))
    onnx.checker.check_model(model)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, out / f"gaze_cnn_{size}.onnx")
    toml = (ROOT / "models/gaze/hudd.toml").read_text().replace("size = [64, 64]", f"size = [{size}, {size}]")
    (out / f"hudd_{size}.toml").write_text(toml)


if __name__ == "__main__":
    main()
