"""The numpy Stein kernel that SVGD used before libphase's ``phase_stein``,
kept as the test oracle (and as the "old" path of ``make bench-svgd``).

Import with ``from stein_reference import ...`` (pytest puts ``tests/`` on
``sys.path``).
"""

import numpy as np


def stein_direction(z, scores, rows, h):
    """phi(z_i) = (k @ scores + (2/h) k @ (z_i - z)) / n, one row at a time."""
    n = z.shape[0]
    out = np.empty((len(rows), z.shape[1]))
    for out_row, i in enumerate(rows):
        diff = z[i] - z  # (n, d): x_i - x_j
        k = np.exp(-(diff * diff).sum(axis=1) / h)
        out[out_row] = (k @ scores + (2.0 / h) * (k @ diff)) / n
    return out


def stein_magnitude(z, scores, rows, h):
    """The same sums with every term replaced by its absolute value: the scale
    of a sum's rounding error (a relative tolerance applies to it)."""
    n = z.shape[0]
    out = np.empty((len(rows), z.shape[1]))
    for out_row, i in enumerate(rows):
        diff = z[i] - z
        k = np.exp(-(diff * diff).sum(axis=1) / h)
        out[out_row] = (k @ np.abs(scores) + (2.0 / h) * (k @ np.abs(diff))) / n
    return out


def ksd_terms(z, scores, h):
    """The n x n matrix u(x_i, x_j) of the Stein kernel, term by term."""
    n, d = z.shape
    diff = z[:, None, :] - z[None, :, :]  # x_i - x_j
    r2 = (diff * diff).sum(axis=2)
    k = np.exp(-r2 / h)
    return k * (scores @ scores.T
                + (2.0 / h) * np.einsum("ijc,ic->ij", diff, scores)
                - (2.0 / h) * np.einsum("ijc,jc->ij", diff, scores)
                + 2.0 * d / h - 4.0 * r2 / h**2)


def kernelized_stein_discrepancy(z, scores, h):
    """sqrt(mean_ij u(x_i, x_j)), the old per-row loop."""
    n, d = z.shape
    total = 0.0
    for i in range(n):
        diff = z[i] - z
        r2 = (diff * diff).sum(axis=1)
        k = np.exp(-r2 / h)
        term = (scores @ scores[i] + (2.0 / h) * (diff @ scores[i]) - (2.0 / h) * (scores * diff).sum(axis=1)
                + 2.0 * d / h - 4.0 * r2 / h**2)
        total += float(k @ term)
    return float(np.sqrt(max(total / n**2, 0.0)))
