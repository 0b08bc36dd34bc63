"""simulate(): a small real trace through every shipped hardware model."""

from __future__ import annotations

from pathlib import Path

import pytest

import accelsim
import tiny_trace
from accelsim.hw import load_hw
from accelsim.sim.engine import simulate
from accelsim.trace.format import load_trace

ROOT = Path(__file__).resolve().parents[1]
HW = sorted((ROOT / "hwconfigs").glob("*.yaml"))


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory):
    return tiny_trace.build_sim(tmp_path_factory.mktemp("tr") / "t.accelsim-trace")


@pytest.mark.parametrize("hwp", HW, ids=lambda p: p.stem)
def test_every_config_runs_every_op(trace_path, hwp):
    from accelsim.hw import load_hw

    gpu = load_hw(hwp).family == "gpu"
    res = simulate(trace_path, hwp)
    assert len(res.ops) == 6
    tot = res.totals()
    assert tot["all"]["ops"] == 6 and tot["fwd"]["ops"] + tot["dgrad"]["ops"] + tot["wgrad"]["ops"] == 6
    assert tot["all"]["total_cycles"] == sum(o.total_cycles for o in res.ops)
    for o in res.ops:
        launch = o.total_cycles - o.compute_cycles - o.stall_cycles  # GPU launch overhead, else 0
        assert launch == 0 or gpu  # only GPU kernels pay a launch
        assert launch >= 0
        assert o.total_cycles >= o.compute_cycles > 0
        assert o.speedup == pytest.approx(o.dense_cycles / o.total_cycles)
        assert 0 < o.utilisation <= 1
        assert o.effectual_macs <= o.dense_macs
        # an exploited operand and a fallback only together when weight deletion ran instead of 2:4
        assert (o.sparse_operand is None) or (o.fallback is None) or (o.compaction is not None)
    rows = res.to_rows()
    assert len(rows) == 6 and len({tuple(r) for r in rows}) == 1  # same columns in every row
    d = res.to_dict()
    assert d["hw_name"] == res.hw_name and len(d["ops"]) == 6


def test_deterministic(trace_path):
    hw = load_hw(ROOT / "hwconfigs" / "tensordash.yaml")
    res = simulate(trace_path, hw)
    assert res.to_dict() == simulate(trace_path, hw).to_dict()
    for o in res.ops:  # H=2: no op computes more than 3x faster than dense (docs/sources.md "SWAT's accelerator: TensorDash")
        assert o.dense_compute_cycles <= 3 * o.compute_cycles


def test_public_api_and_trace_object(trace_path):
    with load_trace(trace_path) as tr:
        res = accelsim.simulate(tr, ROOT / "hwconfigs" / "systolic_32x32_ws.yaml", timeline=True)
    assert res.timeline and {e.resource for e in res.timeline} <= {"compute", "dma", "launch"}
    # ops run back to back: every event lies inside its op's window
    start = 0
    for o in res.ops:
        ev = [e for e in res.timeline if e.op_id == o.op_id]
        assert ev and min(e.start for e in ev) >= start and max(e.end for e in ev) <= start + o.total_cycles
        start += o.total_cycles


def test_conv_fwd_on_32x32_ws_hand_worked(trace_path):
    # conv fwd: M = 2*6*6 = 72, N = 8, K = 4*9 = 36 on 32x32 WS: ceil(36/32) * ceil(8/32) = 2 folds of
    # 2*32 + 32 + 72 - 2 = 166 cycles = 332 compute cycles (docs/sources.md "SCALE-Sim 3.0 systolic compute").
    # DRAM 10 B/cycle, no latency, double buffered: fold loads are half of the input (144 B) and
    # half of the weight (144 B) = 288 B -> 29 cycles each. Fold 0 waits for its load (0..29),
    # computes 29..195; fold 1's load ends at 58, it computes 195..361; the 576-byte output
    # (72 x 8 int8) is stored after it in 58 cycles -> 419 total, 87 stall cycles. That is the
    # dense baseline; the sparse run deletes the weight's all-zero channels 2, 3 (tiny_trace:
    # 18 of 36 (c,r,s) taps, structure.compact): K' = 18 -> 1 fold of 166 cycles, loading the input
    # channels 0, 1 (144 B) and the kept weight 8 x 18 (144 B) = 288 B in 29 cycles, output 576 B
    # in 58 -> 29 + 166 + 58 = 253 total, 87 stalls.
    res = simulate(trace_path, ROOT / "hwconfigs" / "systolic_32x32_ws.yaml")
    o = res.ops[0]
    assert (o.pass_, o.kind, o.gemm) == ("fwd", "conv2d", (72, 8, 36))
    assert (o.dense_compute_cycles, o.dense_cycles) == (332, 419)
    assert o.dram_bytes_dense == {"input": 288, "weight": 288, "output": 576}
    assert (o.compute_cycles, o.total_cycles, o.stall_cycles) == (166, 253, 87)
    assert o.dram_bytes == {"input": 144, "weight": 144, "output": 576}
    assert o.speedup == 419 / 253 and o.sparse_operand == "weight" and o.fallback is None
    assert o.compaction == "weight: 0 of 8 filters and 18 of 36 (c,r,s) taps all zero: GEMM K 36->18"


def test_nm_fallback_reported(trace_path):
    res = simulate(trace_path, ROOT / "hwconfigs" / "systolic_128_nm.yaml")
    by = {(o.layer, o.pass_): o for o in res.ops}
    assert by[("conv1", "fwd")].sparse_operand == "weight" and by[("conv1", "fwd")].fallback is None
    # dgrad: the weight is not 2:4 along K, but its all-zero (c,r,s) taps are deleted (N 36 -> 18):
    # the zeros are exploited by deletion, and the fallback still says why the N:M PEs were not used
    dg = by[("conv1", "dgrad")]
    assert dg.sparse_operand == "weight"
    assert dg.fallback.startswith("weight not 2:4 along K (output channels), the dgrad reduction dim")
    assert dg.compaction == "weight: 0 of 8 filters and 18 of 36 (c,r,s) taps all zero: GEMM N 36->18"
    assert by[("conv1", "wgrad")].fallback == "no weight operand in conv2d wgrad (input x grad_output)"
    assert any("ran without sparsity support" in w for w in res.warnings)


def test_fastest_candidate_through_the_engine_and_its_lower_bound():
    # sim/policy.fastest, shared by systolic.choose and gpu.gemm_cost. One tile each, no latency,
    # 10 B/cycle: total = compute + the load before it (no overlap with one tile) = c + bytes/10.
    import numpy as np

    from accelsim.sim.memory import TileStream
    from accelsim.sim.policy import fastest

    def st(c, b):
        return TileStream(np.array([c]), {"x": np.array([b])}, np.array([0]))

    cands = [(100, 500), (120, 200), (60, 800), (120, 200)]  # totals 150, 140, 140, 140
    seen = []

    def stream(c):
        seen.append(c)
        return st(*c)

    got, s, eng = fastest(cands, stream, bytes_per_cycle=10, latency_cycles=0, tiebreak=lambda c: (c[1],))
    assert got == (120, 200) and eng.total_cycles == 140 and len(seen) == 4  # ties: fewer bytes, then first
    assert fastest(cands, lambda c: st(*c), bytes_per_cycle=10, latency_cycles=0, extra=lambda c: c[0])[0] == (60, 800)
    # with the bound max(compute, bytes / bandwidth) the same answer, fewer engine runs: bounds are
    # 100, 120, 80, 120; after (60, 800) at 140 and (100, 500) at 150, (120, 200) at bound 120 is run
    # and wins; its twin is run too (bound 120 <= 140) and loses the tie
    seen.clear()
    got2, _, eng2 = fastest(cands, stream, bytes_per_cycle=10, latency_cycles=0, tiebreak=lambda c: (c[1],),
                            bound=lambda c: max(c[0], c[1] / 10))
    assert (got2, eng2.total_cycles) == ((120, 200), 140) and seen == [(60, 800), (100, 500), (120, 200), (120, 200)]
    seen.clear()
    fastest([(10, 0), (50, 5000)], stream, bytes_per_cycle=10, latency_cycles=0, bound=lambda c: max(c[0], c[1] / 10))
    assert seen == [(10, 0)]  # the second's bound 500 exceeds the first's total 10: not replayed


def test_nm_with_deletion_rule():
    # sim/policy.nm_with_deletion: K' of the compaction is replaced by the N:M K, M'/N' are kept
    from accelsim.sim.policy import nm_with_deletion

    dims, note = nm_with_deletion([(8, 4, 16), (8, 2, 32)], 32, 16, 2, 4, "w: ...", "PEs run")
    assert dims == [(8, 4, 16), (8, 2, 16)]
    assert note == "w: ...; K deletion not used: the 2:4 PEs run the full K (exclusive along K)"
    assert nm_with_deletion([(8, 4, 32)], 32, 16, 2, 4, "w", "PEs run") == ([(8, 4, 16)], "w")
