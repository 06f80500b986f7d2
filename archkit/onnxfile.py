"""Any ONNX file → the Analysis archkit's own reports use (`archkit analyse FILE.onnx`).

    from archkit.onnxfile import analyse_file
    a = analyse_file("resnet50.onnx", input_shapes={"input": (8, 3, 224, 224)})
    a.costs.total(), a.costs.by_block(), a.costs.complete

No TensorFlow is imported, no weight is read (external data files are never opened: dims
suffice), and the result is the same `archkit.pipeline.Analysis` that `archkit report` renders.
This module also holds the plain-text views the command prints (a table per --by).
"""

from __future__ import annotations

import gc
import io
import numbers
import json
import math
import os
from dataclasses import replace
from typing import Mapping

import numpy as np
import pandas as pd

from archkit.costs import analyse
from archkit.errors import MalformedModelError, ResourceError, UnsafeModelError, UnsupportedError, UsageError
from archkit.onnx.graph import build_graph, free_dims
from archkit.onnx.load import Loaded, archkit_metadata, load_model
from archkit.pipeline import Analysis, ModelInfo, _shape_text, analyse_model
from archkit.onnx.symbolic import is_expr, pretty

__all__ = ["analyse_file", "analyse_loaded", "VIEWS", "view", "shown_view", "render_view", "summary_lines", "branch_lines",
           "totals_for", "formulas_text", "formula_lines", "parse_input_shape", "parse_input_value", "parse_sweep", "sweep", "sweep_chart", "render_sweep"]

VIEWS = ("op", "layer", "block", "type")
UNSCOPED = ("no scopes in the node names (such as /layer1/conv1/Conv): layers and blocks are unknown, each op is its "
            "own; views by layer or block show op types instead")


def analyse_file(path: str | os.PathLike, *, input_shapes: Mapping[str, object] | None = None,
                 name: str | None = None, connectivity: bool = False, max_bytes: int | None = None,
                 strict: bool = False, input_values: Mapping[str, tuple[float, ...]] | None = None) -> Analysis:
    """Analyse an ONNX file. `input_shapes`: graph input name → full shape, or a symbolic dim's
    name (as the file declares it) → its value; for symbolic dims left free the figures are at 1 (per
    sample) and `costs.formulas` gives the totals as formulas in them.
    `input_values`: graph input name → its value (elements in order): an If whose condition
    follows from it counts only the branch taken.

    `connectivity=True` adds the wiring analysis (archkit.pipeline.analyse_model: it reads the
    weights held inside the file and takes time superlinear in the graph's size); by default
    only costs are computed, and no weight is read. The file is checked first (archkit.onnx.load:
    size limit `max_bytes`, structure, external data); `strict`: an op without a cost rule, or
    whose cost is unknown, is an error instead of a lower bound. Raises archkit errors only,
    each naming the file."""
    return analyse_loaded(load_model(path, max_bytes=max_bytes), input_shapes=input_shapes, name=name,
                          connectivity=connectivity, strict=strict, input_values=input_values)


def analyse_loaded(loaded: Loaded, *, input_shapes: Mapping[str, object] | None = None, name: str | None = None,
                   connectivity: bool = False, strict: bool = False,
                   input_values: Mapping[str, tuple[float, ...]] | None = None) -> Analysis:
    """analyse_file for a model already read and checked by archkit.onnx.load.load_model."""
    p, proto = loaded.path, loaded.proto
    name = name or proto.graph.name or p.stem
    enabled = gc.isenabled()
    gc.disable()  # one pass of the collector over the result at the end, not one per stage
    try:
        if connectivity:
            a = analyse_model(proto, name=name, size_bytes=loaded.size_bytes, input_shapes=input_shapes,
                              input_values=input_values)
        else:
            a = costs_only(proto, name=name, size_bytes=loaded.size_bytes, input_shapes=input_shapes,
                           input_values=input_values)
    except (MalformedModelError, ResourceError, UnsafeModelError) as e:
        raise type(e)(f"{p}: {e}") from None
    except RecursionError:
        raise MalformedModelError(f"{p}: the graph nests too deeply to analyse") from None
    finally:
        if enabled:
            gc.enable()
    if not a.costs.scoped:
        a = replace(a, warnings=a.warnings + (UNSCOPED,))
    if loaded.warnings:
        a = replace(a, warnings=loaded.warnings + a.warnings)
    if strict and not a.costs.complete:
        c = a.costs
        what = ([f"no cost rule for {', '.join(c.unsupported)}"] if c.unsupported else []) + \
               ([f"cost unknown for {len(c.unknown)} ops (e.g. {c.unknown[0]})"] if c.unknown else [])
        raise UnsupportedError(f"{p}: {'; '.join(what)} (--strict)")
    return a


def costs_only(proto, *, name: str, size_bytes: int, input_shapes: Mapping[str, object] | None = None,
               input_values: Mapping[str, tuple[float, ...]] | None = None) -> Analysis:
    """analyse_model's Analysis without the connectivity pass."""
    G = build_graph(proto, input_shapes=input_shapes, input_values=input_values)
    init = set(G.graph["initializers"])
    info = ModelInfo(
        opset=G.graph["opset"].get("ai.onnx", 0), ir_version=proto.ir_version, producer=G.graph["producer"],
        size_bytes=size_bytes,
        inputs=tuple((i.name, _shape_text(i)) for i in proto.graph.input if i.name not in init),
        outputs=tuple((o.name, _shape_text(o)) for o in proto.graph.output),
    )
    meta = G.graph["metadata"]
    own = archkit_metadata(meta)
    costs = analyse(G)
    return Analysis(
        name=name, info=info, costs=costs,
        keras_layers=own.layers, keras_params=own.keras_params, config=own.config,
        warnings=tuple(f"metadata {k!r} ignored: not what archkit writes" for k in own.problems)
        + G.graph["warnings"] + costs.formula_warnings,
    )


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME=1,3,224,224` (a graph input's shape) or `N=8` (a symbolic dim's value)."""
    name, sep, dims = text.rpartition("=")
    try:
        if not sep or not name:
            raise ValueError
        shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        if any(d < 0 for d in shape):
            raise ValueError
    except ValueError:
        raise UsageError(f"--input-shape {text!r}: expected NAME=D1,D2,... with non-negative integers "
                         "(NAME: a graph input, or a symbolic dimension such as N=8)") from None
    return name, shape


def parse_input_value(text: str) -> tuple[str, tuple[int | float, ...]]:
    """`NAME=V` or `NAME=V1,V2,...`: a graph input's value, a scalar or a small tensor's elements
    in order (numbers; integers stay ints). Whether NAME is an input, and the count and type of
    the values, are checked against the model (archkit.onnx.graph)."""
    name, sep, text_values = text.rpartition("=")
    try:
        if not sep or not name or not text_values:
            raise ValueError
        values = tuple(_number(v) for v in text_values.split(","))
    except ValueError:
        raise UsageError(f"--input-value {text!r}: expected NAME=V or NAME=V1,V2,... with numbers "
                         "(NAME: a graph input, e.g. sr=16000)") from None
    return name, values


def _number(text: str) -> int | float:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(text) from None
        return v


def shown_view(a: Analysis, by: str) -> str:
    """The view `--by` asks for, or op types where layers and blocks are single ops (no scopes)."""
    if by not in VIEWS:
        raise UsageError(f"--by {by!r}: expected one of {', '.join(VIEWS)}")
    return "type" if by in ("layer", "block") and not a.costs.scoped else by


def view(a: Analysis, by: str) -> pd.DataFrame:
    """The --by table; with free dims, the MACs of each row as a formula in them (`macs_formula`)."""
    c = a.costs
    shown = shown_view(a, by)
    df = {"op": c.to_frame, "layer": c.by_layer, "block": c.by_block, "type": c.by_type}[shown]()
    if c.formulas and any(k != "ops" and not isinstance(v, int) for k, v in c.formulas.items()):
        key = {"op": "node", "type": "op_type"}.get(shown, shown)
        per = c.formula_by(key)
        texts: dict = {}
        summed = df["summed"] if "summed" in df.columns else None
        column = []
        for k, row_key in enumerate(df[key]):
            f = per.get(row_key) if summed is None or summed.iloc[k] else None
            if f is None:
                column.append("")
                continue
            t = texts.get(f[0])
            if t is None:
                t = texts[f[0]] = pretty(f[0])
            column.append(t)
        df.insert(df.columns.get_loc("macs") + 1, "macs_formula", column)
    return df


def totals_for(c) -> str:
    """What the totals are for, to follow "MACs": " per sample", " at batch 4", or ""."""
    if c.per_sample:
        return " per sample"
    return f" at batch {c.batch:,}" if c.batch is not None else ""


def summary_lines(a: Analysis) -> list[str]:
    """What the totals mean, one fact per line (markdown; printed as is by `analyse -o`). Names
    from the file are escaped (archkit.render.escape.md/md_code): no markup, no control character."""
    from archkit.render.escape import md, md_code

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
    from archkit.render.escape import md

    shown = formulas_text(c, md)
    if shown:
        return [f"{label} = {shown[k]}" for k, label in (("macs", "MACs"), ("flops", "other flops")) if k in shown]
    if c.per_sample and c.no_formulas:
        return [f"no formula in the free dims: {md(c.no_formulas)}"]
    return []


MAX_BRANCH_LINES = 10  # Ifs described one by one; the rest are counted


def branch_lines(c) -> list[str]:
    """Which branch of each If the totals count and why, and what they leave out (markdown)."""
    from archkit.render.escape import md, md_code

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
    from archkit.render.escape import NAME_LIMIT, csv_frame, md

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
               "rows": json.loads(df.to_json(orient="records"))}
        return json.dumps(doc, indent=1) + "\n"
    if fmt != "md":
        raise UsageError(f"--format {fmt!r}: printing takes one of md, csv, json (write several with -o DIR)")
    lines = [f"- {line}" for line in summary_lines(a)] + [""]
    header = list(df.columns)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[h]) and not pd.api.types.is_bool_dtype(df[h])
                                else "---" for h in header) + "|")
    whole = {k for k, h in enumerate(header) if h == "macs_formula"}  # archkit's text, dim names escaped in it
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(("yes" if v else "no") if isinstance(v, (bool, np.bool_)) else f"{v:,}"
                                       if isinstance(v, numbers.Integral) else md(str(v), None if k in whole else
                                                                                   NAME_LIMIT)
                                       for k, v in enumerate(row)) + " |")
    return "\n".join(lines) + "\n"


# --- sweeps: the costs at several values of free dims ---------------------------------------

SWEEP_COLUMNS = ("macs", "flops", "params")


def parse_sweep(text: str) -> tuple[str, tuple[int, ...]]:
    """`width=128,256,512`: a symbolic dim of the file and the values it takes (positive)."""
    name, sep, values = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        out = tuple(int(v) for v in values.split(","))
        if not out or any(v < 1 for v in out) or len(set(out)) != len(out):
            raise ValueError
    except ValueError:
        raise UsageError(f"--sweep {text!r}: expected DIM=V1,V2,... with distinct positive integers "
                         "(DIM: a symbolic dimension of the file, such as N or width)") from None
    return name, out


def sweep(loaded: Loaded, dims: Mapping[str, tuple[int, ...]], *, input_shapes: Mapping[str, object] | None = None,
          input_values: Mapping[str, tuple[float, ...]] | None = None) -> pd.DataFrame:
    """One row per combination of the swept dims' values: the totals the file costs there, and
    whether they are complete. Every row is a full analysis at those values (exact: no fit)."""
    import itertools

    given = dict(input_shapes or {})
    clash = sorted(set(dims) & set(given))
    if clash:
        raise UsageError(f"--sweep {clash[0]}: also fixed by --input-shape; give one or the other")
    free = free_dims(loaded.proto)
    unknown = sorted(set(dims) - free)
    if unknown:
        raise UsageError(f"--sweep {unknown[0]}: not a free dim of the file"
                         + (f"; its free dims: {', '.join(sorted(free))}" if free else "; it has none (all fixed)"))
    rows = []
    for combo in itertools.product(*dims.values()):
        at = dict(zip(dims, combo))
        c = analyse_loaded(loaded, input_shapes={**given, **at}, input_values=input_values).costs
        t = c.total()
        rows.append({**at, **{k: t[k] for k in SWEEP_COLUMNS}, "complete": c.complete})
    return pd.DataFrame(rows)


def sweep_chart(df: pd.DataFrame, dims: tuple[str, ...], name: str) -> bytes:
    """PNG: MACs (and other flops) against the first swept dim, one line per value of the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from archkit.render import escape as esc
    from archkit.io import png_bytes

    x, rest = dims[0], list(dims[1:])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups = df.groupby(rest, sort=False) if rest else [((), df)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{esc.plot(d)}={v}" for d, v in zip(rest, key))
        ax.plot(part[x], part["macs"], marker="o", label=("MACs " + label).strip())
        ax.plot(part[x], part["flops"], marker=".", linestyle="--", label=("other flops " + label).strip())
    if df[x].max() / df[x].min() >= 8:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
    ax.set_xlabel(esc.plot(x))
    ax.set_ylabel("per run of the model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{esc.plot(name)}: cost against {esc.plot(x)}", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig, dpi=100)


def render_sweep(df: pd.DataFrame, fmt: str) -> str:
    """The sweep table for the terminal or a file: markdown, CSV or JSON."""
    if fmt == "csv":
        return df.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        return df.to_json(orient="records", indent=1) + "\n"
    from archkit.render.escape import md

    header = list(df.columns)
    lines = ["| " + " | ".join(md(h) for h in header) + " |",
             "|" + "|".join("---" if h == "complete" else "---:" for h in header) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(("yes" if v else "**no**") if isinstance(v, (bool, np.bool_)) else f"{int(v):,}"
                                       for v in row) + " |")
    return "\n".join(lines) + "\n"
