"""Per-observation log-likelihoods and replicated data sets, batched over draws.

What ArviZ needs beyond the posterior draws: the ``log_likelihood`` group
(one value per draw and observation, so that ``az.loo``/``az.waic`` see the
data points) and ``posterior_predictive`` (one simulated data set per draw,
in the layout of ``observed_data``). Both are computed here from the graph,
the observations and θ draws; the run store writes them.

Conventions (docs/output.md, "Pointwise log-likelihood"):

* one variable per kind of observation that occurs: ``exact`` (log f(t)),
  ``right_censored`` (log P(T > c)), ``interval`` (log P(lo < T <= hi));
* a weighted row holds ``w * log p(row)``, its whole contribution to the
  log-likelihood, so the pointwise values sum to the total. Leave-one-out
  then leaves out a row with all its ``w`` copies; expand the data
  (``np.repeat``) before the run for leave-one-copy-out;
* a draw at which a rate is negative (or the row is impossible) gets -inf.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from phasic_mpi.model.construct import ABSORBING
from phasic_mpi.model.data import Observations

# Graph (phasic_mpi.model.graph) names no module here, but annotations keep
# the convention of the other helper modules: no import of Graph.
Graph = Any

__all__ = ["OBS_DIMS", "evaluate_rows", "pointwise_loglik", "predictive_data", "replicate_times"]

# variable -> its observation dimension, as in the run file's observed_data group
OBS_DIMS = {"exact": "exact_obs", "right_censored": "right_censored_obs",
            "interval": "interval_obs", "interval_lo": "interval_obs",
            "interval_hi": "interval_obs"}
BLOCK = 256  # draws per libphase call: bounds the temporary (block, n_obs) arrays


def _blocks(n: int) -> Iterator[slice]:
    for start in range(0, n, BLOCK):
        yield slice(start, min(start + BLOCK, n))


def evaluate_rows(graph: Graph, thetas: np.ndarray, points: np.ndarray, quantity: str,
               tol: float | None) -> np.ndarray:
    """``quantity`` at ``points`` for each θ row; NaN rows where libphase refuses θ."""
    from phasic_mpi.model import native as _core

    out = np.full((thetas.shape[0], points.size), np.nan)
    if points.size == 0:
        return out
    for rows in _blocks(thetas.shape[0]):
        try:
            out[rows] = _core.evaluate(graph, thetas[rows], points, quantity, tol=tol)
        except ValueError:  # one bad θ fails the call: redo the block one θ at a time
            for p in range(rows.start, rows.stop):
                try:
                    out[p] = _core.evaluate(graph, thetas[p], points, quantity, tol=tol)
                except ValueError:
                    continue
    return out


def _log_interval(graph: Graph, thetas: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  tol: float | None) -> np.ndarray:
    """``log(F(hi) - F(lo))`` per θ and interval, from whichever tail keeps digits."""
    lo_cdf = np.where(lo < 0, 0.0, np.nan)  # lo < 0: T <= hi, the atom at 0 included
    hi_sf = np.where(np.isinf(hi), 0.0, np.nan)
    pts = np.concatenate([np.maximum(lo, 0.0), np.where(np.isinf(hi), 0.0, hi)])
    cdf = evaluate_rows(graph, thetas, pts, "cdf", tol)
    sf = evaluate_rows(graph, thetas, pts, "survival", tol)
    m = lo.size
    f_lo = np.where(np.isnan(lo_cdf), cdf[:, :m], lo_cdf)
    s_lo = np.where(np.isnan(lo_cdf), sf[:, :m], 1.0)
    f_hi = np.where(np.isnan(hi_sf), cdf[:, m:], 1.0)
    s_hi = np.where(np.isnan(hi_sf), sf[:, m:], hi_sf)
    # below the median the CDF difference is exact; above it, the survival difference
    use_cdf = f_hi <= 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = np.where(use_cdf, f_hi - f_lo, s_lo - s_hi)
        return np.log(np.maximum(mass, 0.0))


def pointwise_loglik(graph: Graph, obs: Observations, thetas: Any, *,
                     tol: float | None = None) -> dict[str, np.ndarray]:
    """Log-likelihood of each observation (row) at each θ.

    Parameters
    ----------
    graph : Graph
    obs : Observations
    thetas : array_like, shape (P, d)
    tol : float, optional
        Truncation tolerance of libphase (default 1e-12).

    Returns
    -------
    dict of str to ndarray (P, n_kind)
        ``exact``, ``right_censored`` and ``interval``, for each kind that
        has at least one row. A weighted row holds ``w * log p`` (0 where
        ``w = 0``); ``-inf`` where θ is outside the domain or the row is
        impossible. Summed over the rows of all kinds this is
        :meth:`Graph.loglik`.
    """
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    parts: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if obs.exact.size:
        parts["exact"] = (evaluate_rows(graph, thetas, obs.exact, "logpdf", tol), obs.weights)
    if obs.right_censored.size:
        parts["right_censored"] = (
            evaluate_rows(graph, thetas, obs.right_censored, "logsurvival", tol), obs.right_weights)
    if obs.interval_lo.size:
        parts["interval"] = (_log_interval(graph, thetas, obs.interval_lo, obs.interval_hi, tol),
                             obs.interval_weights)
    out = {}
    for name, (values, weights) in parts.items():
        values = np.where(np.isnan(values), -np.inf, values)
        if weights is not None:  # 0 * -inf would be NaN: a weight-0 row contributes nothing
            with np.errstate(invalid="ignore"):
                values = np.where(weights == 0, 0.0, weights * values)
        out[name] = values
    return out


def _valid_rows(graph: Graph, rates: np.ndarray) -> np.ndarray:
    """Rows of ``rates`` (P, E) at which every walker is absorbed with probability 1."""
    ok = np.isfinite(rates).all(axis=1) & (rates >= 0).all(axis=1)
    if graph.discrete:
        src_rows = np.zeros((graph.n_states, graph.n_edges))
        src_rows[graph.edge_src, np.arange(graph.n_edges)] = 1.0
        ok &= (rates @ src_rows.T <= 1 + 1e-12).all(axis=1)
    if ok.any():  # one search per pattern of positive rates (usually one for all rows)
        patterns, inverse = np.unique(rates[ok] > 0, axis=0, return_inverse=True)
        stuck = np.array([graph.stuck_reachable_at(pat.astype(float)).size > 0
                          for pat in patterns])
        ok[np.flatnonzero(ok)[stuck[inverse.reshape(-1)]]] = False
    return np.flatnonzero(ok)


def replicate_times(graph: Graph, thetas: Any, n: int, seed: Any, *,
                    max_jumps: int = 1_000_000) -> np.ndarray:
    """``n`` exact absorption times per θ row, shape (P, n), all rows simulated at once.

    The walkers of every row step together as in
    :func:`phasic_mpi.model.simulate.sample`: edge choice searches one sorted
    array of keys ``row * n_states + state + cumulative jump probability``.
    Rows where θ is outside the domain (or a reachable state cannot be
    left, or a walker exceeds ``max_jumps``) are NaN. Random numbers come from
    ``Philox(seed)``, so the same seed and θ give the same bits.
    """
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    n_states, n_edges = graph.n_states, graph.n_edges
    out = np.full((thetas.shape[0], n), np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        rates = graph.edge_base + thetas @ graph.edge_coef.T
    rows = _valid_rows(graph, rates)
    if rows.size == 0 or n == 0:
        return out
    q_n = rows.size
    order = np.argsort(graph.edge_src, kind="stable")
    src, dst = graph.edge_src[order], graph.edge_dst[order]
    w = rates[rows][:, order]
    offset = np.arange(q_n)[:, None] * n_states
    total = np.bincount((offset + src).ravel(), w.ravel(), minlength=q_n * n_states)
    total = total.reshape(q_n, n_states)
    row_start = np.searchsorted(src, np.arange(n_states), side="left")
    row_end = np.searchsorted(src, np.arange(n_states), side="right")
    cumulative = np.cumsum(w / np.where(total > 0, total, 1.0)[:, src], axis=1)
    before = np.concatenate([np.zeros((q_n, 1)), cumulative], axis=1)[:, row_start]
    keys = offset + src + (cumulative - before[:, src])
    keys[:, row_end - 1] = offset + np.arange(n_states) + 1.0  # rows end at the next integer
    keys = keys.ravel()

    rng = np.random.Generator(np.random.Philox(seed))
    cumulative_alpha = np.cumsum(graph.alpha)
    mass = float(cumulative_alpha[-1])
    u = rng.random(q_n * n)
    u = u if graph.defect > 0 or mass == 1.0 else u * mass
    start = np.searchsorted(cumulative_alpha, u, side="right")
    result = np.zeros(q_n * n)
    walkers = np.flatnonzero(start < n_states)  # the rest start in the defect: time 0
    row, current = walkers // n, start[walkers]
    for _ in range(max_jumps):
        if walkers.size == 0:
            break
        rate = total[row, current]
        if graph.discrete:
            result[walkers] += rng.geometric(rate)
        else:
            result[walkers] += rng.standard_exponential(walkers.size) / rate
        edge = np.searchsorted(keys, row * n_states + current + rng.random(walkers.size),
                               side="right")
        edge = np.minimum(edge, row * n_edges + row_end[current] - 1)  # round-off at row ends
        current = dst[edge - row * n_edges]
        alive = current != ABSORBING
        walkers, row, current = walkers[alive], row[alive], current[alive]
    result = result.reshape(q_n, n)
    result[np.unique(row)] = np.nan  # rows with a walker still running after max_jumps
    out[rows] = result
    return out


def predictive_data(graph: Graph, obs: Observations, thetas: Any,
                    seed: Any) -> dict[str, np.ndarray]:
    """One replicated data set per θ, in the layout of the observed data.

    Each row gets a fresh absorption time ``T`` from the model at θ:

    * ``exact`` rows report ``T``;
    * ``right_censored`` rows report ``min(T, c)`` with their own ``c``, and
      ``right_censored_event`` is 1 where ``T <= c`` (the event was seen);
    * interval rows report the cell ``(interval_lo, interval_hi]`` of the
      inspection grid formed by every interval endpoint of the data that
      contains ``T`` (lower bounds below 0 count as ``-inf``).

    Returns
    -------
    dict of str to ndarray (P, n_kind)
        Keys for the kinds that occur; NaN rows where θ is invalid.
    """
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    sizes = (obs.exact.size, obs.right_censored.size, obs.interval_lo.size)
    times = replicate_times(graph, thetas, sum(sizes), seed)
    ex, rc, iv = np.split(times, np.cumsum(sizes)[:2], axis=1)
    out: dict[str, np.ndarray] = {}
    if sizes[0]:
        out["exact"] = ex
    if sizes[1]:
        out["right_censored"] = np.minimum(rc, obs.right_censored)
        with np.errstate(invalid="ignore"):
            out["right_censored_event"] = np.where(np.isnan(rc), np.nan,
                                                   (rc <= obs.right_censored).astype(float))
    if sizes[2]:
        lo = np.where(obs.interval_lo < 0, -np.inf, obs.interval_lo)
        grid = np.unique(np.concatenate([[-np.inf, np.inf], lo, obs.interval_hi]))
        cell = np.clip(np.searchsorted(grid, np.nan_to_num(iv, nan=0.0), side="left"),
                       1, grid.size - 1)
        out["interval_lo"] = np.where(np.isnan(iv), np.nan, grid[cell - 1])
        out["interval_hi"] = np.where(np.isnan(iv), np.nan, grid[cell])
    return out
