"""Convergence diagnostics as ArviZ computes them, and the warnings they call for.

ESS (bulk and tail), rank-normalized split-R-hat and the Monte Carlo
standard errors of mean and sd are ArviZ's (``arviz.ess``, ``arviz.rhat``,
``arviz.mcse``; Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021,
Bayesian Analysis 16(2)), computed by :mod:`phasic_mpi.analysis.fastdiag`:
ArviZ's algorithm vectorised over all entries, tested against ArviZ itself
to 1e-10. ArviZ loops over entries in Python and its import costs seconds,
so ``summary`` and ``plot`` of a model with thousands of parameters took
tens of seconds; they no longer import it.

Conventions, as ArviZ's: NaN with fewer than 4 draws or with NaN draws;
R-hat NaN with one chain (it compares chains) or constant draws, ``inf``
when each chain is constant but the chains differ; ESS of constant draws is
the number of draws. Independent draws (SVGD particles) have ESS = number
of draws and no R-hat.

:func:`convergence_warnings` turns the numbers into warnings (R-hat > 1.01,
ESS < 100 per chain, too few parallel-tempering round trips, a single
chain); ``phasic-mpi summary`` prints them, and :func:`report_convergence`
prints them at the end of a run from the in-memory results.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import numpy as np

from phasic_mpi.analysis import fastdiag

__all__ = [
    "ESS_PER_CHAIN_MIN",
    "RHAT_MAX",
    "ROUND_TRIPS_MIN",
    "STATISTICS",
    "convergence_warnings",
    "diagnose",
    "ess_bulk",
    "ess_tail",
    "flagged",
    "mcse_mean",
    "mcse_sd",
    "report_convergence",
    "rhat",
    "sampling_round_trips",
]

#: R-hat above this means the chains have not mixed (Vehtari et al. 2021, §4).
RHAT_MAX = 1.01
#: Bulk and tail ESS below this many per chain make R-hat and MCSE unreliable
#: (Vehtari et al. 2021, §4: "ESS > 400" for 4 chains).
ESS_PER_CHAIN_MIN = 100
#: Fewer round trips (b = 1 -> b = 0 -> b = 1) per chain while sampling than
#: this: the cold chain has visited the prior too rarely for its modes to be
#: weighted by more than a handful of independent restarts (Syed et al.,
#: JRSSB 2022, use the round-trip rate as the measure of a ladder's worth).
ROUND_TRIPS_MIN = 10
#: The per-parameter statistics of :func:`diagnose`.
STATISTICS = ("ess_bulk", "ess_tail", "rhat", "mcse_mean", "mcse_sd")
_MIN_DRAWS = 4


def _chains(x: Any) -> np.ndarray:
    arr = np.atleast_2d(np.asarray(x, dtype=np.float64))  # (draw,) is one chain
    if arr.ndim != 2:
        raise ValueError(f"expected draws of shape (chain, draw), got {arr.shape}")
    return arr


def diagnose(draws: Mapping[str, Any], *, independent: bool = False,
             statistics: tuple[str, ...] = STATISTICS) -> dict[str, dict[str, np.ndarray]]:
    """ESS, R-hat and MCSE of every entry of every parameter.

    Parameters
    ----------
    draws : mapping of str to array_like (chain, draw, *shape)
        All parameters must have the same numbers of chains and draws.
    independent : bool
        The draws are independent (SVGD particles): ESS = number of draws,
        R-hat NaN, MCSE of the mean ``sd / sqrt(n)``.
    statistics : tuple of str
        The statistics to compute (a subset of :data:`STATISTICS`); the
        others are NaN.

    Returns
    -------
    dict
        ``{name: {statistic: ndarray of shape *shape}}`` for every statistic
        in :data:`STATISTICS`.
    """
    arrays = {name: np.asarray(x, dtype=np.float64) for name, x in draws.items()}
    for name, x in arrays.items():
        if x.ndim < 2:
            raise ValueError(f"{name}: expected draws of shape (chain, draw, ...), "
                             f"got {x.shape}")
    out = {name: {s: np.full(x.shape[2:], math.nan) for s in STATISTICS}
           for name, x in arrays.items()}
    if not arrays:
        return out
    n_chain, n_draw = next(iter(arrays.values())).shape[:2]
    if independent:
        for name, x in arrays.items():
            n = n_chain * n_draw
            flat = x.reshape(n, *x.shape[2:])
            with np.errstate(all="ignore"):
                sd = np.std(flat, axis=0, ddof=1) if n > 1 else np.full(x.shape[2:], math.nan)
            out[name].update(ess_bulk=np.full(x.shape[2:], float(n)),
                             ess_tail=np.full(x.shape[2:], float(n)),
                             mcse_mean=sd / math.sqrt(n),
                             mcse_sd=sd / math.sqrt(2.0 * max(n - 1, 1)))
        return out
    if n_draw < _MIN_DRAWS:
        return out
    # every entry side by side: one vectorised computation per statistic
    stacked = np.concatenate([x.reshape(n_chain, n_draw, -1) for x in arrays.values()],
                             axis=2)
    results = fastdiag.statistics(stacked, tuple(statistics))
    for stat, values in results.items():
        start = 0
        for name, x in arrays.items():
            size = int(np.prod(x.shape[2:], dtype=np.int64))
            out[name][stat] = values[start:start + size].reshape(x.shape[2:])
            start += size
    return out


def _one(draws: Any, stat: str) -> float:
    return float(diagnose({"x": _chains(draws)})["x"][stat])


def ess_bulk(draws: Any) -> float:
    """Bulk effective sample size of ``(chain, draw)`` or ``(draw,)`` draws (ArviZ)."""
    return _one(draws, "ess_bulk")


def ess_tail(draws: Any) -> float:
    """Tail ESS: the smaller ESS of the 5 % and 95 % quantile indicators (ArviZ)."""
    return _one(draws, "ess_tail")


def rhat(draws: Any) -> float:
    """Rank-normalized split-R-hat (max of bulk and folded; ArviZ ``method="rank"``)."""
    return _one(draws, "rhat")


def mcse_mean(draws: Any) -> float:
    """Monte Carlo standard error of the posterior mean (ArviZ)."""
    return _one(draws, "mcse_mean")


def mcse_sd(draws: Any) -> float:
    """Monte Carlo standard error of the posterior sd (ArviZ)."""
    return _one(draws, "mcse_sd")


def flagged(stats: Mapping[str, np.ndarray], n_chains: int) -> np.ndarray:
    """Boolean per entry: R-hat > :data:`RHAT_MAX` or an ESS below the minimum.

    NaN statistics (undefined) do not flag an entry; :func:`convergence_warnings`
    says why they are undefined instead.
    """
    need = ESS_PER_CHAIN_MIN * max(n_chains, 1)
    with np.errstate(invalid="ignore"):
        return ((stats["rhat"] > RHAT_MAX) | (stats["ess_bulk"] < need)
                | (stats["ess_tail"] < need))


def _worst(values: dict[str, np.ndarray], largest: bool) -> tuple[str, float]:
    """Name (with the index of a vector entry) and value of the extreme non-NaN entry."""
    label, best = "", math.nan
    for name, arr in values.items():
        arr = np.asarray(arr, dtype=np.float64)
        defined = ~np.isnan(arr)
        if not defined.any():
            continue
        filled = np.where(defined, arr, -math.inf if largest else math.inf)
        i = int(np.argmax(filled) if largest else np.argmin(filled))
        v = float(arr.flat[i])
        if math.isnan(best) or (v > best if largest else v < best):
            index = ",".join(map(str, np.unravel_index(i, arr.shape)))
            label, best = (name if arr.ndim == 0 else f"{name}[{index}]"), v
    return label, best


def convergence_warnings(
    draws: Mapping[str, Any] | None = None,
    *,
    independent: bool = False,
    round_trips: Any = None,
    stats: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    n_chains: int | None = None,
) -> list[str]:
    """The convergence problems of a posterior sample, one sentence each.

    Parameters
    ----------
    draws : mapping of str to array_like (chain, draw, *shape), optional
        The posterior draws (e.g. the ``"draws"`` of an algorithm's final
        results); not needed if ``stats`` and ``n_chains`` are given.
    independent : bool
        The draws are independent (SVGD particles): no ESS or R-hat warnings.
    round_trips : array_like, optional
        Parallel tempering: round trips of each chain during the sampling
        rounds, shape ``(chain,)`` (or ``(round, chain)``, summed over rounds).
    stats : mapping, optional
        :func:`diagnose`'s result, if already computed.
    n_chains : int, optional
        Number of chains (taken from ``draws`` if omitted).

    Returns
    -------
    list of str
        Empty if nothing is wrong.
    """
    if stats is None or n_chains is None:
        arrays = {k: np.asarray(v) for k, v in (draws or {}).items()}
        if n_chains is None:
            n_chains = next(iter(arrays.values())).shape[0] if arrays else 0
        if stats is None:
            stats = diagnose(arrays, independent=independent)
    out: list[str] = []
    if not independent and stats:
        out += _mcmc_warnings(stats, n_chains)
    if round_trips is not None:
        trips = np.asarray(round_trips, dtype=np.float64)
        per_chain = trips.reshape(-1, trips.shape[-1]).sum(axis=0) if trips.ndim else trips[None]
        if per_chain.size and np.nanmin(per_chain) < ROUND_TRIPS_MIN:
            out.append(f"parallel tempering: {_fmt_counts(per_chain)} round trip(s) per chain "
                       f"while sampling (want >= {ROUND_TRIPS_MIN}): the cold chain rarely "
                       "reaches the prior and back; add replicas or rounds")
    return out


def _fmt_counts(values: np.ndarray) -> str:
    counts = [str(int(v)) if np.isfinite(v) else "?" for v in values]
    return ", ".join(counts[:8]) + (", ..." if len(counts) > 8 else "")


def _mcmc_warnings(stats: Mapping[str, Mapping[str, np.ndarray]], n_chains: int) -> list[str]:
    out = []
    total = sum(int(np.size(s["ess_bulk"])) for s in stats.values())
    of = f"of {total} parameter{'s' * (total != 1)}"
    if n_chains < 2:
        out.append("1 chain: R-hat needs at least 2 chains to compare, so convergence "
                   "is unchecked; run several chains (e.g. pt.chains = 4)")
    rh = {k: np.asarray(s["rhat"]) for k, s in stats.items()}
    with np.errstate(invalid="ignore"):
        n_bad = sum(int(np.sum(v > RHAT_MAX)) for v in rh.values())
    if n_bad:
        name, value = _worst(rh, largest=True)
        out.append(f"R-hat > {RHAT_MAX} for {n_bad} {of} (max {value:.3g} at {name}): "
                   "the chains disagree; run longer or reparameterize")
    need = ESS_PER_CHAIN_MIN * max(n_chains, 1)
    ess = {k: np.fmin(np.asarray(s["ess_bulk"]), np.asarray(s["ess_tail"]))
           for k, s in stats.items()}
    with np.errstate(invalid="ignore"):
        n_low = sum(int(np.sum(v < need)) for v in ess.values())
    if n_low:
        name, value = _worst(ess, largest=False)
        out.append(f"ESS < {ESS_PER_CHAIN_MIN} per chain ({need} in all) for {n_low} {of} "
                   f"(min {value:.0f} at {name}): R-hat and the Monte Carlo errors are "
                   "unreliable; draw more")
    return out


def sampling_round_trips(rounds: Any, round_trips: Any, warmup_rounds: int) -> np.ndarray | None:
    """Parallel tempering's round trips per round and chain in the sampling rounds.

    Parameters
    ----------
    rounds : array_like, shape (r,)
        Round numbers (history ``pt/round``).
    round_trips : array_like, shape (r, chain)
        Round trips per round and chain (history ``pt/round_trips``).
    warmup_rounds : int
        Rounds before this number are warm-up.

    Returns
    -------
    ndarray of shape (sampling rounds, chain), or None if there are none.
    """
    rounds = np.asarray(rounds).reshape(-1)
    trips = np.asarray(round_trips, dtype=np.float64)
    n = min(len(rounds), len(trips))
    sampling = rounds[:n] >= warmup_rounds
    return trips[:n][sampling].reshape(-1, trips.shape[-1]) if sampling.any() else None


def report_convergence(
    draws: Mapping[str, Any],
    *,
    independent: bool = False,
    round_trips: Any = None,
    file: TextIO | None = None,
    prefix: str = "phasic-mpi: warning: ",
) -> list[str]:
    """Print :func:`convergence_warnings` (one line each) and return them.

    For the end of a run, on rank 0, with the in-memory results: ``draws``
    (name -> ``(chain, draw, ...)``), whether they are ``independent``, and
    for parallel tempering the sampling rounds' ``round_trips`` per chain.
    Prints to ``file`` (default ``sys.stderr``).
    """
    found = convergence_warnings(draws, independent=independent, round_trips=round_trips)
    stream = sys.stderr if file is None else file
    for line in found:
        stream.write(f"{prefix}{line}\n")
    stream.flush()
    return found
