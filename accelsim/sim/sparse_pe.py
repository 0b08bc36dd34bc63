"""Unstructured sparse PE arrays: TensorDash (one-sided) and a dual-sided bitmap design.

Mapping (both designs). The array has `tiles` tiles of pe_rows x pe_cols PEs with `lanes` MAC
lanes each. As in TensorDash (Mahmoud et al., MICRO 2020; DNNsim TensorDash.cpp; docs/sources.md
"SWAT's accelerator: TensorDash"), a PE
column works on one *window* (a GEMM row m of A) and a PE row on one *filter* (a GEMM column n of
B), so a tile takes a unit of pe_cols rows x pe_rows columns of the lowered GEMM and streams the
reduction K through its lanes. Units are enumerated (group, row block, column block), column block
fastest, and dealt round-robin to the tiles; tiles run independently, and the PEs *within* a tile
run in lockstep, so a unit costs what its slowest PE needs. Op compute cycles = the busiest tile's
sum (makespan).

TensorDash (sparsity kind one_sided). Per op only one operand's zeros are exploited: the one the
config names, or with operand "auto" the one with the larger zero fraction for that op (same source).
Each row of A (or column of B) is a stream of 16-lane rows -- channel first, then x, then y -- and
kernels.td_schedule runs the lookahead/lookaside scheduler on the real mask of each stream. Every
PE of a tile column (row) shares that stream, so a unit costs the longest stream schedule among its
pe_cols windows (pe_rows filters). Dense: every stream costs its length in rows,
ceil(round_up(C,16)*R*S/16) for a conv fwd window (same source).

Dual-sided (kind two_sided, SparTen/SIGMA-like): a PE multiplies only effectual pairs, found by
ANDing the two operands' bitmaps (Gondimalla et al., MICRO 2019, SparTen's bitmask inner-join), at
`lanes` pairs per cycle: ceil(popcount(A_m & B_n) / lanes) cycles per output; a unit costs its
slowest PE and at least 1 cycle (ASSUMPTION: the bitmaps still have to be read and joined; SparTen's
own join pipeline timing is not modelled). Dense: ceil(K/lanes)
-- the join packs the reduction contiguously, so the machine's dense baseline does too
(SparsePECompute.tap_padded = False; TensorDash's per-tap padding would make dense data look 4.5x
faster on a C=3 first layer).

Data movement (ASSUMPTION: a buffer policy of our own; DNNsim's TensorDash model counts compute
cycles only) per wave of `tiles` consecutive units: a unit loads its A row block and B column
block unless that operand fits the `buffer` memory level (then each block is fetched once) or the
previous wave used the same block (it is still there: the buffer holds two waves' blocks), in the
config's storage_format for the skipped operand(s) (accelsim.sim.formats, Hoefler et al. §2.2),
and stores its outputs.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from accelsim.hw.config import HardwareConfig
from accelsim.sim import kernels
from accelsim.sim.formats import storage_bits
from accelsim.sim.memory import TileStream, run_tiles, split_bytes
from accelsim.sim.policy import FamilyCost
from accelsim.sim.workload import Workload, resolve_operand


def choose_side(work: Workload, spec: str) -> tuple[str | None, str | None]:
    """The GEMM side whose zeros a one-sided design skips for this op (and a fallback reason)."""
    if spec == "auto":
        za = 1.0 - work.density(work.a)
        zb = 1.0 - work.density(work.b)
        if za == 0.0 and zb == 0.0:
            return None, "both operands dense: nothing to skip"
        return ("a" if za >= zb else "b"), None
    return resolve_operand(work, spec)


def unit_grid(work: Workload, hw: HardwareConfig) -> tuple[int, int]:
    comp = hw.compute
    return math.ceil(work.m / comp.pe_cols), math.ceil(work.n / comp.pe_rows)


def tile_schedule(unit_cycles: np.ndarray, tiles: int) -> tuple[int, np.ndarray]:
    """Round-robin units (flattened C order) onto `tiles` independent tiles.

    Returns (makespan, per-wave cycles) where wave w = units w*tiles .. w*tiles+tiles-1 and the
    per-wave cycles telescope: wave w's share is max_t(busy_t after w) - max_t(busy_t after w-1),
    so they sum to the makespan exactly."""
    u = np.ascontiguousarray(unit_cycles, dtype=np.int64).reshape(-1)
    waves = -(-u.size // tiles)
    pad = np.zeros(waves * tiles, np.int64)
    pad[: u.size] = u
    busy = np.cumsum(pad.reshape(waves, tiles), axis=0)  # busy[w, t]: tile t after wave w
    front = busy.max(axis=1)
    per_wave = np.diff(np.concatenate([[0], front]))
    return int(front[-1]) if waves else 0, per_wave


def _stream_cycles(work: Workload, hw: HardwareConfig, side: str) -> tuple[np.ndarray, int]:
    """TensorDash schedule length of every stream of `side`, shape (groups, rows), and dense length."""
    sp, comp = hw.sparsity, hw.compute
    ch, cd = kernels.td_candidates(sp.lookahead, sp.lookaside, sp.search)
    rows = kernels.lane_rows(work, side, comp.lanes)
    if rows is not None:  # numpy builds the lane rows; only the scheduler itself is jitted
        cyc = kernels.td_rows_cycles(rows, comp.lanes, sp.lookahead, ch, cd)
        return cyc.reshape(work.groups, -1), rows.shape[1]
    v = kernels.operand_view(work, side, lanes=comp.lanes)  # too big for lane_rows: gathered per stream
    cyc = kernels.td_stream_cycles(v.src, v.base, *v.runs, v.off.size, comp.lanes, sp.lookahead, ch, cd)
    return cyc.reshape(v.groups, v.rows), v.off.size // comp.lanes


def _block_max(x: np.ndarray, block: int) -> np.ndarray:
    """(G, rows) -> (G, ceil(rows/block)) maxima of consecutive blocks."""
    g, r = x.shape
    nb = -(-r // block)
    pad = np.zeros((g, nb * block), np.int64)
    pad[:, :r] = x
    return pad.reshape(g, nb, block).max(axis=2)


@dataclass(frozen=True)
class Plan:
    """What op_cost decides once per run from the whole trace (plan()) rather than op by op."""

    pair_blas: bool  # two-sided pair counts by the BLAS product (no numba) instead of the kernel
    pair_macs: int  # dense MACs of the trace's two-sided ops (the choice's input)


def plan(trace, hw: HardwareConfig) -> Plan | None:
    """The family's pre-pass (engine.simulate runs it before the first op): on a two-sided machine,
    the pair-count path for the whole trace from its GEMM shapes and operand densities -- no mask
    is read. The BLAS product only when it costs less than loading numba and running the kernel
    (kernels.pair_blas_wins) and every two-sided GEMM fits it; the same integers either way. An op
    the lowering registry rejects is left to the simulate loop (which reports it)."""
    if hw.sparsity.kind != "two_sided":
        return None
    from accelsim.errors import AccelsimError
    from accelsim.sim import lowering

    macs, fits = 0, True
    for op in trace.ops:
        if not op.operands:  # vector ops: no GEMM
            continue
        recs = {o.name: (trace.tensors[o.tensor], bool(o.transposed)) for o in op.operands}
        used = {nm: lowering.used_shape(tuple(r.shape), t) for nm, (r, t) in recs.items()}
        try:
            geo = lowering.validate(op.kind, op.pass_, op.params, used,
                                    transposed={nm: t for nm, (_, t) in recs.items()})
        except AccelsimError:
            continue
        for gm in lowering.lower_geometry(op.kind, op.pass_, geo):
            if all(recs[nm][0].nnz == recs[nm][0].numel for nm in (gm.a, gm.b)):
                continue  # both dense: op_cost runs it at the dense rate, no pairs counted
            macs += gm.dense_macs
            fits = fits and kernels.pair_blas_fits(gm.groups, gm.m, gm.n, gm.k)
    return Plan(pair_blas=fits and kernels.pair_blas_wins(macs), pair_macs=macs)


def op_cost(work: Workload, hw: HardwareConfig, *, sparse: bool, plan: Plan | None = None) -> FamilyCost:
    """Cycles and per-wave DRAM traffic of one op on a sparse PE array (module docstring); `plan`:
    the run's plan() (None: kernels' per-process rule picks the pair-count path)."""
    global _dense_bytes
    comp, sp = hw.compute, hw.sparsity
    mb, nb = unit_grid(work, hw)
    g = work.groups
    fallback = None
    skipped: tuple[str, ...] = ()
    eff = None
    kind = sp.kind if sparse else "none"
    if kind == "one_sided":
        side, fallback = choose_side(work, sp.operand)
        if side is None:
            kind = "none"
        else:
            streams, _ = _stream_cycles(work, hw, side)
            if side == "a":  # a unit waits for the slowest of its pe_cols windows
                per = _block_max(streams, comp.pe_cols)  # (G, mb)
                unit = np.repeat(per[:, :, None], nb, axis=2)
            else:  # ... or of its pe_rows filters
                per = _block_max(streams, comp.pe_rows)  # (G, nb)
                unit = np.repeat(per[:, None, :], mb, axis=1)
            skipped = (side,)
    elif kind == "two_sided" and work.density(work.a) == 1.0 and work.density(work.b) == 1.0:
        # as for one-sided (choose_side): nothing to skip, so the op runs at the dense rate with
        # dense storage instead of paying bitmap metadata for all-ones masks
        kind, fallback = "none", "both operands dense: nothing to skip"
    elif kind == "two_sided":
        # the pair count is the effectual MACs (kernels checks it against the factorised count
        # where that is known; the dense baseline's op_cost then reads it from the op's memo)
        unit, eff = kernels.pair_group_cycles(work, comp.pe_cols, comp.pe_rows, comp.lanes,
                                              blas=plan.pair_blas if plan is not None else None)
        unit = np.maximum(unit, 1)
        skipped = ("a", "b")
    if eff is None:
        eff = kernels.effectual_macs(work)
    engine = key = None
    if kind == "none":
        rows = dense_stream_rows(work, comp.lanes, comp.tap_padded)
        # a dense op's stream depends on its shape and sizes only (not its masks): memoised per
        # process with its engine result (simulate_op then does not replay it); the key holds
        # everything _wave_stream and run_tiles read here
        dram = hw.dram()
        key = (g, mb, nb, rows, work.a, work.b, _operand_bytes(work, hw, "a", False),
               _operand_bytes(work, hw, "b", False), work.output_numel, comp.tiles, comp.element_bytes, _cap(hw),
               dram.bandwidth_bytes_per_s, dram.latency_cycles, hw.clock_hz)
        got = _DENSE.get(key)
        if got is not None:
            compute, stream, engine = got
            return FamilyCost(compute_cycles=compute, effectual_macs=eff, sparse_operand=None,
                              fallback=fallback, tiles=stream, engine=engine)
        unit = None  # every unit costs `rows` (below)
    # loop order: row blocks outer (A block stays while every column block passes) or column blocks
    # outer; the one that moves fewer DRAM bytes is used, as a mapper would choose it
    # (the bytes an order moves do not depend on the units' cycles: only the chosen order is scheduled)
    grid = (g, mb, nb)
    best = None
    for order in ("mn", "nm"):
        loads = _wave_loads(work, hw, grid, skipped, order)
        moved = sum(int(v.sum()) for v in loads.values())
        if best is None or moved < best[0]:
            best = (moved, order, loads)
    _, order, loads = best
    if unit is None:  # equal units: each wave adds `rows` to the busiest tile (tile_schedule's result)
        waves = -(-(g * mb * nb) // comp.tiles)
        compute, per_wave = waves * rows, np.full(waves, rows, np.int64)
    else:
        compute, per_wave = tile_schedule(unit if order == "mn" else unit.transpose(0, 2, 1), comp.tiles)
    stream = _wave_stream(work, hw, grid, per_wave, skipped, order, loads=loads)
    if key is not None:
        engine = run_tiles(stream, bytes_per_cycle=key[-3] / hw.clock_hz, latency_cycles=key[-2])
        size_b = stream.compute_cycles.nbytes * (2 + len(stream.load_bytes))
        if _dense_bytes + size_b > MEMO_BYTES:
            _DENSE.clear()
            _dense_bytes = 0
        _DENSE[key] = (compute, stream, engine)
        _dense_bytes += size_b
    names = tuple(work.a if s == "a" else work.b for s in skipped)
    return FamilyCost(compute_cycles=compute, effectual_macs=eff,
                      sparse_operand="+".join(names) if names else None, fallback=fallback, tiles=stream,
                      engine=engine)


_DENSE: dict[tuple, tuple] = {}  # op_cost's memo of dense streams (shared, read-only)
MEMO_BYTES = 256 << 20  # the memo is emptied when its streams would pass this
_dense_bytes = 0


def dense_stream_rows(work: Workload, lanes: int, tap_padded: bool = True) -> int:
    """Rows of `lanes` in one dense reduction stream: R*S*ceil((C/g)/lanes) for a conv fwd window
    on a tap-padded datapath (each tap's channel run padded to the lanes, DNNsim's
    ceil(round_up(C,16)*Kx*Ky/16)), else ceil(K/lanes) (SparsePECompute.tap_padded)."""
    if tap_padded and work.conv is not None and work.pass_ == "fwd":
        geo = work.conv
        return geo.r * geo.s * -(-(geo.c // geo.groups) // lanes)
    return -(-work.k // lanes)


def _operand_bytes(work: Workload, hw: HardwareConfig, side: str, compressed: bool) -> int:
    name = work.a if side == "a" else work.b
    e = hw.compute.element_bytes
    fmt = hw.storage_format or "dense"
    read, full = work.read_numel(name), work.numel(name)  # a strided conv reads part of its input
    if not compressed or fmt in ("dense", "nm"):
        return read * e
    bits = storage_bits(fmt, work.shapes[name], work.nnz[name], 8 * e)
    return -(-bits * read // (8 * full))


def _cap(hw: HardwareConfig) -> int:
    """Capacity of the `buffer` role (the loader checks it is there, with a capacity)."""
    return hw.role("buffer").capacity_bytes


def _wave_stream(work: Workload, hw: HardwareConfig, grid: tuple[int, int, int], per_wave: np.ndarray,
                 skipped: tuple[str, ...], order: str = "mn", *,
                 loads: dict[str, np.ndarray] | None = None) -> TileStream:
    """Per-wave DRAM loads (_wave_loads, or `loads` already built by it) and stores, coalesced into
    buffer-sized chunks; per_wave: the compute cycles of each wave (tile_schedule)."""
    g, mb, nb = grid
    tiles = hw.compute.tiles
    nunits = g * mb * nb
    waves = per_wave.size
    if loads is None:
        loads = _wave_loads(work, hw, grid, skipped, order)
    # output: the per-unit split_bytes pieces of a wave telescope to edges[end] - edges[start]
    out_total = int(work.output_numel * hw.compute.element_bytes)
    ends = np.minimum(np.arange(waves + 1, dtype=np.int64) * tiles, nunits)
    store = np.diff((ends * out_total) // nunits) if nunits else np.zeros(waves, np.int64)
    return _coalesce(per_wave, loads, store, _cap(hw) // 2)


def _wave_loads(work: Workload, hw: HardwareConfig, grid: tuple[int, int, int], skipped: tuple[str, ...],
                order: str = "mn") -> dict[str, np.ndarray]:
    """Per-wave DRAM loads per operand (waves of `tiles` units); units enumerated with column blocks
    fastest ("mn") or row blocks fastest ("nm"): (group, outer block, inner block), inner fastest.
    A's blocks are (group, row block), B's (group, column block); the outer operand's block is
    shared by `n_in` consecutive units, the inner operand's recurs every `n_in` units of a group.
    _side_loads sums what each wave fetches in closed form (no per-unit arrays)."""
    g, mb, nb = grid
    tiles = hw.compute.tiles
    cap = _cap(hw)
    n_out, n_in = (mb, nb) if order == "mn" else (nb, mb)
    outer = "a" if order == "mn" else "b"
    loads = {}
    for side in ("a", "b"):
        total = _operand_bytes(work, hw, side, side in skipped)
        part = split_bytes(total, g * (mb if side == "a" else nb))
        fits = total <= cap  # the whole operand stays on chip: each block fetched at its first use
        # else fetched by every wave that needs it, unless the previous wave used it too (resident:
        # the buffer holds two waves' blocks)
        resident = 2 * tiles * int(part.max(initial=0)) <= cap
        loads[work.a if side == "a" else work.b] = _side_loads(part, side == outer, g, n_out, n_in, tiles,
                                                               fits=fits, resident=resident)
    return loads


def _side_loads(part: np.ndarray, outer: bool, g: int, n_out: int, n_in: int, tiles: int, *, fits: bool,
                resident: bool) -> np.ndarray:
    """Bytes one operand loads per wave. Units u = (gi*n_out + oi)*n_in + ii run in waves of `tiles`
    (wave = u // tiles); the operand's block of unit u is gi*n_out + oi (outer) or gi*n_in + ii
    (inner), `part` bytes each. A unit fetches its block at the block's first use; past that, when
    the operand does not fit (not `fits`), again unless the block's previous user is in the same
    wave or, with `resident`, the wave before. Equal to the per-unit rule by loops
    (tests/test_sparse_pe_waves.py), in O(blocks + waves):
    outer: the block's units are consecutive, so it is fetched once (fits, or resident) or once per
    wave its units span; inner: its previous user is u - n_in, which with n_in = q*tiles + r is
    q + (u % tiles < r) waves earlier -- every unit, none or the first r units of each wave fetch."""
    units = g * n_out * n_in
    waves = -(-units // tiles)
    part = part.astype(np.int64, copy=False)
    if outer:
        first = np.arange(part.size, dtype=np.int64) * n_in  # first unit of each block
        if fits or resident:
            return _sum_by_wave(first // tiles, part, waves)
        # every wave from the one of the block's first unit to that of its last
        cum = np.concatenate([[0], np.cumsum(part)])
        w = np.arange(waves, dtype=np.int64)
        started = cum[np.searchsorted(first // tiles, w, side="right")]
        ended = cum[np.searchsorted((first + n_in - 1) // tiles, w, side="left")]
        return started - ended
    first = (np.arange(g, dtype=np.int64)[:, None] * (n_out * n_in) + np.arange(n_in, dtype=np.int64)).reshape(-1)
    q, r = divmod(n_in, tiles)
    if fits or (resident and q < 1):  # only each block's first use (oi == 0) fetches
        return _sum_by_wave(first // tiles, part, waves)
    if q >= 2 or (q >= 1 and not resident):  # every unit fetches
        return np.diff(_unit_prefix(part, g, n_out, n_in, np.minimum(np.arange(waves + 1) * tiles, units)))
    # the first r units of each wave fetch, and every block's first use
    w0 = np.arange(waves, dtype=np.int64) * tiles
    lo = _unit_prefix(part, g, n_out, n_in, w0)
    hi = _unit_prefix(part, g, n_out, n_in, np.minimum(w0 + r, units))
    late = first % tiles >= r  # first uses not among their wave's first r units
    return hi - lo + _sum_by_wave(first[late] // tiles, part[late], waves)


def _sum_by_wave(wave: np.ndarray, values: np.ndarray, waves: int) -> np.ndarray:
    """Per-wave sums of `values` (int64) whose waves are `wave`, non-decreasing."""
    cum = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return np.diff(cum[np.searchsorted(wave, np.arange(waves + 1, dtype=np.int64), side="left")])


def _unit_prefix(part: np.ndarray, g: int, n_out: int, n_in: int, u: np.ndarray) -> np.ndarray:
    """Bytes of the inner operand's blocks over units 0 .. u-1 (every unit counted), for each u:
    a group's n_out rounds of its n_in blocks, then the rounds and blocks of u's own group."""
    per = part.reshape(g, n_in)
    inner = np.concatenate([np.zeros((g + 1, 1), np.int64),
                            np.concatenate([np.cumsum(per, axis=1, dtype=np.int64), np.zeros((1, n_in), np.int64)])],
                           axis=1)  # inner[gi, t]: blocks 0..t-1 of group gi (a zero group g past the end)
    group = np.concatenate([[0], np.cumsum(inner[:g, n_in] * n_out)])  # whole groups before gi
    gi, t = np.divmod(np.asarray(u, dtype=np.int64), n_out * n_in)
    return group[gi] + (t // n_in) * inner[gi, n_in] + inner[gi, t % n_in]


def _coalesce(compute: np.ndarray, loads: dict[str, np.ndarray], store: np.ndarray, chunk: int) -> TileStream:
    """Merge consecutive waves into DMA chunks of at most `chunk` bytes (half the double-buffered
    `buffer`; a wave bigger than that is a chunk of its own). Moving data in buffer-sized chunks
    rather than per wave keeps the DRAM latency from being paid once per few-cycle wave; sums of
    cycles and bytes are unchanged."""
    n = compute.size
    moved = store.copy()
    for v in loads.values():
        moved = moved + v
    starts = _chunk_starts(moved, max(int(chunk), 1))
    red = lambda a: np.add.reduceat(a, starts) if n else a  # noqa: E731
    return TileStream(compute_cycles=red(compute), load_bytes={k: red(v) for k, v in loads.items()},
                      store_bytes=red(store))


def _chunk_starts(moved: np.ndarray, chunk: int) -> np.ndarray:
    """First wave of each chunk: greedy, a chunk takes waves while its bytes stay <= chunk (a
    first wave bigger than that is a chunk alone). One binary search per chunk over the running
    byte sums (no jitted loop): the chunk from wave s ends before the first wave j with
    bytes(s..j) > chunk."""
    moved = np.ascontiguousarray(moved, dtype=np.int64)
    cum = np.concatenate([[0], np.cumsum(moved)]).tolist()  # exact Python integers
    n = len(moved)
    starts = []
    s = 0
    while s < n:
        starts.append(s)
        s = max(s + 1, bisect.bisect_right(cum, cum[s] + chunk) - 1)
    return np.array(starts, dtype=np.int64)
