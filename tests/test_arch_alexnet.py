"""AlexNet (architectures/alexnet.py): the paper's two-tower network and torchvision's one-tower
variant, against closed-form counts and torchvision (shared/REFERENCES.md). Each is exported once
per session at its published input size (`arch_run`)."""

from __future__ import annotations

import numpy as np
import pytest

import architectures
from architectures import alexnet

# Closed form, (weights + biases, MACs) per layer: paper at 227x227, torchvision at 224x224.
TWO_TOWER = {
    "conv1": (11 * 11 * 3 * 96 + 96, 55 * 55 * 96 * 11 * 11 * 3),
    "conv2": (5 * 5 * 48 * 256 + 256, 27 * 27 * 256 * 5 * 5 * 48),      # each kernel sees its tower's 48 maps
    "conv3": (3 * 3 * 256 * 384 + 384, 13 * 13 * 384 * 3 * 3 * 256),   # reads both towers
    "conv4": (3 * 3 * 192 * 384 + 384, 13 * 13 * 384 * 3 * 3 * 192),
    "conv5": (3 * 3 * 192 * 256 + 256, 13 * 13 * 256 * 3 * 3 * 192),
    "fc6": (9216 * 4096 + 4096, 9216 * 4096),
    "fc7": (4096 * 4096 + 4096, 4096 * 4096),
    "fc8": (4096 * 1000 + 1000, 4096 * 1000),
}
ONE_TOWER = {
    "conv1": (11 * 11 * 3 * 64 + 64, 55 * 55 * 64 * 11 * 11 * 3),
    "conv2": (5 * 5 * 64 * 192 + 192, 27 * 27 * 192 * 5 * 5 * 64),
    "conv3": (3 * 3 * 192 * 384 + 384, 13 * 13 * 384 * 3 * 3 * 192),
    "conv4": (3 * 3 * 384 * 256 + 256, 13 * 13 * 256 * 3 * 3 * 384),
    "conv5": (3 * 3 * 256 * 256 + 256, 13 * 13 * 256 * 3 * 3 * 256),
    "fc6": TWO_TOWER["fc6"], "fc7": TWO_TOWER["fc7"], "fc8": TWO_TOWER["fc8"],
}
FIGURES = {  # name: (layers, params, MACs), shared/REFERENCES.md
    "alexnet": (TWO_TOWER, 60_965_224, 724_406_816),
    "alexnet_onetower": (ONE_TOWER, 61_100_840, 714_188_480),
}


def test_the_family_is_registered():
    assert [a.name for a in architectures.all_architectures() if a.family == "alexnet"] == list(FIGURES)
    assert architectures.get("alexnet").defaults["input_shape"] == (227, 227, 3)
    assert architectures.get("alexnet_onetower").defaults["input_shape"] == (224, 224, 3)


def test_configuration_is_keyword_only_and_checked():
    with pytest.raises(TypeError):
        alexnet.alexnet("one_tower")
    with pytest.raises(ValueError, match="variant"):
        alexnet.alexnet(variant="three_towers")
    model = architectures.get("alexnet_onetower").build(input_shape=(128, 128, 3), classes=10)
    assert tuple(model.output.shape) == (None, 10)
    assert tuple(model.get_layer("avgpool").output.shape) == (None, 6, 6, 256)  # adaptive, as torchvision


@pytest.mark.parametrize("name", FIGURES)
def test_counts_per_layer(arch_run, name):
    layers, params, macs = FIGURES[name]
    analysis, _ = arch_run(name)
    total = analysis.costs.total()
    assert (total["macs"], analysis.keras_params["total"], total["params"]) == (macs, params, params)
    by_layer = analysis.costs.by_layer().set_index("layer")
    for layer, (p, m) in layers.items():
        assert (by_layer.loc[layer, "params"], by_layer.loc[layer, "macs"]) == (p, m), layer
    keras_layers = {l["name"]: l["trainable"] for l in analysis.keras_layers}
    assert {layer: keras_layers[layer] for layer in layers} == {layer: p for layer, (p, _) in layers.items()}
    blocks = analysis.costs.by_block().set_index("block")
    assert list(blocks.index) == list(layers)


def test_towers_export_as_plain_convolutions(arch_run):
    """conv2, conv4, conv5 are grouped: one Keras layer each, two ONNX Convs reading half the maps."""
    _, proto = arch_run("alexnet")
    weights = {t.name: tuple(t.dims) for t in proto.graph.initializer}
    convs = [(n.name, weights[n.input[1]]) for n in proto.graph.node if n.op_type == "Conv"]
    in_maps = sorted(w[1] for _, w in convs)  # ONNX Conv weights are (M, C/group, kH, kW)
    assert in_maps == sorted([3, 48, 48, 256, 192, 192, 192, 192])
    assert all(a.i == 1 for n in proto.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group")
    assert {n.op_type for n in proto.graph.node} >= {"Split", "Concat", "LRN"}


def test_lrn_is_the_papers(arch_run):
    """k = 2, n = 5, α = 1e-4, β = 0.75 (ONNX divides α by the size: tf2onnx multiplies it back)."""
    _, proto = arch_run("alexnet")
    lrn = [n for n in proto.graph.node if n.op_type == "LRN"]
    assert len(lrn) == 2
    for node in lrn:
        attrs = {a.name: (a.i if a.type == a.INT else a.f) for a in node.attribute}
        assert attrs["size"] == 5
        assert attrs["bias"] == pytest.approx(2.0)
        assert attrs["alpha"] / attrs["size"] == pytest.approx(1e-4)
        assert attrs["beta"] == pytest.approx(0.75)


def test_grouped_conv_equals_keras_grouped_conv():
    """GroupedConv2D has Conv2D(groups=2)'s weights and outputs (Keras runs the latter via XLA)."""
    from archkit.keras.export import import_keras

    _, keras = import_keras()
    GroupedConv2D, _ = alexnet.custom_layers()
    x = np.random.default_rng(0).standard_normal((2, 13, 13, 384)).astype("float32")
    mine = GroupedConv2D(256, 3, padding="same", groups=2, activation="relu")
    theirs = keras.layers.Conv2D(256, 3, padding="same", groups=2, activation="relu")
    mine.build(x.shape)
    theirs.build(x.shape)
    assert [tuple(w.shape) for w in mine.weights] == [tuple(w.shape) for w in theirs.weights] == [(3, 3, 192, 256), (256,)]
    theirs.set_weights(mine.get_weights())
    np.testing.assert_allclose(np.asarray(mine(x)), np.asarray(theirs(x)), rtol=1e-4, atol=1e-4)
