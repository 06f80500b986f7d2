"""The course notes' convolution primitives, computed twice: in numpy and in onnxruntime.

The course notes "Redes de Convolução" (section "Convoluções") build convolution up from
`conv0`, the sigmoid of an inner product, to TensorFlow's `conv2d` with strides, padding and
max pooling, a 1x1 kernel combining channels, and the residual x + F(x). This module
reproduces each step: numpy follows the notes' TensorFlow layout (NHWC images, HWIO kernels,
cross-correlation, TensorFlow's SAME padding), and the same step runs as a hand-built ONNX
graph (NCHW, OIHW) in onnxruntime. The two must agree: bit for bit on the notes' 0/1 examples
(every partial sum is a small integer, exact in float32 in any order), and to float32 rounding
on the photo (numpy sums in float64, onnxruntime in float32 in its own order).

The notes' building photo is not ours to ship; Grace Hopper's portrait, which matplotlib ships
as sample data, takes its place, resized and cropped to the notes' 183x275.

Computation only: `figures()` returns PNG bytes, the CLI (`archkit primitives`) writes them.
No TensorFlow is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from archkit.io import png_bytes
from archkit.runtime.child import session

__all__ = [
    "EX0",
    "EX1",
    "K0",
    "K3X3",
    "NOTES_CONV0",
    "PHOTO_SHAPE",
    "PrimitiveCheck",
    "block_reduce_max",
    "checks",
    "conv0",
    "conv0_examples",
    "conv2d",
    "figures",
    "line_kernels",
    "load_photo",
    "max_pool",
    "onnx_conv2d",
    "onnx_max_pool",
    "onnx_residual",
    "plot_figs",
    "run_onnx",
]

# In [6]-[8] of the notes.
EX0 = np.array([[0, 0, 0, 1, 0, 0, 0, 0],
                [0, 0, 1, 0, 0, 0, 0, 0],
                [0, 1, 0, 0, 0, 0, 0, 0],
                [1, 0, 0, 0, 0, 0, 0, 0],
                [0, 0, 0, 0, 1, 0, 0, 0],
                [0, 0, 0, 0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0, 0, 1, 0],
                [0, 0, 0, 0, 0, 0, 0, 1]], dtype=np.float32)

EX1 = np.array([[0, 0, 0, 0, 0, 0, 0, 1],
                [0, 0, 0, 0, 0, 0, 0, 1],
                [0, 0, 0, 0, 0, 0, 1, 0],
                [0, 0, 0, 0, 0, 0, 1, 0],
                [0, 0, 0, 0, 0, 1, 0, 0],
                [0, 0, 0, 0, 0, 1, 0, 0],
                [0, 0, 0, 0, 1, 0, 0, 0],
                [0, 0, 0, 0, 1, 0, 0, 0]], dtype=np.float32)

K0 = np.array([[0, 0, 0, 1],
               [0, 0, 1, 1],
               [0, 0, 1, 0],
               [0, 1, 0, 0]], dtype=np.float32)

# In [77]: the residual section's "k3x3" is k0 again (a 4x4 kernel despite its name).
K3X3 = K0.copy()

# Out[11], Out[12], Out[14], Out[15].
NOTES_CONV0 = {
    "ex0 top-left 4x4": 0.8807970779778823,
    "ex0 bottom-right 4x4": 0.7310585786300049,
    "ex1 after 2x2 max block-reduce": 0.9525741268224334,
    "ex0 top-left and reduced ex1": 0.9933071490757153,
}

PHOTO_SHAPE = (183, 275)  # the notes' building.jpeg, Out[25]: (183, 275, 3)


# --- conv0 (In [10]) -----------------------------------------------------------------------

def conv0(inputs: Sequence[np.ndarray], k: np.ndarray) -> float:
    """sigmoid(sum over the inputs of the sum of the elementwise products with k).

    The notes' numpy 1 promoted `1. + np.exp(-s)` to float64; here the sum and the sigmoid are
    float64 throughout, so the values are the notes' to the last digit under numpy 2 as well.
    """
    kr = np.asarray(k, dtype=np.float64).reshape(-1)
    s = 0.0
    for x in inputs:
        x = np.asarray(x, dtype=np.float64)
        if x.size != kr.size:
            raise ValueError(f"conv0: input of shape {x.shape} does not match kernel of shape {np.shape(k)}")
        s += float(np.sum(x.reshape(-1) * kr))
    return 1.0 / (1.0 + math.exp(-s))


def block_reduce_max(x: np.ndarray, block: tuple[int, int] = (2, 2)) -> np.ndarray:
    """skimage.measure.block_reduce(x, block, np.max): the max of each block; a ragged edge
    is padded with zeros (skimage's cval=0) before reducing."""
    x = np.asarray(x)
    bh, bw = block
    h, w = x.shape
    ph, pw = -h % bh, -w % bw
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw)))
    return x.reshape(x.shape[0] // bh, bh, x.shape[1] // bw, bw).max(axis=(1, 3))


def conv0_examples() -> dict[str, float]:
    """The notes' four conv0 calls, keyed like NOTES_CONV0."""
    ex1p = block_reduce_max(EX1, (2, 2))
    return {
        "ex0 top-left 4x4": conv0([EX0[:4, :4]], K0),
        "ex0 bottom-right 4x4": conv0([EX0[4:, 4:]], K0),
        "ex1 after 2x2 max block-reduce": conv0([ex1p], K0),
        "ex0 top-left and reduced ex1": conv0([EX0[:4, :4], ex1p], K0),
    }


# --- numpy: tf.nn.conv2d and tf.nn.max_pool ----------------------------------------------

def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's SAME: output ceil(n / s); the odd pixel of padding goes after (bottom/right)."""
    total = max((-(-n // s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _check_padding(padding: str) -> str:
    p = padding.upper()
    if p not in ("SAME", "VALID"):
        raise ValueError(f"padding {padding!r}: expected 'SAME' or 'VALID'")
    return p


def conv2d(x: np.ndarray, w: np.ndarray, *, stride: int = 1, padding: str = "SAME") -> np.ndarray:
    """tf.nn.conv2d(x, w, strides=[1, s, s, 1], padding) in numpy.

    x: (batch, height, width, in channels); w: (height, width, in channels, out channels).
    Sums in float64, returns float32 (the exactly rounded result).
    """
    padding = _check_padding(padding)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if x.ndim != 4 or w.ndim != 4 or x.shape[3] != w.shape[2]:
        raise ValueError(f"conv2d: input {x.shape} (NHWC) and kernel {w.shape} (HWIO) do not fit")
    kh, kw = w.shape[:2]
    if padding == "SAME":
        x = np.pad(x, ((0, 0), _same_pads(x.shape[1], kh, stride), _same_pads(x.shape[2], kw, stride), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("nhwcij,ijco->nhwo", windows, w, optimize=True).astype(np.float32)


def max_pool(x: np.ndarray, size: int, *, stride: int | None = None) -> np.ndarray:
    """tf.nn.max_pool(x, ksize=size, strides=stride or size, padding="VALID") on NHWC."""
    stride = stride or size
    x = np.asarray(x, dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))[:, ::stride, ::stride]
    return windows.max(axis=(-2, -1))


def line_kernels(size: int = 7) -> np.ndarray:
    """In [28]: two 7x7 kernels (HWIO, 1 in, 2 out): a vertical line, then a horizontal one."""
    fmap = np.zeros((size, size, 1, 2), dtype=np.float32)
    fmap[:, size // 2, 0, 0] = 1
    fmap[size // 2, :, 0, 1] = 1
    return fmap


def load_photo() -> np.ndarray:
    """A real photo at the notes' 183x275, grayscale as in In [26] (the mean of R, G and B).

    matplotlib's sample Grace Hopper portrait (512x600), resized to 275 wide (Lanczos) and
    cropped to rows 20-202: cap, face and collar, with the flag's stripes beside them.
    """
    import matplotlib.cbook  # heavy (~0.5 s): only when a picture is drawn
    from PIL import Image  # with matplotlib: only when a picture is read

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(path) as im:
        width = PHOTO_SHAPE[1]
        height = round(im.height * width / im.width)
        rgb = np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
    top = 20
    rgb = rgb[top:top + PHOTO_SHAPE[0]]
    return rgb.mean(axis=2).astype(np.float32)


# --- the same steps as ONNX graphs -------------------------------------------------------

def _value_info(name: str, shape: Sequence[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, ...]], output: str,
           initializers: dict[str, np.ndarray], name: str) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, name, [_value_info(n, s) for n, s in inputs.items()], [_value_info(output, [None] * len(next(iter(inputs.values()))))],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), n) for n, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="archkit.primitives")
    model.ir_version = 8  # what opset 17 came with; any onnxruntime since 1.13 runs it
    onnx.checker.check_model(model, full_check=True)
    return model


def _conv_node(stride: int, padding: str, kernel: tuple[int, int], inputs=("x", "w"), output="y") -> onnx.NodeProto:
    return helper.make_node("Conv", list(inputs), [output], kernel_shape=list(kernel), strides=[stride, stride],
                            auto_pad="SAME_UPPER" if padding == "SAME" else "VALID")


def onnx_conv2d(x_shape: tuple[int, ...], w: np.ndarray, *, stride: int = 1, padding: str = "SAME") -> onnx.ModelProto:
    """One Conv node. SAME is ONNX's auto_pad SAME_UPPER (the odd pixel after), which is TensorFlow's
    SAME; x is NCHW and the NHWC/HWIO kernel `w` is stored as OIHW."""
    padding = _check_padding(padding)
    w_oihw = np.transpose(np.asarray(w, dtype=np.float32), (3, 2, 0, 1))
    return _model([_conv_node(stride, padding, w.shape[:2])], {"x": x_shape}, "y", {"w": w_oihw}, f"conv2d_{padding.lower()}_s{stride}")


def onnx_max_pool(x_shape: tuple[int, ...], size: int, *, stride: int | None = None) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[size, size], strides=[stride or size] * 2)
    return _model([node], {"x": x_shape}, "y", {}, f"max_pool_{size}")


def onnx_residual(x_shape: tuple[int, ...], w: np.ndarray) -> onnx.ModelProto:
    """x + F(x) with F a SAME convolution: a Conv node and an Add node (no single ONNX op does both)."""
    w_oihw = np.transpose(np.asarray(w, dtype=np.float32), (3, 2, 0, 1))
    nodes = [_conv_node(1, "SAME", w.shape[:2], output="f"), helper.make_node("Add", ["x", "f"], ["y"])]
    return _model(nodes, {"x": x_shape}, "y", {"w": w_oihw}, "residual")


def run_onnx(model: onnx.ModelProto, x_nhwc: np.ndarray) -> np.ndarray:
    """Run a one-input model in onnxruntime: NHWC in, NCHW through the graph, NHWC out."""
    x = np.ascontiguousarray(np.transpose(np.asarray(x_nhwc, dtype=np.float32), (0, 3, 1, 2)))
    (y,) = session(model).run(None, {model.graph.input[0].name: x})
    return np.transpose(y, (0, 2, 3, 1))


# --- the checks ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PrimitiveCheck:
    """One primitive, computed by numpy and by onnxruntime."""

    name: str
    note: str
    input_shape: tuple[int, ...]  # NHWC
    output_shape: tuple[int, ...]  # NHWC
    expected_shape: tuple[int, ...] | None  # what the notes show, where they do
    numpy: np.ndarray
    onnx: np.ndarray
    onnx_ops: tuple[str, ...]
    terms: int  # products summed per output value

    @property
    def max_abs_diff(self) -> float:
        return float(np.max(np.abs(self.numpy.astype(np.float64) - self.onnx))) if self.numpy.size else 0.0

    @property
    def exact(self) -> bool:
        return self.numpy.shape == self.onnx.shape and bool(np.array_equal(self.numpy, self.onnx))

    @property
    def tolerance(self) -> float:
        """float32 rounding of a sum of `terms` products in any order: terms x eps x max |output|
        (the inputs here are non-negative, so the largest output bounds every partial sum)."""
        scale = float(np.max(np.abs(self.numpy))) if self.numpy.size else 0.0
        return self.terms * float(np.finfo(np.float32).eps) * scale

    @property
    def ok(self) -> bool:
        """The notes' shape, and numpy == onnxruntime: exactly, or within float32 rounding."""
        if self.expected_shape is not None and self.output_shape != self.expected_shape:
            return False
        return self.exact or (self.numpy.shape == self.onnx.shape and self.max_abs_diff <= self.tolerance)


def _check(name: str, note: str, x: np.ndarray, model: onnx.ModelProto, numpy_fn: Callable[[np.ndarray], np.ndarray],
           expected_shape=None) -> PrimitiveCheck:
    want = numpy_fn(x)
    got = run_onnx(model, x)
    weights = [t for t in model.graph.initializer]
    terms = max((int(np.prod(t.dims[1:])) for t in weights), default=1) + (len(model.graph.node) - 1)
    return PrimitiveCheck(name, note, tuple(x.shape), tuple(want.shape), expected_shape, want, got,
                          tuple(n.op_type for n in model.graph.node), terms)


def _nhwc(*channels: np.ndarray) -> np.ndarray:
    return np.stack(channels, axis=-1)[None].astype(np.float32)


def checks(photo: np.ndarray | None = None) -> tuple[PrimitiveCheck, ...]:
    """Every primitive of the notes, numpy beside onnxruntime, in the notes' order."""
    photo = load_photo() if photo is None else photo
    h, w = photo.shape
    img = _nhwc(photo)
    fmap = line_kernels()
    k0 = K0.reshape(4, 4, 1, 1)
    two = _nhwc(EX0, EX1)
    k0_two = np.stack([K0, K0], axis=-1)[..., None]  # In [19]: k0 on both channels, one output
    ones_1x1 = np.ones((1, 1, 2, 1), dtype=np.float32)  # In [21]
    ex0 = _nhwc(EX0)
    same = conv2d(img, fmap)
    out = [
        _check("conv ex0 * k0", "In [17]: k0 over ex0, SAME", ex0, onnx_conv2d(ex0.shape[:1] + (1, 8, 8), k0),
               lambda x: conv2d(x, k0), (1, 8, 8, 1)),
        _check("conv ex1 * k0", "In [18]: k0 over ex1, SAME", _nhwc(EX1), onnx_conv2d((1, 1, 8, 8), k0),
               lambda x: conv2d(x, k0), (1, 8, 8, 1)),
        _check("conv two channels", "In [19]-[20]: k0 on ex0 and ex1 as two channels, summed", two,
               onnx_conv2d((1, 2, 8, 8), k0_two), lambda x: conv2d(x, k0_two), (1, 8, 8, 1)),
        _check("1x1 combines channels", "In [21]-[22]: a 1x1 kernel of ones adds the two channels", two,
               onnx_conv2d((1, 2, 8, 8), ones_1x1), lambda x: conv2d(x, ones_1x1), (1, 8, 8, 1)),
        _check("lines SAME", "In [29]: 7x7 vertical and horizontal lines, SAME keeps the size", img,
               onnx_conv2d((1, 1, h, w), fmap), lambda x: conv2d(x, fmap), (1, h, w, 2)),
        _check("lines stride 4", "In [31]: stride 4 divides each side by 4 (rounded up)", img,
               onnx_conv2d((1, 1, h, w), fmap, stride=4), lambda x: conv2d(x, fmap, stride=4),
               (1, -(-h // 4), -(-w // 4), 2)),
        _check("lines VALID", "In [32]: VALID loses 3 pixels on each side", img,
               onnx_conv2d((1, 1, h, w), fmap, padding="VALID"), lambda x: conv2d(x, fmap, padding="VALID"),
               (1, h - 6, w - 6, 2)),
        _check("max pool 4", "In [34]: 4x4 max pooling, stride 4, VALID, of the SAME output", same,
               onnx_max_pool((1, 2, h, w), 4), lambda x: max_pool(x, 4), (1, h // 4, w // 4, 2)),
        _check("residual x + F(x)", "In [78]: ex0 plus its convolution with k3x3", ex0,
               onnx_residual((1, 1, 8, 8), k0), lambda x: x + conv2d(x, k0), (1, 8, 8, 1)),
    ]
    return tuple(out)


# --- figures (the notes' plot_figs) -------------------------------------------------------

def plot_figs(panels: Sequence[tuple[str, np.ndarray]], *, title: str | None = None, width: float = 2.6) -> bytes:
    """In [5]'s plot_figs: matrices side by side in gray, nearest-neighbour pixels; returns PNG bytes."""
    import matplotlib  # heavy (~0.5 s): only when a picture is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy (~0.5 s): only when a picture is drawn

    heights = [a.shape[0] / a.shape[1] for _, a in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), width * max(heights) + (0.9 if title else 0.5)),
                             squeeze=False)
    for ax, (label, a) in zip(axes[0], panels):
        ax.matshow(a, cmap="gray", interpolation="nearest")
        ax.set(aspect="equal")
        ax.set_title(f"{label}\n{a.shape[0]}x{a.shape[1]}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return png_bytes(fig, dpi=80)


def figures(results: Sequence[PrimitiveCheck] | None = None, photo: np.ndarray | None = None) -> dict[str, bytes]:
    """The notes' figures, file name -> PNG bytes, from onnxruntime's outputs."""
    photo = load_photo() if photo is None else photo
    results = checks(photo) if results is None else results
    r = {c.name: c.onnx for c in results}
    fmap = line_kernels()
    ex1p = block_reduce_max(EX1)
    return {
        "01_examples.png": plot_figs([("ex0", EX0), ("ex1", EX1), ("k0", K0)], title="In [9]: two images and a kernel"),
        "02_conv0.png": plot_figs([("ex0[:4,:4]", EX0[:4, :4]), ("ex0[4:,4:]", EX0[4:, 4:]), ("ex1 reduced", ex1p),
                                   ("k0", K0)], title="In [11]-[15]: conv0 = sigmoid(x . k0): "
                                  + ", ".join(f"{v:.4f}" for v in conv0_examples().values())),
        "03_conv_k0.png": plot_figs([("ex0", EX0), ("k0", K0), ("ex0 * k0", r["conv ex0 * k0"][0, :, :, 0]),
                                     ("ex1", EX1), ("ex1 * k0", r["conv ex1 * k0"][0, :, :, 0])],
                                    title="In [17]-[18]: k0 over ex0 and ex1 (SAME)"),
        "04_two_channels.png": plot_figs([("ex0", EX0), ("ex1", EX1), ("k0 on both", K0),
                                          ("output", r["conv two channels"][0, :, :, 0]),
                                          ("1x1 of ones", r["1x1 combines channels"][0, :, :, 0])],
                                         title="In [19]-[22]: a kernel over two channels; a 1x1 kernel adds them"),
        "05_photo_vertical.png": plot_figs([("photo (grayscale)", photo), ("vertical 7x7", fmap[:, :, 0, 0]),
                                            ("output", r["lines SAME"][0, :, :, 0])],
                                           title="In [28]-[29]: a vertical line kernel finds vertical edges"),
        "06_photo_horizontal.png": plot_figs([("photo (grayscale)", photo), ("horizontal 7x7", fmap[:, :, 0, 1]),
                                              ("output", r["lines SAME"][0, :, :, 1])],
                                             title="In [28]-[29]: a horizontal line kernel finds horizontal edges"),
        "07_stride_padding_pool.png": plot_figs([("SAME", r["lines SAME"][0, :, :, 0]),
                                                 ("stride 4", r["lines stride 4"][0, :, :, 0]),
                                                 ("VALID", r["lines VALID"][0, :, :, 0]),
                                                 ("max pool 4", r["max pool 4"][0, :, :, 0])],
                                                title="In [31]-[34]: stride 4, VALID padding, 4x4 max pooling"),
        "08_residual.png": plot_figs([("x = ex0", EX0), ("k3x3", K3X3), ("F(x) = x * k3x3", r["conv ex0 * k0"][0, :, :, 0]),
                                      ("x + F(x)", r["residual x + F(x)"][0, :, :, 0])],
                                     title="In [78]: the residual block's output x + F(x)"),
    }
