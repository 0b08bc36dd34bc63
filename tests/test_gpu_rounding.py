"""Seconds to cycles in the GPU model (accelsim/sim/gpu.py): rounded up with hw.units.ceil_cycles, so a
float product an ulp above a whole number is not charged one cycle more."""

from __future__ import annotations

import dataclasses
import math

from accelsim.hw import load_hw, units
from accelsim.sim import gpu


def _with(hw, **compute):
    return dataclasses.replace(hw, compute=dataclasses.replace(hw.compute, **compute))


def test_time_products_an_ulp_above_a_whole_number():
    # 4.9 us x 1.41 GHz = 6909 cycles exactly; the float product is 6909.000000000001 (math.ceil: 6910)
    t = units.parse_time("4.9 us")
    hw = load_hw("a100_24")
    assert t * hw.clock_hz > 6909 and math.ceil(t * hw.clock_hz) == 6910
    v = _with(hw, launch_overhead_s=t, kernel_fixed_s=(t, t), cta_fixed_s=(t, t))
    assert gpu.launch_cycles(v) == 6909
    assert gpu.kernel_fixed_cycles(v, False) == gpu.kernel_fixed_cycles(v, True) == 6909
    assert gpu.cta_fixed_cycles(v, False) == gpu.cta_fixed_cycles(v, True) == 6909
    # compress_cycles = launch + 2:4 kernel_fixed + bytes / HBM bandwidth (0 bytes here)
    assert gpu.compress_cycles(v, 0) == 2 * 6909


def test_shipped_fixed_cycles_hand_worked():
    # a100_24 (1.41 GHz): launch 4 us = 5640, kernel_fixed 2 / 0 us = 2820 / 0, cta_fixed 0.25 / 6.75 us
    # = 352.5 -> 353 / 9517.5 -> 9518; h100_24 (1.83 GHz): 7320, 3660 / 0, 457.5 -> 458 / 12352.5 -> 12353
    for name, want in (("a100_24", (5640, 2820, 0, 353, 9518)), ("h100_24", (7320, 3660, 0, 458, 12353)),
                       ("h200_24", (7320, 3660, 0, 458, 12353))):
        hw = load_hw(name)
        got = (gpu.launch_cycles(hw), gpu.kernel_fixed_cycles(hw, False), gpu.kernel_fixed_cycles(hw, True),
               gpu.cta_fixed_cycles(hw, False), gpu.cta_fixed_cycles(hw, True))
        assert got == want


def test_library_step_cycles_exact_quotient():
    # a 128x256x32 step on A100 (1024 MACs/clk per SM) at efficiency 0.8: 1048576 / 819.2 = 1280 exactly
    hw = load_hw("a100_24")
    v = _with(hw, mainloop_efficiency=(0.8, 0.8))
    plan = gpu.plan_gemm(1024, 1024, 1024, 1, v.compute, sparse_a=False, tile=(128, 256, 32), split=1)
    assert plan.step_cycles == 1280
