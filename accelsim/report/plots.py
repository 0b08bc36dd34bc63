"""Figures (matplotlib, PNG or SVG by the file suffix), sized for 50+ layers: horizontal bars with
one row per layer, figure height growing with the layer count, so labels never overlap."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

from accelsim.report.table import byte_unit, nbytes
from accelsim.util.atomic import atomic_write

PASS_COLORS = {"fwd": "#4C72B0", "dgrad": "#DD8452", "wgrad": "#55A868"}
CAT_COLORS = {"activation": "#4C72B0", "weight": "#DD8452", "other": "#8C8C8C"}
PLURAL = {"activation": "activations", "weight": "weights", "other": "other"}
ROW_INCH = 0.22        # vertical space per bar row


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; no display needed (CI, notebooks, servers)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    fmt = Path(path).suffix.lower().lstrip(".")
    buf = io.BytesIO()
    # Fixed metadata so the same input gives the same file, byte for byte.
    meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    kwargs = {"metadata": meta}
    if fmt == "svg":
        import matplotlib

        matplotlib.rcParams["svg.hashsalt"] = "accelsim"
    fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", **kwargs)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def _figure(plt, width: float, body_inches: float, header_inches: float):
    """A figure with a header strip (title + legend, never over the data) above the plot body."""
    body = max(1.5, body_inches)
    fig = plt.figure(figsize=(width, body + header_inches))
    gs = fig.add_gridspec(2, 1, height_ratios=[header_inches, body], hspace=0.02)
    head = fig.add_subplot(gs[0])
    head.axis("off")
    ax = fig.add_subplot(gs[1])
    return fig, head, ax


def _header(head, title: str, handles, ncol: int = 1) -> None:
    head.set_title(title, fontsize=10, loc="left")
    head.legend(handles=handles, loc="upper left", ncol=ncol, fontsize=8, frameon=False, borderaxespad=0.0)


def _long_axis(ax, nrows: int) -> None:
    if nrows > 25:  # tall figure: repeat the x scale at the top
        ax.tick_params(axis="x", top=True, labeltop=True)


def plot_memory(fp, path: str | os.PathLike, *, title: str = "") -> None:
    """Per layer: what is kept for backward, dense (light) vs as stored (solid), stacked by
    category; totals and % saved per category in the legend."""
    plt = _plt()
    layers = fp.layers
    cats = [c for c in ("activation", "weight", "other") if fp.totals[c]["dense"] > 0] or ["activation"]
    nl = max(1, len(layers))
    fig, head, ax = _figure(plt, 9.0, min(60.0, 0.8 + nl * 2 * ROW_INCH),
                            0.25 + 0.19 * (len(cats) + 1) + (0.2 if nl > 25 else 0.0))
    peak = max([sum(lf.dense.values()) for lf in layers] + [sum(lf.stored.values()) for lf in layers] + [1])
    unit, scale = byte_unit(peak)
    ys = list(range(nl))
    bar_h = 0.4
    for kind, offset, alpha in (("dense", -bar_h / 2, 0.35), ("stored", bar_h / 2, 1.0)):
        left = [0.0] * nl
        for cat in cats:
            vals = [getattr(lf, kind)[cat] / scale for lf in layers]
            ax.barh([y + offset for y in ys], vals, height=bar_h, left=left, color=CAT_COLORS[cat], alpha=alpha,
                    edgecolor="white", linewidth=0.3)
            left = [a + b for a, b in zip(left, vals)]
    ax.set_xlim(0, peak / scale * 1.04)
    ax.set_yticks(ys)
    ax.set_yticklabels([lf.layer for lf in layers], fontsize=8 if nl < 40 else 7)
    ax.invert_yaxis()  # first layer at the top, in recording order
    ax.set_ylim(nl - 0.4, -0.6)
    ax.set_xlabel(f"bytes kept for backward ({unit}); per layer: light upper bar dense, "
                  f"solid lower bar as stored ({fp.format})")
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    ax.set_axisbelow(True)

    from matplotlib.patches import Patch

    handles = []
    for cat in cats:
        t = fp.totals[cat]
        handles.append(Patch(color=CAT_COLORS[cat],
                             label=f"{PLURAL[cat]}: {nbytes(t['dense'], 1)} -> {nbytes(t['stored'], 1)} "
                                   f"({fp.saved_pct(cat):.0f}% saved; {fp.saved_pct(cat, False):.0f}% without index)"))
    t = fp.totals["all"]
    handles.append(Patch(color="white", label=f"total: {nbytes(t['dense'], 1)} -> {nbytes(t['stored'], 1)}; "
                                             f"peak live {nbytes(fp.peak_dense, 1)} -> {nbytes(fp.peak_stored, 1)}"))
    _header(head, f"Backward-pass memory per layer, step {fp.step}" + (f": {title}" if title else ""), handles)
    _long_axis(ax, nl)
    _save(fig, path)
    plt.close(fig)


def _per_layer_pass(ops) -> tuple[list[str], dict[tuple[str, str], tuple[int, int, bool]]]:
    """Layers in first-seen order; (layer, pass) -> (cycles, dense cycles, any fallback), summed
    over steps."""
    order: list[str] = []
    agg: dict[tuple[str, str], list] = {}
    for o in ops:
        if o.layer not in order:
            order.append(o.layer)
        a = agg.setdefault((o.layer, o.pass_), [0, 0, False])
        a[0] += int(o.total_cycles)
        a[1] += int(o.dense_cycles)
        a[2] = a[2] or bool(o.fallback)
    return order, {k: tuple(v) for k, v in agg.items()}


def plot_speedup(result, path: str | os.PathLike, *, title: str = "") -> None:
    """Speedup over the same machine's dense baseline, per layer (rows) and pass (bars); hatched
    bars fell back to the dense rate for at least one op."""
    plt = _plt()
    from accelsim.report.table import pass_totals

    layers, agg = _per_layer_pass(result.ops)
    passes = [p for p in ("fwd", "dgrad", "wgrad") if any(k[1] == p for k in agg)]
    nl = max(1, len(layers))
    fig, head, ax = _figure(plt, 8.5, min(60.0, 0.8 + nl * max(1, len(passes)) * ROW_INCH * 0.8),
                            0.85 + (0.25 if nl > 25 else 0.0))
    bar_h = 0.8 / max(1, len(passes))
    totals = pass_totals(result)
    from matplotlib.patches import Patch

    handles: list = []  # built by hand: a bar container's handle copies its first bar's hatch
    xmax = 1.0
    for j, p in enumerate(passes):
        ys, xs, hatches = [], [], []
        for i, layer in enumerate(layers):
            if (layer, p) not in agg:
                continue
            cyc, dense, fb = agg[(layer, p)]
            ys.append(i - 0.4 + bar_h * (j + 0.5))
            xs.append(dense / cyc if cyc else 0.0)
            hatches.append("////" if fb else "")
        xmax = max([xmax, *xs])
        bars = ax.barh(ys, xs, height=bar_h * 0.92, color=PASS_COLORS.get(p, "#777777"))
        handles.append(Patch(color=PASS_COLORS.get(p, "#777777"), label=f"{p} (total {totals[p]['speedup']:.2f}x)"))
        for b, h in zip(bars, hatches):
            if h:
                b.set_hatch(h)
                b.set_edgecolor("black")
                b.set_linewidth(0.0)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(nl))
    ax.set_yticklabels(layers, fontsize=8 if nl < 40 else 7)
    ax.set_ylim(nl - 0.5, -0.5)
    ax.set_xlim(0, xmax * 1.08)
    ax.set_xlabel("speedup vs dense baseline on the same machine (dense cycles / cycles)")
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    ax.set_axisbelow(True)
    if any(fb for (_, _, fb) in agg.values()):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="////",
                             label="fell back to the dense rate (>= 1 op)"))
    _header(head, f"Speedup per layer and pass on {result.hw_name}, overall {totals['all']['speedup']:.2f}x"
            + (f"\n{title}" if title else ""), handles, ncol=2)
    _long_axis(ax, nl)
    _save(fig, path)
    plt.close(fig)


def _merge(events: Sequence) -> list[tuple[int, int]]:
    """Sorted (start, end) spans, touching spans merged (thousands of tiles -> few rectangles)."""
    spans = sorted((int(e.start), int(e.end)) for e in events if e.end > e.start)
    out: list[list[int]] = []
    for s, e in spans:
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def plot_timeline(result, path: str | os.PathLike, *, title: str = "") -> None:
    """Compute and DMA activity over time from the event model (simulate(..., timeline=True)):
    one lane per resource and pass, so stalls show as gaps in compute while DMA is busy."""
    plt = _plt()
    pass_of = {o.op_id: o.pass_ for o in result.ops}
    ev = list(result.timeline or [])
    resources = [r for r in ("dma", "compute") if any(e.resource == r for e in ev)] or ["compute"]
    extra = sorted({e.resource for e in ev} - set(resources))
    resources += extra
    lanes = [(r, p) for r in resources for p in ("fwd", "dgrad", "wgrad")
             if any(e.resource == r and pass_of.get(e.op_id) == p for e in ev)]
    us_per_cycle = 1e6 / result.clock_hz
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(11, 2.2 + 0.45 * max(1, len(lanes)) + 2.4),
                                  gridspec_kw={"height_ratios": [max(1, len(lanes)) * 0.45 + 0.8, 2.4]})
    for i, (res, p) in enumerate(lanes):
        spans = _merge([e for e in ev if e.resource == res and pass_of.get(e.op_id) == p])
        ax.broken_barh([(s * us_per_cycle, (e - s) * us_per_cycle) for s, e in spans], (i - 0.35, 0.7),
                       facecolors=PASS_COLORS.get(p, "#777777"), alpha=1.0 if res == "compute" else 0.6)
    ax.set_yticks(range(len(lanes)))
    ax.set_yticklabels([f"{r} {p}" for r, p in lanes], fontsize=8)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlabel("time (us)")
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    ax.set_title(f"Timeline of compute and DMA on {result.hw_name} ({len(ev)} events)"
                 + (f"\n{title}" if title else ""), fontsize=10)
    if not ev:
        ax.text(0.5, 0.5, "no timeline events recorded", transform=ax.transAxes, ha="center", va="center")

    # Lower panel: cumulative compute vs stall cycles per op in execution order (where time goes).
    ops = list(result.ops)
    xs = list(range(len(ops)))
    comp = [o.compute_cycles * us_per_cycle for o in ops]
    stall = [o.stall_cycles * us_per_cycle for o in ops]
    ax2.bar(xs, comp, width=1.0, color=[PASS_COLORS.get(o.pass_, "#777777") for o in ops], label="compute")
    ax2.bar(xs, stall, width=1.0, bottom=comp, color="#C44E52", label="stall (waiting for DMA)")
    # whatever is left of an op's total is fixed cost outside the tile engine (e.g. kernel launch)
    fixed = [max(0, o.total_cycles - o.compute_cycles - o.stall_cycles) * us_per_cycle for o in ops]
    has_fixed = any(f > 0 for f in fixed)
    if has_fixed:
        ax2.bar(xs, fixed, width=1.0, bottom=[c + st for c, st in zip(comp, stall)], color="#BBBBBB")
    ax2.set_xlim(-0.5, len(ops) - 0.5)
    top = max([c + st + f for c, st, f in zip(comp, stall, fixed)] + [1e-9])
    ax2.set_ylim(0, top * 1.3)  # headroom for the legend above the tallest bar
    ax2.set_xlabel("op (execution order)")
    ax2.set_ylabel("time per op (us)", fontsize=8)
    from matplotlib.patches import Patch

    handles = [Patch(color=PASS_COLORS[p], label=f"{p} compute") for p in ("fwd", "dgrad", "wgrad")
               if any(o.pass_ == p for o in ops)]
    handles.append(Patch(color="#C44E52", label="stall (waiting for DMA)"))
    if has_fixed:
        handles.append(Patch(color="#BBBBBB", label="fixed (e.g. kernel launch)"))
    ax2.legend(handles=handles, fontsize=8, loc="upper right", ncol=len(handles))
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
