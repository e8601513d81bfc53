"""Reference median bandwidth for the SVGD tests, written as a plain loop.

Import with ``from pairs_reference import pairs_median_bandwidth`` (pytest puts
``tests/`` on ``sys.path``, as for ``randgraph``).
"""

import numpy as np


def pair_values(z):
    """|z_i - z_j|^2 for all i < j, each row computed as stein_direction does: (z_i - z)^2 summed over axis 1."""
    n = len(z)
    out = []
    for i in range(n):
        diff = z[i] - z
        row = (diff * diff).sum(axis=1)
        for j in range(i + 1, n):
            out.append(row[j])
    return np.array(out, dtype=np.float64)


def pairs_median_bandwidth(z):
    """numpy's median of the n (n - 1) / 2 pair values / log(n + 1); 1 if not positive and finite."""
    n = len(z)
    if n < 2:
        return 1.0
    h = np.median(pair_values(z)) / np.log(n + 1.0)
    return h if h > 0 and np.isfinite(h) else 1.0
