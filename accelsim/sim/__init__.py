"""The simulator: lowering, numba kernels, hardware family models, memory engine, simulate().

``simulate`` is imported lazily so that importing a submodule does not pull in every model.
"""

__all__ = ["simulate"]


def __getattr__(name):  # PEP 562
    if name == "simulate":
        from accelsim.sim.engine import simulate

        return simulate
    raise AttributeError(f"module 'accelsim.sim' has no attribute {name!r}")
