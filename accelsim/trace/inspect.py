"""What a trace holds, as rows (printing is the CLI's job): per op its operands' shapes, densities
and N:M compliance along the reduction dimension of *that* pass -- a forward 2:4 weight is generally
not 2:4 along dgrad's reduction dim (docs/sources.md "NVIDIA A100": dgrad needs masks 2:4 along rows
and columns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OperandInfo:
    name: str
    tensor: int
    shape: tuple[int, ...]      # as used by the op (transposed applied)
    role: str
    density: float
    nm: float | None            # fraction of groups of m along the pass's reduction dim with <= n nnz


@dataclass
class OpInfo:
    op_id: int
    step: int
    pass_: str
    layer: str
    kind: str
    dense_macs: int
    operands: list[OperandInfo] = field(default_factory=list)
    out_shape: tuple[int, ...] = ()


def op_rows(trace, *, n: int = 2, m: int = 4, steps: set[int] | None = None) -> list[OpInfo]:
    """One OpInfo per op (optionally only ``steps``), in trace order."""
    from accelsim.sim.kernels import nm_compliance
    from accelsim.sim.lowering import used_shape
    from accelsim.sim.workload import lower_op

    tensors = {t.id: t for t in trace.tensors}
    out: list[OpInfo] = []
    for op in trace.ops:
        if steps is not None and op.step not in steps:
            continue
        works = lower_op(trace, op)
        info = OpInfo(op.id, op.step, op.pass_, op.layer, op.kind, sum(int(w.dense_macs) for w in works),
                      out_shape=tuple(op.out_shape))
        for operand in op.operands:
            t = tensors[operand.tensor]
            # N:M along the reduction of the first GEMM that reads the operand
            work = next((w for w in works if operand.name in (w.a, w.b)), None)
            info.operands.append(OperandInfo(
                name=operand.name, tensor=operand.tensor, shape=used_shape(tuple(t.shape), operand.transposed),
                role=t.role, density=t.nnz / t.numel if t.numel else 1.0,
                nm=None if work is None else float(nm_compliance(work, operand.name, n, m))))
        out.append(info)
    return out


def saved_summary(trace) -> list[dict[str, Any]]:
    """Per step and category: records, distinct storages, dense bytes and density of what autograd
    kept for backward (storage shared by several records counted once)."""
    from accelsim.sim.footprint import dtype_bits

    by: dict[tuple[int, str], dict[str, Any]] = {}
    seen: set[tuple[int, int]] = set()
    for s in trace.saved:
        row = by.setdefault((s.step, s.category), {"step": s.step, "category": s.category, "records": 0,
                                                    "storages": 0, "numel": 0, "nnz": 0, "bytes": 0})
        row["records"] += 1
        if (s.step, s.storage) in seen:
            continue
        seen.add((s.step, s.storage))
        numel = 1
        for d in s.shape:
            numel *= int(d)
        row["storages"] += 1
        row["numel"] += numel
        row["nnz"] += int(s.nnz)
        row["bytes"] += numel * dtype_bits(s.dtype) // 8
    rows = sorted(by.values(), key=lambda r: (r["step"], ("activation", "weight", "other").index(r["category"])
                                               if r["category"] in ("activation", "weight", "other") else 9))
    for r in rows:
        r["density"] = r["nnz"] / r["numel"] if r["numel"] else 1.0
    return rows
