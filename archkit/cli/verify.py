"""archkit verify NAME|FILE: onnxruntime against Keras (NAME), or against onnxruntime without
graph optimizations (FILE)."""

from __future__ import annotations

import argparse

from archkit.cli.common import Progress, architecture, file_feeds, file_only, is_file_target, name_only
from archkit.cli.options import check_opset, config, deploy_options, file_inputs, positive_ints
from archkit.errors import ParityError, UsageError
from archkit.render.escape import terminal

SEEDS = 3
BATCH_SIZES = "1,8"


def run(args: argparse.Namespace) -> int:
    count = SEEDS if args.seeds is None else args.seeds
    seeds = tuple(range(count)) if count >= 1 else None
    if not seeds:
        raise UsageError(f"--seeds {args.seeds}: expected a positive integer")
    batch_sizes = positive_ints(args.batch_sizes or BATCH_SIZES, "--batch-sizes")
    inputs = None
    if is_file_target(args.name):
        if args.layers:
            raise UsageError("--layers compares a registered architecture's Keras layers: give NAME, not a file")
        file_only(args)
        inputs = file_inputs(args)
        from archkit.onnx.load import load_model  # after the checks: a usage error loads nothing heavy
        from archkit.runtime.parity import verify_onnx  # after the checks: a usage error loads nothing heavy

        loaded = load_model(args.name, max_bytes=args.max_bytes)
        loaded.require_weights("verify")
        feeds = file_feeds(loaded, inputs, args)
        v = verify_onnx(loaded.proto, path=args.name, seeds=seeds, batch_sizes=batch_sizes, timeout=args.timeout,
                        feeds=feeds)
        name = label = args.name
        layerwise = None
        if inputs.values:
            label += " (" + ", ".join(f"{k}={','.join(map(str, x))}" for k, x in inputs.values.items()) + ")"
    else:
        name_only(args)
        arch = architecture(args.name)  # every check before TensorFlow loads
        overrides = config(args, arch)
        check_opset(args.opset)
        deploy = deploy_options(args)
        from archkit.keras.pipeline import run_architecture  # after the checks: a usage error loads nothing heavy

        # without --layers, a lower precision that fails is compared layer by layer to say where it drifts
        layers = True if args.layers else ("on failure" if deploy.precision != "fp32" else False)
        analysis, _ = run_architecture(arch.name, opset=args.opset, verify=True, deploy=deploy, seeds=seeds,
                                       batch_sizes=batch_sizes, timeout=args.timeout, layers=layers,
                                       progress=Progress(arch.name, args.started), **overrides)
        v = analysis.verification
        layerwise = next(iter(analysis.layerwise.values())) if analysis.layerwise else None
        name = arch.name
        label = f"{arch.name} ({deploy.describe()}{''.join(f', {k}={x!r}' for k, x in overrides.items())})"
        memory = analysis.memory_check
    from archkit.render.text import (  # after the checks: a usage error loads nothing heavy
        layerwise_lines,
        memory_check_lines,
        verification_lines,
    )

    arrays = str(inputs.arrays) if inputs is not None and inputs.arrays is not None else None
    for line in verification_lines(v, label, arrays=arrays):  # output names come from the file
        print(terminal(line))
    if args.layers and layerwise is not None:
        for line in layerwise_lines(layerwise):
            print(terminal(line))
    drift = layerwise.where() if layerwise is not None and not layerwise.ok else None
    v.raise_for_failure(name, drift)
    if drift:
        raise ParityError(f"{name}: the outputs agree, but {drift}")
    print(f"{name}: parity ok ({v.runtime}, {v.precision} vs {v.reference})")
    if not is_file_target(args.name) and memory is not None:
        for line in memory_check_lines(memory):
            print(terminal(line))
        if not memory.ok:
            return 8
    return 0
