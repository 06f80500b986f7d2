"""Latency of an exported model in onnxruntime, against Keras, and what it achieves of this
machine's float32 matmul peak.

- onnxruntime runs in a child process (archkit.verify.spawn): graph optimizations on, a set
  number of intra-op threads (reported), sequential execution, and by default without
  spin-waiting: onnxruntime's idle threads otherwise spin for work, which on cores shared with
  other processes makes ResNet-50 at batch 1 twice as slow with 2 threads (`spinning=True` for
  onnxruntime's default). Keras runs in this process as
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
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import onnx

__all__ = ["Latency", "Peak", "Bench", "bench_model", "keras_latency", "machine", "default_threads", "child_bench",
           "BATCH_SIZES"]

BATCH_SIZES = (1, 32)
WARMUP = 3
RUNS = 30
MIN_RUNS = 5
BUDGET_S = 8.0  # per runtime and batch size, after warm-up
PEAK_N = 2048


@dataclass(frozen=True)
class Latency:
    runtime: str  # "onnxruntime" or "keras"
    batch: int
    median_ms: float
    p90_ms: float
    runs: int
    gflops: float | None  # achieved, from archkit's MAC count

    @classmethod
    def of(cls, runtime: str, batch: int, seconds: Sequence[float], macs_per_sample: int | None) -> "Latency":
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
    from importlib import metadata

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


def _timed(fn, *, warmup: int, runs: int, budget: float) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs and (len(times) < MIN_RUNS or time.perf_counter() - start < budget):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


# --- the child process's side (archkit.verify._child_main, task "bench") --------------------

def child_bench(sess, feeds: Sequence[Mapping[str, np.ndarray]], request: Mapping[str, Any]) -> dict[str, Any]:
    """Time `sess` on each feed, then measure the float32 matmul peak with the same threads."""
    warmup, runs, budget = int(request["warmup"]), int(request["runs"]), float(request["budget"])
    latency = [_timed(lambda f=f: sess.run(None, f), warmup=warmup, runs=runs, budget=budget) for f in feeds]
    n = int(request.get("peak_n", PEAK_N))
    return {"latency": latency, "peak": _matmul_peak(n, int(request["threads"]), bool(request.get("spinning")))}


def _matmul_peak(n: int, threads: int, spinning: bool = False) -> dict[str, float]:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    best_np = flops / min(_timed(lambda: a @ b, warmup=2, runs=7, budget=5.0)) / 1e9
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
    best_ort = flops / min(_timed(lambda: sess.run(None, feeds), warmup=2, runs=7, budget=5.0)) / 1e9
    return {"numpy": best_np, "onnxruntime": best_ort}


# --- the parent's side --------------------------------------------------------------------

def _inputs(proto: onnx.ModelProto, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    from archkit.verify import seeded_inputs

    return seeded_inputs(proto, batch, seed=seed)


def keras_latency(model, feeds_by_batch: Mapping[int, Sequence[np.ndarray]], *, warmup: int = WARMUP, runs: int = RUNS,
                  budget: float = BUDGET_S) -> dict[int, list[float]]:
    """Seconds per call of `model` as a tf.function, per batch size (inputs NHWC, float32)."""
    from archkit.keras.export import import_keras

    tf, _ = import_keras()
    fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    out = {}
    for batch, args in feeds_by_batch.items():
        tensors = [tf.constant(a) for a in args]
        out[batch] = _timed(lambda: fn(*tensors), warmup=warmup, runs=runs, budget=budget)
    return out


def set_keras_threads(threads: int) -> int | None:
    """Ask TensorFlow for `threads` intra-op threads; returns what it uses (None: its default, all cores).
    Only possible before TensorFlow has run anything."""
    from archkit.keras.export import import_keras

    tf, _ = import_keras()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    used = tf.config.threading.get_intra_op_parallelism_threads()
    return used or None


def bench_model(proto: onnx.ModelProto, *, name: str, macs_per_sample: int | None, macs_complete: bool = True,
                keras_model=None, path=None, batch_sizes: Sequence[int] = BATCH_SIZES, threads: int | None = None,
                warmup: int = WARMUP, runs: int = RUNS, budget: float = BUDGET_S, peak_n: int = PEAK_N,
                deployment: Mapping[str, Any] | None = None, timeout: float | None = None,
                spinning: bool = False) -> Bench:
    """Latency of `proto` in onnxruntime (and of `keras_model`, if given) at each batch size.
    A fixed batch dimension in the model replaces `batch_sizes`. `path`: run that file (external data)."""
    from archkit.deploy import metadata
    from archkit.verify import _fixed_batch, _to_keras, spawn

    threads = threads or default_threads()
    fixed = _fixed_batch(proto)
    batches = (fixed,) if fixed else tuple(batch_sizes)
    feeds = [_inputs(proto, b) for b in batches]
    keras_threads = set_keras_threads(threads) if keras_model is not None else None
    env_threads = str(threads)
    old = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    os.environ.update(OPENBLAS_NUM_THREADS=env_threads, OMP_NUM_THREADS=env_threads)  # the child's numpy
    try:
        result, _ = spawn(path if path is not None else proto,
                          {"task": "bench", "threads": threads, "optimization": "all", "warmup": warmup, "runs": runs,
                           "budget": budget, "peak_n": peak_n, "spinning": spinning}, feeds,
                          what=f"{name} (benchmark)", timeout=timeout)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    lats = [Latency.of("onnxruntime", b, t, macs_per_sample) for b, t in zip(batches, result["latency"])]
    if keras_model is not None:
        layout = metadata(proto).get("archkit.layout", "nhwc")
        keras_feeds = {b: [_to_keras(x, layout) for x in f.values()] for b, f in zip(batches, feeds)}
        for b, t in keras_latency(keras_model, keras_feeds, warmup=warmup, runs=runs, budget=budget).items():
            lats.append(Latency.of("keras", b, t, macs_per_sample))
    peak = Peak(peak_n, result["peak"]["numpy"], result["peak"]["onnxruntime"])
    return Bench(name, macs_per_sample, macs_complete, threads, spinning, keras_threads, tuple(lats), peak, machine(),
                 dict(deployment or {}))


def summary_lines(b: Bench) -> list[str]:
    """What `archkit bench` prints."""
    m = b.machine
    lines = [f"{b.name}: {m.get('cpu')}, {m.get('usable_cores')} usable cores, onnxruntime threads {b.threads} "
             f"(spin-waiting {'on' if b.spinning else 'off'}), "
             f"TensorFlow intra-op threads {b.keras_threads or 'default (all cores)'}"
             + (f", load average {m['load_average_1min']:.1f}" if m.get("load_average_1min") is not None else "")]
    macs = f"{b.macs_per_sample:,}" if b.macs_per_sample else "unknown"
    lines.append(f"MACs per sample (archkit's count{'' if b.macs_complete else ', a lower bound'}): {macs}; "
                 "GFLOP/s = 2 flops per MAC x MACs x batch / median latency")
    lines.append(f"float32 matmul peak ({b.peak.n}x{b.peak.n}, same threads): numpy {b.peak.numpy_gflops:.1f} GFLOP/s, "
                 f"onnxruntime {b.peak.onnxruntime_gflops:.1f} GFLOP/s")
    for lat in b.latencies:
        frac = b.fraction(lat)
        perf = f", {lat.gflops:.1f} GFLOP/s ({frac:.0%} of peak)" if lat.gflops is not None and frac is not None else ""
        lines.append(f"  {lat.runtime:<12} batch {lat.batch:>3}: median {lat.median_ms:.2f} ms, p90 {lat.p90_ms:.2f} ms "
                     f"({lat.runs} runs){perf}")
    for batch in sorted({l.batch for l in b.latencies}):
        s = b.speedup(batch)
        if s is not None:
            lines.append(f"  onnxruntime vs Keras at batch {batch}: {s:.2f}x {'faster' if s >= 1 else 'slower'}")
    d = b.deployment
    if d.get("export_seconds") is not None:
        lines.append(f"export: {d['export_seconds']:.1f} s"
                     + (f" + {d['convert_seconds']:.1f} s {d['precision']} conversion" if d.get("precision", "fp32") != "fp32"
                        and d.get("convert_seconds") is not None else "")
                     + (" (the cached export was reused)" if d.get("cached") else ""))
    return lines
