"""Every cost rule on a hand-built one-node graph, against a closed-form count."""

from __future__ import annotations

import numpy as np
import pytest

from archkit.costs import FREE, RULES, analyse
from archkit.graph import build_graph
from tests.onnx_builders import one_node, w

# (op_type, model, expected MACs, expected flops); shapes chosen so each factor is distinct.
N, C, H, W_, M, K = 2, 3, 10, 12, 5, 3
OH, OW = H - K + 1, W_ - K + 1  # VALID 3x3, stride 1
X = {"x": [N, C, H, W_]}

CASES = [
    # Conv: out elements x (C/group x kh x kw); bias adds one flop per output element
    ("Conv", one_node("Conv", X, None, weights={"w": w(M, C, K, K)}), N * M * OH * OW * C * K * K, 0),
    ("Conv+bias", one_node("Conv", X, None, weights={"w": w(M, C, K, K), "b": w(M)}),
     N * M * OH * OW * C * K * K, N * M * OH * OW),
    # strided, padded, grouped: C=4 in, 6 out, group 2 → each output sees 2 channels
    ("Conv grouped strided", one_node("Conv", {"x": [1, 4, 9, 9]}, None, weights={"w": w(6, 2, 3, 3)},
                                      group=2, strides=[2, 2], pads=[1, 1, 1, 1]),
     1 * 6 * 5 * 5 * 2 * 3 * 3, 0),
    ("Conv depthwise", one_node("Conv", {"x": [1, 8, 7, 7]}, None, weights={"w": w(8, 1, 3, 3)}, group=8,
                                pads=[1, 1, 1, 1]), 8 * 7 * 7 * 9, 0),
    ("Conv1d", one_node("Conv", {"x": [1, 4, 20]}, None, weights={"w": w(6, 4, 5)}), 6 * 16 * 4 * 5, 0),
    # ConvTranspose: input elements x (M/group x kh x kw)
    ("ConvTranspose", one_node("ConvTranspose", {"x": [1, 4, 5, 5]}, None, weights={"w": w(4, 6, 3, 3), "b": w(6)},
                               strides=[2, 2]), 4 * 5 * 5 * 6 * 9, 6 * 11 * 11),
    # Gemm: M x N x K (with transB, as PyTorch exports Linear), bias flops M x N
    ("Gemm", one_node("Gemm", {"a": [4, 7]}, None, weights={"b": w(9, 7), "c": w(9)}, transB=1), 4 * 9 * 7, 4 * 9),
    ("Gemm transA", one_node("Gemm", {"a": [7, 4]}, None, weights={"b": w(7, 9)}, transA=1), 4 * 9 * 7, 0),
    # MatMul with batch broadcasting: (2,1,4,7) x (3,7,5) → (2,3,4,5), K = 7
    ("MatMul", one_node("MatMul", {"a": [2, 1, 4, 7], "b": [3, 7, 5]}, None), 2 * 3 * 4 * 5 * 7, 0),
    ("MatMul 1-D", one_node("MatMul", {"a": [7]}, None, weights={"b": w(7, 5)}), 5 * 7, 0),
    ("MaxPool", one_node("MaxPool", X, None, kernel_shape=[2, 2], strides=[2, 2]), 0, N * C * 5 * 6 * 4),
    ("AveragePool", one_node("AveragePool", X, None, kernel_shape=[3, 3]), 0, N * C * OH * OW * 9),
    ("LpPool", one_node("LpPool", X, None, kernel_shape=[2, 2]), 0, N * C * 9 * 11 * 4),
    ("GlobalAveragePool", one_node("GlobalAveragePool", X, None), 0, N * C * H * W_),
    ("GlobalMaxPool", one_node("GlobalMaxPool", X, None), 0, N * C * H * W_),
    ("BatchNormalization", one_node("BatchNormalization", X, None,
                                    weights={"s": w(C), "b": w(C), "m": w(C), "v": w(C)}), 0, 2 * N * C * H * W_),
    ("Softmax", one_node("Softmax", {"x": [4, 10]}, None), 0, 3 * 40),
    ("LogSoftmax", one_node("LogSoftmax", {"x": [4, 10]}, None), 0, 3 * 40),
    # ReduceX over the spatial axes (tf2onnx's global pooling): one per input element
    *[(op, one_node(op, X, None, weights={"axes": np.array([2, 3], np.int64)}), 0, N * C * H * W_)
      for op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum")],
    ("LRN", one_node("LRN", X, None, size=5), 0, N * C * H * W_ * (5 + 3)),
    ("Sum", one_node("Sum", {"a": [4, 5], "b": [4, 5], "c": [4, 5]}, None), 0, 2 * 20),
    ("Mean", one_node("Mean", {"a": [4, 5], "b": [4, 5]}, None), 0, 20),
    # binary elementwise with broadcasting: one flop per output element
    *[(op, one_node(op, {"a": [N, C, H, W_], "b": [1, C, 1, 1]}, None), 0, N * C * H * W_)
      for op in ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min")],
    ("Where", one_node("Where", {"c": [4, 5], "a": [4, 5], "b": [4, 5]}, None), 0, 20),
    ("PRelu", one_node("PRelu", X, None, weights={"slope": w(C, 1, 1)}), 0, N * C * H * W_),
    *[(op, one_node(op, X, None), 0, N * C * H * W_)
      for op in ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus",
                 "Softsign", "Clip", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Erf")],
]


def _single(model):
    report = analyse(build_graph(model))
    assert len(report.ops) == 1
    return report.ops[0]


@pytest.mark.parametrize("label,model,macs,flops", CASES, ids=[c[0] for c in CASES])
def test_rule_closed_form(label, model, macs, flops):
    op = _single(model)
    assert op.status == "counted"
    assert (op.macs, op.flops) == (macs, flops)


def test_every_rule_has_a_closed_form_case():
    tested = {label.split()[0].split("+")[0] for label, *_ in CASES}
    assert {op for _, op in RULES} <= tested


def test_parameters_are_float_initializers():
    op = _single(one_node("Conv", X, None, weights={"w": w(M, C, K, K), "b": w(M)}))
    assert op.params == M * C * K * K + M
    assert op.weights == M * C * K * K  # the kernel alone


def test_integer_constants_are_not_parameters():
    model = one_node("Reshape", {"x": [2, 6]}, None, weights={"shape": np.array([3, 4], np.int64)})
    op = _single(model)
    assert (op.status, op.params, op.output_shape) == ("free", 0, "3x4")


_I = lambda *v: np.array(v, np.int64)  # noqa: E731
# Extra (integer) inputs a free op needs to be well formed.
_FREE_INPUTS = {
    "Reshape": {"shape": _I(6, 4)}, "Pad": {"pads": _I(1, 1, 1, 1)}, "Slice": {"starts": _I(0), "ends": _I(2)},
    "Gather": {"idx": _I(0, 2)}, "Expand": {"shape": _I(2, 4, 6)}, "Tile": {"reps": _I(2, 1)},
    "Squeeze": {}, "Unsqueeze": {"axes": _I(0)},
}
_FREE_ATTRS = {"Transpose": {"perm": [1, 0]}, "Concat": {"axis": 0}, "Split": {"axis": 0, "num_outputs": 2},
               "Cast": {"to": 1}}


@pytest.mark.parametrize("op_type", sorted(FREE - {"Constant", "Range", "ConstantOfShape", "Shape", "Size", "Squeeze"}))
def test_free_ops_cost_nothing(op_type):
    x = {"x": [4, 6]}
    model = one_node(op_type, x, None, weights=_FREE_INPUTS.get(op_type), n_outputs=2 if op_type == "Split" else 1,
                     **_FREE_ATTRS.get(op_type, {}))
    op = analyse(build_graph(model)).ops[0]
    assert (op.status, op.macs, op.flops) == ("free", 0, 0)
    assert op.output_shape != "?"


def test_unknown_op_is_listed_not_counted_as_zero():
    report = analyse(build_graph(one_node("MyOp", {"x": [2, 3]}, [2, 3], domain="com.example")))
    assert report.ops[0].status == "unsupported"
    assert report.unsupported == ("com.example::MyOp",)
    assert not report.complete


def test_symbolic_batch_is_per_sample_and_can_be_fixed():
    model = one_node("Relu", {"x": ["N", 3, 4]}, None)
    per_sample = analyse(build_graph(model))
    assert per_sample.ops[0].flops == 12 and per_sample.per_sample
    assert per_sample.fixed_dims == {"x": {0: "N"}}
    fixed = analyse(build_graph(model, input_shapes={"x": (5, 3, 4)}))
    assert fixed.ops[0].flops == 60 and not fixed.per_sample


def test_shared_initializer_counted_once():
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="a/MatMul"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="b/MatMul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w(4, 4), "w")])
    report = analyse(build_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])))
    assert [o.params for o in report.ops] == [16, 0]
    assert report.total()["macs"] == 2 * 2 * 4 * 4


def test_rollups_add_up():
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="m/conv_a/Conv"),
             helper.make_node("Relu", ["c1"], ["r1"], name="m/conv_a/Relu"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="m/conv_b/Conv"),
             helper.make_node("Add", ["c2", "r1"], ["y"], name="m/add/Add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w(4, 4, 1, 1), "w1"), numpy_helper.from_array(w(4, 4, 1, 1), "w2")])
    report = analyse(build_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])))
    total = report.total()
    for view in (report.by_layer(), report.by_block(), report.by_type()):
        assert view[["macs", "flops", "params"]].sum().to_dict() == {k: total[k] for k in ("macs", "flops", "params")}
    assert list(report.by_layer().layer) == ["m/conv_a", "m/conv_b", "m/add"]
    assert total["macs"] == 2 * 4 * 8 * 8 * 4
