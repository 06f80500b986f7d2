"""Keras model → ONNX. The only module that touches tf2onnx.

Keras 3 breaks `tf2onnx.convert.from_keras`; the model is traced as a tf.function with an
explicit input signature and converted with `tf2onnx.convert.from_function` (what Keras'
own `model.export(format="onnx")` does), then cleaned up: named inputs and outputs, a batch
dimension named `batch`, metadata, and a check for ops tf2onnx could not convert (it logs
them and writes an invalid model without raising).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx

from archkit import __version__
from archkit.deploy import DeployOptions
from archkit.deploy.convert import fold_transpose_pairs
from archkit.errors import ExportError, UsageError
from archkit.io import atomic_write_bytes
from archkit.metadata import write as write_metadata

__all__ = ["default_opset", "export_keras", "import_keras", "keras_layers", "max_opset", "quiet_stderr", "seed_weights"]


@contextlib.contextmanager
def quiet_stderr():
    """TensorFlow's C++ side writes start-up notices straight to fd 2; keep them off the terminal."""
    if logging.getLogger("archkit").isEnabledFor(logging.DEBUG):  # archkit --debug
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_keras():
    """Import TensorFlow and Keras quietly; returns (tf, keras)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import keras  # heavy: as tensorflow
        import tensorflow as tf  # heavy: imported when a model is built or exported, not for a cached export
    import absl.logging  # comes with tensorflow

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)
    for name in ("tf2onnx", "tensorflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return tf, keras


@contextlib.contextmanager
def _optimizer_copies(enabled: bool):
    """tf2onnx deep-copies the whole graph, weights included, before each optimizer of each pass
    so that it can skip an optimizer that fails. Setting TF2ONNX_CATCH_ERRORS to any value turns
    the copies off (tf2onnx compares the variable's name, not its value, with "TRUE"). The graph
    produced is the same; a failing optimizer then stops the export instead of being skipped."""
    if enabled:
        yield
        return
    old = os.environ.get("TF2ONNX_CATCH_ERRORS")
    os.environ["TF2ONNX_CATCH_ERRORS"] = "false"
    try:
        yield
    finally:
        if old is None:
            del os.environ["TF2ONNX_CATCH_ERRORS"]
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = old


@contextlib.contextmanager
def _stable_duplicate_merge():
    """tf2onnx merges duplicate nodes (equal constants, say) into the first of each group in its
    node order, and that order depends on Python's string hashing (PYTHONHASHSEED): the same
    model exported in two processes could keep either name (alexnet_onetower's adaptive pool:
    `SelectV2` or `SelectV2_1`, 6 bytes apart). Ordering each group by name keeps the same node
    in every process."""
    from tf2onnx.optimizer.merge_duplicated_nodes_optimizer import (  # heavy: imports tensorflow
        MergeDuplicatedNodesOptimizer as Merge,
    )

    group = Merge._group_nodes_by_type_inputs

    def by_name(graph):
        return {key: sorted(nodes, key=lambda n: n.name) for key, nodes in group(graph).items()}

    Merge._group_nodes_by_type_inputs = staticmethod(by_name)
    try:
        yield
    finally:
        Merge._group_nodes_by_type_inputs = staticmethod(group)


def max_opset() -> int:
    """The newest opset tf2onnx emits; onnxruntime runs every opset up to onnx's newest."""
    from tf2onnx import constants  # heavy: importing tf2onnx imports tensorflow

    return min(max(constants.OPSET_TO_IR_VERSION), onnx.defs.onnx_opset_version())


def default_opset() -> int:
    return max_opset()


def seed_weights(model, *, seed: int = 0) -> None:
    """Give an untrained model seeded weights in which no tensor is all zeros or all ones.

    Keras initialises biases and BatchNorm beta/mean to 0 and gamma/variance to 1. TensorFlow's
    graph optimiser, run by tf2onnx, then folds `x + 0` and `x * 1` away, so the exported file
    would lose those parameters and parity would not exercise them. Kernels keep their scale.
    """
    rng = np.random.default_rng(seed)
    for w in model.weights:
        value = np.asarray(w.numpy())
        if value.size == 0:
            continue
        if np.all(value == 0):
            value = rng.normal(0.0, 0.05, value.shape)
        elif np.all(value == 1):
            value = rng.uniform(0.5, 1.5, value.shape)
        else:
            value = rng.normal(0.0, float(value.std()) or 0.05, value.shape)
        w.assign(value.astype(w.dtype))


def keras_layers(model, block_of: Callable[[str], str] | None = None) -> list[dict[str, Any]]:
    """What Keras' model.summary() shows per layer, plus the paper block, as plain data."""
    rows = []
    for layer in model.layers:
        shape = layer.output.shape if hasattr(layer, "output") else None
        trainable = sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
        non_trainable = sum(int(np.prod(w.shape)) for w in layer.non_trainable_weights)
        rows.append({
            "name": layer.name,
            "class": type(layer).__name__,
            "output_shape": [None if d is None else int(d) for d in shape] if shape is not None else None,
            "trainable": trainable,
            "non_trainable": non_trainable,
            "block": block_of(layer.name) if block_of else layer.name,
        })
    return rows


def export_keras(
    model,
    *,
    name: str,
    config: Mapping[str, Any] | None = None,
    opset: int | None = None,
    block_of: Callable[[str], str] | None = None,
    path: str | os.PathLike | None = None,
    copy_graphs: bool = False,
    layout: str = "nhwc",
    batch: int | None = None,
) -> onnx.ModelProto:
    """Convert `model` to a checked ONNX model; write it atomically to `path` if given.

    layout="nchw" makes every 4-D input channels-first through tf2onnx's `inputs_as_nchw` (its
    transpose optimizer then pushes the inserted Transpose through the graph; archkit.deploy
    removes the pairs it leaves around Split and Gather). batch=N fixes the batch dimension (default: a
    symbolic dimension named `batch`).
    """
    DeployOptions(layout=layout, batch=batch)  # checks them
    tf, _ = import_keras()
    opset = opset or default_opset()
    if not 9 <= opset <= max_opset():
        raise UsageError(f"--opset {opset}: tf2onnx here supports opsets 9 to {max_opset()}")

    from keras.src.export.tf2onnx_lib import patch_tf2onnx  # heavy: keras

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        patch_tf2onnx()  # tf2onnx still uses numpy aliases removed in numpy 2
    import tf2onnx  # heavy: imports tensorflow

    input_names = [t.name for t in model.inputs]
    signature = [tf.TensorSpec((batch, *t.shape[1:]), t.dtype, name=n) for t, n in zip(model.inputs, input_names)]
    function = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    nchw = [n for t, n in zip(model.inputs, input_names) if len(t.shape) == 4] if layout == "nchw" else None
    try:
        with quiet_stderr(), _optimizer_copies(copy_graphs), _stable_duplicate_merge():
            proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset,
                                                     inputs_as_nchw=nchw)
    except Exception as e:  # tf2onnx raises assorted kinds; all mean the same to the user
        raise ExportError(f"{name}: tf2onnx failed: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e

    _check_ops(proto, name)
    if nchw:
        fold_transpose_pairs(proto)
    _renumber_generated_names(proto)
    _name_outputs(proto, list(model.output_names))
    _name_batch_dim(proto)
    layers = keras_layers(model, block_of)
    write_metadata(proto, replace=True, version=__version__, architecture=name, config=dict(config or {}),
                   keras_params={"total": int(model.count_params()),
                                 "trainable": sum(l["trainable"] for l in layers),
                                 "non_trainable": sum(l["non_trainable"] for l in layers)},
                   layers=layers, layout=layout, batch=batch, precision="fp32")
    proto.graph.name = name
    proto.graph.doc_string = ""  # tf2onnx writes the traced function's run-specific name here
    proto.doc_string = f"{name} exported by archkit {__version__}"
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportError(f"{name}: exported model fails the ONNX checker: {str(e).strip().splitlines()[0]}") from e
    if path is not None:
        atomic_write_bytes(path, proto.SerializeToString())
    return proto


def _check_ops(proto: onnx.ModelProto, name: str) -> None:
    """tf2onnx leaves ops it could not convert (e.g. StatefulPartitionedCall) in the graph."""
    bad = sorted({n.op_type for n in proto.graph.node
                  if n.domain not in ("", "ai.onnx") or not onnx.defs.has(n.op_type)})
    if bad:
        raise ExportError(f"{name}: tf2onnx left ops ONNX does not define: {', '.join(bad)}")


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if x == old else x for x in node.input]
        node.output[:] = [new if x == old else x for x in node.output]
    for vi in list(graph.output) + list(graph.value_info):
        if vi.name == old:
            vi.name = new


def _name_outputs(proto: onnx.ModelProto, names: list[str]) -> None:
    taken = {t for n in proto.graph.node for t in n.output} | {i.name for i in proto.graph.input}
    for out, new in zip(list(proto.graph.output), names):
        if out.name != new:
            if new in taken:
                raise ExportError(f"cannot name output {out.name!r} {new!r}: the name is taken")
            _rename_tensor(proto.graph, out.name, new)


_GENERATED = re.compile(r"^(.*)__\d+(:\d+)?$")


def _renumber_generated_names(proto: onnx.ModelProto) -> None:
    """tf2onnx numbers the names it makes up (`Transpose__32`) from counters whose values vary
    from run to run; renumber them in graph order so the same model gives the same bytes."""
    g = proto.graph
    mapping: dict[str, str] = {}
    # Equal constants are merged, and which of their names survives varies too: call them all const.
    constants = {t.name for t in g.initializer}

    def canon(name: str) -> str:
        if name not in mapping:
            m = _GENERATED.match(name)
            base = "const" if name in constants else m and m.group(1)
            mapping[name] = f"{base}__{len(mapping)}{m.group(2) or ''}" if m else name
        return mapping[name]

    for vi in g.input:
        vi.name = canon(vi.name)
    for node in g.node:
        node.input[:] = [canon(x) for x in node.input]
        node.output[:] = [canon(x) for x in node.output]
        node.name = canon(node.name)
    for t in g.initializer:
        t.name = canon(t.name)
    for vi in list(g.output) + list(g.value_info):
        vi.name = canon(vi.name)
    g.initializer.sort(key=lambda t: t.name)


def _name_batch_dim(proto: onnx.ModelProto) -> None:
    """tf2onnx names the unknown batch dimension `unk__N`, differently per tensor: call it `batch`."""
    g = proto.graph
    old = set()
    for vi in list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            old.add(dims[0].dim_param)
            dims[0].dim_param = "batch"
    old.discard("")
    for vi in g.value_info:
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in old:
                d.dim_param = "batch"
