"""Shapes and shape values in a file's free dims, for the ops where onnx's inference drops them.

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

from fractions import Fraction
from math import prod
from typing import Callable, Mapping, Sequence

from archkit.onnx.symbolic import Dim, Expr, TooLarge, exact_div

__all__ = ["SHAPES", "VALUES", "BROADCAST", "Context"]

Dims = tuple  # of Dim, or None where a dim is unknown


class Context:
    """What a function may read of one op: its attributes, its inputs' dims and values."""

    def __init__(self, node, attrs: Mapping, dims: Sequence[Dims | None], values: Sequence[tuple | None],
                 merged: list, integer: bool = True):
        self.node, self.attrs, self._dims, self._values, self._merged = node, attrs, dims, values, merged
        self.integer = integer  # the output holds integers (a Div then rounds down; for floats it must be exact)

    def dims(self, i: int) -> Dims | None:
        d = self._dims[i] if i < len(self._dims) else None
        return d if d is not None and all(x is not None for x in d) else None

    def value(self, i: int) -> tuple | None:
        return self._values[i] if i < len(self._values) else None

    def ints(self, i: int) -> tuple[int, ...] | None:
        v = self.value(i)
        return v if v is not None and all(x.__class__ is int for x in v) else None

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
    if a.__class__ is int:
        return True
    if b.__class__ is int:
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

def _elementwise(ctx: Context):
    shapes = [ctx.dims(i) for i, x in enumerate(ctx.node.input) if x]
    if not shapes or any(s is None for s in shapes):
        return None
    return [_broadcast(ctx, shapes)]


def _spatial(ctx: Context):
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
    out = []
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
                if d.__class__ is not int and (pads[i + n] or span < s):
                    return None
                last = _ceil_div(total, s)
                if d.__class__ is int and last * s >= d + pads[i]:
                    last -= 1
                out.append(last + 1)
            else:
                out.append(total // s + 1)
    y = (x[0], channels, *out)
    return [y] * len([o for o in node.output if o])  # MaxPool's Indices: the same shape


def _concat(ctx: Context):
    shapes = [ctx.dims(i) for i, x in enumerate(ctx.node.input) if x]
    if not shapes or any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
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


def _reshape(ctx: Context):
    x, target = ctx.dims(0), ctx.value(1)
    if x is None or target is None:
        return None
    allowzero = ctx.attrs.get("allowzero", 0)
    out: list[Dim | None] = []
    for k, s in enumerate(target):
        if s.__class__ is int and s == 0 and not allowzero:
            if k >= len(x):
                return None
            out.append(x[k])
        elif s.__class__ is int and s == -1:
            out.append(None)
        else:
            out.append(s)
    if out.count(None) == 1:
        known = prod(d for d in out if d is not None)
        rest = exact_div(prod(x), known)
        if rest is None:
            return None
        out[out.index(None)] = rest
    elif None in out:
        return None
    else:
        total, made = prod(x), prod(out)
        if total != made:  # a target fixed at export time, as torch.onnx writes one: right where they are equal
            ctx._merged.append((ctx.node.name or ctx.node.op_type, ctx.node.op_type, total, made, made))
    return [tuple(out)]


def _flatten(ctx: Context):
    x = ctx.dims(0)
    if x is None:
        return None
    axis = _axis(ctx.attrs.get("axis", 1), len(x))
    return [(prod(x[:axis]), prod(x[axis:]))]


def _expand(ctx: Context):
    x, shape = ctx.dims(0), ctx.value(1)
    if x is None or shape is None:
        return None
    return [_broadcast(ctx, [x, shape])]


def _constant_of_shape(ctx: Context):
    shape = ctx.value(0)
    return None if shape is None else [tuple(shape)]


def _tile(ctx: Context):
    x, repeats = ctx.dims(0), ctx.value(1)
    if x is None or repeats is None or len(repeats) != len(x):
        return None
    return [tuple(d * r for d, r in zip(x, repeats))]


def _range(ctx: Context):
    start, limit, delta = (ctx.value(i) for i in range(3))
    if start is None or limit is None or delta is None:
        return None
    (s,), (l,), (d,) = start, limit, delta
    if d.__class__ is not int or d <= 0:
        return None
    return [(_ceil_div(l - s, d),)]


_END = 2**30  # an end at or past this reads "to the end of the axis" (exporters write INT64_MAX)


def _slice(ctx: Context):
    x = ctx.dims(0)
    starts, ends = ctx.value(1), ctx.value(2)
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
        if st.__class__ is not int or st <= 0:
            return None
        lo, hi = _clamp(s, d), _clamp(e, d)
        if lo is None or hi is None:
            return None
        out[a] = _ceil_div(hi - lo, st)
    return [tuple(out)]


def _clamp(i: Dim, d: Dim) -> Dim | None:
    """A slice bound inside an axis of length d (a formula: taken to be within the axis)."""
    if i.__class__ is int:
        if d.__class__ is int:
            return min(max(i + d if i < 0 else i, 0), d)
        if i >= _END:
            return d
        if i < 0:
            return d + i
        return i
    if not isinstance(i, Expr):
        return None  # a float bound: not a slice ONNX allows
    return i if i == d or d.__class__ is not int else None


def _split(ctx: Context):
    x = ctx.dims(0)
    if x is None:
        return None
    axis = _axis(ctx.attrs.get("axis", 0), len(x))
    outs = [o for o in ctx.node.output]
    sizes = ctx.value(1) if len(ctx.node.input) > 1 and ctx.node.input[1] else ctx.attrs.get("split")
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


def _resize(ctx: Context):
    x = ctx.dims(0)
    if x is None or ctx.attrs.get("axes"):
        return None
    node = ctx.node
    if node.op_type == "Upsample":
        scales, sizes = ctx.value(1) if len(node.input) > 1 else ctx.attrs.get("scales"), None
    else:
        scales = ctx.value(2) if len(node.input) > 2 and node.input[2] else None
        sizes = ctx.value(3) if len(node.input) > 3 and node.input[3] else None
        if node.input[1:2] and len(node.input) == 2:  # opset 10: (X, scales)
            scales = ctx.value(1)
    if sizes:
        return [tuple(sizes)] if len(sizes) == len(x) else None
    if not scales or len(scales) != len(x):
        return None
    out = []
    for d, s in zip(x, scales):
        f = Fraction(s).limit_denominator(1 << 16) if not isinstance(s, Expr) else None
        if f is None or f <= 0:
            return None
        out.append((d * f.numerator) // f.denominator)
    return [tuple(out)]


def _pad(ctx: Context):
    x = ctx.dims(0)
    if x is None:
        return None
    node = ctx.node
    pads = ctx.ints(1) if len(node.input) > 1 and node.input[1] else ctx.attrs.get("pads")
    if pads is None or len(pads) != 2 * len(x) or (len(node.input) > 3 and node.input[3]):
        return None
    n = len(x)
    return [tuple(d + pads[i] + pads[i + n] for i, d in enumerate(x))]


def _matmul(ctx: Context):
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


def _gather(ctx: Context):
    data, idx = ctx.dims(0), ctx.dims(1)
    if data is None or idx is None:
        return None
    axis = _axis(ctx.attrs.get("axis", 0), len(data))
    return [tuple(data[:axis]) + tuple(idx) + tuple(data[axis + 1:])]


_ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less",
                "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "PRelu", "BitShift", "BitwiseAnd",
                "BitwiseOr", "BitwiseXor")

BROADCAST = frozenset(_ELEMENTWISE)  # the ops whose inputs broadcast against each other

SHAPES: dict[str, Callable[[Context], list | None]] = {
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

def _shape_value(ctx: Context, n):
    x = ctx._dims[0] if ctx._dims else None
    if x is None or any(d is None for d in x):
        return None
    start, end = ctx.attrs.get("start", 0), ctx.attrs.get("end")
    return tuple(x[slice(start, end)])


def _size_value(ctx: Context, n):
    x = ctx.dims(0)
    return None if x is None else (prod(x),)


def _same(ctx: Context, n):  # elements unchanged: Identity, Cast, Reshape, (Un)Squeeze, Flatten
    v = ctx.value(0)
    return v if v is not None and (n is None or len(v) == n) else None


def _gather_value(ctx: Context, n):
    v, idx = ctx.value(0), ctx.ints(1)
    if v is None or idx is None or ctx.attrs.get("axis", 0) not in (0, -1):
        return None
    try:
        return tuple(v[i] for i in idx)
    except IndexError:
        return None


def _concat_value(ctx: Context, n):
    parts = [ctx.value(i) for i in range(len(ctx.node.input))]
    if any(p is None for p in parts):
        return None
    return tuple(x for p in parts for x in p)


def _slice_value(ctx: Context, n):
    v, starts, ends = ctx.value(0), ctx.ints(1), ctx.ints(2)
    steps = ctx.ints(4) if len(ctx.node.input) > 4 and ctx.node.input[4] else (1,)
    if v is None or starts is None or ends is None or steps is None or len(starts) != 1:
        return None
    return tuple(v[slice(starts[0], ends[0], steps[0])])


def _arith(fn):
    def value(ctx: Context, n):
        a, b = ctx.value(0), ctx.value(1)
        if a is None or b is None:
            return None
        if len(a) == 1 and len(b) > 1:
            a = a * len(b)
        elif len(b) == 1 and len(a) > 1:
            b = b * len(a)
        if len(a) != len(b):
            return None
        try:
            out = tuple(fn(x, y) for x, y in zip(a, b))
        except (TooLarge, TypeError, ZeroDivisionError):
            return None
        return None if any(x is None for x in out) else out
    return value


def _div(x: Dim, y: Dim) -> Dim | None:
    if x.__class__ is int and y.__class__ is int:
        return int(x / y) if y else None  # ONNX's integer Div truncates
    q = exact_div(x, y)
    return q if q is not None else (x // y if y.__class__ is int and y > 0 else None)


def _equal(x: Dim, y: Dim):
    if x.__class__ is int and y.__class__ is int:
        return int(x == y)
    if x == y:
        return 1
    if y.__class__ is int and _at_least(x, y + 1) or x.__class__ is int and _at_least(y, x + 1):
        return 0  # a dim against -1 (PyTorch's Expand arithmetic): never equal
    return None


def _at_least(e: Dim, k: int) -> bool:
    """Whether e ≥ k for every value of its free dims (each ≥ 1), read off its coefficients."""
    if e.__class__ is int:
        return e >= k
    low = 0
    for m, c in e.terms:
        if c < 0 or any(not isinstance(a, str) for a, _ in m):
            return False
        low += c
    return low >= k


def _order(x: Dim, y: Dim) -> tuple[Dim, Dim] | None:
    """(the smaller, the larger) where that holds for every value of the free dims, else None."""
    if x.__class__ is int and y.__class__ is int:
        return (x, y) if x <= y else (y, x)
    if x == y or y.__class__ is int and _at_least(x, y):
        return y, x
    if x.__class__ is int and _at_least(y, x):
        return x, y
    return None


def _max(x: Dim, y: Dim):
    o = _order(x, y)
    return None if o is None else o[1]


def _min(x: Dim, y: Dim):
    o = _order(x, y)
    return None if o is None else o[0]


def _where_value(ctx: Context, n):
    c, a, b = ctx.ints(0), ctx.value(1), ctx.value(2)
    if c is None or a is None or b is None:
        return None
    size = max(len(c), len(a), len(b))
    c, a, b = (v * size if len(v) == 1 else v for v in (c, a, b))
    if not len(c) == len(a) == len(b):
        return None
    return tuple(x if k else y for k, x, y in zip(c, a, b))


def _reduce_prod_value(ctx: Context, n):
    v = ctx.value(0)
    return None if v is None or n != 1 else (prod(v),)


def _neg_value(ctx: Context, n):
    v = ctx.value(0)
    return None if v is None else tuple(-x for x in v)


VALUES: dict[str, Callable[[Context, int | None], tuple | None]] = {
    "Shape": _shape_value, "Size": _size_value,
    **{op: _same for op in ("Identity", "Cast", "CastLike", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Floor",
                            "Ceil", "Round")},
    "Gather": _gather_value, "Concat": _concat_value, "Slice": _slice_value,
    "Add": _arith(lambda x, y: x + y), "Sub": _arith(lambda x, y: x - y), "Mul": _arith(lambda x, y: x * y),
    "Div": lambda ctx, n: _arith(_div if ctx.integer else exact_div)(ctx, n), "Mod": _arith(lambda x, y: x % y if y.__class__ is int and y > 0 else None),
    "Equal": _arith(_equal), "Max": _arith(_max), "Min": _arith(_min), "Where": _where_value,
    "ReduceProd": _reduce_prod_value, "Neg": _neg_value,
}
