"""One figure style for every plot accelsim draws: the Okabe-Ito colour-blind-safe palette,
constrained layout, fonts legible at a paper's column width, fixed output metadata.

Sizes follow two-column papers (IEEE/ACM): a single column is about 3.5 in wide, a full text width
about 7 in, a page's text block about 9 in tall; 7-8 pt text at those widths prints at the size of
a caption. Palette: Okabe & Ito, "Color Universal Design" (docs/sources.md "Okabe-Ito palette"),
distinguishable under the common colour-vision deficiencies.
"""

from __future__ import annotations

import io
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from accelsim.util.atomic import atomic_write

# Okabe-Ito, in the order a sequence of series takes them (black last: it is also the text colour).
OKABE_ITO = {
    "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73", "yellow": "#F0E442",
    "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7", "black": "#000000",
}
CYCLE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
GREY = "#999999"          # "the rest", reference elements: not a data colour
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")   # a second cue beside colour
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)))

PASS_COLORS = {"fwd": "#0072B2", "dgrad": "#E69F00", "wgrad": "#009E73", "bwd": "#F0E442",
               "optimizer": "#000000"}
CAT_COLORS = {"activation": "#0072B2", "weight": "#E69F00", "other": GREY}
# timeline resources: compute and DMA take the pass colour; whole-step work has its own
RESOURCE_COLORS = {"vector": "#CC79A7", "sparsify": "#56B4E9", "launch": GREY}
STALL_COLOR = "#D55E00"

COLUMN_IN = 3.5           # single-column figure width
TEXT_IN = 7.0             # full text width (two columns)
PAGE_IN = 9.0             # the tallest a figure may be
DPI = 200                 # PNG resolution: sharp when printed at column width
FORMATS = ("png", "svg", "pdf")

RC = {
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 9,
    "axes.prop_cycle": None,  # set in style() (needs matplotlib's cycler)
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.linestyle": ":",
    "grid.linewidth": 0.6, "grid.color": "#BBBBBB", "axes.axisbelow": True, "lines.linewidth": 1.4,
    "lines.markersize": 4.5, "legend.frameon": False, "pdf.fonttype": 42, "ps.fonttype": 42,
    "svg.fonttype": "path", "svg.hashsalt": "accelsim", "figure.dpi": 100, "savefig.dpi": DPI,
}


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, imported on first use (never on `run`'s path)."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only; no display needed (CI, notebooks, servers)
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def style() -> Iterator:
    """pyplot with accelsim's rc settings for the figures made inside the block."""
    plt = pyplot()
    from cycler import cycler

    rc = dict(RC, **{"axes.prop_cycle": cycler(color=list(CYCLE))})
    with plt.rc_context(rc):
        yield plt


def figure(plt, width: float, height: float):
    """A figure with constrained layout (labels and legends never clipped or overlapping), at most
    a page tall."""
    return plt.figure(figsize=(width, min(PAGE_IN, height)), layout="constrained")


def save(fig, path: str | os.PathLike) -> None:
    """Write ``fig`` to ``path`` (png/svg/pdf by suffix) atomically, byte-identical for the same
    figure: no dates or tool versions in the metadata."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r} not in {FORMATS}")
    meta = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
            "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None}}[fmt]
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, metadata=meta)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def color(i: int) -> str:
    return CYCLE[i % len(CYCLE)]


def marker(i: int) -> str:
    return MARKERS[i % len(MARKERS)]


def linestyle(i: int):
    return LINESTYLES[i % len(LINESTYLES)]


def legend_columns(labels: Sequence[str], width_in: float, max_cols: int = 4) -> int:
    """How many legend columns fit across ``width_in`` at the 7 pt legend font (about 0.055 in a
    character plus the handle), so a legend above the plot is never wider than the figure."""
    longest = max((len(str(t)) for t in labels), default=1)
    per = 0.055 * longest + 0.45
    return max(1, min(max_cols, len(labels), int((width_in - 0.1) // per)))
