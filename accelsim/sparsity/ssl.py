"""SSL: structured sparsity learning by group lasso (Wen et al., NeurIPS 2016; docs/sources.md "SSL").

``E(W) = E_D(W) + lambda_g * sum_l R_g(W^l)`` with ``R_g(w) = sum_g ||w^(g)||_2`` (un-squared L2
norm of each group). Groups of a conv weight W in R^{N x C x M x K} (filters, channels, kernel
rows, kernel columns):

- filter-wise  ``W[n, :, :, :]``  (a row of the im2col weight matrix)
- channel-wise ``W[:, c, :, :]``
- shape-wise   ``W[:, c, m, k]``  (a column of the im2col weight matrix)
- depth-wise   the whole layer ``W``

A Linear weight (out, in) is treated as (out, in, 1, 1), so its shape- and channel-wise groups
coincide. Group lasso drives whole groups towards zero; :func:`zero_small_groups` then sets groups
whose norm fell below a threshold exactly to zero, which is what makes the structure exploitable.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.sparsity.handle import MethodHandle, prunable_layers, sparsify_work
from accelsim.sparsity.spec import SslParams, check_value

GROUPS = ("filter", "channel", "shape", "depth")


def _as4d(w: torch.Tensor) -> torch.Tensor:
    return w if w.dim() == 4 else w.reshape(w.shape[0], w.shape[1], 1, 1)


def group_norms(w: torch.Tensor, kind: str) -> torch.Tensor:
    """L2 norm of every group of ``kind`` in a conv (N,C,M,K) or linear (out,in) weight."""
    w4 = _as4d(w)
    if kind == "filter":
        return w4.flatten(1).norm(dim=1)                      # (N,)
    if kind == "channel":
        return w4.transpose(0, 1).flatten(1).norm(dim=1)      # (C,)
    if kind == "shape":
        return w4.flatten(1).norm(dim=0)                      # (C*M*K,)
    if kind == "depth":
        return w4.norm().reshape(1)
    raise ValueError(f"unknown SSL group kind {kind!r}")


def group_lasso(w: torch.Tensor, kinds: Iterable[str] = ("filter", "channel")) -> torch.Tensor:
    """``sum over kinds of sum_g ||w_g||_2`` for one weight tensor (differentiable)."""
    return sum(group_norms(w, k).sum() for k in kinds)


def _check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in GROUPS]
    if bad or not kinds:
        raise AccelsimError(f"ssl: groups must be a non-empty subset of {', '.join(GROUPS)}, got {list(kinds)}")
    return kinds


@torch.no_grad()
def zero_small_groups(model: nn.Module, threshold: float, groups: Sequence[str] = ("filter", "channel"),
                      layers: Sequence[str] | None = None) -> int:
    """Zero every group (of the given kinds) whose L2 norm is below ``threshold``; returns how many
    groups were zeroed. ``layers`` restricts it to those module paths."""
    kinds = _check_kinds(groups)
    zeroed = 0
    for name, mod in prunable_layers(model):
        if layers is not None and name not in layers:
            continue
        w4 = _as4d(mod.weight.data)                  # a view: writes reach the parameter
        for kind in kinds:
            small = group_norms(w4, kind) < threshold
            cnt = int(small.sum())
            if not cnt:
                continue
            zeroed += cnt
            if kind == "filter":
                w4[small] = 0
            elif kind == "channel":
                w4[:, small] = 0
            elif kind == "shape":
                flat = w4.view(w4.shape[0], -1)
                flat[:, small] = 0
            else:
                w4.zero_()
    return zeroed


class SSLHandle(MethodHandle):
    name = "ssl"

    def __init__(self, model, params, layers: list[tuple[str, nn.Module]], lam: float,
                 kinds: tuple[str, ...], zero_threshold: float):
        super().__init__(model, params)
        self.layers = layers
        self.lam = lam
        self.kinds = kinds
        self.zero_threshold = zero_threshold
        self.groups_zeroed = 0

    def penalty(self) -> torch.Tensor | float:
        if not self.lam:
            return 0.0
        with sparsify_work("penalty"):  # the group norms: the method's own (forward) work
            return self.lam * sum(group_lasso(mod.weight, self.kinds) for _, mod in self.layers)

    def after_step(self, step: int) -> None:
        if self.zero_threshold > 0:
            with sparsify_work("mask"):
                self.groups_zeroed += zero_small_groups(self.model, self.zero_threshold, self.kinds,
                                                        [n for n, _ in self.layers])


def apply_ssl(model: nn.Module, *, lam: float = 1e-4, groups: Sequence[str] = ("filter", "channel"),
              zero_threshold: float = 1e-3, first_layer_dense: bool = True) -> SSLHandle:
    """Group-lasso regularisation of every Conv2d/Linear weight (the first one too unless
    ``first_layer_dense``), zeroing groups whose norm is below ``zero_threshold`` after each step.

    ASSUMPTION: the defaults lam = 1e-4 and zero_threshold = 1e-3 are our choices for short runs, not
    values from Wen et al.; zeroing groups below the threshold is how this implementation makes
    near-zero groups exactly zero so that they can be deleted (sim/structure.py)."""
    kinds = _check_kinds(groups)
    lam = check_value("ssl", "lambda", SslParams.__dataclass_fields__["ssl_lambda"], lam, float)
    if not isinstance(zero_threshold, (int, float)) or zero_threshold < 0:
        raise AccelsimError(f"ssl: zero_threshold must be a number >= 0, got {zero_threshold!r}")
    layers = prunable_layers(model)
    chosen = layers[1:] if first_layer_dense else layers
    params = {"lambda_g": float(lam), "groups": list(kinds), "zero_threshold": float(zero_threshold),
              "first_layer_dense": bool(first_layer_dense),
              "dense_layers": [n for n, _ in layers][:len(layers) - len(chosen)]}
    return SSLHandle(model, params, chosen, float(lam), kinds, float(zero_threshold))
