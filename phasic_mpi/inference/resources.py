"""What a run of each built-in algorithm will need per rank: memory and a time lower bound.

The run loop (:mod:`phasic_mpi.run.feasibility`) adds the density's own
cost (rows evaluated per iteration, declared here, times its measured cost
per row), compares the sums with the memory a rank may use and refuses a run
that cannot fit before any work.
Both figures are deliberately optimistic (a refused run cannot fit; a run
that passes may still be too large): the memory counts the arrays that grow
with the requested sizes, the time only work whose cost per unit is known
from below.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from phasic_mpi.inference.protocol import Resources
from phasic_mpi.inference.ptcold import PROBE_MOVES

__all__ = ["pt_resources", "svgd_resources"]

# Stein kernel, ns per pair of particles: 1 + 0.2 d, about 1/4 of libphase's
# measured cost (6.7 ns at d = 1, 7.7 at d = 3, 13.6 at d = 10 on one core).
STEIN_PAIR_NS = (1.0, 0.2)
MIN_MOVE_SECONDS = 1e-6  # a PT local move: at least one density call from Python
# PT evaluates proposals, which (in the warm-up above all, before the step sizes
# adapt) reach further into the tails than prior draws, where the likelihood
# costs more: 1.7x (Kingman(50)) and 3.9x (rabbits) the prior draws' cost per row
# measured (benchmarks/bench_feasibility.py), counted as 2.
PT_ROW_COST_FACTOR = 2.0


def svgd_resources(settings: Any, n_params: int, n_ranks: int,
                   kept_iterations: int = 0) -> Resources:
    """SVGD: every rank holds the global (n, d) arrays, the kernel visits n_local x n pairs.

    The global particles, scores and the arrays of one density evaluation
    over the global shape (:func:`phasic_mpi.inference.svgd.gather_block`)
    come to 21-23 n (d + 1) doubles at the peak (tracemalloc, n = 2000-8000,
    d = 1-20; ``tests/run/test_feasibility.py``), counted as 24; rank 0 also
    keeps a (n, d) snapshot every ``history_every`` of the
    ``kept_iterations`` iterations whose history is in memory (between
    checkpoints, or the whole run without a run file); the exact
    ``"median"`` bandwidth adds a rank's n_local (n - 1) / 2 pair distances,
    twice.
    """
    n, d = settings.particles, n_params
    local = -(-n // n_ranks)
    snapshots = kept_iterations // settings.history_every + 1 if settings.history_every else 0
    need = 8.0 * (24 * n * (d + 1) + snapshots * n * d)
    if settings.bandwidth == "median":
        need += 8.0 * local * (n - 1)
    per_pair = (STEIN_PAIR_NS[0] + STEIN_PAIR_NS[1] * d) * 1e-9
    # one density call per iteration over the rank's particles
    return Resources(need, settings.iterations * local * n * per_pair,
                     f"{n} particles x {d} parameters", local, settings.iterations)


def pt_resources(settings: Any, n_params: int, n_ranks: int,
                 kept_iterations: int = 0) -> Resources:
    """PT: the stored b = 1 draws and the log-likelihood pool; >= 1 µs per local move.

    The draws of the sampling rounds (2**rounds - 2**warmup_rounds scans)
    are kept as d + 2 values per chain and gathered on rank 0 (about 3
    copies at the end); the pool holds one value per local slot and
    sampling scan. The history in memory (one small report per round) is
    not counted (``kept_iterations`` is unused).
    """
    s, d = settings, n_params
    slots = s.chains * s.replicas
    local = -(-slots // n_ranks)
    scans = math.inf if s.rounds > 1000 else float(2**s.rounds)  # float(2**1024) overflows
    sampled = scans - 2.0 ** min(s.warmup_rounds, 1000)
    need = 8.0 * (3 * s.chains * sampled * (d + 2) + sampled * local)
    # a local step evaluates the rank's slots once (HMC: once per leapfrog step);
    # the extra b = 1 moves evaluate the rank's b = 1 slots
    per_step = s.leapfrog_steps if s.local_move == "hmc" else 1
    moves = s.local_steps * local + _cold_rows(s, n_ranks)
    return Resources(need, scans * moves * MIN_MOVE_SECONDS,
                     f"2**{s.rounds} - 1 scans x {slots} replicas x {d} parameters",
                     moves * per_step, scans, PT_ROW_COST_FACTOR)


def _cold_rows(settings: Any, n_ranks: int) -> int:
    """Rows of the extra b = 1 moves per scan on the rank holding the most b = 1
    slots (``cold_steps = "auto"``: the most it can choose, what its probe round makes)."""
    cold = PROBE_MOVES if settings.cold_steps == "auto" else settings.cold_steps
    if not cold:
        return 0
    n, slots = settings.replicas, settings.chains * settings.replicas
    ranks = min(n_ranks, slots)  # the blocks of parallel.block_layout
    base, extra = divmod(slots, ranks)
    counts = base + (np.arange(ranks) < extra)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    level0 = -(-(starts + counts) // n) + (-starts // n)  # ceil(stop / n) - ceil(start / n)
    return cold * int(level0.max())
