"""The validation suite: accelsim against published and reference results (issue 5).

One module per case (case_*.py) returns a CaseReport of Checks; ``python -m accelsim.validation``
renders them into docs/validation.md, and tests/validation runs the same code as tests. Reference
data with its provenance lives in data/ (SCALE-Sim 3.0 cycle counts and its topologies, MIT).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the source checkout: traces/ and hwconfigs/ live here


def shipped_traces(pattern: str) -> list[Path]:
    """The shipped traces matching a glob relative to the checkout (sorted; empty if none)."""
    return sorted(ROOT.glob(pattern))
