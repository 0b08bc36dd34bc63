"""hwconfigs/h100_24.yaml and h200_24.yaml: datasheet numbers, traces run, validation vs the H200 measurement."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelsim.gemm import gemm_report
from accelsim.hw import load_hw
from accelsim.sim import simulate

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["h100_24", "h200_24"])
def test_datasheet_numbers(name):
    hw = load_hw(name)
    c = hw.compute
    # 132 SMs * 4 TCs * 512 FMA * 2 FLOP * 1.83 GHz = 989.4 TFLOP/s dense, x2 with 2:4
    # (docs/sources.md "NVIDIA Hopper")
    assert (c.sms, c.tensor_cores_per_sm, c.dense_macs_per_cycle_per_core) == (132, 4, 512)
    assert 2 * hw.peak_macs_per_cycle * hw.clock_hz == pytest.approx(989.4e12, rel=1e-3)
    assert 2 * hw.peak_macs_per_cycle * hw.clock_hz * c.sparse_rate_factor == pytest.approx(1978.9e12, rel=1e-3)
    # L2: H100 SXM 50 MB (datasheet); H200 60 MB, this project's measurement (no vendor figure)
    assert hw.level("l2").capacity_bytes == {"h100_24": 50 * 10**6, "h200_24": 60 * 10**6}[name]
    assert hw.level("smem").capacity_bytes == 228 * 1024
    assert hw.dram().bandwidth_bytes_per_s == {"h100_24": 3.35e12, "h200_24": 4.8e12}[name]


@pytest.mark.parametrize("trace", ["resnet18_cifar_swat_u90.npz", "resnet18_cifar_srste_2of4.npz"])
def test_runs_small_traces(trace):
    path = ROOT / "traces" / trace
    if not path.exists():
        pytest.skip(f"{trace} not shipped")
    for name in ("h100_24", "h200_24"):
        res = simulate(path, load_hw(name))
        assert res.ops and all(o.total_cycles > 0 for o in res.ops)


def test_ideal_bound_not_below_h200_measurement():
    """VALIDATION (compare, never fit): this project measured an 8192^3 bf16 matmul at 769-798 TFLOP/s
    on an H200 through PyTorch (docs/sources.md "NVIDIA Hopper"). The ideal-kernel bound must not be
    below a measurement (bf16 and fp16 share the datasheet rate). 4096^3 stands in for 8192^3 here
    (the bound's utilisation only rises with size) to keep the test fast."""
    r = gemm_report(4096, 4096, 4096, "h200_24", ideal=True)
    assert r.mode == "ideal" and r.dense.tflops >= 788
