"""Declaration of the sparse_pe family (TensorDash, SparTen-like; cost model: accelsim/sim/sparse_pe.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from accelsim.hw.family import DRAM, Family, Role, data_type, register
from accelsim.hw.families.vector_unit import VectorUnit, parse_vector


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
    # channel run starts a new row of `lanes` (dense cycles ceil(round_up(C,16)*R*S/16), docs/sources.md
    # "SWAT's accelerator: TensorDash"). False (bitmap inner-join designs, SparTen): the reduction is packed contiguously,
    # ceil(K/lanes). validate() derives it from sparsity.kind (two_sided -> False); dense() keeps it,
    # so a machine's dense baseline uses the machine's own layout.
    tap_padded: bool = True
    vector: VectorUnit | None = None  # runs the non-GEMM work (vector_unit.py); None: not declared

    @property
    def peak_macs_per_cycle(self) -> int:
        return self.tiles * self.pe_rows * self.pe_cols * self.lanes


def parse_compute(ctx, c) -> SparsePECompute:
    ctx.keys(c, "compute", FAMILY.compute_keys, ("tiles", "pe_rows", "pe_cols", "lanes", "data_type"))
    dt, eb = data_type(ctx, c)
    return SparsePECompute(tiles=ctx.int_(c, "tiles", "compute"), pe_rows=ctx.int_(c, "pe_rows", "compute"),
                           pe_cols=ctx.int_(c, "pe_cols", "compute"), lanes=ctx.int_(c, "lanes", "compute"),
                           data_type=dt, element_bytes=eb, vector=parse_vector(ctx, c))


# The TensorDash scheduler holds one lane row (a PE's lanes at one step) in a 64-bit word with a
# spare bit (accelsim/sim/kernels.py, TensorDash section): one-sided machines have at most 63 lanes.
MAX_ONE_SIDED_LANES = 63


def validate(hw, fail):
    """A bitmap inner-join PE (two_sided) packs the reduction contiguously (SparsePECompute.tap_padded);
    a one-sided (TensorDash) PE has at most MAX_ONE_SIDED_LANES lanes."""
    if hw.sparsity.kind == "one_sided" and hw.compute.lanes > MAX_ONE_SIDED_LANES:
        raise fail("compute.lanes", f"at most {MAX_ONE_SIDED_LANES} for one_sided sparsity (the scheduler "
                                    f"keeps a PE's lanes in one 64-bit word), got {hw.compute.lanes}")
    if hw.sparsity.kind == "two_sided" and hw.compute.tap_padded:
        hw = dataclasses.replace(hw, compute=dataclasses.replace(hw.compute, tap_padded=False))
    return hw


FAMILY = register(Family(
    name="sparse_pe",
    compute_keys=("tiles", "pe_rows", "pe_cols", "lanes", "data_type", "element_bytes", "vector"),
    parse_compute=parse_compute,
    sparsity_kinds=("none", "one_sided", "two_sided"),
    roles=(Role("buffer", "on-chip operand buffer"), Role(DRAM, "off-chip memory", on_chip=False)),
    cost_module="accelsim.sim.sparse_pe",
    validate=validate,
))
