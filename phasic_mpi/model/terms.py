"""Likelihood terms besides absorption times: observed moments (and, in
:mod:`phasic_mpi.model.sfs`, site frequency spectra).

A *term* is data plus its log-likelihood with exact gradient, batched over
parameter vectors. It names the parameters it reads (``param_names``, a
subset of the posterior's, matched by name) and returns, for ``theta`` of
shape ``(P, k)`` in that order, ``(loglik (P,), grad (P, k))``. Non-finite
values mark a row invalid. :class:`~phasic_mpi.inference.posterior.Posterior`
adds the terms to the absorption-time likelihood (``terms=[...]``); see
docs/sfs.md.

Every term computes each row on its own (a Python loop over rows of
length-``R`` vectors): numpy may round a transcendental function differently
depending on an element's position in a batch, and a rank's block of
particles must give the bits the whole batch gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from phasic_mpi.model.graph import Graph
from phasic_mpi.model.moments import reward_moments

__all__ = ["LikelihoodTerm", "MomentData"]

_LOG_2PI = math.log(2.0 * math.pi)


@runtime_checkable
class LikelihoodTerm(Protocol):
    """What a posterior needs from an extra piece of data."""

    param_names: tuple[str, ...]

    def loglik_and_grad(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(loglik (P,), d loglik / d theta (P, k))`` at ``theta`` ``(P, k)``."""
        ...


def term_thetas(theta: Any, n_params: int) -> np.ndarray:
    """``theta`` as a float64 ``(P, n_params)`` array (a 1-D vector is ``P = 1``)."""
    arr = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    if arr.ndim != 2 or arr.shape[1] != n_params:
        raise ValueError(f"theta must have shape (P, {n_params}), got {np.shape(theta)}")
    return arr


def per_row(fn: Callable[..., tuple[float, np.ndarray]], n_params: int,
            *arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``fn(row_0, row_1, ...) -> (value, grad (n_params,))`` row by row.

    Rows whose inputs are not finite (moments that could not be computed)
    get ``-inf`` and a zero gradient without calling ``fn``.
    """
    n_rows = arrays[0].shape[0]
    value = np.full(n_rows, -math.inf)
    grad = np.zeros((n_rows, n_params))
    for p in range(n_rows):
        rows = [np.ascontiguousarray(a[p]) for a in arrays]
        if all(np.isfinite(r).all() for r in rows):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                value[p], grad[p] = fn(*rows)
    return value, grad


def reward_matrix(graph: Graph, rewards: Any) -> tuple[np.ndarray, bool]:
    """``(n_states, R)`` reward matrix (ones for ``rewards=None``), single-vector flag."""
    if rewards is None:
        return np.ones((graph.n_states, 1)), True
    r = np.asarray(rewards, dtype=np.float64)
    single = r.ndim == 1
    r = r[:, None] if single else r
    if r.ndim != 2 or r.shape[0] != graph.n_states or not np.all(np.isfinite(r)):
        raise ValueError(f"rewards must be finite with shape ({graph.n_states},) or "
                         f"({graph.n_states}, R), got {np.shape(rewards)}")
    return np.ascontiguousarray(r), single


class MomentData:
    """Observed moments with standard errors: a Gaussian likelihood term.

    ``log L = sum_a [-((y_a - m_a(theta)) / s_a)^2 / 2 - log s_a - log(2 pi) / 2]``
    with ``m_a`` the mean or the variance of ``Y_a = int r_a(X_t) dt``
    (``Y = T`` without rewards) -- the "moment regularisation" of observed
    means and variances alongside (or instead of) absorption times.

    Parameters
    ----------
    graph : Graph
        The model the moments are of; its parameters are matched by name to
        the posterior's.
    value : float or array_like, shape (R,)
        Observed moments, one per reward vector.
    se : float or array_like, shape (R,)
        Their standard errors (> 0).
    kind : {"mean", "variance"}
        Which moment is observed.
    rewards : array_like, shape (n_states,) or (n_states, R), optional
        Reward vectors as columns (default: the absorption time).

    Examples
    --------
    >>> from phasic_mpi.model import models
    >>> term = MomentData(models.exponential(), 0.5, 0.05)   # E[T] = 1/rate
    >>> value, grad = term.loglik_and_grad([[2.0]])
    >>> float(grad[0, 0])                                     # at the mode
    0.0
    """

    def __init__(self, graph: Graph, value: Any, se: Any, *, kind: str = "mean",
                 rewards: Any = None) -> None:
        if kind not in ("mean", "variance"):
            raise ValueError(f"kind must be 'mean' or 'variance', got {kind!r}")
        if kind == "variance" and graph.discrete:
            raise NotImplementedError("observed variances need a continuous graph")
        self.graph = graph
        self.kind = kind
        self.rewards, _ = reward_matrix(graph, rewards)
        n_rewards = self.rewards.shape[1]
        self.value = np.broadcast_to(np.asarray(value, dtype=np.float64), (n_rewards,)).copy()
        self.se = np.broadcast_to(np.asarray(se, dtype=np.float64), (n_rewards,)).copy()
        if not np.all(np.isfinite(self.value)):
            raise ValueError(f"moment values must be finite, got {self.value.tolist()}")
        if not np.all(np.isfinite(self.se) & (self.se > 0)):
            raise ValueError(f"standard errors must be finite and > 0, got {self.se.tolist()}")
        self.param_names: tuple[str, ...] = tuple(graph.param_names)

    def moments_and_grad(self, theta: Any) -> tuple[np.ndarray, np.ndarray]:
        """Model moments ``(P, R)`` and gradients ``(P, R, d)``; NaN where undefined."""
        thetas = term_thetas(theta, len(self.param_names))
        if self.kind == "mean":
            res = reward_moments(self.graph, thetas, self.rewards, grad=True, errors="nan")
            return res.mean, res.mean_grad
        pairs = np.repeat(np.arange(self.rewards.shape[1]), 2).reshape(-1, 2)
        res = reward_moments(self.graph, thetas, self.rewards, pairs, grad=True, errors="nan")
        return (res.cross - res.mean**2,
                res.cross_grad - 2 * res.mean[..., None] * res.mean_grad)

    def loglik_and_grad(self, theta: Any) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian log-likelihood ``(P,)`` and its gradient in theta ``(P, d)``."""
        m, dm = self.moments_and_grad(theta)
        y, s = self.value, self.se
        const = float(np.sum(np.log(s))) + 0.5 * _LOG_2PI * y.size

        def row(mean: np.ndarray, dmean: np.ndarray) -> tuple[float, np.ndarray]:
            resid = (y - mean) / s
            return -0.5 * float(resid @ resid) - const, (resid / s) @ dmean

        return per_row(row, len(self.param_names), m, dm)

    def __repr__(self) -> str:
        return (f"MomentData({self.kind}, value={self.value.tolist()}, "
                f"se={self.se.tolist()}, params={self.param_names})")
