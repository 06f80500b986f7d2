"""The Inception family: GoogLeNet (v1), BN-Inception (v2), Inception v3, and their modules.

  inception_v1            Szegedy et al. 2014, "Going deeper with convolutions", Table 1
  inception_v1_module     its Figure 2: (a) naive, (b) with 1x1 reductions (inception 3a)
  inception_v2            Ioffe & Szegedy 2015, "Batch Normalization", Appendix Figure 5
  inception_v2_module     its inception (3a): batch norm, the 5x5 as two stacked 3x3
  inception_v3            Szegedy et al. 2015, "Rethinking the Inception Architecture", as
                          keras.applications.InceptionV3 builds it
  inception_v3_module_a   its Figure 5 (35x35), as Keras' mixed2
  inception_v3_module_b   its Figure 6 with n = 7 (17x17), as Keras' mixed4
  inception_v3_module_c   its Figure 7 (8x8), as Keras' mixed9

Config tables: one NamedTuple per inception row, fields in the paper's column order
(InceptionRow: Table 1 of GoogLeNet; BNInceptionRow: Figure 5 of the BN paper; ModuleA/B/C and
ReductionA/B: the filter counts keras.applications and TF-slim give the Rethinking figures,
which print none).

Names. Every Keras layer is `<block>_<what>`: `conv1_7x7_s2`, `pool1_norm1`, and inside a module
`<module>_b<branch>_<kernel>`: `inception_3a_b2_reduce`, `inception_3a_b2_3x3`,
`mixed4_b3_7x1a`; a module's branches are b1..b4 left to right as the papers draw them.
BatchNorm networks add `_conv`, `_bn`, `_relu` to each convolution's name. `block_of` maps a
layer to its block by the longest block-name prefix; the standalone module architectures map
it to its branch ("b1" ... "b4", "concat").

Factorisation. Every module builder takes `factorised` (`variant` for GoogLeNet's Figure 2):
with factorised=False each factorised stack is replaced by the single convolution covering the
same field of view (two 3x3 → one 5x5; 1xn then nx1 → nxn; Figure 7's parallel 1x3 and 3x1 →
one 3x3 with both outputs). UNFACTORISED names the config override that builds the comparison
module for each standalone module architecture.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NamedTuple

from architectures import Architecture, PublishedField, Reference, register
from archkit.errors import UsageError

__all__ = [
    "BN_INCEPTION",
    "INCEPTION_V3",
    "TABLE_1",
    "UNFACTORISED",
    "BNInceptionRow",
    "InceptionRow",
    "ModuleA",
    "ModuleB",
    "ModuleC",
    "ReductionA",
    "ReductionB",
    "inception_v1",
    "inception_v1_module",
    "inception_v2",
    "inception_v2_module",
    "inception_v3",
    "inception_v3_module",
]

GOOGLENET = "Szegedy et al. 2014: Going deeper with convolutions (arXiv:1409.4842), Table 1"
BN_PAPER = "Ioffe & Szegedy 2015: Batch Normalization (arXiv:1502.03167), Appendix, Figure 5"
RETHINKING = "Szegedy et al. 2015: Rethinking the Inception Architecture for Computer Vision (arXiv:1512.00567)"


# === GoogLeNet (Inception v1) ===============================================================

class InceptionRow(NamedTuple):
    """The six filter columns of a Table 1 inception row (torchvision's Inception arguments)."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int


#                      #1x1 #3x3red #3x3 #5x5red #5x5 pool proj    # output size
TABLE_1 = {
    "3a": InceptionRow(64, 96, 128, 16, 32, 32),           # 28x28x256
    "3b": InceptionRow(128, 128, 192, 32, 96, 64),         # 28x28x480
    "4a": InceptionRow(192, 96, 208, 16, 48, 64),          # 14x14x512
    "4b": InceptionRow(160, 112, 224, 24, 64, 64),         # 14x14x512
    "4c": InceptionRow(128, 128, 256, 24, 64, 64),         # 14x14x512
    "4d": InceptionRow(112, 144, 288, 32, 64, 64),         # 14x14x528
    "4e": InceptionRow(256, 160, 320, 32, 128, 128),       # 14x14x832
    "5a": InceptionRow(256, 160, 320, 32, 128, 128),       # 7x7x832
    "5b": InceptionRow(384, 192, 384, 48, 128, 128),       # 7x7x1024
}


@functools.cache
def _local_response_normalization():
    """GoogLeNet's LocalRespNorm (Figure 3), as a Keras layer; built on first use so that
    importing this module does not import TensorFlow.

    Caffe's bvlc_googlenet: size 5, alpha 1e-4, beta 0.75, k 1, where Caffe divides alpha by
    the window size; TensorFlow does not, so alpha/size goes to tf.nn.local_response_normalization.
    tf2onnx exports it as one ONNX LRN (size 5, alpha 1e-4), the data moved to channels-first.
    """
    import keras  # heavy: the registry loads without TensorFlow
    import tensorflow as tf  # heavy: the registry loads without TensorFlow

    @keras.saving.register_keras_serializable(package="archkit")
    class LocalResponseNormalization(keras.layers.Layer):
        def __init__(self, size=5, alpha=1e-4, beta=0.75, bias=1.0, **kwargs):
            super().__init__(**kwargs)
            self.size, self.alpha, self.beta, self.bias = size, alpha, beta, bias

        def call(self, x):
            return tf.nn.local_response_normalization(
                x, depth_radius=(self.size - 1) // 2, bias=self.bias, alpha=self.alpha / self.size, beta=self.beta)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta, "bias": self.bias}

    return LocalResponseNormalization


def _conv(x, filters, kernel, *, name, strides=1, padding="same"):
    """GoogLeNet's convolution: bias and ReLU, no normalisation."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    return layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="relu", name=name)(x)


def _max_pool(x, *, name, size=3, strides=2):
    from keras import layers  # heavy: the registry loads without TensorFlow

    return layers.MaxPooling2D(size, strides=strides, padding="same", name=name)(x)


def _concat(branches, *, name):
    from keras import layers  # heavy: the registry loads without TensorFlow

    return layers.Concatenate(name=name)(branches)


def inception_v1_block(x, row: InceptionRow, *, name, reduce=True):
    """Figure 2(b): 1x1 | 1x1 reduce → 3x3 | 1x1 reduce → 5x5 | 3x3 max pool → 1x1 projection.
    reduce=False is Figure 2(a), the naive module: no reductions, the pool passed through."""
    b1 = _conv(x, row.ch1x1, 1, name=f"{name}_b1_1x1")
    b2 = _conv(x, row.ch3x3red, 1, name=f"{name}_b2_reduce") if reduce else x
    b2 = _conv(b2, row.ch3x3, 3, name=f"{name}_b2_3x3")
    b3 = _conv(x, row.ch5x5red, 1, name=f"{name}_b3_reduce") if reduce else x
    b3 = _conv(b3, row.ch5x5, 5, name=f"{name}_b3_5x5")
    b4 = _max_pool(x, strides=1, name=f"{name}_b4_pool")
    if reduce:
        b4 = _conv(b4, row.pool_proj, 1, name=f"{name}_b4_proj")
    return _concat([b1, b2, b3, b4], name=f"{name}_concat")


def _aux_classifier(x, *, classes, name):
    """The auxiliary classifier on 4a and 4d (Section 5): 5x5/3 average pool, 1x1 conv 128,
    FC 1024, dropout 70%, linear, softmax."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = layers.AveragePooling2D(5, strides=3, name=f"{name}_pool")(x)      # 4x4x512 (4a), 4x4x528 (4d)
    x = _conv(x, 128, 1, name=f"{name}_1x1")                               # 4x4x128
    x = layers.Flatten(name=f"{name}_flatten")(x)                          # 2048
    x = layers.Dense(1024, activation="relu", name=f"{name}_fc")(x)        # 1024
    x = layers.Dropout(0.7, name=f"{name}_dropout")(x)
    x = layers.Dense(classes, name=f"{name}_linear")(x)                    # 1000
    return layers.Softmax(name=f"{name}_softmax")(x)


def _classifier(x, *, classes, dropout):
    """Table 1's last rows: avg pool 7x7/1 (the whole final map), dropout, linear, softmax."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = layers.AveragePooling2D(tuple(x.shape[1:3]), name="pool5_avg")(x)   # 1x1xC
    x = layers.Flatten(name="classifier_flatten")(x)                       # C
    if dropout:
        x = layers.Dropout(dropout, name="classifier_dropout")(x)
    x = layers.Dense(classes, name="classifier_linear")(x)                 # 1000
    return layers.Softmax(name="classifier_softmax")(x)


def inception_v1(*, input_shape=(224, 224, 3), classes=1000, lrn=True, aux_heads=False):
    """GoogLeNet, Table 1 and Figure 3. aux_heads=True adds the two auxiliary classifiers as
    extra outputs (main, aux1 on 4a, aux2 on 4d); lrn=False drops both LocalRespNorm layers."""
    import keras  # heavy: the registry loads without TensorFlow

    LRN = _local_response_normalization()
    x = inputs = keras.Input(shape=input_shape, name="image")                # 224x224x3
    x = _conv(x, 64, 7, strides=2, name="conv1_7x7_s2")                      # 112x112x64  conv 7x7/2
    x = _max_pool(x, name="pool1_3x3_s2")                                    # 56x56x64    max pool 3x3/2
    if lrn:
        x = LRN(name="pool1_norm1")(x)
    x = _conv(x, 64, 1, name="conv2_3x3_reduce")                             # 56x56x64    (#3x3 reduce)
    x = _conv(x, 192, 3, name="conv2_3x3")                                   # 56x56x192   conv 3x3/1
    if lrn:
        x = LRN(name="conv2_norm2")(x)
    x = _max_pool(x, name="pool2_3x3_s2")                                    # 28x28x192   max pool 3x3/2
    x = inception_v1_block(x, TABLE_1["3a"], name="inception_3a")            # 28x28x256
    x = inception_v1_block(x, TABLE_1["3b"], name="inception_3b")            # 28x28x480
    x = _max_pool(x, name="pool3_3x3_s2")                                    # 14x14x480   max pool 3x3/2
    x = inception_v1_block(x, TABLE_1["4a"], name="inception_4a")            # 14x14x512
    aux1 = x
    x = inception_v1_block(x, TABLE_1["4b"], name="inception_4b")            # 14x14x512
    x = inception_v1_block(x, TABLE_1["4c"], name="inception_4c")            # 14x14x512
    x = inception_v1_block(x, TABLE_1["4d"], name="inception_4d")            # 14x14x528
    aux2 = x
    x = inception_v1_block(x, TABLE_1["4e"], name="inception_4e")            # 14x14x832
    x = _max_pool(x, name="pool4_3x3_s2")                                    # 7x7x832     max pool 3x3/2
    x = inception_v1_block(x, TABLE_1["5a"], name="inception_5a")            # 7x7x832
    x = inception_v1_block(x, TABLE_1["5b"], name="inception_5b")            # 7x7x1024
    outputs = _classifier(x, classes=classes, dropout=0.4)                   # 1x1x1024 → 1000
    if aux_heads:
        outputs = [outputs,
                   _aux_classifier(aux1, classes=classes, name="aux1"),
                   _aux_classifier(aux2, classes=classes, name="aux2")]
    return keras.Model(inputs, outputs, name="googlenet")


def inception_v1_module(*, input_shape=(28, 28, 192), variant="reduced"):
    """Figure 2 on inception (3a)'s input (28x28x192) with 3a's filters: variant "reduced"
    is Figure 2(b) (= Table 1's 3a), "naive" Figure 2(a)."""
    import keras  # heavy: the registry loads without TensorFlow

    if variant not in ("naive", "reduced"):
        raise UsageError(f"inception_v1_module: variant must be 'naive' or 'reduced', not {variant!r}")
    x = inputs = keras.Input(shape=input_shape, name="image")
    x = inception_v1_block(x, TABLE_1["3a"], name="inception_3a", reduce=variant == "reduced")
    return keras.Model(inputs, x, name=f"inception_v1_module_{variant}")      # 28x28x256 (naive: 416)


# === BatchNorm convolutions (v2, v3) ==========================================================

def _bn_relu(x, *, name, scale):
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = layers.BatchNormalization(scale=scale, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _conv_bn(x, filters, kernel, *, name, strides=1, padding="same", scale):
    """`{name}_conv` (no bias: BatchNorm's shift replaces it) → `{name}_bn` → `{name}_relu`."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = layers.Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False, name=f"{name}_conv")(x)
    return _bn_relu(x, name=name, scale=scale)


# BN-Inception learns BatchNorm's scale and shift (the BN paper's gamma, beta);
# keras.applications.InceptionV3 (and TF-slim) leave the scale out (scale=False) before ReLU.
_conv_bn_v2 = functools.partial(_conv_bn, scale=True)
_conv_bn_v3 = functools.partial(_conv_bn, scale=False)


# === BN-Inception (Inception v2) ==============================================================

class BNInceptionRow(NamedTuple):
    """A row of the BN paper's Figure 5, columns in its order: patch size/stride, #1x1,
    #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, Pool +proj (pool kind, projection;
    None: "pass through")."""

    stride: int
    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch3x3dblred: int
    ch3x3dbl: int
    pool: str
    pool_proj: int | None


#                           stride #1x1 #3x3red #3x3 dbl red  dbl  pool  proj       # output size
BN_INCEPTION = {
    "3a": BNInceptionRow(1, 64, 64, 64, 64, 96, "avg", 32),           # 28x28x256
    "3b": BNInceptionRow(1, 64, 64, 96, 64, 96, "avg", 64),           # 28x28x320
    "3c": BNInceptionRow(2, 0, 128, 160, 64, 96, "max", None),        # 14x14x576 (table: 28x28x576)
    "4a": BNInceptionRow(1, 224, 64, 96, 96, 128, "avg", 128),        # 14x14x576
    "4b": BNInceptionRow(1, 192, 96, 128, 96, 128, "avg", 128),       # 14x14x576
    "4c": BNInceptionRow(1, 160, 128, 160, 128, 160, "avg", 96),      # 14x14x576 (table: avg + 128)
    "4d": BNInceptionRow(1, 96, 128, 192, 160, 192, "avg", 96),       # 14x14x576 (table: avg + 128)
    "4e": BNInceptionRow(2, 0, 128, 192, 192, 256, "max", None),      # 7x7x1024 (table: 14x14x1024)
    "5a": BNInceptionRow(1, 352, 192, 320, 160, 224, "avg", 128),     # 7x7x1024
    "5b": BNInceptionRow(1, 352, 192, 320, 192, 224, "max", 128),     # 7x7x1024
}


def _pool(x, kind, *, strides, name):
    from keras import layers  # heavy: the registry loads without TensorFlow

    pool = {"max": layers.MaxPooling2D, "avg": layers.AveragePooling2D}[kind]
    return pool(3, strides=strides, padding="same", name=name)(x)


def bn_inception_block(x, row: BNInceptionRow, *, name, factorised=True):
    """GoogLeNet's module with batch norm and its 5x5 as two stacked 3x3 (BN paper, Appendix):
    1x1 | 1x1 → 3x3 | 1x1 → 3x3 → 3x3 | avg or max pool → 1x1 (or passed through). In 3c and
    4e the last conv of each branch and the pool have stride 2, and there is no 1x1 branch.
    factorised=False: one 5x5 instead of the two 3x3."""
    s = row.stride
    branches = []
    if row.ch1x1:
        branches.append(_conv_bn_v2(x, row.ch1x1, 1, name=f"{name}_b1_1x1"))
    b2 = _conv_bn_v2(x, row.ch3x3red, 1, name=f"{name}_b2_reduce")
    branches.append(_conv_bn_v2(b2, row.ch3x3, 3, strides=s, name=f"{name}_b2_3x3"))
    b3 = _conv_bn_v2(x, row.ch3x3dblred, 1, name=f"{name}_b3_reduce")
    if factorised:
        b3 = _conv_bn_v2(b3, row.ch3x3dbl, 3, name=f"{name}_b3_3x3a")
        b3 = _conv_bn_v2(b3, row.ch3x3dbl, 3, strides=s, name=f"{name}_b3_3x3b")
    else:
        b3 = _conv_bn_v2(b3, row.ch3x3dbl, 5, strides=s, name=f"{name}_b3_5x5")
    branches.append(b3)
    b4 = _pool(x, row.pool, strides=s, name=f"{name}_b4_pool")
    if row.pool_proj:
        b4 = _conv_bn_v2(b4, row.pool_proj, 1, name=f"{name}_b4_proj")
    branches.append(b4)
    return _concat(branches, name=f"{name}_concat")


def inception_v2(*, input_shape=(224, 224, 3), classes=1000, factorised=True, separable_conv1=True):
    """BN-Inception, the BN paper's Figure 5. separable_conv1: the table's "convolution*", a
    separable 7x7/2 conv with depth multiplier 8 (the paper's footnote); False: a plain 7x7/2."""
    import keras  # heavy: the registry loads without TensorFlow
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = inputs = keras.Input(shape=input_shape, name="image")                # 224x224x3
    if separable_conv1:
        x = layers.SeparableConv2D(64, 7, strides=2, padding="same", depth_multiplier=8, use_bias=False,
                                   name="conv1_conv")(x)                     # 112x112x64  convolution* 7x7/2
    else:
        x = layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False, name="conv1_conv")(x)
    x = _bn_relu(x, name="conv1", scale=True)
    x = _max_pool(x, name="pool1_3x3_s2")                                    # 56x56x64    max pool 3x3/2
    x = _conv_bn_v2(x, 64, 1, name="conv2_reduce")                           # 56x56x64    (#3x3 reduce)
    x = _conv_bn_v2(x, 192, 3, name="conv2_3x3")                             # 56x56x192   convolution 3x3/1
    x = _max_pool(x, name="pool2_3x3_s2")                                    # 28x28x192   max pool 3x3/2
    for block in ("3a", "3b", "3c",                                          # 28x28x256, 28x28x320, 14x14x576
                  "4a", "4b", "4c", "4d", "4e",                              # 14x14x576 (4x), 7x7x1024
                  "5a", "5b"):                                               # 7x7x1024
        x = bn_inception_block(x, BN_INCEPTION[block], name=f"inception_{block}", factorised=factorised)
    outputs = _classifier(x, classes=classes, dropout=None)                  # 1x1x1024 → 1000
    return keras.Model(inputs, outputs, name="bn_inception")


def inception_v2_module(*, input_shape=(28, 28, 192), factorised=True):
    """BN-Inception's inception (3a) on its input, 28x28x192 (the input of GoogLeNet's 3a)."""
    import keras  # heavy: the registry loads without TensorFlow

    x = inputs = keras.Input(shape=input_shape, name="image")
    x = bn_inception_block(x, BN_INCEPTION["3a"], name="inception_3a", factorised=factorised)
    return keras.Model(inputs, x, name="bn_inception_module")                # 28x28x256


# === Inception v3 ===============================================================================

class ModuleA(NamedTuple):
    """Figure 5 (35x35): 1x1 | 1x1 → 5x5 | 1x1 → 3x3 → 3x3 | avg pool → 1x1.
    Figure 5 draws 1x1 → 3x3 in the second branch; Keras and TF-slim use a 5x5 there."""

    ch1x1: int
    ch5x5red: int
    ch5x5: int
    ch3x3dblred: int
    ch3x3dbl: int
    pool_proj: int


class ReductionA(NamedTuple):
    """35x35 → 17x17 (Section 7, Figure 10): 3x3/2 | 1x1 → 3x3 → 3x3/2 | max pool 3x3/2."""

    ch3x3: int
    ch3x3dblred: int
    ch3x3dbl: int


class ModuleB(NamedTuple):
    """Figure 6 (17x17), n = 7: 1x1 | 1x1 → 1x7 → 7x1 | 1x1 → 7x1 → 1x7 → 7x1 → 1x7 |
    avg pool → 1x1. Inside the factorised stacks every conv but the last has the reduce width."""

    ch1x1: int
    ch7x7red: int
    ch7x7: int
    ch7x7dblred: int
    ch7x7dbl: int
    pool_proj: int


class ReductionB(NamedTuple):
    """17x17 → 8x8: 1x1 → 3x3/2 | 1x1 → 1x7 → 7x1 → 3x3/2 | max pool 3x3/2."""

    ch3x3red: int
    ch3x3: int
    ch7x7x3red: int
    ch7x7x3: int


class ModuleC(NamedTuple):
    """Figure 7 (8x8), the expanded filter bank: 1x1 | 1x1 → (1x3 ‖ 3x1) |
    1x1 → 3x3 → (1x3 ‖ 3x1) | avg pool → 1x1; each of 1x3 and 3x1 gives ch3x3 (ch3x3dbl) maps."""

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch3x3dblred: int
    ch3x3dbl: int
    pool_proj: int


def module_a(x, row: ModuleA, *, name, factorised=True):
    """Figure 5. factorised=False: the 3x3 → 3x3 stack as one 5x5."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    b1 = _conv_bn_v3(x, row.ch1x1, 1, name=f"{name}_b1_1x1")
    b2 = _conv_bn_v3(x, row.ch5x5red, 1, name=f"{name}_b2_reduce")
    b2 = _conv_bn_v3(b2, row.ch5x5, 5, name=f"{name}_b2_5x5")
    b3 = _conv_bn_v3(x, row.ch3x3dblred, 1, name=f"{name}_b3_reduce")
    if factorised:
        b3 = _conv_bn_v3(b3, row.ch3x3dbl, 3, name=f"{name}_b3_3x3a")
        b3 = _conv_bn_v3(b3, row.ch3x3dbl, 3, name=f"{name}_b3_3x3b")
    else:
        b3 = _conv_bn_v3(b3, row.ch3x3dbl, 5, name=f"{name}_b3_5x5")
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_b4_pool")(x)
    b4 = _conv_bn_v3(b4, row.pool_proj, 1, name=f"{name}_b4_proj")
    return _concat([b1, b2, b3, b4], name=f"{name}_concat")


def reduction_a(x, row: ReductionA, *, name, factorised=True):
    """35x35 → 17x17. factorised=False: the 3x3 → 3x3/2 stack as one 5x5/2."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    b1 = _conv_bn_v3(x, row.ch3x3, 3, strides=2, padding="valid", name=f"{name}_b1_3x3")
    b2 = _conv_bn_v3(x, row.ch3x3dblred, 1, name=f"{name}_b2_reduce")
    if factorised:
        b2 = _conv_bn_v3(b2, row.ch3x3dbl, 3, name=f"{name}_b2_3x3a")
        b2 = _conv_bn_v3(b2, row.ch3x3dbl, 3, strides=2, padding="valid", name=f"{name}_b2_3x3b")
    else:
        b2 = _conv_bn_v3(b2, row.ch3x3dbl, 5, strides=2, padding="valid", name=f"{name}_b2_5x5")
    b3 = layers.MaxPooling2D(3, strides=2, name=f"{name}_b3_pool")(x)
    return _concat([b1, b2, b3], name=f"{name}_concat")


def _1xn_nx1(x, filters, n, *, name, order, factorised, last=None):
    """A factorised nxn: a chain of 1xn and nx1 convs given by `order` ("1n", "n1", ...), all
    `filters` wide but the last (`last`); unfactorised, one nxn per 1xn/nx1 pair. Repeated
    kernels are lettered: `_7x1a`, `_1x7a`, `_7x1b`, `_1x7b`."""
    last = last or filters
    if factorised:
        kernels = [(1, n) if k == "1" else (n, 1) for k in order]
    else:
        kernels = [(n, n)] * (len(order) // 2)
    names = [f"{h}x{w}" for h, w in kernels]
    for i, (kernel, label) in enumerate(zip(kernels, names)):
        if names.count(label) > 1:
            label += "abcdefgh"[names[:i].count(label)]
        x = _conv_bn_v3(x, last if i == len(kernels) - 1 else filters, kernel, name=f"{name}_{label}")
    return x


def module_b(x, row: ModuleB, *, name, factorised=True, n=7):
    """Figure 6. factorised=False: each 1xn/nx1 pair as one nxn."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    b1 = _conv_bn_v3(x, row.ch1x1, 1, name=f"{name}_b1_1x1")
    b2 = _conv_bn_v3(x, row.ch7x7red, 1, name=f"{name}_b2_reduce")
    b2 = _1xn_nx1(b2, row.ch7x7red, n, last=row.ch7x7, order="1n", factorised=factorised, name=f"{name}_b2")
    b3 = _conv_bn_v3(x, row.ch7x7dblred, 1, name=f"{name}_b3_reduce")
    b3 = _1xn_nx1(b3, row.ch7x7dblred, n, last=row.ch7x7dbl, order="n1n1", factorised=factorised, name=f"{name}_b3")
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_b4_pool")(x)
    b4 = _conv_bn_v3(b4, row.pool_proj, 1, name=f"{name}_b4_proj")
    return _concat([b1, b2, b3, b4], name=f"{name}_concat")


def reduction_b(x, row: ReductionB, *, name, factorised=True):
    """17x17 → 8x8. factorised=False: the 1x7 → 7x1 pair as one 7x7."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    b1 = _conv_bn_v3(x, row.ch3x3red, 1, name=f"{name}_b1_reduce")
    b1 = _conv_bn_v3(b1, row.ch3x3, 3, strides=2, padding="valid", name=f"{name}_b1_3x3")
    b2 = _conv_bn_v3(x, row.ch7x7x3red, 1, name=f"{name}_b2_reduce")
    b2 = _1xn_nx1(b2, row.ch7x7x3red, 7, order="1n", factorised=factorised, name=f"{name}_b2")
    b2 = _conv_bn_v3(b2, row.ch7x7x3, 3, strides=2, padding="valid", name=f"{name}_b2_3x3")
    b3 = layers.MaxPooling2D(3, strides=2, name=f"{name}_b3_pool")(x)
    return _concat([b1, b2, b3], name=f"{name}_concat")


def _expanded(x, filters, *, name, factorised):
    """Figure 7's filter-bank expansion: 1x3 ‖ 3x1, `filters` maps each, concatenated;
    unfactorised, one 3x3 giving both: 2·filters maps over the 3x3 window the pair spans."""
    if not factorised:
        return _conv_bn_v3(x, 2 * filters, 3, name=f"{name}_expand_3x3")
    return _concat([_conv_bn_v3(x, filters, (1, 3), name=f"{name}_expand_1x3"),
                    _conv_bn_v3(x, filters, (3, 1), name=f"{name}_expand_3x1")], name=f"{name}_expand")


def module_c(x, row: ModuleC, *, name, factorised=True):
    """Figure 7. factorised=False: each 1x3 ‖ 3x1 pair as one 3x3."""
    from keras import layers  # heavy: the registry loads without TensorFlow

    b1 = _conv_bn_v3(x, row.ch1x1, 1, name=f"{name}_b1_1x1")
    b2 = _conv_bn_v3(x, row.ch3x3red, 1, name=f"{name}_b2_reduce")
    b2 = _expanded(b2, row.ch3x3, factorised=factorised, name=f"{name}_b2")
    b3 = _conv_bn_v3(x, row.ch3x3dblred, 1, name=f"{name}_b3_reduce")
    b3 = _conv_bn_v3(b3, row.ch3x3dbl, 3, name=f"{name}_b3_3x3")
    b3 = _expanded(b3, row.ch3x3dbl, factorised=factorised, name=f"{name}_b3")
    b4 = layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_b4_pool")(x)
    b4 = _conv_bn_v3(b4, row.pool_proj, 1, name=f"{name}_b4_proj")
    return _concat([b1, b2, b3, b4], name=f"{name}_concat")


_V3_MODULES: dict[type, Callable] = {
    ModuleA: module_a, ReductionA: reduction_a, ModuleB: module_b, ReductionB: reduction_b, ModuleC: module_c,
}

#                   block       module                                   # output size at 299x299
INCEPTION_V3 = (
    ("mixed0", ModuleA(64, 48, 64, 64, 96, 32)),                         # 35x35x256
    ("mixed1", ModuleA(64, 48, 64, 64, 96, 64)),                         # 35x35x288
    ("mixed2", ModuleA(64, 48, 64, 64, 96, 64)),                         # 35x35x288
    ("mixed3", ReductionA(384, 64, 96)),                                 # 17x17x768
    ("mixed4", ModuleB(192, 128, 192, 128, 192, 192)),                   # 17x17x768
    ("mixed5", ModuleB(192, 160, 192, 160, 192, 192)),                   # 17x17x768
    ("mixed6", ModuleB(192, 160, 192, 160, 192, 192)),                   # 17x17x768
    ("mixed7", ModuleB(192, 192, 192, 192, 192, 192)),                   # 17x17x768
    ("mixed8", ReductionB(192, 320, 192, 192)),                          # 8x8x1280
    ("mixed9", ModuleC(320, 384, 384, 448, 384, 192)),                   # 8x8x2048
    ("mixed10", ModuleC(320, 384, 384, 448, 384, 192)),                  # 8x8x2048
)
V3_MODULE = dict(INCEPTION_V3)


def inception_v3(*, input_shape=(299, 299, 3), classes=1000, factorised=True):
    """Inception v3 as keras.applications.InceptionV3 (= TF-slim's): the stem, 3 x Figure 5,
    grid reduction, 4 x Figure 6, grid reduction, 2 x Figure 7, global average pool, softmax.
    factorised=False replaces every factorised stack as the modules describe."""
    import keras  # heavy: the registry loads without TensorFlow
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = inputs = keras.Input(shape=input_shape, name="image")                # 299x299x3
    x = _conv_bn_v3(x, 32, 3, strides=2, padding="valid", name="conv1")      # 149x149x32  conv 3x3/2
    x = _conv_bn_v3(x, 32, 3, padding="valid", name="conv2")                 # 147x147x32  conv 3x3/1
    x = _conv_bn_v3(x, 64, 3, name="conv3")                                  # 147x147x64  conv padded 3x3/1
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)                   # 73x73x64    pool 3x3/2
    x = _conv_bn_v3(x, 80, 1, padding="valid", name="conv4")                 # 73x73x80    conv 1x1
    x = _conv_bn_v3(x, 192, 3, padding="valid", name="conv5")                # 71x71x192   conv 3x3/1
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)                   # 35x35x192   pool 3x3/2
    for name, row in INCEPTION_V3:                                           # 35x35x288 → 17x17x768 → 8x8x2048
        x = _V3_MODULES[type(row)](x, row, name=name, factorised=factorised)
    x = layers.GlobalAveragePooling2D(name="pool3")(x)                       # 2048        pool 8x8
    x = layers.Dense(classes, name="classifier_linear")(x)                   # 1000        linear
    outputs = layers.Softmax(name="classifier_softmax")(x)                   #             softmax
    return keras.Model(inputs, outputs, name="inception_v3")


def inception_v3_module(*, module, input_shape, factorised=True):
    """One Inception v3 module (`module`: its Keras block name, e.g. "mixed4") on its input."""
    import keras  # heavy: the registry loads without TensorFlow

    row = V3_MODULE[module]
    x = inputs = keras.Input(shape=input_shape, name="image")
    x = _V3_MODULES[type(row)](x, row, name=module, factorised=factorised)
    return keras.Model(inputs, x, name=f"inception_v3_{module}")


# === blocks =====================================================================================

def _prefix_blocks(*blocks: str) -> Callable[[str], str]:
    """A layer belongs to the block whose name is the longest prefix of its own (`mixed1_...`
    is mixed1, `mixed10_...` mixed10); a layer outside every block is its own block."""
    ordered = sorted(blocks, key=len, reverse=True)

    def block_of(layer: str) -> str:
        return next((b for b in ordered if layer == b or layer.startswith(b + "_")), layer)

    return block_of


_BRANCH = re.compile(r"_(b\d)(?:_|$)")


def _branch_block(layer: str) -> str:
    """Standalone modules: a layer's block is its branch, b1 ... b4; the output concat is "concat"."""
    m = _BRANCH.search(layer)
    if m:
        return m.group(1)
    return "concat" if layer.endswith("_concat") else layer


_V1_BLOCKS = ("conv1", "pool1", "conv2", "pool2", *(f"inception_{b}" for b in TABLE_1),
              "pool3", "pool4", "pool5", "classifier", "aux1", "aux2")
_V2_BLOCKS = ("conv1", "pool1", "conv2", "pool2", *(f"inception_{b}" for b in BN_INCEPTION), "pool5", "classifier")
_V3_BLOCKS = ("conv1", "conv2", "conv3", "pool1", "conv4", "conv5", "pool2", *V3_MODULE, "pool3", "classifier")


# === the paper's tables ======================================================================

_T1_COLUMNS = ("#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj")
_K, _M = 1024, 1_000_000


def _t1(block, type_, patch, output, depth, columns=(), params=None, ops=None, note=""):
    """One row of Table 1. params/ops as printed ("2.7K", "34M") and read: K = 1024 (the reading
    that fits the rows whose configuration agrees, e.g. linear 1000K = 1024·1000), M = 10^6."""
    row = {"block": block, "type": type_, "patch size/stride": patch, "output size": output, "depth": depth,
           **dict(zip(_T1_COLUMNS, columns or (None,) * 6))}
    row["params"], row["ops"] = params, ops
    row["params_value"] = round(float(params[:-1]) * _K) if params else None
    row["ops_value"] = round(float(ops[:-1]) * _M) if ops else None
    if note:
        row["note"] = note
    return row


NOTE_CONV1 = (
    "Table 1 prints 2.7K params and 34M ops for the 7x7/2 conv, 3→64 maps; that conv has 7·7·3·64 = 9,408 "
    "weights (9.2K) and 112²·9,408 = 118,013,952 MACs (118M). The printed pair is exactly a *separable* 7x7/2 "
    "conv with depth multiplier 8: 7·7·3·8 + 24·64 = 2,712 weights and 112²·2,712 = 34,019,328 MACs, the first "
    "layer the BN-Inception paper (Appendix, 'convolution*') says its model used. archkit builds the plain conv "
    "the row names.")
NOTE_4C = (
    "Table 1 prints 463K params for 4c; its columns give 509,440 weights (497.5K with K = 1024). The printed "
    "100M ops do fit the columns: 14²·509,440 = 99,850,240.")
NOTE_5A = (
    "Table 1 prints 1072K params and 54M ops for 5a; its columns give 1,042,432 weights (1018K) and "
    "7²·1,042,432 = 51,079,168 MACs (51M). The printed pair agree with each other (1072K·49 ≈ 53.8M) "
    "but not with the columns.")

TABLE_1_ROWS = (
    _t1("conv1", "convolution", "7x7/2", "112x112x64", 1, params="2.7K", ops="34M", note=NOTE_CONV1),
    _t1("pool1", "max pool", "3x3/2", "56x56x64", 0),
    _t1("conv2", "convolution", "3x3/1", "56x56x192", 2, (None, 64, 192, None, None, None), "112K", "360M"),
    _t1("pool2", "max pool", "3x3/2", "28x28x192", 0),
    _t1("inception_3a", "inception (3a)", "", "28x28x256", 2, TABLE_1["3a"], "159K", "128M"),
    _t1("inception_3b", "inception (3b)", "", "28x28x480", 2, TABLE_1["3b"], "380K", "304M"),
    _t1("pool3", "max pool", "3x3/2", "14x14x480", 0),
    _t1("inception_4a", "inception (4a)", "", "14x14x512", 2, TABLE_1["4a"], "364K", "73M"),
    _t1("inception_4b", "inception (4b)", "", "14x14x512", 2, TABLE_1["4b"], "437K", "88M"),
    _t1("inception_4c", "inception (4c)", "", "14x14x512", 2, TABLE_1["4c"], "463K", "100M", note=NOTE_4C),
    _t1("inception_4d", "inception (4d)", "", "14x14x528", 2, TABLE_1["4d"], "580K", "119M"),
    _t1("inception_4e", "inception (4e)", "", "14x14x832", 2, TABLE_1["4e"], "840K", "170M"),
    _t1("pool4", "max pool", "3x3/2", "7x7x832", 0),
    _t1("inception_5a", "inception (5a)", "", "7x7x832", 2, TABLE_1["5a"], "1072K", "54M", note=NOTE_5A),
    _t1("inception_5b", "inception (5b)", "", "7x7x1024", 2, TABLE_1["5b"], "1388K", "71M"),
    _t1("pool5", "avg pool", "7x7/1", "1x1x1024", 0),
    _t1("classifier", "dropout (40%), linear, softmax", "", "1x1x1000", 1, params="1000K", ops="1M",
        note="Table 1's rows dropout (40%) 1x1x1024, linear 1x1x1000 (1000K, 1M) and softmax 1x1x1000 "
             "are one block here."),
)

_BN_COLUMNS = ("#1x1", "#3x3 reduce", "#3x3", "double #3x3 reduce", "double #3x3", "Pool +proj")


def _bn(block, type_, patch, output, depth, row: BNInceptionRow | None = None, columns=(), printed=None, note=""):
    """One row of the BN paper's Figure 5, as printed (`printed` overrides cells of `row` where
    the built network differs, named in `note`)."""
    if row is not None:
        pool = f"{row.pool} + {row.pool_proj}" if row.pool_proj else f"{row.pool} + pass through"
        columns = (row.ch1x1, row.ch3x3red, row.ch3x3, row.ch3x3dblred, row.ch3x3dbl, pool)
    out = {"block": block, "type": type_, "patch size/stride": patch, "output size": output, "depth": depth,
           **dict(zip(_BN_COLUMNS, columns or (None,) * 6)), **(printed or {})}
    if note:
        out["note"] = note
    return out


NOTE_STRIDE = ("The table prints {printed}, the size before the stride: its stride-2 convs and pool make {built}.")
NOTE_4CD = ("The table prints 'avg + 128', but then the module outputs {wide} maps, not the table's 576; "
            "built with a 96-map projection (576 maps), as TF-slim's inception_v2 does.")

BN_TABLE_ROWS = (
    _bn("conv1", "convolution*", "7x7/2", "112x112x64", 1,
        note="'convolution*': separable, depth multiplier 8 (the text under the table); separable_conv1=False builds a plain conv."),
    _bn("pool1", "max pool", "3x3/2", "56x56x64", 0),
    _bn("conv2", "convolution", "3x3/1", "56x56x192", 1, columns=(None, 64, 192, None, None, None)),
    _bn("pool2", "max pool", "3x3/2", "28x28x192", 0),
    _bn("inception_3a", "inception (3a)", "", "28x28x256", 3, BN_INCEPTION["3a"]),
    _bn("inception_3b", "inception (3b)", "", "28x28x320", 3, BN_INCEPTION["3b"]),
    _bn("inception_3c", "inception (3c)", "stride 2", "28x28x576", 3, BN_INCEPTION["3c"],
        note=NOTE_STRIDE.format(printed="28x28x576", built="14x14x576")),
    _bn("inception_4a", "inception (4a)", "", "14x14x576", 3, BN_INCEPTION["4a"]),
    _bn("inception_4b", "inception (4b)", "", "14x14x576", 3, BN_INCEPTION["4b"]),
    _bn("inception_4c", "inception (4c)", "", "14x14x576", 3, BN_INCEPTION["4c"],
        printed={"Pool +proj": "avg + 128"}, note=NOTE_4CD.format(wide=160 + 160 + 160 + 128)),
    _bn("inception_4d", "inception (4d)", "", "14x14x576", 3, BN_INCEPTION["4d"],
        printed={"Pool +proj": "avg + 128"}, note=NOTE_4CD.format(wide=96 + 192 + 192 + 128)),
    _bn("inception_4e", "inception (4e)", "stride 2", "14x14x1024", 3, BN_INCEPTION["4e"],
        note=NOTE_STRIDE.format(printed="14x14x1024", built="7x7x1024")),
    _bn("inception_5a", "inception (5a)", "", "7x7x1024", 3, BN_INCEPTION["5a"]),
    _bn("inception_5b", "inception (5b)", "", "7x7x1024", 3, BN_INCEPTION["5b"]),
    _bn("pool5", "avg pool", "7x7/1", "1x1x1024", 0),
)


# === registry ==================================================================================

# For each standalone module: the config override that builds the module it is compared with,
# the same field of view without the reduction/factorisation.
UNFACTORISED = {
    "inception_v1_module": {"variant": "naive"},
    "inception_v2_module": {"factorised": False},
    "inception_v3_module_a": {"factorised": False},
    "inception_v3_module_b": {"factorised": False},
    "inception_v3_module_c": {"factorised": False},
}

V1_NOTES = (
    ("LocalRespNorm after pool1 and conv2 (Figure 3; Caffe's size 5, alpha 1e-4, beta 0.75) is a small Keras "
     "layer over tf.nn.local_response_normalization; it exports as one ONNX LRN each (tf2onnx turns the whole "
     "graph channels-first, so no Transpose is left beside them) and passes onnxruntime parity. lrn=False "
     "drops it (torchvision's googlenet has none); LRN has no parameters and no MACs."),
    ("Padding is TensorFlow's 'same': the 7x7/2 conv pads 2 before and 3 after (Caffe: 3 and 3) and the 3x3/2 "
     "max pools pad 0 before and 1 after (Caffe rounds the output size up instead). Output sizes, and so all "
     "counts, are Table 1's."),
    ("Without the auxiliary classifiers (aux_heads=False, the default): Table 1 lists none. aux_heads=True "
     "adds both (on 4a and 4d) as extra outputs: +3,188,840 and +3,190,888 parameters."),
    ("The paper's totals match its columns' sums: params 6,797.7K ('about 6.8M'), ops 1,502M ('1.5 billion'). "
     "The counted figures differ by the three rows noted in the per-block table (conv 7x7/2, 4c, 5a). The other "
     "rows' params agree with their columns to within 2% (largest: 4d 590.5K counted vs 580K, 5b 1409K vs "
     "1388K) and their ops to within 1%."),
    ("torchvision's googlenet differs by design: BatchNorm instead of LRN and no conv bias (6,624,904 "
     "parameters), and its '5x5' branch is a 3x3 (a bug kept for its pretrained weights): 1.498 GMACs."),
)

V1_REFERENCES = (
    Reference("kernel_weights", 6_990_272, "[count] Table 1's configuration", "conv and linear kernels, no biases"),
    Reference("params", 6_998_552, "[count] Table 1's configuration", "kernels + 8,280 biases; LRN has none"),
    Reference("onnx_params", 6_998_552, "[count] Table 1's configuration", "every kernel and bias stored once"),
    Reference("macs", 1_582_671_872, "[count] Table 1's configuration"),
    Reference("params", 6.8e6, "[paper] 'about 6.8M'", rounding=1e5, expected=6_998_552,
              note="the sum of Table 1's params column (6,797.7K); rows conv 7x7/2, 4c and 5a disagree with "
                   "the table's own configuration (per-block table), and K = 1024 vs 1000"),
    Reference("macs", 1.5e9, "[paper] '1.5 billion multiply-adds'", rounding=1e8, expected=1_582_671_872,
              note="the sum of Table 1's ops column (1,502M); its conv 7x7/2 row (34M) matches a separable "
                   "7x7/2 conv, the plain conv the row names costs 118M"),
    Reference("params", 6_624_904, "[tv] googlenet num_params", expected=6_998_552,
              note="torchvision replaces LRN and conv biases with BatchNorm and its '5x5' branch is a 3x3"),
    Reference("macs", 1.498e9, "[tv] googlenet GMACs", rounding=1e6, expected=1_582_671_872,
              note="torchvision's '5x5' branch is a 3x3 (a known bug kept for its weights)"),
)

register(Architecture(
    name="inception_v1",
    family="inception",
    builder=inception_v1,
    paper=GOOGLENET,
    description="GoogLeNet as in Table 1: 224x224x3, LocalRespNorm, nine inception modules 3a-5b, "
                "average pool, dropout 40%, linear, softmax; no auxiliary classifiers by default.",
    defaults={"input_shape": (224, 224, 3), "classes": 1000, "lrn": True, "aux_heads": False},
    references=V1_REFERENCES,
    block_of=_prefix_blocks(*_V1_BLOCKS),
    notes=V1_NOTES,
    paper_table=TABLE_1_ROWS,
))

register(Architecture(
    name="inception_v1_module",
    family="inception",
    builder=inception_v1_module,
    paper=f"{GOOGLENET}, Figure 2",
    description="GoogLeNet's inception module (Figure 2b, = inception 3a) on 3a's input, 28x28x192; "
                "variant='naive' builds Figure 2a, without the 1x1 reductions and the pool projection.",
    defaults={"input_shape": (28, 28, 192), "variant": "reduced"},
    references=(
        Reference("macs", 128_049_152, "[count] 28²·(192·64 + 192·96 + 9·96·128 + 192·16 + 25·16·32 + 192·32)"),
        Reference("kernel_weights", 163_328, "[count] the six convs' kernels"),
        Reference("macs", 128e6, "[paper] Table 1, inception (3a) ops", rounding=1e6),
    ),
    block_of=_branch_block,
    notes=(
        ("Branches: b1 1x1 64; b2 1x1 96 → 3x3 128; b3 1x1 16 → 5x5 32; b4 3x3 max pool → 1x1 32. "
         "Output 28x28x256."),
        ("variant='naive' (Figure 2a): b1 1x1 64; b2 3x3 128; b3 5x5 32; b4 the pool's 192 maps passed "
         "through. Output 28x28x416; 387,072 weights and 303,464,448 MACs against 163,328 and 128,049,152: "
         "the reductions save 223,744 weights and 175,415,296 MACs (2.37x)."),
    ),
))

V2_NOTES = (
    ("BatchNorm (scale and shift learned) after every conv, before its ReLU; convs have no bias. No LRN and "
     "no dropout (the paper removed both, Section 4.2.1). tf2onnx folds BatchNorm into the convs."),
    ("Stride-2 modules 3c and 4e: the 3x3 of b2, the second 3x3 of b3 and the max pool have stride 2; the "
     "pool's maps pass through ('max + pass through'). Padding 'same' throughout (TF-slim's inception_v2)."),
    ("Two cells of the paper's table contradict its output sizes: 4c and 4d print 'avg + 128', which makes "
     "608 maps, not the printed 576; archkit uses 96, as TF-slim's inception_v2 does. The table also prints "
     "3c's and 4e's output before their stride (28x28x576 and 14x14x1024 for 14x14x576 and 7x7x1024)."),
    ("The paper publishes no totals; it says replacing each 5x5 by two 3x3 adds 25% parameters and about "
     "30% computation to GoogLeNet. Counted: 11,208,192 parameters (Keras) and 1,934,857,216 MACs, +60% and "
     "+22% over inception_v1 — the network is also wider (a third 28x28 module, wider 4x modules). "
     "factorised=False, the same network with one 5x5 where each module has two 3x3: 12,158,208 parameters "
     "and 1,961,249,792 MACs, so at these widths the two 3x3 are the cheaper choice. separable_conv1=False: "
     "11,214,888 parameters, 2,018,851,840 MACs."),
)

register(Architecture(
    name="inception_v2",
    family="inception",
    builder=inception_v2,
    paper=BN_PAPER,
    description="BN-Inception: GoogLeNet with batch norm, each 5x5 replaced by two 3x3, a third 28x28 "
                "module, stride-2 modules 3c and 4e instead of pooling, a separable first conv.",
    defaults={"input_shape": (224, 224, 3), "classes": 1000, "factorised": True, "separable_conv1": True},
    references=(),
    block_of=_prefix_blocks(*_V2_BLOCKS),
    notes=V2_NOTES,
    paper_table=BN_TABLE_ROWS,
    receptive_fields=(PublishedField("inception_5b_concat", "inception_v2", "Mixed_5c", 699, 32, 318,
                                     "TF-slim's inception_v2 is BN-Inception, as archkit's; its blocks Mixed_3b ... "
                                     "Mixed_5c are archkit's inception_3a ... inception_5b."),),
))

register(Architecture(
    name="inception_v2_module",
    family="inception",
    builder=inception_v2_module,
    paper=f"{BN_PAPER}, inception (3a)",
    description="BN-Inception's inception (3a) on 28x28x192: batch norm, the 5x5 branch as two stacked 3x3; "
                "factorised=False builds it with one 5x5.",
    defaults={"input_shape": (28, 28, 192), "factorised": True},
    references=(
        Reference("macs", 170_999_808, "[count] 28²·(192·64 + 192·64 + 9·64·64 + 192·64 + 9·64·96 + 9·96·96 + 192·32)"),
        Reference("kernel_weights", 218_112, "[count] the seven convs' kernels"),
    ),
    block_of=_branch_block,
    notes=(
        ("Branches: b1 1x1 64; b2 1x1 64 → 3x3 64; b3 1x1 64 → 3x3 96 → 3x3 96; b4 3x3 avg pool → 1x1 32. "
         "Output 28x28x256. Each conv: Conv (no bias) → BatchNorm (scale, shift) → ReLU."),
        ("factorised=False: b3's 3x3 → 3x3 (64→96→96: 138,240 weights) becomes one 5x5 64→96 (153,600). The "
         "module: 233,472 weights and 183,042,048 MACs against 218,112 and 170,999,808 — the two 3x3 save "
         "15,360 weights and 12,042,240 MACs (6.6%), at the price of a second BatchNorm (96 maps, 384 parameters)."),
    ),
))

V3_NOTES = (
    ("Built as keras.applications.InceptionV3 (= TF-slim's inception_v3, whose trained weights every "
     "reference figure describes); Keras parameters layer by layer identical. BatchNorm without scale "
     "(epsilon 1e-3) after every bias-free conv."),
    ("Deviations of that implementation from the paper, kept: Table 1's stem lists conv 3x3 (73x73x64 → "
     "71x71x80), conv 3x3/2 (→ 35x35x192), conv 3x3 (→ 35x35x288); the implementation uses conv 1x1 80, conv "
     "3x3 192, max pool 3x3/2 and the modules give 288 maps. Figure 5's second branch is 1x1 → 3x3; the "
     "implementation has 1x1 48 → 5x5 64. Table 1's '5 x Inception' at 17x17 is four Figure 6 modules and "
     "the grid reduction. No auxiliary classifier (keras.applications has none)."),
    "The paper: 'less than 25 million parameters' and '5 billion multiply-adds'.",
    ("factorised=False replaces every factorised stack (3x3 → 3x3 by 5x5, 1x7/7x1 pairs by 7x7, Figure 7's "
     "1x3 ‖ 3x1 by a 3x3 with both outputs) — the network the factorisation argument compares against."),
)

register(Architecture(
    name="inception_v3",
    family="inception",
    builder=inception_v3,
    paper=RETHINKING,
    description="Inception v3 at 299x299x3 as keras.applications.InceptionV3: factorised modules "
                "(Figures 5, 6 with n = 7, 7), grid reductions, global average pool, softmax.",
    defaults={"input_shape": (299, 299, 3), "classes": 1000, "factorised": True},
    references=(
        Reference("params", 23_851_784, "[keras] InceptionV3(weights=None)"),
        Reference("trainable", 23_817_352, "[keras] InceptionV3(weights=None)"),
        Reference("non_trainable", 34_432, "[keras] InceptionV3(weights=None)", "BatchNorm moving mean and variance"),
        Reference("macs", 5_713_216_096, "[count] archkit on keras.applications.InceptionV3's ONNX export"),
        Reference("macs", 5.713e9, "[tv] inception_v3 GMACs", rounding=1e6),
        Reference("macs", 5e9, "[paper] '5 billion multiply-adds'", rounding=1e9, expected=5_713_216_096,
                  note="a round figure; the network as released costs 5.71 billion"),
    ),
    block_of=_prefix_blocks(*_V3_BLOCKS),
    notes=V3_NOTES,
    receptive_fields=(PublishedField("mixed10_concat", "inception_v3", "Mixed_7c", 1311, 32, 618),),
))

_V3_MODULE_DOCS = {
    "a": ("mixed2", (35, 35, 288), "Figure 5",
          (348_096_000, 284_160, "35²·(288·64 + 288·48 + 25·48·64 + 288·64 + 9·64·96 + 9·96·96 + 288·64)"),
          ("Branches: b1 1x1 64; b2 1x1 48 → 5x5 64; b3 1x1 64 → 3x3 96 → 3x3 96; b4 3x3 avg pool → 1x1 64. "
           "Output 35x35x288."),
          ("factorised=False: b3's 3x3 → 3x3 (64→96→96: 138,240 weights) becomes one 5x5 64→96 (153,600). The "
           "module: 299,520 weights and 366,912,000 MACs against 284,160 and 348,096,000: the two 3x3 save "
           "15,360 weights and 18,816,000 MACs (5.1%). b2 is a 5x5 in both (Keras' module, not Figure 5's 3x3).")),
    "b": ("mixed4", (17, 17, 768), "Figure 6, n = 7",
          (374_063_104, 1_294_336,
           "17²·(768·192 + 768·128 + 7·128·128 + 7·128·192 + 768·128 + 3·7·128·128 + 7·128·192 + 768·192)"),
          ("Branches: b1 1x1 192; b2 1x1 128 → 1x7 128 → 7x1 192; b3 1x1 128 → 7x1 128 → 1x7 128 → 7x1 128 → "
           "1x7 192; b4 3x3 avg pool → 1x1 192. Output 17x17x768."),
          ("factorised=False: each 1x7/7x1 pair becomes one 7x7: b2 1x1 128 → 7x7 192, b3 1x1 128 → 7x7 128 → "
           "7x7 192. The module: 3,702,784 weights and 1,070,104,576 MACs against 1,294,336 and 374,063,104: "
           "the factorisation saves 2,408,448 weights and 696,041,472 MACs (2.86x).")),
    "c": ("mixed9", (8, 8, 1280), "Figure 7",
          (322_437_120, 5_038_080, "8²·(1280·320 + 1280·384 + 2·3·384·384 + 1280·448 + 9·448·384 + 2·3·384·384 + 1280·192)"),
          ("Branches: b1 1x1 320; b2 1x1 384 → (1x3 384 ‖ 3x1 384); b3 1x1 448 → 3x3 384 → (1x3 384 ‖ 3x1 384); "
           "b4 3x3 avg pool → 1x1 192. Output 8x8x2048."),
          ("factorised=False: each 1x3 ‖ 3x1 pair becomes one 3x3 384→768 over the same 3x3 window: "
           "8,577,024 weights and 548,929,536 MACs against 5,038,080 and 322,437,120: the expanded filter bank "
           "saves 3,538,944 weights and 226,492,416 MACs (1.70x).")),
}

for _kind, (_module, _shape, _figure, (_macs, _weights, _formula), _branches, _saving) in _V3_MODULE_DOCS.items():
    register(Architecture(
        name=f"inception_v3_module_{_kind}",
        family="inception",
        builder=functools.partial(inception_v3_module, module=_module),
        paper=f"{RETHINKING}, {_figure}",
        description=f"Inception v3's {_figure} module as keras.applications.InceptionV3's {_module}, on its "
                    f"input {'x'.join(map(str, _shape))}; factorised=False builds the unfactorised module "
                    f"covering the same field of view.",
        defaults={"input_shape": _shape, "factorised": True},
        references=(Reference("macs", _macs, f"[count] {_formula}"),
                    Reference("kernel_weights", _weights, "[count] the convs' kernels")),
        block_of=_branch_block,
        notes=(_branches, _saving, "Each conv: Conv (no bias) → BatchNorm (shift only) → ReLU, as in Keras."),
    ))
