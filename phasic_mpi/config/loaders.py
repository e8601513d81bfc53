"""Build the model and read or simulate the data named by a config.

:func:`load_model` turns ``[model]`` into a :class:`~phasic_mpi.model.graph.Graph`,
:func:`load_density` turns a ``[model]`` with ``density`` into a
:class:`~phasic_mpi.inference.posterior.LogDensity`, :func:`load_data` turns ``[data]``
into :class:`~phasic_mpi.model.data.Observations` (files are read by
:mod:`phasic_mpi.io.datafile`). Problems with the user's input
raise :class:`~phasic_mpi.config.ConfigError` naming the config key (and the
file line where there is one). Text data formats are described in
``docs/config.md``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from phasic_mpi.config.schema import MODEL
from phasic_mpi.config.specs import normalize_theta, resolve_model_spec
from phasic_mpi.errors import ConfigError
from phasic_mpi.io.datafile import read_data_file
from phasic_mpi.model.data import Observations
from phasic_mpi.model.construct import StateLimitError, exploration_limit
from phasic_mpi.model.graph import Graph

__all__ = ["DENSITY_MEMBERS", "build_density", "build_terms", "builtin_models", "load_data",
           "load_density", "load_model", "sfs_graph"]

_cache: dict[str, Any] = {}  # the last models built, by key (a run's model and its SFS model)
_CACHE_SIZE = 4


def _remember(key: str, model: Any) -> None:
    _cache.pop(key, None)
    _cache[key] = model
    while len(_cache) > _CACHE_SIZE:
        del _cache[next(iter(_cache))]

# What the samplers use of a LogDensity (phasic_mpi.inference.posterior.LogDensity).
DENSITY_MEMBERS = ("param_names", "n_params", "evaluate", "sample_prior_z", "to_theta")


# ------------------------------------------------------------------- models
def _import_function(kind: str, target: str, func: str, base_dir: str,
                     where: str = "model.name") -> Callable:
    spec = f"{target}:{func}"
    if kind == "file":
        digest = hashlib.sha1(target.encode()).hexdigest()[:10]
        mod_name = f"_phasic_mpi_user_{digest}_{Path(target).stem}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, target)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module  # dataclasses and pickling look it up here
        try:
            loader_spec.loader.exec_module(module)
        except (ImportError, SyntaxError) as exc:
            del sys.modules[mod_name]
            raise ConfigError(f"{where}: cannot load {target}: "
                              f"{type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            if exc.name != target.split(".")[0]:
                raise ConfigError(f"{where}: importing {target!r} failed: {exc}") from exc
            # Not on sys.path: try the config file's directory.
            sys.path.insert(0, base_dir)
            try:
                module = importlib.import_module(target)
            except ModuleNotFoundError:
                raise ConfigError(f"{where}: cannot import module {target!r} (not on "
                                  f"sys.path nor in {base_dir})") from exc
            finally:
                sys.path.remove(base_dir)
    function = getattr(module, func, None)
    if not callable(function):
        raise ConfigError(f"{where}: {spec!r}: module has no function {func!r}")
    return function


def load_model(model_cfg: Mapping[str, Any], base_dir: str | os.PathLike = ".", *,
               where: str = "model.name") -> Graph:
    """Build the graph named by a ``[model]`` table.

    Parameters
    ----------
    model_cfg : mapping
        ``{"name": spec, "options": {...}}``. ``spec`` is a built-in name
        (:data:`phasic_mpi.model.models.MODELS`), ``"module:function"`` or
        ``"path/file.py:function"`` (relative to ``base_dir``).
    base_dir : path-like
        Directory for relative file specs; also searched for ``module`` if
        it is not importable otherwise.
    where : str
        Key path of the spec in errors (``data.sfs.model``: options errors
        then name ``data.sfs.options``).

    Returns
    -------
    Graph
        ``function(**options)``. The last few models built are cached (graphs are
        immutable), so validating a config and then running it builds once.

    Raises
    ------
    ConfigError
        Unknown model, import failure, options the factory does not accept or
        rejects (``TypeError``/``ValueError``), or a result that is not a Graph.
    """
    graph, label, key = _build(model_cfg, base_dir, "name", where)
    if not isinstance(graph, Graph):
        raise ConfigError(f"{where}: {label} returned {type(graph).__name__}, "
                          "expected a phasic_mpi.Graph")
    _remember(key, graph)
    return graph


def load_density(model_cfg: Mapping[str, Any], base_dir: str | os.PathLike = ".") -> Any:
    """Build the log-density named by a ``[model]`` table with ``density``.

    Parameters
    ----------
    model_cfg : mapping
        ``{"density": spec, "options": {...}}``; ``spec`` is
        ``"module:function"`` or ``"path/file.py:function"`` (relative to
        ``base_dir``), as for :func:`load_model` but without built-ins.
    base_dir : path-like

    Returns
    -------
    LogDensity
        ``function(**options)``, e.g. a
        :class:`~phasic_mpi.inference.posterior.FunctionDensity` with its own data and
        priors. Cached like :func:`load_model`.

    Raises
    ------
    ConfigError
        As :func:`load_model`; also a result lacking one of
        :data:`DENSITY_MEMBERS` or with bad ``param_names``.
    """
    density, label, key = _build(model_cfg, base_dir, "density")
    members = {m: _member(density, m) for m in DENSITY_MEMBERS}
    missing = [m for m, v in members.items()
               if v is None or (m in DENSITY_MEMBERS[2:] and not callable(v))]
    if missing:
        raise ConfigError(f"model.density: {label} returned {type(density).__name__}, "
                          f"which has no {', '.join(missing)} (expected a "
                          "phasic_mpi.inference.posterior.LogDensity, e.g. a FunctionDensity)")
    try:
        names = None if isinstance(density.param_names, str) else tuple(density.param_names)
    except TypeError:
        names = None
    if (not names or len(set(names)) != len(names)  # they name datasets of the run file
            or not all(isinstance(n, str) and n and "/" not in n for n in names)):
        raise ConfigError(f"model.density: {label}: param_names must be distinct non-empty "
                          f"strings without '/', got {density.param_names!r}"[:300])
    n_params = density.n_params
    if n_params != len(names):
        raise ConfigError(f"model.density: {label}: n_params = {n_params!r} but "
                          f"{len(names)} param_names")
    _remember(key, density)
    return density


def _member(obj: Any, name: str) -> Any:
    """``obj.name`` without running a property (it may need param_names), else None."""
    value = inspect.getattr_static(obj, name, None)
    if value is None:  # e.g. provided by __getattr__
        try:
            value = getattr(obj, name, None)
        except Exception:  # noqa: BLE001 - reported as missing
            value = None
    return value


def _build(model_cfg: Mapping[str, Any], base_dir: str | os.PathLike,
           field: str, where: str | None = None) -> tuple[Any, str, str]:
    """``function(**options)`` for ``model_cfg[field]``, its label and cache key.

    The caller checks the result and then caches it (``_cache``).
    """
    from phasic_mpi.model.models import MODELS

    where = where or f"model.{field}"
    options_where = where.rpartition(".")[0] + ".options"
    base = os.path.abspath(os.fspath(base_dir))
    spec = model_cfg.get(field)
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{where}: expected a non-empty string, got {spec!r}")
    options = dict(model_cfg.get("options") or {})
    kind, target, func = resolve_model_spec(spec, base, where, builtins=field == "name")
    label = target if kind == "builtin" else f"{target}:{func}"
    stamp = os.stat(target).st_mtime_ns if kind == "file" else None
    key = json.dumps([field, kind, target, func, stamp, options, model_cfg.get("max_states")],
                     sort_keys=True, default=repr)
    if key in _cache:
        return _cache[key], label, key
    function = (MODELS[target][0] if kind == "builtin"
                else _import_function(kind, target, func, base, where))
    _check_options(function, options, label, options_where)
    try:
        with exploration_limit(model_cfg.get("max_states") or MODEL["max_states"].default):
            model = function(**options)
    except StateLimitError as exc:
        raise ConfigError(f"model.max_states: {label}: {exc}; raise model.max_states if the "
                          "model is finite") from exc
    except (TypeError, ValueError) as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ConfigError(f"{options_where}: {label}({args}) failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    return model, label, key


def _check_options(function: Callable, options: dict, label: str,
                   where: str = "model.options") -> None:
    """ConfigError for options the factory's signature does not accept."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # no signature available: let the call decide
        return
    params = signature.parameters
    accepted = ", ".join(params) or "no options"
    kind = inspect.Parameter
    if not any(p.kind is kind.VAR_KEYWORD for p in params.values()):
        for key in options:
            if key not in params or params[key].kind in (kind.POSITIONAL_ONLY,
                                                         kind.VAR_POSITIONAL):
                raise ConfigError(f"{where}.{key}: unknown option of {label} "
                                  f"(accepted: {accepted})")
    try:
        signature.bind(**options)
    except TypeError as exc:
        raise ConfigError(f"{where}: {label}: {exc} (accepted: {accepted})") from None


def builtin_models() -> list[dict[str, Any]]:
    """Name, options, parameter names and description of every built-in model.

    Parameter names come from building each model with every required
    option set to 2.
    """
    from phasic_mpi.model.models import MODELS

    rows = []
    for name, (factory, description) in MODELS.items():
        params = inspect.signature(factory).parameters.values()
        options = [p.name for p in params]
        example = {p.name: 2 for p in params if p.default is inspect.Parameter.empty}
        try:
            parameters = list(factory(**example).param_names)
        except (TypeError, ValueError):
            parameters = ["?"]
        rows.append({"name": name, "options": options, "parameters": parameters,
                     "description": description})
    return rows


# --------------------------------------------------------------------- data
def load_data(data_cfg: Mapping[str, Any], graph: Graph,
              base_dir: str | os.PathLike = ".") -> Observations:
    """Observations for a ``[data]`` table: simulated from ``graph`` or read.

    ``{"simulate": {"theta", "n", "seed", "censoring"}}`` draws
    ``graph.sample(n, theta, seed=seed)`` (exact times), right-censored if
    ``censoring`` is given (:func:`censor_simulated`);
    ``{"file": path, "dataset": name?}`` reads a file with
    :func:`read_data_file` (``path`` relative to ``base_dir``).

    Raises
    ------
    ConfigError
        Bad theta (``data.simulate.theta``), unreadable or malformed file
        (``data.file``), or non-integer times for a discrete graph.
    """
    if "simulate" in data_cfg:
        sim = data_cfg["simulate"]
        theta = normalize_theta(sim["theta"], graph)
        times = graph.sample(int(sim["n"]), theta, seed=int(sim.get("seed", 0)))
        if sim.get("censoring"):
            return censor_simulated(times, sim["censoring"], int(sim.get("seed", 0)),
                                    graph.discrete)
        return Observations(times)
    if "file" not in data_cfg:
        raise ConfigError("data: give exactly one of 'simulate' or 'file'")
    path = os.path.abspath(os.path.join(os.fspath(base_dir), data_cfg["file"]))
    obs = read_data_file(path, data_cfg.get("dataset"))
    if obs.n_observations == 0:  # the run would return the prior and report success
        raise ConfigError(f"data.file: {path}: no observations (the file holds no data rows)")
    if graph.discrete:
        times = np.concatenate([obs.exact, obs.right_censored, obs.interval_lo,
                                obs.interval_hi[np.isfinite(obs.interval_hi)]])
        if np.any(times != np.round(times)):
            raise ConfigError(f"data.file: {path}: the model is discrete, so the times "
                              "must be integers")
    return obs


def censor_simulated(times: np.ndarray, censoring: Mapping[str, Any], seed: int,
                     discrete: bool) -> Observations:
    """Simulated ``times`` right-censored as a validated ``data.simulate.censoring`` says.

    The censoring times come from :func:`~phasic_mpi.model.simulate.censor`'s
    own stream keyed by ``seed``, so a config and ``phasic-mpi simulate
    --censor-*`` with the same seed give the same data.
    """
    from phasic_mpi.model.simulate import censor

    kind = censoring["kind"]
    random = None if kind == "fixed" else (
        kind, censoring["rate"] if kind == "exponential" else censoring["high"])
    return censor(times, tau=censoring.get("at"), random=random, seed=seed, integer=discrete)


def sfs_graph(sfs: Mapping[str, Any], graph: Graph, base: str | os.PathLike) -> Graph:
    """The graph of a validated ``[data.sfs]``: its own model, or the run's."""
    if sfs.get("model") is None:
        return graph
    return load_model({"name": sfs["model"], "options": sfs["options"]}, base,
                      where="data.sfs.model")


def build_terms(data_cfg: Mapping[str, Any], graph: Graph,
                base_dir: str | os.PathLike = ".") -> list[Any]:
    """The likelihood terms of a validated ``[data]``: the SFS, then each moment.

    ``data.sfs`` becomes a :class:`~phasic_mpi.model.sfs.SFSData` of its
    model (default ``graph``) with its ``counts``, or with counts simulated
    from genealogies by :func:`~phasic_mpi.model.sfs.simulate_sfs`;
    each ``data.moments`` entry a :class:`~phasic_mpi.model.terms.MomentData`
    of ``graph``.
    """
    from phasic_mpi.model.sfs import SFSData, simulate_sfs
    from phasic_mpi.model.terms import MomentData

    terms: list[Any] = []
    sfs = data_cfg.get("sfs")
    if sfs is not None:
        g = sfs_graph(sfs, graph, base_dir)
        counts, n_loci = sfs["counts"], sfs["n_loci"]
        if counts is None:
            sim = sfs["simulate"]
            theta = normalize_theta(sim["theta"], g, "data.sfs.simulate.theta")
            counts = simulate_sfs(g, theta, sim["theta_mut"], sim["n_loci"], sim["seed"],
                                  folded=sfs["folded"])
            n_loci = sim["n_loci"]
        try:
            terms.append(SFSData(g, counts, folded=sfs["folded"], likelihood=sfs["likelihood"],
                                 theta_mut=sfs["theta_mut"],
                                 theta_mut_name=sfs["theta_mut_name"], n_loci=n_loci))
        except ValueError as exc:
            raise ConfigError(f"data.sfs: {exc}") from None
    for i, entry in enumerate(data_cfg.get("moments") or ()):
        try:
            terms.append(MomentData(graph, entry["value"], entry["se"], kind=entry["kind"],
                                    rewards=entry["rewards"]))
        except (ValueError, NotImplementedError) as exc:
            raise ConfigError(f"data.moments[{i}]: {exc}") from None
    return terms


def build_density(cfg: dict, base_dir: str | os.PathLike = ".") -> tuple[Any, Any]:
    """The target density and its observations from a validated config.

    Returns ``(density, observations)`` (the same on every rank): for a
    phase-type model (``model.name``) a :class:`~phasic_mpi.inference.posterior.Posterior`
    with the config's priors and transforms, the
    :class:`~phasic_mpi.model.data.Observations` (none when ``[data]`` holds
    only an SFS or moments) and the terms of :func:`build_terms`; for
    ``model.density`` the :class:`~phasic_mpi.inference.posterior.LogDensity`
    the function returns and ``None`` (its data are its own business).
    """
    from phasic_mpi.inference.posterior import Posterior

    if "density" in cfg["model"]:
        return load_density(cfg["model"], base_dir), None
    graph = load_model(cfg["model"], base_dir)
    data_cfg = cfg["data"]
    times = "simulate" in data_cfg or "file" in data_cfg
    data = load_data(data_cfg, graph, base_dir) if times else Observations([])
    terms = build_terms(data_cfg, graph, base_dir)
    names = [name for name in cfg["prior"] if name != "default"]
    priors = {name: cfg["prior"][name] for name in names}
    return Posterior(graph, data, priors, cfg.get("transform") or None, terms=terms), data
