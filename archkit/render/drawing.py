"""Renderers for archkit.connectivity: markdown, CSV, DOT and PNG. Pure: data in, bytes or text out.

Drawings need no graphviz binary: the layer (or block) graph is laid out in rows by
networkx.topological_generations, nodes ordered in each row by the mean position of their
predecessors, and drawn with matplotlib's Agg backend. The DOT file always holds the full layer
graph with each block as a cluster; the PNG shows layers for small networks and blocks where a
layer-level picture would be unreadable (more than LAYER_LIMIT layers), its first MAX_ROWS rows
at most, with labels of at least 10 px and a legend of what the colours and arrows mean.
Everything is deterministic (no timestamps in the PNG metadata).

Layer, block and op names come from the model and are untrusted: each is passed through the
archkit.render.escape function of the output it lands in (markdown tables escape plain str cells
themselves; text archkit composes around escaped names is escape.Markdown).
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np

from archkit.connectivity import Connectivity, DenseBlock, ReceptiveField
from archkit.io import png_bytes
from archkit.render import escape as esc
from archkit.render.escape import Markdown, md, md_code

__all__ = [
    "DPI",
    "LAYER_LIMIT",
    "MAX_ROWS",
    "csv",
    "dense_png",
    "dot",
    "figure",
    "files",
    "markdown",
    "png",
    "text",
    "unknowns",
]

LAYER_LIMIT = 100  # layers up to which the PNG is drawn layer by layer
MAX_ROWS = 50  # rows of a drawing (topological generations); later rows are left to connectivity.dot
DPI = 100
LABEL_PT = 8  # node labels: 8 pt at 100 dpi is 11 px
ROW_IN = 0.65  # inches from one row of nodes to the next

_COLORS = {"input": "#ffffff", "output": "#ffffff", "weighted": "#9dc3e6", "merge": "#f4b183", "pool": "#a9d18e",
           "other": "#e7e6e6", "block": "#dae3f3"}


def files(conn: Connectivity, name: str, formats: Iterable[str]) -> dict[str, bytes]:
    """The connectivity files of one report folder (see archkit.render.report.render)."""
    formats = set(formats)
    out: dict[str, bytes] = {}
    if "csv" in formats:
        out["connectivity.csv"] = csv(conn)
    if "png" in formats:  # the drawing, and its source for graphviz
        out["connectivity.dot"] = dot(conn, name).encode()
        out["connectivity.png"] = png(conn, name)
        if conn.dense_blocks:
            out["dense_blocks.png"] = dense_png(conn, name)
    return out


# --- text -----------------------------------------------------------------------------------

def csv(conn: Connectivity) -> bytes:
    df = conn.to_frame()
    if any(esc.name(p) != p for l in conn.layers for p in l.predecessors):  # each name cut on its own, not the list
        df["predecessors"] = [" ".join(esc.name(p) for p in l.predecessors) for l in conn.layers]
    buf = io.StringIO()
    esc.csv_frame(df, limits={"predecessors": None}).to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode()


def _table(header: Sequence[str], rows: Iterable[Sequence], align: str | None = None) -> list[str]:
    align = align or "l" * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_cell(c) for c in r) + " |")
    return lines


def _cell(c) -> str:
    if isinstance(c, Markdown):
        return c
    return f"{c:,}" if isinstance(c, int) and not isinstance(c, bool) else md(str(c))


def _rf(rf: ReceptiveField | None) -> str:
    return "" if rf is None else rf.text


def _short(name: str, block: str) -> str:
    """A layer's name without its block's prefix (`inception_3a_b2_3x3` in block inception_3a → `b2_3x3`)."""
    if name.startswith(block + "_") and len(name) > len(block) + 1:
        return name[len(block) + 1:]
    return name


def _pct(x: float | None) -> str:
    return "unknown" if x is None else f"{100 * x:.1f}%"


# --- what could not be computed ---------------------------------------------------------------

def _shapes_why(conn: Connectivity, show=esc.name) -> str:
    n = len(conn.shapes_unknown)
    return f"shapes of {n:,} op{'s' * (n != 1)} not inferred, e.g. {show(conn.shapes_unknown[0])}" if n else ""


def _macs_why(conn: Connectivity, show=esc.name) -> str:
    n = len(conn.macs_unknown)
    return f"MACs of {n:,} op{'s' * (n != 1)} not known, e.g. {show(conn.macs_unknown[0])}"


def _field_why(conn: Connectivity, show=esc.name) -> str:
    """Why the network's receptive field is unknown."""
    layer = conn.layer(conn.final_unknown)
    parts = [f"the field is not known at {show(layer.name)}" if layer.field_unknown else
             f"the spatial size of {show(layer.name)}'s output is not known"]
    if conn.free_spatial_dims:
        dims = ", ".join(show(d) for d in conn.free_spatial_dims)
        parts.append(f"the input's spatial dims {dims} are free (fix them with --input-shape)")
    if conn.shapes_unknown:
        parts.append(_shapes_why(conn, show))
    return "; ".join(parts)


def unknowns(conn: Connectivity, show=esc.name) -> list[str]:
    """What connectivity could not compute, one line each (empty when every figure is known): the
    CLI's warnings and the notes of the text and markdown. `show` renders a name (escape.name for
    the terminal, escape.md_code for markdown)."""
    out = []
    layers = [l for l in conn.layers if l.field_unknown]
    partial = [l for l in conn.layers if l.receptive_field is not None and not l.receptive_field.complete]
    if conn.final_unknown is not None:
        out.append(f"the network's receptive field is unknown: {_field_why(conn, show)}")
    if layers or partial:
        what = ", ".join(x for x in (f"unknown at {len(layers):,} layers" if layers else "",
                                     f"in part unknown (size, stride or padding) at {len(partial):,}" if partial else "")
                         if x)
        first = f" (from {show(conn.rf_unknown_at[0])} on)" if conn.rf_unknown_at else ""
        out.append(f"receptive fields {what}{first}" + (f": {_shapes_why(conn, show)}" if conn.shapes_unknown else ""))
    pairs = sum(f.macs is None for f in conn.fork_joins)
    if conn.free_spatial_dims and conn.fork_joins:
        dims = ", ".join(show(d) for d in conn.free_spatial_dims)
        out.append(f"MAC shares are those at {dims} = 1, the free dims' value for inference (fix them with --input-shape)")
    if conn.macs_unknown:
        out.append(f"{_macs_why(conn, show)} (no cost rule, or shape not inferred): "
                   + (f"MAC shares of {pairs:,} of {len(conn.fork_joins):,} fork/join pairs unknown, "
                      if pairs else "")
                   + "per-layer MACs unknown where they lie")
    cats = sum(c.sources is None for c in conn.concats)
    readers = sum(not d.targets_known for d in conn.dense_blocks)
    if conn.provenance_unknown_at and (cats or readers):  # else no figure needs it
        out.append(f"channel provenance lost from {show(conn.provenance_unknown_at[0])} on "
                   f"({_shapes_why(conn, show) or 'shapes not inferred'}): "
                   + (f"the layers {cats:,} concatenations carry are unknown, and dense blocks may be missing or "
                      "shorter" if cats else "")
                   + ("; " if cats and readers else "")
                   + (f"the layers reading {readers:,} dense blocks are unknown" if readers else ""))
    if conn.kernels_unknown:
        n = len(conn.kernels_unknown)
        out.append(f"kernel sizes of {n:,} conv layer{'s' * (n != 1)} not known, e.g. {show(conn.kernels_unknown[0])}: "
                   "kernel stacks through them are left out")
    return out


def markdown(conn: Connectivity, name: str, *, images: bool = True, published: Sequence = ()) -> str:
    """The "Connectivity" section of a report README. `published`: receptive fields published for
    the same network (architectures.PublishedField: layer, model, end_point, size, stride, padding,
    note), set beside the fields measured at the same layers."""
    s = conn.summary()
    rf = conn.final_rf
    level = "layers" if _layer_level(conn) else "blocks"
    out = ["## Connectivity", "",
           (f"Measured on the ONNX graph with its ops collapsed to layers (and to blocks): {s['layers']:,} layers, "
           "weighted layers being those with a constant conv/dense kernel. A fork/join pair is a layer where paths "
           "meet and the layer every path to it passes through (its immediate dominator). Receptive fields follow "
           "Araujo et al. (2019) over all paths: size / effective stride, effective padding, per spatial axis "
           "(one number when height and width agree)."), ""]
    rows = [
        ("depth", f"{conn.depth} weighted layers on the longest input→output path"),
        ("weighted layers", f"{conn.weighted_layers:,}"),
        ("parallel paths", f"at most {conn.max_parallel_paths} between a fork and its join"),
        ("fork/join pairs", f"{len(conn.fork_joins)}"),
        ("residual Adds", f"{len(conn.residuals)}" + (f" ({s['projection_shortcuts']} with a projection shortcut)"
                                                      if conn.residuals else "")),
        ("concatenations", f"{len(conn.concats)}"),
    ]
    if conn.dense_blocks:
        rows.append(("dense blocks", Markdown(", ".join(f"{md(d.name)}: {d.layers} layers" for d in conn.dense_blocks))))
    if rf:
        field = Markdown(f"{md_code(conn.final_layer)}: {md(_rf(rf))}")
    elif conn.final_unknown is not None:
        field = Markdown(f"unknown ({_field_why(conn, md_code)})")
    else:
        field = "no spatial layer"
    rows.append(("receptive field", field))
    out += _table(("", ""), rows) + [""]
    notes = unknowns(conn, _code)
    if notes:
        out += ["**Not computed** (a figure that needs what is not known is given as unknown, never as a guess):", ""]
        out += [f"- {n}" for n in notes] + [""]
    if images:
        hidden_rows, _ = _hidden_rows(_picture(conn)[0])
        out += [f"![{md(name)}: the wiring, one node per {level[:-1]}](connectivity.png)", "",
                f"Drawn {'layer by layer' if level == 'layers' else 'block by block'}"
                + (f" (its first {MAX_ROWS} rows; {hidden_rows:,} more rows are left out)" if hidden_rows else "")
                + "; `connectivity.dot` holds every layer with blocks as clusters (render with "
                "`dot -Tsvg connectivity.dot`). Per-layer figures: `connectivity.csv`.", ""]

    if conn.fork_joins:
        out += ["### Parallel branches", "",
                ("Every fork/join pair; each branch with its weighted layers (longest path) and its share of the "
                "MACs of all the pair's branches."), ""]
        rows = []
        for f in conn.fork_joins:
            parts = []
            for b in f.branches:
                if not b.layers:
                    parts.append("identity")
                    continue
                label = " → ".join(md(_short(l, f.block)) for l in b.layers if conn.layer(l).weighted) or \
                    " → ".join(md(_short(l, f.block)) for l in b.layers)
                parts.append(f"{label} ({b.weighted}, {_pct(b.share)})")
            rows.append((md_code(f.join), f.block, md_code(f.fork), len(f.branches), f.paths,
                         "unknown" if f.macs is None else f.macs, Markdown("; ".join(parts))))
        out += _table(("join", "block", "fork", "branches", "paths", "MACs", "branches: weighted layers, MAC share"),
                      rows, "lllrrrl") + [""]

    if conn.residuals:
        out += ["### Skip connections", "",
                ("Every Add of two computed tensors from different layers: the span is the number of weighted layers "
                "on the longer branch (what the shortcut skips); a projection shortcut carries weighted layers of its "
                "own."), ""]
        out += _table(("Add", "block", "fork", "span", "shortcut"),
                      [(md_code(r.layer), r.block, md_code(r.fork), r.span,
                        Markdown("projection: " + ", ".join(md_code(l) for l in r.shortcut)) if r.projection else "identity")
                       for r in conn.residuals], "lllrl") + [""]

    if conn.concats:
        out += ["### Concatenations", "",
                ("Per Concat: the tensors it joins, and the earlier layers whose features (channels) its output "
                "carries, followed back through elementwise ops, pooling, transposes and reshapes."), ""]
        out += _table(("Concat", "block", "inputs", "layers carried", "from"),
                      [(md_code(c.layer), c.block, c.inputs, "unknown" if c.sources is None else len(c.sources),
                        "" if c.sources is None else _few(c.sources)) for c in conn.concats], "llrrl") + [""]

    if conn.dense_blocks:
        out += ["### Dense blocks", "",
                "Chains of concatenations, each feeding the next. Row s of a block's matrix is a source (s = 0: the "
                "block's input; s = i: the features dense layer i adds), column ℓ a weighted layer that reads them "
                "(the first conv of dense layer ℓ, then what reads the block's output): the DenseNet paper's Figure 5. "
                + ("No weights were read (archkit's own exports are untrained, and a file may not store them, or "
                   "its channel counts may not be inferred), so the drawing shows structure: which sources each layer "
                   "reads." if not any(d.mean_abs_weight for d in conn.dense_blocks) else
                   "Cells hold the mean absolute kernel weight per input map from each source."), ""]
        if images:
            out += [f"![{md(name)}: dense-block connectivity](dense_blocks.png)", ""]
        out += _table(("block", "layers", "sources", "fan-in per layer (earlier layers read)", "output read by"),
                      [(d.name, d.layers, len(d.sources), _fan_in(d),
                        Markdown(", ".join(md_code(t) for t in d.targets[d.layers:])) if d.targets_known else "unknown")
                       for d in conn.dense_blocks], "lrrll") + [""]

    out += ["### Receptive field", ""]
    if conn.stacks:
        groups: dict = defaultdict(list)
        for st in conn.stacks:
            groups[(st.kernels, st.strides, st.field)].append(st)
        out += ["Stacked convolutions (nothing spatial between them) and the field they reach together:", ""]
        for sts in groups.values():
            first = sts[0]
            more = f" and {len(sts) - 1} more" if len(sts) > 1 else ""
            out += [f"- {first.text}: {' → '.join(md_code(l, table=False) for l in first.layers)}{more}"]
        out += [""]
    rows = []
    ends = _block_ends(conn)
    for block, layer in ends:
        rf = layer.receptive_field or ReceptiveField((None,), (None,), (None,), None)  # field_unknown
        rows.append((block, md_code(layer.name), _spatial_shape(layer) or "unknown", _xy(rf.size), _xy(rf.stride),
                     _xy(rf.padding), "yes" if rf.aligned else "unknown" if rf.aligned is None else Markdown("**no**")))
    if rows:
        two = all(len(l.spatial_axes) == 2 for _, l in ends if not l.field_unknown)
        layout = "height x width x channels" if two else "spatial dimensions, then channels"
        out += [(f"At the last layer of each block (every layer's in `connectivity.csv`). Outputs are {layout}, "
                "batch left out, whatever the ONNX graph's layout (`connectivity.csv` keeps the graph's own):"), ""]
        out += _table(("block", "layer", "output (HxWxC)" if two else "output (spatial x C)", "size",
                       "effective stride", "effective padding", "aligned"), rows, "lllrrrl") + [""]
    if conn.rf_unsupported:
        out += [f"Receptive fields stop at ops archkit cannot follow: {', '.join(md(o) for o in conn.rf_unsupported)}.", ""]
    if published:
        out += ["Beside the published figures (google-research/receptive_field, TF-slim models at 224x224):", ""]
        rows = []
        for p in published:
            try:
                layer = conn.layer(p.layer)
            except KeyError:
                layer = None
            rf = layer.receptive_field if layer else None
            if layer is not None and (layer.field_unknown or rf is not None and None in rf.size + rf.stride):
                verdict = "unknown"
            elif rf is None:
                verdict = Markdown("**not found**")
            elif (rf.size[0], rf.stride[0]) == (p.size, p.stride):
                verdict = "same size and stride"
            elif rf.size[0] == p.size:
                verdict = "same size, other stride (see below)"
            else:
                verdict = "differs (see below)" if p.note else Markdown("**differs**")
            rows.append((Markdown(f"{p.model} `{p.end_point}`"), f"{p.size} / {p.stride}, padding {p.padding}",
                         Markdown(f"`{p.layer}`"), _rf(rf) if rf else "", verdict))
        out += _table(("published (TF-slim)", "size / stride, padding", "archkit layer", "counted", ""), rows) + [""]
        notes = list(dict.fromkeys(p.note for p in published if p.note))
        out += [f"- {n}" for n in notes] + ([""] if notes else [])
    return "\n".join(out).rstrip("\n")


def _spatial_shape(layer) -> str:
    """A layer's output as spatial dims then channels, batch left out (`1x8x26x26` NCHW and
    `1x7x7x16` NHWC become `26x26x8` and `7x7x16`); as the graph has it where that reading fails."""
    dims = layer.output_shape.split("x") if layer.output_shape else []
    spatial = layer.spatial_axes
    rest = [i for i in range(1, len(dims)) if i not in spatial]
    if not spatial or 0 in spatial or len(rest) != 1:
        return layer.output_shape
    return "x".join([dims[i] for i in spatial] + [dims[rest[0]]])


def _xy(v) -> str:
    if all(x is None for x in v):
        return "unknown"
    return str(v[0]) if len(set(v)) == 1 else "x".join("?" if x is None else str(x) for x in v)


def _code(name: str) -> Markdown:
    return md_code(name, table=False)


def _few(names: Sequence[str], n: int = 4) -> Markdown:
    shown = ", ".join(md_code(x) for x in names[:n])
    return Markdown(shown + (f" … ({len(names) - n} more)" if len(names) > n else ""))


def _fan_in(d: DenseBlock) -> str:
    if not d.targets_known:
        return "unknown (channel provenance not inferred)"
    f = list(d.fan_in)
    inner, outer = f[:d.layers], f[d.layers:]
    text = ", ".join(map(str, inner)) if len(inner) <= 8 else \
        f"{', '.join(map(str, inner[:3]))}, …, {', '.join(map(str, inner[-2:]))}"
    return text + (f"; then {', '.join(map(str, outer))}" if outer else "")


def _block_ends(conn: Connectivity):
    last = {}
    for l in conn.layers:
        if (l.receptive_field is not None or l.field_unknown) and l.kind not in ("input", "output"):
            last[l.block] = l
    order = list(dict.fromkeys(l.block for l in conn.layers))
    return [(b, last[b]) for b in order if b in last]


# --- DOT ------------------------------------------------------------------------------------

def _q(s: str) -> str:
    """A DOT quoted string: backslash, quote and line breaks escaped (so `\\N`, `\\G`, `\\l` stay
    literal); the names in `s` are already shown with escape.name."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def _id(s: str) -> str:
    """A DOT node ID for a layer name: the name itself, or where escape.name changes it (cut or
    escaped), the shown name and a hash of the full one, so two layers never share an ID."""
    shown = esc.name(s)
    if shown == s:
        return _q(s)
    return _q(f"{shown} #{hashlib.sha256(s.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}")


def _label(conn: Connectivity, layer, show=esc.name) -> str:
    """A node's label: its name (shown with `show`, one of archkit.render.escape's), then its shape or kernel."""
    if layer.kind in ("input", "output"):
        return f"{show(layer.name.split(':', 1)[1])}\n{show(layer.output_shape)}"
    text = show(layer.name)
    if layer.kernel:
        text += "\n" + "x".join(map(str, layer.kernel)) + ("/" + _xy(layer.stride) if layer.stride and max(layer.stride) > 1 else "")
    return text


def dot(conn: Connectivity, name: str) -> str:
    lines = [f"digraph {_q(esc.name(name))} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [color="#555555", arrowsize=0.6];']
    by_block: dict[str, list] = defaultdict(list)
    for l in conn.layers:
        by_block[l.block].append(l)
    for i, (block, layers) in enumerate(by_block.items()):
        cluster = len(layers) > 1 or layers[0].name != block
        indent = "    " if cluster else "  "
        if cluster:
            lines += [f"  subgraph {_q(f'cluster_{i}')} {{", f"    label={_q(esc.name(block))};",
                      '    style="rounded,filled"; fillcolor="#f2f2f2"; color="#bfbfbf";']
        for l in layers:
            lines.append(f"{indent}{_id(l.name)} [label={_q(_label(conn, l))}, fillcolor={_q(_COLORS[l.kind])}];")
        if cluster:
            lines.append("  }")
    for l in conn.layers:
        for p in l.predecessors:
            lines.append(f"  {_id(p)} -> {_id(l.name)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- PNG ------------------------------------------------------------------------------------

def _layer_level(conn: Connectivity) -> bool:
    """Layer by layer for small networks, and where blocks are no fewer than layers (a file without
    scopes): a block picture would then show the same nodes without their kinds."""
    layers = sum(1 for l in conn.layers if l.kind not in ("input", "output"))
    return layers <= LAYER_LIMIT or len(conn.blocks) >= len(conn.layers)


def _layout(g: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Rows by topological generation; in each row, nodes ordered by the mean x of their
    predecessors (ties by name: exporters' op order is arbitrary, names follow the paper's
    branch order) and spread one unit apart around it."""
    pos: dict[str, tuple[float, float]] = {}
    for y, gen in enumerate(nx.topological_generations(g)):
        want = {}
        for n in gen:
            xs = [pos[p][0] for p in g.predecessors(n) if p in pos]
            want[n] = sum(xs) / len(xs) if xs else 0.0
        nodes = sorted(gen, key=lambda n: (want[n], n))
        placed = []
        for n in nodes:
            x = want[n] if not placed else max(want[n], placed[-1] + 1.0)
            placed.append(x)
        shift = sum(want[n] for n in nodes) / len(nodes) - sum(placed) / len(placed)
        for n, x in zip(nodes, placed):
            pos[n] = (x + shift, -float(y))
    return pos


def png(conn: Connectivity, name: str) -> bytes:
    return png_bytes(figure(conn, name), dpi=DPI)


def figure(conn: Connectivity, name: str):
    """The wiring drawing as a matplotlib figure (png() renders it at DPI)."""
    g, labels, colors, groups, unit = _picture(conn)
    if unit == "layers":
        title = (f"{esc.plot(name)}: {conn.summary()['layers']:,} layers, depth {conn.depth} (weighted layers)"
                 + (", blocks shaded" if len(conn.blocks) < len(conn.layers) else ""))
    else:
        blocks = sum(1 for n in g if not n.startswith(("input:", "output:")))
        title = f"{esc.plot(name)}: {blocks:,} blocks (layer-level graph in connectivity.dot), depth {conn.depth}"
    return _figure(g, labels, colors, groups, title, unit)


def _picture(conn: Connectivity):
    """The graph the PNG draws, its labels, colours, block of each node (layer level) and unit."""
    if _layer_level(conn):
        g = conn.layer_graph()
        info = {l.name: l for l in conn.layers}
        labels = {n: _label(conn, info[n], esc.plot) for n in g}
        colors = {n: _COLORS[info[n].kind] for n in g}
        return g, labels, colors, {n: info[n].block for n in g}, "layers"
    g = _block_graph(conn)
    colors = {n: _COLORS["input" if n.startswith(("input:", "output:")) else "block"] for n in g}
    return g, _block_labels(conn, g), colors, None, "blocks"


def _hidden_rows(g: nx.DiGraph) -> tuple[int, int]:
    """(rows, nodes) a drawing leaves out: those after MAX_ROWS."""
    gens = list(nx.topological_generations(g))
    return max(0, len(gens) - MAX_ROWS), sum(len(x) for x in gens[MAX_ROWS:])


def _block_graph(conn: Connectivity) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(conn.blocks)
    g.add_edges_from(conn.block_edges)
    return g


def _block_labels(conn: Connectivity, g: nx.DiGraph) -> dict[str, str]:
    layers: dict[str, list] = defaultdict(list)
    for l in conn.layers:
        layers[l.block].append(l)
    joins = {f.block: f for f in conn.fork_joins}
    res = defaultdict(list)
    for r in conn.residuals:
        res[r.block].append(r)
    dense = {d.name: d for d in conn.dense_blocks}
    out = {}
    for b in g:
        ls = layers.get(b, [])
        if b.startswith(("input:", "output:")):
            out[b] = _label(conn, ls[0], esc.plot) if ls else esc.plot(b)
            continue
        lines = [esc.plot(b)]
        w = sum(1 for l in ls if l.weighted)
        macs = None if any(l.macs is None for l in ls) else sum(l.macs for l in ls)
        lines.append((f"{w} weighted, " + ("MACs unknown" if macs is None else f"{macs / 1e6:,.0f}M MACs")) if w else
                     f"{len(ls)} layer{'s' * (len(ls) != 1)}")
        if b in dense:
            lines.append(f"dense: {dense[b].layers} layers")
        elif res.get(b):
            lines.append("residual" + (", projection" if any(r.projection for r in res[b]) else ""))
        elif b in joins:
            f = joins[b]
            lines.append(f"{len(f.branches)} branches" + (f", {f.paths} paths" if f.paths > len(f.branches) else ""))
        out[b] = "\n".join(lines)
    return out


_LEGEND = {"input": "input / output", "weighted": "weighted layer (conv, dense)", "merge": "merge (Add, Concat, ...)",
           "pool": "pooling", "other": "other ops", "block": "block"}


def _figure(g: nx.DiGraph, labels: dict, colors: dict, groups: dict | None, title: str, unit: str = "layers"):
    """The matplotlib figure of a wiring drawing (drawn at DPI)."""
    import matplotlib  # heavy (~0.5 s): only when a picture is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy (~0.5 s): only when a picture is drawn
    from matplotlib.lines import Line2D  # heavy (~0.5 s): only when a picture is drawn
    from matplotlib.patches import FancyBboxPatch, Patch  # heavy (~0.5 s): only when a picture is drawn

    pos = _layout(g)
    hidden_rows, hidden = _hidden_rows(g)
    if hidden:  # a readable top of the graph, not a strip too long to read
        pos = {n: p for n, p in pos.items() if -p[1] < MAX_ROWS}
        g = g.subgraph(pos)
    xs = [p[0] for p in pos.values()] or [0.0]
    rows = -min((p[1] for p in pos.values()), default=0.0) + 1 + (0.6 if hidden else 0)
    width_units = max(xs) - min(xs) + 1
    fig_w = min(max(7.0, 2.3 * width_units), 40.0)
    fig_h = min(max(4.0, ROW_IN * rows + 1.6), 120.0)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    ax.set_xlim(min(xs) - 0.75, max(xs) + 0.75)
    ax.set_ylim(-rows + 0.4, 0.6)
    ax.axis("off")
    shaded = False
    if groups:
        members: dict[str, list] = defaultdict(list)
        for n in g:
            if not n.startswith(("input:", "output:")):
                members[groups[n]].append(n)
        for i, (block, ns) in enumerate(members.items()):
            if len(ns) < 2 and ns[0] == block:
                continue
            shaded = True
            bx = [pos[n][0] for n in ns]
            by = [pos[n][1] for n in ns]
            ax.add_patch(FancyBboxPatch((min(bx) - 0.48, min(by) - 0.4), max(bx) - min(bx) + 0.96,
                                        max(by) - min(by) + 0.8, boxstyle="round,pad=0.02,rounding_size=0.1",
                                        fc="#f2f2f2" if i % 2 == 0 else "#e9eef6", ec="#bfbfbf", lw=0.6, zorder=0))
            ax.text(max(bx) + 0.46, max(by) + 0.37, esc.plot(block), ha="right", va="top", fontsize=LABEL_PT,
                    color="#595959", zorder=1)
    for u, v in g.edges:
        (x0, y0), (x1, y1) = pos[u], pos[v]
        span = y0 - y1
        style = "arc3,rad=0" if span <= 1.01 or abs(x1 - x0) > 0.01 else f"arc3,rad={min(0.3, 0.8 / span):.3f}"
        ax.annotate("", xy=(x1, y1 + 0.22), xytext=(x0, y0 - 0.22),
                    arrowprops={"arrowstyle": "-|>", "lw": 0.8, "color": "#595959", "shrinkA": 0, "shrinkB": 0,
                                    "connectionstyle": style, "mutation_scale": 9}, zorder=2)
    for n in g:
        x, y = pos[n]
        ax.text(x, y, labels[n], ha="center", va="center", fontsize=LABEL_PT, zorder=3,
                bbox={"boxstyle": "round,pad=0.3", "fc": colors[n], "ec": "#7f7f7f", "lw": 0.6})
    if hidden:
        ax.text((min(xs) + max(xs)) / 2, -MAX_ROWS + 0.1, f"… {hidden:,} more {unit} in {hidden_rows:,} more rows "
                "(connectivity.dot holds the whole graph)", ha="center", va="center", fontsize=LABEL_PT + 1,
                color="#595959")
    # the legend: the node colours present, block shading, and what an arrow is
    shown = {colors[n] for n in g}
    kinds = [k for k, c in _COLORS.items() if k in _LEGEND and c in shown]
    handles = [Patch(fc=_COLORS[k], ec="#7f7f7f", lw=0.6, label=_LEGEND[k]) for k in kinds]
    if shaded:
        handles.append(Patch(fc="#f2f2f2", ec="#bfbfbf", lw=0.6, label="block (shaded group of layers)"))
    handles.append(Line2D([], [], color="#595959", lw=0.8, marker=">", markersize=5,
                          label="tensor passed on (curved: skips rows)"))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 3),
              fontsize=LABEL_PT, frameon=False)
    ax.set_title(title, fontsize=LABEL_PT + 2, pad=12 + 14 * ((len(handles) + 2) // 3))
    fig.tight_layout()
    return fig


def dense_png(conn: Connectivity, name: str) -> bytes:
    """The DenseNet paper's Figure 5 for each dense block: source layer s (rows) → target ℓ (columns)."""
    import matplotlib  # heavy (~0.5 s): only when a picture is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy (~0.5 s): only when a picture is drawn
    blocks = conn.dense_blocks
    weighted = all(d.mean_abs_weight is not None for d in blocks)
    fig, axes = plt.subplots(1, len(blocks), figsize=(3.2 * len(blocks) + 0.6, 3.6), squeeze=False)
    for ax, d in zip(axes[0], blocks):
        if not d.targets_known or not d.targets:  # no matrix to draw: say so in its place
            ax.axis("off")
            ax.set_title(f"{esc.plot(d.name)} ({d.layers} layers)", fontsize=9)
            ax.text(0.5, 0.5, "which layers read it: unknown\n(channel provenance not inferred)", ha="center",
                    va="center", fontsize=8, transform=ax.transAxes)
            continue
        m = np.array(d.mean_abs_weight if weighted else d.matrix, dtype=float)
        if not weighted:
            m = np.where(m > 0, 1.0, np.nan)
        im = ax.imshow(m, cmap="viridis" if weighted else "Blues", vmin=0 if not weighted else None,
                       vmax=1.4 if not weighted else None, interpolation="nearest", aspect="auto")
        ax.set_title(f"{esc.plot(d.name)} ({d.layers} layers)", fontsize=9)
        ax.set_xlabel("target layer (ℓ)", fontsize=8)
        ax.set_ylabel("source layer (s)", fontsize=8)
        n_t, n_s = m.shape[1], m.shape[0]
        step = max(1, n_t // 8)
        ax.set_xticks(range(0, n_t, step), [str(i + 1) for i in range(0, n_t, step)], fontsize=7)
        ax.set_yticks(range(0, n_s, step), [str(i) for i in range(0, n_s, step)], fontsize=7)
        ax.axvline(d.layers - 0.5, color="#c00000", lw=0.8)
        if weighted:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    what = "mean |weight| per input map" if weighted else "which earlier layers' features each layer reads (untrained: structure)"
    fig.suptitle(f"{esc.plot(name)}: dense-block connectivity, {what}; right of the red line: what reads the block's output",
                 fontsize=8)
    fig.tight_layout()
    return png_bytes(fig, dpi=72)


# --- plain text (the command line) ----------------------------------------------------------

def text(conn: Connectivity, name: str) -> str:
    """What `archkit connectivity` prints: the figures, then one line per pair, Add, Concat, block.
    Names are shown with escape.name: no control character or escape sequence reaches the terminal."""
    n = esc.name
    s = conn.summary()
    lines = [(f"{n(name)}: {s['layers']:,} layers ({conn.weighted_layers:,} weighted); depth {conn.depth} weighted layers; "
             f"at most {conn.max_parallel_paths} parallel paths")]
    rf = conn.final_rf
    if rf:
        lines.append(f"receptive field: {n(conn.final_layer)} {rf.text}")
    elif conn.final_unknown is not None:
        lines.append(f"receptive field: unknown ({_field_why(conn)})")
    else:
        lines.append("receptive field: no spatial layer")
    # the network's field is said on the line above
    lines += [f"not computed: {u}" for u in unknowns(conn)[conn.final_unknown is not None:]]
    lines.append(f"fork/join pairs: {len(conn.fork_joins)}")
    for f in conn.fork_joins:
        shares = " ".join(_pct(b.share) for b in f.branches) if f.macs is not None else "unknown"
        lines.append(f"  {n(f.join)}  {len(f.branches)} branches, {f.paths} paths  fork {n(f.fork)}  MAC shares {shares}")
    lines.append(f"residual Adds: {len(conn.residuals)}, {s['projection_shortcuts']} with a projection shortcut")
    for r in conn.residuals:
        lines.append(f"  {n(r.layer)}  span {r.span}  "
                     + ("projection " + ", ".join(map(n, r.shortcut)) if r.projection else "identity"))
    lines.append(f"concatenations: {len(conn.concats)}")
    for c in conn.concats:
        lines.append(f"  {n(c.layer)}  {c.inputs} inputs, carries "
                     + ("unknown layers" if c.sources is None else f"{len(c.sources)} layers"))
    lines.append(f"dense blocks: {len(conn.dense_blocks)}")
    for d in conn.dense_blocks:
        readers = ", ".join(map(n, d.targets[d.layers:])) if d.targets_known else "unknown"
        lines.append(f"  {n(d.name)}  {d.layers} layers, fan-in {_fan_in(d)}; output read by {readers}")
    if conn.stacks:
        groups: dict = defaultdict(list)
        for st in conn.stacks:
            groups[st.text].append(st)
        lines.append("kernel stacks: " + "; ".join(f"{t} ({len(v)})" for t, v in groups.items()))
    if conn.rf_unsupported:
        lines.append(f"receptive fields stop at: {', '.join(map(n, conn.rf_unsupported))}")
    return "\n".join(lines) + "\n"
