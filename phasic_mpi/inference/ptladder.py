"""The temperature ladder of parallel tempering: its start, its re-spacing,
and whether a run had enough temperatures (:mod:`phasic_mpi.inference.pt`).

Round-trip model (Syed et al. 2022, non-reversible PT): with swap rejection
r_j between levels j and j + 1, a chain makes about
1 / (2 + 2 sum_j r_j / (1 - r_j)) round trips between b = 0 and b = 1 per
scan. A scan costs N slots, so round trips per unit of work are that over
N; with the rejection spread evenly (r = Lambda / (N - 1), what the ladder
adaptation aims at) this is largest near N = 2 Lambda + 1 temperatures.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["initial_ladder", "replica_warning", "respace_ladder", "round_trips_per_slot"]

MIN_REJECTION = 1e-6  # keeps the cumulative barrier strictly increasing
# Warn when the run's round trips per slot-scan fall below this share of what
# ceil(2 Lambda + 1) temperatures would give: at 5 replicas that is Lambda >~ 3.3,
# every neighbouring pair rejecting ~83 % of its swaps.
WARN_BELOW = 0.5


def initial_ladder(n: int) -> np.ndarray:
    """b_j = (1 - j/(N-1))^3: dense near 0, where power posteriors change fastest."""
    return (1.0 - np.arange(n) / (n - 1)) ** 3


def respace_ladder(betas: np.ndarray, rejection: np.ndarray) -> np.ndarray:
    """New ladder with equal rejection between neighbours (Syed et al. 2022).

    The cumulative rejection along the current ladder estimates the
    communication barrier Lambda(b); the new levels are where it reaches
    k Lambda / (N - 1). Returns the old ladder if the rates are unusable.
    """
    rej = np.asarray(rejection, dtype=float)
    if rej.size != betas.size - 1 or not np.all(np.isfinite(rej)):
        return betas.copy()
    ascending_b = betas[::-1]
    barrier = np.concatenate([[0.0], np.cumsum(np.maximum(rej[::-1], MIN_REJECTION))])
    targets = np.linspace(0.0, barrier[-1], betas.size)
    new = np.interp(targets, barrier, ascending_b)[::-1].copy()
    new[0], new[-1] = 1.0, 0.0
    if not np.all(np.diff(new) < 0):
        return betas.copy()
    return new


def round_trips_per_slot(rejection: np.ndarray) -> float:
    """Round trips per chain per scan, divided by the N temperatures a scan moves
    (the model in the module docstring), for per-pair rejections ``rejection``
    (N - 1 of them); 0 if some pair never swaps."""
    rej = np.asarray(rejection, dtype=float)
    if rej.size == 0 or not np.all(rej < 1.0):
        return 0.0
    return 1.0 / ((rej.size + 1) * (2.0 + 2.0 * float(np.sum(rej / (1.0 - rej)))))


def replica_warning(rejection: np.ndarray, replicas: int) -> str | None:
    """A message if ``replicas`` temperatures were too few for the barrier the
    run measured, else None.

    ``rejection``: (chains, N - 1) swap rejections of the last round. Compares
    the round trips per slot-scan these rejections give with those of
    ceil(2 Lambda + 1) evenly spaced temperatures (Lambda: the chains' mean
    barrier); below :data:`WARN_BELOW` of it the run spent most of its work
    waiting for swaps, and mode weights rest on few round trips.
    """
    rej = np.asarray(rejection, dtype=float)
    if rej.ndim != 2 or rej.size == 0 or not np.all(np.isfinite(rej)):
        return None
    barrier = float(rej.sum(axis=1).mean())
    best = math.ceil(2.0 * barrier + 1.0)
    if best <= replicas:
        return None
    have = float(np.mean([round_trips_per_slot(r) for r in rej]))
    could = round_trips_per_slot(np.full(best - 1, barrier / (best - 1)))
    if have >= WARN_BELOW * could:
        return None
    # a pair rejecting nearly all swaps caps its share of Lambda at 1: the barrier may be larger
    bound = "at least" if float(rej.max()) > 0.9 else "about"
    return (f"pt: the tempering barrier Lambda = {barrier:.3g} calls for {bound} {best} replicas per chain "
            f"(ceil(2 Lambda + 1)); with {replicas}, neighbouring temperatures rejected "
            f"{100 * float(rej.mean()):.0f} % of their swaps and round trips between prior and posterior "
            f"were {could / max(have, 1e-300):.2g} x rarer per unit of work than with {best}: the chains "
            f"may not have weighed all modes. Set pt.replicas = {best}.")
