"""The re-laid-out operand sources of the kernels' views, packed straight into word buffers, equal
the plain construction (pad, transpose, pack_words, one spare zero word)."""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.sim import kernels as K
from accelsim.sim.workload import conv_params, synthetic_workload
from accelsim.trace.format import pack_words


def plain_packed(x: np.ndarray) -> np.ndarray:
    return np.concatenate([pack_words(np.asarray(x) != 0), np.zeros(1, np.uint64)])


@pytest.mark.parametrize("shape", [(1,), (63,), (64,), (65,), (3, 64), (2, 5, 7), (0,), (4, 0, 3)])
def test_packed_equals_pack_words_plus_a_spare_word(shape):
    rng = np.random.default_rng(len(shape) * 100 + sum(shape))
    x = rng.random(shape) < 0.4
    for v in (x, x.astype(np.uint8) * 3, np.swapaxes(x, 0, -1)):
        got = K._packed(v)
        assert got.dtype == np.uint64 and got.tolist() == plain_packed(v).tolist()


@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1), ((2, 3), (2, 1)), (3, 2), ((1, 2), (0, 3))])
def test_wgrad_input_source_equals_the_padded_phase_split_copy(stride, padding):
    # layout C, phase, N, Hp, W' (W' = ceil(Wp / sw)): the input zero-padded, its columns split
    # into sw phases (padded column w = w' * sw + phase), as _build_operand_view documents
    n, c, h, w = 2, 3, 7, 8
    p = conv_params(n, c, h, w, 4, 3, 3, stride=stride, padding=padding)
    rng = np.random.default_rng(5)
    x = rng.random((n, c, h, w)) < 0.5
    work = synthetic_workload("conv2d", "wgrad", {"input": x, "grad_output": np.ones(
        (n, 4, p["output_shape"][2], p["output_shape"][3]), bool)}, p)
    geo = work.conv
    (ph, pw), (_, sw) = geo.padding, geo.stride
    hp, wp = h + 2 * ph, w + 2 * pw
    wq = -(-wp // sw)
    xs = np.zeros((n, c, hp, wq * sw), dtype=bool)
    xs[:, :, ph:ph + h, pw:pw + w] = x
    want = plain_packed(xs.reshape(n, c, hp, wq, sw).transpose(1, 4, 0, 2, 3))
    assert K.operand_view(work, "a").src.tolist() == want.tolist()


def _matrix_cases():
    from test_workload import CONV_CASES, conv_workloads

    rng = np.random.default_rng(11)
    out = []
    for i, case in enumerate(CONV_CASES):
        works, _ = conv_workloads(case, seed=i)
        out += list(works.values())
    for m, k, n in ((5, 7, 3), (70, 130, 9), (64, 64, 64), (3, 200, 129)):  # K < 16 is re-laid out too
        a, b = rng.random((m, k)) < 0.5, rng.random((k, n)) < 0.5
        for ta in (False, True):
            for tb in (False, True):
                shapes = {"a": a.T if ta else a, "b": b.T if tb else b}
                out.append(synthetic_workload("matmul", "fwd", {nm: np.ascontiguousarray(v) for nm, v in shapes.items()},
                                              transposed={"a": ta, "b": tb}))
    a, b = rng.random((3, 6, 20)) < 0.5, rng.random((3, 20, 5)) < 0.5
    out.append(synthetic_workload("bmm", "fwd", {"a": a, "b": b}))
    out.append(synthetic_workload("bmm", "fwd", {"a": np.ascontiguousarray(a.transpose(0, 2, 1)), "b": b},
                                  transposed={"a": True}))
    return out


def test_transposed_sources_equal_the_packed_numpy_layout():
    # every operand the bit-matrix transposes re-lay out must equal the inflated mask's strided
    # copy (the (G, rows, K) matrix of gemm_side_matrix) packed
    seen = 0
    for work in _matrix_cases():
        for side in ("a", "b"):
            got = K._transposed_src(work, side)
            if got is None:
                continue
            seen += 1
            assert got.tolist() == plain_packed(K.gemm_side_matrix(work, side)).tolist(), (work.op.kind, work.pass_, side)
    assert seen >= 40


@pytest.mark.parametrize("case", range(5))
def test_fwd_input_source_is_the_padded_nhwc_input(case):
    from test_workload import CONV_CASES, conv_workloads

    works, _ = conv_workloads(CONV_CASES[case], seed=case)
    work = works["fwd"]
    x = work.mask("input")
    n, c, h, w = x.shape
    (ph, pw) = work.conv.padding
    xp = np.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=bool)
    xp[:, ph:ph + h, pw:pw + w, :] = x.transpose(0, 2, 3, 1)
    assert K.operand_view(work, "a").src.tolist() == plain_packed(xp).tolist()
