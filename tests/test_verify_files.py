"""verify FILE and bench FILE on the files users bring: free dims other than the batch given with
--input-shape (else an error naming them), values with --input-value (a sample rate that selects
an If's branch), real arrays with --inputs FILE.npz, and a failure inside an If traced back to the
graph input its condition depends on."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from archkit.cli import main
from archkit.errors import InputError, MalformedModelError, UsageError
from archkit.runtime.feeds import branch_inputs, from_npz, plan
from archkit.runtime.parity import compare, seeded_inputs
from tests import builders

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


# --- the models ----------------------------------------------------------------------------------

def detector() -> onnx.ModelProto:
    """A YOLO-style neck: images [batch, 3, height, width] → 3x3 conv (4 maps) → a stride-2 conv →
    Resize x2 (constant scales, as YOLOv8's upsample) → Concat with the full-size maps → a 1x1
    conv to 6 channels. At height = width = 1 the upsampled map is 2x2 and the Concat fails."""
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="stem/Conv"),
             helper.make_node("Relu", ["c1"], ["r1"], name="stem/Relu"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2], name="down/Conv"),
             helper.make_node("Resize", ["c2", "", "scales"], ["up"], mode="nearest", name="up/Resize"),
             helper.make_node("Concat", ["up", "r1"], ["cat"], axis=1, name="neck/Concat"),
             helper.make_node("Conv", ["cat", "w3", "b3"], ["output0"], name="head/Conv")]
    inits = [weight("w1", 4, 3, 3, 3), weight("b1", 4), weight("w2", 4, 4, 3, 3), weight("b2", 4),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"), weight("w3", 6, 8, 1, 1),
             weight("b3", 6)]
    return builders.model(nodes, {"images": ["batch", 3, "height", "width"]},
                          [builders.value("output0", ["batch", 6, None, None])], inits, name="detector")


def detector_macs(height: int, width: int) -> int:
    """Per image: 3x3 conv 3→4 at full size, 3x3 conv 4→4 at half size, 1x1 conv 8→6 at full size."""
    return 4 * 3 * 9 * height * width + 4 * 4 * 9 * (height // 2) * (width // 2) + 6 * 8 * height * width


VAD = """
<ir_version: 8, opset_import: ["" : 17]>
vad (float[batch, 64] x, int64 sr) => (float[batch, 8] prob) {
  k8 = Constant<value = int64 {8000}>()
  k16 = Constant<value = int64 {16000}>()
  is8 = Equal(sr, k8)
  prob = If(is8) <then_branch = at8 () => (float[batch, 8] p8) {
      i8 = Constant<value = int64[8] {0, 2, 4, 6, 8, 10, 12, 14}>()
      p8 = Gather<axis = 1>(x, i8)
  }, else_branch = not8 () => (float[batch, 8] pn) {
      is16 = Equal(sr, k16)
      pn = If(is16) <then_branch = at16 () => (float[batch, 8] p16) {
          i16 = Constant<value = int64[8] {0, 8, 16, 24, 32, 40, 48, 56}>()
          g16 = Gather<axis = 1>(x, i16)
          p16 = Sigmoid(g16)
      }, else_branch = other () => (float[batch, 8] po) {
          bad = Constant<value = int64[8] {100, 101, 102, 103, 104, 105, 106, 107}>()
          po = Gather<axis = 1>(x, bad)
      }>
  }>
}
"""


def vad() -> onnx.ModelProto:
    """A voice-activity model's sample-rate switch: sr == 8000 → one branch, 16000 → another, any
    other rate → a Gather out of bounds that onnxruntime refuses at run time (shape inference
    cannot see it). The nodes are unnamed, as many exporters leave them."""
    m = onnx.parser.parse_model(VAD)
    onnx.checker.check_model(m, full_check=True)
    return m


LOOP = """
<ir_version: 8, opset_import: ["" : 17]>
looped (float[4, 8] x, int64 steps) => (float[4, 8] y) {
  keep = Constant<value = bool {1}>()
  two = Constant<value = int64 {2}>()
  trips = Mul(steps, two)
  y = Loop(trips, keep, x) <body = body (int64 i, bool c, float[4, 8] acc) => (bool co, float[4, 8] out) {
      co = Identity(c)
      three = Constant<value = int64 {3}>()
      late = Greater(i, three)
      out = If(late) <then_branch = a () => (float[4, 8] oa) {
          bad = Constant<value = int64[8] {100, 101, 102, 103, 104, 105, 106, 107}>()
          oa = Gather<axis = 1>(acc, bad)
      }, else_branch = b () => (float[4, 8] ob) {
          ob = Relu(acc)
      }>
  }>
}
"""


def save(folder: Path, name: str, m: onnx.ModelProto) -> str:
    path = folder / name
    onnx.save(m, path)
    return str(path)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fails(capsys, folder: Path, argv: list, code: int, *fragments: str) -> str:
    """Run archkit; expect `code` and one error line holding each fragment; nothing written."""
    before = snapshot(folder)
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == code, err
    assert err.startswith("archkit: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err
    assert snapshot(folder) == before, "a file was created, changed or removed"
    return err


def passes(capsys, argv: list) -> str:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


# --- free dims --------------------------------------------------------------------------------

def test_free_dims_other_than_the_batch_must_be_given(tmp_path, capsys):
    f = save(tmp_path, "det.onnx", detector())
    for command in (["verify", f], ["bench", f, "--runs", "5"]):
        fails(capsys, tmp_path, command, UsageError.exit_code, "input 'images' has free dims height, width",
              "--input-shape images=1,3,<height>,<width>", "--input-shape height=<height>")
    # the batch fixed by the whole shape: several batch sizes cannot be run
    fails(capsys, tmp_path, ["verify", f, "--input-shape", "images=1,3,64,64", "--batch-sizes", "1,8"], 2,
          "--batch-sizes 1,8: --input-shape fixes the batch", "by name")
    fails(capsys, tmp_path, ["verify", f, "--input-shape", "images=1,4,64,64"], 2, "fixes this input's shape")
    fails(capsys, tmp_path, ["verify", f, "--input-shape", "pictures=1,3,64,64"], 2, "no graph input or symbolic dim")
    # set to 1, as a silent default would: the upsampled 2x2 map meets the 1x1 one
    fails(capsys, tmp_path, ["verify", f, "--input-shape", "height=1", "--input-shape", "width=1", "--seeds", "1"],
          MalformedModelError.exit_code, "onnxruntime cannot run", "Concat")


def test_the_shapes_fed_follow_the_options():
    m = detector()
    whole = plan(m, input_shapes={"images": (1, 3, 64, 64)})
    assert not whole.batched and whole.batches((1, 8)) == (1,)
    assert whole.feed(1, 0)["images"].shape == (1, 3, 64, 64)
    named = plan(m, input_shapes={"height": (64,), "width": (32,)})
    assert named.batches((1, 8)) == (1, 8)
    assert [named.feed(b, 0)["images"].shape for b in (1, 8)] == [(1, 3, 64, 32), (8, 3, 64, 32)]
    # a file whose only free dim is the batch is fed what Keras parity feeds an archkit export
    small = builders.small_cnn()
    for batch, seed in ((1, 0), (3, 1003)):
        want = seeded_inputs(small, batch, seed=seed)
        got = plan(small).feed(batch, seed)
        assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


def test_detector_verifies_and_benches_at_the_shape_given(tmp_path, capsys):
    f = save(tmp_path, "det.onnx", detector())
    out = passes(capsys, ["verify", f, "--input-shape", "images=1,3,64,64", "--seeds", "1"])
    assert "seeds 0; batch sizes 1" in out and "parity ok" in out
    out = passes(capsys, ["verify", f, "--input-shape", "height=64", "--input-shape", "width=32", "--seeds", "1",
                          "--batch-sizes", "1,2"])
    assert "batch sizes 1, 2" in out and "parity ok" in out
    out = passes(capsys, ["bench", f, "--input-shape", "height=32", "--input-shape", "width=48", "--threads", "1",
                          "--runs", "5", "--batch-sizes", "2"])
    assert f"MACs per sample (archkit's count): {detector_macs(32, 48):,}" in out
    assert "onnxruntime  batch   2: median" in out


# --- values: an If on the sample rate --------------------------------------------------------------

def test_a_failing_branch_names_the_input_its_condition_depends_on(tmp_path, capsys):
    f = save(tmp_path, "vad.onnx", vad())
    err = fails(capsys, tmp_path, ["verify", f, "--seeds", "1"], MalformedModelError.exit_code,
                "onnxruntime cannot run", "indices element out of data bounds",
                "inside an If whose condition depends on input 'sr'", "--input-value sr=V")
    assert "(fed 1, seeded)" in err or "(fed 0, seeded)" in err
    fails(capsys, tmp_path, ["bench", f, "--runs", "5", "--threads", "1"], 4, "'sr'", "--input-value sr=V")
    fails(capsys, tmp_path, ["verify", f, "--input-value", "sr=22050", "--seeds", "1"], 4,
          "(fed 22050, given with --input-value)")


@pytest.mark.parametrize("rate", [8000, 16000])
def test_a_valid_sample_rate_passes(tmp_path, capsys, rate):
    f = save(tmp_path, "vad.onnx", vad())
    out = passes(capsys, ["verify", f, "--input-value", f"sr={rate}", "--seeds", "1", "--batch-sizes", "1,3"])
    assert f"vad.onnx (sr={rate})" in out and "batch sizes 1, 3" in out and "parity ok" in out


def test_input_values_are_checked_against_the_input(tmp_path, capsys):
    f = save(tmp_path, "vad.onnx", vad())
    for value, fragment in (("sr=16000.5", "the input holds int64: give integers"),
                            ("sr=8000,16000", "2 value(s) given; the input has shape []"),
                            ("rate=16000", "--input-value names no graph input: ['rate']"),
                            ("sr=1e30", "give integers from")):
        fails(capsys, tmp_path, ["verify", f, "--input-value", value], 2, fragment)
    fails(capsys, tmp_path, ["verify", f, "--input-value", "sr=abc"], 2, "expected NAME=V")
    # a value list fills a tensor; its one free dim is read from the count
    fed = plan(vad(), input_values={"x": tuple(range(128)), "sr": (8000,)})
    assert fed.feed(3, 0)["x"].shape == (2, 64) and fed.feed(3, 0)["sr"].dtype == np.int64


def test_the_condition_is_followed_through_subgraphs_and_loops():
    message = ("Non-zero status code returned while running If node. Name:'' Status Message: Non-zero status code "
               "returned while running If node. Name:'' Status Message: Non-zero status code returned while running "
               "Gather node. Name:'' Status Message: indices element out of data bounds")
    assert branch_inputs(vad(), message) == ("If", ["sr"])
    assert branch_inputs(vad(), "running Gather node. Name:'g' Status Message: bad") == ("", [])
    looped = onnx.parser.parse_model(LOOP)
    loop_message = ("running Loop node. Name:'' Status Message: running If node. Name:'' Status Message: "
                    "running Gather node. Name:'' Status Message: out of bounds")
    # the If in the body depends on the iteration count (from `steps`), not on the carried `x`
    assert branch_inputs(looped, loop_message) == ("Loop", ["steps"])


def test_name_targets_take_none_of_the_file_options(capsys, tmp_path):
    for command in ("verify", "bench"):
        for option in (["--input-shape", "x=1,3"], ["--input-value", "sr=1"], ["--inputs", "x.npz"]):
            fails(capsys, tmp_path, [command, "baseline_cnn", *option], 2, option[0], "applies to FILE targets")


# --- real arrays: --inputs FILE.npz ------------------------------------------------------------------

def test_inputs_npz_runs_the_arrays_at_their_batch(tmp_path, capsys):
    f = save(tmp_path, "vad.onnx", vad())
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "good.npz", x=rng.standard_normal((3, 64)).astype(np.float32), sr=np.array(16000))
    out = passes(capsys, ["verify", f, "--inputs", tmp_path / "good.npz"])
    assert f"inputs from {tmp_path / 'good.npz'}; batch size 3" in out and "parity ok" in out
    feeds = from_npz(vad(), tmp_path / "good.npz")
    assert feeds.batch == 3 and feeds.runs((1, 8), (0, 1, 2))[0][1] == 3 and len(feeds.runs((1, 8), (0, 1))) == 1


def test_inputs_npz_that_do_not_fit_are_one_line_errors(tmp_path, capsys):
    f = save(tmp_path, "vad.onnx", vad())
    x = np.zeros((2, 64), np.float32)
    sr = np.array(16000)
    cases = {
        "missing.npz": ({"x": x}, 2, "no array for input 'sr'"),
        "extra.npz": ({"x": x, "sr": sr, "state": x}, 2, "array 'state' is no input of the model"),
        "dtype.npz": ({"x": x.astype(np.float64), "sr": sr}, 2, "input 'x' holds float (float32); its array is float64"),
        "int32.npz": ({"x": x, "sr": sr.astype(np.int32)}, 2, "input 'sr' holds int64; its array is int32"),
        "shape.npz": ({"x": np.zeros((2, 32), np.float32), "sr": sr}, 2,
                      "input 'x' has shape [batch, 64]; its array's shape is [2, 32]"),
        "rank.npz": ({"x": x, "sr": np.array([16000])}, 2, "input 'sr' has shape []; its array's shape is [1]"),
    }
    for name, (arrays, code, fragment) in cases.items():
        np.savez(tmp_path / name, **arrays)
        fails(capsys, tmp_path, ["verify", f, "--inputs", tmp_path / name], code, f"--inputs {tmp_path / name}",
              fragment)
    good = (tmp_path / "missing.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.npz").write_text("not an archive\n")
    with zipfile.ZipFile(tmp_path / "raw.npz", "w") as z:
        z.writestr("x", b"raw bytes")
    np.save(tmp_path / "one.npy", x)
    for name, fragment in (("truncated.npz", "not a readable .npz"), ("text.npz", "never loads"),
                           ("raw.npz", "'x' is no .npy array"), ("one.npy", "holds one array"),
                           ("absent.npz", "no such file")):
        fails(capsys, tmp_path, ["verify", f, "--inputs", tmp_path / name], InputError.exit_code, fragment)
    np.savez(tmp_path / "good.npz", x=x, sr=sr)
    for extra, fragment in ((["--seeds", "2"], "--seeds does not apply with --inputs"),
                            (["--batch-sizes", "1"], "--batch-sizes does not apply with --inputs"),
                            (["--input-value", "sr=8000"], "--input-shape and --input-value do not apply")):
        fails(capsys, tmp_path, ["verify", f, "--inputs", tmp_path / "good.npz", *extra], 2, fragment)


def test_an_output_without_the_batch_leading_is_one_sample():
    o = compare("state", np.ones(3), np.ones(3), batch=2, seed=0, precision="fp32")
    assert o.max_abs == 0 and o.argmax_agreement == 1.0


# --- the onnx package's own files ---------------------------------------------------------------------

SHIPPED = ["light/light_squeezenet.onnx", "pytorch-converted/test_Conv2d/model.onnx",
           "pytorch-converted/test_Embedding/model.onnx"]


@pytest.mark.parametrize("relative", SHIPPED)
def test_the_onnx_package_files_verify_on_their_own_inputs(tmp_path, capsys, relative):
    """Each file with seeded inputs, and with the input the onnx package ships beside it
    (test_data_set_0/input_0.pb) as an .npz; the Conv2d file also with its batch declared free."""
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"this onnx package does not ship {relative}")
    assert "parity ok" in passes(capsys, ["verify", path, "--seeds", "1", "--batch-sizes", "1"])
    m = onnx.load(path)
    shipped = path.parent / "test_data_set_0" / "input_0.pb"
    if relative.startswith("pytorch") and shipped.is_file():
        t = onnx.TensorProto()
        t.ParseFromString(shipped.read_bytes())
        np.savez(tmp_path / "real.npz", **{m.graph.input[0].name: numpy_helper.to_array(t)})
        out = passes(capsys, ["verify", path, "--inputs", tmp_path / "real.npz"])
        assert f"batch size {numpy_helper.to_array(t).shape[0]}" in out
    if relative.endswith("test_Conv2d/model.onnx"):
        m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
        for out_ in m.graph.output:
            out_.type.tensor_type.shape.dim[0].dim_param = "N"
        free = save(tmp_path, "conv2d_free_batch.onnx", m)
        assert "batch sizes 1, 3" in passes(capsys, ["verify", free, "--seeds", "1", "--batch-sizes", "1,3"])


def test_a_file_with_an_undeclared_input_shape_asks_for_it(tmp_path, capsys):
    node = helper.make_node("Relu", ["x"], ["y"])
    m = builders.model([node], [builders.value("x", None)], [builders.value("y", None)])
    f = save(tmp_path, "noshape.onnx", m)
    fails(capsys, tmp_path, ["verify", f], 2, "input 'x' declares no shape", "--input-shape x=D1,D2,...")
    assert plan(m, input_shapes={"x": (2, 3)}).feed(1, 0)["x"].shape == (2, 3)
