"""Case 4: A100 2:4 sparse tensor cores vs Mishra et al. 2021 (arXiv 2104.08378, Fig. 3).

Synthetic GEMMs C[M,N] = A[M,K] @ B[K,N] with A fully 2:4 along K (the first two of every four kept)
and B dense, lowered with accelsim.sim.workload and costed by accelsim.sim.gpu + the memory engine
(accelsim.sim.engine), speedup = dense cycles / sparse cycles of the same GEMM on the same machine.
The published GEMMs are INT8; hwconfigs/a100_24.yaml is fp16, so an INT8 variant is derived in code
(int8_variant below; docs/sources.md "NVIDIA A100": INT8 peak 624 dense / 1248 sparse TOPS = 2x the fp16
MAC rate per tensor core, s8 mma.sp shapes m16n8k32 dense / m16n8k64 sparse; every candidate CTA
tile's K doubled so it holds the same bytes). Since issue 11 a100_24.yaml is library-realistic:
its kernel parameters (main-loop efficiency, fixed times per kernel and per CTA, cuSPARSELt's one
2:4 kernel) are fitted by accelsim/validation/fit_gpu_library.py to issue 11's calibration data,
Fig. 3's three points among them, so the three published points below are fit residuals (case 7
has the fit and its other sources); the fp16 bounds are not fitted. What in the model does not
shrink with 2:4 (accelsim/sim/gpu.py): the L2 -> SM operand feed of the dense B (5120 B/clk, A100
whitepaper), each wave's prologue and epilogue, the output write-back, the launch, and the library
model's fixed time per 2:4 CTA -- the term that makes a short K gain little. Until issue 11 this
case ran the ideal-kernel bound (now a100_24_ideal.yaml), which missed K = 1280 (1.9x against 1.23x)
because nothing of that size was in the model. No tolerance was changed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accelsim.validation.report import CaseReport, Check, md_table

HW_FILE = Path(__file__).resolve().parents[2] / "hwconfigs" / "a100_24.yaml"
SOURCE = "Mishra et al. 2021, arXiv 2104.08378, Fig. 3 (INT8 GEMM, M = N = 10240)"
PUBLISHED = {1280: 1.23, 10240: 1.84, 20480: 1.94}      # speedup, read off the figure
TOL = 0.15                                               # ±0.15x, fixed by issue 5 before running
K_SWEEP = (1280, 2560, 5120, 10240, 15360, 20480)
# fp16 shapes: "large compute-bound" must approach but never exceed 2x; fixed before running:
FP16_LARGE = ((8192, 8192, 8192), (16384, 16384, 8192), (10240, 10240, 20480))
LARGE_MIN = 1.7       # "approaches 2x": at least 1.7x
FP16_SMALL = ((128, 128, 128), (256, 256, 256), (512, 512, 512), (64, 4096, 64))
SMALL_MAX = 1.2       # "gains little or loses": at most 1.2x

# Other published A100 measurements, reported next to accelsim but not checked (issue 5 set no
# tolerance for them): (dtype, M, N, K, measured dense time / 2:4 time, source).
OTHER_MEASUREMENTS = (
    ("fp16", 4096, 4096, 4096, 0.607959 / 0.545792,
     "NVIDIA/CUDALibrarySamples issue #57 (2022, A100, CUDA 11.5): cuSPARSELt 0.546 ms vs CUTLASS "
     "dense 0.608 ms; the cuSPARSELt maintainer: expected for small sizes"),
)

# Checks known to fail, with the reason (stated in docs/validation.md by run(); the tests mark exactly
# these xfail, strict, so a fix shows up as an unexpected pass).
KNOWN_FAILURES: dict[str, str] = {}

NM24 = np.uint64(0x3333333333333333)   # bits 0,1 of every nibble: 2 of every 4 consecutive elements


def int8_variant(hw):
    """The a100_24.yaml machine with INT8 tensor cores (module docstring): the file's compute.dtypes
    int8 rate through accelsim.hw.families.gpu.with_dtype."""
    from accelsim.hw.families.gpu import with_dtype
    return with_dtype(hw, "int8")


def gemm_workload(m: int, n: int, k: int):
    """Workload of a matmul with A (M,K) exactly 2:4 along K and B (K,N) dense, built packed (a bool
    10240x20480 mask would be 200 MB): with K % 4 == 0 the C-order bit pattern of A is 0011 repeated."""
    from accelsim.sim import workload
    assert k % 4 == 0
    na = m * k
    a = np.full(-(-na // 64), NM24, dtype=np.uint64)
    if na % 64:
        a[-1] &= np.uint64((1 << (na % 64)) - 1)
    return workload.gemm_workload(m, n, k, packed={"a": a}, roles={"a": "weight", "b": "activation"})


def speedup(hw, m: int, n: int, k: int) -> tuple[float, str | None, str | None]:
    """(dense cycles / sparse cycles, sparse operand, fallback) from accelsim.sim.engine.simulate_op:
    the family model's tiles through the memory engine plus launch cycles, sparse vs hw.dense()."""
    from accelsim.sim.engine import simulate_op
    r, _ = simulate_op(gemm_workload(m, n, k), hw)
    return r.speedup, r.sparse_operand, r.fallback


def gemm_speedup(hw, m: int, n: int, k: int, out_bytes: int) -> float:
    """Dense / 2:4 cycles of the GEMM written at ``out_bytes`` per output element (gpu.gemm_cost plus
    the memory engine and launches, as simulate_op does; the trace lowering has no output type knob)."""
    from accelsim.sim.gpu import gemm_cost
    from accelsim.sim.memory import run_tiles
    dram = hw.dram()
    t = []
    for sp in (False, True):
        _, stream, fixed, _ = gemm_cost(m, n, k, 1, hw, sparse_a=sp, out_bytes=out_bytes)
        t.append(run_tiles(stream, bytes_per_cycle=dram.bandwidth_bytes_per_s / hw.clock_hz,
                           latency_cycles=dram.latency_cycles).total_cycles + fixed)
    return t[0] / t[1]


def chosen_tiles(hw, m: int, n: int, k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """CTA tiles the dense baseline and the 2:4 run of this GEMM use (gpu.gemm_cost's choice)."""
    from accelsim.sim.gpu import gemm_cost
    return tuple(gemm_cost(m, n, k, 1, hw, sparse_a=sp)[0].tile for sp in (False, True))


def run() -> CaseReport:
    from accelsim.hw import load_hw
    rep = CaseReport(4, "A100 2:4 sparse tensor cores (Mishra et al. 2021)", intro=__doc__.split("\n", 2)[2])
    fp16 = load_hw(HW_FILE)
    int8 = int8_variant(fp16)
    sweep = []
    for k in K_SWEEP:
        s, operand, fallback = speedup(int8, 10240, 10240, k)
        sweep.append((k, s, operand, fallback))
    for k, s, operand, fallback in sweep:
        if k in PUBLISHED:
            pub = PUBLISHED[k]
            rep.checks.append(Check(f"INT8 M=N=10240, K={k}", f"{pub:.2f}x", SOURCE, f"{s:.3f}x",
                                    f"{s - pub:+.3f}x", f"±{TOL:.2f}x", abs(s - pub) <= TOL,
                                    note="" if operand else f"dense fallback: {fallback}"))
    vals = [s for _, s, _, _ in sweep]
    mono = all(b >= a for a, b in zip(vals, vals[1:]))
    rep.checks.append(Check("INT8 M=N=10240: speedup rises monotonically with K",
                            "monotone rise 1.2x -> 1.9x", SOURCE,
                            " → ".join(f"{v:.3f}" for v in vals), "-", "non-decreasing over "
                            + ", ".join(map(str, K_SWEEP)), mono))
    for shapes, label, ok in ((FP16_LARGE, "large compute-bound", lambda s: LARGE_MIN <= s <= 2.0),
                              (FP16_SMALL, "small memory/launch-bound", lambda s: s <= SMALL_MAX)):
        for m, n, k in shapes:
            s, operand, fallback = speedup(fp16, m, n, k)
            tol = f"[{LARGE_MIN}, 2.0]" if "large" in label else f"≤ {SMALL_MAX}"
            rep.checks.append(Check(f"fp16 {label} GEMM {m}x{n}x{k}",
                                    "≤ 2x, approaching 2x" if "large" in label else "little gain or a loss",
                                    "Mishra et al. 2021 ('larger GEMMs achieve nearly 2x'; 2:4 halves the math), "
                                    'docs/sources.md "NVIDIA A100"', f"{s:.3f}x", "-", tol, ok(s),
                                    note="" if operand else f"dense fallback: {fallback}"))
    # What the published points imply: if a share c/T of the dense kernel time does not shrink
    # with 2:4 and the rest halves, s = T / (c + (T - c)/2), so c/T = 2/s - 1 (derivation).
    ideal = {k: 2 * 10240 * 10240 * k / 624e12 for k in PUBLISHED}   # s at 624 dense INT8 TOPS
    imp, nonshrink = [], {}
    for k, pub in PUBLISHED.items():
        frac = 2 / pub - 1
        t = ideal[k] / (1 - frac)
        nonshrink[k] = (frac * t, t)
        ours = next(x for kk, x, _, _ in sweep if kk == k)
        imp.append([k, f"{pub:.2f}x", f"{frac:.3f}", f"{1e3 * t:.2f} ms", f"{1e3 * frac * t:.2f} ms",
                    f"{ours:.3f}x", f"{2 / ours - 1:.3f}"])
    rep.tables.append(
        "What the measured curve implies: the share of dense kernel time that 2:4 does not shrink "
        "(c/T = 2/s − 1), and in absolute terms if the shrinking part runs at the 624 TOPS INT8 "
        "peak:\n\n" + md_table(["K", "published", "non-shrinking c/T", "dense T", "c", "accelsim",
                                 "accelsim c/T"], imp))
    failing = [c for c in rep.checks if c.passed is False]
    tiles = {k: chosen_tiles(int8, 10240, 10240, k) for k in K_SWEEP}
    if any(c.name.endswith(f"K={k}") and k == min(PUBLISHED) for c in failing for k in PUBLISHED):
        k0 = min(PUBLISHED)
        s0 = next(x for kk, x, _, _ in sweep if kk == k0)
        rep.notes.append(
            f"**Why accelsim misses K = {k0}.** What does not shrink with 2:4 in accelsim is per wave "
            "and per byte: each wave's prologue (its first K slices, fetched only once its CTAs are "
            "resident: transfer plus DRAM latency when they come from HBM) and epilogue (the output tile "
            "written into L2 while the tensor cores wait), the L2 -> SM feed of the dense B operand, "
            f"the output write-back and a {1e6 * fp16.compute.launch_overhead_s:g} µs launch. They lower "
            f"the speedup most where the main loop is shortest ({s0:.3f}x at K = {k0}, "
            f"{vals[-1]:.3f}x at K = {K_SWEEP[-1]}), the direction Fig. 3 shows, but they are "
            "microseconds per wave: the measured 1.23x needs "
            f"{1e3 * nonshrink[k0][0]:.2f} ms of a {1e3 * nonshrink[k0][1]:.2f} ms dense kernel not to "
            "shrink (table above); even an INT32 output, four times the bytes to write, gives "
            f"{gemm_speedup(int8, 10240, 10240, k0, 4):.3f}x (sensitivity table). "
            "accelsim has no sourced mechanism of that size (2021 cuSPARSELt "
            "kernel selection or efficiency at small K would be candidates) and fitting one to this "
            "figure is not allowed. Follow-up: measure dense and 2:4 INT8 GEMMs of this sweep on an "
            "A100 (cuSPARSELt / torch._cslt_sparse_mm) to separate kernel efficiency from hardware.")
    dips = [(a, b) for a, b in zip(sweep, sweep[1:]) if b[1] < a[1]]
    if dips:
        txt = "; ".join(
            f"K = {a[0]} → {b[0]}: {a[1]:.3f}x → {b[1]:.3f}x (CTA tiles dense {tiles[a[0]][0]} → "
            f"{tiles[b[0]][0]}, sparse {tiles[a[0]][1]} → {tiles[b[0]][1]})" for a, b in dips)
        rep.notes.append(
            f"**Why the monotone check fails.** The sweep dips: {txt}. The dense and the sparse run each "
            "take the fastest CTA tile of the YAML's list, and as K grows the panels of a wave stop "
            "fitting the L2 together (LRU at wave granularity), so the best tile and the stalls per wave "
            "change in steps; a step that helps the dense baseline more than the sparse run lowers the "
            "ratio. The check allows no decrease at all, so it fails; the rise from the smallest to the "
            "largest K is reproduced.")
    rep.tables.append(
        "Other published A100 measurements, not checks here (case 7 checks them with issue 11's "
        "tolerances).\n\n" + md_table(
            ["GEMM", "measured speedup", "source", "accelsim"],
            [[f"{dt} {m}x{n}x{k}", f"{meas:.2f}x", src,
              f"{speedup(fp16 if dt == 'fp16' else int8, m, n, k)[0]:.3f}x"]
             for dt, m, n, k, meas, src in OTHER_MEASUREMENTS]))
    rep.tables.append(
        "Sensitivity to the output type, not a check (cuSPARSELt's INT8 kernels can write INT8, INT32, "
        "FP16 or BF16; the checks above write INT8, the type of the inputs): a wider output makes the "
        "epilogue and the write-back, which 2:4 does not shrink, longer.\n\n"
        + md_table(["output"] + [f"K={k}" for k in K_SWEEP],
                   [[label] + [f"{gemm_speedup(int8, 10240, 10240, k, ob):.3f}x" for k in K_SWEEP]
                    for label, ob in (("INT8 (1 B)", 1), ("FP16 (2 B)", 2), ("INT32 (4 B)", 4))]))
    rep.tables.append("INT8 sweep (M = N = 10240), derived int8 variant of a100_24.yaml:\n\n" + md_table(
        ["K", "accelsim speedup", "published (Fig. 3)", "sparse operand", "CTA tile dense / 2:4"],
        [[k, f"{s:.3f}x", f"{PUBLISHED[k]:.2f}x" if k in PUBLISHED else "", operand or f"none ({fb})",
          f"{tiles[k][0]} / {tiles[k][1]}"] for k, s, operand, fb in sweep]))
    return rep
