"""The memory figures where people read them: `archkit analyse`'s summary, JSON and --by views,
the sweep, the report's Memory section, memory.png, summary.json and the reports index.

The model is tests/builders.projected_block, small enough to count by hand: every figure below is
written out from its shapes (float32, per sample), and each rendering is checked against those
and against the Analysis it renders.
"""

from __future__ import annotations

import io
import json

import pytest
from onnx import helper

from archkit.analysis import SWEEP_COLUMNS, analyse_file, analyse_model, sweep
from archkit.cli import main
from archkit.costs.memory import group_peaks
from archkit.onnx.load import load_model
from archkit.render.memory import batch_peaks, binary, peaks_by, size_text
from archkit.render.report import index, render
from archkit.render.text import render_sweep, render_view, summary_lines, sweep_chart, view
from tests import builders
from tests.builders import projected_block

# --- projected_block, counted by hand (bytes per sample: float32, 8x8 maps) ----------------------

MAP = 8 * 8 * 4  # one channel of one sample
P, C1, R1, C2, S, R2 = 4 * MAP, 16 * MAP, 16 * MAP, 4 * MAP, 4 * MAP, 4 * MAP  # proj, conv1, relu1, conv2, add, relu2
G, Y = 4 * 4, 10 * 4  # pooled (Flatten aliases it), logits (the graph output)
WEIGHTS = 4 * (4 * 4 + 16 * 4 * 9 + 4 * 16 * 9 + 10 * 4 + 10)
INPUTS = 4 * MAP
ACTIVATIONS = P + C1 + R1 + C2 + S + R2 + G  # each once: the Relus' tensors too, the Flatten's none
TENSORS, BUFFERS = 7, 5  # the two Relus write into their inputs' buffers
# onnxruntime's order runs the wide branch first: conv1, relu1 (in place), conv2, proj, add, relu2
# (in place), pool, flatten, fc. Live during each step: what is made there and what is read later.
ORT_CURVE = (C1, C1, C1 + C2, C2 + P, C2 + P + S, S, S + G, G, G + Y)
# the file's order runs the projection first and holds its output through the wide branch
FILE_CURVE = (P, P + C1, P + C1, P + C1 + C2, P + C2 + S, S, S + G, G, G + Y)
ORT_PEAK, FILE_PEAK = C1 + C2, P + C1 + C2  # both during conv2
CONV2 = "/block1/conv2/Conv"


@pytest.fixture(scope="module")
def a():
    return analyse_model(projected_block(), connectivity=False)


def test_the_analysis_counts_what_the_hand_count_says(a):
    """The figures every rendering below shows, recounted here from the shapes."""
    m = a.memory
    assert (m.weights, m.inputs, m.outputs, m.activations, m.tensors, m.buffers) == \
        (WEIGHTS, INPUTS, Y, ACTIVATIONS, TENSORS, BUFFERS)
    ort, file, aware = (m.schedules[k] for k in ("onnxruntime", "file", "memory-aware"))
    assert ort.curve == ORT_CURVE and file.curve == FILE_CURVE
    assert (ort.peak.bytes, ort.peak.node, file.peak.bytes, file.peak.node) == (ORT_PEAK, CONV2, FILE_PEAK, CONV2)
    assert aware.peak.bytes == ORT_PEAK and m.saving() == (FILE_PEAK - ORT_PEAK, (FILE_PEAK - ORT_PEAK) / FILE_PEAK)
    # six buffers of their own (the Relus work in place, the Flatten aliases), none free in time to reuse
    assert (ort.planned.peak, ort.planned.buffers, ort.planned.reused) == (ORT_PEAK, 6, 0)


# --- archkit analyse: the summary ------------------------------------------------------------------

def test_summary_states_the_memory_one_fact_a_line(a):
    lines = summary_lines(a)
    assert "memory apart from activations: weights 4,872 bytes (4.76 KiB); inputs 1,024 bytes (1.00 KiB); " \
           "outputs 40 bytes" in lines
    assert WEIGHTS == 4_872 and INPUTS == 1_024 and ACTIVATIONS == 12_304
    assert "activations: 12,304 bytes (12.0 KiB) in 7 tensors, each once (5 buffers: an in-place op writes into its " \
        "input's)" in lines
    assert "memory in the free dims: inputs = 1,024·N; outputs = 40·N; activations = 12,304·N bytes" in lines
    assert ORT_PEAK == 5_120 and FILE_PEAK == 6_144
    assert ("peak live memory (onnxruntime's order): 5,120 bytes (5.00 KiB) at op `/block1/conv2/Conv` (block block1)"
            " = 5,120·N") in lines
    assert ("peak live memory (file order): 6,144 bytes (6.00 KiB) at op `/block1/conv2/Conv` (block block1)"
            " = 6,144·N") in lines
    assert any(line.startswith("peak live memory (memory-aware order): 5,120 bytes") for line in lines)
    assert ("onnxruntime's allocation plan holds 5,120 bytes (5.00 KiB) at its peak (it keeps a dead buffer until a "
            "later tensor of the same shape takes it): at op `/block1/conv2/Conv` (block block1); 6 buffers, 0 tensors "
            "reuse a dead one") in lines
    saving = [line for line in lines if line.startswith("memory-aware order (")]
    assert len(saving) == 1 and saving[0].endswith("its peak is 1,024 bytes (1.00 KiB, 16.7%) below the file order's")
    assert not any("lower bounds" in line for line in lines)


def test_a_fixed_batch_gives_the_bytes_at_that_batch_and_no_formula():
    a = analyse_model(projected_block(batch=3), connectivity=False)
    lines = summary_lines(a)
    assert f"peak live memory (onnxruntime's order): {size_text(3 * ORT_PEAK)} at op `{CONV2}` (block block1)" in lines
    assert not any("memory in the free dims" in line or "·" in line for line in lines)
    assert batch_peaks(a) == ({1: None, 32: None}, None, "the inputs' batch is fixed at 3")


def _two_batches():
    """Two inputs, each its own free leading dim: x's chain peaks for small M, z's for large."""
    n = helper.make_node
    return builders.model([n("Neg", ["x"], ["a"], name="/x/neg/Neg"),
                           n("GlobalAveragePool", ["a"], ["ya"], name="/x/pool/GlobalAveragePool"),
                           n("Neg", ["z"], ["bz"], name="/z/neg/Neg"),
                           n("ReduceMean", ["bz"], ["yb"], name="/z/mean/ReduceMean", axes=[1])],
                          {"x": ["N", 4, 8, 8], "z": ["M", 100]}, {"ya": ["N", 4, 1, 1], "yb": ["M", 1]})


def test_without_a_formula_the_summary_says_why():
    a = analyse_model(_two_batches(), connectivity=False)
    file = a.memory.schedules["file"]
    # the file's order: x's Neg and pool, then z's: 1,040·N at the pool, 16·N + 404·M at the mean
    assert file.curve == (1024, 1040, 16 + 400, 16 + 404) and file.peak.formula is None
    lines = summary_lines(a)
    assert ("peak live memory (file order): 1,040 bytes (1.02 KiB) at op `/x/pool/GlobalAveragePool` (block x); "
            "no formula in the free dims: different steps peak at different values of the free dims") in lines
    assert "memory in the free dims: inputs = 400·M + 1,024·N; outputs = 4·M + 16·N; activations = 400·M + 1,024·N " \
           "bytes" in lines
    peaks, dim, why = batch_peaks(a)
    assert peaks == {1: a.memory.runtime.peak.bytes, 32: None} and dim is None
    assert why == "the inputs' leading dims are different free dims (M, N): no one batch to set"


def test_tensors_of_unknown_size_make_the_figures_lower_bounds():
    n = helper.make_node
    m = builders.model([n("Relu", ["x"], ["r"], name="/a/relu/Relu"),
                        n("Foo", ["r"], ["q"], name="/a/foo/Foo", domain="my.ops"),
                        n("Neg", ["q"], ["y"], name="/a/neg/Neg")],
                       {"x": [1, 4]}, ["y"], opsets=[helper.make_opsetid("my.ops", 1)])
    a = analyse_model(m, connectivity=False)
    assert a.memory.unknown == ("q", "y")
    assert "memory figures are lower bounds: 2 tensors of unknown size counted as 0, e.g. `q`, `y`" in summary_lines(a)
    files = render(a, ["md", "json"])
    assert "**The memory figures are lower bounds**: 2 tensors" in files["README.md"].decode()
    memory = json.loads(files["summary.json"])["memory"]
    assert memory["complete"] is False and memory["unknown_size_tensors"] == ["q", "y"]


@pytest.mark.parametrize("make,point", [(projected_block, {"N": 3}), (builders.crnn, {"N": 3, "width": 64})])
def test_memory_formulas_are_the_figures_at_other_values(make, point):
    """Each formula shown, at other values of the free dims, is what the analysis at those values
    counts; a peak given without a formula is not claimed for them (crnn: a tensor of width/2
    steps is empty at width 1)."""
    from archkit.onnx.symbolic import value

    free = analyse_model(make(), connectivity=False).memory
    fixed = analyse_model(make(), input_shapes=point, connectivity=False).memory
    for k, f in free.formulas.items():
        assert value(f, point) == getattr(fixed, k), k
    for name, s in free.schedules.items():
        if s.peak.formula is not None:
            assert value(s.peak.formula, point) == fixed.schedules[name].peak.bytes, name
        else:
            assert s.peak.why_no_formula
    assert (free.runtime.peak.formula is None) == (make is builders.crnn)


def test_units():
    assert [binary(n) for n in (0, 1023, 1024, 10 * 2**20 + 2**19, 150 * 2**20, 3 * 2**30)] == \
        ["0 bytes", "1,023 bytes", "1.00 KiB", "10.5 MiB", "150 MiB", "3.00 GiB"]
    assert size_text(10_340_352) == "10,340,352 bytes (9.86 MiB)" and size_text(40) == "40 bytes"


# --- archkit analyse: JSON ---------------------------------------------------------------------------

def test_analyse_json_holds_the_memory_object(a):
    doc = json.loads(render_view(a, "block", "json"))["memory"]
    assert {k: doc[k] for k in ("weights", "inputs", "outputs", "activations", "activation_tensors",
                                "activation_buffers", "complete")} == \
        {"weights": WEIGHTS, "inputs": INPUTS, "outputs": Y, "activations": ACTIVATIONS, "activation_tensors": TENSORS,
         "activation_buffers": BUFFERS,
         "complete": True}
    assert doc["formulas"] == {"inputs": "1,024·N", "outputs": "40·N", "activations": "12,304·N"}
    ort, file = doc["orders"]["onnxruntime"], doc["orders"]["file"]
    assert ort["steps"] == file["steps"] == 9
    assert {k: ort["peak"][k] for k in ("bytes", "activations", "outputs", "step", "op", "block", "formula")} == \
        {"bytes": ORT_PEAK, "activations": ORT_PEAK, "outputs": 0, "step": 2, "op": CONV2, "block": "block1",
         "formula": "5,120·N"}
    assert [(t["tensor"], t["bytes"]) for t in ort["peak"]["live"]] == [("c1", C1), ("c2", C2)]
    assert (file["peak"]["bytes"], file["peak"]["formula"]) == (FILE_PEAK, "6,144·N")
    assert doc["onnxruntime_plan"] == {"peak": ORT_PEAK, "step": 2, "op": CONV2, "block": "block1", "buffers": 6,
                                       "reused": 0}
    assert doc["memory_aware_saving"] == {"bytes": FILE_PEAK - ORT_PEAK, "fraction": round(1 / 6, 4)}
    assert doc["top_blocks"] == [{"block": "block1", "peak_bytes": ORT_PEAK}, {"block": "head", "peak_bytes": S + G}]
    assert doc["peak_by_batch"] == {"dim": "N", "1": ORT_PEAK, "32": 32 * ORT_PEAK, "note": None}


# --- --by views ----------------------------------------------------------------------------------------

BY_BLOCK = ["block", "ops", "macs", "macs_formula", "flops", "params", "kernel_weights", "output_bytes",
            "output_bytes_formula", "weight_bytes", "peak_bytes"]


def test_block_and_layer_views_give_output_bytes_formulas_and_peaks(a):
    blocks = view(a, "block")
    assert list(blocks.columns) == BY_BLOCK
    assert list(blocks.output_bytes) == [P + C1 + R1 + C2 + S + R2, G + G + Y]  # Flatten's output counts in the costs
    assert list(blocks.output_bytes_formula) == [f"{P + C1 + R1 + C2 + S + R2:,}·N", f"{2 * G + Y:,}·N"]
    assert list(blocks.peak_bytes) == [max(ORT_CURVE[:6]), max(ORT_CURVE[6:])]
    layers = view(a, "layer").set_index("layer")
    # each op its own layer: the live bytes during its step in onnxruntime's order
    order = ["block1.conv1", "block1.relu1", "block1.conv2", "block1.proj", "block1.add", "block1.relu2", "head.pool",
             "head.flatten", "head.fc"]
    assert [layers.peak_bytes[k] for k in order] == list(ORT_CURVE)
    assert layers.output_bytes_formula["block1.conv1"] == f"{C1:,}·N"
    assert "peak_bytes" not in view(a, "op").columns and "peak_bytes" not in view(a, "type").columns
    assert peaks_by(a, "op_type") == {"Conv": C1 + C2, "Relu": C1, "Add": C2 + P + S, "GlobalAveragePool": S + G,
                                      "Flatten": G, "Gemm": G + Y}


def test_the_views_render_the_new_columns_in_every_format(a):
    md = render_view(a, "block", "md").splitlines()
    header = next(line for line in md if line.startswith("| block"))
    assert header == "| " + " | ".join(BY_BLOCK) + " |"
    assert f"| block1 | 6 | 74,752 | 74,752·N | 1,536 | 1,168 | 1,168 | 12,288 | 12,288·N | 4,672 | {ORT_PEAK:,} |" in md
    csv = render_view(a, "block", "csv").splitlines()
    assert csv[0] == ",".join(BY_BLOCK)
    assert csv[1] == f'block1,6,74752,"74,752·N",1536,1168,1168,12288,"12,288·N",4672,{ORT_PEAK}'
    rows = json.loads(render_view(a, "layer", "json"))["rows"]
    assert {r["layer"]: r["peak_bytes"] for r in rows}["block1.conv2"] == ORT_PEAK
    assert {r["layer"]: r["output_bytes_formula"] for r in rows}["head.fc"] == f"{Y}·N"


def test_no_formula_columns_without_free_dims_and_peaks_at_the_batch():
    fixed = view(analyse_model(projected_block(batch=2), connectivity=False), "block")
    assert list(fixed.columns) == [c for c in BY_BLOCK if not c.endswith("_formula")]
    assert list(fixed.peak_bytes) == [2 * max(ORT_CURVE[:6]), 2 * max(ORT_CURVE[6:])]


def test_a_layer_none_of_whose_ops_runs_in_the_main_graph_has_no_peak():
    """The ops inside a Loop's body are no steps: their layer's peak is empty, in every format."""
    a = analyse_model(builders.if_loop_scan(), connectivity=False)
    layers = view(a, "layer")
    loop = layers[layers.layer == "loop"]
    assert len(loop) == 1 and loop.peak_bytes.isna().all()
    steps = dict(zip(a.memory.runtime.steps, a.memory.runtime.curve))
    assert layers[layers.layer == "scan"].peak_bytes.iloc[0] == steps["scan"]
    assert "| loop | 2 | 32 | 0 | 0 | 0 | 33 | 0 |  | yes |" in render_view(a, "layer", "md")  # peak_bytes empty
    assert "loop,2,32,0,0,0,33,0,,True" in render_view(a, "layer", "csv").splitlines()
    assert next(r for r in json.loads(render_view(a, "layer", "json"))["rows"] if r["layer"] == "loop")["peak_bytes"] \
        is None
    # an If's branch not counted runs in no order: no peak either
    assert layers[~layers.summed].peak_bytes.isna().all()


def test_group_peaks_takes_any_grouping(a):
    rt = a.memory.runtime
    assert group_peaks(rt, {}) == dict(zip(rt.steps, rt.curve))  # each op its own group
    assert group_peaks(rt, dict.fromkeys(rt.steps, "all")) == {"all": ORT_PEAK}


# --- sweeps ------------------------------------------------------------------------------------------

def test_the_sweep_gives_the_peak_at_every_value(tmp_path):
    path = tmp_path / "residual.onnx"
    path.write_bytes(projected_block().SerializeToString())
    table = sweep(load_model(path), {"N": (1, 2, 8)})
    assert list(table.columns) == ["N", *SWEEP_COLUMNS, "complete"] and "peak_bytes" in SWEEP_COLUMNS
    assert list(table.peak_bytes) == [ORT_PEAK, 2 * ORT_PEAK, 8 * ORT_PEAK]
    assert render_sweep(table, "csv").splitlines()[:2] == ["N,macs,flops,params,peak_bytes,complete",
                                                          f"1,74792,1802,1218,{ORT_PEAK},True"]
    assert f"| 8 | {8 * 74_792:,} | {8 * 1_802:,} | 1,218 | {8 * ORT_PEAK:,} | yes |" in render_sweep(table, "md")
    from PIL import Image

    image = Image.open(io.BytesIO(sweep_chart(table, ("N",), "residual")))
    assert image.size == (1100, 450)


# --- reports -------------------------------------------------------------------------------------------

def _section(readme: str) -> str:
    return readme.split("## Memory\n", 1)[1].split("\n## ", 1)[0]


def test_the_report_has_a_memory_section(a):
    files = render(a, ["md", "png", "json"])
    section = _section(files["README.md"].decode())
    assert "| weights (initializers and Constant ops, held for the session) | 4,872 | 4.76 KiB |  |" in section
    assert "| graph inputs (the caller's memory) | 1,024 | 1.00 KiB | 1,024·N |" in section
    assert "| graph outputs (live from their op to the end of the run) | 40 |  | 40·N |" in section
    assert "| activations, each of the 7 tensors once (no reuse) | 12,304 | 12.0 KiB | 12,304·N |" in section
    assert ("| onnxruntime's order | its default order (a depth-first walk back from the last ops), reproduced | "
            "5,120 | 5.00 KiB | `/block1/conv2/Conv` | block1 | 5,120·N |") in section
    assert "| file order | the file's node order | 6,144 | 6.00 KiB | `/block1/conv2/Conv` | block1 | 6,144·N |" in section
    assert "| memory-aware order | " in section
    assert "| onnxruntime's allocation plan | " in section and "(6 buffers, 0 tensors reuse a dead one) | 5,120 |" in section
    assert ("The memory-aware order lowers the file order's peak by 1,024 bytes (1.00 KiB, 16.7%): 6,144 → 5,120 "
            "bytes.") in section
    assert ("Peak live memory in onnxruntime's order at batch 1: 5,120 bytes (5.00 KiB); at batch 32: 163,840 bytes "
            "(160 KiB), its formula at N = 32.") in section
    assert 32 * ORT_PEAK == 163_840
    assert "`c1` 4,096 bytes (activation made by `/block1/conv1/Conv`)" in section
    assert "| block1 | 5,120 | 5.00 KiB | 100% |" in section and "| head | 1,040 | 1.02 KiB | 20% |" in section
    assert "![residual: live bytes along onnxruntime's order](memory.png)" in section


def test_memory_png_decodes_and_draws_the_curve(a):
    from PIL import Image

    data = render(a, ["png"])["memory.png"]
    assert data == render(a, ["png"])["memory.png"]  # deterministic
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.size == (800, 440)  # 10 x 5.5 inches at 80 dpi
    colours = {c for _, c in image.getcolors(1 << 20)}
    assert (0x44, 0x72, 0xc4) in colours  # onnxruntime's curve
    assert (0xc0, 0x00, 0x00) in colours  # its peak
    assert "memory.png" not in render(a, ["md", "csv", "json"])


def test_summary_json_holds_archkits_figures_and_the_peak_at_batch_32(a):
    s = json.loads(render(a, ["json"])["summary.json"])["memory"]
    assert s["peak_by_batch"] == {"dim": "N", "1": ORT_PEAK, "32": 32 * ORT_PEAK, "note": None}
    assert s["orders"]["onnxruntime"]["peak"]["formula"] == "5,120·N"
    assert s["weights"] == WEIGHTS and s["top_blocks"][0] == {"block": "block1", "peak_bytes": ORT_PEAK}
    assert not {"measured", "runtime", "rss"} & set(s)  # nothing measured from a runtime


def test_a_fixed_batch_leaves_the_peak_at_32_unknown_and_says_why():
    a = analyse_model(projected_block(batch=2), connectivity=False)
    section = _section(render(a, ["md"])["README.md"].decode())
    assert ("at batch 1: not known; at batch 32: not known (the inputs' batch is fixed at 2)." in section)
    assert "in the free dims" not in section
    s = json.loads(render(a, ["json"])["summary.json"])["memory"]["peak_by_batch"]
    assert s == {"dim": None, "1": None, "32": None, "note": "the inputs' batch is fixed at 2"}


def test_the_index_compares_peaks_at_batch_1_and_32(a):
    s = json.loads(render(a, ["json"])["summary.json"])
    old = {"name": "old", "keras_params": {"total": 5}, "costs": {"macs": 9, "params": 7},
           "onnx": {"ops": 1, "size_bytes": 10}, "parity": None}  # from before the memory figures
    text = index([{**s, "folder": "residual"}, old])
    assert ("| architecture | Keras params | ONNX params | MACs | vs published MACs | ONNX ops | ONNX size | parity |"
            in text)  # the index's columns as they were
    memory = text.split("## Memory\n", 1)[1]
    assert "| architecture | weights | peak live memory, batch 1 | batch 32 |" in memory
    assert "| [residual](residual/README.md) | 4.76 KiB | 5.00 KiB | 160 KiB |" in memory
    assert "old" not in memory
    assert "## Memory" not in index([old])


# --- the command line ---------------------------------------------------------------------------------

def test_analyse_prints_and_writes_the_memory(tmp_path, capsys):
    path = tmp_path / "residual.onnx"
    path.write_bytes(projected_block().SerializeToString())
    assert main(["analyse", str(path), "--by", "block"]) == 0
    out = capsys.readouterr().out
    assert f"- peak live memory (onnxruntime's order): {size_text(ORT_PEAK)} at op `{CONV2}` (block block1) = 5,120·N" \
        in out
    assert "| " + " | ".join(BY_BLOCK) + " |" in out
    assert main(["analyse", str(path), "-o", str(tmp_path / "r"), "--format", "md,json,png"]) == 0
    assert {"README.md", "summary.json", "memory.png"} <= {p.name for p in (tmp_path / "r").iterdir()}
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["memory"]["peak_by_batch"]["32"] == 32 * ORT_PEAK
    fixed = analyse_file(path, input_shapes={"N": 32})
    assert fixed.memory.runtime.peak.bytes == 32 * ORT_PEAK  # the formula at 32 is the analysis at 32
