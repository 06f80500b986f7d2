"""One Layer record per layer of the layer graph: its kind, kernel, depth, neighbours, output and field."""

from __future__ import annotations

from collections.abc import Mapping

from archkit.connectivity.layers import LayerGraph
from archkit.connectivity.ops import MERGE_OPS, POOL_OPS, REDUCE_OPS, UNKNOWN, Shape
from archkit.connectivity.receptive import (
    Fields,
    layer_field,
    spatial_axes,
    tensor_field,
)
from archkit.connectivity.results import Layer

__all__ = ["layer_rows"]

_WINDOWED_POOLS = ("MaxPool", "AveragePool", "LpPool")


def _kind(lg: LayerGraph, n: str) -> str:
    if n.startswith("input:"):
        return "input"
    if n.startswith("output:"):
        return "output"
    if n in lg.weighted:
        return "weighted"
    ops = lg.ops_of.get(n, ())
    if lg.L.in_degree(n) >= 2 or any(op.op_type in MERGE_OPS and len(op.ins) >= 2 for op in ops):
        return "merge"
    if any(op.op_type in POOL_OPS or op.op_type in REDUCE_OPS for op in ops):
        return "pool"
    return "other"


def _window(lg: LayerGraph, n: str) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """The spatial kernel and stride of a layer's conv, else of its first windowed pooling."""
    geo = lg.geometry.get(n)
    if geo:
        return geo.kernel, geo.stride
    for op in lg.ops_of.get(n, ()):
        a = op.node.attrs
        if op.op_type in _WINDOWED_POOLS and a.get("kernel_shape"):
            kernel = tuple(a["kernel_shape"])
            return kernel, tuple(a.get("strides") or (1,) * len(kernel))
    return None, None


def layer_rows(lg: LayerGraph, fields: Fields, depth: Mapping[str, int]) -> tuple[Layer, ...]:
    out = []
    for n in lg.L:
        ops = lg.ops_of.get(n, ())
        kernel, stride = _window(lg, n)
        outs = list(lg.outputs.get(n, ())) if ops else []
        shape: Shape | None
        end = lg.ends.get(n) if n.startswith(("input:", "output:")) else None
        if end is not None:
            outs, shape = [end.name], end.shape
        else:  # the last output with a shape (not an unused Dropout mask)
            shape = next((s for s in (lg.shape.get(t) for t in reversed(outs)) if s is not None),
                         lg.shape.get(outs[-1]) if outs else None)
        rf = layer_field(fields, n) if ops else (tensor_field(fields, outs[0]) if outs else None)
        out.append(Layer(
            name=n, block=lg.block_of.get(n, n), kind=_kind(lg, n),
            op_types=tuple(dict.fromkeys(op.op_type for op in ops)), macs=lg.layer_macs([n]),
            kernel=kernel, stride=stride, depth=depth[n],
            predecessors=tuple(lg.L.predecessors(n)), successors=tuple(lg.L.successors(n)),
            output_shape="x".join("?" if not isinstance(d, int) else str(d) for d in shape) if shape else "",
            receptive_field=None if rf is UNKNOWN else rf, field_unknown=rf is UNKNOWN,
            spatial_axes=spatial_axes(fields, outs[-1]) if outs else ()))
    return tuple(out)
