"""Test models: random sparse cyclic parameterized graphs, the fixed-rate rabbits, a two-rate Kingman.

Import with ``from randgraph import random_graph`` (pytest puts ``tests/`` on
``sys.path`` because the directory has no ``__init__.py``).
"""

from __future__ import annotations

import numpy as np

from phasic_mpi.model.graph import ABSORBING, Graph


def random_graph(n: int, d: int, density: float, seed: int, discrete: bool = False,
                 *, coef_only: bool = False, defect: bool = True,
                 acyclic: bool = False) -> Graph:
    """A random graph with cycles, exits from several states and a defect.

    Parameters
    ----------
    n : int
        Number of transient states.
    d : int
        Number of parameters.
    density : float
        Probability of each extra edge ``i -> j`` (``i != j``) and of an extra
        exit from each state.
    seed : int
        Seed; the same arguments give the same graph.
    discrete : bool
        Build a discrete graph. Out-probabilities are scaled so that every
        state's total is at most 0.9 for every theta in ``[0, 1]^d``.
    coef_only : bool
        All base rates zero (every rate is ``coef @ theta``); with ``d = 1``
        all rates are then proportional to theta.
    defect : bool
        Give ``alpha`` a total mass below 1.
    acyclic : bool
        Keep only the edges that go forward along the random path: a DAG
        whose index order is (in general) not topological.

    Notes
    -----
    A random Hamiltonian path through the states ending in an exit
    guarantees that every state can reach absorption; the extra edges point
    in both directions, so the graph has cycles. Base and coefficients are
    ``>= 0`` with at least one positive entry per edge (a positive base if
    ``d = 0``), so continuous rates are positive for every theta > 0.
    """
    if coef_only and d == 0:
        raise ValueError("coef_only needs d >= 1")
    rng = np.random.default_rng(seed)
    path = rng.permutation(n)
    pairs = {(int(a), int(b)) for a, b in zip(path[:-1], path[1:])}
    pairs.add((int(path[-1]), ABSORBING))
    extra = rng.random((n, n)) < density
    np.fill_diagonal(extra, False)
    pairs |= {(int(i), int(j)) for i, j in zip(*np.nonzero(extra))}
    pairs |= {(int(i), ABSORBING) for i in np.flatnonzero(rng.random(n) < density)}
    if acyclic:
        rank = np.argsort(path)
        pairs = {(i, j) for i, j in pairs if j == ABSORBING or rank[i] < rank[j]}
    src, dst = np.array(sorted(pairs)).T

    n_edges = src.size
    base = np.where(rng.random(n_edges) < 0.5, rng.uniform(0.1, 1.0, n_edges), 0.0)
    coef = np.where(rng.random((n_edges, d)) < 0.5,
                    rng.uniform(0.1, 1.0, (n_edges, d)), 0.0)
    if coef_only:
        base[:] = 0.0
        empty = ~np.any(coef > 0, axis=1)
        coef[empty, rng.integers(0, d, empty.sum())] = rng.uniform(0.1, 1.0, empty.sum())
    else:
        empty = ~np.any(coef > 0, axis=1) & (base == 0)
        base[empty] = rng.uniform(0.1, 1.0, empty.sum())
    if discrete:
        # Total out-probability at theta = (1, ..., 1) becomes U(0.3, 0.9).
        at_ones = np.bincount(src, base + coef.sum(axis=1), minlength=n)
        scale = rng.uniform(0.3, 0.9, n) / at_ones
        base *= scale[src]
        coef *= scale[src][:, None]
    else:
        scale = rng.uniform(0.5, 3.0, n)  # vary the time scales of the states
        base *= scale[src]
        coef *= scale[src][:, None]

    alpha = np.where(rng.random(n) < 0.6, rng.random(n), 0.0)
    if not alpha.any():
        alpha[rng.integers(n)] = 1.0
    alpha *= (rng.uniform(0.6, 0.95) if defect else 1.0) / alpha.sum()
    return Graph(alpha, src, dst, base, coef, discrete=discrete)


def rabbits_fixed() -> Graph:
    """The oracles.md fixed-rate rabbits: n = 2, jump rate 1 per island, floods 2 and 4."""
    def transitions(state):
        left, right = state
        moves = []
        if left > 0:
            moves += [((left - 1, right + 1), 1.0), ((0, right), 2.0)]
        if right > 0:
            moves += [((left + 1, right - 1), 1.0), ((left, 0), 4.0)]
        return moves
    return Graph.from_callback(transitions, (2, 0), 0)


def two_rate_kingman(n: int) -> Graph:
    """Kingman(n) with rate θ₀ k(k-1)/2 for k > 2 and θ₁ for the last merger.

    A stiff model with two parameters, so that the gradient runs in reverse
    mode by default.
    """
    m = n - 1
    src = np.arange(m)
    dst = np.where(np.arange(m) == m - 1, ABSORBING, np.arange(m) + 1)
    coef = np.zeros((m, 2))
    for i in range(m):
        k = n - i
        coef[i, 0 if k > 2 else 1] = k * (k - 1) / 2
    alpha = np.zeros(m)
    alpha[0] = 1.0
    return Graph.from_edges(alpha, src, dst, np.zeros(m), coef)
