"""Cache of exports and their parity results, so that a warm report imports no TensorFlow.

Keyed on everything that can change the export: architecture name, config, opset, the
deployment options (layout, batch, precision, quantization and a digest of user calibration
data), the versions of the libraries involved, and the source of the architecture's module and
of archkit's export, deployment and parity code. An entry holds the model, what the export
measured (export.json: time, sizes, accuracy deltas), and one verification file per
verification setting (seeds and batch sizes). Location: $ARCHKIT_CACHE_DIR, else
$XDG_CACHE_HOME/archkit, else ~/.cache/archkit. ARCHKIT_CACHE_DIR=off disables it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from archkit.errors import ArchkitError
from archkit.io import atomic_write_bytes, write_folder

__all__ = ["cache_dir", "cache_key", "load", "load_json", "load_memory_profile", "store", "store_json",
           "store_memory_profile", "store_verification"]

_LIBRARIES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "protobuf", "onnxconverter-common")
# What an export and its cached results (verification, memory profile, equivalence, layerwise) depend on, besides
# the architecture files.
_SOURCES = ("archkit/keras/export.py", "archkit/keras/parity.py", "archkit/keras/pipeline.py", "archkit/keras/equivalence.py",
            "archkit/keras/layerwise.py", "archkit/runtime/layerwise.py", "archkit/deploy/__init__.py",
            "archkit/deploy/convert.py",
            "archkit/metadata.py", "archkit/runtime/parity.py", "archkit/runtime/child.py")


def cache_dir() -> Path | None:
    env = os.environ.get("ARCHKIT_CACHE_DIR")
    if env == "off":
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "archkit"


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "-"


def cache_key(name: str, config: Mapping[str, Any], opset: int | None,
              deploy: Mapping[str, Any] | None = None) -> str:
    """`deploy`: DeployOptions.cache_fields() (None: the plain export)."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    h.update(json.dumps({"name": name, "config": config, "opset": opset, "deploy": deploy,
                         "versions": {p: _version(p) for p in _LIBRARIES}}, sort_keys=True, default=list).encode())
    # Any change to an architecture file or to the export path invalidates every entry.
    for path in sorted([*(root / rel for rel in _SOURCES), *(root / "architectures").glob("*.py")]):
        h.update(path.read_bytes())
    return f"{name}-{h.hexdigest()[:16]}"


def load(key: str, tag: str = ""):
    """(onnx bytes, verification dict for `tag` or None, export info dict), or None on a miss."""
    d = cache_dir()
    if d is None or not (d / key / "model.onnx").is_file():
        return None
    try:
        data = (d / key / "model.onnx").read_bytes()
        ver = d / key / _verification_file(tag)
        info = d / key / "export.json"
        return (data, json.loads(ver.read_text()) if ver.is_file() else None,
                json.loads(info.read_text()) if info.is_file() else {})
    except (OSError, ValueError):
        return None  # a damaged entry is a miss


def _verification_file(tag: str) -> str:
    return f"verification-{tag}.json" if tag else "verification.json"


def store(key: str, onnx_bytes: bytes, verification, tag: str = "", info: Mapping[str, Any] | None = None) -> None:
    d = cache_dir()
    if d is None:
        return
    files = {"model.onnx": onnx_bytes}
    if verification is not None:
        files[_verification_file(tag)] = json.dumps(asdict(verification), indent=1).encode()
    if info is not None:
        files["export.json"] = json.dumps(dict(info), indent=1, sort_keys=True, default=str).encode()
    try:
        write_folder(d / key, files)
    except ArchkitError:
        pass  # a cache that cannot be written only costs time


def load_json(key: str, file: str) -> dict | None:
    """A result kept beside an entry's export (`file`: e.g. "memory-profile.json"), or None. Only
    what depends on the export, the versions and the code (all in the key) is kept."""
    d = cache_dir()
    f = d / key / file if d is not None else None
    try:
        return json.loads(f.read_text()) if f is not None and f.is_file() else None
    except (OSError, ValueError):
        return None  # a damaged file is a miss


def store_json(key: str, file: str, data: Mapping[str, Any]) -> None:
    d = cache_dir()
    if d is None or not (d / key / "model.onnx").is_file():
        return
    try:
        atomic_write_bytes(d / key / file, json.dumps(dict(data), indent=1).encode())
    except ArchkitError:
        pass


def load_memory_profile(key: str) -> dict | None:
    """onnxruntime's memory profile of an entry's export (archkit.runtime.memory.measure_memory:
    runtime, events), or None. archkit's side of the check is computed again each time: only
    the measurement, which depends on the file and onnxruntime alone, is kept."""
    return load_json(key, "memory-profile.json")


def store_memory_profile(key: str, profile: Mapping[str, Any]) -> None:
    store_json(key, "memory-profile.json", profile)


def store_verification(key: str, verification, tag: str = "") -> None:
    """Add a verification (another seed/batch setting) to an existing entry."""
    d = cache_dir()
    if d is None or not (d / key / "model.onnx").is_file():
        return
    try:
        atomic_write_bytes(d / key / _verification_file(tag), json.dumps(asdict(verification), indent=1).encode())
    except ArchkitError:
        pass
