"""archkit analyse FILE: the costs of any ONNX file (no TensorFlow, no weight read): a table per
--by, or the report files with -o, or the totals at each value of free dims with --sweep."""

from __future__ import annotations

import argparse
import sys

from archkit.cli.common import registered, report_folder, warn, warn_line
from archkit.cli.options import input_shapes, input_values, parse_sweep
from archkit.cli.parser import formats
from archkit.errors import UsageError
from archkit.io import write_folder

PRINTED = ("md", "csv", "json")


def run(args: argparse.Namespace) -> int:
    name = None if args.file.exists() else registered(str(args.file))
    if name:  # otherwise archkit.onnx.load says "no such file"
        raise UsageError(f"{args.file}: no such file; {name} is a registered architecture: "
                         f"`archkit report {name}` reports its costs (analyse takes an ONNX file)")
    if args.output is None:
        fmt = args.format or "md"
        if fmt not in PRINTED:
            raise UsageError(f"--format {fmt!r}: printing takes one of md, csv, json (write several with -o DIR)")
    else:
        chosen = formats(args.format or "md,csv,json")
    shapes, values = input_shapes(args), input_values(args)
    from archkit.analysis import analyse_file  # after the checks: a usage error loads nothing heavy
    from archkit.render.report import render  # after the checks: a usage error loads nothing heavy
    from archkit.render.text import render_view, summary_lines  # after the checks: a usage error loads nothing heavy

    if args.sweep:
        return _sweep(args, shapes, values)
    if args.sweep and args.measure_memory:
        raise UsageError("--measure-memory: measures one run; fix the dims with --input-shape instead of --sweep")
    if args.output is None:
        analysis = analyse_file(args.file, input_shapes=shapes, max_bytes=args.max_bytes, strict=args.strict,
                                input_values=values)
        warn(analysis)
        sys.stdout.write(render_view(analysis, args.by, fmt))
        return _measure(args, shapes) if args.measure_memory else 0
    report_folder(args.output, source=args.file)
    analysis = analyse_file(args.file, input_shapes=shapes, max_bytes=args.max_bytes, strict=args.strict,
                            input_values=values)
    warn(analysis)
    write_folder(args.output, render(analysis, chosen))
    for line in summary_lines(analysis):
        print(line)
    print(f"-> {args.output}")
    return _measure(args, shapes) if args.measure_memory else 0


def _measure(args: argparse.Namespace, shapes: dict) -> int:
    """analyse --measure-memory: archkit's memory figures against onnxruntime's allocator, on one
    seeded run at the analysed shapes (free dims 1); exit 8 when they disagree."""
    from archkit.onnx.load import load_model  # after the checks: a usage error loads nothing heavy
    from archkit.render.text import memory_check_lines  # after the checks: a usage error loads nothing heavy
    from archkit.runtime.memory import check_memory, feed  # after the checks: a usage error loads nothing heavy

    loaded = load_model(args.file, max_bytes=args.max_bytes)
    check = check_memory(loaded.proto, feed(loaded.proto, shapes), path=str(loaded.path), what=str(args.file))
    print()
    for line in memory_check_lines(check):
        print(line)
    return 0 if check.ok else 8


def _sweep(args: argparse.Namespace, shapes: dict, values: dict) -> int:
    """analyse --sweep: the totals at every combination of the swept dims' values."""
    dims = dict(parse_sweep(t) for t in args.sweep)
    if len(dims) != len(args.sweep):
        raise UsageError("--sweep: each dim once")
    from archkit.analysis import sweep  # after the checks: a usage error loads nothing heavy
    from archkit.onnx.load import load_model  # after the checks: a usage error loads nothing heavy
    from archkit.render.text import render_sweep, sweep_chart  # after the checks: a usage error loads nothing heavy

    if args.output is not None:
        report_folder(args.output, source=args.file)
    loaded = load_model(args.file, max_bytes=args.max_bytes)
    for w in loaded.warnings:
        warn_line(w)
    if args.format not in (None, *PRINTED):
        raise UsageError(f"--format {args.format!r}: a sweep prints one of md, csv, json")
    table = sweep(loaded, dims, input_shapes=shapes, input_values=values)
    if args.output is None:
        sys.stdout.write(render_sweep(table, args.format or "md"))
        return 0
    name = loaded.proto.graph.name or args.file.stem
    write_folder(args.output, {"sweep.csv": render_sweep(table, "csv").encode(),
                               "sweep.png": sweep_chart(table, tuple(dims), name)})
    sys.stdout.write(render_sweep(table, "md"))
    print(f"-> {args.output}")
    return 0
