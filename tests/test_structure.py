"""structure.compact: SSL-style all-zero weight rows/columns deleted as a smaller dense GEMM
(docs/sources.md "SSL": filter-wise groups = whole filters, shape-wise = whole (c,r,s) taps)."""

from fractions import Fraction

import numpy as np

from accelsim.sim.structure import compact
from accelsim.sim.workload import conv_params
from accelsim.sim.workload import synthetic_workload as workload_from_masks

# conv: N=1, C=3, 6x6, K=4 filters, 3x3, pad 1 -> P=Q=6: fwd GEMM M=36, N=4, K=3*9=27
P = conv_params(1, 3, 6, 6, 4, 3, 3, padding=1)
ROLES = {"weight": "weight"}


def ssl_weight() -> np.ndarray:
    """2 of 4 filters (1, 3) and a third of the 27 taps (channel 2: 9 taps) all zero."""
    w = np.ones((4, 3, 3, 3), bool)
    w[[1, 3]] = False
    w[:, 2] = False
    return w


def unstructured_weight() -> np.ndarray:
    """The same density (36 of 108) with every filter and every tap keeping a non-zero: filter f keeps
    taps t with (t + f) % 3 == 0 (9 per filter; tap t is kept by the filters f = -t mod 3)."""
    t, f = np.meshgrid(np.arange(27), np.arange(4))
    return ((t + f) % 3 == 0).reshape(4, 3, 3, 3)


def fwd(w, groups=1, c=3):
    p = conv_params(1, c, 6, 6, 4, 3, 3, padding=1, groups=groups)
    return workload_from_masks("conv2d", "fwd", {"input": np.ones((1, c, 6, 6), bool), "weight": w}, p, roles=ROLES)


def dgrad(w):
    return workload_from_masks("conv2d", "dgrad", {"grad_output": np.ones((1, 4, 6, 6), bool), "weight": w}, P,
                               roles=ROLES)


def test_fwd_filters_shrink_n_taps_shrink_k():
    c = compact(fwd(ssl_weight()))
    assert c.full == (36, 4, 27) and c.kept == ((36, 2, 18),) and c.uniform == (36, 2, 18)
    assert c.operand == "weight" and c.act == "input" and c.act_kept == (Fraction(2, 3),)  # channel 2 unread
    assert c.note == "weight: 2 of 4 filters and 9 of 27 (c,r,s) taps all zero: GEMM N 4->2, K 27->18"
    assert (c.operand_elems("a"), c.operand_elems("b"), c.operand_elems("c")) == (36 * 18, 18 * 2, 36 * 2)


def test_unstructured_same_density_is_not_compacted():
    w = unstructured_weight()
    assert w.sum() == ssl_weight().sum() == 36
    assert compact(fwd(w)) is None and compact(dgrad(w)) is None


def test_dgrad_uses_the_transposed_roles():
    # dgrad B = W^T: N = (c,r,s) taps, reduction K = filters (workload.py lowering)
    c = compact(dgrad(ssl_weight()))
    assert c.full == (36, 27, 4) and c.kept == ((36, 18, 2),)
    assert c.act == "grad_output" and c.act_kept == (Fraction(2, 4),)  # dY channels of deleted filters unread
    assert c.note == "weight: 2 of 4 filters and 9 of 27 (c,r,s) taps all zero: GEMM N 27->18, K 4->2"


def test_wgrad_and_activations_are_never_compacted():
    w = ssl_weight()
    x = np.ones((1, 3, 6, 6), bool)
    x[:, 2] = False  # an all-zero activation channel: dynamic, not deletable
    wg = workload_from_masks("conv2d", "wgrad", {"input": x, "grad_output": np.ones((1, 4, 6, 6), bool)}, P)
    assert compact(wg) is None  # no weight operand
    assert compact(workload_from_masks("conv2d", "fwd", {"input": x, "weight": np.ones((4, 3, 3, 3), bool)},
                                       P, roles=ROLES)) is None
    # a weight that is all zero leaves nothing to run: not compacted (costed as it is)
    assert compact(fwd(np.zeros_like(w))) is None


def test_grouped_conv_per_group():
    # groups=2, C=4, K=4: weight (4, 2, 3, 3); group 0 = filters 0, 1 over channels 0, 1, group 1 =
    # filters 2, 3 over channels 2, 3. Per group GEMM M=36, N=2, K=2*9=18.
    w = np.ones((4, 2, 3, 3), bool)
    w[1] = False           # group 0 loses filter 1 -> N 1
    w[2:, 1] = False       # group 1 loses its local channel 1 (input channel 3): 9 taps -> K 9
    c = compact(fwd(w, groups=2, c=4))
    assert c.full == (36, 2, 18) and c.kept == ((36, 1, 18), (36, 2, 9)) and c.uniform == (36, 2, 18)
    assert c.act_kept == (Fraction(2, 2), Fraction(1, 2))
    assert c.note == ("weight: 1 of 4 filters and 9 of 36 (c,r,s) taps all zero: "
                      "GEMM N 2->1..2, K 18->9..18 (per group, 2 groups)")


def test_linear_weight_transposed_fwd_and_dgrad():
    # linear weight stored (out=6, in=5); output neuron 2 and input feature 4 all zero
    lw = np.ones((6, 5), bool)
    lw[2] = False
    lw[:, 4] = False
    x = np.ones((8, 5), bool)
    f = workload_from_masks("matmul", "fwd", {"a": x, "b": lw}, transposed={"b": True}, roles={"b": "weight"})
    c = compact(f)  # fwd b = W^T (K=in=5, N=out=6)
    assert c.full == (8, 6, 5) and c.kept == ((8, 5, 4),) and c.act == "a" and c.act_kept == (Fraction(4, 5),)
    assert c.note == "b: 1 of 6 N columns and 1 of 5 K lines all zero: GEMM N 6->5, K 5->4"
    d = workload_from_masks("matmul", "dgrad", {"a": np.ones((8, 6), bool), "b": lw}, roles={"b": "weight"})
    assert compact(d).kept == ((8, 4, 5),)  # dgrad b = W (K=out=6 -> 5, N=in=5 -> 4)
    # a weight as GEMM A (M, K): its all-zero rows shrink M
    a = workload_from_masks("matmul", "fwd", {"a": lw, "b": np.ones((5, 3), bool)}, roles={"a": "weight"})
    assert compact(a).kept == ((5, 3, 4),)
