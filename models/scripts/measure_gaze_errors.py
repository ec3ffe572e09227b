#!/usr/bin/env python3
"""Measure where the gaze reference model errs, to set the simulator's sector-border band.

Run once from the repository root after `make_gaze.py` (the output is committed):

    cargo build --release -p hudd-cli
    .venv-torch/bin/python models/scripts/measure_gaze_errors.py

Simulates a fresh test split (`hudd simulate gaze --test 20000 --seed 7`: a seed neither the model,
the demo nor the tests use), runs models/gaze/gaze_cnn.onnx on it with onnxruntime and writes
models/gaze/error-profile.json: the error rate per planted condition, and, for the images without
one, the error rate by distance (degrees) to the nearest class border. The simulator's
`CauseThresholds::DEFAULT.border_within` is the widest band whose error rate stays at least
`BAND_FACTOR` times the rate far from any border (beyond 10°): errors outside it are the model's
residual noise, not a cause.
"""
import csv
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["center", "right", "up-right", "up", "up-left", "left", "down-left", "down", "down-right"]
CENTER_RADIUS = 12.0
SEED = 7
TEST = 20000
BANDS = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 8), (8, 10)]
BAND_FACTOR = 5.0


def border_distance(yaw, pitch):
    """Degrees from the gaze to the nearest class border (as `Params::gaze_border_distance`)."""
    radius = math.hypot(yaw, pitch)
    to_centre = abs(radius - CENTER_RADIUS)
    if radius < CENTER_RADIUS:
        return to_centre
    off = (math.degrees(math.atan2(pitch, yaw)) % 360.0 - 22.5) % 45.0
    return min(to_centre, off, 45.0 - off)


def main():
    hudd = ROOT / "target" / "release" / "hudd"
    session = ort.InferenceSession(str(ROOT / "models" / "gaze" / "gaze_cnn.onnx"))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "gaze"
        subprocess.run([str(hudd), "simulate", "gaze", "--train", "0", "--test", str(TEST), "--improvement", "0",
                        "--seed", str(SEED), "-o", str(data), "-q"], check=True)
        rows = list(csv.DictReader(open(data / "test" / "manifest.csv")))
        x = np.stack([np.asarray(Image.open(data / "test" / r["path"]), dtype=np.float32) / 255.0 for r in rows])
    predicted = np.concatenate([session.run(None, {"image": x[i:i + 500, None]})[0].argmax(1)
                                for i in range(0, len(x), 500)])
    wrong = np.array([CLASSES[p] != r["label"] for p, r in zip(predicted, rows)])
    planted = np.array([r["cause"] not in ("sector-border", "none") for r in rows])
    distance = np.array([border_distance(float(r["gaze_yaw"]), float(r["gaze_pitch"])) for r in rows])
    # `border_distance` restates `Params::gaze_border_distance`: the simulator's own `cause` column
    # must agree with it (every sector-border image closer to a border than every `none` image).
    border = np.array([r["cause"] == "sector-border" for r in rows])
    none = np.array([r["cause"] == "none" for r in rows])
    if distance[border].max() >= distance[none].min():
        sys.exit("border_distance disagrees with the simulator's cause column; update it from models/sim/src/lib.rs")

    def rate(mask):
        return {"images": int(mask.sum()), "error_rate": round(float(wrong[mask].mean()), 4) if mask.any() else None}

    conditions = {c: rate(np.array([r["cause"] == c for r in rows]))
                  for c in ["eyelid-closed", "underexposed", "extreme-head-yaw", "glare-over-pupil"]}
    far = rate(~planted & (distance >= 10.0))
    bands = [{"from": lo, "to": hi, **rate(~planted & (distance >= lo) & (distance < hi))} for lo, hi in BANDS]
    width = 0
    for b in bands:
        if b["error_rate"] is None or b["error_rate"] < BAND_FACTOR * max(far["error_rate"], 1e-3):
            break
        width = b["to"]
    profile = {
        "model": "gaze_cnn.onnx",
        "data": f"hudd simulate gaze --train 0 --test {TEST} --improvement 0 --seed {SEED}",
        "script": "models/scripts/measure_gaze_errors.py",
        "overall_error_rate": round(float(wrong.mean()), 4),
        "planted_conditions": conditions,
        "no_condition_far_from_borders": far,
        "no_condition_by_border_distance_deg": bands,
        "band_factor": BAND_FACTOR,
        "border_band_deg": width,
    }
    out = ROOT / "models" / "gaze" / "error-profile.json"
    out.write_text(json.dumps(profile, indent=1) + "\n")
    print(json.dumps(profile, indent=1))


if __name__ == "__main__":
    sys.exit(main())
