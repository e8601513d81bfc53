"""Reward transformation: matrix formula, moments, oracles and the full distribution."""

from math import factorial

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from randgraph import rabbits_fixed, random_graph

from phasic_mpi import models
from phasic_mpi.model.graph import Graph


def transformed_matrices(graph, theta, r):
    """Bladt & Nielsen Thm 8.1.2: S' = diag(1/r+)(S++ + S+0 (-S00)^-1 S0+), alpha'."""
    alpha, S, _ = graph.to_matrices(theta)
    pos, zero = r > 0, r == 0
    bridge = np.linalg.solve(-S[np.ix_(zero, zero)], S[np.ix_(zero, pos)])
    S_new = np.diag(1 / r[pos]) @ (S[np.ix_(pos, pos)] + S[np.ix_(pos, zero)] @ bridge)
    alpha_new = alpha[pos] + alpha[zero] @ bridge
    return alpha_new, S_new


def reward_moments(graph, theta, k, r):
    """E[Y^k] = k! alpha (U diag(r))^k 1 on the original graph (dense)."""
    alpha, S, _ = graph.to_matrices(theta)
    M = np.linalg.inv(-S) @ np.diag(r)
    return np.array([factorial(j) * alpha @ np.linalg.matrix_power(M, j) @ np.ones(len(r))
                     for j in range(1, k + 1)])


def random_rewards(n, seed):
    rng = np.random.default_rng(seed)
    r = rng.uniform(0.2, 3.0, n)
    r[rng.random(n) < 0.4] = 0.0
    r[rng.integers(n)] = 1.5  # at least one positive reward
    return r


@pytest.mark.parametrize("seed", range(6))
def test_parameterized_transform_matches_matrix_formula(seed):
    # Coefficient-only rates with d = 1: every elimination stays linear in theta.
    g = random_graph(14, 1, 0.25, seed=seed, coef_only=True)
    r = random_rewards(g.n_states, seed)
    h = g.reward_transform(r)
    assert h.n_params == 1 and h.param_names == g.param_names
    assert h.n_states == np.count_nonzero(r)
    for theta in ([0.4], [2.3]):
        alpha_ref, S_ref = transformed_matrices(g, theta, r)
        alpha, S, s = h.to_matrices(theta)
        np.testing.assert_allclose(S, S_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(alpha, alpha_ref, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(h.moments(theta, 3), reward_moments(g, theta, 3, r), rtol=1e-10)


@pytest.mark.parametrize("seed", range(6))
def test_constant_transform_at_theta_matches_matrix_formula(seed):
    g = random_graph(14, 3, 0.25, seed=seed)
    r = random_rewards(g.n_states, seed + 50)
    theta = np.array([0.5, 1.2, 0.8])
    h = g.reward_transform(r, theta)
    alpha_ref, S_ref = transformed_matrices(g, theta, r)
    alpha, S, s = h.to_matrices(None if h.n_params == 0 else theta)
    np.testing.assert_allclose(S, S_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(alpha, alpha_ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(h.moments(None if h.n_params == 0 else theta, 3),
                               reward_moments(g, theta, 3, r), rtol=1e-10)


def test_non_linear_elimination_needs_theta():
    g = models.rabbits(2)
    right = np.array([s[1] for s in g.states], dtype=float)
    with pytest.raises(ValueError, match=r"eliminating zero-reward state \(2, 0\) would make "
                                         r"the rates non-linear in theta.*pass theta"):
        g.reward_transform(right)
    h = g.reward_transform(right, [1.0, 2.0, 4.0])
    assert h.n_params == 0
    assert h.expectation() == pytest.approx(g.expectation([1.0, 2.0, 4.0], right), rel=1e-12)


def test_rabbits_reward_oracle():
    g = rabbits_fixed()
    right = np.array([s[1] for s in g.states], dtype=float)
    h = g.reward_transform(right)
    assert h.expectation() == pytest.approx(0.09438775510204081, rel=1e-12)
    assert h.variance() == pytest.approx(0.04634787588504789, rel=1e-12)
    assert all(s[1] > 0 for s in h.states)


@pytest.mark.parametrize("n", [4, 10])
def test_block_counting_branch_lengths_stay_parameterized(n):
    g = models.block_counting(n)
    rewards = models.sfs_rewards(g)
    for i in range(1, n):
        h = g.reward_transform(rewards[:, i - 1])
        assert h.n_params == 1
        for theta in (1.0, 2.5):
            assert h.expectation([theta]) == pytest.approx(2 / (i * theta), rel=1e-12)
            assert h.variance([theta]) == pytest.approx(
                g.variance([theta], rewards[:, i - 1]), rel=1e-10)


def test_zero_reward_start_state_exiting_directly_becomes_defect():
    # 0 (reward 0) -> absorbing at 1, -> 1 at 3; 1 (reward 2) -> absorbing at 1.
    g = Graph([1.0, 0.0], [0, 0, 1], [-1, 1, -1], [1.0, 3.0, 1.0])
    h = g.reward_transform([0.0, 2.0])
    assert h.defect == pytest.approx(0.25, rel=1e-14)
    np.testing.assert_allclose(h.to_matrices()[1], [[-0.5]], rtol=1e-14)


def test_cycle_through_zero_reward_state_drops_self_loop():
    # 0 <-> 1 cycle; state 1 has zero reward and returns to 0 with probability 2/3.
    g = Graph([1.0, 0.0], [0, 1, 1], [1, 0, -1], [3.0, 2.0, 1.0])
    h = g.reward_transform([1.0, 0.0])
    assert h.n_edges == 1 and h.edge_dst[0] == -1
    # Effective exit rate of 0: 3 * 1/3 = 1, so Y ~ Exp(1).
    np.testing.assert_allclose(h.to_matrices()[1], [[-1.0]], rtol=1e-14)


def test_distribution_by_simulation_of_the_original_process():
    # The transformed graph's CDF (scipy expm) must fit rewards simulated on the original.
    g = random_graph(8, 2, 0.3, seed=4, defect=False)
    r = random_rewards(g.n_states, 9)
    theta = np.array([0.7, 1.1])
    h = g.reward_transform(r, theta)
    th = None if h.n_params == 0 else theta
    alpha, S, _ = h.to_matrices(th)
    y = g.sample(20_000, theta, seed=123, rewards=r)
    atom = h.defect
    n_zero = np.count_nonzero(y == 0)
    assert abs(n_zero / y.size - atom) < 5 * np.sqrt(atom * (1 - atom) / y.size) + 1e-12
    positive = y[y > 0]

    def conditional_cdf(t):
        t = np.atleast_1d(t)
        surv = np.array([alpha @ scipy.linalg.expm(S * ti) @ np.ones(len(alpha)) for ti in t])
        return (alpha.sum() - surv) / alpha.sum()

    # KS distance on a grid of sample quantiles: at most the full KS statistic.
    grid = np.quantile(positive, np.linspace(0.01, 0.99, 60))
    empirical = np.searchsorted(np.sort(positive), grid, side="right") / positive.size
    distance = np.abs(empirical - conditional_cdf(grid)).max()
    assert distance < scipy.stats.kstwo.ppf(0.999, positive.size)


def test_pdf_of_transformed_graph_matches_expm():
    pytest.importorskip("phasic_mpi.model.native")
    g = random_graph(10, 1, 0.3, seed=2, coef_only=True)
    r = random_rewards(g.n_states, 2)
    h = g.reward_transform(r)
    theta = np.array([0.8])
    alpha_ref, S_ref = transformed_matrices(g, theta, r)
    s_ref = -S_ref.sum(axis=1)
    times = np.array([0.2, 1.0, 2.5])
    expected = [alpha_ref @ scipy.linalg.expm(S_ref * t) @ s_ref for t in times]
    np.testing.assert_allclose(h.pdf(times, theta), expected, rtol=1e-9)


def test_reward_errors():
    g = models.kingman(4)
    with pytest.raises(ValueError, match=r"rewards must have shape \(3,\)"):
        g.reward_transform([1.0, 1.0])
    with pytest.raises(ValueError, match=r"state \(3,\) has reward -1.0"):
        g.reward_transform([1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="all rewards are zero"):
        g.reward_transform([0.0, 0.0, 0.0])
    discrete = Graph([1.0], [0], [-1], [0.5], discrete=True)
    with pytest.raises(NotImplementedError, match="continuous graphs only"):
        discrete.reward_transform([1.0])
