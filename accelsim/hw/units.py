"""Unit strings in hardware YAML -> SI numbers, with the limits every value must respect.

Accepted (case-insensitive unit names): frequencies Hz/kHz/MHz/GHz; sizes B, KB/MB/GB (decimal,
10^3) and KiB/MiB/GiB (binary, 2^10); bandwidths B/s, KB/s, MB/s, GB/s, TB/s (decimal, as DRAM
vendors quote them) or "N words/cycle"; times s/ms/us/ns and "N cycles". A bare number is taken in
the base unit (Hz, bytes, bytes/s, cycles). Every parser raises ValueError with a short reason; the
loader turns it into a one-line HardwareConfigError naming the file and key.

Limits (docs/hwconfig.md "Limits"): every value is finite and at most ``MAX_EXACT`` in its base
unit (the models count cycles, bytes and MACs in int64/float64, exact only up to 2**53); a clock
below ``MIN_CLOCK_HZ`` or a bandwidth below ``MIN_BANDWIDTH`` is refused unless the file sets
``allow_extreme: true`` -- such a value is nearly always a unit slip ("1.41 Hz", "900 B/s").
"""

from __future__ import annotations

import math
import re

MAX_EXACT = 2**53  # largest integer float64 holds exactly; also the ceiling of every base-unit value
MIN_CLOCK_HZ = 1e6  # 1 MHz: below it only with allow_extreme
MIN_BANDWIDTH = 1e6  # 1 MB/s: below it only with allow_extreme
MIN_HARD = 1.0  # 1 Hz, 1 B/s: the floor even allow_extreme keeps (the cycle counts must stay finite)
MAX_SHOWN = 60  # characters of a user value quoted in an error message


def show(value) -> str:
    """A user value for an error message: repr() of a scalar, cut to MAX_SHOWN characters; a
    container is named by type and length only (its repr could be as large as the file)."""
    if isinstance(value, (dict, list, tuple, set)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, str) and len(value) > MAX_SHOWN:
        return repr(value[:MAX_SHOWN]) + f"... ({len(value)} characters)"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_SHOWN:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


def _floor(x: float, value, what: str, minimum: float, labels: tuple[str, str], allow_extreme: bool) -> None:
    """``labels``: how the plausibility floor and the hard floor read ("1 MHz", "1 Hz")."""
    if not x > 0:
        raise ValueError(f"must be > 0, got {show(value)}")
    if x < MIN_HARD:
        raise ValueError(f"{show(value)} is below {labels[1]}, not a usable {what}")
    if x < minimum and not allow_extreme:
        raise ValueError(f"{show(value)} is below {labels[0]}, not a plausible {what} (a unit slip? "
                         f"set allow_extreme: true at the top level if you mean it)")


def _ceiling(x: float, value) -> None:
    if x > MAX_EXACT:
        raise ValueError(f"{show(value)} is too large (at most 2**53 in the base unit)")


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
        raise ValueError(f"expected a {what}, got {show(value)}")
    if isinstance(value, int):
        if abs(value) > MAX_EXACT:  # before float(): a 400-digit integer overflows it
            raise ValueError(f"{show(value)} is too large (at most 2**53 in the base unit)")
        return float(value), ""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{show(value)} is not finite")
        return value, ""
    if not isinstance(value, str):
        raise ValueError(f"expected a {what}, got {show(value)}")
    m = _RE.match(value) if len(value) <= 200 else None  # no unit string is longer
    if not m:
        raise ValueError(f"cannot parse {show(value)} as a {what}")
    num = float(m.group(1))
    if not math.isfinite(num):
        raise ValueError(f"{show(value)} is not finite")
    return num, " ".join(m.group(2).lower().split())


def _lookup(value, table: dict, what: str) -> float:
    num, unit = _split(value, what)
    if unit == "":
        return num
    if unit not in table:
        raise ValueError(f"unknown unit {show(unit)} in {show(value)} (valid: {', '.join(table)})")
    return num * table[unit]


def parse_frequency(value, *, allow_extreme: bool = False) -> float:
    """'1.41 GHz' -> 1.41e9 (Hz); 1 MHz .. 2**53 Hz (below 1 MHz, down to 1 Hz, only with allow_extreme)."""
    hz = _lookup(value, FREQ, "frequency")
    _floor(hz, value, "clock", MIN_CLOCK_HZ, ("1 MHz", "1 Hz"), allow_extreme)
    _ceiling(hz, value)
    return hz


def parse_size(value, *, allow_extreme: bool = False) -> int:
    """'40 MiB' -> 41943040, '40 MB' -> 40000000 (bytes, must be a whole number of bytes)."""
    b = _lookup(value, SIZE, "size")
    _ceiling(abs(b), value)
    if b != int(b):
        raise ValueError(f"{show(value)} is not a whole number of bytes")
    return int(b)


def parse_bandwidth(value, *, word_bytes: int, clock_hz: float, allow_extreme: bool = False) -> float:
    """'1555 GB/s' -> 1.555e12 B/s; '10 words/cycle' -> 10 * word_bytes * clock_hz B/s.
    1 MB/s .. 2**53 B/s (below 1 MB/s, down to 1 B/s, only with allow_extreme)."""
    num, unit = _split(value, "bandwidth")
    if unit in ("words/cycle", "word/cycle", "words/clk"):
        bw = num * word_bytes * clock_hz
    elif unit in ("bytes/cycle", "b/cycle"):
        bw = num * clock_hz
    else:
        bw = _lookup(value, BW, "bandwidth")
    _floor(bw, value, "bandwidth", MIN_BANDWIDTH, ("1 MB/s", "1 B/s"), allow_extreme)
    _ceiling(bw, value)
    return bw


def parse_latency_cycles(value, *, clock_hz: float, allow_extreme: bool = False) -> int:
    """'500 ns' -> cycles at clock_hz (rounded up); '20 cycles' or 20 -> 20 (at most 2**53 cycles)."""
    num, unit = _split(value, "latency")
    if unit in ("", "cycle", "cycles"):
        cyc = num
    elif unit in TIME:
        cyc = num * TIME[unit] * clock_hz
    else:
        raise ValueError(f"unknown unit {show(unit)} in {show(value)} (valid: cycles, {', '.join(TIME)})")
    _ceiling(abs(cyc), value)
    return ceil_cycles(cyc)  # a latency is a lower bound on when data can arrive


def ceil_cycles(cycles: float) -> int:
    """Whole cycles, rounded up; the epsilon absorbs float noise such as 500e-9 * 1e9 =
    500.00000000000006 (which would otherwise round up to 501)."""
    return int(math.ceil(cycles - 1e-9))


def parse_time(value, *, allow_extreme: bool = False) -> float:
    """'4 us' -> 4e-6 (seconds; at most 2**53 ns)."""
    s = _lookup(value, TIME, "time")
    _ceiling(abs(s) * 1e9, value)
    return s
