"""Each sparse-training method's parameters, declared once (numpy-free, torch-free).

A method is a frozen dataclass whose fields are the keyword arguments ``record_training`` takes for
it, each with its type, default, help text and range or choices (:func:`param`). ``METHOD_SPECS``
is the one registry of methods: :func:`accelsim.sparsity.apply_method` finds the function that
applies a method there, ``accelsim.training.record_training`` validates its method keywords with the
method's dataclass, and ``accelsim record`` derives one flag per field (:func:`add_flags`). Adding a
method = one dataclass, one ``METHOD_SPECS`` entry, and the function that applies it.

The same machinery declares the training loop's own settings (``accelsim.training.TrainingParams``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from accelsim.errors import AccelsimError

_REQUIRED = dataclasses.MISSING

# SWAT's choices (accelsim.sparsity.swat implements them)
SWAT_DISTRIBUTIONS = ("uniform", "erk")
SWAT_STRUCTURES = ("unstructured", "channel", "filter")


def param(default: Any = _REQUIRED, *, help: str, lo: float | None = None, hi: float | None = None,
          hi_open: bool = False, lo_open: bool = False, choices: tuple | None = None,
          flag: str | None = None) -> Any:
    """A dataclass field with what validation and the CLI need: ``lo``/``hi`` bound numbers (closed
    unless ``*_open``), ``choices`` lists the allowed strings, ``flag`` overrides the CLI name
    (default ``--field-name``). No default = the method cannot run without it."""
    meta = dict(help=help, lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, choices=choices, flag=flag)
    if default is _REQUIRED:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _base_type(tp: Any) -> tuple[type, bool]:
    """(int | float | str | bool, optional?) of a field's annotation."""
    args = typing.get_args(tp)
    if args:  # X | None
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    return tp, False


def _range_text(m: Mapping) -> str:
    lo, hi = m["lo"], m["hi"]
    if hi is None and lo is not None:
        return f"{'>' if m['lo_open'] else '>='} {lo}"
    left = "(" if m["lo_open"] else "["
    right = ")" if m["hi_open"] else "]"
    return f"{left}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}{right}"


def check_value(who: str, name: str, f: dataclasses.Field, value: Any, tp: Any) -> Any:
    """``value`` converted to the field's type (int -> float allowed), or a one-line AccelsimError."""
    base, optional = _base_type(tp)
    m = f.metadata
    if value is None:
        if optional:
            return None
        if f.default is _REQUIRED:
            raise AccelsimError(f"{who}: needs {name} ({m['help']})")
        raise AccelsimError(f"{who}: {name} must not be None")
    if base is bool:
        if not isinstance(value, bool):
            raise AccelsimError(f"{who}: {name} must be true or false, got {_short(value)}")
        return value
    if base is str:
        if not isinstance(value, str):
            raise AccelsimError(f"{who}: {name} must be a string, got {_short(value)}")
        if m["choices"] and value not in m["choices"]:
            raise AccelsimError(f"{who}: {name} must be one of {', '.join(m['choices'])}, got {_short(value)}")
        return value
    if base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        lo, hi = m["lo"], m["hi"]
        ok = (lo is None or (value > lo if m["lo_open"] else value >= lo)) and \
             (hi is None or (value < hi if m["hi_open"] else value <= hi))
    if not ok:
        what = "an integer" if base is int else "a number"
        rng = _range_text(m)
        raise AccelsimError(f"{who}: {name} must be {what} {rng if rng.startswith('>') else 'in ' + rng}, "
                            f"got {_short(value)}")
    return base(value)


class Params:
    """Mixin: validate every field at construction (types, ranges, choices) and :meth:`check`."""

    WHO = "record"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, check_value(self.WHO, f.name, f, getattr(self, f.name), hints[f.name]))
        self.check()

    def check(self) -> None:
        """Checks across fields (override)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


def _nm_check(self) -> None:
    if self.n >= self.m:
        raise AccelsimError(f"{self.WHO}: need 0 < n < m for N:M sparsity, got n={self.n}, m={self.m}")


# --------------------------------------------------------------------------- shared field declarations
# A field shared by several methods is declared once here, so its flag means one thing everywhere.
def _first_layer_dense() -> Any:
    # SWAT keeps the first layer dense on ImageNet ResNets (docs/sources.md "SWAT as implemented").
    return param(True, help="keep the first Conv2d/Linear dense")


def _sparsity(what: str) -> Any:
    return param(help=f"{what} fraction of zeros, in [0, 1)", lo=0.0, hi=1.0, hi_open=True)


def _n() -> Any:
    return param(2, help="N of N:M: non-zeros kept per group of M along the reduction dim", lo=1)


def _m() -> Any:
    return param(4, help="M of N:M: group size along the reduction dim", lo=2)


# ------------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class DenseParams(Params):
    """Dense training (the baseline): no parameters."""

    WHO = "dense"

    def apply_kwargs(self, warmup: int) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class SwatParams(Params):
    """SWAT (Raihan & Aamodt 2020): top-k weights in forward, top-k weights and activations in backward."""

    WHO = "swat"
    sparsity: float = _sparsity("target")
    distribution: str = param("uniform", help="uniform (SWAT-U: every sparse layer the same) or erk "
                              "(Erdos-Renyi-kernel spread of the same budget)", choices=SWAT_DISTRIBUTIONS)
    structure: str = param("unstructured", help="top-k over single weights, channels or filters",
                           choices=SWAT_STRUCTURES)
    topk_period: int = param(1, help="exact top-k every N steps, masks reused in between", lo=1)
    first_layer_dense: bool = _first_layer_dense()

    def apply_kwargs(self, warmup: int) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SrsteParams(Params):
    """SR-STE (Zhou et al. 2021): N:M masks recomputed every forward, sparse-refined gradient."""

    WHO = "srste"
    n: int = _n()
    m: int = _m()
    # lambda_W = 2e-4 is SR-STE's default (docs/sources.md "SR-STE")
    srste_lambda: float = param(2e-4, help="SR-STE lambda_w, the decay on pruned weights", lo=0.0)
    first_layer_dense: bool = _first_layer_dense()
    check = _nm_check

    def apply_kwargs(self, warmup: int) -> dict[str, Any]:
        return dict(n=self.n, m=self.m, lam=self.srste_lambda, first_layer_dense=self.first_layer_dense)


@dataclass(frozen=True)
class SteParams(Params):
    """STE: N:M masks recomputed every forward, straight-through gradient (SR-STE with lambda 0)."""

    WHO = "ste"
    n: int = _n()
    m: int = _m()
    first_layer_dense: bool = _first_layer_dense()
    check = _nm_check

    def apply_kwargs(self, warmup: int) -> dict[str, Any]:
        return dict(n=self.n, m=self.m, first_layer_dense=self.first_layer_dense)


@dataclass(frozen=True)
class AspParams(Params):
    """ASP: prune a trained dense model to N:M by magnitude once, then fine-tune with the fixed mask."""

    WHO = "asp"
    n: int = _n()
    m: int = _m()
    first_layer_dense: bool = _first_layer_dense()
    check = _nm_check

    def apply_kwargs(self, warmup: int) -> dict[str, Any]:
        # The first half of the warmup trains dense, the second half fine-tunes with the fixed mask
        # (warmup 0: prune the initial model at once).
        return dict(n=self.n, m=self.m, prune_at=warmup // 2, first_layer_dense=self.first_layer_dense)


@dataclass(frozen=True)
class SslParams(Params):
    """SSL (Wen et al. 2016): group lasso over filters and channels."""

    WHO = "ssl"
    # ASSUMPTION: 1e-4 is our choice for short runs, not a value from Wen et al.
    ssl_lambda: float = param(1e-4, help="weight of the group-lasso term in the loss", lo=0.0)
    first_layer_dense: bool = _first_layer_dense()

    def apply_kwargs(self, warmup: int) -> dict[str, Any]:
        return dict(lam=self.ssl_lambda, first_layer_dense=self.first_layer_dense)


@dataclass(frozen=True)
class GmpParams(Params):
    """Gradual magnitude pruning (Zhu & Gupta 2017), its schedule compressed into the warmup."""

    WHO = "gmp"
    sparsity: float = _sparsity("final")
    first_layer_dense: bool = _first_layer_dense()

    def apply_kwargs(self, warmup: int) -> dict[str, Any]:
        # About 10 mask updates ending at the first recorded step, so the recorded steps run at the
        # final sparsity.
        dt = max(1, warmup // 10)
        return dict(final_sparsity=self.sparsity, n_updates=warmup // dt, frequency=dt,
                    first_layer_dense=self.first_layer_dense)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its parameters and where the function that applies it lives."""

    name: str
    params: type
    apply: str           # "module:function", imported on use (it needs torch)
    # the method's own work (accelsim/sparsity/handle.py work names) that a real system runs in a
    # dedicated kernel, and which one (trace params.dedicated: each hardware charges its own cost).
    # N:M methods: one fused kernel selects the N:M mask and compresses the 2:4 operand for the sparse
    # tensor cores each step (docs/sources.md "Published dense vs 2:4 measurements").
    dedicated: tuple[tuple[str, str], ...] = ()

    def dedicated_kernel(self, work: str) -> str | None:
        return dict(self.dedicated).get(work)

    def function(self) -> Callable:
        import importlib

        mod, fn = self.apply.split(":")
        return getattr(importlib.import_module(mod), fn)


_NM_KERNELS = (("nm_mask", "topk_fused"), ("compress", "compress_2_4"))
METHOD_SPECS: dict[str, MethodSpec] = {s.name: s for s in (
    MethodSpec("dense", DenseParams, "accelsim.sparsity.methods:_dense"),
    MethodSpec("swat", SwatParams, "accelsim.sparsity.swat:apply_swat"),
    MethodSpec("srste", SrsteParams, "accelsim.sparsity.methods:_srste", _NM_KERNELS),
    MethodSpec("ste", SteParams, "accelsim.sparsity.methods:_ste", _NM_KERNELS),
    MethodSpec("asp", AspParams, "accelsim.sparsity.nm:apply_asp", (("compress", "compress_2_4"),)),
    MethodSpec("ssl", SslParams, "accelsim.sparsity.ssl:apply_ssl"),
    MethodSpec("gmp", GmpParams, "accelsim.sparsity.gmp:apply_gmp"),
)}
METHODS = tuple(METHOD_SPECS)


def method_params(method: str, given: Mapping[str, Any], *, as_flags: bool = False) -> Params:
    """The method's parameter dataclass built from ``given``. A keyword the method does not take,
    or a required one missing, is a one-line error naming what the method does take (as CLI
    flags with ``as_flags``)."""
    spec = METHOD_SPECS[method]
    fields = {f.name: f for f in dataclasses.fields(spec.params)}

    def show(name: str) -> str:
        return flag_name(fields[name]) if as_flags and name in fields else \
            ("--" + name.replace("_", "-") if as_flags else name)

    extra = [k for k in given if k not in fields]
    if extra:
        others = [s.name for s in METHOD_SPECS.values() if extra[0] in s.params.names()]
        where = f"; {show(extra[0])} is for {', '.join(others)}" if others else ""
        raise AccelsimError(f"record: method {method} does not use {', '.join(map(show, extra))}"
                            f" (it takes: {', '.join(map(show, fields)) or 'no parameters'}{where})")
    for name, f in fields.items():
        if f.default is _REQUIRED and given.get(name) is None:
            raise AccelsimError(f"record: method {method} needs a {show(name)} ({f.metadata['help']})")
    return spec.params(**dict(given))


# ------------------------------------------------------------------------------------------ the CLI
def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_flags(parser: argparse.ArgumentParser, classes: Iterable[type], *, suppress: bool,
              owners: Mapping[str, list[str]] | None = None) -> list[str]:
    """Add one flag per field of ``classes`` (a field shared by several classes once) and return the
    field names. ``suppress``: an absent flag sets no attribute (so only flags the user gave reach
    ``record_training``); otherwise the field's default is the flag's default. ``owners``: field ->
    methods, prefixed to the help."""
    seen: dict[str, dataclasses.Field] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in seen:
                continue
            seen[f.name] = f
            base, _ = _base_type(hints[f.name])
            m = f.metadata
            help_ = m["help"]
            if owners and f.name in owners:
                help_ = f"{', '.join(owners[f.name])}: {help_}"
            if f.default is _REQUIRED:
                help_ += " (required)"
            elif f.default is not None:
                help_ += f" (default {'yes' if f.default is True else 'no' if f.default is False else f.default})"
            kw: dict[str, Any] = dict(dest=f.name, help=help_)
            if suppress:
                kw["default"] = argparse.SUPPRESS
            elif f.default is not _REQUIRED:
                kw["default"] = f.default
            if base is bool:
                kw["action"] = argparse.BooleanOptionalAction
            else:
                kw["type"] = base
                if m["choices"]:
                    kw["choices"] = m["choices"]
                    kw["metavar"] = "|".join(m["choices"])
                else:
                    kw["metavar"] = "N" if base is int else "X"
            parser.add_argument(flag_name(f), **kw)
    return list(seen)


def method_owners() -> dict[str, list[str]]:
    """field name -> the methods that take it, in registry order."""
    out: dict[str, list[str]] = {}
    for s in METHOD_SPECS.values():
        for n in s.params.names():
            out.setdefault(n, []).append(s.name)
    return out
