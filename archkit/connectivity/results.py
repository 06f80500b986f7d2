"""The results of the connectivity analysis: immutable records, the public face of archkit.connectivity."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import pandas as pd

__all__ = ["COLUMNS", "Branch", "ConcatFanIn", "Connectivity", "DenseBlock", "ForkJoin", "KernelStack", "Layer",
           "ReceptiveField", "Residual"]

@dataclass(frozen=True)
class ReceptiveField:
    """Per spatial axis of the input (height, width for images)."""

    size: tuple[int | None, ...]  # None: not known on that axis (see the module's docstring)
    stride: tuple[int | None, ...]  # effective stride: input pixels between neighbouring outputs
    padding: tuple[int | None, ...]  # effective padding: Σ p_l ∏_{i<l} s_i (left/top)
    aligned: bool | None = True  # every path agrees on stride and centre; else the largest path's figures

    @property
    def text(self) -> str:
        return f"{_xy(self.size)} / {_xy(self.stride)}, padding {_xy(self.padding)}" + (
            "" if self.aligned else " (paths unaligned)" if self.aligned is False else " (alignment unknown)")

    @property
    def complete(self) -> bool:
        return None not in self.size + self.stride + self.padding and self.aligned is not None


def _xy(v: tuple[int | None, ...]) -> str:
    if all(x is None for x in v):
        return "unknown"
    return str(v[0]) if len(set(v)) == 1 else "x".join("?" if x is None else str(x) for x in v)


@dataclass(frozen=True)
class Layer:
    name: str
    block: str
    kind: str  # "input" | "output" | "weighted" | "merge" | "pool" | "other"
    op_types: tuple[str, ...]
    macs: int | None  # None: an op of the layer that may hold MACs was not costed (Connectivity.macs_unknown)
    kernel: tuple[int, ...] | None  # spatial kernel of the layer's conv or pooling (dilated), if any
    stride: tuple[int, ...] | None
    depth: int  # weighted layers on the longest path from an input up to and including this one
    predecessors: tuple[str, ...]
    successors: tuple[str, ...]
    output_shape: str
    receptive_field: ReceptiveField | None  # of the layer's output; None where no spatial axis is left, or unknown
    spatial_axes: tuple[int, ...] = ()  # axes of output_shape that are the input's spatial axes (layout-independent)
    field_unknown: bool = False  # the field could not be followed here for want of a shape (receptive_field is None)

    @property
    def weighted(self) -> bool:
        return self.kind == "weighted"


@dataclass(frozen=True)
class Branch:
    layers: tuple[str, ...]  # in network order; () for an identity path
    weighted: int  # weighted layers on its longest path
    macs: int | None  # None: a layer of it has MACs not known
    share: float | None  # of the MACs of all branches of the pair (0 when they have none); None if one is not known


@dataclass(frozen=True)
class ForkJoin:
    fork: str  # the join's immediate dominator: every path from the input to the join passes through it
    join: str
    block: str  # the join's block
    branches: tuple[Branch, ...]
    paths: int  # distinct fork→join paths (more than branches when a branch splits again)
    macs: int | None  # of all branches; None when a branch's are not known


@dataclass(frozen=True)
class Residual:
    node: str  # the ONNX Add
    layer: str
    block: str
    fork: str
    span: int  # weighted layers on the longer (residual) branch: the layers the shortcut skips
    shortcut: tuple[str, ...]  # weighted layers on the shortcut; () for identity
    projection: bool


@dataclass(frozen=True)
class ConcatFanIn:
    node: str
    layer: str
    block: str
    inputs: int  # tensors concatenated
    input_layers: tuple[str, ...]
    # earlier layers whose features (channels) the output carries, in channel order; None when
    # an input's provenance was lost for want of a shape (Connectivity.provenance_unknown_at)
    sources: tuple[str, ...] | None


@dataclass(frozen=True)
class DenseBlock:
    """A chain of concatenations, each feeding the next (DenseNet's dense block)."""

    name: str
    concats: tuple[str, ...]  # layers
    sources: tuple[str, ...]  # row s: the block's input (s = 0), then each layer's new features
    targets: tuple[str, ...]  # column ℓ: each weighted layer reading the block's features, then what reads its output
    matrix: tuple[tuple[bool, ...], ...]  # [s][ℓ]: target ℓ reads the features of source s
    # [s][ℓ]: mean absolute kernel weight per input map from source s (the paper's Figure 5), when
    # the weights were given; None otherwise (archkit's own models are untrained: structure only)
    mean_abs_weight: tuple[tuple[float, ...], ...] | None = None
    # False when a weighted layer after the block's first concatenation has channel provenance not
    # known (a shape not inferred): it may read the block, so targets and fan-in are not known in full
    targets_known: bool = True

    @property
    def layers(self) -> int:
        return len(self.concats)

    @property
    def fan_in(self) -> tuple[int, ...]:
        """Per target: how many earlier layers' features it reads."""
        return tuple(sum(row[t] for row in self.matrix) for t in range(len(self.targets)))


@dataclass(frozen=True)
class KernelStack:
    layers: tuple[str, ...]
    kernels: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    field: tuple[int, ...]  # receptive field of the stack's output on its input

    @property
    def text(self) -> str:
        return " → ".join("x".join(map(str, k)) for k in self.kernels) + f" reach {'x'.join(map(str, self.field))}"


COLUMNS = ["layer", "block", "kind", "op_types", "macs", "kernel", "stride", "depth", "fan_in", "fan_out",
           "predecessors", "output_shape", "rf_size", "rf_stride", "rf_padding", "rf_aligned", "concat_sources"]


@dataclass(frozen=True)
class Connectivity:
    layers: tuple[Layer, ...]  # network (topological) order
    blocks: tuple[str, ...]
    block_edges: tuple[tuple[str, str], ...]
    depth: int
    weighted_layers: int
    max_parallel_paths: int
    fork_joins: tuple[ForkJoin, ...]
    residuals: tuple[Residual, ...]
    concats: tuple[ConcatFanIn, ...]
    dense_blocks: tuple[DenseBlock, ...]
    stacks: tuple[KernelStack, ...]
    final_layer: str | None  # the last layer whose output still has spatial extent (its field is the network's)
    rf_unsupported: tuple[str, ...] = ()  # op types where the receptive field could not be followed
    merged_layers: tuple[tuple[str, ...], ...] = ()  # layers merged because their ops interleave (a cycle)
    # What could not be computed for want of shapes or costs (each in network order; all empty
    # when every figure is known):
    shapes_unknown: tuple[str, ...] = ()  # ops of the wiring whose output shape was not inferred (the reason)
    rf_unknown_at: tuple[str, ...] = ()  # ops (or inputs) where a field, or part of one, stopped being known
    # a layer after final_layer whose field or spatial size is not known: the network's field is
    # then unknown (final_layer is None)
    final_unknown: str | None = None
    provenance_unknown_at: tuple[str, ...] = ()  # ops where channel provenance was lost for want of a shape
    kernels_unknown: tuple[str, ...] = ()  # weighted conv layers whose kernel size is not known
    macs_unknown: tuple[str, ...] = ()  # ops that may hold MACs and were not costed (no rule, shape unknown)
    # the input's spatial dims left free (set to 1 for inference): sizes after them are not the network's
    free_spatial_dims: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every figure is known (else the fields above say which are not, and why)."""
        return not (self.rf_unknown_at or self.final_unknown or self.provenance_unknown_at or self.kernels_unknown
                    or self.macs_unknown)

    def layer(self, name: str) -> Layer:
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, Layer]:
        return {l.name: l for l in self.layers}

    @property
    def final_rf(self) -> ReceptiveField | None:
        return self.layer(self.final_layer).receptive_field if self.final_layer else None

    def layer_graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        for l in self.layers:
            g.add_node(l.name, block=l.block, kind=l.kind)
        for l in self.layers:
            g.add_edges_from((p, l.name) for p in l.predecessors)
        return g

    def block_graph(self) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_nodes_from(self.blocks)
        g.add_edges_from(self.block_edges)
        return g

    def to_frame(self) -> pd.DataFrame:
        """One row per layer; a figure that is not known is "unknown" (a blank cell: none to give,
        as a field where no spatial axis is left)."""
        sources = {c.layer: "unknown" if c.sources is None else len(c.sources) for c in self.concats}
        unknown_kernel = set(self.kernels_unknown)
        rows: list[dict[str, object]] = []
        for l in self.layers:
            rf = l.receptive_field
            rf_cells = ({"rf_size": "x".join(map(_axis, rf.size)), "rf_stride": "x".join(map(_axis, rf.stride)),
                         "rf_padding": "x".join(map(_axis, rf.padding)),
                         "rf_aligned": {True: "yes", False: "no", None: "unknown"}[rf.aligned]} if rf else
                        dict.fromkeys(("rf_size", "rf_stride", "rf_padding", "rf_aligned"),
                                      "unknown" if l.field_unknown else ""))
            kernel = "unknown" if l.name in unknown_kernel else ""
            rows.append({
                "layer": l.name, "block": l.block, "kind": l.kind, "op_types": " ".join(l.op_types),
                "macs": "unknown" if l.macs is None else l.macs,
                "kernel": "x".join(map(str, l.kernel)) if l.kernel else kernel,
                "stride": "x".join(map(str, l.stride)) if l.stride else kernel, "depth": l.depth,
                "fan_in": len(l.predecessors), "fan_out": len(l.successors), "predecessors": " ".join(l.predecessors),
                "output_shape": l.output_shape or "unknown",
                **rf_cells,
                "concat_sources": sources.get(l.name, ""),
            })
        return pd.DataFrame(rows, columns=COLUMNS)

    def summary(self) -> dict[str, object]:
        rf = self.final_rf
        return {
            "layers": sum(1 for l in self.layers if l.kind not in ("input", "output")),
            "weighted_layers": self.weighted_layers, "depth": self.depth,
            "max_parallel_paths": self.max_parallel_paths, "fork_joins": len(self.fork_joins),
            "residual_adds": len(self.residuals), "projection_shortcuts": sum(r.projection for r in self.residuals),
            "concats": len(self.concats), "dense_blocks": [d.layers for d in self.dense_blocks],
            "receptive_field": None if rf is None else {
                "layer": self.final_layer, "size": list(rf.size), "stride": list(rf.stride),
                "padding": list(rf.padding), "aligned": rf.aligned},
            # what could not be computed (absent when every figure is known): counts, and the first op of each
            **({"unknown": {
                "ops_without_shape": len(self.shapes_unknown), "receptive_field": self.final_unknown is not None,
                "layer_fields": sum(l.field_unknown or (l.receptive_field is not None and
                                                        not l.receptive_field.complete) for l in self.layers),
                "mac_shares": sum(f.macs is None for f in self.fork_joins),
                "concat_sources": sum(c.sources is None for c in self.concats),
                "kernels": len(self.kernels_unknown), "ops_without_macs": len(self.macs_unknown),
                "first": {k: v[0] for k, v in (("shape", self.shapes_unknown), ("field", self.rf_unknown_at),
                                               ("provenance", self.provenance_unknown_at),
                                               ("macs", self.macs_unknown)) if v}}} if not self.complete else {}),
        }


def _axis(x: int | None) -> str:
    return "?" if x is None else str(x)
