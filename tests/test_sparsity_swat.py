"""SWAT (Raihan & Aamodt 2020) and the mask rules behind it, checked on hand-made tensors."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.sparsity import apply_method
from accelsim.sparsity.masks import channel_mask, erk_densities, filter_mask, keep_count, topk_mask
from accelsim.sparsity.swat import apply_swat

torch.use_deterministic_algorithms(True)


def saved_during(fn):
    """Run fn() and return the tensors autograd saved for backward (in save order)."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, saved


# ---- mask rules -------------------------------------------------------------------------------

def test_keep_count_is_swat_ceil_rule_without_float_noise():
    # SWAT drop.py: k = ceil(select_percentage * numel)
    assert keep_count(0.2, 108) == 22            # 21.6 -> 22
    assert keep_count(0.1, 30) == 3              # 0.1*30 = 3.0000000000000004 must not become 4
    assert keep_count(1 - 0.9, 10) == 1          # 0.0999...98 * 10 must not become 0
    assert keep_count(0.5, 5) == 3


def test_topk_mask_keeps_largest_magnitudes_ties_to_lower_index():
    x = np.array([3.0, -1.0, 2.0, 2.0, 0.5])
    assert topk_mask(x, 0.5).tolist() == [True, False, True, True, False]      # k = ceil(2.5) = 3
    assert topk_mask(x, 0.4).tolist() == [True, False, True, False, False]     # tie 2.0/2.0: lower idx
    assert topk_mask(np.ones((2, 2)), 0.5).tolist() == [[True, True], [False, False]]
    assert topk_mask(np.array([-4.0, 1.0, 3.0]), 0.34).tolist() == [True, False, True]  # ceil(1.02)=2


def test_channel_and_filter_masks_keep_whole_kernels_by_l1_norm():
    w = np.zeros((2, 3, 2, 2))
    l1 = np.array([[4.0, 1.0, 7.0], [2.0, 9.0, 3.0]])      # kernel L1 norms, one value per entry
    w[:] = (l1 / 4.0)[:, :, None, None]
    w[0, 0, 0, 0] *= -1                                     # sign must not matter
    cm = channel_mask(w, 0.5)                               # keep ceil(0.5*6) = 3 kernels: 9, 7, 4
    kept = cm[:, :, 0, 0]
    assert kept.tolist() == [[True, False, True], [False, True, False]]
    assert (cm == kept[:, :, None, None]).all()             # whole 2-D kernels
    fm = filter_mask(w, 0.5)                                # filter L1: 12 vs 14 -> keep filter 1
    assert fm[1].all() and not fm[0].any()


def test_erk_saturated_layer_made_dense_and_rest_rescaled():
    # raw = sum/prod: layer0 6/8 = 0.75, layer1 2000/1e6 = 0.002. First eps = 500004/2006 -> layer0
    # would exceed 1, so it is dense; then eps = (0.5e6 - 8*0.5) / 2000 = 249.998 -> d1 = 0.499996.
    d = erk_densities([(4, 2), (1000, 1000)], 0.5)
    assert d[0] == 1.0
    assert d[1] == pytest.approx(0.499996, abs=1e-12)


def test_erk_densities_average_to_target_by_parameter_count():
    shapes = [(64, 3, 3, 3), (128, 64, 3, 3), (256, 128, 3, 3), (10, 256)]
    d = erk_densities(shapes, 0.2)
    n = [math.prod(s) for s in shapes]
    assert sum(di * ni for di, ni in zip(d, n)) / sum(n) == pytest.approx(0.2, rel=1e-12)
    # unsaturated layers keep ERK's proportionality: d ∝ sum(shape)/prod(shape)
    assert d[1] / d[2] == pytest.approx((198 / (128 * 64 * 9)) / (390 / (256 * 128 * 9)))  # = 2.0308
    assert d[0] == 1.0 and d[3] == 1.0 and d[1] < 1 and d[2] < 1   # small layers saturate


# ---- SWAT layers ------------------------------------------------------------------------------

class Lin(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.fc(x)


def test_swat_linear_hand_worked_forward_and_backward():
    m = Lin()
    with torch.no_grad():
        m.fc.weight.copy_(torch.tensor([[1.0, -5.0, 2.0, 0.5], [4.0, -0.1, 3.0, -6.0]]))
    apply_swat(m, 0.5, first_layer_dense=False)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], requires_grad=True)
    y, saved = saved_during(lambda: m(x))
    # W~ keeps the 4 largest |w| of 8: -6, -5, 4, 3; forward uses the dense x
    w_s = torch.tensor([[0.0, -5.0, 0.0, 0.0], [4.0, 0.0, 3.0, -6.0]])
    assert y.tolist() == [[-10.0, -11.0]]
    # only X~ (top 2 of x: 3, 4) and W~ are saved
    assert len(saved) == 2
    assert saved[0].tolist() == [[0.0, 0.0, 3.0, 4.0]]
    assert torch.equal(saved[1], w_s)
    (y * torch.tensor([[1.0, 2.0]])).sum().backward()      # dY = [1, 2], dense
    assert x.grad.tolist() == [[8.0, -5.0, 6.0, -12.0]]    # dY @ W~
    # dY^T @ X~ lands on the dense weight, pruned positions included (straight-through)
    assert m.fc.weight.grad.tolist() == [[0.0, 0.0, 3.0, 4.0], [0.0, 0.0, 6.0, 8.0]]


class TwoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.conv1 = nn.Conv2d(3, 4, 3, stride=1, padding=1, bias=True)

    def forward(self, x):
        return self.conv1(self.conv0(x))


def test_swat_conv_densities_saved_tensors_and_gradients():
    torch.manual_seed(0)
    net = TwoConv()
    h = apply_swat(net, 0.8)                            # conv0 is the first layer: stays dense
    assert not hasattr(net.conv0, "_accelsim_swat") and h.params["dense_layers"] == ["conv0"]
    conv = net.conv1
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    y, saved = saved_during(lambda: conv(x))
    x_s, w_s = saved
    w = conv.weight.detach()
    # weights: ceil(0.2 * 108) = 22 kept, the largest |w|; input: ceil(0.2 * 150) = 30 kept
    assert int((w_s != 0).sum()) == 22 and int((x_s != 0).sum()) == 30
    thr = w.abs().flatten().sort(descending=True).values[21]
    assert torch.equal(w_s != 0, w.abs() >= thr)
    assert torch.equal(x_s, x.detach() * (x.detach().abs() >= x.detach().abs().flatten().sort(descending=True).values[29]))
    # forward: dense input against the sparse weight
    assert torch.allclose(y, F.conv2d(x.detach(), w_s, conv.bias.detach(), padding=1), atol=0, rtol=0)
    g = torch.randn_like(y)                              # dY, never sparsified
    y.backward(g)
    xr = x.detach().clone().requires_grad_(True)
    wr = w_s.clone().requires_grad_(True)
    gx, = torch.autograd.grad(F.conv2d(xr, wr, padding=1), xr, g)
    assert torch.allclose(x.grad, gx, atol=1e-6)         # dgrad from (dY, W~)
    xs = x_s.clone()
    gw, = torch.autograd.grad(F.conv2d(xs, wr, padding=1), wr, g)
    assert torch.allclose(conv.weight.grad, gw, atol=1e-6)   # wgrad from (dY, X~)
    assert (conv.weight.grad[w_s == 0] != 0).any()      # the dense W receives gradient everywhere
    assert torch.allclose(conv.bias.grad, g.sum((0, 2, 3)))
    assert h.layer_density()["conv1"] == pytest.approx(22 / 108)


def test_swat_through_apply_method_channel_structure_zeroes_whole_kernels():
    torch.manual_seed(1)
    net = TwoConv()
    h = apply_method(net, "swat", sparsity=0.5, structure="channel")
    _, saved = saved_during(lambda: net(torch.randn(1, 3, 4, 4)))
    w_s = saved[-1]                                       # conv1's W~ (conv0 is dense autograd)
    assert w_s.shape == (4, 3, 3, 3)
    nz = (w_s != 0).flatten(2).sum(-1)
    assert set(nz.flatten().tolist()) <= {0, 9} and int((nz == 9).sum()) == 6   # ceil(0.5*12)
    h2 = apply_method(TwoConv(), "swat", sparsity=0.5, structure="filter")
    assert h2.params["structure"] == "filter"


def test_swat_topk_period_caches_threshold_between_exact_steps():
    torch.manual_seed(2)
    net = TwoConv()
    apply_swat(net, 0.8, topk_period=2)
    conv, st = net.conv1, net.conv1._accelsim_swat
    x = torch.randn(2, 3, 5, 5)
    _, s1 = saved_during(lambda: conv(x))
    assert int((s1[1] != 0).sum()) == 22
    thr = st.w_threshold
    with torch.no_grad():
        conv.weight.mul_(2.0)                             # stale threshold now keeps more weights
    _, s2 = saved_during(lambda: conv(x))                 # call 2: |w| >= cached threshold
    assert int((s2[1] != 0).sum()) == int((conv.weight.abs() >= thr).sum()) > 22
    _, s3 = saved_during(lambda: conv(x))                 # call 3: exact top-k again
    assert int((s3[1] != 0).sum()) == 22


def test_swat_erk_model_density_matches_target_by_parameter_count():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3), nn.Conv2d(16, 32, 3), nn.Flatten(), nn.Linear(32, 10))
    h = apply_swat(net, 0.9, distribution="erk")
    dens = h.params["layer_target_density"]
    sizes = {n: m.weight.numel() for n, m in net.named_modules() if n in dens}
    assert sum(dens[n] * sizes[n] for n in dens) / sum(sizes.values()) == pytest.approx(0.1, abs=1e-6)
    assert len(set(dens.values())) > 1


@pytest.mark.parametrize("kw", [dict(sparsity=1.0), dict(sparsity=0.5, distribution="x"),
                                dict(sparsity=0.5, structure="row"), dict(sparsity=0.5, topk_period=0)])
def test_swat_bad_arguments_raise_one_line_errors(kw):
    with pytest.raises(AccelsimError):
        apply_swat(TwoConv(), **kw)
    with pytest.raises(AccelsimError, match="does not take"):
        apply_method(TwoConv(), "swat", sparsity=0.5, lam=1.0)


def test_swat_eval_uses_sparse_weights_and_keeps_training_state():
    torch.manual_seed(3)
    net = TwoConv()
    apply_swat(net, 0.8, topk_period=3)
    st = net.conv1._accelsim_swat
    x = torch.randn(1, 3, 4, 4)
    net(x)
    calls, thr = st.calls, st.w_threshold
    net.eval()
    with torch.no_grad():
        y = net.conv1(x)
    w = net.conv1.weight.detach()
    w_s = w * torch.from_numpy(topk_mask(w.numpy(), 0.2))
    assert torch.allclose(y, F.conv2d(x, w_s, net.conv1.bias, padding=1), atol=1e-6)
    assert (st.calls, st.w_threshold) == (calls, thr)
