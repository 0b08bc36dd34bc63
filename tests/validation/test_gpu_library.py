"""Case 7: the library-realistic GPU files vs published library measurements (fit residuals and
validation), and the fit itself (accelsim/validation/fit_gpu_library.py)."""

import numpy as np
import pytest

from accelsim.validation import a100_library_data as data
from accelsim.validation import case_gpu_library as case
from accelsim.validation import fit_gpu_library as fg
from accelsim.validation.testing import assert_check, assert_failures_documented
from validation_testing import xfail_if_known

KF = case.KNOWN_FAILURES


def test_targets_leave_out_what_the_docstring_says():
    t = fg.targets(data.load(data.DATA))
    assert all(x.row.role == "calibrate" for x in t)
    # cutlass#408's power-capped 2:4 number is not a target; the locked-clock one is
    c408 = [x for x in t if x.row.source == "NVIDIA/cutlass#408" and x.what == "sparse"]
    assert [x.value for x in c408] == [18174.0]
    # pytorch#90119 gives the dense time once per shape, not once per 2:4 library
    dense90119 = [x.row.gemm for x in t if x.row.source == "pytorch/pytorch#90119" and x.what == "dense"]
    assert len(dense90119) == len(set(dense90119)) == 6
    assert all(x.floor == (x.row.source == "pytorch/pytorch#96147") for x in t)


def test_fit_recovers_a_synthetic_parameter_set():
    """The grid search on synthetic targets built from known parameters finds them (e 0.7, f 4 us,
    c 1 us dense; e 0.5, f 0, c 3 us 2:4) with zero cost: node times T = t0 / e exactly linear in 1/e."""
    row = data.load(data.DATA)[3]
    shapes = [(100.0, 10), (400.0, 40), (40.0, 2), (900.0, 7)]  # (t0 us at e = 1, busy CTAs W)
    cache, tg = {}, []
    for i, (t0, w) in enumerate(shapes):
        r = type(row)(**{**row.__dict__, "m": 16 * (i + 1), "source": "synthetic", "role": "calibrate"})
        for side, (e, f, c) in (("dense", (0.7, 4.0, 1.0)), ("sparse", (0.5, 0.0, 3.0))):
            cache[fg._key(r, side, None if side == "dense" else fg.SEARCH)] = [
                [t0 * 1e-6 * inv for inv in fg.NODES], [w] * len(fg.NODES)]
            tg.append(fg.Target(r, side, t0 / e + f + w * c, False, "cuSPARSELt" if side == "sparse" else ""))
    got = fg.fit(tg, cache, (fg.SEARCH,))
    assert (got.dense_eff, got.dense_fixed_us, got.dense_cta_us) == (0.7, 4.0, 1.0)
    assert (got.sparse_eff, got.sparse_fixed_us, got.sparse_cta_us) == (0.5, 0.0, 3.0)
    assert got.cost == pytest.approx(0.0, abs=1e-9)


def test_interp_is_linear_in_inverse_efficiency():
    nodes = [[1.0 * inv for inv in fg.NODES], list(range(len(fg.NODES)))]
    t, w = fg.interp(nodes, np.array([1.0, 0.8, 1 / 1.375]))
    assert t == pytest.approx([1.0, 1.25, 1.375]) and list(w) == [0, 2, 2]


def test_variant_doubles_the_rate_and_tile_k():
    hw = fg._machine("h100_24")
    v = fg.variant(hw, "fp8")
    assert v.compute.dense_macs_per_cycle_per_core == 2 * hw.compute.dense_macs_per_cycle_per_core
    assert [t[2] for t in v.compute.cta_tiles] == [2 * t[2] for t in hw.compute.cta_tiles]
    assert fg.variant(hw, "bf16") is hw


@pytest.fixture(scope="module")
def report():
    return case.run()


@pytest.mark.slow
def test_shipped_files_hold_the_fit(report):
    for name in ("a100_24", "h100_24", "h200_24"):
        assert_check(report, f"{name}.yaml holds the fit", KF)


@pytest.mark.slow
def test_every_tolerance_check(report):
    """Every check passes or is a known failure rendered FAIL with its reason."""
    assert_failures_documented(report, KF)
    graded = [c for c in report.checks if c.passed is not None]
    assert len(graded) >= 60
    for c in graded:
        if c.name not in KF:
            assert c.passed, (c.name, c.value, c.reference)


@pytest.mark.slow
@pytest.mark.parametrize("name", [xfail_if_known(n, KF) for n in KF])
def test_known_failures_still_fail(report, name):
    assert_check(report, name, KF)


def test_skinny_long_k_2_4_is_slower_than_dense():
    """issue 11: shapes libraries run slower with 2:4 than dense come out below 1x (pytorch#96147:
    m1024 k10240 n256 0.62x, n512 0.59x), here on the kernels alone, without the harness floor."""
    hw = fg._machine("a100_24")
    for n in (256, 512):
        s = fg.gemm_seconds(hw, 1024, n, 10240, False) / fg.gemm_seconds(hw, 1024, n, 10240, True)
        assert s < 1.0
