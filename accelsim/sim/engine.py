"""simulate(): replay every op of a trace on a hardware model, with a dense baseline.

Per op and pass: lower it (workload.py), ask the hardware family's model (systolic / gpu /
sparse_pe) for its tiles with sparsity support on and, for the baseline, on ``hw.dense()`` (the same
machine with sparsity off, docs/architecture.md), run both tile streams through the memory engine
(memory.run_tiles: DRAM bandwidth, latency, double buffering) and report cycles, stalls, traffic,
speedup = dense total / sparse total. Ops run one after another; integer arithmetic throughout, so
results are bit-for-bit deterministic.

Vector (non-GEMM) ops of a v2 trace (kind "vector", no GEMMs) are costed by accelsim/sim/vector.py
(simulate_vector); causal attention GEMMs on the gpu family skip the score tiles a flash-attention
kernel never visits (causal_skip); what the trace holds but nothing can simulate is collected in
SimResult.not_simulated (not_simulated_items).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Sequence

from accelsim.hw.config import HardwareConfig
from accelsim.sim.memory import run_tiles
from accelsim.sim.result import OpResult, SimResult, TimelineEvent
from accelsim.sim.policy import FamilyCost
from accelsim.sim.workload import Workload, lower_op, merge_results

VECTOR_KIND = "vector"  # trace format v2: memory-bound non-GEMM work (accelsim/sim/vector.py)
# FlashAttention-2's blocks are 64 or 128 queries x 64 or 128 keys (Dao 2023, §3.1; its A100 forward
# kernels use 128 x 128 for head dims <= 64): causal_skip counts 128 x 128 blocks.
ATTENTION_BLOCK = 128


def family_model(hw: HardwareConfig):
    """The module implementing `op_cost` for the config's family (the family registry,
    accelsim/hw/family.py)."""
    from accelsim.hw.family import get

    return get(hw.family).model()


def simulate_op(work: Workload, hw: HardwareConfig, *, timeline: bool = False,
                start: int = 0, plan=None) -> tuple[OpResult, list[TimelineEvent]]:
    """One lowered op on `hw` (sparse) and on `hw.dense()` (baseline); `plan`: what the family's
    plan(trace, hw) pre-pass returned for the run (passed on to its op_cost when not None)."""
    mod = family_model(hw)
    dense_hw = hw.dense()
    extra = {} if plan is None else {"plan": plan}
    sparse_cost: FamilyCost = mod.op_cost(work, hw, sparse=True, **extra)
    dense_cost: FamilyCost = mod.op_cost(work, dense_hw, sparse=False, **extra)
    dram = hw.dram()
    bpc = dram.bandwidth_bytes_per_s / hw.clock_hz
    op = work.op
    # a family that already ran the chosen stream through the engine (FamilyCost.engine) is not
    # replayed, unless a timeline is wanted
    eng = sparse_cost.engine
    if eng is None or timeline:
        eng = run_tiles(sparse_cost.tiles, bytes_per_cycle=bpc, latency_cycles=dram.latency_cycles,
                        timeline=timeline, op_id=op.id)
    deng = dense_cost.engine or run_tiles(dense_cost.tiles, bytes_per_cycle=bpc,
                                          latency_cycles=dram.latency_cycles)
    if eng.compute_cycles != sparse_cost.compute_cycles or deng.compute_cycles != dense_cost.compute_cycles:
        raise AssertionError(f"op {op.id}: tile compute cycles do not add up to the family's count")
    total = eng.total_cycles + sparse_cost.fixed_cycles
    dense_total = deng.total_cycles + dense_cost.fixed_cycles
    peak = hw.peak_macs_per_cycle
    res = OpResult(
        op_id=op.id, step=op.step, layer=op.layer, pass_=op.pass_, kind=op.kind, shape=work.shape_str(),
        gemm=(work.m, work.n, work.k), dense_macs=work.dense_macs, effectual_macs=sparse_cost.effectual_macs,
        compute_cycles=sparse_cost.compute_cycles, stall_cycles=eng.stall_cycles, total_cycles=total,
        dense_cycles=dense_total, speedup=dense_total / total if total else 1.0,
        utilisation=sparse_cost.effectual_macs / (peak * total) if total and peak else 0.0,
        sparse_operand=sparse_cost.sparse_operand, dram_bytes=dict(eng.bytes_by_operand),
        dram_bytes_dense=dict(deng.bytes_by_operand), fallback=sparse_cost.fallback,
        dense_compute_cycles=dense_cost.compute_cycles,
        compaction=sparse_cost.compaction,
    )
    events = [TimelineEvent(e.op_id, e.resource, e.start + start, e.end + start) for e in eng.timeline]
    if timeline and sparse_cost.fixed_cycles:
        events.append(TimelineEvent(op.id, "launch", start + eng.total_cycles, start + total))
    return res, events


def simulate_vector(op, hw: HardwareConfig, *, timeline: bool = False,
                    start: int = 0) -> tuple[OpResult, list[TimelineEvent]]:
    """One vector op (trace format v2) on `hw` and on its dense baseline (accelsim/sim/vector.py)."""
    from accelsim.sim import lowering
    from accelsim.sim.vector import vector_cost

    geo = lowering.op_kind(VECTOR_KIND).check(lowering.split_params(VECTOR_KIND, op.params), {}, op.pass_)
    cost = vector_cost(geo, hw, sparse=True)
    dense = vector_cost(geo, hw.dense(), sparse=False)
    total, dense_total = cost.total_cycles, dense.total_cycles

    def moved(c) -> dict[str, int]:
        return ({"read": c.traffic.bytes_read, "written": c.traffic.bytes_written}
                if c.level == "dram" and c.traffic.bytes else {})

    res = OpResult(
        op_id=op.id, step=op.step, layer=op.layer, pass_=op.pass_, kind=op.kind, shape=geo.describe(),
        gemm=(0, 0, 0), dense_macs=0, effectual_macs=0, compute_cycles=cost.cycles, stall_cycles=0,
        total_cycles=total, dense_cycles=dense_total,
        speedup=dense_total / total if total else 1.0, utilisation=0.0, sparse_operand=None,
        dram_bytes=moved(cost), dram_bytes_dense=moved(dense), fallback=None,
        dense_compute_cycles=dense.cycles, sparsify=geo.sparsify, vector_class=geo.cls,
        not_simulated=None if cost.simulated else cost.note, vector_bytes=cost.traffic.bytes,
    )
    events = []
    if timeline and total:
        mid = start + cost.cycles
        if cost.cycles:
            events.append(TimelineEvent(op.id, "sparsify" if geo.sparsify else "vector", start, mid))
        if cost.fixed_cycles:
            events.append(TimelineEvent(op.id, "launch", mid, start + total))
    return res, events


def causal_skip(work: Workload, hw: HardwareConfig) -> Workload | None:
    """A causal attention GEMM on the gpu family as the work a flash-attention kernel really does,
    or None when the rule does not apply.

    FlashAttention(-2) kernels (Dao et al. 2022; Dao 2023 §3.1.1 "Causal masking": blocks whose
    column indices all exceed their row indices are skipped, about half for long sequences), and so
    PyTorch's SDPA flash and memory-efficient backends, visit only the query x key blocks on or below
    the diagonal: T(T+1)/2 of T*T blocks, T = ceil(L / ATTENTION_BLOCK). The op's GEMM keeps its
    dimensions except the key/query axis that is not the GEMM's M -- N of the score-producing GEMMs
    (qk: S = Q K^T, dp: dP = dO V^T), K of the score-consuming ones (pv, dq, dk, dv) -- which shrinks
    by that fraction (rounded up). The operands become dense: the score-side masks are the causal
    triangle whose zeros are the skipped blocks. dense_macs stays the op's (simulate restores it).
    Sparse-PE machines need no rule: they skip the recorded causal zeros of P and dS themselves
    (docs/sources.md "Causal block skipping")."""
    att = work.op.params.get("attention") if isinstance(work.op.params, dict) else None
    if hw.family != "gpu" or not isinstance(att, dict) or att.get("mask") != "causal":
        return None
    from accelsim.sim.workload import gemm_workload

    role = att.get("role")
    m, n, k = work.m, work.n, work.k
    length = n if role in ("qk", "dp") else k
    t = -(-length // ATTENTION_BLOCK)
    kept = -(-length * (t + 1) // (2 * t))
    if role in ("qk", "dp"):
        n = kept
    else:
        k = kept
    return gemm_workload(m, n, k, batch=work.groups, layer=work.op.layer)


def _causal_result(orig: Workload, res: OpResult) -> OpResult:
    op = orig.op
    return dataclasses.replace(res, op_id=op.id, step=op.step, layer=op.layer, pass_=op.pass_, kind=op.kind,
                               shape=orig.shape_str() + " causal", gemm=(orig.m, orig.n, orig.k),
                               dense_macs=orig.dense_macs)


def not_simulated_items(trace, ops: list[OpResult]) -> list[dict]:
    """What the trace holds but was not simulated: the header's meta["unrecorded_ops"] (aten ops with
    MACs the recorder has no op kind for: {name: count}, or {name: {"count", "macs", "bytes"}}),
    coverage entries of GEMM/vector ops seen more often than recorded (``as`` "none" are views and
    metadata-only ops, free by design; an eval pass under torch.no_grad() is outside the step and
    its coverage, meta["no_grad_forward"]), and vector ops the machine has nothing to run on. Each
    {"what", "pass", "ops", "macs", "bytes", "why"}; MACs and bytes as far as the trace knows them."""
    meta = (trace.header or {}).get("meta") or {}
    items: list[dict] = []
    for name, v in (meta.get("unrecorded_ops") or {}).items():
        e = v if isinstance(v, dict) else {"count": v}
        count = e.get("count", e.get("seen", 0))
        if isinstance(count, int) and not isinstance(count, bool) and count > 0:
            items.append({"what": str(name)[:80], "pass": "", "ops": count, "macs": int(e.get("macs", 0) or 0),
                          "bytes": int(e.get("bytes", 0) or 0), "why": "not recorded"})
    listed = {i["what"] for i in items}
    for name, e in (meta.get("coverage") or {}).items():
        if not isinstance(e, dict) or e.get("as") not in ("gemm", "vector") or str(name)[:80] in listed:
            continue
        seen, rec = int(e.get("seen", 0) or 0), int(e.get("recorded", 0) or 0)
        left = seen - rec
        if left > 0:
            items.append({"what": str(name)[:80], "pass": "", "ops": left, "macs": int(e.get("macs", 0) or 0),
                          "bytes": int(e.get("bytes", 0) or 0), "why": f"{left} of {seen} calls not recorded"})
    by_pass: dict[tuple[str, str], dict] = {}
    for o in ops:
        if o.not_simulated:
            key = (o.pass_, o.not_simulated)
            it = by_pass.setdefault(key, {"what": f"vector work ({o.pass_})", "pass": o.pass_, "ops": 0, "macs": 0,
                                          "bytes": 0, "why": o.not_simulated})
            it["ops"] += 1
            it["bytes"] += o.vector_bytes
    return items + list(by_pass.values())


def simulate(trace, hw, *, progress: Callable[[str, int, int], None] | None = None,
             timeline: bool = False, lowered: Sequence[list[Workload]] | None = None) -> SimResult:
    """Replay `trace` (a Trace or a path) on `hw` (a HardwareConfig or a YAML path). ``lowered``:
    ``lower_op(trace, op)`` of every op of ``trace.ops``, kept by a caller that simulates one trace on
    many machines (accelsim/sweep: the workloads' memo() is then shared by every point)."""
    from accelsim.trace.format import Trace, load_trace

    if not isinstance(hw, HardwareConfig):
        from accelsim.hw import load_hw

        hw = load_hw(hw)
    close = False
    if not isinstance(trace, Trace):
        trace = load_trace(trace)
        close = True
    try:
        ops, events = [], []
        clock = 0
        n = len(trace.ops)
        # a family may decide things once per run from the whole trace (shapes, densities) before
        # any op: its optional plan(trace, hw) pre-pass (sim/sparse_pe.plan: the pair-count path)
        pre = getattr(family_model(hw), "plan", None)
        plan = pre(trace, hw) if pre is not None else None
        for i, op in enumerate(trace.ops):
            if op.kind == VECTOR_KIND:  # non-GEMM work: no GEMMs to lower (accelsim/sim/vector.py)
                res, ev = simulate_vector(op, hw, timeline=timeline, start=clock)
                clock += res.total_cycles
                ops.append(res)
                events.extend(ev)
                if progress is not None:
                    progress("simulate", i + 1, n)
                continue
            parts = []  # an op may lower to several GEMMs (lowering registry): run them in order
            for work in (lowered[i] if lowered is not None else lower_op(trace, op)):
                skip = causal_skip(work, hw)
                res, ev = simulate_op(skip if skip is not None else work, hw, timeline=timeline, start=clock,
                                      plan=plan)
                if skip is not None:
                    res = _causal_result(work, res)
                    ev = [dataclasses.replace(e, op_id=op.id) for e in ev]
                clock += res.total_cycles
                parts.append(res)
                events.extend(ev)
            ops.append(merge_results(parts, hw.peak_macs_per_cycle))
            if progress is not None:
                progress("simulate", i + 1, n)
        warnings = []
        nfb = sum(1 for o in ops if o.fallback)
        if nfb:
            warnings.append(f"{nfb} of {len(ops)} ops ran without sparsity support (see each op's fallback)")
        return SimResult(hw_name=hw.name, hw_path=hw.source, trace_path=os.fspath(Path(trace.path)),
                         clock_hz=hw.clock_hz, ops=ops, timeline=events, warnings=warnings,
                         peak_macs_per_cycle=hw.peak_macs_per_cycle,
                         not_simulated=not_simulated_items(trace, ops))
    finally:
        if close:
            trace.close()
