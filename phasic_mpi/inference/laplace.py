"""Maximum a posteriori and maximum likelihood fits with a Laplace approximation.

:func:`fit_map` maximises the log density of a :class:`LogDensity` in the
unconstrained coordinates z with L-BFGS (``scipy.optimize``) and exact
gradients, from several starts drawn from the prior; :func:`fit_mle` does the
same for the log-likelihood alone (the z-maximiser of ``loglik(T(z))`` is the
maximum-likelihood estimate, whatever the transform). At the best optimum the
Hessian in z is taken by central differences of the exact gradient and
symmetrised; ``cov_z = (-H)^{-1}`` gives standard errors (in theta by the
delta method, ``se_theta = |dtheta/dz| se_z``) and the Laplace approximation
``z ~ N(z_hat, cov_z)``, whose draws mapped through the transforms are
returned as arrays or an ArviZ ``InferenceData``, and can start SVGD or PT
(:meth:`MapResult.initial_points`).

Results do not depend on the number of MPI ranks: start ``s`` is drawn from
the stream ``(seed, purpose, s)``; each start's optimisation is independent
and evaluates one point at a time; starts are split over ranks in
contiguous blocks and gathered in global order; the best is the largest
value with the lowest start index on ties; the Hessian and the draws are
computed identically on every rank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

from phasic_mpi.inference.comm import as_communicator
from phasic_mpi.inference.parallel import block_layout, stream
from phasic_mpi.inference.posterior import LogDensity
from phasic_mpi.model.params import param_layout

__all__ = ["MapResult", "fit_map", "fit_mle", "optimise_starts", "result_from_rows",
           "start_points"]

_STARTS = 0x5A47  # stream purposes: prior draws for the starts,
_DRAWS = 0x1A91   # and Laplace draws
_GRAD_TOL = 1e-6  # max |gradient| / max(1, |value|) that counts as converged


@dataclass(frozen=True, eq=False)
class MapResult:
    """The best optimum, its curvature and the Laplace approximation.

    Attributes
    ----------
    param_names : tuple of str
    kind : {"map", "mle"}
        Maximised log posterior or log-likelihood.
    z, theta : ndarray, shape (d,)
        The optimum in unconstrained coordinates and in parameter space.
    value : float
        The maximised objective (log posterior up to its constant, or
        log-likelihood).
    grad : ndarray, shape (d,)
        Its exact gradient in z at the optimum (near 0 when converged).
    hessian : ndarray, shape (d, d)
        Its Hessian in z (central differences of the exact gradient, symmetrised).
    cov_z : ndarray, shape (d, d)
        ``(-hessian)^{-1}``; NaN when ``-hessian`` is not positive definite.
    se_z, se_theta : ndarray, shape (d,)
        Standard errors in z and, by the delta method, in theta.
    starts, optima : ndarray, shape (S, d)
        Every start and where its optimisation ended (z).
    values : ndarray, shape (S,)
        Objective at each optimum (``-inf`` where invalid).
    converged : ndarray of bool, shape (S,)
        Per start: scipy reported success, or the largest gradient component
        is below ``1e-6 max(1, |value|)`` (a line search that stops at the
        objective's rounding noise).
    n_iterations : ndarray of int, shape (S,)
    best : int
        Index of the best start.
    """

    param_names: tuple[str, ...]
    kind: str
    z: np.ndarray
    theta: np.ndarray
    value: float
    grad: np.ndarray
    hessian: np.ndarray
    cov_z: np.ndarray
    se_z: np.ndarray
    se_theta: np.ndarray
    starts: np.ndarray
    optima: np.ndarray
    values: np.ndarray
    converged: np.ndarray
    n_iterations: np.ndarray
    best: int
    density: LogDensity = field(repr=False)

    @property
    def laplace_ok(self) -> bool:
        """Whether ``-hessian`` is positive definite (the Laplace approximation exists)."""
        return bool(np.all(np.isfinite(self.cov_z)))

    def sample_z(self, n: int, seed: int = 0, *, scale: float = 1.0) -> np.ndarray:
        """``(n, d)`` draws from ``N(z, scale^2 cov_z)`` (stream ``(seed, purpose)``)."""
        if not self.laplace_ok:
            raise ValueError("the Hessian at the optimum is not negative definite: "
                             "no Laplace approximation (see .hessian)")
        chol = np.linalg.cholesky(self.cov_z)
        eps = stream(seed, _DRAWS).standard_normal((int(n), self.z.size))
        return self.z + scale * eps @ chol.T

    def sample_theta(self, n: int, seed: int = 0) -> np.ndarray:
        """``(n, d)`` Laplace draws mapped through the transforms to theta."""
        return self.density.to_theta(self.sample_z(n, seed))

    def initial_points(self, n: int, seed: int = 0, *, scale: float = 1.0) -> np.ndarray:
        """``(n, d)`` starting points in z for SVGD particles or PT replicas.

        Laplace draws (``scale`` widens them, e.g. 2 to start overdispersed);
        without a Laplace approximation, the optimum itself ``n`` times.
        """
        if not self.laplace_ok:
            return np.tile(self.z, (int(n), 1))
        return self.sample_z(n, seed, scale=scale)

    def to_inference_data(self, n_draws: int = 1000, seed: int = 0, *,
                          chains: int = 1) -> Any:
        """Laplace draws as an ArviZ ``InferenceData`` (``posterior`` group, in theta).

        ``chains * n_draws`` draws, split into ``chains`` chains (a family of
        parameters, the density's ``param_shapes``, is one array variable);
        the optimum and its standard errors are in the group's attributes.
        """
        import arviz as az  # an optional dependency, loaded on use

        draws = self.sample_theta(chains * n_draws, seed).reshape(chains, n_draws, -1)
        posterior = {name: draws[:, :, m] for m, name in enumerate(self.param_names)}
        # families of parameters as one array variable each, as in a run file
        shapes = getattr(self.density, "param_shapes", None)
        posterior = param_layout(self.param_names, shapes, detect=False).pack(posterior)
        attrs = {"inference_method": f"laplace ({self.kind})",
                 **{f"{name}_hat": float(t) for name, t in zip(self.param_names, self.theta)},
                 **{f"{name}_se": float(s) for name, s in zip(self.param_names, self.se_theta)}}
        return az.from_dict(posterior=posterior, posterior_attrs=attrs)

    def summary(self) -> str:
        """One line per parameter: estimate and standard error."""
        lines = [f"{self.kind.upper()} (best of {self.starts.shape[0]} starts, "
                 f"value {self.value:.6g}, {int(self.converged.sum())} converged)"]
        width = max(len(n) for n in self.param_names)
        for name, t, s in zip(self.param_names, self.theta, self.se_theta):
            lines.append(f"  {name:<{width}}  {t:12.6g}  se {s:.4g}")
        return "\n".join(lines)


def _objective(density: LogDensity, likelihood_only: bool) -> Any:
    """``z -> (-value, -grad)`` at one point; an invalid point counts as +inf."""
    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        ev = density.evaluate(z[None, :])
        value = ev.loglik[0] if likelihood_only else ev.logp[0]
        grad = ev.loglik_grad[0] if likelihood_only else ev.grad[0]
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return math.inf, np.zeros_like(z)
        return -float(value), -grad
    return fun


def _optimise(fun: Any, start: np.ndarray, options: dict[str, Any]) -> np.ndarray:
    """One L-BFGS run; the row ``[z (d), value, converged, iterations]``."""
    res = minimize(fun, start, jac=True, method="L-BFGS-B", options=options)
    value = -float(res.fun) if np.isfinite(res.fun) else -math.inf
    # At the optimum the line search often stops "abnormally": the objective's
    # rounding noise (the likelihood is accurate to ~1e-12 relative) hides any
    # further decrease. A gradient that small relative to the value is converged.
    small = np.isfinite(value) and np.max(np.abs(res.jac)) <= _GRAD_TOL * max(1.0, abs(value))
    return np.concatenate([res.x, [value, float(res.success or small), float(res.nit)]])


def _hessian(density: LogDensity, z: np.ndarray, likelihood_only: bool,
             step: float) -> np.ndarray:
    """Central differences of the exact gradient, all 2d points in one batch."""
    d = z.size
    h = step * np.maximum(1.0, np.abs(z))
    points = np.concatenate([z + np.diag(h), z - np.diag(h)])
    ev = density.evaluate(points)
    grad = ev.loglik_grad if likelihood_only else ev.grad
    value = ev.loglik if likelihood_only else ev.logp
    if not np.all(np.isfinite(value)):
        raise ValueError(f"the density is not finite within {step:g} of the optimum "
                         f"z={z.tolist()}; no Hessian")
    hess = (grad[:d] - grad[d:]).T / (2 * h)  # column j: d grad / d z_j
    return 0.5 * (hess + hess.T)


def _dtheta_dz(density: LogDensity, z: np.ndarray) -> np.ndarray:
    if hasattr(density, "dtheta_dz"):
        return np.asarray(density.dtheta_dz(z[None, :]))[0]
    h = 1e-6 * np.maximum(1.0, np.abs(z))  # a user density: differentiate T numerically
    plus = density.to_theta(z + np.diag(h))
    minus = density.to_theta(z - np.diag(h))
    return np.diag(plus - minus) / (2 * h)


def start_points(density: LogDensity, starts: Any, seed: int) -> np.ndarray:
    if isinstance(starts, (int, np.integer)) and not isinstance(starts, bool):
        if starts < 1:
            raise ValueError(f"starts must be >= 1, got {starts}")
        return np.stack([density.sample_prior_z(stream(seed, _STARTS, s), 1)[0]
                         for s in range(int(starts))])
    arr = np.array(starts, dtype=np.float64)
    arr = arr.reshape(1, -1) if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[1] != density.n_params or arr.shape[0] < 1:
        raise ValueError(f"starts must be a count or z points of shape (S, "
                         f"{density.n_params}), got shape {np.shape(starts)}")
    return arr


def fit_map(density: LogDensity, *, starts: Any = 8, seed: int = 0, comm: Any = None,
            likelihood_only: bool = False, maxiter: int = 1000, gtol: float = 1e-9,
            hessian_step: float = 1e-5) -> MapResult:
    """Maximum a posteriori estimate with standard errors and a Laplace approximation.

    Parameters
    ----------
    density : LogDensity
        E.g. a :class:`~phasic_mpi.inference.posterior.Posterior`.
    starts : int or array_like, shape (S, d)
        Number of starts drawn from the prior (start ``s`` from the stream
        ``(seed, purpose, s)``), or the starts themselves in z.
    seed : int
        Seed of the start draws.
    comm : Communicator or mpi4py communicator, optional
        Splits the starts over its ranks (contiguous blocks) and gathers them
        (:mod:`phasic_mpi.inference.comm`); ``None`` runs serially and never
        imports mpi4py. Every rank returns
        the same result, bitwise equal to the serial one.
    likelihood_only : bool
        Maximise the log-likelihood instead (see :func:`fit_mle`).
    maxiter, gtol : int, float
        L-BFGS-B options (iterations; projected-gradient tolerance in z).
    hessian_step : float
        Relative step ``h_j = hessian_step * max(1, |z_j|)`` of the central
        differences.

    Returns
    -------
    MapResult

    Raises
    ------
    ValueError
        If no start reaches a point where the density is finite.

    Examples
    --------
    >>> from phasic_mpi.model import models
    >>> from phasic_mpi.inference.posterior import Posterior
    >>> from phasic_mpi.inference.priors import Gamma
    >>> post = Posterior(models.exponential(), [0.5, 1.5, 1.0], [Gamma(2.0, 1.0)])
    >>> fit = fit_map(post, starts=4)
    >>> round(float(fit.theta[0]), 6)            # (a + n) / (b + sum t) = 5 / 4
    1.25
    """
    all_starts = start_points(density, starts, seed)
    facade = None if comm is None else as_communicator(comm)
    rows = optimise_starts(density, all_starts, facade, likelihood_only=likelihood_only,
                           maxiter=maxiter, gtol=gtol)
    return result_from_rows(density, all_starts, rows, likelihood_only=likelihood_only,
                            hessian_step=hessian_step)


def optimise_starts(density: LogDensity, all_starts: np.ndarray, comm: Any = None, *,
                    likelihood_only: bool = False, maxiter: int = 1000,
                    gtol: float = 1e-9) -> np.ndarray:
    """L-BFGS from every start; rows ``[z (d), value, converged, iterations]`` in start order.

    With a :class:`~phasic_mpi.inference.comm.Communicator` the starts are
    split over its ranks in contiguous blocks and the rows gathered in global
    order on every rank (a collective call); ``None`` runs them all here.
    """
    n_starts, d = all_starts.shape
    fun = _objective(density, likelihood_only)
    options = {"maxiter": int(maxiter), "gtol": float(gtol), "ftol": 1e-15}
    if comm is None:
        return np.stack([_optimise(fun, s, options) for s in all_starts])
    layout = block_layout(n_starts, comm.size, comm.rank)
    local = np.stack([_optimise(fun, s, options) for s in all_starts[layout.rows]]) \
        if layout.local_count else np.zeros((0, d + 3))
    return comm.allgather_rows(layout, local)


def result_from_rows(density: LogDensity, all_starts: np.ndarray, rows: np.ndarray, *,
                     likelihood_only: bool = False, hessian_step: float = 1e-5) -> MapResult:
    """The :class:`MapResult` of :func:`optimise_starts`' rows: best, Hessian, errors.

    Computed identically on every rank (no communication).
    """
    n_starts, d = all_starts.shape
    values = rows[:, d]
    if not np.any(np.isfinite(values)):
        raise ValueError(f"none of the {n_starts} starts reached a point where the "
                         "density is finite")
    best = int(np.argmax(np.where(np.isfinite(values), values, -math.inf)))  # first on ties
    z = rows[best, :d].copy()
    ev = density.evaluate(z[None, :])
    grad = (ev.loglik_grad if likelihood_only else ev.grad)[0]
    hessian = _hessian(density, z, likelihood_only, hessian_step)
    try:
        np.linalg.cholesky(-hessian)
        cov_z = np.linalg.inv(-hessian)
        cov_z = 0.5 * (cov_z + cov_z.T)
    except np.linalg.LinAlgError:
        cov_z = np.full((d, d), math.nan)
    se_z = np.sqrt(np.diag(cov_z))
    return MapResult(
        param_names=tuple(density.param_names), kind="mle" if likelihood_only else "map",
        z=z, theta=density.to_theta(z), value=float(values[best]), grad=grad,
        hessian=hessian, cov_z=cov_z, se_z=se_z,
        se_theta=np.abs(_dtheta_dz(density, z)) * se_z, starts=all_starts,
        optima=rows[:, :d].copy(), values=values.copy(), converged=rows[:, d + 1] > 0,
        n_iterations=rows[:, d + 2].astype(np.int64), best=best, density=density)


def fit_mle(density: LogDensity, **kwargs: Any) -> MapResult:
    """Maximum-likelihood estimate: :func:`fit_map` of the log-likelihood alone.

    The prior only supplies the starts; standard errors come from the
    observed information (the Hessian of the log-likelihood), the Laplace
    draws approximate the sampling distribution of the estimate. Keyword
    arguments as for :func:`fit_map`.
    """
    return fit_map(density, likelihood_only=True, **kwargs)
