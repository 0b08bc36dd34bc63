"""Plain-text tables for the terminal: fixed-width columns, numbers right-aligned, compact SI units
(the exact numbers are in the JSON/CSV outputs)."""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

PASS_ORDER = ("fwd", "dgrad", "wgrad")
# trace format v2 adds vector-only passes (backward's non-GEMM work, the optimizer step)
STEP_PASS_ORDER = ("fwd", "dgrad", "wgrad", "bwd", "optimizer")


def si(x: float | int | None, digits: int = 3) -> str:
    """Compact number: 1234567 -> '1.23M'; small integers verbatim."""
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax < 10_000:
        return num(x, ",.0f") if float(x).is_integer() else num(x, f".{digits}g")
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if ax >= scale:
            return f"{num(x / scale, f'.{digits}g')}{unit}"
    return str(x)


def num(x: float, spec: str) -> str:
    """``format(x, spec)`` without a minus sign on a value that rounds to zero: -0.0001 with
    '.1f' is '0.0', not '-0.0' (nor '-0.0%', '-0.00x')."""
    text = format(x, spec)
    if text.startswith("-") and not any(ch in "123456789" for ch in text.split("e")[0]):
        return text[1:]
    return text


def ratio(x: float | None) -> str:
    """A speedup / ratio: 2 decimals, 3 significant digits below 0.1 (never a bare 0.00x)."""
    if x is None or not math.isfinite(x):
        return "-"
    return num(x, ".2f") + "x" if x >= 0.1 else num(x, ".3g") + "x"


def byte_unit(x: int | float) -> tuple[str, int]:
    """The largest binary unit not above |x|: (name, bytes per unit); 'B', 1 below 1 KiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(x) >= scale:
            return unit, scale
    return "B", 1


def nbytes(x: int | float | None, decimals: int = 2) -> str:
    """Binary byte units: 1536 -> '1.50 KiB' (the one byte formatter of tables and figures)."""
    if x is None:
        return "-"
    unit, scale = byte_unit(x)
    return f"{x / scale:.{decimals}f} {unit}" if scale > 1 else f"{int(x)} B"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, align: str | None = None,
                 indent: str = "") -> str:
    """Columns padded to their widest cell; ``align`` is one 'l'/'r' per column (default: numbers
    right, text left, decided from the first row)."""
    rows = [[("" if c is None else str(c)) for c in r] for r in rows]
    if align is None:
        first = rows[0] if rows else [""] * len(headers)
        align = "".join("r" if _numeric(c) else "l" for c in first)
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, c in enumerate(cells):
            out.append(c.rjust(widths[i]) if align[i] == "r" else c.ljust(widths[i]))
        return (indent + "  ".join(out)).rstrip()

    parts = [line(headers), indent + "  ".join("-" * w for w in widths)]
    parts += [line(r) for r in rows]
    return "\n".join(parts)


def _numeric(cell: str) -> bool:
    s = cell.strip().rstrip("x%kMGTBi ").replace(",", "").replace(".", "", 1).lstrip("-")
    return bool(s) and s.isdigit()


def pass_totals(result) -> dict[str, dict]:
    """SimResult.totals() without the passes the trace does not have (keys fwd/dgrad/wgrad/bwd/
    optimizer/all; a pass is there when it has GEMM or vector ops)."""
    return {k: t for k, t in result.totals().items() if t["ops"] > 0 or t.get("vector_ops", 0) > 0}


def _us(cycles: int, clock_hz: float) -> str:
    return num(cycles / clock_hz * 1e6, ",.1f") if clock_hz else "-"


def step_table(result) -> str:
    """Per pass and for the whole step: GEMM, vector and sparsification time, and the two speedups
    side by side -- GEMM only (the GEMM ops' dense / sparse cycles) and whole step (dense step /
    step: the vector work included, the sparsity method's own work only on the sparse run).
    Built from SimResult.totals() alone (also used by `accelsim compare`)."""
    clock = result.clock_hz
    headers = ["pass", "GEMM (us)", "vector (us)", "sparsify (us)", "step (us)", "dense step (us)",
               "GEMM speedup", "step speedup", "not simulated"]
    rows = []
    for key, t in pass_totals(result).items():
        miss = t.get("not_simulated", {})
        rows.append([key, _us(t["gemm_cycles"], clock), _us(t["vector_cycles"], clock),
                     _us(t["sparsify_cycles"], clock), _us(t["step_cycles"], clock),
                     _us(t["step_dense_cycles"], clock),
                     ratio(t["speedup"]) if t["ops"] else "-", ratio(t["step_speedup"]),
                     not_simulated_text(miss) if miss.get("ops") else ""])
    return format_table(headers, rows, align="lrrrrrrrl")


def vector_table(result) -> str | None:
    """The vector (non-GEMM) ops summed per pass, class and owner (the sparsity method's own work or
    not): ops, bytes moved on this machine, time, and the dense run's time. None without vector ops."""
    groups: dict[tuple[str, str, bool], list] = {}
    for o in result.ops:
        if o.kind == "vector":
            groups.setdefault((o.pass_, o.vector_class, o.sparsify), []).append(o)
    if not groups:
        return None
    order = {p: i for i, p in enumerate(STEP_PASS_ORDER)}
    rows = []
    for (pass_, cls, spars), ops in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1], kv[0][2])):
        miss = sum(1 for o in ops if o.not_simulated)
        rows.append([pass_, cls, "method" if spars else "", len(ops), nbytes(sum(o.vector_bytes for o in ops)),
                     _us(sum(o.total_cycles for o in ops), result.clock_hz),
                     _us(sum(o.dense_cycles for o in ops), result.clock_hz), miss or ""])
    return format_table(["pass", "class", "sparsify", "ops", "bytes", "time (us)", "dense (us)", "not simulated"],
                        rows, align="lllrrrrr")


def not_simulated_text(item: dict) -> str:
    """'3 ops, 0.4 GMAC, 1.20 MiB' (the parts that are known)."""
    parts = [f"{item.get('ops', 0)} op{'s' if item.get('ops', 0) != 1 else ''}"]
    if item.get("macs"):
        parts.append(f"{item['macs'] / 1e9:.3g} GMAC")
    if item.get("bytes"):
        parts.append(nbytes(item["bytes"]))
    return ", ".join(parts)


def not_simulated_lines(result) -> list[str]:
    """One warning per thing the trace holds but nothing simulated (SimResult.not_simulated),
    e.g. 'aten._scaled_dot_product_flash_attention.default: 4 ops, 0.4 GMAC not simulated (not
    recorded)'; MACs/bytes are named where the trace knows them, else 'size unknown'."""
    out = []
    for it in getattr(result, "not_simulated", []) or []:
        size = "" if it.get("macs") or it.get("bytes") else ", size unknown"
        out.append(f"{it['what']}: {not_simulated_text(it)}{size} not simulated ({it.get('why', '')})")
    return out


def coverage_line(result, trace_version: int | None = None) -> str:
    """What was simulated and what was not, in one line (``trace_version`` 1: the trace format that
    records GEMMs only, so the step's non-GEMM work is unknown, not free)."""
    t = result.totals()["all"]
    gemm, vec = t["ops"], t.get("vector_ops", 0)
    line = f"coverage: {gemm} GEMM op(s) and {vec} vector op(s) simulated"
    miss = t.get("not_simulated", {})
    if miss.get("ops"):
        vec_missed = sum(1 for o in result.ops if o.not_simulated)
        line += f" ({vec_missed} of them costed 0: nothing to run them)" if vec_missed else ""
        line += f"; not simulated: {not_simulated_text(miss)}"
    else:
        line += "; nothing the recorder saw was left out"
    if trace_version == 1:
        line += " (trace format v1 records GEMMs only: the step's non-GEMM work is not in it)"
    return line


def op_table(result) -> str:
    """Per-op table of a SimResult's GEMM ops; '*' marks ops that fell back (reasons listed below).
    Vector (non-GEMM) ops are summed by class in vector_table."""
    headers = ["op", "step", "layer", "pass", "shape", "dense MACs", "eff MACs", "cycles", "dense cyc",
               "speedup", "util", "stalls", "fb"]
    rows = []
    for o in result.ops:
        if o.kind == "vector":
            continue
        rows.append([o.op_id, o.step, o.layer, o.pass_, o.shape, si(o.dense_macs), si(o.effectual_macs),
                     si(o.total_cycles), si(o.dense_cycles), num(o.speedup, ".2f") + "x", num(o.utilisation, ".0%"),
                     si(o.stall_cycles), "*" if o.fallback else ""])
    return format_table(headers, rows, align="rrlllrrrrrrrl")


def totals_table(result) -> str:
    clock = result.clock_hz
    # "compute only": dense vs sparse stall-free compute cycles, the number cycle-count-only
    # simulators (e.g. DNNsim) report; "speedup" includes memory stalls and fixed costs.
    headers = ["pass", "ops", "dense MACs", "eff MACs", "cycles", "dense cyc", "time (us)", "speedup",
               "compute only", "util", "stalls", "fallbacks"]
    rows = []
    for key, t in pass_totals(result).items():
        if not t["ops"] and key != "all":  # a vector-only pass (bwd, optimizer): in step_table
            continue
        comp = t.get("compute_speedup")
        rows.append([key, t["ops"], si(t["dense_macs"]), si(t["effectual_macs"]), si(t["total_cycles"]),
                     si(t["dense_cycles"]), num(t['total_cycles'] / clock * 1e6, ",.1f"), num(t['speedup'], ".2f") + "x",
                     "-" if comp is None else num(comp, ".2f") + "x", num(t['utilisation'], ".0%"),
                     si(t["stall_cycles"]),
                     t["fallbacks"]])
    return format_table(headers, rows, align="lrrrrrrrrrrr")


def fallback_lines(result) -> list[str]:
    return [f"  * op {o.op_id} {o.layer} {o.pass_}: {o.fallback}" for o in result.ops if o.fallback]


def footprint_table(fp, *, max_layers: int | None = None) -> str:
    """Summary of a Footprint: per category dense vs stored, % saved with and without overhead,
    and the peak live bytes."""
    headers = ["saved for backward", "dense", "stored", "saved", "values only", "saved (no idx)"]
    rows = []
    for cat in ("activation", "weight", "other", "all"):
        t = fp.totals[cat]
        if cat != "all" and t["dense"] == 0:
            continue
        rows.append([cat if cat != "all" else "total", nbytes(t["dense"]), nbytes(t["stored"]),
                     num(fp.saved_pct(cat, True), ".1f") + "%", nbytes(t["values"]),
                     num(fp.saved_pct(cat, False), ".1f") + "%"])
    rows.append(["peak live", nbytes(fp.peak_dense), nbytes(fp.peak_stored), num(fp.peak_saved_pct, ".1f") + "%",
                 "", ""])
    return format_table(headers, rows, align="lrrrrr")
