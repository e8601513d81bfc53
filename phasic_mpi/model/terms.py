"""Likelihood terms besides absorption times: observed moments (and, in
:mod:`phasic_mpi.model.sfs`, site frequency spectra).

A *term* is data plus its log-likelihood with exact gradient, batched over
parameter vectors. It names the parameters it reads (``param_names``, a
subset of the posterior's, matched by name) and returns, for ``theta`` of
shape ``(P, k)`` in that order, ``(loglik (P,), grad (P, k))``. Non-finite
values mark a row invalid. :class:`~phasic_mpi.inference.posterior.Posterior`
adds the terms to the absorption-time likelihood (``terms=[...]``); see
docs/sfs.md.

Terms are vectorised over rows, and a row's bits do not depend on the batch
it is in (a rank's block of particles must give the bits the whole batch
gives):

* sums over classes or moments are :func:`ordered_sum`: one elementwise
  addition per column, in column order. Elementwise ``+ - * /`` round
  exactly (IEEE), whatever the SIMD width or the row's position; a
  reduction (``sum(axis=1)``, ``@``, ``einsum``) may block or vectorise its
  additions differently for a different number of rows;
* the one transcendental, ``log``, comes from :func:`scipy.special.xlogy`,
  whose ufunc loop calls the scalar libm ``log`` element by element. numpy's
  own ``log`` may run SIMD code (SVML on AVX-512) or a scalar fallback
  depending on the array's layout, whose last bits can differ.

tests/model/test_terms_layout.py checks both on every kind of term.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

from phasic_mpi.model.graph import Graph
from phasic_mpi.model.moments import reward_moments

__all__ = ["LikelihoodTerm", "MomentData", "finite_rows", "masked", "ordered_sum"]

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


def ordered_sum(a: np.ndarray) -> np.ndarray:
    """Sum over axis 1 of ``a`` ``(P, C, ...)``, adding the columns in order.

    The same bits for a row whatever ``P`` is (see the module docstring):
    ``((a[:, 0] + a[:, 1]) + a[:, 2]) + ...``.
    """
    out = np.array(a[:, 0], dtype=np.float64, copy=True)
    for i in range(1, a.shape[1]):
        out += a[:, i]
    return out


def finite_rows(*arrays: np.ndarray) -> np.ndarray:
    """``(P,)`` bool: the rows where every entry of every array is finite."""
    ok = np.ones(arrays[0].shape[0], dtype=bool)
    for a in arrays:
        ok &= np.isfinite(a).all(axis=tuple(range(1, a.ndim)))
    return ok


def masked(value: np.ndarray, grad: np.ndarray,
           ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``value`` with ``-inf`` and ``grad`` with zeros outside the rows ``ok``."""
    return np.where(ok, value, -math.inf), np.where(ok[:, None], grad, 0.0)


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

    def model_moments(self, theta: Any) -> np.ndarray:
        """Model moments ``(P, R)`` without gradients; NaN rows where undefined."""
        thetas = term_thetas(theta, len(self.param_names))
        if self.kind == "mean":
            return reward_moments(self.graph, thetas, self.rewards, errors="nan").mean
        return self.moments_and_grad(thetas)[0]

    def pointwise(self, theta: Any) -> np.ndarray:
        """Each moment's log-likelihood ``(P, R)``; its row sums are :meth:`loglik_and_grad`'s.

        ``-inf`` in the rows where a moment cannot be computed.
        """
        m = self.model_moments(theta)
        resid = (self.value - m) / self.se
        out = -0.5 * resid * resid - np.log(self.se) - 0.5 * _LOG_2PI
        return np.where(finite_rows(m)[:, None], out, -math.inf)

    def loglik_and_grad(self, theta: Any) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian log-likelihood ``(P,)`` and its gradient in theta ``(P, d)``."""
        m, dm = self.moments_and_grad(theta)
        y, s = self.value, self.se
        const = float(np.sum(np.log(s))) + 0.5 * _LOG_2PI * y.size
        ok = finite_rows(m, dm)
        with np.errstate(invalid="ignore", over="ignore"):
            resid = (y - m) / s
            value = -0.5 * ordered_sum(resid * resid) - const
            grad = ordered_sum((resid / s)[:, :, None] * dm)
        return masked(value, grad, ok)

    def __repr__(self) -> str:
        return (f"MomentData({self.kind}, value={self.value.tolist()}, "
                f"se={self.se.tolist()}, params={self.param_names})")
