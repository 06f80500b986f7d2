"""ONNX model → networkx.DiGraph with resolved shapes.

A node per ONNX op (kind "op"), a pseudo-node per graph input ("input") and output ("output"),
an edge per tensor from producer to consumer (edge attribute `tensors`). Initializers are not
nodes: they are described (name, dims, dtype) on their consumers' inputs. Weights are never
copied: shape inference runs on a skeleton whose initializers are typed graph inputs, which is
both faster (no weight serialisation) and independent of external data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import networkx as nx
import onnx
from onnx import helper, numpy_helper  # noqa: F401  (numpy_helper: dtype names)

from archkit.errors import MalformedModelError, UsageError

__all__ = ["TensorInfo", "build_graph", "op_nodes", "dtype_name", "FLOAT_TYPES"]

Dim = int | str | None  # int: known; str: symbolic name; None: unknown


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[Dim, ...] | None  # None: rank unknown
    dtype: str
    initializer: bool = False

    @property
    def known(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape or ():
            n *= d
        return n


FLOAT_TYPES = frozenset({"float", "float16", "bfloat16", "double"})


def dtype_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "undefined"


def _type_shape(t: onnx.TypeProto) -> tuple[tuple[Dim, ...] | None, str]:
    if not t.HasField("tensor_type"):
        return None, t.WhichOneof("value") or "undefined"
    tt = t.tensor_type
    if not tt.HasField("shape"):
        return None, dtype_name(tt.elem_type)
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
    return dims, dtype_name(tt.elem_type)


def _skeleton(model: onnx.ModelProto, input_shapes: Mapping[str, tuple[int, ...]]) -> tuple[onnx.ModelProto, dict]:
    """A weight-free copy for shape inference; symbolic input dims fixed (given ones, else 1)."""
    g = model.graph
    sk = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import)
    sk.graph.name = g.name
    sk.graph.node.extend(g.node)
    sk.graph.output.extend(g.output)
    init_names = {t.name for t in g.initializer}
    fixed: dict[str, dict[int, str | None]] = {}
    unknown_inputs = set(input_shapes) - {i.name for i in g.input}
    if unknown_inputs:
        raise UsageError(f"--input-shape names no graph input: {sorted(unknown_inputs)}; inputs are "
                         f"{[i.name for i in g.input if i.name not in init_names]}")
    for inp in g.input:
        if inp.name in init_names:
            continue
        vi = sk.graph.input.add()
        vi.CopyFrom(inp)
        dims = vi.type.tensor_type.shape.dim if vi.type.HasField("tensor_type") else []
        if inp.name in input_shapes:
            want = input_shapes[inp.name]
            if len(want) != len(dims):
                raise UsageError(f"--input-shape {inp.name}: rank {len(want)} given, the model's input has rank {len(dims)}")
            for d, v in zip(dims, want):
                d.Clear()
                d.dim_value = v
            continue
        for axis, d in enumerate(dims):
            if not d.HasField("dim_value"):
                fixed.setdefault(inp.name, {})[axis] = d.dim_param or None
                d.Clear()
                d.dim_value = 1
    for t in g.initializer:
        if _is_shape_data(t):
            sk.graph.initializer.append(t)  # Reshape targets, Slice bounds: inference needs the values
        else:
            sk.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return sk, fixed


_INT_TYPES = {onnx.TensorProto.INT64, onnx.TensorProto.INT32}


def _is_shape_data(t: onnx.TensorProto) -> bool:
    """Small integer constants held inline: shapes, axes, indices."""
    external = t.data_location == onnx.TensorProto.EXTERNAL
    return t.data_type in _INT_TYPES and not external and len(t.dims) <= 1 and (not t.dims or t.dims[0] <= 64)


def build_graph(model: onnx.ModelProto, *, input_shapes: Mapping[str, tuple[int, ...]] | None = None) -> nx.DiGraph:
    """Build the analysis graph. Symbolic input dims not fixed by `input_shapes` are set to 1
    (costs are then per sample); `graph.graph["fixed_dims"]` records which."""
    skeleton, fixed = _skeleton(model, input_shapes or {})
    try:
        inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=True)
    except Exception as e:  # onnx raises several C++-backed kinds; all mean the graph is inconsistent
        raise MalformedModelError(f"shape inference failed: {str(e).strip().splitlines()[0]}") from None

    g = inferred.graph
    shapes: dict[str, tuple[tuple[Dim, ...] | None, str]] = {}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        shapes[vi.name] = _type_shape(vi.type)
    initializers = {t.name: (tuple(t.dims), dtype_name(t.data_type)) for t in model.graph.initializer}

    def info(name: str) -> TensorInfo:
        if name in initializers:
            dims, dt = initializers[name]
            return TensorInfo(name, dims, dt, initializer=True)
        shape, dt = shapes.get(name, (None, "undefined"))
        return TensorInfo(name, shape, dt)

    G = nx.DiGraph(
        name=model.graph.name,
        opset={o.domain or "ai.onnx": o.version for o in model.opset_import},
        ir_version=model.ir_version,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        metadata={p.key: p.value for p in model.metadata_props},
        fixed_dims=fixed,
        initializers=initializers,
    )
    producer: dict[str, str] = {}
    graph_inputs = [i.name for i in model.graph.input if i.name not in initializers]
    for name in graph_inputs:
        nid = f"input:{name}"
        G.add_node(nid, kind="input", tensor=info(name))
        producer[name] = nid

    used: set[str] = set()
    for index, node in enumerate(model.graph.node):
        nid = node.name or f"{node.op_type}_{index}"
        if nid in used or nid.startswith(("input:", "output:")):
            nid = f"{nid}#{index}"
        used.add(nid)
        G.add_node(
            nid,
            kind="op",
            index=index,
            name=node.name,
            op_type=node.op_type,
            domain=node.domain or "ai.onnx",
            attrs={a.name: _attr_value(a) for a in node.attribute},
            inputs=tuple(info(n) if n else None for n in node.input),
            outputs=tuple(info(n) for n in node.output if n),
        )
        for out in node.output:
            if out:
                if out in producer:
                    raise MalformedModelError(f"tensor {out!r} is produced twice (by {producer[out]!r} and {nid!r})")
                producer[out] = nid

    for nid, data in list(G.nodes(data=True)):
        if data["kind"] != "op":
            continue
        for t in data["inputs"]:
            if t is not None and t.name in producer:
                _connect(G, producer[t.name], nid, t.name)
    for out in model.graph.output:
        nid = f"output:{out.name}"
        G.add_node(nid, kind="output", tensor=info(out.name))
        if out.name in producer:
            _connect(G, producer[out.name], nid, out.name)
    return G


def _connect(G: nx.DiGraph, src: str, dst: str, tensor: str) -> None:
    if G.has_edge(src, dst):
        G.edges[src, dst]["tensors"] += (tensor,)
    else:
        G.add_edge(src, dst, tensors=(tensor,))


def _attr_value(a: onnx.AttributeProto):
    """Plain Python values; tensors and graphs are described, not copied."""
    if a.type == onnx.AttributeProto.TENSOR:
        return TensorInfo(a.name, tuple(a.t.dims), dtype_name(a.t.data_type))
    if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        return f"<subgraph {a.name}>"
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list):
        return tuple(x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v)
    return v


def op_nodes(G: nx.DiGraph) -> Iterable[tuple[str, dict]]:
    """Op nodes in topological order (ties broken by file order)."""
    if not nx.is_directed_acyclic_graph(G):
        cycle = nx.find_cycle(G)
        raise MalformedModelError(f"the graph has a cycle through {cycle[0][0]!r}")
    order = nx.lexicographical_topological_sort(G, key=lambda n: (G.nodes[n].get("index", -1), n))
    for nid in order:
        data = G.nodes[nid]
        if data["kind"] == "op":
            yield nid, data
