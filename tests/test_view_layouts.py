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
