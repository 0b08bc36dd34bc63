"""The numba kernels, shipped compiled: LLVM bitcode that numba builds ahead of time from the kernels'
Python source, turned into machine code for this CPU by llvmlite when a run first calls a kernel.

Why: a process that JIT-loads even one cached numba kernel imports numba and builds its CPU target
(~0.4 s, 2.5x what the shipped ResNet-50 trace needs to inflate every mask), and compiles it when
numba's cache is empty (0.3-2 s). llvmlite alone -- numba's own LLVM binding, installed with it --
imports in ~0.05 s and generates one kernel's machine code from the shipped bitcode in a few ms.

How: every kernel a Python caller calls directly is declared with its argument types
(``lazy_njit(args=..., ret=...)`` in accelsim/sim/kernels.py). The
build (``python -m accelsim.sim.native build``, a developer step after editing a kernel) compiles
each one with numba as a C-callable entry taking a pointer and the shape of every array and int64
scalars, and writes the optimised module as bitcode to accelsim/sim/compiled/ with a manifest: the
entry's symbol, its argument types, and a hash of the Python source it was compiled from (the kernel,
every jitted function it calls, every global constant it reads). At run time a kernel is used
natively only when its hash still matches the source (a kernel edited without a rebuild runs under
numba instead, and tests/test_native.py fails until the bitcode is rebuilt), llvmlite is importable
and reads the bitcode, and the call's arrays are C-contiguous of the declared dtype and dimensions;
otherwise numba's JIT runs the same Python source (lazy_njit) -- the same integers either way
(tests/test_native.py compares the two on random inputs). ACCELSIM_NATIVE=0 turns native kernels off.

The entries allocate nothing (every buffer is passed in), so the bitcode needs no numba runtime; the
error paths numba's C entry keeps (reporting an exception the kernels never raise) refer to numba's
helper library, which is not loaded: those functions are renamed in the bitcode (UNREACHABLE) and
resolve to abort().
"""

from __future__ import annotations

import ctypes
import hashlib
import inspect
import json
import os
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

COMPILED = Path(__file__).resolve().parent / "compiled"
MANIFEST = COMPILED / "manifest.json"
FORMAT = 1

# argument type codes: "i8" an int64 scalar; "i8[:]", "u8[:,:]" ... a C-contiguous int64 / uint64
# array of that many dimensions, read only; a trailing "!" marks an array the kernel writes
_ARRAY_DTYPES = {"i8": np.dtype(np.int64), "u8": np.dtype(np.uint64)}


def parse_arg(code: str) -> tuple[np.dtype, int, bool]:
    """'i8' -> (int64, 0, False); 'u8[:]' -> (uint64, 1, False); 'i8[:,:]!' -> (int64, 2, True)."""
    written = code.endswith("!")
    body = code[:-1] if written else code
    if "[" not in body:
        if body != "i8" or written:
            raise ValueError(f"native kernel scalars are i8, not {code!r}")
        return np.dtype(np.int64), 0, False
    name, dims = body.split("[", 1)
    if name not in _ARRAY_DTYPES or not dims.endswith("]") or set(dims[:-1]) - {":", ","}:
        raise ValueError(f"unknown native kernel argument type {code!r}")
    return _ARRAY_DTYPES[name], dims[:-1].count(":"), written


@dataclass(frozen=True)
class Kernel:
    """One natively shipped kernel: its Python function (numba compiles it), argument and return
    types, and the callable numba's JIT path uses (the fallback)."""

    name: str  # "module:function", unique
    py_func: Callable
    args: tuple[str, ...]
    ret: str  # "void" or "i8"

    def __post_init__(self) -> None:
        if self.ret not in ("void", "i8"):
            raise ValueError(f"native kernel {self.name}: return type {self.ret!r}")
        n = self.py_func.__code__.co_argcount
        if n != len(self.args):
            raise ValueError(f"native kernel {self.name}: {n} parameters, {len(self.args)} argument types")
        for a in self.args:
            parse_arg(a)


REGISTRY: dict[str, Kernel] = {}


def register(py_func: Callable, args: tuple[str, ...] | list[str], ret: str = "void") -> Kernel:
    """Declare ``py_func`` (a lazy_njit kernel's Python function) as natively shipped."""
    k = Kernel(f"{py_func.__module__}:{py_func.__name__}", py_func, tuple(args), ret)
    REGISTRY[k.name] = k
    return k


# ------------------------------------------------------------------------------------------------
# what the bitcode was compiled from
# ------------------------------------------------------------------------------------------------

def _python_function(obj) -> types.FunctionType | None:
    """The Python function behind a global: itself, a lazy_njit wrapper's or a dispatcher's py_func."""
    if isinstance(obj, types.FunctionType):
        return obj
    fn = getattr(obj, "py_func", None)
    return fn if isinstance(fn, types.FunctionType) else None


def _constant_bytes(value) -> bytes | None:
    """A global numba freezes into the code, as bytes: numbers and arrays."""
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return repr(value).encode()
    if isinstance(value, np.ndarray):
        return str(value.dtype).encode() + repr(value.shape).encode() + value.tobytes()
    return None


def source_hash(kernel: Kernel) -> str:
    """SHA-256 of what the kernel's bitcode depends on: its argument types, the source of the kernel
    and of every function it calls through a module global (transitively), and the value of every
    numeric or array global any of them reads."""
    h = hashlib.sha256(repr((kernel.args, kernel.ret)).encode())
    seen: set[str] = set()
    todo = [kernel.py_func]
    while todo:
        fn = todo.pop()
        key = f"{fn.__module__}.{fn.__qualname__}"
        if key in seen:
            continue
        seen.add(key)
        h.update(key.encode() + b"\0" + inspect.getsource(fn).encode() + b"\0")
        names = set(fn.__code__.co_names)
        for const in fn.__code__.co_consts:  # names used by nested code (generators, lambdas)
            if isinstance(const, types.CodeType):
                names |= set(const.co_names)
        for name in sorted(names):
            if name not in fn.__globals__:
                continue
            value = fn.__globals__[name]
            callee = _python_function(value)
            if callee is not None and callee.__module__.startswith("accelsim"):
                todo.append(callee)
                continue
            data = _constant_bytes(value)
            if data is not None:
                h.update(name.encode() + b"=" + data + b"\0")
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# the build (numba): python -m accelsim.sim.native build
# ------------------------------------------------------------------------------------------------

def _entry_source(kernel: Kernel) -> tuple[str, list]:
    """Source of the C-callable entry: each array as (pointer, shape...) wrapped by numba.carray,
    each scalar an int64; and the entry's numba argument types."""
    from numba import types as nt

    params, call, sig = [], [], []
    for i, code in enumerate(kernel.args):
        dtype, ndim, _ = parse_arg(code)
        if ndim == 0:
            params.append(f"a{i}")
            call.append(f"a{i}")
            sig.append(nt.int64)
            continue
        dims = [f"a{i}_{d}" for d in range(ndim)]
        params += [f"a{i}_p"] + dims
        call.append(f"carray(a{i}_p, ({', '.join(dims)},))")
        sig += [nt.CPointer(nt.uint64 if dtype == np.uint64 else nt.int64)] + [nt.int64] * ndim
    body = f"kernel({', '.join(call)})"
    src = f"def entry({', '.join(params)}):\n    {'return ' if kernel.ret == 'i8' else ''}{body}\n"
    return src, sig


def build_kernel(kernel: Kernel, dispatcher) -> tuple[bytes, str, list[str]]:
    """Bitcode of the kernel's C entry (numba), the entry's symbol, and the functions it declares
    but does not define (the Python C API and numba's helpers, on its error paths)."""
    from numba import carray, cfunc
    from numba import types as nt

    src, sig = _entry_source(kernel)
    scope = {"carray": carray, "kernel": dispatcher}
    exec(compile(src, f"<native entry {kernel.name}>", "exec"), scope)
    ret = nt.int64 if kernel.ret == "i8" else nt.void
    entry = cfunc(ret(*sig), nopython=True)(scope["entry"])
    lib = entry._library
    lib._ensure_finalized()
    import llvmlite.binding as llvm

    mod = llvm.parse_bitcode(lib._final_module.as_bitcode())  # a copy: numba's own stays as it is
    externals = []
    for fn in mod.functions:
        if fn.is_declaration and not fn.name.startswith("llvm.") and fn.name not in _LIBC:
            fn.name = UNREACHABLE + fn.name  # every use follows the rename
            externals.append(fn.name)
    return mod.as_bitcode(), entry.native_name, sorted(externals)


# The functions numba's C entry declares for its error paths (the Python C API, numba's helpers
# and runtime) are renamed with this prefix in the shipped bitcode and resolved to abort() under
# those names: LLVM's symbol table is the process's, and numba resolves its own helpers there -- a
# process that loads numba too must keep getting the real ones. The C library's own stay.
UNREACHABLE = "accelsim.native.unreachable."
_LIBC = {"memset", "memcpy", "memmove"}


def _file_name(name: str) -> str:
    return name.replace(":", ".") + ".bc"


def build(names: list[str] | None = None) -> dict:
    """Compile every registered kernel (or ``names``) to bitcode in COMPILED and rewrite the manifest.
    Each kernel is compiled in a fresh process with numba's cache off, so the bitcode depends only on
    the source and the numba version (numba numbers the functions it compiles in a process)."""
    import subprocess

    import llvmlite
    import llvmlite.binding as llvm
    import numba

    from accelsim.util.atomic import atomic_write

    _import_kernel_modules()
    manifest = read_manifest() or {"format": FORMAT, "kernels": {}}
    manifest.update(format=FORMAT, numba=numba.__version__, llvmlite=llvmlite.__version__,
                    llvm=list(llvm.llvm_version_info))
    COMPILED.mkdir(exist_ok=True)
    for name in names or sorted(REGISTRY):
        kernel = REGISTRY[name]
        child = subprocess.run([sys.executable, "-m", "accelsim.sim.native", "build-one", name],
                               capture_output=True, check=True)
        info = json.loads(child.stdout.decode().splitlines()[-1])
        code = bytes.fromhex(info.pop("bitcode"))
        with atomic_write(COMPILED / _file_name(name)) as f:
            f.write(code)
        manifest["kernels"][name] = {"file": _file_name(name), "args": list(kernel.args), "ret": kernel.ret,
                                     "source": source_hash(kernel), "bytes": len(code),
                                     "sha256": hashlib.sha256(code).hexdigest(), **info}
    for gone in set(manifest["kernels"]) - set(REGISTRY):
        del manifest["kernels"][gone]
    kept = {e["file"] for e in manifest["kernels"].values()}
    for path in COMPILED.glob("*.bc"):  # a kernel renamed or removed: its bitcode goes too
        if path.name not in kept:
            path.unlink()
    with atomic_write(MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return manifest


def _build_one(name: str) -> dict:
    """One kernel's bitcode (hex), symbol and externals, compiled here with numba's cache off."""
    from accelsim.sim import kernels

    _import_kernel_modules()
    kernels._load_kernels(cache=False)
    kernel = REGISTRY[name]
    dispatcher = getattr(sys.modules[kernel.py_func.__module__], kernel.py_func.__name__)
    code, symbol, externals = build_kernel(kernel, dispatcher)
    return {"bitcode": code.hex(), "symbol": symbol, "externals": externals}


def _import_kernel_modules() -> None:
    """The modules that declare native kernels (their import registers them)."""
    import accelsim.sim.kernels  # noqa: F401
    import accelsim.sim.memory  # noqa: F401


def stale() -> list[str]:
    """Registered kernels whose shipped bitcode is missing or was built from other source."""
    _import_kernel_modules()
    entries = (read_manifest() or {}).get("kernels", {})
    return sorted(n for n, k in REGISTRY.items()
                  if n not in entries or entries[n]["source"] != source_hash(k)
                  or entries[n]["args"] != list(k.args) or entries[n]["ret"] != k.ret)


# ------------------------------------------------------------------------------------------------
# the run (llvmlite only)
# ------------------------------------------------------------------------------------------------

_manifest_cache: list = []


def read_manifest() -> dict | None:
    try:
        with open(MANIFEST, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("format") == FORMAT else None


def _manifest() -> dict:
    if not _manifest_cache:
        _manifest_cache.append(read_manifest() or {})
    return _manifest_cache[0]


def enabled() -> bool:
    return os.environ.get("ACCELSIM_NATIVE", "1") != "0"


class NativeKernel:
    """A kernel's machine code (from the shipped bitcode), called with numpy arrays and ints."""

    def __init__(self, kernel: Kernel, address: int):
        self.kernel = kernel  # the machine code at `address` is never freed (_load)
        self._spec = [parse_arg(a) for a in kernel.args]
        ctypes_args = []
        for _, ndim, _ in self._spec:
            ctypes_args += [ctypes.c_void_p] + [ctypes.c_int64] * ndim if ndim else [ctypes.c_int64]
        restype = ctypes.c_int64 if kernel.ret == "i8" else None
        self._fn = ctypes.CFUNCTYPE(restype, *ctypes_args)(address)

    def accepts(self, args: tuple) -> bool:
        """Whether the call can go to the machine code as is: C-contiguous arrays of the declared
        dtype and dimensions (an in-place argument must not be copied), writeable where the kernel
        writes (numba refuses a read-only one there: so does this), integer scalars in int64."""
        if len(args) != len(self._spec):
            return False
        for a, (dtype, ndim, written) in zip(args, self._spec):
            if ndim:
                if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.ndim == ndim
                        and a.flags.c_contiguous and (a.flags.writeable or not written)):
                    return False
            elif not (isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                      and -(1 << 63) <= int(a) < (1 << 63)):
                return False
        return True

    def __call__(self, *args):
        flat = []
        for a, (_, ndim, _) in zip(args, self._spec):
            if ndim:
                flat.append(a.ctypes.data)
                flat += a.shape
            else:
                flat.append(int(a))
        out = self._fn(*flat)
        return None if out is None else int(out)


_loaded: dict[str, NativeKernel | None] = {}
_lock = threading.Lock()  # one loader at a time (llvmlite's initialisation and symbol table)
why_not: dict[str, str] = {}  # kernel name -> why it runs under numba (diagnostics, tests)
_llvm: list = []


def _target():
    """llvmlite, initialised once: (binding module, target machine for this CPU)."""
    if not _llvm:
        import llvmlite.binding as llvm

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        target = llvm.Target.from_triple(llvm.get_process_triple())
        # as numba builds its own: this CPU's name and features, JIT code model
        tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                          features=llvm.get_host_cpu_features().flatten(), opt=3,
                                          codemodel="jitdefault", jit=True)
        _llvm.append((llvm, tm))
    return _llvm[0]


def load(kernel: Kernel) -> NativeKernel | None:
    """The kernel's machine code, or None (why_not says why) -- once per process."""
    if kernel.name in _loaded:
        return _loaded[kernel.name]
    with _lock:
        if kernel.name not in _loaded:
            got = None
            try:
                got = _load(kernel)
            except Exception as exc:  # any failure means the numba path, which is always correct
                why_not[kernel.name] = f"{type(exc).__name__}: {exc}"[:300]
            _loaded[kernel.name] = got
    return _loaded[kernel.name]


def _load(kernel: Kernel) -> NativeKernel | None:
    if not enabled():
        why_not[kernel.name] = "ACCELSIM_NATIVE=0"
        return None
    entry = _manifest().get("kernels", {}).get(kernel.name)
    if entry is None:
        why_not[kernel.name] = "not in the shipped manifest"
        return None
    if entry["source"] != source_hash(kernel) or entry["args"] != list(kernel.args) or entry["ret"] != kernel.ret:
        why_not[kernel.name] = "shipped bitcode built from other source (python -m accelsim.sim.native build)"
        return None
    code = (COMPILED / entry["file"]).read_bytes()
    if hashlib.sha256(code).hexdigest() != entry["sha256"]:
        why_not[kernel.name] = "bitcode file does not match its manifest checksum"
        return None
    llvm, tm = _target()
    built = tuple(_manifest().get("llvm", ()))
    if tuple(llvm.llvm_version_info)[:1] < built[:1]:  # LLVM reads older bitcode, not newer
        why_not[kernel.name] = f"llvmlite's LLVM {llvm.llvm_version_info[0]} is older than the bitcode's {built[0]}"
        return None
    obj = _machine_object(kernel, code)
    abort = ctypes.cast(ctypes.CDLL(None).abort, ctypes.c_void_p).value
    for name in entry["externals"]:
        if not name.startswith(UNREACHABLE):  # never a name numba or anyone else resolves
            raise ValueError(f"unexpected external {name[:80]!r}")
        if llvm.address_of_symbol(name) is None:
            llvm.add_symbol(name, abort)  # numba's error reporting: unreachable, see the module doc
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
    obj_ref = llvm.ObjectFileRef.from_data(obj)
    engine.add_object_file(obj_ref)
    engine.finalize_object()
    address = engine.get_function_address(entry["symbol"])
    # the code lives as long as the process (as numba's own does): neither the engine nor the object
    # it took is ever disposed -- disposing both frees the object twice
    obj_ref.detach()
    engine.detach()
    if not address:
        why_not[kernel.name] = f"symbol {entry['symbol']} not in the bitcode"
        return None
    return NativeKernel(kernel, address)


def cache_dir() -> Path:
    """Where machine code for this CPU is kept between runs, as numba keeps its own: NUMBA_CACHE_DIR
    when set, else __pycache__ beside this module when writable, else the user's cache directory."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env) / "accelsim-native"
    here = Path(__file__).resolve().parent / "__pycache__"
    try:
        here.mkdir(exist_ok=True)
        if os.access(here, os.W_OK):
            return here / "accelsim-native"
    except OSError:
        pass
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "accelsim" / "native"


def _machine_object(kernel: Kernel, code: bytes) -> bytes:
    """The object code of the bitcode for this CPU: from the cache (keyed by the bitcode, the CPU
    and llvmlite; a SHA-256 trailer guards against a damaged file) or generated now (a few tens of
    ms a kernel) and cached, atomically. An unwritable cache only costs the generation each run."""
    import llvmlite

    llvm, tm = _target()
    key = hashlib.sha256(b"\0".join([code, llvm.get_host_cpu_name().encode(),
                                     llvm.get_host_cpu_features().flatten().encode(),
                                     llvmlite.__version__.encode(), str(tm.triple).encode()])).hexdigest()[:24]
    path = cache_dir() / f"{_file_name(kernel.name)[:-3]}-{key}.o"
    try:
        data = path.read_bytes()
        if len(data) > 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]:
            return data[:-32]
    except OSError:
        pass
    mod = llvm.parse_bitcode(code)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    obj = tm.emit_object(mod)
    try:
        from accelsim.util.atomic import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as f:
            f.write(obj + hashlib.sha256(obj).digest())
    except OSError:
        pass
    return obj


def available(kernel: Kernel) -> bool:
    """Whether ``load`` would give machine code, judged without importing llvmlite (the shipped
    manifest, source hash, and that llvmlite is installed) -- for cost estimates before the first
    call."""
    if kernel.name in _loaded:
        return _loaded[kernel.name] is not None
    if not enabled():
        return False
    import importlib.util

    try:
        entry = _manifest().get("kernels", {}).get(kernel.name)
        return (entry is not None and entry["source"] == source_hash(kernel)
                and importlib.util.find_spec("llvmlite") is not None)
    except Exception:  # e.g. no source to hash (a bytecode-only install): load() would refuse too
        return False


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m accelsim.sim.native",
                                description="Build or check the shipped bitcode of accelsim's numba kernels.")
    p.add_argument("action", choices=["build", "check", "build-one"])
    p.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.action == "build-one":  # build's child process
        print(json.dumps(_build_one(a.name)))
        return 0
    if a.action == "check":
        bad = stale()
        for n in bad:
            print(f"stale: {n}")
        print("all native kernels current" if not bad else f"{len(bad)} stale: run python -m accelsim.sim.native build")
        return 1 if bad else 0
    m = build()
    for n, e in sorted(m["kernels"].items()):
        print(f"{n:45s} {e['bytes']:7d} bytes  {e['symbol'][:40]}")
    return 0


if __name__ == "__main__":  # run as accelsim.sim.native, whose REGISTRY the kernel modules fill
    from accelsim.sim import native as _native

    sys.exit(_native.main())
