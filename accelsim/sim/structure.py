"""Structured (SSL-style) weight sparsity as a smaller dense GEMM.

SSL (Wen et al. 2016; docs/sources.md "SSL") zeroes whole groups of a weight so that they can be deleted:
filter-wise groups W[k,:,:,:] and shape-wise groups W[:,c,r,s]. In im2col GEMM form a deleted group
is an all-zero row or column of the weight operand, and deleting those leaves a smaller *dense*
GEMM that any dense machine runs faster. Only the operand whose trace role is "weight" is compacted:
its zeros are known before the op runs, so a compiler can delete them; activation and gradient zeros
are dynamic and cannot be compacted this way.

Where the weight's lines go per pass (the lowering registry, accelsim/sim/lowering.py, per group):

| kind/pass   | weight as GEMM | all-zero filters (K/g) shrink | all-zero (c,r,s) taps shrink |
|-------------|----------------|-------------------------------|------------------------------|
| conv fwd    | B (taps x filters)  | N                        | K (reduction)                |
| conv dgrad  | B = W^T (filters x taps) | K (reduction)       | N                            |
| conv wgrad  | no weight operand: nothing to compact                                        |
| matmul/bmm  | the used (transposed applied) 2-D slice of a/b: a's rows shrink M, b's
                columns shrink N, reduction lines all-zero in a weight operand shrink K          |

Masks are small (weights), so this unpacks the weight mask with numpy. Groups (conv groups, bmm
batch) are analysed separately: each group keeps its own counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class Compaction:
    """The GEMM of one op after deleting the weight operand's all-zero rows and columns."""

    operand: str  # trace operand name of the compacted weight ("+"-joined if both are weights)
    full: tuple[int, int, int]  # (M, N, K) per group before compaction
    kept: tuple[tuple[int, int, int], ...]  # (M', N', K') of each group, in group order
    note: str  # human-readable, e.g. "weight: 32 of 64 filters ... all zero: GEMM N 64->32, K 576->288"
    # the other (activation / gradient) operand, None if both are weights, and per group the fraction
    # of its stored elements the compacted GEMM still reads: conv fwd the input channels with a kept
    # (c,r,s) tap, conv dgrad the grad_output channels of kept filters, matmul the kept K lines
    act: str | None = None
    act_kept: tuple[Fraction, ...] = ()

    @property
    def act_fraction(self) -> Fraction:
        """Fraction of the activation operand's whole stored tensor still read (groups are equal shares)."""
        return sum(self.act_kept, Fraction(0)) / len(self.act_kept) if self.act_kept else Fraction(1)

    @property
    def uniform(self) -> tuple[int, int, int]:
        """(M', N', K') that covers every group (largest per dim): the shape of a uniform batched launch."""
        return tuple(max(d[i] for d in self.kept) for i in range(3))  # type: ignore[return-value]

    def operand_elems(self, side: str) -> int:
        """Elements of GEMM operand `side` ("a": M'xK', "b": K'xN', "c": M'xN') summed over groups."""
        i, j = {"a": (0, 2), "b": (2, 1), "c": (0, 1)}[side]
        return int(sum(d[i] * d[j] for d in self.kept))


def _lines(mask2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows with a non-zero, columns with a non-zero) of a (..., rows, cols) bool mask."""
    return mask2d.any(axis=-1), mask2d.any(axis=-2)


def _dims_note(full: tuple[int, int, int], kept: tuple[tuple[int, int, int], ...]) -> str:
    """'GEMM N 64->32, K 576->288'; with groups that differ 'N 2->1..2' (fewest..most kept) per group."""
    ch = []
    for i, nm in enumerate("MNK"):
        lo, hi = min(d[i] for d in kept), max(d[i] for d in kept)
        if (lo, hi) != (full[i], full[i]):
            ch.append(f"{nm} {full[i]}->{lo}" if lo == hi else f"{nm} {full[i]}->{lo}..{hi}")
    per = f" (per group, {len(kept)} groups)" if len(kept) > 1 else ""
    return "GEMM " + ", ".join(ch) + per


def compact(work) -> Compaction | None:
    """The compacted GEMM of `work` (a workload.Workload), or None when the op has no weight
    operand, no all-zero weight line, or an all-zero weight (nothing would be left to run; the op
    is then costed as it is)."""
    weights = [nm for nm in (work.a, work.b) if work.role_of(nm) == "weight"]
    if not weights:
        return None
    g, m, n, k = work.groups, work.m, work.n, work.k
    if work.conv is not None:
        if work.pass_ not in ("fwd", "dgrad"):
            return None
        name = "weight"
        geo = work.conv
        w = work.mask(name).reshape(g, geo.k // g, -1)  # (groups, filters, (c,r,s) taps)
        filt, taps = _lines(w)
        nf, nt = filt.sum(axis=1), taps.sum(axis=1)  # kept per group
        cg = geo.c // g
        # taps are (c, r, s) with c slowest in the stored weight: a channel is read if any tap is kept
        chan = taps.reshape(g, cg, -1).any(axis=2).sum(axis=1)
        if work.pass_ == "fwd":
            act, act_kept = "input", tuple(Fraction(int(x), cg) for x in chan)
        else:
            act, act_kept = "grad_output", tuple(Fraction(int(x), geo.k // g) for x in nf)
        if not nf.any():
            return None
        if work.pass_ == "fwd":
            kept = [(m, int(a), int(b)) for a, b in zip(nf, nt)]
        else:
            kept = [(m, int(b), int(a)) for a, b in zip(nf, nt)]
        zf, zt = int(filt.size - nf.sum()), int(taps.size - nt.sum())
        if zf == 0 and zt == 0:
            return None
        comp = Compaction(name, (m, n, k), tuple(kept), "")
        note = (f"{name}: {zf} of {filt.size} filters and {zt} of {taps.size} (c,r,s) taps all zero: "
                + _dims_note((m, n, k), comp.kept))
        return Compaction(name, (m, n, k), tuple(kept), note, act, act_kept)
    # matmul / bmm: per group (bmm batch) the used 2-D slices
    rows_m = np.ones((g, m), bool)
    cols_n = np.ones((g, n), bool)
    red_k = np.ones((g, k), bool)
    for nm in weights:
        used = work.used_mask(nm).reshape(g, *work.used_mask(nm).shape[-2:])
        r, c = _lines(used)
        if nm == work.a:  # (M, K)
            rows_m &= r
            red_k &= c
        else:  # (K, N)
            red_k &= r
            cols_n &= c
    km, kn, kk = rows_m.sum(axis=1), cols_n.sum(axis=1), red_k.sum(axis=1)
    if not ((km > 0) & (kn > 0) & (kk > 0)).any():  # nothing left to run: cost the op as it is
        return None
    kept = tuple((int(a), int(b), int(c)) for a, b, c in zip(km, kn, kk))
    if all(d == (m, n, k) for d in kept):
        return None
    zero = [f"{g * d - int(x.sum())} of {g * d} {lbl}" for lbl, d, x in
            (("M rows", m, km), ("N columns", n, kn), ("K lines", k, kk)) if g * d != int(x.sum())]
    comp = Compaction("+".join(weights), (m, n, k), kept, "")
    note = f"{comp.operand}: {' and '.join(zero)} all zero: " + _dims_note((m, n, k), comp.kept)
    others = [nm for nm in (work.a, work.b) if nm not in weights]
    act = others[0] if others else None
    act_kept = tuple(Fraction(int(x), k) for x in kk) if act else ()
    return Compaction(comp.operand, (m, n, k), kept, note, act, act_kept)
