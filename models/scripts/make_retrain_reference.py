#!/usr/bin/env python3
"""PyTorch reference for hudd's retraining (the outside oracle for core/src/retrain).

For every LRP fixture model, runs the ONNX graph in PyTorch on a fixed batch: the float weights in
trainable slots become leaf tensors, every other tensor that does not depend on the input
(shapes, computed pads, batch-norm statistics) is taken from an onnxruntime run. Written from the
ONNX operator definitions with torch.nn.functional, independently of hudd's translator.

Per model it writes, under tests/fixtures/retrain/<name>/:
  input.npy              the batch (seeded uniform [0, 1))
  targets.npy            class indices (as float32) or regression targets
  grad/<i>.npy           d loss / d weight i, on the batch, dropout off
  after/<i>.npy          weight i after two steps of torch.optim.SGD(lr, momentum 0.9,
                         weight decay 5e-4) on that batch (the second step uses the momentum)
  index.json             model, loss, its value, the SGD settings, weights (name, file, shape)
and onnxruntime's outputs (outputs.npy) for the forward check.

The trainable slots (hudd's rule): Conv/ConvTranspose/Gemm inputs 1 and 2, BatchNormalization
inputs 1 and 2 (scale, shift), PRelu's slope, MatMul and Add operands that are constants.

    .venv-torch/bin/python models/scripts/make_retrain_reference.py
"""
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "retrain"
BATCH = 4
SGD = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "steps": 2}

MODELS = [
    ("bn_residual", "tests/fixtures/models/bn_residual.onnx", "cross-entropy"),
    ("bn_residual_mse", "tests/fixtures/models/bn_residual.onnx", "mse"),
    ("depthwise", "tests/fixtures/models/depthwise.onnx", "cross-entropy"),
    ("identity_weights", "tests/fixtures/models/identity_weights.onnx", "cross-entropy"),
    ("keras_nhwc", "tests/fixtures/models/keras_nhwc.onnx", "cross-entropy"),
    ("misc_ops", "tests/fixtures/models/misc_ops.onnx", "cross-entropy"),
    ("tflite_nhwc", "tests/fixtures/models/tflite_nhwc.onnx", "cross-entropy"),
    ("fmnist", "models/fashion-mnist/fmnist_cnn.onnx", "cross-entropy"),
    ("gates_dynamo", "tests/fixtures/models/gates_dynamo.onnx", "cross-entropy"),
    ("gates_ts", "tests/fixtures/models/gates_ts.onnx", "cross-entropy"),
    ("shuffle_dynamo", "tests/fixtures/models/shuffle_dynamo.onnx", "cross-entropy"),
    ("shuffle_ts", "tests/fixtures/models/shuffle_ts.onnx", "cross-entropy"),
    ("routing_dynamo", "tests/fixtures/models/routing_dynamo.onnx", "cross-entropy"),
    ("routing_ts", "tests/fixtures/models/routing_ts.onnx", "cross-entropy"),
] + [
    # The coverage matrix's families (make_torchvision_families.py), as the default exporter writes
    # them (the TorchScript forms share their weights and ops with the fixtures above).
    (f"{family}_dynamo", f"tests/fixtures/families/{family}_dynamo.onnx", "cross-entropy")
    for family in ["resnet", "resnext", "wide_resnet", "vgg", "vgg_small", "alexnet", "squeezenet", "densenet",
                   "googlenet", "inception_v3", "mobilenet_v2", "mobilenet_v3", "mnasnet", "efficientnet",
                   "efficientnet_v2", "regnet_x", "regnet_y", "shufflenet_v2"]
] + [
    # Keras' applications as tf2onnx converts them (make_keras_families.py; NHWC).
    (f"keras_{family}_tf2onnx", f"tests/fixtures/families/keras_{family}_tf2onnx.onnx", "cross-entropy")
    for family in ["resnet", "densenet", "mobilenet_v2", "mobilenet_v3", "efficientnet", "efficientnet_v2"]
] + [
    # Exact GELU as one `Gelu` op and written out by the TorchScript exporter (x · (1 + erf(x / √2)) · 0.5).
    ("gelu_dynamo", "tests/fixtures/families/gelu_dynamo.onnx", "cross-entropy"),
    ("gelu_ts", "tests/fixtures/families/gelu_ts.onnx", "cross-entropy"),
    # Bilinear resampling both ways (Resize in linear mode).
    ("bilinear_dynamo", "tests/fixtures/families/bilinear_dynamo.onnx", "cross-entropy"),
    ("bilinear_ts", "tests/fixtures/families/bilinear_ts.onnx", "cross-entropy"),
    # Opset 9's Upsample (nearest, its scales an input).
    ("upsample_ts9", "tests/fixtures/families/upsample_ts9.onnx", "cross-entropy"),
    # tf.nn.space_to_depth as tf2onnx writes it (SpaceToDepth between transposes).
    ("keras_space_to_depth_tf2onnx", "tests/fixtures/families/keras_space_to_depth_tf2onnx.onnx", "cross-entropy"),
]

SLOTS = {"Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "BatchNormalization": (1, 2),
         "PRelu": (1,), "MatMul": (0, 1), "Add": (0, 1)}


def attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def all_values(model, x):
    """Every node output and the input, from onnxruntime (intermediates exposed as outputs)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in known:
                m.graph.output.append(helper.ValueInfoProto(name=o))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    vals = sess.run(None, {model.graph.input[0].name: x})
    return dict(zip(names, vals))


def pads_hw(a, x_hw, k, s, d):
    """(top, left, bottom, right) from auto_pad or pads."""
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for n, kk, ss, dd in zip(x_hw, k, s, d):
            o = -(-n // ss)
            total = max(0, (o - 1) * ss + dd * (kk - 1) + 1 - n)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out[0][0], out[1][0], out[0][1], out[1][1]
    if auto == "VALID":
        return 0, 0, 0, 0
    p = list(a.get("pads", [0, 0, 0, 0]))
    return p[0], p[1], p[2], p[3]


def pool_pad_amounts(a, x, k, s, d):
    """Explicit pads per side plus the ceil_mode extra at the end, and output sizes."""
    t, l, b, r = pads_hw(a, x.shape[2:], k, s, d)
    res = []
    for n, (pb, pe), kk, ss, dd in zip(x.shape[2:], [(t, b), (l, r)], k, s, d):
        reach = dd * (kk - 1) + 1
        span = n + pb + pe - reach
        if a.get("ceil_mode", 0):
            o = -(-span // ss) + 1
            if (o - 1) * ss >= n + pb:
                o -= 1
        else:
            o = span // ss + 1
        extra = max(0, (o - 1) * ss + reach - (n + pb + pe))
        res.append((pb, pe, extra, o))
    return res


def pool(x, a, kind):
    k = a["kernel_shape"]
    s = a.get("strides", [1, 1])
    d = a.get("dilations", [1, 1])
    (pt, pb, eh, oh), (pl, pr, ew, ow) = pool_pad_amounts(a, x, k, s, d)
    if kind == "max":
        xp = F.pad(x, (pl, pr + ew, pt, pb + eh), value=float("-inf"))
        return F.max_pool2d(xp, k, s, dilation=d)[:, :, :oh, :ow]
    # Average: window sums over the zero-padded input, divided by the counted cells.
    xp = F.pad(x, (pl, pr + ew, pt, pb + eh))
    c = x.shape[1]
    ones = torch.ones(c, 1, k[0], k[1], dtype=x.dtype)
    sums = F.conv2d(xp, ones, stride=s, dilation=d, groups=c)[:, :, :oh, :ow]
    include = a.get("count_include_pad", 0)
    mask = torch.zeros(1, 1, xp.shape[2], xp.shape[3], dtype=x.dtype)
    if include:
        mask[:, :, : pt + x.shape[2] + pb, : pl + x.shape[3] + pr] = 1
    else:
        mask[:, :, pt: pt + x.shape[2], pl: pl + x.shape[3]] = 1
    counts = F.conv2d(mask, torch.ones(1, 1, k[0], k[1], dtype=x.dtype), stride=s, dilation=d)[:, :, :oh, :ow]
    return sums / counts.clamp(min=1)


def onnx_slice_indices(start, end, step, dim):
    """The indices ONNX's Slice keeps on an axis of length `dim` (its clamping rules)."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return list(range(start, end, step))


def int_list(v, a, attr, i):
    """An integer list from attribute `attr` (older opsets) or input `i` (a tensor), else None."""
    if attr in a:
        return [int(t) for t in a[attr]]
    if len(v) > i and v[i] is not None:
        return [int(t) for t in np.asarray(v[i]).reshape(-1)]
    return None


def forward(model, x, params, consts, shapes):
    """The graph in PyTorch. `params`/`consts`: tensors by name; `shapes`: onnxruntime's output
    shapes (for reshapes)."""
    env = {model.graph.input[0].name: x}
    data = {model.graph.input[0].name}

    def val(n):
        if n in env:
            return env[n]
        if n in params:
            return params[n]
        return consts[n]

    for node in model.graph.node:
        ins = list(node.input)
        if not any(i in data for i in ins) or node.op_type in ("Shape", "Size"):
            continue
        a = attrs(node)
        op = node.op_type
        v = [val(i) if i else None for i in ins]
        X = v[0]
        if op == "Conv":
            w = v[1]
            k, s, d = list(w.shape[2:]), a.get("strides", [1, 1]), a.get("dilations", [1, 1])
            t, l, b, r = pads_hw(a, X.shape[2:], k, s, d)
            y = F.conv2d(F.pad(X, (l, r, t, b)), w, v[2] if len(v) > 2 else None, stride=s, dilation=d,
                         groups=a.get("group", 1))
        elif op == "ConvTranspose":
            w = v[1]
            s, d = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
            full = F.conv_transpose2d(X, w, None, stride=s, dilation=d, groups=a.get("group", 1))
            op_h, op_w = a.get("output_padding", [0, 0])
            full = F.pad(full, (0, op_w, 0, op_h))
            t, l, b, r = a.get("pads", [0, 0, 0, 0])
            y = full[:, :, t: full.shape[2] - b, l: full.shape[3] - r]
            if len(v) > 2 and v[2] is not None:
                y = y + v[2].reshape(1, -1, 1, 1)
        elif op == "Gemm":
            A, B = X, v[1]
            if a.get("transA", 0):
                A = A.t()
            if a.get("transB", 0):
                B = B.t()
            y = a.get("alpha", 1.0) * (A @ B)
            if len(v) > 2 and v[2] is not None:
                y = y + a.get("beta", 1.0) * v[2]
        elif op == "MatMul":
            y = torch.matmul(v[0], v[1])
        elif op == "MaxPool":
            y = pool(X, a, "max")
        elif op == "AveragePool":
            y = pool(X, a, "avg")
        elif op == "GlobalAveragePool":
            y = X.mean(dim=tuple(range(2, X.dim())), keepdim=True)
        elif op == "BatchNormalization":
            y = F.batch_norm(X, v[3], v[4], v[1], v[2], training=False, eps=a.get("epsilon", 1e-5))
        elif op == "Relu":
            y = F.relu(X)
        elif op == "LeakyRelu":
            y = F.leaky_relu(X, a.get("alpha", 0.01))
        elif op == "PRelu":
            slope = v[1]
            if slope.dim() == 1 and X.dim() > 2 and slope.numel() > 1:
                slope = slope.reshape(-1, *([1] * (X.dim() - 2)))
            y = torch.where(X >= 0, X, X * slope)
        elif op == "Sigmoid":
            y = torch.sigmoid(X)
        elif op == "Tanh":
            y = torch.tanh(X)
        elif op == "Elu":
            y = F.elu(X, a.get("alpha", 1.0))
        elif op == "Clip":
            lo = v[1] if len(v) > 1 and v[1] is not None else a.get("min")
            hi = v[2] if len(v) > 2 and v[2] is not None else a.get("max")
            y = torch.clamp(X, min=None if lo is None else float(lo), max=None if hi is None else float(hi))
        elif op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
            y = X.reshape(shapes[node.output[0]])
        elif op == "Transpose":
            y = X.permute(*a.get("perm", list(reversed(range(X.dim())))))
        elif op == "Pad":
            pads = [int(p) for p in (v[1].tolist() if len(v) > 1 and v[1] is not None else a["pads"])]
            value = float(v[2]) if len(v) > 2 and v[2] is not None else 0.0
            n = X.dim()
            torch_pads = []
            for axis in reversed(range(n)):
                torch_pads += [pads[axis], pads[axis + n]]
            y = F.pad(X, torch_pads, value=value)
        elif op == "Concat":
            y = torch.cat(v, dim=a.get("axis", 0))
        elif op == "Add":
            y = v[0] + v[1]
        elif op == "Sub":
            y = v[0] - v[1]
        elif op == "Mul":
            y = v[0] * v[1]
        elif op == "Div":
            y = v[0] / v[1]
        elif op == "Softmax":
            y = torch.softmax(X, dim=a.get("axis", -1))
        elif op == "LogSoftmax":
            y = torch.log_softmax(X, dim=a.get("axis", -1))
        elif op in ("Dropout", "Identity", "Cast"):
            y = X
        elif op in ("ReduceMean", "ReduceSum", "ReduceMax"):
            axes = int_list(v, a, "axes", 1)
            if not axes:
                axes = [] if a.get("noop_with_empty_axes", 0) and axes is not None else list(range(X.dim()))
            keep = bool(a.get("keepdims", 1))
            if not axes:
                y = X
            elif op == "ReduceMean":
                y = X.mean(dim=axes, keepdim=keep)
            elif op == "ReduceSum":
                y = X.sum(dim=axes, keepdim=keep)
            else:
                y = X.amax(dim=axes, keepdim=keep)
        elif op == "GlobalMaxPool":
            y = X.amax(dim=tuple(range(2, X.dim())), keepdim=True)
        elif op == "HardSigmoid":
            y = torch.clamp(a.get("alpha", 0.2) * X + a.get("beta", 0.5), 0.0, 1.0)
        elif op == "HardSwish":
            y = X * torch.clamp(X + 3.0, 0.0, 6.0) / 6.0
        elif op == "Gelu":
            approx = a.get("approximate", b"none")
            y = F.gelu(X, approximate=approx.decode() if isinstance(approx, bytes) else approx)
        elif op == "Softplus":
            y = F.softplus(X)
        elif op == "Mish":
            y = X * torch.tanh(F.softplus(X))
        elif op == "Erf":
            y = torch.erf(X)
        elif op == "Slice":
            starts, ends = int_list(v, a, "starts", 1), int_list(v, a, "ends", 2)
            axes = int_list(v, a, "axes", 3) or list(range(len(starts)))
            steps = int_list(v, a, "steps", 4) or [1] * len(starts)
            y = X
            for s0, e0, ax, st in zip(starts, ends, axes, steps):
                ax = ax + X.dim() if ax < 0 else ax
                y = y.index_select(ax, torch.tensor(onnx_slice_indices(s0, e0, st, y.shape[ax]), dtype=torch.long))
        elif op == "Gather":
            ax = a.get("axis", 0)
            ax = ax + X.dim() if ax < 0 else ax
            idx = torch.as_tensor(np.asarray(v[1]), dtype=torch.long)
            idx = torch.where(idx < 0, idx + X.shape[ax], idx)
            picked = X.index_select(ax, idx.reshape(-1))
            y = picked.reshape(*X.shape[:ax], *idx.shape, *X.shape[ax + 1:])
        elif op == "Resize" and a.get("mode") in (b"linear", "linear"):
            ctm = a.get("coordinate_transformation_mode", b"half_pixel")
            ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
            assert ctm in ("pytorch_half_pixel", "half_pixel", "align_corners"), ctm
            if len(v) > 3 and v[3] is not None:
                size = [int(d) for d in np.asarray(v[3]).reshape(-1)][2:]
            else:
                scales = [float(t) for t in np.asarray(v[2]).reshape(-1)]
                size = [int(np.floor(X.shape[2 + i] * scales[2 + i])) for i in range(2)]
            y = F.interpolate(X, size=size, mode="bilinear", align_corners=ctm == "align_corners")
        elif op == "Upsample":
            assert a.get("mode", b"nearest") in (b"nearest", "nearest"), "Upsample: nearest only"
            scales = [float(t) for t in np.asarray(v[1]).reshape(-1)]
            y = F.interpolate(X, scale_factor=scales[2:], mode="nearest")
        elif op == "Resize":
            assert a.get("mode", b"nearest") in (b"nearest", "nearest"), "Resize: nearest only"
            assert a.get("coordinate_transformation_mode") in (b"asymmetric", "asymmetric")
            assert a.get("nearest_mode") in (b"floor", "floor")
            scales = [float(t) for t in np.asarray(v[2]).reshape(-1)]
            y = F.interpolate(X, scale_factor=scales[2:], mode="nearest")
        elif op == "Expand":
            shape = [int(d) for d in np.asarray(v[1]).reshape(-1)]
            y = torch.broadcast_to(X, np.broadcast_shapes(tuple(X.shape), tuple(shape)))
        elif op == "Tile":
            y = X.repeat(*[int(r) for r in np.asarray(v[1]).reshape(-1)])
        elif op == "GatherElements":
            ax = a.get("axis", 0)
            ax = ax + X.dim() if ax < 0 else ax
            idx = torch.as_tensor(np.asarray(v[1]), dtype=torch.long)
            y = torch.gather(X, ax, torch.where(idx < 0, idx + X.shape[ax], idx))
        elif op == "SpaceToDepth":
            b = a["blocksize"]
            n, c, h, w = X.shape
            y = X.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(n, b * b * c, h // b, w // b)
        elif op == "DepthToSpace":
            b, crd = a["blocksize"], a.get("mode", b"DCR") in (b"CRD", "CRD")
            n, c, h, w = X.shape
            if crd:
                y = X.reshape(n, c // (b * b), b, b, h, w).permute(0, 1, 4, 2, 5, 3)
            else:
                y = X.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
            y = y.reshape(n, c // (b * b), h * b, w * b)
        elif op == "SpaceToDepth":
            b = a["blocksize"]
            n, c, h, w = X.shape
            y = X.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)
        elif op == "GatherND":
            assert a.get("batch_dims", 0) == 0, "GatherND with batch_dims"
            idx = torch.as_tensor(np.asarray(v[1]), dtype=torch.long)
            k = idx.shape[-1]
            rows = idx.reshape(-1, k)
            lin = torch.zeros(rows.shape[0], dtype=torch.long)
            for j in range(k):
                col = torch.where(rows[:, j] < 0, rows[:, j] + X.shape[j], rows[:, j])
                lin = lin * X.shape[j] + col
            y = X.reshape(-1, *X.shape[k:]).index_select(0, lin).reshape(*idx.shape[:-1], *X.shape[k:])
        elif op == "Where":
            cond = torch.as_tensor(np.asarray(v[0])).bool()
            y = torch.where(cond, torch.as_tensor(v[1]), torch.as_tensor(v[2]))
        elif op == "Split":
            ax = a.get("axis", 0)
            ax = ax + X.dim() if ax < 0 else ax
            sizes = int_list(v, a, "split", 1)
            if sizes is None:
                n = len(node.output)
                each = -(-X.shape[ax] // n)
                sizes = [min(each, X.shape[ax] - i * each) for i in range(n)]
            for out, part in zip(node.output, torch.split(X, sizes, dim=ax)):
                env[out] = part
                data.add(out)
            continue
        else:
            raise SystemExit(f"{op} (node {node.name}) has no reference translation")
        env[node.output[0]] = y
        data.add(node.output[0])
    return env


def split_weights(model, values):
    """Trainable (name -> array) and fixed tensors, by hudd's slot rule."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    data = {model.graph.input[0].name}
    for node in model.graph.node:
        if any(i in data for i in node.input) and node.op_type not in ("Shape", "Size"):
            data.update(o for o in node.output if o)
    const = dict(values)
    const.update(inits)
    trainable = {}
    for node in model.graph.node:
        if not any(i in data for i in node.input) or node.op_type in ("Shape", "Size"):
            continue
        for ix, name in enumerate(node.input):
            if name and name not in data and ix in SLOTS.get(node.op_type, ()) and const[name].dtype == np.float32:
                trainable.setdefault(name, const[name])
    fixed = {n: a for n, a in const.items() if n not in trainable and n not in data}
    return trainable, fixed


def main():
    rng = np.random.RandomState(20261202)
    if OUT.exists():
        shutil.rmtree(OUT)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    for name, rel, loss_kind in MODELS:
        model = onnx.load(str(ROOT / rel))
        inp = model.graph.input[0]
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
        x = rng.rand(BATCH, *dims).astype(np.float32)
        values = all_values(model, x)
        out_name = model.graph.output[0].name
        logits_np = values[out_name]
        trainable, fixed = split_weights(model, values)
        shapes = {n: v.shape for n, v in values.items()}
        consts = {n: torch.from_numpy(np.array(a)) for n, a in fixed.items()
                  if np.issubdtype(np.array(a).dtype, np.number) or np.array(a).dtype == bool}

        # The logits of a model that ends in a softmax are its input (cross-entropy on logits).
        producer = {o: n for n in model.graph.node for o in n.output}
        last = producer[out_name]
        read = last.input[0] if loss_kind == "cross-entropy" and last.op_type == "Softmax" else out_name
        log_probs = loss_kind == "cross-entropy" and last.op_type == "LogSoftmax"

        if loss_kind == "cross-entropy":
            targets = rng.randint(0, logits_np.shape[1], size=BATCH)
        else:
            targets = rng.randn(*logits_np.shape).astype(np.float32)

        def loss_of(params):
            env = forward(model, torch.from_numpy(x), params, consts, shapes)
            y = env[read]
            if loss_kind == "mse":
                return F.mse_loss(y, torch.from_numpy(targets)), env
            t = torch.from_numpy(targets.astype(np.int64))
            return (F.nll_loss(y, t) if log_probs else F.cross_entropy(y, t)), env

        params = {n: torch.tensor(a, requires_grad=True) for n, a in trainable.items()}
        loss, env = loss_of(params)
        fwd = env[out_name].detach().numpy()
        err = np.abs(fwd - logits_np).max()
        assert err < 1e-4, f"{name}: the PyTorch translation differs from onnxruntime by {err}"
        loss.backward()
        grads = {n: p.grad.numpy().copy() for n, p in params.items()}

        train = {n: torch.tensor(a, requires_grad=True) for n, a in trainable.items()}
        opt = torch.optim.SGD(list(train.values()), lr=SGD["lr"], momentum=SGD["momentum"],
                              weight_decay=SGD["weight_decay"])
        for _ in range(SGD["steps"]):
            opt.zero_grad()
            step_loss, _ = loss_of(train)
            step_loss.backward()
            opt.step()

        d = OUT / name
        (d / "grad").mkdir(parents=True)
        (d / "after").mkdir()
        np.save(d / "input.npy", x)
        np.save(d / "targets.npy", targets.astype(np.float32))
        np.save(d / "outputs.npy", logits_np.astype(np.float32))
        weights = []
        for i, n in enumerate(trainable):
            np.save(d / "grad" / f"{i}.npy", grads[n].astype(np.float32))
            np.save(d / "after" / f"{i}.npy", train[n].detach().numpy().astype(np.float32))
            weights.append({"name": n, "file": f"{i}.npy", "shape": list(trainable[n].shape)})
        index = {
            "model": rel,
            "loss": loss_kind,
            "loss_value": float(loss.detach()),
            "sgd": SGD,
            "weights": weights,
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
        }
        (d / "index.json").write_text(json.dumps(index, indent=1) + "\n")
        print(f"{name}: {len(weights)} trainable weights, loss {float(loss.detach()):.6f}, forward error {err:.2e}")


if __name__ == "__main__":
    main()
