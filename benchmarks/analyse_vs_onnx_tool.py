"""`archkit analyse` against onnx-tool and against plain onnx (load + infer_shapes), in one run.

    python benchmarks/analyse_vs_onnx_tool.py [--workdir /tmp/archkit-bench] [--sizes 3000,30000,300000]
                                              [--venv /tmp/bench-venv] [--skip-keras] [--repeat 3]

Models: the Keras-exported ResNet50, InceptionV3 and DenseNet121 (keras.applications, weights=None,
exported once with Keras' own `model.export(format="onnx")` and kept in the workdir), generated
deep graphs (chains of residual conv blocks: Conv-Relu-Conv-Add-Relu, PyTorch-style names,
3,000 / 30,000 / 300,000 nodes), and a generated model declaring 4 GiB of external weights in a
sparse file (for memory).

Each measurement runs in a fresh process and times the work after the imports:
- archkit:   archkit.analyse_file(path) + costs.total() + costs.by_layer()
- onnx-tool: onnx_tool.loadmodel(path) + graph_reorder_nodes() + shape_infer() + profile()
             (what `model_profile` does, without printing its table), from its own venv
- onnx:      onnx.load(path) + onnx.shape_inference.infer_shapes(model): the floor for an
             analyser built on onnx.
Peak RSS is the child's VmHWM. Each archkit/onnx pair is run alternately, best of --repeat;
the CPU-time ratio is printed beside the wall-clock one (the machine may be shared). onnx-tool is installed into its own venv (`--venv`, created
with `python -m venv` + `pip install onnx-tool` when missing); if that fails its columns say
"absent". onnx-tool is not run at 300,000 nodes (it grows quadratically: hours) nor on the
4 GiB model (it reads every weight: 8.8 GB peak in the issue's measurement).

Goals (issue 5): archkit >= 50x faster than onnx-tool at 30,000 nodes; no slower than onnx-tool
on the real models; within 2x of onnx load + infer_shapes; seconds per node at 300,000 within
1.5x of 3,000; peak RSS <= 300 MB on the 4 GiB model. Issue 15: the memory figures add at most
10 % on the 30,000-node chain (archkit with them against archkit with `memory=False`, same run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30

# --- the programs each child runs ------------------------------------------------------------

_PRELUDE = """
import json, sys, time
path = sys.argv[1]
c0 = time.process_time()
"""
_ARCHKIT = _PRELUDE + """
from archkit.analysis import analyse_file
memory = sys.argv[2:] != ["costs-only"]
t, c0 = time.perf_counter(), time.process_time()
a = analyse_file(path, memory=memory)
total = a.costs.total()
layers = a.costs.by_layer()
peak = a.memory.runtime.peak.bytes if memory else None  # what archkit analyse prints: the peak, the plan's
plan = a.memory.runtime.planned.peak if memory else None
dt = time.perf_counter() - t
out = dict(seconds=dt, macs=total["macs"], params=total["params"], ops=total["ops"], layers=len(layers),
           complete=a.costs.complete, peak=peak)
"""
_ONNX = _PRELUDE + """
import onnx
t, c0 = time.perf_counter(), time.process_time()
m = onnx.load(path)
inferred = onnx.shape_inference.infer_shapes(m)
dt = time.perf_counter() - t
out = dict(seconds=dt, ops=len(m.graph.node))
"""
_ONNX_TOOL = _PRELUDE + """
import io, contextlib
import numpy as np
import onnx, onnx_tool
shapes = json.loads(sys.argv[2])
t, c0 = time.perf_counter(), time.process_time()
with contextlib.redirect_stdout(io.StringIO()):
    model = onnx_tool.loadmodel(path, {'verbose': False})
    g = model.graph
    g.graph_reorder_nodes()
    g.shape_infer({k: np.zeros(v, np.float32) for k, v in shapes.items()})
    g.profile()
dt = time.perf_counter() - t
out = dict(seconds=dt, macs=int(g.macs[0]) if hasattr(g, 'macs') else None, ops=len(g.nodemap))
"""
# Peak RSS from VmHWM: ru_maxrss would carry over the parent's size across fork + exec.
_EPILOGUE = """
out["cpu_seconds"] = time.process_time() - c0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
out["peak_rss_mb"] = int(hwm[0].split()[1]) / 1024 if hwm else float("nan")
print("RESULT " + json.dumps(out))
"""


def run_child(python: str, program: str, args: list[str], timeout: float) -> dict:
    try:
        proc = subprocess.run([python, "-c", program + _EPILOGUE, *args], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": err[:160]}


def best_pair(path: str, repeat: int, timeout: float, costs_only: bool = False) -> tuple[dict, dict, dict | None]:
    """archkit, the onnx floor and (`costs_only`) archkit without its memory figures, alternated
    (a shared machine's load hits all alike), best of `repeat` each (wall and CPU minima taken
    separately)."""
    runs: dict[str, list[dict]] = {"archkit": [], "onnx": [], "costs-only": []}
    for _ in range(repeat):
        runs["archkit"].append(run_child(sys.executable, _ARCHKIT, [path], timeout))
        runs["onnx"].append(run_child(sys.executable, _ONNX, [path], timeout))
        if costs_only:
            runs["costs-only"].append(run_child(sys.executable, _ARCHKIT, [path, "costs-only"], timeout))

    def pick(rs):
        ok = [r for r in rs if "error" not in r]
        if not ok:
            return rs[0]
        return dict(min(ok, key=lambda r: r["seconds"]), cpu_seconds=min(r["cpu_seconds"] for r in ok),
                    peak_rss_mb=max(r["peak_rss_mb"] for r in ok))
    return pick(runs["archkit"]), pick(runs["onnx"]), pick(runs["costs-only"]) if costs_only else None


# --- onnx-tool's own environment ---------------------------------------------------------------

def onnx_tool_python(venv: Path) -> str | None:
    py = venv / "bin" / "python"
    probe = [str(py), "-c", "import onnx_tool"]
    if py.exists() and subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return str(py)
    print(f"onnx-tool: installing into {venv} (python -m venv + pip install onnx-tool) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "onnx-tool"], check=True, capture_output=True,
                       timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        print(f"onnx-tool: ABSENT: could not install it ({type(e).__name__}); its columns say 'absent'")
        return None
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        print("onnx-tool: ABSENT: installed but does not import; its columns say 'absent'")
        return None
    return str(py)


# --- the models ------------------------------------------------------------------------------

def deep_residual(n_nodes: int, *, channels: int = 4, size: int = 8):
    """A chain of residual conv blocks (Conv-Relu-Conv-Add-Relu), PyTorch-style names, unique
    weights per conv (one initializer each), symbolic batch N."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "input"
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    for b in range(max(1, n_nodes // 5)):
        s = f"/blocks/blocks.{b}"
        m = f"blocks.{b}"
        for j in (1, 2):
            inits.append(numpy_helper.from_array(w, f"{m}.conv{j}.weight"))
            inits.append(numpy_helper.from_array(w[:, 0, 0, 0].copy(), f"{m}.conv{j}.bias"))
        c1, r1, c2, a, out = (f"{s}/{k}_output_0" for k in ("conv1/Conv", "relu/Relu", "conv2/Conv", "Add", "relu_1/Relu"))
        nodes += [
            helper.make_node("Conv", [x, f"{m}.conv1.weight", f"{m}.conv1.bias"], [c1], name=f"{s}/conv1/Conv",
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [c1], [r1], name=f"{s}/relu/Relu"),
            helper.make_node("Conv", [r1, f"{m}.conv2.weight", f"{m}.conv2.bias"], [c2], name=f"{s}/conv2/Conv",
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Add", [c2, x], [a], name=f"{s}/Add"),
            helper.make_node("Relu", [a], [out], name=f"{s}/relu_1/Relu"),
        ]
        x = out
    graph = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="archkit-bench")


def external_weights_model(folder: Path, *, gib: int = 4):
    """MatMul layers whose weights (gib x 1 GiB, float) live in a sparse external file."""
    import onnx
    from onnx import TensorProto, helper

    data = folder / "weights.bin"
    with open(data, "wb") as f:
        f.truncate(gib * GiB)  # sparse: no disk blocks, no page cache
    nodes, inits, x, width = [], [], "input", 16_384
    for i in range(gib):
        t = onnx.TensorProto(name=f"fc{i}.weight", data_type=TensorProto.FLOAT, dims=[width, width])
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", data.name), ("offset", str(i * GiB)), ("length", str(GiB))):
            e = t.external_data.add()
            e.key, e.value = k, v
        inits.append(t)
        nodes += [helper.make_node("MatMul", [x, t.name], [f"h{i}"], name=f"/fc{i}/MatMul"),
                  helper.make_node("Relu", [f"h{i}"], [f"r{i}"], name=f"/act{i}/Relu")]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "external", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", width])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


_KERAS_EXPORT = """
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf, keras
name, path, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = getattr(keras.applications, name)(weights=None)
model.export(path, format="onnx", verbose=False,
             input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32, name="image")])
"""
KERAS = {"ResNet50": 224, "InceptionV3": 299, "DenseNet121": 224}


def keras_model(name: str, size: int, folder: Path) -> Path | None:
    path = folder / f"{name}.onnx"
    if not path.exists():
        print(f"exporting keras.applications.{name}(weights=None) with Keras' ONNX export ...", flush=True)
        proc = subprocess.run([sys.executable, "-c", _KERAS_EXPORT, name, str(path), str(size)], capture_output=True,
                              text=True, timeout=1800, check=False)
        if proc.returncode != 0 or not path.exists():
            print(f"  export failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:200]}")
            return None
    return path


# --- the run -------------------------------------------------------------------------------

def fmt_s(r: dict | None) -> str:
    if r is None:
        return "not run"
    if "error" in r:
        return "absent" if r["error"] == "absent" else "failed"
    return f"{r['seconds']:.3f}"


def ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or "error" in a or "error" in b:
        return None
    return b["seconds"] / a["seconds"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/archkit-bench"))
    p.add_argument("--venv", type=Path, default=Path("/tmp/bench-venv"))
    p.add_argument("--sizes", default="3000,30000,300000")
    p.add_argument("--repeat", type=int, default=5, help="best of N runs (2 at 300,000 nodes)")
    p.add_argument("--skip-keras", action="store_true")
    p.add_argument("--onnx-tool-timeout", type=float, default=1200)
    args = p.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    import onnx

    tool = onnx_tool_python(args.venv)
    absent = {"error": "absent"}
    rows = []  # (label, nodes, archkit, onnx-tool, onnx)

    without_memory = {}

    def measure(label, path, nodes, shapes, *, run_tool=True, repeat=args.repeat):
        print(f"measuring {label} ...", flush=True)
        ak, floor, costs_only = best_pair(str(path), repeat, 3600, costs_only=nodes == 30_000)
        if costs_only is not None:
            without_memory[label] = costs_only
        if not run_tool:
            ot = None
        elif tool is None:
            ot = absent
        else:
            ot = run_child(tool, _ONNX_TOOL, [str(path), json.dumps(shapes)], args.onnx_tool_timeout)
        rows.append((label, nodes, ak, ot, floor))
        for who, r in (("archkit", ak), ("onnx-tool", ot), ("onnx", floor)):
            if r is not None and "error" in r and r["error"] != "absent":
                print(f"  {who}: {r['error']}")

    if not args.skip_keras:
        for name, size in KERAS.items():
            path = keras_model(name, size, args.workdir)
            if path is not None:
                n = len(onnx.load(path, load_external_data=False).graph.node)
                measure(f"Keras {name}", path, n, {"image": [1, size, size, 3]})

    sizes = [int(s) for s in args.sizes.split(",") if s]
    for n in sizes:
        path = args.workdir / f"deep_{n}.onnx"
        if not path.exists():
            print(f"generating a {n:,}-node residual chain ...", flush=True)
            onnx.save(deep_residual(n), path)
        measure(f"deep {n:,}", path, n, {"input": [1, 4, 8, 8]}, run_tool=n <= 30_000,
                repeat=min(2, args.repeat) if n >= 300_000 else args.repeat)

    ext_dir = args.workdir / "external"
    ext_dir.mkdir(exist_ok=True)
    ext = ext_dir / "external.onnx"
    if not ext.exists():
        onnx.save(external_weights_model(ext_dir), ext)
    declared = os.path.getsize(ext_dir / "weights.bin")
    print("measuring the 4 GiB external-weights model ...", flush=True)
    ext_ak = run_child(sys.executable, _ARCHKIT, [str(ext)], 600)

    # --- the table ---
    print()
    print(f"{'model':<22} {'nodes':>8} {'archkit s':>10} {'onnx-tool s':>12} {'onnx s':>8} {'tool/archkit':>13} "
          f"{'archkit/onnx':>13} {'(cpu)':>7} {'archkit MB':>11} {'tool MB':>8}")
    for label, nodes, ak, ot, floor in rows:
        r_tool, r_floor = ratio(ak, ot), ratio(floor, ak)
        t_ratio = f"{r_tool:.1f}x" if r_tool else "-"
        f_ratio = f"{r_floor:.2f}x" if r_floor else "-"
        ak_mb = f"{ak['peak_rss_mb']:.0f}" if "error" not in ak else "-"
        ot_mb = f"{ot['peak_rss_mb']:.0f}" if ot and "error" not in ot else "-"
        cpu = (f"{ak['cpu_seconds'] / floor['cpu_seconds']:.2f}x" if "error" not in ak and "error" not in floor else "-")
        print(f"{label:<22} {nodes:>8,} {fmt_s(ak):>10} {fmt_s(ot):>12} {fmt_s(floor):>8} {t_ratio:>13} "
              f"{f_ratio:>13} {cpu:>7} {ak_mb:>11} {ot_mb:>8}")
    for label, nodes, ak, ot, floor in rows:
        if "error" not in ak and ot and "error" not in ot and ak.get("macs") is not None and ot.get("macs") is not None:
            print(f"  MACs {label}: archkit {ak['macs']:,} (Conv/Gemm/MatMul only), onnx-tool {ot['macs']:,}")
    print(f"external weights: {declared / GiB:.0f} GiB declared (sparse file); archkit "
          + (f"{ext_ak['seconds']:.3f} s, peak RSS {ext_ak['peak_rss_mb']:.0f} MB, params {ext_ak['params']:,}"
             if "error" not in ext_ak else f"failed: {ext_ak['error']}"))

    # --- the goals ---
    print()
    by = {label: (nodes, ak, ot, floor) for label, nodes, ak, ot, floor in rows}
    verdicts = []
    if "deep 30,000" in by:
        r = ratio(by["deep 30,000"][1], by["deep 30,000"][2])
        verdicts.append(("archkit >= 50x faster than onnx-tool at 30,000 nodes",
                         r is not None and r >= 50, f"{r:.1f}x" if r else "onnx-tool absent"))
    for label in [l for l in by if l.startswith("Keras")]:
        r = ratio(by[label][1], by[label][2])
        verdicts.append((f"no slower than onnx-tool on {label}", r is not None and r >= 1, f"{r:.1f}x" if r else "-"))
    for label, (nodes, ak, ot, floor) in by.items():
        r = ratio(floor, ak)
        verdicts.append((f"within 2x of onnx load+infer_shapes on {label}", r is not None and r <= 2,
                         f"{r:.2f}x" if r else "-"))
    small, large = by.get("deep 3,000"), by.get("deep 300,000")
    if small and large and "error" not in small[1] and "error" not in large[1]:
        per_small = small[1]["seconds"] / small[0]
        per_large = large[1]["seconds"] / large[0]
        verdicts.append(("s/node at 300,000 within 1.5x of 3,000", per_large <= 1.5 * per_small,
                         f"{per_small * 1e6:.1f} -> {per_large * 1e6:.1f} us/node ({per_large / per_small:.2f}x)"))
    if "error" not in ext_ak:
        verdicts.append(("peak RSS <= 300 MB with 4 GiB of external weights", ext_ak["peak_rss_mb"] <= 300,
                         f"{ext_ak['peak_rss_mb']:.0f} MB"))
    for label, costs_only in without_memory.items():  # issue 15: memory costs at most a tenth more
        with_memory = by[label][1]
        if "error" not in with_memory and "error" not in costs_only:
            r = with_memory["seconds"] / costs_only["seconds"]
            verdicts.append((f"the memory figures add <= 10% on {label}", r <= 1.10,
                             f"{costs_only['seconds']:.3f} -> {with_memory['seconds']:.3f} s ({r:.2f}x)"))
    for goal, ok, figure in verdicts:
        print(f"{'PASS' if ok else 'MISS'}  {goal}: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
