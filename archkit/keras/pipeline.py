"""From a registered architecture to its Analysis: build (seeded weights) → export (or the
cache) → deployment form → archkit.analysis, and what only Keras can tell (parity).

A cache hit imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import onnx

import architectures
from archkit.analysis import Analysis, analyse_model
from archkit.deploy import DeployOptions
from archkit.deploy.convert import convert_precision, count_transposes, precision_deltas
from archkit.errors import UsageError
from archkit.io import atomic_write_bytes
from archkit.keras import cache as export_cache
from archkit.keras.equivalence import REFERENCES, Equivalence, equivalence
from archkit.keras.export import export_keras, import_keras, seed_weights
from archkit.keras.layerwise import layerwise_keras
from archkit.keras.parity import verify_keras
from archkit.onnx.load import parse_model
from archkit.runtime.child import run_isolated
from archkit.runtime.layerwise import Layerwise
from archkit.runtime.memory import MemoryCheck, checked, feed, measure_memory
from archkit.runtime.parity import BATCH_SIZES, Verification, seeded_inputs

__all__ = ["LAYERWISE_FORMS", "build_seeded", "equivalence_of", "form_label", "layerwise_forms", "run_architecture"]

# The deployment forms a report compares layer by layer (`archkit report NAME --layers`)
LAYERWISE_FORMS = (DeployOptions(), DeployOptions(precision="fp16"),
                   DeployOptions(precision="int8", quantization="dynamic"), DeployOptions(precision="int8"))


def _quiet(stage: str) -> None:
    pass


def build_seeded(name: str, *, seed: int = 0, **overrides):
    """Build a registered architecture with reproducible weights (see export.seed_weights)."""
    arch = architectures.get(name)
    config = arch.config(**overrides)
    _, keras = import_keras()
    keras.utils.set_random_seed(seed)
    try:
        model = arch.builder(**config)
    except (ValueError, TypeError) as e:
        if not overrides:
            raise  # the registered defaults failing is a bug
        raise UsageError(f"{name}: config {', '.join(f'{k}={v!r}' for k, v in overrides.items())}: {e}") from None
    seed_weights(model, seed=seed)
    return arch, config, model


def run_architecture(name: str, *, opset: int | None = None, verify: bool = True, path=None, cache: bool = True,
                     deploy: DeployOptions | None = None, seeds=(0,), batch_sizes=None, timeout: float | None = None,
                     layers: bool | str = False, progress=_quiet, **overrides) -> tuple[Analysis, onnx.ModelProto]:
    """Export (or take from the cache), analyse and, if asked, verify a registered architecture.

    deploy: the deployment form (layout, batch, precision; default: the plain export).
    seeds, batch_sizes: the verification setting (default seed 0 at batch 1 and 3); each setting's
    result is cached beside the export. timeout: seconds each onnxruntime child may take. The
    Analysis' `deployment` says how the file was made: the options, the export time (of the export
    that made it, and whether it came from the cache), Transposes left, sizes, and for fp16/int8
    the size and accuracy deltas against the fp32 export on seeded evaluation inputs. layers: also
    compare every Keras layer's output with its tensor in the export (archkit.keras.layerwise;
    "on failure": only when the verification fails, to say where it drifts). progress: called
    with each stage's name as it starts."""
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
        info = {"options": dataclasses.asdict(deploy), "export_seconds": round(exported - start, 2),
                "convert_seconds": round(converted - exported, 2), "transposes": count_transposes(proto),
                "size_bytes": len(data), "fp32_size_bytes": fp32.ByteSize(), "cached": False}
        if deploy.precision != "fp32":
            progress(f"{deploy.precision} vs fp32 in onnxruntime")
            info["deltas"] = precision_deltas(fp32, proto, name=name)  # runs both in onnxruntime
        elif not verify:
            progress("check in onnxruntime")
            run_isolated(proto, [seeded_inputs(proto, deploy.batch or 1)], what=name, timeout=timeout)  # it runs
    if verify and verification is None:
        if model is None:
            progress("build")
            arch, config, model = build_seeded(name, **overrides)
        progress("parity")
        verification = verify_keras(model, proto, seeds=seeds, batch_sizes=batch_sizes, timeout=timeout)
        if key and hit is not None:
            export_cache.store_verification(key, verification, tag)
    wanted = verify and (layers is True or (layers == "on failure" and verification is not None and not verification.ok))
    if model is not None and not wanted:
        model = None  # nothing else holds it: cleared with the session below
        _clear_keras()
    if key and hit is None:
        export_cache.store(key, data, verification, tag, info)
    # the plan is checked on float32 exports: for int8 (QDQ) graphs onnxruntime's plan differs from
    # archkit's model of it (measured on baseline_cnn), and is not modelled yet
    memory_check = _memory_check(proto, name, key, timeout, progress) if verify and deploy.precision == "fp32" \
        else None
    result = analyse_model(proto, name=name, size_bytes=len(data), progress=progress)
    layerwise = None
    if wanted:
        if model is None:
            progress("build")
            arch, config, model = build_seeded(name, **overrides)
        progress("layerwise parity")
        layerwise = {form_label(deploy): layerwise_keras(model, proto, result, seeds=seeds, timeout=timeout)}
        model = None
        _clear_keras()
    if path is not None:
        atomic_write_bytes(path, data)
    return dataclasses.replace(result, verification=verification if verify else None, memory_check=memory_check,
                               layerwise=layerwise, deployment=info), proto


def _clear_keras() -> None:
    """Free what Keras holds once its models are let go: Keras/TensorFlow keep every traced function
    alive; an `archkit report --all` (or a test session) exporting the whole zoo in one process would
    otherwise grow past 15 GB."""
    _, keras = import_keras()
    keras.utils.clear_session(free_memory=True)


def form_label(deploy: DeployOptions) -> str:
    """fp32, fp16, int8 dynamic, int8 static (and the layout when it is NCHW)."""
    label = deploy.precision + (f" {deploy.quantization}" if deploy.precision == "int8" else "")
    return label + (" nchw" if deploy.layout == "nchw" else "")


def layerwise_forms(name: str, *, forms=LAYERWISE_FORMS, seeds=(0,), timeout: float | None = None, progress=_quiet,
                    **overrides) -> dict[str, Any]:
    """Layerwise parity of a registered architecture in each deployment form of `forms` (each
    export taken from the cache or made) against one seeded Keras model: form label → Layerwise.
    Each result is kept beside its form's export, so a warm report loads no TensorFlow."""
    arch = architectures.get(name)
    config = arch.config(**overrides)
    file = "layerwise.json" if tuple(seeds) == (0,) else f"layerwise-s{'-'.join(map(str, seeds))}.json"
    out: dict[str, Any] = {}
    model = None
    try:
        for deploy in forms:
            label = form_label(deploy)
            key = export_cache.cache_key(name, config, None, deploy.cache_fields())
            cached = export_cache.load_json(key, file)
            if cached is not None:
                try:
                    out[label] = Layerwise.from_dict(cached)
                    continue
                except (KeyError, TypeError, ValueError):
                    pass  # another version's fields: compared again
            a, proto = run_architecture(name, verify=False, deploy=deploy, timeout=timeout, **overrides)
            if model is None:
                _, _, model = build_seeded(name, **overrides)
            progress(f"layerwise parity ({label})")
            out[label] = layerwise_keras(model, proto, a, seeds=seeds, timeout=timeout)
            export_cache.store_json(key, file, out[label].to_dict())
    finally:
        if model is not None:
            model = None
            _clear_keras()
    return out


def equivalence_of(name: str, *, progress=_quiet) -> Any | None:
    """For an architecture keras.applications also builds, at its defaults: does it compute the
    same function (archkit.keras.equivalence)? Kept beside its fp32 export in the cache; None
    for the others."""
    if name not in REFERENCES:
        return None
    arch = architectures.get(name)
    key = export_cache.cache_key(name, arch.config(), None, DeployOptions().cache_fields())
    cached = export_cache.load_json(key, "equivalence.json")
    if cached is not None:
        try:
            return Equivalence(**{**cached, "input_shape": tuple(cached["input_shape"])})
        except TypeError:
            pass  # another version's fields: measured again
    progress(f"equivalence with {REFERENCES[name][0]}")
    result = equivalence(name)
    export_cache.store_json(key, "equivalence.json", dataclasses.asdict(result))
    return result


def _memory_check(proto: onnx.ModelProto, name: str, key: str | None, timeout: float | None, progress) -> MemoryCheck:
    """archkit's memory figures against onnxruntime's allocator, at batch 1 (the profile cached
    beside the export; archkit's side computed again)."""
    inputs = feed(proto)
    cached = export_cache.load_memory_profile(key) if key else None
    if cached is None:
        progress("memory in onnxruntime")
        runtime, events = measure_memory(proto, inputs, what=name, timeout=timeout)
        if key:
            export_cache.store_memory_profile(key, {"runtime": runtime, "events": events})
    else:
        runtime, events = cached["runtime"], cached["events"]
    return checked(proto, inputs, runtime, events)
