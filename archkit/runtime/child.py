"""onnxruntime in a child process, for parity and bench alike.

A crash (a signal) or a hang of onnxruntime becomes a ResourceError naming the signal or the
timeout (ORT_TIMEOUT, or $ARCHKIT_ORT_TIMEOUT), not a dead or stuck archkit. The parent writes
the model, the feeds and a request into a temporary folder; the child (`main`) loads the model
once, runs the task ("run": every feed; "bench": archkit.runtime.timing; "memory": one feed with
the allocator's profile, archkit.runtime.memory) and writes the results.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx

from archkit.errors import MalformedModelError, ResourceError, UnsupportedError
from archkit.runtime.timing import child_bench

__all__ = ["OPT_LEVELS", "ORT_TIMEOUT", "Explain", "child_env", "child_session", "main", "node_events", "run_isolated",
           "session", "spawn"]

# How long one child process may take to load and run a model (ARCHKIT_ORT_TIMEOUT overrides).
ORT_TIMEOUT = 600.0
# onnxruntime's whole error message and the index of the feed it failed on → text to add to it
Explain = Callable[[str, "int | None"], str]


def session(proto: onnx.ModelProto, *, threads: int = 1):
    import onnxruntime as ort  # heavy: only where a session is made

    opts = ort.SessionOptions()
    # One thread: the same summation order on every run, so reported errors are reproducible.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


_CHILD_CODE = "import sys; from archkit.runtime.child import main; sys.exit(main(sys.argv[1]))"
OPT_LEVELS = ("off", "basic", "extended", "all")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn(model, request: Mapping, feeds: Sequence[Mapping[str, np.ndarray]], *, what: str,
          timeout: float | None = None, explain: Explain | None = None) -> tuple[dict, list[list[np.ndarray]]]:
    """Run `request` (a task for `main`) on `model` (a ModelProto, bytes or a path) in a
    child process; returns its result and the outputs of each feed. A child killed by a signal,
    or still running after `timeout` seconds, is a ResourceError. `explain(message, feed)`: what
    to add to the error when onnxruntime fails running a feed (`feed`: its index, None if not known)."""
    timeout = float(timeout or os.environ.get("ARCHKIT_ORT_TIMEOUT") or ORT_TIMEOUT)
    with tempfile.TemporaryDirectory(prefix="archkit-ort-") as tmp:
        work = Path(tmp)
        if isinstance(model, onnx.ModelProto):
            model = model.SerializeToString()
        if isinstance(model, bytes):
            (work / "model.onnx").write_bytes(model)
            model_path = work / "model.onnx"
        else:
            model_path = Path(model).resolve()
        for i, f in enumerate(feeds):
            np.savez(work / f"in{i}.npz", **{f"i{k}": v for k, v in enumerate(f.values())})
        request = {**request, "model": str(model_path), "feeds": [list(f) for f in feeds]}
        (work / "request.json").write_text(json.dumps(request))
        proc = subprocess.Popen([sys.executable, "-c", _CHILD_CODE, str(work)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ResourceError(f"onnxruntime did not finish {what} within {timeout:g} s (ARCHKIT_ORT_TIMEOUT): "
                                f"its child process was stopped with SIGKILL") from None
        rc = proc.returncode
        if rc < 0:
            try:
                sig = signal.Signals(-rc)
                named = f"{sig.name} ({signal.strsignal(sig)})"
            except ValueError:
                named = f"signal {-rc}"
            raise ResourceError(f"onnxruntime crashed on {what}: its child process was killed by {named}")
        if (work / "error.json").is_file():
            e = json.loads((work / "error.json").read_text())
            message = e["message"].strip().splitlines()[0] if e["message"].strip() else e["type"]
            if e["stage"] == "load":
                unsupported = any(m in e["message"] for m in ("NOT_IMPLEMENTED", "No Op registered",
                                                               "Could not find an implementation"))
                kind = UnsupportedError if unsupported else MalformedModelError
                raise kind(f"onnxruntime cannot load {what}: {message}")
            hint = explain(e["message"], e.get("feed")) if explain is not None else ""
            raise MalformedModelError(f"onnxruntime cannot run {what}: {message}{hint}")
        if rc != 0 or not (work / "result.json").is_file():
            tail = err.decode(errors="replace").strip().splitlines()
            raise ResourceError(f"onnxruntime's child process for {what} exited with status {rc}"
                                + (f": {tail[-1]}" if tail else ""))
        result = json.loads((work / "result.json").read_text())
        outputs = []
        for i in range(len(feeds)):
            if (work / f"out{i}.npz").is_file():
                with np.load(work / f"out{i}.npz") as z:
                    outputs.append([z[f"o{j}"] for j in range(len(z.files))])
    return result, outputs


def run_isolated(model, feeds: Sequence[Mapping[str, np.ndarray]], *, threads: int = 1, optimization: str = "all",
                 what: str = "the model", timeout: float | None = None, explain: Explain | None = None
                 ) -> tuple[list[str], list[list[np.ndarray]], str]:
    """Each feed through one onnxruntime session in a child process: (output names, outputs per
    feed, runtime description)."""
    if optimization not in OPT_LEVELS:
        raise ValueError(f"optimization {optimization!r}: expected one of {OPT_LEVELS}")
    result, outputs = spawn(model, {"task": "run", "threads": threads, "optimization": optimization}, feeds,
                            what=what, timeout=timeout, explain=explain)
    return result["outputs"], outputs, result["runtime"]


def child_session(request: Mapping):
    import onnxruntime as ort  # heavy: only where a session is made

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(request.get("threads", 1))
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if "spinning" in request:  # idle worker threads spin-wait for work (onnxruntime's default: on)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if request["spinning"] else "0")
    opts.graph_optimization_level = {
        "off": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[request.get("optimization", "all")]
    if request.get("task") == "memory":
        # the allocation plan as the file's ops make it: no fusion, no pre-planned block, and the
        # weights apart from the arena whose peak is read
        opts.enable_mem_pattern = False
        opts.enable_profiling = True
        opts.profile_file_prefix = request["profile"]  # in the child's temporary folder
        opts.add_session_config_entry("session.use_device_allocator_for_initializers", "1")
        opts.add_session_config_entry("session.disable_prepacking", "1")  # no re-packed copies of weights
    return ort.InferenceSession(request["model"], opts, providers=["CPUExecutionProvider"])


def node_events(profile: str) -> list[dict]:
    """The per-node events of an onnxruntime profile, in execution order: index, name, op type,
    output bytes, and the arena's bytes (in use after the node, requested in use, peak so far)."""
    keep = ("node_index", "op_name", "output_size", "mem_bytes_in_use", "mem_bytes_requested_in_use",
            "mem_in_use_peak")
    with open(profile) as f:
        events = json.load(f)
    out = []
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            args = e.get("args", {})
            out.append({"name": e["name"][:-len("_kernel_time")], **{k: args.get(k) for k in keep}})
    return out


def main(workdir: str) -> int:
    """The child: load the model once, run every feed (or the benchmark), write the results."""
    work = Path(workdir)
    request = json.loads((work / "request.json").read_text())

    running: int | None = None  # the feed being run, for the error

    def fail(stage: str, e: BaseException) -> int:
        (work / "error.json").write_text(json.dumps({"stage": stage, "type": type(e).__name__, "message": str(e),
                                                     "feed": running}))
        return 3

    import onnxruntime as ort  # heavy: only where a session is made

    if request["task"] == "memory":
        request = {**request, "profile": str(work / "profile")}
    try:
        sess = child_session(request)
    except Exception as e:  # noqa: BLE001 - any load failure goes back to the parent as error.json
        return fail("load", e)
    feeds = []
    for i, names in enumerate(request["feeds"]):
        with np.load(work / f"in{i}.npz") as z:
            feeds.append({n: z[f"i{k}"] for k, n in enumerate(names)})
    result = {"outputs": [o.name for o in sess.get_outputs()], "runtime": f"onnxruntime {ort.__version__}"}
    try:
        if request["task"] == "run":
            for running, f in enumerate(feeds):
                outs = sess.run(None, f)
                np.savez(work / f"out{running}.npz", **{f"o{j}": o for j, o in enumerate(outs)})
        elif request["task"] == "bench":
            result.update(child_bench(sess, feeds, request))
        elif request["task"] == "memory":
            running = 0
            sess.run(None, feeds[0])
            result["events"] = node_events(sess.end_profiling())
        else:
            raise ValueError(f"unknown task {request['task']!r}")
    except Exception as e:  # noqa: BLE001 - any run failure goes back to the parent as error.json
        return fail("run", e)
    (work / "result.json").write_text(json.dumps(result))
    return 0
