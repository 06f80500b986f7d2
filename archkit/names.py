"""From ONNX node names back to framework layers.

Exporters keep the layer name as one component of the node's scope path, often with a
uniquifying suffix: tf2onnx writes `baseline_cnn_1/FC1_1/MatMul` for Keras layer `FC1`.
"""

from __future__ import annotations

import re
from typing import Iterable

_SUFFIX = re.compile(r"^(.*)_\d+$")


class LayerResolver:
    """Maps node names to known layer names; None when no scope component names a layer."""

    def __init__(self, layers: Iterable[str]):
        self.layers = frozenset(layers)

    def __call__(self, node_name: str) -> str | None:
        # Innermost scope first: nested models put the outer model's name first.
        for part in reversed(node_name.split("/")[:-1] or [node_name]):
            # tf2onnx adds one `_N` to each scope; try that reading before the literal one,
            # so that layer `conv2d` (scope `conv2d_1`) is not taken for a layer `conv2d_1`.
            m = _SUFFIX.match(part)
            if m and m.group(1) in self.layers:
                return m.group(1)
            if part in self.layers:
                return part
        return None


def scope_of(node_name: str) -> str | None:
    """For files without layer metadata: the node's scope path (all but the last component)."""
    parts = node_name.split("/")
    return "/".join(parts[:-1]) if len(parts) > 1 else None
