"""Built-in models, each a function returning a :class:`~phasic_mpi.model.graph.Graph`.

:data:`MODELS` maps a model name to ``(factory, short description)``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from phasic_mpi.model.graph import Graph, State


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def exponential() -> Graph:
    """Exponential distribution.

    One transient state ``(1,)``, start there, exit at rate ``rate``.
    Parameters: ``[rate]``. 1 transient state.
    """
    return Graph.from_callback(lambda s: [((0,), 1.0)] if s == (1,) else [],
                               (1,), 1, param_names=["rate"])


def erlang(k: int) -> Graph:
    """Erlang distribution with ``k`` phases.

    States ``(j,)`` = phases left, ``j = k, ..., 1``; start ``(k,)``;
    ``(j,) -> (j-1,)`` at rate ``rate``, absorbing at ``(0,)``.
    Parameters: ``[rate]``. ``k`` transient states.
    """
    k = _positive_int(k, "k")
    return Graph.from_callback(lambda s: [((s[0] - 1,), 1.0)] if s[0] > 0 else [],
                               (k,), 1, param_names=["rate"])


def kingman(n: int) -> Graph:
    """Kingman coalescent, time to the most recent common ancestor of ``n`` samples.

    States ``(k,)`` = number of lineages, start ``(n,)``;
    ``(k,) -> (k-1,)`` at rate ``coal_rate * k (k-1) / 2``; absorbing at
    ``(1,)``. Parameters: ``[coal_rate]`` (pairwise coalescence rate).
    ``n - 1`` transient states. ``E[T] = 2 (1 - 1/n) / coal_rate``.
    """
    n = _positive_int(n, "n", 2)
    return Graph.from_callback(
        lambda s: [((s[0] - 1,), s[0] * (s[0] - 1) / 2)] if s[0] > 1 else [],
        (n,), 1, param_names=["coal_rate"])


def block_counting(n: int) -> Graph:
    """Block-counting coalescent (for the site frequency spectrum) of ``n`` samples.

    States ``(c_1, ..., c_{n-1})``: ``c_i`` lineages subtend ``i`` samples;
    start ``c_1 = n``. Two lineages of classes ``i <= j`` merge into one of
    class ``i + j`` at rate ``coal_rate * c_i (c_i - 1) / 2`` (``i == j``) or
    ``coal_rate * c_i c_j``; absorbing when one lineage of class ``n`` is left
    (the all-zero tuple). Parameters: ``[coal_rate]``. ``p(n) - 1`` transient
    states (p = number of integer partitions): 4 for n = 4, 41 for n = 10.
    Use :func:`sfs_rewards` for the branch lengths ``L_i`` (``E[L_i] = 2 /
    (i coal_rate)``).
    """
    n = _positive_int(n, "n", 2)

    def transitions(state: State) -> list[tuple[State, float]]:
        moves = []
        classes = [i for i, c in enumerate(state, start=1) if c > 0]
        for a, i in enumerate(classes):
            for j in classes[a:]:
                ci, cj = state[i - 1], state[j - 1]
                pairs = ci * (ci - 1) / 2 if i == j else ci * cj
                if pairs == 0:
                    continue
                child = list(state)
                child[i - 1] -= 1
                child[j - 1] -= 1
                if i + j < n:
                    child[i + j - 1] += 1  # i + j == n: absorbing all-zero state
                moves.append((tuple(child), pairs))
        return moves

    start = tuple([n] + [0] * (n - 2))
    return Graph.from_callback(transitions, start, 1, param_names=["coal_rate"])


def sfs_rewards(graph: Graph) -> np.ndarray:
    """Reward matrix of a block-counting graph, shape ``(n_states, n-1)``.

    Column ``i - 1`` holds the number of lineages subtending ``i`` samples,
    so its accumulated reward is the total length ``L_i`` of those branches.
    Works for :func:`block_counting` (states ``c_1..c_{n-1}``) and
    :func:`structured_block_counting` (states ``c_{1,1..n-1}, c_{2,1..n-1}``,
    pooled over the two demes: the SFS of the whole sample).
    """
    if graph.states is None:
        raise ValueError("sfs_rewards() needs a graph with state labels "
                         "(from block_counting() or structured_block_counting())")
    counts = np.array(graph.states, dtype=np.float64)
    width = counts.shape[1]
    for blocks in (counts, _pooled(counts) if width % 2 == 0 else None):
        if blocks is not None and np.all(blocks @ np.arange(1, blocks.shape[1] + 1)
                                         == blocks.shape[1] + 1):
            return blocks
    raise ValueError("the graph's states are not block counts (c_1..c_{n-1}) with "
                     "sum_i i c_i = n, nor two demes' block counts")


def _pooled(counts: np.ndarray) -> np.ndarray:
    half = counts.shape[1] // 2
    return counts[:, :half] + counts[:, half:]


def structured_block_counting(n1: int, n2: int) -> Graph:
    """Block-counting coalescent of two demes with migration (pooled SFS).

    States ``(c_{1,1}, ..., c_{1,n-1}, c_{2,1}, ..., c_{2,n-1})`` with
    ``n = n1 + n2``: ``c_{d,i}`` lineages in deme ``d`` subtend ``i`` samples;
    start ``c_{1,1} = n1``, ``c_{2,1} = n2``. Within deme ``d`` two lineages
    of classes ``i <= j`` merge at ``coal_d`` per pair (as in
    :func:`block_counting`); a lineage of class ``i`` migrates ``1 -> 2`` at
    ``mig_12`` and ``2 -> 1`` at ``mig_21`` (per lineage, as in
    :func:`isolation_migration`, of which this is a refinement: lumping
    states by lineage counts per deme gives that model). Absorbing when one
    lineage (of class ``n``) is left. Parameters
    ``[coal_1, coal_2, mig_12, mig_21]``. :func:`sfs_rewards` gives the pooled
    branch lengths ``L_i``. Transient states: 18 for 2 + 2 samples, 183 for
    4 + 4, 1 163 for 6 + 6, 5 820 for 8 + 8 (roughly the square of the
    number of partitions of ``n``), so keep ``n`` below ~20.
    """
    n1 = _positive_int(n1, "n1", 0)
    n2 = _positive_int(n2, "n2", 0)
    n = n1 + n2
    if n < 2:
        raise ValueError(f"need at least 2 samples, got n1={n1}, n2={n2}")
    width = n - 1

    def transitions(state: State) -> list[tuple[State, list[float]]]:
        if sum(state) <= 1:
            return []
        moves: list[tuple[State, list[float]]] = []
        for deme in (0, 1):
            offset = deme * width
            _merges(state, offset, n, deme, moves)
            for i in range(width):
                if state[offset + i]:
                    child = list(state)
                    child[offset + i] -= 1
                    child[(1 - deme) * width + i] += 1
                    coef = [0.0, 0.0, 0.0, 0.0]
                    coef[2 + deme] = state[offset + i]
                    moves.append((tuple(child), coef))
        return moves

    start = [0] * (2 * width)
    start[0], start[width] = n1, n2
    return Graph.from_callback(transitions, tuple(start), 4,
                               param_names=["coal_1", "coal_2", "mig_12", "mig_21"])


def _merges(state: State, offset: int, n: int, deme: int,
            moves: list[tuple[State, list[float]]]) -> None:
    """Coalescences inside one deme (block counts at ``state[offset:offset+n-1]``)."""
    classes = [i for i in range(1, n) if state[offset + i - 1] > 0]
    for a, i in enumerate(classes):
        for j in classes[a:]:
            ci, cj = state[offset + i - 1], state[offset + j - 1]
            pairs = ci * (ci - 1) / 2 if i == j else ci * cj
            if pairs == 0:
                continue
            child = list(state)
            child[offset + i - 1] -= 1
            child[offset + j - 1] -= 1
            if i + j < n:
                child[offset + i + j - 1] += 1
            coef = [0.0, 0.0, 0.0, 0.0]
            coef[deme] = pairs
            moves.append((tuple(child), coef))


def rabbits(n: int) -> Graph:
    """Rabbits on two islands (a cyclic model).

    States ``(l, r)`` = rabbits on the left and right island, start ``(n, 0)``,
    absorbing ``(0, 0)``. If ``l > 0``: one rabbit jumps right,
    ``(l-1, r+1)`` at rate ``jump * l``, and the left island floods,
    ``(0, r)`` at rate ``flood_left``; if ``r > 0``: ``(l+1, r-1)`` at
    ``jump * r`` and ``(l, 0)`` at ``flood_right``. Parameters:
    ``[jump, flood_left, flood_right]`` (per-rabbit jump rate, flood rates).
    All ``(n+1)(n+2)/2`` states with ``l + r <= n`` are reached; minus the
    absorbing one, ``(n+1)(n+2)/2 - 1`` transient states.
    """
    n = _positive_int(n, "n")

    def transitions(state: State) -> list[tuple[State, list[float]]]:
        left, right = state
        moves = []
        if left > 0:
            moves.append(((left - 1, right + 1), [left, 0, 0]))
            moves.append(((0, right), [0, 1, 0]))
        if right > 0:
            moves.append(((left + 1, right - 1), [right, 0, 0]))
            moves.append(((left, 0), [0, 0, 1]))
        return moves

    return Graph.from_callback(transitions, (n, 0), 3,
                               param_names=["jump", "flood_left", "flood_right"])


def isolation_migration(n1: int, n2: int) -> Graph:
    """Two-deme structured coalescent with migration.

    States ``(a, b)`` = lineages in deme 1 and deme 2, start ``(n1, n2)``.
    Coalescence in deme 1 ``(a-1, b)`` at ``coal_1 * a (a-1) / 2``, in deme 2
    ``(a, b-1)`` at ``coal_2 * b (b-1) / 2``; a lineage migrates 1 -> 2,
    ``(a-1, b+1)``, at ``mig_12 * a`` and 2 -> 1 at ``mig_21 * b``. Absorbing
    when one lineage is left. Parameters ``[coal_1, coal_2, mig_12, mig_21]``.
    Transient states: all ``(a, b)`` with ``2 <= a + b <= n1 + n2``, i.e.
    ``sum_{m=2}^{n1+n2} (m + 1)``.

    Notes
    -----
    Only the migration phase is modelled: an isolation (split-time) phase
    would make the rates time-dependent, which a time-homogeneous phase-type
    distribution cannot express. With ``mig_12 = mig_21 = 0`` the state
    ``(1, 1)`` never coalesces, so moments are infinite there.
    """
    n1 = _positive_int(n1, "n1", 0)
    n2 = _positive_int(n2, "n2", 0)
    if n1 + n2 < 2:
        raise ValueError(f"need at least 2 lineages, got n1={n1}, n2={n2}")

    def transitions(state: State) -> list[tuple[State, list[float]]]:
        a, b = state
        if a + b <= 1:
            return []
        moves = []
        if a >= 2:
            moves.append(((a - 1, b), [a * (a - 1) / 2, 0, 0, 0]))
        if b >= 2:
            moves.append(((a, b - 1), [0, b * (b - 1) / 2, 0, 0]))
        if a >= 1:
            moves.append(((a - 1, b + 1), [0, 0, a, 0]))
        if b >= 1:
            moves.append(((a + 1, b - 1), [0, 0, 0, b]))
        return moves

    return Graph.from_callback(transitions, (n1, n2), 4,
                               param_names=["coal_1", "coal_2", "mig_12", "mig_21"])


MODELS: dict[str, tuple[Callable[..., Graph], str]] = {
    "exponential": (exponential, "Exponential(rate); 1 state"),
    "erlang": (erlang, "Erlang(k, rate); k states"),
    "kingman": (kingman, "Kingman coalescent TMRCA of n samples; n-1 states"),
    "block_counting": (block_counting,
                       "Block-counting coalescent of n samples (SFS); p(n)-1 states"),
    "rabbits": (rabbits, "Rabbits on two islands (cyclic); (n+1)(n+2)/2-1 states"),
    "isolation_migration": (isolation_migration,
                            "Two-deme coalescent with migration of n1+n2 samples"),
    "structured_block_counting": (structured_block_counting,
                                  "Two-deme block-counting coalescent (pooled SFS) "
                                  "of n1+n2 samples"),
}
