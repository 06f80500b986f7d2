"""The course notes' baseline MNIST CNN (their `model.summary()`), and its dropout variant.

Layer names are the notes' own (Keras 2 numbered them from 1): conv2d_1, conv2d_2,
max_pooling2d_1, flatten_1, FC1, output.
"""

from __future__ import annotations

from architectures import Architecture, Reference, register

# The course notes "Redes de Convolução" (convolutional networks; in Portuguese, for TensorFlow 1 and Keras 2).
NOTES = "the course notes \"Redes de Convolução\" (Portuguese, TensorFlow 1 / Keras 2), section \"Uma rede de convolução\""


def baseline_cnn(*, input_shape=(28, 28, 1), classes=10, dropout=False):
    import keras  # heavy: the registry loads without TensorFlow
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(8, 3, activation="relu", name="conv2d_1")(x)                          # 26x26x8
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2d_2")(x)  # 13x13x16
    x = layers.MaxPooling2D(2, padding="same", name="max_pooling2d_1")(x)                   # 7x7x16
    x = layers.Flatten(name="flatten_1")(x)                                                # 784
    if dropout:
        x = layers.Dropout(0.25, name="dropout_1")(x)
    x = layers.Dense(64, activation="relu", name="FC1")(x)                                 # 64
    if dropout:
        x = layers.Dropout(0.5, name="dropout_2")(x)
    outputs = layers.Dense(classes, activation="softmax", name="output")(x)                # 10
    return keras.Model(inputs, outputs, name="baseline_cnn_dropout" if dropout else "baseline_cnn")


_REFS = (
    Reference("params", 52_138, "notes: model.summary()"),
    Reference("macs", 294_176, "[count] 48,672 + 194,688 + 50,176 + 640"),
)

register(Architecture(
    name="baseline_cnn",
    family="baseline",
    builder=baseline_cnn,
    paper=NOTES,
    description="The notes' MNIST CNN: two 3x3 convs, max pooling, FC1 (64), softmax output.",
    defaults={"input_shape": (28, 28, 1), "classes": 10, "dropout": False},
    references=_REFS,
))

register(Architecture(
    name="baseline_cnn_dropout",
    family="baseline",
    builder=baseline_cnn,
    paper=NOTES,
    description="The notes' MNIST CNN with Dropout 0.25 after Flatten and 0.5 after FC1.",
    defaults={"input_shape": (28, 28, 1), "classes": 10, "dropout": True},
    references=_REFS,
))
