"""Every reference of every registered architecture, by the one rule of tests/references.py:
archkit's count reproduces the published figure (exactly, or to the source's rounding), or it is
the difference the reference states (`expected`), exactly."""

from __future__ import annotations

import pytest

import architectures
from archkit.render.report import reference_rows
from tests.exports import exported
from tests.references import check_reference, counted


def _tag(source: str) -> str:
    return source[1:source.index("]")] if source.startswith("[") else source.split()[0]


CASES = [pytest.param(a.name, i, id=f"{a.name}-{i}-{r.metric}-{_tag(r.source)}")
         for a in architectures.all_architectures() for i, r in enumerate(a.references)]


@pytest.mark.parametrize("name, index", CASES)
def test_reference(arch_run, name, index):
    ref = architectures.get(name).references[index]
    figures = counted(arch_run, name)
    if ref.metric not in figures:
        pytest.skip(f"{ref.metric} is counted on the export: set ARCHKIT_TEST_ALL_EXPORTS=1")
    check_reference(ref, figures[ref.metric])
    if exported(name):  # the report states the same count, and says "differs" exactly where a difference is expected
        (row,) = reference_rows(arch_run(name)[0], (ref,))
        assert row["counted"] == figures[ref.metric]
        assert (row["verdict"] == "differs (see note)") == (ref.expected is not None), row


def test_every_architecture_but_one_has_references():
    """inception_v2: the paper publishes no totals (its notes give the counted figures instead)."""
    assert [a.name for a in architectures.all_architectures() if not a.references] == ["inception_v2"]
