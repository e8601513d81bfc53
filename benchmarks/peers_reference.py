"""Reference posteriors of ``bench_peers.py`` by quadrature on a grid, and the metrics.

The targets have 2 and 3 parameters, so their posterior moments can be
computed without any sampler: the log density in z (the same
:class:`~phasic_mpi.inference.posterior.Posterior` every sampler sees, Jacobian
included) on a uniform grid in z, normalised, gives E[θ] and sd[θ] by a
Riemann sum, whose error decays faster than any power of the spacing for a
smooth density that is negligible on the box's faces. The box is the union
over the modes of mode ± 4 Laplace standard deviations, each face then
moved outwards until the log density on it is 25 nats below the maximum. Each reference is
computed at two resolutions; the difference is reported as its own error.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

EDGE_NATS = 25.0  # the faces of the box must lie this far below the maximum
CHUNK = 8192  # grid points per batched evaluation


class LogProb:
    """Value-only, batched log density in z of a Posterior: what emcee and ptemcee call.

    Equal to ``density.evaluate(z).logp`` (checked by :meth:`check`) without
    the gradient, which the gradient-free samplers do not use.
    """

    def __init__(self, density: Any) -> None:
        self.density = density
        self.calls = 0  # z rows evaluated

    def split(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log-likelihood and log prior (Jacobian included) at the rows of ``z``."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        self.calls += z.shape[0]
        logprior, _ = self.density.logprior(z)
        with np.errstate(over="ignore", invalid="ignore"):
            theta = self.density.to_theta(z)
        ok = np.isfinite(theta).all(axis=1) & np.isfinite(logprior)
        loglik = np.full(z.shape[0], -np.inf)
        if ok.any():
            loglik[ok] = self.density.graph.loglik(self.density.data, theta[ok],
                                                  tol=self.density.tol)
        loglik[~np.isfinite(loglik)] = -np.inf
        return loglik, logprior

    def __call__(self, z: np.ndarray) -> np.ndarray:
        loglik, logprior = self.split(z)
        return loglik + logprior

    def check(self, z: np.ndarray) -> float:
        """Largest relative difference to ``density.evaluate(z).logp`` (should be ~1e-15)."""
        full = self.density.evaluate(z).logp
        mine = self(z)
        return float(np.max(np.abs(mine - full) / np.maximum(1.0, np.abs(full))))


class Reference(NamedTuple):
    mean: np.ndarray  # (d,) E[θ]
    sd: np.ndarray  # (d,) sd[θ]
    mass_a_lt_b: float  # posterior mass where θ_0 < θ_1 (NaN for d != 2)
    edge_nats: float  # log density on the faces of the box minus its maximum
    resolution_error: float  # max |Δmean|, |Δsd| / sd between the two resolutions
    points: int  # grid points in all


def _mode_and_sd(density: Any, theta0: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """Mode in z (BFGS on the exact gradient), Laplace sds (finite-difference Hessian), log p there."""
    from scipy.optimize import minimize

    def neg(z):
        ev = density.evaluate(z[None])
        return -float(ev.logp[0]), -ev.grad[0]

    res = minimize(neg, density.to_z(np.asarray(theta0, float)), jac=True, method="BFGS",
                   options={"gtol": 1e-8})
    d, h = res.x.size, 1e-4
    hess = np.empty((d, d))
    for k in range(d):
        step = np.zeros(d)
        step[k] = h
        hess[k] = (neg(res.x + step)[1] - neg(res.x - step)[1]) / (2 * h)
    cov = np.linalg.inv(0.5 * (hess + hess.T))
    return res.x, np.sqrt(np.diag(cov)), -float(res.fun)


def _axes(lo: np.ndarray, hi: np.ndarray, spacing: np.ndarray) -> list[np.ndarray]:
    return [np.linspace(a, b, int(np.ceil((b - a) / h)) + 1) for a, b, h in zip(lo, hi, spacing)]


def _logp_grid(logprob: LogProb, axes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    return grid, np.concatenate([logprob(grid[i:i + CHUNK]) for i in range(0, len(grid), CHUNK)])


def _box(logprob: LogProb, found: list, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A box whose every face lies EDGE_NATS below the top; returns it and the faces' excess.

    It starts at mode ± 4 Laplace sds (union over the modes) and moves each
    failing face outwards by half its distance from the mode, one face at a
    time, evaluating only the faces: a weakly identified rate (rabbits' jump
    rate towards 0, where only its prior decays) gets a long side, cheap ones
    are not widened where the prior has long killed the density.
    """
    top = max(f[2] for f in found)
    lo = np.min([m - 4 * s for m, s, _ in found], axis=0)
    hi = np.max([m + 4 * s for m, s, _ in found], axis=0)
    centre = np.mean([m for m, _, _ in found], axis=0)
    for _ in range(40):
        axes = _axes(lo, hi, spacing)
        worst, moved = -np.inf, False
        for k in range(lo.size):
            for bound in (lo, hi):
                face = list(axes)
                face[k] = np.array([bound[k]])
                excess = float(np.max(_logp_grid(logprob, face)[1])) - top
                worst = max(worst, excess)
                if excess > -EDGE_NATS:
                    bound[k] = centre[k] + 1.5 * (bound[k] - centre[k])
                    moved = True
        if not moved:
            return lo, hi, worst
    raise RuntimeError(f"reference: no box with faces {EDGE_NATS} nats below the top")


def _moments(logprob: LogProb, density: Any, axes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Mean and sd of θ, and the mass where θ_0 < θ_1, by a Riemann sum over the grid."""
    grid, logp = _logp_grid(logprob, axes)
    w = np.exp(logp - np.max(logp))
    w /= w.sum()
    theta = density.to_theta(grid)
    mean = w @ theta
    sd = np.sqrt(w @ (theta - mean) ** 2)
    # grid points on the diagonal θ_0 = θ_1 count half to each mode
    below = (float(w[theta[:, 0] < theta[:, 1]].sum() + 0.5 * w[theta[:, 0] == theta[:, 1]].sum())
             if len(axes) == 2 else float("nan"))
    return mean, sd, below, len(grid)


def reference(density: Any, mode_starts: list, per_sd: float = 1.5) -> Reference:
    """Posterior mean and sd of θ by quadrature on a uniform grid in z (see the module doc).

    ``per_sd`` grid points per Laplace standard deviation of each axis (the
    smallest over the modes); the check runs at 2/3 of it.
    """
    logprob = LogProb(density)
    found = [_mode_and_sd(density, t) for t in mode_starts]
    spacing = np.min([s for _, s, _ in found], axis=0) / per_sd
    lo, hi, edge = _box(logprob, found, spacing)
    mean, sd, below, points = _moments(logprob, density, _axes(lo, hi, spacing))
    coarse = _moments(logprob, density, _axes(lo, hi, 1.5 * spacing))
    err = max(np.max(np.abs(coarse[0] - mean) / sd), np.max(np.abs(coarse[1] - sd) / sd))
    return Reference(mean, sd, below, edge, float(err), points)


# ------------------------------------------------------------------ metrics
def bulk_ess(draws: np.ndarray) -> float:
    """min over parameters of ArviZ's bulk ESS of ``draws`` (chains, draws, d)."""
    import arviz as az

    return float(min(az.ess(draws[:, :, k], method="bulk") for k in range(draws.shape[2])))


def accuracy(draws: np.ndarray, ref: Reference) -> tuple[float, float]:
    """max over parameters of |mean - ref mean| / ref sd and |sd - ref sd| / ref sd."""
    flat = draws.reshape(-1, draws.shape[2])
    mean, sd = flat.mean(axis=0), flat.std(axis=0, ddof=1)
    return float(np.max(np.abs(mean - ref.mean) / ref.sd)), float(np.max(np.abs(sd - ref.sd) / ref.sd))


def modes(draws: np.ndarray) -> tuple[float, int]:
    """Fraction of draws with θ_0 < θ_1 (mode a < b) and the number of switches along the chains."""
    side = draws[:, :, 0] < draws[:, :, 1]
    return float(side.mean()), int(np.count_nonzero(side[:, 1:] != side[:, :-1]))
