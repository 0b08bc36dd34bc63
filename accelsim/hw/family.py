"""The hardware-family registry (docs/architecture.md "Family registry").

A family is declared once, in a light module of ``accelsim/hw/families/`` (no numpy, numba or simpy:
``accelsim hw list`` and ``load_hw`` stay fast to import), as a :class:`Family`: its compute schema
and parser, the sparsity kinds its model implements, the memory *roles* a hardware file must fill,
its load-time validation, and the dotted name of the module with its cost function (``op_cost``),
imported on first use (:meth:`Family.model`). The loader (hw/loader.py) and the simulator
(sim/engine.py) dispatch through :func:`get`; adding a family = its declaration module plus one
line in ``accelsim/hw/families/__init__.py``.

Memory roles. Every level of a hardware file is named after a role its family declares, each role
exactly once, DRAM last (:func:`check_memory`); family code looks a level up by role
(:meth:`HardwareConfig.role`), never by position or a default.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from accelsim.errors import HardwareConfigError

# role name of the outermost level, which every family has (HardwareConfig.dram)
DRAM = "dram"


@dataclass(frozen=True)
class Role:
    """One memory level a family's model uses. ``on_chip``: the level needs a capacity (the model
    sizes buffers from it; an on-chip level without one would silently be unbounded). ``shared``:
    the value ``shared`` must have (False: one instance per SM/unit), None: either."""

    name: str
    meaning: str
    on_chip: bool = True
    shared: bool | None = None


@dataclass(frozen=True)
class Family:
    """A hardware family's declaration (module docstring).

    ``parse_compute(ctx, mapping) -> compute dataclass`` validates the YAML ``compute`` mapping with
    the loader's context (``ctx.keys/int_/choice/triple/triples/unit/fail``). ``validate(hw, fail) ->
    HardwareConfig`` runs after the whole file is parsed: cross-field checks (raise ``fail(key,
    problem)``) and derived fields (return the possibly replaced config)."""

    name: str
    compute_keys: tuple[str, ...]
    parse_compute: Callable[[Any, Any], Any]
    sparsity_kinds: tuple[str, ...]
    roles: tuple[Role, ...]  # innermost first; the last is DRAM
    cost_module: str  # dotted module with op_cost(work, hw, *, sparse) -> FamilyCost
    validate: Callable[[Any, Callable[[str, str], HardwareConfigError]], Any] | None = None

    def __post_init__(self) -> None:
        if not self.roles or self.roles[-1].name != DRAM or self.roles[-1].on_chip:
            raise ValueError(f"family {self.name!r}: the last memory role must be the off-chip {DRAM!r}")

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    def model(self):
        """The module implementing ``op_cost`` (imported on first use)."""
        return importlib.import_module(self.cost_module)


_REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a family (called once by its declaration module)."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"hardware family {family.name!r} registered twice")
    _REGISTRY[family.name] = family
    return family


def _load() -> dict[str, Family]:
    if not _REGISTRY:
        import accelsim.hw.families  # noqa: F401  (each module registers itself)
    return _REGISTRY


def names() -> tuple[str, ...]:
    """The registered family names, in registration order."""
    return tuple(_load())


def get(name: str) -> Family:
    fams = _load()
    if name not in fams:
        raise HardwareConfigError(f"unknown hardware family {str(name)[:40]!r} (valid: {', '.join(fams)})")
    return fams[name]


def data_type(ctx, c: dict, where: str = "compute") -> tuple[str, int]:
    """(data_type, element_bytes) of a compute mapping: element_bytes defaults to the type's width."""
    from accelsim.hw.config import DATA_TYPES

    dt = ctx.choice(c, "data_type", where, tuple(DATA_TYPES))
    return dt, ctx.int_(c, "element_bytes", where, default=DATA_TYPES[dt])


def check_memory(family: Family, levels, fail: Callable[[str, str], HardwareConfigError]) -> None:
    """Each level fills one of the family's roles, each role exactly once, DRAM last (module
    docstring). ``levels``: the parsed MemoryLevel tuple, innermost first."""
    fam = family
    valid = ", ".join(fam.role_names)
    roles = {r.name: r for r in fam.roles}
    for i, lv in enumerate(levels):
        role = roles.get(lv.name)
        where = f"memory[{i}].name"
        if role is None:
            raise fail(where, f"{lv.name[:40]!r} is not a memory role of family {fam.name} (valid roles: {valid})")
        if role.on_chip and lv.capacity_bytes is None:
            raise fail(f"memory[{i}].capacity", f"level {lv.name} ({role.meaning}) needs a capacity")
        if role.shared is not None and lv.shared != role.shared:
            per = "one instance per SM/unit" if not role.shared else "one instance for the whole chip"
            raise fail(f"memory[{i}].shared", f"level {lv.name} ({role.meaning}) is {per}: "
                                              f"write shared: {'true' if role.shared else 'false'}")
    have = {lv.name for lv in levels}
    missing = [r for r in fam.role_names if r not in have]
    if missing:
        raise fail("memory", f"no level {', '.join(missing)} (family {fam.name} needs one level per role: "
                             f"{valid})")
    if levels[-1].name != DRAM:
        raise fail(f"memory[{len(levels) - 1}].name",
                   f"the outermost (last) level must be {DRAM}, got {levels[-1].name!r}")


def check_hw(hw) -> Any:
    """Memory roles and the family's own validation of a config built without load_hw (tests,
    ``dataclasses.replace`` variants); returns the config with any derived fields set. Errors name
    ``hw.source``."""
    fam = get(hw.family)
    where = hw.source or hw.name

    def fail(key: str, problem: str) -> HardwareConfigError:
        return HardwareConfigError(f"{where}: {key or 'top level'}: {problem}")

    check_memory(fam, hw.memory, fail)
    return fam.validate(hw, fail) if fam.validate is not None else hw
