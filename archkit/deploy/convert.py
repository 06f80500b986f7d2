"""Deployment forms of an exported model: input layout, batch, precision.

The export itself (tf2onnx, `inputs_as_nchw` for NCHW) stays in archkit.keras.export; this module
works on the ONNX file that comes out, with onnx, onnxruntime's quantization tools and
onnxconverter-common's float16 converter. No TensorFlow.

- Layout: after tf2onnx's transpose optimizer, a channels-first (NCHW) export of a grouped
  convolution or of an adaptive pooling still holds Transpose → Split/Gather → Transpose pairs
  (the optimizer pushes transposes through neither); `fold_transpose_pairs` removes them.
  `count_transposes` says how many Transposes are left (the goal: at most one, before the
  flatten of a feature map).
- fp16: onnxconverter-common's `convert_float_to_float16`; with `keep_io_types` the inputs and
  outputs stay float32 (one Cast after each input, one before each output).
- int8: onnxruntime.quantization. `dynamic`: weights int8, activations quantized at run time
  (ConvInteger, MatMulInteger). `static`: QDQ format, weights int8 per output channel,
  activation ranges calibrated (MinMax) on data the user gives (a folder of .npy files or an
  .npz) or on seeded standard-normal inputs archkit generates. Two departures from
  onnxruntime's defaults, both for the classifier's output: Softmax is not quantized (8-bit
  probabilities merge near-equal classes), and the logits (MatMul/Gemm and their bias Add) are
  not re-quantized (their weights still are).

Every converted model is checked by the ONNX checker and carries archkit metadata
(`archkit.precision`, and `archkit.quantization` for int8). That it runs in onnxruntime is
checked by the caller, in a child process (archkit.runtime.child.run_isolated).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from archkit.deploy import CALIBRATION_SEED, EVAL_SAMPLES, EVAL_SEED, QUANTIZATIONS, DeployOptions, digest
from archkit.errors import ExportError, InputError, UsageError
from archkit.metadata import write as write_metadata
from archkit.runtime.child import run_isolated
from archkit.runtime.parity import compare, precision_of

__all__ = [
    "convert_precision",
    "count_transposes",
    "fold_transpose_pairs",
    "generated_inputs",
    "input_specs",
    "load_calibration",
    "precision_deltas",
    "quantize_int8",
    "to_fp16",
]

# --- inputs -------------------------------------------------------------------------------

def input_specs(proto: onnx.ModelProto) -> list[tuple[str, list[int | None], np.dtype]]:
    """(name, dims with None where symbolic, numpy dtype) of each true graph input."""
    init = {t.name for t in proto.graph.initializer}
    specs = []
    for inp in proto.graph.input:
        if inp.name in init:
            continue
        tt = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        specs.append((inp.name, dims, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))))
    return specs


def generated_inputs(proto: onnx.ModelProto, samples: int, *, seed: int) -> dict[str, np.ndarray]:
    """Seeded standard-normal inputs (float inputs; integer inputs get 0 and 1), `samples` along
    the batch axis. A fixed batch dimension is kept: `samples` is then rounded up to a multiple."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, dims, dtype in input_specs(proto):
        if dims and dims[0] is not None:
            samples = -(-samples // dims[0]) * dims[0]
        shape = [samples, *[d if d is not None else 1 for d in dims[1:]]]
        if np.issubdtype(dtype, np.floating):
            feeds[name] = rng.standard_normal(shape).astype(np.float32).astype(dtype)
        elif dtype == np.bool_:
            feeds[name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[name] = rng.integers(0, 2, shape).astype(dtype)
    return feeds


def load_calibration(path: str | os.PathLike, proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Calibration inputs the user gives: an .npz (one array per input, named as the model's
    inputs; a single-input model takes any one array) or a folder of .npy files (single-input
    models; each file one sample or a batch, in file-name order). Arrays must have the model's
    shape in the export's layout, with or without the batch axis."""
    p = Path(path)
    specs = input_specs(proto)
    if not p.exists():
        raise InputError(f"{p}: no such calibration file or folder")
    try:
        if p.is_dir():
            files = sorted(p.glob("*.npy"))
            if not files:
                raise InputError(f"{p}: calibration folder holds no .npy files")
            if len(specs) != 1:
                raise UsageError(f"{p}: a folder of .npy calibrates a single-input model; this one has "
                                 f"{len(specs)} inputs: give an .npz with one array per input")
            name, dims, _ = specs[0]
            arrays = {name: [np.load(f, allow_pickle=False) for f in files]}
        else:
            with np.load(p, allow_pickle=False) as z:
                if not isinstance(z, np.lib.npyio.NpzFile):
                    z = {"": z}
                data = {k: z[k] for k in z}
            if len(specs) == 1 and len(data) == 1:
                arrays = {specs[0][0]: list(data.values())}
            else:
                missing = [n for n, _, _ in specs if n not in data]
                if missing:
                    raise UsageError(f"{p}: no array for input(s) {', '.join(missing)} (it has {', '.join(sorted(data))})")
                arrays = {n: [data[n]] for n, _, _ in specs}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # a truncated or damaged .npz
        raise InputError(f"{p}: cannot read calibration data ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    feeds = {}
    for name, dims, dtype in specs:
        parts = []
        for a in arrays[name]:
            a = np.asarray(a)
            if a.ndim == len(dims) - 1:
                a = a[None]
            expected = tuple("N" if d is None else d for d in dims[1:])
            if a.ndim != len(dims) or any(d is not None and d != s for d, s in zip(dims[1:], a.shape[1:])):
                hint = ""
                if a.ndim == 4 and len(dims) == 4 and tuple(a.shape[1:]) == (dims[2], dims[3], dims[1]):
                    hint = " (these look channels-last: the model is NCHW; transpose them with (0, 3, 1, 2))"
                elif a.ndim == 4 and len(dims) == 4 and tuple(a.shape[1:]) == (dims[3], dims[1], dims[2]):
                    hint = " (these look channels-first: the model is NHWC; transpose them with (0, 2, 3, 1))"
                raise UsageError(f"{p}: calibration array for {name!r} has shape {a.shape}; the model takes "
                                 f"(batch, {', '.join(map(str, expected))}){hint}")
            if not np.issubdtype(a.dtype, np.number):
                raise UsageError(f"{p}: calibration array for {name!r} is {a.dtype}, not numeric")
            parts.append(a.astype(dtype))
        feeds[name] = np.concatenate(parts)
    return feeds


# --- layout -------------------------------------------------------------------------------

def count_transposes(proto: onnx.ModelProto) -> int:
    return sum(n.op_type == "Transpose" for n in proto.graph.node)


def _perm(node: onnx.NodeProto) -> list[int] | None:
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return None


def fold_transpose_pairs(proto: onnx.ModelProto) -> int:
    """Rewrite Transpose(p) → X(axis a) → Transpose(q) on every output of X, where q undoes p and
    X is a Split or a Gather with 1-D indices (ops that work along one axis and keep the rank),
    as X(axis p[a]) on the Transpose's input. Returns how many Transposes were removed.

    tf2onnx's transpose optimizer pushes transposes through neither. With an NCHW input it leaves
    these pairs around a channel-split grouped convolution (back to NHWC to split the channels,
    to NCHW again for each group's Conv) and inside Keras' adaptive average pooling (Gather)."""
    g = proto.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    graph_outputs = {o.name for o in g.output}
    removed: set[int] = set()
    count = 0
    for t in list(g.node):
        if t.op_type != "Transpose" or id(t) in removed or t.output[0] in graph_outputs:
            continue
        p = _perm(t)
        users = consumers.get(t.output[0], [])
        if p is None or len(users) != 1 or users[0].op_type not in ("Split", "Gather"):
            continue
        x = users[0]
        if x.input[0] != t.output[0] or t.output[0] in list(x.input)[1:]:
            continue
        axis = next((a.i for a in x.attribute if a.name == "axis"), 0) % len(p)
        inverse = []
        for out in x.output:
            outs = consumers.get(out, [])
            if out in graph_outputs or not outs or any(
                    u.op_type != "Transpose" or u.output[0] in graph_outputs or _perm(u) is None
                    or len(_perm(u)) != len(p) or [p[k] for k in _perm(u)] != list(range(len(p))) for u in outs):
                break
            inverse.append(outs)
        else:
            # X reads the Transpose's input along the matching axis; each inverse Transpose's
            # consumers read X's output directly.
            x.input[0] = t.input[0]
            for a in x.attribute:
                if a.name == "axis":
                    a.i = p[axis]
                    break
            else:
                x.attribute.append(onnx.helper.make_attribute("axis", p[axis]))
            for out, transposes in zip(x.output, inverse):
                readers = []
                for u in transposes:
                    for c in consumers.get(u.output[0], []):
                        c.input[:] = [out if i == u.output[0] else i for i in c.input]
                        readers.append(c)
                    removed.add(id(u))
                    count += 1
                consumers[out] = readers
            removed.add(id(t))
            count += 1
    if removed:
        keep = [n for n in g.node if id(n) not in removed]
        del g.node[:]
        g.node.extend(keep)
        kept_tensors = {x for n in keep for x in (*n.input, *n.output)}
        keep_vi = [vi for vi in g.value_info if vi.name in kept_tensors]
        del g.value_info[:]
        g.value_info.extend(keep_vi)
    return count


# --- precision ----------------------------------------------------------------------------

def _finish(proto: onnx.ModelProto, source: onnx.ModelProto, name: str, **meta: str) -> onnx.ModelProto:
    """Carry the source's metadata and names over, add `meta`, and check the model."""
    if proto is not source:
        del proto.metadata_props[:]
        proto.metadata_props.extend(source.metadata_props)
        proto.graph.name = source.graph.name
        proto.doc_string = source.doc_string
    write_metadata(proto, **meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:
        raise ExportError(f"{name}: the {meta.get('precision', '')} model fails the ONNX checker: "
                          f"{str(e).strip().splitlines()[0]}") from e
    return proto


def to_fp16(proto: onnx.ModelProto, *, keep_io_types: bool = False, name: str = "model") -> onnx.ModelProto:
    """Weights and compute in float16 (onnxconverter-common). Returns a new model."""
    from onnxconverter_common import float16  # heavy: only the fp16 conversion needs it

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    with warnings.catch_warnings():
        # "the float32 number 1e-9 will be truncated to 1e-07": the converter's documented clamping
        warnings.simplefilter("ignore")
        try:
            model = float16.convert_float_to_float16(model, keep_io_types=keep_io_types)
        except Exception as e:
            raise ExportError(f"{name}: float16 conversion failed: {str(e).strip().splitlines()[0]}") from e
    return _finish(model, proto, name, precision="fp16", fp16={"keep_io_types": keep_io_types})


@contextlib.contextmanager
def _quiet_quantizer():
    """onnxruntime.quantization logs "Please consider to run pre-processing" on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


# Left in float32 by static quantization. Softmax: onnxruntime's default quantizes its output, the
# class probabilities, to 8 bits; near-equal probabilities (1/1000 each, differing by 1e-4, as in
# an untrained ImageNet classifier) then become equal and top-1 is lost (resnet50: 0% agreement).
_FLOAT_OPS = frozenset({"Softmax"})


def _float_head(proto: onnx.ModelProto) -> list[str]:
    """The bias Adds after MatMul/Gemm: with MatMul/Gemm outputs not re-quantized either, a
    classifier's logits stay float32 (its weights are int8): 4x less output error, same size."""
    products = {n.output[0] for n in proto.graph.node if n.op_type in ("MatMul", "Gemm")}
    return [n.name for n in proto.graph.node if n.op_type == "Add" and n.input[0] in products]


def _static_op_types() -> list[str]:
    """onnxruntime's default op types for static quantization, less _FLOAT_OPS."""
    from onnxruntime.quantization.registry import (  # heavy (~0.3 s): only where a session runs
        QDQRegistry,
        QLinearOpsRegistry,
    )

    return sorted((set(QLinearOpsRegistry) | set(QDQRegistry)) - _FLOAT_OPS)


def quantize_int8(proto: onnx.ModelProto, *, quantization: str = "static",
                  calibration: Mapping[str, np.ndarray] | None = None, calibration_source: str = "",
                  name: str = "model") -> onnx.ModelProto:
    """int8 with onnxruntime.quantization. static: QDQ, per-channel int8 weights, int8
    activations with MinMax ranges from `calibration`; dynamic: int8 weights, activations
    quantized at run time. Returns a new model."""
    from onnxruntime.quantization import (  # heavy (~0.3 s): only where a session runs
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if quantization not in QUANTIZATIONS:
        raise UsageError(f"--quantization {quantization!r}: expected one of {', '.join(QUANTIZATIONS)}")
    if quantization == "static" and not calibration:
        raise UsageError("static int8 quantization needs calibration data")
    info: dict[str, Any] = {"mode": quantization, "weights": "int8"}
    with tempfile.TemporaryDirectory(prefix="archkit-quant-") as tmp, _quiet_quantizer():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(proto.SerializeToString())  # the quantizer edits a model it is given in memory
        try:
            if quantization == "dynamic":
                quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=False)
                info.update(activations="int8 at run time (DynamicQuantizeLinear)", per_channel=False)
            else:
                specs = input_specs(proto)
                fixed = specs[0][1][0] if specs and specs[0][1] else None
                step = fixed or 8
                samples = len(next(iter(calibration.values())))

                class Reader(CalibrationDataReader):
                    """The calibration arrays, `step` samples at a time."""

                    def __init__(self):
                        self._batches = iter([{k: v[i:i + step] for k, v in calibration.items()}
                                              for i in range(0, samples, step)])

                    def get_next(self):
                        return next(self._batches, None)

                reader = Reader()
                head = _float_head(proto)
                quantize_static(src, dst, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                op_types_to_quantize=_static_op_types(), nodes_to_exclude=head,
                                extra_options={"OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"]},
                                calibration_providers=["CPUExecutionProvider"])
                info.update(activations="int8 (QDQ)", per_channel=True, calibration="MinMax",
                            calibration_samples=samples, calibration_data=calibration_source,
                            float_ops=sorted(_FLOAT_OPS), float_logits=True)
        except (UsageError, InputError):
            raise
        except Exception as e:
            raise ExportError(f"{name}: int8 quantization failed: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
        model = onnx.load(dst)
    return _finish(model, proto, name, precision="int8", quantization=info)


def convert_precision(proto: onnx.ModelProto, options: DeployOptions, *, name: str = "model") -> onnx.ModelProto:
    """The fp32 export in the precision `options` asks for (the same model for fp32)."""
    if options.precision == "fp32":
        return proto
    if options.precision == "fp16":
        return to_fp16(proto, keep_io_types=options.keep_io_types, name=name)
    calibration, source = None, ""
    if options.quantization == "static":
        if options.calibration:
            calibration, source = load_calibration(options.calibration, proto), f"user ({digest(options.calibration)})"
        else:
            calibration = generated_inputs(proto, options.calibration_samples, seed=CALIBRATION_SEED)
            source = f"generated (seeded standard normal, seed {CALIBRATION_SEED})"
    return quantize_int8(proto, quantization=options.quantization, calibration=calibration,
                         calibration_source=source, name=name)


def precision_deltas(reference: onnx.ModelProto, candidate: onnx.ModelProto, *, samples: int = EVAL_SAMPLES,
                     seed: int = EVAL_SEED, name: str = "model") -> dict[str, Any]:
    """Size and accuracy of `candidate` (fp16/int8) against `reference` (its fp32 export), both run
    in onnxruntime (child processes) on `samples` seeded standard-normal evaluation inputs:
    per output the largest absolute and relative error and top-1 / top-5 agreement."""
    ref_feeds = generated_inputs(reference, samples, seed=seed)
    n = len(next(iter(ref_feeds.values())))
    specs = input_specs(reference)
    step = (specs[0][1][0] if specs and specs[0][1] and specs[0][1][0] else None) or 16
    chunks = [{k: v[i:i + step] for k, v in ref_feeds.items()} for i in range(0, n, step)]
    cand_types = {k: dt for k, _, dt in input_specs(candidate)}
    cand_chunks = [{k: v.astype(cand_types.get(k, v.dtype)) for k, v in c.items()} for c in chunks]
    names, want, _ = run_isolated(reference, chunks, what=f"{name} (fp32)")
    _, got, _ = run_isolated(candidate, cand_chunks, what=f"{name} ({precision_of(candidate)})")
    outputs = {}
    for j, out in enumerate(names):
        w = np.concatenate([o[j] for o in want])
        g = np.concatenate([o[j] for o in got])
        p = compare(out, g, w, len(w), 0, precision_of(candidate))
        outputs[out] = {"max_abs_error": p.max_abs, "max_rel_error": p.max_rel, "top1_agreement": p.argmax_agreement,
                        "top5_agreement": p.top5_agreement}
    ref_size, cand_size = reference.ByteSize(), candidate.ByteSize()
    return {"samples": n, "fp32_size_bytes": ref_size, "size_bytes": cand_size,
            "size_ratio": ref_size / cand_size if cand_size else float("inf"), "outputs": outputs}
