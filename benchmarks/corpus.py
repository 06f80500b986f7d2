"""archkit analyse on files no one here wrote: the ONNX files the onnx package ships.

The light Caffe2-zoo models (`onnx/backend/test/data/light/`) and the PyTorch-converted module
and operator tests (`pytorch-converted/`, `pytorch-operator/`). Per file: whether archkit costs
it completely (no op of unknown cost or without a rule), its MACs, its time, and for the light
models whether the MACs equal the independent recount in shared/REFERENCES.md, and, for a file
with free dims, its MACs as a formula in them (or why there is none); then the counts, with how
many files have every tensor's size known (complete memory figures) and a peak formula.
An internal error (exit 1) is a bug and is listed as one.

    python benchmarks/corpus.py [--only light|pytorch-converted|pytorch-operator] [--verbose] [--free-batch]

--free-batch declares the leading dim of every graph input and output of rank 2 or more free
(`N`), as an exporter with a dynamic batch would: each file is then costed as formulas in N, and the formula
at N = 3 is compared with the analysis of the file with N fixed to 3 ("= fixed N=3").
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import onnx

from archkit.analysis import analyse_file
from archkit.errors import ArchkitError
from archkit.onnx.symbolic import pretty

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
# shared/REFERENCES.md, "Beyond CNNs": Conv+Gemm MACs by an independent recount.
LIGHT_MACS = {"bvlc_alexnet": 654_560_384, "densenet121": 2_834_161_664, "inception_v1": 1_431_556_352,
              "inception_v2": 2_018_851_840, "resnet50": 4_089_184_256, "shufflenet": 124_664_528,
              "squeezenet": 349_151_936, "vgg19": 19_632_062_464, "zfnet512": 1_481_727_008}


def files(only: str | None):
    for kind in ("light", "pytorch-converted", "pytorch-operator"):
        if only and kind != only:
            continue
        folder = DATA / kind
        found = sorted(folder.glob("*.onnx")) if kind == "light" else sorted(folder.glob("*/model.onnx"))
        for f in found:
            yield kind, f


def _free_batch(path: Path):
    """The file with its inputs' leading dim free, analysed; and how its formula at N = 3 compares
    with the analysis at N = 3."""
    import tempfile

    from archkit.onnx.symbolic import value

    m = onnx.load(str(path), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    freed = 0
    for i in (*m.graph.input, *m.graph.output):  # as a dynamic-batch export declares them
        dims = i.type.tensor_type.shape.dim if i.type.HasField("tensor_type") else []
        if i.name not in inits and len(dims) >= 2:
            dims[0].Clear()
            dims[0].dim_param = "N"
            freed += 1
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "model.onnx"
        onnx.save(m, str(f))
        a = analyse_file(f)
        if not freed or a.costs.formulas is None:
            return a, ""
        fixed = analyse_file(f, input_shapes={"N": 3}).costs.total()
    got = {k: value(a.costs.formulas[k], {"N": 3}) for k in ("macs", "flops")}
    same = got == {k: fixed[k] for k in got}
    if same:
        return a, "= fixed N=3"
    why = " (dims taken as equal, warned: the file runs only where they are)" if a.costs.formula_warnings else ""
    return a, f"differs from fixed N=3{why}: {got['macs']:,} vs {fixed['macs']:,} MACs"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=("light", "pytorch-converted", "pytorch-operator"))
    p.add_argument("--verbose", action="store_true", help="name the ops left without a cost")
    p.add_argument("--free-batch", action="store_true", help="declare the inputs' leading dim free (N)")
    args = p.parse_args(argv)
    counts: dict[str, list[int]] = {}
    bugs = []
    print(f"{'file':<58} {'complete':>8} {'MACs':>16} {'ms':>8}  note")
    for kind, path in files(args.only):
        label = path.stem.removeprefix("light_") if kind == "light" else path.parent.name
        c = counts.setdefault(kind, [0, 0, 0, 0, 0, 0])  # complete, files, free dims, formulas, memory, peak formula
        c[1] += 1
        start = time.perf_counter()
        try:
            if args.free_batch:
                a, note0 = _free_batch(path)
            else:
                a, note0 = analyse_file(path), ""
        except ArchkitError as e:
            print(f"{kind + '/' + label:<58} {'error':>8} {'':>16} {(time.perf_counter() - start) * 1e3:>8.0f}  "
                  f"exit {e.exit_code}: {str(e)[:60]}")
            continue
        except Exception as e:  # noqa: BLE001 - anything else is a bug in archkit: listed, the run goes on
            bugs.append(f"{kind}/{label}: {type(e).__name__}: {e}")
            print(f"{kind + '/' + label:<58} {'BUG':>8} {'':>16} {(time.perf_counter() - start) * 1e3:>8.0f}  "
                  f"{type(e).__name__}: {str(e)[:60]}")
            continue
        ms = (time.perf_counter() - start) * 1e3
        complete = a.costs.complete
        c[0] += complete
        m = a.memory
        c[4] += m is not None and m.complete  # every tensor of known size
        peak_formula = m is not None and m.runtime is not None and m.runtime.peak.formula is not None
        macs = a.costs.total()["macs"]
        note = note0
        if kind == "light" and not args.free_batch:
            want = LIGHT_MACS.get(label)
            note = "= recount" if macs == want else f"recount {want:,}"
        free = a.costs.fixed_dims
        if free:
            f = a.costs.formulas
            c[2] += 1
            c[3] += f is not None
            c[5] += peak_formula
            note += f" MACs = {pretty(f['macs'])}" if f is not None else f" no formula: {a.costs.no_formulas}"
        if not complete:
            left = [o for o in a.costs.ops if o.status in ("unknown", "unsupported")]
            note += f" {len(left)} ops not costed" + (f": {sorted({o.op_type for o in left})}" if args.verbose else "")
        if m is not None and not m.complete:
            note += f" {len(m.unknown)} tensors of unknown size"
        print(f"{kind + '/' + label:<58} {'yes' if complete else 'no':>8} {macs:>16,} {ms:>8.0f}  {note.strip()}")
    print()
    for kind, (done, total, free, formulas, memory, peaks) in counts.items():
        print(f"{kind}: {done} of {total} complete; {free} with free dims, {formulas} of them costed as formulas; "
              f"memory complete (every tensor's size known) {memory} of {total}, a peak formula for {peaks} of {free}")
    print(f"internal errors: {len(bugs)}")
    for b in bugs:
        print(f"  {b}")
    return 1 if bugs else 0


if __name__ == "__main__":
    os.environ.setdefault("ARCHKIT_CACHE_DIR", "off")
    sys.exit(main())
