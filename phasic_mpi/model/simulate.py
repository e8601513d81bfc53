"""Exact simulation of absorption times and accumulated rewards.

All walkers step together (vectorised with numpy): each step draws a holding
time in the current state (exponential with the total out-rate, or for
discrete graphs geometric with the total out-probability) and then the next
edge with one uniform per walker. Edge choice uses one global array of keys
``state + cumulative jump probability within the state's row`` over the
out-edges sorted by source, so ``np.searchsorted(keys, state + u)`` picks the
edge for every walker at once. Absorbed walkers drop out.

Randomness comes from ``np.random.Generator(np.random.Philox(seed))``, so a
seed reproduces the output exactly (for the same ``n``). :func:`censor`
turns simulated times into right-censored data (fixed or random censoring).
"""

from __future__ import annotations

import math
import operator
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from phasic_mpi.model.construct import ABSORBING
from phasic_mpi.model.data import Observations

# Graph (phasic_mpi.model.graph) imports this module, so annotations name it
# without importing it, not even for type checkers: the imports run one way.
Graph = Any


def sample(graph: Graph, n: int, theta: Any = None, seed: int | None = 0, *,
           rewards: Any = None, max_jumps: int = 1_000_000) -> np.ndarray:
    """Draw ``n`` independent absorption times (or accumulated rewards).

    Parameters
    ----------
    graph : Graph
    n : int
        Number of samples.
    theta : array_like, shape (d,), optional
        Parameters (omit for a constant graph).
    seed : int or None
        Seed of the Philox generator; ``None`` draws fresh entropy.
    rewards : array_like, shape (n_states,) or (n_states, R), optional
        If given, return ``Y = int r(X_t) dt`` (discrete:
        ``sum_{k < T} r(X_k)``) instead of the absorption time; a matrix
        accumulates its ``R`` columns along the same paths (e.g. the branch
        lengths ``L_i`` of one genealogy, :func:`phasic_mpi.model.models.sfs_rewards`).
    max_jumps : int
        Limit on the number of jumps of any walker.

    Returns
    -------
    ndarray, shape (n,), or (n, R) for a reward matrix
        float64; int64 for a discrete graph without rewards. Walkers that
        start in the defect get 0.

    Raises
    ------
    ValueError
        If theta is outside the domain, some state cannot reach absorption at
        theta, the mean number of jumps to absorption exceeds ``max_jumps``
        (checked before simulating: :func:`expected_jumps`), or a walker is
        still running after ``max_jumps`` jumps.
    """
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rates = graph.checked_rates(theta)
    stuck = graph.stuck_reachable_at(rates)
    if stuck.size:
        raise ValueError(f"{graph.label(stuck[0])} is reachable from the start but cannot "
                         "reach absorption at this theta; simulated walkers would never stop")
    mean_jumps = expected_jumps(graph, rates)
    if not mean_jumps <= max_jumps:  # NaN too: the jump chain is numerically singular
        raise ValueError(too_many_jumps(graph, rates, mean_jumps, max_jumps))
    reward = _reward_vector(graph, rewards)
    rng = np.random.Generator(np.random.Philox(seed))

    order = np.argsort(graph.edge_src, kind="stable")
    src, dst, w = graph.edge_src[order], graph.edge_dst[order], rates[order]
    states = np.arange(graph.n_states)
    total = np.bincount(src, w, minlength=graph.n_states)
    # A stuck state (total 0) is unreachable here; 1 keeps its keys finite.
    total = np.where(total > 0, total, 1.0)
    row_start = np.searchsorted(src, states, side="left")
    row_end = np.searchsorted(src, states, side="right")
    cumulative = np.cumsum(w / total[src])
    before_row = np.concatenate([[0.0], cumulative])[row_start]
    keys = src + (cumulative - before_row[src])
    keys[row_end - 1] = states + 1.0  # rows end exactly at the next integer

    # With no defect (graph.defect == 0) alpha may still sum to 1 -+ round-off:
    # scale u so that no walker starts in a defect the likelihood says is not there.
    cumulative_alpha = np.cumsum(graph.alpha)
    mass = float(cumulative_alpha[-1])
    u = rng.random(n) if graph.defect > 0 or mass == 1.0 else rng.random(n) * mass
    start = np.searchsorted(cumulative_alpha, u, side="right")
    result = np.zeros(n if reward is None or reward.ndim == 1 else (n, reward.shape[1]))
    walkers = np.flatnonzero(start < graph.n_states)  # the rest start in the defect
    current = start[walkers]
    jumps = 0
    while walkers.size:
        if jumps >= max_jumps:
            raise ValueError(f"{walkers.size} of {n} walkers were not absorbed after "
                             f"max_jumps={max_jumps} jumps")
        rate = total[current]
        if graph.discrete:
            hold = rng.geometric(rate).astype(np.float64)
        else:
            hold = rng.standard_exponential(walkers.size) / rate
        if reward is None:
            result[walkers] += hold
        elif reward.ndim == 1:
            result[walkers] += hold * reward[current]
        else:  # every column along the same path
            result[walkers] += hold[:, None] * reward[current]
        edge = np.searchsorted(keys, current + rng.random(walkers.size), side="right")
        edge = np.minimum(edge, row_end[current] - 1)  # guard round-off at row ends
        current = dst[edge]
        alive = current != ABSORBING
        walkers, current = walkers[alive], current[alive]
        jumps += 1
    if graph.discrete and reward is None:
        return result.astype(np.int64)
    return result


def expected_jumps(graph: Graph, rates: np.ndarray) -> float:
    """Mean number of jumps from the start to absorption at ``rates`` (inf if unbounded).

    The jump chain moves from state i along edge e with probability
    ``rates[e] / total_i``; the mean numbers of jumps x solve
    ``(I - P) x = 1`` over the transient states, and the walk from the start
    makes ``alpha · x`` on average. One sparse solve, so a simulation whose
    walkers would not stop (rates 1e300 between states left at rate 1) is
    refused at once rather than after ``max_jumps`` vectorised steps.
    """
    n = graph.n_states
    total = np.bincount(graph.edge_src, rates, minlength=n)
    total = np.where(total > 0, total, 1.0)  # a stuck state is unreachable here
    inner = graph.edge_dst != ABSORBING
    src, dst = graph.edge_src[inner], graph.edge_dst[inner]
    jump = sp.csr_matrix((rates[inner] / total[src], (src, dst)), shape=(n, n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular matrix gives NaN: reported as inf
        with np.errstate(all="ignore"):
            x = np.atleast_1d(spsolve((sp.identity(n, format="csc") - jump).tocsc(),
                                      np.ones(n)))
            mean = float(graph.alpha @ x)
    return mean if np.isfinite(mean) and mean >= 0 and np.all(np.isfinite(x)) else np.inf


def too_many_jumps(graph: Graph, rates: np.ndarray, mean: float, max_jumps: int) -> str:
    """The message for a simulation refused by :func:`expected_jumps`."""
    positive = rates[rates > 0]
    count = (f"{mean:.3g} jumps" if np.isfinite(mean) else
             "unboundedly many jumps (the jump chain is singular in double precision)")
    return (f"at this theta a walker makes {count} on average before absorption, "
            f"more than max_jumps={max_jumps} (rates range from {positive.min():.3g} to "
            f"{positive.max():.3g}); simulating would not end")


def _reward_vector(graph: Graph, rewards: Any) -> np.ndarray | None:
    if rewards is None:
        return None
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim not in (1, 2) or r.shape[0] != graph.n_states:
        raise ValueError(f"rewards must have shape ({graph.n_states},) or "
                         f"({graph.n_states}, R), got {np.shape(rewards)}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    return r


#: Random censoring schemes of :func:`censor`: name -> what its parameter is.
CENSORING = {"exponential": "rate", "uniform": "upper bound"}
_CENSOR_STREAM = 0x43454E53  # "CENS": censoring times never share draws with the walkers


def censor(times: Any, *, tau: float | None = None, random: tuple[str, float] | None = None,
           seed: int | None = 0, integer: bool = False) -> Observations:
    """Right-censor absorption times: what a study that stops watching would see.

    Each time ``T`` gets a censoring time ``C`` (``inf`` without a scheme):
    ``tau`` (a fixed end of observation), a random ``C`` drawn independently
    of ``T``, or the smaller of the two. ``T <= C`` is observed exactly;
    otherwise only ``T > C`` is known (right-censored at ``C``).

    Parameters
    ----------
    times : array_like
        Absorption times (e.g. from :func:`sample`).
    tau : float, optional
        Fixed censoring time (> 0).
    random : (str, float), optional
        ``("exponential", rate)``: ``C ~ Exponential(rate)``;
        ``("uniform", b)``: ``C ~ Uniform(0, b)``.
    seed : int or None
        Seed of the censoring times' Philox stream (separate from the one
        that simulated ``times``, so the times stay those of :func:`sample`).
    integer : bool
        Discrete times: ``C`` is rounded down (``T > C`` iff ``T > floor(C)``
        for integer ``T``).

    Returns
    -------
    Observations
        The exact times (in their order) and the right-censoring times.
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    c = np.full(t.shape, np.inf)
    if tau is not None:
        if not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be finite and > 0, got {tau}")
        c[:] = tau
    if random is not None:
        kind, value = random
        if kind not in CENSORING:
            raise ValueError(f"random censoring must be one of {', '.join(CENSORING)}, "
                             f"got {kind!r}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"the {CENSORING[kind]} of {kind} censoring must be finite "
                             f"and > 0, got {value}")
        entropy = None if seed is None else [operator.index(seed), _CENSOR_STREAM]
        rng = np.random.Generator(np.random.Philox(np.random.SeedSequence(entropy)))
        drawn = (rng.standard_exponential(t.size) / value if kind == "exponential"
                 else rng.random(t.size) * value)
        c = np.minimum(c, drawn)
    if integer:
        c = np.floor(c)
    seen = t <= c
    return Observations(t[seen], right_censored=c[~seen])
