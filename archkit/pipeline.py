"""The one way through: architecture → Keras model → ONNX → graph → costs (→ parity).

`analyse_model` works on any ONNX model and needs no TensorFlow; `run_architecture` builds a
registered architecture, exports it and adds what only Keras can tell (parity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import onnx

from archkit.costs import CostReport, analyse
from archkit.onnx.graph import build_graph
from archkit.onnx.load import archkit_metadata

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
    connectivity: Any = None  # archkit.connectivity.Connectivity: the wiring, measured on the same graph
    # How the file was made (run_architecture): deployment options, export time and whether it came
    # from the cache, Transposes left, sizes, and for fp16/int8 the deltas against the fp32 export.
    deployment: Mapping[str, Any] | None = None
    bench: Any = None  # archkit.bench.Bench, when asked for (machine-dependent: never in default reports)
    warnings: tuple[str, ...] = ()  # what the reader should know: e.g. external data missing (costs from dims)


def _shape_text(vi: onnx.ValueInfoProto) -> str:
    dims = vi.type.tensor_type.shape.dim
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def _quiet(stage: str) -> None:
    pass


def analyse_model(proto: onnx.ModelProto, *, name: str | None = None, size_bytes: int | None = None,
                  input_shapes: Mapping[str, tuple[int, ...]] | None = None, block_of=None,
                  progress=_quiet, input_values: Mapping[str, tuple[float, ...]] | None = None) -> Analysis:
    """progress: called with the name of each stage as it starts (the CLI shows them).
    input_values: graph inputs' values (archkit.onnx.graph.build_graph)."""
    progress("shape inference")
    G = build_graph(proto, input_shapes=input_shapes, input_values=input_values)
    meta = G.graph["metadata"]
    own = archkit_metadata(meta)
    init = {t.name for t in proto.graph.initializer}
    info = ModelInfo(
        opset=G.graph["opset"].get("ai.onnx", 0),
        ir_version=proto.ir_version,
        producer=G.graph["producer"],
        size_bytes=size_bytes if size_bytes is not None else proto.ByteSize(),
        inputs=tuple((i.name, _shape_text(i)) for i in proto.graph.input if i.name not in init),
        outputs=tuple((o.name, _shape_text(o)) for o in proto.graph.output),
    )
    progress("costs")
    costs = analyse(G, block_of=block_of)
    progress("connectivity")
    return Analysis(
        name=name or meta.get("archkit.architecture") or proto.graph.name or "model",
        info=info,
        costs=costs,
        connectivity=_connectivity(G, costs, proto),
        keras_layers=own.layers, keras_params=own.keras_params, config=own.config,
        warnings=tuple(f"metadata {k!r} ignored: not what archkit writes" for k in own.problems)
        + G.graph["warnings"] + costs.formula_warnings,
    )


def _connectivity(G, costs: CostReport, proto: onnx.ModelProto):
    from archkit.connectivity import analyse as connectivity

    kernels = None
    if "archkit.architecture" not in G.graph["metadata"]:
        # A file from elsewhere may hold trained weights: dense-block matrices then also show how
        # strongly each layer uses each source (archkit's own exports are seeded: structure only).
        from onnx import numpy_helper

        from archkit.onnx.load import has_data

        inits = {t.name: t for t in proto.graph.initializer if has_data(t)}
        kernels = lambda name: numpy_helper.to_array(inits[name]) if name in inits else None  # noqa: E731
    return connectivity(G, costs, kernel_values=kernels)  # pad amounts etc.: the graph's own constants


def build_seeded(name: str, *, seed: int = 0, **overrides):
    """Build a registered architecture with reproducible weights (see export.seed_weights)."""
    import architectures
    from archkit.keras.export import import_keras, seed_weights

    arch = architectures.get(name)
    config = arch.config(**overrides)
    tf, keras = import_keras()
    keras.utils.set_random_seed(seed)
    try:
        model = arch.builder(**config)
    except (ValueError, TypeError) as e:
        if not overrides:
            raise  # the registered defaults failing is a bug
        from archkit.errors import UsageError

        raise UsageError(f"{name}: config {', '.join(f'{k}={v!r}' for k, v in overrides.items())}: {e}") from None
    seed_weights(model, seed=seed)
    return arch, config, model


def run_architecture(name: str, *, opset: int | None = None, verify: bool = True, path=None, cache: bool = True,
                     deploy=None, seeds=(0,), batch_sizes=None, progress=_quiet,
                     **overrides) -> tuple[Analysis, onnx.ModelProto]:
    """Export (or take from the cache), analyse and, if asked, verify a registered architecture.
    A cache hit imports no TensorFlow.

    deploy: archkit.deploy.DeployOptions (layout, batch, precision; default: the plain export).
    seeds, batch_sizes: the verification setting (default seed 0 at batch 1 and 3); each setting's
    result is cached beside the export. The Analysis' `deployment` says how the file was made:
    the options, the export time (of the export that made it, and whether it came from the
    cache), Transposes left, sizes, and for fp16/int8 the size and accuracy deltas against the
    fp32 export on seeded evaluation inputs. progress: called with each stage's name as it starts."""
    import time
    from dataclasses import asdict

    import architectures
    from archkit.keras import cache as export_cache
    from archkit.deploy import DeployOptions
    from archkit.io import atomic_write_bytes
    from archkit.onnx.load import parse_model
    from archkit.verify import BATCH_SIZES, Verification

    deploy = deploy or DeployOptions()
    seeds, batch_sizes = tuple(seeds), tuple(batch_sizes or BATCH_SIZES)
    tag = "" if (seeds, batch_sizes) == ((0,), BATCH_SIZES) else \
        f"s{'-'.join(map(str, seeds))}_b{'-'.join(map(str, batch_sizes))}"
    arch = architectures.get(name)
    config = arch.config(**overrides)
    key = export_cache.cache_key(name, config, opset, deploy.cache_fields()) if cache else None
    hit = export_cache.load(key, tag) if key else None
    model = verification = None
    if hit is not None:
        progress("export taken from the cache")
        data, cached, info = hit
        proto = parse_model(data, origin=f"cache entry {key}")
        info = {**info, "cached": True}
        verification = Verification.from_dict(cached) if cached else None
    else:
        from archkit.deploy import convert_precision, count_transposes, precision_deltas
        from archkit.keras.export import export_keras

        progress("build")
        arch, config, model = build_seeded(name, **overrides)
        progress("export")
        start = time.perf_counter()
        fp32 = export_keras(model, name=name, config=config, opset=opset, block_of=arch.block,
                            layout=deploy.layout, batch=deploy.batch)
        exported = time.perf_counter()
        if deploy.precision != "fp32":
            progress(f"{deploy.precision} conversion")
        proto = convert_precision(fp32, deploy, name=name)
        converted = time.perf_counter()
        data = proto.SerializeToString()
        info = {"options": asdict(deploy), "export_seconds": round(exported - start, 2),
                "convert_seconds": round(converted - exported, 2), "transposes": count_transposes(proto),
                "size_bytes": len(data), "fp32_size_bytes": fp32.ByteSize(), "cached": False}
        if deploy.precision != "fp32":
            progress(f"{deploy.precision} vs fp32 in onnxruntime")
            info["deltas"] = precision_deltas(fp32, proto, name=name)  # runs both in onnxruntime
        elif not verify:
            from archkit.verify import run_isolated, seeded_inputs

            progress("check in onnxruntime")
            run_isolated(proto, [seeded_inputs(proto, deploy.batch or 1)], what=name)  # it runs
    if verify and verification is None:
        from archkit.verify import verify_keras

        if model is None:
            progress("build")
            arch, config, model = build_seeded(name, **overrides)
        progress("parity")
        verification = verify_keras(model, proto, seeds=seeds, batch_sizes=batch_sizes)
        if key and hit is not None:
            export_cache.store_verification(key, verification, tag)
    if model is not None:
        # Keras/TensorFlow keep every traced function alive; an `archkit report --all` (or a test
        # session) exporting the whole zoo in one process would otherwise grow past 15 GB.
        import keras

        del model
        keras.utils.clear_session(free_memory=True)
    if key and hit is None:
        export_cache.store(key, data, verification, tag, info)
    if path is not None:
        atomic_write_bytes(path, data)
    result = analyse_model(proto, name=name, size_bytes=len(data), progress=progress)
    return _with(result, verification=verification if verify else None, deployment=info), proto


def _with(a: Analysis, **changes) -> Analysis:
    from dataclasses import replace

    return replace(a, **changes)
