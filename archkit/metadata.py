"""archkit's own `metadata_props`: one writer (`write`) and one validated reader (`read`).

An archkit export records how it was made: the architecture and its config, the Keras layers
and parameter counts (the costs stage reconciles ONNX ops with them), the input layout, the
batch and the precision (parity and bench read those). Any file may carry keys named
`archkit.*`, so the reader keeps a key only when its value has the form the writer gives it;
the others are listed in `problems` and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import onnx

__all__ = ["LAYOUTS", "PRECISIONS", "ArchkitMetadata", "entries", "read", "write"]

LAYOUTS = ("nhwc", "nchw")
PRECISIONS = ("fp32", "fp16", "int8")
_PREFIX = "archkit."

# How each structured value is written: the encodings are part of the file (its bytes, its size).
_ENCODERS = {
    "config": lambda v: json.dumps(dict(v), sort_keys=True, default=list),
    "keras_params": lambda v: json.dumps(dict(v)),
    "layers": lambda v: json.dumps(list(v), separators=(",", ":")),
    "quantization": lambda v: json.dumps(dict(v), sort_keys=True),
    "fp16": lambda v: json.dumps(dict(v)),
    "batch": lambda v: "dynamic" if v is None else str(v),
}


class ArchkitMetadata(NamedTuple):
    """What archkit's own exports record in metadata_props, checked."""

    architecture: str | None = None
    version: str | None = None
    config: dict | None = None
    keras_params: dict | None = None  # total, trainable, non_trainable
    layers: tuple[dict, ...] = ()  # Keras layers: name, class, output_shape, trainable, non_trainable, block
    layout: str | None = None  # nhwc or nchw
    batch: int | None = None  # a fixed batch; None: dynamic or not recorded
    precision: str | None = None  # fp32, fp16 or int8
    quantization: dict | None = None  # int8: how it was quantized
    problems: tuple[str, ...] = ()  # keys ignored because they are not what archkit writes


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _layer_ok(layer: Any) -> bool:
    if not isinstance(layer, dict):
        return False
    shape = layer.get("output_shape")
    return (isinstance(layer.get("name"), str) and isinstance(layer.get("class"), str)
            and isinstance(layer.get("block", ""), str)
            and all(_count(layer.get(k)) for k in ("trainable", "non_trainable"))
            and (shape is None or isinstance(shape, list) and all(d is None or isinstance(d, int) for d in shape)))


def _json(check: Callable[[Any], bool]) -> Callable[[str], Any]:
    """A parser: the JSON value `check` accepts, else None."""
    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return value if check(value) else None
    return parse


def _batch(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) >= 1 else None


# key → (field, parser: the value or None when it is not what archkit writes)
_READERS = {
    "architecture": ("architecture", lambda t: t),
    "version": ("version", lambda t: t),
    "config": ("config", _json(lambda v: isinstance(v, dict))),
    "keras_params": ("keras_params", _json(lambda v: isinstance(v, dict) and all(
        isinstance(v.get(k), int) for k in ("total", "trainable", "non_trainable")))),
    "layers": ("layers", _json(lambda v: isinstance(v, list) and all(map(_layer_ok, v)))),
    "layout": ("layout", lambda t: t if t in LAYOUTS else None),
    "precision": ("precision", lambda t: t if t in PRECISIONS else None),
    "quantization": ("quantization", _json(lambda v: isinstance(v, dict))),
}
_CHECKED = ("config", "keras_params", "layers")  # the keys a malformed value of is reported


def entries(proto: onnx.ModelProto) -> dict[str, str]:
    """All of a model's metadata_props, archkit's and others'."""
    return {p.key: p.value for p in proto.metadata_props}


def read(meta: Mapping[str, str] | onnx.ModelProto) -> ArchkitMetadata:
    """The archkit.* metadata of a model (or of its metadata_props as a mapping), each key kept
    only if it has the form archkit writes."""
    if not isinstance(meta, Mapping):  # a ModelProto (onnx is not imported here: the CLI loads this first)
        meta = entries(meta)
    out: dict[str, Any] = {}
    problems = []
    for key, (field, parse) in _READERS.items():
        text = meta.get(_PREFIX + key)
        if text is None:
            continue
        value = parse(text)
        if value is None:
            if key in _CHECKED:
                problems.append(_PREFIX + key)
            continue
        out[field] = tuple(value) if field == "layers" else value
    batch = meta.get(_PREFIX + "batch")
    if batch is not None:
        out["batch"] = _batch(batch)
    return ArchkitMetadata(**out, problems=tuple(problems))


def write(proto: onnx.ModelProto, *, replace: bool = False, **items: Any) -> None:
    """Set archkit.<key> entries, keeping the others in order; `replace`: drop every entry first.
    Structured values (config, keras_params, layers, quantization, fp16, batch) are encoded
    here, the way `read` expects them."""
    if replace:
        del proto.metadata_props[:]
    wanted = {_PREFIX + k: _ENCODERS.get(k, str)(v) for k, v in items.items()}
    for p in proto.metadata_props:
        if p.key in wanted:
            p.value = wanted.pop(p.key)
    for k, v in wanted.items():
        proto.metadata_props.add(key=k, value=v)
