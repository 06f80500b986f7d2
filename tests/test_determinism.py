"""Reports are deterministic: two fresh processes, export cache off, write byte-identical files;
and the test environment is reproducible: constraints.txt pins what the test command installs.

Each report is written twice by `python -m archkit report NAME --out DIR`, in two processes
started side by side with ARCHKIT_CACHE_DIR=off, so both export from Keras (nothing shared but
the code), and every file of the two folders is compared byte for byte. baseline_cnn is the
smallest network; inception_v2_module the smallest with BatchNormalization (folded into its
convolutions by the export, where float rounding of the folded weights could differ).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", ["baseline_cnn", "inception_v2_module"])
def test_report_is_byte_identical_across_processes(name, tmp_path):
    env = {**os.environ, "ARCHKIT_CACHE_DIR": "off", "PYTHONPATH": str(ROOT)}
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-m", "archkit", "report", name, "--out", str(out)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for out in outs]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode(errors="replace")[-2000:]
    a, b = (_files(out) for out in outs)
    assert f"{name}/README.md" in a and f"{name}/summary.json" in a and f"{name}/blocks.png" in a
    assert sorted(a) == sorted(b)
    differ = [f for f in a if a[f] != b[f]]
    assert not differ, f"differ between two processes: {differ}"


def test_constraints_pin_every_dependency_within_pyproject_bounds():
    """Every dependency and test dependency in pyproject.toml is pinned (==) in constraints.txt,
    at a version its lower bound allows; README's two install commands use the file."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[req.name.lower().replace("_", "-")] = Version(spec.version)
    assert "archkit" not in pins
    for req in wanted:
        pinned = pins.get(req.name.lower().replace("_", "-"))
        assert pinned is not None, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pinned), (req, pinned)
    readme = (ROOT / "README.md").read_text()
    assert "pip install -e '.[test]' -c constraints.txt && ruff check . && mypy && python -m pytest -q" in readme
    assert "pip install -e . -c constraints.txt && archkit report inception_v1" in readme


_HASHED_EXPORT = """
import sys
from archkit.keras.export import export_keras, import_keras
tf, keras = import_keras()
keras.utils.set_random_seed(0)
x = keras.Input((6, 6, 4))
y = keras.layers.AdaptiveAveragePooling2D((6, 6), name="avgpool")(x)  # two equal index constants: merged
m = keras.Model(x, keras.layers.Dense(3)(keras.layers.Flatten()(y)), name="tiny")
sys.stdout.buffer.write(export_keras(m, name="tiny").SerializeToString())
"""


def test_an_export_does_not_depend_on_pythons_string_hashing():
    """tf2onnx keeps one of two equal constants, in an order that follows PYTHONHASHSEED; the
    export is the same file in every process (alexnet_onetower's report depended on it)."""
    exports = {subprocess.run([sys.executable, "-c", _HASHED_EXPORT], capture_output=True, timeout=300, cwd=ROOT,
                              env={**os.environ, "PYTHONHASHSEED": str(seed)}, check=True).stdout
               for seed in range(4)}
    assert len(exports) == 1
