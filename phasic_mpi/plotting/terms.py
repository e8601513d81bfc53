"""Posterior-predictive check of likelihood terms: an observed SFS (and observed
moments) against the replicates the run file stores.

The replicates are the run's ``posterior_predictive`` variables
(:mod:`phasic_mpi.model.termdata`): counts drawn from the model's expected
SFS at each posterior draw (Poisson or multinomial), not simulated
genealogies; moments drawn from N(m(θ), se). Nothing is recomputed here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phasic_mpi.plotting._style import DATA_COLOR, note, save, styled, subplots
from phasic_mpi.plotting.run import RunView

__all__ = ["plot_term_predictive"]

BAND = (0.05, 0.5, 0.95)


def _band(replicates: np.ndarray) -> np.ndarray | None:
    """``(3, n)`` 5/50/95 % quantiles over the draws that have replicates, or None."""
    flat = replicates.reshape(-1, replicates.shape[-1])
    flat = flat[np.isfinite(flat).all(axis=1)]
    return np.quantile(flat, BAND, axis=0) if flat.shape[0] else None


def _sfs_panel(ax: Any, name: str, attrs: dict[str, Any], observed: np.ndarray,
               band: np.ndarray) -> None:
    classes = np.arange(1, observed.size + 1)
    ax.bar(classes, observed, width=0.8, color=DATA_COLOR, alpha=0.6, label="observed counts")
    ax.errorbar(classes, band[1], yerr=[band[1] - band[0], band[2] - band[1]], fmt="o",
                color="C0", markersize=3.5, elinewidth=1.4, capsize=2.5,
                label="posterior predictive median, 5\u201395 %")
    folded = "folded " if attrs.get("folded") else ""
    ax.set_xlabel(f"{folded}frequency class (samples carrying the derived allele)"
                  if not folded else "folded frequency class (minor allele count)")
    ax.set_ylabel("segregating sites")
    ax.set_xticks(classes)
    ax.set_title(f"{name}: {attrs.get('likelihood')} likelihood, "
                 f"{observed.sum():.0f} sites")
    ax.legend(loc="upper right")


def _moment_panel(ax: Any, name: str, attrs: dict[str, Any], observed: np.ndarray,
                  se: np.ndarray, band: np.ndarray) -> None:
    idx = np.arange(observed.size)
    ax.errorbar(idx - 0.1, observed, yerr=2 * se, fmt="s", color="k", markersize=4,
                capsize=3, label="observed \u00b1 2 se")
    ax.errorbar(idx + 0.1, band[1], yerr=[band[1] - band[0], band[2] - band[1]], fmt="o",
                color="C0", markersize=3.5, capsize=2.5,
                label="posterior predictive median, 5\u201395 %")
    ax.set_xticks(idx)
    ax.set_xlim(-0.6, observed.size - 0.4)
    ax.set_xlabel("moment (reward column)")
    ax.set_ylabel(str(attrs.get("kind")))
    ax.set_title(f"{name}: observed {attrs.get('kind')}s")
    ax.legend(loc="best")


@styled
def plot_term_predictive(view: RunView, out_dir: str, dpi: int) -> str | None:
    """Observed SFS counts (and moments) against their posterior-predictive bands.

    One panel per stored term; ``sfs_predictive.png`` (or
    ``moment_predictive.png`` without an SFS). ``None`` for a run without
    stored terms or replicates.
    """
    terms = view.run.term_attrs()
    if not terms or view.draws.size == 0:
        return None
    observed = view.run.read_group("observed_data")
    replicates = view.run.read_group("posterior_predictive")
    panels = []
    for attrs in terms:
        name = str(attrs.get("variable"))
        band = _band(replicates[name]) if name in replicates else None
        if name not in observed or band is None:
            note(view.name, f"no predictive check of term {name!r}: no replicates stored")
            continue
        panels.append((name, attrs, band))
    if not panels:
        return None
    fig, axes = subplots(1, len(panels), panel=(5.0, 3.6))
    for ax, (name, attrs, band) in zip(axes[0], panels):
        if attrs.get("term") == "sfs":
            _sfs_panel(ax, name, attrs, observed[name], band)
        else:
            _moment_panel(ax, name, attrs, observed[name], observed[f"{name}_se"], band)
    n_draws = view.draws.shape[0] * view.draws.shape[1]
    has_sfs = any(a.get("term") == "sfs" for _, a, _ in panels)
    title = (f"{view.name}: likelihood terms, posterior-predictive check ({n_draws} draws)\n"
             "replicates drawn from the model's expected values, not simulated genealogies")
    return save(fig, out_dir, "sfs_predictive" if has_sfs else "moment_predictive", dpi, title)
