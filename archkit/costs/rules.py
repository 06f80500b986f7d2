"""One cost rule per ONNX op type, in a registry keyed by (domain, op_type).

Conventions (README, "Cost conventions"):
- MACs: multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul, Einsum (and their quantized
  forms ConvInteger, QLinearConv, MatMulInteger, QLinearMatMul; the matrix products inside
  Attention and the recurrent cells) — the papers' and torchvision's "FLOPs"/"ops" column.
- flops: every other arithmetic operation, one per element per elementwise op: bias adds,
  comparisons, activations (1, Gelu and Mish included), BatchNormalization at inference
  (2 per element: scale and shift), normalisations that compute statistics at run time
  (LayerNormalization, GroupNormalization, InstanceNormalization: 7 per element = mean 1,
  variance 2, normalise 2, scale and shift 2; RMSNormalization 4; MeanVarianceNormalization 5;
  LpNormalization 3), softmax (3: exp, sum, divide), pooling (one per window element visited;
  global pools and reductions one per input element, ReduceL1/L2/SumSquare/LogSum/LogSumExp 2),
  Resize and GridSample (interpolation weights per output element: nearest 0, linear 2^d,
  cubic 4^d, d = interpolated axes), Quantize/DequantizeLinear (2 per element), LRN
  (window size + 3 per element), CumSum and TopK (1 per input element).
- FREE ops move, index or create data and cost nothing.
- Data-dependent costs (NonMaxSuppression, RoiAlign with adaptive sampling) are "cost unknown".
A rule receives the node (an archkit.onnx.graph.OpNode: its resolved input/output TensorInfo and
attributes) and returns (macs, flops). It raises ShapeUnknown when a shape it needs was not
inferred. A rule reads its op's output shape before its input shapes: onnx's inference gives an
output only where the inputs fit the operator. Its attributes were checked against the op's schema
when the file was read (archkit.onnx.load); an op that its file's opset does not define has no
schema to check it, and a rule that finds an attribute or input it cannot read says so
(MalformedModelError). Any other exception in a rule is a bug in archkit.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod
from typing import Any, NamedTuple, TypeVar, cast

from archkit.errors import MalformedModelError
from archkit.onnx.graph import OpNode, TensorInfo
from archkit.onnx.symbolic import Expr

__all__ = ["DATA_DEPENDENT", "FREE", "RULES", "SHAPE_ONLY", "Cost", "ShapeUnknown", "rule_for"]


class Cost(NamedTuple):
    macs: int = 0
    flops: int = 0


class ShapeUnknown(Exception):
    pass


_new = tuple.__new__  # Cost(...) without its Python-level __new__, in the rules run on every op


Rule = Callable[[OpNode], Cost]
RULES: dict[tuple[str, str], Rule] = {}

# Data movement, shape arithmetic and no-ops at inference time: known to cost nothing.
FREE = frozenset({
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Concat",
    "Split", "Slice", "Gather", "Shape", "Size", "Cast", "Constant", "ConstantOfShape", "Expand",
    "Tile", "Pad", "Range",
    # more data movement and indexing
    "CastLike", "GatherElements", "GatherND", "ScatterElements", "ScatterND", "Scatter", "DepthToSpace",
    "SpaceToDepth", "Compress", "NonZero", "OneHot", "EyeLike", "Trilu", "ReverseSequence", "MaxUnpool",
    "Unique", "CenterCropPad", "Col2Im", "Optional", "OptionalGetElement", "OptionalHasElement",
    "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert", "SequenceLength",
    "SplitToSequence", "ConcatFromSequence", "RandomNormal", "RandomNormalLike", "RandomUniform",
    "RandomUniformLike", "Bernoulli", "Multinomial", "BitCast", "TensorScatter",
    # control flow: the ops inside their subgraphs are costed, each on its own row
    "If", "Loop", "Scan", "SequenceMap",
})


def _register(*op_types: str, domain: str = "ai.onnx") -> Callable[[Rule], Rule]:
    def deco(fn: Rule) -> Rule:
        for op in op_types:
            RULES[(domain, op)] = fn
        return fn
    return deco


def rule_for(domain: str, op_type: str) -> Rule | None:
    return RULES.get((domain or "ai.onnx", op_type))


# --- helpers: shapes of a node's tensors -------------------------------------------------

_KNOWN: dict[tuple, bool] = {}  # shape → all dims known (shapes repeat: a cache beats a scan)


def _shape(t: TensorInfo | None) -> tuple[int, ...]:
    if t is None or t.shape is None:
        raise ShapeUnknown(t.name if t is not None else "missing input")
    s = t.shape
    k = _KNOWN.get(s)
    if k is None:
        if len(_KNOWN) > 100_000:
            _KNOWN.clear()
        k = _KNOWN[s] = all(d.__class__ is int or d.__class__ is Expr for d in s)  # Expr: a formula in free dims
    if not k:
        raise ShapeUnknown(t.name)
    return cast("tuple[int, ...]", s)  # every dim an int, or a formula (Expr) that computes as one


def _in(node: OpNode, i: int) -> tuple[int, ...]:
    ins = node.inputs
    return _shape(ins[i] if i < len(ins) else None)


def _out(node: OpNode, i: int = 0) -> tuple[int, ...]:
    outs = node.outputs  # the named ones: an op may leave its optional outputs out
    return _shape(outs[i] if i < len(outs) else None)


def _has_input(node: OpNode, i: int) -> bool:
    ins = node.inputs
    return i < len(ins) and ins[i] is not None


_V = TypeVar("_V", int, str, tuple)


def _attr(node: OpNode, name: str, default: _V) -> _V:
    """An attribute's value, of its default's type (an int, a str, a tuple of ints)."""
    v = node.attrs.get(name, default)
    if v.__class__ is not default.__class__ or v.__class__ is tuple and any(x.__class__ is not int for x in v):
        raise _malformed(node, f"attribute {name!r} is not {_KINDS[default.__class__]}")
    return v


_KINDS = {int: "an int", str: "a string", tuple: "a list of ints"}


def _ranked(node: OpNode, i: int, rank: int) -> tuple[Any, ...]:
    """Input `i`'s shape, which the operator says has `rank` dims (where onnx's inference does not check it)."""
    s = _in(node, i)
    if len(s) != rank:
        raise _malformed(node, f"input {i} has {len(s)} dims, the operator takes {rank}")
    return s


def _malformed(node: OpNode, problem: str) -> MalformedModelError:
    return MalformedModelError(f"op {node.name!r} ({node.op_type}): {problem}")


# --- weighted ops: MACs ------------------------------------------------------------------

@_register("Conv")
def conv(node: OpNode) -> Cost:
    # Each output element is a dot product over (C_in / group) x kernel: W is (M, C/group, k...).
    out, w = _out(node), _in(node, 1)
    n = prod(out)
    return _new(Cost, (n * prod(w[1:]), n if _has_input(node, 2) else 0))


@_register("ConvInteger")
def conv_integer(node: OpNode) -> Cost:
    out, w = _out(node), _in(node, 1)
    return Cost(prod(out) * prod(w[1:]), 0)


@_register("QLinearConv")
def qlinear_conv(node: OpNode) -> Cost:
    # x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point[, B]: requantizing
    # each output is 2 flops (scale, shift), the bias one more
    out, w = _out(node), _in(node, 3)
    n = prod(out)
    return Cost(n * prod(w[1:]), n * (2 + _has_input(node, 8)))


@_register("DeformConv")
def deform_conv(node: OpNode) -> Cost:
    # a Conv whose taps are sampled bilinearly at learned offsets: 4 weights per tap (+1 with mask)
    out, w = _out(node), _in(node, 1)
    n = prod(out)
    taps = n * prod(w[1:])
    return Cost(taps, taps * (4 + _has_input(node, 4)) + (n if _has_input(node, 3) else 0))


@_register("ConvTranspose")
def conv_transpose(node: OpNode) -> Cost:
    # Each input element is scattered into (M / group) x kernel outputs: W is (C, M/group, k...).
    x, w = _in(node, 0), _in(node, 1)
    return Cost(prod(x) * prod(w[1:]), prod(_out(node)) if _has_input(node, 2) else 0)


@_register("Gemm")
def gemm(node: OpNode) -> Cost:
    n = prod(_out(node))
    a = _ranked(node, 0, 2)
    k = a[0] if _attr(node, "transA", 0) else a[1]
    return Cost(n * k, n if _has_input(node, 2) else 0)


@_register("MatMul", "MatMulInteger")
def matmul(node: OpNode) -> Cost:
    # numpy semantics: (..., M, K) x (..., K, N), batch dims broadcast; 1-D operands promoted.
    n = prod(_out(node))
    return Cost(n * _in(node, 0)[-1], 0)


@_register("QLinearMatMul")
def qlinear_matmul(node: OpNode) -> Cost:
    n = prod(_out(node))
    return Cost(n * _in(node, 0)[-1], 2 * n)


@_register("Einsum")
def einsum(node: OpNode) -> Cost:
    """Two operands: one MAC per point of the joint index space (every letter's extent
    multiplied, `...` as its broadcast dims). More operands: contracted pairwise, costed as
    (operands - 1) times the joint space (exact for two, an upper bound beyond). One operand:
    a sum over the letters it drops (one flop per input element) or a pure transpose (free)."""
    _out(node)  # an equation its inputs do not fit has none (load checked the equation's grammar)
    eq = _attr(node, "equation", "").replace(" ", "")
    lhs, _, rhs = eq.partition("->")
    terms = lhs.split(",")
    shapes = [_in(node, i) for i in range(len(terms))]
    extent: dict[str, int] = {}
    ell: list[int] = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            head, tail = term.split("...")
            k = len(shape) - len(head) - len(tail)
            dims = shape[len(head):len(head) + k]
            ell = _broadcast(ell, list(dims))
            letters = head + tail
            shape = shape[:len(head)] + shape[len(head) + k:]
        else:
            letters = term
        for ch, d in zip(letters, shape):
            extent[ch] = max(extent.get(ch, 1), d)
    space = prod(extent.values()) * prod(ell)
    if len(terms) == 1:
        kept = rhs if "->" in eq else "".join(sorted(c for c in set(terms[0]) if terms[0].count(c) == 1 and c != "."))
        dropped = set(terms[0].replace("...", "")) - set(kept)
        return Cost(0, prod(shapes[0]) if dropped else 0)
    return Cost(space * (len(terms) - 1), 0)


def _broadcast(a: list[int], b: list[int]) -> list[int]:
    n = max(len(a), len(b))
    a, b = [1] * (n - len(a)) + a, [1] * (n - len(b)) + b
    return [max(x, y) for x, y in zip(a, b)]


@_register("Attention")
def attention(node: OpNode) -> Cost:
    """ONNX Attention (opset 23): softmax(Q·Kᵀ · scale + mask)·V per head. Q (B, Hq, S, E) or
    (B, S, Hq·E); K (B, Hkv, L, E) or 3-D; V (B, Hkv, L, Ev) or 3-D. MACs: B·Hq·S·L·(E + Ev);
    flops: scale 1, softmax 3, mask 1 (if given) per score."""
    _out(node)
    q = _in(node, 0)
    rank = len(q)
    if rank not in (3, 4):
        raise _malformed(node, f"input 0 has {rank} dims, the operator takes 3 or 4")
    k, v = _ranked(node, 1, rank), _ranked(node, 2, rank)
    if rank == 4:
        b, hq, s, e = q
        l, ev = k[2], v[3]
    else:
        hq = _attr(node, "q_num_heads", 0) or 1
        hkv = _attr(node, "kv_num_heads", 0) or 1
        b, s, e = q[0], q[1], q[2] // hq
        l, ev = k[1], v[2] // hkv
    scores = b * hq * s * l
    return Cost(scores * (e + ev), scores * (4 + _has_input(node, 3)))


def _recurrent(gates: int) -> Rule:
    def rule(node: OpNode) -> Cost:
        # X (seq, batch, input) [layout 0] or (batch, seq, input); W (dirs, gates·hidden, input);
        # R (dirs, gates·hidden, hidden). Per step: X·Wᵀ and H·Rᵀ; flops: biases (2 per gate
        # element if B), activations (1 per gate element) and the cell update (3 per hidden unit).
        _out(node)
        x, w, r = _ranked(node, 0, 3), _ranked(node, 1, 3), _ranked(node, 2, 3)  # onnx checks X's rank only
        seq, batch = (x[1], x[0]) if _attr(node, "layout", 0) else (x[0], x[1])
        dirs, gh, inp = w
        hidden = r[2]
        steps = seq * batch * dirs
        return Cost(steps * gh * (inp + hidden), steps * (gh * (1 + 2 * _has_input(node, 3)) + 3 * hidden))
    return rule


_register("LSTM")(_recurrent(4))
_register("GRU")(_recurrent(3))
_register("RNN")(_recurrent(1))


# --- everything else: flops ----------------------------------------------------------------

def _per_output_element(factor: int) -> Rule:
    def rule(node: OpNode) -> Cost:
        return _new(Cost, (0, factor * prod(_elementwise_out(node))))
    _ELEMENTWISE_RULES.append(rule)
    return rule


_ELEMENTWISE_RULES: list[Rule] = []


def _elementwise_out(node: OpNode) -> tuple[int, ...]:
    """The output shape; if not inferred (function ops, unknown schemas), the inputs' broadcast
    shape, which is what an elementwise op or normalisation produces (or input 0's, when the
    other inputs are per-channel parameters that do not broadcast against it)."""
    try:
        return _out(node)
    except ShapeUnknown:
        shapes = [_shape(t) for t in node.inputs if t is not None]
        if not shapes:
            raise
        out = list(shapes[0])
        for s in shapes[1:]:
            b = _broadcast_strict(out, list(s))
            if b is None:
                return shapes[0]
            out = b
        return tuple(out)


def _broadcast_strict(a: list[int], b: list[int]) -> list[int] | None:
    n = max(len(a), len(b))
    a, b = [1] * (n - len(a)) + a, [1] * (n - len(b)) + b
    if any(x != y and 1 not in (x, y) for x, y in zip(a, b)):
        return None
    return [max(x, y) for x, y in zip(a, b)]


for _op in ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "PRelu", "HardSigmoid",
            "HardSwish", "Softplus", "Softsign", "Clip", "Exp", "Log", "Sqrt", "Reciprocal",
            "Neg", "Abs", "Erf", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where",
            # more activations and elementwise math
            "Gelu", "Mish", "Swish", "Celu", "ThresholdedRelu", "Shrink", "Sin", "Cos", "Tan", "Asin", "Acos",
            "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round", "Sign", "Mod",
            "IsNaN", "IsInf", "Not", "And", "Or", "Xor", "Equal", "Greater", "Less", "GreaterOrEqual",
            "LessOrEqual", "BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "Hardmax"):
    _register(_op)(_per_output_element(1))
_register("Softmax", "LogSoftmax")(_per_output_element(3))
_register("BatchNormalization", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")(_per_output_element(2))
_register("LayerNormalization", "GroupNormalization", "InstanceNormalization")(_per_output_element(7))
_register("RMSNormalization")(_per_output_element(4))
_register("MeanVarianceNormalization")(_per_output_element(5))
_register("LpNormalization")(_per_output_element(3))
_register("RotaryEmbedding")(_per_output_element(3))  # x·cos + rotate(x)·sin


@_register("Sum", "Mean")
def variadic(node: OpNode) -> Cost:
    return Cost(0, prod(_out(node)) * max(len(node.inputs) - 1, 1))


@_register("MaxPool", "AveragePool", "LpPool")
def pool(node: OpNode) -> Cost:
    n = prod(_out(node))
    kernel = _attr(node, "kernel_shape", ())
    if not kernel:  # required since opset 2 (and load checks it there)
        raise ShapeUnknown("no kernel_shape")
    return Cost(0, n * prod(kernel))


@_register("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def global_pool(node: OpNode) -> Cost:
    return Cost(0, prod(_in(node, 0)))


# tf2onnx exports Keras' GlobalAveragePooling2D / GlobalMaxPooling2D as ReduceMean / ReduceMax
# over the spatial axes: costed like the global pools, one per input element.
_register("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ArgMax", "ArgMin", "CumSum", "CumProd",
          "TopK")(global_pool)


@_register("ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")
def reduce_two(node: OpNode) -> Cost:
    return Cost(0, 2 * prod(_in(node, 0)))


def _interpolation(mode: str, d: int) -> int:
    mode = mode.lower()
    if mode in ("linear", "bilinear", "trilinear"):
        return 2 ** d
    if mode in ("cubic", "bicubic"):
        return 4 ** d
    return 0  # nearest: a copy


@_register("Resize", "Upsample")
def resize(node: OpNode) -> Cost:
    x, out = _in(node, 0), _out(node)
    d = sum(1 for a, b in zip(x, out) if a != b)
    return Cost(0, prod(out) * _interpolation(_attr(node, "mode", "nearest"), d))


@_register("GridSample")
def grid_sample(node: OpNode) -> Cost:
    out = _out(node)
    return Cost(0, prod(out) * _interpolation(_attr(node, "mode", "linear"), len(out) - 2))


@_register("RoiAlign")
def roi_align(node: OpNode) -> Cost:
    # each output averages sampling_ratio² bilinear samples (4 weights each)
    ratio = _attr(node, "sampling_ratio", 0)
    if not ratio:
        raise ShapeUnknown("adaptive sampling_ratio: data-dependent")
    return Cost(0, prod(_out(node)) * ratio * ratio * 5)


# Ops whose cost depends on the input data (the boxes): listed as "cost unknown".
DATA_DEPENDENT = frozenset({"NonMaxSuppression", "MaxRoiPool"})


@_register("LRN")
def lrn(node: OpNode) -> Cost:
    # sum of squares over `size` channels, then scale, power and divide
    n = prod(_out(node))
    size = _attr(node, "size", 0)  # required (load checks it)
    if size < 1:
        raise _malformed(node, f"attribute 'size' is {size}, the operator takes a positive size")
    return Cost(0, n * (size + 3))


# The rules that read shapes only (no attribute): an op's cost follows from its tensors' shapes
# (and which optional inputs it has), so formulas can be shared between ops of equal shapes.
SHAPE_ONLY = frozenset({conv, conv_integer, qlinear_conv, deform_conv, conv_transpose, matmul, qlinear_matmul, variadic,
                        global_pool, reduce_two, *_ELEMENTWISE_RULES})
