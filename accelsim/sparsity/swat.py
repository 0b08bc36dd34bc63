"""SWAT: sparse weight activation training (Raihan & Aamodt, NeurIPS 2020).

Follows the authors' code (github AamirRaihan/SWAT, ``custom_layers/custom_conv.py``,
``topk/drop.py``; docs/sources.md "SWAT as implemented"). Per Conv2d/Linear layer, every training step:

1. ``W~ = topk(W)`` over the whole layer tensor (or whole 2-D kernels / filters for the structured
   variants); forward computes ``Y = conv(X, W~)`` with the input X **dense**.
2. After the forward conv, ``X~ = topk(X)`` over the whole minibatch tensor at the layer's sparsity
   (always unstructured); only ``X~`` and ``W~`` are saved for backward.
3. Backward: ``dX = conv_backward_input(dY, W~)``, ``dW = conv_backward_weight(dY, X~)``; dY is
   never sparsified; ``dW`` is the gradient of the dense W (straight-through), so the dense weights
   are updated and re-sparsified next step.
4. Exact top-k every ``topk_period`` training forwards; in between the masks are
   ``|x| >= cached threshold`` (``drop_threshold``), so densities then only approximate the target.

:func:`apply_swat` swaps the ``forward`` of each module in place, so module paths (the layer names a
recorder reports, e.g. ``layer1.0.conv1``) and module types stay those of the original model.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from accelsim.errors import AccelsimError, UnsupportedError
from accelsim.sparsity.handle import MethodHandle, note_hidden_work, prunable_layers, sparsify_work
from accelsim.sparsity.spec import SWAT_DISTRIBUTIONS, SWAT_STRUCTURES, SwatParams
from accelsim.sparsity.masks import (
    channel_mask,
    erk_densities,
    filter_mask,
    to_numpy,
    topk_mask,
    topk_mask_threshold,
    torch_mask,
)

DISTRIBUTIONS, STRUCTURES = SWAT_DISTRIBUTIONS, SWAT_STRUCTURES   # declared with SwatParams


@dataclass
class SwatLayerState:
    """Per-layer SWAT settings and the thresholds cached between exact top-k steps."""

    density: float                      # kept fraction of weights and of the saved input
    structure: str = "unstructured"
    topk_period: int = 1
    calls: int = 0                      # training forwards seen (drives the top-k period)
    w_threshold: float | None = field(default=None, repr=False)
    x_threshold: float | None = field(default=None, repr=False)
    last_w_mask: torch.Tensor | None = field(default=None, repr=False)

    def _exact(self) -> bool:
        return self.calls % self.topk_period == 0 or self.w_threshold is None

    def weight_mask(self, w: torch.Tensor, exact: bool) -> torch.Tensor:
        if self.density >= 1.0:
            m = torch.ones_like(w, dtype=torch.bool)
        elif self.structure == "channel":        # SWAT recomputes structured masks every step
            m = torch_mask(channel_mask, w, self.density)
        elif self.structure == "filter":
            m = torch_mask(filter_mask, w, self.density)
        elif exact:
            m, self.w_threshold = _topk_t(w, self.density)
        else:
            m = w.abs() >= self.w_threshold
        self.last_w_mask = m
        return m

    def eval_weight_mask(self, w: torch.Tensor) -> torch.Tensor:
        """Exact mask for evaluation, leaving the training thresholds and step count alone."""
        if self.density >= 1.0:
            return torch.ones_like(w, dtype=torch.bool)
        rule = {"channel": channel_mask, "filter": filter_mask}.get(self.structure, topk_mask)
        return torch_mask(rule, w, self.density)

    def input_mask(self, x: torch.Tensor, exact: bool) -> torch.Tensor:
        if self.density >= 1.0:
            return torch.ones_like(x, dtype=torch.bool)
        if exact or self.x_threshold is None:
            m, self.x_threshold = _topk_t(x, self.density)
            return m
        return x.abs() >= self.x_threshold


def _topk_t(t: torch.Tensor, density: float) -> tuple[torch.Tensor, float]:
    m, thr = topk_mask_threshold(to_numpy(t), density)
    note_hidden_work("topk", "topk", t, t.numel())  # the selection (numpy here): reads t, writes a mask
    return torch.from_numpy(m).to(t.device), thr


class _SwatConv2d(torch.autograd.Function):
    """Conv with SWAT's sparse forward weight, sparse saved input and dense output gradient."""

    @staticmethod
    def forward(ctx, x, w, b, st: SwatLayerState, stride, padding, dilation, groups):
        exact = st._exact()
        st.calls += 1
        with sparsify_work("topk"):
            w_s = w * st.weight_mask(w, exact)
        y = F.conv2d(x, w_s, b, stride, padding, dilation, groups)   # dense input in forward
        with sparsify_work("topk"):
            x_s = x * st.input_mask(x, exact)                         # top-k'd after the conv
        ctx.save_for_backward(x_s, w_s)                               # only the sparse copies
        ctx.conf = (stride, padding, dilation, groups, b is not None)
        return y

    @staticmethod
    def backward(ctx, dy):
        x_s, w_s = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conf
        dx = dw = db = None
        if ctx.needs_input_grad[0]:      # dgrad from (dY, W~)
            dx = torch.nn.grad.conv2d_input(x_s.shape, w_s, dy, stride, padding, dilation, groups)
        if ctx.needs_input_grad[1]:      # wgrad from (dY, X~): the gradient of the dense W
            dw = torch.nn.grad.conv2d_weight(x_s, w_s.shape, dy, stride, padding, dilation, groups)
        if has_bias and ctx.needs_input_grad[2]:
            db = dy.sum(dim=(0, 2, 3))
        return dx, dw, db, None, None, None, None, None


class _SwatLinear(torch.autograd.Function):
    """Linear layer version: dX = dY @ W~, dW = dY^T @ X~ (inputs of any rank >= 2 are flattened)."""

    @staticmethod
    def forward(ctx, x, w, b, st: SwatLayerState):
        exact = st._exact()
        st.calls += 1
        with sparsify_work("topk"):
            w_s = w * st.weight_mask(w, exact)
        y = F.linear(x, w_s, b)
        with sparsify_work("topk"):
            x_s = x * st.input_mask(x, exact)
        ctx.save_for_backward(x_s, w_s)
        ctx.has_bias = b is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        x_s, w_s = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1])
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = (dy2 @ w_s).reshape(x_s.shape)
        if ctx.needs_input_grad[1]:
            dw = dy2.t() @ x_s.reshape(-1, x_s.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(dim=0)
        return dx, dw, db, None


def _conv_forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    st: SwatLayerState = self._accelsim_swat
    if self.training and torch.is_grad_enabled():
        return _SwatConv2d.apply(x, self.weight, self.bias, st, self.stride, self.padding,
                                 self.dilation, self.groups)
    # evaluation: the sparse weights, a dense input, nothing kept for backward
    w_s = self.weight * st.eval_weight_mask(self.weight)
    return F.conv2d(x, w_s, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    st: SwatLayerState = self._accelsim_swat
    if self.training and torch.is_grad_enabled():
        return _SwatLinear.apply(x, self.weight, self.bias, st)
    return F.linear(x, self.weight * st.eval_weight_mask(self.weight), self.bias)


class SwatHandle(MethodHandle):
    name = "swat"

    def __init__(self, model, params, states: dict[str, SwatLayerState]):
        super().__init__(model, params)
        self.states = states

    def layer_density(self) -> dict[str, float]:
        """Density of the weight each layer used in its last forward (dense layers: 1.0)."""
        out = {}
        for name, mod in prunable_layers(self.model):
            st = self.states.get(name)
            if st is None or st.last_w_mask is None:
                out[name] = float((mod.weight != 0).float().mean())
            else:
                out[name] = float(st.last_w_mask.float().mean())
        return out


def apply_swat(model: nn.Module, sparsity: float, *, distribution: str = "uniform",
               structure: str = "unstructured", topk_period: int = 1,
               first_layer_dense: bool = True) -> SwatHandle:
    """Make every Conv2d/Linear of ``model`` a SWAT layer (in place); returns the method handle.

    ``sparsity`` is the target fraction of zeros. ``distribution="uniform"`` (SWAT-U) gives every
    sparse layer that sparsity; ``"erk"`` spreads the same total kept-parameter budget over the
    sparse layers by Erdős–Rényi-kernel (the dense first layer is outside the budget).
    ``first_layer_dense`` keeps the first Conv2d/Linear in registration order dense (SWAT's
    ImageNet ResNet keeps conv1 dense; docs/sources.md "SWAT as implemented" item 6).
    """
    # ranges and choices are declared once, with the method's parameters
    SwatParams(sparsity=sparsity, distribution=distribution, structure=structure, topk_period=topk_period,
               first_layer_dense=bool(first_layer_dense))
    layers = prunable_layers(model)
    if not layers:
        raise AccelsimError("swat: the model has no Conv2d or Linear layer to sparsify")
    for name, mod in layers:
        if isinstance(mod, nn.Conv2d) and (isinstance(mod.padding, str) or mod.padding_mode != "zeros"):
            raise UnsupportedError(f"swat: layer {name} uses padding {mod.padding!r}/{mod.padding_mode}; "
                                   "only explicit zero padding is supported")
    sparse = layers[1:] if first_layer_dense else layers
    density = 1.0 - float(sparsity)
    if distribution == "uniform" or not sparse:
        dens = [density] * len(sparse)
    else:
        dens = erk_densities([tuple(m.weight.shape) for _, m in sparse], density)
    states: dict[str, SwatLayerState] = {}
    for (name, mod), d in zip(sparse, dens):
        st = SwatLayerState(density=d, structure=structure, topk_period=topk_period)
        mod._accelsim_swat = st
        fwd = _conv_forward if isinstance(mod, nn.Conv2d) else _linear_forward
        mod.forward = types.MethodType(fwd, mod)
        states[name] = st
    params = {
        "sparsity": float(sparsity), "distribution": distribution, "structure": structure,
        "topk_period": topk_period, "first_layer_dense": bool(first_layer_dense),
        "dense_layers": [n for n, _ in layers if n not in states],
        "layer_target_density": {n: round(s.density, 6) for n, s in states.items()},
    }
    return SwatHandle(model, params, states)
