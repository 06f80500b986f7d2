"""The memory figures of an analysis (archkit.costs.memory) as people read them: the lines of
`archkit analyse`, the "memory" object of its JSON and of summary.json, the peak live bytes per
layer or block, the peak at another batch, and memory.png. Pure: text, data and PNG bytes, no I/O.

Every figure here is archkit's own count on the graph; nothing is measured from a runtime.
Names from the file are escaped for the format they go into (archkit.render.escape); JSON holds
them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from archkit.analysis import Analysis
from archkit.costs.memory import ORDERS, Memory, Schedule, group_peaks
from archkit.io import png_bytes
from archkit.onnx.symbolic import is_expr, pretty, value
from archkit.render import escape as esc
from archkit.render.escape import md, md_code

__all__ = [
    "ORDER_NAMES",
    "PLAN_WHY",
    "SHOWN_BATCH",
    "TOP_BLOCKS",
    "batch_dim",
    "batch_peaks",
    "binary",
    "chart",
    "group_of",
    "lines",
    "peaks_by",
    "saving_text",
    "size_text",
    "to_json",
    "top_blocks",
]

ORDER_NAMES = {"onnxruntime": "onnxruntime's order", "file": "file order", "memory-aware": "memory-aware order"}
PLAN_WHY = "it keeps a dead buffer until a later tensor of the same shape takes it"
SHOWN_BATCH = 32  # the larger batch the reports give the peak at, beside batch 1
TOP_BLOCKS = 5  # blocks a report lists by their peak live bytes

_UNITS = ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))


def binary(n: int) -> str:
    """Bytes in binary units, about three significant digits: 10,340,352 → "9.86 MiB"; under
    1 KiB, the bytes ("512 bytes")."""
    for size, unit in _UNITS:
        if n >= size:
            x = n / size
            return f"{x:,.0f} {unit}" if x >= 100 else f"{x:.1f} {unit}" if x >= 10 else f"{x:.2f} {unit}"
    return f"{n:,} bytes"


def size_text(n: int) -> str:
    """The exact bytes, then in binary units from 1 KiB on: "10,340,352 bytes (9.86 MiB)"."""
    return f"{n:,} bytes" + (f" ({binary(n)})" if n >= 2**10 else "")


def saving_text(d: int, fraction: float) -> str:
    """"1,024 bytes (1.00 KiB, 16.7%)": bytes saved, and their share of the peak saved on."""
    return f"{d:,} bytes (" + (f"{binary(d)}, " if d >= 2**10 else "") + f"{fraction:.1%})"


def group_of(a: Analysis, key: str) -> dict[str, str]:
    """Op node → its layer, block or op type (`key`: an OpCost field)."""
    return {o.node: getattr(o, key) for o in a.costs.ops}


def peaks_by(a: Analysis, key: str) -> dict[str, int]:
    """Layer, block or op type → the highest live bytes while its ops run in onnxruntime's order
    (a group none of whose ops runs as a step of the main graph is absent); {} without a plan."""
    rt = a.memory.runtime if a.memory is not None else None
    return group_peaks(rt, group_of(a, key)) if rt is not None else {}


def top_blocks(a: Analysis, k: int = TOP_BLOCKS) -> list[tuple[str, int]]:
    """The `k` blocks with the highest peak live bytes in onnxruntime's order, highest first
    (ties: the first to run)."""
    peaks = peaks_by(a, "block")
    return sorted(peaks.items(), key=lambda kv: -kv[1])[:k]


def batch_dim(c) -> str | None:
    """The free dim of the inputs' leading axis, by the name the formulas give it (an unnamed
    one is `input:0`); None when the batch is fixed or the inputs' leading dims differ."""
    names = {n if n is not None else f"{i}:0" for i, axes in c.fixed_dims.items() for ax, n in axes.items() if ax == 0}
    return next(iter(names)) if len(names) == 1 else None


def batch_peaks(a: Analysis, batches: Sequence[int] = (1, SHOWN_BATCH)) -> tuple[dict[int, int | None], str | None,
                                                                                 str | None]:
    """The peak live bytes in onnxruntime's order at each batch: (batch → bytes, None where not
    known; the batch dim; why a value is missing, or which other free dims the values are at).
    At a free batch the value is the peak's formula there (other free dims at 1); with the
    batch fixed, only that batch is known."""
    m = a.memory
    rt = m.runtime if m is not None else None
    if rt is None:
        return dict.fromkeys(batches), None, "no memory plan"
    c = a.costs
    dim = batch_dim(c) if c.per_sample else None
    peak = rt.peak
    if dim is None:
        b = c.batch
        leading = sorted({n or f"{i}:0" for i, axes in c.fixed_dims.items() for ax, n in axes.items() if ax == 0})
        if len(leading) > 1:
            why = f"the inputs' leading dims are different free dims ({', '.join(leading)}): no one batch to set"
        elif b is None:
            why = "the inputs share no leading dimension (no batch)"
        else:
            why = f"the inputs' batch is fixed at {b:,}" + (" (the free dims at 1)" if c.per_sample else "")
        return {k: peak.bytes if k == b else None for k in batches}, None, why if any(k != b for k in batches) else None
    f = peak.formula
    if f is None:
        why = peak.why_no_formula or c.no_formulas or "none was found"
        return {k: peak.bytes if k == 1 else None for k in batches}, dim, f"no formula for the peak: {why}"
    others = sorted(f.atoms - {dim}) if is_expr(f) else []
    point = dict.fromkeys(others, 1)
    note = f"other free dims at 1: {', '.join(others)}" if others else None
    return {k: value(f, {**point, dim: k}) for k in batches}, dim, note


def _where(node: str, blocks: Mapping[str, str]) -> str:
    """` at op `n` (block b)` in markdown."""
    b = blocks.get(node)
    return f" at op {md_code(node, table=False)}" + (f" (block {md(b)})" if b is not None and b != node else "")


def lines(a: Analysis) -> list[str]:
    """The memory facts of `archkit analyse`, one a line (markdown; names escaped)."""
    m = a.memory
    if m is None:
        return []
    blocks = group_of(a, "block") if a.costs.scoped else {}
    out = [(f"memory apart from activations: weights {size_text(m.weights)}; inputs {size_text(m.inputs)}; "
            f"outputs {size_text(m.outputs)}"),
           (f"activations: {size_text(m.activations)} in {m.tensors:,} tensor{'s' * (m.tensors != 1)}, each once "
           f"({m.buffers:,} buffer{'s' * (m.buffers != 1)}: an in-place op writes into its input's)")]
    shown = _formulas(m, md)
    if shown:
        out.append("memory in the free dims: " + "; ".join(f"{k} = {v}" for k, v in shown.items()) + " bytes")
    for name in ORDERS:
        s = m.schedules.get(name)
        if s is None:
            continue
        p = s.peak
        line = f"peak live memory ({ORDER_NAMES[name]}): {size_text(p.bytes)}"
        line += _where(p.node, blocks) if s.steps else " (no op runs)"
        if is_expr(p.formula):
            line += f" = {pretty(p.formula, md)}"
        elif p.why_no_formula:
            line += f"; no formula in the free dims: {p.why_no_formula}"
        out.append(line)
    rt = m.runtime
    plan = rt.planned if rt is not None else None
    if rt is not None and plan is not None and rt.steps:
        out.append(f"onnxruntime's allocation plan holds {size_text(plan.peak)} at its peak ({PLAN_WHY}):"
                   f"{_where(plan.node, blocks)}; {plan.buffers:,} buffers, {plan.reused:,} tensors reuse a dead one")
    saving, aware = m.saving(), m.schedules.get("memory-aware")
    if saving is not None and aware is not None:
        d, fraction = saving
        out.append(f"memory-aware order ({aware.how}): its peak "
                   + (f"is {saving_text(d, fraction)} below the file order's" if d else "equals the file order's"))
    if not m.complete:
        out.append(f"memory figures are lower bounds: {len(m.unknown):,} tensor{'s' * (len(m.unknown) != 1)} of unknown "
                   f"size counted as 0, e.g. {', '.join(md_code(t, table=False) for t in m.unknown[:3])}")
    if a.costs.subgraphs:
        out.append("memory inside the bodies of If, Loop and Scan ops is not counted (each op reads what its bodies read)")
    return out


def _formulas(m: Memory, name=str) -> dict[str, str]:
    """The memory totals that depend on free dims, as text (`name` renders a dim's name)."""
    return {k: pretty(v, name) for k, v in (m.formulas or {}).items() if is_expr(v)}


def _peak_json(s: Schedule, blocks: Mapping[str, str]) -> dict[str, Any]:
    p = s.peak
    return {"bytes": p.bytes, "activations": p.activations, "outputs": p.outputs, "step": p.step,
            "op": p.node or None, "block": blocks.get(p.node),
            "formula": pretty(p.formula) if is_expr(p.formula) else None, "why_no_formula": p.why_no_formula,
            "live": [{"tensor": t.tensor, "bytes": t.bytes, "kind": t.kind, "op": t.node} for t in p.live]}


def to_json(a: Analysis) -> dict[str, Any] | None:
    """The "memory" object of analyse's JSON and of summary.json: archkit's figures (bytes, ops,
    blocks, formulas as text), None without a plan."""
    m = a.memory
    if m is None:
        return None
    blocks = group_of(a, "block")
    rt = m.runtime
    plan = rt.planned if rt is not None else None
    saving = m.saving()
    peaks, dim, note = batch_peaks(a)
    return {
        "weights": m.weights, "inputs": m.inputs, "outputs": m.outputs, "activations": m.activations,
        "activation_tensors": m.tensors, "activation_buffers": m.buffers, "complete": m.complete, "unknown_size_tensors": list(m.unknown),
        "formulas": _formulas(m) or None,
        "orders": {name: {"how": s.how, "steps": len(s.steps), "peak": _peak_json(s, blocks)}
                   for name in ORDERS if (s := m.schedules.get(name)) is not None},
        "onnxruntime_plan": None if plan is None else {"peak": plan.peak, "step": plan.step, "op": plan.node or None,
                                                       "block": blocks.get(plan.node), "buffers": plan.buffers,
                                                       "reused": plan.reused},
        "memory_aware_saving": None if saving is None else {"bytes": saving[0], "fraction": round(saving[1], 4)},
        "top_blocks": [{"block": b, "peak_bytes": v} for b, v in top_blocks(a)],
        "peak_by_batch": {"dim": dim, **{str(k): v for k, v in peaks.items()}, "note": note},
    }


# --- memory.png ---------------------------------------------------------------------------------

DPI = 80
LABEL_PT = 7  # block labels
_TRACK_IN = 1.3  # inches of the strip under the curves that names the blocks
_COLORS = {"onnxruntime": "#4472c4", "plan": "#7f7f7f", "file": "#ed7d31", "memory-aware": "#70ad47"}
_BANDS = ("#f2f2f2", "#e9eef6")


def _runs(steps: Sequence[str], group: Mapping[str, str]) -> list[tuple[int, int, str]]:
    """(first step, last step, block) of each run of consecutive steps in one block."""
    out: list[tuple[int, int, str]] = []
    for k, nid in enumerate(steps):
        g = group.get(nid, nid)
        if out and out[-1][2] == g:
            out[-1] = (out[-1][0], k, g)
        else:
            out.append((k, k, g))
    return out


def _short(s: str, chars: int) -> str:
    """A name for a picture in at most `chars` characters (escaped for matplotlib)."""
    shown = esc.name(s, None)
    return esc.plot(shown if len(shown) <= chars else shown[:max(chars - 1, 1)] + "…", None)


def chart(a: Analysis) -> bytes:
    """PNG: the live bytes (activations and graph outputs) during each step of onnxruntime's order,
    its peak marked and annotated, with what its allocation plan holds and the file's and the
    memory-aware order's curves (each along its own steps) as thinner lines; a strip beneath
    shades the blocks' runs of steps in alternating bands and names those with room."""
    import matplotlib  # heavy: only the png format draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: as matplotlib

    m = a.memory
    rt = m.runtime if m is not None else None
    n = len(rt.steps) if rt is not None else 0
    scoped = a.costs.scoped and n > 0
    width, height = 10.0, 4.2 + (_TRACK_IN if scoped else 0.0)
    if scoped:
        fig, (ax, track) = plt.subplots(2, 1, figsize=(width, height), sharex=True,
                                        gridspec_kw={"height_ratios": [4.2, _TRACK_IN]})
    else:
        fig, ax = plt.subplots(figsize=(width, height))
        track = None
    if rt is None or n == 0:
        ax.text(0.5, 0.5, "no op runs in the main graph: no live memory to draw", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
        ax.axis("off")
        ax.set_title(f"{esc.plot(a.name)}: live memory", fontsize=10)
        return png_bytes(fig, dpi=DPI)

    plan = rt.planned
    others = [m.schedules[k] for k in ("file", "memory-aware") if k in m.schedules]
    # scaled to onnxruntime's curves: another order peaking far higher runs off the top, said in its label
    top = max([max(rt.curve)] + ([max(plan.curve)] if plan is not None else []))
    ceiling = max(top * 1.6, 1)  # head room above the peak for the legend
    size, unit = next(((s, u) for s, u in _UNITS if top >= s), (1, "bytes"))
    x = range(n)

    def scaled(curve) -> list[float]:
        return [v / size for v in curve]

    if scoped:
        runs = _runs(rt.steps, group_of(a, "block"))
        for i, (s0, s1, _) in enumerate(runs):
            for target in (ax, track):
                target.axvspan(s0 - 0.5, s1 + 0.5, color=_BANDS[i % 2], lw=0, zorder=0)
    for s in reversed(others):  # under onnxruntime's: where they agree, its line shows
        same = s.curve == rt.curve
        label = (f"{ORDER_NAMES[s.name]} (along its own steps): peak {binary(s.peak.bytes)}"
                 + (", the same curve" if same else ", off the top" if s.peak.bytes > ceiling else ""))
        ax.plot(x, scaled(s.curve), drawstyle="steps-mid", lw=0.8, color=_COLORS[s.name], alpha=0.9, zorder=2,
                label=label, linestyle="--" if s.name == "file" else "-")
    if plan is not None:
        ax.plot(x, scaled(plan.curve), drawstyle="steps-mid", lw=0.9, color=_COLORS["plan"], linestyle=":", zorder=3,
                label=f"onnxruntime's allocation plan (held): peak {binary(plan.peak)}")
    ax.plot(x, scaled(rt.curve), drawstyle="steps-mid", lw=1.6, color=_COLORS["onnxruntime"], zorder=4,
            label="onnxruntime's order: live activations and graph outputs")
    p = rt.peak
    ax.plot([p.step], [p.bytes / size], "o", color="#c00000", markersize=5, zorder=5)
    blocks = group_of(a, "block") if a.costs.scoped else {}
    where = _short(p.node, 60) + (f" (block {_short(blocks[p.node], 40)})" if blocks.get(p.node, p.node) != p.node
                                  else "")
    left = p.step < n / 2
    ax.annotate(f"peak {binary(p.bytes)} ({p.bytes:,} bytes)\nat step {p.step:,}: {where}", xy=(p.step, p.bytes / size),
                xytext=(12 if left else -12, 0), textcoords="offset points", ha="left" if left else "right",
                va="center", fontsize=8, color="#c00000", zorder=6,
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(0, ceiling / size)
    ax.set_ylabel(f"live bytes ({unit})" if unit != "bytes" else "live bytes")
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()  # onnxruntime's first: drawn last, on top
    ax.legend(handles[::-1], labels[::-1], fontsize=7, loc="upper center", ncol=2, framealpha=0.9)
    per = " per sample" if a.costs.per_sample else f" at batch {a.costs.batch:,}" if a.costs.batch is not None else ""
    ax.set_title(f"{esc.plot(a.name)}: live memory{per} along onnxruntime's order ({n:,} ops), peak {binary(p.bytes)}",
                 fontsize=10)
    last = track if track is not None else ax
    last.set_xlabel("step of onnxruntime's order (one op each)")
    if track is not None:
        ax.tick_params(labelbottom=False)
        track.set_yticks([])
        track.set_ylim(0, 1)
        track.set_ylabel("blocks", fontsize=8)
        fig.tight_layout(h_pad=0.2)
        _label_runs(fig, track, runs, n)
    else:
        fig.tight_layout()
    return png_bytes(fig, dpi=DPI)


def _label_runs(fig, track, runs: list[tuple[int, int, str]], n: int) -> None:
    """Name each run of a block in the strip where it has room: across the band when the name
    fits, else upright; none where the band is narrower than a line of text or the last name
    is too close."""
    box = track.get_position()
    step_px = box.width * fig.get_figwidth() * DPI / n
    strip_px = box.height * fig.get_figheight() * DPI
    char_px = 0.6 * LABEL_PT * DPI / 72
    line_px = 1.3 * LABEL_PT * DPI / 72
    upright = max(int(0.9 * strip_px / char_px), 4)
    last = -float("inf")
    for s0, s1, block in runs:
        band = (s1 - s0 + 1) * step_px
        centre = (s0 + s1) / 2
        across = esc.name(block, None)
        if len(across) * char_px + 4 <= band:
            half = len(across) * char_px / 2
            if centre * step_px - half < last:
                continue
            track.text(centre, 0.5, _short(block, len(across)), ha="center", va="center", fontsize=LABEL_PT,
                       color="#595959")
            last = centre * step_px + half + 2
        elif band >= line_px and centre * step_px - line_px / 2 >= last:
            track.text(centre, 0.5, _short(block, upright), ha="center", va="center", rotation=90, fontsize=LABEL_PT,
                       color="#595959")
            last = centre * step_px + line_px / 2 + 1
