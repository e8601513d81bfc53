"""Moment terms on discrete-time graphs: observed variances now that their second
moments take the fast path (closed forms of oracles.md, finite differences)."""

import math

import numpy as np

from phasic_mpi.model.graph import Graph
from phasic_mpi.model.terms import MomentData


def geometric() -> Graph:
    """T ~ Geometric(p) on {1, 2, ...}: one state left with probability p = theta."""
    return Graph([1.0], [0], [-1], [0.0], [[1.0]], discrete=True)


def test_observed_variance_of_a_geometric_is_the_closed_form_gaussian():
    # Var[T] = (1 - p) / p^2, dVar/dp = (p - 2) / p^3 (oracles.md: Geometric(0.5) has Var 2)
    term = MomentData(geometric(), 2.5, 0.4, kind="variance")
    p = np.array([[0.3], [0.5], [0.8]])
    value, grad = term.loglik_and_grad(p)
    var = (1 - p[:, 0]) / p[:, 0] ** 2
    dvar = (p[:, 0] - 2) / p[:, 0] ** 3
    resid = (2.5 - var) / 0.4
    np.testing.assert_allclose(value, -0.5 * resid**2 - math.log(0.4) - 0.5 * math.log(2 * math.pi),
                               rtol=1e-13)
    np.testing.assert_allclose(grad[:, 0], resid / 0.4 * dvar, rtol=1e-12)
    np.testing.assert_allclose(term.model_moments(p)[:, 0], var, rtol=1e-13)
    assert abs(term.model_moments([[0.5]])[0, 0] - 2.0) < 1e-14  # oracles.md: Geometric(0.5)
    np.testing.assert_allclose(term.pointwise(p).sum(axis=1), value, rtol=1e-13)


def test_observed_variances_with_rewards_match_the_closed_form_and_finite_differences():
    # A -> B with probability a, B -> absorbed with probability b (each stays otherwise):
    # the visits are independent G_a ~ Geometric(a) and G_b ~ Geometric(b)
    g = Graph([1.0, 0.0], [0, 1], [1, -1], [0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]], discrete=True)
    rewards = np.array([[1.0, 0.0], [2.0, 1.0]])  # per state: (a weighted time, time in B)
    term = MomentData(g, [5.0, 2.0], [0.7, 0.3], kind="variance", rewards=rewards)
    theta = np.array([0.35, 0.6])
    # oracle: Var of a sum of independent geometrics scaled by the rewards
    #   Y1 = 1 * G_a + 2 * G_b, Y2 = G_b with G_x ~ Geometric(x)
    def var(t):
        va, vb = (1 - t[0]) / t[0] ** 2, (1 - t[1]) / t[1] ** 2
        return np.array([va + 4 * vb, vb])
    np.testing.assert_allclose(term.model_moments(theta[None])[0], var(theta), rtol=1e-12)
    value, grad = term.loglik_and_grad(theta[None])

    def loglik(t):
        r = (np.array([5.0, 2.0]) - var(t)) / np.array([0.7, 0.3])
        return -0.5 * np.sum(r * r) - np.sum(np.log([0.7, 0.3])) - math.log(2 * math.pi)

    assert abs(value[0] - loglik(theta)) < 1e-12 * abs(loglik(theta))
    h = 1e-6
    fd = [(loglik(theta + h * e) - loglik(theta - h * e)) / (2 * h) for e in np.eye(2)]
    np.testing.assert_allclose(grad[0], fd, rtol=1e-7)
