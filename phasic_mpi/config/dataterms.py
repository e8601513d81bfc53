"""``[data.sfs]`` and ``[[data.moments]]``: likelihood terms written in a config.

:func:`check_sfs` and :func:`check_moments` validate the tables without the
model (types, bounds, unknown keys); :func:`check_with_model` finishes them
once the run's graph is built (the SFS graph, the number of classes, the
simulation theta as a table by parameter name, reward shapes) and
:func:`term_param_names` gives the parameters the terms add to the model's
(``theta_mut``), which then need priors. The terms themselves are built by
:func:`phasic_mpi.config.loaders.build_terms` (and the SFS graph by
:func:`phasic_mpi.config.loaders.sfs_graph`). Every error names its key path
(``data.sfs.counts: ...``, ``data.moments[1].se: ...``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from phasic_mpi.config.loaders import sfs_graph
from phasic_mpi.config.schema import (REQUIRED, Key, boolean, check_section, choice, fail,
                                      integer, number, plain, string, table)
from phasic_mpi.config.specs import normalize_theta, resolve_model_spec
from phasic_mpi.model.graph import Graph

__all__ = ["MOMENT", "SFS", "SFS_SIMULATE", "check_moments", "check_sfs", "check_with_model",
           "term_param_names"]


def _optional(check: Any) -> Any:
    def run(value: Any, path: str) -> Any:
        return None if value is None else check(value, path)
    return run


def _counts(value: Any, path: str) -> list:
    """A list of non-negative integers, or a non-empty list of such lists (one per locus)."""
    rows = value if isinstance(value, list) and value and all(
        isinstance(v, list) for v in value) else [value]
    for i, row in enumerate(rows):
        where = f"{path}[{i}]" if rows is value else path
        if not isinstance(row, list) or not row:
            fail(where, f"expected a non-empty list of counts, got {row!r}")
        for j, v in enumerate(row):
            integer(0)(v, f"{where}[{j}]")
    if len({len(r) for r in rows}) > 1:
        fail(path, "every locus (row) needs the same number of classes")
    return plain(value, path)


def _numbers(positive: bool) -> Any:
    """A number, or a non-empty list of numbers (``> 0`` if ``positive``)."""
    def check(value: Any, path: str) -> list[float]:
        one = number(positive=positive)
        if isinstance(value, list):
            if not value:
                fail(path, "expected a non-empty list of numbers")
            return [one(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return [one(value, path)]
    return check


SFS_SIMULATE: dict[str, Key] = {
    "theta": Key(_optional(plain), None,
                 "parameter values of the SFS model (list, or table by name); required"),
    "theta_mut": Key(_optional(number(positive=True)), None,
                     "mutation rate per locus (default: data.sfs.theta_mut)"),
    "n_loci": Key(integer(1), 1, "independent loci (genealogies) simulated"),
    "seed": Key(integer(0), 0, "seed of the genealogies and mutations"),
}

SFS: dict[str, Key] = {
    "counts": Key(_optional(_counts), None, "observed SFS, or one row per locus"),
    "simulate": Key(_optional(table), None, "simulate the SFS from genealogies"),
    "folded": Key(boolean, False, "the spectrum is folded"),
    "likelihood": Key(choice("poisson", "multinomial"), "poisson",
                      "Poisson random field, or multinomial given the segregating sites"),
    "theta_mut": Key(_optional(number(positive=True)), None,
                     "fixed mutation rate per locus; absent: a parameter (poisson)"),
    "theta_mut_name": Key(string, "theta_mut", "name of the mutation-rate parameter"),
    "n_loci": Key(_optional(integer(1)), None, "loci summed in counts (default 1, or its rows)"),
    "model": Key(_optional(string), None, "the SFS graph (default the run's model)"),
    "options": Key(table, {}, "keyword arguments of data.sfs.model"),
}

MOMENT: dict[str, Key] = {
    "kind": Key(choice("mean", "variance"), "mean", "which moment is observed"),
    "value": Key(_numbers(False), REQUIRED, "observed moment(s), one per reward vector"),
    "se": Key(_numbers(True), REQUIRED, "standard error(s)"),
    "rewards": Key(_optional(lambda v, p: plain(v, p)), None,
                   "reward vector (n_states) or vectors (n_states x R); default: time"),
}


def check_sfs(raw: Any, base: str) -> dict:
    """``[data.sfs]`` validated without the model (the model spec resolved)."""
    sfs = check_section(raw, SFS, "data.sfs")
    if (sfs["counts"] is None) == (sfs["simulate"] is None):
        fail("data.sfs", "give exactly one of 'counts' or 'simulate'")
    if sfs["likelihood"] == "multinomial" and sfs["theta_mut"] is not None:
        fail("data.sfs.theta_mut", "the multinomial likelihood does not involve theta_mut; "
                                   "remove it")
    if sfs["model"] is None and sfs["options"]:
        fail("data.sfs.options", "only allowed with data.sfs.model")
    if sfs["model"] is not None:
        kind, target, func = resolve_model_spec(sfs["model"], base, "data.sfs.model")
        sfs["model"] = target if kind == "builtin" else f"{target}:{func}"
    if sfs["simulate"] is not None:
        if sfs["n_loci"] is not None:
            fail("data.sfs.n_loci", "with data.sfs.simulate, give n_loci there")
        sim = check_section(sfs["simulate"], SFS_SIMULATE, "data.sfs.simulate")
        if sim["theta_mut"] is None:
            sim["theta_mut"] = sfs["theta_mut"]  # None: required, checked with the model
        sfs["simulate"] = sim
    return sfs


def check_moments(raw: Any) -> list[dict]:
    """``[[data.moments]]`` validated without the model."""
    if not isinstance(raw, list) or not raw:
        fail("data.moments", f"expected a non-empty array of tables ([[data.moments]]), "
                             f"got {raw!r}")
    return [check_section(entry, MOMENT, f"data.moments[{i}]") for i, entry in enumerate(raw)]


def term_param_names(data: Mapping[str, Any], graph: Graph,
                     base: str | os.PathLike) -> tuple[str, ...]:
    """Parameters of the posterior: the model's, then those the terms add (in order)."""
    names = list(graph.param_names)
    sfs = data.get("sfs")
    if sfs is not None:
        extra = list(sfs_graph(sfs, graph, base).param_names)
        if sfs["likelihood"] == "poisson" and sfs["theta_mut"] is None:
            if sfs["theta_mut_name"] in extra:
                fail("data.sfs.theta_mut_name", f"{sfs['theta_mut_name']!r} is also a "
                                                "parameter of the SFS model")
            extra.append(sfs["theta_mut_name"])
        names += [n for n in extra if n not in names]
    return tuple(names)


def check_with_model(data: dict, graph: Graph, base: str | os.PathLike) -> None:
    """Finish ``data.sfs`` and ``data.moments`` against the built graph (in place)."""
    from phasic_mpi.model.models import sfs_rewards

    sfs = data.get("sfs")
    if sfs is not None:
        g = sfs_graph(sfs, graph, base)
        try:
            n_classes = sfs_rewards(g).shape[1]
        except ValueError as exc:
            fail("data.sfs.model" if sfs["model"] else "model", f"no SFS: {exc}")
        classes = (n_classes + 1) // 2 if sfs["folded"] else n_classes
        if sfs["counts"] is not None:
            width = np.shape(sfs["counts"])[-1]
            if width != classes:
                fail("data.sfs.counts", f"expected {classes} classes "
                     f"({'folded, ' if sfs['folded'] else ''}n = {n_classes + 1} samples), "
                     f"got {width}")
        else:
            sim = sfs["simulate"]
            for key in ("theta", "theta_mut"):  # not checked before: a study fills them in
                if sim[key] is None:
                    fail(f"data.sfs.simulate.{key}", "required key missing" + (
                        "" if key == "theta" else " (data.sfs.theta_mut is not fixed)"))
            theta = normalize_theta(sim["theta"], g, "data.sfs.simulate.theta")
            sim["theta"] = dict(zip(g.param_names, theta))  # by name: the truth of a study
    for i, entry in enumerate(data.get("moments") or ()):
        _check_moment(entry, graph, f"data.moments[{i}]")


def _check_moment(entry: dict, graph: Graph, path: str) -> None:
    n_rewards = 1
    if entry["rewards"] is not None:
        try:
            r = np.asarray(entry["rewards"], dtype=np.float64)
        except (TypeError, ValueError):
            r = None
        if r is None or r.ndim not in (1, 2) or r.shape[0] != graph.n_states \
                or not np.all(np.isfinite(r)):
            fail(f"{path}.rewards", f"expected {graph.n_states} finite numbers (one per "
                                    f"state) or {graph.n_states} rows of R numbers")
        n_rewards = 1 if r.ndim == 1 else r.shape[1]
    for key in ("value", "se"):
        if len(entry[key]) not in (1, n_rewards):
            fail(f"{path}.{key}", f"expected 1 or {n_rewards} numbers (one per reward "
                                  f"vector), got {len(entry[key])}")
