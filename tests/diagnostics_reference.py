"""ESS and R-hat written from the paper, as the oracle for ArviZ's numbers.

Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of
MCMC", Bayesian Analysis 16(2): split chains, rank-normalize with Blom's
offset, Geyer's initial monotone sequence for the autocorrelation sum.
phasic_mpi computes these with ArviZ (phasic_mpi.analysis.diagnostics); this
independent implementation (phasic_mpi's own until ArviZ replaced it) checks
that the numbers and their bookkeeping agree. The split-R-hat of a single
chain (its two halves) is computed here but not by ArviZ.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import fft, special, stats

_MIN_DRAWS = 4


def _chains(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected draws of shape (chain, draw), got {arr.shape}")
    return arr


def _split(x: np.ndarray) -> np.ndarray:
    """Split every chain into halves (the middle draw of an odd chain is dropped)."""
    half = x.shape[1] // 2
    return np.vstack([x[:, :half], x[:, x.shape[1] - half:]])


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Rank-normalize jointly over all chains (average ranks, Blom offset 3/8)."""
    ranks = stats.rankdata(x, method="average").reshape(x.shape)
    return special.ndtri((ranks - 0.375) / (x.size + 0.25))


def _rhat_raw(x: np.ndarray) -> float:
    n = x.shape[1]
    within = np.mean(np.var(x, axis=1, ddof=1))
    between = n * np.var(np.mean(x, axis=1), ddof=1)
    if within == 0.0:
        return math.nan if between == 0.0 else math.inf
    return float(np.sqrt((between / within + n - 1) / n))


def _ess_raw(x: np.ndarray) -> float:
    """ESS of (chain, draw) draws with Geyer's initial monotone sequence."""
    n_chain, n_draw = x.shape
    if np.ptp(x) < np.finfo(float).resolution:
        return float(x.size)  # constant: every draw is as good as independent (ArviZ's convention)
    m = fft.next_fast_len(2 * n_draw)
    centred = x - x.mean(axis=1, keepdims=True)
    spec = np.fft.rfft(centred, n=m, axis=1)
    acov = np.fft.irfft(spec * np.conjugate(spec), n=m, axis=1)[:, :n_draw] / n_draw
    mean_acov = acov.mean(axis=0)
    mean_var = mean_acov[0] * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(x.mean(axis=1), ddof=1)
    rho = np.zeros(n_draw)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - mean_acov[1]) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    # Geyer's initial positive sequence
    t = 1
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:
        rho_even = 1.0 - (mean_var - mean_acov[t + 1]) / var_plus
        rho_odd = 1.0 - (mean_var - mean_acov[t + 2]) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    # ... made monotone
    t = 1
    while t <= max_t - 2:
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1: max_t + 2])
    tau = max(tau, 1.0 / np.log10(x.size))
    return math.nan if np.isnan(rho).any() else float(x.size / tau)


def _undefined(x: np.ndarray) -> bool:
    return x.shape[1] < _MIN_DRAWS or bool(np.isnan(x).any())


def rhat(draws: Any) -> float:
    """Rank-normalized split-R-hat (max of bulk and folded-tail R-hat).

    Parameters
    ----------
    draws : array_like (chain, draw) or (draw,)
        With one chain this is the split-R-hat of its two halves.

    Returns
    -------
    float
        NaN with fewer than 4 draws, with NaN draws or for constant draws;
        ``inf`` when every split chain is constant but they differ.
    """
    x = _chains(draws)
    if _undefined(x):
        return math.nan
    with np.errstate(all="ignore"):
        s = _split(x)
        bulk = _rhat_raw(_z_scale(s))
        tail = _rhat_raw(_z_scale(np.abs(s - np.median(s))))
    defined = [r for r in (bulk, tail) if not math.isnan(r)]
    return max(defined) if defined else math.nan


def ess_bulk(draws: Any) -> float:
    """Bulk effective sample size (rank-normalized split chains)."""
    x = _chains(draws)
    if _undefined(x):
        return math.nan
    with np.errstate(all="ignore"):
        return _ess_raw(_z_scale(_split(x)))


def ess_tail(draws: Any, prob: float = 0.05) -> float:
    """Tail effective sample size: min ESS of the ``prob`` and ``1 - prob`` quantile indicators."""
    x = _chains(draws)
    if _undefined(x):
        return math.nan
    with np.errstate(all="ignore"):
        out = [_ess_raw(_split((x <= np.quantile(x, q)).astype(np.float64)))
               for q in (prob, 1.0 - prob)]
    return min(out)

