"""The validation suite: accelsim against published and reference results (issue 5).

One module per case (case_*.py) returns a CaseReport of Checks; ``python -m accelsim.validation``
renders them into docs/validation.md, and tests/validation runs the same code as tests. Reference
data with its provenance lives in data/ (SCALE-Sim 3.0 cycle counts, its topologies and configs,
MIT: docs/sources.md "SCALE-Sim topologies and configs").
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the source checkout: traces/ and hwconfigs/ live here
# Where the shipped traces are looked up; set it to validate other traces (or, in the tests, to an
# empty directory to prove that missing traces fail the suite).
TRACES_ENV = "ACCELSIM_VALIDATION_TRACES"


def traces_dir() -> Path:
    """$ACCELSIM_VALIDATION_TRACES if set, else traces/ of the source checkout."""
    env = os.environ.get(TRACES_ENV)
    return Path(env) if env else ROOT / "traces"


def traces_label(pattern: str) -> str:
    """How a trace glob is named in messages and docs/validation.md (no machine path)."""
    return f"${TRACES_ENV}/{pattern}" if os.environ.get(TRACES_ENV) else f"traces/{pattern}"


def shipped_traces(pattern: str) -> list[Path]:
    """The shipped traces matching a glob in traces_dir() (sorted; empty if none)."""
    return sorted(traces_dir().glob(pattern))
