"""Missing shipped traces fail the validation suite; they are never a silent skip."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from accelsim.validation import TRACES_ENV, case_footprint, case_swat_flops, case_tensordash, traces_dir
from validation_testing import require_traces

HERE = Path(__file__).resolve().parent
TRACE_TESTS = ["test_footprint_swat.py::test_savings_inside_published_ranges",
               "test_tensordash_swat.py::test_every_op_within_h_plus_1",
               "test_swat_flops.py::test_trace_crosscheck_fwd_dgrad_exact"]


def test_lookup_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(TRACES_ENV, raising=False)
    assert traces_dir().name == "traces" and case_tensordash.traces()   # the checkout ships them
    monkeypatch.setenv(TRACES_ENV, str(tmp_path))
    assert traces_dir() == tmp_path
    assert case_footprint.traces() == case_tensordash.traces() == case_swat_flops._traces() == []
    with pytest.raises(pytest.fail.Exception, match=r"no shipped trace matches \$ACCELSIM_VALIDATION_TRACES/"):
        require_traces(case_tensordash.traces(), case_tensordash.TRACE_GLOB)


def test_trace_backed_tests_fail_without_traces(tmp_path):
    # run the real trace-backed tests against an empty trace directory: each must FAIL, none skip
    env = dict(os.environ, COLUMNS="500", **{TRACES_ENV: str(tmp_path)})  # wide: untruncated summary
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider",
                          *[str(HERE / t) for t in TRACE_TESTS]],
                         cwd=HERE, env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 1, text
    assert "skipped" not in text and "passed" not in text, text
    summary = [ln for ln in text.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    for t in TRACE_TESTS:   # a failure in the test or an error in its trace fixture
        assert any(ln.split()[1] == t and "no shipped trace matches" in ln for ln in summary), text
