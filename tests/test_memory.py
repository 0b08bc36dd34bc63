"""Memory/DMA event engine: hand-worked schedules (module docstring of accelsim.sim.memory) and
bit-for-bit agreement of the simpy definition (run_tiles_simpy, the oracle) with the compiled
replay every production run uses (run_tiles)."""

import numpy as np
import pytest

from accelsim.sim import memory
from accelsim.errors import UnsupportedError
from accelsim.sim.memory import TileStream, merge_intervals, run_tiles, run_tiles_simpy, transfer_cycles

ENGINES = {"simpy": run_tiles_simpy, "replay": run_tiles}


def _stream(c, loads, stores=None):
    n = len(c)
    return TileStream(np.array(c), {"a": np.array(loads)}, np.zeros(n) if stores is None else np.array(stores))


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_three_tiles_double_buffered(method):
    # compute 10 per tile, 8 bytes per tile at 1 B/cycle (8 cycles), latency 2:
    # L0 0-8 (arrives 10), L1 8-16 (18); C0 10-20; L2 waits for buffer 0: 20-28 (30);
    # C1 20-30; C2 30-40.  total 40, compute 30, stall 10.
    r = ENGINES[method](_stream([10, 10, 10], [8, 8, 8]), bytes_per_cycle=1, latency_cycles=2)
    assert (r.total_cycles, r.compute_cycles, r.stall_cycles) == (40, 30, 10)
    assert r.bytes_by_operand == {"a": 24, "output": 0}


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_three_tiles_single_buffer_serialises(method):
    # each tile: load 8 + latency 2 + compute 10, one after another: 3 x 20 = 60
    r = ENGINES[method](_stream([10, 10, 10], [8, 8, 8]), bytes_per_cycle=1, latency_cycles=2, double_buffer=False)
    assert (r.total_cycles, r.stall_cycles) == (60, 30)


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_stores_share_the_channel_after_loads(method):
    # as above plus 4-byte stores: C0 10-20; L2 20-28 (arrives 30) goes before S0 (loads first):
    # S0 28-32; C1 20-30; C2 needs L2 (30) and its output buffer, the one S0 drains (32): 32-42;
    # S1 32-36; S2 42-46.  total 46.
    r = ENGINES[method](_stream([10, 10, 10], [8, 8, 8], [4, 4, 4]), bytes_per_cycle=1, latency_cycles=2)
    assert (r.total_cycles, r.compute_cycles, r.stall_cycles) == (46, 30, 16)
    assert r.bytes_by_operand["output"] == 12


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_a_load_preempts_a_long_store(method):
    # loads 4, 4, 6, 6; tile 0 stores 20 bytes, tile 1 4. L0 0-4, L1 4-8; C0 4-14; L2 14-20 (arrives
    # 20) before S0; S0 20-24, preempted by L3 24-30 (issued when C1 ends), resumes 30-46; S1 46-50;
    # C1 14-24; C2 and C3 fill the output buffer S0 drains: C2 46-56, C3 56-66.
    r = ENGINES[method](_stream([10, 10, 10, 10], [4, 4, 6, 6], [20, 4, 0, 0]), bytes_per_cycle=1, latency_cycles=0, timeline=True)
    assert r.total_cycles == 66
    assert [(e.resource, e.start, e.end) for e in r.timeline] == [("compute", 4, 24), ("compute", 46, 66),
                                                                  ("dma", 0, 8), ("dma", 14, 50)]
    # an output group spans the tiles up to its store: tiles 0-1 fill buffer 0 (stored after tile 1),
    # tiles 2-3 buffer 1; with loads only at tile 0 nothing else limits it:
    # C0 1-11, C1 11-21, S1 21-41, C2 21-31, C3 31-41, S3 41-61; group 2 would wait for S1
    r = ENGINES[method](_stream([10, 10, 10, 10], [1, 0, 0, 0], [0, 20, 0, 20]), bytes_per_cycle=1, latency_cycles=0)
    assert r.total_cycles == 61


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_bandwidth_bound(method):
    # 4 tiles, 10-cycle loads, 2-cycle compute, no latency: the channel is busy back to back
    # (L3 ends at 40) and only the last tile's compute sticks out: 40 + 2.
    r = ENGINES[method](_stream([2] * 4, [10] * 4), bytes_per_cycle=1, latency_cycles=0)
    assert (r.total_cycles, r.stall_cycles) == (42, 34)


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_compute_bound(method):
    # 4 tiles of 20 cycles, 5-cycle loads, latency 1: only the first load is exposed: 5 + 1 + 80.
    r = ENGINES[method](_stream([20] * 4, [5] * 4), bytes_per_cycle=1, latency_cycles=1)
    assert (r.total_cycles, r.stall_cycles) == (86, 6)


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_fence_stops_prefetch(method):
    # test_stores_share_the_channel's stream with tile 2 fenced (a new CTA / kernel):
    # L0 0-8 (10), L1 8-16 (18); C0 10-20; S0 20-24; L2 must wait for C1: C1 20-30; L2 30-38
    # (arrives 40); S1 38-42; C2 40-50; S2 50-54.  total 54 (48 unfenced).
    s = TileStream(np.array([10, 10, 10]), {"a": np.array([8, 8, 8])}, np.array([4, 4, 4]),
                   np.array([False, False, True]))
    r = ENGINES[method](s, bytes_per_cycle=1, latency_cycles=2)
    assert (r.total_cycles, r.stall_cycles) == (54, 24)


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_fence_on_second_tile_blocks_the_initial_prefetch(method):
    # tile 1 fenced: L0 0-8 (10); C0 10-20; L1 20-28 (30); L2 28-36 (38), it was queued behind L1;
    # C1 30-40; C2 40-50.  total 50.  A fence on a tile that loads nothing changes nothing.
    s = TileStream(np.array([10, 10, 10]), {"a": np.array([8, 8, 8])}, np.zeros(3), np.array([False, True, False]))
    assert ENGINES[method](s, bytes_per_cycle=1, latency_cycles=2).total_cycles == 50
    s0 = TileStream(np.array([10, 10]), {"a": np.array([8, 0])}, np.zeros(2), np.array([False, True]))
    assert ENGINES[method](s0, bytes_per_cycle=1, latency_cycles=2).total_cycles == 30


def test_fence_must_be_bool_per_tile():
    with pytest.raises(ValueError, match="fence"):
        TileStream(np.array([1, 2]), {"a": np.array([1, 1])}, np.zeros(2), np.array([1, 0]))


def test_transfer_cycles_round_up():
    assert transfer_cycles(np.array([0, 1, 4, 5, 7]), 2.0).tolist() == [0, 1, 2, 3, 4]
    assert transfer_cycles(np.array([5]), 0.5).tolist() == [10]


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_operands_move_as_one_transfer_per_tile(method):
    # two operands of 3 bytes at 2 B/cycle: ceil(6/2) = 3 cycles, not 2 + 2
    s = TileStream(np.array([0]), {"a": np.array([3]), "b": np.array([3])}, np.array([0]))
    r = ENGINES[method](s, bytes_per_cycle=2, latency_cycles=0)
    assert r.total_cycles == 3 and r.bytes_by_operand == {"a": 3, "b": 3, "output": 0}


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_zero_load_tiles_wait_only_for_predecessor(method):
    # tile 1 loads nothing: it runs right after tile 0 even though S0 then occupies the channel
    r = ENGINES[method](_stream([5, 5], [4, 0], [10, 0]), bytes_per_cycle=1, latency_cycles=0)
    # L0 0-4, C0 4-9, S0 9-19, C1 9-14 -> total 19 (the store)
    assert r.total_cycles == 19


def test_timeline_intervals_are_merged():
    # test_three_tiles_double_buffered's schedule: C0 10-20, C1 20-30, C2 30-40 merge into one run;
    # L0 0-8 and L1 8-16 into one, L2 20-28 stands alone
    s = _stream([10, 10, 10], [8, 8, 8])
    raw_s = memory._run_simpy(memory._rules(s, 1.0, 2, True))[1]
    assert merge_intervals(raw_s) == [("compute", 10, 40), ("dma", 0, 16), ("dma", 20, 28)]
    assert merge_intervals([("dma", 5, 5), ("compute", 3, 4), ("compute", 0, 3)]) == [("compute", 0, 4)]


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_empty_stream(method):
    r = ENGINES[method](TileStream(np.zeros(0), {}, np.zeros(0)), bytes_per_cycle=1, latency_cycles=3)
    assert (r.total_cycles, r.stall_cycles, r.bytes_by_operand) == (0, 0, {"output": 0})


def test_bad_stream():
    with pytest.raises(ValueError, match="has 2 tiles"):
        TileStream(np.zeros(3), {"a": np.zeros(2)}, np.zeros(3))
    with pytest.raises(ValueError, match="negative"):
        TileStream(np.array([-1]), {}, np.zeros(1))


def _random_stream(rng, n, capacity_mode, scale=1):
    """A random stream exercising every feature: zero-cycle computes, tiles that load nothing or
    store nothing, two operands, fences (also on tiles that load nothing), store groups, and in
    capacity mode slices released after a random later tile into buffers from 0 (every load streamed
    through) to roomy. ``scale`` multiplies every count (huge numbers)."""
    c = rng.integers(0, 25, n) * (rng.random(n) < 0.9) * scale
    la = rng.integers(0, 40, n) * (rng.random(n) < 0.7) * scale
    lb = rng.integers(0, 40, n) * (rng.random(n) < 0.5) * scale
    st = rng.integers(0, 30, n) * (rng.random(n) < rng.choice([0.0, 0.4, 1.0])) * scale
    fence = rng.random(n) < rng.choice([0.0, 0.2, 0.6])
    if not capacity_mode:
        return TileStream(c, {"a": la, "b": lb}, st, fence)
    free = {}
    for name, ld in (("a", la), ("b", lb)):
        f = np.zeros(n, np.int64)
        for j in np.flatnonzero(ld):
            f[int(rng.integers(j, n))] += ld[j]
        free[name] = f
    cap = {"a": int(rng.integers(0, 120)) * scale, "b": int(rng.integers(0, 120)) * scale}
    return TileStream(c, {"a": la, "b": lb}, st, fence, cap, free)


def _assert_same(s, bpc, lat, double_buffer, case):
    a = run_tiles_simpy(s, bytes_per_cycle=bpc, latency_cycles=lat, double_buffer=double_buffer, timeline=True)
    b = run_tiles(s, bytes_per_cycle=bpc, latency_cycles=lat, double_buffer=double_buffer, timeline=True)
    assert (a.total_cycles, a.stall_cycles, a.bytes_by_operand) == (b.total_cycles, b.stall_cycles,
                                                                    b.bytes_by_operand), case
    assert a.timeline == b.timeline, case


@pytest.mark.parametrize("capacity_mode", [False, True])
def test_replay_equals_simpy_bit_for_bit_on_random_streams(capacity_mode):
    # the simpy processes are the definition; the replay must give the same total and the same
    # busy intervals on every stream: 600 random ones per mode, latency 0..5, 1-1.25 tiles of
    # bandwidth rounding (0.75 and 2.5 bytes/cycle), single and double buffering
    rng = np.random.default_rng(1234 + capacity_mode)
    seen = dict.fromkeys(["fenced load", "store preempted", "output buffer wait", "single buffer", "latency 0",
                          "waits for space", "streamed through"], 0)
    for case in range(600):
        s = _random_stream(rng, int(rng.integers(0, 40)), capacity_mode)
        bpc, lat, db = float(rng.choice([1.0, 2.5, 7.0, 0.75])), int(rng.integers(0, 6)), bool(rng.random() < 0.6)
        _assert_same(s, bpc, lat, db, case)
        # which features this stream exercised (so that the comparison above is not vacuous)
        r = memory._rules(s, bpc, lat, db)
        pieces = memory._run_replay(r)[1].arrays[4]
        loads = r.ldur > 0
        seen["fenced load"] += bool((s.fence & loads)[1:].any())
        seen["store preempted"] += len(pieces) > np.count_nonzero(r.sdur)
        seen["output buffer wait"] += bool((r.store_wait >= 0).any())
        seen["single buffer"] += not db
        seen["latency 0"] += lat == 0
        if capacity_mode:
            after = memory._load_after(r)
            seen["waits for space"] += bool(((after > r.issue_after) & (after < r.force_after) & loads).any())
            seen["streamed through"] += bool(((after == r.force_after) & (r.force_after >= 0) & loads).any())
    for feature, count in seen.items():
        if capacity_mode or feature not in ("waits for space", "streamed through"):
            assert count >= 20, (feature, count)


@pytest.mark.parametrize("capacity_mode", [False, True])
def test_replay_equals_simpy_on_huge_numbers(capacity_mode):
    # counts around 10^15 (an op of petabytes at 1 B/cycle): exact int64 arithmetic in both, no float
    # rounding in the schedule; latency of 10^15 cycles too
    rng = np.random.default_rng(99 + capacity_mode)
    for case in range(60):
        s = _random_stream(rng, int(rng.integers(1, 30)), capacity_mode, scale=10**14 + 7)
        _assert_same(s, float(rng.choice([1.0, 3.0])), int(rng.choice([0, 10**15])), bool(rng.random() < 0.5), case)


def test_replay_equals_simpy_on_long_streams():
    # long streams (what production runs), in both modes, with short and long latency
    rng = np.random.default_rng(7)
    for case in range(6):
        s = _random_stream(rng, 400, capacity_mode=bool(case % 2))
        _assert_same(s, 1.5, 3 * case, case < 3, case)


@pytest.mark.parametrize("engine", ["native", "numba"])
@pytest.mark.parametrize("capacity_mode", [False, True])
def test_interpreted_replay_equals_compiled(capacity_mode, engine, monkeypatch):
    # _run_replay runs the one _replay either interpreted on Python lists (short streams, nothing
    # loaded) or compiled -- the shipped machine code (accelsim.sim.native) or numba's JIT: the same
    # total and busy intervals, small and huge counts, short and long
    from accelsim.sim import native

    machine = native.load(memory._REPLAY_ENTRY.native) if engine == "native" else None
    assert machine is not None or engine == "numba", native.why_not
    monkeypatch.setattr(memory._REPLAY_ENTRY, "_machine", machine)  # None: the wrapper runs numba's JIT
    rng = np.random.default_rng(4321 + capacity_mode)
    for case in range(200):
        n = int(rng.integers(0, 40)) if case < 190 else 400
        scale = 10**14 + 7 if case % 7 == 0 else 1
        s = _random_stream(rng, n, capacity_mode, scale=scale)
        r = memory._rules(s, float(rng.choice([1.0, 2.5, 0.75])), int(rng.integers(0, 6)) * scale,
                          bool(rng.random() < 0.6))
        (ta, ia), (tb, ib) = memory._run_replay(r, compiled=False), memory._run_replay(r, compiled=True)
        assert ta == tb, case
        for x, y in zip(ia.arrays, ib.arrays):
            assert x.dtype == y.dtype == np.int64 and np.array_equal(x, y), case


def test_cycles_beyond_int64_are_refused():
    # every time is an int64: 4 tiles of 2^61 compute cycles could reach 2^63, so they are refused
    # with one line; so is a transfer of 2^62 cycles (8 bytes at 2^-60 bytes/cycle, a unit mistake)
    s = TileStream(np.full(4, 2**61), {"a": np.ones(4)}, np.zeros(4))
    with pytest.raises(UnsupportedError, match="2\\^62 cycles"):
        run_tiles(s, bytes_per_cycle=1, latency_cycles=0)
    with pytest.raises(UnsupportedError, match="2\\^62 cycles"):
        run_tiles(_stream([1], [8]), bytes_per_cycle=2.0**-59, latency_cycles=0)
    # 2^62 - 1 cycles in all still runs: one tile, compute 2^62 - 10, a load of 8 cycles, latency 1
    r = run_tiles(TileStream(np.array([2**62 - 10]), {"a": np.array([8])}, np.zeros(1)), bytes_per_cycle=1,
                  latency_cycles=1)
    assert r.total_cycles == 2**62 - 1


def test_bytes_beyond_int64_are_counted_exactly():
    # three tiles of 2^62 bytes each of one operand: 3 * 2^62 does not fit int64 but is reported
    # exactly (a 2^62-byte transfer at 2^62 bytes/cycle is one cycle); two operands whose sum reaches
    # 2^62 bytes in one tile are refused rather than wrapped
    big = 2**62
    s = TileStream(np.zeros(3), {"a": np.full(3, big)}, np.zeros(3))
    r = run_tiles(s, bytes_per_cycle=float(big), latency_cycles=0)
    assert r.bytes_by_operand["a"] == 3 * big and r.total_cycles == 3
    s2 = TileStream(np.zeros(1), {"a": np.array([big - 1]), "b": np.array([big - 1])}, np.zeros(1))
    with pytest.raises(UnsupportedError, match="2\\^62 bytes"):
        run_tiles(s2, bytes_per_cycle=float(big), latency_cycles=0)


def test_bad_engine_parameters():
    with pytest.raises(ValueError, match="bytes_per_cycle"):
        run_tiles(_stream([1], [1]), bytes_per_cycle=float("inf"), latency_cycles=0)
    with pytest.raises(ValueError, match="bytes_per_cycle"):
        run_tiles(_stream([1], [1]), bytes_per_cycle=0.0, latency_cycles=0)
    with pytest.raises(ValueError, match="latency"):
        run_tiles(_stream([1], [1]), bytes_per_cycle=1.0, latency_cycles=-1)


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_capacity_prefetch_runs_as_far_ahead_as_the_buffer_allows(method):
    def stream(nbytes, cap):
        return TileStream(np.full(4, 10), {"a": np.full(4, nbytes)}, np.zeros(4), None, {"a": cap},
                          {"a": np.full(4, nbytes)})
    # 4 tiles of 10 cycles, 8-byte slices (8 cycles at 1 B/cycle) freed after their own tile. A 16-byte
    # buffer holds two: L0 0-8, L1 8-16; C0 8-18 frees slice 0: L2 18-26; C1 18-28: L3 28-36;
    # C2 28-38, C3 38-48 -> 48, like double buffering. 32 bytes: L0..L3 back to back 0-32 -> 48 too.
    assert ENGINES[method](stream(8, 16), bytes_per_cycle=1, latency_cycles=0).total_cycles == 48
    assert ENGINES[method](stream(8, 32), bytes_per_cycle=1, latency_cycles=0).total_cycles == 48
    # 12-byte slices in 24 bytes: L0 0-12, L1 12-24; C0 12-22 frees: L2 24-36; C1 24-34: L3 36-48;
    # C2 36-46, C3 48-58 -> 58 (bandwidth-bound either way)
    assert ENGINES[method](stream(12, 24), bytes_per_cycle=1, latency_cycles=0).total_cycles == 58
    # a slice kept for reuse: tile 0 loads 20 bytes used by tiles 0-2 (freed after tile 2); tiles 3
    # and 4 load 20 each. Buffer 40: L3 fits next to slice 0 at once (20-40), L4 only after C2 frees
    # slice 0: C0 20-30, C1 30-40, C2 40-50, L4 50-70, C3 50-60, C4 70-80.
    s = TileStream(np.full(5, 10), {"a": np.array([20, 0, 0, 20, 20])}, np.zeros(5), None, {"a": 40},
                   {"a": np.array([0, 0, 20, 20, 20])})
    assert ENGINES[method](s, bytes_per_cycle=1, latency_cycles=0).total_cycles == 80
    # the same with 60 bytes: everything prefetched back to back 0-60; C3 starts at 40 (L3 arrived),
    # C4 at 60 -> 70. With tile buffers (no capacity) L3 waits for C1 (40-60), L4 for C2 and the
    # channel (60-80): C3 60-70, C4 80-90 -> 90.
    s60 = TileStream(s.compute_cycles, s.load_bytes, s.store_bytes, None, {"a": 60}, s.free_bytes)
    assert ENGINES[method](s60, bytes_per_cycle=1, latency_cycles=0).total_cycles == 70
    plain = TileStream(s.compute_cycles, s.load_bytes, s.store_bytes)
    assert ENGINES[method](plain, bytes_per_cycle=1, latency_cycles=0).total_cycles == 90


def test_capacity_needs_frees_for_every_loaded_operand():
    with pytest.raises(ValueError, match="together"):
        TileStream(np.ones(2), {"a": np.ones(2)}, np.zeros(2), None, {"a": 4})
    with pytest.raises(ValueError, match="loaded operands"):
        TileStream(np.ones(2), {"a": np.ones(2)}, np.zeros(2), None, {"b": 4}, {"b": np.ones(2)})
    with pytest.raises(ValueError, match="before they are loaded"):
        TileStream(np.ones(2), {"a": np.array([0, 1])}, np.zeros(2), None, {"a": 4}, {"a": np.array([1, 0])})


@pytest.mark.parametrize("n", [1, 48, 49, 5000])
def test_any_stream_length_matches_closed_form(n):
    # n identical compute-bound tiles: first load (7 cycles) + latency 3 exposed, then compute only;
    # one engine serves every length (there is no length threshold to cross)
    s = TileStream(np.full(n, 11), {"a": np.full(n, 7)}, np.zeros(n))
    assert run_tiles(s, bytes_per_cycle=1, latency_cycles=3).total_cycles == 7 + 3 + 11 * n
    if n < 100:
        assert run_tiles_simpy(s, bytes_per_cycle=1, latency_cycles=3).total_cycles == 7 + 3 + 11 * n


@pytest.mark.parametrize("method", sorted(ENGINES))
def test_run_tiles_timeline_events(method):
    from accelsim.sim.result import TimelineEvent

    r = ENGINES[method](_stream([10, 10, 10], [8, 8, 8]), bytes_per_cycle=1, latency_cycles=2, timeline=True, op_id=7)
    assert r.timeline == [TimelineEvent(7, "compute", 10, 40), TimelineEvent(7, "dma", 0, 16),
                          TimelineEvent(7, "dma", 20, 28)]
    assert ENGINES[method](_stream([10], [8]), bytes_per_cycle=1, latency_cycles=2).timeline == []


def test_split_bytes_sums_exactly():
    # the one byte splitter the family models share: 10 bytes in 4 pieces, edges 0,2,5,7,10
    from accelsim.sim.memory import split_bytes

    assert split_bytes(10, 4).tolist() == [2, 3, 2, 3]
    assert split_bytes(3, 5).tolist() == [0, 1, 0, 1, 1] and split_bytes(3, 5).dtype == np.int64
