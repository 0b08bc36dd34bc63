"""The repository stands on its own: no file names documents outside it or a path of one machine,
and every citation of a docs/sources.md section names a section that exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not contain what it looks for.
FACTS, WORK, TMP = "FACTS" + ".md", "/work" + "/", "/tmp" + "/"
FORBIDDEN = [FACTS, "DESIGN" + ".md", "shared" + "/reference", WORK, "/root" + "/", "/home" + "/", TMP]
# A root-anchored ignore pattern (the repository's own tmp/ directory), not a machine path.
ALLOWED_LINES = {(".gitignore", TMP)}
CITATION = re.compile(r'sources\.md[\s#*]+\(?\\?"([^"\\\n]{1,100})\\?"')


def _tracked_text_files() -> list[tuple[str, str]]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (an sdist or an installed copy): nothing to list")
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    out = []
    for name in names.decode().split("\0"):
        path = ROOT / name
        if not name or name.endswith(".npz") or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        out.append((name, data.decode("utf-8", errors="replace")))
    return out


def offenders(files: list[tuple[str, str]]) -> list[str]:
    """'file:line: pattern' for every forbidden pattern on a line that is not explicitly allowed."""
    bad = []
    for name, text in files:
        for i, line in enumerate(text.splitlines(), 1):
            for pat in FORBIDDEN:
                if pat in line and (name, line.strip()) not in ALLOWED_LINES:
                    bad.append(f"{name}:{i}: {pat}")
    return bad


def test_offenders_hand_case():
    files = [("a.py", f"x = 1  # see {FACTS}\nok\n"), ("b.yaml", f"# copy in {WORK}x\n"),
             (".gitignore", f"{TMP}\n"), ("c.md", f"mkdir {TMP}x\n")]
    assert offenders(files) == [f"a.py:1: {FACTS}", f"b.yaml:1: {WORK}", f"c.md:1: {TMP}"]


def test_no_outside_documents_or_machine_paths():
    bad = offenders(_tracked_text_files())
    assert not bad, f"{len(bad)} lines name an outside document or a machine path:\n" + "\n".join(bad[:50])


def headings() -> set[str]:
    text = (ROOT / "docs" / "sources.md").read_text(encoding="utf-8")
    return {m.group(1).strip() for m in re.finditer(r"(?m)^## (.+)$", text)}


def test_citation_pattern_hand_case():
    text = ('a (docs/sources.md "NVIDIA A100") b; docs/sources.md\n    "SSL"; # docs/sources.md\n# "ASP"\n'
            "f'docs/sources.md \\\"SR-STE\\\"'")
    assert CITATION.findall(text) == ["NVIDIA A100", "SSL", "ASP", "SR-STE"]


def test_every_cited_section_exists():
    have = headings()
    assert {"NVIDIA A100", "SCALE-Sim 3.0 systolic compute", "SWAT as implemented"} <= have
    bad = [f"{name}: {m.group(1)!r}" for name, text in _tracked_text_files() if name != "docs/sources.md"
           for m in CITATION.finditer(text) if m.group(1).strip() not in have]
    assert not bad, "citations of sections docs/sources.md does not have:\n" + "\n".join(bad[:50])
