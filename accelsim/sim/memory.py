"""Discrete-event model of data movement shared by every hardware family (DESIGN.md "one engine").

An op is a sequence of tiles. Tile i needs ``load_bytes[op][i]`` bytes of each operand from DRAM
before it can compute for ``compute_cycles[i]`` cycles, and then writes ``store_bytes[i]`` bytes
of output back. The machine:

* one DRAM channel of ``bytes_per_cycle`` (a simpy ``Resource`` of capacity 1). A transfer of b > 0
  bytes holds it for ``ceil(b / bytes_per_cycle)`` cycles (all operands of a tile move as one
  transfer); a load's data arrives ``latency_cycles`` after its last byte leaves the channel
  (latency is pipelined: the next transfer may start meanwhile). Writes are posted: a store is
  done when its last byte is on the channel.
* one in-order DMA queue drives the channel. With double buffering (two tile buffers) its program
  is ``L0, L1, then for each tile i: wait for compute i to end; S_i; L_{i+2}`` -- tile i+2 reuses
  tile i's buffer, so the DMA runs at most one tile ahead of compute, and output writes share the
  channel with loads. Without double buffering it is ``L0, then: wait compute i; S_i; L_{i+1}``, so
  loads, compute and stores serialise.
* one compute unit: tile i starts when tile i-1 has finished and tile i's loads have arrived.
  A tile with no bytes to load waits for nothing but its predecessor.
* fences: a tile marked ``fence`` starts something new that cannot be prefetched -- a new CTA on a
  GPU SM (it can only issue its first loads once resident, i.e. after the previous CTA on that SM
  has exited) or a new kernel launch. Its load is not issued before tile i-1's compute has ended:
  the DMA queue waits there (``... S_{i-2}; wait compute i-1; L_i; S_{i-1} ...``), so the load's
  transfer and latency are exposed. Without fences the program is exactly the one above.

``total`` is when the last compute or store ends; ``stall = total - sum(compute)``. Cycles are
integers and the model is deterministic.

ASSUMPTION: this engine is a first-order model of our own (DESIGN.md "one engine"), not taken from a
paper or datasheet: one DRAM channel that always delivers the configured peak bandwidth, a fixed
pipelined latency, no bank or row-buffer effects, and no on-chip reuse beyond what each family's
tiling already accounts for. Real DRAM rarely sustains its peak, so stalls lean optimistic.

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
    if method == "auto":
        method = "simpy" if t <= SIMPY_MAX_TILES else "replay"
    if method == "simpy":
        total, raw = _run_simpy(c, ldur, lflag, sdur, sflag, int(latency_cycles), depth, fence)
    elif method == "replay":
        total, raw = _run_replay(c, ldur, lflag, sdur, sflag, int(latency_cycles), depth, fence)
    else:
        raise ValueError(f"method must be auto, simpy or replay, got {method!r}")
    compute = int(c.sum())
    by_op = {k: int(v.sum()) for k, v in stream.load_bytes.items()}
    by_op["output"] = int(stream.store_bytes.sum())
    events = []
    if timeline:
        from accelsim.sim.result import TimelineEvent

        events = [TimelineEvent(op_id, r, s, e) for r, s, e in merge_intervals(raw)]
    return EngineResult(int(total), compute, int(total) - compute, by_op, events)


# ---------------------------------------------------------------------------------------------
# The model as simpy processes (the definition).


def _run_simpy(c, ldur, lflag, sdur, sflag, lat: int, depth: int, fence):
    env = simpy.Environment()
    channel = simpy.Resource(env, capacity=1)
    n = len(c)
    arrived = [env.event() for _ in range(n)]
    done = [env.event() for _ in range(n)]
    raw: list[tuple[str, int, int]] = []
    for j in range(n):
        if not lflag[j]:
            arrived[j].succeed()  # nothing to fetch: the tile waits only for its predecessor

    def transfer(dur):
        with channel.request() as req:
            yield req
            start = env.now
            yield env.timeout(int(dur))
        raw.append(("dma", int(start), int(env.now)))

    def deliver(j):
        yield env.timeout(lat)
        arrived[j].succeed()

    def load(j):
        if lflag[j]:
            if fence[j] and j > 0:
                yield done[j - 1]
            yield from transfer(ldur[j])
            env.process(deliver(j))

    def dma():
        for j in range(min(depth, n)):
            yield from load(j)
        for i in range(n):
            yield done[i]
            if sflag[i]:
                yield from transfer(sdur[i])
            if i + depth < n:
                yield from load(i + depth)

    def compute():
        for i in range(n):
            yield arrived[i]
            start = env.now
            yield env.timeout(int(c[i]))
            raw.append(("compute", int(start), int(env.now)))
            done[i].succeed()

    env.process(dma())
    env.process(compute())
    env.run()
    return int(env.now), raw


# ---------------------------------------------------------------------------------------------
# The same schedule replayed in compiled code: the processes above never race (one in-order DMA
# queue, one compute unit), so each start time is a max() of already-known times.


@njit(cache=True)
def _replay(c, ldur, lflag, sdur, sflag, lat, depth, fence, cstart, lstart, sstart):  # pragma: no cover
    # A fenced load L_j waits for compute j-1, which is only known in iteration j-1; the DMA queue
    # is blocked meanwhile, so L_j is issued there (``pending``), before S_{j-1}, keeping the order.
    n = c.shape[0]
    arrive = np.zeros(n, dtype=np.int64)
    free = 0  # when the channel is next free (DMA queue position)
    pending = -1  # a fenced load the queue is waiting to issue
    for j in range(min(depth, n)):
        lstart[j] = -1
        if lflag[j]:
            if fence[j] and j > 0:
                pending = j  # only j == 1 with depth 2; everything after it in the queue waits
                break
            lstart[j] = free
            free += ldur[j]
            arrive[j] = free + lat
    cend = 0
    for i in range(n):
        s = max(cend, arrive[i])
        cstart[i] = s
        cend = s + c[i]
        if pending == i + 1:
            s = max(free, cend)
            lstart[pending] = s
            free = s + ldur[pending]
            arrive[pending] = free + lat
            pending = -1
        sstart[i] = -1
        if sflag[i]:
            s = max(free, cend)
            sstart[i] = s
            free = s + sdur[i]
        j = i + depth
        if j < n:
            lstart[j] = -1
            if lflag[j]:
                if fence[j] and depth > 1:
                    pending = j
                else:
                    s = max(free, cend)
                    lstart[j] = s
                    free = s + ldur[j]
                    arrive[j] = free + lat
    return max(cend, free)


def _run_replay(c, ldur, lflag, sdur, sflag, lat: int, depth: int, fence):
    n = len(c)
    cstart = np.empty(n, dtype=np.int64)
    lstart = np.empty(n, dtype=np.int64)
    sstart = np.empty(n, dtype=np.int64)
    total = _replay(c, ldur, lflag, sdur, sflag, lat, depth, fence, cstart, lstart, sstart)
    raw = _Intervals(c, cstart, ldur, lstart, sdur, sstart)
    return int(total), raw


class _Intervals:
    """Busy intervals of a replay, kept as arrays until a timeline is asked for."""

    def __init__(self, c, cstart, ldur, lstart, sdur, sstart):
        self.arrays = (c, cstart, ldur, lstart, sdur, sstart)

    def as_arrays(self):
        c, cstart, ldur, lstart, sdur, sstart = self.arrays
        comp = np.stack([cstart, cstart + c], axis=1)
        lm, sm = lstart >= 0, sstart >= 0
        dma = np.concatenate(
            [np.stack([lstart[lm], lstart[lm] + ldur[lm]], axis=1),
             np.stack([sstart[sm], sstart[sm] + sdur[sm]], axis=1)]
        )
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
