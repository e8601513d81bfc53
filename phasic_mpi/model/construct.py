"""Building a :class:`~phasic_mpi.model.graph.Graph` from a model callback or from matrices.

Breadth-first exploration of a user's ``transitions(state)`` callback and the
matrix decomposition ``S(theta) = S_base + sum_k theta_k S_k``, with errors
that name the offending state, transition or matrix. The functions take the
class as first argument; they are exposed as ``Graph.from_callback`` and
``Graph.from_matrices``.
"""

from __future__ import annotations

import contextlib
import contextvars
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

# Graph (phasic_mpi.model.graph) imports this module, so annotations name it
# without importing it, not even for type checkers: the imports run one way.
Graph = Any

__all__ = ["ABSORBING", "DEFAULT_MAX_STATES", "MASS_TOL", "State", "StateLimitError", "as_state", "exploration_limit",
           "from_callback", "from_matrices"]

ABSORBING = -1  # same value as PHASE_ABSORBING in phase.h
MASS_TOL = 1e-12  # slack for start masses that sum to 1 up to round-off

State = tuple[int, ...]

DEFAULT_MAX_STATES = 1_000_000  # from_callback's limit when neither caller nor context sets one
# The limit a caller that does not build the graph itself (the config's model
# loader calls the user's factory) imposes on every exploration inside it.
_MAX_STATES: contextvars.ContextVar[int | None] = contextvars.ContextVar("max_states",
                                                                       default=None)


class StateLimitError(ValueError):
    """A model's exploration found more states than allowed (``max_states``)."""


@contextlib.contextmanager
def exploration_limit(max_states: int) -> Iterator[None]:
    """Within the block, ``from_callback`` without its own ``max_states`` stops at this many.

    The config's ``model.max_states``: a model factory calls
    ``Graph.from_callback`` itself, so the limit reaches it through a context
    variable rather than an argument.
    """
    token = _MAX_STATES.set(operator.index(max_states))
    try:
        yield
    finally:
        _MAX_STATES.reset(token)


def as_state(label: Any) -> State:
    """Normalise a state label (an int or a sequence of ints) to a tuple of ints."""
    if isinstance(label, (int, np.integer)):
        return (int(label),)
    if isinstance(label, (tuple, list, np.ndarray)):
        try:
            return tuple(operator.index(v) for v in label)
        except TypeError:
            pass
    raise TypeError(f"state {label!r} must be an int or a sequence of ints")


def from_callback(
    cls: type["Graph"],
    transitions: Callable[[State], Iterable[Sequence[Any]]],
    start: Any,
    n_params: int,
    *,
    discrete: bool = False,
    max_states: int | None = None,
    param_names: Sequence[str] | None = None,
) -> "Graph":
    """Explore a model breadth-first from its start state(s).

    Parameters
    ----------
    transitions : callable
        ``transitions(state)`` returns an iterable of ``(child, coef)`` or
        ``(child, base, coef)``. ``coef`` is a sequence of length
        ``n_params`` (a scalar is accepted when ``n_params == 1``); with
        ``n_params == 0`` a pair ``(child, rate)`` gives a constant rate.
        A state with no transitions is absorbing. Several transitions to
        the same child add up; transitions whose base and coefficients are
        all zero are dropped silently (so a state with only such
        transitions is transient and cannot be left, which is an error).
    start : state or mapping
        A start state (probability 1) or a mapping state -> probability
        (total ``<= 1``, the rest is the defect). Start mass on an
        absorbing state also becomes defect.
    n_params : int
        Number of parameters.
    discrete : bool
        Transitions give one-step probabilities (see :class:`Graph`).
    max_states : int, optional
        Limit on the number of distinct states discovered (absorbing ones
        included); default: the enclosing :func:`exploration_limit` (the
        config's ``model.max_states``), else :data:`DEFAULT_MAX_STATES`.
    param_names : sequence of str, optional
        Parameter names.

    Returns
    -------
    Graph
        Transient states in breadth-first discovery order (start states
        first, in the order given); all absorbing states are merged into
        exits.

    Notes
    -----
    States are tuples of ints (ints and lists are normalised).
    """
    if max_states is None:
        max_states = _MAX_STATES.get() or DEFAULT_MAX_STATES
    n_params = operator.index(n_params)
    if n_params < 0:
        raise ValueError(f"n_params must be >= 0, got {n_params}")
    start_mass = _start_masses(start)
    index: dict[State, int] = {}
    order: list[State] = []

    def discover(state: State) -> int:
        number = index.get(state)
        if number is None:
            if len(order) >= max_states:
                raise StateLimitError(f"more than max_states={max_states} states "
                                      f"reachable (last found: {state})")
            number = index[state] = len(order)
            order.append(state)
        return number

    for state in start_mass:
        discover(state)
    absorbing: list[bool] = []
    src: list[int] = []
    child_ids: list[int] = []
    bases: list[float] = []
    coefs: list[np.ndarray] = []
    head = 0
    while head < len(order):
        state = order[head]
        items = transitions(state)
        items = [] if items is None else list(items)
        absorbing.append(not items)
        for item in items:
            child, base, coef = _parse_transition(item, state, n_params)
            if child == state:
                raise ValueError(
                    f"transition from state {state} to itself: self-loops are "
                    "not allowed (in a discrete graph the probability of "
                    "staying is implicit: 1 - sum of out-probabilities)")
            if base == 0 and not np.any(coef):
                continue
            src.append(head)
            child_ids.append(discover(child))
            bases.append(base)
            coefs.append(coef)
        head += 1

    is_absorbing = np.array(absorbing, dtype=bool)
    new_index = np.full(len(order), ABSORBING, dtype=np.int64)
    transient = np.flatnonzero(~is_absorbing)
    if transient.size == 0:
        raise ValueError("every start state is absorbing: no transient states")
    new_index[transient] = np.arange(transient.size)
    alpha = np.zeros(transient.size)
    for state, mass in start_mass.items():
        if not is_absorbing[index[state]]:
            alpha[new_index[index[state]]] += mass
    coef_array = (np.array(coefs, dtype=np.float64).reshape(len(src), n_params)
                  if src else np.zeros((0, n_params)))
    return cls.from_edges(
        alpha, new_index[np.array(src, dtype=np.int64)],
        new_index[np.array(child_ids, dtype=np.int64)], bases, coef_array,
        discrete=discrete, states=[order[k] for k in transient],
        param_names=param_names)


def from_matrices(
    cls: type["Graph"],
    alpha: Any,
    S_base: Any,
    S_coefs: Any = (),
    *,
    exit_base: Any = None,
    exit_coefs: Any = None,
    discrete: bool = False,
    param_names: Sequence[str] | None = None,
    states: Sequence[Any] | None = None,
) -> "Graph":
    """Build a graph from the decomposition ``S(theta) = S_base + sum_k theta_k S_k``.

    Parameters
    ----------
    alpha : array_like, shape (n,)
        Start distribution (sum ``<= 1``).
    S_base : array_like or sparse, shape (n, n)
        Constant part of the sub-intensity matrix (discrete: of the
        sub-stochastic matrix ``T``, whose diagonal is the probability of
        staying). Off-diagonal entries are the base edge rates.
    S_coefs : sequence of d arrays (n, n), or array (d, n, n)
        Coefficient matrices; their off-diagonal entries are the edge
        coefficients. Empty for a constant graph.
    exit_base, exit_coefs : array_like, shapes (n,) and (d, n), optional
        Exit rates (discrete: exit probabilities). If both are omitted they
        are derived from the full matrices, diagonals included:
        ``s(theta) = -S(theta) 1`` (discrete: ``t = 1 - T(theta) 1``), i.e.
        ``exit_base = -S_base 1`` (discrete ``1 - T_base 1``) and
        ``exit_coefs[k] = -S_k 1``; round-off below 1e-12 of the row scale
        is set to zero. If either is given, the diagonals are ignored and
        the missing one is zero.
    discrete : bool
        Build a discrete graph.
    param_names, states : optional
        As in :class:`Graph`.

    Examples
    --------
    A constant sub-intensity matrix just works:

    >>> g = Graph.from_matrices([1.0, 0.0], [[-3.0, 1.0], [0.0, -2.0]])
    >>> g.to_matrices()[2]
    array([2., 2.])
    """
    alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
    n = alpha.size
    mats = [_dense_square(S_base, n, "S_base")]
    mats += [_dense_square(m, n, f"S_coefs[{k}]") for k, m in enumerate(S_coefs)]
    stack = np.stack(mats)  # (1 + d, n, n)
    d = stack.shape[0] - 1
    if exit_base is None and exit_coefs is None:
        exits = -stack.sum(axis=2)
        if discrete:
            exits[0] += 1.0
        scale = np.maximum(1.0, np.abs(stack).max(axis=2))
        exits[np.abs(exits) <= 1e-12 * scale] = 0.0
        rows = np.flatnonzero(exits[0] < 0)
        if rows.size:
            i = rows[0]
            what = "1 - T_base 1" if discrete else "-S_base 1"
            raise ValueError(
                f"row {i}: the derived exit rate {what} is {exits[0, i]:.6g} < 0;"
                " the diagonal must be minus the total out-rate (discrete: the "
                "stay probability), or pass exit_base/exit_coefs")
    else:
        exits = np.zeros((1 + d, n))
        if exit_base is not None:
            exits[0] = np.asarray(exit_base, dtype=np.float64).reshape(n)
        if exit_coefs is not None:
            exits[1:] = np.asarray(exit_coefs, dtype=np.float64).reshape(d, n)
    off = ~np.eye(n, dtype=bool)
    i, j = np.nonzero(np.any(stack != 0, axis=0) & off)
    (k,) = np.nonzero(np.any(exits != 0, axis=0))
    src = np.concatenate([i, k])
    dst = np.concatenate([j, np.full(k.size, ABSORBING)])
    values = np.concatenate([stack[:, i, j], exits[:, k]], axis=1)  # (1+d, E)
    order = np.argsort(src, kind="stable")  # row-major, exits last per row
    return cls(alpha, src[order], dst[order], values[0, order],
               values[1:, order].T, discrete=discrete, states=states,
               param_names=param_names)


def _start_masses(start: Any) -> dict[State, float]:
    items = start.items() if isinstance(start, Mapping) else [(start, 1.0)]
    masses: dict[State, float] = {}
    for label, mass in items:
        state = as_state(label)
        mass = float(mass)
        if not np.isfinite(mass) or mass < 0:
            raise ValueError(f"start probability of state {state} is {mass}; "
                             "it must be finite and >= 0")
        masses[state] = masses.get(state, 0.0) + mass
    total = sum(masses.values())
    if total > 1 + MASS_TOL:
        raise ValueError(f"start probabilities sum to {total:.17g} > 1")
    return masses


def _parse_transition(item: Any, state: State, n_params: int
                      ) -> tuple[State, float, np.ndarray]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise TypeError(f"transitions({state}) yielded {item!r}; expected "
                        "(child, coef) or (child, base, coef)")
    child = as_state(item[0])
    if len(item) == 2 and n_params == 0:
        base, coef = item[1], ()
    elif len(item) == 2:
        base, coef = 0.0, item[1]
    else:
        base, coef = item[1], item[2]
    if np.ndim(base) != 0:
        raise TypeError(f"base rate of transition {state} -> {child} must be a "
                        f"scalar, got {base!r}")
    base = float(base)
    if np.ndim(coef) == 0:
        if n_params != 1:
            raise ValueError(
                f"coef of transition {state} -> {child} is the scalar {coef!r} but "
                f"the model has {n_params} parameters; give a sequence of length "
                f"{n_params}")
        coef = [coef]
    coef = np.asarray(coef, dtype=np.float64).reshape(-1)
    if coef.size != n_params:
        raise ValueError(f"coef of transition {state} -> {child} has length "
                         f"{coef.size}, expected n_params={n_params}")
    if not np.isfinite(base) or not np.all(np.isfinite(coef)):
        raise ValueError(f"transition {state} -> {child} has a non-finite rate")
    if base < 0:
        raise ValueError(f"transition {state} -> {child} has negative base rate "
                         f"{base} (negative coefficients are allowed)")
    return child, base, coef


def _dense_square(matrix: Any, n: int, name: str) -> np.ndarray:
    dense = matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix)
    dense = np.asarray(dense, dtype=np.float64)
    if dense.shape != (n, n):
        raise ValueError(f"{name} has shape {dense.shape}, expected ({n}, {n}) "
                         "to match alpha")
    if not np.all(np.isfinite(dense)):
        raise ValueError(f"{name} must be finite")
    return dense
