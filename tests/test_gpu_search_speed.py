"""The fast paths of the GPU CTA-tile search (accelsim/sim/gpu.py): the one-wave closed form of
gemm_traffic against the per-CTA array path, the search's two lower bounds (_plan_bounds, _traffic_bound)
against the memory engine, and the search's choice against costing every option."""

import math
from fractions import Fraction

import numpy as np
import pytest

from accelsim.hw.catalog import shipped
from accelsim.hw.loader import load_hw
from accelsim.sim import gpu
from accelsim.sim.memory import run_tiles
from tests.test_gpu import tiny


def _same_traffic(a: gpu.GemmTraffic, b: gpu.GemmTraffic) -> None:
    for f in ("a", "b", "out", "epilogue", "l2_step"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape and (x == y).all(), f
    assert (a.final_load, a.final_store) == (b.final_load, b.final_store)
    assert type(a.final_load) is int and type(a.final_store) is int


def test_one_wave_traffic_hand_worked():
    # M = N = 100, K = 64, one 128x128x32 CTA, fp16 (2 B): the wave fetches A = 100 x 64 x 2 = 12800 B,
    # B = 12800 B, writes 100 x 100 x 2 = 20000 B; per step the CTA reads (100 + 100) x 32 x 2 = 12800 B
    # from L2. 2:4-compressed A: 64 values per row -> 64 x (2/2 + 1/8) = 72 B, x 100 rows = 7200 B.
    # Split 2 (partials in L2): each slice's CTA writes a 100 x 100 fp32 partial (40000 B each).
    g = tiny(sms=4).compute
    p = gpu.plan_gemm(100, 100, 64, 1, g, sparse_a=False, split=1)
    t = gpu.gemm_traffic(p, g, 1 << 20, compressed_a=False)
    assert (t.a.tolist(), t.b.tolist(), t.out.tolist(), t.l2_step.tolist()) == ([12800], [12800], [20000], [12800.0])
    assert gpu.gemm_traffic(p, g, 1 << 20, compressed_a=True).a.tolist() == [7200]
    p2 = gpu.plan_gemm(100, 100, 64, 1, g, sparse_a=False, split=2)
    t2 = gpu.gemm_traffic(p2, g, 1 << 20, compressed_a=False)
    assert (t2.out.tolist(), t2.epilogue.tolist(), t2.final_load, t2.final_store) == ([0], [80000], 0, 20000)
    # partials that do not fit L2 (80000 > 1000) go to HBM and are read back by the reduction
    t3 = gpu.gemm_traffic(p2, g, 1000, compressed_a=False)
    assert (t3.out.tolist(), t3.final_load) == ([80000], 80000)
    # scaled operands: ceil(12800 x 1/3) = 4267
    assert gpu.gemm_traffic(p, g, None, compressed_a=False, scale_a=Fraction(1, 3)).a.tolist() == [4267]


def test_one_wave_closed_form_matches_the_array_path():
    rng = np.random.default_rng(3)
    g = load_hw(shipped()["a100_24"]).compute
    seen = 0
    while seen < 300:
        m, n, k = (int(x) for x in rng.integers(1, 3000, 3))
        groups = int(rng.choice([1, 1, 2, 3, 32]))
        tile = g.cta_tiles[int(rng.integers(len(g.cta_tiles)))]
        comp = bool(rng.integers(2))
        p = gpu.plan_gemm(m, n, k, groups, g, sparse_a=comp, tile=tile, split=int(rng.choice([1, 2, 3, 4, 8, 64])))
        if p.waves != 1:
            continue
        seen += 1
        sc = dict(scale_a=Fraction(int(rng.integers(1, 9)), int(rng.integers(1, 9))),
                  scale_b=Fraction(1, int(rng.integers(1, 5))), scale_out=Fraction(int(rng.integers(1, 8)), 7),
                  out_bytes=[None, 4][int(rng.integers(2))])
        cap = [None, 1000, 10**6, 40 * 10**6][int(rng.integers(4))]
        _same_traffic(gpu.gemm_traffic(p, g, cap, compressed_a=comp, **sc),
                      gpu._traffic_arrays(p, g, cap, compressed_a=comp, oracle=True, **sc))


def test_panels_that_fit_l2_are_fetched_once_as_the_lru_says():
    # every plan, several waves: the first-touch shortcut (all panels fit L2) against the LRU pass
    rng = np.random.default_rng(5)
    for name, hi in (("a100_24", 9000), ("h100_24_ideal", 9000)):
        g = load_hw(shipped()[name]).compute
        for _ in range(50):
            m, n, k = (int(x) for x in rng.integers(1, hi, 3))
            groups = int(rng.choice([1, 2, 3]))
            tile = g.cta_tiles[int(rng.integers(len(g.cta_tiles)))]
            comp = bool(rng.integers(2))
            p = gpu.plan_gemm(m, n, k, groups, g, sparse_a=comp, tile=tile, split=int(rng.choice([1, 2, 4, 16])))
            total = groups * k * (m * (g.element_bytes / 2 + 0.125 if comp else g.element_bytes) + n * g.element_bytes)
            # capacities around the GEMM's panel bytes: just fitting, just not, far above
            for cap in (int(total), int(total) + 1, max(1, int(total) - 1), int(total) // 3, 10 * int(total) + 7):
                sc = dict(scale_a=Fraction(1, int(rng.integers(1, 4))), scale_b=Fraction(1), scale_out=Fraction(1))
                _same_traffic(gpu._traffic_arrays(p, g, cap, compressed_a=comp, **sc),
                              gpu._traffic_arrays(p, g, cap, compressed_a=comp, oracle=True, **sc))


@pytest.mark.parametrize("seed", [0, 1])
def test_bounds_never_exceed_the_engine(seed):
    """Both bounds <= memory.run_tiles' total on random plans and machines: several waves, split-K with
    partials in L2 and spilled, 2:4, scaled operands, finite and infinite L2 bandwidth, latency and
    per-CTA fixed cycles, HBM bandwidth from starved to ample."""
    rng = np.random.default_rng(seed)
    machines = [tiny(sms=int(s), ctas_per_sm=int(c)) for s, c in ((2, 1), (3, 2), (8, 1))]
    machines += [load_hw(shipped()[nm]) for nm in ("a100_24", "h100_24_ideal")]
    checked = tight = 0
    for _ in range(250):
        hw = machines[int(rng.integers(len(machines)))]
        g = hw.compute
        l2 = hw.role("l2")
        l2_bpc = l2.bandwidth_bytes_per_s / hw.clock_hz
        smem = hw.role("smem").capacity_bytes
        hi = 700 if g.sms < 20 else 5000
        m, n, k = (int(x) for x in rng.integers(1, hi, 3))
        groups = int(rng.choice([1, 1, 2, 3]))
        comp = bool(rng.integers(2))
        cap = [None, 2000, 1 << 20, l2.capacity_bytes][int(rng.integers(4))]
        # tiny scales leave some waves fewer bytes than main-loop steps: chunks that load nothing, unfenced
        tiny_b = Fraction(1, 10 ** int(rng.integers(0, 7)))
        sc = dict(scale_a=Fraction(int(rng.integers(1, 4)), int(rng.integers(1, 4))) * tiny_b, scale_b=tiny_b,
                  scale_out=Fraction(int(rng.integers(1, 3)), 2), out_bytes=[None, 4][int(rng.integers(2))])
        sc = {key: (min(Fraction(1), v) if isinstance(v, Fraction) else v) for key, v in sc.items()}
        hbm = float(rng.choice([0.5, 8.0, 64.0, 1100.0, 1e5]))
        lat = int(rng.choice([0, 1, 30, 705, 5000]))
        cta = int(rng.choice([0, 0, 353, 9518]))
        # a few options of one search at once (the plan bound is vectorised over them)
        options = [(g.cta_tiles[int(rng.integers(len(g.cta_tiles)))], int(rng.choice([1, 1, 2, 3, 4, 16])))
                   for _ in range(3)]
        pbs = gpu._plan_bounds(m, n, k, groups, g, comp, options, cap, l2_bpc, hbm, gpu._BoundScales.of(sc), lat, cta)
        for (tile, split), pb in zip(options, pbs.tolist()):
            plan = gpu.plan_gemm(m, n, k, groups, g, sparse_a=comp, tile=tile, split=split)
            traffic = gpu.gemm_traffic(plan, g, cap, compressed_a=comp, **sc)
            stream = gpu.gemm_stream(plan, traffic, g, ("a", "b"), l2_bpc, lat, hbm, smem, cta)
            engine = run_tiles(stream, bytes_per_cycle=hbm, latency_cycles=lat).total_cycles
            tb = gpu._traffic_bound(plan, traffic, g, l2_bpc, hbm, lat, cta, smem)
            # the search compares floor(bound * (1 - 1e-9)) with whole cycles
            assert math.floor(pb * (1 - 1e-9)) <= engine, (plan, pb, engine)
            assert math.floor(tb * (1 - 1e-9)) <= engine, (plan, tb, engine)
            checked += 1
            tight += tb >= 0.95 * engine
    assert checked == 750 and tight > 200  # and the per-wave bound is close often enough to prune


def _exhaustive(m, n, k, groups, hw, sparse_a, scales):
    """The search's rule on every option (no bound): least engine total + launches, then fewer DRAM
    bytes, then the earlier option."""
    g = hw.compute
    l2 = hw.role("l2")
    dram = hw.dram()
    hbm = dram.bandwidth_bytes_per_s / hw.clock_hz
    cta = gpu.cta_fixed_cycles(hw, sparse_a)
    best = None
    options = [(t, s) for t in gpu.library_tiles(g, sparse_a)
               for s in (gpu.split_candidates(m, n, k, groups, g, t) if gpu.splits_k(g, sparse_a) else (1,))]
    for i, (t, s) in enumerate(options):
        p = gpu.plan_gemm(m, n, k, groups, g, sparse_a=sparse_a, tile=t, split=s)
        tr = gpu.gemm_traffic(p, g, l2.capacity_bytes, compressed_a=sparse_a, **scales)
        st = gpu.gemm_stream(p, tr, g, ("a", "b"), l2.bandwidth_bytes_per_s / hw.clock_hz, dram.latency_cycles,
                             hbm, hw.role("smem").capacity_bytes, cta)
        fixed = gpu.kernel_fixed_cycles(hw, sparse_a) + gpu.launch_cycles(hw) * (2 if p.split_k > 1 else 1)
        key = (run_tiles(st, bytes_per_cycle=hbm, latency_cycles=dram.latency_cycles).total_cycles + fixed,
               gpu._stream_bytes(st), i)
        if best is None or key < best[0]:
            best = (key, p)
    return best


@pytest.mark.parametrize("name", ["a100_24", "h100_24_ideal"])
def test_search_picks_what_costing_every_option_picks(name):
    hw = load_hw(shipped()[name])
    rng = np.random.default_rng(11)
    shapes = [(8192, 8192, 8192, 1), (64, 64, 64, 1), (64, 64, 4608, 1), (1024, 256, 10240, 1), (3136, 64, 576, 1)]
    shapes += [tuple(int(x) for x in rng.integers(16, 4000, 3) // 16 * 16) + (int(rng.choice([1, 2])),)
               for _ in range(8)]
    for m, n, k, groups in shapes:
        for sparse_a in (False, True):
            scales = dict(scale_a=Fraction(1), scale_b=Fraction(1), scale_out=Fraction(1), out_bytes=None)
            got = gpu._gemm_search.__wrapped__(m, n, k, groups, (hw.compute, hw.memory, hw.clock_hz, hw.source),
                                               sparse_a, ("a", "b"), Fraction(1), Fraction(1), Fraction(1), None)
            key, plan = _exhaustive(m, n, k, groups, hw, sparse_a, scales)
            assert got.plan == plan, (m, n, k, groups, sparse_a)
            if got.engine is not None:
                assert got.engine.total_cycles + got.fixed == key[0]
            assert gpu._stream_bytes(got.stream) == key[1]
