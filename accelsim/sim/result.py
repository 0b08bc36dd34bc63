"""Simulation results: one OpResult per op and pass, a SimResult for the whole trace."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

PASSES = ("fwd", "dgrad", "wgrad")
# trace format v2: passes of non-GEMM (vector) work only (docs/trace-format.md)
STEP_PASSES = ("fwd", "dgrad", "wgrad", "bwd", "optimizer")
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
    # vector (non-GEMM) ops (kind "vector", accelsim/sim/vector.py): the sparsity method's own work
    # (top-k, re-masking, compression; absent on the dense baseline), the op's class, and why it was
    # not simulated (the machine has nothing to run it on) -- it then costs 0 cycles here
    sparsify: bool = False
    vector_class: str = ""
    not_simulated: str | None = None
    vector_bytes: int = 0  # vector ops: bytes read + written on this machine (wherever they moved)


@dataclass
class TimelineEvent:
    op_id: int
    resource: str  # "compute" | "dma" | "launch" | "vector" | "sparsify"
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
    # what the trace holds but nothing simulated (header coverage / unrecorded ops, vector work on a
    # machine without a vector unit): {"what", "pass" ("" = not known), "ops", "macs", "bytes", "why"}
    not_simulated: list[dict] = field(default_factory=list)

    def totals(self) -> dict[str, dict]:
        """Sums per pass ("fwd", "dgrad", "wgrad"; "bwd", "optimizer" when the trace has work in them)
        and over all ops ("all").

        The keys of issue-10-and-earlier results keep their meaning over the GEMM ops only
        (``total_cycles``, ``dense_cycles``, ``seconds``, ``speedup``, ``dense_macs``, ``ops``, ...).
        The whole step adds: ``gemm_cycles`` (= total_cycles), ``vector_cycles`` (vector work that is
        not the sparsity method's), ``sparsify_cycles`` (the method's own work), ``step_cycles`` (their
        sum), ``step_dense_cycles`` (the dense run's step: GEMMs and vector work; no sparsify work),
        ``step_seconds``, ``step_speedup`` (= step_dense_cycles / step_cycles), ``vector_ops``,
        ``not_simulated`` ({"ops", "macs", "bytes"}). A trace without vector ops has step_* equal to
        the GEMM values."""
        out = {}
        # the v1 passes always (fwd/dgrad/wgrad, as before), the vector-only passes where they have work
        present = {o.pass_ for o in self.ops} | {n.get("pass") for n in self.not_simulated}
        for key in [p for p in STEP_PASSES if p in PASSES or p in present] + ["all"]:
            everything = [o for o in self.ops if key == "all" or o.pass_ == key]
            sel = [o for o in everything if o.kind != "vector"]
            vec = [o for o in everything if o.kind == "vector"]
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
            t["gemm_cycles"] = t["total_cycles"]
            t["vector_ops"] = len(vec)
            t["vector_cycles"] = int(sum(o.total_cycles for o in vec if not o.sparsify))
            t["sparsify_cycles"] = int(sum(o.total_cycles for o in vec if o.sparsify))
            t["step_cycles"] = t["gemm_cycles"] + t["vector_cycles"] + t["sparsify_cycles"]
            t["step_dense_cycles"] = t["dense_cycles"] + int(sum(o.dense_cycles for o in vec))
            t["step_seconds"] = t["step_cycles"] / self.clock_hz if self.clock_hz else 0.0
            t["step_speedup"] = t["step_dense_cycles"] / t["step_cycles"] if t["step_cycles"] else 1.0
            miss = [n for n in self.not_simulated if key == "all" or n.get("pass") == key]
            t["not_simulated"] = {f: int(sum(n.get(f, 0) for n in miss)) for f in ("ops", "macs", "bytes")}
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
                "vector_class": o.vector_class, "sparsify": o.sparsify, "not_simulated": o.not_simulated or "",
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
            "not_simulated": [dict(n) for n in self.not_simulated],
        }


def _op_dict(o: OpResult) -> dict:
    d = {}
    for k, v in dataclasses.asdict(o).items():
        d["pass" if k == "pass_" else k] = list(v) if k == "gemm" else v
    return d
