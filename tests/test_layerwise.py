"""Layerwise parity (archkit.runtime.layerwise, archkit.keras.layerwise): axis orders from the
graph's own ops, taps and folded layers, the error figures against closed forms, and on real
exports every layer within its bound, and a planted fault found at its layer."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import architectures
from archkit.errors import ParityError
from archkit.runtime.layerwise import RefLayer, Tap, axis_orders, compare_layers, marked, taps
from archkit.runtime.parity import TOLERANCES, Verification, compare
from tests.exports import export_param

F = onnx.TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _nhwc_conv_model(c: int = 3, h: int = 5):
    """tf2onnx's pattern: an NHWC input transposed to NCHW, a Conv, transposed back."""
    w = numpy_helper.from_array(np.ones((4, c, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 3, 1])]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [2, h, h, c])],
                  [helper.make_tensor_value_info("y", F, [2, h, h, 4])], [w])


def test_transposes_compose_from_the_input():
    orders = axis_orders(_nhwc_conv_model(), {})
    assert orders["t"] == (0, 3, 1, 2)  # NCHW: the NHWC value transposed by (0, 3, 1, 2)
    assert orders["c"] == orders["r"] == (0, 3, 1, 2)  # a Conv and a Relu keep their input's order
    assert orders["y"] == (0, 1, 2, 3)  # back in the reference's


def test_square_maps_do_not_decide_the_order():
    # H = W = C: every axis has the same size, the order still follows the Transposes
    orders = axis_orders(_nhwc_conv_model(c=5, h=5), {})
    assert orders["t"] == (0, 3, 1, 2) and orders["y"] == (0, 1, 2, 3)


def test_a_reshape_that_moves_an_axis_of_one_is_a_transpose():
    # tf2onnx turns a one-channel NHWC image into NCHW with a Reshape
    shape = numpy_helper.from_array(np.array([2, 1, 6, 6], np.int64), "s")
    nodes = [helper.make_node("Reshape", ["x", "s"], ["t"]),
             helper.make_node("Relu", ["t"], ["y"])]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 6, 6, 1])],
               [helper.make_tensor_value_info("y", F, [2, 1, 6, 6])], [shape])
    assert axis_orders(m, {})["t"] == (0, 3, 1, 2)
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 1))
    assert np.array_equal(x.reshape(2, 1, 6, 6), np.transpose(x, (0, 3, 1, 2)))  # the rule's premise


def test_a_flatten_keeps_only_the_reference_order():
    shape = numpy_helper.from_array(np.array([2, -1], np.int64), "s")
    for first, expect in (([0, 1, 2, 3], (0, 1)), ([0, 3, 1, 2], None)):
        nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=first),
                 helper.make_node("Reshape", ["t", "s"], ["y"])]
        m = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 3, 4, 5])],
                   [helper.make_tensor_value_info("y", F, [2, 60])], [shape])
        assert axis_orders(m, {}).get("y") == expect  # channels-first flattened is another vector


def test_an_nchw_input_starts_transposed():
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    m = _model(nodes, [helper.make_tensor_value_info("x", F, [2, 3, 4, 4])],
               [helper.make_tensor_value_info("y", F, [2, 3, 4, 4])])
    assert axis_orders(m, {"x": (0, 3, 1, 2)})["y"] == (0, 3, 1, 2)


def test_a_batchnorm_with_no_tensor_is_compared_at_its_conv():
    m = _nhwc_conv_model()
    layer = {"t": "conv", "c": "conv", "r": "relu", "y": "relu"}.get
    refs = [RefLayer("conv", (None, 5, 5, 4), ("x",), 1), RefLayer("bn", (None, 5, 5, 4), ("conv",), 1),
            RefLayer("relu", (None, 5, 5, 4), ("bn",), 0)]
    found, skipped = taps(m, refs, layer, {})
    assert [(t.layer, t.tensor, t.folded) for t in found] == [("bn", "c", ("conv",)), ("relu", "y", ())]
    assert found[0].perm == (0, 3, 1, 2) and skipped == []
    # a layer with no tensor that reads two layers is not folded into either: it is not compared
    refs2 = [RefLayer("conv", (None, 5, 5, 4), ("x",), 1), RefLayer("add", (None, 5, 5, 4), ("conv", "x"), 1)]
    found, skipped = taps(m, refs2, layer, {})
    assert [t.layer for t in found] == ["conv"] and skipped[0][0] == "add" and skipped[0][1].startswith("no tensor of its own")


def test_a_tensor_of_other_dims_is_not_the_layers():
    m = _nhwc_conv_model()
    found, _ = taps(m, [RefLayer("relu", (None, 5, 5, 4), ("x",), 0)], lambda t: "relu", {})
    assert found[0].tensor == "y"  # r and y fit; y is the graph output
    found, skipped = taps(m, [RefLayer("relu", (None, 7, 7, 4), ("x",), 0)], lambda t: "relu", {})
    assert found == [] and skipped[0][0] == "relu"


def test_errors_against_closed_forms():
    rng = np.random.default_rng(3)
    want = rng.standard_normal((2, 3, 4, 5))
    tap = Tap("L", "t", (0, 3, 1, 2))
    got = np.transpose(want, (0, 3, 1, 2)).copy()
    got[1, 2, 0, 3] += 0.5  # one element off by 0.5
    e = compare_layers([tap], [{"t": got}], [{"L": want}], "fp32", output_diff=0.0).layers[0]
    scale = np.abs(want).max()
    assert e.max_abs == pytest.approx(0.5) and e.scale == pytest.approx(scale)
    g = np.transpose(got, (0, 2, 3, 1)).ravel()
    assert e.cosine == pytest.approx(g @ want.ravel() / np.linalg.norm(g) / np.linalg.norm(want))
    assert e.bound == pytest.approx(TOLERANCES["fp32"].atol + TOLERANCES["fp32"].rtol * scale) and not e.ok
    # opposite values: cosine -1; equal ones: 0 error, cosine 1
    e = compare_layers([Tap("L", "t", (0, 1))], [{"t": -want[:, :, 0, 0]}], [{"L": want[:, :, 0, 0]}], "fp32",
                       output_diff=0.0).layers[0]
    assert e.cosine == pytest.approx(-1.0)
    lw = compare_layers([Tap("L", "t", (0, 1))], [{"t": want[:, :, 0, 0]}], [{"L": want[:, :, 0, 0]}], "int8",
                        output_diff=0.0)
    assert lw.layers[0].max_abs == 0 and lw.layers[0].cosine == pytest.approx(1.0) and lw.ok and lw.same_outputs


def test_marked_copy_adds_outputs_and_leaves_the_model():
    m = _nhwc_conv_model()
    copy = marked(m, ["c", "y", "r"])
    assert [o.name for o in copy.graph.output] == ["y", "c", "r"]
    assert [o.name for o in m.graph.output] == ["y"]


def test_the_failure_message_says_where_it_drifts():
    want = np.eye(4, dtype=np.float32)
    v = Verification((compare("out", np.roll(want, 1, axis=1), want, 4, 0, "fp16"),), "onnxruntime", "fp16")
    with pytest.raises(ParityError, match="first layer over the tolerance: 'conv3'"):
        v.raise_for_failure("m", "first layer over the tolerance: 'conv3' (layer 3 of 9)")


# --- real exports ---------------------------------------------------------------------------

def _layerwise(name: str, **deploy):
    from archkit.deploy import DeployOptions
    from archkit.keras.layerwise import layerwise_keras
    from archkit.keras.pipeline import build_seeded, run_architecture

    a, proto = run_architecture(name, verify=False, deploy=DeployOptions(**deploy))
    _, _, model = build_seeded(name)
    return a, proto, model, layerwise_keras


@pytest.mark.parametrize("name,deploy", [
    ("baseline_cnn", {}), ("baseline_cnn", {"layout": "nchw"}), ("baseline_cnn", {"precision": "fp16"}),
    ("baseline_cnn", {"precision": "int8", "quantization": "dynamic"}), ("baseline_cnn", {"precision": "int8"}),
    ("inception_v3_module_a", {}), ("inception_v3_module_a", {"precision": "int8"}),
])
def test_every_layer_is_within_its_bound(name, deploy):
    a, proto, model, layerwise = _layerwise(name, **deploy)
    lw = layerwise(model, proto, a)
    keras_layers = [r for r in a.keras_layers if r["class"] != "InputLayer"]
    compared = {e.layer for e in lw.layers} | {f for e in lw.layers for f in e.folded}
    assert compared == {r["name"] for r in keras_layers}, lw.skipped  # every layer, itself or folded
    assert lw.ok, lw.where()
    # marked tensors keep onnxruntime from fusing across them: a lower precision's rounding then
    # differs a little from the deployed run's (said in the result, never hidden)
    assert lw.same_outputs or deploy.get("precision") in ("fp16", "int8"), lw.output_diff
    if name == "inception_v3_module_a" and not deploy:  # tf2onnx folds each BatchNorm into its Conv
        assert all(e.folded == (e.layer.replace("_bn", "_conv"),) for e in lw.layers if e.layer.endswith("_bn"))


def _planted(proto: onnx.ModelProto, a, which: float, seed: int = 1) -> tuple[onnx.ModelProto, str]:
    """A copy with one kernel (of a Conv, MatMul or Gemm, at `which` of the way through the file)
    perturbed, and the layer of the op reading it."""
    layer_of = {o.node: o.layer for o in a.costs.ops}
    kernels = [(n.input[1], layer_of[a.memory.maker(n.output[0])]) for n in proto.graph.node
               if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1]
    inits = {t.name for t in proto.graph.initializer}
    kernels = [k for k in kernels if k[0] in inits]
    name, layer = kernels[min(int(which * len(kernels)), len(kernels) - 1)]
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    t = next(t for t in copy.graph.initializer if t.name == name)
    w = numpy_helper.to_array(t)
    noise = np.random.default_rng(seed).standard_normal(w.shape)
    t.CopyFrom(numpy_helper.from_array((w + (0.1 * np.abs(w).max() + 0.01) * noise).astype(w.dtype), name))
    return copy, layer


PLANTED = ["baseline_cnn", "inception_v1_module"] + [
    export_param(n) for n in architectures.names() if n not in ("baseline_cnn", "inception_v1_module")]


@pytest.mark.parametrize("name", PLANTED)
def test_a_planted_fault_is_found_at_its_layer(name, request):
    from tests.exports import ALL_EXPORTS

    if name not in ("baseline_cnn", "inception_v1_module") and not ALL_EXPORTS:
        pytest.skip("set ARCHKIT_TEST_ALL_EXPORTS=1")
    a, proto, model, layerwise = _layerwise(name)
    for which in (0.0, 0.5, 1.0):
        faulty, layer = _planted(proto, a, which)
        d = layerwise(model, faulty, a, seeds=(0,)).first_drift
        assert d is not None and (d.layer == layer or layer in d.folded), (which, layer, d)


def _synthetic(precision: str, over: str | None = None):
    from archkit.runtime.layerwise import LayerError, Layerwise

    t = TOLERANCES[precision]
    layers = tuple(LayerError(name, f"{name}:0", i, (10.0 if name == over else 0.0), 2.0, 1.0, t.atol + 2 * t.rtol,
                              ("conv",) if name == "bn" else ())
                   for i, name in enumerate(("bn", "relu", "dense"), 1))
    return Layerwise(precision, layers, precision == "fp32", 0.0 if precision == "fp32" else 1e-4)


def test_the_report_section_holds_verdicts_not_errors():
    from archkit.render.report import layerwise_chart, layerwise_section, layerwise_summary

    forms = {"fp32": _synthetic("fp32"), "int8 static": _synthetic("int8", over="relu")}
    text = "\n".join(layerwise_section(forms, measured=False))
    assert "| 1 | bn | conv | ok | ok |" in text and "| 2 | relu |  | ok | **over** |" in text
    assert "the first layer over the allowance is `relu`** (layer 2 of 3)" in text
    assert "10" not in text.replace("1e-", "")  # no measured error in a committed report
    assert "max rel" in "\n".join(layerwise_section(forms, measured=True))
    s = layerwise_summary(forms)
    assert s["int8 static"]["first_over"] == "relu" and s["fp32"]["ok"] and not s["int8 static"]["ok"]
    assert layerwise_chart(forms, "m").startswith(b"\x89PNG")


def test_layers_is_for_a_registered_architecture(tmp_path, capsys):
    from archkit.cli import main

    m = _nhwc_conv_model()
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    assert main(["verify", str(path), "--layers"]) == 2
    assert "--layers compares a registered architecture's Keras layers" in capsys.readouterr().err


def test_a_failing_int8_export_says_where_it_drifts(monkeypatch, capsys):
    """With int8 held to float32's allowance, baseline_cnn's int8 export fails, and the error
    names the first layer, found without --layers."""
    from archkit.cli import main
    from archkit.runtime import parity

    monkeypatch.setitem(parity.TOLERANCES, "int8", parity.TOLERANCES["fp32"])
    code = main(["verify", "baseline_cnn", "--precision", "int8", "--seeds", "1", "--batch-sizes", "1"])
    err = capsys.readouterr().err
    assert code == ParityError.exit_code, err
    assert "first layer over the tolerance: 'conv2d_1' (layer 1 of 6" in err
