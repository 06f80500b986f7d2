"""`archkit analyse`: any ONNX file, exact costs (issue 5). Files are built with onnx.helper in the
patterns other exporters emit; no other framework is needed."""

from __future__ import annotations

import json
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from archkit.analysis import analyse_file, analyse_model
from archkit.costs import analyse
from archkit.onnx.graph import build_graph
from tests import builders
from tests.builders import encoder_block, encoder_macs, external, light_model, one_node, png_size, resnet, w

# --- torchvision's published figures, from files in PyTorch's export pattern -----------------

# shared/REFERENCES.md: [tv] GMACs and num_params (BatchNorm statistics are buffers, not parameters).
TORCHVISION = {18: ("1.814", 11_689_512), 50: ("4.089", 25_557_032)}


@pytest.mark.parametrize("depth", sorted(TORCHVISION))
def test_pytorch_resnet_reproduces_torchvision(depth):
    gmacs, num_params = TORCHVISION[depth]
    a = analyse_model(resnet(depth))
    t = a.costs.total()
    assert f"{t['macs'] / 1e9:.3f}" == gmacs
    assert t["params"] - t["stats"] == num_params
    assert a.costs.complete and a.costs.per_sample
    assert a.costs.fixed_dims == {"input": {0: "N"}}
    # BN statistics apart: running mean + variance of every BatchNormalization
    bn = [o for o in a.costs.ops if o.op_type == "BatchNormalization"]
    assert t["stats"] == sum(o.stats for o in bn) == sum(o.params for o in bn) // 2
    # MACs only from Conv and Gemm; the classifier is Gemm(transB=1) after Flatten
    assert {o.op_type for o in a.costs.ops if o.macs} == {"Conv", "Gemm"}
    fc = next(o for o in a.costs.ops if o.op_type == "Gemm")
    assert (fc.layer, fc.macs) == ("fc", (512 if depth < 50 else 2048) * 1000)


def test_pytorch_resnet50_exact_counts_and_rollup():
    a = analyse_model(resnet(50))
    assert a.costs.total()["macs"] == 4_089_184_256
    blocks = a.costs.by_block()
    names = list(blocks.block)
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert [b for b in names if b.startswith("layer")] == [f"layer{l}.{b}" for l, n in zip((1, 2, 3, 4), (3, 4, 6, 3))
                                                           for b in range(n)]
    layers = set(a.costs.by_layer().layer)
    assert {"layer1.0.conv1", "layer1.0.downsample.0", "layer1.0.downsample.1", "layer4.2.bn3", "fc"} <= layers
    assert blocks.macs.sum() == a.costs.by_layer().macs.sum() == a.costs.total()["macs"]


def test_batch_fixed_by_input_shape_and_by_dim_name():
    m = resnet(18)
    per_sample = analyse_model(m).costs.total()["macs"]
    by_input = analyse_model(m, input_shapes={"input": (8, 3, 224, 224)}).costs
    by_name = analyse_model(m, input_shapes={"N": (8,)}).costs
    assert by_input.total()["macs"] == by_name.total()["macs"] == 8 * per_sample
    assert not by_input.per_sample and not by_name.per_sample


def test_attention_block_closed_form():
    a = analyse_model(encoder_block())
    t = a.costs.total()
    assert t["macs"] == encoder_macs() == 819_200
    assert a.costs.complete
    by_layer = a.costs.by_layer().set_index("layer")
    # Q·Kᵀ and the weighted sum: 2·S²·D, in the attention module itself
    assert by_layer.loc["encoder.layers.0.self_attn", "macs"] == 2 * 16 * 16 * 64
    assert by_layer.loc["encoder.layers.0.linear1", "macs"] == 16 * 64 * 256
    softmax = next(o for o in a.costs.ops if o.op_type == "Softmax")
    assert (softmax.flops, softmax.output_shape) == (3 * 4 * 16 * 16, "1x4x16x16")


@pytest.mark.parametrize("seq,dim,heads", [(7, 48, 3), (32, 128, 8)])
def test_attention_scales_as_the_formula(seq, dim, heads):
    a = analyse_model(encoder_block(seq=seq, dim=dim, heads=heads))
    assert a.costs.total()["macs"] == encoder_macs(seq=seq, dim=dim, heads=heads)


def _div_reshape_model():
    """Reshape target computed with Div from Shape: onnx's own inference gives up on it."""
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i2"], ["d2"], axis=0),
             helper.make_node("Div", ["d2", "two"], ["half"]),
             helper.make_node("Concat", ["one", "minus1", "half"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["r"], name="m/Reshape"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="m/MatMul")]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
             [("i2", [2]), ("two", [2]), ("one", [1]), ("minus1", [-1])]] + [numpy_helper.from_array(w(32, 5), "w")]
    return builders.model(nodes, {"x": ["N", 4, 64]}, inits=inits)


def test_shape_engine_folds_what_onnx_leaves_unknown():
    """onnx's value propagation knows no Div; archkit's engine evaluates the shape arithmetic
    (onnxruntime's symbolic inference, the last resort, is not needed)."""
    m = _div_reshape_model()
    G = build_graph(m, symbolic=False)
    assert G.graph["shape_inference"] == "onnx+archkit"
    strong = analyse(G)
    mm = next(o for o in strong.ops if o.op_type == "MatMul")
    assert (mm.status, mm.macs, mm.output_shape) == ("counted", 8 * 5 * 32, "1x8x5")
    assert strong.complete


def test_unknown_shapes_are_listed_and_totals_are_lower_bounds():
    nodes = [helper.make_node("Mystery", ["x"], ["h"], name="a/Mystery", domain="com.example"),
             helper.make_node("Conv", ["h", "w"], ["y"], name="b/Conv")]
    m = builders.model(nodes, {"x": [1, 3, 8, 8]}, ["y"], [builders.tensor("w", w(4, 3, 3, 3))],
                       opsets=[helper.make_opsetid("com.example", 1)])
    report = analyse(build_graph(m))
    assert [o.status for o in report.ops] == ["unsupported", "unknown"]
    assert report.unknown == ("b/Conv",) and report.unsupported == ("com.example::Mystery",)
    assert not report.complete
    assert report.ops[1].params == 4 * 3 * 3 * 3  # its weights are still counted


# --- subgraphs --------------------------------------------------------------------------------

def _loop_model():
    B, I64, value = TensorProto.BOOL, TensorProto.INT64, builders.value
    body = builders.graph(
        [helper.make_node("MatMul", ["h", "wl"], ["h2"], name="step/MatMul"),
         helper.make_node("Relu", ["h2"], ["h3"], name="step/Relu"),
         helper.make_node("Identity", ["cond"], ["cond_out"], name="step/cond")],
        [value("i", [], I64), value("cond", [], B), value("h", [2, 8])], [value("cond_out", [], B), value("h3", [2, 8])],
        name="body")
    # onnx infers no shape for a Loop's carried outputs (they may change across iterations):
    # the branches use the Loop's input, ordered after the Loop through `y`'s Identity.
    then_b = builders.graph([helper.make_node("MatMul", ["h0", "wt"], ["t"], name="then/MatMul"),
                             helper.make_node("Identity", ["y"], ["yt"], name="then/Identity")], [], {"t": [2, 3]},
                            name="then")
    else_b = builders.graph([helper.make_node("MatMul", ["h0", "we"], ["t"], name="else/MatMul"),
                             helper.make_node("Identity", ["y"], ["yt"], name="else/Identity")], [], {"t": [2, 3]},
                            name="else")
    nodes = [helper.make_node("MatMul", ["x", "w0"], ["h0"], name="pre/MatMul"),
             helper.make_node("Loop", ["trips", "", "h0"], ["y"], name="loop", body=body),
             helper.make_node("If", ["flag"], ["z"], name="branch", then_branch=then_b, else_branch=else_b)]
    inits = [builders.tensor(n, w(*shape)) for n, shape in (("w0", (4, 8)), ("wl", (8, 8)), ("wt", (8, 3)), ("we", (8, 3)))]
    inits.append(builders.tensor("trips", 5, np.int64))
    return builders.model(nodes, [value("x", [2, 4]), value("flag", [], B)], ["z"], inits)


def test_subgraphs_are_walked_and_loop_bodies_flagged_per_iteration():
    G = build_graph(_loop_model())
    report = analyse(G)
    ops = {o.node: o for o in report.ops}
    body = ops["loop/body/step/MatMul"]
    assert (body.macs, body.context) == (2 * 8 * 8, "per iteration of loop (body)")
    assert ops["loop/body/step/Relu"].flops == 16
    # two branches of the same cost: the first counts, the other is shown, not summed
    assert ops["branch/then_branch/then/MatMul"].context == "branch then_branch of branch (counted: the same cost, " \
                                                            "the first branch)"
    assert ops["branch/then_branch/then/MatMul"].summed and not ops["branch/else_branch/else/MatMul"].summed
    assert ops["branch/else_branch/else/MatMul"].macs == 2 * 8 * 3
    assert ops["loop"].status == "free" and ops["branch"].status == "free"
    assert report.per_iteration == ("loop",)
    assert report.subgraphs == {"loop": "per iteration", "branch": "branches"}
    # the body runs before its Loop node is done; its weights are parameters of the model
    order = [o.node for o in report.ops]
    assert order.index("loop/body/step/MatMul") < order.index("loop") < order.index("branch")
    assert G.has_edge("loop/body/step/Relu", "loop") and G.has_edge("loop", "branch/then_branch/then/Identity")
    assert report.total()["params"] == 4 * 8 + 8 * 8 + 8 * 3
    assert report.total()["macs"] == 2 * 4 * 8 + 2 * 8 * 8 + 2 * 8 * 3
    assert {"context", "summed"} <= set(report.to_frame().columns)


def test_context_column_only_when_there_are_subgraphs():
    report = analyse(build_graph(one_node("Relu", {"x": [2, 3]}, None)))
    assert list(report.to_frame().columns) == ["node", "op_type", "domain", "layer", "block", "output_shape", "macs",
                                                "flops", "params", "kernel_weights", "output_bytes", "weight_bytes",
                                                "status"]


# --- parameters -----------------------------------------------------------------------------

def test_parameters_kinds():
    q = {"x": np.zeros((1, 4, 6, 6), np.uint8), "xs": np.array(0.5, np.float32), "xz": np.array(0, np.uint8),
         "w": np.zeros((5, 4, 3, 3), np.int8), "ws": np.array(0.5, np.float32), "wz": np.array(0, np.int8),
         "ys": np.array(0.5, np.float32), "yz": np.array(0, np.uint8), "b": np.zeros(5, np.int32)}
    op = analyse(build_graph(one_node("QLinearConv", {}, None, weights=q))).ops[0]
    # int8 kernel and int32 bias are parameters; scales and zero points too (floats, int8)
    assert op.kernel_weights == 5 * 4 * 3 * 3
    assert op.params == 1 * 4 * 6 * 6 + 5 * 4 * 3 * 3 + 5 + 6


def test_constant_node_weights_count_but_scalars_do_not():
    nodes = [helper.make_node("Constant", [], ["wc"], name="c/Constant", value=numpy_helper.from_array(w(4, 3))),
             helper.make_node("Constant", [], ["half"], name="h/Constant", value=numpy_helper.from_array(np.array(0.5, np.float32))),
             helper.make_node("MatMul", ["x", "wc"], ["y"], name="c/MatMul"),
             helper.make_node("Mul", ["y", "half"], ["z"], name="c/Mul")]
    report = analyse(build_graph(builders.model(nodes, {"x": [2, 4]})))
    assert report.total()["params"] == 12
    assert report.total()["macs"] == 2 * 3 * 4


def test_bn_statistics_apart_from_weights():
    bn = one_node("BatchNormalization", {"x": [1, 6, 4, 4]}, None, weights={"s": w(6), "b": w(6), "m": w(6), "v": w(6)})
    op = analyse(build_graph(bn)).ops[0]
    assert (op.params, op.stats, op.kernel_weights) == (24, 12, 0)
    assert "stats" in analyse(build_graph(bn)).by_layer().columns


# --- external data: never read ----------------------------------------------------------------

def test_external_weights_over_2gb_are_never_read(tmp_path):
    # a 40000 x 20000 float kernel: 3.2 GB declared in a file that does not exist
    k = external("fc.weight", (40_000, 20_000), location="missing.bin")
    m = one_node("Gemm", {"x": ["N", 20_000]}, None, transB=1)
    m.graph.node[0].input.append("fc.weight")
    m.graph.initializer.append(k)
    path = tmp_path / "big.onnx"
    path.write_bytes(m.SerializeToString())
    a = analyse_file(path)
    t = a.costs.total()
    assert (t["params"], t["macs"]) == (800_000_000, 800_000_000)
    assert not (tmp_path / "missing.bin").exists()


# --- names of third-party files -------------------------------------------------------------

def test_tf2onnx_names_roll_up_into_keras_layers_and_blocks():
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="model/conv2_block1_1_conv/Conv2D"),
             helper.make_node("Relu", ["a"], ["b"], name="model/conv2_block1_1_relu/Relu"),
             helper.make_node("Conv", ["b", "w2"], ["c"], name="model/conv2_block1_2_conv/Conv2D"),
             helper.make_node("Add", ["c", "x"], ["d"], name="model/conv2_block1_add/add"),
             helper.make_node("Relu", ["d"], ["e"], name="model/conv2_block2_out/Relu")]
    inits = [numpy_helper.from_array(w(4, 4, 1, 1), "w1"), numpy_helper.from_array(w(4, 4, 1, 1), "w2")]
    report = analyse(build_graph(builders.model(nodes, {"x": [1, 4, 5, 5]}, inits=inits)))
    assert list(report.by_block().block) == ["model/conv2_block1", "model/conv2_block2"]
    assert list(report.by_layer().layer)[:2] == ["model/conv2_block1_1_conv", "model/conv2_block1_1_relu"]


def test_unscoped_names_are_their_own_layers():
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="Relu_0"), helper.make_node("Neg", ["a"], ["b"], name="Neg_1")]
    report = analyse(build_graph(builders.model(nodes, {"x": [2, 2]})))
    assert [o.layer for o in report.ops] == ["Relu_0", "Neg_1"]


# --- the graph ------------------------------------------------------------------------------

def test_unsorted_file_is_ordered_topologically_and_cycles_are_refused():
    from archkit.errors import MalformedModelError

    nodes = [helper.make_node("Neg", ["a"], ["b"], name="second"), helper.make_node("Relu", ["x"], ["a"], name="first")]
    G = build_graph(builders.model(nodes, {"x": [2, 2]}, outputs=["b"]))
    assert G.graph["op_order"] == ("first", "second")
    assert [o.node for o in analyse(G).ops] == ["first", "second"]
    cyc = [helper.make_node("Relu", ["b"], ["a"], name="p"), helper.make_node("Neg", ["a"], ["b"], name="q")]
    with pytest.raises(MalformedModelError, match="cycle"):
        build_graph(builders.model(cyc, {"x": [2, 2]}, outputs=["b"]))


def test_fast_graph_equals_the_public_api_graph():
    G = build_graph(resnet(18))
    H = nx.DiGraph()
    H.add_nodes_from(G.nodes(data=True))
    H.add_edges_from(G.edges(data=True))
    assert nx.utils.graphs_equal(G, H) or (dict(G.nodes(data=True)) == dict(H.nodes(data=True))
                                           and sorted(G.edges(data="tensors")) == sorted(H.edges(data="tensors")))
    assert nx.is_directed_acyclic_graph(G)
    assert list(G.graph["op_order"]) == [n for n in nx.topological_sort(G) if G.nodes[n]["kind"] == "op"] or \
        all(G.nodes[a]["index"] < G.nodes[b]["index"] for a, b in G.edges if G.nodes[a]["kind"] == G.nodes[b]["kind"] == "op")
    conv = G.nodes["/conv1/Conv"]
    assert conv["inputs"][1].initializer and conv["outputs"][0].shape == (1, 64, 112, 112)
    assert G.edges["/conv1/Conv", "/bn1/BatchNormalization"]["tensors"] == ("/conv1/Conv_output_0",)


# --- the command --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("analyse") / "resnet18.onnx"
    path.write_bytes(resnet(18).SerializeToString())
    return path


def test_cli_prints_the_table(resnet18_file, capsys):
    from archkit.cli import main

    assert main(["analyse", str(resnet18_file), "--by", "block"]) == 0
    out = capsys.readouterr().out
    assert "MACs per sample: 1,814,073,344" in out
    assert "| layer1.0 |" in out and "BatchNormalization statistics 9,600" in out
    assert main(["analyse", str(resnet18_file), "--by", "type", "--format", "json", "--input-shape", "input=2,3,224,224"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"]["macs"] == 2 * 1_814_073_344 and not doc["per_sample"]
    assert {r["op_type"] for r in doc["rows"]} >= {"Conv", "Gemm", "BatchNormalization"}


def test_cli_writes_a_report_folder(resnet18_file, tmp_path, capsys):
    from archkit.cli import main

    out = tmp_path / "rep"
    assert main(["analyse", str(resnet18_file), "-o", str(out), "--input-shape", "N=4"]) == 0
    assert {"README.md", "layers.csv", "blocks.csv", "ops.csv", "summary.json"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["costs"]["macs"] == 4 * 1_814_073_344
    assert "-> " in capsys.readouterr().out


@pytest.mark.parametrize("argv,code,fragment", [
    (["analyse", "/nonexistent/model.onnx"], 3, "no such file"),
    (["analyse", "{f}", "--input-shape", "input=1,3"], 2, "rank 2 given"),
    (["analyse", "{f}", "--input-shape", "nosuch=1"], 2, "no graph input or symbolic dim"),
    (["analyse", "{f}", "--input-shape", "input"], 2, "expected NAME=D1,D2"),
    (["analyse", "{f}", "--format", "md,csv"], 2, "printing takes one of"),
])
def test_cli_errors(resnet18_file, capsys, argv, code, fragment):
    from archkit.cli import main

    assert main([a.replace("{f}", str(resnet18_file)) for a in argv]) == code
    assert fragment in capsys.readouterr().err


def test_cli_malformed_file(tmp_path, capsys):
    from archkit.cli import main

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage\xff\xff")
    assert main(["analyse", str(bad)]) == 4


def test_analyse_imports_no_tensorflow(resnet18_file):
    code = ("import sys; from archkit.cli import main; rc = main(['analyse', sys.argv[1]]); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(resnet18_file)], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1,814,073,344" in proc.stdout


def test_keras_export_names_with_folded_batchnorm():
    from archkit.onnx.names import ScopeNames

    names = ScopeNames()
    layer = names.layer("resnet50_1/conv2_block2_1_bn_1/batchnorm/add_1")
    assert (layer, names.block(layer)) == ("resnet50_1/conv2_block2_1_bn_1", "resnet50_1/conv2_block2")
    assert names.block("model/block_3_expand") == "model/block_3"  # MobileNetV2
    assert names.block("model/block2b_dwconv") == "model/block2b"  # EfficientNet
    assert names.block("model/mixed0") == "model/mixed0"


# --- files no one here wrote: the onnx package's Caffe2-zoo models -------------------------

# shared/REFERENCES.md, "Beyond CNNs": Conv+Gemm MACs of the light models by an independent recount.
LIGHT_MACS = {"bvlc_alexnet": 654_560_384, "densenet121": 2_834_161_664, "inception_v1": 1_431_556_352,
              "inception_v2": 2_018_851_840, "resnet50": 4_089_184_256, "shufflenet": 124_664_528,
              "squeezenet": 349_151_936, "vgg19": 19_632_062_464, "zfnet512": 1_481_727_008}


@pytest.mark.parametrize("name", sorted(LIGHT_MACS))
def test_light_models_are_complete_and_exact(name):
    a = analyse_file(light_model(name))
    assert a.costs.complete, a.costs.unknown[:5]
    assert a.costs.total()["macs"] == LIGHT_MACS[name]


def test_ir3_initializers_listed_as_inputs_still_feed_shape_inference():
    """Before IR 4 an initializer is also a graph input; the skeleton shape inference runs on
    must keep them inputs. A Caffe2 file makes its kernels with ConstantOfShape (one large
    enough that its values are not propagated) and scales by a small stored vector (kept as an
    initializer, as inference may need its values); unseen, every shape after it stays unknown."""
    kernel = numpy_helper.from_array(np.array([64, 128, 3, 3], np.int64), "kernel_shape")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    fc_w = helper.make_tensor("fc_w", TensorProto.FLOAT, (10, 1024), np.ones(10240, np.float32))
    scale = numpy_helper.from_array(np.full(64, 0.5, np.float32), "bn_w")
    nodes = [helper.make_node("ConstantOfShape", ["kernel_shape"], ["conv_w"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
             helper.make_node("Conv", ["x", "conv_w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Unsqueeze", ["bn_w"], ["s"], axes=[1, 2]),
             helper.make_node("Mul", ["c", "s"], ["scaled"]),
             helper.make_node("Reshape", ["scaled", "shape"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc_w"], ["y"], transB=1)]
    inits = [kernel, shape, fc_w, scale]
    inputs = [builders.value("x", [1, 128, 4, 4])] + [builders.value(t.name, t.dims, t.data_type) for t in inits]
    model = builders.model(nodes, inputs, ["y"], inits, opset=9, name="ir3", ir_version=3)
    a = analyse_model(model)
    assert a.costs.complete, a.costs.unknown
    assert a.costs.total()["macs"] == 64 * 128 * 3 * 3 * 16 + 1024 * 10


# --- what the totals are for: the batch ----------------------------------------------------

def _conv_file(batch):
    """x [batch, 3, 8, 8] → Conv 4x3x3x3 (no padding) → [batch, 4, 6, 6]: 4·6·6·3·3·3 = 3,888 MACs a sample."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv", kernel_shape=[3, 3])]
    return builders.model(nodes, {"x": [batch, 3, 8, 8]}, inits=[builders.tensor("w", w(4, 3, 3, 3))])


CONV_MACS = 4 * 6 * 6 * 3 * 3 * 3


def test_a_fixed_batch_is_stated_with_the_totals(tmp_path):
    from archkit.render.report import render, summary
    from archkit.render.text import render_view, summary_lines

    fixed, symbolic = tmp_path / "b4.onnx", tmp_path / "bn.onnx"
    fixed.write_bytes(_conv_file(4).SerializeToString())
    symbolic.write_bytes(_conv_file("N").SerializeToString())
    a = analyse_file(fixed)
    assert (a.costs.batch, a.costs.per_sample, a.costs.total()["macs"]) == (4, False, 4 * CONV_MACS)
    lines = summary_lines(a)
    assert f"MACs at batch 4: {4 * CONV_MACS:,}" in lines
    assert any("the totals are for batch 4, not per sample" in line for line in lines)
    assert json.loads(render_view(a, "op", "json"))["batch"] == 4
    assert summary(a)["costs"]["batch"] == 4
    assert f"| MACs at batch 4 | {4 * CONV_MACS:,} |" in render(a, ["md"])["README.md"].decode()

    s = analyse_file(symbolic)
    assert (s.costs.batch, s.costs.per_sample) == (1, True)
    assert f"MACs per sample: {CONV_MACS:,}" in summary_lines(s)
    assert f"| MACs per sample | {CONV_MACS:,} |" in render(s, ["md"])["README.md"].decode()
    eight = analyse_file(symbolic, input_shapes={"N": 8})
    assert f"MACs at batch 8: {8 * CONV_MACS:,}" in summary_lines(eight)


def test_inputs_that_disagree_on_the_leading_dim_state_no_batch():
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"], name="/mm/MatMul")]
    c = analyse(build_graph(builders.model(nodes, {"a": [2, 3], "b": [3, 5]})))
    assert c.batch is None and c.total()["macs"] == 2 * 3 * 5


# --- files whose node names carry no scopes --------------------------------------------------

def _unscoped():
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="n0", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["a"], ["b"], name="n1"),
             helper.make_node("Conv", ["b", "w2"], ["c"], name="n2", kernel_shape=[1, 1]),
             helper.make_node("Relu", ["c"], ["d"], name="n3")]
    return builders.model(nodes, {"x": [1, 3, 8, 8]},
                          inits=[builders.tensor("w", w(4, 3, 3, 3)), builders.tensor("w2", w(4, 4, 1, 1))])


def test_unscoped_file_is_said_and_views_fall_back_to_op_types(tmp_path):
    from archkit.analysis import UNSCOPED
    from archkit.render.text import render_view, view

    path = tmp_path / "plain.onnx"
    path.write_bytes(_unscoped().SerializeToString())
    a = analyse_file(path)
    assert not a.costs.scoped and UNSCOPED in a.warnings
    for by in ("layer", "block"):
        table = view(a, by)
        assert list(table.op_type) == ["Conv", "Relu"] and list(table.ops) == [2, 2]
        assert json.loads(render_view(a, by, "json"))["by"] == "type"
    assert len(view(a, "op")) == 4  # the op view is what it was


def test_scoped_file_keeps_its_layers_and_blocks(resnet18_file):
    from archkit.analysis import UNSCOPED
    from archkit.render.text import view

    a = analyse_file(resnet18_file)
    assert a.costs.scoped and UNSCOPED not in a.warnings
    assert "layer1.0" in set(view(a, "block").block)


def test_light_resnet50_by_block_lists_op_types_and_warns(capsys):
    from archkit.cli import main
    assert main(["analyse", str(light_model("resnet50")), "--by", "block"]) == 0
    captured = capsys.readouterr()
    rows = [l for l in captured.out.splitlines() if l.startswith("| ") and not l.startswith("| op_type")]
    # 10 op types (ConstantOfShape, Conv, BatchNormalization, Relu, Sum, MaxPool, AveragePool, Reshape, Gemm,
    # Softmax), not 415 one-op rows
    assert len(rows) == 10 and not any(r.startswith("| ConstantOfShape_") for r in rows)
    assert "no scopes in the node names" in captured.err


def test_block_chart_is_capped_and_unscoped_files_chart_op_types(tmp_path):
    from archkit.render.report import CHART_BARS, _chart_rows, block_chart
    nodes, x = [], "x"
    for i in range(100):  # 100 one-op blocks, b0 ... b99
        nodes.append(helper.make_node("Relu", [x], [f"r{i}"], name=f"b{i}/Relu"))
        x = f"r{i}"
    a = analyse_model(builders.model(nodes, {"x": [1, 4]}))
    names, _macs, _params, _, what = _chart_rows(a)
    assert len(names) == CHART_BARS and names[-1] == f"other ({100 - CHART_BARS + 1} blocks)" and what == "block"
    width, height = png_size(block_chart(a))
    assert width == 800 and height <= (0.28 * CHART_BARS + 1.2) * 80 + 1

    d = analyse_file(light_model("densenet121"))
    names, *_, what = _chart_rows(d)
    assert what == "op type" and "Conv" in names and len(names) < 20
    assert png_size(block_chart(d))[1] < 1000  # was 39,206 px tall, one bar per op


# --- weights a file generates instead of storing ---------------------------------------------

def test_constant_of_shape_weights_count_as_generated_params():
    def shape(name, *dims):
        return numpy_helper.from_array(np.array(dims, np.int64), name)

    nodes = [helper.make_node("ConstantOfShape", ["w_shape"], ["w"], value=numpy_helper.from_array(np.array([0.02], np.float32))),
             helper.make_node("ConstantOfShape", ["b_shape"], ["b"], value=numpy_helper.from_array(np.array([0.0], np.float32))),
             helper.make_node("Conv", ["x", "w", "b"], ["y"], name="/conv/Conv", kernel_shape=[3, 3]),
             # zeros shaped like the input: made from the data's shape, an activation, not a weight
             helper.make_node("Shape", ["y"], ["s"], name="/z/Shape"),
             helper.make_node("ConstantOfShape", ["s"], ["zeros"], name="/z/ConstantOfShape"),
             helper.make_node("Add", ["y", "zeros"], ["out"], name="/z/Add")]
    c = analyse(build_graph(builders.model(nodes, {"x": [1, 3, 8, 8]}, inits=[shape("w_shape", 4, 3, 3, 3), shape("b_shape", 4)])))
    t = c.total()
    assert (t["params"], t["kernel_weights"], t["generated"]) == (4 * 3 * 3 * 3 + 4, 4 * 3 * 3 * 3, 4 * 3 * 3 * 3 + 4)
    assert c.generated_tensors == 2
    conv = next(o for o in c.ops if o.op_type == "Conv")
    assert (conv.params, conv.generated) == (112, 112)
    assert "generated" in c.by_layer().columns


def test_light_alexnet_counts_its_published_parameters():
    from archkit.render.text import summary_lines
    a = analyse_file(light_model("bvlc_alexnet"))
    t = a.costs.total()
    # AlexNet (Caffe's bvlc_alexnet, two towers): 60,965,224 parameters; MACs per shared/REFERENCES.md
    assert (t["params"], t["generated"], t["macs"]) == (60_965_224, 60_965_224, 654_560_384)
    assert a.costs.generated_tensors == 16  # 8 kernels, 8 biases
    assert any(line.startswith("generated, not stored: 60,965,224") for line in summary_lines(a))
    r = analyse_file(light_model("resnet50")).costs.total()
    assert r["params"] - r["stats"] == 25_557_032  # torchvision's num_params (TORCHVISION above)


# --- one vocabulary: params, kernel weights, unknown_cost_ops --------------------------------

def test_analyse_and_reports_use_the_same_terms(resnet18_file):
    from archkit.render.report import render, summary
    from archkit.render.text import render_view

    a = analyse_file(resnet18_file)
    doc = json.loads(render_view(a, "block", "json"))
    costs = summary(a)["costs"]
    assert doc["total"]["params"] == costs["params"] == 11_689_512 + 9_600  # num_params + BN statistics
    assert doc["total"]["kernel_weights"] == costs["kernel_weights"]
    assert "unknown_cost_ops" in doc and "unknown_cost_ops" in costs and "unknown_shape_ops" not in costs
    assert "weights" not in doc["total"] and "onnx_weights" not in costs
    files = render(a, ["md", "csv"])
    assert files["blocks.csv"].decode().splitlines()[0] == \
        "block,ops,macs,flops,params,kernel_weights,output_bytes,weight_bytes,stats"
    text = files["README.md"].decode()
    assert "| ONNX params |" in text and "kernel weights" in text and "ONNX weights" not in text


def test_index_reads_summaries_from_before_the_params_key():
    """A reports folder may hold summary.json files written when the key was onnx_weights."""
    from archkit.render.report import index

    def summary(name, **costs):
        return {"name": name, "keras_params": {"total": 5}, "costs": {"macs": 9, **costs},
                "onnx": {"ops": 1, "size_bytes": 10}, "parity": None}

    text = index([summary("old", onnx_weights=7_001), summary("new", params=8_002)])
    assert "| 7,001 |" in text and "| 8,002 |" in text
