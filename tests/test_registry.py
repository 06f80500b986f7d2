"""Every registered architecture: exports cleanly, onnxruntime agrees with Keras, costs add up,
and renders. Its published figures: tests/test_references.py."""

from __future__ import annotations

import pytest

import architectures
from archkit.render.report import paper_table, render
from tests.exports import export_param

NAMES = architectures.names()


@pytest.mark.parametrize("name", [export_param(n) for n in NAMES])
def test_architecture_end_to_end(arch_run, name):
    arch = architectures.get(name)
    analysis, _proto = arch_run(name)
    costs = analysis.costs
    assert costs.unsupported == () and costs.unknown == ()
    assert analysis.verification.ok, analysis.verification.outputs
    # Committed reports hold the verdict, not the machine-dependent errors: the verdict must not
    # be near its allowance, or another machine could flip it.
    for o in analysis.verification.outputs:
        assert o.max_abs <= o.allowed / 10, o

    total = costs.total()
    for view in (costs.by_layer(), costs.by_block(), costs.by_type()):
        for key in ("macs", "flops", "params", "kernel_weights"):
            assert view[key].sum() == total[key]
    # every ONNX op belongs to a Keras layer, every Keras layer to a block
    assert {o.layer for o in costs.ops} <= {l["name"] for l in analysis.keras_layers}
    assert sum(l["trainable"] + l["non_trainable"] for l in analysis.keras_layers) == analysis.keras_params["total"]

    if arch.paper_table:
        table = paper_table(analysis, arch.paper_table)
        assert set(table.block) <= set(costs.by_block().block)
    assert set(render(analysis, arch=arch)) >= {"README.md", "layers.csv", "ops.csv", "summary.json", "blocks.png"}


def test_names_are_unique_and_documented():
    assert len(NAMES) == len(set(NAMES))
    for arch in architectures.all_architectures():
        assert arch.description and arch.paper and arch.family
