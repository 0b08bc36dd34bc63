"""`accelsim gemm` (accelsim/gemm.py): the same numbers as `accelsim run`, hand-checked identities, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from accelsim.cli import main
from accelsim.gemm import gemm_report, two_four_words
from accelsim.hw import load_hw
from accelsim.sim import simulate
from accelsim.trace.format import Operand, TraceWriter, unpack_words


def test_two_four_mask_exact():
    # K multiple of 4 (periodic words) and not (general path): first two of every 4 along K kept
    for m, k in ((3, 8), (5, 12), (2, 6)):
        mask = unpack_words(two_four_words(m, k), (m, k))
        want = np.broadcast_to(np.arange(k) % 4 < 2, (m, k))
        assert (mask == want).all()


def test_identities_and_no_sparse():
    r = gemm_report(256, 512, 128, "a100_24")
    hw = load_hw("a100_24")
    for run in (r.dense, r.sparse):
        assert run.seconds == run.cycles / hw.clock_hz
        assert run.tflops == 2 * 256 * 512 * 128 / run.seconds / 1e12  # TFLOP/s = 2MNK / s, exactly
        assert sum(run.parts.values()) == run.cycles
        assert run.bound == max(run.parts, key=run.parts.get)
    assert r.sparse == r.dense and r.speedup == 1.0  # no --sparse: the 2:4 run is the dense one


@pytest.mark.parametrize("name", ["a100_24", "a100_24_ideal"])
def test_equals_accelsim_run(tmp_path, name):
    """A trace holding that one matmul (A weight 2:4 along K) gives the same cycles through simulate.
    The ideal bound gains from 2:4; the library-realistic a100_24 loses on this small GEMM, as the
    libraries measure (its 2:4 kernel is cuSPARSELt's one 256x128 kernel without split-K: one CTA
    walks all of K while the dense GEMM splits it)."""
    m, n, k = 256, 128, 512
    a = unpack_words(two_four_words(m, k), (m, k))
    path = tmp_path / "g.npz"
    with TraceWriter(path, {"model": "g", "batch_size": 1, "steps": [0]}) as tw:
        ta = tw.add_tensor(a, dtype="float16", role="weight", layer="g")
        tb = tw.add_tensor(np.ones((k, n), bool), dtype="float16", role="activation", layer="g")
        tw.add_op(step=0, seq=0, pass_="fwd", kind="matmul", layer="g", module_type="", aten="",
                  operands=[Operand("a", ta), Operand("b", tb)], out_shape=[m, n], params={})
    res = simulate(path, load_hw(name)).ops[0]
    r = gemm_report(m, n, k, name, sparse="2:4")
    assert r.sparse.cycles == res.total_cycles and r.dense.cycles == res.dense_cycles
    assert r.speedup == pytest.approx(res.speedup) and r.sparse.fallback is None
    assert (r.speedup > 1.0) if name.endswith("_ideal") else (r.speedup < 1.0 and r.sparse.split_k == 1)


def test_large_square_bounded_by_peak():
    hw = load_hw("a100_24")
    r = gemm_report(2048, 2048, 2048, hw, sparse="2:4")
    peak = 2 * hw.peak_macs_per_cycle * hw.clock_hz / 1e12
    assert r.dense.tflops <= peak and r.sparse.tflops <= 2 * peak
    assert r.dense.bound == "compute"


def test_cli_json_and_errors(tmp_path, capsys):
    out = tmp_path / "g.json"
    assert main(["gemm", "128", "128", "256", "--hw", "a100_24", "--sparse", "2:4", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    for key in ("dense_seconds", "sparse_seconds", "speedup", "tflops", "bound", "tile", "hw", "dtype"):
        assert key in d
    assert d["speedup"] == pytest.approx(d["dense_seconds"] / d["sparse_seconds"])
    assert d["hw"] == "a100_24" and d["dtype"] == "fp16" and d["mode"] == "library"  # the default since issue 11
    capsys.readouterr()
    for argv in (["gemm", "0", "8", "8", "--hw", "a100_24"], ["gemm", "8", "x" * 500, "8", "--hw", "a100_24"],
                 ["gemm", "8", "8", "8", "--hw", "tensordash"],
                 ["gemm", "8", "8", "8", "--hw", "a100_24", "--dtype", "fp8"],
                 ["gemm", "8", "8", str(1 << 40), "--hw", "a100_24"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("accelsim: error:") and "\n" not in err and len(err) < 300


def test_ideal_overrides_library_model():
    """--ideal is kernel_model ideal whatever the file says; a library variant (main loop at 50%) is slower."""
    import dataclasses

    hw = load_hw("a100_24_ideal")
    lib = dataclasses.replace(hw, compute=dataclasses.replace(
        hw.compute, kernel_model="library", mainloop_efficiency=(0.5, 0.5), kernel_fixed_s=(0.0, 0.0)))
    ideal = gemm_report(1024, 1024, 1024, hw)
    assert ideal.mode == "ideal"
    # the shipped library-realistic file with --ideal is its ideal twin, number for number
    flag = gemm_report(1024, 1024, 1024, "a100_24", sparse="2:4", ideal=True)
    twin = gemm_report(1024, 1024, 1024, "a100_24_ideal", sparse="2:4")
    assert flag.mode == "ideal" and (flag.dense, flag.sparse) == (twin.dense, twin.sparse)
    assert gemm_report(1024, 1024, 1024, lib, ideal=True).dense.cycles == ideal.dense.cycles
    slow = gemm_report(1024, 1024, 1024, lib)
    assert slow.mode == "library" and slow.dense.cycles > ideal.dense.cycles


@pytest.mark.parametrize("name, model", [("a100_24", "library"), ("a100_24_ideal", "ideal"),
                                         ("h100_24", "library"), ("tensordash", None)])
def test_run_says_which_kernel_model(tmp_path, capsys, name, model):
    """issue 11: every output says whether a GPU number is the ideal bound or library-realistic:
    run's hw line and its JSON's kernel_model (null for other families)."""
    path = tmp_path / "g.npz"
    with TraceWriter(path, {"model": "g", "batch_size": 1, "steps": [0]}) as tw:
        ta = tw.add_tensor(np.ones((64, 64), bool), dtype="float16", role="weight", layer="g")
        tb = tw.add_tensor(np.ones((64, 64), bool), dtype="float16", role="activation", layer="g")
        tw.add_op(step=0, seq=0, pass_="fwd", kind="matmul", layer="g", module_type="", aten="",
                  operands=[Operand("a", ta), Operand("b", tb)], out_shape=[64, 64], params={})
    out = tmp_path / "r.json"
    capsys.readouterr()
    assert main(["run", str(path), "--hw", name, "--json", str(out)]) == 0
    hw_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("hw "))
    assert json.loads(out.read_text())["kernel_model"] == model
    want = {"library": "library-realistic kernels", "ideal": "ideal-kernel bound", None: ""}[model]
    assert want in hw_line and ("kernel" in hw_line) == (model is not None)


def test_dtype_variant_peaks():
    """--dtype int8 / fp8: the file's compute.dtypes rate (hw.families.gpu.with_dtype). Hand-checked
    peaks: A100 INT8 108 SMs x 4 tensor cores x 512 MACs/clk x 2 x 1.41 GHz = 623.8 TOPS (datasheet 624,
    docs/sources.md "NVIDIA A100"); H100 FP8 132 x 4 x 1024 x 2 x 1.830 GHz = 1978.9 (docs/sources.md
    "NVIDIA Hopper")."""
    from accelsim.hw.families.gpu import with_dtype

    a100 = with_dtype(load_hw("a100_24_ideal"), "int8")
    assert a100.compute.dense_macs_per_cycle_per_core == 512 and a100.compute.element_bytes == 1
    assert 2 * a100.compute.peak_macs_per_cycle * a100.clock_hz / 1e12 == pytest.approx(623.8, abs=0.1)
    h100 = with_dtype(load_hw("h100_24"), "fp8")
    assert 2 * h100.compute.peak_macs_per_cycle * h100.clock_hz / 1e12 == pytest.approx(1978.9, abs=0.5)
    assert h100.compute.mma_shape == (64, 8, 32) and h100.compute.sparse_mma_shape == (64, 8, 64)
    # tiles hold the same bytes: K doubled at 1 byte per element
    assert [t[2] for t in h100.compute.cta_tiles] == [2 * t[2] for t in load_hw("h100_24").compute.cta_tiles]
    r = gemm_report(8192, 8192, 8192, "a100_24_ideal", dtype="int8", sparse="2:4")
    assert r.dtype == "int8" and r.hw == "a100_24_ideal (int8 variant)"
    assert r.dense.tflops <= 623.8 and r.sparse.tflops <= 2 * 623.8


def test_dtype_bf16_equals_fp16_and_unsupported_errors(tmp_path, capsys):
    # A100 BF16 312 TFLOP/s = FP16 (docs/sources.md "NVIDIA A100"): identical timing
    for name in ("a100_24", "a100_24_ideal"):
        f = gemm_report(1024, 2048, 4096, name, sparse="2:4")
        b = gemm_report(1024, 2048, 4096, name, dtype="bf16", sparse="2:4")
        assert b.dtype == "bf16" and (b.dense.cycles, b.sparse.cycles) == (f.dense.cycles, f.sparse.cycles)
    lib = gemm_report(256, 256, 256, "a100_24", dtype="int8")
    assert lib.fitted_on == "fp16"  # the library parameters stay the file's, fitted on fp16
    from accelsim.cli import main as cli
    assert cli(["gemm", "8", "8", "8", "--hw", "a100_24", "--dtype", "fp8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "supported: fp16, bf16, int8" in err and "\n" not in err
    # a bad compute.dtypes entry is a one-line load error
    from accelsim.errors import HardwareConfigError
    from pathlib import Path
    text = (Path(__file__).resolve().parents[1] / "hwconfigs" / "a100_24_ideal.yaml").read_text()
    for bad, needle in (("{fp16: 1, bf16: 1, int8: 0}", "whole number >= 1"), ("{fp16: 2}", "rate multiple is 1"),
                        ("{int4: 4}", "unknown data type")):
        p = tmp_path / "bad.yaml"
        p.write_text(text.replace("dtypes: {fp16: 1, bf16: 1, int8: 2}", f"dtypes: {bad}"))
        with pytest.raises(HardwareConfigError, match=needle):
            load_hw(p)
