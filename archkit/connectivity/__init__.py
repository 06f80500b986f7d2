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

Pure computation: no printing, no files. Rendering lives in archkit.render.drawing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from math import prod
from typing import Callable, Iterable, Mapping

import networkx as nx
import numpy as np
import pandas as pd

from archkit.costs import CostReport
from archkit.costs.rules import FREE
from archkit.onnx.graph import FLOAT_TYPES, op_nodes

__all__ = ["ReceptiveField", "Layer", "Branch", "ForkJoin", "Residual", "ConcatFanIn", "DenseBlock", "KernelStack",
           "Connectivity", "analyse", "COLUMNS", "PublishedField", "PUBLISHED_RECEPTIVE_FIELDS"]

KERNEL_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum"})
WINDOW_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
REDUCE_OPS = frozenset({"ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"})
# One output element from one input element (or a per-channel constant): features and fields pass unchanged.
ELEMENTWISE = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Clip", "Gelu", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Floor", "Ceil", "Round",
    "Sign", "Mish", "ThresholdedRelu", "Shrink", "BatchNormalization", "InstanceNormalization", "Dropout",
    "Identity", "Cast", "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Not", "And", "Or",
    "Equal", "Less", "Greater", "LRN", "Softmax", "LogSoftmax", "Hardmax", "LayerNormalization"})
MERGE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Concat"})
LAYOUT_OPS = frozenset({"Identity", "Cast", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Dropout"})
POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool"}) | GLOBAL_POOLS
# Op types whose cost never holds MACs: one of them left uncosted leaves its layer's MACs known.
MAC_FREE = ELEMENTWISE | POOL_OPS | REDUCE_OPS | LAYOUT_OPS | FREE | {"Resize", "Upsample"}
_VIRTUAL = "\0source"


class _Unknown:
    """A tensor's receptive-field state or channel provenance that could not be followed for want
    of a shape (distinct from None: no spatial meaning, no provenance)."""

    def __repr__(self) -> str:
        return "UNKNOWN"


_UNKNOWN = _Unknown()


# --- results -----------------------------------------------------------------------------

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


@dataclass(frozen=True)
class PublishedField:
    """A receptive field from google-research/receptive_field's table (TF-slim models, 224x224),
    and the archkit layer where the same field is measured."""

    architecture: str  # archkit's name
    layer: str  # archkit's layer
    model: str  # TF-slim's model
    end_point: str
    size: int
    stride: int
    padding: int
    note: str = ""


_SLIM_RESNET = (
    "Which ResNet: the table measures TF-slim's resnet_v1, which puts each stage's stride 2 in the *last* unit of "
    "blocks 1-3 (on its 3x3 conv) and pads stride-2 convs explicitly; its block1..block4 end-points therefore have "
    "strides 8/16/32/32. archkit counts the paper's and keras.applications' v1 (stride on the first 1x1 of the "
    "first block of conv3_x..conv5_x, padding as Keras), so its stage ends have strides 4/8/16/32. The sizes agree "
    "at every stage end (a stride on a block's last 3x3 does not widen that block's own output field) and so does "
    "the stride at the end, 32; effective paddings differ by 2, from Keras' ZeroPadding + VALID against slim's "
    "padding of its strided convs.")
_SLIM_ALEXNET = (
    "Which AlexNet: the paper gives no receptive field; the table's alexnet_v2 is TF-slim's one-tower variant "
    "(Krizhevsky 2014: 64-192-384-384-256 maps, conv1 unpadded on 224x224, no LRN) and its 195 / 32 is measured at "
    "pool5, after the third max pool; its conv5 reaches 163 / 16. archkit's alexnet (the paper's two towers, "
    "227x227) and alexnet_onetower (torchvision) stack the same kernels and strides (11/4, pool 3/2, 5, pool 3/2, "
    "3, 3, 3, pool 3/2), so sizes and strides agree layer by layer; effective paddings follow each model's own "
    "padding (torchvision pads conv1 by 2).")

PUBLISHED_RECEPTIVE_FIELDS = (
    PublishedField("inception_v3", "mixed10_concat", "inception_v3", "Mixed_7c", 1311, 32, 618),
    PublishedField("inception_v2", "inception_5b_concat", "inception_v2", "Mixed_5c", 699, 32, 318,
                   "TF-slim's inception_v2 is BN-Inception, as archkit's; its blocks Mixed_3b ... Mixed_5c are "
                   "archkit's inception_3a ... inception_5b."),
    *(PublishedField(f"resnet{d}", f"conv{i + 2}_block{n}_out", f"resnet_v1_{d}", f"resnet_v1_{d}/block{i + 1}",
                     size, stride, pad, _SLIM_RESNET)
      for d, blocks, rows in (
          (50, (3, 4, 6, 3), ((35, 8, 15), (99, 16, 47), (291, 32, 143), (483, 32, 239))),
          (101, (3, 4, 23, 3), ((35, 8, 15), (99, 16, 47), (835, 32, 415), (1027, 32, 511))),
          (152, (3, 8, 36, 3), ((35, 8, 15), (163, 16, 79), (1315, 32, 655), (1507, 32, 751))))
      for i, (n, (size, stride, pad)) in enumerate(zip(blocks, rows))),
    *(PublishedField(a, layer, "alexnet_v2", f"alexnet_v2/{layer}", size, stride, 64, _SLIM_ALEXNET)
      for a in ("alexnet", "alexnet_onetower") for layer, size, stride in (("conv5", 163, 16), ("pool5", 195, 32))),
)


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
        rows = []
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

    def summary(self) -> dict:
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


# --- analysis ----------------------------------------------------------------------------

def analyse(G: nx.DiGraph, costs: CostReport, *, constants: Mapping[str, tuple[int, ...]] | None = None,
            kernel_values: Callable[[str], np.ndarray | None] | None = None) -> Connectivity:
    """Connectivity of an analysis graph whose ops `costs` attributes to layers and blocks.

    `constants`: values of small integer initializers (Pad amounts, Reduce axes; default: the
    graph's own, `G.graph["constants"]`); without them a Pad is taken as symmetric, when its size change allows.
    `kernel_values(initializer name)` may return a weight array: dense-block matrices then also
    hold the mean absolute weight per input map of each source (the DenseNet paper's Figure 5,
    for trained weights)."""
    return _Analysis(G, costs, constants, kernel_values).run()


def _is_data(t) -> bool:
    return t is not None and (t.dtype in FLOAT_TYPES or t.dtype == "undefined")


class _Analysis:
    def __init__(self, G: nx.DiGraph, costs: CostReport, constants, kernel_values):
        self.G = G
        self.kernel_values = kernel_values
        # Ops inside subgraphs (If/Loop/Scan bodies) are not part of the wiring.
        self.order = [(nid, d) for nid, d in op_nodes(G) if not d.get("parent")]
        self.index = {nid: i for i, (nid, _) in enumerate(self.order)}
        self.cost = {o.node: o for o in costs.ops}
        self.constants = constants if constants is not None else G.graph.get("constants", {})
        # Tensors that depend on no graph input: weights and what is computed from them alone.
        self.const: set[str] = set(G.graph.get("initializers", {}))
        self.producer: dict[str, str] = {}
        for nid, data in G.nodes(data=True):
            if data["kind"] == "input":
                self.producer[data["tensor"].name] = nid
        for nid, data in self.order:
            for t in data["outputs"]:
                self.producer[t.name] = nid
            if all(t is None or t.name in self.const for t in data["inputs"]):
                self.const.update(t.name for t in data["outputs"])
        self.shape = {}
        for nid, data in self.order:
            for t in list(data["inputs"]) + list(data["outputs"]):
                if t is not None:
                    self.shape[t.name] = t.shape
        for nid, data in G.nodes(data=True):
            if data["kind"] != "op":
                self.shape[data["tensor"].name] = data["tensor"].shape
        self.rf_unknown_at: list[str] = []
        self.prov_unknown_at: list[str] = []
        # Input axes whose symbolic dim was set to 1 for inference (not by the caller): sizes that
        # follow from them are not the network's, so a figure that needs such a size is unknown.
        self.defaulted = {(f"input:{name}", axis): dim for name, axes in G.graph.get("fixed_dims", {}).items()
                          for axis, dim in axes.items()}

    # data ops: compute on the input (not constant folding, not shape arithmetic)
    def data_inputs(self, data) -> list:
        return [t for t in data["inputs"] if _is_data(t) and t.name not in self.const]

    def is_data_op(self, data) -> bool:
        return any(_is_data(t) and t.name not in self.const for t in data["outputs"]) and bool(self.data_inputs(data))

    def run(self) -> Connectivity:
        G = self.G
        self.layer_of: dict[str, str] = {}
        self.block_of: dict[str, str] = {}
        for nid, data in self.order:
            c = self.cost.get(nid)
            layer = c.layer if c else nid
            self.layer_of[nid] = layer
            self.block_of.setdefault(layer, c.block if c else layer)
        for nid, data in G.nodes(data=True):
            if data["kind"] in ("input", "output"):
                self.layer_of[nid] = nid
                self.block_of[nid] = nid
        # Exporters name the layout ops they insert after a consumer (tf2onnx's
        # `.../inception_3a_b4_pool_1/MaxPool2d__2`, the NHWC→NCHW transpose of the input that four
        # branches read): a Transpose that shares its layer with other ops belongs with its input.
        members = Counter(self.layer_of[nid] for nid, _ in self.order)
        for nid, data in self.order:
            if data["op_type"] == "Transpose" and members[self.layer_of[nid]] > 1:
                src = data["inputs"][0].name if data["inputs"] and data["inputs"][0] is not None else None
                p = self.producer.get(src)
                if p is not None and self.layer_of.get(p, self.layer_of[nid]) != self.layer_of[nid]:
                    members[self.layer_of[nid]] -= 1
                    self.layer_of[nid] = self.layer_of[p]
        self.data_ops = [(nid, data) for nid, data in self.order if self.is_data_op(data)]
        succ = self.G.succ  # an output no op reads (Dropout's mask) needs no shape
        self.shapes_unknown = [nid for nid, data in self.data_ops
                               if any(_is_data(t) and not _inferred(t.shape)
                                      and any(t.name in e["tensors"] for e in succ[nid].values())
                                      for t in data["outputs"])]
        self._layer_graph()
        self._weighted()
        self._receptive_fields()
        self._provenance()
        depth = self._depth()
        fork_joins = self._fork_joins()
        residuals = self._residuals()
        concats, dense = self._concats()
        stacks = self._stacks()
        layers = self._layers(depth)
        blocks = list(dict.fromkeys(self.block_of[l] for l in self.L))
        block_edges = list(dict.fromkeys((self.block_of[u], self.block_of[v]) for u, v in self.L.edges
                                         if self.block_of[u] != self.block_of[v]))
        outputs = [n for n in self.L if n.startswith("output:")]
        final, final_unknown = self._final_layer()
        net_depth = max((depth[n] for n in outputs), default=max(depth.values(), default=0))
        return Connectivity(
            layers=tuple(layers),
            blocks=tuple(blocks),
            block_edges=tuple(block_edges),
            depth=net_depth,
            weighted_layers=len(self.weighted),
            max_parallel_paths=max((f.paths for f in fork_joins), default=1),
            fork_joins=tuple(fork_joins),
            residuals=tuple(residuals),
            concats=tuple(concats),
            dense_blocks=tuple(dense),
            stacks=tuple(stacks),
            final_layer=final,
            rf_unsupported=tuple(sorted(self.rf_unsupported)),
            merged_layers=tuple(self.merged),
            shapes_unknown=tuple(self.shapes_unknown),
            rf_unknown_at=tuple(dict.fromkeys(self.rf_unknown_at)),
            final_unknown=final_unknown,
            provenance_unknown_at=tuple(dict.fromkeys(self.prov_unknown_at)),
            kernels_unknown=tuple(l for l in self.L if l in self.weighted and self._kernel_unknown(l)),
            macs_unknown=tuple(self.macs_unknown),
            free_spatial_dims=tuple(dict.fromkeys(
                self.defaulted[o] or f"{o[0].split(':', 1)[1]}[{o[1]}]"
                for o in sorted(self.spatial_origins, key=lambda o: (o[0], o[1])) if o in self.defaulted)),
        )

    # --- the layer graph ---------------------------------------------------------------

    def _layer_graph(self) -> None:
        G = self.G
        L = nx.DiGraph()
        for nid, data in G.nodes(data=True):
            if data["kind"] == "input":
                L.add_node(nid)
        for nid, data in self.data_ops:
            L.add_node(self.layer_of[nid])
        for nid, data in G.nodes(data=True):
            if data["kind"] == "output":
                L.add_node(nid)
        data_nodes = {nid for nid, _ in self.data_ops} | {n for n, d in G.nodes(data=True) if d["kind"] != "op"}
        data_tensors = {t.name for nid, d in self.data_ops for t in d["outputs"] if _is_data(t)} | \
            {d["tensor"].name for _, d in G.nodes(data=True) if d["kind"] == "input"}
        data_tensors -= self.const
        for u, v, e in G.edges(data=True):
            if u not in data_nodes or v not in data_nodes:
                continue
            if not any(t in data_tensors for t in e["tensors"]):
                continue
            lu, lv = self.layer_of[u], self.layer_of[v]
            if lu != lv:
                L.add_edge(lu, lv)
        self.merged: list[tuple[str, ...]] = []
        if not nx.is_directed_acyclic_graph(L):
            # A layer's ops interleave with another's: merge each strongly connected set into its first layer.
            rank = {n: i for i, n in enumerate(L)}
            rename = {}
            for scc in nx.strongly_connected_components(L):
                if len(scc) > 1:
                    members = sorted(scc, key=rank.__getitem__)
                    self.merged.append(tuple(members))
                    rename.update({m: members[0] for m in members[1:]})
            L = nx.relabel_nodes(L, rename, copy=True)
            L.remove_edges_from(list(nx.selfloop_edges(L)))
            self.layer_of = {n: rename.get(l, l) for n, l in self.layer_of.items()}
        # Network order: topological, ties by first op in the file.
        first = {}
        for nid, _ in self.data_ops:
            first.setdefault(self.layer_of[nid], self.index[nid])
        key = lambda n: (first.get(n, -1 if n.startswith("input:") else len(self.index)), n)  # noqa: E731
        order = list(nx.lexicographical_topological_sort(L, key=key))
        self.L = nx.DiGraph()
        self.L.add_nodes_from(order)
        self.rank = {n: i for i, n in enumerate(order)}
        self.L.add_edges_from(sorted(L.edges, key=lambda e: (self.rank[e[1]], self.rank[e[0]])))
        self.ops_of: dict[str, list[tuple[str, dict]]] = {}
        for nid, data in self.data_ops:
            self.ops_of.setdefault(self.layer_of[nid], []).append((nid, data))
        macs = Counter()
        self.macs_unknown: list[str] = []  # ops
        self.macs_unknown_layers: set[str] = set()
        for o in self.cost.values():
            if not o.summed:  # an If's branch that is not counted is in no sum
                continue
            layer = self.layer_of.get(o.node, o.layer)
            macs[layer] += o.macs
            if o.status in ("unknown", "unsupported") and not (o.domain == "ai.onnx" and o.op_type in MAC_FREE):
                self.macs_unknown.append(o.node)
                self.macs_unknown_layers.add(layer)
        self.macs = macs

    def _layer_macs(self, layers: Iterable[str]) -> int | None:
        """MACs of some layers; None when one of them has an op that may hold MACs and was not costed."""
        layers = list(layers)
        if any(l in self.macs_unknown_layers for l in layers):
            return None
        return int(sum(self.macs[l] for l in layers))

    def _info(self, tensor: str):
        p = self.producer.get(tensor)
        if p is None:
            return None
        data = self.G.nodes[p]
        if data["kind"] == "input":
            return data["tensor"]
        return next((t for t in data["outputs"] if t.name == tensor), None)

    def _weighted(self) -> None:
        """Layers with a conv/dense op whose kernel is a constant and whose data is not."""
        self.weighted: set[str] = set()
        self.kernel_op: dict[str, tuple[str, dict]] = {}
        for nid, data in self.data_ops:
            op = data["op_type"]
            ins = data["inputs"]
            if op not in KERNEL_OPS or len(ins) < 2:
                continue
            if op == "MatMul" or op == "Einsum":
                ok = any(t is not None and t.name in self.const for t in ins) and bool(self.data_inputs(data))
            else:
                ok = ins[1] is not None and ins[1].name in self.const and ins[0] is not None and ins[0].name not in self.const
            if ok:
                layer = self.layer_of[nid]
                self.weighted.add(layer)
                self.kernel_op.setdefault(layer, (nid, data))

    def _depth(self) -> dict[str, int]:
        depth: dict[str, int] = {}
        for n in self.L:
            depth[n] = max((depth[p] for p in self.L.predecessors(n)), default=0) + (n in self.weighted)
        return depth

    # --- fork/join pairs and residual adds ---------------------------------------------------

    def _dominators(self) -> dict[str, str]:
        if not hasattr(self, "_idom"):
            D = self.L.copy()
            D.add_node(_VIRTUAL)
            D.add_edges_from((_VIRTUAL, n) for n in self.L if self.L.in_degree(n) == 0)
            self._idom = nx.immediate_dominators(D, _VIRTUAL)
        return self._idom

    def _between(self, fork: str, node: str) -> set[str]:
        """Layers on some fork→node path, both ends excluded, where `fork` dominates `node`: the
        ancestors of `node` found without passing `fork` (every path from the input to them runs
        through `fork`). Work in proportion to the region, not to the graph."""
        seen, todo = set(), [node]
        while todo:
            for p in self.L.predecessors(todo.pop()):
                if p != fork and p not in seen:
                    seen.add(p)
                    todo.append(p)
        return seen

    def _longest_weighted(self, nodes: Iterable[str], start: str, end: str) -> int:
        """Weighted layers on the longest start→end path through `nodes` (start excluded, end included)."""
        allowed = set(nodes) | {end}
        best = {start: 0}
        for n in sorted(allowed, key=self.rank.__getitem__):
            preds = [best[p] for p in self.L.predecessors(n) if p in best]
            if preds:
                best[n] = max(preds) + (n in self.weighted)
        return best.get(end, 0)

    def _fork_joins(self) -> list[ForkJoin]:
        idom = self._dominators()
        out = []
        for join in self.L:
            if self.L.in_degree(join) < 2 or join.startswith("output:"):
                continue
            fork = idom.get(join)
            if fork is None or fork == _VIRTUAL:
                continue
            region = self._between(fork, join)
            # Branches in the order the join takes them (a Concat's inputs: the paper's column order).
            position = {l: i for i, l in reversed(list(enumerate(self._input_layers(join))))}
            comps = [tuple(sorted(c, key=self.rank.__getitem__)) for c in self._components(region)]
            if self.L.has_edge(fork, join):
                comps.append(())
            branches = sorted(comps, key=lambda c: (min((position.get(l, len(position)) for l in c or (fork,))),
                                                    self.rank[c[0]] if c else -1))
            fixed = []
            for layers in branches:
                # weighted layers on the longest path from the fork to the branch's layers feeding the join
                ends = [p for p in self.L.predecessors(join) if p in set(layers)]
                w = max((self._longest_weighted(layers, fork, e) for e in ends), default=0)
                fixed.append((layers, w, self._layer_macs(layers)))
            total = None if any(m is None for _, _, m in fixed) else sum(m for _, _, m in fixed)
            paths = {fork: 1}
            for n in sorted(region | {join}, key=self.rank.__getitem__):
                paths[n] = sum(paths.get(p, 0) for p in self.L.predecessors(n))
            out.append(ForkJoin(
                fork=fork, join=join, block=self.block_of[join],
                branches=tuple(Branch(l, w, m, None if total is None else m / total if total else 0.0)
                               for l, w, m in fixed),
                paths=paths[join], macs=total))
        return out

    def _components(self, nodes: set[str]) -> list[set[str]]:
        """Weakly connected components of the layer graph restricted to `nodes`."""
        comps, seen = [], set()
        for start in nodes:
            if start in seen:
                continue
            comp, todo = {start}, [start]
            while todo:
                n = todo.pop()
                for m in (*self.L.pred[n], *self.L.succ[n]):
                    if m in nodes and m not in comp:
                        comp.add(m)
                        todo.append(m)
            seen |= comp
            comps.append(comp)
        return comps

    def _input_layers(self, layer: str) -> list[str]:
        """The layers a layer's ops read from, in the order of their inputs."""
        out = []
        for nid, data in self.ops_of.get(layer, []):
            for t in self.data_inputs(data):
                p = self.layer_of.get(self.producer.get(t.name))
                if p is not None and p != layer:
                    out.append(p)
        return out

    def _residuals(self) -> list[Residual]:
        idom = self._dominators()
        out = []
        for nid, data in self.data_ops:
            if data["op_type"] not in ("Add", "Sum"):
                continue
            ins = self.data_inputs(data)
            if len(ins) < 2:
                continue
            layer = self.layer_of[nid]
            srcs = [self.layer_of.get(self.producer.get(t.name), None) for t in ins]
            if any(s is None for s in srcs) or len(set(srcs)) < 2:
                continue  # inside one layer, or one tensor added to itself
            fork = idom.get(layer)
            if fork is None or fork == _VIRTUAL:
                continue
            branches = []
            for s in srcs:
                if s == fork:
                    branches.append(((), 0))
                    continue
                nodes = self._between(fork, s) | {s}
                w = self._longest_weighted(nodes - {s}, fork, s)
                branches.append((tuple(sorted((n for n in nodes if n in self.weighted), key=self.rank.__getitem__)), w))
            branches.sort(key=lambda b: b[1])
            shortcut, longest = branches[0], branches[-1]
            out.append(Residual(node=nid, layer=layer, block=self.block_of[layer], fork=fork, span=longest[1],
                                shortcut=shortcut[0], projection=shortcut[1] > 0))
        return out

    # --- channel provenance: concatenation fan-in and dense blocks ---------------------------------

    def _provenance(self) -> None:
        """For each float tensor: along which axis its channels lie and which op made each run of
        them (segments of (source op, channels)), and the Concat whose output it is (through
        layout-only ops). _UNKNOWN where a rank or size it needs was not inferred, up to the next
        conv, which starts the channels anew."""
        prov: dict[str, tuple[int | None, tuple[tuple[str, int | None], ...], str | None] | _Unknown] = {}
        for nid, data in self.G.nodes(data=True):
            if data["kind"] == "input":
                t = data["tensor"]
                axis = _channel_axis(t.shape)
                prov[t.name] = (axis, ((nid, _dim(t.shape, axis)),), None)
        self.targets: list[tuple[str, str, tuple]] = []  # (node, layer, input provenance) of weighted ops
        for nid, data in self.data_ops:
            op = data["op_type"]
            outs = [t for t in data["outputs"] if _is_data(t)]
            ins = self.data_inputs(data)
            src = [prov.get(t.name) for t in ins]
            out_shape = outs[0].shape if outs else None

            def new(axis):
                return (axis, ((nid, _dim(out_shape, axis)),), None)

            result = None
            if any(s is None for s in src):
                result = new(None)
            elif op in ("Conv", "ConvTranspose"):
                result = new(1)
            elif any(s is _UNKNOWN for s in src):
                result = _UNKNOWN
            elif op in ("Gemm", "MatMul", "Einsum"):
                rank = self._out_rank(data)
                result = new(rank - 1) if rank is not None else _UNKNOWN
            elif op == "Concat":
                axis = _axis_of(data["attrs"].get("axis", 0), self._out_rank(data))
                if axis is None:
                    result = _UNKNOWN
                elif all(s[0] == axis for s in src) and len(ins) == len([t for t in data["inputs"] if t is not None]):
                    segs = _join(sum((s[1] for s in src), ()))
                    result = (axis, segs, nid)
                else:
                    result = new(src[0][0] if len({s[0] for s in src}) == 1 else None)
            elif op == "Transpose":
                axis, segs, cat = src[0]
                perm = data["attrs"].get("perm")
                if axis is not None and perm is not None:
                    result = (list(perm).index(axis), segs, cat)
                else:
                    result = new(None)
            elif op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
                axis, segs, cat = src[0]
                in_shape = self.shape.get(ins[0].name)
                if axis is not None and not (_concrete(in_shape) and _concrete(out_shape)):
                    result = _UNKNOWN  # which axis the channels land on depends on the sizes
                else:
                    mapped = _map_axis(in_shape, out_shape, axis)
                    result = (mapped, segs, cat) if mapped is not None else new(None)
            elif op in REDUCE_OPS:
                axis, segs, _ = src[0]
                rank = self._rank(ins[0].name)
                axes = self._reduce_axes(data, rank)
                keep = data["attrs"].get("keepdims", 1)
                if axis is None:
                    result = new(None)
                elif axes is _UNKNOWN:
                    result = _UNKNOWN
                elif axes is None or axis in axes:
                    result = new(None)
                else:
                    result = (axis if keep else axis - sum(1 for a in axes if a < axis), segs, None)
            elif op in POOL_OPS or op == "Pad":
                axis, segs, _ = src[0]
                result = (axis, segs, None)
            elif op in ("Split",):
                axis, segs, _ = src[0]
                split_axis = _axis_of(data["attrs"].get("axis", 0), self._rank(ins[0].name))
                sizes = self._split_sizes(data, split_axis)
                if axis is not None and (split_axis is None or split_axis == axis and None in sizes):
                    for t in outs:  # where the channels fall depends on sizes not inferred
                        prov[t.name] = _UNKNOWN
                    self.prov_unknown_at.append(nid)
                elif axis is None or split_axis != axis:
                    for t in outs:
                        prov[t.name] = (axis, segs, None)
                else:
                    start = 0
                    for t, n in zip(outs, sizes):
                        prov[t.name] = (axis, _cut(segs, start, n) if n else ((nid, 0),), None)
                        start += n
                continue
            elif op in ELEMENTWISE:
                layout = op in LAYOUT_OPS
                if len(ins) == 1:
                    axis, segs, cat = src[0]
                    rank_in, rank_out = self._rank(ins[0].name), self._out_rank(data)
                    if axis is not None and (rank_in is None or rank_out is None):
                        result = _UNKNOWN  # a broadcast may add leading axes
                    else:
                        if axis is not None and rank_out > rank_in:
                            axis += rank_out - rank_in
                        result = (axis, segs, cat if layout else None)
                else:
                    axes = {s[0] for s in src}
                    result = new(axes.pop() if len(axes) == 1 else None)
            else:
                result = new(None)
            if result is _UNKNOWN and not any(s is _UNKNOWN for s in src):
                self.prov_unknown_at.append(nid)
            for t in outs:
                prov[t.name] = result
            if self.layer_of[nid] in self.weighted and self.kernel_op.get(self.layer_of[nid], (None,))[0] == nid:
                self.targets.append((nid, self.layer_of[nid], src[0] if src else None))
        self.prov = prov

    def _rank(self, tensor: str) -> int | None:
        """A tensor's rank: from its shape, else from its receptive-field state (which follows ranks
        through ops whose output shape was not inferred)."""
        shape = self.shape.get(tensor)
        if shape is not None:
            return len(shape)
        state = self.rf.get(tensor)
        return len(state) if isinstance(state, tuple) else None

    def _out_rank(self, data) -> int | None:
        """The rank of an op's first float output: inferred, else for a broadcasting or
        rank-keeping op the largest rank of its inputs (None when one is not known)."""
        outs = [t for t in data["outputs"] if _is_data(t)]
        if outs and outs[0].shape is not None:
            return len(outs[0].shape)
        if outs and (outs[0].name in self.rf and isinstance(self.rf[outs[0].name], tuple)):
            return len(self.rf[outs[0].name])
        op = data["op_type"]
        ranks = [self._rank(t.name) for t in data["inputs"] if t is not None]
        if op in ("Shape", "Size") or not ranks or None in ranks:
            return None
        if op in ELEMENTWISE or op in ("Concat", "MatMul", "Gemm"):
            return max(ranks) if op != "Concat" else ranks[0]
        return None

    def _split_sizes(self, data, axis: int | None, state=None) -> list[int | None]:
        """Each output's size along a Split's axis: inferred, or the `split` attribute or input."""
        outs = [t for t in data["outputs"] if _is_data(t)]
        sizes = [self._size(t.shape, axis, state) for t in outs]
        if None in sizes:
            given = data["attrs"].get("split")
            if given is None and len(data["inputs"]) > 1 and data["inputs"][1] is not None:
                given = self.constants.get(data["inputs"][1].name)
            if given is not None and len(given) == len(outs):
                sizes = [int(n) for n in given]
        return sizes

    def _reduce_axes(self, data, rank: int | None) -> tuple[int, ...] | None | _Unknown:
        """The axes a reduction reduces; None when they are not constants, _UNKNOWN when the rank
        they need is not known."""
        axes = data["attrs"].get("axes")
        if axes is None and len(data["inputs"]) > 1 and data["inputs"][1] is not None:
            axes = self.constants.get(data["inputs"][1].name)
            if axes is None:
                return None
        if axes is None:
            if data["attrs"].get("noop_with_empty_axes", 0):
                return ()
            return _UNKNOWN if rank is None else tuple(range(rank))
        if rank is None and any(a < 0 for a in axes):
            return _UNKNOWN
        return tuple(a + rank if a < 0 else a for a in axes)

    def _source_layer(self, op: str) -> str:
        return self.layer_of.get(op, op)

    def _concats(self) -> tuple[list[ConcatFanIn], list[DenseBlock]]:
        out = []
        chain_parent: dict[str, str] = {}
        carry_index: dict[str, int] = {}
        concat_nodes = []
        for nid, data in self.data_ops:
            if data["op_type"] != "Concat":
                continue
            layer = self.layer_of[nid]
            ins = self.data_inputs(data)
            in_layers = tuple(dict.fromkeys(self.layer_of.get(self.producer.get(t.name), "?") for t in ins))
            if all(l == layer for l in in_layers):
                continue  # inside one layer (a grouped convolution's towers)
            outs = [t for t in data["outputs"] if _is_data(t)]
            p = self.prov.get(outs[0].name) if outs else None
            if p is _UNKNOWN:
                sources = None
            else:
                sources = tuple(dict.fromkeys(self._source_layer(s) for s, _ in p[1])) if p and p[2] == nid else ()
            out.append(ConcatFanIn(node=nid, layer=layer, block=self.block_of[layer], inputs=len(ins),
                                   input_layers=in_layers, sources=sources))
            if p and p is not _UNKNOWN and p[2] == nid:
                concat_nodes.append(nid)
                for i, t in enumerate(ins):
                    q = self.prov.get(t.name)
                    if q and q is not _UNKNOWN and q[2] is not None:
                        chain_parent[nid] = q[2]
                        carry_index[nid] = i
                        break
        children: dict[str, list[str]] = {}
        for c, p in chain_parent.items():
            children.setdefault(p, []).append(c)
        dense = []
        for start in concat_nodes:
            if start in chain_parent and len(children.get(chain_parent[start], [])) == 1:
                continue  # not the head of a chain
            chain = [start]
            while len(children.get(chain[-1], [])) == 1:
                chain.append(children[chain[-1]][0])
            if len(chain) >= 2:
                dense.append(self._dense_block(chain, carry_index.get(chain[1], 0)))
        return out, dense

    def _dense_block(self, chain: list[str], carry: int) -> DenseBlock:
        first = self.G.nodes[chain[0]]
        first_ins = self.data_inputs(first)
        states = [self.prov[first_ins[min(carry, len(first_ins) - 1)].name]] + \
            [self.prov[next(t for t in self.G.nodes[c]["outputs"] if _is_data(t)).name] for c in chain]
        state_segs = {s[1] for s in states}
        last = states[-1]
        sources = tuple(dict.fromkeys(self._source_layer(s) for s, _ in last[1]))
        targets = [(nid, layer, p) for nid, layer, p in self.targets
                   if p is not None and p is not _UNKNOWN and p[1] in state_segs]
        row = {s: i for i, s in enumerate(sources)}
        matrix = [[False] * len(targets) for _ in sources]
        sums = [[0.0] * len(targets) for _ in sources]
        maps = [[0] * len(targets) for _ in sources]
        kernels = [self._kernel_by_input(nid) if self.kernel_values else None for nid, _, _ in targets]
        for j, ((nid, layer, p), w) in enumerate(zip(targets, kernels)):
            offset = 0
            for s, n in p[1]:
                i = row.get(self._source_layer(s))
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
        blocks = Counter(self.block_of[self.layer_of[c]] for c in chain)
        name, count = blocks.most_common(1)[0]
        if count < len(chain) // 2 + 1 or name == self.layer_of[chain[0]]:
            name = f"{self.layer_of[chain[0]]} … {self.layer_of[chain[-1]]}"
        unknown = {layer for _, layer, p in self.targets if p is _UNKNOWN}
        known = not unknown or not unknown & nx.descendants(self.L, self.layer_of[chain[0]])
        return DenseBlock(name=name, concats=tuple(self.layer_of[c] for c in chain), sources=sources,
                          targets=tuple(l for _, l, _ in targets), matrix=tuple(tuple(r) for r in matrix),
                          mean_abs_weight=mean_abs if known else None, targets_known=known)

    def _kernel_by_input(self, nid: str) -> np.ndarray | None:
        """The op's kernel as (outputs, input maps, ...) or None."""
        data = self.G.nodes[nid]
        op = data["op_type"]
        try:
            if op == "Conv" and data["attrs"].get("group", 1) == 1:
                w = self.kernel_values(data["inputs"][1].name)
                return None if w is None else w.reshape(w.shape[0], w.shape[1], -1)
            if op == "MatMul":
                w = self.kernel_values(data["inputs"][1].name)
                return None if w is None or w.ndim != 2 else w.T
            if op == "Gemm":
                w = self.kernel_values(data["inputs"][1].name)
                return None if w is None else (w if data["attrs"].get("transB", 0) else w.T)
        except (KeyError, AttributeError, ValueError):
            return None
        return None

    # --- receptive fields -----------------------------------------------------------------

    def _receptive_fields(self) -> None:
        # State per tensor: a tuple, per axis (origin, axis, size, stride, padding, aligned) or None
        # (no spatial meaning), any of size, stride, padding, aligned None where not known; or
        # _UNKNOWN where which axes are which could not be followed for want of a shape.
        rf: dict[str, tuple | _Unknown] = {}
        self.rf = rf
        self.spatial_origins: set = set()
        self.rf_unsupported: set[str] = set()
        for nid, data in self.G.nodes(data=True):
            if data["kind"] == "input":
                t = data["tensor"]
                if t.shape is not None:
                    rf[t.name] = tuple((nid, a, 1, 1, 0, True) for a in range(len(t.shape)))
                elif _is_data(t):
                    rf[t.name] = _UNKNOWN
                    self.rf_unknown_at.append(nid)
        for nid, data in self.data_ops:
            op = data["op_type"]
            ins = self.data_inputs(data)
            outs = [t for t in data["outputs"] if _is_data(t)]
            states = [rf.get(t.name) for t in ins]
            result = None
            if not ins or any(s is None for s in states):
                result = None
            elif any(s is _UNKNOWN for s in states):
                result = _UNKNOWN
            elif op in WINDOW_OPS or op in GLOBAL_POOLS or op in REDUCE_OPS:
                result = self._window(nid, op, data, states[0])
            elif op == "Transpose":
                perm = data["attrs"].get("perm") or tuple(reversed(range(len(states[0]))))
                result = tuple(states[0][p] for p in perm)
            elif op == "Pad":
                result = self._pad(nid, data, states[0])
            elif op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
                result = self._reshape(nid, data, states[0])
            elif op == "Concat":
                out_rank = len(states[0])
                axis = data["attrs"].get("axis", 0)
                axis = axis + out_rank if axis < 0 else axis
                result = tuple(None if a == axis else _merge([s[a] for s in states]) for a in range(out_rank))
            elif op in ("MatMul", "Gemm"):
                s = states[0]
                result = tuple(s[:-1]) + (None,) if op == "MatMul" else (s[0], None)
            elif op == "Split":
                rank = len(states[0])
                axis = data["attrs"].get("axis", 0)
                axis = axis + rank if axis < 0 else axis
                start = 0
                sizes = self._split_sizes(data, axis, states[0][axis])
                if states[0][axis] is not None and None in sizes[:-1]:
                    self.rf_unknown_at.append(nid)  # where each part starts on a spatial axis
                for t, n in zip(outs, sizes):
                    rf[t.name] = tuple(_crop(s, start) if a == axis else s for a, s in enumerate(states[0]))
                    start = None if start is None or n is None else start + n
                continue
            elif op in ("Softmax", "LogSoftmax", "Hardmax", "LRN", "LayerNormalization"):
                result = states[0]
            elif op in ELEMENTWISE:
                out_rank = self._out_rank(data)
                if out_rank is None:  # a broadcast with an input of unknown rank: which axis is which
                    result = _UNKNOWN
                    self.rf_unknown_at.append(nid)
                else:
                    aligned = [(None,) * (out_rank - len(s)) + tuple(s) for s in states]
                    result = tuple(_merge([s[a] for s in aligned]) for a in range(out_rank))
            else:
                if any(x is not None and x[:2] in self.spatial_origins for s in states for x in s):
                    self.rf_unsupported.add(op)
                result = None
            for t in outs:
                rf[t.name] = result

    def _window(self, nid: str, op: str, data: dict, state: tuple) -> tuple | None:
        """A windowed op's output state. Kernel, stride, dilation and explicit pads are attributes;
        the input's size is needed only for a global window (its size) and for a SAME auto_pad
        with a stride above 1 (its padding): where it is not known, that part of the field is None."""
        a = data["attrs"]
        rank = len(state)
        in_shape = data["inputs"][0].shape
        partial = False

        def whole(s, i, stride):  # one window over the whole axis i
            nonlocal partial
            n = self._size(in_shape, i, s)
            partial |= n is None
            return _step(s, n, n if stride is None else stride, 0)

        if op in REDUCE_OPS:
            axes = self._reduce_axes(data, rank)
            if axes is None or axes is _UNKNOWN:
                return None
            keep = a.get("keepdims", 1)
            out = []
            for i, s in enumerate(state):
                if i not in axes:
                    out.append(s)
                elif keep:  # a global pooling: the whole axis in one window
                    out.append(None if s is None else whole(s, i, None))
            if partial:
                self.rf_unknown_at.append(nid)
            return tuple(out)
        spatial = range(2, rank)
        for i in spatial:
            if state[i] is not None:
                self.spatial_origins.add(state[i][:2])
        if op in GLOBAL_POOLS:
            out = tuple(s if i < 2 or s is None else whole(s, i, 1) for i, s in enumerate(state))
            if partial:
                self.rf_unknown_at.append(nid)
            return out
        n = rank - 2
        if op == "Conv":
            w = data["inputs"][1]
            kernel = a.get("kernel_shape") or (tuple(w.shape[2:]) if w is not None and _concrete(w.shape) else None)
            if kernel is None and w is not None:
                kernel = (None,) * n  # the kernel's shape was not inferred: the field's size is not known
                partial = True
        else:
            kernel = a.get("kernel_shape")
        if kernel is None or len(kernel) != n:
            self.rf_unsupported.add(op)
            return None
        strides = a.get("strides") or (1,) * n
        dilations = a.get("dilations") or (1,) * n
        effective = [None if k is None else d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
        sizes = [self._size(in_shape, 2 + i, state[2 + i]) for i in range(n)]
        begin = self._pads_begin(a, sizes, effective, strides, n)
        out = [state[0], None if op == "Conv" else state[1]]
        for i in range(n):
            s = state[2 + i]
            partial |= s is not None and begin[i] is None
            out.append(None if s is None else _step(s, effective[i], strides[i], begin[i]))
        if partial:
            self.rf_unknown_at.append(nid)
        return tuple(out)

    @staticmethod
    def _pads_begin(a: dict, sizes, kernel, strides, n) -> list[int | None]:
        """Padding before each spatial axis; None where SAME padding depends on a size not known."""
        auto = a.get("auto_pad", "NOTSET") or "NOTSET"
        if auto in ("NOTSET",):
            pads = a.get("pads") or (0,) * (2 * n)
            return list(pads[:n])
        if auto == "VALID":
            return [0] * n
        out = []
        for i in range(n):
            size = sizes[i]
            if kernel[i] is None:
                total = None
            elif strides[i] == 1:
                total = kernel[i] - 1  # any size: (size - 1) + kernel - size
            elif size is None:
                total = None
            else:
                total = max((-(-size // strides[i]) - 1) * strides[i] + kernel[i] - size, 0)
            out.append(None if total is None else total // 2 if auto == "SAME_UPPER" else total - total // 2)
        return out

    def _pad(self, nid: str, data: dict, state: tuple) -> tuple:
        """A Pad changes only the effective padding: by its amounts (constants), else by half the
        size change on each axis; None where neither is known."""
        rank = len(state)
        pads = data["attrs"].get("pads")
        if pads is None and len(data["inputs"]) > 1 and data["inputs"][1] is not None:
            pads = self.constants.get(data["inputs"][1].name)
        axes = tuple(range(rank))
        if len(data["inputs"]) > 3 and data["inputs"][3] is not None:
            given = self.constants.get(data["inputs"][3].name)
            axes = tuple(a + rank if a < 0 else a for a in given) if given is not None else None
        if pads is None or axes is None:  # values not given: symmetric, where the size change allows it
            in_shape, out_shape = data["inputs"][0].shape, data["outputs"][0].shape
            out = []
            for i, s in enumerate(state):
                grow = None
                if self._size(in_shape, i, s) is not None and self._size(out_shape, i, s) is not None:
                    grow = _dim(out_shape, i) - _dim(in_shape, i)
                if s is None or grow == 0:
                    out.append(s)
                elif grow is None or grow % 2:
                    out.append(_shift(s, None))
                    self.rf_unknown_at.append(nid)
                else:
                    out.append(_shift(s, grow // 2))
            return tuple(out)
        begin = dict(zip(axes, pads[:len(axes)]))
        return tuple(None if s is None else (s if not begin.get(i) else _shift(s, begin[i]))
                     for i, s in enumerate(state))

    def _reshape(self, nid: str, data: dict, state: tuple) -> tuple | _Unknown:
        """Which axes survive a reshape: from the sizes, or for Squeeze/Unsqueeze from their axes."""
        in_shape, out_shape = data["inputs"][0].shape, data["outputs"][0].shape
        defaulted = any(s is not None and s[:2] in self.defaulted and s[:2] in self.spatial_origins for s in state)
        if _concrete(in_shape) and _concrete(out_shape) and not defaulted:
            return _map_states(in_shape, out_shape, state)
        op = data["op_type"]
        axes = None
        if op in ("Squeeze", "Unsqueeze"):
            axes = data["attrs"].get("axes")
            if axes is None and len(data["inputs"]) > 1 and data["inputs"][1] is not None:
                axes = self.constants.get(data["inputs"][1].name)
        if axes is not None and op == "Unsqueeze":
            rank = len(state) + len(axes)
            new = {a + rank if a < 0 else a for a in axes}
            rest = iter(state)
            return tuple(None if i in new else next(rest) for i in range(rank))
        if axes is not None and op == "Squeeze":
            gone = {a + len(state) if a < 0 else a for a in axes}
            return tuple(s for i, s in enumerate(state) if i not in gone)
        self.rf_unknown_at.append(nid)
        return _UNKNOWN

    def _spatial_rf(self, tensor: str) -> ReceptiveField | None | _Unknown:
        """The field of a tensor over the spatial axes of the input it comes from, if all are still there."""
        states = self.rf.get(tensor)
        if states is _UNKNOWN:
            return _UNKNOWN
        if not states:
            return None
        present = {s[:2]: s for s in states if s is not None and s[:2] in self.spatial_origins}
        inputs = {o[0] for o in present}
        if len(inputs) != 1 or set(present) != {o for o in self.spatial_origins if o[0] in inputs}:
            return None
        ss = [present[o] for o in sorted(present)]
        oks = [s[5] for s in ss]
        return ReceptiveField(tuple(s[2] for s in ss), tuple(s[3] for s in ss), tuple(s[4] for s in ss),
                              False if False in oks else None if None in oks else True)

    def _spatial_axes(self, tensor: str) -> tuple[int, ...]:
        states = self.rf.get(tensor)
        if not isinstance(states, tuple):
            return ()
        return tuple(i for i, s in enumerate(states) if s is not None and s[:2] in self.spatial_origins)

    def _spatial_extent(self, tensor: str) -> tuple[int | None, ...] | None:
        states = self.rf.get(tensor)
        shape = self.shape.get(tensor)
        if not isinstance(states, tuple) or shape is None:
            return None
        return tuple(self._size(shape, i, s) for i, s in enumerate(states)
                     if s is not None and s[:2] in self.spatial_origins)

    def _size(self, shape, axis: int, state) -> int | None:
        """A tensor's size along an axis, None when not inferred or when it follows from an input
        dim set to 1 by default (the state's origin axis)."""
        if state is not None and state[:2] in self.defaulted:
            return None
        return _dim(shape, axis)

    def _layer_outputs(self, layer: str) -> list[str]:
        """Tensors a layer hands to other layers or to the graph's outputs."""
        if not hasattr(self, "_outputs"):
            outputs: dict[str, list[str]] = {}
            succ = self.G.succ
            for nid, data in self.data_ops:
                own = self.layer_of[nid]
                used = {t for e in succ[nid].values() for t in e["tensors"]}
                for t in data["outputs"]:
                    if not _is_data(t) or t.name in self.const:
                        continue
                    if t.name not in used and used:
                        continue  # an output nothing reads beside one that is read (Dropout's mask)
                    consumers = [v for v, e in succ[nid].items() if t.name in e["tensors"]]
                    if not consumers or any(self.layer_of.get(v) != own for v in consumers):
                        outputs.setdefault(own, []).append(t.name)
            self._outputs = outputs
        return self._outputs.get(layer, [])

    def _layer_rf(self, layer: str) -> ReceptiveField | None | _Unknown:
        fields = [f for f in (self._spatial_rf(t) for t in self._layer_outputs(layer)) if f is not None]
        if not fields:
            return None
        if _UNKNOWN in fields:
            return _UNKNOWN
        if len(fields) == 1:
            return fields[0]
        if any(None in f.size for f in fields):
            return _UNKNOWN  # the largest of fields, some of them unknown
        return max(fields, key=lambda f: (prod(f.size), f.size))

    def _final_layer(self) -> tuple[str | None, str | None]:
        """(The last layer whose output still has spatial extent, whose field is the network's;
        None and the first later layer whose field or spatial size is not known, when there is one.)"""
        final = unknown = None
        for layer in self.L:
            if layer.startswith(("input:", "output:")):
                continue
            for t in self._layer_outputs(layer):
                field = self._spatial_rf(t)
                if field is None:
                    continue
                extent = None if field is _UNKNOWN else self._spatial_extent(t)
                if extent and any(e is not None and e > 1 for e in extent):
                    final, unknown = layer, None
                elif unknown is None and (extent is None or None in extent):
                    unknown = layer
        return (None, unknown) if unknown is not None else (final, None)

    # --- kernel stacks --------------------------------------------------------------------

    def _conv_geometry(self, layer: str):
        nid, data = self.kernel_op.get(layer, (None, None))
        if data is None or data["op_type"] != "Conv":
            return None
        w = data["inputs"][1]
        kernel = data["attrs"].get("kernel_shape") or (tuple(w.shape[2:]) if _concrete(w.shape) else None)
        if not kernel:
            return None
        n = len(kernel)
        dil = data["attrs"].get("dilations") or (1,) * n
        strides = tuple(data["attrs"].get("strides") or (1,) * n)
        return tuple(d * (k - 1) + 1 for k, d in zip(kernel, dil)), strides

    def _kernel_unknown(self, layer: str) -> bool:
        """A weighted conv layer whose kernel size is neither an attribute nor an inferred shape."""
        _, data = self.kernel_op.get(layer, (None, None))
        return data is not None and data["op_type"] == "Conv" and self._conv_geometry(layer) is None

    def _stacks(self) -> list[KernelStack]:
        link: dict[str, str] = {}
        for v in self.L:
            g = self._conv_geometry(v) if v in self.weighted else None
            if g is None or max(g[0]) == 1:
                continue
            u = v
            while True:
                preds = list(self.L.predecessors(u))
                if len(preds) != 1:
                    break
                u = preds[0]
                if u in self.weighted or any(d["op_type"] in WINDOW_OPS | GLOBAL_POOLS for _, d in self.ops_of.get(u, [])):
                    break
                if self._layer_rf(u) is _UNKNOWN:  # what it does to the spatial axes is not known
                    break
            gu = self._conv_geometry(u) if u in self.weighted and u != v else None
            if gu is not None and max(gu[0]) > 1:
                link[v] = u
        children: dict[str, list[str]] = {}
        for v, u in link.items():
            children.setdefault(u, []).append(v)
        out = []

        def walk(path):
            nxt = sorted(children.get(path[-1], []), key=self.rank.__getitem__)
            if not nxt:
                if len(path) >= 2:
                    geo = [self._conv_geometry(l) for l in path]
                    field = []
                    for axis in range(len(geo[0][0])):
                        r, j = 1, 1
                        for k, s in geo:
                            r += (k[axis] - 1) * j
                            j *= s[axis]
                        field.append(r)
                    out.append(KernelStack(tuple(path), tuple(k for k, _ in geo), tuple(s for _, s in geo), tuple(field)))
                return
            for n in nxt:
                walk(path + [n])

        for root in sorted(set(children) - set(link), key=self.rank.__getitem__):
            walk([root])
        return out

    # --- per-layer rows ---------------------------------------------------------------------

    def _layers(self, depth: dict[str, int]) -> list[Layer]:
        out = []
        for n in self.L:
            ops = self.ops_of.get(n, [])
            if n.startswith("input:"):
                kind = "input"
            elif n.startswith("output:"):
                kind = "output"
            elif n in self.weighted:
                kind = "weighted"
            elif self.L.in_degree(n) >= 2 or any(d["op_type"] in MERGE_OPS and len(self.data_inputs(d)) >= 2
                                                 for _, d in ops):
                kind = "merge"
            elif any(d["op_type"] in POOL_OPS or d["op_type"] in REDUCE_OPS for _, d in ops):
                kind = "pool"
            else:
                kind = "other"
            kernel = stride = None
            geo = self._conv_geometry(n) if n in self.weighted else None
            if geo:
                kernel, stride = geo
            else:
                for _, d in ops:
                    if d["op_type"] in ("MaxPool", "AveragePool", "LpPool") and d["attrs"].get("kernel_shape"):
                        kernel = tuple(d["attrs"]["kernel_shape"])
                        stride = tuple(d["attrs"].get("strides") or (1,) * len(kernel))
                        break
            outs = self._layer_outputs(n) if ops else []
            if n.startswith(("input:", "output:")):
                t = self.G.nodes[n]["tensor"]
                outs, shape = [t.name], t.shape
            else:  # the last output with a shape (not an unused Dropout mask)
                shape = next((self.shape[t] for t in reversed(outs) if self.shape.get(t) is not None),
                             self.shape.get(outs[-1]) if outs else None)
            rf = self._layer_rf(n) if ops else (self._spatial_rf(outs[0]) if outs else None)
            out.append(Layer(
                name=n, block=self.block_of.get(n, n), kind=kind,
                op_types=tuple(dict.fromkeys(d["op_type"] for _, d in ops)), macs=self._layer_macs([n]),
                kernel=kernel, stride=stride, depth=depth[n],
                predecessors=tuple(self.L.predecessors(n)), successors=tuple(self.L.successors(n)),
                output_shape="x".join("?" if not isinstance(d, int) else str(d) for d in shape) if shape else "",
                receptive_field=None if rf is _UNKNOWN else rf, field_unknown=rf is _UNKNOWN,
                spatial_axes=self._spatial_axes(outs[-1]) if outs else ()))
        return out


# --- helpers ----------------------------------------------------------------------------------

def _inferred(shape) -> bool:
    """Whether shape inference gave this shape: its rank and every dim. A symbolic dim of the
    file's is known; `unk__N` is the name onnx gives a dim it could not infer."""
    return shape is not None and not any(d is None or isinstance(d, str) and d.startswith("unk__") for d in shape)


def _concrete(shape) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def _axis_of(axis: int, rank: int | None) -> int | None:
    """An axis attribute made non-negative; None when that needs a rank not known."""
    if axis >= 0:
        return axis
    return None if rank is None else axis + rank


def _dim(shape, axis):
    if shape is None or axis is None or axis >= len(shape):
        return None
    d = shape[axis]
    return d if isinstance(d, int) else None


def _channel_axis(shape) -> int | None:
    """A graph input's channel axis: NCHW when the second dim is the smallest, else the last."""
    if shape is None or len(shape) < 2:
        return None
    if len(shape) == 4:
        return 1 if (_dim(shape, 1) or 1 << 30) < (_dim(shape, 3) or 1 << 30) else 3
    return len(shape) - 1


def _join(segs: tuple) -> tuple:
    out: list[tuple[str, int]] = []
    for s, n in segs:
        if out and out[-1][0] == s:
            out[-1] = (s, (out[-1][1] or 0) + (n or 0))
        else:
            out.append((s, n))
    return tuple(out)


def _cut(segs: tuple, start: int, length: int) -> tuple:
    out, pos = [], 0
    for s, n in segs:
        n = n or 0
        lo, hi = max(pos, start), min(pos + n, start + length)
        if hi > lo:
            out.append((s, hi - lo))
        pos += n
    return tuple(out)


def _map_axis(in_shape, out_shape, axis) -> int | None:
    """Where a reshape puts an input axis, if it survives whole (same size, same elements before it)."""
    if axis is None or in_shape is None or out_shape is None:
        return None
    if not all(isinstance(d, int) for d in in_shape) or not all(isinstance(d, int) for d in out_shape):
        return None
    before = prod(in_shape[:axis])
    for k in range(len(out_shape)):
        if prod(out_shape[:k]) == before and out_shape[k] == in_shape[axis]:
            return k
    return None


def _map_states(in_shape, out_shape, states):
    if out_shape is None:
        return None
    out = [None] * len(out_shape)
    for a, s in enumerate(states):
        if s is None:
            continue
        k = _map_axis(in_shape, out_shape, a)
        if k is not None and out[k] is None:
            out[k] = s
    return tuple(out)


def _step(s, kernel: int | None, stride: int | None, begin: int | None):
    """One more window on an axis: field size r + (k - 1) j, stride j s, padding p + b j (None
    wherever a term is not known)."""
    origin, axis, r, j, p, ok = s
    return (origin, axis, None if r is None or kernel is None or j is None else r + (kernel - 1) * j,
            None if j is None or stride is None else j * stride,
            None if p is None or begin is None or j is None else p + begin * j, ok)


def _shift(s, begin: int | None):
    """Padding of `begin` input steps before an axis (None: not known)."""
    origin, axis, r, j, p, ok = s
    return (origin, axis, r, j, None if p is None or begin is None or j is None else p + begin * j, ok)


def _crop(s, start: int | None):
    if s is None or start == 0:
        return s
    return _shift(s, None if start is None else -start)


def _merge(states: list):
    """Several paths meet: keep the largest field (and its stride and padding); aligned only if
    every path has the same stride and the same centre, (size - 1) / 2 - padding. A figure that
    depends on one not known is None."""
    if any(s is None for s in states):
        return None
    if len({s[:2] for s in states}) != 1:
        return None
    if len(set(states)) == 1:
        return states[0]
    oks = [s[5] for s in states]
    if all(None not in s[2:5] for s in states):
        best = max(states, key=lambda s: (s[2], -s[4]))
        same = len({s[3] for s in states}) == 1 and len({(s[2] - 1) / 2 - s[4] for s in states}) == 1
        return best[:5] + (False if not same or False in oks else None if None in oks else True,)
    sizes = [s[2] for s in states]
    r = None if None in sizes else max(sizes)
    top = states if r is None else [s for s in states if s[2] == r]
    j = top[0][3] if len({s[3] for s in top}) == 1 else None
    p = min(s[4] for s in top) if r is not None and None not in (s[4] for s in top) else None
    strides = {s[3] for s in states}
    ok = False if False in oks or (None not in strides and len(strides) > 1) else None
    return (states[0][0], states[0][1], r, j, p, ok)
