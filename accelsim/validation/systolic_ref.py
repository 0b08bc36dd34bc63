"""An independent re-implementation of SCALE-Sim 3.0's stall-free systolic cycle count.

Written from the fold table in docs/sources.md "SCALE-Sim 3.0 systolic compute" (itself read
from scalesim/compute/systolic_compute_{os,ws,is}.py and topology_utils.py), deliberately without
importing accelsim.sim, so the validation suite checks accelsim's model against a second reading
of the same source and both against SCALE-Sim's own output (data/*.csv).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from pathlib import Path

DATAFLOWS = ("os", "ws", "is")


@dataclass(frozen=True)
class TopoLayer:
    """One row of a SCALE-Sim conv topology CSV (batch 1, no padding)."""
    name: str
    ifmap_h: int
    ifmap_w: int
    filt_h: int
    filt_w: int
    channels: int
    filters: int
    stride_h: int
    stride_w: int

    @property
    def ofmap(self) -> tuple[int, int]:
        # topology_utils.topo_calc_hyperparams: E = ceil((H - R + stride) / stride), no padding.
        # Note: this is ceil, not PyTorch's floor((H - R) / stride) + 1; they differ when
        # (H - R) is not a multiple of the stride (e.g. 14x14 input, 1x1 filter, stride 2 -> 8).
        return (ceil((self.ifmap_h - self.filt_h + self.stride_h) / self.stride_h),
                ceil((self.ifmap_w - self.filt_w + self.stride_w) / self.stride_w))

    @property
    def gemm(self) -> tuple[int, int, int]:
        """(M, N, K) = (output pixels, filters, R*S*C), docs/sources.md "SCALE-Sim 3.0 systolic compute"."""
        e_h, e_w = self.ofmap
        return e_h * e_w, self.filters, self.filt_h * self.filt_w * self.channels


def read_topology(path: str | Path) -> list[TopoLayer]:
    """Parse a SCALE-Sim topology CSV the way SCALE-Sim does: skip the header line and blank lines,
    drop the field after the last comma, a missing column stride repeats the row stride."""
    layers = []
    with open(path) as fh:
        for i, row in enumerate(fh):
            row = row.strip()
            if i == 0 or not row:
                continue
            f = [x.strip() for x in row.split(",")[:-1]]
            v = [int(x) for x in f[1:]]
            if len(v) == 7:
                v.append(v[6])
            layers.append(TopoLayer(f[0], *v[:8]))
    return layers


def fold_cycles(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """Stall-free cycles of one GEMM (M, N, K) on a rows x cols array (the fold table, module docstring).

    OS: rows<-M, cols<-N, streams K, cycles per fold R + C + T - 2.
    WS: rows<-K, cols<-N, streams M; IS: rows<-K, cols<-M, streams N; per fold 2R + C + T - 2
    (the extra R is the stationary operand's fill). Partly filled folds cost a full fold.
    """
    if dataflow == "os":
        sr, sc, t, fill = m, n, k, 0
    elif dataflow == "ws":
        sr, sc, t, fill = k, n, m, rows
    elif dataflow == "is":
        sr, sc, t, fill = k, m, n, rows
    else:
        raise ValueError(f"unknown dataflow {dataflow!r}")
    folds = ceil(sr / rows) * ceil(sc / cols)
    return folds * (fill + rows + cols + t - 2)


def scalesim_total_cycles(dataflow: str, rows: int, cols: int, m: int, n: int, k: int) -> int:
    """What SCALE-Sim prints as 'Total Cycles' for a stall-free layer: the count minus 1
    (its cycle counter is the index of the last busy cycle; docs/sources.md "SCALE-Sim 3.0 systolic compute")."""
    return fold_cycles(dataflow, rows, cols, m, n, k) - 1
