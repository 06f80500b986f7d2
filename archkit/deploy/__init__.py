"""Deployment forms of an exported model: input layout, batch, precision (`DeployOptions`).

This module is light (no numpy, no onnx): the command line checks the options with it before
loading anything. archkit.deploy.convert makes the forms from an fp32 export.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archkit.errors import InputError, UsageError
from archkit.metadata import LAYOUTS, PRECISIONS

__all__ = ["CALIBRATION_SEED", "EVAL_SAMPLES", "EVAL_SEED", "LAYOUTS", "PRECISIONS", "QUANTIZATIONS", "DeployOptions"]

QUANTIZATIONS = ("static", "dynamic")
# Generated calibration inputs are drawn from seeds far from the ones verification uses
# (archkit.runtime.parity: 1000 * seed + batch), so that int8 is not checked on its own calibration set.
CALIBRATION_SEED = 1_000_000
# Evaluation inputs for the deltas of a fp16/int8 export against its fp32 export: other seeds again.
EVAL_SEED = 2_000_000
EVAL_SAMPLES = 64


@dataclass(frozen=True)
class DeployOptions:
    """How an architecture is exported beyond its config. The defaults are the plain export."""

    layout: str = "nhwc"
    batch: int | None = None  # None: a symbolic batch dimension
    precision: str = "fp32"
    quantization: str = "static"  # int8 only: "static" (calibrated QDQ) or "dynamic"
    calibration: str | None = None  # int8 static: a folder of .npy files or an .npz; None: generated
    calibration_samples: int = 32  # int8 static with generated data: how many samples
    keep_io_types: bool = False  # fp16: keep float32 inputs and outputs

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise UsageError(f"--layout {self.layout!r}: expected one of {', '.join(LAYOUTS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.quantization not in QUANTIZATIONS:
            raise UsageError(f"--quantization {self.quantization!r}: expected one of {', '.join(QUANTIZATIONS)}")
        if self.batch is not None and (isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1):
            raise UsageError(f"--batch {self.batch!r}: expected 'dynamic' or a positive integer")
        if self.calibration_samples < 1:
            raise UsageError(f"--calibration-samples {self.calibration_samples}: expected a positive integer")
        if self.calibration is not None and (self.precision != "int8" or self.quantization != "static"):
            raise UsageError("--calibration applies to --precision int8 with static quantization only")

    @property
    def plain(self) -> bool:
        return self == DeployOptions()

    def cache_fields(self) -> dict[str, Any]:
        """What the export depends on, for the export cache: only the options that apply,
        and user calibration data by content (a digest), not by path."""
        out: dict[str, Any] = {"layout": self.layout, "batch": self.batch, "precision": self.precision}
        if self.precision == "fp16":
            out["keep_io_types"] = self.keep_io_types
        if self.precision == "int8":
            out["quantization"] = self.quantization
            if self.quantization == "static":
                out["calibration"] = (digest(self.calibration) if self.calibration
                                      else f"generated:{self.calibration_samples}")
        return out

    def describe(self) -> str:
        text = f"layout {self.layout}, batch {self.batch or 'dynamic'}, precision {self.precision}"
        if self.precision == "fp16" and self.keep_io_types:
            text += " (float32 I/O)"
        if self.precision == "int8":
            text += f" ({self.quantization}"
            if self.quantization == "static":
                text += f", calibrated on {self.calibration}" if self.calibration else \
                    f", calibrated on {self.calibration_samples} generated samples"
            text += ")"
        return text


def digest(path: str) -> str:
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(p.glob("*.npy")) if p.is_dir() else [p]
    for f in files:
        try:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
        except OSError as e:
            raise InputError(f"{f}: cannot read calibration data ({e.strerror})") from None
    return "sha256:" + h.hexdigest()[:16]


