"""archkit's memory figures against onnxruntime's own allocator (archkit.runtime.memory).

onnxruntime runs each model once with optimisations and the memory pattern off and profiling on;
its profile gives every node's output bytes and the arena's bytes. Checked:
- which ops hand their input's buffer on (ALIAS) or write into it (IN_PLACE), op by op, by
  the bytes onnxruntime asks of its arena on a probe graph;
- every node's output bytes, the execution order and the peaks, on the onnx package's light
  models (Caffe2's zoo) and on every registered architecture's export (the heavy four with
  ARCHKIT_TEST_ALL_EXPORTS=1), and on resnet50, inception_v1 and densenet121 at batch 8.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import architectures
from archkit.costs.memory import ALIAS, IN_PLACE
from archkit.onnx.graph import free_dims
from archkit.runtime.memory import ARENA_BOUND, check_memory, feed, measure_memory
from tests.builders import light_model
from tests.exports import export_param

N = 1 << 16  # floats per probe tensor: 256 KiB, far above the arena's smallest blocks
LIGHT = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
         "vgg19", "zfnet512"]
COPYING = ["Neg", "Exp", "Sqrt", "Add", "Mul", "Dropout", "Transpose"]  # each output a buffer of its own


def _probes(ops, *, read_later: bool):
    """One chain per op, side by side: x → Abs → t → op → y → ReduceSum; with `read_later`, t is
    also read after the op (by a Mul with y), so that only an alias can share t's buffer. Each
    chain's tensors have a length of their own (N + 16·k floats): no chain reuses another's buffers."""
    nodes, inputs, outputs, inits = [], [], [], [numpy_helper.from_array(np.array([0], np.int64), "axes")]
    for k, op in enumerate(ops):
        n = N + 16 * k
        x, t, y, shape, ones = (f"{v}_{k}" for v in ("x", "t", "y", "shape", "ones"))
        inits += [numpy_helper.from_array(np.array([1, n], np.int64), shape),
                  numpy_helper.from_array(np.ones((1, n), np.float32), ones)]
        inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, n]))
        if op == "Squeeze":  # needs a unit axis to drop: t is [1, 1, n]
            nodes += [helper.make_node("Abs", [x], [f"a_{k}"]), helper.make_node("Unsqueeze", [f"a_{k}", "axes"], [t])]
        else:
            nodes.append(helper.make_node("Abs", [x], [t]))
        args = {"Reshape": [t, shape], "Squeeze": [t, "axes"], "Unsqueeze": [t, "axes"], "Add": [t, ones],
                "Mul": [t, ones]}.get(op, [t])
        attrs = {"Transpose": {"perm": [1, 0]}}.get(op, {})
        nodes.append(helper.make_node(op, args, [y], name=f"probe_{op}", **attrs))
        if read_later:
            nodes += [helper.make_node("Reshape", [y, shape], [f"y2_{k}"]),
                      helper.make_node("Reshape", [t, shape], [f"t2_{k}"]),
                      helper.make_node("Mul", [f"t2_{k}", f"y2_{k}"], [f"z_{k}"]),
                      helper.make_node("ReduceSum", [f"z_{k}"], [f"o_{k}"], keepdims=0)]
        else:
            nodes.append(helper.make_node("ReduceSum", [y], [f"o_{k}"], keepdims=0))
        outputs.append(helper.make_tensor_value_info(f"o_{k}", TensorProto.FLOAT, []))
    graph = helper.make_graph(nodes, "probes", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


PROBED = sorted(ALIAS | IN_PLACE) + COPYING


@pytest.mark.parametrize("read_later", [False, True])
def test_which_ops_share_their_input_buffer_is_onnxruntimes(read_later):
    model = _probes(PROBED, read_later=read_later)
    check = _checked(model)  # archkit's plan is onnxruntime's, step by step, with its ALIAS and IN_PLACE
    _, events = measure_memory(model, feed(model))
    held = {e["name"]: int(e["mem_bytes_requested_in_use"]) - check.offset[0] for e in events}
    for k, op in enumerate(PROBED):
        # after the op, its chain holds t and y: one buffer if y took t's, else two; with t read
        # later an in-place op cannot take it (two), an alias still shares it (one). (Besides them
        # the arena holds the 4-byte outputs of the chains run before.)
        shares = op in ALIAS or (op in IN_PLACE and not read_later)
        assert round(held[f"probe_{op}"] / (4 * (N + 16 * k)), 2) == (1 if shares else 2), op


def _checked(proto, batch: int = 1):
    return _agrees(check_memory(proto, feed(proto, {d: batch for d in free_dims(proto)})))


def _agrees(check):
    assert check.bytes_equal, check.mismatches[:3] or check.unmatched[:3]
    assert check.order_same, check.first_difference
    assert check.requested_ok, (check.requested_peak, check.planned_peak)
    assert check.arena_ok, (check.arena_peak, check.planned_peak, check.workspace)
    assert check.planned_peak >= check.live_peak  # the plan holds what is live, and the buffers it keeps for reuse
    return check


@pytest.mark.parametrize("name", LIGHT)
def test_light_models_memory_is_onnxruntimes(name):
    import onnx

    _checked(onnx.load(light_model(name)))


@pytest.mark.parametrize("name", [export_param(n) for n in architectures.names()])
def test_every_architectures_memory_is_onnxruntimes(arch_run, name):
    analysis, _ = arch_run(name)  # a verified export carries the check at batch 1
    check = _agrees(analysis.memory_check)
    assert check.ok and check.input_shapes == {k: (1, *v[1:]) for k, v in check.input_shapes.items()}


@pytest.mark.parametrize("name", ["inception_v2_module", "inception_v3_module_a", "inception_v3_module_b"])
def test_the_memory_aware_order_beats_the_files_on_inception_modules(arch_run, name):
    analysis, _ = arch_run(name)
    m = analysis.memory
    aware = m.schedules["memory-aware"].peak.bytes
    saved, fraction = m.saving()
    assert saved == m.schedules["file"].peak.bytes - aware > 0 and 0 < fraction < 1
    assert aware == min(s.peak.bytes for s in m.schedules.values())
    # no order goes below the Concat's step, which holds every branch's output and its own
    assert aware >= 2 * m.outputs


@pytest.mark.parametrize("name", ["resnet50", "inception_v1", "densenet121"])
def test_peak_within_the_bound_at_batch_8(arch_run, name):
    _, proto = arch_run(name)
    one, eight = _checked(proto, 1), _checked(proto, 8)
    # the tensors scale with the batch; the workspace (one image's im2col) does not
    assert eight.planned_peak == 8 * one.planned_peak
    assert eight.workspace == one.workspace
    lo, hi, extra = ARENA_BOUND
    assert lo <= eight.ratio and eight.arena_peak <= hi * (eight.planned_peak + eight.workspace) + extra


def test_a_profile_lists_every_node_in_execution_order():
    model = _probes(["Relu"], read_later=True)
    runtime, events = measure_memory(model, feed(model))
    assert runtime.startswith("onnxruntime ")
    # the depth-first walk back from the ReduceSum reaches the Mul, whose inputs it takes from the
    # last in file order: Reshape(t) (and so Abs) before the Relu
    assert [e["name"] for e in events] == ["Abs_0", "Reshape_3", "probe_Relu", "Reshape_2", "Mul_4", "ReduceSum_5"]
    assert [int(e["output_size"]) for e in events] == [4 * N, 4 * N, 4 * N, 4 * N, 4 * N, 4]
