"""Receptive fields (Araujo, Norris, Sim 2019, Distill) of every tensor, over all paths of the DAG.

Each tensor gets a state per axis: the input axis it comes from with the field's size, effective
stride and effective padding on it (AxisField), or None where the axis has no spatial meaning.
Where paths meet the largest field wins, marked unaligned when paths disagree on stride or centre.
A figure that needs what is not known is None; a tensor whose axes could not be followed at all
for want of a shape is UNKNOWN. Per-op behaviour is the table RULES.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from math import prod
from typing import NamedTuple

from archkit.connectivity.layers import DataOp, LayerGraph, Origin
from archkit.connectivity.ops import (
    ELEMENTWISE,
    GLOBAL_POOLS,
    REDUCE_OPS,
    RESHAPE_OPS,
    UNKNOWN,
    WINDOW_OPS,
    Attrs,
    Shape,
    Unknown,
    concrete,
    is_data,
    map_axis,
    registrar,
)
from archkit.connectivity.results import ReceptiveField
from archkit.onnx.graph import OpNode

__all__ = ["RULES", "Axes", "AxisField", "Field", "FieldState", "Fields", "Step", "final_layer", "layer_field", "out_rank",
           "rank", "receptive_fields", "reduce_axes", "size", "spatial_axes", "split_sizes", "tensor_field"]


class AxisField(NamedTuple):
    """The receptive field along one axis of a tensor, on the input axis it comes from."""

    origin: str  # the graph input's node id
    axis: int  # the input's axis
    size: int | None  # None: not known
    stride: int | None  # effective stride: input pixels between neighbouring outputs
    padding: int | None  # effective padding: Σ p_l ∏_{i<l} s_i (left/top)
    aligned: bool | None  # every path agrees on stride and centre

    @property
    def key(self) -> Origin:
        return (self.origin, self.axis)


Axes = tuple[AxisField | None, ...]  # one state per axis of a tensor
FieldState = Axes | Unknown  # a tensor with no state (absent): no spatial meaning


Field = ReceptiveField | None | Unknown  # over the spatial axes of an input; None: none (or not all) left


@dataclass(frozen=True)
class Fields:
    states: Mapping[str, FieldState]  # tensor → its state
    origins: frozenset[Origin]  # the inputs' spatial axes: those a window op slides over
    unsupported: frozenset[str]  # op types where a field could not be followed
    unknown_at: tuple[str, ...]  # ops (or inputs) where a field, or part of one, stopped being known
    handed: Mapping[str, Field]  # the field of each tensor a layer hands on (LayerGraph.outputs)
    layers: Mapping[str, Field]  # each layer's: the largest of the tensors it hands on


class Step(NamedTuple):
    """What an op does to the fields: its outputs' state, and what it tells about the walk."""

    state: FieldState | None  # every output's
    unknown: bool = False  # a figure stopped being known here
    unsupported: bool = False  # the op's field cannot be followed
    origins: tuple[Origin, ...] = ()  # input axes the op's window slides over: spatial axes
    parts: tuple[Axes, ...] | None = None  # instead of `state`, each output's own (Split)


class _Walk(NamedTuple):
    """What a rule may read: the layer graph and the states and spatial axes found so far."""

    lg: LayerGraph
    states: Mapping[str, FieldState]
    origins: AbstractSet[Origin]


Rule = Callable[[_Walk, DataOp, list[Axes]], Step]


# --- one more op on an axis ---------------------------------------------------------------------

def _step(s: AxisField, kernel: int | None, stride: int | None, begin: int | None) -> AxisField:
    """One more window on an axis: field size r + (k - 1) j, stride j s, padding p + b j (None
    wherever a term is not known)."""
    r, j, p = s.size, s.stride, s.padding
    return AxisField(s.origin, s.axis, None if r is None or kernel is None or j is None else r + (kernel - 1) * j,
                     None if j is None or stride is None else j * stride,
                     None if p is None or begin is None or j is None else p + begin * j, s.aligned)


def _shift(s: AxisField, begin: int | None) -> AxisField:
    """Padding of `begin` input steps before an axis (None: not known)."""
    p, j = s.padding, s.stride
    return s._replace(padding=None if p is None or begin is None or j is None else p + begin * j)


def _crop(s: AxisField | None, start: int | None) -> AxisField | None:
    if s is None or start == 0:
        return s
    return _shift(s, None if start is None else -start)


def _merge(states: list[AxisField | None]) -> AxisField | None:
    """Several paths meet: keep the largest field (and its stride and padding); aligned only if
    every path has the same stride and the same centre, (size - 1) / 2 - padding. A figure that
    depends on one not known is None."""
    known: list[AxisField] = [s for s in states if s is not None]
    if len(known) != len(states):
        return None
    if len({s.key for s in known}) != 1:
        return None
    if len(set(known)) == 1:
        return known[0]
    oks = [s.aligned for s in known]
    full = [(s, s.size, s.stride, s.padding) for s in known]
    if all(r is not None and j is not None and p is not None for _, r, j, p in full):
        sized = [(s, r, p) for s, r, _, p in full if r is not None and p is not None]
        best = max(sized, key=lambda x: (x[1], -x[2]))[0]
        same = len({s.stride for s in known}) == 1 and len({(r - 1) / 2 - p for _, r, p in sized}) == 1
        return best._replace(aligned=False if not same or False in oks else None if None in oks else True)
    sizes = [s.size for s in known]
    r = None if None in sizes else max(x for x in sizes if x is not None)
    top = known if r is None else [s for s in known if s.size == r]
    j = top[0].stride if len({s.stride for s in top}) == 1 else None
    pads = [s.padding for s in top]
    p = min(x for x in pads if x is not None) if r is not None and None not in pads else None
    strides = {s.stride for s in known}
    ok = False if False in oks or (None not in strides and len(strides) > 1) else None
    return AxisField(known[0].origin, known[0].axis, r, j, p, ok)


def _map_states(in_shape: tuple[int, ...], out_shape: tuple[int, ...], states: Axes) -> Axes:
    """A reshape's output states: each input axis that survives whole, where it lands."""
    out: list[AxisField | None] = [None] * len(out_shape)
    for a, s in enumerate(states):
        if s is None:
            continue
        k = map_axis(in_shape, out_shape, a)
        if k is not None and out[k] is None:
            out[k] = s
    return tuple(out)


# --- what a rule needs to know about tensors ----------------------------------------------------

def size(lg: LayerGraph, shape: Shape | None, axis: int | None, state: AxisField | None) -> int | None:
    """A tensor's size along an axis whose state is `state` (see LayerGraph.size)."""
    return lg.size(shape, axis, None if state is None else state.key)


def rank(lg: LayerGraph, states: Mapping[str, FieldState], tensor: str) -> int | None:
    """A tensor's rank: from its shape, else from its receptive-field state (which follows ranks
    through ops whose output shape was not inferred)."""
    shape = lg.shape.get(tensor)
    if shape is not None:
        return len(shape)
    state = states.get(tensor)
    return len(state) if isinstance(state, tuple) else None


def out_rank(lg: LayerGraph, states: Mapping[str, FieldState], op: DataOp) -> int | None:
    """The rank of an op's first float output: inferred, else for a broadcasting or
    rank-keeping op the largest rank of its inputs (None when one is not known)."""
    if op.outs and op.outs[0].shape is not None:
        return len(op.outs[0].shape)
    state = states.get(op.outs[0].name) if op.outs else None
    if isinstance(state, tuple):
        return len(state)
    ranks = [rank(lg, states, t.name) for t in op.node.inputs if t is not None]
    if op.op_type in ("Shape", "Size") or not ranks:
        return None
    known = [r for r in ranks if r is not None]
    if len(known) != len(ranks):
        return None
    if op.op_type in ELEMENTWISE or op.op_type in ("MatMul", "Gemm"):
        return max(known)
    return known[0] if op.op_type == "Concat" else None


def split_sizes(lg: LayerGraph, op: DataOp, axis: int | None, state: AxisField | None = None) -> list[int | None]:
    """Each output's size along a Split's axis: inferred, or the `split` attribute or input."""
    sizes = [size(lg, t.shape, axis, state) for t in op.outs]
    if None in sizes:
        node = op.node
        given = node.attrs.get("split")
        if given is None and len(node.inputs) > 1 and node.inputs[1] is not None:
            given = lg.constants.get(node.inputs[1].name)
        if given is not None and len(given) == len(op.outs):
            sizes = [int(n) for n in given]
    return sizes


def reduce_axes(lg: LayerGraph, node: OpNode, rank: int | None) -> tuple[int, ...] | None | Unknown:
    """The axes a reduction reduces; None when they are not constants, UNKNOWN when the rank
    they need is not known."""
    axes = node.attrs.get("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = lg.constants.get(node.inputs[1].name)
        if axes is None:
            return None
    if axes is None:
        if node.attrs.get("noop_with_empty_axes", 0):
            return ()
        return UNKNOWN if rank is None else tuple(range(rank))
    if rank is None:
        return UNKNOWN if any(a < 0 for a in axes) else tuple(axes)
    return tuple(a + rank if a < 0 else a for a in axes)


# --- the rules -----------------------------------------------------------------------------------

RULES: dict[str, Rule] = {}

_rule = registrar(RULES)  # @_rule("Conv", ...) files a rule under those op types


def _whole(w: _Walk, shape: Shape | None, i: int, s: AxisField, stride: int | None) -> tuple[AxisField, bool]:
    """One window over the whole axis i, and whether its size is known (the field's is not, else)."""
    n = size(w.lg, shape, i, s)
    return _step(s, n, n if stride is None else stride, 0), n is not None


@_rule(*REDUCE_OPS)
def _reduce(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    state = states[0]
    axes = reduce_axes(w.lg, op.node, len(state))
    if axes is None or axes is UNKNOWN:
        return Step(None)
    in_shape = op.node.inputs[0].shape if op.node.inputs[0] is not None else None
    keep = op.node.attrs.get("keepdims", 1)
    out: list[AxisField | None] = []
    partial = False
    for i, s in enumerate(state):
        if i in axes and not keep:
            continue  # the axis is gone
        if i not in axes or s is None:
            out.append(s)
            continue
        field, known = _whole(w, in_shape, i, s, None)  # a global pooling: the whole axis in one window
        out.append(field)
        partial |= not known
    return Step(tuple(out), unknown=partial)


def _spatial(state: Axes) -> tuple[Origin, ...]:
    """The input axes a window op's spatial axes (2 and after) come from."""
    return tuple(s.key for s in state[2:] if s is not None)


@_rule(*GLOBAL_POOLS)
def _global_pool(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    state = states[0]
    in_shape = op.node.inputs[0].shape if op.node.inputs[0] is not None else None
    out: list[AxisField | None] = list(state[:2])
    partial = False
    for i, s in enumerate(state[2:], 2):
        if s is None:
            out.append(None)
            continue
        field, known = _whole(w, in_shape, i, s, 1)
        out.append(field)
        partial |= not known
    return Step(tuple(out), unknown=partial, origins=_spatial(state))


@_rule(*WINDOW_OPS)
def _window(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    """Kernel, stride, dilation and explicit pads are attributes; the input's size is needed only
    for a SAME auto_pad with a stride above 1 (its padding): where it is not known, that part of
    the field is None."""
    state = states[0]
    a, node = op.node.attrs, op.node
    origins = _spatial(state)
    n = len(state) - 2
    partial = False
    kernel: tuple[int | None, ...] | None
    if op.op_type == "Conv":
        wt = node.inputs[1]
        kernel = a.get("kernel_shape") or (tuple(wt.shape[2:]) if wt is not None and concrete(wt.shape) else None)
        if kernel is None and wt is not None:
            kernel = (None,) * n  # the kernel's shape was not inferred: the field's size is not known
            partial = True
    else:
        kernel = a.get("kernel_shape")
    if kernel is None or len(kernel) != n:
        return Step(None, unsupported=True, origins=origins)
    strides = a.get("strides") or (1,) * n
    dilations = a.get("dilations") or (1,) * n
    effective = [None if k is None else d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    in_shape = node.inputs[0].shape if node.inputs[0] is not None else None
    sizes = [size(w.lg, in_shape, 2 + i, state[2 + i]) for i in range(n)]
    begin = _pads_begin(a, sizes, effective, strides, n)
    out = [state[0], None if op.op_type == "Conv" else state[1]]
    for i in range(n):
        s = state[2 + i]
        partial |= s is not None and begin[i] is None
        out.append(None if s is None else _step(s, effective[i], strides[i], begin[i]))
    return Step(tuple(out), unknown=partial, origins=origins)


def _pads_begin(a: Attrs, sizes: list[int | None], kernel: list[int | None],
                strides: tuple[int, ...], n: int) -> list[int | None]:
    """Padding before each spatial axis; None where SAME padding depends on a size not known."""
    auto = a.get("auto_pad", "NOTSET") or "NOTSET"
    if auto == "NOTSET":
        pads = a.get("pads") or (0,) * (2 * n)
        return list(pads[:n])
    if auto == "VALID":
        return [0] * n
    out: list[int | None] = []
    for i in range(n):
        k, s, size_ = kernel[i], strides[i], sizes[i]
        total: int | None
        if k is None:
            total = None
        elif s == 1:
            total = k - 1  # any size: (size - 1) + kernel - size
        elif size_ is None:
            total = None
        else:
            total = max((-(-size_ // s) - 1) * s + k - size_, 0)
        out.append(None if total is None else total // 2 if auto == "SAME_UPPER" else total - total // 2)
    return out


@_rule("Transpose")
def _transpose(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    perm = op.node.attrs.get("perm") or tuple(reversed(range(len(states[0]))))
    return Step(tuple(states[0][p] for p in perm))


@_rule("Pad")
def _pad(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    """A Pad changes only the effective padding: by its amounts (constants), else by half the
    size change on each axis; None where neither is known."""
    state, node, lg = states[0], op.node, w.lg
    n = len(state)
    pads = node.attrs.get("pads")
    if pads is None and len(node.inputs) > 1 and node.inputs[1] is not None:
        pads = lg.constants.get(node.inputs[1].name)
    axes: tuple[int, ...] | None = tuple(range(n))
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        given = lg.constants.get(node.inputs[3].name)
        axes = tuple(a + n if a < 0 else a for a in given) if given is not None else None
    if pads is None or axes is None:  # values not given: symmetric, where the size change allows it
        in_shape = node.inputs[0].shape if node.inputs[0] is not None else None
        out_shape = node.outputs[0].shape
        out: list[AxisField | None] = []
        unknown = False
        for i, s in enumerate(state):
            grow = None
            before, after = size(lg, in_shape, i, s), size(lg, out_shape, i, s)
            if before is not None and after is not None:
                grow = after - before
            if s is None or grow == 0:
                out.append(s)
            elif grow is None or grow % 2:
                out.append(_shift(s, None))
                unknown = True
            else:
                out.append(_shift(s, grow // 2))
        return Step(tuple(out), unknown=unknown)
    begin = dict(zip(axes, pads[:len(axes)]))
    return Step(tuple(None if s is None else (s if not begin.get(i) else _shift(s, begin[i]))
                      for i, s in enumerate(state)))


@_rule(*RESHAPE_OPS)
def _reshape(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    """Which axes survive a reshape: from the sizes, or for Squeeze/Unsqueeze from their axes."""
    state, node = states[0], op.node
    in_shape = node.inputs[0].shape if node.inputs[0] is not None else None
    out_shape = node.outputs[0].shape
    defaulted = any(s is not None and s.key in w.lg.defaulted and s.key in w.origins for s in state)
    if concrete(in_shape) and concrete(out_shape) and not defaulted:
        return Step(_map_states(in_shape, out_shape, state))
    axes = None
    if op.op_type in ("Squeeze", "Unsqueeze"):
        axes = node.attrs.get("axes")
        if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
            axes = w.lg.constants.get(node.inputs[1].name)
    if axes is not None and op.op_type == "Unsqueeze":
        n = len(state) + len(axes)
        new = {a + n if a < 0 else a for a in axes}
        rest = iter(state)
        return Step(tuple(None if i in new else next(rest) for i in range(n)))
    if axes is not None and op.op_type == "Squeeze":
        gone = {a + len(state) if a < 0 else a for a in axes}
        return Step(tuple(s for i, s in enumerate(state) if i not in gone))
    return Step(UNKNOWN, unknown=True)


@_rule("Concat")
def _concat(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    n = len(states[0])
    axis = op.node.attrs.get("axis", 0)
    axis = axis + n if axis < 0 else axis
    return Step(tuple(None if a == axis else _merge([s[a] for s in states]) for a in range(n)))


@_rule("MatMul")
def _matmul(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    return Step(states[0][:-1] + (None,))


@_rule("Gemm")
def _gemm(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    return Step((states[0][0], None))


@_rule("Split")
def _split(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    state = states[0]
    n = len(state)
    axis = op.node.attrs.get("axis", 0)
    axis = axis + n if axis < 0 else axis
    sizes = split_sizes(w.lg, op, axis, state[axis])
    parts = []
    start: int | None = 0
    for _, k in zip(op.outs, sizes):
        parts.append(tuple(_crop(s, start) if a == axis else s for a, s in enumerate(state)))
        start = None if start is None or k is None else start + k
    # where each part starts on a spatial axis
    return Step(None, unknown=state[axis] is not None and None in sizes[:-1], parts=tuple(parts))


@_rule(*(ELEMENTWISE - {"Softmax", "LogSoftmax", "Hardmax", "LRN", "LayerNormalization"}))
def _elementwise(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    n = out_rank(w.lg, w.states, op)
    if n is None:  # a broadcast with an input of unknown rank: which axis is which
        return Step(UNKNOWN, unknown=True)
    aligned = [(None,) * (n - len(s)) + s for s in states]
    return Step(tuple(_merge([s[a] for s in aligned]) for a in range(n)))


@_rule("Softmax", "LogSoftmax", "Hardmax", "LRN", "LayerNormalization")
def _same(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    """Along an axis, or over a few neighbouring channels: the field of every element is its input's."""
    return Step(states[0])


def _unsupported(w: _Walk, op: DataOp, states: list[Axes]) -> Step:
    spatial = any(x is not None and x.key in w.origins for s in states for x in s)
    return Step(None, unsupported=spatial)


# --- the walk ------------------------------------------------------------------------------------

def receptive_fields(lg: LayerGraph) -> Fields:
    """Every tensor's field, in the graph's op order."""
    states: dict[str, FieldState] = {}
    origins: set[Origin] = set()
    unsupported: set[str] = set()
    unknown_at: list[str] = []
    for nid, t in lg.inputs:
        if t.shape is not None:
            states[t.name] = tuple(AxisField(nid, a, 1, 1, 0, True) for a in range(len(t.shape)))
        elif is_data(t):
            states[t.name] = UNKNOWN
            unknown_at.append(nid)
    walk = _Walk(lg, states, origins)
    for op in lg.data_ops:
        ins = [states.get(t.name) for t in op.ins]
        axes = [s for s in ins if isinstance(s, tuple)]
        if len(axes) < len(ins):  # no state (None) beats UNKNOWN
            state: FieldState | None = None if any(s is None for s in ins) else UNKNOWN
            for t in op.outs:
                if state is None:
                    states.pop(t.name, None)
                else:
                    states[t.name] = state
            continue
        step = RULES.get(op.op_type, _unsupported)(walk, op, axes)
        origins.update(step.origins)
        if step.unknown:
            unknown_at.append(op.nid)
        if step.unsupported:
            unsupported.add(op.op_type)
        for i, t in enumerate(op.outs):
            out = step.parts[i] if step.parts is not None else step.state
            if out is None:
                states.pop(t.name, None)
            else:
                states[t.name] = out
    spatial = frozenset(origins)
    handed = {t: _field(states, spatial, t) for ts in lg.outputs.values() for t in ts}
    return Fields(states, spatial, frozenset(unsupported), tuple(dict.fromkeys(unknown_at)), handed,
                  {layer: _largest([handed[t] for t in ts]) for layer, ts in lg.outputs.items()})


# --- read-outs -------------------------------------------------------------------------------------

def _field(states: Mapping[str, FieldState], origins: frozenset[Origin], tensor: str) -> Field:
    state = states.get(tensor)
    if state is UNKNOWN:
        return UNKNOWN
    if not state:
        return None
    present = {s.key: s for s in state if s is not None and s.key in origins}
    inputs = {o[0] for o in present}
    if len(inputs) != 1 or set(present) != {o for o in origins if o[0] in inputs}:
        return None
    ss = [present[o] for o in sorted(present)]
    oks = [s.aligned for s in ss]
    return ReceptiveField(tuple(s.size for s in ss), tuple(s.stride for s in ss), tuple(s.padding for s in ss),
                          False if False in oks else None if None in oks else True)


def tensor_field(fields: Fields, tensor: str) -> Field:
    """The field of a tensor over the spatial axes of the input it comes from, if all are still there."""
    if tensor in fields.handed:
        return fields.handed[tensor]
    return _field(fields.states, fields.origins, tensor)


def spatial_axes(fields: Fields, tensor: str) -> tuple[int, ...]:
    states = fields.states.get(tensor)
    if not isinstance(states, tuple):
        return ()
    return tuple(i for i, s in enumerate(states) if s is not None and s.key in fields.origins)


def _spatial_extent(lg: LayerGraph, fields: Fields, tensor: str) -> tuple[int | None, ...] | None:
    states = fields.states.get(tensor)
    shape = lg.shape.get(tensor)
    if not isinstance(states, tuple) or shape is None:
        return None
    return tuple(size(lg, shape, i, s) for i, s in enumerate(states) if s is not None and s.key in fields.origins)


def _largest(found: list[Field]) -> Field:
    present = [f for f in found if f is not None]
    if not present:
        return None
    known = [f for f in present if isinstance(f, ReceptiveField)]
    if len(known) < len(present):
        return UNKNOWN
    if len(known) == 1:
        return known[0]
    if any(None in f.size for f in known):
        return UNKNOWN  # the largest of fields, some of them unknown
    return max(known, key=lambda f: (prod(x or 0 for x in f.size), f.size))


def layer_field(fields: Fields, layer: str) -> Field:
    """The field of a layer's output: the largest of the tensors it hands on."""
    return fields.layers.get(layer)


def final_layer(lg: LayerGraph, fields: Fields) -> tuple[str | None, str | None]:
    """(The last layer whose output still has spatial extent, whose field is the network's;
    None and the first later layer whose field or spatial size is not known, when there is one.)"""
    final = unknown = None
    for layer in lg.L:
        if layer.startswith(("input:", "output:")):
            continue
        for t in lg.outputs.get(layer, ()):
            field = fields.handed[t]
            if field is None:
                continue
            extent = None if field is UNKNOWN else _spatial_extent(lg, fields, t)
            if extent and any(e is not None and e > 1 for e in extent):
                final, unknown = layer, None
            elif unknown is None and (extent is None or None in extent):
                unknown = layer
    return (None, unknown) if unknown is not None else (final, None)
