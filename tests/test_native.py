"""The shipped machine code of the numba kernels (accelsim.sim.native): it is current with the Python
source, it loads here without numba, it gives exactly what numba's JIT gives on the same inputs, and
every way it can be unusable (stale, damaged, switched off, an array it cannot take) falls back to
numba with the same results."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from accelsim.sim import kernels as K
from accelsim.sim import memory, native

ROOT = Path(__file__).resolve().parents[1]
RESNET = ROOT / "traces" / "resnet50_imagenet_swat_u80.npz"


def _jit(name: str) -> K._Jit:
    return next(w for w in K._LAZY if w.py_func.__name__ == name)


def _native_kernels() -> list[K._Jit]:
    return [w for w in K._LAZY if w.native is not None]


@pytest.fixture
def fresh_native(monkeypatch):
    """native.load as in a new process: nothing loaded, the manifest re-read."""
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setattr(native, "_manifest_cache", [])
    monkeypatch.setattr(native, "why_not", {})
    return native


def test_the_shipped_bitcode_is_current_with_the_kernels_source():
    assert native.stale() == [], "a kernel changed: run `python -m accelsim.sim.native build` and commit"
    names = {w.native.name for w in _native_kernels()}
    manifest = native.read_manifest()["kernels"]
    assert set(manifest) == names == set(native.REGISTRY)
    assert {p.name for p in native.COMPILED.glob("*.bc")} == {e["file"] for e in manifest.values()}  # no orphan
    # every kernel Python calls directly is shipped (the rest run only inside jitted code)
    assert names == {"accelsim.sim.kernels:" + n for n in (
        "copy_bits", "_transpose_bits", "_nm_groups", "_td_lookup", "_td_walk", "_td_gather", "_pair_group_work")
    } | {"accelsim.sim.memory:_replay_entry"}


def test_every_shipped_kernel_loads_here(fresh_native):
    for w in _native_kernels():
        assert native.load(w.native) is not None, native.why_not.get(w.native.name)


def test_the_bitcode_names_no_symbol_numba_resolves_and_allocates_nothing():
    # numba's helpers are renamed (resolved to abort) so a process running numba's JIT keeps the real
    # ones; those left are the error paths' and a free of a runtime-owned array (never: every array
    # is a caller's) -- no allocation, which would reach abort() on every call
    allowed = {"NRT_Free", "NRT_MemInfo_call_dtor", "PyBytes_FromStringAndSize", "PyErr_Clear", "PyErr_SetNone",
               "PyErr_SetString", "PyErr_WriteUnraisable", "PyUnicode_FromString", "Py_DecRef", "numba_do_raise",
               "numba_gil_ensure", "numba_gil_release", "numba_runtime_build_excinfo_struct", "numba_unpickle"}
    for entry in native.read_manifest()["kernels"].values():
        assert entry["externals"] and all(e.startswith(native.UNREACHABLE) for e in entry["externals"])
        assert {e[len(native.UNREACHABLE):] for e in entry["externals"]} <= allowed


# ------------------------------------------------------------------------------------------------
# the machine code against numba's JIT, through the public functions
# ------------------------------------------------------------------------------------------------

def _run(mode: str, monkeypatch, fn, *args):
    """fn(*args) with every shipped kernel's module global bound to its machine code ('native') or
    to numba's dispatcher ('numba'); the arrays are copied first, so in-place results compare too."""
    K._load_kernels()
    for w in _native_kernels():
        target = native.load(w.native) if mode == "native" else w.dispatcher
        assert target is not None
        monkeypatch.setitem(K.__dict__, w.py_func.__name__, target)
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    return fn(*copies), copies


def _same(monkeypatch, fn, *args):
    (got, got_args), (want, want_args) = (_run(m, monkeypatch, fn, *args) for m in ("native", "numba"))
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        assert np.array_equal(np.asarray(g), np.asarray(w))
    for g, w in zip(got_args, want_args):
        if isinstance(g, np.ndarray):
            assert np.array_equal(g, w)
    return got, got_args


def _words(rng, nbits: int) -> np.ndarray:
    w = rng.integers(0, 2**63, size=-(-nbits // 64) + 1, dtype=np.int64).astype(np.uint64)
    w[-1] = 0  # the spare zero word
    return w


def test_copy_bits_and_transposes_equal_numba(monkeypatch):
    rng = np.random.default_rng(7)
    for _ in range(20):
        length, blocks = int(rng.integers(1, 200)), int(rng.integers(1, 9))
        src = _words(rng, 4096)
        s0 = rng.integers(0, 4096 - length, blocks).astype(np.int64)
        d0 = (np.arange(blocks) * (length + int(rng.integers(0, 70))) + int(rng.integers(0, 64))).astype(np.int64)
        dst = np.zeros(-(-(int(d0[-1]) + length) // 64) + 2, np.uint64)
        _, out = _same(monkeypatch, K.copy_bits, src, s0, dst, d0, length)
        assert np.count_nonzero(np.unpackbits(out[2].view(np.uint8))) == sum(
            np.count_nonzero(np.unpackbits(src.view(np.uint8), bitorder="little")[b:b + length]) for b in s0)
        rows, cols = int(rng.integers(1, 150)), int(rng.integers(1, 150))
        s0 = (np.arange(blocks) * rows * cols).astype(np.int64)
        src = _words(rng, blocks * rows * cols)
        dst = np.zeros(-(-(blocks * rows * cols) // 64) + 2, np.uint64)
        _, out = _same(monkeypatch, K.transpose_bits, src, s0, cols, dst, s0.copy(), rows, rows, cols)
        bits = np.unpackbits(src.view(np.uint8), bitorder="little")[: blocks * rows * cols]
        moved = np.unpackbits(out[3].view(np.uint8), bitorder="little")[: blocks * rows * cols]
        assert np.array_equal(moved.reshape(blocks, cols, rows), bits.reshape(blocks, rows, cols).transpose(0, 2, 1))


def test_nm_groups_equals_numba(monkeypatch):
    rng = np.random.default_rng(3)
    for m in (2, 4, 8, 5):
        x = rng.random((14, 46)) < 0.4
        src = K._packed(x)
        got, _ = _same(monkeypatch, K.nm_groups, src, np.arange(14, dtype=np.int64) * 46,
                    *K._runs(np.arange(46, dtype=np.int64)), 46, m // 2, m)
        assert 0 < got[0] < got[1] == 14 * -(-46 // m)


@pytest.mark.parametrize("lookahead,lookaside", [(2, 5), (4, 2)])  # the table and the walk
def test_td_scheduler_equals_numba(lookahead, lookaside, monkeypatch):
    rng = np.random.default_rng(11)
    lanes = 16
    h, d = K.td_candidates(lookahead, lookaside)
    rows = ((rng.random((300, 90, lanes)) < 0.25) * (1 << np.arange(lanes))).sum(axis=2).astype(np.int64)
    got, _ = _same(monkeypatch, K.td_rows_cycles, rows, lanes, lookahead, h, d)
    assert got.min() < 90 and got.max() <= 90


def test_gathered_streams_and_pair_counts_equal_numba(monkeypatch):
    from test_workload import CONV_CASES, conv_workloads

    for i, case in enumerate(CONV_CASES):
        for work in conv_workloads(case, seed=i)[0].values():
            va, vb = K.operand_view(work, "a", lanes=16), K.operand_view(work, "b")
            h, d = K.td_candidates(2, 5)
            _same(monkeypatch, K.td_stream_cycles, va.src, va.base, *va.runs, va.off.size, 16, 2, h, d)
            va = K.operand_view(work, "a")
            (cyc, eff), _ = _same(monkeypatch, K.pair_group_work, va.src, va.base, va.runs, vb.src, vb.base, vb.runs,
                             work.k, work.m, work.n, work.groups, 4, 3, 2)
            assert eff == K.effectual_macs(work) and cyc.any()


# ------------------------------------------------------------------------------------------------
# falling back to numba
# ------------------------------------------------------------------------------------------------

def _copy_bits_case():
    src = np.arange(1, 6, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    src[-1] = 0
    return src, np.array([3, 70], np.int64), np.array([0, 100], np.int64), 90


def test_stale_or_damaged_bitcode_or_a_switch_runs_numba_with_the_same_result(fresh_native, monkeypatch, tmp_path):
    w = _jit("copy_bits")
    src, s0, d0, n = _copy_bits_case()
    want = np.zeros(5, np.uint64)
    native.load(w.native)(src, s0, want, d0, n)
    manifest = json.loads(native.MANIFEST.read_text())

    def reason():
        native._loaded.clear()
        native._manifest_cache.clear()
        assert native.load(w.native) is None
        return native.why_not[w.native.name]

    stale = json.loads(json.dumps(manifest))
    stale["kernels"][w.native.name]["source"] = "0" * 64
    monkeypatch.setattr(native, "read_manifest", lambda: stale)
    assert "other source" in reason()
    monkeypatch.setattr(native, "read_manifest", lambda: manifest)
    damaged = tmp_path / "compiled"
    damaged.mkdir()
    code = (native.COMPILED / manifest["kernels"][w.native.name]["file"]).read_bytes()
    (damaged / manifest["kernels"][w.native.name]["file"]).write_bytes(code[:-1] + bytes([code[-1] ^ 1]))
    monkeypatch.setattr(native, "COMPILED", damaged)
    assert "checksum" in reason()
    monkeypatch.setattr(native, "COMPILED", native.MANIFEST.parent)
    newer = dict(manifest, llvm=[manifest["llvm"][0] + 1, 0, 0])  # bitcode of a newer LLVM: not parsed
    monkeypatch.setattr(native, "read_manifest", lambda: newer)
    assert "older than the bitcode" in reason()
    monkeypatch.setattr(native, "read_manifest", lambda: manifest)
    monkeypatch.setenv("ACCELSIM_NATIVE", "0")
    assert reason() == "ACCELSIM_NATIVE=0" and not native.available(w.native)
    # the wrapper runs numba's JIT of the same source then
    monkeypatch.setattr(w, "_machine", None)
    got = np.zeros(5, np.uint64)
    w(src, s0, got, d0, n)
    assert np.array_equal(got, want) and want.any()


def test_a_damaged_cached_object_is_generated_again(fresh_native, monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    w = _jit("copy_bits")
    assert native.load(w.native) is not None
    (obj,) = (tmp_path / "accelsim-native").glob("*copy_bits*.o")
    good = obj.read_bytes()
    obj.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])  # the checksum trailer no longer fits
    native._loaded.clear()
    src, s0, d0, n = _copy_bits_case()
    out = np.zeros(5, np.uint64)
    native.load(w.native)(src, s0, out, d0, n)
    assert obj.read_bytes() == good and out.any()
    assert not list((tmp_path / "accelsim-native").glob("*.tmp"))


def test_a_kernel_without_source_runs_numba(fresh_native, monkeypatch):
    # a bytecode-only install: nothing to hash, so nothing proves the bitcode current
    def no_source(fn):
        raise OSError("could not get source code")

    monkeypatch.setattr(native.inspect, "getsource", no_source)
    w = _jit("copy_bits")
    assert not native.available(w.native)
    assert native.load(w.native) is None and "OSError" in native.why_not[w.native.name]


def test_an_unusable_cache_directory_still_loads(fresh_native, monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocker / "sub"))  # under a file: cannot be created
    assert native.load(_jit("copy_bits").native) is not None


def test_arrays_the_machine_code_cannot_take_go_to_numba(fresh_native):
    w = _jit("copy_bits")
    machine = native.load(w.native)
    src, s0, d0, n = _copy_bits_case()
    dst = np.zeros(5, np.uint64)
    assert machine.accepts((src, s0, dst, d0, n))
    assert not machine.accepts((src, s0, np.zeros(10, np.uint64)[::2], d0, n))  # not contiguous: would be copied
    assert not machine.accepts((src, s0.astype(np.int32), dst, d0, n))  # another dtype
    assert not machine.accepts((src, s0, dst, d0, 2**63))  # not an int64
    assert not machine.accepts((src, s0, dst, d0, 1.5))
    frozen = dst.copy()
    frozen.flags.writeable = False
    assert not machine.accepts((src, s0, frozen, d0, n))  # written: numba refuses a read-only array
    src.flags.writeable = False
    assert machine.accepts((src, s0, dst, d0, n))  # only read: fine
    strided = np.zeros(10, np.uint64)
    w(src, s0, strided[::2], d0, n)  # numba's JIT takes any layout
    want = np.zeros(5, np.uint64)
    machine(src, s0, want, d0, n)
    assert np.array_equal(strided[::2], want)


def test_the_declared_read_only_arrays_are_never_written():
    # numba refuses to compile a write into a read-only array: compiling each kernel with every array
    # not marked "!" read-only proves the marks (the machine code cannot check them itself)
    from numba import njit
    from numba import types as nt

    K._load_kernels()
    for w in _native_kernels():
        sig = []
        for code in w.native.args:
            dtype, ndim, written = native.parse_arg(code)
            if ndim == 0:
                sig.append(nt.int64)
            else:
                base = nt.uint64 if dtype == np.uint64 else nt.int64
                sig.append(nt.Array(base, ndim, "C", readonly=not written))
        ret = nt.int64 if w.native.ret == "i8" else nt.void
        njit(ret(*sig), cache=False)(w.py_func)  # raises a TypingError on a write to a read-only array


def test_source_hash_follows_the_kernel_its_callees_and_their_constants(tmp_path, monkeypatch):
    def load(text: str, name: str):
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(f"accelsim_test_{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    body = "K = 3\nTABLE = __import__('numpy').arange(4)\ndef helper(x):\n    return x + K\n" \
           "def kern(a, n):\n    a[0] = helper(n) + TABLE[1]\n"
    m1 = load(body, "m1")
    monkeypatch.setattr(m1.kern, "__module__", "accelsim.test_m1")
    monkeypatch.setattr(m1.helper, "__module__", "accelsim.test_m1")
    k1 = native.Kernel("t:kern", m1.kern, ("i8[:]!", "i8"), "void")
    h = native.source_hash(k1)
    assert native.source_hash(k1) == h  # stable
    monkeypatch.setattr(m1, "K", 4)  # a constant the callee reads
    assert native.source_hash(k1) != h
    monkeypatch.setattr(m1, "K", 3)
    m1.TABLE[1] = 9  # an array numba would freeze
    assert native.source_hash(k1) != h
    m1.TABLE[1] = 1
    assert native.source_hash(k1) == h
    m2 = load(body.replace("x + K", "x - K"), "m2")  # the callee's source
    monkeypatch.setattr(m2.kern, "__module__", "accelsim.test_m2")
    monkeypatch.setattr(m2.helper, "__module__", "accelsim.test_m2")
    assert native.source_hash(native.Kernel("t:kern", m2.kern, ("i8[:]!", "i8"), "void")) != h
    assert native.source_hash(native.Kernel("t:kern", m1.kern, ("i8[:]", "i8"), "void")) != h  # its types


def test_kernel_declarations_are_checked():
    def f(a, n):
        pass

    with pytest.raises(ValueError, match="2 parameters, 1 argument"):
        native.Kernel("t:f", f, ("i8[:]",), "void")
    with pytest.raises(ValueError, match="argument type"):
        native.Kernel("t:f", f, ("f8[:]", "i8"), "void")
    with pytest.raises(ValueError, match="scalars"):
        native.Kernel("t:f", f, ("i8[:]", "u8"), "void")
    with pytest.raises(ValueError, match="return"):
        native.Kernel("t:f", f, ("i8[:]", "i8"), "f8")
    assert native.parse_arg("u8[:,:]!") == (np.dtype(np.uint64), 2, True)


def test_the_replay_budget_is_the_load_cost_of_the_compiled_replay_it_would_load(monkeypatch):
    monkeypatch.setattr(native, "available", lambda k: k is memory._REPLAY_ENTRY.native)
    assert memory._replay_budget() == memory.NATIVE_REPLAY_SECONDS == 0.03
    monkeypatch.setattr(native, "available", lambda k: False)
    assert memory._replay_budget() == memory.PY_REPLAY_SECONDS == 0.3


@pytest.mark.parametrize("hwname", ["tensordash", "sparten_like", "systolic_32x32_ws"])
def test_a_run_of_the_shipped_trace_needs_no_numba(hwname):
    code = ("import sys; from accelsim.hw import load_hw; from accelsim.sim.engine import simulate; "
            "from accelsim.sim import native; "
            f"r = simulate({str(RESNET)!r}, load_hw({hwname!r})); "
            "print('numba' in sys.modules, sorted(n for n, m in native._loaded.items() if m is not None), "
            "native.why_not)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    want = {"tensordash": "['accelsim.sim.kernels:_td_lookup']",
            "sparten_like": "['accelsim.sim.kernels:_pair_group_work', 'accelsim.sim.kernels:_transpose_bits', "
                            "'accelsim.sim.kernels:copy_bits']",
            # its streams' interpreted replay passes the 0.03 s budget: the compiled one loads
            "systolic_32x32_ws": "['accelsim.sim.memory:_replay_entry']"}[hwname]
    assert p.stdout.strip() == f"False {want} {{}}"
