"""How a method is labelled in `compare`'s CSV/JSON and in `plot compare` / `plot sweep` figures: an
N:M method (its trace header records n and m: SR-STE, STE, ASP) reads "SR-STE 2:4" with its own n:m,
every other method its target sparsity as a percentage ("SWAT 80%"), dense "dense"."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from accelsim.cli import main
from accelsim.report.compare import header_info

ROOT = Path(__file__).resolve().parents[1]
NM_TRACE = ROOT / "traces" / "gpt_block_srste_2of4.npz"        # srste, n=2, m=4 in its header
SWAT_TRACE = ROOT / "traces" / "resnet18_cifar_swat_u80.npz"    # swat, sparsity 0.8
DENSE_TRACE = ROOT / "traces" / "resnet18_cifar_dense.npz"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    d = tmp_path_factory.mktemp("labels")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["compare", str(NM_TRACE), str(SWAT_TRACE), str(DENSE_TRACE), "--hw", "a100_24",
                     "--csv", str(d / "c.csv"), "--json", str(d / "c.json"), "-q"])
    assert code == 0, err.getvalue()
    return {"csv": d / "c.csv", "json": json.loads((d / "c.json").read_text())}


def test_header_info_records_the_traces_own_n_and_m():
    from accelsim.trace.format import load_trace

    with load_trace(NM_TRACE) as tr:
        assert tr.header["method"]["params"]["n"] == 2 and tr.header["method"]["params"]["m"] == 4
        assert header_info(tr.header) == {"model": "gpt-block", "method": "srste", "sparsity": 0.5, "nm": "2:4"}
    with load_trace(SWAT_TRACE) as tr:
        assert header_info(tr.header)["nm"] is None and header_info(tr.header)["sparsity"] == 0.8
    # any method whose parameters record n and m is N:M, with its own pattern (1:8 -> 87.5% zeros)
    info = header_info({"method": {"name": "ste", "params": {"n": 1, "m": 8}}})
    assert info["nm"] == "1:8" and info["sparsity"] == 0.875
    # n >= m or non-integers are not an N:M pattern
    assert header_info({"method": {"name": "x", "params": {"n": 4, "m": 4}}})["nm"] is None
    assert header_info({"method": {"name": "x", "params": {"n": True, "m": 4}}})["nm"] is None


def test_method_label_text():
    from accelsim.report.sweep_plots import method_label

    assert method_label("srste", 0.5, nm="2:4") == "SR-STE 2:4"
    assert method_label("asp", 0.875, nm="1:8") == "ASP 1:8"
    assert method_label("swat", 0.8) == "SWAT 80%"
    assert method_label("swat", 0.8, nm=float("nan")) == "SWAT 80%"   # an empty CSV cell
    assert method_label("dense", 0.0) == "dense"
    assert method_label("srste", 0.5, "gpt-block", "2:4") == "gpt-block\nSR-STE 2:4"
    # a table from before the nm column: the percentage is all there is
    assert method_label("srste", 0.5) == "SR-STE 50%"


def test_compare_csv_and_json_carry_nm(compared):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(compared["csv"])
    cols = list(df.columns)
    assert cols[cols.index("sparsity") + 1] == "nm"   # docs/sweeps.md: after sparsity
    by = {t: g for t, g in df.groupby("trace")}
    assert set(by[NM_TRACE.name]["nm"]) == {"2:4"}
    assert by[SWAT_TRACE.name]["nm"].isna().all() and by[DENSE_TRACE.name]["nm"].isna().all()
    traces = {t["name"]: t for t in compared["json"]["traces"]}
    assert traces[NM_TRACE.name]["nm"] == "2:4" and traces[SWAT_TRACE.name]["nm"] is None


def test_plot_compare_groups_read_n_m(compared):
    pytest.importorskip("pandas")
    from accelsim.report import sweep_plots as sp

    frame = sp.compare_frame(sp.read_table(compared["csv"]))
    # two models in the table: the model name leads each label
    assert list(frame["group"]) == ["gpt-block\nSR-STE 2:4", "resnet18-cifar\nSWAT 80%", "resnet18-cifar\ndense"]


def test_plot_sweep_sparsity_legend_reads_n_m():
    pd = pytest.importorskip("pandas")
    from accelsim.report import sweep_plots as sp

    df = pd.DataFrame({"x": [1, 1, 1], "speedup": [1.5, 2.0, 1.0], "sparsity": [0.5, 0.8, 0.0],
                       "nm": ["2:4", None, None], "method": ["srste", "swat", "dense"]})
    w = sp._work(df, "x", "speedup", "sparsity", None, "t")
    assert list(w["_hue"]) == ["2:4", "80%", "0%"]
