"""simulate(): replay every op of a trace on a hardware model, with a dense baseline.

Per op and pass: lower it (workload.py), ask the hardware family's model (systolic / gpu /
sparse_pe) for its tiles with sparsity support on and, for the baseline, on ``hw.dense()`` (the same
machine with sparsity off, docs/architecture.md), run both tile streams through the memory engine
(memory.run_tiles: DRAM bandwidth, latency, double buffering) and report cycles, stalls, traffic,
speedup = dense total / sparse total. Ops run one after another; integer arithmetic throughout, so
results are bit-for-bit deterministic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from accelsim.hw.config import HardwareConfig
from accelsim.sim.memory import run_tiles
from accelsim.sim.result import OpResult, SimResult, TimelineEvent
from accelsim.sim.policy import FamilyCost
from accelsim.sim.workload import Workload, lower_op, merge_results


def family_model(hw: HardwareConfig):
    """The module implementing `op_cost` for the config's family (the family registry,
    accelsim/hw/family.py)."""
    from accelsim.hw.family import get

    return get(hw.family).model()


def simulate_op(work: Workload, hw: HardwareConfig, *, timeline: bool = False,
                start: int = 0) -> tuple[OpResult, list[TimelineEvent]]:
    """One lowered op on `hw` (sparse) and on `hw.dense()` (baseline)."""
    mod = family_model(hw)
    dense_hw = hw.dense()
    sparse_cost: FamilyCost = mod.op_cost(work, hw, sparse=True)
    dense_cost: FamilyCost = mod.op_cost(work, dense_hw, sparse=False)
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


def simulate(trace, hw, *, progress: Callable[[str, int, int], None] | None = None,
             timeline: bool = False) -> SimResult:
    """Replay `trace` (a Trace or a path) on `hw` (a HardwareConfig or a YAML path)."""
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
        for i, op in enumerate(trace.ops):
            parts = []  # an op may lower to several GEMMs (lowering registry): run them in order
            for work in lower_op(trace, op):
                res, ev = simulate_op(work, hw, timeline=timeline, start=clock)
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
                         peak_macs_per_cycle=hw.peak_macs_per_cycle)
    finally:
        if close:
            trace.close()
