"""Which registered architectures the default test run exports at full size.

Export time is mostly a network's depth and weights. The deepest members of two families,
resnet101/152 and densenet169/201 (the same builders and stage lists as resnet50 and
densenet121, with more blocks), are exported only with ARCHKIT_TEST_ALL_EXPORTS=1: about 70 s
more for the four, 70 s more for resnet's v1.5 exports. Without it their published figures are
still checked, on the Keras model's counts (`keras_macs`, Keras' parameter counts), which
every export is checked against (resnet50 and densenet121 in the default run).
"""

from __future__ import annotations

import math
import os

import pytest

ALL_EXPORTS = bool(os.environ.get("ARCHKIT_TEST_ALL_EXPORTS"))
HEAVY_EXPORTS = frozenset({"resnet101", "resnet152", "densenet169", "densenet201"})


def exported(name: str) -> bool:
    """Does this run export `name` at full size?"""
    return ALL_EXPORTS or name not in HEAVY_EXPORTS


def export_param(value, name: str | None = None):
    """A parametrize value for a test that exports `name` (default: the value itself)."""
    name = value if name is None else name
    return pytest.param(value, marks=pytest.mark.skipif(not exported(name), reason="set ARCHKIT_TEST_ALL_EXPORTS=1"))


def keras_macs(model) -> int:
    """Conv and Dense multiply-accumulates read off the Keras model (output size x kernel fan-in)."""
    from keras import layers

    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            total += math.prod(layer.output.shape[1:]) * math.prod(layer.kernel.shape[:3])
        elif isinstance(layer, layers.Dense):
            total += math.prod(layer.output.shape[1:]) * layer.kernel.shape[0]
    return total
