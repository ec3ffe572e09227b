#!/usr/bin/env python3
"""`hudd analyze` at scale beside the Python pipeline that does the same work: 10,000 test images at
224 × 224 with ResNet-50, about 1,000 of them Wrong (issue 32's benchmark).

    .venv-torch/bin/python models/scripts/bench_pipeline.py prepare OUT
        OUT/resnet50_10.onnx (+ .onnx.data): torchvision's ResNet-50 with 10 classes, seeded weights,
        batch norms away from the identity (bench_zennit.torchvision_model), written by
        torch.onnx.export's default exporter;
        OUT/hudd.toml: 224 × 224 RGB, pixel / 255, classes c0 … c9;
        OUT/data/test/c<k>/<i>.png: the 10,000 Fashion-MNIST test images (Debian's
        dataset-fashion-mnist), each in the folder of the class the model predicts for it, except a
        seeded 10 % placed in another class's folder: those are the Wrong images (OUT/wrong.txt).
        The predictions come from PyTorch over all 10,000 images, decoded and stretched as hudd
        does: that pass is the Python pipeline's evaluation stage, timed (OUT/python_eval.json).

    /usr/bin/time -v target/release/hudd analyze -m OUT/resnet50_10.onnx -c OUT/hudd.toml \\
        -d OUT/data -o OUT/run --keep-heatmaps best

    .venv-torch/bin/python models/scripts/bench_pipeline.py python OUT [--explain 64] [--pairs 250]
        The rest of the Python pipeline, each stage measured on a part and scaled to the whole:
        Zennit (ResNetCanonizer, hudd's preset: ε = 1e-9 on convolutions, z⁺ without bias on the
        dense layer) on the first --explain Wrong images for hudd's default layers (every
        convolution, dense and pooling output, and the input), written as .npy and synced as hudd
        writes them, scaled by the number of Wrong images; HUDD's clustering with scipy + kneed
        (make_cluster_reference.layer_reference: pdist, Ward, fcluster for every k, WICD, knee):
        pdist timed on --pairs rows of each distinct layer width D (random values: the work does not
        depend on them) and scaled by (Wrong / pairs)², as it grows; the rest, which depends on the
        number of rows alone, timed once at the full number of Wrong images and counted per layer.
"""
import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))

FMNIST = Path("/usr/share/datasets/fashion-mnist")
SIZE = 224
CLASSES = [f"c{k}" for k in range(10)]
WRONG_SHARE = 0.10
SEED = 32


def resnet50():
    from bench_zennit import torchvision_model
    return torchvision_model("resnet50", num_classes=10).eval()


def idx(name):
    raw = gzip.open(FMNIST / name).read()
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * nd).reshape(dims)


def load(paths):
    """Decoded, stretched to 224² (bilinear), three channels, pixel / 255: as hudd.toml says."""
    arrs = []
    for p in paths:
        im = Image.open(p).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
        arrs.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0)
    return torch.from_numpy(np.stack(arrs))


def prepare(out):
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    m = resnet50()
    x = torch.rand(2, 3, SIZE, SIZE)
    torch.onnx.export(m, (x,), str(out / "resnet50_10.onnx"), input_names=["image"], output_names=["logits"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    (out / "hudd.toml").write_text(
        "[input]\nsize = [224, 224]\nchannels = 3\nlayout = \"nchw\"\nscale = 0.00392156862745098\n"
        "mean = [0.0, 0.0, 0.0]\nstd = [1.0, 1.0, 1.0]\nresize = \"stretch\"\n\n"
        f"[task]\nkind = \"classification\"\noutput = \"logits\"\nclasses = {json.dumps(CLASSES)}\n\n"
        "[run]\nbatch_size = 16\nseed = 0\n")
    # The images first, in a scratch folder, then the Python evaluation over them (timed).
    images = idx("t10k-images-idx3-ubyte.gz")
    scratch = out / "scratch"
    scratch.mkdir(exist_ok=True)
    paths = []
    for i, im in enumerate(images):
        p = scratch / f"{i:05d}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    predicted = []
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(paths), 64):
            predicted += m(load(paths[i:i + 64])).argmax(1).tolist()
            print(f"\revaluated {i + 64} of {len(paths)}", end="", flush=True, file=sys.stderr)
    elapsed = time.perf_counter() - t
    print(file=sys.stderr)
    (out / "python_eval.json").write_text(json.dumps({"images": len(paths), "seconds": elapsed,
                                                      "torch": torch.__version__, "threads": 2}) + "\n")
    rng = np.random.RandomState(SEED)
    wrong = set(rng.choice(len(paths), int(len(paths) * WRONG_SHARE), replace=False).tolist())
    wrong_paths = []
    for i, (p, k) in enumerate(zip(paths, predicted)):
        label = (k + 1 + rng.randint(9)) % 10 if i in wrong else k
        dst = out / "data" / "test" / CLASSES[label] / p.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(p, dst)
        if i in wrong:
            wrong_paths.append(str(dst.relative_to(out)))
    scratch.rmdir()
    (out / "wrong.txt").write_text("\n".join(sorted(wrong_paths)) + "\n")
    counts = np.bincount(predicted, minlength=10).tolist()
    print(f"evaluation (PyTorch, 10,000 images): {elapsed:.1f} s; predicted per class {counts}; "
          f"{len(wrong_paths)} Wrong")


def python_rest(out, explain, pairs):
    from zennit.torchvision import ResNetCanonizer

    from bench_zennit import DEFAULT_LAYERS, hudd_composite, run
    from make_cluster_reference import layer_reference
    from scipy.spatial.distance import pdist

    torch.set_num_threads(2)
    wrong = [out / p for p in (out / "wrong.txt").read_text().split()]
    m = resnet50()

    def composite():
        return hudd_composite([ResNetCanonizer()])

    write = out / "zennit"
    t = time.perf_counter()
    run(m, composite, wrong[:explain], True, SIZE, 16, write=write, layers=DEFAULT_LAYERS)
    zennit_s = time.perf_counter() - t
    widths = []
    for f in sorted(write.glob("*.npy")):
        a = np.load(f, mmap_mode="r")
        widths.append(int(np.prod(a.shape[1:])))
        f.unlink()
    write.rmdir()
    n = len(wrong)
    print(f"Zennit: {explain} Wrong images in {zennit_s:.1f} s, {len(widths)} layers "
          f"→ {zennit_s * n / explain:.0f} s for {n}", flush=True)
    # pdist grows with N² · D: timed on `pairs` rows of each layer width and scaled. The rest (Ward,
    # fcluster and WICD for every k up to 500, the knee) depends on N alone: timed once at the full
    # N, on rows too narrow for pdist to count.
    rng = np.random.RandomState(SEED)
    per_width = {}
    for d in sorted(set(widths)):
        x = rng.rand(pairs, d).astype(np.float32)
        t = time.perf_counter()
        pdist(x.astype(np.float64))
        per_width[d] = time.perf_counter() - t
        print(f"scipy pdist: {pairs} rows × D {d}: {per_width[d]:.1f} s", flush=True)
    t = time.perf_counter()
    layer_reference(rng.rand(n, 8).astype(np.float32), optimal_ordering=True)
    rest_s = time.perf_counter() - t
    print(f"scipy Ward + fcluster per k + WICD + kneed at N = {n}: {rest_s:.1f} s per layer", flush=True)
    cluster_s = sum(per_width[d] * (n / pairs) ** 2 + rest_s for d in widths)
    print(f"scipy + kneed: {len(widths)} layers → {cluster_s:.0f} s for {n} rows")
    evaluation = json.loads((out / "python_eval.json").read_text())
    result = {"evaluate_s": evaluation["seconds"], "zennit_s_measured": zennit_s, "explained": explain,
              "wrong": n, "zennit_s": zennit_s * n / explain, "layers": len(widths),
              "pdist_s_per_width": {str(k): v for k, v in per_width.items()}, "pairs": pairs,
              "ward_knee_s_per_layer": rest_s, "cluster_s": cluster_s}
    result["total_s"] = result["evaluate_s"] + result["zennit_s"] + result["cluster_s"]
    (out / "python_pipeline.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"Python pipeline: evaluate {result['evaluate_s']:.0f} s + Zennit {result['zennit_s']:.0f} s + "
          f"scipy/kneed {cluster_s:.0f} s = {result['total_s']:.0f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["prepare", "python"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--explain", type=int, default=64, help="Wrong images Zennit explains (scaled to all)")
    ap.add_argument("--pairs", type=int, default=250, help="rows per layer width for scipy (scaled by N²)")
    a = ap.parse_args()
    if a.stage == "prepare":
        prepare(a.out)
    else:
        python_rest(a.out, a.explain, a.pairs)


if __name__ == "__main__":
    main()
