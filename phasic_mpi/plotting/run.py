"""Posterior figures of any run file: marginals and the pair plot."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from phasic_mpi.plotting._style import (
    CHAIN_COLORS,
    grid_shape,
    hide_unused,
    mark_truth,
    save,
    styled,
    subplots,
)
from phasic_mpi.io.runfile import RunFile

__all__ = ["MAX_PAIR_PARAMS", "MAX_PANELS", "RunView", "load_view", "pair_title",
           "plot_marginals", "shown_params",
           "plot_pairs", "true_values"]

MAX_PAIR_PARAMS = 8  # the pair plot shows at most this many parameters
MAX_SCATTER = 2000  # points per pair-plot panel
MAX_PANELS = 12  # per-parameter figures show at most this many parameters


@dataclass(frozen=True)
class RunView:
    """What the figures need of a run file, read once.

    Attributes
    ----------
    run : RunFile
    name : str
        The file's base name, for titles.
    param_names : tuple of str
        Parameters that have posterior draws, in ``param_names`` order.
    draws : ndarray, shape (chain, draw, parameter)
        Empty (0 chains) if the run has not written its posterior.
    truth : dict of str to float
        The θ that simulated the data (``data.simulate.theta``), if known.
    """

    run: RunFile
    name: str
    param_names: tuple[str, ...]
    draws: np.ndarray
    truth: dict[str, float]

    @property
    def flat(self) -> np.ndarray:
        """All draws pooled over chains, shape (n, parameter)."""
        return self.draws.reshape(-1, self.draws.shape[-1])


def true_values(config: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, float]:
    """The θ that simulated the run's data, by parameter name (see :mod:`phasic_mpi.analysis.truth`)."""
    from phasic_mpi.analysis.truth import true_values as from_config

    return from_config(config, names)


def load_view(run: RunFile) -> RunView:
    """Read the posterior draws and the true θ of ``run``."""
    post = run.flat_posterior()  # families of parameters as their entries
    names = tuple(n for n in run.param_names if n in post and post[n].ndim == 2)
    if names:
        draws = np.stack([np.asarray(post[n], float) for n in names], axis=-1)
    else:
        draws = np.zeros((0, 0, len(run.param_names)))
    return RunView(run, os.path.basename(run.path), names, draws,
                   true_values(run.config, tuple(run.param_names)))


def shown_params(view: RunView, limit: int = MAX_PANELS) -> tuple[list[int], str]:
    """Which parameters a per-parameter figure shows, and the note that says so.

    All of them up to ``limit``; beyond it the ``limit`` with the highest
    R-hat when there are several Markov chains (the ones to look at), else
    the first ``limit``. The note (empty when all are shown) goes into the
    figure's title, so a capped figure names what it leaves out.
    """
    d = len(view.param_names)
    if d <= limit:
        return list(range(d)), ""
    if view.draws.shape[0] >= 2 and not view.run.group_attrs("posterior").get(
            "draws_are_independent", False):
        from phasic_mpi.analysis.diagnostics import diagnose

        # one vectorised ArviZ call: per-parameter calls cost ~10 ms each
        r = diagnose({"x": view.draws}, statistics=("rhat",))["x"]["rhat"]
        top = np.argsort(-np.nan_to_num(r, nan=-np.inf), kind="stable")[:limit]
        return (sorted(int(k) for k in top),
                f"the {limit} of {d} parameters with the highest R\u0302")
    return list(range(limit)), f"the first {limit} of {d} parameters"


def _kde(ax: Any, x: np.ndarray, lo: float, hi: float, **kw: Any) -> None:
    """A Gaussian KDE of ``x`` on [lo, hi] (nothing for fewer than 3 distinct values)."""
    from scipy.stats import gaussian_kde

    x = x[np.isfinite(x)]
    if np.unique(x).size < 3:
        return
    try:
        kde = gaussian_kde(x)
    except (np.linalg.LinAlgError, ValueError):
        return
    grid = np.linspace(lo, hi, 256)
    ax.plot(grid, kde(grid), **kw)


def _limits(values: np.ndarray, truth: float | None) -> tuple[float, float]:
    """Axis range of the draws (0.5-99.5 % quantiles, padded) that also shows the truth."""
    finite = values[np.isfinite(values)]
    lo, hi = np.quantile(finite, [0.005, 0.995]) if finite.size else (0.0, 1.0)
    if truth is not None and np.isfinite(truth):
        lo, hi = min(lo, truth), max(hi, truth)
    pad = 0.08 * (hi - lo) if hi > lo else 0.5 * max(abs(lo), 1.0)
    return float(lo - pad), float(hi + pad)


@styled
def plot_marginals(view: RunView, out_dir: str, dpi: int) -> str:
    """Histogram and KDE of each parameter's posterior, with the true θ if known.

    Several chains (PT) get one KDE line each, so disagreeing chains show.
    """
    shown, capped = shown_params(view)
    d = len(shown)
    n_chains, n_draws = view.draws.shape[:2]
    rows, cols = grid_shape(d)
    fig, axes = subplots(rows, cols, panel=(4.0, 3.0))
    for panel, k in enumerate(shown):
        name = view.param_names[k]
        ax = axes.ravel()[panel]
        x = view.draws[:, :, k]
        truth = view.truth.get(name)
        lo, hi = _limits(x.ravel(), truth)
        bins = int(np.clip(np.sqrt(x.size), 10, 60))
        ax.hist(x.ravel(), bins=bins, range=(lo, hi), density=True,
                color="C0" if n_chains == 1 else "0.6", alpha=0.35, edgecolor="white",
                linewidth=0.4, label="draws" if n_chains == 1 else "all chains")
        if n_chains > 1:  # chain colours as in the trace plot
            for c in range(n_chains):
                _kde(ax, x[c], lo, hi, color=CHAIN_COLORS[c % 10], linewidth=1.2,
                     label=f"KDE chain {c}")
        else:
            _kde(ax, x.ravel(), lo, hi, color="C0", linewidth=1.6, label="KDE")
        mark_truth(ax, truth)
        mean = float(np.nanmean(x))
        ax.axvline(mean, color="k", linewidth=1.0, linestyle=":", label=f"mean {mean:.4g}")
        ax.set_xlim(lo, hi)
        ax.set_xlabel(name)
        ax.set_ylabel("posterior density")
        ax.set_title(name)
        ax.legend(loc="upper right")
    hide_unused(axes, d)
    what = (f"{n_draws} particles" if view.run.algorithm == "svgd" and n_chains == 1
            else f"{n_chains} chain{'s' * (n_chains != 1)} x {n_draws} draws")
    title = f"{view.name}: posterior marginals ({view.run.algorithm}, {what})"
    return save(fig, out_dir, "marginals", dpi, f"{title}\n{capped}" if capped else title)


@styled
def plot_pairs(view: RunView, out_dir: str, dpi: int) -> str:
    """Pair plot: histograms on the diagonal, scatter of every pair below it.

    At most :data:`MAX_PAIR_PARAMS` parameters (the first ones); the title
    says when more were left out.
    """
    d_all = len(view.param_names)
    d = min(d_all, MAX_PAIR_PARAMS)
    names = view.param_names[:d]
    pts = view.flat[:, :d]
    if pts.shape[0] > MAX_SCATTER:
        pts = pts[np.random.default_rng(0).choice(pts.shape[0], MAX_SCATTER, replace=False)]
    size = max(1.7, min(2.6, 11.0 / d))
    fig, axes = subplots(d, d, panel=(size, size))
    limits = [_limits(view.flat[:, k], view.truth.get(n)) for k, n in enumerate(names)]
    alpha = float(np.clip(15.0 / np.sqrt(pts.shape[0]), 0.15, 0.8))
    for i in range(d):
        for j in range(d):
            ax = axes[i, j]
            if j > i:  # upper triangle: the correlation of the mirrored pair
                ax.axis("off")
                r = np.corrcoef(pts[:, i], pts[:, j])[0, 1] if pts.shape[0] > 2 else np.nan
                if np.isfinite(r):
                    ax.text(0.5, 0.5, f"r = {r:+.2f}", transform=ax.transAxes, ha="center",
                            va="center", fontsize=8 + 7 * abs(r),
                            color="#b2182b" if r > 0 else "#2166ac")
                continue
            if i == j:
                ax.hist(pts[:, i], bins=30, range=limits[i], color="C0", alpha=0.6,
                        edgecolor="white", linewidth=0.3)
                mark_truth(ax, view.truth.get(names[i]), label=False)
                ax.set_yticks([])
            else:
                ax.scatter(pts[:, j], pts[:, i], s=5, alpha=alpha, color="C0", linewidths=0)
                ti, tj = view.truth.get(names[i]), view.truth.get(names[j])
                if ti is not None and tj is not None:
                    ax.plot([tj], [ti], marker="+", color="#d62728", markersize=11,
                            markeredgewidth=2, zorder=5)
                ax.set_ylim(limits[i])
            ax.set_xlim(limits[j])
            ax.grid(True, alpha=0.25)
            if i == d - 1:
                ax.set_xlabel(names[j])
            else:
                ax.tick_params(labelbottom=False)
            if j == 0 and i > 0:
                ax.set_ylabel(names[i])
            elif j > 0:
                ax.tick_params(labelleft=False)
    return save(fig, out_dir, "pairs", dpi, pair_title(view, pts.shape[0]))


def pair_title(view: RunView, n_points: int | None = None) -> str:
    """Title of the pair plot; says when parameters beyond :data:`MAX_PAIR_PARAMS` are left out."""
    d_all = len(view.param_names)
    n = min(view.flat.shape[0], MAX_SCATTER) if n_points is None else n_points
    title = f"{view.name}: pair plot of {n} draws, correlations above the diagonal"
    if view.truth:
        title += "\nred: the true \u03b8"
    if d_all > MAX_PAIR_PARAMS:
        title += f"\nfirst {MAX_PAIR_PARAMS} of {d_all} parameters only"
    return title
