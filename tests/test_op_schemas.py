"""Ops are checked against their operator schemas in the file's own opset when the file is read
(exit 4, the node named), so that what fails inside a cost rule afterwards is archkit's own bug:
exit 1, one line asking for a report."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from archkit.cli import main
from archkit.costs import RULES
from archkit.errors import MalformedModelError
from archkit.onnx.load import check_model, load_model
from tests.builders import light_model, one_node, small_cnn

F = TensorProto.FLOAT


def analyse(capsys, path, *extra: str) -> tuple[int, str]:
    rc = main(["analyse", str(path), *extra])
    return rc, capsys.readouterr().err


def _node(m: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in m.graph.node if n.name == name)


def test_a_rule_that_fails_is_an_internal_error_that_asks_for_a_report(tmp_path, capsys, monkeypatch):
    f = tmp_path / "m.onnx"
    f.write_bytes(small_cnn().SerializeToString())

    def broken(node):
        raise KeyError("x")

    monkeypatch.setitem(RULES, ("ai.onnx", "Conv"), broken)
    rc, err = analyse(capsys, f)
    assert rc == 1
    assert err == ("archkit: internal error in the cost rule for Conv (node '/conv/Conv'): KeyError: 'x'; "
                   "please report it with the file\n")
    rc, err = analyse(capsys, f, "--debug")  # the traceback, and the same code
    assert rc == 1 and "Traceback" in err and "raise KeyError" in err


def test_the_report_request_survives_a_hostile_node_name(tmp_path, capsys, monkeypatch):
    m = small_cnn()
    _node(m, "/conv/Conv").name = "/conv\x1b[2J\u202e" + "x" * 20_000 + "/Conv"
    f = tmp_path / "m.onnx"
    f.write_bytes(m.SerializeToString())

    def broken(node):
        raise IndexError("tuple index out of range\nsecond line")

    monkeypatch.setitem(RULES, ("ai.onnx", "Conv"), broken)
    rc, err = analyse(capsys, f)
    assert rc == 1 and err.count("\n") == 1 and len(err) < 500 and "\x1b" not in err
    assert err.startswith("archkit: internal error in the cost rule for Conv (node '/conv\\x1b[2J")
    assert err.endswith("): IndexError: tuple index out of range; please report it with the file\n")


def _unknown_attribute(m):
    _node(m, "/conv/Conv").attribute.append(helper.make_attribute("kernel_sizes", [3, 3]))


def _wrong_type(m):
    gemm = _node(m, "/fc/Gemm")
    del gemm.attribute[:]
    gemm.attribute.append(helper.make_attribute("transB", 1.0))  # a float where the schema says int


def _missing_required(m):
    pool = _node(m, "/pool/GlobalAveragePool")
    pool.op_type = "MaxPool"  # without its kernel_shape


def _too_few_inputs(m):
    del _node(m, "/conv/Conv").input[1:]


def _unnamed_required_output(m):
    conv = _node(m, "/conv/Conv")
    conv.output[0] = ""


def _given_twice(m):
    conv = _node(m, "/conv/Conv")
    conv.attribute.append(helper.make_attribute("pads", [0, 0, 0, 0]))


@pytest.mark.parametrize("change, fragment", [
    (_unknown_attribute, "node '/conv/Conv' (Conv, opset 17): unknown attribute 'kernel_sizes'"),
    (_wrong_type, "node '/fc/Gemm' (Gemm, opset 17): attribute 'transB' has type FLOAT, the schema says INT"),
    (_missing_required, ("node '/pool/GlobalAveragePool' (MaxPool, opset 17): required attribute 'kernel_shape' "
                         "is missing")),
    (_too_few_inputs, "node '/conv/Conv' (Conv, opset 17): 1 input, the operator takes 2 to 3"),
    (_unnamed_required_output, "node '/conv/Conv' (Conv, opset 17): output 0 is required but has no name"),
    (_given_twice, "node '/conv/Conv' (Conv, opset 17): attribute 'pads' is given twice"),
])
def test_an_op_outside_its_schema_is_a_malformed_model(tmp_path, capsys, change, fragment):
    m = small_cnn()
    change(m)
    f = tmp_path / "m.onnx"
    f.write_bytes(m.SerializeToString())
    rc, err = analyse(capsys, f)
    assert rc == 4, err
    assert err == f"archkit: error: {f}: {fragment}\n"


def test_subgraph_nodes_are_checked_too(tmp_path, capsys):
    then = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="inner/Relu", alpha=0.5)], "then", [],
                             [helper.make_tensor_value_info("t", F, [2])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="inner/Neg")], "else", [],
                              [helper.make_tensor_value_info("e", F, [2])])
    g = helper.make_graph([helper.make_node("If", ["c"], ["y"], name="if", then_branch=then, else_branch=other)], "g",
                          [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                           helper.make_tensor_value_info("x", F, [2])],
                          [helper.make_tensor_value_info("y", F, [2])])
    f = tmp_path / "m.onnx"
    f.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    rc, err = analyse(capsys, f)
    assert rc == 4
    assert "node 'inner/Relu' (Relu, opset 17) in subgraph 'then': unknown attribute 'alpha'" in err


def test_the_files_own_opset_decides(tmp_path, capsys):
    """Caffe2's opset-9 models keep Dropout's `ratio` as an attribute, as opset 9 defines it: accepted,
    and costed as before. Stamped opset 13, where `ratio` is an input, the same file is refused."""
    path = light_model("bvlc_alexnet")
    m = onnx.load(str(path), load_external_data=False)
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 9)]
    assert any(n.op_type == "Dropout" and n.attribute[0].name == "ratio" for n in m.graph.node)
    rc, err = analyse(capsys, path, "--format", "json")
    assert rc == 0, err
    m.opset_import[0].version = 13
    f = tmp_path / "m.onnx"
    f.write_bytes(m.SerializeToString())
    rc, err = analyse(capsys, f)
    assert rc == 4 and "(Dropout, opset 13): unknown attribute 'ratio'" in err


@pytest.mark.parametrize("name", ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
                                  "shufflenet", "squeezenet", "vgg19", "zfnet512"])
def test_caffe2_opset9_models_pass_the_schema_checks(name):
    assert load_model(light_model(name)).proto.opset_import[0].version == 9


def test_ops_without_a_schema_are_left_to_the_costs(tmp_path, capsys):
    """A custom domain's op, and an op its opset does not define (onnxruntime's LayerNormalization
    before opset 17), are not refused: the costs say what they can."""
    custom = small_cnn()
    relu = _node(custom, "/relu/Relu")
    relu.op_type, relu.domain = "FancyRelu", "com.example"
    relu.attribute.append(helper.make_attribute("anything", "goes"))
    custom.opset_import.append(helper.make_opsetid("com.example", 1))
    f = tmp_path / "custom.onnx"
    f.write_bytes(custom.SerializeToString())
    rc, err = analyse(capsys, f)
    assert rc == 0, err
    early = one_node("LayerNormalization", {"x": [2, 8]}, None, weights={"g": [1.0] * 8}, opset=11, epsilon=1e-5,
                     stash_type=1)
    check_model(early, origin="m", folder=None)


def test_schemas_that_allow_other_attributes_are_followed():
    """Where onnx's checker accepts attributes outside an op's schema, so does archkit."""
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.deprecated or schema.domain not in ("", "ai.onnx.ml"):
            continue
        node = _probe(schema)
        model = helper.make_model(helper.make_graph([node], "g", [], []),
                                  opset_imports=[helper.make_opsetid(schema.domain, schema.since_version)])
        ctx = onnx.checker.C.CheckerContext()
        ctx.ir_version = onnx.IR_VERSION
        ctx.opset_imports = {schema.domain: schema.since_version}
        try:
            onnx.checker.check_node(node, ctx)
            onnx_accepts = True
        except onnx.checker.ValidationError as e:
            onnx_accepts = "Unrecognized attribute" not in str(e)
        if onnx_accepts:
            check_model(model, origin="m", folder=None)
        else:
            with pytest.raises(MalformedModelError, match="unknown attribute 'archkit_probe'"):
                check_model(model, origin="m", folder=None)


_VALUES = {onnx.AttributeProto.FLOAT: 1.0, onnx.AttributeProto.INT: 1, onnx.AttributeProto.STRING: "a",
           onnx.AttributeProto.INTS: [1], onnx.AttributeProto.FLOATS: [1.0], onnx.AttributeProto.STRINGS: ["a"],
           onnx.AttributeProto.TENSOR: helper.make_tensor("t", F, [1], [1.0]),
           onnx.AttributeProto.GRAPH: helper.make_graph([], "sub", [], [])}


def _probe(schema) -> onnx.NodeProto:
    """A node of the op, its required attributes set, and one attribute no schema has."""
    node = helper.make_node(schema.name, [f"i{k}" for k in range(schema.min_input)],
                            [f"o{k}" for k in range(max(schema.min_output, 1))], name="probe", domain=schema.domain)
    for name, a in schema.attributes.items():
        if a.required:
            node.attribute.append(helper.make_attribute(name, _VALUES[int(a.type)]))
    node.attribute.append(helper.make_attribute("archkit_probe", 1))
    return node


def test_an_einsum_equation_outside_the_grammar_is_refused_before_inference(tmp_path, capsys):
    """onnx's own shape inference does not return on a term with two ellipses."""
    m = one_node("Einsum", {"a": [2, 3, 4], "b": [4]}, None, equation="a...b...,b")
    f = tmp_path / "m.onnx"
    f.write_bytes(m.SerializeToString())
    rc, err = analyse(capsys, f)
    assert rc == 4
    assert "node 'layer/Einsum' (Einsum, opset 18): equation 'a...b...,b' has a term 'a...b...'" in err
    m = one_node("Einsum", {"a": [2, 3], "b": [3, 4]}, None, equation="ab,bc,cd->ad")
    f.write_bytes(m.SerializeToString())
    rc, err = analyse(capsys, f)
    assert rc == 4 and "has 3 input terms for 2 inputs" in err


def test_a_recurrent_weight_of_the_wrong_rank_is_named(tmp_path, capsys):
    """onnx's inference checks X's rank, not W's: the rule says what it cannot read."""
    m = one_node("LSTM", {"x": [5, 1, 3], "w": [1, 12], "r": [1, 12, 3]}, None, opset=14, hidden_size=3)
    f = tmp_path / "m.onnx"
    f.write_bytes(m.SerializeToString())
    rc, err = analyse(capsys, f)
    assert rc == 4
    assert err == f"archkit: error: {f}: op 'layer/LSTM' (LSTM): input 1 has 2 dims, the operator takes 3\n"

