"""How a network is wired, measured on its analysis graph (archkit.onnx.graph) collapsed to layers.

`analyse(G, costs)` returns an immutable `Connectivity`:

- the **layer graph**: ONNX ops collapsed to the layers archkit.costs attributes them to (Keras
  layers for archkit's exports, scopes otherwise); an edge wherever a float tensor crosses from
  one layer to another (shape arithmetic and constant folding are not wiring);
- **depth** (the longest input→output path counted in weighted layers: conv/dense layers whose
  kernel is a constant), the number of weighted layers and the largest number of parallel paths
  between a fork and its join;
- **fork/join pairs**: every layer where paths meet, with the layer that dominates it (every path
  from the input passes through it: networkx' immediate dominators), the branches between them
  and each branch's share of their MACs;
- **residual Adds**: every Add of two computed tensors coming from different layers, the number
  of weighted layers its longer branch skips (the span) and whether the shortcut carries one
  (a projection);
- **concatenations**: per Concat, its direct inputs and the earlier layers whose features it
  carries (channel provenance, followed through elementwise ops, pooling, transposes and
  reshapes); chains of concatenations each feeding the next are **dense blocks**, with the
  DenseNet paper's connectivity matrix (which earlier layers each weighted layer reads);
- **receptive fields** of every layer's output: size, effective stride and effective padding
  per spatial axis (Araujo, Norris, Sim 2019, "Computing Receptive Fields of Convolutional
  Neural Networks", Distill), over all paths of the DAG: the largest field wins and a layer is
  marked unaligned when paths disagree on stride or centre, as google-research/receptive_field
  checks. Kernel, stride, padding and dilation are read from the ONNX ops (NCHW after tf2onnx's
  transposes; auto_pad SAME_UPPER/SAME_LOWER/VALID resolved with the inferred input sizes), and
  the input's spatial axes are found by following them to the first windowed op;
- **kernel stacks**: chains of convolutions wider than 1x1 with nothing spatial between them,
  with the field they reach together (two 3x3 reach 5x5; 1x7 then 7x1 reach 7x7).

What needs shapes, and what does not. The wiring (layers, depth, weighted layers, fork/join
pairs, paths, residual spans, concatenation inputs) needs none. A receptive field needs the
ops' kernel, stride, padding and dilation attributes and the tensors' ranks, not their sizes,
except: a SAME auto_pad with a stride above 1 (its padding depends on the input size), a
global pooling or full-axis reduction (its field is the whole axis), a Pad whose amounts are
not constants, a Reshape or Flatten (which axes survive), a Split along a spatial axis, and
which layer is the last with spatial extent (the network's field). Channel provenance needs
ranks and, through reshapes, sizes. MACs need the cost report. Where what a figure needs is not
known, the figure is None (per axis where only that axis' padding or size is unknown) and the
result says why: `shapes_unknown` (ops whose output shape was not inferred), `rf_unknown_at`,
`provenance_unknown_at`, `kernels_unknown`, `macs_unknown`. A number is never a guess.

The stages, each a function from earlier results to a new immutable one:

- layers.py: the layer graph, built once (LayerGraph: layers, their ops, weighted layers, MACs);
- receptive.py: receptive-field states per tensor (Fields), per-op rules in a table;
- provenance.py: channel provenance per tensor (Channels), per-op rules in a table;
- branches.py: dominators, fork/join pairs and residual Adds;
- dense.py: concatenation fan-in and dense blocks;
- stacks.py: kernel stacks;
- rows.py: the per-layer records;
- results.py: the result types (Connectivity and its parts); ops.py: op-type groups and tensor helpers.

Pure computation: no printing, no files. Rendering lives in archkit.render.drawing.
"""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx

from archkit.connectivity.branches import dominators, fork_joins, residuals
from archkit.connectivity.dense import KernelValues, concatenations
from archkit.connectivity.layers import LayerGraph, depths, layer_graph
from archkit.connectivity.provenance import provenance
from archkit.connectivity.receptive import Fields, final_layer, receptive_fields
from archkit.connectivity.results import (
    COLUMNS,
    Branch,
    ConcatFanIn,
    Connectivity,
    DenseBlock,
    ForkJoin,
    KernelStack,
    Layer,
    ReceptiveField,
    Residual,
)
from archkit.connectivity.rows import layer_rows
from archkit.connectivity.stacks import kernel_stacks
from archkit.costs import CostReport

__all__ = ["COLUMNS", "Branch", "ConcatFanIn", "Connectivity", "DenseBlock", "ForkJoin", "KernelStack", "Layer",
           "LayerGraph", "ReceptiveField", "Residual", "analyse", "layer_graph"]


def analyse(G: nx.DiGraph, costs: CostReport, *, constants: Mapping[str, tuple[int, ...]] | None = None,
            kernel_values: KernelValues | None = None) -> Connectivity:
    """Connectivity of an analysis graph whose ops `costs` attributes to layers and blocks.

    `constants`: values of small integer initializers (Pad amounts, Reduce axes; default: the
    graph's own, `G.graph["constants"]`); without them a Pad is taken as symmetric, when its size change allows.
    `kernel_values(initializer name)` may return a weight array: dense-block matrices then also
    hold the mean absolute weight per input map of each source (the DenseNet paper's Figure 5,
    for trained weights)."""
    lg = layer_graph(G, costs, constants)
    fields = receptive_fields(lg)
    channels = provenance(lg, fields)
    depth = depths(lg)
    idom = dominators(lg)
    pairs = fork_joins(lg, idom)
    concats, dense = concatenations(lg, channels, kernel_values)
    final, final_unknown = final_layer(lg, fields)
    outputs = [n for n in lg.L if n.startswith("output:")]
    return Connectivity(
        layers=layer_rows(lg, fields, depth),
        blocks=tuple(dict.fromkeys(lg.block_of[l] for l in lg.L)),
        block_edges=tuple(dict.fromkeys((lg.block_of[u], lg.block_of[v]) for u, v in lg.L.edges
                                        if lg.block_of[u] != lg.block_of[v])),
        depth=max((depth[n] for n in outputs), default=max(depth.values(), default=0)),
        weighted_layers=len(lg.weighted),
        max_parallel_paths=max((f.paths for f in pairs), default=1),
        fork_joins=pairs,
        residuals=residuals(lg, idom),
        concats=concats,
        dense_blocks=dense,
        stacks=kernel_stacks(lg, fields),
        final_layer=final,
        rf_unsupported=tuple(sorted(fields.unsupported)),
        merged_layers=lg.merged,
        shapes_unknown=lg.shapes_unknown,
        rf_unknown_at=fields.unknown_at,
        final_unknown=final_unknown,
        provenance_unknown_at=channels.unknown_at,
        kernels_unknown=tuple(l for l in lg.L if lg.kernel_unknown(l)),
        macs_unknown=lg.macs_unknown,
        free_spatial_dims=_free_spatial_dims(lg, fields),
    )


def _free_spatial_dims(lg: LayerGraph, fields: Fields) -> tuple[str, ...]:
    """The input's spatial dims left free (set to 1 for inference), by name, else as input[axis]."""
    return tuple(dict.fromkeys(lg.defaulted[o] or f"{o[0].split(':', 1)[1]}[{o[1]}]"
                               for o in sorted(fields.origins) if o in lg.defaulted))
