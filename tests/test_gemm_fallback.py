"""`accelsim gemm --sparse 2:4` on shapes a GPU's 2:4 kernel cannot take: the 2:4 row is the dense
run, with the reason (no traceback). cuSPARSELt needs M, N, K multiples of 16 for fp16 (docs/sources.md
"NVIDIA A100"); N = 50 and N = 50257 (GPT-2's vocabulary) are not."""

import subprocess
import sys

import pytest

from accelsim.gemm import gemm_report


@pytest.mark.parametrize("hw", ["a100_24", "a100_24_ideal", "h100_24", "h200_24"])
@pytest.mark.parametrize("shape", [(64, 50, 64), (1, 64, 64), (3, 50, 3)])
def test_unaligned_2_4_runs_dense_and_says_why(hw, shape):
    r = gemm_report(*shape, hw, sparse="2:4")
    # M = 1, N = 50 are not multiples of 16; K = 3 has no whole group of 4
    assert r.sparse.fallback and "not a multiple of" in r.sparse.fallback
    assert r.sparse.seconds == r.dense.seconds and r.sparse.cycles == r.dense.cycles
    assert r.speedup == 1.0
    assert r.sparse.parts == r.dense.parts and r.sparse.tile == r.dense.tile


def test_gpt2_vocabulary_head_falls_back_with_the_reason():
    r = gemm_report(64, 50257, 768, "a100_24", sparse="2:4")
    assert r.speedup == 1.0
    assert "N=50257 not a multiple of 16" in r.sparse.fallback


def test_cli_prints_the_fallback_and_exits_0():
    p = subprocess.run([sys.executable, "-m", "accelsim", "gemm", "64", "50", "64", "--hw", "a100_24",
                        "--sparse", "2:4"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert "speedup 2:4 vs dense: 1.00x" in p.stdout
    assert "2:4 not used (dense rate charged): a is 2:4 but N=50 not a multiple of 16" in p.stdout
