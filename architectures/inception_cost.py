"""The notes' inception cost arithmetic ("Camadas Inception") as three runnable modules.

All three take a 28x28 input with 192 maps and give 32 output maps per branch, SAME padding:
  naive        one 14x14 conv 192→32                            14²·28²·192·32
  two_kernels  a 5x5 and a 3x3 conv 192→32 side by side         (5²+3²)·28²·192·32
  reduced      the same, each after a 1x1 reduction 192→16      see REDUCED_NOTE
"""

from __future__ import annotations

from architectures import Architecture, Reference, register

NOTES = "the course notes \"Redes de Convolução\" (Portuguese, TensorFlow 1 / Keras 2), section \"Camadas Inception\""

REDUCED_NOTE = (
    "The notes compute (1²·28²·192·32 + 5²·28²·16·32) + (1²·28²·192·32 + 3²·28²·16·32) = 23,281,664: "
    "each 1x1 stage is costed with 32 output maps. The module they describe reduces to 16 maps, "
    "and a 1x1 conv 192→16 costs 1²·28²·192·16 = 2,408,448, not 4,816,896; with 16 maps the "
    "module costs 2·2,408,448 + (5²+3²)·28²·16·32 = 18,464,768. archkit counts the module as described."
)

_DEFAULTS = {"input_shape": (28, 28, 192), "maps": 32, "reduce_to": 16}


def _conv(x, filters, size, name):
    from keras import layers  # heavy: the registry loads without TensorFlow

    return layers.Conv2D(filters, size, padding="same", activation="relu", name=name)(x)


def inception_cost(*, variant, input_shape=(28, 28, 192), maps=32, reduce_to=16):
    import keras  # heavy: the registry loads without TensorFlow
    from keras import layers  # heavy: the registry loads without TensorFlow

    x = inputs = keras.Input(shape=input_shape, name="image")
    if variant == "naive":
        outputs = _conv(x, maps, 14, "conv_14x14")                      # 28x28x32
    else:
        branches = []
        for size in (5, 3):
            b = x
            if variant == "reduced":
                b = _conv(b, reduce_to, 1, f"b{size}x{size}_reduce")    # 28x28x16
            branches.append(_conv(b, maps, size, f"b{size}x{size}"))    # 28x28x32
        outputs = layers.Concatenate(name="concat")(branches)          # 28x28x64
    return keras.Model(inputs, outputs, name=f"inception_cost_{variant}")


def _branch(layer: str) -> str:
    return {"b5": "branch 5x5", "b3": "branch 3x3"}.get(layer[:2], layer)


def _register(variant, figure, description, note="", expected=None):
    register(Architecture(
        name=f"inception_cost_{variant}",
        family="inception_cost",
        builder=lambda **cfg: inception_cost(variant=variant, **cfg),
        paper=NOTES,
        description=description,
        defaults=dict(_DEFAULTS),
        references=(Reference("macs", figure, "notes", note, expected=expected),),
        block_of=_branch,
    ))


_register("naive", 944_111_616, "One 14x14 conv 192→32 on 28x28 (the notes' large-kernel cost).")
_register("two_kernels", 163_774_464, "Parallel 5x5 and 3x3 convs 192→32 on 28x28, concatenated.")
_register("reduced", 23_281_664, "Parallel 5x5 and 3x3 convs, each after a 1x1 reduction 192→16.", REDUCED_NOTE,
          expected=18_464_768)
