"""Published A100 dense vs 2:4 GEMM measurements (data/a100_24_library.csv; docs/sources.md
"Published dense vs 2:4 measurements"), the data issue 11 names for calibrating a library-realistic
A100 model, and their Hopper counterpart (data/hopper_library.csv, with a ``gpu`` column naming the
shipped machine). Rows marked ``calibrate`` are the sources issue 11 allows fitting to; ``validate``
rows are compared only, never fitted (the fit: accelsim/validation/fit_gpu_library.py).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "a100_24_library.csv"
HOPPER = Path(__file__).resolve().parent / "data" / "hopper_library.csv"
ROLES = ("calibrate", "validate")


@dataclass(frozen=True)
class Measurement:
    source: str
    role: str  # calibrate | validate
    dtype: str  # fp16, int8, or "unstated" where the source does not say
    dense_kernel: str
    sparse_kernel: str
    batch: int
    m: int
    k: int
    n: int
    dense_us: float | None
    sparse_us: float | None
    published_speedup: float | None  # only where the source gives a ratio, not times
    conditions: str  # clock / power conditions as the source states them
    gpu: str = "a100_24"  # the shipped machine the row ran on

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, N, K) of C[M,N] = A[M,K] @ B[K,N] with A the 2:4 operand: M = m, K = k and N = batch * n
        (pytorch#90119's linear layer: a weight of m x k, the input batch x n rows of k; ASSUMPTION
        read off PyTorch's semi-structured sparsity benchmark, which builds the weight as m x k and
        the input as n x k)."""
        return self.m, self.batch * self.n, self.k

    @property
    def speedup(self) -> float | None:
        """dense / 2:4 time, or the published ratio where only that is given."""
        if self.dense_us is not None and self.sparse_us is not None:
            return self.dense_us / self.sparse_us
        return self.published_speedup


def _num(text: str) -> float | None:
    return float(text) if text.strip() else None


def load(path: Path = DATA) -> list[Measurement]:
    """The rows of the CSV (``#`` lines are its header comments); ValueError on a malformed row."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
    out = []
    for i, r in enumerate(rows, 2):
        if r["role"] not in ROLES:
            raise ValueError(f"{path.name} row {i}: role must be one of {ROLES}, got {r['role'][:20]!r}")
        out.append(Measurement(r["source"], r["role"], r["dtype"], r["dense_kernel"], r["sparse_kernel"],
                               int(r["batch"]), int(r["m"]), int(r["k"]), int(r["n"]), _num(r["dense_us"]),
                               _num(r["sparse_us"]), _num(r["speedup"]), r["conditions"],
                               r.get("gpu") or "a100_24"))
    return out
