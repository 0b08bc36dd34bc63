"""Systolic arrays (SCALE-Sim 3.0 semantics), optionally with N:M sparse PEs.

Compute: SCALE-Sim 3.0's stall-free count (scalesim/compute/systolic_compute_{os,ws,is}.py; table
in docs/sources.md "SCALE-Sim 3.0 systolic compute"). For a GEMM (M, N, K) on an R x C array:

  dataflow  rows map  cols map  streamed T  folds                cycles per fold
  os        M         N         K           ceil(M/R)*ceil(N/C)  R + C + T - 2
  ws        K         N         M           ceil(K/R)*ceil(N/C)  2R + C + T - 2
  is        K         M         N           ceil(K/R)*ceil(M/C)  2R + C + T - 2

In SCALE-Sim's own schedule compute_cycles = groups * folds * cycles per fold (SCALE-Sim prints
that minus 1 as "Total Cycles", see scalesim_total_cycles); partly filled folds cost a full fold.
Chunked schedules pay more (schedule_compute, below).

N:M sparse PEs (sparsity kind nm): SCALE-Sim's layer-wise N:M mode keeps N of every M along K, so
the layer runs as a dense GEMM with K' = N*floor(K/M) + min(K mod M, N) (same section). accelsim only
does that where the named operand's mask really is N:M along K of this pass (nm_compliance == 1);
otherwise the op runs dense and the fallback says why.

Data movement and schedule (choose_schedule): SCALE-Sim fixes the folds but not the order a
compiler runs them in, and a fixed order falls off capacity cliffs (a ws conv whose M x N partial
sums exceed ofmap_sram spilled them every K tile: 2.2 MB for a 128 KiB output, docs/validation.md
case 6). So per group GEMM accelsim enumerates the legal loop nests over the tiles -- all 6 orders of
the M, N, K tile loops (the array-mapped dims have their fold counts; SCALE-Sim's own order, os M>N,
ws K>N, is K>M, comes first) and, for ws/is, the streamed dim (M resp. N; rows of C, independent of
each other) cut into the fewest chunks that make an operand's reuse footprint fit its SRAM, and
twice that (half the SRAM left free to prefetch the next chunk) -- costs
each one's exact DRAM bytes per operand (schedule_traffic) and its exact compute (schedule_compute)
and runs the fastest legal one: the least total cycles through the memory engine
(memory.run_tiles, the same DRAM model the op is then timed with), ties: fewer DRAM bytes, fewer
tiles, then that fixed candidate order. `schedule="scalesim"` costs SCALE-Sim's own order without
chunks instead (its compute is exactly the fold formula; the SCALE-Sim comparisons use it). GEMM A
lives in ifmap_sram, B in filter_sram, C in ofmap_sram (SCALE-Sim's GEMM naming); these capacities
also bound how far the DMA prefetches (memory.py capacity mode: a slice held for reuse occupies its
SRAM until its last use, a prefetch waits for room). Reuse rule: an
operand does not depend on one loop u (A: N, B: M, C: K); it is fetched once if the slices it needs
between two visits of u (its tiles inside u) fit its SRAM, else once per iteration of u. C's partial
sums (K split over tiles) stay in ofmap_sram under the same rule, else every K tile but the last
writes them and every K tile but the first reads them back, at the accumulator width ACC_BYTES (4 B,
see there); the final C is stored once at element width. os never has partial sums (K is streamed
through the PEs), so it is not chunked. Slice bytes are the operand's bytes read
(Workload.read_numel: the stored tensor, or the GEMM operand where a strided conv skips input
pixels) split evenly over its slices (the halo that overlapping conv windows share is not modelled).

Compute of a chunked schedule (schedule_compute), in SCALE-Sim's own per-fold accounting: a fold
costs fill + T with fill = 2R + C - 2 (ws/is; R + C - 2 for os) -- load the stationary tile and
skew/drain the array -- and T streamed rows (table above). A tile (fold, chunk) streams its chunk's
rows; it pays the fill again whenever the array's stationary tile changes from the previous tile
(ws: B's (K, N) tile; is: A's (K, M) tile; os: C's (M, N) tile), i.e. when a loop over a stationary
dim ticks. Runs of consecutive tiles on one stationary tile = the product of the tile counts of the
loops from the outermost down to the innermost stationary loop that has more than one tile, so
  compute = runs * fill + folds * T.
Unchunked (and chunk loop inside every stationary loop): runs = folds -> folds * (fill + T), exactly
SCALE-Sim. Chunk loop outside a stationary loop: runs = chunks * folds, e.g. ws cut into c chunks
with the K folds inside each chunk: folds * (c * (2R + C - 2) + T), (c - 1) * folds * fill more than
SCALE-Sim. So OpResult.compute_cycles equal SCALE-Sim's whenever the chosen schedule is SCALE-Sim's
order (or chunks only inside the stationary loops), and are higher, never lower, otherwise. We
charge the fill per reload rather than assuming it hidden: SCALE-Sim's model does not overlap
consecutive folds (a TPU-style array that double-buffers weights could hide the shift-in, Jouppi et
al. ISCA 2017 sec. 2, but that is not the SCALE-Sim array modelled here).

Structured weight sparsity (SSL, docs/sources.md "SSL"): in the sparse run (not the dense baseline) the
weight operand's all-zero rows/columns are deleted (structure.compact) and each group runs as the
smaller dense GEMM (M', N', K'): folds and per-fold cycles from the table above on the compacted
dims, weight bytes = its kept rows x columns. N:M PEs: deleting M/N lines keeps the remaining K
groups N:M, so that part combines; deleting K lines re-forms the groups along K, so K deletion and
N:M are exclusive: where the operand is N:M the PEs take priority and the note says K deletion was
not used.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from accelsim.hw.config import HardwareConfig
from accelsim.sim.kernels import effectual_macs, nm_compliance
from accelsim.sim.memory import EngineResult, TileStream, split_bytes
from accelsim.sim.structure import compact
from accelsim.sim.policy import FamilyCost, fastest, kept_output_numel, nm_with_deletion
from accelsim.sim.workload import Workload, nm_reason, resolve_operand


def fold_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> tuple[int, int]:
    """(folds, cycles per fold) of SCALE-Sim 3.0's stall-free model (module docstring table)."""
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols), rows + cols + k - 2
    if dataflow == "ws":
        return math.ceil(k / rows) * math.ceil(n / cols), 2 * rows + cols + m - 2
    if dataflow == "is":
        return math.ceil(k / rows) * math.ceil(m / cols), 2 * rows + cols + n - 2
    raise ValueError(f"unknown dataflow {dataflow!r}")


def scalesim_total_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """SCALE-Sim's reported stall-free "Total Cycles" for one GEMM: folds * per fold - 1."""
    f, c = fold_cycles(m, n, k, rows, cols, dataflow)
    return f * c - 1


def nm_reduced_k(k: int, n: int, m: int) -> int:
    """K' = N*floor(K/M) + min(K mod M, N): the reduction left after keeping N of every M."""
    return n * (k // m) + min(k % m, n)


def _operand_bytes(work: Workload, side: str, elem: int) -> int:
    nm = work.a if side == "a" else work.b
    return work.read_numel(nm) * elem


def op_cost(work: Workload, hw: HardwareConfig, *, sparse: bool, schedule: str = "fastest") -> FamilyCost:
    """Cycles and per-tile DRAM traffic of one op on a systolic array (module docstring).
    `schedule`: "fastest" (the least total cycles of the legal schedules, choose_schedule) or
    "scalesim" (SCALE-Sim's own order without chunks: compute = the fold formula exactly)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    m, n, k, g = work.m, work.n, work.k, work.groups
    sp = hw.sparsity
    fallback = None
    sparse_side = None
    k_nm = k
    if sparse and sp.kind == "nm":
        side, why = resolve_operand(work, sp.operand)
        if side is None:
            fallback = why
        else:
            name = work.a if side == "a" else work.b
            comp_frac = nm_compliance(work, side, sp.n, sp.m)
            if comp_frac < 1.0:
                fallback = nm_reason(name, work.kind, work.pass_, sp.n, sp.m, comp_frac, work.k)
            else:
                sparse_side = side
                k_nm = nm_reduced_k(k, sp.n, sp.m)
    cpt = compact(work) if sparse else None
    dims = list(cpt.kept) if cpt is not None else [(m, n, k)] * g
    note = cpt.note if cpt is not None else None
    if sparse_side is not None:
        # the shared rule (policy.nm_with_deletion): K deletion and N:M are exclusive, the N:M PEs take
        # priority; M/N-line deletion combines
        if cpt is not None:
            dims, note = nm_with_deletion(dims, k, k_nm, sp.n, sp.m, note, "PEs run")
        else:
            dims = [(mm, nn, k_nm) for mm, nn, _ in dims]
    stream, dense_bytes, engine = _op_stream(work, hw, dims, sparse_side, k_nm, cpt, schedule)
    # the chosen schedules' compute (schedule_compute): SCALE-Sim's fold formula, groups one after
    # another (a group compacted away has no folds), unless a chunked schedule reloads stationary tiles
    compute = int(stream.compute_cycles.sum())
    exploited = None
    if sparse_side:
        exploited = work.a if sparse_side == "a" else work.b
    elif cpt is not None:
        exploited = cpt.operand
    cost = FamilyCost(compute_cycles=compute, effectual_macs=effectual_macs(work),
                      sparse_operand=exploited, fallback=fallback, tiles=stream,
                      dram_bytes_dense=dense_bytes, compaction=note, engine=engine)
    return cost


def _op_stream(work: Workload, hw: HardwareConfig, dims: list[tuple[int, int, int]],
               sparse_side: str | None, k_nm: int, cpt=None, schedule: str = "fastest"
               ) -> tuple[TileStream, dict[str, int], Any]:
    """The op's folds, group after group, and the stream's EngineResult where one group's chosen
    schedule is the whole op (choose replayed it already: the same tiles under the op's operand
    names; the psum operand dropped when it loads nothing changes no tile's bytes), else None. Per-group bytes: the full GEMM's per-group share
    (Workload.read_numel / groups), bounded by the compacted operand's elements (a compacted weight
    moves exactly its kept rows x columns; an activation the same min(tensor, GEMM operand) bound and
    only the part a kept line reads: Compaction.act_kept, e.g. input channels with a kept tap).
    Output: the compacted C (M' x N'); conv dgrad's dX stays whole (deleted taps are col2im-scattered
    zeros, dX still has to be written)."""
    e = hw.compute.element_bytes
    sp = hw.sparsity
    g = work.groups
    full = {"a": _operand_bytes(work, "a", e) // g, "b": _operand_bytes(work, "b", e) // g}
    out_full = work.output_numel * e // g
    parts = []
    cache = {}
    act_side = None if cpt is None or cpt.act is None else ("a" if cpt.act == work.a else "b")
    for gi, d in enumerate(dims):
        if 0 in d:  # a group compacted away entirely: no folds, no traffic
            continue
        frac = cpt.act_kept[gi] if act_side else 1
        key = (d, frac)
        if key not in cache:
            mm, nn, kk = d
            kb = work.k if sparse_side is not None else kk  # N:M: bytes of the full K, compressed below
            size = {"a": min(full["a"], mm * kb * e), "b": min(full["b"], kb * nn * e)}
            if act_side is not None and sparse_side is None:
                size[act_side] = min(size[act_side], int(full[act_side] * frac))
            if sparse_side is not None:
                # N:M storage: the kept K'/K values plus metadata_bits per kept value (docs/sources.md "NVIDIA A100")
                kept = size[sparse_side] * k_nm // max(work.k, 1)
                size[sparse_side] = kept + (kept // e) * sp.metadata_bits // 8
            out = kept_output_numel(work, g * mm * nn) * e // g  # conv dgrad: the whole dX
            cache[key] = _fold_stream(hw, mm, nn, kk, size, out, schedule)
        parts.append(cache[key])
    engines = [eng for _, eng in parts]
    parts = [st for st, _ in parts]
    names = {"a": work.a, "b": work.b, "psum": "psum"}
    sides = ("a", "b", "psum") if any(p.load_bytes["psum"].any() for p in parts) else ("a", "b")

    def cat(arrays):
        return np.concatenate(arrays) if arrays else np.zeros(0, np.int64)

    stream = TileStream(cat([p.compute_cycles for p in parts]),
                        {names[x]: cat([p.load_bytes[x] for p in parts]) for x in sides},
                        cat([p.store_bytes for p in parts]), None,
                        {names[x]: parts[0].capacity[x] if parts else 0 for x in sides},
                        {names[x]: cat([p.free_bytes[x] for p in parts]) for x in sides})
    dense_bytes = {work.a: full["a"] * g, work.b: full["b"] * g, "output": out_full * g}
    engine = None
    if len(parts) == 1 and engines[0] is not None:
        e = engines[0]
        by_op = {names[x]: e.bytes_by_operand[x] for x in sides}
        by_op["output"] = e.bytes_by_operand["output"]
        engine = EngineResult(e.total_cycles, e.compute_cycles, e.stall_cycles, by_op, [])
    return stream, dense_bytes, engine


def _cap(hw: HardwareConfig, role: str) -> int:
    """Capacity of the SRAM filling `role` (the loader checks the three are there, with capacities)."""
    return hw.role(role).capacity_bytes


# Accumulator width of partial sums that spill to DRAM: int8 MACs accumulate in 32-bit integers
# (TPU v1 collects its 8-bit x 8-bit products in 4 MiB of 32-bit accumulators, Jouppi et al. ISCA
# 2017 sec. 2) and fp16/bf16 MACs in fp32 (NVIDIA A100 whitepaper: FP16/BF16 tensor-core MMA with
# FP32 accumulate), so a partial sum is 4 B, or the element width where that is wider (fp64).
ACC_BYTES = 4
# A schedule with more tiles than this is not considered (keeps the stream arrays small).
MAX_TILES = 1 << 20

_DIMS = "mnk"
_OPERAND_DIMS = {"a": "mk", "b": "kn", "c": "mn"}  # GEMM A (M x K), B (K x N), C (M x N)
# SCALE-Sim's own fold order first (module docstring), outermost loop first; ties go to the earliest.
_NATIVE = {"os": "mnk", "ws": "mkn", "is": "nkm"}
# the streamed dimension that may be cut into chunks (ws: M, is: N); os streams K, the reduction,
# whose partial sums stay in the PEs: cutting it would mean draining and re-injecting them.
_CHUNKED = {"os": None, "ws": "m", "is": "n"}
# the streamed dim (module docstring table); the other two index the array's stationary tile
_STREAMED = {"os": "k", "ws": "m", "is": "n"}
SCHEDULES = ("fastest", "scalesim")


@dataclass(frozen=True)
class Schedule:
    """One loop nest over an op's tiles: `order` names the loops outermost first ("m", "n", "k") and
    `counts` the tiles of each: the array-mapped dims have their fold counts (module docstring
    table), the streamed dim its chunks (1 = SCALE-Sim's whole fold; os never chunks its K)."""

    order: str
    counts: dict[str, int]

    @property
    def n_tiles(self) -> int:
        return self.counts["m"] * self.counts["n"] * self.counts["k"]


@dataclass(frozen=True)
class Traffic:
    """Exact DRAM bytes of one schedule: loads of A and B, partial-sum re-loads, stores of C."""

    a: int
    b: int
    psum: int
    store: int

    @property
    def total(self) -> int:
        return self.a + self.b + self.psum + self.store


def _outside(order: str, counts: dict[str, int], side: str) -> tuple[int, str]:
    """(tiles of the operand's dims that are loops outside its reuse loop u, u). u is the loop the
    operand does not depend on (A: N, B: M, C: K); it revisits the same slices, and between two
    visits of one slice the loops inside u touch every slice they index."""
    dims = _OPERAND_DIMS[side]
    u = next(d for d in _DIMS if d not in dims)
    outside = 1
    for d in order[: order.index(u)]:
        if d in dims:
            outside *= counts[d]
    return outside, u


def _footprint(total: int, order: str, counts: dict[str, int], side: str) -> tuple[int, str]:
    """(bytes, u): reusing every slice across u needs total / (tiles outside u) bytes resident."""
    outside, u = _outside(order, counts, side)
    return -(-total // outside), u


def schedule_traffic(sched: Schedule, size: dict[str, int], out_bytes: int, psum_bytes: int,
                     caps: dict[str, int]) -> Traffic:
    """DRAM bytes of `sched` (closed form of what _schedule_stream emits, tested equal). An operand
    whose reuse footprint (_footprint) fits its SRAM is loaded once, else once per iteration of its
    reuse loop. C: with one K tile, or partial sums (psum_bytes, accumulator width) whose footprint
    fits ofmap_sram, C is stored once; else every K tile but the last writes its partial sums and
    every K tile but the first reads them back."""
    c = sched.counts
    got = {}
    for side in ("a", "b"):
        fp, u = _footprint(size[side], sched.order, c, side)
        got[side] = size[side] if fp <= caps[side] else size[side] * c[u]
    fp, _ = _footprint(psum_bytes, sched.order, c, "c")
    spill = c["k"] > 1 and fp > caps["c"]
    extra = psum_bytes * (c["k"] - 1) if spill else 0
    return Traffic(got["a"], got["b"], extra, out_bytes + extra)


def schedule_compute(sched: Schedule, m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """Compute cycles of `sched` in SCALE-Sim's per-fold accounting (module docstring): every run of
    consecutive tiles on one stationary tile pays fill = per-fold cycles - T once, every streamed row
    one cycle: runs * fill + folds * T (closed form of what _schedule_stream emits, tested equal)."""
    folds, per_fold = fold_cycles(m, n, k, rows, cols, dataflow)
    s = _STREAMED[dataflow]
    t_len = {"m": m, "n": n, "k": k}[s]
    fill = per_fold - t_len
    c = sched.counts
    inner = [i for i, d in enumerate(sched.order) if d != s and c[d] > 1]
    runs = math.prod(c[d] for d in sched.order[: inner[-1] + 1]) if inner else 1
    if folds == 0:
        return 0
    return runs * fill + folds * t_len


def scalesim_schedule(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> Schedule:
    """SCALE-Sim's own schedule: its fold order (_NATIVE), streamed dim whole (= candidate 0)."""
    return Schedule(_NATIVE[dataflow], _base_counts(m, n, k, rows, cols, dataflow))


def _base_counts(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> dict[str, int]:
    if dataflow == "os":
        return {"m": math.ceil(m / rows), "n": math.ceil(n / cols), "k": 1}
    if dataflow == "ws":
        return {"m": 1, "n": math.ceil(n / cols), "k": math.ceil(k / rows)}
    if dataflow == "is":
        return {"m": math.ceil(m / cols), "n": 1, "k": math.ceil(k / rows)}
    raise ValueError(f"unknown dataflow {dataflow!r}")


def candidate_schedules(m: int, n: int, k: int, rows: int, cols: int, dataflow: str,
                        size: dict[str, int], psum_bytes: int, caps: dict[str, int]) -> list[Schedule]:
    """The legal schedules considered, in tie-break order. Folds are fixed by the dataflow
    (fold_cycles), so the choices are (1) the order of the three tile loops, all 6 permutations,
    SCALE-Sim's first, and (2) for ws/is, cutting the streamed dim into chunks so that a reuse
    footprint fits its SRAM: per loop order, no chunks plus, for each operand that spills, the fewest
    chunks that make its footprint fit and twice as many (footprints only shrink by chunking when the
    streamed dim is a loop outside the operand's reuse loop; a chunk is at least one row/column)."""
    base = _base_counts(m, n, k, rows, cols, dataflow)
    s = _CHUNKED[dataflow]
    s_len = {"m": m, "n": n, "k": k}[s] if s else 1
    orders = [_NATIVE[dataflow]] + sorted(
        o for o in ("".join(p) for p in itertools.permutations(_DIMS)) if o != _NATIVE[dataflow])
    totals = {"a": size["a"], "b": size["b"], "c": psum_bytes}
    out = []
    for order in orders:
        chunks = {1}
        if s is not None:
            for side in ("a", "b", "c"):
                outside, u = _outside(order, base, side)  # base: the streamed dim has 1 tile
                tot, cap = totals[side], caps[side]
                if -(-tot // outside) <= cap or cap <= 0 or s not in _OPERAND_DIMS[side] \
                        or order.index(s) > order.index(u):
                    continue  # fits already, or chunking does not shrink this footprint
                # ceil(tot / (outside * chunks)) <= cap  <=>  chunks >= tot / (cap * outside)
                need = -(-tot // (cap * outside))
                if need <= s_len:
                    chunks.add(need)
                    # and twice that: the footprint in half the SRAM, the other half free for the
                    # next chunk's prefetch (a double-buffered scratchpad, like SCALE-Sim's
                    # active / prefetch halves; memory.py's capacity mode charges the difference)
                    chunks.add(min(2 * need, s_len))
        for ch in sorted(chunks):
            sched = Schedule(order, {**base, **({s: ch} if s else {})})
            if sched.n_tiles <= MAX_TILES or ch == 1:
                out.append(sched)
    return out


def _caps(hw: HardwareConfig) -> dict[str, int]:
    return {"a": _cap(hw, "ifmap_sram"), "b": _cap(hw, "filter_sram"), "c": _cap(hw, "ofmap_sram")}


@dataclass(frozen=True)
class Choice:
    """The schedule run for one group GEMM: its DRAM bytes, compute cycles (schedule_compute) and
    total cycles alone through memory.run_tiles (the engine's DRAM model; None for
    schedule="scalesim", which is not replayed to be chosen)."""

    schedule: Schedule
    traffic: Traffic
    compute: int
    total: int | None
    stream: TileStream | None = None  # the replayed stream of the chosen schedule (fastest only)
    engine: Any = None  # memory.run_tiles of `stream` (EngineResult; fastest only)


def choose_schedule(m: int, n: int, k: int, hw: HardwareConfig, size: dict[str, int], out_bytes: int,
                    psum_bytes: int, *, schedule: str = "fastest") -> tuple[Schedule, Traffic]:
    """The fastest legal schedule (see choose); its Schedule and Traffic."""
    ch = choose(m, n, k, hw, size, out_bytes, psum_bytes, schedule=schedule)
    return ch.schedule, ch.traffic


_CHOICES: dict[tuple, Choice] = {}  # choose()'s memo, emptied when its streams pass MEMO_BYTES
MEMO_BYTES = 256 << 20
_memo_bytes = 0


def choose(m: int, n: int, k: int, hw: HardwareConfig, size: dict[str, int], out_bytes: int,
           psum_bytes: int, *, schedule: str = "fastest") -> Choice:
    """_choose, memoised per process on the GEMM, the byte sizes and the parts of the machine it
    reads (compute, memory levels, clock): a network repeats its layer shapes (ResNet-50: 322 group
    GEMMs, 60 distinct). The Choice and its stream are shared by every caller: read-only."""
    key = (m, n, k, hw.compute, hw.memory, hw.clock_hz, tuple(sorted(size.items())), out_bytes, psum_bytes,
           schedule)
    global _memo_bytes
    got = _CHOICES.get(key)
    if got is None:
        got = _choose(m, n, k, hw, size, out_bytes, psum_bytes, schedule=schedule)
        size_b = _stream_nbytes(got.stream)
        if _memo_bytes + size_b > MEMO_BYTES:
            _CHOICES.clear()
            _memo_bytes = 0
        _CHOICES[key] = got
        _memo_bytes += size_b
    return got


def _stream_nbytes(st: TileStream | None) -> int:
    if st is None:
        return 0
    arrays = [st.compute_cycles, st.store_bytes, st.fence, *st.load_bytes.values(), *(st.free_bytes or {}).values()]
    return sum(a.nbytes for a in arrays)


def _choose(m: int, n: int, k: int, hw: HardwareConfig, size: dict[str, int], out_bytes: int,
            psum_bytes: int, *, schedule: str = "fastest") -> Choice:
    """schedule="fastest": the candidate with the least total cycles through memory.run_tiles (exact:
    the same engine, bandwidth, latency and double buffering the op is timed with); ties: fewer DRAM
    bytes, fewer tiles, then candidate order. Candidates are visited by a lower bound on their total,
    max(compute, DRAM bytes / bytes per cycle) (the engine can neither compute nor transfer faster),
    and one whose bound exceeds the best total so far is not replayed -- the result is the same as
    replaying every candidate. schedule="scalesim": SCALE-Sim's own order (scalesim_schedule)."""
    comp = hw.compute
    caps = _caps(hw)
    r, cl, df = comp.rows, comp.cols, comp.dataflow
    if schedule == "scalesim":
        sched = scalesim_schedule(m, n, k, r, cl, df)
        tr = schedule_traffic(sched, size, out_bytes, psum_bytes, caps)
        return Choice(sched, tr, schedule_compute(sched, m, n, k, r, cl, df), None)
    if schedule != "fastest":
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    dram = hw.dram()
    bpc = dram.bandwidth_bytes_per_s / hw.clock_hz
    cands = []
    for sched in candidate_schedules(m, n, k, r, cl, df, size, psum_bytes, caps):
        tr = schedule_traffic(sched, size, out_bytes, psum_bytes, caps)
        cands.append((sched, tr, schedule_compute(sched, m, n, k, r, cl, df)))
    (sched, tr, cc), stream, eng = fastest(
        cands, lambda c: _schedule_stream(c[0], m, n, k, r, cl, df, size, out_bytes, psum_bytes, caps),
        bytes_per_cycle=bpc, latency_cycles=dram.latency_cycles,
        tiebreak=lambda c: (c[1].total, c[0].n_tiles), bound=lambda c: max(float(c[2]), c[1].total / bpc))
    return Choice(sched, tr, cc, eng.total_cycles, stream, eng)


def _schedule_stream(sched: Schedule, m: int, n: int, k: int, rows: int, cols: int, dataflow: str,
                     size: dict[str, int], out_bytes: int, psum_bytes: int, caps: dict[str, int]
                     ) -> TileStream:
    """The tiles of `sched` with loads {"a", "b", "psum"} (schedule_traffic's rules). A slice of an
    operand is its bytes split evenly (split_bytes) over its tiles; a tile loads a slice at its
    first use if the reuse footprint fits, else at every use. Buffers (memory.py capacity mode): A
    in ifmap_sram, B in filter_sram, spilled partial sums in ofmap_sram; a slice kept for reuse is
    released after its last use, one loaded at every use after that tile. Compute
    (schedule_compute): a tile streams its chunk's rows (T split evenly over the chunks) and pays
    the fill when the array's stationary tile differs from the previous tile's."""
    c = sched.counts
    shape = tuple(c[d] for d in sched.order)
    grid = np.indices(shape, dtype=np.int64).reshape(len(shape), -1)
    idx = {d: grid[sched.order.index(d)] for d in _DIMS}
    t = grid.shape[1]
    loads, frees = {}, {}
    for side in ("a", "b"):
        d1, d2 = _OPERAND_DIMS[side]
        sid = idx[d1] * c[d2] + idx[d2]
        part = split_bytes(size[side], c[d1] * c[d2])[sid]
        fp, _ = _footprint(size[side], sched.order, c, side)
        free = part
        if fp <= caps[side]:
            first = np.zeros(t, bool)
            first[np.unique(sid, return_index=True)[1]] = True
            last = np.zeros(t, bool)
            last[t - 1 - np.unique(sid[::-1], return_index=True)[1]] = True
            free = np.where(last, part, 0)
            part = np.where(first, part, 0)
        loads[side], frees[side] = part, free
    sid = idx["m"] * c["n"] + idx["n"]
    nc = c["m"] * c["n"]
    kk, last = idx["k"], c["k"] - 1
    store = np.where(kk == last, split_bytes(out_bytes, nc)[sid], 0)
    psum = np.zeros(t, np.int64)
    fp, _ = _footprint(psum_bytes, sched.order, c, "c")
    if c["k"] > 1 and fp > caps["c"]:
        pp = split_bytes(psum_bytes, nc)[sid]
        store = store + np.where(kk < last, pp, 0)
        psum = np.where(kk > 0, pp, 0)
    _, per_fold = fold_cycles(m, n, k, rows, cols, dataflow)
    s = _STREAMED[dataflow]
    t_len = {"m": m, "n": n, "k": k}[s]
    d1, d2 = (d for d in _DIMS if d != s)  # the stationary tile's dims
    stat = idx[d1] * c[d2] + idx[d2]
    new_run = np.ones(t, bool)
    new_run[1:] = stat[1:] != stat[:-1]
    compute = split_bytes(t_len, c[s])[idx[s]] + np.where(new_run, per_fold - t_len, 0)
    return TileStream(compute, {"a": loads["a"], "b": loads["b"], "psum": psum}, store, None,
                      {"a": caps["a"], "b": caps["b"], "psum": caps["c"]},
                      {"a": frees["a"], "b": frees["b"], "psum": psum})


def _fold_stream(hw: HardwareConfig, m: int, n: int, k_run: int, size: dict[str, int],
                 out_bytes: int, schedule: str = "fastest") -> tuple[TileStream, Any]:
    """The tiles of one group's GEMM in its chosen schedule (module docstring, choose) and their
    EngineResult when choose replayed them (else None)."""
    comp = hw.compute
    psum_bytes = m * n * max(ACC_BYTES, comp.element_bytes)
    ch = choose(m, n, k_run, hw, size, out_bytes, psum_bytes, schedule=schedule)
    folds, _ = fold_cycles(m, n, k_run, comp.rows, comp.cols, comp.dataflow)
    chunked = _CHUNKED[comp.dataflow]
    assert ch.schedule.n_tiles == folds * (ch.schedule.counts[chunked] if chunked else 1)
    if ch.stream is not None:
        return ch.stream, ch.engine
    return _schedule_stream(ch.schedule, m, n, k_run, comp.rows, comp.cols, comp.dataflow, size,
                            out_bytes, psum_bytes, _caps(hw)), None
