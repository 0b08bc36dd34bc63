"""Strict YAML -> HardwareConfig loader.

Every defect is one ``HardwareConfigError`` line: ``<file>: <key path>: <problem>``. Unknown keys
list the valid ones; impossible values (N > M, zero bandwidth, negative sizes, unknown dataflow)
name the key. The format is documented in docs/hwconfig.md.
"""

from __future__ import annotations

import math
import os

from accelsim.errors import HardwareConfigError
from accelsim.hw import family as families
from accelsim.hw import catalog, units
from accelsim.hw.units import show
from accelsim.hw.yaml_input import parse_yaml_text
from accelsim.util.files import NotRegularFileError, display_path, read_regular

# A hardware file describes one machine in a few KB (the shipped ones are 1-4 KB); reading stops
# past this, so /dev/zero-like or huge inputs cost a bounded read, and pure-Python PyYAML scans
# the worst 256 KiB (blank lines) in about 0.4 s.
MAX_HW_FILE_BYTES = 1 << 18
from accelsim.hw.config import (
    SEARCH_SHAPES,
    SPARSE_OPERANDS,
    SPARSITY_KINDS,
    HardwareConfig,
    MemoryLevel,
    SparsityFeature,
)

TOP_KEYS = ("name", "description", "family", "clock", "compute", "sparsity", "memory", "storage_format",
            "allow_extreme")
# per family: its compute keys and the sparsity kinds its model implements (accelsim/hw/families/)
COMPUTE_KEYS = {f: families.get(f).compute_keys for f in families.names()}
SPARSITY_KEYS = ("kind", "operand", "n", "m", "along", "lookahead", "lookaside", "search", "metadata_bits")
MEMORY_KEYS = ("name", "capacity", "bandwidth", "latency", "word_size", "shared")
STORAGE_FORMATS = ("dense", "bitmap", "coo", "csr", "nm")
FAMILY_SPARSITY = {f: families.get(f).sparsity_kinds for f in families.names()}


def _show_short_list(v) -> str:
    """[1, 2, 'x'] for a short list (each item cut by units.show), else units.show's summary."""
    if isinstance(v, (list, tuple)) and len(v) <= 4:
        return "[" + ", ".join(show(x) for x in v) + "]"
    return show(v)


def _k(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


# Ceiling of every count in a file (rows, SMs, lanes, tile sides, N, M, ...): three counts multiplied
# (e.g. sms * tensor_cores_per_sm * dense_macs_per_cycle_per_core) stay inside int64.
MAX_COUNT = 2**20


class _Ctx:
    def __init__(self, path: str, allow_extreme: bool = False):
        self.path = path
        self.allow_extreme = allow_extreme  # top-level allow_extreme: true (units.py floors)

    def fail(self, key: str, problem: str) -> HardwareConfigError:
        # key "" is the document itself: "file: top level: problem", never "file: : problem"
        return HardwareConfigError(f"{self.path}: {key or 'top level'}: {problem}")

    def keys(self, d, key: str, valid: tuple[str, ...], required: tuple[str, ...]) -> None:
        if not isinstance(d, dict):
            raise self.fail(key, f"expected a mapping with keys {', '.join(valid)}, got {type(d).__name__}")
        for k in d:
            if k not in valid:
                k = k if isinstance(k, str) and len(k) <= 60 else show(k)  # a key from Python may be huge
                where = f"{key}.{k}" if key else k
                raise self.fail(where, f"unknown key (valid: {', '.join(valid)})")
        for k in required:
            if k not in d:
                raise self.fail(f"{key}.{k}" if key else k, "missing required key")

    def int_(self, d, key: str, where: str, *, minimum: int = 1, maximum: int = MAX_COUNT,
             default=None) -> int:
        if key not in d:
            if default is None:
                raise self.fail(_k(where, key), "missing required key")
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(_k(where, key), f"expected an integer, got {show(v)}")
        if v < minimum:
            raise self.fail(_k(where, key), f"must be >= {minimum}, got {show(v)}")
        if v > maximum:
            raise self.fail(_k(where, key), f"must be <= {maximum}, got {show(v)}")
        return v

    def choice(self, d, key: str, where: str, options, *, default=None) -> str:
        if key not in d:
            if default is None:
                raise self.fail(_k(where, key), f"missing required key (one of {', '.join(options)})")
            return default
        v = d[key]
        if not isinstance(v, str) or v not in options:  # a list or dict is no option (nor hashable)
            raise self.fail(_k(where, key), f"{show(v)} is not one of {', '.join(map(str, options))}")
        return v

    def triple(self, d, key: str, where: str, *, default=None) -> tuple[int, int, int]:
        if key not in d:
            if default is None:
                raise self.fail(_k(where, key), "missing required key")
            return default
        v = d[key]
        if (not isinstance(v, (list, tuple)) or len(v) != 3
                or any(isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= MAX_COUNT for x in v)):
            raise self.fail(_k(where, key), f"expected three integers [M, N, K] in 1..{MAX_COUNT}, "
                                            f"got {_show_short_list(v)}")
        return (int(v[0]), int(v[1]), int(v[2]))

    def triples(self, d, key: str, where: str) -> tuple[tuple[int, int, int], ...]:
        """One [M, N, K] or a non-empty list of them (duplicates refused)."""
        v = d.get(key)
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, (list, tuple)) for x in v):
            out = tuple(self.triple({key: x}, key, where) for x in v)
            if len(set(out)) != len(out):
                raise self.fail(_k(where, key), f"lists a tile twice: {show(v)}")
            return out
        return (self.triple(d, key, where),)

    def unit(self, fn, value, key: str, **kw):
        try:
            return fn(value, allow_extreme=self.allow_extreme, **kw)
        except ValueError as e:
            raise self.fail(key, str(e)) from None


def _compute(ctx: _Ctx, family: str, c) -> object:
    return families.get(family).parse_compute(ctx, c)


def _sparsity(ctx: _Ctx, family: str, s) -> SparsityFeature:
    if s is None:
        return SparsityFeature()
    ctx.keys(s, "sparsity", SPARSITY_KEYS, ("kind",))
    kind = ctx.choice(s, "kind", "sparsity", SPARSITY_KINDS)
    if kind not in FAMILY_SPARSITY[family]:
        raise ctx.fail("sparsity.kind", f"{kind!r} is not modelled for family {family!r} "
                                        f"(valid: {', '.join(FAMILY_SPARSITY[family])})")
    if kind == "none":
        return SparsityFeature()
    operand_default = {"nm": None, "one_sided": "auto", "two_sided": "both"}[kind]
    operand = ctx.choice(s, "operand", "sparsity", SPARSE_OPERANDS, default=operand_default)
    along = ctx.choice(s, "along", "sparsity", ("reduction",), default="reduction")
    metadata_bits = ctx.int_(s, "metadata_bits", "sparsity", minimum=0, default=0)
    n = m = None
    lookahead = lookaside = 0
    search = "T"
    if kind == "nm":
        if operand in ("auto", "both"):
            raise ctx.fail("sparsity.operand", f"N:M sparsity needs one operand, got {operand!r}")
        n = ctx.int_(s, "n", "sparsity")
        # the kernels count a group inside one 64-bit mask word (accelsim/sim/kernels.py _check_m)
        m = ctx.int_(s, "m", "sparsity", maximum=64)
        if n >= m:
            raise ctx.fail("sparsity.n", f"N:M needs N < M, got {n}:{m}")
    else:
        for k in ("n", "m"):
            if k in s:
                raise ctx.fail(f"sparsity.{k}", f"only meaningful for kind nm, not {kind!r}")
    if kind == "one_sided":
        if operand == "both":
            raise ctx.fail("sparsity.operand", "one_sided skips one operand; use kind two_sided for both")
        lookahead = ctx.int_(s, "lookahead", "sparsity", minimum=0, default=0)
        # a lane borrows from at most 63 lanes away: the scheduler shifts one 64-bit lane-row word
        # (accelsim/sim/kernels.py, TensorDash section)
        lookaside = ctx.int_(s, "lookaside", "sparsity", minimum=0, maximum=63, default=0)
        search = ctx.choice(s, "search", "sparsity", SEARCH_SHAPES, default="T")
    else:
        for k in ("lookahead", "lookaside", "search"):
            if k in s:
                raise ctx.fail(f"sparsity.{k}", f"only meaningful for kind one_sided, not {kind!r}")
    if kind == "two_sided" and operand != "both":
        raise ctx.fail("sparsity.operand", f"two_sided skips both operands, got {operand!r}")
    return SparsityFeature(kind=kind, operand=operand, n=n, m=m, along=along, lookahead=lookahead,
                           lookaside=lookaside, search=search, metadata_bits=metadata_bits)


def _memory(ctx: _Ctx, mem, clock_hz: float) -> tuple[MemoryLevel, ...]:
    if not isinstance(mem, list) or not mem:
        raise ctx.fail("memory", "expected a non-empty list of levels (innermost first, DRAM last)")
    levels = []
    seen: set[str] = set()
    for i, lv in enumerate(mem):
        where = f"memory[{i}]"
        ctx.keys(lv, where, MEMORY_KEYS, ("name",))
        name = lv["name"]
        if not isinstance(name, str) or not name:
            raise ctx.fail(f"{where}.name", f"expected a non-empty string, got {show(name)}")
        if name in seen:  # a set: linear in the number of levels
            raise ctx.fail(f"{where}.name", f"duplicate level name {show(name)}")
        seen.add(name)
        word = ctx.unit(units.parse_size, lv.get("word_size", 1), f"{where}.word_size")
        if word <= 0:
            raise ctx.fail(f"{where}.word_size", f"must be > 0, got {lv.get('word_size')!r}")
        cap = None
        if "capacity" in lv:
            cap = ctx.unit(units.parse_size, lv["capacity"], f"{where}.capacity")
            if cap <= 0:
                raise ctx.fail(f"{where}.capacity", f"must be > 0, got {lv['capacity']!r}")
        last = i == len(mem) - 1
        if "bandwidth" in lv:
            bw = ctx.unit(units.parse_bandwidth, lv["bandwidth"], f"{where}.bandwidth",
                          word_bytes=word, clock_hz=clock_hz)
            if not bw > 0 or not math.isfinite(bw):
                raise ctx.fail(f"{where}.bandwidth", f"must be > 0, got {lv['bandwidth']!r}")
        elif last:
            raise ctx.fail(f"{where}.bandwidth", "the outermost level (DRAM) needs a bandwidth")
        else:
            bw = math.inf
        lat = ctx.unit(units.parse_latency_cycles, lv.get("latency", 0), f"{where}.latency", clock_hz=clock_hz)
        if lat < 0:
            raise ctx.fail(f"{where}.latency", f"must be >= 0, got {lv.get('latency')!r}")
        shared = lv.get("shared", True)
        if not isinstance(shared, bool):
            raise ctx.fail(f"{where}.shared", f"expected true or false, got {show(shared)}")
        levels.append(MemoryLevel(name=name, capacity_bytes=cap, bandwidth_bytes_per_s=float(bw),
                                  latency_cycles=lat, word_bytes=word, shared=shared))
    return tuple(levels)


def parse_hw(data, source: str = "<memory>") -> HardwareConfig:
    """Validate an already-parsed YAML mapping; ``source`` names the file in error messages."""
    ctx = _Ctx(source)
    ctx.keys(data, "", TOP_KEYS, ("name", "family", "clock", "compute", "memory"))
    # allow_extreme: true accepts a clock below 1 MHz or a bandwidth below 1 MB/s (units.py floors)
    ctx.allow_extreme = data.get("allow_extreme", False)
    if not isinstance(ctx.allow_extreme, bool):
        raise ctx.fail("allow_extreme", f"expected true or false, got {show(ctx.allow_extreme)}")
    name = data["name"]
    if not isinstance(name, str) or not name.strip():
        raise ctx.fail("name", f"expected a non-empty string, got {show(name)}")
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise ctx.fail("description", "expected a string")
    family = ctx.choice(data, "family", "", families.names())
    clock = ctx.unit(units.parse_frequency, data["clock"], "clock")
    if not clock > 0:
        raise ctx.fail("clock", f"must be > 0, got {data['clock']!r}")
    compute = _compute(ctx, family, data["compute"])
    sparsity = _sparsity(ctx, family, data.get("sparsity"))
    fam = families.get(family)
    if isinstance(data["memory"], list) and len(data["memory"]) > len(fam.roles):
        # one level per memory role (checked before parsing: a file listing millions is refused at once)
        raise ctx.fail("memory", f"{len(data['memory'])} levels, family {family} has {len(fam.roles)} "
                                 f"memory roles ({', '.join(fam.role_names)})")
    memory = _memory(ctx, data["memory"], clock)
    families.check_memory(fam, memory, ctx.fail)
    fmt = data.get("storage_format")
    if fmt is not None and (not isinstance(fmt, str) or fmt not in STORAGE_FORMATS):
        raise ctx.fail("storage_format", f"{show(fmt)} is not one of {', '.join(STORAGE_FORMATS)}")
    hw = HardwareConfig(name=name, family=family, clock_hz=clock, compute=compute, sparsity=sparsity,
                        memory=memory, storage_format=fmt, source=source, description=desc)
    return fam.validate(hw, ctx.fail) if fam.validate is not None else hw


def load_hw(path: str | os.PathLike) -> HardwareConfig:
    """Read and validate a hardware YAML file (docs/hwconfig.md), or a shipped machine by name
    (``load_hw("a100_24")``, accelsim/hw/catalog.py)."""
    if not isinstance(path, (str, os.PathLike)):
        raise HardwareConfigError(f"load_hw: expected a hardware YAML file path (str or os.PathLike), "
                                  f"got {type(path).__name__}")
    p = catalog.resolve(path)  # a path as given, or the file of a shipped machine named bare
    shown = display_path(p)
    try:  # only a regular file: a FIFO would block the open, /dev/zero never ends
        text = read_regular(p, MAX_HW_FILE_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise HardwareConfigError(f"{shown}: no such hardware file {catalog.not_found_hint()}") from None
    except NotRegularFileError as e:
        raise HardwareConfigError(f"{shown}: is {e.kind}, not a hardware file") from None
    except ValueError as e:  # longer than the limit, or not UTF-8 (UnicodeDecodeError)
        what = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e)
        raise HardwareConfigError(f"{shown}: cannot read: {what}") from None
    except OSError as e:  # permission denied, ENAMETOOLONG, ELOOP, EIO, ...
        raise HardwareConfigError(f"{shown}: cannot read: {e.strerror or type(e).__name__}") from None
    # bounded: no anchors/aliases, depth/size limits, plain values, YAML 1.1 traps named (yaml_input.py)
    data = parse_yaml_text(text, shown)
    if data is None:
        raise HardwareConfigError(f"{shown}: empty hardware file")
    return parse_hw(data, str(p))
