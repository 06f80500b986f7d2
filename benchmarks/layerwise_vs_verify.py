"""`archkit verify NAME --layers` against a plain `archkit verify NAME`, in one run.

    python benchmarks/layerwise_vs_verify.py [--name inception_v1] [--repeat 1] [--workdir /tmp/archkit-layerwise]

Both run as a user runs them (the command in a fresh process), with the same warm export cache
(its own, in --workdir: the export and its memory profile are made once first) and with their
parity computed, not read back: the cached verification results are removed before each run, so each builds the
Keras model and runs both sides. `--layers` also marks every layer's tensor as an output in a
copy of the model and runs it with the plain model and the Keras probe. Prints the wall-clock
seconds of each (best of --repeat) and the ratio.

Goal (the layerwise issue): inception_v1 (fp32) with --layers takes at most 3x the plain verify.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def run(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "archkit", *args], check=False, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"archkit {' '.join(args)} failed ({done.returncode}): {done.stderr.strip() or done.stdout[-400:]}")
    return seconds


def forget_verifications(cache: Path) -> None:
    """Remove every cached parity result (the exports stay)."""
    for f in cache.glob("*/verification*.json"):
        f.unlink()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default="inception_v1")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/archkit-layerwise"))
    args = p.parse_args(argv)
    cache = args.workdir / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ARCHKIT_CACHE_DIR": str(cache)}
    print(f"warming the export cache ({args.name}) ...", flush=True)
    run(["verify", args.name], env)  # the export and its memory profile, kept for both
    plain, layers = [], []
    for _ in range(args.repeat):
        forget_verifications(cache)
        plain.append(run(["verify", args.name], env))
        forget_verifications(cache)
        layers.append(run(["verify", args.name, "--layers"], env))
    a, b = min(plain), min(layers)
    print(f"{args.name}: archkit verify {a:.1f} s, archkit verify --layers {b:.1f} s: {b / a:.2f}x")
    ok = b <= 3 * a
    print(f"{'PASS' if ok else 'MISS'}  --layers within 3x of a plain verify: {b / a:.2f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
