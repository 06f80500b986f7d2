"""Deployment figures of one architecture (default resnet50), measured in one run on this machine.

    python benchmarks/deploy.py [--name resnet50] [--threads N] [--samples 128] [--no-export-timing]

Prints, each against its goal (issue 6):
  1. onnxruntime batch-1 latency against Keras (`tf.function`)             goal >= 2x faster
  2. achieved GFLOP/s (2 flops per MAC, archkit's MAC count) and its
     fraction of the float32 matmul peak measured in the same run          goal >= 70%
  3. fp16 and int8 (static, QDQ) file sizes against fp32                   goal >= 1.9x / >= 3.5x smaller
  4. their top-1 agreement with the fp32 export on evaluation inputs
     (`--samples` seeded standard-normal inputs)                           goal >= 99% / >= 97%
  5. archkit's export against Keras' own model.export(format="onnx"),
     each once, in a fresh process (tracing caches would favour the second) goal: no slower
and the cached export's reuse. Figures depend on the machine's load: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

EXPORT_ARCHKIT = """
import sys, time
from archkit.keras.pipeline import build_seeded
from archkit.keras.export import export_keras
arch, config, model = build_seeded(sys.argv[1])
t = time.perf_counter()
export_keras(model, name=sys.argv[1], config=config, block_of=arch.block, path=sys.argv[2])
print(time.perf_counter() - t)
"""

EXPORT_KERAS = """
import sys, time, warnings
from archkit.keras.pipeline import build_seeded
from archkit.keras.export import import_keras, quiet_stderr
tf, keras = import_keras()
arch, config, model = build_seeded(sys.argv[1])
signature = [tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=t.name) for t in model.inputs]
t = time.perf_counter()
with warnings.catch_warnings(), quiet_stderr():
    warnings.simplefilter("ignore")
    model.export(sys.argv[2], format="onnx", input_signature=signature, verbose=False)
print(time.perf_counter() - t)
"""


def _timed_export(code: str, name: str, out: str) -> float:
    proc = subprocess.run([sys.executable, "-c", code, name, out], capture_output=True, text=True, timeout=1800,
                          check=False)
    if proc.returncode:
        raise SystemExit(f"export failed: {proc.stderr.strip().splitlines()[-1:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def _goal(ok: bool) -> str:
    return "goal met" if ok else "goal NOT met"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="resnet50")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--samples", type=int, default=128, help="evaluation inputs for fp16/int8 agreement (default 128)")
    p.add_argument("--no-export-timing", action="store_true", help="skip the export-time comparison (~1 minute)")
    p.add_argument("--spinning", action="store_true", help="onnxruntime's idle threads spin-wait (its default)")
    args = p.parse_args()

    from archkit.deploy import DeployOptions
    from archkit.deploy.convert import convert_precision, precision_deltas
    from archkit.keras import bench as keras_bench
    from archkit.runtime import bench

    threads = args.threads or bench.default_threads()
    print(f"{args.name} on {bench.machine()['cpu']}, {bench.default_threads()} usable cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")

    if not args.no_export_timing:
        with tempfile.TemporaryDirectory() as tmp:
            keras_s = _timed_export(EXPORT_KERAS, args.name, os.path.join(tmp, "keras.onnx"))
            archkit_s = _timed_export(EXPORT_ARCHKIT, args.name, os.path.join(tmp, "archkit.onnx"))
        print(f"export, one run each in a fresh process: archkit {archkit_s:.1f} s, Keras model.export {keras_s:.1f} s "
              f"-> archkit {keras_s / archkit_s:.2f}x as fast ({_goal(archkit_s <= keras_s)}: no slower)", flush=True)

    from archkit.keras.pipeline import build_seeded, run_architecture

    keras_bench.set_keras_threads(threads)  # before TensorFlow runs anything
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ARCHKIT_CACHE_DIR"] = cache
        t = time.perf_counter()
        analysis, fp32 = run_architecture(args.name, verify=False)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        again, _ = run_architecture(args.name, verify=False)
        warm = time.perf_counter() - t
    print(f"archkit export through the pipeline: {cold:.1f} s (export {analysis.deployment['export_seconds']:.1f} s); "
          f"unchanged, from the cache: {warm:.2f} s (cached={again.deployment['cached']})", flush=True)

    macs = analysis.costs.total()["macs"]
    model = build_seeded(args.name)[2]
    b = keras_bench.bench_with_keras(fp32, model, name=args.name, macs_per_sample=macs, threads=threads,
                          batch_sizes=(1,), deployment=analysis.deployment, spinning=args.spinning)
    ort1, keras1 = b.latency("onnxruntime", 1), b.latency("keras", 1)
    speedup = b.speedup(1)
    frac = b.fraction(ort1)
    print(f"batch 1, {b.threads} thread(s) (onnxruntime spin-waiting {'on' if b.spinning else 'off'}): onnxruntime median {ort1.median_ms:.1f} ms (p90 {ort1.p90_ms:.1f}), "
          f"Keras tf.function median {keras1.median_ms:.1f} ms (p90 {keras1.p90_ms:.1f}) "
          f"-> {speedup:.2f}x faster ({_goal(speedup >= 2)}: >= 2x)")
    print(f"achieved: 2 flops/MAC x {macs:,} MACs / {ort1.median_ms:.1f} ms = {ort1.gflops:.1f} GFLOP/s; matmul peak "
          f"{b.peak.gflops:.1f} GFLOP/s (numpy {b.peak.numpy_gflops:.1f}, onnxruntime {b.peak.onnxruntime_gflops:.1f}, "
          f"{b.peak.n}x{b.peak.n}) -> {frac:.0%} of peak ({_goal(frac >= 0.7)}: >= 70%)", flush=True)

    for precision, size_goal, top1_goal in (("fp16", 1.9, 0.99), ("int8", 3.5, 0.97)):
        t = time.perf_counter()
        converted = convert_precision(fp32, DeployOptions(precision=precision), name=args.name)
        seconds = time.perf_counter() - t
        d = precision_deltas(fp32, converted, samples=args.samples, name=args.name)
        _, o = next(iter(d["outputs"].items()))
        print(f"{precision}: {d['size_bytes']:,} bytes vs {d['fp32_size_bytes']:,} -> {d['size_ratio']:.2f}x smaller "
              f"({_goal(d['size_ratio'] >= size_goal)}: >= {size_goal}x); top-1 agreement with fp32 on {d['samples']} "
              f"evaluation inputs {o['top1_agreement']:.1%} ({_goal(o['top1_agreement'] >= top1_goal)}: >= "
              f"{top1_goal:.0%}), top-5 {o['top5_agreement']:.1%}, max abs error {o['max_abs_error']:.2g} "
              f"(max rel {o['max_rel_error']:.2g}); conversion {seconds:.1f} s", flush=True)
        if o["top1_agreement"] < 1:
            _explain_flips(fp32, converted, args.samples, precision)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def _explain_flips(fp32, converted, samples: int, precision: str) -> None:
    """Where the converted model's top-1 differs: how decided was float32 there?"""
    import numpy as np

    from archkit.deploy import EVAL_SEED
    from archkit.deploy.convert import generated_inputs, input_specs
    from archkit.runtime.child import run_isolated

    feeds = generated_inputs(fp32, samples, seed=EVAL_SEED)
    types = {k: dt for k, _, dt in input_specs(converted)}
    chunks = [{k: v[i:i + 16] for k, v in feeds.items()} for i in range(0, samples, 16)]
    _, want, _ = run_isolated(fp32, chunks)
    _, got, _ = run_isolated(converted, [{k: v.astype(types[k]) for k, v in c.items()} for c in chunks])
    w = np.concatenate([o[0] for o in want]).astype(np.float64)
    g = np.concatenate([o[0] for o in got]).astype(np.float64)
    top2 = np.sort(w, axis=-1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    flips = w.argmax(-1) != g.argmax(-1)
    print(f"  {precision}: {flips.sum()} top-1 flips; fp32's margin between its two highest scores there: median "
          f"{np.median(margin[flips]):.2g}, against {np.median(margin):.2g} over all inputs and a largest "
          f"{precision} error of {np.abs(g - w).max():.2g}")


if __name__ == "__main__":
    main()
