"""Connectivity: closed-form checks on small hand-built graphs, then the real architectures
(GoogLeNet's inception blocks, ResNet-50's shortcuts, DenseNet-121's dense blocks, receptive
fields against google-research/receptive_field's table)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from archkit.analysis import analyse_model
from tests import builders
from tests.builders import Net, light_model, png_size


def connectivity(model: onnx.ModelProto):
    return analyse_model(model).connectivity


# --- hand-built graphs -----------------------------------------------------------------------

def test_chain():
    n = Net()
    y = n.conv("c1", "x", 8)                       # 3x3/1, pad 1
    y = n.relu("r1", y)
    y = n.conv("c2", y, 8, stride=2)               # 3x3/2, pad 1
    y = n.maxpool("p", y)                          # 2x2/2
    c = connectivity(n.model(y))
    assert [l.name for l in c.layers] == ["input:x", "c1", "r1", "c2", "p", "output:p_out"]
    assert (c.depth, c.weighted_layers, c.max_parallel_paths) == (2, 2, 1)
    assert c.fork_joins == c.residuals == c.concats == c.dense_blocks == ()
    # r = 1 + Σ (k - 1) ∏ s, stride ∏ s, padding Σ p ∏ s
    rf = {l.name: l.receptive_field for l in c.layers}
    assert (rf["c1"].size, rf["c1"].stride, rf["c1"].padding) == ((3, 3), (1, 1), (1, 1))
    assert (rf["c2"].size, rf["c2"].stride, rf["c2"].padding) == ((5, 5), (2, 2), (2, 2))
    assert (rf["p"].size, rf["p"].stride, rf["p"].padding) == ((7, 7), (4, 4), (2, 2))
    assert c.final_layer == "p"
    assert [(s.layers, s.field) for s in c.stacks] == [(("c1", "c2"), (5, 5))]  # two stacked 3x3 reach 5x5
    assert [l.depth for l in c.layers] == [0, 1, 1, 2, 2, 2]


def test_diamond():
    n = Net()
    a = n.conv("a", "x", 4, (1, 1))
    b = n.conv("b", a, 2, (3, 3))
    d = n.conv("d", a, 6, (5, 5))
    y = n.concat("cat", b, d)
    c = connectivity(n.model(y))
    (f,) = c.fork_joins
    assert (f.fork, f.join, f.paths, c.max_parallel_paths) == ("a", "cat", 2, 2)
    assert [(br.layers, br.weighted) for br in f.branches] == [(("b",), 1), (("d",), 1)]
    macs_b, macs_d = 16 * 16 * 9 * 4 * 2, 16 * 16 * 25 * 4 * 6
    assert f.macs == macs_b + macs_d
    assert [br.share for br in f.branches] == pytest.approx([macs_b / f.macs, macs_d / f.macs])
    (cat,) = c.concats
    assert (cat.inputs, cat.input_layers, cat.sources) == (2, ("b", "d"), ("b", "d"))
    assert c.depth == 2
    rf = c.layer("cat").receptive_field  # the largest path wins; both centred: aligned
    assert (rf.size, rf.padding, rf.aligned) == ((5, 5), (2, 2), True)


def test_unaligned_paths_are_flagged():
    n = Net()
    b = n.conv("b", "x", 2, (3, 3), pads=[0, 0, 2, 2])  # same output size, centre shifted by one
    d = n.conv("d", "x", 2, (5, 5))
    y = n.concat("cat", b, d)
    rf = connectivity(n.model(y)).layer("cat").receptive_field
    assert (rf.size, rf.aligned) == ((5, 5), False)


def test_residual_identity_and_projection():
    n = Net()
    s = n.relu("stem_relu", n.conv("stem", "x", 8))
    y = n.conv("b1_2", n.relu("b1_1r", n.conv("b1_1", s, 8)), 8)
    s = n.relu("b1_out", n.add("b1_add", s, y))                                   # identity shortcut
    short = n.conv("b2_0", s, 16, (1, 1), stride=2)                               # projection
    y = n.conv("b2_2", n.relu("b2_1r", n.conv("b2_1", s, 16, stride=2)), 16)
    out = n.relu("b2_out", n.add("b2_add", short, y))
    c = connectivity(n.model(out))
    assert [(r.layer, r.fork, r.span, r.projection, r.shortcut) for r in c.residuals] == [
        ("b1_add", "stem_relu", 2, False, ()),
        ("b2_add", "b1_out", 2, True, ("b2_0",)),
    ]
    assert [(f.fork, f.join, len(f.branches)) for f in c.fork_joins] == [("stem_relu", "b1_add", 2), ("b1_out", "b2_add", 2)]
    assert c.fork_joins[0].branches[0].layers == ()  # the identity path, first as the Add takes it
    assert (c.depth, c.weighted_layers, c.max_parallel_paths) == (5, 6, 2)


def _dense_block(weights: bool):
    """Four dense layers of growth 4 on an 8-map input, then a 1x1 transition."""
    n = Net()
    cat = "x"
    for i in range(1, 5):
        y = n.conv(f"d{i}", n.relu(f"d{i}_relu", cat), 4)
        cat = n.concat(f"d{i}_cat", cat, y)
    w = None
    if weights:  # |w| = s + 1 on the maps of source s: the block input's 8, then 4 per layer
        per_map = np.repeat([1.0, 2.0, 3.0, 4.0, 5.0], [8, 4, 4, 4, 4])
        w = (per_map[None, :, None, None] * np.array([1, -1])[:, None, None, None]).astype(np.float32)
    t = n.conv("trans", cat, 2, (1, 1), weights=w)
    return n.model(t)


def test_four_layer_dense_block():
    c = connectivity(_dense_block(weights=False))
    (d,) = c.dense_blocks
    assert d.layers == 4
    assert d.sources == ("input:x", "d1", "d2", "d3", "d4")
    assert d.targets == ("d1", "d2", "d3", "d4", "trans")
    assert d.fan_in == (1, 2, 3, 4, 5)
    assert d.matrix == tuple(tuple(s < t + 1 for t in range(5)) for s in range(5))  # source s feeds layer ℓ > s
    assert [len(x.sources) for x in c.concats] == [2, 3, 4, 5]
    assert all(x.inputs == 2 for x in c.concats)
    # a file from elsewhere has its weights read (all ones here); archkit's own exports, or no
    # weights given, give structure only
    assert d.mean_abs_weight == tuple(tuple(float(v) for v in row) for row in d.matrix)
    from archkit.connectivity import analyse
    from archkit.costs import analyse as costs
    from archkit.onnx.graph import build_graph

    G = build_graph(_dense_block(weights=False))
    (d,) = analyse(G, costs(G)).dense_blocks
    assert d.mean_abs_weight is None and d.fan_in == (1, 2, 3, 4, 5)


def test_dense_block_mean_absolute_weights():
    """With weights (a file from elsewhere), each cell is the mean |w| per input map of the source."""
    c = connectivity(_dense_block(weights=True))
    (d,) = c.dense_blocks
    assert d.mean_abs_weight is not None
    assert [row[-1] for row in d.mean_abs_weight] == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])


def test_1x7_then_7x1_reach_7x7():
    n = Net(shape=(1, 4, 17, 17))
    y = n.conv("a_1x7", "x", 4, (1, 7), pads=[0, 3, 0, 3])
    y = n.conv("a_7x1", y, 4, (7, 1), pads=[3, 0, 3, 0])
    c = connectivity(n.model(y))
    rf = c.layer("a_7x1").receptive_field
    assert (rf.size, rf.stride, rf.padding) == ((7, 7), (1, 1), (3, 3))
    assert c.layer("a_1x7").receptive_field.size == (1, 7)  # height x width
    (s,) = c.stacks
    assert (s.kernels, s.field, s.text) == (((1, 7), (7, 1)), (7, 7), "1x7 → 7x1 reach 7x7")


def test_nhwc_input_auto_pad_and_pad_op():
    """tf2onnx's layout: an NHWC input transposed to NCHW; SAME_UPPER resolved from the sizes; a Pad
    whose amounts are an initializer."""
    n = Net(shape=(1, 9, 9, 3))
    n.channels["x"] = 3
    t = n._add("Transpose", "to_nchw", ["x"], 3, perm=[0, 3, 1, 2])
    y = n.conv("s1", t, 4, (3, 3), stride=2, auto_pad="SAME_UPPER")   # 9 → 5: total pad 2, 1 before
    y = n.conv("s2", y, 4, (3, 3), stride=2, auto_pad="SAME_UPPER")   # 5 → 3: total pad 2, 1 before
    n.inits.append(numpy_helper.from_array(np.array([0, 0, 2, 2, 0, 0, 2, 2], np.int64), "pads"))
    y = n._add("Pad", "pad", [y, "pads"], 4)
    y = n.conv("v", y, 4, (3, 3), auto_pad="VALID")
    c = connectivity(n.model(y))
    assert (c.layer("s1").receptive_field.size, c.layer("s1").receptive_field.padding) == ((3, 3), (1, 1))
    rf = c.layer("s2").receptive_field
    assert (rf.size, rf.stride, rf.padding) == ((7, 7), (4, 4), (3, 3))
    rf = c.layer("v").receptive_field  # the Pad adds 2 input steps of 4 to the padding
    assert (rf.size, rf.stride, rf.padding) == ((15, 15), (4, 4), (11, 11))


def test_render_files_and_sections():
    from archkit.render import drawing
    from archkit.render.report import render

    a = analyse_model(_dense_block(weights=False), name="dense4")
    files = render(a, ["md", "csv", "png"])
    assert {"connectivity.csv", "connectivity.dot", "connectivity.png", "dense_blocks.png"} <= set(files)
    text = files["README.md"].decode()
    assert "## Connectivity" in text and "### Dense blocks" in text and "1, 2, 3, 4; then 5" in text
    dot = files["connectivity.dot"].decode()
    assert dot.startswith('digraph "dense4"') and '"d1" -> "d1_cat";' in dot
    assert files["connectivity.png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert render(a, ["png"])["connectivity.png"] == files["connectivity.png"]  # deterministic
    csv = files["connectivity.csv"].decode().splitlines()
    assert csv[0].startswith("layer,block,kind,") and len(csv) == 1 + len(a.connectivity.layers)
    assert "dense blocks: 1" in drawing.text(a.connectivity, "dense4")


def test_cli_on_a_plain_onnx_file(tmp_path, capsys):
    from archkit.cli import main

    path = tmp_path / "dense.onnx"
    onnx.save(_dense_block(weights=False), path)
    assert main(["connectivity", str(path), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "depth 5 weighted layers" in out and "fan-in 1, 2, 3, 4; then 5" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "connectivity.csv", "connectivity.dot", "connectivity.md", "connectivity.png", "dense_blocks.png"]
    assert main(["connectivity", str(path), "--format", "json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["dense_blocks"] == [4]


# --- drawings and tables a reader can read ----------------------------------------------------

def _texts(fig):
    import matplotlib.text

    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]


def test_small_drawing_is_readable_with_a_legend_and_agrees_with_the_text():
    import matplotlib.pyplot as plt

    from archkit.render import drawing

    n = Net(shape=(1, 1, 28, 28))
    y = n.relu("r1", n.conv("c1", "x", 8, pads=[0, 0, 0, 0]))
    y = n.maxpool("p", y)
    c = connectivity(n.model(y))
    assert c.summary()["layers"] == 3  # c1, r1, p: the graph's input and output are not layers
    fig = drawing.figure(c, "tiny")
    try:
        # every label, legend entry and title at least 10 px tall at the resolution it is written
        assert min(t.get_fontsize() for t in _texts(fig)) * drawing.DPI / 72 >= 10
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert {"input / output", "weighted layer (conv, dense)", "pooling", "other ops"} <= set(legend)
        assert any("tensor" in entry for entry in legend)
        assert fig.axes[0].get_title().startswith("tiny: 3 layers,")
    finally:
        plt.close(fig)
    assert "3 layers, weighted layers being" in drawing.markdown(c, "tiny")
    width, height = png_size(drawing.png(c, "tiny"))
    assert width >= 700 and height >= 400


def test_long_graphs_are_drawn_to_a_readable_height():
    from archkit.render import drawing

    n = Net(shape=(1, 4, 8, 8))
    y = "x"
    for i in range(60):  # 60 layers in a chain: 62 rows with the input and output
        y = n.relu(f"r{i}", y)
    c = connectivity(n.model(y))
    height = png_size(drawing.png(c, "chain"))[1]
    assert height <= (drawing.ROW_IN * (drawing.MAX_ROWS + 0.6) + 1.6) * drawing.DPI + 1
    assert f"its first {drawing.MAX_ROWS} rows; {62 - drawing.MAX_ROWS} more rows are left out" in \
        drawing.markdown(c, "chain")


def test_light_densenet121_drawing_is_capped():
    from archkit.analysis import analyse_file
    from archkit.render import drawing

    a = analyse_file(light_model("densenet121"), connectivity=True)
    width, height = png_size(drawing.png(a.connectivity, a.name))
    assert width <= 4000 and height <= (drawing.ROW_IN * (drawing.MAX_ROWS + 0.6) + 1.6) * drawing.DPI + 1  # was 8,640 px


def test_receptive_field_table_shows_one_layout():
    """A tf2onnx-style graph: NHWC input, transposed to NCHW for the conv, back to NHWC after it.
    Both layers' outputs read height x width x channels in the table."""
    from archkit.render import drawing

    nodes = [helper.make_node("Transpose", ["x"], ["xt"], name="c1/Transpose", perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["xt", "w"], ["c"], name="c1/Conv", kernel_shape=[3, 3]),
             helper.make_node("Transpose", ["c"], ["y"], name="t/Transpose", perm=[0, 2, 3, 1])]
    c = connectivity(builders.model(nodes, {"x": [1, 28, 28, 1]}, ["y"],
                                    [builders.tensor("w", np.ones((8, 1, 3, 3), np.float32))], opset=18))
    assert (c.layer("c1").output_shape, c.layer("t").output_shape) == ("1x8x26x26", "1x26x26x8")
    text = drawing.markdown(c, "mixed")
    assert "| block | layer | output (HxWxC) |" in text
    assert "| c1 | `c1` | 26x26x8 |" in text and "| t | `t` | 26x26x8 |" in text


# --- the real architectures ------------------------------------------------------------------

def test_googlenet_has_nine_inception_blocks_of_four_branches(arch_run):
    c = arch_run("inception_v1")[0].connectivity
    blocks = [f for f in c.fork_joins if f.block.startswith("inception_")]
    assert len(blocks) == 9 == len(c.fork_joins)
    assert [f.join for f in blocks] == [f"inception_{b}_concat" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")]
    assert all(len(f.branches) == 4 and f.paths == 4 for f in blocks)
    assert all(len(x.sources) == 4 for x in c.concats)
    assert c.depth == 22  # "22 layers deep when counting only layers with parameters"
    assert c.max_parallel_paths == 4


def test_resnet50_shortcuts_depth_and_receptive_field(arch_run):
    c = arch_run("resnet50")[0].connectivity
    assert len(c.residuals) == 16
    assert [r.block for r in c.residuals if r.projection] == ["conv2_block1", "conv3_block1", "conv4_block1", "conv5_block1"]
    assert all(r.span == 3 for r in c.residuals)
    assert c.depth == 50 and c.weighted_layers == 54  # 49 convs + fc on the longest path, 4 projections beside it
    rf = c.layer("conv5_block3_out").receptive_field
    assert (rf.size, rf.stride, rf.aligned) == ((483, 483), (32, 32), True)  # google-research/receptive_field
    assert c.final_layer == "conv5_block3_out"


def test_densenet121_blocks_and_fan_in(arch_run):
    c = arch_run("densenet121")[0].connectivity
    assert [d.layers for d in c.dense_blocks] == [6, 12, 24, 16]
    for d, reader in zip(c.dense_blocks, ("pool2_conv", "pool3_conv", "pool4_conv", "predictions")):
        assert d.fan_in == tuple(range(1, d.layers + 2))  # layer ℓ reads ℓ sources; the next stage all n + 1
        assert d.targets[-1] == reader
    assert [d.name for d in c.dense_blocks] == ["dense_block1", "dense_block2", "dense_block3", "dense_block4"]
    assert c.depth == 121
    assert c.residuals == ()


def test_inception_v3_receptive_field(arch_run):
    c = arch_run("inception_v3")[0].connectivity
    rf = c.final_rf
    assert c.final_layer == "mixed10_concat"
    assert (rf.size, rf.stride, rf.padding) == ((1311, 1311), (32, 32), (618, 618))  # TF-slim Mixed_7c at 224


@pytest.mark.parametrize("name,kernels,field", [
    ("inception_v2_module", ((3, 3), (3, 3)), (5, 5)),   # two stacked 3x3 replace the 5x5
    ("inception_v3_module_b", ((1, 7), (7, 1)), (7, 7)),  # 1x7 then 7x1 cover 7x7
])
def test_factorised_modules_reach_the_fields_they_replace(arch_run, name, kernels, field):
    c = arch_run(name)[0].connectivity
    assert any(s.kernels == kernels and s.field == field for s in c.stacks)


def test_alexnet_receptive_field_definitions(arch_run):
    c = arch_run("alexnet")[0].connectivity
    pool5, conv5 = c.layer("pool5").receptive_field, c.layer("conv5").receptive_field
    assert (pool5.size[0], pool5.stride[0]) == (195, 32)  # TF-slim alexnet_v2/pool5, the published 195 / 32
    assert (conv5.size[0], conv5.stride[0]) == (163, 16)  # its conv5
    assert c.depth == 8


# --- figures that need shapes: unknown, never a wrong number -------------------------------------

@pytest.fixture
def no_shapes(monkeypatch):
    """Shape inference withheld: the analysis graph keeps only what the file declares (graph
    inputs, initializers), as when every engine fails on a file."""
    from archkit.onnx import graph

    monkeypatch.setattr(graph, "_infer_bounded", lambda model, skeleton: (onnx.load_from_string(skeleton), False))
    monkeypatch.setattr(graph, "_engine", lambda *args, **kwargs: 0)
    monkeypatch.setattr(graph, "_symbolic_infer", lambda inferred: (None, None))


def _too_big_reshape(n: Net, layer: str, x: str, shape) -> str:
    """A Reshape of `x` to `shape` whose target is computed from a 1,000 x 1,000 broadcast: too
    large for the shape engine to evaluate (tests/test_shapes.py), so its output shape stays unknown."""
    r = lambda name, v: n.inits.append(numpy_helper.from_array(np.array(v, np.int64), f"{layer}_{name}"))
    for name, v in (("zero", 0), ("n", 1000), ("one", 1), ("ax1", [1]), ("ax0", [0]), ("ax01", [0, 1]),
                    ("head", list(shape[:-1])), ("last", shape[-1])):
        r(name, v)
    k = lambda name: f"{layer}_{name}"
    n.nodes += [helper.make_node("Range", [k("zero"), k("n"), k("one")], [k("v")]),
                helper.make_node("Unsqueeze", [k("v"), k("ax1")], [k("col")]),
                helper.make_node("Add", [k("v"), k("col")], [k("grid")]),
                helper.make_node("ReduceMax", [k("grid"), k("ax01")], [k("big")], keepdims=0),
                helper.make_node("Sub", [k("big"), k("big")], [k("naught")]),
                helper.make_node("Add", [k("naught"), k("last")], [k("count")]),
                helper.make_node("Unsqueeze", [k("count"), k("ax0")], [k("count1")]),
                helper.make_node("Concat", [k("head"), k("count1")], [k("target")], axis=0)]
    return n._add("Reshape", layer, [x, k("target")], n.channels[x])


def _reshape_in_a_residual():
    """c1, then two branches: a Reshape the engine cannot size, then c2; and c4. Added."""
    n = Net()
    a = n.conv("c1", "x", 8)
    left = n.conv("c2", _too_big_reshape(n, "rs", a, (1, 8, 16, 16)), 8)
    right = n.conv("c4", a, 8)
    return n.model(n.relu("out", n.add("add", left, right)))


def test_unknown_shapes_make_fields_and_shares_unknown_not_wrong(capsys):
    from archkit.render import drawing

    a = analyse_model(_reshape_in_a_residual(), name="rs")
    c = a.connectivity
    assert "rs/Reshape" in a.costs.unknown or "c2/Conv" in a.costs.unknown  # the premise: shapes stop there
    # shape-free figures stay
    assert (c.depth, c.weighted_layers, c.max_parallel_paths) == (2, 3, 2)
    assert [(r.fork, r.span) for r in c.residuals] == [("c1", 1)]
    (f,) = c.fork_joins
    assert (f.fork, f.join, f.paths) == ("c1", "add", 2)
    assert c.layer("add").predecessors == ("c2", "c4")
    # the field before the Reshape is known; from it on, it is unknown
    rf = c.layer("c1").receptive_field
    assert (rf.size, rf.stride, rf.padding) == ((3, 3), (1, 1), (1, 1))
    for layer in ("rs", "c2", "add", "out"):
        assert c.layer(layer).receptive_field is None and c.layer(layer).field_unknown
    assert c.final_layer is None and c.final_rf is None and c.final_unknown is not None
    assert c.rf_unknown_at[0] == "rs/Reshape" and c.shapes_unknown[0] == "rs/Reshape"
    assert [s.layers for s in c.stacks] == [("c1", "c4")]  # not through the Reshape: it may move the axes
    # MACs: c4's are known (16·16·9·8·8), the other branch's are not: no share is given
    assert c.layer("c4").macs == 16 * 16 * 9 * 8 * 8 and c.layer("c2").macs is None
    right = next(b for b in f.branches if b.layers == ("c4",))
    assert right.macs == 16 * 16 * 9 * 8 * 8
    assert f.macs is None and all(b.share is None for b in f.branches)
    assert not c.complete

    text = drawing.text(c, "rs")
    assert "receptive field: unknown (the field is not known at add; shapes of 2 ops not inferred, e.g. rs/Reshape)" \
        in text
    assert "MAC shares unknown" in text and "%" not in text
    assert any(line.startswith("not computed: MACs of") for line in text.splitlines())
    summary = c.summary()
    assert summary["receptive_field"] is None and summary["unknown"]["mac_shares"] == 1
    assert summary["unknown"]["first"]["shape"] == "rs/Reshape"
    rows = {r["layer"]: r for r in c.to_frame().to_dict("records")}
    assert (rows["c2"]["rf_size"], rows["c2"]["macs"]) == ("unknown", "unknown")
    assert (rows["c1"]["rf_size"], rows["c1"]["macs"]) == ("3x3", 16 * 16 * 9 * 8 * 8)
    md = drawing.markdown(c, "rs", images=False)
    assert "| receptive field | unknown (" in md and "**Not computed**" in md and "%" not in md
    assert "| `add` | add | `c1` | 2 | 2 | unknown |" in md


def test_cli_warns_on_stderr_when_figures_are_unknown(tmp_path, capsys):
    from archkit.cli import main

    path = tmp_path / "rs.onnx"
    onnx.save(_reshape_in_a_residual(), path)
    assert main(["connectivity", str(path), "--format", "json"]) == 0
    captured = capsys.readouterr()
    import json

    data = json.loads(captured.out)
    assert data["receptive_field"] is None and data["unknown"]["receptive_field"] is True
    assert data["detail"]["fork_joins"][0]["macs"] is None
    assert "archkit: warning: connectivity: the network's receptive field is unknown" in captured.err
    assert "MAC shares of 1 of 1 fork/join pairs unknown" in captured.err
    assert main(["connectivity", str(path), "--format", "csv"]) == 0
    assert "warning: connectivity:" in capsys.readouterr().err


def test_an_uncosted_op_makes_shares_unknown():
    """An op of a custom domain in one branch: no cost rule, and its output shape is unknown, so
    what follows it has no MACs either. The other pair (no custom op in its branches) keeps its shares."""
    n = Net()
    a = n.conv("c1", "x", 8)
    m = n._add("Mystery", "m", [a], 8)
    n.nodes[-1].domain = "com.example"
    y = n.add("add1", n.conv("c2", m, 8), n.conv("c3", a, 8))
    model = n.model(y)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    c = connectivity(model)
    assert "m/Mystery" in c.macs_unknown
    (f,) = c.fork_joins
    assert f.macs is None and [b.share for b in f.branches] == [None, None]
    assert c.layer("c3").macs == 16 * 16 * 9 * 8 * 8 and c.layer("m").macs is None

    n = Net()
    a = n.conv("c1", "x", 8)
    b, d = n.conv("b", a, 4), n.conv("d", a, 4, (5, 5))
    y = n.concat("cat", b, d)
    m = n._add("Mystery", "m", [y], 8)
    n.nodes[-1].domain = "com.example"
    model = n.model(m)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    (f,) = connectivity(model).fork_joins  # the custom op is after the pair: its shares are exact
    assert [b.share for b in f.branches] == pytest.approx([9 / 34, 25 / 34])


def _attribute_chain():
    n = Net()
    y = n.conv("c1", "x", 8)                                            # 3x3/1, pads 1
    y = n.conv("c2", y, 8, stride=2, auto_pad="SAME_UPPER")              # 16 → 8: total pad 1, 0 before
    y = n.conv("c3", y, 8, auto_pad="SAME_UPPER")                        # stride 1: total pad 2, 1 before
    y = n.maxpool("p", y)                                               # 2x2/2
    return n.model(n._add("GlobalAveragePool", "gap", [y], 8))


def test_fields_from_attributes_alone(no_shapes):
    """Without any shape, fields come from kernel, stride and pad attributes; only what needs a
    size is unknown: SAME padding with a stride of 2, a global pool's field, the last spatial layer."""
    from archkit.render import drawing

    c = connectivity(_attribute_chain())
    assert all(not l.output_shape for l in c.layers if l.kind not in ("input",))  # the premise
    f = {l.name: l.receptive_field for l in c.layers}
    assert (f["c1"].size, f["c1"].stride, f["c1"].padding) == ((3, 3), (1, 1), (1, 1))
    assert (f["c2"].size, f["c2"].stride, f["c2"].padding) == ((5, 5), (2, 2), (None, None))
    assert (f["c3"].size, f["c3"].stride, f["c3"].padding) == ((9, 9), (2, 2), (None, None))
    assert (f["p"].size, f["p"].stride) == ((11, 11), (4, 4))
    assert f["gap"].size == (None, None)
    assert c.final_layer is None and c.final_unknown == "c1"
    assert "c2/Conv" in c.rf_unknown_at and [(s.layers, s.field) for s in c.stacks] == [(("c1", "c2", "c3"), (9, 9))]
    assert f["c2"].text == "5 / 2, padding unknown"
    text = drawing.text(c, "chain")
    assert "receptive field: unknown (the spatial size of c1's output is not known; shapes of 5 ops not inferred, " \
        "e.g. c1/Conv)" in text
    assert "receptive fields in part unknown (size, stride or padding) at " in text


def test_fields_from_attributes_agree_with_shapes():
    """The same chain with its shapes: sizes and strides as without them; the paddings SAME
    needed the sizes for: c2 pads 0 before (16 → 8), c3 1 step of 2 more."""
    c = connectivity(_attribute_chain())
    assert c.complete
    f = {l.name: l.receptive_field for l in c.layers}
    assert [(f[k].size, f[k].stride, f[k].padding) for k in ("c2", "c3", "p")] == [
        ((5, 5), (2, 2), (1, 1)), ((9, 9), (2, 2), (3, 3)), ((11, 11), (4, 4), (3, 3))]
    assert c.final_layer == "p"


def test_light_densenet121_without_shapes_prints_no_wrong_number(no_shapes, capsys):
    """A real file (the Caffe2 zoo's DenseNet-121 in the onnx package) with shape inference withheld:
    no MAC share, no network receptive field, no per-layer MAC is printed as a number; what is
    missing is named; the wiring (depth 121, 58 concatenations) stays."""
    from archkit.analysis import analyse_file
    from archkit.cli import main
    from archkit.render import drawing

    path = light_model("densenet121")
    proto = onnx.load(path)
    first_conv = next(node.name or node.output[0] for node in proto.graph.node if node.op_type == "Conv")
    a = analyse_file(path, connectivity=True)
    c = a.connectivity
    assert a.costs.total()["macs"] == 0  # the premise: no conv could be costed
    assert (c.depth, c.weighted_layers, len(c.concats), len(c.fork_joins)) == (121, 121, 58, 58)
    assert all(f.macs is None and all(b.share is None for b in f.branches) for f in c.fork_joins)
    assert all(l.macs is None for l in c.layers if l.weighted)
    assert c.final_rf is None and c.final_unknown is not None
    rf = c.layer(c.shapes_unknown[0]).receptive_field  # conv1, 7x7/2 pad 3: from its attributes
    assert (rf.size, rf.stride, rf.padding) == ((7, 7), (2, 2), (3, 3))
    text = drawing.text(c, a.name)
    assert "%" not in text and "no spatial layer" not in text
    assert f"receptive field: unknown (the spatial size of {first_conv}'s output is not known; shapes of " in text
    assert f"not inferred, e.g. {first_conv})" in text
    assert "MAC shares unknown" in text
    assert all("fan-in unknown" in line for line in text.splitlines() if " layers, fan-in " in line)
    assert main(["connectivity", str(path), "--format", "md"]) == 0
    captured = capsys.readouterr()
    assert "%" not in captured.out and "| receptive field | unknown (" in captured.out
    assert "shapes of " in captured.err and f"e.g. {first_conv}" in captured.err


def test_free_spatial_dims_give_no_network_field():
    """H and W left free are set to 1 for inference: the sizes after them are not the network's.
    Fields come from attributes; SAME padding with a stride and the last spatial layer need the
    sizes, so they are unknown until the dims are fixed."""
    from archkit.render import drawing

    n = Net(shape=("N", 8, "H", "W"))
    y = n.conv("c1", "x", 8)
    y = n.conv("c2", y, 8, stride=2, auto_pad="SAME_UPPER")
    model = n.model(n.maxpool("p", y))
    c = connectivity(model)
    rf = c.layer("p").receptive_field
    assert (rf.size, rf.stride, rf.padding) == ((7, 7), (4, 4), (None, None))
    assert c.final_rf is None and c.free_spatial_dims == ("H", "W")
    assert "the input's spatial dims H, W are free (fix them with --input-shape)" in drawing.text(c, "free")
    fixed = analyse_model(model, input_shapes={"H": 16, "W": 16}).connectivity  # 16 → 8: SAME pads 0 before
    assert (fixed.final_layer, fixed.final_rf.size, fixed.final_rf.padding) == ("p", (7, 7), (1, 1))
    assert fixed.complete and not fixed.free_spatial_dims
