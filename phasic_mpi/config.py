"""Run configuration: a TOML file read into a validated, JSON-serialisable dict.

:func:`load_config` reads a file with :mod:`tomllib` and calls
:func:`validate_config`, which rejects unknown sections and keys and bad
values with a :class:`ConfigError` whose message starts with the key path
(``svgd.particles: expected an integer >= 2, got 1``), fills defaults,
resolves relative paths against the config file's directory and builds the
model once to check parameter names, the simulation theta and the priors.
Nothing expensive happens here; every error that can be detected before a
run starts is detected here.

The model is either a phase-type graph (``model.name``, with ``[data]``,
``[prior]`` and ``[transform]``) or a log-density (``model.density``: a
function returning a :class:`~phasic_mpi.posterior.LogDensity` that brings
its own data and priors, so those sections are not allowed).

The validated dict is complete: for a graph model ``prior`` has an entry for
every model parameter (plus ``default``) and ``transform`` names the
transform of every parameter, so consumers never apply defaults themselves,
and validating a validated dict returns it unchanged. See ``docs/config.md``
for every key; the section tables (:class:`Key`) are in
:mod:`phasic_mpi.config_schema`.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from phasic_mpi.config_schema import (
    ALGORITHMS,
    MODEL,
    OUTPUT,
    PT,
    REQUIRED,
    SIMULATE,
    SVGD,
    ConfigError,
    Key,
    boolean,
    check_section,
    choice,
    integer,
    number,
    string,
    table,
)
from phasic_mpi.config_schema import fail as _fail
from phasic_mpi.config_schema import plain as _plain

if TYPE_CHECKING:  # pragma: no cover
    from phasic_mpi.graph import Graph

__all__ = [
    "ALGORITHMS", "DATA_SUFFIXES", "MODEL", "OUTPUT", "PT", "REQUIRED", "SIMULATE", "SVGD",
    "ConfigError", "Key", "algorithm_name", "boolean", "choice", "dump_config", "integer",
    "is_density_model", "load_config", "normalize_theta", "number", "resolve_model_spec",
    "string", "table", "validate_config",
]

DATA_SUFFIXES = (".csv", ".txt", ".npy", ".h5", ".hdf5")
_H5_SUFFIXES = (".h5", ".hdf5")

# Priors and transforms are checked by phasic_mpi.priors (make_prior,
# make_transform), the code that later builds them, so the two cannot disagree.
DEFAULT_PRIOR = {"dist": "lognormal", "mu": 0.0, "sigma": 1.0}
TRANSFORMS = ("log", "logit", "identity", "default")

SECTIONS = ("model", "data", "prior", "transform", *ALGORITHMS, "output")
GRAPH_ONLY = ("data", "prior", "transform")  # sections a log-density model brings itself


# ------------------------------------------------------------- model specs
def resolve_model_spec(name: str, base_dir: str | os.PathLike = ".",
                       path: str = "model.name", *,
                       builtins: bool = True) -> tuple[str, str, str | None]:
    """Classify a model spec: ``(kind, target, function)``.

    ``kind`` is ``"builtin"`` (target = name), ``"module"`` (target = dotted
    module name) or ``"file"`` (target = absolute path, which must exist).
    A spec ``head:function`` is a file if ``head`` ends in ``.py`` or
    contains a path separator, else a module. With ``builtins=False`` (log
    densities) a spec without ``:`` is an error.
    """
    from phasic_mpi.models import MODELS

    if ":" not in name:
        if not builtins:
            _fail(path, f"expected 'module:function' or 'path/file.py:function', "
                        f"got {name!r}")
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


def _model(raw: Any, base: str) -> dict:
    """``{"name": spec, "options"}`` or ``{"density": spec, "options"}``, spec resolved."""
    model = check_section(raw, MODEL, "model")
    name, density = model.pop("name"), model.pop("density")
    if (name is None) == (density is None):
        _fail("model", "give exactly one of 'name' (a phase-type model) or 'density' "
                       "(a log-density)")
    if name is not None:
        kind, target, func = resolve_model_spec(name, base)
        return {"name": _model_name(kind, target, func), "options": model["options"]}
    kind, target, func = resolve_model_spec(density, base, "model.density", builtins=False)
    return {"density": _model_name(kind, target, func), "options": model["options"]}


def is_density_model(cfg: Mapping[str, Any]) -> bool:
    """Whether a (validated) config's model is a log-density (``model.density``)."""
    return "density" in (cfg.get("model") or {})


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
    stuck = graph.stuck_reachable_at(rates)
    if stuck.size:
        _fail(path, f"{graph.label(stuck[0])} is reachable from the start but cannot "
                    f"reach absorption at theta={theta}")
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
        sim = check_section(raw["simulate"], SIMULATE, "data.simulate")
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
        A ``model.density`` is always built, with
        :func:`phasic_mpi.loaders.load_density` (cached).
    require_algorithm : bool
        If false, a config without an algorithm section is accepted (used by
        ``phasic-mpi simulate``).
    default_output : str
        ``output.path`` if the config does not set one.

    Returns
    -------
    dict
        Sections ``model``, ``data``, ``prior``, ``transform``, ``output``
        and the algorithm section (``svgd`` or ``pt``), JSON-serialisable;
        for a ``model.density`` only ``model``, the algorithm and ``output``.

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
    if "model" not in raw:
        _fail("model", "required section missing")
    cfg: dict[str, Any] = {"model": _model(raw["model"], base)}
    density = is_density_model(cfg)
    for name in GRAPH_ONLY if density else ("data",):
        if density and name in raw:
            _fail(name, "not allowed with model.density (the log-density brings its own "
                        "data, priors and transforms)")
        if not density and name not in raw:
            _fail(name, "required section missing")
    algos = [name for name in ALGORITHMS if name in raw]
    if len(algos) > 1 or (require_algorithm and not algos):
        raise ConfigError(f"config: expected exactly one algorithm section "
                          f"({' or '.join(ALGORITHMS)}), got {', '.join(algos) or 'none'}")

    # Everything that does not need the model first.
    if not density:
        cfg["data"] = _data(raw["data"], base)
    for name in algos:
        cfg[name] = check_section(raw[name], ALGORITHMS[name], name)
    out = check_section(raw.get("output"), OUTPUT, "output")
    out["path"] = os.path.abspath(os.path.join(
        base, os.path.expanduser(out["path"] if out["path"] is not None else default_output)))
    cfg["output"] = out

    if density:
        from phasic_mpi.loaders import load_density

        load_density(cfg["model"], base)  # built once and cached; checks the interface
        return {name: cfg[name] for name in SECTIONS if name in cfg}
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


def read_toml(path: str, what: str) -> dict:
    """Parse a TOML file; a missing file or bad TOML is a :class:`ConfigError`."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_config(path: str | os.PathLike, *, graph: Graph | None = None,
                require_algorithm: bool = True) -> dict:
    """Read and validate a TOML config file.

    Relative paths in it are resolved against the file's directory; the
    default ``output.path`` is ``<config stem>.h5`` there. See
    :func:`validate_config`.
    """
    path = os.path.abspath(os.fspath(path))
    raw = read_toml(path, "config file")
    return validate_config(raw, os.path.dirname(path), graph=graph,
                           require_algorithm=require_algorithm,
                           default_output=Path(path).stem + ".h5")


def algorithm_name(cfg: Mapping[str, Any]) -> str | None:
    """The algorithm section present in a validated config (``None`` if none)."""
    return next((name for name in ALGORITHMS if name in cfg), None)


def dump_config(cfg: Mapping[str, Any]) -> str:
    """The config as JSON text (sorted keys), e.g. for the run file's attributes."""
    return json.dumps(cfg, sort_keys=True, allow_nan=False)
