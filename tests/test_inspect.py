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
