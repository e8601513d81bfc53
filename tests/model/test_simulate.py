"""Exact simulation: moments within 5 standard errors, KS tests, reproducibility."""

import numpy as np
import pytest
import scipy.stats
from randgraph import random_graph

from phasic_mpi import models
from phasic_mpi.model.graph import Graph

N = 200_000


def assert_mean_and_variance(samples, raw):
    """Sample mean and variance within 5 standard errors of the exact raw moments 1..4."""
    m1, m2, m3, m4 = raw
    var = m2 - m1**2
    mu4 = m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4  # central fourth moment
    n = samples.size
    assert abs(samples.mean() - m1) < 5 * np.sqrt(var / n)
    assert abs(samples.var() - var) < 5 * np.sqrt((mu4 - var**2) / n)


@pytest.mark.parametrize("graph, theta", [
    (models.rabbits(2), [1.0, 2.0, 4.0]),
    (models.kingman(6), [1.3]),
    (random_graph(12, 2, 0.25, seed=7), [0.6, 1.4]),
])
def test_continuous_mean_and_variance(graph, theta):
    samples = graph.sample(N, theta, seed=1)
    assert samples.dtype == np.float64 and samples.shape == (N,)
    assert_mean_and_variance(samples, graph.moments(theta, 4))


def test_rewards_mean_and_variance():
    g = random_graph(10, 2, 0.3, seed=3)
    theta = [0.9, 0.4]
    r = np.random.default_rng(0).uniform(0, 2, g.n_states)
    r[[1, 4]] = 0.0
    samples = g.sample(N, theta, seed=2, rewards=r)
    assert_mean_and_variance(samples, g.moments(theta, 4, rewards=r))


def test_discrete_mean_and_variance_and_integer_output():
    g = random_graph(8, 2, 0.3, seed=5, discrete=True)
    theta = [0.7, 0.5]
    samples = g.sample(N, theta, seed=3)
    assert samples.dtype == np.int64
    assert_mean_and_variance(samples.astype(float), g.moments(theta, 4))
    r = np.arange(g.n_states, dtype=float)
    with_rewards = g.sample(N, theta, seed=3, rewards=r)
    mean, second = g.moments(theta, 2, rewards=r)
    var = second - mean**2
    assert var == pytest.approx(g.variance(theta, r), rel=1e-12)
    assert abs(with_rewards.mean() - mean) < 5 * np.sqrt(var / N)
    assert abs(with_rewards.var() / var - 1) < 0.05  # relative standard error ~ 0.01 at N


def test_ks_against_exponential_and_erlang():
    rate = 2.5
    exp_samples = models.exponential().sample(20_000, [rate], seed=11)
    assert scipy.stats.kstest(exp_samples, scipy.stats.expon(scale=1 / rate).cdf).pvalue > 1e-3
    erl_samples = models.erlang(3).sample(20_000, [rate], seed=12)
    assert scipy.stats.kstest(erl_samples, scipy.stats.gamma(3, scale=1 / rate).cdf).pvalue > 1e-3
    # The test has power: the Erlang sample is not exponential with the same mean.
    wrong = scipy.stats.expon(scale=3 / rate).cdf
    assert scipy.stats.kstest(erl_samples, wrong).pvalue < 1e-6


def test_discrete_geometric_frequencies():
    g = Graph([1.0], [0], [-1], [0.0], [[1.0]], discrete=True)
    samples = g.sample(N, [0.5], seed=4)
    for k in range(1, 7):
        p = 0.5**k
        assert abs(np.mean(samples == k) - p) < 5 * np.sqrt(p * (1 - p) / N)
    assert_mean_and_variance(samples.astype(float), g.moments([0.5], 4))
    np.testing.assert_allclose(g.moments([0.5], 2), [2.0, 6.0], rtol=1e-14)  # Var = 2


def test_defect_gives_zeros():
    g = Graph.from_matrices([0.75, 0.0], [[0.2, 0.8], [0.0, 0.3]], discrete=True)
    samples = g.sample(N, seed=5)
    p = 0.25
    assert abs(np.mean(samples == 0) - p) < 5 * np.sqrt(p * (1 - p) / N)
    assert np.all(samples[samples > 0] >= 2)  # pmf(1) = 0 in this oracle example
    assert abs(np.mean(samples == 2) - 0.42) < 5 * np.sqrt(0.42 * 0.58 / N)


def test_same_seed_same_output():
    g = models.rabbits(3)
    a = g.sample(1000, [1.0, 0.5, 0.7], seed=42)
    b = g.sample(1000, [1.0, 0.5, 0.7], seed=42)
    c = g.sample(1000, [1.0, 0.5, 0.7], seed=43)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert g.sample(0, [1.0, 0.5, 0.7]).shape == (0,)


def test_simulation_errors():
    slow = Graph([1.0, 0.0], [0, 1, 1], [1, 0, -1], [1.0, 1.0, 1e-9])
    # refused before simulating: 2 / 1e-9 jumps on average (expected_jumps)
    with pytest.raises(ValueError, match=r"a walker makes 2e\+09 jumps on average before "
                                         r"absorption, more than max_jumps=50"):
        slow.sample(10, seed=0, max_jumps=50)
    # 4 jumps on average (2k jumps with probability 2^-k): some of 1000 walkers need > 5
    bouncy = Graph([1.0, 0.0], [0, 1, 1], [1, 0, -1], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"of 1000 walkers were not absorbed after max_jumps=5"):
        bouncy.sample(1000, seed=0, max_jumps=5)
    with pytest.raises(ValueError, match=r"state \(1, 1\) is reachable from the start but cannot reach absorption at this theta"):
        models.isolation_migration(1, 1).sample(10, [1.0, 1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="n must be >= 0"):
        models.exponential().sample(-1, [1.0])
    with pytest.raises(ValueError, match=r"rewards must have shape \(1,\)"):
        models.exponential().sample(5, [1.0], rewards=[1.0, 2.0])
