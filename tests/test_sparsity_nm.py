"""N:M masks, SR-STE / STE gradients, ASP fixed masks and the SAD metric on hand-made tensors."""

import numpy as np
import pytest
import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.sparsity import apply_method
from accelsim.sparsity.masks import is_nm, nm_mask, sad

torch.use_deterministic_algorithms(True)


def test_nm_mask_picks_largest_in_each_group_ties_to_lower_index():
    w = np.array([[0.1, -3.0, 2.0, 0.5, 1.0, 1.0, 1.0, 1.0]])
    assert nm_mask(w, 2, 4, axis=1).tolist() == [[False, True, True, False, True, True, False, False]]


def test_nm_mask_of_conv_weight_groups_run_along_input_channels():
    # (K=1, C=4, R=1, S=2): groups along C are columns w[0, :, 0, s]
    w = np.zeros((1, 4, 1, 2))
    w[0, :, 0, 0] = [5.0, 1.0, 4.0, 2.0]      # keep C=0 and C=2
    w[0, :, 0, 1] = [1.0, 6.0, 2.0, 7.0]      # keep C=1 and C=3
    m = nm_mask(w, 2, 4, axis=1)
    assert m[0, :, 0, 0].tolist() == [True, False, True, False]
    assert m[0, :, 0, 1].tolist() == [False, True, False, True]


def test_nm_mask_random_conv_is_exactly_n_of_every_m_and_the_largest():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 16, 3, 3))
    m = nm_mask(w, 2, 4, axis=1)
    g = np.moveaxis(m, 1, -1).reshape(8, 3, 3, 4, 4)              # (K,R,S, C/4, 4)
    assert (g.sum(-1) == 2).all()                                  # exactly N of every M along C
    a = np.moveaxis(np.abs(w), 1, -1).reshape(8, 3, 3, 4, 4)
    assert (np.where(g, a, np.inf).min(-1) >= np.where(g, -np.inf, a).max(-1)).all()
    assert is_nm(m, 2, 4, axis=1) and not is_nm(np.ones_like(m), 2, 4, axis=1)


def test_sad_counts_mask_flips():
    assert sad(np.array([1, 0, 1, 0], bool), np.array([0, 0, 1, 1], bool)) == 2
    with pytest.raises(ValueError):
        sad(np.zeros(3, bool), np.zeros(4, bool))


def _lin(weight):
    net = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([weight]))
    return net


def test_srste_gradient_equals_formula_on_hand_example():
    # W = [1, -2, 0.5, 3]: 2:4 keeps -2 and 3. y = W~ . x with x = 1s -> grad_W~ = [1, 1, 1, 1];
    # SR-STE: grad_W = grad_W~ + lambda (1 - mask) W = [1 + 0.1*1, 1, 1 + 0.1*0.5, 1]
    net = _lin([1.0, -2.0, 0.5, 3.0])
    h = apply_method(net, "srste", n=2, m=4, lam=0.1, first_layer_dense=False)
    y = net(torch.ones(1, 4))
    assert y.item() == 1.0                                  # -2 + 3: forward uses W~
    y.sum().backward()
    assert net[0].weight.grad[0].tolist() == pytest.approx([1.1, 1.0, 1.05, 1.0], abs=1e-7)
    assert h.params["lambda_w"] == 0.1 and h.params["n"] == 2


def test_ste_has_no_lambda_term():
    net = _lin([1.0, -2.0, 0.5, 3.0])
    apply_method(net, "ste", first_layer_dense=False)
    net(torch.ones(1, 4)).sum().backward()
    assert net[0].weight.grad.tolist() == [[1.0, 1.0, 1.0, 1.0]]


def test_srste_leaves_layers_with_indivisible_channels_dense_and_tracks_sad():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))
    h = apply_method(net, "srste", first_layer_dense=False)
    assert h.params["dense_layers"] == ["0"]                # C = 3 is not a multiple of 4
    net(torch.randn(1, 3, 6, 6)).sum().backward()
    h.after_step(0)
    m0 = net[1]._accelsim_nm.last_mask.clone()
    with torch.no_grad():
        net[1].weight[:, 0] = 100.0                         # channel 0 now wins every first group
    net(torch.randn(1, 3, 6, 6))
    h.after_step(1)
    m1 = net[1]._accelsim_nm.last_mask
    assert h.last_sad == int((m0 != m1).sum()) > 0
    assert is_nm(m1.numpy(), 2, 4, axis=1)


def test_asp_keeps_pruned_weights_zero_after_optimizer_steps():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4)
    h = apply_method(net, "asp", prune_at=1, first_layer_dense=False)
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    for step in range(3):                                   # step 0 dense (momentum builds up), then pruned
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        h.after_backward()
        opt.step()
        h.after_step(step)
        if step == 0:
            masks = {k: v.clone() for k, v in h.masks.items()}
            assert set(masks) == {"0", "2"}
    for name, idx in (("0", 0), ("2", 2)):
        w = net[idx].weight.detach()
        assert torch.equal(w != 0, masks[name])             # pruned stay 0, the mask never moved
        assert is_nm((w != 0).numpy(), 2, 4, axis=1)
        assert int((w != 0).sum()) == w.numel() // 2


def test_nm_bad_arguments():
    with pytest.raises(AccelsimError):
        apply_method(_lin([1.0, 2.0, 3.0, 4.0]), "srste", n=4, m=4)
    with pytest.raises(AccelsimError):
        apply_method(_lin([1.0, 2.0, 3.0, 4.0]), "asp", prune_at=-1)
    with pytest.raises(AccelsimError, match="unknown sparse-training method"):
        apply_method(_lin([1.0, 2.0, 3.0, 4.0]), "rigl")


@pytest.mark.parametrize("name, kw, msg", [
    ("ste", dict(n=2, m=True), "ste: m must be an integer >= 2, got True"),
    ("asp", dict(n=0, m=4), "asp: n must be an integer >= 1, got 0"),
    ("srste", dict(n=4, m=4), "srste: need 0 < n < m for N:M sparsity, got n=4, m=4"),
    ("swat", dict(sparsity=1.0), r"swat: sparsity must be a number in [0.0, 1.0), got 1.0"),
    ("swat", dict(sparsity=0.5, distribution="normal"), "swat: distribution must be one of uniform, erk, got 'normal'"),
    ("srste", dict(lam=float("nan")), "srste: lambda must be a number >= 0.0, got nan"),   # NaN was accepted
    ("ssl", dict(lam=-1), "ssl: lambda must be a number >= 0.0, got -1"),
    ("gmp", dict(final_sparsity=1), "gmp: final_sparsity must be a number in [0.0, 1.0), got 1"),
])
def test_apply_method_checks_ranges_as_the_method_dataclasses_declare(name, kw, msg):
    with pytest.raises(AccelsimError) as e:
        apply_method(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)), name, **kw)
    assert str(e.value) == msg
