"""Small ONNX files, well-formed and hostile, for the input-safety tests and the fuzz run
(benchmarks/fuzz_analyse.py). Every builder writes into a folder it is given; nothing is
downloaded, nothing large is written (a "large" file is sparse)."""

from __future__ import annotations

import random

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
CONV_MACS = 8 * 3 * 3 * 3 * 16 * 16  # the conv of small_cnn: Cout * Cin * k * k * Hout * Wout
GEMM_MACS = 8 * 10
SMALL_CNN_MACS = CONV_MACS + GEMM_MACS


def small_cnn(*, external: str | None = None, batch="N", name: str = "small_cnn") -> onnx.ModelProto:
    """Conv(3→8, 3x3, pad 1) → Relu → GlobalAveragePool → Flatten → Gemm(8→10) on 1x3x16x16
    (batch symbolic). `external`: the conv weight's external data location (file not written:
    see write_external)."""
    rng = np.random.default_rng(0)
    wc = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(wc, "conv.weight"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "conv.bias"),
             numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "fc.weight"),
             numpy_helper.from_array(rng.standard_normal(10).astype(np.float32), "fc.bias")]
    if external is not None:
        set_external(inits[0], external)
    nodes = [helper.make_node("Conv", ["image", "conv.weight", "conv.bias"], ["c"], name="/conv/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="/relu/Relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="/pool/GlobalAveragePool"),
             helper.make_node("Flatten", ["p"], ["f"], name="/flatten/Flatten"),
             helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="/fc/Gemm", transB=1)]
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("image", F, [batch, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", F, [batch, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")


CONV_WEIGHT_BYTES = 8 * 3 * 3 * 3 * 4


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


def conv_weight_bytes() -> bytes:
    return numpy_helper.to_array(small_cnn().graph.initializer[0]).tobytes()


def if_loop_scan() -> onnx.ModelProto:
    """An If, a Loop and a Scan, each with a MatMul inside (x: 2x4; weights 4x4)."""
    def body(name, ins, outs, nodes):
        return helper.make_graph(nodes, name, ins, outs)

    wi = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    then_b = body("then", [], [helper.make_tensor_value_info("t", F, [2, 4])],
                  [helper.make_node("MatMul", ["x", "w"], ["t"], name="then/MatMul")])
    else_b = body("else", [], [helper.make_tensor_value_info("t", F, [2, 4])],
                  [helper.make_node("Relu", ["x"], ["t"], name="else/Relu")])
    loop_b = body("loop", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                           helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                           helper.make_tensor_value_info("h", F, [2, 4])],
                  [helper.make_tensor_value_info("c2", TensorProto.BOOL, []), helper.make_tensor_value_info("h2", F, [2, 4])],
                  [helper.make_node("Identity", ["c"], ["c2"], name="loop/Identity"),
                   helper.make_node("MatMul", ["h", "w"], ["h2"], name="loop/MatMul")])
    scan_b = body("scan", [helper.make_tensor_value_info("s", F, [4]), helper.make_tensor_value_info("row", F, [4])],
                  [helper.make_tensor_value_info("s2", F, [4]), helper.make_tensor_value_info("o", F, [4])],
                  [helper.make_node("Add", ["s", "row"], ["s2"], name="scan/Add"),
                   helper.make_node("Identity", ["s2"], ["o"], name="scan/Identity")])
    nodes = [helper.make_node("If", ["flag"], ["a"], name="if", then_branch=then_b, else_branch=else_b),
             helper.make_node("Loop", ["trips", "", "a"], ["b"], name="loop", body=loop_b),
             helper.make_node("Scan", ["s0", "x"], ["sf", "rows"], name="scan", body=scan_b, num_scan_inputs=1)]
    inits = [wi, numpy_helper.from_array(np.array(3, np.int64), "trips"),
             numpy_helper.from_array(np.zeros(4, np.float32), "s0")]
    graph = helper.make_graph(nodes, "subgraphs", [helper.make_tensor_value_info("x", F, [2, 4]),
                                                   helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("b", F, None), helper.make_tensor_value_info("rows", F, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


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


def chain(nodes, inputs: dict, outputs: list[str], inits=(), opset: int = 17, extra_opsets=()) -> onnx.ModelProto:
    """A model from nodes as given (no sorting), float inputs name → shape, outputs untyped."""
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, F, s) for n, s in inputs.items()],
                              [helper.make_tensor_value_info(n, F, None) for n in outputs], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def seeds() -> list[bytes]:
    """The serialized models the fuzzers start from."""
    return [small_cnn().SerializeToString(), if_loop_scan().SerializeToString(),
            nested_ifs(3), small_cnn(external="weights.bin").SerializeToString()]


# --- mutations (the fuzzers') ------------------------------------------------------------

OWN_CODES = {0, 2, 3, 4, 5, 6, 7, 8, 9}  # success and archkit's own errors: never 1 (internal)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not b:
            break
        i = rng.randrange(len(b))
        op = rng.randrange(5)
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.randrange(256)
        elif op == 2:
            del b[i:i + rng.randint(1, 16)]
        elif op == 3:
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        else:  # a varint's worth of 0xff: huge lengths and values
            b[i:i] = b"\xff" * rng.randint(1, 10)
    if rng.random() < 0.25:
        b = b[:rng.randrange(len(b) + 1)]
    return bytes(b)


_INTS = (0, 1, -1, 2, 3, 7, 2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, -(2**63))


def mutate_fields(data: bytes, rng: random.Random) -> bytes:
    """Structure-aware: change dims, integer attributes and names in the parsed model."""
    m = onnx.ModelProto()
    m.ParseFromString(data)
    graphs = [m.graph]
    for n in m.graph.node:
        graphs += [a.g for a in n.attribute if a.type == onnx.AttributeProto.GRAPH]
    for _ in range(rng.randint(1, 4)):
        g = rng.choice(graphs)
        choice = rng.randrange(6)
        if choice == 0 and g.initializer:
            t = rng.choice(g.initializer)
            if t.dims:
                t.dims[rng.randrange(len(t.dims))] = rng.choice(_INTS)
        elif choice == 1 and g.node:
            n = rng.choice(g.node)
            ints = [a for a in n.attribute if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
            if ints:
                a = rng.choice(ints)
                if a.type == onnx.AttributeProto.INT:
                    a.i = rng.choice(_INTS)
                elif a.ints:
                    a.ints[rng.randrange(len(a.ints))] = rng.choice(_INTS)
            else:
                n.attribute.add(name=rng.choice(["axis", "pads", "strides", "group", "kernel_shape"]),
                                type=onnx.AttributeProto.INTS, ints=[rng.choice(_INTS)] * rng.randint(0, 4))
        elif choice == 2 and g.node:
            n = rng.choice(g.node)
            if n.input:
                n.input[rng.randrange(len(n.input))] = rng.choice(["", "x", "nowhere", n.output[0] if n.output else "y"])
        elif choice == 3 and g.node:
            rng.choice(g.node).op_type = rng.choice(["Conv", "MatMul", "Gemm", "MaxPool", "Reshape", "If", "Loop",
                                                     "Einsum", "Resize", "FancyOp", ""])
        elif choice == 4:
            vis = list(g.input) + list(g.output)
            if vis and vis[0].type.tensor_type.shape.dim:
                vi = rng.choice(vis)
                dims = vi.type.tensor_type.shape.dim
                if dims:
                    d = dims[rng.randrange(len(dims))]
                    if rng.random() < 0.5:
                        d.dim_value = rng.choice(_INTS)
                    else:
                        d.dim_param = rng.choice(["N", "", "x" * 300])
        else:
            m.opset_import[0].version = rng.choice([1, 6, 11, 13, 17, 21, 99, -1, 0])
    try:
        return m.SerializeToString()
    except Exception:  # a field value protobuf will not encode: fall back to bytes
        return mutate_bytes(data, rng)
