"""Moments, covariances and expectation gradients against oracles.md and dense scipy."""

from math import factorial

import numpy as np
import pytest
from randgraph import rabbits_fixed, random_graph

from phasic_mpi import models
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.moments import factorial_moments

RTOL = 1e-10
THETA_RABBITS = [1.0, 2.0, 4.0]


def dense_reward_moments(graph, theta, k, r):
    """k! alpha (U diag(r))^k 1 with a dense inverse."""
    alpha, S, _ = graph.to_matrices(theta)
    U = np.linalg.inv(-S)
    M = U @ np.diag(r)
    return np.array([factorial(j) * alpha @ np.linalg.matrix_power(M, j) @ np.ones(len(r))
                     for j in range(1, k + 1)])


# ------------------------------------------------------------- oracles.md
@pytest.mark.parametrize("n, mean, second, var", [
    (2, 1.0, 2.0, 1.0),
    (3, 1.3333333333, 2.8888888889, 1.1111111111),
    (4, 1.5, 3.3888888889, 1.1388888889),
    (5, 1.6, 3.7088888889, 1.1488888889),
    (10, 1.8, 4.3981418493, 1.1581418493),
])
def test_kingman_table(n, mean, second, var):
    g = models.kingman(n)
    np.testing.assert_allclose(g.moments([1.0], 2), [mean, second], rtol=1e-10)
    assert g.variance([1.0]) == pytest.approx(var, rel=1e-10)
    theta = 2.7
    assert g.expectation([theta]) == pytest.approx(2 * (1 - 1 / n) / theta, rel=1e-13)
    exact_var = sum((2 / (theta * k * (k - 1))) ** 2 for k in range(2, n + 1))
    assert g.variance([theta]) == pytest.approx(exact_var, rel=1e-12)


def test_rabbits_fixed_rate_table():
    g = rabbits_fixed()
    right = np.array([s[1] for s in g.states], dtype=float)
    left = np.array([s[0] for s in g.states], dtype=float)
    assert g.expectation() == pytest.approx(0.5038265306122449, rel=1e-13)
    np.testing.assert_allclose(g.moments(k=2), [0.5038265306122449, 0.48029792274052474],
                               rtol=1e-13)
    assert g.variance() == pytest.approx(0.2264567497917534, rel=1e-12)
    assert g.expectation(rewards=right) == pytest.approx(0.09438775510204081, rel=1e-13)
    assert g.variance(rewards=right) == pytest.approx(0.04634787588504789, rel=1e-12)
    assert g.covariance(None, left, right) == pytest.approx(0.030003774468971, rel=1e-12)


def test_rabbits_parameterized_table():
    g = models.rabbits(2)
    assert g.expectation(THETA_RABBITS) == pytest.approx(0.5083056478405316, rel=1e-13)
    np.testing.assert_allclose(g.moments(THETA_RABBITS, 2),
                               [0.5083056478405316, 0.4742994006688668], rtol=1e-13)
    np.testing.assert_allclose(g.expectation_grad(THETA_RABBITS),
                               [-0.012946877, -0.199037538, -0.024320924], atol=5e-10)
    for theta, mean in [([2, 2, 4], 0.4956521739130435), ([2, 4, 4], 0.3),
                        ([2, 4, 18], 0.22709632268736482), ([8, 4, 18], 0.1771943936956344)]:
        assert g.expectation(theta) == pytest.approx(mean, rel=1e-13)


def test_small_closed_forms():
    theta = 1.7
    np.testing.assert_allclose(models.exponential().moments([theta], 3),
                               [1 / theta, 2 / theta**2, 6 / theta**3], rtol=1e-14)
    k = 4
    np.testing.assert_allclose(models.erlang(k).moments([theta], 2),
                               [k / theta, k * (k + 1) / theta**2], rtol=1e-14)


# ------------------------------------------------ random cyclic graphs
@pytest.mark.parametrize("seed", range(5))
def test_moments_match_dense_formula_on_random_cyclic_graphs(seed):
    g = random_graph(15, 3, 0.2, seed=seed)
    rng = np.random.default_rng(100 + seed)
    theta = rng.uniform(0.2, 2.0, 3)
    ones = np.ones(g.n_states)
    np.testing.assert_allclose(g.moments(theta, 4), dense_reward_moments(g, theta, 4, ones),
                               rtol=RTOL)
    r = rng.uniform(0, 2, g.n_states) * (rng.random(g.n_states) < 0.7)
    np.testing.assert_allclose(g.moments(theta, 3, rewards=r),
                               dense_reward_moments(g, theta, 3, r), rtol=RTOL)
    R = np.column_stack([ones, r, rng.uniform(0, 1, g.n_states)])
    expected = np.column_stack([dense_reward_moments(g, theta, 2, R[:, m]) for m in range(3)])
    np.testing.assert_allclose(g.moments(theta, 2, rewards=R), expected, rtol=RTOL)
    np.testing.assert_allclose(g.expectation(theta, R), expected[0], rtol=RTOL)
    np.testing.assert_allclose(g.variance(theta, R), expected[1] - expected[0] ** 2, rtol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_covariance_matches_dense_formula(seed):
    g = random_graph(12, 2, 0.25, seed=seed)
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.3, 1.5, 2)
    r1, r2 = rng.uniform(0, 1, (2, g.n_states))
    alpha, S, _ = g.to_matrices(theta)
    U = np.linalg.inv(-S)
    cross = alpha @ U @ np.diag(r1) @ U @ r2 + alpha @ U @ np.diag(r2) @ U @ r1
    expected = cross - (alpha @ U @ r1) * (alpha @ U @ r2)
    assert g.covariance(theta, r1, r2) == pytest.approx(expected, rel=RTOL)
    assert g.covariance(theta, r1, r1) == pytest.approx(g.variance(theta, r1), rel=1e-9)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("discrete", [False, True])
def test_expectation_grad_matches_finite_differences(seed, discrete):
    g = random_graph(10, 3, 0.3, seed=seed, discrete=discrete)
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.2, 0.9, 3)
    R = np.column_stack([np.ones(g.n_states), rng.uniform(0, 2, g.n_states)])
    grad = g.expectation_grad(theta, R)
    assert grad.shape == (2, 3)
    h = 1e-6
    for m in range(3):
        step = np.zeros(3)
        step[m] = h
        fd = (g.expectation(theta + step, R) - g.expectation(theta - step, R)) / (2 * h)
        np.testing.assert_allclose(grad[:, m], fd, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g.expectation_grad(theta), grad[0], rtol=1e-14)


# ---------------------------------------------------------------- discrete
def discrete_brute_force(graph, theta, k, r, max_terms=200_000):
    """Moments from the pmf: sum_t t^j alpha T^{t-1} t_exit, until the tail is negligible."""
    alpha, T, t_exit = graph.to_matrices(theta)
    raw = np.zeros(k)
    v = alpha.copy()
    reward_mean = 0.0
    for step in range(1, max_terms):
        raw += (v @ t_exit) * float(step) ** np.arange(1, k + 1)
        reward_mean += v @ r  # E[sum_{n<T} r(X_n)] = sum_n P(X_n = i) r_i
        v = v @ T
        if v.sum() < 1e-30:  # geometric tail: the rest is negligible even times t^k
            return raw, reward_mean
    raise AssertionError("pmf series did not converge")


def test_geometric_and_defective_discrete_oracles():
    geometric = Graph([1.0], [0], [-1], [0.0], [[1.0]], discrete=True)
    np.testing.assert_allclose(geometric.moments([0.5], 2), [2.0, 6.0], rtol=1e-14)
    assert geometric.variance([0.5]) == pytest.approx(2.0, rel=1e-14)
    defective = Graph.from_matrices([0.75, 0.0], [[0.2, 0.8], [0.0, 0.3]], discrete=True)
    assert defective.expectation() == pytest.approx(0.75 * (1 / 0.8 + 1 / 0.7), rel=1e-14)


def discrete_path_sums(graph, theta, r1, r2, tol=1e-30):
    """E[Y1 Y2], Y_i = sum_{n<T} r_i(X_n), from the definition by series (no inverse):
    sum_n P(X_n = .) . (r1 r2 + r1 h2 + r2 h1), h_i = sum_{j>=1} T^j r_i (the
    later steps l > n, and l < n by symmetry)."""
    alpha, T, _ = graph.to_matrices(theta)

    def series(v, right):  # sum_{j>=0} of v T^j (row) or T^j v (column)
        total = np.zeros_like(v)
        while np.abs(v).sum() > tol:
            total, v = total + v, (T @ v if right else v @ T)
        return total

    visits = series(alpha.copy(), right=False)  # alpha (I + T + T^2 + ...)
    h1, h2 = series(T @ r1, right=True), series(T @ r2, right=True)
    return visits @ (r1 * r2 + r1 * h2 + r2 * h1)


@pytest.mark.parametrize("seed", range(4))
def test_discrete_second_reward_moments_match_path_sums(seed):
    acyclic = seed % 2 == 1  # libphase on acyclic graphs, the sparse LU on cyclic ones
    g = random_graph(9, 2, 0.3, seed=seed, discrete=True, acyclic=acyclic)
    theta = np.array([0.6, 0.9])
    rng = np.random.default_rng(seed)
    r1, r2 = rng.uniform(0, 3, g.n_states), rng.uniform(0, 1, g.n_states) * (rng.random(9) < .5)
    m1, m2 = g.expectation(theta, r1), g.expectation(theta, r2)
    second = discrete_path_sums(g, theta, r1, r1)
    np.testing.assert_allclose(g.moments(theta, 2, rewards=r1), [m1, second], rtol=RTOL)
    np.testing.assert_allclose(g.moments(theta, 2, rewards=np.column_stack([r1, r2]))[1],
                               [second, discrete_path_sums(g, theta, r2, r2)], rtol=RTOL)
    assert g.variance(theta, r1) == pytest.approx(second - m1**2, rel=RTOL)
    assert g.covariance(theta, r1, r2) == pytest.approx(
        discrete_path_sums(g, theta, r1, r2) - m1 * m2, rel=RTOL)
    ones = np.ones(g.n_states)  # Y = T: the pmf series
    raw, _ = discrete_brute_force(g, theta, 2, ones)
    np.testing.assert_allclose(g.moments(theta, 2), raw, rtol=RTOL)
    assert discrete_path_sums(g, theta, ones, ones) == pytest.approx(raw[1], rel=RTOL)


def test_defective_discrete_reward_covariance():
    """oracles.md's defective example: with probability 0.75 the visits N_A ~
    Geometric(0.8) and N_B ~ Geometric(0.7) are independent, else both are 0."""
    g = Graph.from_matrices([0.75, 0.0], [[0.2, 0.8], [0.0, 0.3]], discrete=True)
    on_a, on_b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    ea, eb, ea2, eb2 = 1 / 0.8, 1 / 0.7, 1.2 / 0.8**2, 1.3 / 0.7**2
    assert g.covariance(None, on_a, on_b) == pytest.approx(
        0.75 * ea * eb - 0.75**2 * ea * eb, rel=1e-14)
    assert g.variance(None, on_b) == pytest.approx(0.75 * eb2 - (0.75 * eb) ** 2, rel=1e-14)
    assert g.variance() == pytest.approx(0.75 * (ea2 + eb2 + 2 * ea * eb)
                                         - (0.75 * (ea + eb)) ** 2, rel=1e-14)


@pytest.mark.parametrize("seed", range(3))
def test_discrete_moments_match_pmf_series(seed):
    g = random_graph(8, 2, 0.3, seed=seed, discrete=True)
    theta = np.array([0.6, 0.9])
    r = np.random.default_rng(seed).uniform(0, 3, g.n_states)
    raw, reward_mean = discrete_brute_force(g, theta, 4, r)
    np.testing.assert_allclose(g.moments(theta, 4), raw, rtol=RTOL)
    assert g.expectation(theta, r) == pytest.approx(reward_mean, rel=RTOL)
    np.testing.assert_allclose(g.moments(theta, 1, rewards=r), [reward_mean], rtol=RTOL)
    # Factorial moments k! alpha T^{k-1} N^k 1 from the raw ones.
    fm = factorial_moments(g, theta, 3)
    np.testing.assert_allclose(fm, [raw[0], raw[1] - raw[0],
                                    raw[2] - 3 * raw[1] + 2 * raw[0]], rtol=1e-9)


# ------------------------------------------------------------------ errors
def test_moment_errors():
    g = models.rabbits(2)
    with pytest.raises(ValueError, match=r"moment order k must be an integer >= 1, got 0"):
        g.moments(THETA_RABBITS, 0)
    with pytest.raises(ValueError, match=r"rewards must have shape \(5,\) or \(5, m\), got \(4,\)"):
        g.expectation(THETA_RABBITS, np.ones(4))
    with pytest.raises(ValueError, match="theta is required"):
        g.expectation()
    with pytest.raises(ValueError, match="negative rate"):
        g.expectation([1.0, -2.0, 4.0])
    with pytest.raises(ValueError, match="covariance\\(\\) takes two reward vectors"):
        g.covariance(THETA_RABBITS, np.ones((5, 2)), np.ones(5))


def test_state_that_cannot_be_left_at_theta_is_named():
    g = models.isolation_migration(1, 1)
    assert g.expectation([1.0, 1.0, 0.3, 0.3]) == pytest.approx(2 + 1 / 0.6, rel=1e-13)
    with pytest.raises(ValueError, match=r"state \(1, 1\) is reachable from the start but cannot reach absorption at this theta"):
        g.expectation([1.0, 1.0, 0.0, 0.0])
    rabbits = models.rabbits(1)
    with pytest.raises(ValueError, match=r"state \(1, 0\) is reachable from the start but cannot reach absorption"):
        rabbits.moments([1.0, 0.0, 0.0], 2)


def test_discrete_reward_limits():
    g = random_graph(5, 1, 0.3, seed=0, discrete=True)
    r = np.ones(5)
    with pytest.raises(NotImplementedError, match="Moments of order > 2 of accumulated rewards"):
        g.moments([0.5], 3, rewards=r)
    # up to order 2 they are implemented: with r = 1, Y = T
    np.testing.assert_allclose(g.moments([0.5], 2, rewards=r), g.moments([0.5], 3)[:2],
                               rtol=1e-12)
    with pytest.raises(ValueError, match="needs a discrete graph"):
        factorial_moments(models.exponential(), [1.0], 2)
