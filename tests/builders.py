"""Every ONNX graph the tests build, with onnx.helper (no other framework).

The primitives:
  value(name, shape, dtype)       a graph input or output (float unless given)
  tensor(name, array), w(*shape)  an initializer; zeros of a shape
  external(name, dims, ...)       a float initializer whose data lives in a file (never written)
  set_external(t, location, ...)  declare an existing initializer's data external
  graph(nodes, inputs, outputs)   a GraphProto (a model's, or an If/Loop/Scan body)
  model(nodes, inputs, outputs)   a ModelProto at opset 17 unless told
  one_node(op, inputs, shape)     a model of one node
  Net                             NCHW graphs layer by layer, each op its own layer (`<layer>/<Op>`)
  TorchNet                        nodes named as torch.onnx names them (`/layer1/layer1.0/conv1/Conv`)
`inputs` and `outputs` are a mapping name → shape (float), a list of value infos, or, for
outputs, a list of names (float, shape unknown).

Then the models: small_cnn (and its counts), projected_block, if_loop_scan, nested_ifs, vad_stft and the fuzzers'
seeds; the block patterns of the memory tests (conv_chain, residual_block, inception_module, dense_block,
two_towers, random_dag);
in PyTorch's export patterns, torchvision's resnet, a transformer encoder block, vit, a YOLO head
and a CRNN (each with its closed-form MACs); and the onnx package's own light models.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


# --- primitives ------------------------------------------------------------------------------

def value(name: str, shape=None, dtype: int = F) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def _values(spec) -> list[onnx.ValueInfoProto]:
    if isinstance(spec, Mapping):
        return [value(n, s) for n, s in spec.items()]
    return [v if isinstance(v, onnx.ValueInfoProto) else value(v) for v in spec]


def tensor(name: str, array, dtype=None) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype), name)


def w(*shape, dtype=np.float32) -> np.ndarray:
    return np.zeros(shape, dtype)


def set_external(t: onnx.TensorProto, location: str, **entries: str) -> onnx.TensorProto:
    """Declare `t`'s data to live at `location` (offset 0, its own length unless given)."""
    nbytes = len(t.raw_data) if t.HasField("raw_data") else 4 * int(np.prod(t.dims))
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in {"location": location, "offset": "0", "length": str(nbytes), **entries}.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


def external(name: str, dims, location: str = "weights.bin", offset: int = 0) -> onnx.TensorProto:
    """A float initializer whose data is declared to live in `location` (never written)."""
    return set_external(onnx.TensorProto(name=name, data_type=F, dims=list(dims)), location, offset=str(offset))


def graph(nodes: Iterable[onnx.NodeProto], inputs, outputs, inits: Iterable[onnx.TensorProto] = (),
          name: str = "g") -> onnx.GraphProto:
    return helper.make_graph(list(nodes), name, _values(inputs), _values(outputs), list(inits))


def model(nodes: Sequence[onnx.NodeProto], inputs, outputs=None, inits: Iterable[onnx.TensorProto] = (), *,
          opset: int = 17, opsets: Iterable[onnx.OperatorSetIdProto] = (), name: str = "g",
          **model_fields) -> onnx.ModelProto:
    """A model from nodes as given (no sorting). `outputs` defaults to the last node's first
    output; `opsets`: further domains' opset ids; `model_fields`: e.g. producer_name, ir_version."""
    outputs = [nodes[-1].output[0]] if outputs is None else outputs
    return helper.make_model(graph(nodes, inputs, outputs, inits, name),
                             opset_imports=[helper.make_opsetid("", opset), *opsets], **model_fields)


def one_node(op_type: str, inputs: dict, output_shape, *, weights: dict | None = None, opset: int = 18,
             domain: str = "", n_outputs: int = 1, **attrs) -> onnx.ModelProto:
    """A model holding one node. `inputs`: graph inputs name → shape (float); `weights`:
    initializers name → numpy array. Node inputs are the graph inputs then the weights, in order;
    a weight named "" leaves that slot empty."""
    weights = weights or {}
    node = helper.make_node(op_type, list(inputs) + list(weights), [f"y{i}" for i in range(n_outputs)],
                            name=f"layer/{op_type}", domain=domain, **attrs)
    outputs = [value(f"y{i}", output_shape if i == 0 else None) for i in range(n_outputs)]
    return model([node], inputs, outputs, [tensor(n, v) for n, v in weights.items() if n], opset=opset,
                 opsets=[helper.make_opsetid(domain, 1)] if domain else [])


class Net:
    """A hand-built NCHW graph: `conv(...)` and friends add nodes named `<layer>/<Op>` (so each
    op is its own layer, as scopes make it in files without archkit's metadata)."""

    def __init__(self, shape=(1, 8, 16, 16), name="x"):
        self.nodes, self.inits, self.name = [], [], name
        self.inputs = [value(name, list(shape))]
        self.channels = {name: shape[1]}

    def _add(self, op, layer, inputs, channels, **attrs):
        out = f"{layer}_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{layer}/{op}", **attrs))
        self.channels[out] = channels
        return out

    def conv(self, layer, x, out_ch, kernel=(3, 3), *, stride=1, pads=None, weights=None, **attrs):
        cin = self.channels[x]
        weight = weights if weights is not None else np.ones((out_ch, cin, *kernel), np.float32)
        self.inits.append(tensor(f"{layer}_w", weight.astype(np.float32)))
        if pads is None and "auto_pad" not in attrs:
            pads = [k // 2 for k in kernel] * 2
        if pads is not None:
            attrs["pads"] = pads
        return self._add("Conv", layer, [x, f"{layer}_w"], out_ch, kernel_shape=list(kernel), strides=[stride] * 2,
                         **attrs)

    def relu(self, layer, x):
        return self._add("Relu", layer, [x], self.channels[x])

    def add(self, layer, a, b):
        return self._add("Add", layer, [a, b], self.channels[a])

    def concat(self, layer, *xs):
        return self._add("Concat", layer, list(xs), sum(self.channels[x] for x in xs), axis=1)

    def maxpool(self, layer, x, k=2, s=2, pads=None):
        attrs = {"pads": pads} if pads is not None else {}
        return self._add("MaxPool", layer, [x], self.channels[x], kernel_shape=[k, k], strides=[s, s], **attrs)

    def model(self, *outputs) -> onnx.ModelProto:
        return model(self.nodes, self.inputs, list(outputs), self.inits, opset=18)


# --- small models: the input-safety tests and the fuzzers' seeds -------------------------

CONV_MACS = 8 * 3 * 3 * 3 * 16 * 16  # the conv of small_cnn: Cout * Cin * k * k * Hout * Wout
GEMM_MACS = 8 * 10
SMALL_CNN_MACS = CONV_MACS + GEMM_MACS


def small_cnn(*, external: str | None = None, batch="N", name: str = "small_cnn") -> onnx.ModelProto:
    """Conv(3→8, 3x3, pad 1) → Relu → GlobalAveragePool → Flatten → Gemm(8→10) on 1x3x16x16
    (batch symbolic). `external`: the conv weight's external data location (file not written)."""
    rng = np.random.default_rng(0)
    inits = [tensor(n, rng.standard_normal(shape).astype(np.float32))
             for n, shape in (("conv.weight", (8, 3, 3, 3)), ("conv.bias", 8), ("fc.weight", (10, 8)), ("fc.bias", 10))]
    if external is not None:
        set_external(inits[0], external)
    nodes = [helper.make_node("Conv", ["image", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/GlobalAveragePool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/flatten/Flatten"),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1)]
    return model(nodes, {"image": [batch, 3, 16, 16]}, {"logits": [batch, 10]}, inits, name=name, producer_name="tests")


CONV_WEIGHT_BYTES = 8 * 3 * 3 * 3 * 4


def projected_block(*, batch="N", wide: int = 16) -> onnx.ModelProto:
    """x[batch,4,8,8] → block1: a projection Conv 1x1 (4→4) first in the file, then Conv 3x3
    (4→wide) → Relu → Conv 3x3 (wide→4), Add of the two, Relu; head: GlobalAveragePool → Flatten →
    Gemm (4→10). No biases but the Gemm's. The file's order holds the projection's output through
    the wide branch; onnxruntime's runs the wide branch first (tests/test_memory_render.py counts
    the live bytes of both by hand)."""
    inits = [tensor("p.w", w(4, 4, 1, 1)), tensor("c1.w", w(wide, 4, 3, 3)), tensor("c2.w", w(4, wide, 3, 3)),
             tensor("fc.w", w(10, 4)), tensor("fc.b", w(10))]
    n = helper.make_node
    nodes = [n("Conv", ["x", "p.w"], ["p"], name="/block1/proj/Conv", kernel_shape=[1, 1]),
             n("Conv", ["x", "c1.w"], ["c1"], name="/block1/conv1/Conv", kernel_shape=[3, 3], pads=[1] * 4),
             n("Relu", ["c1"], ["r1"], name="/block1/relu1/Relu"),
             n("Conv", ["r1", "c2.w"], ["c2"], name="/block1/conv2/Conv", kernel_shape=[3, 3], pads=[1] * 4),
             n("Add", ["c2", "p"], ["s"], name="/block1/add/Add"),
             n("Relu", ["s"], ["r2"], name="/block1/relu2/Relu"),
             n("GlobalAveragePool", ["r2"], ["g"], name="/head/pool/GlobalAveragePool"),
             n("Flatten", ["g"], ["f"], name="/head/flatten/Flatten"),
             n("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="/head/fc/Gemm", transB=1)]
    return model(nodes, {"x": [batch, 4, 8, 8]}, {"y": [batch, 10]}, inits, name="residual", producer_name="tests")


def conv_weight_bytes() -> bytes:
    return numpy_helper.to_array(small_cnn().graph.initializer[0]).tobytes()


def if_loop_scan() -> onnx.ModelProto:
    """An If, a Loop and a Scan, each with a MatMul inside (x: 2x4; weights 4x4)."""
    B, I64 = TensorProto.BOOL, TensorProto.INT64
    then_b = graph([helper.make_node("MatMul", ["x", "w"], ["t"], name="then/MatMul")], [], {"t": [2, 4]}, name="then")
    else_b = graph([helper.make_node("Relu", ["x"], ["t"], name="else/Relu")], [], {"t": [2, 4]}, name="else")
    loop_b = graph([helper.make_node("Identity", ["c"], ["c2"], name="loop/Identity"),
                    helper.make_node("MatMul", ["h", "w"], ["h2"], name="loop/MatMul")],
                   [value("i", [], I64), value("c", [], B), value("h", [2, 4])], [value("c2", [], B), value("h2", [2, 4])],
                   name="loop")
    scan_b = graph([helper.make_node("Add", ["s", "row"], ["s2"], name="scan/Add"),
                    helper.make_node("Identity", ["s2"], ["o"], name="scan/Identity")],
                   {"s": [4], "row": [4]}, {"s2": [4], "o": [4]}, name="scan")
    nodes = [helper.make_node("If", ["flag"], ["a"], name="if", then_branch=then_b, else_branch=else_b),
             helper.make_node("Loop", ["trips", "", "a"], ["b"], name="loop", body=loop_b),
             helper.make_node("Scan", ["s0", "x"], ["sf", "rows"], name="scan", body=scan_b, num_scan_inputs=1)]
    inits = [tensor("w", np.eye(4, dtype=np.float32)), tensor("trips", 3, np.int64), tensor("s0", np.zeros(4, np.float32))]
    return model(nodes, [value("x", [2, 4]), value("flag", [], B)], ["b", "rows"], inits, name="subgraphs")


def nested_ifs(depth: int) -> bytes:
    """A serialized model of `depth` Ifs, each in the previous one's then-branch. Written as
    bytes by hand: protobuf itself refuses to copy messages nested this deep."""
    def field(number: int, payload: bytes) -> bytes:
        n, length = len(payload), bytearray()
        while True:
            length.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                break
        return bytes([number << 3 | 2]) + bytes(length) + payload

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y0"], name="relu")], "leaf", [],
                              [helper.make_tensor_value_info("y0", F, [2])]).SerializeToString()
    for k in range(depth):
        out = f"y{k + 1}"
        other = helper.make_graph([helper.make_node("Neg", ["x"], [out], name="neg")], "else", [],
                                  [helper.make_tensor_value_info(out, F, [2])])
        then = onnx.AttributeProto(name="then_branch", type=onnx.AttributeProto.GRAPH).SerializeToString() + field(6, graph)
        node = helper.make_node("If", ["flag"], [out], name=f"if{k}", else_branch=other).SerializeToString() + field(5, then)
        top = k == depth - 1
        shell = helper.make_graph([], "nested" if top else f"level{k}",
                                  [helper.make_tensor_value_info("x", F, [2]),
                                   helper.make_tensor_value_info("flag", TensorProto.BOOL, [])] if top else [],
                                  [helper.make_tensor_value_info(out, F, [2])])
        graph = shell.SerializeToString() + field(1, node)
    model = helper.make_model(onnx.GraphProto(), opset_imports=[helper.make_opsetid("", 17)])
    model.ClearField("graph")
    return model.SerializeToString() + field(7, graph)


def vad_stft() -> onnx.ModelProto:
    """The voice-activity pattern (Silero VAD as torch.onnx writes it): an If on `sr == 16000`
    whose branches hold the STFT front end, a Conv over a reflection-padded signal whose
    Reshape target comes from the outer input's Shape, then a Slice whose axes and steps are
    the same tensor; the branches differ in their conv's filters (258 vs 130). Input audio
    [1, "samples"], sr a scalar int64."""
    def r(name, v):
        return tensor(name, v, np.int64)

    def branch(tag, filters, kernel):
        nodes = [helper.make_node("Shape", ["audio"], [f"{tag}_s"]),
                 helper.make_node("Gather", [f"{tag}_s", "idx1"], [f"{tag}_len"], axis=0),
                 helper.make_node("Unsqueeze", [f"{tag}_len", "ax0"], [f"{tag}_len1"]),
                 helper.make_node("Concat", ["one_1", "one_1", f"{tag}_len1"], [f"{tag}_target"], axis=0),
                 helper.make_node("Reshape", ["audio", f"{tag}_target"], [f"{tag}_x"]),
                 helper.make_node("Conv", [f"{tag}_x", f"{tag}_basis"], [f"{tag}_spec"], name=f"{tag}/stft/Conv",
                                  kernel_shape=[kernel], strides=[kernel // 2]),
                 helper.make_node("Slice", [f"{tag}_spec", "zero_1", f"{tag}_half", "one_1", "one_1"], [f"{tag}_re"]),
                 helper.make_node("ReduceMean", [f"{tag}_re", "ax12"], [f"{tag}_out"], keepdims=0)]
        inits = [tensor(f"{tag}_basis", np.ones((filters, 1, kernel), np.float32)), r(f"{tag}_half", [filters // 2])]
        return graph(nodes, [], [f"{tag}_out"], inits, name=tag)

    nodes = [helper.make_node("Equal", ["sr", "k16"], ["is16k"]),
             helper.make_node("If", ["is16k"], ["y"], name="If_0", then_branch=branch("b16", 258, 256),
                              else_branch=branch("b8", 130, 128))]
    inits = [r("k16", 16000), r("idx1", 1), r("ax0", [0]), r("one_1", [1]), r("zero_1", [0]), r("ax12", [1, 2])]
    return model(nodes, [value("audio", [1, "samples"]), value("sr", [], TensorProto.INT64)], ["y"], inits,
                 opset=18, name="vad")


def seeds() -> list[bytes]:
    """The serialized models the fuzzers start from."""
    return [small_cnn().SerializeToString(), if_loop_scan().SerializeToString(),
            nested_ifs(3), small_cnn(external="weights.bin").SerializeToString()]


# --- block patterns: every activation [batch, C, 16, 16] float, 1 KiB per channel per sample --

def conv_chain(batch=1) -> onnx.ModelProto:
    """Conv(8→16, 3x3) → Relu → Conv(16→4, 3x3), the last a graph output."""
    n = Net((batch, 8, 16, 16))
    return n.model(n.conv("c2", n.relu("r", n.conv("c1", "x", 16)), 4))


def residual_block(batch=1) -> onnx.ModelProto:
    """A stem Conv(8→8) makes t; then Conv(8→16) → Relu → Conv(16→8) → Add(·, t): the skip keeps t alive."""
    n = Net((batch, 8, 16, 16))
    t = n.conv("stem", "x", 8)
    return n.model(n.add("add", n.conv("c2", n.relu("r", n.conv("c1", t, 16)), 8), t))


def inception_module(batch=1) -> onnx.ModelProto:
    """A stem Conv(8→8) then four branches on its output, concatenated (the graph output):
    1x1→4; 1x1→6, 3x3→8; 1x1→2, 5x5→4; MaxPool 3x3 (stride 1, pad 1), 1x1→4."""
    n = Net((batch, 8, 16, 16))
    t = n.conv("stem", "x", 8)
    b1 = n.conv("b1", t, 4, (1, 1))
    b2 = n.conv("b2b", n.conv("b2a", t, 6, (1, 1)), 8)
    b3 = n.conv("b3b", n.conv("b3a", t, 2, (1, 1)), 4, (5, 5))
    b4 = n.conv("b4", n.maxpool("b4p", t, 3, 1, [1, 1, 1, 1]), 4, (1, 1))
    return n.model(n.concat("cat", b1, b2, b3, b4))


def dense_block(batch=1, layers: int = 3, k0: int = 4, growth: int = 2) -> onnx.ModelProto:
    """DenseNet's wiring: a stem Conv(3→k0) makes x0; layer i is a 3x3 Conv(→growth) over the
    Concat of x0 and every earlier layer's output (layer 1 over x0 alone); the graph output is
    the Concat of x0 and all the layers' outputs."""
    n = Net((batch, 3, 16, 16))
    made = [n.conv("stem", "x", k0)]
    for i in range(1, layers + 1):
        src = made[0] if i == 1 else n.concat(f"cat{i}", *made)
        made.append(n.conv(f"l{i}", src, growth))
    return n.model(n.concat("out", *made))


def two_towers(batch=1) -> onnx.ModelProto:
    """Two towers on the input, each a 1x1 Conv(4→32) then a 1x1 Conv(32→1), added; the file
    lists both wide convs before either narrow one."""
    n = Net((batch, 4, 16, 16))
    a1, a2 = n.conv("a1", "x", 32, (1, 1)), n.conv("a2", "x", 32, (1, 1))
    r1, r2 = n.conv("r1", a1, 1, (1, 1)), n.conv("r2", a2, 1, (1, 1))
    return n.model(n.add("add", r1, r2))


def random_dag(seed: int, ops: int = 14) -> onnx.ModelProto:
    """A random DAG of Relu, Add, Concat, 1x1 Conv, Reshape and Identity over tensors
    [1, C, 4, 4] (graph input x, C = 3), in file order; every tensor nothing reads is a graph
    output, and so is one tensor that is read."""
    rng = random.Random(seed)
    channels = {"x": 3}
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    read: set[str] = set()

    def pick() -> str:  # an unread tensor half the time (few dangling outputs), else a recent one (fan-out)
        unread = [t for t in channels if t not in read]
        return rng.choice(unread if unread and rng.random() < 0.5 else list(channels)[-5:])

    for k in range(ops):
        op = rng.choice(("Relu", "Add", "Concat", "Conv", "Reshape", "Identity"))
        a, out = pick(), f"t{k}"
        if op == "Add":
            same = [t for t in channels if channels[t] == channels[a]]
            ins, c = [a, rng.choice(same)], channels[a]
        elif op == "Concat":
            ins = [a] + [pick() for _ in range(rng.randint(1, 2))]
            c = sum(channels[t] for t in ins)
        elif op == "Conv":
            c = rng.randint(1, 6)
            inits.append(tensor(f"w{k}", np.ones((c, channels[a], 1, 1), np.float32)))
            ins = [a, f"w{k}"]
        elif op == "Reshape":
            c = channels[a]
            inits.append(tensor(f"s{k}", np.array([1, c, 4, 4], np.int64)))
            ins = [a, f"s{k}"]
        else:
            ins, c = [a], channels[a]
        nodes.append(helper.make_node(op, ins, [out], name=f"{op.lower()}{k}", **({"axis": 1} if op == "Concat" else {})))
        channels[out] = c
        read.update(ins)
    outs = [t for t in channels if t != "x" and t not in read]
    outs += rng.sample(sorted(read & set(channels) - {"x"}), 1)
    return model(nodes, {"x": [1, 3, 4, 4]}, {t: [1, channels[t], 4, 4] for t in outs}, inits, name=f"dag{seed}")


# --- PyTorch's export patterns (torchvision's ResNets, transformers, detection, OCR) ----------
# NCHW, symbolic batch "N", Conv without bias followed by BatchNormalization, Flatten then
# Gemm(transB=1) for a classifier. Weights are external data that does not exist: any read fails.

class TorchNet:
    """Nodes named as torch.onnx names them; weights declared external (dims suffice)."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.offset = 0
        self.uses: dict[str, int] = {}

    def weight(self, name, dims):
        t = external(name, dims, offset=self.offset)
        self.offset += 4 * int(np.prod(dims))
        self.inits.append(t)
        return name

    def node(self, op, inputs, scope, **attrs):
        # PyTorch numbers repeated calls of one module or function within a scope: Relu, Relu_1 ...
        key = f"{scope}/{op}"
        k = self.uses.get(key, 0)
        self.uses[key] = k + 1
        name = f"{scope}/{op}" if k == 0 else f"{scope}/{op}_{k}"
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv_bn(self, x, cin, cout, k, stride, conv_scope, bn_scope, module, bn_module):
        w = self.weight(f"{module}.weight", (cout, cin, k, k))
        y = self.node("Conv", [x, w], conv_scope, kernel_shape=[k, k], strides=[stride, stride],
                      pads=[k // 2] * 4, dilations=[1, 1], group=1)
        bn = [self.weight(f"{bn_module}.{p}", (cout,)) for p in ("weight", "bias", "running_mean", "running_var")]
        return self.node("BatchNormalization", [y, *bn], bn_scope, epsilon=1e-5, momentum=0.9)

    def model(self, x_name, x_shape, out, name):
        return model(self.nodes, {x_name: x_shape}, [out], self.inits, name=name, producer_name="pytorch",
                     producer_version="2.5.0")


def resnet(depth: int, *, classes: int = 1000, size: int = 224) -> onnx.ModelProto:
    """torchvision.models.resnet{18,34,50,101,152} as PyTorch exports it (v1.5: stride on the 3x3)."""
    bottleneck, layers = {18: (False, [2, 2, 2, 2]), 34: (False, [3, 4, 6, 3]), 50: (True, [3, 4, 6, 3]),
                          101: (True, [3, 4, 23, 3]), 152: (True, [3, 8, 36, 3])}[depth]
    n = TorchNet()
    x = n.conv_bn("input", 3, 64, 7, 2, "/conv1", "/bn1", "conv1", "bn1")
    x = n.node("Relu", [x], "/relu")
    x = n.node("MaxPool", [x], "/maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    expansion = 4 if bottleneck else 1
    for li, (width, blocks) in enumerate(zip((64, 128, 256, 512), layers), start=1):
        for bi in range(blocks):
            stride = 2 if bi == 0 and li > 1 else 1
            m = f"layer{li}.{bi}"
            s = f"/layer{li}/{m}"
            identity = x
            convs = ([(1, width, 1), (3, width, stride), (1, width * 4, 1)] if bottleneck
                     else [(3, width, stride), (3, width, 1)])
            c = cin
            for j, (k, cout, st) in enumerate(convs, start=1):
                x = n.conv_bn(x, c, cout, k, st, f"{s}/conv{j}", f"{s}/bn{j}", f"{m}.conv{j}", f"{m}.bn{j}")
                if j < len(convs):
                    x = n.node("Relu", [x], f"{s}/relu")
                c = cout
            if bi == 0 and (stride != 1 or cin != width * expansion):
                identity = n.conv_bn(identity, cin, width * expansion, 1, stride, f"{s}/downsample/downsample.0",
                                     f"{s}/downsample/downsample.1", f"{m}.downsample.0", f"{m}.downsample.1")
            x = n.node("Add", [x, identity], s)
            x = n.node("Relu", [x], f"{s}/relu")
            cin = width * expansion
    x = n.node("GlobalAveragePool", [x], "/avgpool")
    x = n.node("Flatten", [x], "", axis=1)
    w, b = n.weight("fc.weight", (classes, cin)), n.weight("fc.bias", (classes,))
    y = n.node("Gemm", [x, w, b], "/fc", alpha=1.0, beta=1.0, transB=1)
    return n.model("input", ["N", 3, size, size], y, f"resnet{depth}")


def encoder_block(*, seq: int = 16, dim: int = 64, heads: int = 4, mlp: int = 4) -> onnx.ModelProto:
    """A pre-norm transformer encoder layer as PyTorch exports it: LayerNormalization, Q/K/V
    MatMuls with bias Adds, per-head Reshape/Transpose with the target shapes computed from
    Shape/Gather (the pattern that defeats plain shape inference), Q·Kᵀ, Div by √d, Softmax,
    ·V, output projection, residual Adds, an MLP with Erf-based GELU. Input (N, seq, dim).

    MACs per sample: QKV 3·S·D², scores S²·D, weighted sum S²·D, projection S·D²,
    MLP 2·mlp·S·D²."""
    n = TorchNet()
    d = dim // heads
    s = "/encoder/layers.0"
    const = []

    def ints(name, *v):
        const.append(numpy_helper.from_array(np.array(v, np.int64), name))
        return name

    def matmul_bias(x, scope, module, cin, cout):
        w = n.weight(f"{module}.weight_t", (cin, cout))
        y = n.node("MatMul", [x, w], scope)
        return n.node("Add", [y, n.weight(f"{module}.bias", (cout,))], scope)

    x0 = "input"
    x = n.node("LayerNormalization", [x0, n.weight("ln1.weight", (dim,)), n.weight("ln1.bias", (dim,))],
               f"{s}/norm1", axis=-1, epsilon=1e-5)
    # (N, S, D) → (N, S, h, d) → (N, h, S, d): target shape [N, S, h, d] from Shape at run time
    shape = n.node("Shape", [x], f"{s}/self_attn")
    batch = n.node("Gather", [shape, ints("zero", 0)], f"{s}/self_attn", axis=0)
    length = n.node("Gather", [shape, ints("one", 1)], f"{s}/self_attn", axis=0)
    target = n.node("Concat", [batch, length, ints("heads", heads), ints("head_dim", d)], f"{s}/self_attn", axis=0)
    qkv = []
    for p in ("q", "k", "v"):
        y = matmul_bias(x, f"{s}/self_attn/{p}_proj", f"{s[1:].replace('/', '.')}.self_attn.{p}_proj", dim, dim)
        y = n.node("Reshape", [y, target], f"{s}/self_attn")
        qkv.append(n.node("Transpose", [y], f"{s}/self_attn", perm=[0, 2, 1, 3] if p != "k" else [0, 2, 3, 1]))
    q, k, v = qkv
    scores = n.node("MatMul", [q, k], f"{s}/self_attn")
    scores = n.node("Div", [scores, n.weight("scale", ())], f"{s}/self_attn")
    probs = n.node("Softmax", [scores], f"{s}/self_attn", axis=-1)
    ctx = n.node("MatMul", [probs, v], f"{s}/self_attn")
    ctx = n.node("Transpose", [ctx], f"{s}/self_attn", perm=[0, 2, 1, 3])
    back = n.node("Concat", [batch, length, ints("dim", dim)], f"{s}/self_attn", axis=0)
    ctx = n.node("Reshape", [ctx, back], f"{s}/self_attn")
    y = matmul_bias(ctx, f"{s}/self_attn/out_proj", "encoder.layers.0.self_attn.out_proj", dim, dim)
    x1 = n.node("Add", [x0, y], s)
    h = n.node("LayerNormalization", [x1, n.weight("ln2.weight", (dim,)), n.weight("ln2.bias", (dim,))],
               f"{s}/norm2", axis=-1, epsilon=1e-5)
    h = matmul_bias(h, f"{s}/linear1", "encoder.layers.0.linear1", dim, mlp * dim)
    # GELU as PyTorch writes it: x · 0.5 · (1 + erf(x / √2))
    e = n.node("Div", [h, n.weight("sqrt2", ())], f"{s}/activation")
    e = n.node("Erf", [e], f"{s}/activation")
    e = n.node("Add", [e, n.weight("one_f", ())], f"{s}/activation")
    h = n.node("Mul", [h, e], f"{s}/activation")
    h = n.node("Mul", [h, n.weight("half", ())], f"{s}/activation")
    h = matmul_bias(h, f"{s}/linear2", "encoder.layers.0.linear2", mlp * dim, dim)
    out = n.node("Add", [x1, h], s)
    n.inits.extend(const)
    return n.model("input", ["N", seq, dim], out, "encoder")


def encoder_macs(*, seq: int = 16, dim: int = 64, heads: int = 4, mlp: int = 4) -> int:
    return 3 * seq * dim * dim + 2 * seq * seq * dim + seq * dim * dim + 2 * mlp * seq * dim * dim


def vit(*, size: int = 224, patch: int = 16, dim: int = 768, depth: int = 12, heads: int = 12, mlp: int = 3072,
        classes: int = 1000) -> onnx.ModelProto:
    """torchvision's vision_transformer as torch.onnx writes it (opset 17, batch "N" free).

    The shapes that plain shape inference cannot see are all here: the patch Reshape to
    [N, D, S] from Shape/Gather/Unsqueeze/Concat; the class token's `expand(n, -1, -1)` (Concat,
    then Equal/Where turning -1 into 1, then Expand); nn.MultiheadAttention's per-head Reshape to
    [L, N·heads, d] with N·heads computed by Mul; the score and context MatMuls between them."""
    n = TorchNet()
    const: list[onnx.TensorProto] = []

    def ints(name, *v):
        if not any(t.name == name for t in const):
            const.append(numpy_helper.from_array(np.array(v, np.int64), name))
        return name

    def number(name, v):  # torch writes float scalars as Constant ops, not parameters
        out = f"/{name}_output_0"
        if not any(node.output[0] == out for node in n.nodes):
            n.nodes.insert(0, helper.make_node("Constant", [], [out], name=f"/{name}",
                                               value=numpy_helper.from_array(np.array(v, np.float32))))
        return out

    def scalar(name, v):  # Gather indices and shape arithmetic operands are 0-d in torch's exports
        if not any(t.name == name for t in const):
            const.append(numpy_helper.from_array(np.array(v, np.int64), name))
        return name

    def unsq(x, scope):
        return n.node("Unsqueeze", [x, ints("axes0", 0)], scope)

    side = size // patch
    tokens = side * side + 1
    d = dim // heads
    x = n.node("Conv", ["x", n.weight("conv_proj.weight", (dim, 3, patch, patch)), n.weight("conv_proj.bias", (dim,))],
               "/conv_proj", kernel_shape=[patch, patch], strides=[patch, patch], pads=[0, 0, 0, 0], dilations=[1, 1],
               group=1)
    shape = n.node("Shape", ["x"], "")
    batch = unsq(n.node("Gather", [shape, scalar("idx0", 0)], "", axis=0), "")
    target = n.node("Concat", [batch, ints("dim", dim), ints("patches", side * side)], "", axis=0)
    x = n.node("Reshape", [x, target], "")
    x = n.node("Transpose", [x], "", perm=[0, 2, 1])
    # class_token.expand(n, -1, -1)
    want = n.node("Concat", [batch, ints("minus1", -1), ints("minus1", -1)], "", axis=0)
    is_free = n.node("Equal", [want, ints("minus1s", -1, -1, -1)], "")
    want = n.node("Where", [is_free, ints("ones", 1, 1, 1), want], "")
    cls = n.node("Expand", [n.weight("class_token", (1, 1, dim)), want], "")
    x = n.node("Concat", [cls, x], "", axis=1)
    x = n.node("Add", [x, n.weight("encoder.pos_embedding", (1, tokens, dim))], "/encoder")
    for i in range(depth):
        s, m = f"/encoder/layers/encoder_layer_{i}", f"encoder.layers.encoder_layer_{i}"
        h = n.node("LayerNormalization", [x, n.weight(f"{m}.ln_1.weight", (dim,)), n.weight(f"{m}.ln_1.bias", (dim,))],
                   f"{s}/ln_1", axis=-1, epsilon=1e-6)
        a = f"{s}/self_attention"
        h = n.node("Transpose", [h], a, perm=[1, 0, 2])  # (L, N, E): batch_first is undone inside
        hs = n.node("Shape", [h], a)
        length = unsq(n.node("Gather", [hs, scalar("idx0", 0)], a, axis=0), a)
        nb = n.node("Gather", [hs, scalar("idx1", 1)], a, axis=0)
        qkv = n.node("MatMul", [h, n.weight(f"{m}.self_attention.in_proj_weight_t", (dim, 3 * dim))], a)
        qkv = n.node("Add", [qkv, n.weight(f"{m}.self_attention.in_proj_bias", (3 * dim,))], a)
        qkv = n.node("Reshape", [qkv, n.node("Concat", [length, unsq(nb, a), ints("three", 3), ints("dim", dim)], a,
                                                          axis=0)], a)
        qkv = n.node("Transpose", [n.node("Unsqueeze", [qkv, ints("axes0", 0)], a)], a, perm=[3, 1, 2, 0, 4])
        qkv = n.node("Squeeze", [qkv, ints("axes_m2", -2)], a)
        heads_n = unsq(n.node("Mul", [nb, scalar("heads", heads)], a), a)
        per_head = n.node("Concat", [length, heads_n, ints("head_dim", d)], a, axis=0)
        q, k, v = (n.node("Transpose", [n.node("Reshape", [n.node("Gather", [qkv, scalar(f"idx{j}", j)], a, axis=0),
                                                           per_head], a)], a, perm=[1, 0, 2]) for j in range(3))
        q = n.node("Mul", [q, number("attn_scale", d ** -0.5)], a)
        scores = n.node("MatMul", [q, n.node("Transpose", [k], a, perm=[0, 2, 1])], a)
        ctx = n.node("MatMul", [n.node("Softmax", [scores], a, axis=-1), v], a)
        ctx = n.node("Transpose", [ctx], a, perm=[1, 0, 2])
        ctx = n.node("Reshape", [ctx, n.node("Concat", [n.node("Mul", [length, unsq(nb, a)], a), ints("dim", dim)], a,
                                                       axis=0)], a)
        ctx = n.node("Gemm", [ctx, n.weight(f"{m}.self_attention.out_proj.weight", (dim, dim)),
                              n.weight(f"{m}.self_attention.out_proj.bias", (dim,))], a, transB=1)
        ctx = n.node("Reshape", [ctx, n.node("Concat", [length, unsq(nb, a), ints("dim", dim)], a, axis=0)], a)
        x = n.node("Add", [n.node("Transpose", [ctx], a, perm=[1, 0, 2]), x], s)
        h = n.node("LayerNormalization", [x, n.weight(f"{m}.ln_2.weight", (dim,)), n.weight(f"{m}.ln_2.bias", (dim,))],
                   f"{s}/ln_2", axis=-1, epsilon=1e-6)
        h = n.node("Add", [n.node("MatMul", [h, n.weight(f"{m}.mlp.0.weight_t", (dim, mlp))], f"{s}/mlp/mlp.0"),
                           n.weight(f"{m}.mlp.0.bias", (mlp,))], f"{s}/mlp/mlp.0")
        e = n.node("Erf", [n.node("Div", [h, number("sqrt2", 2 ** 0.5)], f"{s}/mlp/mlp.1")], f"{s}/mlp/mlp.1")
        h = n.node("Mul", [n.node("Mul", [h, n.node("Add", [e, number("one", 1.0)], f"{s}/mlp/mlp.1")],
                                  f"{s}/mlp/mlp.1"), number("half", 0.5)], f"{s}/mlp/mlp.1")
        h = n.node("Add", [n.node("MatMul", [h, n.weight(f"{m}.mlp.3.weight_t", (mlp, dim))], f"{s}/mlp/mlp.3"),
                           n.weight(f"{m}.mlp.3.bias", (dim,))], f"{s}/mlp/mlp.3")
        x = n.node("Add", [x, h], s)
    x = n.node("LayerNormalization", [x, n.weight("encoder.ln.weight", (dim,)), n.weight("encoder.ln.bias", (dim,))],
               "/encoder/ln", axis=-1, epsilon=1e-6)
    x = n.node("Gather", [x, scalar("idx0", 0)], "", axis=1)  # the class token
    y = n.node("Gemm", [x, n.weight("heads.head.weight", (classes, dim)), n.weight("heads.head.bias", (classes,))],
               "/heads/head", transB=1)
    n.inits.extend(const)
    return n.model("x", ["N", 3, size, size], y, "vit_b_16")


def vit_macs(*, size: int = 224, patch: int = 16, dim: int = 768, depth: int = 12, mlp: int = 3072,
             classes: int = 1000, **_) -> int:
    """Per sample: patch conv, and per layer Q/K/V and output projections, MLP, scores and context."""
    tokens = (size // patch) ** 2 + 1
    conv = dim * 3 * patch * patch * (tokens - 1)
    layer = 4 * tokens * dim * dim + 2 * tokens * dim * mlp + 2 * tokens * tokens * dim
    return conv + depth * layer + dim * classes


def _ints(const: list, name: str, *v, scalar: bool = False) -> str:
    if not any(t.name == name for t in const):
        const.append(numpy_helper.from_array(np.array(v[0] if scalar else v, np.int64), name))
    return name


def yolo_head(*, classes: int = 80, reg_max: int = 16, widths=(64, 128, 256), size: int = 640) -> onnx.ModelProto:
    """A YOLOv8-style detection head as torch.onnx writes it, on three feature maps (strides 8,
    16, 32; graph inputs P3, P4, P5 with batch "N" free). Per scale a 1x1 box conv (4·reg_max
    channels) and class conv, Concat, Reshape to [N, C, h·w] with the target from Shape; the
    scales Concat to [N, C, A]; Split into box and class; the distribution focal loss head:
    Reshape [N, 4, reg_max, A], Transpose, Softmax, a 1x1 Conv whose kernel is 0..reg_max-1,
    Reshape [N, 4, A]; anchors computed at run time from each map's Shape (Range, Expand,
    Concat: make_anchors); dist2bbox (Slice, Sub, Add, Div, Concat) times the strides;
    Sigmoid of the classes; Concat to [N, 4 + classes, A]."""
    n = TorchNet()
    const: list[onnx.TensorProto] = []
    ints = lambda name, *v: _ints(const, name, *v)
    scal = lambda name, v: _ints(const, name, v, scalar=True)
    flats, anchors, strides = [], [], []
    channels = 4 * reg_max + classes
    for i, (width, stride) in enumerate(zip(widths, (8, 16, 32))):
        x, s = f"P{i + 3}", "/model.22"
        box = n.node("Conv", [x, n.weight(f"model.22.cv2.{i}.weight", (4 * reg_max, width, 1, 1))], f"{s}/cv2.{i}",
                     kernel_shape=[1, 1])
        cls = n.node("Conv", [x, n.weight(f"model.22.cv3.{i}.weight", (classes, width, 1, 1))], f"{s}/cv3.{i}",
                     kernel_shape=[1, 1])
        y = n.node("Concat", [box, cls], s, axis=1)
        shape = n.node("Shape", [x], s)
        batch = n.node("Unsqueeze", [n.node("Gather", [shape, scal("idx0", 0)], s, axis=0), ints("axes0", 0)], s)
        flats.append(n.node("Reshape", [y, n.node("Concat", [batch, ints("channels", channels), ints("m1", -1)], s,
                                                           axis=0)], s))
        # make_anchors: the cell centres of this map, from its own shape at run time
        h, w = (n.node("Gather", [shape, scal(f"idx{k}", k)], s, axis=0) for k in (2, 3))
        sx = n.node("Add", [n.node("Cast", [n.node("Range", [scal("zero", 0), w, scal("one", 1)], s)], s, to=1),
                            n.weight("half_offset", ())], s)
        sy = n.node("Add", [n.node("Cast", [n.node("Range", [scal("zero", 0), h, scal("one", 1)], s)], s, to=1),
                            n.weight("half_offset", ())], s)
        hw = n.node("Concat", [n.node("Unsqueeze", [h, ints("axes0", 0)], s),
                               n.node("Unsqueeze", [w, ints("axes0", 0)], s)], s, axis=0)
        gx = n.node("Expand", [n.node("Unsqueeze", [sx, ints("axes0", 0)], s), hw], s)
        gy = n.node("Expand", [n.node("Unsqueeze", [sy, ints("axes1", 1)], s), hw], s)
        grid = n.node("Concat", [n.node("Unsqueeze", [gx, ints("axes2", 2)], s),
                                 n.node("Unsqueeze", [gy, ints("axes2", 2)], s)], s, axis=2)  # torch.stack
        anchors.append(n.node("Reshape", [grid, ints("pairs", -1, 2)], s))
        count = n.node("Mul", [h, w], s)
        strides.append(n.node("Expand", [n.weight(f"stride{stride}", (1, 1)),
                                         n.node("Concat", [n.node("Unsqueeze", [count, ints("axes0", 0)], s),
                                                           ints("one1", 1)], s, axis=0)], s))
    s = "/model.22"
    y = n.node("Concat", flats, s, axis=2)
    n.nodes.append(helper.make_node("Split", [y, ints("split", 4 * reg_max, classes)], ["box", "cls"],
                                    name=f"{s}/Split", axis=1))
    batch = n.node("Unsqueeze", [n.node("Gather", [n.node("Shape", [y], s), scal("idx0", 0)], s, axis=0),
                                 ints("axes0", 0)], s)
    b = n.node("Reshape", ["box", n.node("Concat", [batch, ints("four", 4), ints("reg", reg_max), ints("m1", -1)], s,
                                         axis=0)], f"{s}/dfl")
    b = n.node("Softmax", [n.node("Transpose", [b], f"{s}/dfl", perm=[0, 2, 1, 3])], f"{s}/dfl", axis=1)
    b = n.node("Conv", [b, n.weight("model.22.dfl.conv.weight", (1, reg_max, 1, 1))], f"{s}/dfl/conv",
               kernel_shape=[1, 1])
    b = n.node("Reshape", [b, n.node("Concat", [batch, ints("four", 4), ints("m1", -1)], s, axis=0)], f"{s}/dfl")
    anchor = n.node("Transpose", [n.node("Concat", anchors, s, axis=0)], s, perm=[1, 0])  # [2, A]
    stride = n.node("Transpose", [n.node("Concat", strides, s, axis=0)], s, perm=[1, 0])  # [1, A]
    lt = n.node("Slice", [b, ints("s0", 0), ints("s2", 2), ints("axes1", 1)], s)
    rb = n.node("Slice", [b, ints("s2", 2), ints("s4", 4), ints("axes1", 1)], s)
    x1y1, x2y2 = n.node("Sub", [anchor, lt], s), n.node("Add", [anchor, rb], s)
    centre = n.node("Div", [n.node("Add", [x1y1, x2y2], s), n.weight("two", ())], s)
    box = n.node("Mul", [n.node("Concat", [centre, n.node("Sub", [x2y2, x1y1], s)], s, axis=1), stride], s)
    out = n.node("Concat", [box, n.node("Sigmoid", ["cls"], s)], s, axis=1)
    n.inits.extend(const)
    maps = {f"P{i + 3}": ["N", width, size // st, size // st] for i, (width, st) in enumerate(zip(widths, (8, 16, 32)))}
    return model(n.nodes, maps, [out], n.inits, name="yolo_head", producer_name="pytorch")


def yolo_head_macs(*, classes: int = 80, reg_max: int = 16, widths=(64, 128, 256), size: int = 640) -> int:
    cells = [(size // st) ** 2 for st in (8, 16, 32)]
    heads = sum(c * w * (4 * reg_max + classes) for c, w in zip(cells, widths))
    return heads + reg_max * 4 * sum(cells)  # the DFL conv: 1 output channel over [4, A]


def crnn(*, height: int = 32, channels: int = 64, hidden: int = 96, classes: int = 37) -> onnx.ModelProto:
    """A CRNN text recogniser as PyTorch 1.9 exports it: a conv over [N, 1, 32, W] (W free,
    "width"), a 32-row pooling to height 1, Squeeze, Permute to [W', N, C], a bidirectional LSTM
    whose sequence length is the free width, the directions merged with Transpose/Reshape (target
    from Shape), and a per-step Linear (MatMul) to the classes."""
    n = TorchNet()
    const: list[onnx.TensorProto] = []
    ints = lambda name, *v: _ints(const, name, *v)
    x = n.node("Conv", ["x", n.weight("cnn.0.weight", (channels, 1, 3, 3))], "/cnn/cnn.0", kernel_shape=[3, 3],
               pads=[1, 1, 1, 1])
    x = n.node("Relu", [x], "/cnn/cnn.1")
    x = n.node("MaxPool", [x], "/cnn/cnn.2", kernel_shape=[height, 2], strides=[height, 2])  # [N, C, 1, W/2]
    x = n.node("Squeeze", [x, ints("axes2", 2)], "")
    x = n.node("Transpose", [x], "", perm=[2, 0, 1])  # [T, N, C]
    rnn = "/rnn"
    w = n.weight("rnn.weight", (2, 4 * hidden, channels))
    r = n.weight("rnn.weight_hh", (2, 4 * hidden, hidden))
    b = n.weight("rnn.bias", (2, 8 * hidden))
    n.nodes.append(helper.make_node("LSTM", [x, w, r, b], ["lstm_y"], name=f"{rnn}/LSTM", direction="bidirectional",
                                    hidden_size=hidden))
    y = n.node("Transpose", ["lstm_y"], rnn, perm=[0, 2, 1, 3])  # [T, N, 2, H]
    shape = n.node("Shape", [y], rnn)
    tn = n.node("Slice", [shape, ints("s0", 0), ints("s2", 2), ints("axes0", 0)], rnn)
    y = n.node("Reshape", [y, n.node("Concat", [tn, ints("m1", -1)], rnn, axis=0)], rnn)  # [T, N, 2H]
    y = n.node("MatMul", [y, n.weight("fc.weight_t", (2 * hidden, classes))], "/fc")
    y = n.node("Add", [y, n.weight("fc.bias", (classes,))], "/fc")
    n.inits.extend(const)
    return n.model("x", ["N", 1, height, "width"], y, "crnn")


def crnn_macs(width: int, *, height: int = 32, channels: int = 64, hidden: int = 96, classes: int = 37) -> int:
    steps = width // 2
    conv = channels * 9 * height * width
    lstm = 2 * steps * 4 * hidden * (channels + hidden)
    return conv + lstm + steps * 2 * hidden * classes


# --- files the tests read ----------------------------------------------------------------------

def light_model(name: str) -> Path:
    """Path of one of the Caffe2-zoo models the onnx package ships (onnx/backend/test/data/light/,
    e.g. "resnet50"): third-party files, small because their weights are not stored."""
    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    if not path.is_file():
        pytest.skip(f"this onnx package does not ship {path.name}")
    return path


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, from its IHDR chunk (the drawings made from these graphs)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
