"""Layerwise parity, the ONNX side: which tensor of an export holds each Keras layer's output,
in which axis order, and how far it is from the reference there.

- A layer's tensor: of the float tensors the layer's ops make (archkit.costs assigns every op
  to a layer, exporter-inserted ones included) whose axis order is known and whose dims are the
  layer output's, the last in the file's order that an op of another layer reads (or a graph
  output); else the last of them (a Relu that only its own quantizer reads).
- Axis order: tf2onnx computes channels-first inside the graph. Each tensor's permutation
  relative to the reference's layout is followed from the graph inputs through the ops: a
  Transpose composes its `perm`; an op that only regroups dims (Reshape, Flatten, Squeeze,
  Unsqueeze) keeps the order of the dims it keeps when the dims other than 1 are the same on
  both sides (tf2onnx turns a one-channel NHWC image into NCHW with a Reshape), and otherwise
  keeps a tensor in the reference's order only if its input was; every other op keeps the
  order of its first input of the output's rank. Shapes never decide the order: the zoo's
  feature maps are square, so H and W cannot be told apart by their sizes.
- The tensors are made outputs in a copy of the model, which runs in onnxruntime's child
  process (archkit.runtime.child). Marking a tensor as an output keeps onnxruntime from fusing
  across it (QDQ pairs, Conv+Relu), so the marked copy is checked against a plain run: its
  final outputs must be the same (`Layerwise.same_outputs`).

Per layer: the largest absolute error, the largest error relative to the reference's scale
(max |reference|), and the cosine similarity, over every input; the bound is the precision's
per-output one (archkit.runtime.parity.TOLERANCES), and the first layer over it is where the
export drifts. The Keras side (archkit.keras.layerwise) runs the reference.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import onnx

from archkit.runtime.child import run_isolated
from archkit.runtime.parity import TOLERANCES

__all__ = ["LAYER_BATCH", "QUANTIZERS", "LayerError", "Layerwise", "RefLayer", "Tap", "axis_orders", "compare_layers", "layer_tensors", "marked", "run_marked",
           "taps"]

_FLOATS = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                     onnx.TensorProto.BFLOAT16})
LAYER_BATCH = 2  # samples per seed: a layer's error is its largest over every sample
QUANTIZERS = frozenset({"QuantizeLinear", "DequantizeLinear"})  # ops that compute nothing of a layer's own
_REGROUP = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})  # ops that only regroup dims


@dataclass(frozen=True)
class Tap:
    """Where a reference layer's output is read in the export."""

    layer: str  # the reference layer compared here
    tensor: str  # the export's tensor holding its output
    perm: tuple[int, ...]  # export value = np.transpose(reference value, perm)
    folded: tuple[str, ...] = ()  # layers before it with no tensor of their own (a BatchNorm folded into its Conv)


@dataclass(frozen=True)
class LayerError:
    layer: str
    tensor: str
    depth: int  # position among the compared layers, from 1
    max_abs: float
    scale: float  # max |reference|
    cosine: float  # of the flattened values, over every input
    bound: float  # allowed max_abs: atol + rtol * scale
    folded: tuple[str, ...] = ()

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.scale if self.scale else self.max_abs

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.bound


@dataclass(frozen=True)
class Layerwise:
    precision: str
    layers: tuple[LayerError, ...]
    same_outputs: bool  # the marked copy's final outputs equal a plain run's
    output_diff: float  # their largest difference
    skipped: tuple[tuple[str, str], ...] = ()  # (layer, why) of the reference layers not compared
    runtime: str = ""

    @property
    def first_drift(self) -> LayerError | None:
        """The first layer over its bound, in depth order."""
        return next((e for e in self.layers if not e.ok), None)

    @property
    def ok(self) -> bool:
        return self.first_drift is None

    def to_dict(self) -> dict:
        return {"precision": self.precision, "same_outputs": self.same_outputs, "output_diff": self.output_diff,
                "runtime": self.runtime, "skipped": [list(s) for s in self.skipped],
                "layers": [{**e.__dict__, "folded": list(e.folded)} for e in self.layers]}

    @classmethod
    def from_dict(cls, d: Mapping) -> Layerwise:
        layers = tuple(LayerError(**{**e, "folded": tuple(e["folded"])}) for e in d["layers"])
        return cls(d["precision"], layers, d["same_outputs"], d["output_diff"],
                   tuple((a, b) for a, b in d["skipped"]), d.get("runtime", ""))

    def where(self) -> str:
        """Where the export starts to drift, in a few words."""
        d = self.first_drift
        if d is None:
            return f"every layer within its bound ({len(self.layers)} compared)"
        return (f"first layer over the tolerance: {d.layer!r} (layer {d.depth} of {len(self.layers)}, max rel error "
                f"{d.max_rel:.2g}, allowed {d.bound / d.scale if d.scale else d.bound:.2g}, cosine {d.cosine:.4f})")


def _dims(proto: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, tuple]:
    """Every tensor's dims (ints or dim names; None: unknown) as onnx's shape inference gives them,
    with the graph inputs of `shapes` at those shapes (the run's own: its dims are then ints)."""
    if shapes:
        proto = _with_input_shapes(proto, shapes)
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)  # through a Reshape's shape arithmetic
    g = inferred.graph
    out = {}
    for v in (*g.input, *g.value_info, *g.output):
        t = v.type.tensor_type
        if t.HasField("shape"):
            out[v.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim)
    for t in g.initializer:
        out[t.name] = tuple(t.dims)
    return out


def _with_input_shapes(proto: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for i in copy.graph.input:
        if i.name in shapes and i.type.HasField("tensor_type"):
            dims = i.type.tensor_type.shape.dim
            del dims[:]
            for d in shapes[i.name]:
                dims.add().dim_value = int(d)
    return copy


def _kept(src: tuple, dst: tuple) -> list[int] | None:
    """For an op that only regroups dims: the input axis each output axis is, when the dims other
    than 1 are the same (in order) on both sides; else None."""
    if any(d is None for d in (*src, *dst)):
        return None
    big_src = [i for i, d in enumerate(src) if d != 1]
    big_dst = [j for j, d in enumerate(dst) if d != 1]
    if [src[i] for i in big_src] != [dst[j] for j in big_dst]:
        return None
    ones = iter(i for i, d in enumerate(src) if d == 1)
    big = iter(big_src)
    out = []
    for d in dst:
        nxt = next(big, None) if d != 1 else next(ones, None)
        if nxt is None:
            return None  # an axis of 1 added: it comes from no input axis
        out.append(nxt)
    return out


def _ranked(axes: Sequence[int]) -> tuple[int, ...]:
    """Axes renumbered by their order: what a permutation of the kept axes is in a lower rank."""
    order = sorted(axes)
    return tuple(order.index(a) for a in axes)


def axis_orders(proto: onnx.ModelProto, inputs: Mapping[str, tuple[int, ...]],
                dims: Mapping[str, tuple] | None = None) -> dict[str, tuple[int, ...]]:
    """Each tensor's permutation relative to the reference layout (see the module docstring),
    followed from the graph inputs' (`inputs`: name → perm; an input not named is in the
    reference's order; `dims`: every tensor's, as `_dims` gives them). A tensor missing from
    the result has no known order."""
    dims = _dims(proto) if dims is None else dims
    init = {t.name for t in proto.graph.initializer}
    perm: dict[str, tuple[int, ...]] = {}
    for i in proto.graph.input:
        if i.name not in init and i.name in dims:
            perm[i.name] = tuple(inputs.get(i.name, range(len(dims[i.name]))))
    for node in proto.graph.node:
        if not node.output or not node.output[0]:
            continue
        out = node.output[0]
        rank = len(dims[out]) if out in dims else None
        src = next((x for x in node.input if x in perm), None)
        if src is None or rank is None:
            continue
        p = perm[src]
        if node.op_type == "Transpose":
            q = next((list(a.ints) for a in node.attribute if a.name == "perm"), list(range(len(p)))[::-1])
            if len(q) == len(p):
                perm[out] = tuple(p[i] for i in q)
        elif node.op_type in _REGROUP:
            kept = _kept(dims.get(node.input[0], (None,)), dims[out])
            if kept is not None:
                perm[out] = _ranked([p[i] for i in kept])
            elif p == tuple(range(len(p))) and rank <= 2:
                perm[out] = tuple(range(rank))  # flattened in the reference's order
        elif len(p) == rank:
            perm[out] = p
        elif p == tuple(range(len(p))) and rank <= 2:
            perm[out] = tuple(range(rank))  # a MatMul or a reduction of a tensor in the reference's order
    return perm


def layer_tensors(proto: onnx.ModelProto, layer_of: Callable[[str], str | None]
                  ) -> dict[str, list[tuple[str, bool]]]:
    """Per layer (`layer_of(tensor)`: the layer of the op making it), the float tensors its ops
    make, in file order, each with whether an op of another layer reads it or it is a graph
    output."""
    elem = {v.name: v.type.tensor_type.elem_type for v in (*proto.graph.value_info, *proto.graph.output)}
    inferred = onnx.shape_inference.infer_shapes(proto).graph
    elem.update({v.name: v.type.tensor_type.elem_type for v in (*inferred.value_info, *inferred.output)})
    outputs = {o.name for o in proto.graph.output}
    read_by: dict[str, set[str]] = {}
    for node in proto.graph.node:
        layer = layer_of(node.output[0]) if node.output else None
        for x in node.input:
            if x:
                read_by.setdefault(x, set()).add(layer or "")
    out: dict[str, list[str]] = {}
    for node in proto.graph.node:
        for t in node.output:
            layer = layer_of(t) if t else None
            if layer is None or elem.get(t) not in _FLOATS:
                continue
            out.setdefault(layer, []).append((t, t in outputs or bool(read_by.get(t, set()) - {layer})))
    return out


class RefLayer(NamedTuple):
    """A reference layer as `taps` needs it."""

    name: str
    shape: tuple[int | None, ...]  # of its output, the batch (and any free dim) None
    inbound: tuple[str, ...]  # the layers whose outputs it reads
    consumers: int  # the layers reading its output


def taps(proto: onnx.ModelProto, layers: Sequence[RefLayer], layer_of: Callable[[str], str | None],
         inputs: Mapping[str, tuple[int, ...]], shapes: Mapping[str, tuple[int, ...]] | None = None
         ) -> tuple[list[Tap], list[tuple[str, str]]]:
    """The tap of each reference layer (`layers` in a topological order of the reference), and
    (layer, why) for those not compared. A layer with no tensor of its own that reads one layer
    only, the only reader of that layer's output, is computed by the same ops in the export:
    tf2onnx folds a BatchNormalization into the Conv before it, and a Dropout is the identity.
    The tensor is then compared with the later layer's output, and the earlier one is `folded`."""
    made = layer_tensors(proto, layer_of)
    dims = _dims(proto, shapes)
    orders = axis_orders(proto, inputs, dims)
    found: list[Tap] = []
    at: dict[str, int] = {}  # layer → its tap's index
    skipped: list[tuple[str, str]] = []
    consumers = {r.name: r.consumers for r in layers}
    for r in layers:
        mine = [t for t, _ in made.get(r.name, [])]
        fitting = [(t, out) for t, out in made.get(r.name, []) if t in orders and _fits(dims.get(t, ()), orders[t], r.shape)]
        # what the next layers read (tf2onnx's NHWC Transpose after a pool), else the last that
        # fits (a Relu read by its own quantizer)
        candidates = [t for t, out in fitting if out] or [t for t, _ in fitting]
        if candidates:
            at[r.name] = len(found)
            found.append(Tap(r.name, candidates[-1], orders[candidates[-1]]))
        elif len(r.inbound) == 1 and r.inbound[0] in at and consumers.get(r.inbound[0]) == 1 and \
                not any(_sized(dims.get(t, ()), r.shape) for t in mine):
            # none of its tensors has its output's size: at most the constants of a folded BatchNorm
            # (tf2onnx computes scale and offset from gamma, beta and the statistics), or an op the
            # exporter named in its scope (the input's Transpose of inception_v3)
            k = at.pop(r.inbound[0])
            before = found[k]
            found[k] = Tap(r.name, before.tensor, before.perm, (*before.folded, before.layer))
            at[r.name] = k
        elif any(_sized(dims.get(t, ()), r.shape) for t in mine):
            skipped.append((r.name, "its tensors' axis order is not known"))
        elif mine and not all(t in dims for t in mine):
            skipped.append((r.name, "its tensors' shapes are not known"))
        else:
            skipped.append((r.name, "no tensor of its own (the export merged it into another op)"))
    return found, skipped


def _sized(dims: tuple, shape: tuple[int | None, ...]) -> bool:
    """Could a tensor of `dims` be the output of `shape`, in some axis order (the batch aside)?"""
    if len(dims) != len(shape):
        return False
    want = [d for d in shape[1:] if d is not None]
    got = list(dims[1:])
    return all(got.count(d) >= want.count(d) for d in want)


def _fits(dims: tuple, perm: tuple[int, ...], shape: tuple[int | None, ...]) -> bool:
    """Is a tensor of `dims` in axis order `perm` the reference's output of `shape`?"""
    if len(dims) != len(shape) or len(perm) != len(shape):
        return False
    return all(want is None or dims[j] == want for j, want in enumerate(shape[p] for p in perm))


def marked(proto: onnx.ModelProto, tensors: Sequence[str]) -> onnx.ModelProto:
    """A copy of the model with `tensors` added to its outputs (after the graph's own)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    have = {o.name for o in copy.graph.output}
    for t in tensors:
        if t not in have:
            copy.graph.output.append(onnx.ValueInfoProto(name=t))
            have.add(t)
    return copy


def run_marked(proto: onnx.ModelProto, tensors: Sequence[str], feeds: Sequence[Mapping[str, np.ndarray]], *,
               what: str, timeout: float | None = None) -> tuple[list[dict[str, np.ndarray]], float, str]:
    """Each feed through the marked copy and through the model itself: per feed, the tapped
    tensors' values; the largest difference between the two runs' final outputs; the runtime."""
    names, got, runtime = run_isolated(marked(proto, tensors), feeds, what=f"{what} (layer outputs marked)",
                                       timeout=timeout)
    plain_names, plain, _ = run_isolated(proto, feeds, what=what, timeout=timeout)
    diff = 0.0
    for g, p in zip(got, plain):
        for k, name in enumerate(plain_names):
            a, b = np.asarray(g[names.index(name)], np.float64), np.asarray(p[k], np.float64)
            diff = max(diff, float(np.max(np.abs(a - b))) if a.size else 0.0)
    values = [{n: v for n, v in zip(names, g) if n in set(tensors)} for g in got]
    return values, diff, runtime


def compare_layers(found: Sequence[Tap], exported: Sequence[Mapping[str, np.ndarray]],
                   reference: Sequence[Mapping[str, np.ndarray]], precision: str, *, output_diff: float,
                   skipped: Sequence[tuple[str, str]] = (), runtime: str = "") -> Layerwise:
    """Each tap's errors over every input (`exported`: tensor → value per input; `reference`:
    layer → value per input, in the reference's layout)."""
    t = TOLERANCES[precision]
    rows = []
    for depth, tap in enumerate(found, 1):
        inv = np.argsort(tap.perm)
        diffs, scales, dots, n1, n2 = [], [], 0.0, 0.0, 0.0
        for got, want in zip(exported, reference):
            w = np.asarray(want[tap.layer], np.float64)
            g = np.transpose(np.asarray(got[tap.tensor], np.float64), inv) if len(tap.perm) > 1 else \
                np.asarray(got[tap.tensor], np.float64)
            if g.shape != w.shape:
                g = g.reshape(w.shape) if g.size == w.size else g
            if g.shape != w.shape:
                raise ValueError(f"layer {tap.layer!r}: tensor {tap.tensor!r} has shape {g.shape}, the reference {w.shape}")
            diffs.append(float(np.max(np.abs(g - w))) if w.size else 0.0)
            scales.append(float(np.max(np.abs(w))) if w.size else 0.0)
            dots += float(np.dot(g.ravel(), w.ravel()))
            n1 += float(np.dot(g.ravel(), g.ravel()))
            n2 += float(np.dot(w.ravel(), w.ravel()))
        scale = max(scales, default=0.0)
        cosine = dots / np.sqrt(n1 * n2) if n1 > 0 and n2 > 0 else (1.0 if n1 == n2 else 0.0)
        rows.append(LayerError(tap.layer, tap.tensor, depth, max(diffs, default=0.0), scale, float(cosine),
                               t.atol + t.rtol * scale, tap.folded))
    return Layerwise(precision, tuple(rows), output_diff == 0.0, output_diff, tuple(skipped), runtime)
