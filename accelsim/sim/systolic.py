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
"""

from __future__ import annotations

import math

import numpy as np

from accelsim.hw.config import HardwareConfig
from accelsim.sim.kernels import effectual_macs, nm_compliance
from accelsim.sim.memory import TileStream, split_bytes
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
    k_run = k
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
                k_run = nm_reduced_k(k, sp.n, sp.m)
    folds, per_fold = fold_cycles(m, n, k_run, comp.rows, comp.cols, comp.dataflow)
    compute = g * folds * per_fold
    stream, dense_bytes = _fold_stream(work, hw, folds, per_fold, k_run, sparse_side)
    return FamilyCost(compute_cycles=compute, effectual_macs=effectual_macs(work),
                      sparse_operand=(work.a if sparse_side == "a" else work.b) if sparse_side else None,
                      fallback=fallback, tiles=stream, dram_bytes_dense=dense_bytes)


def _cap(hw: HardwareConfig, name: str) -> int:
    lv = hw.level(name)
    if lv is None:
        return 0
    return lv.capacity_bytes if lv.capacity_bytes is not None else 2**62


def _fold_stream(work: Workload, hw: HardwareConfig, folds: int, per_fold: int, k_run: int,
                 sparse_side: str | None) -> tuple[TileStream, dict[str, int]]:
    comp = hw.compute
    e = comp.element_bytes
    sp = hw.sparsity
    m, n, g = work.m, work.n, work.groups
    rows, cols = comp.rows, comp.cols
    dense = {"a": _operand_bytes(work, "a", e) // g, "b": _operand_bytes(work, "b", e) // g}
    size = dict(dense)
    if sparse_side is not None:
        # N:M storage: the kept K'/K values plus metadata_bits per kept value (FACTS.md, A100 / N:M)
        kept = size[sparse_side] * k_run // max(work.k, 1)
        size[sparse_side] = kept + (kept // e) * sp.metadata_bits // 8
    out_bytes = work.output_numel * e // g  # per group
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
    load_bytes = {work.a: loads["a"], work.b: loads["b"]}
    if psum.any():
        load_bytes["psum"] = psum
    if g > 1:  # groups run one after another, each with the same fold pattern
        compute = np.tile(compute, g)
        load_bytes = {kk: np.tile(v, g) for kk, v in load_bytes.items()}
        store = np.tile(store, g)
    dense_bytes = {work.a: dense["a"] * g, work.b: dense["b"] * g, "output": out_bytes * g}
    return TileStream(compute_cycles=compute, load_bytes=load_bytes, store_bytes=store), dense_bytes
