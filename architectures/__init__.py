"""The architectures archkit defines, in Keras, and the registry that names them.

Each family lives in its own module and registers its builders with `register`.
A builder takes keyword-only configuration and returns an (unbuilt-weights) keras.Model.
Importing this package does not import TensorFlow: builders import Keras when called.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archkit.errors import UsageError

__all__ = ["Architecture", "PublishedField", "Reference", "all_architectures", "closest", "get", "names", "register"]


@dataclass(frozen=True)
class Reference:
    """One published or closed-form figure an architecture's counts are compared with.

    `metric` is one of: "params" (learnable, Keras total), "trainable", "non_trainable",
    "onnx_params" (every parameter the ONNX file holds), "kernel_weights" (conv/dense kernels only, no
    biases), "macs"; `value` is exact unless `rounding` says to what the source rounds (e.g. 1e9 for
    "3.8 x10^9").

    `expected` is what archkit counts where that count does not reproduce `value` (the note
    says why); None means it does: exactly, or to the source's rounding (|count - value| <=
    rounding / 2).
    """

    metric: str
    value: float
    source: str
    note: str = ""
    rounding: float | None = None
    expected: int | None = None


@dataclass(frozen=True)
class PublishedField:
    """A receptive field from google-research/receptive_field's table (TF-slim models, 224x224),
    and the archkit layer where the same field is measured."""

    layer: str  # archkit's layer
    model: str  # TF-slim's model
    end_point: str
    size: int
    stride: int
    padding: int
    note: str = ""  # why archkit's figure differs, where it does


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str
    builder: Callable[..., Any]
    paper: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    references: tuple[Reference, ...] = ()
    # Maps a Keras layer name to the paper block it belongs to; default: the layer itself.
    block_of: Callable[[str], str] | None = None
    notes: tuple[str, ...] = ()
    # The paper's own per-block table, row by row in the paper's order: dicts with a "block"
    # key (matching block_of's names), the paper's columns, and an optional "note" explaining
    # where the paper disagrees with its own configuration.
    paper_table: tuple[Mapping[str, Any], ...] = ()
    # Published receptive fields of the same network, each beside the layer where archkit measures it.
    receptive_fields: tuple[PublishedField, ...] = ()

    def config(self, **overrides: Any) -> dict[str, Any]:
        unknown = set(overrides) - set(self.defaults)
        if unknown:
            raise UsageError(f"{self.name}: unknown config key(s) {sorted(unknown)}; known: {sorted(self.defaults)}")
        return {**self.defaults, **overrides}

    def build(self, **overrides: Any):
        return self.builder(**self.config(**overrides))

    def block(self, layer: str) -> str:
        return self.block_of(layer) if self.block_of else layer


_REGISTRY: dict[str, Architecture] = {}
# Family modules, imported lazily so that `archkit list` stays light.
_MODULES = ("architectures.baseline", "architectures.inception_cost", "architectures.inception", "architectures.resnet",
            "architectures.densenet", "architectures.alexnet")
_loaded = False


def register(arch: Architecture) -> Architecture:
    if arch.name in _REGISTRY:
        raise ValueError(f"architecture {arch.name!r} registered twice")
    _REGISTRY[arch.name] = arch
    return arch


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _MODULES:
            importlib.import_module(module)


def names() -> list[str]:
    _load()
    return list(_REGISTRY)


def all_architectures() -> list[Architecture]:
    _load()
    return list(_REGISTRY.values())


def closest(name: str, n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, names(), n=n, cutoff=0.4)


def get(name: str) -> Architecture:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        hint = closest(name)
        suggestion = f"; did you mean {', '.join(hint)}?" if hint else "; see `archkit list`"
        raise UsageError(f"unknown architecture {name!r}{suggestion}") from None
