"""The one place that reads ONNX files a user points at.

Weights in external files are never read: costs need only dims. A file that cannot be read,
or is not an ONNX model, becomes an archkit error naming the file and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from archkit.errors import InputError, MalformedModelError, ResourceError

__all__ = ["load_model", "MAX_BYTES"]

# protobuf cannot parse a single message over 2 GiB; refuse before reading it whole.
MAX_BYTES = 2**31 - 1


def load_model(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES) -> onnx.ModelProto:
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot access ({e.strerror})") from None
    if p.is_dir():
        raise InputError(f"{p}: is a folder, not an ONNX file")
    if st.st_size == 0:
        raise MalformedModelError(f"{p}: empty file")
    if st.st_size > max_bytes:
        raise ResourceError(f"{p}: {st.st_size:,} bytes exceeds the {max_bytes:,}-byte limit")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    return parse_model(data, origin=str(p))


def parse_model(data: bytes, *, origin: str = "<bytes>") -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise MalformedModelError(f"{origin}: not an ONNX model ({_first_line(e)})") from None
    if not model.HasField("graph") or not model.opset_import:
        raise MalformedModelError(f"{origin}: not an ONNX model (no graph or no opset_import)")
    return model


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
