"""Validation tables of the configuration's config-only sections, and the
typed sections seen as tables.

The algorithm sections and ``[output]`` are typed settings classes (the one
schema: :mod:`phasic_mpi.settings`, found through
:mod:`phasic_mpi.inference.registry`); :data:`SVGD`, :data:`PT` and
:data:`OUTPUT` are views of them for docs and tests. Sections that exist only
in config files (``[model]``, ``[data.simulate]``, studies) are tables
``{key: Key(checker, default, help)}`` validated by :func:`check_section`; a
checker takes ``(value, key path)`` and returns the normalised value or
raises :class:`ConfigError` with a message starting with the key path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from phasic_mpi.errors import ConfigError
from phasic_mpi.inference.registry import algorithm_names, settings_class
from phasic_mpi.run.settings import OutputSettings
from phasic_mpi.settings import (Checker, boolean, choice, fail, integer, is_int, is_number,
                                 number, plain, string, table)

__all__ = [
    "ALGORITHMS", "CENSORING", "MODEL", "OUTPUT", "PT", "REQUIRED", "SECTION_RULES", "SIMULATE", "SVGD",
    "ConfigError", "Key", "boolean", "check_section", "choice", "fail", "integer", "number",
    "plain", "string", "table",
]


# The checkers live with the typed settings (every layer uses them).
REQUIRED: Any = object()  # default of a Key that must be given


@dataclass(frozen=True)
class Key:
    """One key of a config-only section: its checker, default and a one-line description."""

    check: Checker
    default: Any = REQUIRED
    help: str = ""


def check_section(raw: Any, keys: Mapping[str, Key], path: str) -> dict:
    """Validate a table against ``keys``: unknown keys, missing keys, values, rules."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        fail(path, f"expected a table, got {raw!r}")
    for name in raw:
        if name not in keys:
            fail(f"{path}.{name}", f"unknown key (known: {', '.join(keys)})")
    out = {}
    for name, key in keys.items():
        if name in raw:
            out[name] = key.check(raw[name], f"{path}.{name}")
        elif key.default is REQUIRED:
            fail(f"{path}.{name}", "required key missing")
        else:
            out[name] = copy.deepcopy(key.default)
    rule = SECTION_RULES.get(path)
    if rule is not None:
        rule(out)
    return out


# ------------------------------------------------------------------- tables
MODEL: dict[str, Key] = {
    "name": Key(string, None, "phase-type model: built-in, 'module:function' or "
                              "'file.py:function' returning a Graph"),
    "density": Key(string, None, "'module:function' or 'file.py:function' returning "
                                 "a LogDensity (instead of name)"),
    "options": Key(table, {}, "keyword arguments of the model factory"),
    "max_states": Key(integer(1), 250_000, "stop exploring a model's states beyond this many"),
}


def _keys(cls: type) -> dict[str, Key]:
    """A settings class as a Key table (for documentation and tests)."""
    import dataclasses

    out = {}
    for f in dataclasses.fields(cls):
        if "check" in f.metadata:
            default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else REQUIRED if f.default is dataclasses.MISSING else f.default)
            out[f.name] = Key(f.metadata["check"], default, f.metadata["help"])
    return out


def settings_tables() -> dict[str, dict[str, Key]]:
    """Key tables of the typed sections: every algorithm's and ``output``."""
    tables = {name: _keys(settings_class(name)) for name in algorithm_names()}
    tables["output"] = _keys(OutputSettings)
    return tables


OUTPUT: dict[str, Key] = _keys(OutputSettings)
ALGORITHMS: tuple[str, ...] = algorithm_names()  # exactly one section must be present

SECTION_RULES: dict[str, Callable[[dict], None]] = {}  # cross-key rules of config-only sections

_KIND = Key(choice("fixed", "exponential", "uniform"), REQUIRED, "censoring scheme")
_AT = "fixed censoring time: the end of observation"
#: ``[data.simulate] censoring`` by kind: what ``phasic-mpi simulate --censor-*`` does.
CENSORING: dict[str, dict[str, Key]] = {
    "fixed": {"kind": _KIND, "at": Key(number(positive=True), REQUIRED, _AT)},
    "exponential": {"kind": _KIND, "rate": Key(number(positive=True), REQUIRED,
                                               "censoring times ~ Exponential(rate)"),
                    "at": Key(number(positive=True), None, _AT + " as well (optional)")},
    "uniform": {"kind": _KIND, "high": Key(number(positive=True), REQUIRED,
                                           "censoring times ~ Uniform(0, high)"),
                "at": Key(number(positive=True), None, _AT + " as well (optional)")},
}


def _censoring(value: Any, path: str) -> dict | None:
    """A censoring table ``{ kind = "fixed", at = 4.0 }``... checked by kind (or None)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        fail(path, f"expected a table like {{ kind = \"fixed\", at = 4.0 }}, got {value!r}")
    if "kind" not in value:
        fail(f"{path}.kind", "required key missing (one of 'fixed', 'exponential', 'uniform')")
    kind = _KIND.check(value["kind"], f"{path}.kind")
    return check_section(value, CENSORING[kind], path)


SIMULATE: dict[str, Key] = {
    "theta": Key(lambda v, p: v, REQUIRED, "parameter values (list, or table by name)"),
    "n": Key(integer(1), REQUIRED, "number of observations"),
    "seed": Key(integer(0), 0, "seed of the simulation"),
    "censoring": Key(_censoring, None, "right-censor the simulated times (a table by kind)"),
}


def __getattr__(name: str) -> Any:
    # SVGD and PT as tables import their algorithm modules (scipy): on first use only
    if name in ("SVGD", "PT"):
        return _keys(settings_class(name.lower()))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
