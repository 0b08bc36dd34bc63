"""Discrete-event model of data movement shared by every hardware family (docs/sources.md "Memory engine").

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

ASSUMPTION: this engine is a first-order model of our own, not taken from a paper or datasheet
(docs/sources.md "Memory engine"): one DRAM channel that always delivers the configured peak
bandwidth, a fixed pipelined latency, no bank or row-buffer effects or read/write turnaround,
preemption at cycle granularity, an ideal DMA that knows the schedule (capacity mode), and no
on-chip reuse beyond what each family's tiling already accounts for. Real DRAM rarely sustains its
peak, so stalls lean optimistic.

Two implementations of exactly this model, and which one a change goes in:

* ``_rules`` turns a stream into the one table both read: per tile the transfer cycles, and the
  dependencies -- which compute must have ended before a load may be issued (tile buffers of
  ``depth``, fences), after which compute a load is streamed through even if it does not fit
  (capacity mode), which store must be complete before a compute starts (output buffers). A change
  to WHEN something may start (buffer depth, fence or output-group rules, rounding of transfers) is
  made there, once.
* ``run_tiles_simpy``: the simpy processes below, the readable definition of the channel (loads
  first, stores preempted and resumed) and of capacity accounting (resident bytes vs buffer). It is
  the test oracle and is not used by the simulator.
* ``run_tiles``: the replay (``_replay``: one function, compiled -- the shipped machine code of
  accelsim.sim.native, else numba's JIT with an explicit signature, cached -- or run interpreted on
  Python lists while a process's streams are short in total: _replay_budget), which serves every
  production run whatever the stream length. It computes the
  same schedule in closed form per tile: loads never wait for stores, so a load starts at
  max(channel free, end of the compute it depends on); capacity mode's "fits" is a search over
  cumulative bytes done in numpy (``_load_after``); a store fills the gaps the loads leave.

A change to the channel or to capacity accounting is made in the simpy definition and then in the
replay; tests/test_memory.py runs both on over a thousand random streams covering every feature and
requires equal totals and timelines, so the two cannot drift apart unnoticed. Because the replay is
exact and O(tiles), no analytic coalescing of repeated tiles is needed.
"""

from __future__ import annotations

import sys
import time
import types
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from accelsim.errors import UnsupportedError
from accelsim.sim import native
from accelsim.sim.kernels import lazy_njit

# Every time in the engine is an int64 cycle count; a stream whose serial schedule (every transfer,
# latency and compute one after another, an upper bound of its total) reaches this is refused
# rather than allowed to wrap around.
MAX_CYCLES = 2**62


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
    cyc = np.ceil(nbytes / float(bytes_per_cycle))
    if cyc.size and not float(cyc.max()) < MAX_CYCLES:
        raise UnsupportedError(f"a transfer of {int(nbytes.max())} bytes at {bytes_per_cycle:.3g} bytes/cycle takes "
                               f"2^62 cycles or more; the memory engine counts cycles in 64-bit integers")
    return cyc.astype(np.int64)


class _Rules(NamedTuple):
    """The one table both implementations run on (module docstring). Per tile: compute cycles,
    load and store transfer cycles (0: nothing to move), ``issue_after`` (the compute that must
    have ended before the tile's load is issued; -1 none), ``force_after`` (capacity mode: the
    compute after whose end the load is issued even if it does not fit; -1 at once),
    ``store_wait`` (the store, counted in store order, that must be complete before the tile
    computes; -1 none). Capacity mode: ``need`` / ``free`` per operand and tile, ``cap`` per
    operand (no rows: tile buffers only)."""

    c: np.ndarray
    ldur: np.ndarray
    sdur: np.ndarray
    lat: int
    issue_after: np.ndarray
    force_after: np.ndarray
    store_wait: np.ndarray
    need: np.ndarray
    free: np.ndarray
    cap: np.ndarray


def _rules(stream: TileStream, bytes_per_cycle: float, latency_cycles: int, double_buffer: bool) -> _Rules:
    if not (bytes_per_cycle > 0 and np.isfinite(bytes_per_cycle)):
        raise ValueError(f"bytes_per_cycle must be finite and > 0, got {bytes_per_cycle}")
    if latency_cycles < 0:
        raise ValueError(f"latency_cycles must be >= 0, got {latency_cycles}")
    c = stream.compute_cycles
    t = stream.n_tiles
    vals = list(stream.load_bytes.values())
    if len(vals) == 1:
        load = vals[0]
    elif vals:
        if float(np.sum(vals, axis=0, dtype=np.float64).max(initial=0.0)) >= MAX_CYCLES:
            raise UnsupportedError("a tile loads 2^62 bytes or more; the memory engine counts in 64-bit integers")
        load = np.sum(vals, axis=0, dtype=np.int64)
    else:
        load = np.zeros(t, np.int64)
    ldur = transfer_cycles(load, bytes_per_cycle)
    sdur = transfer_cycles(stream.store_bytes, bytes_per_cycle)
    lflag = ldur > 0
    depth = 2 if double_buffer else 1
    idx = np.arange(t, dtype=np.int64)
    capacity = stream.capacity is not None
    # tile buffers: L_j reuses tile j-depth's buffer; capacity mode has no such wait
    issue_after = np.full(t, -1, np.int64) if capacity else idx - depth
    # a fence (on a tile that loads something) waits for the previous compute
    fenced = stream.fence & lflag
    fenced[:1] = False
    issue_after = np.where(fenced, idx - 1, issue_after)
    force_after = idx - 1 if capacity else np.full(t, -1, np.int64)
    # output buffers: group g = stores issued before the tile; it waits for group g-depth's store
    sflag = sdur > 0
    group = np.zeros(t, np.int64)
    if t > 1:
        np.cumsum(sflag[:-1], out=group[1:])
    store_wait = np.maximum(group - depth, -1)
    ops = sorted(stream.capacity) if capacity else []
    need = np.array([stream.load_bytes[k] for k in ops], dtype=np.int64).reshape(len(ops), t)
    free = np.array([stream.free_bytes[k] for k in ops], dtype=np.int64).reshape(len(ops), t)
    cap = np.array([stream.capacity[k] for k in ops], dtype=np.int64)
    # upper bound of any time in the schedule: everything one after another (float first; exact
    # Python integers only near the limit, where float rounding could decide)
    nload = int(np.count_nonzero(lflag))
    bound = float(np.sum(c, dtype=np.float64) + np.sum(ldur, dtype=np.float64) + np.sum(sdur, dtype=np.float64)
                  + float(latency_cycles) * nload)
    if bound >= MAX_CYCLES / 2 and (sum(map(int, c)) + sum(map(int, ldur)) + sum(map(int, sdur))
                                     + int(latency_cycles) * nload >= MAX_CYCLES):
        raise UnsupportedError(f"a stream of {t} tiles may take 2^62 cycles or more; the memory engine counts "
                               f"cycles in 64-bit integers")
    return _Rules(c, ldur, sdur, int(latency_cycles), issue_after, force_after, store_wait, need, free, cap)


def _sum(a: np.ndarray) -> int:
    """Exact sum of non-negative int64 counts (Python integers where int64 could wrap)."""
    if float(np.sum(a, dtype=np.float64)) < MAX_CYCLES:
        return int(a.sum())
    return sum(map(int, a))


def _result(stream: TileStream, total: int, raw, timeline: bool, op_id: int) -> EngineResult:
    compute = _sum(stream.compute_cycles)
    by_op = {k: _sum(v) for k, v in stream.load_bytes.items()}
    by_op["output"] = _sum(stream.store_bytes)
    events = []
    if timeline:
        from accelsim.sim.result import TimelineEvent

        events = [TimelineEvent(op_id, r, s, e) for r, s, e in merge_intervals(raw)]
    return EngineResult(int(total), compute, int(total) - compute, by_op, events)


def run_tiles(
    stream: TileStream,
    *,
    bytes_per_cycle: float,
    latency_cycles: int,
    double_buffer: bool = True,
    timeline: bool = False,
    op_id: int = -1,
) -> EngineResult:
    """Run one op's tiles through the DMA/compute model (module docstring) with the compiled
    replay, whatever the stream's length. ``timeline`` adds merged busy intervals (op-relative
    cycles) labelled ``op_id``."""
    r = _rules(stream, bytes_per_cycle, latency_cycles, double_buffer)
    total, raw = _run_replay(r)
    return _result(stream, total, raw, timeline, op_id)


def run_tiles_simpy(
    stream: TileStream,
    *,
    bytes_per_cycle: float,
    latency_cycles: int,
    double_buffer: bool = True,
    timeline: bool = False,
    op_id: int = -1,
) -> EngineResult:
    """The same as :func:`run_tiles` through the simpy processes: the model's readable definition
    and the tests' oracle (slow: use :func:`run_tiles`)."""
    r = _rules(stream, bytes_per_cycle, latency_cycles, double_buffer)
    total, raw = _run_simpy(r)
    return _result(stream, total, raw, timeline, op_id)


# ---------------------------------------------------------------------------------------------
# The model as simpy processes (the definition).


def _run_simpy(r: _Rules) -> tuple[int, list[tuple[str, int, int]]]:
    import simpy  # only the oracle needs it

    env = simpy.Environment()
    channel = simpy.PreemptiveResource(env, capacity=1)
    n = len(r.c)
    arrived = [env.event() for _ in range(n)]
    done = [env.event() for _ in range(n)]
    stored = [env.event() for _ in range(int(np.count_nonzero(r.sdur)))]
    raw: list[tuple[str, int, int]] = []
    held = np.zeros(r.need.shape[0], dtype=np.int64)  # resident + prefetched bytes per operand
    ended = [0]  # computes ended so far
    for j in range(n):
        if not r.ldur[j]:
            arrived[j].succeed()  # nothing to fetch: the tile waits only for its predecessor

    def deliver(j):
        yield env.timeout(r.lat)
        arrived[j].succeed()

    def fits(j):
        return (held + r.need[:, j] <= r.cap).all()

    def loads():
        for j in range(n):  # in order: the next load is issued once this one is on its way
            if not r.ldur[j]:
                continue
            if r.issue_after[j] >= 0:
                yield done[r.issue_after[j]]
            f = r.force_after[j]
            while not (f < 0 or done[f].triggered or fits(j)):
                yield done[ended[0]]  # re-check when the next compute ends and frees its bytes
            held[:] += r.need[:, j]
            with channel.request(priority=0, preempt=True) as req:
                yield req
                start = env.now
                yield env.timeout(int(r.ldur[j]))
            raw.append(("dma", int(start), int(env.now)))
            env.process(deliver(j))

    def stores():
        q = 0
        for i in range(n):
            if not r.sdur[i]:
                continue
            yield done[i]
            left = int(r.sdur[i])
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
            if r.store_wait[i] >= 0:
                yield stored[r.store_wait[i]]
            start = env.now
            yield env.timeout(int(r.c[i]))
            raw.append(("compute", int(start), int(env.now)))
            held[:] -= r.free[:, i]
            ended[0] = i + 1
            done[i].succeed()

    env.process(loads())
    env.process(stores())
    env.process(compute())
    env.run()
    return int(env.now), raw


# ---------------------------------------------------------------------------------------------
# The same schedule replayed in compiled code, tile by tile.


def _load_after(r: _Rules) -> np.ndarray:
    """Per tile, the compute whose end releases its load (-1: time 0), all rules combined. Loads
    are issued in order and the channel is free for them once the previous load is done, so a load
    starts at max(previous load's end, that compute's end). Capacity mode: L_j fits once the bytes
    freed by computes 0..k cover what the loads 0..j hold beyond the buffer, the first such k is a
    binary search over cumulative frees (they only grow); a load that never fits is streamed
    through after ``force_after``."""
    after = r.issue_after
    if r.need.shape[0]:
        want = np.cumsum(r.need, axis=1) - r.cap[:, None]  # bytes that must be freed before L_j fits
        freed = np.cumsum(r.free, axis=1)
        fit = np.full(len(r.c), -1, np.int64)
        for o in range(r.need.shape[0]):
            k = np.searchsorted(freed[o], want[o], side="left").astype(np.int64)
            fit = np.maximum(fit, np.where(want[o] > 0, k, -1))
        after = np.maximum(after, np.minimum(fit, r.force_after))
    return after


class _NoScipyForNumba:
    """While numba loads its CPU target (on the first compile or cache load in a process), it imports
    scipy.linalg, 0.3-0.4 s, only to learn whether np.vdot/np.inner in jitted code may call BLAS.
    No jitted code in accelsim calls BLAS, so if scipy.linalg is not imported yet it is hidden for
    that moment (numba then uses its own loop for those two; np.dot still finds scipy later)."""

    def __enter__(self):
        self.hid = "scipy.linalg" not in sys.modules
        if self.hid:
            sys.modules["scipy.linalg"] = None  # `import scipy.linalg...` raises ImportError meanwhile
        return self

    def __exit__(self, *exc):
        if self.hid and sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]
        return False


# One function, int64 arrays and ints only, no Python objects: compiled once (_replay_entry: the
# shipped machine code, else numba's JIT, cached on disk), and the same source runs interpreted on
# Python lists for short streams (_run_replay), so there is one replay. Loads never wait for stores, so each load's start is a max() of known times. A store
# fills the channel gaps the loads leave; the loads that can fall inside it are all issued before
# the compute that waits for it is placed (any later load depends on a compute that has not started).
# ``piece`` holds the store pieces flat: (start, end) of piece p at 2p, 2p + 1.
def _replay(c, ldur, sdur, lat, after, store_wait, ltile, stile, sdone, cstart, lend, piece):
    n = len(c)
    nload = len(ltile)
    nstore = len(stile)
    nl = 0  # loads issued (ltile[:nl], in channel order; lend[:nl] their ends)
    load_free = 0  # when the channel is free of loads
    sq = 0  # stores placed
    s_free = 0  # when the previous store finished
    lp = 0  # first issued load that may still overlap the store being placed
    npiece = 0
    last_end = 0
    li = 0  # loads consumed by the computes placed so far
    for i in range(n + 1):
        # issue, in order, every load whose compute dependency is among computes 0 .. i-1
        while nl < nload:
            j = ltile[nl]
            a = after[j]
            if a >= i:
                break
            if a >= 0 and cstart[a] + c[a] > load_free:
                load_free = cstart[a] + c[a]
            load_free += ldur[j]
            lend[nl] = load_free
            nl += 1
        # place the stores compute i waits for (all of them after the last tile)
        upto = nstore
        if i < n:
            upto = store_wait[i] + 1
        while sq < upto:
            k = stile[sq]
            t = cstart[k] + c[k]
            if s_free > t:
                t = s_free
            left = sdur[k]
            while left > 0:
                while lp < nl and lend[lp] <= t:
                    lp += 1
                gap = left
                if lp < nl:
                    ls = lend[lp] - ldur[ltile[lp]]
                    if ls <= t:
                        t = lend[lp]  # the channel is a load's
                        continue
                    if ls - t < gap:
                        gap = ls - t
                piece[2 * npiece] = t
                piece[2 * npiece + 1] = t + gap
                npiece += 1
                t += gap
                left -= gap
            s_free = t
            sdone[sq] = t
            sq += 1
        if i == n:
            break
        s = last_end
        if ldur[i] > 0:
            if lend[li] + lat > s:
                s = lend[li] + lat
            li += 1
        w = store_wait[i]
        if w >= 0 and sdone[w] > s:
            s = sdone[w]
        cstart[i] = s
        last_end = s + c[i]
    if s_free > last_end:
        last_end = s_free
    if load_free > last_end:
        last_end = load_free
    return last_end, npiece


# The same source as a kernel of its own name (lazy_njit puts numba's dispatcher under that name;
# _replay itself stays the plain function the interpreted path runs), and the compiled replay's one
# entry, shipped as machine code (accelsim.sim.native: no tuple return, so the piece count is
# written into npiece[0]), numba's JIT its fallback.
_replay_kernel = lazy_njit(types.FunctionType(_replay.__code__, _replay.__globals__, "_replay_kernel"))


@lazy_njit(args=("i8[:]", "i8[:]", "i8[:]", "i8", "i8[:]", "i8[:]", "i8[:]", "i8[:]", "i8[:]!", "i8[:]!",
                 "i8[:]!", "i8[:]!", "i8[:]!"), ret="i8")
def _replay_entry(c, ldur, sdur, lat, after, store_wait, ltile, stile, sdone, cstart, lend, piece, npiece):
    """The compiled replay: _replay, its piece count into npiece[0], its total returned."""
    total, count = _replay_kernel(c, ldur, sdur, lat, after, store_wait, ltile, stile, sdone, cstart, lend,
                                  piece)
    npiece[0] = count
    return total


_REPLAY_ENTRY = _replay_entry  # the lazy wrapper (the module global becomes numba's dispatcher once loaded)

# CPU seconds a process spends replaying interpreted before it loads the compiled replay (rent or
# buy): loading the compiled replay costs about this much once -- the shipped machine code
# (accelsim.sim.native: importing llvmlite and loading the cached object, NATIVE_REPLAY_SECONDS), or
# numba's import and load (PY_REPLAY_SECONDS) where that is unavailable -- and an interpreted tile
# 0.3-1 us (lists of Python ints), so a run whose streams are short in total (a GPU's few tiles per
# op) never loads either, and a longer one pays at most about twice the better of the two. A stream
# is replayed interpreted only while its estimate (PY_TILE_SECONDS a tile) fits what is left. Speed
# crossovers (benchmarks/bench_speed.py), not model numbers: both runs give the same integers.
PY_REPLAY_SECONDS = 0.3
NATIVE_REPLAY_SECONDS = 0.03
PY_TILE_SECONDS = 1e-6
_py_seconds_left: float | None = None  # set on the first replay (_replay_budget)


def _replay_budget() -> float:
    return NATIVE_REPLAY_SECONDS if native.available(_REPLAY_ENTRY.native) else PY_REPLAY_SECONDS


def _replay_loaded() -> bool:
    """Whether a compiled replay is loaded in this process (its machine code, or numba)."""
    return _REPLAY_ENTRY.machine_code_loaded() or _REPLAY_ENTRY.dispatcher is not None


def _replay_compiled(*args) -> tuple[int, int]:
    """_replay's compiled run (through the wrapper: the shipped machine code where it loads and
    takes the arrays, else numba's JIT)."""
    count = np.zeros(1, dtype=np.int64)
    return _REPLAY_ENTRY(*args, count), int(count[0])


def _run_replay(r: _Rules, compiled: bool | None = None) -> tuple[int, "_Intervals"]:
    """The replay of one stream; ``compiled``: force the compiled (True) or interpreted (False)
    run of the same _replay (default: interpreted while the budget lasts, _replay_budget, and no
    compiled replay is loaded yet)."""
    global _py_seconds_left
    n = len(r.c)
    ltile = np.flatnonzero(r.ldur).astype(np.int64)
    stile = np.flatnonzero(r.sdur).astype(np.int64)
    # a store is split at most once per load that preempts it: pieces <= stores + loads
    npieces = len(stile) + len(ltile) + 1
    after = _load_after(r)
    if _py_seconds_left is None:
        _py_seconds_left = _replay_budget()
    if compiled is None:
        compiled = _replay_loaded() or n * PY_TILE_SECONDS > _py_seconds_left
    if compiled:
        cstart = np.empty(n, dtype=np.int64)
        lend = np.empty(len(ltile), dtype=np.int64)
        sdone = np.empty(len(stile), dtype=np.int64)
        piece = np.empty(2 * npieces, dtype=np.int64)
        total, npiece = _replay_compiled(r.c, r.ldur, r.sdur, int(r.lat), after, r.store_wait, ltile, stile,
                                         sdone, cstart, lend, piece)
    else:
        t0 = time.process_time()
        cl, ll, lend, piece = r.c.tolist(), ltile.tolist(), [0] * len(ltile), [0] * (2 * npieces)
        cstart = [0] * n
        total, npiece = _replay(cl, r.ldur.tolist(), r.sdur.tolist(), int(r.lat), after.tolist(),
                                r.store_wait.tolist(), ll, stile.tolist(), [0] * len(stile), cstart, lend, piece)
        cstart, lend, piece = (np.array(x, dtype=np.int64) for x in (cstart, lend, piece))
        _py_seconds_left -= time.process_time() - t0
    pieces = piece[: 2 * npiece].reshape(-1, 2)
    return int(total), _Intervals(r.c, cstart, lend - r.ldur[ltile], lend, pieces)


class _Intervals:
    """Busy intervals of a replay, kept as arrays until a timeline is asked for."""

    def __init__(self, c, cstart, lstart, lend, store_pieces):
        self.arrays = (c, cstart, lstart, lend, store_pieces)

    def as_arrays(self):
        c, cstart, lstart, lend, pieces = self.arrays
        comp = np.stack([cstart, cstart + c], axis=1)
        dma = np.concatenate([np.stack([lstart, lend], axis=1), pieces.reshape(-1, 2)])
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
