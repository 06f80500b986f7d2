"""Costs of an analysis graph: per op, rolled up per layer, per block, per op type.

`analyse(graph)` applies one rule per op (archkit.costs.rules) and returns an immutable
CostReport; every roll-up is derived from its tuple of OpCost rows, so sums always agree.
An If counts one branch (CostReport.branches says which and why); the other branch's rows are
kept, with `summed` False, and left out of every total and roll-up sum.

With free dims left free (archkit.onnx.graph keeps their formulas), each op whose tensors depend on
them is also costed by its rule on the formulas: CostReport.formulas holds the totals as
formulas in the free dims, and the figures are their values with each free dim 1.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from math import prod
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, cast

import networkx as nx
import pandas as pd

from archkit.costs.memory import ITEM_BITS, formula_bytes, tensor_bytes
from archkit.costs.rules import DATA_DEPENDENT, FREE, RULES, Cost, Rule, ShapeUnknown
from archkit.costs.rules import SHAPE_ONLY as _SHAPE_ONLY
from archkit.errors import ArchkitError, InternalError
from archkit.metadata import read as read_metadata
from archkit.onnx.graph import FLOAT_TYPES, OpNode, TensorInfo, op_nodes
from archkit.onnx.names import LayerResolver, ScopeNames
from archkit.onnx.symbolic import TooLarge, pretty, value
from archkit.onnx.symbolic_shapes import BROADCAST

__all__ = ["FREE", "PARAM_TYPES", "RULES", "Branch", "Cost", "CostReport", "OpCost", "analyse"]

COLUMNS = ["node", "op_type", "domain", "layer", "block", "output_shape", "macs", "flops", "params", "kernel_weights",
           "output_bytes", "weight_bytes", "status"]
NUMERIC = ["macs", "flops", "params", "kernel_weights", "output_bytes", "weight_bytes"]
# Shown only when some op has them: BatchNormalization statistics, parameters generated at load
# time, ops inside subgraphs.
OPTIONAL = ["stats", "generated", "context"]
# Initializer types that hold parameters: floats, and the 8/4-bit integers of quantized weights.
# int32/int64 (shapes, axes, indices) and bool are not parameters.
PARAM_TYPES = FLOAT_TYPES | frozenset({
    "int8", "uint8", "int4", "uint4", "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz",
    "float8e8m0", "float4e2m1", "int2", "uint2"})
# The kernel operand(s) of ops that do MACs: which inputs are "kernel weights" (biases and the rest are not).
_KERNEL_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "ConvInteger": (1,), "DeformConv": (1,), "Gemm": (0, 1),
                  "MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearConv": (3,), "QLinearMatMul": (0, 3),
                  "Einsum": (0, 1, 2, 3), "LSTM": (1, 2), "GRU": (1, 2), "RNN": (1, 2)}
# QLinearConv's int32 bias is a parameter too.
_INT_PARAMS = {("QLinearConv", 8)}
_BN_STATS = (3, 4)  # BatchNormalization: running mean, running variance


class OpCost(NamedTuple):
    node: str
    op_type: str
    domain: str
    layer: str
    block: str
    output_shape: str
    macs: int
    flops: int
    params: int  # parameter elements (float or quantized initializers) first consumed here; a shared one counts once
    kernel_weights: int  # of which the kernel of a Conv/Gemm/MatMul/Einsum/... (no biases)
    status: str  # "counted" | "free" | "unsupported" | "unknown" (shape not inferred, or data-dependent)
    stats: int = 0  # of `params`, BatchNormalization running mean and variance (not learned weights)
    context: str = ""  # "" in the main graph; for ops in subgraphs, e.g. "per iteration of loop_1 (body)"
    generated: int = 0  # of `params`, elements a ConstantOfShape fills at load time (not stored in the file)
    # False for the ops of an If's branch that is not counted (see Branch): shown, in no total or roll-up sum
    summed: bool = True
    output_bytes: int = 0  # bytes of its outputs, in their element types (0 where a shape is unknown)
    # bytes of the stored tensors first read here (initializers of any type: weights, their scales and
    # zero points, shapes and axes), in their stored types; a Constant's value is its own
    weight_bytes: int = 0


class Branch(NamedTuple):
    """How an If is costed: one branch counts (the one taken, when the condition is known; else
    the one with more MACs), the other's rows are shown but not summed."""

    counted: str  # "then_branch" or "else_branch"
    why: str  # the counted branch's note: "more MACs", ..., or "taken: condition true"
    why_not: str  # the other's: "fewer MACs", ..., or "not taken: condition true"
    condition: bool | None  # the condition, when known
    how: str  # how it is known ("a constant", "input sr = 16000, given", ...); "" when it is not
    macs: Mapping[str, int]  # per branch (with the choices of the Ifs nested in it)

    @property
    def other(self) -> str:
        return "else_branch" if self.counted == "then_branch" else "then_branch"

    @property
    def same_cost(self) -> bool:
        """The condition unknown and both branches of the same MACs and flops: the choice changes no total."""
        return self.why == _SAME_COST


@dataclass(frozen=True)
class CostReport:
    ops: tuple[OpCost, ...]
    fixed_dims: Mapping[str, Mapping[int, str | None]] = field(default_factory=dict)
    subgraphs: Mapping[str, str] = field(default_factory=dict)  # If/Loop/Scan node → "per iteration"/"branches"
    # The leading dimension every graph input of rank >= 2 shares (after fixing symbolic dims):
    # the batch the totals are for; None when the inputs disagree or have no such dimension.
    batch: int | None = None
    # False when no node name carries a scope (`Conv_0`, `n12`): each op is then its own layer and
    # block, and the layer and block views say nothing the op view does not.
    scoped: bool = True
    generated_tensors: int = 0  # weight tensors a ConstantOfShape makes (their elements: OpCost.generated)
    branches: Mapping[str, Branch] = field(default_factory=dict)  # If node → which branch counts, and why
    not_taken: frozenset[str] = frozenset()  # ops of If branches whose condition says they do not run
    # With free dims left free and every shape followed in them: (totals as formulas, why there
    # are none, warnings), from _Symbolic.totals; else None, and why_no_formulas says why.
    formulas_found: tuple | None = field(default=None, repr=False, compare=False)
    why_no_formulas: str | None = None

    @property
    def formulas(self) -> Mapping[str, Any] | None:
        """The totals as formulas in the free dims (archkit.onnx.symbolic: "macs", "flops", "params";
        "ops": op node → (macs, flops) of the ops whose cost depends on a free dim), or None."""
        return self.formulas_found[0] if self.formulas_found else None

    @property
    def no_formulas(self) -> str | None:
        """Why there are no formulas though some dims were left free (None when there are)."""
        return self.formulas_found[1] if self.formulas_found else self.why_no_formulas

    @property
    def formula_warnings(self) -> tuple[str, ...]:
        """Dims taken as equal where they meet (a broadcast of two free dims, a fixed Reshape target)."""
        return self.formulas_found[2] if self.formulas_found else ()

    def _columns(self) -> list[str]:
        extra = [c for c in OPTIONAL if any(getattr(o, c) for o in self.ops)]
        return COLUMNS + extra + (["summed"] if self.not_summed else [])

    @property
    def not_summed(self) -> tuple[OpCost, ...]:
        """The rows of If branches not counted: shown, but in no total."""
        return tuple(o for o in self.ops if not o.summed) if self.branches else ()

    def _summed(self) -> tuple[OpCost, ...]:
        return tuple(o for o in self.ops if o.summed) if self.branches else self.ops

    def to_frame(self) -> pd.DataFrame:
        return self._frame(self._columns())

    def _frame(self, names: list[str]) -> pd.DataFrame:
        columns = dict(zip(OpCost._fields, zip(*self.ops))) if self.ops else {}
        return pd.DataFrame({c: list(columns.get(c, ())) for c in names})

    def by(self, key: str) -> pd.DataFrame:
        """Sums per `key` ("layer", "block", "op_type"), in order of first appearance."""
        numeric = NUMERIC + [c for c in ("stats", "generated") if any(getattr(o, c) for o in self.ops)]
        # ops not summed (an If's other branch) make rows of their own, marked summed = False
        keys = [key, "summed"] if self.not_summed else [key]
        df = self._frame(keys + numeric)  # only the columns summed: string columns cost the most
        grouped = df.groupby(keys, sort=False)
        out = grouped[numeric].sum()
        out.insert(0, "ops", grouped.size())
        out = out.reset_index()
        return out[[key, "ops", *numeric, "summed"]] if len(keys) > 1 else out

    def formula_by(self, key: str) -> dict[str, tuple]:
        """(macs, flops, output bytes) as formulas per `key` ("node", "layer", "block", "op_type"),
        for the summed rows; {} without formulas."""
        if not self.formulas:
            return {}
        per_op = self.formulas["ops"]
        per_bytes = self.formulas["bytes"]
        out: dict[str, tuple] = {}
        try:
            for o in self._summed():
                m, f = per_op.get(o.node, (o.macs, o.flops))
                b = per_bytes.get(o.node, o.output_bytes)
                k = getattr(o, key)
                if k in out:
                    m0, f0, b0 = out[k]
                    m, f, b = m0 + m, f0 + f, b0 + b
                out[k] = (m, f, b)
        except TooLarge:  # a group's sum over the size bound (the totals are not): none shown
            return {}
        return out

    def by_layer(self) -> pd.DataFrame:
        return self.by("layer")

    def by_block(self) -> pd.DataFrame:
        return self.by("block")

    def by_type(self) -> pd.DataFrame:
        return self.by("op_type")

    def total(self) -> dict[str, int]:
        """Sums over the rows that are summed (all, unless an If's branch is not counted)."""
        ops = self._summed()
        columns = dict(zip(OpCost._fields, zip(*ops))) if ops else {}
        return {k: sum(columns.get(k, ())) for k in ("macs", "flops", "params", "kernel_weights", "stats", "generated",
                                                     "output_bytes", "weight_bytes")} \
            | {"ops": len(ops)}

    def _bearing(self) -> tuple[OpCost, ...]:
        """The rows whose costs bear on the totals: all but those of If branches known not to run
        (a branch not summed for having fewer MACs does: an op of unknown cost may make it the larger)."""
        return tuple(o for o in self.ops if o.node not in self.not_taken) if self.not_taken else self.ops

    @property
    def unsupported(self) -> tuple[str, ...]:
        return tuple(sorted({f"{o.domain}::{o.op_type}" if o.domain != "ai.onnx" else o.op_type
                             for o in self._bearing() if o.status == "unsupported"}))

    @property
    def unknown(self) -> tuple[str, ...]:
        return tuple(o.node for o in self._bearing() if o.status == "unknown")

    @property
    def complete(self) -> bool:
        """False when some op could not be costed: totals are then lower bounds."""
        return not any(o.status in ("unsupported", "unknown") for o in self._bearing())

    @property
    def per_iteration(self) -> tuple[str, ...]:
        """Loop/Scan nodes whose body is costed once: the totals count one iteration of each."""
        return tuple(n for n, kind in self.subgraphs.items() if kind == "per iteration")

    @property
    def per_sample(self) -> bool:
        return bool(self.fixed_dims)


def _layer_metadata(G: nx.DiGraph) -> tuple[list[str], dict[str, str]]:
    """Layer names and their blocks, from the metadata archkit's exports carry."""
    layers = read_metadata(G.graph["metadata"]).layers
    return [l["name"] for l in layers], {l["name"]: l.get("block", l["name"]) for l in layers}


def analyse(G: nx.DiGraph, *, block_of: Callable[[str], str] | None = None) -> CostReport:
    enabled = gc.isenabled()
    gc.disable()  # hundreds of thousands of rows: collections only cost time here
    try:
        return _analyse(G, block_of)
    finally:
        if enabled:
            gc.enable()


def _analyse(G: nx.DiGraph, block_of: Callable[[str], str] | None) -> CostReport:
    layers, blocks = _layer_metadata(G)
    resolve: Callable[[str], str | None]
    if layers:
        resolve = LayerResolver(layers)
        block_of = block_of or (lambda layer: blocks.get(layer, layer))
    else:
        scopes = ScopeNames()
        resolve = scopes.layer
        block_of = block_of or scopes.block

    order = cast("list[tuple[str, OpNode]]", list(op_nodes(G)))  # op nodes hold OpNode records
    fast = isinstance(getattr(G, "_pred", None), dict) and isinstance(getattr(G, "_succ", None), dict)
    pred, succ = (G._pred, G._succ) if fast else (G.pred, G.succ)
    nodes_ = G._node if isinstance(getattr(G, "_node", None), dict) else G.nodes
    layer_of: dict[str, str] = {}
    any_layer = False
    by_scope: dict[str, Any] = {}  # scope → its layer (None: none), or _MISSING
    for nid, data in order:
        name = data.name
        if name:
            # ops in one scope share a layer: resolve each scope once
            scope = name[:name.rfind("/") + 1] or name
            layer = by_scope.get(scope, _MISSING)
            if layer is _MISSING:
                layer = by_scope[scope] = resolve(name)
        else:
            layer = None
        if layer is None and layers:
            # Ops an exporter renamed when rewriting them (tf2onnx's Conv__85: a conv with its Pad
            # or BatchNorm fused in) still read weights named in their layer's scope, directly or,
            # quantized, through the DequantizeLinear of a QDQ export.
            layer = next((l for t in data.inputs if t is not None and t.initializer and t.dtype in FLOAT_TYPES
                          for l in (resolve(t.name),) if l is not None), None)
            if layer is None:
                layer = next((layer_of[p] for p in pred[nid] if p in layer_of and nodes_[p].op_type == "DequantizeLinear"
                              and nodes_[p].inputs and nodes_[p].inputs[0] is not None
                              and nodes_[p].inputs[0].initializer), None)
        if layer is None:
            # Exporter-inserted ops (tf2onnx's Transpose__32, shape arithmetic) belong to the
            # layer whose output they take; ops at the very start take their consumer's.
            layer = next((layer_of[p] for p in pred[nid] if p in layer_of), None)
        else:
            any_layer = True
        if layer is not None:
            layer_of[nid] = layer
    if not any_layer:  # no scopes at all (e.g. `Conv_0`, `Relu_1`): each op is its own layer
        layer_of = {nid: data.name or nid for nid, data in order}
    for nid, _ in reversed(order):
        if nid not in layer_of:
            layer_of[nid] = next((layer_of[s] for s in succ[nid] if s in layer_of), "(graph)")

    nodes = G.nodes
    free = G.graph.get("formulas")
    sym = _Symbolic(free) if free is not None else None
    rows, subgraphs, n_generated = _rows(order, nodes, pred, layer_of, block_of, sym)
    branches: dict[str, Branch] = {}
    not_taken: frozenset[str] = frozenset()
    if "branches" in subgraphs.values():
        branches, skipped, not_taken = _choose_branches(rows, nodes, G.graph.get("conditions", {}))
        rows, again = _unsummed(rows, skipped, order, nodes, pred, layer_of, block_of, branches, sym)
        n_generated = n_generated if again is None else again
    return CostReport(tuple(rows), G.graph.get("fixed_dims", {}), subgraphs, batch=_batch(G),
                      scoped=bool(layers) or any_layer, generated_tensors=n_generated, branches=branches,
                      not_taken=not_taken, formulas_found=None if sym is None else sym.totals(rows),
                      why_no_formulas=G.graph.get("no_formulas"))


class _FreeDims(Protocol):
    """What the costs read of the graph's free dims (archkit.onnx.graph keeps them in
    graph["formulas"])."""

    formulas: Mapping[str, tuple]  # tensor → its dims as formulas
    point: Mapping[str, int]  # free dim → the value the figures are at
    invalid: set[str]  # tensors whose formula is negative at the point
    merged: list  # (op, op_type, a, b, kept): two formulas the shape engine took as equal


_Nodes = Mapping[str, OpNode]  # the analysis graph's op nodes (G.nodes)
_Preds = Mapping[str, Mapping[str, Mapping[str, Any]]]  # op → its producers → edge data ("tensors")


class _Symbolic:
    """Costs as formulas, op by op, while the rows are costed: an op whose tensors have free dims
    is costed by its rule on their formulas, once per distinct (rule, shapes) for the rules that
    read shapes only, and its cost in the row is the formula's value at the point (each free dim
    1), which must equal the rule's answer on the values (checked once per distinct op)."""

    def __init__(self, free: _FreeDims):
        self.shapes, self.point, self.invalid = free.formulas, free.point, free.invalid
        self.merged = list(free.merged)  # the shape engine's merges; the costs pass adds onnx's
        self.memo: dict = {}  # (rule, shapes) → (formulas, values, merges)
        self.per_op: dict = {}  # op node → (macs, flops) formulas
        self.per_bytes: dict = {}  # op node → its outputs' bytes as a formula
        self.bytes_memo: dict = {}  # (id of the dims' formulas, dtype) → bytes
        self.failed: str | None = None

    def cost(self, nid: str, data: OpNode, rule: Rule) -> Cost:
        get = self.shapes.get
        # shapes are shared objects, alive while the graph is (one per distinct type, archkit.onnx.graph):
        # their ids make the key, which then hashes without walking every dim
        key = (rule, *[None if t is None else id(get(t[0], t[1])) for t in data.inputs], None,
               *[id(get(t[0], t[1])) for t in data.outputs])
        hit = self.memo.get(key)
        if hit is None:
            ins = tuple([None if t is None else get(t[0], t[1]) for t in data.inputs])
            outs = tuple([get(t[0], t[1]) for t in data.outputs])
            hit = self._cost(nid, data, rule, ins, outs)
            if rule in _SHAPE_ONLY:
                self.memo[key] = hit
        formulas, cost, merges, nbytes = hit
        if formulas is not None:
            self.per_op[nid] = formulas
            if merges:
                self.merged += [(nid, data.op_type, a, b, b) for a, b in merges]
        if nbytes is not None:
            self.per_bytes[nid] = nbytes
        return cost

    def _cost(self, nid: str, data: OpNode, rule: Rule, ins: tuple, outs: tuple) -> tuple:
        cost = rule(data)  # ShapeUnknown: the row's cost is unknown, and so is its formula
        shapes = self.shapes
        if all(t is None or t[0] not in shapes for t in (*data.inputs, *data.outputs)):
            return None, cost, (), None  # no free dim: the cost is its own formula
        view = replace(data, inputs=tuple(t if t is None else t._replace(shape=d) for t, d in zip(data.inputs, ins)),
                       outputs=tuple(t._replace(shape=d) for t, d in zip(data.outputs, outs)))
        try:
            f = tuple(rule(view))
        except (ShapeUnknown, TooLarge, TypeError, ValueError, ArithmeticError) as e:
            self.failed = self.failed or f"the cost of {nid} ({data.op_type}) has no formula ({type(e).__name__})"
            return None, cost, (), None
        exact = not (self.invalid and any(t is not None and t[0] in self.invalid for t in (*data.inputs, *data.outputs)))
        if exact and (value(f[0], self.point) != cost[0] or value(f[1], self.point) != cost[1]):
            self.failed = self.failed or (f"the formula for {nid} ({data.op_type}) does not give its cost at the free "
                                          "dims' values")
        return f, cost, _merges(data.op_type, ins, outs), self._bytes(data, outs)

    def output_bytes(self, nid: str, data: OpNode) -> None:
        """The bytes of the outputs of an op without a cost rule, as a formula where a free dim is in
        their shapes (the rules' ops get theirs in `cost`)."""
        get = self.shapes.get
        outs = tuple([get(t[0]) for t in data.outputs])
        if any(d is not None for d in outs):
            nbytes = self._bytes(data, outs)
            if nbytes is not None:
                self.per_bytes[nid] = nbytes

    def _bytes(self, data: OpNode, dims: tuple) -> Any:
        """The op's output bytes from its outputs' dims as formulas (None for a dim known only as a value)."""
        total: Any = 0
        for d, t in zip(dims, data.outputs):
            if t[2] not in ITEM_BITS:
                continue
            try:
                total += _bytes(t) if d is None else formula_bytes(d, t[2])
            except TooLarge:
                return None
        return total


    def reshape(self, nid: str, data: OpNode) -> None:
        """A Reshape to a target fixed at export time (Caffe2's channel shuffle to [1, g, c/g, h, w])
        holds as many elements as its input only at some values of the free dims: a merge."""
        if not data.inputs or data.inputs[0] is None or not data.outputs:
            return
        get = self.shapes.get
        a, b = get(data.inputs[0][0], data.inputs[0][1]), get(data.outputs[0][0], data.outputs[0][1])
        if a is None or b is None or a is b or any(d is None for d in (*a, *b)):
            return
        try:
            n, m = prod(a), prod(b)
        except TooLarge:
            return
        if n != m:
            self.merged.append((nid, "Reshape", n, m, m))

    def totals(self, rows: list[OpCost]) -> tuple[dict | None, str | None, tuple[str, ...]]:
        """(the totals as formulas, why there are none, the warnings for dims taken as equal)."""
        if self.failed:
            return None, self.failed, ()
        per_op = self.per_op
        macs = flops = params = out_bytes = 0
        counts: dict = {}  # formulas → ops: each summed once, not op by op
        byte_counts: dict = {}  # the same for the output bytes
        for r in rows:
            if r.summed:
                params += r.params
                b = self.per_bytes.get(r.node)
                if b is None or b.__class__ is int:
                    out_bytes += r.output_bytes
                else:
                    k = id(b)
                    byte_counts[k] = (b, byte_counts[k][1] + 1) if k in byte_counts else (b, 1)
                f = per_op.get(r.node) if r.status == "counted" else None
                if f is None:
                    macs += r.macs
                    flops += r.flops
                else:
                    k = id(f)  # ops of one memo entry share their formulas' tuple
                    counts[k] = (f, counts[k][1] + 1) if k in counts else (f, 1)
        try:
            for (m, f), n in counts.values():
                macs += m * n
                flops += f * n
            for b, n in byte_counts.values():
                out_bytes += b * n
        except TooLarge:
            return None, "the totals' formulas are over the size bound", ()
        warnings = (_merged_text(self.merged),) if self.merged else ()
        return {"macs": macs, "flops": flops, "params": params, "output_bytes": out_bytes,
                "ops": MappingProxyType(per_op), "bytes": MappingProxyType(self.per_bytes)}, None, warnings


def _merges(op_type: str, ins: tuple, outs: tuple) -> list[tuple]:
    """The dims an elementwise op's inference took as equal to different ones (onnx: a number beats
    a formula in a broadcast): (input dim, output dim) pairs."""
    if op_type not in BROADCAST or not outs or outs[0] is None:
        return []
    out = outs[0]
    found = []
    for dims in ins:
        if dims is None:
            continue
        for d, o in zip(reversed(dims), reversed(out)):
            if d != o and d != 1 and (d.__class__ is not int or o.__class__ is not int):
                found.append((d, o))
    return found


def _merged_text(merged: list) -> str:
    """The warning for dims taken as equal where they met (a broadcast, a Concat, a Reshape)."""
    pairs = list(dict.fromkeys((pretty(a), pretty(b), pretty(k)) for _, _, a, b, k in merged))
    shown = "; ".join(f"{a} and {b} (kept {k})" for a, b, k in pairs[:3]) + (f"; {len(pairs) - 3} more" if len(pairs) > 3 else "")
    return (f"dims that need not be equal in general meet in {len({m[0] for m in merged}):,} ops and are taken as equal "
            f"(the file runs only where they are): {shown}")


def _rows(order: Iterable[tuple[str, OpNode]], nodes: _Nodes, pred: _Preds, layer_of: Mapping[str, str],
          block_of: Callable[[str], str], sym: _Symbolic | None = None) -> tuple[list[OpCost], dict[str, str], int]:
    """One row per op, in `order`; a parameter is counted at the first op (in that order) that
    reads it. Also: the subgraph kind of each If/Loop/Scan, and how many generated weights."""
    subgraphs: dict[str, str] = {}
    contexts: dict[tuple, str] = {(None, None): ""}
    seen: set[str] = set()
    stored: set[str] = set()  # initializers whose bytes are counted
    out_bytes: dict = {}  # (shape, dtype) → bytes, of outputs and initializers
    generated: dict[str, int] = {}  # tensor → elements, for weights a ConstantOfShape fills (_generated_size)
    n_generated = 0
    shape_text: dict = {}
    block_cache: dict[str, str] = {}
    rows: list[OpCost] = []
    append = rows.append
    per_type: dict[tuple[str, str], tuple] = {}  # (domain, op_type) → (rule, kernel inputs, is BN, is Constant)
    for nid, data in order:
        op_type = data.op_type
        domain = data.domain
        kind = per_type.get((domain, op_type))
        if kind is None:
            kind = per_type[(domain, op_type)] = (
                RULES.get((domain, op_type)), _KERNEL_INPUTS.get(op_type, ()),
                op_type == "BatchNormalization", op_type == "Constant" and domain == "ai.onnx")
        rule, kernel, is_bn, is_constant = kind
        params = weights = stats = made = w_bytes = 0
        i = -1
        for t in data.inputs:
            i += 1
            if t is None:
                continue
            if t[3]:  # an initializer
                if t[0] not in stored:
                    stored.add(t[0])
                    k = (t[1], t[2])
                    nb = out_bytes.get(k)
                    w_bytes += nb if nb is not None else out_bytes.setdefault(k, _bytes(t))
                if t[0] in seen or not (t[2] in PARAM_TYPES or (op_type, i) in _INT_PARAMS):
                    continue
                n = prod(cast("tuple[int, ...]", t[1]))  # an initializer's dims are ints
            elif generated and t[0] in generated and t[0] not in seen:
                n = generated[t[0]]
                made += n
                n_generated += 1
            else:
                continue
            seen.add(t[0])
            params += n
            if i in kernel:
                weights += n
            elif is_bn and i in _BN_STATS:
                stats += n
        if is_constant:
            # weights stored as Constant nodes (scalars are arithmetic literals, not parameters)
            v = data.attrs.get("value")
            if v is not None and v.dtype in PARAM_TYPES and len(v.shape) and prod(v.shape) > 1:
                params += prod(v.shape)
            w_bytes += sum(_bytes(t) for t in data.outputs)  # a stored tensor, not an activation
        elif op_type == "ConstantOfShape" and domain == "ai.onnx":
            n = _generated_size(data, pred[nid], nodes)
            if n:
                generated[data.outputs[0][0]] = n
        if rule is None:
            cost, status = _cost(data)
            if sym is not None and op_type == "Reshape":
                sym.reshape(nid, data)
        else:
            try:
                cost, status = (rule(data) if sym is None else sym.cost(nid, data, rule)), "counted"
            except ShapeUnknown:
                cost, status = _ZERO, "unknown"
            except (ArchkitError, MemoryError, RecursionError):
                raise
            except Exception as e:
                # load checked the op against its schema and the shape engine its shapes: what fails
                # here is archkit's own bug
                raise InternalError(_rule_failed(op_type, nid, e)) from e
        outs = data.outputs
        o_bytes = 0
        if not is_constant:
            for t in outs:
                k = (t[1], t[2])
                nb = out_bytes.get(k)
                if nb is None:
                    nb = out_bytes[k] = _bytes(t)
                o_bytes += nb
            if sym is not None and rule is None:
                sym.output_bytes(nid, data)
        shape = outs[0][1] if outs else None
        text = shape_text.get(shape)
        if text is None:
            text = shape_text[shape] = "?" if shape is None else "x".join(
                str(d) if d is not None else "?" for d in shape)
        layer = layer_of[nid]
        block = block_cache.get(layer)
        if block is None:
            block = block_cache[layer] = block_of(layer)
        if data.parent is None:
            context = ""
        else:
            key = (data.parent, data.subgraph)
            found = contexts.get(key)
            context = found if found is not None else contexts.setdefault(key, _context(nodes, data, subgraphs))
        append(_new(OpCost, (nid, op_type, domain, layer, block, text, cost[0], cost[1], params, weights,
                             status, stats, context, made, True, o_bytes, w_bytes)))
    return rows, subgraphs, n_generated


def _bytes(t: TensorInfo) -> int:
    """A tensor's bytes, 0 when its shape is unknown (archkit.costs.memory lists those)."""
    return tensor_bytes(t) or 0


def _rule_failed(op_type: str, nid: str, e: Exception) -> str:
    """The one line that reports a cost rule's bug (names cut short: the request to report stays on it)."""
    what = (str(e).strip().splitlines() or [""])[0]
    return (f"internal error in the cost rule for {_cut(op_type, quote=False)} (node {_cut(nid)}): {type(e).__name__}"
            f"{': ' + _cut(what, quote=False) if what else ''}; please report it with the file")


def _cut(text: str, limit: int = 160, *, quote: bool = True) -> str:
    r = repr(text) if quote else text
    return r if len(r) <= limit else f"{r[:limit - 20]}…{r[-15:]}"


def _generated_size(data: OpNode, preds: Mapping[str, Mapping[str, Any]], nodes: _Nodes) -> int:
    """Elements of a weight made at load time: a float ConstantOfShape whose shape is a constant
    (an initializer or a Constant op), as Caffe2's converted models build every kernel. A shape
    computed from the input (PyTorch's `zeros(x.shape[0], ...)`) makes activations, not weights: 0."""
    shape_in = data.inputs[0] if data.inputs else None
    out = data.outputs[0] if data.outputs else None
    if shape_in is None or out is None or out.dtype not in PARAM_TYPES or not out.known:
        return 0
    if not shape_in.initializer:
        src = next((p for p in preds if shape_in.name in preds[p]["tensors"]), None)
        if src is None or nodes[src].get("op_type") != "Constant":
            return 0
    n = out.size
    return n if n > 1 else 0  # a scalar fill is an arithmetic literal, as for Constant


def _batch(G: nx.DiGraph) -> int | None:
    """The leading dimension all graph inputs of rank >= 2 share, None if they disagree."""
    nodes = G._node if isinstance(getattr(G, "_node", None), dict) else G.nodes  # the public view is slow
    shapes = [nodes[n].tensor.shape for n in nodes if n[:6] == "input:" and nodes[n].kind == "input"]
    firsts = {s[0] for s in shapes if s is not None and len(s) >= 2}
    return firsts.pop() if len(firsts) == 1 and all(isinstance(f, int) for f in firsts) else None


def _context(nodes: _Nodes, data: OpNode, subgraphs: dict[str, str], branches: Mapping[str, Branch] | None = None) -> str:
    """Where a subgraph op runs: "per iteration of L (body)", "branch then_branch of I", nested
    outermost first; with `branches`, each If branch says whether it counts and why."""
    parts = []
    while data.parent is not None:
        parent = data.parent
        kind = nodes[parent].op_type
        sub = data.subgraph
        if kind in ("Loop", "Scan", "SequenceMap"):
            subgraphs[parent] = "per iteration"
            parts.append(f"per iteration of {parent} ({sub})")
        else:
            subgraphs.setdefault(parent, "branches")
            b = branches.get(parent) if branches else None
            note = "" if b is None or sub not in _BRANCHES else f" ({b.why if sub == b.counted else b.why_not})"
            parts.append(f"branch {sub} of {parent}{note}")
        data = nodes[parent]
    return "; ".join(reversed(parts))


_BRANCHES = ("then_branch", "else_branch")
_SAME_COST = "counted: the same cost, the first branch"


def _choose_branches(rows: list[OpCost], nodes: _Nodes, conditions: Mapping[str, tuple[bool, str]]
                     ) -> tuple[dict[str, Branch], set[str], frozenset[str]]:
    """For each If, the branch that counts: the one taken when its condition is known
    (`conditions`: If → (value, how)), else the one with more MACs (then more flops; then the
    first). Nested Ifs are decided first, so a branch's MACs are those it counts. Returns the
    choices (outermost first, then in op order), the ops not summed, and those of them in a
    branch known not to run."""
    under: dict[tuple[str, str | None], list[int]] = {}  # (If, branch) → rows inside it, at any depth
    for k, r in enumerate(rows):
        data = nodes[r.node]
        while data.parent is not None:
            parent = data.parent
            if nodes[parent].op_type == "If" and nodes[parent].domain == "ai.onnx":
                under.setdefault((parent, data.subgraph), []).append(k)
            data = nodes[parent]

    def depth(nid: str) -> int:
        n = 0
        parent = nodes[nid].parent
        while parent is not None:
            parent = nodes[parent].parent
            n += 1
        return n

    skipped: set[int] = set()
    not_taken: set[int] = set()
    choices: dict[str, Branch] = {}
    for nid in sorted({i for i, _ in under}, key=lambda i: (-depth(i), i)):
        live = {b: [k for k in under.get((nid, b), ()) if k not in skipped] for b in _BRANCHES}
        macs = {b: sum(rows[k].macs for k in live[b]) for b in _BRANCHES}
        flops = {b: sum(rows[k].flops for k in live[b]) for b in _BRANCHES}
        cond = conditions.get(nid)
        if cond is not None:
            counted = _BRANCHES[0] if cond[0] else _BRANCHES[1]
            said = f"condition {'true' if cond[0] else 'false'}"
            why, why_not = f"taken: {said}", f"not taken: {said}"
        else:
            counted = max(_BRANCHES, key=lambda b: (macs[b], flops[b]))  # a tie: the first
            if len(set(macs.values())) > 1:
                why, why_not = "counted: more MACs", "not summed: fewer MACs"
            elif len(set(flops.values())) > 1:
                why, why_not = "counted: as many MACs, more flops", "not summed: as many MACs, fewer flops"
            else:
                why, why_not = _SAME_COST, "not summed: the same cost"
        choices[nid] = Branch(counted, why, why_not, None if cond is None else cond[0],
                              "" if cond is None else cond[1], macs)
        other = _BRANCHES[1] if counted == _BRANCHES[0] else _BRANCHES[0]
        skipped.update(under.get((nid, other), ()))
        if cond is not None:
            not_taken.update(under.get((nid, other), ()))
    position = {r.node: k for k, r in enumerate(rows)}
    outer_first = sorted(choices, key=lambda i: (depth(i), position.get(i, 0)))
    return ({i: choices[i] for i in outer_first}, {rows[k].node for k in skipped},
            frozenset(rows[k].node for k in not_taken))


def _unsummed(rows: list[OpCost], skipped: set[str], order: list[tuple[str, OpNode]], nodes: _Nodes, pred: _Preds,
              layer_of: Mapping[str, str], block_of: Callable[[str], str], branches: Mapping[str, Branch],
              sym: _Symbolic | None = None) -> tuple[list[OpCost], int | None]:
    """The rows with the ops of branches not counted marked not summed, and every If branch's
    context saying why. A weight both branches read is counted in the branch that counts: if
    the others hold parameters, the rows are costed again with them last."""
    n_generated = None
    if any(r.params for r in rows if r.node in skipped):
        first = [x for x in order if x[0] not in skipped] + [x for x in order if x[0] in skipped]
        again, _, n_generated = _rows(first, nodes, pred, layer_of, block_of, sym)
        by_node = {r.node: r for r in again}
        rows = [by_node[r.node] for r in rows]
    contexts: dict[tuple, str] = {}
    out = []
    for r in rows:
        data = nodes[r.node]
        if data.parent is not None:
            key = (data.parent, data.subgraph)
            context = contexts.get(key)
            if context is None:
                context = contexts[key] = _context(nodes, data, {}, branches)
            r = r._replace(context=context, summed=r.node not in skipped)
        out.append(r)
    return out, n_generated


def _cost(data: OpNode) -> tuple[Cost, str]:
    """The cost and status of an op without a cost rule."""
    if data.domain == "ai.onnx" and data.op_type in FREE:
        return _ZERO, "free"
    if data.domain == "ai.onnx" and data.op_type in DATA_DEPENDENT:
        return _ZERO, "unknown"
    return _ZERO, "unsupported"


_ZERO = Cost()
_MISSING = object()
_new = tuple.__new__  # a NamedTuple without its Python-level __new__: the rows are many
