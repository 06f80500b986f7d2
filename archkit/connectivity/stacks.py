"""Kernel stacks: chains of convolutions wider than 1x1 with nothing spatial between them, and the
field they reach together (two 3x3 reach 5x5; 1x7 then 7x1 reach 7x7)."""

from __future__ import annotations

from archkit.connectivity.layers import LayerGraph
from archkit.connectivity.ops import GLOBAL_POOLS, UNKNOWN, WINDOW_OPS
from archkit.connectivity.receptive import Fields, layer_field
from archkit.connectivity.results import KernelStack

__all__ = ["kernel_stacks"]

_SPATIAL = WINDOW_OPS | GLOBAL_POOLS


def _wide(lg: LayerGraph, layer: str) -> bool:
    """A weighted conv layer of known kernel wider than 1."""
    g = lg.geometry.get(layer)
    return g is not None and max(g.kernel) > 1


def kernel_stacks(lg: LayerGraph, fields: Fields) -> tuple[KernelStack, ...]:
    link: dict[str, str] = {}  # a wide conv → the wide conv it follows with nothing spatial between
    for v in lg.L:
        g = lg.geometry.get(v)
        if g is None or max(g.kernel) == 1:
            continue
        u = v
        while True:
            preds = list(lg.L.predecessors(u))
            if len(preds) != 1:
                break
            u = preds[0]
            if u in lg.weighted or any(op.op_type in _SPATIAL for op in lg.ops_of.get(u, ())):
                break
            if layer_field(fields, u) is UNKNOWN:  # what it does to the spatial axes is not known
                break
        if u != v and _wide(lg, u):
            link[v] = u
    children: dict[str, list[str]] = {}
    for v, u in link.items():
        children.setdefault(u, []).append(v)
    out: list[KernelStack] = []

    def walk(path: list[str]) -> None:
        nxt = sorted(children.get(path[-1], []), key=lg.rank.__getitem__)
        if not nxt:
            if len(path) >= 2:
                geo = [lg.geometry[l] for l in path]
                field = []
                for axis in range(len(geo[0].kernel)):
                    r, j = 1, 1
                    for k, s in geo:
                        r += (k[axis] - 1) * j
                        j *= s[axis]
                    field.append(r)
                out.append(KernelStack(tuple(path), tuple(g.kernel for g in geo), tuple(g.stride for g in geo),
                                       tuple(field)))
            return
        for n in nxt:
            walk(path + [n])

    for root in sorted(set(children) - set(link), key=lg.rank.__getitem__):
        walk([root])
    return tuple(out)
