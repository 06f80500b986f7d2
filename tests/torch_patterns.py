"""ONNX graphs in the patterns PyTorch's exporter emits, built with onnx.helper (no PyTorch).

torchvision's ResNets and a transformer encoder block: NCHW, symbolic batch "N", Conv without
bias followed by BatchNormalization nodes, node names `/layer1/layer1.0/conv1/Conv`, Flatten then
Gemm(transB=1) for the classifier. Weights are declared as external data that does not exist:
dims suffice, and any attempt to read them would fail.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def external(name: str, dims, location: str = "weights.bin", offset: int = 0) -> onnx.TensorProto:
    """A float initializer whose data is declared to live in `location` (never written)."""
    t = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    n = 4 * int(np.prod(dims))
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(n))):
        e = t.external_data.add()
        e.key, e.value = k, v
    return t


class _Net:
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
        graph = helper.make_graph(self.nodes, name, [helper.make_tensor_value_info(x_name, TensorProto.FLOAT, x_shape)],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch",
                              producer_version="2.5.0")
        return m


def resnet(depth: int, *, classes: int = 1000, size: int = 224) -> onnx.ModelProto:
    """torchvision.models.resnet{18,34,50,101,152} as PyTorch exports it (v1.5: stride on the 3x3)."""
    bottleneck, layers = {18: (False, [2, 2, 2, 2]), 34: (False, [3, 4, 6, 3]), 50: (True, [3, 4, 6, 3]),
                          101: (True, [3, 4, 23, 3]), 152: (True, [3, 8, 36, 3])}[depth]
    n = _Net()
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
    n = _Net()
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
