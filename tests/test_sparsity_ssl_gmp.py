"""SSL group lasso (Wen et al. 2016) and gradual magnitude pruning (Zhu & Gupta 2017)."""

import math

import pytest
import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.sparsity import apply_method
from accelsim.sparsity.gmp import gmp_sparsity
from accelsim.sparsity.ssl import group_lasso, zero_small_groups


def _conv_w():
    # (N=2, C=1, M=1, K=2): filter 0 = [3, 4], filter 1 = [0, 5]
    return torch.tensor([[[[3.0, 4.0]]], [[[0.0, 5.0]]]])


def test_group_lasso_hand_values_per_group_kind():
    w = _conv_w()
    assert group_lasso(w, ["filter"]).item() == pytest.approx(5 + 5)                   # ||[3,4]|| + ||[0,5]||
    assert group_lasso(w, ["channel"]).item() == pytest.approx(math.sqrt(50))          # one channel
    assert group_lasso(w, ["shape"]).item() == pytest.approx(3 + math.sqrt(41))        # columns [3,0], [4,5]
    assert group_lasso(w, ["depth"]).item() == pytest.approx(math.sqrt(50))


def test_ssl_penalty_through_the_handle():
    net = nn.Sequential(nn.Conv2d(1, 2, (1, 2), bias=False))
    with torch.no_grad():
        net[0].weight.copy_(_conv_w())
    h = apply_method(net, "ssl", lam=0.01, groups=["filter", "channel", "shape", "depth"],
                     first_layer_dense=False)
    expect = 0.01 * (10 + math.sqrt(50) + 3 + math.sqrt(41) + math.sqrt(50))
    assert h.penalty().item() == pytest.approx(expect, rel=1e-6)
    net[0].weight.grad = None
    (h.penalty() / 0.01).backward()
    # d/dw of the filter-wise term alone at w[0,0,0,0] = 3 / 5; all four kinds together:
    # filter 3/5 + channel 3/sqrt(50) + shape 3/3 + depth 3/sqrt(50)
    g = net[0].weight.grad[0, 0, 0, 0].item()
    assert g == pytest.approx(3 / 5 + 3 / math.sqrt(50) + 1 + 3 / math.sqrt(50), rel=1e-6)


def test_zero_small_groups_zeroes_whole_filters_and_channels():
    net = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.0625, 0.125], [0.0625, 3.0], [0.0625, 4.0]]).view(3, 2, 1, 1))
    # filter norms: 0.1398, 3.0007, 4.0005 -> only filter 0 is below 0.2
    assert zero_small_groups(net, 0.2, ["filter"]) == 1
    assert net[0].weight.view(3, 2).tolist() == [[0.0, 0.0], [0.0625, 3.0], [0.0625, 4.0]]
    # channel norms now: sqrt(2)*0.0625 = 0.088 and 5.0 -> channel 0 goes
    assert zero_small_groups(net, 0.2, ["channel"]) == 1
    assert net[0].weight.view(3, 2).tolist() == [[0.0, 0.0], [0.0, 3.0], [0.0, 4.0]]
    with pytest.raises(AccelsimError):
        zero_small_groups(net, 0.01, ["rows"])


def test_gmp_schedule_hand_values():
    kw = dict(initial=0.0, final=0.8, begin=0, n=10, dt=1)
    assert gmp_sparsity(0, **kw) == 0.0
    assert gmp_sparsity(5, **kw) == pytest.approx(0.7)           # 0.8 - 0.8 * 0.5^3
    assert gmp_sparsity(10, **kw) == pytest.approx(0.8)
    assert gmp_sparsity(25, **kw) == pytest.approx(0.8)
    kw = dict(initial=0.1, final=0.9, begin=2, n=4, dt=3)         # span 12
    assert gmp_sparsity(1, **kw) == 0.1
    assert gmp_sparsity(8, **kw) == pytest.approx(0.9 - 0.8 * 0.125)   # (8-2)/12 = 0.5


def test_gmp_handle_prunes_on_schedule_and_keeps_pruned_at_zero():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 10, bias=False))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    h = apply_method(net, "gmp", final_sparsity=0.5, n_updates=2, frequency=1, first_layer_dense=False)
    assert int((net[0].weight != 0).sum()) == 100                 # t = 0: s = 0
    nnz = []
    for step in range(3):
        opt.zero_grad()
        net(torch.randn(4, 10)).pow(2).sum().backward()
        h.after_backward()
        opt.step()
        h.after_step(step)
        nnz.append(int((net[0].weight != 0).sum()))
    # t=1: s = 0.5 - 0.5*(1/2)^3 = 0.4375 -> keep ceil(56.25) = 57; t=2: s = 0.5 -> 50; t=3: held
    assert nnz == [57, 50, 50]
