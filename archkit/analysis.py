"""The one way through an ONNX model: graph (with shapes) → costs → connectivity → `Analysis`.

    from archkit import analyse_file
    a = analyse_file("resnet50.onnx", input_shapes={"input": (8, 3, 224, 224)})
    a.costs.total(), a.costs.by_block(), a.costs.complete

`analyse_model` works on a parsed model, archkit's own exports (archkit.keras.pipeline) and
any other file alike; `analyse_file` first reads and checks a file (archkit.onnx.load). No
TensorFlow is imported, and no weight is read for the costs (external data files are never
opened: dims suffice); the connectivity pass reads a file's weights for its dense-block matrices.
"""

from __future__ import annotations

import gc
import itertools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import onnx
import pandas as pd
from onnx import numpy_helper

from archkit import metadata
from archkit.connectivity import Connectivity
from archkit.connectivity import analyse as connectivity_of
from archkit.costs import CostReport
from archkit.costs import analyse as costs_of
from archkit.costs.memory import Memory
from archkit.costs.memory import plan as plan_memory
from archkit.errors import MalformedModelError, ResourceError, UnsafeModelError, UnsupportedError, UsageError
from archkit.onnx.graph import build_graph, free_dims
from archkit.onnx.load import Loaded, load_model
from archkit.onnx.tensors import has_data

__all__ = [
    "SWEEP_COLUMNS",
    "UNSCOPED",
    "Analysis",
    "ModelInfo",
    "analyse_file",
    "analyse_loaded",
    "analyse_model",
    "sweep",
]

UNSCOPED = ("no scopes in the node names (such as /layer1/conv1/Conv): layers and blocks are unknown, each op is its "
            "own; views by layer or block show op types instead")


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
    verification: Any = None  # archkit.runtime.parity.Verification, when a Keras source was run
    memory_check: Any = None  # archkit.runtime.memory.MemoryCheck, when the file was run for it
    # deployment form ("fp32", "int8 static", ...) → archkit.runtime.layerwise.Layerwise, when each
    # layer was compared with Keras
    layerwise: Mapping[str, Any] | None = None
    # archkit.keras.equivalence.Equivalence: the same function as keras.applications' model, for
    # the architectures it also builds
    equivalence: Any = None
    connectivity: Connectivity | None = None  # the wiring, measured on the same graph
    memory: Memory | None = None  # the buffers and the live memory along three execution orders
    # How the file was made (archkit.keras.pipeline): deployment options, export time and whether it
    # came from the cache, Transposes left, sizes, and for fp16/int8 the deltas against the fp32 export.
    deployment: Mapping[str, Any] | None = None
    bench: Any = None  # archkit.runtime.bench.Bench, when asked for (machine-dependent: never in default reports)
    warnings: tuple[str, ...] = ()  # what the reader should know: e.g. external data missing (costs from dims)


def shape_text(vi: onnx.ValueInfoProto) -> str:
    dims = vi.type.tensor_type.shape.dim
    return "x".join(str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def _quiet(stage: str) -> None:
    pass


def analyse_model(proto: onnx.ModelProto, *, name: str | None = None, size_bytes: int | None = None,
                  input_shapes: Mapping[str, object] | None = None,
                  input_values: Mapping[str, tuple[float, ...]] | None = None,
                  block_of: Callable[[str], str] | None = None, connectivity: bool = True, memory: bool = True,
                  progress: Callable[[str], None] = _quiet) -> Analysis:
    """The Analysis of a parsed model. `input_shapes`, `input_values`: see analyse_file;
    `block_of`: layer name → paper block (an architecture's own); `connectivity`: add the wiring
    (it takes time superlinear in the graph's size); `memory`: add the memory figures (about a
    seventh of the analysis' time on a long chain); `progress`: called with each stage's name."""
    progress("shape inference")
    G = build_graph(proto, input_shapes=input_shapes, input_values=input_values)
    own = metadata.read(G.graph["metadata"])
    init = set(G.graph["initializers"])
    info = ModelInfo(
        opset=G.graph["opset"].get("ai.onnx", 0), ir_version=proto.ir_version, producer=G.graph["producer"],
        size_bytes=size_bytes if size_bytes is not None else proto.ByteSize(),
        inputs=tuple((i.name, shape_text(i)) for i in proto.graph.input if i.name not in init),
        outputs=tuple((o.name, shape_text(o)) for o in proto.graph.output),
    )
    progress("costs")
    costs = costs_of(G, block_of=block_of)
    plan = None
    if memory:
        progress("memory")
        plan = plan_memory(G, sum(o.weight_bytes for o in costs.ops))
    wiring = None
    if connectivity:
        progress("connectivity")
        wiring = _connectivity(G, costs, proto, own.architecture is None)
    return Analysis(
        name=name or own.architecture or proto.graph.name or "model", info=info, costs=costs, connectivity=wiring,
        memory=plan,
        keras_layers=own.layers, keras_params=own.keras_params, config=own.config,
        warnings=tuple(f"metadata {k!r} ignored: not what archkit writes" for k in own.problems)
        + G.graph["warnings"] + costs.formula_warnings,
    )


def _connectivity(G, costs: CostReport, proto: onnx.ModelProto, trained: bool) -> Connectivity:
    kernels = None
    if trained:
        # A file from elsewhere may hold trained weights: dense-block matrices then also show how
        # strongly each layer uses each source (archkit's own exports are seeded: structure only).
        inits = {t.name: t for t in proto.graph.initializer if has_data(t)}
        kernels = lambda name: numpy_helper.to_array(inits[name]) if name in inits else None
    return connectivity_of(G, costs, kernel_values=kernels)  # pad amounts etc.: the graph's own constants


def analyse_file(path: str | os.PathLike, *, input_shapes: Mapping[str, object] | None = None,
                 name: str | None = None, connectivity: bool = False, max_bytes: int | None = None,
                 strict: bool = False, input_values: Mapping[str, tuple[float, ...]] | None = None,
                 memory: bool = True) -> Analysis:
    """Analyse an ONNX file. `input_shapes`: graph input name → full shape, or a symbolic dim's
    name (as the file declares it) → its value; for symbolic dims left free the figures are at 1 (per
    sample) and `costs.formulas` gives the totals as formulas in them.
    `input_values`: graph input name → its value (elements in order): an If whose condition
    follows from it counts only the branch taken.

    `connectivity=True` adds the wiring analysis (it reads the weights held inside the file and
    takes time superlinear in the graph's size); by default costs and memory are computed
    (`memory=False`: costs only), and no weight is read. The file is checked first (archkit.onnx.load: size limit `max_bytes`,
    structure, external data); `strict`: an op without a cost rule, or whose cost is unknown, is
    an error instead of a lower bound. Raises archkit errors only, each naming the file."""
    return analyse_loaded(load_model(path, max_bytes=max_bytes), input_shapes=input_shapes, name=name,
                          connectivity=connectivity, strict=strict, input_values=input_values, memory=memory)


def analyse_loaded(loaded: Loaded, *, input_shapes: Mapping[str, object] | None = None, name: str | None = None,
                   connectivity: bool = False, strict: bool = False,
                   input_values: Mapping[str, tuple[float, ...]] | None = None, memory: bool = True) -> Analysis:
    """analyse_file for a model already read and checked by archkit.onnx.load.load_model."""
    p, proto = loaded.path, loaded.proto
    enabled = gc.isenabled()
    gc.disable()  # one pass of the collector over the result at the end, not one per stage
    try:
        a = analyse_model(proto, name=name or proto.graph.name or p.stem, size_bytes=loaded.size_bytes,
                          input_shapes=input_shapes, input_values=input_values, connectivity=connectivity,
                          memory=memory)
    except (MalformedModelError, ResourceError, UnsafeModelError) as e:
        raise type(e)(f"{p}: {e}") from None
    except RecursionError:
        raise MalformedModelError(f"{p}: the graph nests too deeply to analyse") from None
    finally:
        if enabled:
            gc.enable()
    if not a.costs.scoped:
        a = replace(a, warnings=a.warnings + (UNSCOPED,))
    if loaded.warnings:
        a = replace(a, warnings=loaded.warnings + a.warnings)
    if strict and not a.costs.complete:
        c = a.costs
        what = ([f"no cost rule for {', '.join(c.unsupported)}"] if c.unsupported else []) + \
               ([f"cost unknown for {len(c.unknown)} ops (e.g. {c.unknown[0]})"] if c.unknown else [])
        raise UnsupportedError(f"{p}: {'; '.join(what)} (--strict)")
    return a


SWEEP_COLUMNS = ("macs", "flops", "params", "peak_bytes")  # peak_bytes: live memory at its peak, onnxruntime's order


def sweep(loaded: Loaded, dims: Mapping[str, tuple[int, ...]], *, input_shapes: Mapping[str, object] | None = None,
          input_values: Mapping[str, tuple[float, ...]] | None = None) -> pd.DataFrame:
    """One row per combination of the swept dims' values: the totals the file costs there, the
    peak live bytes in onnxruntime's order, and whether they are complete (every op costed,
    every tensor's size known). Every row is a full analysis at those values (exact: no fit)."""
    given = dict(input_shapes or {})
    clash = sorted(set(dims) & set(given))
    if clash:
        raise UsageError(f"--sweep {clash[0]}: also fixed by --input-shape; give one or the other")
    free = free_dims(loaded.proto)
    unknown = sorted(set(dims) - free)
    if unknown:
        raise UsageError(f"--sweep {unknown[0]}: not a free dim of the file"
                         + (f"; its free dims: {', '.join(sorted(free))}" if free else "; it has none (all fixed)"))
    rows = []
    for combo in itertools.product(*dims.values()):
        at = dict(zip(dims, combo))
        a = analyse_loaded(loaded, input_shapes={**given, **at}, input_values=input_values)
        c, m = a.costs, a.memory
        t = c.total()
        rt = m.runtime if m is not None else None
        t["peak_bytes"] = rt.peak.bytes if rt is not None else 0
        rows.append({**at, **{k: t[k] for k in SWEEP_COLUMNS},
                     "complete": c.complete and m is not None and m.complete})
    return pd.DataFrame(rows)
