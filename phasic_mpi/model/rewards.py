"""Reward transformation: the graph whose absorption time is ``int r(X_t) dt``.

For a continuous phase-type graph and rewards ``r >= 0`` the accumulated
reward ``Y = int_0^T r(X_t) dt`` is again phase-type (Bladt & Nielsen,
*Matrix-Exponential Distributions in Applied Probability*, Thm 8.1.2). With
the states split into positive (+) and zero (0) rewards,

    S' = diag(1/r_+) (S_++ + S_+0 (-S_00)^{-1} S_0+),
    alpha' = alpha_+ + alpha_0 (-S_00)^{-1} S_0+ .

This module builds that graph edge by edge, so it stays sparse and, where
possible, linear in theta:

* A zero-reward state ``j`` is eliminated (Gaussian elimination on states):
  an in-edge ``i -> j`` (rate ``w_ij``) and an out-edge ``j -> k`` give an edge
  ``i -> k`` of rate ``w_ij w_jk / lambda_j`` (``lambda_j`` = total out-rate of
  ``j``). Start mass on ``j`` moves to ``k`` with probability
  ``w_jk / lambda_j``; the part that leaves ``j`` straight to absorption
  becomes defect (``Y = 0``).
* A resulting self-loop ``i -> i`` is dropped: the excursion takes no reward
  time, and by memorylessness the residual holding time in ``i`` afterwards
  has the same law, so those jumps are invisible in ``Y``. Dropping them also
  removes their rate from ``i``'s diagonal, exactly as in the matrix formula.
* A positive-reward state's out-rates are divided by ``r_i`` (base and
  coefficients alike, so this is always linear in theta).

``w_jk / lambda_j`` is independent of theta exactly when the out-edges of
``j`` (as vectors ``(base, coef...)``, after earlier eliminations) are all
proportional to one common vector -- e.g. every rate of the block-counting
coalescent is ``theta * const``. Then the result is a parameterized graph;
otherwise ``theta`` must be given and the result is a constant graph at that
theta (``n_params == 0``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phasic_mpi.model.construct import ABSORBING

# Graph (phasic_mpi.model.graph) imports this module, so annotations name it
# without importing it, not even for type checkers: the imports run one way.
Graph = Any

_PROPORTIONAL_TOL = 1e-10


class _NotProportional(Exception):
    def __init__(self, state: int) -> None:
        super().__init__(state)
        self.state = state


def reward_transform(graph: Graph, rewards: Any, theta: Any = None) -> Graph:
    """Graph whose absorption-time distribution is that of ``int r(X_t) dt``.

    Parameters
    ----------
    graph : Graph
        A continuous graph.
    rewards : array_like, shape (n_states,)
        Non-negative reward rates of the transient states.
    theta : array_like, shape (d,), optional
        Only used (and then required) when eliminating a zero-reward state
        would make the rates non-linear in theta; the result is then the
        constant graph at ``theta``.

    Returns
    -------
    Graph
        Transient states: the positive-reward states, in their original order
        and with their labels; same ``param_names`` unless the result is
        constant. Mass of paths that are absorbed before earning any reward
        is in the defect.

    Raises
    ------
    ValueError
        Bad rewards, all rewards zero, or theta needed but missing.
    NotImplementedError
        For discrete graphs.
    """
    if graph.discrete:
        raise NotImplementedError("reward_transform() is implemented for continuous "
                                  "graphs only")
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (graph.n_states,):
        raise ValueError(f"rewards must have shape ({graph.n_states},), "
                         f"got {np.shape(rewards)}")
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        bad = int(np.flatnonzero(~np.isfinite(r) | (r < 0))[0])
        raise ValueError(f"rewards must be finite and >= 0; {graph.label(bad)} has "
                         f"reward {r[bad]}")
    if not np.any(r > 0):
        raise ValueError("all rewards are zero: the accumulated reward is 0 with "
                         "probability 1, which has no transient states")
    try:
        return _transform(graph, r)
    except _NotProportional as exc:
        if theta is None:
            raise ValueError(
                f"eliminating zero-reward {graph.label(exc.state)} would make the "
                "rates non-linear in theta (its outgoing (base, coef) vectors are "
                "not proportional to one common vector); pass theta to get the "
                "constant graph at that theta") from None
    # type(graph): the Graph class without importing it (graph.py imports this module)
    constant = type(graph).from_edges(graph.alpha, graph.edge_src, graph.edge_dst,
                                graph.checked_rates(theta), None, states=graph.states)
    try:
        return _transform(constant, r)
    except _NotProportional as exc:  # only if the state has no out-rate at theta
        raise ValueError(f"zero-reward {graph.label(exc.state)} cannot be left at "
                         f"theta={list(np.ravel(theta))}") from None


def _transform(graph: Graph, r: np.ndarray) -> Graph:
    n = graph.n_states
    vectors = np.column_stack([graph.edge_base, graph.edge_coef])  # (E, 1 + d)
    out: list[dict[int, np.ndarray]] = [{} for _ in range(n)]
    into: list[set[int]] = [set() for _ in range(n)]
    for e, (i, k) in enumerate(zip(graph.edge_src.tolist(), graph.edge_dst.tolist())):
        out[i][k] = vectors[e]
        if k != ABSORBING:
            into[k].add(i)
    alpha = graph.alpha.copy()

    for j in np.flatnonzero(r == 0).tolist():
        probs = _exit_probabilities(out[j], j)
        if alpha[j]:
            for k, p in probs.items():
                if k != ABSORBING:
                    alpha[k] += alpha[j] * p
            alpha[j] = 0.0
        for i in sorted(into[j]):
            w = out[i].pop(j)
            for k, p in probs.items():
                if k == i:
                    continue  # self-loop through zero-reward states: invisible
                if k in out[i]:
                    out[i][k] = out[i][k] + w * p
                else:
                    out[i][k] = w * p
                    if k != ABSORBING:
                        into[k].add(i)
        for k in out[j]:
            if k != ABSORBING:
                into[k].discard(j)
        out[j], into[j] = {}, set()

    keep = np.flatnonzero(r > 0)
    new_index = np.full(n, ABSORBING, dtype=np.int64)
    new_index[keep] = np.arange(keep.size)
    src, dst, rows = [], [], []
    for i in keep.tolist():
        for k, vec in out[i].items():
            src.append(new_index[i])
            dst.append(ABSORBING if k == ABSORBING else new_index[k])
            rows.append(vec / r[i])
    rows_array = np.array(rows).reshape(len(rows), vectors.shape[1])
    states = None if graph.states is None else [graph.states[i] for i in keep]
    return type(graph).from_edges(
        alpha[keep], src, dst, rows_array[:, 0], rows_array[:, 1:],
        states=states, param_names=graph.param_names)


def _exit_probabilities(edges: dict[int, np.ndarray], state: int) -> dict[int, float]:
    """Jump probabilities ``w_jk / lambda_j``, if independent of theta."""
    keys = list(edges)
    if not keys:
        raise _NotProportional(state)
    vecs = np.array([edges[k] for k in keys])
    total = vecs.sum(axis=0)
    norm2 = float(total @ total)
    if norm2 == 0.0:
        raise _NotProportional(state)
    share = vecs @ total / norm2
    residual = np.abs(vecs - share[:, None] * total).max()
    if np.any(share < 0) or residual > _PROPORTIONAL_TOL * np.abs(vecs).max():
        raise _NotProportional(state)
    return dict(zip(keys, share.tolist()))
