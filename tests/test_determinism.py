"""Reports are deterministic: two fresh processes, export cache off, write byte-identical files.

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
from pathlib import Path

import pytest

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

