"""The list of validation cases, in document order."""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path
from typing import Callable

from accelsim.validation.report import CaseReport

CASE_MODULES = [
    (1, "Systolic cycles = SCALE-Sim 3.0", "accelsim.validation.case_systolic"),
    (2, "SWAT FLOP accounting", "accelsim.validation.case_swat_flops"),
    (3, "SWAT speedup on TensorDash", "accelsim.validation.case_tensordash"),
    (4, "A100 2:4 sparse tensor cores", "accelsim.validation.case_a100"),
    (5, "Backward-pass memory footprint (SWAT)", "accelsim.validation.case_footprint"),
    (6, "SSL group sparsity on dense hardware", "accelsim.validation.case_ssl"),
    (7, "Library-realistic GPU kernels (A100, H100, H200)", "accelsim.validation.case_gpu_library"),
    (8, "Whole training step: GEMM-only vs whole-step speedup", "accelsim.validation.case_step"),
]


def run_case(number: int) -> CaseReport:
    _, title, mod = next(c for c in CASE_MODULES if c[0] == number)
    return importlib.import_module(mod).run()


def run_all(progress: Callable[[str], None] | None = None) -> list[CaseReport]:
    """Run every case. A case whose code raises is reported as NOT RUN with the exception (so the
    document never silently drops a case); the tests call the case modules directly and fail."""
    out = []
    for number, title, mod in CASE_MODULES:
        if progress:
            progress(f"case {number}: {title}")
        try:
            out.append(importlib.import_module(mod).run())
        except Exception as e:  # noqa: BLE001 -- reported in the document, re-raised by the tests
            tb = traceback.extract_tb(e.__traceback__)[-1]
            # no machine paths in the document (an ImportError names the file it read)
            msg = str(e).replace(str(Path(__file__).resolve().parents[2]) + "/", "")
            out.append(CaseReport(number, title, intro="", skipped=(
                f"`{type(e).__name__}: {msg}` (at {tb.filename.split('accelsim/')[-1]}:{tb.lineno})")))
    return out
