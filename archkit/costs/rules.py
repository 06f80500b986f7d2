"""One cost rule per ONNX op type, in a registry keyed by (domain, op_type).

Conventions (README, "Cost conventions"):
- MACs: multiply-accumulates of Conv, ConvTranspose, Gemm, MatMul only — the papers' and
  torchvision's "FLOPs"/"ops" column.
- flops: every other arithmetic operation, one per element per elementwise op: bias adds,
  normalisation (2 per element: scale and shift), activations (1), softmax (3: exp, sum, divide),
  pooling (one per window element visited), LRN (window size + 3 per element).
- FREE ops move or reshape data and cost nothing.
A rule receives the node (its resolved input/output TensorInfo and attributes) and returns
(macs, flops). It raises ShapeUnknown when a shape it needs was not inferred.
"""

from __future__ import annotations

from math import prod
from typing import Callable, NamedTuple

__all__ = ["Cost", "ShapeUnknown", "RULES", "FREE", "rule_for"]


class Cost(NamedTuple):
    macs: int = 0
    flops: int = 0


class ShapeUnknown(Exception):
    pass


Rule = Callable[[dict], Cost]
RULES: dict[tuple[str, str], Rule] = {}

# Data movement, shape arithmetic and no-ops at inference time: known to cost nothing.
FREE = frozenset({
    "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Concat",
    "Split", "Slice", "Gather", "Shape", "Size", "Cast", "Constant", "ConstantOfShape", "Expand",
    "Tile", "Pad", "Range",
})


def _register(*op_types: str, domain: str = "ai.onnx"):
    def deco(fn: Rule) -> Rule:
        for op in op_types:
            RULES[(domain, op)] = fn
        return fn
    return deco


def rule_for(domain: str, op_type: str) -> Rule | None:
    return RULES.get((domain or "ai.onnx", op_type))


# --- helpers: shapes of a node's tensors -------------------------------------------------

def _shape(t) -> tuple[int, ...]:
    if t is None or not t.known:
        raise ShapeUnknown(t.name if t is not None else "missing input")
    return t.shape


def _in(node: dict, i: int) -> tuple[int, ...]:
    ins = node["inputs"]
    return _shape(ins[i] if i < len(ins) else None)


def _out(node: dict, i: int = 0) -> tuple[int, ...]:
    return _shape(node["outputs"][i])


def _has_input(node: dict, i: int) -> bool:
    ins = node["inputs"]
    return i < len(ins) and ins[i] is not None


# --- weighted ops: MACs ------------------------------------------------------------------

@_register("Conv")
def conv(node: dict) -> Cost:
    # Each output element is a dot product over (C_in / group) x kernel: W is (M, C/group, k...).
    out, w = _out(node), _in(node, 1)
    n = prod(out)
    return Cost(n * prod(w[1:]), n if _has_input(node, 2) else 0)


@_register("ConvTranspose")
def conv_transpose(node: dict) -> Cost:
    # Each input element is scattered into (M / group) x kernel outputs: W is (C, M/group, k...).
    x, w = _in(node, 0), _in(node, 1)
    return Cost(prod(x) * prod(w[1:]), prod(_out(node)) if _has_input(node, 2) else 0)


@_register("Gemm")
def gemm(node: dict) -> Cost:
    a = _in(node, 0)
    k = a[0] if node["attrs"].get("transA", 0) else a[1]
    n = prod(_out(node))
    return Cost(n * k, n if _has_input(node, 2) else 0)


@_register("MatMul")
def matmul(node: dict) -> Cost:
    # numpy semantics: (..., M, K) x (..., K, N), batch dims broadcast; 1-D operands promoted.
    a = _in(node, 0)
    return Cost(prod(_out(node)) * a[-1], 0)


# --- everything else: flops ----------------------------------------------------------------

def _per_output_element(factor: int) -> Rule:
    def rule(node: dict) -> Cost:
        return Cost(0, factor * prod(_out(node)))
    return rule


for _op in ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "PRelu", "HardSigmoid",
            "HardSwish", "Softplus", "Softsign", "Clip", "Exp", "Log", "Sqrt", "Reciprocal",
            "Neg", "Abs", "Erf", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where"):
    _register(_op)(_per_output_element(1))
_register("Softmax", "LogSoftmax")(_per_output_element(3))
_register("BatchNormalization")(_per_output_element(2))


@_register("Sum", "Mean")
def variadic(node: dict) -> Cost:
    return Cost(0, prod(_out(node)) * max(len(node["inputs"]) - 1, 1))


@_register("MaxPool", "AveragePool", "LpPool")
def pool(node: dict) -> Cost:
    return Cost(0, prod(_out(node)) * prod(node["attrs"]["kernel_shape"]))


@_register("GlobalAveragePool", "GlobalMaxPool")
def global_pool(node: dict) -> Cost:
    return Cost(0, prod(_in(node, 0)))


# tf2onnx exports Keras' GlobalAveragePooling2D / GlobalMaxPooling2D as ReduceMean / ReduceMax
# over the spatial axes: costed like the global pools, one per input element.
_register("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum")(global_pool)


@_register("LRN")
def lrn(node: dict) -> Cost:
    # sum of squares over `size` channels, then scale, power and divide
    return Cost(0, prod(_out(node)) * (node["attrs"]["size"] + 3))
