"""Does an archkit architecture compute the same function as keras.applications' model of it?

Counting parameters layer by layer (tests/test_arch_*.py) shows the two have the same layers; this
shows they compute the same thing. `equivalence(name)` builds archkit's model and the
keras.applications model (weights=None, the same input size and class count, include_top as
archkit's: every archkit model ends in its classifier), gives archkit's model seeded weights, copies
every tensor into the reference, runs both on the same seeded inputs and compares.

How weights are copied. The layers holding weights are paired: by name where a layer of the same
name exists on both sides, then the rest by position among the weighted layers left over on each
side. Each pair must have the same layer class, the same variables (kernel, bias, gamma, beta,
moving_mean, moving_variance: by name, in order) and the same shape for every tensor; a layer left
over on either side fails too (reasons give archkit's side first: "kernel shape (3, 3, 128, 128)
against (3, 3, 128, 96)"). BatchNorm's moving mean and variance are copied with the rest.

A failure is a result, not an exception: `Equivalence.ok` is False, `reason` says what differs
and `layer` names archkit's layer (or the reference's, where archkit has no counterpart). An
exception (UsageError) is raised only for a bad request: a name keras.applications has no model
for, or an input size below its minimum. When the weights match but the outputs differ, the
comparison is repeated on intermediate outputs and `layer` names the first layer, in archkit's
order, whose output differs beyond the tolerance (on the first input): the divergence is there or
before it, where a small difference may take a few layers to grow past the tolerance.

What is compared: the model's outputs (softmax probabilities) and the features the classifier
reads (the input of the last weighted layer: everything but the classifier). The probabilities
alone are a weak check, since a softmax squashes differences in its logits; the features are the
whole body's output at its own scale.

Differences by design, handled here:
- Names. ResNet and DenseNet use keras.applications' layer names (copied by name, every layer);
  InceptionV3's are Keras' automatic ones (`conv2d_17`, `batch_normalization_17`), archkit's are
  descriptive (`mixed2_b3_3x3a_conv`): copied by order (the two orders are the same: tests check it
  layer by layer, and the functional comparison would catch a wrong pairing).
- archkit's inception_v3 ends in Dense then a separate Softmax layer (`classifier_linear`,
  `classifier_softmax`); keras.applications folds the softmax into its Dense (`predictions`,
  activation="softmax"). Same function.
- DenseNet's two ZeroPadding2D layers are named (`conv1_pad`, `pool1_pad`) in archkit, automatic
  in Keras; they hold no weights.
- The input layer is `image` in archkit, `input_layer` in Keras.
None of these changes what is computed; no tolerance is widened for them.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

import architectures
from archkit.errors import UsageError
from archkit.keras.export import import_keras

__all__ = ["ATOL", "CALIBRATION", "REFERENCES", "RTOL", "Equivalence", "compare_models", "equivalence",
           "seed_for_equivalence", "within_tolerance"]

# archkit's name → (keras.applications' builder, its smallest input side with include_top=True).
REFERENCES: dict[str, tuple[str, int]] = {
    "inception_v3": ("InceptionV3", 75),
    "resnet50": ("ResNet50", 32),
    "resnet101": ("ResNet101", 32),
    "resnet152": ("ResNet152", 32),
    "densenet121": ("DenseNet121", 32),
    "densenet169": ("DenseNet169", 32),
    "densenet201": ("DenseNet201", 32),
}

# The tolerance, on every compared tensor: max |ours - reference| <= ATOL + RTOL * scale, where
# scale = max |reference| of that tensor. Measured: both models are Keras models with the same
# layers and the same weights, run by the same TensorFlow kernels, and all seven agree bit for bit
# at their default sizes and at the smallest ones (error 0.0, outputs and features). RTOL is a
# margin over that 0 for a rounding difference that stays local (a fused Dense+softmax against
# Dense then Softmax, a few ulps at the head); ATOL keeps a tensor whose entries are all near zero
# from asking for exactness.
# It is no margin for roundings spread over the whole network: the seeded networks amplify a
# perturbation (ResNet-50: about 1.35x per residual block), and one rounding (2^-24 relative) on
# every weight moves the features by 1e-5 (DenseNet-201) to 9e-4 (ResNet-152) of their scale. The
# bound holds because both sides run the same kernels; a comparison across runtimes (Keras against
# onnxruntime) needs archkit.runtime.parity's tolerances instead. Real differences sit far above
# it: a BatchNorm epsilon of 1e-3 for 1.001e-5 in one layer moves ResNet-50's features by 0.7%
# (224x224) to 2.6% (32x32) of their scale, a dropped ReLU (DenseNet-121) by 100%; even 2e-5 for
# 1.001e-5 moves them by 7e-5, seven times the bound.
RTOL = 1e-5
ATOL = 1e-6

# Seeded streams: the compared inputs come from default_rng(seed), the weights from
# default_rng([seed, 1]), the BatchNorm calibration images from default_rng([seed, 2]).
_WEIGHT_STREAM, _CALIBRATION_STREAM = 1, 2
CALIBRATION = 32  # images whose statistics become BatchNorm's moving mean and variance


@dataclass(frozen=True)
class Equivalence:
    """The outcome of `equivalence` / `compare_models`.

    ok: the weights matched and every compared tensor is within the tolerance.
    max_abs_error, max_rel_error: over the model outputs (rel: max abs error / max |reference
    output|); feature_abs_error, feature_rel_error: the same over the classifier's input. None
    when the weights did not match (nothing was run).
    copied: tensors copied into the reference; by_name / by_order: how many of them were paired
    by layer name / by position; layers_by_name / layers_by_order: the same in layers.
    reason, layer: why it failed and the layer named ("" and None when ok).
    """

    architecture: str
    reference: str
    input_shape: tuple[int, ...]
    classes: int
    samples: int
    seed: int
    ok: bool
    copied: int = 0
    by_name: int = 0
    by_order: int = 0
    layers_by_name: int = 0
    layers_by_order: int = 0
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    feature_abs_error: float | None = None
    feature_rel_error: float | None = None
    output_scale: float | None = None
    feature_scale: float | None = None
    seconds: float = 0.0
    reason: str = ""
    layer: str | None = None

    @property
    def matched_by(self) -> str:
        """"name", "order" or "name and order": how the weighted layers were paired."""
        kinds = [k for k, n in (("name", self.layers_by_name), ("order", self.layers_by_order)) if n]
        return " and ".join(kinds) or "nothing"

    def statement(self) -> str:
        """One sentence for a report, with the fixed tolerance (not the machine-dependent error)."""
        size = "x".join(map(str, self.input_shape[:2]))
        if self.ok:
            return (f"computes the same function as {self.reference} (max abs error of the outputs and of the "
                    f"classifier's features below {_short(ATOL)} + {_short(RTOL)} x their largest value, on "
                    f"{self.samples} seeded {size} inputs)")
        return f"does not compute the same function as {self.reference}: {self.reason}"


def within_tolerance(error: float, scale: float) -> bool:
    """Is a max abs error within the tolerance for a tensor whose largest magnitude is `scale`?"""
    return error <= ATOL + RTOL * scale


def _short(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")


def equivalence(name: str, *, input_size: int | None = None, samples: int = 8, seed: int = 0) -> Equivalence:
    """archkit's `name` against keras.applications' model of it (REFERENCES), at `input_size` x
    `input_size` (default: archkit's default input), on `samples` seeded standard-normal inputs.

    Raises UsageError for a name keras.applications does not build or a size below its minimum.
    """
    if name not in REFERENCES:
        raise UsageError(f"{name}: keras.applications has no model of it; equivalence covers "
                         f"{', '.join(REFERENCES)}")
    if samples < 1:
        raise UsageError(f"samples must be at least 1, not {samples}")
    builder, smallest = REFERENCES[name]
    arch = architectures.get(name)
    config = arch.config()
    if input_size is not None:
        if input_size < smallest:
            raise UsageError(f"{name}: keras.applications.{builder} takes inputs of at least {smallest}x{smallest}, "
                             f"not {input_size}x{input_size}")
        config = arch.config(input_shape=(input_size, input_size, config["input_shape"][2]))
    _, keras = import_keras()
    start = time.perf_counter()
    ours = arch.builder(**config)
    reference = getattr(keras.applications, builder)(weights=None, include_top=True,
                                                    input_shape=tuple(config["input_shape"]), classes=config["classes"])
    try:
        result = compare_models(ours, reference, architecture=name, reference_name=f"keras.applications.{builder}",
                                samples=samples, seed=seed)
    finally:
        del ours, reference
        gc.collect()
    return replace(result, seconds=time.perf_counter() - start)


def seed_for_equivalence(model, *, seed: int = 0, calibration: int = CALIBRATION) -> None:
    """Seeded weights on every tensor, none trivial, so that every parameter changes the output.

    Kernels He-normal (std sqrt(2 / fan-in)), biases and BatchNorm beta N(0, 0.1), gamma
    U(0.5, 1.5). BatchNorm runs in inference mode, normalising with its moving statistics; those
    are set to the statistics of each BatchNorm's own input over `calibration` seeded
    standard-normal images (one pass in training mode with momentum 0), as training would leave
    them. Random moving statistics would let activations grow block after block (ResNet-50's
    features reach ~4e3 at 32x32) until the softmax is one-hot and the outputs compare nothing;
    calibrated, the features stay O(1) and the probabilities spread out.
    """
    rng = np.random.default_rng([seed, _WEIGHT_STREAM])
    for w in model.weights:
        shape, kind = tuple(w.shape), _variable(w)
        if kind == "kernel":
            value = rng.normal(0.0, math.sqrt(2.0 / max(1, math.prod(shape[:-1]))), shape)
        elif kind in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        w.assign(value.astype(w.dtype))
    norms = [layer for layer in model.layers if hasattr(layer, "moving_variance")]
    if not norms or calibration < 1:
        return
    images = np.random.default_rng([seed, _CALIBRATION_STREAM]).standard_normal(
        (calibration, *model.input_shape[1:])).astype(np.float32)
    momenta = [layer.momentum for layer in norms]
    try:
        for layer in norms:
            layer.momentum = 0.0  # the moving statistics become this batch's
        _call(model, images, training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def compare_models(ours, reference, *, architecture: str, reference_name: str, samples: int = 8,
                   seed: int = 0) -> Equivalence:
    """Seed `ours` (seed_for_equivalence), copy its weights into `reference` (see the module's
    docstring), run both on `samples` inputs from default_rng(seed) and compare. `reference` is
    overwritten; `ours` keeps the seeded weights."""
    start = time.perf_counter()
    base = {"architecture": architecture, "reference": reference_name, "input_shape": tuple(ours.input_shape[1:]),
            "classes": int(ours.output_shape[-1]), "samples": samples, "seed": seed}
    if tuple(ours.input_shape) != tuple(reference.input_shape):
        return Equivalence(**base, ok=False, reason=f"inputs differ: {ours.input_shape} against {reference.input_shape}")
    seed_for_equivalence(ours, seed=seed)
    pairs, failure = _pair_layers(ours, reference, reference_name)
    if failure:  # nothing copied, nothing run
        layer, reason = failure
        return Equivalence(**base, ok=False, reason=reason, layer=layer, seconds=time.perf_counter() - start)
    counts = _counts(pairs)
    for a, b, _ in pairs:
        for wa, wb in zip(a.weights, b.weights):
            wb.assign(wa.numpy())

    x = np.random.default_rng(seed).standard_normal((samples, *ours.input_shape[1:])).astype(np.float32)
    head_a, head_b = pairs[-1][0], pairs[-1][1]  # the classifier: the last weighted layer
    (feat_a, out_a), (feat_b, out_b) = _run(ours, [head_a.input, ours.output], x), \
        _run(reference, [head_b.input, reference.output], x)
    errors = {}
    for key, got, want in (("max", out_a, out_b), ("feature", feat_a, feat_b)):
        err, scale = float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))
        errors[key] = (err, err / scale if scale else (0.0 if err == 0 else math.inf), scale)
    ok = all(within_tolerance(err, scale) for err, _, scale in errors.values())
    reason, layer = "", None
    if not ok:
        layer, reason = _first_divergence(ours, reference, pairs, x[:1], reference_name)
    return Equivalence(**base, **counts, ok=ok,
                       max_abs_error=errors["max"][0], max_rel_error=errors["max"][1], output_scale=errors["max"][2],
                       feature_abs_error=errors["feature"][0], feature_rel_error=errors["feature"][1],
                       feature_scale=errors["feature"][2], seconds=time.perf_counter() - start,
                       reason=reason, layer=layer)


# --- pairing --------------------------------------------------------------------------------------

def _variable(w) -> str:
    """A variable's own name (`kernel`, `moving_mean`), without its layer's path."""
    return str(getattr(w, "path", w.name)).rsplit("/", 1)[-1]


def _pair_layers(ours, reference, reference_name: str):
    """[(archkit's layer, the reference's, "name" | "order")] in archkit's order, and the first
    failure as (layer, reason), or None."""
    mine = [layer for layer in ours.layers if layer.weights]
    theirs = [layer for layer in reference.layers if layer.weights]
    their_names = {layer.name for layer in theirs}
    my_names = {layer.name for layer in mine}
    by_name = {layer.name: layer for layer in theirs}
    rest = iter([layer for layer in theirs if layer.name not in my_names])
    pairs = []
    for a in mine:
        if a.name in their_names:
            pairs.append((a, by_name[a.name], "name"))
            continue
        b = next(rest, None)
        if b is None:
            return pairs, (a.name, (f"archkit's layer {a.name} ({type(a).__name__}) has no counterpart in "
                                    f"{reference_name}: it has no weighted layer left to pair it with"))
        pairs.append((a, b, "order"))
    extra = next(rest, None)
    if extra is not None:
        return pairs, (extra.name, (f"{reference_name}'s layer {extra.name} ({type(extra).__name__}) has no "
                                    "counterpart in archkit's model: archkit has no weighted layer left"))
    for a, b, how in pairs:
        problem = _mismatch(a, b)
        if problem:
            theirs_named = "" if a.name == b.name else f" (paired by {how} with {reference_name}'s {b.name})"
            return pairs, (a.name, f"archkit's layer {a.name}{theirs_named}: {problem}")
    return pairs, None


def _mismatch(a, b) -> str:
    if type(a).__name__ != type(b).__name__:
        return f"a {type(a).__name__} against a {type(b).__name__}"
    va, vb = [_variable(w) for w in a.weights], [_variable(w) for w in b.weights]
    if va != vb:
        return f"variables {', '.join(va)} against {', '.join(vb)}"
    for name, wa, wb in zip(va, a.weights, b.weights):
        if tuple(wa.shape) != tuple(wb.shape):
            return f"{name} shape {tuple(wa.shape)} against {tuple(wb.shape)}"
    if tuple(a.output.shape) != tuple(b.output.shape):
        return f"output shape {tuple(a.output.shape)} against {tuple(b.output.shape)}"
    return ""


def _counts(pairs) -> dict[str, int]:
    counts = {"copied": 0, "by_name": 0, "by_order": 0, "layers_by_name": 0, "layers_by_order": 0}
    for a, _, how in pairs:
        counts[f"by_{how}"] += len(a.weights)
        counts[f"layers_by_{how}"] += 1
    counts["copied"] = counts["by_name"] + counts["by_order"]
    return counts


# --- running --------------------------------------------------------------------------------------

# Above this many bytes of activations a call runs as one TensorFlow graph, which frees each
# intermediate tensor once used; an eager Keras call keeps them all to its end (ResNet-152 at
# 224x224, 32 calibration images then 8 inputs: 11.8 GB eager, 1.9 GB as graphs). Below it, eager:
# tracing a graph costs more than the call (ResNet-50 at 32x32: 3.6 s of an 8 s comparison).
EAGER_BYTES = 1 << 30


def _activation_bytes(model, batch: int) -> int:
    return 4 * batch * sum(math.prod(d or 1 for d in layer.output.shape[1:]) for layer in model.layers)


def _call(model, x: np.ndarray, *, training: bool, size_of=None):
    """model(x): eagerly, or as a graph where the activations (of `size_of`, default the model)
    would exceed EAGER_BYTES."""
    if _activation_bytes(size_of or model, len(x)) <= EAGER_BYTES:
        return model(x, training=training)
    tf, _ = import_keras()
    return tf.function(lambda t: model(t, training=training))(x)


def _run(model, outputs: Sequence, x: np.ndarray) -> list[np.ndarray]:
    _, keras = import_keras()
    probe = keras.Model(model.inputs[0], list(outputs))  # one input, given as a tensor
    return [np.asarray(g) for g in _call(probe, x, training=False, size_of=model)]


def _first_divergence(ours, reference, pairs, x: np.ndarray, reference_name: str) -> tuple[str | None, str]:
    """The first layer, in archkit's order, whose output differs from its counterpart's beyond the
    tolerance, as (layer, reason); compared: the weighted pairs, and the unweighted layers whose
    names and output shapes agree."""
    theirs = {layer.name: layer for layer in reference.layers}
    weighted = {id(a): b for a, b, _ in pairs}
    candidates = []
    for a in ours.layers[1:]:  # not the input
        b = weighted.get(id(a)) or (theirs.get(a.name) if not a.weights else None)
        if b is not None and tuple(a.output.shape) == tuple(b.output.shape):
            candidates.append((a, b))
    got = _run(ours, [a.output for a, _ in candidates], x)
    want = _run(reference, [b.output for _, b in candidates], x)
    for (a, b), g, w in zip(candidates, got, want):
        err, scale = float(np.max(np.abs(g - w))), float(np.max(np.abs(w)))
        if not within_tolerance(err, scale):
            counterpart = "" if a.name == b.name else f" ({reference_name}'s {b.name})"
            return a.name, (f"the weights match but the outputs differ, first at archkit's layer {a.name}{counterpart}: "
                            f"max abs error {err:.3g} at scale {scale:.3g}")
    return None, "the weights match but the outputs differ; no compared intermediate output differs"
