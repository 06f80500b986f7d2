"""The layer graph: the analysis graph's ops collapsed to layers, built once, read by every later stage.

A layer is what archkit.costs attributes an op to (a Keras layer for archkit's exports, a scope
otherwise). Only data ops count: ops that compute on the input (a float tensor that is not a
constant), not shape arithmetic or constant folding. An edge joins two layers wherever such a
tensor crosses from one to the other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple, cast

import networkx as nx

from archkit.connectivity.ops import (
    KERNEL_OPS,
    MAC_FREE,
    Shape,
    concrete,
    dim,
    inferred,
    is_data,
)
from archkit.costs import CostReport, OpCost
from archkit.onnx.graph import OpNode, TensorInfo, TensorNode, op_nodes

__all__ = ["DataOp", "Geometry", "LayerGraph", "Origin", "depths", "layer_graph"]

Origin = tuple[str, int]  # a graph input's axis: (input node id, axis)


class DataOp(NamedTuple):
    """An op of the wiring, with the tensors it reads from the input and the float tensors it makes."""

    nid: str
    node: OpNode
    ins: tuple[TensorInfo, ...]  # float inputs that are not constants
    outs: tuple[TensorInfo, ...]  # float outputs

    @property
    def op_type(self) -> str:
        return self.node.op_type


class Geometry(NamedTuple):
    """A conv layer's spatial kernel (dilated) and stride."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True)
class LayerGraph:
    inputs: tuple[tuple[str, TensorInfo], ...]  # graph inputs: (node id, tensor)
    ends: Mapping[str, TensorInfo]  # graph input and output node id → its tensor
    data_ops: tuple[DataOp, ...]  # in the graph's op order
    op: Mapping[str, DataOp]  # by node id
    const: frozenset[str]  # tensors that depend on no graph input: weights and what is computed from them alone
    producer: Mapping[str, str]  # tensor → the node making it (an op, or a graph input)
    shape: Mapping[str, Shape | None]
    constants: Mapping[str, tuple[int, ...]]  # values of small integer initializers (pads, axes)
    # Input axes whose symbolic dim was set to 1 for inference (not by the caller): sizes that
    # follow from them are not the network's, so a figure that needs such a size is unknown.
    defaulted: Mapping[Origin, str | None]
    layer_of: Mapping[str, str]  # node id → layer (graph inputs and outputs are layers of their own)
    block_of: Mapping[str, str]  # layer → block
    L: nx.DiGraph  # layers in network order (topological, ties by first op in the file); frozen
    rank: Mapping[str, int]  # layer → position in network order
    ops_of: Mapping[str, tuple[DataOp, ...]]
    weighted: frozenset[str]  # layers with a conv/dense op whose kernel is a constant and whose data is not
    kernel_op: Mapping[str, DataOp]  # weighted layer → its (first) kernel op
    geometry: Mapping[str, Geometry]  # weighted conv layers whose kernel size is known
    outputs: Mapping[str, tuple[str, ...]]  # layer → tensors it hands to other layers or to the graph's outputs
    macs: Mapping[str, int]
    macs_unknown: tuple[str, ...]  # ops that may hold MACs and were not costed
    macs_unknown_layers: frozenset[str]
    merged: tuple[tuple[str, ...], ...]  # layers merged because their ops interleave
    shapes_unknown: tuple[str, ...]  # data ops with an output that is read and whose shape was not inferred

    def layer_macs(self, layers: Iterable[str]) -> int | None:
        """MACs of some layers; None when one of them has an op that may hold MACs and was not costed."""
        layers = list(layers)
        if any(l in self.macs_unknown_layers for l in layers):
            return None
        return int(sum(self.macs.get(l, 0) for l in layers))

    def producer_layer(self, tensor: str) -> str | None:
        p = self.producer.get(tensor)
        return None if p is None else self.layer_of.get(p)

    def source_layer(self, node: str) -> str:
        """The layer of a provenance segment's source (an op, or a graph input)."""
        return self.layer_of.get(node, node)

    def size(self, shape: Shape | None, axis: int | None, origin: Origin | None) -> int | None:
        """A tensor's size along an axis, None when not inferred or when it follows from an input
        dim set to 1 by default (`origin`: the input axis it comes from, if known)."""
        if origin is not None and origin in self.defaulted:
            return None
        return dim(shape, axis)

    def kernel_unknown(self, layer: str) -> bool:
        """A weighted conv layer whose kernel size is neither an attribute nor an inferred shape."""
        k = self.kernel_op.get(layer)
        return k is not None and k.op_type == "Conv" and layer not in self.geometry


def _ops(G: nx.DiGraph) -> list[tuple[str, OpNode]]:
    """The main graph's ops in order: those inside subgraphs (If/Loop/Scan bodies) are not part of the wiring."""
    ops = ((nid, cast(OpNode, d)) for nid, d in op_nodes(G))  # op_nodes hands out the graph's OpNode records
    return [(nid, node) for nid, node in ops if not node.parent]


def _tensor_nodes(G: nx.DiGraph, kind: str) -> list[tuple[str, TensorInfo]]:
    return [(nid, d.tensor) for nid, d in G.nodes(data=True) if isinstance(d, TensorNode) and d.kind == kind]


def layer_graph(G: nx.DiGraph, costs: CostReport, constants: Mapping[str, tuple[int, ...]] | None = None
                ) -> LayerGraph:
    """The layer graph of an analysis graph whose ops `costs` attributes to layers and blocks.
    `constants`: values of small integer initializers (default: the graph's own)."""
    order = _ops(G)
    index = {nid: i for i, (nid, _) in enumerate(order)}
    cost = {o.node: o for o in costs.ops}
    inputs, outputs = _tensor_nodes(G, "input"), _tensor_nodes(G, "output")

    const: set[str] = set(G.graph.get("initializers", {}))
    producer: dict[str, str] = {t.name: nid for nid, t in inputs}
    for nid, node in order:
        for t in node.outputs:
            producer[t.name] = nid
        if all(t is None or t.name in const for t in node.inputs):
            const.update(t.name for t in node.outputs)
    shape: dict[str, Shape | None] = {}
    for _, node in order:
        for ti in (*node.inputs, *node.outputs):
            if ti is not None:
                shape[ti.name] = ti.shape
    for nid, d in G.nodes(data=True):
        if isinstance(d, TensorNode):
            shape[d.tensor.name] = d.tensor.shape

    layer_of, block_of = _layers(order, cost, inputs + outputs, producer)
    data_ops = []
    for nid, node in order:
        ins = tuple(t for t in node.inputs if t is not None and is_data(t) and t.name not in const)
        if ins and any(is_data(t) and t.name not in const for t in node.outputs):
            data_ops.append(DataOp(nid, node, ins, tuple(t for t in node.outputs if is_data(t))))
    succ = G.succ  # an output no op reads (Dropout's mask) needs no shape
    shapes_unknown = tuple(op.nid for op in data_ops
                           if any(is_data(t) and not inferred(t.shape)
                                  and any(t.name in e["tensors"] for e in succ[op.nid].values())
                                  for t in op.node.outputs))

    L, merged, layer_of = _graph(G, data_ops, inputs, outputs, layer_of, const)
    # Network order: topological, ties by first op in the file.
    first: dict[str, int] = {}
    for op in data_ops:
        first.setdefault(layer_of[op.nid], index[op.nid])
    end = len(index)
    ordered = list(nx.lexicographical_topological_sort(
        L, key=lambda n: (first.get(n, -1 if n.startswith("input:") else end), n)))
    rank = {n: i for i, n in enumerate(ordered)}
    net = nx.DiGraph()
    net.add_nodes_from(ordered)
    net.add_edges_from(sorted(L.edges, key=lambda e: (rank[e[1]], rank[e[0]])))

    ops_of: dict[str, list[DataOp]] = {}
    for op in data_ops:
        ops_of.setdefault(layer_of[op.nid], []).append(op)
    macs: Counter[str] = Counter()
    macs_unknown: list[str] = []
    macs_unknown_layers: set[str] = set()
    for o in cost.values():
        if not o.summed:  # an If's branch that is not counted is in no sum
            continue
        layer = layer_of.get(o.node, o.layer)
        macs[layer] += o.macs
        if o.status in ("unknown", "unsupported") and not (o.domain == "ai.onnx" and o.op_type in MAC_FREE):
            macs_unknown.append(o.node)
            macs_unknown_layers.add(layer)
    kernel_op = _kernel_ops(data_ops, layer_of, const)
    geometry = {layer: g for layer, op in kernel_op.items() if (g := _conv_geometry(op)) is not None}

    return LayerGraph(
        inputs=tuple(inputs), ends=dict(inputs + outputs), data_ops=tuple(data_ops), op={op.nid: op for op in data_ops},
        const=frozenset(const), producer=producer, shape=shape,
        constants=constants if constants is not None else G.graph.get("constants", {}),
        defaulted={(f"input:{name}", axis): d for name, axes in G.graph.get("fixed_dims", {}).items()
                   for axis, d in axes.items()},
        layer_of=layer_of, block_of=block_of, L=nx.freeze(net), rank=rank,
        ops_of={k: tuple(v) for k, v in ops_of.items()}, weighted=frozenset(kernel_op), kernel_op=kernel_op,
        geometry=geometry, outputs=_outputs(G, data_ops, layer_of, const), macs=dict(macs),
        macs_unknown=tuple(macs_unknown), macs_unknown_layers=frozenset(macs_unknown_layers), merged=merged,
        shapes_unknown=shapes_unknown)


def _layers(order: list[tuple[str, OpNode]], cost: Mapping[str, OpCost], ends: list[tuple[str, TensorInfo]],
            producer: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Each op's layer and each layer's block, from the cost report."""
    layer_of: dict[str, str] = {}
    block_of: dict[str, str] = {}
    for nid, _ in order:
        c = cost.get(nid)
        layer = c.layer if c else nid
        layer_of[nid] = layer
        block_of.setdefault(layer, c.block if c else layer)
    for nid, _ in ends:
        layer_of[nid] = nid
        block_of[nid] = nid
    # Exporters name the layout ops they insert after a consumer (tf2onnx's
    # `.../inception_3a_b4_pool_1/MaxPool2d__2`, the NHWC→NCHW transpose of the input that four
    # branches read): a Transpose that shares its layer with other ops belongs with its input.
    members = Counter(layer_of[nid] for nid, _ in order)
    for nid, node in order:
        if node.op_type == "Transpose" and members[layer_of[nid]] > 1:
            src = node.inputs[0].name if node.inputs and node.inputs[0] is not None else None
            p = producer.get(src) if src is not None else None
            if p is not None and layer_of.get(p, layer_of[nid]) != layer_of[nid]:
                members[layer_of[nid]] -= 1
                layer_of[nid] = layer_of[p]
    return layer_of, block_of


def _graph(G: nx.DiGraph, data_ops: list[DataOp], inputs: list[tuple[str, TensorInfo]],
           outputs: list[tuple[str, TensorInfo]], layer_of: dict[str, str], const: set[str]
           ) -> tuple[nx.DiGraph, tuple[tuple[str, ...], ...], dict[str, str]]:
    """The layer graph's nodes and edges (unordered), with layers whose ops interleave merged."""
    L = nx.DiGraph()
    L.add_nodes_from(nid for nid, _ in inputs)
    L.add_nodes_from(layer_of[op.nid] for op in data_ops)
    L.add_nodes_from(nid for nid, _ in outputs)
    data_nodes = {op.nid for op in data_ops} | {nid for nid, _ in inputs} | {nid for nid, _ in outputs}
    data_tensors = {t.name for op in data_ops for t in op.outs} | {t.name for _, t in inputs}
    data_tensors -= const
    for u, v, e in G.edges(data=True):
        if u not in data_nodes or v not in data_nodes:
            continue
        if not any(t in data_tensors for t in e["tensors"]):
            continue
        lu, lv = layer_of[u], layer_of[v]
        if lu != lv:
            L.add_edge(lu, lv)
    if nx.is_directed_acyclic_graph(L):
        return L, (), layer_of
    # A layer's ops interleave with another's: merge each strongly connected set into its first layer.
    rank = {n: i for i, n in enumerate(L)}
    rename: dict[str, str] = {}
    merged = []
    for scc in nx.strongly_connected_components(L):
        if len(scc) > 1:
            members = sorted(scc, key=rank.__getitem__)
            merged.append(tuple(members))
            rename.update({m: members[0] for m in members[1:]})
    L = nx.relabel_nodes(L, rename, copy=True)
    L.remove_edges_from(list(nx.selfloop_edges(L)))
    return L, tuple(merged), {n: rename.get(l, l) for n, l in layer_of.items()}


def _kernel_ops(data_ops: list[DataOp], layer_of: Mapping[str, str], const: set[str]) -> dict[str, DataOp]:
    """Weighted layers (a conv/dense op whose kernel is a constant and whose data is not), each with its first such op."""
    out: dict[str, DataOp] = {}
    for op in data_ops:
        ins = op.node.inputs
        if op.op_type not in KERNEL_OPS or len(ins) < 2:
            continue
        if op.op_type in ("MatMul", "Einsum"):
            ok = any(t is not None and t.name in const for t in ins)
        else:
            x, w = ins[0], ins[1]
            ok = w is not None and w.name in const and x is not None and x.name not in const
        if ok:
            out.setdefault(layer_of[op.nid], op)
    return out


def _conv_geometry(op: DataOp) -> Geometry | None:
    if op.op_type != "Conv":
        return None
    a = op.node.attrs
    w = op.node.inputs[1]
    kernel = a.get("kernel_shape") or (tuple(w.shape[2:]) if w is not None and concrete(w.shape) else None)
    if not kernel:
        return None
    n = len(kernel)
    dilations = a.get("dilations") or (1,) * n
    return Geometry(tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilations)), tuple(a.get("strides") or (1,) * n))


def _outputs(G: nx.DiGraph, data_ops: list[DataOp], layer_of: Mapping[str, str], const: set[str]
             ) -> dict[str, tuple[str, ...]]:
    """Per layer, the tensors it hands to other layers or to the graph's outputs."""
    out: dict[str, list[str]] = {}
    succ = G.succ
    for op in data_ops:
        own = layer_of[op.nid]
        edges = succ[op.nid]
        used = {t for e in edges.values() for t in e["tensors"]}
        for t in op.node.outputs:
            if not is_data(t) or t.name in const:
                continue
            if t.name not in used and used:
                continue  # an output nothing reads beside one that is read (Dropout's mask)
            consumers = [v for v, e in edges.items() if t.name in e["tensors"]]
            if not consumers or any(layer_of.get(v) != own for v in consumers):
                out.setdefault(own, []).append(t.name)
    return {k: tuple(v) for k, v in out.items()}


def depths(lg: LayerGraph) -> dict[str, int]:
    """Per layer, the weighted layers on the longest path from an input up to and including it."""
    depth: dict[str, int] = {}
    for n in lg.L:
        depth[n] = max((depth[p] for p in lg.L.predecessors(n)), default=0) + (n in lg.weighted)
    return depth
