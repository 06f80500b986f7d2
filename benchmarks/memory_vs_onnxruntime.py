"""archkit's memory figures against onnxruntime's own allocator, model by model.

Each model runs once in onnxruntime (optimisations and the memory pattern off, profiling on,
weights outside the arena: archkit.runtime.memory) and archkit analyses it at the same shapes.
Per model: whether every node's output bytes equal archkit's, whether the execution order is
the one archkit reproduces, archkit's predicted plan peak against the bytes onnxruntime requested
at their peak and against its arena's peak (the ratio the bound in archkit.runtime.memory
allows: chunks of up to twice a request, and the kernels' workspaces), the verdict, and how long
archkit's analysis took beside onnxruntime's run.

    python benchmarks/memory_vs_onnxruntime.py [--only light|pytorch|zoo] [--batches 1,8] [--zoo NAME,...]

Models: the onnx package's light Caffe2-zoo models, its PyTorch-converted module and operator
tests (the ones onnxruntime can load), and archkit's exports of resnet50, inception_v1 and
densenet121 (`--zoo all`: every registered architecture; exports come from archkit's cache, or
are made, which takes minutes the first time), each at every batch of --batches.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnx

from archkit.errors import ArchkitError
from archkit.onnx.graph import free_dims
from archkit.runtime.memory import checked, feed, measure_memory

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
ZOO = ("resnet50", "inception_v1", "densenet121")


def models(only: str | None, zoo: list[str]):
    if only in (None, "light"):
        for p in sorted((DATA / "light").glob("*.onnx")):
            yield "light", p.stem.removeprefix("light_"), p
    if only in (None, "pytorch"):
        for kind in ("pytorch-converted", "pytorch-operator"):
            for p in sorted((DATA / kind).glob("*/model.onnx")):
                yield kind, p.parent.name, p
    if only in (None, "zoo"):
        from archkit.keras.pipeline import run_architecture  # TensorFlow: only for the zoo

        for name in zoo:
            _, proto = run_architecture(name, verify=False)
            yield "zoo", name, proto


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("light", "pytorch", "zoo"))
    p.add_argument("--batches", default="1,8", help="batches for the models with a free batch (default 1,8)")
    p.add_argument("--zoo", default=",".join(ZOO), help="registered architectures, comma-separated, or all")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.zoo == "all":
        import architectures

        zoo = architectures.names()
    else:
        zoo = [z for z in args.zoo.split(",") if z]
    print(f"{'model':<44} {'b':>2} {'ops':>5} {'bytes':>5} {'order':>5} {'plan peak':>13} {'requested':>8} "
          f"{'arena':>6} {'bound':>6} {'ok':>4} {'archkit s':>9} {'ort s':>6}")
    totals: dict[str, list[int]] = {}
    for kind, label, model in models(args.only, zoo):
        proto = model if isinstance(model, onnx.ModelProto) else onnx.load(model)
        free = free_dims(proto)
        for batch in batches if free else batches[:1]:
            t = totals.setdefault(kind, [0, 0, 0, 0, 0, 0])  # runs, refused, bytes equal, order, plan, ok
            inputs = feed(proto, dict.fromkeys(free, batch))
            start = time.perf_counter()
            try:
                runtime, events = measure_memory(model if isinstance(model, Path) else proto, inputs, what=label)
            except ArchkitError as e:
                t[1] += 1
                print(f"{kind + '/' + label:<44} {batch:>2}  onnxruntime refuses it: {str(e)[:70]}")
                break
            ort_s = time.perf_counter() - start
            start = time.perf_counter()
            c = checked(proto, inputs, runtime, events)
            archkit_s = time.perf_counter() - start
            t[0] += 1
            t[2] += c.bytes_equal
            t[3] += c.order_same
            t[4] += c.requested_ok
            t[5] += c.ok
            bound = 2 * (c.planned_peak + c.workspace) / c.planned_peak if c.planned_peak else float("nan")
            print(f"{kind + '/' + label:<44} {batch:>2} {c.nodes:>5} {'=' if c.bytes_equal else 'DIFF':>5} "
                  f"{'=' if c.order_same else 'DIFF':>5} {c.planned_peak:>13,} {c.requested_ratio:>8.4f} "
                  f"{c.ratio:>6.2f} {bound:>6.2f} {'ok' if c.ok else 'FAIL':>4} {archkit_s:>9.3f} {ort_s:>6.2f}")
    print()
    print("runs where onnxruntime loaded the model: output bytes equal / order reproduced / plan step by step / "
          "all checks")
    for kind, (runs, refused, equal, order, plan, ok) in totals.items():
        print(f"  {kind:<20} {runs:>3} runs ({refused} files onnxruntime refuses): {equal}/{runs} / {order}/{runs} "
              f"/ {plan}/{runs} / {ok}/{runs}")
    return 0 if all(t[5] == t[0] for t in totals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
