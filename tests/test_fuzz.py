"""Property: mutated and truncated ONNX models through `archkit analyse` end in archkit's own
exit codes only -- no other exception, no crash, no hang. The longer run with its counts is
benchmarks/fuzz_analyse.py; this one is small enough for every test run and reproducible
(derandomized)."""

from __future__ import annotations

import io
import random
import signal
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archkit.cli import main
from tests.builders import conv_weight_bytes, seeds
from tests.mutations import OWN_CODES, mutate_bytes, mutate_fields

SEEDS = seeds()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "weights.bin").write_bytes(conv_weight_bytes())  # the external-data seed's weights
    return d


def _analyse(path) -> tuple[int, str]:
    def hang(*_):
        raise TimeoutError("one fuzz case took more than 20 s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(20)
    err = io.StringIO()
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(err):
            rc = main(["analyse", str(path), "--format", "json"])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return rc, err.getvalue()


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, len(SEEDS) - 1), rng_seed=st.integers(0, 2**32 - 1), structural=st.booleans(),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_mutated_models_end_in_archkit_errors(folder, seed, rng_seed, structural, cut):
    rng = random.Random(rng_seed)
    data = (mutate_fields if structural else mutate_bytes)(SEEDS[seed], rng)
    if cut is not None:
        data = data[:int(len(data) * cut)]
    path = folder / "case.onnx"
    path.write_bytes(data)
    rc, err = _analyse(path)
    assert rc in OWN_CODES, err
    if rc:
        assert err.count("\n") == 1 and err.startswith("archkit: error: "), err
