"""Gradual magnitude pruning (Zhu & Gupta 2017, "To prune, or not to prune").

Sparsity schedule (their eq. 1), for t0 <= t <= t0 + n*dt:
    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))^3
s_i before t0 and s_f after t0 + n*dt. Every dt steps each layer's mask is recomputed to keep its
largest-magnitude weights at density 1 - s_t (layer-wise, as in their TensorFlow model_pruning
library); between updates the mask is fixed: gradients of pruned weights are masked and the
weights re-masked after each optimizer step.
"""

from __future__ import annotations

import torch
from torch import nn

from accelsim.errors import AccelsimError
from accelsim.sparsity.handle import MethodHandle, note_hidden_work, prunable_layers, sparsify_work
from accelsim.sparsity.masks import topk_mask, torch_mask
from accelsim.sparsity.spec import GmpParams, check_value


def gmp_sparsity(t: int, *, initial: float, final: float, begin: int, n: int, dt: int) -> float:
    """Zhu & Gupta's cubic schedule s_t."""
    if t < begin:
        return initial
    span = n * dt
    if span <= 0 or t >= begin + span:
        return final
    return final + (initial - final) * (1.0 - (t - begin) / span) ** 3


class GMPHandle(MethodHandle):
    name = "gmp"

    def __init__(self, model, params, layers: list[tuple[str, nn.Module]]):
        super().__init__(model, params)
        self.layers = layers
        self.masks: dict[str, torch.Tensor] = {}
        self.current_sparsity: float | None = None
        self._maybe_update(0)

    def _schedule(self, t: int) -> float:
        p = self.params
        return gmp_sparsity(t, initial=p["initial_sparsity"], final=p["final_sparsity"],
                            begin=p["begin_step"], n=p["n_updates"], dt=p["frequency"])

    @torch.no_grad()
    def _maybe_update(self, t: int) -> None:
        """t = optimizer steps done; masks change at t0, t0+dt, ..., t0+n*dt."""
        p = self.params
        rel = t - p["begin_step"]
        if rel < 0 or rel > p["n_updates"] * p["frequency"] or rel % p["frequency"] != 0:
            return
        s = self._schedule(t)
        self.current_sparsity = s
        for name, mod in self.layers:
            mask = torch_mask(topk_mask, mod.weight, 1.0 - s)
            note_hidden_work("topk", "topk", mod.weight, mod.weight.numel())  # the selection (numpy here)
            self.masks[name] = mask
            with sparsify_work("mask"):
                mod.weight.mul_(mask)

    @torch.no_grad()
    def after_backward(self) -> None:
        for name, mod in self.layers:
            if name in self.masks and mod.weight.grad is not None:
                with sparsify_work("mask"):
                    mod.weight.grad.mul_(self.masks[name])

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        for name, mod in self.layers:
            if name in self.masks:
                with sparsify_work("mask"):
                    mod.weight.mul_(self.masks[name])
        self._maybe_update(step + 1)


def apply_gmp(model: nn.Module, *, final_sparsity: float, initial_sparsity: float = 0.0,
              begin_step: int = 0, n_updates: int = 10, frequency: int = 1,
              first_layer_dense: bool = True) -> GMPHandle:
    """Gradual magnitude pruning of every Conv2d/Linear (bar the first if ``first_layer_dense``)."""
    for k, v in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        check_value("gmp", k, GmpParams.__dataclass_fields__["sparsity"], v, float)  # its range, declared once
    for k, v, lo in (("begin_step", begin_step, 0), ("n_updates", n_updates, 0), ("frequency", frequency, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise AccelsimError(f"gmp: {k} must be an integer >= {lo}, got {v!r}")
    layers = prunable_layers(model)
    chosen = layers[1:] if first_layer_dense else layers
    params = {"final_sparsity": float(final_sparsity), "initial_sparsity": float(initial_sparsity),
              "begin_step": begin_step, "n_updates": n_updates, "frequency": frequency,
              "first_layer_dense": bool(first_layer_dense),
              "dense_layers": [n for n, _ in layers][:len(layers) - len(chosen)]}
    return GMPHandle(model, params, chosen)
