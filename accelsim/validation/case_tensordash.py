"""Case 3: SWAT's speedup on TensorDash, replayed from shipped SWAT traces.

Published (SWAT paper, Raihan & Aamodt, NeurIPS 2020, §5 / Fig. on the TensorDash accelerator,
simulated with DNNsim): forward / backward speedups of 3.3x / 3.4x at 80% and 5.6x / 6.3x at 90%
top-k sparsity. docs/sources.md ("SWAT's accelerator: TensorDash") records DNNsim's scheduler: lookahead
H = 2, lookaside D = 5, T-shaped search, so a stream can never run faster than (H+1) = 3x.

Checks: (a) on hwconfigs/tensordash.yaml as shipped (H = 2) no op's compute cycles beat the dense
baseline by more than 3x, on every shipped ResNet SWAT trace (tolerance: the ceiling itself, exact);
(b) reported, not tuned: the lookahead depth H is swept (configs derived in code from
tensordash.yaml, only `lookahead` changed) and, per trace, the H whose fwd and bwd speedups come
closest to the published pair is named; "reproduces" means both within ±10% (fixed before running).
Speedups are compute-cycle ratios summed over a pass (dense cycles / TensorDash cycles), the
quantity DNNsim reports; the memory engine's stalls are reported separately by `accelsim run`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from accelsim.validation import ROOT, shipped_traces, traces_label
from accelsim.validation.report import CaseReport, Check, md_table

HW_FILE = ROOT / "hwconfigs" / "tensordash.yaml"
TRACE_GLOB = "*resnet*swat*.npz"  # in accelsim.validation.traces_dir()
SOURCE = "Raihan & Aamodt, SWAT, NeurIPS 2020 (TensorDash speedups simulated in DNNsim)"
PUBLISHED = {0.8: (3.3, 3.4), 0.9: (5.6, 6.3)}   # sparsity -> (fwd, bwd) speedup
REPRO_TOL = 0.10
LOOKAHEADS = (2, 3, 4, 6, 8, 12, 16)
MAX_OPS = None        # all ops of the first recorded step


def traces() -> list[Path]:
    return shipped_traces(TRACE_GLOB)


def trace_sparsity(tr) -> float | None:
    params = (tr.header.get("method") or {}).get("params") or {}
    s = params.get("sparsity")
    return None if s is None else float(s)


def with_lookahead(hw, h: int):
    return dataclasses.replace(hw, name=f"{hw.name} (H={h})",
                               sparsity=dataclasses.replace(hw.sparsity, lookahead=h))


def pass_cycles(tr, hw, works) -> dict:
    """Per op: (pass, dense compute cycles, sparse compute cycles, sparse operand)."""
    from accelsim.sim import sparse_pe
    out = []
    dense_hw = hw.dense()
    for w in works:
        d = sparse_pe.op_cost(w, dense_hw, sparse=False).compute_cycles
        c = sparse_pe.op_cost(w, hw, sparse=True)
        out.append((w.pass_, d, c.compute_cycles, c.sparse_operand, w.op.layer))
    return out


def work_bound(works) -> tuple[float, float, float, float]:
    """(fwd, bwd) dense MACs / one-sided MACs of the operand TensorDash skips ("auto": the sparser
    one, sparse_pe.choose_side): the speedup of a perfectly balanced scheduler with unbounded
    lookahead -- an upper bound for any H."""
    from accelsim.sim.kernels import one_sided_macs
    from accelsim.sim.sparse_pe import choose_side
    acc = {k: [0, 0] for k in ("fwd", "bwd", "dgrad", "wgrad")}
    for w in works:
        side, _ = choose_side(w, "auto")
        work = w.dense_macs if side is None else one_sided_macs(w, side)
        for key in (w.pass_, "fwd" if w.pass_ == "fwd" else "bwd"):
            acc[key][0] += w.dense_macs
            acc[key][1] += work
    return tuple(acc[k][0] / acc[k][1] for k in ("fwd", "bwd", "dgrad", "wgrad"))


def speedups(rows) -> tuple[float, float, float, float]:
    """(fwd, bwd, dgrad, wgrad): dense / sparse compute cycles summed over the pass(es)."""
    def ratio(passes):
        d = sum(r[1] for r in rows if r[0] in passes)
        s = sum(r[2] for r in rows if r[0] in passes)
        return d / s if s else float("nan")
    return ratio(("fwd",)), ratio(("dgrad", "wgrad")), ratio(("dgrad",)), ratio(("wgrad",))


def run() -> CaseReport:
    from accelsim.hw import load_hw
    from accelsim.trace.format import load_trace
    from accelsim.sim.workload import lower
    rep = CaseReport(3, "SWAT speedup on TensorDash (lookahead sweep)", intro=__doc__.split("\n", 2)[2])
    paths = traces()
    if not paths:
        rep.skipped = f"no shipped SWAT ResNet trace matches {traces_label(TRACE_GLOB)}"
        return rep
    hw = load_hw(HW_FILE)
    sweep_rows, bounds = [], {}
    for path in paths:
        with load_trace(path) as tr:
            s = trace_sparsity(tr)
            step0 = min(op.step for op in tr.ops)
            works = [lower(tr, op) for op in tr.ops if op.step == step0]
            base = pass_cycles(tr, hw, works)
            worst = max(base, key=lambda r: r[1] / r[2])
            top = worst[1] / worst[2]
            rep.checks.append(Check(
                f"{path.name}: every op ≤ (H+1)x with H = {hw.sparsity.lookahead}",
                f"≤ {hw.sparsity.lookahead + 1}x per op", "DNNsim TensorDash.cpp scheduler (sources.md)",
                f"max {top:.3f}x ({worst[4]} {worst[0]}), {len(base)} ops",
                "-", "ceiling, exact", top <= hw.sparsity.lookahead + 1))
            fwd2, bwd2, _, _ = speedups(base)
            results = {hw.sparsity.lookahead: speedups(base)}
            for h in LOOKAHEADS:
                if h not in results:
                    results[h] = speedups(pass_cycles(tr, with_lookahead(hw, h), works))
            pub = PUBLISHED.get(round(s, 2)) if s is not None else None
            bound = work_bound(works)
            for h in sorted(results):
                sweep_rows.append([path.name, s, h] + [f"{x:.2f}x" for x in results[h]]
                                  + [f"{pub[0]}x / {pub[1]}x" if pub else "-"])
            sweep_rows.append([path.name, s, "∞ (work bound)"] + [f"{x:.2f}x" for x in bound]
                              + [f"{pub[0]}x / {pub[1]}x" if pub else "-"])
            bounds[path.name] = (s, bound, results[max(results)])
            if pub:
                best = min(results, key=lambda h: abs(results[h][0] / pub[0] - 1) + abs(results[h][1] / pub[1] - 1))
                f, b = results[best][:2]
                ok = abs(f / pub[0] - 1) <= REPRO_TOL and abs(b / pub[1] - 1) <= REPRO_TOL
                rep.checks.append(Check(
                    f"{path.name} (s = {s}): lookahead depth closest to the published speedups",
                    f"fwd {pub[0]}x / bwd {pub[1]}x", SOURCE,
                    f"H = {best}: fwd {f:.2f}x / bwd {b:.2f}x",
                    f"{f / pub[0] - 1:+.0%} / {b / pub[1] - 1:+.0%}", f"±{REPRO_TOL:.0%} (reported)", None,
                    note=("reproduces" if ok else "no swept H reproduces both within ±10%")
                    + f"; at the shipped H = 2: {fwd2:.2f}x / {bwd2:.2f}x"))
    for name, (s, (bf, bb, _, _), (hf, hb, _, _)) in bounds.items():
        pub = PUBLISHED.get(round(s, 2)) if s is not None else None
        rep.notes.append(
            f"`{name}`: with unbounded lookahead and perfect balance the skipped operand's zeros allow "
            f"at most {bf:.2f}x fwd / {bb:.2f}x bwd (work bound); the deepest swept H = {max(LOOKAHEADS)} "
            f"reaches {hf:.2f}x / {hb:.2f}x"
            + (f", against the published {pub[0]}x / {pub[1]}x" if pub else "") + ". "
            + ("The published backward speedup exceeds what this trace's masks allow even without a "
               "lookahead limit. " if pub and bb < pub[1] else "")
            + ("The published forward speedup exceeds the work bound too. " if pub and bf < pub[0] else ""))
    rep.notes.append(
        "**Reading the sweep.** With DNNsim's example H = 2 a stream can never run more than 3x "
        "faster, so the published 5.6x / 6.3x at 90% cannot come from that configuration. Deeper "
        "lookahead raises every pass, but even at H = 16 all passes stay well below the work bound "
        "(the speedup if the skipped operand's zeros cost nothing and every PE were busy): "
        "what remains is the scheduler's reach (a zero lane borrows only from the T-shaped "
        "candidates within lookaside D = 5 lanes) and the lockstep of a tile (a unit waits for its "
        "slowest stream), which accelsim does not report separately. Only one operand per "
        "convolution is skipped (DNNsim), the sparser of the two (`auto`). The shipped traces are CIFAR-scale ResNet-18 runs of this project's recorder "
        "(sklearn digits, a few warm-up steps), not the authors' networks and training states, so a "
        "gap to the published values is expected and no H is tuned to close it.")
    rep.tables.append("Lookahead sweep (lookaside D = 5, T-search, everything else as tensordash.yaml); "
                      "compute-cycle speedup summed over the pass, first recorded step:\n\n"
                      + md_table(["trace", "sparsity", "H", "fwd", "bwd (dgrad+wgrad)", "dgrad", "wgrad",
                                  "published fwd / bwd"], sweep_rows))
    return rep
