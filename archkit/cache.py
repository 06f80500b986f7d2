"""Cache of exports and their parity results, so that a warm report imports no TensorFlow.

Keyed on everything that can change the export: architecture name, config, opset, the
versions of the libraries involved, and the source of the architecture's module and of
archkit's export and parity code. Location: $ARCHKIT_CACHE_DIR, else $XDG_CACHE_HOME/archkit,
else ~/.cache/archkit. ARCHKIT_CACHE_DIR=off disables it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from archkit.errors import ArchkitError
from archkit.io import write_folder

__all__ = ["cache_dir", "cache_key", "load", "store"]

_LIBRARIES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "numpy", "protobuf")
_SOURCES = ("archkit/export.py", "archkit/verify.py", "archkit/pipeline.py")


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


def cache_key(name: str, config: Mapping[str, Any], opset: int | None) -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    h.update(json.dumps({"name": name, "config": config, "opset": opset,
                         "versions": {p: _version(p) for p in _LIBRARIES}}, sort_keys=True, default=list).encode())
    # Any change to an architecture file or to the export path invalidates every entry.
    for path in sorted([*(root / rel for rel in _SOURCES), *(root / "architectures").glob("*.py")]):
        h.update(path.read_bytes())
    return f"{name}-{h.hexdigest()[:16]}"


def load(key: str):
    """(onnx bytes, verification dict or None), or None on a miss."""
    d = cache_dir()
    if d is None or not (d / key / "model.onnx").is_file():
        return None
    try:
        data = (d / key / "model.onnx").read_bytes()
        ver = d / key / "verification.json"
        return data, json.loads(ver.read_text()) if ver.is_file() else None
    except (OSError, ValueError):
        return None  # a damaged entry is a miss


def store(key: str, onnx_bytes: bytes, verification) -> None:
    d = cache_dir()
    if d is None:
        return
    files = {"model.onnx": onnx_bytes}
    if verification is not None:
        files["verification.json"] = json.dumps(asdict(verification), indent=1).encode()
    try:
        write_folder(d / key, files)
    except ArchkitError:
        pass  # a cache that cannot be written only costs time
