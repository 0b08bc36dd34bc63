"""The uniform hook interface every sparse-training method gives the training loop.

A loop calls, per step::

    loss = criterion(model(x), y) + handle.penalty()
    loss.backward(); handle.after_backward()
    optimizer.step(); handle.after_step(step)

``params`` is a JSON-serialisable dict that goes into the trace header; ``layer_density()`` reports
the density each sparsified layer actually has now (measured, not the target).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

SPARSIFIABLE = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv2d and Linear modules in registration order, with their module paths."""
    return [(name, mod) for name, mod in model.named_modules() if isinstance(mod, SPARSIFIABLE)]


class MethodHandle:
    """No-op hooks (the dense method); methods override what they need."""

    name = "dense"

    def __init__(self, model: nn.Module, params: dict[str, Any] | None = None):
        self.model = model
        self.params: dict[str, Any] = dict(params or {})

    def penalty(self) -> torch.Tensor | float:
        """Extra loss term (SSL group lasso); 0 for other methods."""
        return 0.0

    def after_backward(self) -> None:
        """Called after ``loss.backward()`` and before ``optimizer.step()``."""

    def after_step(self, step: int) -> None:
        """Called after ``optimizer.step()``; ``step`` counts from 0 over warmup and recording."""

    def layer_density(self) -> dict[str, float]:
        """Measured non-zero fraction of each Conv2d/Linear weight as it is used in forward."""
        return {name: float((mod.weight != 0).float().mean()) for name, mod in prunable_layers(self.model)}
