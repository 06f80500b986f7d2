"""Timing, run inside onnxruntime's child process (archkit.runtime.child, task "bench"): a
model's latency on each feed, and this machine's float32 matmul peak with the same threads.

Latency: `warmup` runs first (excluded: they load, trace and allocate), then timed runs until
`runs` or a time budget is reached (at least MIN_RUNS). Peak: the best of a large float32 MatMul
(N x N by N x N, 2 N^3 flops) in numpy (OpenBLAS) and in onnxruntime (MLAS).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from onnx import TensorProto, helper

__all__ = ["MIN_RUNS", "PEAK_N", "child_bench", "matmul_peak", "timed"]

MIN_RUNS = 5
PEAK_N = 2048


def timed(fn: Callable[[], object], *, warmup: int, runs: int, budget: float) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs and (len(times) < MIN_RUNS or time.perf_counter() - start < budget):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times




def child_bench(sess, feeds: Sequence[Mapping[str, np.ndarray]], request: Mapping[str, Any]) -> dict[str, Any]:
    """Time `sess` on each feed, then measure the float32 matmul peak with the same threads."""
    warmup, runs, budget = int(request["warmup"]), int(request["runs"]), float(request["budget"])
    latency = [timed(lambda f=f: sess.run(None, f), warmup=warmup, runs=runs, budget=budget) for f in feeds]
    n = int(request.get("peak_n", PEAK_N))
    return {"latency": latency, "peak": matmul_peak(n, int(request["threads"]), bool(request.get("spinning")))}


def matmul_peak(n: int, threads: int, spinning: bool = False) -> dict[str, float]:
    import onnxruntime as ort  # heavy: the child imports it anyway, the parent never

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    best_np = flops / min(timed(lambda: a @ b, warmup=2, runs=7, budget=5.0)) / 1e9
    graph = helper.make_graph([helper.make_node("MatMul", ["A", "B"], ["C"])], "peak",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n]),
                               helper.make_tensor_value_info("B", TensorProto.FLOAT, [n, n])],
                              [helper.make_tensor_value_info("C", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {"A": a, "B": b}
    best_ort = flops / min(timed(lambda: sess.run(None, feeds), warmup=2, runs=7, budget=5.0)) / 1e9
    return {"numpy": best_np, "onnxruntime": best_ort}


