"""GPU tensor-core model (accelsim.sim.gpu): hand-worked waves, traffic, split-K, the 2:4 decision."""

import math
from pathlib import Path

import numpy as np
import pytest

from accelsim.errors import HardwareConfigError
from accelsim.hw.config import GpuCompute, HardwareConfig, MemoryLevel, SparsityFeature
from accelsim.hw.family import check_hw
from accelsim.sim import gpu
from accelsim.sim.memory import run_tiles
from accelsim.sim.workload import conv_params
from accelsim.sim.workload import synthetic_workload as workload_from_masks


def tiny(sms=2, ctas_per_sm=1, l2=1 << 20, cta=(128, 128, 32), hbm_latency=0, operand="auto", smem=164 * 1024):
    """A small A100-like GPU: 4 tensor cores x 256 fp16 MACs/cycle per SM (1024/SM), mma m16n8k16 and
    sparse m16n8k32, 1 GHz clock, 64 B/cycle HBM, 1 us launch."""
    comp = GpuCompute(sms, 4, 256, (16, 8, 16), (16, 8, 32), "fp16", 2, (cta,), ctas_per_sm, 1e-6)
    mem = (MemoryLevel("smem", smem, math.inf, 20, 4, False), MemoryLevel("l2", l2, math.inf, 100, 32, True),
           MemoryLevel("dram", None, 64e9, hbm_latency, 32, True))
    return HardwareConfig("tiny", "gpu", 1e9, comp, SparsityFeature("nm", operand, 2, 4, metadata_bits=2), mem,
                          None, "tiny.yaml")


def a100(dtype="fp16"):
    """docs/sources.md "NVIDIA A100": 108 SMs x 4 tensor cores, 256 fp16 (512 int8) MACs/clk per core,
    1.41 GHz, 40 MB L2, 1555 GB/s HBM2, 164 KB shared memory per SM. Launch and latency assumed."""
    if dtype == "fp16":
        comp = GpuCompute(108, 4, 256, (16, 8, 16), (16, 8, 32), "fp16", 2, ((128, 128, 32),), 2, 5e-6)
    else:
        comp = GpuCompute(108, 4, 512, (16, 8, 32), (16, 8, 64), "int8", 1, ((128, 128, 64),), 2, 5e-6)
    mem = (MemoryLevel("smem", 164 * 1024, math.inf, 30, 4, False),
           MemoryLevel("l2", 40 * 10**6, math.inf, 200, 32, True),
           MemoryLevel("dram", None, 1555e9, 500, 32, True))
    return HardwareConfig("a100", "gpu", 1.41e9, comp, SparsityFeature("nm", "auto", 2, 4, metadata_bits=2), mem,
                          None, "a100.yaml")


def total(m, n, k, hw, sparse_a, groups=1):
    plan, stream, fixed, _ = gpu.gemm_cost(m, n, k, groups, hw, sparse_a=sparse_a)
    r = run_tiles(stream, bytes_per_cycle=hw.dram().bandwidth_bytes_per_s / hw.clock_hz,
                  latency_cycles=hw.dram().latency_cycles)
    return r.total_cycles + fixed


def test_plan_waves_and_mma_cycles():
    # M=N=256, K=64 on 2 SMs, 128x128x32 CTAs: 2x2 = 4 tiles in ceil(4/2) = 2 waves, ceil(64/32) = 2
    # steps; one step = 128*128*32 MACs / (4*256 MACs/cycle) = 512 cycles, 256 with mma.sp (2x).
    p = gpu.plan_gemm(256, 256, 64, 1, tiny().compute, sparse_a=False)
    assert (p.tiles_m, p.tiles_n, p.split_k, p.ctas, p.ksteps, p.waves, p.step_cycles) == (2, 2, 1, 4, 2, 2, 512)
    assert gpu.plan_gemm(256, 256, 64, 1, tiny().compute, sparse_a=True).step_cycles == 256
    # tile quantisation: M=N=129, K=33 still costs 2x2 tiles and 2 full K steps
    q = gpu.plan_gemm(129, 129, 33, 1, tiny().compute, sparse_a=False)
    assert (q.ctas, q.ksteps) == (4, 2)
    # wave quantisation with 2 CTAs per SM: 5 tiles on 2 SMs -> waves of 4; the last wave has one CTA
    s = gpu.gemm_stream(gpu.plan_gemm(640, 128, 32, 1, tiny(ctas_per_sm=2).compute, sparse_a=False),
                        gpu.gemm_traffic(gpu.plan_gemm(640, 128, 32, 1, tiny(ctas_per_sm=2).compute, sparse_a=False),
                                         tiny(ctas_per_sm=2).compute, 1 << 20, compressed_a=False),
                        tiny(ctas_per_sm=2).compute, ("a", "b"))
    assert s.compute_cycles.tolist() == [2 * 512, 1 * 512]  # busiest SM: 2 CTAs, then 1


def test_swizzled_cta_order():
    p = gpu.plan_gemm(256, 256, 64, 1, tiny().compute, sparse_a=False)
    split, g, row, col = gpu.cta_order(p)
    assert list(zip(row.tolist(), col.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # bands of 2 columns over a 2x3 tile grid: band 0 row by row, then the 1-wide band 1
    p = gpu.plan_gemm(256, 384, 32, 1, tiny().compute, sparse_a=False)
    split, g, row, col = gpu.cta_order(p, swizzle=2)
    assert list(zip(row.tolist(), col.tolist())) == [(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2)]


def test_traffic_with_and_without_l2_reuse():
    hw = tiny()
    p = gpu.plan_gemm(256, 256, 64, 1, hw.compute, sparse_a=False)
    # wave 0 = row tile 0 x col tiles 0,1: A panel 128x64x2 B = 16384, B panels 2 x 64x128x2 = 32768
    t = gpu.gemm_traffic(p, hw.compute, 1 << 20, compressed_a=False)
    assert t.a.tolist() == [16384, 16384] and t.b.tolist() == [32768, 0]
    assert t.out.tolist() == [65536, 65536]  # 2 tiles x 128x128 x 2 B per wave
    assert t.epilogue.tolist() == [65536, 65536]  # what the SMs write into L2
    # LRU window for wave 1's B panels: everything touched since wave 0 (A0 + B0 + B1 = 49152)
    # plus wave 1's new A1 (16384) = 65536 bytes: kept with a 64 KiB L2, re-read with one byte less
    assert gpu.gemm_traffic(p, hw.compute, 65536, compressed_a=False).b.tolist() == [32768, 0]
    assert gpu.gemm_traffic(p, hw.compute, 65535, compressed_a=False).b.tolist() == [32768, 32768]
    assert gpu.gemm_traffic(p, hw.compute, None, compressed_a=False).b.tolist() == [32768, 32768]
    # 2:4-compressed A: half the values + 2 bits per kept value = 128 x 64 x (1 + 1/8) = 9216 per panel
    t = gpu.gemm_traffic(p, hw.compute, 1 << 20, compressed_a=True)
    assert t.a.tolist() == [9216, 9216]
    # the formula equals formats.storage_bits("nm") for a 2:4 fp16 row
    from accelsim.sim.formats import storage_bits
    assert gpu.a_row_bytes(64, 2, True) * 8 == storage_bits("nm", (1, 64), 32, 16, n=2, m=4)


def test_l2_lru_panel_misses_hand_worked():
    # waves 0: panels 0, 1; 1: panel 2; 2: panel 0 again (10 bytes each). Panel 0's window in wave 2:
    # panels last touched at or after wave 0 (0, 1, 2) = 30 bytes: a hit with 30 bytes of L2, not 29
    wave, key, nb = np.array([0, 0, 1, 2]), np.array([0, 1, 2, 0]), np.array([10, 10, 10, 10])
    assert gpu.l2_panel_misses(wave, key, nb, 3, 30).tolist() == [True, True, True, False]
    assert gpu.l2_panel_misses(wave, key, nb, 3, 29).tolist() == [True, True, True, True]
    # two CTAs of one wave sharing a panel fetch it once
    assert gpu.l2_panel_misses(np.array([0, 0]), np.array([5, 5]), np.array([8, 8]), 1, None).tolist() == [True, False]


def test_pipeline_chunk_covers_latency_within_shared_memory():
    # step 512, loads 384 cycles per step: c*512 >= 600 + c*384 -> c = ceil(600/128) = 5
    assert gpu.pipeline_chunk(np.array([512]), np.array([384.0]), 600, 8) == 5
    assert gpu.pipeline_chunk(np.array([512]), np.array([384.0]), 600, 4) == 4  # shared memory caps it
    assert gpu.pipeline_chunk(np.array([512, 512]), np.array([0.0, 384.0]), 600, 8) == 5  # worst wave
    assert gpu.pipeline_chunk(np.array([512]), np.array([600.0]), 600, 7) == 7  # bandwidth-bound
    assert gpu.pipeline_chunk(np.array([512]), np.array([384.0]), 0, 7) == 1


def test_fastest_cta_tile_is_chosen():
    # 128x128x32 on 4 SMs: one 128x128 CTA takes one 512-cycle step; four 64x64 CTAs take
    # 64*64*32/1024 = 128 cycles each, side by side
    import dataclasses

    hw = tiny(sms=4)
    hw = dataclasses.replace(hw, compute=dataclasses.replace(hw.compute, cta_tiles=((128, 128, 32), (64, 64, 32))))
    plan, s, _, _ = gpu.gemm_cost(128, 128, 32, 1, hw, sparse_a=False)
    assert plan.tile == (64, 64, 32) and s.compute_cycles.tolist() == [128]


def test_hand_worked_op_through_the_memory_engine():
    hw = tiny()
    plan, s, fixed, dense = gpu.gemm_cost(256, 256, 64, 1, hw, sparse_a=False)
    # latency 0 -> one main-loop step per stream tile; loads spread evenly over a wave's 2 steps
    assert s.compute_cycles.tolist() == [512] * 4
    assert s.load_bytes["a"].tolist() == [8192, 8192, 8192, 8192]
    assert s.load_bytes["b"].tolist() == [16384, 16384, 0, 0]
    assert s.store_bytes.tolist() == [0, 65536, 0, 65536]
    assert s.fence.tolist() == [False, False, True, False]  # wave 1's CTAs start after wave 0's
    # at 64 B/cycle: L0 0-384, L1 384-768; C0 384-896; C1 896-1408; L2 waits for C1: 1408-1536;
    # L3 1536-1664 (loads before the waiting S1); S1 1664-2688; C2 1536-2048; C3 2048-2560;
    # S3 2688-3712
    r = run_tiles(s, bytes_per_cycle=64, latency_cycles=0)
    assert (r.total_cycles, r.compute_cycles, r.stall_cycles) == (3712, 2048, 1664)
    assert fixed == 1000  # 1 us launch at 1 GHz
    assert dense == {"a": 32768, "b": 32768, "output": 131072}


def test_chunks_cover_dram_latency_and_waves_are_not_prefetched():
    # latency 600; wave 0 loads 49152 B = 384 cycles per 512-cycle step: ceil(600/128) = 5 steps,
    # capped at the 2 steps there are -> one tile per wave. loads 768 and 256 cycles, stores 1024.
    # L0 0-768 (+600 -> 1368); C0 1368-2392; L1 (fenced) 2392-2648 (3248); S0 2648-3672;
    # C1 3248-4272; S1 4272-5296
    hw = tiny(hbm_latency=600)
    _, s, _, _ = gpu.gemm_cost(256, 256, 64, 1, hw, sparse_a=False)
    assert s.compute_cycles.tolist() == [1024, 1024]
    assert run_tiles(s, bytes_per_cycle=64, latency_cycles=600).total_cycles == 5296


def test_split_k_for_few_tiles():
    # one 128x128 tile, K = 1024 (32 steps) on 4 SMs: split-K into 4 slices of 8 steps, one wave
    hw = tiny(sms=4)
    plan, s, fixed, dense = gpu.gemm_cost(128, 128, 1024, 1, hw, sparse_a=False)
    assert (plan.split_k, plan.ksteps, plan.waves) == (4, 8, 1)
    assert int(s.compute_cycles.sum()) == 8 * 512
    # fp32 partials 4 x 128x128 x 4 B = 256 KiB stay in the 1 MiB L2: only the reduced output moves
    assert dense["output"] == 128 * 128 * 2 and dense["partials"] == 0
    assert s.load_bytes["a"].sum() == 128 * 1024 * 2  # every K slice of A read once
    assert fixed == 2 * 1000  # GEMM + reduction kernel
    # with a 1000-byte L2 the 4 partials spill to HBM: written by the slices, read back by the
    # reduction (the 4-way plan, fixed here; the search may prefer another split on this machine)
    small = tiny(sms=4, l2=1000)
    p4 = gpu.plan_gemm(128, 128, 1024, 1, small.compute, sparse_a=False, split=4)
    t4 = gpu.gemm_traffic(p4, small.compute, 1000, compressed_a=False)
    assert t4.final_load == 4 * 128 * 128 * 4 and t4.out.sum() + t4.final_store == 4 * 128 * 128 * 4 + 32768


def test_split_k_only_when_faster():
    # issue 11: forcing split-K whenever tiles < SMs made M512 N128 K128 (12,756 cycles on a100_24)
    # dearer than the 4x larger M512 N512 K128 (7,430). The search now also tries s = 1 and keeps
    # split-K only where it wins, its second launch included.
    from accelsim.hw import load_hw
    from pathlib import Path
    # the ideal model's numbers (issue 11 quoted them on the ideal a100_24, now a100_24_ideal.yaml)
    hw = load_hw(Path(__file__).resolve().parents[1] / "hwconfigs" / "a100_24_ideal.yaml")
    assert gpu.split_candidates(512, 128, 128, 1, hw.compute, (64, 64, 32)) == (1, 2, 4)
    small, large = total(512, 128, 128, hw, False), total(512, 512, 128, hw, False)
    assert small <= large < 12756
    plan = gpu.gemm_cost(512, 128, 128, 1, hw, sparse_a=False)[0]
    assert plan.split_k == 1  # 16 tiles of 64x64: 4 K steps are too few to pay a second launch
    # a long K with one output tile still splits: 128x128 K=8192 is 256 steps on one SM otherwise
    assert gpu.gemm_cost(128, 128, 8192, 1, hw, sparse_a=False)[0].split_k > 1


@pytest.mark.parametrize("sparse_a", [False, True])
@pytest.mark.parametrize("name", ["a100_24", "a100_24_ideal", "h100_24"])
def test_cost_never_falls_as_the_gemm_grows(sparse_a, name):
    # issue 11 "Done when": on a100_24 (library-realistic since issue 11; its ideal twin and the
    # Hopper file too), total cycles (engine + launches) are non-decreasing along M, N and K over a
    # grid spanning split-K, one-wave and many-wave GEMMs, dense and 2:4
    from accelsim.hw import load_hw
    from pathlib import Path
    hw = load_hw(Path(__file__).resolve().parents[1] / "hwconfigs" / f"{name}.yaml")
    mn, ks = (64, 256, 1024, 4096), (32, 128, 1024, 8192)
    grid = (mn, mn, ks)
    cost = {(m, n, k): total(m, n, k, hw, sparse_a) for m in mn for n in mn for k in ks}
    falls = []
    for shape, c in cost.items():
        for ax in range(3):
            i = grid[ax].index(shape[ax])
            if i + 1 < len(grid[ax]):
                bigger = list(shape)
                bigger[ax] = grid[ax][i + 1]
                if cost[tuple(bigger)] < c:
                    falls.append((shape, c, tuple(bigger), cost[tuple(bigger)]))
    assert falls == []


def test_bad_cta_tile_and_shared_memory():
    # checked at load (accelsim/hw/families/gpu.py validate; check_hw runs the same on a hand-built config)
    with pytest.raises(HardwareConfigError, match="tiny.yaml: compute.cta_tile: .* not a multiple of sparse_mma_shape"):
        check_hw(tiny(cta=(128, 128, 16)))
    # 2 CTAs x 2 stages x (128x32 + 32x128) x 2 B = 65536 > 32 KiB
    with pytest.raises(HardwareConfigError, match="need 65536 bytes of smem"):
        check_hw(tiny(ctas_per_sm=2, smem=32 * 1024))
    assert check_hw(tiny()) == tiny()


# ---- when the sparse rate applies ----------------------------------------------------------


def _decide(hw, compliance, m=64, n=64, k=64, kind="matmul", pass_="fwd", a="a", b="b", roles=None):
    roles = roles or {}
    return gpu.decide_sparsity(hw, m=m, n=n, k=k, kind=kind, pass_=pass_, a=a, b=b,
                               role_of=lambda x: roles.get(x, "activation"), compliance=compliance.get)


def test_decide_sparsity_rules():
    hw = tiny()
    c = _decide(hw, {"a": 1.0, "b": 1.0})
    assert (c.operand, c.swap, c.fallback) == ("a", False, None)  # A preferred: no transposition
    c = _decide(hw, {"a": 0.5, "b": 1.0})
    assert (c.operand, c.swap) == ("b", True)  # 2:4 operand is B: C^T = B^T A^T
    c = _decide(hw, {"a": 0.63, "b": 0.9})
    assert c.operand is None and "a not 2:4 along K, the fwd reduction dim: 37% of groups of 4 have >2" in c.fallback
    assert "b not 2:4" in c.fallback and "10% of groups" in c.fallback
    c = _decide(hw, {"a": 1.0, "b": 0.0}, m=24)
    assert c.operand is None and "M=24 not a multiple of 16 (cuSPARSELt, fp16)" in c.fallback
    c = _decide(tiny(operand="weight"), {"a": 1.0})
    assert c.operand is None and c.fallback == "no weight operand to run 2:4 in this matmul fwd"
    c = _decide(tiny(operand="weight"), {"input": 1.0, "weight": 0.5}, kind="conv2d", pass_="dgrad",
                a="grad_output", b="weight", roles={"weight": "weight"})
    assert "weight not 2:4 along K (output channels), the dgrad reduction dim: 50% of groups" in c.fallback
    assert "fwd N:M weight mask runs along C" in c.fallback
    assert gpu.sparse_dim_multiple(1) == 32 and gpu.sparse_dim_multiple(2) == 16


def _nm_rows(rows, cols):
    """2:4 along the last dim: keep positions 0 and 2 of every 4."""
    mask = np.zeros((rows, cols), dtype=bool)
    mask[:, 0::4] = True
    mask[:, 2::4] = True
    return mask


def test_op_cost_matmul_sparse_a_and_swapped_b():
    hw = tiny(cta=(64, 64, 32))
    a24 = _nm_rows(64, 64)  # a (M,K): 2:4 along K
    dense = np.ones((64, 64), dtype=bool)
    w = workload_from_masks("matmul", "fwd", {"a": a24, "b": dense})
    sp, dn = gpu.op_cost(w, hw, sparse=True), gpu.op_cost(w, hw, sparse=False)
    assert (sp.sparse_operand, sp.fallback, dn.sparse_operand) == ("a", None, None)
    assert 2 * sp.compute_cycles == dn.compute_cycles
    assert sp.tiles.load_bytes["a"].sum() == 64 * 64 * 9 // 8 and dn.tiles.load_bytes["a"].sum() == 64 * 64 * 2
    assert sp.dram_bytes_dense["a"] == 64 * 64 * 2
    assert sp.effectual_macs == 64 * 64 * 32
    # b (K,N) 2:4 along K (its first dim): run as C^T = B^T A^T
    w = workload_from_masks("matmul", "fwd", {"a": dense, "b": _nm_rows(64, 64).T.copy()})
    sp = gpu.op_cost(w, hw, sparse=True)
    assert (sp.sparse_operand, sp.fallback) == ("b", None) and 2 * sp.compute_cycles == dn.compute_cycles
    # not 2:4 anywhere: dense rate and the reason
    rng = np.random.default_rng(0)
    w = workload_from_masks("matmul", "fwd", {"a": rng.random((64, 64)) < 0.7, "b": dense})
    sp = gpu.op_cost(w, hw, sparse=True)
    assert sp.sparse_operand is None and sp.compute_cycles == dn.compute_cycles
    assert "a not 2:4 along K" in sp.fallback and "b not 2:4 along K" in sp.fallback


def test_op_cost_conv_weight_24_in_fwd_not_in_dgrad():
    # weight (K=16, C=16, 1, 1) with w[k, c] = 1 for c % 4 < 2: 2:4 along C (fwd) but columns
    # c % 4 < 2 are all ones along K (dgrad): half the groups of 4 along K hold 4 non-zeros.
    hw = tiny(cta=(64, 64, 32), operand="weight")
    w = np.zeros((16, 16, 1, 1), dtype=bool)
    w[:8, (np.arange(16) % 4) < 2] = True
    w[8:, (np.arange(16) % 4) >= 2] = True  # no all-zero column: nothing for structure.compact to delete
    params = conv_params(1, 16, 4, 4, 16, 1, 1)
    x = np.ones((1, 16, 4, 4), dtype=bool)
    dy = np.ones((1, 16, 4, 4), dtype=bool)
    fwd = gpu.op_cost(workload_from_masks("conv2d", "fwd", {"input": x, "weight": w}, params,
                                          roles={"weight": "weight"}), hw, sparse=True)
    assert (fwd.sparse_operand, fwd.fallback) == ("weight", None)
    dg = gpu.op_cost(workload_from_masks("conv2d", "dgrad", {"grad_output": dy, "weight": w}, params,
                                         roles={"weight": "weight"}), hw, sparse=True)
    assert dg.sparse_operand is None
    assert "weight not 2:4 along K (output channels), the dgrad reduction dim: 50% of groups" in dg.fallback


# ---- the model's shape on the full A100 (docs/sources.md "NVIDIA A100"; validation targets are not tuned to)


def test_a100_speedups_rise_with_k_and_stay_below_2x():
    hw = a100("int8")
    sp = [total(10240, 10240, k, hw, False) / total(10240, 10240, k, hw, True) for k in (1280, 10240, 20480)]
    assert sp[0] < sp[1] < sp[2] < 2.0  # Mishra et al. Fig. 3: monotone rise towards 2x
    big = a100("fp16")
    s = total(8192, 8192, 8192, big, False) / total(8192, 8192, 8192, big, True)
    assert 1.9 < s < 2.0
    small = total(256, 256, 256, big, False) / total(256, 256, 256, big, True)
    # launch-bound: little to gain. 4 tiles x 8 steps: unsplit dense 8 x 512 = 4096 cycles, mma.sp 2048,
    # beside a 5 us = 7050-cycle launch, so at most (4096 + 7050) / (2048 + 7050) = 1.225x (memory
    # time adds to both). Until issue 11 forced split-K (8 slices of one step) kept it below 1.1.
    assert 1.0 < small <= (4096 + 7050) / (2048 + 7050)


def test_shipped_a100_yaml_conv_fwd_and_first_layer():
    from pathlib import Path

    from accelsim.hw import load_hw

    import dataclasses

    # hand-worked on the ideal-kernel model (a100_24_ideal.yaml: a100_24.yaml before issue 11's fit)
    hw = load_hw(Path(__file__).resolve().parents[1] / "hwconfigs" / "a100_24_ideal.yaml")
    hw = dataclasses.replace(hw, compute=dataclasses.replace(hw.compute, cta_tiles=((128, 128, 32),)))
    # 3x3 conv, C = K = 64, weight 2:4 along C (keep c % 4 in {0, 2}): fwd runs the weight as mma.sp's A
    w = np.zeros((64, 64, 3, 3), dtype=bool)
    w[:32, 0::4] = True
    w[:32, 2::4] = True
    w[32:, 1::4] = True  # the other filters keep the other two: no all-zero (c,r,s) tap to delete
    w[32:, 3::4] = True
    x = np.ones((2, 64, 16, 16), dtype=bool)
    work = workload_from_masks("conv2d", "fwd", {"input": x, "weight": w},
                               conv_params(2, 64, 16, 16, 64, 3, 3, padding=1),
                               roles={"weight": "weight"})
    sp, dn = gpu.op_cost(work, hw, sparse=True), gpu.op_cost(work, hw.dense(), sparse=False)
    assert (sp.sparse_operand, sp.fallback) == ("weight", None)
    # C^T = W^T X^T: M = 64 filters, N = 2*16*16 = 512 pixels -> 1 x 4 tiles, 576/32 = 18 steps;
    # 4 tiles < 108 SMs: split-K 18 ways -> 72 CTAs of one 512-cycle step (256 with mma.sp).
    # Epilogue: 72 partial tiles of 64 valid rows x 128 x 4 B = 2359296 B into L2 at 5120 B/cycle
    # = 461 cycles; reduction kernel: reads those partials and writes 64 x 512 x 2 B = 2424832 B -> 474
    launch = math.ceil(4e-6 * 1.41e9)  # 5640
    assert dn.compute_cycles == 512 + 461 + 474 and dn.fixed_cycles == 2 * launch  # GEMM + split-K reduction
    # split-K only where faster (issue 11): with mma.sp the split costs 256 + 461 + 474 + 2 launches =
    # 12471 cycles, unsplit 18 x 256 steps + an epilogue of 4 tiles x 64 x 128 x 2 B / 5120 = 13 cycles
    # + one launch = 10261: the sparse run does not split (until issue 11 it was forced to)
    assert sp.compute_cycles == 18 * 256 + 13 and sp.fixed_cycles == launch
    # the compressed weight moves 9/16 of its dense bytes; the input is read once (fits in L2)
    assert sp.tiles.load_bytes["weight"].sum() == 64 * 576 * 9 // 8
    assert sp.tiles.load_bytes["input"].sum() == 2 * 64 * 16 * 16 * 2
    # a ResNet-like first layer with 4 input channels: K = C*R*S = 4*7*7 = 196, whole groups of 4 (a
    # C=3 layer's K=147 ends in a group of 3, which is not 2:4 at all), but not a multiple of 16
    # weight 2:4 along the conv reduction order (r, s, c), c fastest: keep 0 and 2 of every 4
    flat = (np.arange(196) % 4) % 2 == 0
    w1 = np.broadcast_to(flat.reshape(7, 7, 4).transpose(2, 0, 1), (64, 4, 7, 7)).copy()
    w1[1::2] = ~w1[1::2]  # odd filters keep 1 and 3 of every 4 (still 2:4): no all-zero tap to delete
    work = workload_from_masks("conv2d", "fwd", {"input": np.ones((1, 4, 32, 32), bool), "weight": w1},
                               conv_params(1, 4, 32, 32, 64, 7, 7, stride=2, padding=3), roles={"weight": "weight"})
    c = gpu.op_cost(work, hw, sparse=True)
    assert c.sparse_operand is None and "K=196 not a multiple of 16" in c.fallback


def test_implicit_conv_reads_and_writes_each_tensor_element_once():
    # 3x3 conv, N=2, C=K=16, 8x8, pad 1 on the tiny GPU (everything fits in L2, no split-K).
    # fwd A = input windows 128 x 144 but the input holds 2*16*8*8 = 2048 elements: 4096 bytes
    # moved, not 128*144*2; dgrad writes dX (2048 elements) not the 128 x 144 col matrix.
    hw = tiny()
    params = conv_params(2, 16, 8, 8, 16, 3, 3, padding=1)
    w = np.ones((16, 16, 3, 3), dtype=bool)
    act = np.ones((2, 16, 8, 8), dtype=bool)
    fwd = gpu.op_cost(workload_from_masks("conv2d", "fwd", {"input": act, "weight": w}, params), hw, sparse=False)
    assert fwd.tiles.load_bytes["input"].sum() == 2048 * 2
    assert fwd.tiles.load_bytes["weight"].sum() == 16 * 144 * 2
    dg = gpu.op_cost(workload_from_masks("conv2d", "dgrad", {"grad_output": act, "weight": w}, params), hw,
                     sparse=False)
    assert dg.tiles.store_bytes.sum() == 2048 * 2
    assert gpu._scaled(np.array([10, 9.125]), gpu.Fraction(1, 3)).tolist() == [4, 4]  # ceil(10/3), ceil(73/24)


def test_bad_sparse_mma_shape_names_the_file():
    import dataclasses

    hw = tiny()
    hw = dataclasses.replace(hw, compute=dataclasses.replace(hw.compute, sparse_mma_shape=(16, 8, 24), cta_tiles=((128, 128, 48),)))
    with pytest.raises(HardwareConfigError, match="tiny.yaml: compute.sparse_mma_shape"):
        check_hw(hw)


# ---- SSL structured weight sparsity deleted as a smaller dense GEMM (sim/structure.py)


def test_ssl_linear_weight_compacted_gemm_hand_worked():
    # linear fwd: x (256, 128) @ W^T, W stored (out 256, in 128), used transposed. Output neurons
    # 128..255 and input features 64..127 all zero: GEMM N 256 -> 128, K 128 -> 64.
    # Dense on tiny (2 SMs, 128x128x32 CTAs, step 512 cycles): 2x2 = 4 tiles in 2 waves x 4 K steps
    # = 4096 cycles. Compacted 256 x 128 x 64: 2 tiles (= SMs: no split-K) in 1 wave x 2 steps = 1024.
    hw = tiny()
    lw = np.ones((256, 128), dtype=bool)
    lw[128:] = False
    lw[:, 64:] = False
    work = workload_from_masks("matmul", "fwd", {"a": np.ones((256, 128), bool), "b": lw},
                               transposed={"b": True}, roles={"b": "weight"})
    sp, dn = gpu.op_cost(work, hw, sparse=True), gpu.op_cost(work, hw.dense(), sparse=False)
    assert (sp.compute_cycles, dn.compute_cycles) == (1024, 4096)
    assert sp.fixed_cycles == dn.fixed_cycles == 1000
    # fp16, all fits in L2: x's kept half of K (256 x 64 x 2 B), kept W 64 x 128 x 2 B, C 256 x 128 x 2 B
    assert int(sp.tiles.load_bytes["a"].sum()) == 32768 and int(dn.tiles.load_bytes["a"].sum()) == 65536
    assert int(sp.tiles.load_bytes["b"].sum()) == 16384 and int(dn.tiles.load_bytes["b"].sum()) == 65536
    assert int(sp.tiles.store_bytes.sum()) == 65536 and int(dn.tiles.store_bytes.sum()) == 131072
    # deletion is not the 2:4 hardware: the reason the sparse tensor cores were not used stays reported
    assert (sp.sparse_operand, dn.compaction) == ("b", None) and "b not 2:4 along K" in sp.fallback
    assert sp.compaction == "b: 128 of 256 N columns and 64 of 128 K lines all zero: GEMM N 256->128, K 128->64"
    # the same density scattered (every row and column keeps a non-zero): nothing deleted, dense rate
    u = np.random.default_rng(0).random((256, 128)) < 0.25  # not 2:4 either (some groups hold 3, 4)
    assert u.any(axis=0).all() and u.any(axis=1).all()
    uw = workload_from_masks("matmul", "fwd", {"a": np.ones((256, 128), bool), "b": u},
                             transposed={"b": True}, roles={"b": "weight"})
    su = gpu.op_cost(uw, hw, sparse=True)
    assert su.compute_cycles == 4096 and su.compaction is None


def test_ssl_grouped_conv_runs_at_the_largest_group():
    # groups=2, C=K=4, 3x3 pad 1, N=1 8x8: per group GEMM 64 x 2 x 18. Group 0 loses filter 1 (N 1),
    # group 1 its local channel 1 (K 9): the uniform batched launch runs 64 x 2 x 18 per group, the
    # same tiles and steps as dense (2 tiles, 1 K step of 512 cycles), but moves only the kept
    # weight: (1*18 + 2*9) * 2 B = 72 B instead of 4*2*9*2 = 144 B.
    hw = tiny()
    w = np.ones((4, 2, 3, 3), bool)
    w[1] = False
    w[2:, 1] = False
    p = conv_params(1, 4, 8, 8, 4, 3, 3, padding=1, groups=2)
    work = workload_from_masks("conv2d", "fwd", {"input": np.ones((1, 4, 8, 8), bool), "weight": w}, p,
                               roles={"weight": "weight"})
    sp, dn = gpu.op_cost(work, hw, sparse=True), gpu.op_cost(work, hw.dense(), sparse=False)
    assert sp.compute_cycles == dn.compute_cycles
    assert int(sp.tiles.load_bytes["weight"].sum()) == 72 and int(dn.tiles.load_bytes["weight"].sum()) == 144
    assert sp.compaction.endswith("GEMM N 2->1..2, K 18->9..18 (per group, 2 groups)")
    assert "not 2:4" in sp.fallback


def test_ssl_deletion_and_24_are_exclusive_24_first():
    # a weight (M=64, K=64) keeping positions 0 and 2 of every 4 in every row: 2:4 along K *and* half
    # its K lines all zero. mma.sp runs (2x rate, as test_op_cost_matmul_sparse_a_and_swapped_b);
    # the deletion is reported as not used.
    hw = tiny(cta=(64, 64, 32))
    w = workload_from_masks("matmul", "fwd", {"a": _nm_rows(64, 64), "b": np.ones((64, 64), bool)},
                            roles={"a": "weight"})
    sp, dn = gpu.op_cost(w, hw, sparse=True), gpu.op_cost(w, hw.dense(), sparse=False)
    assert (sp.sparse_operand, sp.fallback) == ("a", None) and 2 * sp.compute_cycles == dn.compute_cycles
    assert sp.compaction == "not used (2:4 mma.sp runs instead): a: 32 of 64 K lines all zero: GEMM K 64->32"


def test_ssl_row_deletion_combines_with_24():
    # the shared rule (sim/policy.nm_with_deletion, as on systolic N:M PEs): deleted M/N lines combine
    # with 2:4, only K deletion is exclusive. Weight a (M=128, K=64) 2:4 along K with rows 64..127
    # all zero; b dense 64 x 64; tiny GPU (2 SMs, 64x64x32 CTAs, dense step 64*64*32/1024 = 128
    # cycles, 64 with mma.sp; no L2 bandwidth given: no epilogue cycles).
    # Full GEMM at 2:4: 2 x 1 tiles = 2 SMs, one wave of 64/32 = 2 steps -> 2 * 64 = 128 cycles.
    # Compacted M' = 64 (a multiple of 16) at 2:4: 1 tile < 2 SMs; split-K 2 would be one wave of 1
    # step = 64 cycles plus the reduction kernel's 1000-cycle launch, slower than 2 steps unsplit =
    # 128 cycles, so no split (split-K only where faster, issue 11; until then it was forced: 64).
    # Same compute cycles as the full GEMM, fewer bytes: the deletion is used.
    hw = tiny(cta=(64, 64, 32))
    a = _nm_rows(128, 64)
    a[64:] = False
    w = workload_from_masks("matmul", "fwd", {"a": a, "b": np.ones((64, 64), bool)}, roles={"a": "weight"})
    sp = gpu.op_cost(w, hw, sparse=True)
    assert (sp.sparse_operand, sp.fallback) == ("a", None)
    assert sp.compute_cycles == 128 and sp.fixed_cycles == 1000
    # positions 1 and 3 of every 4 are zero in every row: those K lines are all zero too, not deleted
    assert sp.compaction == ("a: 64 of 128 M rows and 32 of 64 K lines all zero: GEMM M 128->64, K 64->32; "
                             "K deletion not used: the 2:4 mma.sp runs the full K (exclusive along K)")
    full = gpu.gemm_cost(128, 64, 64, 1, hw, sparse_a=True)
    assert int(full[1].compute_cycles.sum()) == 128


def test_hand_built_config_without_a_role_is_an_error_not_a_default():
    # the model reads levels by role (HardwareConfig.role); it used to take "the last shared level
    # with a capacity" as L2 and silently ran without one
    import dataclasses

    hw = tiny()
    no_l2 = dataclasses.replace(hw, memory=(hw.memory[0], hw.memory[2]))
    with pytest.raises(HardwareConfigError, match=r"^tiny.yaml: memory: no level 'l2' \(levels: smem, dram\)$"):
        gpu.gemm_cost(64, 64, 64, 1, no_l2, sparse_a=False)
    with pytest.raises(HardwareConfigError, match=r"^tiny.yaml: memory: no level l2 \(family gpu needs one level "
                                                  r"per role: smem, l2, dram\)$"):
        check_hw(no_l2)


# ---- kernel_model: library (issue 11; accelsim/sim/gpu.py "Kernel model")


def test_library_kernel_model_scales_mainloop_and_adds_fixed_time():
    import dataclasses

    base = tiny()
    lib = dataclasses.replace(base, compute=dataclasses.replace(
        base.compute, kernel_model="library", mainloop_efficiency=(0.8, 0.5), kernel_fixed_s=(2e-6, 3e-6)))
    # 256x256x64 on 2 SMs, 128x128x32 CTAs: 2 waves x 2 steps; a step is 128*128*32 / 1024 = 512 cycles
    # dense at the MMA rate -> 512 / 0.8 = 640 cycles; mma.sp 256 -> 256 / 0.5 = 512
    pd, sd, fd, _ = gpu.gemm_cost(256, 256, 64, 1, lib, sparse_a=False)
    ps, ss, fs, _ = gpu.gemm_cost(256, 256, 64, 1, lib, sparse_a=True)
    assert (pd.step_cycles, ps.step_cycles) == (640, 512)
    assert int(sd.compute_cycles.sum()) == 2 * 2 * 640 and int(ss.compute_cycles.sum()) == 2 * 2 * 512
    # fixed: 1 us launch (1000 cycles at 1 GHz) + 2 us dense / 3 us sparse kernel time
    assert (fd, fs) == (3000, 4000)
    # the ideal defaults leave every number of the ideal model as it was
    assert gpu.gemm_cost(256, 256, 64, 1, base, sparse_a=False)[0].step_cycles == 512
    assert base.compute.kernel_model == "ideal" and base.compute.kernel_fixed_s == (0.0, 0.0)


def _gpu_yaml(tmp_path, extra: str):
    src = (Path(__file__).resolve().parents[1] / "hwconfigs" / "a100_24_ideal.yaml").read_text()
    p = tmp_path / "g.yaml"
    assert src.count("  kernel_model: ideal\n") == 1
    p.write_text(src.replace("  kernel_model: ideal\n", extra))
    return p


def test_library_kernel_model_keys_load_and_are_checked(tmp_path):
    from accelsim.hw import load_hw

    hw = load_hw(_gpu_yaml(tmp_path, "  kernel_model: library\n  mainloop_efficiency: {dense: 0.7, sparse: 0.6}\n"
                                     "  kernel_fixed: {dense: 10 us, sparse: 60 us}\n"))
    assert hw.compute.kernel_model == "library"
    assert hw.compute.mainloop_efficiency == (0.7, 0.6)
    assert hw.compute.kernel_fixed_s == pytest.approx((10e-6, 60e-6), rel=1e-12)
    for extra, msg in (
            ("  mainloop_efficiency: {dense: 0.7, sparse: 0.6}\n",
             r"compute\.mainloop_efficiency: only with kernel_model: library"),
            ("  kernel_model: library\n  mainloop_efficiency: {dense: 1.5, sparse: 0.6}\n",
             r"compute\.mainloop_efficiency\.dense: must be a number in \(0, 1\], got '1.5'"),
            ("  kernel_model: library\n  mainloop_efficiency: {dense: 0.7}\n", r"compute\.mainloop_efficiency"),
            ("  kernel_model: library\n  kernel_fixed: {dense: -1 us, sparse: 0 us}\n", r"compute\.kernel_fixed\.dense"),
            ("  kernel_model: fast\n", r"compute\.kernel_model"),
            ("  kernel_model: library\n  cta_fixed: {dense: 1 us, sparse: -2 us}\n", r"compute\.cta_fixed\.sparse"),
            ("  kernel_model: library\n  sparse_split_k: 3\n", r"compute\.sparse_split_k: must be true or false"),
            ("  kernel_model: library\n  sparse_cta_tile: [[256, 128, 20]]\n",
             r"compute\.cta_tile: \[256, 128, 20\] is not a multiple of mma_shape"),
            ("  sparse_split_k: false\n", r"compute\.sparse_split_k: only with kernel_model: library"),
            ("  cta_fixed: {dense: 1 us, sparse: 1 us}\n", r"compute\.cta_fixed: only with kernel_model: library")):
        with pytest.raises(HardwareConfigError, match=msg):
            load_hw(_gpu_yaml(tmp_path, extra))


def test_library_cta_fixed_per_wave_and_sparse_kernel_choice():
    """cta_fixed (accelsim/sim/gpu.py "Kernel model"): each wave pays it once per CTA on its busiest
    SM; sparse_cta_tile / sparse_split_k restrict the 2:4 kernel search."""
    import dataclasses

    base = tiny()
    lib = dataclasses.replace(base, compute=dataclasses.replace(
        base.compute, kernel_model="library", cta_fixed_s=(1e-6, 2e-6)))
    # 256x256x64 on 2 SMs, 128x128x32 CTAs: 2 waves of 2 CTAs (one per SM), 2 steps of 512 cycles
    # dense (256 with mma.sp): + 1 us = 1000 cycles per wave dense, 2000 per wave 2:4, at 1 GHz
    _, sd, _, _ = gpu.gemm_cost(256, 256, 64, 1, lib, sparse_a=False)
    _, ss, _, _ = gpu.gemm_cost(256, 256, 64, 1, lib, sparse_a=True)
    _, bd, _, _ = gpu.gemm_cost(256, 256, 64, 1, base, sparse_a=False)
    assert int(sd.compute_cycles.sum()) == int(bd.compute_cycles.sum()) + 2 * 1000
    assert int(ss.compute_cycles.sum()) - int(gpu.gemm_cost(256, 256, 64, 1, base, sparse_a=True)[1]
                                             .compute_cycles.sum()) == 2 * 2000
    # 2 CTAs per SM: a wave of 4 CTAs has 2 on its busiest SM -> 2 x 1000
    two = dataclasses.replace(lib, compute=dataclasses.replace(lib.compute, ctas_per_sm=2))
    two_base = dataclasses.replace(base, compute=dataclasses.replace(base.compute, ctas_per_sm=2))
    assert (int(gpu.gemm_cost(256, 256, 64, 1, two, sparse_a=False)[1].compute_cycles.sum())
            - int(gpu.gemm_cost(256, 256, 64, 1, two_base, sparse_a=False)[1].compute_cycles.sum())) == 2000
    # the 2:4 kernel list: one 64x64x32 kernel, no split-K, while the dense search splits K
    big = tiny(cta=(128, 128, 32))
    big = dataclasses.replace(big, compute=dataclasses.replace(
        big.compute, cta_tiles=((128, 128, 32), (64, 64, 32)), kernel_model="library",
        sparse_cta_tiles=((64, 64, 32),), sparse_split_k=False))
    p_sp = gpu.gemm_cost(128, 128, 4096, 1, big, sparse_a=True)[0]
    assert (p_sp.tile, p_sp.split_k) == ((64, 64, 32), 1)
    assert gpu.gemm_cost(128, 128, 4096, 1, big, sparse_a=False)[0].split_k > 1


def test_compress_cycles_hand_worked():
    """Run-time 2:4 compression (gpu.compress_cycles): launch + 2:4 kernel_fixed + (read e bytes, write
    e/2 + 1/8 bytes per value) / HBM bytes per cycle. tiny(): 1 us launch at 1 GHz, 64 B/cycle, fp16:
    4096 values -> 8192 + 4608 = 12800 B -> 200 cycles; + 1000 launch + 3000 (3 us fixed)."""
    import dataclasses

    base = tiny()
    lib = dataclasses.replace(base, compute=dataclasses.replace(
        base.compute, kernel_model="library", kernel_fixed_s=(0.0, 3e-6)))
    assert gpu.compress_cycles(lib, 4096) == 1000 + 3000 + 200


def test_runtime_sparse_activation_pays_compression_only_in_the_library_model():
    """A 2:4 operand that is not a weight is compressed at run time (library model only)."""
    import dataclasses

    from accelsim.sim.workload import gemm_workload
    from accelsim.gemm import two_four_words

    ideal = tiny()
    lib = dataclasses.replace(ideal, compute=dataclasses.replace(ideal.compute, kernel_model="library"))
    m, n, k = 256, 256, 256
    for role, extra in (("weight", 0), ("activation", gpu.compress_cycles(lib, m * k))):
        work = gemm_workload(m, n, k, packed={"a": two_four_words(m, k)}, roles={"a": role, "b": "weight"})
        fl, fi = gpu.op_cost(work, lib, sparse=True), gpu.op_cost(work, ideal, sparse=True)
        assert fl.sparse_operand == "a" and fl.fixed_cycles - fi.fixed_cycles == extra


@pytest.mark.parametrize("name", ["a100_24", "h100_24", "h200_24"])
def test_ideal_twin_is_the_same_machine(name):
    """hwconfigs/<name>_ideal.yaml is <name>.yaml with kernel_model ideal and nothing else changed."""
    import dataclasses
    from pathlib import Path

    from accelsim.hw import load_hw
    d = Path(__file__).resolve().parents[1] / "hwconfigs"
    lib, ideal = load_hw(d / f"{name}.yaml"), load_hw(d / f"{name}_ideal.yaml")
    assert (lib.compute.kernel_model, ideal.compute.kernel_model) == ("library", "ideal")
    assert ideal.name == f"{name}_ideal"
    reset = dataclasses.replace(lib.compute, kernel_model="ideal", mainloop_efficiency=(1.0, 1.0),
                                kernel_fixed_s=(0.0, 0.0), cta_fixed_s=(0.0, 0.0), sparse_cta_tiles=(),
                                sparse_split_k=True)
    assert reset == ideal.compute
    assert (lib.clock_hz, lib.memory, lib.sparsity, lib.storage_format) == (
        ideal.clock_hz, ideal.memory, ideal.sparsity, ideal.storage_format)
