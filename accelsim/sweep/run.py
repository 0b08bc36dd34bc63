"""Run a sweep (docs/sweeps.md): points grouped by trace into chunks, run in-process, on a local
process pool (forkserver/spawn) or a Dask distributed cluster; one cached JSON file per (trace,
point); one tidy table out, sorted by a stable key so that scheduling never changes a bit of it."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from accelsim import __version__
from accelsim.errors import AccelsimError
from accelsim.report.compare import FOOTPRINT_COLUMNS, flat_totals
from accelsim.sim.result import SimResult
from accelsim.sweep.spec import SweepSpec, canonical_json, file_sha256, load_spec, trace_label


def _total_types() -> dict[str, type]:
    """Every key ``SimResult.totals()`` reports (``accelsim run --json``'s totals), flattened as the
    compare CSV flattens them (not_simulated -> not_simulated_ops, ...), in its order, with its type:
    taken from the totals of an empty result, so that the table carries whatever totals() adds."""
    empty = SimResult(hw_name="", hw_path="", trace_path="", clock_hz=1.0, ops=[]).totals()["all"]
    return {k: type(v) for k, v in flat_totals(empty).items()}


TOTAL_TYPES = _total_types()
TOTAL_COLUMNS = tuple(TOTAL_TYPES)
# in a cache key with the version: a cached point from an older table layout is simulated again
CACHE_LAYOUT = 2
LEAD_COLUMNS = ("trace", "trace_sha256", "model", "method", "sparsity", "nm", "machine", "point", "hw_name",
                "family")
CHUNK_MAX = 16  # points per task: big enough to reuse a worker's lowered trace, small for progress


@dataclass
class Task:
    key: str  # cache key: sha256 of (version, trace sha, canonical hardware point)
    trace: str  # path to open
    trace_sha: str
    hw_json: str


@dataclass
class SweepStats:
    points: int
    cached: int
    simulated: int
    failed: int
    seconds: float


# ------------------------------------------------------------------------------------- worker side
# Per worker process: trace -> its lowered ops, shared by the process's threads (a Dask worker
# runs tasks on pool threads, not always the same one). Building an entry and the footprint (which
# read the trace's zip) hold the lock; the simulation only reads the in-memory workloads, whose
# memo() values are deterministic, so two threads filling the same memo entry agree.
_STATES: dict[tuple[str, str], dict] = {}
_LOCK = threading.Lock()
_KEEP = 4  # traces kept per process (a chunk is one trace; points are grouped by trace)


def _trace_state(path: str, sha: str) -> dict:
    from accelsim.sim.engine import VECTOR_KIND
    from accelsim.sim.workload import lower_op
    from accelsim.trace.format import load_trace

    with _LOCK:
        st = _STATES.get((path, sha))
        if st is not None:
            return st
        while len(_STATES) >= _KEEP:
            # not closed here: a thread may still be using it; its zip closes when it is collected
            _STATES.pop(next(iter(_STATES)))
        trace = load_trace(path)
        if not trace.ops:
            trace.close()
            raise AccelsimError(f"{path}: no conv2d/matmul/bmm ops to simulate")
        # what depends only on the trace and the op: the lowered workloads, whose memo() keeps the
        # mask views, effectual counts and N:M compliance for every later point of this trace
        # (vector ops have no GEMMs: engine.simulate costs them from the op record)
        works = [[] if op.kind == VECTOR_KIND else lower_op(trace, op) for op in trace.ops]
        st = {"trace": trace, "works": works, "fp": {}}
        _STATES[(path, sha)] = st
        return st


def simulate_point(trace_path: str, trace_sha: str, hw_json: str) -> dict:
    """One point: {"info": header columns, "passes": {pass: totals}, "footprint": {...}} (the numbers
    of `accelsim run --json`: engine.simulate on the worker's lowered trace), or {"error": one line}."""
    from accelsim.hw.loader import parse_hw
    from accelsim.report.compare import footprint_args, footprint_columns, footprint_summary, header_info
    from accelsim.sim.engine import simulate
    from accelsim.sim.footprint import footprint

    try:
        st = _trace_state(trace_path, trace_sha)
        hw = parse_hw(json.loads(hw_json), "<sweep point>")
        result = simulate(st["trace"], hw, lowered=st["works"])
        args = footprint_args(hw)  # as `accelsim run` without --format
        fkey = tuple(args.values())
        with _LOCK:
            if fkey not in st["fp"]:
                st["fp"][fkey] = footprint_columns(footprint_summary(footprint(st["trace"], **args)))
        return {"info": header_info(st["trace"].header), "passes": result.totals(), "footprint": st["fp"][fkey]}
    except AccelsimError as e:
        return {"error": _one_line(str(e)), "cacheable": True}
    except (MemoryError, OSError) as e:  # the machine's trouble, not the point's: not cached
        return {"error": _one_line(f"{type(e).__name__}: {e}"), "cacheable": False}
    except Exception as e:  # a bug in one point must not abort the sweep; its row says what it was
        return {"error": _one_line(f"internal error: {type(e).__name__}: {e}"), "cacheable": False}


def _one_line(text: str, n: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


def run_chunk(tasks: list[Task]) -> list[tuple[str, dict]]:
    """A worker's unit: points of one trace, run one after another on the same lowered trace."""
    return [(t.key, simulate_point(t.trace, t.trace_sha, t.hw_json)) for t in tasks]


# --------------------------------------------------------------------------------------- the cache
def _cache_path(cache: Path, key: str) -> Path:
    return cache / key[:2] / f"{key}.json"


def _cache_get(cache: Path | None, key: str) -> dict | None:
    if cache is None:
        return None
    try:
        with open(_cache_path(cache, key), encoding="utf-8") as f:
            got = json.load(f)
    except (OSError, ValueError):
        return None  # missing, or a torn/foreign file: simulate again
    return got if isinstance(got, dict) and got.get("key") == key else None


def _cache_put(cache: Path | None, key: str, value: dict) -> None:
    from accelsim.util.atomic import atomic_write

    if cache is None or not value.get("cacheable", True):
        return
    p = _cache_path(cache, key)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(p, "w") as f:
            json.dump({"key": key, **{k: v for k, v in value.items() if k != "cacheable"}}, f)
    except OSError as e:
        raise AccelsimError(f"{p.parent}: cannot write the sweep cache: {e.strerror or e}") from None


# ------------------------------------------------------------------------------------- scheduling
def _chunks(tasks: list[Task], workers: int) -> list[list[Task]]:
    by_trace: dict[str, list[Task]] = {}
    for t in tasks:
        by_trace.setdefault(t.trace, []).append(t)
    out = []
    for group in by_trace.values():
        size = max(1, min(CHUNK_MAX, math.ceil(len(group) / max(1, workers))))
        out += [group[i:i + size] for i in range(0, len(group), size)]
    return out


def _execute(chunks: list[list[Task]], jobs: int, scheduler: Any, on_done: Callable[[list], None]) -> None:
    if not chunks:
        return
    if scheduler is not None:
        _execute_dask(chunks, scheduler, on_done)
    elif jobs <= 1:
        for c in chunks:
            on_done(run_chunk(c))
    else:
        import concurrent.futures as cf
        import multiprocessing as mp

        methods = mp.get_all_start_methods()
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        with cf.ProcessPoolExecutor(max_workers=min(jobs, len(chunks)), mp_context=ctx) as pool:
            futs = [pool.submit(run_chunk, c) for c in chunks]
            try:
                for f in cf.as_completed(futs):
                    on_done(f.result())
            except BaseException:
                for f in futs:
                    f.cancel()
                raise


def _execute_dask(chunks: list[list[Task]], scheduler: Any, on_done: Callable[[list], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise AccelsimError("--scheduler needs Dask: pip install 'accelsim[dist]'") from None
    own = isinstance(scheduler, str)
    try:
        client = Client(scheduler, timeout="20s") if own else scheduler
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        raise AccelsimError(f"--scheduler {str(scheduler)[:80]}: cannot connect: {_one_line(str(e), 120)}") from None
    try:
        futs = client.map(run_chunk, chunks, pure=False)
        for f in as_completed(futs):
            on_done(f.result())
    finally:
        if own:
            client.close()


# ------------------------------------------------------------------------------------------- rows
def _typed(values: list) -> list:
    """A varied key's column: numbers stay numbers, a column mixing numbers and text is text."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool) for v in present):
        return values
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return values
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return [None if v is None else float(v) for v in values]
    return [None if v is None else str(v) for v in values]


def build_rows(spec: SweepSpec, results: dict[tuple[int, int], dict], shas: dict[int, str]) -> list[dict]:
    spec_dir = Path(os.path.abspath(spec.path)).parent
    rows = []
    for ti, tp in enumerate(spec.traces):
        for pi, pt in enumerate(spec.points):
            r = results[(ti, pi)]
            info = r.get("info") or {"model": None, "method": None, "sparsity": None, "nm": None}
            lead = {"trace": trace_label(tp, spec_dir), "trace_sha256": shas[ti][:16], **info,
                    "machine": pt.machine, "point": pt.index, "hw_name": pt.hw_name, "family": pt.family}
            lead.update({k: pt.values.get(k) for k in spec.keys})
            if "error" in r:
                rows.append({**lead, "pass": "all", **{c: None for c in TOTAL_COLUMNS + FOOTPRINT_COLUMNS},
                             "error": r["error"]})
                continue
            for ps, t in r["passes"].items():  # totals() order: fwd, dgrad, wgrad (bwd, optimizer), all
                flat = flat_totals(t)
                rows.append({**lead, "pass": ps, **{c: flat.get(c) for c in TOTAL_COLUMNS}, **r["footprint"],
                             "error": ""})
    # stable order: spec order of traces (sorted paths) and machines, point index, pass order
    return rows


def columns(spec: SweepSpec) -> list[str]:
    return [*LEAD_COLUMNS, *spec.keys, "pass", *TOTAL_COLUMNS, *FOOTPRINT_COLUMNS, "error"]


def write_table(path: Path, rows: list[dict], cols: list[str], keys: list[str]) -> None:
    from accelsim.util.atomic import atomic_write

    data = {c: [r.get(c) for r in rows] for c in cols}
    for k in keys:
        data[k] = _typed(data[k])
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise AccelsimError(f"{path}: writing Parquet needs pyarrow (pip install pyarrow), or use .csv") from None
        fields = []
        for c in cols:
            if c in TOTAL_COLUMNS:
                typ = pa.float64() if TOTAL_TYPES[c] is float else pa.int64()
            elif c in FOOTPRINT_COLUMNS:
                typ = pa.string() if c == "footprint_format" else (
                    pa.float64() if c.endswith("_pct") else pa.int64())
            elif c in ("point",):
                typ = pa.int64()
            elif c == "sparsity":
                typ = pa.float64()
            elif c in keys:
                typ = None  # inferred from the typed column
            else:
                typ = pa.string()
            fields.append((c, typ))
        arrays = [pa.array(data[c], type=t) if t is not None else pa.array(data[c]) for c, t in fields]
        table = pa.Table.from_arrays(arrays, names=cols)
        with atomic_write(path, "wb") as f:
            pq.write_table(table, f)
    else:
        import csv

        def cell(v):
            if v is None:
                return ""
            if isinstance(v, float):
                return repr(v)  # shortest round-trip text: the CSV holds the exact doubles
            return v

        with atomic_write(path, "w") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(cols)
            for i in range(len(rows)):
                w.writerow([cell(data[c][i]) for c in cols])


# ------------------------------------------------------------------------------------------ entry
def run_sweep(spec: SweepSpec | str | os.PathLike, output: str | os.PathLike | None = None, *,
              jobs: int | None = None, scheduler: Any = None, cache: str | os.PathLike | None = None,
              progress: Callable[..., None] | None = None) -> tuple[list[dict], SweepStats]:
    """Run every (trace, point) of ``spec`` not already in ``cache``; write ``output`` (.parquet or
    .csv) if given. ``scheduler``: a Dask scheduler address or a distributed.Client. Returns the rows
    and what was done."""
    t0 = time.monotonic()
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    cache_dir = Path(cache) if cache is not None else None
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    shas = {}
    for ti, tp in enumerate(spec.traces):
        try:
            shas[ti] = file_sha256(tp)
        except OSError as e:
            raise AccelsimError(f"{tp}: cannot read the trace: {e.strerror or e}") from None
    results: dict[tuple[int, int], dict] = {}
    todo: list[Task] = []
    where: dict[str, list[tuple[int, int]]] = {}
    import hashlib

    for ti, tp in enumerate(spec.traces):
        for pi, pt in enumerate(spec.points):
            key = hashlib.sha256(canonical_json([__version__, CACHE_LAYOUT, shas[ti], pt.hw_json]).encode()).hexdigest()
            if key in where:  # two identical points (e.g. a value listed twice): simulate once
                where[key].append((ti, pi))
                continue
            where[key] = [(ti, pi)]
            got = _cache_get(cache_dir, key)
            if got is not None:
                results[(ti, pi)] = got
            else:
                todo.append(Task(key=key, trace=str(tp), trace_sha=shas[ti], hw_json=pt.hw_json))
    total = len(spec.traces) * len(spec.points)
    cached = len(results)
    state = {"done": cached, "failed": sum(1 for r in results.values() if "error" in r), "start": time.monotonic()}

    def on_done(items: list) -> None:
        for key, value in items:
            _cache_put(cache_dir, key, value)
            value = {k: v for k, v in value.items() if k != "cacheable"}
            for ti_pi in where[key]:
                results[ti_pi] = value
                state["done"] += 1
                state["failed"] += "error" in value
        if progress is not None:
            done_new = state["done"] - cached
            el = time.monotonic() - state["start"]
            eta = el / done_new * (total - state["done"]) if done_new else float("nan")
            progress(state["done"], total, state["failed"], eta)

    _execute(_chunks(todo, jobs if scheduler is None else 2 * max(1, jobs)), jobs, scheduler, on_done)
    for key, locs in where.items():  # duplicates of a cached point
        for loc in locs:
            if loc not in results:
                results[loc] = results[locs[0]]
    rows = build_rows(spec, results, shas)
    if output is not None:
        write_table(Path(output), rows, columns(spec), spec.keys)
    stats = SweepStats(points=total, cached=cached, simulated=len(todo),
                       failed=sum(1 for r in results.values() if "error" in r), seconds=time.monotonic() - t0)
    return rows, stats
