"""Case 6: SSL (Wen et al. 2016) group sparsity on dense (systolic) hardware.

How accelsim models it. SSL zeroes whole groups of a weight so that they can be deleted (docs/sources.md
"SSL"): in im2col GEMM form, filter-wise groups are the columns of the fwd B (N, one per filter)
and shape-wise groups its rows (K, one per (c, r, s)). In the sparse run of a dense-hardware family
(systolic.py, gpu.py) accelsim deletes the all-zero rows/columns of the operand whose trace role is
"weight" (accelsim/sim/structure.py; activation zeros are dynamic and never deleted) and costs the
smaller dense GEMM; the dense baseline keeps the full GEMM, so speedup = full / compacted. In dgrad
the weight enters transposed: filters are the reduction (K) and (c, r, s) taps the N side. An
unstructured mask of the same density has no all-zero row or column and runs at dense speed.

This case builds a trace with accelsim.trace.format.TraceWriter: one 3x3 conv (fwd and dgrad) per
mask kind, with hand-made SSL masks, and replays it with `accelsim.simulate` on
hwconfigs/systolic_32x32_ws.yaml (SCALE-Sim's scale.cfg), unchanged. `compact()` and
`expected_effectual()` below are independent re-derivations (numpy on the mask), and the reference
speedups come from validation/systolic_ref.py's fold formula, not from accelsim.sim.

Tolerances, fixed before running: unstructured masks speedup = 1.0 exactly and compute cycles =
dense; effectual MACs = an independent count (expected_effectual) exactly; compacted compute-cycle
speedup = the fold-formula ratio exactly; compacted total-cycle speedup (with memory stalls) within
±10% of it.

History: with the first memory engine (output stores in order with loads, prefetch a fixed one tile
ahead) the two "both" total-cycle checks failed (3.55x fwd, 3.54x dgrad). The engine now gives loads
priority over stores, double-buffers outputs per store group and prefetches as far as the SRAMs
hold (memory.py) -- general changes made while investigating this case and applied to every family
and op; no tolerance changed. They made some runs faster and others slower: the dense dgrad baseline
below is slower than before, because its grad_output chunk fills the ifmap SRAM.
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
KINDS = ("filter", "shape", "both", "unstructured50", "unstructured25")
# Checks known to fail, with the reason (stated in docs/validation.md; tests xfail exactly these).
KNOWN_FAILURES: dict[str, str] = {}


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


def conv_params_():
    from accelsim.sim.workload import conv_params
    return conv_params(N, C, H, W, K, R, S, stride=1, padding=1)


def expected_effectual(wmask: np.ndarray, pass_: str = "fwd") -> int:
    """Effectual MACs of the conv with all-ones input / grad_output (independent of accelsim's
    kernels). fwd: weight (k, c, r, s) meets a non-padding input in N * vh[r] * vw[s] windows, where
    vh[r] counts output rows p with 0 <= p - pad + r < H (stride 1; H = 16, pad 1, R = 3: vh = [15,
    16, 15]). dgrad (dcol = dY W^T, every dY element non-zero): each weight non-zero meets all N*P*Q
    rows of dY."""
    if pass_ == "dgrad":
        return int(wmask.sum()) * N * H * W
    vh = np.array([sum(0 <= p - 1 + r < H for p in range(H)) for r in range(R)])
    vw = np.array([sum(0 <= q - 1 + s < W for q in range(W)) for s in range(S)])
    per_tap = N * vh[:, None] * vw[None, :]                       # (R, S)
    return int((wmask.sum(axis=(0, 1)) * per_tap).sum())


def compact(wmask: np.ndarray) -> tuple[int, int]:
    """(filters kept, (c, r, s) taps kept) after deleting the all-zero ones: the fwd GEMM's (N', K'),
    dgrad's (K', N')."""
    b = wmask.reshape(K, -1)                     # filters x (c, r, s)
    return int(b.any(axis=1).sum()), int(b.any(axis=0).sum())


def build_trace(path, masks: dict[str, np.ndarray]) -> None:
    """One conv layer per mask kind, fwd and dgrad, with all-ones input / grad_output."""
    from accelsim.trace.format import Operand, TraceWriter
    p = conv_params_()
    header = {"model": "ssl-conv", "method": {"name": "ssl", "params": {"keep": KEEP}}, "dtype": "int8",
              "batch_size": N, "steps": [0]}
    with TraceWriter(path, header) as tw:
        x = tw.add_tensor(np.ones(p["input_shape"], bool), dtype="int8", role="activation", layer="input")
        dy = tw.add_tensor(np.ones(p["output_shape"], bool), dtype="int8", role="grad_output", layer="grad")
        seq = 0
        for kind, wm in masks.items():
            w = tw.add_tensor(wm, dtype="int8", role="weight", layer=kind)
            for pass_, ops, out in (("fwd", [Operand("input", x), Operand("weight", w)], p["output_shape"]),
                                    ("dgrad", [Operand("grad_output", dy), Operand("weight", w)],
                                     p["input_shape"])):
                seq += 1
                tw.add_op(step=0, seq=seq, pass_=pass_, kind="conv2d", layer=kind, module_type="Conv2d",
                          aten="aten.convolution.default" if pass_ == "fwd" else
                          "aten.convolution_backward.default", operands=ops, out_shape=list(out), params=p)


def run() -> CaseReport:
    import tempfile

    from accelsim import simulate
    from accelsim.hw import load_hw
    rep = CaseReport(6, "SSL group sparsity on dense (systolic) hardware", intro=__doc__.split("\n", 2)[2])
    hw = load_hw(HW_FILE)
    comp = hw.compute
    rng = np.random.default_rng(SEED)
    masks = {kind: ssl_weight_mask(kind, rng) for kind in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ssl.accelsim-trace"
        build_trace(path, masks)
        res = simulate(path, hw)
    ops = {(o.layer, o.pass_): o for o in res.ops}
    m = N * H * W                                 # stride 1, pad 1: P = H, Q = W
    taps = C * R * S
    rows = []

    def fold(mm, nn, kk):
        return fold_cycles(comp.dataflow, comp.rows, comp.cols, mm, nn, kk)

    for kind, wm in masks.items():
        density = wm.mean()
        kf, kt = compact(wm)
        for pass_ in ("fwd", "dgrad"):
            o = ops[(kind, pass_)]
            full, small = ((m, K, taps), (m, kf, kt)) if pass_ == "fwd" else ((m, taps, K), (m, kt, kf))
            want_eff = expected_effectual(wm, pass_)
            got_c = o.dense_compute_cycles / o.compute_cycles
            label = f"{kind} {pass_}"
            if kind.startswith("unstructured"):
                rep.checks.append(Check(
                    f"{label} (density {density:.2f}): no all-zero row/column, no speedup",
                    "speedup 1.0, compute = dense, effectual MACs = expected_effectual()",
                    "no SSL group is all zero (compact() keeps all)",
                    f"speedup {o.speedup:.4f}, compute {o.compute_cycles} (dense {o.dense_compute_cycles}), "
                    f"effectual {o.effectual_macs}", f"{o.speedup - 1:+.1e}", "exact",
                    (kf, kt) == (K, taps) and o.speedup == 1.0 and o.compute_cycles == o.dense_compute_cycles
                    and o.effectual_macs == want_eff and o.compaction is None))
                rows.append([label, f"{density:.2f}", "x".join(map(str, full)), "none", "1.000",
                             f"{o.speedup:.3f}", f"{o.dense_cycles:,} / {o.total_cycles:,}",
                             f"{o.dense_cycles - o.dense_compute_cycles:,} / {o.stall_cycles:,}"])
                continue
            want = fold(*full) / fold(*small)
            rep.checks.append(Check(
                f"{label}: compute-cycle speedup, GEMM {'x'.join(map(str, full))} -> {'x'.join(map(str, small))}",
                f"{want:.3f}x, effectual MACs = expected_effectual()", "fold formula (systolic_ref.py)",
                f"{got_c:.3f}x, effectual {o.effectual_macs}", f"{got_c - want:+.1e}", "exact",
                got_c == want and o.effectual_macs == want_eff and o.gemm == full))
            rep.checks.append(Check(
                f"{label}: total-cycle speedup (memory engine)", f"{want:.3f}x", "fold formula (systolic_ref.py)",
                f"{o.speedup:.3f}x", f"{(o.speedup - want) / want:+.1%}", f"±{TOTAL_TOL:.0%}",
                abs(o.speedup - want) <= TOTAL_TOL * want))
            rows.append([label, f"{density:.2f}", "x".join(map(str, small)), o.compaction, f"{got_c:.3f}",
                         f"{o.speedup:.3f}", f"{o.dense_cycles:,} / {o.total_cycles:,}",
                         f"{o.dense_cycles - o.dense_compute_cycles:,} / {o.stall_cycles:,}"])
    failing = [c.name.split(":")[0] for c in rep.checks if c.passed is False and "total-cycle" in c.name]
    if failing:
        from accelsim.sim.systolic import ACC_BYTES, choose_schedule
        elem = comp.element_bytes
        bpc = hw.dram().bandwidth_bytes_per_s / hw.clock_hz
        srows = []
        for label in failing:
            kind, pass_ = label.split()
            o = ops[(kind, pass_)]
            kf, kt = compact(masks[kind])
            small = (m, kf, kt) if pass_ == "fwd" else (m, kt, kf)
            size = {"a": o.dram_bytes.get("input" if pass_ == "fwd" else "grad_output", 0),
                    "b": o.dram_bytes.get("weight", 0)}
            sched, _ = choose_schedule(*small, hw, size, o.dram_bytes["output"],
                                       small[0] * small[1] * max(ACC_BYTES, elem))
            c = sched.counts
            a_slice = size["a"] // (c["m"] * c["k"])
            c_slice = o.dram_bytes["output"] // (c["m"] * c["n"])
            tile = o.compute_cycles // sched.n_tiles
            srows.append([label, f"{o.dense_compute_cycles:,} / {o.compute_cycles:,}",
                          f"{o.dense_cycles - o.dense_compute_cycles:,} / {o.stall_cycles:,}",
                          f"{sum(o.dram_bytes_dense.values()):,} / {sum(o.dram_bytes.values()):,}",
                          f"{sched.order} {c['m']}x{c['n']}x{c['k']}", f"~{tile:,}",
                          f"{a_slice:,} B ({a_slice / bpc:,.0f} cyc)", f"{c_slice:,} B ({c_slice / bpc:,.0f} cyc)"])
        why = {
            "dgrad": "In dgrad the (c, r, s) taps are the N side of dY W^T: deleting them halves the folds "
                     "but not grad_output (A), whose per-(chunk, K tile) slices are loaded at the start of "
                     "each chunk (A slice column vs cycles per tile).",
            "fwd": "In fwd the taps are K and do not shrink C, whose per-(chunk, N tile) slice is stored "
                   "after the chunk's last K tile and must drain before that output buffer is reused.",
        }
        passes = sorted({label.split()[1] for label in failing})
        rep.notes.append(
            "**Why these total-cycle checks fail: sub-linear.** The memory engine (memory.py) prefetches "
            "inputs as far ahead as the SRAMs hold them (capacity mode), gives loads priority over output "
            "stores and drains each output group while the next fills the other buffer "
            f"({bpc:g} B/cycle DRAM). The systolic model runs each GEMM in its fastest legal schedule "
            "(systolic.py, choose: the least total cycles in this engine; M cut into chunks so the "
            f"{ACC_BYTES} B partial sums of a chunk fit the ofmap SRAM, and every tile pays the array fill "
            "again, 2R + C - 2 = 94 cycles, because the chunk loop is outside the weight loops). "
            + " ".join(why[p] for p in passes)
            + " That transfer does not shrink with the compaction, so the stalls shrink by less than the "
            "compute. Compute-cycle speedups are exact. Per "
            "failing op (dense / compacted; schedule order outermost loop first, tiles M-chunks x N x K):"
            "\n\n" + md_table(["op", "compute cycles", "stall cycles", "DRAM bytes", "compacted schedule",
                                "cycles per tile", "A slice", "C slice"], srows))
    rep.tables.append(
        f"Layer: {N}x{C}x{H}x{W} input, {K} 3x3 filters, pad 1; fwd GEMM M={m} (N·P·Q), N={K} filters, "
        f"K={taps} (C·R·S); dgrad GEMM M={m}, N={taps}, K={K}; 32x32 ws array. Per op of the simulated "
        "trace (accelsim.simulate):\n\n"
        + md_table(["op", "density", "compacted GEMM MxNxK", "OpResult.compaction", "compute speedup",
                    "total speedup", "cycles dense / SSL", "stall cycles dense / SSL"], rows)
        + "\n\nStalls are part of both sides: in dgrad the dense baseline's grad_output chunk fills the "
        "64 KiB ifmap SRAM, so the next chunk's slices stream in only as the current ones are released "
        "(memory.py capacity mode). Deleting filters (dgrad's K) halves grad_output with the compute, "
        "so the stalls fall with it (filter dgrad above 2x); deleting taps (dgrad's N) leaves grad_output "
        "whole. The total-cycle ratio is what this machine gives for the pair, not compute alone.")
    return rep
