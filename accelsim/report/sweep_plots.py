"""Figures from tidy result tables: `accelsim plot sweep` (the table `accelsim sweep` writes,
docs/sweeps.md) as a line plot, a heatmap or a Pareto plot, and `accelsim plot compare` (methods x
machines grouped bars of speedup and memory saved, dense as the reference line).

Tables are pandas DataFrames (pandas reads the sweep's CSV and Parquet unaided); pandas and
matplotlib are imported on first use only.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Sequence

from accelsim.errors import AccelsimError
from accelsim.report import style as st
from accelsim.report.table import byte_unit
from accelsim.util.files import display_path

KINDS = ("line", "heatmap", "pareto")
PERCENT = {"sparsity"}     # fractions shown as percentages in legends and panel titles
# metrics where more is better (a Pareto front maximises them); every other metric is minimised
MAXIMISE = {"speedup", "compute_speedup", "step_speedup", "utilisation", "footprint_saved_pct",
            "footprint_peak_saved_pct", "effectual_macs"}
# how a column reads on an axis (units come from the scale chosen for the data)
LABELS = {
    "total_cycles": "cycles", "dense_cycles": "dense-baseline cycles", "compute_cycles": "compute cycles",
    "stall_cycles": "stall cycles", "dense_compute_cycles": "dense compute cycles",
    "gemm_cycles": "GEMM cycles", "vector_cycles": "vector cycles", "sparsify_cycles": "sparsify cycles",
    "step_cycles": "whole-step cycles", "step_dense_cycles": "whole-step dense cycles",
    "seconds": "simulated time", "step_seconds": "whole-step simulated time",
    "speedup": "speedup vs dense", "compute_speedup": "compute-only speedup vs dense",
    "step_speedup": "whole-step speedup vs dense", "utilisation": "MAC utilisation",
    "dram_bytes": "DRAM traffic", "dram_bytes_dense": "DRAM traffic, dense baseline",
    "dense_macs": "dense MACs", "effectual_macs": "effectual MACs", "fallbacks": "ops falling back to dense",
    "footprint_dense_bytes": "backward memory, dense", "footprint_stored_bytes": "backward memory, stored",
    "footprint_saved_pct": "backward memory saved", "footprint_peak_dense_bytes": "peak backward memory, dense",
    "footprint_peak_stored_bytes": "peak backward memory, stored",
    "footprint_peak_saved_pct": "peak backward memory saved", "sparsity": "target sparsity",
    "compute.rows": "array rows (PEs)", "compute.cols": "array columns (PEs)",
    "sparsity.lookahead": "lookahead (steps)", "sparsity.lookaside": "lookaside (lanes)",
    "memory.dram.bandwidth": "DRAM bandwidth",
    "compute.rows*compute.cols": "array size (PEs)", "compute.cols*compute.rows": "array size (PEs)",
}
MAX_COLUMNS_SHOWN = 30
PANEL_IN = 2.45            # width of one panel of several (three fit the 7 in text width)
_NUM_PREFIX = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


# ------------------------------------------------------------------------------------------ tables
def _pandas():
    try:
        import pandas as pd
    except ImportError:
        raise AccelsimError("plotting a table needs pandas (pip install pandas)") from None
    return pd


def read_table(path: str | os.PathLike):
    """A sweep or compare table: .parquet (pyarrow) or .csv, as a DataFrame; one-line errors."""
    pd = _pandas()
    p = Path(path)
    shown = display_path(str(path))
    suffix = p.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise AccelsimError(f"{shown}: not a result table (expected a .parquet or .csv file)")
    if not p.exists():
        raise AccelsimError(f"{shown}: table not found")
    if not p.is_file():
        raise AccelsimError(f"{shown}: table is not a regular file")
    try:
        if suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise AccelsimError(f"{shown}: reading Parquet needs pyarrow (pip install pyarrow), "
                                    f"or use the .csv") from None
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, keep_default_na=True)
    except AccelsimError:
        raise
    except Exception as e:  # a corrupt or foreign file: pandas/pyarrow raise many kinds
        text = " ".join(str(e).split())[:120]
        raise AccelsimError(f"{shown}: cannot read the table: {type(e).__name__}: {text}") from None
    if df.empty:
        raise AccelsimError(f"{shown}: the table has no rows")
    return df


def _columns_line(df) -> str:
    cols = [_cut(str(c), 40) for c in df.columns]
    shown = ", ".join(cols[:MAX_COLUMNS_SHOWN])
    more = f", ... ({len(cols) - MAX_COLUMNS_SHOWN} more)" if len(cols) > MAX_COLUMNS_SHOWN else ""
    return shown + more


def _cut(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def column(df, key: str, shown: str = "table"):
    """Column ``key`` of ``df``; ``a*b`` is the product of two numeric columns (e.g. the array size
    compute.rows*compute.cols). A missing key is one line listing the columns there are."""
    parts = key.split("*") if key not in df.columns else [key]
    for part in parts:
        if part not in df.columns:
            raise AccelsimError(f"{shown}: no column {_cut(part)!r}; columns: {_columns_line(df)}")
    if len(parts) == 1:
        return df[parts[0]]
    pd = _pandas()
    out = None
    for part in parts:
        vals = pd.to_numeric(df[part], errors="coerce")
        if vals.isna().all():
            raise AccelsimError(f"{shown}: column {_cut(part)!r} is not numeric, cannot multiply it")
        out = vals if out is None else out * vals
    return out


def select(df, *, pass_: str | None = "all", where: Sequence[str] = (), shown: str = "table"):
    """Rows of one pass (if the table has a ``pass`` column), without failed points (``error``
    set), and matching every ``KEY=VALUE`` of ``where`` (compared as text or as numbers)."""
    pd = _pandas()
    if pass_ is not None and "pass" in df.columns:
        have = [str(v) for v in df["pass"].dropna().unique()]
        if pass_ not in have:
            raise AccelsimError(f"{shown}: no rows for pass {_cut(pass_)!r} (passes: {', '.join(have[:10])})")
        df = df[df["pass"].astype(str) == pass_]
    if "error" in df.columns:
        err = df["error"]
        df = df[err.isna() | (err.astype(str).str.strip() == "")]
    for cond in where:
        if "=" not in cond:
            raise AccelsimError(f"--where {_cut(cond)!r}: expected KEY=VALUE")
        key, value = cond.split("=", 1)
        col = column(df, key.strip(), shown)
        mask = col.astype(str) == value.strip()
        try:
            num = float(value)
            mask = mask | (pd.to_numeric(col, errors="coerce") == num)
        except ValueError:
            pass
        df = df[mask]
    if df.empty:
        raise AccelsimError(f"{shown}: no rows left to plot (failed points and other passes removed"
                            + (", --where applied)" if where else ")"))
    return df


# ------------------------------------------------------------------------------------------ values
def _is_numeric(series) -> bool:
    pd = _pandas()
    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def _order(values) -> list:
    """Distinct values in plotting order: numbers ascending; text by a leading number when every
    value has one ("10 words/cycle" < "40 words/cycle"), else in table (spec) order."""
    uniq = list(dict.fromkeys(v for v in values if not _missing(v)))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in uniq):
        return sorted(uniq)
    nums = [_NUM_PREFIX.match(str(v)) for v in uniq]
    if all(nums):
        return [v for _, v in sorted(zip((float(m.group(1)) for m in nums), uniq), key=lambda t: t[0])]
    return uniq


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _fmt_value(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def label(key: str) -> str:
    if "*" in key and key not in LABELS:
        return " x ".join(LABELS.get(k, k) for k in key.split("*"))
    return LABELS.get(key, key)


def scale_for(key: str, values) -> tuple[float, str]:
    """(divisor, axis label with unit) for a metric, the unit chosen from the data's magnitude."""
    finite = [abs(float(v)) for v in values if not _missing(v)]
    top = max(finite) if finite else 0.0
    name = label(key)
    base = key.split("*")[-1]
    if "bytes" in base:
        unit, div = byte_unit(top)
        return float(div), f"{name} ({unit})"
    if base.endswith("seconds"):
        for div, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
            if top >= div or div == 1e-6:
                return div, f"{name} ({unit})"
    if base.endswith("speedup"):
        return 1.0, f"{name} (x)"
    if base.endswith("_pct"):
        return 1.0, f"{name} (%)"
    if base == "utilisation":
        return 1.0, f"{name} (fraction of peak)"
    if "cycles" in base or base.endswith("macs"):
        what = "cycles" if "cycles" in base else "MACs"
        for div, word in ((1e9, "billions"), (1e6, "millions"), (1e3, "thousands")):
            if top >= 10 * div:
                return div, f"{name} ({word})" if what in name else f"{name} ({word} of {what})"
        return 1.0, name
    return 1.0, name


def _log_better(values) -> bool:
    """A log axis when positive data spans more than ~1.5 decades (a linear axis would squash the
    smaller points against zero)."""
    vals = [float(v) for v in values if not _missing(v)]
    return bool(vals) and min(vals) > 0 and max(vals) / min(vals) > 30


def _plain_axis(ax) -> None:
    """No '1e-5+1' offset text: on a linear axis, values as they are, and a nearly constant series
    gets a span of +-5% around it instead of ticks at the 6th digit."""
    from matplotlib.ticker import ScalarFormatter

    for axis, get, put in (("y", ax.get_ylim, ax.set_ylim), ("x", ax.get_xlim, ax.set_xlim)):
        which = ax.yaxis if axis == "y" else ax.xaxis
        if which.get_scale() != "linear" or not isinstance(which.get_major_formatter(), ScalarFormatter):
            continue
        ax.ticklabel_format(axis=axis, useOffset=False, style="plain")
        lo, hi = get()
        mid = (lo + hi) / 2
        if mid and (hi - lo) < 1e-3 * abs(mid):
            put(mid - 0.05 * abs(mid), mid + 0.05 * abs(mid))


def _panels(df, col: str | None, shown: str):
    if col is None:
        return [(None, df)]
    c = column(df, col, shown)
    out = []
    for v in _order(list(c)):
        out.append((v, df[c == v]))
    missing = df[c.isna()]
    if len(missing):
        out.append(("(not set)", missing))
    return out


def _grid(plt, n: int, height_one: float = 2.5, panel_in: float = PANEL_IN):
    """Panels on a grid at most the text width wide: one panel at column width, else ``panel_in``
    each (three a row; four as 2 x 2; a heatmap's panels, with a colour bar each, two a row)."""
    per_row = max(1, int(st.TEXT_IN // panel_in))
    ncols = 2 if n == 4 else min(n, per_row)
    nrows = math.ceil(n / ncols)
    width = st.COLUMN_IN if n == 1 else min(st.TEXT_IN, panel_in * ncols)
    fig = st.figure(plt, width, 0.55 + height_one * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def _duplicates_error(df, keys: list[str], shown: str, flags: str) -> None:
    """Several rows for one (panel, series, x): name what else varies instead of averaging them."""
    # the varied keys of a sweep are the dotted columns; then what tells traces and machines apart
    for c in [*[c for c in df.columns if "." in str(c)], "machine", "method", "sparsity", "model", "trace"]:
        if c in df.columns and c not in keys and df.groupby(keys, dropna=False)[c].nunique(dropna=False).max() > 1:
            raise AccelsimError(f"{shown}: several rows per point of the plot; {_cut(str(c))!r} varies too: "
                                f"give it as {flags} or filter with --where {_cut(str(c))}=VALUE")
    raise AccelsimError(f"{shown}: several rows per point of the plot; filter with --where KEY=VALUE")


def _work(df, x: str, y: str, hue: str | None, col: str | None, shown: str, *, unique: bool = True):
    """A frame with plain columns _x, _y, _hue, _col (numbers or text); with ``unique``, one row
    per (x, hue, col)."""
    pd = _pandas()
    w = pd.DataFrame({"_x": column(df, x, shown), "_y": pd.to_numeric(column(df, y, shown), errors="coerce")})
    if w["_y"].isna().all():
        raise AccelsimError(f"{shown}: column {_cut(y)!r} has no numeric values to plot")
    w["_hue"] = column(df, hue, shown) if hue else ""
    w["_col"] = column(df, col, shown) if col else ""
    for k, key in (("_hue", hue), ("_col", col)):
        w[k] = w[k].astype(object).where(w[k].notna(), "(not set)")
        if key in PERCENT:   # a fraction reads as a percentage: 0.9 -> "90%"; an N:M row as its "2:4"
            nms = [_nm_text(v) for v in df["nm"]] if "nm" in df.columns else [None] * len(w)
            w[k] = [p if p is not None else f"{float(v) * 100:.0f}%" if isinstance(v, (int, float)) else v
                    for v, p in zip(w[k], nms)]
    keep = w["_x"].notna() & w["_y"].notna()
    w, df = w[keep], df[keep]
    if w.empty:
        raise AccelsimError(f"{shown}: no row has both {_cut(x)!r} and {_cut(y)!r}")
    if unique and w.duplicated(["_x", "_hue", "_col"]).any():
        tmp = df.assign(_x=w["_x"].values, _hue=w["_hue"].values, _col=w["_col"].values)
        _duplicates_error(tmp, ["_x", "_hue", "_col"], shown,
                          "--hue or --col" if not (hue and col) else "--where")
    return w


# ------------------------------------------------------------------------------------------- sweep
def pareto_front(xs: Sequence[float], ys: Sequence[float], *, maximise_y: bool = False) -> list[bool]:
    """True for each point no other point dominates: x is a cost (lower is better); y is lower is
    better, or higher with ``maximise_y``. q dominates p when q is no worse in both and better in
    one; equal points do not dominate each other."""
    n = len(xs)
    sign = -1.0 if maximise_y else 1.0
    pts = sorted(range(n), key=lambda i: (float(xs[i]), sign * float(ys[i])))
    on = [False] * n
    best = math.inf          # best (signed) y among points of strictly smaller x
    i = 0
    while i < n:              # points of equal x form a group: only the group's best y can be on it
        j = i
        while j < n and float(xs[pts[j]]) == float(xs[pts[i]]):
            j += 1
        group_best = sign * float(ys[pts[i]])
        for k in range(i, j):
            y = sign * float(ys[pts[k]])
            on[pts[k]] = y == group_best and y < best
        best = min(best, group_best)
        i = j
    return on


def plot_sweep(df, path: str | os.PathLike, *, x: str, y: str = "speedup", hue: str | None = None,
               col: str | None = None, kind: str = "line", title: str = "", shown: str = "table") -> None:
    """Line (y vs x, a line per hue value, a panel per col value), heatmap (x by hue, y as colour)
    or Pareto (y vs a cost x, the non-dominated points joined) figure of a tidy table."""
    if kind not in KINDS:
        raise AccelsimError(f"--kind {_cut(kind)!r}: expected one of {', '.join(KINDS)}")
    if kind == "heatmap" and not hue:
        raise AccelsimError("--kind heatmap needs two keys: --x (columns) and --hue (rows)")
    w = _work(df, x, y, hue, col, shown, unique=kind != "pareto")
    ydiv, ylabel = scale_for(y, w["_y"])
    with st.style() as plt:
        panels = _panels(w, "_col" if col else None, shown)
        fig, axes = _grid(plt, len(panels), height_one=2.5 if kind != "heatmap" else 2.2,
                          panel_in=PANEL_IN if kind != "heatmap" else st.COLUMN_IN)
        handles: dict = {}
        for ax, (pv, sub) in zip(axes, panels):
            if kind == "line":
                _line(ax, sub, x, ydiv, handles)
            elif kind == "heatmap":
                _heatmap(fig, ax, sub, x, hue, y, ydiv, ylabel)
            else:
                _pareto(ax, sub, x, y, ydiv, bool(hue), handles)
            if col:
                ax.set_title(f"{label(col)} = {_fmt_value(pv)}")
            if kind != "heatmap":
                ax.set_ylabel(ylabel)
                _plain_axis(ax)
        if kind == "line" and y.endswith("speedup"):
            for ax in axes:
                ax.axhline(1.0, color=st.GREY, linewidth=0.8, linestyle="--", zorder=0)
        if handles and (hue or kind == "pareto"):
            leg_title = label(hue) if hue else None
            # a title takes the top; constrained layout cannot stack a legend under a suptitle
            fig.legend(list(handles.values()), list(handles.keys()),
                       loc="outside lower center" if title else "outside upper center",
                       ncol=st.legend_columns(list(handles), fig.get_figwidth()), title=leg_title)
        if title:
            fig.suptitle(title)
        st.save(fig, path)
        plt.close(fig)


def _x_positions(sub, x: str):
    """Numeric x scaled to its unit; text x as categories 0..n-1 in _order; returns (positions,
    category ticks or None)."""
    if _is_numeric(sub["_x"]):
        div, _ = scale_for(x, sub["_x"])
        return (sub["_x"].astype(float) / div).values, None
    cats = _order(list(sub["_x"]))
    pos = {v: i for i, v in enumerate(cats)}
    return [pos[v] for v in sub["_x"]], cats


def _axis_x(ax, sub, x: str, ticks) -> None:
    if ticks is not None:
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels([_fmt_value(t) for t in ticks])
        ax.set_xlabel(label(x))
        return
    _, xlabel = scale_for(x, sub["_x"])
    ax.set_xlabel(xlabel)
    vals = sorted(set(float(v) for v in sub["_p"]))
    raw = sorted(set(float(v) for v in sub["_x"]))
    if _log_better(vals):
        pow2 = all(v.is_integer() and v > 0 and (int(v) & (int(v) - 1)) == 0 for v in raw)
        ax.set_xscale("log", base=2 if pow2 else 10)
    metric = any(w in x for w in ("bytes", "cycles", "seconds", "macs"))
    if not metric and len(vals) <= 8 and all(v.is_integer() for v in raw):  # a few settings: tick those
        ax.set_xticks(vals)
        ax.set_xticklabels([_fmt_value(v) for v in vals])
        ax.minorticks_off()


def _line(ax, sub, x: str, ydiv: float, handles: dict) -> None:
    pos, ticks = _x_positions(sub, x)
    sub = sub.assign(_p=pos)
    for i, hv in enumerate(_order(list(sub["_hue"]))):
        s = sub[sub["_hue"] == hv].sort_values("_p")
        (ln,) = ax.plot(s["_p"], s["_y"] / ydiv, color=st.color(i), marker=st.marker(i), linestyle=st.linestyle(i))
        handles.setdefault(_fmt_value(hv), ln)
    _axis_x(ax, sub, x, ticks)
    if _log_better(sub["_y"]):
        ax.set_yscale("log")


def _heatmap(fig, ax, sub, x: str, hue: str, y: str, ydiv: float, ylabel: str) -> None:
    import numpy as np

    xs, ys = _order(list(sub["_x"])), _order(list(sub["_hue"]))
    grid = np.full((len(ys), len(xs)), np.nan)
    xi, yi = {v: i for i, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    for xv, hv, val in zip(sub["_x"], sub["_hue"], sub["_y"]):
        grid[yi[hv], xi[xv]] = val / ydiv
    im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")  # viridis: perceptually uniform, CVD-safe
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels([_fmt_value(v) for v in xs])
    ax.set_yticks(range(len(ys)))
    ax.set_yticklabels([_fmt_value(v) for v in ys])
    ax.set_xlabel(label(x))
    ax.set_ylabel(label(hue))
    ax.grid(False)
    ax.spines[:].set_visible(False)
    if len(xs) * len(ys) <= 64:   # the value in each cell, dark text on light cells
        lo, hi = np.nanmin(grid), np.nanmax(grid)
        for r in range(len(ys)):
            for c in range(len(xs)):
                v = grid[r, c]
                if not np.isnan(v):
                    light = hi > lo and (v - lo) / (hi - lo) > 0.6
                    ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=6.5,
                            color="black" if light or hi == lo else "white")
    cb = fig.colorbar(im, ax=ax, shrink=0.9)
    cb.set_label(ylabel)


def _pareto(ax, sub, x: str, y: str, ydiv: float, by_hue: bool, handles: dict) -> None:
    pos, ticks = _x_positions(sub, x)
    sub = sub.assign(_p=[float(p) for p in pos])
    front = pareto_front(list(sub["_p"]), list(sub["_y"]), maximise_y=y in MAXIMISE)
    sub = sub.assign(_front=front)
    hues = _order(list(sub["_hue"])) if by_hue else [""]
    for i, hv in enumerate(hues):
        s = sub[sub["_hue"] == hv] if by_hue else sub
        pts = ax.scatter(s["_p"], s["_y"] / ydiv, color=st.color(i), marker=st.marker(i), s=22, zorder=3,
                         edgecolors="none", label=_fmt_value(hv) if by_hue else "design point")
        handles.setdefault(_fmt_value(hv) if by_hue else "design point", pts)
    f = sub[sub["_front"]].sort_values("_p")
    (ln,) = ax.step(f["_p"], f["_y"] / ydiv, where="post", color="black", linewidth=1.0, zorder=2)
    ring = ax.scatter(f["_p"], f["_y"] / ydiv, s=60, facecolors="none", edgecolors="black", linewidths=1.0, zorder=4)
    handles["Pareto front (" + ("upper left" if y in MAXIMISE else "lower left") + " is better)"] = (ln, ring)
    _axis_x(ax, sub, x, ticks)
    if _log_better(sub["_y"]):
        ax.set_yscale("log")


# ----------------------------------------------------------------------------------------- compare
def _nm_text(nm) -> str | None:
    """The ``nm`` column's "N:M" text, or None where the row has none (a non-N:M method, an older table)."""
    if _missing(nm):
        return None
    text = str(nm).strip()
    return text or None


def method_label(method, sparsity, model: str | None = None, nm=None) -> str:
    """'SWAT 90%', 'SR-STE 2:4' (an N:M method: its ``nm`` column, not the sparsity 1 - n/m), 'dense'."""
    name = "" if _missing(method) else str(method)
    names = {"swat": "SWAT", "srste": "SR-STE", "ste": "STE", "asp": "ASP", "ssl": "SSL", "gmp": "GMP"}
    text = names.get(name.lower(), name) or "unknown method"
    pattern = _nm_text(nm)
    if pattern is not None and name.lower() != "dense":
        text += f" {pattern}"
    elif not _missing(sparsity) and name.lower() != "dense":
        text += f" {float(sparsity) * 100:.0f}%"
    if model:
        text = f"{model}\n{text}"
    return text


def _has_step(df) -> bool:
    """Whole-step speedups worth a panel: the table has them and some trace has non-GEMM work (on
    a trace without it they equal the GEMM speedups, docs/sweeps.md)."""
    pd = _pandas()
    if "step_speedup" not in df.columns:
        return False
    if "vector_ops" in df.columns:
        return bool((pd.to_numeric(df["vector_ops"], errors="coerce").fillna(0) > 0).any())
    diff = pd.to_numeric(df["step_speedup"], errors="coerce") - pd.to_numeric(df["speedup"], errors="coerce")
    return bool((diff.abs() > 1e-9).any())


def compare_frame(df, shown: str = "table"):
    """From a compare (or sweep) table: one row per (trace, machine) with columns group (method
    label), machine, speedup and memory (dense / stored backward bytes)."""
    pd = _pandas()
    df = select(df, pass_="all", shown=shown)
    need = ["machine", "speedup", "footprint_dense_bytes", "footprint_stored_bytes"]
    for c in need:
        column(df, c, shown)
    tr = "trace" if "trace" in df.columns else None
    models = df["model"].dropna().astype(str).unique() if "model" in df.columns else []
    show_model = len(models) > 1
    groups = []
    for _, r in df.iterrows():
        if "method" in df.columns:
            g = method_label(r["method"], r.get("sparsity"), str(r["model"]) if show_model else None, r.get("nm"))
        else:
            g = Path(str(r[tr])).stem if tr else "trace"
        groups.append(g)
    out = pd.DataFrame({"group": groups, "trace": df[tr].astype(str).values if tr else groups,
                        "machine": df["machine"].astype(str).values,
                        "speedup": pd.to_numeric(df["speedup"], errors="coerce").values,
                        "step_speedup": pd.to_numeric(df["step_speedup"], errors="coerce").values
                        if _has_step(df) else float("nan"),
                        "mem_dense": pd.to_numeric(df["footprint_dense_bytes"], errors="coerce").values,
                        "mem_stored": pd.to_numeric(df["footprint_stored_bytes"], errors="coerce").values})
    # two traces with one label (e.g. two seeds): tell them apart by file name
    dup = out.groupby("group")["trace"].nunique()
    for g in dup[dup > 1].index:
        sel = out["group"] == g
        out.loc[sel, "group"] = [f"{g}\n({Path(t).stem})" for t in out.loc[sel, "trace"]]
    if out.duplicated(["group", "machine"]).any():
        raise AccelsimError(f"{shown}: several rows per (trace, machine); is this a sweep table? "
                            f"plot it with `accelsim plot sweep`")
    return out


def plot_compare(frame, path: str | os.PathLike, *, title: str = "") -> None:
    """Two panels of grouped bars, methods (traces) along x, one bar per machine: speedup vs each
    machine's own dense run, and backward-pass memory reduction (dense bytes / stored bytes); the
    dashed line at 1x is dense."""
    import numpy as np

    groups = list(dict.fromkeys(frame["group"]))
    machines = list(dict.fromkeys(frame["machine"]))
    step = "step_speedup" in frame and frame["step_speedup"].notna().any()
    metrics = [("speedup", "speedup vs dense (x)")]
    if step:
        metrics.append(("step_speedup", "whole-step speedup vs dense (x)"))
    metrics.append(("memory", "backward memory reduction\nvs dense (dense / stored, x)"))
    frame = frame.assign(memory=frame["mem_dense"] / frame["mem_stored"].where(frame["mem_stored"] > 0))
    with st.style() as plt:
        width = st.COLUMN_IN if len(groups) * len(machines) <= 8 else st.TEXT_IN
        fig = st.figure(plt, width, 0.7 + 1.9 * len(metrics))
        axes = fig.subplots(len(metrics), 1, sharex=True, squeeze=False)[:, 0]
        nb = len(machines)
        bw = 0.8 / nb
        xs = np.arange(len(groups))
        handles = []
        for ax, (key, ylab) in zip(axes, metrics):
            for j, mname in enumerate(machines):
                vals = []
                for g in groups:
                    r = frame[(frame["group"] == g) & (frame["machine"] == mname)]
                    vals.append(float(r[key].iloc[0]) if len(r) and not _missing(r[key].iloc[0]) else np.nan)
                bars = ax.bar(xs - 0.4 + bw * (j + 0.5), vals, width=bw * 0.92, color=st.color(j),
                              label=mname, zorder=2)
                if ax is axes[0]:
                    handles.append(bars)
                if len(groups) * nb <= 24:   # the value over each bar, when there is room
                    ax.bar_label(bars, labels=[("" if np.isnan(v) else f"{v:.2f}") for v in vals],
                                 fontsize=5.5, padding=1)
            ax.axhline(1.0, color="black", linewidth=0.8, linestyle="--", zorder=3)
            ax.set_ylabel(ylab)
            ax.grid(axis="x", visible=False)
            top = np.nanmax(frame[key].values) if frame[key].notna().any() else 1.0
            ax.set_ylim(0, max(1.0, float(top)) * 1.18)
        axes[0].text(0.0, 1.0, "dashed: dense (1x)", transform=axes[0].transAxes, fontsize=6.5, va="bottom",
                     color="#555555")
        axes[-1].set_xticks(xs)
        axes[-1].set_xticklabels(groups)
        fig.legend(handles, machines, loc="outside lower center" if title else "outside upper center",
                   ncol=st.legend_columns(machines, fig.get_figwidth(), 3), title="machine")
        if title:
            fig.suptitle(title)
        st.save(fig, path)
        plt.close(fig)
