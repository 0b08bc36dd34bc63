"""Typed hardware description (see docs/hwconfig.md for the YAML and docs/architecture.md).

Configs are frozen dataclasses so that a loaded machine cannot change under a running simulation and
``HardwareConfig.dense()`` can derive the dense baseline with ``dataclasses.replace``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

FAMILIES = ("systolic", "gpu", "sparse_pe")
DATAFLOWS = ("os", "ws", "is")
SPARSITY_KINDS = ("none", "nm", "one_sided", "two_sided")
SPARSE_OPERANDS = ("weight", "activation", "a", "b", "auto", "both")
SEARCH_SHAPES = ("T", "full")
# bytes per element of the data types a config may name
DATA_TYPES = {"int8": 1, "fp8": 1, "fp16": 2, "bf16": 2, "bfloat16": 2, "tf32": 4, "fp32": 4}


@dataclass(frozen=True)
class MemoryLevel:
    name: str
    capacity_bytes: int | None  # None: unbounded (DRAM)
    bandwidth_bytes_per_s: float  # inf when the file gives none (on-chip level not modelled as a limit)
    latency_cycles: int
    word_bytes: int
    shared: bool  # False: one instance per unit/SM


@dataclass(frozen=True)
class SparsityFeature:
    kind: str = "none"  # none | nm | one_sided | two_sided
    operand: str = "weight"  # weight | activation | a | b | auto | both
    n: int | None = None
    m: int | None = None
    along: str = "reduction"
    lookahead: int = 0  # TensorDash H
    lookaside: int = 0  # TensorDash D
    search: str = "T"
    metadata_bits: int = 0


@dataclass(frozen=True)
class SystolicCompute:
    """A rows x cols PE array (SCALE-Sim's ArrayHeight x ArrayWidth) and its dataflow."""

    rows: int
    cols: int
    dataflow: str  # os | ws | is
    data_type: str
    element_bytes: int

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class GpuCompute:
    sms: int
    tensor_cores_per_sm: int
    dense_macs_per_cycle_per_core: int
    mma_shape: tuple[int, int, int]
    sparse_mma_shape: tuple[int, int, int]
    data_type: str
    element_bytes: int
    # M, N, K of a thread block; several = the library's candidates, the fastest is used per GEMM
    cta_tiles: tuple[tuple[int, int, int], ...]
    ctas_per_sm: int
    launch_overhead_s: float

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.sms * self.tensor_cores_per_sm * self.dense_macs_per_cycle_per_core


@dataclass(frozen=True)
class SparsePECompute:
    """Tiles of pe_rows x pe_cols PEs, each PE with `lanes` MAC lanes (TensorDash: 16 x 4x16 x 16).

    A PE row works on one output column n of the lowered GEMM (a filter), a PE column on one output
    row m (a window); the PEs of a tile advance in lockstep (accelsim/sim/sparse_pe.py).
    """

    tiles: int
    pe_rows: int
    pe_cols: int
    lanes: int
    data_type: str
    element_bytes: int
    # How a PE's lanes are fed along a conv's reduction. True (TensorDash, DNNsim): each kernel tap's
    # channel run starts a new row of `lanes` (dense cycles ceil(round_up(C,16)*R*S/16), FACTS.md).
    # False (bitmap inner-join designs, SparTen): the reduction is packed contiguously, ceil(K/lanes).
    # The loader derives it from sparsity.kind (two_sided -> False); dense() keeps it, so a machine's
    # dense baseline uses the machine's own layout.
    tap_padded: bool = True

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.tiles * self.pe_rows * self.pe_cols * self.lanes


@dataclass(frozen=True)
class HardwareConfig:
    name: str
    family: str  # systolic | gpu | sparse_pe
    clock_hz: float
    compute: object  # SystolicCompute | GpuCompute | SparsePECompute
    sparsity: SparsityFeature
    memory: tuple[MemoryLevel, ...]
    storage_format: str | None
    source: str
    description: str = ""

    def dram(self) -> MemoryLevel:
        """The outermost memory level (the last one listed)."""
        return self.memory[-1]

    def level(self, name: str) -> MemoryLevel | None:
        for lv in self.memory:
            if lv.name == name:
                return lv
        return None

    def dense(self) -> "HardwareConfig":
        """The same machine with sparsity support off: the baseline for speedups."""
        return dataclasses.replace(
            self, sparsity=SparsityFeature(kind="none"), storage_format="dense", name=self.name + "-dense"
        )

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.compute.peak_macs_per_cycle
