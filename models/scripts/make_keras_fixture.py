#!/usr/bin/env python3
"""A small Keras (NHWC) Fashion-MNIST classifier converted to ONNX with tf2onnx, for hudd's tests.

Run once from the repository root after make_fashion_mnist.py (it reuses that script's image subset):

    python3 -m venv .venv-tf
    .venv-tf/bin/pip install -r models/scripts/requirements-tf.txt
    .venv-tf/bin/python models/scripts/make_keras_fixture.py

Writes tests/fixtures/models/keras_nhwc.onnx (input `image` [N, 28, 28, 1]) and
tests/fixtures/fmnist/reference/<split>_logits_keras_onnxruntime.npy for every subset image.
"""
import gzip
import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tensorflow as tf
import tf2onnx
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FIX = ROOT / "tests" / "fixtures"
SEED = 0


def read_idx(name):
    with gzip.open(DATA / name, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def training_data():
    """The first 20,000 training images (NHWC, [0, 1]) and labels; seeds Keras first."""
    tf.keras.utils.set_random_seed(SEED)
    x = read_idx("train-images-idx3-ubyte.gz")[:20000].astype(np.float32)[..., None] / 255.0
    y = read_idx("train-labels-idx1-ubyte.gz")[:20000].astype(np.int64)
    return x, y


def keras_model():
    """The NHWC classifier of the Keras fixtures (also make_tflite_fixture.py)."""
    return tf.keras.Sequential([
        tf.keras.Input((28, 28, 1), name="image"),
        tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        tf.keras.layers.MaxPooling2D(2),
        tf.keras.layers.Conv2D(16, 3, padding="valid", strides=2, activation="relu"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10, name="logits"),
    ])


def main():
    x, y = training_data()
    model = keras_model()
    model.compile(optimizer="adam",
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=128, verbose=2)

    spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32, name="image"),)

    @tf.function(input_signature=spec)
    def forward(image):
        return {"logits": model(image, training=False)}

    out = FIX / "models" / "keras_nhwc.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    tf2onnx.convert.from_function(forward, input_signature=spec, opset=17, output_path=str(out))

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    ref = json.loads((FIX / "fmnist" / "reference" / "reference.json").read_text())
    for split, info in ref["splits"].items():
        imgs = np.stack([np.asarray(Image.open(FIX / "fmnist" / p)) for p in info["images"]])
        xin = (imgs.astype(np.float32) * np.float32(1.0 / 255.0))[..., None]
        logits = sess.run(None, {sess.get_inputs()[0].name: xin})[0]
        keras_logits = model(xin, training=False).numpy()
        print(split, "max |keras - onnxruntime| =", float(np.abs(keras_logits - logits).max()))
        np.save(FIX / "fmnist" / "reference" / f"{split}_logits_keras_onnxruntime.npy", logits.astype(np.float32))
    print("inputs:", [(i.name, i.shape) for i in sess.get_inputs()])


if __name__ == "__main__":
    main()
