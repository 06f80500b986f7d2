"""The analysis graph: a checked ONNX model (from archkit.onnx.load) → a networkx.DiGraph of typed
op records with resolved shapes, the one input of archkit.costs and archkit.connectivity. The
shapes come from onnx's inference, then archkit's shape engine (archkit.onnx.shapes), then onnxruntime's.

A node per ONNX op (an OpNode, kind "op"), a pseudo-node per graph input ("input") and output
("output", both TensorNode): frozen records, read as `data.op_type` (or, for code that reads node
data as a dict, `data["op_type"]`); an edge per producer → consumer pair (edge attribute `tensors`: the tensor names it carries).
Initializers are not nodes: they are described (name, dims, dtype) on their consumers' inputs.

Weights are never read or copied: shape inference runs on a skeleton whose weight initializers
are typed graph inputs, which is both faster (no weight serialisation) and independent of
external data. Symbolic input dims not fixed by the caller stay free: every shape is found as
formulas in them (archkit.onnx.symbolic), the nodes' TensorInfo hold their values with each free dim
1 (costs are then per sample; `graph.graph["fixed_dims"]` says which) and `graph.graph["formulas"]`
the formulas (`.formulas`: tensor → dims, `.point`: the values, `.merged`: dims taken as equal).
Where some shape read by an op cannot be followed in formulas, the graph is built again with
the free dims set to 1 (`formulas` None, `no_formulas` saying why).
Where onnx's inference leaves an op's output shape unknown, archkit's shape engine
(archkit.onnx.shapes: bounded folding of shape arithmetic) is tried, then, as the last resort,
onnxruntime's symbolic shape inference in a child process with memory and time limits.

Ops inside subgraphs (If branches, Loop and Scan bodies) are nodes too, with id
`<parent id>/<attribute>/<node>`, `parent` set to the If/Loop/Scan node's id and `subgraph` to the
attribute name; they come before their parent in the op order and have an edge to it.

Graph attributes: name, opset, ir_version, producer, metadata, fixed_dims, initializers
(name → (dims, dtype), main graph), constants (values of the small inline int32/int64
initializers: pads, axes, shapes), op_order (op node ids, topologically sorted: file order
when the file is sorted, as ONNX requires), shape_inference (what found the shapes, joined by
"+": "onnx" or "onnx-unpropagated" (its value propagation off: large generated tensors), then
"archkit" (the shape engine, archkit.onnx.shapes) and "onnxruntime-symbolic", where each was needed),
warnings (what the reader should know: a fallback that failed or hit its limits), conditions
(If node id → (value, how it is known), for the Ifs whose condition is known: a constant, a
value the shape engine computed, or a graph input's value given in `input_values`).
"""

from __future__ import annotations

import gc
import math
import os
import subprocess
import sys
import tempfile
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import networkx as nx
import numpy as np
import onnx
from onnx import helper, numpy_helper

from archkit.errors import MalformedModelError, UsageError
from archkit.onnx import shapes as engine
from archkit.onnx.symbolic import Dim, Expr, Symbols, value
from archkit.onnx.symbolic_shapes import Merge
from archkit.onnx.tensors import has_data

__all__ = ["FLOAT_TYPES", "SUBGRAPH_OPS", "FreeDims", "InputShapes", "OpNode", "Shape", "ShapeDim", "TensorInfo",
           "TensorNode", "build_graph", "dtype_name", "free_dims", "input_value_range", "op_nodes"]

ShapeDim = int | str | None  # int: known; str: a symbolic name (not one of the free dims); None: unknown
Shape = tuple[ShapeDim, ...]
ShapeRecord = tuple[Shape | None, str, bool]  # a tensor's (shape, dtype, whether every dim is known)
_Converted = tuple[tuple[Dim, ...], ShapeRecord, bool]  # FreeDims._convert's answer
Edge = dict[str, tuple[str, ...]]  # edge data: {"tensors": the tensors it carries}
# graph input name → its full shape, or a symbolic dim's name → its value
InputShapes = Mapping[str, "int | Sequence[int]"]


class TensorInfo(NamedTuple):
    """A tensor as the analysis sees it: name, shape, element type, whether an initializer."""

    name: str
    shape: Shape | None  # None: rank unknown
    dtype: str
    initializer: bool = False

    @property
    def known(self) -> bool:
        s = self.shape
        return s is not None and all(d.__class__ is int for d in s)

    @property
    def size(self) -> int:
        """The element count, of a known shape."""
        if not self.known:
            raise ValueError(f"tensor {self.name!r} has no known size: shape {self.shape}")
        return math.prod(d for d in self.shape or () if isinstance(d, int))


class _Record(Mapping[str, object]):
    """Read-only `record["field"]` access to a node record's fields, for code that still reads
    node data as a dict (networkx hands the record out as a node's data)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> object:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: object = None) -> object:
        return getattr(self, key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(("kind", *self.__slots__))

    def __len__(self) -> int:
        return 1 + len(self.__slots__)

    def copy(self) -> _Record:  # what networkx calls when it copies a graph; a record is immutable
        return self


@dataclass(frozen=True, slots=True, eq=False)
class OpNode(_Record):
    """An op, in the main graph or inside an If/Loop/Scan subgraph (`parent`: that op's id;
    `subgraph`: the attribute holding it). `inputs` holds None for an omitted optional input."""

    index: int  # position in the walk (file order, subgraph ops before their parent)
    name: str
    op_type: str
    domain: str  # "ai.onnx" for the default domain
    attrs: Mapping[str, Any]  # the types are the op schema's: ints, floats, strings, tuples of them, TensorInfo
    inputs: tuple[TensorInfo | None, ...]
    outputs: tuple[TensorInfo, ...]
    parent: str | None = None
    subgraph: str | None = None

    @property
    def kind(self) -> str:
        return "op"


@dataclass(frozen=True, slots=True, eq=False)
class TensorNode(_Record):
    """A graph input (kind "input") or output ("output") pseudo-node."""

    kind: str
    tensor: TensorInfo


FLOAT_TYPES = frozenset({"float", "float16", "bfloat16", "double"})
SUBGRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})  # the default-domain ops with graph attributes

_DTYPES = {v: onnx.TensorProto.DataType.Name(v).lower() for v in onnx.TensorProto.DataType.values()}
_DTYPES[0] = "undefined"


def dtype_name(elem_type: int) -> str:
    return _DTYPES.get(elem_type) or "undefined"


def _type_shape(t: onnx.TypeProto) -> tuple[Shape | None, str]:
    if not t.HasField("tensor_type"):
        return None, t.WhichOneof("value") or "undefined"
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return None, dtype_name(tt.elem_type)
    dims: list[ShapeDim] = []
    for d in tt.shape.dim:
        v = d.dim_value
        if not v:
            dims.append(d.dim_param or (0 if d.HasField("dim_value") else None))
        elif v < 0:
            dims.append(None)  # inferred from free dims set to 1 where a kernel is larger: no size at all
        else:
            dims.append(v)
    return tuple(dims), dtype_name(tt.elem_type)


# --- the skeleton: the model without its weights, inputs fixed --------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field; `tag` = field number << 3 | 2."""
    n = len(payload)
    return (bytes((tag, n)) if n < 128 else bytes((tag,)) + _varint(n)) + payload


_GRAPH_TAG = 7 << 3 | 2  # ModelProto.graph
_INPUT_TAG = 11 << 3 | 2  # GraphProto.input
_INLINE = 64  # initializers of at most this many elements (1-D or scalar) stay in the skeleton

Described = tuple[tuple[int, ...], str]  # an initializer as the graph describes it: (dims, dtype)
FixedDims = dict[str, dict[int, "str | None"]]  # input → axis → the symbolic dim's name there (None: unnamed)
FixedInputs = tuple[list[onnx.ValueInfoProto], FixedDims]  # what _fix_inputs gives


def _initializers(g: onnx.GraphProto) -> tuple[dict[str, Described], list[onnx.TensorProto], bytes]:
    """name → (dims, dtype); the small ones inference may need the values of (shapes, axes,
    scales: a few bytes); and, serialized, a GraphProto.input entry declaring each other one's
    dtype and dims."""
    # (dtype, dims) → (the serialized ValueInfoProto.type field, how the graph describes it)
    types: dict[tuple[int, tuple[int, ...]], tuple[bytes, Described]] = {}
    described: dict[str, Described] = {}
    shape_data = []
    parts: list[bytes] = []
    append = parts.append
    external = onnx.TensorProto.EXTERNAL
    for t in g.initializer:
        dt = t.data_type
        dims = tuple(t.dims)
        name = t.name
        key = (dt, dims)
        tb = types.get(key)
        if tb is None:
            tp = onnx.TypeProto()
            tp.tensor_type.elem_type = dt
            tp.tensor_type.shape.SetInParent()
            for d in dims:
                tp.tensor_type.shape.dim.add().dim_value = d
            types[key] = tb = (_field(2 << 3 | 2, tp.SerializeToString()), (dims, _DTYPES.get(dt) or "undefined"))
        described[name] = tb[1]
        if len(dims) <= 1 and (not dims or dims[0] <= _INLINE) and t.data_location != external:
            shape_data.append(t)  # Reshape targets, Slice bounds, Resize scales: inference needs the values
            continue
        nb = name.encode()
        vi = (b"\x0a" + bytes((len(nb),)) + nb + tb[0]) if len(nb) < 128 else _field(1 << 3 | 2, nb) + tb[0]
        append(_field(_INPUT_TAG, vi))
    return described, shape_data, b"".join(parts)


def free_dims(model: onnx.ModelProto) -> set[str]:
    """The names of the symbolic dims of the graph's inputs (initializers aside)."""
    inits = {t.name for t in model.graph.initializer}
    return {d.dim_param for i in model.graph.input if i.name not in inits and i.type.HasField("tensor_type")
            for d in i.type.tensor_type.shape.dim if d.dim_param and not d.HasField("dim_value")}


def _fix_inputs(model: onnx.ModelProto, input_shapes: InputShapes, keep_free: bool = False) -> FixedInputs:
    """Graph inputs (not initializers) with fixed dims, and which symbolic dims were set to 1
    (`keep_free`: left free, as formulas whose value is 1; a dim without a name is named
    `input:axis`)."""
    g = model.graph
    init_names = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init_names]
    names = {i.name for i in inputs}
    params = free_dims(model)
    unknown = set(input_shapes) - names - params
    if unknown:
        raise UsageError(f"--input-shape names no graph input or symbolic dim: {sorted(unknown)}; inputs are "
                         f"{sorted(names)}" + (f", symbolic dims {sorted(params)}" if params else ""))
    by_param = {k: _one_dim(k, v) for k, v in input_shapes.items() if k not in names}
    fixed: FixedDims = {}
    out = []
    for inp in inputs:
        vi = onnx.ValueInfoProto()
        vi.CopyFrom(inp)
        dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
        if inp.name in input_shapes:
            given = input_shapes[inp.name]
            want = (given,) if isinstance(given, int) else tuple(given)
            if len(want) != len(dims):
                raise UsageError(f"--input-shape {inp.name}: rank {len(want)} given, the model's input has rank {len(dims)}")
            for d, v in zip(dims, want):
                if d.HasField("dim_value") and d.dim_value != v:
                    raise UsageError(f"--input-shape {inp.name}: the model fixes this input's shape to "
                                     f"{[x.dim_value or x.dim_param or '?' for x in dims]}")
                _set_dim(d, v)
        else:
            for axis, d in enumerate(dims):
                if d.HasField("dim_value"):
                    continue
                if d.dim_param in by_param:
                    _set_dim(d, by_param[d.dim_param])
                else:
                    fixed.setdefault(inp.name, {})[axis] = d.dim_param or None
                    if not keep_free:
                        _set_dim(d, 1)
                    elif not d.dim_param:
                        d.dim_param = f"{inp.name}:{axis}"
        out.append(vi)
    return out, fixed


def _set_dim(d: onnx.TensorShapeProto.Dimension, v: int) -> None:
    if not isinstance(v, int) or v < 0:
        raise UsageError(f"--input-shape: dimension {v!r} is not a non-negative integer")
    d.Clear()
    d.dim_value = v


def _one_dim(name: str, v: int | Sequence[int]) -> int:
    if isinstance(v, int):
        return v
    values = tuple(v)
    if len(values) != 1:
        raise UsageError(f"--input-shape {name}: a symbolic dimension takes one value, not {len(values)}")
    return values[0]


def _skeleton(model: onnx.ModelProto, fixed_inputs: FixedInputs, *, declared: bool = False
              ) -> tuple[bytes, FixedDims, dict[str, Described], list[onnx.TensorProto]]:
    """A weight-free copy for shape inference, serialized, over the inputs `_fix_inputs` gave
    (inputs, fixed): symbolic input dims fixed (given, else 1) or left free. `declared`: keep the
    file's value_info and output shapes (what onnxruntime starts from).

    Weight initializers become typed graph inputs written straight into the serialized graph
    (protobuf fields concatenate), so no weight byte is copied or read.
    """
    g = model.graph
    inputs, fixed = fixed_inputs
    header = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import)
    header.functions.extend(model.functions)
    sg = onnx.GraphProto(name=g.name)
    sg.node.extend(g.node)
    sg.input.extend(inputs)
    sg.output.extend(g.output)
    if declared:
        sg.value_info.extend(g.value_info)
    else:
        for o in sg.output:  # declared output dims are no facts: inference says (a declared value would beat the
            if o.type.HasField("tensor_type"):  # batch a caller fixed, and Keras' exports name dims unk__970)
                for d in o.type.tensor_type.shape.dim:
                    d.Clear()
    initializers, shape_data, typed = _initializers(g)
    sg.initializer.extend(shape_data)
    if model.ir_version < 4:  # before IR 4 an initializer is only seen when it is also a graph input
        sg.input.extend(helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in shape_data)
    graph = sg.SerializeToString() + typed
    return header.SerializeToString() + _field(_GRAPH_TAG, graph), fixed, initializers, shape_data


def _infer(skeleton: bytes, *, data_prop: bool = True) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(skeleton, data_prop=data_prop)
    except Exception as e:  # noqa: BLE001 - onnx raises several C++-backed kinds; all mean the graph is inconsistent
        raise MalformedModelError(f"shape inference failed: {str(e).strip().splitlines()[0]}") from None


# Value propagation (onnx's data_prop, onnxruntime's symbolic inference) computes tensors element
# by element, at a couple of hundred bytes each: a Range(0, 1e8) in a 300-byte file took 14 GB and
# a minute, a ConstantOfShape of 1e7 elements 2 GB. Only these ops make a tensor larger than the
# values they are given; a model holding none of them, and no large constant, is inferred with
# propagation at once.
_GENERATORS = frozenset({"Range", "ConstantOfShape", "Tile", "Expand", "Pad", "Resize", "Upsample", "OneHot",
                         "CenterCropPad", "Constant"})
_PROPAGATED = 2**16  # the largest tensor whose values propagation may compute


def _graphs(g: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield g
    for n in g.node:
        if n.attribute:
            for a in n.attribute:
                if a.type == _A.GRAPH:
                    yield from _graphs(a.g)
                elif a.type == _A.GRAPHS:
                    for sg in a.graphs:
                        yield from _graphs(sg)


def _may_grow(g: onnx.GraphProto) -> bool:
    """Whether some op of the model could make a large tensor out of small values, or is a large
    constant (a small Constant, common in PyTorch exports, is harmless)."""
    kinds = {(n.op_type, n.domain) for n in g.node}
    types = {t for t, _ in kinds}
    if not _GENERATORS.isdisjoint(types - {"Constant"}):
        return True
    if "Constant" in types and any(n.op_type == "Constant" and a.type == _A.TENSOR and math.prod(a.t.dims) > _PROPAGATED
                                   for n in g.node for a in n.attribute):
        return True
    if SUBGRAPH_OPS.isdisjoint(types) and not any(d for _, d in kinds):
        return False  # no op that can hold a subgraph
    for n in g.node:
        if n.op_type in SUBGRAPH_OPS or n.domain:
            for a in n.attribute:
                if a.type == _A.GRAPH and _may_grow(a.g) or a.type == _A.GRAPHS and any(map(_may_grow, a.graphs)):
                    return True
    return False


def _large_values(inferred: onnx.ModelProto) -> bool:
    """Whether, inferred without propagation, some generator's output is large or of unknown size."""
    sizes: dict[str, int | None] = {}
    for g in _graphs(inferred.graph):
        for vi in (*g.value_info, *g.output):
            tt = vi.type.tensor_type
            known = tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim)
            n = math.prod(d.dim_value for d in tt.shape.dim) if known else None
            old = sizes.get(vi.name, 0)
            sizes[vi.name] = None if n is None or old is None else max(n, old)
    for g in _graphs(inferred.graph):
        for node in g.node:
            if node.op_type in _GENERATORS:
                for out in node.output:
                    n = sizes.get(out)
                    if out and (n is None or n > _PROPAGATED):
                        return True
    return False


def _complete(inferred: onnx.ModelProto) -> bool:
    """Whether every op output of the main graph has a known shape."""
    g = inferred.graph
    known = {vi.name for vi in (*g.value_info, *g.output) if vi.type.tensor_type.HasField("shape")
             and all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim)}
    return all(not o or o in known for n in g.node for o in n.output)


def _infer_bounded(model: onnx.ModelProto, skeleton: bytes) -> tuple[onnx.ModelProto, bool]:
    """Shape inference with value propagation where that is bounded; (inferred, propagated)."""
    if not _may_grow(model.graph):
        return _infer(skeleton), True
    plain = _infer(skeleton, data_prop=False)
    if _complete(plain):
        return plain, True  # nothing left for propagation to find
    if _large_values(plain):
        return plain, False  # shapes that would need large values computed stay unknown: costs say so
    return _infer(skeleton), True


def _engine(model: onnx.ModelProto, inferred: onnx.ModelProto, shapes: dict[str, ShapeRecord],
            cache: dict[bytes, ShapeRecord], values: dict[str, np.ndarray], free: FreeDims | None = None) -> int:
    """archkit's shape engine (archkit.onnx.shapes) over what onnx left unknown; `shapes` gains what
    it finds, `values` (tensor name → array, given inputs' values to start with) the values it
    computes. `free`: the free dims kept as formulas. Returns how many op outputs it resolved."""
    g = inferred.graph
    types = {vi.name: vi.type for vi in (*g.input, *g.value_info, *g.output)}
    engine.initializer_values((*model.graph.initializer, *g.initializer), types, values)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    symbols, merged = (free.symbols, free.merged) if free is not None else (None, None)
    if not engine.resolve(g, types, opsets, values=values, ir_version=model.ir_version, symbols=symbols,
                          merged=merged):
        return 0
    found: dict[str, ShapeRecord] = {}
    _read_shapes((helper.make_value_info(k, v) for k, v in types.items()), found, cache)
    if free is not None:
        free.concrete(found)
    better = {k: v for k, v in found.items() if v[2] and not (shapes.get(k) or _UNKNOWN)[2]}
    shapes.update(better)
    return len(better)


class FreeDims:
    """The free dims kept free: every shape is found as formulas in them (archkit.onnx.symbolic), the
    analysis sees their values at `point` (each free dim 1: per sample), and `formulas` keeps
    the formulas of every tensor whose shape depends on a free dim."""

    def __init__(self, names: list[str]) -> None:
        self.symbols = Symbols(names)
        self.point = {n: 1 for n in names}
        self.formulas: dict[str, tuple[Dim, ...]] = {}
        self.merged: list[Merge] = []  # two formulas taken as equal
        self._done: dict[int, _Converted | None] = {}
        self._kept: list[ShapeRecord] = []
        # tensors whose formula is negative at the point (a kernel wider than 1): empty there, the
        # formula still right for larger values
        self.invalid: set[str] = set()

    def concrete(self, shapes: dict[str, ShapeRecord]) -> None:
        """Shapes read with formula dims (dim_params the build knows) → their values at the point,
        the formulas kept; a shape with a dim no formula gives stays unknown."""
        get, point, formulas, done = self.symbols.exprs.get, self.point, self.formulas, self._done
        for k, r in shapes.items():
            shape, dtype, known = r
            if known or shape is None:
                continue
            key = id(r)  # shapes repeat (one shared record per type, _read_shapes): converted once
            if key in done:
                hit = done[key]
            else:
                hit = done[key] = self._convert(shape, dtype, get, point)
                self._kept.append(r)  # its id stays its own
            if hit is not None:
                formulas[k] = hit[0]
                shapes[k] = hit[1]
                if hit[2]:
                    self.invalid.add(k)

    @staticmethod
    def _convert(shape: Shape, dtype: str, get: Callable[[str], Expr | None],
                 point: Mapping[str, int]) -> _Converted | None:
        """(the formulas, the record of their values at the point, whether one is negative there);
        None where a dim is no formula of the build's."""
        dims: list[Dim] = []
        for d in shape:
            e = get(d) if isinstance(d, str) else d
            if e is None:
                return None
            dims.append(e)
        ints = tuple(value(d, point) for d in dims)
        if any(i < 0 for i in ints):  # a window wider than the free dims' value: no frames there
            return tuple(dims), (tuple(max(i, 0) for i in ints), dtype, True), True
        return tuple(dims), (ints, dtype, True), False


# onnxruntime's symbolic shape inference propagates values with no bound of its own: it runs in a
# child process with an address-space limit and a timeout, and whatever stops it is a warning.
_SSI_CODE = """
import logging, resource, sys
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
import onnx
from onnxruntime.tools import symbolic_shape_infer as ssi
logging.getLogger(ssi.__name__).setLevel(logging.CRITICAL)
model = onnx.load(sys.argv[1] + "/in.onnx")
out = ssi.SymbolicShapeInference.infer_shapes(model, 2**31 - 1, True, False, 0)
onnx.save(out, sys.argv[1] + "/out.onnx")
"""
SSI_MEMORY = 4 * 2**30  # bytes of address space the child may use (ARCHKIT_SSI_MEMORY overrides)
SSI_TIMEOUT = 120.0  # seconds (ARCHKIT_SSI_TIMEOUT overrides)


def _symbolic_infer(inferred: onnx.ModelProto) -> tuple[onnx.ModelProto | None, str | None]:
    """onnxruntime's symbolic shape inference (auto_merge: dims that meet are taken as equal), in
    a child process: (the inferred model, None), or (None, why it gave nothing)."""
    memory = int(os.environ.get("ARCHKIT_SSI_MEMORY") or SSI_MEMORY)
    timeout = float(os.environ.get("ARCHKIT_SSI_TIMEOUT") or SSI_TIMEOUT)
    with tempfile.TemporaryDirectory(prefix="archkit-ssi-") as tmp:
        with open(os.path.join(tmp, "in.onnx"), "wb") as f:
            f.write(inferred.SerializeToString())
        try:
            proc = subprocess.run([sys.executable, "-c", _SSI_CODE, tmp, str(memory)], check=False, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            return None, f"did not finish within {timeout:g} s (ARCHKIT_SSI_TIMEOUT)"
        except OSError as e:
            return None, f"could not start ({e.strerror})"
        if proc.returncode != 0:
            lines = proc.stderr.decode(errors="replace").strip().splitlines()
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            if "MemoryError" in last or proc.returncode == -9:
                return None, f"reached its {memory / 2**30:g} GiB memory limit (ARCHKIT_SSI_MEMORY)"
            return None, f"failed: {last[:200]}"
        try:
            out = onnx.load(os.path.join(tmp, "out.onnx"))
        except Exception as e:  # noqa: BLE001 - whatever the child left there, it is no model
            return None, f"wrote no model ({type(e).__name__})"
    return out, None


# --- the graph ------------------------------------------------------------------------------

_A = onnx.AttributeProto
_UNKNOWN: ShapeRecord = (None, "undefined", False)
_new = tuple.__new__  # TensorInfo(...) without its Python-level __new__: they are many
_NO_ATTRS: Mapping[str, Any] = MappingProxyType({})  # shared by the many nodes without attributes (read-only)


def _attrs(node: onnx.NodeProto) -> tuple[dict[str, Any], bool]:
    """Plain Python values, and whether some attribute holds a graph. Tensors and graphs are
    described, not copied."""
    out: dict[str, Any] = {}
    graphs = False
    for a in node.attribute:
        t = a.type
        v: Any
        if t == _A.INT:
            v = a.i
        elif t == _A.INTS:
            v = tuple(a.ints)
        elif t == _A.FLOAT:
            v = a.f
        elif t == _A.STRING:
            v = a.s.decode("utf-8", "replace")
        elif t == _A.FLOATS:
            v = tuple(a.floats)
        elif t == _A.TENSOR:
            v = TensorInfo(a.name, tuple(a.t.dims), dtype_name(a.t.data_type))
        elif t in (_A.GRAPH, _A.GRAPHS):
            v = f"<subgraph {a.name}>"
            graphs = True
        elif t == _A.STRINGS:
            v = tuple(x.decode("utf-8", "replace") for x in a.strings)
        else:
            v = helper.get_attribute_value(a)
            if isinstance(v, list):
                v = tuple(v)
        out[a.name] = v
    return out, graphs


class _LazyAttrs(Mapping[str, Any]):
    """A node's attributes (as _attrs decodes them), decoded on first access: most are never
    read, and decoding them all is a quarter of the graph build. Read-only."""

    __slots__ = ("_d", "_node")

    def __init__(self, node: onnx.NodeProto) -> None:
        self._node: onnx.NodeProto | None = node
        self._d: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        d = self._d
        if d is None:
            node = self._node
            d = self._d = _attrs(node)[0] if node is not None and len(node.attribute) else {}
            self._node = None  # the model's nodes need not stay alive for this one
        return d

    def __getitem__(self, key: str) -> Any:
        return self._load()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._load().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __eq__(self, other: object) -> bool:
        return self._load() == (other._load() if isinstance(other, _LazyAttrs) else other)

    def __repr__(self) -> str:
        return repr(self._load())


def _read_shapes(vis: Iterable[onnx.ValueInfoProto], into: dict[str, ShapeRecord],
                 cache: dict[bytes, ShapeRecord]) -> None:
    """name → (shape, dtype, known), the decoding shared between equal types."""
    for vi in vis:
        t = vi.type
        key = t.SerializeToString()
        r = cache.get(key)
        if r is None:
            shape, dt = _type_shape(t)
            r = cache[key] = (shape, dt, shape is not None and all(d.__class__ is int for d in shape))
        into[vi.name] = r


class _Builder:
    """One pass over the (inferred) graph and its subgraphs, in file order, straight into the
    networkx adjacency dicts: node id → data, successors, predecessors."""

    def __init__(self, shapes: Mapping[str, ShapeRecord], initializers: Mapping[str, Described],
                 shape_cache: dict[bytes, ShapeRecord]) -> None:
        self.node: dict[str, OpNode | TensorNode] = {}
        self.succ: dict[str, dict[str, Edge]] = {}
        self.pred: dict[str, dict[str, Edge]] = {}
        self.late: list[tuple[str, str, Mapping[str, str]]] = []  # inputs not produced earlier in file order
        self.cache = shape_cache
        self.shapes = shapes
        self.inits = initializers
        self.unknown = False  # some op output that is read (by an op or as a graph output) has no shape
        self.unread: set[str] = set()  # outputs without a shape that nothing has read yet
        self.index = 0
        self.ifs: list[str] = []  # If node ids: their conditions may be known (_conditions)
        self.free: FreeDims | None = None  # free dims kept as formulas (subgraph shapes are read in them too)
        self.producer: dict[str, str] = {}  # main-graph tensor → the node id producing it (set by _walk)

    def edge(self, src: str, dst: str, tensor: str) -> None:
        e = self.succ[src].get(dst)
        if e is None:
            e = {"tensors": (tensor,)}
            self.succ[src][dst] = e
            self.pred[dst][src] = e
        elif tensor not in e["tensors"]:
            e["tensors"] += (tensor,)

    def add(self, nid: str, data: OpNode | TensorNode) -> None:
        self.node[nid] = data
        self.succ[nid] = {}
        self.pred[nid] = {}

    def walk(self, g: onnx.GraphProto, shapes: MutableMapping[str, ShapeRecord], inits: MutableMapping[str, Described],
             producer: Mapping[str, str], local: dict[str, str], prefix: str, parent: str | None, sub: str | None,
             originals: Sequence[onnx.NodeProto] | None = None) -> None:
        """`originals`: the same nodes in the caller's model, which the lazy attributes then hold
        (so that the inferred copy can be freed once the graph is built)."""
        node_d, succ, pred, late = self.node, self.succ, self.pred, self.late
        infos: dict[str, TensorInfo] = {}
        infos_get, inits_get, shapes_get, producer_get = infos.get, inits.get, shapes.get, producer.get
        late_append = late.append
        unknown = False
        unread = self.unread
        index = self.index
        position = -1
        for node in g.node:
            position += 1
            name = node.name
            op_type = node.op_type
            domain = node.domain
            if name.__class__ is not str or op_type.__class__ is not str or domain.__class__ is not str:
                _not_text(node)  # protobuf hands back bytes for a string that is not UTF-8
            nid = prefix + (name or f"{op_type}_{position}")
            if nid in node_d or (not prefix and nid.startswith(("input:", "output:"))):
                nid = f"{nid}#{position}"
            sub_outputs = None
            attrs: Mapping[str, Any]
            if not domain and op_type not in SUBGRAPH_OPS:
                # most are never read (a Conv's cost needs shapes only)
                attrs = _LazyAttrs(node if originals is None else originals[position])
            elif node.attribute:
                attrs, graphs = _attrs(node)
                if graphs:
                    if op_type == "If" and not domain:
                        self.ifs.append(nid)
                    sub_outputs = []
                    self.index = index
                    for a in node.attribute:
                        subs = [a.g] if a.type == _A.GRAPH else list(a.graphs) if a.type == _A.GRAPHS else []
                        for k, sg in enumerate(subs):
                            sub_outputs += self._subgraph(sg, shapes, inits, producer, nid,
                                                          a.name if len(subs) == 1 else f"{a.name}[{k}]")
                    index = self.index
            else:
                attrs = _NO_ATTRS
            ins: list[TensorInfo | None] = []
            p: dict[str, Edge] = {}
            for n in node.input:
                t = infos_get(n)
                if unread and n in unread:
                    unknown = True
                if t is None:
                    if not n:
                        ins.append(None)
                        continue
                    if n.__class__ is not str:
                        _not_text(node)
                    init = inits_get(n)
                    if init is not None:
                        ins.append(_new(TensorInfo, (n, init[0], init[1], True)))  # an initializer: no producer
                        continue
                    r = shapes_get(n) or _UNKNOWN
                    t = infos[n] = _new(TensorInfo, (n, r[0], r[1], False))
                ins.append(t)
                src = producer_get(n)
                if src is not None:
                    e = p.get(src)
                    if e is None:
                        p[src] = e = {"tensors": (n,)}
                        succ[src][nid] = e
                    elif n not in e["tensors"]:
                        e["tensors"] += (n,)
                else:
                    late_append((nid, n, producer))
            outs = []
            for n in node.output:
                if n:
                    if n.__class__ is not str:
                        _not_text(node)
                    r = shapes_get(n) or _UNKNOWN
                    if r is _UNKNOWN and op_type == "Dropout" and n != node.output[0] and domain in ("", "ai.onnx"):
                        r = self._dropout_mask(n, node.input[0], shapes)
                    if not r[2]:
                        unread.add(n)  # unknown only if something reads it (not, e.g., Dropout's mask)
                    t = infos[n] = _new(TensorInfo, (n, r[0], r[1], False))
                    outs.append(t)
                    if n in local:
                        raise MalformedModelError(f"tensor {n!r} is produced twice (by {local[n]!r} and {nid!r})")
                    local[n] = nid
            node_d[nid] = OpNode(index, name, op_type, domain or "ai.onnx", attrs, tuple(ins), tuple(outs), parent, sub)
            succ[nid] = {}
            pred[nid] = p
            index += 1
            if sub_outputs:  # a subgraph's results flow into its If/Loop/Scan node
                for src, n in sub_outputs:
                    if src is not None:
                        self.edge(src, nid, n)
        self.index = index
        self.unknown |= unknown

    def _dropout_mask(self, mask: str, data: str, shapes: Mapping[str, ShapeRecord]) -> ShapeRecord:
        """The mask of Dropout-1/6/7, which onnx leaves untyped: the schema makes it the input's type
        and shape (from opset 10 it is bool, and onnx gives it)."""
        r = shapes.get(data) or _UNKNOWN
        free = self.free
        if free is not None and data in free.formulas:
            free.formulas[mask] = free.formulas[data]
        return r

    def _subgraph(self, sg: onnx.GraphProto, shapes: MutableMapping[str, ShapeRecord],
                  inits: MutableMapping[str, Described], producer: Mapping[str, str], parent: str,
                  attr: str) -> list[tuple[str | None, str]]:
        local_shapes: dict[str, ShapeRecord] = {}
        _read_shapes(sg.input, local_shapes, self.cache)
        _read_shapes(sg.value_info, local_shapes, self.cache)
        _read_shapes(sg.output, local_shapes, self.cache)
        if self.free is not None:
            self.free.concrete(local_shapes)
        for k, v in local_shapes.items():  # what the shape engine found beats onnx's partial answer
            if not v[2]:
                outer = shapes.get(k)
                if outer is not None and outer[2]:
                    local_shapes[k] = outer
        local_inits = {t.name: (tuple(t.dims), dtype_name(t.data_type)) for t in sg.initializer}
        formal = {i.name for i in sg.input}
        local: dict[str, str] = {}
        self.walk(sg, ChainMap(local_shapes, shapes), ChainMap(local_inits, inits), _Scope(local, formal, producer),
                  local, f"{parent}/{attr}/", parent, attr)
        if self.unread and any(o.name in self.unread for o in sg.output):
            self.unknown = True
        return [(local.get(o.name), o.name) for o in sg.output]


class _Scope(Mapping[str, str]):
    """A subgraph's producer map: tensor → the id of the op producing it, its own ops first, then
    the enclosing scope's; its formal inputs shadow outer names and have no producer."""

    def __init__(self, local: Mapping[str, str], formal: set[str], outer: Mapping[str, str]) -> None:
        self.local, self.formal, self.outer = local, formal, outer

    def get(self, k: str, default: Any = None) -> Any:
        v = self.local.get(k)
        if v is not None:
            return v
        return default if k in self.formal else self.outer.get(k, default)

    def __getitem__(self, k: str) -> str:
        v = self.get(k)
        if v is None:
            raise KeyError(k)
        return v

    def __contains__(self, k: object) -> bool:
        return isinstance(k, str) and self.get(k) is not None

    def __iter__(self) -> Iterator[str]:
        return (k for k in dict.fromkeys((*self.local, *self.outer)) if k in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def declares(self, k: str) -> bool:
        """Whether `k` is a formal input here or in an enclosing subgraph (provided, by no op)."""
        outer = self.outer
        return k in self.formal or isinstance(outer, _Scope) and outer.declares(k)


def build_graph(model: onnx.ModelProto, *, input_shapes: InputShapes | None = None,
                symbolic: bool = True, input_values: Mapping[str, Sequence[float]] | None = None) -> nx.DiGraph:
    """Build the analysis graph.

    `input_shapes` maps a graph input's name to its full shape, or a symbolic dim's name (as the
    file declares it, e.g. "N" or "batch") to its value. Symbolic input dims not fixed this way
    stay free: the nodes hold shapes with each at 1 (costs are then per sample;
    `graph.graph["fixed_dims"]` records which) and `graph.graph["formulas"]` their formulas.
    `symbolic`: try onnxruntime's symbolic shape inference when onnx leaves op shapes unknown.
    `input_values` maps a graph input's name to its value (its elements in order: one for a
    scalar), which the shape engine uses, and which decides an If whose condition follows from it
    (`graph.graph["conditions"]`).
    """
    enabled = gc.isenabled()
    gc.disable()  # many small long-lived objects: collections only cost time here
    try:
        G = _build(model, input_shapes or {}, symbolic, input_values or {})
        # (the op records say faster than the file's protobuf nodes whether runtime_shapes has work)
        value_shaped = any(getattr(d, "op_type", None) in _VALUE_SHAPED for d in G._node.values())
        G.graph["runtime_shapes"] = runtime_shapes(model) if value_shaped else None
        return G
    finally:
        if enabled:
            gc.enable()


# Ops whose output shape onnx's inference reads from an input's values (a Reshape's target, a
# Slice's bounds): without data propagation it knows that shape only when the values are stored.
_VALUE_SHAPED = frozenset({
    "Reshape", "Expand", "Tile", "ConstantOfShape", "Resize", "Upsample", "Slice", "Pad", "Range", "OneHot", "Squeeze",
    "Unsqueeze", "Split", "TopK", "CenterCropPad", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Compress", "NonZero"})


def runtime_shapes(model: onnx.ModelProto) -> dict[str, tuple] | None:
    """The shapes onnxruntime's allocation planner knows, which its buffer reuse compares: onnx's
    inference without data propagation over the file's own input shapes, every dim a number or a
    dim_param (the file's own, not one inference made up). None when no main-graph op's shape is
    read from values: then the planner knows every shape archkit's analysis finds."""
    if not any(n.op_type in _VALUE_SHAPED and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return None
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]  # as the file declares them
    skeleton, _, _, _ = _skeleton(model, (inputs, {}), declared=True)
    try:
        plain = _infer(skeleton, data_prop=False)
    except MalformedModelError:
        return {}  # onnx refuses what archkit's engine resolved: the planner knows no shape
    out: dict[str, tuple] = {}
    for vi in (*plain.graph.input, *plain.graph.value_info, *plain.graph.output):
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim)
        if all(d.__class__ is int or (d and not d.startswith("unk__")) for d in dims):  # unk__: onnx made it up
            out[vi.name] = dims
    return out


def _build(model: onnx.ModelProto, input_shapes: InputShapes, symbolic: bool,
           input_values: Mapping[str, Sequence[float]]) -> nx.DiGraph:
    inputs, fixed = _fix_inputs(model, input_shapes, keep_free=True)
    why = None
    if fixed:
        # the free dims kept free: shapes and costs as formulas in them, when every shape follows
        names = dict.fromkeys(n or f"{i}:{axis}" for i, axes in fixed.items() for axis, n in axes.items())
        try:
            return _build_once(model, (inputs, fixed), symbolic, input_values, FreeDims(list(names)))
        except (_NotFollowed, MalformedModelError):  # onnx's inference may refuse formulas where it accepts values
            why = "some shapes could not be followed in the free dims"
        inputs, fixed = _fix_inputs(model, input_shapes)
    G = _build_once(model, (inputs, fixed), symbolic, input_values, None)
    G.graph["formulas"] = None
    G.graph["no_formulas"] = why
    return G


class _NotFollowed(Exception):
    """Some shape read by an op could not be found in formulas: the free dims are set to 1 instead."""


def _build_once(model: onnx.ModelProto, fixed_inputs: FixedInputs, symbolic: bool,
                input_values: Mapping[str, Sequence[float]], free: FreeDims | None) -> nx.DiGraph:
    """The graph over the inputs `_fix_inputs` gave (inputs, fixed); with `free` (the free dims
    left free in them), _NotFollowed when some shape read by an op could not be found in formulas."""
    skeleton, fixed, initializers, inline = _skeleton(model, fixed_inputs)
    inferred, propagated = _infer_bounded(model, skeleton)
    g = inferred.graph
    cache: dict[bytes, ShapeRecord] = {}
    shapes: dict[str, ShapeRecord] = {}
    # the graph's own inputs come first; the typed inputs after them are the initializers
    n_inputs = sum(1 for i in model.graph.input if i.name not in initializers)
    graph_inputs = g.input[:n_inputs] if n_inputs < len(g.input) else g.input
    _read_shapes(graph_inputs, shapes, cache)
    _read_shapes(g.value_info, shapes, cache)
    # a graph input that is also a graph output keeps its declared shape: _skeleton cleared the output's dims
    declared = {i.name for i in graph_inputs}
    _read_shapes((o for o in g.output if o.name not in declared), shapes, cache)
    if free is not None:
        free.concrete(shapes)
    values = _input_values(graph_inputs, input_values)  # + the values the shape engine finds

    how = "onnx" if propagated else "onnx-unpropagated"  # large generated tensors: onnx's data_prop off
    b = _walk(model, g, shapes, initializers, cache, free)
    engine_ran = False
    if b.unknown:
        found = _engine(model, inferred, shapes, cache, values, free)
        engine_ran = True
        if found:
            b = _walk(model, g, shapes, initializers, cache, free)
            how += "+archkit"
    if b.ifs and not engine_ran:  # an If's condition may be computed from constants and shapes
        _engine(model, inferred, shapes, cache, values, free)
    warnings: list[str] = []
    if free is not None:
        if b.unknown:
            raise _NotFollowed  # the caller builds again with the free dims set to 1
    elif b.unknown and symbolic:
        better, failed = _symbolic_infer(inferred)
        if failed:
            warnings.append(f"onnxruntime's symbolic shape inference, tried for the shapes archkit could not "
                            f"find, {failed}")
        if better is not None:
            override: dict[str, ShapeRecord] = {}
            _read_shapes(better.graph.value_info, override, cache)
            _read_shapes(better.graph.output, override, cache)
            override = {k: v for k, v in override.items() if v[2] and not (shapes.get(k) or _UNKNOWN)[2]}
            if override:
                shapes.update(override)
                b = _walk(model, g, shapes, initializers, cache)
                how += "+onnxruntime-symbolic"

    G = nx.DiGraph(
        name=model.graph.name,
        opset={o.domain or "ai.onnx": o.version for o in model.opset_import},
        ir_version=model.ir_version,
        # tf2onnx appends its git hash to the version, "None" when it was not built from git
        producer=" ".join([model.producer_name, *(w for w in model.producer_version.split(" ") if w != "None")]).strip(),
        metadata={p.key: p.value for p in model.metadata_props},
        fixed_dims=fixed,
        initializers=initializers,
        constants=_int_values(inline),
        shape_inference=how,
        warnings=tuple(warnings),
    )
    sorted_ = True
    for nid, name, scope in b.late:
        src = scope.get(name)
        if src is None:
            if isinstance(scope, _Scope) and scope.declares(name):
                continue  # a formal input of the subgraph or of one enclosing it
            raise MalformedModelError(f"op {nid!r} reads tensor {name!r}, which no op, graph input or initializer "
                                      "provides")
        sorted_ = False
        b.edge(src, nid, name)
    for out in model.graph.output:
        nid = f"output:{out.name}"
        if nid in b.node:
            raise MalformedModelError(f"graph output {out.name!r} is listed twice")
        r = shapes.get(out.name) or _UNKNOWN
        b.add(nid, TensorNode("output", TensorInfo(out.name, r[0], r[1])))
        src = b.producer.get(out.name)
        if src is not None:
            b.edge(src, nid, out.name)
        elif out.name not in initializers:
            raise MalformedModelError(f"graph output {out.name!r} is produced by nothing")
    _fill(G, b)
    ops = [nid for nid, d in b.node.items() if d["kind"] == "op"]
    G.graph["op_order"] = tuple(ops) if sorted_ else _topological(G)
    G.graph["conditions"] = _conditions(G, b.ifs, values, input_values) if b.ifs else {}
    G.graph["formulas"] = None if free is None else free  # archkit.costs reads .formulas, .point, .merged
    G.graph["no_formulas"] = None
    return G


# --- If conditions: which branch runs, when the file or the caller says -----------------------

def _input_values(inputs: Iterable[onnx.ValueInfoProto], given: Mapping[str, Sequence[float]]) -> dict[str, np.ndarray]:
    """The values given for graph inputs, as arrays of the inputs' element types and (fixed) shapes."""
    if not given:
        return {}
    by_name = {i.name: i for i in inputs}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise UsageError(f"--input-value names no graph input: {unknown}; inputs are {sorted(by_name)}")
    out = {}
    for name, given_v in given.items():
        declared, dtype = _type_shape(by_name[name].type)
        if dtype not in _NUMBERS:
            raise UsageError(f"--input-value {name}: the input holds {dtype}; values can be given for bool, integer, "
                             "float16, float and double inputs")
        v = tuple(given_v)
        shape: tuple[int, ...]
        if declared is None:  # rank unknown: a scalar, or a vector of what is given
            shape = () if len(v) == 1 else (len(v),)
        elif all(isinstance(d, int) for d in declared):
            shape = tuple(d for d in declared if isinstance(d, int))
        else:
            raise UsageError(f"--input-value {name}: the input's shape {list(declared)} has free dims: fix them with "
                             "--input-shape")
        if len(v) != math.prod(shape):
            raise UsageError(f"--input-value {name}: {len(v)} value(s) given; the input has shape {list(shape)} "
                             f"({math.prod(shape)} element(s))")
        np_type = np.dtype(helper.tensor_dtype_to_np_dtype(by_name[name].type.tensor_type.elem_type))
        out[name] = np.array(input_value_range(name, v, np_type, dtype), dtype=np_type).reshape(shape)
    return out


def input_value_range(name: str, values: Sequence[float], np_type: np.dtype, type_name: str) -> tuple:
    """--input-value's values for an input of `np_type` (`type_name`: ONNX's name of it): integers
    within the type's range for an integer or bool input, finite in range for a float one; else a
    UsageError naming the input."""
    if np_type.kind in "iub":
        lo, hi = (0, 1) if np_type.kind == "b" else (int(np.iinfo(np_type).min), int(np.iinfo(np_type).max))
        if not all((isinstance(x, int) or x.is_integer()) and lo <= x <= hi for x in values):
            raise UsageError(f"--input-value {name}: the input holds {type_name}: give integers from {lo} to {hi}")
        return tuple(int(x) for x in values)
    if not all(abs(x) <= float(np.finfo(np_type).max) for x in values):
        raise UsageError(f"--input-value {name}: a value is out of range for {type_name}")
    return tuple(values)


_NUMBERS = frozenset({"float", "float16", "double", "bool", "int8", "int16", "int32", "int64", "uint8",
                      "uint16", "uint32", "uint64"})


def _conditions(G: nx.DiGraph, ifs: list[str], values: Mapping[str, np.ndarray],
                given: Mapping[str, Sequence[float]]) -> dict[str, tuple[bool, str]]:
    """If node id → (its condition, how that is known), for the Ifs whose condition is a constant
    or a given input's value, directly or through main-graph ops the shape engine evaluated."""
    nodes, pred = G._node, G._pred
    reach = {n: nx.descendants(G, f"input:{n}") for n in given}  # once per input, not per If
    out = {}
    for nid in ifs:
        data = nodes[nid]
        cond = data["inputs"][0] if data["inputs"] else None
        if cond is None:
            continue
        src = next((p for p, e in pred[nid].items() if cond.name in e["tensors"]), None)
        how: str | None
        if src is None:  # an initializer; in a subgraph it may be the subgraph's own, whose value is not read
            if not cond.initializer or data["parent"] is not None:
                continue
            how = "a constant"
        elif nodes[src]["kind"] == "input":
            how = f"input {cond.name} = {_value_text(given[cond.name])}, given" if cond.name in given else None
        elif nodes[src].get("parent") is None:
            from_inputs = sorted(n for n in given if src in reach[n])
            how = ("computed from the given " + ", ".join(f"input {n} = {_value_text(given[n])}" for n in from_inputs)
                   if from_inputs else "computed from constants and shapes")
        else:
            continue  # computed inside a subgraph: the engine evaluates the main graph only
        v = values.get(cond.name)
        if how is not None and v is not None and v.size == 1:
            out[nid] = (bool(v.reshape(-1)[0]), how)
    return out


def _value_text(v: Sequence[float]) -> str:
    return ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)


def _not_text(node: onnx.NodeProto) -> None:
    for what, values in (("name", [node.name]), ("op_type", [node.op_type]), ("domain", [node.domain]),
                         ("input", node.input), ("output", node.output)):
        for v in values:
            if isinstance(v, bytes):  # protobuf's stubs say str, but a string that is not UTF-8 comes as bytes
                raise MalformedModelError(f"an op's {what} is not valid UTF-8: {v[:40]!r}")


def _walk(model: onnx.ModelProto, g: onnx.GraphProto, shapes: dict[str, ShapeRecord], initializers: dict[str, Described],
          cache: dict[bytes, ShapeRecord], free: FreeDims | None = None) -> _Builder:
    b = _Builder(shapes, initializers, cache)
    b.free = free
    producer: dict[str, str] = {}
    for i in model.graph.input:
        if i.name not in initializers:
            nid = f"input:{i.name}"
            r = shapes.get(i.name) or _UNKNOWN
            b.add(nid, TensorNode("input", TensorInfo(i.name, r[0], r[1])))
            producer[i.name] = nid
    originals = model.graph.node if len(model.graph.node) == len(g.node) else None
    b.walk(g, shapes, initializers, producer, producer, "", None, None, originals)
    if b.unread and (any(o.name in b.unread for o in model.graph.output)
                     or any(n in b.unread for _, n, _ in b.late)):  # read before it is produced: an unsorted file
        b.unknown = True
    b.producer = producer
    return b


def _int_values(tensors: list[onnx.TensorProto]) -> dict[str, tuple[int, ...]]:
    """The values of the small inline int32/int64 initializers (pads, axes, shapes)."""
    ints = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
    return {t.name: tuple(int(v) for v in numpy_helper.to_array(t).ravel())
            for t in tensors if t.data_type in ints and has_data(t)}


def _fill(G: nx.DiGraph, b: _Builder) -> None:
    """Hand the adjacency built in one pass to networkx: what add_nodes_from + add_edges_from
    would do, without their per-item checks and copies (the ids are new and unique, every edge's
    ends exist): a third of the build time otherwise."""
    if type(G) is nx.DiGraph and all(hasattr(G, a) for a in ("_node", "_succ", "_pred")) and G._succ is G._adj:
        G._node.update(b.node)
        G._succ.update(b.succ)
        G._pred.update(b.pred)
        return
    G.add_nodes_from(b.node.items())
    G.add_edges_from((s, d, e) for s, nbrs in b.succ.items() for d, e in nbrs.items())


def _topological(G: nx.DiGraph) -> tuple[str, ...]:
    """Op node ids in topological order, ties broken by file order."""
    try:
        order = nx.lexicographical_topological_sort(G, key=lambda n: (G.nodes[n].get("index", -1), n))
        return tuple(n for n in order if G.nodes[n]["kind"] == "op")
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(G)
        raise MalformedModelError(f"the graph has a cycle through {cycle[0][0]!r}") from None


def op_nodes(G: nx.DiGraph) -> Iterator[tuple[str, OpNode]]:
    """Op nodes in topological order (ties broken by file order)."""
    order = G.graph.get("op_order")
    if order is None:
        order = _topological(G)
    nodes = G._node if isinstance(getattr(G, "_node", None), dict) else G.nodes
    return ((nid, nodes[nid]) for nid in order)
