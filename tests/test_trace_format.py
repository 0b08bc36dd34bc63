"""Trace format v1: round trip, dedup, bit layout, atomic writes, and one-line errors for every defect."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from accelsim.errors import AccelsimError, TraceError
from accelsim.trace.format import Operand, TraceWriter, load_trace

CONV = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
        "input_shape": [2, 3, 6, 6], "weight_shape": [4, 3, 3, 3], "output_shape": [2, 4, 6, 6]}


def _masks():
    rng = np.random.default_rng(1)
    return {"x": rng.random((2, 3, 6, 6)) < 0.5, "w": rng.random((4, 3, 3, 3)) < 0.3,
            "g": rng.random((2, 4, 6, 6)) < 0.9, "a": rng.random((2, 144)) < 0.5,
            "lw": rng.random((5, 144)) < 0.2, "gl": np.ones((2, 5), bool)}


def write_good(path, *, steps=(0,)):
    """A small valid trace: conv fwd/dgrad/wgrad, linear fwd (b transposed)/dgrad/wgrad, saved records."""
    m = _masks()
    with TraceWriter(path, {"model": "hand", "method": {"name": "dense", "params": {}}, "dtype": "float32",
                            "batch_size": 2, "meta": {"lr": 0.1}}) as w:
        for step in steps:
            t = {k: w.add_tensor(v, dtype="float32", role=r, layer=ly) for k, v, r, ly in [
                ("x", m["x"], "activation", "conv"), ("w", m["w"], "weight", "conv"),
                ("g", m["g"], "grad_output", "conv"), ("a", m["a"], "activation", "fc"),
                ("lw", m["lw"], "weight", "fc"), ("gl", m["gl"], "grad_output", "fc")]}
            kw = dict(step=step, module_type="M")
            w.add_op(seq=0, pass_="fwd", kind="conv2d", layer="conv", aten="aten.convolution.default",
                     operands=[Operand("input", t["x"]), Operand("weight", t["w"])], out_shape=[2, 4, 6, 6],
                     params=CONV, **kw)
            w.add_op(seq=1, pass_="fwd", kind="matmul", layer="fc", aten="aten.addmm.default",
                     operands=[Operand("a", t["a"]), Operand("b", t["lw"], True)], out_shape=[2, 5],
                     params={"bias": True}, **kw)
            w.add_op(seq=2, pass_="dgrad", kind="matmul", layer="fc", aten="aten.mm.default",
                     operands=[Operand("a", t["gl"]), Operand("b", t["lw"])], out_shape=[2, 144], params={}, **kw)
            w.add_op(seq=3, pass_="wgrad", kind="matmul", layer="fc", aten="aten.mm.default",
                     operands=[Operand("a", t["gl"], True), Operand("b", t["a"])], out_shape=[5, 144], params={}, **kw)
            w.add_op(seq=4, pass_="dgrad", kind="conv2d", layer="conv", aten="aten.convolution_backward.default",
                     operands=[Operand("grad_output", t["g"]), Operand("weight", t["w"])], out_shape=[2, 3, 6, 6],
                     params=CONV, **kw)
            w.add_op(seq=5, pass_="wgrad", kind="conv2d", layer="conv", aten="aten.convolution_backward.default",
                     operands=[Operand("grad_output", t["g"]), Operand("input", t["x"])], out_shape=[4, 3, 3, 3],
                     params=CONV, **kw)
            w.add_saved(step=step, layer="conv", shape=[2, 3, 6, 6], dtype="float32", nnz=int(m["x"].sum()),
                        category="activation", saved_by="ConvolutionBackward0", storage=0, tensor=t["x"],
                        t_pack=0, t_unpack=6)
            w.add_saved(step=step, layer="bn", shape=[4], dtype="float32", nnz=4, category="other",
                        saved_by="NativeBatchNormBackward0", storage=1, tensor=None, t_pack=1, t_unpack=None)
    return m


def _read_members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _header(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(np.lib.format.read_array(io.BytesIO(z.read("header.npy"))).tobytes())


def _write_members(path, header: dict | None, masks: dict[int, np.ndarray], raw: dict[str, bytes] | None = None):
    """Write a trace-shaped zip by hand (for corrupt variants)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for tid, arr in masks.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            z.writestr(f"masks/{tid}.npy", buf.getvalue())
        for name, data in (raw or {}).items():
            z.writestr(name, data)
        if header is not None:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.frombuffer(json.dumps(header).encode(), np.uint8))
            z.writestr("header.npy", buf.getvalue())


def _variant(tmp_path, good, mutate, name="bad.npz"):
    """Copy of the good trace with its header changed by ``mutate(header)`` (masks unchanged)."""
    h = _header(good)
    mutate(h)
    members = _read_members(good)
    masks = {int(n[6:-4]): np.lib.format.read_array(io.BytesIO(d)) for n, d in members.items() if n.startswith("masks/")}
    path = tmp_path / name
    _write_members(path, h, masks)
    return path


def _one_line_error(path, *, masks=False) -> str:
    with pytest.raises(TraceError) as ei:
        tr = load_trace(path)
        if masks:
            tr.validate_masks()
    msg = str(ei.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert isinstance(ei.value, AccelsimError)
    return msg


@pytest.fixture()
def good(tmp_path):
    path = tmp_path / "good.npz"
    write_good(path)
    return path


# ------------------------------------------------------------------------------ round trip


def test_round_trip_records_and_masks(good):
    m = _masks()
    tr = load_trace(good)
    assert tr.header["schema"] == "accelsim-trace" and tr.header["version"] == 2
    assert tr.header["model"] == "hand" and tr.header["batch_size"] == 2 and tr.header["steps"] == [0]
    assert tr.header["meta"] == {"lr": 0.1} and tr.header["recorder"].startswith("accelsim ")
    assert [t.shape for t in tr.tensors] == [(2, 3, 6, 6), (4, 3, 3, 3), (2, 4, 6, 6), (2, 144), (5, 144), (2, 5)]
    assert [t.role for t in tr.tensors] == ["activation", "weight", "grad_output", "activation", "weight",
                                            "grad_output"]
    assert tr.tensors[1].nnz == int(m["w"].sum())
    assert tr.tensors[1].density == pytest.approx(m["w"].sum() / 108)
    assert [(o.pass_, o.kind) for o in tr.ops] == [("fwd", "conv2d"), ("fwd", "matmul"), ("dgrad", "matmul"),
                                                  ("wgrad", "matmul"), ("dgrad", "conv2d"), ("wgrad", "conv2d")]
    fc = tr.ops[1]
    assert fc.operand("b") == Operand("b", 4, True) and fc.params == {"bias": True}
    assert tr.ops[2].operand("b").tensor == fc.operand("b").tensor  # fwd and dgrad share the weight
    assert np.array_equal(tr.mask(0), m["x"]) and np.array_equal(tr.mask(4), m["lw"])
    assert np.array_equal(tr.operand_mask(fc, "b"), m["lw"].T)           # as the op used it: W^T
    assert np.array_equal(tr.operand_mask(tr.ops[3], "a"), m["gl"].T)
    s0, s1 = tr.saved
    assert (s0.tensor, s0.category, s0.t_unpack, s0.nbytes) == (0, "activation", 6, 2 * 3 * 6 * 6 * 4)
    assert (s1.tensor, s1.t_unpack, s1.nbytes) == (None, None, 16)
    tr.validate_masks()
    tr.close()


def test_np_load_opens_the_file_without_pickle(good):
    with np.load(good, allow_pickle=False) as z:
        assert sorted(z.files) == ["header"] + [f"masks/{i}" for i in range(6)]
        h = json.loads(z["header"].tobytes().decode("utf-8"))
        assert h["schema"] == "accelsim-trace" and len(h["ops"]) == 6
        assert h["ops"][1]["pass"] == "fwd" and "pass_" not in h["ops"][1]
        # masks/<id> is packbits(mask.ravel(), bitorder="little")
        assert np.array_equal(z["masks/1"], np.packbits(_masks()["w"].ravel(), bitorder="little"))


def test_packed_words_bit_layout(tmp_path):
    # 70 elements, set bits 0, 63, 64, 69: word 0 = 1 | 1<<63, word 1 = 1 | 1<<5 (bit i of the C-order
    # flattening is (w[i >> 6] >> (i & 63)) & 1).
    mask = np.zeros((7, 10), bool)
    for i in (0, 63, 64, 69):
        mask.flat[i] = True
    p = tmp_path / "bits.npz"
    with TraceWriter(p, {}) as w:
        assert w.add_tensor(mask, dtype="float32", role="other", layer="l") == 0
    tr = load_trace(p)
    words = tr.packed(0)
    assert words.dtype == np.uint64
    assert words.tolist() == [1 | (1 << 63), 1 | (1 << 5)]
    assert tr.tensors[0].nnz == 4
    assert np.array_equal(tr.mask(0), mask)


def test_dedup_stores_each_tensor_once(tmp_path):
    p = tmp_path / "d.npz"
    m = np.zeros((4, 6), bool)
    m[1, 2] = m[3, 5] = True
    with TraceWriter(p, {}) as w:
        a = w.add_tensor(m, dtype="float32", role="weight", layer="l1")
        assert w.add_tensor(m.copy(), dtype="float32", role="weight", layer="l2") == a  # same bits+shape+role
        b = w.add_tensor(m, dtype="float32", role="activation", layer="l1")           # other role
        c = w.add_tensor(m.reshape(6, 4), dtype="float32", role="weight", layer="l1")   # other shape
        d = w.add_tensor(~m, dtype="float32", role="weight", layer="l1")              # other bits
    assert (a, b, c, d) == (0, 1, 2, 3)
    names = sorted(n for n in zipfile.ZipFile(p).namelist() if n.startswith("masks/"))
    assert names == ["masks/0.npy", "masks/1.npy", "masks/2.npy", "masks/3.npy"]
    assert load_trace(p).tensors[3].nnz == 22


def test_writer_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    write_good(tmp_path / "a.npz")
    write_good(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert load_trace(tmp_path / "a.npz").header["created"] == "2023-11-14T22:13:20+00:00"


def test_conv_output_size_rule(tmp_path):
    # P = floor((H + 2p - d(R-1) - 1)/s) + 1 (torch.nn.Conv2d docs): H=7, R=3, s=2, p=1 -> d=1: 4; d=2: 3.
    def write(dil, out):
        params = {"stride": [2, 2], "padding": [1, 1], "dilation": [dil, dil], "groups": 1,
                  "input_shape": [1, 3, 7, 7], "weight_shape": [8, 3, 3, 3], "output_shape": [1, 8, out, out]}
        with TraceWriter(tmp_path / f"c{dil}{out}.npz", {}) as w:
            x = w.add_tensor(np.ones((1, 3, 7, 7), bool), dtype="float32", role="activation", layer="c")
            k = w.add_tensor(np.ones((8, 3, 3, 3), bool), dtype="float32", role="weight", layer="c")
            w.add_op(step=0, seq=0, pass_="fwd", kind="conv2d", layer="c", module_type="Conv2d", aten="x",
                     operands=[Operand("input", x), Operand("weight", k)], out_shape=[1, 8, out, out], params=params)

    write(1, 4)
    write(2, 3)
    with pytest.raises(TraceError, match=r"expected \[1, 8, 4, 4\]"):
        write(1, 3)
    assert not any(f.name.startswith(".") for f in tmp_path.iterdir())  # the failed write left no temp file


# ------------------------------------------------------------------------------ atomic writes


def test_abort_and_exception_leave_no_file(tmp_path):
    p = tmp_path / "t.npz"
    w = TraceWriter(p, {})
    w.add_tensor(np.ones(10, bool), dtype="float32", role="other", layer="l")
    w.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with TraceWriter(p, {}) as w:
            w.add_tensor(np.ones(10, bool), dtype="float32", role="other", layer="l")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_replaced_only_on_close(tmp_path):
    p = tmp_path / "t.npz"
    p.write_bytes(b"old")
    w = TraceWriter(p, {})
    w.add_tensor(np.ones(10, bool), dtype="float32", role="other", layer="l")
    assert p.read_bytes() == b"old"
    w.close()
    assert load_trace(p).tensors[0].nnz == 10
    assert sorted(f.name for f in tmp_path.iterdir()) == ["t.npz"]
    umask = os.umask(0)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask   # not mkstemp's 0600


def test_writer_rejects_bad_records(tmp_path):
    with TraceWriter(tmp_path / "t.npz", {}) as w:
        t = w.add_tensor(np.ones((2, 3), bool), dtype="float32", role="activation", layer="l")
        with pytest.raises(TraceError, match="a matmul op has no bwd pass"):  # bwd: vector ops only
            w.add_op(step=0, seq=0, pass_="bwd", kind="matmul", layer="l", module_type="L", aten="x",
                     operands=[Operand("a", t), Operand("b", t, True)], out_shape=[2, 2])
        with pytest.raises(TraceError, match="role"):
            w.add_tensor(np.ones(3, bool), dtype="float32", role="bias", layer="l")
    with pytest.raises(TraceError, match="cannot write trace"):
        TraceWriter(tmp_path / "no" / "such" / "dir.npz", {})


# ------------------------------------------------------------------------------ corrupt files


def test_missing_file(tmp_path):
    assert "no such trace file" in _one_line_error(tmp_path / "nope.npz")


def test_not_a_path_or_a_directory_is_a_one_line_error(tmp_path):
    # review finding: load_trace(None) / TraceWriter(3) raised a bare TypeError from pathlib
    for bad in (None, 3, ["x.npz"]):
        with pytest.raises(TraceError, match=f"load_trace: expected a trace file path .* got {type(bad).__name__}"):
            load_trace(bad)
        with pytest.raises(TraceError, match=f"trace output must be a file path .* got {type(bad).__name__}"):
            TraceWriter(bad, {})
    assert "is a directory" in _one_line_error(tmp_path)
    with pytest.raises(TraceError, match="is a directory"):
        TraceWriter(tmp_path, {})
    assert not list(tmp_path.iterdir())  # no temp file left behind


def test_unreadable_file_says_permission_denied(good, monkeypatch):
    # review finding: an unreadable trace was reported as "not a complete zip archive; truncated or
    # corrupt?". chmod cannot make a file unreadable for root, so the open itself is made to fail.
    import accelsim.trace.format as fmt

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(good))

    monkeypatch.setattr(fmt, "open_regular", denied)
    assert _one_line_error(good).endswith("cannot read the trace file: permission denied")


def test_not_a_zip(tmp_path):
    p = tmp_path / "x.npz"
    p.write_text("hello\nworld\n")
    assert "not a trace file" in _one_line_error(p)


def test_truncated_file(good):
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 30):
        good.write_bytes(data[:cut])
        assert "not a trace file" in _one_line_error(good)


def test_flipped_bytes_in_member_data_are_caught(good, tmp_path):
    # Flip (xor 0xFF) one byte inside the compressed data of each member. Either the zip CRC-32 /
    # deflate stream catches it when the member is read (a one-line TraceError), or the damage hit
    # only deflate's end-of-stream bits and every decoded byte is still right: never silently wrong.
    data = good.read_bytes()
    ref = load_trace(good)
    ref_masks = [ref.mask(t.id) for t in ref.tensors]
    with zipfile.ZipFile(good) as z:
        infos = z.infolist()
    caught = 0
    for zi in infos:
        name_len = int.from_bytes(data[zi.header_offset + 26: zi.header_offset + 28], "little")
        extra_len = int.from_bytes(data[zi.header_offset + 28: zi.header_offset + 30], "little")
        start = zi.header_offset + 30 + name_len + extra_len
        for pos in sorted({start, start + zi.compress_size // 2, start + zi.compress_size - 1}):
            bad = bytearray(data)
            bad[pos] ^= 0xFF
            p = tmp_path / "flip.npz"
            p.write_bytes(bytes(bad))
            try:
                tr = load_trace(p)
                tr.validate_masks()
            except TraceError as e:
                assert "\n" not in str(e) and str(p) in str(e) and "corrupt" in str(e)
                caught += 1
                continue
            assert pos == start + zi.compress_size - 1, f"undetected flip at {pos - start} of {zi.filename}"
            assert tr.header == ref.header and tr.ops == ref.ops and tr.saved == ref.saved
            assert all(np.array_equal(tr.mask(i), m) for i, m in enumerate(ref_masks))
    assert caught >= 2 * len(infos)  # every flip at the start and the middle of a member is caught


def test_wrong_version(good, tmp_path):
    p = _variant(tmp_path, good, lambda h: h.update(version=7))
    assert _one_line_error(p) == f"{p}: trace version 7 is not supported by this accelsim (reads versions 1, 2)"


def test_bad_schema(good, tmp_path):
    p = _variant(tmp_path, good, lambda h: h.update(schema="something-else"))
    assert "not an accelsim trace (schema 'something-else'" in _one_line_error(p)


def test_header_not_json(tmp_path):
    p = tmp_path / "j.npz"
    _write_members(p, None, {}, raw={"header.npy": _npy_bytes(np.frombuffer(b"{not json", np.uint8))})
    assert "header is not valid JSON" in _one_line_error(p)
    _write_members(p, None, {}, raw={"header.npy": _npy_bytes(np.zeros(3, np.float64))})
    assert "header.npy is float64 with 1 dims, expected 1-D uint8" in _one_line_error(p)


def test_npy_header_claiming_a_huge_array(good, tmp_path):
    # A mask member whose .npy header claims 10^12 bytes: rejected before anything is allocated.
    h = _header(good)
    members = _read_members(good)
    raw = {n: d for n, d in members.items() if n.startswith("masks/") and n != "masks/0.npy"}
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "|u1", "fortran_order": False, "shape": (10**12,)})
    raw["masks/0.npy"] = hdr.getvalue() + b"\x00" * 27
    p = tmp_path / "huge.npz"
    _write_members(p, h, {}, raw=raw)
    assert "mask of tensor 0 holds 27 bytes of data but its header says 1000000000000" in _one_line_error(p, masks=True)


def _npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


def test_unknown_pass_and_kind(good, tmp_path):
    p = _variant(tmp_path, good, lambda h: h["ops"][2].update({"pass": "xgrad"}))
    assert "unknown op 2 pass 'xgrad' (expected one of fwd, dgrad, wgrad, bwd, optimizer)" in _one_line_error(p)
    # "bwd" and "optimizer" exist from version 2 on, and only for vector ops
    p = _variant(tmp_path, good, lambda h: h["ops"][2].update({"pass": "bwd"}))
    assert "op 2 (fc matmul bwd): a matmul op has no bwd pass" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: (h["ops"][2].update({"pass": "bwd"}), h.update(version=1)))
    assert "unknown op 2 pass 'bwd' (expected one of fwd, dgrad, wgrad)" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h["ops"][0].update(kind="conv3d"))
    assert "unknown op 0 kind 'conv3d'" in _one_line_error(p)


def test_operand_errors(good, tmp_path):
    p = _variant(tmp_path, good, lambda h: h["ops"][1]["operands"][1].update(tensor=99))
    assert "operand 'b' refers to tensor 99, which does not exist (6 tensors)" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h["ops"][0]["operands"][1].update(name="filter"))
    assert "operands are ['input', 'filter'] but a conv2d fwd op has ['input', 'weight']" in _one_line_error(p)
    # linear weight used untransposed in forward: (2,144) @ (5,144) does not multiply
    p = _variant(tmp_path, good, lambda h: h["ops"][1]["operands"][1].update(transposed=False))
    assert "a [2, 144] and b [5, 144] do not multiply" in _one_line_error(p)
    # conv dgrad using the input mask as grad_output: shape (2,3,6,6) vs output (2,4,6,6)
    p = _variant(tmp_path, good, lambda h: h["ops"][4]["operands"][0].update(tensor=0))
    assert "operand 'grad_output' has shape [2, 3, 6, 6] but params say [2, 4, 6, 6]" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h["ops"][5].update(out_shape=[4, 3, 3]))
    assert "out_shape [4, 3, 3] should be [4, 3, 3, 3]" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h["ops"][0]["params"].update(groups=2))
    assert "groups=2 does not fit input channels 3" in _one_line_error(p)


def test_nnz_and_saved_errors(good, tmp_path):
    p = _variant(tmp_path, good, lambda h: h["tensors"][5].update(nnz=11))
    assert "tensor 5 has nnz=11 > numel=10" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h["tensors"][5].update(nnz=-1))
    assert "tensor 5 nnz must be >= 0, got -1" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h["saved"][0].update(tensor=42))
    assert "saved record 0 refers to tensor 42, which does not exist" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h["saved"][1].update(category="buffer"))
    assert "unknown saved record 1 category 'buffer'" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h["ops"][0].update(step=3))
    assert "op 0 is of step 3, which the header does not list ([0])" in _one_line_error(p)


def test_mask_that_disagrees_with_header(good, tmp_path):
    h = _header(good)
    members = _read_members(good)
    masks = {int(n[6:-4]): np.lib.format.read_array(io.BytesIO(d)) for n, d in members.items() if n.startswith("masks/")}

    # 1. wrong size for the shape: the (2,5) tensor needs 2 bytes
    bad = {**masks, 5: np.zeros(3, np.uint8)}
    _write_members(tmp_path / "s.npz", h, bad)
    tr = load_trace(tmp_path / "s.npz")   # metadata is fine: masks are checked when read
    with pytest.raises(TraceError) as ei:
        tr.mask(5)
    assert str(ei.value) == f"{tmp_path / 's.npz'}: mask of tensor 5 has 3 bytes but its shape [2, 5] needs 2"

    # 2. popcount != nnz: tensor 5 is all ones (nnz=10); keep 3 bits only
    h2 = json.loads(json.dumps(h))
    bad = {**masks, 5: np.array([0b111, 0], np.uint8)}
    _write_members(tmp_path / "n.npz", h2, bad)
    msg = _one_line_error(tmp_path / "n.npz", masks=True)
    assert msg.endswith("mask of tensor 5 has 3 set bits but the header says nnz=10")

    # 3. padding bits beyond numel set (10 elements -> bits 10..15 of byte 1 must be 0)
    bad = {**masks, 5: np.array([0xFF, 0xFF], np.uint8)}
    _write_members(tmp_path / "p.npz", h, bad)
    assert "bits set beyond its 10 elements" in _one_line_error(tmp_path / "p.npz", masks=True)

    # 4. a mask member missing altogether
    bad = {k: v for k, v in masks.items() if k != 2}
    _write_members(tmp_path / "m.npz", h, bad)
    assert "member masks/2.npy is missing" in _one_line_error(tmp_path / "m.npz")

    # 5. mask stored with the wrong dtype
    bad = {**masks, 5: np.zeros(2, np.int16)}
    _write_members(tmp_path / "d.npz", h, bad)
    assert "mask of tensor 5 is int16 with 1 dims, expected 1-D uint8" in _one_line_error(tmp_path / "d.npz", masks=True)


def test_unknown_header_field_and_missing_field(good, tmp_path):
    p = _variant(tmp_path, good, lambda h: h.update(extra=1))
    assert "header has unknown field(s) extra" in _one_line_error(p)
    p = _variant(tmp_path, good, lambda h: h.pop("saved"))
    assert "header lacks saved" in _one_line_error(p)


def test_trace_format_doc_lists_every_field():
    """docs/trace-format.md documents exactly the fields the reader accepts, and its header example
    (with the elided tables filled in empty) has only known top-level fields."""
    import json as _json
    from pathlib import Path as _Path

    from accelsim.trace import format as fmt

    text = (_Path(__file__).resolve().parents[1] / "docs" / "trace-format.md").read_text()

    def table_fields(title):
        sec = text.split(title, 1)[1].split("\n#", 1)[0]
        return {f.strip("` ") for line in sec.splitlines() if line.startswith("| `")
                for f in line.split("|")[1].split(",")}
    assert table_fields("## Header") == set(fmt.HEADER_KEYS)
    assert table_fields("### `tensors`") == set(fmt._TENSOR_KEYS)
    assert table_fields("### `ops`") == set(fmt._OP_KEYS)
    assert table_fields("### `saved`") == set(fmt._SAVED_KEYS)
    params = [line for line in text.splitlines() if line.startswith("| `params`")][0]
    assert all(f"`{k}`" in params for k in fmt._CONV_PARAM_KEYS)
    for words in (fmt.ROLES, fmt.PASSES, fmt.KINDS, fmt.CATEGORIES):
        assert all(f"`{w}`" in text for w in words)
    example = text.split("```json\n", 1)[1].split("```", 1)[0].replace("[...]", "[]")
    h = _json.loads(example)
    assert set(h) == set(fmt.HEADER_KEYS) and h["schema"] == fmt.SCHEMA and h["version"] == fmt.VERSION


def test_one_packed_word_layout_for_traces_and_hand_built_workloads(tmp_path):
    # bits 0 and 9 set: bytes 0x01, 0x02 -> one little-endian word 0x0201 = 513, on any host
    from accelsim.sim.workload import pack_mask
    from accelsim.trace.format import bytes_to_words, pack_words, unpack_words

    m = np.zeros(10, bool)
    m[[0, 9]] = True
    assert pack_words(m).tolist() == [513] and pack_mask(m).tolist() == [513]
    assert bytes_to_words(np.array([1, 2], np.uint8)).tolist() == [513]
    x = np.random.default_rng(0).random((3, 5, 7)) < 0.3
    assert np.array_equal(unpack_words(pack_words(x), x.shape), x)
    p = tmp_path / "t.npz"
    with TraceWriter(p, {}) as tw:
        tid = tw.add_tensor(x, dtype="float32", role="activation", layer="l")
    with load_trace(p) as tr:
        assert np.array_equal(tr.packed(tid), pack_words(x))


# ------------------------------------------------------------------------------ hostile files


def _zip_with(path, members: list[tuple[str, bytes]]):
    """A zip of exactly these (name, bytes) members, deflated, in this order (names may repeat)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name; that is the point
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members:
                z.writestr(name, data)


def test_mask_member_larger_than_its_shape_is_refused_before_inflating(good, tmp_path, monkeypatch):
    # A 64 MiB all-zero mask member deflates to ~64 KB; tensor 0's shape (2, 3, 6, 6) needs 27 bytes.
    members = _read_members(good)
    members["masks/0.npy"] = _npy_bytes(np.zeros(64 << 20, np.uint8))
    p = tmp_path / "bomb.npz"
    _zip_with(p, list(members.items()))
    assert p.stat().st_size < 1 << 20
    inflated = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: inflated.append(
        getattr(name, "filename", name)) or real_open(self, name, *a, **k))
    msg = _one_line_error(p, masks=True)
    assert "mask of tensor 0 declares 67108992 bytes uncompressed but its shape needs 27 bytes of data" in msg
    assert "masks/0.npy" not in inflated  # refused on the declared size alone


def test_member_that_inflates_beyond_its_declared_size_is_cut(good, tmp_path):
    # The central directory says 155 bytes; the deflate stream holds 64 MiB. zipfile stops at the
    # declared size and the CRC (of the full data) no longer matches: a one-line error, bounded read.
    members = _read_members(good)
    big = _npy_bytes(np.zeros(64 << 20, np.uint8))
    p = tmp_path / "liar.npz"
    _zip_with(p, [(n, big if n == "masks/0.npy" else d) for n, d in members.items()])
    raw = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as z:
        info = z.getinfo("masks/0.npy")
    # patch the uncompressed size in the central directory entry (offset 24 of its fixed part)
    cd = raw.rfind(b"PK\x01\x02" + raw[raw.find(b"PK\x01\x02") + 4: raw.find(b"PK\x01\x02") + 4], 0)
    i = raw.find(b"masks/0.npy", raw.find(b"PK\x01\x02"))
    entry = i - 46
    assert raw[entry:entry + 4] == b"PK\x01\x02" and int.from_bytes(raw[entry + 24:entry + 28], "little") == info.file_size
    raw[entry + 24:entry + 28] = (155).to_bytes(4, "little")
    p.write_bytes(bytes(raw))
    msg = _one_line_error(p, masks=True)
    assert "mask of tensor 0" in msg


def test_header_whitespace_bomb_is_refused_before_inflating(tmp_path):
    from accelsim.trace.format import MAX_HEADER_BYTES

    text = b"{" + b" " * (MAX_HEADER_BYTES + 1) + b"}"
    p = tmp_path / "ws.npz"
    _zip_with(p, [("header.npy", _npy_bytes(np.frombuffer(text, np.uint8)))])
    assert p.stat().st_size < 1 << 20
    assert f"header.npy declares {MAX_HEADER_BYTES + 3 + 128} bytes uncompressed but the limit is " \
           f"{MAX_HEADER_BYTES} bytes" in _one_line_error(p)


def test_duplicate_and_nested_member_names(good, tmp_path):
    members = list(_read_members(good).items())
    p = tmp_path / "dup.npz"
    _zip_with(p, members + [("masks/0.npy", dict(members)["masks/0.npy"])])
    assert "member 'masks/0.npy' appears more than once" in _one_line_error(p)
    for extra in ("masks/0.npy/x.npy", "masks/", "../header.npy"):
        p = tmp_path / "nested.npz"
        _zip_with(p, members + [(extra, b"")])
        assert f"unexpected member {extra!r}" in _one_line_error(p)


def test_deeply_nested_header_json_is_one_line(tmp_path):
    p = tmp_path / "deep.npz"
    _zip_with(p, [("header.npy", _npy_bytes(np.frombuffer(b"[" * 100_000 + b"]" * 100_000, np.uint8)))])
    assert "header is not valid JSON: nested too deeply" in _one_line_error(p)


def test_tensor_larger_than_the_limit_is_refused_at_load(good, tmp_path, monkeypatch):
    from accelsim.trace.format import MAX_TENSOR_ELEMENTS

    def grow(h):  # 2^36 elements: its mask alone would be 8 GiB packed, 64 GiB as bool
        h["tensors"][5]["shape"] = [1 << 18, 1 << 18]
    p = _variant(tmp_path, good, grow)
    msg = _one_line_error(p)
    assert f"tensor 5 of shape [262144, 262144] has 6.87e+10 elements, more than the limit of {MAX_TENSOR_ELEMENTS}" in msg
    # the limit is the tensor's element count; a raised limit lets the check reach the next rule
    monkeypatch.setenv("ACCELSIM_MAX_TENSOR_ELEMENTS", str(1 << 40))
    assert "limit" not in _one_line_error(p)  # the next rule: op 2's operands no longer multiply
    monkeypatch.setenv("ACCELSIM_MAX_TENSOR_ELEMENTS", "lots")
    with pytest.raises(TraceError, match="ACCELSIM_MAX_TENSOR_ELEMENTS='lots': expected a positive integer"):
        load_trace(p)


def test_shape_with_too_many_dims_is_refused(good, tmp_path):
    p = _variant(tmp_path, good, lambda h: h["tensors"][0].update(shape=[1] * 100_000))
    assert "tensor 0 shape has 100000 dims (at most 64)" in _one_line_error(p)


def test_hostile_values_are_cut_in_messages(good, tmp_path):
    p = _variant(tmp_path, good, lambda h: h.update(schema="x" * 1_000_000))
    msg = _one_line_error(p)
    assert "not an accelsim trace" in msg and len(msg) < 400
    p = _variant(tmp_path, good, lambda h: h["tensors"][0].update(nnz=[[[[[[[[[[1]]]]]]]]]] * 10_000))
    msg = _one_line_error(p)
    assert "tensor 0 nnz must be an integer" in msg and len(msg) < 400


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "directory", "too_long", "loop"])
def test_non_regular_paths_are_refused_without_blocking(tmp_path, kind):
    from accelsim.errors import HardwareConfigError
    from accelsim.hw import load_hw

    if kind == "fifo":
        p = tmp_path / "pipe.npz"
        os.mkfifo(p)  # opening it for reading would block until a writer came
        want = "is a FIFO (named pipe), not a"
    elif kind == "dev_zero":
        p = tmp_path / "zero.npz"
        p.symlink_to("/dev/zero")
        want = "is a character device, not a"
    elif kind == "directory":
        p = tmp_path
        want = "is a directory, not a"
    elif kind == "too_long":
        p = tmp_path / ("n" * 5000 + ".npz")
        want = "File name too long"
    else:
        p = tmp_path / "loop.npz"
        p.symlink_to(p)
        want = "Too many levels of symbolic links"
    with pytest.raises(TraceError) as ei:
        load_trace(p)
    assert want in str(ei.value) and "\n" not in str(ei.value) and len(str(ei.value)) < 300
    with pytest.raises(HardwareConfigError) as ei:
        load_hw(p)
    assert want in str(ei.value) and "\n" not in str(ei.value) and len(str(ei.value)) < 300


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any directory")
def test_unreadable_parent_directory(good, tmp_path):
    d = tmp_path / "locked"
    d.mkdir()
    (d / "t.npz").write_bytes(good.read_bytes())
    d.chmod(0)
    try:
        assert "permission denied" in _one_line_error(d / "t.npz")
    finally:
        d.chmod(0o755)


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    import accelsim.trace.format as fmt

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "t.npz"
    out.write_bytes(b"old")
    monkeypatch.setattr(fmt.np.lib.format, "write_array", full)
    with pytest.raises(TraceError) as ei:
        with TraceWriter(out, {}) as w:
            w.add_tensor(np.ones((4, 4), bool), dtype="float32", role="weight", layer="l")
    assert str(ei.value) == f"cannot write trace {out}: No space left on device"
    assert out.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [out]
    monkeypatch.undo()
    monkeypatch.setattr(fmt.os, "fsync", full)  # a full disk noticed only when the data is flushed
    with pytest.raises(TraceError, match="No space left on device"):
        with TraceWriter(out, {}) as w:
            w.add_tensor(np.ones((4, 4), bool), dtype="float32", role="weight", layer="l")
    assert out.read_bytes() == b"old" and sorted(tmp_path.iterdir()) == [out]


def test_lone_surrogate_layer_name_round_trips(tmp_path):
    # JSON may carry "\ud800", which Python decodes to a lone surrogate: it must survive load.
    p = tmp_path / "s.npz"
    with TraceWriter(p, {"steps": [0]}) as w:
        w.add_tensor(np.ones((2, 2), bool), dtype="float32", role="weight", layer="bad\ud800name")
    assert load_trace(p).tensors[0].layer == "bad\ud800name"


# ------------------------------------------------------------------------------ version 2 (and 1)

_VEC = {"op": "aten.add.Tensor", "class": "elementwise", "elements": 12, "bytes_read": 96, "bytes_written": 48,
        "dtype": "float32", "kernels": 2, "sparsify": False, "dedicated": None}


def test_v2_vector_ops_round_trip_and_v1_refuses_them(tmp_path):
    with TraceWriter(tmp_path / "v2.npz", {"steps": [0]}) as w:
        for ps in ("fwd", "bwd", "optimizer"):
            w.add_op(step=0, seq=0, pass_=ps, kind="vector", layer="l", module_type="L", aten="aten.add.Tensor",
                     operands=[], out_shape=[12], params=_VEC)
    tr = load_trace(tmp_path / "v2.npz")
    assert tr.header["version"] == 2 and [o.pass_ for o in tr.ops] == ["fwd", "bwd", "optimizer"]
    assert tr.ops[1].operands == () and tr.ops[1].params == _VEC and tr.tensors == []
    tr.close()
    with TraceWriter(tmp_path / "v1.npz", {"steps": [0]}, version=1) as w:
        with pytest.raises(TraceError, match="vector ops need trace version 2"):
            w.add_op(step=0, seq=0, pass_="fwd", kind="vector", layer="l", module_type="L", aten="x",
                     operands=[], out_shape=[12], params=_VEC)
        t = w.add_tensor(np.ones((2, 3), bool), dtype="float32", role="activation", layer="l")
        with pytest.raises(TraceError, match="params field 'recompute' needs trace version 2"):
            w.add_op(step=0, seq=0, pass_="fwd", kind="matmul", layer="l", module_type="L", aten="x",
                     operands=[Operand("a", t), Operand("b", t, True)], out_shape=[2, 2], params={"recompute": True})
    p = _variant(tmp_path, tmp_path / "v2.npz", lambda h: h.update(version=1))
    assert "op 0 (l vector fwd): vector ops need trace version 2 (the file says version 1)" in _one_line_error(p)


def test_v1_files_load_unchanged(tmp_path):
    # a v1 file written by the v1 code path (TraceWriter(version=1): the v1 format exactly) loads,
    # and so does every shipped v1 trace (their pinned numbers live in the validation tests)
    path = tmp_path / "v1.npz"
    with TraceWriter(path, {"steps": [0], "model": "m"}, version=1) as w:
        a = w.add_tensor(np.eye(4, dtype=bool), dtype="float32", role="activation", layer="fc")
        b = w.add_tensor(np.ones((4, 4), bool), dtype="float32", role="weight", layer="fc")
        w.add_op(step=0, seq=0, pass_="fwd", kind="matmul", layer="fc", module_type="Linear", aten="aten.mm.default",
                 operands=[Operand("a", a), Operand("b", b, True)], out_shape=[4, 4])
    h = _header(path)
    assert h["version"] == 1 and len(h["ops"]) == 1
    tr = load_trace(path)
    assert tr.header["version"] == 1 and tr.ops[0].kind == "matmul" and tr.mask(0).sum() == 4
    tr.close()
    shipped = sorted((Path(__file__).resolve().parent.parent / "traces").glob("*.npz"))
    v1 = [p for p in shipped if _header(p)["version"] == 1]
    assert len(v1) >= 7  # the seven traces shipped with format v1 stay v1
    for p in v1:
        with load_trace(p) as tr:
            assert tr.header["version"] == 1 and tr.ops


def test_add_vector_op_fast_path_checks_like_add_op(tmp_path):
    with TraceWriter(tmp_path / "f.npz", {"steps": [0]}) as w:
        w.add_vector_op(step=0, seq=0, pass_="bwd", layer="l", module_type="L", aten="aten.add.Tensor", params=_VEC)
        with pytest.raises(TraceError, match=r"op 1 \('l' vector fwd\): class 'x' is not one of"):
            w.add_vector_op(step=0, seq=1, pass_="fwd", layer="l", module_type="L", aten="a",
                            params={**_VEC, "class": "x"})
        with pytest.raises(TraceError, match="vector op pass 'dgrad' is not one of fwd, bwd, optimizer"):
            w.add_vector_op(step=0, seq=1, pass_="dgrad", layer="l", module_type="L", aten="a", params=_VEC)
    with load_trace(tmp_path / "f.npz") as tr:
        assert len(tr.ops) == 1 and tr.ops[0].out_shape == (12,) and tr.ops[0].params == _VEC
    with TraceWriter(tmp_path / "g.npz", {"steps": [0]}, version=1) as w:
        with pytest.raises(TraceError, match="vector ops need trace version 2"):
            w.add_vector_op(step=0, seq=0, pass_="fwd", layer="l", module_type="L", aten="a", params=_VEC)
        w.abort()
