"""Simulation results: one OpResult per op and pass, a SimResult for the whole trace."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

PASSES = ("fwd", "dgrad", "wgrad")
_SUMMED = ("dense_macs", "effectual_macs", "compute_cycles", "stall_cycles", "total_cycles", "dense_cycles",
           "dense_compute_cycles")


@dataclass
class OpResult:
    op_id: int
    step: int
    layer: str
    pass_: str
    kind: str
    shape: str  # human readable, e.g. "N8 C64 H56 W56 K64 R3 S3 /1"
    gemm: tuple[int, int, int]  # (M, N, K) of the lowered GEMM (per group; groups in `shape`)
    dense_macs: int
    effectual_macs: int  # both operands non-zero
    compute_cycles: int
    stall_cycles: int
    total_cycles: int
    dense_cycles: int  # total cycles of the same op with sparsity support off
    speedup: float  # dense_cycles / total_cycles
    utilisation: float  # effectual_macs / (peak MACs/cycle * total_cycles): MAC slots doing useful work, <= 1
    sparse_operand: str | None
    dram_bytes: dict[str, int]
    dram_bytes_dense: dict[str, int]
    fallback: str | None
    # stall-free compute cycles of the dense baseline: dense_compute_cycles / compute_cycles is the
    # compute-only speedup, what cycle-count-only simulators such as DNNsim report
    dense_compute_cycles: int = 0
    # structured weight sparsity deleted as a smaller dense GEMM (sim/structure.py), e.g. "weight: 32
    # of 64 filters and 288 of 576 (c,r,s) taps all zero: GEMM N 64->32, K 576->288"; None: not done
    compaction: str | None = None


@dataclass
class TimelineEvent:
    op_id: int
    resource: str  # "compute" | "dma"
    start: int
    end: int


@dataclass
class SimResult:
    hw_name: str
    hw_path: str
    trace_path: str
    clock_hz: float
    ops: list[OpResult]
    timeline: list[TimelineEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    peak_macs_per_cycle: int = 0

    def totals(self) -> dict[str, dict]:
        """Sums per pass ("fwd", "dgrad", "wgrad") and over all ops ("all")."""
        out = {}
        for key in PASSES + ("all",):
            sel = [o for o in self.ops if key == "all" or o.pass_ == key]
            t = {f: int(sum(getattr(o, f) for o in sel)) for f in _SUMMED}
            t["ops"] = len(sel)
            t["dram_bytes"] = int(sum(sum(o.dram_bytes.values()) for o in sel))
            t["dram_bytes_dense"] = int(sum(sum(o.dram_bytes_dense.values()) for o in sel))
            t["speedup"] = t["dense_cycles"] / t["total_cycles"] if t["total_cycles"] else 1.0
            t["compute_speedup"] = (t["dense_compute_cycles"] / t["compute_cycles"]) if t["compute_cycles"] else 1.0
            peak = self.peak_macs_per_cycle * t["total_cycles"]
            t["utilisation"] = t["effectual_macs"] / peak if peak else 0.0
            t["seconds"] = t["total_cycles"] / self.clock_hz if self.clock_hz else 0.0
            t["fallbacks"] = sum(1 for o in sel if o.fallback)
            out[key] = t
        return out

    def to_rows(self) -> list[dict]:
        """Tidy rows, one per op and pass, with the same columns in every row (CSV)."""
        rows = []
        for o in self.ops:
            rows.append({
                "op_id": o.op_id, "step": o.step, "layer": o.layer, "pass": o.pass_, "kind": o.kind,
                "shape": o.shape, "M": o.gemm[0], "N": o.gemm[1], "K": o.gemm[2],
                "dense_macs": o.dense_macs, "effectual_macs": o.effectual_macs,
                "compute_cycles": o.compute_cycles, "stall_cycles": o.stall_cycles,
                "total_cycles": o.total_cycles, "dense_cycles": o.dense_cycles, "speedup": o.speedup,
                "dense_compute_cycles": o.dense_compute_cycles,
                "utilisation": o.utilisation, "sparse_operand": o.sparse_operand or "",
                "dram_bytes": sum(o.dram_bytes.values()), "dram_bytes_dense": sum(o.dram_bytes_dense.values()),
                "fallback": o.fallback or "", "compaction": o.compaction or "",
            })
        return rows

    def to_dict(self) -> dict:
        """JSON-ready dictionary (tuples become lists)."""
        return {
            "hw_name": self.hw_name, "hw_path": self.hw_path, "trace_path": self.trace_path,
            "clock_hz": self.clock_hz, "peak_macs_per_cycle": self.peak_macs_per_cycle,
            "totals": self.totals(),
            # "pass", not the attribute name "pass_": the same key as the CSV column and the trace
            "ops": [_op_dict(o) for o in self.ops],
            "timeline": [dataclasses.asdict(e) for e in self.timeline],
            "warnings": list(self.warnings),
        }


def _op_dict(o: OpResult) -> dict:
    d = {}
    for k, v in dataclasses.asdict(o).items():
        d["pass" if k == "pass_" else k] = list(v) if k == "gemm" else v
    return d
