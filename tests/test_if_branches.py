"""If: each branch's cost shown apart; the totals count one branch — the one taken when the
condition is known (a constant, a value the shape engine computes, an input given with
--input-value), else the one with more MACs — and the other's rows are shown, not summed.
Models are built with onnx.helper; every figure is a closed form."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from archkit.cli import main
from archkit.costs import analyse
from archkit.onnx.graph import build_graph
from tests import builders

F = T.FLOAT
HW = 16 * 16  # output positions of every 3x3/pad-1 conv below


def conv_macs(c_in: int, c_out: int, k: int = 3) -> int:
    return HW * c_out * c_in * k * k


def _conv(name: str, x: str, y: str, c_in: int, c_out: int, *, k: int = 3, weight: str | None = None):
    """A Conv node, and its weight initializer unless `weight` names one defined elsewhere."""
    wname = weight or f"{name}_w"
    node = h.make_node("Conv", [x, wname], [y], name=f"{name}/Conv", pads=[k // 2] * 4)
    inits = [] if weight else [nh.from_array(np.ones((c_out, c_in, k, k), np.float32), wname)]
    return node, inits


def _conv_branch(name: str, c_out: int, *, x: str = "h", c_in: int = 4) -> onnx.GraphProto:
    node, inits = _conv(name, x, "y", c_in, c_out)
    return builders.graph([node], [], ["y"], inits, name=name)


STEM = conv_macs(3, 4)  # x 1x3x16x16 → h 1x4x16x16
STEM_PARAMS = 4 * 3 * 3 * 3


def _stem():
    return _conv("stem", "x", "h", 3, 4)


def if_on_input(then_filters: int = 8, else_filters: int = 2) -> onnx.ModelProto:
    """A stem conv, then an If on the scalar bool input `cond` choosing a conv of
    `then_filters` or `else_filters` filters."""
    stem, inits = _stem()
    node = h.make_node("If", ["cond"], ["y"], name="choose", then_branch=_conv_branch("then", then_filters),
                       else_branch=_conv_branch("else", else_filters))
    return builders.model([stem, node], [h.make_tensor_value_info("x", F, [1, 3, 16, 16]),
                                         h.make_tensor_value_info("cond", T.BOOL, [])], ["y"], inits)


def _adds_up(c) -> None:
    """Rows that are summed add up to the totals, in every view; rows not summed are in none."""
    total = c.total()
    for view in (c.to_frame(), c.by_layer(), c.by_block(), c.by_type()):
        summed = view[view.summed] if "summed" in view else view
        for key in ("macs", "flops", "params", "kernel_weights"):
            assert summed[key].sum() == total[key], key
    frame = c.to_frame()
    assert (frame.summed.sum() if "summed" in frame else len(frame)) == total["ops"]


def _costs(model, **values):
    return analyse(build_graph(model, input_values={k: (v,) for k, v in values.items()}))


def _row(c, node):
    return next(o for o in c.ops if o.node == node)


# --- the condition unknown: the branch with more MACs counts --------------------------------

def test_unknown_condition_counts_the_branch_with_more_macs():
    c = _costs(if_on_input(8, 2))
    then, other = _row(c, "choose/then_branch/then/Conv"), _row(c, "choose/else_branch/else/Conv")
    assert (then.macs, other.macs) == (conv_macs(4, 8), conv_macs(4, 2))
    assert then.summed and not other.summed
    assert then.context == "branch then_branch of choose (counted: more MACs)"
    assert other.context == "branch else_branch of choose (not summed: fewer MACs)"
    t = c.total()
    assert t["macs"] == STEM + conv_macs(4, 8)
    assert t["params"] == STEM_PARAMS + 8 * 4 * 9  # the other branch's weights are on its row, not summed
    assert t["ops"] == 3  # stem, If, then's Conv
    b = c.branches["choose"]
    assert (b.counted, b.condition, dict(b.macs)) == ("then_branch", None, {"then_branch": conv_macs(4, 8),
                                                                            "else_branch": conv_macs(4, 2)})
    _adds_up(c)


def test_the_larger_branch_counts_whichever_it_is():
    c = _costs(if_on_input(2, 8))
    assert c.branches["choose"].counted == "else_branch"
    assert c.total()["macs"] == STEM + conv_macs(4, 8)
    assert not _row(c, "choose/then_branch/then/Conv").summed
    _adds_up(c)


# --- the condition known ----------------------------------------------------------------------

@pytest.mark.parametrize("value, branch, filters", [(1, "then_branch", 8), (0, "else_branch", 2)])
def test_input_value_decides_the_branch(value, branch, filters):
    c = _costs(if_on_input(8, 2), cond=value)
    b = c.branches["choose"]
    assert (b.counted, b.condition, b.how) == (branch, bool(value), f"input cond = {value}, given")
    assert c.total()["macs"] == STEM + conv_macs(4, filters)
    assert c.total()["params"] == STEM_PARAMS + filters * 4 * 9
    taken = _row(c, f"choose/{branch}/{branch[:4]}/Conv")
    assert taken.summed and taken.context.endswith(f"(taken: condition {'true' if value else 'false'})")
    _adds_up(c)


def test_constant_condition():
    m = if_on_input(8, 2)
    m.graph.input.pop()  # `cond` becomes an initializer: false
    m.graph.initializer.append(nh.from_array(np.array(False), "cond"))
    c = _costs(m)
    assert (c.branches["choose"].counted, c.branches["choose"].how) == ("else_branch", "a constant")
    assert c.total()["macs"] == STEM + conv_macs(4, 2)
    _adds_up(c)


def shape_condition() -> onnx.ModelProto:
    """If Equal(Gather(Shape(x), 3), 16), a conv of 8 filters, else of 2; x's width is free ("W")."""
    stem, inits = _stem()
    stem.attribute.pop()  # no padding: the stem keeps x's width W - 2
    stem.attribute.append(h.make_attribute("pads", [1, 0, 1, 0]))
    nodes = [h.make_node("Shape", ["x"], ["s"], name="cond/Shape"),
             h.make_node("Constant", [], ["axis"], name="cond/axis", value=nh.from_array(np.array(3, np.int64))),
             h.make_node("Gather", ["s", "axis"], ["width"], name="cond/Gather", axis=0),
             h.make_node("Equal", ["width", "sixteen"], ["is16"], name="cond/Equal"), stem,
             h.make_node("If", ["is16"], ["y"], name="choose", then_branch=_conv_branch("then", 8),
                         else_branch=_conv_branch("else", 2))]
    inits.append(nh.from_array(np.array(16, np.int64), "sixteen"))
    return builders.model(nodes, [h.make_tensor_value_info("x", F, [1, 3, 16, "W"])], ["y"], inits)


def test_condition_computed_from_shapes():
    m = shape_condition()
    wide = analyse(build_graph(m, input_shapes={"W": 16}))
    assert wide.branches["choose"].counted == "then_branch"
    assert wide.branches["choose"].how == "computed from constants and shapes"
    # W = 16: the stem's output is 16 x 14; the branch convs (pad 1) keep it
    assert wide.total()["macs"] == 16 * 14 * 4 * 27 + 16 * 14 * 8 * 36
    # W free (set to 1: per sample) is not 16: the else branch runs, though it has fewer MACs
    narrow = analyse(build_graph(m, input_shapes={"W": 18}))
    assert narrow.branches["choose"].counted == "else_branch"
    assert narrow.total()["macs"] == 16 * 16 * 4 * 27 + 16 * 16 * 2 * 36
    _adds_up(wide), _adds_up(narrow)


def vad(sr_shape=()) -> onnx.ModelProto:
    """The voice-activity pattern: a scalar int64 input `sr`, Equal(sr, 16000) choosing the STFT
    front end, a Conv over the waveform of 256 filters at 16 kHz, of 128 at 8 kHz."""
    def front(name, filters):
        w = nh.from_array(np.ones((filters, 1, 64), np.float32), f"{name}_basis")
        conv = h.make_node("Conv", ["audio", f"{name}_basis"], ["spec"], name=f"{name}/stft/Conv", strides=[32])
        return builders.graph([conv], [], ["spec"], [w], name=name)
    nodes = [h.make_node("Constant", [], ["k16000"], name="Constant_0", value=nh.from_array(np.array(16000, np.int64))),
             h.make_node("Equal", ["sr", "k16000"], ["is16k"], name="Equal_1"),
             h.make_node("If", ["is16k"], ["spec"], name="If_2", then_branch=front("model16k", 256),
                         else_branch=front("model8k", 128))]
    return builders.model(nodes, [h.make_tensor_value_info("audio", F, [1, 1, 1024]),
                                  h.make_tensor_value_info("sr", T.INT64, list(sr_shape))], ["spec"], name="vad")


FRAMES = (1024 - 64) // 32 + 1  # 31


@pytest.mark.parametrize("sr, filters, branch", [("16000", 256, "then_branch"), ("8000", 128, "else_branch")])
def test_voice_activity_sample_rate(tmp_path, capsys, sr, filters, branch):
    f = tmp_path / "vad.onnx"
    onnx.save(vad(), f)
    assert main(["analyse", str(f), "--input-value", f"sr={sr}", "--format", "json", "--by", "op"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"]["macs"] == FRAMES * filters * 64
    assert doc["total"]["params"] == filters * 64
    assert doc["branches"]["If_2"] == {
        "counted": branch, "not_summed": "else_branch" if branch == "then_branch" else "then_branch",
        "condition": branch == "then_branch", "how": f"computed from the given input sr = {sr}",
        "why": f"taken: condition {'true' if branch == 'then_branch' else 'false'}",
        "macs": {"then_branch": FRAMES * 256 * 64, "else_branch": FRAMES * 128 * 64}}
    rows = {r["node"]: r for r in doc["rows"]}
    assert [n for n, r in rows.items() if not r["summed"]] == [
        f"If_2/{'else_branch/model8k' if branch == 'then_branch' else 'then_branch/model16k'}/stft/Conv"]
    assert sum(r["macs"] for r in rows.values() if r["summed"]) == doc["total"]["macs"]


def test_voice_activity_without_a_value_counts_16k(tmp_path, capsys):
    f = tmp_path / "vad.onnx"
    onnx.save(vad(sr_shape=[1]), f)  # a one-element tensor, as some exports declare it
    assert main(["analyse", str(f), "--by", "op"]) == 0
    out = capsys.readouterr().out
    assert "If `If_2`: then_branch counted (condition unknown, more MACs: " \
           f"{FRAMES * 256 * 64:,} vs {FRAMES * 128 * 64:,} MACs); else_branch shown, not summed" in out
    assert f"- MACs at batch 1: {FRAMES * 256 * 64:,}\n" in out
    assert main(["analyse", str(f), "--input-value", "sr=8000", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] == FRAMES * 128 * 64


# --- nested Ifs -----------------------------------------------------------------------------------

def nested() -> onnx.ModelProto:
    """If a: (If b: conv 8 filters, else conv 2 filters), else conv 4 filters."""
    stem, inits = _stem()
    inner = h.make_node("If", ["b"], ["y"], name="inner", then_branch=_conv_branch("in_then", 8),
                        else_branch=_conv_branch("in_else", 2))
    outer = h.make_node("If", ["a"], ["y"], name="outer", then_branch=builders.graph([inner], [], ["y"], name="out_then"),
                        else_branch=_conv_branch("out_else", 4))
    return builders.model([stem, outer], [h.make_tensor_value_info("x", F, [1, 3, 16, 16]),
                                          h.make_tensor_value_info("a", T.BOOL, []),
                                          h.make_tensor_value_info("b", T.BOOL, [])], ["y"], inits)


@pytest.mark.parametrize("values, inner, outer, macs", [
    ({}, "then_branch", "then_branch", conv_macs(4, 8)),
    # the inner If takes its small branch: the outer then-branch now costs less than the else-branch
    ({"b": 0}, "else_branch", "else_branch", conv_macs(4, 4)),
    ({"a": 1, "b": 0}, "else_branch", "then_branch", conv_macs(4, 2)),
    ({"a": 0}, "then_branch", "else_branch", conv_macs(4, 4)),
])
def test_nested_if(values, inner, outer, macs):
    c = _costs(nested(), **values)
    assert (c.branches["outer/then_branch/inner"].counted, c.branches["outer"].counted) == (inner, outer)
    assert c.total()["macs"] == STEM + macs
    summed = {o.node for o in c.ops if o.summed and o.op_type == "Conv"}
    assert len(summed) == 2  # the stem and one branch conv
    in_then = _row(c, "outer/then_branch/inner/then_branch/in_then/Conv")
    assert in_then.context.startswith("branch then_branch of outer (")
    assert "; branch then_branch of outer/then_branch/inner (" in in_then.context
    _adds_up(c)


# --- a weight both branches read counts in the branch that counts ---------------------------

def test_shared_weight_counts_in_the_branch_taken():
    stem, inits = _stem()
    then_conv, _ = _conv("then", "h", "t", 4, 8, weight="shared")
    else_conv, _ = _conv("else", "h", "t", 4, 8, weight="shared")
    then_b = builders.graph([then_conv, h.make_node("Identity", ["t"], ["y"], name="then/Identity")], [], ["y"], name="then")
    else_b = builders.graph([else_conv, h.make_node("Add", ["t", "bias"], ["y"], name="else/Add")], [], ["y"], name="else")
    inits += [nh.from_array(np.ones((8, 4, 3, 3), np.float32), "shared"),
              nh.from_array(np.ones((8, 1, 1), np.float32), "bias")]
    m = builders.model([stem, h.make_node("If", ["cond"], ["y"], name="choose", then_branch=then_b, else_branch=else_b)],
                       [h.make_tensor_value_info("x", F, [1, 3, 16, 16]), h.make_tensor_value_info("cond", T.BOOL, [])],
                       ["y"], inits)
    for value, extra in ((1, 0), (0, 8)):
        c = _costs(m, cond=value)
        assert c.total()["params"] == STEM_PARAMS + 8 * 4 * 9 + extra
        assert c.total()["kernel_weights"] == STEM_PARAMS + 8 * 4 * 9
        _adds_up(c)
    # unknown: the same MACs, the else branch's bias Add has more flops
    c = _costs(m)
    assert c.branches["choose"].counted == "else_branch"
    assert _row(c, "choose/else_branch/else/Conv").params == 8 * 4 * 9


# --- the renderers say which branch counts, and the usage errors ------------------------------

def test_renderers_show_rows_not_summed(tmp_path, capsys):
    f = tmp_path / "m.onnx"
    onnx.save(if_on_input(8, 2), f)
    assert main(["analyse", str(f), "--by", "op", "--format", "csv"]) == 0
    csv = capsys.readouterr().out.splitlines()
    assert csv[0].endswith(",context,summed")
    assert any(line.startswith("choose/else_branch/else/Conv,") and line.endswith(",False") for line in csv)
    assert main(["analyse", str(f), "--by", "type"]) == 0
    md = capsys.readouterr().out
    assert "| Conv | 2 | " in md and "| yes |" in md and "| no |" in md
    assert "not summed: 1 op of If branches not counted (" + f"{conv_macs(4, 2):,} MACs, 72 params)" in md
    assert "--input-value NAME=V counts the branch taken" in md
    assert main(["analyse", str(f), "-o", str(tmp_path / "rep")]) == 0
    capsys.readouterr()
    readme = (tmp_path / "rep" / "README.md").read_text()
    assert "If branches: each If counts one branch" in readme
    assert "| Conv (not summed) | 1 | " + f"{conv_macs(4, 2):,}" in readme
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["costs"]["macs"] == STEM + conv_macs(4, 8)
    assert summary["costs"]["branches"]["choose"]["counted"] == "then_branch"


@pytest.mark.parametrize("option, message", [
    ("nope=1", "--input-value names no graph input: ['nope']; inputs are ['cond', 'x']"),
    ("cond", "--input-value 'cond': expected NAME=V"),
    ("cond=yes", "--input-value 'cond=yes': expected NAME=V"),
    ("cond=1,0", "--input-value cond: 2 value(s) given; the input has shape [] (1 element(s))"),
    ("cond=2", "--input-value cond: the input holds bool: give integers from 0 to 1"),
])
def test_input_value_usage_errors(tmp_path, capsys, option, message):
    f = tmp_path / "m.onnx"
    onnx.save(if_on_input(), f)
    assert main(["analyse", str(f), "--input-value", option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archkit: error: ") and message in err and "Traceback" not in err


def test_input_value_of_an_integer_input_must_be_an_integer(tmp_path, capsys):
    f = tmp_path / "vad.onnx"
    onnx.save(vad(), f)
    assert main(["analyse", str(f), "--input-value", "sr=16000.5"]) == 2
    assert "sr: the input holds int64: give integers" in capsys.readouterr().err


def test_input_value_of_a_small_tensor_feeds_the_shape_engine(tmp_path, capsys):
    """A Reshape whose target is a graph input: its shape, and the MatMul after it, follow from
    the given value."""
    nodes = [h.make_node("Reshape", ["x", "target"], ["r"], name="r/Reshape"),
             h.make_node("MatMul", ["r", "w"], ["y"], name="mm/MatMul")]
    m = builders.model(nodes, [h.make_tensor_value_info("x", F, [4, 6]), h.make_tensor_value_info("target", T.INT64, [2])],
                       ["y"], [nh.from_array(np.ones((8, 5), np.float32), "w")])
    f = tmp_path / "m.onnx"
    onnx.save(m, f)
    assert main(["analyse", str(f), "--input-value", "target=3,8", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["total"]["macs"], doc["complete"]) == (3 * 8 * 5, True)
    assert main(["analyse", str(f), "--input-value", "target=3", "--format", "json"]) == 2
    assert "1 value(s) given; the input has shape [2]" in capsys.readouterr().err


def test_summary_names_the_ifs_whose_choice_matters():
    from archkit.render.text import branch_lines

    lines = branch_lines(_costs(nested(), a=0))
    assert lines[0] == "If `outer`: else_branch counted (condition false: input a = 0, given); then_branch shown, not summed"
    assert not any("inner" in line for line in lines)  # inside the branch not taken: its choice changes nothing
    lines = branch_lines(_costs(if_on_input(4, 4)))
    assert lines[0] == "1 If whose branches cost the same (e.g. `choose`): then_branch counted, else_branch shown, not summed"


def test_an_op_of_unknown_cost_in_the_branch_not_taken_leaves_the_totals_complete():
    """A branch known not to run cannot change a total; one not summed for its fewer MACs can
    (its unknown op may be the larger)."""
    stem, inits = _stem()
    then_b = builders.graph([h.make_node("Mystery", ["h"], ["y"], name="then/Mystery", domain="com.example")], [], ["y"],
                            name="then")
    m = builders.model([stem, h.make_node("If", ["cond"], ["y"], name="choose", then_branch=then_b,
                                          else_branch=_conv_branch("else", 2))],
                       [h.make_tensor_value_info("x", F, [1, 3, 16, 16]), h.make_tensor_value_info("cond", T.BOOL, [])],
                       ["y"], inits)
    m.opset_import.append(h.make_opsetid("com.example", 1))
    unknown = _costs(m)
    assert unknown.branches["choose"].counted == "else_branch"
    assert not unknown.complete and unknown.unsupported == ("com.example::Mystery",)
    taken = _costs(m, cond=0)
    assert taken.complete and taken.unsupported == () and taken.total()["macs"] == STEM + conv_macs(4, 2)
    assert not _costs(m, cond=1).complete


@pytest.mark.parametrize("dtype, option, message", [
    (F, "x=1e100", "--input-value x: a value is out of range for float"),
    (T.INT64, "x=" + "9" * 400, "--input-value x: the input holds int64: give integers from"),
    (T.STRING, "x=1", "--input-value x: the input holds string; values can be given for bool, integer"),
])
def test_input_value_out_of_the_inputs_type(tmp_path, capsys, dtype, option, message):
    m = builders.model([h.make_node("Identity", ["x"], ["y"], name="id")], [builders.value("x", [], dtype)],
                       [builders.value("y", [], dtype)])
    f = tmp_path / "m.onnx"
    onnx.save(m, f)
    assert main(["analyse", str(f), "--input-value", option]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archkit: error: ") and message in err and len(err.splitlines()) == 1


def test_an_if_inside_a_loop_reads_the_loop_body_inputs():
    """A subgraph inside a subgraph reads the enclosing body's formal input (a Loop's carried
    value): it is provided, by no op (the file was refused as malformed)."""
    then_b = h.make_graph([h.make_node("Identity", ["v"], ["t"], name="t/Identity")], "then", [],
                          [h.make_tensor_value_info("t", F, [2])])
    else_b = h.make_graph([h.make_node("Neg", ["v"], ["e"], name="e/Neg")], "else", [],
                          [h.make_tensor_value_info("e", F, [2])])
    body = h.make_graph([h.make_node("Identity", ["c"], ["c_out"], name="keep"),
                         h.make_node("If", ["c"], ["v_out"], name="choose", then_branch=then_b, else_branch=else_b)],
                        "body", [h.make_tensor_value_info("i", T.INT64, []), h.make_tensor_value_info("c", T.BOOL, []),
                                 h.make_tensor_value_info("v", F, [2])],
                        [h.make_tensor_value_info("c_out", T.BOOL, []), h.make_tensor_value_info("v_out", F, [2])])
    g = h.make_graph([h.make_node("Loop", ["n", "go", "x"], ["y"], name="loop", body=body)], "g",
                     [h.make_tensor_value_info("x", F, [2])], [h.make_tensor_value_info("y", F, [2])],
                     [nh.from_array(np.array(3, np.int64), "n"), nh.from_array(np.array(True), "go")])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    onnx.checker.check_model(m, full_check=True)  # a valid file
    G = build_graph(m)
    assert {"loop/body/choose/then_branch/t/Identity", "loop/body/choose/else_branch/e/Neg"} <= set(G.nodes)


def test_input_value_of_an_input_with_free_dims(tmp_path, capsys):
    m = builders.model([h.make_node("Relu", ["x"], ["y"], name="relu")], [h.make_tensor_value_info("x", F, ["N", 3])])
    f = tmp_path / "m.onnx"
    onnx.save(m, f)
    assert main(["analyse", str(f), "--input-value", "x=1,2,3"]) == 2
    assert "--input-value x: the input's shape ['N', 3] has free dims: fix them with --input-shape" \
        in capsys.readouterr().err
