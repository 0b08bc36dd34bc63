"""Case 6: SSL (Wen et al. 2016) group sparsity on dense (systolic) hardware.

How accelsim models it. The systolic model (accelsim/sim/systolic.py) costs the GEMM of the op's
*shape*: it does not look for, or remove, all-zero rows or columns of a masked operand. A group-sparse
mask recorded on a full-size layer therefore runs at dense speed (speedup exactly 1.0), like an
unstructured mask of the same density; only the effectual-MAC count sees the zeros. SSL's speedup
comes from re-shaping the network: in im2col GEMM form, filter-wise groups are the columns of B
(N, one per filter) and shape-wise groups are the rows of B (K, one per (c, r, s)); deleting the
all-zero ones leaves a smaller dense GEMM (FACTS.md "SSL"). `compact()` below does that deletion
(what a user does by recording the slimmed model) and the compacted GEMM is costed by the same
systolic model. Hardware: hwconfigs/systolic_32x32_ws.yaml (SCALE-Sim's scale.cfg), unchanged.

Tolerances, fixed before running: masked full-size ops speedup = 1.0 exactly and compute cycles =
dense; effectual MACs = an independent count (expected_effectual) exactly; compacted compute-cycle speedup = the
fold-formula ratio exactly; compacted total-cycle speedup (with memory stalls) within ±10% of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accelsim.validation.report import CaseReport, Check, md_table
from accelsim.validation.systolic_ref import fold_cycles

HW_FILE = Path(__file__).resolve().parents[2] / "hwconfigs" / "systolic_32x32_ws.yaml"
# A ResNet-18-style 3x3 conv: batch 4, 64 -> 128 channels, 16x16, stride 1, padding 1.
N, C, H, W, K, R, S = 4, 64, 16, 16, 128, 3, 3
KEEP = 0.5          # fraction of filter groups / shape groups kept
SEED = 0
TOTAL_TOL = 0.10
# Checks known to fail, with the reason (stated in docs/validation.md; tests xfail exactly these).
KNOWN_FAILURES = {
    "filter: compacted GEMM, total cycles (memory engine)":
        "super-linear: dense output exceeds the 64 KiB ofmap SRAM and spills partial sums, compacted fits",
    "both: compacted GEMM, total cycles (memory engine)":
        "super-linear: dense output exceeds the 64 KiB ofmap SRAM and spills partial sums, compacted fits",
}


def ssl_weight_mask(kind: str, rng: np.random.Generator) -> np.ndarray:
    """Weight mask (K, C, R, S) with whole SSL groups zeroed: 'filter' W[k,:,:,:], 'shape' W[:,c,r,s],
    'both' = filter and shape; 'unstructured' = the same density scattered element-wise."""
    w = np.ones((K, C, R, S), bool)
    kf = rng.permutation(K)[: int(K * (1 - KEEP))]
    sh = rng.permutation(C * R * S)[: int(C * R * S * (1 - KEEP))]
    if kind in ("filter", "both"):
        w[kf] = False
    if kind in ("shape", "both"):
        w.reshape(K, -1)[:, sh] = False
    if kind.startswith("unstructured"):
        density = {"unstructured50": KEEP, "unstructured25": KEEP * KEEP}[kind]
        flat = np.zeros(w.size, bool)
        flat[rng.permutation(w.size)[: int(round(density * w.size))]] = True
        w = flat.reshape(w.shape)
    return w


def conv_workload(wmask: np.ndarray):
    from accelsim.sim.workload import conv_params, workload_from_masks
    p = conv_params(N, C, H, W, K, R, S, stride=1, padding=1)
    return workload_from_masks("conv2d", "fwd", {"input": np.ones(p["input_shape"], bool), "weight": wmask}, p)


def expected_effectual(wmask: np.ndarray) -> int:
    """Effectual MACs of the fwd conv with an all-ones input (independent of accelsim's kernels):
    weight (k, c, r, s) meets a non-padding input in N * vh[r] * vw[s] windows, where vh[r] counts
    output rows p with 0 <= p - pad + r < H (stride 1). H = 16, pad 1, R = 3: vh = [15, 16, 15]."""
    vh = np.array([sum(0 <= p - 1 + r < H for p in range(H)) for r in range(R)])
    vw = np.array([sum(0 <= q - 1 + s < W for q in range(W)) for s in range(S)])
    per_tap = N * vh[:, None] * vw[None, :]                       # (R, S)
    return int((wmask.sum(axis=(0, 1)) * per_tap).sum())


def compact(wmask: np.ndarray) -> tuple[int, int]:
    """(N', K') of the fwd GEMM after deleting all-zero filters (B columns) and all-zero
    (c, r, s) positions (B rows)."""
    b = wmask.reshape(K, -1)                     # filters x (c, r, s)
    return int(b.any(axis=1).sum()), int(b.any(axis=0).sum())


def gemm_workload(m: int, n: int, k: int):
    from accelsim.sim.workload import workload_from_masks
    return workload_from_masks("matmul", "fwd", {"a": np.ones((m, k), bool), "b": np.ones((k, n), bool)})


def run() -> CaseReport:
    from accelsim.hw import load_hw
    from accelsim.sim.engine import simulate_op
    rep = CaseReport(6, "SSL group sparsity on dense (systolic) hardware", intro=__doc__.split("\n", 2)[2])
    hw = load_hw(HW_FILE)
    comp = hw.compute
    rng = np.random.default_rng(SEED)
    base = conv_workload(np.ones((K, C, R, S), bool))
    m, n, k = base.m, base.n, base.k
    dense_res, _ = simulate_op(base, hw)
    dense_gemm, _ = simulate_op(gemm_workload(m, n, k), hw)
    rows = []
    for kind in ("filter", "shape", "both", "unstructured50", "unstructured25"):
        wm = ssl_weight_mask(kind, rng)
        work = conv_workload(wm)
        res, _ = simulate_op(work, hw)
        density = wm.mean()
        want_eff = expected_effectual(wm)
        rep.checks.append(Check(
            f"{kind} mask (density {density:.2f}) on the full-size conv: no speedup",
            "speedup 1.0, compute = dense, effectual MACs = expected_effectual()",
            "accelsim's systolic model costs the op's shape (module docstring)",
            f"speedup {res.speedup:.4f}, compute {res.compute_cycles} (dense {dense_res.compute_cycles}), "
            f"effectual {res.effectual_macs}", f"{res.speedup - 1:+.1e}", "exact",
            res.speedup == 1.0 and res.compute_cycles == dense_res.compute_cycles
            and res.effectual_macs == want_eff))
        if kind.startswith("unstructured"):
            n2, k2 = compact(wm)
            rows.append([kind, f"{density:.2f}", f"{n2}x{k2}", "no all-zero rows/cols" if (n2, k2) == (n, k)
                         else "", "1.000", "1.000"])
            continue
        n2, k2 = compact(wm)
        small, _ = simulate_op(gemm_workload(m, n2, k2), hw)
        want = fold_cycles(comp.dataflow, comp.rows, comp.cols, m, n, k) / \
            fold_cycles(comp.dataflow, comp.rows, comp.cols, m, n2, k2)
        got_c = dense_gemm.compute_cycles / small.compute_cycles
        got_t = dense_gemm.total_cycles / small.total_cycles
        rep.checks.append(Check(
            f"{kind}: compacted GEMM {m}x{n2}x{k2} vs dense {m}x{n}x{k}, compute cycles",
            f"{want:.3f}x", "fold formula (FACTS.md, systolic_ref.py)", f"{got_c:.3f}x",
            f"{got_c - want:+.1e}", "exact", got_c == want))
        rep.checks.append(Check(
            f"{kind}: compacted GEMM, total cycles (memory engine)", f"{want:.3f}x",
            "fold formula (FACTS.md)", f"{got_t:.3f}x", f"{(got_t - want) / want:+.1%}",
            f"±{TOTAL_TOL:.0%}", abs(got_t - want) <= TOTAL_TOL * want))
        rows.append([kind, f"{density:.2f}", f"{n2}x{k2}", "", f"{got_c:.3f}", f"{got_t:.3f}"])
    if any(not c.passed for c in rep.checks if "total cycles" in c.name):
        ofm = hw.level("ofmap_sram")
        elem = comp.element_bytes
        rep.notes.append(
            "**Why the total-cycle checks fail (filter, both).** The dense GEMM is memory-bound on "
            f"scale.cfg's 10 words/cycle: {dense_gemm.stall_cycles:,} of its {dense_gemm.total_cycles:,} "
            f"cycles are stalls, and {dense_gemm.dram_bytes.get('psum', 0):,} of its DRAM bytes are "
            f"partial sums. Its output C (M x N = {m}x{n} x {elem} B = {m * n * elem:,} B) does not fit "
            f"the {ofm.capacity_bytes:,} B ofmap SRAM, so with K split over folds the systolic model "
            "spills and re-loads partial sums every fold (systolic.py docstring). Deleting half the "
            f"filters makes C {m * n // 2 * elem:,} B, which fits: the psum traffic disappears and the "
            "total-cycle speedup is super-linear, far above the 2x compute ratio. Shape-wise "
            "compaction leaves N and C unchanged and lands within tolerance. The compute-cycle "
            "speedups are exact; the failure is a capacity cliff in the memory model, not a defect of "
            "the compaction. Follow-up for the simulator owners: whether a partial-sum spill at "
            "element width (rather than accumulator width) is the intended model.")
    rep.tables.append(
        f"Fwd GEMM of the layer: M={m} (N·P·Q), N={n} filters, K={k} (C·R·S); 32x32 ws array. "
        "Speedups of the compacted GEMM (all-zero B rows/cols deleted) over the dense one:\n\n"
        + md_table(["mask", "density", "compacted N'xK'", "", "compute speedup", "total speedup"], rows))
    return rep
