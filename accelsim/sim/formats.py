"""Storage size of a (sparse) tensor in the formats of Hoefler et al. 2021, "Sparsity in Deep
Learning", §2.2 (docs/sources.md "Sparse storage"), plus the N:M format of NVIDIA's sparse tensor cores
(docs/sources.md "NVIDIA A100": R x C matrix stored as R x C/2 values + one 2-bit index per kept value).

Notation: a tensor of ``numel`` elements, ``nnz`` non-zeros, ``k = value_bits`` bits per value.
An index into a range of ``r`` values needs ``ceil(log2 r)`` bits (0 bits when r <= 1: there is
nothing to choose). All sizes are exact integers of bits; callers round to bytes.

=========  =====================================================================================
dense      numel * k
bitmap     nnz * k + numel                       (one presence bit per element)
coo        nnz * (k + ceil(log2 numel))          (one flat offset per non-zero; Hoefler's "offset"
                                                  coordinate format -- a flat index is the smallest
                                                  COO for any number of dims)
csr        nnz * (k + ceil(log2 cols)) + (rows + 1) * ceil(log2(nnz + 1))
nm         kept * (k + ceil(log2 M))             (kept = N slots per full group of M, see below)
=========  =====================================================================================

CSR convention. The tensor is viewed as a matrix rows x cols = shape[0] x prod(shape[1:]) (a 1-D
tensor is one row). Hoefler's §2.2 gives the approximation ``m*ceil(log2 n_c) + n_r*ceil(log2 m)``;
we count what a CSR array really holds: ``rows + 1`` row pointers (the standard ``indptr``, whose
last entry is nnz) each able to hold any value 0..nnz, i.e. ``ceil(log2(nnz + 1))`` bits, and one
column index per non-zero. The two agree to within one pointer and one bit per pointer.

N:M. Groups of M consecutive elements run along one dimension ``axis`` (the reduction/channel
dim: ASP and SR-STE group along C, docs/sources.md "ASP"/"SR-STE"). By default that is dim 1 of a 4-D
(N,C,H,W / K,C,R,S) tensor and the last dim otherwise -- the convention of
:mod:`accelsim.sim.footprint`. Every group stores exactly N value slots (zero-padded when it holds
fewer non-zeros) and one ceil(log2 M)-bit position per slot: 2 bits for 2:4, as the A100 metadata.
A trailing partial group of r < M elements stores min(r, N) slots. The format is only valid for a
mask that is N:M (no group has more than N non-zeros); the caller checks that -- here we only
reject an nnz that cannot possibly fit.
"""

from __future__ import annotations

import math
from typing import Sequence

from accelsim.errors import UnsupportedError

FORMATS = ("dense", "bitmap", "coo", "csr", "nm")


def index_bits(r: int) -> int:
    """Bits of an index that selects one of ``r`` values: ceil(log2 r), 0 for r <= 1."""
    return (int(r) - 1).bit_length() if r > 1 else 0


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(d) for d in shape)


def nm_kept_slots(shape: Sequence[int], n: int, m: int, axis: int | None = None) -> int:
    """Value slots an N:M format stores: N per full group of M along ``axis``, min(r, N) for a
    trailing partial group of r elements (see the module docstring for the default axis)."""
    shape = tuple(int(d) for d in shape)
    if not shape:
        shape = (1,)
    if axis is None:
        axis = 1 if len(shape) == 4 else len(shape) - 1
    length = shape[axis]
    if length == 0:
        return 0
    lines = _numel(shape) // length
    return lines * (n * (length // m) + min(length % m, n))


def storage_bits(
    fmt: str,
    shape: Sequence[int],
    nnz: int,
    value_bits: int,
    *,
    n: int | None = None,
    m: int | None = None,
    axis: int | None = None,
) -> int:
    """Bits needed to store a tensor of ``shape`` with ``nnz`` non-zeros in format ``fmt``.

    ``n``/``m`` are required for ``fmt="nm"``. Raises :class:`UnsupportedError` for an unknown
    format name (it may come from a command line or a hardware file) and ``ValueError`` for
    impossible arguments (a caller bug).
    """
    if fmt not in FORMATS:
        raise UnsupportedError(f"unknown storage format {fmt!r} (valid: {', '.join(FORMATS)})")
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    numel = _numel(shape)
    nnz = int(nnz)
    k = int(value_bits)
    if not 0 <= nnz <= numel:
        raise ValueError(f"nnz {nnz} outside 0..{numel} for shape {shape}")
    if k < 1:
        raise ValueError(f"value_bits must be >= 1, got {k}")

    if fmt == "dense":
        return numel * k
    if fmt == "bitmap":
        return nnz * k + numel
    if fmt == "coo":
        return nnz * (k + index_bits(numel))
    if fmt == "csr":
        if len(shape) <= 1:
            rows, cols = 1, numel
        else:
            rows, cols = shape[0], numel // shape[0] if shape[0] else 0
        return nnz * (k + index_bits(cols)) + (rows + 1) * index_bits(nnz + 1)
    # nm
    if n is None or m is None or not 1 <= n <= m:
        raise ValueError(f"N:M format needs 1 <= n <= m, got n={n} m={m}")
    kept = nm_kept_slots(shape, n, m, axis)
    if nnz > kept:
        raise UnsupportedError(
            f"a tensor of shape {shape} with {nnz} non-zeros cannot be stored {n}:{m} "
            f"(at most {kept} kept values)"
        )
    return kept * (k + index_bits(m))


def best_format(
    shape: Sequence[int], nnz: int, value_bits: int, *, nm: tuple[int, int] | None = None
) -> tuple[str, int]:
    """The smallest format and its size in bits. ``nm=(n, m)`` offers the N:M format too (only
    pass it when the mask is known to be N:M). Ties go to the earlier entry of FORMATS (dense
    first), so the choice is deterministic."""
    best: tuple[str, int] | None = None
    for fmt in FORMATS:
        if fmt == "nm":
            if nm is None:
                continue
            bits = storage_bits("nm", shape, nnz, value_bits, n=nm[0], m=nm[1])
        else:
            bits = storage_bits(fmt, shape, nnz, value_bits)
        if best is None or bits < best[1]:
            best = (fmt, bits)
    assert best is not None
    return best
