"""archkit's errors. Each kind maps to one documented exit code (README, "Exit codes").

Library code raises these; only the CLI turns them into a one-line message and an exit code.
"""

from __future__ import annotations


class ArchkitError(Exception):
    """Base class: a problem archkit can name in one line."""

    exit_code = 1


class InternalError(ArchkitError):
    """A bug in archkit found where it happened (a cost rule failing on an op that passed load's
    checks): the message names where and asks for a report."""

    exit_code = 1


class UsageError(ArchkitError):
    """Bad command line: unknown architecture, malformed option value."""

    exit_code = 2


class InputError(ArchkitError):
    """The input file is missing, a folder, not a regular file, or unreadable; or weights it
    names are missing where they are needed."""

    exit_code = 3


class MalformedModelError(ArchkitError):
    """The file is not a valid ONNX model (truncated, wrong format, inconsistent graph)."""

    exit_code = 4


class UnsafeModelError(ArchkitError):
    """The model was refused because reading it could reach outside where the user pointed."""

    exit_code = 5


class UnsupportedError(ArchkitError):
    """An op archkit cannot cost under --strict, or an export that would be invalid."""

    exit_code = 6


class ExportError(UnsupportedError):
    """The Keras → ONNX export failed or produced a model that does not pass its checks."""


class ResourceError(ArchkitError):
    """A size, depth or time limit was exceeded, or a child process crashed."""

    exit_code = 7


class ParityError(ArchkitError):
    """onnxruntime and Keras disagree beyond the documented tolerances."""

    exit_code = 8


class OutputError(ArchkitError):
    """An output file or folder could not be written."""

    exit_code = 9


EXIT_CODES = {
    0: "success",
    1: "internal error (a bug: please report it with --debug output)",
    2: "usage: unknown architecture, malformed option",
    3: "input missing, a folder, or unreadable; weights missing where needed (verify, bench)",
    4: "malformed model (not ONNX, truncated, inconsistent graph or tensor sizes)",
    5: "unsafe model rejected (external data outside the model's folder, links, unknown keys)",
    6: "unsupported op (--strict) or export failure",
    7: "resource limit exceeded (--max-bytes, subgraph depth) or child process crashed or timed out",
    8: "parity mismatch between onnxruntime and Keras",
    9: "output could not be written",
}
