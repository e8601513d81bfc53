"""Validation tables of the run configuration: checkers, :class:`Key` and sections.

A section such as ``[svgd]`` is a table ``{key: Key(checker, default, help)}``
validated by :func:`check_section`; a checker takes ``(value, key path)`` and
returns the normalised value or raises :class:`ConfigError` with a message
starting with the key path. Rules that relate several keys of one section
(``pt.warmup_rounds < pt.rounds``) are in :data:`SECTION_RULES`.
:mod:`phasic_mpi.config` re-exports everything here; ``docs/config.md``
documents every key.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from phasic_mpi.errors import ConfigError

__all__ = [
    "ALGORITHMS", "MODEL", "OUTPUT", "PT", "REQUIRED", "SECTION_RULES", "SIMULATE", "SVGD",
    "ConfigError", "Key", "boolean", "check_section", "choice", "fail", "integer", "number",
    "plain", "string", "table",
]


def fail(path: str, message: str) -> None:
    """Raise ``ConfigError("<path>: <message>")``."""
    raise ConfigError(f"{path}: {message}")


# ----------------------------------------------------------------- checkers
Checker = Callable[[Any, str], Any]
REQUIRED: Any = object()  # default of a key that must be given


@dataclass(frozen=True)
class Key:
    """One key of a section: its checker, default and a one-line description."""

    check: Checker
    default: Any = REQUIRED
    help: str = ""


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int = 0) -> Checker:
    """Checker for an integer ``>= minimum`` (booleans and floats rejected)."""
    def check(value: Any, path: str) -> int:
        if not is_int(value) or value < minimum:
            fail(path, f"expected an integer >= {minimum}, got {value!r}")
        return int(value)
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
    return check


def choice(*options: str) -> Checker:
    """Checker for one of a fixed set of strings."""
    def check(value: Any, path: str) -> str:
        if value not in options or not isinstance(value, str):
            fail(path, f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    return check


def boolean(value: Any, path: str) -> bool:
    """Checker for ``true`` or ``false`` (not 0/1)."""
    if not isinstance(value, bool):
        fail(path, f"expected true or false, got {value!r}")
    return value


def string(value: Any, path: str) -> str:
    """Checker for a non-empty string."""
    if not isinstance(value, str) or not value:
        fail(path, f"expected a non-empty string, got {value!r}")
    return value


def table(value: Any, path: str) -> dict:
    """Checker for a table of plain (JSON-serialisable) values, deep-copied."""
    if not isinstance(value, Mapping):
        fail(path, f"expected a table, got {value!r}")
    return plain(value, path)


def plain(value: Any, path: str) -> Any:
    """Deep copy of a TOML value, rejecting what JSON cannot hold (dates, times)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    fail(path, f"unsupported value {value!r} (dates and times are not allowed)")


BANDWIDTH_RULES = ("median_subset", "median")


def _bandwidth(value: Any, path: str) -> str | float:
    if value in BANDWIDTH_RULES:
        return value
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        fail(path, f"expected 'median_subset', 'median' or a positive number, got {value!r}")
    return float(value)


def _probability_or_zero(value: Any, path: str) -> float:
    if not is_number(value) or not (value == 0 or 0 < value < 1):
        fail(path, f"expected 0 (the default for local_move) or a number in (0, 1), "
                   f"got {value!r}")
    return float(value)


def _warmup_rounds(value: Any, path: str) -> int:
    if not is_int(value):  # the range needs pt.rounds: checked by _pt_rules
        fail(path, f"expected an integer in [0, rounds), got {value!r}")
    return int(value)


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
}

SVGD: dict[str, Key] = {
    "particles": Key(integer(2), 64, "number of particles"),
    "iterations": Key(integer(1), 1000, "number of SVGD iterations"),
    "seed": Key(integer(0), 0, "seed of the counter-based random streams"),
    "optimizer": Key(choice("adagrad", "adam"), "adagrad", "step-size adaptation"),
    "step_size": Key(number(positive=True), 0.05, "base step size"),
    "decay": Key(number(0.0), 0.0, "step_size / (1 + decay * iteration)"),
    "bandwidth": Key(_bandwidth, "median_subset",
                     "'median_subset' (median heuristic over bandwidth_pairs random pairs), "
                     "'median' (over all pairs) or a fixed h > 0"),
    "bandwidth_pairs": Key(integer(1), 4096, "pairs drawn per iteration by 'median_subset'"),
    "history_every": Key(integer(0), 10, "store every k-th iteration (0: none)"),
    "ksd_every": Key(integer(0), 50, "kernel Stein discrepancy every k iterations (0: never)"),
}

PT: dict[str, Key] = {
    "replicas": Key(integer(2), 8, "temperatures per chain"),
    "chains": Key(integer(1), 1, "independent PT ensembles (R-hat needs >= 2)"),
    "rounds": Key(integer(1), 10, "rounds; round r has 2**r scans"),
    "warmup_rounds": Key(_warmup_rounds, 6, "first rounds adapt ladder and step sizes; < rounds"),
    "local_move": Key(choice("mala", "rwm"), "mala", "local move"),
    "local_steps": Key(integer(1), 1, "local moves per replica per scan"),
    "step_size": Key(number(positive=True), 0.5, "initial local step size in z units"),
    "target_accept": Key(_probability_or_zero, 0.0,
                         "0: 0.574 for mala, 0.234 for rwm; else in (0, 1)"),
    "swap": Key(choice("nonreversible", "reversible"), "nonreversible",
                "deterministic even/odd phases or a random phase"),
    "adapt_ladder": Key(boolean, True, "re-space the temperatures during warm-up"),
    "seed": Key(integer(0), 0, "seed of the counter-based random streams"),
}


def _pt_rules(pt: dict) -> None:
    if not 0 <= pt["warmup_rounds"] < pt["rounds"]:
        fail("pt.warmup_rounds", f"expected an integer in [0, rounds), got "
                                 f"{pt['warmup_rounds']} (rounds = {pt['rounds']})")


# Cross-key rules, by section path; called with the checked section.
SECTION_RULES: dict[str, Callable[[dict], None]] = {"pt": _pt_rules}

# Algorithm sections: exactly one must be present.
ALGORITHMS: dict[str, dict[str, Key]] = {"svgd": SVGD, "pt": PT}

OUTPUT: dict[str, Key] = {
    "path": Key(string, None, "run file (HDF5); default <config name>.h5"),
    "checkpoint_every": Key(integer(0), 100, "iterations between checkpoints (0: end only)"),
    "progress": Key(choice("auto", "bar", "log", "none"), "auto", "progress display"),
    "log_every": Key(number(positive=True), 10.0, "seconds between progress log lines"),
}

SIMULATE: dict[str, Key] = {
    "theta": Key(lambda v, p: v, REQUIRED, "parameter values (list, or table by name)"),
    "n": Key(integer(1), REQUIRED, "number of observations"),
    "seed": Key(integer(0), 0, "seed of the simulation"),
}
