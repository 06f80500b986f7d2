"""DenseNet-BC (Huang, Liu, van der Maaten, Weinberger 2016, "Densely Connected Convolutional
Networks"), Table 1: the ImageNet DenseNets 121, 169 and 201.

One stage list per depth (dense layers per dense block) drives all three; growth rate k = 32,
bottleneck width bn_size * k = 128 ("DenseNet-B"), compression θ = 0.5 at each transition
("-C"), a 2k = 64-map stem. Layer names are keras.applications' (`conv1_conv`,
`conv2_block1_1_conv`, `pool2_conv`, ..., `bn`, `predictions`): dense block i is Keras stage
`conv{i+1}`, transition i is `pool{i+1}`. Blocks follow the rows of Table 1: conv1, pool1,
dense_block1, transition1, ..., dense_block4, classification.

A dense layer is BN-ReLU-Conv(1x1, 4k)-BN-ReLU-Conv(3x3, k), concatenated to its input; a
transition is BN-ReLU-Conv(1x1, θ·m)-AvgPool(2x2/2). No conv has a bias. Counts equal
keras.applications.DenseNet121/169/201 and, for learnable parameters, torchvision's densenet*.

Deviations:
- The two ZeroPadding2D layers Keras leaves auto-named (`zero_padding2d`, `zero_padding2d_1`)
  are named `conv1_pad` and `pool1_pad` here, so names do not depend on what was built before.
- Keras and torchvision place a final BN-ReLU (`bn`, `relu`; torchvision's norm5) before the
  global average pool; Table 1 does not list it. Kept, as both reference implementations have it.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from architectures import Architecture, Reference, register

PAPER = ("Huang, Liu, van der Maaten, Weinberger: Densely Connected Convolutional Networks "
         "(arXiv:1608.06993), Table 1")


class DenseNetSpec(NamedTuple):
    blocks: tuple[int, int, int, int]  # dense layers in dense blocks 1-4
    growth_rate: int = 32              # k: maps each dense layer adds
    bn_size: int = 4                   # the 1x1 bottleneck outputs bn_size * k maps
    compression: float = 0.5           # θ: a transition keeps θ·m of its m maps
    stem: int = 64                     # maps of the 7x7/2 stem conv (2k)


DEPTHS = {
    121: DenseNetSpec((6, 12, 24, 16)),
    169: DenseNetSpec((6, 12, 32, 32)),
    201: DenseNetSpec((6, 12, 48, 32)),
}

BN_EPSILON = 1.001e-5  # keras.applications'; torchvision uses 1e-5 (no effect on counts)


def _bn_relu(x, name):
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def dense_layer(x, *, growth_rate, bn_size, name):
    """BN-ReLU-1x1(bn_size·k)-BN-ReLU-3x3(k), concatenated to the input: m → m + k maps."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    y = _bn_relu(x, f"{name}_0")
    y = layers.Conv2D(bn_size * growth_rate, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = _bn_relu(y, f"{name}_1")
    y = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def dense_block(x, layers_in_block, *, growth_rate, bn_size, name):
    for i in range(1, layers_in_block + 1):
        x = dense_layer(x, growth_rate=growth_rate, bn_size=bn_size, name=f"{name}_block{i}")
    return x


def transition(x, *, compression, name):
    """BN-ReLU-1x1 conv to θ·m maps, then 2x2 average pooling, stride 2."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = _bn_relu(x, name)
    x = layers.Conv2D(int(x.shape[-1] * compression), 1, use_bias=False, name=f"{name}_conv")(x)
    return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)


def densenet(*, depth: int, input_shape=(224, 224, 3), classes=1000):
    """DenseNet-`depth` (121, 169, 201) as in Table 1."""
    import keras  # heavy: the registry loads without TensorFlow
    from keras import layers  # heavy: the registry loads without TensorFlow

    if depth not in DEPTHS:
        raise ValueError(f"densenet: depth {depth!r} is not in Table 1; choose one of {sorted(DEPTHS)}")
    spec = DEPTHS[depth]
    grow = {"growth_rate": spec.growth_rate, "bn_size": spec.bn_size}

    x = inputs = keras.Input(shape=input_shape, name="image")                       # 224x224x3
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = layers.Conv2D(spec.stem, 7, strides=2, use_bias=False, name="conv1_conv")(x)  # 112x112x64
    x = _bn_relu(x, "conv1")
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)                            # 56x56x64
    last = len(spec.blocks)
    for i, n in enumerate(spec.blocks, start=1):
        # dense block i: 56x56, 28x28, 14x14, 7x7; maps m → m + n·k (121: 256, 512, 1024, 1024)
        x = dense_block(x, n, name=f"conv{i + 1}", **grow)
        if i < last:  # transition i halves the maps and the resolution (121: 128, 256, 512)
            x = transition(x, compression=spec.compression, name=f"pool{i + 1}")
    x = layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, name="bn")(x)          # 7x7x1024 (121)
    x = layers.Activation("relu", name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(classes, activation="softmax", name="predictions")(x)      # 1000
    return keras.Model(inputs, outputs, name=f"densenet{depth}")


# --- registry ------------------------------------------------------------------------------

def block_of(layer: str) -> str:
    """Keras stage prefix → Table 1's row: conv2_* → dense_block1, pool2_* → transition1, ..."""
    head = layer.split("_")[0]
    if head in ("conv1", "pool1"):
        return head
    if head[:4] in ("conv", "pool") and head[4:].isdigit():
        return f"{'dense_block' if head.startswith('conv') else 'transition'}{int(head[4:]) - 1}"
    if layer in ("bn", "relu", "avg_pool", "predictions"):
        return "classification"
    return layer


def _paper_table(depth: int) -> tuple[dict, ...]:
    """Table 1's rows for one depth: output size at 224x224 and the layer description."""
    spec = DEPTHS[depth]
    rows = [
        {"block": "conv1", "layers": "Convolution", "output": "112x112", "spec": "7x7 conv, stride 2"},
        {"block": "pool1", "layers": "Pooling", "output": "56x56", "spec": "3x3 max pool, stride 2"},
    ]
    size = 56
    for i, n in enumerate(spec.blocks, start=1):
        rows.append({"block": f"dense_block{i}", "layers": f"Dense Block ({i})", "output": f"{size}x{size}",
                     "spec": f"[1x1 conv, 3x3 conv] x {n}"})
        if i < len(spec.blocks):
            rows.append({"block": f"transition{i}", "layers": f"Transition Layer ({i})",
                         "output": f"{size // 2}x{size // 2}", "spec": "1x1 conv; 2x2 average pool, stride 2"})
            size //= 2
    rows.append({"block": "classification", "layers": "Classification Layer", "output": "1x1",
                 "spec": "7x7 global average pool; 1000D fully-connected, softmax",
                 "note": "Keras and torchvision put a BN-ReLU (`bn`, `relu`) before the pool; Table 1 omits it"})
    return tuple(rows)


class _Published(NamedTuple):
    depth: int
    keras: tuple[int, int, int]  # keras.applications total, trainable, non-trainable
    macs: int                    # [count] Conv + Dense MACs of keras.applications at 224x224
    tv_gmacs: float              # torchvision _ops, as published
    tv_rounding: float


PUBLISHED = (
    _Published(121, (8_062_504, 7_978_856, 83_648), 2_834_161_664, 2.834, 1e6),
    _Published(169, (14_307_880, 14_149_480, 158_400), 3_359_843_328, 3.36, 1e7),
    _Published(201, (20_242_984, 20_013_928, 229_056), 4_291_365_888, 4.291, 1e6),
)


def _references(p: _Published) -> tuple[Reference, ...]:
    total, trainable, non_trainable = p.keras
    keras_src = f"[keras] keras.applications.DenseNet{p.depth}(weights=None)"
    tv_src = f"[tv] torchvision.models.densenet{p.depth}, Weights.meta"
    return (
        Reference("params", total, keras_src),
        Reference("trainable", trainable, keras_src),
        Reference("non_trainable", non_trainable, keras_src, "BatchNorm moving mean and variance"),
        Reference("trainable", trainable, tv_src + "['num_params']", "torchvision counts learnable parameters"),
        Reference("macs", p.macs, "[count] Conv + Dense MACs of keras.applications at 224x224, counted layer by layer"),
        Reference("macs", round(p.tv_gmacs * 1e9), tv_src + "['_ops'] (GMACs)", rounding=p.tv_rounding),
    )


for _p in PUBLISHED:
    register(Architecture(
        name=f"densenet{_p.depth}",
        family="densenet",
        builder=functools.partial(densenet, depth=_p.depth),
        paper=PAPER,
        description=(f"DenseNet-BC-{_p.depth}: dense blocks of {'-'.join(map(str, DEPTHS[_p.depth].blocks))} "
                     "layers, k = 32, 1x1 bottleneck 4k, compression 0.5."),
        defaults={"input_shape": (224, 224, 3), "classes": 1000},
        references=_references(_p),
        block_of=block_of,
        paper_table=_paper_table(_p.depth),
        notes=(("The paper gives params and FLOPs only in a figure; the references are keras.applications "
                "and torchvision, which agree with each other."),),
    ))
