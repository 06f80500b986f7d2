"""Fuzz `archkit analyse` with mutated and truncated ONNX models; print how many cases ran.

    python benchmarks/fuzz_analyse.py                     # 5,000 cases
    python benchmarks/fuzz_analyse.py --cases 50000 --seed 7 --keep /tmp/fuzz-failures

Each case is a model from tests/builders.py (a small CNN, If/Loop/Scan, nested Ifs, a
CNN with external data) with bytes flipped, replaced, deleted, inserted or cut off, or with
dims, attribute values and names changed in the parsed model. Every case runs `archkit analyse`
(the command, through archkit.cli.main) in a forked child with a time limit, so a crash or a
hang is counted rather than ending the run. Clean means: every case exits 0 or with one of
archkit's own error codes (2-9) -- no internal error (1), no other exception, no signal, no
timeout. Failing inputs are kept with --keep. Exit status: 0 when clean.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import random
import signal
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.builders import conv_weight_bytes, seeds
from tests.mutations import OWN_CODES, mutate_bytes, mutate_fields


def run_case(path: Path, timeout: float) -> tuple[str, str]:
    """(outcome, detail): 'ok' / 'error N' / 'internal' / 'signal NAME' / 'timeout'."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run the command, report its exit code and stderr's first line
        os.close(r)
        err = io.StringIO()
        try:
            from archkit.cli import main

            with redirect_stdout(io.StringIO()), redirect_stderr(err):
                rc = main(["analyse", str(path), "--format", "json"])
        except BaseException as e:  # noqa: BLE001 - main() maps every exception to a code: this is a bug in main()
            rc, err = 1, io.StringIO(f"{type(e).__name__}: {e}")
        os.write(w, f"{rc}\n{err.getvalue()[:300]}".encode("utf-8", "replace"))
        os._exit(0)
    os.close(w)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            return "timeout", ""
        time.sleep(0.002)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}", ""
    code, _, detail = out.decode().partition("\n")
    if not code:
        return "internal", "child wrote nothing"
    code = int(code)
    if code == 0:
        return "ok", ""
    return (f"error {code}" if code in OWN_CODES else "internal"), detail.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds one case may take (default 20)")
    p.add_argument("--keep", type=Path, default=None, help="copy failing inputs into this folder")
    args = p.parse_args()

    import archkit.cli
    import archkit.cli.analyse  # noqa: F401

    rng = random.Random(args.seed)
    corpus = seeds()
    counts: collections.Counter = collections.Counter()
    failures = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="archkit-fuzz-") as tmp:
        work = Path(tmp)
        (work / "weights.bin").write_bytes(conv_weight_bytes())  # for the external-data seed
        path = work / "case.onnx"
        for i in range(args.cases):
            base = rng.choice(corpus)
            data = mutate_fields(base, rng) if rng.random() < 0.4 else mutate_bytes(base, rng)
            path.write_bytes(data)
            outcome, detail = run_case(path, args.timeout)
            counts[outcome] += 1
            if outcome in ("internal", "timeout") or outcome.startswith("signal"):
                failures.append((i, outcome, detail))
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / f"case{i:06d}.onnx").write_bytes(data)
            if (i + 1) % 1000 == 0:
                print(f"{i + 1:,} cases, {time.perf_counter() - start:.0f} s: {dict(counts)}", flush=True)
    seconds = time.perf_counter() - start
    print(f"ran {args.cases:,} cases in {seconds:.0f} s ({args.cases / seconds:.1f}/s), seed {args.seed}")
    for outcome, n in sorted(counts.items()):
        print(f"  {outcome:<14} {n:,}")
    for i, outcome, detail in failures[:20]:
        print(f"  case {i}: {outcome} {detail}")
    clean = not failures
    print("clean: only archkit's own exit codes" if clean else f"NOT clean: {len(failures)} failing cases")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
