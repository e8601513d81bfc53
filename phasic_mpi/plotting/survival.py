"""Predictive check for censored data: the data's survival curve against the model.

An ECDF of the exact times alone is normalised to 1 and makes a model that
fits look like a misfit once some observations are censored. Here the data
are summarised by Kaplan–Meier (Turnbull with interval data) and compared,
on the same scale, with the same summary of data sets replicated from
posterior draws and censored the way the data were:

* right-censored rows keep their own censoring time; exact rows, whose
  censoring time is unknown, are censored at the largest one (beyond it the
  Kaplan–Meier curve of the data says nothing anyway);
* with interval data (no censoring scheme to replay) the band is the
  posterior band of the model's survival function ``P(T > t)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phasic_mpi.analysis.survival import kaplan_meier, survival_curve
from phasic_mpi.model.data import Observations
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.pointwise import evaluate_rows, replicate_times
from phasic_mpi.plotting._style import DATA_COLOR, save, subplots

__all__ = ["SURVIVAL_PROBS", "plot_censored", "replicated_survival_band", "step_at"]

SURVIVAL_PROBS = (0.025, 0.5, 0.975)  # the replicated Kaplan-Meier band: 95 %


def step_at(t: np.ndarray, s: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The right-continuous step function (1 before ``t[0]``) at ``grid``."""
    idx = np.searchsorted(t, grid, side="right") - 1
    return np.where(idx < 0, 1.0, s[np.maximum(idx, 0)]) if t.size else np.ones(grid.size)


def _censoring(obs: Observations) -> tuple[np.ndarray, np.ndarray | None]:
    """Censoring time of every exact and right-censored row, and their weights."""
    c_exact = obs.right_censored.max() if obs.right_censored.size else np.inf
    c = np.concatenate([np.full(obs.exact.size, c_exact), obs.right_censored])
    if obs.weights is None and obs.right_weights is None:
        return c, None
    one = np.ones
    return c, np.concatenate([one(obs.exact.size) if obs.weights is None else obs.weights,
                              one(obs.right_censored.size) if obs.right_weights is None
                              else obs.right_weights])


def replicated_survival_band(graph: Graph, obs: Observations, thetas: Any, grid: Any,
                             seed: Any = 0, probs: tuple = SURVIVAL_PROBS) -> np.ndarray:
    """Pointwise quantiles of the Kaplan–Meier curves of replicated data sets.

    One data set per θ row (exact and right-censored rows; see the module
    notes for the censoring), its Kaplan–Meier curve evaluated at ``grid``.

    Returns
    -------
    ndarray, shape (len(probs), len(grid))
    """
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    grid = np.asarray(grid, dtype=np.float64)
    c, w = _censoring(obs)
    times = replicate_times(graph, thetas, c.size, seed)
    curves = [step_at(*kaplan_meier(np.minimum(t, c), t <= c, w), grid)
              for t in times if not np.isnan(t).any()]
    if not curves:
        raise ValueError("no posterior draw could be simulated")
    return np.quantile(np.array(curves), list(probs), axis=0)


def plot_censored(name: str, graph: Graph, obs: Observations, thetas: np.ndarray,
                  out_dir: str, dpi: int, title: str) -> str:
    """One panel: the data's survival curve against the replicated or posterior band."""
    t_data, s_data, method = survival_curve(obs)
    ends = np.concatenate([obs.exact, obs.right_censored, obs.interval_lo,
                           obs.interval_hi[np.isfinite(obs.interval_hi)]])
    upper = max(float(ends.max()) if ends.size else 1.0, 1e-12)
    grid = (np.arange(0.0, np.ceil(upper) + 1.0) if graph.discrete
            else np.linspace(0.0, upper, 200))
    model = np.quantile(_survival(graph, thetas, grid), [0.5], axis=0)[0]
    fig, axes = subplots(1, 1, panel=(7.0, 4.2))
    ax = axes[0, 0]
    if obs.interval_lo.size:
        band = np.quantile(_survival(graph, thetas, grid), SURVIVAL_PROBS, axis=0)
        what = "posterior band of P(T > t)"
    else:
        band = replicated_survival_band(graph, obs, thetas, grid)
        what = f"{method} of replicated data, censored like the data"
    ax.fill_between(grid, band[0], band[2], step="post", color="C0", alpha=0.3, linewidth=0,
                    label=f"{what}: 2.5\u201397.5 %")
    ax.plot(grid, model, color="C0", linewidth=1.5, label="model P(T > t), posterior median")
    ax.step(np.concatenate([[0.0], t_data]), np.concatenate([[1.0], s_data]), where="post",
            color="k", linewidth=1.3, label=f"data: {method}")
    if obs.right_censored.size:  # censoring marks on the data's curve, as is customary
        c = np.unique(obs.right_censored)
        ax.plot(c, step_at(t_data, s_data, c), "|", color=DATA_COLOR, markersize=8,
                label="censoring times")
    ax.set_xlim(0.0, grid[-1])
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("absorption time" + (" (steps)" if graph.discrete else ""))
    ax.set_ylabel("P(T > t)")
    ax.set_title(f"survival: data ({method}) vs posterior predictive")
    ax.legend(loc="upper right")
    return save(fig, out_dir, "predictive", dpi, title)


def _survival(graph: Graph, thetas: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """``P(T > t)`` at ``grid`` for the θ rows libphase accepts, (P', m)."""
    values = evaluate_rows(graph, thetas, grid, "survival", None)
    return values[~np.isnan(values).any(axis=1)]
