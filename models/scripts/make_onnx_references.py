#!/usr/bin/env python3
"""Zennit references for ONNX models that have no PyTorch source (the tf2onnx fixtures of the coverage
matrix): the ONNX graph rebuilt as a PyTorch twin whose layers are the modules Zennit's rules hook,
canonized as Zennit's canonizers would canonize the model, then explained by Zennit.

The twin is written from the ONNX operator definitions and the LRP rules, independently of hudd:
- a `Conv`, `Gemm` or `MatMul` by a constant is an `nn.Conv2d` / `nn.Linear`; the per-channel affine
  nodes that follow it (`BatchNormalization`; `Mul`/`Div`/`Add`/`Sub` by a constant that is the same
  at every position of a channel, as tf2onnx writes batch norms and biases), also behind a
  `Transpose` back to NHWC, are merged into its weight and bias (Zennit's SequentialMergeBatchNorm,
  extended to the written-out forms); the transpose stays, after the merged layer;
- a sum of two activations and the `Add` of an unmerged constant are Zennit's `Sum` (Norm rule: the
  constant absorbs its share); a product by an unmerged per-channel constant is a diagonal linear
  map under the Norm rule; by a scalar it is a plain multiplication (its gradient, as Zennit computes
  any unhooked operation); a `Sub` of a scalar passes relevance on;
- a product of two activations where one is a gate (a `Sigmoid`, a `HardSigmoid`, or the hard
  sigmoid written out: a `Clip` with both bounds, shifted and scaled by scalars) is a signal-only
  gate (Pahde et al., CVPRW 2023), any other product the uniform rule (half to each);
- element-wise activations are Zennit's Pass; average pooling, global average pooling and spatial
  means are `AvgPool2d`/`AdaptiveAvgPool2d` (Norm); max pooling is `MaxPool2d` (winner takes all);
  transposes, reshapes, pads and concatenations are tensor operations (their gradient routes
  relevance back).
The twin's logits must equal onnxruntime's (checked).

Writes lrp/<fixture>/<preset>/*.npy and lrp/<fixture>/index.json under tests/fixtures/families/ for
the image of lrp/<fixture>/input.npy (written by make_keras_families.py), presets `hudd` and
`epsilon-plus`, keyed by the ONNX tensor each layer writes (for a merged layer: the last merged
node's output; behind a transpose: the layer's own output).

    .venv-torch/bin/python models/scripts/make_onnx_references.py [fixture ...]
(default: every fixture of index.json whose exporter is tf2onnx)
"""
import importlib.metadata
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper
from zennit.composites import EpsilonPlus, LayerMapComposite, layer_map_base
from zennit.rules import Epsilon, Norm, Pass, ZPlus

sys.path.insert(0, str(Path(__file__).parent))
from make_family_fixtures import SignalOnlyGate, Uniform  # noqa: E402
from make_torchvision_families import Pair, zennit_preset  # noqa: E402  (Pair: a + b through Zennit's Sum)

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "families"


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Act(nn.Module):
    """An element-wise activation (Zennit's Pass)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class Scale(nn.Module):
    """x · k by a constant tensor no layer absorbed: a diagonal linear map (Norm rule)."""

    def __init__(self, k):
        super().__init__()
        self.register_buffer("k", k)

    def forward(self, x):
        return x * self.k


class Graph:
    def __init__(self, model):
        self.model = model
        self.nodes = list(model.graph.node)
        self.consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        for n in self.nodes:
            if n.op_type == "Constant":
                self.consts[n.output[0]] = numpy_helper.to_array(attrs(n)["value"])
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.readers = {}
        for n in self.nodes:
            for i in n.input:
                self.readers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in model.graph.output}

    def const(self, name):
        return self.consts.get(name)

    def only_reader(self, tensor):
        r = self.readers.get(tensor, [])
        return r[0] if len(r) == 1 and tensor not in self.outputs else None


def channel_vector(k, rank, axis, channels):
    """k's value per channel when it broadcasts against a tensor of `rank` axes with the channel on
    `axis` and is the same along every other axis; None otherwise."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim > rank:
        return None
    shape = (1,) * (rank - k.ndim) + k.shape
    if any(d != 1 for i, d in enumerate(shape) if i != axis):
        return None
    flat = k.reshape(-1)
    if flat.size == 1:
        return np.full(channels, flat[0])
    return flat if flat.size == channels else None


def affine_of(g, node, current, rank, axis, channels):
    """(scale, shift) per channel when `node` applies one to `current`, else None."""
    if node.op_type == "BatchNormalization":
        gamma, beta, mean, var = (g.const(i) for i in node.input[1:5])
        if any(v is None for v in (gamma, beta, mean, var)) or len(gamma) != channels or axis != 1:
            return None
        s = gamma / np.sqrt(var + attrs(node).get("epsilon", 1e-5))
        return s.astype(np.float64), (beta - mean * s).astype(np.float64)
    if node.op_type not in ("Mul", "Div", "Add", "Sub") or len(node.input) != 2:
        return None
    ours = list(node.input).index(current) if current in node.input else None
    if ours is None or (ours == 1 and node.op_type in ("Sub", "Div")):
        return None
    k = g.const(node.input[1 - ours])
    if k is None:
        return None
    v = channel_vector(k, rank, axis, channels)
    if v is None:
        return None
    one, zero = np.ones(channels), np.zeros(channels)
    return {"Mul": (v, zero), "Div": (1.0 / v, zero), "Add": (one, v), "Sub": (one, -v)}[node.op_type]


def is_gate(g, tensor):
    """A sigmoid, a hard sigmoid, or the hard sigmoid written out (Clip with both bounds, shifted and
    scaled by scalars)."""
    while True:
        p = g.producer.get(tensor)
        if p is None:
            return False
        if p.op_type in ("Sigmoid", "HardSigmoid"):
            return True
        if p.op_type == "Clip":
            lo = g.const(p.input[1]) if len(p.input) > 1 and p.input[1] else None
            hi = g.const(p.input[2]) if len(p.input) > 2 and p.input[2] else None
            return lo is not None and hi is not None
        if p.op_type in ("Mul", "Div", "Add", "Sub") and len(p.input) == 2:
            ks = [g.const(i) for i in p.input]
            if ks[1] is not None and np.size(ks[1]) == 1:
                tensor = p.input[0]
                continue
            if ks[0] is not None and np.size(ks[0]) == 1 and p.op_type in ("Mul", "Add"):
                tensor = p.input[1]
                continue
        return False


def pads_of(a, rank=2):
    p = list(a.get("pads", [0] * (2 * rank)))
    # ONNX: [top, left, bottom, right]; F.pad: (left, right, top, bottom).
    return (p[1], p[3], p[0], p[2])


def auto_pads(a, x_hw, k, s, d):
    mode = a.get("auto_pad", b"NOTSET")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode in ("NOTSET", "VALID"):
        return pads_of(a) if mode == "NOTSET" else (0, 0, 0, 0)
    total = [max(0, (-(-x // st) - 1) * st + (kk - 1) * dd + 1 - x) for x, kk, st, dd in zip(x_hw, k, s, d)]
    lo = [t // 2 if mode == "SAME_UPPER" else t - t // 2 for t in total]
    return (lo[1], total[1] - lo[1], lo[0], total[0] - lo[0])


class Twin(nn.Module):
    """The ONNX graph run in PyTorch, with Zennit-hookable modules (see the module documentation)."""

    def __init__(self, model, shapes):
        super().__init__()
        g = self.g = Graph(model)
        self.input = model.graph.input[0].name
        self.output = model.graph.output[0].name
        self.mods = nn.ModuleDict()
        self.steps = []  # (kind, node, extra)
        self.layer_tensor = {}  # module key -> the ONNX tensor that carries its relevance
        self.alias = {}  # merged tensor -> the tensor holding its value
        data = {self.input}
        for n in g.nodes:
            if any(i in data for i in n.input):
                data.update(n.output)
        self.data = data
        skipped = set()
        for n in g.nodes:
            if n.name in skipped or not any(i in data for i in n.input):
                continue
            key = f"m{len(self.mods)}"
            op = n.op_type
            if op in ("Conv", "Gemm", "MatMul") and all(g.const(i) is not None for i in n.input[1:]):
                module, channels, rank = self.layer(n, shapes)
                # The per-channel affine chain after it, also behind one transpose.
                w = module.weight.detach().double().numpy()
                b = module.bias.detach().double().numpy()
                current, axis, after, merged = n.output[0], (1 if rank == 4 else rank - 1), [], []
                while True:
                    nxt = g.only_reader(current)
                    if nxt is None:
                        break
                    if nxt.op_type == "Transpose" and not after:
                        beyond = g.only_reader(nxt.output[0])
                        perm = list(attrs(nxt)["perm"])
                        if beyond is None or affine_of(g, beyond, nxt.output[0], rank, perm.index(axis), channels) is None:
                            break
                        after.append((nxt, perm))
                        axis = perm.index(axis)
                        current = nxt.output[0]
                        continue
                    aff = affine_of(g, nxt, current, rank, axis, channels)
                    if aff is None:
                        break
                    s, t = aff
                    w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
                    b = b * s + t
                    merged.append(nxt)
                    current = nxt.output[0]
                with torch.no_grad():
                    module.weight.copy_(torch.from_numpy(w))
                    module.bias.copy_(torch.from_numpy(b))
                self.mods[key] = module
                last = current
                if after:
                    # The layer's relevance is its own output's; the transposed tensor follows.
                    self.steps.append(("layer", n, (key, n.output[0])))
                    tr, perm = after[0]
                    self.steps.append(("permute", tr, (n.output[0], perm, last)))
                    skipped.add(tr.name)
                    self.layer_tensor[key] = n.output[0]
                else:
                    self.steps.append(("layer", n, (key, last)))
                    self.layer_tensor[key] = last
                skipped.update(m.name for m in merged)
                continue
            self.steps.append(("node", n, self.module_for(n, key)))

    def layer(self, n, shapes):
        g = self.g
        a = attrs(n)
        if n.op_type == "Conv":
            w = g.const(n.input[1])
            b = g.const(n.input[2]) if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[0], np.float32)
            k = w.shape[2:]
            s, d = a.get("strides", [1, 1]), a.get("dilations", [1, 1])
            x_hw = shapes[n.input[0]][2:]
            pads = auto_pads(a, x_hw, k, s, d)
            conv = nn.Conv2d(w.shape[1] * a.get("group", 1), w.shape[0], tuple(k), tuple(s), 0, tuple(d),
                             a.get("group", 1), True)
            conv.onnx_pads = pads
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(b))
            return conv, w.shape[0], 4
        w = g.const(n.input[1])
        if n.op_type == "Gemm":
            w = w.T if a.get("transB", 0) else w
            w = w * a.get("alpha", 1.0)
            b = g.const(n.input[2]) * a.get("beta", 1.0) if len(n.input) > 2 and n.input[2] else np.zeros(w.shape[1])
        else:
            b = np.zeros(w.shape[1])
        lin = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
            lin.bias.copy_(torch.from_numpy(np.asarray(b, np.float32)))
        return lin, w.shape[1], len(shapes[n.output[0]])

    def module_for(self, n, key):
        """The module (if any) a non-layer node runs as."""
        g, op, a = self.g, n.op_type, attrs(n)
        acts = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Softplus": F.softplus,
                "HardSwish": F.hardswish, "Mish": F.mish}
        mod = None
        if op in acts:
            mod = Act(acts[op])
        elif op == "Clip":
            lo = g.const(n.input[1]) if len(n.input) > 1 and n.input[1] else None
            hi = g.const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
            lo = float(lo) if lo is not None else None
            hi = float(hi) if hi is not None else None
            mod = Act(lambda x, lo=lo, hi=hi: torch.clamp(x, lo, hi))
        elif op == "HardSigmoid":
            al, be = a.get("alpha", 0.2), a.get("beta", 0.5)
            mod = Act(lambda x, al=al, be=be: torch.clamp(al * x + be, 0.0, 1.0))
        elif op == "LeakyRelu":
            mod = Act(lambda x, al=a.get("alpha", 0.01): F.leaky_relu(x, al))
        elif op == "MaxPool":
            mod = nn.MaxPool2d(tuple(a["kernel_shape"]), tuple(a.get("strides", [1, 1])), 0,
                               tuple(a.get("dilations", [1, 1])), ceil_mode=bool(a.get("ceil_mode", 0)))
        elif op == "AveragePool":
            mod = nn.AvgPool2d(tuple(a["kernel_shape"]), tuple(a.get("strides", [1, 1])), 0,
                               ceil_mode=bool(a.get("ceil_mode", 0)),
                               count_include_pad=bool(a.get("count_include_pad", 0)))
            assert not any(a.get("pads", [0])), f"{n.name}: padded average pooling"
        elif op in ("GlobalAveragePool", "ReduceMean"):
            mod = nn.AdaptiveAvgPool2d(1)
        elif op in ("Add", "Sub") and all(i in self.data for i in n.input):
            assert op == "Add", f"{n.name}: a difference of two activations"
            mod = Pair()
        elif op == "Add" or (op == "Sub" and np.size(g.const(n.input[1])) > 1):
            mod = Pair()
        elif op in ("Mul", "Div") and not all(i in self.data for i in n.input):
            k = g.const(n.input[1]) if n.input[0] in self.data else g.const(n.input[0])
            if np.size(k) > 1:
                k = torch.from_numpy(np.asarray(k, np.float32))
                mod = Scale(1.0 / k if op == "Div" else k)
        if mod is None:
            return None
        self.mods[key] = mod
        return key

    def forward(self, x):
        env = {self.input: x}
        g = self.g

        def val(name):
            if name in env:
                return env[name]
            c = g.const(name)
            return torch.from_numpy(np.array(c)).to(x.dtype) if np.issubdtype(np.asarray(c).dtype, np.floating) \
                else torch.from_numpy(np.array(c))

        for kind, n, extra in self.steps:
            if kind == "layer":
                key, out = extra
                m = self.mods[key]
                v = val(n.input[0])
                if isinstance(m, nn.Conv2d):
                    v = F.pad(v, m.onnx_pads)
                env[out] = m(v)
                continue
            if kind == "permute":
                src, perm, out = extra
                env[out] = env[src].permute(*perm)
                continue
            env.update(zip(n.output, self.run(n, extra, val)))
        return env[self.output]

    def run(self, n, key, val):
        op, a, g = n.op_type, attrs(n), self.g
        m = self.mods[key] if key is not None else None
        ins = [val(i) if i else None for i in n.input]
        x = ins[0]
        if op in ("Relu", "Sigmoid", "Tanh", "Softplus", "HardSwish", "Mish", "Clip", "HardSigmoid", "LeakyRelu"):
            return [m(x)]
        if op == "MaxPool" or op == "AveragePool":
            return [m(F.pad(x, pads_of(a), value=float("-inf") if op == "MaxPool" else 0.0))]
        if op == "GlobalAveragePool":
            return [m(x)]
        if op == "ReduceMean":
            axes = sorted(int(v) % x.dim() for v in (a.get("axes") or g.const(n.input[1])))
            keep = a.get("keepdims", 1)
            if axes == [2, 3]:
                y = m(x)
            elif axes == [1, 2]:
                y = m(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            else:
                raise ValueError(f"{n.name}: a mean over {axes}")
            return [y if keep else y.flatten(1)]
        if op == "Add":
            return [m(ins[0], ins[1])]
        if op == "Sub":
            return [m(ins[0], -ins[1])] if m is not None else [ins[0] - ins[1]]
        if op in ("Mul", "Div"):
            if m is not None:
                return [m(x if n.input[0] in self.data else ins[1])]
            if all(i in self.data for i in n.input):
                assert op == "Mul", f"{n.name}: a quotient of two activations"
                a0, a1 = n.input
                if is_gate(g, a1) and not is_gate(g, a0):
                    return [SignalOnlyGate.apply(ins[0], ins[1])]
                if is_gate(g, a0) and not is_gate(g, a1):
                    return [SignalOnlyGate.apply(ins[1], ins[0])]
                return [Uniform.apply(ins[0], ins[1])]
            return [ins[0] * ins[1] if op == "Mul" else ins[0] / ins[1]]
        if op == "Transpose":
            return [x.permute(*a["perm"])]
        if op in ("Reshape",):
            shape = [int(v) for v in ins[1]]
            shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return [x.reshape(shape)]
        if op == "Flatten":
            return [x.flatten(a.get("axis", 1))]
        if op == "Squeeze":
            axes = a.get("axes") or [int(v) for v in ins[1]]
            for ax in sorted((int(v) % x.dim() for v in axes), reverse=True):
                x = x.squeeze(ax)
            return [x]
        if op == "Unsqueeze":
            axes = a.get("axes") or [int(v) for v in ins[1]]
            for ax in sorted(int(v) for v in axes):
                x = x.unsqueeze(ax)
            return [x]
        if op == "Pad":
            p = [int(v) for v in ins[1]]
            r = len(p) // 2
            torch_pads = []
            for ax in reversed(range(r)):
                torch_pads += [p[ax], p[ax + r]]
            return [F.pad(x, tuple(torch_pads))]
        if op == "SpaceToDepth":
            # ONNX: output channel (i·b + j)·C + c holds input (c, y·b + i, x·b + j). A data movement:
            # Zennit's gradient carries relevance back to the element each output copies.
            b = a["blocksize"]
            n, c, h, w = x.shape
            y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
            return [y.reshape(n, b * b * c, h // b, w // b)]
        if op == "Concat":
            return [torch.cat(ins, dim=a["axis"])]
        if op in ("Identity", "Dropout"):
            return [x]
        raise ValueError(f"{n.name}: no translation for {op}")


def shapes_of(path, x):
    model = onnx.load(str(path))
    known = {o.name for o in model.graph.output}
    for n in model.graph.node:
        for o in n.output:
            if o not in known:
                model.graph.output.append(onnx.helper.make_empty_tensor_value_info(o))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    vals = dict(zip(names, sess.run(None, {model.graph.input[0].name: x})))
    shapes = {k: v.shape for k, v in vals.items()}
    shapes[model.graph.input[0].name] = x.shape
    return shapes, vals[model.graph.output[0].name]


def composites():
    extra = lambda stab: [(Act, Pass()), (Scale, Norm(stabilizer=stab))]  # noqa: E731

    def hudd():
        return LayerMapComposite(layer_map=extra(1e-9) + layer_map_base(1e-9) + [
            (nn.Conv2d, Epsilon(epsilon=1e-9)),
            (nn.Linear, ZPlus(stabilizer=1e-9, zero_params="bias")),
        ])
    return {"hudd": hudd, "epsilon-plus": lambda: EpsilonPlus(layer_map=extra(1e-6))}


def reference(fixture):
    path = OUT / f"{fixture}.onnx"
    out_dir = OUT / "lrp" / fixture
    x = np.load(out_dir / "input.npy")
    shapes, want = shapes_of(path, x)
    twin = Twin(onnx.load(str(path)), shapes).eval()
    with torch.no_grad():
        got = twin(torch.from_numpy(x)).numpy()
    err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    assert err < 1e-4, f"{fixture}: the twin computes what onnxruntime does ({err:.2e})"
    index = {"images": ["test/bag/00030.png"], "input": "input.npy", "zennit": importlib.metadata.version("zennit"),
             "torch": torch.__version__, "start": "predicted-logit", "canonizer": "ONNX twin (make_onnx_references.py)",
             "presets": {}}
    modules = {k: twin.mods[k] for k in twin.layer_tensor}
    for preset, make in composites().items():
        files = zennit_preset(out_dir, preset, twin, modules, twin.layer_tensor, torch.from_numpy(x), make())
        index["presets"][preset] = files
    (out_dir / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return len(twin.layer_tensor), err


def main(wanted):
    index_path = OUT / "index.json"
    index = json.loads(index_path.read_text())
    for fixture, f in index["fixtures"].items():
        if (wanted and fixture not in wanted) or (not wanted and f["exporter"] != "tf2onnx"):
            continue
        layers, err = reference(fixture)
        f["layers_compared"] = layers
        print(f"{fixture}: {layers} layers, twin vs onnxruntime {err:.1e}", flush=True)
    index_path.write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
