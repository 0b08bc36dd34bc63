"""Declaration of the systolic family (cost model: accelsim/sim/systolic.py)."""

from __future__ import annotations

from dataclasses import dataclass

from accelsim.hw.config import DATAFLOWS
from accelsim.hw.family import DRAM, Family, Role, data_type, register
from accelsim.hw.families.vector_unit import VectorUnit, parse_vector


@dataclass(frozen=True)
class SystolicCompute:
    """A rows x cols PE array (SCALE-Sim's ArrayHeight x ArrayWidth) and its dataflow."""

    rows: int
    cols: int
    dataflow: str  # os | ws | is
    data_type: str
    element_bytes: int
    vector: VectorUnit | None = None  # runs the non-GEMM work (vector_unit.py); None: not declared

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.rows * self.cols


def parse_compute(ctx, c) -> SystolicCompute:
    ctx.keys(c, "compute", FAMILY.compute_keys, ("rows", "cols", "dataflow", "data_type"))
    dt, eb = data_type(ctx, c)
    return SystolicCompute(rows=ctx.int_(c, "rows", "compute"), cols=ctx.int_(c, "cols", "compute"),
                           dataflow=ctx.choice(c, "dataflow", "compute", DATAFLOWS),
                           data_type=dt, element_bytes=eb, vector=parse_vector(ctx, c))


FAMILY = register(Family(
    name="systolic",
    compute_keys=("rows", "cols", "dataflow", "data_type", "element_bytes", "vector"),
    parse_compute=parse_compute,
    sparsity_kinds=("none", "nm"),
    # SCALE-Sim's three operand SRAMs: GEMM A, B, C (its GEMM naming)
    roles=(Role("ifmap_sram", "GEMM A operand SRAM"), Role("filter_sram", "GEMM B operand SRAM"),
           Role("ofmap_sram", "GEMM C and partial-sum SRAM"), Role(DRAM, "off-chip memory", on_chip=False)),
    cost_module="accelsim.sim.systolic",
))
