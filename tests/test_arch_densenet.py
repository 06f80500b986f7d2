"""DenseNet (architectures/densenet.py) against keras.applications and torchvision
(shared/REFERENCES.md). Each depth is exported once per session at 224x224 (`arch_run`);
densenet169 and densenet201 only with ARCHKIT_TEST_ALL_EXPORTS=1 (tests/exports.py), their
counts otherwise checked on the Keras model's. The references: tests/test_references.py."""

from __future__ import annotations

import math

import pytest

import architectures
from architectures import densenet
from tests.exports import export_param, exported
from tests.references import counted, keras_figures

DEPTHS = [121, 169, 201]
NAMES = [f"densenet{d}" for d in DEPTHS]

# shared/REFERENCES.md
KERAS = {  # keras.applications.DenseNet*(weights=None): total, trainable, non-trainable
    121: (8_062_504, 7_978_856, 83_648),
    169: (14_307_880, 14_149_480, 158_400),
    201: (20_242_984, 20_013_928, 229_056),
}
TV_PARAMS = {121: 7_978_856, 169: 14_149_480, 201: 20_013_928}
MACS = {121: 2_834_161_664, 169: 3_359_843_328, 201: 4_291_365_888}

BLOCKS = ["conv1", "pool1", "dense_block1", "transition1", "dense_block2", "transition2", "dense_block3",
          "transition3", "dense_block4", "classification"]


def _layer_table(model):
    # Keras leaves its two ZeroPadding2D layers auto-named; archkit names them conv1_pad, pool1_pad.
    return [(l.name if not l.name.startswith("zero_padding2d") else "pad", type(l).__name__,
             tuple(l.output.shape), [tuple(w.shape) for w in l.weights]) for l in model.layers[1:]]


def _pads_renamed(table):
    return [("pad",) + row[1:] if row[0] in ("conv1_pad", "pool1_pad") else row for row in table]


def test_the_family_is_registered():
    archs = [a for a in architectures.all_architectures() if a.family == "densenet"]
    assert [a.name for a in archs] == NAMES
    assert {d: tuple(s) for d, s in densenet.DEPTHS.items()} == {
        121: ((6, 12, 24, 16), 32, 4, 0.5, 64), 169: ((6, 12, 32, 32), 32, 4, 0.5, 64),
        201: ((6, 12, 48, 32), 32, 4, 0.5, 64)}
    for d, s in densenet.DEPTHS.items():  # the depth in the name: stem + 2 per dense layer + 3 transitions + fc
        assert 1 + 2 * sum(s.blocks) + 3 + 1 == d


def test_configuration_is_keyword_only_and_checked():
    with pytest.raises(TypeError):
        densenet.densenet(121)
    with pytest.raises(ValueError, match="depth"):
        densenet.densenet(depth=100)
    model = architectures.get("densenet121").build(input_shape=(64, 64, 3), classes=10)
    assert tuple(model.output.shape) == (None, 10)
    assert tuple(model.get_layer("relu").output.shape) == (None, 2, 2, 1024)


@pytest.mark.parametrize("depth", DEPTHS)
def test_keras_applications_layer_by_layer(depth):
    from archkit.keras.export import import_keras

    _, keras = import_keras()
    reference = getattr(keras.applications, f"DenseNet{depth}")(weights=None)
    mine = densenet.densenet(depth=depth)
    assert _pads_renamed(_layer_table(mine)) == _layer_table(reference)
    counts = lambda m: (m.count_params(), sum(math.prod(w.shape) for w in m.trainable_weights),
                        sum(math.prod(w.shape) for w in m.non_trainable_weights))
    assert counts(mine) == counts(reference) == KERAS[depth]
    assert counts(mine)[1] == TV_PARAMS[depth]  # torchvision's learnable parameters



@pytest.mark.parametrize("depth", DEPTHS)
def test_counts(arch_run, depth):
    """archkit's counts (the Keras model's where this run does not export)."""
    name = f"densenet{depth}"
    figures = counted(arch_run, name)
    assert figures["macs"] == MACS[depth]
    assert (figures["params"], figures["trainable"], figures["non_trainable"]) == KERAS[depth]
    if exported(name):  # the export's count is the Keras model's
        keras = keras_figures(name)
        assert [keras[m] for m in ("params", "trainable", "non_trainable", "macs")] == \
            [figures[m] for m in ("params", "trainable", "non_trainable", "macs")]


@pytest.mark.parametrize("depth", [export_param(d, f"densenet{d}") for d in DEPTHS])
def test_blocks_are_table_1_rows(arch_run, depth):
    analysis, _ = arch_run(f"densenet{depth}")
    blocks = analysis.costs.by_block().set_index("block")
    assert list(blocks.index) == BLOCKS
    assert [r["block"] for r in architectures.get(f"densenet{depth}").paper_table] == BLOCKS
    k, spec = 32, densenet.DEPTHS[depth]
    # dense block 1 at 56x56: layer i reads 64 + (i-1)k maps, 1x1 to 4k, 3x3 to k
    block1 = sum(56 * 56 * ((64 + i * k) * 4 * k + 9 * 4 * k * k) for i in range(spec.blocks[0]))
    assert blocks.loc["dense_block1", "macs"] == block1
    maps1 = 64 + spec.blocks[0] * k  # 256 maps → 128, then pooled to 28x28
    assert blocks.loc["transition1", "macs"] == 56 * 56 * maps1 * maps1 // 2
    assert blocks.loc["pool1", "macs"] == 0
