"""The TensorDash scheduler (kernels.td_rows_cycles): its table lookup and its candidate walk against
the scheduler as specified, written out plainly (td_schedule docstring; docs/sources.md "SWAT's
accelerator: TensorDash": each empty lane of the current row, in lane order, takes the first
still-unclaimed non-zero among its candidates (t+h, lane+d); then up to H all-zero rows are skipped)."""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.sim import kernels as K
from td_reference import td_reference as _reference


def _uses_table(lanes: int, ch: np.ndarray, cd: np.ndarray) -> bool:
    """Whether td_rows_cycles takes the table path -- to check that both paths are tested."""
    return K._td_table(lanes, tuple(zip(ch.tolist(), cd.tolist()))) is not None


def _bits(s: str) -> int:  # "1010" -> lane 0 is the first character
    return sum(1 << i for i, ch in enumerate(s) if ch == "1")


def test_lane_order_decides_a_shared_source():
    # 4 lanes, H=1, candidates (1,0) then (1,+1). Row 0 = 0011 (lanes 2, 3 busy), row 1 = 0110.
    # Lane 0: (1,0) = row 1 lane 0 is zero; (1,+1) = row 1 lane 1: taken. Lane 1: (1,0) = row 1
    # lane 1 was just claimed; (1,+1) = row 1 lane 2: taken. Row 1 is now empty and skipped: 1 cycle.
    # (Lane 1 first -- or lanes deciding at once on the unclaimed rows, both choosing row 1 lane 1 --
    # would leave row 1 = 0010 and cost 2 cycles.)
    ch, cd = np.array([1, 1], np.int64), np.array([0, 1], np.int64)
    rows = np.array([[_bits("0011"), _bits("0110")]], np.int64)
    assert K.td_rows_cycles(rows, 4, 1, ch, cd).tolist() == [1]
    assert rows.tolist() == [[_bits("0011"), 0]]
    assert _reference([_bits("0011"), _bits("0110")], 4, 1, ch, cd) == (1, [_bits("0011"), 0])


def test_priority_order_not_distance_decides():
    # T-shape H=2, D=5: (1,0), (2,0), (1,+1), ... Lane 0 of an empty row with row 1 = 0100 (lane 1)
    # and row 2 = 1000 (lane 0): (1,0) is zero, (2,0) = row 2 lane 0 is taken before the nearer
    # (1,+1). Lanes 1..3: lane 1 <- (1,0) = row 1 lane 1. Rows 1 and 2 now empty: 1 cycle, rows 0.
    ch, cd = K.td_candidates(2, 5, "T")
    rows = np.array([[0, _bits("0100"), _bits("1000")]], np.int64)
    assert K.td_rows_cycles(rows, 4, 2, ch, cd).tolist() == [1]
    assert rows.tolist() == [[0, 0, 0]]


@pytest.mark.parametrize("search", ["T", "full"])
@pytest.mark.parametrize("lanes", [8, 13, 16, 32])
def test_random_streams_match_the_reference(search, lanes):
    # every (H, D) of 1-3 x 0-7, densities 0.05-0.95, 20 streams of 1-40 rows; cycles and the rows left
    # after (the claimed bits cleared) both equal the plain loop's, on the table path and the walk
    rng = np.random.default_rng(1000 * lanes + (search == "T"))
    paths = set()
    for H in (1, 2, 3):
        for D in (0, 1, 3, 5, 7):
            ch, cd = K.td_candidates(H, D, search)
            paths.add(_uses_table(lanes, ch, cd))
            streams, n = 20, int(rng.integers(1, 41))
            dens = rng.uniform(0.05, 0.95, size=(streams, 1, 1))
            bits = rng.random((streams, n, lanes)) < dens
            rows = (bits * (1 << np.arange(lanes, dtype=np.int64))).sum(axis=2).astype(np.int64)
            want = [_reference(r.tolist(), lanes, H, ch, cd) for r in rows]
            got = K.td_rows_cycles(rows, lanes, H, ch, cd)
            assert got.tolist() == [c for c, _ in want]
            assert rows.tolist() == [r for _, r in want]
    # lanes 8/13/16: T-shapes fit the table, full searches with large D do not; 32 lanes with H >= 2
    # do not fit 63 bits (2 x (32 + 2 + 3) = 74 for H=2, D=5), H=1 with small D does
    assert paths == {True, False}


def test_no_candidates_is_dense():
    ch, cd = K.td_candidates(0, 5)
    rows = np.array([[0, 1, 0]], np.int64)
    assert K.td_rows_cycles(rows, 4, 0, ch, cd).tolist() == [3]


def test_stream_cycles_in_chunks_equal_lane_rows(monkeypatch):
    # td_stream_cycles (past lane_rows' cap) gathers the lane rows of a chunk of streams at a time;
    # with a cap that makes chunks of 3 streams it still gives lane_rows' rows' cycles stream by stream
    from accelsim.sim.workload import conv_params
    from accelsim.sim.workload import synthetic_workload

    p = conv_params(1, 20, 6, 6, 8, 3, 3, stride=1, padding=1)
    rng = np.random.default_rng(3)
    masks = {"input": rng.random((1, 20, 6, 6)) < 0.3, "weight": rng.random((8, 20, 3, 3)) < 0.3}
    work = synthetic_workload("conv2d", "fwd", masks, p)
    ch, cd = K.td_candidates(2, 5)
    want = K.td_rows_cycles(K.lane_rows(work, "a", 16), 16, 2, ch, cd)
    v = K.operand_view(work, "a", lanes=16)
    nrows = v.off.size // 16  # 9 taps x 2 rows of 16 lanes (20 channels padded to 32)
    monkeypatch.setattr(K, "LANE_ROWS_CAP", 8 * 3 * nrows)
    got = K.td_stream_cycles(v.src, v.base, *v.runs, v.off.size, 16, 2, ch, cd)
    assert v.base.size == 36 and nrows == 18
    assert np.array_equal(got, want)
