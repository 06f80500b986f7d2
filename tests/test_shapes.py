"""The shape engine (archkit.onnx.shapes): shape arithmetic that onnx's inference leaves unknown is
evaluated, within a bound on the size of what is evaluated, checked before evaluating it."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import archkit.onnx.shapes as engine
from archkit.analysis import analyse_model
from archkit.onnx.graph import build_graph
from tests import builders
from tests.builders import crnn, crnn_macs, png_size, vad_stft, vit, vit_macs, yolo_head, yolo_head_macs


def test_vit_b16_as_torch_onnx_writes_it_reproduces_torchvision():
    """shared/REFERENCES.md, "Beyond CNNs": ViT-B/16, 86,567,656 params, 17,563,828,224 MACs
    (17.564 GMACs), the attention score and context MatMuls included."""
    a = analyse_model(vit())
    t = a.costs.total()
    assert a.costs.complete, a.costs.unknown[:5]
    assert t["macs"] == vit_macs() == 17_563_828_224
    assert t["params"] == 86_567_656
    scores = [o for o in a.costs.ops if o.op_type == "MatMul" and o.output_shape == "12x197x197"]
    assert len(scores) == 12 and all(o.macs == 12 * 197 * 197 * 64 for o in scores)


def test_vit_at_a_fixed_batch_scales_every_computed_shape():
    m = vit(size=64, depth=2, dim=96, heads=4, mlp=192, classes=10)
    per_sample = analyse_model(m).costs.total()["macs"]
    a = analyse_model(m, input_shapes={"N": 8})
    assert a.costs.complete and per_sample == vit_macs(size=64, depth=2, dim=96, mlp=192, classes=10)
    assert a.costs.total()["macs"] == 8 * per_sample


def _broadcast_model(n: int):
    """A Reshape whose target comes from an n x n broadcast of two small vectors: the engine
    must not evaluate it when n·n is over the bound; the rest of the graph still resolves."""
    r = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    nodes = [helper.make_node("Range", ["zero", "n", "one"], ["v"]),
             helper.make_node("Unsqueeze", ["v", "ax1"], ["col"]),
             helper.make_node("Add", ["v", "col"], ["grid"]),  # (n, n): grows, though no "generator"
             helper.make_node("Shape", ["grid"], ["grid_shape"]),
             helper.make_node("ReduceMax", ["grid", "ax01"], ["big"], keepdims=0),
             helper.make_node("Sub", ["big", "big"], ["naught"]),  # 0, known only from grid's values
             helper.make_node("Add", ["naught", "all"], ["count"]),
             helper.make_node("Unsqueeze", ["count", "ax0"], ["big1"]),
             helper.make_node("Concat", ["one_1", "big1"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("Shape", ["x"], ["xs"]),
             helper.make_node("Gather", ["xs", "idx1"], ["c"], axis=0),
             helper.make_node("Unsqueeze", ["c", "ax0"], ["c1"]),
             helper.make_node("Concat", ["one_1", "c1", "minus1"], ["t2"], axis=0),
             helper.make_node("Reshape", ["x", "t2"], ["x2"]),
             helper.make_node("Transpose", ["x2"], ["x3"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x3", "w"], ["y"], name="fc/MatMul")]
    inits = [r("zero", 0), r("n", n), r("one", 1), r("ax1", [1]), r("ax0", [0]), r("ax01", [0, 1]), r("one_1", [1]),
             r("idx1", 1), r("minus1", [-1]), r("all", 4 * 36), numpy_helper.from_array(np.ones((4, 5), np.float32), "w")]
    return builders.model(nodes, {"x": [1, 4, 6, 6]},
                          ["y", "flat", builders.value("grid_shape", None, TensorProto.INT64)], inits, opset=18)


@pytest.mark.parametrize("n", [10, 1000])
def test_the_bound_holds_for_ops_that_grow_without_being_generators(monkeypatch, n):
    evaluated = []
    real = engine._evaluate

    def record(node, values, types, version):
        out = real(node, values, types, version)
        evaluated.append((node.op_type, sum(v.size for v in (out or {}).values())))
        return out

    monkeypatch.setattr(engine, "_evaluate", record)
    G = build_graph(_broadcast_model(n), symbolic=False)
    assert evaluated and max(size for _, size in evaluated) <= engine.BOUND
    ops = [d for _, d in G.nodes(data=True) if d["kind"] == "op"]
    fc = next(d for d in ops if d["name"] == "fc/MatMul")
    assert fc["outputs"][0].shape == (1, 36, 5)  # the rest resolves
    flat = next(d for d in ops if d["op_type"] == "Reshape" and d["inputs"][1].name == "target")
    if n * n <= engine.BOUND:
        assert flat["outputs"][0].shape == (1, 4 * 36) and ("Add", n * n) in evaluated
    else:
        assert not flat["outputs"][0].known and ("Add", n * n) not in evaluated


def test_paddle_minus_one_dims_are_free_dims_with_a_warning(tmp_path, capsys):
    """Paddle2ONNX writes `dim_value: -1` for a dynamic dim of a graph input or output (and
    `p2o.DynamicDimension.N` names elsewhere): read as a free dim, with a warning; onnxruntime
    runs such files. On an initializer a negative dim stays an error (tests/test_hostile.py)."""
    import onnx

    from archkit.cli import main

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])
    x.type.tensor_type.shape.dim[0].dim_value = -1
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["p2o.DynamicDimension.0", 8, 30, 30])
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    path = tmp_path / "paddle.onnx"
    onnx.save(builders.model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv2d_0.tmp_0")], [x], [y], [w],
                             opset=11, name="paddle"), path)
    assert main(["analyse", str(path), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert "declared as -1" in err and "x:0" in err
    import json

    report = json.loads(out)
    assert report["total"]["macs"] == 8 * 3 * 9 * 30 * 30 and report["complete"]
    assert main(["analyse", str(path), "--input-shape", "x:0=4", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] == 4 * 8 * 3 * 9 * 30 * 30


def test_yolo_style_head_is_complete_from_the_engine_alone():
    """Anchors made at run time from each map's Shape (Range, Expand), the DFL head's Reshape to
    [N, 4, 16, A] and Split: all resolved by archkit's engine, no onnxruntime fallback."""
    G = build_graph(yolo_head(), symbolic=False)
    assert "archkit" in G.graph["shape_inference"]
    from archkit.costs import analyse

    c = analyse(G)
    assert c.complete, c.unknown[:5]
    assert c.total()["macs"] == yolo_head_macs() == 103_756_800
    out = next(d for _, d in G.nodes(data=True) if d["kind"] == "output")["tensor"]
    assert out.shape == (1, 84, 8400)


@pytest.mark.parametrize("width", [100, 256])
def test_crnn_lstm_over_a_free_sequence(width):
    """The LSTM's sequence is the image width (a free dim, "width"): fixed with --input-shape."""
    a = analyse_model(crnn(), input_shapes={"width": width})
    assert a.costs.complete
    assert a.costs.total()["macs"] == crnn_macs(width)
    lstm = next(o for o in a.costs.ops if o.op_type == "LSTM")
    assert lstm.macs == 2 * (width // 2) * 4 * 96 * (64 + 96)


@pytest.mark.parametrize("sr,filters,kernel", [(16000, 258, 256), (8000, 130, 128)])
def test_shapes_inside_if_branches_and_a_slice_reading_one_tensor_twice(sr, filters, kernel):
    from archkit.costs import analyse

    G = build_graph(vad_stft(), input_shapes={"samples": 1024}, input_values={"sr": (sr,)},
                    symbolic=False)
    c = analyse(G)
    assert c.complete, c.unknown
    frames = (1024 - kernel) // (kernel // 2) + 1
    assert c.total()["macs"] == filters * kernel * frames  # the taken branch's conv alone


def test_sweep_over_a_free_dim_is_exact_at_every_value(tmp_path, capsys):
    """`analyse --sweep width=...` analyses the file at each value: every row equals the closed
    form, and the batch multiplies it; -o writes sweep.csv and sweep.png."""
    import json

    import onnx

    from archkit.cli import main

    path = tmp_path / "crnn.onnx"
    onnx.save(crnn(), path)
    widths = (64, 100, 256)
    assert main(["analyse", str(path), "--sweep", "width=" + ",".join(map(str, widths)), "--sweep", "N=1,3",
                 "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["width"], r["N"]) for r in rows] == [(w, n) for w in widths for n in (1, 3)]
    for r in rows:
        assert r["macs"] == r["N"] * crnn_macs(r["width"]) and r["complete"]
    peaks = {(r["width"], r["N"]): r["peak_bytes"] for r in rows}
    for w in widths:  # every tensor holds the batch: three samples hold three times the bytes
        assert peaks[w, 3] == 3 * peaks[w, 1] > 0
    out = tmp_path / "sweep"
    assert main(["analyse", str(path), "--sweep", "width=64,128", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["sweep.csv", "sweep.png"]
    assert png_size((out / "sweep.png").read_bytes())[0] >= 600
    assert (out / "sweep.csv").read_text().splitlines()[0] == "width,macs,flops,params,peak_bytes,complete"
    capsys.readouterr()
    for argv, fragment in ((["--sweep", "height=1,2"], "not a free dim of the file; its free dims: N, width"),
                           (["--sweep", "width=0,2"], "distinct positive integers"),
                           (["--sweep", "width=8", "--input-shape", "width=8"], "also fixed by --input-shape")):
        assert main(["analyse", str(path), *argv]) == 2
        assert fragment in capsys.readouterr().err
