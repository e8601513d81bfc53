"""Typed settings: one frozen dataclass per config section, the single schema.

A settings class declares each key once, with :func:`setting`: its checker
(which normalises the value or raises :class:`~phasic_mpi.errors.ConfigError`
with a message that starts with the key path), its default and a one-line
help. The same class serves the Python API (``SVGDSettings(particles=128)``
checks its values on construction) and the TOML edge
(:func:`from_mapping` adds unknown-key errors), so the defaults, bounds and
error messages cannot differ between the two; ``docs/config.md``'s tables
are tested against :func:`describe`.

This module imports nothing of the package but :mod:`phasic_mpi.errors`: every
layer may use it.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from phasic_mpi.errors import ConfigError

__all__ = [
    "REQUIRED", "Checker", "boolean", "check_settings", "choice", "describe", "fail",
    "from_mapping", "integer", "is_int", "is_number", "number", "plain", "setting", "string",
    "table", "to_dict",
]

Checker = Callable[[Any, str], Any]
REQUIRED: Any = dataclasses.MISSING  # default of a key that must be given
T = TypeVar("T")


def fail(path: str, message: str) -> None:
    """Raise ``ConfigError("<path>: <message>")``."""
    raise ConfigError(f"{path}: {message}")


# ----------------------------------------------------------------- checkers
def is_int(value: Any) -> bool:
    """An integer (numpy's included), not a boolean."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (numpy's included), not a boolean."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(minimum: int = 0) -> Checker:
    """Checker for an integer ``>= minimum`` (booleans and floats rejected)."""
    def check(value: Any, path: str) -> int:
        ok = is_int(value)
        if not ok or value < minimum:
            fail(path, f"expected an integer >= {minimum}, got {value!r}")
        return int(value)
    check.what = f"integer ≥ {minimum}"
    return check


def number(minimum: float = -math.inf, *, positive: bool = False) -> Checker:
    """Checker for a finite number (``> 0`` if ``positive``, else ``>= minimum``)."""
    what = ("a positive number" if positive else
            "a finite number" if minimum == -math.inf else f"a number >= {minimum}")

    def check(value: Any, path: str) -> float:
        if (not is_number(value) or not math.isfinite(value)
                or (positive and value <= 0) or value < minimum):
            fail(path, f"expected {what}, got {value!r}")
        return float(value)
    check.what = ("number > 0" if positive else "number" if minimum == -math.inf
                  else f"number ≥ {minimum:g}")
    return check


def choice(*options: str) -> Checker:
    """Checker for one of a fixed set of strings."""
    def check(value: Any, path: str) -> str:
        if not isinstance(value, str) or value not in options:
            fail(path, f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    check.what = " | ".join(f'"{o}"' for o in options)
    return check


def boolean(value: Any, path: str) -> bool:
    """Checker for ``true`` or ``false`` (not 0/1)."""
    if not isinstance(value, bool):
        fail(path, f"expected true or false, got {value!r}")
    return value


boolean.what = "boolean"


def string(value: Any, path: str) -> str:
    """Checker for a non-empty string."""
    if not isinstance(value, str) or not value:
        fail(path, f"expected a non-empty string, got {value!r}")
    return value


string.what = "string"


def plain(value: Any, path: str) -> Any:
    """Deep copy of a TOML value, rejecting what JSON cannot hold (dates, times)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    fail(path, f"unsupported value {value!r} (dates and times are not allowed)")


def table(value: Any, path: str) -> dict:
    """Checker for a table of plain (JSON-serialisable) values, deep-copied."""
    if not isinstance(value, Mapping):
        fail(path, f"expected a table, got {value!r}")
    return plain(value, path)


table.what = "table"


# ------------------------------------------------------------ settings classes
def setting(check: Checker, default: Any = REQUIRED, help: str = "", *,
            what: str | None = None) -> Any:
    """A dataclass field with its checker, default and help (see module doc).

    ``what`` describes the type for the docs (default: the checker's own).
    """
    meta = {"check": check, "help": help, "what": what or getattr(check, "what", "")}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def check_settings(obj: Any) -> None:
    """Check and normalise every field of a frozen settings object in place.

    Call from ``__post_init__``; ``obj.section`` is the key-path prefix.
    """
    prefix = getattr(obj, "section", type(obj).__name__)
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        if check is not None:
            object.__setattr__(obj, f.name, check(getattr(obj, f.name), f"{prefix}.{f.name}"))


def from_mapping(cls: type[T], raw: Any, path: str | None = None) -> T:
    """``cls`` from a config table: unknown keys, missing keys and values checked.

    Error messages start with the key path (``svgd.particles: ...``).
    """
    path = path or cls.section
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        fail(path, f"expected a table, got {raw!r}")
    known = [f.name for f in dataclasses.fields(cls) if "check" in f.metadata]
    for name in raw:
        if name not in known:
            fail(f"{path}.{name}", f"unknown key (known: {', '.join(known)})")
    for f in dataclasses.fields(cls):
        required = f.default is REQUIRED and f.default_factory is dataclasses.MISSING
        if required and f.name not in raw:
            fail(f"{path}.{f.name}", "required key missing")
    return cls(**dict(raw))


def to_dict(obj: Any) -> dict[str, Any]:
    """The settings as a plain dict (the validated config section)."""
    return {f.name: copy.deepcopy(getattr(obj, f.name)) for f in dataclasses.fields(obj)
            if "check" in f.metadata}


def describe(cls: type) -> list[dict[str, Any]]:
    """One row per key: ``name``, ``what`` (type and bounds), ``default``, ``help``."""
    rows = []
    for f in dataclasses.fields(cls):
        if "check" not in f.metadata:
            continue
        default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else None if f.default is REQUIRED else f.default)
        rows.append({"name": f.name, "what": f.metadata["what"], "default": default,
                     "required": f.default is REQUIRED and f.default_factory is dataclasses.MISSING,
                     "help": f.metadata["help"]})
    return rows
