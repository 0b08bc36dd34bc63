"""Hardware descriptions: YAML -> typed, validated :class:`HardwareConfig` (docs/hwconfig.md)."""

from accelsim.hw.config import (
    GpuCompute,
    HardwareConfig,
    MemoryLevel,
    SparsePECompute,
    SparsityFeature,
    SystolicCompute,
)
from accelsim.hw.loader import load_hw, parse_hw

__all__ = ["GpuCompute", "HardwareConfig", "MemoryLevel", "SparsePECompute", "SparsityFeature",
           "SystolicCompute", "load_hw", "parse_hw"]
