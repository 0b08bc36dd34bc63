"""accelsim.trace.inspect on the tiny hand-built trace: shapes as used, dense MACs, densities and
N:M compliance along each pass's reduction dim, worked by hand."""

import pytest

import tiny_trace
from accelsim.trace.format import load_trace
from accelsim.trace.inspect import op_rows, saved_summary


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "tiny.npz"
    masks = tiny_trace.build(path)
    tr = load_trace(path)
    yield tr, masks
    tr.close()


def test_op_rows_by_hand(trace):
    tr, masks = trace
    rows = op_rows(tr)
    assert [(r.pass_, r.layer, r.kind) for r in rows] == [
        ("fwd", "conv1", "conv2d"), ("fwd", "fc", "matmul"), ("dgrad", "fc", "matmul"),
        ("wgrad", "fc", "matmul"), ("dgrad", "conv1", "conv2d"), ("wgrad", "conv1", "conv2d")]
    # conv: F = N*K*C*R*S*P*Q = 2*8*4*3*3*6*6 = 20736 in every pass; linear: 2*10*16 = 320
    assert [r.dense_macs for r in rows] == [20736, 320, 320, 320, 20736, 20736]
    fwd, fc_fwd, _, fc_wgrad, dgrad, wgrad = rows
    ops = {o.name: o for o in fwd.operands}
    assert ops["input"].shape == (2, 4, 6, 6) and ops["input"].density == pytest.approx(masks["x"].mean())
    assert ops["weight"].density == 0.5
    # The weight keeps channels 0,1 of every filter: 2:4 along C (the fwd reduction) -> 1.0 ...
    assert ops["weight"].nm == 1.0
    # ... but along K (dgrad's reduction) every group of 4 filters at c in {0,1} has 4 non-zeros:
    # 18 of the 36 (c, r, s) columns x 2 groups fail -> 0.5.
    assert {o.name: o.nm for o in dgrad.operands}["weight"] == 0.5
    # grad_output is all ones: no group of 4 along any reduction is 2:4
    assert {o.name: o.nm for o in wgrad.operands}["grad_output"] == 0.0
    # the linear weight (10, 16) is used transposed as b in fwd: shape as used is (16, 10)
    b = {o.name: o for o in fc_fwd.operands}["b"]
    assert (b.shape, b.role, b.density) == ((16, 10), "weight", pytest.approx(masks["lw"].mean()))
    # wgrad a = grad_output^T (10, 2): K = batch = 2, one group of 2 < m = 4 elements: a group
    # shorter than m has no 2:4 form -> not compliant, even though it holds only 2 non-zeros
    assert {o.name: (o.shape, o.nm) for o in fc_wgrad.operands}["a"] == ((10, 2), 0.0)


def test_saved_summary_counts_bytes(trace):
    tr, masks = trace
    rows = {r["category"]: r for r in saved_summary(tr)}
    # activations: sparse conv input (2,4,6,6) fp32 = 1152 B + linear input (2,16) = 128 B
    assert rows["activation"]["bytes"] == 1152 + 128 and rows["activation"]["records"] == 2
    assert rows["activation"]["density"] == pytest.approx((masks["xs"].sum() + masks["a"].sum()) / (288 + 32))
    assert rows["weight"]["bytes"] == 288 * 4 + 160 * 4
    assert (rows["other"]["bytes"], rows["other"]["density"]) == (32, 1.0)


def test_step_filter(tmp_path):
    path = tmp_path / "two.npz"
    tiny_trace.build(path, steps=(3, 4))
    with load_trace(path) as tr:
        assert {r.step for r in op_rows(tr, steps={4})} == {4}
        assert len(op_rows(tr)) == 12


def _vec(op, cls, elements, read, written, kernels=1, sparsify=False, dedicated=None):
    return {"op": op, "class": cls, "elements": elements, "bytes_read": read, "bytes_written": written,
            "dtype": "float32", "kernels": kernels, "sparsify": sparsify, "dedicated": dedicated}


def test_coverage_and_vector_summary_of_a_v2_trace(tmp_path, trace):
    from accelsim.trace.format import TraceWriter
    from accelsim.trace.inspect import coverage, coverage_line, vector_summary

    tr, _ = trace
    assert coverage(tr) is None and coverage_line(tr).startswith("coverage: not in this trace")
    cov = {"aten.mm.default": {"seen": 3, "recorded": 3, "as": "gemm"},
           "aten.convolution.default": {"seen": 2, "recorded": 1, "as": "gemm"},
           "aten.add.Tensor": {"seen": 4, "recorded": 4, "as": "vector"},
           "aten.view.default": {"seen": 9, "recorded": 0, "as": "none"}}
    path = tmp_path / "v2.npz"
    with TraceWriter(path, {"steps": [0], "meta": {"coverage": cov}}) as w:
        for ps, p in (("fwd", _vec("aten.add.Tensor", "elementwise", 10, 80, 40, kernels=2)),
                      ("fwd", _vec("aten.add.Tensor", "elementwise", 6, 48, 24)),
                      ("optimizer", _vec("accelsim.sparsity.compress", "compress", 8, 32, 17, sparsify=True,
                                         dedicated="compress_2_4"))):
            w.add_vector_op(step=0, seq=0, pass_=ps, layer="l", module_type="L", aten=p["op"], params=p)
    with load_trace(path) as t2:
        c = coverage(t2)
        assert c.seen == {"gemm": 5, "vector": 4, "none": 9} and c.recorded == {"gemm": 4, "vector": 4, "none": 0}
        assert c.missing == [("aten.convolution.default", 1)] and not c.complete
        assert coverage_line(t2) == ("coverage: 18 aten op calls seen: gemm 4/5 recorded, vector 4/4 recorded, "
                                     "none (views, metadata) 9; NOT recorded: aten.convolution.default x1 "
                                     "(see meta.unrecorded_ops)")
        rows = vector_summary(t2)
        assert [(r["pass"], r["class"], r["records"], r["kernels"], r["elements"], r["bytes_read"],
                 r["bytes_written"], r["sparsify"], r["dedicated"]) for r in rows] == [
            ("fwd", "elementwise", 2, 3, 16, 128, 64, False, None),
            ("optimizer", "compress", 1, 1, 8, 32, 17, True, "compress_2_4")]
