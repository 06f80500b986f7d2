"""The one check of archkit's counts against an architecture's references (architectures/*.py,
`Architecture.references`), and the counts it checks.

The rule. A reference is reproduced when archkit's count equals its `value`, or, where the
source prints a rounded figure (`rounding`: "3.8 x10^9" has rounding 1e8), when the count is
within half a unit of that rounding, that is, when the count rounds to the printed figure.
Half a unit is what a printed figure claims: any count in that interval prints as the figure,
so a wider tolerance would accept counts the source contradicts, and a narrower one would ask for
digits the source does not give. It is also the rule by which a report says "exact" or "matches
to the published rounding" (archkit.render.report.reference_rows), so a passing check is the
verdict the committed report shows. A count that does not reproduce its reference must be the
reference's `expected` value, exactly, and the reference's note must say why.
"""

from __future__ import annotations

import functools
import math

import architectures
from architectures import Reference
from archkit.keras.export import import_keras
from tests.exports import exported, keras_macs


def reproduces(ref: Reference, count: int) -> bool:
    """Does `count` reproduce the published figure: exactly, or to the source's rounding?"""
    diff = count - ref.value
    return diff == 0 or (ref.rounding is not None and abs(diff) <= ref.rounding / 2)


def check_reference(ref: Reference, count: int) -> None:
    """The rule above: `count` reproduces `ref`, or is exactly `ref.expected` and the note says why."""
    if ref.expected is None:
        assert reproduces(ref, count), f"{count:,} does not reproduce {ref}"
        return
    assert count == ref.expected, f"counted {count:,}, the reference expects {ref.expected:,}: {ref}"
    assert ref.note, f"a reference that expects a difference says why: {ref}"
    assert not reproduces(ref, ref.expected), f"{ref.expected:,} reproduces the figure: drop `expected`: {ref}"


def keras_figures(name: str, **config) -> dict:
    """The Keras model's parameters, MACs (`keras_macs`, which every export is checked against) and
    layer table (name, kind, output shape, weight shapes), built once per session and configuration."""
    return _keras_figures(name, tuple(sorted(architectures.get(name).config(**config).items())))


@functools.cache
def _keras_figures(name: str, config: tuple) -> dict:
    import_keras()
    model = architectures.get(name).build(**dict(config))
    return {
        "params": model.count_params(),
        "trainable": sum(math.prod(w.shape) for w in model.trainable_weights),
        "non_trainable": sum(math.prod(w.shape) for w in model.non_trainable_weights),
        "macs": keras_macs(model),
        "layers": [(l.name, type(l).__name__, tuple(l.output.shape), [tuple(w.shape) for w in l.weights])
                   for l in model.layers[1:]],  # not the input layer: its name is "image"
    }


def counted(arch_run, name: str) -> dict[str, int]:
    """archkit's figures for `name` at its defaults, by reference metric: the export's (Keras'
    parameter counts, ONNX params, kernel weights and MACs) where this run exports it, else the
    Keras model's (no ONNX params or kernel weights)."""
    if not exported(name):
        k = keras_figures(name)
        return {m: k[m] for m in ("params", "trainable", "non_trainable", "macs")}
    analysis, _ = arch_run(name)
    total, keras = analysis.costs.total(), analysis.keras_params
    return {"params": keras["total"], "trainable": keras["trainable"], "non_trainable": keras["non_trainable"],
            "onnx_params": total["params"], "kernel_weights": total["kernel_weights"], "macs": total["macs"]}
