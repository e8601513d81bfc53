"""Build the model and read or simulate the data named by a config.

:func:`load_model` turns ``[model]`` into a :class:`~phasic_mpi.graph.Graph`,
:func:`load_density` turns a ``[model]`` with ``density`` into a
:class:`~phasic_mpi.posterior.LogDensity`, :func:`load_data` turns ``[data]``
into :class:`~phasic_mpi.data.Observations` and :func:`write_data` writes
simulated times. Problems with the user's input
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
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from phasic_mpi.config import ConfigError, normalize_theta, resolve_model_spec
from phasic_mpi.data import Observations, as_observations
from phasic_mpi.graph import Graph

__all__ = ["DENSITY_MEMBERS", "builtin_models", "load_data", "load_density", "load_model",
           "read_data_file", "write_data"]

_cache: dict[str, Any] = {}  # the last model built: {"key": ..., "model": ...}

# What the samplers use of a LogDensity (phasic_mpi.posterior.LogDensity).
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


def load_model(model_cfg: Mapping[str, Any], base_dir: str | os.PathLike = ".") -> Graph:
    """Build the graph named by a ``[model]`` table.

    Parameters
    ----------
    model_cfg : mapping
        ``{"name": spec, "options": {...}}``. ``spec`` is a built-in name
        (:data:`phasic_mpi.models.MODELS`), ``"module:function"`` or
        ``"path/file.py:function"`` (relative to ``base_dir``).
    base_dir : path-like
        Directory for relative file specs; also searched for ``module`` if
        it is not importable otherwise.

    Returns
    -------
    Graph
        ``function(**options)``. The last model built is cached (graphs are
        immutable), so validating a config and then running it builds once.

    Raises
    ------
    ConfigError
        Unknown model, import failure, options the factory does not accept or
        rejects (``TypeError``/``ValueError``), or a result that is not a Graph.
    """
    graph, label, key = _build(model_cfg, base_dir, "name")
    if not isinstance(graph, Graph):
        raise ConfigError(f"model.name: {label} returned {type(graph).__name__}, "
                          "expected a phasic_mpi.Graph")
    _cache.update(key=key, model=graph)
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
        :class:`~phasic_mpi.posterior.FunctionDensity` with its own data and
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
                          "phasic_mpi.posterior.LogDensity, e.g. a FunctionDensity)")
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
    _cache.update(key=key, model=density)
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
           field: str) -> tuple[Any, str, str]:
    """``function(**options)`` for ``model_cfg[field]``, its label and cache key.

    The caller checks the result and then caches it (``_cache``).
    """
    from phasic_mpi.models import MODELS

    where = f"model.{field}"
    base = os.path.abspath(os.fspath(base_dir))
    spec = model_cfg.get(field)
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"{where}: expected a non-empty string, got {spec!r}")
    options = dict(model_cfg.get("options") or {})
    kind, target, func = resolve_model_spec(spec, base, where, builtins=field == "name")
    label = target if kind == "builtin" else f"{target}:{func}"
    stamp = os.stat(target).st_mtime_ns if kind == "file" else None
    key = json.dumps([field, kind, target, func, stamp, options], sort_keys=True, default=repr)
    if _cache.get("key") == key:
        return _cache["model"], label, key
    function = (MODELS[target][0] if kind == "builtin"
                else _import_function(kind, target, func, base, where))
    _check_options(function, options, label)
    try:
        model = function(**options)
    except (TypeError, ValueError) as exc:
        args = ", ".join(f"{k}={v!r}" for k, v in options.items())
        raise ConfigError(f"model.options: {label}({args}) failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    return model, label, key


def _check_options(function: Callable, options: dict, label: str) -> None:
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
                raise ConfigError(f"model.options.{key}: unknown option of {label} "
                                  f"(accepted: {accepted})")
    try:
        signature.bind(**options)
    except TypeError as exc:
        raise ConfigError(f"model.options: {label}: {exc} (accepted: {accepted})") from None


def builtin_models() -> list[dict[str, Any]]:
    """Name, options, parameter names and description of every built-in model.

    Parameter names come from building each model with every required
    option set to 2.
    """
    from phasic_mpi.models import MODELS

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

    ``{"simulate": {"theta", "n", "seed"}}`` draws
    ``graph.sample(n, theta, seed=seed)`` (exact times);
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
        return Observations(times)
    if "file" not in data_cfg:
        raise ConfigError("data: give exactly one of 'simulate' or 'file'")
    path = os.path.abspath(os.path.join(os.fspath(base_dir), data_cfg["file"]))
    obs = read_data_file(path, data_cfg.get("dataset"))
    if graph.discrete:
        times = np.concatenate([obs.exact, obs.right_censored, obs.interval_lo,
                                obs.interval_hi[np.isfinite(obs.interval_hi)]])
        if np.any(times != np.round(times)):
            raise ConfigError(f"data.file: {path}: the model is discrete, so the times "
                              "must be integers")
    return obs


def read_data_file(path: str | os.PathLike, dataset: str | None = None) -> Observations:
    """Read observations from ``.csv``/``.txt``, ``.npy`` or ``.h5``/``.hdf5``.

    See ``docs/config.md`` for the formats. Errors are ConfigErrors naming
    ``data.file`` (or ``data.dataset``) and the file.
    """
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if not os.path.isfile(path):
        raise ConfigError(f"data.file: no such file: {path}")
    try:
        if suffix in (".csv", ".txt"):
            return _read_text(path)
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 1 or arr.dtype.kind not in "iuf":
                raise ValueError(f"expected a 1-D numeric array, got shape {arr.shape}, "
                                 f"dtype {arr.dtype}")
            return Observations(arr)
        if suffix in (".h5", ".hdf5"):
            return _read_h5(path, dataset)
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:
        raise ConfigError(f"data.file: {path}: {exc}") from exc
    raise ConfigError(f"data.file: unknown file type {suffix!r} of {path}")


_COLUMNS = ("time", "weight", "kind", "upper")
_KINDS = ("exact", "right", "interval")


def _split(line: str) -> list[str]:
    return [f.strip() for f in line.split(",")] if "," in line else line.split()


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_text(path: str) -> Observations:
    rows = []
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                rows.append((lineno, _split(text)))
    if not rows:
        raise ConfigError(f"data.file: {path}: no data")
    where = f"data.file: {path}"
    header = None
    if not all(_is_float(f) for f in rows[0][1]):
        header_line, fields = rows.pop(0)
        header = [f.lower() for f in fields]
    if header is None or len(header) == 1:
        if header is not None and header[0] in _COLUMNS[1:]:
            raise ConfigError(f"{where}:{header_line}: a one-column file holds times, "
                              f"not {header[0]!r}")
        times = []
        for lineno, fields in rows:
            if len(fields) != 1 or not _is_float(fields[0]):
                raise ConfigError(f"{where}:{lineno}: expected one time per line (or a "
                                  f"header naming the columns {', '.join(_COLUMNS)}), "
                                  f"got {fields}")
            times.append(float(fields[0]))
        return _observations(where, exact=times)

    for name in header:
        if name not in _COLUMNS:
            raise ConfigError(f"{where}: unknown column {name!r} "
                              f"(known: {', '.join(_COLUMNS)})")
    if len(set(header)) != len(header) or "time" not in header:
        raise ConfigError(f"{where}: the header must name distinct columns including "
                          f"'time', got {header}")
    parts: dict[str, dict[str, list]] = {k: {"t": [], "w": [], "u": []} for k in _KINDS}
    for lineno, fields in rows:
        if len(fields) > len(header):
            raise ConfigError(f"{where}:{lineno}: {len(fields)} fields for "
                              f"{len(header)} columns")
        row = dict(zip(header, fields + [""] * (len(header) - len(fields))))
        kind = row.get("kind") or "exact"
        if kind not in _KINDS:
            raise ConfigError(f"{where}:{lineno}: kind must be one of "
                              f"{', '.join(_KINDS)}, got {kind!r}")
        try:
            time = float(row["time"])
            weight = float(row["weight"]) if row.get("weight") else 1.0
            upper = float(row["upper"]) if row.get("upper") else None
        except ValueError as exc:
            raise ConfigError(f"{where}:{lineno}: {exc}") from None
        if (kind == "interval") != (upper is not None):
            raise ConfigError(f"{where}:{lineno}: 'upper' is required for interval rows "
                              "and not allowed otherwise")
        part = parts[kind]
        part["t"].append(time)
        part["w"].append(weight)
        part["u"].append(upper)
    weighted = "weight" in header
    iv = parts["interval"]
    return _observations(
        where,
        exact=parts["exact"]["t"],
        weights=parts["exact"]["w"] if weighted else None,
        right_censored=parts["right"]["t"],
        right_weights=parts["right"]["w"] if weighted else None,
        interval=np.column_stack([iv["t"], iv["u"]]) if iv["t"] else None,
        interval_weights=iv["w"] if weighted else None,
    )


def _observations(where: str, **fields: Any) -> Observations:
    exact = fields.pop("exact", ())
    weights = fields.pop("weights", None)
    try:
        return Observations(exact, weights, **fields)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


_H5_FIELDS = ("exact", "weights", "right_censored", "right_weights",
              "interval_lo", "interval_hi", "interval_weights", "interval")


def _read_h5(path: str, dataset: str | None) -> Observations:
    import h5py

    where = f"data.file: {path}"
    with h5py.File(path, "r") as fh:
        name = dataset if dataset is not None else "observed_data"
        if name not in fh:
            if dataset is not None:
                raise ConfigError(f"data.dataset: no {dataset!r} in {path}")
            raise ConfigError(f"{where}: no 'observed_data' group; name a dataset with "
                              f"data.dataset (top level: {', '.join(fh)})")
        obj = fh[name]
        if isinstance(obj, h5py.Dataset):
            if obj.ndim != 1:
                raise ConfigError(f"{where}: dataset {name!r} has shape {obj.shape}, "
                                  "expected a 1-D array of times")
            return _observations(where, exact=np.asarray(obj[()]))
        present = {k: np.asarray(obj[k][()]) for k in _H5_FIELDS
                   if isinstance(obj.get(k), h5py.Dataset)}
        if not present:
            plain = [k for k, v in obj.items() if isinstance(v, h5py.Dataset)
                     and v.ndim == 1 and not v.is_scale]
            if len(plain) != 1:
                raise ConfigError(f"{where}: group {name!r} has no datasets named "
                                  f"{', '.join(_H5_FIELDS)} nor a single 1-D dataset")
            return _observations(where, exact=np.asarray(obj[plain[0]][()]))
    if "interval" not in present and "interval_lo" in present:
        present["interval"] = np.column_stack([present.pop("interval_lo"),
                                               present.pop("interval_hi", [])])
    return _observations(where, **present)


def write_data(path: str | os.PathLike, observations: Any, *,
               comment: str | None = None) -> None:
    """Write observations so that :func:`read_data_file` reads them back bitwise.

    ``.npy``: exact, unweighted times only. ``.csv``/``.txt``: header
    ``time`` (plus ``weight`` if weighted, plus ``kind,upper`` if any are
    censored), values in shortest round-trip notation; ``comment`` becomes
    ``#`` lines at the top.
    """
    obs = as_observations(observations)
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    censored = obs.right_censored.size + obs.interval_lo.size > 0
    if suffix == ".npy":
        if censored or obs.weights is not None:
            raise ValueError(".npy holds exact unweighted times only; write a .csv")
        np.save(path, obs.exact)
        return
    if suffix not in (".csv", ".txt"):
        raise ValueError(f"cannot write data as {suffix!r} (use .csv, .txt or .npy)")
    weighted = any(w is not None for w in
                   (obs.weights, obs.right_weights, obs.interval_weights))

    def weights(w: np.ndarray | None, n: int) -> np.ndarray:
        return np.ones(n) if w is None else w

    rows = [("exact", t, None, w) for t, w in
            zip(obs.exact, weights(obs.weights, obs.exact.size))]
    rows += [("right", t, None, w) for t, w in
             zip(obs.right_censored, weights(obs.right_weights, obs.right_censored.size))]
    rows += [("interval", lo, hi, w) for lo, hi, w in
             zip(obs.interval_lo, obs.interval_hi,
                 weights(obs.interval_weights, obs.interval_lo.size))]
    columns = (["kind"] if censored else []) + ["time"] + (["upper"] if censored else []) \
        + (["weight"] if weighted else [])
    lines = [f"# {line}" for line in (comment.splitlines() if comment else [])]
    lines.append(",".join(columns))
    for kind, time, upper, weight in rows:
        values = {"kind": kind, "time": repr(float(time)), "weight": repr(float(weight)),
                  "upper": "" if upper is None else
                  ("inf" if math.isinf(upper) else repr(float(upper)))}
        lines.append(",".join(values[c] for c in columns))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
