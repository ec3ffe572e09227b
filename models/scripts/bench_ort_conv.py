#!/usr/bin/env python3
"""How close onnxruntime's own convolutions come to the machine's fp32 peak: single Conv layers of
ResNet-18's shapes (seeded random weights, one image, one thread), timed as the median of 10 runs
after 3 warm-ups. Put beside `models/scripts/fp32_peak.c` (per-core peak) in BENCHMARKS.md, it says
what share of the peak `hudd evaluate` would need to match onnxruntime.

    .venv-torch/bin/python models/scripts/bench_ort_conv.py
"""
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# (channels in = out, side, kernel): ResNet-18's 3x3 stages and a 1x1 projection.
LAYERS = [(64, 56, 3), (256, 56, 3), (512, 14, 3), (128, 28, 1)]


def conv_model(c, side, k, rng):
    w = (rng.standard_normal((c, c, k, k)) * 0.05).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4)
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, side, side])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def main():
    rng = np.random.default_rng(0)
    print(f"onnxruntime {ort.__version__}, 1 thread")
    print("channels  side  kernel   median_ms   GFLOP/s")
    for c, side, k in LAYERS:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(conv_model(c, side, k, rng), options, providers=["CPUExecutionProvider"])
        x = rng.standard_normal((1, c, side, side)).astype(np.float32)
        for _ in range(3):
            session.run(None, {"x": x})
        times = []
        for _ in range(10):
            start = time.perf_counter()
            session.run(None, {"x": x})
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        flop = 2 * c * c * k * k * side * side
        print(f"{c:8d}  {side:4d}  {k:6d}  {median * 1e3:10.2f}  {flop / median / 1e9:8.1f}")


if __name__ == "__main__":
    main()
