"""From ONNX node names back to framework layers and the paper's blocks. archkit.costs uses it to
roll per-op rows up into layers and blocks; it reads names only (strings in, strings out), never
the graph.

Exporters keep the layer name as one component of the node's scope path, often with a
uniquifying suffix: tf2onnx writes `baseline_cnn_1/FC1_1/MatMul` for Keras layer `FC1`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A PyTorch scope's (module path components, layer name, its block, whether deeper scopes share that block)
_TorchScope = tuple[tuple[str, ...], "str | None", "str | None", bool]

_SUFFIX = re.compile(r"^(.*)_\d+$")


class LayerResolver:
    """Maps node names to known layer names; None when no scope component names a layer."""

    def __init__(self, layers: Iterable[str]) -> None:
        self.layers = frozenset(layers)

    def __call__(self, node_name: str) -> str | None:
        # Innermost scope first: nested models put the outer model's name first.
        for part in reversed(node_name.split("/")[:-1] or [node_name]):
            # tf2onnx adds one `_N` to each scope; try that reading before the literal one,
            # so that layer `conv2d` (scope `conv2d_1`) is not taken for a layer `conv2d_1`.
            m = _SUFFIX.match(part)
            if m and m.group(1) in self.layers:
                return m.group(1)
            if part in self.layers:
                return part
        return None


def scope_of(node_name: str) -> str | None:
    """For files without layer metadata: the node's scope path (all but the last component)."""
    parts = node_name.split("/")
    return "/".join(parts[:-1]) if len(parts) > 1 else None


# --- third-party files: layers and blocks from the exporter's name scopes ----------------

# Module attributes that only hold other modules: a block is named below them.
_CONTAINERS = frozenset({
    "features", "encoder", "decoder", "layers", "layer", "blocks", "block", "backbone", "model", "module",
    "base_model", "body", "trunk", "stages", "net", "network", "transformer", "h", "bert", "roberta", "vit",
})
# Keras application naming: conv2_block1_1_conv, block1a_dwconv (EfficientNet), block_1_expand (MobileNetV2).
_KERAS_BLOCK = re.compile(r"^(.*?block_?\d+[a-z]?)(?:_|$)")


def torch_layer(node_name: str) -> str | None:
    """PyTorch's exporter writes the module path as scopes, one per module, in which a child of a
    Sequential repeats its parent's scope (`/layer1/layer1.0/conv1/Conv` is module
    `layer1.0.conv1`, `.../downsample/downsample.0/Conv` is `...downsample.0`). None at the root."""
    comps: list[str] = []
    for p in node_name.split("/")[1:-1]:
        if not p:
            continue
        if comps and p.startswith(comps[-1] + "."):
            comps[-1] = p
        else:
            comps.append(p)
    return ".".join(comps) or None


def torch_block(layer: str) -> str:
    """The paper-level unit a module belongs to: below leading containers (`features`, `encoder`,
    `layers`, ...), the first named module, with the index that follows it if any
    (`layer1.0.conv1` → `layer1.0`; `features.denseblock1.denselayer2.conv1` → `features.denseblock1`;
    `features.3.conv.0` → `features.3`; `Mixed_5b.branch1x1.conv` → `Mixed_5b`)."""
    comps = layer.split(".")
    i = 0
    while i < len(comps) - 1 and comps[i] in _CONTAINERS:
        i += 1
    if i + 1 < len(comps) and comps[i + 1].isdigit() and not comps[i].isdigit():
        i += 1
    return ".".join(comps[: i + 1])


def _torch_block_settled(layer: str) -> tuple[str, bool]:
    """torch_block, and whether every module below `layer` has the same block (the container
    walk stopped on a named module, and the index that may follow it is known or cannot come:
    deeper paths cannot move it)."""
    comps = layer.split(".")
    i = 0
    while i < len(comps) - 1 and comps[i] in _CONTAINERS:
        i += 1
    settled = comps[i] not in _CONTAINERS and (i + 1 < len(comps) or comps[i].isdigit())
    if i + 1 < len(comps) and comps[i + 1].isdigit() and not comps[i].isdigit():
        i += 1
    return ".".join(comps[: i + 1]), settled


def keras_block(layer: str) -> str:
    """tf2onnx keeps Keras layer names as scopes; Keras applications name blocks inside them
    (`model/conv2_block1_1_conv` → `model/conv2_block1`; the innermost scope that names a block
    wins). Other names are their own block."""
    parts = layer.split("/")
    for i in range(len(parts) - 1, -1, -1):
        m = _KERAS_BLOCK.match(parts[i])
        if m:
            return "/".join(parts[:i] + [m.group(1)])
    return layer


# Scopes TensorFlow opens inside a Keras layer (BatchNormalization folded by tf2onnx leaves
# `conv1_bn/batchnorm/add_1`): not layers of their own.
_TF_INNER = frozenset({"batchnorm"})


def tf_layer(node_name: str) -> str | None:
    scope = scope_of(node_name)
    while scope and scope.rpartition("/")[2] in _TF_INNER and "/" in scope:
        scope = scope.rpartition("/")[0]
    return scope


class ScopeNames:
    """Layer and block of each node of a file without archkit's layer metadata.

    PyTorch-style names (leading `/`) give dotted module paths; other scoped names (tf2onnx's
    `model/conv2_block1_1_conv/Conv2D`) give the scope path; unscoped names give None (the op
    then joins a neighbour's layer)."""

    def __init__(self) -> None:
        self._torch: dict[str, _TorchScope] = {"/": ((), None, None, False)}  # by scope "/a/b/"
        self._blocks: dict[str, str | None] = {}  # layer → block, as the scopes gave them

    def layer(self, node_name: str) -> str | None:
        if node_name[:1] == "/":
            return self._torch_scope(node_name[:node_name.rfind("/") + 1])[1]
        return tf_layer(node_name)

    def _torch_scope(self, scope: str) -> _TorchScope:
        """torch_layer and torch_block for a scope ending in "/", memoised on the parent scope
        (siblings share their parent: one step per scope instead of parsing every op's name)."""
        entry = self._torch.get(scope)
        if entry is None:
            cut = scope.rfind("/", 0, len(scope) - 1)
            comps, layer, block, settled = self._torch_scope(scope[:cut + 1])
            p = scope[cut + 1:-1]
            if p:
                if comps and p.startswith(comps[-1] + "."):
                    comps = comps[:-1] + (p,)
                    layer = ".".join(comps)
                else:
                    comps = comps + (p,)
                    layer = f"{layer}.{p}" if layer else p
                if not settled:
                    block, settled = _torch_block_settled(layer)
                self._blocks[layer] = block
            entry = self._torch[scope] = (comps, layer, block, settled)
        return entry

    def block(self, layer: str) -> str:
        known = self._blocks.get(layer)
        if known is not None:
            return known
        if "/" not in layer and "." in layer:
            return torch_block(layer)
        return keras_block(layer)

    def layer_and_block(self, node_name: str) -> tuple[str | None, str | None]:
        """Both at once (PyTorch scopes: from the memo, no second parse)."""
        if node_name[:1] == "/":
            _, layer, block, _ = self._torch_scope(node_name[:node_name.rfind("/") + 1])
            return layer, block
        layer = tf_layer(node_name)
        return layer, (None if layer is None else self.block(layer))
