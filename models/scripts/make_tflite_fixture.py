#!/usr/bin/env python3
"""A small Keras Fashion-MNIST classifier converted to TFLite, then from TFLite to ONNX with
`tf2onnx --tflite` (the path of models that only exist as .tflite files), for hudd's tests.

    python3 -m venv .venv-tf && .venv-tf/bin/pip install -r models/scripts/requirements-tf.txt
    .venv-tf/bin/python models/scripts/make_tflite_fixture.py      # after make_fashion_mnist.py
    .venv-torch/bin/python models/scripts/make_tflite_reference.py # Zennit references

Writes tests/fixtures/models/tflite_nhwc.onnx and
tests/fixtures/fmnist/reference/<split>_logits_tflite_onnxruntime.npy for every subset image.
"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from make_keras_fixture import FIX, keras_model, training_data  # noqa: E402


def main():
    x, y = training_data()
    model = keras_model()
    model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, batch_size=128, verbose=2)
    tflite = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    out = FIX / "models" / "tflite_nhwc.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(tflite)
        tf2onnx.convert.from_tflite(str(path), opset=17, output_path=str(out))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    print("inputs:", [(i.name, i.shape) for i in sess.get_inputs()], "outputs:", [o.name for o in sess.get_outputs()])
    ref = json.loads((FIX / "fmnist" / "reference" / "reference.json").read_text())
    for split, info in ref["splits"].items():
        imgs = np.stack([np.asarray(Image.open(FIX / "fmnist" / p)) for p in info["images"]])
        xin = (imgs.astype(np.float32) * np.float32(1.0 / 255.0))[..., None]
        logits = np.concatenate([sess.run(None, {inp.name: xin[i:i + 1]})[0] for i in range(len(xin))])
        print(split, "max |keras - onnxruntime| =", float(np.abs(model(xin, training=False).numpy() - logits).max()))
        np.save(FIX / "fmnist" / "reference" / f"{split}_logits_tflite_onnxruntime.npy", logits.astype(np.float32))


if __name__ == "__main__":
    main()
