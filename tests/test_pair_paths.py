"""The sparse-PE family's per-run plan (sparse_pe.plan): the two-sided pair-count path is chosen
once from the whole trace's shapes and densities, and both paths give the same results."""

from __future__ import annotations

from pathlib import Path

import pytest

from accelsim.hw import load_hw
from accelsim.sim import engine, kernels, sparse_pe
from accelsim.sim.workload import lower_op
from accelsim.trace.format import load_trace

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "traces" / "transformer_block_srste_2of4.npz"  # 3.2 GMACs two-sided: seconds on either path


def test_pair_blas_macs_is_the_crossover_of_the_stated_costs():
    # without a compile cost the rule is the plain break-even of BLAS c_b*T against numba's load L
    # plus the kernel's c_k*T: T* = L / (c_b - c_k) = 0.26 s / 22 ps = 11.818... GMACs
    assert abs(kernels._pair_crossover(28, 6, 0.26, 0.0) - 11_818_181_818) <= 1
    # 3 T^2 - 2 T - 1 = 0 for b = 2, k = 1, L = 1, C = 0 ... and with C = 1: 3 T^2 - 3 T - 2 = 0
    assert kernels._pair_crossover(2, 1, 1.0, 0.0) == 10**12
    assert abs(kernels._pair_crossover(2, 1, 1.0, 1.0) - (3 + 33 ** 0.5) / 6 * 1e12) <= 1
    # the stated costs (28 and 6 ps/MAC, 0.26 s load, 1.8 s compile): lin = 6 * 2.32 = 13.92,
    # disc = 13.92^2 + 4 * 748 * 0.26 * 2.06 = 1796.2816, T = (13.92 + 42.3826...) / 1496
    assert kernels.PAIR_BLAS_MACS == 37_635_402_708
    t, b, k = kernels.PAIR_BLAS_MACS * 1e-12, kernels.PAIR_BLAS_PS_PER_MAC, kernels.PAIR_KERNEL_PS_PER_MAC
    load, comp = kernels.NUMBA_LOAD_SECONDS, kernels.PAIR_COMPILE_SECONDS
    # there the two worst-case ratios meet: the product on a filled cache, the kernel on an empty one
    assert abs(b * t / (load + k * t) - (load + comp + k * t) / (b * t)) < 1e-6


def test_pair_native_blas_macs_is_the_crossover_of_the_native_costs():
    # the shipped machine code's fixed cost: load L = 0.07 s, generate C = 0.11 s more when its cache is
    # empty: lin = 6 * (0.14 + 0.11) = 1.5, disc = 1.5^2 + 4 * 748 * 0.07 * 0.18 = 39.9492,
    # T = (1.5 + 6.32053...) / 1496 = 5.2276 GMACs
    assert abs(kernels.PAIR_NATIVE_BLAS_MACS - (1.5 + 39.9492 ** 0.5) / 1496 * 1e12) <= 1
    assert 5.2e9 < kernels.PAIR_NATIVE_BLAS_MACS < 5.25e9


def test_pair_blas_wins_below_the_crossover_of_the_kernel_path_this_process_would_load(monkeypatch):
    monkeypatch.setattr(kernels, "_kernel_paid", lambda: False)
    monkeypatch.setattr(kernels.native, "available", lambda k: False)  # numba's JIT
    assert kernels.pair_blas_wins(kernels.PAIR_BLAS_MACS)
    assert not kernels.pair_blas_wins(kernels.PAIR_BLAS_MACS + 1)
    monkeypatch.setattr(kernels.native, "available", lambda k: k is kernels._PAIR_KERNEL.native)  # shipped code
    assert kernels.pair_blas_wins(kernels.PAIR_NATIVE_BLAS_MACS)
    assert not kernels.pair_blas_wins(kernels.PAIR_NATIVE_BLAS_MACS + 1)
    monkeypatch.setattr(kernels, "_kernel_paid", lambda: True)  # either loaded already: never the product
    assert not kernels.pair_blas_wins(0)


def test_the_kernel_is_paid_once_its_machine_code_or_numba_is_loaded(monkeypatch):
    monkeypatch.setattr(kernels, "_numba_loaded", lambda: False)
    monkeypatch.setattr(kernels._PAIR_KERNEL, "_machine", kernels._UNTRIED)
    assert not kernels._kernel_paid()
    monkeypatch.setattr(kernels._PAIR_KERNEL, "_machine", None)  # tried, no machine code: numba to come
    assert not kernels._kernel_paid()
    monkeypatch.setattr(kernels._PAIR_KERNEL, "_machine", object())
    assert kernels._kernel_paid()
    monkeypatch.setattr(kernels._PAIR_KERNEL, "_machine", kernels._UNTRIED)
    monkeypatch.setattr(kernels, "_numba_loaded", lambda: True)
    assert kernels._kernel_paid()


def test_pair_blas_fits_its_caps():
    assert kernels.pair_blas_fits(1, 4, 2, 3)
    assert not kernels.pair_blas_fits(1, 4, 2, 1 << 24)  # float32 sums of 0/1 stop being exact
    cap = kernels.PAIR_MATRIX_CAP
    assert kernels.pair_blas_fits(2, cap // 8, 7, 4) and not kernels.pair_blas_fits(2, cap // 8 + 1, 7, 4)


def test_plan_counts_the_two_sided_macs_from_shapes_and_densities(monkeypatch):
    # the plan reads no mask; its MACs must be the lowered workloads' dense MACs of every GEMM
    # with a sparse operand (a both-dense GEMM runs at the dense rate, no pairs counted)
    monkeypatch.setattr(kernels, "_kernel_paid", lambda: False)
    monkeypatch.setattr(kernels.native, "available", lambda k: False)  # the limit is PAIR_BLAS_MACS
    hw = load_hw("sparten_like")
    with load_trace(TRACE) as tr:
        want = sum(w.dense_macs for op in tr.ops if op.operands for w in lower_op(tr, op)
                   if min(w.density(w.a), w.density(w.b)) < 1.0)
        dense = sum(w.dense_macs for op in tr.ops if op.operands for w in lower_op(tr, op))
        got = sparse_pe.plan(tr, hw)
    assert 0 < want < dense  # the trace has both kinds of GEMM
    assert got == sparse_pe.Plan(pair_blas=True, pair_macs=want)
    monkeypatch.setattr(kernels, "PAIR_BLAS_MACS", want - 1)
    with load_trace(TRACE) as tr:
        assert sparse_pe.plan(tr, hw) == sparse_pe.Plan(pair_blas=False, pair_macs=want)
    monkeypatch.setattr(kernels, "PAIR_BLAS_MACS", want)
    monkeypatch.setattr(kernels, "PAIR_MATRIX_CAP", 0)  # one GEMM past the product's cap: kernel for all
    with load_trace(TRACE) as tr:
        assert not sparse_pe.plan(tr, hw).pair_blas


def test_plan_is_none_on_a_one_sided_machine():
    with load_trace(TRACE) as tr:
        assert sparse_pe.plan(tr, load_hw("tensordash")) is None


@pytest.mark.parametrize("blas", [True, False])
def test_simulate_passes_the_plan_and_both_paths_give_the_same_result(blas, monkeypatch):
    hw = load_hw("sparten_like")
    seen = []
    real = kernels.pair_group_cycles

    def spy(work, gm, gn, lanes, *, blas=None):
        seen.append(blas)
        return real(work, gm, gn, lanes, blas=blas)

    monkeypatch.setattr(kernels, "pair_group_cycles", spy)
    monkeypatch.setattr(sparse_pe, "plan", lambda trace, hw: sparse_pe.Plan(pair_blas=blas, pair_macs=0))
    got = engine.simulate(TRACE, hw).to_dict()
    assert seen and set(seen) == {blas}
    monkeypatch.setattr(sparse_pe, "plan", lambda trace, hw: sparse_pe.Plan(pair_blas=not blas, pair_macs=0))
    assert engine.simulate(TRACE, hw).to_dict() == got


def _conv_work():
    import numpy as np

    from accelsim.sim.workload import conv_params, synthetic_workload

    rng = np.random.default_rng(3)
    p = conv_params(2, 12, 7, 7, 10, 3, 3, stride=1, padding=1)
    return synthetic_workload("conv2d", "fwd", {"input": rng.random((2, 12, 7, 7)) < 0.4,
                                                "weight": rng.random((10, 12, 3, 3)) < 0.3}, p)


def test_the_kernels_pair_count_is_the_effectual_macs_and_is_checked_against_the_factor_counts():
    work = _conv_work()
    _, eff = kernels._pair_group_kernel(work, 4, 3, 2)
    assert "factors" not in work.memo()  # no factor counts needed: effectual_macs reads the kernel's
    assert kernels.effectual_macs(work) == eff
    fresh = _conv_work()
    assert kernels.effectual_macs(fresh) == eff  # the factorised count of the same masks
    fresh.memo()["effectual"] = eff + 1  # a disagreeing count already known: the kernel refuses it
    with pytest.raises(AssertionError, match="disagrees"):
        kernels._pair_group_kernel(fresh, 4, 3, 2)
