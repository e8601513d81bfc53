"""Run configuration: a TOML file read into a validated, JSON-serialisable dict.

:func:`load_config` reads a file with :mod:`tomllib` and calls
:func:`validate_config`, which rejects unknown sections and keys and bad
values with a :class:`ConfigError` whose message starts with the key path
(``svgd.particles: expected an integer >= 2, got 1``), fills defaults,
resolves relative paths against the config file's directory and builds the
model once to check parameter names, the simulation theta and the priors.
Nothing expensive happens here; every error that can be detected before a
run starts is detected here.

The validated dict is complete: ``prior`` has an entry for every model
parameter (plus ``default``) and ``transform`` names the transform of every
parameter, so consumers never apply defaults themselves, and validating a
validated dict returns it unchanged. See ``docs/config.md`` for every key.

Simple sections are validated from tables of :class:`Key`; an algorithm
section is one entry of :data:`ALGORITHMS` (``None`` passes the section
through unchecked, as ``pt`` is until its table is written).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:  # pragma: no cover
    from phasic_mpi.graph import Graph

__all__ = [
    "ALGORITHMS", "DATA_SUFFIXES", "ConfigError", "Key", "algorithm_name", "dump_config",
    "load_config", "normalize_theta", "resolve_model_spec", "validate_config",
]


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the offending key path."""


def _fail(path: str, message: str) -> None:
    raise ConfigError(f"{path}: {message}")


# ----------------------------------------------------------------- checkers
# A checker takes (value, key path) and returns the normalised value or raises.
Checker = Callable[[Any, str], Any]
REQUIRED: Any = object()  # default of a key that must be given


@dataclass(frozen=True)
class Key:
    """One key of a section: its checker, default and a one-line description."""

    check: Checker
    default: Any = REQUIRED
    help: str = ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def integer(minimum: int = 0) -> Checker:
    """Checker for an integer ``>= minimum`` (booleans and floats rejected)."""
    def check(value: Any, path: str) -> int:
        if not _is_int(value) or value < minimum:
            _fail(path, f"expected an integer >= {minimum}, got {value!r}")
        return int(value)
    return check


def number(minimum: float = -math.inf, *, positive: bool = False) -> Checker:
    """Checker for a finite number (``> 0`` if ``positive``, else ``>= minimum``)."""
    what = ("a positive number" if positive else
            "a finite number" if minimum == -math.inf else f"a number >= {minimum}")

    def check(value: Any, path: str) -> float:
        if (not _is_number(value) or not math.isfinite(value)
                or (positive and value <= 0) or value < minimum):
            _fail(path, f"expected {what}, got {value!r}")
        return float(value)
    return check


def choice(*options: str) -> Checker:
    """Checker for one of a fixed set of strings."""
    def check(value: Any, path: str) -> str:
        if value not in options or not isinstance(value, str):
            _fail(path, f"expected one of {', '.join(map(repr, options))}, got {value!r}")
        return value
    return check


def string(value: Any, path: str) -> str:
    """Checker for a non-empty string."""
    if not isinstance(value, str) or not value:
        _fail(path, f"expected a non-empty string, got {value!r}")
    return value


def table(value: Any, path: str) -> dict:
    """Checker for a table of plain (JSON-serialisable) values, deep-copied."""
    if not isinstance(value, Mapping):
        _fail(path, f"expected a table, got {value!r}")
    return _plain(value, path)


def _plain(value: Any, path: str) -> Any:
    """Deep copy of a TOML value, rejecting what JSON cannot hold (dates, times)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    _fail(path, f"unsupported value {value!r} (dates and times are not allowed)")


def _bandwidth(value: Any, path: str) -> str | float:
    if value == "median":
        return "median"
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        _fail(path, f"expected 'median' or a positive number, got {value!r}")
    return float(value)


def _section(raw: Any, keys: Mapping[str, Key], path: str) -> dict:
    """Validate a table against ``keys``: unknown keys, missing keys, values."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        _fail(path, f"expected a table, got {raw!r}")
    for name in raw:
        if name not in keys:
            _fail(f"{path}.{name}", f"unknown key (known: {', '.join(keys)})")
    out = {}
    for name, key in keys.items():
        if name in raw:
            out[name] = key.check(raw[name], f"{path}.{name}")
        elif key.default is REQUIRED:
            _fail(f"{path}.{name}", "required key missing")
        else:
            out[name] = copy.deepcopy(key.default)
    return out


# ------------------------------------------------------------------- tables
MODEL: dict[str, Key] = {
    "name": Key(string, REQUIRED, "built-in name, 'module:function' or 'file.py:function'"),
    "options": Key(table, {}, "keyword arguments of the model factory"),
}

SVGD: dict[str, Key] = {
    "particles": Key(integer(2), 64, "number of particles"),
    "iterations": Key(integer(1), 1000, "number of SVGD iterations"),
    "seed": Key(integer(0), 0, "seed of the counter-based random streams"),
    "optimizer": Key(choice("adagrad", "adam"), "adagrad", "step-size adaptation"),
    "step_size": Key(number(positive=True), 0.05, "base step size"),
    "decay": Key(number(0.0), 0.0, "step_size / (1 + decay * iteration)"),
    "bandwidth": Key(_bandwidth, "median", "'median' heuristic or a fixed h > 0"),
    "history_every": Key(integer(0), 10, "store every k-th iteration (0: none)"),
    "ksd_every": Key(integer(0), 50, "kernel Stein discrepancy every k iterations (0: never)"),
}

# Algorithm sections: exactly one must be present. None = passed through as is.
ALGORITHMS: dict[str, dict[str, Key] | None] = {"svgd": SVGD, "pt": None}

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

DATA_SUFFIXES = (".csv", ".txt", ".npy", ".h5", ".hdf5")
_H5_SUFFIXES = (".h5", ".hdf5")

# Priors and transforms are checked by phasic_mpi.priors (make_prior,
# make_transform), the code that later builds them, so the two cannot disagree.
DEFAULT_PRIOR = {"dist": "lognormal", "mu": 0.0, "sigma": 1.0}
TRANSFORMS = ("log", "logit", "identity", "default")

SECTIONS = ("model", "data", "prior", "transform", *ALGORITHMS, "output")


# ------------------------------------------------------------- model specs
def resolve_model_spec(name: str, base_dir: str | os.PathLike = ".",
                       path: str = "model.name") -> tuple[str, str, str | None]:
    """Classify a model spec: ``(kind, target, function)``.

    ``kind`` is ``"builtin"`` (target = name), ``"module"`` (target = dotted
    module name) or ``"file"`` (target = absolute path, which must exist).
    A spec ``head:function`` is a file if ``head`` ends in ``.py`` or
    contains a path separator, else a module.
    """
    from phasic_mpi.models import MODELS

    if ":" not in name:
        if name not in MODELS:
            _fail(path, f"unknown built-in model {name!r} (built-ins: "
                        f"{', '.join(MODELS)}; or 'module:function' or "
                        "'path/file.py:function')")
        return "builtin", name, None
    head, func = name.rsplit(":", 1)
    if not func.isidentifier():
        _fail(path, f"{func!r} in {name!r} is not a function name")
    if head.endswith(".py") or "/" in head or os.sep in head:
        file = os.path.abspath(os.path.join(os.fspath(base_dir), os.path.expanduser(head)))
        if not os.path.isfile(file):
            _fail(path, f"model file not found: {file}")
        return "file", file, func
    if not all(part.isidentifier() for part in head.split(".")):
        _fail(path, f"{head!r} in {name!r} is not a module name")
    return "module", head, func


def _model_name(kind: str, target: str, func: str | None) -> str:
    return target if kind == "builtin" else f"{target}:{func}"


# --------------------------------------------------------------- sections
def normalize_theta(value: Any, graph: Graph, path: str = "data.simulate.theta") -> list[float]:
    """Parameter values as a list in ``graph.param_names`` order, domain-checked.

    ``value`` is a list of numbers or a table ``{name: number}``.
    """
    names = list(graph.param_names)
    if isinstance(value, Mapping):
        for key in value:
            if key not in names:
                _fail(f"{path}.{key}", f"unknown parameter (model parameters: "
                                       f"{', '.join(names)})")
        missing = [n for n in names if n not in value]
        if missing:
            _fail(path, f"missing parameter(s) {', '.join(missing)}")
        value = [value[n] for n in names]
    if not isinstance(value, (list, tuple)):
        _fail(path, f"expected a list of {len(names)} numbers ({', '.join(names)}), "
                    f"got {value!r}")
    if len(value) != len(names):
        _fail(path, f"expected {len(names)} values ({', '.join(names)}), got {len(value)}")
    theta = [number()(v, f"{path}[{i}]") for i, v in enumerate(value)]
    try:
        rates = graph.checked_rates(theta)
    except ValueError as exc:
        _fail(path, str(exc))
    stuck = graph.unabsorbable_at(rates)
    if stuck.size:
        _fail(path, f"{graph.label(stuck[0])} cannot reach absorption at theta={theta}")
    return theta


def _data(raw: Any, base: str) -> dict:
    if not isinstance(raw, Mapping):
        _fail("data", f"expected a table, got {raw!r}")
    for key in raw:
        if key not in ("simulate", "file", "dataset"):
            _fail(f"data.{key}", "unknown key (known: simulate, file, dataset)")
    if ("simulate" in raw) == ("file" in raw):
        _fail("data", "give exactly one of 'simulate' or 'file'")
    if "simulate" in raw:
        if "dataset" in raw:
            _fail("data.dataset", "only allowed with data.file")
        sim = _section(raw["simulate"], SIMULATE, "data.simulate")
        sim["theta"] = _plain(sim["theta"], "data.simulate.theta")
        return {"simulate": sim}
    file = os.path.abspath(os.path.join(base, os.path.expanduser(
        string(raw["file"], "data.file"))))
    suffix = Path(file).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        _fail("data.file", f"unknown file type {suffix!r} of {file} "
                           f"(known: {', '.join(DATA_SUFFIXES)})")
    if not os.path.isfile(file):
        _fail("data.file", f"no such file: {file}")
    out = {"file": file}
    if "dataset" in raw:
        if suffix not in _H5_SUFFIXES:
            _fail("data.dataset", "only allowed with an HDF5 data.file (.h5, .hdf5)")
        out["dataset"] = string(raw["dataset"], "data.dataset")
    return out


def _prior_entry(raw: Any, path: str) -> dict:
    """A prior spec checked by :func:`phasic_mpi.priors.make_prior`, in canonical form."""
    from phasic_mpi.priors import make_prior

    if not isinstance(raw, Mapping):
        _fail(path, f"expected a table like {{ dist = \"gamma\", shape = 2.0, "
                    f"rate = 1.0 }}, got {raw!r}")
    try:
        return make_prior(_plain(raw, path), where=path).to_dict()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _priors(raw: Any, names: list[str]) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        _fail("prior", f"expected a table, got {raw!r}")
    _check_names(raw, names, "prior", extra=("default",))
    default = _prior_entry(raw.get("default", DEFAULT_PRIOR), "prior.default")
    out = {"default": default}
    for name in names:
        out[name] = (_prior_entry(raw[name], f"prior.{name}") if name in raw
                     else copy.deepcopy(default))
    return out


def _transforms(raw: Any, priors: dict, names: list[str]) -> dict:
    """Concrete transform names, checked against the priors by ``make_transform``."""
    from phasic_mpi.priors import make_prior
    from phasic_mpi.transforms import make_transform

    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        _fail("transform", f"expected a table, got {raw!r}")
    _check_names(raw, names, "transform")
    out = {}
    for name in names:
        path = f"transform.{name}"
        kind = choice(*TRANSFORMS)(raw[name], path) if name in raw else "default"
        try:
            out[name] = make_transform(kind, make_prior(priors[name])).name
        except ValueError as exc:
            _fail(path, str(exc).removeprefix("transform: "))
    return out


def _check_names(raw: Mapping, names: list[str], path: str, extra: tuple = ()) -> None:
    for key in raw:
        if key not in names and key not in extra:
            _fail(f"{path}.{key}", f"unknown parameter (model parameters: "
                                   f"{', '.join(names)})")


# --------------------------------------------------------------- public API
def validate_config(raw: Mapping[str, Any], base_dir: str | os.PathLike = ".", *,
                    graph: Graph | None = None, require_algorithm: bool = True,
                    default_output: str = "run.h5") -> dict:
    """Validate a raw config and return it with defaults filled.

    Parameters
    ----------
    raw : mapping
        The parsed TOML document.
    base_dir : path-like
        Directory against which relative paths (model file, data file,
        output path) are resolved; they come back absolute.
    graph : Graph, optional
        The model, if already built; otherwise it is built here with
        :func:`phasic_mpi.loaders.load_model` (to check parameter names).
    require_algorithm : bool
        If false, a config without an algorithm section is accepted (used by
        ``phasic-mpi simulate``).
    default_output : str
        ``output.path`` if the config does not set one.

    Returns
    -------
    dict
        Sections ``model``, ``data``, ``prior``, ``transform``, ``output``
        and the algorithm section (``svgd`` or ``pt``), JSON-serialisable.

    Raises
    ------
    ConfigError
        Naming the first offending key path.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a table, got {type(raw).__name__}")
    base = os.path.abspath(os.fspath(base_dir))
    for name in raw:
        if name not in SECTIONS:
            _fail(name, f"unknown section (known: {', '.join(SECTIONS)})")
    for name in ("model", "data"):
        if name not in raw:
            _fail(name, "required section missing")
    algos = [name for name in ALGORITHMS if name in raw]
    if len(algos) > 1 or (require_algorithm and not algos):
        raise ConfigError(f"config: expected exactly one algorithm section "
                          f"({' or '.join(ALGORITHMS)}), got {', '.join(algos) or 'none'}")

    # Everything that does not need the model first.
    cfg: dict[str, Any] = {"model": _section(raw["model"], MODEL, "model")}
    kind, target, func = resolve_model_spec(cfg["model"]["name"], base)
    cfg["model"]["name"] = _model_name(kind, target, func)
    cfg["data"] = _data(raw["data"], base)
    for name in algos:
        keys = ALGORITHMS[name]
        cfg[name] = table(raw[name], name) if keys is None else _section(raw[name], keys, name)
    out = _section(raw.get("output"), OUTPUT, "output")
    out["path"] = os.path.abspath(os.path.join(
        base, os.path.expanduser(out["path"] if out["path"] is not None else default_output)))
    cfg["output"] = out

    if graph is None:
        from phasic_mpi.loaders import load_model

        graph = load_model(cfg["model"], base)
    names = list(graph.param_names)
    if "default" in names:
        _fail("model", "a parameter named 'default' clashes with prior.default")
    if "simulate" in cfg["data"]:
        sim = cfg["data"]["simulate"]
        sim["theta"] = normalize_theta(sim["theta"], graph)
    cfg["prior"] = _priors(raw.get("prior"), names)
    cfg["transform"] = _transforms(raw.get("transform"), cfg["prior"], names)
    return {name: cfg[name] for name in SECTIONS if name in cfg}


def load_config(path: str | os.PathLike, *, graph: Graph | None = None,
                require_algorithm: bool = True) -> dict:
    """Read and validate a TOML config file.

    Relative paths in it are resolved against the file's directory; the
    default ``output.path`` is ``<config stem>.h5`` there. See
    :func:`validate_config`.
    """
    path = os.path.abspath(os.fspath(path))
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return validate_config(raw, os.path.dirname(path), graph=graph,
                           require_algorithm=require_algorithm,
                           default_output=Path(path).stem + ".h5")


def algorithm_name(cfg: Mapping[str, Any]) -> str | None:
    """The algorithm section present in a validated config (``None`` if none)."""
    return next((name for name in ALGORITHMS if name in cfg), None)


def dump_config(cfg: Mapping[str, Any]) -> str:
    """The config as JSON text (sorted keys), e.g. for the run file's attributes."""
    return json.dumps(cfg, sort_keys=True, allow_nan=False)
