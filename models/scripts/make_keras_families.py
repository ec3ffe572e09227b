#!/usr/bin/env python3
"""The Keras applications engineers ship, converted by tf2onnx (NHWC input), for the coverage matrix.

Keras' own application constructors (keras.applications' ResNet, DenseNet, MobileNetV2, MobileNetV3,
EfficientNet, EfficientNetV2) at reduced widths and depths through the constructors' own arguments
(`alpha`, `width_coefficient`/`depth_coefficient`, `blocks`, the stack function), every op pattern
of the family kept: the built-in preprocessing layers (`Rescaling`, `Normalization`), batch norms
before and after convolutions, ReLU6, swish, hard-swish, squeeze-excitation, depthwise convolutions,
concatenation, global average pooling and the dense head, seeded, with batch-norm statistics that
change each layer's output. The models end at their logits (`classifier_activation=None`). Beside
them, not an application: `tf.nn.space_to_depth` between convolutions (`space_to_depth`), the one
route by which an exporter writes ONNX's `SpaceToDepth`.

Run once from the repository root (TensorFlow; the Zennit references come after, from the PyTorch
environment):

    python3 -m venv .venv-tf && .venv-tf/bin/pip install -r models/scripts/requirements-tf.txt
    .venv-tf/bin/python models/scripts/make_keras_families.py [family ...]
    .venv-torch/bin/python models/scripts/make_onnx_references.py   # Zennit, through an ONNX twin

Writes tests/fixtures/families/keras_<family>_tf2onnx.onnx (input `image` [N, H, W, 3], output
`logits`, opset 17) and adds each to tests/fixtures/families/index.json (exporter `tf2onnx`, layout
`nhwc`), with lrp/<fixture>/input.npy (the test image, NHWC, in [0, 1]) and
lrp/<fixture>/onnxruntime.npy (the logits onnxruntime computes for it).
"""
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from keras.src.applications import densenet, efficientnet, efficientnet_v2, mobilenet_v2, mobilenet_v3, resnet  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
OUT = FIX / "families"
SEED = 5
IMAGES = ["test/bag/00030.png"]  # as make_torchvision_families.py
SIZE = 32
COMMON = dict(weights=None, input_shape=(SIZE, SIZE, 3), classes=10, classifier_activation=None)


def small_resnet():
    def stack(x):
        x = resnet.stack_residual_blocks_v1(x, 8, 2, stride1=1, name="conv2")
        x = resnet.stack_residual_blocks_v1(x, 16, 1, name="conv3")
        return resnet.stack_residual_blocks_v1(x, 16, 1, name="conv4")
    return resnet.ResNet(stack, preact=False, use_bias=True, name="resnet", **COMMON)


def small_densenet():
    # DenseNet121's blocks are [6, 12, 24, 16] (growth 32, a 64-wide stem): two blocks of two layers.
    return densenet.DenseNet([2, 2, 1, 1], name="densenet", **COMMON)


def small_mobilenet_v2():
    return mobilenet_v2.MobileNetV2(alpha=0.35, name="mobilenet_v2", **COMMON)


def small_mobilenet_v3():
    relu, hard_swish = mobilenet_v3.relu, mobilenet_v3.hard_swish
    block = mobilenet_v3._inverted_res_block

    def stack(x, kernel, activation, se_ratio):
        # MobileNetV3Small's first blocks, at alpha 0.5: ReLU and hard-swish, with and without SE.
        d = lambda c: mobilenet_v3._depth(c * 0.5)  # noqa: E731
        x = block(x, 1, d(16), 3, 2, se_ratio, relu, 0)
        x = block(x, 72.0 / 16, d(24), 3, 2, None, relu, 1)
        x = block(x, 88.0 / 24, d(24), 3, 1, None, relu, 2)
        x = block(x, 4, d(40), kernel, 2, se_ratio, activation, 3)
        return block(x, 6, d(40), kernel, 1, se_ratio, activation, 4)
    return mobilenet_v3.MobileNetV3(stack, 128, input_shape=COMMON["input_shape"], alpha=0.5, model_type="small",
                                    weights=None, classes=10, classifier_activation=None, name="mobilenet_v3")


def small_efficientnet():
    return efficientnet.EfficientNet(0.25, 0.3, SIZE, name="efficientnet", **COMMON)


def small_efficientnet_v2():
    # The name picks EfficientNetV2B0's blocks.
    return efficientnet_v2.EfficientNetV2(0.25, 0.3, SIZE, name="efficientnetv2-b0", **COMMON)


def small_space_to_depth():
    """Not a Keras application: `tf.nn.space_to_depth` between convolutions (tf2onnx writes the
    ONNX `SpaceToDepth` op, NCHW, between transposes)."""
    layers = tf.keras.layers
    inp = tf.keras.Input((SIZE, SIZE, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Lambda(lambda t: tf.nn.space_to_depth(t, 2))(x)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    out = layers.Dense(10)(layers.GlobalAveragePooling2D()(x))
    return tf.keras.Model(inp, out, name="space_to_depth")


FAMILIES = {
    "resnet": small_resnet,
    "densenet": small_densenet,
    "mobilenet_v2": small_mobilenet_v2,
    "mobilenet_v3": small_mobilenet_v3,
    "efficientnet": small_efficientnet,
    "efficientnet_v2": small_efficientnet_v2,
    "space_to_depth": small_space_to_depth,
}


def build(name, index):
    tf.keras.utils.set_random_seed(SEED + index)
    m = FAMILIES[name]()
    rng = np.random.default_rng(SEED + index)
    for layer in m.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            # Statistics and affine parameters that change the layer's output.
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(-0.2, 0.2, beta.shape),
                               rng.uniform(-0.5, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape)])
        elif isinstance(layer, tf.keras.layers.Normalization) and layer.get_weights():
            # The ImageNet statistics Keras' EfficientNet loads with its weights.
            mean, var, count = layer.get_weights()
            layer.set_weights([np.array([0.485, 0.456, 0.406]).reshape(mean.shape),
                               (np.array([0.229, 0.224, 0.225]) ** 2).reshape(var.shape), count])
    return m


def convert(m, path):
    """`model.export` (a SavedModel) then tf2onnx's command line, as the Keras 3 route goes."""
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved"
        m.export(str(saved), verbose=False)
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(saved), "--opset", "17",
                        "--rename-inputs", "image", "--rename-outputs", "logits", "--output", str(path)],
                       check=True, capture_output=True)
    model = onnx.load(str(path))
    # The SavedModel's signature fixes nothing but the batch; name it as the other fixtures do.
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(model, str(path))
    return sorted({n.op_type for n in model.graph.node})


def input_image():
    imgs = [np.asarray(Image.open(FIX / "fmnist" / p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR))
            for p in IMAGES]
    return np.stack(imgs).astype(np.float32) / np.float32(255.0)


def main(wanted):
    index_path = OUT / "index.json"
    index = json.loads(index_path.read_text())
    index["keras"] = {"script": "models/scripts/make_keras_families.py", "seed": SEED,
                      "tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
                      "keras": importlib.metadata.version("keras")}
    x = input_image()
    for i, name in enumerate(FAMILIES):
        if wanted and name not in wanted:
            continue
        m = build(name, i)
        fixture = f"keras_{name}_tf2onnx"
        path = OUT / f"{fixture}.onnx"
        ops = convert(m, path)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (logits,) = sess.run(None, {"image": x})
        want = m(x, training=False).numpy()
        assert np.allclose(logits, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max())), \
            f"{fixture}: onnxruntime computes what Keras does"
        lrp = OUT / "lrp" / fixture
        lrp.mkdir(parents=True, exist_ok=True)
        np.save(lrp / "input.npy", x)
        np.save(lrp / "onnxruntime.npy", logits)
        params = int(m.count_params())
        index["fixtures"][fixture] = {"family": name, "exporter": "tf2onnx", "layout": "nhwc", "size": SIZE,
                                      "parameters": params, "ops": ops}
        print(f"{fixture}: {params} parameters, {path.stat().st_size} bytes, ops {ops}", flush=True)
    index["fixtures"] = dict(sorted(index["fixtures"].items()))
    index_path.write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
