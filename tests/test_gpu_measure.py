"""benchmarks/gpu_measure.py on CPU: importable without CUDA, its CSV rows from fake timings load
through the validation loader (accelsim/validation/a100_library_data.py) with the right values."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from accelsim.validation import a100_library_data as data

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("accelsim_gpu_measure", ROOT / "benchmarks" / "gpu_measure.py")
gm = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gm  # dataclasses look their module up there
_spec.loader.exec_module(gm)


def fake_env(name="NVIDIA H200"):
    return gm.Env(gpu_name=name, driver="550.54", cuda="12.4", torch="2.5.0", cusparselt="602",
                  sm_clock_mhz="1980", sm_clock_after_mhz="1755", max_sm_clock_mhz="1980",
                  mem_clock_mhz="3201", power_limit_w="700")


def test_machine_names():
    assert [fake_env(n).machine for n in ("NVIDIA H200", "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB",
                                          "NVIDIA L4")] == ["h200_24", "h100_24", "a100_24", "NVIDIA L4"]


def test_roles_alternate_per_shape_not_per_row():
    r = [gm.GemmResult("squares", dt, be, s, s, s, 1.0, 1.0) for s in (1024, 2048, 4096)
         for dt in ("fp16", "bf16") for be in gm.BACKENDS]
    roles = gm.roles(r)
    by_shape = {}
    for x, role in zip(r, roles):
        by_shape.setdefault(x.m, set()).add(role)
    assert by_shape == {1024: {"calibrate"}, 2048: {"validate"}, 4096: {"calibrate"}}


def test_gemm_csv_round_trips_through_the_loader(tmp_path):
    res = [gm.GemmResult("k_sweep", "fp16", "cusparselt", 10240, 10240, 1280, 600.0, 500.0, 50, 60),
           gm.GemmResult("k_sweep", "fp16", "cutlass", 10240, 10240, 1280, 600.0, 480.0, 50, 60),
           gm.GemmResult("transformer", "int8", "cutlass", 4096, 2048, 4096, None, None,
                         note="RuntimeError: not supported")]
    rows = gm.gemm_rows(fake_env(), res, "this project (test)")
    path = tmp_path / "m.csv"
    gm.write(path, gm.csv_text(rows, gm.GEMM_COLUMNS, "header line 1\nline 2"))
    text = path.read_text()
    assert text.startswith("# header line 1\n# line 2\n")
    got = data.load(path)
    assert [(g.gpu, g.role, g.m, g.n, g.k, g.dense_us, g.sparse_us) for g in got] == [
        ("h200_24", "calibrate", 10240, 10240, 1280, 600.0, 500.0),
        ("h200_24", "calibrate", 10240, 10240, 1280, 600.0, 480.0),
        ("h200_24", "validate", 4096, 2048, 4096, None, None)]
    assert got[0].speedup == pytest.approx(1.2) and got[2].speedup is None
    assert "SM 1980 -> 1755 MHz" in got[0].conditions and "power limit 700 W" in got[0].conditions
    assert got[1].sparse_kernel == "to_sparse_semi_structured (cutlass)"
    assert got[2].dense_kernel == "torch._int_mm"
    assert "not supported" in text


def test_extra_csv_rows(tmp_path):
    res = [gm.ExtraResult("prune", "fp16", "torch topk mask", "4096x1024", us=12.5, runs=100),
           gm.ExtraResult("mlp", "bf16", "cusparselt", "d4096 tokens8192", dense_us=900.0, sparse_us=750.0, runs=20)]
    rows = gm.extra_rows(fake_env("NVIDIA A100-SXM4-40GB"), res)
    assert set(rows[0]) == set(gm.EXTRA_COLUMNS)
    assert (rows[0]["us"], rows[1]["dense_us"], rows[1]["sparse_us"], rows[1]["gpu"]) == ("12.500", "900.000",
                                                                                          "750.000", "a100_24")


def test_main_without_cuda_is_one_line(capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: main would measure")
    assert gm.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA device" in err


def test_prune_keeps_the_two_largest_of_every_four():
    torch = pytest.importorskip("torch")
    a = torch.tensor([[1.0, -5.0, 3.0, 0.5, 2.0, 2.5, -3.0, 1.0]])
    p = gm.prune_2_4(torch, a)
    assert p.tolist() == [[0.0, -5.0, 3.0, 0.0, 0.0, 2.5, -3.0, 0.0]]
