"""The uniform hook interface every sparse-training method gives the training loop.

A loop calls, per step::

    loss = criterion(model(x), y) + handle.penalty()
    loss.backward(); handle.after_backward()
    optimizer.step(); handle.after_step(step)

``params`` is a JSON-serialisable dict that goes into the trace header; ``layer_density()`` reports
the density each sparsified layer actually has now (measured, not the target).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

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


# ---------------------------------------------------------------------------------------------
# The method's own work, made visible to accelsim.record (trace format v2, params.sparsify).
# Work names: "topk" (SWAT's top-k selection), "nm_mask" (N:M selection), "mask" (applying a mask),
# "compress" (compressing a 2:4 operand for sparse tensor cores / N:M PEs). A method declares which
# a real system runs in a dedicated kernel in accelsim/sparsity/spec.py (MethodSpec.dedicated).
# Single-threaded by design, like the training loop that runs it.

_WORK: list[str] = []
_LISTENERS: list[Callable[[str, str, torch.Tensor, int], None]] = []


@contextmanager
def sparsify_work(work: str) -> Iterator[None]:
    """Mark the torch ops run inside as the sparsity method's own work (a recorder sees them)."""
    _WORK.append(work)
    try:
        yield
    finally:
        _WORK.pop()


def current_sparsify_work() -> str | None:
    """The innermost sparsify_work() name, or None outside any."""
    return _WORK[-1] if _WORK else None


def note_hidden_work(work: str, cls: str, t: torch.Tensor, bytes_written: int) -> None:
    """Tell recorders about work the dispatcher cannot see: a selection computed in numpy (SWAT's
    top-k, the N:M mask) or work a real system does that this code skips (compressing a 2:4 operand).
    ``t`` is the tensor the work reads; ``cls`` its vector class (docs/trace-format.md)."""
    for fn in list(_LISTENERS):
        fn(work, cls, t, int(bytes_written))


def add_work_listener(fn: Callable[[str, str, torch.Tensor, int], None]) -> None:
    _LISTENERS.append(fn)


def remove_work_listener(fn: Callable[[str, str, torch.Tensor, int], None]) -> None:
    if fn in _LISTENERS:
        _LISTENERS.remove(fn)
