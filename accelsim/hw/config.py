"""Typed hardware description (see docs/hwconfig.md for the YAML and docs/architecture.md).

Configs are frozen dataclasses so that a loaded machine cannot change under a running simulation and
``HardwareConfig.dense()`` can derive the dense baseline with ``dataclasses.replace``. Each family's
compute dataclass lives with its declaration (accelsim/hw/families/); the names are re-exported here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

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
class HardwareConfig:
    name: str
    family: str  # a registered family (accelsim/hw/family.py): systolic | gpu | sparse_pe
    clock_hz: float
    compute: object  # the family's compute dataclass (accelsim/hw/families/)
    sparsity: SparsityFeature
    memory: tuple[MemoryLevel, ...]
    storage_format: str | None
    source: str
    description: str = ""

    def dram(self) -> MemoryLevel:
        """The off-chip level (role "dram", the last one listed)."""
        return self.role("dram")

    def role(self, name: str) -> MemoryLevel:
        """The level filling memory role `name` of the family (accelsim/hw/family.py). The loader
        checks every role is there; a config built by hand without one is a HardwareConfigError."""
        for lv in self.memory:
            if lv.name == name:
                return lv
        from accelsim.errors import HardwareConfigError

        have = ", ".join(lv.name[:40] for lv in self.memory[:8])
        raise HardwareConfigError(f"{self.source or self.name}: memory: no level {name!r} (levels: {have})")

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


_FAMILY_COMPUTE = {"SystolicCompute": "systolic", "GpuCompute": "gpu", "SparsePECompute": "sparse_pe"}


def __getattr__(name: str):  # PEP 562: the compute dataclasses and FAMILIES, from the registry
    if name in _FAMILY_COMPUTE:
        import importlib

        return getattr(importlib.import_module(f"accelsim.hw.families.{_FAMILY_COMPUTE[name]}"), name)
    if name == "FAMILIES":
        from accelsim.hw.family import names

        return names()
    raise AttributeError(f"module 'accelsim.hw.config' has no attribute {name!r}")
