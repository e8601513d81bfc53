"""Posterior-predictive check: the data against the band of model densities.

The model's graph is rebuilt from the arrays stored in the run file, its
PDF (PMF for a discrete graph) and CDF are evaluated by libphase for a
subsample of posterior draws, and the pointwise 5 %, 50 % and 95 % quantiles
over the draws form the band.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from phasic_mpi.model.data import Observations
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.pointwise import evaluate_rows
from phasic_mpi.plotting._style import DATA_COLOR, note, save, styled, subplots
from phasic_mpi.plotting.run import RunView
from phasic_mpi.plotting.survival import plot_censored

__all__ = ["BAND_PROBS", "MAX_DRAWS", "censoring_note", "draw_subsample", "plot_predictive",
           "predictive_band"]

BAND_PROBS = (0.05, 0.5, 0.95)
MAX_DRAWS = 200  # posterior draws the band is computed from
GRID_POINTS = 200


def draw_subsample(draws: np.ndarray, n: int = MAX_DRAWS, seed: int = 0) -> np.ndarray:
    """At most ``n`` rows of ``draws`` (n_draws, d), chosen without replacement."""
    if draws.shape[0] <= n:
        return draws
    rows = np.sort(np.random.default_rng(seed).choice(draws.shape[0], n, replace=False))
    return draws[rows]


def predictive_band(graph: Graph, thetas: Any, points: Any, quantity: str = "pdf",
                    probs: Sequence[float] = BAND_PROBS) -> np.ndarray:
    """Pointwise quantiles over posterior draws of the model's ``quantity``.

    Parameters
    ----------
    graph : Graph
        The phase-type model.
    thetas : array_like, shape (P, d)
        Posterior draws in parameter space, in ``graph.param_names`` order.
    points : array_like, shape (m,)
        Times (integers for a discrete graph).
    quantity : {"pdf", "cdf"}
        ``"pdf"`` is the PMF for a discrete graph.
    probs : sequence of float
        Quantile levels.

    Returns
    -------
    ndarray, shape (len(probs), m)
        Row ``i`` holds the ``probs[i]`` quantile (linear interpolation) of
        the ``P`` values at each point.

    Raises
    ------
    ValueError
        If no draw can be evaluated.
    """
    thetas = np.atleast_2d(np.asarray(thetas, float))
    pts = np.asarray(points, float).reshape(-1)
    values = evaluate_rows(graph, thetas, pts, quantity, None)
    values = values[~np.isnan(values).any(axis=1)]  # drop the draws libphase rejects
    if values.shape[0] == 0:
        raise ValueError("libphase rejected every posterior draw")
    return np.quantile(values, list(probs), axis=0)


def censoring_note(obs: Observations) -> str:
    """The title note for censored data (empty if every observation is exact)."""
    parts = []
    if obs.right_censored.size:
        parts.append(f"{obs.right_censored.size} right-censored")
    if obs.interval_lo.size:
        parts.append(f"{obs.interval_lo.size} interval-censored")
    if not parts:
        return ""
    return (f"{obs.exact.size} exact and {' and '.join(parts)} observations: survival scale "
            f"({'Turnbull' if obs.interval_lo.size else 'Kaplan-Meier'})")


def _count(obs: Observations) -> str:
    """``"200 observations"``, with the distinct rows if weights collapse repeats."""
    total = obs.total_weight
    text = f"{total:.0f}" if float(total).is_integer() else f"{total:.4g}"
    if total != obs.n_observations:
        text += f" observations in {obs.n_observations} weighted rows"
        return text
    return text + " observations"


def _skip(view: RunView, why: str) -> None:
    note(view.name, f"no posterior-predictive check: {why}")


def _graph(view: RunView) -> Graph | None:
    """The run's phase-type model, or ``None`` (with a message) if there is none.

    Rebuilt only from the numbers the run stored (:meth:`RunFile.model`):
    a run file is data, and reading one never imports or calls the code its
    config names.
    """
    try:
        graph = view.run.model()
    except (ValueError, OSError) as exc:
        _skip(view, str(exc))
        return None
    if graph is None:
        if "density" in (view.run.config.get("model") or {}):
            _skip(view, "the run uses a log-density (model.density), not a phase-type model")
        else:
            _skip(view, "the run file stores no model graph (group 'model')")
        return None
    if tuple(view.param_names[:graph.n_params]) != tuple(graph.param_names):
        # likelihood terms may add parameters (theta_mut), after the model's own
        _skip(view, f"the model's parameters {graph.param_names} differ from the run's "
                    f"{view.param_names}")
        return None
    return graph


def _ecdf(times: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(times, kind="stable")
    w = np.ones(times.size) if weights is None else np.asarray(weights, float)[order]
    return times[order], np.cumsum(w) / w.sum()


def _band(ax: Any, x: np.ndarray, band: np.ndarray, *, step: str | None, label: str) -> None:
    """Shaded 5-95 % band and median line; ``step`` ("mid", "post") for discrete times."""
    kw = {"step": step} if step else {}
    ax.fill_between(x, band[0], band[2], color="C0", alpha=0.3, linewidth=0,
                    label=f"{label} 5\u201395 %", **kw)
    if step:
        ax.step(x, band[1], where=step, color="C0", linewidth=1.5, label=f"{label} median")
    else:
        ax.plot(x, band[1], color="C0", linewidth=1.5, label=f"{label} median")


@styled
def plot_predictive(view: RunView, out_dir: str, dpi: int) -> str | None:
    """Data histogram (or frequencies) and ECDF against the posterior-predictive band.

    ``None`` (with a message on stderr) for a log-density model, a model that
    cannot be rebuilt, or a run without posterior draws or exact data.
    """
    if view.draws.size == 0:
        return None
    graph = _graph(view)
    if graph is None:
        return None
    obs = view.run.observations()
    if obs is None or obs.n_observations == 0:
        _skip(view, "the run file holds no observed data")
        return None
    thetas = draw_subsample(view.flat)[:, :graph.n_params]
    title = (f"{view.name}: posterior-predictive check ({thetas.shape[0]} posterior draws, "
             f"{_count(obs)})")
    if obs.right_censored.size or obs.interval_lo.size:
        try:
            return plot_censored(view.name, graph, obs, thetas, out_dir, dpi,
                                 f"{title}\n{censoring_note(obs)}")
        except (ValueError, MemoryError) as exc:
            _skip(view, f"evaluating the model failed: {exc}")
            return None
    times, weights = obs.exact, obs.weights
    finite = np.concatenate([times, obs.right_censored, obs.interval_lo,
                             obs.interval_hi[np.isfinite(obs.interval_hi)]])
    upper = float(np.quantile(finite, 0.995)) * 1.15 if finite.size else 1.0
    upper = max(upper, float(finite.max()) if finite.size else 0.0, 1e-12)
    if graph.discrete:
        grid = np.arange(0.0, np.ceil(upper) + 1.0)
    else:
        grid = np.linspace(0.0, upper, GRID_POINTS)
    density_grid = grid
    if not graph.discrete and graph.defect > 0:  # pdf(0) is the atom's mass: draw f(0+)
        density_grid = np.concatenate([[grid[1] * 1e-9], grid[1:]])
    try:
        pdf = predictive_band(graph, thetas, density_grid, "pdf")
        cdf = predictive_band(graph, thetas, grid, "cdf")
    except (ValueError, MemoryError) as exc:
        _skip(view, f"evaluating the model failed: {exc}")
        return None

    fig, axes = subplots(1, 2, panel=(5.0, 3.6))
    ax = axes[0, 0]
    kind = "PMF" if graph.discrete else "density"
    if times.size:
        if graph.discrete:
            ks, inv = np.unique(times, return_inverse=True)
            w = np.ones(times.size) if weights is None else weights
            freq = np.bincount(inv, weights=w) / w.sum()
            ax.bar(ks, freq, width=0.8, color=DATA_COLOR, alpha=0.6, label="data frequency")
        else:
            bins = int(np.clip(np.sqrt(times.size) * 1.5, 15, 60))
            ax.hist(times, bins=bins, range=(0.0, upper), weights=weights, density=True,
                    color=DATA_COLOR, alpha=0.55, edgecolor="white", linewidth=0.4,
                    label="data (histogram)")
    if graph.discrete:  # one whisker per k: 5-95 % over the draws, dot at the median
        ax.errorbar(grid, pdf[1], yerr=[pdf[1] - pdf[0], pdf[2] - pdf[1]], fmt="o", color="C0",
                    markersize=3.5, elinewidth=1.4, capsize=2.5,
                    label="predictive PMF median, 5\u201395 %")
    else:
        _band(ax, grid, pdf, step=None, label="predictive density")
    ax.set_xlim(grid[0] - 0.5 * graph.discrete, grid[-1] + 0.5 * graph.discrete)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("absorption time" + (" (steps)" if graph.discrete else ""))
    ax.set_ylabel("probability" if graph.discrete else "density")
    ax.set_title(f"{kind}: data vs posterior predictive")
    ax.legend(loc="upper right")

    ax = axes[0, 1]
    if times.size:
        xs, ys = _ecdf(times, weights)
        ax.step(np.concatenate([[0.0], xs]), np.concatenate([[0.0], ys]), where="post",
                color="k", linewidth=1.2, label="data ECDF")
    _band(ax, grid, cdf, step="post" if graph.discrete else None, label="predictive CDF")
    ax.set_xlim(grid[0], grid[-1])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("absorption time" + (" (steps)" if graph.discrete else ""))
    ax.set_ylabel("P(T \u2264 t)")
    ax.set_title("CDF: data ECDF vs posterior predictive")
    ax.legend(loc="lower right")

    return save(fig, out_dir, "predictive", dpi, title)
