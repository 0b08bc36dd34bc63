"""Lowering: one traced op of one pass -> the Workloads (GEMMs) it becomes, with its operands' masks.

What an op kind becomes (operand order, GEMM dims, output shape, limits) is the lowering registry's
knowledge (accelsim/sim/lowering.py, with the GEMM conventions table); this module attaches the
masks: one ``Workload`` per lowered GEMM, C[M,N] += A[M,K] @ B[K,N] repeated ``groups`` times.
Padding positions of a conv input are zeros inside the fwd/wgrad reductions (counted in dense MACs,
never effectual), exactly as im2col does. The conv reduction order (channels fastest) is also the
order in which N:M groups and TensorDash's 16-lane rows are formed (N:M groups run along C:
docs/sources.md "ASP", "SR-STE"; TensorDash streams channel first, then x, then y: docs/sources.md
"SWAT's accelerator: TensorDash").

Masks stay bit-packed in the trace layout (``packed``, the one packed form of
accelsim.trace.format.pack_words); everything derived from them (the bool inflation, the kernels'
operand views, factor counts, N:M compliance) is memoised on the Workload by ``memo()``, keyed on
the identity of the packed arrays, so each operand is inflated at most once per op and a derived
value can never outlive the masks it came from. Workloads are frozen: ``dataclasses.replace`` makes
a new one, with an empty memo.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from accelsim.errors import TraceError, UnsupportedError
from accelsim.sim import lowering
from accelsim.sim.lowering import ConvGeometry, conv_geometry, conv_params, reduction_dim  # noqa: F401  (re-exported)
from accelsim.trace.format import Operand, OpRecord, pack_words, unpack_words


@dataclass(frozen=True)
class Workload:
    """One lowered GEMM of one op of one pass: C[M,N] += A[M,K] @ B[K,N], repeated `groups` times."""

    op: Any  # trace.format.OpRecord
    m: int
    n: int
    k: int
    groups: int  # dense_macs = groups*m*n*k
    a: str
    b: str
    conv: ConvGeometry | None
    packed: dict[str, np.ndarray]  # uint64 words, bit i of the C-order flattening of the stored tensor
    nnz: dict[str, int]
    shapes: dict[str, tuple] = field(default_factory=dict)  # stored (trace-layout) shape per operand
    transposed: dict[str, bool] = field(default_factory=dict)  # stored tensor's last two dims swapped
    roles: dict[str, str] = field(default_factory=dict)  # trace TensorRecord.role per operand
    output_numel: int = -1  # elements of the op's real output (registry Gemm.output_numel); -1: groups*m*n

    def __post_init__(self) -> None:
        if self.output_numel < 0:
            object.__setattr__(self, "output_numel", self.groups * self.m * self.n)

    def memo(self) -> dict:
        """Per-op memo of data derived from the masks (bool inflation, operand views, factor counts,
        N:M compliance). It lives in the instance __dict__ (not a dataclass field, so replace()
        starts empty) and is tied to the identity of the packed arrays: if `packed` is changed in
        place, the memo is dropped instead of serving values of the old masks."""
        token = tuple(self.packed.get(nm) for nm in (self.a, self.b))
        got = self.__dict__.get("_memo")
        if got is None or len(got[0]) != len(token) or any(x is not y for x, y in zip(got[0], token)):
            got = (token, {})
            self.__dict__["_memo"] = got
        return got[1]

    @property
    def dense_macs(self) -> int:
        return self.groups * self.m * self.n * self.k

    @property
    def pass_(self) -> str:
        return self.op.pass_

    @property
    def kind(self) -> str:
        return self.op.kind

    def numel(self, name: str) -> int:
        return int(math.prod(self.shapes[name]))

    def read_numel(self, name: str) -> int:
        """Distinct elements of operand `name` the lowered GEMM reads: min(stored tensor, GEMM
        operand). A conv with stride > kernel (ResNet's 1x1 stride-2 downsample) reads a quarter of
        its input; a 3x3 window matrix repeats input elements 9x but each is fetched once. The GPU
        model's _unique_scale is the same bound as a ratio."""
        gemm = self.groups * self.k * (self.m if name == self.a else self.n)
        return min(self.numel(name), gemm)

    def density(self, name: str) -> float:
        n = self.numel(name)
        return self.nnz[name] / n if n else 0.0

    def mask(self, name: str) -> np.ndarray:
        """Bool mask in the stored (trace) layout, inflated once per op (memo) and read-only."""
        memo = self.memo()
        key = ("bits", name)
        got = memo.get(key)
        if got is None:
            got = unpack_words(self.packed[name], tuple(self.shapes[name]))
            got.flags.writeable = False
            memo[key] = got
        return got

    def used_mask(self, name: str) -> np.ndarray:
        """Bool mask as the op used it (transposed operands get their last two dims swapped)."""
        m = self.mask(name)
        return np.swapaxes(m, -1, -2) if self.transposed.get(name) else m

    def role_of(self, name: str) -> str:
        """'weight' or 'activation' (anything that is not a weight: activations, gradients)."""
        role = self.roles.get(name)
        if role is None:
            role = "weight" if name == "weight" else "activation"
        return "weight" if role == "weight" else "activation"

    def shape_str(self) -> str:
        return lowering.op_kind(self.kind).describe(self.op_geometry)

    @property
    def op_geometry(self) -> Any:
        """The op's validated geometry (lowering registry): ConvGeometry or MatmulGeometry."""
        if self.conv is not None:
            return self.conv
        return lowering.MatmulGeometry(self.groups, self.m, self.n, self.k, self.kind == "bmm")


from accelsim.sim.policy import FamilyCost  # noqa: E402,F401  (family-shared policy lives in sim/policy.py)


def pack_mask(mask: np.ndarray) -> np.ndarray:
    """Bool array -> uint64 words, bit i of the C-order flattening = (w[i>>6] >> (i&63)) & 1
    (the trace's layout: accelsim.trace.format.pack_words)."""
    return pack_words(mask)


def _where(op) -> str:
    return f"op {op.id} ({str(op.layer or op.kind)[:80]} {op.pass_})"


def build_workloads(op, packed: dict, nnz: dict, shapes: dict, transposed: dict | None = None,
                    roles: dict | None = None) -> list[Workload]:
    """Lower an op given its operands' packed masks and stored shapes: the registry validates it
    (params, operands, limits, before anything is allocated) and names its GEMMs."""
    transposed = {nm: bool(t) for nm, t in (transposed or {}).items()}
    where = _where(op)
    used = {nm: lowering.used_shape(tuple(shp), transposed.get(nm, False)) for nm, shp in shapes.items()}
    try:
        geo = lowering.validate(op.kind, op.pass_, op.params, used, transposed=transposed)
    except (TraceError, UnsupportedError) as e:
        raise type(e)(f"{where}: {e}") from None
    entry = lowering.op_kind(op.kind)
    out = []
    for gm in entry.gemms(geo, op.pass_):
        out.append(Workload(
            op=op, m=gm.m, n=gm.n, k=gm.k, groups=gm.groups, a=gm.a, b=gm.b,
            conv=geo if entry.is_conv else None,
            packed={nm: packed[nm] for nm in (gm.a, gm.b)}, nnz={nm: int(nnz[nm]) for nm in (gm.a, gm.b)},
            shapes={nm: tuple(shapes[nm]) for nm in (gm.a, gm.b)},
            transposed={nm: transposed.get(nm, False) for nm in (gm.a, gm.b)},
            roles=dict(roles or {}), output_numel=gm.output_numel))
    return out


def build_workload(op, packed: dict, nnz: dict, shapes: dict, transposed: dict | None = None,
                   roles: dict | None = None) -> Workload:
    """The single Workload of an op whose kind lowers to one GEMM (every kind today)."""
    return _single(op, build_workloads(op, packed, nnz, shapes, transposed, roles))


def _single(op, works: list[Workload]) -> Workload:
    if len(works) != 1:
        raise UnsupportedError(f"{_where(op)}: lowers to {len(works)} GEMMs; use lower_op / build_workloads")
    return works[0]


def lower_op(trace, op) -> list[Workload]:
    """Lower one trace op (trace.format.OpRecord) using the trace's packed masks: its GEMMs in order."""
    packed, nnz, shapes, transposed, roles = {}, {}, {}, {}, {}
    for operand in op.operands:
        rec = trace.tensors[operand.tensor]
        packed[operand.name] = trace.packed(operand.tensor)
        nnz[operand.name] = rec.nnz
        shapes[operand.name] = tuple(rec.shape)
        transposed[operand.name] = bool(operand.transposed)
        roles[operand.name] = rec.role
    return build_workloads(op, packed, nnz, shapes, transposed, roles)


def lower(trace, op) -> Workload:
    """The single Workload of a trace op whose kind lowers to one GEMM (see lower_op)."""
    return _single(op, lower_op(trace, op))


def synthetic_op(kind: str, pass_: str, shapes: dict[str, tuple], params: dict | None = None, *,
                 op_id: int = 0, layer: str = "", transposed: dict | None = None) -> OpRecord:
    """A real OpRecord for a hand-made op (validation cases, benchmarks, `accelsim gemm`): its
    operands refer to pseudo tensor ids 0, 1, ... in the order of `shapes`; out_shape from the registry."""
    transposed = dict(transposed or {})
    used = {nm: lowering.used_shape(tuple(s), bool(transposed.get(nm))) for nm, s in shapes.items()}
    where = f"op {op_id} ({str(layer or kind)[:80]} {pass_})"
    try:
        geo = lowering.validate(kind, pass_, dict(params or {}), used, transposed=transposed)
    except (TraceError, UnsupportedError) as e:
        raise type(e)(f"{where}: {e}") from None
    out = lowering.op_kind(kind).out_shape(geo, pass_)
    operands = tuple(Operand(nm, i, bool(transposed.get(nm, False))) for i, nm in enumerate(shapes))
    return OpRecord(id=op_id, step=0, seq=0, pass_=pass_, kind=kind, layer=layer, module_type="", aten="",
                    operands=operands, out_shape=tuple(out), params=dict(params or {}))


def synthetic_workload(kind: str, pass_: str, masks: dict[str, np.ndarray], params: dict | None = None, *,
                       op_id: int = 0, layer: str = "", transposed: dict | None = None,
                       roles: dict | None = None) -> Workload:
    """The Workload of a hand-made single-GEMM op from bool masks in the stored layout."""
    op = synthetic_op(kind, pass_, {nm: tuple(mk.shape) for nm, mk in masks.items()}, params,
                      op_id=op_id, layer=layer, transposed=transposed)
    packed = {nm: pack_mask(mk) for nm, mk in masks.items()}
    nnz = {nm: int(np.count_nonzero(mk)) for nm, mk in masks.items()}
    shapes = {nm: tuple(mk.shape) for nm, mk in masks.items()}
    return build_workload(op, packed, nnz, shapes, transposed, roles)


def dense_words(numel: int) -> np.ndarray:
    """Packed words of an all-ones mask of `numel` elements (built packed, never as a bool array)."""
    words = np.full(-(-numel // 64), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    if numel % 64:
        words[-1] = np.uint64((1 << (numel % 64)) - 1)
    return words


def gemm_workload(m: int, n: int, k: int, *, batch: int = 1, packed: dict[str, np.ndarray] | None = None,
                  roles: dict | None = None, layer: str = "") -> Workload:
    """A synthetic matmul (batch 1) or bmm of A (M,K) x B (K,N): operands given in `packed` (words of
    the pack_words layout over the C-order (batch,) M x K / K x N mask) or dense. nnz is their popcount."""
    kind = "bmm" if batch > 1 else "matmul"
    shapes = {"a": (batch, m, k) if batch > 1 else (m, k), "b": (batch, k, n) if batch > 1 else (k, n)}
    op = synthetic_op(kind, "fwd", shapes, {}, layer=layer or f"gemm{m}x{n}x{k}")
    words = {nm: (packed or {}).get(nm) for nm in shapes}
    words = {nm: w if w is not None else dense_words(math.prod(shapes[nm])) for nm, w in words.items()}
    for nm, w in words.items():
        need = -(-math.prod(shapes[nm]) // 64)
        if w.dtype != np.uint64 or w.size != need:
            raise ValueError(f"packed operand {nm} must be {need} uint64 words, got {w.size} {w.dtype}")
    nnz = {nm: int(np.bitwise_count(w).sum()) for nm, w in words.items()}
    return build_workload(op, words, nnz, shapes, None, roles)


def merge_results(parts: list, peak_macs_per_cycle: int | float) -> Any:
    """One OpResult (accelsim.sim.result) for an op from the results of its GEMMs, run one after
    another: cycles, MACs and bytes add up; speedup and utilisation follow from the sums. An op of
    one GEMM (every kind today) returns that GEMM's result unchanged."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        raise ValueError("an op lowers to at least one GEMM")
    first = parts[0]

    def total(attr: str) -> int:
        return sum(getattr(p, attr) for p in parts)

    def add_bytes(attr: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in parts:
            for k, v in getattr(p, attr).items():
                out[k] = out.get(k, 0) + v
        return out

    def joined(attr: str) -> str | None:
        seen = [v for v in dict.fromkeys(getattr(p, attr) for p in parts) if v]
        return "; ".join(seen) if seen else None

    cyc, dense, eff = total("total_cycles"), total("dense_cycles"), total("effectual_macs")
    return dataclasses.replace(
        first, dense_macs=total("dense_macs"), effectual_macs=eff, compute_cycles=total("compute_cycles"),
        stall_cycles=total("stall_cycles"), total_cycles=cyc, dense_cycles=dense,
        speedup=dense / cyc if cyc else 1.0,
        utilisation=eff / (peak_macs_per_cycle * cyc) if cyc and peak_macs_per_cycle else 0.0,
        sparse_operand=joined("sparse_operand"), dram_bytes=add_bytes("dram_bytes"),
        dram_bytes_dense=add_bytes("dram_bytes_dense"), fallback=joined("fallback"),
        dense_compute_cycles=total("dense_compute_cycles"), compaction=joined("compaction"))


def resolve_operand(work: Workload, spec: str) -> tuple[str | None, str | None]:
    """Which GEMM side ('a' or 'b') a hardware sparsity `operand` spec names for this op.

    Returns (side, None) or (None, reason). "weight"/"activation" use the trace tensor roles (any
    non-weight tensor -- activation or gradient -- counts as an activation); "a"/"b" name the GEMM
    side directly. "auto" and "both" are resolved by the family models."""
    if spec in ("a", "b"):
        return spec, None
    if spec in ("weight", "activation"):
        sides = [s for s, nm in (("a", work.a), ("b", work.b)) if work.role_of(nm) == spec]
        if not sides:
            return None, f"no {spec} operand in {work.kind} {work.pass_} ({work.a} x {work.b})"
        return sides[-1] if spec == "weight" else sides[0], None
    raise ValueError(f"operand spec {spec!r} is resolved by the family model")


def nm_reason(name: str, kind: str, pass_: str, n: int, m: int, compliance: float,
              k: int | None = None) -> str:
    """Why an operand whose kernels.nm_compliance is below 1 cannot take the N:M rate: one wording
    for every family (GPU mma.sp, systolic N:M PEs). With the reduction length `k`, a K that is not
    a multiple of m is named: its last group is shorter than m and never compliant."""
    dim = reduction_dim(kind, pass_)
    pct = 100.0 * (1.0 - compliance)
    short = bool(k is not None and k % m)
    why = (f"{name} not {n}:{m} along {dim}, the {pass_} reduction dim: {pct:.3g}% of groups of {m} "
           f"have >{n} non-zeros" + (" or are short" if short else ""))
    if short:
        why += f" (K={k} not a multiple of {m}: its last group of {k % m} has no {n}:{m} form)"
    note = lowering.nm_note(kind, pass_, name)
    if note:
        why += f" ({note})"
    return why
