"""Numba kernels over operand masks, walking the lowered GEMM without building im2col.

Every GEMM operand side of every pass is an *operand view*: a bit-packed source of uint64 words, bit
i at ``(src[i >> 6] >> (i & 63)) & 1`` (accelsim.trace.format.pack_words) -- the trace's own packed
words of the operand, read in place, for every operand except a conv input in fwd/wgrad, which is
re-laid out once per op with zero padding where the convolution reads padding (fwd: NHWC by
bit-matrix transposes of the stored words, transpose_bits), and an operand whose reduction is
strided in the stored layout (re-laid out once per op, _matrix_src) --
plus, per GEMM row of A (or column of B), a base bit index, plus, per reduction position, an offset
(-1 = a padding lane). The element at (row i, reduction kk) is bit ``base[i] + off[kk]``. The kernels
do not read that bit by bit: the offsets split into *runs* of consecutive source bits (one run per
kernel tap's channel run, per wgrad output row, per matrix row; at most 64 bits, never across a
64-bit word of the gathered row), so a GEMM row is gathered into contiguous reduction-order words
with a few shifts per run, and the kernels then work on 64-bit words (AND + popcount). Because conv windows are separable
(base depends on the output pixel, offset on the kernel tap), this covers conv fwd windows, the
wgrad transposed windows and plain matrices with three small arrays; the im2col matrix itself is
never built. The lowering conventions are those of the lowering registry, accelsim/sim/lowering.py.

The kernels Python calls directly ship compiled (accelsim.sim.native: numba-built bitcode that
llvmlite loads in tens of ms, where numba's import and load cost ~0.4 s and its compile seconds);
numba's JIT of the same source is their fallback. Numpy stand-ins keep even that off the path where
they win: lane_rows builds every TensorDash stream's lane rows (only the scheduler behind
td_rows_cycles is a kernel) and pair_group_cycles counts SparTen-like pairs as a float32 BLAS
product for runs too small to repay loading the kernel; each is tested equal to the word kernel it
stands in for, which still runs past their memory caps.

Counting MACs needs no per-pair work at all: for a conv the product a*b factorises per reduction
"factor" f (fwd: (c,r,s); dgrad: k; wgrad: (n,p,q) summed over taps), so
effectual = sum_f nnzA_f * nnzB_f, one-sided(A) = sum_f nnzA_f * |B_f| (see factor_counts).
"""

from __future__ import annotations

from dataclasses import dataclass

import functools

import numpy as np

from accelsim.sim import native
from accelsim.sim.workload import Workload
from accelsim.trace.format import unpack_words


class _Jit:
    """A numba kernel compiled (or loaded from numba's cache, ``cache=True``) on its first call, not
    at import: importing numba and loading its CPU target costs ~0.4 s a process, which a run that
    needs no kernel (a GPU's) never pays. The first call of any lazy_njit function jits them all
    and puts the dispatchers into their modules, so jitted code calling another kernel sees a
    dispatcher; callers holding this wrapper are forwarded.

    A kernel declared with its argument types (``native``) runs from the shipped bitcode instead,
    without numba, where accelsim.sim.native can load it and the call's arrays fit."""

    def __init__(self, fn, native_kernel=None):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.dispatcher = None
        self.native = native_kernel  # accelsim.sim.native.Kernel, or None: numba only
        self._machine = _UNTRIED

    def __call__(self, *args):
        if self.native is not None:
            machine = self._machine
            if machine is _UNTRIED:
                machine = self._machine = native.load(self.native)
            if machine is not None and machine.accepts(args):
                return machine(*args)
        if self.dispatcher is None:
            from accelsim.sim.memory import _NoScipyForNumba

            _load_kernels()
            with _NoScipyForNumba():  # the first call loads numba's target: without scipy.linalg
                return self.dispatcher(*args)
        return self.dispatcher(*args)

    def machine_code_loaded(self) -> bool:
        return self._machine is not _UNTRIED and self._machine is not None


_UNTRIED = object()
_LAZY: list[_Jit] = []


def lazy_njit(fn=None, *, args: tuple[str, ...] | None = None, ret: str = "void"):
    """``numba.njit(cache=True)(fn)``, done on the first call of any such function (_Jit). With
    ``args`` (accelsim.sim.native type codes, one per parameter) the kernel is also shipped as
    bitcode and called natively: it must allocate nothing (callers pass every buffer)."""
    def wrap(f):
        w = _Jit(f, native.register(f, args, ret) if args is not None else None)
        _LAZY.append(w)
        return w

    return wrap(fn) if fn is not None else wrap


def _numba_loaded() -> bool:
    """Whether this process has loaded the lazy_njit kernels (numba's import and load are paid)."""
    return any(w.dispatcher is not None for w in _LAZY)


def _load_kernels(cache: bool = True) -> None:
    from numba import njit

    for w in _LAZY:
        if w.dispatcher is None:
            w.dispatcher = njit(cache=cache)(w.py_func)
            w.py_func.__globals__[w.py_func.__name__] = w.dispatcher


@dataclass
class OperandView:
    src: np.ndarray  # uint64 words, bit-packed source (pack_words layout)
    base: np.ndarray  # int64 bit index per GEMM row (A) / column (B), all groups: index g*rows + i
    off: np.ndarray  # int64 per reduction position (-1: padding lane)
    rows: int  # rows (A) or columns (B) per group
    groups: int
    run_k: np.ndarray | None = None  # int64 per run: first reduction position
    run_off: np.ndarray | None = None  # int64 per run: its source bit offset (added to base)
    run_len: np.ndarray | None = None  # int64 per run: 1..64 bits, never crossing a multiple of 64 in k

    def __post_init__(self) -> None:
        if self.run_k is None:
            self.run_k, self.run_off, self.run_len = _runs(self.off)

    @property
    def runs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.run_k, self.run_off, self.run_len

    def bits(self) -> np.ndarray:
        """The unpacked source (uint8 0/1) -- for tests and debugging only."""
        return unpack_words(self.src, (self.src.size * 64,)).astype(np.uint8)


def _runs(off: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split reduction offsets into runs of consecutive source bits: a run starts at every real
    lane whose predecessor is padding or not its source neighbour, and at every k % 64 == 0, so a
    run fits in one 64-bit word of the gathered row."""
    k = np.arange(off.size, dtype=np.int64)
    real = off >= 0
    prev_real = np.concatenate([[False], real[:-1]])
    prev_next = np.concatenate([[-2], off[:-1] + 1])
    start = real & ((k % 64 == 0) | ~prev_real | (off != prev_next))
    starts = np.flatnonzero(start)
    stops = np.flatnonzero(start | ~real)  # a run ends at the next start or padding lane
    nxt = np.searchsorted(stops, starts, side="right")
    ends = np.where(nxt < stops.size, stops[np.minimum(nxt, stops.size - 1)], off.size)
    return starts.astype(np.int64), off[starts].astype(np.int64), (ends - starts).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# operand views
# ----------------------------------------------------------------------------------------------

def _packed(x: np.ndarray) -> np.ndarray:
    """Bit-pack a mask in its C order, with one spare zero word so a two-word read past the last
    run never leaves the array."""
    x = np.asarray(x)
    out, flat = _word_buffer(x.shape)
    if x.dtype == np.bool_:
        out[...] = x
    else:
        np.not_equal(x, 0, out=out)
    return _pack_buffer(flat)


def _word_buffer(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A zeroed bool array of `shape` that is the start of a flat buffer of whole 64-bit words plus
    one spare zero word: filled in place (one copy, in any layout) and packed by _pack_buffer
    without the copies pack_words and the spare word's concatenation cost."""
    numel = int(np.prod(shape, dtype=np.int64))
    flat = np.zeros((-(-numel // 64) + 1) * 64, dtype=bool)
    return flat[:numel].reshape(shape), flat


def _pack_buffer(flat: np.ndarray) -> np.ndarray:
    """_word_buffer's buffer as uint64 words (pack_words' layout: bit i = (w[i >> 6] >> (i & 63)) & 1)."""
    return np.packbits(flat, bitorder="little").view("<u8").astype(np.uint64, copy=False)


def _lane_offsets(outer: np.ndarray, inner: np.ndarray, lanes: int | None) -> np.ndarray:
    """off[outer, inner] flattened; with `lanes`, each inner run is padded to a multiple of lanes."""
    if lanes is None:
        return (outer[:, None] + inner[None, :]).reshape(-1).astype(np.int64)
    width = -(-inner.size // lanes) * lanes
    inner_p = np.full(width, -1, dtype=np.int64)
    inner_p[: inner.size] = 0
    off = np.where(inner_p[None, :] >= 0, outer[:, None] + np.pad(inner, (0, width - inner.size))[None, :], -1)
    return off.reshape(-1).astype(np.int64)


def _op_cache(work: Workload) -> dict:
    """Per-op memo of data derived from the masks (operand views, factor counts, N:M compliance):
    Workload.memo(), tied to the identity of the workload's packed arrays, so an entry lives
    exactly as long as its op's masks and the sparse and the dense-baseline op_cost share it."""
    return work.memo()


def _frozen(*arrays: np.ndarray) -> None:
    """Memoised arrays are shared by every caller of the op: make writes fail loudly."""
    for a in arrays:
        a.flags.writeable = False


def operand_view(work: Workload, side: str, lanes: int | None = None) -> OperandView:
    """View of GEMM operand A ('a': rows over K) or B ('b': columns over K).

    With `lanes`, the reduction is laid out in rows of `lanes` (TensorDash: 16): for a conv forward
    pass the channel run of each kernel tap is padded to a multiple of lanes (DNNsim's dense cycles
    ceil(round_up(C,16)*R*S/16), docs/sources.md "SWAT's accelerator: TensorDash"); otherwise the
    whole reduction is padded at its end.
    Built once per (workload, side, lanes) and shared, read-only, for the rest of the op.
    """
    key = ("view", side, lanes)
    cache = _op_cache(work)
    v = cache.get(key)
    if v is None:
        v = _build_operand_view(work, side, lanes)
        _frozen(v.src, v.base, v.off, *v.runs)
        cache[key] = v
    return v


def _build_operand_view(work: Workload, side: str, lanes: int | None) -> OperandView:
    name = work.a if side == "a" else work.b
    g = work.groups
    geo = work.conv
    pass_ = work.pass_
    if geo is not None and pass_ in ("fwd", "wgrad") and name == "input":
        n, c, h, w = work.shapes["input"]
        cg = c // g
        (ph, pw), (sh, sw), (dh, dw) = geo.padding, geo.stride, geo.dilation
        hp, wp = h + 2 * ph, w + 2 * pw
        if pass_ == "fwd":  # rows (g, n, p, q); reduction (r, s, c) channels fastest
            # padded NHWC from the stored words: per image row (n, h), the (C, W) bit matrix
            # transposed into W consecutive pixels of C channels (transpose_bits; no inflation)
            nn, hh = np.meshgrid(np.arange(n, dtype=np.int64), np.arange(h, dtype=np.int64), indexing="ij")
            src = np.zeros(-(-(n * hp * wp * c) // 64) + 1, np.uint64)
            transpose_bits(_stored_src(work, "input"), (nn * (c * h * w) + hh * w).reshape(-1), h * w, src,
                           (((nn * hp + hh + ph) * wp + pw) * c).reshape(-1), c, c, w)
            nn, pp, qq = np.meshgrid(np.arange(n), np.arange(geo.p), np.arange(geo.q), indexing="ij")
            pix = (((nn * hp + pp * sh) * wp + qq * sw) * c).reshape(-1)
            base = (pix[None, :] + (np.arange(g) * cg)[:, None]).reshape(-1)
            rr, ss = np.meshgrid(np.arange(geo.r), np.arange(geo.s), indexing="ij")
            outer = (((rr * dh) * wp + ss * dw) * c).reshape(-1)
            off = _lane_offsets(outer, np.arange(cg), lanes)
            return OperandView(src, base.astype(np.int64), off, n * geo.p * geo.q, g)
        # wgrad: rows (g, c, r, s); reduction (n, p, q), q fastest. Columns are split into sw
        # phases (w = w' * sw + phase), layout C, phase, N, Hp, W' with W' = ceil(Wp/sw): the
        # input column s*dw + q*sw of tap s is phase (s*dw) % sw, w' = (s*dw)//sw + q, so the
        # q run of every (n, p) is consecutive bits even for a strided conv (sw = 1: C N Hp Wp).
        wq = -(-wp // sw)
        if sw == 1:  # C N Hp Wp: every input row (n, c, h) is W consecutive bits moved (copy_bits)
            nn, cc, hh = np.meshgrid(np.arange(n, dtype=np.int64), np.arange(c, dtype=np.int64),
                                     np.arange(h, dtype=np.int64), indexing="ij")
            src = np.zeros(-(-(c * n * hp * wq) // 64) + 1, np.uint64)
            copy_bits(_stored_src(work, "input"), (((nn * c + cc) * h + hh) * w).reshape(-1), src,
                      (((cc * n + nn) * hp + hh + ph) * wq + pw).reshape(-1), w)
        else:
            x = work.mask("input")
            xs, flat = _word_buffer((c, sw, n, hp, wq))  # written in one copy per phase
            for f in range(sw):  # padded column w' * sw + f holds input column w' * sw + f - pw
                lo = max(0, -(-(pw - f) // sw))
                first = lo * sw + f - pw
                if first < w:
                    cols = x[:, :, :, first::sw]
                    xs[:, f, :, ph:ph + h, lo:lo + cols.shape[3]] = cols.transpose(1, 0, 2, 3)
            src = _pack_buffer(flat)
        cc, rr, ss = np.meshgrid(np.arange(c), np.arange(geo.r), np.arange(geo.s), indexing="ij")
        base = ((((cc * sw + (ss * dw) % sw) * n) * hp + rr * dh) * wq + (ss * dw) // sw).reshape(-1)
        nn, pp = np.meshgrid(np.arange(n), np.arange(geo.p), indexing="ij")
        outer = ((nn * hp + pp * sh) * wq).reshape(-1)
        off = _lane_offsets(outer, np.arange(geo.q), None)
        if lanes is not None:
            off = _pad_end(off, lanes)
        return OperandView(src, base.astype(np.int64), off, cg * geo.r * geo.s, g)
    # every other operand: its (base, off) in the trace's own stored layout. Where the reduction runs
    # over consecutive stored bits the view reads the trace's packed words in place (no inflation,
    # no re-layout); where it is strided (a transposed use, dgrad's reduction over filters, a fwd
    # weight's channels with R*S > 1) bit-by-bit gathers would cost more than one re-layout, so the
    # operand is re-laid out once per op (memo) into rows over a contiguous reduction.
    base, off, rows, taps = _stored_index(work, name, side)
    runs = 1 + int(np.count_nonzero(np.diff(off) != 1))
    if off.size >= IN_PLACE_RUN * runs:  # runs of consecutive stored bits, IN_PLACE_RUN long on average
        src = _stored_src(work, name)
    else:
        src = _matrix_src(work, side)
        base = np.arange(g * rows, dtype=np.int64) * off.size
        off = np.arange(off.size, dtype=np.int64)
    if lanes is not None:
        if taps is not None:  # a fwd weight: each tap's channel run padded to a multiple of lanes
            off = _lane_offsets(off.reshape(taps, -1)[:, 0], off.reshape(taps, -1)[0] - off[0], lanes)
        else:
            off = _pad_end(off, lanes)
    return OperandView(src, base, off, rows, g)


# A view reads the stored words in place when its reduction runs over consecutive stored bits for
# at least this many bits on average: the gather then costs one shift per run, as a re-laid-out
# copy costs per word it saves. A speed crossover (benchmarks/bench_sim.py), not a model number.
IN_PLACE_RUN = 16


def _stored_index(work: Workload, name: str, side: str) -> tuple[np.ndarray, np.ndarray, int, int | None]:
    """(base per GEMM row/column of all groups, offset per reduction position, rows per group, taps)
    of operand `name` in its stored C-order layout; taps: R*S for a fwd weight (its reduction is
    (r, s, c), one channel run per tap), else None."""
    g, geo = work.groups, work.conv
    if geo is None:
        shp = work.shapes[name]
        r0, c0 = shp[-2], shp[-1]
        sx, sy = (1, c0) if work.transposed.get(name) else (c0, 1)  # used[x, y] -> bit x*sx + y*sy
        rows = work.m if side == "a" else work.n
        b_of = np.arange(g, dtype=np.int64)[:, None] * (r0 * c0)
        if side == "a":  # rows i over k: used[i, k]
            base, off = b_of + np.arange(rows, dtype=np.int64)[None, :] * sx, np.arange(work.k, dtype=np.int64) * sy
        else:  # columns j over k: used[k, j]
            base, off = b_of + np.arange(rows, dtype=np.int64)[None, :] * sy, np.arange(work.k, dtype=np.int64) * sx
        return base.reshape(-1), off, rows, None
    pass_ = work.pass_
    kg, cg = geo.k // g, geo.c // g
    crs, pq, rs = cg * geo.r * geo.s, geo.p * geo.q, geo.r * geo.s
    gi = np.arange(g, dtype=np.int64)
    if name == "weight" and pass_ == "fwd":  # columns (g, k) over (r, s, c): bit (g*kg + k)*CRS + c*RS + r*S + s
        base = ((gi[:, None] * kg + np.arange(kg)[None, :]) * crs).reshape(-1)
        off = (np.arange(rs, dtype=np.int64)[:, None] + np.arange(cg, dtype=np.int64)[None, :] * rs).reshape(-1)
        return base, off, kg, rs
    if name == "weight":  # dgrad columns (g, c, r, s) over k: bit (g*kg + k)*CRS + crs
        base = (gi[:, None] * kg * crs + np.arange(crs)[None, :]).reshape(-1)
        return base, np.arange(kg, dtype=np.int64) * crs, crs, None
    if name == "grad_output" and pass_ == "dgrad":  # rows (g, n, p, q) over k: bit (n*K + g*kg + k)*PQ + pq
        npq = np.arange(geo.n, dtype=np.int64)[:, None] * geo.k * pq + np.arange(pq)[None, :]  # (N, PQ)
        base = (gi[:, None, None] * kg * pq + npq[None]).reshape(-1)
        return base, np.arange(kg, dtype=np.int64) * pq, geo.n * pq, None
    if name == "grad_output":  # wgrad columns (g, k) over (n, p, q): bit (n*K + g*kg + k)*PQ + pq
        base = ((gi[:, None] * kg + np.arange(kg)[None, :]) * pq).reshape(-1)
        off = (np.arange(geo.n, dtype=np.int64)[:, None] * geo.k * pq + np.arange(pq)[None, :]).reshape(-1)
        return base, off, kg, None
    raise ValueError(f"no operand view for {name!r} of conv2d {pass_}")


def _matrix_src(work: Workload, side: str) -> np.ndarray:
    """The operand re-laid out once per op (memo) as (G, rows, K) rows over a contiguous reduction,
    packed: for operands whose reduction is strided in the stored layout."""
    memo = _op_cache(work)
    key = ("matrix", side)
    got = memo.get(key)
    if got is None:
        got = _transposed_src(work, side)
        if got is None:
            got = _packed(_side_layout(work, side))  # the transposed view copied once, into the words' buffer
        got.flags.writeable = False
        memo[key] = got
    return got


def _transposed_src(work: Workload, side: str) -> np.ndarray | None:
    """_matrix_src where it is a batch of bit-matrix transposes of the stored words (transpose_bits:
    no mask inflated), else None. The matrix (G, rows, K) has row (g, i) at bit (g*rows + i)*K.
    matmul/bmm: per batch, the stored (r0, c0) matrix transposed (a strided operand is stored
    reduction-major); conv weight fwd: per filter (Cg, R*S) -> (R*S, Cg); weight dgrad: per group
    (Kg, CRS) -> (CRS, Kg); grad_output dgrad: per (group, image) (Kg, PQ) -> (PQ, Kg)."""
    name = work.a if side == "a" else work.b
    g, geo = work.groups, work.conv
    if geo is None:
        if bool(work.transposed.get(name, False)) != (side == "a"):  # stored reduction-minor: the matrix itself
            return _stored_src(work, name)
        r0, c0 = work.shapes[name][-2], work.shapes[name][-1]
        starts = np.arange(g, dtype=np.int64) * (r0 * c0)
        blocks = (starts, c0, starts, r0, r0, c0)
    elif name == "weight":
        kg, cg, rs = geo.k // g, geo.c // g, geo.r * geo.s
        if work.pass_ == "fwd":
            starts = np.arange(geo.k, dtype=np.int64) * (cg * rs)
            blocks = (starts, rs, starts, cg, cg, rs)
        else:
            starts = np.arange(g, dtype=np.int64) * (kg * cg * rs)
            blocks = (starts, cg * rs, starts, kg, kg, cg * rs)
    elif name == "grad_output" and work.pass_ == "dgrad":
        kg, pq = geo.k // g, geo.p * geo.q
        gi, ni = np.meshgrid(np.arange(g, dtype=np.int64), np.arange(geo.n, dtype=np.int64), indexing="ij")
        src_at = ((ni * geo.k + gi * kg) * pq).reshape(-1)
        dst_at = ((gi * geo.n + ni) * pq * kg).reshape(-1)
        blocks = (src_at, pq, dst_at, kg, kg, pq)
    else:
        return None
    s0, s_stride, d0, d_stride, rows, cols = blocks
    dst = np.zeros(-(-work.numel(name) // 64) + 1, np.uint64)
    transpose_bits(_stored_src(work, name), s0, s_stride, dst, d0, d_stride, rows, cols)
    return dst


def _stored_src(work: Workload, name: str) -> np.ndarray:
    """The operand's packed words as stored in the trace, plus the spare zero word _bits_at reads
    past the last run (memoised per op; one small copy of the packed words, never inflated)."""
    memo = _op_cache(work)
    key = ("src", name)
    got = memo.get(key)
    if got is None:
        got = np.concatenate([np.asarray(work.packed[name], dtype=np.uint64).reshape(-1), np.zeros(1, np.uint64)])
        got.flags.writeable = False
        memo[key] = got
    return got


def _pad_end(off: np.ndarray, lanes: int) -> np.ndarray:
    width = -(-off.size // lanes) * lanes
    return np.concatenate([off, np.full(width - off.size, -1, dtype=np.int64)])


def gemm_side_matrix(work: Workload, side: str) -> np.ndarray:
    """(G, rows, K) bool: A as rows over K, or B^T (columns of B over K), in the reduction order of
    the lowering registry. Only for operands that need a layout change, never for conv input windows."""
    g = work.groups
    return _side_layout(work, side).reshape(g, -1, work.k)


def _side_layout(work: Workload, side: str) -> np.ndarray:
    """gemm_side_matrix before its final reshape: a (transposed) view of the stored mask whose C-order
    flattening is the matrix (no copy yet: _matrix_src copies it once, straight into packed words)."""
    name = work.a if side == "a" else work.b
    g, geo = work.groups, work.conv
    if geo is None:
        u = work.used_mask(name)
        if u.ndim == 2:
            u = u[None]
        return u if side == "a" else np.swapaxes(u, 1, 2)
    kg, cg = geo.k // g, geo.c // g
    x = work.mask(name)
    if name == "weight":  # (K, Cg, R, S)
        wt = x.reshape(g, kg, cg, geo.r, geo.s)
        if work.pass_ == "fwd":  # columns = filters over (r, s, c)
            return wt.transpose(0, 1, 3, 4, 2)
        # dgrad: columns (c, r, s) over k
        return wt.transpose(0, 2, 3, 4, 1)
    if name == "grad_output":  # (N, K, P, Q)
        d = x.reshape(geo.n, g, kg, geo.p, geo.q)
        if work.pass_ == "dgrad":  # A rows (n, p, q) over k
            return d.transpose(1, 0, 3, 4, 2)
        # wgrad: B columns k over (n, p, q)
        return d.transpose(1, 2, 0, 3, 4)
    raise ValueError(f"no matrix view for operand {name!r} of conv2d {work.pass_}")


# ----------------------------------------------------------------------------------------------
# MAC counts (exact, factorised)
# ----------------------------------------------------------------------------------------------

def _tap_index(out: int, kern: int, stride: int, pad: int, dil: int, size: int) -> np.ndarray:
    """(out, kern) input coordinate of output o and tap t, `size` (a zero slot) where it is padding."""
    o = np.arange(out)[:, None]
    t = np.arange(kern)[None, :]
    idx = o * stride - pad + t * dil
    return np.where((idx >= 0) & (idx < size), idx, size)


def factor_counts(work: Workload) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(a_f, b_f, na_f, nb_f) with effectual = sum a_f*b_f, dense = sum na_f*nb_f,
    one-sided A = sum a_f*nb_f and one-sided B = sum na_f*b_f (int64 arrays over factors f).

    fwd: f = (g, c, r, s): a_f = non-zero input taps over all windows, b_f = non-zero weights over k.
    dgrad: f = (g, k): a_f = nnz of dY channel k, b_f = nnz of filter k.
    wgrad: f = (g, n, p, q): a_f = non-zero input taps of window (n,p,q) over (c,r,s), b_f = nnz of
    dY at pixel (n,p,q) over k. matmul/bmm: f = (batch, k).
    Computed once per workload (the sparse and the dense op_cost of an op both need it); read-only.
    """
    cache = _op_cache(work)
    got = cache.get("factors")
    if got is None:
        got = _factor_counts(work)
        _frozen(*got)
        cache["factors"] = got
    return got


def _count(mask: np.ndarray, axis) -> np.ndarray:
    """Non-zeros of a bool mask along `axis` (int64). Summed over the uint8 view with the narrowest
    accumulator that cannot overflow for that many elements: 2-5x faster than bool.sum(dtype=int64)
    and no int64 copy of the mask (a 10240x20480 operand would be 1.7 GB)."""
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    length = int(np.prod([mask.shape[a] for a in axes], dtype=np.int64)) if axes else 1
    acc = np.int16 if length < 1 << 15 else np.int32 if length < 1 << 31 else np.int64
    u = mask.view(np.uint8) if mask.dtype == np.bool_ else (mask != 0).view(np.uint8)
    return u.sum(axis=axis, dtype=acc).astype(np.int64)


def _factor_counts(work: Workload) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    geo, g = work.conv, work.groups
    if geo is None:
        # per (batch, k): A (G?, M, K) counted over M, B (G?, K, N) over N, on the masks as used
        af = _count(work.used_mask(work.a), -2).reshape(-1)
        bf = _count(work.used_mask(work.b), -1).reshape(-1)
        return af, bf, np.full_like(af, work.m), np.full_like(bf, work.n)
    cg, kg = geo.c // g, geo.k // g
    if work.pass_ == "dgrad":
        d = work.mask("grad_output")
        af = _count(d.reshape(geo.n, geo.k, -1), 2).sum(axis=0)  # per k (all groups, k-major = g, kg)
        bf = _count(work.mask("weight").reshape(geo.k, -1), 1)
        return af, bf, np.full_like(af, work.m), np.full_like(bf, work.n)
    x = work.mask("input")
    hi = _tap_index(geo.p, geo.r, geo.stride[0], geo.padding[0], geo.dilation[0], geo.h)  # (P, R)
    wi = _tap_index(geo.q, geo.s, geo.stride[1], geo.padding[1], geo.dilation[1], geo.w)  # (Q, S)
    if work.pass_ == "fwd":
        # a_f[c,r,s] = sum_n sum_p sum_q x[n,c,hi[p,r],wi[q,s]] = sum_{h,w} cnt[c,h,w]*IH[r,h]*IW[s,w]
        cnt = _count(x, 0)  # (C, H, W)
        ih = np.zeros((geo.r, geo.h + 1), dtype=np.int64)
        np.add.at(ih, (np.broadcast_to(np.arange(geo.r)[None, :], hi.shape), hi), 1)
        iw = np.zeros((geo.s, geo.w + 1), dtype=np.int64)
        np.add.at(iw, (np.broadcast_to(np.arange(geo.s)[None, :], wi.shape), wi), 1)
        # contracted one axis at a time (C*H*W*(R+S) work instead of C*H*W*R*S), exact in int64
        t = np.tensordot(cnt, iw[:, : geo.w], axes=([2], [1]))  # (C, H, S)
        af = np.tensordot(ih[:, : geo.h], t, axes=([1], [1])).transpose(1, 0, 2).reshape(-1)  # (g, c, r, s)
        wt = work.mask("weight").reshape(g, kg, cg * geo.r * geo.s)
        bf = _count(wt, 1).reshape(-1)  # (g, c, r, s)
        return af, bf, np.full_like(af, work.m), np.full_like(bf, work.n)
    # wgrad
    xc = _count(x.reshape(geo.n, g, cg, geo.h, geo.w), 2)  # (N, G, H, W)
    xc = np.pad(xc, ((0, 0), (0, 0), (0, 1), (0, 1)))  # zero slot for padding taps
    af = np.zeros((geo.n, g, geo.p, geo.q), dtype=np.int64)
    for r in range(geo.r):
        for s in range(geo.s):
            af += xc[:, :, hi[:, r][:, None], wi[:, s][None, :]]
    dy = _count(work.mask("grad_output").reshape(geo.n, g, kg, geo.p, geo.q), 2)
    af = af.transpose(1, 0, 2, 3).reshape(-1)
    bf = dy.transpose(1, 0, 2, 3).reshape(-1)
    return af, bf, np.full_like(af, work.m), np.full_like(bf, work.n)


def effectual_macs(work: Workload) -> int:
    """MACs whose operands are both non-zero (exact): the factorised count, or the pair kernel's
    count where it ran first for this op (_pair_group_kernel; the two are tested equal)."""
    cache = _op_cache(work)
    got = cache.get("effectual")
    if got is None:
        af, bf, _, _ = factor_counts(work)
        got = cache["effectual"] = int(np.dot(af, bf))
    return got


def one_sided_macs(work: Workload, side: str) -> int:
    """MACs whose `side` operand ('a' or 'b') is non-zero (the work of a one-sided skipping PE)."""
    af, bf, na, nb = factor_counts(work)
    return int(np.dot(af, nb)) if side == "a" else int(np.dot(na, bf))


# ----------------------------------------------------------------------------------------------
# N:M compliance
# ----------------------------------------------------------------------------------------------

@lazy_njit
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@lazy_njit
def _bits_at(words, pos, nbits):
    """Bits pos .. pos+nbits-1 (1 <= nbits <= 64) of a packed array, as the low bits of a uint64.
    Branch-free (a data-dependent branch here made the kernels ~10x slower): it always reads
    words[(pos >> 6) + 1], so every packed array and row buffer keeps one spare zero word."""
    sh = np.uint64(pos & 63)
    w = pos >> 6
    v = (words[w] >> sh) | ((words[w + 1] << (np.uint64(63) - sh)) << np.uint64(1))
    return v & (((np.uint64(1) << np.uint64(nbits - 1)) << np.uint64(1)) - np.uint64(1))


@lazy_njit
def _gather(src, b, run_k, run_off, run_len, out):
    """GEMM row with source bit base b, gathered into reduction-order words out[:] (padding lanes 0)."""
    for w in range(out.size):
        out[w] = 0
    for r in range(run_k.size):
        k = run_k[r]
        out[k >> 6] |= _bits_at(src, b + run_off[r], run_len[r]) << np.uint64(k & 63)


@lazy_njit
def _transpose64(a):
    """In place: bit c of word i <-> bit i of word c of a 64 x 64 bit matrix (64 uint64 words;
    Hacker's Delight §7-3, swapping ever smaller off-diagonal blocks)."""
    j = 32
    m = np.uint64(0x00000000FFFFFFFF)
    while j != 0:
        k = 0
        while k < 64:
            t = ((a[k] >> np.uint64(j)) ^ a[k + j]) & m
            a[k + j] ^= t
            a[k] ^= t << np.uint64(j)
            k = (k + j + 1) & ~j
        j >>= 1
        m ^= m << np.uint64(j)


@lazy_njit(args=("u8[:]", "i8[:]", "u8[:]!", "i8[:]", "i8"))
def copy_bits(src, s0, dst, d0, length):
    """For every block b: bits s0[b] .. s0[b]+length-1 of `src` to bits d0[b] .. of `dst` (zeroed
    beforehand, every target bit written once), 64 at a time; both keep a spare zero word."""
    for b in range(s0.size):
        for off in range(0, length, 64):
            v = _bits_at(src, s0[b] + off, min(64, length - off))
            p = d0[b] + off
            sh = p & 63
            dst[p >> 6] |= v << np.uint64(sh)
            if sh != 0:
                dst[(p >> 6) + 1] |= v >> np.uint64(64 - sh)


def transpose_bits(src: np.ndarray, s0: np.ndarray, s_stride: int, dst: np.ndarray, d0: np.ndarray,
                   d_stride: int, rows: int, cols: int) -> None:
    """Bit-matrix transposes between packed arrays: for every block b, the rows x cols matrix with
    element (r, c) at bit s0[b] + r*s_stride + c of `src` is written transposed, element (r, c) to
    bit d0[b] + c*d_stride + r of `dst` (zeroed beforehand; every target bit written once). In 64 x
    64 tiles (_transpose64): ~0.1 ns a bit, where numpy's inflate, strided copy and pack cost ~0.6.
    Both arrays keep a spare zero word (_bits_at reads, and a tile's last row writes, one word on)."""
    _transpose_bits(src, s0, s_stride, dst, d0, d_stride, rows, cols, np.zeros(64, np.uint64))


@lazy_njit(args=("u8[:]", "i8[:]", "i8", "u8[:]!", "i8[:]", "i8", "i8", "i8", "u8[:]!"))
def _transpose_bits(src, s0, s_stride, dst, d0, d_stride, rows, cols, a):
    """transpose_bits with its 64-word tile buffer `a` passed in."""
    for b in range(s0.size):
        for r0 in range(0, rows, 64):
            nr = min(64, rows - r0)
            for c0 in range(0, cols, 64):
                nc = min(64, cols - c0)
                for i in range(nr):
                    a[i] = _bits_at(src, s0[b] + (r0 + i) * s_stride + c0, nc)
                for i in range(nr, 64):
                    a[i] = 0
                _transpose64(a)
                for c in range(nc):
                    p = d0[b] + (c0 + c) * d_stride + r0
                    sh = p & 63
                    dst[p >> 6] |= a[c] << np.uint64(sh)
                    if sh + nr > 64:
                        dst[(p >> 6) + 1] |= a[c] >> np.uint64(64 - sh)


def nm_groups(src: np.ndarray, base: np.ndarray, run_k: np.ndarray, run_off: np.ndarray,
              run_len: np.ndarray, k: int, n: int, m: int) -> tuple[int, int]:
    """(groups of m consecutive reduction positions holding <= n non-zeros, all groups) over every
    row of a view: the row is gathered into words, each group is one popcount of m bits (_nm_groups)."""
    ngroups = -(-k // m)
    row = np.zeros((ngroups * m + 63) // 64 + 1, np.uint64)
    return _nm_groups(src, base, run_k, run_off, run_len, k, n, m, row), ngroups * base.size


@lazy_njit(args=("u8[:]", "i8[:]", "i8[:]", "i8[:]", "i8[:]", "i8", "i8", "i8", "u8[:]!"), ret="i8")
def _nm_groups(src, base, run_k, run_off, run_len, k, n, m, row):
    """nm_groups' compliant groups, with the row buffer passed in."""
    full = k // m  # a last group shorter than m is never compliant (it cannot be stored as n of m)
    ok = 0
    for i in range(base.size):
        _gather(src, base[i], run_k, run_off, run_len, row)
        for gi in range(full):
            if _popcount64(_bits_at(row, gi * m, m)) <= n:
                ok += 1
    return ok


def _check_m(m: int) -> None:
    if not 1 <= m <= 64:
        raise ValueError(f"N:M group size m={m} must be in 1..64")


def nm_fraction_along(mask: np.ndarray, n: int, m: int, axis: int) -> float:
    """Fraction of the groups of m consecutive elements along `axis` of a stored tensor's mask
    holding at most n non-zeros; a last group shorter than m (an axis of 1..m-1 elements, or a
    remainder) is not compliant. The same group counter as
    nm_compliance, for a plain tensor axis (footprint's N:M storage check) instead of a pass's
    GEMM reduction."""
    mask = np.asarray(mask)
    if mask.ndim == 0 or mask.size == 0:
        return 1.0
    _check_m(m)
    ok, total = _nm_count(mask, axis % mask.ndim, n, m)
    return ok / total if total else 1.0


def _nm_count(x: np.ndarray, axis: int, n: int, m: int) -> tuple[int, int]:
    """(groups of m consecutive elements along ``axis`` holding <= n non-zeros, all groups) of an
    array: each axis is cut into ceil(L/m) groups, a last one shorter than m never compliant.
    Numpy on the inflated mask: one uint8 sum per group, no numba (_nm_groups counts the same from
    packed words where the groups run along an im2col window)."""
    x = np.asarray(x)
    length = x.shape[axis]
    if length == 0 or x.size == 0:
        return 0, 0
    full = length // m
    total = -(-length // m) * (x.size // length)
    if not full:
        return 0, total
    if not x.flags.c_contiguous:
        # Count in memory order: permuting the other axes changes no group (groups run along
        # `axis` only), and a transposed view (a matmul wgrad's used operand) is then read in place
        # instead of copied element by element (7 s for GPT-2's 50257 x 8192 logits gradient).
        order = sorted(range(x.ndim), key=lambda i: -abs(x.strides[i]))
        xt = x.transpose(order)
        if xt.flags.c_contiguous:
            x, axis = xt, order.index(axis)
    x = np.ascontiguousarray(x if x.dtype == np.bool_ else x != 0)
    pre = int(np.prod(x.shape[:axis], dtype=np.int64))
    u = x.view(np.uint8).reshape(pre, length, -1)[:, : full * m].reshape(pre, full, m, -1)
    return int(np.count_nonzero(_group_ok(u, n, m))), total


_WORD = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _group_ok(u: np.ndarray, n: int, m: int) -> np.ndarray:
    """u: (pre, groups, m, post) 0/1 uint8; True where a group's m bytes sum to <= n. Groups of 2,
    4 or 8 consecutive bytes are summed as one word (times 0x0101.., the top byte holds the sum:
    each byte is 0 or 1, so no carry reaches it); otherwise the m slices are added."""
    if u.shape[3] == 1 and m in _WORD and u.flags.c_contiguous:
        w = u.reshape(-1).view(_WORD[m])
        mult = _WORD[m](int("01" * m, 16))
        return ((w * mult) >> _WORD[m](8 * (m - 1))).reshape(u.shape[0], u.shape[1], 1) <= n
    acc = u[:, :, 0].copy()
    for i in range(1, m):
        acc += u[:, :, i]
    return acc <= n


def _u8(x: np.ndarray) -> np.ndarray:
    """A mask as contiguous 0/1 bytes (a copy only where it is not contiguous bool already)."""
    return np.ascontiguousarray(x if x.dtype == np.bool_ else x != 0).view(np.uint8)


# Largest im2col (elements) _nm_numpy builds for a wgrad conv input whose groups straddle output
# rows (Q % m != 0); beyond it the packed-word kernel runs. A memory cap (bytes of a bool matrix),
# not a model number.
IM2COL_CAP = 1 << 26


def _nm_numpy(work: Workload, side: str, n: int, m: int) -> tuple[int, int] | None:
    """nm_compliance's (compliant groups, groups) along this pass's reduction with numpy, or None
    where only the packed-word kernel applies. The counts equal _nm_groups over operand_view: the
    same groups of m consecutive reduction positions of every GEMM row (A) / column (B), padding
    lanes zero. Where a conv input's groups stay inside one input pixel's channels (fwd, Cg % m == 0)
    or one output row (wgrad, Q % m == 0) the windows are not built: each input group is counted
    once and weighted by how many windows read it (as factor_counts does for MACs); a fwd group
    across taps is summed from m strided views of the input; a wgrad group across output rows
    from an im2col (up to IM2COL_CAP)."""
    name = work.a if side == "a" else work.b
    geo, g = work.conv, work.groups
    if geo is None:
        nnz, numel = work.nnz[name], work.numel(name)
        if n < m and nnz in (0, numel):
            # all non-zero (a dense activation or gradient) or all zero: the counts follow from the
            # shape, no mask is inflated -- every full group holds m > n non-zeros (none compliant)
            # or none (all compliant); a short last group is never compliant (as _nm_count)
            shape = work.shapes[name]
            if work.transposed.get(name):
                shape = (*shape[:-2], shape[-1], shape[-2])
            length = shape[-1] if side == "a" else shape[-2]
            if length == 0 or numel == 0:
                return 0, 0
            rows = numel // length
            return (0 if nnz else (length // m) * rows), -(-length // m) * rows
        u = work.used_mask(name)
        return _nm_count(u, u.ndim - 1 if side == "a" else u.ndim - 2, n, m)
    kg, cg = geo.k // g, geo.c // g
    rs, pq = geo.r * geo.s, geo.p * geo.q
    pass_ = work.pass_
    if name == "weight":
        x = work.mask("weight").reshape(g, kg, cg, rs)
        if pass_ == "fwd":  # columns (g, k) over (r, s, c): a tap-major copy unless R*S == 1
            return _nm_count(x.transpose(0, 1, 3, 2).reshape(g * kg, rs * cg), 1, n, m)
        return _nm_count(x, 1, n, m)  # dgrad: columns (g, c, r, s) over k
    if name == "grad_output":
        d = work.mask("grad_output").reshape(geo.n, g, kg, pq)
        if pass_ == "dgrad":  # rows (g, n, p, q) over k
            return _nm_count(d, 2, n, m)
        if pq % m == 0:  # wgrad columns (g, k) over (n, p, q): no group crosses an image
            return _nm_count(d, 3, n, m)
        return _nm_count(gemm_side_matrix(work, side), 2, n, m)
    if name != "input" or pass_ not in ("fwd", "wgrad"):
        return None
    x = work.mask("input")
    (ph, pw), (sh, sw), (dh, dw) = geo.padding, geo.stride, geo.dilation
    hp, wp = geo.h + 2 * ph, geo.w + 2 * pw
    if pass_ == "fwd":  # rows (g, n, p, q) over (r, s, c), channels fastest
        total = g * geo.n * pq * -(-(rs * cg) // m)
        if cg % m == 0:
            # groups of m channels of one pixel; a padding pixel's groups are all compliant (zeros)
            ok_px = np.full((geo.h + 1, geo.w + 1), geo.n * (geo.c // m), dtype=np.int64)
            grp = _group_ok(_u8(x).reshape(geo.n * geo.c // m, 1, m, geo.h * geo.w), n, m)
            ok_px[: geo.h, : geo.w] = np.count_nonzero(grp, axis=(0, 1)).reshape(geo.h, geo.w)
            hi = _tap_index(geo.p, geo.r, sh, ph, dh, geo.h)  # (P, R): input row, H = padding
            wi = _tap_index(geo.q, geo.s, sw, pw, dw, geo.w)
            ih = np.bincount(hi.ravel(), minlength=geo.h + 1).astype(np.int64)
            iw = np.bincount(wi.ravel(), minlength=geo.w + 1).astype(np.int64)
            return int(ih @ ok_px @ iw), total
        # groups straddle taps: group j's members are positions (r, s, c') of the reduction; its sum
        # over every window (n, p, q) of every conv group is the sum of m strided views of the
        # padded input, one per member (no im2col is built)
        xp = np.zeros((geo.n, geo.c, hp, wp), dtype=np.uint8)
        xp[:, :, ph:ph + geo.h, pw:pw + geo.w] = _u8(x)
        kk = np.arange((rs * cg) // m * m).reshape(-1, m)  # members of every full group
        ok = 0
        for members in kk.tolist():
            acc = np.zeros((geo.n, g, geo.p, geo.q), dtype=np.uint8)
            for pos in members:
                (r, s_), c_ = divmod(pos // cg, geo.s), pos % cg
                acc += xp[:, c_::cg, r * dh: r * dh + sh * (geo.p - 1) + 1: sh, s_ * dw: s_ * dw + sw * (geo.q - 1) + 1: sw]
            ok += int(np.count_nonzero(acc <= n))
        return ok, total
    # wgrad: rows (g, c, r, s) over (n, p, q), q fastest
    total = geo.c * rs * -(-(geo.n * pq) // m)
    if geo.q % m == 0 and rs == 1 and (sh, sw, ph, pw) == (1, 1, 0, 0):  # 1x1, stride 1: the input itself
        return _nm_count(x, 3, n, m)[0], total
    if ph or pw:
        xs = np.zeros((geo.n, geo.c, hp, wp), dtype=np.uint8)
        xs[:, :, ph:ph + geo.h, pw:pw + geo.w] = _u8(x)
    else:
        xs = _u8(x)
    if geo.q % m == 0:
        # groups of m output columns of one (n, p): count them per padded input row and weight each
        # row by the (p, r) pairs reading it
        rows = (np.arange(geo.p)[:, None] * sh + np.arange(geo.r)[None, :] * dh).ravel()
        per_row = np.bincount(rows, minlength=hp).astype(np.int64)
        # win[.., w] = x[w] + x[w + sw] + .. + x[w + (m-1) sw]: the group of tap s and output
        # columns m*j .. m*j + m-1 is the window at w = s*dw + m*j*sw
        span = (m - 1) * sw
        win = np.zeros((geo.n, geo.c, hp, wp - span), dtype=np.uint8)
        for i in range(m):
            win += xs[:, :, :, i * sw: wp - span + i * sw]
        ok = 0
        for s_ in range(geo.s):
            grp = win[:, :, :, s_ * dw: s_ * dw + m * sw * (geo.q // m - 1) + 1: m * sw] <= n  # (N, C, Hp, Q/m)
            ok += int(np.count_nonzero(grp, axis=(0, 1, 3)).astype(np.int64) @ per_row)
        return ok, total
    if geo.c * rs * geo.n * pq > IM2COL_CAP:
        return None
    cols = np.empty((geo.c, geo.r, geo.s, geo.n, geo.p, geo.q), dtype=bool)
    for r in range(geo.r):
        for s_ in range(geo.s):
            tap = xs[:, :, r * dh: r * dh + sh * (geo.p - 1) + 1: sh, s_ * dw: s_ * dw + sw * (geo.q - 1) + 1: sw]
            cols[:, r, s_] = tap.transpose(1, 0, 2, 3)
    ok, _ = _nm_count(cols.reshape(geo.c * rs, -1), 1, n, m)
    return ok, total


def nm_compliance(work: Workload, operand: str, n: int, m: int) -> float:
    """Fraction of the operand's groups of m consecutive elements along the GEMM reduction (K) of
    *this* pass holding at most n non-zeros (1.0 = fully N:M). `operand` is a trace operand name or
    'a'/'b'. A group shorter than m (K not a multiple of m: the remainder, or a depthwise conv's
    reduction of 1..m-1 elements) is not compliant: N:M hardware stores exactly n of every m
    (docs/sources.md "NVIDIA A100"), so a short group has no compressed form."""
    if operand in ("a", work.a):
        side = "a"
    elif operand in ("b", work.b):
        side = "b"
    else:
        raise ValueError(f"operand {operand!r} is not an operand of this op ({work.a}, {work.b})")
    _check_m(m)
    cache = _op_cache(work)
    key = ("nm", side, n, m)
    if key not in cache:
        got = _nm_numpy(work, side, n, m)
        if got is None:
            v = operand_view(work, side)
            got = nm_groups(v.src, v.base, *v.runs, v.off.size, n, m)
        ok, total = got
        cache[key] = ok / total if total else 1.0
    return cache[key]


# ----------------------------------------------------------------------------------------------
# TensorDash scheduler (docs/sources.md "SWAT's accelerator: TensorDash": DNNsim TensorDash.cpp
# semantics; Mahmoud et al. MICRO 2020)
# ----------------------------------------------------------------------------------------------

def td_candidates(lookahead: int, lookaside: int, search: str = "T") -> tuple[np.ndarray, np.ndarray]:
    """Promotion candidates (h, d) in priority order.

    "T": the H lookahead slots (h, 0), h = 1..H, then `lookaside` side slots +1, -1, +2, -2, +3, ...
    with d taken from step h = ((|d|-1) mod H) + 1 -- for H=2, D=5 exactly TensorDash's T-shape
    (1,0), (2,0), (1,+1), (1,-1), (2,+2), (2,-2), (1,+3) (docs/sources.md "SWAT's accelerator:
    TensorDash"). "full": every (h, d) with 1 <= h <= H and |d| <= D, nearest first.
    """
    hs, ds = [], []
    if lookahead <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if search == "T":
        for h in range(1, lookahead + 1):
            hs.append(h)
            ds.append(0)
        d = 1
        while len(hs) < lookahead + lookaside:
            for sign in (1, -1):
                if len(hs) < lookahead + lookaside:
                    hs.append((d - 1) % lookahead + 1)
                    ds.append(sign * d)
            d += 1
    else:
        for h in range(1, lookahead + 1):
            for d in range(0, lookaside + 1):
                for sign in ((1,) if d == 0 else (1, -1)):
                    hs.append(h)
                    ds.append(sign * d)
    return np.array(hs, np.int64), np.array(ds, np.int64)


def td_schedule(rows: np.ndarray, nrows: int, lanes: int, lookahead: int, cand_h: np.ndarray,
                cand_d: np.ndarray) -> int:
    """Cycles to process a stream of `nrows` rows of `lanes` bits (bit set = non-zero), modifying
    `rows` (int64, length >= nrows). Each cycle: every empty lane of the current row, in lane order,
    takes the first still-unclaimed non-zero among its candidates (t+h, lane+d); the row executes
    (1 cycle); then up to `lookahead` following rows that are now all zero are skipped. Advance <= H+1
    rows per cycle, so a stream never runs faster than (H+1)x its dense length.
    One stream of td_rows_cycles, the jitted scheduler (a view of `rows`, so it is modified in place)."""
    view = np.asarray(rows, dtype=np.int64)[:nrows].reshape(1, nrows)
    return int(td_rows_cycles(view, lanes, lookahead, cand_h, cand_d)[0])


# Largest promotion table td_rows_cycles builds (2**bits int64 entries, 32 KiB); past it, past 3
# lookahead steps or past 63 bits of packed source rows the scheduler walks each lane's candidates
# in turn. A cache-size cap, not a model number.
TD_TABLE_BITS = 12

# Lane index of an isolated bit b: _CTZ64[(b * _DEBRUIJN) mod 2**64 >> 58] (a de Bruijn sequence: the
# top 6 bits of the product differ for every b = 2**i), so the lookup kernel calls no popcount and
# compiles without it.
_DEBRUIJN = 0x03F79D71B4CB0A89
_CTZ64 = np.zeros(64, np.int64)
_CTZ64[[((_DEBRUIJN << i) % (1 << 64)) >> 58 for i in range(64)]] = np.arange(64)


@functools.lru_cache(maxsize=16)
def _td_table(lanes: int, cand: tuple[tuple[int, int], ...]) -> tuple | None:
    """td_rows_cycles' promotion table for `lanes` and the candidates (h, d) in priority order:
    (cs, table, win, hmax, field, lo): cs[ci] = lane 0's source bit of candidate ci in the packed
    word, win[:, h-1] = step h's window (its shift in word >> lane, its mask, its offset in the
    table index); None where it does not fit. Built here, not in the kernel: a kernel that
    allocates nothing compiles ~0.1 s faster from an empty cache."""
    if not cand or lanes > 63:
        return None
    hs, ds = [h for h, _ in cand], [d for _, d in cand]
    hmax, lo, hi = max(hs), max(0, -min(ds)), max(0, max(ds))
    field = lanes + lo + hi
    if min(hs) < 1 or hmax > 3 or hmax * field > 63:
        return None
    win = np.zeros((3, 3), np.int64)
    dmin, bits = {}, 0
    for h in range(1, hmax + 1):
        dh = [d for hh, d in cand if hh == h]
        if dh:
            dmin[h], width = min(dh), max(dh) - min(dh) + 1
            win[:, h - 1] = ((h - 1) * field + lo + dmin[h], (1 << width) - 1, bits)
            bits += width
    if bits > TD_TABLE_BITS:
        return None
    idx = np.arange(1 << bits, dtype=np.int64)
    table = np.zeros(1 << bits, np.int64)
    for h, d in reversed(cand):  # written last = the first candidate in priority order whose bit is set
        table[((idx >> int(win[2, h - 1] + d - dmin[h])) & 1) == 1] = 1 << ((h - 1) * field + lo + d)
    cs = np.array([(h - 1) * field + lo + d for h, d in cand], np.int64)
    return cs, table, win, hmax, field, lo


def td_rows_cycles(rows: np.ndarray, lanes: int, lookahead: int, cand_h: np.ndarray,
                   cand_d: np.ndarray) -> np.ndarray:
    """td_schedule of every stream (row) of a (streams, nrows) int64 array of lane rows (values
    < 2**lanes), modifying it: the one TensorDash scheduler (lane_rows / td_stream_cycles build its
    input).

    The empty lanes of a row take their candidates one lane at a time, in lane order (a lane's
    choice depends on the bits lower lanes claimed; in a bit-parallel pass the lanes of an
    80%-sparse stream collide in most rows, and the repair costs more than it saves), but where it
    fits (_td_table) each lane's choice is one table lookup (_td_lookup) instead of a branch per
    candidate (_td_walk): the source rows t+1..t+H are packed into one word, step h in a field of
    lo zero bits, the lanes, hi zero bits (lo, hi: the largest -d, +d), so lane l's candidates of
    step h are the contiguous bits l+dmin_h .. l+dmax_h of its field; the windows, concatenated,
    index a table holding the bit of the first candidate (priority order) that is set. The same
    choice as the walk: the index is exactly the current state of lane l's candidate bits, and a
    source outside the lanes is a padding bit, always zero. The two kernels are compiled apart, so
    a run compiles only the one it uses."""
    lanes, lookahead = int(lanes), int(lookahead)  # one compiled signature whatever ints come in
    plan = _td_table(lanes, tuple(zip(cand_h.tolist(), cand_d.tolist())))
    out = np.empty(rows.shape[0], np.int64)
    if plan is None:
        _td_walk(rows, lanes, lookahead, np.ascontiguousarray(cand_h, np.int64),
                 np.ascontiguousarray(cand_d, np.int64), out)
    else:
        _td_lookup(rows, lanes, lookahead, *plan, _CTZ64, out)
    return out


@lazy_njit
def _next_row(rows, i, t, lookahead):
    """The row stream i executes after row t: t + 1, then up to `lookahead` following rows that are
    all zero skipped (both schedulers)."""
    nrows = rows.shape[1]
    t += 1
    skipped = 0
    while skipped < lookahead and t < nrows and rows[i, t] == 0:
        t += 1
        skipped += 1
    return t


@lazy_njit(args=("i8[:,:]!", "i8", "i8", "i8[:]", "i8[:]", "i8[:,:]", "i8", "i8", "i8", "i8[:]", "i8[:]!"))
def _td_lookup(rows, lanes, lookahead, cs, table, win, hmax, field, lo, ctz, out):
    """td_rows_cycles with _td_table's plan (at most 3 steps: unused windows have mask 0), the
    cycles of stream i into out[i]."""
    nrows = rows.shape[1]
    full = (1 << lanes) - 1
    nc = cs.size
    # lane l's index: step h's window (word >> (l + s_h)) & m_h, moved to its offset o_h -- folded
    # as (word >> (l + s_h - o_h)) & (m_h << o_h), so every shift amount is known before the word
    # (the chain from one lane's claim to the next lane's lookup is shorter)
    s1, s2, s3 = win[0, 0], win[0, 1] - win[2, 1], win[0, 2] - win[2, 2]
    m1, m2, m3 = win[1, 0], win[1, 1] << win[2, 1], win[1, 2] << win[2, 2]
    for i in range(rows.shape[0]):
        t = 0
        cycles = 0
        while t < nrows:
            todo = ~rows[i, t] & full
            if todo != 0:
                word = 0
                for h in range(1, hmax + 1):
                    if t + h < nrows:
                        word |= rows[i, t + h] << ((h - 1) * field + lo)
                # only empty lanes that see a non-zero among their candidates can promote: the union
                # of the candidate rows shifted by -d (claims only clear bits, so it is an upper bound
                # for the whole lane-order pass and skipping the other lanes changes nothing); bits
                # 0..lanes-1 of word >> cs[ci] are exactly step h's field shifted by lo + d
                reach = 0
                for ci in range(nc):
                    reach |= word >> cs[ci]
                todo &= reach
                if todo != 0:
                    while todo != 0:
                        bit = todo & -todo  # the lowest empty lane left, in order
                        todo ^= bit
                        ln = ctz[((bit * _DEBRUIJN) >> 58) & 63]
                        word &= ~(table[((word >> (ln + s1)) & m1) | ((word >> (ln + s2)) & m2)
                                        | ((word >> (ln + s3)) & m3)] << ln)
                    for h in range(1, hmax + 1):
                        if t + h < nrows:
                            rows[i, t + h] = (word >> ((h - 1) * field + lo)) & full
            cycles += 1
            t = _next_row(rows, i, t, lookahead)
        out[i] = cycles


@lazy_njit(args=("i8[:,:]!", "i8", "i8", "i8[:]", "i8[:]", "i8[:]!"))
def _td_walk(rows, lanes, lookahead, cand_h, cand_d, out):
    """td_rows_cycles walking each empty lane's candidates in priority order (any H, D, lanes), the
    cycles of stream i into out[i]."""
    nrows = rows.shape[1]
    full = (1 << lanes) - 1
    nc = cand_h.size
    for i in range(rows.shape[0]):
        t = 0
        cycles = 0
        while t < nrows:
            row = rows[i, t]
            if row != full:
                reach = 0  # as in _td_lookup
                for ci in range(nc):
                    tt = t + cand_h[ci]
                    if tt < nrows:
                        d = cand_d[ci]
                        reach |= (rows[i, tt] >> d) if d >= 0 else (rows[i, tt] << -d)
                todo = ~row & full & reach
                while todo != 0:
                    ln = _popcount64(np.uint64((todo & -todo) - 1))  # lowest empty lane left, in order
                    todo &= todo - 1
                    for ci in range(nc):
                        tt = t + cand_h[ci]
                        ll = ln + cand_d[ci]
                        if tt < nrows and ll >= 0 and ll < lanes and (rows[i, tt] >> ll) & 1:
                            rows[i, tt] &= ~(1 << ll)
                            break
            cycles += 1
            t = _next_row(rows, i, t, lookahead)
        out[i] = cycles


def td_stream_cycles(src: np.ndarray, base: np.ndarray, run_k: np.ndarray, run_off: np.ndarray,
                     run_len: np.ndarray, k: int, lanes: int, lookahead: int, cand_h: np.ndarray,
                     cand_d: np.ndarray) -> np.ndarray:
    """TensorDash cycles of the stream of every row of an operand view whose k reduction positions
    are laid out in rows of `lanes` (k a multiple of lanes, lanes <= 63): the lane rows of a chunk
    of streams (at most LANE_ROWS_CAP bytes of int64) gathered word by word (_td_gather), then
    td_rows_cycles."""
    nrows = k // lanes
    step = max(1, (LANE_ROWS_CAP // 8) // max(nrows, 1))
    out = np.empty(base.size, np.int64)
    for s in range(0, base.size, step):
        chunk = np.ascontiguousarray(base[s:s + step])
        rows = np.empty((chunk.size, nrows), np.int64)
        _td_gather(src, chunk, run_k, run_off, run_len, k, lanes, rows, np.zeros((k + 63) // 64 + 1, np.uint64))
        out[s:s + step] = td_rows_cycles(rows, lanes, lookahead, cand_h, cand_d)
    return out


@lazy_njit(args=("u8[:]", "i8[:]", "i8[:]", "i8[:]", "i8[:]", "i8", "i8", "i8[:,:]!", "u8[:]!"))
def _td_gather(src, base, run_k, run_off, run_len, k, lanes, out, row):
    """The (base.size, k // lanes) int64 lane rows of the view rows with these bases into `out`:
    each row gathered into words (`row`, (k + 63) // 64 + 1 words) once, then each lane row is one
    bit-field read."""
    nrows = k // lanes
    for i in range(base.size):
        _gather(src, base[i], run_k, run_off, run_len, row)
        for t in range(nrows):
            out[i, t] = np.int64(_bits_at(row, t * lanes, lanes))


# ----------------------------------------------------------------------------------------------
# two-sided (bitmap AND + popcount) work per lockstep group
# ----------------------------------------------------------------------------------------------

def pair_group_work(a_src: np.ndarray, a_base: np.ndarray, a_runs: tuple, b_src: np.ndarray,
                    b_base: np.ndarray, b_runs: tuple, k: int, m: int, n: int, groups: int, gm: int,
                    gn: int, lanes: int) -> tuple[np.ndarray, int]:
    """Per lockstep group of gm GEMM rows x gn GEMM columns: the slowest PE's cycles,
    max over its pairs (i, j) of ceil(popcount(A_i & B_j) / lanes) (effectual pairs, both non-zero),
    and the group's effectual MACs. Returns (cycles[G, ceil(m/gm), ceil(n/gn)], effectual).
    a_runs / b_runs: (run_k, run_off, run_len) of the two views over the same k positions.
    B is kept word-major (bt[w, j]), so the innermost loop runs over the columns j of one word:
    contiguous, from 0, and vectorised (AND + popcount of 4 columns per instruction) even where the
    reduction is one or two words, where a per-pair loop over words paid its overhead per pair
    (2-5x slower on ResNet-50's convs, benchmarks/bench_speed.py)."""
    if min(gm, gn, lanes) < 1:  # the kernel divides by them (and its machine code cannot raise)
        raise ValueError(f"pair_group_work: gm, gn and lanes must be >= 1, not {gm}, {gn}, {lanes}")
    words, mb, nb = -(-k // 64), -(-m // gm), -(-n // gn)
    cyc = np.zeros((groups, mb, nb), np.int64)
    buffers = (np.zeros((words, n), np.uint64), np.zeros(words + 1, np.uint64), np.zeros(n, np.int64),
               np.zeros(nb * gn, np.int64))
    eff = _pair_group_work(a_src, a_base, *a_runs, b_src, b_base, *b_runs, k, m, n, groups, gm, gn, lanes,
                           cyc, *buffers)
    return cyc, eff


@lazy_njit(args=("u8[:]", "i8[:]", "i8[:]", "i8[:]", "i8[:]", "u8[:]", "i8[:]", "i8[:]", "i8[:]", "i8[:]",
                 "i8", "i8", "i8", "i8", "i8", "i8", "i8", "i8[:,:,:]!", "u8[:,:]!", "u8[:]!", "i8[:]!", "i8[:]!"),
           ret="i8")
def _pair_group_work(a_src, a_base, a_rk, a_ro, a_rl, b_src, b_base, b_rk, b_ro, b_rl, k, m, n, groups, gm,
                     gn, lanes, cyc, bt, row, cnt, worst):
    """pair_group_work into `cyc`, returning the effectual MACs; its buffers passed in: bt (words, n)
    B word-major, row (words + 1), cnt (n) popcount(A_i & B_j) of the current row i for every column
    j, worst (nb * gn) the max over the row block's rows so far per column."""
    words = (k + 63) // 64
    mb = (m + gm - 1) // gm
    nb = (n + gn - 1) // gn
    eff = 0
    for g in range(groups):
        for j in range(n):
            _gather(b_src, b_base[g * n + j], b_rk, b_ro, b_rl, row)
            for w in range(words):
                bt[w, j] = row[w]
        for mi in range(mb):
            lo = g * m + mi * gm
            hi = min(lo + gm, (g + 1) * m)
            worst[:] = 0
            for i in range(lo, hi):
                _gather(a_src, a_base[i], a_rk, a_ro, a_rl, row)
                cnt[:] = 0
                for w in range(words):
                    aw = row[w]
                    for j in range(n):
                        cnt[j] += _popcount64(aw & bt[w, j])
                for j in range(n):
                    c = cnt[j]
                    eff += c
                    if c > worst[j]:
                        worst[j] = c
            for ni in range(nb):
                mx = 0
                for j in range(ni * gn, ni * gn + gn):  # columns past n stay 0
                    if worst[j] > mx:
                        mx = worst[j]
                cyc[g, mi, ni] = (mx + lanes - 1) // lanes
    return eff


_PAIR_KERNEL = _pair_group_work  # the lazy wrapper (the module global becomes numba's dispatcher once loaded)


# Limits of pair_group_cycles' BLAS path (memory caps, not model numbers): the largest (G, rows, K)
# bool operand matrix _pair_blas builds, and the float32 slice of A it multiplies at once. Beyond
# the first, or for K >= 2^24 (float32 sums of 0/1 stop being exact integers), the kernel runs.
PAIR_MATRIX_CAP = 1 << 25
PAIR_CHUNK = 1 << 24


def side_matrix(work: Workload, side: str) -> np.ndarray:
    """(G, rows, K) bool: GEMM operand A (rows over K) or B^T (columns over K) in the lowering
    registry's reduction order -- the matrix operand_view(work, side) reads bit by bit (no lanes).
    A conv input (fwd windows, wgrad transposed windows) is cut from the zero-padded input by a
    strided view and copied once; every other operand is gemm_side_matrix."""
    name = work.a if side == "a" else work.b
    geo, g = work.conv, work.groups
    if geo is None or name != "input" or work.pass_ not in ("fwd", "wgrad"):
        return gemm_side_matrix(work, side).reshape(g, -1, work.k)
    x = work.mask("input")
    n, c = x.shape[0], x.shape[1]
    cg = c // g
    (ph, pw), (sh, sw), (dh, dw) = geo.padding, geo.stride, geo.dilation
    hp, wp = geo.h + 2 * ph, geo.w + 2 * pw
    out = []
    if work.pass_ == "fwd":  # rows (n, p, q) over (r, s, c), channels fastest: padded NHWC
        xp = np.zeros((n, hp, wp, c), dtype=bool)
        xp[:, ph:ph + geo.h, pw:pw + geo.w, :] = x.transpose(0, 2, 3, 1)
        s_n, s_h, s_w, s_c = xp.strides
        for gi in range(g):
            win = np.lib.stride_tricks.as_strided(
                xp[:, :, :, gi * cg:], (n, geo.p, geo.q, geo.r, geo.s, cg),
                (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c), writeable=False)
            out.append(win.reshape(n * geo.p * geo.q, geo.r * geo.s * cg))
        return out[0][None] if g == 1 else np.stack(out)
    # wgrad: rows (c, r, s) over (n, p, q), q fastest: padded NCHW
    xp = np.zeros((n, c, hp, wp), dtype=bool)
    xp[:, :, ph:ph + geo.h, pw:pw + geo.w] = x
    s_n, s_c, s_h, s_w = xp.strides
    for gi in range(g):
        win = np.lib.stride_tricks.as_strided(
            xp[:, gi * cg:], (cg, geo.r, geo.s, n, geo.p, geo.q),
            (s_c, s_h * dh, s_w * dw, s_n, s_h * sh, s_w * sw), writeable=False)
        out.append(win.reshape(cg * geo.r * geo.s, n * geo.p * geo.q))
    return out[0][None] if g == 1 else np.stack(out)


def pair_group_cycles(work: Workload, gm: int, gn: int, lanes: int, *,
                      blas: bool | None = None) -> tuple[np.ndarray, int]:
    """pair_group_work of the op's two operand views: (cycles[G, ceil(M/gm), ceil(N/gn)], effectual
    MACs). Two equal implementations (tests/test_kernels.py::test_pair_blas_equals_the_kernel): the
    BLAS product _pair_blas, which needs no numba, and the word-popcount kernel. ``blas``:
    the path a caller chose for the whole run (sparse_pe.plan, from pair_blas_wins); the product is
    still only used within its caps (pair_blas_fits). None: the per-process rule -- the product
    while this process's products stay within pair_blas_limit() (a ski-rental rule: at most about
    twice the better path)."""
    global _blas_macs
    g, m, n, k = work.groups, work.m, work.n, work.k
    if min(g, m, n, k) == 0:  # no pairs (the kernel's answer too)
        return np.zeros((g, -(-m // gm), -(-n // gn)), np.int64), 0
    macs = g * m * n * k
    if blas is None:
        blas = _blas_macs + macs <= pair_blas_limit()
    if blas and pair_blas_fits(g, m, n, k):
        _blas_macs += macs
        return _pair_blas(work, gm, gn, lanes)
    return _pair_group_kernel(work, gm, gn, lanes)


def pair_blas_fits(groups: int, m: int, n: int, k: int) -> bool:
    """Whether _pair_blas takes a GEMM of these dimensions (its memory cap; float32 sums exact)."""
    return k < 1 << 24 and groups * max(m, n) * k <= PAIR_MATRIX_CAP


def pair_blas_wins(macs: int) -> bool:
    """Whether a run should count its `macs` two-sided MACs with the BLAS product (pair_blas_limit)."""
    return macs <= pair_blas_limit()


def _kernel_paid() -> bool:
    """Whether this process has paid the pair kernel's fixed cost (numba or its machine code loaded)."""
    return _numba_loaded() or _PAIR_KERNEL.machine_code_loaded()


def pair_blas_limit() -> int:
    """The two-sided MACs up to which this process should count pairs with the BLAS product: the
    crossover (_pair_crossover) against the fixed cost the kernel path has still to pay -- none once
    numba or the kernel's machine code is loaded (-1: never the product); loading the shipped
    machine code (PAIR_NATIVE_BLAS_MACS) where accelsim.sim.native has it; else numba's import and
    load, or compile (PAIR_BLAS_MACS)."""
    if _kernel_paid():
        return -1
    if native.available(_PAIR_KERNEL.native):
        return PAIR_NATIVE_BLAS_MACS
    return PAIR_BLAS_MACS


def _pair_crossover(blas_ps: float, kernel_ps: float, load_s: float, compile_s: float) -> int:
    """The run size (MACs) below which the BLAS product is the safer path. The kernel's cost depends
    on an on-disk cache (numba's, or the native machine code's) that a process does not check
    before it loads the kernel: load_s + T*kernel
    with it filled, compile_s more with it empty (once per install); the product costs T*blas either
    way. Each path is judged by its worst case against the better path (the product: a filled
    cache, T*blas / (load_s + T*kernel); the kernel: an empty one, (load_s + compile_s + T*kernel) /
    (T*blas)) and the product is used while its ratio is the smaller: below the T where the two
    ratios meet, the positive root of (b^2 - k^2) T^2 - k (2 load_s + compile_s) T
    - load_s (load_s + compile_s) = 0 (T in 10^12 MACs for b, k in ps)."""
    b, k = blas_ps, kernel_ps
    lin = k * (2 * load_s + compile_s)
    disc = lin * lin + 4 * (b * b - k * k) * load_s * (load_s + compile_s)
    return int((lin + disc ** 0.5) / (2 * (b * b - k * k)) * 1e12)


# CPU cost of the two pair-count paths per dense MAC, operand matrices / views included, and of the
# kernel path's fixed cost -- on one core (ResNet-50 ImageNet SWAT traces, sparten_like, batch 2 and
# 8; benchmarks/bench_speed.py, warm and cold columns): the product 27-30 ps/MAC, the kernel 5-7.5
# ps/MAC. Its fixed cost under numba: importing numba and loading the cached kernels 0.26 s,
# compiling them (pair_group_work, transpose_bits, copy_bits) into an empty cache 1.8 s: the product
# below PAIR_BLAS_MACS, about 37.6 GMACs. From the shipped machine code (accelsim.sim.native):
# importing llvmlite and loading the three kernels' cached object code 0.065-0.073 s, generating it
# into an empty cache 0.11 s more (fresh processes, this machine): the product below
# PAIR_NATIVE_BLAS_MACS, about 5.2 GMACs (the shipped ResNet-50 trace's 23.8: the kernel). Speed
# crossovers, not model numbers: both paths give the same integers.
PAIR_BLAS_PS_PER_MAC = 28
PAIR_KERNEL_PS_PER_MAC = 6
NUMBA_LOAD_SECONDS = 0.26
PAIR_COMPILE_SECONDS = 1.8
PAIR_BLAS_MACS = _pair_crossover(PAIR_BLAS_PS_PER_MAC, PAIR_KERNEL_PS_PER_MAC, NUMBA_LOAD_SECONDS,
                                 PAIR_COMPILE_SECONDS)
NATIVE_LOAD_SECONDS = 0.07
NATIVE_COMPILE_SECONDS = 0.11
PAIR_NATIVE_BLAS_MACS = _pair_crossover(PAIR_BLAS_PS_PER_MAC, PAIR_KERNEL_PS_PER_MAC, NATIVE_LOAD_SECONDS,
                                        NATIVE_COMPILE_SECONDS)
_blas_macs = 0


def _pair_blas(work: Workload, gm: int, gn: int, lanes: int) -> tuple[np.ndarray, int]:
    """pair_group_work as a 0/1 matrix product: popcount(A_i & B_j) = (A @ B^T)[i, j], in float32
    (BLAS), exact because every partial sum is an integer below K < 2^24; rows of A in slices of
    about PAIR_CHUNK elements. Effectual MACs: the factorised count (effectual_macs)."""
    g, m, n, k = work.groups, work.m, work.n, work.k
    a_mat, b_mat = side_matrix(work, "a"), side_matrix(work, "b")
    mb, nb = -(-m // gm), -(-n // gn)
    cyc = np.zeros((g, mb, nb), np.int64)
    # rows of A per product, whole row blocks: the A slice and its (rows, N) product each stay
    # within about PAIR_CHUNK elements
    step = max(1, PAIR_CHUNK // max(k, n, 1) // gm) * gm
    with _one_blas_thread():
        _pair_products(a_mat, b_mat, cyc, step, gm, gn, lanes)
    return cyc, effectual_macs(work)


def _pair_products(a_mat, b_mat, cyc, step, gm, gn, lanes) -> None:
    g, m, _ = a_mat.shape
    n = b_mat.shape[1]
    nb = cyc.shape[2]
    for gi in range(g):
        bt = b_mat[gi].astype(np.float32).T  # (K, N)
        for lo in range(0, m, step):
            hi = min(lo + step, m)
            c = a_mat[gi, lo:hi].astype(np.float32) @ bt  # (rows, N) pair counts
            full = (hi - lo) // gm
            # the max over a row block's gm rows first (contiguous rows), then over gn columns
            worst = np.zeros((-(-(hi - lo) // gm), nb * gn), np.float32)  # counts >= 0: zero padding
            worst[:full, :n] = c[: full * gm].reshape(full, gm, n).max(axis=1)
            if full * gm < hi - lo:
                worst[full, :n] = c[full * gm:].max(axis=0)
            worst = worst.reshape(-1, nb, gn).max(axis=2).astype(np.int64)
            cyc[gi, lo // gm: lo // gm + worst.shape[0]] = -(-worst // lanes)


def _one_blas_thread():
    """BLAS on one thread inside the block (threadpoolctl): the products are a small share of a run,
    and OpenBLAS's spinning worker threads cost ~2x their wall-time gain in CPU and stall when
    another process holds the cores. The controller (which scans the loaded libraries) is built once
    per process; limiting and restoring is then cheap."""
    return _blas_controller().limit(limits=1, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _pair_group_kernel(work: Workload, gm: int, gn: int, lanes: int) -> tuple[np.ndarray, int]:
    va, vb = operand_view(work, "a"), operand_view(work, "b")
    cyc, eff = pair_group_work(va.src, va.base, va.runs, vb.src, vb.base, vb.runs, work.k, work.m, work.n,
                               work.groups, gm, gn, lanes)
    # the kernel counts every effectual pair: it is the op's effectual MACs (effectual_macs then
    # needs no factor counts); where those were computed already, the two must agree
    known = _op_cache(work).setdefault("effectual", eff)
    if known != eff:
        raise AssertionError(f"two-sided pair count {eff} disagrees with the factorised count {known}")
    return cyc, eff


# Largest lane-row matrix (streams x padded reduction, bool elements) lane_rows builds; beyond it
# td_stream_cycles gathers each stream's rows itself. A memory cap, not a model number.
LANE_ROWS_CAP = 1 << 25


def lane_rows(work: Workload, side: str, lanes: int) -> np.ndarray | None:
    """(G*rows, nrows) int64: every stream of operand_view(work, side, lanes) as its lane rows, bit
    l of row t = reduction position t*lanes + l of the view (padding lanes 0) -- what
    td_stream_cycles gathers word by word, built here with numpy from side_matrix (a conv fwd
    operand's channel run padded to the lanes per kernel tap, every other reduction at its end).
    None where the matrix would pass LANE_ROWS_CAP."""
    name = work.a if side == "a" else work.b
    geo, g, k = work.conv, work.groups, work.k
    per_tap = geo is not None and work.pass_ == "fwd" and name in ("input", "weight")
    rs = geo.r * geo.s if per_tap else 1
    run = k // rs  # channels per tap, or the whole reduction
    width = -(-run // lanes) * lanes
    streams = g * (work.m if side == "a" else work.n)
    if streams * rs * width > LANE_ROWS_CAP or lanes > 63:
        return None
    mat = side_matrix(work, side).reshape(streams, rs, run)
    if width != run:
        padded = np.zeros((streams, rs, width), dtype=bool)
        padded[:, :, :run] = mat
        mat = padded
    nrows = rs * width // lanes
    if lanes % 8 == 0:
        # every lane row is lanes/8 whole bytes: the contiguous matrix packed in one flat call
        # (numpy's vectorised packbits, ~4x a multiply trick and ~20x packbits along a short last
        # axis of `lanes` elements, which the other lane counts need)
        packed = np.packbits(np.ascontiguousarray(mat).reshape(-1), bitorder="little")
        packed = packed.reshape(streams, nrows, lanes // 8)
    elif lanes >= 4:  # each lane row padded to whole bytes (at most 2x the matrix), then the same call
        wide = -(-lanes // 8) * 8
        rowbits = np.zeros((streams, nrows, wide), dtype=bool)
        rowbits[:, :, :lanes] = mat.reshape(streams, nrows, lanes)
        packed = np.packbits(rowbits.reshape(-1), bitorder="little").reshape(streams, nrows, wide // 8)
    else:
        packed = np.packbits(mat.reshape(streams, nrows, lanes), axis=-1, bitorder="little")
    nbytes = packed.shape[2]
    if nbytes in (1, 2, 4, 8):  # each row's bytes are one little-endian word
        return packed.view(f"<u{nbytes}").reshape(streams, -1).astype(np.int64)
    rows = packed[:, :, 0].astype(np.int64)
    for b in range(1, nbytes):  # little-endian bytes of each row
        rows |= packed[:, :, b].astype(np.int64) << (8 * b)
    return rows
