"""The lowering registry: what each traced op kind becomes, in one place.

An op kind (conv2d, matmul, bmm; later conv1d/conv3d, transposed conv, attention, memory-bound
vector work) is one ``OpKind`` entry in ``KINDS``. The entry owns every piece of knowledge about the
kind: the operand names of each pass (in GEMM order: A then B), the params check the trace loader
runs (accelsim/trace/format.py), the output shape of each pass, the output-size formula, which
operands may be transposed, the lowering to a *list* of GEMMs (one op may become several), the
human-readable shape string, the name of each pass's reduction dim, and an estimate of the work and
memory lowering the op needs, checked before anything is allocated.

This module is stdlib only (no numpy, numba or simpy), so the trace loader can import it.

GEMM conventions (the same as SCALE-Sim's training topologies, so dense MACs equal the forward MACs
F in all three passes; docs/sources.md "SWAT FLOP accounting"): C[M,N] += A[M,K] @ B[K,N],
repeated ``groups`` times.

| kind/pass     | A (rows M)                      | B (cols N)              | reduction K (order, fastest last) |
|---------------|---------------------------------|-------------------------|-----------------------------------|
| conv fwd      | input windows  M = N*P*Q        | weight  N = K/g         | (r, s, c)  K = R*S*C/g            |
| conv dgrad    | grad_output    M = N*P*Q        | weight^T N = (C/g)*R*S  | k          K = K/g                |
| conv wgrad    | input^T        M = (C/g)*R*S    | grad_output N = K/g     | (n, p, q)  K = N*P*Q              |
| matmul / bmm  | a (M,K)                         | b (K,N)                 | k                                 |

Adding a kind: write its check / out_shape / gemms / describe / estimate functions, add one
``OpKind`` to ``KINDS`` and its tests (docs/architecture.md "Lowering registry").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from accelsim.errors import TraceError, UnsupportedError

PASSES = ("fwd", "dgrad", "wgrad")  # the passes of GEMM kinds
# Trace format v2 adds two passes for non-GEMM ("vector") work only: "bwd" (run during autograd's
# backward) and "optimizer" (after backward: the optimizer step, the method's re-masking).
VECTOR_PASSES = ("fwd", "bwd", "optimizer")
TRACE_PASSES = ("fwd", "dgrad", "wgrad", "bwd", "optimizer")

# Simulating one op may use at most this many bytes of working memory (inflated masks, re-laid-out
# copies, index arrays, one byte per output element for the cost models' walk over output tiles);
# a policy limit against absurd-but-consistent geometry (a 1 KB trace declaring a 10^12-element
# output), not a model number. 1 GiB is issue 9's memory bound for any input under 10 MB; the
# shipped traces peak at 23 MiB per op and a ResNet-50 ImageNet batch-256 op is estimated at about
# 0.5 GB. ACCELSIM_MAX_OP_BYTES raises or lowers it (an integer of bytes).
DEFAULT_MAX_OP_BYTES = 1 << 30
# Bookkeeping per GEMM instance (conv group, bmm batch): the cost models keep at least one tile per
# instance in their tile streams. Measured, not modelled: the gpu family peaks at ~290 B per
# instance (a bmm of batch 3*10^6 of 1x1x1 GEMMs: 870 MB).
PER_GEMM_BYTES = 320
# The kernels and the cost models count in int64: every dimension, MAC count and element count of a
# lowered GEMM must stay below 2**62 (headroom for a few additions).
MAX_COUNT = 1 << 62


def max_op_bytes() -> int:
    """The working-memory limit per op (ACCELSIM_MAX_OP_BYTES, default DEFAULT_MAX_OP_BYTES)."""
    raw = os.environ.get("ACCELSIM_MAX_OP_BYTES", "")
    try:
        v = int(raw) if raw.strip() else DEFAULT_MAX_OP_BYTES
    except ValueError:
        raise UnsupportedError(f"ACCELSIM_MAX_OP_BYTES must be an integer number of bytes, got {raw[:40]!r}") from None
    return v if v > 0 else DEFAULT_MAX_OP_BYTES


@dataclass(frozen=True)
class Gemm:
    """One lowered GEMM: C[M,N] += A[M,K] @ B[K,N], repeated ``groups`` times; ``a``/``b`` are the
    trace operand names feeding A and B. ``output_numel`` is the op's real output (conv dgrad: dX,
    the col2im scatter-add of the M x N product happens on chip)."""

    m: int
    n: int
    k: int
    groups: int
    a: str
    b: str
    output_numel: int

    @property
    def dense_macs(self) -> int:
        return self.groups * self.m * self.n * self.k


@dataclass(frozen=True)
class Estimate:
    """What lowering one op needs, computed from its geometry before anything is allocated."""

    macs: int  # dense MACs of all its GEMMs
    # upper estimate of the working memory lowering, the mask kernels and the cost models use: the
    # kernels' allocations plus one byte per output element (the families walk output tiles)
    work_bytes: int
    largest: int  # largest dimension / element count of its GEMMs (must stay < MAX_COUNT)


@dataclass(frozen=True)
class OpKind:
    """Everything the simulator knows about one op kind (see the module docstring)."""

    name: str
    operands: Mapping[str, tuple[str, str]]  # pass -> (A operand, B operand)
    # (params, used operand shapes, pass) -> geometry; raises TraceError with a one-line reason
    check: Callable[[Any, Mapping[str, tuple[int, ...]], str], Any]
    out_shape: Callable[[Any, str], tuple[int, ...]]  # (geometry, pass) -> the op's output shape
    gemms: Callable[[Any, str], list[Gemm]]  # (geometry, pass) -> lowered GEMMs
    describe: Callable[[Any], str]  # geometry -> "N2 C64 ..." / "M.. N.. K.."
    reduction_dim: Mapping[str, str]  # pass -> the reduction dim, as named to users
    estimate: Callable[[Any, str, Mapping[str, int]], Estimate]  # (geometry, pass, operand numel)
    transposable: bool = False  # may an operand be a transposed use of a stored tensor
    # (pass, operand) -> why an N:M mask of the operand is not N:M in that pass (appended to reasons)
    nm_notes: Mapping[tuple[str, str], str] = field(default_factory=dict)
    is_conv: bool = False  # geometry is a ConvGeometry (the kernels walk conv windows)


# ----------------------------------------------------------------------------------------------
# small validators (messages without the file name: the trace loader prefixes it)
# ----------------------------------------------------------------------------------------------

def _int(v: Any, what: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TraceError(f"{what} must be an integer, got {str(v)[:60]}")
    if v < lo:
        raise TraceError(f"{what} must be >= {lo}, got {v}")
    return v


def _ints(v: Any, what: str, ndim: int) -> tuple[int, ...]:
    if not isinstance(v, (list, tuple)):
        raise TraceError(f"{what} must be a list of integers, got {str(v)[:60]}")
    s = tuple(_int(x, what) for x in v)
    if len(s) != ndim:
        raise TraceError(f"{what} {list(s)} must have {ndim} dims")
    return s


def used_shape(shape: tuple[int, ...], transposed: bool) -> tuple[int, ...]:
    """A stored tensor's shape as an op used it (transposed: last two dims swapped)."""
    shape = tuple(shape)
    return (*shape[:-2], shape[-1], shape[-2]) if transposed and len(shape) >= 2 else shape


# ----------------------------------------------------------------------------------------------
# conv2d
# ----------------------------------------------------------------------------------------------

CONV_PARAM_KEYS = ("stride", "padding", "dilation", "groups", "input_shape", "weight_shape", "output_shape")


@dataclass(frozen=True)
class ConvGeometry:
    n: int
    c: int  # all input channels (not per group)
    h: int
    w: int
    k: int  # all filters
    r: int
    s: int
    p: int
    q: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def fwd_macs(self) -> int:
        """F = N*K*(C/g)*R*S*P*Q (docs/sources.md "SWAT FLOP accounting")."""
        return self.n * self.k * (self.c // self.groups) * self.r * self.s * self.p * self.q

    def describe(self) -> str:
        st = self.stride[0] if self.stride[0] == self.stride[1] else f"{self.stride[0]}x{self.stride[1]}"
        g = f" g{self.groups}" if self.groups > 1 else ""
        return f"N{self.n} C{self.c} H{self.h} W{self.w} K{self.k} R{self.r} S{self.s} /{st}{g}"


def conv_out(size: int, kern: int, stride: int, pad: int, dil: int) -> int:
    """PyTorch Conv2d output size (torch.nn.Conv2d docs, "Shape"):
    out = floor((in + 2*pad - dil*(kern-1) - 1) / stride) + 1."""
    return (size + 2 * pad - dil * (kern - 1) - 1) // stride + 1


def _check_fields(params: Any, keys) -> None:
    """params is a JSON object holding exactly ``keys`` (one-line TraceError naming what differs)."""
    if not isinstance(params, dict):
        raise TraceError("params must be a JSON object")
    missing = [k for k in keys if k not in params]
    if missing:
        raise TraceError(f"params lacks {', '.join(missing)}")
    extra = sorted(str(k)[:40] for k in set(params) - set(keys))
    if extra:
        raise TraceError(f"params has unknown field(s) {', '.join(extra)}")


def _conv_check(params: Any, used: Mapping[str, tuple[int, ...]], pass_: str) -> ConvGeometry:
    _check_fields(params, CONV_PARAM_KEYS)
    stride = _ints(params["stride"], "stride", 2)
    padding = _ints(params["padding"], "padding", 2)
    dilation = _ints(params["dilation"], "dilation", 2)
    if min(stride) < 1 or min(dilation) < 1:
        raise TraceError("stride and dilation must be >= 1")
    g = _int(params["groups"], "groups", 1)
    n, ch, h, w = _ints(params["input_shape"], "input_shape", 4)
    k, cg, r, s = _ints(params["weight_shape"], "weight_shape", 4)
    out = _ints(params["output_shape"], "output_shape", 4)
    if cg * g != ch or k % g:
        raise TraceError(f"weight {[k, cg, r, s]} with groups={g} does not fit input channels {ch}")
    pq = (conv_out(h, r, stride[0], padding[0], dilation[0]), conv_out(w, s, stride[1], padding[1], dilation[1]))
    if min(pq) < 1 or out != (n, k, *pq):
        raise TraceError(f"output_shape {list(out)} disagrees with input {[n, ch, h, w]}, weight "
                         f"{[k, cg, r, s]}, stride {list(stride)}, padding {list(padding)}, dilation "
                         f"{list(dilation)} (expected {[n, k, *pq]})")
    expect = {"input": (n, ch, h, w), "weight": (k, cg, r, s), "grad_output": out}
    for name, shape in used.items():
        if name in expect and tuple(shape) != expect[name]:
            raise TraceError(f"operand {name!r} has shape {list(shape)} but params say {list(expect[name])}")
    return ConvGeometry(n=n, c=ch, h=h, w=w, k=k, r=r, s=s, p=pq[0], q=pq[1], stride=stride,  # type: ignore[arg-type]
                        padding=padding, dilation=dilation, groups=g)  # type: ignore[arg-type]


def conv_geometry(params: Any) -> ConvGeometry:
    """The validated geometry of conv2d params (TraceError with a one-line reason)."""
    return _conv_check(params, {}, "fwd")


def _conv_out_shape(geo: ConvGeometry, pass_: str) -> tuple[int, ...]:
    return {"fwd": (geo.n, geo.k, geo.p, geo.q), "dgrad": (geo.n, geo.c, geo.h, geo.w),
            "wgrad": (geo.k, geo.c // geo.groups, geo.r, geo.s)}[pass_]


def _conv_gemms(geo: ConvGeometry, pass_: str) -> list[Gemm]:
    g = geo.groups
    cg, kg, npq = geo.c // g, geo.k // g, geo.n * geo.p * geo.q
    if pass_ == "fwd":
        return [Gemm(npq, kg, geo.r * geo.s * cg, g, "input", "weight", g * npq * kg)]
    if pass_ == "dgrad":  # the output leaving the array is dX, after the on-chip col2im
        return [Gemm(npq, cg * geo.r * geo.s, kg, g, "grad_output", "weight", geo.n * geo.c * geo.h * geo.w)]
    return [Gemm(cg * geo.r * geo.s, kg, npq, g, "input", "grad_output", g * cg * geo.r * geo.s * kg)]


def _conv_estimate(geo: ConvGeometry, pass_: str, numel: Mapping[str, int]) -> Estimate:
    gemms = _conv_gemms(geo, pass_)
    gm = gemms[0]
    # inflated bool masks and one re-laid-out copy of each (accelsim/sim/kernels.py operand views)
    work = 2 * sum(numel.values())
    if pass_ in ("fwd", "wgrad"):  # the zero-padded input, padded then transposed (two copies)
        hp, wp = geo.h + 2 * geo.padding[0], geo.w + 2 * geo.padding[1] + geo.stride[1]
        work += 2 * geo.n * geo.c * hp * wp
    # int64 index arrays (bases per GEMM row/column, offsets and factor counts per reduction
    # position, a few temporaries each), and the output
    work += 32 * gm.groups * (gm.m + gm.n + gm.k) + gm.groups * gm.m * gm.n + PER_GEMM_BYTES * gm.groups
    largest = max(gm.m, gm.n, gm.k, gm.groups, gm.dense_macs, gm.output_numel, geo.n * geo.k * geo.p * geo.q,
                  geo.n * geo.c * (geo.h + 2 * geo.padding[0]) * (geo.w + 2 * geo.padding[1]))
    return Estimate(sum(x.dense_macs for x in gemms), work, largest)


_CONV2D = OpKind(
    name="conv2d",
    operands={"fwd": ("input", "weight"), "dgrad": ("grad_output", "weight"), "wgrad": ("input", "grad_output")},
    check=_conv_check, out_shape=_conv_out_shape, gemms=_conv_gemms, describe=ConvGeometry.describe,
    reduction_dim={"fwd": "C (with R, S)", "dgrad": "K (output channels)", "wgrad": "N*P*Q (batch and output pixels)"},
    estimate=_conv_estimate, transposable=False, is_conv=True,
    nm_notes={("dgrad", "weight"): "a fwd N:M weight mask runs along C, dgrad reduces over K"},
)


# ----------------------------------------------------------------------------------------------
# matmul / bmm
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MatmulGeometry:
    batch: int  # 1 for matmul
    m: int
    n: int
    k: int
    batched: bool

    def describe(self) -> str:
        b = f"B{self.batch} " if self.batch > 1 else ""
        return f"{b}M{self.m} N{self.n} K{self.k}"


def _matmul_check_for(nd: int, kind: str) -> Callable[[Any, Mapping[str, tuple[int, ...]], str], MatmulGeometry]:
    def check(params: Any, used: Mapping[str, tuple[int, ...]], pass_: str) -> MatmulGeometry:
        a, b = tuple(used["a"]), tuple(used["b"])
        if len(a) != nd or len(b) != nd:
            raise TraceError(f"a {list(a)} and b {list(b)} must both have {nd} dims")
        if a[-1] != b[-2] or (nd == 3 and a[0] != b[0]):
            raise TraceError(f"a {list(a)} and b {list(b)} do not multiply")
        if not isinstance(params, dict):
            raise TraceError("params must be a JSON object")
        extra = set(params) - {"bias"}
        if extra or not isinstance(params.get("bias", False), bool):
            raise TraceError(f"params must be {{}} or {{\"bias\": true}}, got {str(params)[:80]}")
        return MatmulGeometry(a[0] if nd == 3 else 1, a[-2], b[-1], a[-1], nd == 3)
    return check


def _matmul_out_shape(geo: MatmulGeometry, pass_: str) -> tuple[int, ...]:
    return (geo.batch, geo.m, geo.n) if geo.batched else (geo.m, geo.n)


def _matmul_gemms(geo: MatmulGeometry, pass_: str) -> list[Gemm]:
    return [Gemm(geo.m, geo.n, geo.k, geo.batch, "a", "b", geo.batch * geo.m * geo.n)]


def _matmul_estimate(geo: MatmulGeometry, pass_: str, numel: Mapping[str, int]) -> Estimate:
    gm = _matmul_gemms(geo, pass_)[0]
    work = (2 * sum(numel.values()) + 32 * gm.groups * (gm.m + gm.n + gm.k) + gm.groups * gm.m * gm.n
            + PER_GEMM_BYTES * gm.groups)
    return Estimate(gm.dense_macs, work, max(gm.m, gm.n, gm.k, gm.groups, gm.dense_macs, gm.output_numel))


def _matmul_kind(name: str, nd: int) -> OpKind:
    return OpKind(name=name, operands={p: ("a", "b") for p in PASSES}, check=_matmul_check_for(nd, name),
                  out_shape=_matmul_out_shape, gemms=_matmul_gemms, describe=MatmulGeometry.describe,
                  reduction_dim={p: "K" for p in PASSES}, estimate=_matmul_estimate, transposable=True)


# ----------------------------------------------------------------------------------------------
# vector: memory-bound non-GEMM work (trace format v2)
# ----------------------------------------------------------------------------------------------

VECTOR_CLASSES = ("elementwise", "reduction", "normalisation", "softmax", "topk", "copy", "optimizer", "compress")
DEDICATED = ("compress_2_4", "topk_fused")  # work a real system runs in a dedicated kernel
VECTOR_PARAM_KEYS = ("op", "class", "elements", "bytes_read", "bytes_written", "dtype", "kernels", "sparsify",
                     "dedicated")


@dataclass(frozen=True)
class VectorGeometry:
    """One (or ``kernels`` merged identical) memory-bound op(s): totals over all merged kernels."""

    op: str  # aten name, e.g. "aten.native_layer_norm.default"
    cls: str  # one of VECTOR_CLASSES
    elements: int
    bytes_read: int
    bytes_written: int
    dtype: str
    kernels: int
    sparsify: bool
    dedicated: str | None

    def describe(self) -> str:
        k = f" x{self.kernels}" if self.kernels > 1 else ""
        return f"{self.cls} {self.op}{k} E{self.elements} R{self.bytes_read}B W{self.bytes_written}B"


def _vector_check(params: Any, used: Mapping[str, tuple[int, ...]], pass_: str) -> VectorGeometry:
    _check_fields(params, VECTOR_PARAM_KEYS)
    op, cls, dtype = params["op"], params["class"], params["dtype"]
    if not isinstance(op, str) or not op:
        raise TraceError(f"op must be a non-empty string, got {str(op)[:60]}")
    if cls not in VECTOR_CLASSES:
        raise TraceError(f"class {str(cls)[:40]!r} is not one of {', '.join(VECTOR_CLASSES)}")
    if not isinstance(dtype, str):
        raise TraceError(f"dtype must be a string, got {str(dtype)[:60]}")
    if not isinstance(params["sparsify"], bool):
        raise TraceError("sparsify must be true or false")
    ded = params["dedicated"]
    if ded is not None and ded not in DEDICATED:
        raise TraceError(f"dedicated {str(ded)[:40]!r} is not null or one of {', '.join(DEDICATED)}")
    return VectorGeometry(op=op[:200], cls=cls, elements=_int(params["elements"], "elements"),
                          bytes_read=_int(params["bytes_read"], "bytes_read"),
                          bytes_written=_int(params["bytes_written"], "bytes_written"), dtype=dtype,
                          kernels=_int(params["kernels"], "kernels", 1), sparsify=params["sparsify"],
                          dedicated=ded)


def _vector_estimate(geo: VectorGeometry, pass_: str, numel: Mapping[str, int]) -> Estimate:
    # no masks and no GEMM: costed from its counts alone (a few scalars of memory)
    return Estimate(0, 0, max(geo.elements, geo.bytes_read, geo.bytes_written, geo.kernels))


_VECTOR = OpKind(
    name="vector", operands={p: () for p in VECTOR_PASSES}, check=_vector_check,  # type: ignore[misc]
    out_shape=lambda geo, pass_: (geo.elements,), gemms=lambda geo, pass_: [], describe=VectorGeometry.describe,
    reduction_dim={}, estimate=_vector_estimate)


# ----------------------------------------------------------------------------------------------
# params any op may carry (trace format v2), checked here and not passed to the kind's check
# ----------------------------------------------------------------------------------------------

ATTENTION_ROLES = ("qk", "pv", "dp", "dq", "dk", "dv")
ATTENTION_MASKS = ("none", "causal", "attn_mask", "unknown")
ATTENTION_KEYS = ("role", "mask", "structural", "dropout_p", "backend")


def _check_attention(v: Any) -> None:
    if not isinstance(v, dict):
        raise TraceError("attention must be a JSON object")
    missing = [k for k in ATTENTION_KEYS if k not in v]
    extra = sorted(str(k)[:40] for k in set(v) - set(ATTENTION_KEYS))
    if missing or extra:
        raise TraceError(f"attention must have exactly {', '.join(ATTENTION_KEYS)}")
    if v["role"] not in ATTENTION_ROLES:
        raise TraceError(f"attention role {str(v['role'])[:20]!r} is not one of {', '.join(ATTENTION_ROLES)}")
    if v["mask"] not in ATTENTION_MASKS:
        raise TraceError(f"attention mask {str(v['mask'])[:20]!r} is not one of {', '.join(ATTENTION_MASKS)}")
    if not isinstance(v["structural"], bool):
        raise TraceError("attention structural must be true or false")
    p = v["dropout_p"]
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise TraceError(f"attention dropout_p must be a number in [0, 1], got {str(p)[:20]}")
    if not isinstance(v["backend"], str):
        raise TraceError("attention backend must be a string")


def _check_recompute(v: Any) -> None:
    if v is not True:
        raise TraceError("recompute must be true when present")


# key -> (checker, kinds that may carry it; None = every kind)
COMMON_PARAMS: dict[str, tuple[Callable[[Any], None], tuple[str, ...] | None]] = {
    "recompute": (_check_recompute, None),
    "attention": (_check_attention, ("bmm",)),
}


def split_params(kind: str, params: Any) -> Any:
    """Check the params any op may carry (COMMON_PARAMS) and return the rest, for the kind's check."""
    if not isinstance(params, dict) or not any(k in params for k in COMMON_PARAMS):
        return params
    for key, (check, kinds) in COMMON_PARAMS.items():
        if key in params:
            if kinds is not None and kind not in kinds:
                raise TraceError(f"params field {key!r} is not allowed on a {kind} op")
            check(params[key])
    return {k: v for k, v in params.items() if k not in COMMON_PARAMS}


# ----------------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------------

KINDS: dict[str, OpKind] = {k.name: k for k in (_CONV2D, _matmul_kind("matmul", 2), _matmul_kind("bmm", 3),
                                                 _VECTOR)}


def register(entry: OpKind) -> OpKind:
    """Add an op kind to the registry (the trace loader and the simulator see it at once)."""
    if entry.name in KINDS:
        raise ValueError(f"op kind {entry.name!r} is already registered")
    KINDS[entry.name] = entry
    return entry


def op_kind(kind: str) -> OpKind:
    """The registry entry of `kind` (UnsupportedError naming the supported kinds)."""
    got = KINDS.get(kind)
    if got is None:
        raise UnsupportedError(f"op kind {str(kind)[:40]!r} has no lowering (supported: {', '.join(KINDS)})")
    return got


def operand_names(kind: str, pass_: str) -> tuple[str, str]:
    """(A operand, B operand) of a pass of `kind`."""
    return op_kind(kind).operands[pass_]


def reduction_dim(kind: str, pass_: str) -> str:
    """The name of the GEMM reduction dim of a pass, as shown to users (N:M fallback reasons)."""
    entry = KINDS.get(kind)
    return entry.reduction_dim.get(pass_, "K") if entry is not None else "K"


def nm_note(kind: str, pass_: str, operand: str) -> str | None:
    """The kind's explanation of why an operand's N:M pattern does not carry over to `pass_`."""
    entry = KINDS.get(kind)
    return entry.nm_notes.get((pass_, operand)) if entry is not None else None


def _human_bytes(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def validate(kind: str, pass_: str, params: Any, used: Mapping[str, tuple[int, ...]],
             out_shape: tuple[int, ...] | None = None, *, transposed: Mapping[str, bool] | None = None) -> Any:
    """Check one op (params, operand names and used shapes, output shape, size limits) and return its
    geometry. Raises TraceError / UnsupportedError with a one-line reason (no file or op prefix)."""
    entry = op_kind(kind)
    if pass_ not in entry.operands:
        raise UnsupportedError(f"{kind} pass {str(pass_)[:20]!r} is not one of {', '.join(entry.operands)}")
    want = entry.operands[pass_]
    if sorted(used) != sorted(want):
        raise TraceError(f"operands are {[str(x)[:40] for x in used][:8]} but a {kind} {pass_} op has {list(want)}")
    if transposed and not entry.transposable:
        bad = [nm for nm, t in transposed.items() if t]
        if bad:
            raise UnsupportedError(f"transposed {kind} operand {bad[0]!r} is not supported")
    geo = entry.check(split_params(kind, params), used, pass_)
    if out_shape is not None:
        result = entry.out_shape(geo, pass_)
        if tuple(out_shape) != result:
            raise TraceError(f"out_shape {list(out_shape)} should be {list(result)}")
    check_limits(entry, geo, pass_, {nm: math.prod(s) for nm, s in used.items()})
    return geo


def check_limits(entry: OpKind, geo: Any, pass_: str, numel: Mapping[str, int]) -> Estimate:
    """Estimate the op's work and memory before allocating; a one-line UnsupportedError when a
    count would not fit int64 arithmetic or lowering would need more than max_op_bytes()."""
    est = entry.estimate(geo, pass_, numel)
    for gm in entry.gemms(geo, pass_):
        if min(gm.m, gm.n, gm.k, gm.groups) < 1:
            raise UnsupportedError(f"{entry.describe(geo)[:120]}: its {pass_} GEMM has an empty dimension (M={gm.m}, "
                                   f"N={gm.n}, K={gm.k}, groups={gm.groups}): nothing to simulate")
    if est.largest >= MAX_COUNT:
        raise UnsupportedError(f"{entry.describe(geo)[:120]}: a dimension or count of its GEMM reaches "
                               f"{est.largest:.3g} (limit 2**62: the simulator counts in int64)")
    limit = max_op_bytes()
    if est.work_bytes > limit:
        raise UnsupportedError(f"{entry.describe(geo)[:120]}: lowering needs about {_human_bytes(est.work_bytes)} of "
                               f"working memory ({est.macs:.3g} dense MACs), over the {_human_bytes(limit)} limit "
                               f"(ACCELSIM_MAX_OP_BYTES)")
    return est


def lower_geometry(kind: str, pass_: str, geo: Any) -> list[Gemm]:
    """The GEMMs an op of validated geometry becomes, in execution order."""
    return op_kind(kind).gemms(geo, pass_)


def conv_params(n: int, c: int, h: int, w: int, k: int, r: int, s: int, *, stride: int | tuple[int, int] = 1,
                padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, groups: int = 1) -> dict:
    """conv2d params (as the recorder writes them) for a forward conv of the given geometry."""
    def pair(v: Any, key: str) -> tuple[int, int]:
        if isinstance(v, int) and not isinstance(v, bool):
            return (v, v)
        if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) for x in v):
            return (int(v[0]), int(v[1]))
        raise TraceError(f"conv_params: {key} must be an integer or two integers, got {str(v)[:40]}")

    st, pd, dl = pair(stride, "stride"), pair(padding, "padding"), pair(dilation, "dilation")
    p = conv_out(h, r, st[0], pd[0], dl[0])
    q = conv_out(w, s, st[1], pd[1], dl[1])
    return {"stride": list(st), "padding": list(pd), "dilation": list(dl), "groups": groups,
            "input_shape": [n, c, h, w], "weight_shape": [k, c // groups, r, s], "output_shape": [n, k, p, q]}
