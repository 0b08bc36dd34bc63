"""The whole training step: vector (non-GEMM) work per family (accelsim/sim/vector.py), the vector-unit
schema (accelsim/hw/families/vector_unit.py), causal attention block skipping on the GPU family,
the step totals of SimResult and the report (issue 10 §2-3). Every cost here is hand-worked."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import yaml

from accelsim.errors import HardwareConfigError
from accelsim.hw import load_hw
from accelsim.hw.catalog import resolve
from accelsim.hw.loader import parse_hw
from accelsim.sim import engine
from accelsim.sim.result import OpResult, SimResult
from accelsim.sim.vector import compress_2_4_bytes, vector_cost
from accelsim.trace.format import OpRecord
from tiny_trace import MiB, build_unrecorded_attention, build_v2_step, vparams

# a100_24.yaml: 1.41 GHz, L2 40 MB at 5120 B/cycle, HBM 1555 GB/s, launch_overhead 4 us, fp16
A100_LAUNCH = math.ceil(4e-6 * 1.41e9)  # 5640 cycles per kernel (gpu.launch_cycles)




def vop(params: dict, *, op_id=0, pass_="fwd", layer="x") -> OpRecord:
    return OpRecord(id=op_id, step=0, seq=op_id, pass_=pass_, kind="vector", layer=layer, module_type="",
                    aten=params["op"], operands=(), out_shape=(params["elements"],), params=params)


def geo(params: dict):
    from accelsim.sim.lowering import op_kind

    return op_kind("vector").check(params, {}, "fwd")


def yaml_of(name: str) -> dict:
    return yaml.safe_load(resolve(name).read_text())


# ---------------------------------------------------------------------------------------------- GPU


def test_gpu_elementwise_hand_worked():
    hw = load_hw("a100_24")
    # z = x + y over 2^20 fp32 elements as recorded: 8 MiB read, 4 MiB written. The machine runs the
    # step in fp16 (data-type rule): 4 MiB + 2 MiB = 6,291,456 B, which fits the 40 MB L2, so it moves
    # at 5120 B/cycle: 6291456 / 5120 = 1228.8 -> 1229 cycles, plus one launch (5640) = 6869.
    p = vparams(elements=1 << 20, read=8 * MiB, written=4 * MiB)
    c = vector_cost(geo(p), hw, sparse=True)
    assert (c.cycles, c.fixed_cycles, c.level) == (1229, A100_LAUNCH, "l2")
    res, ev = engine.simulate_vector(vop(p), hw, timeline=True, start=100)
    assert (res.total_cycles, res.dense_cycles, res.dense_macs, res.kind) == (1229 + 5640, 1229 + 5640, 0, "vector")
    assert res.speedup == 1.0 and res.vector_bytes == 6 * MiB and res.dram_bytes == {}
    assert [(e.resource, e.start, e.end) for e in ev] == [("vector", 100, 1329), ("launch", 1329, 6969)]
    # 2^25 fp16 elements, two inputs: 128 MiB read + 64 MiB written = 201,326,592 B > 40 MB of L2:
    # HBM, 201326592 * 1.41e9 / 1.555e12 = 182553.4 -> 182554 cycles + 5640, and the bytes are DRAM bytes
    big = vparams(elements=1 << 25, read=128 * MiB, written=64 * MiB, dtype="float16")
    res, _ = engine.simulate_vector(vop(big), hw)
    assert res.total_cycles == 182554 + 5640 and res.dram_bytes == {"read": 128 * MiB, "written": 64 * MiB}
    # merged identical kernels: 3 kernels -> 3 launches; the L2 rule applies per kernel (64 MiB each > 40 MB)
    res, _ = engine.simulate_vector(vop(dict(big, kernels=3)), hw)
    assert res.total_cycles == 182554 + 3 * 5640


def test_gpu_2_4_compression_hand_worked_and_absent_on_dense_run():
    hw = load_hw("a100_24")
    # the PyTorch blog's case: a 4096 x 1024 fp16 weight compressed to 2:4. Read the dense tensor
    # (4194304 * 2 = 8,388,608 B), write half the values (4,194,304 B) + a 2-bit index per kept value
    # (2097152 * 2 / 8 = 524,288 B): 13,107,200 B in all, fits L2: 13107200 / 5120 = 2560 cycles + 5640.
    e = 4096 * 1024
    assert compress_2_4_bytes(e, 2, 2) == (8388608, 4194304 + 524288)
    p = vparams("compress", elements=e, read=2 * e * 2, written=2 * e, sparsify=True, dedicated="compress_2_4",
                op="accelsim.compress_2_4")  # the recorded bytes are not used: each machine charges its own
    res, ev = engine.simulate_vector(vop(p), hw, timeline=True)
    assert (res.total_cycles, res.compute_cycles) == (2560 + 5640, 2560)
    assert res.dense_cycles == 0 and res.sparsify and res.vector_class == "compress"  # no such work when dense
    assert [e.resource for e in ev] == ["sparsify", "launch"]
    # a machine without N:M support never uses compressed 2:4 operands: it costs nothing there
    c = vector_cost(geo(p), load_hw("tensordash"), sparse=True)
    assert c.total_cycles == 0 and "no N:M support" in c.note


def test_topk_is_a_radix_select():
    hw = load_hw("a100_24")
    # top-k (k = 2^18) of 2^20 fp32 values as recorded: 4 MiB read, 2^18 * (4 + 8) = 3 MiB written
    # (values + int64 indices). fp16 on the machine: 2 MiB read, 1.5 MiB written. A 16-bit key is 2
    # radix digits of 8 bits (PyTorch mbtopk): 2 histogram passes + 1 gather pass read the input 3
    # times (6 MiB) and write once: 7,864,320 B over 3 kernels (2.5 MiB each, in L2): 1536 cycles + 3 launches.
    p = vparams("topk", elements=1 << 20, read=4 * MiB, written=3 * MiB, sparsify=True, op="aten.topk.default")
    c = vector_cost(geo(p), hw, sparse=True)
    assert (c.traffic.bytes_read, c.traffic.bytes_written, c.traffic.kernels) == (6 * MiB, 3 * MiB // 2, 3)
    assert (c.cycles, c.fixed_cycles) == (1536, 3 * A100_LAUNCH)
    assert vector_cost(geo(p), hw.dense(), sparse=False).total_cycles == 0
    # a fused top-k (a dedicated kernel): one read, one write, one launch
    f = vector_cost(geo(dict(p, dedicated="topk_fused")), hw, sparse=True)
    assert (f.traffic.bytes, f.fixed_cycles) == (2 * MiB + 3 * MiB // 2, A100_LAUNCH)
    # the optimizer keeps fp32 bytes (mixed precision: fp32 master weights and state)
    o = vector_cost(geo(vparams("optimizer", elements=1 << 20, read=12 * MiB, written=8 * MiB)), hw, sparse=True)
    assert o.traffic.bytes == 20 * MiB


# ---------------------------------------------------------------------------- systolic vector unit


def test_systolic_vector_unit_hand_worked(tmp_path):
    # systolic_32x32_ws: 1 GHz, int8 (1 B), DRAM 10 words/cycle of 1 B, vector unit 32 lanes.
    # 4096 fp32 elements, x + y: 32768 B read + 16384 B written as recorded -> int8: 8192 + 4096 =
    # 12288 B: 12288 / 10 = 1228.8 -> 1229 DRAM cycles; lanes: 4096 / 32 = 128 cycles; the slower: 1229.
    hw = load_hw("systolic_32x32_ws")
    p = vparams(elements=4096, read=32768, written=16384)
    c = vector_cost(geo(p), hw, sparse=True)
    assert (c.cycles, c.fixed_cycles, c.level) == (1229, 0, "dram")
    d = yaml_of("systolic_32x32_ws")
    # a unit at 250 MHz on a 1 GHz machine with a wide DRAM: 128 of its cycles = 512 machine cycles,
    # the DRAM at 1000 B/cycle takes 13; launch 1 us = 1000 cycles per kernel
    d["memory"][-1]["bandwidth"] = "1000 words/cycle"
    d["compute"]["vector"] = {"kind": "unit", "lanes": 32, "clock": "250 MHz", "launch": "1 us"}
    c = vector_cost(geo(p), parse_hw(d, "x.yaml"), sparse=True)
    assert (c.cycles, c.fixed_cycles) == (512, 1000)
    # host: 12288 B over a 16 GB/s link = 768 ns = 768 cycles, plus a 10 us dispatch
    d["compute"]["vector"] = {"kind": "host", "bandwidth": "16 GB/s", "launch": "10 us"}
    c = vector_cost(geo(p), parse_hw(d, "x.yaml"), sparse=True)
    assert (c.cycles, c.fixed_cycles, c.level) == (768, 10000, "host")
    # a file without a vector unit: nothing runs the op -- not simulated, never silently free
    del d["compute"]["vector"]
    res, _ = engine.simulate_vector(vop(p), parse_hw(d, "x.yaml"))
    assert res.total_cycles == 0 and "declares no vector unit" in res.not_simulated and res.vector_bytes == 12288


@pytest.mark.parametrize("vector, err", [
    ({"kind": "unit"}, r"compute.vector.lanes: missing required key"),
    ({"kind": "unit", "lanes": 0}, r"compute.vector.lanes: must be >= 1, got 0"),
    ({"kind": "unit", "lanes": 8, "bandwidth": "1 GB/s"}, r"compute.vector.bandwidth: not a key of a unit vector unit"),
    ({"kind": "host", "lanes": 8, "bandwidth": "1 GB/s"}, r"compute.vector.lanes: not a key of a host vector unit"),
    ({"kind": "host"}, r"compute.vector.bandwidth: missing required key"),
    ({"kind": "host", "bandwidth": "4 bytes/cycle"}, r"compute.vector.bandwidth: a host's bandwidth is not in machine cycles"),
    ({"kind": "host", "bandwidth": "0 GB/s"}, r"compute.vector.bandwidth: "),
    ({"kind": "unit", "lanes": 8, "launch": "-1 us"}, r"compute.vector.launch: must be >= 0"),
    ({"kind": "gpu"}, r"compute.vector.kind: 'gpu' is not one of unit, host"),
    ({"kind": "unit", "lanes": 8, "lane": 3}, r"compute.vector.lane: unknown key \(valid: kind, lanes, clock"),
    ([8], r"compute.vector: expected a mapping"),
])
def test_vector_unit_schema_errors_are_one_line(vector, err):
    d = yaml_of("tensordash")
    d["compute"]["vector"] = vector
    with pytest.raises(HardwareConfigError, match=err) as e:
        parse_hw(d, "x.yaml")
    assert "\n" not in str(e.value) and str(e.value).startswith("x.yaml: ")


def test_every_shipped_systolic_and_sparse_pe_file_declares_a_vector_unit():
    from accelsim.hw.catalog import shipped

    for name in shipped():
        hw = load_hw(name)
        if hw.family != "gpu":
            assert hw.compute.vector is not None and hw.compute.vector.lanes >= 1, name
            assert hw.dense().compute.vector == hw.compute.vector  # the baseline keeps it


# ------------------------------------------------------------------------------------ attention


def _attention(work, role: str, mask: str = "causal"):
    att = {"role": role, "mask": mask, "structural": mask == "causal", "dropout_p": 0.0, "backend": "flash"}
    return dataclasses.replace(work, op=dataclasses.replace(work.op, params={"attention": att}))


def test_gpu_causal_attention_skips_blocks_above_the_diagonal():
    from accelsim.sim.workload import gemm_workload

    hw = load_hw("a100_24")
    b, L, d = 8, 512, 64
    # T = 512 / 128 = 4 blocks a side; a flash kernel visits T(T+1)/2 = 10 of 16: the key axis shrinks
    # to ceil(512 * 5 / 8) = 320 -- N of S = Q K^T (qk), K of O = P V (pv)
    qk = _attention(gemm_workload(L, L, d, batch=b), "qk")
    pv = _attention(gemm_workload(L, d, L, batch=b), "pv")
    sq, sp = engine.causal_skip(qk, hw), engine.causal_skip(pv, hw)
    assert (sq.m, sq.n, sq.k, sq.groups) == (512, 320, 64, 8) and (sp.m, sp.n, sp.k) == (512, 64, 320)
    assert engine.causal_skip(_attention(qk, "qk", "none"), hw) is None  # no mask: no skipping
    assert engine.causal_skip(qk, load_hw("tensordash")) is None  # sparse-PE: its own zero skipping
    # simulate() times the skipped GEMM but keeps the op's dense MACs (what FlopCounterMode counts)
    full, _ = engine.simulate_op(qk, hw)
    cut, _ = engine.simulate_op(sq, hw)
    res = engine._causal_result(qk, cut)
    assert res.dense_macs == b * L * L * d and res.total_cycles == cut.total_cycles < full.total_cycles
    assert res.effectual_macs == b * L * 320 * d and res.shape.endswith("causal")


def test_sparse_pe_skips_the_recorded_causal_zeros():
    from accelsim.sim.workload import synthetic_workload

    hw = load_hw("tensordash")
    b, L, d = 4, 256, 64
    p = np.broadcast_to(np.tril(np.ones((L, L), dtype=bool)), (b, L, L)).copy()  # causal P
    v = np.ones((b, L, d), dtype=bool)
    w = synthetic_workload("bmm", "fwd", {"a": p, "b": v})
    res, _ = engine.simulate_op(w, hw)
    # effectual MACs: row i of P holds i + 1 keys: b * d * L(L+1)/2 of b * d * L^2
    assert res.effectual_macs == b * d * L * (L + 1) // 2 and res.dense_macs == b * L * L * d
    assert res.compute_cycles < res.dense_compute_cycles  # the zeros above the diagonal are skipped


# ------------------------------------------------------------------------------------ step totals


def _gemm_result(op_id, pass_, cycles, dense) -> OpResult:
    return OpResult(op_id=op_id, step=0, layer="l", pass_=pass_, kind="matmul", shape="", gemm=(1, 1, 1),
                    dense_macs=100, effectual_macs=50, compute_cycles=cycles, stall_cycles=0,
                    total_cycles=cycles, dense_cycles=dense, speedup=dense / cycles, utilisation=0.5,
                    sparse_operand="a", dram_bytes={}, dram_bytes_dense={}, fallback=None)


def _vec_result(op_id, pass_, cycles, sparsify) -> OpResult:
    return OpResult(op_id=op_id, step=0, layer="l", pass_=pass_, kind="vector", shape="", gemm=(0, 0, 0),
                    dense_macs=0, effectual_macs=0, compute_cycles=cycles, stall_cycles=0, total_cycles=cycles,
                    dense_cycles=0 if sparsify else cycles, speedup=1.0, utilisation=0.0, sparse_operand=None,
                    dram_bytes={}, dram_bytes_dense={}, fallback=None, sparsify=sparsify, vector_class="elementwise")


def test_step_totals_by_hand():
    ops = [_gemm_result(0, "fwd", 100, 200), _gemm_result(1, "dgrad", 50, 100), _vec_result(2, "fwd", 30, False),
           _vec_result(3, "bwd", 20, False), _vec_result(4, "optimizer", 10, True)]
    r = SimResult("m", "", "", 1e9, ops, not_simulated=[{"what": "x", "pass": "bwd", "ops": 2, "macs": 0, "bytes": 64}])
    t = r.totals()
    assert list(t) == ["fwd", "dgrad", "wgrad", "bwd", "optimizer", "all"]
    a = t["all"]
    # GEMM keys keep their meaning: 150 cycles, 300 dense, speedup 2.0, 2 ops
    assert (a["total_cycles"], a["dense_cycles"], a["speedup"], a["ops"], a["dense_macs"]) == (150, 300, 2.0, 2, 200)
    # step: 150 GEMM + 50 vector + 10 sparsify = 210; dense step 300 + 50 = 350 (no sparsify work there)
    assert (a["gemm_cycles"], a["vector_cycles"], a["sparsify_cycles"], a["step_cycles"]) == (150, 50, 10, 210)
    assert a["step_dense_cycles"] == 350 and a["step_speedup"] == pytest.approx(350 / 210)
    assert a["step_speedup"] < a["speedup"]
    assert a["step_seconds"] == pytest.approx(210e-9) and a["vector_ops"] == 3
    assert t["bwd"]["ops"] == 0 and t["bwd"]["vector_cycles"] == 20 and t["bwd"]["step_speedup"] == 1.0
    assert t["bwd"]["not_simulated"] == {"ops": 2, "macs": 0, "bytes": 64} == a["not_simulated"]
    assert t["fwd"]["not_simulated"]["ops"] == 0


@pytest.mark.parametrize("seed", range(20))
def test_whole_step_speedup_never_above_gemm_speedup(seed):
    # (D + V) / (S + V + Z) <= D / S whenever D >= S (a GEMM speedup of at least 1): adding the same
    # vector work V to both and sparsify work Z >= 0 to the sparse run only pulls the ratio toward 1
    rng = np.random.default_rng(seed)
    ops = []
    for i in range(8):
        s = int(rng.integers(1, 1000))
        ops.append(_gemm_result(i, "fwd", s, s + int(rng.integers(0, 1000))))
        ops.append(_vec_result(100 + i, "fwd", int(rng.integers(0, 500)), bool(rng.integers(0, 2))))
    a = SimResult("m", "", "", 1e9, ops).totals()["all"]
    assert a["speedup"] >= 1.0 and a["step_speedup"] <= a["speedup"]


def test_v1_trace_step_equals_gemm(tmp_path):
    from tests.tiny_trace import build_sim

    path = tmp_path / "t.npz"
    build_sim(path)
    for name in ("a100_24", "tensordash", "systolic_128_nm"):
        r = engine.simulate(path, load_hw(name))
        for key, t in r.totals().items():
            assert t["step_cycles"] == t["total_cycles"] == t["gemm_cycles"], (name, key)
            assert t["step_dense_cycles"] == t["dense_cycles"] and t["step_speedup"] == t["speedup"]
            assert t["step_seconds"] == t["seconds"] and t["vector_cycles"] == t["sparsify_cycles"] == 0
            assert t["not_simulated"] == {"ops": 0, "macs": 0, "bytes": 0}
        assert list(r.totals()) == ["fwd", "dgrad", "wgrad", "all"]


def test_simulate_dispatches_vector_ops_and_collects_what_was_not_simulated(tmp_path):
    from accelsim.trace.format import load_trace
    from tests.tiny_trace import build_sim

    path = tmp_path / "t.npz"
    build_sim(path)
    d = yaml_of("systolic_32x32_ws")
    del d["compute"]["vector"]
    bare = parse_hw(d, "bare.yaml")
    with load_trace(path) as tr:
        n = len(tr.ops)
        tr.ops.append(vop(vparams(elements=4096, read=32768, written=16384), op_id=n, pass_="bwd"))
        tr.ops.append(vop(vparams("topk", elements=4096, read=16384, written=16384, sparsify=True,
                                  op="aten.topk.default"), op_id=n + 1, pass_="optimizer"))
        tr.header.setdefault("meta", {})["unrecorded_ops"] = {"aten._foo.default": 3}
        with_unit = engine.simulate(tr, load_hw("systolic_32x32_ws"), timeline=True)
        without = engine.simulate(tr, bare)
    t = with_unit.totals()
    # bwd: the 1229-cycle add of test_systolic_vector_unit_hand_worked; optimizer: the top-k (int8 keys:
    # 1 digit + gather = 2 reads of 4096 B, 4096 B written: 12288 B / 10 = 1229 DRAM cycles; lanes
    # 2 * 4096 / 32 = 256) -- sparsify work, so 0 on the dense run
    assert t["bwd"]["vector_cycles"] == 1229 and t["optimizer"]["sparsify_cycles"] == 1229
    assert t["all"]["step_cycles"] == t["all"]["gemm_cycles"] + 2 * 1229
    assert t["all"]["step_dense_cycles"] == t["all"]["dense_cycles"] + 1229
    assert {e.resource for e in with_unit.timeline} >= {"vector", "sparsify", "compute"}
    assert with_unit.not_simulated == [{"what": "aten._foo.default", "pass": "", "ops": 3, "macs": 0, "bytes": 0,
                                        "why": "not recorded"}]
    miss = without.totals()["all"]["not_simulated"]
    assert miss == {"ops": 3 + 2, "macs": 0, "bytes": 12288 + 12288}
    from accelsim.report.table import coverage_line, not_simulated_lines, step_table

    lines = not_simulated_lines(without)
    assert lines[0] == "aten._foo.default: 3 ops, size unknown not simulated (not recorded)"
    assert lines[1:] == [f"vector work ({p}): 1 op, 12.00 KiB not simulated (systolic_32x32_ws declares no vector "
                         f"unit (compute.vector))" for p in ("bwd", "optimizer")]
    table = step_table(with_unit)
    assert "step speedup" in table and "optimizer" in table and "bwd" in table
    assert "not simulated: 5 ops" in coverage_line(without)


def test_not_simulated_from_the_header():
    class FakeTrace:  # not_simulated_items reads only the header
        header = {"meta": {
            "coverage": {
                "aten.mm.default": {"seen": 4, "recorded": 4, "as": "gemm"},
                "aten.view.default": {"seen": 9, "recorded": 0, "as": "none"},    # views cost nothing
                "aten.add.Tensor": {"seen": 3, "recorded": 1, "as": "vector"},    # 2 calls lost
                "aten._flash.default": {"seen": 2, "recorded": 0, "as": "none"},  # listed in unrecorded_ops
            },
            "unrecorded_ops": {"aten._flash.default": {"count": 2, "macs": 4 * 10**8}, "aten.mv.default": 5},
        }}

    items = engine.not_simulated_items(FakeTrace(), [])
    assert [(i["what"], i["ops"], i["macs"]) for i in items] == [
        ("aten._flash.default", 2, 4 * 10**8), ("aten.mv.default", 5, 0), ("aten.add.Tensor", 2, 0)]
    assert items[2]["why"] == "2 of 3 calls not recorded"
    from accelsim.report.table import not_simulated_lines

    r = SimResult("m", "", "", 1e9, [], not_simulated=items)
    assert not_simulated_lines(r)[:2] == ["aten._flash.default: 2 ops, 0.4 GMAC not simulated (not recorded)",
                                          "aten.mv.default: 5 ops, size unknown not simulated (not recorded)"]
    assert r.totals()["all"]["not_simulated"] == {"ops": 9, "macs": 4 * 10**8, "bytes": 0}


def test_run_prints_the_step_table_and_warns_on_stderr(tmp_path, capsys):
    from accelsim.cli import main

    path = tmp_path / "t.npz"
    build_unrecorded_attention(path)
    assert main(["run", str(path), "--hw", "a100_24", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "GEMM speedup" in out and "step speedup" in out and "sparsify (us)" in out
    assert "coverage: 1 GEMM op(s) and 0 vector op(s) simulated; not simulated: 2 ops" in out
    assert err == ("accelsim: warning: aten._scaled_dot_product_flash_attention.default: 2 ops, size unknown "
                   "not simulated (not recorded)\n")


def test_vector_table_sums_by_pass_and_class():
    from accelsim.report.table import op_table, totals_table, vector_table

    ops = [_gemm_result(0, "fwd", 100, 200), _vec_result(1, "fwd", 1410, False), _vec_result(2, "fwd", 1410, False),
           _vec_result(3, "optimizer", 2820, True)]
    r = SimResult("m", "", "", 1.41e9, ops)
    text = vector_table(r)
    lines = text.splitlines()
    # 1410 cycles at 1.41 GHz = 1 us; two fwd elementwise ops = 2.0 us, the method's 2820 cycles = 2.0 us
    assert lines[2].split() == ["fwd", "elementwise", "2", "0", "B", "2.0", "2.0"]
    assert lines[3].split() == ["optimizer", "elementwise", "method", "1", "0", "B", "2.0", "0.0"]
    assert "elementwise" not in op_table(r) and "optimizer" not in totals_table(r)
    assert vector_table(SimResult("m", "", "", 1e9, ops[:1])) is None


def test_v2_trace_end_to_end(tmp_path, capsys):
    """A v2 file written by TraceWriter: a causal attention GEMM, vector work in fwd / bwd / optimizer,
    the method's 2:4 compression -- through load_trace, simulate and `run --json --csv`."""
    import csv
    import json

    from accelsim.cli import main

    path = tmp_path / "v2.npz"
    b, L, d = 2, 256, 64
    build_v2_step(path, b=b, L=L, d=d)
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["run", str(path), "--hw", "a100_24", "--json", str(js), "--csv", str(cs)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "nothing the recorder saw was left out" in out
    t = json.loads(js.read_text())["totals"]
    assert list(t) == ["fwd", "dgrad", "wgrad", "bwd", "optimizer", "all"]
    # the hand-worked costs above: 6869 per elementwise op, 2560 + 5640 for the compression
    assert t["fwd"]["vector_cycles"] == t["bwd"]["vector_cycles"] == 6869
    assert t["optimizer"]["sparsify_cycles"] == 8200 and t["optimizer"]["step_dense_cycles"] == 0
    a = t["all"]
    assert a["ops"] == 1 and a["vector_ops"] == 3 and a["dense_macs"] == b * L * L * d  # causal: full MACs
    assert a["step_cycles"] == a["total_cycles"] + 2 * 6869 + 8200
    assert a["step_dense_cycles"] == a["dense_cycles"] + 2 * 6869
    rows = list(csv.DictReader(open(cs)))
    assert [r["vector_class"] for r in rows] == ["", "elementwise", "elementwise", "compress"]
    assert [r["sparsify"] for r in rows] == ["False", "False", "False", "True"]
    # causal on the gpu: T = 256/128 = 2 blocks a side, 3 of 4 visited: N 256 -> ceil(256 * 3 / 4) = 192
    assert rows[0]["shape"].endswith("causal") and int(rows[0]["effectual_macs"]) == b * L * 192 * d
