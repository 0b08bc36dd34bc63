"""The vectorised L2 panel LRU (accelsim/sim/gpu.py l2_panel_misses) against its per-wave loop (the
first form, kept as _l2_panel_misses_loop): bit-identical on random touch lists and on real GEMM plans."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from accelsim.hw import load_hw
from accelsim.sim import gpu


@pytest.mark.parametrize("seed", range(6))
def test_random_touch_lists(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n_waves = int(rng.integers(1, 40))
        n = int(rng.integers(1, 400))
        nkeys = int(rng.integers(1, 60))
        wave = np.sort(rng.integers(0, n_waves, n))
        key = rng.integers(0, nkeys, n)
        size = rng.integers(1, 4000, nkeys) / 8  # panel bytes: multiples of 1/8 (compressed rows)
        nbytes = size[key]
        total = float(size.sum())
        for cap in (None, 0, int(total * 0.1), int(total * 0.4), int(total)):
            want = gpu.l2_panel_misses(wave, key, nbytes, n_waves, cap, method="loop")
            assert (gpu.l2_panel_misses(wave, key, nbytes, n_waves, cap, method="vector") == want).all()
            assert (gpu.l2_panel_misses(wave, key, nbytes, n_waves, cap) == want).all()


def test_hand_worked_window():
    # waves 0: panels 0 (10 B), 1 (10 B); wave 1: panel 2 (10 B); wave 2: panel 0 again. Distinct
    # bytes in waves 0..2 = 30: a hit with 30 bytes of L2, a miss with 29 (the loop's test in test_gpu)
    wave, key, nb = np.array([0, 0, 1, 2]), np.array([0, 1, 2, 0]), np.full(4, 10.0)
    assert gpu.l2_panel_misses(wave, key, nb, 3, 30, method="vector").tolist() == [True, True, True, False]
    assert gpu.l2_panel_misses(wave, key, nb, 3, 29, method="vector").tolist() == [True, True, True, True]


def _touches(plan, m, n, k, e, compressed):
    """The (wave, key, bytes) lists gemm_traffic builds for one plan."""
    tm, tn, tk = plan.tile
    split, g, row, col = gpu.cta_order(plan)
    wave = np.arange(plan.ctas, dtype=np.int64) // plan.wave_size
    k_len = np.clip(k - split * plan.ksteps * tk, 0, plan.ksteps * tk)
    sg = split * plan.groups + g
    n_a = plan.split_k * plan.groups * plan.tiles_m
    key = np.concatenate([sg * plan.tiles_m + row, n_a + sg * plan.tiles_n + col])
    nbytes = np.concatenate([np.minimum(tm, m - row * tm) * gpu.a_row_bytes(k_len, e, compressed),
                             np.minimum(tn, n - col * tn) * k_len * e])
    return np.concatenate([wave, wave]), key, nbytes


def test_real_plans_random_shapes():
    rng = np.random.default_rng(7)
    hw = load_hw("a100_24")
    g = hw.compute
    for _ in range(25):
        m, n, k = (int(x) for x in rng.integers(1, 6000, 3))
        groups = int(rng.integers(1, 3))
        tile = g.cta_tiles[int(rng.integers(len(g.cta_tiles)))]
        split = int(rng.integers(1, 5))
        compressed = bool(rng.integers(2))
        plan = gpu.plan_gemm(m, n, k, groups, g, sparse_a=compressed, tile=tile, split=split)
        w, key, nb = _touches(plan, m, n, k, g.element_bytes, compressed)
        for cap in (None, 1 << 20, hw.role("l2").capacity_bytes):
            want = gpu.l2_panel_misses(w, key, nb, plan.waves, cap, method="loop")
            assert (gpu.l2_panel_misses(w, key, nb, plan.waves, cap, method="vector") == want).all()


def test_cta_order_and_scaled_match_their_first_forms():
    g = load_hw("h100_24").compute
    for m, n, tile in ((5000, 3000, (128, 256, 64)), (64, 9000, (64, 64, 64)), (777, 555, (128, 128, 64))):
        plan = gpu.plan_gemm(m, n, 640, 2, g, sparse_a=False, tile=tile, split=2)
        tm_, tn_ = plan.tiles_m, plan.tiles_n
        row, col = np.meshgrid(np.arange(tm_), np.arange(tn_), indexing="ij")
        row, col = row.ravel(), col.ravel()
        band = col // gpu.SWIZZLE
        pos = band * gpu.SWIZZLE * tm_ + row * np.minimum(gpu.SWIZZLE, tn_ - band * gpu.SWIZZLE) + col % gpu.SWIZZLE
        order = np.argsort(pos, kind="stable")
        _, _, r, c = gpu.cta_order(plan)
        assert (r[:tm_ * tn_] == row[order]).all() and (c[:tm_ * tn_] == col[order]).all()
    x = np.array([0, 1, 7, 8, 9, 12345]) / 8 * 9  # multiples of 1/8
    for s in (Fraction(1), Fraction(3, 7), Fraction(1, 3)):
        want = [-(-int(round(v * 8)) * s.numerator // (8 * s.denominator)) for v in x]
        assert gpu._scaled(x, s).tolist() == want
