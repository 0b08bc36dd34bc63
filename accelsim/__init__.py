"""accelsim: a cycle-level simulator of sparse DNN-training accelerators.

Public API (imported lazily so that ``import accelsim`` stays fast and PyTorch stays optional):

- :func:`load_trace` -- open a trace file (``accelsim.trace.format``)
- :func:`load_hw` -- read a hardware YAML file (``accelsim.hw``)
- :func:`simulate` -- replay a trace on a hardware model (``accelsim.sim``)
- :func:`record` -- record a trace from PyTorch training (``accelsim.trace.record``, needs torch)
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_trace", "load_hw", "simulate", "record"]


def __getattr__(name):  # PEP 562 lazy attributes
    if name == "load_trace":
        from accelsim.trace.format import load_trace

        return load_trace
    if name == "load_hw":
        from accelsim.hw import load_hw

        return load_hw
    if name == "simulate":
        from accelsim.sim import simulate

        return simulate
    if name == "record":
        from accelsim.trace.record import record

        return record
    raise AttributeError(f"module 'accelsim' has no attribute {name!r}")
