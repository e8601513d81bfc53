"""The in-memory result of an inference run, and its ArviZ view."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phasic_mpi.model.params import param_layout

__all__ = ["Result"]

# The row dimension of every per-observation variable (observed data, pointwise
# log-likelihood, predictive data), as in a run file.
_ROW_DIMS = {"exact": "exact_obs", "weights": "exact_obs", "right_censored": "right_censored_obs",
             "right_weights": "right_censored_obs", "right_censored_event": "right_censored_obs",
             "interval": "interval_obs", "interval_lo": "interval_obs",
             "interval_hi": "interval_obs", "interval_weights": "interval_obs"}


@dataclass(frozen=True, eq=False)
class Result:
    """What :func:`phasic_mpi.svgd` and :func:`phasic_mpi.pt` return on rank 0.

    Attributes
    ----------
    algorithm : str
        ``"svgd"`` or ``"pt"``.
    param_names : tuple of str
    draws : dict of str to (chain, draw) arrays
        Posterior draws in parameter space (SVGD: one chain, a draw per particle).
    sample_stats : dict of str to (chain, draw) arrays
        ``log_likelihood_total`` (per draw), SVGD's ``lp``, PT's ``local_accept``.
    diagnostics : dict
        The algorithm's end-of-run diagnostics.
    history : dict of str to arrays
        The per-iteration history (``svgd/diagnostics/step_norm``, ``svgd/particles``,
        ``pt/betas``...); for a run with a file, read it with
        :func:`phasic_mpi.read_run` instead (empty here).
    final_z : (k, d) array
        End points in unconstrained coordinates: pass the result as ``init=`` to
        start another run there (a warm start).
    path : str or None
        The run file, if one was written.
    completed : bool
        False if a signal stopped the run early.
    iteration : int
        Iterations (SVGD) or scans (PT) done.
    settings : SVGDSettings or PTSettings
    observations : Observations or None
    independent : bool
        True for SVGD particles (not a Markov chain: no R-hat, ESS = count).
    attrs : dict
        Run environment and timings (ranks, MPI library, wall time...).
    param_shapes : dict of str to tuple of int
        The density's families of parameters (:func:`phasic_mpi.model.params.param_layout`);
        ``draws`` stays flat, one entry per parameter name.
    """

    algorithm: str
    param_names: tuple[str, ...]
    draws: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    diagnostics: dict[str, Any]
    history: dict[str, np.ndarray]
    final_z: np.ndarray
    path: str | None
    completed: bool
    iteration: int
    settings: Any
    observations: Any = None
    independent: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)
    graph: Any = None  # the model, when it is a Graph: pointwise log-likelihood, predictive data
    seed: int | None = None
    tol: float | None = None
    param_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # families of parameters
    terms: tuple[Any, ...] = ()  # the posterior's likelihood terms (SFS, moments)

    @property
    def theta(self) -> np.ndarray:
        """All draws as one ``(chains * draws, d)`` array, columns in ``param_names`` order."""
        return np.column_stack([self.draws[n].reshape(-1) for n in self.param_names])

    def mean(self) -> dict[str, float]:
        """Posterior mean of every parameter."""
        return {n: float(np.mean(self.draws[n])) for n in self.param_names}

    def std(self) -> dict[str, float]:
        """Posterior standard deviation of every parameter (ddof = 1)."""
        return {n: float(np.std(self.draws[n], ddof=1)) for n in self.param_names}

    def to_inference_data(self) -> Any:
        """An :class:`arviz.InferenceData` with the groups of a run file.

        ``posterior`` (dims ``chain``, ``draw``; a family of parameters, see
        ``param_shapes``, is one variable with dims ``<name>_dim_0``... as in
        a run file), ``sample_stats``
        (``log_likelihood_total`` is each draw's total), ``observed_data`` by
        kind (``exact``, ``right_censored``, ``interval_lo``/``interval_hi``
        and their weights where given) and, for a Graph model, the pointwise
        ``log_likelihood`` (one variable per kind, so ``az.loo`` and
        ``az.compare`` are right) and ``posterior_predictive`` (replicated data
        sets censored like the data), the same numbers as in a run file.
        """
        import arviz as az

        groups: dict[str, Any] = {}
        obs = self.observations
        if obs is not None:
            groups["observed_data"] = {name: np.asarray(value, dtype=np.float64) for name, value in (
                ("exact", obs.exact), ("weights", obs.weights),
                ("right_censored", obs.right_censored), ("right_weights", obs.right_weights),
                ("interval_lo", obs.interval_lo), ("interval_hi", obs.interval_hi),
                ("interval_weights", obs.interval_weights)) if value is not None}
        dims = {name: [_ROW_DIMS[name]] for name in _ROW_DIMS}
        named: dict[str, tuple[dict[str, np.ndarray], dict[str, str]]] = {}
        if self.graph is not None and obs is not None:
            from phasic_mpi.model.termdata import observed_arrays, term_variables
            from phasic_mpi.run.results import model_groups

            for group, (arrays, group_dims) in model_groups(
                    self.graph, obs, self.draws, seed=self.seed, tol=self.tol,
                    terms=self.terms).items():
                groups[group] = {k: v for k, v in arrays.items() if k in _ROW_DIMS}
                named[group] = ({k: v for k, v in arrays.items() if k not in _ROW_DIMS},
                                group_dims)
            named["observed_data"] = observed_arrays(term_variables(self.terms))
        posterior = param_layout(self.param_names, self.param_shapes, detect=False).pack(self.draws)
        idata = az.from_dict(posterior=posterior, sample_stats=dict(self.sample_stats),
                             dims=dims, attrs={"inference_library": "phasic_mpi",
                                               "algorithm": self.algorithm}, **groups)
        for group, (arrays, group_dims) in named.items():
            _add_variables(idata, group, arrays, group_dims)
        return idata

    def __repr__(self) -> str:
        shape = next(iter(self.draws.values())).shape if self.draws else (0, 0)
        state = "complete" if self.completed else f"stopped at {self.iteration}"
        return (f"Result({self.algorithm}, {len(self.param_names)} parameters, "
                f"{shape[0]} chain(s) x {shape[1]} draws, {state}"
                f"{', file ' + self.path if self.path else ''})")


def _add_variables(idata: Any, group: str, arrays: dict[str, np.ndarray],
                   dims: dict[str, str]) -> None:
    """Add variables on their named row dimension to ``group`` (created if missing).

    Likelihood terms' variables go in here rather than through ``from_dict``,
    whose one ``dims`` mapping cannot give a multinomial SFS's pointwise
    values (``sfs_spectrum``) another dimension than its counts (``sfs_class``).
    """
    import xarray as xr

    if not arrays:
        return
    lead = () if group == "observed_data" else ("chain", "draw")
    variables = {name: ((*lead, dims[name]), np.asarray(arr)) for name, arr in arrays.items()}
    if group in idata.groups():
        setattr(idata, group, getattr(idata, group).assign(variables))
    else:
        first = next(iter(arrays.values()))
        coords = {d: np.arange(first.shape[i]) for i, d in enumerate(lead)}
        idata.add_groups({group: xr.Dataset(variables, coords=coords)})
