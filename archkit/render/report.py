"""Pure renderers: an Analysis in, text out (markdown, CSV, JSON). No files are written here.

Everything rendered is deterministic: no timestamps, no absolute paths, stable ordering,
floats with a fixed number of significant digits.

Names read from the model are untrusted (archkit.render.escape): table cells that are plain str are
escaped with escape.md; text archkit composes (markdown it writes around escaped names, or its
own wording) is passed as escape.Markdown and placed as it is.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import metadata
from typing import Any
from urllib.parse import quote

import pandas as pd

from archkit.analysis import Analysis
from archkit.io import png_bytes
from archkit.onnx.symbolic import is_expr, pretty
from archkit.render import escape as esc
from archkit.render import memory as mem
from archkit.render.drawing import files as connectivity_files
from archkit.render.drawing import markdown as connectivity_markdown
from archkit.render.escape import Markdown, md, md_code
from archkit.render.formats import FORMATS, INDEX_MARKER
from archkit.render.text import branch_lines, branches_json, formulas_text, generated_line, totals_for
from archkit.runtime.layerwise import LAYER_BATCH
from archkit.runtime.memory import ARENA_BOUND, REQUESTED_BOUND
from archkit.runtime.parity import TOLERANCES

__all__ = ["FORMATS", "block_chart", "index", "layer_table", "layerwise_chart", "layerwise_section", "layerwise_summary", "memory_section", "reference_rows", "render", "summary",
           "versions"]

_VERSIONED = ("archkit", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")


def versions() -> dict[str, str]:
    """Versions of what produced the figures (read from package metadata: no imports)."""
    out = {}
    for pkg in _VERSIONED:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _n(x: Any) -> str:
    if x is None or (isinstance(x, float) and pd.isna(x)):
        return ""
    if isinstance(x, (int,)) or (isinstance(x, float) and float(x).is_integer()):
        return f"{int(x):,}"
    return f"{x:,.4g}"


def _e(x: float) -> str:
    return f"{x:.2g}"


def _keras_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")" if shape is not None else ""


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(sep) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def _cell(c: Any) -> str:
    if isinstance(c, Markdown):
        return c
    return md(c) if isinstance(c, str) else _n(c)


def _own(text: str) -> Markdown:
    """Text archkit writes itself (architecture definitions, its own wording), markdown allowed."""
    return Markdown(text.replace("|", "\\|").replace("\n", " "))


# --- tables (data) --------------------------------------------------------------------

def layer_table(a: Analysis) -> pd.DataFrame:
    """One row per Keras layer (as model.summary() lists them) with its ONNX costs beside it;
    ONNX ops that belong to no Keras layer follow under their own names."""
    costs = a.costs.by_layer()
    not_summed = costs[~costs.summed] if "summed" in costs else costs.iloc[:0]
    costs = (costs[costs.summed] if "summed" in costs else costs).set_index("layer")
    rows = []
    for layer in a.keras_layers:
        c = costs.loc[layer["name"]] if layer["name"] in costs.index else None
        rows.append({
            "layer": layer["name"], "type": layer["class"], "output_shape": _keras_shape(layer["output_shape"]),
            "block": layer["block"],
            "keras_params": layer["trainable"] + layer["non_trainable"],
            "trainable": layer["trainable"], "non_trainable": layer["non_trainable"],
            "onnx_params": int(c["params"]) if c is not None else 0,
            "macs": int(c["macs"]) if c is not None else 0,
            "flops": int(c["flops"]) if c is not None else 0,
            "onnx_ops": int(c["ops"]) if c is not None else 0,
        })
    known = {l["name"] for l in a.keras_layers}
    for name, c in costs.iterrows():
        if name not in known:
            rows.append({"layer": name, "type": "(ONNX only)", "output_shape": "", "block": "",
                         "keras_params": 0, "trainable": 0, "non_trainable": 0, "onnx_params": int(c["params"]),
                         "macs": int(c["macs"]), "flops": int(c["flops"]), "onnx_ops": int(c["ops"])})
    for c in not_summed.itertuples():  # an If's branch that is not counted: shown, in no total
        rows.append({"layer": c.layer, "type": "(ONNX only, not summed)", "output_shape": "", "block": "",
                     "keras_params": 0, "trainable": 0, "non_trainable": 0, "onnx_params": int(c.params),
                     "macs": int(c.macs), "flops": int(c.flops), "onnx_ops": int(c.ops)})
    return pd.DataFrame(rows)


_PAPER_HIDDEN = ("block", "note", "params_value", "ops_value")


def paper_table(a: Analysis, rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The paper's per-block table, row by row, with archkit's counts for the same block beside it:
    output size (the block's last Keras layer), kernel weights (conv/dense kernels, no biases), MACs, and
    their differences from the paper's params/ops where the paper gives a number."""
    blocks = _summed(a.costs.by_block()).set_index("block")
    last_shape: dict[str, str] = {}
    for layer in a.keras_layers:
        if layer["output_shape"]:
            last_shape[layer["block"]] = "x".join(str(d) for d in layer["output_shape"][1:])
    columns = list(dict.fromkeys(k for r in rows for k in r if k not in _PAPER_HIDDEN))
    out = []
    for r in rows:
        b = r["block"]
        weights = int(blocks.loc[b, "kernel_weights"]) if b in blocks.index else 0
        macs = int(blocks.loc[b, "macs"]) if b in blocks.index else 0
        row = {"block": b, **{c: r.get(c) for c in columns},
               "counted output": last_shape.get(b, ""), "counted kernel weights": weights, "counted MACs": macs}
        if r.get("params_value") is not None:
            row["kernel weights - paper"] = weights - r["params_value"]
        if r.get("ops_value") is not None:
            row["MACs - paper"] = macs - r["ops_value"]
        row["note"] = r.get("note", "")
        out.append(row)
    return pd.DataFrame(out)


def _counted(a: Analysis, metric: str) -> int | None:
    total = a.costs.total()
    kp = a.keras_params or {}
    return {
        "params": kp.get("total"), "trainable": kp.get("trainable"), "non_trainable": kp.get("non_trainable"),
        "onnx_params": total["params"], "kernel_weights": total["kernel_weights"], "macs": total["macs"],
    }.get(metric)


_METRIC_NAMES = {
    "params": "parameters (Keras total)", "trainable": "trainable parameters",
    "non_trainable": "non-trainable parameters", "onnx_params": "ONNX params",
    "kernel_weights": "kernel weights (conv/dense, no biases)", "macs": "MACs",
}


def reference_rows(a: Analysis, references) -> list[dict[str, Any]]:
    rows = []
    for ref in references:
        counted = _counted(a, ref.metric)
        diff = None if counted is None else counted - ref.value
        if diff is None:
            verdict = "not counted"
        elif diff == 0:
            verdict = "exact"
        elif ref.rounding and abs(diff) <= ref.rounding / 2:
            verdict = "matches to the published rounding"
        else:
            verdict = "differs (see note)" if ref.note else "differs"
        rows.append({"figure": _METRIC_NAMES.get(ref.metric, ref.metric), "counted": counted,
                     "published": ref.value, "difference": diff, "verdict": verdict,
                     "source": ref.source, "note": ref.note})
    return rows


def summary(a: Analysis, references=()) -> dict[str, Any]:
    total = a.costs.total()
    v = a.verification
    return {
        "name": a.name,
        "config": a.config,
        "keras_params": a.keras_params,
        "onnx": {"opset": a.info.opset, "ir_version": a.info.ir_version, "producer": a.info.producer,
                 "size_bytes": a.info.size_bytes, "ops": len(a.costs.ops),
                 "inputs": dict(a.info.inputs), "outputs": dict(a.info.outputs)},
        "costs": {"macs": total["macs"], "flops": total["flops"], "params": total["params"],
                  "kernel_weights": total["kernel_weights"], "generated_params": total["generated"],
                  "per_sample": a.costs.per_sample, "batch": a.costs.batch, "complete": a.costs.complete,
                  "formulas": formulas_text(a.costs),
                  "unsupported_ops": list(a.costs.unsupported), "unknown_cost_ops": list(a.costs.unknown),
                  **({"branches": branches_json(a.costs)} if a.costs.branches else {})},
        "references": reference_rows(a, references),
        "parity": None if v is None else _parity_summary(v, measured=getattr(a, "bench", None) is not None),
        "layerwise": layerwise_summary(a.layerwise) if a.layerwise else None,
        "equivalence": None if a.equivalence is None else {
            "reference": a.equivalence.reference, "ok": a.equivalence.ok, "statement": a.equivalence.statement(),
            "tensors_copied": a.equivalence.copied, "paired_by": a.equivalence.matched_by,
            "failed_layer": a.equivalence.layer},
        "connectivity": a.connectivity.summary() if a.connectivity is not None else None,
        "memory": {**mem.to_json(a), **({"onnxruntime_check": {
            "runtime": a.memory_check.runtime, "ops": a.memory_check.nodes, "bytes_equal": a.memory_check.bytes_equal,
            "order_same": a.memory_check.order_same, "plan_matches": a.memory_check.requested_ok,
            "arena_within_bound": a.memory_check.arena_ok, "ok": a.memory_check.ok}} if a.memory_check else {})},
        "versions": versions(),
        **({"deployment": a.bench.to_dict()} if getattr(a, "bench", None) is not None else {}),
    }


# --- markdown -------------------------------------------------------------------------

def _summed(df: pd.DataFrame) -> pd.DataFrame:
    """A roll-up's rows that are summed (without those of If branches not counted)."""
    return df[df.summed].drop(columns="summed").reset_index(drop=True) if "summed" in df else df


def _label(row, key: str):
    """A roll-up row's name, marked when its ops are of an If branch not counted."""
    name = getattr(row, key)
    return name if getattr(row, "summed", True) else Markdown(f"{md(name)} (not summed)")


def _published_apply(a: Analysis, arch) -> bool:
    """Whether the architecture's published figures are for this report's settings: they are
    for its defaults, and an export records its settings (JSON: tuples read back as lists)."""
    if a.config is None:
        return True
    defaults = json.loads(json.dumps(dict(arch.defaults), sort_keys=True, default=list))
    return dict(a.config) == defaults


def _compared(a: Analysis, arch):
    """The architecture with only the published figures that apply to this report."""
    if arch is None or _published_apply(a, arch):
        return arch
    return replace(arch, references=(), paper_table=())


def _markdown(a: Analysis, arch=None, *, chart: bool = False) -> str:
    total = a.costs.total()
    kp = a.keras_params
    out = [f"# {md(a.name)}", ""]
    if arch is not None:
        out += [arch.description, "", f"Source: {arch.paper}. Family: {arch.family}.", ""]
    if a.config:
        out += ["Configuration: " + ", ".join(md_code(f"{k}={v}", table=False) for k, v in sorted(a.config.items())), ""]
    per = totals_for(a.costs)

    out += ["## Summary", ""]
    rows = []
    if kp:
        rows.append(("Keras parameters", f"{kp['total']:,} (trainable {kp['trainable']:,}, non-trainable {kp['non_trainable']:,})"))
    rows += [
        ("ONNX params", f"{total['params']:,} (kernel weights {total['kernel_weights']:,}"
         + (f"; generated, not stored: {total['generated']:,}" if total["generated"] else "") + ")"),
        ("MACs" + per, f"{total['macs']:,}"),
        ("other flops" + per, f"{total['flops']:,}"),
    ]
    shown = formulas_text(a.costs, md) or {}
    rows += [(f"{label}, as a formula", Markdown(shown[k])) for k, label in (("macs", "MACs"), ("flops", "other flops"))
             if k in shown]
    rows += [
        ("ONNX file", Markdown(f"opset {a.info.opset}, {a.info.size_bytes:,} bytes, {len(a.costs.ops):,} ops "
                               f"({md(a.info.producer)})")),
        ("inputs", Markdown(", ".join(f"{md_code(n)} {md(s)}" for n, s in a.info.inputs))),
        ("outputs", Markdown(", ".join(f"{md_code(n)} {md(s)}" for n, s in a.info.outputs))),
    ]
    v = a.verification
    if v is not None:
        rows.append(("onnxruntime parity", _own(_parity_verdict(v))))
    if not a.costs.complete:
        rows.append(("completeness", _own("**totals are lower bounds**: some ops could not be costed (below)")))
    out += [_md_table(("", ""), rows, "ll"), ""]
    if chart:
        out += ["![MACs and parameters per block](blocks.png)", ""]
    if a.costs.per_sample:
        dims = "; ".join(f"{md_code(i, table=False)} axis {ax} ({md(name) if name else 'unnamed'})"
                         for i, axes in a.costs.fixed_dims.items() for ax, name in axes.items())
        out += [f"Costs are per sample: symbolic dimensions set to 1: {dims}.", ""]
    elif a.costs.batch not in (None, 1):
        out += [f"Costs are for batch {a.costs.batch:,} (the inputs' leading dimension), not per sample.", ""]
    if total["generated"]:
        line = generated_line(a.costs)
        out += [_own(line[:1].upper() + line[1:] + "."), ""]
    if a.costs.branches:
        out += [("If branches: each If counts one branch (the one taken where the condition is known, else the one "
                 "with more MACs); the other's ops are listed, marked not summed, and are in no total."), ""]
        out += [f"- {line}" for line in branch_lines(a.costs)] + [""]
    if a.warnings:
        out += [f"**Warning:** {md(w)}" for w in a.warnings] + [""]

    if arch is not None and not _published_apply(a, arch):
        out += ["## Reference figures", "",
                "Not compared: the published figures and the paper's table are for the default settings ("
                + ", ".join(md_code(f"{k}={v}", table=False) for k, v in sorted(arch.defaults.items()))
                + "); this report was made with others (see Configuration).", ""]
    arch = _compared(a, arch)
    if arch is not None and arch.references:
        out += ["## Reference figures", "", _md_table(
            ("figure", "counted", "published", "difference", "verdict", "source"),
            [(_own(r["figure"]), r["counted"], r["published"], r["difference"], _own(r["verdict"]), _own(r["source"]))
             for r in reference_rows(a, arch.references)], "lrrrll"), ""]
        for r in reference_rows(a, arch.references):
            if r["note"]:
                out += [f"- **{r['figure']}, {r['source']}:** {r['note']}"]
        out += [""]
    if arch is not None and arch.paper_table:
        table = paper_table(a, arch.paper_table)
        shown = [c for c in table.columns if c != "note"]
        marks, notes = [], []
        for r in table.itertuples(index=False):
            note = r.note
            if note:
                notes.append(note)
                marks.append(f"{r.block} [{len(notes)}]")
            else:
                marks.append(r.block)
        body = [[_own(m), *(_paper_cell(v) for v in row[1:-1])] for m, row in zip(marks, table.itertuples(index=False))]
        out += ["## Beside the paper's table", "",
                ("The paper's columns as printed, then what archkit counts for the same block. Kernel weights are "
                 "conv/dense kernels without biases; differences are counted minus the paper's figure read as a number."), "",
                _md_table(shown, body, "".join("r" if c.startswith("counted") or c.endswith("- paper") else "l"
                                               for c in shown)), ""]
        out += [f"{i}. {n}" for i, n in enumerate(notes, 1)] + ([""] if notes else [])
    if arch is not None and arch.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in arch.notes] + [""]

    layers = layer_table(a)
    if a.keras_layers:
        out += ["## Layers", "", "As Keras' `model.summary()` lists them, with the costs of the ONNX ops each became.", "",
                _md_table(("Layer (type)", "Output Shape", "Param #", "MACs", "flops", "ONNX ops"),
                          [(Markdown(f"{md(r.layer)} ({md(r.type)})"), r.output_shape, r.keras_params, r.macs, r.flops, r.onnx_ops)
                           for r in layers.itertuples()]
                          + [(Markdown("**total**"), "", int(layers.keras_params.sum()), total["macs"], total["flops"], total["ops"])],
                          "llrrrr"), ""]

    blocks = a.costs.by_block()
    if len(blocks) != len(a.costs.by_layer()):
        out += ["## Blocks", "", _md_table(("block", "MACs", "flops", "ONNX params", "ONNX ops"),
                                           [(_label(b, "block"), b.macs, b.flops, b.params, b.ops)
                                            for b in blocks.itertuples()]), ""]

    if a.keras_layers:
        out += ["## Parameter reconciliation", "",
                ("Keras counts learnable parameters (trainable + non-trainable, BatchNorm statistics included); "
                 "ONNX stores float initializers, a shared one once. Exporters fold BatchNorm into the preceding conv."), "",
                _md_table(("layer", "Keras trainable", "Keras non-trainable", "ONNX params", "difference", "why"),
                          [(r.layer, r.trainable, r.non_trainable, r.onnx_params, r.onnx_params - r.keras_params, _why(r))
                           for r in layers.itertuples() if r.keras_params or r.onnx_params], "lrrrrl"),
                "", f"Total: Keras {kp['total']:,}, ONNX {total['params']:,}, difference {total['params'] - kp['total']:+,}.", ""]

    types = a.costs.by_type()
    out += ["## Op types", "", _md_table(("op type", "count", "MACs", "flops", "ONNX params"),
                                         [(_label(t, "op_type"), t.ops, t.macs, t.flops, t.params)
                                          for t in types.itertuples()]), ""]
    if a.costs.unsupported or a.costs.unknown:
        out += ["## Ops not costed", ""]
        if a.costs.unsupported:
            out += [(f"- no cost rule (counted as nothing, totals are lower bounds): "
                     f"{', '.join(md_code(u, table=False) for u in a.costs.unsupported)}")]
        if a.costs.unknown:
            out += [f"- shape not inferred: {len(a.costs.unknown)} ops, e.g. {md_code(a.costs.unknown[0], table=False)}"]
        out += [""]
    out += memory_section(a, image=chart)
    if v is not None:
        out += _parity_section(v, measured=getattr(a, "bench", None) is not None)
    if a.equivalence is not None:
        e = a.equivalence
        out += [(f"**The same function as {e.reference}.** {md(a.name)} {e.statement()}: every weight copied into "
                 f"the reference ({e.copied} tensors, paired by layer {e.matched_by}), both run by Keras."
                 if e.ok else f"**Not the same function as {e.reference}.** {md(a.name)} {md(e.statement())}."), ""]
    if a.layerwise:
        out += layerwise_section(a.layerwise, measured=getattr(a, "bench", None) is not None, image=chart)
    if a.connectivity is not None:
        out += [connectivity_markdown(a.connectivity, a.name, images=chart,
                                      published=arch.receptive_fields if arch is not None else ()), ""]
    if getattr(a, "bench", None) is not None:
        out += deployment_section(a.bench)
    out += ["## Conventions", "",
            ("MACs are multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul (the papers' \"ops\"/\"FLOPs\"). "
             "flops count everything else once per element (bias adds, activations; BatchNorm 2, softmax 3, "
             "pooling one per window element). See the project README."), ""]
    return "\n".join(out)


# --- memory ---------------------------------------------------------------------------

def _unit_cell(n: int) -> str:
    return mem.binary(n) if n >= 2**10 else ""


def _formula_cell(f) -> Markdown | str:
    return Markdown(pretty(f, md)) if is_expr(f) else ""


def memory_section(a: Analysis, *, image: bool = False) -> list[str]:
    """The "Memory" section of a report README (archkit.costs.memory: archkit's count, nothing
    measured): the totals, the peak under each order, what onnxruntime's allocation plan holds,
    the memory-aware order's saving, the peak at batch 1 and mem.SHOWN_BATCH (32), the blocks peaking
    highest, and `memory.png` when `image`."""
    m = a.memory
    if m is None:
        return []
    c = a.costs
    rt = m.runtime
    blocks = mem.group_of(a, "block") if c.scoped else {}
    free = bool(m.formulas) or any(is_expr(s.peak.formula) for s in m.schedules.values())
    at = (" Figures are at the free dims' value 1 (per sample), with their formulas in the free dims." if c.per_sample
          else f" Figures are for batch {c.batch:,}." if c.batch not in (None, 1) else "")
    out = ["## Memory", "",
           ("What the network holds while it runs, as archkit counts it on the ONNX graph (nothing measured from a "
            "runtime): a buffer for each tensor an op makes, live from that op through the last op that reads it. "
            "An alias (Reshape, Flatten, Squeeze, Unsqueeze, Identity) shares its input's buffer; an activation or "
            "Softmax writes into its input's when nothing later reads that input. Live memory is the activations and "
            "graph outputs; weights and inputs are held apart." + at), ""]
    formulas = m.formulas or {}
    totals = [("weights (initializers and Constant ops, held for the session)", m.weights, "weights"),
              ("graph inputs (the caller's memory)", m.inputs, "inputs"),
              ("graph outputs (live from their op to the end of the run)", m.outputs, "outputs"),
              (f"activations, each of the {m.tensors:,} tensors once (no reuse)", m.activations, "activations")]
    header = ("", "bytes", "", "in the free dims") if free else ("", "bytes", "")
    out += [_md_table(header, [(_own(label), n, _unit_cell(n), *((_formula_cell(formulas.get(k)),) if free else ()))
                               for label, n, k in totals], "lrr" + "l" * free), ""]

    header = ("order", "how", "peak live bytes", "", "at op", *(("block",) if blocks else ()),
              *(("in the free dims",) if free else ()))
    rows = []
    for name, s in m.schedules.items():
        p = s.peak
        formula = _formula_cell(p.formula) or (_own(f"no formula: {p.why_no_formula}") if p.why_no_formula else "")
        rows.append((_own(mem.ORDER_NAMES.get(name, name)), _own(s.how), p.bytes, _unit_cell(p.bytes),
                     md_code(p.node) if s.steps else "", *((blocks.get(p.node, ""),) if blocks else ()),
                     *((formula,) if free else ())))
    plan = rt.planned if rt is not None else None
    if plan is not None and rt.steps:
        rows.append((_own("onnxruntime's allocation plan"),
                     _own(f"what it holds along its order: {mem.PLAN_WHY} ({plan.buffers:,} buffers, {plan.reused:,} "
                          "tensors reuse a dead one)"), plan.peak, _unit_cell(plan.peak), md_code(plan.node),
                     *((blocks.get(plan.node, ""),) if blocks else ()), *(("",) if free else ())))
    out += [_md_table(header, rows, "llrrl" + "l" * bool(blocks) + "l" * free), ""]

    notes = []
    saving, aware, file = m.saving(), m.schedules.get("memory-aware"), m.schedules.get("file")
    if saving is not None and aware is not None and file is not None:
        d, fraction = saving
        notes.append(f"The memory-aware order lowers the file order's peak by {mem.saving_text(d, fraction)}: "
                     f"{file.peak.bytes:,} → {aware.peak.bytes:,} bytes." if d else
                     f"The memory-aware order lowers the file order's peak by nothing: both peak at "
                     f"{file.peak.bytes:,} bytes.")
    peaks, dim, why = mem.batch_peaks(a)
    if rt is not None and rt.steps:
        def shown(k: int) -> str:
            return f"{peaks[k]:,} bytes" + (f" ({mem.binary(peaks[k])})" if peaks[k] >= 2**10 else "") \
                if peaks[k] is not None else "not known"

        how = (f", its formula at {md(dim)} = {mem.SHOWN_BATCH}" if dim is not None and peaks[mem.SHOWN_BATCH] is not None
               else "")
        notes.append(f"Peak live memory in onnxruntime's order at batch 1: {shown(1)}; at batch {mem.SHOWN_BATCH}: "
                     f"{shown(mem.SHOWN_BATCH)}{how}" + (f" ({md(why)})" if why else "") + ".")
        if rt.peak.live:
            notes.append("Largest tensors live at onnxruntime's peak: " + ", ".join(
                f"{md_code(t.tensor, table=False)} {t.bytes:,} bytes ({'graph output' if t.kind == 'output' else t.kind} "
                f"made by {md_code(t.node, table=False)})" for t in rt.peak.live) + ".")
    if not m.complete:
        notes.append(f"**The memory figures are lower bounds**: {len(m.unknown):,} tensors of unknown size are counted "
                     f"as 0, e.g. {', '.join(md_code(t, table=False) for t in m.unknown[:3])}.")
    if c.subgraphs:
        notes.append("Memory inside the bodies of If, Loop and Scan ops is not counted: each such op reads what its "
                     "bodies read.")
    if a.memory_check is not None:
        notes.append(memory_verdict(a.memory_check))
    out += [f"- {n}" for n in notes] + ([""] if notes else [])

    top = mem.top_blocks(a) if blocks else []
    if top and rt is not None:
        out += [f"The {len(top)} blocks with the most live memory while their ops run (onnxruntime's order):", "",
                _md_table(("block", "peak live bytes", "", "of the peak"),
                          [(b, v, _unit_cell(v), f"{v / rt.peak.bytes:.0%}" if rt.peak.bytes else "") for b, v in top]),
                ""]
    if image and rt is not None and rt.steps:
        out += [f"![{md(a.name)}: live bytes along onnxruntime's order](memory.png)", "",
                ("The thick line: live bytes during each step of onnxruntime's order, its peak marked; dotted: what its "
                 "allocation plan holds; thin: the file's and the memory-aware order, each along its own steps"
                 + ("; the strip beneath shades each block's run of steps." if blocks else ".")), ""]
    return out


def memory_verdict(check) -> str:
    """archkit.runtime.memory.MemoryCheck as a committed report states it: what was compared and
    the verdict, by the fixed bounds; not the measured bytes (they depend on the machine's runtime)."""
    shapes = ", ".join(f"{md_code(k, table=False)} {'x'.join(map(str, v))}" for k, v in check.input_shapes.items())
    lo, hi, extra = ARENA_BOUND
    parts = [f"the output bytes of {'all' if check.bytes_equal else 'not all'} {check.nodes:,} ops equal archkit's",
             "its execution order is the one archkit reproduces" if check.order_same else
             "its execution order differs from archkit's reproduction",
             (f"the bytes it asks of its arena after every op are archkit's predicted plan plus one constant "
             f"{'within' if check.requested_ok else 'outside'} {REQUESTED_BOUND[1] // 1024} KiB"),
             (f"its arena's peak is {'within' if check.arena_ok else 'outside'} {lo:g}× to {hi:g}× (the plan's peak + "
             f"the largest im2col workspace) + {extra // 2 ** 20} MiB")]
    return (f"Checked against {md(check.runtime)}'s allocator (optimisations off, one run at {shapes}): "
            + "; ".join(parts) + f": **{'pass' if check.ok else 'FAIL'}** (`archkit verify` prints the measured bytes).")


# --- parity ---------------------------------------------------------------------------
# Parity errors depend on the machine (TensorFlow picks kernels by instruction set and reduces
# in threads), so a committed report holds the verdict and the fixed allowance it was judged
# by, never the measured floats; `verify` and `report --bench` show those.

def _allowance(precision: str) -> str:
    t = TOLERANCES[precision]
    return f"max |onnx − keras| ≤ {_bound(t.atol)} + {_bound(t.rtol)} · max |keras|"


def _bound(x: float) -> str:
    """1e-05 → 1e-5, 0.0001 → 1e-4, 0.25 → 0.25."""
    if x >= 1e-2:
        return f"{x:g}"
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _parity_verdict(v) -> str:
    batches = ", ".join(str(b) for b in sorted({o.batch for o in v.outputs}))
    if v.ok:
        return f"pass: every output within the {v.precision} allowance, {_allowance(v.precision)} (batches {batches})"
    return f"**FAIL**: beyond the {v.precision} allowance, {_allowance(v.precision)} (batches {batches}; see Parity)"


def _parity_summary(v, *, measured: bool) -> dict[str, Any]:
    t = TOLERANCES[v.precision]
    out: dict[str, Any] = {
        "ok": v.ok, "runtime": v.runtime, "precision": v.precision,
        "allowed": {"atol": t.atol, "rtol": t.rtol, "top1_agreement": t.top1, "top5_agreement": t.top5},
        "checks": [{"output": o.output, "batch": o.batch, "seed": o.seed, "ok": o.ok,
                    "top1_agreement": o.argmax_agreement} for o in v.outputs],
    }
    if measured:  # machine-dependent: only in --bench reports
        out["measured"] = {"max_abs_error": float(_e(v.max_abs)), "max_rel_error": float(_e(v.max_rel)),
                           "checks": [{"output": o.output, "batch": o.batch, "seed": o.seed,
                                       "max_abs_error": float(_e(o.max_abs)), "max_rel_error": float(_e(o.max_rel))}
                                      for o in v.outputs]}
    return out


def _parity_section(v, *, measured: bool) -> list[str]:
    header = ["output", "batch", "top-1 agreement", "pass"] + (["max abs error", "max relative error"] if measured else [])
    rows = [[o.output, o.batch, f"{o.argmax_agreement:.0%}", "yes" if o.ok else Markdown("**no**")]
            + ([_e(o.max_abs), _e(o.max_rel)] if measured else []) for o in v.outputs]
    where = ("The measured errors depend on the machine (they are shown because the report was made with `--bench`)."
             if measured else "The measured errors depend on the machine, so the report holds the verdict and the "
             "allowance it was judged by; `archkit verify NAME` prints them.")
    return ["## Parity", "",
            (f"Keras and {v.runtime} on the same seeded normal inputs. An output passes when "
             f"{_allowance(v.precision)} and the argmax agrees on every sample. {where}"), "",
            _md_table(header, rows, "lrrl" + "rr" * measured), ""]


def layerwise_section(forms: Mapping[str, Any], *, measured: bool, image: bool = False) -> list[str]:
    """Markdown lines of the layer-by-layer parity (deployment form → archkit.runtime.layerwise.
    Layerwise): each layer's verdict in each form against its fixed allowance; the measured errors
    and their plot (`layerwise.png`, when `image`) only in a --bench report."""
    labels = list(forms)
    first = forms[labels[0]]
    seeds = "one seed" if not first.layers else "the seeded inputs"
    allowances = "; ".join(f"{k}: {_allowance(forms[k].precision)}" for k in labels)
    out = ["### Layer by layer", "",
           (f"Each Keras layer whose output survives the export, against the tensor of the export that holds it "
            f"({seeds}, {LAYER_BATCH} samples; the tensor's axis order is followed from the graph's Transposes, not "
            "guessed from shapes). A layer the exporter folded into another (a BatchNormalization into its Conv, a "
            "Dropout) is compared at the fused op's output, and named beside the layer compared there. A layer "
            f"passes when its largest error is within its form's allowance ({allowances}, with the layer's own "
            "max |keras|)."), ""]
    for k in labels:
        lw = forms[k]
        d = lw.first_drift
        same = ("its final outputs equal a plain run's" if lw.same_outputs else
                "its final outputs differ from a plain run's (onnxruntime fuses fewer ops when their tensors are "
                "outputs, so these layer figures are the marked copy's, not the deployed run's)")
        verdict = (f"every one of its {len(lw.layers)} layers within the allowance" if d is None else
                   f"**the first layer over the allowance is {md_code(d.layer, table=False)}** (layer {d.depth} of "
                   f"{len(lw.layers)})")
        skipped = f"; not compared: {', '.join(md_code(s, table=False) for s, _ in lw.skipped)}" if lw.skipped else ""
        out.append(f"- {k}: {verdict}; the copy with the layer tensors as outputs: {same}{skipped}.")
    out.append("")
    if image and measured:
        out += ["![max relative error of each layer, per deployment form](layerwise.png)", ""]
    header = ["#", "layer", "also holds"] + labels + ([f"{k} max rel" for k in labels] if measured else [])
    by_layer: dict[str, dict[str, Any]] = {}
    order: list[tuple[int, str, tuple[str, ...]]] = []
    for k in labels:
        for e in forms[k].layers:
            if e.layer not in by_layer:
                by_layer[e.layer] = {}
                order.append((len(order) + 1, e.layer, e.folded))
            by_layer[e.layer][k] = e
    rows = []
    for i, layer, folded in order:
        marks = [("ok" if by_layer[layer][k].ok else Markdown("**over**")) if k in by_layer[layer] else "—"
                 for k in labels]
        errs = [_e(by_layer[layer][k].max_rel) if k in by_layer[layer] else "—" for k in labels] if measured else []
        rows.append([i, layer, ", ".join(folded)] + marks + errs)
    out += [_md_table(header, rows, "rll" + "l" * len(labels) + "r" * len(errs if measured else [])), ""]
    return out


def layerwise_summary(forms: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json's "layerwise": per form, its verdicts (no measured float)."""
    return {k: {"ok": lw.ok, "first_over": lw.first_drift.layer if lw.first_drift else None,
                "same_outputs": lw.same_outputs, "precision": lw.precision,
                "allowed": {"atol": TOLERANCES[lw.precision].atol, "rtol": TOLERANCES[lw.precision].rtol},
                "layers": [{"layer": e.layer, "tensor": e.tensor, "folded": list(e.folded), "ok": e.ok}
                           for e in lw.layers],
                "not_compared": [{"layer": s, "why": why} for s, why in lw.skipped]}
            for k, lw in forms.items()}


def layerwise_chart(forms: Mapping[str, Any], name: str) -> bytes:
    """PNG: each layer's max relative error against its depth, one line per deployment form
    (log scale; an exact layer is drawn at the axis' floor), the layers over the allowance marked."""
    import matplotlib  # heavy: only the png format draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: as matplotlib

    fig, ax = plt.subplots(figsize=(10.0, 4.2))
    floor = 1e-9
    for k, lw in forms.items():
        xs = [e.depth for e in lw.layers]
        ys = [max(e.max_rel, floor) for e in lw.layers]
        line, = ax.plot(xs, ys, lw=1.2, label=k)
        over = [(e.depth, max(e.max_rel, floor)) for e in lw.layers if not e.ok]
        if over:
            ax.plot(*zip(*over), "x", color=line.get_color(), ms=7)
    ax.set_yscale("log")
    ax.set_xlabel("layer (depth, in the Keras model's order)")
    ax.set_ylabel("max |onnx − keras| / max |keras|")
    ax.set_title(f"{esc.plot(name)}: error of each layer's output, per deployment form (x: over the allowance)",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    return png_bytes(fig, dpi=mem.DPI)


def deployment_section(b) -> list[str]:
    """Markdown lines of the Deployment section (archkit.runtime.bench.Bench): machine-dependent figures,
    rendered only when a report is asked for with --bench."""
    m = b.machine
    d = b.deployment
    rows = []
    for lat in b.latencies:
        frac = b.fraction(lat)
        speed = b.speedup(lat.batch) if lat.runtime == "onnxruntime" else None
        rows.append((lat.runtime, lat.batch, f"{lat.median_ms:.2f}", f"{lat.p90_ms:.2f}", lat.runs,
                     "" if lat.gflops is None else f"{lat.gflops:.1f}", "" if frac is None else f"{frac:.0%}",
                     "" if speed is None else f"{speed:.2f}x"))
    export = ""
    if d.get("export_seconds") is not None:
        export = (f" Export: {d['export_seconds']:.1f} s" + (" (the cached export was reused)" if d.get("cached") else "")
                  + f", {d.get('transposes', '?')} Transpose op(s) in the file.")
    macs = f"{b.macs_per_sample:,}" if b.macs_per_sample else "unknown"
    return ["## Deployment", "",
            (f"Measured on {m.get('cpu')} ({m.get('usable_cores')} usable cores, {m.get('system')}, load average "
             f"{m.get('load_average_1min') or 0:.1f}), onnxruntime {m.get('versions', {}).get('onnxruntime')} with "
             f"{b.threads} intra-op thread(s) (spin-waiting {'on' if b.spinning else 'off'}), TensorFlow {m.get('versions', {}).get('tensorflow')} "
             f"(`tf.function`) with {b.keras_threads or 'its default'} intra-op thread(s). These figures depend on the "
             f"machine and its load; the rest of the report does not.{export}"), "",
            _md_table(("runtime", "batch", "median ms", "p90 ms", "runs", "GFLOP/s", "of matmul peak", "vs Keras"),
                      rows, "lrrrrrrr"), "",
            (f"GFLOP/s = 2 flops per MAC × {macs} MACs per sample (archkit's count of Conv/Gemm/MatMul"
             f"{'' if b.macs_complete else ', a lower bound'}) × batch / median latency; warm-up runs excluded. "
             f"Matmul peak: the best float32 {b.peak.n}×{b.peak.n} MatMul in the same run and thread count — numpy "
             f"{b.peak.numpy_gflops:.1f} GFLOP/s, onnxruntime {b.peak.onnxruntime_gflops:.1f} GFLOP/s."), ""]


def _paper_cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    return _own(v) if isinstance(v, str) else _n(v)


def _why(r) -> str:
    diff = r.onnx_params - r.keras_params
    if diff == 0:
        return ""
    if r.type == "BatchNormalization" and r.onnx_params == 0:
        return "folded into the preceding conv by the exporter"
    if r.type == "(ONNX only)":
        return "ONNX params outside any Keras layer"
    return "see the layer's ONNX ops (ops.csv)"


CHART_BARS = 40  # bars a block chart shows: the largest blocks, the rest summed in one "other" bar


def _chart_rows(a: Analysis) -> tuple[list[str], list[int], list[int], str, str]:
    """Labels, MACs and parameters of the chart's bars (network order), the parameters' label,
    and what a bar is ("block", or "op type" for a file whose names carry no scopes)."""
    c = a.costs
    if c.scoped:
        rows, what = _summed(c.by_block()), "block"
        names = list(rows.block)
    else:
        rows, what = _summed(c.by_type()), "op type"
        names = list(rows.op_type)
    if a.keras_layers:
        keras_params: dict[str, int] = {}
        for layer in a.keras_layers:
            keras_params[layer["block"]] = keras_params.get(layer["block"], 0) + layer["trainable"] + layer["non_trainable"]
        params, label = [keras_params.get(b, 0) for b in names], "Keras parameters"
    else:
        params, label = [int(p) for p in rows.params], "ONNX params"
    macs = [int(m) for m in rows.macs]
    if len(names) > CHART_BARS:
        # the largest by MACs, then by parameters, kept in network order; the rest in one bar
        keep = set(sorted(range(len(names)), key=lambda i: (-macs[i], -params[i], i))[:CHART_BARS - 1])
        rest = [i for i in range(len(names)) if i not in keep]
        kept = sorted(keep)
        names = [names[i] for i in kept] + [f"other ({len(rest):,} {what}s)"]
        macs = [macs[i] for i in kept] + [sum(macs[i] for i in rest)]
        params = [params[i] for i in kept] + [sum(params[i] for i in rest)]
    return names, macs, params, label, what


def block_chart(a: Analysis) -> bytes:
    """PNG: MACs and parameters per block, side by side, blocks in network order (at most
    CHART_BARS bars; per op type where the file names no scopes)."""
    import matplotlib  # heavy: only the png format draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: as matplotlib

    names, macs, params, params_label, what = _chart_rows(a)
    height = max(2.5, 0.28 * len(names) + 1.2)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    y = range(len(names))
    ax1.barh(y, [m / 1e6 for m in macs], color="#4472c4")
    ax1.set_xlabel("MACs (millions)")
    ax2.barh(y, [p / 1e3 for p in params], color="#ed7d31")
    ax2.set_xlabel(f"{params_label} (thousands)")
    ax1.set_yticks(list(y), [esc.plot(b) for b in names], fontsize=8)
    ax1.invert_yaxis()
    for ax in (ax1, ax2):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{esc.plot(a.name)}: MACs{totals_for(a.costs)} and {params_label} "
                 f"per {what} (totals {sum(macs):,} and {sum(params):,})", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig, dpi=80)


def index(summaries: Sequence[Mapping[str, Any]]) -> str:
    """reports/README.md: every report's headline figures in one table. A summary's "folder"
    (default: its name) is where its report is, relative to the index."""
    rows = []
    for s in summaries:
        kp, c, o, p = s.get("keras_params") or {}, s["costs"], s["onnx"], s.get("parity")
        macs_refs = [r for r in s.get("references", []) if r["figure"] == "MACs"]
        ref = macs_refs[0]["verdict"] if macs_refs else ""
        folder = s.get("folder") or s["name"]
        link = Markdown(f"[{md(folder)}]({quote(esc.name(folder), safe='')}/README.md)")
        params = c.get("params", c.get("onnx_weights"))  # the key summaries before "params" had
        rows.append((link, kp.get("total"), params, c["macs"], ref, o["ops"],
                     f"{o['size_bytes'] / 2**20:.2f} MiB",
                     "" if p is None else _own("pass" if p["ok"] else "**FAIL**")))
    out = [
        INDEX_MARKER, "# Reports", "",
        ("The reports in this folder, one row each; every `archkit report` writing here refreshes this index. "
         "Every figure below is counted on the architecture's ONNX export. "
         "MACs are multiply-accumulates of Conv/Gemm/MatMul, per sample; parity compares onnxruntime with Keras "
         "against the allowance each report states."), "",
        _md_table(("architecture", "Keras params", "ONNX params", "MACs", "vs published MACs", "ONNX ops",
                   "ONNX size", "parity"), rows, "lrrrlrrl"), ""]
    memory = [(link, m) for link, m in zip((r[0] for r in rows), (s.get("memory") for s in summaries))
              if isinstance(m, Mapping)]
    if memory:
        out += ["## Memory", "",
                (f"archkit's count on each export (nothing measured from a runtime): the weights, and the peak live "
                 f"memory (activations and graph outputs) in onnxruntime's order at batch 1 and {mem.SHOWN_BATCH}, "
                 f"the latter from the peak's formula in the batch; blank where it is not known (the report says why)."),
                "", _md_table(("architecture", "weights", "peak live memory, batch 1", f"batch {mem.SHOWN_BATCH}"),
                              [(link, *_index_memory(m)) for link, m in memory], "lrrr"), ""]
    return "\n".join(out)


def _index_memory(m: Mapping[str, Any]) -> tuple[str, str, str]:
    """A summary's memory figures for the index: weights, the peaks at batch 1 and mem.SHOWN_BATCH (32)."""
    peaks = m.get("peak_by_batch") or {}

    def shown(n) -> str:
        return mem.binary(n) if isinstance(n, int) else ""

    return shown(m.get("weights")), shown(peaks.get("1")), shown(peaks.get(str(mem.SHOWN_BATCH)))


def _csv(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    esc.csv_frame(df).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode()


def render(a: Analysis, formats: Iterable[str] = FORMATS, *, arch=None) -> dict[str, bytes]:
    """File name → content for one report folder."""
    files: dict[str, bytes] = {}
    formats = set(formats)
    if "md" in formats:
        files["README.md"] = _markdown(a, arch, chart="png" in formats).encode()
    arch = _compared(a, arch)
    if "csv" in formats:
        if a.keras_layers:
            files["layers.csv"] = _csv(layer_table(a))
        else:
            files["layers.csv"] = _csv(a.costs.by_layer())
        files["blocks.csv"] = _csv(a.costs.by_block())
        files["ops.csv"] = _csv(a.costs.to_frame())
        if arch is not None and arch.paper_table:
            files["paper_table.csv"] = _csv(paper_table(a, arch.paper_table))
    if "png" in formats:
        files["blocks.png"] = block_chart(a)
        if a.memory is not None and a.memory.runtime is not None and a.memory.runtime.steps:
            files["memory.png"] = mem.chart(a)
        if a.layerwise and getattr(a, "bench", None) is not None:  # measured errors: a --bench report's only
            files["layerwise.png"] = layerwise_chart(a.layerwise, a.name)
    if a.connectivity is not None:
        files.update(connectivity_files(a.connectivity, a.name, formats))
    if "json" in formats:
        files["summary.json"] = (json.dumps(summary(a, arch.references if arch else ()), indent=2, sort_keys=True,
                                            default=str) + "\n").encode()
    return files
