"""The notes' convolution primitives: conv0's values exactly, numpy == onnxruntime for each step,
the notes' shapes, and the figures (issue 7)."""

from __future__ import annotations

import numpy as np
import pytest

from archkit.cli import main
from archkit.course import primitives as pm

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def photo():
    return pm.load_photo()


@pytest.fixture(scope="module")
def results(photo):
    return {c.name: c for c in pm.checks(photo)}


def test_conv0_gives_the_notes_values_to_the_last_digit():
    got = pm.conv0_examples()
    assert got == pm.NOTES_CONV0  # exact float equality
    assert [repr(v) for v in got.values()] == ["0.8807970779778823", "0.7310585786300049",
                                               "0.9525741268224334", "0.9933071490757153"]


def test_block_reduce_is_skimages_max_reduction():
    assert pm.block_reduce_max(pm.EX1).tolist() == [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 1, 0]]
    # a ragged edge is padded with zeros, as skimage's cval=0 does
    assert pm.block_reduce_max(np.arange(1, 10, dtype=float).reshape(3, 3)).tolist() == [[5, 6], [8, 9]]


def test_photo_is_the_notes_size(photo):
    assert photo.shape == pm.PHOTO_SHAPE == (183, 275)
    assert photo.dtype == np.float32 and 0 <= photo.min() < photo.max() <= 255


@pytest.mark.parametrize("name", ["conv ex0 * k0", "conv ex1 * k0", "conv two channels", "1x1 combines channels",
                                  "lines SAME", "lines stride 4", "lines VALID", "max pool 4", "residual x + F(x)"])
def test_numpy_equals_onnxruntime(results, name):
    c = results[name]
    assert c.ok, (c.output_shape, c.expected_shape, c.max_abs_diff, c.tolerance)
    if "lines" not in name:  # 0/1 images and kernels: every sum is a small integer, exact in any order
        assert c.exact


def test_shapes_follow_the_notes(results):
    shapes = {n: results[n].output_shape[1:3] for n in ("lines SAME", "lines stride 4", "lines VALID", "max pool 4")}
    assert shapes == {"lines SAME": (183, 275), "lines stride 4": (46, 69), "lines VALID": (177, 269),
                      "max pool 4": (45, 68)}


def test_1x1_kernel_adds_the_channels_and_residual_adds_the_input(results):
    np.testing.assert_array_equal(results["1x1 combines channels"].onnx[0, :, :, 0], pm.EX0 + pm.EX1)
    np.testing.assert_array_equal(results["residual x + F(x)"].onnx - results["conv ex0 * k0"].onnx, pm.EX0[None, :, :, None])


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "SAME"), (3, "SAME"), (2, "VALID")])
def test_conv2d_against_a_plain_loop_and_onnxruntime(stride, padding):
    """Odd sizes and strides exercise TensorFlow's uneven SAME padding (the extra pixel after)."""
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((1, 9, 11, 2)).astype(np.float32)
    w = rng.standard_normal((4, 3, 2, 3)).astype(np.float32)
    kh, kw = w.shape[:2]
    if padding == "SAME":
        oh, ow = -(-9 // stride), -(-11 // stride)
        ph, pw = max((oh - 1) * stride + kh - 9, 0), max((ow - 1) * stride + kw - 11, 0)
        xp = np.pad(x.astype(np.float64), ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (9 - kh) // stride + 1, (11 - kw) // stride + 1
        xp = x.astype(np.float64)
    want = np.zeros((1, oh, ow, 3))
    for i in range(oh):
        for j in range(ow):
            patch = xp[0, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            want[0, i, j] = np.tensordot(patch, w, axes=3)
    got = pm.conv2d(x, w, stride=stride, padding=padding)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    ort = pm.run_onnx(pm.onnx_conv2d((1, 2, 9, 11), w, stride=stride, padding=padding), x)
    np.testing.assert_allclose(ort, got, rtol=1e-5, atol=1e-5)


def test_bad_padding_is_named():
    with pytest.raises(ValueError, match="'FULL'"):
        pm.conv2d(np.zeros((1, 4, 4, 1)), np.zeros((2, 2, 1, 1)), padding="FULL")


def test_cli_prints_the_values_and_writes_the_figures(tmp_path, capsys):
    assert main(["primitives", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for value in pm.NOTES_CONV0.values():
        assert f"{value!r}" in out
    assert "FAIL" not in out and "183x275x1 -> 46x69x2" in out and "183x275x1 -> 177x269x2" in out
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [
        "01_examples.png", "02_conv0.png", "03_conv_k0.png", "04_two_channels.png", "05_photo_vertical.png",
        "06_photo_horizontal.png", "07_stride_padding_pool.png", "08_residual.png"]
    for p in tmp_path.iterdir():
        data = p.read_bytes()
        assert data.startswith(PNG) and 2_000 < len(data) < 200_000, (p.name, len(data))
