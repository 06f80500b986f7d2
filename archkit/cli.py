"""The command line: the only place that prints, writes files and maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from archkit import __version__
from archkit.errors import EXIT_CODES, ArchkitError, InternalError, OutputError, ParityError, UsageError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2, instead of argparse's usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _formats(text: str) -> tuple[str, ...]:
    from archkit.render.formats import FORMATS

    parts = tuple(p.strip() for p in text.split(","))
    bad = [p for p in parts if p not in FORMATS]
    if bad or not parts:
        raise UsageError(f"--format {text!r}: expected a comma-separated list of {', '.join(FORMATS)}")
    return parts


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="archkit", description="What a CNN costs, how it is wired, whether its ONNX export is faithful.",
                epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    p.add_argument("--version", action="version", version=f"archkit {__version__}")
    p.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    # --debug is accepted after the command too (where the "rerun with --debug" hint puts it);
    # SUPPRESS keeps a subcommand from resetting the flag given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name, **kw):
        return sub.add_parser(name, parents=[common], **kw)

    command("list", help="the registered architectures")

    e = command("export", help="export an architecture to ONNX (layout, batch, precision)")
    e.add_argument("name")
    e.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default: newest tf2onnx supports)")
    _config_argument(e)
    _deploy_arguments(e)

    v = command("verify", help="onnxruntime vs Keras (NAME), or vs onnxruntime without graph optimizations (FILE)")
    v.add_argument("name", metavar="NAME|FILE")
    v.add_argument("--opset", type=int, default=None)
    v.add_argument("--seeds", type=int, default=3, help="how many input seeds (default 3)")
    v.add_argument("--batch-sizes", default="1,8", help="comma-separated batch sizes (default 1,8)")
    v.add_argument("--timeout", type=float, default=None,
                   help="seconds one onnxruntime child process may take (default 600, or $ARCHKIT_ORT_TIMEOUT)")
    _max_bytes_argument(v)
    _config_argument(v)
    _deploy_arguments(v)

    b = command("bench", help="latency in onnxruntime vs Keras, GFLOP/s and fraction of the matmul peak")
    b.add_argument("name", metavar="NAME|FILE")
    b.add_argument("--threads", type=int, default=None, help="intra-op threads for onnxruntime and TensorFlow "
                                                             "(default: the usable cores)")
    b.add_argument("--batch-sizes", default="1,32", help="comma-separated batch sizes (default 1,32)")
    b.add_argument("--runs", type=int, default=None, help="timed runs per batch size (default 30, within ~8 s)")
    b.add_argument("--no-keras", action="store_true", help="onnxruntime only")
    b.add_argument("--spinning", action="store_true",
                   help="let onnxruntime's idle threads spin-wait (its default; slow when the cores are shared)")
    b.add_argument("--opset", type=int, default=None)
    b.add_argument("--timeout", type=float, default=None, help="seconds the onnxruntime child process may take")
    _max_bytes_argument(b)
    _config_argument(b)
    _deploy_arguments(b)

    r = command("report", help="write the cost report of an architecture")
    r.add_argument("name", nargs="?")
    r.add_argument("--all", action="store_true", help="every registered architecture")
    r.add_argument("-o", "--output", "--out", dest="out", type=Path, default=Path("reports"), metavar="DIR",
                   help="parent folder (default: reports)")
    r.add_argument("--format", default="md,csv,json,png", help="comma-separated: md,csv,json,png (default: all)")
    r.add_argument("--opset", type=int, default=None)
    r.add_argument("--bench", action="store_true",
                   help="add a Deployment section: latency, GFLOP/s, fraction of peak (machine-dependent figures)")
    r.add_argument("--threads", type=int, default=None, help="with --bench: intra-op threads (default: the usable cores)")
    _config_argument(r)

    a = command("analyse", aliases=["analyze"], help="the costs of any ONNX file (no TensorFlow, no weights read)")
    a.add_argument("file", type=Path, help="the .onnx file")
    a.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="fix a graph input's shape, or a symbolic dim (N=8); repeatable; dims left free give "
                        "formulas in them, and figures with each at 1")
    _input_value_argument(a)
    a.add_argument("--sweep", action="append", default=[], metavar="DIM=V1,V2,...",
                   help="the totals at each value of a free dim (repeatable: every combination), a table and, with "
                        "-o, sweep.csv and sweep.png")
    a.add_argument("--by", default="layer", choices=("op", "layer", "block", "type"), help="the table printed (default: layer)")
    a.add_argument("--format", default=None,
                   help="printed: one of md,csv,json (default md); with -o: the files, comma-separated (default md,csv,json)")
    a.add_argument("-o", "--output", type=Path, default=None,
                   help="write the report files into this folder (new, empty, or an earlier report: it is replaced)")
    a.add_argument("--strict", action="store_true",
                   help="an op without a cost rule (unknown op, custom domain) or of unknown cost is an error (exit 6)")
    _max_bytes_argument(a)

    c = command("connectivity", help="how a network is wired: depth, branches, skips, concatenations, "
                                            "receptive fields (an architecture, or any ONNX file: no TensorFlow)")
    c.add_argument("target", metavar="NAME|FILE.onnx", help="a registered architecture or an ONNX file")
    c.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="(files) fix a graph input's shape or a symbolic dim, as for analyse")
    c.add_argument("--format", default="text", choices=("text", "md", "csv", "dot", "json"),
                   help="what is printed (default: text)")
    c.add_argument("-o", "--output", type=Path, default=None,
                   help="also write connectivity.md, .csv, .dot, .png (and dense_blocks.png) into this folder")
    _max_bytes_argument(c)

    t = command("train", help="train the notes' MNIST CNN; export it; Keras vs onnxruntime accuracy; kernels, neighbours")
    t.add_argument("name", type=str.casefold, choices=("baseline_cnn", "baseline_cnn_dropout"))
    t.add_argument("--data", default="digits",
                   help="digits (scikit-learn's, offline; default), mnist (keras' cache file, never downloaded) or FILE.npz")
    t.add_argument("--epochs", type=int, default=None, help="default: 80 on digits; 5 on MNIST, 20 with --early-stopping")
    t.add_argument("--early-stopping", action="store_true", help="hold out 5%%, stop when val_loss stalls for 2 epochs")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--query", type=int, default=0, help="test image whose nearest neighbours are drawn (default 0)")
    t.add_argument("-o", "--output", "--out", dest="out", type=Path, default=None, metavar="DIR",
                   help="folder for the model and figures (default: runs/NAME-DATA)")

    pr = command("primitives", help="the notes' convolution primitives, numpy vs onnxruntime, and their figures")
    pr.add_argument("-o", "--output", "--out", dest="out", type=Path, default=None, metavar="DIR",
                    help="write the figures (PNG) into this folder")
    return p


_DEBUG_HELP = "show tracebacks and TensorFlow's own logging"


def _input_value_argument(p: argparse.ArgumentParser) -> None:
    """--input-value NAME=V (repeatable); read with _input_values(args)."""
    p.add_argument("--input-value", action="append", default=[], metavar="NAME=V[,V...]",
                   help="a graph input's value (a number, or comma-separated numbers for a small tensor); repeatable; "
                        "an If whose condition follows from it counts only the branch taken")


def _input_values(args) -> dict[str, tuple]:
    """The --input-value options as NAME → values (a usage error, exit 2, when malformed)."""
    from archkit.onnxfile import parse_input_value

    return dict(parse_input_value(t) for t in getattr(args, "input_value", ()))


def _max_bytes_argument(p: argparse.ArgumentParser) -> None:
    def size(text: str) -> int:
        from archkit.onnx.load import parse_size  # only when given: archkit.onnx.load imports onnx

        try:
            return parse_size(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    p.add_argument("--max-bytes", type=size, default=None, metavar="SIZE",
                   help="(files) refuse an ONNX file larger than this, before reading it: 1000, 512K, 100M, 2G "
                        "(default: protobuf's limit, 2G - 1 byte; exit 7)")


def _deploy_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("deployment form (NAME only)")
    g.add_argument("--layout", default="nhwc", choices=("nhwc", "nchw"),
                   help="input layout: nhwc (Keras') or nchw (channels-first, through tf2onnx's inputs_as_nchw)")
    g.add_argument("--batch", default="dynamic", metavar="dynamic|N", help="batch dimension: symbolic (default) or fixed N")
    g.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="fp16: onnxconverter-common's float16 converter; int8: onnxruntime.quantization")
    g.add_argument("--keep-io-types", action="store_true", help="fp16: keep float32 inputs and outputs")
    g.add_argument("--quantization", default=None, choices=("static", "dynamic"),
                   help="int8: static (QDQ, calibrated; default) or dynamic (activations quantized at run time)")
    g.add_argument("--calibration", default=None, metavar="DIR|FILE.npz",
                   help="int8 static: a folder of .npy or an .npz of inputs (default: seeded inputs archkit generates)")
    g.add_argument("--calibration-samples", type=int, default=32,
                   help="int8 static without --calibration: how many generated samples (default 32)")


def _config_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="(NAME only) set one of the architecture's settings, its builder's keywords "
                        "(variant=v1.5, factorised=False, input_shape=(96,96,3); a wrong key lists them); "
                        "repeatable; VALUE is a Python literal, else text")


def _config(args, arch) -> dict:
    """--config KEY=VALUE pairs checked against the architecture's settings (its builder's
    keywords); values as Python literals (text if not one), of the default's type."""
    import ast

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


def _config_text(overrides) -> str:
    """The settings that differ from the defaults, for a report's folder name: `-key=value`
    each (registered names hold no '-'), characters a file name should not hold made '_'."""
    import re

    def text(v):
        return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

    return "".join(re.sub(r"[^A-Za-z0-9_.=+-]", "_", f"-{k}={text(v)}") for k, v in sorted(overrides.items()))


def _check_opset(opset: int | None) -> None:
    """Refuse an opset tf2onnx cannot emit before anything is built (archkit.keras.export checks it
    again, against onnx's newest too). tf2onnx's table is read from its source: importing
    tf2onnx imports TensorFlow."""
    if opset is None:
        return
    import ast
    import importlib.util

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


def _deploy_options(args):
    batch = args.batch
    if batch != "dynamic":
        try:
            batch = int(batch)
        except ValueError:
            batch = 0
        if batch < 1:
            raise UsageError(f"--batch {args.batch!r}: expected 'dynamic' or a positive integer")
    else:
        batch = None
    if args.calibration is not None and args.precision != "int8":
        raise UsageError("--calibration applies to --precision int8")
    if args.keep_io_types and args.precision != "fp16":
        raise UsageError("--keep-io-types applies to --precision fp16")
    if args.quantization is not None and args.precision != "int8":
        raise UsageError(f"--quantization {args.quantization} applies to --precision int8")
    if args.calibration_samples < 1:
        raise UsageError(f"--calibration-samples {args.calibration_samples}: expected a positive integer")
    from archkit.deploy import DeployOptions  # after the checks: it imports onnx

    return DeployOptions(layout=args.layout, batch=batch, precision=args.precision,
                         quantization=args.quantization or "static",
                         calibration=args.calibration, calibration_samples=args.calibration_samples,
                         keep_io_types=args.keep_io_types)


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{option} {text!r}: expected comma-separated positive integers")
    return values


def _registered(name: str) -> str | None:
    """The registered name `name` spells, in any letter case; None if none."""
    import architectures

    names = architectures.names()
    same = [n for n in names if n == name] or [n for n in names if n.casefold() == name.casefold()]
    return same[0] if len(same) == 1 else None


def _architecture(name: str):
    """The registered architecture `name` names, in any letter case; unknown names fail
    (exit 2, with the closest names)."""
    import architectures

    return architectures.get(_registered(name) or name)


def _is_file_target(target: str) -> bool:
    """A FILE, not an architecture NAME: an existing file, or text that looks like a path
    (a suffix such as .onnx, or a folder separator) and is no registered name. A missing
    path then fails as "no such file" (exit 3), not as an unknown architecture."""
    if Path(target).is_file():
        return True
    if _registered(target):
        return False
    return bool(Path(target).suffix) or any(sep and sep in target for sep in ("/", os.sep, os.altsep))


class _Progress:
    """Each stage's name on stderr as the work reaches it, with the time since the command
    started, when stderr is a terminal; nothing otherwise (logs and pipes stay clean)."""

    def __init__(self, label: str, started: float):
        self.label, self.started = label, started
        self.on = sys.stderr.isatty()

    def __call__(self, stage: str) -> None:
        if self.on:
            print(f"archkit: {self.label}: {stage} ({time.perf_counter() - self.started:.1f} s)",
                  file=sys.stderr, flush=True)


def _writable(folder: Path) -> None:
    """Fail before the expensive work if the output folder cannot be created or written."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: output folder is not writable")


def _report_folder(folder: Path, source: Path | None = None) -> None:
    """A folder a report may replace: new, empty, or holding only report files; never the input's."""
    from archkit.render.formats import FILE_NAMES

    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder" + (" (the input model?)" if source else ""))
    _writable(folder)
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


def _connectivity_folder(folder: Path, source: Path | None = None) -> None:
    """connectivity -o adds its files to a folder; none of them may be the input."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder")
    _writable(folder)
    if source is not None and os.path.dirname(os.path.realpath(source)) == os.path.realpath(folder) \
            and source.name.startswith(("connectivity.", "dense_blocks.")):
        raise OutputError(f"{folder}: writing the connectivity files would replace the input {source}")


def _warn(analysis) -> None:
    for w in analysis.warnings:
        _warn_line(w)


def _warn_line(w: str) -> None:
    from archkit.render.escape import terminal

    print(f"archkit: warning: {terminal(w)}", file=sys.stderr)


def _cmd_list(args) -> int:
    import architectures

    rows = [(a.name, a.family, a.description) for a in architectures.all_architectures()]
    width = max(len(r[0]) for r in rows)
    fam = max(len(r[1]) for r in rows)
    for name, family, desc in rows:
        print(f"{name:<{width}}  {family:<{fam}}  {desc}")
    return 0


def _cmd_export(args) -> int:
    arch = _architecture(args.name)  # every check before any work
    overrides = _config(args, arch)
    _check_opset(args.opset)
    deploy = _deploy_options(args)
    _writable(args.output.parent if str(args.output.parent) else Path("."))
    if args.output.exists() and args.output.is_dir():
        raise OutputError(f"{args.output}: is a folder")
    from archkit.pipeline import run_architecture

    analysis, _ = run_architecture(arch.name, opset=args.opset, verify=False, path=args.output, deploy=deploy,
                                   progress=_Progress(arch.name, args.started), **overrides)
    for line in _export_lines(analysis, deploy, args.output, time.perf_counter() - args.started):
        print(line)
    return 0


def _export_lines(analysis, deploy, output, command_seconds: float) -> list[str]:
    d = analysis.deployment or {}
    lines = [f"wrote {output} (opset {analysis.info.opset}, {deploy.describe()}, "
             f"{analysis.info.size_bytes:,} bytes, {analysis.costs.total()['ops']:,} ops)"]
    inputs = ", ".join(f"{n} {s}" for n, s in analysis.info.inputs)
    lines.append(f"inputs: {inputs}; Transpose ops left: {d.get('transposes', '?')}")
    deltas = d.get("deltas")
    if deltas:
        lines.append(f"size: {deltas['size_bytes']:,} bytes vs {deltas['fp32_size_bytes']:,} in fp32: "
                     f"{deltas['size_ratio']:.2f}x smaller ({deltas['size_bytes'] - deltas['fp32_size_bytes']:+,} bytes)")
        for out, o in deltas["outputs"].items():
            lines.append(f"accuracy vs fp32 on {deltas['samples']} seeded inputs, output {out!r}: top-1 agreement "
                         f"{o['top1_agreement']:.1%}, top-5 {o['top5_agreement']:.1%}, max abs error "
                         f"{o['max_abs_error']:.2g}, max rel {o['max_rel_error']:.2g}")
    # export_seconds: Keras -> ONNX alone (trace, tf2onnx, checker); the command also starts
    # TensorFlow, builds the model and runs the file in onnxruntime.
    took = (f"Keras -> ONNX conversion (trace, tf2onnx, ONNX checker) {d.get('export_seconds', 0):.1f} s"
            + (f", {deploy.precision} conversion {d['convert_seconds']:.1f} s" if deploy.precision != "fp32" else ""))
    whole = f"whole command {command_seconds:.1f} s"
    if d.get("cached"):
        lines.append(f"export: taken from the cache (unchanged; when made: {took}); {whole}")
    else:
        lines.append(f"export: {took}; {whole} (TensorFlow start-up, build, checks in onnxruntime included)")
    return lines


def _cmd_verify(args) -> int:
    seeds = tuple(range(args.seeds)) if args.seeds >= 1 else None
    if not seeds:
        raise UsageError(f"--seeds {args.seeds}: expected a positive integer")
    batch_sizes = _ints(args.batch_sizes, "--batch-sizes")
    if _is_file_target(args.name):
        _file_only(args)
        from archkit.onnx.load import load_model
        from archkit.verify import verify_onnx

        loaded = load_model(args.name, max_bytes=args.max_bytes)
        loaded.require_weights("verify")
        v = verify_onnx(loaded.proto, path=args.name, seeds=seeds, batch_sizes=batch_sizes, timeout=args.timeout)
        name = label = args.name
    else:
        arch = _architecture(args.name)  # every check before TensorFlow loads
        overrides = _config(args, arch)
        _check_opset(args.opset)
        deploy = _deploy_options(args)
        from archkit.pipeline import run_architecture

        if args.timeout:
            os.environ["ARCHKIT_ORT_TIMEOUT"] = str(args.timeout)
        analysis, _ = run_architecture(arch.name, opset=args.opset, verify=True, deploy=deploy, seeds=seeds,
                                       batch_sizes=batch_sizes, progress=_Progress(arch.name, args.started),
                                       **overrides)
        v = analysis.verification
        name, label = arch.name, f"{arch.name} ({deploy.describe()}{''.join(f', {k}={x!r}' for k, x in overrides.items())})"
    from archkit.render.escape import terminal

    for line in _verification_lines(v, label):  # output names come from the file
        print(terminal(line))
    v.raise_for_failure(name)
    print(f"{name}: parity ok ({v.runtime}, {v.precision} vs {v.reference})")
    return 0


def _file_only(args) -> None:
    """A FILE is as it is: the options that choose how an architecture is exported do not apply."""
    if getattr(args, "config", None):
        raise UsageError("--config sets an architecture's settings; a FILE is as it is")
    if args.opset is not None:
        raise UsageError("--opset chooses how an architecture is exported; a FILE is as it is")
    if not _deploy_options(args).plain:
        raise UsageError("--layout/--batch/--precision choose how an architecture is exported; a FILE is as it is")


def _verification_lines(v, label: str) -> list[str]:
    from archkit.verify import TOLERANCES

    t = TOLERANCES[v.precision]
    seeds = sorted({o.seed for o in v.outputs})
    batches = sorted({o.batch for o in v.outputs})
    lines = [f"{label}: onnxruntime vs {v.reference}; seeds {', '.join(map(str, seeds))}; "
             f"batch sizes {', '.join(map(str, batches))}",
             f"thresholds ({v.precision}): max abs error <= {t.atol:g} + {t.rtol:g} x max |reference| per batch and seed; "
             f"top-1 agreement >= {t.top1:.0%}, top-5 >= {t.top5:.0%} over "
             + ("all samples" if not t.margin else
                f"the samples whose reference top-1 leads the runner-up by >= {t.margin:g} sd of their scores "
                f"(judged from {t.min_decided})")]
    agreement = v.agreement()
    for out in dict.fromkeys(o.output for o in v.outputs):
        rows = [o for o in v.outputs if o.output == out]
        top1, top5, d, n = agreement[out]
        worst = max(rows, key=lambda o: o.max_abs / o.allowed if o.allowed else float("inf"))
        judged = v.judged(out)
        ok = all(o.ok for o in rows) and (not judged or (top1 >= t.top1 and top5 >= t.top5))
        over = f"{n} samples" if d == n and judged else f"{d} of {n} samples decided"
        lines.append(f"output {out!r}: max abs {max(o.max_abs for o in rows):.2g} (allowed {worst.allowed:.2g} at batch "
                     f"{worst.batch}), max rel {max(o.max_rel for o in rows):.2g}, "
                     + (f"top-1 {top1:.1%}, top-5 {top5:.1%} ({over})" if judged else
                        f"agreement not judged ({over}, needs {t.min_decided}: more --seeds or --batch-sizes)")
                     + f"  {'ok' if ok else 'FAIL'}")
        for batch in batches:
            b = [o for o in rows if o.batch == batch]
            lines.append(f"  batch {batch}: max abs {max(o.max_abs for o in b):.2g}, max rel {max(o.max_rel for o in b):.2g}, "
                         f"top-1 {sum(o.argmax_agreement for o in b) / len(b):.0%}, "
                         f"top-5 {sum(o.top5_agreement for o in b) / len(b):.0%}")
    return lines


def _bench_settings(args) -> tuple[int | None, tuple[int, ...]]:
    """--threads (None: the usable cores) and --batch-sizes, checked."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise UsageError(f"--threads {threads}: expected a positive integer")
    return threads, _ints(getattr(args, "batch_sizes", "1,32"), "--batch-sizes")


def _bench(target: str, args, *, deploy=None, opset=None, overrides=None, progress=None):
    """Bench a registered architecture (vs Keras unless told not to) or an ONNX file."""
    threads, batch_sizes = _bench_settings(args)
    from archkit import bench  # after the checks: it imports numpy and onnx

    threads = threads or bench.default_threads()
    runs = getattr(args, "runs", None) or bench.RUNS
    timeout = getattr(args, "timeout", None)
    spinning = bool(getattr(args, "spinning", False))
    if _is_file_target(target):
        from archkit.onnx.load import load_model
        from archkit.onnxfile import analyse_loaded

        loaded = load_model(target, max_bytes=getattr(args, "max_bytes", None))
        loaded.require_weights("bench")
        proto = loaded.proto
        analysis = analyse_loaded(loaded, connectivity=True)
        return bench.bench_model(proto, name=analysis.name, path=target, macs_per_sample=analysis.costs.total()["macs"],
                                 macs_complete=analysis.costs.complete, threads=threads, batch_sizes=batch_sizes,
                                 runs=runs, timeout=timeout, spinning=spinning), analysis
    from archkit.pipeline import build_seeded, run_architecture

    target, overrides = _architecture(target).name, overrides or {}
    progress = progress or _Progress(target, args.started)
    keras = not getattr(args, "no_keras", False)
    if keras:
        bench.set_keras_threads(threads)  # before TensorFlow runs anything
    analysis, proto = run_architecture(target, opset=opset, verify=False, deploy=deploy, progress=progress,
                                       **overrides)
    costs = analysis.costs
    if not costs.complete:  # quantized ops have no cost rule: count the fp32 export of the same network
        costs = run_architecture(target, opset=opset, verify=False, progress=progress, **overrides)[0].costs
    model = build_seeded(target, **overrides)[2] if keras else None
    progress("bench")
    b = bench.bench_model(proto, name=target, macs_per_sample=costs.total()["macs"], macs_complete=costs.complete,
                          keras_model=model, threads=threads, batch_sizes=batch_sizes, runs=runs, timeout=timeout,
                          spinning=spinning,
                          deployment={**{k: v for k, v in (analysis.deployment or {}).items() if k != "options"},
                                      **(deploy.cache_fields() if deploy else {})})
    return b, analysis


def _cmd_bench(args) -> int:
    _bench_settings(args)  # every check before the imports
    if _is_file_target(args.name):
        _file_only(args)
        b, _ = _bench(args.name, args)
    else:
        arch = _architecture(args.name)
        overrides = _config(args, arch)
        _check_opset(args.opset)
        b, _ = _bench(arch.name, args, deploy=_deploy_options(args), opset=args.opset, overrides=overrides)
    from archkit.bench import summary_lines
    from archkit.render.escape import terminal

    for line in summary_lines(b):  # a file's graph name
        print(terminal(line))
    return 0


def _cmd_report(args) -> int:
    import architectures

    if args.all == bool(args.name):
        raise UsageError("report: give one architecture name or --all")
    if args.all and args.config:
        raise UsageError("--config sets one architecture's settings: give its name, not --all")
    formats = _formats(args.format)
    archs = architectures.all_architectures() if args.all else [_architecture(args.name)]
    overrides = _config(args, archs[0]) if args.config else {}  # every check before any work
    _check_opset(args.opset)
    # A report made with other settings goes to its own folder, named by them: never mistaken
    # for (or replacing) the default one.
    folders = {arch.name: arch.name + _config_text({k: v for k, v in overrides.items() if arch.defaults[k] != v})
               for arch in archs}
    _writable(args.out)
    for arch in archs:
        _report_folder(args.out / folders[arch.name])
    from archkit.io import write_folder
    from archkit.pipeline import run_architecture
    from archkit.render.report import render

    if args.bench:
        from archkit.bench import default_threads, set_keras_threads

        set_keras_threads(args.threads or default_threads())  # before TensorFlow runs anything
    failed = []
    for arch in archs:
        folder = args.out / folders[arch.name]
        progress = _Progress(arch.name, args.started)
        analysis, _ = run_architecture(arch.name, opset=args.opset, verify=True, progress=progress, **overrides)
        if args.bench:
            from dataclasses import replace

            analysis = replace(analysis, bench=_bench(arch.name, args, opset=args.opset, overrides=overrides,
                                                      progress=progress)[0])
        progress("drawing")
        files = render(analysis, formats, arch=arch)
        progress("writing")
        write_folder(folder, files)
        v = analysis.verification
        status = "parity ok" if v.ok else "PARITY FAILED"
        print(f"{arch.name}: {analysis.costs.total()['macs']:,} MACs, {status} -> {folder}", flush=True)
        if not v.ok:
            failed.append(folders[arch.name])
    _write_index(args.out)
    if failed:
        raise ParityError(f"parity exceeded the tolerances for: {', '.join(failed)} "
                          f"(see {args.out / failed[0]}/README.md)")
    return 0


def _is_index(path: Path) -> bool:
    """Whether `path` may be (re)written as the reports index: absent, or a regular file that
    archkit wrote: its marker first, or the first lines of the index before the marker."""
    import stat

    from archkit.render.formats import INDEX_MARKER

    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False  # a link or a folder is the user's
        with open(path, "rb") as f:
            lines = f.read(1024).decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return lines[:1] == [INDEX_MARKER] or (
        lines[:2] == ["# Reports", ""] and len(lines) > 2 and lines[2].startswith("Generated by `archkit report"))


def _indexable(summary) -> bool:
    """A summary.json the index can show (another tool's summary.json is left out)."""
    from archkit.render.report import index

    try:
        index([summary])
        return True
    except (KeyError, TypeError, ValueError, AttributeError):
        return False


def _write_index(out: Path) -> None:
    """Refresh out/README.md from the summary.json of every report folder in `out`, unless a
    README.md there is not archkit's index: a user's file is left as it is, with a warning."""
    import json

    from archkit.io import atomic_write_bytes
    from archkit.render.report import index

    readme = out / "README.md"
    if not _is_index(readme):
        print(f"archkit: warning: {readme} is not an archkit reports index: left as it is, no index written",
              file=sys.stderr)
        return
    summaries = []
    for folder in sorted(p for p in out.iterdir() if (p / "summary.json").is_file()):
        try:
            s = json.loads((folder / "summary.json").read_text())
        except (OSError, ValueError):
            continue  # not ours, or damaged: leave it out of the index
        if _indexable(s):
            summaries.append({**s, "folder": folder.name})
    if summaries:
        atomic_write_bytes(readme, index(summaries).encode())


def _cmd_analyse(args) -> int:
    name = None if args.file.exists() else _registered(str(args.file))
    if name:  # otherwise archkit.onnx.load says "no such file"
        raise UsageError(f"{args.file}: no such file; {name} is a registered architecture: "
                         f"`archkit report {name}` reports its costs (analyse takes an ONNX file)")
    if args.output is None:
        fmt = args.format or "md"
        if fmt not in ("md", "csv", "json"):
            raise UsageError(f"--format {fmt!r}: printing takes one of md, csv, json (write several with -o DIR)")
    else:
        formats = _formats(args.format or "md,csv,json")
    from archkit.onnxfile import analyse_file, parse_input_shape, render_view, summary_lines

    shapes = dict(parse_input_shape(t) for t in args.input_shape)
    values = _input_values(args)
    if args.sweep:
        return _sweep(args, shapes, values)
    if args.output is None:
        analysis = analyse_file(args.file, input_shapes=shapes, max_bytes=args.max_bytes, strict=args.strict,
                                input_values=values)
        _warn(analysis)
        sys.stdout.write(render_view(analysis, args.by, fmt))
        return 0
    from archkit.io import write_folder
    from archkit.render.report import render

    _report_folder(args.output, source=args.file)
    analysis = analyse_file(args.file, input_shapes=shapes, max_bytes=args.max_bytes, strict=args.strict,
                            input_values=values)
    _warn(analysis)
    write_folder(args.output, render(analysis, formats))
    for line in summary_lines(analysis):
        print(line)
    print(f"-> {args.output}")
    return 0


def _sweep(args, shapes, values) -> int:
    """analyse --sweep: the totals at every combination of the swept dims' values."""
    from archkit.onnx.load import load_model
    from archkit.onnxfile import parse_sweep, render_sweep, sweep, sweep_chart

    dims = dict(parse_sweep(t) for t in args.sweep)
    if len(dims) != len(args.sweep):
        raise UsageError("--sweep: each dim once")
    if args.output is not None:
        _report_folder(args.output, source=args.file)
    loaded = load_model(args.file, max_bytes=args.max_bytes)
    for w in loaded.warnings:
        _warn_line(w)
    if args.format not in (None, "md", "csv", "json"):
        raise UsageError(f"--format {args.format!r}: a sweep prints one of md, csv, json")
    table = sweep(loaded, dims, input_shapes=shapes, input_values=values)
    if args.output is None:
        sys.stdout.write(render_sweep(table, args.format or "md"))
        return 0
    from archkit.io import write_folder

    name = loaded.proto.graph.name or args.file.stem
    write_folder(args.output, {"sweep.csv": render_sweep(table, "csv").encode(),
                               "sweep.png": sweep_chart(table, tuple(dims), name)})
    sys.stdout.write(render_sweep(table, "md"))
    print(f"-> {args.output}")
    return 0


def _cmd_connectivity(args) -> int:
    target = str(args.target)
    if _is_file_target(target):
        from archkit.onnxfile import analyse_file, parse_input_shape

        shapes = dict(parse_input_shape(t) for t in args.input_shape)
        if args.output is not None:
            _connectivity_folder(args.output, source=Path(target))
        analysis = analyse_file(target, input_shapes=shapes, connectivity=True, max_bytes=args.max_bytes)
        _warn(analysis)
    else:
        if args.input_shape:
            raise UsageError("--input-shape applies to ONNX files; an architecture's shapes are its own")
        arch = _architecture(target)  # an unknown name fails before any work
        if args.output is not None:
            _connectivity_folder(args.output)
        from archkit.pipeline import run_architecture

        analysis, _ = run_architecture(arch.name, verify=False, progress=_Progress(arch.name, args.started))
    from archkit.render import drawing

    conn, name = analysis.connectivity, analysis.name
    if args.format != "text":  # the text says it in its "not computed" lines
        for line in drawing.unknowns(conn):
            print(f"archkit: warning: connectivity: {line}", file=sys.stderr)
    if args.output is not None:
        from archkit.io import atomic_write_bytes

        files = {"connectivity.md": (drawing.markdown(conn, name) + "\n").encode(),
                 **drawing.files(conn, name, ("csv", "png"))}
        for fname, data in files.items():
            atomic_write_bytes(args.output / fname, data)
    if args.format == "text":
        out = drawing.text(conn, name)
    elif args.format == "md":
        out = drawing.markdown(conn, name, images=False) + "\n"
    elif args.format == "csv":
        out = drawing.csv(conn).decode()
    elif args.format == "dot":
        out = drawing.dot(conn, name)
    else:
        import dataclasses
        import json

        out = json.dumps({"name": name, **conn.summary(), "detail": dataclasses.asdict(conn)}, indent=1) + "\n"
    sys.stdout.write(out)
    if args.output is not None:
        print(f"-> {args.output}", file=sys.stderr if args.format != "text" else sys.stdout)
    return 0


def _cmd_train(args) -> int:
    from archkit.course import train as tr
    from archkit.io import atomic_write_bytes

    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs {args.epochs}: must be at least 1")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise OutputError(f"--out {args.out}: is a file")
    data = tr.load_dataset(args.data)  # a missing MNIST cache or bad .npz fails before TensorFlow loads
    epochs = args.epochs if args.epochs is not None else tr.default_epochs(data.name, early_stopping=args.early_stopping)
    out = args.out or Path("runs") / f"{args.name}-{data.name}"
    _writable(out)
    n_val = int(len(data.x_train) * tr.VALIDATION_SPLIT) if args.early_stopping else 0
    print(f"training {args.name} on {data.name}: {len(data.x_train) - n_val:,} train"
          + (f" + {n_val:,} validation" if n_val else "") + f", {len(data.x_test):,} test images; "
          f"up to {epochs} epochs of batch {tr.BATCH_SIZE}" + (", early stopping" if args.early_stopping else ""), flush=True)
    run = tr.train(args.name, data, epochs=epochs, early_stopping=args.early_stopping, seed=args.seed, query=args.query,
                   verbose=1 if sys.stdout.isatty() else 2)
    r = run.result
    files = {"model.keras": run.keras_bytes(), "model.onnx": run.onnx_model.SerializeToString(),
             "metrics.json": r.to_json().encode(), **run.figures()}
    for fname, blob in files.items():
        atomic_write_bytes(out / fname, blob)
    print(f"{r.epochs_run} epochs in {r.train_seconds:.1f} s")
    print(f"test accuracy: Keras {r.keras_accuracy:.4f}, onnxruntime {r.onnx_accuracy:.4f} "
          f"({r.n_test - r.prediction_disagreements:,}/{r.n_test:,} predictions identical; "
          f"max |probability difference| {r.max_abs_prob_diff:.2g})")
    print(f"nearest neighbours of test image {r.query} (label {r.query_label}) by FC1: "
          + ", ".join(f"#{i} (label {l})" for i, l in zip(r.neighbours, r.neighbour_labels)))
    print(f"-> {out}/ ({', '.join(files)})")
    r.raise_for_disagreement()
    return 0


def _cmd_primitives(args) -> int:
    from archkit.course import primitives as pm
    from archkit.io import atomic_write_bytes

    if args.out is not None:
        _writable(args.out)
    print("conv0 (sigmoid of the summed elementwise products), the notes' Out[11]-[15]:")
    values = pm.conv0_examples()
    for key, value in values.items():
        want = pm.NOTES_CONV0[key]
        print(f"  {key:<32} {value!r:<20} {'= the notes' if value == want else f'!= the notes {want!r}'}")
    photo = pm.load_photo()
    results = pm.checks(photo)
    print("numpy vs onnxruntime (one ONNX graph each):")
    width = max(len(c.name) for c in results)
    shapes = [f"{'x'.join(map(str, c.input_shape[1:]))} -> {'x'.join(map(str, c.output_shape[1:]))}" for c in results]
    for c, shape in zip(results, shapes):
        agree = "identical" if c.exact else f"max |diff| {c.max_abs_diff:.2g} (float32 rounding <= {c.tolerance:.2g})"
        print(f"  {c.name:<{width}}  {shape:<{max(map(len, shapes))}}  {'+'.join(c.onnx_ops):<8} {agree}  "
              f"{'ok' if c.ok else 'FAIL'}")
    if args.out is not None:
        figures = pm.figures(results, photo)
        for fname, blob in figures.items():
            atomic_write_bytes(args.out / fname, blob)
        print(f"-> {args.out}/ ({len(figures)} figures)")
    bad = [c.name for c in results if not c.ok] + [k for k, v in values.items() if v != pm.NOTES_CONV0[k]]
    if bad:
        raise ParityError(f"primitives differ between numpy and onnxruntime, or from the notes: {', '.join(bad)}")
    return 0


COMMANDS = {"list": _cmd_list, "export": _cmd_export, "verify": _cmd_verify, "bench": _cmd_bench, "report": _cmd_report,
            "analyse": _cmd_analyse, "analyze": _cmd_analyse, "connectivity": _cmd_connectivity, "train": _cmd_train,
            "primitives": _cmd_primitives}

# stdout closed before archkit finished writing (`archkit list | head -1`): the code a shell
# reports for a program SIGPIPE stops (128 + 13). Not 1, which means a bug in archkit.
EXIT_PIPE = 141


def _stdout_to_devnull() -> None:
    """What CPython's signal docs advise after a BrokenPipeError: point stdout at devnull so
    that the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a file (e.g. captured in tests)


def main(argv: list[str] | None = None) -> int:
    import traceback

    from archkit.render.escape import terminal

    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # before parsing: errors while parsing need it too
    if debug:
        os.environ["ARCHKIT_DEBUG"] = "1"
    try:
        args = _parser().parse_args(argv)
        args.started = started
        code = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's own last flush
        return code
    except BrokenPipeError:  # archkit writes to no pipe but stdout and stderr: the reader has gone
        _stdout_to_devnull()
        return EXIT_PIPE
    except ArchkitError as e:
        if debug and not isinstance(e, UsageError):  # a usage error's traceback tells nothing
            traceback.print_exc()
        print(f"archkit: {'' if isinstance(e, InternalError) else 'error: '}{terminal(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("archkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"archkit: internal error: {terminal(type(e).__name__ + ': ' + (str(e).splitlines() or [''])[0])}"
              + ("" if debug else " (rerun with --debug for the traceback)"), file=sys.stderr)
        return 1
