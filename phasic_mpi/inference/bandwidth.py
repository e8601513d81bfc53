"""SVGD's kernel bandwidth: the median heuristic over all pairs (an exact
distributed selection) or over a pseudo-random subset of pairs (no
communication), with the same bits for any number of ranks."""

from __future__ import annotations

from typing import Any

import numpy as np

from phasic_mpi._libphase import ffi, lib
from phasic_mpi.inference.comm import SerialCommunicator, as_communicator
from phasic_mpi.inference.selection import allgather_values, allreduce_exact, select_pair
from phasic_mpi.inference.stein import row_pointer

__all__ = ["PAIR_BLOCK", "STREAM_BANDWIDTH", "median_bandwidth", "pair_count", "pair_sq_distances",
           "subset_median_bandwidth"]

STREAM_BANDWIDTH = 2  # purpose of the bandwidth's pair draws: key (seed, 2), counters (iteration, 0, 0, b)
_MASK = (1 << 64) - 1


def pair_count(n: int, rows: range) -> int:
    """How many pairs :func:`pair_sq_distances` gives for ``rows`` of n particles."""
    count = len(rows) * ((n - 1) // 2)
    if n % 2 == 0 and len(rows):  # rows i < n/2 also take partner i + n/2
        count += max(0, min(rows.stop, n // 2) - rows.start)
    return count


PAIR_BLOCK = 64  # rows per cdist call in pair_sq_distances (scratch ~ PAIR_BLOCK x n/2 doubles)


def pair_sq_distances(z: np.ndarray, rows: range) -> np.ndarray:
    """|z_i - z_j|^2 of the pairs that the particles ``rows`` own, flat, each pair once.

    Parameters
    ----------
    z : (n, d) array
        The global particles.
    rows : range
        Global indices i of the rows to compute (this rank's block).

    Returns
    -------
    (pair_count(n, rows),) array
        Row i's values in order of i, then of j = i + 1, ..., i + c_i (mod n),
        with h = floor((n - 1) / 2) and c_i = h + 1 if n is even and i < n/2,
        else c_i = h: about n/2 values per row, so blocks of rows are
        balanced.

    Every unordered pair {i, j} is owned exactly once. Let t = (j - i) mod n
    in 1..n-1; the pair lies in row i at offset t, or in row j at offset
    n - t, and nowhere else. If t <= h and n - t <= h, then n <= 2h <= n - 1,
    impossible: at most one of the two offsets is <= h. If t > h and n - t > h,
    then n >= 2h + 2, which for odd n (2h + 2 = n + 1) is impossible, and for
    even n (2h + 2 = n) forces t = n - t = n/2: that pair is taken only by
    the one of i, j below n/2 (exactly one is, as they differ by n/2).
    Otherwise exactly one offset is <= h. So the n rows hold
    n h + [n even] n/2 = n (n - 1) / 2 values, each pair once.

    Each value is scipy's ``sqeuclidean`` of (z_i, z_j), s = 0; s += (z_ic -
    z_jc)^2 for c = 0..d-1 in order, computed per pair on its own (the same
    function as main's pdist, so the same bits): they do not depend on the
    rank or block computing them. Row i's partners are contiguous in the
    doubled array [z; z[:c]] (the wrap-around, no fancy indexing), so up to
    ``PAIR_BLOCK`` consecutive rows with the same c_i take one ``cdist`` of
    the block against the rows spanning all their partners, into a scratch
    of PAIR_BLOCK x (PAIR_BLOCK - 1 + c) doubles, whose band (row r's
    columns r .. r + c - 1) is copied into the one preallocated output
    buffer: no second copy of the pairs.
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy.spatial.distance import cdist

    n, _ = z.shape
    half = (n - 1) // 2
    out = np.empty(pair_count(n, rows))
    if out.size == 0:
        return out
    width = half + (n % 2 == 0)  # the largest c_i
    zz = np.concatenate([z, z[:width]])  # partners of every row are contiguous in zz
    block = max(1, min(PAIR_BLOCK, len(rows)))
    scratch = np.empty(block * (block - 1 + width))
    pos, i0 = 0, rows.start
    while i0 < rows.stop:
        c = half + 1 if n % 2 == 0 and i0 < n // 2 else half
        # a block of rows with the same c (even n: split at n/2)
        i1 = min(rows.stop, i0 + block, n // 2 if n % 2 == 0 and i0 < n // 2 else n)
        b, cols = i1 - i0, i1 - i0 - 1 + c
        if c:
            tmp = scratch[:b * cols].reshape(b, cols)
            cdist(z[i0:i1], zz[i0 + 1:i1 + c], "sqeuclidean", out=tmp)
            # row r's partners i0+r+1 .. i0+r+c are tmp[r, r:r+c]: flat offset r (cols + 1)
            band = sliding_window_view(scratch[:b * cols], c)[::cols + 1]
            out[pos:pos + b * c].reshape(b, c)[:] = band
            pos += b * c
        i0 = i1
    return out


def median_bandwidth(z: np.ndarray, comm: Any = None, rows: range | None = None) -> float:
    """h = median_{i<j} |z_i - z_j|^2 / log(n + 1); 1 if not positive and finite.

    Parameters
    ----------
    z : (n, d) array
        The global particles (every rank holds them).
    comm : MPI communicator, optional
        A collective call on ``comm``; serial (and all rows) if None.
    rows : range, optional
        This rank's particles; all n if None.

    Each rank computes the :func:`pair_sq_distances` its rows own (each of
    the M = n (n - 1) / 2 pairs is owned by exactly one row, each value has
    the same bits whichever rank computes it), and the median is taken of
    that multiset as numpy does: the value at sorted position (M - 1) / 2 for
    odd M, (a + b) / 2 of the values a, b at positions M/2 - 1 and M/2 for
    even M (np.median's mean of the two middle values is their sum divided
    by 2). The order statistics are exact: with every row on one process in
    libphase (``phase_pair_median_all``: the same distances, a selection), with a
    block of rows by an in-place partition and a minimum, on several ranks by
    :func:`select_pair` (comparisons only), so h has the same bits for any
    number of ranks. A NaN distance gives h = 1, as numpy's NaN median does.
    """
    n = z.shape[0]
    if n < 2:
        return 1.0
    comm = SerialCommunicator() if comm is None else as_communicator(comm)
    rows = range(n) if rows is None else rows
    pairs = n * (n - 1) // 2
    if comm.size == 1 and rows == range(n):
        # every pair here, in libphase: the distances of pair_sq_distances (and of
        # scipy's pdist, which this replaced: 40 us at n = 64, d = 3, most of it scipy's
        # Python wrappers and numpy's partition) and the same order statistics, so the
        # same h; the cost of every rank's bandwidth while n (n - 1) / 2 <= bandwidth_pairs
        z = np.asarray(z, dtype=np.float64)
        pz, stride = row_pointer(z)
        work, median = np.empty(pairs), ffi.new("double *")
        status = lib.phase_pair_median_all(n, z.shape[1], pz, stride, ffi.from_buffer("double[]", work),
                                           median)
        if status != lib.PHASE_OK:
            raise ValueError(ffi.string(lib.phase_last_error()).decode())
        h = median[0] / np.log(n + 1.0)
        return h if h > 0 and np.isfinite(h) else 1.0
    values = pair_sq_distances(z, rows)
    lo, hi = (pairs - 1) // 2, pairs // 2
    if comm.size == 1:
        # the buffer is ours: partition it in place (no copy) at lo; position
        # lo + 1 is then the minimum of the values after lo (one cheap pass,
        # not a second selection). NaN sorts last, so a NaN ends up at lo or
        # after it, where min propagates it.
        values.partition(lo)
        first = float(values[lo])
        rest = float(values[lo + 1:].min()) if lo + 1 < pairs else first
        if np.isnan(first) or np.isnan(rest):
            return 1.0
        second = rest if hi > lo else first
    else:
        if allreduce_exact(comm, [np.isnan(values.max(initial=-np.inf))], "sum")[0]:  # max propagates NaN
            return 1.0
        if pairs == 1:
            first = second = float(allgather_values(comm, values)[0])
        else:
            first, second = select_pair(comm, values, lo)
    med = first if lo == hi else (first + second) / 2.0
    h = med / np.log(n + 1.0)
    return h if h > 0 and np.isfinite(h) else 1.0


def subset_median_bandwidth(z: np.ndarray, seed: int, iteration: int, pairs: int) -> float:
    """h = median of |z_i - z_j|^2 over a pseudo-random subset of pairs / log(n + 1).

    Parameters
    ----------
    z : (n, d) array
        The global particles (every rank holds them).
    seed, iteration : int
        Key of the pairs: libphase's Philox4x64-10 under the key (seed,
        ``STREAM_BANDWIDTH``), counters (iteration, 0, 0, b): every rank draws
        the same pairs, whatever the rank layout, and a resumed run draws
        those of the uninterrupted one.
    pairs : int
        Number of pairs drawn.

    If n (n - 1) / 2 <= ``pairs``, all pairs are used: this is
    :func:`median_bandwidth`, bit for bit. Otherwise pair p takes the 64-bit
    word p of the counters (word p mod 4 of counter (iteration, 0, 0, p // 4)):
    i = (hi32 n) >> 32 uniform in 0..n-1, u = 1 + ((lo32 (n - 1)) >> 32) in
    1..n-1, j = (i + u) mod n (``phase_pair_median``, libphase/include/phase.h),
    and h is numpy's median of their |z_i - z_j|^2 (summed over the
    coordinates in order, the bits of :func:`pair_sq_distances`; the mean of
    the two middle values for an even count) over log(n + 1); 1 if not
    positive and finite (e.g. NaN). No communication, and O(pairs d) work on
    every rank, independent of n: one libphase call.
    """
    n, d = z.shape
    if n * (n - 1) // 2 <= pairs:
        return median_bandwidth(z)
    z = np.asarray(z, dtype=np.float64)
    pz, stride = row_pointer(z)  # the particle columns of SVGD's row buffer, in place
    ids = np.array([iteration, 0, 0, 0], dtype=np.uint64)
    work, median = np.empty(pairs), ffi.new("double *")
    status = lib.phase_pair_median_strided(n, d, pz, stride, int(seed) & _MASK, STREAM_BANDWIDTH,
                                           ffi.from_buffer("uint64_t[]", ids), pairs,
                                           ffi.from_buffer("double[]", work), median)
    if status != lib.PHASE_OK:
        raise ValueError(ffi.string(lib.phase_last_error()).decode())
    h = median[0] / np.log(n + 1.0)
    return h if h > 0 and np.isfinite(h) else 1.0
