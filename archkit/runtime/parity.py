"""Parity: does onnxruntime compute what the reference computes?

Both run on the same seeded inputs at several batch sizes. Per output: the largest absolute
error, the largest error relative to the output's own scale, and top-1 agreement. The check
passes when, for every output and batch size,
    max |onnx - keras| <= ATOL + RTOL * max |keras|
and the argmax over the last axis agrees on every sample. float32 through a deep network
accumulates rounding in a different order in each runtime; errors of 1e-6 relative to the
output scale are usual, 1e-4 means a real difference.

fp16 and int8 exports are compared with the same float32 Keras model, against looser
thresholds (TOLERANCES; the README's "Parity" section explains them): the error bound per
output and batch, and top-1 / top-5 agreement over the samples of an output. Top-k agreement
is the fraction of samples whose reference top-1 class is among the candidate's k highest.

int8 agreement counts only the samples the reference decides clearly: those whose top-1 score
leads the runner-up by at least `margin` times the standard deviation of that sample's scores
(`decided`). An untrained network's class scores are nearly tied, and where the reference
itself barely decides, int8's rounding flips the argmax as often as not: counting those
samples made the verdict a coin toss. The margin is relative to the sample's own spread, so
it means the same for logits and probabilities, 10 classes or 1000. Fewer than
`min_decided` decided samples cannot support a percentage: agreement is then not judged
(and said so); the error bound still is.

A file without a Keras source (`verify_onnx`) is checked for loading and running, and its
outputs with graph optimizations on against onnxruntime with graph optimizations off, on the
inputs archkit.runtime.feeds plans (seeded, or shapes, values and arrays the user gives).

onnxruntime runs in a child process (`run_isolated`) with a timeout: a crash (a signal) or a
hang becomes a ResourceError naming the signal, not a dead or stuck archkit
(archkit.runtime.child). The Keras side of parity is archkit.keras.parity.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnx

from archkit.errors import ParityError
from archkit.metadata import read as read_metadata
from archkit.runtime.child import run_isolated
from archkit.runtime.feeds import Feeds, plan, seeded_array

__all__ = [
    "ATOL",
    "BATCH_SIZES",
    "RTOL",
    "TOLERANCES",
    "OutputParity",
    "Tolerance",
    "Verification",
    "compare",
    "decided",
    "fixed_batch",
    "precision_of",
    "seeded_inputs",
    "seeded_runs",
    "verify_onnx",
]

ATOL = 1e-5
RTOL = 1e-4
BATCH_SIZES = (1, 3)

@dataclass(frozen=True)
class Tolerance:
    """An output passes when max |candidate - reference| <= atol + rtol * max |reference| at every
    batch and seed, and its top-1 and top-5 agreement over the decided samples (see `decided`;
    margin 0: all samples) reach top1 and top5, judged when there are at least min_decided."""

    atol: float
    rtol: float
    top1: float
    top5: float
    margin: float = 0.0  # in standard deviations of the sample's reference scores
    min_decided: int = 1


TOLERANCES = {
    "fp32": Tolerance(ATOL, RTOL, 1.0, 1.0),
    "fp16": Tolerance(1e-3, 1e-2, 0.95, 1.0),
    # Margin 0.25: healthy int8 flipped no sample above it in 512 seeded inputs (baseline_cnn, and
    # resnet18 at 32x32, whose flips reach 0.22); 10 decided samples: no single flip decides.
    "int8": Tolerance(1e-2, 0.25, 0.80, 0.95, margin=0.25, min_decided=10),
}


def decided(scores: np.ndarray, margin: float) -> np.ndarray:
    """Per sample (rows of a 2-D array): does the top-1 score lead the runner-up by at least
    `margin` standard deviations of the sample's scores? Margin 0: every sample."""
    scores = np.asarray(scores, dtype=np.float64)
    if margin <= 0 or scores.shape[-1] < 2:
        return np.ones(scores.shape[0], dtype=bool)
    top2 = np.sort(scores, axis=-1)[:, -2:]
    spread = scores.std(axis=-1)
    return (top2[:, 1] - top2[:, 0] >= margin * spread) & (spread > 0)


@dataclass(frozen=True)
class OutputParity:
    output: str
    batch: int
    max_abs: float
    scale: float  # max |keras|: what "relative" is relative to
    argmax_agreement: float  # fraction of samples whose top-1 (argmax) agrees
    seed: int = 0
    top5_agreement: float = 1.0  # fraction of samples whose reference top-1 is in the candidate's top 5
    precision: str = "fp32"  # of the candidate: selects the tolerance
    decided: int = -1  # samples the reference decides clearly (see `decided`); -1: all of them
    decided_top1: int = 0  # of those, how many agree at top-1
    decided_top5: int = 0  # and at top-5

    @property
    def max_rel(self) -> float:
        return self.max_abs / self.scale if self.scale else self.max_abs

    @property
    def tolerance(self) -> Tolerance:
        return TOLERANCES[self.precision]

    @property
    def allowed(self) -> float:
        return self.tolerance.atol + self.tolerance.rtol * self.scale

    @property
    def ok(self) -> bool:
        """The error bound; for fp32 also every sample's argmax (lower precisions: see Verification.agreement)."""
        if self.max_abs > self.allowed:
            return False
        return self.argmax_agreement == 1.0 if self.precision == "fp32" else True


@dataclass(frozen=True)
class Verification:
    outputs: tuple[OutputParity, ...]
    runtime: str
    precision: str = "fp32"
    reference: str = "Keras"  # what the ONNX model was compared with
    layout: str = "nhwc"

    def agreement(self) -> dict[str, tuple[float, float, int, int]]:
        """Per output, over every batch and seed: (top-1, top-5 agreement over the decided samples,
        decided samples, all samples). Agreement is 1.0 when no sample is decided."""
        out: dict[str, list] = {}
        for o in self.outputs:
            acc = out.setdefault(o.output, [0, 0, 0, 0])
            if o.decided < 0:  # every sample counts
                acc[0] += o.argmax_agreement * o.batch
                acc[1] += o.top5_agreement * o.batch
                acc[2] += o.batch
            else:
                acc[0] += o.decided_top1
                acc[1] += o.decided_top5
                acc[2] += o.decided
            acc[3] += o.batch
        return {k: (a / d if d else 1.0, b / d if d else 1.0, d, n) for k, (a, b, d, n) in out.items()}

    def judged(self, output: str) -> bool:
        """Are there enough decided samples of `output` for its agreement to be judged?"""
        return self.agreement()[output][2] >= TOLERANCES[self.precision].min_decided

    def output_ok(self, output: str) -> bool:
        """The verdict on one output: its error bound at every batch and seed, and its agreement
        where there are enough decided samples to judge it."""
        t = TOLERANCES[self.precision]
        top1, top5, d, _ = self.agreement()[output]
        return all(o.ok for o in self.outputs if o.output == output) and (
            d < t.min_decided or (top1 >= t.top1 and top5 >= t.top5))

    def _agreement_failures(self) -> list[str]:
        t = TOLERANCES[self.precision]
        bad = []
        for name, (top1, top5, d, n) in self.agreement().items():
            if d >= t.min_decided and (top1 < t.top1 or top5 < t.top5):
                over = f"{d} samples" if d == n else f"{d} of {n} samples (those decided by a margin of {t.margin:g} sd)"
                bad.append(f"output {name!r}: top-1 agreement {top1:.1%} (needs {t.top1:.0%}), "
                           f"top-5 {top5:.1%} (needs {t.top5:.0%}) over {over}")
        return bad

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs) and not self._agreement_failures()

    @property
    def max_abs(self) -> float:
        return max(o.max_abs for o in self.outputs)

    @property
    def max_rel(self) -> float:
        return max(o.max_rel for o in self.outputs)

    @classmethod
    def from_dict(cls, d: dict) -> Verification:
        extra = {k: d[k] for k in ("precision", "reference", "layout") if k in d}
        return cls(tuple(OutputParity(**o) for o in d["outputs"]), d["runtime"], **extra)

    def raise_for_failure(self, name: str, drift: str | None = None) -> None:
        """A ParityError naming the first failing output; `drift`: where the export starts to
        drift (archkit.runtime.layerwise), added to the message."""
        bad = [o for o in self.outputs if not o.ok]
        what = f"onnxruntime ({self.precision})" if self.precision != "fp32" else "onnxruntime"
        where = f"; {drift}" if drift else ""
        if bad:
            o = bad[0]
            raise ParityError(f"{name}: {what} differs from {self.reference} on output {o.output!r} at batch {o.batch}"
                              f"{f', seed {o.seed}' if o.seed else ''}: max abs error {o.max_abs:.3g} "
                              f"(allowed {o.allowed:.3g}), top-1 agreement {o.argmax_agreement:.0%}{where}")
        agreement = self._agreement_failures()
        if agreement:
            raise ParityError(f"{name}: {what} disagrees with {self.reference} on {agreement[0]}{where}")


_QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "ConvInteger",
                            "MatMulInteger", "QLinearConv", "QLinearMatMul"})


def precision_of(proto: onnx.ModelProto) -> str:
    """fp32, fp16 or int8: from archkit's metadata, else from what the file holds."""
    recorded = read_metadata(proto).precision
    if recorded is not None:
        return recorded
    if any(n.op_type in _QUANTIZED_OPS for n in proto.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer):
        return "fp16"
    return "fp32"


def seeded_inputs(proto: onnx.ModelProto, batch: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal inputs (cast to the input's float type; integer inputs get 0 and 1) for an
    archkit export, whose only symbolic dimension is the batch: set to `batch`; a fixed batch
    dimension is kept. Any other file's inputs: archkit.runtime.feeds."""
    rng = np.random.default_rng(seed)
    feeds = {}
    init = {t.name for t in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name in init:
            continue
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in tt.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else np.dtype(np.float32)
        feeds[inp.name] = seeded_array(rng, dims, dtype)
    return feeds


def fixed_batch(proto: onnx.ModelProto) -> int | None:
    init = {t.name for t in proto.graph.initializer}
    for inp in proto.graph.input:
        if inp.name not in init:
            dims = inp.type.tensor_type.shape.dim
            return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    return None


def compare(name: str, got: np.ndarray, want: np.ndarray, batch: int, seed: int, precision: str) -> OutputParity:
    g = np.asarray(got).astype(np.float64)
    w = np.asarray(want)
    diff = float(np.max(np.abs(g - w))) if g.size else 0.0
    scale = float(np.max(np.abs(w))) if w.size else 0.0
    # an output without the batch leading (a state, a scalar) is one sample
    samples = batch if g.ndim and g.shape[0] == batch else 1
    g2, w2 = g.reshape(samples, -1), w.reshape(samples, -1)
    top1 = g2.argmax(-1) == w2.argmax(-1)
    k = min(5, g2.shape[1]) if g2.size else 1
    top5 = (np.argsort(-g2, axis=-1, kind="stable")[:, :k] == w2.argmax(-1)[:, None]).any(-1) if g2.size else top1
    margin = TOLERANCES[precision].margin
    counted = {"decided": -1}
    if margin > 0:
        clear = decided(w2, margin) if g2.size else np.zeros(0, dtype=bool)
        counted = {"decided": int(clear.sum()), "decided_top1": int((top1 & clear).sum()),
                   "decided_top5": int((top5 & clear).sum())}
    return OutputParity(name, batch, diff, scale, float(top1.mean()) if top1.size else 1.0, seed,
                        float(top5.mean()) if np.size(top5) else 1.0, precision, **counted)


def seeded_runs(proto: onnx.ModelProto, batch_sizes, seeds, seed: int):
    fixed = fixed_batch(proto)
    batches = (fixed,) if fixed else tuple(batch_sizes)
    return [(s, b, seeded_inputs(proto, b, seed=seed + 1000 * s + b)) for s in seeds for b in batches]



def verify_onnx(model: onnx.ModelProto, *, path: str | os.PathLike | None = None, batch_sizes=BATCH_SIZES,
                seeds=(0,), seed: int = 0, timeout: float | None = None, feeds: Feeds | None = None) -> Verification:
    """A model without a Keras source: it must load and run in onnxruntime, and with graph
    optimizations on agree with onnxruntime with them off (the plainest execution of the graph),
    within the tolerance of its precision. `path`: run the file itself (external data beside it).
    `feeds`: how its inputs are fed (archkit.runtime.feeds; default: seeded, every dim but the
    batch fixed by the file)."""
    precision = precision_of(model)
    what = str(path) if path else (model.graph.name or "the model")
    plan_ = feeds if feeds is not None else plan(model, what=what)
    runs = plan_.runs(batch_sizes, seeds, seed)
    source = path if path is not None else model
    fed = [f for _, _, f in runs]

    def explain(message: str, index: int | None) -> str:
        return plan_.explain(model, message, fed[index if index is not None else 0])

    names, want_all, runtime = run_isolated(source, fed, optimization="off", what=f"{what} (graph optimizations off)",
                                            timeout=timeout, explain=explain)
    _, got_all, _ = run_isolated(source, fed, optimization="all", what=what, timeout=timeout, explain=explain)
    results = [compare(name, g, w, batch, s, precision)
               for (s, batch, _), got, want in zip(runs, got_all, want_all) for name, g, w in zip(names, got, want)]
    return Verification(tuple(results), runtime, precision, "onnxruntime with graph optimizations off",
                        read_metadata(model).layout or "?")


