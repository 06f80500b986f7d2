"""What the commands print: the --by tables and the summary of `archkit analyse`, sweeps,
parity, export and bench lines. Pure: text (markdown, CSV, JSON) and PNG bytes, no I/O.
Names from a file are escaped for the format they go into (archkit.render.escape)."""

from __future__ import annotations

import io
import json
import numbers

import numpy as np
import pandas as pd

from archkit.analysis import Analysis
from archkit.errors import UsageError
from archkit.io import png_bytes
from archkit.onnx.symbolic import is_expr, pretty
from archkit.render import escape as esc
from archkit.render.escape import NAME_LIMIT, csv_frame, md, md_code
from archkit.render.memory import lines as memory_lines
from archkit.render.memory import peaks_by
from archkit.render.memory import to_json as memory_json
from archkit.runtime.bench import Bench
from archkit.runtime.memory import ARENA_BOUND, REQUESTED_BOUND
from archkit.runtime.parity import TOLERANCES, Verification

__all__ = [
    "VIEWS",
    "bench_lines",
    "branch_lines",
    "branches_json",
    "export_lines",
    "formula_lines",
    "formulas_text",
    "generated_line",
    "render_sweep",
    "render_view",
    "shown_view",
    "summary_lines",
    "sweep_chart",
    "totals_for",
    "verification_lines",
    "view",
]

VIEWS = ("op", "layer", "block", "type")

def shown_view(a: Analysis, by: str) -> str:
    """The view `--by` asks for, or op types where layers and blocks are single ops (no scopes)."""
    if by not in VIEWS:
        raise UsageError(f"--by {by!r}: expected one of {', '.join(VIEWS)}")
    return "type" if by in ("layer", "block") and not a.costs.scoped else by


def view(a: Analysis, by: str) -> pd.DataFrame:
    """The --by table. With free dims, each row's MACs and output bytes as formulas in them
    (`macs_formula`, `output_bytes_formula`); by layer and block, `peak_bytes`: the highest live
    bytes while the row's ops run in onnxruntime's order (empty for a row none of whose ops runs
    as a step of the main graph: Constants, the ops of If branches)."""
    c = a.costs
    shown = shown_view(a, by)
    df = {"op": c.to_frame, "layer": c.by_layer, "block": c.by_block, "type": c.by_type}[shown]()
    key = {"op": "node", "type": "op_type"}.get(shown, shown)
    summed = df["summed"] if "summed" in df.columns else None
    if formulas_text(c):
        per = c.formula_by(key)
        for k, column in ((0, "macs"), (2, "output_bytes")):
            texts: dict = {}
            cells = []
            for i, row_key in enumerate(df[key]):
                f = per.get(row_key) if summed is None or summed.iloc[i] else None
                if f is None:
                    cells.append("")
                    continue
                t = texts.get(f[k])
                if t is None:
                    t = texts[f[k]] = pretty(f[k])
                cells.append(t)
            df.insert(df.columns.get_loc(column) + 1, f"{column}_formula", cells)
    if shown in ("layer", "block") and a.memory is not None:
        peaks = peaks_by(a, key)
        found = [peaks.get(row_key) if summed is None or summed.iloc[i] else None for i, row_key in enumerate(df[key])]
        big = any(v is not None and v >= 2 ** 63 for v in found)  # dims a file declares can pass int64
        df.insert(df.columns.get_loc("weight_bytes") + 1, "peak_bytes",
                  found if big else pd.array(found, dtype="Int64" if None in found else "int64"))
    return df


def totals_for(c) -> str:
    """What the totals are for, to follow "MACs": " per sample", " at batch 4", or ""."""
    if c.per_sample:
        return " per sample"
    return f" at batch {c.batch:,}" if c.batch is not None else ""


def summary_lines(a: Analysis) -> list[str]:
    """What the totals mean, one fact per line (markdown; printed as is by `analyse -o`). Names
    from the file are escaped (archkit.render.escape.md/md_code): no markup, no control character."""
    c = a.costs
    t = c.total()
    per = totals_for(c)
    lines = [
        f"{md(a.name)}: opset {a.info.opset}, {len(c.ops):,} ops, {a.info.size_bytes:,} bytes"
        + (f" ({md(a.info.producer)})" if a.info.producer else ""),
        f"MACs{per}: {t['macs']:,}",
        f"other flops{per}: {t['flops']:,}",
        f"params: {t['params']:,} (kernel weights {t['kernel_weights']:,}"
        + (f"; BatchNormalization statistics {t['stats']:,}, learned {t['params'] - t['stats']:,}" if t["stats"] else "")
        + ")",
    ]
    lines += formula_lines(c)
    if t["generated"]:
        lines.append(generated_line(c))
    if c.batch is not None and c.batch != 1 and not c.per_sample:
        lines.append(f"the totals are for batch {c.batch:,}, not per sample: the inputs' leading dimension, as the "
                     "file or --input-shape fixes it")
    if c.per_sample:
        dims = "; ".join(f"{md_code(i, table=False)} axis {ax} ({md(n) if n else 'unnamed'})"
                         for i, axes in c.fixed_dims.items() for ax, n in axes.items())
        lines.append(f"per sample: symbolic dimensions set to 1: {dims} (fix them with --input-shape)")
    if not c.complete:
        parts = []
        if c.unsupported:
            parts.append(f"no cost rule for {', '.join(map(md, c.unsupported))}")
        if c.unknown:
            parts.append(f"cost unknown for {len(c.unknown)} ops (shape not inferred or data-dependent), "
                         f"e.g. {', '.join(map(md, c.unknown[:3]))}")
        lines.append("totals are lower bounds: " + "; ".join(parts))
    if c.per_iteration:
        lines.append(f"loop bodies costed once, per iteration: {', '.join(map(md, c.per_iteration))}")
    lines += branch_lines(c)
    lines += memory_lines(a)
    return lines


def formulas_text(c, name=str) -> dict[str, str] | None:
    """The totals that depend on free dims, as formulas in them: {"macs": "17,563,828,224·N", ...}.
    `name` renders a dim's name (archkit.render.escape.md for markdown)."""
    f = c.formulas
    if not f:
        return None
    return {k: pretty(v, name) for k, v in f.items() if is_expr(v)} or None


def formula_lines(c) -> list[str]:
    """`MACs = 4,089,184,256·N`: the totals in the free dims (markdown), or why there is none."""
    shown = formulas_text(c, md)
    if shown:
        return [f"{label} = {shown[k]}" for k, label in (("macs", "MACs"), ("flops", "other flops")) if k in shown]
    if c.per_sample and c.no_formulas:
        return [f"no formula in the free dims: {md(c.no_formulas)}"]
    return []


MAX_BRANCH_LINES = 10  # Ifs described one by one; the rest are counted


def branch_lines(c) -> list[str]:
    """Which branch of each If the totals count and why, and what they leave out (markdown)."""
    lines = []
    # Ifs whose branches cost the same (often: both unknown) change no total: one line for them all
    hidden = {o.node for o in c.not_summed}  # an If inside a branch not counted: its choice changes nothing
    same = [nid for nid, b in c.branches.items() if b.same_cost and nid not in hidden]
    told = [(nid, b) for nid, b in c.branches.items() if not b.same_cost and nid not in hidden]
    for nid, b in told[:MAX_BRANCH_LINES]:
        if b.condition is None:
            why = (f"condition unknown, {b.why.removeprefix('counted: ')}: {b.macs[b.counted]:,} vs "
                   f"{b.macs[b.other]:,} MACs")
        else:
            why = f"condition {'true' if b.condition else 'false'}: {md(b.how)}"
        lines.append(f"If {md_code(nid, table=False)}: {b.counted} counted ({why}); {b.other} shown, not summed")
    if len(told) > MAX_BRANCH_LINES:
        lines.append(f"... and {len(told) - MAX_BRANCH_LINES:,} more Ifs (their rows' context says which "
                     "branch counts)")
    if same:
        lines.append(f"{len(same):,} If{'s' if len(same) != 1 else ''} whose branches cost the same (e.g. "
                     f"{md_code(same[0], table=False)}): then_branch counted, else_branch shown, not summed")
    rest = c.not_summed
    if rest:
        hint = ("; where a condition follows from a graph input, --input-value NAME=V counts the branch taken"
                if any(b.condition is None for b in c.branches.values()) else "")
        lines.append(f"not summed: {len(rest):,} op{'s' if len(rest) != 1 else ''} of If branches not counted "
                     f"({sum(o.macs for o in rest):,} MACs, {sum(o.params for o in rest):,} params), shown with "
                     f"summed = no{hint}")
    return lines


def branches_json(c) -> dict:
    """If node → the branch counted, why, the condition (null: unknown) and each branch's MACs."""
    return {nid: {"counted": b.counted, "not_summed": b.other, "condition": b.condition, "how": b.how or None,
                  "why": b.why, "macs": dict(b.macs)} for nid, b in c.branches.items()}


def generated_line(c) -> str:
    """Where parameters that the file does not store come from (archkit.costs: ConstantOfShape)."""
    return (f"generated, not stored: {c.total()['generated']:,} of the params are {c.generated_tensors:,} weights that "
            "ConstantOfShape ops fill with one value at load time (the file holds only their shapes); counted "
            "from those shapes")


def render_view(a: Analysis, by: str, fmt: str) -> str:
    """The --by table for the terminal: markdown (with the summary), CSV, or JSON (with the summary).
    Names from the file are escaped for the format (archkit.render.escape; JSON escapes them itself)."""
    df = view(a, by)
    if fmt == "csv":
        buf = io.StringIO()
        csv_frame(df).to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue()
    if fmt == "json":
        c = a.costs
        doc = {"name": a.name, "by": shown_view(a, by), "total": c.total(), "per_sample": c.per_sample,
               "batch": c.batch, "scoped": c.scoped,
               "fixed_dims": {k: {str(ax): n for ax, n in v.items()} for k, v in c.fixed_dims.items()},
               "complete": c.complete, "unsupported_ops": list(c.unsupported), "unknown_cost_ops": list(c.unknown),
               "formulas": formulas_text(c), "no_formulas": c.no_formulas,
               "per_iteration": list(c.per_iteration), "branches": branches_json(c), "warnings": list(a.warnings),
               "memory": memory_json(a), "rows": json.loads(df.to_json(orient="records"))}
        return json.dumps(doc, indent=1) + "\n"
    if fmt != "md":
        raise UsageError(f"--format {fmt!r}: printing takes one of md, csv, json (write several with -o DIR)")
    lines = [f"- {line}" for line in summary_lines(a)] + [""]
    header = list(df.columns)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[h]) and not pd.api.types.is_bool_dtype(df[h])
                                else "---" for h in header) + "|")
    # archkit's text, dim names escaped in it
    whole = {k for k, h in enumerate(header) if h in ("macs_formula", "output_bytes_formula")}
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join("" if v is None or v is pd.NA else ("yes" if v else "no")
                                       if isinstance(v, (bool, np.bool_)) else f"{v:,}"
                                       if isinstance(v, numbers.Integral) else md(str(v), None if k in whole else
                                                                                   NAME_LIMIT)
                                       for k, v in enumerate(row)) + " |")
    return "\n".join(lines) + "\n"


# --- sweeps: the costs at several values of free dims ---------------------------------------



def sweep_chart(df: pd.DataFrame, dims: tuple[str, ...], name: str) -> bytes:
    """PNG: MACs (and other flops) against the first swept dim, one line per value of the others;
    beside them, the peak live bytes (onnxruntime's order) against the same dim."""
    import matplotlib  # heavy: only a sweep written to a folder draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: as matplotlib

    x, rest = dims[0], list(dims[1:])
    fig, (ax, mem) = plt.subplots(1, 2, figsize=(11, 4.5))
    groups = df.groupby(rest, sort=False) if rest else [((), df)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{esc.plot(d)}={v}" for d, v in zip(rest, key))
        ax.plot(part[x], part["macs"], marker="o", label=("MACs " + label).strip())
        ax.plot(part[x], part["flops"], marker=".", linestyle="--", label=("other flops " + label).strip())
        mem.plot(part[x], part["peak_bytes"] / 2**20, marker="o", label=("peak live memory " + label).strip())
    if df[x].max() / df[x].min() >= 8:
        for a in (ax, mem):
            a.set_xscale("log", base=2)
        ax.set_yscale("log")
        if (df["peak_bytes"] > 0).all():
            mem.set_yscale("log")
    ax.set_ylabel("per run of the model")
    ax.set_title(f"{esc.plot(name)}: cost against {esc.plot(x)}", fontsize=10)
    mem.set_ylabel("MiB live at the peak (onnxruntime's order)")
    mem.set_title(f"{esc.plot(name)}: peak live memory against {esc.plot(x)}", fontsize=10)
    for a in (ax, mem):
        a.set_xlabel(esc.plot(x))
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig, dpi=100)


def render_sweep(df: pd.DataFrame, fmt: str) -> str:
    """The sweep table for the terminal or a file: markdown, CSV or JSON."""
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        return df.to_json(orient="records", indent=1) + "\n"
    header = list(df.columns)
    lines = ["| " + " | ".join(md(h) for h in header) + " |",
             "|" + "|".join("---" if h == "complete" else "---:" for h in header) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(("yes" if v else "**no**") if isinstance(v, (bool, np.bool_)) else f"{int(v):,}"
                                       for v in row) + " |")
    return "\n".join(lines) + "\n"


def verification_lines(v: Verification, label: str, *, arrays: str | None = None) -> list[str]:
    """What `verify` prints; `arrays`: the inputs came from that file (no seeds)."""
    t = TOLERANCES[v.precision]
    seeds = sorted({o.seed for o in v.outputs})
    batches = sorted({o.batch for o in v.outputs})
    fed = f"inputs from {arrays}" if arrays else f"seeds {', '.join(map(str, seeds))}"
    lines = [(f"{label}: onnxruntime vs {v.reference}; {fed}; "
              f"batch size{'s' if len(batches) > 1 or not arrays else ''} {', '.join(map(str, batches))}"),
             f"thresholds ({v.precision}): max abs error <= {t.atol:g} + {t.rtol:g} x max |reference| per batch and seed; "
             f"top-1 agreement >= {t.top1:.0%}, top-5 >= {t.top5:.0%} over "
             + ("all samples" if not t.margin else
                f"the samples whose reference top-1 leads the runner-up by >= {t.margin:g} sd of their scores "
                f"(judged from {t.min_decided})")]
    agreement = v.agreement()
    for out in dict.fromkeys(o.output for o in v.outputs):
        rows = [o for o in v.outputs if o.output == out]
        top1, top5, d, n = agreement[out]
        worst = max(rows, key=lambda o: o.max_abs / o.allowed if o.allowed else float("inf"))
        judged = v.judged(out)
        ok = v.output_ok(out)
        over = f"{n} samples" if d == n and judged else f"{d} of {n} samples decided"
        lines.append(f"output {out!r}: max abs {max(o.max_abs for o in rows):.2g} (allowed {worst.allowed:.2g} at batch "
                     f"{worst.batch}), max rel {max(o.max_rel for o in rows):.2g}, "
                     + (f"top-1 {top1:.1%}, top-5 {top5:.1%} ({over})" if judged else
                        f"agreement not judged ({over}, needs {t.min_decided}: more --seeds or --batch-sizes)")
                     + f"  {'ok' if ok else 'FAIL'}")
        for batch in batches:
            b = [o for o in rows if o.batch == batch]
            lines.append(f"  batch {batch}: max abs {max(o.max_abs for o in b):.2g}, max rel {max(o.max_rel for o in b):.2g}, "
                         f"top-1 {sum(o.argmax_agreement for o in b) / len(b):.0%}, "
                         f"top-5 {sum(o.top5_agreement for o in b) / len(b):.0%}")
    return lines


def export_lines(analysis: Analysis, deploy, output, command_seconds: float) -> list[str]:
    d = analysis.deployment or {}
    lines = [(f"wrote {output} (opset {analysis.info.opset}, {deploy.describe()}, "
              f"{analysis.info.size_bytes:,} bytes, {analysis.costs.total()['ops']:,} ops)")]
    inputs = ", ".join(f"{n} {s}" for n, s in analysis.info.inputs)
    lines.append(f"inputs: {inputs}; Transpose ops left: {d.get('transposes', '?')}")
    deltas = d.get("deltas")
    if deltas:
        lines.append(f"size: {deltas['size_bytes']:,} bytes vs {deltas['fp32_size_bytes']:,} in fp32: "
                     f"{deltas['size_ratio']:.2f}x smaller ({deltas['size_bytes'] - deltas['fp32_size_bytes']:+,} bytes)")
        for out, o in deltas["outputs"].items():
            lines.append(f"accuracy vs fp32 on {deltas['samples']} seeded inputs, output {out!r}: top-1 agreement "
                         f"{o['top1_agreement']:.1%}, top-5 {o['top5_agreement']:.1%}, max abs error "
                         f"{o['max_abs_error']:.2g}, max rel {o['max_rel_error']:.2g}")
    # export_seconds: Keras -> ONNX alone (trace, tf2onnx, checker); the command also starts
    # TensorFlow, builds the model and runs the file in onnxruntime.
    took = (f"Keras -> ONNX conversion (trace, tf2onnx, ONNX checker) {d.get('export_seconds', 0):.1f} s"
            + (f", {deploy.precision} conversion {d['convert_seconds']:.1f} s" if deploy.precision != "fp32" else ""))
    whole = f"whole command {command_seconds:.1f} s"
    if d.get("cached"):
        lines.append(f"export: taken from the cache (unchanged; when made: {took}); {whole}")
    else:
        lines.append(f"export: {took}; {whole} (TensorFlow start-up, build, checks in onnxruntime included)")
    return lines


def bench_lines(b: Bench) -> list[str]:
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


def memory_check_lines(check) -> list[str]:
    """archkit.runtime.memory.MemoryCheck as lines: the measured figures (machine-dependent: printed,
    never in a committed report) and the verdicts."""
    shapes = ", ".join(f"{md_code(k, table=False)} {'x'.join(map(str, v))}" for k, v in check.input_shapes.items())
    compared = check.nodes - len(check.unmatched)
    lines = [f"memory in {check.runtime} (optimisations off, one run at {shapes}):"]
    if check.bytes_equal:
        lines.append(f"- output bytes: equal to archkit's for all {check.nodes:,} ops onnxruntime ran")
    else:
        lines.append(f"- output bytes: {len(check.mismatches):,} of {compared:,} ops differ from archkit's"
                     + (f"; {len(check.unmatched):,} ops it ran are no op of the file (e.g. "
                        f"{md(check.unmatched[0])})" if check.unmatched else ""))
        for nid, op, mine, theirs in check.mismatches[:5]:
            lines.append(f"  - {md(nid)} ({md(op)}): archkit {mine:,}, onnxruntime {theirs:,}")
    lines.append("- execution order: the one archkit reproduces" if check.order_same else
                 f"- execution order: differs from archkit's reproduction from step {check.first_difference:,}")
    spread, largest = REQUESTED_BOUND
    lo, hi, arena_extra = ARENA_BOUND
    off_lo, off_hi = check.offset
    offset = f"{off_lo:+,} bytes" if off_lo == off_hi else f"{off_lo:+,} to {off_hi:+,} bytes"
    lines.append(f"- plan: after every op, onnxruntime's requested bytes are archkit's predicted plan {offset} "
                 f"(allowed: one constant within {spread // 1024} KiB, at most {largest // 1024} KiB: "
                 f"{'within' if check.requested_ok else 'outside'})")
    lines.append(f"- peak: archkit predicts the plan holds {check.planned_peak:,} bytes at its peak (live tensors "
                 f"{check.live_peak:,}); onnxruntime requested {check.requested_peak:,} ({check.requested_ratio:.4f}×)")
    lines.append(f"- arena: its peak was {check.arena_peak:,} bytes ({check.ratio:.2f}× the prediction; allowed "
                 f"{lo:g}× the prediction to {hi:g}× (prediction + the largest workspace, {check.workspace:,}) + "
                 f"{arena_extra // 2 ** 20} MiB: {'within' if check.arena_ok else 'outside'}): the arena hands out "
                 "whole chunks (up to twice a request) and kernels take workspaces while they run")
    lines.append("memory check: " + ("pass" if check.ok else "FAIL: archkit's figures disagree with onnxruntime's"))
    return lines


def layerwise_lines(lw) -> list[str]:
    """archkit.runtime.layerwise.Layerwise as lines: per layer its errors (machine-dependent: printed,
    never in a committed report), bound and verdict, then where the export drifts."""
    t = TOLERANCES[lw.precision]
    lines = [(f"layer by layer ({lw.precision}, {lw.runtime}): max abs error <= {t.atol:g} + {t.rtol:g} x max |Keras| "
              "per layer, over every seeded input")]
    width = max((len(e.layer) for e in lw.layers), default=5)
    for e in lw.layers:
        folded = f" (also {', '.join(e.folded)}: folded into it by the export)" if e.folded else ""
        lines.append(f"  {e.depth:>4} {e.layer:<{width}}  max abs {e.max_abs:.2g} (allowed {e.bound:.2g}), "
                     f"max rel {e.max_rel:.2g}, cosine {e.cosine:.6f}  {'ok' if e.ok else 'OVER'}{folded}")
    for layer, why in lw.skipped:
        lines.append(f"  not compared: {layer}: {why}")
    lines.append("marked copy: its final outputs equal a plain run's" if lw.same_outputs else
                 f"marked copy: its final outputs differ from a plain run's by up to {lw.output_diff:.2g} (onnxruntime "
                 "fuses fewer ops when their tensors are outputs): the layer errors are the marked copy's")
    lines.append(lw.where())
    return lines
