"""Moments of absorption times and accumulated rewards, by sparse LU solves.

Continuous graphs, with ``U = (-S)^{-1}`` (never formed; every product with
``U`` is a solve with one sparse LU factorisation of ``-S``) and a reward
vector ``r`` (``r = 1`` for the absorption time itself)::

    E[Y^k] = k! alpha (U diag(r))^k 1                 (Bladt & Nielsen, Thm 8.1.5)
    E[Y1 Y2] = alpha U diag(r1) U r2 + alpha U diag(r2) U r1
    dE[Y]/dtheta_m = alpha U (dS/dtheta_m) U r        (dU = U dS U)

Discrete graphs, with ``N = (I - T)^{-1}`` and absorption time ``T >= 1``
(``T = 0`` on the defect)::

    E[T (T-1) ... (T-k+1)] = k! alpha T^{k-1} N^k 1   (factorial moments)
    E[T^k] = sum_j Stirling2(k, j) E[T (T-1) ... (T-j+1)]
    E[sum_{n < T} r(X_n)] = alpha N r

Rewards are supported for every continuous quantity; for discrete graphs only
the expectation and its gradient take rewards.

Reward arguments may be one vector of shape (n,) or a matrix (n, m) holding
``m`` reward vectors as columns (e.g. :func:`phasic_mpi.model.models.sfs_rewards`);
results then gain a trailing axis of length ``m`` (the gradient has shape
(m, d)).
"""

from __future__ import annotations

from math import factorial
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from phasic_mpi.model.construct import ABSORBING

if TYPE_CHECKING:
    from phasic_mpi.model.graph import Graph


class _Solver:
    """One LU factorisation of ``A = -S`` (continuous) or ``I - T`` (discrete) at theta.

    Only the states reachable from the start are factorised: a state the
    process cannot enter does not change any moment, and one with zero
    out-rates would make ``A`` singular. ``differentiable`` widens the set
    to edges whose rate is 0 at theta but depends on the parameters, which
    the derivative follows. Vectors keep their full length ``n``, zero
    outside the set.
    """

    def __init__(self, graph: Graph, theta: Any, *, differentiable: bool = False) -> None:
        rates = graph.checked_rates(theta)
        present = rates > 0
        if differentiable:
            present = present | np.any(graph.edge_coef != 0, axis=1)
        self.keep = graph.reachable(present)
        stuck = graph.unabsorbable_at(rates)
        stuck = stuck[np.isin(stuck, self.keep)]
        if stuck.size:
            how = ("through an edge whose rate depends on the parameters, so the "
                   "moments are not differentiable here" if differentiable and
                   not graph.stuck_reachable_at(rates).size else "so the moments are infinite")
            raise ValueError(
                f"{graph.label(stuck[0])} is reachable from the start but cannot reach "
                f"absorption at this theta (its outgoing rates are zero), {how} "
                f"({stuck.size} such reachable states)")
        S, _ = graph.to_sparse(theta)
        n = graph.n_states
        A = (sp.identity(n, format="csc") - S) if graph.discrete else -S
        self.T = S if graph.discrete else None
        self.n = n
        self.lu = splu(A.tocsr()[self.keep][:, self.keep].tocsc())

    def _embed(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n,) + x.shape[1:])
        out[self.keep] = x
        return out

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``A^{-1} b`` (b may have a trailing column axis)."""
        b = np.ascontiguousarray(np.asarray(b, dtype=np.float64)[self.keep])
        return self._embed(self.lu.solve(b))

    def solve_left(self, a: np.ndarray) -> np.ndarray:
        """``a A^{-1}`` as a vector, via the transposed solve."""
        a = np.ascontiguousarray(np.asarray(a, dtype=np.float64)[self.keep])
        return self._embed(self.lu.solve(a, trans="T"))


def _rewards(graph: Graph, rewards: Any) -> tuple[np.ndarray, bool]:
    """Reward matrix (n, m) and whether the caller passed a single vector."""
    if rewards is None:
        return np.ones((graph.n_states, 1)), True
    r = np.asarray(rewards, dtype=np.float64)
    single = r.ndim == 1
    if single:
        r = r[:, None]
    if r.ndim != 2 or r.shape[0] != graph.n_states:
        raise ValueError(f"rewards must have shape ({graph.n_states},) or "
                         f"({graph.n_states}, m), got {np.shape(rewards)}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    return r, single


def _no_discrete_rewards(graph: Graph, rewards: Any, what: str) -> None:
    if graph.discrete and rewards is not None:
        raise NotImplementedError(
            f"{what} of accumulated rewards is not implemented for discrete graphs "
            "(only the expectation and its gradient are)")


def _stirling2(k: int) -> np.ndarray:
    """Table ``S[i, j]`` of Stirling numbers of the second kind, ``0 <= i, j <= k``."""
    table = np.zeros((k + 1, k + 1))
    table[0, 0] = 1.0
    for i in range(1, k + 1):
        for j in range(1, i + 1):
            table[i, j] = j * table[i - 1, j] + table[i - 1, j - 1]
    return table


def factorial_moments(graph: Graph, theta: Any, k: int) -> np.ndarray:
    """Factorial moments ``E[T (T-1) ... (T-j+1)]``, ``j = 1..k``, of a discrete graph."""
    if not graph.discrete:
        raise ValueError("factorial_moments() needs a discrete graph")
    k = _order(k)
    solver = _Solver(graph, theta)
    alpha = graph.alpha
    w = solver.solve(np.ones(graph.n_states))  # N 1
    out = np.empty(k)
    for j in range(1, k + 1):
        if j > 1:
            w = solver.solve(solver.T @ w)  # N and T commute: T^{j-1} N^j 1
        out[j - 1] = factorial(j) * (alpha @ w)
    return out


def _order(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"the moment order k must be an integer >= 1, got {k!r}")
    return int(k)


def moments(graph: Graph, theta: Any = None, k: int = 2,
            rewards: Any = None) -> np.ndarray:
    """Raw moments ``E[Y], E[Y^2], ..., E[Y^k]``.

    Parameters
    ----------
    graph : Graph
    theta : array_like, shape (d,), optional
        Parameters (omit for a constant graph).
    k : int
        Highest order.
    rewards : array_like, shape (n,) or (n, m), optional
        Reward rates; ``Y = int r(X_t) dt``. Default: ``Y = T``.

    Returns
    -------
    ndarray, shape (k,) or (k, m)

    Raises
    ------
    ValueError
        If theta is outside the domain or some state cannot reach absorption
        at theta (the moments are infinite).
    NotImplementedError
        Rewards with ``k > 1`` on a discrete graph.
    """
    k = _order(k)
    if graph.discrete:
        if rewards is not None:
            if k > 1:
                _no_discrete_rewards(graph, rewards, "Higher moments")
            return np.asarray(expectation(graph, theta, rewards))[None]
        factorial_mom = factorial_moments(graph, theta, k)
        stirling = _stirling2(k)[1:, 1:]
        return stirling @ factorial_mom
    r, single = _rewards(graph, rewards)
    solver = _Solver(graph, theta)
    v = np.ones_like(r)
    out = np.empty((k, r.shape[1]))
    for j in range(1, k + 1):
        v = solver.solve(r * v)
        out[j - 1] = factorial(j) * (graph.alpha @ v)
    return out[:, 0] if single else out


def expectation(graph: Graph, theta: Any = None, rewards: Any = None) -> Any:
    """``E[Y]`` (float, or shape (m,) for a reward matrix).

    For discrete graphs with rewards, ``Y = sum_{n < T} r(X_n)``: the reward
    of each visited state, counted once per step spent in it.
    """
    r, single = _rewards(graph, rewards)
    solver = _Solver(graph, theta)
    mean = graph.alpha @ solver.solve(r)
    return float(mean[0]) if single else mean


def variance(graph: Graph, theta: Any = None, rewards: Any = None) -> Any:
    """``Var[Y]`` (float, or shape (m,) for a reward matrix)."""
    _no_discrete_rewards(graph, rewards, "Variance")
    first, second = moments(graph, theta, 2, rewards)
    result = second - first**2
    return float(result) if np.ndim(result) == 0 else result


def covariance(graph: Graph, theta: Any, r1: Any, r2: Any) -> float:
    """``Cov(Y1, Y2)`` for ``Y_i = int r_i(X_t) dt`` on a continuous graph.

    Uses ``E[Y1 Y2] = alpha U diag(r1) U r2 + alpha U diag(r2) U r1``.
    """
    if graph.discrete:
        raise NotImplementedError("covariance() is not implemented for discrete graphs")
    a, single_a = _rewards(graph, r1)
    b, single_b = _rewards(graph, r2)
    if not (single_a and single_b):
        raise ValueError("covariance() takes two reward vectors of shape (n,)")
    a, b = a[:, 0], b[:, 0]
    solver = _Solver(graph, theta)
    ua, ub = solver.solve(a), solver.solve(b)
    alpha_u = solver.solve_left(graph.alpha)
    cross = alpha_u @ (a * ub) + alpha_u @ (b * ua)
    return float(cross - (graph.alpha @ ua) * (graph.alpha @ ub))


def expectation_grad(graph: Graph, theta: Any = None, rewards: Any = None) -> np.ndarray:
    """Exact gradient ``dE[Y]/dtheta``, shape (d,) (or (m, d) for a reward matrix).

    ``dE/dtheta_m = (alpha U) (dS/dtheta_m) (U r)``; ``dS/dtheta_m`` has the
    edge coefficients off the diagonal and minus the state's total
    out-coefficient (exits included) on it. The same formula holds for
    discrete graphs with ``N = (I - T)^{-1}`` in place of ``U``.
    """
    r, single = _rewards(graph, rewards)
    solver = _Solver(graph, theta, differentiable=True)
    left = solver.solve_left(graph.alpha)  # alpha U, shape (n,)
    right = solver.solve(r)  # U r, shape (n, m)
    src, dst = graph.edge_src, graph.edge_dst
    # Per edge: left[src] * (right[dst] - right[src]), with right[absorbing] = 0.
    right_dst = np.where((dst == ABSORBING)[:, None], 0.0, right[np.maximum(dst, 0)])
    per_edge = left[src][:, None] * (right_dst - right[src])  # (E, m)
    grad = per_edge.T @ graph.edge_coef  # (m, d)
    return grad[0] if single else grad
