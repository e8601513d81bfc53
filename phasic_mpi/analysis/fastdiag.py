"""ArviZ's convergence diagnostics, vectorised over thousands of parameters.

``arviz.ess``, ``arviz.rhat`` and ``arviz.mcse`` (ArviZ 0.23) loop over the
entries of a variable in Python: a rank transform (``scipy.stats.rankdata``)
and a normal quantile (``scipy.stats.norm.ppf``) per entry and statistic cost
about 2 s for the 3151 weights of the BNN example, and importing ArviZ
(xarray, pandas) about as much again, in every ``summary`` and ``plot``. The
functions here follow ArviZ's code step by step (split chains, Blom's rank
transform, folding at the median, FFT autocovariances, Geyer's initial
positive and monotone sequences, R's type-7 quantiles for the tail ESS) with
every entry in one numpy array; ``tests/analysis/test_fastdiag.py`` checks
them against ArviZ itself to 1e-10 on random, tied, constant, NaN and
odd-length draws.

Conventions, as ArviZ's: NaN for an entry with a NaN draw or with fewer
than 4 draws; R-hat needs 2 chains.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.fft import next_fast_len
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = ["MIN_DRAWS", "statistics"]

MIN_DRAWS = 4
_BLOM = 3.0 / 8.0  # fractional offset of the rank transform (Blom 1958), as ArviZ


def _split(x: np.ndarray) -> np.ndarray:
    """(chain, draw, K) -> (2 chain, draw // 2, K): first and last halves as chains."""
    half = x.shape[1] // 2
    return np.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks of each entry (ties get average ranks)."""
    flat = x.reshape(-1, x.shape[-1])
    ranks = rankdata(flat, method="average", axis=0)
    return ndtri((ranks - _BLOM) / (flat.shape[0] - 2 * _BLOM + 1)).reshape(x.shape)


def _rhat(x: np.ndarray) -> np.ndarray:
    """Potential scale reduction of (chain, draw, K) per entry."""
    n = x.shape[1]
    between = n * np.var(np.mean(x, axis=1), axis=0, ddof=1)
    within = np.mean(np.var(x, axis=1, ddof=1), axis=0)
    return np.sqrt((between / within + n - 1) / n)


def _autocov(x: np.ndarray) -> np.ndarray:
    """Autocovariances of every chain and entry along the draw axis (by FFT)."""
    n = x.shape[1]
    m = next_fast_len(2 * n)
    centred = x - x.mean(axis=1, keepdims=True)
    f = np.fft.rfft(centred, n=m, axis=1)
    f *= np.conjugate(f)
    return np.fft.irfft(f, n=m, axis=1)[:, :n] / n


def _geyer(rho: np.ndarray, even: np.ndarray, odd: np.ndarray, mean_var: np.ndarray,
           var_plus: np.ndarray, acov_mean: np.ndarray) -> np.ndarray:
    """Geyer's initial positive sequence: fills ``rho`` (K, n); returns max_t (K,)."""
    n = rho.shape[1]
    active = np.ones(rho.shape[0], dtype=bool)
    t_end = np.ones(rho.shape[0], dtype=np.int64)
    rows = np.arange(rho.shape[0])
    for t in range(1, n - 3, 2):
        active &= (even + odd) > 0.0
        if not active.any():
            break
        new_even = 1.0 - (mean_var - acov_mean[:, t + 1]) / var_plus
        new_odd = 1.0 - (mean_var - acov_mean[:, t + 2]) / var_plus
        even = np.where(active, new_even, even)
        odd = np.where(active, new_odd, odd)
        keep = active & (new_even + new_odd >= 0)
        rho[keep, t + 1] = new_even[keep]
        rho[keep, t + 2] = new_odd[keep]
        t_end[active] = t + 2
    max_t = t_end - 2
    improve = even > 0
    rho[rows[improve], max_t[improve] + 1] = even[improve]
    return max_t


def _ess(x: np.ndarray) -> np.ndarray:
    """Effective sample size of (chain, draw, K) per entry (ArviZ's ``_ess``)."""
    n_chain, n = x.shape[:2]
    k = x.shape[2]
    out = np.full(k, float(n_chain * n))
    constant = (np.max(x, axis=(0, 1)) - np.min(x, axis=(0, 1))) < np.finfo(float).resolution
    todo = np.flatnonzero(~constant)
    if todo.size == 0:
        return out
    x = x[:, :, todo]
    acov = _autocov(x)  # (chain, n, K)
    mean_var = np.mean(acov[:, 0], axis=0) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if n_chain > 1:
        var_plus = var_plus + np.var(x.mean(axis=1), axis=0, ddof=1)
    acov_mean = np.mean(acov, axis=0).T  # (K, n)
    rho = np.zeros((todo.size, n))
    rho[:, 0] = 1.0
    odd = 1.0 - (mean_var - acov_mean[:, 1]) / var_plus
    rho[:, 1] = odd
    max_t = _geyer(rho, np.ones(todo.size), odd, mean_var, var_plus, acov_mean)
    for t in range(1, int(max_t.max(initial=0)) - 1, 2):  # initial monotone sequence
        fix = (t <= max_t - 2) & (rho[:, t + 1] + rho[:, t + 2] > rho[:, t - 1] + rho[:, t])
        rho[fix, t + 1] = (rho[fix, t - 1] + rho[fix, t]) / 2.0
        rho[fix, t + 2] = rho[fix, t + 1]
    rows = np.arange(todo.size)
    head = _prefix_sums(rho, max_t)
    tail = np.where(max_t + 1 < n, rho[rows, np.minimum(max_t + 1, n - 1)], 0.0)
    total = n_chain * n
    tau = np.maximum(-1.0 + 2.0 * head + tail, 1.0 / math.log10(total))
    ess = total / tau
    ess[np.isnan(rho).any(axis=1)] = np.nan
    out[todo] = ess
    return out


def _prefix_sums(rho: np.ndarray, max_t: np.ndarray) -> np.ndarray:
    """``sum(rho[r, :max_t[r] + 1])`` for every row (0 where ``max_t < 0``)."""
    csum = np.cumsum(rho, axis=1)
    idx = np.clip(max_t, 0, rho.shape[1] - 1)
    return np.where(max_t >= 0, csum[np.arange(rho.shape[0]), idx], 0.0)


def _type7(x: np.ndarray, p: float) -> np.ndarray:
    """R's type-7 quantile of the pooled draws of each entry (``scipy.stats.mstats.mquantiles``)."""
    flat = np.sort(x.reshape(-1, x.shape[-1]), axis=0)
    n = flat.shape[0]
    aleph = n * p + (1.0 - p)  # alphap = betap = 1
    k = int(np.floor(np.clip(aleph, 1, n - 1)))
    gamma = float(np.clip(aleph - k, 0, 1))
    return (1.0 - gamma) * flat[k - 1] + gamma * flat[k]


def _rhat_rank(x: np.ndarray) -> np.ndarray:
    split = _split(x)
    bulk = _rhat(_z_scale(split))
    folded = np.abs(split - np.median(split.reshape(-1, split.shape[-1]), axis=0))
    tail = _rhat(_z_scale(folded))
    return np.where(tail > bulk, tail, bulk)  # Python's max(bulk, tail), NaN as ArviZ


def _mcse_sd(x: np.ndarray) -> np.ndarray:
    sims = (x - x.reshape(-1, x.shape[-1]).mean(axis=0)) ** 2
    ess = _ess(_split(sims))
    evar = sims.reshape(-1, x.shape[-1]).mean(axis=0)
    varvar = ((sims ** 2).reshape(-1, x.shape[-1]).mean(axis=0) - evar ** 2) / ess
    return np.sqrt(varvar / evar / 4)


_STATISTICS = {
    "ess_bulk": lambda x: _ess(_z_scale(_split(x))),
    "ess_tail": lambda x: np.minimum(*(_ess(_split((x <= _type7(x, p)).astype(float)))
                                       for p in (0.05, 0.95))),
    "rhat": _rhat_rank,
    "mcse_mean": lambda x: np.std(x.reshape(-1, x.shape[-1]), axis=0, ddof=1)
    / np.sqrt(_ess(_split(x))),
    "mcse_sd": _mcse_sd,
}


def statistics(x: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The statistics ``names`` (of ``ess_bulk, ess_tail, rhat, mcse_mean, mcse_sd``)
    of draws ``x`` of shape (chain, draw, K), each an array (K,).

    NaN for entries with a NaN draw, for fewer than :data:`MIN_DRAWS` draws,
    and R-hat with one chain.
    """
    x = np.asarray(x, dtype=np.float64)
    n_chain, n_draw, k = x.shape
    out = {name: np.full(k, math.nan) for name in names}
    ok = np.flatnonzero(~np.isnan(x).any(axis=(0, 1)))
    if n_draw < MIN_DRAWS or ok.size == 0:
        return out
    with np.errstate(all="ignore"):
        for name in names:
            if name == "rhat" and n_chain < 2:
                continue
            out[name][ok] = _STATISTICS[name](x[:, :, ok])
    return out
