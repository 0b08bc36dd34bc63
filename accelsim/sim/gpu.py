"""GPU tensor cores with 2:4 structured sparsity (A100-style; docs/sources.md "NVIDIA A100": Mishra et al.
2021 arXiv 2104.08378, the PTX ISA sparse-matrix storage, the Ampere whitepaper).

A lowered op C[M,N] += A[M,K] @ B[K,N] (x groups) runs as one kernel launch of CTA tiles:

* Tiling. CTA tile (tm, tn, tk), one of ``cta_tiles``: each candidate is costed through the memory
  engine and the fastest is used (gemm_cost; a library picks a kernel per problem size). Tiles =
  groups * ceil(M/tm) * ceil(N/tn); a partial tile costs a full one (tile quantisation) and so does
  a partial K slice (K runs in ceil(K/tk) main-loop steps on zero-filled data). Tiles are issued in
  waves of SMs * ctas_per_sm in a swizzled raster (bands of SWIZZLE = 8 column tiles, row after row
  inside a band; cta_order). The CTAs of a wave run in lockstep (an ASSUMPTION of this model).
* MMA rate. An SM does ``tensor_cores_per_sm * dense_macs_per_cycle_per_core`` dense MACs per cycle
  (A100 fp16: 4 x 256 = 1024). ``mma.sp`` issues ``sparse_mma_shape`` (m16n8k32) in the time of the
  dense ``mma_shape`` (m16n8k16), so a 2:4 A operand multiplies the rate by the ratio of the two
  shapes' MACs (2 on A100: the compressed operand halves the K work). One CTA main-loop step alone on
  an SM takes ceil(tm*tn*tk / rate) cycles; the CTAs resident on one SM share its tensor cores, so a
  wave step takes (CTAs on the busiest SM) = ceil(CTAs in wave / SMs) times that (wave quantisation).
* Split-K. K may be split into s slices (the usual cuBLAS/CUTLASS remedy for small-M*N GEMMs such
  as conv wgrad), but only where that is faster, the extra launch included: gemm_search costs each
  CTA tile with s = 1 and with every s of split_candidates (powers of two up to min(ceil(K/tk),
  SMs), plus the old fill-the-SMs choice min(ceil(K/tk), SMs // tiles)) and keeps the fastest. The
  candidate set does not depend on M or N and only grows with K, so a GEMM that grows is never
  offered a cheaper plan it could not use before (cost monotone in M, N, K; tests/test_gpu.py
  sweeps it). Forcing split-K whenever tiles < SMs made M512 N128 K128 dearer than M512 N512 K128
  (issue 11). Each slice writes an fp32 (4-byte)
  partial tile; a second kernel (one more launch) reads the s partials and writes the output. The
  partials stay in L2 when s*M*N*4 bytes fit there, else they go to HBM and back. The reduction
  kernel is fenced (a new launch) and moves its bytes at the L2 bandwidth; its additions (s*M*N on
  the CUDA cores) are not modelled.
* HBM traffic with L2 reuse (derivation). Every CTA streams an A panel (its tm rows x K) and a B
  panel (K x its tn columns) through shared memory. CTAs of one wave run together, so a panel shared
  by several CTAs of a wave is fetched from HBM once per wave (L2 hit for the others). Across waves
  L2 (``capacity`` of the last shared level before DRAM) is an LRU cache at panel granularity
  (l2_panel_misses): a panel touched again is a hit if the distinct panel bytes touched since its
  last use fit. L2 hits cost no latency (ASSUMPTION). Panel bytes scale by min(1, stored tensor
  elements / GEMM operand elements): an implicit-GEMM convolution reads each input element from HBM
  once per pass over it, not once per overlapping im2col window (1 for matmuls, dgrad's grad_output
  and weights). The output (M x N, same scaling for dgrad's col2im) is written once,
  ``element_bytes`` per element (gemm_cost's ``out_bytes`` can say otherwise, e.g. INT32 results of
  an INT8 GEMM).
* L2 bandwidth (when the L2 level gives one; A100: 5120 B/clk, whitepaper). Per main-loop step the
  wave's CTAs read their A and B slices from L2, so a step takes the larger of the MMA time and
  those bytes / the L2 bandwidth -- with mma.sp the dense B slice often decides. The epilogue (each
  CTA writes its output tile through shared memory into global memory, CUTLASS's threadblock
  epilogue, while the tensor cores wait) costs the wave's output bytes / the L2 bandwidth, added to
  its last chunk; the split-K reduction kernel reads all partials and writes the output at it.
* Prologue. CTAs are not persistent: a wave's CTAs start when the previous wave's have exited and
  only then issue their first loads, so each wave's first chunk is a fenced engine tile (no
  prefetch across it; memory.py): its HBM transfer and the DRAM latency are exposed per wave.
* Kernel model (issue 11). ``kernel_model: ideal`` (the default) is the bound above: main-loop
  steps at the MMA rate, one launch per kernel. ``kernel_model: library`` adds what separates
  measured library kernels from the silicon, dense and 2:4 separately: each main-loop step takes
  ceil(MACs / (rate * mainloop_efficiency)) cycles, and each GEMM kernel pays ``kernel_fixed``
  (setup, prologue/epilogue overheads) on top of its launch, and each CTA pays ``cta_fixed``
  (non-persistent kernels: a CTA's own set-up, pipeline fill before its first MMA and epilogue
  beyond the bytes modelled above, serial on its SM, so a wave pays it once per CTA on its busiest
  SM; it is what makes a short K gain little from 2:4 -- Mishra et al.'s 1.23x at K = 1280 and
  pytorch#90119's 1.23-1.28x at K = 768 against 1.6x at K = 3072). The 2:4 library may have its own kernel
  list: ``sparse_cta_tile`` (CTA tiles its 2:4 kernels use; default: cta_tile) and
  ``sparse_split_k: false`` (cuSPARSELt's default algorithm without the cusparseLtMatmulSearch
  autotuning runs one kernel, no split-K: pytorch#96147 measures m1024 k10240 n256 at 135.7 us 2:4 vs
  84.5 dense, and n512 at 137.0 -- the 2:4 time does not fall with N, only K counts). The parameters
  are fitted by accelsim/validation/fit_gpu_library.py to issue 11's calibration data (the shipped
  files say which); split-K's candidate set still only grows with K, so cost stays monotone.
* Sparse A stored compressed: the 2:4 operand is kept as half its values plus a 2-bit position per
  kept value (PTX sparse storage; formats.storage_bits("nm")), 9/16 of dense for fp16. A weight is
  compressed once, offline (not charged). A 2:4 operand that is not a weight (runtime sparsity:
  activations, gradients) must be compressed before every use (cuSPARSELt's cusparseLtSpMMACompress,
  torch's to_sparse_semi_structured): the library model charges that kernel (compress_cycles) as
  fixed cycles of the op; the ideal bound does not.
* Memory engine. The op becomes a TileStream with one tile per (wave, chunk of main-loop steps):
  compute = the chunk's step cycles (plus the epilogue on a wave's last chunk), loads = the chunk's
  share of the wave's HBM bytes, stores = the wave's output after its last chunk. Chunks hold enough
  steps that the next chunk's loads arrive in time (pipeline_chunk: Little's law, capped by two
  chunks of slices fitting shared memory). The engine (memory.run_tiles, double-buffered, fences at
  wave starts) overlaps the next chunk's HBM loads with the current MMAs, so bandwidth and latency
  stalls fall out of it. Kernel launch overhead (``launch_overhead_s``) is FamilyCost.fixed_cycles.
* When sparsity is used. mma.sp takes only its first operand sparse (docs/sources.md "NVIDIA A100"). The rate applies only
  when a candidate operand is 2:4 along the reduction dim of *this* pass
  (kernels.nm_compliance == 1.0) and M, N, K are multiples of 32 / element_bytes (cuSPARSELt: 16 for
  fp16/bf16, 32 for int8; docs/sources.md "NVIDIA A100"). If the 2:4 operand is the GEMM's B, the model computes
  C^T = B^T A^T (M and N swap), so the YAML's ``operand: a`` (mma.sp's A) admits either GEMM
  operand; ``weight`` / ``activation`` restrict by role. Otherwise the dense rate, with
  FamilyCost.fallback saying why.
* Structured weight sparsity (SSL, docs/sources.md "SSL"). In the sparse run (not the dense baseline) the
  weight's all-zero rows/columns are deleted (structure.compact) and the op runs as the smaller
  dense GEMM; groups run as one uniform batched launch at the largest kept (M', N', K') of any
  group. Weight panels scale to the kept rows x columns, the output to the kept M' x N' (conv dgrad:
  the whole dX). Deleting lines and 2:4 mma.sp are kept exclusive here (deleted lines change the
  M, N, K multiples and the groups of 4 along K that cuSPARSELt needs): where an operand qualifies
  for mma.sp, 2:4 runs and the compaction note says the deletion was not used.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np

from accelsim.hw.config import HardwareConfig, SparsityFeature
from accelsim.hw.units import ceil_cycles
from accelsim.sim.memory import TileStream, run_tiles
from accelsim.sim.policy import FamilyCost, fastest, kept_output_numel, nm_with_deletion
from accelsim.sim.structure import compact

PARTIAL_BYTES = 4  # split-K partial sums are fp32 (tensor-core accumulators)
# CTA raster: bands of this many N tiles (cta_order). An assumption in the spirit of CUTLASS's
# threadblock swizzles, which raster tiles in narrow bands for L2 locality; without any swizzle a
# wave of a plain M-fastest raster spans every A panel of a large GEMM.
SWIZZLE = 8


@dataclass(frozen=True)
class GemmPlan:
    """How one GEMM maps onto the GPU (all counts exact; see the module docstring)."""

    m: int
    n: int
    k: int
    groups: int
    tiles_m: int
    tiles_n: int
    split_k: int  # K slices per output tile (1 = no split-K)
    ctas: int  # groups * tiles_m * tiles_n * split_k
    ksteps: int  # main-loop steps per CTA: ceil(ceil(K/tk) / split_k)
    wave_size: int  # SMs * ctas_per_sm
    waves: int
    step_cycles: int  # one CTA main-loop step alone on an SM
    rate_factor: int  # 2 for 2:4 mma.sp on A100, 1 dense
    tile: tuple[int, int, int]  # the CTA tile (tm, tn, tk) of this plan


def mma_rate_factor(gpu) -> int:
    """How many times more MACs mma.sp issues than the dense mma in the same time (A100: m16n8k32 vs
    m16n8k16 -> 2); load_hw checks it is whole (accelsim/hw/families/gpu.py)."""
    return gpu.sparse_rate_factor


def sparse_dim_multiple(element_bytes: int) -> int:
    """cuSPARSELt's dimension constraint: multiples of 16 for 2-byte, 32 for 1-byte types (docs/sources.md
    "NVIDIA A100"). ASSUMPTION: 32 / element_bytes extends that rule to 4-byte types (8 for tf32); docs/sources.md
    gives no figure for them."""
    return max(1, 32 // int(element_bytes))


def fill_split(tiles: int, ksteps_total: int, sms: int) -> int:
    """The split that gives every SM a CTA when there are fewer tiles than SMs:
    min(ceil(K/tk), SMs // tiles), else 1."""
    return max(1, min(ksteps_total, sms // tiles)) if 0 < tiles < sms else 1


def split_candidates(m: int, n: int, k: int, groups: int, gpu, tile: tuple[int, int, int]) -> tuple[int, ...]:
    """K splits gemm_search tries for one CTA tile (module docstring, "Split-K"): 1, the powers of
    two up to min(ceil(K/tk), SMs) and the fill-the-SMs split, ascending, without repeats."""
    tm, tn, tk = tile
    kt = max(1, -(-k // tk))
    cap = min(kt, gpu.sms)
    out = {1, fill_split(groups * -(-m // tm) * -(-n // tn), kt, gpu.sms)}
    s = 2
    while s <= cap:
        out.add(s)
        s *= 2
    return tuple(sorted(out))


def library_tiles(gpu, sparse_a: bool) -> tuple[tuple[int, int, int], ...]:
    """CTA tiles the kernel search may pick from: the 2:4 library's own (``sparse_cta_tile``, library
    kernel model only) for a 2:4 A, else ``cta_tile``."""
    if sparse_a and gpu.kernel_model == "library" and gpu.sparse_cta_tiles:
        return gpu.sparse_cta_tiles
    return gpu.cta_tiles


def splits_k(gpu, sparse_a: bool) -> bool:
    """Whether the kernel may split K: always, except a 2:4 kernel of a library model whose
    ``sparse_split_k`` is false (cuSPARSELt's default algorithm)."""
    return not (sparse_a and gpu.kernel_model == "library" and not gpu.sparse_split_k)


def plan_gemm(m: int, n: int, k: int, groups: int, gpu, *, sparse_a: bool,
              tile: tuple[int, int, int] | None = None, split: int | None = None) -> GemmPlan:
    """Tiles, split-K, waves and the per-step MMA cycles of one GEMM with CTA tile ``tile`` (default:
    the first of ``cta_tiles``) and ``split`` K slices (default: fill_split, the fill-the-SMs
    choice; gemm_search tries split_candidates; module docstring)."""
    tile = tuple(tile) if tile is not None else gpu.cta_tiles[0]
    tm, tn, tk = tile
    tiles_m, tiles_n = -(-m // tm), -(-n // tn)
    tiles = groups * tiles_m * tiles_n
    ksteps_total = max(1, -(-k // tk))
    split = fill_split(tiles, ksteps_total, gpu.sms) if split is None else max(1, min(int(split), ksteps_total))
    ksteps = -(-ksteps_total // split)
    wave_size = gpu.sms * gpu.ctas_per_sm
    ctas = tiles * split
    return GemmPlan(m, n, k, groups, tiles_m, tiles_n, split, ctas, ksteps, wave_size,
                    -(-ctas // wave_size), _step_cycles(tile, gpu, sparse_a), mma_rate_factor(gpu) if sparse_a else 1,
                    tile)


def _step_cycles(tile: tuple[int, int, int], gpu, sparse_a: bool) -> int:
    """One CTA main-loop step alone on an SM: its tile's MACs at the SM's MMA rate (x the library
    model's main-loop efficiency), rounded up."""
    tm, tn, tk = tile
    rate = gpu.tensor_cores_per_sm * gpu.dense_macs_per_cycle_per_core * (mma_rate_factor(gpu) if sparse_a else 1)
    eff = gpu.mainloop_efficiency[1 if sparse_a else 0]
    return -(-(tm * tn * tk) // rate) if eff == 1.0 else ceil_cycles(tm * tn * tk / (rate * eff))


def cta_order(plan: GemmPlan, swizzle: int | None = None) -> tuple[np.ndarray, ...]:
    """(split, group, row tile, col tile) of each CTA in launch order: splits slowest, then groups,
    then bands of ``swizzle`` column (N) tiles; inside a band the columns of one row tile are
    adjacent and rows follow each other (CUTLASS-style threadblock swizzle, so a wave covers a
    compact block of the output and shares panels through L2)."""
    return _cta_order(plan.tiles_m, plan.tiles_n, plan.split_k, plan.groups, SWIZZLE if swizzle is None else swizzle)


def _cta_order(tm_: int, tn_: int, split_k: int, groups: int, w: int) -> tuple[np.ndarray, ...]:
    row, col = np.meshgrid(np.arange(tm_, dtype=np.int64), np.arange(tn_, dtype=np.int64), indexing="ij")
    row, col = row.ravel(), col.ravel()
    band = col // w
    width = np.minimum(w, tn_ - band * w)
    pos = band * w * tm_ + row * width + col % w  # a bijection onto 0 .. tm_*tn_-1
    order = np.empty_like(pos)
    order[pos] = np.arange(len(pos), dtype=np.int64)  # = argsort(pos): its inverse permutation
    row, col = row[order], col[order]
    reps = split_k * groups
    sg = np.repeat(np.arange(reps, dtype=np.int64), tm_ * tn_)
    split, g = np.divmod(sg, groups)
    return split, g, np.tile(row, reps), np.tile(col, reps)


class _CtaLayout(NamedTuple):
    """What gemm_traffic reads of a plan's launch order, per CTA (read-only: cached and shared)."""

    split: np.ndarray
    row: np.ndarray
    col: np.ndarray
    wave: np.ndarray
    a_key: np.ndarray  # the CTA's A panel: (split, group, row tile)
    b_key: np.ndarray  # its B panel: (split, group, col tile), numbered after every A panel
    first_a: np.ndarray  # ascending: the first CTA of each A panel
    first_b: np.ndarray


# Layouts of at most this many CTAs are cached (64 B per CTA: at most 128 x 8192 x 64 B = 64 MiB held);
# larger ones are rare in a search and built each time.
_LAYOUT_CACHE_CTAS = 8192


def _cta_layout(tiles_m: int, tiles_n: int, split_k: int, groups: int, wave_size: int) -> _CtaLayout:
    """cta_order and the panels it touches, per launch shape (GEMMs of a trace share shapes: a
    ResNet-50 search builds ~3 plans per distinct shape), cached where small."""
    if groups * tiles_m * tiles_n * split_k <= _LAYOUT_CACHE_CTAS:
        return _cta_layout_cached(tiles_m, tiles_n, split_k, groups, wave_size)
    return _build_layout(tiles_m, tiles_n, split_k, groups, wave_size)


def _build_layout(tiles_m: int, tiles_n: int, split_k: int, groups: int, wave_size: int) -> _CtaLayout:
    split, g, row, col = _cta_order(tiles_m, tiles_n, split_k, groups, SWIZZLE)
    wave = np.arange(len(row), dtype=np.int64) // wave_size
    sg = split * groups + g
    a_key = sg * tiles_m + row
    b_key = split_k * groups * tiles_m + sg * tiles_n + col
    first_a = np.sort(np.unique(a_key, return_index=True)[1])
    first_b = np.sort(np.unique(b_key, return_index=True)[1])
    out = _CtaLayout(split, row, col, wave, a_key, b_key, first_a, first_b)
    for x in out:
        x.setflags(write=False)
    return out


_cta_layout_cached = functools.lru_cache(maxsize=128)(_build_layout)


def a_row_bytes(kk, element_bytes: int, compressed: bool):
    """Bytes of one row of kk values of the A operand: dense kk*e, or 2:4-compressed: half the
    values plus a 2-bit index per kept value = kk*(e/2 + 1/8) (formats.storage_bits("nm"); exact for
    kk a multiple of 4). Works on arrays."""
    return kk * (element_bytes / 2 + 1 / 8) if compressed else kk * element_bytes


@dataclass
class GemmTraffic:
    """Per-wave HBM bytes (derivation in the module docstring) and L2->SM bytes per wave step."""

    a: np.ndarray  # int64 per wave: A panels fetched from HBM
    b: np.ndarray  # int64 per wave: B panels
    out: np.ndarray  # int64 per wave: output (or split-K partials) written at the wave's end
    epilogue: np.ndarray  # int64 per wave: bytes the wave's CTAs write out of their SMs (into L2)
    l2_step: np.ndarray  # float per wave: bytes all CTAs of the wave read from L2 per main-loop step
    final_load: int  # split-K: partials the reduction kernel reads from HBM (0 when they stay in L2)
    final_store: int  # split-K: the reduced output the reduction kernel writes


def l2_panel_misses(wave: np.ndarray, key: np.ndarray, nbytes: np.ndarray, n_waves: int,
                    capacity: int | None, *, method: str = "auto") -> np.ndarray:
    """Which (CTA, panel) touches fetch the panel from HBM: a bool per entry, True on exactly one
    entry per (wave, panel) that misses.

    L2 as an LRU cache at wave and panel granularity (LRU stack distance, Mattson et al. 1970): the
    CTAs of a wave touch their panels together; a panel last touched in wave t is still in L2 in
    wave w if the distinct panel bytes touched in waves t..w (itself included) fit ``capacity``.
    First touches always miss; with no L2 (``capacity`` None) every wave fetches its panels.

    Vectorised over waves (the stack distance depends on the touches only, not on what hit). Distinct
    panel bytes in waves t..w = the bytes of the touches (w', panel) with t <= w' <= w whose previous
    touch of that panel is before t. For one reuse distance d = w - t, a touch in wave w' with previous
    touch p counts in the windows starting at t in [max(p + 1, w' - d), w']: an interval, so every
    window of length d + 1 is one difference-array cumsum. A GEMM's swizzled raster has few distinct
    d (<= 10 on GPT-2's 8192 x 50257 logits); where there are many, the per-wave loop
    (_l2_panel_misses_loop, the same result) is cheaper. Bytes are summed as integers in eighths
    (panel bytes are multiples of 1/8: compressed rows), so the order of summation cannot matter.
    ``method``: "auto" (that choice), "vector" or "loop" (tests compare the two)."""
    if method == "loop":
        return _l2_panel_misses_loop(wave, key, nbytes, n_waves, capacity)
    out = np.zeros(len(key), dtype=bool)
    if not len(key):
        return out
    nkeys, first, pw, pk, size = _panel_touches(wave, key, nbytes)
    eighths = np.rint(size * 8)
    if capacity is None:  # no L2: every (wave, panel) fetches
        out[first] = True
        return out
    by_key = np.lexsort((pw, pk))  # the touches of each panel in wave order
    prev_sorted = np.where(np.r_[False, pk[by_key][1:] == pk[by_key][:-1]], np.r_[-1, pw[by_key][:-1]], -1)
    prev = np.empty_like(pw)
    prev[by_key] = prev_sorted
    reuse = prev >= 0
    dist = (pw - prev)[reuse]
    ds = np.unique(dist)
    u = len(pw)
    # cost model for the choice only (both paths are exact): numpy calls ~ 30-40 us, elements ~ 10 ns
    if (eighths != size * 8).any() or int(pw[-1]) >= n_waves or (
            method == "auto" and len(ds) * (30e-6 + (u + n_waves) * 1e-8) > n_waves * (40e-6 + nkeys * 5e-9)):
        return _l2_panel_misses_loop(wave, key, nbytes, n_waves, capacity)
    w8 = eighths[pk]
    window = np.zeros(int(reuse.sum()), dtype=np.float64)
    qt = prev[reuse]  # each reuse's previous touch: the window's first wave
    for d in ds.tolist():
        lo = np.maximum(prev + 1, pw - d)
        diff = (np.bincount(lo, weights=w8, minlength=n_waves + 1)
                - np.bincount(pw + 1, weights=w8, minlength=n_waves + 1))
        span = np.cumsum(diff)  # span[t]: distinct panel eighths in waves t .. t + d
        sel = dist == d
        window[sel] = span[qt[sel]]
    miss = np.ones(u, dtype=bool)
    miss[reuse] = window > 8 * float(capacity)
    out[first[miss]] = True
    return out


def _panel_touches(wave: np.ndarray, key: np.ndarray, nbytes: np.ndarray):
    """The distinct (wave, panel) touches of l2_panel_misses' entries (at least one): (number of
    panel keys, each touch's first entry, its wave, its panel -- sorted by wave, then panel -- and
    every panel's bytes)."""
    nkeys = int(key.max()) + 1
    pair, first = np.unique(wave * nkeys + key, return_index=True)  # sorted by wave, then key
    size = np.zeros(nkeys, dtype=np.float64)
    size[key] = nbytes
    return nkeys, first, pair // nkeys, pair % nkeys, size


def _l2_panel_misses_loop(wave: np.ndarray, key: np.ndarray, nbytes: np.ndarray, n_waves: int,
                          capacity: int | None) -> np.ndarray:
    """l2_panel_misses wave by wave (its first form; the fallback for plans with many distinct reuse
    distances, and the oracle of tests/test_gpu_l2_vector.py)."""
    out = np.zeros(len(key), dtype=bool)
    if not len(key):
        return out
    nkeys, first, pw, pk, size = _panel_touches(wave, key, nbytes)
    cap = -1.0 if capacity is None else float(capacity)
    last = np.full(nkeys, -1, dtype=np.int64)
    bounds = np.searchsorted(pw, np.arange(n_waves + 1))
    for w in range(n_waves):
        lo, hi = bounds[w], bounds[w + 1]
        if lo == hi:
            continue
        p = pk[lo:hi]
        t = last[p]
        miss = t < 0
        reuse = ~miss
        if reuse.any():
            seen = last >= 0
            # bytes of every panel whose last touch is at or after t (suffix sums over waves) ...
            by_last = np.bincount(last[seen], weights=size[seen], minlength=w)
            suffix = np.cumsum(by_last[::-1])[::-1]
            # ... plus this wave's panels last touched before t (or never)
            order = np.argsort(t, kind="stable")
            cum = np.concatenate([[0.0], np.cumsum(size[p][order])])
            tr = t[reuse]
            window = suffix[tr] + cum[np.searchsorted(t[order], tr, side="left")]
            miss[reuse] = window > cap
        out[first[lo:hi][miss]] = True
        last[p] = w
    return out


def gemm_traffic(plan: GemmPlan, gpu, l2_capacity: int | None, *, compressed_a: bool,
                 scale_a: Fraction | int = 1, scale_b: Fraction | int = 1, scale_out: Fraction | int = 1,
                 out_bytes: int | None = None) -> GemmTraffic:
    """HBM traffic per wave. ``scale_*``: unique-data factors min(1, tensor elements / GEMM operand
    elements) of an implicit-GEMM convolution (1 for matmuls). ``out_bytes``: bytes per output
    element (default element_bytes: the output has the inputs' type)."""
    if plan.waves == 1:
        one = _traffic_one_wave(plan, gpu, l2_capacity, compressed_a, scale_a, scale_b, scale_out, out_bytes)
        if one is not None:
            return one
    return _traffic_arrays(plan, gpu, l2_capacity, compressed_a=compressed_a, scale_a=scale_a, scale_b=scale_b,
                           scale_out=scale_out, out_bytes=out_bytes)


# Sums of panel bytes are exact below this many eighths of a byte (float64 holds integers exactly to
# 2^53; the array path sums in float64), so the closed form below equals the array path.
_EXACT_EIGHTHS = 2**52


def _traffic_one_wave(plan: GemmPlan, gpu, l2_capacity: int | None, compressed_a: bool, scale_a, scale_b,
                      scale_out, out_bytes: int | None) -> GemmTraffic | None:
    """gemm_traffic of a one-wave plan in closed form (two thirds of a ResNet-50 search's plans): the
    same numbers as _traffic_arrays without per-CTA arrays. Every CTA runs in wave 0, so every A
    panel (split, group, row tile) and B panel is touched there for the first time: one miss each
    (l2_panel_misses), whatever the L2 capacity. Summed over the panels, the row tiles' valid rows
    add up to M, the column tiles' to N and the slices' K lengths to K (split * ksteps * tk >= K), so
    the wave fetches G*M rows of K values of A and G*N columns of K values of B and writes G*M*N
    outputs (split-K: split*G*M*N partials); per main-loop step its CTAs read
    split*G*(tiles_n*M rows + tiles_m*N columns) of tk values from L2. Counted in exact integers (eighths of a byte: compressed rows); None where a sum
    could leave float64's exact range (the array path then answers, as before)."""
    e = gpu.element_bytes
    eo = e if out_bytes is None else int(out_bytes)
    g, m, n, k, s = plan.groups, plan.m, plan.n, plan.k, plan.split_k
    tk = plan.tile[2]
    row8 = (4 * e + 1) if compressed_a else 8 * e  # eighths of a byte per A value (a_row_bytes)
    a8, b8 = g * m * k * row8, g * n * k * 8 * e
    l2_8 = s * g * (plan.tiles_n * m * tk * row8 + plan.tiles_m * n * tk * 8 * e)
    elems = g * m * n
    if max(a8, b8, l2_8, 8 * elems * max(eo, PARTIAL_BYTES) * s) >= _EXACT_EIGHTHS:
        return None
    a_w = np.array([_ceil_scaled(a8, scale_a)], dtype=np.int64)
    b_w = np.array([_ceil_scaled(b8, scale_b)], dtype=np.int64)
    final_load = final_store = 0
    if s == 1:
        out_w = np.array([_ceil_scaled(8 * elems * eo, scale_out)], dtype=np.int64)
        epi = out_w.copy()
    else:
        partials = s * elems * PARTIAL_BYTES
        if l2_capacity is not None and partials <= l2_capacity:
            out_w = np.zeros(1, dtype=np.int64)  # partials stay in L2
        else:
            out_w = np.array([partials], dtype=np.int64)  # every slice's CTAs write a partial tile
            final_load = partials
        final_store = _ceil_scaled(8 * elems * eo, scale_out)
        epi = np.array([partials], dtype=np.int64)
    return GemmTraffic(a_w, b_w, out_w, epi, np.array([l2_8 / 8], dtype=np.float64), int(final_load), final_store)


def _ceil_scaled(eighths: int, scale: Fraction | int) -> int:
    """ceil(eighths / 8 * scale) exactly (_scaled of one value)."""
    if not isinstance(scale, (int, Fraction)):
        scale = Fraction(scale)
    return -(-eighths * scale.numerator // (8 * scale.denominator))  # ints have both too


def _traffic_arrays(plan: GemmPlan, gpu, l2_capacity: int | None, *, compressed_a: bool,
                    scale_a: Fraction | int = 1, scale_b: Fraction | int = 1, scale_out: Fraction | int = 1,
                    out_bytes: int | None = None, oracle: bool = False) -> GemmTraffic:
    """gemm_traffic from per-CTA arrays (any plan). Where every A and B panel of the GEMM fits L2
    together, no touch after a panel's first can miss (l2_panel_misses: a reuse window never holds
    more than all panels), so the fetches are the first touches, read off the cached launch order
    (_cta_layout) without the LRU pass. ``oracle``: every plan through l2_panel_misses (the tests
    compare the two, and the one-wave closed form with it)."""
    tm, tn, tk = plan.tile
    e = gpu.element_bytes
    eo = e if out_bytes is None else int(out_bytes)
    m, n, k, s = plan.m, plan.n, plan.k, plan.split_k
    lay = _cta_layout(plan.tiles_m, plan.tiles_n, plan.split_k, plan.groups, plan.wave_size)
    split, row, col, wave = lay.split, lay.row, lay.col, lay.wave
    rows_valid = np.minimum(tm, m - row * tm)
    cols_valid = np.minimum(tn, n - col * tn)
    k_len = np.clip(k - split * plan.ksteps * tk, 0, plan.ksteps * tk)  # K elements of each slice
    row8 = (4 * e + 1) if compressed_a else 8 * e  # eighths of a byte per A value (a_row_bytes)
    if not oracle and l2_capacity is not None and plan.groups * k * (m * row8 + n * 8 * e) <= 8 * l2_capacity:
        fa, fb = lay.first_a, lay.first_b  # all panels (G*M rows and G*N columns of K) fit L2
        a_w = np.bincount(wave[fa], weights=rows_valid[fa] * a_row_bytes(k_len[fa], e, compressed_a),
                          minlength=plan.waves)
        b_w = np.bincount(wave[fb], weights=cols_valid[fb] * k_len[fb] * e, minlength=plan.waves)
    else:
        # A and B panels in one key space: (split, group, row tile) for A, then (split, group, col tile)
        key = np.concatenate([lay.a_key, lay.b_key])
        nbytes = np.concatenate([rows_valid * a_row_bytes(k_len, e, compressed_a), cols_valid * k_len * e])
        waves2 = np.concatenate([wave, wave])
        fetched = l2_panel_misses(waves2, key, nbytes, plan.waves, l2_capacity)
        is_a = np.arange(2 * plan.ctas) < plan.ctas
        a_w = np.bincount(waves2[fetched & is_a], weights=nbytes[fetched & is_a], minlength=plan.waves)
        b_w = np.bincount(waves2[fetched & ~is_a], weights=nbytes[fetched & ~is_a], minlength=plan.waves)
    a_w = _scaled(a_w, scale_a)
    b_w = _scaled(b_w, scale_b)

    # per-wave sums by bincount (float64: exact, every sum is a whole number or a multiple of 1/8
    # far below 2^53)
    out_elems = np.rint(np.bincount(wave, weights=rows_valid * cols_valid, minlength=plan.waves)).astype(np.int64)
    final_load = final_store = 0
    if s == 1:
        out_w = _scaled(out_elems * eo, scale_out)
    else:
        partials = s * plan.groups * m * n * PARTIAL_BYTES
        if l2_capacity is not None and partials <= l2_capacity:
            out_w = np.zeros(plan.waves, dtype=np.int64)  # partials stay in L2
        else:
            out_w = out_elems * PARTIAL_BYTES
            final_load = partials
        final_store = int(_scaled(np.array([plan.groups * m * n * eo]), scale_out)[0])

    # SM -> L2: every CTA writes its output tile (split-K: its fp32 partial tile), whether or not
    # the bytes go on to HBM
    epi = out_w if s == 1 else out_elems * PARTIAL_BYTES
    # L2 -> SM: each CTA reads its own A and B slices every step (im2col tiles, no unique scaling)
    l2 = np.bincount(wave, weights=rows_valid * a_row_bytes(tk, e, compressed_a) + cols_valid * tk * e,
                     minlength=plan.waves).astype(np.float64)
    return GemmTraffic(a_w, b_w, out_w, np.asarray(epi, dtype=np.int64), l2, int(final_load), final_store)


def _scaled(nbytes: np.ndarray, scale: Fraction | int) -> np.ndarray:
    """ceil(nbytes * scale) exactly (nbytes are multiples of 1/8: compressed rows), per wave."""
    scale = Fraction(scale)
    eighths = np.rint(np.asarray(nbytes, dtype=np.float64) * 8).astype(np.int64)
    den = 8 * scale.denominator
    if den < 2**62 and scale.numerator < 2**62 and (
            not len(eighths) or int(np.abs(eighths).max()) * scale.numerator < 2**62):  # no int64 overflow
        return -((-eighths * scale.numerator) // den)
    return np.array([-(-int(x) * scale.numerator // den) for x in eighths], dtype=np.int64)


def gemm_stream(plan: GemmPlan, traffic: GemmTraffic, gpu, names: tuple[str, str],
                l2_bytes_per_cycle: float = math.inf, latency_cycles: int = 0,
                hbm_bytes_per_cycle: float = math.inf, smem_bytes: int | None = None,
                cta_cycles: int = 0) -> TileStream:
    """The op as a TileStream: each wave's main loop cut into chunks of ``chunk`` steps (one stream
    tile each: the chunk's MMA cycles, its share of the wave's HBM loads), the wave's output stored
    after its last chunk; split-K appends the reduction kernel's traffic as a last tile. Chunk size:
    pipeline_chunk. The loads are spread over a wave's chunks in proportion to their steps."""
    ks = plan.ksteps
    busy, step, chunk = _wave_steps(plan, traffic, gpu, l2_bytes_per_cycle, latency_cycles, hbm_bytes_per_cycle,
                                    smem_bytes)
    nch = -(-ks // chunk)
    cum = np.minimum(np.arange(1, nch + 1, dtype=np.int64) * chunk, ks)  # steps done after each chunk
    steps = np.diff(cum, prepend=0)
    compute = (step[:, None] * steps[None, :]).ravel()

    def spread(per_wave: np.ndarray) -> np.ndarray:
        # exact integer split: chunk j gets floor(B*cum_j/ks) - floor(B*cum_{j-1}/ks)
        upto = (per_wave[:, None] * cum[None, :]) // ks
        return np.diff(upto, axis=1, prepend=0).ravel()

    loads = {names[0]: spread(traffic.a), names[1]: spread(traffic.b)}
    store = np.zeros(plan.waves * nch, dtype=np.int64)
    store[nch - 1 :: nch] = traffic.out
    # Epilogue: after its main loop a CTA converts its accumulators and writes the output tile
    # through shared memory to global memory (CUTLASS epilogue); the tensor cores wait meanwhile.
    # Its SM side runs at the L2 bandwidth shared by the wave; the HBM write-back is the posted store.
    compute[nch - 1 :: nch] += _l2_cycles(traffic.epilogue, l2_bytes_per_cycle)
    # library model: each CTA's fixed time (cta_fixed), serial on its SM: a wave pays it once per
    # CTA on its busiest SM, with its first chunk
    if cta_cycles:
        compute[0::nch] += busy * int(cta_cycles)
    # Prologue: a wave's CTAs are new CTAs; they issue their first loads once resident, after the
    # previous wave's CTAs have exited, so nothing of wave w+1 is prefetched during wave w.
    fence = np.zeros(plan.waves * nch, dtype=np.bool_)
    fence[nch::nch] = True
    if plan.split_k > 1:
        # the reduction kernel (a second launch, fenced too) reads the s partial tiles through L2
        # and writes the output
        red = plan.split_k * plan.groups * plan.m * plan.n * PARTIAL_BYTES + traffic.final_store
        compute = np.append(compute, _l2_cycles(np.array([red]), l2_bytes_per_cycle))
        store = np.append(store, traffic.final_store)
        loads = {nm: np.append(v, 0) for nm, v in loads.items()}
        loads["partials"] = np.zeros(len(compute), dtype=np.int64)
        loads["partials"][-1] = traffic.final_load
        fence = np.append(fence, True)
    return TileStream(compute, loads, store, fence)


def _wave_steps(plan: GemmPlan, traffic: GemmTraffic, gpu, l2_bytes_per_cycle: float, latency_cycles: int,
                hbm_bytes_per_cycle: float, smem_bytes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Per wave the CTAs on its busiest SM and one main-loop step's cycles, and the steps per chunk
    (gemm_stream's tiling; _traffic_bound reads the same)."""
    ks = plan.ksteps
    busy = np.full(plan.waves, -(-plan.wave_size // gpu.sms), dtype=np.int64)  # CTAs on the busiest SM
    if plan.waves:
        busy[-1] = -(-(plan.ctas - (plan.waves - 1) * plan.wave_size) // gpu.sms)
    step = busy * plan.step_cycles  # x one CTA's step
    if math.isfinite(l2_bytes_per_cycle):
        step = np.maximum(step, np.ceil(traffic.l2_step / l2_bytes_per_cycle).astype(np.int64))
    tm, tn, tk = plan.tile
    stage = tm * a_row_bytes(tk, gpu.element_bytes, plan.rate_factor > 1) + tk * tn * gpu.element_bytes
    max_chunk = ks if smem_bytes is None else max(1, int(smem_bytes // (2 * gpu.ctas_per_sm * stage)))
    load_step = (traffic.a + traffic.b) / ks / hbm_bytes_per_cycle  # HBM cycles per main-loop step
    return busy, step, pipeline_chunk(step, load_step, int(latency_cycles), min(ks, max_chunk))


def pipeline_chunk(step: np.ndarray, load_step: np.ndarray, latency: int, max_chunk: int) -> int:
    """Main-loop steps per engine tile: the fewest c with c*step >= latency + c*load_step in every
    wave, at most ``max_chunk`` (two chunks of A and B slices must fit shared memory; a wave whose
    step is not longer than its loads is bandwidth-bound and gets ``max_chunk``).

    Why (derivation): the engine double-buffers one tile ahead, so tile i+2's load is issued when
    tile i ends and must arrive (its transfer plus the DRAM latency) before tile i+1 ends. That is
    Little's law for the bytes in flight, and it is what Ampere's multistage cp.async main loop is
    for: enough K slices in flight to cover the latency (CUTLASS "multistage" pipelines)."""
    if max_chunk <= 1 or not step.size:
        return max(1, int(max_chunk))
    slack = step.astype(np.float64) - np.asarray(load_step, dtype=np.float64)
    if (slack <= 0).any():
        return int(max_chunk)
    need = int(np.ceil(latency / slack).max()) if latency > 0 else 1
    return int(min(max_chunk, max(1, need)))


def _l2_cycles(nbytes: np.ndarray, l2_bytes_per_cycle: float) -> np.ndarray:
    """Cycles to move ``nbytes`` through L2 at its bandwidth (0 where L2 has none given)."""
    if not math.isfinite(l2_bytes_per_cycle):
        return np.zeros(len(nbytes), dtype=np.int64)
    return np.ceil(np.asarray(nbytes, dtype=np.float64) / l2_bytes_per_cycle).astype(np.int64)


# Times to cycles: ceil_cycles (hw/units.py), not math.ceil, because seconds x Hz is a float product that
# may land an ulp above a whole number (4.9 us x 1.41 GHz = 6909.000000000001 would be 6910 cycles).
def launch_cycles(hw) -> int:
    """Cycles of one kernel launch (``launch_overhead``), rounded up."""
    return ceil_cycles(hw.compute.launch_overhead_s * hw.clock_hz)


def kernel_fixed_cycles(hw, sparse_a: bool) -> int:
    """The library model's fixed cycles per GEMM kernel (``kernel_fixed``, dense or 2:4; 0 in the ideal
    model), on top of the launch."""
    return ceil_cycles(hw.compute.kernel_fixed_s[1 if sparse_a else 0] * hw.clock_hz)


def cta_fixed_cycles(hw, sparse_a: bool) -> int:
    """The library model's fixed cycles per CTA (``cta_fixed``, dense or 2:4; 0 in the ideal model)."""
    return ceil_cycles(hw.compute.cta_fixed_s[1 if sparse_a else 0] * hw.clock_hz)


def compress_cycles(hw, elements: int) -> int:
    """Cycles of one run-time 2:4 compression of an operand of ``elements`` values (module docstring,
    "Sparse A stored compressed"): its own kernel (a launch plus the library model's 2:4 fixed time)
    that reads the dense values from HBM and writes the kept half plus 2-bit indices (a_row_bytes),
    at the HBM bandwidth -- a bandwidth bound; PyTorch's blog measures 36 us for a 4096 x 1024 fp16
    operand with a custom kernel, 380 us with cuSPARSELt (docs/validation.md compares)."""
    e = hw.compute.element_bytes
    nbytes = elements * e + a_row_bytes(elements, e, True)
    hbm = hw.dram().bandwidth_bytes_per_s / hw.clock_hz
    return launch_cycles(hw) + kernel_fixed_cycles(hw, True) + ceil_cycles(nbytes / hbm)


class GemmCost(NamedTuple):
    plan: GemmPlan
    stream: TileStream
    fixed: int  # launch cycles (FamilyCost.fixed_cycles)
    dense_bytes: dict[str, int]
    engine: Any  # memory.run_tiles of `stream` when it was run to choose the tile, else None


def gemm_cost(m: int, n: int, k: int, groups: int, hw, *, sparse_a: bool, names: tuple[str, str] = ("a", "b"),
              scale_a: Fraction | int = 1, scale_b: Fraction | int = 1, scale_out: Fraction | int = 1,
              out_bytes: int | None = None):
    """(plan, TileStream, fixed cycles, dense-format bytes per operand) of one GEMM on the GPU,
    A given as ``names[0]``; ``sparse_a``: A is 2:4 and stored compressed (mma.sp rate).

    With several ``cta_tiles`` each is costed and the fastest kept (least total cycles through
    memory.run_tiles plus launches; ties: fewer DRAM bytes, then the earlier tile): the library picks
    a kernel per problem size (cuBLAS heuristics, cuSPARSELt's cusparseLtMatmulSearch autotuning).
    The dense baseline and the sparse run choose independently."""
    return gemm_search(m, n, k, groups, hw, sparse_a, tuple(names), Fraction(scale_a), Fraction(scale_b),
                       Fraction(scale_out), out_bytes)[:4]


def gemm_search(m: int, n: int, k: int, groups: int, hw, sparse_a: bool, names: tuple[str, str],
                scale_a: Fraction, scale_b: Fraction, scale_out: Fraction, out_bytes: int | None) -> GemmCost:
    """gemm_cost with the chosen stream's engine result, memoised (_gemm_search) on the GEMM and the
    parts of the machine it reads (compute, memory, clock; the source names it in messages): the
    sparse run and the dense baseline (hw.dense(): another name and sparsity feature) share entries."""
    machine = (hw.compute, hw.memory, hw.clock_hz, hw.source)
    return _gemm_search(m, n, k, groups, machine, sparse_a, names, scale_a, scale_b, scale_out, out_bytes)


class _BoundScales(NamedTuple):
    """gemm_traffic's scales as _plan_bounds reads them, converted once per search."""

    fa: float
    fb: float
    fout: float
    out_bytes: int | None

    @classmethod
    def of(cls, scales: dict) -> "_BoundScales":
        return cls(*(float(Fraction(scales[key])) for key in ("scale_a", "scale_b", "scale_out")), scales["out_bytes"])


def _plan_bounds(m: int, n: int, k: int, groups: int, gpu, sparse_a: bool, options: list, l2_capacity: int | None,
                 l2_bpc: float, hbm_bpc: float, scales: _BoundScales, latency: int = 0,
                 cta_cycles: int = 0) -> np.ndarray:
    """For each (tile, split) of ``options``, a lower bound on memory.run_tiles' total for the stream
    of plan_gemm(.., tile, split) (gemm_traffic + gemm_stream), from the plan alone (vectorised over
    the options; no plan, traffic or stream is built), for the tile search to skip options.

    Why it is one (memory.py's rules): the compute unit runs tiles one after another, a tile that
    loads starts only after its bytes arrive (transfer + ``latency``), and a store starts after its
    tile's compute. So the total is at least
    (a) latency (when the first tile loads) + every tile's compute + the last tile's store transfer,
        plus, where split-K partials spill to HBM, the fenced reduction tile's load and latency;
    (b) all DRAM bytes / bandwidth (one channel moves loads and stores one after another);
    (c) all loaded bytes / bandwidth + latency (the last load still has to arrive).
    Compute: every main-loop step of a wave takes at least its MMA step x CTAs on the busiest SM and
    at least its L2 slice bytes / L2 bandwidth (summed over waves: the bytes of all CTAs), plus the
    epilogue and the split-K reduction at the L2 bandwidth, plus ``cta_cycles`` per CTA on each
    wave's busiest SM. Bytes: every A and B panel is fetched from DRAM at least once (its first
    touch misses L2), the output is written once (split-K: the reduced output, and the partials
    twice where they do not fit L2). The first tile loads something when the first CTA's A or B
    panel alone has at least ksteps bytes (gemm_stream spreads a wave's bytes over its chunks by
    floor(bytes * steps / ksteps)). The last tile's store is known from the plan for split-K (the
    reduced output) and for one wave (the whole output). Each term drops gemm_traffic's per-wave
    ceilings, so it never exceeds the exact figures; bytes are summed in float64 (the search
    compares floor(bound * (1 - 1e-9)), so rounding cannot prune; tests/test_gpu_search_speed.py
    checks the bound against the engine on random plans)."""
    e = gpu.element_bytes
    eo = e if scales.out_bytes is None else int(scales.out_bytes)
    tile = np.array([o[0] for o in options], dtype=np.int64).reshape(len(options), 3)
    tm, tn, tk = tile[:, 0], tile[:, 1], tile[:, 2]
    steps = {}
    step = np.array([steps[o[0]] if o[0] in steps else steps.setdefault(o[0], _step_cycles(o[0], gpu, sparse_a))
                     for o in options], dtype=np.int64)
    tiles_m, tiles_n = -(-m // tm), -(-n // tn)
    kst = np.maximum(1, -(-k // tk))
    s = np.maximum(1, np.minimum(np.array([o[1] for o in options], dtype=np.int64), kst))  # plan_gemm's split
    ks = -(-kst // s)
    ctas = groups * tiles_m * tiles_n * s
    wave_size = gpu.sms * gpu.ctas_per_sm
    full, rem = np.divmod(ctas, wave_size)
    busiest = full * -(-wave_size // gpu.sms) + -(-rem // gpu.sms)
    mma = (busiest * step * ks).astype(np.float64)
    gmn = float(groups) * m * n
    out = scales.fout * gmn * eo
    loads = scales.fa * groups * m * a_row_bytes(float(k), e, sparse_a) + scales.fb * groups * n * float(k) * e
    partials = s * gmn * PARTIAL_BYTES
    spill = (s > 1) & ~(partials <= l2_capacity) if l2_capacity is not None else s > 1
    stores = out + np.where(spill, partials, 0.0)
    loads = loads + np.where(spill, partials, 0.0)
    compute = mma
    if math.isfinite(l2_bpc):
        l2 = s * float(groups) * (tiles_n * m * a_row_bytes(tk.astype(np.float64), e, sparse_a)
                                  + tiles_m * n * tk * float(e))
        compute = (np.maximum(mma, l2 * ks / l2_bpc) + np.where(s == 1, out, partials) / l2_bpc
                   + np.where(s > 1, (partials + out) / l2_bpc, 0.0))
    compute = compute + busiest * float(cta_cycles)
    if latency:
        # the first CTA's A and B panels (wave 0 fetches both: first touches), scaled as gemm_traffic
        # does (a ceiling there: >= ksteps whenever the float product is, ksteps being small)
        kk = np.minimum(k, ks * tk).astype(np.float64)
        first = np.maximum(scales.fa * np.minimum(tm, m) * a_row_bytes(kk, e, sparse_a),
                           scales.fb * np.minimum(tn, n) * kk * e)
        compute = compute + np.where(first >= ks, latency, 0) + np.where(spill, latency + partials / hbm_bpc, 0.0)
    waves = -(-ctas // wave_size)
    compute = compute + np.where((s > 1) | (waves == 1), out / hbm_bpc, 0.0)  # the last tile's store
    drain = np.where(loads > 0, loads / hbm_bpc + latency, 0.0)
    return np.maximum(np.maximum(compute, (loads + stores) / hbm_bpc), drain)


def _traffic_bound(plan: GemmPlan, traffic: GemmTraffic, gpu, l2_bpc: float, hbm_bpc: float, latency: int,
                   cta_cycles: int, smem_bytes: int | None = None) -> float:
    """A lower bound on memory.run_tiles' total for the stream gemm_stream builds from ``plan`` and
    ``traffic`` (same machine arguments), from per-wave figures, for the tile search to skip
    gemm_stream and the engine.

    Why it is one (memory.py's rules; gemm_stream's "Prologue"): let T_w be the end of wave w's last
    compute. Wave w's computes all lie in (T_{w-1}, T_w] and run one after another, so T_w - T_{w-1}
    >= C_w, the wave's compute cycles (gemm_stream's: step x ksteps + epilogue + per-CTA fixed). No
    load of wave w is issued before T_{w-1}: the first chunk's is fenced (when it loads anything),
    and chunk j's is issued when compute j-2 has ended (double buffering), for j past the first
    chunk a compute of wave w or wave w-1's last. So (1) when the first chunk loads F_w bytes, its
    compute starts at least ceil(F_w / bandwidth) + latency after T_{w-1}, then all of C_w follows;
    (2) the wave's L_w bytes leave the one channel at least L_w / bandwidth after T_{w-1}; the last
    of them arrives latency later, and at least the last chunk's compute follows (it is that load's
    chunk or a later one). Chunks and their bytes are gemm_stream's (_wave_steps; chunk j gets
    floor(bytes * steps_done / ksteps) - ...). The split-K reduction tile is one fenced interval
    of its own (its compute, after its partials' load and latency when it loads), and the last
    tile's store starts after its compute. Besides, one channel moves every byte. Transfers are
    whole cycles (ceilings), so every term is at most the engine's."""
    ks = plan.ksteps
    busy, step, chunk = _wave_steps(plan, traffic, gpu, l2_bpc, latency, hbm_bpc, smem_bytes)
    epi = _l2_cycles(traffic.epilogue, l2_bpc)
    comp = step * ks + epi + busy * int(cta_cycles)
    load = traffic.a + traffic.b
    first_steps = min(chunk, ks)
    before_last = (-(-ks // chunk) - 1) * chunk  # steps done before the last chunk
    first = traffic.a * first_steps // ks + traffic.b * first_steps // ks  # gemm_stream's spread
    last_compute = step * (ks - before_last) + epi + (busy * int(cta_cycles) if before_last == 0 else 0)
    exposed = np.where(first > 0, np.ceil(first / float(hbm_bpc)) + latency, 0.0)
    drain = np.where(load > 0, load / hbm_bpc + latency + last_compute, 0.0)
    total = float(np.maximum(comp + exposed, drain).sum())
    if plan.split_k > 1:
        red = plan.split_k * plan.groups * plan.m * plan.n * PARTIAL_BYTES + traffic.final_store
        total += float(_l2_cycles(np.array([red]), l2_bpc)[0]) + traffic.final_store / hbm_bpc
        if traffic.final_load > 0:
            total += traffic.final_load / hbm_bpc + latency
    else:
        total += float(traffic.out[-1]) / hbm_bpc
    channel = (float(load.sum()) + float(traffic.out.sum()) + traffic.final_load + traffic.final_store) / hbm_bpc
    return max(total, channel)


@functools.lru_cache(maxsize=512)
def _gemm_search(m: int, n: int, k: int, groups: int, machine: tuple, sparse_a: bool, names: tuple[str, str],
                 scale_a: Fraction, scale_b: Fraction, scale_out: Fraction, out_bytes: int | None) -> GemmCost:
    """The CTA-tile search: a pure function of its (hashable) arguments; a ResNet-50 trace asks
    ~4.5x per distinct GEMM (322 calls, 71 distinct). The cached
    stream is shared by every caller: treat it as read-only (no model code writes into a stream;
    marking the arrays read-only would make numba compile a second engine specialisation)."""
    compute, memory, clock, source = machine
    hw = HardwareConfig("", "gpu", clock, compute, SparsityFeature(), memory, None, source)
    gpu = hw.compute
    l2 = hw.role("l2")
    cap = l2.capacity_bytes
    l2_bpc = l2.bandwidth_bytes_per_s / hw.clock_hz
    smem = hw.role("smem").capacity_bytes
    dram = hw.dram()
    hbm_bpc = dram.bandwidth_bytes_per_s / hw.clock_hz
    scales = dict(scale_a=scale_a, scale_b=scale_b, scale_out=scale_out, out_bytes=out_bytes)
    launch = launch_cycles(hw)
    kernel = kernel_fixed_cycles(hw, sparse_a)  # library model's fixed time per kernel
    cta = cta_fixed_cycles(hw, sparse_a)  # and its fixed time per CTA

    def plan_of(tile, split):
        plan = plan_gemm(m, n, k, groups, gpu, sparse_a=sparse_a, tile=tile, split=split)
        traffic = gemm_traffic(plan, gpu, cap, compressed_a=sparse_a, **scales)
        stream = gemm_stream(plan, traffic, gpu, names, l2_bpc, dram.latency_cycles, hbm_bpc, smem, cta)
        return plan, traffic, stream, kernel + launch * (2 if plan.split_k > 1 else 1)

    options = [(t, s) for t in library_tiles(gpu, sparse_a)
               for s in (split_candidates(m, n, k, groups, gpu, t) if splits_k(gpu, sparse_a) else (1,))]
    if len(options) == 1:
        (plan, traffic, stream, fixed), engine = plan_of(*options[0]), None
    else:
        # the library picks the fastest kernel per problem size -- CTA tile and K split, the split-K
        # reduction's launch included (policy.fastest's rule: least engine total plus launches;
        # ties: fewer DRAM bytes, then the earlier option: smaller splits first). Two lower bounds
        # on the engine's total skip work: options are visited by one taken from the plan alone
        # (_plan_bounds), so most are never built, and a built option's traffic gives a per-wave one
        # (_traffic_bound) before its stream is built and run. An option is skipped only when its
        # bound exceeds the best total found so far (strictly: a tie may still win on DRAM bytes), so
        # the choice is the one costing every option would make.
        lat = dram.latency_cycles
        # plan_gemm's split: max(1, min(split, ceil(K/tk))); split-K adds the reduction's launch
        fixed_of = [kernel + launch * (2 if max(1, min(s, -(-k // t[2]))) > 1 else 1) for t, s in options]
        cheap = _plan_bounds(m, n, k, groups, gpu, sparse_a, options, cap, l2_bpc, hbm_bpc, _BoundScales.of(scales),
                             lat, cta) + np.array(fixed_of, dtype=np.float64)
        best = None
        for i in np.lexsort((np.arange(len(options)), cheap)).tolist():
            # floor(.. * (1 - 1e-9)): float rounding must never prune an option that ties the best
            if best is not None and math.floor(float(cheap[i]) * (1 - 1e-9)) > best[0][0]:
                break  # sorted by bound: no later option can be faster
            p = plan_gemm(m, n, k, groups, gpu, sparse_a=sparse_a, tile=options[i][0], split=options[i][1])
            traffic = gemm_traffic(p, gpu, cap, compressed_a=sparse_a, **scales)
            if best is not None and math.floor((_traffic_bound(p, traffic, gpu, l2_bpc, hbm_bpc, lat, cta, smem)
                                                + fixed_of[i]) * (1 - 1e-9)) > best[0][0]:
                continue
            stream = gemm_stream(p, traffic, gpu, names, l2_bpc, lat, hbm_bpc, smem, cta)
            eng = run_tiles(stream, bytes_per_cycle=hbm_bpc, latency_cycles=lat)
            key = (eng.total_cycles + fixed_of[i], (_stream_bytes(stream),), i)
            if best is None or key < best[0]:
                best = (key, (p, traffic, stream, fixed_of[i]), eng)
        (plan, traffic, stream, fixed), engine = best[1], best[2]
    dense_t = gemm_traffic(plan, gpu, cap, compressed_a=False, **scales) if sparse_a else traffic
    dense_bytes = {names[0]: int(dense_t.a.sum()), names[1]: int(dense_t.b.sum()),
                   "output": int(dense_t.out.sum()) + dense_t.final_store}
    if plan.split_k > 1:
        dense_bytes["partials"] = dense_t.final_load
    return GemmCost(plan, stream, fixed, dense_bytes, engine)


# ---------------------------------------------------------------------------------------------
# When the sparse MMA applies (module docstring, "When sparsity is used").

def candidates(feature_operand: str, a: str, b: str, role_of) -> list[str]:
    """Trace operands the hardware may treat as the 2:4 operand, GEMM A first.

    ``weight`` / ``activation`` select by the operand's role. For a GPU, ``a`` names mma.sp's sparse
    first operand, which either GEMM operand can become by transposition (C^T = B^T A^T), so ``a``,
    ``b``, ``auto`` and ``both`` all offer both operands (mma.sp still exploits only one)."""
    if feature_operand in ("weight", "activation"):
        return [x for x in (a, b) if role_of(x) == feature_operand]
    return [a, b]


@dataclass(frozen=True)
class SparseChoice:
    operand: str | None  # trace operand run as mma.sp's sparse A, None = dense rate
    swap: bool  # the 2:4 operand is the GEMM's B: compute C^T = B^T A^T
    fallback: str | None


def decide_sparsity(hw, *, m: int, n: int, k: int, kind: str, pass_: str, a: str, b: str, role_of,
                    compliance) -> SparseChoice:
    """Pick the 2:4 operand (if any) for one GEMM. ``compliance(name) -> float`` is the fraction of
    that operand's groups of 4 along this pass's reduction dim with at most 2 non-zeros
    (kernels.nm_compliance); only 1.0 qualifies."""
    feat = hw.sparsity
    if feat.kind == "none":
        return SparseChoice(None, False, None)
    if feat.kind != "nm":
        return SparseChoice(None, False, f"the gpu model has no {feat.kind} sparsity, only N:M (mma.sp)")
    nm = f"{feat.n}:{feat.m}"
    cands = candidates(feat.operand, a, b, role_of)
    if not cands:
        return SparseChoice(None, False, f"no {feat.operand} operand to run {nm} in this {kind} {pass_}")
    from accelsim.sim.workload import nm_reason

    reasons = []
    for name in cands:
        frac = float(compliance(name))
        if frac < 1.0:
            reasons.append(nm_reason(name, kind, pass_, feat.n, feat.m, frac, k))
            continue
        mult = sparse_dim_multiple(hw.compute.element_bytes)
        bad = [f"{d}={v}" for d, v in (("M", m), ("N", n), ("K", k)) if v % mult]
        if bad:
            reasons.append(f"{name} is {nm} but {', '.join(bad)} not a multiple of {mult} "
                           f"(cuSPARSELt, {hw.compute.data_type})")
            continue
        return SparseChoice(name, name == b and name != a, None)
    return SparseChoice(None, False, "; ".join(reasons))


def _out_scale(work) -> Fraction:
    """Output elements written per element of C: 1, or less where C is scattered into a smaller
    tensor (conv dgrad's col2im into dX: Workload.output_numel)."""
    return min(Fraction(1), Fraction(work.output_numel, work.groups * work.m * work.n))


def _stream_bytes(stream) -> int:
    return int(sum(int(v.sum()) for v in stream.load_bytes.values()) + int(stream.store_bytes.sum()))


def _cost(work, hw, m: int, n: int, k: int, *, sparse_a: bool, swap: bool,
          elems: dict[str, int] | None = None, out_elems: int | None = None) -> GemmCost:
    """gemm_cost of the op's GEMM (M, N, K) -- swapped to C^T = B^T A^T when the 2:4 operand is the
    GEMM's B -- with unique-data scales from the distinct operand elements read (``elems``, default
    Workload.read_numel) and the output elements written (``out_elems``, default output_numel)."""
    g = work.groups
    elems = elems or {nm: work.read_numel(nm) for nm in (work.a, work.b)}
    sa = Fraction(elems[work.a], g * m * k) if m * k else Fraction(1)
    sb = Fraction(elems[work.b], g * k * n) if k * n else Fraction(1)
    so = (_out_scale(work) if out_elems is None
          else min(Fraction(1), Fraction(out_elems, g * m * n)) if m * n else Fraction(1))
    if swap:  # C^T[N,M] = B^T[N,K] @ A^T[K,M]: the 2:4 operand becomes mma.sp's A
        return gemm_search(n, m, k, g, hw, True, (work.b, work.a), sb, sa, so, None)
    return gemm_search(m, n, k, g, hw, sparse_a, (work.a, work.b), sa, sb, so, None)


def op_cost(work, hw, *, sparse: bool) -> FamilyCost:
    """FamilyCost of one lowered op on a GPU config (docs/architecture.md)."""
    from accelsim.sim import kernels

    choice = SparseChoice(None, False, None)
    if sparse:
        feat = hw.sparsity
        choice = decide_sparsity(
            hw, m=work.m, n=work.n, k=work.k, kind=work.kind, pass_=work.pass_, a=work.a, b=work.b,
            role_of=work.role_of, compliance=lambda nm: kernels.nm_compliance(work, nm, feat.n, feat.m))
    nm_on = choice.operand is not None
    best = _cost(work, hw, work.m, work.n, work.k, sparse_a=nm_on, swap=choice.swap)
    dense_bytes = best.dense_bytes
    fallback, exploited, note = choice.fallback, choice.operand, None
    cpt = compact(work) if sparse else None
    if cpt is not None:
        g = work.groups
        if nm_on:
            # policy.nm_with_deletion: K lines are not deleted under 2:4, M/N lines combine
            kept, note = nm_with_deletion(list(cpt.kept), work.k, work.k, hw.sparsity.n, hw.sparsity.m,
                                          cpt.note, "mma.sp runs")
            mc, nc = max(d[0] for d in kept), max(d[1] for d in kept)
            kc = work.k
            mult = sparse_dim_multiple(hw.compute.element_bytes)
            elems = {work.a: min(work.read_numel(work.a), sum(d[0] for d in kept) * kc),
                     work.b: min(work.read_numel(work.b), sum(d[1] for d in kept) * kc)}
            c_out = sum(d[0] * d[1] for d in kept)
            if (mc, nc) == (work.m, work.n):
                cand, why = None, ""  # only K lines were all zero: nothing combines with 2:4
            elif mc % mult or nc % mult:
                cand, why = None, f"; M'={mc}, N'={nc} are not multiples of {mult} (cuSPARSELt)"
            else:
                cand, why = _cost(work, hw, mc, nc, kc, sparse_a=True, swap=choice.swap, elems=elems,
                                  out_elems=kept_output_numel(work, c_out)), None
        else:
            mc, nc, kc = cpt.uniform
            elems = {nm: min(work.read_numel(nm), cpt.operand_elems(side))
                     for nm, side in ((work.a, "a"), (work.b, "b"))}
            if cpt.act is not None:  # only the part of the activation a kept line reads (Compaction.act_kept)
                elems[cpt.act] = min(elems[cpt.act], math.floor(work.read_numel(cpt.act) * cpt.act_fraction))
            cand, why = _cost(work, hw, mc, nc, kc, sparse_a=False, swap=False, elems=elems,
                              out_elems=kept_output_numel(work, cpt.operand_elems("c"))), None
            note = cpt.note
        # Deletion is used when it saves compute cycles or DRAM bytes (tile quantisation and split-K
        # can make a smaller GEMM dearer on a GPU). It is not the machine's 2:4 support, so the reason
        # 2:4 was not used stays in `fallback` (a 575-of-576-tap deletion must not hide that the
        # sparse tensor cores sat idle).
        if cand is not None and (int(cand.stream.compute_cycles.sum()), _stream_bytes(cand.stream)) < (
                int(best.stream.compute_cycles.sum()), _stream_bytes(best.stream)):
            best = cand
            exploited = f"{choice.operand}+{cpt.operand}" if nm_on and choice.operand != cpt.operand \
                else (choice.operand or cpt.operand)
        elif cand is not None:
            note = f"not used (the smaller GEMM is no cheaper on this machine): {note}"
        else:
            note = f"not used (2:4 mma.sp runs instead{why}): {cpt.note}"
    fixed = best.fixed
    if nm_on and hw.compute.kernel_model == "library" and work.role_of(choice.operand) != "weight":
        # runtime sparsity: the 2:4 operand is not a stored weight, so it is compressed each time
        # (module docstring, "Sparse A stored compressed")
        fixed += compress_cycles(hw, work.groups * work.k * (work.n if choice.swap else work.m))
    return FamilyCost(
        compute_cycles=int(best.stream.compute_cycles.sum()),
        effectual_macs=int(kernels.effectual_macs(work)),
        sparse_operand=exploited,
        fallback=fallback,
        tiles=best.stream,
        fixed_cycles=fixed,
        dram_bytes_dense=dense_bytes,
        compaction=note,
        engine=best.engine,
    )
