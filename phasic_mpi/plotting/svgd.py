"""SVGD figures: particle trajectories and the per-iteration diagnostics."""

from __future__ import annotations

from typing import Any

import numpy as np

from phasic_mpi.plotting._style import (
    grid_shape,
    hide_unused,
    log_scale_if_wide,
    mark_truth,
    save,
    styled,
    subplots,
)
from phasic_mpi.plotting.run import MAX_PANELS, RunView, shown_params

__all__ = ["MAX_TRAJECTORIES", "plot_svgd_diagnostics", "plot_trajectories"]

MAX_TRAJECTORIES = 40  # particles drawn per panel (evenly spaced ids)


@styled
def plot_trajectories(view: RunView, out_dir: str, dpi: int) -> str | None:
    """Each parameter's particle values over the iterations, with their median.

    Reads the ``svgd/particles`` history (rows recorded every
    ``history_every`` iterations); ``None`` if the run recorded none.
    """
    rf = view.run
    rows = rf.rows()
    if not rows.get("svgd/particles"):
        return None
    particles = rf.history("svgd/particles")  # (rows, particle, parameter)
    if rows.get("svgd/particle_iteration") == particles.shape[0]:
        iters = rf.history("svgd/particle_iteration")
    else:
        iters = np.arange(1, particles.shape[0] + 1)
    n, d = particles.shape[1:]
    shown = np.unique(np.linspace(0, n - 1, min(n, MAX_TRAJECTORIES)).round().astype(int))
    params, capped = shown_params(view)
    if not view.draws.size:  # a stopped run: history, but no posterior to rank by
        params = list(range(min(d, MAX_PANELS)))
        capped = f"the first {MAX_PANELS} of {d} parameters" if d > MAX_PANELS else ""
    params = [k for k in params if k < d]
    r, c = grid_shape(len(params))
    fig, axes = subplots(r, c, panel=(4.4, 3.0))
    for panel, k in enumerate(params):
        name = rf.param_names[k]
        ax = axes.ravel()[panel]
        ax.plot(iters, particles[:, shown, k], color="C0", alpha=0.25, linewidth=0.8)
        ax.plot(iters, np.median(particles[:, :, k], axis=1), color="k", linewidth=1.6,
                label="median of all particles")
        mark_truth(ax, view.truth.get(name), axis="y")
        log_scale_if_wide(ax, particles[:, :, k])
        ax.set_xlabel("iteration")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.legend(loc="best")
    hide_unused(axes, len(params))
    sub = f"{shown.size} of {n} particles" if shown.size < n else f"all {n} particles"
    title = f"{view.name}: SVGD particle trajectories ({sub})"
    return save(fig, out_dir, "svgd_trajectories", dpi,
                f"{title}\n{capped}" if capped else title)


def _series(view: RunView, leaf: str) -> np.ndarray | None:
    name = f"svgd/diagnostics/{leaf}"
    if not view.run.rows().get(name):
        return None
    values = np.asarray(view.run.history(name), float)
    return values if values.ndim == 1 else None


def _positive_log(ax: Any, x: np.ndarray, y: np.ndarray, **kw: Any) -> None:
    """Plot the finite positive points of ``y`` against ``x`` on a log y-axis."""
    ok = np.isfinite(y) & (y > 0)
    ax.plot(x[ok], y[ok], **kw)
    if ok.any():
        ax.set_yscale("log")


@styled
def plot_svgd_diagnostics(view: RunView, out_dir: str, dpi: int) -> str | None:
    """Step norm ‖φ‖, kernelized Stein discrepancy and mean log p per iteration.

    ``None`` if the run has no step-norm history.
    """
    step = _series(view, "step_norm")
    if step is None:
        return None
    ksd, logp = _series(view, "ksd"), _series(view, "mean_logp")
    panels = 1 + (ksd is not None) + (logp is not None)
    fig, axes = subplots(1, panels, panel=(4.4, 3.2))
    axes = axes.ravel()
    it = np.arange(1, step.size + 1)
    _positive_log(axes[0], it, step, color="C0", linewidth=1.0)
    axes[0].set_title("step norm \u2016\u03c6\u2016 (RMS over particles)")
    axes[0].set_ylabel("\u2016\u03c6\u2016")
    k = 1
    if ksd is not None:
        ok = np.isfinite(ksd)
        _positive_log(axes[k], np.arange(1, ksd.size + 1)[ok], ksd[ok], color="C1",
                      marker="o", markersize=3, linewidth=1.0)
        axes[k].set_title(f"kernelized Stein discrepancy ({int(ok.sum())} evaluations)")
        axes[k].set_ylabel("KSD")
        k += 1
    if logp is not None:
        axes[k].plot(np.arange(1, logp.size + 1), logp, color="C2", linewidth=1.0)
        axes[k].set_title("mean log posterior of the particles")
        axes[k].set_ylabel("mean log p")
        finite = logp[np.isfinite(logp)]
        lo, hi = (np.quantile(finite, 0.05), finite.max()) if finite.size > 10 else (0, 0)
        if hi > lo:  # the early iterations can lie far below: zoom in on the approach
            axes[k].set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    for ax in axes:
        ax.set_xlabel("iteration")
    return save(fig, out_dir, "svgd_diagnostics", dpi, f"{view.name}: SVGD convergence")
