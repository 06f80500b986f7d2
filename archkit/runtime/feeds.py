"""The inputs an ONNX file is run on (verify FILE, bench FILE), and what to say when a branch fails.

A file's graph inputs are fed as the user says, and never guessed from their names:

- `--input-shape NAME=D1,D2,...` fixes an input's whole shape (its named dims then hold those
  values in the other inputs too), `--input-shape DIM=V` one symbolic dim wherever it appears;
- `--input-value NAME=V[,V...]` gives an input its elements (a scalar such as a sample rate,
  or a small tensor): the values are checked against the input's element type and shape;
- `--inputs FILE.npz`: real arrays, one per input by name, checked against the declared
  element types and fixed dims; their batch is their own.

Otherwise an input gets seeded values: standard-normal floats, integers 0 and 1. The batch dim
is the first dim of an input when the file leaves it free (and any dim of the same name): it
takes each of the batch sizes asked for. Any other free dim the user did not fix is an error
that names it, the input and the option: set to 1, or to the batch size, a detector's height
and width made its Resize fail.

When onnxruntime fails inside an If or a Loop, `branch_inputs` follows the branch's condition
back through the graph (across subgraphs) to the graph inputs it depends on, so that the error
can name them and `--input-value`: a seeded scalar is rarely a sample rate the model takes.
"""

from __future__ import annotations

import math
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from archkit.errors import InputError, UnsupportedError, UsageError
from archkit.onnx.graph import input_value_range

__all__ = ["GIVEN", "VALUE_ELEMENTS", "Feeds", "Input", "branch_inputs", "from_npz", "plan", "seeded_array"]

_NUMBERS = "biuf"  # numpy kinds a value or seeded data can be given for
GIVEN = "given with --input-value"  # an Input's source
VALUE_ELEMENTS = 64  # an input this small can be given with --input-value


@dataclass(frozen=True)
class Input:
    """One graph input as it is fed: its element type, and either its dims (None: the batch
    size) or its value (given with --input-value, or an array of --inputs)."""

    name: str
    dtype: np.dtype
    dims: tuple[int | None, ...]
    value: np.ndarray | None = None
    source: str = "seeded"  # seeded, GIVEN, or "from FILE.npz"


@dataclass(frozen=True)
class Feeds:
    """How a file's inputs are fed. `batch_input`: the first input whose first dim the file leaves
    free (whether or not --input-shape then fixed it): the batch is its first dim."""

    inputs: tuple[Input, ...]
    batch_input: str | None = None
    arrays: str | None = None  # the --inputs file, when the arrays come from one

    @property
    def batched(self) -> bool:
        """Does some dim follow the batch sizes asked for?"""
        return any(d is None for i in self.inputs for d in i.dims)

    @property
    def batch(self) -> int:
        """The batch when nothing follows the batch sizes (the arrays' own with --inputs): the
        batch input's first dim, else the first dim of the first input with one, else 1."""
        first = [i.dims[0] for i in self.inputs if i.dims and i.dims[0] is not None
                 and (self.batch_input is None or i.name == self.batch_input)]
        return int(first[0]) if first else 1

    def batches(self, batch_sizes: Sequence[int]) -> tuple[int, ...]:
        return tuple(batch_sizes) if self.batched else (self.batch,)

    def feed(self, batch: int, seed: int) -> dict[str, np.ndarray]:
        """Every input at `batch`: the given values as they are, the others seeded with `seed`
        (drawn in input order, so an archkit export gets the values Keras parity uses)."""
        rng = np.random.default_rng(seed)
        return {i.name: i.value if i.value is not None else
                seeded_array(rng, [batch if d is None else d for d in i.dims], i.dtype) for i in self.inputs}

    def runs(self, batch_sizes: Sequence[int], seeds: Sequence[int], seed: int = 0
             ) -> list[tuple[int, int, dict[str, np.ndarray]]]:
        """(seed, batch, feed) for every seed and batch size; one run of the arrays with --inputs."""
        if self.arrays is not None:
            return [(0, self.batch, self.feed(self.batch, 0))]
        return [(s, b, self.feed(b, seed + 1000 * s + b)) for s in seeds for b in self.batches(batch_sizes)]

    def explain(self, model: onnx.ModelProto, message: str, feed: Mapping[str, np.ndarray] | None) -> str:
        """What to add to onnxruntime's message when it failed inside an If or a Loop whose
        condition depends on graph inputs: those inputs, what they were fed, and the option."""
        op, names = branch_inputs(model, message)
        if not names:
            return ""
        by_name = {i.name: i for i in self.inputs}
        fed = []
        for n in names:
            v = None if feed is None else feed.get(n)
            source = by_name[n].source if n in by_name else "seeded"
            if v is not None and v.size <= 4:
                values = ",".join(_number_text(x) for x in v.reshape(-1).tolist())
                fed.append(f"{values}, {source}" if len(names) == 1 else f"{n} = {values}, {source}")
        which = ", ".join(repr(n) for n in names)
        small = [n for n in names if feed is None or n not in feed or feed[n].size <= VALUE_ELEMENTS]
        if self.arrays is not None:
            give = f"if {'that is' if len(names) == 1 else 'those are'} not what the model takes, correct {self.arrays}"
        elif small:
            give = (f"if {'that is' if len(small) == 1 else 'those are'} no value the model takes, give "
                    + ("one" if len(small) == 1 else "them") + " with " + " ".join(f"--input-value {n}=V" for n in small))
        else:
            give = "if the seeded data is not what the model takes, give real data with --inputs FILE.npz"
        return (f"; it failed inside {'an If' if op == 'If' else 'a Loop'} whose condition depends on input"
                f"{'s' if len(names) > 1 else ''} {which}" + (f" (fed {'; '.join(fed)})" if fed else "") + f": {give}")


def seeded_array(rng: np.random.Generator, dims: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """Standard-normal values in a float type (drawn in float32), 0 and 1 in any other."""
    if dtype == np.float32:
        return rng.standard_normal(dims).astype(np.float32)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(dims).astype(np.float32).astype(dtype)
    return rng.integers(0, 2, dims).astype(dtype)


def _number_text(x: object) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


# --- the plan: shapes and values from the options ------------------------------------------------

def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _dtype(inp: onnx.ValueInfoProto) -> np.dtype:
    if not inp.type.HasField("tensor_type"):
        raise UnsupportedError(f"input {inp.name!r} is a {inp.type.WhichOneof('value') or 'value of no type'}: "
                               "archkit feeds tensors only")
    elem = inp.type.tensor_type.elem_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem)) if elem else np.dtype(np.float32)
    if dtype.kind not in _NUMBERS:
        raise UnsupportedError(f"input {inp.name!r} holds {onnx.TensorProto.DataType.Name(elem).lower()}: archkit "
                               "feeds numbers only")
    return dtype


def _declared(inp: onnx.ValueInfoProto) -> list[int | str] | None:
    """The declared dims: numbers, or the name of a free dim (`input:axis` when it has none);
    None when the rank is not declared."""
    tt = inp.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else (d.dim_param or f"{inp.name}:{axis}")
            for axis, d in enumerate(tt.shape.dim)]


def plan(model: onnx.ModelProto, *, input_shapes: Mapping[str, Sequence[int] | int] | None = None,
         input_values: Mapping[str, Sequence[int | float]] | None = None, what: str = "the model") -> Feeds:
    """How to feed `model`'s inputs from --input-shape (`input_shapes`: an input's whole shape, or
    a symbolic dim's value) and --input-value (`input_values`). Usage errors name the input and
    the option to give; `what` (the file) begins those about the file's own dims."""
    shapes, values = dict(input_shapes or {}), dict(input_values or {})
    inputs = _graph_inputs(model)
    names = [i.name for i in inputs]
    declared = {i.name: _declared(i) for i in inputs if i.type.HasField("tensor_type")}
    dim_names = {d for dims in declared.values() for d in dims or () if isinstance(d, str)}
    unknown = sorted(set(shapes) - set(names) - dim_names)
    if unknown:
        raise UsageError(f"--input-shape names no graph input or symbolic dim: {unknown}; inputs are {sorted(names)}"
                         + (f", symbolic dims {sorted(dim_names)}" if dim_names else ""))
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UsageError(f"--input-value names no graph input: {unknown}; inputs are {sorted(names)}")
    bound: dict[str, int] = {}  # symbolic dim → its value
    for k, v in shapes.items():
        if k not in names:
            one = (v,) if isinstance(v, int) else tuple(v)
            if len(one) != 1:
                raise UsageError(f"--input-shape {k}: a symbolic dimension takes one value, not {len(one)}")
            bound[k] = one[0]
    full: dict[str, tuple[int, ...]] = {}
    for name in names:
        if name in shapes:
            full[name] = _whole_shape(name, shapes[name], declared.get(name))
            for d, v in zip(declared.get(name) or (), full[name]):
                if isinstance(d, str):
                    bound.setdefault(d, v)  # the same dim elsewhere holds the same value
    # the batch: an input's first dim where the file leaves it free, and that dim's name elsewhere
    batch_names = {dims[0] for n, dims in declared.items() if n not in values and dims and isinstance(dims[0], str)}
    batch_names -= set(bound)
    out, unfixed = [], []
    for inp in inputs:
        dtype = _dtype(inp)
        dims = declared[inp.name]
        if inp.name in values:
            out.append(_valued(inp.name, dtype, full.get(inp.name, dims), bound, values[inp.name]))
            continue
        if inp.name in full:
            out.append(Input(inp.name, dtype, full[inp.name]))
            continue
        if dims is None:
            raise UsageError(f"{what}: input {inp.name!r} declares no shape: give it with --input-shape "
                             f"{inp.name}=D1,D2,...")
        fed: list[int | None] = []
        free = []
        for axis, d in enumerate(dims):
            if isinstance(d, int):
                fed.append(d)
            elif d in bound:
                fed.append(bound[d])
            elif axis == 0 or d in batch_names:
                fed.append(None)
            else:
                fed.append(None)
                free.append((axis, d))
        if free:
            unfixed.append((inp.name, dims, fed, free))
        out.append(Input(inp.name, dtype, tuple(fed)))
    if unfixed:
        raise UsageError(f"{what}: " + _free_dims_text(*unfixed[0])
                         + (f"; so do inputs {', '.join(repr(u[0]) for u in unfixed[1:])}" if len(unfixed) > 1 else ""))
    return Feeds(tuple(out), _batch_input(inputs, set(values)))


def _batch_input(inputs: Sequence[onnx.ValueInfoProto], valued: set[str]) -> str | None:
    """The first input (given no value) whose first dim the file leaves free."""
    for inp in inputs:
        dims = _declared(inp) if inp.type.HasField("tensor_type") else None
        if inp.name not in valued and dims and isinstance(dims[0], str):
            return inp.name
    return None


def _whole_shape(name: str, given: Sequence[int] | int, dims: list[int | str] | None) -> tuple[int, ...]:
    want = (given,) if isinstance(given, int) else tuple(given)
    if dims is not None:
        if len(want) != len(dims):
            raise UsageError(f"--input-shape {name}: rank {len(want)} given, the model's input has rank {len(dims)} "
                             f"({_shape_text(dims)})")
        if any(isinstance(d, int) and d != v for d, v in zip(dims, want)):
            raise UsageError(f"--input-shape {name}: the model fixes this input's shape to {_shape_text(dims)}")
    return want


def _free_dims_text(name: str, dims: list[int | str], fed: list[int | None], free: list[tuple[int, str]]) -> str:
    labels = [d for _, d in free]
    at = {axis for axis, _ in free}
    example = ",".join(f"<{d}>" if axis in at else "1" if v is None else str(v)
                       for axis, (d, v) in enumerate(zip(dims, fed)))
    by_name = "" if any(":" in d for d in labels) else \
        " or each by name (" + " ".join(f"--input-shape {d}=<{d}>" for d in labels) + ")"
    return (f"input {name!r} has free dim{'s' if len(labels) > 1 else ''} {', '.join(labels)} (archkit does not guess "
            f"them): give them with --input-shape {name}={example}{by_name}")


def _shape_text(dims: Sequence[int | str | None]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _valued(name: str, dtype: np.dtype, dims: Sequence[int | str] | None, bound: Mapping[str, int],
            given: Sequence[int | float]) -> Input:
    """An input fed the values given: its shape follows from them where one dim is free."""
    v = tuple(given)
    if dims is None:  # rank not declared: a scalar, or a vector of what is given
        shape: tuple[int, ...] = () if len(v) == 1 else (len(v),)
    else:
        known = [d if isinstance(d, int) else bound.get(d) for d in dims]
        free = [i for i, d in enumerate(known) if d is None]
        if len(free) > 1:
            raise UsageError(f"--input-value {name}: the input's shape {_shape_text(dims)} has more than one free dim: "
                             f"fix it with --input-shape {name}=D1,D2,...")
        rest = math.prod(d for d in known if d is not None)
        if free and rest and len(v) % rest == 0:
            known[free[0]] = len(v) // rest
        shape = tuple(int(d) for d in known if d is not None)
        if len(shape) != len(known) or len(v) != math.prod(shape):
            raise UsageError(f"--input-value {name}: {len(v)} value(s) given; the input has shape {_shape_text(dims)}"
                             + (f" ({math.prod(shape)} element(s))" if len(shape) == len(known) else ""))
    v = input_value_range(name, v, dtype, _onnx_name(dtype))  # as `analyse` checks them
    return Input(name, dtype, shape, np.array(v, dtype=dtype).reshape(shape), GIVEN)


def _onnx_name(dtype: np.dtype) -> str:
    return onnx.TensorProto.DataType.Name(helper.np_dtype_to_tensor_dtype(dtype)).lower()


def _type_text(dtype: np.dtype) -> str:
    """onnx's name of the type, and numpy's where it differs: `float (float32)`, `int64`."""
    name = _onnx_name(dtype)
    return name if name == str(dtype) else f"{name} ({dtype})"


# --- real arrays: --inputs FILE.npz ------------------------------------------------------------

def from_npz(model: onnx.ModelProto, path: str | Path) -> Feeds:
    """The arrays of an .npz (read without pickle), one per graph input by name, each of the
    input's element type and of a shape its fixed dims allow."""
    p = Path(path)
    where = f"--inputs {p}"
    if not p.exists():
        raise InputError(f"{where}: no such file")
    if not p.is_file():
        raise InputError(f"{where}: is not a file")
    try:
        z = np.load(p, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise InputError(f"{where}: holds one array (an .npy): give an .npz with one array per input, by name")
        with z:
            data = {k: z[k] for k in z.files}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, KeyError, NotImplementedError, zipfile.BadZipFile, zlib.error) as e:
        first = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        if "pickle" in first:  # numpy's message would suggest allow_pickle
            first = "it holds pickled data, which archkit never loads"
        raise InputError(f"{where}: not a readable .npz ({first})") from None
    odd = [k for k, a in data.items() if not isinstance(a, np.ndarray)]
    if odd:
        raise InputError(f"{where}: not a readable .npz ({odd[0]!r} is no .npy array)")
    inputs = _graph_inputs(model)
    names = [i.name for i in inputs]
    extra = [k for k in data if k not in names]
    if extra:
        raise UsageError(f"{where}: array {extra[0]!r} is no input of the model (its inputs: "
                         f"{', '.join(map(repr, names))})")
    missing = [n for n in names if n not in data]
    if missing:
        raise UsageError(f"{where}: no array for input {missing[0]!r} (every input needs one; the file has "
                         f"{', '.join(map(repr, data)) or 'none'})")
    out = []
    for inp in inputs:
        dtype, dims, a = _dtype(inp), _declared(inp), data[inp.name]
        if a.dtype != dtype:
            raise UsageError(f"{where}: input {inp.name!r} holds {_type_text(dtype)}; its array is {a.dtype}")
        if dims is not None and (a.ndim != len(dims) or any(isinstance(d, int) and d != s
                                                             for d, s in zip(dims, a.shape))):
            raise UsageError(f"{where}: input {inp.name!r} has shape {_shape_text(dims)}; its array's shape is "
                             f"{_shape_text(a.shape)}")
        out.append(Input(inp.name, dtype, tuple(a.shape), a, f"from {p}"))
    return Feeds(tuple(out), _batch_input(inputs, set()), str(p))


# --- a failing branch: which graph inputs its condition depends on ---------------------------------

# onnxruntime's message nests one clause per op it was running, outermost first:
# "Non-zero status code returned while running If node. Name:'if_sr' Status Message: ... running Gather node. ..."
_RUNNING = re.compile(r"running (\w+) node\. Name:'(.*?)' Status Message:")
_Scope = tuple[tuple[onnx.GraphProto, "onnx.NodeProto | None"], ...]  # main graph → subgraph, with their owners


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            yield a.g
        elif a.type == onnx.AttributeProto.GRAPHS:
            yield from a.graphs


def _outer_names(g: onnx.GraphProto) -> set[str]:
    """The names a subgraph (and those inside it) reads from the graphs around it."""
    used: set[str] = set()
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    for n in g.node:
        used.update(x for x in n.input if x)
        defined.update(n.output)
        for sg in _subgraphs(n):
            used |= _outer_names(sg)
    used.update(o.name for o in g.output)
    return used - defined


def branch_inputs(model: onnx.ModelProto, message: str) -> tuple[str, list[str]]:
    """onnxruntime's error `message` → (the If or Loop it failed inside, the graph inputs its
    condition depends on, in graph order). ("", []) when it failed outside one or the condition
    depends on no graph input. A node is found by the name the message gives, else (unnamed
    nodes) every If or Loop at that depth counts."""
    chain = _RUNNING.findall(message)
    level: list[tuple[onnx.NodeProto, _Scope]] = [(n, ((model.graph, None),)) for n in model.graph.node]
    conditions: list[tuple[str, _Scope]] = []
    first = ""
    for op, name in chain:
        if op not in ("If", "Loop"):
            break
        found = [(n, s) for n, s in level if n.op_type == op]
        found = [(n, s) for n, s in found if name and n.name == name] or found
        if not found:
            break
        first = first or op
        for n, s in found:
            conditions += [(c, s) for c in (n.input[:1] if op == "If" else n.input[:2]) if c]
        level = [(m, (*s, (sg, n))) for n, s in found for sg in _subgraphs(n) for m in sg.node]
    graph_inputs = [i.name for i in _graph_inputs(model)]
    reached = _trace(conditions) & set(graph_inputs)
    return (first, [n for n in graph_inputs if n in reached]) if reached else ("", [])


def _formal_sources(owner: onnx.NodeProto, body: onnx.GraphProto, k: int, outer: _Scope, inner: _Scope
                    ) -> list[tuple[str, _Scope]]:
    """What a subgraph's k-th own input holds. A Loop body's: the iteration number counts up to
    the trip count (the Loop's input 0); the condition and each carried value start as the
    Loop's input k and then are what the body's output k - 1 gave. Any other: the owner's input k
    (a Scan's states and scanned inputs), else all of them."""
    if owner.op_type == "Loop":
        first = [(owner.input[k], outer)] if k < len(owner.input) and owner.input[k] else []
        later = [(body.output[k - 1].name, inner)] if 1 <= k <= len(body.output) else []
        return first + later
    if k < len(owner.input) and owner.input[k]:
        return [(owner.input[k], outer)]
    return [(x, outer) for x in owner.input if x]


def _trace(start: list[tuple[str, _Scope]]) -> set[str]:
    """The main graph's inputs and initializers the tensors depend on, through every op and
    subgraph on the way (a Loop body's own inputs depend on the Loop's)."""
    producers: dict[int, dict[str, onnx.NodeProto]] = {}
    reached: set[str] = set()
    seen: set[tuple[str, int]] = set()
    work = list(start)
    while work:
        tensor, scope = work.pop()
        for depth in range(len(scope) - 1, -1, -1):
            g, owner = scope[depth]
            if (tensor, id(g)) in seen:
                break
            made = producers.get(id(g))
            if made is None:
                made = producers[id(g)] = {o: n for n in g.node for o in n.output if o}
            node = made.get(tensor)
            if node is not None:
                seen.add((tensor, id(g)))
                inner = scope[:depth + 1]
                work += [(x, inner) for x in node.input if x]
                work += [(x, inner) for sg in _subgraphs(node) for x in _outer_names(sg)]
                break
            if any(t.name == tensor for t in g.initializer):
                break
            formal = [i.name for i in g.input]
            if tensor in formal:
                seen.add((tensor, id(g)))
                if owner is None:
                    reached.add(tensor)
                else:
                    work += _formal_sources(owner, g, formal.index(tensor), scope[:depth], scope[:depth + 1])
                break
    return reached
