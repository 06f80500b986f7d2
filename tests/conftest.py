"""Shared fixtures: exports are expensive, so each architecture is exported once per session."""

from __future__ import annotations

import functools

import pytest


@functools.cache
def _run(name: str, verify: bool = True):
    from archkit.pipeline import run_architecture

    return run_architecture(name, verify=verify)


@pytest.fixture(scope="session")
def arch_run():
    """arch_run(name) -> (Analysis, onnx.ModelProto), exported once per test session."""
    return _run
