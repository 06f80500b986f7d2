"""`archkit train`: the data sources, one short end-to-end run on a small digits subset with
onnxruntime's predictions equal to Keras', and the figures (issue 7). Nothing is downloaded."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from archkit.cli import main
from archkit.course import train as tr
from archkit.errors import InputError

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def digits():
    return tr.load_digits()


def test_digits_are_28x28_with_a_fixed_stratified_split(digits):
    assert digits.x_train.shape == (1437, 28, 28, 1) and digits.x_test.shape == (360, 28, 28, 1)
    assert digits.x_train.dtype == np.float32 and 0 <= digits.x_train.min() and digits.x_train.max() <= 1
    full = np.bincount(np.concatenate([digits.y_train, digits.y_test]))
    assert np.all(np.abs(np.bincount(digits.y_test) - 0.2 * full) <= 1)  # stratified by class
    again = tr.load_digits()
    np.testing.assert_array_equal(again.x_test, digits.x_test)
    np.testing.assert_array_equal(again.y_train, digits.y_train)


def test_bilinear_resize_keeps_a_constant_image_and_the_corners():
    r = tr._bilinear_matrix(8, 28)
    np.testing.assert_allclose(r.sum(axis=1), 1.0)
    img = np.arange(64, dtype=float).reshape(8, 8)
    big = r @ img @ r.T
    assert big[0, 0] == img[0, 0] and big[-1, -1] == img[-1, -1]


def test_mnist_without_its_cache_file_fails_without_downloading(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert tr.mnist_cache_path() == tmp_path / "datasets" / "mnist.npz"
    assert main(["train", "baseline_cnn", "--data", "mnist", "--out", str(tmp_path / "run")]) == 3
    assert "downloads nothing" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "mnist.npz").write_bytes(b"a damaged download")
    assert main(["train", "baseline_cnn", "--data", "mnist", "--out", str(tmp_path / "run")]) == 3
    assert "SHA-256 differs" in capsys.readouterr().err


@pytest.mark.parametrize("argv,code,fragment", [
    (["train", "resnet50"], 2, "invalid choice: 'resnet50'"),
    (["train", "baseline_cnn", "--epochs", "0"], 2, "--epochs 0: must be at least 1"),
    (["train", "baseline_cnn", "--data", "nope"], 2, "expected mnist, digits or a .npz file"),
    (["train", "baseline_cnn", "--data", "missing.npz"], 3, "no such file"),
])
def test_train_usage_errors_are_one_line_and_early(capsys, argv, code, fragment):
    assert main(argv) == code
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_train_refuses_a_file_as_output_folder(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", "baseline_cnn", "--out", str(tmp_path / "f")]) == 9
    assert "is a file" in capsys.readouterr().err


def test_npz_problems_are_input_errors(tmp_path, digits):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((4, 28, 28), np.uint8), y_train=np.zeros(4, np.int64))
    with pytest.raises(InputError, match="missing array.*x_test"):
        tr.load_npz(bad)
    np.savez(bad, x_train=np.zeros((4, 27, 28), np.uint8), y_train=np.zeros(4), x_test=np.zeros((2, 28, 28)),
             y_test=np.zeros(2))
    with pytest.raises(InputError, match=r"shape \(N, 28, 28\)"):
        tr.load_npz(bad)
    np.savez(bad, x_train=np.zeros((4, 28, 28), object), y_train=np.zeros(4), x_test=np.zeros((2, 28, 28)),
             y_test=np.zeros(2))
    with pytest.raises(InputError, match="not a readable"):  # object arrays need pickle: refused
        tr.load_npz(bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable"):
        tr.load_npz(tmp_path / "junk.npz")
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04" + b"\0" * 20)  # a zip's start, cut off
    with pytest.raises(InputError, match="not a readable"):
        tr.load_npz(tmp_path / "cut.npz")
    with pytest.raises(InputError, match="no such file"):
        tr.load_npz(tmp_path / "nothing.npz")
    good = tmp_path / "good.npz"
    good.write_bytes(digits.subset(5, 3).to_npz())
    back = tr.load_npz(good)
    np.testing.assert_allclose(back.x_train, digits.x_train[:5], atol=0.5 / 255)
    np.testing.assert_array_equal(back.y_test, digits.y_test[:3])


def test_nearest_neighbours_leave_the_query_out():
    emb = np.array([[0.0], [10.0], [1.0], [3.0], [2.0], [7.0]])
    idx, dist = tr.nearest_neighbours(emb, 0, k=4)
    assert idx == [2, 4, 3, 5] and dist == [1.0, 2.0, 3.0, 7.0]


def test_train_end_to_end_on_a_small_digits_subset(tmp_path, digits, capsys):
    """2 epochs of the dropout variant with early stopping (so the 5% validation split is
    exercised) on 320 digits, 120 test images, through the command line and a .npz file."""
    data = tmp_path / "small.npz"
    data.write_bytes(digits.subset(320, 120).to_npz())
    out = tmp_path / "run"
    assert main(["train", "baseline_cnn_dropout", "--data", str(data), "--epochs", "2", "--early-stopping",
                 "--query", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy: Keras" in printed and "120/120 predictions identical" in printed

    files = {p.name: p.stat().st_size for p in out.iterdir()}
    assert set(files) == {"model.keras", "model.onnx", "metrics.json", "kernels.png", "neighbours.png"}
    assert all(size > 0 for size in files.values())
    for png in ("kernels.png", "neighbours.png"):
        assert (out / png).read_bytes().startswith(PNG)

    m = json.loads((out / "metrics.json").read_text())
    assert m["predictions_identical"] and m["prediction_disagreements"] == 0
    assert m["keras_accuracy"] == m["onnx_accuracy"]
    assert (m["n_train"], m["n_validation"], m["n_test"]) == (304, 16, 120)
    assert m["epochs_run"] == 2 and set(m["history"]) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
    assert m["query"] == 5 and len(m["neighbours"]) == 4 and 5 not in m["neighbours"]

    # The saved files, reloaded, still agree: the .keras model and the ONNX export predict the
    # same classes, and the ONNX file carries FC1 as its second output.
    proto = onnx.load(out / "model.onnx")
    assert [o.name for o in proto.graph.output] == ["output", "FC1"]
    from archkit.keras.export import import_keras

    _, keras = import_keras()
    model = keras.models.load_model(out / "model.keras")
    x = tr.load_npz(data).x_test
    onnx_out = tr.onnx_outputs(proto, x)
    np.testing.assert_array_equal(onnx_out["output"].argmax(1), model.predict(x, verbose=0).argmax(1))
    assert onnx_out["FC1"].shape == (120, 64)
