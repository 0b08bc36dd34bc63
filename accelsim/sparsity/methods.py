"""``apply_method``: one entry point from a method name to its :class:`MethodHandle`."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from accelsim.errors import AccelsimError
from accelsim.sparsity.handle import MethodHandle
from accelsim.sparsity.nm import apply_nm
from accelsim.sparsity.spec import METHOD_SPECS, METHODS  # the one registry of methods

__all__ = ["METHODS", "apply_method", "method_parameters"]


def _dense(model: nn.Module) -> MethodHandle:
    return MethodHandle(model, {})


def _srste(model: nn.Module, *, n: int = 2, m: int = 4, lam: float = 2e-4,
           first_layer_dense: bool = True) -> MethodHandle:
    return apply_nm(model, n=n, m=m, lam=lam, first_layer_dense=first_layer_dense, name="srste")


def _ste(model: nn.Module, *, n: int = 2, m: int = 4, first_layer_dense: bool = True) -> MethodHandle:
    return apply_nm(model, n=n, m=m, lam=0.0, first_layer_dense=first_layer_dense, name="ste")


def method_parameters(name: str) -> list[str]:
    """Keyword parameters the method accepts (for error messages and the CLI)."""
    return [p for p in inspect.signature(METHOD_SPECS[name].function()).parameters if p != "model"]


def apply_method(model: nn.Module, name: str, **params: Any) -> MethodHandle:
    """Apply sparse-training method ``name`` to ``model`` in place and return its hooks.

    Parameters by method: swat(sparsity, distribution, structure, topk_period, first_layer_dense);
    srste(n, m, lam, first_layer_dense); ste(n, m, first_layer_dense);
    asp(n, m, prune_at, first_layer_dense); ssl(lam, groups, zero_threshold, first_layer_dense);
    gmp(final_sparsity, initial_sparsity, begin_step, n_updates, frequency, first_layer_dense).
    """
    if name not in METHOD_SPECS:
        raise AccelsimError(f"unknown sparse-training method {name!r}; choose one of {', '.join(METHODS)}")
    allowed = method_parameters(name)
    bad = sorted(set(params) - set(allowed))
    if bad:
        raise AccelsimError(f"method {name} does not take {', '.join(bad)} "
                            f"(it takes: {', '.join(allowed) or 'nothing'})")
    handle = METHOD_SPECS[name].function()(model, **params)
    handle.name = name
    return handle
