"""Atomic file and folder writes: a reader never sees a half-written file or report."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from archkit.errors import OutputError

__all__ = ["atomic_write_bytes", "write_folder"]


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename it into place."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(f"{target}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{target}: cannot write ({e.strerror})") from None


def write_folder(folder: str | os.PathLike, files: Mapping[str, bytes]) -> None:
    """Replace `folder` with exactly `files`, all or nothing.

    The files are written into a fresh sibling folder which then takes the old one's place;
    if anything fails, the old folder is left as it was.
    """
    target = Path(folder)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    except OSError as e:
        raise OutputError(f"{target}: cannot write ({e.strerror})") from None
    old = target.with_name(f".{target.name}.old")
    try:
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(staging, target)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if old.exists() and not target.exists():
            os.replace(old, target)
        raise OutputError(f"{target}: cannot write ({e.strerror})") from None
    shutil.rmtree(old, ignore_errors=True)


def png_bytes(fig, *, dpi: int) -> bytes:
    """A matplotlib figure as PNG bytes, then closed. No "Software" tag: the same figure gives
    the same bytes whatever matplotlib wrote it, so committed reports stay byte-identical."""
    import matplotlib.pyplot as plt  # heavy (~0.5 s): only when a picture is drawn

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
