"""What the options' text means: sizes, shapes, values, sweeps, batch sizes, --config and the
deployment form, each checked once, here, with a one-line usage error (exit 2)."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import math
import re
from pathlib import Path
from typing import Any, NamedTuple

from archkit.deploy import DeployOptions
from archkit.errors import UsageError

__all__ = [
    "FileInputs",
    "bench_settings",
    "check_opset",
    "config",
    "config_text",
    "deploy_options",
    "file_inputs",
    "input_shapes",
    "input_values",
    "parse_input_shape",
    "parse_input_value",
    "parse_sweep",
    "positive_ints",
]


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`NAME=1,3,224,224` (a graph input's shape) or `N=8` (a symbolic dim's value)."""
    name, sep, dims = text.rpartition("=")
    try:
        if not sep or not name:
            raise ValueError
        shape = tuple(int(d) for d in dims.replace("x", ",").split(","))
        if any(d < 0 for d in shape):
            raise ValueError
    except ValueError:
        raise UsageError(f"--input-shape {text!r}: expected NAME=D1,D2,... with non-negative integers "
                         "(NAME: a graph input, or a symbolic dimension such as N=8)") from None
    return name, shape


def parse_input_value(text: str) -> tuple[str, tuple[int | float, ...]]:
    """`NAME=V` or `NAME=V1,V2,...`: a graph input's value, a scalar or a small tensor's elements
    in order (numbers; integers stay ints). Whether NAME is an input, and the count and type of
    the values, are checked against the model (archkit.onnx.graph)."""
    name, sep, text_values = text.rpartition("=")
    try:
        if not sep or not name or not text_values:
            raise ValueError
        values = tuple(_number(v) for v in text_values.split(","))
    except ValueError:
        raise UsageError(f"--input-value {text!r}: expected NAME=V or NAME=V1,V2,... with numbers "
                         "(NAME: a graph input, e.g. sr=16000)") from None
    return name, values


def _number(text: str) -> int | float:
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        v = float(text)
        if not math.isfinite(v):
            raise ValueError(text) from None
        return v


def parse_sweep(text: str) -> tuple[str, tuple[int, ...]]:
    """`width=128,256,512`: a symbolic dim of the file and the values it takes (positive)."""
    name, sep, values = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        out = tuple(int(v) for v in values.split(","))
        if not out or any(v < 1 for v in out) or len(set(out)) != len(out):
            raise ValueError
    except ValueError:
        raise UsageError(f"--sweep {text!r}: expected DIM=V1,V2,... with distinct positive integers "
                         "(DIM: a symbolic dimension of the file, such as N or width)") from None
    return name, out


def input_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
    return dict(parse_input_shape(t) for t in getattr(args, "input_shape", ()))


def input_values(args: argparse.Namespace) -> dict[str, tuple[int | float, ...]]:
    """The --input-value options as NAME → values."""
    return dict(parse_input_value(t) for t in getattr(args, "input_value", ()))


class FileInputs(NamedTuple):
    """What a FILE's inputs are fed (verify, bench): --input-shape, --input-value, --inputs."""

    shapes: dict[str, tuple[int, ...]]
    values: dict[str, tuple[int | float, ...]]
    arrays: Path | None


def file_inputs(args: argparse.Namespace) -> FileInputs:
    """The options that say what a FILE's inputs are fed, checked against each other: the arrays
    of --inputs are run as they are, so shapes, values, seeds and batch sizes do not apply to them."""
    shapes, values = input_shapes(args), input_values(args)
    arrays = getattr(args, "inputs", None)
    if arrays is not None:
        if shapes or values:
            raise UsageError(f"--inputs {arrays}: the arrays give every input's shape and values; --input-shape and "
                             "--input-value do not apply with it")
        given = [o for o, k in (("--seeds", "seeds"), ("--batch-sizes", "batch_sizes")) if getattr(args, k, None) is not None]
        if given:
            raise UsageError(f"{' and '.join(given)} {'do' if len(given) > 1 else 'does'} not apply with --inputs "
                             f"{arrays}: its arrays are run once, at their own batch")
    return FileInputs(shapes, values, arrays)


def positive_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{option} {text!r}: expected comma-separated positive integers")
    return values


def bench_settings(args: argparse.Namespace) -> tuple[int | None, tuple[int, ...]]:
    """--threads (None: the usable cores) and --batch-sizes, checked."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: expected a positive integer")
    return threads, positive_ints(getattr(args, "batch_sizes", None) or "1,32", "--batch-sizes")


def config(args: argparse.Namespace, arch: Any) -> dict[str, Any]:
    """--config KEY=VALUE pairs checked against the architecture's settings (its builder's
    keywords); values as Python literals (text if not one), of the default's type."""
    overrides = {}
    for text in getattr(args, "config", None) or []:
        key, sep, raw = (part.strip() for part in text.partition("="))
        if not sep or not key:
            raise UsageError(f"--config {text!r}: expected KEY=VALUE")
        if key not in arch.defaults:
            raise UsageError(f"--config {key}: {arch.name} has no setting {key!r}; its settings: "
                             + ", ".join(f"{k}={v!r}" for k, v in arch.defaults.items()))
        default = arch.defaults[key]
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = raw
        if isinstance(default, str) and not isinstance(value, str):
            value = raw  # variant=1 means the text "1"
        elif isinstance(default, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(default, float) and type(value) is int:
            value = float(value)
        if default is not None and type(value) is not type(default):
            raise UsageError(f"--config {text!r}: {key} must be of type {type(default).__name__}, "
                             f"like its default {default!r}")
        overrides[key] = value
    return overrides


def config_text(overrides: dict[str, Any]) -> str:
    """The settings that differ from the defaults, for a report's folder name: `-key=value`
    each (registered names hold no '-'), characters a file name should not hold made '_'."""
    def text(v: Any) -> str:
        return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

    return "".join(re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"-{k}={text(v)}") for k, v in sorted(overrides.items()))


def check_opset(opset: int | None) -> None:
    """Refuse an opset tf2onnx cannot emit before anything is built (archkit.keras.export checks it
    again, against onnx's newest too). tf2onnx's table is read from its source: importing
    tf2onnx imports TensorFlow."""
    if opset is None:
        return
    newest = None
    try:
        spec = importlib.util.find_spec("tf2onnx")  # a top-level package: found, not imported
        tree = ast.parse(Path(spec.submodule_search_locations[0], "constants.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "OPSET_TO_IR_VERSION" for t in node.targets):
                newest = max(ast.literal_eval(node.value))
    except (AttributeError, TypeError, OSError, SyntaxError, ValueError):
        pass  # an unusual install: archkit.keras.export's own check still applies
    if opset < 9 or (newest is not None and opset > newest):
        raise UsageError(f"--opset {opset}: tf2onnx here supports opsets 9 to {newest if newest is not None else '?'}")


def deploy_options(args: argparse.Namespace) -> DeployOptions:
    """The deployment form the options ask for; DeployOptions checks every value."""
    batch: int | str | None = None
    if args.batch != "dynamic":
        # text that is no positive integer goes to DeployOptions as it is, to be refused there
        batch = int(args.batch) if args.batch.isdigit() and int(args.batch) >= 1 else args.batch
    if args.keep_io_types and args.precision != "fp16":
        raise UsageError("--keep-io-types applies to --precision fp16")
    if args.quantization is not None and args.precision != "int8":
        raise UsageError(f"--quantization {args.quantization} applies to --precision int8")
    return DeployOptions(layout=args.layout, batch=batch, precision=args.precision,
                         quantization=args.quantization or "static",
                         calibration=args.calibration, calibration_samples=args.calibration_samples,
                         keep_io_types=args.keep_io_types)
