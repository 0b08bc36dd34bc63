"""Case 6: SSL group sparsity on dense (systolic) hardware."""

import numpy as np
import pytest

from accelsim.validation import case_ssl
from accelsim.validation.testing import assert_check, assert_failures_documented, xfail_if_known

KF = case_ssl.KNOWN_FAILURES


def test_masks_and_compaction_hand_case():
    rng = np.random.default_rng(0)
    f = case_ssl.ssl_weight_mask("filter", rng)
    assert f.shape == (128, 64, 3, 3)
    assert f.reshape(128, -1).any(axis=1).sum() == 64          # half the filters all-zero
    assert case_ssl.compact(f) == (64, 576)
    s = case_ssl.ssl_weight_mask("shape", rng)
    assert case_ssl.compact(s) == (128, 288)
    u = case_ssl.ssl_weight_mask("unstructured50", rng)
    assert u.sum() == u.size // 2 and case_ssl.compact(u) == (128, 576)
    # all-ones weight: 128 filters x 64 ch x N=4 x (15+16+15)^2 valid taps
    assert case_ssl.expected_effectual(np.ones((128, 64, 3, 3), bool)) == 128 * 64 * 4 * 46 * 46


@pytest.fixture(scope="module")
def report():
    return case_ssl.run()


NAMES = ([f"{k} mask (density {d}) on the full-size conv: no speedup"
          for k, d in (("filter", "0.50"), ("shape", "0.50"), ("both", "0.25"),
                       ("unstructured50", "0.50"), ("unstructured25", "0.25"))]
         + [f"{k}: compacted GEMM {s} vs dense 1024x128x576, compute cycles"
            for k, s in (("filter", "1024x64x576"), ("shape", "1024x128x288"), ("both", "1024x64x288"))]
         + [f"{k}: compacted GEMM, total cycles (memory engine)" for k in ("filter", "shape", "both")])


@pytest.mark.parametrize("name", [xfail_if_known(n, KF) for n in NAMES])
def test_ssl_checks(report, name):
    assert_check(report, name, KF)


def test_every_check_is_tested(report):
    assert sorted(c.name for c in report.checks) == sorted(NAMES)


def test_failures_are_stated_in_the_doc(report):
    assert_failures_documented(report, KF)
