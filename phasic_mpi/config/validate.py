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
function returning a :class:`~phasic_mpi.inference.posterior.LogDensity` that brings
its own data and priors, so those sections are not allowed).

The validated dict is complete: for a graph model ``prior`` has an entry for
every model parameter (plus ``default``) and ``transform`` names the
transform of every parameter, so consumers never apply defaults themselves,
and validating a validated dict returns it unchanged. See ``docs/config.md``
for every key; the section tables (:class:`Key`) are in
:mod:`phasic_mpi.config.schema`.
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

from phasic_mpi.config.schema import (
    ALGORITHMS,
    MODEL,
    OUTPUT,
    REQUIRED,
    SIMULATE,
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
from phasic_mpi.config.schema import fail as _fail
from phasic_mpi.config.specs import normalize_theta, resolve_model_spec
from phasic_mpi.inference.priors import DEFAULT_PRIOR
from phasic_mpi.inference.registry import algorithm_names, settings_class
from phasic_mpi.run.settings import OutputSettings
from phasic_mpi.settings import from_mapping, to_dict
from phasic_mpi.config.schema import plain as _plain

if TYPE_CHECKING:  # pragma: no cover
    from phasic_mpi.model.graph import Graph

__all__ = [
    "ALGORITHMS", "DATA_SUFFIXES", "MODEL", "OUTPUT", "REQUIRED", "SIMULATE",
    "ConfigError", "Key", "algorithm_name", "boolean", "choice", "dump_config", "integer",
    "is_density_model", "load_config", "normalize_theta", "number", "registered_algorithms",
    "resolve_model_spec", "string", "table", "validate_config",
]

DATA_SUFFIXES = (".csv", ".txt", ".npy", ".h5", ".hdf5")
_H5_SUFFIXES = (".h5", ".hdf5")

# Priors and transforms are checked by phasic_mpi.inference.priors (make_prior,
# make_transform), the code that later builds them, so the two cannot disagree.
TRANSFORMS = ("log", "logit", "identity", "default")

SECTIONS = ("model", "data", "prior", "transform", *ALGORITHMS, "output")
GRAPH_ONLY = ("data", "prior", "transform")  # sections a log-density model brings itself
DATA_KEYS = ("simulate", "file", "dataset", "sfs", "moments")


# ------------------------------------------------------------- model specs
def _model(raw: Any, base: str) -> dict:
    """``{"name": spec, "options"}`` or ``{"density": spec, "options"}``, spec resolved."""
    model = check_section(raw, MODEL, "model")
    name, density = model.pop("name"), model.pop("density")
    if (name is None) == (density is None):
        _fail("model", "give exactly one of 'name' (a phase-type model) or 'density' "
                       "(a log-density)")
    if name is not None:
        kind, target, func = resolve_model_spec(name, base)
        return {"name": _model_name(kind, target, func), "options": model["options"],
                "max_states": model["max_states"]}
    kind, target, func = resolve_model_spec(density, base, "model.density", builtins=False)
    return {"density": _model_name(kind, target, func), "options": model["options"]}


def is_density_model(cfg: Mapping[str, Any]) -> bool:
    """Whether a (validated) config's model is a log-density (``model.density``)."""
    return "density" in (cfg.get("model") or {})


def _model_name(kind: str, target: str, func: str | None) -> str:
    return target if kind == "builtin" else f"{target}:{func}"


# --------------------------------------------------------------- sections
def _data(raw: Any, base: str) -> dict:
    from phasic_mpi.config.dataterms import check_moments, check_sfs

    if not isinstance(raw, Mapping):
        _fail("data", f"expected a table, got {raw!r}")
    for key in raw:
        if key not in DATA_KEYS:
            _fail(f"data.{key}", f"unknown key (known: {', '.join(DATA_KEYS)})")
    if ("simulate" in raw and "file" in raw) or not any(
            key in raw for key in ("simulate", "file", "sfs", "moments")):
        _fail("data", "give exactly one of 'simulate' or 'file' (absorption times), or "
                      "none and 'sfs' or 'moments'")
    out: dict[str, Any] = {}
    if "sfs" in raw:
        out["sfs"] = check_sfs(raw["sfs"], base)
    if "moments" in raw:
        out["moments"] = check_moments(raw["moments"])
    if "dataset" in raw and "file" not in raw:
        _fail("data.dataset", "only allowed with data.file")
    if "simulate" in raw:
        sim = check_section(raw["simulate"], SIMULATE, "data.simulate")
        sim["theta"] = _plain(sim["theta"], "data.simulate.theta")
        if sim["censoring"] is None:  # configs without censoring keep their old form
            del sim["censoring"]
        return {"simulate": sim, **out}
    if "file" not in raw:
        return out
    file = os.path.abspath(os.path.join(base, os.path.expanduser(
        string(raw["file"], "data.file"))))
    suffix = Path(file).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        _fail("data.file", f"unknown file type {suffix!r} of {file} "
                           f"(known: {', '.join(DATA_SUFFIXES)})")
    if not os.path.isfile(file):
        _fail("data.file", f"no such file: {file}")
    out = {"file": file, **out}
    if "dataset" in raw:
        if suffix not in _H5_SUFFIXES:
            _fail("data.dataset", "only allowed with an HDF5 data.file (.h5, .hdf5)")
        out["dataset"] = string(raw["dataset"], "data.dataset")
    return out


def _prior_entry(raw: Any, path: str) -> dict:
    """A prior spec checked by :func:`phasic_mpi.inference.priors.make_prior`, in canonical form."""
    from phasic_mpi.inference.priors import make_prior

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
    from phasic_mpi.inference.priors import make_prior
    from phasic_mpi.inference.transforms import make_transform

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


def _check_domain(graph: Graph, cfg: dict) -> None:
    """Refuse priors that reach parameter values with negative rates (``prior.<name>``)."""
    from phasic_mpi.inference.posterior import domain_problem
    from phasic_mpi.inference.priors import make_prior
    from phasic_mpi.inference.transforms import make_transform

    names = graph.param_names
    transforms = [make_transform(cfg["transform"][n], make_prior(cfg["prior"][n])) for n in names]
    problem = domain_problem(graph, transforms)
    if problem:
        raise ConfigError(problem)


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
        :func:`phasic_mpi.config.loaders.load_model` (to check parameter names).
        A ``model.density`` is always built, with
        :func:`phasic_mpi.config.loaders.load_density` (cached).
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
        cfg[name] = to_dict(from_mapping(settings_class(name), raw[name], name))
    out = to_dict(OutputSettings.from_config(raw.get("output")))
    out["path"] = os.path.abspath(os.path.join(
        base, os.path.expanduser(out["path"] if out["path"] is not None else default_output)))
    cfg["output"] = out

    if density:
        from phasic_mpi.config.loaders import load_density

        load_density(cfg["model"], base)  # built once and cached; checks the interface
        return {name: cfg[name] for name in SECTIONS if name in cfg}
    if graph is None:
        from phasic_mpi.config.loaders import load_model

        graph = load_model(cfg["model"], base)
    from phasic_mpi.config.dataterms import check_with_model, term_param_names

    if "simulate" in cfg["data"]:
        sim = cfg["data"]["simulate"]
        sim["theta"] = normalize_theta(sim["theta"], graph)
    check_with_model(cfg["data"], graph, base)
    names = list(term_param_names(cfg["data"], graph, base))  # the model's, then theta_mut...
    if "default" in names:
        _fail("model", "a parameter named 'default' clashes with prior.default")
    cfg["prior"] = _priors(raw.get("prior"), names)
    cfg["transform"] = _transforms(raw.get("transform"), cfg["prior"], names)
    _check_domain(graph, cfg)
    return {name: cfg[name] for name in SECTIONS if name in cfg}


def read_toml(path: str, what: str) -> dict:
    """Parse a TOML file; a missing file or bad TOML is a :class:`ConfigError`."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # binary files too
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:  # a directory, no permission
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from None


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


def registered_algorithms() -> tuple[str, ...]:
    """Every algorithm the registry knows now (built-ins first), for layers above
    this one that may not import inference (job scripts)."""
    return algorithm_names()


def algorithm_name(cfg: Mapping[str, Any]) -> str | None:
    """The algorithm section present in a validated config (``None`` if none)."""
    return next((name for name in ALGORITHMS if name in cfg), None)


def dump_config(cfg: Mapping[str, Any]) -> str:
    """The config as JSON text (sorted keys), e.g. for the run file's attributes."""
    return json.dumps(cfg, sort_keys=True, allow_nan=False)
