"""archkit bench NAME|FILE: latency in onnxruntime (and Keras, for NAME), GFLOP/s and the fraction
of this machine's float32 matmul peak."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from archkit.cli.common import Progress, architecture, file_feeds, file_only, is_file_target, name_only
from archkit.cli.options import bench_settings, check_opset, config, deploy_options, file_inputs
from archkit.render.escape import terminal

if TYPE_CHECKING:
    from archkit.analysis import Analysis
    from archkit.onnx.load import Loaded
    from archkit.runtime.bench import Bench
    from archkit.runtime.feeds import Feeds


def bench(target: str, args: argparse.Namespace, *, deploy=None, opset=None, overrides=None,
          progress=None) -> tuple[Bench, Analysis]:
    """Bench a registered architecture (vs Keras unless told not to) or an ONNX file."""
    threads, batch_sizes = bench_settings(args)
    from archkit.runtime.bench import RUNS, bench_model  # after the checks: a usage error loads nothing heavy

    runs = getattr(args, "runs", None) or RUNS
    timeout = getattr(args, "timeout", None)
    spinning = bool(getattr(args, "spinning", False))
    if is_file_target(target):
        inputs = file_inputs(args)
        from archkit.onnx.load import load_model  # after the checks: a usage error loads nothing heavy

        loaded = load_model(target, max_bytes=getattr(args, "max_bytes", None))
        loaded.require_weights("bench")
        feeds = file_feeds(loaded, inputs, args)
        analysis, macs = _file_costs(loaded, feeds, feeds.batches(batch_sizes)[0])
        return bench_model(loaded.proto, name=analysis.name, path=target, macs_per_sample=macs,
                           macs_complete=analysis.costs.complete, threads=threads, batch_sizes=batch_sizes,
                           runs=runs, timeout=timeout, spinning=spinning, feeds=feeds), analysis
    name = architecture(target).name
    from archkit.keras.bench import bench_architecture  # after the checks: a usage error loads nothing heavy

    return bench_architecture(name, opset=opset, deploy=deploy, overrides=overrides,
                              keras=not getattr(args, "no_keras", False), threads=threads, batch_sizes=batch_sizes,
                              runs=runs, timeout=timeout, spinning=spinning,
                              progress=progress or Progress(name, args.started))


def _file_costs(loaded: Loaded, feeds: Feeds, batch: int) -> tuple[Analysis, int | None]:
    """A file's analysis at the shapes it is fed at `batch` (and the values given, or small integer
    arrays of --inputs: they may decide an If), and its MACs per sample there."""
    from archkit.analysis import analyse_loaded  # after the checks: a usage error loads nothing heavy
    from archkit.runtime.feeds import GIVEN, VALUE_ELEMENTS  # after the checks: a usage error loads nothing heavy

    declared = {i.name for i in loaded.proto.graph.input if i.type.tensor_type.HasField("shape")}
    fed = feeds.feed(batch, 0)
    shapes = {k: tuple(v.shape) for k, v in fed.items() if k in declared}
    values = {i.name: tuple(i.value.reshape(-1).tolist()) for i in feeds.inputs if i.value is not None
              and (i.source == GIVEN or (i.value.size <= VALUE_ELEMENTS and i.value.dtype.kind in "biu"))}
    analysis = analyse_loaded(loaded, input_shapes=shapes, input_values=values)
    macs = analysis.costs.total()["macs"]
    return analysis, round(macs / batch) if macs else macs


def run(args: argparse.Namespace) -> int:
    bench_settings(args)  # every check before any work
    if is_file_target(args.name):
        file_only(args)
        b, _ = bench(args.name, args)
    else:
        name_only(args)
        arch = architecture(args.name)
        overrides = config(args, arch)
        check_opset(args.opset)
        b, _ = bench(arch.name, args, deploy=deploy_options(args), opset=args.opset, overrides=overrides)
    from archkit.render.text import bench_lines  # after the checks: a usage error loads nothing heavy

    for line in bench_lines(b):  # a file's graph name
        print(terminal(line))
    return 0
