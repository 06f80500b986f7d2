"""The Inception family (architectures/inception.py) against the papers, keras.applications and
closed-form arithmetic (shared/REFERENCES.md). Each architecture is exported once per session
(`arch_run`); the unfactorised comparison modules once per module, without parity. The
references: tests/test_references.py."""

from __future__ import annotations

import functools

import pytest

import architectures
from architectures import Reference, inception
from tests.references import reproduces

INCEPTION = [a.name for a in architectures.all_architectures() if a.family == "inception"]
MODULES = sorted(inception.UNFACTORISED)


@functools.cache
def _unfactorised(name: str):
    from archkit.keras.pipeline import run_architecture

    analysis, _ = run_architecture(name, verify=False, **inception.UNFACTORISED[name])
    return analysis


def test_the_family_is_registered():
    assert INCEPTION == ["inception_v1", "inception_v1_module", "inception_v2", "inception_v2_module",
                         "inception_v3", "inception_v3_module_a", "inception_v3_module_b", "inception_v3_module_c"]


# (complete export, parity and the roll-up invariant: tests/test_registry.py)


# --- GoogLeNet ----------------------------------------------------------------------------------

def _v1_weights(cin, r):
    """Closed form: the six convolutions of a Table 1 row."""
    return cin * r.ch1x1 + cin * r.ch3x3red + 9 * r.ch3x3red * r.ch3x3 + cin * r.ch5x5red + 25 * r.ch5x5red * r.ch5x5 + cin * r.pool_proj


def test_inception_v1_totals(arch_run):
    analysis, _ = arch_run("inception_v1")
    total = analysis.costs.total()
    assert analysis.keras_params == {"total": 6_998_552, "trainable": 6_998_552, "non_trainable": 0}
    assert total["kernel_weights"] == 6_990_272
    assert total["params"] == 6_998_552  # every kernel and bias stored once, nothing folded
    assert total["macs"] == 1_582_671_872


# (block, MACs, kernel weights) from the configuration, block by block.
V1_BLOCKS = {
    "conv1": (112 * 112 * 7 * 7 * 3 * 64, 7 * 7 * 3 * 64),                                   # 118,013,952
    "conv2": (56 * 56 * (64 * 64 + 9 * 64 * 192), 64 * 64 + 9 * 64 * 192),                   # 359,661,568
    "inception_3a": (28 * 28 * 163_328, 163_328),
    "inception_3b": (28 * 28 * 388_096, 388_096),
    "inception_4c": (14 * 14 * 509_440, 509_440),
    "inception_5a": (7 * 7 * 1_042_432, 1_042_432),
    "inception_5b": (7 * 7 * 1_442_816, 1_442_816),
    "classifier": (1024 * 1000, 1024 * 1000),
}


def test_inception_v1_blocks_equal_closed_form(arch_run):
    analysis, _ = arch_run("inception_v1")
    blocks = analysis.costs.by_block().set_index("block")
    t = inception.TABLE_1
    inputs = {"3a": 192, "3b": 256, "4c": 512, "5a": 832, "5b": 832}
    for b, cin in inputs.items():
        assert _v1_weights(cin, t[b]) == V1_BLOCKS[f"inception_{b}"][1]
    for block, (macs, weights) in V1_BLOCKS.items():
        assert (blocks.loc[block, "macs"], blocks.loc[block, "kernel_weights"]) == (macs, weights), block
    # The blocks are Table 1's rows, in its order; pools and LRN cost no MACs.
    assert list(blocks.index) == [r["block"] for r in inception.TABLE_1_ROWS]
    assert blocks.loc[["pool1", "pool2", "pool3", "pool4", "pool5"], "macs"].sum() == 0


def test_inception_v1_paper_table_and_its_disagreements(arch_run):
    """Table 1's params (K = 1024) and ops agree with the counted blocks except where a note says why."""
    analysis, _ = arch_run("inception_v1")
    blocks = analysis.costs.by_block().set_index("block")
    noted = set()
    for row in inception.TABLE_1_ROWS:
        if row["params"] is None:
            continue
        weights, macs = blocks.loc[row["block"], "kernel_weights"], blocks.loc[row["block"], "macs"]
        # within 2.5% for params; within 1% or one printed unit (1M) for ops
        off = (abs(weights - row["params_value"]) > 0.025 * row["params_value"]
               or abs(macs - row["ops_value"]) > max(0.01 * row["ops_value"], 1e6))
        if off:
            noted.add(row["block"])
            assert row.get("note"), row["block"]
    assert noted == {"conv1", "inception_4c", "inception_5a"}
    # The paper's totals are its columns' sums: 6,797.7K and 1,502M.
    assert round(sum(float(r["params"][:-1]) for r in inception.TABLE_1_ROWS if r["params"]), 1) == 6797.7
    assert sum(int(r["ops"][:-1]) for r in inception.TABLE_1_ROWS if r["ops"]) == 1502
    # conv1's printed ops are those of a separable 7x7/2 conv with depth multiplier 8: BN-Inception's
    # conv1 (inception_v2, separable_conv1=True), to the table's printed unit.
    conv1 = next(r for r in inception.TABLE_1_ROWS if r["block"] == "conv1")
    v2_blocks = arch_run("inception_v2")[0].costs.by_block().set_index("block")
    assert reproduces(Reference("macs", conv1["ops_value"], "Table 1", rounding=1e6), v2_blocks.loc["conv1", "macs"])
    assert not reproduces(Reference("macs", conv1["ops_value"], "Table 1", rounding=1e6), blocks.loc["conv1", "macs"])
    for row in inception.TABLE_1_ROWS:
        if row["#1x1"] is not None:
            assert inception.TABLE_1[row["block"].removeprefix("inception_")] == tuple(row[c] for c in inception._T1_COLUMNS)


def test_inception_v1_lrn_exports_as_onnx_lrn(arch_run):
    _, proto = arch_run("inception_v1")
    lrn = [n for n in proto.graph.node if n.op_type == "LRN"]
    assert len(lrn) == 2
    for node in lrn:
        attrs = {a.name: (a.i if a.type == a.INT else a.f) for a in node.attribute}
        assert attrs["size"] == 5 and attrs["alpha"] == pytest.approx(1e-4) and attrs["beta"] == pytest.approx(0.75)
        assert attrs.get("bias", 1.0) == pytest.approx(1.0)


def test_inception_v1_auxiliary_classifiers():
    """Two heads: 5x5/3 avg pool, 1x1 conv 128, FC 1024, FC 1000 (Keras build only)."""
    arch = architectures.get("inception_v1")
    model = arch.build(aux_heads=True)
    heads = {"aux1": 0, "aux2": 0}
    for l in model.layers:
        if l.name.startswith("aux"):
            heads[arch.block(l.name)] += l.count_params()
    assert heads == {
        "aux1": (512 * 128 + 128) + (2048 * 1024 + 1024) + (1024 * 1000 + 1000),   # on 4a, 512 maps
        "aux2": (528 * 128 + 128) + (2048 * 1024 + 1024) + (1024 * 1000 + 1000),   # on 4d, 528 maps
    }
    assert model.count_params() == 6_998_552 + heads["aux1"] + heads["aux2"]
    assert f"+{heads['aux1']:,} and +{heads['aux2']:,} parameters" in " ".join(arch.notes)
    assert [tuple(o.shape) for o in model.outputs] == [(None, 1000)] * 3
    assert list(model.output_names) == ["classifier_softmax", "aux1_softmax", "aux2_softmax"]


def test_inception_v1_layer_names_are_hierarchical():
    arch = architectures.get("inception_v1")
    model = arch.build()
    names = [l.name for l in model.layers]
    assert {"conv1_7x7_s2", "pool1_norm1", "conv2_3x3_reduce", "conv2_3x3", "conv2_norm2",
            "inception_3a_b1_1x1", "inception_3a_b2_reduce", "inception_3a_b2_3x3", "inception_3a_b3_reduce",
            "inception_3a_b3_5x5", "inception_3a_b4_pool", "inception_3a_b4_proj", "inception_3a_concat",
            "classifier_linear", "classifier_softmax"} <= set(names)
    assert {arch.block(n) for n in names} - {"image"} == {r["block"] for r in inception.TABLE_1_ROWS}


# --- modules: what the reductions and factorisations save --------------------------------------

# Closed form (kernel weights, MACs) of each module and of its unfactorised counterpart.
MODULE_FORMS = {
    "inception_v1_module": (
        # Figure 2(b): 1x1 64 | 1x1 96 → 3x3 128 | 1x1 16 → 5x5 32 | pool → 1x1 32, on 28x28x192
        192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32,
        # Figure 2(a): 1x1 64 | 3x3 128 | 5x5 32 | pool
        192 * 64 + 9 * 192 * 128 + 25 * 192 * 32,
        28 * 28),
    "inception_v2_module": (
        # 1x1 64 | 1x1 64 → 3x3 64 | 1x1 64 → 3x3 96 → 3x3 96 | pool → 1x1 32, on 28x28x192
        192 * 64 + 192 * 64 + 9 * 64 * 64 + 192 * 64 + 9 * 64 * 96 + 9 * 96 * 96 + 192 * 32,
        192 * 64 + 192 * 64 + 9 * 64 * 64 + 192 * 64 + 25 * 64 * 96 + 192 * 32,
        28 * 28),
    "inception_v3_module_a": (
        # 1x1 64 | 1x1 48 → 5x5 64 | 1x1 64 → 3x3 96 → 3x3 96 | pool → 1x1 64, on 35x35x288
        288 * 64 + 288 * 48 + 25 * 48 * 64 + 288 * 64 + 9 * 64 * 96 + 9 * 96 * 96 + 288 * 64,
        288 * 64 + 288 * 48 + 25 * 48 * 64 + 288 * 64 + 25 * 64 * 96 + 288 * 64,
        35 * 35),
    "inception_v3_module_b": (
        # 1x1 192 | 1x1 128 → 1x7 128 → 7x1 192 | 1x1 128 → (7x1, 1x7, 7x1) 128 → 1x7 192 | pool → 1x1 192
        768 * 192 + 768 * 128 + 7 * 128 * 128 + 7 * 128 * 192 + 768 * 128 + 3 * 7 * 128 * 128 + 7 * 128 * 192 + 768 * 192,
        768 * 192 + 768 * 128 + 49 * 128 * 192 + 768 * 128 + 49 * 128 * 128 + 49 * 128 * 192 + 768 * 192,
        17 * 17),
    "inception_v3_module_c": (
        # 1x1 320 | 1x1 384 → (1x3 ‖ 3x1) 384 | 1x1 448 → 3x3 384 → (1x3 ‖ 3x1) 384 | pool → 1x1 192, on 8x8x1280
        1280 * 320 + 1280 * 384 + 2 * 3 * 384 * 384 + 1280 * 448 + 9 * 448 * 384 + 2 * 3 * 384 * 384 + 1280 * 192,
        1280 * 320 + 1280 * 384 + 9 * 384 * 768 + 1280 * 448 + 9 * 448 * 384 + 9 * 384 * 768 + 1280 * 192,
        8 * 8),
}

# What the factorisation saves: (weights, MACs), as stated in the architectures' notes.
SAVINGS = {
    "inception_v1_module": (223_744, 175_415_296),
    "inception_v2_module": (15_360, 12_042_240),
    "inception_v3_module_a": (15_360, 18_816_000),
    "inception_v3_module_b": (2_408_448, 696_041_472),
    "inception_v3_module_c": (3_538_944, 226_492_416),
}


@pytest.mark.parametrize("name", MODULES)
def test_module_and_its_unfactorised_counterpart_equal_closed_form(arch_run, name):
    factorised, _ = arch_run(name)
    unfactorised = _unfactorised(name)
    weights, weights_unf, positions = MODULE_FORMS[name]
    counted = factorised.costs.total()["kernel_weights"], factorised.costs.total()["macs"]
    counted_unf = unfactorised.costs.total()["kernel_weights"], unfactorised.costs.total()["macs"]
    assert counted == (weights, positions * weights)
    assert counted_unf == (weights_unf, positions * weights_unf)
    assert unfactorised.costs.complete
    saved = (counted_unf[0] - counted[0], counted_unf[1] - counted[1])
    assert saved == SAVINGS[name]
    notes = " ".join(architectures.get(name).notes)
    assert f"{saved[0]:,} weights and {saved[1]:,} MACs" in notes


@pytest.mark.parametrize("name", MODULES)
def test_module_blocks_are_its_branches(arch_run, name):
    """Per-branch costs; for BatchNorm modules this needs the fused convs (tf2onnx's `Conv__N`)
    attributed to the layer their weights name, not to the layer before them."""
    analysis, _ = arch_run(name)
    blocks = analysis.costs.by_block().set_index("block")
    assert set(blocks.index) <= {"b1", "b2", "b3", "b4", "concat"}
    assert {"b1", "b2", "b3"} <= set(blocks.index)
    assert blocks.loc["b1", "macs"] == B1_MACS[name]
    assert blocks.loc["concat", "macs"] == 0
    assert blocks.macs.sum() == analysis.costs.total()["macs"]


# The 1x1 branch: output positions x input maps x its maps.
B1_MACS = {
    "inception_v1_module": 28 * 28 * 192 * 64,
    "inception_v2_module": 28 * 28 * 192 * 64,
    "inception_v3_module_a": 35 * 35 * 288 * 64,
    "inception_v3_module_b": 17 * 17 * 768 * 192,
    "inception_v3_module_c": 8 * 8 * 1280 * 320,
}


# --- BN-Inception ---------------------------------------------------------------------------------

def test_inception_v2_follows_the_bn_paper_table(arch_run):
    analysis, _ = arch_run("inception_v2")
    arch = architectures.get("inception_v2")
    model = arch.build()
    outputs = {l.name.removesuffix("_concat"): tuple(l.output.shape[1:]) for l in model.layers if l.name.endswith("_concat")}
    for row in inception.BN_TABLE_ROWS:
        if row["block"] in outputs:
            built = "x".join(map(str, outputs[row["block"]]))
            assert built == row["output size"] or row.get("note"), row["block"]
    assert outputs["inception_3c"] == (14, 14, 576) and outputs["inception_4e"] == (7, 7, 1024)
    assert outputs["inception_4c"] == outputs["inception_4d"] == (14, 14, 576)
    assert list(analysis.costs.by_block().block) == ["conv1", "pool1", "conv2", "pool2",
                                                     *(f"inception_{b}" for b in inception.BN_INCEPTION), "pool5", "classifier"]
    assert analysis.keras_params == {"total": 11_208_192, "trainable": 11_188_288, "non_trainable": 19_904}
    assert analysis.costs.total()["macs"] == 1_934_857_216


def test_inception_v2_blocks_equal_closed_form(arch_run):
    analysis, _ = arch_run("inception_v2")
    blocks = analysis.costs.by_block().set_index("block")
    # 3a as the standalone module; 3c (stride 2, no 1x1, pool passed through) on 28x28x320.
    assert blocks.loc["inception_3a", "macs"] == 28 * 28 * MODULE_FORMS["inception_v2_module"][0]
    assert blocks.loc["inception_3c", "macs"] == (28 * 28 * (320 * 128 + 320 * 64 + 9 * 64 * 96)
                                                  + 14 * 14 * (9 * 128 * 160 + 9 * 96 * 96))
    # the separable first conv: 7x7 depthwise x8 on 3 maps, then 1x1 24 → 64, at 112x112
    assert blocks.loc["conv1", "macs"] == 112 * 112 * (7 * 7 * 3 * 8 + 24 * 64)
    assert blocks.loc["conv2", "macs"] == 56 * 56 * (64 * 64 + 9 * 64 * 192)
    assert blocks.loc[["pool1", "pool2", "pool5"], "macs"].sum() == 0


# --- Inception v3 ------------------------------------------------------------------------------

def test_inception_v3_counts_equal_keras_applications(arch_run):
    analysis, _ = arch_run("inception_v3")
    assert analysis.keras_params == {"total": 23_851_784, "trainable": 23_817_352, "non_trainable": 34_432}
    assert analysis.costs.total()["macs"] == 5_713_216_096
    blocks = analysis.costs.by_block()
    assert list(blocks.block) == ["conv1", "conv2", "conv3", "pool1", "conv4", "conv5", "pool2",
                                  *(f"mixed{i}" for i in range(11)), "pool3", "classifier"]


def test_inception_v3_blocks_equal_closed_form(arch_run):
    analysis, _ = arch_run("inception_v3")
    blocks = analysis.costs.by_block().set_index("block")
    assert blocks.loc["conv1", "macs"] == 149 * 149 * 9 * 3 * 32
    assert blocks.loc["conv4", "macs"] == 73 * 73 * 64 * 80
    assert blocks.loc["mixed2", "macs"] == 35 * 35 * MODULE_FORMS["inception_v3_module_a"][0]
    assert blocks.loc["mixed4", "macs"] == 17 * 17 * MODULE_FORMS["inception_v3_module_b"][0]
    assert blocks.loc["mixed9", "macs"] == 8 * 8 * MODULE_FORMS["inception_v3_module_c"][0]
    assert blocks.loc[["pool1", "pool2", "pool3"], "macs"].sum() == 0


def test_inception_v3_equals_keras_applications_layer_by_layer():
    """Same layers with weights, in the same (topological) order, same kinds, weight shapes and
    output shapes as keras.applications.InceptionV3(weights=None); nothing is downloaded."""
    from archkit.keras.export import import_keras

    _, keras = import_keras()
    reference = keras.applications.InceptionV3(weights=None)
    ours = architectures.get("inception_v3").build()

    def layers(model):
        return [(type(l).__name__, [tuple(w.shape) for w in l.weights], tuple(l.output.shape))
                for l in model.layers if l.weights]

    assert layers(ours) == layers(reference)
    assert len(layers(ours)) == 189
    assert ours.count_params() == reference.count_params() == 23_851_784
