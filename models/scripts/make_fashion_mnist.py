#!/usr/bin/env python3
"""Train the Fashion-MNIST reference CNN and write hudd's committed fixtures.

Run once from the repository root (results are committed; CI only compares):

    python3 -m venv .venv-torch
    .venv-torch/bin/pip install -r models/scripts/requirements-torch.txt
    apt-get install dataset-fashion-mnist
    .venv-torch/bin/python models/scripts/make_fashion_mnist.py

Writes
- models/fashion-mnist/fmnist_cnn.onnx        TorchScript exporter, dynamic batch
- models/fashion-mnist/model-card.json        accuracy and training facts (MODEL_CARD.md quotes them)
- tests/fixtures/models/fmnist_cnn_dynamo.onnx   the same weights, `torch.onnx.export(dynamo=True)`
- tests/fixtures/models/fmnist_cnn_batch1.onnx   the same model with its batch axis fixed to 1
- tests/fixtures/models/unsupported_op.onnx   a valid ONNX file with an op no engine knows
- tests/fixtures/fmnist/{train,test,improvement}/<class>/<index>.png   real images (a subset)
- tests/fixtures/fmnist/reference/            PyTorch and onnxruntime outputs for every subset image,
                                              and every intermediate activation for a few images
"""
import gzip
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
from onnx import TensorProto, helper
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
MODEL_DIR = ROOT / "models" / "fashion-mnist"
FIX = ROOT / "tests" / "fixtures"
SEED = 0
EPOCHS = 3
BATCH = 128
LR = 1e-3
# Logit order of the model. Folder names are these; `hudd.toml` lists them in this order.
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat",
           "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
# Subset sizes per class (train from the training file, test and improvement from t10k).
SUBSET = {"train": 10, "test": 30, "improvement": 10}
N_ACTIVATION_IMAGES = 4


def read_idx(name):
    with gzip.open(DATA / name, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


class FashionCnn(nn.Module):
    """AlexNet-like in miniature: two conv blocks, two dense layers."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Dropout(0.25), nn.Linear(64, 10),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def to_input(images_u8):
    # Exactly hudd's default preprocessing: pixel * (1/255), mean 0, std 1, NCHW.
    return torch.from_numpy(images_u8.astype(np.float32) * np.float32(1.0 / 255.0)).unsqueeze(1)


def train(model, x_u8, y):
    g = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    n = len(y)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH].numpy()
            xb = to_input(x_u8[idx])
            yb = torch.from_numpy(y[idx].astype(np.int64))
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {total / n:.4f}", flush=True)


@torch.no_grad()
def accuracy(model, x_u8, y):
    model.eval()
    correct = 0
    for i in range(0, len(y), 1000):
        correct += (model(to_input(x_u8[i:i + 1000])).argmax(1).numpy() == y[i:i + 1000]).sum()
    return float(correct) / len(y)


def pick(y, per_class, skip=()):
    chosen = []
    for c in range(10):
        idx = [i for i in np.nonzero(y == c)[0] if i not in skip][:per_class]
        chosen.extend(idx)
    return sorted(chosen)


def write_npy(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ascontiguousarray(array))


def sanitize(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def ort_run(path, x, layout="nchw"):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x})[0]


def export_all_activations(src, dst):
    """A copy of `src` whose outputs are every node output, so onnxruntime returns them all."""
    m = onnx.load(str(src))
    m = onnx.shape_inference.infer_shapes(m)
    known = {o.name for o in m.graph.output}
    infos = {v.name: v for v in m.graph.value_info}
    for node in m.graph.node:
        for out in node.output:
            if out and out not in known and out in infos:
                if infos[out].type.tensor_type.elem_type == TensorProto.FLOAT:
                    m.graph.output.append(infos[out])
                    known.add(out)
    onnx.save(m, str(dst))
    return [o.name for o in m.graph.output]


def make_fixed_batch(src, dst):
    """The same model with its batch axis fixed to 1 (as a plain `torch.onnx.export` without
    `dynamic_axes` writes it), to test that hudd feeds such models in chunks."""
    m = onnx.load(str(src))
    for vi in list(m.graph.input) + list(m.graph.output):
        vi.type.tensor_type.shape.dim[0].Clear()
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))


def main():
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    random.seed(SEED)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    x_train, y_train = read_idx("train-images-idx3-ubyte.gz"), read_idx("train-labels-idx1-ubyte.gz")
    x_test, y_test = read_idx("t10k-images-idx3-ubyte.gz"), read_idx("t10k-labels-idx1-ubyte.gz")

    model = FashionCnn()
    train(model, x_train, y_train)
    model.eval()
    acc_train, acc_test = accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)
    print(f"accuracy: train {acc_train:.4f}, test {acc_test:.4f}")

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    (FIX / "models").mkdir(parents=True, exist_ok=True)
    onnx_path = MODEL_DIR / "fmnist_cnn.onnx"
    dummy = torch.zeros(2, 1, 28, 28)
    torch.onnx.export(
        model, (dummy,), str(onnx_path), dynamo=False, opset_version=17,
        input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
    )
    dynamo_path = FIX / "models" / "fmnist_cnn_dynamo.onnx"
    batch = torch.export.Dim("batch", min=1, max=4096)
    prog = torch.onnx.export(
        model, (dummy,), dynamo=True, opset_version=18,
        input_names=["image"], output_names=["logits"],
        dynamic_shapes={"x": {0: batch}}, external_data=False,
    )
    prog.save(str(dynamo_path), external_data=False)
    make_fixed_batch(onnx_path, FIX / "models" / "fmnist_cnn_batch1.onnx")

    # A syntactically valid model that uses an op no ONNX engine implements.
    node = helper.make_node("HuddNoSuchOp", ["image"], ["logits"], name="mystery_node")
    graph = helper.make_graph(
        [node], "unsupported",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(FIX / "models" / "unsupported_op.onnx"))

    # Real image subset in the ImageFolder layout.
    fm = FIX / "fmnist"
    test_idx = pick(y_test, SUBSET["test"])
    improvement_idx = pick(y_test, SUBSET["improvement"], skip=set(test_idx))
    train_idx = pick(y_train, SUBSET["train"])
    splits = {
        "train": (x_train, y_train, train_idx),
        "test": (x_test, y_test, test_idx),
        "improvement": (x_test, y_test, improvement_idx),
    }
    reference = {"classes": CLASSES, "seed": SEED, "splits": {}}
    ref_dir = fm / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)
    for split, (xs, ys, idx) in splits.items():
        rel_paths = []
        for i in idx:
            rel = f"{CLASSES[ys[i]]}/{i:05d}.png"
            p = fm / split / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(xs[i], mode="L").save(p, optimize=True)
            rel_paths.append(f"{split}/{rel}")
        # Row order = sorted relative path, the order hudd reads an ImageFolder in.
        order = sorted(range(len(idx)), key=lambda k: rel_paths[k])
        rel_sorted = [rel_paths[k] for k in order]
        imgs = np.stack([np.asarray(Image.open(fm / r)) for r in rel_sorted])
        labels = np.array([CLASSES.index(r.split("/")[1]) for r in rel_sorted])
        x = to_input(imgs)
        with torch.no_grad():
            torch_logits = model(x).numpy()
        ort_logits = ort_run(onnx_path, x.numpy())
        dyn_logits = ort_run(dynamo_path, x.numpy())
        write_npy(ref_dir / f"{split}_logits_torch.npy", torch_logits)
        write_npy(ref_dir / f"{split}_logits_onnxruntime.npy", ort_logits)
        write_npy(ref_dir / f"{split}_logits_dynamo_onnxruntime.npy", dyn_logits)
        acc = float((torch_logits.argmax(1) == labels).mean())
        reference["splits"][split] = {
            "images": rel_sorted,
            "torch_accuracy": acc,
            "torch_correct": int((torch_logits.argmax(1) == labels).sum()),
            "max_abs_diff_torch_vs_onnxruntime": float(np.abs(torch_logits - ort_logits).max()),
        }
        print(f"{split}: {len(idx)} images, torch accuracy {acc:.4f}")

    # Every intermediate activation for the first few test images, from onnxruntime.
    act_model = ref_dir / "all_outputs.onnx.tmp"
    names = export_all_activations(onnx_path, act_model)
    sess = ort.InferenceSession(str(act_model), providers=["CPUExecutionProvider"])
    first = reference["splits"]["test"]["images"][:N_ACTIVATION_IMAGES]
    x = to_input(np.stack([np.asarray(Image.open(fm / r)) for r in first])).numpy()
    outs = sess.run(names, {"image": x})
    act_index = {"images": first, "tensors": {}}
    for name, value in zip(names, outs):
        fname = f"activations/{sanitize(name)}.npy"
        write_npy(ref_dir / fname, value.astype(np.float32))
        act_index["tensors"][name] = {"file": fname, "shape": list(value.shape)}
    act_model.unlink()
    (ref_dir / "activations.json").write_text(json.dumps(act_index, indent=1) + "\n")
    (ref_dir / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")

    card = {
        "model": "models/fashion-mnist/fmnist_cnn.onnx",
        "architecture": "conv3x3(1->16,pad1)-relu-maxpool2-conv3x3(16->32,pad1)-relu-maxpool2-"
                        "flatten-dense(1568->64)-relu-dropout(0.25)-dense(64->10)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "input": {"name": "image", "shape": ["batch", 1, 28, 28], "preprocessing": "pixel/255"},
        "output": {"name": "logits", "shape": ["batch", 10]},
        "classes": CLASSES,
        "training": {"data": "Fashion-MNIST train (60,000, Debian dataset-fashion-mnist)",
                     "epochs": EPOCHS, "batch": BATCH, "optimizer": "Adam", "lr": LR, "seed": SEED},
        "accuracy": {"train_60000": acc_train, "test_10000": acc_test},
        "exporter": f"torch.onnx.export (TorchScript, opset 17), torch {torch.__version__}",
        "command": "python models/scripts/make_fashion_mnist.py",
    }
    (MODEL_DIR / "model-card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card["accuracy"]))


if __name__ == "__main__":
    sys.exit(main())
