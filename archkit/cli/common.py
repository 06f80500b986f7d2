"""What several commands share: finding the target (an architecture NAME or a FILE), checking
output folders before the work, progress lines and warnings on stderr."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import architectures
from archkit.cli.options import FileInputs, deploy_options, positive_ints
from archkit.errors import OutputError, UsageError
from archkit.render.escape import terminal
from archkit.render.formats import FILE_NAMES

if TYPE_CHECKING:
    from archkit.onnx.load import Loaded
    from archkit.runtime.feeds import Feeds

__all__ = [
    "Progress",
    "architecture",
    "connectivity_folder",
    "file_feeds",
    "file_only",
    "is_file_target",
    "name_only",
    "registered",
    "report_folder",
    "warn",
    "warn_line",
    "writable",
]


def registered(name: str) -> str | None:
    """The registered name `name` spells, in any letter case; None if none."""
    names = architectures.names()
    same = [n for n in names if n == name] or [n for n in names if n.casefold() == name.casefold()]
    return same[0] if len(same) == 1 else None


def architecture(name: str):
    """The registered architecture `name` names, in any letter case; unknown names fail
    (exit 2, with the closest names)."""
    return architectures.get(registered(name) or name)


def is_file_target(target: str) -> bool:
    """A FILE, not an architecture NAME: an existing file, or text that looks like a path
    (a suffix such as .onnx, or a folder separator) and is no registered name. A missing
    path then fails as "no such file" (exit 3), not as an unknown architecture."""
    if Path(target).is_file():
        return True
    if registered(target):
        return False
    return bool(Path(target).suffix) or any(sep and sep in target for sep in ("/", os.sep, os.altsep))



def file_only(args) -> None:
    """A FILE is as it is: the options that choose how an architecture is exported do not apply."""
    if getattr(args, "config", None):
        raise UsageError("--config sets an architecture's settings; a FILE is as it is")
    if args.opset is not None:
        raise UsageError("--opset chooses how an architecture is exported; a FILE is as it is")
    if not deploy_options(args).plain:
        raise UsageError("--layout/--batch/--precision choose how an architecture is exported; a FILE is as it is")



def name_only(args: argparse.Namespace) -> None:
    """A registered architecture's inputs are its own: the options that feed a FILE do not apply."""
    given = [o for o, k in (("--input-shape", "input_shape"), ("--input-value", "input_value"), ("--inputs", "inputs"))
             if getattr(args, k, None)]
    if given:
        raise UsageError(f"{'/'.join(given)} {'apply' if len(given) > 1 else 'applies'} to FILE targets (an ONNX file's "
                         f"inputs); {args.name} is a registered architecture, whose inputs archkit makes itself")


def file_feeds(loaded: Loaded, inputs: FileInputs, args: argparse.Namespace) -> Feeds:
    """How a FILE's inputs are fed (archkit.runtime.feeds) from --input-shape, --input-value and
    --inputs; --batch-sizes given where --input-shape fixed every batch dim is a usage error."""
    from archkit.runtime.feeds import from_npz, plan  # after the checks: a usage error loads nothing heavy

    if inputs.arrays is not None:
        return from_npz(loaded.proto, inputs.arrays)
    feeds = plan(loaded.proto, input_shapes=inputs.shapes, input_values=inputs.values, what=str(loaded.path))
    given = getattr(args, "batch_sizes", None)
    if given is not None and feeds.batch_input is not None and not feeds.batched \
            and positive_ints(given, "--batch-sizes") != (feeds.batch,):
        raise UsageError(f"--batch-sizes {args.batch_sizes}: --input-shape fixes the batch (the first dim of "
                         f"{feeds.batch_input!r}, {feeds.batch}); give its other dims by name (--input-shape DIM=V) "
                         "to run at several batch sizes")
    return feeds


class Progress:
    """Each stage's name on stderr as the work reaches it, with the time since the command
    started, when stderr is a terminal; nothing otherwise (logs and pipes stay clean)."""

    def __init__(self, label: str, started: float):
        self.label, self.started = label, started
        self.on = sys.stderr.isatty()

    def __call__(self, stage: str) -> None:
        if self.on:
            print(f"archkit: {self.label}: {stage} ({time.perf_counter() - self.started:.1f} s)",
                  file=sys.stderr, flush=True)


def writable(folder: Path) -> None:
    """Fail before the expensive work if the output folder cannot be created or written."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: output folder is not writable")


def report_folder(folder: Path, source: Path | None = None) -> None:
    """A folder a report may replace: new, empty, or holding only report files; never the input's."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder" + (" (the input model?)" if source else ""))
    writable(folder)
    if source is not None:
        src, out = os.path.realpath(source), os.path.realpath(folder)
        if os.path.commonpath([src, out]) == out:
            raise OutputError(f"{folder}: holds the input {source}; a report replaces its folder, choose another")
    if folder.is_dir():
        foreign = sorted(p.name for p in folder.iterdir() if p.name not in FILE_NAMES or p.is_dir())
        if foreign:
            raise OutputError(f"{folder}: holds files that are not an archkit report ({foreign[0]!r}"
                              + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else "")
                              + "); a report replaces its folder, choose a new or empty one")


def connectivity_folder(folder: Path, source: Path | None = None) -> None:
    """connectivity -o adds its files to a folder; none of them may be the input."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder")
    writable(folder)
    if source is not None and os.path.dirname(os.path.realpath(source)) == os.path.realpath(folder) \
            and source.name.startswith(("connectivity.", "dense_blocks.")):
        raise OutputError(f"{folder}: writing the connectivity files would replace the input {source}")


def warn(analysis) -> None:
    for w in analysis.warnings:
        warn_line(w)


def warn_line(w: str) -> None:
    print(f"archkit: warning: {terminal(w)}", file=sys.stderr)

