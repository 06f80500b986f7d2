"""Shapes and shape values in a file's free dims, for the ops where onnx's inference drops them:
one function per op, which the shape engine (archkit.onnx.shapes) calls, computing with
archkit.onnx.symbolic's formulas. It reads an op's attributes, dims and values, never the graph.

onnx's per-op inference carries a free dim (an ONNX dim_param) through every op that copies it:
elementwise ops, MatMul, Transpose, the batch axis of a Conv. It drops it where the output dim
is computed from it: a Conv's spatial axes, a Concat's axis, a Reshape's -1, a Flatten, a
broadcast of two different dims. The shape engine (archkit.onnx.shapes) then asks this module: one
function per op, from the inputs' dims (ints and archkit.onnx.symbolic formulas) and the values of
the inputs read as values.

Values: PyTorch and Paddle compute shapes in the graph (Shape → Gather → Unsqueeze → Concat →
Reshape). A value in a free dim is a tuple of formulas, and `value(...)` follows it through the
shape arithmetic exporters emit.

Where two different formulas meet in a broadcast or a Concat's other axes, the file only runs
where they are equal: they are taken as equal (the simpler kept, an int before a formula) and
the merge is reported, as onnxruntime's `auto_merge` does silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from math import prod
from typing import Any, TypeGuard

import onnx

from archkit.onnx.symbolic import Dim, Expr, TooLarge, exact_div

__all__ = ["BROADCAST", "SHAPES", "VALUES", "Context", "Dims", "Merge", "Scalar", "ShapeFn", "Value", "ValueFn"]

Dims = tuple[Dim, ...]  # a shape whose every dim is known
Scalar = int | float | Expr  # an element of a value: a float tensor's elements may be fractions
Value = tuple[Scalar, ...]  # a tensor's elements in order
Merge = tuple[str, str, Dim, Dim, Dim]  # (op, op_type, a, b, kept): two dims taken as equal
ShapeFn = Callable[["Context"], "list[Dims] | None"]  # the op's output shapes, None where it gives none
ValueFn = Callable[["Context", "int | None"], "Value | None"]  # (context, element count) → the output's elements


def _complete(d: tuple[Dim | None, ...]) -> TypeGuard[Dims]:
    return all(x is not None for x in d)


def _all_ints(v: Value) -> TypeGuard[tuple[int, ...]]:
    return all(x.__class__ is int for x in v)


def _all_dims(v: Value) -> TypeGuard[Dims]:
    return all(x.__class__ is int or x.__class__ is Expr for x in v)


class Context:
    """What a function may read of one op: its attributes, its inputs' dims and values."""

    # attribute values are whatever onnx.helper.get_attribute_value gives for the op's schema
    def __init__(self, node: onnx.NodeProto, attrs: Mapping[str, Any], dims: Sequence[tuple[Dim | None, ...] | None],
                 values: Sequence[Value | None], merged: list[Merge], integer: bool = True) -> None:
        self.node, self.attrs, self._dims, self._values, self._merged = node, attrs, dims, values, merged
        self.integer = integer  # the output holds integers (a Div then rounds down; for floats it must be exact)

    def dims(self, i: int) -> Dims | None:
        d = self._dims[i] if i < len(self._dims) else None
        return d if d is not None and _complete(d) else None

    def value(self, i: int) -> Value | None:
        return self._values[i] if i < len(self._values) else None

    def ints(self, i: int) -> tuple[int, ...] | None:
        v = self.value(i)
        return v if v is not None and _all_ints(v) else None

    def dim_value(self, i: int) -> Dims | None:
        """A value read as dims (a shape, sizes, slice bounds): None unless every element is an int or a formula."""
        v = self.value(i)
        return v if v is not None and _all_dims(v) else None

    def merge(self, a: Dim, b: Dim) -> Dim:
        """Two dims that must be equal for the file to run (a broadcast of non-1 dims)."""
        if a == b or b == 1:
            return a
        if a == 1:
            return b
        keep = a if _simpler(a, b) else b
        self._merged.append((self.node.name or self.node.op_type, self.node.op_type, a, b, keep))
        return keep


def _simpler(a: Dim, b: Dim) -> bool:
    if isinstance(a, int):
        return True
    if isinstance(b, int):
        return False
    return (len(a.terms), len(a.key), a.key) <= (len(b.terms), len(b.key), b.key)


def _broadcast(ctx: Context, shapes: Sequence[Dims]) -> Dims:
    n = max(len(s) for s in shapes)
    out: list[Dim] = [1] * n
    for s in shapes:
        for k, d in enumerate((1,) * (n - len(s)) + tuple(s)):
            out[k] = ctx.merge(out[k], d)
    return tuple(out)


def _axis(a: int, rank: int) -> int:
    return a + rank if a < 0 else a


def _ceil_div(a: Dim, b: int) -> Dim:
    return (a + (b - 1)) // b


# --- output dims, per op ----------------------------------------------------------------------

def _known_dims(ctx: Context) -> list[Dims] | None:
    """The dims of every input given (omitted optional inputs aside), None unless all are known."""
    shapes: list[Dims] = []
    for i, x in enumerate(ctx.node.input):
        if x:
            s = ctx.dims(i)
            if s is None:
                return None
            shapes.append(s)
    return shapes or None


def _elementwise(ctx: Context) -> list[Dims] | None:
    shapes = _known_dims(ctx)
    if shapes is None:
        return None
    return [_broadcast(ctx, shapes)]


def _spatial(ctx: Context) -> list[Dims] | None:
    """Conv, ConvTranspose and the pools: ⌊(x + pads − dilation·(k − 1) − 1) / stride⌋ + 1."""
    node, a = ctx.node, ctx.attrs
    x = ctx.dims(0)
    if x is None or len(x) < 3:
        return None
    n = len(x) - 2
    op = node.op_type
    if op in ("Conv", "ConvTranspose", "ConvInteger", "DeformConv"):
        w = ctx.dims(1)
        if w is None:
            return None
        kernel = list(a.get("kernel_shape") or w[2:])
        channels = w[0] if op != "ConvTranspose" else w[1] * a.get("group", 1)
    elif op == "QLinearConv":
        w = ctx.dims(3)
        if w is None:
            return None
        kernel, channels = list(a.get("kernel_shape") or w[2:]), w[0]
    else:
        kernel, channels = list(a.get("kernel_shape") or []), x[1]
    if len(kernel) != n or not all(k.__class__ is int for k in kernel):
        return None
    strides = list(a.get("strides") or [1] * n)
    dilations = list(a.get("dilations") or [1] * n)
    pads = list(a.get("pads") or [0] * (2 * n))
    auto = a.get("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    out: list[Dim] = []
    for i in range(n):
        d, k, s, dil = x[2 + i], kernel[i], strides[i], dilations[i]
        span = dil * (k - 1) + 1
        if op == "ConvTranspose":
            if a.get("output_shape"):
                out.append(a["output_shape"][i])
                continue
            op_pad = (a.get("output_padding") or [0] * n)[i]
            if auto in ("SAME_UPPER", "SAME_LOWER"):
                out.append(d * s)
            else:
                out.append(s * (d - 1) + op_pad + span - pads[i] - pads[i + n])
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            out.append(_ceil_div(d, s))
        elif auto == "VALID":
            out.append((d - span) // s + 1)
        else:
            total = d + pads[i] + pads[i + n] - span
            if a.get("ceil_mode", 0):
                # the last window must start inside the input (or the left padding): with no right
                # padding and windows at least as wide as the stride it always does
                if not isinstance(d, int) and (pads[i + n] or span < s):
                    return None
                last = _ceil_div(total, s)
                if isinstance(d, int) and last * s >= d + pads[i]:
                    last -= 1
                out.append(last + 1)
            else:
                out.append(total // s + 1)
    y = (x[0], channels, *out)
    return [y] * len([o for o in node.output if o])  # MaxPool's Indices: the same shape


def _concat(ctx: Context) -> list[Dims] | None:
    shapes = _known_dims(ctx)
    if shapes is None or len({len(s) for s in shapes}) != 1:
        return None
    rank = len(shapes[0])
    axis = _axis(ctx.attrs.get("axis", 0), rank)
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    for s in shapes[1:]:
        for k in range(rank):
            if k != axis:
                out[k] = ctx.merge(out[k], s[k])
    return [tuple(out)]


def _reshape(ctx: Context) -> list[Dims] | None:
    x, target = ctx.dims(0), ctx.dim_value(1)
    if x is None or target is None:
        return None
    allowzero = ctx.attrs.get("allowzero", 0)
    out: list[Dim] = []
    inferred = None  # the axis of the -1, whose dim follows from the others
    for k, s in enumerate(target):
        if isinstance(s, int) and s == 0 and not allowzero:
            if k >= len(x):
                return None
            out.append(x[k])
        elif isinstance(s, int) and s == -1:
            if inferred is not None:
                return None  # two -1: no single answer
            inferred = k
            out.append(1)
        else:
            out.append(s)
    if inferred is not None:
        rest = exact_div(prod(x), prod(out))
        if rest is None:
            return None
        out[inferred] = rest
    else:
        total, made = prod(x), prod(out)
        if total != made:  # a target fixed at export time, as torch.onnx writes one: right where they are equal
            ctx._merged.append((ctx.node.name or ctx.node.op_type, ctx.node.op_type, total, made, made))
    return [tuple(out)]


def _flatten(ctx: Context) -> list[Dims] | None:
    x = ctx.dims(0)
    if x is None:
        return None
    axis = _axis(ctx.attrs.get("axis", 1), len(x))
    return [(prod(x[:axis]), prod(x[axis:]))]


def _expand(ctx: Context) -> list[Dims] | None:
    x, shape = ctx.dims(0), ctx.dim_value(1)
    if x is None or shape is None:
        return None
    return [_broadcast(ctx, [x, shape])]


def _constant_of_shape(ctx: Context) -> list[Dims] | None:
    shape = ctx.dim_value(0)
    return None if shape is None else [shape]


def _tile(ctx: Context) -> list[Dims] | None:
    x, repeats = ctx.dims(0), ctx.dim_value(1)
    if x is None or repeats is None or len(repeats) != len(x):
        return None
    return [tuple(d * r for d, r in zip(x, repeats))]


def _range(ctx: Context) -> list[Dims] | None:
    start, limit, delta = (ctx.dim_value(i) for i in range(3))
    if start is None or limit is None or delta is None:
        return None
    (s,), (l,), (d,) = start, limit, delta
    if not isinstance(d, int) or d <= 0:
        return None
    return [(_ceil_div(l - s, d),)]


_END = 2**30  # an end at or past this reads "to the end of the axis" (exporters write INT64_MAX)


def _slice(ctx: Context) -> list[Dims] | None:
    x = ctx.dims(0)
    starts, ends = ctx.dim_value(1), ctx.dim_value(2)
    if x is None or starts is None or ends is None:
        return None
    axes = ctx.ints(3) if len(ctx.node.input) > 3 and ctx.node.input[3] else tuple(range(len(starts)))
    steps = ctx.ints(4) if len(ctx.node.input) > 4 and ctx.node.input[4] else (1,) * len(starts)
    if axes is None or steps is None:
        return None
    out = list(x)
    for a, s, e, st in zip(axes, starts, ends, steps):
        a = _axis(a, len(x))
        d = x[a]
        if st <= 0:
            return None
        lo, hi = _clamp(s, d), _clamp(e, d)
        if lo is None or hi is None:
            return None
        out[a] = _ceil_div(hi - lo, st)
    return [tuple(out)]


def _clamp(i: Dim, d: Dim) -> Dim | None:
    """A slice bound inside an axis of length d (a formula: taken to be within the axis)."""
    if isinstance(i, int):
        if isinstance(d, int):
            return min(max(i + d if i < 0 else i, 0), d)
        if i >= _END:
            return d
        if i < 0:
            return d + i
        return i
    return i if i == d or not isinstance(d, int) else None


def _split(ctx: Context) -> list[Dims] | None:
    x = ctx.dims(0)
    if x is None:
        return None
    axis = _axis(ctx.attrs.get("axis", 0), len(x))
    outs = [o for o in ctx.node.output]
    sizes: Sequence[Dim] | None = (ctx.dim_value(1) if len(ctx.node.input) > 1 and ctx.node.input[1]
                                   else ctx.attrs.get("split"))
    if sizes is None:
        part = exact_div(x[axis], len(outs))
        if part is None:
            return None
        sizes = (part,) * len(outs)
    result = []
    for s in sizes:
        y = list(x)
        y[axis] = s
        result.append(tuple(y))
    return result


def _resize(ctx: Context) -> list[Dims] | None:
    x = ctx.dims(0)
    if x is None or ctx.attrs.get("axes"):
        return None
    node = ctx.node
    scales: Sequence[Scalar] | None
    if node.op_type == "Upsample":
        scales, sizes = ctx.value(1) if len(node.input) > 1 else ctx.attrs.get("scales"), None
    else:
        scales = ctx.value(2) if len(node.input) > 2 and node.input[2] else None
        sizes = ctx.value(3) if len(node.input) > 3 and node.input[3] else None
        if node.input[1:2] and len(node.input) == 2:  # opset 10: (X, scales)
            scales = ctx.value(1)
    if sizes:
        dims = ctx.dim_value(3)
        return [dims] if dims is not None and len(dims) == len(x) else None
    if not scales or len(scales) != len(x):
        return None
    out: list[Dim] = []
    for d, s in zip(x, scales):
        f = Fraction(s).limit_denominator(1 << 16) if not isinstance(s, Expr) else None
        if f is None or f <= 0:
            return None
        out.append((d * f.numerator) // f.denominator)
    return [tuple(out)]


def _pad(ctx: Context) -> list[Dims] | None:
    x = ctx.dims(0)
    if x is None:
        return None
    node = ctx.node
    pads = ctx.ints(1) if len(node.input) > 1 and node.input[1] else ctx.attrs.get("pads")
    if pads is None or len(pads) != 2 * len(x) or (len(node.input) > 3 and node.input[3]):
        return None
    n = len(x)
    return [tuple(d + pads[i] + pads[i + n] for i, d in enumerate(x))]


def _matmul(ctx: Context) -> list[Dims] | None:
    a, b = ctx.dims(0), ctx.dims(1)
    if a is None or b is None or not a or not b:
        return None
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    batch = _broadcast(ctx, [a2[:-2], b2[:-2]]) if len(a2) > 2 or len(b2) > 2 else ()
    out = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return [out]


def _gather(ctx: Context) -> list[Dims] | None:
    data, idx = ctx.dims(0), ctx.dims(1)
    if data is None or idx is None:
        return None
    axis = _axis(ctx.attrs.get("axis", 0), len(data))
    return [tuple(data[:axis]) + tuple(idx) + tuple(data[axis + 1:])]


_ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less",
                "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "PRelu", "BitShift", "BitwiseAnd",
                "BitwiseOr", "BitwiseXor")

BROADCAST = frozenset(_ELEMENTWISE)  # the ops whose inputs broadcast against each other

SHAPES: dict[str, ShapeFn] = {
    **{op: _elementwise for op in _ELEMENTWISE},
    **{op: _spatial for op in ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "DeformConv", "MaxPool",
                               "AveragePool", "LpPool")},
    "Concat": _concat, "Reshape": _reshape, "Flatten": _flatten, "Expand": _expand,
    "ConstantOfShape": _constant_of_shape, "Tile": _tile, "Range": _range, "Slice": _slice, "Split": _split,
    "Resize": _resize, "Upsample": _resize, "Pad": _pad, "MatMul": _matmul, "Gather": _gather,
}


# --- values: the shape arithmetic exporters emit ------------------------------------------------
# Each takes the Context and the output's element count (from its inferred shape) and returns
# the output's elements in order, or None.

def _shape_value(ctx: Context, n: int | None) -> Value | None:
    x = ctx.dims(0)
    if x is None:
        return None
    start, end = ctx.attrs.get("start", 0), ctx.attrs.get("end")
    return tuple(x[slice(start, end)])


def _size_value(ctx: Context, n: int | None) -> Value | None:
    x = ctx.dims(0)
    return None if x is None else (prod(x),)


def _same(ctx: Context, n: int | None) -> Value | None:
    """Elements unchanged: Identity, Cast, Reshape, (Un)Squeeze, Flatten."""
    v = ctx.value(0)
    return v if v is not None and (n is None or len(v) == n) else None


def _gather_value(ctx: Context, n: int | None) -> Value | None:
    v, idx = ctx.value(0), ctx.ints(1)
    if v is None or idx is None or ctx.attrs.get("axis", 0) not in (0, -1):
        return None
    try:
        return tuple(v[i] for i in idx)
    except IndexError:
        return None


def _concat_value(ctx: Context, n: int | None) -> Value | None:
    out: list[Scalar] = []
    for i in range(len(ctx.node.input)):
        p = ctx.value(i)
        if p is None:
            return None
        out += p
    return tuple(out)


def _slice_value(ctx: Context, n: int | None) -> Value | None:
    v, starts, ends = ctx.value(0), ctx.ints(1), ctx.ints(2)
    steps = ctx.ints(4) if len(ctx.node.input) > 4 and ctx.node.input[4] else (1,)
    if v is None or starts is None or ends is None or steps is None or len(starts) != 1:
        return None
    return tuple(v[slice(starts[0], ends[0], steps[0])])


def _arith(fn: Callable[[Scalar, Scalar], Scalar | None]) -> ValueFn:
    """An elementwise op on two values (one of them may be a single element), element by element."""
    def value(ctx: Context, n: int | None) -> Value | None:
        a, b = ctx.value(0), ctx.value(1)
        if a is None or b is None:
            return None
        if len(a) == 1 and len(b) > 1:
            a = a * len(b)
        elif len(b) == 1 and len(a) > 1:
            b = b * len(a)
        if len(a) != len(b):
            return None
        out: list[Scalar] = []
        try:
            for x, y in zip(a, b):
                r = fn(x, y)
                if r is None:
                    return None
                out.append(r)
        except (TooLarge, TypeError, ZeroDivisionError):
            return None
        return tuple(out)
    return value


# The element functions: a formula has integer coefficients, so where a fraction (a float) meets
# a formula there is no answer (None), and fractions are only summed and multiplied.

def _add(x: Scalar, y: Scalar) -> Scalar | None:
    if isinstance(x, Expr) or isinstance(y, Expr):
        return None if isinstance(x, float) or isinstance(y, float) else x + y
    return x + y


def _sub(x: Scalar, y: Scalar) -> Scalar | None:
    if isinstance(x, Expr) or isinstance(y, Expr):
        return None if isinstance(x, float) or isinstance(y, float) else x - y
    return x - y


def _mul(x: Scalar, y: Scalar) -> Scalar | None:
    if isinstance(x, Expr) or isinstance(y, Expr):
        return None if isinstance(x, float) or isinstance(y, float) else x * y
    return x * y


def _mod(x: Scalar, y: Scalar) -> Scalar | None:
    return x % y if isinstance(y, int) and y > 0 else None


def _div(x: Scalar, y: Scalar) -> Dim | None:
    """An integer Div."""
    if isinstance(x, float) or isinstance(y, float):
        return None
    if isinstance(x, int) and isinstance(y, int):
        return int(x / y) if y else None  # ONNX's integer Div truncates
    q = exact_div(x, y)
    return q if q is not None else (x // y if isinstance(y, int) and y > 0 else None)


def _exact_div(x: Scalar, y: Scalar) -> Dim | None:
    """A float Div, where it gives a whole number."""
    return None if isinstance(x, float) or isinstance(y, float) else exact_div(x, y)


def _equal(x: Scalar, y: Scalar) -> int | None:
    if isinstance(x, int) and isinstance(y, int):
        return int(x == y)
    if x == y:
        return 1
    if isinstance(x, Expr) and isinstance(y, int) and _at_least(x, y + 1) or \
            isinstance(y, Expr) and isinstance(x, int) and _at_least(y, x + 1):
        return 0  # a dim against -1 (PyTorch's Expand arithmetic): never equal
    return None


def _at_least(e: Dim, k: int) -> bool:
    """Whether e ≥ k for every value of its free dims (each ≥ 1), read off its coefficients."""
    if isinstance(e, int):
        return e >= k
    low = 0
    for m, c in e.terms:
        if c < 0 or any(not isinstance(a, str) for a, _ in m):
            return False
        low += c
    return low >= k


def _order(x: Scalar, y: Scalar) -> tuple[Scalar, Scalar] | None:
    """(the smaller, the larger) where that holds for every value of the free dims, else None."""
    if isinstance(x, int) and isinstance(y, int):
        return (x, y) if x <= y else (y, x)
    if x == y or isinstance(x, Expr) and isinstance(y, int) and _at_least(x, y):
        return y, x
    if isinstance(y, Expr) and isinstance(x, int) and _at_least(y, x):
        return x, y
    return None


def _max(x: Scalar, y: Scalar) -> Scalar | None:
    o = _order(x, y)
    return None if o is None else o[1]


def _min(x: Scalar, y: Scalar) -> Scalar | None:
    o = _order(x, y)
    return None if o is None else o[0]


def _where_value(ctx: Context, n: int | None) -> Value | None:
    c, a, b = ctx.ints(0), ctx.value(1), ctx.value(2)
    if c is None or a is None or b is None:
        return None
    size = max(len(c), len(a), len(b))
    c, a, b = (c * size if len(c) == 1 else c), (a * size if len(a) == 1 else a), (b * size if len(b) == 1 else b)
    if not len(c) == len(a) == len(b):
        return None
    return tuple(x if k else y for k, x, y in zip(c, a, b))


def _reduce_prod_value(ctx: Context, n: int | None) -> Value | None:
    v = ctx.value(0)
    return None if v is None or n != 1 else (prod(v),)


def _neg_value(ctx: Context, n: int | None) -> Value | None:
    v = ctx.value(0)
    return None if v is None else tuple(-x for x in v)


def _div_value(ctx: Context, n: int | None) -> Value | None:
    return _arith(_div if ctx.integer else _exact_div)(ctx, n)


VALUES: dict[str, ValueFn] = {
    "Shape": _shape_value, "Size": _size_value,
    **{op: _same for op in ("Identity", "Cast", "CastLike", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Floor",
                            "Ceil", "Round")},
    "Gather": _gather_value, "Concat": _concat_value, "Slice": _slice_value,
    "Add": _arith(_add), "Sub": _arith(_sub), "Mul": _arith(_mul), "Div": _div_value, "Mod": _arith(_mod),
    "Equal": _arith(_equal), "Max": _arith(_max), "Min": _arith(_min), "Where": _where_value,
    "ReduceProd": _reduce_prod_value, "Neg": _neg_value,
}
