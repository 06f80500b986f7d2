"""archkit's memory figures checked against onnxruntime's own allocator.

The model runs once in onnxruntime's child process (archkit.runtime.child, task "memory") with
graph optimisations and the memory pattern off, the weights outside the arena
(session.use_device_allocator_for_initializers) and profiling on. onnxruntime's profile gives,
per node in execution order, its outputs' bytes (`output_size`) and the arena's bytes: in use,
requested and the peak so far. Compared with archkit's analysis of the same file at the same
input shapes:

- every node's output bytes must equal archkit's (`OpCost.output_bytes`);
- the execution order must be the one archkit reproduces (`Memory.schedules["onnxruntime"]`);
- the bytes requested from the arena after each node, against archkit's prediction of
  onnxruntime's allocation plan at that step (`Schedule.planned.curve`): equal up to a constant of
  a few bytes to kilobytes held from the start (REQUESTED_BOUND), so the peaks agree too; and
  the arena's own peak (`mem_in_use_peak`) against the predicted plan peak. The arena's peak is higher: it hands out whole
  chunks (a free chunk is split only when it is at least twice the request: up to 2× the bytes
  asked) and kernels take workspaces while they run (a Conv's im2col buffer, 64 KiB and more).
  ARENA_BOUND and REQUESTED_BOUND are what is allowed.

These are measurements of this machine's runtime: they go to the terminal, never into committed
reports (which keep the verdict).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from archkit.analysis import analyse_model
from archkit.runtime.child import spawn

__all__ = ["ARENA_BOUND", "REQUESTED_BOUND", "MemoryCheck", "check_memory", "checked", "compare", "feed",
           "measure_memory"]

MiB = 2 ** 20
# The arena's peak against archkit's predicted plan peak P and the largest workspace W
# (Memory.workspace): at least P (every planned buffer comes from the arena), at most
# 2·(P + W) (whole chunks, up to twice a request) + 1 MiB (the arena's smallest blocks and the
# kernels' small buffers, which dominate a model of a few kilobytes).
ARENA_BOUND = (1.0, 2.0, 1 * MiB)
# The bytes requested from the arena after each node, less archkit's predicted plan there: one
# constant for the whole run (what the arena holds before the first op; measured 0 to 10 KiB on
# the light and PyTorch-converted models), within (most apart, largest) bytes.
REQUESTED_BOUND = (4 * 1024, 64 * 1024)


@dataclass(frozen=True)
class MemoryCheck:
    runtime: str  # "onnxruntime 1.32.0"
    input_shapes: Mapping[str, tuple[int, ...]]
    nodes: int  # nodes onnxruntime ran
    mismatches: tuple[tuple[str, str, int, int], ...]  # (node, op type, archkit's bytes, onnxruntime's)
    unmatched: tuple[str, ...]  # nodes onnxruntime ran that are no op of the file (a function expanded)
    order_same: bool  # onnxruntime ran the ops in the order archkit reproduces
    first_difference: int | None  # the first step where the orders differ
    live_peak: int  # archkit: the peak live bytes in onnxruntime's order
    planned_peak: int  # archkit: what onnxruntime's plan holds at its peak
    workspace: int  # archkit: the largest workspace a kernel takes (a Conv's im2col matrix)
    requested_peak: int  # onnxruntime: the bytes requested from the arena, at their peak
    offset: tuple[int, int]  # onnxruntime's requested bytes less archkit's plan, per step: (lowest, highest)
    arena_peak: int  # onnxruntime: the arena's bytes in use, at their peak

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MemoryCheck:
        """From to_dict's JSON (lists back to tuples)."""
        return cls(**{**d, "input_shapes": {k: tuple(v) for k, v in d["input_shapes"].items()},
                      "mismatches": tuple(tuple(m) for m in d["mismatches"]), "unmatched": tuple(d["unmatched"]),
                      "offset": tuple(d["offset"])})

    @property
    def bytes_equal(self) -> bool:
        return not self.mismatches and not self.unmatched

    @property
    def ratio(self) -> float:
        """The arena's peak over archkit's predicted plan peak."""
        return self.arena_peak / self.planned_peak if self.planned_peak else float("inf")

    @property
    def requested_ratio(self) -> float:
        return self.requested_peak / self.planned_peak if self.planned_peak else float("inf")

    @property
    def arena_ok(self) -> bool:
        lo, hi, extra = ARENA_BOUND
        return lo * self.planned_peak <= self.arena_peak <= hi * (self.planned_peak + self.workspace) + extra

    @property
    def requested_ok(self) -> bool:
        spread, largest = REQUESTED_BOUND
        lo, hi = self.offset
        return hi - lo <= spread and max(abs(lo), abs(hi)) <= largest

    @property
    def peak_ok(self) -> bool:
        return self.arena_ok and self.requested_ok

    @property
    def ok(self) -> bool:
        return self.bytes_equal and self.order_same and self.peak_ok


def feed(proto: onnx.ModelProto, input_shapes: Mapping[str, object] | None = None, *, seed: int = 0
         ) -> dict[str, np.ndarray]:
    """Seeded inputs at the shapes `input_shapes` gives (a graph input's full shape, or a symbolic
    dim's value, as archkit.analysis.analyse_file takes them); a symbolic dim not given is 1."""
    given = dict(input_shapes or {})
    rng = np.random.default_rng(seed)
    init = {t.name for t in proto.graph.initializer}
    out = {}
    for i in proto.graph.input:
        if i.name in init:
            continue
        tt = i.type.tensor_type
        if i.name in given:
            v = given[i.name]
            dims = [int(d) for d in (v if isinstance(v, (list, tuple)) else (v,))]
        else:
            dims = [d.dim_value if d.HasField("dim_value") else int(given.get(d.dim_param, 1)) for d in tt.shape.dim]
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else np.dtype(np.float32)
        if np.issubdtype(dtype, np.floating):
            out[i.name] = rng.standard_normal(dims).astype(np.float32).astype(dtype)
        else:
            out[i.name] = rng.integers(0, 2, dims).astype(dtype)
    return out


def measure_memory(model: onnx.ModelProto | bytes | str, feed: Mapping[str, np.ndarray], *, what: str = "the model",
                   timeout: float | None = None) -> tuple[str, list[dict]]:
    """onnxruntime's per-node profile of one run on `feed`: (runtime, events in execution order)."""
    result, _ = spawn(model, {"task": "memory", "threads": 1, "optimization": "off"}, [feed], what=what,
                      timeout=timeout)
    return result["runtime"], result["events"]


def check_memory(proto: onnx.ModelProto, feed: Mapping[str, np.ndarray], *, path: str | None = None,
                 what: str = "the model", timeout: float | None = None) -> MemoryCheck:
    """Run `proto` once on `feed` in onnxruntime and compare its allocator with archkit's analysis
    of the file at the feed's shapes. `path`: the file itself, when there is one (no copy is written)."""
    runtime, events = measure_memory(path or proto, feed, what=what, timeout=timeout)
    return checked(proto, feed, runtime, events)


def checked(proto: onnx.ModelProto, feed: Mapping[str, np.ndarray], runtime: str, events: Sequence[Mapping]
            ) -> MemoryCheck:
    """The check of a profile measured already (measure_memory on `feed`): archkit's analysis of
    `proto` at the feed's shapes against it."""
    shapes = {k: tuple(int(d) for d in v.shape) for k, v in feed.items()}
    a = analyse_model(proto, input_shapes=shapes, connectivity=False)
    return compare(a, proto, events, runtime, shapes)


def compare(a, proto: onnx.ModelProto, events: Sequence[Mapping], runtime: str,
            shapes: Mapping[str, tuple[int, ...]]) -> MemoryCheck:
    """archkit's Analysis `a` of `proto` against onnxruntime's profile `events`."""
    # onnxruntime numbers the file's nodes in order, Constants aside (it makes them initializers);
    # archkit's op of a node is the one making its first output
    schedule = a.memory.schedules["onnxruntime"]
    rows = {o.node: o for o in a.costs.ops}
    file_nodes = [n for n in proto.graph.node if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx"))]
    maker = a.memory.maker
    mismatches, unmatched, ran = [], [], []
    for e in events:
        k = int(e["node_index"])
        node = file_nodes[k] if 0 <= k < len(file_nodes) else None
        nid = maker(node.output[0]) if node is not None and node.output else None
        if nid is None:
            unmatched.append(str(e["name"]))
            continue
        ran.append(nid)
        mine, theirs = rows[nid].output_bytes, int(e["output_size"])
        if mine != theirs:
            mismatches.append((nid, rows[nid].op_type, mine, theirs))
    steps = list(schedule.steps)
    planned_curve = schedule.planned.curve if schedule.planned else schedule.curve
    offsets = [int(e["mem_bytes_requested_in_use"]) - p for e, p in zip(events, planned_curve)]
    first = next((i for i, (x, y) in enumerate(zip(ran, steps)) if x != y),
                 None if len(ran) == len(steps) else min(len(ran), len(steps)))
    planned = schedule.planned.peak if schedule.planned else schedule.peak.bytes
    return MemoryCheck(runtime=runtime, input_shapes=dict(shapes), nodes=len(events), mismatches=tuple(mismatches),
                       unmatched=tuple(unmatched), order_same=first is None, first_difference=first,
                       live_peak=schedule.peak.bytes, planned_peak=planned, workspace=a.memory.workspace[0],
                       requested_peak=max((int(e["mem_bytes_requested_in_use"]) for e in events), default=0),
                       offset=(min(offsets, default=0), max(offsets, default=0)),
                       arena_peak=max((int(e["mem_in_use_peak"]) for e in events), default=0))
