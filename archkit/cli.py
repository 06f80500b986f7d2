"""The command line: the only place that prints, writes files and maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from archkit import __version__
from archkit.errors import EXIT_CODES, ArchkitError, OutputError, ParityError, UsageError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2, instead of argparse's usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _formats(text: str) -> tuple[str, ...]:
    from archkit.report import FORMATS

    parts = tuple(p.strip() for p in text.split(","))
    bad = [p for p in parts if p not in FORMATS]
    if bad or not parts:
        raise UsageError(f"--format {text!r}: expected a comma-separated list of {', '.join(FORMATS)}")
    return parts


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="archkit", description="What a CNN costs, how it is wired, whether its ONNX export is faithful.",
                epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    p.add_argument("--version", action="version", version=f"archkit {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks and TensorFlow's own logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="the registered architectures")

    e = sub.add_parser("export", help="export an architecture to ONNX")
    e.add_argument("name")
    e.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default: newest tf2onnx supports)")

    v = sub.add_parser("verify", help="compare onnxruntime with Keras on seeded inputs")
    v.add_argument("name")
    v.add_argument("--opset", type=int, default=None)

    r = sub.add_parser("report", help="write the cost report of an architecture")
    r.add_argument("name", nargs="?")
    r.add_argument("--all", action="store_true", help="every registered architecture")
    r.add_argument("--out", type=Path, default=Path("reports"), help="parent folder (default: reports)")
    r.add_argument("--format", default="md,csv,json,png", help="comma-separated: md,csv,json,png (default: all)")
    r.add_argument("--opset", type=int, default=None)
    return p


def _writable(folder: Path) -> None:
    """Fail before the expensive work if the output folder cannot be created or written."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: output folder is not writable")


def _cmd_list(args) -> int:
    import architectures

    rows = [(a.name, a.family, a.description) for a in architectures.all_architectures()]
    width = max(len(r[0]) for r in rows)
    fam = max(len(r[1]) for r in rows)
    for name, family, desc in rows:
        print(f"{name:<{width}}  {family:<{fam}}  {desc}")
    return 0


def _cmd_export(args) -> int:
    from archkit.pipeline import run_architecture

    _writable(args.output.parent if str(args.output.parent) else Path("."))
    if args.output.exists() and args.output.is_dir():
        raise OutputError(f"{args.output}: is a folder")
    analysis, _ = run_architecture(args.name, opset=args.opset, verify=False, path=args.output)
    print(f"wrote {args.output} (opset {analysis.info.opset}, {analysis.info.size_bytes:,} bytes, "
          f"{analysis.costs.total()['ops']:,} ops)")
    return 0


def _cmd_verify(args) -> int:
    import architectures
    from archkit.pipeline import run_architecture

    architectures.get(args.name)  # unknown names fail before TensorFlow loads
    analysis, _ = run_architecture(args.name, opset=args.opset, verify=True)
    v = analysis.verification
    for o in v.outputs:
        print(f"{o.output}  batch {o.batch}: max abs {o.max_abs:.2g}, max rel {o.max_rel:.2g}, "
              f"top-1 agreement {o.argmax_agreement:.0%}  {'ok' if o.ok else 'FAIL'}")
    v.raise_for_failure(args.name)
    print(f"{args.name}: parity ok ({v.runtime})")
    return 0


def _cmd_report(args) -> int:
    import architectures
    from archkit.pipeline import run_architecture
    from archkit.io import write_folder
    from archkit.report import render

    if args.all == bool(args.name):
        raise UsageError("report: give one architecture name or --all")
    formats = _formats(args.format)
    names = architectures.names() if args.all else [args.name]
    archs = [architectures.get(n) for n in names]  # all names checked before any work
    _writable(args.out)
    failed = []
    for arch in archs:
        analysis, _ = run_architecture(arch.name, opset=args.opset, verify=True)
        write_folder(args.out / arch.name, render(analysis, formats, arch=arch))
        v = analysis.verification
        status = "parity ok" if v.ok else "PARITY FAILED"
        print(f"{arch.name}: {analysis.costs.total()['macs']:,} MACs, {status} -> {args.out / arch.name}")
        if not v.ok:
            failed.append(arch.name)
    _write_index(args.out)
    if failed:
        raise ParityError(f"parity exceeded the tolerances for: {', '.join(failed)} "
                          f"(see {args.out / failed[0]}/README.md)")
    return 0


def _write_index(out: Path) -> None:
    """Refresh out/README.md from the summary.json of every report folder in `out`."""
    import json

    from archkit.io import atomic_write_bytes
    from archkit.report import index

    summaries = []
    for folder in sorted(p for p in out.iterdir() if (p / "summary.json").is_file()):
        try:
            summaries.append(json.loads((folder / "summary.json").read_text()))
        except (OSError, ValueError):
            continue  # not ours, or damaged: leave it out of the index
    if summaries:
        atomic_write_bytes(out / "README.md", index(summaries).encode())


COMMANDS = {"list": _cmd_list, "export": _cmd_export, "verify": _cmd_verify, "report": _cmd_report}


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    if debug:
        os.environ["ARCHKIT_DEBUG"] = "1"
    try:
        args = _parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except ArchkitError as e:
        if debug:
            raise
        print(f"archkit: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("archkit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line unless --debug
        if debug:
            raise
        print(f"archkit: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return 1
