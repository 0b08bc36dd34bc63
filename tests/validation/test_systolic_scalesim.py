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
    pytest.importorskip("accelsim.sim.systolic")
    _check(report, "(b)")


def test_accelsim_equals_formula_on_grid(report):
    pytest.importorskip("accelsim.sim.systolic")
    _check(report, "(c)")


def test_conv_lowering_matches_scalesim_gemm(report):
    pytest.importorskip("accelsim.sim.systolic")
    _check(report, "(d)")
