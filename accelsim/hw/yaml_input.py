"""Read a hardware YAML file into plain Python values, refusing what no hardware file needs.

A hardware file is a few KB of nested mappings, lists and scalars (docs/hwconfig.md); the loader
reads at most 256 KiB of a regular file (accelsim/util/files.py) and hands the text here. Anything
else is refused with one ``HardwareConfigError`` line, before it can cost time or memory:

- anchors and aliases (``&a`` / ``*a``): an alias bomb ("billion laughs") expands 786 bytes into
  gigabytes; no hardware file needs to repeat a value by reference;
- nesting deeper than ``MAX_DEPTH``, more than ``MAX_NODES`` values, a scalar longer than
  ``MAX_SCALAR`` characters, an integer beyond 2**53;
- a key that is a mapping or a list, a key given twice, explicit tags other than the core ones;
- ``.inf`` / ``.nan`` / a float that overflows (1.0e400), and YAML 1.1's base-60 numbers (``2:4``
  reads as the integer 124): ``kind: 2:4`` gets the hint "write kind: nm, n: 2, m: 4".

Keys are always their text (``1: x`` gives the key ``"1"``) and values are dict, list, str, int,
float, bool or None, so the loader only ever sees plain values.
"""

from __future__ import annotations

import re

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from accelsim.errors import HardwareConfigError
from accelsim.hw.units import MAX_EXACT, show

MAX_DEPTH = 16  # the shipped files nest 3 deep (memory -> level -> key; cta_tile lists)
MAX_NODES = 10_000  # values of all kinds; the largest shipped file has under 200
MAX_SCALAR = 1024  # characters of one scalar (a description is one line)

_T = "tag:yaml.org,2002:"
# YAML 1.1 sexagesimal ints and floats as PyYAML's resolver matches them (2:4 -> 124, 1:30.5 -> 90.5)
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


class _Refused(Exception):
    """A YAML construct a hardware file may not use; carries the 1-based line and the message."""

    def __init__(self, mark, message: str):
        super().__init__(message)
        self.line = mark.line + 1 if mark is not None else None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that composes a node graph with no anchors or aliases, bounded depth and size.

    Only composition is used (``get_single_node``): values are built by :func:`_build`, not by
    PyYAML's constructors, so nothing is ever expanded or repr()'d beyond the limits."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(event.start_mark, f"alias *{_cut(event.anchor)} refused: hardware files "
                                             "do not use YAML anchors or aliases (write the value out)")
        if getattr(event, "anchor", None) is not None:
            raise _Refused(event.start_mark, f"anchor &{_cut(event.anchor)} refused: hardware files "
                                             "do not use YAML anchors or aliases (write the value out)")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(event.start_mark, f"more than {MAX_NODES} values; a hardware file has a few hundred")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _where(path: str) -> str:
    return _cut(path) or "top level"


def _kind_hint(node, path: str, text: str, value: str) -> _Refused:
    nm = _NM.match(text)
    return _Refused(node.start_mark, f"{_where(path)}: {show(text)} is not a sparsity kind{value}; for N:M "
                                     f"sparsity write kind: nm, n: {nm[1]}, m: {nm[2]}")


def _scalar(node: ScalarNode, path: str, key: str):
    text = node.value
    if len(text) > MAX_SCALAR:
        raise _Refused(node.start_mark, f"{_where(path)}: a value of {len(text)} characters "
                                        f"(at most {MAX_SCALAR})")
    tag = node.tag
    if tag == _T + "str":
        if key == "kind" and _NM.match(text):  # kind: "2:4", or 1:64 (not base-60: 64 > 59)
            raise _kind_hint(node, path, text, "")
        return text
    if tag in (_T + "int", _T + "float") and node.style is None and _BASE60.match(text):
        if key == "kind" and _NM.match(text):
            raise _kind_hint(node, path, text, f" (YAML 1.1 reads it as the base-60 number {_base60(text)})")
        raise _Refused(node.start_mark, f"{_where(path)}: {show(text)} reads as the base-60 number "
                                        f"{_base60(text)} in YAML 1.1; write the number you mean, or quote it")
    if tag == _T + "int":
        digits = text.lstrip("+-").replace("_", "")
        if len(digits) > 20:  # before int(): Python refuses > 4300 digits with a ValueError
            raise _Refused(node.start_mark, f"{_where(path)}: integer of {len(digits)} digits is too large "
                                            "(at most 2**53)")
        value = _CONSTRUCT.construct_yaml_int(node)
        if abs(value) > MAX_EXACT:
            raise _Refused(node.start_mark, f"{_where(path)}: {value} is too large (at most 2**53)")
        return value
    if tag == _T + "float":
        value = _CONSTRUCT.construct_yaml_float(node)
        if value != value or value in (float("inf"), float("-inf")):
            raise _Refused(node.start_mark, f"{_where(path)}: {show(text)} is not a finite number")
        return value
    if tag == _T + "bool":
        return _CONSTRUCT.construct_yaml_bool(node)
    if tag == _T + "null":
        return None
    if tag == _T + "timestamp":  # YAML 1.1 reads 2024-01-01 as a date: keep the text
        return text
    raise _Refused(node.start_mark, f"{_where(path)}: YAML tag {show(tag)} is not used in hardware files")


def _base60(text: str) -> str:
    sign = -1 if text.startswith("-") else 1
    whole, _, frac = text.lstrip("+-").replace("_", "").partition(".")
    value = 0
    for part in whole.split(":"):
        value = value * 60 + int(part)
    return f"{sign * value}{'.' + frac if frac else ''}"


def _build(node, path: str = "", key: str = ""):
    """Plain Python values from a composed node, checking keys on the way."""
    if isinstance(node, ScalarNode):
        return _scalar(node, path, key)
    if isinstance(node, SequenceNode):
        if node.tag != _T + "seq":
            raise _Refused(node.start_mark, f"{_where(path)}: YAML tag {show(node.tag)} is not used in hardware files")
        return [_build(v, f"{path}[{i}]", key) for i, v in enumerate(node.value)]
    if isinstance(node, MappingNode):
        if node.tag != _T + "map":
            raise _Refused(node.start_mark, f"{_where(path)}: YAML tag {show(node.tag)} is not used in hardware files")
        out: dict[str, object] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                kind = "mapping" if isinstance(knode, MappingNode) else "list"
                raise _Refused(knode.start_mark, f"{_where(path)}: a key is a {kind}; keys are names")
            k = knode.value
            sub = f"{path}.{k}" if path else k
            if len(k) > MAX_SCALAR:
                raise _Refused(knode.start_mark, f"{_where(path)}: a key of {len(k)} characters")
            if k in out:
                # PyYAML would keep the last one: `rows: 128` then `rows: 64` quietly builds another machine
                raise _Refused(knode.start_mark, f"invalid YAML (duplicate key {show(k)})")
            out[k] = _build(vnode, sub, k)
        return out
    raise _Refused(getattr(node, "start_mark", None), f"{_where(path)}: unexpected YAML node")


_CONSTRUCT = yaml.SafeLoader("")  # only its scalar constructors are used (stateless for scalars)


def parse_yaml_text(text: str, source: str):
    """Plain values of one YAML document (``None`` for an empty one); every refusal is one line."""
    try:
        loader = _BoundedLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
        return None if node is None else _build(node)
    except _Refused as e:
        line = f"line {e.line}: " if e.line is not None else ""
        raise HardwareConfigError(f"{source}: {line}{e}") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        raise HardwareConfigError(f"{source}: {where}: invalid YAML ({e.problem or e.context})") from None
    except yaml.YAMLError as e:  # ReaderError: a control character PyYAML does not accept
        reason = getattr(e, "reason", None) or "unreadable"
        pos = getattr(e, "position", None)
        at = f" at character {pos}" if pos is not None else ""
        raise HardwareConfigError(f"{source}: invalid YAML ({reason}{at})") from None
