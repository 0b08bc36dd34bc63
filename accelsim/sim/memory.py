"""Discrete-event model of data movement shared by every hardware family (DESIGN.md "one engine").

An op is a sequence of tiles. Tile i needs ``load_bytes[op][i]`` bytes of each operand from DRAM
before it can compute for ``compute_cycles[i]`` cycles, and then writes ``store_bytes[i]`` bytes
of output back. The machine:

* one DRAM channel of ``bytes_per_cycle`` (a simpy ``Resource`` of capacity 1). A transfer of b > 0
  bytes holds it for ``ceil(b / bytes_per_cycle)`` cycles (all operands of a tile move as one
  transfer); a load's data arrives ``latency_cycles`` after its last byte leaves the channel
  (latency is pipelined: the next transfer may start meanwhile). Writes are posted: a store is
  done when its last byte is on the channel.
* loads have priority over stores (the usual memory-controller policy: reads first, writes
  buffered and drained in the gaps -- e.g. gem5's DRAM controller; AXI gives reads and writes
  separate channels). A load preempts a store in progress, which resumes when the channel is free
  again (bursts interleave finely), so a long output write never holds up the next tile's operands.
* loads, in order. A load starts when it is issued and the previous load is done. When it is issued:
  - by tile buffers (the default): with double buffering (``depth`` = 2) ``L_j`` is issued when
    compute ``j-2`` has ended (tile j reuses tile j-2's buffer; ``L_0, L_1`` at once), so the loads
    run at most one tile ahead of compute; without it (``depth`` = 1) when compute ``j-1`` has ended.
  - by buffer capacity, when the stream gives ``capacity`` (bytes of on-chip buffer per operand) and
    ``free_bytes`` (what each tile's compute releases, e.g. a slice after its last reuse): ``L_j``
    is issued as soon as every operand's resident plus prefetched bytes with it fit its capacity,
    checked at time 0 and whenever a compute ends -- the DMA prefetches as far ahead as the buffers
    allow. A load that never fits is issued once compute ``j-1`` has ended (streamed through).
* stores, in order: ``S_i`` may start when compute i has ended and the previous store is done, and
  uses the channel time loads leave free.
* output buffers: the tiles up to and including one that stores form a group that fills one output
  buffer (a systolic output slice accumulated over K tiles, a GPU wave's output tiles). There are
  ``depth`` of them: the tiles of group g start only once group g - depth's store is complete (the
  output buffer drains while the next group fills the other one, like SCALE-Sim's double-buffered
  ofmap write buffer).
* one compute unit: tile i starts when tile i-1 has finished, tile i's loads have arrived and its
  output buffer is free. A tile with no bytes to load waits for nothing else.
* fences: a tile marked ``fence`` starts something new that cannot be prefetched -- a new CTA on a
  GPU SM (it can only issue its first loads once resident, i.e. after the previous CTA on that SM
  has exited) or a new kernel launch. Its load is also not issued before tile i-1's compute has
  ended (loads after it wait behind it), so the load's transfer and latency are exposed.

``total`` is when the last compute or store ends; ``stall = total - sum(compute)``. Cycles are
integers and the model is deterministic.

ASSUMPTION: this engine is a first-order model of our own (DESIGN.md "one engine"), not taken from a
paper or datasheet: one DRAM channel that always delivers the configured peak bandwidth, a fixed
pipelined latency, no bank or row-buffer effects or read/write turnaround, preemption at cycle
granularity, an ideal DMA that knows the schedule (capacity mode), and no on-chip reuse beyond what
each family's tiling already accounts for. Real DRAM rarely sustains its peak, so stalls lean
optimistic.

Two implementations of exactly this model: the simpy processes below (the readable definition,
used for short streams) and a compiled replay of the same schedule (numba; a few ns per tile, used
for long streams -- a ResNet-50 step has thousands of tiles per op). tests/test_memory.py checks
that both agree bit for bit, timelines included, on random streams. Because the replay is exact and
O(tiles), no analytic coalescing of repeated tiles is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import simpy
from numba import njit

# Streams with at most this many tiles run through simpy itself; longer ones through the replay.
SIMPY_MAX_TILES = 48


def split_bytes(total: int, parts: int) -> np.ndarray:
    """`total` bytes split into `parts` integer pieces (int64) that sum exactly to `total` and
    differ by at most one: piece i = floor((i+1)*total/parts) - floor(i*total/parts). Family models use
    it to spread an operand's bytes over the tiles that load it."""
    total = int(total)
    edges = (np.arange(parts + 1, dtype=np.int64) * total) // parts
    return np.diff(edges)


@dataclass
class TileStream:
    """A sequence of tiles of one op, as arrays (no per-tile Python objects)."""

    compute_cycles: np.ndarray  # int64 per tile
    load_bytes: dict[str, np.ndarray]  # per operand, bytes fetched from DRAM before the tile runs
    store_bytes: np.ndarray  # int64 per tile, output bytes written after the tile
    fence: np.ndarray | None = None  # bool per tile: no prefetch across it (module docstring)
    capacity: dict[str, int] | None = None  # per loaded operand: buffer bytes (capacity-mode prefetch)
    free_bytes: dict[str, np.ndarray] | None = None  # per operand, bytes a tile releases when it ends

    def __post_init__(self) -> None:
        self.compute_cycles = _as_counts(self.compute_cycles, "compute_cycles")
        t = self.compute_cycles.shape[0]
        self.store_bytes = _as_counts(self.store_bytes, "store_bytes", t)
        self.load_bytes = {k: _as_counts(v, f"load_bytes[{k!r}]", t) for k, v in self.load_bytes.items()}
        if self.fence is None:
            self.fence = np.zeros(t, dtype=np.bool_)
        else:
            f = np.asarray(self.fence)
            if f.dtype != np.bool_ or f.shape != (t,):
                raise ValueError(f"TileStream.fence must be a bool array of {t} tiles, got {f.dtype} {f.shape}")
            self.fence = np.ascontiguousarray(f)
        if (self.capacity is None) != (self.free_bytes is None):
            raise ValueError("TileStream.capacity and free_bytes go together")
        if self.capacity is not None:
            if set(self.capacity) != set(self.load_bytes) or set(self.free_bytes) != set(self.load_bytes):
                raise ValueError(f"TileStream.capacity / free_bytes must name the loaded operands "
                                 f"{sorted(self.load_bytes)}, got {sorted(self.capacity)} / {sorted(self.free_bytes)}")
            self.free_bytes = {k: _as_counts(v, f"free_bytes[{k!r}]", t) for k, v in self.free_bytes.items()}
            for k, v in self.free_bytes.items():
                if (np.cumsum(v) > np.cumsum(self.load_bytes[k])).any():
                    raise ValueError(f"TileStream.free_bytes[{k!r}] releases bytes before they are loaded")
                if int(self.capacity[k]) < 0:
                    raise ValueError(f"TileStream.capacity[{k!r}] must be >= 0")

    @property
    def n_tiles(self) -> int:
        return int(self.compute_cycles.shape[0])


def _as_counts(a, name: str, length: int | None = None) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.ndim != 1:
        raise ValueError(f"TileStream.{name} must be 1-D, got shape {a.shape}")
    if length is not None and a.shape[0] != length:
        raise ValueError(f"TileStream.{name} has {a.shape[0]} tiles, compute_cycles has {length}")
    if a.size and int(a.min()) < 0:
        raise ValueError(f"TileStream.{name} has negative entries")
    return a


@dataclass
class EngineResult:
    total_cycles: int
    compute_cycles: int
    stall_cycles: int
    bytes_by_operand: dict[str, int]  # per operand as loaded, plus "output" for stores
    timeline: list = field(default_factory=list)  # TimelineEvent, op-relative cycles, when asked


def transfer_cycles(nbytes: np.ndarray, bytes_per_cycle: float) -> np.ndarray:
    """Channel cycles of each transfer: ceil(bytes / bytes_per_cycle) (0 for 0 bytes)."""
    nbytes = np.asarray(nbytes, dtype=np.int64)
    return np.ceil(nbytes / float(bytes_per_cycle)).astype(np.int64)


def run_tiles(
    stream: TileStream,
    *,
    bytes_per_cycle: float,
    latency_cycles: int,
    double_buffer: bool = True,
    timeline: bool = False,
    op_id: int = -1,
    method: str = "auto",
) -> EngineResult:
    """Run one op's tiles through the DMA/compute model (module docstring). ``method`` is
    ``"auto"`` (simpy for short streams, the compiled replay otherwise), ``"simpy"`` or ``"replay"``;
    all give identical results."""
    if not bytes_per_cycle > 0:
        raise ValueError(f"bytes_per_cycle must be > 0, got {bytes_per_cycle}")
    if latency_cycles < 0:
        raise ValueError(f"latency_cycles must be >= 0, got {latency_cycles}")
    args = _engine_args(stream, bytes_per_cycle, int(latency_cycles), double_buffer)
    t = stream.n_tiles
    if method == "auto":
        method = "simpy" if t <= SIMPY_MAX_TILES else "replay"
    if method == "simpy":
        total, raw = _run_simpy(*args)
    elif method == "replay":
        total, raw = _run_replay(*args)
    else:
        raise ValueError(f"method must be auto, simpy or replay, got {method!r}")
    compute = int(stream.compute_cycles.sum())
    by_op = {k: int(v.sum()) for k, v in stream.load_bytes.items()}
    by_op["output"] = int(stream.store_bytes.sum())
    events = []
    if timeline:
        from accelsim.sim.result import TimelineEvent

        events = [TimelineEvent(op_id, r, s, e) for r, s, e in merge_intervals(raw)]
    return EngineResult(int(total), compute, int(total) - compute, by_op, events)


def _engine_args(stream: TileStream, bytes_per_cycle: float, latency_cycles: int, double_buffer: bool) -> tuple:
    """The arrays both implementations run on: per tile compute, load/store transfer cycles and
    flags, latency, depth, fences, and (capacity mode) per-operand needs, frees and capacities."""
    c = stream.compute_cycles
    t = stream.n_tiles
    load = np.zeros(t, dtype=np.int64)
    for v in stream.load_bytes.values():
        load = load + v
    ldur = transfer_cycles(load, bytes_per_cycle)
    sdur = transfer_cycles(stream.store_bytes, bytes_per_cycle)
    lflag = load > 0
    sflag = stream.store_bytes > 0
    depth = 2 if double_buffer else 1
    fence = stream.fence & lflag  # a fence on a tile that loads nothing waits for nothing
    ops = sorted(stream.capacity) if stream.capacity is not None else []
    need = np.array([stream.load_bytes[k] for k in ops], dtype=np.int64).reshape(len(ops), t)
    free = np.array([stream.free_bytes[k] for k in ops], dtype=np.int64).reshape(len(ops), t)
    cap = np.array([stream.capacity[k] for k in ops], dtype=np.int64)
    return c, ldur, lflag, sdur, sflag, latency_cycles, depth, fence, need, free, cap


# ---------------------------------------------------------------------------------------------
# The model as simpy processes (the definition).


def _groups(sflag):
    """Output-buffer group of each tile: the number of stores issued by the tiles before it."""
    g = np.zeros(len(sflag), dtype=np.int64)
    if len(sflag) > 1:
        g[1:] = np.cumsum(sflag[:-1])
    return g


def _run_simpy(c, ldur, lflag, sdur, sflag, lat: int, depth: int, fence, need, free, cap):
    env = simpy.Environment()
    channel = simpy.PreemptiveResource(env, capacity=1)
    n = len(c)
    by_capacity = need.shape[0] > 0
    arrived = [env.event() for _ in range(n)]
    done = [env.event() for _ in range(n)]
    stored = [env.event() for _ in range(int(np.count_nonzero(sflag)))]
    group = _groups(sflag)
    raw: list[tuple[str, int, int]] = []
    held = np.zeros(need.shape[0], dtype=np.int64)  # resident + prefetched bytes per operand
    ended = [0]  # computes ended so far
    for j in range(n):
        if not lflag[j]:
            arrived[j].succeed()  # nothing to fetch: the tile waits only for its predecessor

    def deliver(j):
        yield env.timeout(lat)
        arrived[j].succeed()

    def loads():
        for j in range(n):
            if not by_capacity and j >= depth:
                yield done[j - depth]
            if not lflag[j]:
                continue
            if fence[j] and j > 0:
                yield done[j - 1]
            if by_capacity:
                while not (j == 0 or done[j - 1].triggered or (held + need[:, j] <= cap).all()):
                    yield done[ended[0]]  # re-check when the next compute ends and frees its bytes
                held[:] += need[:, j]
            with channel.request(priority=0, preempt=True) as req:
                yield req
                start = env.now
                yield env.timeout(int(ldur[j]))
            raw.append(("dma", int(start), int(env.now)))
            env.process(deliver(j))

    def stores():
        q = 0
        for i in range(n):
            if not sflag[i]:
                continue
            yield done[i]
            left = int(sdur[i])
            while left > 0:  # resumed after every load that preempts it
                req = channel.request(priority=1, preempt=False)
                start = None
                try:
                    yield req
                    start = env.now
                    yield env.timeout(left)
                    left = 0
                except simpy.Interrupt:
                    if start is not None:
                        left -= env.now - start
                finally:
                    channel.release(req)
                    if start is not None and env.now > start:
                        raw.append(("dma", int(start), int(env.now)))
            stored[q].succeed()
            q += 1

    def compute():
        for i in range(n):
            yield arrived[i]
            if group[i] >= depth:
                yield stored[group[i] - depth]
            start = env.now
            yield env.timeout(int(c[i]))
            raw.append(("compute", int(start), int(env.now)))
            held[:] -= free[:, i]
            ended[0] = i + 1
            done[i].succeed()

    env.process(loads())
    env.process(stores())
    env.process(compute())
    env.run()
    return int(env.now), raw


# ---------------------------------------------------------------------------------------------
# The same schedule replayed in compiled code, tile by tile. Loads never wait for stores, so each
# load's start is a max() of known times; a store fills the channel gaps the loads leave, and the
# loads that can fall inside it before compute i needs it are all issued by then (any later load
# is issued after compute i has started).


@njit(cache=True)
def _replay(c, ldur, lflag, sdur, sflag, lat, depth, fence, need, free, cap, group,
            cstart, lstart, piece):  # pragma: no cover
    n = c.shape[0]
    nops = need.shape[0]
    arrive = np.zeros(n, dtype=np.int64)
    cend = np.zeros(n, dtype=np.int64)
    stile = np.flatnonzero(sflag)
    sdone = np.zeros(stile.shape[0], dtype=np.int64)
    load_tiles = np.empty(n, dtype=np.int64)  # tiles whose load was issued, in channel order
    loaded = np.zeros(nops, dtype=np.int64)  # bytes issued so far per operand (capacity mode)
    freed = np.zeros((nops, n), dtype=np.int64)  # cumulative bytes freed by computes 0 .. k
    nl = 0
    load_free = 0
    nxt = 0  # next load to issue
    kprev = -1  # capacity mode: the compute after whose end the previous load was issued (-1: time 0)
    kscan = -1  # the next such compute to try for load `nxt` (earlier ones did not fit)
    sq = 0  # next store to finish
    s_free = 0  # when the previous store finished
    lp = 0  # first issued load that may still overlap the store being placed
    npiece = 0
    last_end = 0
    for i in range(n + 1):
        # issue every load whose conditions are known once computes 0 .. i-1 have ended
        while nxt < n:
            j = nxt
            if nops == 0:
                if j >= depth and j - depth > i - 1:
                    break
                if lflag[j] and fence[j] and j > 0 and j - 1 > i - 1:
                    break
                t = load_free
                if j >= depth:
                    t = max(t, cend[j - depth])
                if lflag[j] and fence[j] and j > 0:
                    t = max(t, cend[j - 1])
            else:
                if not lflag[j]:
                    lstart[j] = -1
                    nxt += 1
                    kscan = kprev
                    continue
                k = max(kscan, kprev)
                if fence[j] and j > 0:
                    if j - 1 > i - 1:
                        break
                    k = max(k, j - 1)
                ok = False
                while k <= i - 1:
                    if k >= j - 1:
                        ok = True  # every earlier tile has ended: stream it through
                        break
                    fits = True
                    for o in range(nops):
                        released = 0
                        if k >= 0:
                            released = freed[o, k]
                        if loaded[o] + need[o, j] - released > cap[o]:
                            fits = False
                            break
                    if fits:
                        ok = True
                        break
                    k += 1
                if not ok:
                    kscan = k
                    break
                kprev = k
                kscan = k
                t = load_free
                if k >= 0:
                    t = max(t, cend[k])
                for o in range(nops):
                    loaded[o] += need[o, j]
            if lflag[j]:
                lstart[j] = t
                load_free = t + ldur[j]
                arrive[j] = load_free + lat
                load_tiles[nl] = j
                nl += 1
            else:
                lstart[j] = -1
            nxt += 1
        # finish the stores compute i waits for (all of them after the last tile)
        upto = stile.shape[0] if i == n else group[i] - depth + 1
        while sq < upto:
            t = max(cend[stile[sq]], s_free)
            left = sdur[stile[sq]]
            while left > 0:
                while lp < nl and lstart[load_tiles[lp]] + ldur[load_tiles[lp]] <= t:
                    lp += 1
                if lp < nl and lstart[load_tiles[lp]] <= t:
                    t = lstart[load_tiles[lp]] + ldur[load_tiles[lp]]  # the channel is a load's
                    continue
                gap = left
                if lp < nl:
                    gap = min(gap, lstart[load_tiles[lp]] - t)
                piece[npiece, 0] = t
                piece[npiece, 1] = t + gap
                npiece += 1
                t += gap
                left -= gap
            s_free = t
            sdone[sq] = t
            sq += 1
        if i == n:
            break
        s = max(last_end, arrive[i])
        if group[i] >= depth:
            s = max(s, sdone[group[i] - depth])
        cstart[i] = s
        cend[i] = s + c[i]
        last_end = cend[i]
        for o in range(nops):
            freed[o, i] = free[o, i] + (freed[o, i - 1] if i > 0 else 0)
    return max(last_end, s_free, load_free), npiece


def _run_replay(c, ldur, lflag, sdur, sflag, lat: int, depth: int, fence, need, free, cap):
    n = len(c)
    cstart = np.empty(n, dtype=np.int64)
    lstart = np.full(n, -1, dtype=np.int64)
    piece = np.empty((n + int(np.count_nonzero(sflag)) + 1, 2), dtype=np.int64)
    total, npiece = _replay(c, ldur, lflag, sdur, sflag, lat, depth, fence, need, free, cap, _groups(sflag),
                            cstart, lstart, piece)
    raw = _Intervals(c, cstart, ldur, lstart, piece[:npiece])
    return int(total), raw


class _Intervals:
    """Busy intervals of a replay, kept as arrays until a timeline is asked for."""

    def __init__(self, c, cstart, ldur, lstart, store_pieces):
        self.arrays = (c, cstart, ldur, lstart, store_pieces)

    def as_arrays(self):
        c, cstart, ldur, lstart, pieces = self.arrays
        comp = np.stack([cstart, cstart + c], axis=1)
        lm = lstart >= 0
        dma = np.concatenate([np.stack([lstart[lm], lstart[lm] + ldur[lm]], axis=1), pieces.reshape(-1, 2)])
        return {"compute": comp, "dma": dma}


def merge_intervals(raw) -> list[tuple[str, int, int]]:
    """(resource, start, end) busy intervals, zero-length ones dropped, back-to-back ones of the same
    resource merged, sorted by (resource, start): a compact, implementation-independent timeline."""
    if isinstance(raw, _Intervals):
        groups = raw.as_arrays()
    else:
        groups = {}
        for r in ("compute", "dma"):
            rows = [(s, e) for rr, s, e in raw if rr == r]
            groups[r] = np.array(rows, dtype=np.int64).reshape(-1, 2)
    out: list[tuple[str, int, int]] = []
    for r in ("compute", "dma"):
        iv = groups.get(r, np.zeros((0, 2), np.int64))
        iv = iv[iv[:, 1] > iv[:, 0]]
        if not len(iv):
            continue
        iv = iv[np.argsort(iv[:, 0], kind="stable")]
        # a new run starts wherever an interval does not begin exactly where the previous one ended
        new = np.ones(len(iv), dtype=bool)
        new[1:] = iv[1:, 0] != iv[:-1, 1]
        starts = iv[new, 0]
        idx = np.flatnonzero(new)
        ends = iv[np.r_[idx[1:] - 1, len(iv) - 1], 1]
        out.extend((r, int(s), int(e)) for s, e in zip(starts, ends))
    return out
