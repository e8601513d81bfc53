"""The domain of a graph's parameters: which boxes of values keep every rate valid.

Used to refuse priors whose support reaches parameter values with negative
rates (:func:`phasic_mpi.inference.posterior.domain_problem`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Graph (phasic_mpi.model.graph) imports this module, so annotations name it
# without importing it, not even for type checkers: the imports run one way.
Graph = Any

__all__ = ["box_violation"]


def box_violation(graph: Graph, low: Any, high: Any) -> tuple[int, str] | None:
    """Whether a box of parameter values leaves the graph's domain.

    The domain is every rate ``base + coef·θ >= 0`` (and, for a discrete
    graph, every state's out-probabilities summing to at most 1). A rate is
    linear in θ, so its least value over the box ``low <= θ <= high``
    (infinite ends allowed) is ``base + Σ_k min(coef_k low_k, coef_k
    high_k)``, with ``0 · inf = 0``: the box lies in the domain exactly when
    every such minimum is ``>= 0`` (maximum ``<= 1``).

    Returns
    -------
    None, or ``(k, message)``
        ``k`` is the parameter whose end of the box drives the first
        offending edge (or state) out of the domain, and ``message``
        says how, e.g. ``edge state (2, 0) -> state (1, 1) has rate
        2·jump, which is negative at jump = -5``.
    """
    low = np.broadcast_to(np.asarray(low, dtype=np.float64), (graph.n_params,))
    high = np.broadcast_to(np.asarray(high, dtype=np.float64), (graph.n_params,))
    coef = graph.edge_coef if graph.edge_coef is not None else np.zeros((graph.n_edges, 0))
    with np.errstate(invalid="ignore"):  # 0 * inf: the coefficient wins (no term)
        ends = np.stack([coef * low, coef * high])
    ends = np.where(coef == 0, 0.0, ends)
    worst = ends.min(axis=0)  # (E, d): each parameter's least contribution
    least = graph.edge_base + worst.sum(axis=1)
    bad = np.flatnonzero(least < 0)
    if bad.size:
        e = int(bad[0])
        k = int(np.argmin(worst[e]))
        end, name = (low[k] if coef[e, k] > 0 else high[k]), graph.param_names[k]
        return k, (f"edge {graph.label(graph.edge_src[e])} -> "
                   f"{graph._dst_label(graph.edge_dst[e])} has rate "
                   f"{_rate_formula(graph, e)}, which is negative at {name} = {end:g}")
    if graph.discrete:
        src_coef = np.zeros((graph.n_states, graph.n_params))
        np.add.at(src_coef, graph.edge_src, coef)
        with np.errstate(invalid="ignore"):
            top = np.where(src_coef == 0, 0.0,
                           np.maximum(src_coef * low, src_coef * high))
        total = np.bincount(graph.edge_src, graph.edge_base, minlength=graph.n_states)
        over = np.flatnonzero(total + top.sum(axis=1) > 1 + 1e-12)
        if over.size:
            s = int(over[0])
            k = int(np.argmax(top[s]))
            return k, (f"the out-probabilities of {graph.label(s)} can sum to more "
                       f"than 1 at {graph.param_names[k]} in "
                       f"[{low[k]:g}, {high[k]:g}]")
    return None


def _rate_formula(graph: Graph, e: int) -> str:
    terms = [f"{graph.edge_base[e]:g}"] if graph.edge_base[e] else []
    terms += [f"{c:g}·{name}" for c, name in zip(graph.edge_coef[e], graph.param_names) if c]
    return " + ".join(terms) or "0"
