"""Latency of an exported model in onnxruntime, against Keras, and what it achieves of this
machine's float32 matmul peak.

- onnxruntime runs in a child process (archkit.runtime.child): graph optimizations on, a set
  number of intra-op threads (reported), sequential execution, and by default without
  spin-waiting: onnxruntime's idle threads otherwise spin for work, which on cores shared with
  other processes makes ResNet-50 at batch 1 twice as slow with 2 threads (`spinning=True` for
  onnxruntime's default). Keras runs in this process (archkit.keras.bench) as
  a `tf.function` (graph mode, traced once), with TensorFlow's intra-op threads set the same
  where TensorFlow has not started yet (what it uses is reported either way).
- Latency: `warmup` runs first (excluded: they load, trace and allocate), then timed runs until
  `runs` or a time budget is reached (at least MIN_RUNS); median and 90th percentile.
- Achieved GFLOP/s = 2 x archkit's MAC count x batch / median latency: two floating-point
  operations (a multiply and an add) per multiply-accumulate, MACs of Conv/Gemm/MatMul only
  (archkit.costs; the other elementwise flops are left out, so this is a slight understatement).
- Peak: the best of a large float32 MatMul (N x N by N x N, 2 N^3 flops) in numpy (OpenBLAS) and
  in onnxruntime (MLAS), in the same child process and with the same thread count, measured in
  the same run. The fraction of peak compares the model with that.

All figures depend on the machine and on what else runs on it: they go into a report only when
asked (`archkit report NAME --bench`), with the machine they came from.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any

import numpy as np
import onnx

from archkit.runtime.child import spawn
from archkit.runtime.feeds import Feeds, plan
from archkit.runtime.parity import fixed_batch
from archkit.runtime.timing import PEAK_N

__all__ = [
    "BATCH_SIZES",
    "BUDGET_S",
    "PEAK_N",
    "RUNS",
    "WARMUP",
    "Bench",
    "Latency",
    "Peak",
    "bench_batches",
    "bench_model",
    "default_threads",
    "machine",
]

BATCH_SIZES = (1, 32)
WARMUP = 3
RUNS = 30
BUDGET_S = 8.0  # per runtime and batch size, after warm-up


@dataclass(frozen=True)
class Latency:
    runtime: str  # "onnxruntime" or "keras"
    batch: int
    median_ms: float
    p90_ms: float
    runs: int
    gflops: float | None  # achieved, from archkit's MAC count

    @classmethod
    def of(cls, runtime: str, batch: int, seconds: Sequence[float], macs_per_sample: int | None) -> Latency:
        median = float(np.median(seconds))
        gflops = 2 * macs_per_sample * batch / median / 1e9 if macs_per_sample and median > 0 else None
        return cls(runtime, batch, median * 1e3, float(np.percentile(seconds, 90)) * 1e3, len(seconds), gflops)


@dataclass(frozen=True)
class Peak:
    n: int
    numpy_gflops: float
    onnxruntime_gflops: float

    @property
    def gflops(self) -> float:
        return max(self.numpy_gflops, self.onnxruntime_gflops)


@dataclass(frozen=True)
class Bench:
    name: str
    macs_per_sample: int | None
    macs_complete: bool
    threads: int
    spinning: bool
    keras_threads: int | None
    latencies: tuple[Latency, ...]
    peak: Peak
    machine: Mapping[str, Any] = field(default_factory=dict)
    deployment: Mapping[str, Any] = field(default_factory=dict)  # layout, precision, export time, ...

    def latency(self, runtime: str, batch: int) -> Latency | None:
        return next((l for l in self.latencies if l.runtime == runtime and l.batch == batch), None)

    def fraction(self, lat: Latency) -> float | None:
        return lat.gflops / self.peak.gflops if lat.gflops is not None and self.peak.gflops else None

    def speedup(self, batch: int) -> float | None:
        """Keras latency / onnxruntime latency at `batch` (> 1: onnxruntime is faster)."""
        o, k = self.latency("onnxruntime", batch), self.latency("keras", batch)
        return k.median_ms / o.median_ms if o and k and o.median_ms else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["peak"]["gflops"] = self.peak.gflops
        for row, lat in zip(d["latencies"], self.latencies):
            row["fraction_of_peak"] = self.fraction(lat)
        d["speedup_vs_keras"] = {str(b): self.speedup(b) for b in sorted({l.batch for l in self.latencies})}
        d["flops_per_mac"] = 2
        return d


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for pkg in ("onnxruntime", "tensorflow", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": default_threads(),
            "system": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
            "load_average_1min": load, "versions": versions}


def bench_model(proto: onnx.ModelProto, *, name: str, macs_per_sample: int | None, macs_complete: bool = True,
                path=None, batch_sizes: Sequence[int] = BATCH_SIZES, threads: int | None = None,
                warmup: int = WARMUP, runs: int = RUNS, budget: float = BUDGET_S, peak_n: int = PEAK_N,
                deployment: Mapping[str, Any] | None = None, timeout: float | None = None,
                spinning: bool = False, feeds: Feeds | None = None) -> Bench:
    """Latency of `proto` in onnxruntime at each batch size (archkit.keras.bench adds Keras').
    A fixed batch dimension in the model replaces `batch_sizes`. `path`: run that file (external data).
    `feeds`: how its inputs are fed (archkit.runtime.feeds; default: seeded, every dim but the
    batch fixed by the file)."""
    threads = threads or default_threads()
    plan_ = feeds if feeds is not None else plan(proto, what=str(path) if path is not None else name)
    batches = plan_.batches(batch_sizes)
    fed = [plan_.feed(b, 0) for b in batches]
    env_threads = str(threads)
    old = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    os.environ.update(OPENBLAS_NUM_THREADS=env_threads, OMP_NUM_THREADS=env_threads)  # the child's numpy
    try:
        result, _ = spawn(path if path is not None else proto,
                          {"task": "bench", "threads": threads, "optimization": "all", "warmup": warmup, "runs": runs,
                           "budget": budget, "peak_n": peak_n, "spinning": spinning}, fed,
                          what=f"{name} (benchmark)", timeout=timeout,
                          explain=lambda message, i: plan_.explain(proto, message, fed[i or 0]))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    lats = [Latency.of("onnxruntime", b, t, macs_per_sample) for b, t in zip(batches, result["latency"])]
    peak = Peak(peak_n, result["peak"]["numpy"], result["peak"]["onnxruntime"])
    return Bench(name, macs_per_sample, macs_complete, threads, spinning, None, tuple(lats), peak, machine(),
                 dict(deployment or {}))


def bench_batches(proto: onnx.ModelProto, batch_sizes: Sequence[int]) -> tuple[int, ...]:
    """The batch sizes a model is timed at: its fixed batch, else `batch_sizes`."""
    fixed = fixed_batch(proto)
    return (fixed,) if fixed else tuple(batch_sizes)
