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


@dataclass
class Coverage:
    """meta["coverage"] of a v2 trace summed by how each aten op was recorded."""

    seen: dict[str, int]         # "gemm" | "vector" | "none" -> ops seen
    recorded: dict[str, int]     # -> ops recorded
    missing: list[tuple[str, int]]  # (aten op, calls seen but not recorded), gemm/vector ops only

    @property
    def complete(self) -> bool:
        return not self.missing


def coverage(trace) -> Coverage | None:
    """The trace's coverage (None for a trace without meta.coverage, e.g. format v1)."""
    cov = trace.header.get("meta", {}).get("coverage")
    if not isinstance(cov, dict):
        return None
    seen: dict[str, int] = {}
    rec: dict[str, int] = {}
    missing = []
    for name, c in cov.items():
        if not isinstance(c, dict):
            continue
        as_, s, r = str(c.get("as")), int(c.get("seen", 0)), int(c.get("recorded", 0))
        seen[as_] = seen.get(as_, 0) + s
        rec[as_] = rec.get(as_, 0) + r
        if as_ != "none" and s > r:
            missing.append((name, s - r))
    return Coverage(seen, rec, sorted(missing, key=lambda x: (-x[1], x[0])))


def coverage_line(trace) -> str:
    """One line for `accelsim inspect`: aten ops seen, by how they were recorded, and what was not."""
    cov = coverage(trace)
    if cov is None:
        return "coverage: not in this trace (format v1 or an older recorder: only GEMM ops were recorded)"
    parts = [f"{k} {cov.recorded.get(k, 0)}/{cov.seen.get(k, 0)} recorded" for k in ("gemm", "vector")
             if k in cov.seen]
    parts.append(f"none (views, metadata) {cov.seen.get('none', 0)}")
    line = f"coverage: {sum(cov.seen.values())} aten op calls seen: " + ", ".join(parts)
    if cov.missing:
        shown = ", ".join(f"{n} x{c}" for n, c in cov.missing[:4])
        more = f" and {len(cov.missing) - 4} more" if len(cov.missing) > 4 else ""
        line += f"; NOT recorded: {shown}{more} (see meta.unrecorded_ops)"
    else:
        line += "; nothing left out"
    return line


def vector_summary(trace, steps: set[int] | None = None) -> list[dict[str, Any]]:
    """Vector (non-GEMM) records summed by step, pass, class and sparsify: records, kernels, elements,
    bytes read and written."""
    by: dict[tuple, dict[str, Any]] = {}
    for op in trace.ops:
        if op.kind != "vector" or (steps is not None and op.step not in steps):
            continue
        p = op.params
        key = (op.step, op.pass_, p["class"], bool(p["sparsify"]), p["dedicated"])
        row = by.setdefault(key, {"step": op.step, "pass": op.pass_, "class": p["class"], "sparsify": bool(p["sparsify"]),
                                  "dedicated": p["dedicated"], "records": 0, "kernels": 0, "elements": 0,
                                  "bytes_read": 0, "bytes_written": 0})
        row["records"] += 1
        for f in ("kernels", "elements", "bytes_read", "bytes_written"):
            row[f] += int(p[f])
    order = {"fwd": 0, "bwd": 1, "optimizer": 2}
    return sorted(by.values(), key=lambda r: (r["step"], order.get(r["pass"], 9), r["sparsify"], r["class"]))
