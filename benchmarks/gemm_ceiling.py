"""What this CPU can do at best for a ViT-B/32 image tower: onnxruntime's GEMM throughput on the tower's shapes.

    python benchmarks/gemm_ceiling.py [--seconds 3]

A ViT-B/32 at 224 px is 50 tokens x 12 layers x (768x2304 + 768x768 + 768x3072 + 3072x768) multiply-adds
= 8.5 GFLOP per image, almost all of it in four weight GEMMs. This times one onnxruntime MatMul
(float32, and int8 with dynamic quantisation, the form ``glimpse export --int8`` uses) of the largest shape at
batch 32 (1600 x 768 x 3072) and numpy's BLAS for comparison, and prints the encoder throughput each would
allow if the whole tower ran at that speed — the ceiling the end-to-end figures of
``benchmarks/onnx_speed.py`` should be read against.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable

import numpy as np

TOKENS, LAYERS, WIDTH = 50, 12, 768
MACS_PER_IMAGE = TOKENS * LAYERS * (WIDTH * 3 * WIDTH + WIDTH * WIDTH + 2 * WIDTH * 4 * WIDTH)
FLOP_PER_IMAGE = 2 * MACS_PER_IMAGE
M, K, N = 32 * TOKENS, WIDTH, 4 * WIDTH  # batch 32, fc1


def rate(run: Callable[[], object], seconds: float) -> float:
    """GFLOP/s of ``run`` (one M x K x N product) over ``seconds`` after a warm-up."""
    for _ in range(3):
        run()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += 1
    return 2 * M * K * N * count / (time.perf_counter() - start) / 1e9


def main() -> None:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a = rng.random((M, K), dtype=np.float32)
    w = rng.random((K, N), dtype=np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "fc1",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, [M, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, N])],
                              [numpy_helper.from_array(w, "w")])
    options = ort.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    results = {"numpy BLAS fp32": rate(lambda: a @ w, args.seconds)}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = f"{tmp}/fp32.onnx", f"{tmp}/int8.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fp32)
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
        for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8 dynamic", int8)):
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            results[name] = rate(lambda session=session: session.run(None, {"a": a}), args.seconds)
    print(json.dumps({"gflop_per_image": FLOP_PER_IMAGE / 1e9, "threads": options.intra_op_num_threads,
                      "gemm_gflops": {k: round(v, 1) for k, v in results.items()},
                      "encoder_ceiling_images_per_s": {k: round(v * 1e9 / FLOP_PER_IMAGE, 1)
                                                       for k, v in results.items()}}, indent=2))


if __name__ == "__main__":
    main()
