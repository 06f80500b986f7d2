"""Costs of an analysis graph: per op, rolled up per layer, per block, per op type.

`analyse(graph)` applies one rule per op (archkit.costs.rules) and returns an immutable
CostReport; every roll-up is derived from its tuple of OpCost rows, so sums always agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from math import prod
from typing import Callable, Mapping

import networkx as nx
import pandas as pd

from archkit.costs.rules import FREE, RULES, Cost, ShapeUnknown, rule_for
from archkit.graph import FLOAT_TYPES, op_nodes
from archkit.names import LayerResolver, scope_of

__all__ = ["OpCost", "CostReport", "analyse", "RULES", "FREE", "Cost"]

COLUMNS = ["node", "op_type", "domain", "layer", "block", "output_shape", "macs", "flops", "params", "weights", "status"]
NUMERIC = ["macs", "flops", "params", "weights"]
# The weight operand of an op that does MACs (the kernel: input 1); biases and the rest are not "weights".
_KERNEL_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class OpCost:
    node: str
    op_type: str
    domain: str
    layer: str
    block: str
    output_shape: str
    macs: int
    flops: int
    params: int  # float initializer elements first consumed here (a shared one counts once)
    weights: int  # of which the kernel of a Conv/ConvTranspose/Gemm/MatMul (no biases)
    status: str  # "counted" | "free" | "unsupported" | "unknown" (shape not inferred)


@dataclass(frozen=True)
class CostReport:
    ops: tuple[OpCost, ...]
    fixed_dims: Mapping[str, Mapping[int, str | None]] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([vars(o) for o in self.ops], columns=COLUMNS)

    def by(self, key: str) -> pd.DataFrame:
        """Sums per `key` ("layer", "block", "op_type"), in order of first appearance."""
        df = self.to_frame()
        grouped = df.groupby(key, sort=False)
        out = grouped[NUMERIC].sum()
        out.insert(0, "ops", grouped.size())
        return out.reset_index()

    def by_layer(self) -> pd.DataFrame:
        return self.by("layer")

    def by_block(self) -> pd.DataFrame:
        return self.by("block")

    def by_type(self) -> pd.DataFrame:
        return self.by("op_type")

    def total(self) -> dict[str, int]:
        return {k: sum(getattr(o, k) for o in self.ops) for k in NUMERIC} | {"ops": len(self.ops)}

    @property
    def unsupported(self) -> tuple[str, ...]:
        return tuple(sorted({f"{o.domain}::{o.op_type}" if o.domain != "ai.onnx" else o.op_type
                             for o in self.ops if o.status == "unsupported"}))

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(o.node for o in self.ops if o.status == "unknown")

    @property
    def complete(self) -> bool:
        """False when some op could not be costed: totals are then lower bounds."""
        return not any(o.status in ("unsupported", "unknown") for o in self.ops)

    @property
    def per_sample(self) -> bool:
        return bool(self.fixed_dims)


def _layer_metadata(G: nx.DiGraph) -> tuple[list[str], dict[str, str]]:
    """Layer names and their blocks, from the metadata archkit's exports carry."""
    raw = G.graph["metadata"].get("archkit.layers")
    if not raw:
        return [], {}
    layers = json.loads(raw)
    return [l["name"] for l in layers], {l["name"]: l.get("block", l["name"]) for l in layers}


def analyse(G: nx.DiGraph, *, block_of: Callable[[str], str] | None = None) -> CostReport:
    layers, blocks = _layer_metadata(G)
    resolve = LayerResolver(layers) if layers else scope_of
    block_of = block_of or (lambda layer: blocks.get(layer, layer))

    order = list(op_nodes(G))
    layer_of: dict[str, str] = {}
    for nid, data in order:
        layer = resolve(data["name"])
        if layer is None:
            # Exporter-inserted ops (tf2onnx's Transpose__32, shape arithmetic) belong to the
            # layer whose output they take; ops at the very start take their consumer's.
            layer = next((layer_of[p] for p in G.predecessors(nid) if p in layer_of), None)
        if layer is not None:
            layer_of[nid] = layer
    for nid, _ in reversed(order):
        if nid not in layer_of:
            layer_of[nid] = next((layer_of[s] for s in G.successors(nid) if s in layer_of), "(graph)")

    seen_weights: set[str] = set()
    rows = []
    for nid, data in order:
        params = weights = 0
        for i, t in enumerate(data["inputs"]):
            if t is not None and t.initializer and t.dtype in FLOAT_TYPES and t.name not in seen_weights:
                seen_weights.add(t.name)
                params += prod(t.shape)
                if i == 1 and data["op_type"] in _KERNEL_OPS:
                    weights += prod(t.shape)
        cost, status = _cost(data)
        out = data["outputs"][0] if data["outputs"] else None
        shape = "x".join(str(d) if d is not None else "?" for d in out.shape) if out and out.shape is not None else "?"
        layer = layer_of[nid]
        rows.append(OpCost(nid, data["op_type"], data["domain"], layer, block_of(layer), shape,
                           cost.macs, cost.flops, params, weights, status))
    return CostReport(tuple(rows), G.graph.get("fixed_dims", {}))


def _cost(data: dict) -> tuple[Cost, str]:
    rule = rule_for(data["domain"], data["op_type"])
    if rule is None:
        if data["domain"] == "ai.onnx" and data["op_type"] in FREE:
            return Cost(), "free"
        return Cost(), "unsupported"
    try:
        return rule(data), "counted"
    except ShapeUnknown:
        return Cost(), "unknown"
