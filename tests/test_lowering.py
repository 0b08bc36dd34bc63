"""The lowering registry (accelsim/sim/lowering.py): kind knowledge in one place, several GEMMs per
op summed into one OpResult, masks memoised without stale caches, and absurd-but-consistent
geometry refused (or run in bounded memory) before anything is allocated."""

from __future__ import annotations

import dataclasses
import re
import sys

import numpy as np
import pytest

from accelsim.errors import AccelsimError, TraceError, UnsupportedError
from accelsim.sim import kernels as K
from accelsim.sim import lowering
from accelsim.sim.workload import gemm_workload, pack_mask, synthetic_op, synthetic_workload
from accelsim.trace.format import OPERANDS, load_trace
from tiny_trace import build_raw, build_sim


def _zeros(numel: int) -> np.ndarray:  # packed bytes of an all-zero mask
    return np.zeros((numel + 7) // 8, np.uint8)


def test_registry_is_light_and_is_the_trace_formats_table():
    # importable by the trace loader without numba or simpy: a fresh interpreter imports it alone
    import subprocess

    code = ("import sys, accelsim.trace.format; "
            "print(any(m in sys.modules for m in ('numba', 'simpy', 'accelsim.sim.kernels')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    # one table: (A, B) GEMM operand order per kind and pass; the loader's OPERANDS is derived from it
    assert OPERANDS[("conv2d", "wgrad")] == ("input", "grad_output") == lowering.operand_names("conv2d", "wgrad")
    assert OPERANDS[("conv2d", "dgrad")] == ("grad_output", "weight")
    assert set(OPERANDS) == ({(k, p) for k in ("conv2d", "matmul", "bmm") for p in lowering.PASSES}
                             | {("vector", p) for p in ("fwd", "bwd", "optimizer")})
    assert OPERANDS[("vector", "bwd")] == ()  # vector work has no masked operands


def test_conv_gemms_and_out_shapes_hand():
    # ResNet 3x3 conv, C=64 -> K=128, 56x56, batch 2, pad 1: P = (56 + 2 - 2 - 1)//1 + 1 = 56
    p = lowering.conv_params(2, 64, 56, 56, 128, 3, 3, padding=1)
    geo = lowering.conv_geometry(p)
    conv = lowering.KINDS["conv2d"]
    g = {ps: conv.gemms(geo, ps) for ps in lowering.PASSES}
    assert [(x.m, x.n, x.k, x.groups) for x in g["fwd"]] == [(6272, 128, 576, 1)]
    assert [(x.m, x.n, x.k) for x in g["dgrad"]] == [(6272, 576, 128)]
    assert [(x.m, x.n, x.k) for x in g["wgrad"]] == [(576, 128, 6272)]
    # dgrad's output is dX (2*64*56*56), not the M x N dcol it scatters from
    assert g["dgrad"][0].output_numel == 2 * 64 * 56 * 56 and g["fwd"][0].output_numel == 6272 * 128
    assert conv.out_shape(geo, "wgrad") == (128, 64, 3, 3) and conv.out_shape(geo, "dgrad") == (2, 64, 56, 56)
    assert conv.describe(geo) == "N2 C64 H56 W56 K128 R3 S3 /1"
    # stride 2, 7x7, pad 3 on 224: P = (224 + 6 - 6 - 1)//2 + 1 = 112
    assert lowering.conv_out(224, 7, 2, 3, 1) == 112
    assert lowering.reduction_dim("conv2d", "dgrad") == "K (output channels)"


def test_validate_messages_are_one_line_and_name_the_problem():
    p = lowering.conv_params(1, 2, 4, 4, 2, 3, 3)
    p["output_shape"] = [1, 2, 3, 3]
    with pytest.raises(TraceError, match=r"disagrees with input .* \(expected \[1, 2, 2, 2\]\)"):
        lowering.validate("conv2d", "fwd", p, {"input": (1, 2, 4, 4), "weight": (2, 2, 3, 3)})
    with pytest.raises(TraceError, match="operands are"):
        lowering.validate("conv2d", "fwd", lowering.conv_params(1, 2, 4, 4, 2, 3, 3), {"a": (1,), "b": (1,)})
    with pytest.raises(UnsupportedError, match="no lowering"):
        lowering.validate("conv3d", "fwd", {}, {})
    with pytest.raises(UnsupportedError, match="transposed conv2d operand 'weight'"):
        lowering.validate("conv2d", "fwd", lowering.conv_params(1, 2, 4, 4, 2, 2, 2),
                          {"input": (1, 2, 4, 4), "weight": (2, 2, 2, 2)}, transposed={"weight": True})
    with pytest.raises(TraceError, match=r"out_shape \[2, 2\] should be \[2, 3\]"):
        lowering.validate("matmul", "fwd", {}, {"a": (2, 4), "b": (4, 3)}, (2, 2))


def _two_gemm_kind() -> lowering.OpKind:
    """A test kind that lowers one matmul op to the same GEMM twice (as a recomputation would)."""
    mm = lowering.KINDS["matmul"]
    return dataclasses.replace(mm, name="matmul_twice", gemms=lambda geo, ps: mm.gemms(geo, ps) * 2)


def test_an_op_of_several_gemms_sums_into_one_result(tmp_path, monkeypatch):
    from accelsim.sim.engine import simulate

    monkeypatch.setitem(lowering.KINDS, "matmul_twice", _two_gemm_kind())
    rng = np.random.default_rng(3)
    a, b = rng.random((32, 48)) < 0.5, rng.random((48, 16)) < 0.5
    tensors = [((32, 48), "activation", np.packbits(a, bitorder="little")),
               ((48, 16), "weight", np.packbits(b, bitorder="little"))]
    ops = [{"pass": "fwd", "kind": kind, "operands": [("a", 0, False), ("b", 1, False)], "out_shape": (32, 16),
            "params": {}} for kind in ("matmul", "matmul_twice")]
    res = simulate(build_raw(tmp_path / "t.npz", tensors, ops), "hwconfigs/tensordash.yaml")
    one, two = res.ops
    assert (two.kind, two.gemm, two.shape) == ("matmul_twice", (32, 16, 48), "M32 N16 K48")
    # two identical GEMMs one after another: every count doubles, the ratios stay
    assert two.dense_macs == 2 * one.dense_macs == 2 * 32 * 16 * 48
    assert two.effectual_macs == 2 * one.effectual_macs
    assert (two.total_cycles, two.dense_cycles, two.compute_cycles) == \
        (2 * one.total_cycles, 2 * one.dense_cycles, 2 * one.compute_cycles)
    assert two.dram_bytes == {k: 2 * v for k, v in one.dram_bytes.items()}
    assert two.speedup == pytest.approx(one.speedup) and two.utilisation == pytest.approx(one.utilisation)


def test_replace_and_in_place_edits_never_serve_a_stale_mask():
    # issue 9: dataclasses.replace(work, packed=..., nnz=...) kept the old mask cache (nnz 0 but
    # effectual MACs 128). a, b all ones (4x8 @ 8x4): 4*4*8 = 128 effectual MACs.
    w = synthetic_workload("matmul", "fwd", {"a": np.ones((4, 8), bool), "b": np.ones((8, 4), bool)})
    assert K.effectual_macs(w) == 128 and w.mask("a").all()
    zero = pack_mask(np.zeros((4, 8), bool))
    w0 = dataclasses.replace(w, packed={"a": zero, "b": w.packed["b"]}, nnz={"a": 0, "b": 32})
    assert K.effectual_macs(w0) == 0 and not w0.mask("a").any() and K.nm_compliance(w0, "a", 2, 4) == 1.0
    assert K.effectual_macs(w) == 128  # the original keeps its own memo
    # frozen: fields cannot be reassigned; a packed array swapped in place drops the memo
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.packed = {}
    w.packed["a"] = zero
    assert K.effectual_macs(w) == 0 and not w.mask("a").any()
    # inflated masks are read-only (shared by every kernel of the op)
    with pytest.raises(ValueError):
        w0.mask("b")[0, 0] = False


def test_each_operand_is_inflated_once_per_op(monkeypatch):
    import accelsim.sim.workload as wl

    calls = []
    real = wl.unpack_words
    monkeypatch.setattr(wl, "unpack_words", lambda words, shape: calls.append(shape) or real(words, shape))
    p = lowering.conv_params(1, 8, 6, 6, 8, 3, 3, padding=1)
    rng = np.random.default_rng(0)
    w = synthetic_workload("conv2d", "fwd", {"input": rng.random((1, 8, 6, 6)) < .5,
                                             "weight": rng.random((8, 8, 3, 3)) < .5}, p)
    K.effectual_macs(w), K.nm_compliance(w, "a", 2, 4), K.nm_compliance(w, "b", 2, 4)
    K.operand_view(w, "a", lanes=16), K.operand_view(w, "b", lanes=16)
    assert sorted(calls) == [(1, 8, 6, 6), (8, 8, 3, 3)]


def test_gemm_workload_is_a_real_op():
    w = gemm_workload(8, 4, 16)
    assert (w.m, w.n, w.k, w.groups, w.kind, w.pass_) == (8, 4, 16, 1, "matmul", "fwd")
    assert w.nnz == {"a": 128, "b": 64} and w.op.out_shape == (8, 4) and w.op.operands[1].name == "b"
    assert K.effectual_macs(w) == 8 * 4 * 16
    bm = gemm_workload(2, 3, 4, batch=5)
    assert (bm.kind, bm.groups, bm.dense_macs, bm.op.out_shape) == ("bmm", 5, 5 * 2 * 3 * 4, (5, 2, 3))
    # 70 elements: the last word holds 6 bits (0b111111)
    assert int(gemm_workload(7, 1, 10).packed["a"][-1]) == 0b111111
    with pytest.raises(ValueError, match="must be 2 uint64 words"):
        gemm_workload(7, 1, 10, packed={"a": np.zeros(1, np.uint64)})
    op = synthetic_op("conv2d", "wgrad", {"input": (1, 2, 4, 4), "grad_output": (1, 2, 2, 2)},
                      lowering.conv_params(1, 2, 4, 4, 2, 3, 3))
    assert op.out_shape == (2, 2, 3, 3) and [o.tensor for o in op.operands] == [0, 1]


# ---------------------------------------------------------------------------------------------
# absurd but consistent geometry (issue 9 section 3): a clear one-line error before allocating

def _load_error(path) -> str:
    with pytest.raises(AccelsimError) as e:
        load_trace(path)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


def test_a_1kb_trace_declaring_a_10_12_mac_matmul(tmp_path):
    m = n = 10**6  # a (10^6, 1) @ (1, 10^6): 10^12 MACs and a 10^12-element output, from ~1 KB
    path = build_raw(tmp_path / "t.npz", [((m, 1), "activation", _zeros(m)), ((1, n), "weight", _zeros(n))],
                     [{"pass": "fwd", "kind": "matmul", "operands": [("a", 0, False), ("b", 1, False)],
                       "out_shape": (m, n), "params": {}}])
    assert path.stat().st_size < 2048
    msg = _load_error(path)
    # work: 2*(2*10^6) mask bytes + 32*(2*10^6 + 1) index bytes + 10^12 output + 320 = 931 GiB
    assert "op 0 (op0 matmul fwd): M1000000 N1000000 K1: lowering needs about 931 GiB" in msg
    assert "1e+12 dense MACs" in msg and "over the 1 GiB limit (ACCELSIM_MAX_OP_BYTES)" in msg


def test_a_conv_padded_by_10_5(tmp_path):
    cp = lowering.conv_params(1, 1, 1, 1, 1, 1, 1, padding=10**5)
    assert cp["output_shape"] == [1, 1, 200001, 200001]  # (1 + 2*10^5 - 0 - 1)//1 + 1
    path = build_raw(tmp_path / "t.npz", [((1, 1, 1, 1), "activation", _zeros(1)),
                                          ((1, 1, 1, 1), "weight", _zeros(1))],
                     [{"pass": "fwd", "kind": "conv2d", "operands": [("input", 0, False), ("weight", 1, False)],
                       "out_shape": cp["output_shape"], "params": cp}])
    msg = _load_error(path)
    assert "op 0 (op0 conv2d fwd): N1 C1 H1 W1 K1 R1 S1 /1: lowering needs about 1.2" in msg and "TiB" in msg


def test_a_bmm_of_batch_10_7_is_refused_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    b = 10**7
    path = build_raw(tmp_path / "t.npz", [((b, 1, 1), "activation", _zeros(b)), ((b, 1, 1), "weight", _zeros(b))],
                     [{"pass": "fwd", "kind": "bmm", "operands": [("a", 0, False), ("b", 1, False)],
                       "out_shape": (b, 1, 1), "params": {}}])
    # 2*2*10^7 mask bytes + 32*10^7*3 index bytes + 10^7 output bytes + 320*10^7 = 4.21e9 B = 3.92 GiB
    est = lowering.KINDS["bmm"].estimate(lowering.MatmulGeometry(b, 1, 1, 1, True), "fwd", {"a": b, "b": b})
    assert est.work_bytes == 4 * b + 96 * b + b + 320 * b
    assert "B10000000 M1 N1 K1: lowering needs about 3.92 GiB" in _load_error(path)  # default 1 GiB
    monkeypatch.setenv("ACCELSIM_MAX_OP_BYTES", str(5 << 30))
    assert len(load_trace(path).ops) == 1
    monkeypatch.setenv("ACCELSIM_MAX_OP_BYTES", "lots")
    assert "ACCELSIM_MAX_OP_BYTES must be an integer" in _load_error(path)


def test_k_0_with_m_n_2_62_and_c_0(tmp_path):
    big = 1 << 62  # a (2^62, 0) @ (0, 2^62): no mask bits at all, a 2^124-element output
    path = build_raw(tmp_path / "k0.npz", [((big, 0), "activation", _zeros(0)), ((0, big), "weight", _zeros(0))],
                     [{"pass": "fwd", "kind": "matmul", "operands": [("a", 0, False), ("b", 1, False)],
                       "out_shape": (big, big), "params": {}}])
    assert f"N={big}, K=0, groups=1): nothing to simulate" in _load_error(path)
    cp = lowering.conv_params(1, 0, 4, 4, 2, 3, 3)  # no input channels: K = R*S*C = 0
    path = build_raw(tmp_path / "c0.npz", [((1, 0, 4, 4), "activation", _zeros(0)),
                                           ((2, 0, 3, 3), "weight", _zeros(0))],
                     [{"pass": "fwd", "kind": "conv2d", "operands": [("input", 0, False), ("weight", 1, False)],
                       "out_shape": cp["output_shape"], "params": cp}])
    assert "N1 C0 H4 W4 K2 R3 S3 /1: its fwd GEMM has an empty dimension (M=4, N=2, K=0" in _load_error(path)
    # counts past int64 are refused by name even when memory would not be the first limit
    geo = lowering.MatmulGeometry(1, 1, 1, big, False)
    with pytest.raises(UnsupportedError, match=r"reaches 4.61e\+18 \(limit 2\*\*62"):
        lowering.check_limits(lowering.KINDS["matmul"], geo, "fwd", {"a": 0, "b": 0})


def test_shipped_shaped_trace_is_far_below_the_limit(tmp_path):
    tr = load_trace(build_sim(tmp_path / "s.npz"))
    for op in tr.ops:
        used = {o.name: lowering.used_shape(tr.tensors[o.tensor].shape, o.transposed) for o in op.operands}
        geo = lowering.validate(op.kind, op.pass_, op.params, used, op.out_shape)
        est = lowering.check_limits(lowering.KINDS[op.kind], geo, op.pass_,
                                    {nm: int(np.prod(s)) for nm, s in used.items()})
        assert est.work_bytes < 1 << 20


# ---------------------------------------------------------------------------------------------- vector (v2)

def _vec(**over):
    p = {"op": "aten.native_layer_norm.default", "class": "normalisation", "elements": 4096,
         "bytes_read": 16384 + 512, "bytes_written": 16384, "dtype": "float32", "kernels": 1,
         "sparsify": False, "dedicated": None}
    p.update(over)
    return p


def test_vector_kind_has_no_gemms_and_checks_its_params():
    geo = lowering.validate("vector", "bwd", _vec(), {}, (4096,))
    assert lowering.lower_geometry("vector", "bwd", geo) == []
    assert (geo.cls, geo.elements, geo.bytes_read, geo.bytes_written, geo.kernels) == ("normalisation", 4096,
                                                                                       16896, 16384, 1)
    assert lowering.op_kind("vector").describe(geo).startswith("normalisation aten.native_layer_norm.default")
    est = lowering.check_limits(lowering.KINDS["vector"], geo, "bwd", {})
    assert (est.macs, est.work_bytes) == (0, 0)  # costed from its counts: nothing is lowered
    for p in ("fwd", "bwd", "optimizer"):
        assert lowering.operand_names("vector", p) == ()
    geo = lowering.validate("vector", "optimizer", _vec(**{"class": "compress", "sparsify": True,
                                                           "dedicated": "compress_2_4", "kernels": 3}), {})
    assert geo.dedicated == "compress_2_4" and geo.sparsify and geo.kernels == 3
    bad = [({"class": "magic"}, "class 'magic' is not one of"), ({"kernels": 0}, "kernels must be >= 1"),
           ({"dedicated": "fft"}, "dedicated 'fft' is not null or one of"), ({"elements": -1}, "elements must be >= 0"),
           ({"sparsify": 1}, "sparsify must be true or false"), ({"extra": 1}, "unknown field(s) extra")]
    for over, msg in bad:
        with pytest.raises(TraceError, match=re.escape(msg)):
            lowering.validate("vector", "fwd", _vec(**over), {})
    with pytest.raises(TraceError, match="params lacks bytes_read"):
        lowering.validate("vector", "fwd", {k: v for k, v in _vec().items() if k != "bytes_read"}, {})
    with pytest.raises(TraceError, match=r"out_shape \[5\] should be \[4096\]"):
        lowering.validate("vector", "fwd", _vec(), {}, (5,))
    with pytest.raises(UnsupportedError, match="vector pass 'dgrad' is not one of fwd, bwd, optimizer"):
        lowering.validate("vector", "dgrad", _vec(), {})


def test_common_params_attention_and_recompute():
    att = {"role": "qk", "mask": "causal", "structural": True, "dropout_p": 0.1, "backend": "flash"}
    geo = lowering.validate("bmm", "fwd", {"attention": att, "recompute": True}, {"a": (4, 8, 16), "b": (4, 16, 8)})
    assert (geo.batch, geo.m, geo.n, geo.k) == (4, 8, 8, 16)
    conv = lowering.conv_params(1, 3, 8, 8, 4, 3, 3)
    lowering.validate("conv2d", "fwd", {**conv, "recompute": True}, {"input": (1, 3, 8, 8), "weight": (4, 3, 3, 3)})
    lowering.validate("vector", "fwd", {**_vec(), "recompute": True}, {})
    with pytest.raises(TraceError, match="field 'attention' is not allowed on a matmul op"):
        lowering.validate("matmul", "fwd", {"attention": att}, {"a": (8, 16), "b": (16, 8)})
    with pytest.raises(TraceError, match="recompute must be true"):
        lowering.validate("matmul", "fwd", {"recompute": False}, {"a": (8, 16), "b": (16, 8)})
    for over, msg in [({"role": "qv"}, "attention role 'qv'"), ({"mask": "tri"}, "attention mask 'tri'"),
                      ({"dropout_p": 1.5}, "dropout_p must be a number in [0, 1]"),
                      ({"structural": "yes"}, "structural must be true or false")]:
        with pytest.raises(TraceError, match=re.escape(msg)):
            lowering.validate("bmm", "fwd", {"attention": {**att, **over}}, {"a": (4, 8, 16), "b": (4, 16, 8)})
