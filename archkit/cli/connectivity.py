"""archkit connectivity NAME|FILE: how a network is wired (depth, branches, skips, concatenations,
receptive fields), printed as text, markdown, CSV, DOT or JSON, and drawn with -o."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import architectures
from archkit.cli.common import Progress, architecture, connectivity_folder, is_file_target, warn
from archkit.cli.options import input_shapes
from archkit.errors import UsageError
from archkit.io import atomic_write_bytes


def run(args: argparse.Namespace) -> int:
    target = str(args.target)
    if is_file_target(target):
        shapes = input_shapes(args)
        if args.output is not None:
            connectivity_folder(args.output, source=Path(target))
        from archkit.analysis import analyse_file  # after the checks: a usage error loads nothing heavy

        analysis = analyse_file(target, input_shapes=shapes, connectivity=True, max_bytes=args.max_bytes)
        warn(analysis)
    else:
        if args.input_shape:
            raise UsageError("--input-shape applies to ONNX files; an architecture's shapes are its own")
        arch = architecture(target)  # an unknown name fails before any work
        if args.output is not None:
            connectivity_folder(args.output)
        from archkit.keras.pipeline import run_architecture  # after the checks: a usage error loads nothing heavy

        analysis, _ = run_architecture(arch.name, verify=False, progress=Progress(arch.name, args.started))
    from archkit.render import drawing  # after the checks: a usage error loads nothing heavy

    conn, name = analysis.connectivity, analysis.name
    # receptive fields published for the same network (an architecture's, or an export of one)
    published = architectures.get(name).receptive_fields if name in architectures.names() else ()
    if args.format != "text":  # the text says it in its "not computed" lines
        for line in drawing.unknowns(conn):
            print(f"archkit: warning: connectivity: {line}", file=sys.stderr)
    if args.output is not None:
        files = {"connectivity.md": (drawing.markdown(conn, name, published=published) + "\n").encode(),
                 **drawing.files(conn, name, ("csv", "png"))}
        for fname, data in files.items():
            atomic_write_bytes(args.output / fname, data)
    if args.format == "text":
        out = drawing.text(conn, name)
    elif args.format == "md":
        out = drawing.markdown(conn, name, images=False, published=published) + "\n"
    elif args.format == "csv":
        out = drawing.csv(conn).decode()
    elif args.format == "dot":
        out = drawing.dot(conn, name)
    else:
        out = json.dumps({"name": name, **conn.summary(), "detail": dataclasses.asdict(conn)}, indent=1) + "\n"
    sys.stdout.write(out)
    if args.output is not None:
        print(f"-> {args.output}", file=sys.stderr if args.format != "text" else sys.stdout)
    return 0
