"""Likelihood terms as data: what a run file stores of SFS and moment terms.

For each :class:`~phasic_mpi.model.sfs.SFSData` and
:class:`~phasic_mpi.model.terms.MomentData` of a posterior (in the order of
``Posterior.terms``) this module gives

* the **observed data**: ``sfs`` (counts per class, dim ``sfs_class``);
  ``moment`` and ``moment_se`` (observed values and standard errors, dim
  ``moment_obs``). A second SFS term is ``sfs_1``, a second moment term
  ``moment_1``, and so on;
* the **pointwise log-likelihood** at posterior draws: per class under the
  Poisson random field (the classes are independent given θ), one value per
  spectrum under the multinomial (dim ``sfs_spectrum``: the classes sum to
  the conditioned number of segregating sites, so no class can be left out
  alone), one per moment. Summed, they give the term's log-likelihood;
* **replicated data** at each draw: SFS counts drawn from the model's
  expected SFS (Poisson per class, or multinomial given the observed number
  of segregating sites) -- the model's predictive distribution, not a
  simulation of genealogies -- and moments drawn from N(m(θ), se);
* the **term itself as data** (:func:`term_to_arrays` /
  :func:`term_from_arrays`): its graph's arrays, reward matrix and settings,
  so that a reader can rebuild it without the code that made it.

Other terms (user classes with ``loglik_and_grad``) have no data form and
are left out (docs/output.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.model.graph import Graph
from phasic_mpi.model.sfs import SFSData
from phasic_mpi.model.terms import MomentData

__all__ = ["TERM_STREAM", "TermVariable", "loglik_arrays", "observed_arrays",
           "predictive_arrays", "term_from_arrays", "term_to_arrays", "term_variables"]

TERM_STREAM = 0x7465  # "te": after the predictive key, then the term's index
_GRAPH_KEYS = ("alpha", "edge_src", "edge_dst", "edge_base", "edge_coef")


class TermVariable(NamedTuple):
    """A stored term: its variable name and observation dimension."""

    name: str
    """``sfs``, ``sfs_1``..., ``moment``, ``moment_1``..."""
    dim: str
    """``<name>_class`` (SFS) or ``<name>_obs`` (moments)."""
    term: Any
    index: int
    """Position among the posterior's terms."""

    @property
    def loglik_dim(self) -> str:
        """The pointwise values' dimension: ``<name>_spectrum`` for a multinomial SFS."""
        multinomial = isinstance(self.term, SFSData) and self.term.likelihood == "multinomial"
        return f"{self.name}_spectrum" if multinomial else self.dim


def term_variables(terms: Sequence[Any]) -> list[TermVariable]:
    """The terms that have a data form, named in order of appearance."""
    out: list[TermVariable] = []
    seen = {"sfs": 0, "moment": 0}
    for index, term in enumerate(terms):
        base = ("sfs" if isinstance(term, SFSData) else
                "moment" if isinstance(term, MomentData) else None)
        if base is None:
            continue
        name = base if seen[base] == 0 else f"{base}_{seen[base]}"
        seen[base] += 1
        out.append(TermVariable(name, f"{name}_{'class' if base == 'sfs' else 'obs'}",
                                term, index))
    return out


Arrays = tuple[dict[str, np.ndarray], dict[str, str]]


def observed_arrays(variables: Sequence[TermVariable]) -> Arrays:
    """``observed_data`` variables of the terms and their dimension names."""
    arrays: dict[str, np.ndarray] = {}
    dims: dict[str, str] = {}
    for v in variables:
        if isinstance(v.term, SFSData):
            arrays[v.name] = np.array(v.term.counts, dtype=np.float64)
            dims[v.name] = v.dim
        else:
            arrays[v.name] = np.array(v.term.value, dtype=np.float64)
            arrays[f"{v.name}_se"] = np.array(v.term.se, dtype=np.float64)
            dims[v.name] = dims[f"{v.name}_se"] = v.dim
    return arrays, dims


def _thetas(term: Any, draws: Mapping[str, Any]) -> tuple[np.ndarray, tuple[int, ...]]:
    """``(P, k)`` parameters of ``term`` from draws ``(chain, draw)`` by name."""
    cols = [np.asarray(draws[name], dtype=np.float64) for name in term.param_names]
    shape = cols[0].shape
    return np.column_stack([c.reshape(-1) for c in cols]), shape


def loglik_arrays(variables: Sequence[TermVariable], draws: Mapping[str, Any]) -> Arrays:
    """Pointwise log-likelihood ``(chain, draw, n)`` of each term at the draws."""
    arrays, dims = {}, {}
    for v in variables:
        theta, shape = _thetas(v.term, draws)
        values = v.term.pointwise(theta)
        arrays[v.name] = values.reshape(*shape, values.shape[1])
        dims[v.name] = v.loglik_dim
    return arrays, dims


def _replicates(term: Any, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One replicated data set per row of ``theta``; NaN rows where θ is invalid."""
    if isinstance(term, MomentData):
        m = term.model_moments(theta)
        ok = np.isfinite(m).all(axis=1)
        draws = rng.normal(np.where(ok[:, None], m, 0.0), term.se)
        return np.where(ok[:, None], draws, np.nan)
    expected = term.expected(theta, errors="nan")
    ok = np.isfinite(expected).all(axis=1) & (expected >= 0).all(axis=1)
    if term.likelihood == "multinomial":
        p = np.where(ok[:, None], expected, 1.0 / expected.shape[1])
        draws = rng.multinomial(int(term.counts.sum()), p).astype(np.float64)
    else:
        draws = rng.poisson(np.where(ok[:, None], expected, 0.0)).astype(np.float64)
    return np.where(ok[:, None], draws, np.nan)


def predictive_arrays(variables: Sequence[TermVariable], draws: Mapping[str, Any],
                      key: Sequence[int]) -> Arrays:
    """Replicated data ``(chain, draw, n)`` of each term, one set per draw.

    The term at position ``index`` draws from ``Philox(key + [TERM_STREAM,
    index])``: the same key and draws give the same bits.
    """
    arrays, dims = {}, {}
    for v in variables:
        theta, shape = _thetas(v.term, draws)
        rng = np.random.Generator(np.random.Philox([*key, TERM_STREAM, v.index]))
        values = _replicates(v.term, theta, rng)
        arrays[v.name] = values.reshape(*shape, values.shape[1])
        dims[v.name] = v.dim
    return arrays, dims


def term_to_arrays(variable: TermVariable) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The term as plain data: ``(arrays, attributes)``; :func:`term_from_arrays` inverts it.

    Arrays: the term's graph (:meth:`Graph.to_arrays`), ``rewards`` (the
    unfolded branch-length rewards of an SFS; a moment term's reward
    columns), ``counts`` or ``value``/``se``. Attributes: ``term`` (``sfs``
    or ``moment``), ``variable``, ``index``, the graph's ``discrete`` and
    ``graph_param_names``, the term's ``param_names``; for an SFS
    ``likelihood``, ``folded``, ``n_loci`` and ``theta_mut`` (a number) or
    ``theta_mut_param`` (the parameter's name); for moments ``kind``.
    """
    term = variable.term
    graph = term.graph.to_arrays()
    arrays = {k: graph[k] for k in _GRAPH_KEYS}
    attrs: dict[str, Any] = {"variable": variable.name, "index": variable.index,
                             "discrete": graph["discrete"],
                             "graph_param_names": list(graph["param_names"]),
                             "param_names": list(term.param_names)}
    if isinstance(term, SFSData):
        arrays.update(rewards=term.branch_rewards, counts=term.counts)
        attrs.update(term="sfs", likelihood=term.likelihood, folded=term.folded,
                     n_loci=term.n_loci)
        if term.theta_mut_is_param:
            attrs["theta_mut_param"] = term.param_names[-1]
        elif term.theta_mut is not None:
            attrs["theta_mut"] = term.theta_mut
    else:
        arrays.update(rewards=term.rewards, value=term.value, se=term.se)
        attrs.update(term="moment", kind=term.kind)
    return arrays, attrs


def term_from_arrays(arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> Any:
    """Rebuild a term from :func:`term_to_arrays` data (e.g. read from a run file).

    Only numbers and strings are read and every check of the constructors
    applies: crafted data can at worst raise ValueError.
    """
    graph = Graph.from_arrays({**{k: arrays[k] for k in _GRAPH_KEYS if k in arrays},
                               "discrete": attrs.get("discrete", False),
                               "param_names": attrs.get("graph_param_names")})
    kind = attrs.get("term")
    if kind == "sfs":
        mut_param = attrs.get("theta_mut_param")
        return SFSData(graph, arrays["counts"], rewards=arrays["rewards"],
                       folded=bool(attrs.get("folded", False)),
                       likelihood=str(attrs.get("likelihood", "poisson")),
                       theta_mut=None if mut_param else attrs.get("theta_mut"),
                       theta_mut_name=str(mut_param or "theta_mut"),
                       n_loci=int(attrs.get("n_loci", 1)))
    if kind == "moment":
        return MomentData(graph, arrays["value"], arrays["se"], kind=str(attrs.get("kind")),
                          rewards=arrays["rewards"])
    raise ValueError(f"stored term: unknown kind {kind!r} (expected 'sfs' or 'moment')")
