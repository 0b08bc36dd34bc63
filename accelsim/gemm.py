"""`accelsim gemm M N K --hw HW`: one GEMM C[M,N] = A[M,K] @ B[K,N], dense and (with --sparse 2:4) with
A the 2:4 operand (mma.sp's and cuSPARSELt's convention: the first operand is the sparse one,
docs/sources.md "NVIDIA A100" / "NVIDIA Hopper").

The GEMM is built with the lowering's public constructor (workload.gemm_workload: a matmul op, dense
masks, or an exactly-2:4 A mask along K) and costed by engine.simulate_op, the same path as `accelsim
run`, so the numbers equal a trace holding that one matmul. What bounds a run is read off that result
and the plan the GPU model chose (sim/gpu.py GemmPlan):

* compute: the tensor-core cycles of the main loop, sum over waves of (CTAs on the busiest SM) x
  step_cycles x ksteps (gpu.gemm_stream's MMA term);
* L2: the rest of the stall-free compute cycles (main-loop steps lengthened to the L2 bytes / L2
  bandwidth, epilogue writes, the split-K reduction kernel);
* HBM: the memory engine's stall cycles (loads that did not arrive in time);
* launch: the fixed cycles (kernel launches, plus the library model's fixed times per kernel and
  per CTA).
The largest of the four is named as the bound; all four are reported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from accelsim.errors import AccelsimError, HardwareConfigError

BOUNDS = ("compute", "L2", "HBM", "launch")
# Largest accepted M, N or K before anything is built; the lowering's own limits (working memory per
# op, ACCELSIM_MAX_OP_BYTES) then apply to the whole GEMM.
MAX_DIM = 1 << 31
DTYPE_ALIASES = {"bfloat16": "bf16"}


@dataclass(frozen=True)
class GemmRun:
    """One costed run of the GEMM (dense baseline or 2:4)."""

    seconds: float
    cycles: int
    tflops: float  # 2*M*N*K / seconds / 1e12 (dense-equivalent FLOPs, the usual convention)
    bound: str  # one of BOUNDS: the largest part of `parts`
    parts: dict[str, int]  # cycles per BOUNDS entry; they sum to `cycles`
    tile: tuple[int, int, int]  # the CTA tile the model chose
    split_k: int
    fallback: str | None  # why 2:4 was not used (sparse run only)


@dataclass(frozen=True)
class GemmReport:
    m: int
    n: int
    k: int
    hw: str
    dtype: str
    mode: str  # kernel_model: "ideal" (what the silicon allows) or "library" (what libraries reach)
    sparse_requested: bool
    dense: GemmRun
    sparse: GemmRun  # == dense when --sparse was not given
    speedup: float  # dense.seconds / sparse.seconds
    # library model: the data type its kernel parameters were fitted on (the file's data_type; a
    # --dtype variant keeps them), None for the ideal model
    fitted_on: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(dense_seconds=self.dense.seconds, sparse_seconds=self.sparse.seconds,
                 tflops={"dense": self.dense.tflops, "sparse": self.sparse.tflops},
                 bound={"dense": self.dense.bound, "sparse": self.sparse.bound},
                 tile={"dense": list(self.dense.tile), "sparse": list(self.sparse.tile)})
        return d


def parse_dim(text, name: str) -> int:
    """A GEMM dimension: a positive whole number up to MAX_DIM (one-line error otherwise)."""
    s = str(text).strip()
    try:
        v = int(s, 10)
    except ValueError:
        raise AccelsimError(f"{name} must be a positive whole number, got {s[:40]!r}") from None
    if not 1 <= v <= MAX_DIM:
        raise AccelsimError(f"{name} must be between 1 and {MAX_DIM}, got {s[:40]}")
    return v


def check_dtype(hw, dtype: str | None):
    """(hw in ``dtype``, the dtype's name): the file's data_type when ``dtype`` is None, else the
    variant accelsim.hw.families.gpu.with_dtype derives from the file's compute.dtypes rates (one-line
    HardwareConfigError naming the supported dtypes otherwise)."""
    from accelsim.hw.families.gpu import with_dtype
    if dtype is None:
        return hw, DTYPE_ALIASES.get(hw.compute.data_type, hw.compute.data_type)
    v = with_dtype(hw, dtype)
    return v, DTYPE_ALIASES.get(v.compute.data_type, v.compute.data_type)


def two_four_words(m: int, k: int) -> np.ndarray:
    """Packed words (workload.pack_words layout) of an exactly-2:4 A (M,K) mask along K: in every
    group of 4 consecutive K elements the first two are kept. With K a multiple of 4 the C-order bit
    pattern is periodic (bits i % 4 in {0, 1}): every word is 0x3333..., built without a bool array."""
    from accelsim.trace.format import pack_words

    numel = m * k
    if k % 4 == 0:
        words = np.full(-(-numel // 64), np.uint64(0x3333333333333333), dtype=np.uint64)
        if numel % 64:
            words[-1] &= np.uint64((1 << (numel % 64)) - 1)
        return words
    row = (np.arange(k) % 4) < 2
    return pack_words(np.broadcast_to(row, (m, k)))


def _run(res, hw, *, sparse_side: bool, m: int, n: int, k: int) -> GemmRun:
    """GemmRun of one side of an engine.simulate_op result (sparse side: res.total_cycles on hw;
    dense side: res.dense_cycles on hw.dense())."""
    from accelsim.sim import gpu

    hwx = hw if sparse_side else hw.dense()
    nm_on = sparse_side and res.sparse_operand is not None
    one = Fraction(1)
    cost = gpu.gemm_search(m, n, k, 1, hwx, nm_on, ("a", "b"), one, one, one, None)  # memoised: the run's plan
    plan, stream = cost.plan, cost.stream
    compute = int(stream.compute_cycles.sum())
    want = res.compute_cycles if sparse_side else res.dense_compute_cycles
    if compute != want:
        raise AssertionError(f"gemm: the plan's compute cycles {compute} are not the simulator's {want}")
    total = res.total_cycles if sparse_side else res.dense_cycles
    fixed = cost.fixed
    cnt = np.full(plan.waves, plan.wave_size, dtype=np.int64)
    if plan.waves:
        cnt[-1] = plan.ctas - (plan.waves - 1) * plan.wave_size
    busy = -(-cnt // hwx.compute.sms)  # CTAs on the busiest SM, per wave
    mma = int((busy * plan.step_cycles * plan.ksteps).sum())
    cta = int(busy.sum()) * gpu.cta_fixed_cycles(hwx, nm_on)  # the library model's per-CTA time
    parts = {"compute": mma, "L2": compute - mma - cta, "HBM": total - compute - fixed, "launch": fixed + cta}
    bound = max(BOUNDS, key=lambda b: parts[b])  # ties: the earlier entry
    seconds = total / hw.clock_hz
    return GemmRun(seconds, total, 2 * m * n * k / seconds / 1e12, bound, parts, tuple(plan.tile),
                   plan.split_k, res.fallback if sparse_side else None)


def gemm_report(m: int, n: int, k: int, hw, *, dtype: str | None = None, sparse: str | None = None,
                ideal: bool = False) -> GemmReport:
    """Cost C[M,N] = A[M,K] @ B[K,N] on the GPU config `hw` (a HardwareConfig or a name/path).
    ``ideal``: the ideal-kernel bound (compute.kernel_model "ideal", sim/gpu.py "Kernel model")
    whatever the file's kernel_model; otherwise the file's own model ("ideal" or "library")."""
    from accelsim.hw import load_hw
    from accelsim.hw.config import HardwareConfig
    from accelsim.sim import engine
    from accelsim.sim.workload import gemm_workload, synthetic_op

    if not isinstance(hw, HardwareConfig):
        hw = load_hw(hw)
    if hw.family != "gpu":
        raise HardwareConfigError(f"accelsim gemm models GPUs only; {hw.name[:40]} is a {hw.family} machine")
    for name, v in (("M", m), ("N", n), ("K", k)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_DIM:
            raise AccelsimError(f"{name} must be a whole number between 1 and {MAX_DIM}")
    if sparse not in (None, "2:4"):
        raise AccelsimError(f"--sparse takes 2:4 only, got {str(sparse)[:20]!r}")
    if sparse and (hw.sparsity.kind, hw.sparsity.n, hw.sparsity.m) != ("nm", 2, 4):
        raise AccelsimError(f"{hw.name[:40]} has no 2:4 sparse tensor cores (sparsity kind {hw.sparsity.kind})")
    base_dt = DTYPE_ALIASES.get(hw.compute.data_type, hw.compute.data_type)
    hw, dt = check_dtype(hw, dtype)
    if ideal and getattr(hw.compute, "kernel_model", "ideal") != "ideal":
        hw = dataclasses.replace(hw, compute=dataclasses.replace(
            hw.compute, kernel_model="ideal", mainloop_efficiency=(1.0, 1.0), kernel_fixed_s=(0.0, 0.0),
            cta_fixed_s=(0.0, 0.0), sparse_cta_tiles=(), sparse_split_k=True))
    mode = getattr(hw.compute, "kernel_model", "ideal")
    # the lowering checks the GEMM (dims, working-memory limit) before any mask is built
    synthetic_op("matmul", "fwd", {"a": (m, k), "b": (k, n)}, {})
    packed = {"a": two_four_words(m, k)} if sparse else None
    work = gemm_workload(m, n, k, packed=packed, roles={"a": "weight", "b": "activation"},
                         layer=f"gemm M{m} N{n} K{k}")
    res, _ = engine.simulate_op(work, hw)
    dense = _run(res, hw, sparse_side=False, m=m, n=n, k=k)
    if sparse and res.fallback:
        # The machine cannot run this shape as 2:4 (e.g. N not a multiple of the sparse kernel's
        # alignment): a library refuses the sparse kernel and the GEMM runs dense, so the 2:4 row is
        # the dense run, with the reason. (The simulator may instead delete the synthetic mask's
        # all-zero K columns -- every row keeps the same two positions of each group of 4 -- an
        # artefact of the mask, not something a 2:4 weight offers.)
        sp = dataclasses.replace(dense, fallback=res.fallback)
    else:
        sp = _run(res, hw, sparse_side=True, m=m, n=n, k=k) if sparse else dense
    return GemmReport(m, n, k, hw.name, dt, mode, bool(sparse), dense, sp,
                      dense.seconds / sp.seconds, fitted_on=base_dt if mode == "library" else None)


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.1f} us"


def format_report(r: GemmReport) -> str:
    """The text `accelsim gemm` prints."""
    head = (f"gemm   C[{r.m},{r.n}] = A[{r.m},{r.k}] @ B[{r.k},{r.n}]  {r.dtype}  on {r.hw}  "
            + ("(ideal-kernel bound: what the silicon allows, not a library's measured speed)" if r.mode == "ideal"
             else "(library-realistic kernel model)"))
    if r.fitted_on and r.fitted_on != r.dtype:
        head += f"\n       {r.dtype}: MMA rate from the file's compute.dtypes; kernel parameters fitted on {r.fitted_on}"
    rows = [("dense", r.dense)] + ([("2:4 (A)", r.sparse)] if r.sparse_requested else [])
    lines = [head, "", f"{'run':8} {'time':>11} {'TFLOP/s':>9}  {'bound':7}  {'tile':12} {'split-K':>7}  "
                       f"cycles: compute / L2 / HBM / launch"]
    for label, run in rows:
        p = run.parts
        lines.append(f"{label:8} {_fmt_time(run.seconds):>11} {run.tflops:9.1f}  {run.bound:7}  "
                     f"{'x'.join(map(str, run.tile)):12} {run.split_k:>7}  "
                     f"{p['compute']} / {p['L2']} / {p['HBM']} / {p['launch']}")
    if r.sparse_requested:
        lines += ["", f"speedup 2:4 vs dense: {r.speedup:.2f}x"]
        if r.sparse.fallback:
            lines.append(f"2:4 not used (dense rate charged): {r.sparse.fallback}")
    return "\n".join(lines)
