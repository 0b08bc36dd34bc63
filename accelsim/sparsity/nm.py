"""N:M structured sparsity during training: SR-STE, plain STE and NVIDIA ASP.

- SR-STE (Zhou et al., ICLR 2021; github aojunzz/NM-sparsity ``devkit/sparse_ops/sparse_ops.py``;
  docs/sources.md "SR-STE"): each forward recomputes the N:M magnitude mask of the dense weight W along the
  reduction dimension (conv: groups of M along C, the (K, R, S, C) layout), uses ``W~ = W * mask``,
  and backward passes ``grad_W = grad_W~ + lambda_w * (1 - mask) * W`` to the dense weight.
- STE: the same without the lambda term (grad_W = grad_W~).
- ASP (NVIDIA Apex ``asp.py``/``sparse_masklib.py``; Mishra et al. 2021): one-shot 2:4 magnitude
  pruning of a (partly) trained dense model, then fine-tuning with the mask fixed: gradients of
  pruned weights are masked before the optimizer step and the weights re-masked after it, so
  momentum or weight decay cannot revive them.
- SAD (Zhou et al.): flips between the masks of consecutive steps, see :func:`masks.sad`.

A layer is N:M-sparsified when its reduction dimension (``weight.shape[1]``: C/groups for a conv,
in_features for a linear) is a multiple of M; others (e.g. a 3-channel stem) stay dense and are
listed in the handle's ``params["dense_layers"]``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.sparsity.handle import MethodHandle, note_hidden_work, prunable_layers, sparsify_work
from accelsim.sparsity.masks import nm_mask, sad, torch_mask
from accelsim.sparsity.spec import SrsteParams, check_value


def nm_mask_t(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M keep-mask of a Conv2d (K, C, R, S) or Linear (out, in) weight, groups along dim 1."""
    return torch_mask(nm_mask, w, n, m, axis=1)


@dataclass
class NMLayerState:
    n: int
    m: int
    lam: float                      # SR-STE lambda_w; 0 for plain STE
    last_mask: torch.Tensor | None = field(default=None, repr=False)


class _NMSparse(torch.autograd.Function):
    """W -> W * nm_mask(W); backward: grad + lam * (1 - mask) * W (SR-STE), or grad (STE)."""

    @staticmethod
    def forward(ctx, w, st: NMLayerState):
        mask = nm_mask_t(w, st.n, st.m)
        note_hidden_work("nm_mask", "topk", w, w.numel())  # the N:M selection (numpy here)
        st.last_mask = mask
        ctx.lam = st.lam
        if st.lam:
            ctx.save_for_backward(w, mask)
        with sparsify_work("mask"):
            w_s = w * mask
        if st.n * 2 == st.m:  # a sparse-tensor-core system compresses W~ for the 2:4 MMA each step
            note_hidden_work("compress", "compress", w_s, w_s.numel() * w_s.element_size() // 2 + w_s.numel() // 8)
        return w_s

    @staticmethod
    def backward(ctx, grad):
        if not ctx.lam:
            return grad, None               # straight-through: the dense W gets grad_W~
        w, mask = ctx.saved_tensors
        return grad + ctx.lam * (~mask) * w, None


def _nm_conv_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return self._conv_forward(x, _NMSparse.apply(self.weight, self._accelsim_nm), self.bias)


def _nm_linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, _NMSparse.apply(self.weight, self._accelsim_nm), self.bias)


def _check_nm(n, m, who: str) -> None:
    """n and m as declared once for every N:M method (accelsim.sparsity.spec)."""
    fields = SrsteParams.__dataclass_fields__
    for name, value in (("n", n), ("m", m)):
        check_value(who, name, fields[name], value, int)
    if n >= m:
        raise AccelsimError(f"{who}: need 0 < n < m for N:M sparsity, got n={n}, m={m}")


def eligible_layers(model: nn.Module, m: int, first_layer_dense: bool) -> tuple[list, list[str]]:
    """(layers to sparsify, names of layers left dense) for an N:M method."""
    layers = prunable_layers(model)
    chosen, dense = [], []
    for i, (name, mod) in enumerate(layers):
        if (first_layer_dense and i == 0) or mod.weight.shape[1] % m != 0:
            dense.append(name)
        else:
            chosen.append((name, mod))
    return chosen, dense


class NMHandle(MethodHandle):
    """SR-STE / STE: masks recomputed every forward; tracks SAD between consecutive steps."""

    def __init__(self, model, params, states: dict[str, NMLayerState], name: str):
        super().__init__(model, params)
        self.name = name
        self.states = states
        self._prev: dict[str, np.ndarray] = {}
        self.last_sad: int | None = None     # mask flips between the last two steps

    def after_step(self, step: int) -> None:
        cur = {k: st.last_mask.cpu().numpy() for k, st in self.states.items() if st.last_mask is not None}
        if self._prev and cur.keys() == self._prev.keys():
            self.last_sad = sum(sad(self._prev[k], cur[k]) for k in cur)
        self._prev = cur

    def layer_density(self) -> dict[str, float]:
        out = super().layer_density()
        for k, st in self.states.items():
            if st.last_mask is not None:
                out[k] = float(st.last_mask.float().mean())
        return out


def apply_nm(model: nn.Module, *, n: int = 2, m: int = 4, lam: float = 2e-4,
             first_layer_dense: bool = True, name: str = "srste") -> NMHandle:
    """Make eligible Conv2d/Linear layers N:M sparse with SR-STE (``lam`` > 0) or STE (``lam`` = 0)."""
    _check_nm(n, m, name)
    lam = check_value(name, "lambda", SrsteParams.__dataclass_fields__["srste_lambda"], lam, float)
    chosen, dense = eligible_layers(model, m, first_layer_dense)
    if not chosen:
        raise AccelsimError(f"{name}: no Conv2d/Linear layer has a reduction dimension divisible by m={m}")
    states = {}
    for lname, mod in chosen:
        st = NMLayerState(n=n, m=m, lam=float(lam))
        mod._accelsim_nm = st
        fwd = _nm_conv_forward if isinstance(mod, nn.Conv2d) else _nm_linear_forward
        mod.forward = types.MethodType(fwd, mod)
        states[lname] = st
    params = {"n": n, "m": m, "lambda_w": float(lam), "first_layer_dense": bool(first_layer_dense),
              "along": "reduction (conv: C, groups in (K,R,S,C) order; linear: in_features)",
              "dense_layers": dense}
    return NMHandle(model, params, states, name)


class ASPHandle(MethodHandle):
    """One-shot N:M magnitude pruning after ``prune_at`` dense steps, then a fixed mask."""

    name = "asp"

    def __init__(self, model, params, layers: list[tuple[str, nn.Module]], n: int, m: int, prune_at: int):
        super().__init__(model, params)
        self.layers = layers
        self.n, self.m = n, m
        self.prune_at = prune_at
        self.masks: dict[str, torch.Tensor] = {}
        if prune_at == 0:
            self.prune()

    @torch.no_grad()
    def prune(self) -> None:
        for lname, mod in self.layers:
            mask = nm_mask_t(mod.weight, self.n, self.m)
            self.masks[lname] = mask
            mod.weight.mul_(mask)

    @property
    def pruned(self) -> bool:
        return bool(self.masks)

    @torch.no_grad()
    def after_backward(self) -> None:
        for lname, mod in self.layers:
            if lname in self.masks and mod.weight.grad is not None:
                with sparsify_work("mask"):
                    mod.weight.grad.mul_(self.masks[lname])

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        if not self.pruned:
            if step + 1 >= self.prune_at:          # `prune_at` dense steps are done
                self.prune()
            return
        for lname, mod in self.layers:
            with sparsify_work("mask"):
                mod.weight.mul_(self.masks[lname])     # momentum / weight decay cannot revive them
            w = mod.weight  # the updated 2:4 weight is compressed again for the sparse MMA
            if 2 * self.n == self.m:
                note_hidden_work("compress", "compress", w, w.numel() * w.element_size() // 2 + w.numel() // 8)


def apply_asp(model: nn.Module, *, n: int = 2, m: int = 4, prune_at: int = 0,
              first_layer_dense: bool = True) -> ASPHandle:
    """ASP: prune eligible layers to N:M by magnitude after ``prune_at`` training steps
    (0 = now, the model given is taken as the trained dense model), then keep the mask fixed."""
    _check_nm(n, m, "asp")
    if not isinstance(prune_at, int) or prune_at < 0:
        raise AccelsimError(f"asp: prune_at must be an integer >= 0, got {prune_at!r}")
    chosen, dense = eligible_layers(model, m, first_layer_dense)
    if not chosen:
        raise AccelsimError(f"asp: no Conv2d/Linear layer has a reduction dimension divisible by m={m}")
    params = {"n": n, "m": m, "prune_at": prune_at, "first_layer_dense": bool(first_layer_dense),
              "along": "reduction (conv: C, groups in (K,R,S,C) order; linear: in_features)",
              "dense_layers": dense}
    return ASPHandle(model, params, chosen, n, m, prune_at)
