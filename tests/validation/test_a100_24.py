"""Case 4: A100 2:4 sparse tensor cores vs Mishra et al. 2021 Fig. 3."""

import pytest

from accelsim.validation import case_a100
from accelsim.validation.testing import assert_check, assert_failures_documented
from validation_testing import xfail_if_known

KF = case_a100.KNOWN_FAILURES


def test_int8_variant_is_derived_from_the_shipped_file():
    from accelsim.hw import load_hw
    fp16 = load_hw(case_a100.HW_FILE)
    int8 = case_a100.int8_variant(fp16)
    # docs/sources.md "NVIDIA A100": INT8 peak 624 dense TOPS = 2x fp16's 312 -> 512 MACs/clk/tensor core; s8 mma m16n8k32,
    # mma.sp m16n8k64
    assert int8.compute.dense_macs_per_cycle_per_core == 2 * fp16.compute.dense_macs_per_cycle_per_core == 512
    assert int8.compute.mma_shape[2] == 32 and int8.compute.sparse_mma_shape[2] == 64
    assert int8.compute.element_bytes == 1
    assert [t[2] for t in int8.compute.cta_tiles] == [2 * t[2] for t in fp16.compute.cta_tiles]
    assert int8.compute.sparse_cta_tiles == tuple((m, n, 2 * k) for m, n, k in fp16.compute.sparse_cta_tiles)
    # the same machine the fit uses for Fig. 3 (accelsim/validation/fit_gpu_library.py variant)
    from accelsim.validation.fit_gpu_library import variant
    assert variant(fp16, "int8").compute == int8.compute
    assert int8.memory == fp16.memory and int8.clock_hz == fp16.clock_hz


def test_synthetic_gemm_is_exactly_2_4():
    from accelsim.sim.kernels import nm_compliance
    w = case_a100.gemm_workload(64, 32, 128)
    a = w.used_mask("a")
    assert a.shape == (64, 128) and a.sum() == 64 * 64
    assert (a.reshape(64, 32, 4).sum(axis=2) == 2).all()
    assert nm_compliance(w, "a", 2, 4) == 1.0
    assert w.used_mask("b").all()


def test_direct_gemm_path_equals_simulate_op():
    # the output-type sensitivity table costs GEMMs directly; with the inputs' type it must give
    # exactly what the trace path (simulate_op) gives
    from accelsim.hw import load_hw
    int8 = case_a100.int8_variant(load_hw(case_a100.HW_FILE))
    for k in (256, 1280):
        assert case_a100.gemm_speedup(int8, 2048, 1024, k, 1) == case_a100.speedup(int8, 2048, 1024, k)[0]


@pytest.fixture(scope="module")
def report():
    return case_a100.run()


@pytest.mark.parametrize("name", [xfail_if_known(f"INT8 M=N=10240, K={k}", KF) for k in case_a100.PUBLISHED])
def test_published_points(report, name):
    assert_check(report, name, KF)


@pytest.mark.parametrize("name", [xfail_if_known("INT8 M=N=10240: speedup rises monotonically with K", KF)])
def test_monotone_rise(report, name):
    assert_check(report, name, KF)


@pytest.mark.parametrize("shape", case_a100.FP16_LARGE + case_a100.FP16_SMALL)
def test_fp16_bounds(report, shape):
    label = "large compute-bound" if shape in case_a100.FP16_LARGE else "small memory/launch-bound"
    assert_check(report, f"fp16 {label} GEMM {shape[0]}x{shape[1]}x{shape[2]}", KF)


def test_failures_are_stated_in_the_doc(report):
    assert_failures_documented(report, KF)
