"""Parity: does onnxruntime compute what the Keras model computes?

Both run on the same seeded inputs at several batch sizes. Per output: the largest absolute
error, the largest error relative to the output's own scale, and top-1 agreement. The check
passes when, for every output and batch size,
    max |onnx - keras| <= ATOL + RTOL * max |keras|
and the argmax over the last axis agrees on every sample. float32 through a deep network
accumulates rounding in a different order in each runtime; errors of 1e-6 relative to the
output scale are usual, 1e-4 means a real difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from archkit.errors import ParityError

__all__ = ["OutputParity", "Verification", "verify_keras", "ATOL", "RTOL", "BATCH_SIZES"]

ATOL = 1e-5
RTOL = 1e-4
BATCH_SIZES = (1, 3)


@dataclass(frozen=True)
class OutputParity:
    output: str
    batch: int
    max_abs: float
    scale: float  # max |keras|: what "relative" is relative to
    argmax_agreement: float  # fraction of samples whose top-1 (argmax) agrees

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.scale if self.scale else self.max_abs

    @property
    def ok(self) -> bool:
        return self.max_abs <= ATOL + RTOL * self.scale and self.argmax_agreement == 1.0


@dataclass(frozen=True)
class Verification:
    outputs: tuple[OutputParity, ...]
    runtime: str

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    @property
    def max_abs(self) -> float:
        return max(o.max_abs for o in self.outputs)

    @property
    def max_rel(self) -> float:
        return max(o.max_rel for o in self.outputs)

    @classmethod
    def from_dict(cls, d: dict) -> "Verification":
        return cls(tuple(OutputParity(**o) for o in d["outputs"]), d["runtime"])

    def raise_for_failure(self, name: str) -> None:
        bad = [o for o in self.outputs if not o.ok]
        if bad:
            o = bad[0]
            raise ParityError(f"{name}: onnxruntime differs from Keras on output {o.output!r} at batch {o.batch}: "
                              f"max abs error {o.max_abs:.3g} (allowed {ATOL + RTOL * o.scale:.3g}), "
                              f"top-1 agreement {o.argmax_agreement:.0%}")


def session(proto: onnx.ModelProto, *, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # One thread: the same summation order on every run, so reported errors are reproducible.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def seeded_inputs(proto: onnx.ModelProto, batch: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    init = {t.name for t in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in init:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in inp.type.tensor_type.shape.dim]
        dims[0] = batch
        feeds[inp.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def verify_keras(model, proto: onnx.ModelProto, *, batch_sizes=BATCH_SIZES, seed: int = 0) -> Verification:
    import onnxruntime as ort

    sess = session(proto)
    names = [o.name for o in sess.get_outputs()]
    results = []
    for batch in batch_sizes:
        feeds = seeded_inputs(proto, batch, seed=seed + batch)
        got = sess.run(names, feeds)
        args = list(feeds.values())
        want = model(args if len(args) > 1 else args[0], training=False)
        want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
        for name, g, w in zip(names, got, want):
            diff = float(np.max(np.abs(g.astype(np.float64) - w))) if g.size else 0.0
            scale = float(np.max(np.abs(w))) if w.size else 0.0
            top1 = g.reshape(batch, -1).argmax(-1) == w.reshape(batch, -1).argmax(-1)
            results.append(OutputParity(name, batch, diff, scale, float(top1.mean())))
    return Verification(tuple(results), f"onnxruntime {ort.__version__}")
