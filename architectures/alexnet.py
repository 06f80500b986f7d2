"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, "ImageNet Classification with Deep Convolutional
Neural Networks"), Section 3 and Figure 2, and torchvision's one-tower variant.

The paper trains on two GPUs, each holding half of every layer's kernels (a "tower"). conv2,
conv4 and conv5 read only the maps of their own tower; conv3 and the fully-connected layers read
both. A conv whose kernels each see half of the input maps is a grouped convolution with two
groups: its kernel is (k, k, C/2, M), as in Caffe's bvlc_alexnet (`group: 2`).

Layer names are Caffe's (conv1, norm1, pool1, ..., fc6, drop6, fc7, drop7, fc8); the ReLU after
every conv and FC layer is the layer's activation. Blocks: conv1 ... conv5 (each with its
normalisation and pooling), fc6 (with the flatten), fc7, fc8.

Deviations and choices, written where they matter:
- Input 227x227x3. The paper says 224x224, but an 11x11 stride-4 conv without padding yields its
  55x55 maps only from 227 (a known erratum; Caffe uses 227).
- Grouped convolution (GroupedConv2D): Keras' Conv2D(groups=2) runs through an XLA-compiled
  function on CPU, which tf2onnx cannot convert (it leaves a StatefulPartitionedCall); TensorFlow's own
  grouped Conv2D works only with oneDNN enabled (the fused conv kernel refuses groups). So a
  GroupedConv2D holds one (k, k, C/2, M) kernel, like Conv2D(groups=2), and computes the two
  towers explicitly: split the input maps, one Conv2D per tower, concatenate. The ONNX file has
  Split → Conv, Conv → Concat per grouped layer; parameters and MACs are those of one grouped conv.
- Local response normalisation (norm1, norm2) as the paper's formula, k = 2, n = 5, α = 1e-4,
  β = 0.75, via tf.nn.local_response_normalization; it exports as ONNX LRN between two
  Transposes. The sum runs over the 5 neighbouring maps of the whole layer (the paper's N is
  "the total number of kernels in the layer"; Caffe does the same); a normalisation done on
  each GPU separately would differ only at the two maps next to the tower boundary.
- The final 1000-way softmax is fc8's activation. Dropout (0.5) is a no-op at inference.

torchvision's alexnet ("one weird trick", Krizhevsky 2014): one tower, 64-192-384-256-256 maps,
conv1 padded 2 on 224x224, no LRN, AdaptiveAvgPool2d((6, 6)) before the classifier, dropout on
the inputs of fc6 and fc7. Here with a softmax on fc8, as the paper's network.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from architectures import Architecture, PublishedField, Reference, register

PAPER = ("Krizhevsky, Sutskever, Hinton: ImageNet Classification with Deep Convolutional Neural "
         "Networks (NIPS 2012), Section 3, Figure 2")
TV = "torchvision.models.alexnet (Krizhevsky 2014, 'One weird trick', arXiv:1404.5997), Weights.meta"


class Conv(NamedTuple):
    name: str
    maps: int
    size: int
    stride: int
    pad: int                # zero padding on each side
    groups: int             # 2: each tower's kernels read only their tower's input maps
    then: tuple[str, ...]   # what follows the ReLU: "norm" (LRN), "pool" (max pool 3x3/2)


#                 name    maps size stride pad groups then                # output
TWO_TOWER = (   # the paper, 227x227x3 input
    Conv("conv1",   96,  11,  4,    0,  1,   ("norm", "pool")),  # 55x55x96  → 27x27x96
    Conv("conv2",  256,   5,  1,    2,  2,   ("norm", "pool")),  # 27x27x256 → 13x13x256
    Conv("conv3",  384,   3,  1,    1,  1,   ()),                # 13x13x384 (reads both towers)
    Conv("conv4",  384,   3,  1,    1,  2,   ()),                # 13x13x384
    Conv("conv5",  256,   3,  1,    1,  2,   ("pool",)),         # 13x13x256 → 6x6x256
)
ONE_TOWER = (   # torchvision, 224x224x3 input
    Conv("conv1",   64,  11,  4,    2,  1,   ("pool",)),         # 55x55x64  → 27x27x64
    Conv("conv2",  192,   5,  1,    2,  1,   ("pool",)),         # 27x27x192 → 13x13x192
    Conv("conv3",  384,   3,  1,    1,  1,   ()),                # 13x13x384
    Conv("conv4",  256,   3,  1,    1,  1,   ()),                # 13x13x256
    Conv("conv5",  256,   3,  1,    1,  1,   ("pool",)),         # 13x13x256 → 6x6x256
)

FC = (("fc6", 4096), ("fc7", 4096))  # then fc8: `classes` maps, softmax
LRN = {"depth_radius": 2, "bias": 2.0, "alpha": 1e-4, "beta": 0.75}  # n = 5, k = 2, α, β


class Variant(NamedTuple):
    convs: tuple[Conv, ...]
    adaptive_pool: int | None  # torchvision: AdaptiveAvgPool2d to this size before flattening
    dropout_on: str            # "outputs" of fc6 and fc7 (paper) or "inputs" of fc6 and fc7 (torchvision)


VARIANTS = {
    "two_tower": Variant(TWO_TOWER, adaptive_pool=None, dropout_on="outputs"),
    "one_tower": Variant(ONE_TOWER, adaptive_pool=6, dropout_on="inputs"),
}


@functools.cache
def custom_layers():
    """The two layers Keras lacks, defined on first use (importing this module stays Keras-free)."""
    import keras  # heavy: the registry loads without TensorFlow
    from keras import layers, ops  # heavy: the registry loads without TensorFlow

    @keras.saving.register_keras_serializable(package="archkit")
    class GroupedConv2D(layers.Conv2D):
        """Conv2D(groups=g) computed group by group: split the input maps, one convolution per
        group with its slice of the (k, k, C/g, M) kernel, concatenate. Same weights, same
        outputs, same MACs as a grouped conv; exports to ONNX as Split, g Conv, Concat."""

        def convolution_op(self, inputs, kernel):
            towers = zip(ops.split(inputs, self.groups, axis=-1), ops.split(kernel, self.groups, axis=-1))
            return ops.concatenate([
                ops.conv(x, k, strides=list(self.strides), padding=self.padding,
                         dilation_rate=self.dilation_rate, data_format=self.data_format)
                for x, k in towers
            ], axis=-1)

    @keras.saving.register_keras_serializable(package="archkit")
    class LocalResponseNormalization(layers.Layer):
        """b = a / (k + α Σ a²)^β over the 2r + 1 neighbouring maps (TensorFlow backend)."""

        def __init__(self, *, depth_radius, bias, alpha, beta, **kwargs):
            super().__init__(**kwargs)
            self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

        def call(self, x):
            import tensorflow as tf  # heavy: the registry loads without TensorFlow

            return tf.nn.local_response_normalization(
                x, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "depth_radius": self.depth_radius, "bias": self.bias,
                    "alpha": self.alpha, "beta": self.beta}

    return GroupedConv2D, LocalResponseNormalization


def alexnet(*, variant: str = "two_tower", input_shape=(227, 227, 3), classes=1000):
    """AlexNet as in the paper ("two_tower", 227x227) or torchvision's ("one_tower", 224x224)."""
    import keras  # heavy: the registry loads without TensorFlow
    from keras import layers  # heavy: the registry loads without TensorFlow

    if variant not in VARIANTS:
        raise ValueError(f"alexnet: variant {variant!r} unknown; choose one of {sorted(VARIANTS)}")
    v = VARIANTS[variant]
    GroupedConv2D, LocalResponseNormalization = custom_layers()

    x = inputs = keras.Input(shape=input_shape, name="image")
    for c in v.convs:
        n = c.name[-1]
        padding = "valid"
        if c.pad and c.stride == 1 and c.pad == c.size // 2:
            padding = "same"
        elif c.pad:
            x = layers.ZeroPadding2D(c.pad, name=f"{c.name}_pad")(x)
        conv = GroupedConv2D if c.groups > 1 else layers.Conv2D
        x = conv(c.maps, c.size, strides=c.stride, padding=padding, groups=c.groups, activation="relu",
                 name=c.name)(x)
        for op in c.then:
            if op == "norm":
                x = LocalResponseNormalization(**LRN, name=f"norm{n}")(x)
            elif op == "pool":
                x = layers.MaxPooling2D(3, strides=2, name=f"pool{n}")(x)  # overlapping: 3x3, stride 2
            else:
                raise ValueError(f"alexnet: {c.name}: unknown layer {op!r} in the table")
    if v.adaptive_pool:
        x = layers.AdaptiveAveragePooling2D((v.adaptive_pool,) * 2, name="avgpool")(x)  # 6x6x256
    x = layers.Flatten(name="flatten")(x)                                                # 9216
    for name, units in FC:                                                              # 4096, 4096
        n = name[-1]
        if v.dropout_on == "inputs":
            x = layers.Dropout(0.5, name=f"drop{n}")(x)
        x = layers.Dense(units, activation="relu", name=name)(x)
        if v.dropout_on == "outputs":
            x = layers.Dropout(0.5, name=f"drop{n}")(x)
    outputs = layers.Dense(classes, activation="softmax", name="fc8")(x)                # 1000
    return keras.Model(inputs, outputs, name="alexnet" if variant == "two_tower" else "alexnet_onetower")


# --- registry ------------------------------------------------------------------------------

def block_of(layer: str) -> str:
    """conv2, norm2, pool2 → conv2; flatten, avgpool → fc6; drop6 → fc6 (before or after it) ..."""
    if layer in ("flatten", "avgpool"):
        return "fc6"
    digits = "".join(ch for ch in layer.split("_")[0] if ch.isdigit())
    if not digits:
        return layer
    n = int(digits)
    return f"conv{n}" if n <= 5 else f"fc{n}"


SLIM_ALEXNET_NOTE = (
    "Which AlexNet: the paper gives no receptive field; the table's alexnet_v2 is TF-slim's one-tower variant "
    "(Krizhevsky 2014: 64-192-384-384-256 maps, conv1 unpadded on 224x224, no LRN) and its 195 / 32 is measured at "
    "pool5, after the third max pool; its conv5 reaches 163 / 16. archkit's alexnet (the paper's two towers, "
    "227x227) and alexnet_onetower (torchvision) stack the same kernels and strides (11/4, pool 3/2, 5, pool 3/2, "
    "3, 3, 3, pool 3/2), so sizes and strides agree layer by layer; effective paddings follow each model's own "
    "padding (torchvision pads conv1 by 2).")
# google-research/receptive_field's table: alexnet_v2 at conv5 and pool5, for both of archkit's AlexNets.
SLIM_FIELDS = tuple(PublishedField(layer, "alexnet_v2", f"alexnet_v2/{layer}", size, stride, 64, SLIM_ALEXNET_NOTE)
                    for layer, size, stride in (("conv5", 163, 16), ("pool5", 195, 32)))

register(Architecture(
    name="alexnet",
    family="alexnet",
    builder=alexnet,
    paper=PAPER,
    description="The paper's two-tower AlexNet (227x227): conv2/4/5 grouped in two towers, LRN, "
                "overlapping max pooling, FC 4096-4096-1000.",
    defaults={"variant": "two_tower", "input_shape": (227, 227, 3), "classes": 1000},
    references=(
        Reference("params", 60_965_224, "[count] weights and biases of the paper's configuration"),
        Reference("params", 60_000_000, f"[paper] {PAPER}: '60 million parameters'",
                  "a round figure; the configuration has 60,965,224", rounding=1e7),
        Reference("macs", 724_406_816, "[count] Conv + FC MACs of the paper's configuration at 227x227"),
    ),
    block_of=block_of,
    receptive_fields=SLIM_FIELDS,
    notes=(
        "Input 227x227: the paper's 224 does not give its own 55x55 conv1 maps.",
        ("Grouped conv2/conv4/conv5 computed tower by tower (Split, two Conv, Concat in ONNX): "
         "Conv2D(groups=2) does not export: Keras runs it as an XLA-compiled function that tf2onnx cannot convert."),
        "LRN over the whole layer's maps; exported as ONNX LRN.",
    ),
))

register(Architecture(
    name="alexnet_onetower",
    family="alexnet",
    builder=alexnet,
    paper=TV,
    description="torchvision's one-tower AlexNet (224x224): 64-192-384-256-256 maps, no LRN, "
                "adaptive average pool to 6x6, FC 4096-4096-1000.",
    defaults={"variant": "one_tower", "input_shape": (224, 224, 3), "classes": 1000},
    references=(
        Reference("params", 61_100_840, f"[tv] {TV}['num_params']"),
        Reference("macs", 714_188_480, "[count] Conv + Linear MACs of torchvision's alexnet at 224x224"),
        Reference("macs", 714_000_000, f"[tv] {TV}['_ops'] (GMACs)", rounding=1e6),
    ),
    block_of=block_of,
    receptive_fields=SLIM_FIELDS,
    notes=("A softmax on fc8, as the paper's network; torchvision returns logits.",),
))
