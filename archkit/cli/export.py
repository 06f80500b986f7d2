"""archkit export NAME -o FILE: an architecture in ONNX, in the deployment form asked for."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from archkit.cli.common import Progress, architecture, writable
from archkit.cli.options import check_opset, config, deploy_options
from archkit.errors import OutputError


def run(args: argparse.Namespace) -> int:
    arch = architecture(args.name)  # every check before any work
    overrides = config(args, arch)
    check_opset(args.opset)
    deploy = deploy_options(args)
    writable(args.output.parent if str(args.output.parent) else Path("."))
    if args.output.exists() and args.output.is_dir():
        raise OutputError(f"{args.output}: is a folder")
    from archkit.keras.pipeline import run_architecture  # after the checks: a usage error loads nothing heavy
    from archkit.render.text import export_lines  # after the checks: a usage error loads nothing heavy

    analysis, _ = run_architecture(arch.name, opset=args.opset, verify=False, path=args.output, deploy=deploy,
                                   progress=Progress(arch.name, args.started), **overrides)
    for line in export_lines(analysis, deploy, args.output, time.perf_counter() - args.started):
        print(line)
    return 0
