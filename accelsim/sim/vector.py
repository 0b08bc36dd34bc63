"""The cost of a training step's non-GEMM ("vector") work on each hardware family.

A vector op (trace format v2, kind "vector"; params per docs/trace-format.md) is memory-bound work:
norms, activations, softmax, residual adds, copies, the optimizer step, and the sparsity method's own
work (top-k selection, N:M re-masking, mask application, 2:4 compression), marked ``sparsify``.
Its cost has two parts, each a registry:

1. **Traffic** (``TRAFFIC``, by op class): the bytes the work reads and writes and the element passes
   it makes, on this machine.

   - Data type: the recorder counts bytes in the dtype it ran (often fp32 on a CPU); the machine runs
     the step in its own ``data_type``, as its GEMMs do, so the bytes of a floating-point op are
     scaled by element_bytes / dtype bytes. Exception: class ``optimizer`` keeps the recorded bytes
     (mixed-precision training keeps fp32 master weights and optimizer state, docs/sources.md
     "Mixed-precision training").
   - ``topk`` (top-k selection): PyTorch's multi-block radix select (aten/src/ATen/native/cuda/
     TensorTopK.cu, ``mbtopk``: RADIX_BITS = 8) makes one histogram pass over the input per 8-bit
     digit of the key, then one gather pass that writes the selected values and indices:
     ``ceil(8 * element_bytes / 8) + 1`` reads of the input, one write of the output, one kernel per
     pass (docs/sources.md "Top-k by radix select"). A ``sort`` op (radix sort) reads and writes the
     data once per digit. ``dedicated: topk_fused`` (a fused selection kernel a real system runs):
     one read and one write, as recorded.
   - ``dedicated: compress_2_4`` (a 2:4 operand compressed for the sparse tensor cores / N:M PEs):
     one memory-bound pass that reads the dense tensor and writes the kept values and their
     metadata: ``E*eb`` read, ``E/2*eb + ceil(E/2 * metadata_bits / 8)`` written (E elements, eb
     the machine's element bytes, metadata_bits the file's ``sparsity.metadata_bits``, 2 for 2:4,
     docs/sources.md "NVIDIA A100"). A machine without N:M support never uses compressed 2:4
     operands: there it costs nothing (noted).
   - Every other class (elementwise, reduction, normalisation, softmax, copy, optimizer, compress,
     and mask application, an elementwise op): one pass, the recorded bytes, ``kernels`` kernels.

2. **Executor** (``EXECUTORS``, by what runs vector work on the machine):

   - ``sms`` (gpu family: the SMs themselves): bytes / bandwidth, at the L2 level's bandwidth when
     one kernel's working set (its bytes read + written) fits the L2 capacity -- its inputs were
     just written by the op before it and are still resident, its outputs are absorbed by L2 --,
     else at the DRAM (HBM) bandwidth; plus one launch per kernel (accelsim/sim/gpu.launch_cycles).
   - ``unit`` (a systolic / sparse-PE file's ``compute.vector: {kind: unit}``): ``lanes`` elements
     per cycle of its clock per pass, overlapped with the DRAM traffic (the slower of the two, a
     roofline), plus ``launch`` per kernel;
   - ``host`` (``compute.vector: {kind: host}``): the bytes cross the host link at its bandwidth,
     plus ``launch`` per kernel.

   A systolic / sparse-PE file without ``compute.vector`` has nothing to run vector work on: the
   op is reported as not simulated (with its bytes), never silently free.

Dense baseline: the same work, except that ``sparsify`` work does not exist on a dense run (0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from accelsim.hw.config import HardwareConfig
from accelsim.hw.units import ceil_cycles

# PyTorch's multi-block radix select digit width (TensorTopK.cu, namespace mbtopk, RADIX_BITS)
RADIX_BITS = 8
# bytes per element of the floating-point dtypes a trace may name (torch dtype names)
FLOAT_BYTES = {"float64": 8, "double": 8, "float32": 4, "float": 4, "float16": 2, "half": 2,
               "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1}


@dataclass(frozen=True)
class Traffic:
    """What one vector op moves and computes on one machine (all its merged kernels together)."""

    bytes_read: int
    bytes_written: int
    element_passes: int  # elements processed, all passes (a vector unit's lane work)
    kernels: int
    note: str | None = None  # e.g. why it costs nothing here

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written


@dataclass(frozen=True)
class VectorCost:
    """The cost of one vector op on one machine: ``cycles`` (the work) + ``fixed_cycles`` (launches)."""

    cycles: int
    fixed_cycles: int
    traffic: Traffic
    level: str  # where the bytes moved: "l2" | "dram" | "host" | "none"
    simulated: bool = True
    note: str | None = None

    @property
    def total_cycles(self) -> int:
        return self.cycles + self.fixed_cycles


def _dtype_bytes(dtype: str) -> int | None:
    name = str(dtype).rsplit(".", 1)[-1]
    return FLOAT_BYTES.get(name)


def machine_bytes(geo, hw: HardwareConfig) -> tuple[int, int, int]:
    """(bytes read, bytes written, element bytes) of a vector op on ``hw`` (the data-type rule of
    the module docstring)."""
    rec = _dtype_bytes(geo.dtype)
    eb = int(hw.compute.element_bytes)
    if rec is None or geo.cls == "optimizer" or rec == eb:
        return geo.bytes_read, geo.bytes_written, rec or eb
    return (math.ceil(geo.bytes_read * eb / rec), math.ceil(geo.bytes_written * eb / rec), eb)


def _plain(geo, hw: HardwareConfig) -> Traffic:
    r, w, _ = machine_bytes(geo, hw)
    return Traffic(r, w, geo.elements, geo.kernels)


def _topk(geo, hw: HardwareConfig) -> Traffic:
    r, w, eb = machine_bytes(geo, hw)
    if geo.dedicated == "topk_fused":
        return Traffic(r, w, geo.elements, geo.kernels)
    digits = math.ceil(8 * eb / RADIX_BITS)
    if "sort" in geo.op:  # radix sort: every digit pass reads and writes the data
        return Traffic(r * digits, w * digits, geo.elements * digits, geo.kernels * digits)
    passes = digits + 1  # histogram pass per digit, then the gather pass
    return Traffic(r * passes, w, geo.elements * passes, geo.kernels * passes)


def compress_2_4_bytes(elements: int, element_bytes: int, metadata_bits: int) -> tuple[int, int]:
    """(read, written) of compressing ``elements`` dense values to 2:4: the dense tensor in, half
    the values plus ``metadata_bits`` per kept value out."""
    kept = elements // 2
    return elements * element_bytes, kept * element_bytes + math.ceil(kept * metadata_bits / 8)


def _compress(geo, hw: HardwareConfig) -> Traffic:
    if geo.dedicated != "compress_2_4":
        return _plain(geo, hw)
    if hw.sparsity.kind != "nm":
        return Traffic(0, 0, 0, 0, note=f"2:4 compression not needed: {hw.name} has no N:M support")
    bits = hw.sparsity.metadata_bits or 2  # 2:4: a 2-bit position per kept value
    r, w = compress_2_4_bytes(geo.elements, int(hw.compute.element_bytes), bits)
    return Traffic(r, w, geo.elements, geo.kernels)


def traffic(geo, hw: HardwareConfig) -> Traffic:
    """The op's traffic on ``hw`` (registry TRAFFIC by class; a dedicated compression whatever its class)."""
    if geo.dedicated == "compress_2_4":
        return _compress(geo, hw)
    return TRAFFIC.get(geo.cls, _plain)(geo, hw)


TRAFFIC: dict[str, Callable[[object, HardwareConfig], Traffic]] = {
    "topk": _topk, "compress": _compress,
}


def _cycles(nbytes: int, bandwidth: float, clock_hz: float) -> int:
    if nbytes <= 0 or math.isinf(bandwidth):
        return 0  # a level without a bandwidth is not modelled as a limit (docs/hwconfig.md)
    return ceil_cycles(nbytes * clock_hz / bandwidth)


def _on_sms(t: Traffic, hw: HardwareConfig) -> VectorCost:
    from accelsim.sim.gpu import launch_cycles

    l2, dram = hw.role("l2"), hw.dram()
    per_kernel = t.bytes / t.kernels if t.kernels else 0
    lv = l2 if l2.capacity_bytes is not None and per_kernel <= l2.capacity_bytes else dram
    return VectorCost(_cycles(t.bytes, lv.bandwidth_bytes_per_s, hw.clock_hz), t.kernels * launch_cycles(hw), t,
                      "l2" if lv is l2 else "dram")


def _on_unit(t: Traffic, hw: HardwareConfig) -> VectorCost:
    unit = hw.compute.vector
    clock = unit.clock_hz or hw.clock_hz
    lane = math.ceil(t.element_passes / unit.lanes)
    compute = ceil_cycles(lane * hw.clock_hz / clock)
    memory = _cycles(t.bytes, hw.dram().bandwidth_bytes_per_s, hw.clock_hz)
    launch = ceil_cycles(unit.launch_s * hw.clock_hz)
    return VectorCost(max(compute, memory), t.kernels * launch, t, "dram")


def _on_host(t: Traffic, hw: HardwareConfig) -> VectorCost:
    unit = hw.compute.vector
    launch = ceil_cycles(unit.launch_s * hw.clock_hz)
    return VectorCost(_cycles(t.bytes, unit.bandwidth_bytes_per_s, hw.clock_hz), t.kernels * launch, t, "host")


EXECUTORS: dict[str, Callable[[Traffic, HardwareConfig], VectorCost]] = {
    "sms": _on_sms, "unit": _on_unit, "host": _on_host,
}
# families whose compute itself runs vector work (no compute.vector key)
FAMILY_EXECUTOR = {"gpu": "sms"}


def executor(hw: HardwareConfig) -> str | None:
    """What runs vector work on ``hw``: an EXECUTORS key, or None (nothing declared)."""
    if hw.family in FAMILY_EXECUTOR:
        return FAMILY_EXECUTOR[hw.family]
    unit = getattr(hw.compute, "vector", None)
    return None if unit is None else unit.kind


def vector_cost(geo, hw: HardwareConfig, *, sparse: bool) -> VectorCost:
    """One vector op (a lowering.VectorGeometry) on ``hw``; ``sparse=False`` is the dense baseline,
    where the sparsity method's work (``geo.sparsify``) does not exist."""
    t = traffic(geo, hw)
    if not sparse and geo.sparsify:
        return VectorCost(0, 0, Traffic(0, 0, 0, 0), "none", note="sparsity-method work: absent on the dense run")
    if t.kernels == 0:
        return VectorCost(0, 0, t, "none", note=t.note)
    ex = executor(hw)
    if ex is None:
        return VectorCost(0, 0, t, "none", simulated=False,
                          note=f"{hw.name} declares no vector unit (compute.vector)")
    return EXECUTORS[ex](t, hw)
