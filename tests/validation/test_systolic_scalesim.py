"""Case 1: systolic cycles = SCALE-Sim 3.0 (docs/validation.md is generated from the same code)."""

import pytest

from accelsim.validation import case_systolic
from accelsim.validation.scalesim_run import read_reference
from accelsim.validation.systolic_ref import TopoLayer, fold_cycles, read_topology, scalesim_total_cycles


def test_fold_formula_hand_cases():
    # ws 32x32, GEMM 841x128x64 (ResNet-18 Conv3_s): folds ceil(64/32)*ceil(128/32) = 8,
    # per fold 2*32 + 32 + 841 - 2 = 935 -> 7480; SCALE-Sim prints 7479 (data/scalesim_resnet18_32x32_ws.csv)
    assert fold_cycles("ws", 32, 32, 841, 128, 64) == 7480
    assert scalesim_total_cycles("ws", 32, 32, 841, 128, 64) == 7479
    # os 8x8, GEMM 1x1000x512 (FC): folds ceil(1/8)*ceil(1000/8) = 125, per fold 8 + 8 + 512 - 2 = 526
    assert fold_cycles("os", 8, 8, 1, 1000, 512) == 125 * 526
    # is 16x8 (rows 16, cols 8), GEMM 10x20x40: rows <- K: ceil(40/16) = 3, cols <- M: ceil(10/8) = 2,
    # streamed N = 20, per fold 2*16 + 8 + 20 - 2 = 58
    assert fold_cycles("is", 16, 8, 10, 20, 40) == 6 * 58
    with pytest.raises(ValueError):
        fold_cycles("xs", 8, 8, 1, 1, 1)


def test_topology_parsing_follows_scalesim():
    layers = {l.name: l for l in read_topology(case_systolic.TOPOLOGIES["Resnet18"])}
    assert len(layers) == 21
    # SCALE-Sim: E = ceil((H - R + stride)/stride), no padding: 14x14, 1x1, stride 2 -> 8 (PyTorch: 7)
    assert layers["Conv5_s"].ofmap == (8, 8)
    assert layers["Conv1"].gemm == (110 * 110, 64, 7 * 7 * 3)
    assert len(read_topology(case_systolic.TOPOLOGIES["Resnet50"])) == 54
    assert TopoLayer("x", 5, 5, 3, 3, 2, 4, 1, 1).gemm == (9, 4, 18)


def test_reference_data_is_committed_and_complete():
    files = {f.name for f in case_systolic.REFERENCE_FILES}
    assert "scalesim_resnet18_32x32_ws.csv" in files
    rows = read_reference(case_systolic.DATA / "scalesim_resnet18_32x32_ws.csv")
    assert [r["layer"] for r in rows] == [l.name for l in read_topology(case_systolic.TOPOLOGIES["Resnet18"])]
    assert rows[0]["total_cycles"] == 121939  # Conv1, read straight from SCALE-Sim's COMPUTE_REPORT


@pytest.fixture(scope="module")
def report():
    return case_systolic.run()


def _check(report, prefix):
    c = next(c for c in report.checks if c.name.startswith(prefix))
    assert c.passed, f"{c.name}: {c.value} ({c.error})"


def test_scalesim_output_equals_fold_formula(report):
    _check(report, "(a)")


def test_accelsim_equals_scalesim_per_layer(report):
    _check(report, "(b)")


def test_accelsim_equals_formula_on_grid(report):
    _check(report, "(c)")


def test_conv_lowering_matches_scalesim_gemm(report):
    _check(report, "(d)")


def test_scalesim_report_parsing_and_reference_roundtrip(tmp_path):
    from accelsim.validation.scalesim_run import (ScalesimRun, parse_compute_report, write_config,
                                                  write_reference)
    topo = tmp_path / "t.csv"
    topo.write_text("Layer name, a,\n\nL1,5,5,3,3,2,4,1,\nL2,1,1,1,1,8,10,1,\n")
    rep = tmp_path / "COMPUTE_REPORT.csv"
    rep.write_text("LayerID, Total Cycles (incl. prefetch), Total Cycles, Stall Cycles, x,\n"
                   "0, 120, 99, 0, 1,\n1, 50.0, 40, 3, 1,\n")
    rows = parse_compute_report(rep, topo, dataflow="os", rows=8, cols=8)
    assert [(r["layer"], r["total_cycles"], r["stall_cycles"]) for r in rows] == [("L1", 99, 0), ("L2", 40, 3)]
    out = tmp_path / "ref.csv"
    write_reference(out, [ScalesimRun(rows, 1.0, "scalesim 3.0.0 (numpy 2.3.5)", "cmd")], "note")
    assert out.read_text().startswith("# SCALE-Sim reference cycles, produced by scalesim 3.0.0")
    back = read_reference(out)
    assert back[1]["total_cycles"] == 40 and back[1]["rows"] == 8
    cfg = tmp_path / "c.cfg"
    write_config(_scale_cfg(tmp_path), cfg, dataflow="is", rows=16, cols=64)
    text = cfg.read_text()
    assert "ArrayHeight = 16" in text and "ArrayWidth = 64" in text and "Dataflow = is" in text


def _scale_cfg(tmp_path):
    p = tmp_path / "scale.cfg"
    p.write_text("[general]\nrun_name = x\n\n[architecture_presets]\nArrayHeight:    32\n"
                 "ArrayWidth:     32\nDataflow : ws\n")
    return p


def test_written_commands_name_no_machine_path(tmp_path, monkeypatch):
    # a command recorded into a committed CSV header: temp dir and venv replaced, paths under the
    # working directory made relative, other absolute paths cut to their file name
    from accelsim.validation.scalesim_run import _portable
    monkeypatch.chdir(tmp_path)
    venv = tmp_path / "venv"
    assert _portable(str(venv / "bin" / "python"), venv=venv) == "$SCALESIM_VENV/bin/python"
    assert _portable(str(tmp_path / "t" / "run.cfg"), tmp=tmp_path / "t") == "<tmpdir>/run.cfg"
    assert _portable(str(tmp_path / "data" / "R.csv")) == "data/R.csv"
    assert _portable("/elsewhere/x/Resnet18.csv") == "Resnet18.csv"
    assert _portable("--arrays") == "--arrays"


def test_reference_headers_name_no_machine_path():
    for f in case_systolic.REFERENCE_FILES:
        head = [ln for ln in f.read_text().splitlines() if ln.startswith("#")]
        roots = [f"/{d}/" for d in ("work", "tmp", "root", "home")]   # spelled so this file has none
        assert head and not any(p in ln for ln in head for p in roots), f.name
