"""Moments of absorption times and accumulated rewards, with exact gradients.

Two paths compute the same formulas:

* **acyclic graphs** (every coalescent model): libphase's
  ``phase_reward_moments``, one pass over the graph in reverse topological
  order per batch of reward vectors, ``O(|E|)`` per reward vector and per
  pair of a second moment; gradients through the adjoint rows
  ``alpha U dS_k`` in the same pass, at almost no extra cost;
* **cyclic graphs**: one sparse LU factorisation of ``-S`` per theta
  (``scipy.sparse.linalg.splu``; the pattern is the same at every theta, the
  numbers are refactorised), reused for every reward vector, pair and
  gradient (transposed solves for the adjoints).

:func:`reward_moments` is the batched entry point (many theta, many reward
vectors, values and gradients); :func:`expectation_and_grad` and
:func:`variance_and_grad` wrap it. Moments of order ``k > 2`` always use the
LU path.

Continuous graphs, with ``U = (-S)^{-1}`` (never formed) and a reward
vector ``r`` (``r = 1`` for the absorption time itself)::

    E[Y^k] = k! alpha (U diag(r))^k 1                 (Bladt & Nielsen, Thm 8.1.5)
    E[Y1 Y2] = alpha U diag(r1) U r2 + alpha U diag(r2) U r1
    dE[Y]/dtheta_m = alpha U (dS/dtheta_m) U r        (dU = U dS U)
    dE[Y1 Y2] = u dS z + w1 dS m2 + w2 dS m1,  u = alpha U, m_i = U r_i,
                z = U (r1 m2 + r2 m1), w_i = (u r_i) U   (products elementwise)

Discrete graphs, with ``N = (I - T)^{-1}`` and absorption time ``T >= 1``
(``T = 0`` on the defect)::

    E[T (T-1) ... (T-k+1)] = k! alpha T^{k-1} N^k 1   (factorial moments)
    E[T^k] = sum_j Stirling2(k, j) E[T (T-1) ... (T-j+1)]
    E[sum_{n < T} r(X_n)] = alpha N r
    E[Y1 Y2] = alpha N (r1 m2 + r2 m1 - r1 r2),  m_i = N r_i
    (the visits n < l give alpha N diag(r1) T N r2 = alpha N diag(r1) (N - I) r2,
     n > l the same with 1 and 2 swapped, n = l alpha N (r1 r2))

and the gradients as for continuous graphs with ``dT`` for ``dS`` (the
constant ``r1 r2`` only enters ``z``). Moments of order ``k <= 2`` (and
variances, covariances) take the batched path for both kinds of graph;
discrete moments of order ``k > 2`` come from the factorial moments, without
rewards (higher reward moments of discrete graphs are not implemented).

Reward arguments may be one vector of shape (n,) or a matrix (n, m) holding
``m`` reward vectors as columns (e.g. :func:`phasic_mpi.model.models.sfs_rewards`);
results then gain a trailing axis of length ``m`` (the gradient has shape
(m, d)).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from phasic_mpi.model.construct import ABSORBING

# Graph (phasic_mpi.model.graph) imports this module, so annotations name it
# without importing it, not even for type checkers: the imports run one way.
Graph = Any


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
            "(the first and second moments, with gradients, are)")


def _diagonal_pairs(n_rewards: int) -> np.ndarray:
    """Pairs ``(a, a)``: the second moments of every reward vector."""
    return np.repeat(np.arange(n_rewards), 2).reshape(-1, 2)


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
        Rewards with ``k > 2`` on a discrete graph.
    """
    k = _order(k)
    if graph.discrete and k > 2:
        _no_discrete_rewards(graph, rewards, "Moments of order > 2")
        factorial_mom = factorial_moments(graph, theta, k)
        stirling = _stirling2(k)[1:, 1:]
        return stirling @ factorial_mom
    r, single = _rewards(graph, rewards)
    if k <= 2:  # the batched path (libphase for acyclic graphs), continuous or discrete
        pairs = _diagonal_pairs(r.shape[1]) if k == 2 else None
        res = reward_moments(graph, graph._theta(theta), r, pairs)
        out = res.mean if k == 1 else np.vstack([res.mean, res.cross])
        return out[:, 0] if single else out
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
    _, single = _rewards(graph, rewards)
    mean = reward_moments(graph, graph._theta(theta), rewards).mean[0]
    return float(mean[0]) if single else mean


def variance(graph: Graph, theta: Any = None, rewards: Any = None) -> Any:
    """``Var[Y]`` (float, or shape (m,) for a reward matrix)."""
    first, second = moments(graph, theta, 2, rewards)
    result = second - first**2
    return float(result) if np.ndim(result) == 0 else result


def covariance(graph: Graph, theta: Any, r1: Any, r2: Any) -> float:
    """``Cov(Y1, Y2)`` for ``Y_i = int r_i(X_t) dt`` (discrete: ``sum_{n < T} r_i(X_n)``).

    Uses ``E[Y1 Y2] = alpha U diag(r1) U r2 + alpha U diag(r2) U r1``
    (discrete: minus ``alpha N (r1 r2)``, see the module docstring).
    """
    a, single_a = _rewards(graph, r1)
    b, single_b = _rewards(graph, r2)
    if not (single_a and single_b):
        raise ValueError("covariance() takes two reward vectors of shape (n,)")
    res = reward_moments(graph, graph._theta(theta), np.column_stack([a, b]), [(0, 1)])
    return float(res.cross[0, 0] - res.mean[0, 0] * res.mean[0, 1])


def expectation_grad(graph: Graph, theta: Any = None, rewards: Any = None) -> np.ndarray:
    """Exact gradient ``dE[Y]/dtheta``, shape (d,) (or (m, d) for a reward matrix).

    ``dE/dtheta_m = (alpha U) (dS/dtheta_m) (U r)``; ``dS/dtheta_m`` has the
    edge coefficients off the diagonal and minus the state's total
    out-coefficient (exits included) on it. The same formula holds for
    discrete graphs with ``N = (I - T)^{-1}`` in place of ``U``.
    """
    _, single = _rewards(graph, rewards)
    grad = reward_moments(graph, graph._theta(theta), rewards, grad=True).mean_grad[0]
    return grad[0] if single else grad


# ------------------------------------------------- batched, with gradients
@dataclass(frozen=True)
class RewardMoments:
    """First and cross moments of accumulated rewards, per theta.

    Attributes
    ----------
    mean : ndarray, shape (P, R)
        ``E[Y_a]``.
    mean_grad : ndarray, shape (P, R, d), or None
        ``dE[Y_a]/dtheta``.
    cross : ndarray, shape (P, Q), or None
        ``E[Y_a Y_b]`` for the requested pairs ``(a, b)`` (raw, not centred).
    cross_grad : ndarray, shape (P, Q, d), or None
        ``dE[Y_a Y_b]/dtheta``.
    """

    mean: np.ndarray
    mean_grad: np.ndarray | None
    cross: np.ndarray | None
    cross_grad: np.ndarray | None


def _contract(graph: Graph, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``y dS_k x`` for every column and parameter, shape (K, d).

    Per edge ``i -> j``: ``coef_k y_i (x_j - x_i)`` with ``x_absorbing = 0``;
    ``y`` is (n,) (one adjoint for all columns) or (n, K).
    """
    src, dst = graph.edge_src, graph.edge_dst
    x_dst = np.where((dst == ABSORBING)[:, None], 0.0, x[np.maximum(dst, 0)])
    y_src = y[src][:, None] if y.ndim == 1 else y[src]
    return (y_src * (x_dst - x[src])).T @ graph.edge_coef


def _lu_moments(graph: Graph, theta: Any, r: np.ndarray, pairs: np.ndarray,
                grad: bool) -> tuple[np.ndarray, ...]:
    """One theta of :func:`reward_moments` by one sparse LU factorisation."""
    solver = _Solver(graph, theta, differentiable=grad)
    alpha = graph.alpha
    m = solver.solve(r)  # U r_a, (n, R)
    out: list[Any] = [alpha @ m, None, None, None]
    u = solver.solve_left(alpha) if grad else None
    if grad:
        out[1] = _contract(graph, u, m)
    if pairs.size:
        a, b = pairs[:, 0], pairs[:, 1]
        rhs = r[:, a] * m[:, b] + r[:, b] * m[:, a]
        if graph.discrete:  # the visits n = l count r_a r_b once (module docstring)
            rhs -= r[:, a] * r[:, b]
        z = solver.solve(rhs)  # (n, Q)
        out[2] = alpha @ z
        if grad:
            w = solver.solve_left(u[:, None] * r)  # (u o r_a) U, (n, R)
            out[3] = (_contract(graph, u, z) + _contract(graph, w[:, a], m[:, b])
                      + _contract(graph, w[:, b], m[:, a]))
    return tuple(out)


def _native_moments(graph: Graph, thetas: np.ndarray, r: np.ndarray, pairs: np.ndarray,
                    grad: bool, strict: bool) -> RewardMoments | None:
    """:func:`reward_moments` by libphase, or None if the graph has a cycle."""
    try:
        from phasic_mpi.model import native as _core
    except ImportError:  # the compiled extension is optional for this module
        return None
    if not _core.is_acyclic(graph):
        return None
    mean, mean_grad, cross, cross_grad, status = _core.reward_moments(
        graph, thetas, r, pairs if pairs.size else None, grad)
    bad = status != _core.Status.OK
    if grad:  # a zero rate into a stuck state at theta: no derivative (inf or NaN)
        bad |= ~np.isfinite(mean_grad).all(axis=(1, 2))
        if cross_grad is not None:
            bad |= ~np.isfinite(cross_grad).all(axis=(1, 2))
    for p in np.flatnonzero(bad):
        if strict:
            # the LU solver's checks raise the same messages as on cyclic graphs
            _Solver(graph, thetas[p], differentiable=grad)
            raise ValueError(f"moments at theta={thetas[p].tolist()}: "
                             f"{_core._last_error() or 'the gradient is not finite'}")
        for field in (mean, mean_grad, cross, cross_grad):
            if field is not None:
                field[p] = np.nan
    return RewardMoments(mean, mean_grad, cross, cross_grad)


def reward_moments(graph: Graph, thetas: Any = None, rewards: Any = None,
                   pairs: Any = None, grad: bool = False, *,
                   errors: str = "raise") -> RewardMoments:
    """Batched first moments, cross moments and their exact gradients.

    Parameters
    ----------
    graph : Graph
        Continuous or discrete.
    thetas : array_like, shape (P, d) or (d,), optional
        Parameter vectors (a 1-D theta counts as ``P = 1``; omit for a
        constant graph).
    rewards : array_like, shape (n,) or (n, R), optional
        Reward vectors as columns (default: one vector of ones, ``Y = T``).
    pairs : array_like of int, shape (Q, 2), optional
        Column indices ``(a, b)`` of the cross moments ``E[Y_a Y_b]``
        (``a == b``: the second moment of ``Y_a``).
    grad : bool
        Also compute the gradients with respect to theta.
    errors : {"raise", "nan"}
        At a theta outside the domain or with infinite moments (a reachable
        state that cannot be left): raise ``ValueError``, or fill that theta's
        rows with NaN.

    Returns
    -------
    RewardMoments
        Arrays with a leading axis of length ``P`` (always present here).

    Notes
    -----
    Acyclic graphs use libphase (``O(|E| (R + Q))`` per theta, the gradients
    almost free for the means and ``O(|E| (R + Q))`` more for the pairs,
    independent of ``d``); cyclic graphs one sparse LU factorisation per
    theta, reused for all solves. Both follow the formulas of the module
    docstring and agree to rounding.
    """
    if errors not in ("raise", "nan"):
        raise ValueError(f"errors must be 'raise' or 'nan', got {errors!r}")
    r, _ = _rewards(graph, rewards)
    r = np.ascontiguousarray(r)
    pair_arr = np.zeros((0, 2), dtype=np.int64) if pairs is None else \
        np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if np.any((pair_arr < 0) | (pair_arr >= r.shape[1])):
        raise ValueError(f"pairs must index the {r.shape[1]} reward vectors, got "
                         f"{pair_arr.tolist()}")
    thetas_2d = graph._theta(None)[None, :] if thetas is None else \
        np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    if thetas_2d.ndim != 2 or thetas_2d.shape[1] != graph.n_params:
        raise ValueError(f"thetas must have shape ({graph.n_params},) or "
                         f"(P, {graph.n_params}), got {np.shape(thetas)}")
    native = _native_moments(graph, thetas_2d, r, pair_arr, grad, errors == "raise")
    if native is not None:
        return native
    rows = []
    for theta in thetas_2d:
        try:
            rows.append(_lu_moments(graph, theta, r, pair_arr, grad))
        except ValueError:
            if errors == "raise":
                raise
            rows.append(None)
    return _stack_rows(rows, graph.n_params, r.shape[1], pair_arr.shape[0], grad)


def _stack_rows(rows: list, d: int, n_rewards: int, n_pairs: int,
                grad: bool) -> RewardMoments:
    shapes = [(n_rewards,), (n_rewards, d), (n_pairs,), (n_pairs, d)]
    wanted = [True, grad, n_pairs > 0, grad and n_pairs > 0]
    fields = []
    for k, (shape, want) in enumerate(zip(shapes, wanted)):
        fields.append(np.stack([np.full(shape, np.nan) if row is None else row[k]
                                for row in rows]) if want else None)
    return RewardMoments(*fields)


def _squeeze(values: np.ndarray, single_theta: bool, single_reward: bool) -> np.ndarray:
    """Drop the reward axis (one vector) and the theta axis (a 1-D theta)."""
    if single_reward:
        values = values[:, 0]
    return values[0] if single_theta else values


def _singles(graph: Graph, thetas: Any, rewards: Any) -> tuple[bool, bool]:
    single_theta = np.ndim(thetas) == 1 or (thetas is None and graph.n_params == 0)
    return single_theta, rewards is None or np.ndim(rewards) == 1


def expectation_and_grad(graph: Graph, thetas: Any = None,
                         rewards: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``E[Y_a]`` and ``dE[Y_a]/dtheta`` at many theta at once.

    Returns
    -------
    values : ndarray, shape (P, R)
    grads : ndarray, shape (P, R, d)
        A 1-D theta drops the ``P`` axis, a single reward vector (or none)
        the ``R`` axis.
    """
    singles = _singles(graph, thetas, rewards)
    res = reward_moments(graph, thetas, rewards, grad=True)
    return _squeeze(res.mean, *singles), _squeeze(res.mean_grad, *singles)


def variance_and_grad(graph: Graph, thetas: Any = None,
                      rewards: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``Var[Y_a]`` and its gradient at many theta; shapes as :func:`expectation_and_grad`.

    ``Var = E[Y^2] - E[Y]^2``, ``dVar = dE[Y^2] - 2 E[Y] dE[Y]``.
    """
    singles = _singles(graph, thetas, rewards)
    n_rewards = 1 if singles[1] else np.shape(rewards)[1]
    res = reward_moments(graph, thetas, rewards, _diagonal_pairs(n_rewards), grad=True)
    var = res.cross - res.mean**2
    var_grad = res.cross_grad - 2 * res.mean[..., None] * res.mean_grad
    return _squeeze(var, *singles), _squeeze(var_grad, *singles)
