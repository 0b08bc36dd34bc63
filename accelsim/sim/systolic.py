"""Systolic arrays (SCALE-Sim 3.0 semantics), optionally with N:M sparse PEs.

Compute: SCALE-Sim 3.0's stall-free count (scalesim/compute/systolic_compute_{os,ws,is}.py; table
in FACTS.md "SCALE-Sim 3.0 systolic compute"). For a GEMM (M, N, K) on an R x C array:

  dataflow  rows map  cols map  streamed T  folds                cycles per fold
  os        M         N         K           ceil(M/R)*ceil(N/C)  R + C + T - 2
  ws        K         N         M           ceil(K/R)*ceil(N/C)  2R + C + T - 2
  is        K         M         N           ceil(K/R)*ceil(M/C)  2R + C + T - 2

compute_cycles = groups * folds * cycles per fold (SCALE-Sim prints that minus 1 as "Total Cycles",
see scalesim_total_cycles). Partly filled folds cost a full fold.

N:M sparse PEs (sparsity kind nm): SCALE-Sim's layer-wise N:M mode keeps N of every M along K, so
the layer runs as a dense GEMM with K' = N*floor(K/M) + min(K mod M, N) (FACTS.md). accelsim only
does that where the named operand's mask really is N:M along K of this pass (nm_compliance == 1);
otherwise the op runs dense and the fallback says why.

Data movement: folds run in order (outer loop over the dimension mapped to rows for os, over the K
tiles for ws/is; inner over the other). Each fold's DRAM loads are the operand slices it needs that
are not already in the operand's SRAM (GEMM A -> ifmap_sram, B -> filter_sram, C -> ofmap_sram,
as in SCALE-Sim's GEMM naming): an operand that fits its SRAM is fetched once; otherwise the slice
that stays put across the inner loop is fetched once per outer iteration and the other one every
fold. Slice bytes are the operand's bytes read (Workload.read_numel: the stored tensor, or the GEMM
operand where a strided conv skips input pixels) times the slice's share of the GEMM dimension (the
halo that overlapping conv windows share is not modelled). Partial sums of ws/is (K split over
folds) stay in ofmap_sram if C fits, else spill: stored every fold and re-loaded ("psum").

Structured weight sparsity (SSL, FACTS.md "SSL"): in the sparse run (not the dense baseline) the
weight operand's all-zero rows/columns are deleted (structure.compact) and each group runs as the
smaller dense GEMM (M', N', K'): folds and per-fold cycles from the table above on the compacted
dims, weight bytes = its kept rows x columns. N:M PEs: deleting M/N lines keeps the remaining K
groups N:M, so that part combines; deleting K lines re-forms the groups along K, so K deletion and
N:M are exclusive: where the operand is N:M the PEs take priority and the note says K deletion was
not used.
"""

from __future__ import annotations

import math

import numpy as np

from accelsim.hw.config import HardwareConfig
from accelsim.sim.kernels import effectual_macs, nm_compliance
from accelsim.sim.memory import TileStream, split_bytes
from accelsim.sim.structure import compact
from accelsim.sim.workload import FamilyCost, Workload, nm_reason, resolve_operand


def fold_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> tuple[int, int]:
    """(folds, cycles per fold) of SCALE-Sim 3.0's stall-free model (module docstring table)."""
    if dataflow == "os":
        return math.ceil(m / rows) * math.ceil(n / cols), rows + cols + k - 2
    if dataflow == "ws":
        return math.ceil(k / rows) * math.ceil(n / cols), 2 * rows + cols + m - 2
    if dataflow == "is":
        return math.ceil(k / rows) * math.ceil(m / cols), 2 * rows + cols + n - 2
    raise ValueError(f"unknown dataflow {dataflow!r}")


def scalesim_total_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str) -> int:
    """SCALE-Sim's reported stall-free "Total Cycles" for one GEMM: folds * per fold - 1."""
    f, c = fold_cycles(m, n, k, rows, cols, dataflow)
    return f * c - 1


def nm_reduced_k(k: int, n: int, m: int) -> int:
    """K' = N*floor(K/M) + min(K mod M, N): the reduction left after keeping N of every M."""
    return n * (k // m) + min(k % m, n)


def _operand_bytes(work: Workload, side: str, elem: int) -> int:
    nm = work.a if side == "a" else work.b
    return work.read_numel(nm) * elem


def op_cost(work: Workload, hw: HardwareConfig, *, sparse: bool) -> FamilyCost:
    """Cycles and per-fold DRAM traffic of one op on a systolic array (module docstring)."""
    comp = hw.compute
    m, n, k, g = work.m, work.n, work.k, work.groups
    sp = hw.sparsity
    fallback = None
    sparse_side = None
    k_nm = k
    if sparse and sp.kind == "nm":
        side, why = resolve_operand(work, sp.operand)
        if side is None:
            fallback = why
        else:
            name = work.a if side == "a" else work.b
            comp_frac = nm_compliance(work, side, sp.n, sp.m)
            if comp_frac < 1.0:
                fallback = nm_reason(name, work.kind, work.pass_, sp.n, sp.m, comp_frac)
            else:
                sparse_side = side
                k_nm = nm_reduced_k(k, sp.n, sp.m)
    cpt = compact(work) if sparse else None
    dims = list(cpt.kept) if cpt is not None else [(m, n, k)] * g
    note = cpt.note if cpt is not None else None
    if sparse_side is not None:
        # N:M groups are formed along the full K of this pass (nm_compliance); deleting all-zero K
        # lines would re-form them, so the two are exclusive along K and the machine's N:M PEs take
        # priority (the mask was trained for them). Deleting M/N lines removes whole groups and keeps
        # the rest N:M, so that part combines.
        if cpt is not None and any(d[2] != k for d in dims):
            note += f"; K deletion not used: the {sp.n}:{sp.m} PEs run the full K (exclusive along K)"
        dims = [(mm, nn, k_nm) for mm, nn, _ in dims]
    if cpt is not None and sparse_side is None and fallback is not None:
        # sparsity was exploited (by deletion): the N:M reason moves into the note, so that
        # fallback keeps meaning "this op ran without sparsity support"
        note += f"; {fallback}"
        fallback = None
    compute = _compute(dims, comp)
    stream, dense_bytes = _op_stream(work, hw, dims, sparse_side, k_nm, cpt)
    exploited = None
    if sparse_side:
        exploited = work.a if sparse_side == "a" else work.b
    elif cpt is not None:
        exploited = cpt.operand
    cost = FamilyCost(compute_cycles=compute, effectual_macs=effectual_macs(work),
                      sparse_operand=exploited, fallback=fallback, tiles=stream,
                      dram_bytes_dense=dense_bytes, compaction=note)
    return cost


def _compute(dims: list[tuple[int, int, int]], comp) -> int:
    """Stall-free cycles of the groups' GEMMs, run one after another (a group left with no rows
    or columns after compaction has no folds)."""
    total = 0
    for mm, nn, kk in dims:
        folds, per_fold = fold_cycles(mm, nn, kk, comp.rows, comp.cols, comp.dataflow)
        total += folds * per_fold
    return total


def _op_stream(work: Workload, hw: HardwareConfig, dims: list[tuple[int, int, int]],
               sparse_side: str | None, k_nm: int, cpt=None) -> tuple[TileStream, dict[str, int]]:
    """The op's folds, group after group. Per-group bytes: the full GEMM's per-group share
    (Workload.read_numel / groups), bounded by the compacted operand's elements (a compacted weight
    moves exactly its kept rows x columns; an activation the same min(tensor, GEMM operand) bound and
    only the part a kept line reads: Compaction.act_kept, e.g. input channels with a kept tap).
    Output: the compacted C (M' x N'); conv dgrad's dX stays whole (deleted taps are col2im-scattered
    zeros, dX still has to be written)."""
    e = hw.compute.element_bytes
    sp = hw.sparsity
    g = work.groups
    full = {"a": _operand_bytes(work, "a", e) // g, "b": _operand_bytes(work, "b", e) // g}
    out_full = work.output_numel * e // g
    dgrad = work.conv is not None and work.pass_ == "dgrad"
    parts = []
    cache = {}
    act_side = None if cpt is None or cpt.act is None else ("a" if cpt.act == work.a else "b")
    for gi, d in enumerate(dims):
        if 0 in d:  # a group compacted away entirely: no folds, no traffic
            continue
        frac = cpt.act_kept[gi] if act_side else 1
        key = (d, frac)
        if key not in cache:
            mm, nn, kk = d
            kb = work.k if sparse_side is not None else kk  # N:M: bytes of the full K, compressed below
            size = {"a": min(full["a"], mm * kb * e), "b": min(full["b"], kb * nn * e)}
            if act_side is not None and sparse_side is None:
                size[act_side] = min(size[act_side], int(full[act_side] * frac))
            if sparse_side is not None:
                # N:M storage: the kept K'/K values plus metadata_bits per kept value (FACTS.md, A100 / N:M)
                kept = size[sparse_side] * k_nm // max(work.k, 1)
                size[sparse_side] = kept + (kept // e) * sp.metadata_bits // 8
            out = out_full if dgrad else min(out_full, mm * nn * e)
            cache[key] = _fold_stream(hw, mm, nn, kk, size, out)
        parts.append(cache[key])
    names = {"a": work.a, "b": work.b, "psum": "psum"}
    compute = np.concatenate([p[0] for p in parts])
    store = np.concatenate([p[2] for p in parts])
    load_bytes = {names[s]: np.concatenate([p[1][s] for p in parts]) for s in ("a", "b", "psum")}
    if not load_bytes["psum"].any():
        del load_bytes["psum"]
    dense_bytes = {work.a: full["a"] * g, work.b: full["b"] * g, "output": out_full * g}
    return TileStream(compute_cycles=compute, load_bytes=load_bytes, store_bytes=store), dense_bytes


def _cap(hw: HardwareConfig, name: str) -> int:
    lv = hw.level(name)
    if lv is None:
        return 0
    return lv.capacity_bytes if lv.capacity_bytes is not None else 2**62


def _fold_stream(hw: HardwareConfig, m: int, n: int, k_run: int, size: dict[str, int],
                 out_bytes: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Per-fold (compute, loads {"a", "b", "psum"}, stores) of one group's GEMM (module docstring)."""
    comp = hw.compute
    rows, cols = comp.rows, comp.cols
    folds, per_fold = fold_cycles(m, n, k_run, rows, cols, comp.dataflow)
    df = comp.dataflow
    # (outer, inner) tile counts and which side is the outer-stationary operand
    if df == "os":
        n_out, n_in = math.ceil(m / rows), math.ceil(n / cols)
        outer_side, inner_side = "a", "b"
    elif df == "ws":
        n_out, n_in = math.ceil(k_run / rows), math.ceil(n / cols)
        outer_side, inner_side = "a", "b"  # A slice (all M x K-tile) fixed for the inner loop over N
    else:
        n_out, n_in = math.ceil(k_run / rows), math.ceil(m / cols)
        outer_side, inner_side = "b", "a"  # B slice (K-tile x all N) fixed for the inner loop over M
    assert n_out * n_in == folds
    caps = {"a": _cap(hw, "ifmap_sram"), "b": _cap(hw, "filter_sram")}
    ocap = _cap(hw, "ofmap_sram")
    t = folds
    loads = {"a": np.zeros(t, np.int64), "b": np.zeros(t, np.int64)}
    store = np.zeros(t, np.int64)
    psum = np.zeros(t, np.int64)
    idx = np.arange(t)
    i_of, j_of = idx // n_in, idx % n_in
    # outer operand: one slice per outer iteration, loaded at the first fold of that iteration
    o_slice = size[outer_side] / n_out
    first_inner = j_of == 0
    if size[outer_side] <= caps[outer_side] or o_slice <= caps[outer_side]:
        loads[outer_side][first_inner] = split_bytes(size[outer_side], n_out)
    else:  # slice does not fit: fetch it again every fold
        loads[outer_side][:] = split_bytes(size[outer_side], n_out)[i_of]
    # inner operand
    if df in ("os",):
        in_parts = split_bytes(size[inner_side], n_in)  # B slice depends on j only
        if size[inner_side] <= caps[inner_side]:
            loads[inner_side][i_of == 0] = in_parts
        else:
            loads[inner_side][:] = in_parts[j_of]
    else:  # ws: B slice (K-tile i, N-tile j) unique per fold; is: A slice (K-tile i, M-tile j) unique
        loads[inner_side][:] = split_bytes(size[inner_side], t)
    # output
    if df == "os":
        store[:] = split_bytes(out_bytes, t)
    else:
        parts = split_bytes(out_bytes, n_in)[j_of]
        if n_out == 1 or out_bytes <= ocap:
            store[i_of == n_out - 1] = parts[i_of == n_out - 1]
        else:  # partial sums spill: write every fold, read back from the second K tile on
            store[:] = parts
            psum[i_of > 0] = parts[i_of > 0]
    compute = np.full(t, per_fold, np.int64)
    return compute, {"a": loads["a"], "b": loads["b"], "psum": psum}, store
