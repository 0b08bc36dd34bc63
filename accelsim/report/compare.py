"""Many traces x many machines at a glance (``accelsim compare``), and the one-line headline that
``accelsim run`` and ``accelsim compare`` end with.

A :class:`Comparison` holds one simulated :class:`Cell` per (trace, machine). Every number in it is a
``SimResult.totals()`` value (the ``totals`` of ``accelsim run --json``) or a ratio of two of them,
and the footprint is the one ``accelsim run`` reports (``Footprint.to_dict()`` without the per-tensor
and per-layer lists). Cross-machine ratios compare time, not cycles: machines run at different clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from accelsim.report.table import PASS_ORDER, format_table, nbytes, num, ratio, si

# the footprint columns of the compare CSV and the sweep table (docs/sweeps.md): footprint_columns
FOOTPRINT_COLUMNS = ("footprint_format", "footprint_dense_bytes", "footprint_stored_bytes", "footprint_saved_pct",
                     "footprint_peak_dense_bytes", "footprint_peak_stored_bytes", "footprint_peak_saved_pct")
LEAD_COLUMNS = ("trace", "trace_path", "model", "method", "sparsity", "nm", "machine", "hw", "hw_name", "family",
                "pass")


def _nm_of(params: Any) -> tuple[int, int] | None:
    """(n, m) when the method parameters record an N:M pattern (SR-STE, STE, ASP: the ``n`` and
    ``m`` fields of their sparsity/spec.py dataclasses, recorded in the trace's method params)."""
    if not isinstance(params, dict):
        return None
    n, m = params.get("n"), params.get("m")
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in (n, m))
    return (n, m) if ok and 0 < n < m else None


def header_info(header: dict) -> dict[str, Any]:
    """The model, method, target-sparsity and N:M columns of the compare CSV and the sweep table,
    from a trace header: sparsity is the method's ``sparsity`` parameter, else ``1 - n/m`` for an
    N:M method, 0 for dense, None when not known; ``nm`` is ``"N:M"`` (e.g. ``"2:4"``) for a method
    whose parameters record n and m, else None (docs/sweeps.md)."""
    method = header.get("method")
    name, params = "", {}
    if isinstance(method, dict):
        name, params = str(method.get("name") or ""), method.get("params") or {}
    elif method:
        name = str(method)
    nm = _nm_of(params)
    sp = params.get("sparsity") if isinstance(params, dict) else None
    if not isinstance(sp, (int, float)) or isinstance(sp, bool):
        n, m = (params.get("n"), params.get("m")) if isinstance(params, dict) else (None, None)
        if isinstance(n, int) and isinstance(m, int) and m > 0:
            sp = 1.0 - n / m
        elif name == "dense":
            sp = 0.0
        else:
            sp = None
    return {"model": str(header.get("model") or ""), "method": name,
            "sparsity": float(sp) if sp is not None else None,
            "nm": f"{nm[0]}:{nm[1]}" if nm is not None else None}


def footprint_args(hw=None, fmt: str | None = None) -> dict[str, Any]:
    """``footprint()``'s format, n and m for a trace on ``hw``, as ``accelsim run`` reports it:
    ``fmt`` (--format), else the hardware file's storage_format, else auto; N:M from the machine's
    N:M sparsity support, else 2:4. The footprint depends on the machine only through these."""
    chosen = fmt or (getattr(hw, "storage_format", None) if hw is not None else None) or "auto"
    n, m = 2, 4
    sp = getattr(hw, "sparsity", None)
    if sp is not None and sp.kind == "nm" and sp.n and sp.m:
        n, m = sp.n, sp.m
    return {"format": chosen, "n": n, "m": m}


def flat_totals(totals: dict[str, Any]) -> dict[str, Any]:
    """One pass of ``SimResult.totals()`` as table columns, in its order: a nested dict such as
    ``not_simulated`` becomes ``not_simulated_ops``, ``not_simulated_macs``, ... (compare CSV, sweep)."""
    out: dict[str, Any] = {}
    for k, v in totals.items():
        if isinstance(v, dict):
            out.update({f"{k}_{sk}": sv for sk, sv in v.items()})
        else:
            out[k] = v
    return out


def footprint_summary(fp) -> dict[str, Any]:
    """``accelsim run --json``'s ``footprint`` (Footprint.to_dict()) without ``items`` and ``layers``."""
    d = fp.to_dict()
    d.pop("items", None)
    d.pop("layers", None)
    return d


def footprint_columns(fp: dict[str, Any]) -> dict[str, Any]:
    """The sweep table's footprint columns from a :func:`footprint_summary` (or run --json) dict."""
    return {"footprint_format": fp["format"], "footprint_dense_bytes": int(fp["totals"]["all"]["dense"]),
            "footprint_stored_bytes": int(fp["totals"]["all"]["stored"]),
            "footprint_saved_pct": float(fp["saved_pct"]["all"]["with_overhead"]),
            "footprint_peak_dense_bytes": int(fp["peak_dense"]), "footprint_peak_stored_bytes": int(fp["peak_stored"]),
            "footprint_peak_saved_pct": float(fp["peak_saved_pct"])}


def seconds_text(s: float) -> str:
    """A duration with 3 significant digits in s / ms / us / ns: 0.0012345 -> '1.23 ms'."""
    if not math.isfinite(s):
        return "-"
    units = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))
    for i, (unit, scale) in enumerate(units):
        if abs(s) >= scale or i == len(units) - 1:
            text = num(s / scale, ".3g")
            if i and abs(float(text)) >= 1000:  # 999.96 us rounds to 1000: say 1 ms
                unit, scale = units[i - 1]
                text = num(s / scale, ".3g")
            return f"{text} {unit}"
    return f"{s} s"  # unreachable


def has_step(totals: dict) -> bool:
    """Whether totals carry the whole-step keys (step_seconds, step_speedup: SimResult.totals())."""
    return "step_speedup" in totals and "step_seconds" in totals


def whole_step(totals: dict) -> bool:
    """Whether the whole-step numbers say more than the GEMM-only ones: the trace has vector
    (non-GEMM) work. On a trace of GEMMs only, step_* equal the GEMM values and calling them the
    whole step would claim what was never recorded."""
    if not has_step(totals):
        return False
    return totals.get("vector_ops", 0) > 0 or totals.get("step_cycles", 0) != totals.get("total_cycles", 0)


def _unsimulated(totals: dict) -> int:
    ns = totals.get("not_simulated")
    return int(ns.get("ops", 0)) if isinstance(ns, dict) else 0


def present(totals: dict) -> bool:
    """A pass the trace has work in: GEMM ops, vector ops, or ops it could not simulate."""
    return totals["ops"] > 0 or totals.get("vector_ops", 0) > 0 or _unsimulated(totals) > 0


def passes_of(result) -> dict[str, dict]:
    """SimResult.totals() of the passes with work, and 'all' (always)."""
    return {k: t for k, t in result.totals().items() if k == "all" or present(t)}


def headline(trace: str, machine: str, totals: dict, footprint: dict | None) -> str:
    """One line: total time, speedup vs dense (GEMM only, and the whole step when the trace has
    non-GEMM work: :func:`whole_step`), backward-pass memory dense -> stored. ``totals`` is a ``totals()["all"]`` dict and ``footprint``
    a run --json footprint dict (or :func:`footprint_summary`); both as the JSON reports them."""
    if whole_step(totals):
        perf = (f"{seconds_text(totals['step_seconds'])} (GEMM {seconds_text(totals['seconds'])}), speedup vs "
                f"dense {ratio(totals['step_speedup'])} whole step, {ratio(totals['speedup'])} GEMM only")
    else:
        perf = f"{seconds_text(totals['seconds'])} (GEMM only), speedup vs dense {ratio(totals['speedup'])}"
    dense = stored = 0
    if footprint is not None:
        dense, stored = footprint["totals"]["all"]["dense"], footprint["totals"]["all"]["stored"]
    if dense:
        mem = (f"backward-pass memory {nbytes(dense)} dense -> {nbytes(stored)} stored "
               f"({num(100.0 * (1.0 - stored / dense), '.1f')}% saved)")
    else:
        mem = "backward-pass memory: no saved-for-backward records"
    n = _unsimulated(totals)
    if n:
        perf += f" ({n} op(s) not simulated)"
    return f"headline: {trace} on {machine}: {perf}; {mem}"


@dataclass
class Cell:
    """One trace simulated on one machine."""

    trace: str             # the trace's label (file name, or path where two names clash)
    trace_path: str
    info: dict[str, Any]   # model, method, sparsity from the trace header (sweep's columns)
    machine: str           # the machine's label (hw name, with the file name where two clash)
    hw: str                # --hw as given
    hw_name: str
    family: str
    result: Any            # SimResult
    footprint: dict[str, Any]  # footprint_summary(...)
    totals: dict[str, dict] = field(init=False)

    def __post_init__(self) -> None:
        self.totals = passes_of(self.result)


def _time(t: dict) -> float:
    return t["seconds"]


def _vs(base: float, value: float) -> float | None:
    return base / value if value else None


class Comparison:
    """Cells of ``traces`` x ``machines`` (``cells[i][j]``: trace i on machine j); the first
    machine is every trace's reference."""

    def __init__(self, cells: Sequence[Sequence[Cell]]):
        self.cells = [list(row) for row in cells]
        if not self.cells or not self.cells[0]:
            raise ValueError("a comparison needs at least one cell")
        self.traces = [row[0].trace for row in self.cells]
        self.machines = [c.machine for c in self.cells[0]]
        # whole-step keys in every cell: vs_first, the CSV and the JSON carry the step ratios
        self.step = all(has_step(c.totals["all"]) for row in self.cells for c in row)
        # the table shows the whole-step columns when some trace has non-GEMM work
        self.step_shown = self.step and any(whole_step(c.totals["all"]) for row in self.cells for c in row)

    def passes(self, i: int) -> list[str]:
        """Passes of trace ``i`` (those with ops; the same on every machine), 'all' last."""
        t = self.cells[i][0].totals
        known = [p for p in (*PASS_ORDER, "bwd", "optimizer") if p in t]
        return known + [p for p in t if p not in known and p != "all"] + ["all"]

    def vs_first(self, i: int, j: int) -> dict[str, dict[str, float | None]]:
        """Per pass: the first machine's time / this machine's time (same trace), GEMM and whole step."""
        out = {}
        for p in self.passes(i):
            base, t = self.cells[i][0].totals[p], self.cells[i][j].totals[p]
            d = {"speedup": _vs(_time(base), _time(t))}
            if self.step:
                d["step_speedup"] = _vs(base["step_seconds"], t["step_seconds"])
            out[p] = d
        return out

    # ------------------------------------------------------------------------------ outputs
    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows, one per (trace, machine, pass incl. 'all'), the same columns in every row:
        LEAD_COLUMNS, every totals() key (a nested dict such as not_simulated flattened as
        not_simulated_ops, ...), speedup_vs_first (+ step_speedup_vs_first), FOOTPRINT_COLUMNS."""
        rows = []
        for i, row in enumerate(self.cells):
            for j, c in enumerate(row):
                vs = self.vs_first(i, j)
                fpc = footprint_columns(c.footprint)
                for p in self.passes(i):
                    r: dict[str, Any] = {"trace": c.trace, "trace_path": c.trace_path, "model": c.info.get("model"),
                                         "method": c.info.get("method"), "sparsity": c.info.get("sparsity"),
                                         "nm": c.info.get("nm"), "machine": c.machine, "hw": c.hw, "hw_name": c.hw_name,
                                         "family": c.family, "pass": p}
                    r.update(flat_totals(c.totals[p]))
                    r["speedup_vs_first"] = vs[p]["speedup"]
                    if self.step:
                        r["step_speedup_vs_first"] = vs[p]["step_speedup"]
                    r.update(fpc)
                    rows.append(r)
        return rows

    def headlines(self) -> list[str]:
        return [headline(c.trace, c.machine, c.totals["all"], c.footprint) for row in self.cells for c in row]

    def to_dict(self, meta: dict[str, Any]) -> dict[str, Any]:
        """JSON: meta, traces, machines, and per (trace, machine) the totals per pass, the ratios to
        the first machine, the footprint and the headline (per-op results: ``accelsim run --json``)."""
        traces = [{"name": row[0].trace, "path": row[0].trace_path, **row[0].info} for row in self.cells]
        machines = [{"name": c.machine, "hw": c.hw, "hw_name": c.hw_name, "family": c.family,
                     "hw_path": c.result.hw_path, "clock_hz": c.result.clock_hz,
                     "peak_macs_per_cycle": c.result.peak_macs_per_cycle} for c in self.cells[0]]
        results = []
        for i, row in enumerate(self.cells):
            for j, c in enumerate(row):
                t = c.totals["all"]
                head = {"text": headline(c.trace, c.machine, t, c.footprint), "seconds": t["seconds"],
                        "speedup": t["speedup"], "step_seconds": t.get("step_seconds"),
                        "step_speedup": t.get("step_speedup"),
                        "footprint_dense_bytes": c.footprint["totals"]["all"]["dense"],
                        "footprint_stored_bytes": c.footprint["totals"]["all"]["stored"]}
                results.append({"trace": c.trace, "machine": c.machine, "totals": c.totals,
                                "vs_first": self.vs_first(i, j), "footprint": c.footprint,
                                "fallbacks": [{"op_id": o.op_id, "layer": o.layer, "pass": o.pass_,
                                               "reason": o.fallback} for o in c.result.ops if o.fallback],
                                "warnings": list(getattr(c.result, "warnings", []) or []), "headline": head})
        return {"meta": meta, "traces": traces, "machines": machines, "results": results}

    def table(self) -> str:
        """Per pass, one row per trace x machine: cycles, time at the machine's clock, speedup vs its
        own dense baseline and vs the first machine (same trace); whole-step columns when present."""
        multi = len(self.cells) > 1
        first = self.machines[0]
        headers = ["pass", *(["trace"] if multi else []), "machine", "cycles", "dense cyc", "time (us)",
                   "vs own dense", f"vs {first}"]
        if self.step_shown:
            headers += ["step (us)", "step vs dense", f"step vs {first}"]
        headers.append("fallbacks")
        order = []  # passes in the order of the first trace that has them
        for i in range(len(self.cells)):
            order += [p for p in self.passes(i) if p not in order and p != "all"]
        rows = []
        for p in (*order, "all"):
            for i, row in enumerate(self.cells):
                if p not in row[0].totals:
                    continue
                vs = [self.vs_first(i, j)[p] for j in range(len(row))]
                for c, v in zip(row, vs):
                    t = c.totals[p]
                    r = [p, *([c.trace] if multi else []), c.machine, si(t["total_cycles"]), si(t["dense_cycles"]),
                         num(_time(t) * 1e6, ",.1f"), ratio(t["speedup"]), ratio(v["speedup"])]
                    if self.step_shown:
                        r += [num(t["step_seconds"] * 1e6, ",.1f"), ratio(t["step_speedup"]),
                              ratio(v["step_speedup"])]
                    rows.append(r + [t["fallbacks"]])
        align = "l" + ("l" if multi else "") + "l" + "r" * (len(headers) - (3 if multi else 2))
        return format_table(headers, rows, align=align)

    def fallback_lines(self) -> list[str]:
        out = []
        for row in self.cells:
            for c in row:
                n = sum(1 for o in c.result.ops if o.fallback)
                if n:
                    where = f"{c.trace} on {c.machine}" if len(self.cells) > 1 else c.machine
                    out.append(f"{where}: {n} op(s) fell back to the dense rate (see `accelsim run` for reasons)")
        return out


    def warning_lines(self) -> list[str]:
        """What a trace holds but nothing simulated (table.not_simulated_lines, as `run` warns on
        stderr), once per trace where every machine says the same, else per trace and machine."""
        from accelsim.report.table import not_simulated_lines

        out = []
        for row in self.cells:
            per = [not_simulated_lines(c.result) for c in row]
            for line in dict.fromkeys(x for lines in per for x in lines):  # first-seen order, once
                where = [c.machine for c, lines in zip(row, per) if line in lines]
                on = "" if len(where) == len(row) else f" on {', '.join(where)}"
                out.append(f"{row[0].trace}{on}: {line}")
        return out


def build_cells(traces: Sequence, trace_names: Sequence[str], hws: Sequence, hw_specs: Sequence[str],
                machine_names: Sequence[str], simulate: Callable[[Any, Any, str], Any],
                fmt: str | None = None) -> list[list[Cell]]:
    """Every trace on every machine, trace-major: ``simulate(trace, hw, label)`` gives the SimResult
    (the caller's progress display); each cell gets its trace's :func:`header_info` and the footprint
    ``accelsim run`` reports (:func:`footprint_args`), computed once per trace and distinct args."""
    from accelsim.sim.footprint import footprint

    total, k, cells = len(traces) * len(hws), 0, []
    for tname, tr in zip(trace_names, traces):
        info, fps = header_info(tr.header), {}
        row = []
        for name, spec, hw in zip(machine_names, hw_specs, hws):
            k += 1
            res = simulate(tr, hw, f"[{k}/{total}] {tname} on {name}")
            args = footprint_args(hw, fmt)
            key = tuple(args.values())
            if key not in fps:
                fps[key] = footprint_summary(footprint(tr, **args))
            row.append(Cell(trace=tname, trace_path=str(tr.path), info=info, machine=name, hw=spec, hw_name=hw.name,
                            family=hw.family, result=res, footprint=fps[key]))
        cells.append(row)
    return cells


def compare(traces: Sequence, hws: Sequence, *, fmt: str | None = None) -> Comparison:
    """``accelsim compare`` from Python: ``traces`` (Trace objects) on ``hws`` (HardwareConfig
    objects, the first the reference), simulated by ``accelsim.simulate``; labels as the CLI makes
    them (file names, machine names). ``.table()`` is what the command prints."""
    from pathlib import Path

    from accelsim.sim.engine import simulate

    files = [str(hw.source) for hw in hws]
    tnames = labels([Path(str(tr.path)).name for tr in traces], [str(tr.path) for tr in traces])
    cells = build_cells(traces, tnames, hws, files, labels([hw.name for hw in hws], files),
                        lambda tr, hw, _label: simulate(tr, hw), fmt)
    return Comparison(cells)


def labels(names: Sequence[str], files: Sequence[str] | None = None) -> list[str]:
    """Display labels: ``names``, told apart by file name where two are equal (if ``files``), then
    by position."""
    out = list(names)
    if files is not None and len(set(out)) < len(out):
        from pathlib import Path

        out = [n if out.count(n) == 1 else f"{n} ({Path(f).name})" for n, f in zip(out, files)]
    if len(set(out)) < len(out):
        out = [n if out.count(n) == 1 else f"{n} #{i + 1}" for i, n in enumerate(out)]
    return out
