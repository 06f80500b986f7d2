"""Memory a network needs to run: the buffers a runtime holds, and the live memory along an
execution order, with its peak.

Counted apart from activations: weights (initializers and Constant ops: held for the whole
session), graph inputs (the caller's memory) and graph outputs (made by an op, then returned: live
from their op to the end of the run). Activations are every other tensor an op makes.

Buffers follow onnxruntime's CPU allocation planner (1.32), as measured op by op
(tests/test_memory_runtime.py):
- an ALIAS op (Reshape, Flatten, Squeeze, Unsqueeze, Identity) hands its input's buffer on;
- an IN_PLACE op (the activations, Softmax) writes into its input's buffer when nothing later
  reads that input and the sizes agree;
- every other output is a buffer of its own, Dropout's included (onnxruntime copies it).
A buffer is live from the step of the op that makes it through the last step that reads it; an
If, Loop or Scan reads what its subgraphs read, and the memory inside them is not modelled.

Three orders are planned: "onnxruntime" (its default order, reproduced: a depth-first walk back
from the ops nothing reads, inputs taken in file order), "file" (the file's node order) and
"memory-aware" (a greedy list schedule: of the ops ready to run, the one that adds the fewest bytes
net of what it frees; kept only where it beats the other two).

With free dims left free, each buffer's bytes are a formula; the peak is found at the point the
figures are at, and given as a formula when one step's live bytes are at least every other step's
for every value of the dims ≥ 1 (compared on the coefficients: no symbolic Max).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import accumulate, chain
from math import prod
from typing import Any, NamedTuple, cast

import networkx as nx
import numpy as np

from archkit.onnx.graph import TensorInfo, op_nodes
from archkit.onnx.symbolic import Dim, Expr, TooLarge, value

__all__ = ["ALIAS", "IN_PLACE", "ITEM_BITS", "ORDERS", "Live", "Memory", "Peak", "Planned", "Schedule",
           "formula_bytes", "group_peaks", "plan", "tensor_bytes"]

# Bits per element of each ONNX element type: the 4- and 2-bit types are packed, as ONNX stores
# and onnxruntime allocates them (numpy's int4 takes a byte). Strings have no fixed size.
ITEM_BITS = {
    "float": 32, "float16": 16, "bfloat16": 16, "double": 64, "int8": 8, "uint8": 8, "int16": 16,
    "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64, "bool": 8, "complex64": 64,
    "complex128": 128, "float8e4m3fn": 8, "float8e4m3fnuz": 8, "float8e5m2": 8, "float8e5m2fnuz": 8,
    "float8e8m0": 8, "int4": 4, "uint4": 4, "float4e2m1": 4, "int2": 2, "uint2": 2,
}
# onnxruntime hands the input's buffer on (its kernels' Alias(0, 0)), whatever reads the input later.
ALIAS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
# onnxruntime writes the output into input 0's buffer when nothing later reads it (MayInplace(0, 0)).
IN_PLACE = frozenset({"Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus",
                      "Softsign", "ThresholdedRelu", "Shrink", "Clip", "Softmax", "LogSoftmax"})
ORDERS = ("onnxruntime", "file", "memory-aware")
_SHOWN_LIVE = 8  # tensors listed at a peak


def tensor_bytes(t: TensorInfo) -> int | None:
    """Bytes a tensor of known shape takes, or None (shape unknown, or strings)."""
    bits = ITEM_BITS.get(t.dtype)
    if bits is None or not t.known:
        return None
    return (t.size * bits + 7) // 8


def formula_bytes(dims: Sequence[Dim], dtype: str) -> Dim:
    """The bytes of a tensor whose dims are formulas (archkit.onnx.symbolic)."""
    bits = ITEM_BITS[dtype]
    n = prod(dims)
    return n * (bits // 8) if bits % 8 == 0 else (n * bits + 7) // 8


class Live(NamedTuple):
    """A tensor live at a peak."""

    tensor: str
    bytes: int
    kind: str  # "activation" or "output"
    node: str  # the op that made it


class Planned(NamedTuple):
    """What onnxruntime's allocation planner holds along its order: a dead buffer is handed to a later
    tensor of the same shape and element size (the last freed first), and stays held from its first
    tensor's op to its last user's, the time between included."""

    curve: tuple[int, ...]  # bytes held during each step
    peak: int
    step: int
    node: str
    buffers: int  # buffers allocated
    reused: int  # tensors given a dead tensor's buffer


class Peak(NamedTuple):
    bytes: int  # activations and outputs live during the step
    activations: int
    outputs: int
    step: int  # position in the order
    node: str  # the op running there
    live: tuple[Live, ...]  # the largest tensors live there, largest first
    formula: Dim | None  # the peak in the free dims, when the same step peaks for every value ≥ 1
    why_no_formula: str | None  # with free dims, why there is no formula


@dataclass(frozen=True)
class Schedule:
    name: str  # "onnxruntime", "file", "memory-aware"
    how: str  # how the order was found
    steps: tuple[str, ...]  # op node ids, in the order they run
    curve: tuple[int, ...]  # bytes live (activations and outputs) during each step
    peak: Peak
    planned: Planned | None = None  # for the onnxruntime order: what its planner holds (≥ the live bytes)


@dataclass(frozen=True)
class Memory:
    weights: int  # bytes of initializers and Constant ops
    inputs: int  # bytes of the graph inputs
    outputs: int  # bytes of the graph outputs
    activations: int  # bytes of every activation buffer, each once (no reuse): what a naive runtime holds
    tensors: int  # activation tensors with storage of their own (an alias shares its input's): `activations` counts these
    buffers: int  # of which buffers onnxruntime allocates (an in-place op writes into its input's, in its order)
    schedules: Mapping[str, Schedule] = field(default_factory=dict)  # by ORDERS name
    unknown: tuple[str, ...] = ()  # tensors of unknown size: the figures are lower bounds
    formulas: Mapping[str, Dim] | None = None  # weights, inputs, outputs, activations in the free dims
    # tensor → (its buffer, the step making it), and the steps' op ids: what `maker` reads
    made_by: Mapping[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    steps: tuple[str, ...] = field(default=(), repr=False)
    # the largest buffer a kernel takes while it runs, as onnxruntime's CPU convolution lowers a
    # Conv that is not pointwise to one matrix product per image: (C/group)·∏kernel·∏output
    # elements (its im2col matrix); and the Conv taking it
    workspace: tuple[int, str] = (0, "")

    @property
    def complete(self) -> bool:
        return not self.unknown

    def maker(self, tensor: str) -> str | None:
        """The main-graph op making `tensor`, or None (a graph input, a weight, a subgraph's tensor)."""
        found = self.made_by.get(tensor)
        return None if found is None else self.steps[found[1]]

    @property
    def runtime(self) -> Schedule | None:
        return self.schedules.get("onnxruntime")

    def saving(self) -> tuple[int, float] | None:
        """(bytes, fraction) the memory-aware order saves on the file order's peak, or None."""
        aware, file = self.schedules.get("memory-aware"), self.schedules.get("file")
        if aware is None or file is None or not file.peak.bytes:
            return None
        d = file.peak.bytes - aware.peak.bytes
        return d, d / file.peak.bytes


def _key(planner: Mapping[str, tuple] | None, shapes: Mapping[str, tuple], t: TensorInfo, bits_of: Any
         ) -> tuple | None:
    """A tensor's (shape, bits per element) as onnxruntime's planner knows it, or None."""
    if planner is None:
        dims = shapes.get(t[0]) if shapes else None
        return (dims if dims is not None else t[1], bits_of(t[2]))
    known = planner.get(t[0])
    return None if known is None else (known, bits_of(t[2]))


class _Buffers:
    """The tensors of the main graph gathered into buffers (an alias shares its input's): what
    each step makes and reads, each buffer's bytes (and formula), and the in-place candidates."""

    def __init__(self, G: nx.DiGraph) -> None:
        free = G.graph.get("formulas")
        shapes: Mapping[str, tuple] = free.formulas if free is not None else {}
        self.free = free is not None
        self.point: Mapping[str, int] = free.point if free is not None else {}
        nodes = G._node if isinstance(getattr(G, "_node", None), dict) else G.nodes
        outputs = {nodes[n].tensor.name for n in nodes if n[:7] == "output:" and nodes[n].kind == "output"}
        inputs = [nodes[n].tensor for n in nodes if n[:6] == "input:" and nodes[n].kind == "input"]
        ops = op_nodes(G)

        self.unknown: list[str] = []  # tensors of unknown size
        self.workspace: tuple[int, str] = (0, "")
        self.empty_at_point = False  # some tensor is empty at the point but not in its formula
        self.steps: list[str] = []  # main-graph op ids in file order (a Constant is a weight, not a step)
        # step → (buffer or -1, making step) of each tensor it reads: what `reads` and `after` are made from
        self.found: list[list[tuple[int, int]]] = []
        self.in_place: list[tuple[int, int, int]] = []  # (step, its output's buffer, input 0's buffer), by step
        self.size: list[int] = []  # buffer → bytes
        self.formula: list[Dim] = []  # buffer → bytes in the free dims
        # buffer → (dims, bits per element) as onnxruntime's planner knows them (None: it does not): what
        # its reuse and in-place writes compare
        self.shape_key: list[tuple | None] = []
        self.is_output: list[bool] = []  # buffer → a graph output?
        self.own: list[TensorInfo] = []  # buffer → the tensor it is made for
        self.maker: list[int] = []  # buffer → its step
        sizes: dict[tuple, int | None] = {}  # (shape, dtype) → bytes
        im2col: dict[tuple, int] = {}  # (input, kernel, output shape, type) → a Conv's workspace
        # the shapes onnxruntime's planner knows, where they are fewer than archkit's (archkit.onnx.graph)
        planner: Mapping[str, tuple] | None = G.graph.get("runtime_shapes")
        formulas: dict[tuple, Dim] = {}  # (id of the dims' formulas, dtype) → bytes: shapes are shared objects

        # an If, Loop or Scan reads what its subgraphs read from outside them
        inner_reads: dict[str, list[str]] = {}
        steps = self.steps  # main-graph op ids in order (a Constant is a weight, not a step)
        datas: list[Any] = []  # and their records
        for nid, data in ops:
            if data.parent is None:
                if data.op_type != "Constant" or data.domain != "ai.onnx":
                    steps.append(nid)
                    datas.append(data)
                continue
            p = data.parent
            while nodes[p].parent is not None:
                p = nodes[p].parent
            inner_reads.setdefault(p, []).extend(t.name for t in data.inputs if t is not None)

        found, maker = self.found, self.maker
        own = self.own
        aliases: dict[str, TensorInfo] = {}  # the tensors an alias hands its input's buffer to
        candidates: list[tuple[int, int, str]] = []  # (step, its output's buffer, input 0) of the IN_PLACE ops
        made_by: dict[str, tuple[int, int]] = {}  # tensor → (its buffer, or -1 for none; the step making it)
        get = made_by.get
        special = ALIAS | IN_PLACE | {"Conv"}  # the ops whose outputs need more than a buffer each
        # one pass in order (an alias's buffer is its input's, found before it); sizes, formulas and
        # the planner's shapes after it, a comprehension each. The common op (one output, inputs
        # made by earlier ops) takes the short path: this pass is most of the memory figures' time.
        for step, data in enumerate(datas):
            op = data.op_type if data.domain == "ai.onnx" else ""
            ins = data.inputs
            fs: list[tuple[int, int]] = []
            for t in ins:
                if t is not None and not t[3]:  # weights are not activations
                    f = get(t[0])
                    if f is not None:
                        fs.append(f)
            if inner_reads and steps[step] in inner_reads:
                fs.extend(f for name in inner_reads[steps[step]] if (f := get(name)) is not None)
            found.append(fs)
            outs = data.outputs
            if op not in special and len(outs) == 1 and outs[0][0]:
                t = outs[0]
                b = len(own)
                made_by[t[0]] = (b, step)
                own.append(t)
                maker.append(step)
                continue
            if op == "Conv" and len(ins) > 1 and ins[0] is not None and ins[1] is not None and outs:
                shapes_key = (ins[0][1], ins[1][1], outs[0][1], ins[0][2])
                w = im2col.get(shapes_key)
                if w is None:
                    w = im2col[shapes_key] = _im2col(*shapes_key)
                if w > self.workspace[0]:
                    self.workspace = (w, steps[step])
            for j, t in enumerate(outs):
                name = t[0]
                if not name:
                    continue
                if j == 0 and op in ALIAS and name not in outputs:
                    # the input's buffer, handed on; an alias of a graph input or a weight takes no memory
                    source = get(ins[0][0]) if ins and ins[0] is not None else None
                    made_by[name] = (source[0] if source is not None else -1, step)
                    aliases[name] = t
                    continue
                b = len(own)
                made_by[name] = (b, step)
                own.append(t)
                maker.append(step)
                if j == 0 and op in IN_PLACE and ins and ins[0] is not None:
                    candidates.append((step, b, ins[0][0]))
        known = [sizes[sk] if (sk := (t[1], t[2])) in sizes else sizes.setdefault(sk, tensor_bytes(t)) for t in own]
        if None in known:
            self.unknown = [t[0] for t, n in zip(own, known) if n is None]
            self.size = [n or 0 for n in known]
        else:
            self.size = cast("list[int]", known)  # no None in it
        size = self.size
        dims_of = [shapes.get(t[0]) for t in own] if shapes else [None] * len(own)  # buffer → its formulas' dims
        if shapes:
            self.formula.extend([
                n if k is None or dims is None else
                formulas[fk] if (fk := (id(dims), t[2])) in formulas else formulas.setdefault(fk, formula_bytes(dims, t[2]))
                for t, dims, k, n in zip(own, dims_of, known, size)])
            # empty at the point (a width/2 of 1), not for larger values: the formulas say more than the figures
            self.empty_at_point = 0 in known and any(n == 0 and f != 0 for n, f in zip(known, self.formula))
        else:
            self.formula.extend(size)
        is_output = self.is_output = [False] * len(own)
        for name in outputs:  # a graph output an op makes has a buffer of its own
            if (f := get(name)) is not None and f[0] >= 0 and own[f[0]][0] == name:
                is_output[f[0]] = True
        bits_of = ITEM_BITS.get
        shape_key = self.shape_key
        if planner is None:
            shape_key.extend([(t[1] if dims is None else dims, bits_of(t[2])) for t, dims in zip(own, dims_of)])
        else:
            shape_key.extend([_key(planner, shapes, t, bits_of) for t in own])
        formula = self.formula
        in_places = self.in_place
        for step, b, x in candidates:
            # onnxruntime compares the input's shape (an alias's own) with the output's
            source = get(x)
            if source is None or source[0] < 0 or is_output[b]:
                continue
            a = source[0]
            ka = _key(planner, shapes, aliases[x], bits_of) if x in aliases else shape_key[a]
            if not is_output[a] and size[a] == size[b] and (formula[a] is formula[b] or formula[a] == formula[b]) and \
                    ka is not None and ka == shape_key[b]:
                in_places.append((step, b, a))
        # formulas with floors of free dims (strides) are not compared on their coefficients
        self.floors = any(not isinstance(a, str) for f in formulas.values() if isinstance(f, Expr)
                          for m, _ in f.terms for a, _ in m)
        self.made_by = made_by
        self._arrays: tuple | None = None
        self.file_order = list(range(len(steps)))
        self._spans: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}  # order → its spans
        self.inputs = sum(tensor_bytes(t) or 0 for t in inputs)
        self.inputs_f: Dim = 0
        for t in inputs:
            dims = shapes.get(t.name)
            nbytes = tensor_bytes(t)
            n = nbytes or 0
            self.inputs_f = self.inputs_f + (formula_bytes(dims, t.dtype) if dims is not None and nbytes is not None
                                             else n)

    @cached_property
    def reads(self) -> list[list[int]]:
        """Step → the buffers it reads."""
        return [([fs[0][0]] if fs[0][0] >= 0 else []) if len(fs) == 1 else list(dict.fromkeys(b for b, _ in fs if b >= 0))
                for fs in self.found]

    @cached_property
    def after(self) -> list[list[int]]:
        """Step → the steps making the tensors it reads (aliases included)."""
        return [[fs[0][1]] if len(fs) == 1 else sorted({m for _, m in fs}) for fs in self.found]

    @cached_property
    def chain(self) -> bool:
        """Every step reads the one before: the file's is the only topological order."""
        step, pairs = self._found_arrays
        follows = step[pairs[:, 1] == step - 1]
        return bool(np.all(np.bincount(follows, minlength=len(self.steps))[1:]))

    @cached_property
    def _found_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """`found` flattened: the reading step and (buffer, making step) of every tensor read."""
        found = self.found
        step = np.repeat(np.arange(len(found), dtype=np.int64), np.fromiter(map(len, found), np.int64, len(found)))
        pairs = np.fromiter(chain.from_iterable(chain.from_iterable(found)), np.int64, 2 * len(step)).reshape(-1, 2)
        return step, pairs

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(size, maker, is_output, reader step, reader buffer) as arrays, made once (a buffer read
        twice by a step is there twice)."""
        if self._arrays is None:
            step, pairs = self._found_arrays
            own = pairs[:, 0] >= 0  # an alias of a graph input or a weight reads no buffer
            # float64 adds bytes exactly up to 2**53 in all; past that (dims a file declares), Python's integers
            sizes = np.asarray(self.size, np.float64 if sum(self.size) < 2 ** 53 else object)
            self._arrays = (sizes, np.asarray(self.maker, np.int64),
                            np.asarray(self.is_output, bool), step[own], pairs[own, 0])
        return self._arrays

    def in_place_pairs(self) -> tuple[np.ndarray, ...] | tuple[()]:
        """(step, output buffer, input buffer) of the in-place candidates, as arrays."""
        return tuple(np.asarray(self.in_place, np.int64).T) if self.in_place else ()

    def coefficients(self) -> tuple[list, np.ndarray]:
        """The monomials of the buffers' formulas, and each buffer's coefficients on them (int64;
        Python ints where they could overflow)."""
        index: dict[Any, int] = {}
        unique: dict[Any, int] = {}  # formula → its row: buffers share formula objects
        rows: list[dict[int, int]] = []
        which: list[int] = []
        for f in self.formula:
            k = unique.get(f)
            if k is None:
                row = {}
                for m, c in (((), f),) if isinstance(f, int) else f.terms:
                    row[index.setdefault(m, len(index))] = c
                k = unique[f] = len(rows)
                rows.append(row)
            which.append(k)
        big = max((abs(c) for row in rows for c in row.values()), default=0) * max(len(self.formula), 1) >= 2 ** 62
        U = np.zeros((len(rows), len(index)), object if big else np.int64)
        for i, row in enumerate(rows):
            for j, c in row.items():
                U[i, j] = c
        return list(index), U[np.asarray(which, np.int64)] if which else U


def plan(G: nx.DiGraph, weights: int) -> Memory:
    """The memory of the analysis graph's main graph under the three orders; `weights`: the bytes of
    its stored tensors (the costs' weight_bytes, summed)."""
    B = _Buffers(G)
    file_order = B.file_order
    # a chain has one topological order: every order is the file's
    only = B.chain
    ort = file_order if only else _onnxruntime_order(B)
    greedy = file_order if only else _greedy_order(B)
    done: dict[tuple[int, ...], Schedule] = {}

    def schedule(name: str, how: str, order: list[int]) -> Schedule:
        key = tuple(order)
        hit = done.get(key)
        if hit is None:
            hit = done[key] = _schedule(B, name, how, order)
        return replace(hit, name=name, how=how)

    runtime = schedule("onnxruntime", "its default order (a depth-first walk back from the last ops), reproduced", ort)
    file = schedule("file", "the file's node order", file_order)
    candidates = [
        schedule("memory-aware", "a greedy list schedule: of the ops ready, the one adding the fewest bytes net of "
                 "those it frees", greedy),
        replace(runtime, name="memory-aware", how="onnxruntime's depth-first order: the greedy list schedule peaks "
                "higher here"),
        replace(file, name="memory-aware", how="the file's order: the greedy list schedule and the depth-first order "
                "peak higher here"),
    ]
    aware = min(candidates, key=lambda c: c.peak.bytes)  # the first of equal peaks
    schedules = {"onnxruntime": replace(runtime, planned=_planned(B, ort)), "file": file, "memory-aware": aware}
    outs = [b for b, o in enumerate(B.is_output) if o]
    out_bytes = sum(B.size[b] for b in outs)
    formulas = None
    if B.free:
        try:
            formulas = {"weights": weights, "inputs": B.inputs_f, "outputs": _sum(B.formula[b] for b in outs),
                        "activations": _sum(f for f, o in zip(B.formula, B.is_output) if not o)}
        except TooLarge:
            formulas = None
    # an output made in place under onnxruntime's order is in its input's buffer (its span is empty)
    first, last = _spans(B, ort)
    is_output = B.arrays()[2]
    buffers = int(np.count_nonzero((first <= last) & ~is_output))
    return Memory(weights=weights, inputs=B.inputs, outputs=out_bytes, activations=sum(B.size) - out_bytes,
                  tensors=len(B.size) - len(outs), buffers=buffers, schedules=schedules,
                  unknown=tuple(B.unknown), formulas=formulas, made_by=B.made_by, steps=tuple(B.steps),
                  workspace=B.workspace)


def _im2col(x: Any, w: Any, y: Any, dtype: str) -> int:
    """The bytes of a Conv's im2col matrix for one image, from its input, kernel and output shapes:
    0 for a pointwise Conv (a 1×1 kernel whose output keeps the input's size: stride 1, no
    padding, a matrix product over the input itself) or unknown shapes."""
    if x is None or w is None or y is None or len(w) < 3 or len(y) != len(w) or ITEM_BITS.get(dtype) is None or \
            not all(d.__class__ is int for d in (*w, *y)):
        return 0
    if all(k == 1 for k in w[2:]) and tuple(x[2:]) == tuple(y[2:]):
        return 0
    return w[1] * prod(w[2:]) * prod(y[2:]) * ITEM_BITS[dtype] // 8


def _onnxruntime_order(B: _Buffers) -> list[int]:
    """onnxruntime's default execution order (GraphViewer: Graph::ReverseDFSFrom the leaf nodes,
    in node-index order, each node's input nodes sorted by index): a node is placed when all its
    inputs' producers are."""
    n = len(B.steps)
    producers = B.after
    has_consumer = [False] * n
    for ps in producers:
        for p in ps:
            has_consumer[p] = True
    stack: list[tuple[int, bool]] = [(s, False) for s in range(n) if not has_consumer[s]]
    visited = [False] * n
    out: list[int] = []
    while stack:
        s, leave = stack.pop()
        if leave:
            out.append(s)
            continue
        if visited[s]:
            continue
        visited[s] = True
        stack.append((s, True))
        for p in producers[s]:
            if not visited[p]:
                stack.append((p, False))
    return out


def _greedy_order(B: _Buffers) -> list[int]:
    """A list schedule: run, of the ops whose inputs are ready, the one whose outputs add the fewest
    bytes net of the buffers it is the last to read (ties: file order)."""
    n = len(B.steps)
    readers: list[list[int]] = [[] for _ in B.size]
    for s in range(n):
        for b in B.reads[s]:
            readers[b].append(s)
    remaining = [len(r) for r in readers]
    waiting = [len(B.after[s]) for s in range(n)]
    consumers: list[list[int]] = [[] for _ in range(n)]
    for s in range(n):
        for p in B.after[s]:
            consumers[p].append(s)
    done = [False] * n
    makes: list[list[int]] = [[] for _ in range(n)]  # step → the buffers it allocates
    for b, s in enumerate(B.maker):
        makes[s].append(b)
    size, is_output, reads = B.size, B.is_output, B.reads

    def delta(s: int) -> int:
        d = sum(size[b] for b in makes[s])
        for b in reads[s]:
            if remaining[b] == 1 and not is_output[b]:
                d -= size[b]
        return d

    version = [0] * n
    heap = [(delta(s), s, 0) for s in range(n) if waiting[s] == 0]
    heapq.heapify(heap)
    out: list[int] = []
    while heap:
        _, s, v = heapq.heappop(heap)
        if done[s] or v != version[s]:
            continue
        done[s] = True
        out.append(s)
        for b in reads[s]:
            remaining[b] -= 1
            if remaining[b] == 1:  # its last reader now frees it: that reader got cheaper
                r = next(x for x in readers[b] if not done[x])
                if waiting[r] == 0:
                    version[r] += 1
                    heapq.heappush(heap, (delta(r), r, version[r]))
        for c in consumers[s]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(heap, (delta(c), c, version[c]))
    return out


def _schedule(B: _Buffers, name: str, how: str, order: list[int]) -> Schedule:
    n = len(order)
    if not n:
        return Schedule(name, how, (), (), Peak(0, 0, 0, 0, "", (), 0 if B.free else None, None))
    start, end = _spans(B, order)
    size, is_output = B.arrays()[0], B.arrays()[2]
    held = start <= end
    act, out = held & ~is_output, held & is_output
    acts = _cumulative(start[act], end[act], size[act], n)
    outs = _cumulative(start[out], end[out], size[out], n)
    curve = acts + outs
    k = int(np.argmax(curve))  # the first of equal peaks
    live = np.flatnonzero((start <= k) & (k <= end))
    shown = sorted(live.tolist(), key=lambda b: -B.size[b])[:_SHOWN_LIVE]
    lives = tuple(Live(B.own[b][0], B.size[b], "output" if B.is_output[b] else "activation", B.steps[B.maker[b]])
                  for b in shown)
    formula, why = _peak_formula(B, start, end, k) if B.free else (None, None)
    peak = Peak(int(curve[k]), int(acts[k]), int(outs[k]), k, B.steps[order[k]], lives, formula, why)
    steps = B.steps
    return Schedule(name, how, tuple(steps) if order == B.file_order else tuple([steps[s] for s in order]),
                    tuple(curve.tolist()), peak)


def _cumulative(start: np.ndarray, end: np.ndarray, size: np.ndarray, n: int) -> np.ndarray:
    """Bytes live at each position, of buffers held from `start` through `end` (`size` float64,
    exact below 2**53 bytes in all, or Python integers past that)."""
    if size.dtype == object:
        diff = [0] * (n + 1)
        for s0, s1, b in zip(start.tolist(), end.tolist(), size.tolist()):
            diff[s0] += b
            diff[s1 + 1] -= b
        return np.array(list(accumulate(diff[:n])), dtype=object)
    d = np.bincount(start, weights=size, minlength=n + 1) - np.bincount(end + 1, weights=size, minlength=n + 1)
    return np.rint(np.cumsum(d[:n])).astype(np.int64)


def _spans(B: _Buffers, order: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The first and last position at which each buffer's memory is counted, in `order`. An output
    is held to the end; an op made in place counts from the step after (during it, its input holds
    the memory); a buffer whose last is before its first holds none of its own."""
    key = tuple(order)  # the schedule and the plan of one order share its spans
    hit = B._spans.get(key)
    if hit is None:
        hit = B._spans[key] = _find_spans(B, order)
    return hit


def _find_spans(B: _Buffers, order: list[int]) -> tuple[np.ndarray, np.ndarray]:
    n = len(order)
    pos = np.empty(n, np.int64)
    pos[np.asarray(order, np.int64)] = np.arange(n)
    _, maker, is_output, reader_step, reader_buf = B.arrays()
    start = pos[maker]
    last = start.copy()
    np.maximum.at(last, reader_buf, pos[reader_step])
    end = np.where(is_output, n - 1, last)
    places = B.in_place_pairs()
    if len(places):
        steps, outs, ins = places
        at = pos[steps]
        taken = last[ins] == at  # nothing later reads the input: the output takes its memory
        if taken.any():
            # the buffer whose memory each one made in place is in: its input's, or that one's holder
            # (a chain of in-place ops), found by pointer jumping
            b, a, p = outs[taken], ins[taken], at[taken]
            holder = np.arange(len(start))
            holder[b] = a
            while True:
                up = holder[holder]
                if np.array_equal(up, holder):
                    break
                holder = up
            end = end.copy()
            np.maximum.at(end, holder[b], end[b])  # the holder lives as long as the last of them
            start = start.copy()
            start[b], end[b] = p + 1, p  # none of their own
    return start, end


def _planned(B: _Buffers, order: list[int]) -> Planned:
    """onnxruntime's allocation plan along `order` (SequentialPlanner, sequential execution): an
    output made in place or by an alias shares its input's buffer (as in _spans); any other takes
    the most recently freed buffer whose first tensor has its shape and element size, else a new
    one. A buffer is freed when the last user of every tensor in it has run; one nothing reads is
    held to the end."""
    first, last = _spans(B, order)
    n = len(order)
    # an output nothing reads (Dropout's mask) stays allocated to the end of the run (measured)
    read = np.bincount(B.arrays()[4], minlength=len(B.size)) > 0
    last = np.where(read | (first > last), last, n - 1)
    # the buffers of their own, in the order they are allocated (by step, then output), and the
    # ones freed, in the order they are freed (by their last user's step, then allocation)
    own = np.flatnonzero(first <= last)
    own = own[np.lexsort((own, first[own]))]
    is_output = B.arrays()[2]
    dying = own[~is_output[own]]
    dying = dying[np.argsort(last[dying], kind="stable")]
    death, dying_l = last[dying].tolist(), dying.tolist()
    key, size, outputs = B.shape_key, B.size, B.is_output
    phys_size: list[int] = []
    phys_start: list[int] = []
    phys_end: list[int] = []
    phys_key: list[tuple | None] = []
    owner = [-1] * len(size)
    freed: dict[tuple, list[int]] = {}  # (shape, bits) → dead physical buffers, the last freed at the end
    reused = 0
    i, dead = 0, len(dying_l)
    for b, p, end in zip(own.tolist(), first[own].tolist(), last[own].tolist()):
        while i < dead and death[i] < p:  # freed after its last user ran, before this step
            phys = owner[dying_l[i]]
            k = phys_key[phys]
            if k is not None:  # a buffer of a shape the planner does not know is not reused
                freed.setdefault(k, []).append(phys)
            i += 1
        k = key[b]
        stack = freed.get(k) if k is not None and k[1] is not None and not outputs[b] else None
        if stack:  # onnxruntime scans its free list from the last freed: the first match is this
            phys = stack.pop()
            reused += 1
            phys_end[phys] = max(phys_end[phys], end)
        else:
            phys = len(phys_size)
            phys_size.append(size[b])
            phys_start.append(p)
            phys_end.append(end)
            phys_key.append(k)
        owner[b] = phys
    if not n:
        return Planned((), 0, 0, "", 0, 0)
    if sum(phys_size) < 2 ** 62:
        held = np.zeros(n + 1, np.int64)
        np.add.at(held, np.asarray(phys_start, np.int64), np.asarray(phys_size, np.int64))
        np.subtract.at(held, np.asarray(phys_end, np.int64) + 1, np.asarray(phys_size, np.int64))
        curve = np.cumsum(held[:n]).tolist()
    else:  # sizes past int64 (dims a file declares): Python's integers
        diff = [0] * (n + 1)
        for s0, s1, b in zip(phys_start, phys_end, phys_size):
            diff[s0] += b
            diff[s1 + 1] -= b
        curve = list(accumulate(diff[:n]))
    top = max(range(n), key=curve.__getitem__)  # the first of equal peaks
    return Planned(tuple(curve), curve[top], top, B.steps[order[top]], len(phys_size), reused)


def _sum(formulas: Iterable[Dim]) -> Dim:
    """The sum of many formulas, added up term by term (one Expr at the end, not one per term)."""
    counts: dict[int, list] = {}  # formulas are shared objects: each distinct one added once, times its count
    for f in formulas:
        hit = counts.get(id(f))
        if hit is None:
            counts[id(f)] = [f, 1]
        else:
            hit[1] += 1
    d: dict[Any, int] = {}
    for f, n in counts.values():
        for m, c in (((), f),) if isinstance(f, int) else f.terms:
            d[m] = d.get(m, 0) + c * n
    return Expr.make(d)


def _peak_formula(B: _Buffers, start: np.ndarray, end: np.ndarray, k: int) -> tuple[Dim | None, str | None]:
    """The live bytes at position k as a formula, when they are at least every other position's
    for every value of the free dims ≥ 1: D = live(k) − live(p) has D(1) ≥ 0 and no negative
    coefficient but the constant's (each monomial of free dims is then ≥ its value at 1)."""
    if B.floors:
        return None, "the bytes hold floors of the free dims (strides): the peak is given per value only"
    if B.empty_at_point:  # the curve at the point is not the formulas' value there
        return None, "some tensors are empty at the free dims' value 1 only: the peak is given per value only"
    monomials, C = B.coefficients()
    held = np.flatnonzero(start <= end)
    n = int(end.max()) + 1 if len(end) else 0
    E = np.zeros((n + 1, len(monomials)), C.dtype)
    np.add.at(E, start[held], C[held])
    np.add.at(E, end[held] + 1, -C[held])
    live = np.cumsum(E[:n], axis=0)
    D = live[k] - live
    at_one = np.array([_one(m, {}, B.point) for m in monomials], C.dtype)
    varying = np.array([bool(m) for m in monomials])
    if (D[:, varying] < 0).any() or (D @ at_one < 0).any():
        return None, "different steps peak at different values of the free dims"
    try:
        return Expr.make({m: int(c) for m, c in zip(monomials, live[k].tolist())}), None
    except TooLarge:
        return None, "the peak's formula is over the size bound"


def _one(m: Any, memo: dict[Any, int], point: Mapping[str, int]) -> int:
    """A monomial's value at the point."""
    v = memo.get(m)
    if v is None:
        v = memo[m] = value(Expr(((m, 1),)), point) if m else 1
    return v


def group_peaks(schedule: Schedule, group_of_node: Mapping[str, str]) -> dict[str, int]:
    """The highest live bytes while each group's ops run (a group: a block, a layer, an op type;
    an op `group_of_node` does not name is its own), in order of first appearance. A group none
    of whose ops is a step (Constants, the ops inside an If's branches) is not in it."""
    out: dict[str, int] = {}
    get = out.get
    for nid, live in zip(schedule.steps, schedule.curve):
        g = group_of_node.get(nid, nid)
        if live > get(g, -1):
            out[g] = live
    return out


