"""Parallel-tempering figures: β = 1 traces, the ladder per round, swaps and round trips."""

from __future__ import annotations

import math
import warnings
from typing import Any

import matplotlib
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
from phasic_mpi.plotting.run import RunView, shown_params
from phasic_mpi.analysis.summary import ess_bulk, rhat

__all__ = ["plot_ladder", "plot_swaps", "plot_trace"]


def _fmt(x: float, spec: str) -> str:
    return "\u2014" if math.isnan(x) else format(x, spec)


@styled
def plot_trace(view: RunView, out_dir: str, dpi: int) -> str | None:
    """Trace of every β = 1 chain per parameter, and of its log-likelihood.

    Panel titles give the bulk ESS and R-hat of the pooled chains.
    """
    if view.draws.size == 0:
        return None
    n_chains, n_draws, d = view.draws.shape
    stats = view.run.sample_stats()  # files before the pointwise group named the total so
    loglik = stats.get("log_likelihood_total", stats.get("log_likelihood"))
    extra = loglik is not None and np.shape(loglik)[:2] == (n_chains, n_draws)
    shown, capped = shown_params(view)
    r, c = grid_shape(len(shown) + extra, max_cols=2)
    fig, axes = subplots(r, c, panel=(5.2, 2.6))
    x = np.arange(n_draws)
    series = [(view.param_names[k], view.draws[:, :, k]) for k in shown]
    if extra:
        series.append(("log-likelihood", np.asarray(loglik, float)))
    for k, (name, y) in enumerate(series):
        ax = axes.ravel()[k]
        for ch in range(n_chains):
            ax.plot(x, y[ch], color=CHAIN_COLORS[ch % 10], linewidth=0.6, alpha=0.8,
                    label=f"chain {ch}" if n_chains > 1 else None)
        mark_truth(ax, view.truth.get(name), axis="y")
        if view.truth.get(name) is not None:  # each panel names its own true value
            truth = [h for h in ax.get_lines() if h.get_label().startswith("true ")]
            ax.legend(handles=truth, loc="upper right")
        ax.set_title(f"{name}   ESS {_fmt(ess_bulk(y), '.0f')}, R\u0302 {_fmt(rhat(y), '.3f')}")
        ax.set_xlabel("draw (scan after warm-up)")
        ax.set_ylabel(name)
    hide_unused(axes, len(series))
    chains = [h for h in axes[0, 0].get_lines() if h.get_label().startswith("chain ")]
    title = f"{view.name}: trace of the \u03b2 = 1 chains ({n_chains} x {n_draws} draws)"
    return save(fig, out_dir, "pt_trace", dpi, f"{title}\n{capped}" if capped else title,
                legend_from=(chains, [h.get_label() for h in chains]))


def _history(view: RunView, leaf: str) -> np.ndarray | None:
    name = f"pt/{leaf}"
    if not view.run.rows().get(name):
        return None
    return np.asarray(view.run.history(name), float)


def _per_round(view: RunView, leaf: str) -> tuple[np.ndarray, np.ndarray] | None:
    """History ``pt/<leaf>`` (one row per round) and the round numbers; ``None`` if absent."""
    values = _history(view, leaf)
    if values is None:
        return None
    rounds = _history(view, "round")
    n = values.shape[0]
    return values, (rounds.astype(int) if rounds is not None and rounds.size == n
                    else np.arange(n))


def _shade_warmup(ax: Any, view: RunView, rounds: np.ndarray) -> None:
    """Grey background over the warm-up rounds (the ladder adapts there)."""
    warmup = int(((view.run.config.get("pt") or {}).get("warmup_rounds")) or 0)
    if warmup > 0 and rounds.size:
        ax.axvspan(rounds.min() - 0.5, min(warmup, rounds.max() + 1) - 0.5, color="0.9",
                   zorder=0, label="warm-up")


def _lines(ax: Any, x: np.ndarray, y: np.ndarray, labels: list[str] | None = None) -> None:
    """One line per column of ``y`` (levels or pairs), coloured along viridis from β = 1."""
    cmap = matplotlib.colormaps["viridis"]
    n = y.shape[1]
    for j in range(n):
        ax.plot(x, y[:, j], marker="o", markersize=3, linewidth=1.0,
                color=cmap(j / max(n - 1, 1)), label=labels[j] if labels else None)


def _chain_bars(ax: Any, x: np.ndarray, values: np.ndarray) -> None:
    """Bars of ``values`` (chain, len(x)) grouped by x, one colour per chain."""
    n_chains = values.shape[0]
    width = 0.8 / n_chains
    for ch in range(n_chains):
        ax.bar(x + (ch - (n_chains - 1) / 2) * width, values[ch], width=width,
               color=CHAIN_COLORS[ch % 10], label=f"chain {ch}")


@styled
def plot_ladder(view: RunView, out_dir: str, dpi: int) -> str | None:
    """The β ladder used in each round and the barrier Λ it implies."""
    found = _per_round(view, "betas")  # (round, chain, level)
    if found is None:
        return None
    betas, rounds = found
    n_levels = betas.shape[2]
    lam = _history(view, "Lambda")  # (round, chain)
    fig, axes = subplots(1, 2 if lam is not None else 1, panel=(5.0, 3.6))
    ax = axes[0, 0]
    _shade_warmup(ax, view, rounds)
    _lines(ax, rounds, betas[:, 0, :])  # one ladder for all chains: chain 0's
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_ylim(-1e-4, 1.3)
    ax.set_xlabel("round")
    ax.set_ylabel("\u03b2 (symlog scale)")
    ax.set_title(f"ladder of {n_levels} levels per round (\u03b2 = 1 at top)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    if lam is not None:
        ax = axes[0, 1]
        _shade_warmup(ax, view, rounds)
        for ch in range(lam.shape[1]):
            ax.plot(rounds, lam[:, ch], marker="o", markersize=3, color=CHAIN_COLORS[ch % 10],
                    label=f"chain {ch}")
        ax.set_xlabel("round")
        ax.set_ylabel("\u039b (sum of swap rejection rates)")
        ax.set_title("communication barrier \u039b per round")
        ax.set_ylim(bottom=0)
        ax.legend(loc="best")
    return save(fig, out_dir, "pt_ladder", dpi, f"{view.name}: tempering ladder")


@styled
def plot_swaps(view: RunView, out_dir: str, dpi: int) -> str | None:
    """Swap acceptance per adjacent pair (last round; per round as lines) and round trips."""
    found = _per_round(view, "swap_accept")  # (round, chain, pair)
    if found is None:
        return None
    accept, rounds = found
    n_pairs = accept.shape[2]
    trips = _history(view, "round_trips")  # (round, chain)
    fig, axes = subplots(1, 3 if trips is not None else 2, panel=(4.6, 3.6))
    ax = axes[0, 0]
    pairs = np.arange(n_pairs)
    _chain_bars(ax, pairs, accept[-1])
    ax.set_xticks(pairs, [f"{j}\u2194{j + 1}" for j in pairs], rotation=45 if n_pairs > 10 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("adjacent levels (0: \u03b2 = 1)")
    ax.set_ylabel("swap acceptance")
    ax.set_title(f"swap acceptance per pair, round {rounds[-1]} (last)")

    ax = axes[0, 1]
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pair without swaps in a round: NaN
        mean = np.nanmean(accept, axis=1)  # over chains
    _lines(ax, rounds, mean, [f"{j}\u2194{j + 1}" for j in range(n_pairs)])
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("round")
    ax.set_ylabel("swap acceptance (mean over chains)")
    ax.set_title("swap acceptance per pair and round")
    ax.legend(loc="lower right", ncol=2 if n_pairs > 4 else 1, fontsize=7, title="pair",
              title_fontsize=7)

    if trips is not None:
        ax = axes[0, 2]
        _chain_bars(ax, rounds, trips.T)
        ax.set_xlabel("round (round $r$ has $2^r$ scans)")
        ax.set_ylabel("round trips (\u03b2 = 1 \u2192 0 \u2192 1)")
        ax.set_title(f"round trips per round (total {int(np.nansum(trips))})")
    return save(fig, out_dir, "pt_swaps", dpi, f"{view.name}: replica swaps",
                legend_from=axes[0, 0])
