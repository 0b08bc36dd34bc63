"""Hopper INT8 (issue 11): the H100 SXM and H200 datasheets give INT8 tensor-core throughput equal to
FP8 -- 1,979 TOPS dense, 3,958 with 2:4 (docs/sources.md "NVIDIA Hopper") -- so every Hopper file
declares int8 at rate multiple 2 of fp16, as fp8."""

from __future__ import annotations

import json

import pytest

from accelsim.cli import main
from accelsim.gemm import gemm_report
from accelsim.hw import load_hw
from accelsim.hw.families.gpu import supported_dtypes, with_dtype

HOPPER = ("h100_24", "h100_24_ideal", "h200_24", "h200_24_ideal")


@pytest.mark.parametrize("name", HOPPER)
def test_int8_peak_equals_fp8(name):
    # hand-worked: 132 SMs x 4 tensor cores x (512 x 2) MACs/clk x 2 FLOP x 1.83 GHz = 1978.9e12 dense;
    # 2:4 (sparse wgmma: twice the MACs per issue) 3957.8e12 -- the datasheet's 1,979 / 3,958 TOPS
    hw = load_hw(name)
    assert supported_dtypes(hw) == ("fp16", "bf16", "fp8", "int8")
    i8, f8 = with_dtype(hw, "int8"), with_dtype(hw, "fp8")
    dense = 2 * i8.compute.peak_macs_per_cycle * i8.clock_hz
    assert i8.compute.dense_macs_per_cycle_per_core == 1024 and i8.compute.element_bytes == 1
    assert dense == pytest.approx(1978.9e12, rel=1e-4)
    assert dense * i8.compute.sparse_rate_factor == pytest.approx(3957.8e12, rel=1e-4)
    # integer wgmma: m64nNk32, k64 sparse (twice the 16-bit K), as fp8's
    assert i8.compute.mma_shape == (64, 8, 32) and i8.compute.sparse_mma_shape == (64, 8, 64)
    assert (i8.compute.peak_macs_per_cycle, i8.compute.sparse_rate_factor, i8.compute.cta_tiles) == (
        f8.compute.peak_macs_per_cycle, f8.compute.sparse_rate_factor, f8.compute.cta_tiles)


def test_int8_gemm_times_equal_fp8_and_below_peak():
    # same rate, width and tiles as fp8: the same cycles, dense and 2:4, ideal and library
    for name in ("h100_24_ideal", "h200_24"):
        i8 = gemm_report(4096, 4096, 4096, name, dtype="int8", sparse="2:4")
        f8 = gemm_report(4096, 4096, 4096, name, dtype="fp8", sparse="2:4")
        assert (i8.dense.cycles, i8.sparse.cycles) == (f8.dense.cycles, f8.sparse.cycles)
        assert i8.sparse.fallback is None
        assert i8.dense.tflops <= 1978.9 and i8.sparse.tflops <= 3957.8


def test_cli_int8_json_names_fp16_fit(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["gemm", "8192", "8192", "8192", "--hw", "h100_24", "--dtype", "int8", "--json", str(out)]) == 0
    head = capsys.readouterr().out
    assert "kernel parameters fitted on fp16" in head
    d = json.loads(out.read_text())
    assert d["dtype"] == "int8" and d["fitted_on"] == "fp16" and d["mode"] == "library"
    assert d["hw"] == "h100_24 (int8 variant)"
