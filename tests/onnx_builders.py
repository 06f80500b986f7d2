"""Small hand-built ONNX graphs for tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def one_node(op_type: str, inputs: dict, output_shape, *, weights: dict | None = None, opset: int = 18,
             domain: str = "", n_outputs: int = 1, **attrs) -> onnx.ModelProto:
    """A model holding one node. `inputs`: graph inputs name → shape (float); `weights`:
    initializers name → numpy array. Node inputs are the graph inputs then the weights, in order;
    a weight named "" leaves that slot empty."""
    weights = weights or {}
    node = helper.make_node(op_type, list(inputs) + list(weights), [f"y{i}" for i in range(n_outputs)],
                            name=f"layer/{op_type}", domain=domain, **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, output_shape if i == 0 else None)
         for i in range(n_outputs)],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in weights.items() if n],
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets)


def w(*shape, dtype=np.float32) -> np.ndarray:
    return np.zeros(shape, dtype)


def light_model(name: str):
    """Path of one of the Caffe2-zoo models the onnx package ships (onnx/backend/test/data/light/,
    e.g. "resnet50"): third-party files, small because their weights are not stored."""
    from pathlib import Path

    import pytest

    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    if not path.is_file():
        pytest.skip(f"this onnx package does not ship {path.name}")
    return path


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, from its IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
