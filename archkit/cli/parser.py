"""The parser: every command, its arguments and their help. Cheap to import (`archkit --help`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from archkit import __version__
from archkit.errors import EXIT_CODES, UsageError
from archkit.render.formats import FORMATS

__all__ = ["build", "formats", "parse_size"]

DEBUG_HELP = "show tracebacks and TensorFlow's own logging"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2, instead of argparse's usage block
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def parse_size(text: str) -> int:
    """`2G`, `100M`, `512k`, `1000` → bytes (binary multiples)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)i?[bB]?\s*", text or "")
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 1000, 512K, 100M or 2G")
    return int(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " ")


def formats(text: str) -> tuple[str, ...]:
    parts = tuple(p.strip() for p in text.split(","))
    bad = [p for p in parts if p not in FORMATS]
    if bad or not parts:
        raise UsageError(f"--format {text!r}: expected a comma-separated list of {', '.join(FORMATS)}")
    return parts


def build() -> argparse.ArgumentParser:
    p = _Parser(prog="archkit", description="What a CNN costs, how it is wired, whether its ONNX export is faithful.",
                epilog="Exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()))
    p.add_argument("--version", action="version", version=f"archkit {__version__}")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # --debug is accepted after the command too (where the "rerun with --debug" hint puts it);
    # SUPPRESS keeps a subcommand from resetting the flag given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
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
    v.add_argument("--seeds", type=int, default=None, help="how many input seeds (default 3)")
    v.add_argument("--batch-sizes", default=None, help="comma-separated batch sizes (default 1,8)")
    v.add_argument("--timeout", type=float, default=None,
                   help="seconds one onnxruntime child process may take (default 600, or $ARCHKIT_ORT_TIMEOUT)")
    v.add_argument("--layers", action="store_true",
                   help="NAME: also compare every Keras layer's output with its tensor in the export, and name the "
                        "first layer over the tolerance")
    _max_bytes_argument(v)
    _file_input_arguments(v)
    _config_argument(v)
    _deploy_arguments(v)

    b = command("bench", help="latency in onnxruntime vs Keras, GFLOP/s and fraction of the matmul peak")
    b.add_argument("name", metavar="NAME|FILE")
    b.add_argument("--threads", type=int, default=None, help="intra-op threads for onnxruntime and TensorFlow "
                                                             "(default: the usable cores)")
    b.add_argument("--batch-sizes", default=None, help="comma-separated batch sizes (default 1,32)")
    b.add_argument("--runs", type=int, default=None, help="timed runs per batch size (default 30, within ~8 s)")
    b.add_argument("--no-keras", action="store_true", help="onnxruntime only")
    b.add_argument("--spinning", action="store_true",
                   help="let onnxruntime's idle threads spin-wait (its default; slow when the cores are shared)")
    b.add_argument("--opset", type=int, default=None)
    b.add_argument("--timeout", type=float, default=None, help="seconds the onnxruntime child process may take")
    _max_bytes_argument(b)
    _file_input_arguments(b)
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
    r.add_argument("--layers", action="store_true",
                   help="add each layer's parity in fp32, fp16, int8 dynamic and int8 static (the notes' baseline CNN "
                        "and inception_v1 always have it)")
    _config_argument(r)

    a = command("analyse", aliases=["analyze"], help="the costs of any ONNX file (no TensorFlow, no weights read)")
    a.add_argument("file", type=Path, help="the .onnx file")
    _input_shape_argument(a, "fix a graph input's shape, or a symbolic dim (N=8); repeatable; dims left free give "
                             "formulas in them, and figures with each at 1")
    _input_value_argument(a, "a graph input's value (a number, or comma-separated numbers for a small tensor); "
                             "repeatable; an If whose condition follows from it counts only the branch taken")
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
    a.add_argument("--measure-memory", action="store_true",
                   help="run the file once in onnxruntime and check archkit's memory figures against its allocator: "
                        "every op's output bytes, the execution order, the peak (machine-dependent; exit 8 if they "
                        "disagree)")
    _max_bytes_argument(a)

    c = command("connectivity", help="how a network is wired: depth, branches, skips, concatenations, "
                                            "receptive fields (an architecture, or any ONNX file: no TensorFlow)")
    c.add_argument("target", metavar="NAME|FILE.onnx", help="a registered architecture or an ONNX file")
    _input_shape_argument(c, "(files) fix a graph input's shape or a symbolic dim, as for analyse")
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


def _input_shape_argument(p: argparse._ActionsContainer, help: str) -> None:
    """--input-shape NAME=D1,D2,... or DIM=V (repeatable); read with archkit.cli.options.input_shapes."""
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...", help=help)


def _input_value_argument(p: argparse._ActionsContainer, help: str) -> None:
    """--input-value NAME=V (repeatable); read with archkit.cli.options.input_values."""
    p.add_argument("--input-value", action="append", default=[], metavar="NAME=V[,V...]", help=help)


def _file_input_arguments(p: argparse.ArgumentParser) -> None:
    """What a FILE's inputs are fed (verify, bench); read with archkit.cli.options.file_inputs."""
    g = p.add_argument_group("a FILE's inputs (FILE only; default: seeded values, free dims other than the batch "
                             "must be given)")
    _input_shape_argument(g, "fix a graph input's shape (its first dim then no longer follows --batch-sizes), or a "
                             "symbolic dim (height=640); repeatable")
    _input_value_argument(g, "a graph input's values (a number, or comma-separated numbers filling a small tensor), "
                             "in its element type, e.g. a sample rate sr=16000; repeatable")
    g.add_argument("--inputs", type=Path, default=None, metavar="FILE.npz",
                   help="real data: one array per graph input, by name (read without pickle); run once at the "
                        "arrays' own batch, instead of seeded values")



def _max_bytes_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-bytes", type=parse_size, default=None, metavar="SIZE",
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

