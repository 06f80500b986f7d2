"""Where an ONNX tensor's values are stored, and whether they are in the file at all.

Shared by the loader's checks (archkit.onnx.load: the bytes a tensor holds must match its dims)
and by the graph stage (archkit.onnx.graph, archkit.onnx.shapes: which small constants can be read).
Reads protobuf fields only: no value is decoded here.
"""

from __future__ import annotations

import math

import onnx

__all__ = ["TYPED_FIELDS", "has_data"]

_T = onnx.TensorProto

# Element type → (the typed field holding its values, entries per element, elements per entry):
# a complex number takes two entries, a 4-bit type packs two elements in one.
TYPED_FIELDS: dict[int, tuple[str, int, int]] = {
    _T.FLOAT: ("float_data", 1, 1), _T.COMPLEX64: ("float_data", 2, 1), _T.DOUBLE: ("double_data", 1, 1),
    _T.COMPLEX128: ("double_data", 2, 1), _T.INT64: ("int64_data", 1, 1), _T.UINT32: ("uint64_data", 1, 1),
    _T.UINT64: ("uint64_data", 1, 1), _T.STRING: ("string_data", 1, 1)}
for _dt in (_T.INT32, _T.INT16, _T.INT8, _T.UINT16, _T.UINT8, _T.BOOL, _T.FLOAT16, _T.BFLOAT16, _T.FLOAT8E4M3FN,
            _T.FLOAT8E4M3FNUZ, _T.FLOAT8E5M2, _T.FLOAT8E5M2FNUZ):
    TYPED_FIELDS[_dt] = ("int32_data", 1, 1)
for _dt in (_T.UINT4, _T.INT4, _T.FLOAT4E2M1):
    TYPED_FIELDS[_dt] = ("int32_data", 1, 2)


def has_data(t: onnx.TensorProto) -> bool:
    """Whether a tensor's values are inside the file (not external, not absent)."""
    if t.data_location == _T.EXTERNAL:
        return False
    if t.HasField("raw_data"):
        return True
    typed = TYPED_FIELDS.get(t.data_type)
    return typed is not None and len(getattr(t, typed[0])) > 0 or math.prod(t.dims) == 0
