"""sparse_pe._side_loads (per-wave DRAM loads in closed form) against the per-unit rule by loops."""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.sim import sparse_pe
from accelsim.sim.memory import split_bytes
from test_sparse_pe import refetch_by_sorting


def loads_by_units(part, outer, g, n_out, n_in, tiles, *, fits, resident):
    """The rule unit by unit: units (gi, oi, ii) in order, wave = u // tiles; a unit fetches its
    block at the block's first use, and (operand too big for the buffer) at the first use in a wave
    unless, with `resident`, the previous wave used the block (refetch_by_sorting, which sorts)."""
    blk = [gi * n_out + oi if outer else gi * n_in + ii
           for gi in range(g) for oi in range(n_out) for ii in range(n_in)]
    blk = np.array(blk, dtype=np.int64)
    wave = np.arange(blk.size) // tiles
    if fits:
        _, idx = np.unique(blk, return_index=True)
        fetch = np.zeros(blk.size, bool)
        fetch[idx] = True
    else:
        fetch = refetch_by_sorting(wave, blk, part.size, resident=resident)
    out = np.zeros(-(-blk.size // tiles), np.int64)
    np.add.at(out, wave[fetch], part[blk[fetch]])
    return out


def test_hand_worked_inner_operand_refetched_by_the_first_units_of_each_wave():
    # one group, 3 outer x 3 inner blocks of 10, 20, 30 bytes, waves of 2 units, not resident:
    # units (oi, ii) = (0,0)(0,1) | (0,2)(1,0) | (1,1)(1,2) | (2,0)(2,1) | (2,2)
    # n_in = 3 = 1*2 + 1: a unit whose block was used 3 units before refetches unless that user is
    # in its own wave -- every unit here: 10+20 | 30+10 | 20+30 | 10+20 | 30
    part = np.array([10, 20, 30])
    got = sparse_pe._side_loads(part, False, 1, 3, 3, 2, fits=False, resident=False)
    assert got.tolist() == [30, 40, 50, 30, 30]
    # resident: only the first unit of each wave whose block's user is two waves back (u % 2 < 1),
    # plus each block's first use: (0,0)(0,1) | (0,2) (1,0)? user (0,0) is wave 0 = previous: no |
    # (1,1): user (0,1) wave 0, two back: yes, (1,2): user (0,2) previous: no | (2,0): user (1,0)
    # wave 1, two back: yes, (2,1) no | (2,2): user (1,2) wave 2, two back: yes
    got = sparse_pe._side_loads(part, False, 1, 3, 3, 2, fits=False, resident=True)
    assert got.tolist() == [30, 30, 20, 10, 30]
    # the outer operand (3 blocks of 3 units): fetched in every wave its units span when not resident
    got = sparse_pe._side_loads(part, True, 1, 3, 3, 2, fits=False, resident=False)
    assert got.tolist() == [10, 10 + 20, 20, 30, 30]
    assert sparse_pe._side_loads(part, True, 1, 3, 3, 2, fits=True, resident=False).tolist() == [10, 20, 0, 30, 0]


@pytest.mark.parametrize("g,n_out,n_in", [(1, 2, 3), (2, 3, 2), (1, 5, 1), (3, 1, 4), (2, 4, 7), (2, 7, 33),
                                          (1, 3, 40), (3, 5, 16), (1, 1, 1)])
def test_side_loads_equal_the_unit_rule(g, n_out, n_in):
    rng = np.random.default_rng(g * 100 + n_out * 10 + n_in)
    for outer in (True, False):
        nblk = g * (n_out if outer else n_in)
        part = split_bytes(int(rng.integers(0, 10**6)), nblk)
        for tiles in (1, 2, 3, 5, 16, 17, 40):
            for fits in (True, False):
                for resident in (False, True):
                    want = loads_by_units(part, outer, g, n_out, n_in, tiles, fits=fits, resident=resident)
                    got = sparse_pe._side_loads(part, outer, g, n_out, n_in, tiles, fits=fits, resident=resident)
                    assert got.dtype == np.int64 and got.tolist() == want.tolist(), (outer, tiles, fits, resident)
