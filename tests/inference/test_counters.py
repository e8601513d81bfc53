"""Counter-based draws (libphase's Philox4x64-10 through inference/counters.py)
against numpy's Philox, an independent implementation of the same generator,
and the Box-Muller formulas evaluated in Python."""

import math

import numpy as np
import pytest
from scipy import stats

from phasic_mpi.inference.counters import counter_ids, normals, uniforms

MASK = (1 << 64) - 1


def numpy_words(key, counter, blocks):
    """numpy's Philox words for counters counter, counter + 1, ... in word 3.

    numpy increments its 256-bit counter before each block, so it starts one
    below; word 3 is the most significant, so +b there is + b * 2^192.
    """
    words = []
    for b in range(blocks):
        value = sum(int(c) << (64 * i) for i, c in enumerate(counter)) + (b << 192) - 1
        ctr = np.array([(value >> (64 * i)) & MASK for i in range(4)], dtype=np.uint64)
        gen = np.random.Philox(counter=ctr, key=np.array(key, dtype=np.uint64))
        words.extend(int(w) for w in gen.random_raw(4))
    return words


@pytest.mark.parametrize("per_row", [1, 3, 4, 7])
def test_uniforms_are_numpy_philox_words(per_row):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 2**63, size=(5, 4), dtype=np.uint64)
    ids[0] = [0, 0, 0, 0]
    ids[1, 3] = np.uint64(MASK)  # the block index wraps around in word 3
    out = uniforms(123, 45, ids, per_row)
    for r in range(5):
        words = numpy_words((123, 45), ids[r], -(-per_row // 4))
        want = [(w >> 11) * 2.0**-53 for w in words[:per_row]]
        assert out[r].tolist() == want


def test_normals_are_box_muller_of_the_same_words():
    ids = counter_ids(np.arange(4), 2, 9, 3 << 32)
    out = normals(7, 12, ids, 6)
    for r in range(4):
        words = numpy_words((7, 12), ids[r], 2)
        want = []
        for w0, w1 in zip(words[0:8:2], words[1:8:2]):
            radius = math.sqrt(-2.0 * math.log(((w0 >> 11) + 1) * 2.0**-53))
            angle = 6.283185307179586 * ((w1 >> 11) * 2.0**-53)
            want += [radius * math.cos(angle), radius * math.sin(angle)]
        np.testing.assert_allclose(out[r], want[:6], rtol=1e-15, atol=1e-300)


def test_draws_depend_only_on_their_own_ids():
    ids = counter_ids(np.arange(10) % 3, np.arange(10), 5)
    whole = normals(3, 1, ids, 5)
    for r in range(10):  # any subset of rows, in any order, gives the same values
        assert np.array_equal(normals(3, 1, ids[r:r + 1], 5)[0], whole[r])
    assert np.array_equal(normals(3, 1, ids[::-1], 5), whole[::-1])
    assert np.array_equal(normals(3, 1, ids, 3), whole[:, :3])


def test_distribution():
    ids = counter_ids(np.arange(20000), 0, 0)
    z = normals(0, 1, ids, 5).ravel()
    u = uniforms(0, 2, ids, 5).ravel()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    assert 0.0 <= u.min() and u.max() < 1.0
    # neighbouring rows and the two halves of a Box-Muller pair are uncorrelated
    rows = normals(0, 1, ids, 2)
    assert abs(np.corrcoef(rows[:, 0], rows[:, 1])[0, 1]) < 4 / math.sqrt(len(rows))
    assert abs(np.corrcoef(rows[:-1, 0], rows[1:, 0])[0, 1]) < 4 / math.sqrt(len(rows))


def test_bad_ids_are_refused():
    with pytest.raises(ValueError, match="shape"):
        uniforms(0, 0, np.zeros((3, 3), dtype=np.uint64))
