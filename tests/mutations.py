"""The fuzzers' mutations of serialized ONNX models (tests/test_fuzz.py, benchmarks/fuzz_analyse.py);
the models they start from: tests/builders.py, `seeds`."""

from __future__ import annotations

import random

import onnx

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
    except Exception:  # noqa: BLE001 - a field value protobuf will not encode: fall back to bytes
        return mutate_bytes(data, rng)
