"""Tiny hand-built traces (one conv layer and one linear layer, all three passes), built with the
real TraceWriter: `build` (with saved records) for the front-door tests (test_cli, test_inspect),
`build_sim` (ops only, a sparse output gradient) for the simulator tests (test_engine), and the
trace-format-v2 ones of the whole-step tests (`build_v2_step`, `build_unrecorded_attention`)."""

from __future__ import annotations

import numpy as np

from accelsim.sim.workload import conv_params
from accelsim.trace.format import Operand, TraceWriter

N, C, H, W, K, R, S = 2, 4, 6, 6, 8, 3, 3


def weight_mask() -> np.ndarray:
    """(K, C, R, S) weight that is 2:4 along C (channels 0 and 1 kept in every filter) -- hence
    *not* 2:4 along K: every group of 4 filters at c in {0, 1} holds 4 non-zeros."""
    w = np.zeros((K, C, R, S), dtype=bool)
    w[:, :2] = True
    return w


def build(path, *, steps=(0,), seed=0) -> dict:
    """Write the trace; returns the masks used, for hand checks."""
    rng = np.random.default_rng(seed)
    header = {"model": "tiny-convnet", "method": {"name": "swat", "params": {"sparsity": 0.5}},
              "dtype": "float32", "batch_size": N, "steps": list(steps)}
    masks = {}
    conv = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
            "input_shape": [N, C, H, W], "weight_shape": [K, C, R, S], "output_shape": [N, K, H, W]}
    with TraceWriter(path, header) as tw:
        seq = 0
        for step in steps:
            x = rng.random((N, C, H, W)) < 0.5          # input, dense in fwd (SWAT), sparse copy saved
            x[0, 0, 0, 0] = True
            xs = x & (rng.random(x.shape) < 0.6)        # the sparse input kept for wgrad
            w = weight_mask()
            g = np.ones((N, K, H, W), dtype=bool)       # output gradient: never sparsified
            a = rng.random((N, 16)) < 0.75              # linear input
            lw = rng.random((10, 16)) < 0.25            # linear weight (out, in)
            gl = np.ones((N, 10), dtype=bool)
            masks.update(x=x, xs=xs, w=w, g=g, a=a, lw=lw, gl=gl)
            tx = tw.add_tensor(x, dtype="float32", role="activation", layer="conv1")
            txs = tw.add_tensor(xs, dtype="float32", role="activation", layer="conv1")
            tw_ = tw.add_tensor(w, dtype="float32", role="weight", layer="conv1")
            tg = tw.add_tensor(g, dtype="float32", role="grad_output", layer="conv1")
            ta = tw.add_tensor(a, dtype="float32", role="activation", layer="fc")
            tlw = tw.add_tensor(lw, dtype="float32", role="weight", layer="fc")
            tgl = tw.add_tensor(gl, dtype="float32", role="grad_output", layer="fc")

            def op(pass_, kind, layer, operands, out_shape, params, aten):
                nonlocal seq
                seq += 1
                tw.add_op(step=step, seq=seq, pass_=pass_, kind=kind, layer=layer,
                          module_type="Conv2d" if kind == "conv2d" else "Linear", aten=aten,
                          operands=operands, out_shape=list(out_shape), params=params)
                return seq

            t0 = op("fwd", "conv2d", "conv1", [Operand("input", tx), Operand("weight", tw_)], (N, K, H, W), conv,
                    "aten.convolution.default")
            t1 = op("fwd", "matmul", "fc", [Operand("a", ta), Operand("b", tlw, True)], (N, 10), {"bias": True},
                    "aten.addmm.default")
            t2 = op("dgrad", "matmul", "fc", [Operand("a", tgl), Operand("b", tlw)], (N, 16), {}, "aten.mm.default")
            t3 = op("wgrad", "matmul", "fc", [Operand("a", tgl, True), Operand("b", ta)], (10, 16), {},
                    "aten.mm.default")
            t4 = op("dgrad", "conv2d", "conv1", [Operand("grad_output", tg), Operand("weight", tw_)], (N, C, H, W),
                    conv, "aten.convolution_backward.default")
            t5 = op("wgrad", "conv2d", "conv1", [Operand("grad_output", tg), Operand("input", txs)], (K, C, R, S),
                    conv, "aten.convolution_backward.default")
            saved = [("conv1", xs, "activation", txs, t0, t5), ("conv1", w, "weight", tw_, t0, t4),
                     ("fc", a, "activation", ta, t1, t3), ("fc", lw, "weight", tlw, t1, t2)]
            for i, (layer, mk, cat, tid, tp, tu) in enumerate(saved):
                tw.add_saved(step=step, layer=layer, shape=list(mk.shape), dtype="float32", nnz=int(mk.sum()),
                             category=cat, saved_by="ConvolutionBackward0" if layer == "conv1" else "AddmmBackward0",
                             storage=1000 * step + i, tensor=tid, t_pack=tp, t_unpack=tu)
            # a batch-norm style per-channel statistic, kept without a mask
            tw.add_saved(step=step, layer="bn1", shape=[K], dtype="float32", nnz=K, category="other",
                         saved_by="NativeBatchNormBackward0", storage=1000 * step + 9, tensor=None, t_pack=t0,
                         t_unpack=t4)
    return masks


def build_sim(path, *, seed=0):
    """Ops-only trace for the simulator tests (test_engine's hand-worked numbers depend on these
    exact masks and draws): conv input 50% dense, tiny_trace's 2:4-along-C weight, a 70%-dense
    output gradient; linear input 60%, weight 30%, dense linear output gradient."""
    rng = np.random.default_rng(seed)
    p = conv_params(N, C, H, W, K, R, S, padding=1)
    x = rng.random((N, C, H, W)) < 0.5
    w = weight_mask()
    g = rng.random((N, K, H, W)) < 0.7
    a = rng.random((N, 16)) < 0.6
    lw = rng.random((10, 16)) < 0.3
    gl = np.ones((N, 10), bool)
    with TraceWriter(path, {"model": "t", "batch_size": N, "steps": [0]}) as tw:
        tx = tw.add_tensor(x, dtype="float32", role="activation", layer="conv1")
        tw_ = tw.add_tensor(w, dtype="float32", role="weight", layer="conv1")
        tg = tw.add_tensor(g, dtype="float32", role="grad_output", layer="conv1")
        ta = tw.add_tensor(a, dtype="float32", role="activation", layer="fc")
        tlw = tw.add_tensor(lw, dtype="float32", role="weight", layer="fc")
        tgl = tw.add_tensor(gl, dtype="float32", role="grad_output", layer="fc")
        ops = [
            ("fwd", "conv2d", "conv1", [Operand("input", tx), Operand("weight", tw_)], (N, K, H, W), p),
            ("fwd", "matmul", "fc", [Operand("a", ta), Operand("b", tlw, True)], (N, 10), {}),
            ("dgrad", "matmul", "fc", [Operand("a", tgl), Operand("b", tlw)], (N, 16), {}),
            ("wgrad", "matmul", "fc", [Operand("a", tgl, True), Operand("b", ta)], (10, 16), {}),
            ("dgrad", "conv2d", "conv1", [Operand("grad_output", tg), Operand("weight", tw_)], (N, C, H, W), p),
            ("wgrad", "conv2d", "conv1", [Operand("grad_output", tg), Operand("input", tx)], (K, C, R, S), p),
        ]
        for i, (ps, kind, layer, operands, out, params) in enumerate(ops):
            tw.add_op(step=0, seq=i, pass_=ps, kind=kind, layer=layer, module_type="", aten="",
                      operands=operands, out_shape=list(out), params=params)
    return path


def build_raw(path, tensors, ops):
    """A trace of hand-written records, written as the format does (header.npy of JSON, one
    masks/<id>.npy per tensor) but *without* the writer's checks, so a test can hand the loader
    geometry the writer would refuse. tensors: [(shape, role, packed uint8 bytes)]; ops: dicts with
    pass, kind, operands [(name, tensor id, transposed)], out_shape, params."""
    import io
    import json
    import zipfile

    from accelsim.trace.format import SCHEMA, VERSION

    def npy(arr):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return buf.getvalue()

    trecs, orecs = [], []
    for i, (shape, role, packed) in enumerate(tensors):
        nnz = int(np.unpackbits(np.asarray(packed, np.uint8)).sum())
        trecs.append({"id": i, "shape": list(shape), "dtype": "float32", "role": role, "nnz": nnz, "layer": "l"})
    for i, o in enumerate(ops):
        orecs.append({"id": i, "step": 0, "seq": i, "pass": o["pass"], "kind": o["kind"], "layer": f"op{i}",
                      "module_type": "", "aten": "", "out_shape": list(o["out_shape"]), "params": o["params"],
                      "operands": [{"name": n, "tensor": t, "transposed": tr} for n, t, tr in o["operands"]]})
    header = {"schema": SCHEMA, "version": VERSION, "recorder": "test", "torch": None, "created": "",
              "model": "raw", "method": {"name": None, "params": {}}, "dtype": "float32", "batch_size": 1, "steps": [0], "meta": {},
              "tensors": trecs, "ops": orecs, "saved": []}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("header.npy", npy(np.frombuffer(json.dumps(header).encode(), np.uint8)))
        for i, (_, _, packed) in enumerate(tensors):
            zf.writestr(f"masks/{i}.npy", npy(np.asarray(packed, np.uint8)))
    return path


MiB = 1 << 20


def vparams(cls="elementwise", *, elements, read, written, dtype="float32", kernels=1, sparsify=False,
            dedicated=None, op="aten.add.Tensor") -> dict:
    """The params of a "vector" op record (trace format v2)."""
    return {"op": op, "class": cls, "elements": elements, "bytes_read": read, "bytes_written": written,
            "dtype": dtype, "kernels": kernels, "sparsify": sparsify, "dedicated": dedicated}


def build_v2_step(path, *, b: int = 2, L: int = 256, d: int = 64) -> None:
    """A v2 trace: one causal attention GEMM (QK^T of b x L x d), 8 MiB read / 4 MiB written of
    elementwise vector work in fwd and in bwd, and the method's 2:4 compression of a 4096 x 1024
    tensor (a dedicated kernel) in the optimizer pass."""
    att = {"role": "qk", "mask": "causal", "structural": True, "dropout_p": 0.0, "backend": "flash"}
    with TraceWriter(path, {"model": "t", "batch_size": b, "steps": [0]}) as tw:
        q, k = (tw.add_tensor(np.ones((b, L, d), bool), dtype="float32", role="activation", layer="attn")
                for _ in range(2))
        tw.add_op(step=0, seq=0, pass_="fwd", kind="bmm", layer="attn", module_type="", aten="aten.sdpa",
                  operands=[Operand("a", q), Operand("b", k, transposed=True)], out_shape=[b, L, L],
                  params={"attention": att})
        for seq, (pass_, p) in enumerate((
                ("fwd", vparams(elements=1 << 20, read=8 * MiB, written=4 * MiB)),
                ("bwd", vparams(elements=1 << 20, read=8 * MiB, written=4 * MiB)),
                ("optimizer", vparams("compress", elements=4096 * 1024, read=0, written=0, sparsify=True,
                                      dedicated="compress_2_4", op="accelsim.compress_2_4"))), start=1):
            tw.add_op(step=0, seq=seq, pass_=pass_, kind="vector", layer="x", module_type="", aten=p["op"],
                      operands=[], out_shape=[p["elements"]], params=p)


def build_unrecorded_attention(path) -> None:
    """A one-matmul trace whose header says two flash-attention calls were seen but not recorded
    (meta.unrecorded_ops): what run/compare must warn about."""
    a = np.ones((64, 64), bool)
    with TraceWriter(path, {"model": "t", "batch_size": 1, "steps": [0],
                            "meta": {"unrecorded_ops": {"aten._scaled_dot_product_flash_attention.default": 2}}}) as tw:
        ta = tw.add_tensor(a, dtype="float32", role="activation", layer="fc")
        tb = tw.add_tensor(a, dtype="float32", role="weight", layer="fc")
        tw.add_op(step=0, seq=0, pass_="fwd", kind="matmul", layer="fc", module_type="Linear", aten="aten.mm.default",
                  operands=[Operand("a", ta), Operand("b", tb)], out_shape=[64, 64], params={})
