"""What a finished run stores besides its draws, so that results are data.

:func:`write_model_results` puts the compiled graph (group ``model``), the
pointwise log-likelihood (``log_likelihood``) and replicated data sets
(``posterior_predictive``), and on request ``prior`` and
``prior_predictive``, into the run file; likelihood terms (an SFS, observed
moments) add their observed data, pointwise values and replicates to those
groups and themselves, as data, to ``model/terms``. Readers (``summary``, ``plot``,
ArviZ) then need nothing but the file: they never rebuild the model from
the config, which names code. Computations live in
:mod:`phasic_mpi.model.pointwise`; the layout in the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from phasic_mpi.model.pointwise import OBS_DIMS, pointwise_loglik, predictive_data
from phasic_mpi.model.termdata import loglik_arrays, predictive_arrays, term_variables

__all__ = ["PREDICTIVE_STREAM", "PRIOR_STREAM", "model_groups", "write_model_results"]

# Keys of the random streams, after the run seed: they differ from every
# sampler stream (which are keyed by particle, replica or chain ids), and they
# depend on nothing but the seed, so any rank count writes the same bits.
PREDICTIVE_STREAM = 0x7070  # "pp"
PRIOR_STREAM = 0x7072  # "pr"


def _stack(draws: Mapping[str, Any], names: tuple[str, ...]) -> np.ndarray:
    """(chain, draw, d) array of the parameters in ``names`` order."""
    return np.stack([np.asarray(draws[n], dtype=np.float64) for n in names], axis=-1)


def _per_chain(values: dict[str, np.ndarray], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    return {k: v.reshape(*shape, v.shape[-1]) for k, v in values.items()}


def write_model_results(writer: Any, density: Any, draws: Mapping[str, Any], *,
                        seed: int | None, prior_draws: int = 0) -> bool:
    """Write the model and the ArviZ groups that follow from it (rank 0, once).

    Parameters
    ----------
    writer : RunWriter
        The open run file.
    density : LogDensity
        A :class:`~phasic_mpi.inference.posterior.Posterior` (with ``graph``
        and ``data``) gets every group; any other density (a user function)
        has no graph, and nothing is written.
    draws : mapping of str to array (chain, draw)
        The posterior draws in θ, as written by ``write_posterior``.
    seed : int or None
        The run seed; the replicated data sets are drawn from streams keyed
        by ``(seed, PREDICTIVE_STREAM, draw index)``.
    prior_draws : int
        If positive, also write ``prior`` (that many draws from the prior, one
        chain) and ``prior_predictive``.

    Returns
    -------
    bool
        Whether the density had a graph (and the groups were written).
    """
    graph, obs = getattr(density, "graph", None), getattr(density, "data", None)
    if graph is None or obs is None:
        return False
    terms = tuple(getattr(density, "terms", ()))
    writer.write_model(graph)
    writer.write_terms(terms)
    names = tuple(density.param_names)
    key = [0 if seed is None else int(seed), PREDICTIVE_STREAM]
    for group, (arrays, dims) in model_groups(graph, obs, draws, seed=seed,
                                              tol=getattr(density, "tol", None),
                                              terms=terms).items():
        writer.write_chains(group, arrays, dims=dims)
    if prior_draws > 0:
        rng = np.random.Generator(np.random.Philox([key[0], PRIOR_STREAM]))
        prior = density.to_theta(density.sample_prior_z(rng, int(prior_draws)))
        by_name = {n: prior[None, :, m] for m, n in enumerate(names)}
        writer.write_chains("prior", by_name)
        graph_theta = _stack(by_name, tuple(graph.param_names)).reshape(-1, graph.n_params)
        replicates = _per_chain(predictive_data(graph, obs, graph_theta, [key[0], PRIOR_STREAM]),
                                (1, int(prior_draws)))
        arrays, dims = predictive_arrays(term_variables(terms), by_name, [key[0], PRIOR_STREAM])
        writer.write_chains("prior_predictive", {**replicates, **arrays},
                            dims={**_predictive_dims(), **dims})
    return True


def model_groups(graph: Any, obs: Any, draws: Mapping[str, Any], *, seed: int | None,
                 tol: float | None = None, terms: Any = ()
                 ) -> dict[str, tuple[dict[str, np.ndarray], dict[str, str]]]:
    """``log_likelihood`` and ``posterior_predictive`` of the draws: ``{group: (arrays, dims)}``.

    Arrays are ``(chain, draw, row)``; ``dims`` names each variable's row
    dimension (the ``observed_data`` ones). The same numbers whether they go
    into a run file or into :meth:`phasic_mpi.Result.to_inference_data`.
    ``terms`` (the posterior's SFS and moment terms) add their variables
    (:mod:`phasic_mpi.model.termdata`).
    """
    names = tuple(graph.param_names)
    theta = _stack(draws, names)
    shape = theta.shape[:2]
    flat = theta.reshape(-1, len(names))
    key = [0 if seed is None else int(seed), PREDICTIVE_STREAM]
    variables = term_variables(terms)
    loglik, loglik_dims = loglik_arrays(variables, draws)
    replicates, replicate_dims = predictive_arrays(variables, draws, key)
    return {
        "log_likelihood": ({**_per_chain(pointwise_loglik(graph, obs, flat, tol=tol), shape),
                            **loglik}, {**OBS_DIMS, **loglik_dims}),
        "posterior_predictive": ({**_per_chain(predictive_data(graph, obs, flat, key), shape),
                                  **replicates}, {**_predictive_dims(), **replicate_dims}),
    }


def _predictive_dims() -> dict[str, str]:
    return {**OBS_DIMS, "right_censored_event": OBS_DIMS["right_censored"]}
