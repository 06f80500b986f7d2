"""Layerwise parity, the Keras side: every layer's output in the float32 Keras model against the
tensor of the export that holds it, on the same seeded inputs (archkit.runtime.layerwise finds
the tensors, follows their axis order and compares)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from archkit.analysis import Analysis
from archkit.keras.parity import to_keras
from archkit.metadata import read as read_metadata
from archkit.runtime.layerwise import LAYER_BATCH, QUANTIZERS, Layerwise, RefLayer, compare_layers, run_marked, taps
from archkit.runtime.parity import precision_of, seeded_inputs

__all__ = ["layerwise_keras", "reference_layers"]

_NCHW = (0, 3, 1, 2)  # an NCHW tensor is the NHWC one transposed by this


def reference_layers(model) -> list[RefLayer]:
    """The model's layers with one output each (its inputs aside), in its order (topological for
    a functional model), with the layers they read and how many read them."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer" or not hasattr(layer, "output"):
            continue
        if isinstance(layer.output, (list, tuple)):
            continue
        # Keras 3 keeps a functional model's wiring in its nodes (no public accessor for it)
        inbound = tuple(dict.fromkeys(p.operation.name for n in layer._inbound_nodes for p in n.parent_nodes))
        shape = tuple(None if d is None else int(d) for d in layer.output.shape)
        out.append(RefLayer(layer.name, shape, inbound, len(layer._outbound_nodes)))
    return out


def layerwise_keras(model, proto: onnx.ModelProto, analysis: Analysis, *, seeds: Sequence[int] = (0,),
                    batch: int = LAYER_BATCH, seed: int = 0, timeout: float | None = None) -> Layerwise:
    """Every Keras layer whose output survives the export, against its tensor (`analysis`: the
    export's, which assigns its ops to layers). The inputs are parity's seeded ones (other seeds
    than verify's batches: seed + 1000 * s + batch)."""
    if analysis.memory is None:
        raise ValueError("layerwise parity needs the analysis' memory figures (the op making each tensor)")
    layout = read_metadata(proto).layout or "nhwc"
    layer_of_op = {o.node: o.layer for o in analysis.costs.ops}
    maker = analysis.memory.maker

    quantizer_input = {n.output[0]: n.input[0] for n in proto.graph.node
                       if n.op_type in QUANTIZERS and n.output and n.input and n.domain in ("", "ai.onnx")}

    def layer_of(tensor: str) -> str | None:
        # a QuantizeLinear or DequantizeLinear computes nothing of a layer's own: its output is
        # the layer's whose tensor it quantizes (onnxruntime's static quantizer folds a Relu into
        # the Conv before it, and the Relu's layer is left with the Q/DQ pair)
        while tensor in quantizer_input:
            tensor = quantizer_input[tensor]
        op = maker(tensor)
        return layer_of_op.get(op) if op is not None else None

    init = {t.name for t in proto.graph.initializer}
    inputs = {i.name: _NCHW for i in proto.graph.input if i.name not in init and layout == "nchw"
              and len(i.type.tensor_type.shape.dim) == 4}
    feeds = [seeded_inputs(proto, batch, seed=seed + 1000 * s + batch) for s in seeds]
    found, skipped = taps(proto, reference_layers(model), layer_of, inputs,
                          {k: tuple(v.shape) for k, v in feeds[0].items()})
    exported, diff, runtime = run_marked(proto, [t.tensor for t in found], feeds, what=proto.graph.name or "the model",
                                         timeout=timeout)
    import keras  # heavy: the Keras side

    probe = keras.Model(model.inputs, [model.get_layer(t.layer).output for t in found])
    reference = []
    for f in feeds:
        args = [to_keras(x, layout) for x in f.values()]
        values = probe(args, training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        reference.append({t.layer: np.asarray(v) for t, v in zip(found, values)})
    return compare_layers(found, exported, reference, precision_of(proto), output_diff=diff, skipped=skipped,
                          runtime=runtime)
