"""Helpers for tests/validation: assert a case's checks, xfail exactly its known failures."""

import pytest

from accelsim.validation.report import CaseReport


def check_by_name(report: CaseReport, name: str):
    matches = [c for c in report.checks if c.name == name]
    assert matches, f"no check named {name!r} in case {report.number} ({[c.name for c in report.checks]})"
    return matches[0]


def assert_check(report: CaseReport, name: str, known_failures: dict) -> None:
    """Assert a check passed; a check listed in the case's KNOWN_FAILURES must be stated failing in
    the report (so docs/validation.md says so) and is xfail(strict) via the caller's marker."""
    c = check_by_name(report, name)
    assert c.passed, f"{c.name}: accelsim {c.value}, reference {c.reference}, tolerance {c.tolerance}"


def assert_failures_documented(report: CaseReport, known_failures: dict) -> None:
    """Every failing check is a known one, is rendered as FAIL in the document, and the case carries
    an explanation (a note) -- the condition for marking its test xfail."""
    from accelsim.validation.report import render
    failing = [c.name for c in report.checks if c.passed is False]
    assert set(failing) <= set(known_failures), f"unexplained failures: {set(failing) - set(known_failures)}"
    if failing:
        assert report.notes, "failing checks without an explanation in the document"
        text = render([report], "")
        for name in failing:
            row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
            assert "**FAIL**" in row


def xfail_if_known(name: str, known_failures: dict):
    if name in known_failures:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=known_failures[name]))
    return name
