"""The vector unit of a systolic or sparse-PE machine: what runs a training step's non-GEMM work
(norms, activations, softmax, the optimizer, the sparsity method's top-k and re-masking).

Declared in the hardware file as ``compute.vector`` (docs/hwconfig.md "Vector unit"); the cost
model is accelsim/sim/vector.py. Two kinds:

- ``unit``: on-chip lanes beside the array, ``lanes`` elements per cycle at ``clock`` (default: the
  machine's clock), reading and writing through the machine's DRAM level;
- ``host``: the work is shipped to a host processor over a link of ``bandwidth`` (B/s units).

Both may give ``launch``, a fixed time per kernel (dispatch), default 0. The GPU family has no such
key: its SMs run vector work (accelsim/sim/vector.py). Light module: no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelsim.hw import units

VECTOR_KINDS = ("unit", "host")
VECTOR_KEYS = ("kind", "lanes", "clock", "bandwidth", "launch")
_ONLY = {"unit": ("kind", "lanes", "clock", "launch"), "host": ("kind", "bandwidth", "launch")}


@dataclass(frozen=True)
class VectorUnit:
    kind: str  # "unit" | "host"
    lanes: int = 0  # unit: elements per cycle of its clock
    clock_hz: float = 0.0  # unit: its clock; 0 = the machine's clock
    bandwidth_bytes_per_s: float = 0.0  # host: the link's bandwidth
    launch_s: float = 0.0  # fixed time per kernel


def parse_vector(ctx, c: dict, where: str = "compute") -> VectorUnit | None:
    """``compute.vector`` of a systolic / sparse-PE file, or None when the file declares none (its
    vector work is then reported as not simulated, accelsim/sim/vector.py)."""
    if "vector" not in c:
        return None
    key = f"{where}.vector"
    v = c["vector"]
    ctx.keys(v, key, VECTOR_KEYS, ("kind",))
    kind = ctx.choice(v, "kind", key, VECTOR_KINDS)
    for k in v:
        if k not in _ONLY[kind]:
            raise ctx.fail(f"{key}.{k}", f"not a key of a {kind} vector unit (valid: {', '.join(_ONLY[kind])})")
    launch = 0.0
    if "launch" in v:
        launch = ctx.unit(units.parse_time, v["launch"], f"{key}.launch")
        if launch < 0:
            raise ctx.fail(f"{key}.launch", f"must be >= 0, got {launch}")
    if kind == "unit":
        if "lanes" not in v:
            raise ctx.fail(f"{key}.lanes", "missing required key (elements per cycle)")
        clock = 0.0
        if "clock" in v:
            clock = ctx.unit(units.parse_frequency, v["clock"], f"{key}.clock")
        return VectorUnit(kind="unit", lanes=ctx.int_(v, "lanes", key), clock_hz=clock, launch_s=launch)
    if "bandwidth" not in v:
        raise ctx.fail(f"{key}.bandwidth", "missing required key (the host link, e.g. 16 GB/s)")
    raw = v["bandwidth"]
    if isinstance(raw, str) and ("cycle" in raw or "clk" in raw):
        raise ctx.fail(f"{key}.bandwidth", "a host's bandwidth is not in machine cycles: give B/s units (e.g. 16 GB/s)")
    bw = ctx.unit(units.parse_bandwidth, raw, f"{key}.bandwidth", word_bytes=1, clock_hz=1.0)
    return VectorUnit(kind="host", bandwidth_bytes_per_s=float(bw), launch_s=launch)
