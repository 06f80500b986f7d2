"""Deployable exports (archkit.deploy, archkit.runtime.bench, `archkit export/verify/bench`): NCHW parity for
every architecture, fp16 and int8 against the float32 Keras model, plain ONNX files, benchmarks,
and onnxruntime crashes or hangs reported as errors.

NCHW parity exports each architecture again (tf2onnx's `inputs_as_nchw`), at a small input where
its config allows (SMALL below) and 10 classes for the classifiers. Export time is mostly the
network's depth and weights, not its input size, so the deeper members of each family (HEAVY:
resnet34/50/101/152, densenet169/201, inception_v2/v3) are exported only with
ARCHKIT_TEST_ALL_EXPORTS=1 (about 3 minutes more on a quiet 2-core machine); every family keeps
members in the default run (resnet18, densenet121, inception_v1 and the inception modules, both
AlexNets, the baseline CNNs).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import architectures
from archkit.cli import main
from archkit.deploy import DeployOptions
from archkit.deploy.convert import count_transposes, fold_transpose_pairs, generated_inputs, load_calibration
from archkit.errors import MalformedModelError, ParityError, ResourceError, UnsupportedError, UsageError
from archkit.metadata import entries as metadata
from archkit.runtime.child import run_isolated
from archkit.runtime.parity import TOLERANCES, Verification, decided, precision_of
from tests import builders

# Small inputs (and 10 classes) where the config allows; what each network's shape arithmetic needs.
SMALL = {
    "inception_cost_naive": {"input_shape": (8, 8, 192)},
    "inception_cost_two_kernels": {"input_shape": (8, 8, 192)},
    "inception_cost_reduced": {"input_shape": (8, 8, 192)},
    "inception_v1": {"input_shape": (64, 64, 3), "classes": 10},
    "inception_v1_module": {"input_shape": (8, 8, 192)},
    "inception_v2": {"input_shape": (64, 64, 3), "classes": 10},
    "inception_v2_module": {"input_shape": (8, 8, 192)},
    "inception_v3": {"input_shape": (75, 75, 3), "classes": 10},  # Keras' minimum for InceptionV3
    "inception_v3_module_a": {"input_shape": (5, 5, 288)},
    "inception_v3_module_b": {"input_shape": (5, 5, 768)},
    "inception_v3_module_c": {"input_shape": (3, 3, 1280)},
    **{f"resnet{d}": {"input_shape": (32, 32, 3), "classes": 10} for d in (18, 34, 50, 101, 152)},
    **{f"densenet{d}": {"input_shape": (32, 32, 3), "classes": 10} for d in (121, 169, 201)},
    "alexnet": {"input_shape": (67, 67, 3), "classes": 10},  # conv1 15x15 ... pool5 1x1
    "alexnet_onetower": {"classes": 10},  # 224: its adaptive pool needs pool5 >= 6x6
}
HEAVY = {"resnet34", "resnet50", "resnet101", "resnet152", "densenet169", "densenet201", "inception_v2", "inception_v3"}
ALL_EXPORTS = bool(os.environ.get("ARCHKIT_TEST_ALL_EXPORTS"))


def _small(name: str) -> dict:
    defaults = architectures.get(name).defaults
    return {k: v for k, v in SMALL.get(name, {}).items() if k in defaults}


def _run(name: str, **deploy):
    from archkit.keras.pipeline import run_architecture

    return run_architecture(name, deploy=DeployOptions(**deploy), **_small(name))


def _param(name: str):
    skip = name in HEAVY and not ALL_EXPORTS
    return pytest.param(name, marks=pytest.mark.skipif(skip, reason="set ARCHKIT_TEST_ALL_EXPORTS=1"))


# --- layout -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [_param(n) for n in architectures.names()])
def test_nchw_export_computes_what_keras_computes(name):
    analysis, proto = _run(name, layout="nchw")
    v = analysis.verification
    assert v.ok, v.outputs
    assert v.layout == "nchw" and v.precision == "fp32"
    image = proto.graph.input[0].type.tensor_type.shape.dim
    shape = analysis.config["input_shape"]
    assert [d.dim_value for d in image[1:]] == [shape[2], shape[0], shape[1]]  # C, H, W
    assert analysis.deployment["transposes"] == count_transposes(proto) <= 1
    meta = metadata(proto)
    assert (meta["archkit.layout"], meta["archkit.precision"], meta["archkit.batch"]) == ("nchw", "fp32", "dynamic")


def test_split_transposes_are_folded():
    """Transpose(NCHW→NHWC) → Split(channels) → Transpose(NHWC→NCHW) per output becomes one Split."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, 2, 2, 2]) for i in range(2)]
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Split", ["t"], ["s0", "s1"], axis=3, num_outputs=2),
        helper.make_node("Transpose", ["s0"], ["u0"], perm=[0, 3, 1, 2]),
        helper.make_node("Transpose", ["s1"], ["u1"], perm=[0, 3, 1, 2]),
        helper.make_node("Relu", ["u0"], ["y0"]),
        helper.make_node("Relu", ["u1"], ["y1"]),
    ]
    model = builders.model(nodes, [x], outs, opset=18)
    feeds = [{"x": np.arange(16, dtype=np.float32).reshape(1, 4, 2, 2) - 8}]
    _, before, _ = run_isolated(model, feeds)
    assert fold_transpose_pairs(model) == 3
    assert count_transposes(model) == 0
    assert [a.i for a in model.graph.node[0].attribute if a.name == "axis"] == [1]
    onnx.checker.check_model(model, full_check=True)
    _, after, _ = run_isolated(model, feeds)
    for b, a in zip(before[0], after[0]):
        np.testing.assert_array_equal(a, b)


def test_gather_transposes_are_folded():
    """Keras' adaptive pooling gathers rows in NHWC: Transpose → Gather(H) → Transpose becomes one Gather."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 3])
    idx = numpy_helper.from_array(np.array([2, 0], np.int64), "idx")
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Gather", ["t", "idx"], ["g"], axis=1),
        helper.make_node("Transpose", ["g"], ["u"], perm=[0, 3, 1, 2]),
        helper.make_node("Relu", ["u"], ["y"]),
    ]
    model = builders.model(nodes, [x], [y], [idx], opset=18)
    feeds = [{"x": np.arange(18, dtype=np.float32).reshape(1, 2, 3, 3) - 9}]
    _, before, _ = run_isolated(model, feeds)
    assert fold_transpose_pairs(model) == 2 and count_transposes(model) == 0
    onnx.checker.check_model(model, full_check=True)
    _, after, _ = run_isolated(model, feeds)
    np.testing.assert_array_equal(after[0][0], before[0][0])


def test_fixed_batch_and_cache_reuse(arch_run):
    analysis, proto = _run("baseline_cnn", layout="nchw", batch=4)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [4, 1, 28, 28]
    assert metadata(proto)["archkit.batch"] == "4"
    assert {o.batch for o in analysis.verification.outputs} == {4}
    assert analysis.deployment["cached"] is False and analysis.deployment["export_seconds"] > 0
    again, proto2 = _run("baseline_cnn", layout="nchw", batch=4)
    assert again.deployment["cached"] is True
    assert proto2.SerializeToString() == proto.SerializeToString()
    # the plain export is another cache entry
    assert arch_run("baseline_cnn")[1].SerializeToString() != proto.SerializeToString()


def test_deploy_options_are_in_the_cache_key():
    from archkit.keras.cache import cache_key

    config = architectures.get("baseline_cnn").config()
    keys = {cache_key("baseline_cnn", config, None, DeployOptions(**o).cache_fields())
            for o in ({}, {"layout": "nchw"}, {"batch": 2}, {"precision": "fp16"}, {"precision": "fp16", "keep_io_types": True},
                      {"precision": "int8"}, {"precision": "int8", "quantization": "dynamic"},
                      {"precision": "int8", "calibration_samples": 8})}
    assert len(keys) == 8


# --- precision --------------------------------------------------------------------------------

def _fixed_set(samples: int = 256):
    """The fixed evaluation set: seeded standard-normal inputs, far from the seeds verification
    and calibration use."""
    from archkit.deploy import EVAL_SEED

    return np.random.default_rng(EVAL_SEED + 1).standard_normal((samples, 28, 28, 1)).astype(np.float32)


def _int8_agreement(proto, model, x):
    _, got, _ = run_isolated(proto, [{"image": x}])
    probs = np.asarray(model(x, training=False))
    int8 = got[0][0]
    agree = int8.argmax(-1) == probs.argmax(-1)
    top2 = np.sort(probs, axis=-1)[:, -2:]
    return agree, top2[:, 1] - top2[:, 0], int8


@pytest.mark.parametrize("quantization", ["static", "dynamic"])
def test_int8_baseline_keeps_argmax_agreement(quantization):
    from archkit.keras.pipeline import build_seeded

    analysis, proto = _run("baseline_cnn", precision="int8", quantization=quantization)
    assert precision_of(proto) == "int8"
    assert json.loads(metadata(proto)["archkit.quantization"])["mode"] == quantization
    assert analysis.verification.ok, analysis.verification.outputs
    deltas = analysis.deployment["deltas"]
    assert deltas["size_ratio"] > 3  # small model: fixed overhead; resnet50 is ~3.9x (benchmarks/deploy.py)
    *_, model = build_seeded("baseline_cnn")
    x = _fixed_set()
    agree, margin, _ = _int8_agreement(proto, model, x)
    assert agree.mean() >= TOLERANCES["int8"].top1, agree.mean()
    # where int8 and float32 disagree, float32 itself was nearly undecided
    assert np.all(margin[~agree] < 0.05), margin[~agree]


def test_int8_margin_rule_closed_form():
    """decided(): top-1 minus runner-up against `margin` population standard deviations of the row."""
    three = np.array([[2.0, 1.0, 0.0]])  # mean 1, sd sqrt(2/3): the lead of 1 is 1.2247 sd
    four = np.array([[1.0, 0.0, 0.0, 0.0],  # mean 1/4, sd sqrt(3)/4: a lead of 2.3094 sd
                     [1.0, 1.0, 0.0, 0.0],  # a tie: never decided
                     [5.0, 5.0, 5.0, 5.0]])  # no spread at all
    assert decided(three, 1.22).tolist() == [True] and decided(three, 1.23).tolist() == [False]
    assert decided(four, 2.30).tolist() == [True, False, False]
    assert decided(four, 2.31).tolist() == [False, False, False]
    assert decided(3 * three - 7, 1.22).tolist() == [True]  # shift and scale do not change it
    assert decided(four, 0.0).tolist() == [True] * 3  # margin 0: every sample counts


def _synthetic(flipped_decided: int, flipped_undecided: int, n_decided: int = 12, n_undecided: int = 6):
    """An int8 verification of one output: decided rows (lead 0.9 = 2.3 sd) and nearly tied rows
    (lead 0.01), with the candidate's top-1 moved to class 1 on the first rows of each kind. Its
    error is set to 0: only agreement is under test."""
    from dataclasses import replace

    from archkit.runtime.parity import compare

    clear = np.tile([1.0, 0.1, 0.1, 0.1], (n_decided, 1))
    tied = np.tile([0.5, 0.49, 0.1, 0.1], (n_undecided, 1))
    want = np.vstack([clear, tied])
    got = want.copy()
    for i in [*range(flipped_decided), *range(n_decided, n_decided + flipped_undecided)]:
        got[i, [0, 1]] = got[i, [1, 0]]
    return Verification((replace(compare("y", got, want, len(want), 0, "int8"), max_abs=0.0),), "test", "int8")


def test_int8_agreement_counts_only_decided_samples():
    t = TOLERANCES["int8"]
    assert decided(np.array([[1.0, 0.1, 0.1, 0.1], [0.5, 0.49, 0.1, 0.1]]), t.margin).tolist() == [True, False]
    v = _synthetic(flipped_decided=0, flipped_undecided=6)  # every tied sample flips: not counted
    assert v.agreement()["y"] == (1.0, 1.0, 12, 18) and v.outputs[0].argmax_agreement == pytest.approx(12 / 18)
    assert v.judged("y") and not v._agreement_failures()
    v = _synthetic(flipped_decided=3, flipped_undecided=0)  # 9/12 = 75% < 80%
    assert v.agreement()["y"][:3] == (0.75, 1.0, 12)
    with pytest.raises(ParityError, match=r"top-1 agreement 75\.0% \(needs 80%\).* over 12 of 18 samples") as e:
        v.raise_for_failure("synthetic")
    assert e.value.exit_code == 8
    assert not _synthetic(flipped_decided=2, flipped_undecided=0)._agreement_failures()  # 10/12 = 83%
    # fewer decided samples than t.min_decided: agreement is not judged (the error bound still is)
    few = _synthetic(flipped_decided=5, flipped_undecided=0, n_decided=t.min_decided - 1)
    assert not few.judged("y") and not few._agreement_failures()


def test_int8_breakage_fails_verification():
    """A real int8 fault, every class reading its neighbour's int8 weights in the output layer:
    verification fails (exit 8), on the error bound and on top-1 agreement."""
    from archkit.keras.parity import verify_keras
    from archkit.keras.pipeline import build_seeded

    _, proto = _run("baseline_cnn", precision="int8")
    *_, model = build_seeded("baseline_cnn")
    broken = onnx.ModelProto()
    broken.CopyFrom(proto)
    (weight,) = [t for t in broken.graph.initializer if t.name.startswith("baseline_cnn_1/output_1/")
                 and t.name.endswith("_quantized") and t.data_type == TensorProto.INT8]
    weight.CopyFrom(numpy_helper.from_array(np.roll(numpy_helper.to_array(weight), 1, axis=1), weight.name))
    healthy = verify_keras(model, proto, seeds=(0, 1, 2), batch_sizes=(1, 8))
    assert healthy.ok and healthy.judged("output")
    v = verify_keras(model, broken, seeds=(0, 1, 2), batch_sizes=(1, 8))
    top1, _, counted, samples = v.agreement()["output"]
    assert v.judged("output") and top1 < TOLERANCES["int8"].top1, (top1, counted, samples)
    assert v._agreement_failures() and not all(o.ok for o in v.outputs)
    with pytest.raises(ParityError) as e:
        v.raise_for_failure("baseline_cnn")
    assert e.value.exit_code == 8


def test_int8_with_user_calibration(tmp_path):
    from archkit.keras.pipeline import build_seeded

    x = _fixed_set(64)
    np.savez(tmp_path / "cal.npz", image=x[:32])
    folder = tmp_path / "cal"
    folder.mkdir()
    for i in range(16):
        np.save(folder / f"{i:03d}.npy", x[i])  # one sample per file, no batch axis
    *_, model = build_seeded("baseline_cnn")
    for source in (tmp_path / "cal.npz", folder):
        _analysis, proto = _run("baseline_cnn", precision="int8", calibration=str(source))
        info = json.loads(metadata(proto)["archkit.quantization"])
        assert info["calibration_samples"] == (32 if source.suffix else 16)
        assert info["calibration_data"].startswith("user (sha256:")
        agree, _margin, _ = _int8_agreement(proto, model, _fixed_set())
        assert agree.mean() >= TOLERANCES["int8"].top1


def test_calibration_data_is_checked(tmp_path, arch_run):
    _, proto = arch_run("baseline_cnn")
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "a.npy", np.zeros((4, 1, 28, 28), np.float32))
    with pytest.raises(UsageError, match="look channels-first"):
        load_calibration(tmp_path / "d", proto)
    with pytest.raises(Exception, match="no such calibration"):
        load_calibration(tmp_path / "missing.npz", proto)
    np.savez(tmp_path / "wrong.npz", pixels=np.zeros((2, 28, 28, 1)), other=np.zeros(3))
    with pytest.raises(UsageError, match="no array for input"):
        load_calibration(tmp_path / "wrong.npz", proto)
    np.savez(tmp_path / "good.npz", np.ones((3, 28, 28, 1)))
    assert load_calibration(tmp_path / "good.npz", proto)["image"].shape == (3, 28, 28, 1)


@pytest.mark.parametrize("name,keep_io_types", [("resnet18", False), ("baseline_cnn", True)])
def test_fp16_small_net_passes_its_thresholds(name, keep_io_types):
    analysis, proto = _run(name, precision="fp16", layout="nchw", keep_io_types=keep_io_types)
    v = analysis.verification
    assert v.ok and v.precision == "fp16", v.outputs
    assert v.max_rel > 1e-6  # float16 really computes: not the float32 error level
    assert json.loads(metadata(proto)["archkit.fp16"]) == {"keep_io_types": keep_io_types}
    io = TensorProto.FLOAT if keep_io_types else TensorProto.FLOAT16
    assert proto.graph.input[0].type.tensor_type.elem_type == proto.graph.output[0].type.tensor_type.elem_type == io
    assert analysis.deployment["deltas"]["size_ratio"] >= 1.9
    assert analysis.deployment["deltas"]["outputs"][proto.graph.output[0].name]["top1_agreement"] >= 0.99
    weights = [t for t in proto.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert sum(t.data_type == TensorProto.FLOAT16 for t in weights) / len(weights) > 0.9


def test_conversions_are_deterministic(arch_run):
    from archkit.deploy.convert import convert_precision

    _, proto = arch_run("baseline_cnn")
    for options in (DeployOptions(precision="fp16"), DeployOptions(precision="int8"),
                    DeployOptions(precision="int8", quantization="dynamic")):
        a, b = (convert_precision(proto, options).SerializeToString() for _ in range(2))
        assert a == b, options


def test_generated_inputs_follow_the_model():
    model = _plain_model()
    feeds = generated_inputs(model, 5, seed=0)
    assert feeds["x"].shape == (5, 3, 8, 8) and feeds["x"].dtype == np.float32


# --- plain ONNX files ---------------------------------------------------------------------------

def _plain_model(op: str = "Conv", domain: str = "") -> onnx.ModelProto:
    """A small classifier as another tool would write it: no archkit metadata."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    fc = numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "fc")
    nodes = [helper.make_node(op, ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], domain=domain),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "fc"], ["g"]),
             helper.make_node("Softmax", ["g"], ["y"])]
    return builders.model(nodes, {"x": ["N", 3, 8, 8]}, {"y": ["N", 6]}, [w, b, fc], name="plain",
                          opsets=[helper.make_opsetid(domain, 1)] if domain else [], producer_name="somebody-else")


def test_verify_file_without_keras_source(tmp_path, capsys):
    path = tmp_path / "plain.onnx"
    onnx.save(_plain_model(), path)
    assert main(["verify", str(path), "--seeds", "2", "--batch-sizes", "1,4"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime vs onnxruntime with graph optimizations off" in out
    assert "top-5" in out and "parity ok" in out


def test_verify_file_onnxruntime_cannot_load(tmp_path, capsys):
    path = tmp_path / "odd.onnx"
    onnx.save(_plain_model(op="Frobnicate", domain="com.example"), path)
    code = main(["verify", str(path)])
    err = capsys.readouterr().err
    assert code in (MalformedModelError.exit_code, UnsupportedError.exit_code)
    assert err.startswith("archkit: error: onnxruntime cannot load") and err.count("\n") == 1


def test_verify_name_reports_precision_thresholds(capsys):
    assert main(["verify", "baseline_cnn", "--precision", "int8", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    t = TOLERANCES["int8"]
    assert f"top-1 agreement >= {t.top1:.0%}" in out and "vs Keras (float32)" in out
    assert f"leads the runner-up by >= {t.margin:g} sd of their scores (judged from {t.min_decided})" in out
    assert "seeds 0, 1; batch sizes 1, 8" in out
    assert " of 18 samples decided)  ok" in out


# --- onnxruntime crashing or hanging -------------------------------------------------------------

def test_a_crashing_session_is_a_resource_error(tmp_path, monkeypatch, capsys):
    from archkit.runtime import child

    monkeypatch.setattr(child, "_CHILD_CODE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ResourceError, match=r"killed by SIGSEGV \(Segmentation fault\)"):
        run_isolated(_plain_model(), [{"x": np.zeros((1, 3, 8, 8), np.float32)}], what="plain.onnx")
    path = tmp_path / "plain.onnx"
    onnx.save(_plain_model(), path)
    assert main(["verify", str(path)]) == ResourceError.exit_code == 7
    err = capsys.readouterr().err
    assert "onnxruntime crashed" in err and "SIGSEGV" in err and err.count("\n") == 1


def test_a_hanging_session_is_stopped(monkeypatch):
    from archkit.runtime import child

    monkeypatch.setattr(child, "_CHILD_CODE", "import time; time.sleep(60)")
    with pytest.raises(ResourceError, match=r"did not finish plain.onnx within 1 s.*SIGKILL"):
        run_isolated(_plain_model(), [{"x": np.zeros((1, 3, 8, 8), np.float32)}], what="plain.onnx", timeout=1)


# --- bench --------------------------------------------------------------------------------------

def test_bench_smoke(arch_run):
    """Runs and reports numbers; no timing is asserted."""
    from archkit.keras.bench import bench_with_keras
    from archkit.keras.pipeline import build_seeded
    from archkit.render.report import deployment_section, render
    from archkit.render.text import bench_lines as summary_lines

    analysis, proto = arch_run("baseline_cnn")
    *_, model = build_seeded("baseline_cnn")
    b = bench_with_keras(proto, model, name="baseline_cnn", macs_per_sample=analysis.costs.total()["macs"],
                         threads=1, batch_sizes=(1, 4), runs=5, warmup=1, budget=0.5, peak_n=256)
    assert {(l.runtime, l.batch) for l in b.latencies} == {("onnxruntime", 1), ("onnxruntime", 4), ("keras", 1),
                                                           ("keras", 4)}
    for lat in b.latencies:
        assert 0 < lat.median_ms <= lat.p90_ms and lat.runs >= 5 and lat.gflops > 0
    assert b.peak.gflops > 0 and b.fraction(b.latencies[0]) > 0 and b.speedup(1) > 0
    assert b.threads == 1
    text = "\n".join(summary_lines(b))
    assert "2 flops per MAC" in text and "matmul peak" in text and "294,176" in text
    section = "\n".join(deployment_section(b))
    assert section.startswith("## Deployment") and b.machine["cpu"] in section
    from dataclasses import replace

    files = render(replace(analysis, bench=b), ["md", "json"])
    assert "## Deployment" in files["README.md"].decode()
    assert json.loads(files["summary.json"])["deployment"]["flops_per_mac"] == 2
    # the default report has no machine-dependent section
    plain = render(analysis, ["md", "json"])
    assert "## Deployment" not in plain["README.md"].decode()
    assert "deployment" not in json.loads(plain["summary.json"])


def test_bench_command_on_a_file(tmp_path, capsys):
    path = tmp_path / "plain.onnx"
    onnx.save(_plain_model(), path)
    assert main(["bench", str(path), "--threads", "1", "--runs", "5", "--batch-sizes", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime threads 1" in out and "median" in out and "p90" in out and "of peak" in out


# --- command line ---------------------------------------------------------------------------------

def test_export_command_nchw_int8(tmp_path, capsys):
    target = tmp_path / "cnn.onnx"
    assert main(["export", "baseline_cnn", "-o", str(target), "--layout", "nchw", "--precision", "int8",
                 "--calibration-samples", "16"]) == 0
    out = capsys.readouterr().out
    assert "Transpose ops left: 1" in out and "smaller" in out and "top-1 agreement" in out and "export:" in out
    model = onnx.load(target)
    onnx.checker.check_model(model, full_check=True)
    meta = metadata(model)
    assert (meta["archkit.layout"], meta["archkit.precision"]) == ("nchw", "int8")
    assert [p.name for p in tmp_path.iterdir()] == ["cnn.onnx"]  # nothing else left beside it


@pytest.mark.parametrize("argv,fragment", [
    (["export", "baseline_cnn", "-o", "x.onnx", "--batch", "0"], "--batch '0'"),
    (["export", "baseline_cnn", "-o", "x.onnx", "--batch", "many"], "--batch 'many'"),
    (["export", "baseline_cnn", "-o", "x.onnx", "--calibration", "c.npz"], "--calibration applies"),
    (["export", "baseline_cnn", "-o", "x.onnx", "--precision", "fp8"], "invalid choice"),
    (["verify", "baseline_cnn", "--batch-sizes", "1,x"], "--batch-sizes '1,x'"),
    (["bench", "resnet5O"], "unknown architecture"),
])
def test_deploy_usage_errors(tmp_path, capsys, argv, fragment):
    assert main([a if a != "x.onnx" else str(tmp_path / a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_child_process_sees_no_tensorflow():
    """onnxruntime's child imports archkit.runtime only: it starts fast."""
    import subprocess

    from archkit.runtime.child import child_env

    code = "import archkit.runtime.child, archkit.runtime.bench, archkit.deploy, sys; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=child_env(), timeout=120)
    assert out.stdout.strip() == "False", out.stderr
