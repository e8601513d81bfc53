"""Exact order statistics of a multiset spread over MPI ranks.

:func:`select_pair` finds the values at two adjacent global sorted positions
by comparisons and integer counts only, so the answer has the same bits for
any number of ranks and any spread of the values (used for SVGD's median
bandwidth, :func:`phasic_mpi.inference.svgd.median_bandwidth`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phasic_mpi.inference.comm import as_communicator

__all__ = ["SELECT_GATHER", "SELECT_SAMPLE", "allgather_values", "allreduce_exact", "select_pair"]


def allreduce_exact(comm: Any, values: list, op: str) -> np.ndarray:
    """Element-wise SUM (int64), MIN or MAX (float64) of ``values`` over ``comm``.

    Sums of integers and minima/maxima are exact, so the result does not
    depend on the reduction order (unlike a floating-point sum).
    """
    return as_communicator(comm).allreduce_exact(values, op)


def allgather_values(comm: Any, local: np.ndarray) -> np.ndarray:
    """Every rank's 1-D float64 ``local``, concatenated in rank order."""
    return as_communicator(comm).allgather_values(local)


SELECT_SAMPLE = 1 << 10  # global pivot sample per selection round
SELECT_GATHER = 1 << 11  # candidates gathered and sorted once at most this many


def _pivots(comm: Any, values: np.ndarray, total: int, k: int, narrow: bool) -> tuple[float, float]:
    """Two candidate values a <= b bracketing global sorted position k, from a sample.

    A strided sample of about ``SELECT_SAMPLE`` values is gathered; a and b are
    the sample's order statistics 2 sqrt(S) (about 4 standard deviations)
    below and above k's share of it, or both that order statistic when
    ``narrow`` (a single pivot, which always shrinks the candidates). The
    pivots only steer the search: any a <= b taken from the candidates gives
    the same exact result, so their dependence on the rank count is harmless.
    """
    stride = max(1, total // SELECT_SAMPLE)
    sample = np.sort(allgather_values(comm, values[::stride]))
    at = min(len(sample) - 1, (k * len(sample)) // total)
    margin = 0 if narrow else int(2 * np.sqrt(len(sample))) + 1
    return float(sample[max(0, at - margin)]), float(sample[min(len(sample) - 1, at + margin)])


def _bin_of(k: int, n_below: int, n_upto: int) -> int:
    """0, 1 or 2: position k is among the values < a, in [a, b], or > b."""
    return 0 if k < n_below else 1 if k < n_upto else 2


def _bin_mask(less: np.ndarray, upto: np.ndarray, which: int) -> np.ndarray:
    """Mask of the values < a (0), in [a, b] (1) or > b (2), from v < a and v <= b."""
    return less if which == 0 else upto ^ less if which == 1 else ~upto  # less implies upto


def select_pair(comm: Any, values: np.ndarray, k: int) -> tuple[float, float]:
    """Exact values at global sorted positions k and k + 1 of all ranks' ``values``.

    A collective call on ``comm``; ``values`` is this rank's 1-D float64 part
    (possibly empty) of the global multiset, which must hold no NaN and at
    least k + 2 values. Distributed selection: per round, pivots a <= b from a
    gathered sample (:func:`_pivots`), exact global counts of the values < a
    and <= b (integer Allreduce), then the candidates keep only the bin that
    holds both positions; once at most ``SELECT_GATHER`` remain they are
    gathered and sorted. Values are only ever compared, never combined, so the
    answer is the exact order statistics of the multiset, whatever the
    number of ranks or how the values are spread over them.

    If the two positions fall in different bins, k is the last value of its
    bin and k + 1 the first of the next non-empty one: they are the bins'
    maximum and minimum (Allreduce MAX / MIN). Ties need no care beyond that:
    a bin [a, a] holding k and k + 1 holds only copies of a. Each round
    shrinks the candidates (a narrow round whenever a round did not), so the
    loop ends.
    """
    below = 0  # global count of values ordered before the candidates
    total = int(allreduce_exact(comm, [values.size], "sum")[0])
    narrow = False
    while total > SELECT_GATHER:
        a, b = _pivots(comm, values, total, k - below, narrow)
        less, upto = values < a, values <= b  # comparisons only: exact bins
        n_below, n_upto = (int(c) for c in allreduce_exact(
            comm, [np.count_nonzero(less), np.count_nonzero(upto)], "sum"))
        lo, hi = _bin_of(k - below, n_below, n_upto), _bin_of(k + 1 - below, n_below, n_upto)
        if lo != hi:
            top = values[_bin_mask(less, upto, lo)].max(initial=-np.inf)
            bottom = values[_bin_mask(less, upto, hi)].min(initial=np.inf)
            first, second = allreduce_exact(comm, [top], "max")[0], allreduce_exact(comm, [bottom], "min")[0]
            return float(first), float(second)
        if lo == 1 and a == b:
            return a, a
        values = values[_bin_mask(less, upto, lo)]
        size = [n_below, n_upto - n_below, total - n_upto][lo]
        narrow = size == total
        below += [0, n_below, n_upto][lo]
        total = size
    candidates = np.sort(allgather_values(comm, values))
    return float(candidates[k - below]), float(candidates[k + 1 - below])
