"""Numba kernels vs brute force over explicit im2col (tests/test_workload.py::ref_gemm)."""

from __future__ import annotations

import numpy as np
import pytest

from td_reference import td_reference
from accelsim.sim import kernels as K
from accelsim.sim.workload import conv_params
from accelsim.sim.workload import synthetic_workload as workload_from_masks
from test_workload import CONV_CASES, conv_workloads, ref_gemm


def _matmul_works(seed=0):
    rng = np.random.default_rng(seed)
    return [
        workload_from_masks("matmul", "fwd", {"a": rng.random((9, 37)) < .5, "b": rng.random((5, 37)) < .3},
                            transposed={"b": True}),
        workload_from_masks("bmm", "fwd", {"a": rng.random((3, 6, 10)) < .5, "b": rng.random((3, 10, 7)) < .6}),
    ]


def _all_works():
    out = []
    for i, case in enumerate(CONV_CASES):
        works, _ = conv_workloads(case, seed=i)
        out += list(works.values())
    return out + _matmul_works()


@pytest.mark.parametrize("idx", range(len(CONV_CASES) * 3 + 2))
def test_counts_and_views_match_im2col(idx):
    work = _all_works()[idx]
    A, B = ref_gemm(work)
    # effectual (both non-zero) and one-sided counts
    assert K.effectual_macs(work) == int(np.einsum("gmk,gkn->", A, B))
    assert K.one_sided_macs(work, "a") == int(A.sum()) * work.n
    assert K.one_sided_macs(work, "b") == int(B.sum()) * work.m
    # operand views reproduce every row of A and column of B, without padding lanes ...
    for side, ref in (("a", A), ("b", np.swapaxes(B, 1, 2))):
        v = K.operand_view(work, side)
        got = v.bits()[v.base[:, None] + v.off[None, :]].reshape(ref.shape)
        assert np.array_equal(got, ref)
        # ... and laid out in 16-lane rows (padding lanes are -1 and hold nothing)
        v16 = K.operand_view(work, side, lanes=16)
        assert v16.off.size % 16 == 0
        real = v16.off >= 0
        got16 = v16.bits()[v16.base[:, None] + np.where(real, v16.off, 0)[None, :]] * real
        assert np.array_equal(got16[:, real].reshape(ref.shape), ref)
        assert got16.sum() == ref.sum()


def test_fwd_lane_layout_pads_each_tap():
    # C=3 channels, 3x3 kernel: each of the 9 taps gets its own 16-lane row (DNNsim:
    # ceil(round_up(C,16)*Kx*Ky/16) = 9 rows), lanes 3..15 of every row are padding
    p = conv_params(1, 3, 5, 5, 2, 3, 3, padding=1)
    w = workload_from_masks("conv2d", "fwd", {"input": np.ones((1, 3, 5, 5), bool),
                                              "weight": np.ones((2, 3, 3, 3), bool)}, p)
    v = K.operand_view(w, "a", lanes=16)
    assert v.off.size == 9 * 16
    assert (v.off.reshape(9, 16)[:, 3:] == -1).all() and (v.off.reshape(9, 16)[:, :3] >= 0).all()


def test_nm_compliance_transposed_use():
    # weight 2:4 along C (channels 0,1 of 4 kept in every filter, as ASP/SR-STE make it): fully 2:4
    # along the fwd reduction (r, s, c). In dgrad the reduction runs over the K=8 filters: per column
    # (c, r, s) two groups of 4 filters; columns with c in {0,1} hold 4 non-zeros per group (fail),
    # c in {2,3} hold none (pass) -> exactly half of the groups comply.
    wt = np.zeros((8, 4, 3, 3), bool)
    wt[:, :2] = True
    p = conv_params(2, 4, 6, 6, 8, 3, 3, padding=1)
    x = np.ones((2, 4, 6, 6), bool)
    dy = np.ones((2, 8, 6, 6), bool)
    fwd = workload_from_masks("conv2d", "fwd", {"input": x, "weight": wt}, p)
    dg = workload_from_masks("conv2d", "dgrad", {"grad_output": dy, "weight": wt}, p)
    assert K.nm_compliance(fwd, "weight", 2, 4) == 1.0
    assert K.nm_compliance(dg, "weight", 2, 4) == 0.5
    # a dense input: no group of 4 channels of a real pixel complies; the padding taps do.
    # fwd windows 2*6*6=72 rows, each 9 taps x 1 group: padded taps per window = 9 - valid taps;
    # valid taps over all windows = 2 * (sum over p of valid r)^2 = 2 * (2+3+3+3+3+2)^2 = 512
    assert K.nm_compliance(fwd, "input", 2, 4) == pytest.approx((72 * 9 - 512) / (72 * 9))


@pytest.mark.parametrize("idx", range(len(CONV_CASES) * 3 + 2))
def test_nm_compliance_matches_brute_force(idx):
    work = _all_works()[idx]
    A, B = ref_gemm(work)
    for side, rows in (("a", A), ("b", np.swapaxes(B, 1, 2))):
        r = rows.reshape(-1, rows.shape[-1])
        kk = r.shape[1]
        pad = np.full((r.shape[0], -(-kk // 4) * 4), 9, np.int64)  # a short last group never complies
        pad[:, :kk] = r
        groups = pad.reshape(r.shape[0], -1, 4).sum(axis=2)
        assert K.nm_compliance(work, side, 2, 4) == pytest.approx((groups <= 2).mean())


def test_td_candidates_t_shape():
    h, d = K.td_candidates(2, 5, "T")
    # docs/sources.md "SWAT's accelerator: TensorDash" (H=2, D=5): (1,0),(2,0),(1,+1),(1,-1),(2,+2),(2,-2),(1,+3)
    assert list(zip(h.tolist(), d.tolist())) == [(1, 0), (2, 0), (1, 1), (1, -1), (2, 2), (2, -2), (1, 3)]
    assert K.td_candidates(0, 5)[0].size == 0


def _bits(s: str) -> int:  # "1010" -> lane 0 is the first character
    return sum(1 << i for i, ch in enumerate(s) if ch == "1")


def _sched(rows, lanes=4, H=2, D=5):
    h, d = K.td_candidates(H, D, "T")
    buf = np.array([_bits(r) for r in rows], np.int64)
    return K.td_schedule(buf, len(rows), lanes, H, h, d)


def test_td_schedule_hand_worked():
    # 4 lanes, H=2, D=5 (T). Worked by hand:
    # cycle 1 (t=0, row 1010): lane1 <- (1,0) = row1 lane1; lane3 <- (2,0) = row2 lane3; row 1 is now
    #   empty -> skipped; row2 left as 1000.
    # cycle 2 (t=2, row 1000): lanes 1,2,3 <- (2,0) from row4 (1111 -> 1000); row 3 (0000) skipped.
    # cycle 3 (t=4, row 1000): nothing left to promote. 3 cycles for 5 dense rows (9 non-zeros:
    # ideal ceil(9/4) = 3).
    assert _sched(["1010", "0100", "1001", "0000", "1111"]) == 3
    # lookaside: the empty lane 0 takes (1,+1), emptying row 1
    assert _sched(["0111", "0100"]) == 1
    # an all-zero stream still costs one cycle per H+1 rows: ceil(7/3) = 3
    assert _sched(["0000"] * 7) == 3
    # no lookahead: no promotion and no skipping -> dense
    assert _sched(["0000", "0001", "0000"], H=0, D=0) == 3
    # a full stream cannot be compressed
    assert _sched(["1111"] * 4) == 4


def test_td_never_more_than_h_plus_1():
    rng = np.random.default_rng(7)
    h, d = K.td_candidates(2, 5, "T")
    for trial in range(300):
        n = int(rng.integers(1, 40))
        dens = rng.random()
        rows = (rng.random((n, 16)) < dens)
        buf = (rows * (1 << np.arange(16))).sum(axis=1).astype(np.int64)
        nnz = int(rows.sum())
        c = K.td_schedule(buf.copy(), n, 16, 2, h, d)
        assert -(-n // 3) <= c <= n  # at most (H+1)x = 3x faster, never slower than dense
        assert c >= -(-nnz // 16)  # never beats the ideal (all lanes busy)


def _td_reference(rows, lanes, H, ch, cd):
    return td_reference(rows, lanes, H, ch, cd)[0]  # cycles only


@pytest.mark.parametrize("search", ["T", "full"])
def test_td_schedule_matches_plain_reference(search):
    # td_schedule visits only lanes that can reach a candidate; it must equal the plain loop
    rng = np.random.default_rng(5)
    for H, D in ((2, 5), (1, 2), (3, 3)):
        h, d = K.td_candidates(H, D, search)
        for _ in range(150):
            n, lanes = int(rng.integers(1, 30)), int(rng.choice([4, 13, 16]))
            rows = (rng.random((n, lanes)) < rng.random()) * (1 << np.arange(lanes))
            buf = rows.sum(axis=1).astype(np.int64)
            assert K.td_schedule(buf.copy(), n, lanes, H, h, d) == _td_reference(buf, lanes, H, h, d)


def test_td_stream_cycles_matches_rows():
    works, _ = conv_workloads(CONV_CASES[0], seed=3)
    w = works["fwd"]
    A, _ = ref_gemm(w)
    v = K.operand_view(w, "a", lanes=16)
    h, d = K.td_candidates(2, 5)
    got = K.td_stream_cycles(v.src, v.base, *v.runs, v.off.size, 16, 2, h, d)
    cg = w.conv.c
    taps = w.conv.r * w.conv.s
    for i in range(A.shape[1]):
        rows = A[0, i].reshape(taps, cg)  # (r, s) taps, channels fastest; C=4 -> one row per tap
        buf = (rows * (1 << np.arange(cg))).sum(axis=1).astype(np.int64)
        assert got[i] == K.td_schedule(buf, taps, 16, 2, h, d)


@pytest.mark.parametrize("idx", [0, 1, 5, 8, 13, 15, 16])
def test_pair_group_work_matches_brute_force(idx):
    work = _all_works()[idx]
    A, B = ref_gemm(work)
    gm, gn, lanes = 4, 3, 2
    va, vb = K.operand_view(work, "a"), K.operand_view(work, "b")
    cyc, eff = K.pair_group_work(va.src, va.base, va.runs, vb.src, vb.base, vb.runs, work.k, work.m,
                                 work.n, work.groups, gm, gn, lanes)
    pairs = np.einsum("gmk,gkn->gmn", A, B)
    assert eff == int(pairs.sum())
    for g in range(work.groups):
        for mi in range(cyc.shape[1]):
            for ni in range(cyc.shape[2]):
                blk = pairs[g, mi * gm:(mi + 1) * gm, ni * gn:(ni + 1) * gn]
                assert cyc[g, mi, ni] == -(-int(blk.max()) // lanes)


def test_nm_fraction_along_is_the_same_counter_as_nm_compliance():
    # rows of a (M=2, K=6), groups of 4 along K; the last group has only 2 elements, and a group
    # shorter than m is never N:M (no n-of-m compressed form exists for it):
    # row 0: [1,1,1,0] 3 nnz > 2 fails, [1,0] short; row 1: [1,0,0,0] ok, [1,1] short -> 1/4
    from accelsim.sim.kernels import nm_fraction_along

    a = np.array([[1, 1, 1, 0, 1, 0], [1, 0, 0, 0, 1, 1]], bool)
    b = np.ones((6, 3), bool)
    w = workload_from_masks("matmul", "fwd", {"a": a, "b": b})
    assert nm_fraction_along(a, 2, 4, axis=1) == 0.25 == K.nm_compliance(w, "a", 2, 4)
    # along the other axis: 6 columns of 2 elements each, every group shorter than 4 -> 0
    assert nm_fraction_along(a, 2, 4, axis=0) == 0.0 and nm_fraction_along(a, 1, 2, axis=0) == 4 / 6
    # m = 2 along axis 0: column nnz 2,1,1,0,2,1; with n=1 columns 0 and 4 fail -> 4/6 (above)


@pytest.mark.parametrize("cap", [None, 0])
def test_nm_numpy_counts_equal_the_packed_word_kernel(cap, monkeypatch):
    # nm_compliance counts with numpy (_nm_numpy: window weights where groups stay in one pixel /
    # output row, an im2col otherwise) and falls back to _nm_groups over the operand view; both
    # must give the same (compliant, total) on every conv case (strides, dilation, padding, groups,
    # C = 3 and Q = 5 so that groups straddle taps and rows) and matmul, for odd and even m.
    # cap=0: no im2col may be built, the straddling cases take the kernel.
    if cap is not None:
        monkeypatch.setattr(K, "IM2COL_CAP", cap)
    fell_back = 0
    # plus cases with Q % 4 == 0 (wgrad groups inside output rows): 1x1 stride 1 (the input
    # itself), 3x3 padded, strided
    extra = [(2, 8, 4, 8, 4, 1, 1, 1, 0, 1, 1), (1, 4, 5, 8, 4, 3, 3, 1, 1, 1, 1), (2, 6, 6, 8, 4, 3, 3, 2, 1, 1, 2)]
    works = _all_works() + [w for i, c in enumerate(extra) for w in conv_workloads(c, seed=10 + i)[0].values()]
    for work in works:
        for side in ("a", "b"):
            v = K.operand_view(work, side)
            for n, m in [(2, 4), (1, 4), (3, 8), (1, 2), (1, 3), (2, 5)]:
                got = K._nm_numpy(work, side, n, m)
                want = K.nm_groups(v.src, v.base, *v.runs, v.off.size, n, m)
                fell_back += got is None
                if got is not None:
                    assert tuple(got) == tuple(int(x) for x in want), (work.kind, work.pass_, side, n, m)
    assert (fell_back > 0) == (cap == 0)
    # the packed-word layout counts as nm_fraction_along's numpy counter does along a plain axis
    x = np.random.default_rng(3).random((12, 22)) < 0.4  # 22: a short last group per row
    src = K._packed(x)
    src.flags.writeable = False
    ok, total = K.nm_groups(src, np.arange(12, dtype=np.int64) * 22, *K._runs(np.arange(22, dtype=np.int64)), 22,
                            2, 4)
    assert 0 < ok < total == 12 * 6
    assert K.nm_fraction_along(x.reshape(12, 22, 1), 2, 4, axis=1) == ok / total == K.nm_fraction_along(
        x, 2, 4, axis=-1) == K.nm_fraction_along(np.ascontiguousarray(x.T), 2, 4, axis=0)


def test_nm_short_reduction_is_not_compliant():
    # a depthwise 3x3 conv's dgrad reduces over K/g = 1 filter, its fwd over (r, s, c) = 9 taps:
    # with groups of 4, dgrad has one group of 1 element per row (never 2:4, even if it is zero);
    # fwd has groups [4, 4, 1]: per row at most 2 full groups of 3 can comply.
    p = conv_params(1, 4, 4, 4, 4, 3, 3, padding=1, groups=4)
    w = np.zeros((4, 1, 3, 3), bool)
    w[:, 0, 0, :2] = True  # taps (0,0) and (0,1) of every filter
    dy = np.zeros((1, 4, 4, 4), bool)
    dg = workload_from_masks("conv2d", "dgrad", {"grad_output": dy, "weight": w}, p)
    assert (dg.k, dg.groups) == (1, 4)
    assert K.nm_compliance(dg, "a", 2, 4) == 0.0 and K.nm_compliance(dg, "weight", 2, 4) == 0.0
    fwd = workload_from_masks("conv2d", "fwd", {"input": np.zeros((1, 4, 4, 4), bool), "weight": w}, p)
    # weight columns (one per filter): taps 0..3 hold 2 nnz (ok), 4..7 hold 0 (ok), tap 8 short
    assert fwd.k == 9 and K.nm_compliance(fwd, "weight", 2, 4) == pytest.approx(2 / 3)
    # a reduction that is a multiple of m has no short group: 1:1 (m=1) is always met
    assert K.nm_compliance(fwd, "weight", 1, 1) == 1.0


def test_runs_split_offsets_into_consecutive_bit_runs():
    # offsets 10,11,12 | pad | 20,21 | 30 (not 22: a new run) -> runs (k, off, len):
    # (0,10,3), (4,20,2), (6,30,1)
    off = np.array([10, 11, 12, -1, 20, 21, 30], np.int64)
    k, o, n = K._runs(off)
    assert (k.tolist(), o.tolist(), n.tolist()) == ([0, 4, 6], [10, 20, 30], [3, 2, 1])
    # a run never crosses k = 64: 70 consecutive offsets -> lengths 64 and 6
    k, o, n = K._runs(np.arange(100, 170, dtype=np.int64))
    assert (k.tolist(), o.tolist(), n.tolist()) == ([0, 64], [100, 164], [64, 6])


def test_bits_at_reads_across_word_boundaries():
    from accelsim.trace.format import pack_words

    bits = np.zeros(192, bool)
    bits[[60, 62, 63, 64, 66, 127, 128]] = True
    w = np.concatenate([pack_words(bits), np.zeros(1, np.uint64)])  # spare word, as _packed
    # bits 60..67 = 1,0,1,1,1,0,1,0 -> 0b01011101 = 0x5D
    assert int(K._bits_at(w, 60, 8)) == 0x5D
    assert int(K._bits_at(w, 127, 2)) == 0b11 and int(K._bits_at(w, 64, 1)) == 1
    assert int(K._bits_at(w, 0, 64)) == (1 << 60) | (1 << 62) | (1 << 63)
    assert int(K._popcount64(K._bits_at(w, 59, 64))) == 5  # bits 59..122 hold 60, 62, 63, 64, 66


def test_views_are_bit_packed_words():
    # a conv fwd input view holds the padded NHWC input packed 64 per word (+1 spare word):
    # N=2, C=4, 6x5 padded by 1 -> 2*4*8*7 = 448 bits = 7 words + 1
    works, _ = conv_workloads(CONV_CASES[0], seed=0)
    v = K.operand_view(works["fwd"], "a")
    assert v.src.dtype == np.uint64 and v.src.size == 448 // 64 + 1
    # the 3 taps (r, 0..2) of a kernel row are 3*C = 12 consecutive NHWC bits: 3 runs; in 16-lane
    # rows each tap's 4 channels are followed by 12 padding lanes: 9 runs of 4
    assert v.run_len.tolist() == [12] * 3 and v.run_k.tolist() == [0, 12, 24]
    v16 = K.operand_view(works["fwd"], "a", lanes=16)
    assert v16.run_len.tolist() == [4] * 9 and v16.run_k.tolist() == list(range(0, 144, 16))


@pytest.mark.parametrize("m,lanes", [(3, 12), (5, 10), (16, 16)])
def test_odd_group_sizes_and_lanes_match_brute_force(m, lanes):
    # groups of m and lane rows that straddle 64-bit words of the gathered row
    rng = np.random.default_rng(11)
    p = conv_params(1, 40, 5, 5, 3, 3, 3, padding=1)
    x = rng.random((1, 40, 5, 5)) < .4
    w = workload_from_masks("conv2d", "fwd", {"input": x, "weight": rng.random((3, 40, 3, 3)) < .5}, p)
    A, _ = ref_gemm(w)
    r = A[0]
    kk = r.shape[1]  # 360
    pad = np.full((r.shape[0], -(-kk // m) * m), 9, np.int64)  # a short last group never complies
    pad[:, :kk] = r
    assert K.nm_compliance(w, "a", 1, m) == pytest.approx((pad.reshape(r.shape[0], -1, m).sum(2) <= 1).mean())
    v = K.operand_view(w, "a", lanes=lanes)
    h, d = K.td_candidates(2, 5)
    got = K.td_stream_cycles(v.src, v.base, *v.runs, v.off.size, lanes, 2, h, d)
    real = v.off >= 0
    for i in range(r.shape[0]):
        row = np.zeros(v.off.size, np.int64)
        row[real] = r[i]
        buf = (row.reshape(-1, lanes) * (1 << np.arange(lanes))).sum(axis=1).astype(np.int64)
        assert got[i] == K.td_schedule(buf, buf.size, lanes, 2, h, d)


def test_views_and_counts_are_memoised_per_workload_read_only():
    # an op's sparse and dense-baseline costs share one view per (side, lanes) and one set of
    # factor counts; the memo lives on that Workload only, and shared arrays cannot be written
    a = np.array([[1, 1, 0, 0, 1, 1, 1, 0]], bool)  # groups of 4: {1,1,0,0} is 2:4, {1,1,1,0} is not
    b = np.ones((8, 2), bool)
    w = workload_from_masks("matmul", "fwd", {"a": a, "b": b})
    v = K.operand_view(w, "a")
    assert K.operand_view(w, "a") is v and K.operand_view(w, "a", lanes=16) is not v
    with pytest.raises(ValueError):
        v.base[0] = 1
    assert K.factor_counts(w) is K.factor_counts(w) and K.effectual_macs(w) == 5 * 2
    assert K.nm_compliance(w, "a", 2, 4) == 0.5 == K.nm_compliance(w, "a", 2, 4)
    w2 = workload_from_masks("matmul", "fwd", {"a": ~a, "b": b})  # another op: its own memo
    assert K.operand_view(w2, "a") is not v and K.nm_compliance(w2, "a", 2, 4) == 1.0


def test_gpu_and_systolic_runs_import_no_numba():
    # speed (benchmarks/bench_speed.py): importing numba and loading its target costs ~0.3 s a
    # process; kernels are jitted on first call and N:M counts and short replays need none, so
    # simulating a trace on a GPU or systolic file never imports numba
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    code = ("import sys\nfrom accelsim.hw import load_hw\nfrom accelsim.sim.engine import simulate\n"
            "for hw in ('a100_24', 'systolic_128_nm'):\n"
            "    simulate('traces/resnet18_cifar_srste_2of4.npz', load_hw(hw))\n"
            "print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------------------------
# numpy fast paths (no numba) == the jitted word kernels they stand in for
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("idx", range(len(CONV_CASES) * 3 + 2))
def test_side_matrix_is_the_im2col_operand(idx):
    work = _all_works()[idx]
    A, B = ref_gemm(work)
    assert np.array_equal(K.side_matrix(work, "a"), A)
    assert np.array_equal(K.side_matrix(work, "b"), np.swapaxes(B, 1, 2))


def _view_rows(v: K.OperandView, lanes: int) -> np.ndarray:
    """Lane rows of every stream of a lanes-laid-out view, read bit by bit (the reference)."""
    real = v.off >= 0
    bits = v.bits()[v.base[:, None] + np.where(real, v.off, 0)[None, :]] * real
    return (bits.reshape(v.base.size, -1, lanes).astype(np.int64) << np.arange(lanes)).sum(axis=2)


@pytest.mark.parametrize("idx", range(len(CONV_CASES) * 3 + 2))
def test_lane_rows_equal_the_gathered_streams(idx):
    # lane_rows (numpy) must hold exactly the rows td_stream_cycles gathers from the view, for
    # 3, 8, 13, 16 and 24 lanes (each packing path: along a short axis, flat, rows padded to whole
    # bytes, 3-byte rows; per-tap padding of a fwd conv operand, end padding otherwise); the
    # scheduler then gives the same cycles on both
    work = _all_works()[idx]
    h, d = K.td_candidates(2, 5)
    for lanes in (3, 8, 13, 16, 24):
        for side in ("a", "b"):
            v = K.operand_view(work, side, lanes=lanes)
            rows = K.lane_rows(work, side, lanes)
            assert rows.dtype == np.int64 and np.array_equal(rows, _view_rows(v, lanes))
            old = K.td_stream_cycles(v.src, v.base, *v.runs, v.off.size, lanes, 2, h, d)
            assert np.array_equal(K.td_rows_cycles(rows, lanes, 2, h, d), old)


def test_lane_rows_random_sparse_conv_fwd_matches_kernel():
    # a larger random case (channel runs longer than the lanes, stride 2, padding 1) at 80% sparsity
    p = conv_params(2, 40, 9, 9, 24, 3, 3, stride=2, padding=1)
    rng = np.random.default_rng(11)
    masks = {"input": rng.random((2, 40, 9, 9)) < 0.2, "weight": rng.random((24, 40, 3, 3)) < 0.2}
    work = workload_from_masks("conv2d", "fwd", masks, p)
    h, d = K.td_candidates(2, 5)
    for side in ("a", "b"):
        v = K.operand_view(work, side, lanes=16)
        old = K.td_stream_cycles(v.src, v.base, *v.runs, v.off.size, 16, 2, h, d)
        assert np.array_equal(K.td_rows_cycles(K.lane_rows(work, side, 16), 16, 2, h, d), old)


def test_td_schedule_modifies_rows_in_place():
    # td_schedule is one stream of td_rows_cycles on a view: the claimed bits are cleared in `rows`
    h, d = K.td_candidates(2, 5, "T")
    buf = np.array([0b0101, 0b0010, 0b1000], np.int64)  # lane 1 <- (1,0): row 1 emptied
    assert K.td_schedule(buf, 3, 4, 2, h, d) == 1
    assert buf[1] == 0


@pytest.mark.parametrize("idx", range(len(CONV_CASES) * 3 + 2))
def test_pair_blas_equals_the_kernel(idx, monkeypatch):
    # the BLAS product must give the word-popcount kernel's cycles and pair count exactly, with
    # lockstep groups that do and do not divide M and N, and with A cut into several products
    work = _all_works()[idx]
    for gm, gn, lanes in ((4, 3, 2), (16, 4, 16), (1, 1, 1), (5, 7, 3)):
        want = K._pair_group_kernel(work, gm, gn, lanes)
        got = K._pair_blas(work, gm, gn, lanes)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1]
        monkeypatch.setattr(K, "PAIR_CHUNK", 1)  # one row block per product
        got = K._pair_blas(work, gm, gn, lanes)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1]
        monkeypatch.undo()


def test_pair_blas_random_sparse_conv_equals_the_kernel():
    p = conv_params(2, 40, 9, 9, 24, 3, 3, stride=2, padding=1)
    rng = np.random.default_rng(12)
    masks = {"input": rng.random((2, 40, 9, 9)) < 0.2, "weight": rng.random((24, 40, 3, 3)) < 0.2}
    work = workload_from_masks("conv2d", "fwd", masks, p)
    want, got = K._pair_group_kernel(work, 16, 4, 16), K._pair_blas(work, 16, 4, 16)
    assert np.array_equal(got[0], want[0]) and got[1] == want[1]


def test_pair_group_cycles_picks_blas_until_the_kernel_is_loaded_or_the_budget_is_spent(monkeypatch):
    work = _all_works()[0]  # 32-bit-free sizes: macs = g*m*n*k
    macs = work.groups * work.m * work.n * work.k
    calls = []
    blas, kern = K._pair_blas, K._pair_group_kernel
    monkeypatch.setattr(K, "_pair_blas", lambda *a: calls.append("blas") or blas(*a))
    monkeypatch.setattr(K, "_pair_group_kernel", lambda *a: calls.append("kernel") or kern(*a))
    monkeypatch.setattr(K, "_blas_macs", 0)
    monkeypatch.setattr(K, "pair_blas_limit", lambda: 2 * macs)
    for _ in range(3):  # two products fit the budget, the third goes to the kernel
        K.pair_group_cycles(work, 4, 3, 2)
    assert calls == ["blas", "blas", "kernel"] and K._blas_macs == 2 * macs
    calls.clear()
    monkeypatch.setattr(K, "_blas_macs", 0)
    monkeypatch.setattr(K, "PAIR_MATRIX_CAP", 0)  # past the memory cap
    K.pair_group_cycles(work, 4, 3, 2)
    monkeypatch.setattr(K, "PAIR_MATRIX_CAP", 1 << 27)
    monkeypatch.setattr(K, "pair_blas_limit", lambda: -1)  # the kernel already paid for
    K.pair_group_cycles(work, 4, 3, 2)
    assert calls == ["kernel", "kernel"]


def test_pair_blas_restores_the_blas_thread_count():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("numpy's BLAS is not one threadpoolctl can control")
    K._pair_blas(_all_works()[0], 4, 3, 2)
    assert blas_threads() == before
    with pytest.raises(ZeroDivisionError), K._one_blas_thread():
        assert blas_threads() == [1] * len(before)
        1 / 0
    assert blas_threads() == before


def test_nm_count_of_a_transposed_view_equals_the_contiguous_copy():
    # _nm_count reads a permuted view in memory order instead of copying it; the groups along the
    # axis are the same, so every count must equal the copy's (a wgrad operand is such a view)
    from accelsim.sim.kernels import _nm_count

    rng = np.random.default_rng(7)
    x = rng.random((37, 13, 10)) < 0.45
    for perm in [(1, 0, 2), (2, 1, 0), (0, 2, 1), (2, 0, 1)]:
        v = x.transpose(perm)
        for axis in range(3):
            for n, m in ((2, 4), (1, 2), (3, 8), (2, 3)):
                assert _nm_count(v, axis, n, m) == _nm_count(np.ascontiguousarray(v), axis, n, m)
    # a hand-checked case: columns of a 2 x 8 matrix's transpose, groups of 4 down each column
    a = np.array([[1, 1, 1, 0, 0, 0, 0, 1], [1, 0, 0, 0, 1, 1, 1, 1]], bool)
    # a.T is 8 x 2; along axis 0 each column has 2 groups: col0 (1,1,1,0) 3 nz, (0,0,0,1) 1 nz;
    # col1 (1,0,0,0) 1 nz, (1,1,1,1) 4 nz -> 2 of 4 groups hold <= 2 non-zeros
    assert _nm_count(a.T, 0, 2, 4) == (2, 4)


@pytest.mark.parametrize("fill", [True, False])
@pytest.mark.parametrize("kind,shapes,transposed", [
    ("matmul", {"a": (6, 10), "b": (10, 7)}, {}),
    ("matmul", {"a": (10, 6), "b": (7, 10)}, {"a": True, "b": True}),  # stored transposed
    ("bmm", {"a": (3, 5, 9), "b": (3, 9, 4)}, {}),
])
def test_nm_compliance_of_an_all_dense_or_all_zero_operand_needs_no_mask(kind, shapes, transposed, fill):
    # dense / all-zero matmul operands are counted from the shape alone; the counts must equal the
    # inflated mask's (K = 10 or 9: a short last group, never compliant)
    from accelsim.sim.kernels import _nm_count, nm_compliance
    from accelsim.sim.workload import synthetic_workload

    masks = {nm: np.full(s, fill) for nm, s in shapes.items()}
    for n, m in ((2, 4), (1, 2), (3, 8)):
        w = synthetic_workload(kind, "fwd", masks, transposed=transposed)
        for side in ("a", "b"):
            got = nm_compliance(w, side, n, m)
            assert ("bits", side) not in w.memo()  # no mask was inflated
            u = w.used_mask(side)
            ok, total = _nm_count(u, u.ndim - 1 if side == "a" else u.ndim - 2, n, m)
            assert got == (ok / total if total else 1.0)
    # hand-worked: a (6, 10) all-zero A along K = 10 in groups of 4: 2 full groups (compliant) and one
    # short group of 2 (not) per row -> 2/3
    w = synthetic_workload("matmul", "fwd", {"a": np.zeros((6, 10), bool), "b": np.ones((10, 7), bool)})
    assert nm_compliance(w, "a", 2, 4) == pytest.approx(2 / 3) and nm_compliance(w, "b", 2, 4) == 0.0
