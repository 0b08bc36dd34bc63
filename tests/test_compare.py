"""`accelsim compare` (traces x machines, accelsim/report/compare.py) and the headline line that
`run` and `compare` end with. Every number is checked against `accelsim run --json` of the same
(trace, machine) pair, never against what compare printed itself."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from accelsim.cli import main
from accelsim.report.compare import footprint_summary, headline, seconds_text

ROOT = Path(__file__).resolve().parents[1]
TRACES = [ROOT / "traces" / "transformer_block_dense.npz", ROOT / "traces" / "transformer_block_srste_2of4.npz"]
# different clocks (1.41 GHz and 1 GHz): the cross-machine ratio must compare time, not cycles
MACHINES = ["a100_24", "tensordash"]
LABELS = [p.name for p in TRACES]


def cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    js, cs = d / "c.json", d / "c.csv"
    args = [*TRACES, *(x for m in MACHINES for x in ("--hw", m)), "--json", js, "--csv", cs, "-q"]
    code, out, err = cli("compare", *args)
    assert code == 0, err
    runs = {}
    for t in TRACES:
        for m in MACHINES:
            rj = d / f"{t.stem}_{m}.json"
            code, rout, err = cli("run", t, "--hw", m, "-q", "--json", rj)
            assert code == 0, err
            runs[(t.name, m)] = (json.loads(rj.read_text()), rout)
    return {"out": out, "json": json.loads(js.read_text()), "csv": cs, "runs": runs}


def _result(d, trace, machine):
    (r,) = [r for r in d["json"]["results"] if r["trace"] == trace and r["machine"] == machine]
    return r


def test_rows_equal_run_json_for_every_pair(done):
    res = done["json"]["results"]
    assert [(r["trace"], r["machine"]) for r in res] == [(t, m) for t in LABELS for m in MACHINES]
    for (trace, machine), (run, _) in done["runs"].items():
        r = _result(done, trace, machine)
        # passes with ops, and all: the same totals dict as run --json, key for key
        want = {p: t for p, t in run["totals"].items()
                if p == "all" or t["ops"] or t.get("vector_ops") or t.get("not_simulated", {}).get("ops")}
        assert r["totals"] == want
        # the footprint is run --json's without the per-tensor and per-layer lists
        fp = {k: v for k, v in run["footprint"].items() if k not in ("items", "layers")}
        assert r["footprint"] == fp


def test_speedup_vs_first_machine_is_a_time_ratio(done):
    # hand check on the 2:4 trace, pass all: a100_24 runs at 1.41 GHz, tensordash at 1 GHz, so the
    # ratio is (a100 cycles / 1.41e9) / (tensordash cycles / 1e9), not a ratio of cycles
    a = done["runs"][(LABELS[1], "a100_24")][0]["totals"]["all"]
    t = done["runs"][(LABELS[1], "tensordash")][0]["totals"]["all"]
    want = (a["total_cycles"] / 1.41e9) / (t["total_cycles"] / 1e9)
    r = _result(done, LABELS[1], "tensordash")
    assert r["vs_first"]["all"]["speedup"] == pytest.approx(want, rel=1e-12)
    assert want != pytest.approx(a["total_cycles"] / t["total_cycles"], rel=1e-3)  # cycles would differ
    assert _result(done, LABELS[1], "a100_24")["vs_first"]["all"]["speedup"] == 1.0
    # the terminal table: one 'all' row per trace x machine; the first machine 1.00x vs itself
    rows = [line.split() for line in done["out"].splitlines() if line.startswith("all ")]
    assert [(r[1], r[2]) for r in rows] == [(tr, m) for tr in LABELS for m in MACHINES]
    assert rows[0][7] == "1.00x" and rows[3][7] == f"{want:.2f}x"
    # vs own dense is the machine's dense-run speedup of that trace (run --json's speedup)
    assert rows[3][6] == f"{t['speedup']:.2f}x"


def test_csv_has_the_documented_columns(done):
    pd = pytest.importorskip("pandas")
    df = pd.read_csv(done["csv"])
    doc = (ROOT / "docs" / "sweeps.md").read_text().split("## The `accelsim compare` table", 1)[1].split("\n## ", 1)[0]
    documented = [c.strip(" `") for line in doc.splitlines() if line.startswith("| `")
                  for c in line.split("|")[1].split(",")]
    run_totals = next(iter(done["runs"].values()))[0]["totals"]["all"]
    total_cols = [f"{k}_{sk}" if isinstance(v, dict) else k for k, v in run_totals.items()
                  for sk in (v if isinstance(v, dict) else [None])]
    # the documented columns with "every totals() key" in their place, in order
    cut = documented.index("speedup_vs_first")
    want = documented[:cut] + total_cols + documented[cut:]
    if "step_speedup" not in run_totals:
        want.remove("step_speedup_vs_first")
    assert list(df.columns) == want
    assert len(df) == sum(len(_result(done, t, m)["totals"]) for t in LABELS for m in MACHINES)
    one = df[(df["trace"] == LABELS[1]) & (df["machine"] == "tensordash") & (df["pass"] == "all")].iloc[0]
    run = done["runs"][(LABELS[1], "tensordash")][0]
    assert one["total_cycles"] == run["totals"]["all"]["total_cycles"]
    assert one["speedup"] == pytest.approx(run["totals"]["all"]["speedup"], rel=1e-12)
    assert one["footprint_stored_bytes"] == run["footprint"]["totals"]["all"]["stored"]
    assert one["method"] == "srste" and one["sparsity"] == 0.5 and one["family"] == "sparse_pe"
    assert df["speedup_vs_first"][df["machine"] == "a100_24"].eq(1.0).all()


_HEAD = re.compile(r"^headline: (?P<trace>\S+) on (?P<machine>\S+): (?P<time>[\d.]+) (?P<unit>s|ms|us|ns) "
                   r"\((?:GEMM only|GEMM (?P<gemm>[\d.]+) (?P<gunit>s|ms|us|ns))\), speedup vs dense "
                   r"(?P<sp>[\d.]+)x(?: whole step, (?P<gsp>[\d.]+)x GEMM only)?(?: \(\d+ op\(s\) not simulated\))?; "
                   r"backward-pass memory "
                   r"(?P<dense>[\d.]+) (?P<du>[KMG]?i?B) dense -> (?P<stored>[\d.]+) (?P<su>[KMG]?i?B) stored "
                   r"\((?P<pct>[\d.]+)% saved\)$")
_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9, "B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def test_headlines_equal_the_json(done):
    heads = [line for line in done["out"].splitlines() if line.startswith("headline: ")]
    assert len(heads) == 4 and done["out"].rstrip("\n").endswith(heads[-1])  # compare ends with them
    for line in heads:
        m = _HEAD.match(line)
        assert m, line
        r = _result(done, m["trace"], m["machine"])
        t, fp = r["totals"]["all"], r["footprint"]["totals"]["all"]
        step = t.get("vector_ops", 0) > 0  # whole step shown only for traces with non-GEMM work
        assert (m["gsp"] is not None) == step, line
        secs = t["step_seconds"] if step else t["seconds"]
        # 3 significant digits of the time, 2 decimals of the ratio and the byte counts
        assert float(m["time"]) * _SCALE[m["unit"]] == pytest.approx(secs, rel=5e-3)
        assert float(m["sp"]) == pytest.approx(t["step_speedup"] if step else t["speedup"], abs=0.005)
        if step:
            assert float(m["gsp"]) == pytest.approx(t["speedup"], abs=0.005)
            assert float(m["gemm"]) * _SCALE[m["gunit"]] == pytest.approx(t["seconds"], rel=5e-3)
        assert float(m["dense"]) * _SCALE[m["du"]] == pytest.approx(fp["dense"], abs=0.005 * _SCALE[m["du"]])
        assert float(m["stored"]) * _SCALE[m["su"]] == pytest.approx(fp["stored"], abs=0.005 * _SCALE[m["su"]])
        assert float(m["pct"]) == pytest.approx(100 * (1 - fp["stored"] / fp["dense"]), abs=0.05)
        assert r["headline"]["text"] == line
    # `run` ends with the same line for the same pair (one headline function, the same numbers)
    for (trace, machine), (_, rout) in done["runs"].items():
        assert rout.rstrip("\n").splitlines()[-1] == _result(done, trace, machine)["headline"]["text"]


def test_headline_shows_whole_step_when_totals_carry_it():
    fp = {"totals": {"all": {"dense": 3 * 2**20, "stored": 2**20}}}
    gemm = {"seconds": 0.0012345, "speedup": 1.5}
    assert headline("t.npz", "m", gemm, fp) == ("headline: t.npz on m: 1.23 ms (GEMM only), speedup vs dense 1.50x; "
                                               "backward-pass memory 3.00 MiB dense -> 1.00 MiB stored (66.7% saved)")
    # a trace of GEMMs only: step_* equal the GEMM values and are not called the whole step
    v1 = dict(gemm, total_cycles=10, step_cycles=10, vector_ops=0, step_seconds=0.0012345, step_speedup=1.5)
    assert headline("t.npz", "m", v1, fp) == headline("t.npz", "m", gemm, fp)
    step = dict(gemm, total_cycles=10, step_cycles=16, vector_ops=3, step_seconds=0.002, step_speedup=1.25,
                not_simulated={"ops": 2, "macs": 0, "bytes": 64})
    assert headline("t.npz", "m", step, None) == (
        "headline: t.npz on m: 2 ms (GEMM 1.23 ms), speedup vs dense 1.25x whole step, 1.50x GEMM only "
        "(2 op(s) not simulated); backward-pass memory: no saved-for-backward records")
    # rounding to 3 digits may carry into the next unit: 999.96 us is 1 ms, not '1e+03 us'
    assert seconds_text(999.96e-6) == "1 ms" and seconds_text(12.5e-9) == "12.5 ns" and seconds_text(42.0) == "42 s"


def test_footprint_summary_is_run_jsons_without_lists():
    from accelsim.sim.footprint import Footprint

    fp = Footprint(step=0, format="auto", n=2, m=4, items=[], layers=[],
                   totals={c: {"dense": 8, "stored": 4, "values": 2} for c in ("activation", "weight", "other", "all")},
                   peak_dense=8, peak_stored=4, peak_time_dense=1, peak_time_stored=1)
    d = footprint_summary(fp)
    assert "items" not in d and "layers" not in d and d["saved_pct"]["all"]["with_overhead"] == 50.0


def _one_line_error(code, out, err, *needles):
    assert code == 2 and out == "", (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("accelsim: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    js, cs = tmp_path / "c.json", tmp_path / "c.csv"
    hw2 = ["--hw", "a100_24", "--hw", "tensordash"]
    missing = tmp_path / "missing.npz"
    _one_line_error(*cli("compare", TRACES[0], missing, *hw2, "-q", "--json", js), "missing.npz", "not found")
    _one_line_error(*cli("compare", TRACES[0], *hw2, "--hw", ROOT / "hwconfigs" / "a100_24.yaml", "-q"),
                    "given twice", "a100_24")
    _one_line_error(*cli("compare", TRACES[0], TRACES[0], "--hw", "a100_24", "-q"), "trace given twice")
    _one_line_error(*cli("compare", TRACES[0], "--hw", "a100_24", "-q"), "at least two")
    (tmp_path / "d.csv").mkdir()
    _one_line_error(*cli("compare", TRACES[0], *hw2, "-q", "--csv", tmp_path / "d.csv"), "is a directory")
    _one_line_error(*cli("compare", TRACES[0], *hw2, "-q", "--csv", tmp_path / "c.txt"), ".csv")
    _one_line_error(*cli("compare", TRACES[0], "--hw", "a100_24", "--hw", "no_such_machine", "-q"),
                    "no_such_machine")
    _one_line_error(*cli("compare", TRACES[0], *hw2, "-q", "--steps", "7"), "step(s) 7")
    assert not js.exists() and not cs.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["d.csv"]


def test_python_compare_prints_the_cli_table(done):
    import accelsim
    from accelsim.report.compare import compare

    cmp = compare([accelsim.load_trace(t) for t in TRACES], [accelsim.load_hw(m) for m in MACHINES])
    assert cmp.traces == LABELS and cmp.machines == MACHINES
    assert cmp.table() in done["out"]


def test_traces_after_hw_are_traces_too(done, tmp_path):
    # `compare A --hw X B --hw Y`: B (after an option) is a trace, in order, as if given first
    cs = tmp_path / "c.csv"
    code, _, err = cli("compare", TRACES[0], "--hw", MACHINES[0], TRACES[1], "--hw", MACHINES[1], "-q", "--csv", cs)
    assert code == 0, err
    assert cs.read_bytes() == done["csv"].read_bytes()
    # a word after an option that is not a trace file: the trace's one-line error
    _one_line_error(*cli("compare", TRACES[0], "--hw", "a100_24", tmp_path / "nope.npz", "--hw", "tensordash", "-q"),
                    "nope.npz")
    # an unknown option, or an extra word for a one-trace command: argparse's one-line error
    for argv in (("compare", TRACES[0], "--hw", "a100_24", TRACES[1], "--bogus"),
                 ("run", TRACES[0], "--hw", "a100_24", TRACES[1])):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
            main([str(a) for a in argv])
        assert e.value.code == 2 and err.getvalue().count("\n") == 1, err.getvalue()
        assert err.getvalue().startswith("accelsim: error: unrecognized arguments: ")


def test_traces_of_one_file_name_are_told_apart_by_path(tmp_path):
    import shutil

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        shutil.copy(TRACES[0], tmp_path / d / "x.npz")
    js = tmp_path / "c.json"
    code, out, err = cli("compare", tmp_path / "a" / "x.npz", tmp_path / "b" / "x.npz", "--hw", "tensordash",
                         "-q", "--json", js)
    assert code == 0, err
    names = [t["name"] for t in json.loads(js.read_text())["traces"]]
    assert names == [str(tmp_path / "a" / "x.npz"), str(tmp_path / "b" / "x.npz")]
    # one machine, so each trace is its own reference: vs first is 1.00x; the copies agree
    res = json.loads(js.read_text())["results"]
    assert res[0]["totals"] == res[1]["totals"] and res[1]["vs_first"]["all"]["speedup"] == 1.0


def test_labels():
    from accelsim.report.compare import labels

    assert labels(["a", "b"]) == ["a", "b"]
    assert labels(["m", "m", "n"], ["x/one.yaml", "y/two.yaml", "z.yaml"]) == ["m (one.yaml)", "m (two.yaml)", "n"]
    assert labels(["m", "m"], ["x/f.yaml", "y/f.yaml"]) == ["m (f.yaml) #1", "m (f.yaml) #2"]
    assert labels(["p", "p"]) == ["p #1", "p #2"]


def _op(op_id, pass_, cycles, dense, kind="matmul", sparsify=False):
    from accelsim.sim.result import OpResult

    vec = kind == "vector"
    return OpResult(op_id=op_id, step=0, layer="l", pass_=pass_, kind=kind, shape="", gemm=(1, 1, 1),
                    dense_macs=0 if vec else 100, effectual_macs=0 if vec else 50, compute_cycles=cycles,
                    stall_cycles=0, total_cycles=cycles, dense_cycles=dense, speedup=dense / cycles,
                    utilisation=0.0, sparse_operand=None, dram_bytes={}, dram_bytes_dense={}, fallback=None,
                    sparsify=sparsify)


def test_whole_step_columns_for_a_trace_with_vector_work():
    # Hand-made results (SimResult.totals() does the sums, interface10.md). Machine A at 1 GHz:
    # GEMM fwd 100k cycles (dense 200k), vector fwd 30k, the method's optimizer-pass work 10k (absent
    # on the dense run): step 140k cycles = 140 us, dense step 230k. Machine B at 2 GHz: GEMM 50k
    # (dense 100k), vector 60k, sparsify 20k: step 130k cycles = 65 us, dense step 160k.
    from accelsim.report.compare import Cell, Comparison
    from accelsim.sim.result import SimResult

    fp = {"format": "auto", "totals": {"all": {"dense": 2048, "stored": 1024}},
          "saved_pct": {"all": {"with_overhead": 50.0}}, "peak_dense": 2048, "peak_stored": 1024,
          "peak_saved_pct": 50.0}

    def cell(machine, clock, gemm, dense, vec, spars):
        ops = [_op(0, "fwd", gemm, dense), _op(1, "fwd", vec, vec, "vector"),
               _op(2, "optimizer", spars, 0, "vector", sparsify=True)]
        res = SimResult(machine, f"{machine}.yaml", "t.npz", clock, ops)
        return Cell(trace="t.npz", trace_path="t.npz", info={}, machine=machine, hw=machine, hw_name=machine,
                    family="x", result=res, footprint=fp)

    cmp = Comparison([[cell("A", 1e9, 100_000, 200_000, 30_000, 10_000), cell("B", 2e9, 50_000, 100_000, 60_000, 20_000)]])
    assert cmp.passes(0) == ["fwd", "optimizer", "all"]  # optimizer has no GEMM op, but work
    b_all = [r for r in cmp.rows() if r["machine"] == "B" and r["pass"] == "all"][0]
    assert b_all["speedup_vs_first"] == pytest.approx(100e-6 / 25e-6)          # GEMM time: 4x
    assert b_all["step_speedup_vs_first"] == pytest.approx(140e-6 / 65e-6)     # whole step: 28/13
    assert b_all["step_speedup"] == pytest.approx(160 / 130)
    table = cmp.table().splitlines()
    assert all(h in table[0] for h in ("step (us)", "step vs dense", "step vs A"))
    assert [line.split() for line in table if line.startswith("all") and " B " in line] == [
        ["all", "B", "50k", "100k", "25.0", "2.00x", "4.00x", "65.0", "1.23x", "2.15x", "0"]]
    assert cmp.headlines()[1] == ("headline: t.npz on B: 65 us (GEMM 25 us), speedup vs dense 1.23x whole step, "
                                  "2.00x GEMM only; backward-pass memory 2.00 KiB dense -> 1.00 KiB stored "
                                  "(50.0% saved)")


def test_cross_machine_ratio_compares_time_across_clocks():
    # (was table.compare_table's test; Comparison.table is the one compare table) machine b runs 4x
    # the cycles of a at 2x the clock: half as fast, not a quarter (layer0 dgrad falls back on both)
    from accelsim.report.compare import Cell, Comparison
    from test_report import make_result

    fp = {"format": "auto", "totals": {"all": {"dense": 0, "stored": 0}}, "saved_pct": {"all": {"with_overhead": 0.0}},
          "peak_dense": 0, "peak_stored": 0, "peak_saved_pct": 0.0}
    cells = [Cell(trace="t.npz", trace_path="t.npz", info={}, machine=m, hw=m, hw_name=m, family="x",
                  result=make_result(1, hw=m, clock=clock, scale=scale), footprint=fp)
             for m, clock, scale in (("a", 1e9, 1), ("b", 2e9, 4))]
    lines = [line.split() for line in Comparison([cells]).table().splitlines() if line.startswith("all")]
    assert [line[:2] + line[-2:] for line in lines] == [["all", "a", "1.00x", "1"], ["all", "b", "0.50x", "1"]]


def test_what_was_not_simulated_is_warned_once_per_trace(tmp_path):
    from tiny_trace import build_unrecorded_attention

    path = tmp_path / "t.npz"
    build_unrecorded_attention(path)
    code, out, err = cli("compare", path, "--hw", "a100_24", "--hw", "tensordash", "-q")
    assert code == 0, err
    # the trace's own gap, the same on both machines: one line naming the trace, not one per machine
    assert err == ("accelsim: warning: t.npz: aten._scaled_dot_product_flash_attention.default: 2 ops, size unknown "
                   "not simulated (not recorded)\n")
    assert all("(2 op(s) not simulated)" in line for line in out.splitlines() if line.startswith("headline: "))
