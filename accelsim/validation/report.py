"""Validation results as data, and their Markdown rendering (docs/validation.md is generated from
these by ``python -m accelsim.validation``; nothing in it is typed by hand)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Check:
    """One comparison: a reference value, where it comes from, accelsim's number, the error and the
    tolerance that was fixed before the result was known."""
    name: str
    reference: str
    source: str
    value: str
    error: str
    tolerance: str
    passed: bool | None          # None: reported only (no pass/fail criterion)
    note: str = ""


@dataclass
class CaseReport:
    number: int
    title: str
    intro: str                   # what is compared and how accelsim models it (Markdown)
    checks: list[Check] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)   # extra Markdown (sweeps, per-layer data)
    notes: list[str] = field(default_factory=list)    # explanations of gaps / failures, follow-ups
    skipped: str | None = None   # why the case could not run at all

    @property
    def status(self) -> str:
        if self.skipped:
            return "NOT RUN"
        graded = [c.passed for c in self.checks if c.passed is not None]
        if not graded:
            return "REPORTED"
        return "PASS" if all(graded) else "FAIL"

    @property
    def failing(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def render(cases: list[CaseReport], preamble: str) -> str:
    parts = [preamble.rstrip(), "", "## Summary", ""]
    parts.append(md_table(["#", "case", "status", "checks passed"], [
        [c.number, c.title, c.status,
         "-" if c.skipped else f"{sum(1 for k in c.checks if k.passed)}/"
                               f"{sum(1 for k in c.checks if k.passed is not None)}"]
        for c in cases]))
    for c in cases:
        parts += ["", f"## {c.number}. {c.title} — {c.status}", "", c.intro.strip(), ""]
        if c.skipped:
            parts += [f"**Not run:** {c.skipped}", ""]
            continue
        if c.checks:
            parts.append(md_table(
                ["check", "reference", "source", "accelsim", "error", "tolerance", "result"],
                [[k.name, k.reference, k.source, k.value, k.error, k.tolerance,
                  {True: "pass", False: "**FAIL**", None: "reported"}[k.passed]
                  + (f" — {k.note}" if k.note else "")] for k in c.checks]))
            parts.append("")
        for t in c.tables:
            parts += [t.strip(), ""]
        for n in c.notes:
            parts += [n.strip(), ""]
    return "\n".join(parts).rstrip() + "\n"
