"""Op types grouped by what they do to the wiring, and the tensor helpers every stage shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import Enum
from math import prod
from typing import Any, Final, TypeGuard, TypeVar

from archkit.costs.rules import FREE
from archkit.onnx.graph import FLOAT_TYPES, Shape, TensorInfo

__all__ = ["ELEMENTWISE", "GLOBAL_POOLS", "KERNEL_OPS", "LAYOUT_OPS", "MAC_FREE", "MERGE_OPS", "POOL_OPS",
           "REDUCE_OPS", "RESHAPE_OPS", "UNKNOWN", "WINDOW_OPS", "Attrs", "Shape", "Unknown", "axis_of", "concrete",
           "dim", "inferred", "is_data", "map_axis", "registrar"]

KERNEL_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"})
WINDOW_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
REDUCE_OPS = frozenset({"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
# One output element from one input element (or a per-channel constant): features and fields pass unchanged.
ELEMENTWISE = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Clip", "Gelu", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
    "Sign", "Mish", "ThresholdedRelu", "Shrink", "BatchNormalization", "InstanceNormalization", "Dropout",
    "Identity", "Cast", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Not", "And", "Or",
    "Equal", "Less", "Greater", "LRN", "Softmax", "LogSoftmax", "Hardmax", "LayerNormalization"})
MERGE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Concat"})
LAYOUT_OPS = frozenset({"Identity", "Cast", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout"})
RESHAPE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool"}) | GLOBAL_POOLS
# Op types whose cost never holds MACs: one of them left uncosted leaves its layer's MACs known.
MAC_FREE = ELEMENTWISE | POOL_OPS | REDUCE_OPS | LAYOUT_OPS | FREE | {"Resize", "Upsample"}

Attrs = Mapping[str, Any]  # an op's ONNX attributes: ints, floats, strings and tuples of them


class Unknown(Enum):
    """A tensor's receptive-field state or channel provenance that could not be followed for want
    of a shape (distinct from None: no spatial meaning, no provenance)."""

    UNKNOWN = "unknown"


UNKNOWN: Final = Unknown.UNKNOWN


def is_data(t: TensorInfo | None) -> bool:
    """A float tensor (or one of unknown type): what the wiring carries, unlike shapes and indices."""
    return t is not None and (t.dtype in FLOAT_TYPES or t.dtype == "undefined")


def inferred(shape: Shape | None) -> bool:
    """Whether shape inference gave this shape: its rank and every dim. A symbolic dim of the
    file's is known; `unk__N` is the name onnx gives a dim it could not infer."""
    return shape is not None and not any(d is None or isinstance(d, str) and d.startswith("unk__") for d in shape)


def concrete(shape: Shape | None) -> TypeGuard[tuple[int, ...]]:
    return shape is not None and all(isinstance(d, int) for d in shape)


def dim(shape: Shape | None, axis: int | None) -> int | None:
    if shape is None or axis is None or axis >= len(shape):
        return None
    d = shape[axis]
    return d if isinstance(d, int) else None


def axis_of(axis: int, rank: int | None) -> int | None:
    """An axis attribute made non-negative; None when that needs a rank not known."""
    if axis >= 0:
        return axis
    return None if rank is None else axis + rank


def map_axis(in_shape: Shape | None, out_shape: Shape | None, axis: int | None) -> int | None:
    """Where a reshape puts an input axis, if it survives whole (same size, same elements before it)."""
    if axis is None or not concrete(in_shape) or not concrete(out_shape):
        return None
    before = prod(in_shape[:axis])
    for k in range(len(out_shape)):
        if prod(out_shape[:k]) == before and out_shape[k] == in_shape[axis]:
            return k
    return None


_F = TypeVar("_F", bound=Callable[..., Any])


def registrar(table: dict[str, _F]) -> Callable[..., Callable[[_F], _F]]:
    """The decorator that files a stage's per-op rule in `table` under each op type it names."""
    def register(*op_types: str) -> Callable[[_F], _F]:
        def deco(fn: _F) -> _F:
            for op in op_types:
                table[op] = fn
            return fn
        return deco
    return register
