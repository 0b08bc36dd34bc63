"""Backward-pass memory footprint: what a training step keeps from forward for backward.

Input: the trace's saved-for-backward records (``Trace.saved``, one ``SavedRecord`` per tensor that
autograd packed). Output: bytes kept per layer, split into activations / weights / other, dense vs
stored in a sparse format, totals and percentages saved, and the *peak* of live saved bytes over the
step (a sweep over the pack/unpack times), which is what bounds training memory -- a plain sum
overstates it because backward frees tensors layer by layer (standard autograd; docs/sources.md "What the
backward pass keeps").

Storage sizes come from :mod:`accelsim.sim.formats` (Hoefler et al. 2021, §2.2). The N:M format is
only offered for a tensor whose recorded mask really is N:M along its channel / reduction dimension
(dim 1 of a 4-D NCHW/KCRS tensor -- ASP and SR-STE group along C, docs/sources.md "ASP" and "SR-STE" --
and the last dim otherwise); a tensor saved without a mask cannot be proven N:M.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Iterable

import numpy as np

from accelsim.errors import AccelsimError
from accelsim.sim.formats import nm_kept_slots
from accelsim.trace.format import DTYPE_BYTES

CATEGORIES = ("activation", "weight", "other")
FORMAT_CHOICES = ("auto", "dense", "bitmap", "coo", "csr", "nm")

# torch's alternative names for dtypes of the trace format's table (trace.format.DTYPE_BYTES, the
# one list of element sizes).
_DTYPE_ALIASES = {"double": "float64", "float": "float32", "half": "float16", "long": "int64",
                  "int": "int32", "short": "int16"}


def dtype_bits(dtype: str) -> int:
    """Bits per element of a dtype name such as ``"float32"`` or ``"torch.bfloat16"``."""
    name = str(dtype).removeprefix("torch.").lower()
    try:
        return 8 * DTYPE_BYTES[_DTYPE_ALIASES.get(name, name)]
    except KeyError:
        raise AccelsimError(f"unknown dtype {dtype!r} in saved-for-backward record") from None


def _nm_axis(ndim: int) -> int:
    # Groups of m run along channels for 4-D tensors (N,C,H,W activations, K,C,R,S weights), along
    # the reduction (last) dim for matrices: the layouts ASP / SR-STE prune in (docs/sources.md "ASP", "SR-STE").
    return 1 if ndim == 4 else ndim - 1


def nm_axes(ndim: int) -> tuple[int, ...]:
    """Axes along which an N:M storage format may run. A matrix may be saved as the transposed view
    of an N:M weight (addmm saves W^T for backward), so both of its axes are tried."""
    if ndim == 2:
        return (1, 0)
    return (_nm_axis(ndim),) if ndim else ()


def nm_fraction(mask: np.ndarray, n: int, m: int, axis: int | None = None) -> float:
    """Fraction of the groups of ``m`` along ``axis`` (default: the channel / reduction axis), zero
    padded at the end, that hold at most ``n`` non-zeros."""
    from accelsim.sim.kernels import nm_fraction_along  # the one N:M group counter

    mask = np.asarray(mask, dtype=bool)
    if mask.ndim == 0 or mask.size == 0:
        return 1.0
    return nm_fraction_along(mask, n, m, _nm_axis(mask.ndim) if axis is None else axis)


@dataclass
class SavedItem:
    """One stored tensor (records sharing a storage are merged and counted once)."""

    layer: str
    category: str
    shape: tuple[int, ...]
    dtype: str
    numel: int
    nnz: int
    format: str            # format it is stored in
    dense_bytes: int       # numel * element bytes
    stored_bytes: int      # in ``format``, values + index/bitmap overhead
    value_bytes: int       # non-zero values only: the ideal without index/bitmap overhead
    t_pack: int
    t_unpack: int | None
    records: int           # saved records that share this storage
    note: str | None = None  # e.g. why "nm" could not be used


@dataclass
class LayerFootprint:
    layer: str
    dense: dict[str, int]   # per category
    stored: dict[str, int]
    values: dict[str, int]


@dataclass
class Footprint:
    step: int
    format: str
    n: int
    m: int
    items: list[SavedItem]
    layers: list[LayerFootprint]
    totals: dict[str, dict[str, int]]   # category and "all" -> {"dense", "stored", "values"}
    peak_dense: int        # max over the step of live saved bytes, dense
    peak_stored: int       # the same with each tensor in its stored format
    peak_time_dense: int | None
    peak_time_stored: int | None
    notes: list[str] = field(default_factory=list)

    def saved_pct(self, category: str = "all", overhead: bool = True) -> float:
        """% of dense bytes saved for ``category`` (with or without index/bitmap overhead)."""
        t = self.totals[category]
        if t["dense"] == 0:
            return 0.0
        kept = t["stored"] if overhead else t["values"]
        return 100.0 * (1.0 - kept / t["dense"])

    @property
    def peak_saved_pct(self) -> float:
        return 100.0 * (1.0 - self.peak_stored / self.peak_dense) if self.peak_dense else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = _plain(self)  # = dataclasses.asdict(self), without its deep copy of every value
        d["saved_pct"] = {
            c: {"with_overhead": self.saved_pct(c, True), "values_only": self.saved_pct(c, False)}
            for c in (*CATEGORIES, "all")
        }
        d["peak_saved_pct"] = self.peak_saved_pct
        return d


def _plain(x: Any) -> Any:
    """dataclasses.asdict for this module's records: dataclasses to dicts (field order), lists,
    tuples and dicts rebuilt, other values (ints, strings, None) shared -- they are immutable."""
    if hasattr(x, "__dataclass_fields__"):
        return {f.name: _plain(getattr(x, f.name)) for f in fields(x)}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _storage_bytes(fmt: str, shape, nnz: int, bits: int, n: int, m: int, axis: int | None = None) -> int:
    from accelsim.sim.formats import storage_bits

    if fmt == "nm":
        b = storage_bits("nm", tuple(shape), nnz, bits, n=n, m=m, axis=axis)
    else:
        b = storage_bits(fmt, tuple(shape), nnz, bits)
    return int(math.ceil(b / 8))


def _choose(fmt: str, shape, nnz: int, bits: int, nm_axis: int | None, n: int, m: int
            ) -> tuple[str, int, str | None]:
    """(format, stored bytes, note) for one tensor; ``nm_axis`` is the axis along which its mask is
    N:M, None when it is not (or cannot be shown to be)."""
    if fmt == "auto":
        # Smallest of the formats that apply; ties go to the earlier of FORMATS (dense first), as
        # formats.best_format does -- done here because the N:M axis may differ from its default.
        from accelsim.sim.formats import FORMATS

        best: tuple[str, int] | None = None
        for name in FORMATS:
            if name == "nm" and nm_axis is None:
                continue
            b = _storage_bytes(name, shape, nnz, bits, n, m, nm_axis)
            if best is None or b < best[1]:
                best = (name, b)
        return best[0], best[1], None
    if fmt == "nm" and nm_axis is None:
        # Honest fallback: a mask that is not N:M cannot be stored as N:M.
        return "dense", _storage_bytes("dense", shape, nnz, bits, n, m), f"not {n}:{m}, stored dense"
    return fmt, _storage_bytes(fmt, shape, nnz, bits, n, m, nm_axis), None


def _peak(intervals: Iterable[tuple[int, int | None, int]]) -> tuple[int, int | None]:
    """Max of the summed sizes of live intervals [t_pack, t_unpack]; None = live to step end.

    At equal times packs are applied before unpacks (a tensor unpacked at t is still alive while
    another is packed at t), which errs towards the larger, safe peak.
    """
    events: list[tuple[int, int, int]] = []
    for start, end, size in intervals:
        events.append((start, 0, size))
        if end is not None:
            events.append((end, 1, -size))
    events.sort(key=lambda e: (e[0], e[1]))
    live = peak = 0
    when = None
    for t, _, delta in events:
        live += delta
        if live > peak:
            peak, when = live, t
    return peak, when


def footprint(trace, *, step: int | None = None, format: str = "auto", n: int = 2, m: int = 4) -> Footprint:
    """Backward-pass footprint of one recorded step (default: the first step with saved records)."""
    if format not in FORMAT_CHOICES:
        raise AccelsimError(f"unknown storage format {format!r}; choose one of {', '.join(FORMAT_CHOICES)}")
    saved = list(trace.saved)
    steps = sorted({s.step for s in saved})
    if step is None:
        step = steps[0] if steps else 0
    elif saved and step not in steps:
        raise AccelsimError(f"{getattr(trace, 'path', 'trace')}: no saved-for-backward records for step {step} "
                            f"(steps: {', '.join(map(str, steps))})")
    records = sorted((s for s in saved if s.step == step), key=lambda s: (s.t_pack, s.id))

    # Merge records that share a storage: the bytes exist once. The first packer owns them.
    groups: dict[int, list] = {}
    for rec in records:
        groups.setdefault(rec.storage, []).append(rec)

    items: list[SavedItem] = []
    notes: list[str] = []
    for recs in groups.values():
        first = recs[0]
        # Prefer a record whose mask was kept (for the N:M check); the largest view is the storage.
        big = max(recs, key=lambda r: (math.prod(r.shape), r.tensor is not None))
        shape = tuple(int(x) for x in big.shape)
        numel = math.prod(shape)
        nnz = int(big.nnz)
        bits = dtype_bits(big.dtype)
        nm_axis = None
        if format in ("auto", "nm"):
            with_mask = [r for r in recs if r.tensor is not None and tuple(r.shape) == shape]
            # (more non-zeros than N:M slots cannot be N:M: skip reading the mask)
            axes = [ax for ax in nm_axes(len(shape)) if nnz <= nm_kept_slots(shape, n, m, ax)]
            if with_mask and axes:
                mask = trace.mask(with_mask[0].tensor)
                nm_axis = next((ax for ax in axes if nm_fraction(mask, n, m, ax) == 1.0), None)
        fmt, stored, note = _choose(format, shape, nnz, bits, nm_axis, n, m)
        dense = _storage_bytes("dense", shape, nnz, bits, n, m)
        values = int(math.ceil(nnz * bits / 8))   # the ideal: non-zero values, indices for free
        unpacks = [r.t_unpack for r in recs]
        t_unpack = None if any(u is None for u in unpacks) else max(unpacks)
        if note:
            notes.append(f"{first.layer} {first.category} {shape}: {note}")
        items.append(SavedItem(layer=first.layer, category=first.category, shape=shape, dtype=str(big.dtype),
                               numel=numel, nnz=nnz, format=fmt, dense_bytes=dense, stored_bytes=stored,
                               value_bytes=values, t_pack=min(r.t_pack for r in recs), t_unpack=t_unpack,
                               records=len(recs), note=note))

    layers: dict[str, LayerFootprint] = {}
    totals = {c: {"dense": 0, "stored": 0, "values": 0} for c in (*CATEGORIES, "all")}
    for it in items:
        lf = layers.setdefault(it.layer, LayerFootprint(it.layer, {c: 0 for c in CATEGORIES},
                                                        {c: 0 for c in CATEGORIES}, {c: 0 for c in CATEGORIES}))
        cat = it.category if it.category in CATEGORIES else "other"
        lf.dense[cat] += it.dense_bytes
        lf.stored[cat] += it.stored_bytes
        lf.values[cat] += it.value_bytes
        for key in (cat, "all"):
            totals[key]["dense"] += it.dense_bytes
            totals[key]["stored"] += it.stored_bytes
            totals[key]["values"] += it.value_bytes

    peak_dense, t_dense = _peak((it.t_pack, it.t_unpack, it.dense_bytes) for it in items)
    peak_stored, t_stored = _peak((it.t_pack, it.t_unpack, it.stored_bytes) for it in items)
    return Footprint(step=step, format=format, n=n, m=m, items=items, layers=list(layers.values()),
                     totals=totals, peak_dense=peak_dense, peak_stored=peak_stored,
                     peak_time_dense=t_dense, peak_time_stored=t_stored, notes=notes)
