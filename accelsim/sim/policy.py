"""Policy shared by the hardware families' cost models, written once (docs/architecture.md
"Family registry"): what a family returns (FamilyCost), the fastest candidate through the memory
engine, how structured weight deletion and N:M support combine, and what a compacted GEMM writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, TypeVar

C = TypeVar("C")


@dataclass
class FamilyCost:
    """What a family model returns for one op on one machine (docs/architecture.md)."""

    compute_cycles: int  # stall-free compute cycles (all tiles)
    effectual_macs: int
    sparse_operand: str | None
    fallback: str | None
    tiles: Any  # accelsim.sim.memory.TileStream: per-tile compute cycles and DRAM bytes
    fixed_cycles: int = 0  # e.g. GPU kernel launch overhead, added after the memory engine
    dram_bytes_dense: dict[str, int] | None = None
    compaction: str | None = None  # structured weight deletion applied (accelsim/sim/structure.py)
    # memory.run_tiles(tiles) through the machine's DRAM (no timeline) when the family already ran
    # it to choose among candidates (fastest); simulate_op then does not replay the stream again
    engine: Any = None


def fastest(candidates: Iterable[C], stream: Callable[[C], Any], *, bytes_per_cycle: float,
            latency_cycles: int, extra: Callable[[C], int] = lambda c: 0,
            tiebreak: Callable[[C], tuple] = lambda c: (),
            bound: Callable[[C], float] | None = None) -> tuple[C, Any, Any]:
    """The candidate with the least total cycles through memory.run_tiles (the engine, DRAM
    bandwidth and latency the op is then timed with) plus ``extra`` (e.g. launches); ties:
    ``tiebreak``, then the earlier candidate. Returns (candidate, its TileStream, its EngineResult).

    With ``bound`` (a lower bound on a candidate's total: the engine can neither compute faster
    than the compute cycles nor move bytes faster than the bandwidth), candidates are visited by
    bound and one whose bound exceeds the best total so far is not replayed -- the same result as
    replaying every candidate, fewer engine runs."""
    from accelsim.sim.memory import run_tiles

    cands = list(enumerate(candidates))
    if bound is not None:
        cands.sort(key=lambda ic: (bound(ic[1]), tiebreak(ic[1]), ic[0]))
    best = None
    for i, cand in cands:
        if best is not None and bound is not None and bound(cand) > best[0][0]:
            break  # sorted by bound: no later candidate can be faster
        st = stream(cand)
        eng = run_tiles(st, bytes_per_cycle=bytes_per_cycle, latency_cycles=latency_cycles)
        key = (eng.total_cycles + extra(cand), tiebreak(cand), i)
        if best is None or key < best[0]:
            best = (key, cand, st, eng)
    if best is None:
        raise ValueError("fastest: no candidates")
    return best[1], best[2], best[3]


def writes_whole_output(work) -> bool:
    """True where the op's output is not the GEMM's C but a scatter of it: conv dgrad's dX, which
    col2im assembles on chip (Workload.output_numel), so deleting C's rows or columns (zero taps)
    does not shrink what is written: dX still has to be written whole."""
    return work.conv is not None and work.pass_ == "dgrad"


def kept_output_numel(work, kept_c: int) -> int:
    """Output elements a compacted GEMM writes (structured weight deletion): its kept C elements
    (``kept_c``, all groups), at most the op's output; conv dgrad the whole dX (writes_whole_output)."""
    full = work.output_numel
    return full if writes_whole_output(work) else min(full, int(kept_c))


def nm_with_deletion(dims: list[tuple[int, int, int]], k: int, k_nm: int, n: int, m: int,
                     note: str, runner: str = "support runs") -> tuple[list[tuple[int, int, int]], str]:
    """The one rule for structured weight deletion (SSL, structure.compact) on a machine whose N:M
    support runs this op (docs/sources.md "SSL"): N:M groups are formed along the full K of the pass
    (kernels.nm_compliance), so deleting all-zero K lines would re-form them -- K deletion and N:M are
    exclusive and the N:M support takes priority (the mask was trained for it); deleting M or N lines
    removes whole output rows/columns and leaves the remaining K groups N:M, so that part combines.
    ``dims``: the compacted (M', N', K') per group; returns (M', N', K_nm) per group and the note
    (``runner`` names the N:M hardware in it: "PEs run", "mma.sp runs")."""
    if any(d[2] != k for d in dims):
        note += f"; K deletion not used: the {n}:{m} {runner} the full K (exclusive along K)"
    return [(mm, nn, k_nm) for mm, nn, _ in dims], note
