"""Sparse PE arrays: TensorDash one-sided scheduling in lockstep tiles, dual-sided bitmap join."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accelsim.hw import load_hw, parse_hw
from accelsim.sim import kernels, sparse_pe
from accelsim.sim.workload import conv_params
from accelsim.sim.workload import synthetic_workload as workload_from_masks
from test_workload import CONV_CASES, conv_workloads


def refetch_by_sorting(wave: np.ndarray, blk: np.ndarray, nblk: int, *, resident: bool) -> np.ndarray:
    """Units (in order) that fetch their block of an operand too big for the buffer: the first
    unit of each wave that uses the block -- unless, with `resident`, the previous wave used the
    same block, which then is still in the buffer (it holds two waves' blocks: double buffering).
    Without that, a 2 KiB A block shared by the nb consecutive units of one row block was fetched
    once per wave, ~10x the tensor for a dgrad with N = 576 (QA finding).
    Any block order (it sorts): the test-only reference for sparse_pe._side_loads, which the
    simulator uses (closed form; tests/test_sparse_pe_waves.py)."""
    key = wave * nblk + blk
    first = np.zeros(key.size, bool)
    uniq, first_idx = np.unique(key, return_index=True)
    first[first_idx] = True
    if resident and key.size:
        kept = np.isin(key - nblk, uniq)  # (wave-1, block) was used
        first &= ~kept
    return first


ROOT = Path(__file__).resolve().parents[1]


def _hw(tiles=1, pe_rows=1, pe_cols=2, lanes=16, sparsity=None):
    return parse_hw({
        "name": "t", "family": "sparse_pe", "clock": "1 GHz",
        "compute": {"tiles": tiles, "pe_rows": pe_rows, "pe_cols": pe_cols, "lanes": lanes, "data_type": "bf16"},
        "sparsity": sparsity or {"kind": "one_sided", "operand": "a", "lookahead": 2, "lookaside": 5},
        "memory": [{"name": "buffer", "capacity": "1 MiB"}, {"name": "dram", "bandwidth": "100 GB/s"}],
    })


def test_tile_schedule_round_robin():
    # units 5,3,2,7,1 on 2 tiles: tile0 runs 5+2+1 = 8, tile1 3+7 = 10 -> makespan 10;
    # wave fronts 5, 10, 10 -> per-wave shares 5, 5, 0
    span, waves = sparse_pe.tile_schedule(np.array([5, 3, 2, 7, 1]), 2)
    assert span == 10 and waves.tolist() == [5, 5, 0]
    # equal units (a dense op, which op_cost schedules without tile_schedule): 5 units of 4 cycles
    # on 2 tiles = waves of 2, 2, 1 units, each adding 4 to the busiest tile -> 12 = 3 waves x 4
    span, waves = sparse_pe.tile_schedule(np.full(5, 4), 2)
    assert span == 12 and waves.tolist() == [4, 4, 4]


def test_lockstep_group_waits_for_slowest_window():
    # two windows (A rows, K=32 -> 2 rows of 16 lanes) share one lockstep tile of 1x2 PEs.
    # window 0 is all zero: 2 rows done in 1 cycle (row 0 executes, row 1 skipped);
    # window 1 is dense: 2 cycles. The tile waits for window 1: 2 cycles = dense, no speedup.
    a = np.zeros((2, 32), bool)
    a[1] = True
    b = np.ones((32, 1), bool)
    w = workload_from_masks("matmul", "fwd", {"a": a, "b": b})
    hw = _hw()
    sp = sparse_pe.op_cost(w, hw, sparse=True)
    de = sparse_pe.op_cost(w, hw.dense(), sparse=False)
    assert (sp.compute_cycles, de.compute_cycles) == (2, 2)
    assert sp.sparse_operand == "a"
    # with one PE column per tile each window is its own group: 1 + 2 cycles on one tile
    hw1 = _hw(pe_cols=1)
    assert sparse_pe.op_cost(w, hw1, sparse=True).compute_cycles == 3
    assert sparse_pe.op_cost(w, hw1.dense(), sparse=False).compute_cycles == 4


def test_tensordash_dense_cycles_formula():
    # DNNsim dense cycles per window/filter set: ceil(round_up(C,16)*R*S/16) = ceil(32*9/16) = 18
    # for C=20, 3x3. M = 8*8 = 64 windows -> 4 sets of 16, N = 8 filters -> 2 sets of 4: 8 units
    # on 16 tiles: 18 cycles.
    p = conv_params(1, 20, 8, 8, 8, 3, 3, padding=1)
    w = workload_from_masks("conv2d", "fwd", {"input": np.ones((1, 20, 8, 8), bool),
                                              "weight": np.ones((8, 20, 3, 3), bool)}, p)
    td = load_hw(ROOT / "hwconfigs" / "tensordash.yaml")
    assert sparse_pe.dense_stream_rows(w, 16) == 18
    assert sparse_pe.op_cost(w, td.dense(), sparse=False).compute_cycles == 18
    # 40 filters -> 10 filter sets x 4 window sets = 40 units: 16 tiles take 3, 3, ..., 2 units
    p2 = conv_params(1, 20, 8, 8, 40, 3, 3, padding=1)
    w2 = workload_from_masks("conv2d", "fwd", {"input": np.ones((1, 20, 8, 8), bool),
                                               "weight": np.ones((40, 20, 3, 3), bool)}, p2)
    assert sparse_pe.op_cost(w2, td.dense(), sparse=False).compute_cycles == 3 * 18


def test_auto_picks_larger_zero_fraction():
    works, _ = conv_workloads(CONV_CASES[0], dens=(0.8, 0.2, 0.5))
    td = load_hw(ROOT / "hwconfigs" / "tensordash.yaml")
    assert sparse_pe.op_cost(works["fwd"], td, sparse=True).sparse_operand == "weight"
    works, _ = conv_workloads(CONV_CASES[0], dens=(0.1, 0.9, 0.5))
    assert sparse_pe.op_cost(works["fwd"], td, sparse=True).sparse_operand == "input"
    dense = workload_from_masks("matmul", "fwd", {"a": np.ones((4, 8), bool), "b": np.ones((8, 4), bool)})
    c = sparse_pe.op_cost(dense, td, sparse=True)
    assert c.sparse_operand is None and c.fallback == "both operands dense: nothing to skip"


@pytest.mark.parametrize("case", CONV_CASES)
def test_tensordash_h2_never_more_than_3x(case):
    td = load_hw(ROOT / "hwconfigs" / "tensordash.yaml")
    for seed, dens in enumerate([(0.05, 0.1, 0.02), (0.3, 0.5, 0.4), (0.9, 0.01, 0.7)]):
        works, _ = conv_workloads(case, seed=seed, dens=dens)
        for w in works.values():
            sp = sparse_pe.op_cost(w, td, sparse=True).compute_cycles
            de = sparse_pe.op_cost(w, td.dense(), sparse=False).compute_cycles
            assert de <= 3 * sp and sp <= de


def test_dual_sided_hand_worked():
    # lanes=1 PEs, a tile of 1 filter x 2 windows. Effectual pairs: row0 1111 & col 1101 -> 3,
    # row1 1000 & 1101 -> 1. The lockstep tile takes max(3, 1) = 3 cycles; dense ceil(4/1) = 4.
    a = np.array([[1, 1, 1, 1], [1, 0, 0, 0]], bool)
    b = np.array([[1], [1], [0], [1]], bool)
    w = workload_from_masks("matmul", "fwd", {"a": a, "b": b})
    hw = _hw(lanes=1, sparsity={"kind": "two_sided", "operand": "both"})
    c = sparse_pe.op_cost(w, hw, sparse=True)
    assert c.compute_cycles == 3 and c.effectual_macs == 4 and c.sparse_operand == "a+b"
    assert sparse_pe.op_cost(w, hw.dense(), sparse=False).compute_cycles == 4
    # a unit with no effectual pair still takes one cycle to join the bitmaps
    z = workload_from_masks("matmul", "fwd", {"a": np.zeros((2, 4), bool), "b": b})
    assert sparse_pe.op_cost(z, hw, sparse=True).compute_cycles == 1


def test_sparten_like_runs_all_passes_and_compresses():
    hw = load_hw(ROOT / "hwconfigs" / "sparten_like.yaml")
    # Hand-worked matmul on sparten_like (16 tiles of 4 filters x 16 windows, 16 lanes, bf16,
    # bitmap storage, 4 MiB buffer): A 17 x 40, B 40 x 5, every row / column a prefix of ones, so
    # popcount(A_i & B_j) = min(a_i, b_j). a_i = 8 except a_3 = 24 and a_16 = 12; b = 10, 10, 17, 0, 40.
    # Lockstep groups (16 windows x 4 filters): rows 0-15 | row 16 x columns 0-3 | column 4, 4 units.
    #   (rows 0-15, cols 0-3): max min = min(24, 17) = 17 -> ceil(17/16) = 2 cycles
    #   (rows 0-15, col 4):    min(24, 40) = 24 -> 2;  (row 16, cols 0-3): min(12, 17) = 12 -> 1
    #   (row 16, col 4):       min(12, 40) = 12 -> 1.  4 units on 16 tiles: makespan 2.
    # Dense: ceil(K/lanes) = ceil(40/16) = 3 per unit -> 3.
    # Effectual pairs: 15 rows of 8 x (8+8+8+0+8) = 480, row 3: 10+10+17+0+24 = 61,
    # row 16: 10+10+12+0+12 = 44 -> 585.
    # Bitmap bytes (formats: nnz*16 + numel bits): A nnz 15*8+24+12 = 156 -> (2496+680)/8 = 397;
    # B nnz 77 -> (1232+200)/8 = 179. Both fit the buffer: each block fetched once. Dense baseline:
    # 680*2 = 1360 and 200*2 = 400 bytes. Output 17*5*2 = 170 bytes either way.
    a_len = np.full(17, 8)
    a_len[3], a_len[16] = 24, 12
    b_len = np.array([10, 10, 17, 0, 40])
    ks = np.arange(40)
    a = ks[None, :] < a_len[:, None]
    b = ks[:, None] < b_len[None, :]
    w = workload_from_masks("matmul", "fwd", {"a": a, "b": b})
    va, vb = kernels.operand_view(w, "a"), kernels.operand_view(w, "b")
    unit, eff = kernels.pair_group_work(va.src, va.base, va.runs, vb.src, vb.base, vb.runs, 40, 17, 5, 1,
                                        16, 4, 16)
    assert unit.tolist() == [[[2, 2], [1, 1]]] and eff == 585
    sp = sparse_pe.op_cost(w, hw, sparse=True)
    de = sparse_pe.op_cost(w, hw.dense(), sparse=False)
    assert (sp.compute_cycles, de.compute_cycles, sp.effectual_macs) == (2, 3, 585)
    assert sp.sparse_operand == "a+b" and sp.fallback is None
    assert {k: int(v.sum()) for k, v in sp.tiles.load_bytes.items()} == {"a": 397, "b": 179}
    assert {k: int(v.sum()) for k, v in de.tiles.load_bytes.items()} == {"a": 1360, "b": 400}
    assert int(sp.tiles.store_bytes.sum()) == int(de.tiles.store_bytes.sum()) == 170
    # the real passes of a random conv: inequalities only (bitmap of a 30%-dense bf16 operand:
    # 16*nnz + numel bits < 16*numel)
    works, (x, wt, dy, geo) = conv_workloads(CONV_CASES[1], dens=(0.3, 0.3, 0.5))
    for w in works.values():
        sp = sparse_pe.op_cost(w, hw, sparse=True)
        de = sparse_pe.op_cost(w, hw.dense(), sparse=False)
        assert sp.compute_cycles <= de.compute_cycles
        # bitmap storage of a 30%-dense bf16 operand: 16*nnz + numel bits < 16*numel
        assert sum(v.sum() for v in sp.tiles.load_bytes.values()) < sum(v.sum() for v in de.tiles.load_bytes.values())


def test_waves_coalesce_into_buffer_sized_chunks():
    # bytes per wave 10, 10, 30, 5, 5 with 20-byte chunks: [10+10], [30] (too big, alone), [5+5]
    starts = sparse_pe._chunk_starts(np.array([10, 10, 30, 5, 5]), 20)
    assert starts.tolist() == [0, 2, 3]
    st = sparse_pe._coalesce(np.array([1, 2, 3, 4, 5]), {"a": np.array([10, 10, 30, 5, 5])},
                             np.zeros(5, np.int64), 20)
    assert st.compute_cycles.tolist() == [3, 3, 9] and st.load_bytes["a"].tolist() == [20, 30, 10]


def test_chunk_starts_equal_the_greedy_loop():
    # _chunk_starts binary-searches the running sums; it must equal the plain greedy definition
    # (a chunk takes waves while its bytes stay <= chunk; a bigger first wave is alone), zero-byte
    # waves and exact fits included
    def greedy(moved, chunk):
        out, acc = [], 0
        for i, b in enumerate(moved):
            if i == 0 or acc + b > chunk:
                out.append(i)
                acc = 0
            acc += b
        return out

    rng = np.random.default_rng(5)
    for case in range(300):
        moved = rng.integers(0, 40, int(rng.integers(0, 60))) * (rng.random() < 0.9)
        chunk = int(rng.choice([1, 10, 20, 39, 100, 10**6]))
        assert sparse_pe._chunk_starts(moved, chunk).tolist() == greedy(moved.tolist(), chunk), case


def test_dual_sided_dense_input_has_no_phantom_speedup():
    # QA finding: ResNet-18's first conv (C=3, 3x3) on sparten_like ran 4.5x faster than its own
    # dense baseline on an all-dense input. The bitmap join packs the reduction K = R*S*C = 27
    # contiguously: ceil(27/16) = 2 cycles per window/filter pair; the dense baseline padded each
    # tap's 3 channels to 16 lanes as TensorDash does (9 taps = 9 cycles). The same machine's dense
    # baseline must use its own layout (module docstring: "Dense: ceil(K/lanes)"), so dense data
    # runs at speedup 1. 4 windows x 4 filters = 1 unit of a 4x16-PE tile: 2 cycles both ways.
    # input 4x4, no padding: 2x2 = 4 windows, each with all 27 taps x channels real
    p = conv_params(1, 3, 4, 4, 4, 3, 3)
    w = workload_from_masks("conv2d", "fwd", {"input": np.ones((1, 3, 4, 4), bool),
                                              "weight": np.ones((4, 3, 3, 3), bool)}, p)
    hw = _hw(pe_rows=4, pe_cols=16, sparsity={"kind": "two_sided", "operand": "both"})
    assert hw.compute.tap_padded is False
    assert sparse_pe.op_cost(w, hw, sparse=True).compute_cycles == 2
    assert sparse_pe.op_cost(w, hw.dense(), sparse=False).compute_cycles == 2
    # TensorDash (one-sided) keeps DNNsim's per-tap padding: ceil(round_up(3,16)*9/16) = 9
    td = _hw(pe_rows=4, pe_cols=16)
    assert td.compute.tap_padded is True
    assert sparse_pe.op_cost(w, td.dense(), sparse=False).compute_cycles == 9


def test_dual_sided_all_dense_op_falls_back_with_reason():
    # QA finding: on the dense ResNet-18 trace, sparten_like ran dgrad (grad_output and weight both
    # 100% dense) "sparse" with no fallback; the bitmaps (1 bit per bf16 value, +1/16) pushed a 4 MiB
    # operand past the 4 MiB buffer and the op ran at 0.47x its dense baseline. Like TensorDash, an op
    # with nothing to skip runs dense and says so. 4x8 @ 8x2 dense, lanes 4: 2 cycles either way.
    hw = _hw(lanes=4, pe_rows=2, pe_cols=4, sparsity={"kind": "two_sided", "operand": "both"})
    w = workload_from_masks("matmul", "fwd", {"a": np.ones((4, 8), bool), "b": np.ones((8, 2), bool)})
    c = sparse_pe.op_cost(w, hw, sparse=True)
    assert c.fallback == "both operands dense: nothing to skip" and c.sparse_operand is None
    assert c.compute_cycles == 2 == sparse_pe.op_cost(w, hw.dense(), sparse=False).compute_cycles
    # bytes as the dense baseline moves them: A 4*8*2 = 64, B 8*2*2 = 32 (bf16), no bitmap
    assert {k: int(v.sum()) for k, v in c.tiles.load_bytes.items()} == {"a": 64, "b": 32}


def test_block_used_by_consecutive_waves_is_fetched_once():
    # 2 tiles, 2 row blocks x 3 column blocks, column blocks fastest: units (mi, ni) = (0,0) (0,1) |
    # (0,2) (1,0) | (1,1) (1,2), waves 0,0,1,1,2,2. A blocks 0,0,0,1,1,1: per wave (old rule)
    # units 0, 2, 3, 4 fetch; kept across consecutive waves only units 0 and 3 do (once per block).
    # B blocks 0,1,2,0,1,2: wave 1 reuses B0 from wave 0, wave 2 reuses B2 -> units 0, 1, 2, 4.
    wave = np.array([0, 0, 1, 1, 2, 2])
    a_blk, b_blk = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2])
    assert np.flatnonzero(refetch_by_sorting(wave, a_blk, 2, resident=False)).tolist() == [0, 2, 3, 4]
    assert np.flatnonzero(refetch_by_sorting(wave, a_blk, 2, resident=True)).tolist() == [0, 3]
    assert np.flatnonzero(refetch_by_sorting(wave, b_blk, 3, resident=True)).tolist() == [0, 1, 2, 4]


def test_dual_sided_dgrad_not_slower_than_dense_from_refetching():
    # QA finding (resnet18 swat_u90 on sparten_like, layer1 dgrad): a dense 4 MiB grad_output fit the
    # 4 MiB buffer in the dense baseline but not as a bitmap (+1/16), and was then re-read once per
    # wave: 40 MB instead of 4.25 MB, 0.47x. Scaled down: buffer 64 KiB, A = 8192 x 4 bf16 = 64 KiB
    # dense (fits), 68 KiB as a bitmap (does not); B sparse so the op runs two-sided.
    hw = parse_hw({
        "name": "t", "family": "sparse_pe", "clock": "1 GHz",
        "compute": {"tiles": 4, "pe_rows": 4, "pe_cols": 16, "lanes": 4, "data_type": "bf16"},
        "sparsity": {"kind": "two_sided", "operand": "both"},
        "memory": [{"name": "buffer", "capacity": "64 KiB"}, {"name": "dram", "bandwidth": "100 GB/s"}],
        "storage_format": "bitmap",
    })
    b = np.zeros((4, 64), bool)
    b[::2] = True
    w = workload_from_masks("matmul", "dgrad", {"a": np.ones((8192, 4), bool), "b": b})
    c = sparse_pe.op_cost(w, hw, sparse=True)
    # bitmap A: 32768 values * 16 bits + 32768 bits = 69632 bytes, fetched exactly once
    assert int(c.tiles.load_bytes["a"].sum()) == 69632


def test_chunk_starts_edge_cases():
    # a first wave bigger than the chunk is a chunk alone; zero-byte waves join the open chunk
    assert sparse_pe._chunk_starts(np.array([50, 0, 0, 20, 1]), 20).tolist() == [0, 1, 4]
    assert sparse_pe._chunk_starts(np.zeros(0, np.int64), 20).tolist() == []
    assert sparse_pe._chunk_starts(np.array([3, 4, 5]), 2**61).tolist() == [0]


@pytest.mark.parametrize("hwname", ["tensordash.yaml", "sparten_like.yaml"])
def test_op_cost_same_on_the_numpy_paths_and_the_kernels(hwname, monkeypatch):
    # lane_rows / pair_group_cycles (numpy, no numba) and, past their memory caps, the jitted
    # gather kernels must cost every pass of a random sparse conv identically
    hw = load_hw(ROOT / "hwconfigs" / hwname)
    works, _ = conv_workloads(CONV_CASES[1], dens=(0.3, 0.2, 0.5))
    monkeypatch.setattr(kernels, "pair_blas_limit", lambda: 1 << 62)  # the BLAS pair product
    monkeypatch.setattr(kernels, "_blas_macs", 0)
    fast = [sparse_pe.op_cost(w, hw, sparse=True) for w in works.values()]
    monkeypatch.setattr(kernels, "LANE_ROWS_CAP", 0)
    monkeypatch.setattr(kernels, "pair_blas_limit", lambda: -1)  # the kernel
    works, _ = conv_workloads(CONV_CASES[1], dens=(0.3, 0.2, 0.5))  # fresh memos
    slow = [sparse_pe.op_cost(w, hw, sparse=True) for w in works.values()]
    for f, s in zip(fast, slow):
        assert (f.compute_cycles, f.effectual_macs, f.sparse_operand) == (s.compute_cycles, s.effectual_macs,
                                                                          s.sparse_operand)
        assert np.array_equal(f.tiles.compute_cycles, s.tiles.compute_cycles)
