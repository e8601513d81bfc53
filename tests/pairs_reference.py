"""Reference median bandwidth for the SVGD tests, written as a plain loop.

Import with ``from pairs_reference import pair_value, pairs_median_bandwidth``
(pytest puts ``tests/`` on ``sys.path``, as for ``randgraph``).
"""

import numpy as np


def pair_value(z, i, j):
    """|z_i - z_j|^2 summed in order over the coordinates, as scipy's sqeuclidean (and main's pdist) does."""
    s = 0.0
    for c in range(z.shape[1]):
        t = float(z[i, c]) - float(z[j, c])
        s += t * t
    return s


def pairs_median_bandwidth(z):
    """numpy's median of the n (n - 1) / 2 pair values / log(n + 1); 1 if not positive and finite."""
    n = len(z)
    if n < 2:
        return 1.0
    values = np.array([pair_value(z, i, j) for i in range(n) for j in range(i + 1, n)])
    h = np.median(values) / np.log(n + 1.0)
    return h if h > 0 and np.isfinite(h) else 1.0
