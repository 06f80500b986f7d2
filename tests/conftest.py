"""Shared fixtures: exports are expensive, so each architecture is exported once per session."""

from __future__ import annotations

import functools

import pytest


@functools.cache
def _run(name: str, verify: bool = True):
    from archkit.keras.pipeline import run_architecture

    return run_architecture(name, verify=verify)


@pytest.fixture(scope="session")
def arch_run():
    """arch_run(name) -> (Analysis, onnx.ModelProto), exported once per test session."""
    return _run


@pytest.fixture(scope="session", autouse=True)
def _private_export_cache(tmp_path_factory):
    """Tests never read or fill the user's export cache; within a session they share one."""
    import os

    old = os.environ.get("ARCHKIT_CACHE_DIR")
    os.environ["ARCHKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("archkit-cache"))
    yield
    if old is None:
        os.environ.pop("ARCHKIT_CACHE_DIR", None)
    else:
        os.environ["ARCHKIT_CACHE_DIR"] = old
