"""Batched reward moments and their gradients (libphase for acyclic graphs, LU otherwise).

Oracles: dense inverses ``U = (-S)^{-1}`` with numpy, the block-counting and
Kingman closed forms, the rabbits table of oracles.md, central finite
differences for every gradient.
"""

import numpy as np
import pytest
from randgraph import random_graph

from phasic_mpi.model import models
from phasic_mpi.model.graph import Graph
from phasic_mpi.model import native as _core
from phasic_mpi.model.moments import (_lu_moments, expectation_and_grad, reward_moments,
                                      variance_and_grad)

PAIRS = [(0, 0), (0, 1), (1, 2), (2, 2), (3, 1)]


def dense_moments(graph, theta, R, pairs):
    """Values and exact gradients with a dense inverse U and dU_k = U dS_k U.

    E[Y_a] = alpha U r_a, E[Y_a Y_b] = alpha U D_a U r_b + alpha U D_b U r_a
    (U = (I - T)^-1 and dT_k for discrete graphs, whose visit counts add
    - alpha U D_a r_b: the steps counted twice above); S is linear in theta,
    so dS_k = S(e_k) - S(0).
    """
    alpha, S, _ = graph.to_matrices(theta)
    U = np.linalg.inv(np.eye(len(alpha)) - S if graph.discrete else -S)
    d = graph.n_params
    S0 = graph.to_matrices(np.zeros(d))[1]
    dU = [U @ (graph.to_matrices(np.eye(d)[k])[1] - S0) @ U for k in range(d)]

    def cross_of(U1, U2):  # alpha U1 D_a U2 r_b + (a <-> b) for every pair
        return np.array([alpha @ U1 @ np.diag(R[:, a]) @ U2 @ R[:, b]
                         + alpha @ U1 @ np.diag(R[:, b]) @ U2 @ R[:, a] for a, b in pairs])

    def twice(U1):  # alpha U1 D_a r_b: discrete only
        return np.array([alpha @ U1 @ (R[:, a] * R[:, b]) * graph.discrete for a, b in pairs])

    mean, cross = alpha @ U @ R, cross_of(U, U) - twice(U)
    mean_grad = np.stack([alpha @ dUk @ R for dUk in dU], axis=-1)
    cross_grad = np.stack([cross_of(dUk, U) + cross_of(U, dUk) - twice(dUk) for dUk in dU],
                          axis=-1) if len(pairs) else None
    return mean, cross, mean_grad, cross_grad


def assert_matches_fd(grad, fd):
    """Central differences with h = 1e-6 carry a rounding error ~ eps |f| / h."""
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8 * np.abs(fd).max())


def rewards_for(graph, seed):
    """Four reward vectors: ones, random, sparse random, all zero."""
    rng = np.random.default_rng(seed)
    n = graph.n_states
    return np.column_stack([np.ones(n), rng.uniform(0, 2, n),
                            rng.uniform(0, 1, n) * (rng.random(n) < 0.5), np.zeros(n)])


def central_differences(f, theta, h=1e-6):
    """Columns d f / d theta_k of a function returning an array."""
    cols = []
    for k in range(theta.size):
        step = np.zeros_like(theta)
        step[k] = h * max(1.0, abs(theta[k]))
        cols.append((f(theta + step) - f(theta - step)) / (2 * step[k]))
    return np.stack(cols, axis=-1)


# ------------------------------------------------------- against dense U
def assert_matches_dense_and_lu(g, thetas, R, res, lu):
    """``res`` (reward_moments of PAIRS with gradients) against the dense inverse at
    every theta; with ``lu`` (a native result) also against the LU path, to rounding."""
    for p, theta in enumerate(thetas):
        mean, cross, mean_grad, cross_grad = dense_moments(g, theta, R, PAIRS)
        np.testing.assert_allclose(res.mean[p], mean, rtol=1e-12, atol=0)
        np.testing.assert_allclose(res.cross[p], cross, rtol=1e-12, atol=0)
        np.testing.assert_allclose(res.mean_grad[p], mean_grad, rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose(res.cross_grad[p], cross_grad, rtol=1e-11, atol=1e-14)
        if lu:
            lu_p = _lu_moments(g, theta, R, np.array(PAIRS), True)
            np.testing.assert_allclose(res.mean[p], lu_p[0], rtol=1e-12)
            np.testing.assert_allclose(res.cross[p], lu_p[2], rtol=1e-12)
            np.testing.assert_allclose(res.mean_grad[p], lu_p[1], rtol=1e-11, atol=1e-14)
            np.testing.assert_allclose(res.cross_grad[p], lu_p[3], rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("seed", range(6))
def test_acyclic_values_match_dense_inverse(seed):
    g = random_graph(20, 3, 0.3, seed=seed, acyclic=True)
    assert _core.is_acyclic(g)
    rng = np.random.default_rng(seed)
    thetas = rng.uniform(0.2, 2.0, (3, 3))
    R = rewards_for(g, seed)
    res = reward_moments(g, thetas, R, PAIRS, grad=True)
    assert res.mean.shape == (3, 4) and res.cross.shape == (3, len(PAIRS))
    assert res.mean_grad.shape == (3, 4, 3) and res.cross_grad.shape == (3, len(PAIRS), 3)
    assert_matches_dense_and_lu(g, thetas, R, res, lu=True)
    assert np.all(res.mean[:, 3] == 0) and np.all(res.cross[:, 2:4] >= 0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("acyclic", [True, False])
def test_gradients_match_finite_differences(seed, acyclic):
    g = random_graph(12, 3, 0.3, seed=seed, acyclic=acyclic)
    assert _core.is_acyclic(g) == acyclic
    theta = np.random.default_rng(seed).uniform(0.3, 1.5, 3)
    R = rewards_for(g, seed)
    res = reward_moments(g, theta, R, PAIRS, grad=True)
    fd_mean = central_differences(lambda t: reward_moments(g, t, R).mean[0], theta)
    fd_cross = central_differences(lambda t: reward_moments(g, t, R, PAIRS).cross[0], theta)
    assert_matches_fd(res.mean_grad[0], fd_mean)
    assert_matches_fd(res.cross_grad[0], fd_cross)
    mean, cross, mean_grad, cross_grad = dense_moments(g, theta, R, PAIRS)
    np.testing.assert_allclose(res.mean[0], mean, rtol=1e-11)
    np.testing.assert_allclose(res.cross[0], cross, rtol=1e-11)
    np.testing.assert_allclose(res.mean_grad[0], mean_grad, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(res.cross_grad[0], cross_grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("seed", range(3))
def test_discrete_acyclic_expectation_and_gradient(seed):
    g = random_graph(10, 2, 0.3, seed=seed, discrete=True, acyclic=True)
    theta = np.array([0.7, 0.4])
    R = rewards_for(g, seed)
    values, grads = expectation_and_grad(g, theta, R)
    mean, _, mean_grad, _ = dense_moments(g, theta, R, [])
    np.testing.assert_allclose(values, mean, rtol=1e-12)
    np.testing.assert_allclose(grads, mean_grad, rtol=1e-11, atol=1e-14)
    assert_matches_fd(grads, central_differences(lambda t: reward_moments(g, t, R).mean[0], theta))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("acyclic", [True, False])
def test_discrete_second_moments_and_gradients(seed, acyclic):
    """libphase (acyclic) and the sparse LU (cyclic) against the dense (I - T)^-1
    and central differences; on acyclic graphs the two paths agree to rounding."""
    g = random_graph(14, 3, 0.3, seed=seed, discrete=True, acyclic=acyclic)
    assert _core.is_acyclic(g) == acyclic
    rng = np.random.default_rng(seed)
    thetas = rng.uniform(0.2, 1.0, (3, 3))  # random_graph keeps T sub-stochastic on [0, 1]^3
    R = rewards_for(g, seed)
    res = reward_moments(g, thetas, R, PAIRS, grad=True)
    assert_matches_dense_and_lu(g, thetas, R, res, lu=acyclic)
    assert_matches_fd(res.cross_grad[0], central_differences(
        lambda t: reward_moments(g, t, R, PAIRS).cross[0], thetas[0]))
    assert np.all(res.cross[:, 2:4] >= 0)  # E[Y^2] of a zero reward is 0, of a sparse one >= 0
    v, dv = variance_and_grad(g, thetas[0], R)
    diag = reward_moments(g, thetas[0], R, [(a, a) for a in range(4)]).cross[0]
    np.testing.assert_allclose(v, diag - res.mean[0] ** 2, rtol=1e-12, atol=1e-15)
    assert np.all(v[:3] > 0) and v[3] == 0
    assert_matches_fd(dv, central_differences(lambda t: variance_and_grad(g, t, R)[0], thetas[0]))


def test_discrete_geometric_second_moment_gradient():
    """Geometric(p): E[T^2] = (2 - p) / p^2, Var = (1 - p) / p^2 (oracles.md)."""
    g = Graph([1.0], [0], [-1], [0.0], [[1.0]], discrete=True)
    p = np.array([[0.3], [0.5]])
    res = reward_moments(g, p, None, [(0, 0)], grad=True)
    np.testing.assert_allclose(res.cross[:, 0], (2 - p[:, 0]) / p[:, 0] ** 2, rtol=1e-15)
    np.testing.assert_allclose(res.cross_grad[:, 0, 0], (p[:, 0] - 4) / p[:, 0] ** 3,
                               rtol=1e-14)
    v, dv = variance_and_grad(g, p)
    np.testing.assert_allclose(v, (1 - p[:, 0]) / p[:, 0] ** 2, rtol=1e-14)
    np.testing.assert_allclose(dv[:, 0], (p[:, 0] - 2) / p[:, 0] ** 3, rtol=1e-14)


# ------------------------------------------------------------ closed forms
def test_block_counting_branch_lengths_and_batch():
    g = models.block_counting(12)
    R = models.sfs_rewards(g)
    thetas = np.array([[0.5], [1.0], [3.7]])
    values, grads = g.expectation_and_grad(thetas, R)
    i = np.arange(1, 12)
    np.testing.assert_allclose(values, 2 / (i * thetas), rtol=1e-13)
    np.testing.assert_allclose(grads[..., 0], -2 / (i * thetas**2), rtol=1e-13)
    # batching changes nothing, bit for bit
    for p in range(3):
        one_v, one_g = g.expectation_and_grad(thetas[p], R)
        assert np.array_equal(one_v, values[p]) and np.array_equal(one_g, grads[p])
    # the existing API uses the same path
    np.testing.assert_allclose(g.expectation([1.0], R), 2 / i, rtol=1e-13)


@pytest.mark.parametrize("n", [2, 5, 10])
def test_kingman_mean_and_variance_with_gradients(n):
    g = models.kingman(n)
    theta = 1.9
    var = sum((2 / (theta * k * (k - 1))) ** 2 for k in range(2, n + 1))
    mean, dmean = g.expectation_and_grad([theta])
    v, dv = g.variance_and_grad([theta])
    assert mean == pytest.approx(2 * (1 - 1 / n) / theta, rel=1e-14)
    assert v == pytest.approx(var, rel=1e-13)
    # every rate is theta * const: E[T] ~ 1/theta, Var[T] ~ 1/theta^2
    np.testing.assert_allclose(dmean, [-mean / theta], rtol=1e-13)
    np.testing.assert_allclose(dv, [-2 * var / theta], rtol=1e-12)


def test_rabbits_table_and_second_moment_gradient():
    g = models.rabbits(2)
    theta = np.array([1.0, 2.0, 4.0])
    res = reward_moments(g, theta, None, [(0, 0)], grad=True)
    assert res.mean[0, 0] == pytest.approx(0.5083056478405316, rel=1e-13)
    np.testing.assert_allclose(res.mean_grad[0, 0], [-0.012946877, -0.199037538, -0.024320924],
                               atol=5e-10)
    assert res.cross[0, 0] == pytest.approx(0.4742994006688668, rel=1e-13)
    assert_matches_fd(res.cross_grad[0], central_differences(
        lambda t: reward_moments(g, t, None, [(0, 0)]).cross[0], theta))
    v, dv = g.variance_and_grad(theta)
    assert v == pytest.approx(0.4742994006688668 - 0.5083056478405316**2, rel=1e-12)
    assert_matches_fd(dv, central_differences(lambda t: g.variance(t), theta))


# ------------------------------------------------------------------ errors
def test_stuck_state_and_domain_on_an_acyclic_graph():
    # start -> middle at rate theta0, middle -> absorption at theta1
    g = models.erlang(2).from_edges([1.0, 0.0], [0, 1], [1, -1], [0.0, 0.0],
                                    [[1.0, 0.0], [0.0, 1.0]], states=[(2,), (1,)])
    assert _core.is_acyclic(g)
    assert g.expectation([2.0, 4.0]) == pytest.approx(0.75, rel=1e-15)
    with pytest.raises(ValueError, match=r"state \(2,\) is reachable from the start but "
                       r"cannot reach absorption at this theta"):
        g.expectation([2.0, 0.0])
    with pytest.raises(ValueError, match="negative rate"):
        g.expectation([-1.0, 1.0])
    res = reward_moments(g, [[2.0, 0.0], [2.0, 4.0], [-1.0, 1.0]], grad=True, errors="nan")
    assert np.isnan(res.mean[[0, 2]]).all() and np.isnan(res.mean_grad[[0, 2]]).all()
    np.testing.assert_allclose(res.mean_grad[1, 0], [-1 / 4, -1 / 16], rtol=1e-15)


def test_argument_errors():
    g = models.kingman(4)
    with pytest.raises(ValueError, match="pairs must index the 1 reward vectors"):
        reward_moments(g, [1.0], None, [(0, 1)])
    with pytest.raises(ValueError, match=r"thetas must have shape \(1,\) or \(P, 1\)"):
        reward_moments(g, [[1.0, 2.0]])
    with pytest.raises(ValueError, match="errors must be"):
        reward_moments(g, [1.0], errors="ignore")
    with pytest.raises(ValueError, match="theta is required"):
        reward_moments(g)


def test_gradient_into_a_stuck_state_on_an_acyclic_graph():
    # 0 -> out at 1, 0 -> 1 at theta, 1 -> out at theta: E[T] = 2 / (1 + theta) for
    # theta > 0 but 1 at theta = 0, where the zero rate leads into a stuck state.
    g = models.exponential().from_edges([1.0, 0.0], [0, 0, 1], [-1, 1, -1], [1.0, 0.0, 0.0],
                                        [[0.0], [1.0], [1.0]], states=[(0,), (1,)])
    assert _core.is_acyclic(g)
    with pytest.raises(ValueError, match=r"state \(1,\) is reachable .* not differentiable"):
        expectation_and_grad(g, [0.0])
    res = reward_moments(g, [[0.0], [0.5]], grad=True, errors="nan")
    assert np.isnan(res.mean[0]).all() and np.isnan(res.mean_grad[0]).all()
    np.testing.assert_allclose(res.mean_grad[1, 0], [-2 / 1.5**2], rtol=1e-14)
    assert reward_moments(g, [0.0]).mean[0, 0] == pytest.approx(1.0, rel=1e-15)
