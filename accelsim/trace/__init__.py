"""Trace files (format v1) and the PyTorch recorder.

``accelsim.trace.format`` reads and writes traces (numpy only); ``accelsim.trace.record`` needs torch
and is imported only when used (``accelsim.record`` / ``from accelsim.trace.record import record``).
"""

from accelsim.trace.format import (  # noqa: F401
    KINDS, PASSES, SCHEMA, VERSION, Operand, OpRecord, SavedRecord, TensorRecord, Trace, TraceWriter,
    load_trace,
)

__all__ = ["KINDS", "PASSES", "SCHEMA", "VERSION", "Operand", "OpRecord", "SavedRecord", "TensorRecord",
           "Trace", "TraceWriter", "load_trace"]
