"""The phase-type graph: states, start distribution and parameterized edges.

A :class:`Graph` is the one model representation shared by every part of the
package. Its edge ``e`` goes from transient state ``edge_src[e]`` to
``edge_dst[e]`` (``-1`` = absorption) at rate

    w_e(theta) = edge_base[e] + edge_coef[e] @ theta,

the single place where rates are defined. Densities and likelihoods are
computed by libphase (:mod:`phasic_mpi.model.native`, imported lazily so that the
pure-Python layer works without the compiled extension); moments, reward
transformations and simulation live in :mod:`phasic_mpi.model.moments`,
:mod:`phasic_mpi.model.rewards` and :mod:`phasic_mpi.model.simulate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order

from phasic_mpi.model import construct
from phasic_mpi.model.construct import ABSORBING, MASS_TOL, State, as_state

__all__ = ["ABSORBING", "Graph", "State", "as_state", "unabsorbable_states"]


def _freeze(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def unabsorbable_states(
    n_states: int, src: np.ndarray, dst: np.ndarray, present: np.ndarray
) -> np.ndarray:
    """Indices of states with no path to absorption along the ``present`` edges.

    A breadth-first search on the reversed graph from a virtual absorbing node
    (index ``n_states``), so the cost is linear in states plus edges.
    """
    src, dst = src[present], dst[present]
    to = np.where(dst == ABSORBING, n_states, dst)
    reverse = sp.csr_matrix(
        (np.ones(src.size), (to, src)), shape=(n_states + 1, n_states + 1)
    )
    reached = breadth_first_order(reverse, n_states, directed=True,
                                  return_predecessors=False)
    mask = np.ones(n_states + 1, dtype=bool)
    mask[reached] = False
    return np.flatnonzero(mask[:n_states])


@dataclass(frozen=True, eq=False)
class Graph:
    """An immutable phase-type graph with rates linear in the parameters.

    Parameters
    ----------
    alpha : array_like, shape (n,)
        Start distribution over the transient states; ``1 - alpha.sum()`` is
        the defect, an atom at time 0.
    edge_src, edge_dst : array_like of int, shape (E,)
        Edge endpoints; ``edge_dst == -1`` means absorption. At most one edge
        per ``(src, dst)`` pair (so all exits of a state are one edge) and no
        self-loops. Use :meth:`from_edges` to merge duplicates.
    edge_base : array_like, shape (E,)
        Constant part of each rate, ``>= 0``.
    edge_coef : array_like, shape (E, d), optional
        Per-parameter coefficients (may be negative; a negative *rate* at a
        given theta is a domain error). ``None`` means ``d = 0``.
    discrete : bool
        If true, edge values are one-step probabilities and the probability of
        staying in state ``i`` is ``1 - sum`` of its out-probabilities.
    states : sequence of tuple of int, optional
        Labels of the transient states, in index order.
    param_names : sequence of str, optional
        Names of the ``d`` parameters; default ``theta0, ..., theta{d-1}``.

    Notes
    -----
    Construction checks that every transient state has a path to absorption
    along edges that are not identically zero. The arrays are read-only and
    the object hashes by identity, so it can key caches of compiled graphs.
    """

    alpha: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_base: np.ndarray
    edge_coef: np.ndarray | None = None
    discrete: bool = False
    states: tuple[State, ...] | None = None
    param_names: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ setup
    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        alpha = np.array(self.alpha, dtype=np.float64).reshape(-1)
        n = alpha.size
        if n == 0:
            raise ValueError("a graph needs at least one transient state")
        if not np.all(np.isfinite(alpha)) or np.any(alpha < 0):
            raise ValueError(f"alpha must be finite and non-negative, got {alpha}")
        if alpha.sum() > 1 + MASS_TOL:
            raise ValueError(f"start probabilities sum to {alpha.sum():.17g} > 1")
        src = np.array(self.edge_src, dtype=np.int64).reshape(-1)
        dst = np.array(self.edge_dst, dtype=np.int64).reshape(-1)
        base = np.array(self.edge_base, dtype=np.float64).reshape(-1)
        n_edges = src.size
        if self.edge_coef is None:
            coef = np.zeros((n_edges, 0))
        else:
            coef = np.array(self.edge_coef, dtype=np.float64)
            if coef.ndim != 2:
                raise ValueError(f"edge_coef must have shape (E, d), got {coef.shape}")
        if not (dst.size == base.size == coef.shape[0] == n_edges):
            raise ValueError(
                f"edge arrays disagree in length: src {n_edges}, dst {dst.size}, "
                f"base {base.size}, coef {coef.shape[0]}")
        put("states", self._checked_states(self.states, n))
        bad = np.flatnonzero((src < 0) | (src >= n) | (dst < ABSORBING) | (dst >= n))
        if bad.size:
            e = bad[0]
            raise ValueError(f"edge {e} ({src[e]} -> {dst[e]}) has an index outside "
                             f"0..{n - 1} (or -1 for absorption)")
        loops = np.flatnonzero(src == dst)
        if loops.size:
            raise ValueError(f"self-loop on {self.label(src[loops[0]])}: self-loops "
                             "are not allowed (discrete graphs stay with probability "
                             "1 - sum of out-probabilities)")
        key = src * (n + 1) + (dst + 1)
        uniq, counts = np.unique(key, return_counts=True)
        if np.any(counts > 1):
            k = uniq[counts > 1][0]
            s, d = divmod(int(k), n + 1)
            raise ValueError(f"duplicate edge {self.label(s)} -> {self._dst_label(d - 1)}"
                             " (use Graph.from_edges to merge duplicates)")
        if not np.all(np.isfinite(base)) or not np.all(np.isfinite(coef)):
            raise ValueError("edge_base and edge_coef must be finite")
        negative = np.flatnonzero(base < 0)
        if negative.size:
            e = negative[0]
            raise ValueError(f"edge {self.label(src[e])} -> {self._dst_label(dst[e])} "
                             f"has negative base rate {base[e]}")
        d = coef.shape[1]
        names = (tuple(f"theta{k}" for k in range(d)) if self.param_names is None
                 else tuple(self.param_names))
        if len(names) != d or not all(isinstance(s, str) for s in names):
            raise ValueError(f"param_names must be {d} strings, got {names!r}")
        if len(set(names)) != d:
            raise ValueError(f"param_names must be distinct, got {names!r}")
        put("alpha", _freeze(alpha))
        put("edge_src", _freeze(src.astype(np.int32)))
        put("edge_dst", _freeze(dst.astype(np.int32)))
        put("edge_base", _freeze(base))
        put("edge_coef", _freeze(coef))
        put("discrete", bool(self.discrete))
        put("param_names", names)
        present = (base != 0) | np.any(coef != 0, axis=1)
        stuck = unabsorbable_states(n, src, dst, present)
        if stuck.size:
            raise ValueError(f"{self.label(stuck[0])} cannot reach an absorbing state "
                             f"({stuck.size} such states)")

    @staticmethod
    def _checked_states(states: Any, n: int) -> tuple[State, ...] | None:
        if states is None:
            return None
        labels = tuple(as_state(s) for s in states)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} state labels for {n} transient states")
        if len(set(labels)) != n:
            raise ValueError("state labels must be distinct")
        return labels

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        # Unpickled arrays come back writeable; restore immutability.
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                value = _freeze(value.copy())
            object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        kind = "discrete" if self.discrete else "continuous"
        return (f"Graph({kind}, n_states={self.n_states}, n_edges={self.n_edges}, "
                f"param_names={self.param_names})")

    # ------------------------------------------------------------- properties
    @property
    def n_states(self) -> int:
        """Number of transient states."""
        return self.alpha.size

    @property
    def n_params(self) -> int:
        """Number of parameters ``d``."""
        return self.edge_coef.shape[1]

    @property
    def n_edges(self) -> int:
        """Number of edges, exits included."""
        return self.edge_src.size

    @property
    def defect(self) -> float:
        """Probability mass at time 0, ``1 - sum(alpha)``.

        Below ``MASS_TOL`` (1e-12) it is round-off of a normalised ``alpha``
        and counts as 0, as in libphase: then there is no atom and an exact
        0 is scored by the density ``alpha . s``.
        """
        mass = 1.0 - float(self.alpha.sum())
        return mass if mass > MASS_TOL else 0.0

    def label(self, index: int) -> str:
        """Human-readable name of transient state ``index`` for messages."""
        if self.states is None:
            return f"state {int(index)}"
        return f"state {self.states[int(index)]}"

    def _dst_label(self, index: int) -> str:
        return "absorption" if index == ABSORBING else self.label(index)

    # ----------------------------------------------------------- constructors
    @classmethod
    def from_edges(cls, alpha: Any, src: Any, dst: Any, base: Any, coef: Any = None,
                   **kwargs: Any) -> Graph:
        """Build a graph from edge lists, merging duplicates and dropping zeros.

        Duplicate ``(src, dst)`` pairs are merged by adding base and
        coefficients; the merged edge keeps the position of the first
        occurrence. Edges whose base and coefficients are all zero are
        dropped. Other keyword arguments go to :class:`Graph`.
        """
        alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
        src = np.asarray(src, dtype=np.int64).reshape(-1)
        dst = np.asarray(dst, dtype=np.int64).reshape(-1)
        base = np.asarray(base, dtype=np.float64).reshape(-1)
        coef = np.zeros((src.size, 0)) if coef is None else np.asarray(coef, np.float64)
        if coef.ndim != 2:
            coef = coef.reshape(src.size, -1)
        key = src * (alpha.size + 1) + (dst + 1)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        merged = np.zeros((first.size, 1 + coef.shape[1]))
        np.add.at(merged, inverse.reshape(-1), np.column_stack([base, coef]))
        order = np.argsort(first, kind="stable")
        keep = order[np.any(merged[order] != 0, axis=1)]
        return cls(alpha, src[first[keep]], dst[first[keep]], merged[keep, 0],
                   merged[keep, 1:], **kwargs)

    # ------------------------------------------------------------- as data
    def to_arrays(self) -> dict[str, Any]:
        """The graph as plain data: what a run file stores to rebuild it.

        Returns
        -------
        dict
            ``alpha`` (n,), ``edge_src`` and ``edge_dst`` (E,) int32,
            ``edge_base`` (E,), ``edge_coef`` (E, d), ``discrete`` (bool) and
            ``param_names`` (tuple of str). State labels are not included.
            :meth:`from_arrays` inverts it exactly.
        """
        return {"alpha": self.alpha.copy(), "edge_src": self.edge_src.copy(),
                "edge_dst": self.edge_dst.copy(), "edge_base": self.edge_base.copy(),
                "edge_coef": self.edge_coef.copy(), "discrete": bool(self.discrete),
                "param_names": tuple(self.param_names)}

    @classmethod
    def from_arrays(cls, arrays: Any) -> Graph:
        """Rebuild a graph from :meth:`to_arrays` data (a mapping), e.g. read from a file.

        Only numbers and strings are read and every check of the constructor
        applies, so untrusted data can at worst raise a ValueError: nothing is
        imported or called.
        """
        missing = [k for k in ("alpha", "edge_src", "edge_dst", "edge_base", "edge_coef")
                   if k not in arrays]
        if missing:
            raise ValueError(f"graph arrays: missing {missing}")
        discrete = arrays.get("discrete", False)
        if not isinstance(discrete, (bool, np.bool_, int, np.integer)) or discrete not in (0, 1):
            raise ValueError(f"graph arrays: discrete must be a boolean, got {discrete!r}")
        names = arrays.get("param_names")
        if names is not None and (isinstance(names, str)
                                  or not all(isinstance(n, str) for n in names)):
            raise ValueError(f"graph arrays: param_names must be strings, got {names!r}")
        return cls(*(np.asarray(arrays[k]) for k in ("alpha", "edge_src", "edge_dst",
                                                     "edge_base", "edge_coef")),
                   discrete=bool(discrete),
                   param_names=None if names is None else tuple(names))

    from_callback = classmethod(construct.from_callback)
    from_matrices = classmethod(construct.from_matrices)

    # -------------------------------------------------------- values at theta
    def _theta(self, theta: Any) -> np.ndarray:
        if theta is None:
            if self.n_params:
                raise ValueError(f"theta is required: the graph has parameters "
                                 f"{self.param_names}")
            return np.zeros(0)
        values = np.asarray(theta, dtype=np.float64).reshape(-1)
        if values.size != self.n_params:
            raise ValueError(f"theta has {values.size} values but the graph has "
                             f"{self.n_params} parameters {self.param_names}")
        if not np.all(np.isfinite(values)):
            raise ValueError(f"theta must be finite, got {values}")
        return values

    def rates(self, theta: Any = None) -> np.ndarray:
        """Edge rates (discrete: probabilities) ``base + coef @ theta``, shape (E,)."""
        return self.edge_base + self.edge_coef @ self._theta(theta)

    def checked_rates(self, theta: Any = None) -> np.ndarray:
        """Edge rates at ``theta``, with a ValueError if theta is outside the domain.

        The domain requires every rate ``>= 0`` and, for discrete graphs,
        out-probabilities that sum to at most 1 in every state.
        """
        rates = self.rates(theta)
        negative = np.flatnonzero(rates < 0)
        if negative.size:
            e = negative[0]
            raise ValueError(
                f"edge {self.label(self.edge_src[e])} -> "
                f"{self._dst_label(self.edge_dst[e])} has negative rate "
                f"{rates[e]:.6g} at theta={self._theta(theta).tolist()}")
        if self.discrete:
            total = np.bincount(self.edge_src, rates, minlength=self.n_states)
            over = np.flatnonzero(total > 1 + 1e-12)
            if over.size:
                raise ValueError(
                    f"out-probabilities of {self.label(over[0])} sum to "
                    f"{total[over[0]]:.6g} > 1 at theta={self._theta(theta).tolist()}")
        return rates

    def box_violation(self, low: Any, high: Any) -> tuple[int, str] | None:
        """Whether a box of parameter values leaves the graph's domain (see
        :func:`phasic_mpi.model.domain.box_violation`): None, or ``(k, message)``."""
        from phasic_mpi.model.domain import box_violation

        return box_violation(self, low, high)

    def to_sparse(self, theta: Any = None) -> tuple[sp.csr_matrix, np.ndarray]:
        """Sparse sub-intensity matrix and exit vector at ``theta``.

        Returns
        -------
        S : scipy.sparse.csr_matrix, shape (n, n)
            Continuous: off-diagonal rates, diagonal minus the total out-rate.
            Discrete: the sub-stochastic ``T``, diagonal ``1 -`` total
            out-probability.
        s : ndarray, shape (n,)
            Exit rates (discrete: exit probabilities).
        """
        rates = self.checked_rates(theta)
        n = self.n_states
        inner = self.edge_dst != ABSORBING
        total = np.bincount(self.edge_src, rates, minlength=n)
        diagonal = 1.0 - total if self.discrete else -total
        rows = np.concatenate([self.edge_src[inner], np.arange(n)])
        cols = np.concatenate([self.edge_dst[inner], np.arange(n)])
        vals = np.concatenate([rates[inner], diagonal])
        S = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        exits = np.bincount(self.edge_src[~inner], rates[~inner], minlength=n)
        return S, exits

    def to_matrices(self, theta: Any = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Dense ``(alpha, S, s)`` at ``theta`` (discrete: ``(alpha, T, t)``)."""
        S, exits = self.to_sparse(theta)
        return self.alpha.copy(), S.toarray(), exits

    def unabsorbable_at(self, rates: np.ndarray) -> np.ndarray:
        """Indices of states that cannot reach absorption along positive rates."""
        return unabsorbable_states(self.n_states, self.edge_src, self.edge_dst,
                                   rates > 0)

    def reachable(self, present: np.ndarray) -> np.ndarray:
        """Sorted indices of the states reachable from the start along ``present`` edges.

        The start states are those with ``alpha > 0``; a breadth-first search
        from a virtual source (index ``n_states``) linked to them.
        """
        n = self.n_states
        inner = present & (self.edge_dst != ABSORBING)
        starts = np.flatnonzero(self.alpha > 0)
        rows = np.concatenate([self.edge_src[inner], np.full(starts.size, n)])
        cols = np.concatenate([self.edge_dst[inner], starts])
        adjacency = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n + 1, n + 1))
        reached = breadth_first_order(adjacency, n, directed=True,
                                      return_predecessors=False)
        return np.sort(reached[reached < n])

    def stuck_reachable_at(self, rates: np.ndarray) -> np.ndarray:
        """States reachable from the start along positive rates that cannot be absorbed.

        Only these make the absorption time infinite with positive probability;
        a stuck state that the process cannot enter at these rates is harmless.
        """
        stuck = self.unabsorbable_at(rates)
        return stuck[np.isin(stuck, self.reachable(rates > 0))]

    # ------------------------------------------- densities (libphase, lazily)
    def _evaluate(self, points: Any, theta: Any, quantity: str) -> np.ndarray:
        from phasic_mpi.model import native as _core  # the compiled extension is optional here

        if theta is None:
            theta = self._theta(None)
        return _core.evaluate(self, theta, points, quantity)

    def _require(self, discrete: bool, method: str, other: str) -> None:
        if self.discrete != discrete:
            kind = "discrete" if self.discrete else "continuous"
            raise ValueError(f"{method}() is not defined for a {kind} graph; "
                             f"use {other}()")

    def pdf(self, times: Any, theta: Any = None) -> np.ndarray:
        """Density at ``times``; theta (d,) gives (m,), theta (P, d) gives (P, m).

        With a defect, ``pdf(0)`` is the atom's mass ``1 - sum(alpha)`` (the
        density with respect to Lebesgue measure plus a unit mass at 0, the
        measure the likelihood uses); without one it is ``alpha . s``.
        """
        self._require(False, "pdf", "pmf")
        return self._evaluate(times, theta, "pdf")

    def logpdf(self, times: Any, theta: Any = None) -> np.ndarray:
        """Log-density at ``times`` (underflow-safe); shapes as :meth:`pdf`."""
        self._require(False, "logpdf", "logpmf")
        return self._evaluate(times, theta, "logpdf")

    def pmf(self, k: Any, theta: Any = None) -> np.ndarray:
        """Probability mass at the integers ``k`` (discrete graphs)."""
        self._require(True, "pmf", "pdf")
        return self._evaluate(k, theta, "pdf")

    def logpmf(self, k: Any, theta: Any = None) -> np.ndarray:
        """Log probability mass at the integers ``k`` (discrete graphs)."""
        self._require(True, "logpmf", "logpdf")
        return self._evaluate(k, theta, "logpdf")

    def cdf(self, times: Any, theta: Any = None) -> np.ndarray:
        """``P(T <= t)``; shapes as :meth:`pdf`."""
        return self._evaluate(times, theta, "cdf")

    def survival(self, times: Any, theta: Any = None) -> np.ndarray:
        """``P(T > t)``, accurate where the CDF rounds to 1."""
        return self._evaluate(times, theta, "survival")

    def logsurvival(self, times: Any, theta: Any = None) -> np.ndarray:
        """``log P(T > t)``."""
        return self._evaluate(times, theta, "logsurvival")

    def loglik(self, data: Any, thetas: Any, *, tol: float | None = None) -> np.ndarray:
        """Log-likelihood of ``data`` at each θ, shape ``(P,)``.

        Parameters
        ----------
        data : array_like or Observations
            Exact absorption times (1-D array), or :class:`phasic_mpi.Observations`
            with weights and right- or interval-censored observations.
        thetas : array_like, shape (P, d) or (d,)
            Parameter vectors; a single 1-D θ gives ``P = 1``.
        tol : float, optional
            Relative truncation tolerance of the uniformization (default 1e-12).

        Returns
        -------
        ndarray, shape (P,)
            ``-inf`` where a rate is negative or an observation is impossible.
        """
        from phasic_mpi.model import native as _core

        return _core.loglik(self, data, thetas, grad=False, tol=tol)[0]

    def loglik_and_grad(
        self, data: Any, thetas: Any, *, tol: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Log-likelihood ``(P,)`` and its exact gradient ``(P, d)`` at each θ.

        The gradient comes from a reverse (adjoint) sweep of the uniformization
        recursion: its cost is a small multiple of the value's whatever ``d``.
        Rows where the log-likelihood is ``-inf`` have a zero gradient.
        """
        from phasic_mpi.model import native as _core

        value, grad, _ = _core.loglik(self, data, thetas, grad=True, tol=tol)
        return value, grad

    # ------------------------------------------ moments, rewards, simulation
    def expectation(self, theta: Any = None, rewards: Any = None) -> Any:
        """``E[Y]`` with ``Y = T`` or the accumulated reward; see :mod:`phasic_mpi.model.moments`."""
        from phasic_mpi.model import moments

        return moments.expectation(self, theta, rewards)

    def variance(self, theta: Any = None, rewards: Any = None) -> Any:
        """``Var[Y]``; see :func:`phasic_mpi.model.moments.variance`."""
        from phasic_mpi.model import moments

        return moments.variance(self, theta, rewards)

    def moments(self, theta: Any = None, k: int = 2, rewards: Any = None) -> np.ndarray:
        """Raw moments ``E[Y], ..., E[Y^k]``; see :func:`phasic_mpi.model.moments.moments`."""
        from phasic_mpi.model import moments

        return moments.moments(self, theta, k, rewards)

    def covariance(self, theta: Any, r1: Any, r2: Any) -> float:
        """Covariance of two accumulated rewards; see :func:`phasic_mpi.model.moments.covariance`."""
        from phasic_mpi.model import moments

        return moments.covariance(self, theta, r1, r2)

    def expectation_grad(self, theta: Any = None, rewards: Any = None) -> np.ndarray:
        """``dE[Y]/dtheta``; see :func:`phasic_mpi.model.moments.expectation_grad`."""
        from phasic_mpi.model import moments

        return moments.expectation_grad(self, theta, rewards)

    def expectation_and_grad(self, thetas: Any = None,
                             rewards: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``E[Y]`` and its gradient at many theta; see :func:`phasic_mpi.model.moments.expectation_and_grad`."""
        from phasic_mpi.model import moments

        return moments.expectation_and_grad(self, thetas, rewards)

    def variance_and_grad(self, thetas: Any = None,
                          rewards: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """``Var[Y]`` and its gradient at many theta; see :func:`phasic_mpi.model.moments.variance_and_grad`."""
        from phasic_mpi.model import moments

        return moments.variance_and_grad(self, thetas, rewards)

    def reward_transform(self, rewards: Any, theta: Any = None) -> Graph:
        """Graph of ``Y = int r(X_t) dt``; see :func:`phasic_mpi.model.rewards.reward_transform`."""
        from phasic_mpi.model import rewards as _rewards

        return _rewards.reward_transform(self, rewards, theta)

    def sample(self, n: int, theta: Any = None, seed: int | None = 0, *,
               rewards: Any = None, max_jumps: int = 1_000_000) -> np.ndarray:
        """Exact samples of the absorption time; see :func:`phasic_mpi.model.simulate.sample`."""
        from phasic_mpi.model import simulate

        return simulate.sample(self, n, theta, seed, rewards=rewards, max_jumps=max_jumps)
