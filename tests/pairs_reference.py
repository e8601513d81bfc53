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


MASK = (1 << 64) - 1


def subset_pairs(n, seed, iteration, pairs, purpose=2):
    """The pairs of the ``median_subset`` bandwidth, from numpy's Philox (an
    independent implementation of libphase's generator) and Python integers.

    Pair p takes word p of the counters (iteration, 0, 0, b), b = 0, 1, ...,
    under the key (seed, purpose); numpy increments its 256-bit counter
    (word 3 most significant) before each block, so it starts one below.
    i = (hi32 n) >> 32, u = 1 + ((lo32 (n - 1)) >> 32), j = (i + u) mod n.
    """
    out = []
    for b in range(-(-pairs // 4)):
        value = (iteration + (b << 192) - 1) % (1 << 256)
        ctr = np.array([(value >> (64 * k)) & MASK for k in range(4)], dtype=np.uint64)
        gen = np.random.Philox(counter=ctr, key=np.array([seed, purpose], dtype=np.uint64))
        for w in gen.random_raw(4):
            w = int(w)
            i = ((w >> 32) * n) >> 32
            out.append((i, (i + 1 + (((w & 0xFFFFFFFF) * (n - 1)) >> 32)) % n))
    return out[:pairs]
