"""Unit strings in hardware YAML -> SI numbers.

Accepted (case-insensitive unit names): frequencies Hz/kHz/MHz/GHz; sizes B, KB/MB/GB (decimal,
10^3) and KiB/MiB/GiB (binary, 2^10); bandwidths B/s, KB/s, MB/s, GB/s, TB/s (decimal, as DRAM
vendors quote them) or "N words/cycle"; times s/ms/us/ns and "N cycles". A bare number is taken in
the base unit (Hz, bytes, bytes/s, cycles). Every parser raises ValueError with a short reason; the
loader turns it into a one-line HardwareConfigError naming the file and key.
"""

from __future__ import annotations

import math
import re

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_RE = re.compile(r"^\s*" + _NUM + r"\s*([A-Za-z/ ]*?)\s*$")

FREQ = {"hz": 1.0, "khz": 1e3, "mhz": 1e6, "ghz": 1e9}
SIZE = {"b": 1, "byte": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
        "kib": 2**10, "mib": 2**20, "gib": 2**30}
BW = {"b/s": 1.0, "kb/s": 1e3, "mb/s": 1e6, "gb/s": 1e9, "tb/s": 1e12,
      "kib/s": 2.0**10, "mib/s": 2.0**20, "gib/s": 2.0**30}
TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _split(value, what: str) -> tuple[float, str]:
    if isinstance(value, bool):
        raise ValueError(f"expected a {what}, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value), ""
    if not isinstance(value, str):
        raise ValueError(f"expected a {what}, got {value!r}")
    m = _RE.match(value)
    if not m:
        raise ValueError(f"cannot parse {value!r} as a {what}")
    num = float(m.group(1))
    if not math.isfinite(num):
        raise ValueError(f"{value!r} is not finite")
    return num, " ".join(m.group(2).lower().split())


def _lookup(value, table: dict, what: str) -> float:
    num, unit = _split(value, what)
    if unit == "":
        return num
    if unit not in table:
        raise ValueError(f"unknown unit {unit!r} in {value!r} (valid: {', '.join(table)})")
    return num * table[unit]


def parse_frequency(value) -> float:
    """'1.41 GHz' -> 1.41e9 (Hz)."""
    return _lookup(value, FREQ, "frequency")


def parse_size(value) -> int:
    """'40 MiB' -> 41943040, '40 MB' -> 40000000 (bytes, must be a whole number of bytes)."""
    b = _lookup(value, SIZE, "size")
    if b != int(b):
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(b)


def parse_bandwidth(value, *, word_bytes: int, clock_hz: float) -> float:
    """'1555 GB/s' -> 1.555e12 B/s; '10 words/cycle' -> 10 * word_bytes * clock_hz B/s."""
    num, unit = _split(value, "bandwidth")
    if unit in ("words/cycle", "word/cycle", "words/clk"):
        return num * word_bytes * clock_hz
    if unit in ("bytes/cycle", "b/cycle"):
        return num * clock_hz
    return _lookup(value, BW, "bandwidth")


def parse_latency_cycles(value, *, clock_hz: float) -> int:
    """'500 ns' -> cycles at clock_hz (rounded up); '20 cycles' or 20 -> 20."""
    num, unit = _split(value, "latency")
    if unit in ("", "cycle", "cycles"):
        cyc = num
    elif unit in TIME:
        cyc = num * TIME[unit] * clock_hz
    else:
        raise ValueError(f"unknown unit {unit!r} in {value!r} (valid: cycles, {', '.join(TIME)})")
    # Round up: a latency is a lower bound on when data can arrive. The epsilon absorbs float noise
    # such as 500e-9 * 1e9 = 500.00000000000006.
    return int(math.ceil(cyc - 1e-9))


def parse_time(value) -> float:
    """'4 us' -> 4e-6 (seconds)."""
    return _lookup(value, TIME, "time")
