#!/usr/bin/env python3
"""Writes the fuzzer's seed corpus (fuzz/corpus/<target>/): small valid inputs of every kind each
reader meets. The ONNX seeds are copies of committed fixture models; the rest is generated here.

    /tmp/torchenv/bin/python fuzz/make_corpus.py      # numpy, pillow

Committed; CI only reads it.
"""
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "fuzz" / "corpus"
MODELS = ["misc_ops", "bn_residual", "identity_weights", "lstm", "unsupported_op", "large_input", "depthwise", "keras_nhwc"]


def images(d):
    rng = np.random.default_rng(0)
    g = (rng.random((8, 8)) * 255).astype(np.uint8)
    rgb = (rng.random((6, 10, 3)) * 255).astype(np.uint8)
    Image.fromarray(g).save(d / "gray8.png")
    Image.fromarray(rgb).save(d / "rgb.png")
    Image.fromarray(np.dstack([rgb, rgb[..., 0]])).save(d / "rgba.png")
    Image.fromarray((rng.random((5, 7)) * 65535).astype(np.uint16)).save(d / "gray16.png")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=8).save(d / "palette.png")
    Image.fromarray(rgb).save(d / "baseline.jpg", quality=80)
    Image.fromarray(rgb).save(d / "progressive.jpg", quality=80, progressive=True)
    Image.fromarray(g).save(d / "gray.jpg")
    Image.fromarray(rgb).save(d / "rgb24.bmp")
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=8).save(d / "palette8.bmp")


def texts(manifest, labels):
    (manifest / "classes.csv").write_text("path,label\na/1.png,a\nb/2.png,b\n")
    (manifest / "metadata.csv").write_text(
        'path,label,yaw,lighting\na/1.png,a,10.5,dark\nb/2.png,b,-3,"bright, direct"\nmissing.png,a,0,dark\n'
    )
    (manifest / "regression.csv").write_text("path,label,eyelid\na/1.png,1.5 2 3.25 -4,0.3\nb/2.png,0;1;2;3,0.9\n")
    (manifest / "crlf.csv").write_bytes(b"path,label\r\n./a/1.png,a\r\nb/2.png,b\r\n")
    (labels / "classes.csv").write_text("path,cluster,label\na/1.png,1,a\nb/2.png,2,b\n")
    (labels / "image-column.csv").write_text("image,label\na/1.png,b\nb/2.png,\n")
    (labels / "targets.csv").write_text("path,label\na/1.png,1 2 3\nb/2.png,4 5 6\n")
    (labels / "extra.csv").write_text('path,label,notes\na/1.png,a,"ok"\nc/3.png,b,"not in the set"\n')


def reports(d):
    """Small valid reports and manifests cut from the committed v1 and v2 bundles."""
    for v in ["v1", "v2"]:
        r = json.loads((ROOT / "tests/fixtures/bundles" / v / "report.json").read_text())
        r["images"] = r["images"][:4]
        a = r.get("analysis")
        if a:
            a["layers"] = a["layers"][:2]
            for layer in a["layers"]:
                layer["curve"] = layer["curve"][:4]
                for c in layer["clusters"]:
                    c["members"] = [m for m in c["members"] if m["image"] < 4]
                layer["clusters"] = [c for c in layer["clusters"] if c["members"]][:3]
        if r.get("unsafe_set"):
            for c in r["unsafe_set"]["clusters"]:
                c["images"] = [i for i in c["images"] if i < 4]
                c["distances"] = c["distances"][: len(c["images"])]
        r["skipped"] = r.get("skipped", [])[:2]
        (d / f"report-{v}.json").write_text(json.dumps(r, indent=1))
        m = json.loads((ROOT / "tests/fixtures/bundles" / v / "manifest.json").read_text())
        m["files"] = m["files"][:5]
        (d / f"manifest-{v}.json").write_text(json.dumps(m, indent=1))


def main():
    dirs = {t: OUT / t for t in ["onnx", "image", "manifest", "labels", "report"]}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for m in MODELS:
        shutil.copy(ROOT / "tests/fixtures/models" / f"{m}.onnx", dirs["onnx"] / f"{m}.onnx")
    images(dirs["image"])
    texts(dirs["manifest"], dirs["labels"])
    reports(dirs["report"])


if __name__ == "__main__":
    main()
