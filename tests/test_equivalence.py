"""archkit's architectures compute the same function as keras.applications' (archkit/keras/equivalence.py).

The default run checks one architecture per family at the smallest input keras.applications
accepts (inception_v3 75x75, resnet50 and densenet121 32x32); ARCHKIT_TEST_ALL_EXPORTS=1 adds all
seven at their default sizes (about 3 minutes more on a quiet 2-core machine). Planted differences
(a filter count, an extra or missing layer, a BatchNorm epsilon, a dropped ReLU) must fail,
naming the layer. Tensor counts are closed forms of each architecture's layer list.
"""

from __future__ import annotations

import gc
import os

import pytest

from archkit.errors import UsageError
from archkit.keras.equivalence import ATOL, REFERENCES, RTOL, compare_models, equivalence

ALL = bool(os.environ.get("ARCHKIT_TEST_ALL_EXPORTS"))

# Tensors each architecture holds, from its layer list: a conv has a kernel (+ a bias in ResNet
# v1), a BatchNorm gamma, beta, moving mean and variance (InceptionV3's no gamma), the classifier
# kernel and bias.
RESNET_CONVS = {50: 1 + 3 * 16 + 4, 101: 1 + 3 * 33 + 4, 152: 1 + 3 * 50 + 4}  # stem, 3 per block, projections
DENSE_LAYERS = {121: 6 + 12 + 24 + 16, 169: 6 + 12 + 32 + 32, 201: 6 + 12 + 48 + 32}
INCEPTION_CONVS = 94  # stem 5; modules A 7 x 3, reduction A 4, B 10 x 4, reduction B 6, C 9 x 2
TENSORS = {
    "inception_v3": INCEPTION_CONVS * (1 + 3) + 2,
    **{f"resnet{d}": n * (2 + 4) + 2 for d, n in RESNET_CONVS.items()},
    # convs: stem, 2 per dense layer, 3 transitions (no bias); BatchNorms: the same + the final `bn`
    **{f"densenet{d}": (1 + 2 * n + 3) + (1 + 2 * n + 3 + 1) * 4 + 2 for d, n in DENSE_LAYERS.items()},
}
SMALLEST = {"inception_v3": 75, "resnet50": 32, "densenet121": 32}


@pytest.fixture(autouse=True)
def _free_keras():
    """Each case builds two large models: release them before the next."""
    yield
    from archkit.keras.export import import_keras

    _, keras = import_keras()
    keras.backend.clear_session()
    gc.collect()


def _check(name: str, size: int | None):
    result = equivalence(name, input_size=size)
    assert result.ok, result.reason
    assert result.copied == TENSORS[name]
    if name == "inception_v3":  # Keras' automatic names, archkit's descriptive ones
        assert (result.by_name, result.by_order, result.matched_by) == (0, TENSORS[name], "order")
    else:  # keras.applications' names, every one
        assert (result.by_name, result.by_order, result.matched_by) == (TENSORS[name], 0, "name")
    assert result.max_abs_error <= ATOL + RTOL * result.output_scale
    assert result.feature_abs_error <= ATOL + RTOL * result.feature_scale
    # not vacuous: the softmax is not one-hot (calibrated BatchNorm), the features not all zero
    assert 0.0 < result.output_scale < 0.9 and result.feature_scale > 0.1
    assert result.reference == f"keras.applications.{REFERENCES[name][0]}"
    size = "x".join(map(str, result.input_shape[:2]))
    assert result.statement() == (f"computes the same function as {result.reference} (max abs error of the outputs "
                                  "and of the classifier's features below 1e-6 + 1e-5 x their largest value, on 8 "
                                  f"seeded {size} inputs)")
    return result


@pytest.mark.parametrize("name", sorted(SMALLEST))
def test_same_function_at_the_smallest_input(name):
    result = _check(name, SMALLEST[name])
    assert result.input_shape == (SMALLEST[name], SMALLEST[name], 3)


@pytest.mark.skipif(not ALL, reason="set ARCHKIT_TEST_ALL_EXPORTS=1")
@pytest.mark.parametrize("name", list(REFERENCES))
def test_same_function_at_the_default_size(name):
    result = _check(name, None)
    assert result.input_shape == ((299, 299, 3) if name == "inception_v3" else (224, 224, 3))


def test_every_keras_applications_counterpart_is_covered():
    import architectures

    assert set(REFERENCES) == {"inception_v3", "resnet50", "resnet101", "resnet152",
                               "densenet121", "densenet169", "densenet201"} <= set(architectures.names())
    assert set(TENSORS) == set(REFERENCES)


@pytest.mark.parametrize("name,size,message", [
    ("resnet18", None, "keras.applications has no model of it"),
    ("resnet50", 31, "at least 32x32, not 31x31"),
    ("inception_v3", 74, "at least 75x75, not 74x74"),
])
def test_bad_requests_are_usage_errors(name, size, message):
    with pytest.raises(UsageError, match=message):
        equivalence(name, input_size=size)


# --- planted differences ----------------------------------------------------------------------------

def _keras():
    from archkit.keras.export import import_keras

    return import_keras()[1]


def _mutated(model, layer: str, **changes):
    """`model` rebuilt from its config with `changes` in one layer's config."""
    config = model.get_config()
    (entry,) = [e for e in config["layers"] if e["config"]["name"] == layer]
    entry["config"].update(changes)
    for e in config["layers"]:
        e.pop("build_config", None)  # the layers after it are built for the shapes they now receive
    return _keras().Model.from_config(config)


def _pair(name: str, size: int):
    import architectures

    builder, _ = REFERENCES[name]
    ours = architectures.get(name).build(input_shape=(size, size, 3))
    reference = getattr(_keras().applications, builder)(weights=None, input_shape=(size, size, 3))
    return ours, reference, f"keras.applications.{builder}"


def test_a_filter_count_changed_fails_naming_the_layer():
    ours, reference, ref_name = _pair("resnet50", 32)
    planted = _mutated(reference, "conv3_block2_2_conv", filters=96)
    result = compare_models(ours, planted, architecture="resnet50", reference_name=ref_name)
    assert not result.ok and result.max_abs_error is None  # nothing run
    assert result.layer == "conv3_block2_2_conv"
    assert result.reason == "archkit's layer conv3_block2_2_conv: kernel shape (3, 3, 128, 128) against (3, 3, 128, 96)"
    assert result.statement().startswith("does not compute the same function as keras.applications.ResNet50: ")


def test_a_filter_count_changed_fails_naming_both_layers_when_paired_by_order():
    ours, reference, ref_name = _pair("inception_v3", 75)
    mine = [layer.name for layer in ours.layers if layer.weights]
    theirs = [layer.name for layer in reference.layers if layer.weights]
    at = mine.index("mixed4_b3_7x1a_conv")
    planted = _mutated(reference, theirs[at], filters=96)
    result = compare_models(ours, planted, architecture="inception_v3", reference_name=ref_name)
    assert not result.ok and result.layer == "mixed4_b3_7x1a_conv"
    assert result.reason == (f"archkit's layer mixed4_b3_7x1a_conv (paired by order with {ref_name}'s {theirs[at]}): "
                             "kernel shape (7, 1, 128, 128) against (7, 1, 128, 96)")


def test_a_batchnorm_epsilon_changed_fails_at_that_layer():
    """The weights match; the outputs do not: the first differing layer is the one changed.
    Inception's epsilon (1e-3) for ResNet's (1.001e-5) moves the output far beyond the tolerance."""
    ours, reference, ref_name = _pair("resnet50", 32)
    planted = _mutated(reference, "conv3_block1_2_bn", epsilon=1e-3)
    result = compare_models(ours, planted, architecture="resnet50", reference_name=ref_name)
    assert not result.ok and result.copied == TENSORS["resnet50"]
    assert result.feature_abs_error > 10 * (ATOL + RTOL * result.feature_scale)
    assert result.layer == "conv3_block1_2_bn"
    assert "first at archkit's layer conv3_block1_2_bn:" in result.reason


def test_a_relu_dropped_fails_at_that_layer():
    """An unweighted layer: compared where the names agree."""
    ours, reference, ref_name = _pair("densenet121", 32)
    planted = _mutated(reference, "conv3_block2_1_relu", activation="linear")
    result = compare_models(ours, planted, architecture="densenet121", reference_name=ref_name)
    assert not result.ok and result.layer == "conv3_block2_1_relu"


def _tiny(*layers, scale=True):
    """Input 8x8x3 → the given layers (name, filters) as 3x3 convs → BatchNorm → pool → Dense(4)."""
    keras = _keras()
    x = inputs = keras.Input((8, 8, 3))
    for name, filters in layers:
        x = keras.layers.Conv2D(filters, 3, padding="same", name=name)(x)
    x = keras.layers.BatchNormalization(scale=scale, name="norm")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="head")(x))


def test_tiny_models_pair_by_name_then_by_order():
    ours = _tiny(("a", 5), ("b", 6))
    result = compare_models(ours, _tiny(("a", 5), ("other", 6)), architecture="tiny", reference_name="ref", samples=3)
    assert result.ok and result.max_abs_error == 0.0 and result.samples == 3
    # a, norm, head by name (2 + 4 + 2 tensors), b ↔ other by order (2)
    assert (result.by_name, result.by_order, result.layers_by_name, result.layers_by_order) == (8, 2, 3, 1)
    assert result.matched_by == "name and order"


@pytest.mark.parametrize("theirs,layer,reason", [
    ((("a", 5), ("b", 6), ("c", 6)), "c", "ref's layer c (Conv2D) has no counterpart in archkit's model"),
    ((("a", 5),), "b", "archkit's layer b (Conv2D) has no counterpart in ref"),
    ((("a", 5), ("b", 7)), "b", "archkit's layer b: kernel shape (3, 3, 5, 6) against (3, 3, 5, 7)"),
])
def test_tiny_models_left_over_or_misshapen_layers_fail(theirs, layer, reason):
    result = compare_models(_tiny(("a", 5), ("b", 6)), _tiny(*theirs), architecture="tiny", reference_name="ref")
    assert not result.ok and result.layer == layer
    assert result.reason.startswith(reason)


def test_tiny_models_the_same_shapes_with_other_variables_fail():
    result = compare_models(_tiny(("a", 5)), _tiny(("a", 5), scale=False), architecture="tiny", reference_name="ref")
    assert not result.ok and result.layer == "norm"
    assert result.reason == ("archkit's layer norm: variables gamma, beta, moving_mean, moving_variance against "
                             "beta, moving_mean, moving_variance")
