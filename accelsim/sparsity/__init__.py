"""Sparse-training methods (PyTorch) and the numpy mask rules behind them.

SWAT (:mod:`.swat`), N:M with SR-STE / STE and ASP (:mod:`.nm`), SSL group lasso (:mod:`.ssl`),
gradual magnitude pruning (:mod:`.gmp`); :func:`apply_method` is the uniform entry point used by
``accelsim.training``. :mod:`.masks` is numpy only; the rest needs PyTorch, so it is imported lazily.
"""

__all__ = ["METHODS", "MethodHandle", "apply_method"]


def __getattr__(name):  # PEP 562: keep `import accelsim.sparsity.masks` free of torch
    if name in ("METHODS", "apply_method"):
        from accelsim.sparsity import methods

        return getattr(methods, name)
    if name == "MethodHandle":
        from accelsim.sparsity.handle import MethodHandle

        return MethodHandle
    raise AttributeError(f"module 'accelsim.sparsity' has no attribute {name!r}")
