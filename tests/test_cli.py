"""The command line: exit codes, one-line errors, nothing partial written, committed reports current."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from archkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "archkit", *args], check=False, capture_output=True, text=True, cwd=cwd,
                          timeout=600, env=env)


def test_list_prints_the_registry(capsys):
    import architectures

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in architectures.names():
        assert name in out


@pytest.mark.parametrize("argv,code,fragment", [
    (["report", "baseline_cn"], 2, "did you mean baseline_cnn"),
    (["verify", "resnet5O"], 2, "unknown architecture 'resnet5O'"),
    (["report", "baseline_cnn", "--format", "md,pdf"], 2, "--format 'md,pdf'"),
    (["report"], 2, "one architecture name or --all"),
    (["export", "baseline_cnn"], 2, "required: -o/--output"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_usage_errors_are_one_line(capsys, argv, code, fragment):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and err.startswith("archkit: error:")


def test_unwritable_output_folder_fails_before_work(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert main(["report", "baseline_cnn", "--out", str(locked / "reports")]) == 9
        assert "not writable" in capsys.readouterr().err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_output_under_a_file_fails_before_work(tmp_path, capsys):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    assert main(["report", "baseline_cnn", "--out", str(blocker / "reports")]) == 9
    assert "not writable" in capsys.readouterr().err
    assert blocker.read_text() == "x"


def test_failed_write_leaves_the_existing_report(tmp_path, monkeypatch):
    from archkit.errors import OutputError
    from archkit.io import write_folder

    folder = tmp_path / "rep"
    write_folder(folder, {"README.md": b"old\n"})
    real = Path.write_bytes

    def fail_on_second(self, data):
        if self.name == "b.csv":
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fail_on_second)
    with pytest.raises(OutputError, match="No space left"):
        write_folder(folder, {"README.md": b"new\n", "b.csv": b"x\n"})
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no staging folder left
    assert (folder / "README.md").read_bytes() == b"old\n"
    assert [p.name for p in folder.iterdir()] == ["README.md"]


def test_report_is_quiet_and_equals_the_committed_one(tmp_path):
    """A fresh `archkit report baseline_cnn` is byte-identical to reports/baseline_cnn
    (when made with the library versions the committed report records)."""
    proc = run("report", "baseline_cnn", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no TensorFlow/absl start-up noise
    assert proc.stdout.startswith("baseline_cnn: 294,176 MACs, parity ok")
    fresh = tmp_path / "baseline_cnn"
    committed = ROOT / "reports" / "baseline_cnn"
    assert sorted(p.name for p in fresh.iterdir()) == ["README.md", "blocks.csv", "blocks.png", "connectivity.csv",
                                                        "connectivity.dot", "connectivity.png", "layers.csv",
                                                        "memory.png", "ops.csv", "summary.json"]
    recorded = json.loads((committed / "summary.json").read_text())["versions"]
    made_now = json.loads((fresh / "summary.json").read_text())["versions"]
    if recorded != made_now:
        pytest.skip(f"committed report made with {recorded}, this environment has {made_now}")
    for f in fresh.iterdir():
        assert f.read_bytes() == (committed / f.name).read_bytes(), f"{f.name} differs: regenerate reports/"


def test_report_formats_select_files(tmp_path):
    from archkit.render.report import render
    from tests.conftest import _run

    analysis, _ = _run("baseline_cnn")
    assert set(render(analysis, ["json"])) == {"summary.json"}
    assert set(render(analysis, ["md", "csv"])) == {"README.md", "layers.csv", "blocks.csv", "ops.csv", "connectivity.csv"}


def test_export_command(tmp_path):
    target = tmp_path / "cnn.onnx"
    proc = run("export", "baseline_cnn", "-o", str(target), "--opset", "17", env=dict(os.environ, ARCHKIT_CACHE_DIR="off"))
    assert proc.returncode == 0, proc.stderr
    # Each time says what it measured: the conversion alone is part of the whole command.
    import re

    m = re.search(r"^export: Keras -> ONNX conversion \(trace, tf2onnx, ONNX checker\) ([\d.]+) s; "
                  r"whole command ([\d.]+) s", proc.stdout, re.MULTILINE)
    assert m and float(m[1]) <= float(m[2]), proc.stdout
    import onnx

    model = onnx.load(target)
    assert {o.domain: o.version for o in model.opset_import}[""] == 17


def test_bad_opset_is_a_usage_error(tmp_path):
    """Refused before the export starts: TensorFlow is not even imported."""
    code = ("import sys; from archkit.cli import main; rc = main(['export', 'baseline_cnn', '-o', sys.argv[1], "
            "'--opset', '99']); print(rc, 'tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.onnx")], check=False, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.stdout.split() == ["2", "False"]
    assert proc.stderr.strip().startswith("archkit: error: --opset 99: tf2onnx here supports opsets 9 to ")
    assert not (tmp_path / "x.onnx").exists()


def test_warm_report_uses_the_cache_without_tensorflow(tmp_path):
    """The second report of an architecture takes its export from the cache: no TensorFlow."""
    code = ("import sys; from archkit.cli import main; rc = main(['report', 'baseline_cnn', '--out', sys.argv[1]]); "
            "print('tensorflow' in sys.modules, rc)")
    env = dict(os.environ, ARCHKIT_CACHE_DIR=str(tmp_path / "cache"))
    first, second = (subprocess.run([sys.executable, "-c", code, str(tmp_path / out)], check=False, capture_output=True, text=True,
                                    timeout=600, env=env) for out in ("a", "b"))
    assert first.stdout.split()[-2:] == ["True", "0"]
    assert second.stdout.split()[-2:] == ["False", "0"]
    for f in (tmp_path / "a" / "baseline_cnn").iterdir():
        assert f.read_bytes() == (tmp_path / "b" / "baseline_cnn" / f.name).read_bytes()


def test_committed_reports_hold_parity_verdicts_not_measured_errors(tmp_path):
    """Measured parity errors differ between machines: reports state the verdict and the fixed
    allowance; only `--bench` reports (never committed) carry the measured figures."""
    from dataclasses import replace

    from archkit.render.report import render
    from tests.conftest import _run

    analysis, _ = _run("baseline_cnn")
    v = analysis.verification
    files = render(analysis, ["md", "json"])
    parity = json.loads(files["summary.json"])["parity"]
    assert parity["ok"] is True and parity["allowed"] == {"atol": 1e-5, "rtol": 1e-4, "top1_agreement": 1.0,
                                                          "top5_agreement": 1.0}
    assert "measured" not in parity and "max_abs_error" not in json.dumps(parity)
    text = files["README.md"].decode()
    assert "≤ 1e-5 + 1e-4 · max |keras|" in text
    for measured in (f"{v.max_abs:.2g}", f"{v.max_rel:.2g}"):
        assert measured not in text
    benched = json.loads(render(replace(analysis, bench=_FakeBench()), ["json"])["summary.json"])["parity"]
    assert benched["measured"]["max_rel_error"] == float(f"{v.max_rel:.2g}")


class _FakeBench:
    def to_dict(self):
        return {}
