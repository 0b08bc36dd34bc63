"""Sweep specs (docs/sweeps.md): traces x machines, each machine a hardware file with ``vary:``
(cartesian product of dotted keys) and ``zip:`` (keys that move together). Every point is built as a
hardware mapping and validated by the hardware loader's own parse_hw before anything runs."""

from __future__ import annotations

import copy
import glob
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accelsim.errors import AccelsimError, HardwareConfigError
from accelsim.util.files import display_path

MAX_SPEC_BYTES = 1 << 20
MAX_POINTS = 1_000_000  # a spec that multiplies out to more is refused before anything is built
SPEC_KEYS = ("traces", "machines")
MACHINE_KEYS = ("hw", "name", "vary", "zip")


class SweepSpecError(AccelsimError):
    """A sweep spec that cannot be run; one line naming the file (and the machine and point)."""


@dataclass
class Point:
    machine: str
    index: int  # within its machine, cartesian order (last key fastest)
    values: dict[str, Any]  # varied dotted key -> value as written in the spec
    hw_data: dict  # the full, modified hardware mapping
    hw_name: str
    family: str
    hw_json: str = ""  # canonical JSON of hw_data: the cache key's hardware part

    def label(self) -> str:
        text = ", ".join(f"{k}={v}" for k, v in self.values.items())
        return f"machine {self.machine} point {self.index}" + (f" ({_cut(text)})" if text else "")


@dataclass
class SweepSpec:
    path: Path
    traces: list[Path]  # resolved, sorted, unique
    points: list[Point]
    keys: list[str] = field(default_factory=list)  # every varied key, first-seen order


def _cut(text: str, n: int = 100) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _show(v: Any) -> str:
    return _cut(repr(v), 60)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def trace_label(path: Path, spec_dir: Path) -> str:
    """The ``trace`` column: relative to the spec's directory (the same wherever the sweep runs)."""
    try:
        return Path(os.path.relpath(path, spec_dir)).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path)


def _set(data: dict, key: str, value: Any, fail) -> None:
    """Set dotted ``key`` in a hardware mapping. Memory levels (a list) are addressed by ``name`` or
    index. Only keys the file has may be changed, except under ``sparsity`` (optional keys)."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise fail(f"vary key {_show(key)}: expected dotted keys such as compute.rows")
    node: Any = data
    may_create = parts[0] == "sparsity"
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            match = [lvl for lvl in node if isinstance(lvl, dict) and lvl.get("name") == part]
            if not match and part.isdigit() and int(part) < len(node):
                match = [node[int(part)]]
            if not match:
                names = [str(lvl.get("name")) for lvl in node if isinstance(lvl, dict)]
                raise fail(f"vary key {_show(key)}: no level {_show(part)} in {'.'.join(parts[:i])} "
                           f"(levels: {_cut(', '.join(names), 80)})")
            if last:
                raise fail(f"vary key {_show(key)}: names a whole memory level, not one of its keys")
            node = match[0]
            continue
        if not isinstance(node, dict):
            raise fail(f"vary key {_show(key)}: {'.'.join(parts[:i])} is not a mapping")
        if last:
            if part not in node and not may_create:
                raise fail(f"vary key {_show(key)}: the hardware file has no {where}")
            node[part] = value
            return
        if part not in node:
            if not may_create:
                raise fail(f"vary key {_show(key)}: the hardware file has no {where}")
            node[part] = {}
        node = node[part]


def _read_yaml(path: Path, what: str) -> Any:
    from accelsim.hw.loader import MAX_HW_FILE_BYTES
    from accelsim.hw.yaml_input import parse_yaml_text
    from accelsim.util.files import NotRegularFileError, read_regular

    shown = display_path(path)
    limit = MAX_SPEC_BYTES if what == "sweep spec" else MAX_HW_FILE_BYTES
    try:
        text = read_regular(path, limit).decode("utf-8")
    except FileNotFoundError:
        raise SweepSpecError(f"{shown}: {what} not found") from None
    except NotRegularFileError as e:
        raise SweepSpecError(f"{shown}: is {e.kind}, not a {what}") from None
    except ValueError as e:
        raise SweepSpecError(f"{shown}: cannot read: "
                             f"{'not UTF-8 text' if isinstance(e, UnicodeDecodeError) else e}") from None
    except OSError as e:
        raise SweepSpecError(f"{shown}: cannot read: {e.strerror or type(e).__name__}") from None
    try:
        return parse_yaml_text(text, shown)  # the hardened reader: bounded, plain values, one-line errors
    except HardwareConfigError as e:
        raise SweepSpecError(str(e)) from None


def _traces(spec_dir: Path, items: Any, fail) -> list[Path]:
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, list) or not items or not all(isinstance(t, str) and t for t in items):
        raise fail("traces: expected a list of trace paths or globs")
    out: dict[str, Path] = {}
    for pat in items:
        full = pat if os.path.isabs(pat) else os.path.join(spec_dir, pat)
        hits = sorted(glob.glob(full)) if glob.has_magic(pat) else ([full] if os.path.lexists(full) else [])
        if not hits:
            raise fail(f"traces: {_show(pat)} matches no file")
        for h in hits:
            p = Path(os.path.normpath(h))
            if p.suffix.lower() != ".npz":
                raise fail(f"traces: {display_path(p)} is not a trace file (.npz)")
            out[str(p)] = p
    return [out[k] for k in sorted(out)]


def _axes(m: dict, fail) -> tuple[list[str], list[list[tuple]]]:
    """(keys in column order, axes): each axis a list of value tuples for its keys."""
    keys: list[str] = []
    axes: list[tuple[list[str], list[tuple]]] = []
    vary = m.get("vary") or {}
    zipped = m.get("zip") or {}
    for what, block in (("vary", vary), ("zip", zipped)):
        if not isinstance(block, dict):
            raise fail(f"{what}: expected a mapping of dotted keys to lists of values")
        for k, vals in block.items():
            if not isinstance(vals, list) or not vals:
                raise fail(f"{what}.{k}: expected a non-empty list of values")
            if k in keys:
                raise fail(f"{what}.{k}: key is varied twice")
            keys.append(k)
    for k, vals in vary.items():
        axes.append(([k], [(v,) for v in vals]))
    if zipped:
        lens = {k: len(v) for k, v in zipped.items()}
        if len(set(lens.values())) != 1:
            raise fail(f"zip: lists must have equal lengths, got {_cut(', '.join(f'{k}: {n}' for k, n in lens.items()), 120)}")
        zk = list(zipped)
        axes.append((zk, list(zip(*(zipped[k] for k in zk)))))
    order = [k for ks, _ in axes for k in ks]
    return order, [vals for _, vals in axes]


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Parse and validate a sweep spec; every point is a validated hardware mapping."""
    from accelsim.hw import catalog
    from accelsim.hw.loader import parse_hw

    p = Path(path)
    shown = display_path(p)
    data = _read_yaml(p, "sweep spec")

    def fail(msg: str) -> SweepSpecError:
        return SweepSpecError(f"{shown}: {msg}")

    if not isinstance(data, dict):
        raise fail("expected a mapping with 'traces' and 'machines'")
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise fail(f"unknown key {_show(unknown[0])} (valid: {', '.join(SPEC_KEYS)})")
    for k in SPEC_KEYS:
        if k not in data:
            raise fail(f"missing key '{k}'")
    spec_dir = Path(os.path.normpath(os.path.abspath(p))).parent
    traces = _traces(spec_dir, data["traces"], fail)
    machines = data["machines"]
    if not isinstance(machines, list) or not machines:
        raise fail("machines: expected a non-empty list of machines (each with 'hw' and optional 'vary'/'zip')")
    points: list[Point] = []
    keys: list[str] = []
    labels: set[str] = set()
    for mi, m in enumerate(machines):
        if not isinstance(m, dict) or not isinstance(m.get("hw"), str) or not m["hw"]:
            raise fail(f"machines[{mi}]: expected a mapping with 'hw: FILE-or-NAME'")
        bad = [k for k in m if k not in MACHINE_KEYS]
        if bad:
            raise fail(f"machines[{mi}]: unknown key {_show(bad[0])} (valid: {', '.join(MACHINE_KEYS)})")
        hw = m["hw"]
        rel = hw if os.path.isabs(hw) else os.path.join(spec_dir, hw)
        hw_path = Path(rel) if os.path.lexists(rel) else catalog.resolve(hw)
        if hw_path == Path(hw) and not os.path.lexists(hw_path):
            raise fail(f"machines[{mi}]: hw {_show(hw)} is neither a file next to the spec nor a shipped machine "
                       f"{catalog.not_found_hint()}")
        label = m.get("name", Path(hw).stem)
        if not isinstance(label, str) or not label:
            raise fail(f"machines[{mi}]: name must be a non-empty string")
        if label in labels:
            raise fail(f"machines[{mi}]: name {_show(label)} is used twice (give each machine its own 'name')")
        labels.add(label)
        base = _read_yaml(hw_path, "hardware file")
        if not isinstance(base, dict):
            raise fail(f"machine {label}: {display_path(hw_path)} is not a hardware mapping")

        def mfail(msg: str, _label=label) -> SweepSpecError:
            return fail(f"machine {_label}: {msg}")

        order, axes = _axes(m, mfail)
        n = 1
        for a in axes:
            n *= len(a)
        if len(points) + n > MAX_POINTS:
            raise fail(f"more than {MAX_POINTS} points")
        for k in order:
            if k not in keys:
                keys.append(k)
        for idx, combo in enumerate(itertools.product(*axes)):
            values = {k: v for k, v in zip(order, itertools.chain.from_iterable(combo))}
            hw_data = copy.deepcopy(base)
            pt = Point(machine=label, index=idx, values=values, hw_data=hw_data, hw_name="", family="")
            for k, v in values.items():
                _set(hw_data, k, v, lambda msg, _pt=pt: fail(f"{_pt.label()}: {msg}"))
            try:
                cfg = parse_hw(hw_data, str(hw_path))
            except HardwareConfigError as e:
                msg = str(e)
                src = str(hw_path)
                if msg.startswith(src):
                    msg = msg[len(src):].lstrip(": ")
                raise fail(f"{pt.label()}: {_cut(msg, 300)}") from None
            pt.hw_name, pt.family = cfg.name, cfg.family
            pt.hw_json = canonical_json(hw_data)
            points.append(pt)
    return SweepSpec(path=p, traces=traces, points=points, keys=keys)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
