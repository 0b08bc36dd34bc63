"""The fast subset of the hostile-input fuzzer (benchmarks/fuzz.py --quick): traces, hardware YAML,
command lines and signals, generated from seed 0. Criteria per input: no traceback, no hang (a
timeout per input), peak memory under 1 GiB (each input's own, whatever ran before it in this
process), nothing clobbered. The whole run (over 300 inputs) is
`python benchmarks/fuzz.py`."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("accelsim_fuzz", ROOT / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz  # dataclasses look their module up there
_spec.loader.exec_module(fuzz)

SEED = 0
TIMEOUT = 10.0  # seconds per in-process input (a hang costs this once)

# Inputs that still fail, in files other helpers own. Each is an xfail(strict=True) test: when the
# owner fixes it the test XPASSes and fails, and the entry is removed here.
KNOWN: dict[str, str] = {}


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return fuzz.generate(SEED, tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def results(cases):
    quick = [c for c in cases if c.quick]
    return {r.id: r for r in fuzz.run_all(quick, TIMEOUT, Path(cases[0].path))}


def test_the_full_suite_has_over_300_inputs_of_every_kind(cases):
    kinds = {k: sum(1 for c in cases if c.kind == k) for k in ("trace", "hw", "cli", "fault")}
    assert sum(kinds.values()) >= 300 and min(kinds.values()) >= 10, kinds
    assert len({c.id for c in cases}) == len(cases)
    assert 40 <= sum(c.quick for c in cases) <= 120


def test_inputs_are_generated_deterministically(cases, tmp_path):
    def digest(cs):
        out = {}
        for c in cs:
            if c.path and fuzz._plain_file(c.path):
                out[c.id] = hashlib.sha1(Path(c.path).read_bytes()).hexdigest()
            elif c.argv:
                out[c.id] = c.argv[0]
        return out

    again = fuzz.generate(SEED, tmp_path)
    assert [c.id for c in again] == [c.id for c in cases]
    assert digest(again) == digest(cases)


@pytest.mark.parametrize("kind", ["trace", "hw", "cli", "fault"])
def test_no_traceback_hang_oversized_memory_or_clobbered_file(results, kind):
    rs = [r for r in results.values() if r.kind in (kind, "input") and r.id not in KNOWN]
    assert rs
    bad = [f"{r.id}: {r.status}: {r.detail}" for r in rs if r.status != "ok"]
    assert not bad, "\n".join(bad)
    assert max(r.rss for r in rs) < fuzz.MEMORY_LIMIT


@pytest.mark.parametrize("case_id", sorted(KNOWN))
def test_known_failure(results, case_id, request):
    request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN[case_id]))
    r = results[case_id]
    assert r.status == "ok", f"{r.status}: {r.detail}"


def test_the_memory_check_counts_what_an_input_costs_in_any_order():
    """A child's ru_maxrss includes the resident size of the process that spawned it, so CLI inputs
    run from a small runner process (fuzz.CliRunner): here this process first grows past the limit,
    as pytest does after heavy tests, and a trivial command still reads small, while a command that
    really takes more than the limit is flagged."""
    limit = fuzz.MEMORY_LIMIT
    ballast = b"x" * (limit + (64 << 20))  # every page written: resident
    try:
        small = fuzz.Case("check/version", "cli", argv=["--version"])
        heavy = fuzz.Case("check/heavy", "cli", command=[sys.executable, "-c", f"b = b'x' * {limit + (16 << 20)}"])
        runner = fuzz.CliRunner()
        try:
            r_small, r_heavy = runner.run(small, 60), runner.run(heavy, 60)
        finally:
            runner.close()
        direct = fuzz.run_process(small, 60)  # the same child spawned from this process itself
    finally:
        del ballast
    assert direct.rss > limit and direct.status == "memory"   # what the runner avoids
    assert r_small.status == "ok" and r_small.rss < (200 << 20), r_small
    assert r_heavy.status == "memory" and r_heavy.rss > limit, r_heavy


def test_the_worker_measures_per_input_peak_memory(results):
    # the high-water mark is reset before each input, so the ratio bomb's 8 MiB mask (read whole
    # to check its popcount) shows in its own row, not only in the worker's overall peak
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("no /proc/self/clear_refs: only the worker's overall peak is known")
    assert results["trace/zip/ratio_8MiB_mask"].rss > results["trace/base"].rss + (8 << 20)
