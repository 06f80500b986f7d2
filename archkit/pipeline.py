"""The one way through: architecture → Keras model → ONNX → graph → costs (→ parity).

`analyse_model` works on any ONNX model and needs no TensorFlow; `run_architecture` builds a
registered architecture, exports it and adds what only Keras can tell (parity).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import onnx

from archkit.costs import CostReport, analyse
from archkit.graph import build_graph

__all__ = ["ModelInfo", "Analysis", "analyse_model", "run_architecture", "build_seeded"]


@dataclass(frozen=True)
class ModelInfo:
    opset: int
    ir_version: int
    producer: str
    size_bytes: int
    inputs: tuple[tuple[str, str], ...]  # (name, shape as text)
    outputs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Analysis:
    name: str
    info: ModelInfo
    costs: CostReport
    keras_layers: tuple[Mapping[str, Any], ...] = ()  # from the export's metadata, if archkit made it
    keras_params: Mapping[str, int] | None = None
    config: Mapping[str, Any] | None = None
    verification: Any = None  # archkit.verify.Verification, when a Keras source was run


def _shape_text(vi: onnx.ValueInfoProto) -> str:
    dims = vi.type.tensor_type.shape.dim
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def analyse_model(proto: onnx.ModelProto, *, name: str | None = None, size_bytes: int | None = None,
                  input_shapes: Mapping[str, tuple[int, ...]] | None = None, block_of=None) -> Analysis:
    G = build_graph(proto, input_shapes=input_shapes)
    meta = G.graph["metadata"]
    init = {t.name for t in proto.graph.initializer}
    info = ModelInfo(
        opset=G.graph["opset"].get("ai.onnx", 0),
        ir_version=proto.ir_version,
        producer=G.graph["producer"],
        size_bytes=size_bytes if size_bytes is not None else proto.ByteSize(),
        inputs=tuple((i.name, _shape_text(i)) for i in proto.graph.input if i.name not in init),
        outputs=tuple((o.name, _shape_text(o)) for o in proto.graph.output),
    )
    return Analysis(
        name=name or meta.get("archkit.architecture") or proto.graph.name or "model",
        info=info,
        costs=analyse(G, block_of=block_of),
        keras_layers=tuple(json.loads(meta["archkit.layers"])) if "archkit.layers" in meta else (),
        keras_params=json.loads(meta["archkit.keras_params"]) if "archkit.keras_params" in meta else None,
        config=json.loads(meta["archkit.config"]) if "archkit.config" in meta else None,
    )


def build_seeded(name: str, *, seed: int = 0, **overrides):
    """Build a registered architecture with reproducible weights (see export.seed_weights)."""
    import architectures
    from archkit.export import import_keras, seed_weights

    arch = architectures.get(name)
    config = arch.config(**overrides)
    tf, keras = import_keras()
    keras.utils.set_random_seed(seed)
    model = arch.builder(**config)
    seed_weights(model, seed=seed)
    return arch, config, model


def run_architecture(name: str, *, opset: int | None = None, verify: bool = True, path=None, cache: bool = True,
                     **overrides) -> tuple[Analysis, onnx.ModelProto]:
    """Export (or take from the cache), analyse and, if asked, verify a registered architecture.
    A cache hit imports no TensorFlow."""
    import architectures
    from archkit import cache as export_cache
    from archkit.io import atomic_write_bytes
    from archkit.load import parse_model
    from archkit.verify import Verification

    arch = architectures.get(name)
    config = arch.config(**overrides)
    key = export_cache.cache_key(name, config, opset) if cache else None
    hit = export_cache.load(key) if key else None
    if hit is not None and (hit[1] is not None or not verify):
        data, verification = hit
        proto = parse_model(data, origin=f"cache entry {key}")
        if path is not None:
            atomic_write_bytes(path, data)
        result = analyse_model(proto, name=name, size_bytes=len(data))
        if verify:
            result = _with(result, verification=Verification.from_dict(verification))
        return result, proto

    from archkit.export import export_keras

    arch, config, model = build_seeded(name, **overrides)
    proto = export_keras(model, name=name, config=config, opset=opset, block_of=arch.block, path=path)
    data = proto.SerializeToString()
    result = analyse_model(proto, name=name, size_bytes=len(data))
    if verify:
        from archkit.verify import verify_keras

        result = _with(result, verification=verify_keras(model, proto))
    if key:
        export_cache.store(key, data, result.verification)
    return result, proto


def _with(a: Analysis, **changes) -> Analysis:
    from dataclasses import replace

    return replace(a, **changes)
