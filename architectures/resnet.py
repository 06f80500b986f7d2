"""ResNet (He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition"), Table 1.

One stage list drives all five depths: Table 1's rows are STAGES (conv2_x ... conv5_x), its
columns are DEPTHS (block kind and blocks per stage). Layer names are keras.applications'
(`conv1_conv`, `conv2_block1_1_conv`, ..., `predictions`); a block's convolutions are numbered
as in Keras: `_0_` the projection shortcut, `_1_`, `_2_` (, `_3_`) the residual branch.

Two variants, one table row each (VARIANTS):
  v1    the paper and keras.applications.ResNet50/101/152: the stride of a bottleneck block
        sits on its first 1x1 conv, every conv has a bias (redundant before BatchNorm, but
        Keras has it), BatchNorm epsilon 1.001e-5.
  v1.5  torchvision.models.resnet*: the stride sits on the 3x3 conv (padded 1 on each side, as
        PyTorch does), no conv bias, epsilon 1e-5. Same parameter count as v1 less the conv
        biases; more MACs for the bottleneck nets (the first 1x1 runs at the higher resolution).

ResNet-18/34 are not in keras.applications; they follow torchvision's BasicBlock: two 3x3
convs, identity shortcut where the shape is unchanged, else a projection (1x1 conv with the
block's stride + BN: the paper's option B). For basic blocks v1 and v1.5 differ only in conv
biases (the stride is on the first 3x3 in both).

Deviations from the paper, all shared with keras.applications and torchvision:
- Option B shortcuts everywhere (projection only when the shape changes), as torchvision. The
  paper uses B for 50/101/152; its ResNet-18/34 of Table 2 use option A (zero-padded identity
  shortcuts, no parameters), which saves the three projections' 19,267,584 MACs and 172,032 weights.
- The 1000-way softmax follows global average pooling directly (Table 1's last row).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from architectures import Architecture, PublishedField, Reference, register

PAPER = "He, Zhang, Ren, Sun: Deep Residual Learning for Image Recognition (arXiv:1512.03385), Table 1"


class Stage(NamedTuple):
    """A row of Table 1: the stage name (Keras prefix), its width and the first block's stride."""

    name: str
    width: int  # maps of the 3x3 convs; a bottleneck block outputs EXPANSION[kind] * width
    stride: int


#        name     width stride     # output at 224x224 (Table 1's "output size")
STAGES = (
    Stage("conv2", 64, 1),      # 56x56 (after the 3x3/2 max pool)
    Stage("conv3", 128, 2),     # 28x28
    Stage("conv4", 256, 2),     # 14x14
    Stage("conv5", 512, 2),     # 7x7
)


class Depth(NamedTuple):
    """A column of Table 1: the block kind and how many blocks each stage stacks."""

    kind: str  # "basic": [3x3, 3x3]; "bottleneck": [1x1, 3x3, 1x1 (x4)]
    blocks: tuple[int, int, int, int]


DEPTHS = {
    18: Depth("basic", (2, 2, 2, 2)),
    34: Depth("basic", (3, 4, 6, 3)),
    50: Depth("bottleneck", (3, 4, 6, 3)),
    101: Depth("bottleneck", (3, 4, 23, 3)),
    152: Depth("bottleneck", (3, 8, 36, 3)),
}

EXPANSION = {"basic": 1, "bottleneck": 4}


class Variant(NamedTuple):
    conv_bias: bool
    strided_conv: str  # which conv of a bottleneck block carries the stride: "1x1" or "3x3"
    bn_epsilon: float


VARIANTS = {
    "v1": Variant(conv_bias=True, strided_conv="1x1", bn_epsilon=1.001e-5),    # paper, keras.applications
    "v1.5": Variant(conv_bias=False, strided_conv="3x3", bn_epsilon=1e-5),     # torchvision
}


# --- building blocks: tensor → tensor, deterministic names ---------------------------------

def _conv_bn(x, filters, size, *, stride, name, variant, relu):
    """`{name}_conv` → `{name}_bn` (→ `{name}_relu`). A strided 3x3 is padded 1 on each side
    (`{name}_pad`), as PyTorch does; Keras' "same" would pad (0, 1) at even sizes."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    padding = "valid" if size == 1 else "same"
    if size > 1 and stride > 1:
        x = layers.ZeroPadding2D(size // 2, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(filters, size, strides=stride, padding=padding, use_bias=variant.conv_bias,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(axis=-1, epsilon=variant.bn_epsilon, name=f"{name}_bn")(x)
    if relu:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    return x


def _residual(x, shortcut, name):
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def _shortcut(x, filters, *, stride, name, variant):
    """Identity, or the projection (option B) when the block changes the shape."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(x, filters, 1, stride=stride, name=f"{name}_0", variant=variant, relu=False)


def basic_block(x, width, *, stride, name, variant):
    """[3x3, width; 3x3, width] + shortcut (torchvision's BasicBlock)."""
    shortcut = _shortcut(x, width, stride=stride, name=name, variant=variant)
    x = _conv_bn(x, width, 3, stride=stride, name=f"{name}_1", variant=variant, relu=True)
    x = _conv_bn(x, width, 3, stride=1, name=f"{name}_2", variant=variant, relu=False)
    return _residual(x, shortcut, name)


def bottleneck_block(x, width, *, stride, name, variant):
    """[1x1, width; 3x3, width; 1x1, 4 width] + shortcut (keras' residual_block_v1)."""
    first, middle = (stride, 1) if variant.strided_conv == "1x1" else (1, stride)
    shortcut = _shortcut(x, EXPANSION["bottleneck"] * width, stride=stride, name=name, variant=variant)
    x = _conv_bn(x, width, 1, stride=first, name=f"{name}_1", variant=variant, relu=True)
    x = _conv_bn(x, width, 3, stride=middle, name=f"{name}_2", variant=variant, relu=True)
    x = _conv_bn(x, EXPANSION["bottleneck"] * width, 1, stride=1, name=f"{name}_3", variant=variant, relu=False)
    return _residual(x, shortcut, name)


BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def resnet(*, depth: int, input_shape=(224, 224, 3), classes=1000, variant="v1"):
    """ResNet-`depth` (18, 34, 50, 101, 152) as in Table 1; `variant` "v1" (paper, Keras) or "v1.5"."""
    import keras  # heavy: the registry loads without TensorFlow
    from keras import layers  # heavy: the registry loads without TensorFlow

    if depth not in DEPTHS:
        raise ValueError(f"resnet: depth {depth!r} is not in Table 1; choose one of {sorted(DEPTHS)}")
    if variant not in VARIANTS:
        raise ValueError(f"resnet: variant {variant!r} unknown; choose one of {sorted(VARIANTS)}")
    spec, v = DEPTHS[depth], VARIANTS[variant]
    block = BLOCKS[spec.kind]

    x = inputs = keras.Input(shape=input_shape, name="image")                       # 224x224x3
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, use_bias=v.conv_bias, name="conv1_conv")(x)   # 112x112x64
    x = layers.BatchNormalization(axis=-1, epsilon=v.bn_epsilon, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)                       # 56x56x64
    for stage, blocks in zip(STAGES, spec.blocks):  # conv2_x 56x56, conv3_x 28x28, conv4_x 14x14, conv5_x 7x7
        for i in range(1, blocks + 1):
            x = block(x, stage.width, stride=stage.stride if i == 1 else 1,
                      name=f"{stage.name}_block{i}", variant=v)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)                             # 512 or 2048
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)      # 1000
    suffix = "" if variant == "v1" else "_" + variant.replace(".", "_")
    return keras.Model(inputs, outputs, name=f"resnet{depth}{suffix}")


# --- registry ------------------------------------------------------------------------------

def block_of(layer: str) -> str:
    """`conv2_block1_1_conv` → `conv2_block1`; `conv1_*` → conv1; `pool1_*` → pool1; head → fc."""
    head = layer.split("_")
    if len(head) >= 2 and head[1].startswith("block"):
        return f"{head[0]}_{head[1]}"
    if head[0] in ("conv1", "pool1"):
        return head[0]
    if layer in ("avg_pool", "predictions"):
        return "fc"
    return layer


def stage_of(layer: str) -> str:
    """The row of Table 1 a layer belongs to: conv1, conv2_x (with the max pool) ... conv5_x, fc."""
    block = block_of(layer)
    if block == "pool1":
        return "conv2_x"
    if "_block" in block:
        return block.split("_")[0] + "_x"
    return block


def conv_biases(depth: int) -> int:
    """How many conv biases v1 has and v1.5 lacks (one per output map of every conv)."""
    spec, maps = DEPTHS[depth], 64
    total = maps  # conv1
    for stage, blocks in zip(STAGES, spec.blocks):
        out = EXPANSION[spec.kind] * stage.width
        branch = (stage.width, out) if spec.kind == "basic" else (stage.width, stage.width, out)
        total += blocks * sum(branch)  # the residual branch's convs
        if stage.stride != 1 or maps != out:
            total += out  # the projection shortcut of the stage's first block
        maps = out
    return total


def v1_5_extra_macs(depth: int, size: int = 224) -> int:
    """MACs v1.5 adds to v1: each strided stage's first 1x1 conv runs before the stride, not after."""
    spec = DEPTHS[depth]
    if spec.kind == "basic":
        return 0
    res, maps, extra = size // 4, 64, 0
    for stage in STAGES:
        low = res // stage.stride
        extra += (res * res - low * low) * maps * stage.width
        res, maps = low, EXPANSION[spec.kind] * stage.width
    return extra


TV = "torchvision.models.{name}, Weights.meta"


class _Published(NamedTuple):
    depth: int
    paper_gmacs: float                     # Table 1, "FLOPs" (x10^9; multiply-adds)
    v1_macs: int                           # [count], v1 at 224x224
    keras: tuple[int, int, int] | None     # keras.applications total, trainable, non-trainable
    tv_params: int                         # torchvision num_params (v1.5)
    tv_gmacs: float                        # torchvision _ops (v1.5), 3 decimals


PUBLISHED = (
    _Published(18, 1.8, 1_814_073_344, None, 11_689_512, 1.814),
    _Published(34, 3.6, 3_663_761_408, None, 21_797_672, 3.664),
    _Published(50, 3.8, 3_857_973_248, (25_636_712, 25_583_592, 53_120), 25_557_032, 4.089),
    _Published(101, 7.6, 7_570_194_432, (44_707_176, 44_601_832, 105_344), 44_549_160, 7.801),
    _Published(152, 11.3, 11_282_415_616, (60_419_944, 60_268_520, 151_424), 60_192_808, 11.514),
)

PAPER_NOTE = {
    18: "counted with option B projections; the paper's ResNet-18 (Table 2) has option A shortcuts, "
        "without the three projection convs (19,267,584 MACs): 1,794,805,760, which rounds to 1.8",
    34: "counted with option B projections; the paper's ResNet-34 (Table 2) has option A shortcuts, "
        "without the three projection convs (19,267,584 MACs): 3,644,493,824, which rounds to 3.6",
    50: "3.858 x10^9 rounds to 3.9, not Table 1's 3.8; keras.applications and torchvision's v1.5 "
        "(4.089) are no closer. The difference is within one unit of the printed digit",
    101: "rounds to Table 1's figure",
    152: "rounds to Table 1's figure",
}

# Depths whose count does not round to Table 1's digit (PAPER_NOTE says why).
PAPER_DIFFERS = frozenset({34, 50})

# References that torchvision's v1.5 reproduces (variant="v1.5"), not the default v1.
V1_5_REFERENCES: dict[int, tuple[Reference, ...]] = {}


def _references(p: _Published) -> tuple[Reference, ...]:
    name = f"resnet{p.depth}"
    refs = [
        Reference("macs", p.v1_macs, "[count] v1 at 224x224 (stride on a bottleneck's first 1x1, as in the paper "
                  "and Keras): Conv + Dense MACs, layer by layer"),
        Reference("macs", round(p.paper_gmacs * 1e9), f"[paper] {PAPER}, 'FLOPs' (multiply-adds)", PAPER_NOTE[p.depth],
                  rounding=1e8, expected=p.v1_macs if p.depth in PAPER_DIFFERS else None),
    ]
    if p.keras:
        total, trainable, non_trainable = p.keras
        src = f"[keras] keras.applications.ResNet{p.depth}(weights=None)"
        refs += [Reference("params", total, src), Reference("trainable", trainable, src),
                 Reference("non_trainable", non_trainable, src, "BatchNorm moving mean and variance")]
    tv = "[tv] " + TV.format(name=name)
    v15 = f"torchvision's {name} is v1.5, reproduced exactly by variant='v1.5'"
    extra = v1_5_extra_macs(p.depth)
    tv_refs = (
        # expected: what the default, v1, counts: its conv biases, and without v1.5's later bottleneck stride
        Reference("trainable", p.tv_params, tv + "['num_params']",
                  f"{v15}: no conv bias (v1 has {conv_biases(p.depth):,})",
                  expected=p.tv_params + conv_biases(p.depth)),
        Reference("macs", round(p.tv_gmacs * 1e9), tv + "['_ops'] (GMACs)",
                  f"{v15}: stride on the 3x3 of a bottleneck block (+{extra:,} MACs)" if extra
                  else f"{v15}: v1 and v1.5 basic blocks differ only in conv biases", rounding=1e6,
                  expected=p.v1_macs if extra else None),
    )
    V1_5_REFERENCES[p.depth] = tv_refs
    return tuple(refs) + tv_refs


SLIM_RESNET_NOTE = (
    "Which ResNet: the table measures TF-slim's resnet_v1, which puts each stage's stride 2 in the *last* unit of "
    "blocks 1-3 (on its 3x3 conv) and pads stride-2 convs explicitly; its block1..block4 end-points therefore have "
    "strides 8/16/32/32. archkit counts the paper's and keras.applications' v1 (stride on the first 1x1 of the "
    "first block of conv3_x..conv5_x, padding as Keras), so its stage ends have strides 4/8/16/32. The sizes agree "
    "at every stage end (a stride on a block's last 3x3 does not widen that block's own output field) and so does "
    "the stride at the end, 32; effective paddings differ by 2, from Keras' ZeroPadding + VALID against slim's "
    "padding of its strided convs.")
# google-research/receptive_field's table: resnet_v1_<depth> block1..block4 as (size, stride, padding).
SLIM_FIELDS = {
    50: ((35, 8, 15), (99, 16, 47), (291, 32, 143), (483, 32, 239)),
    101: ((35, 8, 15), (99, 16, 47), (835, 32, 415), (1027, 32, 511)),
    152: ((35, 8, 15), (163, 16, 79), (1315, 32, 655), (1507, 32, 751)),
}


def _receptive_fields(depth: int) -> tuple[PublishedField, ...]:
    """TF-slim's stage ends, at the last block of each of archkit's stages."""
    return tuple(PublishedField(f"conv{i + 2}_block{n}_out", f"resnet_v1_{depth}", f"resnet_v1_{depth}/block{i + 1}",
                                size, stride, pad, SLIM_RESNET_NOTE)
                 for i, (n, (size, stride, pad)) in enumerate(zip(DEPTHS[depth].blocks, SLIM_FIELDS.get(depth, ()))))


for _p in PUBLISHED:
    _kind = DEPTHS[_p.depth].kind
    register(Architecture(
        name=f"resnet{_p.depth}",
        family="resnet",
        builder=functools.partial(resnet, depth=_p.depth),
        paper=PAPER,
        description=(f"ResNet-{_p.depth}: {_kind} blocks {'-'.join(map(str, DEPTHS[_p.depth].blocks))} "
                     f"per stage; v1 (stride on the first 1x1, conv bias) by default, variant='v1.5' "
                     f"gives torchvision's."),
        defaults={"input_shape": (224, 224, 3), "classes": 1000, "variant": "v1"},
        references=_references(_p),
        block_of=block_of,
        receptive_fields=_receptive_fields(_p.depth),
        notes=(
            "Blocks are residual blocks (conv2_block1 ...); stage_of() groups them into Table 1's rows.",
            "Shortcuts: identity, or a 1x1 projection + BN when the shape changes (option B).",
            ("v1 keeps Keras' conv biases (each is redundant before the BatchNorm that follows). In the "
             "ONNX export a v1 BatchNorm stays a Mul and an Add after its conv; v1.5's convs have no "
             "bias and tf2onnx folds each BatchNorm into its conv."),
        ),
    ))
