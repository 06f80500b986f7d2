"""Concatenations and dense blocks: each Concat's inputs and the earlier layers whose features it
carries (from channel provenance), and chains of concatenations each feeding the next, with the
DenseNet paper's connectivity matrix (which earlier layers each weighted layer reads)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import networkx as nx
import numpy as np

from archkit.connectivity.layers import LayerGraph
from archkit.connectivity.ops import UNKNOWN
from archkit.connectivity.provenance import (
    Channels,
    Provenance,
    ProvenanceState,
    Target,
)
from archkit.connectivity.results import ConcatFanIn, DenseBlock
from archkit.onnx.graph import OpNode

__all__ = ["KERNEL_LAYOUTS", "KernelValues", "concatenations"]

KernelValues = Callable[[str], np.ndarray | None]  # initializer name → its weights, if given


def concatenations(lg: LayerGraph, channels: Channels, kernel_values: KernelValues | None = None
                   ) -> tuple[tuple[ConcatFanIn, ...], tuple[DenseBlock, ...]]:
    out = []
    chain_parent: dict[str, str] = {}
    carry_index: dict[str, int] = {}
    concat_nodes = []
    for op in lg.data_ops:
        if op.op_type != "Concat":
            continue
        layer = lg.layer_of[op.nid]
        in_layers = tuple(dict.fromkeys("?" if l is None else l for l in map(lg.producer_layer, (t.name for t in op.ins))))
        if all(l == layer for l in in_layers):
            continue  # inside one layer (a grouped convolution's towers)
        p = channels.states.get(op.outs[0].name) if op.outs else None
        own = isinstance(p, Provenance) and p.concat == op.nid  # its channels are its inputs' (along their axis)
        sources: tuple[str, ...] | None
        if p is UNKNOWN:
            sources = None
        else:
            sources = tuple(dict.fromkeys(lg.source_layer(s.source) for s in p.segments)) \
                if isinstance(p, Provenance) and own else ()
        out.append(ConcatFanIn(node=op.nid, layer=layer, block=lg.block_of[layer], inputs=len(op.ins),
                               input_layers=in_layers, sources=sources))
        if own:
            concat_nodes.append(op.nid)
            for i, t in enumerate(op.ins):
                q = channels.states.get(t.name)
                if isinstance(q, Provenance) and q.concat is not None:
                    chain_parent[op.nid] = q.concat
                    carry_index[op.nid] = i
                    break
    children: dict[str, list[str]] = {}
    for c, parent in chain_parent.items():
        children.setdefault(parent, []).append(c)
    dense = []
    for start in concat_nodes:
        if start in chain_parent and len(children.get(chain_parent[start], [])) == 1:
            continue  # not the head of a chain
        chain = [start]
        while len(children.get(chain[-1], [])) == 1:
            chain.append(children[chain[-1]][0])
        if len(chain) >= 2:
            dense.append(_dense_block(lg, channels, chain, carry_index.get(chain[1], 0), kernel_values))
    return tuple(out), tuple(dense)


def _followed(p: ProvenanceState | None) -> Provenance:
    """The provenance of a tensor on a dense block's chain: always followed (every input of the
    chain's concatenations was)."""
    if not isinstance(p, Provenance):
        raise TypeError(f"a dense block's chain passes through a tensor with provenance {p!r}")
    return p


def _dense_block(lg: LayerGraph, channels: Channels, chain: list[str], carry: int,
                 kernel_values: KernelValues | None) -> DenseBlock:
    first_ins = lg.op[chain[0]].ins
    states = [_followed(channels.states.get(first_ins[min(carry, len(first_ins) - 1)].name))] + \
        [_followed(channels.states.get(lg.op[c].outs[0].name)) for c in chain]
    state_segs = {s.segments for s in states}
    sources = tuple(dict.fromkeys(lg.source_layer(s.source) for s in states[-1].segments))
    targets: list[tuple[Target, Provenance]] = [(t, t.channels) for t in channels.targets
                                                if isinstance(t.channels, Provenance)
                                                and t.channels.segments in state_segs]
    row = {s: i for i, s in enumerate(sources)}
    matrix = [[False] * len(targets) for _ in sources]
    sums = [[0.0] * len(targets) for _ in sources]
    maps = [[0] * len(targets) for _ in sources]
    kernels = [_kernel_by_input(lg, t.node, kernel_values) if kernel_values else None for t, _ in targets]
    for j, ((_, p), w) in enumerate(zip(targets, kernels)):
        offset = 0
        for s, n in p.segments:
            i = row.get(lg.source_layer(s))
            if i is not None:
                matrix[i][j] = True
            if n is None:  # a channel count not inferred: the maps after it cannot be told apart
                kernels[j] = w = None
            if i is not None and w is not None and n and offset + n <= w.shape[1]:
                sums[i][j] += float(np.abs(w[:, offset:offset + n]).mean()) * n
                maps[i][j] += n
            offset += n or 0
    mean_abs = None
    if kernels and all(w is not None for w in kernels):
        mean_abs = tuple(tuple(s / m if m else 0.0 for s, m in zip(rs, rm)) for rs, rm in zip(sums, maps))
    blocks = Counter(lg.block_of[lg.layer_of[c]] for c in chain)
    name, count = blocks.most_common(1)[0]
    if count < len(chain) // 2 + 1 or name == lg.layer_of[chain[0]]:
        name = f"{lg.layer_of[chain[0]]} … {lg.layer_of[chain[-1]]}"
    unknown = {t.layer for t in channels.targets if t.channels is UNKNOWN}
    known = not unknown or not unknown & nx.descendants(lg.L, lg.layer_of[chain[0]])
    return DenseBlock(name=name, concats=tuple(lg.layer_of[c] for c in chain), sources=sources,
                      targets=tuple(t.layer for t, _ in targets), matrix=tuple(tuple(r) for r in matrix),
                      mean_abs_weight=mean_abs if known else None, targets_known=known)


def _conv_kernel(node: OpNode, load: Callable[[], np.ndarray | None]) -> np.ndarray | None:
    if node.attrs.get("group", 1) != 1:
        return None  # a grouped conv's input maps are not told apart here
    w = load()
    return None if w is None else w.reshape(w.shape[0], w.shape[1], -1)


def _matmul_kernel(node: OpNode, load: Callable[[], np.ndarray | None]) -> np.ndarray | None:
    w = load()
    return None if w is None or w.ndim != 2 else w.T


def _gemm_kernel(node: OpNode, load: Callable[[], np.ndarray | None]) -> np.ndarray | None:
    w = load()
    return None if w is None else (w if node.attrs.get("transB", 0) else w.T)


# A kernel op's weights as (outputs, input maps, ...), from the weights as ONNX stores them.
KERNEL_LAYOUTS: dict[str, Callable[[OpNode, Callable[[], np.ndarray | None]], np.ndarray | None]] = {
    "Conv": _conv_kernel, "MatMul": _matmul_kernel, "Gemm": _gemm_kernel}


def _kernel_by_input(lg: LayerGraph, nid: str, kernel_values: KernelValues) -> np.ndarray | None:
    """The op's kernel as (outputs, input maps, ...) or None."""
    node = lg.op[nid].node
    layout = KERNEL_LAYOUTS.get(node.op_type)
    kernel = node.inputs[1]
    if layout is None or kernel is None:
        return None
    try:
        return layout(node, lambda: kernel_values(kernel.name))
    except (KeyError, AttributeError, ValueError):
        return None
