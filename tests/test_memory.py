"""archkit.costs.memory and the costs' output_bytes / weight_bytes.

Every figure is a closed form derived here by hand, or a recount by `recount` below: a plain
simulator (buffers from producers and last readers, aliases sharing, in-place where the input
dies) run over the same orders, random DAGs included. onnxruntime's own profile checks the
reproduced onnxruntime order. Models are built with onnx.helper (tests/builders.py).

The block patterns hold [batch, C, 16, 16] float activations: U bytes per channel per sample.
"""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper

from archkit.analysis import Analysis, analyse_model
from archkit.costs.memory import Memory, group_peaks
from archkit.onnx.symbolic import symbol, value
from tests import builders
from tests.builders import (
    conv_chain,
    dense_block,
    inception_module,
    model,
    random_dag,
    residual_block,
    tensor,
    two_towers,
)

U = 16 * 16 * 4  # bytes of one float channel of 16x16
N = symbol("N")


def analyse(m: onnx.ModelProto, **kw) -> Analysis:
    return analyse_model(m, connectivity=False, **kw)


def memory(m: onnx.ModelProto, **kw) -> Memory:
    mem = analyse(m, **kw).memory
    assert mem is not None
    return mem


def rows(m: onnx.ModelProto, **kw) -> dict:
    """The costs' rows by node."""
    return {o.node: o for o in analyse(m, **kw).costs.ops}


def node(op: str, ins: list[str], outs: list[str], name: str, **attrs) -> onnx.NodeProto:
    return helper.make_node(op, ins, outs, name=name, **attrs)


def ints(name: str, *v: int) -> onnx.TensorProto:
    return tensor(name, np.array(v, np.int64))


# --- 1. per-op bytes ---------------------------------------------------------------------------

@pytest.mark.parametrize("to, nbytes", [
    (T.FLOAT, 15 * 4), (T.DOUBLE, 15 * 8), (T.FLOAT16, 15 * 2), (T.INT8, 15), (T.UINT8, 15), (T.BOOL, 15),
    (T.INT4, 8), (T.UINT4, 8),  # 15 elements of 4 bits: 7.5 bytes, packed, rounded up
])
def test_output_bytes_by_dtype(to, nbytes):
    m = model([node("Cast", ["x"], ["y"], "cast", to=to)], {"x": [3, 5]}, [builders.value("y", [3, 5], to)],
              opset=21, ir_version=10)  # Cast to int4 needs opset 21
    assert rows(m)["cast"].output_bytes == nbytes
    assert memory(m).outputs == nbytes


def test_shape_output_is_int64():
    m = model([node("Shape", ["x"], ["s"], "shape")], {"x": [2, 3, 4, 5]}, [builders.value("s", [4], T.INT64)])
    assert rows(m)["shape"].output_bytes == 4 * 8  # rank 4, int64


def test_multi_output_op_sums_its_outputs():
    # Split [2, 6] into [2, 2] and [2, 4]: (4 + 8) floats; the split sizes are 2 stored int64
    m = model([node("Split", ["x", "sizes"], ["a", "b"], "split", axis=1)], {"x": [2, 6]}, {"a": [2, 2], "b": [2, 4]},
              [ints("sizes", 2, 4)])
    r = rows(m)["split"]
    assert (r.output_bytes, r.weight_bytes) == (12 * 4, 2 * 8)


def test_constant_is_a_weight_not_an_output():
    k = tensor("v", np.ones((3, 4), np.float32))
    m = model([node("Constant", [], ["k"], "const", value=k), node("Add", ["x", "k"], ["y"], "add")],
              {"x": [3, 4]}, {"y": [3, 4]})
    r = rows(m)
    assert (r["const"].output_bytes, r["const"].weight_bytes) == (0, 12 * 4)
    assert (r["add"].output_bytes, r["add"].weight_bytes) == (12 * 4, 0)
    mem = memory(m)
    assert mem.weights == 48 and mem.schedules["file"].steps == ("add",)  # a Constant is no step


def test_dequantized_conv_weights_in_stored_types():
    # int8 kernel [8, 3, 3, 3] with per-channel float scales and int8 zero points, float bias [8]
    inits = [tensor("wq", np.ones((8, 3, 3, 3), np.int8)), tensor("scale", np.ones(8, np.float32)),
             tensor("zp", np.zeros(8, np.int8)), tensor("b", np.zeros(8, np.float32))]
    m = model([node("DequantizeLinear", ["wq", "scale", "zp"], ["w"], "dq", axis=0),
               node("Conv", ["x", "w", "b"], ["y"], "conv", pads=[1, 1, 1, 1])],
              {"x": [1, 3, 8, 8]}, {"y": [1, 8, 8, 8]}, inits)
    r = rows(m)
    assert r["dq"].weight_bytes == 216 + 8 * 4 + 8  # kernel (int8) + scales (float) + zero points (int8)
    assert r["dq"].output_bytes == 216 * 4  # the float kernel it makes: an activation
    assert (r["conv"].weight_bytes, r["conv"].output_bytes) == (8 * 4, 8 * 64 * 4)
    mem = memory(m)
    assert (mem.weights, mem.activations, mem.outputs) == (256 + 32, 864, 2048)


def test_qlinearconv_weights_in_stored_types():
    inits = [tensor("xs", np.float32(1)), tensor("xz", np.uint8(0)), tensor("w", np.ones((8, 3, 3, 3), np.int8)),
             tensor("ws", np.ones(8, np.float32)), tensor("wz", np.zeros(8, np.int8)), tensor("ys", np.float32(1)),
             tensor("yz", np.uint8(0)), tensor("b", np.zeros(8, np.int32))]
    m = model([node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], "qconv")],
              [builders.value("x", [1, 3, 8, 8], T.UINT8)], [builders.value("y", [1, 8, 6, 6], T.UINT8)], inits)
    r = rows(m)["qconv"]
    # x scale 4 + x zero point 1 + kernel 216 + kernel scales 32 + kernel zero points 8 + y scale 4
    # + y zero point 1 + int32 bias 32
    assert r.weight_bytes == 4 + 1 + 216 + 32 + 8 + 4 + 1 + 32
    assert r.output_bytes == 8 * 6 * 6  # uint8, 3x3 without padding on 8x8


def test_int4_weights_packed():
    # 15 int4 elements take 8 bytes; the int4 zero point (1 element) a byte; the float scale 4
    wq = helper.make_tensor("wq", T.INT4, [5, 3], [1] * 15)
    zp = helper.make_tensor("zp", T.INT4, [], [0])
    m = model([node("DequantizeLinear", ["wq", "scale", "zp"], ["w"], "dq"), node("Add", ["x", "w"], ["y"], "add")],
              {"x": [5, 3]}, {"y": [5, 3]}, [wq, tensor("scale", np.float32(1)), zp], opset=21, ir_version=10)
    r = rows(m)
    assert (r["dq"].weight_bytes, r["dq"].output_bytes) == (8 + 4 + 1, 15 * 4)


def test_shared_initializer_counted_once():
    # a float16 kernel [4, 4] and an int64 shape [2], each read by two ops: counted at the first
    f16 = T.FLOAT16
    inits = [tensor("w", np.ones((4, 4), np.float16)), ints("shape", 4, 4)]
    m = model([node("MatMul", ["x", "w"], ["a"], "mm1"), node("Reshape", ["a", "shape"], ["b"], "re1"),
               node("MatMul", ["b", "w"], ["c"], "mm2"), node("Reshape", ["c", "shape"], ["y"], "re2")],
              [builders.value("x", [4, 4], f16)], [builders.value("y", [4, 4], f16)], inits)
    a = analyse(m)
    assert [o.weight_bytes for o in a.costs.ops] == [16 * 2, 2 * 8, 0, 0]
    assert a.costs.total()["weight_bytes"] == 48 and a.memory is not None and a.memory.weights == 48


# --- 2. peaks in closed form, at batch 1 and at a batch given for a symbolic N -----------------

# (the batch dim the builder declares, input_shapes, the batch the figures are at)
BATCHES = [pytest.param(1, None, 1, id="batch1"), pytest.param("N", {"N": 3}, 3, id="N=3")]


@pytest.mark.parametrize("dim, given, b", BATCHES)
def test_chain_peak(dim, given, b):
    # c1 (16 ch) | Relu writes into c1's buffer (nothing later reads c1) | c2 reads it and makes
    # the 4-ch graph output: peak at c2 = its input + its output = 16U + 4U; the Relu adds nothing
    s = memory(conv_chain(dim), input_shapes=given).schedules["file"]
    assert s.curve == tuple(b * U * k for k in (16, 16, 20))
    p = s.peak
    assert (p.bytes, p.step, p.node, p.activations, p.outputs) == (20 * U * b, 2, "c2/Conv", 16 * U * b, 4 * U * b)
    assert [(lv.tensor, lv.bytes, lv.kind) for lv in p.live] == [("c1_out", 16 * U * b, "activation"),
                                                                ("c2_out", 4 * U * b, "output")]


@pytest.mark.parametrize("dim, given, b", BATCHES)
def test_residual_peak(dim, given, b):
    # stem: t 8 | c1: t + c1 16 = 24 | Relu in place: 24 | c2: t + relu 16 + c2 8 = 32 (peak)
    # | Add: t + c2 + y 8 = 24. The skip keeps t alive through the peak (without it: 24).
    s = memory(residual_block(dim), input_shapes=given).schedules["file"]
    assert s.curve == tuple(b * U * k for k in (8, 24, 24, 32, 24))
    assert (s.peak.bytes, s.peak.node) == (32 * U * b, "c2/Conv")
    assert ("stem_out", 8 * U * b) in [(lv.tensor, lv.bytes) for lv in s.peak.live]


@pytest.mark.parametrize("dim, given, b", BATCHES)
def test_inception_peak(dim, given, b):
    # file order: stem t 8 | b1 +4 = 12 | b2a +6 = 18 | b2b +8 = 26, b2a dies | b3a 8+4+8+2 = 22
    # | b3b +4 = 26, b3a dies | pool +8 = 32, t dies | b4 4+8+4+8+4 = 28, pool dies
    # | Concat: the four branch outputs (4+8+4+4 = 20) + its own output (20, a graph output) = 40
    s = memory(inception_module(dim), input_shapes=given).schedules["file"]
    assert s.curve == tuple(b * U * k for k in (8, 12, 18, 26, 22, 26, 32, 28, 40))
    assert (s.peak.bytes, s.peak.node, s.peak.outputs) == (40 * U * b, "cat/Concat", 20 * U * b)
    live = {lv.tensor: lv.bytes // (U * b) for lv in s.peak.live}
    assert live == {"b1_out": 4, "b2b_out": 8, "b3b_out": 4, "b4_out": 4, "cat_out": 20}


def dense_curve(layers: int, k0: int, g: int) -> list[int]:
    """A dense block's live channels per step, file order: the stem k0; layer 1's conv k0 + g;
    layer i ≥ 2: its Concat holds every earlier output (k0 + (i-1)g) and itself as much again,
    its conv adds g (then the Concat dies); the final Concat: all outputs twice, 2(k0 + Lg)."""
    out = [k0, k0 + g]
    for i in range(2, layers + 1):
        before = k0 + (i - 1) * g
        out += [2 * before, 2 * before + g]
    return out + [2 * (k0 + layers * g)]


@pytest.mark.parametrize("layers", [1, 3, 5])
@pytest.mark.parametrize("dim, given, b", BATCHES)
def test_dense_block_peak(layers, dim, given, b):
    k0, g = 4, 2
    s = memory(dense_block(dim, layers, k0, g), input_shapes=given).schedules["file"]
    assert s.curve == tuple(b * U * c for c in dense_curve(layers, k0, g))
    # the last layer's conv holds 2k0 + (2L-1)g < 2(k0 + Lg): the final Concat peaks
    assert (s.peak.bytes, s.peak.node) == (2 * (k0 + layers * g) * U * b, "out/Concat")


# --- 3. aliases and in-place ops ---------------------------------------------------------------

K = 256 * 4  # bytes of a [1, 256] float tensor (and of [1, 4, 8, 8])


def test_aliases_allocate_nothing():
    # Conv makes c; five aliases hand its buffer on; Neg makes the output: c is the one activation
    inits = [tensor("w", np.ones((4, 4, 1, 1), np.float32)), ints("s", 1, 4, 64), ints("ax", 0)]
    m = model([node("Conv", ["x", "w"], ["c"], "conv"), node("Reshape", ["c", "s"], ["r"], "reshape"),
               node("Unsqueeze", ["r", "ax"], ["u"], "unsqueeze"), node("Squeeze", ["u", "ax"], ["q"], "squeeze"),
               node("Flatten", ["q"], ["f"], "flatten", axis=1), node("Identity", ["f"], ["i"], "identity"),
               node("Neg", ["i"], ["y"], "neg")], {"x": [1, 4, 8, 8]}, {"y": [1, 256]}, inits)
    mem = memory(m)
    assert (mem.activations, mem.buffers, mem.outputs) == (K, 1, K)
    assert mem.schedules["file"].curve == (K,) * 6 + (2 * K,)  # c is held until Neg reads it through the aliases


def test_alias_of_graph_input_is_free():
    m = model([node("Reshape", ["x", "s"], ["r"], "reshape"), node("Neg", ["r"], ["y"], "neg")],
              {"x": [1, 4, 8, 8]}, {"y": [1, 4, 64]}, [ints("s", 1, 4, 64)])
    mem = memory(m)
    assert (mem.activations, mem.buffers) == (0, 0)
    assert mem.schedules["file"].curve == (0, K)


def test_alias_made_a_graph_output_allocates():
    # the caller gets the output: it is a buffer of its own
    m = model([node("Neg", ["x"], ["c"], "neg"), node("Identity", ["c"], ["y"], "identity")],
              {"x": [1, 256]}, {"y": [1, 256]})
    mem = memory(m)
    assert (mem.activations, mem.outputs) == (K, K)
    assert mem.schedules["file"].curve == (K, 2 * K)


def test_dropout_allocates():
    m = model([node("Neg", ["x"], ["c"], "neg0"), node("Dropout", ["c"], ["d"], "dropout"),
               node("Neg", ["d"], ["y"], "neg")], {"x": [1, 256]}, {"y": [1, 256]})
    mem = memory(m)
    assert (mem.activations, mem.buffers) == (2 * K, 2)
    assert mem.schedules["file"].curve == (K, 2 * K, 2 * K)  # onnxruntime copies: c and d both held


def test_in_place_only_where_the_input_dies():
    def curve(nodes):
        mem = memory(model(nodes, {"x": [1, 256]}, {"y": [1, 256]}))
        return mem.schedules["file"].curve, mem.buffers

    # nothing reads c after the Relu: it writes into c's buffer (and the Sigmoid into it again)
    assert curve([node("Neg", ["x"], ["c"], "n"), node("Relu", ["c"], ["r"], "relu"),
                  node("Neg", ["r"], ["y"], "neg")]) == ((K, K, 2 * K), 1)
    assert curve([node("Neg", ["x"], ["c"], "n"), node("Relu", ["c"], ["r"], "relu"),
                  node("Sigmoid", ["r"], ["s"], "sigmoid"), node("Neg", ["s"], ["y"], "neg")]) == ((K, K, K, 2 * K), 1)
    # Add reads c after the Relu: the Relu allocates, and c stays
    assert curve([node("Neg", ["x"], ["c"], "n"), node("Relu", ["c"], ["r"], "relu"),
                  node("Add", ["r", "c"], ["y"], "add")]) == ((K, 2 * K, 3 * K), 2)
    # the same through an alias of c made before the Relu
    assert curve([node("Neg", ["x"], ["c"], "n"), node("Identity", ["c"], ["i"], "identity"),
                  node("Relu", ["c"], ["r"], "relu"), node("Add", ["r", "i"], ["y"], "add")]) == ((K, K, 2 * K, 3 * K), 2)
    # a Relu on a graph input, or making a graph output, allocates
    assert curve([node("Relu", ["x"], ["r"], "relu"), node("Neg", ["r"], ["y"], "neg")]) == ((K, 2 * K), 1)
    assert curve([node("Neg", ["x"], ["c"], "n"), node("Relu", ["c"], ["y"], "relu")]) == ((K, 2 * K), 1)


# --- 4. graph inputs, outputs and weights, counted apart ----------------------------------------

def test_inputs_outputs_weights_apart():
    f16 = T.FLOAT16
    k = tensor("kv", np.ones((2, 3), np.float16))
    inits = [tensor("w", np.ones((8, 4, 1, 1), np.float32)), tensor("b", np.zeros(8, np.float32))]
    nodes = [node("Constant", [], ["k"], "const", value=k),
             node("Neg", ["x"], ["o1"], "o1"),  # a graph output nothing reads: live to the end
             node("Conv", ["x", "w", "b"], ["a"], "conv"),
             node("Neg", ["a"], ["o2"], "o2"),
             node("Add", ["m", "k"], ["o3"], "o3"),
             node("Cast", ["idx"], ["o4"], "o4", to=f16)]
    m = model(nodes, [builders.value("x", [1, 4, 8, 8]), builders.value("m", [2, 3], f16),
                      builders.value("idx", [5], T.INT64)],
              [builders.value("o1", [1, 4, 8, 8]), builders.value("o2", [1, 8, 8, 8]), builders.value("o3", [2, 3], f16),
               builders.value("o4", [5], f16)], inits)
    mem = memory(m)
    assert mem.inputs == 4 * 64 * 4 + 6 * 2 + 5 * 8  # x float, m float16, idx int64
    assert mem.outputs == 4 * 64 * 4 + 8 * 64 * 4 + 6 * 2 + 5 * 2
    assert mem.weights == 8 * 4 * 4 + 8 * 4 + 6 * 2  # conv kernel and bias, the Constant's float16 value
    assert mem.activations == 8 * 64 * 4 and mem.buffers == 1  # a: the only tensor not returned
    # o1 1024 | + a 2048 | + o2 2048 (peak) | a dies, + o3 12 | + o4 10: the last step holds every output
    s = mem.schedules["file"]
    assert s.curve == (1024, 3072, 5120, 3084, 3094) and s.curve[-1] == mem.outputs
    assert (s.peak.bytes, s.peak.activations, s.peak.outputs) == (5120, 2048, 3072)


# --- 5. execution orders -----------------------------------------------------------------------

def two_peaks(batch="N") -> onnx.ModelProto:
    """big = Neg(a 1000-float weight) and its ReduceSum s [1], then two [N, 64] Negs on x and
    Add(·, s): one step holds 4000 constant bytes, another 512·N."""
    nodes = [node("Neg", ["W"], ["big"], "big"), node("ReduceSum", ["big"], ["s"], "sum", keepdims=1),
             node("Neg", ["x"], ["a"], "a"), node("Neg", ["a"], ["b"], "b"), node("Add", ["b", "s"], ["y"], "y")]
    return model(nodes, {"x": [batch, 64]}, {"y": [batch, 64]}, [tensor("W", np.ones(1000, np.float32))])


def if_reading_outer(cond=None) -> onnx.ModelProto:
    """c = Neg(x), e = Neg(x), then an If whose branches read c, then Add(If's output, e)."""
    then_b = builders.graph([node("Neg", ["c"], ["t"], "then/Neg")], [], {"t": [1, 256]}, name="then")
    else_b = builders.graph([node("Abs", ["c"], ["t2"], "else/Abs")], [], {"t2": [1, 256]}, name="else")
    nodes = [node("Neg", ["x"], ["c"], "c"), node("Neg", ["x"], ["e"], "e"),
             node("If", ["flag"], ["o"], "if", then_branch=then_b, else_branch=else_b),
             node("Add", ["o", "e"], ["y"], "y")]
    return model(nodes, [builders.value("x", [1, 256]), builders.value("flag", [], T.BOOL)], {"y": [1, 256]})


# every test graph without Constant nodes; the If graph is kept out of the recount (its subgraphs)
GRAPHS = {"chain": conv_chain, "residual": residual_block, "inception": inception_module, "dense": dense_block,
          "two_towers": two_towers, "two_peaks": lambda: two_peaks(1), **{f"dag{s}": lambda s=s: random_dag(s)
                                                                          for s in range(8)}}
ALL = {**GRAPHS, "if": if_reading_outer}


def onnxruntime_order(m: onnx.ModelProto, tmp_path) -> list[str]:
    """The main graph's node names in the order onnxruntime runs them, from its profile."""
    import onnxruntime as ort  # heavy: only these tests need it

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.enable_mem_pattern = False
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "profile")
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.zeros([d.dim_value for d in i.type.tensor_type.shape.dim],
                              helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in m.graph.input}
    sess.run(None, feeds)
    with open(sess.end_profiling()) as f:
        events = json.load(f)
    names = [n.name for n in m.graph.node]
    # "Node" events ending _kernel_time come in execution order; node_index is the position in
    # the node's own graph (a subgraph's events are left out by name)
    ran = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")
           and e["name"][:-len("_kernel_time")] in names]
    order = [names[int(e["args"]["node_index"])] for e in ran]
    assert order == [e["name"][:-len("_kernel_time")] for e in ran]
    return order


@pytest.mark.parametrize("name", ALL)
def test_file_order(name):
    m = ALL[name]()
    assert memory(m).schedules["file"].steps == tuple(n.name for n in m.graph.node)


@pytest.mark.parametrize("name", ALL)
def test_onnxruntime_order_is_its_own(name, tmp_path):
    m = ALL[name]()
    assert list(memory(m).schedules["onnxruntime"].steps) == onnxruntime_order(m, tmp_path)


@pytest.mark.parametrize("name", ALL)
def test_memory_aware_never_worse(name):
    s = memory(ALL[name]()).schedules
    assert s["memory-aware"].peak.bytes <= min(s["file"].peak.bytes, s["onnxruntime"].peak.bytes)
    assert sorted(s["memory-aware"].steps) == sorted(s["file"].steps)


def test_memory_aware_beats_a_bad_file_order():
    # two_towers lists both wide (32-ch) convs first: a1 32 | a2 64 | r1 65 (a1 dies) | r2 34 | add 3.
    # Finishing a tower before starting the other: a1 32 | r1 33 | a2 33 | r2 34 | add 3: peak 34.
    mem = memory(two_towers())
    s = mem.schedules
    assert s["file"].curve == tuple(U * k for k in (32, 64, 65, 34, 3))
    assert s["memory-aware"].peak.bytes == 34 * U
    assert s["memory-aware"].steps in (("a1/Conv", "r1/Conv", "a2/Conv", "r2/Conv", "add/Add"),
                                       ("a2/Conv", "r2/Conv", "a1/Conv", "r1/Conv", "add/Add"))
    assert mem.saving() == (31 * U, 31 / 65)


def test_block_peaks():
    # inception, file order (see test_inception_peak): the highest step of each branch
    s = memory(inception_module()).schedules["file"]
    block = {f"{b}/Conv": b[:2] for b in ("b1", "b2a", "b2b", "b3a", "b3b", "b4")} | {"b4p/MaxPool": "b4"}
    assert group_peaks(s, block) == {"stem/Conv": 8 * U, "b1": 12 * U, "b2": 26 * U, "b3": 26 * U, "b4": 32 * U,
                                     "cat/Concat": 40 * U}


# --- 6. free dims: peaks and totals as formulas ------------------------------------------------

@pytest.mark.parametrize("build, per_sample", [(conv_chain, 20 * U), (residual_block, 32 * U),
                                               (inception_module, 40 * U), (dense_block, 20 * U)])
def test_peak_formula_is_linear_in_batch(build, per_sample):
    mem = memory(build("N"))
    for s in mem.schedules.values():
        assert s.peak.formula == per_sample * N and s.peak.why_no_formula is None
    f = mem.schedules["file"].peak.formula
    assert str(f) == f"{per_sample}*N" and value(f, {"N": 7}) == 7 * per_sample
    assert mem.schedules["file"].peak.bytes == per_sample  # the figures are at N = 1


def test_memory_formulas():
    mem = memory(conv_chain("N"))
    assert mem.formulas == {
        "weights": (16 * 8 * 9 + 4 * 16 * 9) * 4,  # two 3x3 kernels, a constant
        "inputs": 8 * U * N,
        "outputs": 4 * U * N,
        "activations": (16 + 16) * U * N,  # c1 and the Relu's output, each once (no reuse)
    }
    assert memory(conv_chain("N"), input_shapes={"N": 3}).formulas is None  # no free dim left


def test_no_formula_when_different_steps_peak():
    # file order: big 4000 | sum 4000 + 4 | a 4 + 256N | b 4 + 512N | y: b + s + y = 4 + 512N.
    # N = 1: step 1 peaks (4004); N ≥ 8: step 3 (4 + 512N > 4004).
    mem = memory(two_peaks())
    p = mem.schedules["file"].peak
    assert (p.bytes, p.step, p.formula) == (4004, 1, None)
    assert p.why_no_formula == "different steps peak at different values of the free dims"
    assert mem.formulas is not None and mem.formulas["activations"] == 4000 + 4 + 2 * 256 * N
    p = memory(two_peaks(), input_shapes={"N": 100}).schedules["file"].peak
    assert (p.bytes, p.step, p.node) == (4 + 512 * 100, 3, "b")


def test_strided_conv_has_floors_not_formula():
    # Conv 3x3 stride 2 pad 1 (4 → 8 ch) then Neg, on free H, W: each output ⌊(H+1)/2⌋·⌊(W+1)/2⌋·8 floats
    n = builders.Net((1, 4, "H", "W"))
    m = n.model(n._add("Neg", "neg", [n.conv("c", "x", 8, stride=2)], 8))
    mem = memory(m)
    p = mem.schedules["file"].peak
    assert p.formula is None and p.why_no_formula is not None and "floors" in p.why_no_formula
    assert p.bytes == 2 * 8 * 4  # at H = W = 1: one position per channel, conv output + Neg's
    assert mem.formulas is not None and value(mem.formulas["activations"], {"H": 9, "W": 7}) == 8 * 5 * 4 * 4
    assert memory(m, input_shapes={"H": 9, "W": 7}).schedules["file"].peak.bytes == 2 * 8 * 5 * 4 * 4


# --- 7. an independent recount -----------------------------------------------------------------

ITEM_BYTES = {T.FLOAT: 4, T.FLOAT16: 2, T.INT64: 8, T.BOOL: 1}
SHARES = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}  # hand their input's buffer on
INTO_INPUT = {"Relu", "Sigmoid", "Tanh"}  # write into their input's buffer when it dies there


def sizes(m: onnx.ModelProto) -> dict[str, int]:
    """Bytes of every tensor, from onnx's own shape inference."""
    g = onnx.shape_inference.infer_shapes(m, strict_mode=True).graph
    return {vi.name: math.prod(d.dim_value for d in vi.type.tensor_type.shape.dim)
            * ITEM_BYTES[vi.type.tensor_type.elem_type] for vi in [*g.value_info, *g.output]}


class Recount:
    """Buffers and live bytes along an order of a model's nodes, the plain way: walk the order;
    a sharing op's output joins its input's buffer, an in-place op's too when no later op reads
    that buffer, any other output is a new buffer; a buffer is live from the step making it to
    the last step reading any of its tensors, a graph output's to the end."""

    def __init__(self, m: onnx.ModelProto, order: list[str]) -> None:
        by_name = {n.name: n for n in m.graph.node}
        size = sizes(m)
        outputs = {o.name for o in m.graph.output}
        weights = {t.name for t in m.graph.initializer}
        steps = [by_name[s] for s in order]
        reads = [[t for t in n.input if t and t not in weights] for n in steps]
        buffer_of: dict[str, int] = {}  # tensor → its buffer (graph inputs have none)
        self.size: list[int] = []
        self.returned: list[bool] = []
        made: list[int] = []
        self.naive = 0  # bytes of every output an op writes, but shared ones and graph outputs
        for p, n in enumerate(steps):
            out = n.output[0]
            src = buffer_of.get(n.input[0])
            if out not in outputs and n.op_type in SHARES:
                if src is not None:
                    buffer_of[out] = src
                continue
            if n.op_type in INTO_INPUT and out not in outputs:
                self.naive += size[out]
                read_later = any(buffer_of.get(t) == src for r in reads[p + 1:] for t in r)
                if src is not None and not self.returned[src] and not read_later:
                    buffer_of[out] = src
                    continue
            elif out not in outputs:
                self.naive += size[out]
            for t in n.output:
                buffer_of[t] = len(self.size)
                self.size.append(size[t])
                self.returned.append(t in outputs)
                made.append(p)
        last = list(made)
        for p, r in enumerate(reads):
            for t in r:
                if t in buffer_of:
                    last[buffer_of[t]] = max(last[buffer_of[t]], p)
        end = [len(steps) - 1 if self.returned[b] else last[b] for b in range(len(self.size))]
        self.curve = tuple(sum(self.size[b] for b in range(len(self.size)) if made[b] <= p <= end[b])
                           for p in range(len(steps)))
        self.buffers = sum(not r for r in self.returned)
        self.outputs = sum(s for s, r in zip(self.size, self.returned) if r)


@pytest.mark.parametrize("name", GRAPHS)
def test_recount(name):
    m = GRAPHS[name]()
    mem = memory(m)
    for s in mem.schedules.values():
        r = Recount(m, list(s.steps))
        assert s.curve == r.curve, s.name
        assert s.peak.bytes == max(r.curve) and s.curve[s.peak.step] == s.peak.bytes
        assert s.peak.bytes == s.peak.activations + s.peak.outputs
        assert [lv.bytes for lv in s.peak.live] == sorted((lv.bytes for lv in s.peak.live), reverse=True)
    r = Recount(m, list(mem.schedules["onnxruntime"].steps))
    assert (mem.activations, mem.outputs, mem.buffers) == (r.naive, r.outputs, r.buffers)


@pytest.mark.parametrize("name", ALL)
def test_planned_holds_at_least_the_live_bytes(name):
    # onnxruntime's planner holds a dead buffer until a same-shape tensor reuses it: never less
    s = memory(ALL[name]()).schedules["onnxruntime"]
    assert s.planned is not None
    assert all(h >= live for h, live in zip(s.planned.curve, s.curve)) and s.planned.peak >= s.peak.bytes


def test_planned_pins_a_dead_buffer_until_reused():
    # a chain of 1x1 convs: A 32 ch | r 1 | B 1 | C 32 | y 1 (the output). Live: A 32 | A + r 33 |
    # r + B 2 (A died at r) | B + C 33 | C + y 33. onnxruntime's planner hands A's buffer to C (same
    # shape) and holds it from A to C's last reader: step 2 holds 32 + r + B = 34.
    n = builders.Net((1, 4, 16, 16))
    m = n.model(n.conv("y", n.conv("C", n.conv("B", n.conv("r", n.conv("A", "x", 32, (1, 1)), 1, (1, 1)), 1, (1, 1)),
                                   32, (1, 1)), 1, (1, 1)))
    s = memory(m).schedules["onnxruntime"]
    assert s.curve == tuple(U * k for k in (32, 33, 2, 33, 33))
    assert s.planned is not None
    assert s.planned.curve == tuple(U * k for k in (32, 33, 34, 33, 33))
    assert (s.planned.peak, s.planned.node, s.planned.buffers, s.planned.reused) == (34 * U, "B/Conv", 4, 1)


# --- 8. edge cases -----------------------------------------------------------------------------

def test_input_wired_to_output():
    mem = memory(model([], {"x": [3, 4]}, {"x": [3, 4]}))
    assert (mem.inputs, mem.outputs, mem.weights, mem.activations) == (48, 0, 0, 0)  # the output is the caller's input
    for s in mem.schedules.values():
        assert (s.steps, s.curve, s.peak.bytes) == ((), (), 0)
    assert mem.complete


def test_only_constants():
    k = tensor("v", np.ones((3, 4), np.float32))
    mem = memory(model([node("Constant", [], ["k"], "const", value=k)], {}, {"k": [3, 4]}))
    assert (mem.weights, mem.inputs, mem.activations) == (48, 0, 0)
    assert all(s.steps == () and s.peak.bytes == 0 for s in mem.schedules.values())


def test_if_keeps_what_its_branches_read():
    # file order: c 1 | e 2 | If: c (read inside its branches) + e + o = 3 | y: e + o + y = 3 (in K)
    s = memory(if_reading_outer()).schedules["file"]
    assert s.curve == (K, 2 * K, 3 * K, 3 * K)


def test_unknown_shape():
    # NonZero's output is data-dependent: it, and the Cast of it, have no size; Neg's has
    m = model([node("NonZero", ["x"], ["nz"], "nonzero"), node("Cast", ["nz"], ["y"], "cast", to=T.FLOAT),
               node("Neg", ["x"], ["z"], "neg")], {"x": [3, 4]}, ["y", builders.value("z", [3, 4])])
    mem = memory(m)
    assert set(mem.unknown) == {"nz", "y"} and not mem.complete
    assert mem.outputs == 48 and mem.schedules["file"].curve == (0, 0, 48)  # lower bounds: the unknown count 0
    assert rows(m)["nonzero"].output_bytes == 0


def test_sizes_past_int64_stay_exact():
    """Dims a file declares can make a tensor of more than 2**63 bytes: the live bytes, the plan
    and the per-layer peaks are Python integers then, exact, not wrapped or rounded."""
    big = 2 ** 31
    x = helper.make_tensor_value_info("x", T.FLOAT, [big, big, 8])  # 2**65 bytes
    y = helper.make_tensor_value_info("y", T.FLOAT, [big, big, 8])
    nodes = [helper.make_node("Neg", ["x"], ["a"], name="neg"), helper.make_node("Abs", ["a"], ["b"], name="abs"),
             helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    m = helper.make_model(helper.make_graph(nodes, "big", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    a = analyse_model(m)
    one = big * big * 8 * 4
    rt = a.memory.runtime
    assert rt.peak.bytes == 3 * one  # at the Add: a, b and y
    assert rt.planned.peak == 3 * one and all(isinstance(v, int) for v in rt.planned.curve)
    assert rt.curve == (one, 2 * one, 3 * one)
