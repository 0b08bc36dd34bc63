"""Figures: `accelsim plot sweep|compare|memory|speedup|timeline` write valid PNG/SVG/PDF files,
byte-identical on a rerun, at most a page tall for ResNet-50 and GPT-sized models; bad keys and
paths are one line, exit 2; the Pareto front is right on a hand-made table."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

import tiny_trace
from accelsim.report import plots, style
from accelsim.report import sweep_plots as sp
from test_hw_input import _cli  # main() in-process: (exit code, stdout, stderr)
from test_report import fake_footprint, make_result

pd = pytest.importorskip("pandas")

ROOT = Path(__file__).resolve().parents[1]
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<?xml", "pdf": b"%PDF-"}


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from the PNG's IHDR chunk (bytes 16-24, big-endian)."""
    data = path.read_bytes()
    assert data[:8] == MAGIC["png"] and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_file(path: Path) -> None:
    data = path.read_bytes()
    ext = path.suffix[1:]
    assert data.startswith(MAGIC[ext]), (path, data[:8])
    assert len(data) > 3000
    if ext == "pdf":
        assert data.rstrip().endswith(b"%%EOF") and b"CreationDate" not in data   # no timestamp
    if ext == "svg":
        assert b"<dc:date>" not in data


def one_line_error(capsys, argv, *needles) -> str:
    rc, out, err = _cli(argv, capsys)
    assert rc == 2 and out == "", (rc, out, err)
    assert err.startswith("accelsim: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


def sweep_table() -> "pd.DataFrame":
    """A sweep table in the layout `accelsim sweep` writes (docs/sweeps.md): machine 'sys' varies
    compute.rows x bandwidth (text with units), machine 'td' its lookahead; passes fwd and all;
    one failed point (an error row)."""
    rows = []
    for point, (r, bw) in enumerate((r, bw) for r in (16, 32, 64) for bw in ("10 words/cycle", "40 words/cycle")):
        cyc = 1_000_000 * 64 // r + (0 if bw.startswith("40") else 50_000)
        for p, f in (("fwd", 0.4), ("all", 1.0)):
            rows.append({"trace": "t.npz", "model": "m", "method": "swat", "sparsity": 0.9, "machine": "sys",
                         "point": point, "compute.rows": r, "compute.cols": r, "memory.dram.bandwidth": bw,
                         "sparsity.lookahead": None, "pass": p, "total_cycles": int(cyc * f),
                         "dram_bytes": int(3e6 * f) * (2 if bw.startswith("10") else 1), "speedup": 1.0,
                         "seconds": cyc * f / 1e9, "footprint_dense_bytes": 100, "footprint_stored_bytes": 40,
                         "error": ""})
    for point, la in enumerate((1, 2, 4)):
        for p, f in (("fwd", 0.4), ("all", 1.0)):
            rows.append({"trace": "t.npz", "model": "m", "method": "swat", "sparsity": 0.9, "machine": "td",
                         "point": point, "compute.rows": None, "compute.cols": None, "memory.dram.bandwidth": None,
                         "sparsity.lookahead": la, "pass": p, "total_cycles": int(400_000 / (1 + la / 4) * f),
                         "dram_bytes": int(2e6 * f), "speedup": 1 + la / 4, "seconds": 400_000 / (1 + la / 4) * f / 1e9,
                         "footprint_dense_bytes": 100, "footprint_stored_bytes": 40, "error": ""})
    rows.append(dict(rows[-1], point=3, **{"sparsity.lookahead": 9, "pass": "all", "total_cycles": None,
                                           "speedup": None, "error": "sweep.yaml: point 3: lookahead too large"}))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("tables")
    df = sweep_table()
    out = {"csv": d / "sweep.csv", "parquet": d / "sweep.parquet", "dir": d}
    df.to_csv(out["csv"], index=False)
    pytest.importorskip("pyarrow")
    df.to_parquet(out["parquet"], index=False)
    # the columns `accelsim compare --csv` writes that the figure uses (docs/sweeps.md)
    cmp_rows = []
    for trace, method, sparsity in (("a.npz", "swat", 0.9), ("b.npz", "srste", 0.5), ("c.npz", "dense", 0.0)):
        for j, machine in enumerate(("tensordash", "a100_24")):
            for p in ("fwd", "all"):
                cmp_rows.append({"trace": trace, "model": "resnet18", "method": method, "sparsity": sparsity,
                                 "machine": machine, "pass": p, "speedup": 1.0 + sparsity * (2 - j),
                                 "step_speedup": 1.0 + sparsity * (2 - j), "vector_ops": 0,
                                 "footprint_dense_bytes": 1000, "footprint_stored_bytes": int(1000 * (1 - sparsity / 2))})
    out["compare"] = d / "cmp.csv"
    pd.DataFrame(cmp_rows).to_csv(out["compare"], index=False)
    return out


# -------------------------------------------------------------------------------- the Pareto front
def test_pareto_front_hand_made():
    # cost x, cycles y (both lower is better). (3, 7) is dominated by (2, 5); (5, 1) by (4, 1)
    # (same y, higher cost); the two equal points (2, 5) dominate neither each other nor are
    # dominated; (1, 10) has the lowest cost, so nothing dominates it.
    xs = [1, 2, 3, 4, 2, 5]
    ys = [10, 5, 7, 1, 5, 1]
    assert sp.pareto_front(xs, ys) == [True, True, False, True, True, False]
    # speedup-like y (higher is better): (1, 10) dominates every point of higher cost and lower y
    assert sp.pareto_front(xs, ys, maximise_y=True) == [True, False, False, False, False, False]
    assert sp.pareto_front([1, 1, 2], [3, 2, 2]) == [False, True, False]   # equal x: only the best y
    assert sp.pareto_front([], []) == []


def test_pareto_figure_marks_the_front(tables, tmp_path):
    df = sp.select(sp.read_table(tables["csv"]), where=["machine=sys"])
    # cost dram_bytes, cycles (sweep_table): at 40 words/cycle every array size moves 3e6 bytes in
    # 64e6/rows cycles; at 10 words/cycle 6e6 bytes and 50,000 cycles more. The 64-row point at 40
    # words/cycle (3e6 bytes, 1e6 cycles) dominates every other point.
    w = df[["dram_bytes", "total_cycles", "compute.rows"]]
    front = sp.pareto_front(list(w["dram_bytes"]), list(w["total_cycles"]))
    assert list(w[front]["compute.rows"]) == [64]
    sp.plot_sweep(df, tmp_path / "p.png", x="dram_bytes", y="total_cycles", hue="memory.dram.bandwidth",
                  kind="pareto")
    check_file(tmp_path / "p.png")


# ------------------------------------------------------------------------------- plot sweep / compare
@pytest.mark.parametrize("kind,extra", [("line", ["--hue", "memory.dram.bandwidth", "--where", "machine=sys"]),
                                        ("heatmap", ["--hue", "memory.dram.bandwidth", "--where", "machine=sys"]),
                                        ("pareto", ["--hue", "machine"])])
def test_plot_sweep_every_kind_and_format(tables, tmp_path, capsys, kind, extra):
    x = "dram_bytes" if kind == "pareto" else "compute.rows"
    for ext in ("png", "svg", "pdf"):
        src = tables["parquet" if ext == "svg" else "csv"]
        a, b = tmp_path / f"a.{ext}", tmp_path / f"b.{ext}"
        for out in (a, b):
            rc, stdout, err = _cli(["plot", "sweep", src, "--x", x, "--y", "total_cycles", "--kind", kind,
                                    *extra, "-o", out], capsys)
            assert rc == 0, err
            assert stdout.strip() == f"wrote {out}"
        check_file(a)
        assert a.read_bytes() == b.read_bytes()   # deterministic


def test_plot_sweep_panels_products_and_passes(tables, tmp_path, capsys):
    out = tmp_path / "cols.png"
    rc, _, err = _cli(["plot", "sweep", tables["csv"], "--x", "compute.rows*compute.cols", "--y", "seconds",
                       "--hue", "memory.dram.bandwidth", "--col", "pass", "--where", "machine=sys", "-o", out,
                       "--title", "array size sweep"], capsys)
    assert rc == 0, err
    w, h = png_size(out)
    assert w == round(2 * sp.PANEL_IN * style.DPI)          # two panels: passes fwd and all
    assert h <= style.PAGE_IN * style.DPI
    rc, _, err = _cli(["plot", "sweep", tables["csv"], "--x", "sparsity.lookahead", "--where", "machine=td",
                       "--pass", "fwd", "-o", tmp_path / "td.png"], capsys)
    assert rc == 0, err
    # one panel at column width
    assert png_size(tmp_path / "td.png")[0] == round(style.COLUMN_IN * style.DPI)


def test_plot_sweep_bad_input_is_one_line(tables, tmp_path, capsys):
    csv = tables["csv"]
    out = tmp_path / "f.png"
    err = one_line_error(capsys, ["plot", "sweep", csv, "--x", "compute.rowz", "-o", out], "'compute.rowz'",
                         "columns: trace, model,")
    assert len(err) < 900
    one_line_error(capsys, ["plot", "sweep", tables["dir"] / "missing.csv", "--x", "point", "-o", out], "not found")
    txt = tmp_path / "t.txt"
    txt.write_text("x")
    one_line_error(capsys, ["plot", "sweep", txt, "--x", "point", "-o", out], ".parquet or .csv")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    one_line_error(capsys, ["plot", "sweep", bad, "--x", "point", "-o", out], "cannot read the table")
    # two rows per (x, hue): the other varied key is named instead of averaging them
    one_line_error(capsys, ["plot", "sweep", csv, "--x", "compute.rows", "--where", "machine=sys", "-o", out],
                   "'memory.dram.bandwidth' varies too")
    one_line_error(capsys, ["plot", "sweep", csv, "--x", "compute.rows", "--kind", "heatmap", "-o", out], "--hue")
    one_line_error(capsys, ["plot", "sweep", csv, "--x", "point", "--pass", "bwd", "-o", out], "no rows for pass")
    one_line_error(capsys, ["plot", "sweep", csv, "--x", "point", "--where", "machine", "-o", out], "KEY=VALUE")
    one_line_error(capsys, ["plot", "sweep", csv, "--x", "point", "-o", tmp_path / "f.jpg"], ".png or .svg or .pdf")
    one_line_error(capsys, ["plot", "sweep", csv, "--x", "point", "-o", tmp_path / "nodir" / "f.png"],
                   "does not exist")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*tmp*"))


def test_plot_compare_from_table(tables, tmp_path, capsys):
    for ext in ("png", "svg", "pdf"):
        out = tmp_path / f"c.{ext}"
        rc, _, err = _cli(["plot", "compare", tables["compare"], "-o", out], capsys)
        assert rc == 0, err
        check_file(out)
    frame = sp.compare_frame(sp.read_table(tables["compare"]))
    assert list(dict.fromkeys(frame["group"])) == ["SWAT 90%", "SR-STE 50%", "dense"]
    r = frame[(frame["group"] == "SWAT 90%") & (frame["machine"] == "tensordash")].iloc[0]
    assert r["speedup"] == pytest.approx(2.8) and r["mem_dense"] / r["mem_stored"] == pytest.approx(1000 / 550)
    assert frame["step_speedup"].isna().all()    # no vector work anywhere: no whole-step panel
    one_line_error(capsys, ["plot", "compare", tables["compare"], "--hw", "a100_24", "-o", tmp_path / "x.png"],
                   "no --hw")
    one_line_error(capsys, ["plot", "compare", tables["csv"], "-o", tmp_path / "x.png"], "plot sweep")
    one_line_error(capsys, ["plot", "compare", tables["dir"] / "none.npz", "-o", tmp_path / "x.png"], "--hw")


def test_plot_compare_from_traces(tmp_path, capsys, monkeypatch):
    trace, other = tmp_path / "tiny.npz", tmp_path / "tiny2.npz"
    tiny_trace.build(trace)
    tiny_trace.build(other)
    out = tmp_path / "c.pdf"
    drawn = []
    draw = sp.plot_compare
    monkeypatch.setattr(sp, "plot_compare", lambda frame, *a, **k: (drawn.append(frame), draw(frame, *a, **k)))
    # the second trace after --hw (cli._intermixed): both traces are drawn, on both machines
    rc, _, err = _cli(["plot", "compare", trace, "--hw", "tensordash", other, "--hw", "a100_24", "-o", out, "-q"],
                      capsys)
    assert rc == 0, err
    check_file(out)
    (frame,) = drawn
    assert sorted(zip(frame["trace"], frame["machine"])) == [
        ("tiny.npz", "a100_24"), ("tiny.npz", "tensordash"), ("tiny2.npz", "a100_24"), ("tiny2.npz", "tensordash")]


# ---------------------------------------------------------------------------------- per-layer plots
def test_rows_group_and_sum_the_rest():
    assert plots.group_name("layer1.0.conv2", "block") == "layer1.0"
    assert plots.group_name("layer1.0.conv2", "stage") == "layer1"
    assert plots.group_name("transformer.h.11.attn.c_attn", "block") == "transformer.h.11"
    assert plots.group_name("fc", "stage") == "fc" and plots.group_name("lm_head", "block") == "lm_head"
    names = ["a.0.x", "a.0.y", "a.1.x", "b.0.x", "c"]
    vals = [{"v": 1}, {"v": 2}, {"v": 10}, {"v": 4}, {"v": 3}]
    rows = plots.rows_for(names, vals, by="block", top=2, weight=lambda v: v["v"])
    # blocks a.0 (3), a.1 (10), b.0 (4), c (3): the two largest in recording order, then the rest
    assert [(r.name, r.values["v"], r.layers) for r in rows] == [("a.1", 10, 1), ("b.0", 4, 1),
                                                                   ("other 2 blocks (summed)", 6, 3)]
    assert rows[-1].rest and not rows[0].rest
    assert [r.name for r in plots.rows_for(names, vals, by="stage", top=5, weight=lambda v: v["v"])] == ["a", "b", "c"]


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
def test_per_layer_plots_every_format_at_most_a_page(tmp_path, ext):
    fp = fake_footprint(55)
    res = make_result(160, timeline=True)     # GPT-sized: 160 layers
    for name, fn, arg in (("mem", plots.plot_memory, fp), ("sp", plots.plot_speedup, res),
                          ("tl", plots.plot_timeline, res)):
        a, b = tmp_path / f"{name}.{ext}", tmp_path / f"{name}2.{ext}"
        fn(arg, a, title="test")
        fn(arg, b, title="test")
        check_file(a)
        assert a.read_bytes() == b.read_bytes()
        if ext == "png":
            w, h = png_size(a)
            assert w == round(style.TEXT_IN * style.DPI) and h <= style.PAGE_IN * style.DPI, (name, w, h)


def test_resnet50_memory_plot_fits_a_page(tmp_path, capsys):
    out = tmp_path / "r50.png"
    rc, _, err = _cli(["plot", "memory", ROOT / "traces" / "resnet50_imagenet_swat_u80.npz", "-o", out, "-q"], capsys)
    assert rc == 0, err
    w, h = png_size(out)
    # the issue: 4,918 px tall before; now at most a page (9 in) at 200 dpi
    assert h <= 9 * 200 and w == 7 * 200
    rc, _, err = _cli(["plot", "memory", ROOT / "traces" / "resnet50_imagenet_swat_u80.npz", "--by", "stage",
                       "-o", tmp_path / "r50.pdf", "-q"], capsys)
    assert rc == 0, err
    check_file(tmp_path / "r50.pdf")
    one_line_error(capsys, ["plot", "memory", ROOT / "traces" / "resnet50_imagenet_swat_u80.npz", "--top", "0",
                            "-o", out], "--top 0")


def test_timeline_colours_vector_and_sparsify(tmp_path):
    from accelsim.sim.result import TimelineEvent

    res = make_result(3, timeline=True)
    for o in res.ops[:2]:
        o.kind, o.pass_ = "vector", "bwd"
    res.ops[1].sparsify = True
    res.timeline += [TimelineEvent(res.ops[0].op_id, "vector", 0, 50), TimelineEvent(res.ops[1].op_id, "sparsify", 50, 90)]
    assert plots._lane_colour("vector", "bwd") == style.RESOURCE_COLORS["vector"]
    assert plots._lane_colour("sparsify", "fwd") == style.RESOURCE_COLORS["sparsify"]
    assert plots._lane_colour("compute", "dgrad") == style.PASS_COLORS["dgrad"]
    assert len({style.RESOURCE_COLORS["vector"], style.RESOURCE_COLORS["sparsify"], style.STALL_COLOR,
                *(style.PASS_COLORS[p] for p in ("fwd", "dgrad", "wgrad"))}) == 6
    plots.plot_timeline(res, tmp_path / "t.svg")
    svg = (tmp_path / "t.svg").read_text()
    for colour in (style.RESOURCE_COLORS["vector"], style.RESOURCE_COLORS["sparsify"]):
        assert colour.lower() in svg.lower()


def test_palette_is_okabe_ito():
    # Okabe & Ito's eight colours (docs/sources.md "Okabe-Ito palette"), every series colour one of them
    assert set(style.CYCLE) == set(style.OKABE_ITO.values())
    used = {*style.PASS_COLORS.values(), *style.CAT_COLORS.values(), *style.RESOURCE_COLORS.values(), style.STALL_COLOR}
    assert used <= set(style.OKABE_ITO.values()) | {style.GREY}


def test_matplotlib_is_not_imported_by_the_cli_or_run():
    code = ("import sys; import accelsim.cli as c; c.build_parser(); import accelsim.sim, accelsim.report.table, "
            "accelsim.report.compare; print('matplotlib' in sys.modules, 'pandas' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["False", "False"]


def test_readme_sweep_example_is_shipped_and_its_figure_is_in_docs():
    """The README's one-command sweep + figure: the spec loads (every point validated), the plot's
    keys are columns the sweep writes (docs/sweeps.md), and the figure it shows is there. The sweep
    itself (12 points, ~15 s) is not rerun here."""
    import shlex

    from accelsim.cli import build_parser
    from accelsim.sweep.spec import load_spec

    readme = (ROOT / "README.md").read_text()
    i = readme.index("accelsim sweep examples/sweep_lookahead.yaml")
    line = readme[i:readme.index("```", i)].replace("\\\n", " ")
    sweep_cmd, plot_cmd = (shlex.split(part) for part in line.split("&&"))
    assert sweep_cmd[:3] == ["accelsim", "sweep", "examples/sweep_lookahead.yaml"]
    spec = load_spec(ROOT / sweep_cmd[2])
    assert spec is not None
    args = build_parser().parse_args(plot_cmd[1:])
    assert args.what == "sweep" and args.table == sweep_cmd[-1]
    documented = (ROOT / "docs" / "sweeps.md").read_text()
    for key in (args.y, args.hue, args.col):
        assert f"`{key}`" in documented
    assert args.x in (ROOT / sweep_cmd[2]).read_text()
    assert "](docs/figures/sweep.png)" in readme
    w, h = png_size(ROOT / "docs" / "figures" / "sweep.png")
    assert w <= style.TEXT_IN * style.DPI and h <= style.PAGE_IN * style.DPI


def test_compare_whole_step_panel_only_with_vector_work(tables, tmp_path):
    df = sp.read_table(tables["compare"])
    assert sp.compare_frame(df)["step_speedup"].isna().all()
    df.loc[df.index[df["pass"] == "all"][0], "vector_ops"] = 3   # one trace x machine with non-GEMM work
    df["step_speedup"] = df["speedup"] * 0.9
    frame = sp.compare_frame(df)
    assert frame["step_speedup"].notna().all()
    sp.plot_compare(frame, tmp_path / "s.png")
    # three panels (speedup, whole-step speedup, memory) instead of two: the figure is taller
    sp.plot_compare(sp.compare_frame(sp.read_table(tables["compare"])), tmp_path / "g.png")
    assert png_size(tmp_path / "s.png")[1] > png_size(tmp_path / "g.png")[1]


def test_cli_top_default_is_the_plots_default():
    from accelsim.cli import build_parser

    args = build_parser().parse_args(["plot", "memory", "t.npz", "-o", "m.png"])
    assert args.top == plots.DEFAULT_TOP and args.by == "layer"
