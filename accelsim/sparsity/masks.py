"""Sparsity masks: one numpy implementation per rule, with thin PyTorch wrappers beside it.

Every function returns a boolean keep-mask (True = kept) of the input's shape. Selection is
deterministic: among equal magnitudes the element with the lower C-order index wins, so the same
tensor always gives the same mask (numpy's ``argpartition``/``argsort`` ties are not guaranteed).

Rules and their sources:
- :func:`topk_mask`: SWAT keeps the ``ceil(density * numel)`` largest |x| of the *whole* layer tensor
  (github AamirRaihan/SWAT ``topk/drop.py``: ``k = ceil(select_percentage * numel)``;
  docs/sources.md "SWAT as implemented").
- :func:`nm_mask`: N:M magnitude mask, groups of M consecutive elements along one axis (SR-STE,
  Zhou et al. ICLR 2021; NVIDIA ASP permutes conv weights so groups run along C; docs/sources.md "SR-STE").
- :func:`channel_mask` / :func:`filter_mask`: SWAT's structured variants rank the K*C 2-D kernels
  ``W[k, c]`` or the K filters ``W[k]`` by L1 norm (``drop_structured``/``drop_structured_filter``).
- :func:`erk_densities`: Erdős–Rényi-kernel allocation (Evci et al. 2020, RigL ``sparse_utils.py``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = [
    "keep_count",
    "topk_mask",
    "topk_threshold",
    "topk_mask_threshold",
    "threshold_mask",
    "nm_mask",
    "is_nm",
    "channel_mask",
    "filter_mask",
    "erk_densities",
    "sad",
    "torch_mask",
    "to_numpy",
]


def keep_count(density: float, numel: int) -> int:
    """``ceil(density * numel)`` (SWAT's rule), clipped to [0, numel].

    The product is rounded to 1e-6 first so that float noise (1 - 0.9 = 0.0999...98) does not move
    an exact integer such as 0.1 * 30 = 3.0000000000000004 up to 4.
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    return min(numel, max(0, math.ceil(round(density * numel, 6))))


def _topk_flat(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask keeping the k largest of a 1-D score array, ties to the lower index. O(n)."""
    n = scores.size
    keep = np.zeros(n, dtype=bool)
    if k <= 0:
        return keep
    if k >= n:
        keep[:] = True
        return keep
    thr = np.partition(scores, n - k)[n - k]          # the k-th largest value
    above = scores > thr
    keep |= above
    need = k - int(np.count_nonzero(above))
    ties = np.flatnonzero(scores == thr)
    keep[ties[:need]] = True
    return keep


def topk_mask(x: np.ndarray, density: float) -> np.ndarray:
    """Keep the ``ceil(density*numel)`` largest |x| over the whole tensor (SWAT unstructured)."""
    return topk_mask_threshold(x, density)[0]


def topk_mask_threshold(x: np.ndarray, density: float) -> tuple[np.ndarray, float]:
    """:func:`topk_mask` plus the k-th largest |x|, which SWAT caches between exact top-k steps
    (``drop_nhwc_send_th``); ``inf`` when nothing is kept."""
    a = np.abs(np.asarray(x))
    k = keep_count(density, a.size)
    keep = _topk_flat(a.ravel(), k).reshape(a.shape)
    thr = float(a.ravel()[keep.ravel()].min()) if k > 0 else math.inf
    return keep, thr


def topk_threshold(x: np.ndarray, density: float) -> float:
    """The k-th largest |x| (k = ``keep_count``)."""
    return topk_mask_threshold(x, density)[1]


def threshold_mask(x: np.ndarray, threshold: float) -> np.ndarray:
    """``|x| >= threshold`` (SWAT ``drop_threshold``, used between exact top-k steps)."""
    return np.abs(np.asarray(x)) >= threshold


def nm_mask(x: np.ndarray, n: int, m: int, axis: int = 1) -> np.ndarray:
    """N:M magnitude mask: in every group of ``m`` consecutive elements along ``axis`` keep the
    ``n`` largest |x| (ties to the lower index).

    For a conv weight (K, C, R, S) use ``axis=1``: moving C last gives the (K, R, S, C) layout in
    which SR-STE (``permute(0, 2, 3, 1)``) and NVIDIA ASP form their groups. A trailing group shorter
    than ``m`` (length not a multiple of m) keeps at most ``n`` of its elements.
    """
    if not (isinstance(n, int) and isinstance(m, int) and 0 < n <= m):
        raise ValueError(f"need integers 0 < n <= m, got n={n}, m={m}")
    a = np.abs(np.asarray(x, dtype=np.float64))
    if a.ndim == 0:
        raise ValueError("nm_mask needs at least one dimension")
    moved = np.moveaxis(a, axis, -1)
    length = moved.shape[-1]
    groups = -(-length // m)
    pad = groups * m - length
    # Padding scores -1 are below every |x|, so they are only chosen when a short tail group has
    # fewer than n real elements; they are cut off again below.
    padded = np.concatenate([moved, -np.ones(moved.shape[:-1] + (pad,))], axis=-1) if pad else moved
    g = padded.reshape(moved.shape[:-1] + (groups, m))
    order = np.argsort(-g, axis=-1, kind="stable")[..., :n]
    keep = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(keep, order, True, axis=-1)
    keep = keep.reshape(moved.shape[:-1] + (groups * m,))[..., :length]
    return np.moveaxis(keep, -1, axis)


def is_nm(mask: np.ndarray, n: int, m: int, axis: int = 1) -> bool:
    """True when every complete group of ``m`` along ``axis`` holds at most ``n`` True entries."""
    moved = np.moveaxis(np.asarray(mask, dtype=bool), axis, -1)
    full = (moved.shape[-1] // m) * m
    g = moved[..., :full].reshape(moved.shape[:-1] + (full // m, m))
    tail = moved[..., full:]
    return bool((g.sum(-1) <= n).all() and (tail.sum(-1) <= n).all())


def channel_mask(w: np.ndarray, density: float) -> np.ndarray:
    """SWAT structured-channel: rank the K*C kernels ``w[k, c, :, :]`` by L1 norm, keep
    ``ceil(density*K*C)`` whole kernels. A 2-D (linear) weight is a grid of 1x1 kernels, so the
    ranking is element-level, as SWAT's rule gives for 1x1 convs."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    if a.ndim not in (2, 4):
        raise ValueError(f"channel_mask needs a 2-D or 4-D weight, got shape {a.shape}")
    scores = a if a.ndim == 2 else a.sum(axis=(2, 3))
    keep = _topk_flat(scores.ravel(), keep_count(density, scores.size)).reshape(scores.shape)
    return np.broadcast_to(keep.reshape(keep.shape + (1,) * (a.ndim - 2)), a.shape).copy()


def filter_mask(w: np.ndarray, density: float) -> np.ndarray:
    """SWAT structured-filter: rank the K filters ``w[k]`` by L1 norm, keep ``ceil(density*K)``."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    if a.ndim < 2:
        raise ValueError(f"filter_mask needs a weight with >= 2 dims, got shape {a.shape}")
    scores = a.reshape(a.shape[0], -1).sum(axis=1)
    keep = _topk_flat(scores, keep_count(density, scores.size))
    return np.broadcast_to(keep.reshape((-1,) + (1,) * (a.ndim - 1)), a.shape).copy()


def erk_densities(shapes: Sequence[Sequence[int]], density: float) -> list[float]:
    """Erdős–Rényi-kernel densities whose parameter-weighted mean is ``density``.

    RigL (Evci et al. 2020, ``sparse_utils.get_sparsities`` with power scale 1): raw density of a
    layer ∝ sum(shape) / prod(shape); one factor eps scales all raws so the kept parameters equal
    ``density * total``. A layer whose scaled density would exceed 1 is made dense, its budget is
    removed, and eps is solved again for the rest until none saturates.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    numels = [int(np.prod(s)) for s in shapes]
    raw = [float(sum(s)) / float(np.prod(s)) for s in shapes]
    dense: set[int] = set()
    while True:
        rhs = 0.0
        divisor = 0.0
        for i, p in enumerate(numels):
            if i in dense:
                rhs -= p * (1.0 - density)       # a dense layer spends its zeros' share elsewhere
            else:
                rhs += p * density
                divisor += raw[i] * p
        if divisor == 0.0:                       # every layer saturated: all dense
            return [1.0] * len(shapes)
        eps = rhs / divisor
        sparse = [i for i in range(len(shapes)) if i not in dense]
        top = max(raw[i] for i in sparse)
        if top * eps > 1.0:
            dense |= {i for i in sparse if raw[i] == top}
            continue
        return [1.0 if i in dense else eps * raw[i] for i in range(len(shapes))]


def sad(mask_a: np.ndarray, mask_b: np.ndarray) -> int:
    """Sparse architecture divergence (Zhou et al. 2021): number of positions whose kept/pruned
    state differs between two masks of the same shape."""
    a = np.asarray(mask_a, dtype=bool)
    b = np.asarray(mask_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"SAD needs masks of one shape, got {a.shape} and {b.shape}")
    return int(np.count_nonzero(a != b))


def to_numpy(t) -> np.ndarray:
    """A torch tensor's values as a float numpy array (shares memory on CPU for fp32/fp64)."""
    import torch

    arr = t.detach().to("cpu")
    if arr.dtype not in (torch.float32, torch.float64):
        arr = arr.float()                       # bf16/fp16 have no numpy dtype; order is kept
    return arr.numpy()


def torch_mask(fn, t, *args, **kwargs):
    """Apply a numpy mask rule to a torch tensor; returns a bool tensor on ``t``'s device."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(fn(to_numpy(t), *args, **kwargs))).to(t.device)
