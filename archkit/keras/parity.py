"""Keras-side parity: the exported model in onnxruntime against the float32 Keras model it came
from, on the same seeded inputs (archkit.runtime.parity holds the comparison and its tolerances)."""

from __future__ import annotations

import numpy as np
import onnx

from archkit.metadata import read as read_metadata
from archkit.runtime.child import run_isolated
from archkit.runtime.parity import BATCH_SIZES, Verification, compare, precision_of, seeded_runs

__all__ = ["to_keras", "verify_keras"]


def verify_keras(model, proto: onnx.ModelProto, *, batch_sizes=BATCH_SIZES, seed: int = 0, seeds=(0,),
                 timeout: float | None = None) -> Verification:
    """The ONNX model in onnxruntime (a child process, one thread) against the float32 Keras model
    on the same seeded inputs, at each batch size for each seed. NCHW inputs are transposed to
    Keras' NHWC; fp16 inputs are given to Keras as the same values in float32."""
    precision = precision_of(proto)
    layout = read_metadata(proto).layout or "nhwc"
    runs = seeded_runs(proto, batch_sizes, seeds, seed)
    names, got_all, runtime = run_isolated(proto, [f for _, _, f in runs], what=proto.graph.name or "the model",
                                           timeout=timeout)
    results = []
    for (s, batch, feeds), got in zip(runs, got_all):
        args = [to_keras(x, layout) for x in feeds.values()]
        want = model(args if len(args) > 1 else args[0], training=False)
        want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
        for name, g, w in zip(names, got, want):
            results.append(compare(name, g, w, batch, s, precision))
    return Verification(tuple(results), runtime, precision, "Keras (float32)", layout)


def to_keras(x: np.ndarray, layout: str) -> np.ndarray:
    """An ONNX input as Keras takes it: float32, and NHWC where the export is NCHW."""
    x = x.astype(np.float32) if np.issubdtype(x.dtype, np.floating) else x
    return np.transpose(x, (0, 2, 3, 1)) if layout == "nchw" and x.ndim == 4 else x
