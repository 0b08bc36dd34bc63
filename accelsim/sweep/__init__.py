"""Design-space sweeps (docs/sweeps.md): ``accelsim sweep SPEC.yaml -o results.parquet|.csv``.

The names below load their modules on first use (PEP 562): ``accelsim.cli`` imports
``accelsim.sweep.command`` to build its parser, and every other command would otherwise pay for
the sweep runner, the spec loader and what they import."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"run_sweep": "accelsim.sweep.run", "load_spec": "accelsim.sweep.spec",
          "SweepSpec": "accelsim.sweep.spec", "SweepSpecError": "accelsim.sweep.spec"}

__all__ = ["run_sweep", "load_spec", "SweepSpec", "SweepSpecError"]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
