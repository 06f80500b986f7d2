"""Time `archkit report NAME` cold (empty export cache, fresh process) and warm (cached export,
no TensorFlow import), and the Keras → ONNX export of each architecture with tf2onnx's default
optimizer (a deep copy of the graph before every optimizer) against archkit's (no copies),
checking that both give byte-identical files.

    python benchmarks/report_time.py [--report inception_v1] [--exports resnet50,inception_v3 | --exports all]

Goals (issue: the zoo): cold <= 20 s, warm <= 3 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def timed_report(name: str, cache: str, out: str) -> float:
    env = dict(os.environ, ARCHKIT_CACHE_DIR=cache)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "archkit", "report", name, "--out", out], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def export_times(names: list[str]) -> None:
    from archkit.keras.export import export_keras
    from archkit.keras.pipeline import build_seeded

    print(f"{'architecture':<28} {'tf2onnx default':>16} {'archkit':>9} {'saved':>7}  identical")
    for name in names:
        arch, config, model = build_seeded(name)
        export_keras(model, name=name, config=config, block_of=arch.block)  # warm-up: tracing caches
        timing, files = {}, {}
        for copy in (True, False):
            t = time.perf_counter()
            proto = export_keras(model, name=name, config=config, block_of=arch.block, copy_graphs=copy)
            timing[copy] = time.perf_counter() - t
            files[copy] = proto.SerializeToString()
        print(f"{name:<28} {timing[True]:>15.2f}s {timing[False]:>8.2f}s {1 - timing[False] / timing[True]:>6.0%}  "
              f"{files[True] == files[False]}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", default="inception_v1")
    p.add_argument("--exports", default="baseline_cnn,inception_v1,resnet50,inception_v3,densenet121")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        cold = timed_report(args.report, cache, out)
        warm = min(timed_report(args.report, cache, out) for _ in range(3))
    print(f"archkit report {args.report}: cold {cold:.1f} s (goal <= 20 s), warm {warm:.2f} s (goal <= 3 s)")

    import architectures

    names = architectures.names() if args.exports == "all" else [n for n in args.exports.split(",") if n]
    if names:
        export_times(names)


if __name__ == "__main__":
    main()
