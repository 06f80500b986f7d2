"""Channel provenance: for each float tensor, along which axis its channels lie and which op made
each run of them, followed through elementwise ops, pooling, transposes, reshapes and splits.

A concatenation along the channels keeps its inputs' runs (and is named as the tensor's
`concat` through layout-only ops); a conv starts the channels anew. UNKNOWN where a rank or size
it needs was not inferred, up to the next conv. Per-op behaviour is the table RULES.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from archkit.connectivity.layers import DataOp, LayerGraph
from archkit.connectivity.ops import (
    ELEMENTWISE,
    LAYOUT_OPS,
    POOL_OPS,
    REDUCE_OPS,
    RESHAPE_OPS,
    UNKNOWN,
    Shape,
    Unknown,
    axis_of,
    concrete,
    dim,
    map_axis,
    registrar,
)
from archkit.connectivity.receptive import (
    Fields,
    out_rank,
    rank,
    reduce_axes,
    split_sizes,
)

__all__ = ["RULES", "Channels", "Parts", "Provenance", "ProvenanceState", "Segment", "Target", "provenance"]


class Segment(NamedTuple):
    source: str  # the op (or graph input) that made these channels
    channels: int | None  # None: the count was not inferred


class Provenance(NamedTuple):
    axis: int | None  # the channel axis; None: none to follow
    segments: tuple[Segment, ...]  # the channels, in order, by the op that made them
    concat: str | None  # the Concat whose output this is (through layout-only ops)


ProvenanceState = Provenance | Unknown


class Target(NamedTuple):
    """A weighted layer's kernel op, with the provenance of the channels it reads."""

    node: str
    layer: str
    channels: ProvenanceState | None


@dataclass(frozen=True)
class Channels:
    states: Mapping[str, ProvenanceState]  # tensor → its provenance
    targets: tuple[Target, ...]  # in the graph's op order
    unknown_at: tuple[str, ...]  # ops where provenance was lost for want of a shape


class _Walk(NamedTuple):
    lg: LayerGraph
    fields: Fields


class Parts(NamedTuple):
    """Each output's own provenance (a Split's), where an op does not give all the same."""

    states: tuple[ProvenanceState, ...]


Result = ProvenanceState | Parts
Rule = Callable[[_Walk, DataOp, list[Provenance]], Result]

RULES: dict[str, Rule] = {}
_CONVS = frozenset({"Conv", "ConvTranspose"})  # a conv starts the channels anew (axis 1), whatever it reads

_rule = registrar(RULES)  # @_rule("Conv", ...) files a rule under those op types


def _out_shape(op: DataOp) -> Shape | None:
    return op.outs[0].shape if op.outs else None


def _new(op: DataOp, axis: int | None) -> Provenance:
    """Channels the op makes itself."""
    return Provenance(axis, (Segment(op.nid, dim(_out_shape(op), axis)),), None)


def _join(segs: tuple[Segment, ...]) -> tuple[Segment, ...]:
    out: list[Segment] = []
    for s, n in segs:
        if out and out[-1].source == s:
            out[-1] = Segment(s, (out[-1].channels or 0) + (n or 0))
        else:
            out.append(Segment(s, n))
    return tuple(out)


def _cut(segs: tuple[Segment, ...], start: int, length: int) -> tuple[Segment, ...]:
    out, pos = [], 0
    for s, n in segs:
        n = n or 0
        lo, hi = max(pos, start), min(pos + n, start + length)
        if hi > lo:
            out.append(Segment(s, hi - lo))
        pos += n
    return tuple(out)


def _rank(w: _Walk, tensor: str) -> int | None:
    return rank(w.lg, w.fields.states, tensor)


@_rule("Gemm", "MatMul", "Einsum")
def _dense(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    n = out_rank(w.lg, w.fields.states, op)
    return _new(op, n - 1) if n is not None else UNKNOWN


@_rule("Concat")
def _concat(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    axis = axis_of(op.node.attrs.get("axis", 0), out_rank(w.lg, w.fields.states, op))
    if axis is None:
        return UNKNOWN
    if all(s.axis == axis for s in src) and len(op.ins) == len([t for t in op.node.inputs if t is not None]):
        return Provenance(axis, _join(tuple(seg for s in src for seg in s.segments)), op.nid)
    return _new(op, src[0].axis if len({s.axis for s in src}) == 1 else None)


@_rule("Transpose")
def _transpose(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    axis, segs, cat = src[0]
    perm = op.node.attrs.get("perm")
    if axis is not None and perm is not None:
        return Provenance(list(perm).index(axis), segs, cat)
    return _new(op, None)


@_rule(*RESHAPE_OPS)
def _reshape(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    axis, segs, cat = src[0]
    in_shape, out_shape = w.lg.shape.get(op.ins[0].name), _out_shape(op)
    if axis is not None and not (concrete(in_shape) and concrete(out_shape)):
        return UNKNOWN  # which axis the channels land on depends on the sizes
    mapped = map_axis(in_shape, out_shape, axis)
    return Provenance(mapped, segs, cat) if mapped is not None else _new(op, None)


@_rule(*REDUCE_OPS)
def _reduce(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    axis, segs, _ = src[0]
    axes = reduce_axes(w.lg, op.node, _rank(w, op.ins[0].name))
    if axis is None:
        return _new(op, None)
    if axes is UNKNOWN:
        return UNKNOWN
    if axes is None or axis in axes:
        return _new(op, None)
    keep = op.node.attrs.get("keepdims", 1)
    return Provenance(axis if keep else axis - sum(1 for a in axes if a < axis), segs, None)


@_rule(*POOL_OPS, "Pad")
def _spatial(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    axis, segs, _ = src[0]
    return Provenance(axis, segs, None)


@_rule("Split")
def _split(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    axis, segs, _ = src[0]
    split_axis = axis_of(op.node.attrs.get("axis", 0), _rank(w, op.ins[0].name))
    sizes = split_sizes(w.lg, op, split_axis)
    if axis is not None and (split_axis is None or split_axis == axis and None in sizes):
        return UNKNOWN  # where the channels fall depends on sizes not inferred
    if axis is None or split_axis != axis:
        return Provenance(axis, segs, None)
    parts: list[ProvenanceState] = []
    start = 0
    for _, n in zip(op.outs, sizes):
        parts.append(Provenance(axis, _cut(segs, start, n) if n else (Segment(op.nid, 0),), None))
        start += n or 0
    return Parts(tuple(parts))


@_rule(*ELEMENTWISE)
def _elementwise(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    if len(op.ins) != 1:
        axes = {s.axis for s in src}
        return _new(op, axes.pop() if len(axes) == 1 else None)
    axis, segs, cat = src[0]
    if axis is not None:
        rank_in, rank_out = _rank(w, op.ins[0].name), out_rank(w.lg, w.fields.states, op)
        if rank_in is None or rank_out is None:
            return UNKNOWN  # a broadcast may add leading axes
        if rank_out > rank_in:
            axis += rank_out - rank_in
    return Provenance(axis, segs, cat if op.op_type in LAYOUT_OPS else None)


def _opaque(w: _Walk, op: DataOp, src: list[Provenance]) -> Result:
    return _new(op, None)


def provenance(lg: LayerGraph, fields: Fields) -> Channels:
    """Every float tensor's channel provenance, and what each weighted layer reads (the ranks of
    tensors whose shape was not inferred come from their receptive-field states)."""
    states: dict[str, ProvenanceState] = {}
    for nid, t in lg.inputs:
        axis = _channel_axis(t.shape)
        states[t.name] = Provenance(axis, (Segment(nid, dim(t.shape, axis)),), None)
    targets: list[Target] = []
    unknown_at: list[str] = []
    walk = _Walk(lg, fields)
    for op in lg.data_ops:
        src = [states.get(t.name) for t in op.ins]
        known = [s for s in src if isinstance(s, Provenance)]
        result: Result
        if any(s is None for s in src):
            result = _new(op, None)
        elif op.op_type in _CONVS:
            result = _new(op, 1)
        elif len(known) < len(src):
            result = UNKNOWN
        else:
            result = RULES.get(op.op_type, _opaque)(walk, op, known)
            if result is UNKNOWN:
                unknown_at.append(op.nid)
        if isinstance(result, Parts):
            for t, part in zip(op.outs, result.states):
                states[t.name] = part
        else:
            for t in op.outs:
                states[t.name] = result
        layer = lg.layer_of[op.nid]
        kernel = lg.kernel_op.get(layer)
        if kernel is not None and kernel.nid == op.nid:
            targets.append(Target(op.nid, layer, src[0] if src else None))
    return Channels(states, tuple(targets), tuple(dict.fromkeys(unknown_at)))


def _channel_axis(shape: Shape | None) -> int | None:
    """A graph input's channel axis: NCHW when the second dim is the smallest, else the last."""
    if shape is None or len(shape) < 2:
        return None
    if len(shape) == 4:
        return 1 if (dim(shape, 1) or 1 << 30) < (dim(shape, 3) or 1 << 30) else 3
    return len(shape) - 1
