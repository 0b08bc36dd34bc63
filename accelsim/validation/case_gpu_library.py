"""Case 7: library-realistic GPU kernels (A100, H100, H200) vs published library measurements.

The shipped GPU files (hwconfigs/a100_24.yaml, h100_24.yaml, h200_24.yaml) use the library kernel
model of accelsim/sim/gpu.py ("Kernel model": main-loop efficiency, a fixed time per kernel and per
CTA, dense and 2:4 separately; A100's 2:4 kernel is cuSPARSELt's one kernel without split-K, its CTA
tile the fit's choice),
fitted by accelsim/validation/fit_gpu_library.py to issue 11's calibration data and nothing else.
This case recomputes the fit, checks the shipped files hold its result, and compares every row of
accelsim/validation/data/a100_24_library.csv and hopper_library.csv with the shipped machines
(exactly, through the GPU model and the memory engine; no interpolation): **calibration** rows are
the fit's residuals, **validation** rows were never fitted. Tolerances (issue 11, fixed before
running): dense time within ±25 %, speedup (dense / 2:4) within ±0.15x. Rows of a kernel family the
shipped files do not model (CUTLASS's 2:4 kernels on A100, torchao's fp8 kernels on H100) are
compared with that family's own fitted set (fit_gpu_library's reported sets) and marked so.
pytorch#96147's times include its harness floor (fit_gpu_library: a call costs max(floor, kernel);
floors fitted on its calibration rows, used unchanged on its validation rows). GEMMs are
C[M,N] = A[M,K] @ B[K,N] with A the 2:4 operand (pytorch#90119: N = batch x n). Clock and power
conditions are the sources' (column "conditions" of the CSVs; shown per row where stated).
"""

from __future__ import annotations

from accelsim.validation import a100_library_data as data
from accelsim.validation import fit_gpu_library as fg
from accelsim.validation.report import CaseReport, Check, md_table

TOL_TIME = 0.25     # dense time: ±25 % (issue 11, before running)
TOL_SPEEDUP = 0.15  # speedup: ±0.15x (issue 11, before running)
# NVIDIA/cutlass#2229: CUTLASS's H100 2:4 example is at most ~20 % faster than dense for
# m = 64 .. 32768 with hidden sizes 4096, 5120, 7680 (n = k = hidden here); the check allows the
# speedup tolerance on top: at most 1.2 + 0.15x.
C2229_M = (64, 1024, 32768)
C2229_HIDDEN = (4096, 5120, 7680)
C2229_MAX = 1.20
# PyTorch blog (docs/sources.md "Published dense vs 2:4 measurements"): compressing a 4096 x 1024 fp16
# operand to 2:4 at run time, us: cuSPARSELt, custom kernel. Reported, not checked (issue 11 sets no
# tolerance for it).
BLOG_COMPRESS = ((4096, 1024), {"cuSPARSELt": 380.0, "custom kernel": 36.0})

# Checks known to fail, with the reason (the tests mark exactly these xfail, strict).
_SRC = "pytorch/pytorch#96147, cuSPARSELt 0.4.0"
KNOWN_FAILURES: dict[str, str] = {
    f"calibrate: a100_24 unstated M1024 N2048 K9408 speedup ({_SRC})":
        "1.30x vs 1.48x: #96147's 2:4 kernel is faster on its long-K shapes than #90119's cuSPARSELt "
        "on the same library; one 2:4 main-loop efficiency serves both (model +14 % on 130.1 µs)",
    "calibrate: a100_24 unstated M768 N3072 K3072 speedup (pytorch/pytorch#90119, cuSPARSELt)":
        "1.30x vs 1.48x at batch 4 (a one-wave GEMM); the same shape at batches 16-256 is within "
        "0.11x: the 2:4 time +14 % on 51.5 µs",
    "calibrate: a100_24 fp16 M4096 N4096 K4096 speedup (NVIDIA/CUDALibrarySamples#57, cuSPARSELt)":
        "1.73x vs 1.11x: the 2022 sample (CUDA 11.5) ran cuSPARSELt at 40 % of the 2:4 peak, where "
        "pytorch#90119's cuSPARSELt reaches 60-63 % on larger GEMMs; NVIDIA's answer in the thread: "
        "expected for that size and setup",
    f"validate: a100_24 unstated M1024 N2048 K3200 speedup ({_SRC})":
        "1.27x vs 1.63x: dense 103.4 µs is above #96147's 80 µs floor, accelsim's dense kernel "
        "(~57 µs) is below it, so accelsim charges the floor on both sides",
    "calibrate: h100_24 fp8 M8192 N8192 K8192 speedup (pytorch/ao rowwise_scaled_linear_sparse_cutlass_time_results.csv, "
    "rowwise-scaled 2:4 fp8 (CUTLASS))":
        "1.28x vs 1.09x: torchao's 2:4 fp8 gain falls from 1.40x to 1.09x as m grows 2048 -> 8192 "
        "at the same n = k; accelsim's 2:4 main loop is L2-bound there and its gain flat (1.30x)",
}


def _shipped(name: str):
    from accelsim.hw import load_hw
    return load_hw(fg.HW_DIR / f"{name}.yaml")


def shipped_matches_fit(hw, f: fg.Fit) -> bool:
    """The YAML's library parameters are the fit's (efficiencies to their 0.01 grid, fixed times to
    the 1 us grid, the 2:4 kernel choice)."""
    c = hw.compute
    tiles = () if f.sparse_kernel == fg.SEARCH else (tuple(int(x) for x in f.sparse_kernel.split("x")),)
    return (c.kernel_model == "library"
            and tuple(round(x, 2) for x in c.mainloop_efficiency) == (f.dense_eff, f.sparse_eff)
            and tuple(round(x * 1e6, 6) for x in c.kernel_fixed_s) == (f.dense_fixed_us, f.sparse_fixed_us)
            and tuple(round(x * 1e6, 6) for x in c.cta_fixed_s) == (f.dense_cta_us, f.sparse_cta_us)
            and (c.sparse_cta_tiles == tiles or (not tiles and not c.sparse_cta_tiles))
            and c.sparse_split_k == (f.sparse_kernel == fg.SEARCH))


def _machine_for(r: data.Measurement, fits: dict):
    """(machine, label) a row is compared on: the shipped file, or the reported set of its family."""
    lib = fg._sparse_lib(r.sparse_kernel)
    if r.gpu == "a100_24" and lib == "CUTLASS" and r.sparse_us is not None:
        return fg.machine_of(fits["a100_cutlass"], r.gpu), "A100 CUTLASS 2:4 set"
    if r.dtype == "fp8":
        return fg.machine_of(fits["hopper_fp8"], r.gpu), "Hopper fp8 set"
    return _shipped(r.gpu), ""


def row_model(r: data.Measurement, fits: dict) -> tuple[float, float, str]:
    """(dense us, 2:4 us, machine label) of a CSV row, with pytorch#96147's harness floors."""
    hw, label = _machine_for(r, fits)
    hw = fg.variant(hw, r.dtype)
    d = fg.gemm_seconds(hw, *r.gemm, False) * 1e6
    s = fg.gemm_seconds(hw, *r.gemm, True) * 1e6
    if r.source == fg.FLOOR_SOURCE:
        fd, fs = fits["a100"].floors_us
        d, s = max(fd, d), max(fs, s)
    return d, s, label


def _name(r: data.Measurement, what: str) -> str:
    m, n, k = r.gemm
    kern = f", {r.sparse_kernel}" if what == "speedup" and r.sparse_kernel else ""
    return f"{r.role}: {r.gpu} {r.dtype} M{m} N{n} K{k} {what} ({r.source}{kern})"


def row_checks(r: data.Measurement, fits: dict, seen: set) -> list[Check]:
    d, s, label = row_model(r, fits)
    note = "; ".join(x for x in (f"compared with the {label}" if label else "",
                                 "" if r.conditions.startswith("not stated") else r.conditions) if x)
    out = []
    key = (r.gpu, r.dtype, r.gemm, r.source)  # pytorch#90119 repeats a dense time per 2:4 library
    if r.dense_us is not None and key not in seen:
        seen.add(key)
        err = d / r.dense_us - 1
        out.append(Check(_name(r, "dense time"), f"{r.dense_us:g} µs", r.source, f"{d:.1f} µs",
                         f"{100 * err:+.1f} %", f"±{100 * TOL_TIME:.0f} %", abs(err) <= TOL_TIME, note))
    if r.conditions.startswith("default clocks") and r.sparse_us is not None:
        # power-capped 2:4 number: the row measured with clocks locked is the one modelled
        out.append(Check(_name(r, "2:4 time"), f"{r.sparse_us:g} µs", r.source, f"{s:.1f} µs",
                         f"{100 * (s / r.sparse_us - 1):+.1f} %", "-", None,
                         "reported only: default clocks, power-capped (2:4 below dense); the "
                         "1410 MHz / 400 W row is checked"))
    elif r.sparse_us is not None and r.dense_us is None:
        err = s / r.sparse_us - 1
        out.append(Check(_name(r, "2:4 time"), f"{r.sparse_us:g} µs", r.source, f"{s:.1f} µs",
                         f"{100 * err:+.1f} %", f"±{100 * TOL_TIME:.0f} %", abs(err) <= TOL_TIME, note))
    elif r.speedup is not None:
        sp = d / s
        out.append(Check(_name(r, "speedup"), f"{r.speedup:.2f}x", r.source, f"{sp:.3f}x",
                         f"{sp - r.speedup:+.3f}x", f"±{TOL_SPEEDUP:.2f}x",
                         abs(sp - r.speedup) <= TOL_SPEEDUP, note))
    return out


def run(fits: dict | None = None) -> CaseReport:
    rep = CaseReport(7, "Library-realistic GPU kernels (A100, H100, H200)", intro=__doc__.split("\n", 2)[2])
    fits = fg.run_fits() if fits is None else fits
    for name, key in (("a100_24", "a100"), ("h100_24", "hopper"), ("h200_24", "hopper")):
        f = fits[key]
        rep.checks.append(Check(
            f"{name}.yaml holds the fit", f"{f.dense_eff:.2f} / {f.sparse_eff:.2f}, {f.dense_fixed_us:g} / "
            f"{f.sparse_fixed_us:g} µs per kernel, {f.dense_cta_us:g} / {f.sparse_cta_us:g} µs per CTA, "
            f"2:4 kernel {f.sparse_kernel}", "accelsim/validation/fit_gpu_library.py",
            "equal" if shipped_matches_fit(_shipped(name), f) else "differs", "-", "equal",
            shipped_matches_fit(_shipped(name), f)))
    seen: set = set()
    for path in (data.DATA, data.HOPPER):
        rows = data.load(path)
        for role in ("calibrate", "validate"):
            for r in rows:
                if r.role == role:
                    rep.checks.extend(row_checks(r, fits, seen))
    h100 = _shipped("h100_24")
    worst = max(((fg.gemm_seconds(h100, m, h, h, False) / fg.gemm_seconds(h100, m, h, h, True), m, h)
                 for m in C2229_M for h in C2229_HIDDEN))
    rep.checks.append(Check(
        "calibrate: h100_24 fp16 largest 2:4 speedup, m = " + ", ".join(map(str, C2229_M)) + "; n = k = "
        + ", ".join(map(str, C2229_HIDDEN)), f"≤ {C2229_MAX:.2f}x (at most ~20 % faster)",
        "NVIDIA/cutlass#2229", f"{worst[0]:.3f}x (m {worst[1]}, n = k = {worst[2]})",
        f"{worst[0] - C2229_MAX:+.3f}x", f"≤ {C2229_MAX + TOL_SPEEDUP:.2f}x", worst[0] <= C2229_MAX + TOL_SPEEDUP))
    rep.notes.append(
        "**Measurements of this project's own.** Issue 11 asks for dense vs 2:4 measurements on a real "
        "GPU (benchmarks/gpu_measure.py, prepared and tested on CPU: its CSV loads as a third data file "
        "here, half its shapes calibrate, half validate). No GPU machine was lent to the session that "
        "wrote this case, so the script has not been run yet: the Hopper parameters rest on the "
        "published rows above and this project's earlier H200 bf16 8192³ matmul (788 TFLOP/s).")
    rep.tables.append(_fit_table(fits))
    rep.tables.append(_compress_table())
    failing = rep.failing
    if failing:
        rep.notes.append(
            "**Why these checks fail.** Each is a source the others contradict under one parameter set "
            "per kernel family (least absolute deviations keeps the fit from chasing them):\n\n"
            + "\n".join(f"- {c.name}: {KNOWN_FAILURES.get(c.name, 'not explained')}" for c in failing)
            + "\n\nThe sources differ in library version, harness and clocks (the conditions column); "
            "cutlass#408's dense 302 TFLOP/s is the CUTLASS profiler's best kernel (97 % of peak) where "
            "cuBLAS in the PyTorch rows reaches 75-77 %, which the fitted dense efficiency follows "
            "(its residual is within the tolerance, at its edge).")
    return rep


def _fit_table(fits: dict) -> str:
    rows = []
    for key, f in fits.items():
        rows.append([fg.FIT_NAMES[key], f"{f.dense_eff:.2f}", f"{f.sparse_eff:.2f}", f"{f.dense_fixed_us:g} µs",
                     f"{f.sparse_fixed_us:g} µs", f"{f.dense_cta_us:g} µs", f"{f.sparse_cta_us:g} µs", f.sparse_kernel,
                     "-" if f.floors_us[0] != f.floors_us[0] else f"{f.floors_us[0]:g} / {f.floors_us[1]:g} µs",
                     f"{f.cost:.3f}"])
    return ("The fit (accelsim/validation/fit_gpu_library.py; the method and every term in its docstring). "
            "Efficiencies are the main loop's fraction of the MMA rate, fixed times per GEMM kernel on top "
            "of the 4 µs launch and per CTA (serial on its SM); \"search\" = the whole CTA tile list with split-K; floors: pytorch#96147's "
            "harness, not hardware.\n\n" + md_table(
                ["parameter set", "dense eff.", "2:4 eff.", "dense fixed", "2:4 fixed", "dense per CTA",
                 "2:4 per CTA", "2:4 kernel",
                 "#96147 floors", "Σ|ln(model/measured)|"], rows))


def _compress_table() -> str:
    from accelsim.sim import gpu
    hw = _shipped("a100_24")
    (m, k), meas = BLOG_COMPRESS
    us = gpu.compress_cycles(hw, m * k) / hw.clock_hz * 1e6
    return ("Run-time 2:4 compression of a non-weight operand (accelsim/sim/gpu.py compress_cycles, an HBM "
            "bound plus a launch), not a check (no tolerance was set): accelsim is a lower bound of the "
            "measured kernels.\n\n" + md_table(
                ["operand", "accelsim (a100_24)"] + [f"measured, {x}" for x in meas] + ["source"],
                [[f"{m} x {k} fp16", f"{us:.1f} µs"] + [f"{v:g} µs" for v in meas.values()]
                 + ["PyTorch blog, 2:4 training (A100)"]]))
