"""pytest helpers for tests/validation (kept out of the package, which must not import pytest)."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelsim.validation import traces_label


def xfail_if_known(name: str, known_failures: dict):
    """A parametrize value: the check's name, marked xfail(strict) if the case lists it as a known
    failure (so a known failure that starts passing fails the suite too)."""
    if name in known_failures:
        return pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=known_failures[name]))
    return name


def require_traces(paths: list[Path], pattern: str) -> list[Path]:
    """The shipped traces a case validates against. None found is a test FAILURE, not a skip: the
    traces are part of the repository, so their absence means a broken checkout or lookup."""
    if not paths:
        pytest.fail(f"no shipped trace matches {traces_label(pattern)} (a validation input is missing)")
    return paths
