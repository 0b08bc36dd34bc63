"""Sparse-training methods (PyTorch) and the numpy mask rules behind them.

SWAT (:mod:`.swat`), N:M with SR-STE / STE and ASP (:mod:`.nm`), SSL group lasso (:mod:`.ssl`),
gradual magnitude pruning (:mod:`.gmp`); :func:`apply_method` is the uniform entry point used by
``accelsim.training``. :mod:`.spec` declares every method's parameters and is the registry of
methods (``METHOD_SPECS``). :mod:`.masks` and :mod:`.spec` need no PyTorch; the rest does, so it is
imported lazily.
"""

__all__ = ["METHODS", "METHOD_SPECS", "MethodHandle", "apply_method"]


def __getattr__(name):  # PEP 562: keep `import accelsim.sparsity.masks` free of torch
    if name in ("METHODS", "METHOD_SPECS"):
        from accelsim.sparsity import spec

        return getattr(spec, name)
    if name == "apply_method":
        from accelsim.sparsity import methods

        return getattr(methods, name)
    if name == "MethodHandle":
        from accelsim.sparsity.handle import MethodHandle

        return MethodHandle
    raise AttributeError(f"module 'accelsim.sparsity' has no attribute {name!r}")
