"""The shipped machines: ``--hw a100_24`` by name, from any directory, and ``accelsim hw list``.

The files live in ``hwconfigs/`` at the root of the source tree (README and docs name them
``hwconfigs/x.yaml``). A wheel installs that same directory as ``accelsim/hwconfigs/`` (setup.py
maps the package dir), so there is one copy of each file in the repository and one in an install:

- installed (``pip install .``): ``<site-packages>/accelsim/hwconfigs/*.yaml``;
- source checkout or editable install: ``<checkout>/hwconfigs/*.yaml`` next to ``accelsim/``.

A ``--hw`` value is a path when it names something that exists or contains a directory part;
otherwise a bare name (``a100_24`` or ``a100_24.yaml``) is looked up among the shipped machines.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parents[1]  # .../accelsim
SUFFIXES = (".yaml", ".yml")


def shipped_dir() -> Path | None:
    """Where the shipped hardware files are, or None if neither location has them."""
    installed = _PKG / "hwconfigs"
    if installed.is_dir():
        return installed
    checkout = _PKG.parent / "hwconfigs"
    if checkout.is_dir() and (_PKG.parent / "pyproject.toml").is_file():
        return checkout
    return None


def shipped() -> dict[str, Path]:
    """Shipped machine name (the file's stem) -> its file, sorted by name."""
    d = shipped_dir()
    if d is None:
        return {}
    return {p.stem: p for p in sorted(d.iterdir()) if p.suffix in SUFFIXES and p.is_file()}


def shipped_names() -> list[str]:
    return list(shipped())


def resolve(spec: str | os.PathLike) -> Path:
    """The file a ``--hw`` value means: the path itself, or the shipped machine of that name.

    Only a bare name that is not an existing file in the current directory is looked up (so a
    local ``a100_24.yaml`` wins over the shipped one); errors (missing, unreadable) are left to
    load_hw, which lists the shipped names when nothing is found."""
    text = os.fsdecode(os.fspath(spec))
    bare = text and "/" not in text and os.sep not in text and (os.altsep is None or os.altsep not in text)
    if bare and len(text) < 256 and not os.path.lexists(text):
        stem = next((text[: -len(s)] for s in SUFFIXES if text.lower().endswith(s)), text)
        found = shipped().get(stem)
        if found is not None:
            return found
    return Path(spec)


def not_found_hint() -> str:
    """'(shipped machines: a, b, c; see `accelsim hw list`)' for a hardware file that is not there."""
    names = shipped_names()
    if not names:
        return "(no shipped machines found: this install has no hwconfigs directory)"
    return f"(shipped machines: {', '.join(names)}; see 'accelsim hw list')"


def _peak(hw) -> str:
    flops = 2 * hw.peak_macs_per_cycle * hw.clock_hz  # one MAC = 2 operations
    unit = "FLOP/s" if hw.compute.data_type.startswith(("fp", "bf", "tf")) else "OP/s"
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {prefix}{unit}"
    return f"{flops:.3g} {unit}"


def _sparsity(hw) -> str:
    sp = hw.sparsity
    if sp.kind == "nm":
        return f"{sp.n}:{sp.m} on {sp.operand}"
    if sp.kind == "one_sided":
        return f"one-sided ({sp.operand})"
    if sp.kind == "two_sided":
        return "two-sided"
    return "dense"


def list_lines() -> list[str]:
    """One line per shipped machine: name, family, clock, dense peak, sparsity, description."""
    from accelsim.errors import AccelsimError
    from accelsim.hw.loader import load_hw

    rows = []
    for name, path in shipped().items():
        try:
            hw = load_hw(path)
        except AccelsimError as e:
            rows.append((name, "?", "", "", "", f"cannot load: {e}"))
            continue
        clock = f"{hw.clock_hz / 1e9:g} GHz" if hw.clock_hz >= 1e9 else f"{hw.clock_hz / 1e6:g} MHz"
        rows.append((name, hw.family, clock, _peak(hw), _sparsity(hw), hw.description))
    head = ("name", "family", "clock", "dense peak", "sparsity", "description")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(5)]
    return ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in [head, *rows]]
