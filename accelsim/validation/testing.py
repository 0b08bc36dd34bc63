"""Checks on a case's report shared by tests/validation (plain functions, no test framework: the
pytest-specific helpers live in tests/validation/validation_testing.py)."""

from accelsim.validation.report import CaseReport, Check, render


def check_by_name(report: CaseReport, name: str) -> Check:
    """The check of that name; AssertionError naming the case's checks if there is none."""
    matches = [c for c in report.checks if c.name == name]
    if not matches:
        names = [c.name for c in report.checks]
        raise AssertionError(f"no check named {name!r} in case {report.number} ({names})")
    return matches[0]


def assert_check(report: CaseReport, name: str, known_failures: dict) -> None:
    """Raise AssertionError unless the check passed. A check listed in the case's KNOWN_FAILURES
    must be stated failing in the report (so docs/validation.md says so); the caller marks it
    xfail(strict) (tests/validation/validation_testing.py: xfail_if_known)."""
    c = check_by_name(report, name)
    if not c.passed:
        raise AssertionError(f"{c.name}: accelsim {c.value}, reference {c.reference}, tolerance {c.tolerance}")


def assert_failures_documented(report: CaseReport, known_failures: dict) -> None:
    """Every failing check is a known one, is rendered as FAIL in the document, and the case carries
    an explanation (a note) -- the condition for marking its test xfail."""
    failing = [c.name for c in report.checks if c.passed is False]
    unexplained = set(failing) - set(known_failures)
    if unexplained:
        raise AssertionError(f"unexplained failures: {unexplained}")
    if not failing:
        return
    if not report.notes:
        raise AssertionError("failing checks without an explanation in the document")
    text = render([report], "")
    for name in failing:
        row = next((line for line in text.splitlines() if line.startswith(f"| {name} |")), None)
        if row is None or "**FAIL**" not in row:
            raise AssertionError(f"{name}: not rendered as **FAIL** in the document")
