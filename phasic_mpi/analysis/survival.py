"""Nonparametric survival curves of censored data: Kaplan–Meier and Turnbull.

The data's side of the predictive check for censored observations
(:mod:`phasic_mpi.plotting.predictive`): an ECDF of the exact times alone
would be normalised to 1 and make a model that fits look like a misfit.

* :func:`kaplan_meier` — exact and right-censored observations, with weights
  (Kaplan & Meier 1958; ties: events before censorings at the same time).
* :func:`turnbull` — any mix with interval-censored observations: the
  nonparametric MLE by Turnbull's (1976) self-consistency (EM) iteration, with
  mass on the candidate points (exact times, finite upper bounds, +inf).
  On exact and right-censored data it converges to Kaplan–Meier.
"""

from __future__ import annotations

import numpy as np

from phasic_mpi.model.data import Observations

__all__ = ["kaplan_meier", "survival_curve", "turnbull"]


def _w(weights: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)


def kaplan_meier(times: np.ndarray, events: np.ndarray,
                 weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier estimate of ``P(T > t)``.

    Parameters
    ----------
    times : array_like, shape (n,)
        Event or censoring times.
    events : array_like of bool, shape (n,)
        True where the event (absorption) was observed at ``times``.
    weights : array_like, shape (n,), optional
        Multiplicities.

    Returns
    -------
    t : ndarray
        The distinct event times, increasing.
    s : ndarray
        ``S(t)`` just after each of them (a right-continuous step function,
        1 before the first event).
    """
    times = np.asarray(times, dtype=np.float64)
    events = np.asarray(events, dtype=bool)
    w = _w(weights, times.size)
    uniq, inverse = np.unique(times, return_inverse=True)
    died = np.bincount(inverse, w * events, minlength=uniq.size)
    left = np.bincount(inverse, w, minlength=uniq.size)
    at_risk = left[::-1].cumsum()[::-1]  # weight with time >= t
    keep = died > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = 1.0 - died[keep] / at_risk[keep]
    return uniq[keep], np.cumprod(factor)


def turnbull(obs: Observations, *, tol: float = 1e-10,
             max_iter: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    """Turnbull's nonparametric MLE of ``P(T > t)`` for censored data of any kind.

    Each observation constrains T: exact ``t`` (T = t), right-censored ``c``
    (T > c), interval ``(lo, hi]``. Mass lives on the candidate points
    (exact times, finite upper bounds, and +inf when some observation is
    unbounded); the EM iteration ``p_j <- mean_i w_i a_ij p_j / sum_k a_ik p_k``
    runs until no mass changes by more than ``tol``.

    Returns
    -------
    t, s : ndarray
        Candidate points below +inf and ``S(t)`` just after each.
    """
    lo_iv = np.where(obs.interval_lo < 0, -np.inf, obs.interval_lo)
    lo = np.concatenate([obs.exact, obs.right_censored, lo_iv])
    hi = np.concatenate([obs.exact, np.full(obs.right_censored.size, np.inf), obs.interval_hi])
    exact = np.concatenate([np.ones(obs.exact.size, bool),
                            np.zeros(obs.right_censored.size + lo_iv.size, bool)])
    w = np.concatenate([_w(obs.weights, obs.exact.size),
                        _w(obs.right_weights, obs.right_censored.size),
                        _w(obs.interval_weights, lo_iv.size)])
    points = np.unique(np.concatenate([obs.exact, obs.interval_hi,
                                       [np.inf] if np.isinf(hi).any() else []]))
    a = np.where(exact[:, None], points[None, :] == hi[:, None],
                 (lo[:, None] < points[None, :]) & (points[None, :] <= hi[:, None]))
    a = a[w > 0].astype(np.float64)
    w = w[w > 0] / w[w > 0].sum()
    p = np.full(points.size, 1.0 / points.size)
    for _ in range(max_iter):
        denom = a @ p
        new = p * ((w / denom) @ a)
        done = np.max(np.abs(new - p)) < tol
        p = new
        if done:
            break
    finite = np.isfinite(points)
    return points[finite], np.clip(1.0 - np.cumsum(p)[finite], 0.0, 1.0)


def survival_curve(obs: Observations) -> tuple[np.ndarray, np.ndarray, str]:
    """The data's survival curve and its name: Kaplan–Meier or, with intervals, Turnbull."""
    if obs.interval_lo.size:
        t, s = turnbull(obs)
        return t, s, "Turnbull"
    times = np.concatenate([obs.exact, obs.right_censored])
    events = np.concatenate([np.ones(obs.exact.size, bool),
                             np.zeros(obs.right_censored.size, bool)])
    weights = None
    if obs.weights is not None or obs.right_weights is not None:
        weights = np.concatenate([_w(obs.weights, obs.exact.size),
                                  _w(obs.right_weights, obs.right_censored.size)])
    t, s = kaplan_meier(times, events, weights)
    return t, s, "Kaplan\u2013Meier"
