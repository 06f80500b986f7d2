"""Hostile, broken and huge inputs: each case builds its own files and checks the whole contract:
the documented exit code, one line on stderr naming the file and the problem, no traceback, no
file created, changed or removed anywhere under the test's folder (the input included), no hang."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from archkit.cli import main
from tests import builders
from tests.builders import (
    CONV_WEIGHT_BYTES,
    SMALL_CNN_MACS,
    conv_weight_bytes,
    if_loop_scan,
    nested_ifs,
    set_external,
    small_cnn,
)

F = TensorProto.FLOAT
ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _no_hang():
    """Every case here finishes in seconds; a hang fails instead of blocking the suite."""
    def stop(*_):
        raise TimeoutError("hostile-input case took more than 120 s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _snapshot(folder: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        if stat.S_ISREG(st.st_mode):
            out[str(p)] = ("file", hashlib.sha256(p.read_bytes()).hexdigest() if os.access(p, os.R_OK) or ROOT else "",
                           st.st_mtime_ns, st.st_mode)
        else:
            out[str(p)] = ("other", stat.S_IFMT(st.st_mode), st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else 0)
    return out


def fails(capsys, folder: Path, argv: list, code: int, *fragments: str, name: str | None = None) -> str:
    """Run archkit; expect `code`, one error line naming the file and each fragment, nothing changed."""
    before = _snapshot(folder)
    rc = main([str(a) for a in argv])
    _out, err = capsys.readouterr()
    assert rc == code, err
    assert err.startswith("archkit: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    if name is not None:
        assert name in err, err
    for f in fragments:
        assert f in err, err
    assert _snapshot(folder) == before, "a file was created, changed or removed"
    return err


def write(path: Path, model: onnx.ModelProto | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return path


# --- 1-3: missing, unreadable, not a model ---------------------------------------------------

def test_missing_path_and_folder(tmp_path, capsys):
    fails(capsys, tmp_path, ["analyse", tmp_path / "nope.onnx"], 3, "no such file", name="nope.onnx")
    (tmp_path / "dir.onnx").mkdir()
    fails(capsys, tmp_path, ["analyse", tmp_path / "dir.onnx"], 3, "is a folder", name="dir.onnx")
    fails(capsys, tmp_path, ["connectivity", tmp_path / "nope.onnx"], 3, "no such file")
    os.mkfifo(tmp_path / "fifo.onnx")  # opening it would block
    fails(capsys, tmp_path, ["analyse", tmp_path / "fifo.onnx"], 3, "not a regular file")
    fails(capsys, tmp_path, ["analyse", "/dev/zero"], 3, "not a regular file")
    fails(capsys, tmp_path, ["verify", tmp_path / "nope.onnx"], 3, "no such file")


def test_unreadable_file(tmp_path, capsys, monkeypatch):
    f = write(tmp_path / "locked.onnx", small_cnn())
    f.chmod(0)
    if ROOT:  # permissions do not stop root: make the open fail as it would for anyone else
        import archkit.onnx.load

        def denied(*a, **k):
            raise PermissionError(13, "Permission denied")
        monkeypatch.setattr(archkit.onnx.load, "open", denied, raising=False)
    try:
        fails(capsys, tmp_path, ["analyse", f], 3, "cannot read", "Permission denied", name="locked.onnx")
    finally:
        f.chmod(0o644)


def test_empty_file(tmp_path, capsys):
    f = write(tmp_path / "empty.onnx", b"")
    fails(capsys, tmp_path, ["analyse", f], 4, "empty file", name="empty.onnx")


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from archkit.io import png_bytes

    fig = plt.figure(figsize=(1, 1))
    return png_bytes(fig, dpi=20)


def _zip() -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("model.onnx", small_cnn().SerializeToString())
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["truncated", "random", "png", "zip"])
def test_not_an_onnx_model(tmp_path, capsys, kind):
    data = {"truncated": lambda: small_cnn().SerializeToString()[:700],
            "random": lambda: random.Random(0).randbytes(4096),
            "png": _png, "zip": _zip}[kind]()
    f = write(tmp_path / f"{kind}.onnx", data)
    fails(capsys, tmp_path, ["analyse", f], 4, name=f"{kind}.onnx")
    fails(capsys, tmp_path, ["verify", f], 4, name=f"{kind}.onnx")


# --- 4: size limit ---------------------------------------------------------------------------

def test_size_limit_is_settable(tmp_path, capsys):
    f = write(tmp_path / "m.onnx", small_cnn())
    size = f.stat().st_size
    assert main(["analyse", str(f), "--max-bytes", str(size)]) == 0
    capsys.readouterr()
    fails(capsys, tmp_path, ["analyse", f, "--max-bytes", str(size - 1)], 7, "exceeds", f"{size - 1:,}-byte limit")
    fails(capsys, tmp_path, ["analyse", f, "--max-bytes", "1K"], 7, "1,024-byte limit")
    fails(capsys, tmp_path, ["analyse", f, "--max-bytes", "lots"], 2, "--max-bytes")


def test_over_2gib_refused_before_reading(tmp_path):
    """A sparse 2 GiB file under a 1 GiB address-space limit: reading it would fail, refusing it does not."""
    f = tmp_path / "huge.onnx"
    with open(f, "wb") as fh:
        fh.truncate(2**31)
    proc = _limited(["analyse", str(f)], tmp_path)
    assert proc.returncode == 7, proc.stderr
    assert "exceeds the 2,147,483,647-byte limit" in proc.stderr and proc.stderr.count("\n") == 1


# --- 5-8: external data ----------------------------------------------------------------------

def _outside(tmp_path: Path) -> Path:
    """A file with the right bytes outside the model's folder: a naive reader would accept it."""
    secret = tmp_path / "outside" / "weights.bin"
    secret.parent.mkdir(exist_ok=True)
    secret.write_bytes(conv_weight_bytes())
    return secret


@pytest.mark.parametrize("location", ["../outside/weights.bin", "sub/../../outside/weights.bin", "/etc/passwd",
                                      "C:\\weights.bin", "c:weights.bin", "\\\\server\\share\\weights.bin",
                                      "//server/share/weights.bin", "sub\\..\\..\\outside\\weights.bin", "..",
                                      "sub/\0/weights.bin"])
def test_external_location_outside_the_folder(tmp_path, capsys, location):
    _outside(tmp_path)
    (tmp_path / "model" / "sub").mkdir(parents=True)
    f = write(tmp_path / "model" / "m.onnx", small_cnn(external=location))
    err = fails(capsys, tmp_path, ["analyse", f], 5, "external data location", name="m.onnx")
    assert "conv.weight" in err
    fails(capsys, tmp_path, ["verify", f], 5)
    fails(capsys, tmp_path, ["bench", f, "--no-keras"], 5)


def test_external_data_through_symlinks(tmp_path, capsys):
    secret = _outside(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    (model / "link.bin").symlink_to(secret)
    (model / "linkdir").symlink_to(secret.parent, target_is_directory=True)
    (model / "inside.bin").write_bytes(conv_weight_bytes())
    (model / "samedir.bin").symlink_to(model / "inside.bin")  # inside the folder, still a link
    for loc, what in (("link.bin", "resolves outside the model's folder"),
                      ("linkdir/weights.bin", "resolves outside the model's folder"),
                      ("samedir.bin", "goes through a symbolic link ('samedir.bin')")):
        f = write(model / f"{loc.replace('/', '_')}.onnx", small_cnn(external=loc))
        fails(capsys, tmp_path, ["analyse", f], 5, what)


def test_external_data_that_is_not_a_regular_file(tmp_path, capsys):
    model = tmp_path / "model"
    (model / "folder.bin").mkdir(parents=True)
    os.mkfifo(model / "fifo.bin")  # opening it would block: it must never be opened
    for loc in ("folder.bin", "fifo.bin"):
        f = write(model / f"{loc}.onnx", small_cnn(external=loc))
        fails(capsys, tmp_path, ["analyse", f], 5, "not a regular file")
    (model / "plain").write_bytes(b"x")
    f = write(model / "through_file.onnx", small_cnn(external="plain/weights.bin"))
    fails(capsys, tmp_path, ["analyse", f], 5, "not a folder")


def test_hardlinked_external_data(tmp_path, capsys):
    secret = _outside(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    os.link(secret, model / "weights.bin")
    f = write(model / "m.onnx", small_cnn(external="weights.bin"))
    fails(capsys, tmp_path, ["analyse", f], 5, "2 hard links")


@pytest.mark.parametrize("entries,code,fragment", [
    ({"basepath": "/etc"}, 5, "unknown external data key 'basepath'"),
    ({"offset": "-4"}, 4, "offset '-4' is not a non-negative integer"),
    ({"offset": "1.5"}, 4, "offset '1.5'"),
    ({"offset": "0x10"}, 4, "offset '0x10'"),
    ({"length": ""}, 4, "length ''"),
    ({"length": "99999999999999999999999"}, 4, "is not a non-negative integer"),
    ({"length": str(CONV_WEIGHT_BYTES - 4)}, 4, "its external data length is 860"),
    ({"offset": "8"}, 4, "beyond the file's 864 bytes"),
])
def test_bad_external_data_entries(tmp_path, capsys, entries, code, fragment):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(conv_weight_bytes())
    m = small_cnn()
    set_external(m.graph.initializer[0], "weights.bin", **entries)
    f = write(model / "m.onnx", m)
    fails(capsys, tmp_path, ["analyse", f], code, fragment)


def test_duplicate_external_key_is_refused(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(conv_weight_bytes())
    m = small_cnn(external="weights.bin")
    e = m.graph.initializer[0].external_data.add()
    e.key, e.value = "location", "../outside/weights.bin"
    fails(capsys, tmp_path, ["analyse", write(model / "m.onnx", m)], 5, "given twice")


def test_external_data_shorter_than_declared(tmp_path, capsys):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(conv_weight_bytes()[:100])
    f = write(model / "m.onnx", small_cnn(external="weights.bin"))
    fails(capsys, tmp_path, ["analyse", f], 4, "beyond the file's 100 bytes")


def test_valid_external_data_is_accepted_and_runs(tmp_path, capsys):
    model = tmp_path / "model"
    (model / "data").mkdir(parents=True)
    (model / "data" / "weights.bin").write_bytes(conv_weight_bytes())
    f = write(model / "m.onnx", small_cnn(external="data/weights.bin"))
    assert main(["analyse", str(f), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["total"]["macs"] == SMALL_CNN_MACS and err == ""
    assert main(["verify", str(f), "--seeds", "1", "--batch-sizes", "2"]) == 0, capsys.readouterr().err


# --- 9: external data missing ----------------------------------------------------------------

def test_missing_external_data_costs_from_dims_with_a_warning(tmp_path, capsys):
    f = write(tmp_path / "m.onnx", small_cnn(external="weights.bin"))
    assert main(["analyse", str(f), "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["total"]["macs"] == SMALL_CNN_MACS
    assert err.startswith("archkit: warning: ") and "external data missing ('weights.bin')" in err
    assert main(["analyse", str(f), "-o", str(tmp_path / "rep")]) == 0
    assert "external data missing" in (tmp_path / "rep" / "README.md").read_text()
    capsys.readouterr()
    for argv in (["verify", f], ["bench", f, "--no-keras", "--runs", "1"]):
        fails(capsys, tmp_path, argv, 3, "external data file 'weights.bin' is missing", "needs the weights")


def test_tensor_without_data_is_like_missing_weights(tmp_path, capsys):
    m = small_cnn()
    m.graph.initializer[2].ClearField("raw_data")  # fc.weight declares 10x8, holds nothing
    f = write(tmp_path / "m.onnx", m)
    assert main(["analyse", str(f)]) == 0
    assert "hold no data ('fc.weight')" in capsys.readouterr().err
    assert main(["connectivity", str(f)]) == 0  # reads in-file kernels, skips the absent one
    capsys.readouterr()
    fails(capsys, tmp_path, ["verify", f], 3, "'fc.weight' holds no data")


# --- 10: sizes that do not match, element counts that overflow --------------------------------

def _tensor_model(t: onnx.TensorProto) -> onnx.ModelProto:
    return builders.model([helper.make_node("Add", ["x", t.name], ["y"], name="add")], {"x": [1]}, ["y"], inits=[t])


@pytest.mark.parametrize("case,fragment", [
    ("raw_short", "holds 12 bytes"),
    ("typed_long", "holds 5"),
    ("overflow", "overflow int64"),
    ("negative", "negative dimension"),
    ("huge_no_bytes", "holds 4 bytes"),
])
def test_tensor_sizes(tmp_path, capsys, case, fragment):
    t = onnx.TensorProto(name="w", data_type=F)
    if case == "raw_short":
        t.dims[:] = [4]
        t.raw_data = b"\0" * 12
    elif case == "typed_long":
        t.dims[:] = [4]
        t.float_data[:] = [1.0] * 5
    elif case == "overflow":
        t.dims[:] = [2**32, 2**32]
        t.raw_data = b"\0" * 4
    elif case == "negative":
        t.dims[:] = [-1]
    else:
        t.dims[:] = [2**31, 2**31]  # 2^62 elements: fits int64, not in memory
        t.raw_data = b"\0" * 4
    f = write(tmp_path / "m.onnx", _tensor_model(t))
    fails(capsys, tmp_path, ["analyse", f], 4, fragment, "'w'")


_LIMIT_GIB = 3


def _limited(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run archkit in a child whose address space is capped: any huge allocation fails there."""
    code = ("import resource, sys; lim = int(sys.argv[1]) * 2**30; "
            "resource.setrlimit(resource.RLIMIT_AS, (lim, lim)); "
            "from archkit.cli import main; sys.exit(main(sys.argv[2:]))")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, str(_LIMIT_GIB), *argv], check=False, capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def test_no_huge_allocation_under_an_address_space_limit(tmp_path):
    big = onnx.TensorProto(name="w", data_type=F, dims=[2**31, 2**31], raw_data=b"\0" * 4)
    declared = set_external(onnx.TensorProto(name="w", data_type=F, dims=[2**20, 2**20]), "w.bin")
    (tmp_path / "w.bin").write_bytes(b"\0" * 16)
    # valid, but its output has 2^40 elements: the shape is costed, the tensor never made
    shape = numpy_helper.from_array(np.array([2**20, 2**20], np.int64), "shape")
    valid = builders.model([helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill"),
                            helper.make_node("Add", ["big", "x"], ["y"], name="add")], {"x": [1]}, ["y"], inits=[shape])
    # value propagation would compute these element by element (onnx's took 14 GB for 1e8)
    i64 = lambda name, v: numpy_helper.from_array(np.array(v, np.int64), name)
    ranged = builders.model([helper.make_node("Range", ["s", "l", "d"], ["r"], name="range"),
                             helper.make_node("Cast", ["r"], ["rf"], name="cast", to=F),
                             helper.make_node("NonZero", ["x"], ["nz"], name="nz"),  # a shape only values give
                             helper.make_node("Add", ["rf", "x"], ["y"], name="add")], {"x": [1]}, ["y", "nz"],
                            inits=[i64("s", 0), i64("l", 10**9), i64("d", 1)])
    hidden = builders.model([helper.make_node("Mul", ["a", "b"], ["n"], name="mul"),  # 10^5 * 10^5, known only by value
                             helper.make_node("ConstantOfShape", ["n"], ["big"], name="fill"),
                             helper.make_node("Add", ["big", "x"], ["y"], name="add")], {"x": [1]}, ["y"],
                            inits=[i64("a", [10**5]), i64("b", [10**5])])
    cases = {"big.onnx": (_tensor_model(big), 4), "declared.onnx": (_tensor_model(declared), 4),
             "valid.onnx": (valid, 0), "range.onnx": (ranged, 0), "hidden.onnx": (hidden, 0)}
    for name, (m, _) in cases.items():
        write(tmp_path / name, m)
    baseline = _limited(["analyse", "valid.onnx", "--format", "json"], tmp_path)
    assert baseline.returncode == 0, baseline.stderr
    assert json.loads(baseline.stdout)["total"]["flops"] >= 2**40  # the Add over 2^40 elements
    for name, (_, code) in cases.items():
        proc = _limited(["analyse", name], tmp_path)
        assert proc.returncode == code, (name, proc.stderr)
        assert "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr


# --- 11: unknown ops and custom domains ------------------------------------------------------

def _custom_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("FancyOp", ["a"], ["b"], name="fancy", domain="com.example"),
             helper.make_node("NoSuchOp", ["b"], ["y"], name="nosuch")]
    return builders.model(nodes, {"x": [1, 8]}, ["y"], opsets=[helper.make_opsetid("com.example", 1)])


def test_unknown_ops_are_listed_and_strict_refuses(tmp_path, capsys):
    f = write(tmp_path / "m.onnx", _custom_model())
    out_dir = tmp_path / "rep"
    assert main(["analyse", str(f), "-o", str(out_dir)]) == 0
    out, _ = capsys.readouterr()
    assert "no cost rule for" in out and "com.example" in out and "NoSuchOp" in out
    readme = (out_dir / "README.md").read_text()
    assert "Ops not costed" in readme and "FancyOp" in readme and "NoSuchOp" in readme
    fails(capsys, tmp_path, ["analyse", f, "--strict"], 6, "no cost rule", "--strict")
    fails(capsys, tmp_path, ["analyse", f, "--strict", "-o", tmp_path / "rep2"], 6, "--strict")
    assert not (tmp_path / "rep2").exists()


# --- 12: symbolic and zero-size dims, malformed --input-shape ---------------------------------

def test_symbolic_and_zero_size_dims(tmp_path, capsys):
    f = write(tmp_path / "m.onnx", small_cnn(batch="N"))
    assert main(["analyse", str(f), "--format", "json", "--input-shape", "N=4"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] == 4 * SMALL_CNN_MACS
    assert main(["analyse", str(f), "--format", "json", "--input-shape", "N=0"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] == 0
    zero = write(tmp_path / "zero.onnx", small_cnn(batch=0))
    assert main(["analyse", str(zero), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["macs"] == 0


@pytest.mark.parametrize("shape", ["image", "image=", "=1,3,16,16", "image=1,,16,16", "image=1,-3,16,16",
                                   "image=1,3,a,16", "image=1,3,16", "N=1,2", "nosuch=1", "image=1,4,16,16"])
def test_malformed_input_shape(tmp_path, capsys, shape):
    f = write(tmp_path / "m.onnx", small_cnn(batch=1 if shape == "image=1,4,16,16" else "N"))
    fails(capsys, tmp_path, ["analyse", f, "--input-shape", shape], 2, "--input-shape")


# --- 13-14: graph structure --------------------------------------------------------------------

def test_cycle_and_unsorted_graph(tmp_path, capsys):
    cyc = builders.model([helper.make_node("Relu", ["b"], ["a"], name="p"), helper.make_node("Neg", ["a"], ["b"], name="q")],
                         {"x": [2]}, ["b"])
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "cycle.onnx", cyc)], 4, "cycle", name="cycle.onnx")
    m = small_cnn()
    nodes = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(reversed(nodes))
    f = write(tmp_path / "unsorted.onnx", m)
    assert main(["analyse", str(f), "--format", "json", "--by", "op"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"]["macs"] == SMALL_CNN_MACS and doc["complete"]
    assert [r["op_type"] for r in doc["rows"]] == ["Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm"]


def test_duplicate_and_dangling_names(tmp_path, capsys):
    twice = builders.model([helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Neg", ["x"], ["y"], name="b")],
                           {"x": [2]}, ["y"])
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "twice.onnx", twice)], 4, "produced twice")
    out_twice = builders.model([helper.make_node("Relu", ["x"], ["y"], name="a")], {"x": [2]}, ["y", "y"])
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "outs.onnx", out_twice)], 4, "listed twice")
    dangling = builders.model([helper.make_node("Add", ["x", "ghost"], ["y"], name="a")], {"x": [2]}, ["y"])
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "dangling.onnx", dangling)], 4, "'ghost'", "provides")
    orphan = builders.model([helper.make_node("Relu", ["x"], ["y"], name="a")], {"x": [2]}, ["y", "nowhere"])
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "orphan.onnx", orphan)], 4, "'nowhere'")
    # an input nobody reads is harmless; empty and repeated node names are still distinct ops
    unused = builders.model([helper.make_node("Relu", ["x"], ["a"], name=""), helper.make_node("Relu", ["a"], ["b"], name=""),
                             helper.make_node("Neg", ["b"], ["c"], name="same"), helper.make_node("Neg", ["c"], ["y"], name="same")],
                            {"x": [2, 3], "unused": [4]}, ["y"])
    assert main(["analyse", str(write(tmp_path / "names.onnx", unused)), "--format", "json", "--by", "op"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["total"]["ops"] == 4 and doc["total"]["flops"] == 4 * 6
    assert len({r["node"] for r in doc["rows"]}) == 4


def test_names_that_are_not_utf8(tmp_path, capsys):
    m = small_cnn()
    m.graph.node[1].name = "RELU_NAME"
    data = m.SerializeToString().replace(b"RELU_NAME", b"RELU\xff\xfeAME")
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "m.onnx", data)], 4, "not valid UTF-8")
    m = small_cnn()
    m.graph.initializer[0].name = "CONVW_NAME"
    m.graph.node[0].input[1] = "CONVW_NAME"
    data = m.SerializeToString().replace(b"CONVW_NAME", b"CONV\xff\xfeNAME")
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "w.onnx", data)], 4, "not valid UTF-8")


# --- 15: subgraphs -----------------------------------------------------------------------------

def test_if_loop_scan_are_walked(tmp_path, capsys):
    f = write(tmp_path / "m.onnx", if_loop_scan())
    assert main(["analyse", str(f), "--format", "json", "--by", "op"]) == 0
    doc = json.loads(capsys.readouterr().out)
    types = {r["op_type"] for r in doc["rows"]}
    assert {"If", "Loop", "Scan", "MatMul", "Add"} <= types
    assert doc["total"]["macs"] == 2 * (2 * 4 * 4)  # the then-branch and the loop body's MatMul
    assert doc["per_iteration"]


def test_subgraphs_nested_too_deep(tmp_path, capsys):
    assert main(["analyse", str(write(tmp_path / "ok.onnx", nested_ifs(16)))]) == 0
    capsys.readouterr()
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "deep.onnx", nested_ifs(17))], 7, "nested more than 16 deep")
    # deeper than protobuf itself will parse: malformed, not a crash
    fails(capsys, tmp_path, ["analyse", write(tmp_path / "deeper.onnx", nested_ifs(200))], 4, name="deeper.onnx")


# --- 17: output folders --------------------------------------------------------------------------

def test_output_pointing_at_the_input(tmp_path, capsys):
    f = write(tmp_path / "models" / "m.onnx", small_cnn())
    fails(capsys, tmp_path, ["analyse", f, "-o", f], 9, "is a file")
    fails(capsys, tmp_path, ["analyse", f, "-o", f.parent], 9, "holds the input")
    fails(capsys, tmp_path, ["analyse", f, "-o", tmp_path], 9, "holds the input")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    fails(capsys, tmp_path, ["analyse", f, "-o", tmp_path / "mine"], 9, "not an archkit report", "'notes.txt'")
    fails(capsys, tmp_path, ["connectivity", f, "-o", f], 9, "is a file")


def test_read_only_output_folder(tmp_path, capsys, monkeypatch):
    f = write(tmp_path / "m.onnx", small_cnn())
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if ROOT:  # root writes anywhere: report the folder as the kernel would for anyone else
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == ro else real(p, mode, **k))
    try:
        fails(capsys, tmp_path, ["analyse", f, "-o", ro / "rep"], 9, "not writable")
    finally:
        ro.chmod(0o755)


def test_write_failure_mid_report_keeps_the_old_one(tmp_path, capsys, monkeypatch):
    f = write(tmp_path / "m.onnx", small_cnn())
    rep = tmp_path / "rep"
    assert main(["analyse", str(f), "-o", str(rep)]) == 0
    capsys.readouterr()
    calls = {"n": 0}
    real = Path.write_bytes

    def flaky(self, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", flaky)
    fails(capsys, tmp_path, ["analyse", f, "-o", rep], 9, "No space left on device")
    assert calls["n"] == 3


# --- 18: onnxruntime crashing or hanging ----------------------------------------------------------

def test_onnxruntime_crash_and_hang_in_the_child(tmp_path, capsys, monkeypatch):
    from archkit.runtime import child

    f = write(tmp_path / "m.onnx", small_cnn(batch=1))
    monkeypatch.setattr(child, "_CHILD_CODE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    fails(capsys, tmp_path, ["verify", f, "--seeds", "1"], 7, "crashed", "SIGSEGV")
    monkeypatch.setattr(child, "_CHILD_CODE", "import time; time.sleep(600)")
    fails(capsys, tmp_path, ["verify", f, "--seeds", "1", "--timeout", "2"], 7, "did not finish", "within 2 s")


# --- 19: names and formats ------------------------------------------------------------------------

@pytest.mark.parametrize("argv,fragment", [
    (["report", "inceptoin_v1"], "inception_v1"),
    (["export", "resnet9000", "-o", "{t}/x.onnx"], "resnet9000"),
    (["connectivity", "nosuchnet"], "nosuchnet"),
    (["report", "baseline_cnn", "--format", "md,pdf"], "--format"),
    (["analyse", "{f}", "--format", "xml"], "--format"),
    (["analyse", "{f}", "-o", "{t}/rep", "--format", "md,,csv"], "--format"),
    (["connectivity", "{f}", "--format", "svg"], "--format"),
])
def test_unknown_names_and_bad_formats(tmp_path, capsys, argv, fragment):
    f = write(tmp_path / "m.onnx", small_cnn())
    fails(capsys, tmp_path, [a.replace("{f}", str(f)).replace("{t}", str(tmp_path)) for a in argv], 2, fragment)


def test_forged_archkit_metadata_is_ignored_with_a_warning(tmp_path, capsys):
    m = small_cnn()
    for key, value in (("archkit.layers", '[{"name": 3}]'), ("archkit.keras_params", "not json"),
                       ("archkit.config", "[1, 2]")):
        p = m.metadata_props.add()
        p.key, p.value = key, value
    f = write(tmp_path / "m.onnx", m)
    assert main(["analyse", str(f), "-o", str(tmp_path / "rep")]) == 0
    err = capsys.readouterr().err
    assert err.count("archkit: warning: metadata") == 3 and "not what archkit writes" in err
    assert json.loads((tmp_path / "rep" / "summary.json").read_text())["costs"]["macs"] == SMALL_CNN_MACS


def test_every_exit_code_is_documented():
    from archkit import errors

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(line.split("|")[1]) for line in table.splitlines() if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.ArchkitError)]
    assert documented == set(errors.EXIT_CODES) == set(range(10))
    assert {c.exit_code for c in kinds} == set(range(1, 10))


def test_report_never_replaces_a_folder_that_is_not_a_report(tmp_path, capsys):
    (tmp_path / "baseline_cnn").mkdir()
    (tmp_path / "baseline_cnn" / "thesis.tex").write_text("months of work")
    fails(capsys, tmp_path, ["report", "baseline_cnn", "--out", tmp_path], 9, "not an archkit report", "'thesis.tex'")
