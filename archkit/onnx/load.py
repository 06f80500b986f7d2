"""The one place that reads ONNX files a user points at, and decides whether they are safe.

A file is checked by archkit itself before anything else (onnx's C++ code, onnxruntime) sees
it, and before any file it names is opened:

- size: refused above a limit (default protobuf's 2 GiB) before it is read;
- structure: every tensor's dims are non-negative and their element count fits int64; the
  bytes a tensor holds match its dims and type; names are text; subgraphs nest at most
  MAX_SUBGRAPH_DEPTH deep;
- operators: each node of a domain onnx.defs knows is checked against its operator's schema in
  the file's own opset version (an opset-9 file against the opset-9 schemas): attribute names,
  types and required attributes, the number of inputs and outputs. An op onnx.defs has no
  schema for (a custom domain, an op its version does not define) is left to the costs, which
  list it without a cost rule;
- external data: the location is relative, has no `..`, drive letter or UNC prefix, resolves
  inside the model's folder (realpath, compared with commonpath), crosses no symlink, names a
  regular file with one link, and offset + length lie within that file. Nothing is opened:
  lstat suffices. A missing file is not an error here (costs need only dims): it is listed,
  and whatever needs the weights calls `Loaded.require_weights`.

These checks are archkit's own on purpose: onnx has had path-traversal holes in external data
(CVE-2022-25882, CVE-2024-27318, and later ones) and its native code may abort on malformed
input. A file can still change between the check and a later open by onnxruntime: the checks
guard against hostile files, not against a hostile file system.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple, NoReturn

import onnx
import onnx.defs
from google.protobuf.message import DecodeError

from archkit.errors import ArchkitError, InputError, MalformedModelError, ResourceError, UnsafeModelError
from archkit.onnx.tensors import TYPED_FIELDS

__all__ = ["MAX_BYTES", "MAX_SUBGRAPH_DEPTH", "ExternalRef", "Loaded", "check_model", "load_model", "parse_model"]

# protobuf cannot parse a single message over 2 GiB; refuse before reading it whole.
MAX_BYTES = 2**31 - 1
MAX_SUBGRAPH_DEPTH = 16  # If inside Loop inside If...: real models nest 2 or 3 deep
INT64_MAX = 2**63 - 1

_T = onnx.TensorProto
_A = onnx.AttributeProto
_EXTERNAL = _T.EXTERNAL
_EXTERNAL_KEYS = frozenset({"location", "offset", "length", "checksum"})

# Bits per element as stored in raw_data (packed sub-byte types round up to whole bytes).
_BITS: dict[int, int] = {_T.FLOAT: 32, _T.UINT8: 8, _T.INT8: 8, _T.UINT16: 16, _T.INT16: 16, _T.INT32: 32, _T.INT64: 64,
         _T.BOOL: 8, _T.FLOAT16: 16, _T.DOUBLE: 64, _T.UINT32: 32, _T.UINT64: 64, _T.COMPLEX64: 64,
         _T.COMPLEX128: 128, _T.BFLOAT16: 16, _T.FLOAT8E4M3FN: 8, _T.FLOAT8E4M3FNUZ: 8, _T.FLOAT8E5M2: 8,
         _T.FLOAT8E5M2FNUZ: 8, _T.UINT4: 4, _T.INT4: 4, _T.FLOAT4E2M1: 4}
for _name, _bits in (("FLOAT8E8M0", 8), ("UINT2", 2), ("INT2", 2)):  # newer onnx versions only
    if hasattr(_T, _name):
        _BITS[getattr(_T, _name)] = _bits

_HOLDERS = frozenset({_A.TENSOR, _A.TENSORS, _A.GRAPH, _A.GRAPHS, _A.SPARSE_TENSOR, _A.SPARSE_TENSORS})


class _Schema(NamedTuple):
    """What load checks of one operator schema (onnx.defs.OpSchema, read once)."""

    op: str  # "Conv, opset 9": the op and the file's opset version, for messages
    attributes: Mapping[str, int]  # name → AttributeProto type
    required: tuple[str, ...]
    inputs: tuple[int, int]  # the fewest and the most inputs
    outputs: tuple[int, int]
    single_inputs: tuple[int, ...]  # inputs that must be named (not optional, not variadic)
    single_outputs: tuple[int, ...]
    unchecked: bool  # attributes outside the schema are allowed


# Schemas that allow attributes outside them (onnx's AllowUncheckedAttributes, which onnx.defs
# does not expose): (domain, op_type, since_version).
_UNCHECKED = frozenset({("", "LayerNormalization", 17)})
_SINGLE = onnx.defs.OpSchema.FormalParameterOption.Single
# a schema's attribute type → AttributeProto's
_ATTR_TYPES = {getattr(onnx.defs.OpSchema.AttrType, name): value for name, value in _A.AttributeType.items()
               if hasattr(onnx.defs.OpSchema.AttrType, name)}
_SCHEMAS: dict[tuple[str, str, int], _Schema | None] = {}  # (domain, op_type, opset version) → schema


def _schema(domain: str, op_type: str, version: int) -> _Schema | None:
    """The schema an op has in opset `version` of its domain; None where onnx.defs has none (a
    custom domain, an op the version does not define or has deprecated)."""
    key = (domain, op_type, version)
    if key in _SCHEMAS:
        return _SCHEMAS[key]
    try:
        s = onnx.defs.get_schema(op_type, version, domain)
    except onnx.defs.SchemaError:
        s = None
    found = None
    if s is not None and not s.deprecated:
        found = _Schema(f"{op_type}, opset {version}", {n: _ATTR_TYPES[a.type] for n, a in s.attributes.items()},
                        tuple(sorted(n for n, a in s.attributes.items() if a.required)),
                        (s.min_input, s.max_input), (s.min_output, s.max_output),
                        tuple(i for i, f in enumerate(s.inputs) if f.option == _SINGLE),
                        tuple(i for i, f in enumerate(s.outputs) if f.option == _SINGLE),
                        (domain, op_type, s.since_version) in _UNCHECKED)
    _SCHEMAS[key] = found
    return found


def _opsets(imports: Iterable[onnx.OperatorSetIdProto]) -> dict[str, int]:
    """Domain → version, the default domain as "" (as onnx.defs names it)."""
    return {("" if o.domain == "ai.onnx" else o.domain): o.version for o in imports}


class ExternalRef(NamedTuple):
    """One tensor whose data lives in another file, as checked (never opened)."""

    tensor: str
    location: str
    offset: int
    length: int  # the bytes the tensor needs
    missing: bool  # the file (or a folder on its path) does not exist


class Loaded(NamedTuple):
    """A checked model: the proto, where it came from, and what its weights look like."""

    proto: onnx.ModelProto
    path: Path
    size_bytes: int
    external: tuple[ExternalRef, ...]
    absent: tuple[str, ...]  # tensors that declare elements but hold no data at all
    freed: tuple[str, ...] = ()  # "tensor:axis" of graph input/output/value_info dims declared -1, now free

    @property
    def warnings(self) -> tuple[str, ...]:
        out = []
        if self.freed:
            out.append(f"{self.path}: {len(self.freed)} dimensions declared as -1 (as Paddle2ONNX writes a dynamic "
                       f"dimension) read as free dimensions named after their tensor and axis ({_few(self.freed)})")
        missing = [r for r in self.external if r.missing]
        if missing:
            files = sorted({r.location for r in missing})
            out.append(f"{self.path}: {len(missing)} tensors' external data missing ({_few(files)}); "
                       "costs are computed from their dims, parity and benchmarks need the weights")
        if self.absent:
            out.append(f"{self.path}: {len(self.absent)} tensors hold no data ({_few(self.absent)}); "
                       "costs are computed from their dims, parity and benchmarks need the weights")
        return tuple(out)

    def require_weights(self, purpose: str) -> None:
        """Refuse, naming what is missing, when `purpose` needs every weight."""
        missing = sorted({r.location for r in self.external if r.missing})
        if missing:
            raise InputError(f"{self.path}: external data file {missing[0]!r} is missing"
                             + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                             + f"; {purpose} needs the weights")
        if self.absent:
            raise InputError(f"{self.path}: tensor {self.absent[0]!r} holds no data; {purpose} needs the weights")


def load_model(path: str | os.PathLike, *, max_bytes: int | None = None) -> Loaded:
    """Read and check an ONNX file (see the module docstring). Raises archkit errors only."""
    p = Path(path)
    limit = MAX_BYTES if max_bytes is None else max_bytes
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot access ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: is a folder, not an ONNX file")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file")
    if st.st_size == 0:
        raise MalformedModelError(f"{p}: empty file")
    if st.st_size > limit:
        raise ResourceError(f"{p}: {st.st_size:,} bytes exceeds the {limit:,}-byte limit (--max-bytes)")
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)  # the file may have grown since stat
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    if len(data) > limit:
        raise ResourceError(f"{p}: more than {limit:,} bytes (--max-bytes)")
    proto = parse_model(data, origin=str(p))
    del data
    c = _Checker(str(p), p.parent)
    c.model(proto)
    return Loaded(proto, p, st.st_size, tuple(c.external), tuple(c.absent), tuple(c.freed))


def parse_model(data: bytes, *, origin: str = "<bytes>") -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError, RecursionError) as e:
        raise MalformedModelError(f"{origin}: not an ONNX model ({_first_line(e)})") from None
    if not model.HasField("graph") or not model.opset_import:
        raise MalformedModelError(f"{origin}: not an ONNX model (no graph or no opset_import)")
    return model


# --- the checks ---------------------------------------------------------------------------


def check_model(model: onnx.ModelProto, *, origin: str, folder: Path | None
                ) -> tuple[tuple[ExternalRef, ...], tuple[str, ...]]:
    """Check what the module docstring lists; return the external references and the tensors
    without data. `folder`: where external data would be (None: any external data is refused)."""
    c = _Checker(origin, folder)
    c.model(model)
    return tuple(c.external), tuple(c.absent)


class _Checker:
    def __init__(self, origin: str, folder: Path | None):
        self.origin = origin
        self.folder = folder
        self.root = os.path.realpath(folder) if folder is not None else None
        self.external: list[ExternalRef] = []
        self.absent: list[str] = []
        self.files: dict[str, os.stat_result | None] = {}
        self.freed: list[str] = []
        self.opsets: dict[str, int] = {}

    def model(self, model: onnx.ModelProto) -> None:
        for text in (model.producer_name, model.producer_version, model.domain, model.doc_string):
            self.text(text, "model field")
        for p in model.metadata_props:
            self.text(p.key, "metadata key")
            self.text(p.value, "metadata value")
        for o in model.opset_import:
            self.text(o.domain, "opset domain")
        self.opsets = _opsets(model.opset_import)
        self.graph(model.graph, 0)
        for f in model.functions:
            self.text(f.name, "function name")
            # a function's body is read in its own opsets (the model's where it names none)
            self.nodes(f.node, 1, {**self.opsets, **_opsets(f.opset_import)}, f"function {_q(f.name)}")
        for t in model.training_info:
            self.graph(t.initialization, 1)
            self.graph(t.algorithm, 1)

    def fail(self, kind: type[ArchkitError], problem: str) -> NoReturn:
        raise kind(f"{self.origin}: {problem}")

    def text(self, s: str | bytes, what: str) -> None:
        if isinstance(s, bytes):  # protobuf hands back bytes for a string field that is not UTF-8
            self.fail(MalformedModelError, f"a {what} is not valid UTF-8: {s[:40]!r}")

    def graph(self, g: onnx.GraphProto, depth: int) -> None:
        if depth > MAX_SUBGRAPH_DEPTH:
            self.fail(ResourceError, f"subgraphs nested more than {MAX_SUBGRAPH_DEPTH} deep (graph {_q(g.name)})")
        self.text(g.name, "graph name")
        for t in g.initializer:
            self.tensor(t)
        for s in g.sparse_initializer:
            self.tensor(s.values)
            self.tensor(s.indices)
        for vis in (g.input, g.output, g.value_info):
            for vi in vis:
                self.value_info(vi)
        self.nodes(g.node, depth, self.opsets, f"subgraph {_q(g.name)}" if depth else "")

    def value_info(self, vi: onnx.ValueInfoProto) -> None:
        self.text(vi.name, "tensor name")
        t = vi.type
        if t.HasField("tensor_type"):
            for axis, d in enumerate(t.tensor_type.shape.dim):
                if d.dim_value < 0:
                    if d.dim_value != -1:
                        self.fail(MalformedModelError, f"tensor {_q(vi.name)} declares a negative dimension {d.dim_value}")
                    # Paddle2ONNX's dynamic dim: a free dim, named (an initializer's -1 stays an error)
                    d.Clear()
                    d.dim_param = f"{vi.name}:{axis}"
                    self.freed.append(d.dim_param)
                self.text(d.dim_param, "dimension name")

    def nodes(self, nodes: Iterable[onnx.NodeProto], depth: int, opsets: Mapping[str, int], where: str) -> None:
        """Each node against its operator's schema, and the tensors and graphs its attributes hold."""
        schemas: dict[tuple[str, str], _Schema | None] = {}  # (domain, op_type) → its schema in `opsets`
        position = -1
        for node in nodes:
            position += 1
            op_type, domain = node.op_type, node.domain
            key = (domain, op_type)
            if key in schemas:
                schema = schemas[key]
            else:
                self.text(op_type, "op type")
                self.text(domain, "op domain")
                d = "" if domain == "ai.onnx" else domain
                version = opsets.get(d)
                schema = schemas[key] = None if version is None else _schema(d, op_type, version)
            attributes = node.attribute
            if schema is not None:
                # the common case at a glance; on any doubt the methods below name the problem
                ins, outs = node.input, node.output
                (in_least, in_most), (out_least, out_most) = schema.inputs, schema.outputs
                if not (in_least <= len(ins) <= in_most and out_least <= len(outs) <= out_most) \
                        or "" in ins or "" in outs:
                    self.arity(node, schema, position, where)
                if not attributes:
                    if schema.required:
                        self.attributes(node, schema, position, where)
                    continue
                known = schema.attributes
                names = []
                doubt = False
                for a in attributes:
                    name, t = a.name, a.type
                    names.append(name)
                    if known.get(name) != t:
                        doubt = True
                    if t in _HOLDERS:
                        self.holder(a, depth)
                if doubt or len(set(names)) != len(names) or schema.required and \
                        any(r not in names for r in schema.required):
                    self.attributes(node, schema, position, where)
            elif attributes:
                for a in attributes:
                    if a.type in _HOLDERS:
                        self.holder(a, depth)
            if op_type == "Einsum" and domain in ("", "ai.onnx"):
                self.einsum(node, "Einsum" if schema is None else schema.op, position, where)

    def holder(self, a: onnx.AttributeProto, depth: int) -> None:
        """The tensors and graphs an attribute holds."""
        t = a.type
        if t == _A.TENSOR:
            self.tensor(a.t)
        elif t == _A.GRAPH:
            self.graph(a.g, depth + 1)
        elif t == _A.TENSORS:
            for x in a.tensors:
                self.tensor(x)
        elif t == _A.GRAPHS:
            for x in a.graphs:
                self.graph(x, depth + 1)
        elif t == _A.SPARSE_TENSOR:
            self.tensor(a.sparse_tensor.values)
            self.tensor(a.sparse_tensor.indices)
        elif t == _A.SPARSE_TENSORS:
            for x in a.sparse_tensors:
                self.tensor(x.values)
                self.tensor(x.indices)

    def arity(self, node: onnx.NodeProto, schema: _Schema, position: int, where: str) -> None:
        """As many inputs and outputs as the schema allows, each one it requires named."""
        for kind, names, (least, most), single in (("input", node.input, schema.inputs, schema.single_inputs),
                                                   ("output", node.output, schema.outputs, schema.single_outputs)):
            n = len(names)
            if not least <= n <= most:
                takes = f"{least}" if least == most else f"at least {least}" if most >= 2**31 - 1 else \
                    f"{least} to {most}"
                self.bad_node(node, schema.op, position, where, f"{n} {kind}{'s' if n != 1 else ''}, the operator "
                                                             f"takes {takes}")
            if "" in names:
                for i in single:
                    if i < n and not names[i]:
                        self.bad_node(node, schema.op, position, where, f"{kind} {i} is required but has no name")

    def attributes(self, node: onnx.NodeProto, schema: _Schema, position: int, where: str) -> None:
        """Every attribute known to the schema, of the type it says, none twice; none it requires missing."""
        known = schema.attributes
        names = set()
        for a in node.attribute:
            name, t = a.name, a.type
            self.text(name, "attribute name")
            if name in names:
                self.bad_node(node, schema.op, position, where, f"attribute {_q(name)} is given twice")
            names.add(name)
            want = known.get(name)
            if want is None:
                if not schema.unchecked and not name.startswith("__"):  # "__": implementation details (onnx)
                    self.bad_node(node, schema.op, position, where, f"unknown attribute {_q(name)}")
            elif t != want:
                self.bad_node(node, schema.op, position, where, f"attribute {_q(name)} "
                              + (f"has type {_attr_type(t)}" if t else "has no type") + f", the schema says {_attr_type(want)}")
        for name in schema.required:
            if name not in names:
                self.bad_node(node, schema.op, position, where, f"required attribute {_q(name)} is missing")

    def einsum(self, node: onnx.NodeProto, op: str, position: int, where: str) -> None:
        """An Einsum's equation in the operator's grammar, one term per input (onnx's own inference
        does not return on some that are not, such as a term with two ellipses)."""
        for a in node.attribute:
            if a.name == "equation" and a.type == _A.STRING:
                problem = _einsum_problem(a.s, len(node.input))
                if problem:
                    self.bad_node(node, op, position, where, f"equation {_q(a.s.decode('utf-8', 'replace'))} {problem}")

    def bad_node(self, node: onnx.NodeProto, op: str, position: int, where: str, problem: str) -> None:
        who = f"node {_q(node.name)}" if node.name else f"unnamed node {position}"
        self.fail(MalformedModelError, f"{who} ({op}){' in ' + where if where else ''}: {problem}")

    def tensor(self, t: onnx.TensorProto) -> None:
        name = t.name
        dims = t.dims
        n = math.prod(dims)
        if name.__class__ is not str or n > INT64_MAX or dims and min(dims) < 0:
            self.text(name, "tensor name")
            if min(dims) < 0:
                self.fail(MalformedModelError, f"tensor {_q(name)} has a negative dimension {min(dims)}")
            self.fail(MalformedModelError, f"tensor {_q(name)}: {list(dims)} elements overflow int64")
        bits = _BITS.get(t.data_type)
        if t.data_location == _EXTERNAL:
            self.external_data(t, name, None if bits is None else (n * bits + 7) // 8)
            return
        if t.HasField("raw_data"):
            if bits is not None and len(t.raw_data) != (n * bits + 7) // 8:
                self.fail(MalformedModelError, f"tensor {_q(name)} declares {list(dims)} {_dtype(t.data_type)} "
                                               f"({(n * bits + 7) // 8:,} bytes) but holds {len(t.raw_data):,} bytes")
            return
        typed = TYPED_FIELDS.get(t.data_type)
        if typed is None:
            return
        have = len(getattr(t, typed[0]))
        want = (n * typed[1] + typed[2] - 1) // typed[2]
        if have == 0 and want > 0:
            self.absent.append(name)
        elif have != want:
            self.fail(MalformedModelError, f"tensor {_q(name)} declares {list(dims)} {_dtype(t.data_type)} "
                                           f"({want:,} {typed[0]} values) but holds {have:,}")

    def external_data(self, t: onnx.TensorProto, name: str, need: int | None) -> None:
        entries: dict[str, str] = {}
        for e in t.external_data:
            key, value = e.key, e.value
            self.text(key, "external data key")
            self.text(value, "external data value")
            if key not in _EXTERNAL_KEYS:
                self.fail(UnsafeModelError, f"tensor {_q(name)}: unknown external data key {_q(key)}")
            if key in entries:
                self.fail(UnsafeModelError, f"tensor {_q(name)}: external data key {_q(key)} given twice")
            entries[key] = value
        location = entries.get("location")
        if not location:
            self.fail(MalformedModelError, f"tensor {_q(name)}: external data without a location")
        offset = self._integer(entries.get("offset", "0"), name, "offset")
        length = self._integer(entries["length"], name, "length") if "length" in entries else None
        if need is not None and length is not None and length != need:
            self.fail(MalformedModelError, f"tensor {_q(name)} declares {list(t.dims)} {_dtype(t.data_type)} "
                                           f"({need:,} bytes) but its external data length is {length:,}")
        if self.folder is None:
            self.fail(UnsafeModelError, f"tensor {_q(name)}: external data in a model read from memory")
        st = self._file(location, name)
        if st is None:
            self.external.append(ExternalRef(name, location, offset, need if need is not None else length or 0, True))
            return
        size = need if need is not None else length
        if length is None and need is not None and st.st_size - offset != need:
            self.fail(MalformedModelError, f"tensor {_q(name)} needs {need:,} bytes at offset {offset:,} of "
                                           f"{_q(location)}, which holds {st.st_size:,} (no length given)")
        end = offset + (size if size is not None else 0)
        if end > st.st_size:
            self.fail(MalformedModelError, f"tensor {_q(name)}: external data {_q(location)} offset {offset:,} + "
                                           f"length {size:,} is beyond the file's {st.st_size:,} bytes")
        self.external.append(ExternalRef(name, location, offset, size or 0, False))

    def _integer(self, text: str, name: str, key: str) -> int:
        if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > INT64_MAX:
            self.fail(MalformedModelError, f"tensor {_q(name)}: external data {key} {_q(text)} is not a "
                                           "non-negative integer")
        return int(text)

    def _file(self, location: str, name: str) -> os.stat_result | None:
        """lstat the external data file after checking its location; None when it is missing."""
        if location in self.files:
            return self.files[location]
        def unsafe(why: str) -> NoReturn:
            self.fail(UnsafeModelError, f"tensor {_q(name)}: external data location {_q(location)} {why}")

        if "\0" in location:
            unsafe("contains a NUL byte")
        if location.startswith(("/", "\\")):
            unsafe("is absolute" if not location.startswith(("//", "\\\\")) else "is a UNC path")
        if re.match(r"[A-Za-z]:", location):
            unsafe("has a drive letter")
        parts = re.split(r"[/\\]", location)  # a backslash separates folders on Windows, where the file may go
        if ".." in parts:
            unsafe("leaves the model's folder (..)")
        parts = [p for p in parts if p not in ("", ".")]
        if not parts:
            unsafe("names no file")
        root = self.root
        assert root is not None  # external data needs a folder (external_data refuses it without one)
        path = os.path.join(root, *parts)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            unsafe("resolves outside the model's folder")
        # No symlink anywhere below the model's folder, and the last part a regular file, alone.
        here = root
        st: os.stat_result | None = None
        for i, part in enumerate(parts):
            here = os.path.join(here, part)
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                self.files[location] = None
                return None
            except OSError as e:
                self.fail(InputError, f"tensor {_q(name)}: external data {_q(location)}: cannot access ({e.strerror})")
            if stat.S_ISLNK(st.st_mode):
                unsafe(f"goes through a symbolic link ({_q('/'.join(parts[:i + 1]))})")
            if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
                unsafe(f"goes through {_q('/'.join(parts[:i + 1]))}, which is not a folder")
        assert st is not None  # parts is not empty
        if not stat.S_ISREG(st.st_mode):
            unsafe("is not a regular file")
        if st.st_nlink != 1:
            unsafe(f"is a file with {st.st_nlink} hard links (it may be a link to a file elsewhere)")
        self.files[location] = st
        return st


_EINSUM_TERM = re.compile(r"[A-Za-z]*(\.\.\.)?[A-Za-z]*")


def _einsum_problem(equation: bytes, inputs: int) -> str | None:
    """What makes an Einsum equation invalid (None: nothing): letters, at most one `...` per
    term, as many terms left of `->` as the op has inputs."""
    text = equation.replace(b" ", b"").decode("ascii", "replace")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    for term in terms + ([rhs] if arrow else []):
        if not _EINSUM_TERM.fullmatch(term):
            return f"has a term {term!r} that is not letters with at most one '...'"
    if len(terms) != inputs:
        return f"has {len(terms)} input terms for {inputs} inputs"
    return None


def _attr_type(t: int) -> str:
    try:
        return _A.AttributeType.Name(t)
    except ValueError:
        return str(t)


def _dtype(dt: int) -> str:
    try:
        return _T.DataType.Name(dt).lower()
    except ValueError:
        return f"type {dt}"


def _q(s: str, limit: int = 80) -> str:
    """A name quoted for a one-line message: control characters escaped, long names cut."""
    r = repr(s)
    return r if len(r) <= limit else r[:limit - 5] + "…" + r[-4:]


def _few(items: Iterable[str], n: int = 3) -> str:
    items = list(items)
    shown = ", ".join(_q(x) for x in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
