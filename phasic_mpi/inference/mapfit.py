"""MAP / maximum likelihood with a Laplace approximation as an algorithm of the run loop.

:class:`MapAlgorithm` runs :mod:`phasic_mpi.inference.laplace` through the
:class:`~phasic_mpi.inference.protocol.Algorithm` interface, so that
``[map]`` is a config section, ``phasic-mpi run`` writes a run file with the
Laplace posterior and ``pm.sample(model, data, algorithm="map")`` works.
Its one iteration optimises every start (split over the ranks of
``ctx.comm`` in contiguous blocks and gathered in start order); :meth:`finish`
takes the best optimum, its Hessian and ``chains x draws`` Laplace draws.
The result depends on the seed alone, never on the rank count.
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np

from phasic_mpi.inference.comm import as_communicator
from phasic_mpi.inference.laplace import MapResult, optimise_starts, result_from_rows, start_points
from phasic_mpi.inference.protocol import FinalRecord
from phasic_mpi.settings import check_settings, choice, from_mapping, integer, number, setting

__all__ = ["MapAlgorithm", "MapContext", "MapDiagnostics", "MapSettings", "MapState",
           "final_record"]


@dataclass(frozen=True)
class MapSettings:
    """Settings of a MAP / MLE fit: the ``[map]`` config section, checked on construction."""

    section: ClassVar[str] = "map"

    starts: int = setting(integer(1), 8, "optimisations from points drawn from the prior")
    seed: int = setting(integer(0), 0, "seed of the starts and of the Laplace draws")
    objective: str = setting(choice("posterior", "likelihood"), "posterior",
                             "maximise the log posterior (MAP) or the log-likelihood (MLE)")
    maxiter: int = setting(integer(1), 1000, "L-BFGS-B iterations per start")
    gtol: float = setting(number(positive=True), 1e-9,
                          "L-BFGS-B projected-gradient tolerance (in z)")
    hessian_step: float = setting(number(positive=True), 1e-5,
                                  "relative step of the Hessian's central differences")
    draws: int = setting(integer(1), 1000, "Laplace draws per chain")
    chains: int = setting(integer(1), 1, "chains the Laplace draws are split into")

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "MapSettings":
        """From a config table (unknown keys are errors)."""
        return from_mapping(cls, section)

    @property
    def likelihood_only(self) -> bool:
        return self.objective == "likelihood"


class MapContext(NamedTuple):
    density: Any
    settings: MapSettings
    comm: Any


class MapState(NamedTuple):
    iteration: int  # 0 before the optimisation, 1 after
    starts: np.ndarray  # (S, d) starting points in z
    rows: np.ndarray  # (S, d + 3) [optimum z, value, converged, iterations]; (0, d + 3) before


class MapDiagnostics(NamedTuple):
    best_value: float
    n_converged: int
    n_finite: int


class MapAlgorithm:
    """MAP / MLE with Laplace as a plug-in of the run loop (one iteration)."""

    name = "map"
    Settings = MapSettings
    iteration_label = "fit"
    figures = ()  # the posterior figures only (its draws are the Laplace posterior)

    def __init__(self, settings: MapSettings) -> None:
        self.settings = settings
        self.n_iterations = 1

    @property
    def n_start_points(self) -> int:
        """How many warm-start points :meth:`start` takes (one per start)."""
        return self.settings.starts

    def context(self, density: Any, comm: Any) -> MapContext:
        return MapContext(density, self.settings, as_communicator(comm))

    def start(self, ctx: MapContext, init: np.ndarray | None = None) -> MapState:
        """Starts drawn from the prior, or the rows of ``init`` (z) as the starts."""
        s = self.settings
        starts = (start_points(ctx.density, s.starts, s.seed) if init is None
                  else np.array(init, dtype=np.float64, ndmin=2))
        return MapState(0, starts, np.zeros((0, starts.shape[1] + 3)))

    def step(self, state: MapState, ctx: MapContext) -> tuple[MapState, MapDiagnostics]:
        s = self.settings
        rows = optimise_starts(ctx.density, state.starts, ctx.comm,
                               likelihood_only=s.likelihood_only, maxiter=s.maxiter, gtol=s.gtol)
        d = state.starts.shape[1]
        values = rows[:, d]
        finite = np.isfinite(values)
        diag = MapDiagnostics(float(values[finite].max()) if finite.any() else -np.inf,
                              int((rows[:, d + 1] > 0).sum()), int(finite.sum()))
        return MapState(1, state.starts, rows), diag

    def describe(self, diag: MapDiagnostics) -> str:
        return (f"best value {diag.best_value:.6g}  converged {diag.n_converged}  "
                f"finite {diag.n_finite}")

    def history_due(self, iteration: int) -> bool:
        return False

    def history(self, state: MapState, ctx: MapContext) -> dict[str, np.ndarray] | None:
        return None

    def checkpoint(self, state: MapState, ctx: MapContext) -> dict[str, np.ndarray] | None:
        """Starts and optima (every rank holds them; rank 0 hands them over)."""
        if ctx.comm.rank != 0:
            return None
        return {"starts": state.starts, "rows": state.rows}

    def checkpoint_layout(self, ctx: MapContext) -> dict[str, tuple]:
        """Shapes and dtype kinds of :meth:`checkpoint`'s arrays (a warm start sets the count)."""
        d = ctx.density.n_params
        return {"starts": ((None, d), "f"), "rows": ((None, d + 3), "f")}

    def restore(self, arrays: dict[str, np.ndarray], iteration: int, ctx: MapContext) -> MapState:
        return MapState(iteration, np.array(arrays["starts"]), np.array(arrays["rows"]))

    def finish(self, state: MapState, ctx: MapContext) -> FinalRecord | None:
        """The Laplace draws as the posterior (rank 0; None elsewhere)."""
        if ctx.comm.rank != 0:
            return None
        if state.iteration == 0:
            raise ValueError("map: stopped before the optimisation ran; nothing to report")
        fit = result_from_rows(ctx.density, state.starts, state.rows,
                               likelihood_only=self.settings.likelihood_only,
                               hessian_step=self.settings.hessian_step)
        return final_record(fit, self.settings)


def final_record(fit: MapResult, settings: MapSettings) -> FinalRecord:
    """The run record of a fit: ``chains x draws`` Laplace draws, optimum and curvature.

    Without a Laplace approximation (``-H`` not positive definite) the draws
    are NaN and ``laplace_ok`` is false: the optimum and Hessian are still
    written, but there is no Gaussian to report (the run ends with a warning).
    """
    k, n, d = settings.chains, settings.draws, fit.z.size
    density = fit.density
    if fit.laplace_ok:
        z = fit.sample_z(k * n, settings.seed)
        ev = density.evaluate(z)
        theta = density.to_theta(z)
        lp, loglik = ev.logp, ev.loglik
    else:
        z = theta = np.full((k * n, d), np.nan)
        lp = loglik = np.full(k * n, np.nan)
    arrays = {"estimate/z": fit.z, "estimate/theta": fit.theta, "estimate/se_z": fit.se_z,
              "estimate/se_theta": fit.se_theta, "estimate/grad": fit.grad,
              "estimate/hessian": fit.hessian, "estimate/cov_z": fit.cov_z,
              "starts/z": fit.starts, "starts/optimum": fit.optima, "starts/value": fit.values,
              "starts/converged": fit.converged.astype(np.int8),
              "starts/iterations": fit.n_iterations}
    names = fit.param_names
    diagnostics = {"kind": fit.kind, "value": fit.value, "best_start": fit.best,
                   "theta_hat": {n: float(v) for n, v in zip(names, fit.theta)},
                   "se_theta": {n: float(v) for n, v in zip(names, fit.se_theta)},
                   "n_starts": int(fit.starts.shape[0]),
                   "n_converged": int(fit.converged.sum()), "laplace_ok": fit.laplace_ok,
                   "max_abs_grad": float(np.max(np.abs(fit.grad))),
                   # Laplace draws outside the likelihood's domain (the run loop's check)
                   "n_invalid_final": int(np.sum(~np.isfinite(loglik))) if fit.laplace_ok else 0}
    warnings = () if fit.laplace_ok else (
        "map: -H is not positive definite at the optimum, so there is no Laplace "
        "approximation; the posterior draws are NaN (see map/estimate/hessian)",)
    return FinalRecord(
        draws={name: theta[:, m].reshape(k, n) for m, name in enumerate(names)},
        sample_stats={"lp": lp.reshape(k, n), "log_likelihood_total": loglik.reshape(k, n)},
        arrays=arrays, diagnostics=diagnostics,
        independent=True,  # independent Gaussian draws: no R-hat, ESS = count
        final_z=z, warnings=warnings,
    )
