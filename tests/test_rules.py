"""Every cost rule on a hand-built one-node graph, against a closed-form count."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from archkit.costs import FREE, RULES, analyse
from archkit.onnx.graph import build_graph
from tests import builders
from tests.builders import one_node, w

# (op_type, model, expected MACs, expected flops); shapes chosen so each factor is distinct.
N, C, H, W_, M, K = 2, 3, 10, 12, 5, 3
OH, OW = H - K + 1, W_ - K + 1  # VALID 3x3, stride 1
X = {"x": [N, C, H, W_]}

_u8 = lambda *shape: np.zeros(shape, np.uint8)
_f = lambda *v: np.array(v, np.float32)
_i64 = lambda *v: np.array(v, np.int64)
_scalar_f, _scalar_u8 = np.array(0.5, np.float32), np.array(0, np.uint8)
_X120 = {"x": [2, 3, 4, 5]}  # 120 elements
_QCONV = {"x": _u8(1, 4, 6, 6), "xs": _scalar_f, "xz": _scalar_u8, "w": _u8(5, 4, 3, 3), "ws": _scalar_f,
          "wz": _scalar_u8, "ys": _scalar_f, "yz": _scalar_u8}
_QMM = {"a": _u8(4, 7), "as": _scalar_f, "az": _scalar_u8, "b": _u8(7, 5), "bs": _scalar_f, "bz": _scalar_u8,
        "ys": _scalar_f, "yz": _scalar_u8}
# Ops added for third-party files (issue 5): 2880 = 1x5x4x4 outputs x 4x3x3 taps.
ANALYSE_CASES = [
    ("ConvInteger", one_node("ConvInteger", {}, None, weights={"x": _u8(1, 4, 6, 6), "w": _u8(5, 4, 3, 3)}), 2880, 0),
    # requantize: 2 flops per output (scale, shift) + 1 for the int32 bias
    ("QLinearConv", one_node("QLinearConv", {}, None, weights={**_QCONV, "b": np.zeros(5, np.int32)}), 2880, 80 * 3),
    # bilinear sampling: 4 weights per tap
    ("DeformConv", one_node("DeformConv", {"x": [1, 4, 6, 6]}, None, opset=22,
                            weights={"w": w(5, 4, 3, 3), "offset": w(1, 18, 4, 4)}), 2880, 2880 * 4),
    ("MatMulInteger", one_node("MatMulInteger", {}, None, weights={"a": _u8(4, 7), "b": _u8(7, 5)}), 4 * 5 * 7, 0),
    ("QLinearMatMul", one_node("QLinearMatMul", {}, None, weights=_QMM), 4 * 5 * 7, 2 * 20),
    # Einsum: the product of every index's extent; `...` broadcast; one operand summing = one per element
    ("Einsum batched", one_node("Einsum", {"a": [2, 3, 4], "b": [2, 4, 5]}, None, opset=26, equation="bij,bjk->bik"),
     2 * 3 * 4 * 5, 0),
    ("Einsum ellipsis", one_node("Einsum", {"a": [2, 3, 4], "b": [4, 5]}, None, opset=26, equation="...ij,jk->...ik"),
     2 * 3 * 4 * 5, 0),
    ("Einsum heads", one_node("Einsum", {"q": [2, 8, 6, 16], "k": [2, 8, 7, 16]}, None, opset=26,
                              equation="bhqd,bhkd->bhqk"), 2 * 8 * 6 * 7 * 16, 0),
    ("Einsum reduce", one_node("Einsum", {"a": [3, 4]}, None, opset=26, equation="ij->i"), 0, 12),
    # Attention (B=2, H=3, S=4, L=6, E=8, Ev=7): 144 scores x (E + Ev) MACs; scale + softmax = 4 per score
    ("Attention", one_node("Attention", {"q": [2, 3, 4, 8], "k": [2, 3, 6, 8], "v": [2, 3, 6, 7]}, None, opset=26),
     144 * 15, 144 * 4),
    # recurrent cells: seq 5 x batch 2 steps; input 3, hidden 6
    ("LSTM", one_node("LSTM", {"x": [5, 2, 3]}, None, hidden_size=6,
                      weights={"w": w(1, 24, 3), "r": w(1, 24, 6), "b": w(1, 48)}), 10 * 24 * 9, 10 * (24 * 3 + 18)),
    ("GRU", one_node("GRU", {"x": [5, 2, 3]}, None, hidden_size=6, weights={"w": w(1, 18, 3), "r": w(1, 18, 6)}),
     10 * 18 * 9, 10 * (18 + 18)),
    ("RNN", one_node("RNN", {"x": [5, 2, 3]}, None, hidden_size=6, weights={"w": w(1, 6, 3), "r": w(1, 6, 6)}),
     10 * 6 * 9, 10 * (6 + 18)),
    *[(op, one_node(op, _X120, None, opset=26), 0, 120)
      for op in ("Gelu", "Mish", "Swish", "Celu", "ThresholdedRelu", "Shrink", "Sin", "Cos", "Tan", "Asin", "Acos",
                 "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil", "Round", "Sign", "IsNaN",
                 "IsInf", "Hardmax")],
    *[(op, one_node(op, {"a": [2, 3, 4, 5], "b": [1, 3, 1, 1]}, None, opset=26), 0, 120)
      for op in ("Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")],
    ("Mod", one_node("Mod", {"a": [2, 3, 4, 5], "b": [1, 3, 1, 1]}, None, opset=26, fmod=1), 0, 120),
    ("Not", one_node("Not", {}, None, weights={"x": np.zeros((4, 5), bool)}), 0, 20),
    *[(op, one_node(op, {}, None, weights={"a": np.zeros((4, 5), bool), "b": np.zeros((4, 5), bool)}), 0, 20)
      for op in ("And", "Or", "Xor")],
    *[(op, one_node(op, {}, None, weights={"a": _u8(4, 5), "b": _u8(4, 5)}, **({"direction": "LEFT"} if op == "BitShift" else {})), 0, 20)
      for op in ("BitShift", "BitwiseAnd", "BitwiseOr", "BitwiseXor")],
    ("BitwiseNot", one_node("BitwiseNot", {}, None, weights={"x": _u8(4, 5)}), 0, 20),
    # normalisations with run-time statistics: 7 per element (mean 1, variance 2, normalise 2, affine 2)
    ("LayerNormalization", one_node("LayerNormalization", _X120, None, weights={"s": w(5), "b": w(5)}), 0, 7 * 120),
    ("GroupNormalization", one_node("GroupNormalization", _X120, None, opset=21, num_groups=3,
                                    weights={"s": w(3), "b": w(3)}), 0, 7 * 120),
    ("InstanceNormalization", one_node("InstanceNormalization", _X120, None, weights={"s": w(3), "b": w(3)}), 0, 7 * 120),
    ("RMSNormalization", one_node("RMSNormalization", _X120, None, opset=23, weights={"s": w(5)}), 0, 4 * 120),
    ("MeanVarianceNormalization", one_node("MeanVarianceNormalization", _X120, None), 0, 5 * 120),
    ("LpNormalization", one_node("LpNormalization", _X120, None), 0, 3 * 120),
    ("RotaryEmbedding", one_node("RotaryEmbedding", {"x": [1, 2, 3, 8]}, None, opset=23,
                                 weights={"cos": w(3, 4), "sin": w(3, 4)}), 0, 3 * 48),
    ("QuantizeLinear", one_node("QuantizeLinear", {"x": [4, 5]}, None, weights={"s": _scalar_f, "z": _scalar_u8}), 0, 40),
    ("DequantizeLinear", one_node("DequantizeLinear", {}, None, weights={"x": _u8(4, 5), "s": _scalar_f}), 0, 40),
    ("DynamicQuantizeLinear", one_node("DynamicQuantizeLinear", {"x": [4, 5]}, None, n_outputs=3), 0, 40),
    # reductions: one per input element (L1/L2/SumSquare/LogSum/LogSumExp: 2)
    ("GlobalLpPool", one_node("GlobalLpPool", X, None), 0, N * C * H * W_),
    ("ReduceProd", one_node("ReduceProd", _X120, None, weights={"axes": _i64(1)}), 0, 120),
    *[(op, one_node(op, _X120, None, axis=1), 0, 120) for op in ("ArgMax", "ArgMin")],
    *[(op, one_node(op, _X120, None, opset=26, weights={"axis": np.array(1, np.int64)}), 0, 120)
      for op in ("CumSum", "CumProd")],
    ("TopK", one_node("TopK", _X120, None, weights={"k": _i64(2)}, n_outputs=2), 0, 120),
    *[(op, one_node(op, _X120, None, weights={"axes": _i64(1)}), 0, 240)
      for op in ("ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp")],
    # interpolation weights per output element (1x3x8x8 = 192 outputs, 2 resized axes)
    ("Resize nearest", one_node("Resize", {"x": [1, 3, 4, 4]}, None, weights={"roi": "", "scales": _f(1, 1, 2, 2)}),
     0, 0),
    ("Resize linear", one_node("Resize", {"x": [1, 3, 4, 4]}, None, mode="linear",
                               weights={"roi": "", "scales": _f(1, 1, 2, 2)}), 0, 4 * 192),
    ("Resize cubic", one_node("Resize", {"x": [1, 3, 4, 4]}, None, mode="cubic",
                              weights={"roi": "", "scales": _f(1, 1, 2, 2)}), 0, 16 * 192),
    ("Upsample", one_node("Upsample", {"x": [1, 3, 4, 4]}, None, opset=9, mode="linear",
                          weights={"scales": _f(1, 1, 2, 2)}), 0, 4 * 192),
    ("GridSample", one_node("GridSample", {"x": [1, 3, 4, 4], "grid": [1, 5, 6, 2]}, None), 0, 4 * 90),
    # 2 rois x 3 channels, 1x1 output, 2x2 samples of 4 weights + the average
    ("RoiAlign", one_node("RoiAlign", {"x": [1, 3, 8, 8], "rois": [2, 4]}, None, output_height=1, output_width=1,
                          sampling_ratio=2, weights={"idx": _i64(0, 0)}), 0, 6 * 4 * 5),
]

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
    *ANALYSE_CASES,
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
    assert op.kernel_weights == M * C * K * K  # the kernel alone


def test_integer_constants_are_not_parameters():
    model = one_node("Reshape", {"x": [2, 6]}, None, weights={"shape": np.array([3, 4], np.int64)})
    op = _single(model)
    assert (op.status, op.params, op.output_shape) == ("free", 0, "3x4")


_I = lambda *v: np.array(v, np.int64)
# Extra (integer) inputs a free op needs to be well formed.
_FREE_INPUTS = {
    "Reshape": {"shape": _I(6, 4)}, "Pad": {"pads": _I(1, 1, 1, 1)}, "Slice": {"starts": _I(0), "ends": _I(2)},
    "Gather": {"idx": _I(0, 2)}, "Expand": {"shape": _I(2, 4, 6)}, "Tile": {"reps": _I(2, 1)},
    "Squeeze": {}, "Unsqueeze": {"axes": _I(0)},
}
_FREE_ATTRS = {"Transpose": {"perm": [1, 0]}, "Concat": {"axis": 0}, "Split": {"axis": 0, "num_outputs": 2},
               "Cast": {"to": 1}}


# The data-movement ops of the first FREE set, on a (4, 6) input; the rest of FREE (indexing,
# sequences, control flow) is tested with the inputs each needs in tests/test_analyse_rules.py.
_FREE_CORE = frozenset({"Reshape", "Flatten", "Transpose", "Unsqueeze", "Identity", "Dropout", "Concat", "Split",
                        "Slice", "Gather", "Cast", "Expand", "Tile", "Pad"})


@pytest.mark.parametrize("op_type", sorted(_FREE_CORE & FREE))
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
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="a/MatMul"),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="b/MatMul")]
    report = analyse(build_graph(builders.model(nodes, {"x": [2, 4]}, ["y"], [builders.tensor("w", w(4, 4))], opset=18)))
    assert [o.params for o in report.ops] == [16, 0]
    assert report.total()["macs"] == 2 * 2 * 4 * 4


def test_rollups_add_up():
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="m/conv_a/Conv"),
             helper.make_node("Relu", ["c1"], ["r1"], name="m/conv_a/Relu"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="m/conv_b/Conv"),
             helper.make_node("Add", ["c2", "r1"], ["y"], name="m/add/Add")]
    inits = [builders.tensor("w1", w(4, 4, 1, 1)), builders.tensor("w2", w(4, 4, 1, 1))]
    report = analyse(build_graph(builders.model(nodes, {"x": [1, 4, 8, 8]}, ["y"], inits, opset=18)))
    total = report.total()
    for view in (report.by_layer(), report.by_block(), report.by_type()):
        assert view[["macs", "flops", "params"]].sum().to_dict() == {k: total[k] for k in ("macs", "flops", "params")}
    assert list(report.by_layer().layer) == ["m/conv_a", "m/conv_b", "m/add"]
    assert total["macs"] == 2 * 4 * 8 * 8 * 4
