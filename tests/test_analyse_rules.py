"""The known-free ops added for third-party files, each on a well-formed one-node graph, and the
data-dependent ones listed as "cost unknown" (tests/test_rules.py has every cost rule)."""

from __future__ import annotations

import numpy as np
import pytest

from archkit.costs import FREE, analyse
from archkit.costs.rules import DATA_DEPENDENT
from archkit.onnx.graph import build_graph
from tests.builders import one_node, w
from tests.test_rules import _FREE_CORE

_I = lambda *v: np.array(v, np.int64)
X = {"x": [2, 3, 4, 4]}

# op → (graph inputs, initializers, attributes, outputs)
FREE_CASES = {
    "Shape": (X, {}, {}, 1),
    "Size": (X, {}, {}, 1),
    "Squeeze": ({"x": [1, 3]}, {"axes": _I(0)}, {}, 1),
    "Range": ({}, {"a": np.array(0, np.int64), "b": np.array(6, np.int64), "d": np.array(2, np.int64)}, {}, 1),
    "ConstantOfShape": ({}, {"s": _I(2, 3)}, {}, 1),
    "CastLike": (X, {"t": np.zeros(1, np.float16)}, {}, 1),
    "GatherElements": (X, {"i": np.zeros((2, 3, 4, 4), np.int64)}, {"axis": 1}, 1),
    "GatherND": (X, {"i": np.zeros((2, 1), np.int64)}, {}, 1),
    "ScatterElements": (X, {"i": np.zeros((2, 3, 4, 4), np.int64), "u": w(2, 3, 4, 4)}, {}, 1),
    "ScatterND": (X, {"i": np.zeros((1, 1), np.int64), "u": w(1, 3, 4, 4)}, {}, 1),
    "DepthToSpace": ({"x": [1, 8, 2, 2]}, {}, {"blocksize": 2}, 1),
    "SpaceToDepth": (X, {}, {"blocksize": 2}, 1),
    "Compress": (X, {"c": np.array([True, False])}, {"axis": 0}, 1),
    "NonZero": (X, {}, {}, 1),
    "OneHot": ({}, {"i": _I(0, 2), "d": _I(4), "v": w(2)}, {}, 1),
    "EyeLike": ({"x": [3, 4]}, {}, {}, 1),
    "Trilu": ({"x": [3, 4]}, {}, {}, 1),
    "ReverseSequence": ({"x": [4, 2, 3]}, {"l": _I(4, 3)}, {"batch_axis": 1, "time_axis": 0}, 1),
    "MaxUnpool": ({"x": [1, 1, 2, 2]}, {"i": np.zeros((1, 1, 2, 2), np.int64)}, {"kernel_shape": [2, 2], "strides": [2, 2]}, 1),
    "Unique": ({"x": [6]}, {}, {}, 1),
    "CenterCropPad": ({"x": [5, 6]}, {"s": _I(4, 4)}, {}, 1),
    "RandomNormalLike": (X, {}, {}, 1),
    "RandomUniformLike": (X, {}, {}, 1),
    "RandomNormal": ({}, {}, {"shape": [2, 3]}, 1),
    "RandomUniform": ({}, {}, {"shape": [2, 3]}, 1),
    "Bernoulli": ({"x": [2, 3]}, {}, {}, 1),
    "Multinomial": ({"x": [2, 3]}, {}, {"sample_size": 4}, 1),
    "SplitToSequence": ({"x": [4, 3]}, {}, {}, 1),
    "SequenceConstruct": ({"a": [2], "b": [2]}, {}, {}, 1),
    "Optional": ({"x": [2]}, {}, {}, 1),
}
# Built elsewhere (control flow: tests/test_analyse.py), or needing sequence/optional inputs or
# types one node cannot produce: their membership in FREE is what is tested.
FREE_ELSEWHERE = {"Constant", "If", "Loop", "Scan", "SequenceMap", "SequenceAt", "SequenceEmpty", "SequenceErase",
                  "SequenceInsert", "SequenceLength", "ConcatFromSequence", "OptionalGetElement",
                  "OptionalHasElement", "Col2Im", "BitCast", "TensorScatter", "Scatter"}  # Scatter: opset < 11 only


def test_every_free_op_is_tested():
    assert FREE == _FREE_CORE | set(FREE_CASES) | FREE_ELSEWHERE


@pytest.mark.parametrize("op_type", sorted(FREE_CASES))
def test_free_ops_cost_nothing(op_type):
    inputs, inits, attrs, n_out = FREE_CASES[op_type]
    report = analyse(build_graph(one_node(op_type, inputs, None, weights=inits, n_outputs=n_out, opset=22, **attrs)))
    op = report.ops[0]
    assert (op.status, op.macs, op.flops) == ("free", 0, 0)
    assert report.complete


@pytest.mark.parametrize("op_type", sorted(DATA_DEPENDENT))
def test_data_dependent_ops_are_cost_unknown(op_type):
    if op_type == "NonMaxSuppression":
        model = one_node(op_type, {"boxes": [1, 6, 4], "scores": [1, 1, 6]}, None)
    else:
        model = one_node(op_type, {"x": [1, 3, 8, 8], "rois": [2, 5]}, None, pooled_shape=[2, 2])
    report = analyse(build_graph(model))
    assert report.ops[0].status == "unknown" and not report.complete
