"""Trace file format v2 (v1 files still load): one zip (readable by ``np.load(path, allow_pickle=False)``) holding

- ``header.npy``: uint8 array of UTF-8 JSON (run metadata and the tensor / op / saved tables),
- ``masks/<id>.npy``: uint8 array, ``np.packbits(mask.ravel(), bitorder="little")`` of tensor ``id``.

Tensors are stored once and referenced by ops, so the weight mask used by forward and dgrad is on
disk once. Writing streams (one member at a time) and is atomic (temp file + os.replace). Loading
validates every table eagerly and reads masks lazily, one tensor at a time, so memory stays
proportional to the largest op. User-facing spec: docs/trace-format.md (keep the two in step; any
change to what is written bumps VERSION).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import reprlib
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from accelsim.errors import AccelsimError, TraceError
from accelsim.sim import lowering
from accelsim.util.atomic import default_file_mode, deferred_signals, make_temp
from accelsim.util.files import NotRegularFileError, display_path, open_regular

SCHEMA = "accelsim-trace"
VERSION = 2  # what the writer writes
VERSIONS = (1, 2)  # what the reader accepts; v1 files load unchanged
# v2 adds "bwd"/"optimizer" (vector ops only), the "vector" kind and params.attention / recompute
PASSES = lowering.TRACE_PASSES
V1_PASSES = lowering.PASSES
KINDS = tuple(lowering.KINDS)  # the lowering registry's op kinds (accelsim/sim/lowering.py)
ROLES = ("weight", "activation", "grad_output", "other")
CATEGORIES = ("activation", "weight", "other")

# Bytes per element of every dtype a trace may name (torch dtype names without "torch.").
DTYPE_BYTES = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
    "complex128": 16, "complex64": 8, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1,
    "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1,
}

# Operand names per (kind, pass), in GEMM order (A, B), from the lowering registry; see the table
# in docs/trace-format.md.
OPERANDS = {(k, p): entry.operands[p] for k, entry in lowering.KINDS.items() for p in entry.operands}
_CONV_PARAM_KEYS = lowering.CONV_PARAM_KEYS

HEADER_KEYS = ("schema", "version", "recorder", "torch", "created", "model", "method", "dtype",
               "batch_size", "steps", "meta", "tensors", "ops", "saved")
_TENSOR_KEYS = ("id", "shape", "dtype", "role", "nnz", "layer")
_OP_KEYS = ("id", "step", "seq", "pass", "kind", "layer", "module_type", "aten", "operands",
            "out_shape", "params")
_SAVED_KEYS = ("id", "step", "layer", "shape", "dtype", "nnz", "category", "saved_by", "storage",
               "tensor", "t_pack", "t_unpack")

# Zip member timestamps are fixed so that the same recording gives the same bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(packed: np.ndarray) -> int:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return int(np.bitwise_count(packed).sum(dtype=np.int64))
    return int(_POPCOUNT8[packed].sum(dtype=np.int64))


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class TensorRecord:
    """One stored tensor: its shape, dtype, role and the number of non-zeros of its mask."""

    id: int
    shape: tuple[int, ...]
    dtype: str
    role: str  # "weight" | "activation" | "grad_output" | "other"
    nnz: int
    layer: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def density(self) -> float:
        return self.nnz / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class Operand:
    """An op's use of a stored tensor; ``transposed``: the use swaps the tensor's last two dims."""

    name: str
    tensor: int
    transposed: bool = False


@dataclass(frozen=True)
class OpRecord:
    """One conv / matmul / bmm of one pass, with its operands as the op used them."""

    id: int
    step: int
    seq: int
    pass_: str
    kind: str
    layer: str
    module_type: str
    aten: str
    operands: tuple[Operand, ...]
    out_shape: tuple[int, ...]
    params: dict = field(default_factory=dict, hash=False)

    def operand(self, name: str) -> Operand:
        for o in self.operands:
            if o.name == name:
                return o
        raise KeyError(f"op {self.id} ({self.kind} {self.pass_}) has no operand {name!r}")


@dataclass(frozen=True)
class SavedRecord:
    """A tensor autograd kept from forward for backward (one pack of saved_tensors_hooks)."""

    id: int
    step: int
    layer: str
    shape: tuple[int, ...]
    dtype: str
    nnz: int
    category: str  # "activation" | "weight" | "other"
    saved_by: str
    storage: int  # equal for records that share storage + offset + size: count those bytes once
    tensor: int | None  # stored mask (activations and weights), else None
    t_pack: int
    t_unpack: int | None

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Dense bytes of this tensor."""
        return self.numel * DTYPE_BYTES[self.dtype]


# --------------------------------------------------------------------------------------------
# Validation helpers shared by the writer and the reader (one-line TraceError naming the file).


_MAX_DIMS = 64  # more than any op kind uses; bounds the work of math.prod on hostile shapes
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _brief(v: Any) -> str:
    """repr() of a user value, bounded in length and nesting depth (never the whole value)."""
    return _REPR.repr(v)


_MAX_MESSAGE = 400


def _cut(msg: str) -> str:
    """A message cut to _MAX_MESSAGE characters around '...': a user value (a 100 KB layer name)
    that reached it whole must not make the one-line error unbounded."""
    if len(msg) <= _MAX_MESSAGE:
        return msg
    half = _MAX_MESSAGE // 2 - 2
    return f"{msg[:half]}...{msg[-half:]}"


class _Check:
    def __init__(self, path: str):
        self.path = path

    def fail(self, msg: str) -> TraceError:
        return TraceError(f"{self.path}: {_cut(msg)}")

    def int_(self, v: Any, what: str, lo: int | None = 0) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise self.fail(f"{what} must be an integer, got {_brief(v)}")
        if lo is not None and v < lo:
            raise self.fail(f"{what} must be >= {lo}, got {v}")
        return int(v)

    def str_(self, v: Any, what: str, choices: Iterable[str] | None = None) -> str:
        if not isinstance(v, str):
            raise self.fail(f"{what} must be a string, got {_brief(v)}")
        if choices is not None and v not in choices:
            raise self.fail(f"unknown {what} {_brief(v)} (expected one of {', '.join(choices)})")
        return v

    def shape(self, v: Any, what: str, ndim: int | None = None) -> tuple[int, ...]:
        if not isinstance(v, (list, tuple)):
            raise self.fail(f"{what} must be a list of integers, got {_brief(v)}")
        if len(v) > _MAX_DIMS:
            raise self.fail(f"{what} has {len(v)} dims (at most {_MAX_DIMS})")
        s = tuple(self.int_(x, what) for x in v)
        if ndim is not None and len(s) != ndim:
            raise self.fail(f"{what} {_brief(list(s))} must have {ndim} dims")
        return s

    def keys(self, d: Any, keys: tuple[str, ...], what: str, optional: tuple[str, ...] = ()) -> dict:
        if not isinstance(d, dict):
            raise self.fail(f"{what} must be a JSON object")
        missing = [k for k in keys if k not in d and k not in optional]
        if missing:
            raise self.fail(f"{what} lacks {', '.join(missing)}")
        extra = sorted(set(d) - set(keys))
        if extra:
            raise self.fail(f"{what} has unknown field(s) {', '.join(extra)}")
        return d


def _parse_tensor(c: _Check, i: int, d: Any) -> TensorRecord:
    c.keys(d, _TENSOR_KEYS, f"tensor record #{i}")
    tid = c.int_(d["id"], f"tensor record #{i} id")
    if tid != i:
        raise c.fail(f"tensor record #{i} has id {tid} (ids must be 0, 1, 2, ... in order)")
    shape = c.shape(d["shape"], f"tensor {tid} shape")
    nnz = c.int_(d["nnz"], f"tensor {tid} nnz")
    if nnz > math.prod(shape):
        raise c.fail(f"tensor {tid} has nnz={nnz} > numel={math.prod(shape)} of shape {list(shape)}")
    limit = max_tensor_elements()
    if math.prod(shape) > limit:
        raise c.fail(f"tensor {tid} of shape {list(shape)[:8]} has {math.prod(shape):.3g} elements, more than the "
                     f"limit of {limit} (its mask is inflated to one byte per element when read; set "
                     f"ACCELSIM_MAX_TENSOR_ELEMENTS to raise it)")
    return TensorRecord(id=tid, shape=shape, dtype=c.str_(d["dtype"], f"tensor {tid} dtype", DTYPE_BYTES),
                        role=c.str_(d["role"], f"tensor {tid} role", ROLES), nnz=nnz,
                        layer=c.str_(d["layer"], f"tensor {tid} layer"))


def _used_shape(t: TensorRecord, transposed: bool) -> tuple[int, ...]:
    s = t.shape
    return (*s[:-2], s[-1], s[-2]) if transposed else s


def _parse_op(c: _Check, i: int, d: Any, tensors: list[TensorRecord], version: int = VERSION) -> OpRecord:
    c.keys(d, _OP_KEYS, f"op record #{i}")
    oid = c.int_(d["id"], f"op record #{i} id")
    if oid != i:
        raise c.fail(f"op record #{i} has id {oid} (ids must be 0, 1, 2, ... in order)")
    kind = c.str_(d["kind"], f"op {oid} kind", tuple(lowering.KINDS))
    pass_ = c.str_(d["pass"], f"op {oid} pass", PASSES if version >= 2 else V1_PASSES)
    layer = c.str_(d["layer"], f"op {oid} layer")
    where = f"op {oid} ({layer} {kind} {pass_})"
    if version < 2 and kind == "vector":
        raise c.fail(f"{where}: vector ops need trace version 2 (the file says version {version})")
    if not isinstance(d["operands"], list):
        raise c.fail(f"{where}: operands must be a list")
    ops: list[Operand] = []
    for j, od in enumerate(d["operands"]):
        c.keys(od, ("name", "tensor", "transposed"), f"{where} operand #{j}", optional=("transposed",))
        tid = c.int_(od["tensor"], f"{where} operand #{j} tensor")
        if tid >= len(tensors):
            raise c.fail(f"{where}: operand {od.get('name')!r} refers to tensor {tid}, which does not exist "
                         f"({len(tensors)} tensors)")
        tr = od.get("transposed", False)
        if not isinstance(tr, bool):
            raise c.fail(f"{where}: operand #{j} transposed must be true or false")
        if tr and len(tensors[tid].shape) < 2:
            raise c.fail(f"{where}: operand #{j} is transposed but tensor {tid} has fewer than 2 dims")
        ops.append(Operand(name=c.str_(od["name"], f"{where} operand #{j} name"), tensor=tid, transposed=tr))
    names = tuple(o.name for o in ops)
    want = lowering.KINDS[kind].operands.get(pass_)
    if want is None:
        raise c.fail(f"{where}: a {kind} op has no {pass_} pass")
    if sorted(names) != sorted(want):
        raise c.fail(f"{where}: operands are {[str(x)[:40] for x in names][:8]} but a {kind} {pass_} op has "
                     f"{list(want)}")
    params = d["params"]
    if not isinstance(params, dict):
        raise c.fail(f"{where}: params must be a JSON object")
    if version < 2:
        v2 = [k for k in lowering.COMMON_PARAMS if k in params]
        if v2:
            raise c.fail(f"{where}: params field {v2[0]!r} needs trace version 2 (the file says version {version})")
    op = OpRecord(id=oid, step=c.int_(d["step"], f"{where} step"), seq=c.int_(d["seq"], f"{where} seq"),
                  pass_=pass_, kind=kind, layer=layer, module_type=c.str_(d["module_type"], f"{where} module_type"),
                  aten=c.str_(d["aten"], f"{where} aten"), operands=tuple(ops),
                  out_shape=c.shape(d["out_shape"], f"{where} out_shape"), params=params)
    used = {o.name: _used_shape(tensors[o.tensor], o.transposed) for o in ops}
    try:  # the kind's params/shape checks and size limits live in the lowering registry
        lowering.validate(kind, pass_, params, used, op.out_shape)
    except AccelsimError as e:
        raise c.fail(f"{where}: {e}") from None
    return op


def _parse_saved(c: _Check, i: int, d: Any, tensors: list[TensorRecord]) -> SavedRecord:
    c.keys(d, _SAVED_KEYS, f"saved record #{i}")
    sid = c.int_(d["id"], f"saved record #{i} id")
    if sid != i:
        raise c.fail(f"saved record #{i} has id {sid} (ids must be 0, 1, 2, ... in order)")
    where = f"saved record {sid}"
    shape = c.shape(d["shape"], f"{where} shape")
    nnz = c.int_(d["nnz"], f"{where} nnz")
    if nnz > math.prod(shape):
        raise c.fail(f"{where} has nnz={nnz} > numel={math.prod(shape)}")
    tid = d["tensor"]
    if tid is not None:
        tid = c.int_(tid, f"{where} tensor")
        if tid >= len(tensors):
            raise c.fail(f"{where} refers to tensor {tid}, which does not exist ({len(tensors)} tensors)")
        t = tensors[tid]
        if t.shape != shape or t.nnz != nnz:
            raise c.fail(f"{where} (shape {list(shape)}, nnz={nnz}) disagrees with tensor {tid} "
                         f"(shape {list(t.shape)}, nnz={t.nnz})")
    t_pack = c.int_(d["t_pack"], f"{where} t_pack")
    t_unpack = d["t_unpack"]
    if t_unpack is not None:
        t_unpack = c.int_(t_unpack, f"{where} t_unpack")
        if t_unpack < t_pack:
            raise c.fail(f"{where} is unpacked (t={t_unpack}) before it is packed (t={t_pack})")
    return SavedRecord(id=sid, step=c.int_(d["step"], f"{where} step"), layer=c.str_(d["layer"], f"{where} layer"),
                       shape=shape, dtype=c.str_(d["dtype"], f"{where} dtype", DTYPE_BYTES), nnz=nnz,
                       category=c.str_(d["category"], f"{where} category", CATEGORIES),
                       saved_by=c.str_(d["saved_by"], f"{where} saved_by"),
                       storage=c.int_(d["storage"], f"{where} storage"), tensor=tid, t_pack=t_pack,
                       t_unpack=t_unpack)


def _check_header_fields(c: _Check, h: dict) -> list[int]:
    """Type checks of the run metadata; returns the list of recorded steps."""
    for key in ("recorder", "created"):
        c.str_(h[key], key)
    for key in ("torch", "model", "dtype"):
        if h[key] is not None:
            c.str_(h[key], key)
    if h["batch_size"] is not None:
        c.int_(h["batch_size"], "batch_size", 1)
    m = c.keys(h["method"], ("name", "params"), "method")
    if m["name"] is not None:
        c.str_(m["name"], "method name")
    if not isinstance(m["params"], dict):
        raise c.fail("method params must be a JSON object")
    if not isinstance(h["meta"], dict):
        raise c.fail("meta must be a JSON object")
    steps = h["steps"]
    if not isinstance(steps, list):
        raise c.fail("steps must be a list of integers")
    steps = [c.int_(s, "step") for s in steps]
    if len(set(steps)) != len(steps):
        raise c.fail(f"steps {steps} has duplicates")
    return steps


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (tuple, np.ndarray)):
        return list(o)
    raise TypeError(f"cannot store {type(o).__name__} in a trace header")


# --------------------------------------------------------------------------------------------
# Writer

_TRIAL_BYTES = 32768


def _worth_deflating(arr: np.ndarray) -> bool:
    """Deflate a member unless a trial on its first 32 KiB saves < 10%: masks near 50% density are
    close to random bits (deflate level 1 measured 1.000 of the input at density 0.5, 0.90 at 0.3,
    while costing ~12 ms per 250 KB); dense, very sparse or structured masks shrink a lot."""
    if arr.nbytes <= _TRIAL_BYTES:
        return True
    head = arr.reshape(-1).view(np.uint8)[:_TRIAL_BYTES].tobytes()
    return len(zlib.compress(head, 1)) < 0.9 * len(head)



# The one packed-mask layout (docs/trace-format.md "Mask bit order"): bytes are
# np.packbits(mask.ravel(), bitorder="little"); words are those bytes zero padded to a multiple of 8
# and read little-endian, so bit i is (w[i >> 6] >> (i & 63)) & 1 on any host. Used by Trace.packed
# and by accelsim.sim.workload (pack_mask / Workload.mask) for hand-built masks.

def bytes_to_words(packed: np.ndarray) -> np.ndarray:
    """Little-bit-order packed bytes -> uint64 words (zero padded)."""
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    buf = np.zeros(((packed.size + 7) // 8) * 8, dtype=np.uint8)
    buf[: packed.size] = packed
    return buf.view("<u8").astype(np.uint64, copy=False)


def pack_words(mask: np.ndarray) -> np.ndarray:
    """Bool array -> uint64 words of its C-order flattening."""
    flat = np.ascontiguousarray(mask, dtype=bool).reshape(-1)
    return bytes_to_words(np.packbits(flat, bitorder="little"))


def unpack_words(words: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint64 words -> bool array of `shape` (inverse of pack_words)."""
    numel = int(np.prod(shape, dtype=np.int64))
    le = np.ascontiguousarray(words, dtype=np.uint64).astype("<u8", copy=False)
    return np.unpackbits(le.view(np.uint8), count=numel, bitorder="little").view(bool).reshape(shape)


class TraceWriter:
    """Streams a trace to ``path``: masks are written as they come, the header on :meth:`close`.

    The file is built under a temporary name in the same directory and moved into place by
    ``os.replace`` only when complete, so an interrupted recording leaves no file (or the old one).
    Use as a context manager: an exception inside the block aborts and removes the temp file.
    """

    def __init__(self, path: str | os.PathLike, header: dict | None = None, *, compresslevel: int = 1,
                 version: int = VERSION):
        if not isinstance(path, (str, os.PathLike)):
            raise TraceError(f"trace output must be a file path (str or os.PathLike), got {type(path).__name__}")
        self.path = Path(path)
        if self.path.is_dir():
            raise TraceError(f"cannot write trace {self.path}: is a directory, expected a file path")
        header = dict(header or {})
        allowed = {"torch", "model", "method", "dtype", "batch_size", "steps", "meta", "created", "recorder"}
        unknown = sorted(set(header) - allowed)
        if unknown:
            raise ValueError(f"unknown trace header field(s): {', '.join(unknown)}")
        if version not in VERSIONS or isinstance(version, bool):
            raise ValueError(f"trace version must be one of {VERSIONS}, got {str(version)[:20]}")
        self._version = version  # 1: the v1 format exactly (v2-only records refused)
        self._header = header
        self._check = _Check(str(self.path))
        self._level = compresslevel
        self._tensors: list[TensorRecord] = []
        self._tensor_json: list[dict] = []
        self._ops: list[dict] = []
        self._saved: list[dict] = []
        self._dedup: dict[tuple, int] = {}
        self._done = False
        tmp = None
        try:
            with deferred_signals():  # Ctrl-C/SIGTERM wait until the temp file is known (removed below)
                fd, tmp = make_temp(self.path)
                self._fh = os.fdopen(fd, "w+b")
                self._tmp = tmp
            self._zip = zipfile.ZipFile(self._fh, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        except BaseException as e:
            if tmp is not None:
                fh = getattr(self, "_fh", None)
                if fh is not None:
                    fh.close()
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise TraceError(f"cannot write trace {display_path(self.path)}: {e.strerror or _short(e)}") from None
            raise

    # -- members
    def _write_member(self, name: str, arr: np.ndarray) -> None:
        zi = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
        zi.compress_type = zipfile.ZIP_DEFLATED if _worth_deflating(arr) else zipfile.ZIP_STORED
        zi._compresslevel = self._level  # ZipFile.open(ZipInfo) takes the level from the ZipInfo
        zi.external_attr = 0o644 << 16
        big = arr.nbytes > (1 << 31) - (1 << 20)
        try:
            with self._zip.open(zi, "w", force_zip64=big) as f:
                np.lib.format.write_array(f, arr, allow_pickle=False)
        except OSError as e:  # a full disk (ENOSPC), a quota, an I/O error: drop the temp file, one line
            self.abort()
            raise TraceError(f"cannot write trace {display_path(self.path)}: {e.strerror or _short(e)}") from None

    def add_packed(self, packed: np.ndarray, shape: tuple[int, ...], *, dtype: str, role: str, layer: str,
                   nnz: int | None = None) -> int:
        """Store an already packed mask (``np.packbits(mask.ravel(), bitorder="little")``); dedups."""
        shape = tuple(int(x) for x in shape)
        numel = math.prod(shape)
        packed = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
        if packed.size != (numel + 7) // 8:
            raise ValueError(f"packed mask of {packed.size} bytes does not fit shape {shape}")
        if numel % 8 and packed[-1] >> (numel % 8):
            raise ValueError(f"packed mask of shape {shape} has bits set beyond its {numel} elements")
        if nnz is None:
            nnz = _popcount(packed)
        key = (shape, role, hashlib.blake2b(packed.data, digest_size=20).digest())
        tid = self._dedup.get(key)
        if tid is not None:
            return tid
        tid = len(self._tensors)
        rec = TensorRecord(id=tid, shape=shape, dtype=str(dtype), role=role, nnz=int(nnz), layer=str(layer))
        d = {"id": tid, "shape": list(shape), "dtype": rec.dtype, "role": role, "nnz": rec.nnz, "layer": rec.layer}
        _parse_tensor(self._check, tid, d)  # same rules as the reader: fail at write, not at load
        self._write_member(f"masks/{tid}.npy", packed)
        self._tensors.append(rec)
        self._tensor_json.append(d)
        self._dedup[key] = tid
        return tid

    def add_tensor(self, mask: np.ndarray, *, dtype: str, role: str, layer: str) -> int:
        """Store the non-zero mask of a tensor once; identical (mask, shape, role) return the same id."""
        mask = np.asarray(mask, dtype=bool)
        packed = np.packbits(mask, axis=None, bitorder="little")
        return self.add_packed(packed, mask.shape, dtype=dtype, role=role, layer=layer)

    @property
    def tensors(self) -> list[TensorRecord]:
        return self._tensors

    def add_op(self, **fields: Any) -> int:
        """Append an op record (fields of :class:`OpRecord`; ``pass_`` or ``pass``; no ``id``)."""
        d = dict(fields)
        if "pass_" in d:
            d["pass"] = d.pop("pass_")
        d["id"] = len(self._ops)
        d.setdefault("params", {})
        d["operands"] = [
            {"name": o.name, "tensor": int(o.tensor), "transposed": bool(o.transposed)} if isinstance(o, Operand)
            else dict(o) for o in d.get("operands", ())]
        d = json.loads(json.dumps(d, default=_json_default))  # plain JSON types only
        _parse_op(self._check, d["id"], d, self._tensors, self._version)
        self._ops.append(d)
        return d["id"]

    def add_vector_op(self, *, step: int, seq: int, pass_: str, layer: str, module_type: str, aten: str,
                      params: dict) -> int:
        """Append a vector (non-GEMM) op record: the recorder's fast path (one per kernel of a step), with
        the checks of its kind (lowering registry) but without add_op's JSON round trip; every value
        must already be a plain int / str / bool / None."""
        if self._version < 2:
            raise self._check.fail("vector ops need trace version 2")
        if pass_ not in lowering.VECTOR_PASSES:
            raise self._check.fail(f"vector op pass {_brief(pass_)} is not one of {', '.join(lowering.VECTOR_PASSES)}")
        try:
            geo = lowering.KINDS["vector"].check(lowering.split_params("vector", params), {}, pass_)
        except AccelsimError as e:
            raise self._check.fail(f"op {len(self._ops)} ({_brief(layer)} vector {pass_}): {e}") from None
        d = {"id": len(self._ops), "step": int(step), "seq": int(seq), "pass": pass_, "kind": "vector",
             "layer": str(layer), "module_type": str(module_type), "aten": str(aten), "operands": [],
             "out_shape": [geo.elements], "params": dict(params)}
        self._ops.append(d)
        return d["id"]

    def add_saved(self, **fields: Any) -> int:
        """Append a saved-for-backward record (fields of :class:`SavedRecord`, no ``id``)."""
        d = dict(fields)
        d["id"] = len(self._saved)
        d = json.loads(json.dumps(d, default=_json_default))
        _parse_saved(self._check, d["id"], d, self._tensors)
        self._saved.append(d)
        return d["id"]

    # -- finish
    def close(self) -> Path:
        """Write the header and move the file into place. Returns the path."""
        if self._done:
            return self.path
        try:
            h = self._header
            from accelsim import __version__

            epoch = os.environ.get("SOURCE_DATE_EPOCH")  # reproducible-builds convention
            now = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
            steps = h.get("steps")
            if steps is None:
                steps = sorted({d["step"] for d in self._ops} | {d["step"] for d in self._saved})
            header = {
                "schema": SCHEMA, "version": self._version,
                "recorder": h.get("recorder", f"accelsim {__version__}"),
                "torch": h.get("torch"),
                "created": h.get("created", now.isoformat(timespec="seconds")),
                "model": h.get("model"),
                "method": h.get("method", {"name": None, "params": {}}),
                "dtype": h.get("dtype"), "batch_size": h.get("batch_size"),
                "steps": list(steps), "meta": h.get("meta", {}),
                "tensors": self._tensor_json, "ops": self._ops, "saved": self._saved,
            }
            text = json.dumps(header, default=_json_default, separators=(",", ":"))
            h2 = json.loads(text)
            steps = _check_header_fields(self._check, h2)
            bad = [d["step"] for d in self._ops + self._saved if d["step"] not in steps]
            if bad:
                raise self._check.fail(f"records of step {bad[0]} but the header lists steps {steps}")
            self._write_member("header.npy", np.frombuffer(text.encode("utf-8"), dtype=np.uint8))
            self._zip.close()
            self._fh.flush()
            os.fsync(self._fh.fileno())
            os.fchmod(self._fh.fileno(), default_file_mode())  # not mkstemp's 0600
            self._fh.close()
            os.replace(self._tmp, self.path)
            self._done = True
        except OSError as e:
            self.abort()
            raise TraceError(f"cannot write trace {display_path(self.path)}: {e.strerror or _short(e)}") from None
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Drop everything written so far: no file is left behind."""
        if self._done:
            return
        self._done = True
        for closer in (self._zip.close, self._fh.close):
            try:
                closer()
            except Exception:
                pass
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --------------------------------------------------------------------------------------------
# Reader

# What a damaged zip can raise while reading (CRC mismatch is BadZipFile; deflate errors zlib.error).
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError,
                NotImplementedError, RuntimeError, OverflowError)


# The header np.save writes for a 1-D uint8 array (format 1.0), matched exactly so that a mask member
# is parsed without ast.literal_eval; any other header goes through np.lib.format's parser.
_NPY_U8_1D = re.compile(rb"\{'descr': '\|u1', 'fortran_order': False, 'shape': \(([0-9]{1,19}),\), \} *\n")


def _npy_uint8(data: bytes) -> np.ndarray:
    """The 1-D uint8 array of an .npy member, checked before anything is allocated (ValueError if not)."""
    if data[:8] == b"\x93NUMPY\x01\x00" and len(data) >= 10:
        start = 10 + int.from_bytes(data[8:10], "little")
        fast = _NPY_U8_1D.fullmatch(data, 10, start) if start <= len(data) else None
        if fast is not None:
            n = int(fast.group(1))
            if len(data) - start != n:
                raise ValueError(f"holds {len(data) - start} bytes of data but its header says {n}")
            return np.frombuffer(data, dtype=np.uint8, count=n, offset=start)
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype != np.uint8 or len(shape) != 1:
        raise ValueError(f"is {dtype} with {len(shape)} dims, expected 1-D uint8")
    start = f.tell()
    if len(data) - start != shape[0]:
        raise ValueError(f"holds {len(data) - start} bytes of data but its header says {shape[0]}")
    return np.frombuffer(data, dtype=np.uint8, count=shape[0], offset=start)


# Inflation limits, checked on the sizes the zip declares BEFORE anything is inflated, and again on
# the bytes actually read (a hand-made zip can declare anything). A mask member holds an .npy
# header (numpy writes <= 10000 bytes: np.lib.format's default max_header_size) plus exactly
# ceil(numel / 8) bytes. The header's JSON is ~1.2 KB per op (the shipped ResNet-50 trace: 191 KB
# for 160 ops), so 32 MiB is ~25,000 ops; json.loads of a header holds several times its size.
_NPY_HEADER_MAX = 10_000
MAX_HEADER_BYTES = 32 << 20
# A tensor's mask is inflated to one bool per element when an op reads it (Trace.mask), so a tensor
# of more elements than this is refused at load rather than exhausting memory; the environment
# variable ACCELSIM_MAX_TENSOR_ELEMENTS raises it for machines with the memory for larger tensors.
MAX_TENSOR_ELEMENTS = 1 << 28
_CHUNK = 1 << 20


def max_tensor_elements() -> int:
    """The largest tensor (elements) a trace may declare: MAX_TENSOR_ELEMENTS unless the
    environment variable ACCELSIM_MAX_TENSOR_ELEMENTS says otherwise."""
    text = os.environ.get("ACCELSIM_MAX_TENSOR_ELEMENTS")
    if text is None:
        return MAX_TENSOR_ELEMENTS
    try:
        v = int(text)
        if v < 1:
            raise ValueError
    except ValueError:
        raise TraceError(f"ACCELSIM_MAX_TENSOR_ELEMENTS={text[:40]!r}: expected a positive integer") from None
    return v


def _read_uint8_member(zf: zipfile.ZipFile, name: str, what: str, fail, *, payload: int | None = None,
                       limit: int = MAX_HEADER_BYTES) -> np.ndarray:
    """Read one .npy member (its CRC-32 is checked by zipfile) as a 1-D uint8 array; any damage
    becomes ``fail(message)`` naming ``what`` (e.g. "header", "mask of tensor 3").

    ``payload``: the exact data bytes the member must hold (a mask: from its tensor's shape); else
    at most ``limit``. The size the zip declares is checked before inflating, and at most that many
    bytes (plus one, to notice a lie) are ever read."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise fail(f"{what} is missing") from None
    most = payload + _NPY_HEADER_MAX if payload is not None else limit
    if info.file_size > most:
        need = (f"its shape needs {payload} bytes of data" if payload is not None
                else f"the limit is {limit} bytes")
        raise fail(f"{what} declares {info.file_size} bytes uncompressed but {need}; refused before inflating")
    if info.is_dir():
        raise fail(f"{what} is a directory entry, not an .npy member")
    chunks: list[bytes] = []
    got = 0
    try:
        with zf.open(info) as f:
            while True:
                b = f.read(min(_CHUNK, most + 1 - got))
                if not b:
                    break
                chunks.append(b)
                got += len(b)
                if got > most:
                    raise fail(f"{what} inflates to more than the {info.file_size} bytes it declares")
    except _READ_ERRORS as e:
        raise fail(f"{what} is unreadable (corrupt file?): {_short(e)}") from None
    data = b"".join(chunks)
    try:
        return _npy_uint8(data)
    except ValueError as e:
        raise fail(f"{what} {_short(e)}") from None


def _short(e: BaseException, n: int = 160) -> str:
    """An exception's text cut to ``n`` characters (messages never carry an unbounded value)."""
    text = " ".join(str(e).split())
    return text if len(text) <= n else text[: n - 3] + "..."


class Trace:
    """A loaded trace: metadata tables in memory, masks read on demand (nothing big is cached)."""

    def __init__(self, path: Path, zf: zipfile.ZipFile, header: dict, tensors: list[TensorRecord],
                 ops: list[OpRecord], saved: list[SavedRecord]):
        self.path = path
        self._zip = zf
        self.header = header
        self.tensors = tensors
        self.ops = ops
        self.saved = saved

    @property
    def steps(self) -> list[int]:
        return list(self.header["steps"])

    def tensor(self, tensor_id: int) -> TensorRecord:
        return self.tensors[tensor_id]

    def _fail(self, msg: str) -> TraceError:
        return TraceError(f"{display_path(self.path)}: {_cut(msg)}")

    def _read_bytes(self, tensor_id: int) -> np.ndarray:
        """The validated packed mask (uint8, ceil(numel/8) bytes) of one tensor."""
        if not 0 <= tensor_id < len(self.tensors):
            raise self._fail(f"tensor {tensor_id} does not exist ({len(self.tensors)} tensors)")
        t = self.tensors[tensor_id]
        name = f"masks/{tensor_id}.npy"
        want = (t.numel + 7) // 8
        arr = _read_uint8_member(self._zip, name, f"mask of tensor {tensor_id}", self._fail, payload=want)
        if arr.size != want:
            raise self._fail(f"mask of tensor {tensor_id} has {arr.size} bytes but its shape {list(t.shape)} "
                             f"needs {want}")
        tail = t.numel % 8
        if tail and arr[-1] >> tail:
            raise self._fail(f"mask of tensor {tensor_id} has bits set beyond its {t.numel} elements")
        nnz = _popcount(arr)
        if nnz != t.nnz:
            raise self._fail(f"mask of tensor {tensor_id} has {nnz} set bits but the header says nnz={t.nnz}")
        return arr

    def mask(self, tensor_id: int) -> np.ndarray:
        """Boolean non-zero mask of a stored tensor, shape = TensorRecord.shape."""
        words = self.packed(tensor_id)  # validated once, shared with the ops that read it
        return unpack_words(words, tuple(self.tensors[tensor_id].shape))

    # Packed words kept per Trace, so a tensor used by several ops (a weight by its forward,
    # input-gradient and weight-gradient passes) is decompressed and validated once. Bounded by
    # bytes, least recently used dropped first; the arrays are read-only, so sharing them is safe.
    PACKED_CACHE_BYTES = 256 << 20

    def packed(self, tensor_id: int) -> np.ndarray:
        """uint64 words; bit i of the C-order flattening is ``(w[i >> 6] >> (i & 63)) & 1``, zero padded.
        Read-only; cached per Trace (see PACKED_CACHE_BYTES)."""
        cache = self.__dict__.setdefault("_packed_cache", OrderedDict())
        words = cache.get(tensor_id)
        if words is not None:
            cache.move_to_end(tensor_id)
            return words
        words = bytes_to_words(self._read_bytes(tensor_id))
        words.flags.writeable = False
        cache[tensor_id] = words
        self.__dict__["_packed_bytes"] = self.__dict__.get("_packed_bytes", 0) + words.nbytes
        while self._packed_bytes > self.PACKED_CACHE_BYTES and len(cache) > 1:
            _, old = cache.popitem(last=False)
            self._packed_bytes -= old.nbytes
        return words

    def operand_mask(self, op: OpRecord, name: str) -> np.ndarray:
        """Mask of an op's operand in the layout the op used it (transposed: last two dims swapped)."""
        o = op.operand(name)
        m = self.mask(o.tensor)
        return np.swapaxes(m, -1, -2) if o.transposed else m

    def validate_masks(self) -> None:
        """Read every mask once (streaming) and check size, padding bits and popcount == nnz."""
        for t in self.tensors:
            self._read_bytes(t.id)

    def close(self) -> None:
        self._zip.close()
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()

    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"Trace({str(self.path)!r}, model={self.header.get('model')!r}, steps={self.steps}, "
                f"{len(self.ops)} ops, {len(self.tensors)} tensors, {len(self.saved)} saved)")


def load_trace(path: str | os.PathLike) -> Trace:
    """Open a trace and validate all its metadata; masks are checked when read (or validate_masks())."""
    if not isinstance(path, (str, os.PathLike)):
        raise TraceError(f"load_trace: expected a trace file path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    c = _Check(display_path(path))
    try:
        fh = open_regular(path)
    except FileNotFoundError:
        raise c.fail("no such trace file") from None
    except NotRegularFileError as e:
        raise c.fail(f"is {e.kind}, not a trace file") from None
    except PermissionError:
        raise c.fail("cannot read the trace file: permission denied") from None
    except OSError as e:  # ENAMETOOLONG, ELOOP, ENOTDIR, ...
        raise c.fail(f"cannot open the trace file: {e.strerror or _short(e)}") from None
    try:
        zf = zipfile.ZipFile(fh, "r")
    except _READ_ERRORS as e:
        fh.close()
        raise c.fail(f"not a trace file (not a complete zip archive; truncated or corrupt?): {_short(e)}") from None
    try:
        listed = zf.namelist()
        names = set(listed)
        if len(names) != len(listed):  # zipfile would silently read the last of two same-named members
            seen: set[str] = set()
            dup = next(n for n in listed if n in seen or seen.add(n))
            raise c.fail(f"member {dup[:80]!r} appears more than once")
        if "header.npy" not in names:
            raise c.fail("not a trace file (no header.npy member)")
        raw = _read_uint8_member(zf, "header.npy", "header.npy", c.fail)
        try:
            header = json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise c.fail(f"header is not valid JSON: {_short(e)}") from None
        except RecursionError:
            raise c.fail("header is not valid JSON: nested too deeply") from None
        if not isinstance(header, dict):
            raise c.fail("header is not a JSON object")
        if header.get("schema") != SCHEMA:
            raise c.fail(f"not an accelsim trace (schema {_brief(header.get('schema'))}, expected {SCHEMA!r})")
        version = header.get("version")
        if version not in VERSIONS or isinstance(version, bool) or not isinstance(version, int):
            raise c.fail(f"trace version {_brief(version)} is not supported by this accelsim (reads versions "
                         f"{', '.join(map(str, VERSIONS))})")
        c.keys(header, HEADER_KEYS, "header")
        steps = _check_header_fields(c, header)
        for key in ("tensors", "ops", "saved"):
            if not isinstance(header[key], list):
                raise c.fail(f"{key} must be a list")
        tensors = [_parse_tensor(c, i, d) for i, d in enumerate(header["tensors"])]
        ops = [_parse_op(c, i, d, tensors, version) for i, d in enumerate(header["ops"])]
        saved = [_parse_saved(c, i, d, tensors) for i, d in enumerate(header["saved"])]
        for rec, what in [(o, "op") for o in ops] + [(s, "saved record") for s in saved]:
            if rec.step not in steps:
                raise c.fail(f"{what} {rec.id} is of step {rec.step}, which the header does not list ({steps})")
        expected = {f"masks/{t.id}.npy" for t in tensors}
        missing = sorted(expected - names, key=lambda n: int(n[6:-4]))
        if missing:
            raise c.fail(f"member {missing[0]} is missing (tensor {missing[0][6:-4]} has no mask)")
        extra = sorted(names - expected - {"header.npy"})
        if extra:
            raise c.fail(f"unexpected member {extra[0][:80]!r}")
        meta = {k: v for k, v in header.items() if k not in ("tensors", "ops", "saved")}
    except BaseException:
        zf.close()
        fh.close()
        raise
    trace = Trace(path, zf, meta, tensors, ops, saved)
    trace._fh = fh  # ZipFile does not close a file object it was given
    return trace
