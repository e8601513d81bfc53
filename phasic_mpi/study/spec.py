"""Study specifications: a base run config, a grid of config values, replicates.

A study file (TOML) is a run config (``[model]``, ``[data]``, ``[prior]``,
``[transform]``, optionally an algorithm section) plus a ``[study]`` table::

    [study]
    type = "calibration"          # or "grid"
    replicates = 40
    seed = 1
    [study.grid]
    "data.simulate.n" = [10, 40]  # any config key (dotted path) over a list of values
    [study.methods.svgd]          # optional factor "method": named algorithm sections
    svgd = { particles = 64, iterations = 300 }
    [study.methods.pt]
    pt = { replicas = 4, rounds = 8, warmup_rounds = 5 }

The cells are the grid points (factors in the order given, ``method`` last,
the last factor varying fastest) times the replicates. Every seed a cell uses
is derived from ``(study.seed, ...)``, never from the rank count:

* the data (``data.simulate.seed``) come from ``(replicate, the values of
  the factors under model/data/prior)``, so cells that differ only in
  algorithm settings see the same data (common random numbers);
* for ``type = "calibration"`` the true θ, drawn from the prior, comes from
  ``(replicate, the values of the factors under model/prior)``: replicate r
  has the same truth at every sample size;
* the algorithm's ``seed`` comes from the cell id.

Nothing here uses MPI; :mod:`phasic_mpi.study` runs the cells.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phasic_mpi.config.validate import ALGORITHMS, read_toml, validate_config
from phasic_mpi.errors import ConfigError
from phasic_mpi.config.schema import Key, boolean, check_section, choice, integer, string

__all__ = ["Cell", "Factor", "StudySpec", "cell_config", "config_param_names", "load_study",
           "parse_study"]

# Factors under these sections change the data (or the truth) of a cell.
DATA_SECTIONS = ("model", "data", "prior")
# Seed purposes (first id after the study seed).
_DATA, _TRUTH, _ALGORITHM, _SFS_DATA = 1, 2, 3, 4


def _levels(value: Any, path: str) -> tuple[float, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1
                       for v in value)):
        raise ConfigError(f"{path}: expected a non-empty list of probabilities in (0, 1), "
                          f"got {value!r}")
    return tuple(sorted(float(v) for v in set(value)))


def _table(value: Any, path: str) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a table, got {value!r}")
    return dict(value)


STUDY: dict[str, Key] = {
    "type": Key(choice("grid", "calibration"), "grid",
                "'calibration': each cell's true θ is drawn from the prior"),
    "replicates": Key(integer(1), 1, "replicate seeds per grid point"),
    "seed": Key(integer(0), 0, "root of every seed the cells use"),
    "ranks_per_task": Key(integer(1), 1, "MPI ranks that run one cell together"),
    "levels": Key(_levels, [0.5, 0.9, 0.95], "central credible levels checked for coverage"),
    "sbc_draws": Key(integer(1), 99, "posterior draws (thinned) for the SBC rank"),
    "keep_runs": Key(boolean, False, "keep each cell's run file in <study>.cells/"),
    "path": Key(string, None, "study file (HDF5); default <study name>.h5"),
    "grid": Key(_table, {}, "config key (dotted path) -> list of values"),
    "methods": Key(_table, {}, "method name -> config sections (a factor 'method')"),
}


@dataclass(frozen=True)
class Factor:
    """One grid factor: a config key path (or ``method``) and its values."""

    name: str
    values: tuple[Any, ...]

    @property
    def affects_data(self) -> bool:
        return self.name.split(".", 1)[0] in DATA_SECTIONS

    def label(self, index: int) -> str:
        """Short text of value ``index`` (for tables and figure legends)."""
        value = self.values[index]
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class Cell:
    """One independent inference: a grid point and a replicate."""

    id: int
    grid_index: tuple[int, ...]  # index of each factor's value
    replicate: int


@dataclass(frozen=True)
class StudySpec:
    """A validated study: see the module docstring."""

    base: dict  # the run config without [study]: raw TOML values
    base_dir: str
    factors: tuple[Factor, ...]
    methods: dict  # method name -> config sections
    kind: str
    replicates: int
    seed: int
    ranks_per_task: int
    levels: tuple[float, ...]
    sbc_draws: int
    keep_runs: bool
    path: str  # the study file
    param_names: tuple[str, ...] = ()  # those of the first cell's model

    @property
    def cells(self) -> list[Cell]:
        shape = [range(len(f.values)) for f in self.factors]
        points = list(itertools.product(*shape)) if shape else [()]
        return [Cell(i * self.replicates + r, tuple(point), r)
                for i, point in enumerate(points) for r in range(self.replicates)]

    @property
    def n_cells(self) -> int:
        return int(np.prod([len(f.values) for f in self.factors], dtype=np.int64)) * self.replicates

    def identity(self) -> str:
        """JSON of everything that determines the cells' results.

        Two study files with equal identities hold the same cells; ``path``,
        ``keep_runs`` and the rank layout do not matter.
        """
        record = {"base": self.base, "factors": [[f.name, list(f.values)] for f in self.factors],
                  "methods": self.methods, "type": self.kind, "replicates": self.replicates,
                  "seed": self.seed, "levels": list(self.levels), "sbc_draws": self.sbc_draws}
        return json.dumps(record, sort_keys=True)


def parse_study(raw: Mapping[str, Any], base_dir: str | os.PathLike = ".",
                default_path: str = "study.h5") -> StudySpec:
    """Validate a parsed study TOML document.

    Raises
    ------
    ConfigError
        Naming the offending key (``study.grid."data.simulate.n"``, ...).
    """
    if not isinstance(raw, Mapping) or "study" not in raw:
        raise ConfigError("study: required section missing (a study file is a run config "
                          "plus a [study] table)")
    base_dir = os.path.abspath(os.fspath(base_dir))
    study = check_section(raw["study"], STUDY, "study")
    base = {k: copy.deepcopy(v) for k, v in raw.items() if k != "study"}
    if "output" in base:
        raise ConfigError("output: not used by a study (each cell's run file lives in "
                          "<study>.cells/); set study.path for the study file")
    factors = []
    for name, values in study["grid"].items():
        where = f'study.grid."{name}"'
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: expected a non-empty list of values, got {values!r}")
        if name.split(".", 1)[0] not in (*DATA_SECTIONS, "transform", *ALGORITHMS):
            raise ConfigError(f"{where}: expected a key of [model], [data], [prior], "
                              f"[transform] or an algorithm section")
        if name in ("data.simulate.seed", "data.sfs.simulate.seed",
                    *(f"{a}.seed" for a in ALGORITHMS)):
            raise ConfigError(f"{where}: seeds are set per cell from study.seed; use "
                              "study.replicates for replicate seeds")
        factors.append(Factor(name, tuple(values)))
    methods = study["methods"]
    for name, sections in methods.items():
        if not isinstance(sections, Mapping) or not sections:
            raise ConfigError(f"study.methods.{name}: expected a table of config sections")
        unknown = [s for s in sections if s not in ALGORITHMS]
        if unknown:
            raise ConfigError(f"study.methods.{name}.{unknown[0]}: expected an algorithm "
                              f"section ({', '.join(ALGORITHMS)})")
    if methods:
        if any(a in base for a in ALGORITHMS):
            raise ConfigError("study.methods: the base config must not have an algorithm "
                              "section when methods are given")
        factors.append(Factor("method", tuple(methods)))
    elif not any(a in base for a in ALGORITHMS):
        raise ConfigError("study: the base config needs an algorithm section ("
                          f"{' or '.join(f'[{a}]' for a in ALGORITHMS)}) or study.methods")
    if study["type"] == "calibration":
        _check_calibration(base, factors)
    path = study["path"] if study["path"] is not None else default_path
    spec = StudySpec(base=base, base_dir=base_dir, factors=tuple(factors), methods=methods,
                     kind=study["type"], replicates=study["replicates"], seed=study["seed"],
                     ranks_per_task=study["ranks_per_task"], levels=study["levels"],
                     sbc_draws=study["sbc_draws"], keep_runs=study["keep_runs"],
                     path=os.path.abspath(os.path.join(base_dir, os.path.expanduser(path))))
    if spec.n_cells == 0:
        raise ConfigError("study: no cells")
    # The base with each factor's first value must be a valid run config: a
    # typo fails here, at once, rather than in every cell.
    first = cell_config(spec, spec.cells[0], os.path.join(spec.path + ".cells", "check.h5"))
    return dataclasses.replace(spec, param_names=config_param_names(first))


def _check_calibration(base: dict, factors: list[Factor]) -> None:
    """Every data source of a calibration study is simulated from the drawn θ."""
    data = base.get("data") or {}
    sfs = data.get("sfs") if isinstance(data.get("sfs"), Mapping) else {}
    if "simulate" not in data and "simulate" not in sfs:
        raise ConfigError("data.simulate: a calibration study simulates each cell's data "
                          "from a θ drawn from the prior (data.simulate or "
                          "data.sfs.simulate)")
    for key, given in (("data.file", "file" in data), ("data.sfs.counts", "counts" in sfs),
                       ("data.moments", "moments" in data)):
        if given:
            raise ConfigError(f"{key}: a calibration study simulates all of its data from "
                              "the θ drawn from the prior; observed data are not allowed")
    for f in factors:
        if f.name in ("data.simulate.theta", "data.sfs.simulate.theta",
                      "data.sfs.simulate.theta_mut"):
            raise ConfigError(f'study.grid."{f.name}": a calibration study draws θ '
                              "from the prior; use type = \"grid\" for fixed θ")


def load_study(path: str | os.PathLike) -> StudySpec:
    """Read and validate a study TOML file (relative paths against its directory)."""
    path = os.path.abspath(os.fspath(path))
    raw = read_toml(path, "study file")
    return parse_study(raw, os.path.dirname(path), default_path=Path(path).stem + ".h5")


def config_param_names(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    """Parameter names of a validated run config's model (or log-density)."""
    from phasic_mpi.config.dataterms import term_param_names
    from phasic_mpi.config.loaders import load_density, load_model

    if "density" in cfg["model"]:
        return tuple(load_density(cfg["model"]).param_names)
    return term_param_names(cfg["data"], load_model(cfg["model"]), ".")  # with theta_mut


def derived_seed(seed: int, *ids: int) -> int:
    """A 32-bit seed keyed by ``(seed, *ids)``."""
    return int(np.random.SeedSequence([int(seed), *map(int, ids)]).generate_state(1)[0])


def _set(raw: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key} is not a table in the base config")
    node[leaf] = copy.deepcopy(value)


def _draw_truth(raw: dict, spec: StudySpec, data_key: tuple[int, ...]) -> None:
    """Draw θ from the prior for a calibration cell and put it into every simulation.

    θ covers the posterior's parameters (the model's, then ``theta_mut`` of
    an SFS); ``data.simulate.theta`` gets the model's, ``data.sfs.simulate``
    the SFS model's and the mutation rate (in place).
    """
    from phasic_mpi.config.dataterms import check_sfs, term_param_names
    from phasic_mpi.config.loaders import load_model, sfs_graph
    from phasic_mpi.config.validate import _model, _priors
    from phasic_mpi.inference.parallel import stream
    from phasic_mpi.inference.priors import make_prior

    graph = load_model(_model(raw["model"], spec.base_dir), spec.base_dir)
    data = {}
    if "sfs" in raw["data"]:
        data["sfs"] = check_sfs(raw["data"]["sfs"], spec.base_dir)
    names = list(term_param_names(data, graph, spec.base_dir))
    priors = _priors(raw.get("prior"), names)
    rng = stream(spec.seed, _TRUTH, *data_key)
    truth = {name: float(make_prior(priors[name], f"prior.{name}").sample(rng))
             for name in names}
    if "simulate" in raw["data"]:
        raw["data"]["simulate"]["theta"] = [truth[n] for n in graph.param_names]
    if "sfs" in data and data["sfs"]["simulate"] is not None:
        sfs = data["sfs"]
        sim = raw["data"]["sfs"]["simulate"]
        sim["theta"] = {n: truth[n] for n in sfs_graph(sfs, graph, spec.base_dir).param_names}
        if sfs["theta_mut_name"] in truth:
            sim["theta_mut"] = truth[sfs["theta_mut_name"]]


def cell_config(spec: StudySpec, cell: Cell, run_path: str) -> dict:
    """The validated run config of one cell (its output goes to ``run_path``).

    Raises
    ------
    ConfigError
        The cell's config is invalid (the message names the key).
    """
    raw = copy.deepcopy(spec.base)
    for factor, index in zip(spec.factors, cell.grid_index):
        if factor.name == "method":
            raw.update(copy.deepcopy(spec.methods[factor.values[index]]))
        else:
            _set(raw, factor.name, factor.values[index])
    data_key = (cell.replicate,) + tuple(
        index for factor, index in zip(spec.factors, cell.grid_index) if factor.affects_data)
    truth_key = (cell.replicate,) + tuple(
        index for factor, index in zip(spec.factors, cell.grid_index)
        if factor.name.split(".", 1)[0] in ("model", "prior"))
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    simulate = data.get("simulate")
    if isinstance(simulate, dict):
        simulate["seed"] = derived_seed(spec.seed, _DATA, *data_key)
    sfs_simulate = (data.get("sfs") or {}).get("simulate") if isinstance(
        data.get("sfs"), dict) else None
    if isinstance(sfs_simulate, dict):
        sfs_simulate["seed"] = derived_seed(spec.seed, _SFS_DATA, *data_key)
    if spec.kind == "calibration":
        _draw_truth(raw, spec, truth_key)
    algorithm = next(name for name in ALGORITHMS if name in raw)
    if not isinstance(raw[algorithm], dict):
        raise ConfigError(f"{algorithm}: expected a table")
    raw[algorithm]["seed"] = derived_seed(spec.seed, _ALGORITHM, cell.id)
    raw["output"] = {"path": run_path, "progress": "none"}
    return validate_config(raw, spec.base_dir)
