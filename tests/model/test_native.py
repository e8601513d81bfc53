"""The cffi layer's caches (model/native.py): prepared observations and options.

:func:`~phasic_mpi.model.native.loglik` keeps the C struct of each
Observations and the Observations of the last plain array it was given, so
that repeated calls skip the checks and conversions. These tests hold the
cached path to the uncached one bit for bit, to closed forms, and check that
a caller's array changed in place (to good or to bad values) is seen.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from phasic_mpi import Graph, Observations, models
from phasic_mpi.model import native
from phasic_mpi.model.native import LoglikCall, loglik


def fresh(graph, times, thetas, **kwargs):
    """loglik on a new Observations of a copy of ``times``: nothing cached to reuse."""
    return loglik(graph, Observations(np.array(times, copy=True)), thetas, **kwargs)


def same_bits(a, b):
    return all(np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(a, b))


@pytest.mark.parametrize("name, size, theta", [("kingman", 10, [1.0]),
                                               ("rabbits", 5, [1.0, 2.0, 4.0])])
def test_repeated_calls_on_one_array_have_the_bits_of_fresh_observations(name, size, theta):
    graph = getattr(models, name)(size)
    times = graph.sample(100, theta, seed=2024)
    thetas = np.asarray(theta) * np.exp(0.1 * np.random.default_rng(4).standard_normal((3, len(theta))))
    want = fresh(graph, times, thetas, grad=True)
    for _ in range(3):
        assert same_bits(loglik(graph, times, thetas, grad=True), want)
        assert same_bits(loglik(graph, times, thetas[0], grad=True), [w[:1] for w in want])
    assert same_bits(LoglikCall(graph, times)(np.ascontiguousarray(thetas)), want)


def test_an_array_changed_in_place_is_seen():
    """Exponential(θ): log L = n log θ - θ sum(t), before and after the change."""
    graph = models.exponential()
    times = np.array([0.1, 0.5, 2.0, 0.7])
    theta = np.array([[1.5]])

    def closed_form(t):
        return t.size * np.log(1.5) - 1.5 * t.sum()

    np.testing.assert_allclose(loglik(graph, times, theta)[0], [closed_form(times)], rtol=1e-13)
    times[2] = 3.0
    np.testing.assert_allclose(loglik(graph, times, theta)[0], [closed_form(times)], rtol=1e-13)
    assert same_bits(loglik(graph, times, theta), fresh(graph, times, theta))


@pytest.mark.parametrize("value, message", [
    (np.nan, r"exact\[2\] = nan: times must be finite and >= 0"),
    (-1.0, r"exact\[2\] = -1.0: times must be finite and >= 0"),
    (np.inf, r"exact\[2\] = inf: times must be finite and >= 0"),
])
def test_an_array_changed_to_a_bad_value_is_refused(value, message):
    graph = models.exponential()
    times = np.array([0.1, 0.5, 2.0])
    loglik(graph, times, [[1.0]])  # now cached
    times[2] = value
    with pytest.raises(ValueError, match=message):
        loglik(graph, times, [[1.0]])


def test_a_discrete_count_changed_to_a_fraction_is_refused():
    graph = Graph.from_matrices([1.0], [[0.5]], discrete=True)
    counts = np.array([1.0, 2.0, 4.0])
    ll = loglik(graph, counts, np.zeros((1, 0)))[0]
    np.testing.assert_allclose(ll, [7 * np.log(0.5)], rtol=1e-13)  # P(T = k) = 0.5^k
    counts[1] = 1.5
    with pytest.raises(ValueError, match=r"exact\[1\] = 1.5 must be a non-negative integer"):
        loglik(graph, counts, np.zeros((1, 0)))


def test_observations_keep_their_struct_and_copy_the_callers_array():
    times = np.array([0.2, 0.9])
    obs = Observations(times)
    times[0] = 5.0  # the Observations checked a copy: this does not reach it
    assert obs.exact.tolist() == [0.2, 0.9] and not obs.exact.flags.writeable
    first, _ = native._prepared_data(obs)
    assert native._prepared_data(obs)[0] is first


def test_threads_alternating_arrays_give_the_serial_bits():
    """One cache entry, replaced by each thread in turn: each call still sees its own data."""
    graph = models.rabbits(3)
    arrays = [graph.sample(30, [1.0, 2.0, 4.0], seed=s) for s in range(4)]
    theta = np.array([[1.0, 2.0, 4.0]])
    serial = [fresh(graph, t, theta, grad=True) for t in arrays]
    jobs = [i % 4 for i in range(64)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda i: loglik(graph, arrays[i], theta, grad=True), jobs))
    assert all(same_bits(threaded[k], serial[i]) for k, i in enumerate(jobs))


def test_options_are_built_once_per_setting():
    assert native._options(1e-10, None) is native._options(np.float64(1e-10), None)
    assert native._options(1e-10, None) is not native._options(1e-11, None)
    assert native._options(None, None).tol == native.DEFAULT_TOL
    with pytest.raises(ValueError, match="unknown gradient_mode 'sideways'"):
        native._options(None, None, "sideways")
