"""Keras' side of `archkit bench`: the Keras model timed as a `tf.function` (graph mode, traced
once) in this process, beside onnxruntime's figures (archkit.runtime.bench), with TensorFlow's
intra-op threads set the same where TensorFlow has not started yet."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from archkit.analysis import Analysis
from archkit.deploy import DeployOptions
from archkit.keras.export import import_keras
from archkit.keras.parity import to_keras
from archkit.keras.pipeline import build_seeded, run_architecture
from archkit.metadata import read as read_metadata
from archkit.runtime.bench import (
    BATCH_SIZES,
    BUDGET_S,
    RUNS,
    WARMUP,
    Bench,
    Latency,
    bench_batches,
    bench_model,
    default_threads,
)
from archkit.runtime.parity import seeded_inputs
from archkit.runtime.timing import timed

__all__ = ["bench_architecture", "bench_with_keras", "keras_latency", "set_keras_threads"]


def keras_latency(model, feeds_by_batch: Mapping[int, Sequence[np.ndarray]], *, warmup: int = WARMUP, runs: int = RUNS,
                  budget: float = BUDGET_S) -> dict[int, list[float]]:
    """Seconds per call of `model` as a tf.function, per batch size (inputs NHWC, float32)."""
    tf, _ = import_keras()
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    out = {}
    for batch, args in feeds_by_batch.items():
        tensors = [tf.constant(a) for a in args]
        out[batch] = timed(functools.partial(fn, *tensors), warmup=warmup, runs=runs, budget=budget)
    return out


def set_keras_threads(threads: int) -> int | None:
    """Ask TensorFlow for `threads` intra-op threads; returns what it uses (None: its default, all cores).
    Only possible before TensorFlow has run anything."""
    tf, _ = import_keras()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    used = tf.config.threading.get_intra_op_parallelism_threads()
    return used or None


def bench_with_keras(proto: onnx.ModelProto, keras_model, *, threads: int | None = None,
                     batch_sizes: Sequence[int] = BATCH_SIZES, warmup: int = WARMUP, runs: int = RUNS,
                     budget: float = BUDGET_S, **options) -> Bench:
    """archkit.runtime.bench.bench_model, and the Keras model timed on the same inputs."""
    threads = threads or default_threads()
    keras_threads = set_keras_threads(threads)  # before TensorFlow runs anything
    b = bench_model(proto, threads=threads, batch_sizes=batch_sizes, warmup=warmup, runs=runs, budget=budget, **options)
    layout = read_metadata(proto).layout or "nhwc"
    batches = bench_batches(proto, batch_sizes)
    feeds = {batch: [to_keras(x, layout) for x in seeded_inputs(proto, batch).values()] for batch in batches}
    lats = [Latency.of("keras", batch, t, b.macs_per_sample)
            for batch, t in keras_latency(keras_model, feeds, warmup=warmup, runs=runs, budget=budget).items()]
    return dataclasses.replace(b, keras_threads=keras_threads, latencies=b.latencies + tuple(lats))


def bench_architecture(name: str, *, opset: int | None = None, deploy: DeployOptions | None = None,
                       overrides: Mapping[str, Any] | None = None, keras: bool = True, threads: int | None = None,
                       batch_sizes: Sequence[int] = BATCH_SIZES, runs: int = RUNS, timeout: float | None = None,
                       spinning: bool = False, progress: Callable[[str], None] = lambda stage: None
                       ) -> tuple[Bench, Analysis]:
    """Bench a registered architecture's export (from the cache when it is there) in onnxruntime,
    and the Keras model beside it unless `keras` is False. GFLOP/s come from archkit's MAC count;
    a quantized export's ops have no cost rule, so its MACs are counted on the fp32 export of
    the same network."""
    overrides = dict(overrides or {})
    threads = threads or default_threads()
    if keras:
        set_keras_threads(threads)  # before TensorFlow runs anything
    analysis, proto = run_architecture(name, opset=opset, verify=False, deploy=deploy, progress=progress, **overrides)
    costs = analysis.costs
    if not costs.complete:
        costs = run_architecture(name, opset=opset, verify=False, progress=progress, **overrides)[0].costs
    options = {"name": name, "macs_per_sample": costs.total()["macs"], "macs_complete": costs.complete,
               "threads": threads, "batch_sizes": batch_sizes, "runs": runs, "timeout": timeout, "spinning": spinning,
               "deployment": {**{k: v for k, v in (analysis.deployment or {}).items() if k != "options"},
                              **(deploy.cache_fields() if deploy else {})}}
    if keras:
        model = build_seeded(name, **overrides)[2]
        progress("bench")
        return bench_with_keras(proto, model, **options), analysis
    progress("bench")
    return bench_model(proto, **options), analysis
