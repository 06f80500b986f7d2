"""Costs as formulas in a file's free dims (archkit.onnx.symbolic, archkit.onnx.symbolic_shapes).

Each formula is checked against a closed form written here, and against archkit's integer
analysis with the free dims fixed (onnx's own inference on concrete shapes) at several values,
odd ones included: a stride divides a free dim only where floors say so.
"""

from __future__ import annotations

import json
import time

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from archkit.costs import analyse
from archkit.onnx.graph import build_graph
from archkit.onnx.symbolic import Expr, TooLarge, exact_div, pretty, symbol, value
from tests import builders
from tests.builders import (
    crnn,
    crnn_macs,
    light_model,
    resnet,
    small_cnn,
    vad_stft,
    vit,
    vit_macs,
    yolo_head,
    yolo_head_macs,
)

N, H, W = symbol("N"), symbol("height"), symbol("width")


def _free_hw(m: onnx.ModelProto) -> onnx.ModelProto:
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for axis, name in ((2, "height"), (3, "width")):
        dims[axis].Clear()
        dims[axis].dim_param = name
    return m


def _costs(m, **shapes):
    return analyse(build_graph(m, input_shapes=shapes or None))


# --- the algebra ---------------------------------------------------------------------------------

def test_floors_have_one_canonical_form():
    # ⌊(H − 1)/2⌋ + 1 (a 3x3 conv, stride 2, pad 1) is ⌊(H + 1)/2⌋; strides in a row make one floor
    assert (H - 1) // 2 + 1 == (H + 1) // 2
    assert ((H + 1) // 2 + 1) // 2 == (H + 3) // 4
    assert str((H + 1) // 2) == "floor((height+1)/2)" and pretty((H + 1) // 2) == "⌊(height + 1)/2⌋"
    assert (4 * N + 6) // 2 == 2 * N + 3 and (2 * N) % 2 == 0
    assert (H + 2) // 2 - H // 2 == 1  # the constant term leaves the floor
    for h in range(1, 70):
        assert value(((H - 1) // 2 + 1 - 3) // 2 + 1, {"height": h}) == ((h - 1) // 2 + 1 - 3) // 2 + 1


def test_exact_division_and_the_size_bound():
    assert exact_div(768 * N * H, N * H) == 768
    assert exact_div(768 * N + 768 * H, N + H) == 768
    assert exact_div(5 * N, 2) is None and exact_div(N * H + 1, N) is None
    x = N
    with pytest.raises(TooLarge):  # a file can square a dim thirty times: the formula stays small
        for _ in range(30):
            x = x * x
    with pytest.raises(TypeError):
        _ = N < 3  # a formula has no order: a rule that compares dims gives no formula
    assert pretty(4_089_184_256 * N) == "4,089,184,256·N" and pretty(3 * H * H - 2 * W + 5) == "3·height² − 2·width + 5"


# --- files: closed forms and the integer analysis --------------------------------------------------

def test_vit_b16_with_a_free_batch_costs_17_564_gmacs_per_sample():
    """shared/REFERENCES.md: torchvision's ViT-B/16, 17.564 GMACs. Every reshape target of the
    attention is computed from the batch (Shape → Gather → Unsqueeze → Concat): a formula in N."""
    c = _costs(vit())
    assert c.complete and c.formulas is not None, c.no_formulas
    assert c.formulas["macs"] == vit_macs() * N == 17_563_828_224 * N
    assert c.formulas["params"] == 86_567_656
    assert value(c.formulas["flops"], {"N": 1}) == c.total()["flops"]


def test_resnet50_as_torch_onnx_writes_it():
    c = _costs(resnet(50))
    assert c.formulas["macs"] == 4_089_184_256 * N  # torchvision: 4.09 GMACs


@pytest.mark.parametrize("size", [(224, 224), (256, 320), (193, 255), (97, 31)])
def test_resnet50_with_free_height_and_width_equals_the_integer_analysis(size):
    m = _free_hw(resnet(50))
    f = _costs(m).formulas
    assert f is not None
    h, w = size
    fixed = _costs(m, N=2, height=h, width=w)
    assert fixed.complete and fixed.formulas is None
    assert value(f["macs"], {"N": 2, "height": h, "width": w}) == fixed.total()["macs"]
    assert value(f["flops"], {"N": 2, "height": h, "width": w}) == fixed.total()["flops"]
    if size == (224, 224):
        assert value(f["macs"], {"N": 1, "height": h, "width": w}) == 4_089_184_256


def test_one_strided_conv_closed_form():
    """Conv 3→8, 3x3, stride 2, pad 1 over [N, 3, height, width]: 216 MACs per output element."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "height", "width"])
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    pool = helper.make_node("MaxPool", ["y"], ["z"], kernel_shape=[2, 2], strides=[2, 2], name="pool")
    c = _costs(builders.model([helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1], name="c"),
                               pool], [x], ["z"], [w]))
    ho, wo = (H + 1) // 2, (W + 1) // 2
    assert c.formulas["macs"] == 216 * N * ho * wo
    assert c.formulas["flops"] == 8 * 4 * N * (ho // 2) * (wo // 2)  # the pool: 4 per output element


@pytest.mark.parametrize("width", [1, 64, 101])
def test_crnn_lstm_over_a_free_sequence(width):
    f = _costs(crnn()).formulas
    assert f["macs"] == 129_984 * N * (W // 2) + 18_432 * N * W  # conv 64·9·32·width, LSTM and FC per step
    assert value(f["macs"], {"N": 1, "width": width}) == crnn_macs(width)


def test_yolo_head_with_free_map_sizes():
    """The three feature maps' heights and widths free (h3, w3, ..., w5): anchors come from each
    map's Shape at run time (Range, Expand), and the head's Concat of the three scales sums them."""
    m = yolo_head()
    for i in m.graph.input:
        dims = i.type.tensor_type.shape.dim
        for axis, tag in ((2, "h"), (3, "w")):
            dims[axis].Clear()
            dims[axis].dim_param = f"{tag}{i.name[1]}"
    c = _costs(m)
    assert c.formulas is not None, c.no_formulas
    sizes = {"N": 1, "h3": 80, "w3": 80, "h4": 40, "w4": 40, "h5": 20, "w5": 20}
    assert value(c.formulas["macs"], sizes) == yolo_head_macs() == 103_756_800
    # per cell: the box and class 1x1 convs (64 + 80 outputs × the map's width) and the DFL conv (4 × 16)
    cells = {k: symbol(f"h{k}") * symbol(f"w{k}") for k in (3, 4, 5)}
    assert c.formulas["macs"] == N * sum(144 * width * cells[k] + 64 * cells[k]
                                         for k, width in ((3, 64), (4, 128), (5, 256)))
    odd = {"N": 3, "h3": 48, "w3": 64, "h4": 24, "w4": 32, "h5": 12, "w5": 16}
    assert value(c.formulas["macs"], odd) == _costs(m, **odd).total()["macs"]


def test_paddle_dim_names_and_minus_one_dims():
    """Paddle2ONNX: `-1` on an input read as a free dim named `x:0`; `p2o.DynamicDimension.0` elsewhere."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["p2o.DynamicDimension.0", 3, 32, "p2o.DynamicDimension.1"])
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    c = _costs(builders.model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv2d_0.tmp_0")], [x], ["y"], [w],
                              opset=11, name="paddle"))
    d0, d1 = symbol("p2o.DynamicDimension.0"), symbol("p2o.DynamicDimension.1")
    assert c.formulas["macs"] == 8 * 27 * 30 * d0 * (d1 - 2)
    assert pretty(c.formulas["macs"]) == "6,480·p2o.DynamicDimension.0·p2o.DynamicDimension.1 − 12,960·p2o.DynamicDimension.0"


def test_two_free_dims_meeting_in_a_broadcast_are_taken_as_equal_with_a_warning(tmp_path, capsys):
    """The policy (README, "Free dimensions"): a broadcast of two different non-1 dims runs only
    where they are equal, so they are taken as equal, the simpler kept, and a warning names them."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", "rows"])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", "cols"])
    w = numpy_helper.from_array(np.ones((1, 5), np.float32), "w")
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("Unsqueeze", ["s", "ax"], ["s2"], name="u"),
             helper.make_node("MatMul", ["s2", "w"], ["y"], name="mm")]
    ax = numpy_helper.from_array(np.array([-1], np.int64), "ax")
    m = builders.model(nodes, [a, b], ["y"], [w, ax])
    G = build_graph(m)
    c = analyse(G)
    assert c.formulas["macs"] == 5 * N * symbol("cols")  # "cols" sorts before "rows": the one kept
    assert any("taken as equal" in w and "rows" in w and "cols" in w for w in c.formula_warnings)
    from archkit.cli import main

    path = tmp_path / "two.onnx"
    onnx.save(m, path)
    assert main(["analyse", str(path)]) == 0
    assert "rows and cols (kept cols)" in capsys.readouterr().err


def test_a_dim_squared_thirty_times_stays_bounded():
    """Shape → Mul(s, s) thirty times → Reshape: the formula would have degree 2^30; it goes over
    the bound, so there is no formula, and the costs are per sample, at once."""
    r = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    nodes = [helper.make_node("Shape", ["x"], ["s0"])]
    for k in range(30):
        nodes.append(helper.make_node("Mul", [f"s{k}", f"s{k}"], [f"s{k + 1}"]))
    nodes += [helper.make_node("ConstantOfShape", ["s30"], ["big"]),
              helper.make_node("Relu", ["big"], ["y"], name="relu")]
    m = builders.model(nodes, {"x": ["N"]}, ["y"], [r("unused", 0)])
    start = time.perf_counter()
    c = _costs(m)
    assert time.perf_counter() - start < 30
    assert c.formulas is None and c.no_formulas
    assert c.total()["flops"] == 31 and c.complete  # per sample (N = 1): 30 Muls of one element, a Relu of 1^(2^30) = 1


def test_all_dims_fixed_takes_the_integer_path():
    c = _costs(resnet(18), N=4)
    assert c.formulas is None and c.no_formulas is None and not c.fixed_dims
    assert c.total()["macs"] == 4 * 1_814_073_344  # torchvision: 1.81 GMACs


def test_formula_terms_are_integers_only():
    f = _costs(crnn()).formulas
    assert isinstance(f["macs"], Expr)
    assert all(isinstance(c, int) for _, c in f["macs"].terms)


# --- the command ----------------------------------------------------------------------------------

def test_analyse_prints_the_formula_beside_the_number(tmp_path, capsys):
    from archkit.cli import main

    path = tmp_path / "crnn.onnx"
    onnx.save(crnn(), path)
    assert main(["analyse", str(path)]) == 0
    out = capsys.readouterr().out
    assert "- MACs per sample: 18,432" in out  # width = 1 (no LSTM step), N = 1
    assert "- MACs = 129,984·N·⌊width/2⌋ + 18,432·N·width" in out
    assert main(["analyse", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["formulas"]["macs"] == "129,984·N·⌊width/2⌋ + 18,432·N·width" and doc["no_formulas"] is None
    assert main(["analyse", str(path), "--input-shape", "N=2", "--input-shape", "width=100", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["formulas"] is None and doc["total"]["macs"] == 2 * crnn_macs(100)


def test_the_readme_shows_what_archkit_prints():
    from pathlib import Path

    from archkit.onnx.symbolic import pretty as show

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for model in (vit(), crnn()):
        assert f"- MACs = {show(_costs(model).formulas['macs'])}\n" in readme
    f = _costs(_free_hw(resnet(50))).formulas["macs"]
    terms = [show(Expr.make({m: c})) for m, c in f.terms]
    assert f"- MACs = {terms[0]} + {terms[1]} + … + {terms[-1]}\n" in readme


@pytest.mark.parametrize("sr,filters,kernel", [(16000, 258, 256), (8000, 130, 128)])
def test_an_if_on_a_scalar_input_counts_the_taken_branch_formula(sr, filters, kernel):
    """The voice-activity pattern (tests/builders.py, vad_stft): the STFT conv over `samples` free, in
    the branch `--input-value sr=...` selects: filters·kernel·(⌊(samples − kernel)/(kernel/2)⌋ + 1)."""
    c = analyse(build_graph(vad_stft(), input_values={"sr": (sr,)}))
    samples = symbol("samples")
    assert c.formulas["macs"] == filters * kernel * ((samples - kernel) // (kernel // 2) + 1)
    for n in (1024, 16000, 16001):
        fixed = analyse(build_graph(vad_stft(), input_shapes={"samples": n}, input_values={"sr": (sr,)}))
        assert value(c.formulas["macs"], {"samples": n}) == fixed.total()["macs"]


@pytest.mark.parametrize("kernel,stride,pads", [(3, 2, 0), (2, 2, 0), (3, 2, 1)])
def test_ceil_mode_pooling_over_a_free_dim(kernel, stride, pads):
    """GoogLeNet's pools (ceil_mode=1, torchvision): ⌈(x − k)/s⌉ + 1 when no window can start in
    the right padding; otherwise there is no formula (per sample, as before)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, "height", 9])
    pool = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[kernel, kernel], strides=[stride, stride],
                            pads=[pads] * 4, ceil_mode=1, name="pool")
    relu = helper.make_node("Relu", ["y"], ["z"], name="relu")
    m = builders.model([pool, relu], [x], ["z"])
    c = _costs(m)
    if pads:
        assert c.formulas is None and c.no_formulas
        return
    for h in range(kernel, 40):
        fixed = _costs(m, height=h)
        assert value(c.formulas["flops"], {"N": 1, "height": h}) == fixed.total()["flops"], h


def test_a_symbolic_value_that_doubles_until_it_is_large_is_not_followed():
    """Concat(s, s) twelve times over a Shape in N: 4,096 formulas, over the engine's bound on a
    value followed in free dims (1,024); the build falls back to N = 1, within seconds."""
    r = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    nodes = [helper.make_node("Shape", ["x"], ["s0"])]
    for k in range(12):
        nodes.append(helper.make_node("Concat", [f"s{k}", f"s{k}"], [f"s{k + 1}"], axis=0))
    nodes += [helper.make_node("ConstantOfShape", ["s12"], ["big"]), helper.make_node("Relu", ["big"], ["y"], name="relu")]
    m = builders.model(nodes, {"x": ["N"]}, ["y"], [r("unused", 0)])
    start = time.perf_counter()
    G = build_graph(m)
    assert time.perf_counter() - start < 30
    y = next(d for _, d in G.nodes(data=True) if d.kind == "output").tensor
    assert y.shape == (1,) * 4096 and G.graph["formulas"] is None


@pytest.mark.parametrize("name", ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                                  "squeezenet", "vgg19", "zfnet512", "shufflenet"])
def test_the_onnx_packages_caffe2_models_with_a_free_batch(name, tmp_path):
    """Files no one here wrote, their input's batch declared free: the formula at N = 1 is the
    independent recount (shared/REFERENCES.md). Caffe2's exports reshape to targets holding a
    batch of 1 (`Reshape(x, [1, 2048])` before the classifier; ShuffleNet's channel shuffle):
    they run at N = 1 only, so the dims meeting there are taken as equal and a warning says so;
    the convs before scale with N, the classifier after does not."""
    from archkit.analysis import analyse_file
    from tests.test_analyse import LIGHT_MACS

    m = onnx.load(str(light_model(name)), load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    for i in m.graph.input:
        if i.name not in inits:
            dims = i.type.tensor_type.shape.dim
            dims[0].Clear()
            dims[0].dim_param = "N"
    path = tmp_path / f"{name}.onnx"
    onnx.save(m, str(path))
    a = analyse_file(path)
    f = a.costs.formulas["macs"]
    assert a.costs.complete and a.costs.total()["macs"] == LIGHT_MACS[name] == value(f, {"N": 1})
    warned = [w for w in a.warnings if "taken as equal" in w]
    if name == "shufflenet":
        assert warned and "351,232·N and 351,232" in warned[0]
        return
    fc = sum(o.macs for o in a.costs.ops if o.op_type == "Gemm")
    if warned:  # the classifier reads a [1, features] reshape: it does not scale
        assert f == (LIGHT_MACS[name] - fc) * N + fc
    else:
        assert f == LIGHT_MACS[name] * N


def test_shape_functions_refuse_dims_onnx_cannot_hold(tmp_path, capsys):
    """Found by benchmarks/fuzz_analyse.py: a Conv pad of 2^63 − 1 over a batch left free makes
    a dim over int64; a float slice bound gave a float dim. Such dims stay unknown: no internal
    error, and the costs say what is unknown."""
    from archkit.cli import main

    m = small_cnn()
    conv = m.graph.node[0]
    del conv.attribute[:]
    conv.attribute.append(helper.make_attribute("pads", [1, 1, 2**63 - 1, 1]))
    path = tmp_path / "pad.onnx"
    onnx.save(m, str(path))
    assert main(["analyse", str(path)]) == 0
    assert "cost unknown" in capsys.readouterr().out

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "width"])
    inits = [numpy_helper.from_array(np.array([0.5], np.float32), "s"), numpy_helper.from_array(np.array([4], np.int64), "e"),
             numpy_helper.from_array(np.array([2], np.int64), "ax")]
    nodes = [helper.make_node("Cast", ["s"], ["si"], to=TensorProto.FLOAT), helper.make_node("Slice", ["x", "si", "e", "ax"], ["y"]),
             helper.make_node("Relu", ["y"], ["z"], name="relu")]
    path = tmp_path / "slice.onnx"
    onnx.save(builders.model(nodes, [x], ["z"], inits), path)
    assert main(["analyse", str(path)]) in (0, 4)


@pytest.mark.parametrize("op, k", [("Div", [1.5]), ("Max", [1.5, 2.5, 3.5, 4.5]), ("Min", [2.0, 2.5, 3.0, 0.5]),
                                   ("Equal", [1.5, 2.5, 8.0, 8.0])])
def test_a_fraction_meeting_a_formula_gives_no_value(op, k):
    """A float value (a constant 1.5) meets a free dim in shape arithmetic (Shape → Cast → Div →
    Cast → Reshape): an Expr has integer coefficients, so the element is unknown, the build
    falls back to the free dims set to 1, and nothing raises (it was an AttributeError)."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["c"], to=TensorProto.FLOAT),
             helper.make_node(op, ["c", "k"], ["d"]), helper.make_node("Cast", ["d"], ["e"], to=TensorProto.INT64),
             helper.make_node("Reshape", ["x", "e"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array(k, np.float32), "k")])
    G = build_graph(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert G.graph["formulas"] is None and G.graph["no_formulas"]
