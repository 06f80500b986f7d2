"""archkit: what a convolutional network costs, how it is wired, and whether its ONNX export
computes what the Keras model computes.

    import archkit
    a = archkit.analyse_file("resnet50.onnx")
    a.costs.total(), a.costs.by_block(), a.connectivity

The public names below load on first use (PEP 562), so `import archkit` and `archkit --help`
stay fast. Only archkit.keras (and archkit.course, which trains a Keras model) imports
TensorFlow, and only inside the functions that build or export a model: the analysis side
(archkit.onnx, archkit.costs, archkit.connectivity, archkit.render, archkit.runtime) never
does, and tests/test_layout.py checks it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name → the module that defines it
_PUBLIC = {
    "analyse_file": "archkit.analysis", "analyse_model": "archkit.analysis", "Analysis": "archkit.analysis",
    "ModelInfo": "archkit.analysis",
    "CostReport": "archkit.costs", "OpCost": "archkit.costs",
    "Connectivity": "archkit.connectivity",
    "Verification": "archkit.runtime.parity", "OutputParity": "archkit.runtime.parity",
    "Bench": "archkit.runtime.bench",
    "ArchkitError": "archkit.errors", "UsageError": "archkit.errors", "InputError": "archkit.errors",
    "MalformedModelError": "archkit.errors", "UnsafeModelError": "archkit.errors",
    "UnsupportedError": "archkit.errors", "ResourceError": "archkit.errors", "ParityError": "archkit.errors",
    "ExportError": "archkit.errors", "OutputError": "archkit.errors", "InternalError": "archkit.errors",
}

__all__ = [  # __version__ and the keys of _PUBLIC
    "Analysis", "ArchkitError", "Bench", "Connectivity", "CostReport", "ExportError", "InputError",
    "InternalError", "MalformedModelError", "ModelInfo", "OpCost", "OutputError", "OutputParity", "ParityError", "ResourceError",
    "UnsafeModelError", "UnsupportedError", "UsageError", "Verification", "__version__", "analyse_file",
    "analyse_model",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'archkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
