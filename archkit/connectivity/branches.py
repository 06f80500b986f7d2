"""Where paths fork and meet: fork/join pairs (a join and its immediate dominator, with the branches
between them) and residual Adds (the weighted layers a shortcut skips, and whether it carries one)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx

from archkit.connectivity.layers import LayerGraph
from archkit.connectivity.results import Branch, ForkJoin, Residual

__all__ = ["dominators", "fork_joins", "residuals"]

_VIRTUAL = "\0source"  # a root above every input, so that one dominator tree spans them all


def dominators(lg: LayerGraph) -> Mapping[str, str]:
    """Each layer's immediate dominator: the last layer every path from the input to it passes through."""
    D = nx.DiGraph(lg.L)
    D.add_node(_VIRTUAL)
    D.add_edges_from((_VIRTUAL, n) for n in lg.L if lg.L.in_degree(n) == 0)
    idom: Mapping[str, str] = nx.immediate_dominators(D, _VIRTUAL)
    return idom


def _between(lg: LayerGraph, fork: str, node: str) -> set[str]:
    """Layers on some fork→node path, both ends excluded, where `fork` dominates `node`: the
    ancestors of `node` found without passing `fork` (every path from the input to them runs
    through `fork`). Work in proportion to the region, not to the graph."""
    seen: set[str] = set()
    todo = [node]
    while todo:
        for p in lg.L.predecessors(todo.pop()):
            if p != fork and p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def _longest_weighted(lg: LayerGraph, nodes: Iterable[str], start: str, end: str) -> int:
    """Weighted layers on the longest start→end path through `nodes` (start excluded, end included)."""
    allowed = set(nodes) | {end}
    best = {start: 0}
    for n in sorted(allowed, key=lg.rank.__getitem__):
        preds = [best[p] for p in lg.L.predecessors(n) if p in best]
        if preds:
            best[n] = max(preds) + (n in lg.weighted)
    return best.get(end, 0)


def _components(lg: LayerGraph, nodes: set[str]) -> list[set[str]]:
    """Weakly connected components of the layer graph restricted to `nodes`."""
    comps: list[set[str]] = []
    seen: set[str] = set()
    for start in nodes:
        if start in seen:
            continue
        comp, todo = {start}, [start]
        while todo:
            n = todo.pop()
            for m in (*lg.L.pred[n], *lg.L.succ[n]):
                if m in nodes and m not in comp:
                    comp.add(m)
                    todo.append(m)
        seen |= comp
        comps.append(comp)
    return comps


def _input_layers(lg: LayerGraph, layer: str) -> list[str]:
    """The layers a layer's ops read from, in the order of their inputs."""
    out = []
    for op in lg.ops_of.get(layer, ()):
        for t in op.ins:
            p = lg.producer_layer(t.name)
            if p is not None and p != layer:
                out.append(p)
    return out


def fork_joins(lg: LayerGraph, idom: Mapping[str, str]) -> tuple[ForkJoin, ...]:
    """Every layer where paths meet (not an output), with its immediate dominator and the branches between."""
    out = []
    for join in lg.L:
        if lg.L.in_degree(join) < 2 or join.startswith("output:"):
            continue
        fork = idom.get(join)
        if fork is None or fork == _VIRTUAL:
            continue
        region = _between(lg, fork, join)
        # Branches in the order the join takes them (a Concat's inputs: the paper's column order).
        position = {l: i for i, l in reversed(list(enumerate(_input_layers(lg, join))))}
        comps = [tuple(sorted(c, key=lg.rank.__getitem__)) for c in _components(lg, region)]
        if lg.L.has_edge(fork, join):
            comps.append(())
        branches = sorted(comps, key=lambda c: (min(position.get(l, len(position)) for l in c or (fork,)),
                                                lg.rank[c[0]] if c else -1))
        fixed = []
        for layers in branches:
            # weighted layers on the longest path from the fork to the branch's layers feeding the join
            members = set(layers)
            ends = [p for p in lg.L.predecessors(join) if p in members]
            w = max((_longest_weighted(lg, layers, fork, e) for e in ends), default=0)
            fixed.append((layers, w, lg.layer_macs(layers)))
        macs = [m for _, _, m in fixed if m is not None]
        total = sum(macs) if len(macs) == len(fixed) else None
        paths = {fork: 1}
        for n in sorted(region | {join}, key=lg.rank.__getitem__):
            paths[n] = sum(paths.get(p, 0) for p in lg.L.predecessors(n))
        out.append(ForkJoin(
            fork=fork, join=join, block=lg.block_of[join],
            branches=tuple(Branch(l, w, m, None if total is None or m is None else m / total if total else 0.0)
                           for l, w, m in fixed),
            paths=paths[join], macs=total))
    return tuple(out)


def residuals(lg: LayerGraph, idom: Mapping[str, str]) -> tuple[Residual, ...]:
    """Every Add (or Sum) of computed tensors from different layers, with the span its shortcut skips."""
    out = []
    for op in lg.data_ops:
        if op.op_type not in ("Add", "Sum") or len(op.ins) < 2:
            continue
        layer = lg.layer_of[op.nid]
        srcs = [lg.producer_layer(t.name) for t in op.ins]
        known = [s for s in srcs if s is not None]
        if len(known) < len(srcs) or len(set(known)) < 2:
            continue  # inside one layer, or one tensor added to itself
        fork = idom.get(layer)
        if fork is None or fork == _VIRTUAL:
            continue
        branches: list[tuple[tuple[str, ...], int]] = []
        for s in known:
            if s == fork:
                branches.append(((), 0))
                continue
            nodes = _between(lg, fork, s) | {s}
            w = _longest_weighted(lg, nodes - {s}, fork, s)
            branches.append((tuple(sorted((n for n in nodes if n in lg.weighted), key=lg.rank.__getitem__)), w))
        branches.sort(key=lambda b: b[1])
        shortcut, longest = branches[0], branches[-1]
        out.append(Residual(node=op.nid, layer=layer, block=lg.block_of[layer], fork=fork, span=longest[1],
                            shortcut=shortcut[0], projection=shortcut[1] > 0))
    return tuple(out)
