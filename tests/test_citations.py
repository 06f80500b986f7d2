"""What reports, docstrings and docs cite is something a reader has: the course notes by their
title (they are not shipped), never a path outside the checkout; and the walkthrough states the
notes' arrays and figures it relies on itself."""

from __future__ import annotations

from pathlib import Path

import architectures

ROOT = Path(__file__).resolve().parents[1]


def _texts():
    for folder in ("architectures", "archkit", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".md"):
                yield path, path.read_text()
    yield ROOT / "README.md", (ROOT / "README.md").read_text()


def test_nothing_cites_files_outside_the_checkout():
    for path, text in _texts():
        for marker in ("shared/", "000_ad28", "EXPORT-NOTES"):
            assert marker not in text, f"{path.relative_to(ROOT)} cites {marker!r}"


def test_reports_cite_the_notes_by_title():
    for arch in architectures.all_architectures():
        cited = [arch.paper, *arch.notes, *(r.source + " " + r.note for r in arch.references)]
        assert not any("shared/" in c or ".txt" in c for c in cited), arch.name
    for name in ("baseline_cnn", "inception_cost_reduced"):
        assert '"Redes de Convolução"' in architectures.get(name).paper


def test_walkthrough_states_what_it_relies_on():
    import numpy as np

    from archkit.course.primitives import EX0, EX1, K0, NOTES_CONV0

    text = " ".join((ROOT / "docs" / "walkthrough.md").read_text().split())  # line breaks as spaces
    # the notes' example arrays: k0 written out, ex0 and ex1 described by where their ones are
    for row in K0:
        assert "[" + ", ".join(str(int(v)) for v in row) + "]" in text
    ones0 = [int(np.argmax(r)) for r in EX0]
    assert f"columns {', '.join(map(str, ones0[:4]))}" in text and f"columns {', '.join(map(str, ones0[4:]))}" in text
    ones1 = [int(np.argmax(r)) for r in EX1]
    assert all(f"column {c} in rows {2 * i}-{2 * i + 1}" in text for i, c in enumerate(ones1[::2]))
    # the notes' printed values and figures, as the registry compares them
    for value in NOTES_CONV0.values():
        assert repr(value) in text
    for name in ("baseline_cnn", "inception_cost_naive", "inception_cost_two_kernels", "inception_cost_reduced"):
        for ref in architectures.get(name).references:
            assert f"{int(ref.value):,}" in text, (name, ref.metric)
            if ref.expected is not None:  # what archkit counts instead (the notes' third module)
                assert f"{ref.expected:,}" in text, (name, ref.metric)
