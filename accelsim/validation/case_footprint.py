"""Case 5: backward-pass memory footprint of the shipped SWAT traces vs SWAT's reported savings.

SWAT (Raihan & Aamodt, NeurIPS 2020, abstract and §5) reports that keeping only the top-k weights
and activations for the backward pass reduces its memory footprint by 23-50% for activations and
50-90% for weights. accelsim.sim.footprint sums what autograd saved for backward in the recorded
step (the trace's saved-for-backward records; docs/sources.md "What the backward pass keeps"), each tensor
stored in the cheapest format for its recorded mask ("auto": dense, bitmap, COO, CSR, N:M; sizes with
index/bitmap overhead, Hoefler et al. 2021 §2.2). Tolerance: the published ranges themselves
(inclusive), for the savings with format overhead; values-only savings are reported beside them.
"""

from __future__ import annotations

from pathlib import Path

from accelsim.validation import shipped_traces, traces_label
from accelsim.validation.report import CaseReport, Check, md_table

TRACE_GLOB = "*swat*.npz"  # in accelsim.validation.traces_dir()
SOURCE = "Raihan & Aamodt, SWAT, NeurIPS 2020 (abstract: 23-50% activations, 50-90% weights)"
RANGES = {"activation": (23.0, 50.0), "weight": (50.0, 90.0)}
SPARSE_BELOW = 0.99   # a saved tensor with density below this counts as sparsified by SWAT


def traces() -> list[Path]:
    return shipped_traces(TRACE_GLOB)


def run() -> CaseReport:
    from accelsim.sim.footprint import footprint
    from accelsim.trace.format import load_trace
    rep = CaseReport(5, "Backward-pass memory footprint (SWAT traces)", intro=__doc__.split("\n", 2)[2])
    paths = traces()
    if not paths:
        rep.skipped = f"no shipped SWAT trace matches {traces_label(TRACE_GLOB)}"
        return rep
    rows, why = [], []
    for path in paths:
        with load_trace(path) as tr:
            fp = footprint(tr)
        for cat, (lo, hi) in RANGES.items():
            pct = fp.saved_pct(cat, overhead=True)
            vals = fp.saved_pct(cat, overhead=False)
            ok = lo <= pct <= hi
            err = 0.0 if ok else (pct - hi if pct > hi else pct - lo)
            rep.checks.append(Check(f"{path.name}: {cat} bytes saved", f"{lo:.0f}-{hi:.0f}%", SOURCE,
                                    f"{pct:.1f}% (values only {vals:.1f}%)", f"{err:+.1f} pp", "inside the range",
                                    ok))
            items = [it for it in fp.items if it.category == cat]
            sp = [it for it in items if it.numel and it.nnz / it.numel < SPARSE_BELOW]
            dense_b = sum(it.dense_bytes for it in items)
            sp_b = sum(it.dense_bytes for it in sp)
            rows.append([path.name, cat, f"{dense_b:,}", f"{fp.totals[cat]['stored']:,}", f"{pct:.1f}%",
                         f"{vals:.1f}%", f"{len(sp)}/{len(items)}",
                         f"{100 * sp_b / dense_b:.1f}%" if dense_b else "-"])
            if not ok:
                kept = [it for it in items if it not in sp]
                big = sorted(kept, key=lambda it: -it.dense_bytes)[:3]
                why.append(
                    f"- `{path.name}` {cat}: {pct:.1f}% saved is outside {lo:.0f}-{hi:.0f}%. "
                    f"{len(sp)} of its {len(items)} saved {cat} tensors are sparse (density < {SPARSE_BELOW}), "
                    f"holding {100 * sp_b / dense_b:.1f}% of the dense {cat} bytes; the others are kept dense"
                    + (" (largest: " + ", ".join(f"{it.layer} {it.shape} {it.dense_bytes:,} B" for it in big) + ")"
                       if big else "") + ". "
                    + ("SWAT's range is for its networks and sparsities; this trace's share of "
                       "sparsifiable bytes and its sparsity set the saving here." ))
        rep.notes.append(f"`{path.name}` peak of live saved bytes over the step: dense "
                         f"{fp.peak_dense:,} B, stored {fp.peak_stored:,} B ({fp.peak_saved_pct:.1f}% saved).")
    rep.tables.append("Saved-for-backward bytes of the first recorded step (dense vs stored in the chosen "
                      "format), and how many of them carry zeros (SWAT top-k, ReLU outputs):\n\n" + md_table(
                          ["trace", "category", "dense B", "stored B", "saved", "saved (values only)",
                           f"tensors with density < {SPARSE_BELOW}", "their share of the dense bytes"], rows))
    if why:
        rep.notes.append("**Outside the published ranges:**\n\n" + "\n".join(why))
    return rep
