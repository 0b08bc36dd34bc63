"""JSON and CSV writers. Both go through accelsim.util.atomic (a crash never leaves half a file) and
produce files pandas reads without options: strict JSON (no NaN/Infinity), flat CSV with a header."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from typing import Any, Iterable

from accelsim.util.atomic import atomic_write


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars -> Python, tuples -> lists, non-finite floats -> None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    text = json.dumps(_plain(obj), indent=1, allow_nan=False) + "\n"
    with atomic_write(path, "wb") as fh:
        fh.write(text.encode("utf-8", "backslashreplace"))


def flatten_row(row: dict) -> dict:
    """One level of nested dicts becomes ``key_subkey`` columns (e.g. dram_bytes_weight)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            for sk, sv in v.items():
                out[f"{k}_{sk}"] = sv
        elif isinstance(v, (list, tuple)):
            out[k] = "x".join(str(x) for x in v)
        else:
            out[k] = v
    return out


def rows_to_csv(rows: Iterable[dict]) -> str:
    flat = [flatten_row(r) for r in rows]
    columns: list[str] = []
    for r in flat:  # union of keys, first-seen order (rows of different ops may differ in operands)
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", restval="")
    w.writeheader()
    for r in flat:
        w.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v)) for k, v in r.items()})
    return buf.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    text = rows_to_csv(rows)
    with atomic_write(path, "wb") as fh:
        fh.write(text.encode("utf-8", "backslashreplace"))
