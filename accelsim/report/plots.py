"""Per-layer and timeline figures (matplotlib; PNG, SVG or PDF by the file suffix) in the style of
accelsim/report/style.py. A model of any size fits on a page: layers can be grouped into blocks or
stages, and only the ``top`` largest rows are drawn, the rest summed into one row."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from accelsim.report import style as st
from accelsim.report.table import byte_unit, nbytes

PLURAL = {"activation": "activations", "weight": "weights", "other": "other"}
GROUPINGS = ("layer", "block", "stage")
DEFAULT_TOP = 30           # rows drawn before the rest is summed: 31 rows fit a page at 7 pt
MAX_TOP = 60
HEADER_IN = {"memory": 1.25, "speedup": 0.85}
_NUMERIC = re.compile(r"^\d+$")


def group_name(layer: str, by: str = "layer") -> str:
    """The row a layer is drawn in. ``block``: the module path up to and including its first
    numeric part (``layer1.0.conv2`` -> ``layer1.0``, ``transformer.h.3.attn.c_attn`` ->
    ``transformer.h.3``); ``stage``: the part before it (``layer1``, ``transformer.h``). Names
    without a numeric part (``conv1``, ``fc``, ``lm_head``) stay as they are."""
    if by == "layer":
        return layer
    parts = layer.split(".")
    for i, p in enumerate(parts):
        if _NUMERIC.match(p):
            keep = parts[: i + 1] if by == "block" else parts[:i]
            return ".".join(keep) or layer
    return layer


@dataclass
class Row:
    name: str
    values: dict            # what the figure draws, summed over the row's layers
    layers: int             # how many recorded layers the row sums
    rest: bool = False      # the "other layers" row


def rows_for(names: Sequence[str], values: Sequence[dict], *, by: str, top: int,
             weight: Callable[[dict], float]) -> list[Row]:
    """Layers (in recording order, with their value dicts) grouped by ``by``; the ``top`` groups of
    largest ``weight`` kept in recording order and every other group summed into one last row."""
    groups: dict[str, Row] = {}
    for name, vals in zip(names, values):
        g = group_name(name, by)
        row = groups.setdefault(g, Row(g, {}, 0))
        row.layers += 1
        _add(row.values, vals)
    rows = list(groups.values())
    if len(rows) <= top:
        return rows
    keep = set(sorted(range(len(rows)), key=lambda i: (-weight(rows[i].values), i))[:top])
    rest = Row("", {}, 0, rest=True)
    for i, r in enumerate(rows):
        if i not in keep:
            rest.layers += r.layers
            _add(rest.values, r.values)
    dropped = len(rows) - top
    rest.name = f"other {dropped} {'layers' if by == 'layer' else by + 's'} (summed)"
    return [r for i, r in enumerate(rows) if i in keep] + [rest]


def _add(into: dict, vals: dict) -> None:
    for k, v in vals.items():
        if isinstance(v, dict):
            _add(into.setdefault(k, {}), v)
        elif isinstance(v, bool):
            into[k] = into.get(k, False) or v
        else:
            into[k] = into.get(k, 0) + v


def _body_height(nrows: int, bars_per_row: int) -> tuple[float, float]:
    """(inches of plot body, label font size) so that header + body <= a page."""
    room = st.PAGE_IN - 1.6
    per_row = min(0.1 + 0.09 * bars_per_row, room / max(1, nrows))
    font = 7.0 if per_row >= 0.17 else 6.0 if per_row >= 0.13 else 5.0
    return max(1.4, per_row * nrows + 0.5), font


def _row_axis(ax, rows: list[Row], font: float) -> None:
    n = len(rows)
    ax.set_yticks(range(n))
    ax.set_yticklabels([r.name for r in rows], fontsize=font)
    for tick, r in zip(ax.get_yticklabels(), rows):
        if r.rest:
            tick.set_fontstyle("italic")
    ax.set_ylim(n - 0.5, -0.5)    # first row at the top, in recording order
    ax.grid(axis="y", visible=False)
    if n > 25:  # tall figure: repeat the x scale at the top
        ax.tick_params(axis="x", top=True, labeltop=True)


def _titled_legend(fig, handles, title: str, ncol: int) -> None:
    """Title and legend as one block above the plot (constrained layout places a figure legend
    'outside' but not a suptitle beside it: they would overlap)."""
    leg = fig.legend(handles=handles, loc="outside upper left", ncol=ncol, title=title, alignment="left",
                     title_fontsize=8.5)
    leg.get_title().set_fontweight("normal")


def _what(by: str, rows: list[Row], total: int) -> str:
    shown = sum(r.layers for r in rows if not r.rest)
    unit = "layers" if by == "layer" else f"{by}s ({shown} of {total} layers)"
    if rows and rows[-1].rest:
        return f"largest {len(rows) - 1} {unit}, the rest summed"
    return f"all {len(rows)} {unit}" if by != "layer" else f"all {len(rows)} layers"


def plot_memory(fp, path: str | os.PathLike, *, title: str = "", top: int = DEFAULT_TOP, by: str = "layer") -> None:
    """Per layer (or block/stage): what is kept for backward, dense (light) vs as stored (solid),
    stacked by category; totals and % saved per category in the legend."""
    from matplotlib.patches import Patch

    cats = [c for c in ("activation", "weight", "other") if fp.totals[c]["dense"] > 0] or ["activation"]
    rows = rows_for([lf.layer for lf in fp.layers], [{"dense": dict(lf.dense), "stored": dict(lf.stored)}
                                                     for lf in fp.layers],
                    by=by, top=top, weight=lambda v: sum(v.get("dense", {}).values()))
    body, font = _body_height(len(rows), 2)
    with st.style() as plt:
        fig = st.figure(plt, st.TEXT_IN, HEADER_IN["memory"] + 0.15 * len(cats) + body)
        ax = fig.subplots()
        sizes = [sum(r.values.get(k, {}).values()) for r in rows for k in ("dense", "stored")]
        peak = max(sizes + [1])
        named = [sum(r.values.get(k, {}).values()) for r in rows if not r.rest for k in ("dense", "stored")]
        # the summed rest can dwarf every drawn layer: then the axis fits the layers and the rest
        # bar runs off the edge with its size written on it
        clip = max(named + [1]) * 1.15 if rows[-1].rest and peak > 1.5 * max(named + [1]) else None
        unit, scale = byte_unit(clip or peak)
        ys = list(range(len(rows)))
        bar_h = 0.4
        for kind, offset, alpha in (("dense", -bar_h / 2, 0.35), ("stored", bar_h / 2, 1.0)):
            left = [0.0] * len(rows)
            for cat in cats:
                vals = [r.values.get(kind, {}).get(cat, 0) / scale for r in rows]
                ax.barh([y + offset for y in ys], vals, height=bar_h, left=left, color=st.CAT_COLORS[cat],
                        alpha=alpha, edgecolor="white", linewidth=0.3)
                left = [a + b for a, b in zip(left, vals)]
        ax.set_xlim(0, (clip or peak * 1.04) / scale)
        if clip:
            r = rows[-1]
            ax.text(clip / scale * 0.99, len(rows) - 1, f"dense {nbytes(sum(r.values['dense'].values()), 1)} -> "
                    f"stored {nbytes(sum(r.values['stored'].values()), 1)} (bar cut) ", ha="right", va="center",
                    fontsize=font, color="black", bbox=dict(facecolor="white", edgecolor="none", pad=1.0))
        _row_axis(ax, rows, font)
        ax.set_xlabel(f"bytes kept for backward ({unit}); per row: light upper bar dense, "
                      f"solid lower bar as stored ({fp.format})")
        handles = []
        for cat in cats:
            t = fp.totals[cat]
            handles.append(Patch(color=st.CAT_COLORS[cat],
                                 label=f"{PLURAL[cat]}: {nbytes(t['dense'], 1)} -> {nbytes(t['stored'], 1)} "
                                       f"({fp.saved_pct(cat):.0f}% saved; "
                                       f"{fp.saved_pct(cat, False):.0f}% without index)"))
        t = fp.totals["all"]
        handles.append(Patch(color="white", label=f"total: {nbytes(t['dense'], 1)} -> {nbytes(t['stored'], 1)}; "
                                                 f"peak live {nbytes(fp.peak_dense, 1)} -> "
                                                 f"{nbytes(fp.peak_stored, 1)}"))
        _titled_legend(fig, handles, f"Backward-pass memory, step {fp.step}, {_what(by, rows, len(fp.layers))}"
                       + (f"\n{title}" if title else ""), ncol=1)
        st.save(fig, path)
        plt.close(fig)


def _per_layer_pass(ops) -> tuple[list[str], list[dict]]:
    """GEMM ops' layers in first-seen order, each with {pass: {"cycles", "dense", "fallback"}}
    summed over steps (vector ops are not GEMMs: their time is in the timeline and step totals)."""
    order: list[str] = []
    agg: dict[str, dict] = {}
    for o in ops:
        if o.kind == "vector":
            continue
        if o.layer not in agg:
            order.append(o.layer)
            agg[o.layer] = {}
        a = agg[o.layer].setdefault(o.pass_, {"cycles": 0, "dense": 0, "fallback": False})
        a["cycles"] += int(o.total_cycles)
        a["dense"] += int(o.dense_cycles)
        a["fallback"] = a["fallback"] or bool(o.fallback)
    return order, [agg[name] for name in order]


def plot_speedup(result, path: str | os.PathLike, *, title: str = "", top: int = DEFAULT_TOP,
                 by: str = "layer") -> None:
    """Speedup over the same machine's dense baseline, per layer (rows) and pass (bars); hatched
    bars fell back to the dense rate for at least one op. With more rows than ``top``, the layers of
    most dense cycles are drawn and the rest summed (their speedup: summed dense / summed cycles)."""
    from matplotlib.patches import Patch

    from accelsim.report.table import pass_totals

    names, vals = _per_layer_pass(result.ops)
    rows = rows_for(names, vals, by=by, top=top,
                    weight=lambda v: sum(p.get("dense", 0) for p in v.values()))
    passes = [p for p in ("fwd", "dgrad", "wgrad") if any(p in r.values for r in rows)]
    body, font = _body_height(len(rows), len(passes))
    totals = pass_totals(result)
    with st.style() as plt:
        fig = st.figure(plt, st.TEXT_IN, HEADER_IN["speedup"] + body)
        ax = fig.subplots()
        bar_h = 0.8 / max(1, len(passes))
        handles: list = []  # built by hand: a bar container's handle copies its first bar's hatch
        xmax = 1.0
        any_fb = False
        for j, p in enumerate(passes):
            ys, xs, fbs = [], [], []
            for i, r in enumerate(rows):
                a = r.values.get(p)
                if not a:
                    continue
                ys.append(i - 0.4 + bar_h * (j + 0.5))
                xs.append(a["dense"] / a["cycles"] if a["cycles"] else 0.0)
                fbs.append(a["fallback"])
            xmax = max([xmax, *xs])
            colour = st.PASS_COLORS.get(p, st.GREY)
            bars = ax.barh(ys, xs, height=bar_h * 0.92, color=colour)
            sp = totals.get(p, {}).get("speedup")
            handles.append(Patch(color=colour, label=f"{p}" + (f" (total {sp:.2f}x)" if sp is not None else "")))
            for b, fb in zip(bars, fbs):
                if fb:
                    any_fb = True
                    b.set_hatch("////")
                    b.set_edgecolor("black")
                    b.set_linewidth(0.0)
        ax.axvline(1.0, color="black", linewidth=0.8)
        _row_axis(ax, rows, font)
        ax.set_xlim(0, xmax * 1.08)
        ax.set_xlabel("speedup vs dense baseline on the same machine (dense cycles / cycles, x)")
        if any_fb:
            handles.append(Patch(facecolor="white", edgecolor="black", hatch="////",
                                 label="fell back to the dense rate (>= 1 op)"))
        overall = totals.get("all", {}).get("speedup", 1.0)
        _titled_legend(fig, handles, f"GEMM speedup per {by} and pass on {result.hw_name}, overall {overall:.2f}x; "
                       f"{_what(by, rows, len(names))}" + (f"\n{title}" if title else ""),
                       ncol=st.legend_columns([h.get_label() for h in handles], fig.get_figwidth(), 4))
        st.save(fig, path)
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


RESOURCE_ORDER = ("dma", "compute", "vector", "sparsify", "launch")


def _lane_colour(res: str, p: str) -> str:
    """compute/DMA lanes in their pass's colour; vector and sparsify work in their own."""
    if res in st.RESOURCE_COLORS:
        return st.RESOURCE_COLORS[res]
    return st.PASS_COLORS.get(p, st.GREY)


def plot_timeline(result, path: str | os.PathLike, *, title: str = "") -> None:
    """Compute, DMA, vector and sparsify activity over time from the event model (simulate(...,
    timeline=True)): one lane per resource and pass, so stalls show as gaps in compute while DMA is
    busy; below, per op, compute + stall + fixed time."""
    from matplotlib.patches import Patch

    pass_of = {o.op_id: o.pass_ for o in result.ops}
    ev = list(result.timeline or [])
    have = {e.resource for e in ev}
    resources = [r for r in RESOURCE_ORDER if r in have] + sorted(have - set(RESOURCE_ORDER))
    resources = resources or ["compute"]
    passes = [p for p in st.PASS_COLORS if any(pass_of.get(e.op_id) == p for e in ev)]
    passes += sorted({pass_of.get(e.op_id, "") for e in ev} - set(passes) - {""})
    lanes = [(r, p) for r in resources for p in passes
             if any(e.resource == r and pass_of.get(e.op_id) == p for e in ev)]
    us_per_cycle = 1e6 / result.clock_hz
    nl = max(1, len(lanes))
    with st.style() as plt:
        fig = st.figure(plt, st.TEXT_IN, 1.4 + 0.22 * nl + 2.3)
        ax, ax2 = fig.subplots(2, 1, height_ratios=[0.22 * nl + 0.6, 2.0])
        for i, (res, p) in enumerate(lanes):
            spans = _merge([e for e in ev if e.resource == res and pass_of.get(e.op_id) == p])
            ax.broken_barh([(s * us_per_cycle, (e - s) * us_per_cycle) for s, e in spans], (i - 0.35, 0.7),
                           facecolors=_lane_colour(res, p), alpha=0.6 if res == "dma" else 1.0)
        ax.set_yticks(range(len(lanes)))
        ax.set_yticklabels([f"{r} {p}" for r, p in lanes])
        ax.set_ylim(len(lanes) - 0.5, -0.5)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("time (us)")
        ax.set_title(f"Timeline on {result.hw_name} ({len(ev)} events; DMA lanes lighter)"
                     + (f"\n{title}" if title else ""), loc="left")
        if not ev:
            ax.text(0.5, 0.5, "no timeline events recorded", transform=ax.transAxes, ha="center", va="center")

        # Lower panel: compute vs stall time per op in execution order (where time goes).
        ops = list(result.ops)
        xs = list(range(len(ops)))
        comp = [o.compute_cycles * us_per_cycle for o in ops]
        stall = [o.stall_cycles * us_per_cycle for o in ops]
        colours = [_lane_colour("sparsify" if o.sparsify else "vector", o.pass_) if o.kind == "vector"
                   else st.PASS_COLORS.get(o.pass_, st.GREY) for o in ops]
        ax2.bar(xs, comp, width=1.0, color=colours)
        ax2.bar(xs, stall, width=1.0, bottom=comp, color=st.STALL_COLOR)
        # whatever is left of an op's total is fixed cost outside the tile engine (e.g. kernel launch)
        fixed = [max(0, o.total_cycles - o.compute_cycles - o.stall_cycles) * us_per_cycle for o in ops]
        has_fixed = any(f > 0 for f in fixed)
        if has_fixed:
            ax2.bar(xs, fixed, width=1.0, bottom=[c + s for c, s in zip(comp, stall)], color=st.GREY)
        ax2.set_xlim(-0.5, max(0, len(ops) - 0.5))
        top = max([c + s + f for c, s, f in zip(comp, stall, fixed)] + [1e-9])
        ax2.set_ylim(0, top * 1.05)
        ax2.set_xlabel("op (execution order)")
        ax2.set_ylabel("time per op (us)")
        ax2.grid(axis="x", visible=False)
        handles = [Patch(color=st.PASS_COLORS[p], label=f"{p} compute") for p in ("fwd", "dgrad", "wgrad")
                   if any(o.pass_ == p and o.kind != "vector" for o in ops)]
        for res, flag in (("vector", False), ("sparsify", True)):
            if any(o.kind == "vector" and bool(o.sparsify) == flag for o in ops) or res in have:
                handles.append(Patch(color=st.RESOURCE_COLORS[res],
                                     label="vector work" if res == "vector" else "sparsify (method's own work)"))
        handles.append(Patch(color=st.STALL_COLOR, label="stall (waiting for DMA)"))
        if has_fixed:
            handles.append(Patch(color=st.GREY, label="fixed (e.g. kernel launch)"))
        fig.legend(handles=handles, loc="outside lower center",
                   ncol=st.legend_columns([h.get_label() for h in handles], fig.get_figwidth(), 5))
        st.save(fig, path)
        plt.close(fig)
