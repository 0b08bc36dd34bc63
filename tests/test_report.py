"""Report layer: tables, JSON/CSV writers (atomic, pandas-friendly), progress bar and figures, on
hand-built SimResult / Footprint objects (the simulator itself is tested elsewhere)."""

import csv
import io
import json
import os
from types import SimpleNamespace as NS

import numpy as np
import pytest

from accelsim.report import plots
from accelsim.report.progress import ProgressBar
from accelsim.report.table import fallback_lines, format_table, nbytes, op_table, si, totals_table
from accelsim.report.writers import rows_to_csv, write_csv, write_json
from accelsim.sim.footprint import footprint
from accelsim.sim.result import OpResult, SimResult, TimelineEvent


def op(i, layer, pass_, cycles, dense, *, macs=1000, eff=400, stall=0, fallback=None, step=0):
    return OpResult(op_id=i, step=step, layer=layer, pass_=pass_, kind="conv2d", shape="N1 C4 H4 W4 K4 R3 S3 /1",
                    gemm=(16, 4, 36), dense_macs=macs, effectual_macs=eff, compute_cycles=cycles - stall,
                    stall_cycles=stall, total_cycles=cycles, dense_cycles=dense, speedup=dense / cycles,
                    utilisation=macs / (10 * cycles), sparse_operand="weight" if fallback is None else None,
                    dram_bytes={"input": 64, "weight": 32, "output": 64},
                    dram_bytes_dense={"input": 64, "weight": 64, "output": 64}, fallback=fallback)


def make_result(n_layers=3, *, hw="machine", clock=1e9, scale=1, timeline=False):
    ops, tl, t = [], [], 0
    for i in range(n_layers):
        for p in ("fwd", "dgrad", "wgrad"):
            cyc = (100 + 10 * i) * scale
            fb = "weight not 2:4 along K for dgrad" if (p == "dgrad" and i % 2 == 0) else None
            ops.append(op(len(ops), f"layer{i}.conv", p, cyc, 2 * cyc if fb is None else cyc, stall=10 * scale,
                          fallback=fb))
            if timeline:
                tl.append(TimelineEvent(len(ops) - 1, "dma", t, t + cyc // 2))
                tl.append(TimelineEvent(len(ops) - 1, "compute", t + 10 * scale, t + cyc))
            t += cyc
    return SimResult(hw_name=hw, hw_path=f"{hw}.yaml", trace_path="t.npz", clock_hz=clock, ops=ops,
                     timeline=tl, peak_macs_per_cycle=10)


def test_si_and_bytes():
    assert si(1234) == "1,234" and si(1_234_567) == "1.23M" and si(2.5e9) == "2.5G" and si(None) == "-"
    assert nbytes(1536) == "1.50 KiB" and nbytes(12) == "12 B" and nbytes(3 * 2**20) == "3.00 MiB"
    # one formatter for tables (2 decimals) and figure legends (1 decimal); negative sizes keep units
    assert nbytes(1536, 1) == "1.5 KiB" and nbytes(5 * 2**30, 1) == "5.0 GiB" and nbytes(-2048) == "-2.00 KiB"


def test_format_table_aligns_columns():
    t = format_table(["name", "n"], [["a", "5"], ["bbb", "12"]]).splitlines()
    assert t == ["name   n", "----  --", "a      5", "bbb   12"]


def test_run_tables_and_fallbacks():
    res = make_result(2)
    text = op_table(res)
    assert len(text.splitlines()) == 2 + 6            # header, rule, 6 ops
    assert text.splitlines()[2].rstrip().endswith("0")  # stalls column; no fallback marker on fwd
    assert text.splitlines()[3].rstrip().endswith("*")  # layer0 dgrad fell back
    tot = totals_table(res)
    # fwd: cycles 100 + 110 = 210, dense 420 -> 2.00x; dgrad: layer0 fell back (100/100), layer1 220/110
    lines = {l.split()[0]: l for l in tot.splitlines()[2:]}
    assert "2.00x" in lines["fwd"] and "210" in lines["fwd"]
    assert f"{320 / 210:.2f}x" in lines["dgrad"]
    assert lines["all"].split()[1] == "6"
    assert fallback_lines(res) == ["  * op 1 layer0.conv dgrad: weight not 2:4 along K for dgrad"]


def test_json_and_csv_roundtrip(tmp_path):
    res = make_result(2)
    d = res.to_dict()
    d["meta"] = {"x": np.int64(3), "nan": float("nan"), "shape": (1, 2)}
    write_json(tmp_path / "r.json", d)
    back = json.loads((tmp_path / "r.json").read_text())
    assert back["meta"] == {"x": 3, "nan": None, "shape": [1, 2]}
    assert len(back["ops"]) == 6 and back["ops"][0]["dram_bytes"] == {"input": 64, "weight": 32, "output": 64}
    write_csv(tmp_path / "r.csv", res.to_rows())
    rows = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert len(rows) == 6 and rows[1]["fallback"] == "weight not 2:4 along K for dgrad"
    assert float(rows[0]["speedup"]) == 2.0 and int(rows[0]["dense_macs"]) == 1000
    assert rows_to_csv([{"a": {"x": 1, "y": 2}, "b": (3, 4)}]) == "a_x,a_y,b\n1,2,3x4\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]   # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o666 & ~umask     # not mkstemp's 0600
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_progress_bar_tty_and_pipe():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    bar = ProgressBar("sim", stream=s)
    bar("ops", 5, 5)
    bar.close()
    assert "[" + "#" * 28 + "] 5/5" in s.getvalue() and s.getvalue().endswith("\n")
    p = io.StringIO()
    bar = ProgressBar("sim", stream=p, delay=3600)   # a pipe: silent for short runs
    bar(1, 2)
    bar(2, 2)
    bar.close()
    assert p.getvalue() == ""
    bar = ProgressBar("sim", stream=p, delay=0)
    for i in range(101):
        bar(i, 100)
    assert len(p.getvalue().splitlines()) == 11      # one line per 10%


def fake_footprint(n_layers):
    rng = np.random.default_rng(0)
    recs, masks = [], {}
    for i in range(n_layers):
        for j, (cat, shape, dens) in enumerate((("activation", (4, 16, 8, 8), 0.3), ("weight", (16, 16, 3, 3), 0.1))):
            tid = 2 * i + j
            masks[tid] = rng.random(shape) < dens
            recs.append(NS(id=tid, step=0, layer=f"layer{i // 4}.{i % 4}.conv", shape=shape, dtype="float32",
                           nnz=int(masks[tid].sum()), category=cat, saved_by="conv", storage=tid, tensor=tid,
                           t_pack=i, t_unpack=2 * n_layers - i))
    return footprint(NS(path="f.npz", saved=recs, mask=lambda t: masks[t]))


@pytest.mark.parametrize("ext", ["png", "svg", "pdf"])
def test_plots_write_files_deterministically(tmp_path, ext):
    fp = fake_footprint(55)          # ResNet-50 scale: 55 layers
    res = make_result(55, timeline=True)
    for name, fn, arg in (("mem", plots.plot_memory, fp), ("sp", plots.plot_speedup, res),
                          ("tl", plots.plot_timeline, res)):
        a, b = tmp_path / f"{name}.{ext}", tmp_path / f"{name}2.{ext}"
        fn(arg, a, title="test")
        fn(arg, b, title="test")
        assert a.stat().st_size > 5000
        assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / f"mem.{ext}").read_bytes()[:4] == {"png": b"\x89PNG", "svg": b"<?xm", "pdf": b"%PDF"}[ext]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / f"mem.{ext}").stat().st_mode & 0o777 == 0o666 & ~umask   # not mkstemp's 0600


def test_pandas_reads_csv_and_json_ops_without_help(tmp_path):
    # QA finding: the JSON ops carried the Python attribute name "pass_" while the CSV column (and
    # the trace file) say "pass", so df["pass"] failed on a frame built from the JSON.
    pd = pytest.importorskip("pandas")
    res = make_result(2)
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    write_json(js, res.to_dict())
    write_csv(cs, res.to_rows())
    dc = pd.read_csv(cs)
    dj = pd.DataFrame(json.load(open(js))["ops"])
    assert len(dc) == len(dj) == 6 and "pass_" not in dj.columns
    assert dc["pass"].tolist() == dj["pass"].tolist() == ["fwd", "dgrad", "wgrad"] * 2
    # layer 0: cycles 100, dense 200 (fwd); layer 1: 110 (fwd) -> speedups 2.0 in both files
    assert dc.loc[0, "speedup"] == dj.loc[0, "speedup"] == 2.0
    assert dc["total_cycles"].tolist() == dj["total_cycles"].tolist()
    assert dc["dram_bytes"].tolist()[0] == 160 and dj["dram_bytes"][0] == {"input": 64, "weight": 32, "output": 64}
    # the totals table is a rectangular mapping of mappings: pandas reads it directly
    tot = pd.read_json(io.StringIO(json.dumps(json.load(open(js))["totals"])))
    assert list(tot.columns) == ["fwd", "dgrad", "wgrad", "all"] and tot.loc["ops", "all"] == 6


def test_negative_zero_is_printed_as_zero():
    from accelsim.report.table import footprint_table, num, ratio

    # what rounds to zero loses its sign; what does not keeps it
    assert [num(x, ".1f") for x in (-0.0, -0.04, 0.04, -0.06)] == ["0.0", "0.0", "0.0", "-0.1"]
    assert num(-0.004, ".0%") == "0%" and num(-0.001, ".2f") + "x" == "0.00x" and num(-1e-9, ",.1f") == "0.0"
    assert num(-2e-20, ".3g") == "-2e-20"  # 3 significant digits of a non-zero value
    assert ratio(-0.0) == "0x" and si(-0.0) == "0" and si(-0.4) == "-0.4"
    # a footprint whose stored bytes exceed dense by a hair: (1000 - 1000.4) / 1000 = -0.04% saved
    tot = {"dense": 1000, "stored": 1000.4, "values": 1000}
    fp = NS(totals={c: tot for c in ("activation", "weight", "other", "all")}, peak_dense=1000, peak_stored=1000.4,
            peak_saved_pct=-0.04, saved_pct=lambda cat, idx: -0.04)
    text = footprint_table(fp)
    assert "-0.0" not in text and text.count("0.0%") == 9


def test_unencodable_text_is_written_escaped(tmp_path):
    write_csv(tmp_path / "s.csv", [{"layer": "fc\ud800", "cycles": 3}])
    assert (tmp_path / "s.csv").read_text() == "layer,cycles\nfc\\ud800,3\n"
    write_json(tmp_path / "s.json", {"layer": "fc\ud800"})
    assert json.loads((tmp_path / "s.json").read_text()) == {"layer": "fc\ud800"}


def test_progress_bar_survives_a_full_or_closed_stream():
    class Full(io.StringIO):
        def write(self, s):
            raise OSError(28, "No space left on device")

        def isatty(self):
            return True

    bar = ProgressBar("sim", stream=Full(), delay=0)
    bar(1, 2)            # the write fails: the bar turns itself off instead of failing the run
    assert not bar.enabled
    bar(2, 2)
    bar.close()
    closed = io.StringIO()
    closed.close()
    bar = ProgressBar("sim", stream=closed, delay=0)  # isatty() on a closed stream raises ValueError
    bar(1, 2)
    bar.close()
    assert not bar.enabled
