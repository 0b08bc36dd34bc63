"""Hostile-input fuzzer: traces, hardware YAML, command lines and signals, generated from a seed.

    python benchmarks/fuzz.py [--seed 0] [--quick] [--timeout 20] [--keep DIR]

Every input is generated deterministically from the seed (the same seed gives the same files) and
run in a child process, never in this one:

- trace and hardware inputs go through ``load_trace`` / ``validate_masks`` / ``simulate`` /
  ``footprint`` / the report tables, or ``load_hw`` and a simulation on a tiny trace, in ONE worker
  subprocess (restarted after a hang or a crash), each input under a timeout;
- command lines and faults (signals, a full or closed stdout, a broken pipe) run ``accelsim`` in
  their own subprocess.

Criteria, per input: no traceback (an error is one ``AccelsimError`` line; the CLI exits 0 or 2,
or 128 + the signal it was sent), no hang (the timeout), peak resident memory under 1 GiB (inputs
here are all under 10 MB; the worker's high-water mark is reset before each input through
/proc/self/clear_refs; a CLI child is started by a small runner process, because a child's
``ru_maxrss`` counts the resident size of the process that spawned it: from a large parent, such as
a pytest process after heavy tests, every child would read as that large), and nothing clobbered (an output file that
existed before a failed or interrupted command is unchanged; no temp file is left; inputs are
never modified). The table at the end counts each; failing inputs are listed with the last line of
their traceback. tests/test_fuzz.py runs the ``--quick`` subset.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import random
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HWCONFIGS = ROOT / "hwconfigs"
MEMORY_LIMIT = 1 << 30  # peak RSS allowed per input
KIB = 1024


@dataclasses.dataclass
class Case:
    """One hostile input. ``kind``: "trace" | "hw" (in the worker) | "cli" | "fault" (own process)."""

    id: str
    kind: str
    path: str = ""                      # the input file (trace / hw)
    argv: list[str] = dataclasses.field(default_factory=list)  # cli / fault
    outputs: list[str] = dataclasses.field(default_factory=list)  # files that must not be clobbered
    signal: str = ""                    # fault: signal to send
    delay: float = 0.0                  # fault: seconds before the signal
    stdout: str = "pipe"                # fault: "pipe" | "full" | "closed" | "broken"
    quick: bool = False                 # part of the CI subset
    command: list[str] = dataclasses.field(default_factory=list)  # cli: run this instead of accelsim
    #                                   (the memory check's own tests, tests/test_fuzz.py)


@dataclasses.dataclass
class Result:
    id: str
    kind: str
    status: str          # "ok" | "traceback" | "hang" | "memory" | "bad-message" | "clobbered" | "bad-exit"
    detail: str = ""
    rss: int = 0         # peak resident bytes
    seconds: float = 0.0


# ------------------------------------------------------------------------------------ generation
CONV = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1,
        "input_shape": [2, 3, 6, 6], "weight_shape": [4, 3, 3, 3], "output_shape": [2, 4, 6, 6]}


# numpy is imported inside the generators: the CLI runner process (run_process) stays small
def write_base_trace(path: Path, seed: int = 0, layer: str = "conv") -> None:
    """A small valid trace: conv fwd/dgrad/wgrad, matmul fwd/dgrad/wgrad, one bmm, saved records."""
    import numpy as np

    from accelsim.trace.format import Operand, TraceWriter

    rng = np.random.default_rng(seed)
    with TraceWriter(path, {"model": "fuzz", "method": {"name": "dense", "params": {}}, "dtype": "float32",
                            "batch_size": 2, "steps": [0], "created": "2000-01-01T00:00:00+00:00",
                            "recorder": "fuzz"}) as w:
        def t(shape, role, ly, density):
            return w.add_tensor(rng.random(shape) < density, dtype="float32", role=role, layer=ly)
        x, wt, g = t((2, 3, 6, 6), "activation", layer, .5), t((4, 3, 3, 3), "weight", layer, .3), \
            t((2, 4, 6, 6), "grad_output", layer, .9)
        a, lw, gl = t((2, 16), "activation", "fc", .5), t((5, 16), "weight", "fc", .25), t((2, 5), "grad_output", "fc", 1)
        q, k = t((3, 4, 8), "activation", "attn", .6), t((3, 8, 4), "activation", "attn", .6)
        ops = [("fwd", "conv2d", layer, [Operand("input", x), Operand("weight", wt)], [2, 4, 6, 6], CONV),
               ("dgrad", "conv2d", layer, [Operand("grad_output", g), Operand("weight", wt)], [2, 3, 6, 6], CONV),
               ("wgrad", "conv2d", layer, [Operand("grad_output", g), Operand("input", x)], [4, 3, 3, 3], CONV),
               ("fwd", "matmul", "fc", [Operand("a", a), Operand("b", lw, True)], [2, 5], {"bias": True}),
               ("dgrad", "matmul", "fc", [Operand("a", gl), Operand("b", lw)], [2, 16], {}),
               ("wgrad", "matmul", "fc", [Operand("a", gl, True), Operand("b", a)], [5, 16], {}),
               ("fwd", "bmm", "attn", [Operand("a", q), Operand("b", k)], [3, 4, 4], {})]
        for seq, (pass_, kind, ly, operands, out, params) in enumerate(ops):
            w.add_op(step=0, seq=seq, pass_=pass_, kind=kind, layer=ly, module_type="M", aten="aten.x",
                     operands=operands, out_shape=out, params=params)
        w.add_saved(step=0, layer=layer, shape=[2, 3, 6, 6], dtype="float32", nnz=w.tensors[x].nnz,
                    category="activation", saved_by="ConvolutionBackward0", storage=0, tensor=x, t_pack=0, t_unpack=2)
        w.add_saved(step=0, layer="bn", shape=[4], dtype="float32", nnz=4, category="other",
                    saved_by="NativeBatchNormBackward0", storage=1, tensor=None, t_pack=0, t_unpack=None)


def _members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _npy(data: bytes) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.frombuffer(data, np.uint8))
    return buf.getvalue()


def _write_zip(path: Path, members: list[tuple[str, bytes]]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names are one of the inputs
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in members:  # fixed timestamps: the same seed gives the same bytes
                z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED)


def _with_header(path: Path, base: list[tuple[str, bytes]], header: Any, raw: bytes | None = None) -> None:
    text = raw if raw is not None else json.dumps(header, allow_nan=True).encode("utf-8", "surrogatepass")
    _write_zip(path, [(n, _npy(text) if n == "header.npy" else d) for n, d in base])


def _header_of(base: list[tuple[str, bytes]]) -> dict:
    import numpy as np

    d = dict(base)["header.npy"]
    return json.loads(np.lib.format.read_array(io.BytesIO(d)).tobytes())


HOSTILE_VALUES: list[Any] = [None, -1, 0, 1, 2**31, 2**63, 10**30, -10**30, 1.5, float("nan"), float("inf"), True,
                             "", "x" * 100_000, "\ud800", [], {}, [1] * 1000, [[[[[[[[[[1]]]]]]]]]], {"a": {"b": {}}},
                             [2**62, 2**62], [0, 0], [10**7, 1, 1], "conv2d", "fwd", "weight"]


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:12]):
            out += _paths(v, prefix + (i,))
    return out


def _set(obj: Any, path: tuple, value: Any, delete: bool = False) -> None:
    for p in path[:-1]:
        obj = obj[p]
    if delete and isinstance(obj, dict):
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


def gen_traces(rng: random.Random, d: Path, n_random: int) -> list[Case]:
    import numpy as np

    base_path = d / "base.npz"
    write_base_trace(base_path)
    base = _members(base_path)
    blob = base_path.read_bytes()
    header = _header_of(base)
    cases: list[Case] = [Case("trace/base", "trace", str(base_path), quick=True)]

    def add(name: str, quick: bool = False) -> Path:
        p = d / f"{name.replace('/', '_')}.npz"
        cases.append(Case(f"trace/{name}", "trace", str(p), quick=quick))
        return p

    for i in range(n_random):  # truncated at a random byte
        add(f"truncate/{i:03d}", quick=i % 8 == 0).write_bytes(blob[: rng.randrange(len(blob))])
    for i in range(n_random):  # 1-8 random bytes changed
        b = bytearray(blob)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        add(f"flip/{i:03d}", quick=i % 8 == 0).write_bytes(bytes(b))
    paths = _paths(header)
    for i in range(2 * n_random):  # one header field replaced by a hostile value, or deleted
        h = json.loads(json.dumps(header))
        path = rng.choice(paths)
        try:
            _set(h, path, rng.choice(HOSTILE_VALUES), delete=rng.random() < 0.15)
        except (IndexError, KeyError, TypeError):
            pass
        _with_header(add(f"header/{i:03d}", quick=i % 8 == 0), base, h)
    for i in range(n_random):  # legal but unusual geometry: must simulate without a traceback
        p = add(f"geometry/random_{i:03d}", quick=i % 8 == 0)
        try:
            write_random_geometry(p, rng)
        except Exception as e:  # the writer refuses an empty GEMM (a one-line TraceError): keep the text
            p.write_bytes(b"writer refused: " + str(e).replace(str(p), "TRACE")[:200].encode())
    # schema, version, not JSON, not an object, deep JSON, huge numbers
    for name, raw in [("schema", None), ("version3", None), ("version_bool", None), ("not_json", b"{nope"),
                      ("not_object", b"[1, 2]"), ("deep_json", b"[" * 100_000 + b"]" * 100_000),
                      ("big_int", b'{"schema": "accelsim-trace", "version": 1' + b", \"x\": " + b"9" * 5000 + b"}"),
                      ("latin1", "{\"schema\": \"\xe9\"}".encode("latin-1")), ("empty", b"")]:
        h = json.loads(json.dumps(header))
        h.update({"schema": {"schema": "other"}, "version3": {"version": 3}, "version_bool": {"version": True}}
                 .get(name, {}))
        _with_header(add(f"schema/{name}", quick=True), base, h, raw)
    # user values that reach an error message: they must arrive cut, not whole
    for name, mut in {"long_layer_in_error": lambda h: h["ops"][0].update(layer="x" * 100_000, out_shape=[1]),
                      "long_bias_in_error": lambda h: h["ops"][3].update(params={"bias": "b" * 100_000}),
                      "long_stride_in_error": lambda h: h["ops"][0]["params"].update(stride=[1] * 60),
                      "long_dtype": lambda h: h["tensors"][0].update(dtype="d" * 100_000),
                      "many_steps": lambda h: h.update(steps=list(range(100_000)))}.items():
        h = json.loads(json.dumps(header))
        mut(h)
        _with_header(add(f"message/{name}", quick=True), base, h)
    # consistent but absurd geometry (issue 9 section 3): the matmul fwd op and its tensors
    h0 = header
    for name, (ash, bsh) in {"matmul_1e12_macs": ((10**4, 10**4), (10**4, 10**4)),
                             "k0_m_n_2e62": ((2**62, 0), (0, 2**62)), "bmm_batch_1e7": ((10**7, 1, 1), (10**7, 1, 1)),
                             "c0": ((4, 0), (0, 4))}.items():
        h = json.loads(json.dumps(h0))
        kind = "bmm" if len(ash) == 3 else "matmul"
        a = {"id": len(h["tensors"]), "shape": list(ash), "dtype": "float32", "role": "activation", "nnz": 0,
             "layer": "big"}
        b = dict(a, id=a["id"] + 1, shape=list(bsh), role="weight")
        h["tensors"] += [a, b]
        h["ops"].append({"id": len(h["ops"]), "step": 0, "seq": 99, "pass": "fwd", "kind": kind, "layer": "big",
                         "module_type": "M", "aten": "aten.x", "operands": [{"name": "a", "tensor": a["id"]},
                                                                             {"name": "b", "tensor": b["id"]}],
                         "out_shape": [*ash[:-1], bsh[-1]], "params": {}})
        zeros = {t["id"]: _npy(bytes((math_prod(t["shape"]) + 7) // 8)) for t in (a, b)
                 if math_prod(t["shape"]) < 1 << 24}
        p = add(f"geometry/{name}", quick=True)
        _write_zip(p, [(n, _npy(json.dumps(h).encode()) if n == "header.npy" else dd) for n, dd in base]
                   + [(f"masks/{tid}.npy", z) for tid, z in zeros.items()])
    for name, pad in {"conv_pad_1e5": 10**5, "conv_pad_1e3": 1000}.items():
        h = json.loads(json.dumps(h0))
        conv = h["ops"][0]
        out = [2, 4, 6 + 2 * pad - 2, 6 + 2 * pad - 2]
        conv["params"] = dict(conv["params"], padding=[pad, pad], output_shape=out)
        conv["out_shape"] = out
        h["ops"] = [conv]
        _with_header(add(f"geometry/{name}", quick=True), base, h)
    # zip bombs and hostile members
    lw = header["tensors"][0]
    need = (math_prod(lw["shape"]) + 7) // 8
    members = dict(base)
    _write_zip(add("zip/mask_64MiB_declared", quick=True),
               [(n, _npy(bytes(64 << 20)) if n == "masks/0.npy" else dd) for n, dd in base])
    _write_zip(add("zip/header_whitespace_48MiB", quick=True),
               [("header.npy", _npy(b"{" + b" " * (48 << 20) + b"}"))])
    _write_zip(add("zip/duplicate_member", quick=True), base + [("masks/0.npy", members["masks/0.npy"])])
    for i, extra in enumerate(["masks/0.npy/x", "masks/", "../../etc/passwd", "masks/99.npy", "header.npy.bak"]):
        _write_zip(add(f"zip/extra_member_{i}", quick=i == 0), base + [(extra, b"x")])
    _write_zip(add("zip/mask_wrong_size"), [(n, _npy(bytes(need + 1)) if n == "masks/0.npy" else dd) for n, dd in base])
    _write_zip(add("zip/mask_not_uint8"), [(n, (lambda b: (np.lib.format.write_array(b, np.zeros(4, np.float64)),
                                                            b.getvalue())[1])(io.BytesIO()) if n == "masks/0.npy" else dd)
                                           for n, dd in base])
    # a consistent tensor of 2^26 elements, all zero: 8 MiB packed deflates to ~8 KB (a legal ratio bomb)
    h = json.loads(json.dumps(header))
    big = {"id": len(h["tensors"]), "shape": [1 << 13, 1 << 13], "dtype": "float32", "role": "other", "nnz": 0,
           "layer": "ratio"}
    h["tensors"].append(big)
    _write_zip(add("zip/ratio_8MiB_mask", quick=True), [(n, _npy(json.dumps(h).encode()) if n == "header.npy" else dd)
                                                        for n, dd in base] + [(f"masks/{big['id']}.npy", _npy(bytes(1 << 23)))])
    # the tensor limit: a header declaring a 2^40-element tensor
    h = json.loads(json.dumps(header))
    h["tensors"][0]["shape"] = [1 << 20, 1 << 20]
    _with_header(add("zip/tensor_2e40", quick=True), base, h)
    # lying central directory: member 0 claims 155 bytes uncompressed, holds 64 MiB
    p = add("zip/lying_size", quick=True)
    _write_zip(p, [(n, _npy(bytes(64 << 20)) if n == "masks/0.npy" else dd) for n, dd in base])
    raw = bytearray(p.read_bytes())
    i = raw.find(b"masks/0.npy", raw.find(b"PK\x01\x02"))
    raw[i - 46 + 24:i - 46 + 28] = (155).to_bytes(4, "little")
    p.write_bytes(bytes(raw))
    # a lone surrogate in a layer name
    write_base_trace(add("surrogate_layer", quick=True), layer="conv\ud800")
    # paths that are not regular files
    fifo = d / "fifo.npz"
    os.mkfifo(fifo)
    zero = d / "zero.npz"
    zero.symlink_to("/dev/zero")
    loop = d / "loop.npz"
    loop.symlink_to(loop)
    for name, p in [("fifo", fifo), ("dev_zero", zero), ("directory", d), ("loop", loop),
                    ("too_long", d / ("n" * 5000 + ".npz")), ("missing", d / "missing.npz")]:
        cases.append(Case(f"trace/path/{name}", "trace", str(p), quick=True))
    return cases


def write_random_geometry(path: Path, rng: random.Random) -> None:
    """A valid trace of small random but legal geometry: a conv (stride, padding, dilation, groups,
    1x1 .. 5x5 kernels, empty batches) and a matmul / bmm with dims from 0 to 70, random densities
    (all-zero and all-one masks included) -- what the simulator must take without a traceback."""
    import numpy as np

    from accelsim.trace.format import Operand, TraceWriter

    nrng = np.random.default_rng(rng.randrange(2**32))

    def mask(shape):
        d = rng.choice([0.0, 1.0, 0.5, 0.1, 0.9, nrng.random()])
        return nrng.random(shape) < d

    while True:
        g = rng.choice([1, 1, 2, 4])
        n, c, k = rng.choice([0] + [1, 2, 3] * 4), g * rng.randint(1, 6), g * rng.randint(1, 6)
        r, sk = rng.randint(1, 5), rng.randint(1, 5)
        st, pd, dl = [rng.randint(1, 3) for _ in range(2)], [rng.randint(0, 3) for _ in range(2)], \
            [rng.randint(1, 2) for _ in range(2)]
        h, w = rng.randint(1, 12), rng.randint(1, 12)
        p_ = (h + 2 * pd[0] - dl[0] * (r - 1) - 1) // st[0] + 1
        q_ = (w + 2 * pd[1] - dl[1] * (sk - 1) - 1) // st[1] + 1
        if p_ >= 1 and q_ >= 1:
            break
    conv = {"stride": st, "padding": pd, "dilation": dl, "groups": g, "input_shape": [n, c, h, w],
            "weight_shape": [k, c // g, r, sk], "output_shape": [n, k, p_, q_]}
    m_, k_, n_ = (rng.choice([0] + [1, 2, 3, 7, 16, 33, 70] * 4) for _ in range(3))
    b_ = rng.choice([1, 2, 5])
    with TraceWriter(path, {"steps": [0], "created": "2000-01-01T00:00:00+00:00", "recorder": "fuzz"}) as tw:
        def t(shape, role):
            return tw.add_tensor(mask(shape), dtype=rng.choice(["float32", "float16", "bfloat16"]), role=role,
                                 layer="L")
        x, wt, go = t((n, c, h, w), "activation"), t((k, c // g, r, sk), "weight"), t((n, k, p_, q_), "grad_output")
        a, b, ga = t((m_, k_), "activation"), t((k_, n_), "weight"), t((m_, n_), "grad_output")
        ba, bb = t((b_, m_, k_), "activation"), t((b_, k_, n_), "activation")
        ops = [("fwd", "conv2d", [Operand("input", x), Operand("weight", wt)], [n, k, p_, q_], conv),
               ("dgrad", "conv2d", [Operand("grad_output", go), Operand("weight", wt)], [n, c, h, w], conv),
               ("wgrad", "conv2d", [Operand("grad_output", go), Operand("input", x)], [k, c // g, r, sk], conv),
               ("fwd", "matmul", [Operand("a", a), Operand("b", b)], [m_, n_], {}),
               ("dgrad", "matmul", [Operand("a", ga), Operand("b", b, True)], [m_, k_], {}),
               ("wgrad", "matmul", [Operand("a", a, True), Operand("b", ga)], [k_, n_], {}),
               ("fwd", "bmm", [Operand("a", ba), Operand("b", bb)], [b_, m_, n_], {})]
        for seq, (pass_, kind, operands, out, params) in enumerate(ops):
            tw.add_op(step=0, seq=seq, pass_=pass_, kind=kind, layer="L", module_type="M", aten="aten.x",
                      operands=operands, out_shape=out, params=params)


def math_prod(shape) -> int:
    out = 1
    for x in shape:
        out *= int(x)
    return out


HW_ISSUE_LIST = {  # issue 9 section 3, the YAML bullet
    "inf_bandwidth": ("bandwidth: 256 GB/s", "bandwidth: .inf"),
    "nan_bandwidth": ("bandwidth: 256 GB/s", "bandwidth: .nan"),
    "clock_1e400": ("clock: 1 GHz", "clock: 1e400"),
    "bandwidth_1e-300": ("bandwidth: 256 GB/s", "bandwidth: 1e-300 B/s"),
    "latency_1e300": ("latency: 100 ns", "latency: 1e300"),
    "tiles_10e400": ("tiles: 16", "tiles: 1" + "0" * 400),
    "kind_base60": ("kind: one_sided", "kind: 2:4"),
    "unhashable_key": ("tiles: 16", "? [a, b]\n  : 16"),
    "deep_nesting": ("tiles: 16", "tiles: " + "[" * 10_000 + "]" * 10_000),
}


def _billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, c in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{c}: &{c} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\nname: *i\n"


MUTATION_TOKENS = ["-1", "0", ".inf", "-.inf", ".nan", "1e400", "1e-300", "2:4", "~", "[]", "{}", "[1, 2]", "yes",
                   "0x10", "0o17", "1_000", "!!binary aGVsbG8=", "&x 1", "*x", "\"\\ud800\"", "1 XB/s", "5 GHz/s",
                   "123456789012345678901234567890", "'", "\t", "- a", "?", ": :", "%TAG", "!!python/object:os.system"]


def gen_hw(rng: random.Random, d: Path, n_random: int) -> list[Case]:
    td = (HWCONFIGS / "tensordash.yaml").read_text()
    cases: list[Case] = []

    def add(name: str, text: str, quick: bool = False) -> None:
        p = d / f"hw_{name.replace('/', '_')}.yaml"
        p.write_text(text, encoding="utf-8", errors="surrogatepass")
        cases.append(Case(f"hw/{name}", "hw", str(p), quick=quick))

    for name, (old, new) in HW_ISSUE_LIST.items():
        assert old in td, old
        add(f"issue/{name}", td.replace(old, new, 1), quick=True)
    m_text = (HWCONFIGS / "systolic_128_nm.yaml").read_text()
    add("issue/m_above_64", m_text.replace("m: 4", "m: 128", 1) if "m: 4" in m_text else m_text + "\n", quick=True)
    add("issue/billion_laughs", _billion_laughs(), quick=True)
    levels = "".join(f"  - name: l{i}\n    capacity: 1 KiB\n" for i in range(200_000))  # ~7 MB
    add("issue/many_memory_levels", td.split("memory:")[0] + "memory:\n" + levels, quick=False)
    add("issue/many_memory_levels_small", td.split("memory:")[0] + "memory:\n" + levels[: 30 * 20_000], quick=True)
    shipped = sorted(HWCONFIGS.glob("*.yaml"))
    for f in shipped:
        add(f"shipped/{f.stem}", f.read_text(), quick=True)
    for i in range(n_random):  # random line-level mutations of a shipped file
        f = rng.choice(shipped)
        lines = f.read_text().splitlines()
        for _ in range(rng.randint(1, 3)):
            j = rng.randrange(len(lines))
            op = rng.randrange(6)
            if op == 0:
                del lines[j]
            elif op == 1:
                lines.insert(j, lines[j])
            elif op == 2 and ":" in lines[j]:
                key = lines[j].split(":", 1)[0]
                lines[j] = f"{key}: {rng.choice(MUTATION_TOKENS)}"
            elif op == 3:
                lines[j] = " " * rng.randint(0, 6) + lines[j].lstrip()
            elif op == 4:
                k = rng.randrange(len(lines[j]) + 1)
                lines[j] = lines[j][:k] + rng.choice(["x", "_", "0", "9", " ", ":", "#", "-"]) + lines[j][k:]
            else:
                lines[j] = lines[j].replace(lines[j].split(":", 1)[0], rng.choice(
                    ["name", "input_sram", "sram", "rows", "kind", "n", "m", "memory", "clock"]), 1)
        add(f"mutate/{f.stem}/{i:03d}", "\n".join(lines) + "\n", quick=i % 10 == 0)
    for name, p in [("fifo", d / "hwfifo.yaml"), ("dev_zero", d / "hwzero.yaml"), ("directory", d)]:
        if name == "fifo":
            os.mkfifo(p)
        elif name == "dev_zero":
            p.symlink_to("/dev/zero")
        cases.append(Case(f"hw/path/{name}", "hw", str(p), quick=True))
    return cases


def gen_cli(rng: random.Random, d: Path, trace: Path) -> list[Case]:
    A100, TD = str(HWCONFIGS / "a100_24.yaml"), str(HWCONFIGS / "tensordash.yaml")
    t = str(trace)
    old = d / "old"
    old.mkdir(exist_ok=True)
    js, cs, png, npz = (str(old / f"out.{e}") for e in ("json", "csv", "png", "npz"))
    argvs: dict[str, list[str]] = {
        "no_args": [], "unknown_command": ["frobnicate"], "unknown_flag": ["run", t, "--hw", TD, "--bogus"],
        "run_no_hw": ["run", t], "run_hw_twice": ["run", t, "--hw", TD, "--hw", A100],
        "run_steps_garbage": ["run", t, "--hw", TD, "--steps", "a-b"],
        "run_steps_huge": ["run", t, "--hw", TD, "--steps", "0-100000000000"],
        "run_steps_reversed": ["run", t, "--hw", TD, "--steps", "5-1"],
        "run_steps_negative": ["run", t, "--hw", TD, "--steps", "-3"],
        "run_steps_digits": ["run", t, "--hw", TD, "--steps", "9" * 5000],
        "run_format_bad": ["run", t, "--hw", TD, "--format", "zip"],
        "run_json_wrong_ext": ["run", t, "--hw", TD, "--json", str(old / "x.txt")],
        "run_json_is_dir": ["run", t, "--hw", TD, "--json", str(old)],
        "run_json_no_parent": ["run", t, "--hw", TD, "--json", str(d / "nope" / "x.json")],
        "run_json_devfull": ["run", t, "--hw", TD, "-q", "--json", "/dev/full"],
        "run_trace_is_yaml": ["run", TD, "--hw", TD], "run_hw_is_trace": ["run", t, "--hw", t],
        "run_hw_name_unknown": ["run", t, "--hw", "no_such_machine"],
        "run_good_outputs_kept_on_error": ["run", t, "--hw", TD, "--steps", "7", "--json", js, "--csv", cs],
        "run_ok": ["run", t, "--hw", TD, "-q", "--json", js, "--csv", cs],
        "compare_one_hw": ["compare", t, "--hw", TD], "compare_same_twice": ["compare", t, "--hw", TD, "--hw", TD, "-q"],
        "inspect_nm_bad": ["inspect", t, "--nm", "4:2"], "inspect_nm_zero": ["inspect", t, "--nm", "0:0"],
        "inspect_nm_text": ["inspect", t, "--nm", "\udcff:4"], "inspect_ok": ["inspect", t],
        "plot_speedup_no_hw": ["plot", "speedup", t, "-o", png], "plot_bad_ext": ["plot", "memory", t, "-o", str(old / "x.gif")],
        "plot_bad_what": ["plot", "pie", t, "-o", png],
        "record_bad_model": ["record", "--model", "nope", "--method", "dense", "-o", npz],
        "record_bad_method": ["record", "--model", "transformer-block", "--method", "nope", "-o", npz],
        "record_batch_zero": ["record", "--model", "transformer-block", "--method", "dense", "--batch", "0", "-o", npz],
        "record_steps_negative": ["record", "--model", "transformer-block", "--method", "dense", "--steps", "-1", "-o", npz],
        "record_lr_nan": ["record", "--model", "transformer-block", "--method", "dense", "--lr", "nan", "-o", npz],
        "record_sparsity_2": ["record", "--model", "transformer-block", "--method", "swat", "--sparsity", "2", "-o", npz],
        "record_wrong_ext": ["record", "--model", "transformer-block", "--method", "dense", "-o", str(old / "x.zip")],
        "long_path": ["inspect", str(d / ("n" * 5000 + ".npz"))],
        "long_hw_path": ["run", t, "--hw", str(d / ("n" * 5000 + ".yaml"))],
        "huge_unknown_arg": ["inspect", t, "z" * 100_000], "huge_steps_text": ["inspect", t, "--steps", "1," * 50_000],
        "json_long_name": ["run", t, "--hw", TD, "--json", str(d / ("j" * 5000 + ".json"))],
        # gemm: shapes the 2:4 kernel cannot take (N = 50, M = 1, K = 3), absurd or non-numeric dims
        "gemm_unaligned_2_4": ["gemm", "64", "50", "64", "--hw", A100, "--sparse", "2:4"],
        "gemm_m1_int8_2_4": ["gemm", "1", "4096", "4096", "--hw", A100, "--sparse", "2:4", "--dtype", "int8"],
        "gemm_k3_2_4": ["gemm", "3", "50", "3", "--hw", "h100_24", "--sparse", "2:4", "--dtype", "fp8"],
        "gemm_zero_dim": ["gemm", "0", "64", "64", "--hw", A100], "gemm_huge_dim": ["gemm", "9" * 40, "64", "64", "--hw", A100],
        "gemm_dim_text": ["gemm", "1e3", "64", "\udcff", "--hw", A100], "gemm_not_gpu": ["gemm", "64", "64", "64", "--hw", TD],
        "gemm_bad_dtype": ["gemm", "64", "64", "64", "--hw", A100, "--dtype", "fp4"],
        "gemm_bad_sparse": ["gemm", "64", "64", "64", "--hw", A100, "--sparse", "1:4"],
        "gemm_json_devfull": ["gemm", "64", "64", "64", "--hw", A100, "--json", "/dev/full"],
    }
    quick = {"unknown_flag", "run_steps_huge", "huge_unknown_arg", "run_json_devfull", "run_good_outputs_kept_on_error", "inspect_nm_text",
             "record_batch_zero", "gemm_unaligned_2_4", "gemm_k3_2_4"}
    return [Case(f"cli/{k}", "cli", argv=v, outputs=[js, cs, png, npz] if k != "run_ok" else [], quick=k in quick)
            for k, v in argvs.items()]


def gen_faults(d: Path, trace: Path) -> list[Case]:
    TD, A100 = str(HWCONFIGS / "tensordash.yaml"), str(HWCONFIGS / "a100_24.yaml")
    big = str(ROOT / "traces" / "resnet50_imagenet_swat_u80.npz")
    f = d / "faults"
    f.mkdir(exist_ok=True)
    cases = []
    for i, (sig, delay) in enumerate([("SIGTERM", 2.5), ("SIGHUP", 2.5), ("SIGINT", 2.5), ("SIGTERM", 0.3),
                                      ("SIGTERM", 4.0), ("SIGHUP", 5.0)]):
        out = str(f / f"run{i}.json")
        cases.append(Case(f"fault/run_json_{sig}_{delay}", "fault", argv=["run", big, "--hw", A100, "-q", "--json", out],
                          outputs=[out], signal=sig, delay=delay, quick=i == 0))
    for i, (sig, delay) in enumerate([("SIGTERM", 8.0), ("SIGHUP", 10.0)]):
        out = str(f / f"rec{i}.npz")
        cases.append(Case(f"fault/record_{sig}", "fault", argv=["record", "--model", "transformer-block", "--method",
                                                                 "dense", "--warmup", "0", "--steps", "100000", "-q",
                                                                 "-o", out], outputs=[out], signal=sig, delay=delay))
    for mode in ("full", "closed", "broken"):
        cases.append(Case(f"fault/stdout_{mode}", "fault", argv=["run", str(trace), "--hw", TD], stdout=mode,
                          quick=mode == "full"))
    return cases


def generate(seed: int, d: Path, n_random: int = 40) -> list[Case]:
    """All hostile inputs for ``seed``, written under ``d`` (the same seed gives the same bytes)."""
    rng = random.Random(seed)
    traces = gen_traces(rng, d, n_random)
    hw = gen_hw(rng, d, 3 * n_random)
    base = Path(traces[0].path)
    return traces + hw + gen_cli(rng, d, base) + gen_faults(d, base)


# --------------------------------------------------------------------------------------- worker
def _peak_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * KIB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB


def _exercise(case: dict, tiny: str) -> None:
    """What a user does with the input: load it, read every mask, simulate, print, write JSON."""
    from accelsim.hw import load_hw
    from accelsim.report.table import footprint_table, op_table, totals_table
    from accelsim.report.writers import _plain
    from accelsim.sim import simulate
    from accelsim.sim.footprint import footprint
    from accelsim.trace.format import load_trace

    shipped = sorted(HWCONFIGS.glob("*.yaml"))
    if case["kind"] == "trace":
        trace = load_trace(case["path"])
        trace.validate_masks()
        digest = int(hashlib.sha1(case["id"].encode()).hexdigest(), 16)
        hws = [load_hw(shipped[digest % len(shipped)])]
    else:
        hws = [load_hw(case["path"])]
        trace = load_trace(tiny)
    for hw in hws:
        res = simulate(trace, hw)
        text = op_table(res) + totals_table(res)
        json.dumps(_plain(res.to_dict()), allow_nan=False).encode("utf-8", "backslashreplace")
    fp = footprint(trace, format="auto")
    text += footprint_table(fp)
    text.encode("utf-8", "backslashreplace")


def worker_main(tiny: str) -> None:
    """Read one JSON case per line on stdin, answer one JSON result per line (protocol on fd 3)."""
    from accelsim.errors import AccelsimError

    out = os.fdopen(int(os.environ["ACCELSIM_FUZZ_FD"]), "w", buffering=1)
    sys.stdout = open(os.devnull, "w")
    exact = _peak_reset()
    for line in sys.stdin:
        case = json.loads(line)
        _peak_reset()
        t0 = time.monotonic()
        status, detail = "ok", ""
        try:
            _exercise(case, tiny)
        except AccelsimError as e:
            msg = str(e)
            if "\n" in msg or len(msg) > 1000:
                status, detail = "bad-message", f"{len(msg)} chars: {msg[:200]!r}"
        except MemoryError:
            status, detail = "memory", "MemoryError"
        except BaseException as e:  # noqa: BLE001 - the point is to catch anything
            import traceback

            tb = traceback.extract_tb(e.__traceback__)
            where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
            status, detail = "traceback", f"{type(e).__name__}: {str(e)[:200]} ({where})"
        rss = _peak() if exact else 0
        out.write(json.dumps({"status": status, "detail": detail, "rss": rss, "seconds": time.monotonic() - t0})
                  + "\n")


class _Child:
    """This script in a subprocess (--worker, --runner): requests on its stdin, one JSON answer per
    line on the pipe ``self.r`` (fd ACCELSIM_FUZZ_FD there)."""

    p: subprocess.Popen | None = None

    def _spawn(self, *args: str) -> None:
        r, w = os.pipe()
        env = dict(os.environ, PYTHONWARNINGS="ignore", ACCELSIM_FUZZ_FD=str(w))
        self.p = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  pass_fds=(w,), env=env, text=True)
        os.close(w)
        self.r = os.fdopen(r, "r")

    def close(self) -> None:
        if self.p is not None:
            self.p.kill()
            self.p.wait()
            self.r.close()
            self.p = None


class Worker(_Child):
    """The in-process runner for trace and hw cases, in a subprocess, restarted after a hang or a
    crash."""

    def __init__(self, tiny: Path, timeout: float):
        self.tiny, self.timeout = tiny, timeout

    def _start(self) -> None:
        self._spawn("--worker", str(self.tiny))
        # warm-up (imports, numba cache) under no timeout, on the tiny trace itself
        self._send({"id": "warmup", "kind": "hw", "path": str(HWCONFIGS / "tensordash.yaml")}, timeout=600)

    def _send(self, case: dict, timeout: float) -> dict | None:
        self.p.stdin.write(json.dumps(case) + "\n")
        self.p.stdin.flush()
        ready, _, _ = select.select([self.r], [], [], timeout)
        if not ready:
            return None
        line = self.r.readline()
        return json.loads(line) if line else {"status": "traceback", "detail": "worker died (crash?)", "rss": 0,
                                             "seconds": 0.0}

    def run(self, case: Case) -> Result:
        if self.p is None:
            self._start()
        t0 = time.monotonic()
        try:
            ans = self._send(dataclasses.asdict(case), self.timeout)
        except (BrokenPipeError, OSError):
            ans = {"status": "traceback", "detail": "worker died (crash?)", "rss": 0, "seconds": 0.0}
        if ans is None or ans["detail"].startswith("worker died"):
            self.close()
        if ans is None:
            return Result(case.id, case.kind, "hang", f"no answer in {self.timeout:g} s", 0, time.monotonic() - t0)
        st = ans["status"]
        if st == "ok" and ans["rss"] > MEMORY_LIMIT:
            st = "memory"
        return Result(case.id, case.kind, st, ans["detail"], ans["rss"], ans["seconds"])


# ---------------------------------------------------------------------------------- cli / faults
def _snapshot(paths: list[str]) -> dict[str, bytes | None]:
    out = {}
    for p in paths:
        try:
            out[p] = Path(p).read_bytes()
        except OSError:
            out[p] = None
    return out


def run_process(case: Case, timeout: float) -> Result:
    """One `accelsim` child: exit status, stderr, its own peak RSS (wait4), clobbered outputs."""
    for p in case.outputs:  # an old output that a failing or interrupted command must not touch
        Path(p).write_bytes(b"old output " + p.encode())
    before = _snapshot(case.outputs)
    dirs = {str(Path(p).parent) for p in case.outputs}
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    cmd = case.command or [sys.executable, "-m", "accelsim", *case.argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdout: Any = out
        extra: dict = {}
        if case.stdout == "full":
            stdout = open("/dev/full", "w")
        elif case.stdout == "closed":
            extra["preexec_fn"] = lambda: os.close(1)
        elif case.stdout == "broken":
            r, w = os.pipe()
            stdout = w
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL, **extra)
        if case.stdout == "broken":
            os.close(w)
            os.close(r)  # the reader is gone before the first line
        sent = False
        status = ru = None
        while True:
            pid, st, r_usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                status, ru = st, r_usage
                break
            now = time.monotonic() - t0
            if case.signal and not sent and now >= case.delay:
                p.send_signal(getattr(signal, case.signal))
                sent = True
            if now > timeout:
                p.kill()
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                return Result(case.id, case.kind, "hang", f"killed after {timeout:g} s", ru.ru_maxrss * KIB, now)
            time.sleep(0.02)
        p.returncode = rc = os.waitstatus_to_exitcode(status)
        if case.stdout == "full":
            stdout.close()
        secs = time.monotonic() - t0
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    rss = ru.ru_maxrss * KIB
    res = Result(case.id, case.kind, "ok", f"exit {rc}", rss, secs)
    # a signal handled (128 + n; 130 for Ctrl-C) or, if it came before the handlers were installed
    # during start-up, the default action (-n): either way nothing may be left behind (checked below)
    sig = getattr(signal, case.signal) if case.signal else None
    ok_codes = {0, 2} | ({128 + sig, 130, -sig} if sig else set())
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    if "Traceback" in stderr or "Exception ignored" in stderr:
        res.status, res.detail = "traceback", (lines[-1] if lines else "")[:200]
    elif rc not in ok_codes:
        res.status, res.detail = "bad-exit", f"exit {rc}: {(lines[-1] if lines else '')[:160]}"
    elif rc != 0 and (len(lines) != 1 or len(lines[0]) > 1000):
        res.status, res.detail = "bad-message", f"{len(lines)} stderr lines, {len(stderr)} chars: {stderr[:160]!r}"
    elif rss > MEMORY_LIMIT:
        res.status = "memory"
    after = _snapshot(case.outputs)
    left = [str(q) for dd in dirs for q in Path(dd).glob(".*.tmp")]
    changed = [p for p in case.outputs if after[p] != before[p] and rc != 0]
    if left or changed:
        res.status, res.detail = "clobbered", f"temp files {left[:2]} changed {changed[:2]}"
    return res


def runner_main() -> None:
    """The CLI runner: one JSON ``{"case", "timeout"}`` per line on stdin, one JSON Result per line
    on fd ``ACCELSIM_FUZZ_FD``. It imports nothing beyond the standard library (numpy is imported by
    the generators only), so the children it spawns inherit a small resident size, whatever the
    size of the process that started the fuzzer (see the module docstring)."""
    out = os.fdopen(int(os.environ["ACCELSIM_FUZZ_FD"]), "w", buffering=1)
    for line in sys.stdin:
        msg = json.loads(line)
        res = run_process(Case(**msg["case"]), msg["timeout"])
        out.write(json.dumps(dataclasses.asdict(res)) + "\n")


class CliRunner(_Child):
    """run_process in a fresh small subprocess (runner_main), restarted if it dies or stops answering."""

    def run(self, case: Case, timeout: float) -> Result:
        if self.p is None:
            self._spawn("--runner")
        t0 = time.monotonic()
        line = ""
        try:
            self.p.stdin.write(json.dumps({"case": dataclasses.asdict(case), "timeout": timeout}) + "\n")
            self.p.stdin.flush()
            # run_process kills a hanging child after ``timeout``: the margin covers that and the wait
            ready, _, _ = select.select([self.r], [], [], timeout + 60)
            line = self.r.readline() if ready else ""
        except (BrokenPipeError, OSError):
            pass
        if not line:
            self.close()
            return Result(case.id, case.kind, "hang", "the CLI runner did not answer", 0, time.monotonic() - t0)
        return Result(**json.loads(line))


# ------------------------------------------------------------------------------------------ run
def _plain_file(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    import stat

    return stat.S_ISREG(st.st_mode)


def run_all(cases: list[Case], timeout: float, tiny: Path, log=None) -> list[Result]:
    results: list[Result] = []
    worker, runner = Worker(tiny, timeout), CliRunner()
    inputs = {c.path: _snapshot([c.path]) for c in cases if c.path and _plain_file(c.path)}
    try:
        for c in cases:
            r = worker.run(c) if c.kind in ("trace", "hw") else runner.run(c, timeout=max(timeout, 120))
            results.append(r)
            if log and r.status != "ok":
                log(f"{r.id}: {r.status}: {r.detail}")
    finally:
        worker.close()
        runner.close()
    for path, snap in inputs.items():  # no input was modified
        if _snapshot([path]) != snap:
            results.append(Result(f"input:{Path(path).name}", "input", "clobbered", "input file changed"))
    return results


def summary(results: list[Result]) -> str:
    sys.path.insert(0, str(ROOT))
    from accelsim.report.table import format_table, nbytes

    rows = []
    for kind in ("trace", "hw", "cli", "fault", "all"):
        rs = [r for r in results if kind == "all" or r.kind == kind]
        if not rs:
            continue
        n = lambda s: sum(1 for r in rs if r.status == s)  # noqa: E731
        rows.append([kind, len(rs), n("traceback"), n("hang"), n("memory"), n("clobbered"),
                     n("bad-message") + n("bad-exit"), nbytes(max(r.rss for r in rs)), f"{max(r.seconds for r in rs):.1f}"])
    return format_table(["inputs", "count", "tracebacks", "hangs", "over 1 GiB", "clobbered", "bad exit/msg",
                         "peak RSS", "slowest (s)"], rows, align="lrrrrrrrr")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="the CI subset (tests/test_fuzz.py)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per in-process input")
    ap.add_argument("--keep", type=Path, help="generate the inputs in this directory and keep them")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--runner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.runner:
        runner_main()
        return 0
    if a.worker:
        worker_main(a.worker)
        return 0
    with tempfile.TemporaryDirectory(prefix="accelsim-fuzz-") as tmp:
        d = a.keep or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        cases = generate(a.seed, d)
        if a.quick:
            cases = [c for c in cases if c.quick]
        print(f"{len(cases)} inputs from seed {a.seed} generated in {time.monotonic() - t0:.1f} s", flush=True)
        results = run_all(cases, a.timeout, Path(cases[0].path), log=lambda s: print("  FAIL", s, flush=True))
    print(summary(results))
    bad = [r for r in results if r.status != "ok"]
    print(f"\n{len(bad)} failing input(s); {time.monotonic() - t0:.0f} s in all")
    return 1 if bad else 0


if __name__ == "__main__":
    if "--worker" in sys.argv:
        sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
