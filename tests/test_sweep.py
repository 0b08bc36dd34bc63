"""accelsim sweep (docs/sweeps.md): rows equal `accelsim run --json` for every point, a resumed
sweep redoes nothing, a 2-worker Dask LocalCluster and a 2-process pool give the identical table,
a broken point is a row with its error, a bad spec is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import tiny_trace
from accelsim.cli import main
from accelsim.report.compare import flat_totals
from accelsim.sweep import SweepSpecError, load_spec, run_sweep

SPEC = """
traces: [t.npz]
machines:
  - hw: systolic_32x32_ws
    name: sys
    vary:
      compute.rows: [8, 16]
      memory.dram.bandwidth: [10 words/cycle, 2 words/cycle]
  - hw: tensordash
    zip:
      sparsity.lookahead: [1, 4]
      sparsity.lookaside: [2, 5]
"""


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sweep")
    tiny_trace.build(d / "t.npz")
    (d / "spec.yaml").write_text(SPEC)
    return d


def _run_json(tmp: Path, trace: Path, hw_data: dict, i: int) -> dict:
    hw = tmp / f"hw{i}.yaml"
    hw.write_text(yaml.safe_dump(hw_data))
    out = tmp / f"run{i}.json"
    assert main(["run", str(trace), "--hw", str(hw), "--json", str(out), "--quiet"]) == 0
    return json.loads(out.read_text())


def test_rows_equal_run_json(spec_dir, tmp_path, capsys):
    spec = load_spec(spec_dir / "spec.yaml")
    assert [(p.machine, p.index, p.values) for p in spec.points] == [
        ("sys", 0, {"compute.rows": 8, "memory.dram.bandwidth": "10 words/cycle"}),
        ("sys", 1, {"compute.rows": 8, "memory.dram.bandwidth": "2 words/cycle"}),
        ("sys", 2, {"compute.rows": 16, "memory.dram.bandwidth": "10 words/cycle"}),
        ("sys", 3, {"compute.rows": 16, "memory.dram.bandwidth": "2 words/cycle"}),
        ("tensordash", 0, {"sparsity.lookahead": 1, "sparsity.lookaside": 2}),
        ("tensordash", 1, {"sparsity.lookahead": 4, "sparsity.lookaside": 5}),
    ]
    rows, stats = run_sweep(spec, jobs=1)
    assert stats.simulated == 6 and stats.failed == 0 and len(rows) == 6 * 4
    for i, pt in enumerate(spec.points):
        ref = _run_json(tmp_path, spec_dir / "t.npz", pt.hw_data, i)
        mine = [r for r in rows if r["machine"] == pt.machine and r["point"] == pt.index]
        assert [r["pass"] for r in mine] == ["fwd", "dgrad", "wgrad", "all"]
        for r in mine:
            assert r["error"] == "" and r["trace"] == "t.npz" and r["method"] == "swat" and r["sparsity"] == 0.5
            for k, v in pt.values.items():
                assert r[k] == v
            # every totals key of run --json, whole-step keys included; not_simulated flattened
            want = flat_totals(ref["totals"][r["pass"]])
            assert "step_speedup" in want and "not_simulated_ops" in want
            for k, v in want.items():
                assert r[k] == v, (pt.label(), r["pass"], k)
            fp = ref["footprint"]
            assert r["footprint_dense_bytes"] == fp["totals"]["all"]["dense"]
            assert r["footprint_stored_bytes"] == fp["totals"]["all"]["stored"]
            assert r["footprint_saved_pct"] == fp["saved_pct"]["all"]["with_overhead"]
            assert r["footprint_peak_stored_bytes"] == fp["peak_stored"]
    # the varied values reach the model: 8 rows take longer than 16 rows, less bandwidth stalls more
    cyc = {(r["machine"], r["point"]): r["total_cycles"] for r in rows if r["pass"] == "all"}
    assert cyc[("sys", 0)] > cyc[("sys", 2)] and cyc[("sys", 1)] > cyc[("sys", 0)]


def test_resume_redoes_nothing_and_tables_identical(spec_dir, tmp_path):
    cache = tmp_path / "cache"
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.parquet"
    _, s1 = run_sweep(spec_dir / "spec.yaml", a, jobs=1, cache=cache)
    assert (s1.simulated, s1.cached) == (6, 0)
    files = sorted(cache.rglob("*.json"))
    assert len(files) == 6
    _, s2 = run_sweep(spec_dir / "spec.yaml", b, jobs=1, cache=cache)
    assert (s2.simulated, s2.cached) == (0, 6)
    assert a.read_bytes() == b.read_bytes()
    files[0].unlink()  # an interrupted run: one point missing is the only one redone
    _, s3 = run_sweep(spec_dir / "spec.yaml", b, jobs=1, cache=cache)
    assert (s3.simulated, s3.cached) == (1, 5)
    assert a.read_bytes() == b.read_bytes()
    import pandas as pd

    run_sweep(spec_dir / "spec.yaml", c, jobs=1, cache=cache)
    pa, pc = pd.read_csv(a, keep_default_na=False), pd.read_parquet(c)
    assert list(pa.columns) == list(pc.columns) and len(pc) == 24
    assert (pa["total_cycles"] == pc["total_cycles"]).all() and (pa["speedup"] == pc["speedup"]).all()


def test_process_pool_and_dask_give_identical_table(spec_dir, tmp_path):
    ref, pool, dsk = tmp_path / "ref.parquet", tmp_path / "pool.parquet", tmp_path / "dask.parquet"
    run_sweep(spec_dir / "spec.yaml", ref, jobs=1)
    run_sweep(spec_dir / "spec.yaml", pool, jobs=2)
    distributed = pytest.importorskip("distributed")
    # threads in this process (processes=False): two worker processes cost more start-up than the
    # whole test on a 2-core machine; the worker code path (run_chunk per chunk) is the same
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        _, st = run_sweep(spec_dir / "spec.yaml", dsk, scheduler=cluster.scheduler_address)
    assert st.simulated == 6
    assert ref.read_bytes() == pool.read_bytes() == dsk.read_bytes()


def test_broken_point_is_a_row(spec_dir, tmp_path):
    d = tmp_path
    tiny_trace.build(d / "t.npz")
    (d / "bad.npz").write_bytes(b"not a zip file")
    (d / "spec.yaml").write_text(SPEC.replace("traces: [t.npz]", "traces: ['*.npz']"))
    out = d / "r.csv"
    assert main(["sweep", str(d / "spec.yaml"), "-o", str(out), "--jobs", "1", "--quiet"]) == 0
    import pandas as pd

    t = pd.read_csv(out, keep_default_na=False)
    bad = t[t["trace"] == "bad.npz"]
    assert len(bad) == 6 and (bad["pass"] == "all").all()
    assert all(e.startswith(str(d / "bad.npz")) and "\n" not in e for e in bad["error"])
    assert (bad["total_cycles"] == "").all()
    good = t[t["trace"] == "t.npz"]
    assert len(good) == 24 and (good["error"] == "").all()


@pytest.mark.parametrize("vary, expect", [
    ("compute.rows: [16, 0]", "spec.yaml: machine sys point 1 (compute.rows=0): compute.rows: "),
    ("compute.rowz: [16]", "spec.yaml: machine sys point 0 (compute.rowz=16): vary key 'compute.rowz': "
                           "the hardware file has no compute.rowz"),
    ("memory.l9.bandwidth: [1 GB/s]", "no level 'l9' in memory"),
    ("memory.dram.bandwidth: [fast]", "spec.yaml: machine sys point 0 (memory.dram.bandwidth=fast): memory"),
])
def test_bad_point_is_one_line(tmp_path, capsys, vary, expect):
    tiny_trace.build(tmp_path / "t.npz")
    (tmp_path / "spec.yaml").write_text(f"traces: [t.npz]\nmachines:\n  - hw: systolic_32x32_ws\n    name: sys\n"
                                        f"    vary:\n      {vary}\n")
    with pytest.raises(SweepSpecError) as e:
        load_spec(tmp_path / "spec.yaml")
    assert expect in str(e.value) and "\n" not in str(e.value)
    assert main(["sweep", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expect in err and not (tmp_path / "o.csv").exists()


def test_spec_structure_errors(tmp_path):
    tiny_trace.build(tmp_path / "t.npz")
    cases = {"traces: [none*.npz]\nmachines: [{hw: tensordash}]\n": "matches no file",
             "traces: [t.npz]\nmachines: [{hw: nosuch_machine}]\n": "neither a file next to the spec nor a shipped",
             "traces: [t.npz]\nmachinez: []\n": "unknown key 'machinez'",
             "traces: [t.npz]\nmachines: [{hw: tensordash, zip: {sparsity.lookahead: [1, 2], "
             "sparsity.lookaside: [1]}}]\n": "equal lengths"}
    for text, expect in cases.items():
        (tmp_path / "s.yaml").write_text(text)
        with pytest.raises(SweepSpecError, match=expect):
            load_spec(tmp_path / "s.yaml")


def test_whole_step_rows_of_a_v2_trace(tmp_path):
    """A v2 trace (a causal attention GEMM, vector work in fwd and bwd, the method's 2:4 compression
    in the optimizer pass): one row per pass totals() reports, bwd and optimizer included, every
    number equal to `run --json`, on a GPU (causal block skipping) and a sparse-PE machine."""
    from tiny_trace import build_v2_step

    b, L, d = 2, 256, 64
    build_v2_step(tmp_path / "v2.npz", b=b, L=L, d=d)
    (tmp_path / "spec.yaml").write_text("traces: [v2.npz]\nmachines:\n  - hw: a100_24\n  - hw: tensordash\n")
    spec = load_spec(tmp_path / "spec.yaml")
    rows, stats = run_sweep(spec, tmp_path / "s.csv", jobs=1)
    assert stats.failed == 0
    for i, pt in enumerate(spec.points):
        ref = _run_json(tmp_path, tmp_path / "v2.npz", pt.hw_data, i)["totals"]
        mine = [r for r in rows if r["machine"] == pt.machine]
        assert [r["pass"] for r in mine] == ["fwd", "dgrad", "wgrad", "bwd", "optimizer", "all"] == list(ref)
        for r in mine:
            assert {k: r[k] for k in flat_totals(ref[r["pass"]])} == flat_totals(ref[r["pass"]])
    # a100_24, hand-worked in test_vector.py: 6869 cycles per elementwise op, 2560 + 5640 for the
    # compression (absent on the dense run); the whole step adds them to the GEMM cycles
    a = {r["pass"]: r for r in rows if r["machine"] == "a100_24"}
    assert a["bwd"]["vector_cycles"] == 6869 and a["optimizer"]["sparsify_cycles"] == 8200
    assert a["all"]["step_cycles"] == a["all"]["total_cycles"] + 2 * 6869 + 8200
    assert a["all"]["step_dense_cycles"] == a["all"]["dense_cycles"] + 2 * 6869
    assert a["all"]["not_simulated_ops"] == 0
    import pandas as pd

    t = pd.read_csv(tmp_path / "s.csv")
    assert list(t.columns).count("step_speedup") == 1 and len(t) == 12


def test_docs_list_every_column(spec_dir):
    from accelsim.sweep.run import columns

    doc = (Path(__file__).resolve().parents[1] / "docs" / "sweeps.md").read_text()
    table = doc.split("## The output table", 1)[1].split("## Execution", 1)[0]
    spec = load_spec(spec_dir / "spec.yaml")
    missing = [c for c in columns(spec) if c not in spec.keys and f"`{c}`" not in table]
    assert missing == []
