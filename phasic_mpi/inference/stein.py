"""SVGD's Stein kernel in C (``phase_stein`` of libphase).

With the RBF kernel k(x, y) = exp(-|x - y|^2 / h), the update direction of
particle i is

    phi(x_i) = 1/n sum_j k(x_j, x_i) [ grad log p(x_j) + (2/h) (x_i - x_j) ],

the second term being the repulsive grad_{x_j} k(x_j, x_i), and the squared
kernelized Stein discrepancy (V-statistic) is 1/n^2 sum_ij u(x_i, x_j).

libphase sums over j = 0..n-1 in order for every row, so a row's values are a
function of the global arrays and its index alone: any split of the rows over
ranks gives the same bits. They differ from a numpy evaluation of the same
formulas in the last bits only (summation order, and libphase's own exp,
within 2 ulp of libm's). The extension is required (the likelihood needs it
too), so there is no Python fallback; the numpy formulas live on as the test
oracle (``tests/stein_reference.py``).
"""

from __future__ import annotations

import numpy as np

from phasic_mpi._libphase import ffi, lib
from phasic_mpi.model.native import c_buffer

__all__ = ["column_sums", "kernelized_stein_discrepancy", "ksd_from_rows", "row_pointer",
           "stein_direction", "stein_terms", "sum_of_squares"]




def row_pointer(arr: np.ndarray) -> tuple[object, int]:
    """``(double *, row stride in doubles)`` of a float64 ``(n, d)`` array whose rows
    may lie apart (columns of SVGD's gathered row buffer): no copy then, where
    ``np.ascontiguousarray`` would copy n d doubles on every rank every
    iteration. Any other layout is copied to C order first. The caller keeps
    ``arr`` alive during the C call."""
    if arr.flags.c_contiguous and arr.dtype == np.float64:
        return ffi.from_buffer("double[]", arr), arr.shape[1]
    if (arr.dtype == np.float64 and arr.ndim == 2 and arr.strides[1] == 8
            and arr.strides[0] % 8 == 0 and arr.strides[0] >= 8 * arr.shape[1]):
        return ffi.cast("double *", arr.ctypes.data), arr.strides[0] // 8
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    return ffi.from_buffer("double[]", arr), arr.shape[1]


def stein_terms(z: np.ndarray, scores: np.ndarray, rows: range, h: float, *, phi: bool = True,
                ksd: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """phi and/or the KSD row sums for the particles ``rows`` of the global arrays.

    Parameters
    ----------
    z, scores : (n, d) arrays
        The global particles and their scores grad log p; rows may lie apart
        in memory (columns of a row buffer: passed in place, see
        :func:`row_pointer`).
    rows : range
        Global indices of the rows to compute (step 1).
    h : float
        Bandwidth, positive and finite.
    phi, ksd : bool
        Which outputs to compute.

    Returns
    -------
    phi : (len(rows), d) array or None
    ksd_rows : (len(rows),) array or None
        sum_j u(x_i, x_j) for each row i (see :func:`kernelized_stein_discrepancy`).
    """
    z, scores = np.asarray(z, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    n, d = z.shape
    if scores.shape != (n, d) or rows.step != 1:
        raise ValueError(f"stein_terms: z {z.shape}, scores {scores.shape}, rows {rows}")
    out_phi = np.empty((len(rows), d)) if phi else None
    out_ksd = np.empty(len(rows)) if ksd else None
    if not rows or not (phi or ksd):
        return out_phi, out_ksd
    (pz, zs), (ps, ss) = row_pointer(z), row_pointer(scores)
    status = lib.phase_stein_strided(n, d, pz, zs, ps, ss, float(h), rows.start, rows.stop,
                                     c_buffer(out_phi) if phi else ffi.NULL,
                                     c_buffer(out_ksd) if ksd else ffi.NULL)
    if status != lib.PHASE_OK:
        raise ValueError(ffi.string(lib.phase_last_error()).decode())
    return out_phi, out_ksd


def stein_direction(z: np.ndarray, scores: np.ndarray, rows: range, h: float) -> np.ndarray:
    """phi(z_i) for the particles ``rows`` of the global arrays, shape (len(rows), d)."""
    return stein_terms(z, scores, rows, h)[0]


def ksd_from_rows(row_sums: np.ndarray) -> float:
    """KSD = sqrt(max(sum_i row_sums_i / n^2, 0)) of the n rows' sums, in global order."""
    n = len(row_sums)
    return float(np.sqrt(max(float(np.sum(row_sums)) / n**2, 0.0)))


def kernelized_stein_discrepancy(z: np.ndarray, scores: np.ndarray, h: float) -> float:
    """KSD (V-statistic) of the particles with the same RBF kernel.

    u(x, y) = k [s_x.s_y + (2/h) s_x.(x-y) - (2/h) s_y.(x-y) + 2d/h - 4|x-y|^2/h^2];
    KSD = sqrt(mean_ij u(x_i, x_j)). Zero for a sample that matches p.
    """
    return ksd_from_rows(stein_terms(z, scores, range(len(z)), h, phi=False, ksd=True)[1])


def _pairwise(x: np.ndarray, squares: bool) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    out = np.empty(1 if squares else d)
    if d == 0:
        return np.zeros(1 if squares else 0)
    px, stride = row_pointer(x)
    status = lib.phase_pairwise_sums(n, d, px, stride, int(squares), c_buffer(out))
    if status != lib.PHASE_OK:
        raise ValueError(ffi.string(lib.phase_last_error()).decode())
    return out


def column_sums(x: np.ndarray) -> np.ndarray:
    """``(d,)`` sums of the columns of an ``(n, d)`` array, which may be columns of a
    row buffer (passed in place), with the bits of ``x[:, c].sum()`` (numpy's
    pairwise order, ``phase_pairwise_sums``): SVGD's per-iteration sums over its
    gathered rows in one call, where numpy looped over strided columns."""
    return _pairwise(x, False)


def sum_of_squares(x: np.ndarray) -> float:
    """``np.sum(x * x)`` of an ``(n, d)`` array, bit for bit, without copying a view
    (numpy's product of a strided view costs twice a copy)."""
    return float(_pairwise(x, True)[0])
