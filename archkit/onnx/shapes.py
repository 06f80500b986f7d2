"""The shape engine: the shapes onnx's whole-graph inference leaves unknown, found op by op.
archkit.onnx.graph calls it while it builds the graph; where dims are formulas in free dims it
asks archkit.onnx.symbolic_shapes, which computes in archkit.onnx.symbolic's formulas.

onnx's inference gives every shape that follows from shapes alone. What it cannot give are
shapes that depend on values the graph computes: a Reshape whose target is PyTorch's
Shape → Gather → Unsqueeze → Concat of another tensor's shape, an Expand to a computed shape, a
ConstantOfShape of one. onnx's own value propagation (data_prop) finds many of them, but it
computes every tensor element by element, with no bound: a 300-byte Range(0, 1e8) took 14 GB.

This engine walks the main graph once, in topological order, and asks onnx's per-op shape
inference (`infer_node_outputs`) for each op's output types, handing it the values known so
far. The ops whose outputs feed, directly or through other ops, an input that is read as a
value (Reshape's shape, Slice's starts, Expand's shape, ...) are evaluated with onnx's
reference implementation, and only

- when the op is one whose work is linear in its inputs and outputs (shape arithmetic, data
  movement, elementwise and reductions: never a Conv or a MatMul), and
- when its outputs' element count, known from their inferred shapes *before* it is evaluated,
  is at most BOUND.

The bound, not a list of "generator" ops, is the safety: a Range(0, 1e8) is simply not
evaluated, its consumers stay unknown, and everything else resolves.

With free dims kept free (`symbols`), a dim is a number or a formula in them (archkit.onnx.symbolic,
written into the TypeProtos as a dim_param that names it, so that onnx's per-op inference carries
it along). Where onnx drops a formula, archkit.onnx.symbolic_shapes gives the op's output dims, and
the shape values computed from free dims (a Shape of [N, 3, 224, 224]) are followed in formulas,
within a smaller bound (1,024 elements) and archkit.onnx.symbolic's bound on a formula's size.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference.ops import load_op

from archkit.onnx import symbolic_shapes
from archkit.onnx.symbolic import Dim, Expr, Symbols, TooLarge
from archkit.onnx.symbolic_shapes import Merge, Value
from archkit.onnx.tensors import has_data

__all__ = ["BOUND", "VALUE_INPUTS", "initializer_values", "resolve"]

BOUND = 2**16  # the most elements a tensor evaluated by the engine may hold

# Per op: the inputs read as values, whose values decide the output's shape.
VALUE_INPUTS: Mapping[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "ConstantOfShape": (0,), "Tile": (1,), "Range": (0, 1, 2),
    "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3), "Resize": (1, 2, 3), "Upsample": (1,), "Unsqueeze": (1,),
    "Squeeze": (1,), "Split": (1,), "TopK": (1,), "OneHot": (1,), "CenterCropPad": (1,), "Col2Im": (1, 2),
    "ReduceSum": (1,), "ReduceMean": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "ReduceProd": (1,),
    "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
    "MaxUnpool": (2,), "DFT": (1, 2), "STFT": (1, 2, 3), "GridSample": (), "AffineGrid": (1,),
    "RandomNormalLike": (), "EyeLike": (), "Trilu": (),
    "If": (0,),  # not a shape, but which branch runs: archkit.costs counts the one taken
}

# Ops the engine may evaluate: their work is linear in the sizes of their inputs and outputs.
_EVALUATED = frozenset({
    "Shape", "Size", "Constant", "Identity", "Cast", "CastLike", "Gather", "GatherElements", "Slice", "Concat",
    "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Transpose", "Expand", "Tile", "Range", "ConstantOfShape",
    "Split", "Pad", "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Floor", "Ceil", "Round", "Sqrt", "Reciprocal",
    "Pow", "Sign", "Clip", "Min", "Max", "Sum", "Mean", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
    "Not", "And", "Or", "Xor", "Where", "ReduceProd", "ReduceSum", "ReduceMin", "ReduceMax", "ReduceMean",
    "ArgMax", "ArgMin", "CumSum", "OneHot", "Relu",
})
# Of those, the ones that read only their input's type, never its values.
_TYPE_ONLY = frozenset({"Shape", "Size"})
_SYMBOLIC_BOUND = 1024  # elements of a value computed in formulas (shapes, slice bounds: a few)
_MAX_EVALUATIONS = 100_000  # a file with more value ops than this is costed without the rest


def resolve(graph: onnx.GraphProto, types: dict[str, onnx.TypeProto], opsets: Mapping[str, int], *,
            values: Mapping[str, np.ndarray] | None = None, ir_version: int = onnx.IR_VERSION,
            symbols: Symbols | None = None, merged: list[Merge] | None = None) -> int:
    """Improve `types` (tensor name → TypeProto, updated in place) over a weight-free skeleton:
    its main graph and the branches of its Ifs; return how many op outputs gained a full shape.

    `values`: known tensor values (small integer initializers); the engine adds the ones it
    evaluates (to `values` itself when it is a dict, so the caller can read them).
    `symbols`: the build's formulas (archkit.onnx.symbolic.Symbols), when free dims are kept free: a
    dim_param it knows is a known dim, and the engine computes dims and shape values in them
    (archkit.onnx.symbolic_shapes). Where two different formulas were taken as equal, `merged` gains
    (op, op_type, a, b, kept)."""
    known_values: dict[str, np.ndarray] = values if isinstance(values, dict) else dict(values or {})
    nodes = _sorted(graph)
    walk = _Walk(types, known_values, _feeds_values(list(_all_nodes(nodes))), opsets, ir_version, symbols)
    walk.nodes(nodes)
    if merged is not None:
        merged.extend(walk.merged)
    return walk.gained


class _Walk:
    """One topological pass: per-op inference with the values known so far, and the bounded
    evaluation of what feeds value inputs."""

    def __init__(self, types: dict[str, onnx.TypeProto], values: dict[str, np.ndarray], needed: set[str],
                 opsets: Mapping[str, int], ir_version: int, symbols: Symbols | None = None) -> None:
        self.types, self.values, self.needed = types, values, needed
        self.imports = [onnx.helper.make_opsetid(d if d != "ai.onnx" else "", v) for d, v in opsets.items()]
        self.version = opsets.get("ai.onnx", opsets.get("", 1))
        self.ir_version = ir_version
        self.gained = 0
        self.evaluations = 0
        self.symbols = symbols or None
        # the build's formulas by name: a dim_param among them is a known dim
        self.exprs: dict[str, Expr] | None = self.symbols.exprs if self.symbols else None
        self.svalues: dict[str, Value] = {}  # tensor → its elements, some of them formulas
        self.merged: list[Merge] = []
        exprs = self.exprs
        self.full: Callable[[onnx.TypeProto | None], bool] = (lambda t: _full(t, exprs)) if exprs else _full

    def nodes(self, nodes: Iterable[onnx.NodeProto]) -> None:
        types, values, full, symbols = self.types, self.values, self.full, self.symbols
        for node in nodes:
            if node.domain not in ("", "ai.onnx"):
                continue  # custom domains keep what the whole-graph inference found
            if any(a.type in (_GRAPH, _GRAPHS) for a in node.attribute):
                if node.op_type == "If":
                    self.branches(node)
                continue  # Loop and Scan bodies keep what the whole-graph inference found
            outs = [o for o in node.output if o]
            if not all(full(types.get(o)) for o in outs):
                before = sum(full(types.get(o)) for o in outs)
                inferred = _infer_node(node, types, values, self.imports, self.version, self.ir_version)
                for name, t in inferred.items():
                    if _better(t, types.get(name), self.exprs):
                        types[name] = t
                if symbols and not all(full(types.get(o)) for o in outs):
                    self.fill(node, symbols)
                self.gained += sum(full(types.get(o)) for o in outs) - before
            if node.output and node.output[0] in self.needed and self.evaluations < _MAX_EVALUATIONS:
                if _evaluable(node, types, values):
                    self.evaluations += 1
                    result = _evaluate(node, values, types, self.version)
                    if result is not None:
                        values.update(result)
                elif symbols and node.op_type in symbolic_shapes.VALUES:
                    self.evaluations += 1
                    self.value(node)

    def branches(self, node: onnx.NodeProto) -> None:
        """An If: both branches walked (their ops read the outer scope); its outputs take the
        taken branch's types when the condition is known, else the types both branches agree on."""
        graphs = {a.name: a.g for a in node.attribute if a.type == _GRAPH}
        for g in graphs.values():
            for vi in (*g.input, *g.value_info, *g.output):
                if vi.name not in self.types or _better(vi.type, self.types[vi.name], self.exprs):
                    self.types[vi.name] = vi.type
            initializer_values(g.initializer, self.types, self.values)
            self.nodes(list(g.node))
        cond = self.values.get(node.input[0]) if node.input else None
        taken = [graphs.get("then_branch" if bool(cond.reshape(-1)[0]) else "else_branch")] \
            if cond is not None and cond.size == 1 else list(graphs.values())
        for k, out in enumerate(node.output):
            if not out or self.full(self.types.get(out)):
                continue
            found = [self.types.get(g.output[k].name) for g in taken if g is not None and k < len(g.output)]
            first = found[0] if found else None
            if first is not None and all(self.full(t) for t in found) and all(t == first for t in found):
                self.types[out] = first
                self.gained += 1

    # --- free dims: archkit.onnx.symbolic_shapes --------------------------------------------------
    def dims(self, name: str) -> tuple[Dim | None, ...] | None:
        """A tensor's dims (ints, formulas, None where unknown), None when its rank is unknown."""
        t = self.types.get(name)
        if t is None or not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
            return None
        get = (self.exprs or {}).get
        return tuple(d.dim_value if d.HasField("dim_value") else get(d.dim_param) for d in t.tensor_type.shape.dim)

    def input_value(self, name: str) -> Value | None:
        if not name:
            return None
        v = self.values.get(name)
        if v is not None:
            if v.size > _SYMBOLIC_BOUND:  # data, not a shape: no shape function reads it
                return None
            return tuple(int(x) if float(x).is_integer() else float(x) for x in v.reshape(-1).tolist()) \
                if v.dtype.kind in "iufb" else None
        return self.svalues.get(name)

    def context(self, node: onnx.NodeProto) -> symbolic_shapes.Context:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        dims = [self.dims(i) if i else None for i in node.input]
        values = [self.input_value(i) for i in node.input]
        out = self.types.get(node.output[0]) if node.output else None
        integer = out is None or not out.HasField("tensor_type") or out.tensor_type.elem_type in _INTEGERS
        return symbolic_shapes.Context(node, attrs, dims, values, self.merged, integer)

    def fill(self, node: onnx.NodeProto, symbols: Symbols) -> None:
        """The dims onnx left unknown, from archkit's shape function for the op."""
        fn = symbolic_shapes.SHAPES.get(node.op_type)
        if fn is None:
            return
        try:
            shapes = fn(self.context(node))
        except (TooLarge, TypeError, ValueError, IndexError, KeyError, ZeroDivisionError):
            return  # outside what the function handles, or over the size bound: stays unknown
        if not shapes:
            return
        for name, dims in zip(node.output, shapes):
            # a dim is an int an ONNX dim holds, or a formula (a float or a huge int: the file's nonsense)
            if not name or dims is None or not all(0 <= d < 2**63 if d.__class__ is int else d.__class__ is Expr
                                                   for d in dims):
                continue
            old = self.types.get(name)
            elem = old.tensor_type.elem_type if old is not None and old.HasField("tensor_type") else 0
            if not elem:
                elem = _elem_type(node, self.types)
            t = onnx.TypeProto()
            t.tensor_type.elem_type = elem
            shape = t.tensor_type.shape
            shape.SetInParent()
            for d in dims:
                if isinstance(d, int):
                    shape.dim.add().dim_value = d
                else:
                    shape.dim.add().dim_param = symbols.name(d)
            if _better(t, old, symbols.exprs):
                self.types[name] = t

    def value(self, node: onnx.NodeProto) -> None:
        """The op's output value in free dims (PyTorch's Shape → Gather → Concat arithmetic)."""
        out = node.output[0]
        t = self.types.get(out)
        n = None
        if t is not None and _full(t):
            n = math.prod(d.dim_value for d in t.tensor_type.shape.dim)
            if n > _SYMBOLIC_BOUND:
                return
        try:
            v = symbolic_shapes.VALUES[node.op_type](self.context(node), n)
        except (TooLarge, TypeError, ValueError, IndexError, KeyError, ZeroDivisionError):
            return
        if v is None or len(v) > _SYMBOLIC_BOUND or (n is not None and len(v) != n):
            return
        if all(x.__class__ is int for x in v) and t is not None and _full(t):
            dims = tuple(d.dim_value for d in t.tensor_type.shape.dim)
            try:
                np_type = onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type)
                self.values[out] = np.array(v, dtype=np_type).reshape(dims)
            except (OverflowError, ValueError, TypeError, KeyError):
                return  # out of the type's range, or no numeric type: left unevaluated
        else:
            self.svalues[out] = v

# Initializer types whose values the engine reads: what shape arithmetic uses.
_VALUE_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.FLOAT,
                          onnx.TensorProto.DOUBLE, onnx.TensorProto.BOOL})


def initializer_values(tensors: Iterable[onnx.TensorProto], types: dict[str, onnx.TypeProto],
                       values: dict[str, np.ndarray]) -> None:
    """Add the values of the initializers the engine may read (held in the file, within the
    bound, of a type shape arithmetic uses) to `values`, and every initializer's type to `types`."""
    for t in tensors:
        types.setdefault(t.name, onnx.helper.make_tensor_type_proto(t.data_type, t.dims))
        if t.name not in values and t.data_type in _VALUE_TYPES and math.prod(t.dims) <= BOUND and has_data(t):
            values[t.name] = numpy_helper.to_array(t)


def _all_nodes(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.NodeProto]:
    """The nodes and, recursively, those of their If branches."""
    for n in nodes:
        yield n
        if n.op_type == "If":
            for a in n.attribute:
                if a.type == _GRAPH:
                    yield from _all_nodes(a.g.node)


_A = onnx.AttributeProto
_GRAPH, _GRAPHS = _A.GRAPH, _A.GRAPHS


def _sorted(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The main graph's nodes in topological order (the file's order when it is sorted, as ONNX
    requires; otherwise Kahn's algorithm, ties by file order)."""
    nodes = list(graph.node)
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    ok = True
    for n in nodes:
        if not all(i in available for i in n.input):
            ok = False
            break
        available.update(n.output)
    if ok:
        return nodes
    producer = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    waiting = [0] * len(nodes)
    users: dict[int, list[int]] = {}
    for k, n in enumerate(nodes):
        deps = {producer[i] for i in n.input if i in producer and producer[i] != k}
        waiting[k] = len(deps)
        for d in deps:
            users.setdefault(d, []).append(k)
    ready = [k for k, w in enumerate(waiting) if w == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(nodes[k])
        for u in users.get(k, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    return order  # a cycle leaves its ops out: the graph builder names it


def _feeds_values(nodes: list[onnx.NodeProto]) -> set[str]:
    """The first outputs of the nodes whose values some op reads as a value input, directly or
    through others (names, not ids: protobuf may hand out a new wrapper per access)."""
    producer = {o: n for n in nodes for o in n.output if o}
    wanted = [n.input[i] for n in nodes for i in VALUE_INPUTS.get(n.op_type, ()) if i < len(n.input) and n.input[i]]
    needed: set[str] = set()
    while wanted:
        p = producer.get(wanted.pop())
        if p is None or p.output[0] in needed:
            continue
        needed.add(p.output[0])
        if p.op_type not in _TYPE_ONLY:
            wanted.extend(i for i in p.input if i)
    return needed


def _full(t: onnx.TypeProto | None, known: Mapping[str, Expr] | None = None) -> bool:
    """Whether every dim is known: a value, or (`known`) a formula of the build's."""
    if t is None or not t.HasField("tensor_type"):
        return False
    tt = t.tensor_type
    if known:
        return tt.HasField("shape") and all(d.HasField("dim_value") or d.dim_param in known for d in tt.shape.dim)
    return tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim)


def _better(new: onnx.TypeProto, old: onnx.TypeProto | None, known: Mapping[str, Expr] | None = None) -> bool:
    """Whether `new` says more than `old`: a shape where there was none, or more dims known."""
    if not new.HasField("tensor_type") or not new.tensor_type.HasField("shape"):
        return False
    if old is None or not old.HasField("tensor_type") or not old.tensor_type.HasField("shape"):
        return True
    if known:
        count = lambda t: sum(d.HasField("dim_value") or d.dim_param in known for d in t.tensor_type.shape.dim)
    else:
        count = lambda t: sum(d.HasField("dim_value") for d in t.tensor_type.shape.dim)
    return count(new) > count(old)


_INTEGERS = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.INT16, onnx.TensorProto.INT8,
                       onnx.TensorProto.UINT64, onnx.TensorProto.UINT32, onnx.TensorProto.UINT16,
                       onnx.TensorProto.UINT8, onnx.TensorProto.BOOL})


def _elem_type(node: onnx.NodeProto, types: Mapping[str, onnx.TypeProto]) -> int:
    """An output's element type when onnx gave none: the data input's (a ConstantOfShape: its value's)."""
    if node.op_type == "ConstantOfShape":
        v = next((a.t for a in node.attribute if a.name == "value"), None)
        return v.data_type if v is not None else onnx.TensorProto.FLOAT
    t = types.get(node.input[0]) if node.input and node.input[0] else None
    return t.tensor_type.elem_type if t is not None and t.HasField("tensor_type") else 0


def _infer_node(node: onnx.NodeProto, types: Mapping[str, onnx.TypeProto], values: Mapping[str, np.ndarray],
                imports: list[onnx.OperatorSetIdProto], version: int, ir_version: int) -> dict[str, onnx.TypeProto]:
    try:
        schema = onnx.defs.get_schema(node.op_type, version, "")
    except Exception:  # noqa: BLE001 - onnx.defs raises its own C++ kind for an op it does not know
        return {}  # not an operator of this opset: the checks in archkit.onnx.load name it
    inputs = {i: types[i] for i in node.input if i and i in types}
    if len(inputs) < len({i for i in node.input if i}):  # an input may be read twice (Slice's axes and steps)
        return {}
    data = {i: numpy_helper.from_array(values[i], i) for i in node.input if i in values}
    try:
        out = onnx.shape_inference.infer_node_outputs(schema, node, inputs, data, opset_imports=imports,
                                                      ir_version=ir_version)
    except Exception:  # noqa: BLE001 - the op's inference rejected what it was given: it stays unknown
        return {}
    if node.op_type == "Dropout" and schema.since_version < 10 and len(node.output) > 1 and node.output[1] and \
            node.input[0] in inputs and node.output[1] not in out:
        # onnx leaves the mask of Dropout-1/6/7 untyped; its schema makes it the input's type and shape
        out[node.output[1]] = inputs[node.input[0]]
    return out


def _evaluable(node: onnx.NodeProto, types: Mapping[str, onnx.TypeProto], values: Mapping[str, np.ndarray]) -> bool:
    """Whether the op may be evaluated: linear work, every input it reads known, and its outputs'
    element count known and within the bound, before anything is computed."""
    if node.op_type not in _EVALUATED:
        return False
    outs = [o for o in node.output if o]
    if not outs or not all(_full(types.get(o)) for o in outs):
        return False
    size = sum(math.prod(d.dim_value for d in types[o].tensor_type.shape.dim) for o in outs)
    if size > BOUND:
        return False
    if node.op_type in _TYPE_ONLY:
        return bool(node.input) and _full(types.get(node.input[0]))
    return all(i in values for i in node.input if i)


def _evaluate(node: onnx.NodeProto, values: Mapping[str, np.ndarray], types: Mapping[str, onnx.TypeProto],
              version: int) -> dict[str, np.ndarray] | None:
    args: list[np.ndarray | None]
    try:
        cls = load_op("", node.op_type, version)
        op = cls(node, {"opsets": {"": version}, "verbose": 0, "log": _quiet, "new_ops": None,
                        "evaluator_cls": None})
        if node.op_type in _TYPE_ONLY:
            dims = tuple(d.dim_value for d in types[node.input[0]].tensor_type.shape.dim)
            args = [np.broadcast_to(np.zeros((), np.float32), dims)]  # a view: nothing allocated
        else:
            args = [values[i] if i else None for i in node.input]
        out = op.run(*args)
    except Exception:  # noqa: BLE001 - the reference implementation refused these inputs: the op stays unevaluated
        return None
    result = {}
    for name, v in zip(node.output, out):
        if name and v is not None:
            v = np.asarray(v)
            if v.size > BOUND:
                return None
            result[name] = v
    return result


def _quiet(*_args: object) -> None:
    pass
