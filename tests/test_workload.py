"""Lowering conventions (accelsim/sim/lowering.py, masks attached by accelsim/sim/workload.py) checked
against PyTorch's own convolutions.

`ref_gemm` builds the lowered A and B matrices by brute force (explicit im2col) -- only for the
small shapes of the tests; the simulator's kernels never build them. tests/test_kernels.py reuses it.
"""

from __future__ import annotations

import numpy as np
import pytest

from accelsim.errors import TraceError, UnsupportedError
from accelsim.sim.workload import (
    build_workload,
    conv_geometry,
    conv_params,
    pack_mask,
    resolve_operand,
    synthetic_op,
)
from accelsim.sim.workload import synthetic_workload as workload_from_masks

CONV_CASES = [  # (n, c, h, w, k, r, s, stride, padding, dilation, groups)
    (2, 4, 6, 5, 6, 3, 3, 1, 1, 1, 1),
    (1, 8, 7, 7, 4, 3, 2, 2, 1, 1, 1),
    (2, 4, 9, 8, 8, 3, 3, 1, 2, 2, 2),
    (1, 8, 6, 6, 8, 1, 1, 2, 0, 1, 4),
    (2, 3, 11, 10, 4, 5, 5, (2, 3), (2, 1), (1, 2), 1),
]


def ref_gemm(work) -> tuple[np.ndarray, np.ndarray]:
    """(A[G, M, K], B[G, K, N]) as int64 by explicit im2col, in workload.py's reduction order."""
    geo = work.conv
    if geo is None:
        a = work.used_mask(work.a).astype(np.int64)
        b = work.used_mask(work.b).astype(np.int64)
        return (a[None], b[None]) if a.ndim == 2 else (a, b)
    g = geo.groups
    cg, kg = geo.c // g, geo.k // g
    (sh, sw), (ph, pw), (dh, dw) = geo.stride, geo.padding, geo.dilation

    def x_at(x, n, c, p, q, r, s):
        h, w = p * sh - ph + r * dh, q * sw - pw + s * dw
        return int(x[n, c, h, w]) if 0 <= h < geo.h and 0 <= w < geo.w else 0

    A = np.zeros((g, work.m, work.k), np.int64)
    B = np.zeros((g, work.k, work.n), np.int64)
    pix = [(n, p, q) for n in range(geo.n) for p in range(geo.p) for q in range(geo.q)]
    taps = [(r, s, c) for r in range(geo.r) for s in range(geo.s) for c in range(cg)]
    for gi in range(g):
        if work.pass_ == "fwd":
            x, wt = work.mask("input"), work.mask("weight")
            for i, (n, p, q) in enumerate(pix):
                for kk, (r, s, c) in enumerate(taps):
                    A[gi, i, kk] = x_at(x, n, gi * cg + c, p, q, r, s)
            for kk, (r, s, c) in enumerate(taps):
                B[gi, kk, :] = wt[gi * kg:(gi + 1) * kg, c, r, s]
        elif work.pass_ == "dgrad":
            dy, wt = work.mask("grad_output"), work.mask("weight")
            for i, (n, p, q) in enumerate(pix):
                A[gi, i, :] = dy[n, gi * kg:(gi + 1) * kg, p, q]
            cols = [(c, r, s) for c in range(cg) for r in range(geo.r) for s in range(geo.s)]
            for j, (c, r, s) in enumerate(cols):
                B[gi, :, j] = wt[gi * kg:(gi + 1) * kg, c, r, s]
        else:
            x, dy = work.mask("input"), work.mask("grad_output")
            rows = [(c, r, s) for c in range(cg) for r in range(geo.r) for s in range(geo.s)]
            for i, (c, r, s) in enumerate(rows):
                for kk, (n, p, q) in enumerate(pix):
                    A[gi, i, kk] = x_at(x, n, gi * cg + c, p, q, r, s)
            for kk, (n, p, q) in enumerate(pix):
                B[gi, kk, :] = dy[n, gi * kg:(gi + 1) * kg, p, q]
    return A, B


def conv_workloads(case, seed=0, dens=(0.5, 0.4, 0.6)):
    n, c, h, w, k, r, s, st, pd, dl, g = case
    p = conv_params(n, c, h, w, k, r, s, stride=st, padding=pd, dilation=dl, groups=g)
    geo = conv_geometry(p)
    rng = np.random.default_rng(seed)
    x = rng.random((n, c, h, w)) < dens[0]
    wt = rng.random((k, c // g, r, s)) < dens[1]
    dy = rng.random((n, k, geo.p, geo.q)) < dens[2]
    return {
        "fwd": workload_from_masks("conv2d", "fwd", {"input": x, "weight": wt}, p),
        "dgrad": workload_from_masks("conv2d", "dgrad", {"grad_output": dy, "weight": wt}, p),
        "wgrad": workload_from_masks("conv2d", "wgrad", {"grad_output": dy, "input": x}, p),
    }, (x, wt, dy, geo)


@pytest.mark.parametrize("case", CONV_CASES)
def test_lowering_matches_torch_conv(case):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    works, (x, wt, dy, geo) = conv_workloads(case)
    kw = dict(stride=geo.stride, padding=geo.padding, dilation=geo.dilation, groups=geo.groups)
    X, Wt, DY = (torch.tensor(v, dtype=torch.float64) for v in (x, wt, dy))
    g, cg, kg = geo.groups, geo.c // geo.groups, geo.k // geo.groups
    # fwd: (A @ B)[g, (n,p,q), k] = conv(x, w)[n, g*kg+k, p, q]
    A, B = ref_gemm(works["fwd"])
    y = F.conv2d(X, Wt, **kw).numpy()
    got = np.einsum("gmk,gkn->gmn", A, B).reshape(g, geo.n, geo.p, geo.q, kg)
    assert np.array_equal(got.transpose(1, 0, 4, 2, 3).reshape(y.shape), y)
    # wgrad: (A @ B)[g, (c,r,s), k] = dW[g*kg+k, c, r, s]
    A, B = ref_gemm(works["wgrad"])
    dw = torch.nn.grad.conv2d_weight(X, wt.shape, DY, **kw).numpy()
    got = np.einsum("gmk,gkn->gmn", A, B).reshape(g, cg, geo.r, geo.s, kg)
    assert np.array_equal(got.transpose(0, 4, 1, 2, 3).reshape(dw.shape), dw)
    # dgrad: dcol = A @ B, col2im scatter-add of dcol = dX
    A, B = ref_gemm(works["dgrad"])
    dcol = np.einsum("gmk,gkn->gmn", A, B).reshape(g, geo.n, geo.p, geo.q, cg, geo.r, geo.s)
    dx = np.zeros((geo.n, geo.c, geo.h, geo.w), np.int64)
    (sh, sw), (ph, pw), (dh, dwl) = geo.stride, geo.padding, geo.dilation
    for p_ in range(geo.p):
        for r in range(geo.r):
            hh = p_ * sh - ph + r * dh
            if not 0 <= hh < geo.h:
                continue
            for q in range(geo.q):
                for s in range(geo.s):
                    ww = q * sw - pw + s * dwl
                    if 0 <= ww < geo.w:
                        for gi in range(g):
                            dx[:, gi * cg:(gi + 1) * cg, hh, ww] += dcol[gi, :, p_, q, :, r, s]
    ref = torch.nn.grad.conv2d_input(x.shape, Wt, DY, **kw).numpy()
    assert np.array_equal(dx, ref)
    # every pass does the forward MACs F (docs/sources.md "SWAT FLOP accounting")
    for wk in works.values():
        assert wk.dense_macs == geo.fwd_macs


def test_gemm_dims_hand():
    # conv 3x3, C=64 -> K=128, 56x56, batch 2, pad 1: P=Q=56
    p = conv_params(2, 64, 56, 56, 128, 3, 3, padding=1)
    geo = conv_geometry(p)
    assert (geo.p, geo.q) == (56, 56)
    z = np.zeros
    shapes = {"input": (2, 64, 56, 56), "weight": (128, 64, 3, 3)}
    fwd = build_workload(synthetic_op("conv2d", "fwd", shapes, p),
                         {"input": pack_mask(z((2, 64, 56, 56), bool)), "weight": pack_mask(z((128, 64, 3, 3), bool))},
                         {"input": 0, "weight": 0}, {"input": (2, 64, 56, 56), "weight": (128, 64, 3, 3)})
    assert (fwd.m, fwd.n, fwd.k, fwd.groups) == (2 * 56 * 56, 128, 576, 1)
    # dgrad as SCALE-Sim's resnet_input_grad.csv: M = N*P*Q, N = C*R*S, K = filters
    dg = workload_from_masks("conv2d", "dgrad", {"grad_output": z((2, 128, 56, 56), bool),
                                                 "weight": z((128, 64, 3, 3), bool)}, p)
    assert (dg.m, dg.n, dg.k) == (6272, 576, 128)
    assert dg.output_numel == 2 * 64 * 56 * 56
    wg = workload_from_masks("conv2d", "wgrad", {"grad_output": z((2, 128, 56, 56), bool),
                                                 "input": z((2, 64, 56, 56), bool)}, p)
    assert (wg.m, wg.n, wg.k) == (576, 128, 6272)
    assert fwd.shape_str() == "N2 C64 H56 W56 K128 R3 S3 /1"


def test_matmul_transposed_and_bmm():
    rng = np.random.default_rng(1)
    a = rng.random((5, 7)) < 0.5
    wt = rng.random((3, 7)) < 0.5  # linear weight (out, in), used as b = W^T
    w = workload_from_masks("matmul", "fwd", {"a": a, "b": wt}, transposed={"b": True},
                            roles={"a": "activation", "b": "weight"})
    assert (w.m, w.n, w.k) == (5, 3, 7)
    assert np.array_equal(w.used_mask("b"), wt.T)
    assert resolve_operand(w, "weight") == ("b", None)
    assert resolve_operand(w, "activation") == ("a", None)
    bm = workload_from_masks("bmm", "fwd", {"a": rng.random((4, 5, 6)) < .5, "b": rng.random((4, 6, 2)) < .5})
    assert (bm.m, bm.n, bm.k, bm.groups, bm.dense_macs) == (5, 2, 6, 4, 240)


def test_pack_mask_layout():
    m = np.zeros(70, bool)
    m[[0, 3, 64, 69]] = True
    w = pack_mask(m)
    assert w.dtype == np.uint64 and w.size == 2
    assert int(w[0]) == (1 << 0) | (1 << 3) and int(w[1]) == (1 << 0) | (1 << 5)


def test_bad_ops():
    with pytest.raises(UnsupportedError, match="no lowering"):
        workload_from_masks("conv3d", "fwd", {"a": np.ones((2, 2), bool), "b": np.ones((2, 2), bool)})
    p = conv_params(1, 2, 4, 4, 2, 3, 3)
    p["output_shape"] = [1, 2, 3, 3]
    with pytest.raises(TraceError, match="disagrees with input"):
        workload_from_masks("conv2d", "fwd", {"input": np.ones((1, 2, 4, 4), bool),
                                              "weight": np.ones((2, 2, 3, 3), bool)}, p)
    with pytest.raises(TraceError, match="do not multiply"):
        workload_from_masks("matmul", "fwd", {"a": np.ones((2, 3), bool), "b": np.ones((2, 2), bool)})
    w = workload_from_masks("conv2d", "wgrad", {"grad_output": np.ones((1, 2, 2, 2), bool),
                                                "input": np.ones((1, 2, 4, 4), bool)}, conv_params(1, 2, 4, 4, 2, 3, 3))
    side, why = resolve_operand(w, "weight")
    assert side is None and why == "no weight operand in conv2d wgrad (input x grad_output)"
