"""The atom at zero: a graph with sum(alpha) < 1 has P(T = 0) = 1 - sum(alpha).

Semantics (docs/likelihood.md, "The atom at zero"): an exact 0 scores the
atom's mass, cdf(0) = defect, survival(0) = sum(alpha), right-censoring never
includes the atom, an interval (lo, hi] includes it iff lo < 0. Oracles:
closed forms (atom + hypoexponential), scipy's expm and expm_frechet on
random graphs with a defect, and a conjugate posterior for a fit to the
project's own samples.
"""

import numpy as np
import pytest
from scipy import stats
from scipy.linalg import expm, expm_frechet

from phasic_mpi import Graph, Observations
from phasic_mpi.config.loaders import load_data
from phasic_mpi.io.datafile import read_data_file, write_data
from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import Gamma
from randgraph import random_graph

ATOM = 0.3


def atom_chain(second_rate=1.0):
    """alpha = (0.7, 0): 0 -> 1 at theta, 1 -> out at second_rate * theta.

    second_rate = 1 is the issue's chain (0.7 Erlang(2, theta) + atom 0.3).
    """
    return Graph([1 - ATOM, 0.0], [0, 1], [1, -1], [0.0, 0.0], [[1.0], [second_rate]])


def hypoexp(theta, t):
    """Density, CDF and dCDF/dtheta of the rates theta, 2 theta (without the atom)."""
    e1, e2 = np.exp(-theta * t), np.exp(-2 * theta * t)
    f = 2 * theta * (e1 - e2)
    F = 1 - 2 * e1 + e2
    dF = 2 * t * (e1 - e2)
    return f, F, dF


def test_closed_forms_of_atom_plus_hypoexponential():
    g, theta = atom_chain(2.0), 1.3
    t = np.array([0.0, 0.2, 1.0, 3.5])
    f, F, _ = hypoexp(theta, t)
    np.testing.assert_allclose(g.pdf(t, [theta]), np.r_[ATOM, (1 - ATOM) * f[1:]], rtol=1e-12)
    np.testing.assert_allclose(g.logpdf(t[:1], [theta]), [np.log(ATOM)], rtol=1e-15)
    np.testing.assert_allclose(g.cdf(t, [theta]), ATOM + (1 - ATOM) * F, rtol=1e-12)
    np.testing.assert_allclose(g.survival(t, [theta]), (1 - ATOM) * (1 - F), rtol=1e-12)
    assert g.cdf([0.0], [theta])[0] == pytest.approx(ATOM, rel=1e-15)
    assert g.survival([0.0], [theta])[0] == pytest.approx(1 - ATOM, rel=1e-15)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_loglik_and_gradient_of_every_kind_of_observation(mode):
    from phasic_mpi.model.native import loglik

    g, theta, t = atom_chain(2.0), 1.3, 0.9
    f, F, dF = hypoexp(theta, t)
    df = 2 * (np.exp(-theta * t) - np.exp(-2 * theta * t)) \
        + 2 * theta * (-t * np.exp(-theta * t) + 2 * t * np.exp(-2 * theta * t))
    p = 1 - ATOM
    cases = [  # (observations, log-likelihood, d/dtheta)
        (Observations([0.0, t, 0.0]), 2 * np.log(ATOM) + np.log(p * f), df / f),
        (Observations(right_censored=[0.0]), np.log(p), 0.0),
        (Observations(right_censored=[t]), np.log(p * (1 - F)), -dF / (1 - F)),
        (Observations(interval=[[-np.inf, t]]), np.log(ATOM + p * F), p * dF / (ATOM + p * F)),
        (Observations(interval=[[-1.0, t]]), np.log(ATOM + p * F), p * dF / (ATOM + p * F)),
        (Observations(interval=[[0.0, t]]), np.log(p * F), dF / F),
        (Observations(interval=[[-np.inf, np.inf]]), 0.0, 0.0),
        (Observations(interval=[[0.0, np.inf]]), np.log(p), 0.0),
    ]
    for obs, want, dwant in cases:
        ll, grad, status = loglik(g, obs, [[theta]], grad=True, gradient_mode=mode)
        assert status[0] == 0
        assert ll[0] == pytest.approx(want, rel=1e-12, abs=1e-15)
        assert grad[0, 0] == pytest.approx(dwant, rel=1e-10, abs=1e-14)


def test_the_issue_sample_is_scored_with_the_atom():
    g, theta = atom_chain(), 1.5
    x = g.sample(200, [theta], seed=3)
    zeros = x == 0
    assert zeros.sum() == 65  # the issue's figure
    pos = x[~zeros]
    want = zeros.sum() * np.log(ATOM) + np.sum(np.log((1 - ATOM) * theta**2 * pos) - theta * pos)
    ll, grad = g.loglik_and_grad(x, [[theta]])
    assert ll[0] == pytest.approx(want, rel=1e-12)
    assert grad[0, 0] == pytest.approx(2 * pos.size / theta - pos.sum(), rel=1e-10)


def frechet_F(alpha, S, dS, t):
    """P(T <= t) without the defect's constant, and its derivative along dS."""
    one = np.ones(len(alpha))
    E, L = expm_frechet(S * t, dS * t)
    return 1.0 - alpha @ E @ one, -(alpha @ L @ one)


@pytest.mark.parametrize("n,d,seed", [(5, 1, 71), (12, 3, 72)])
def test_random_graphs_with_a_defect_against_expm(n, d, seed):
    from test_loglik import sub_intensity_derivatives

    g = random_graph(n, d, 0.3, seed)
    assert g.defect > 0.04
    theta = np.random.default_rng(seed).uniform(0.5, 1.5, d)
    alpha, S, s = g.to_matrices(theta)
    dS, ds = sub_intensity_derivatives(g, theta)
    t, hi = 0.7, 1.6
    np.testing.assert_allclose(g.cdf([0.0, t], theta), [g.defect, 1 - alpha @ expm(S * t).sum(1)],
                               rtol=1e-12)
    assert g.survival([0.0], theta)[0] == pytest.approx(alpha.sum(), rel=1e-14)
    # zeros, a positive time, (-inf, hi] and (0, hi]
    data = Observations([0.0, t], [3.0, 1.0], interval=[[-np.inf, hi], [0.0, hi]])
    E = expm(S * t)
    f = alpha @ E @ s
    F_hi = [frechet_F(alpha, S, dS[m], hi) for m in range(d)]
    F_val = F_hi[0][0]
    want = 3 * np.log(g.defect) + np.log(f) + np.log(F_val) + np.log(F_val - g.defect)
    dwant = np.empty(d)
    for m in range(d):
        _, L = expm_frechet(S * t, dS[m] * t)
        df = alpha @ L @ s + alpha @ E @ ds[m]
        dF = F_hi[m][1]
        dwant[m] = df / f + dF / F_val + dF / (F_val - g.defect)
    ll, grad = g.loglik_and_grad(data, theta[None, :])
    assert ll[0] == pytest.approx(want, rel=1e-11)
    np.testing.assert_allclose(grad[0], dwant, rtol=1e-8)


def test_no_defect_scores_the_density_at_zero():
    # alpha sums to 1 up to round-off: no atom, f(0) = alpha . s
    g = Graph([0.1] * 10, list(range(10)), [-1] * 10, np.arange(1.0, 11.0))
    assert np.cumsum(g.alpha)[-1] < 1.0 and g.defect == 0.0  # summed in order: 1 - 1e-16
    f0 = 0.1 * np.arange(1.0, 11.0).sum()
    assert g.pdf([0.0])[0] == pytest.approx(f0, rel=1e-14)
    assert g.loglik([0.0], np.zeros((1, 0)))[0] == pytest.approx(np.log(f0), rel=1e-14)
    assert np.all(g.sample(20000, seed=1) > 0)  # and the simulator starts no walker in it


def test_sample_matches_the_distribution_it_is_scored_with():
    g, theta = atom_chain(2.0), 1.3
    x = g.sample(20000, [theta], seed=11)
    # The zeros are Binomial(20000, 0.3): 4 sd is 0.013 (a false failure has
    # probability 6e-5; the seed is fixed, so the test is deterministic).
    zeros = np.mean(x == 0)
    assert abs(zeros - ATOM) < 4 * np.sqrt(ATOM * (1 - ATOM) / x.size)
    # The rest follows the (renormalised) hypoexponential: KS test at 1e-3.
    assert stats.kstest(x[x > 0], lambda u: hypoexp(theta, u)[1]).pvalue > 1e-3


def test_simulated_and_written_data_keep_the_atom(tmp_path):
    g, theta = atom_chain(), 1.5
    cfg = {"simulate": {"theta": [theta], "n": 300, "seed": 4}}
    obs = load_data(cfg, g)
    np.testing.assert_array_equal(obs.exact, g.sample(300, [theta], seed=4))
    both = Observations(obs.exact, interval=[[-np.inf, 0.5], [-1.0, 0.2], [0.0, 0.1]])
    path = tmp_path / "atom.csv"
    write_data(path, both)
    back = read_data_file(path)
    np.testing.assert_array_equal(back.interval_lo, [-np.inf, -1.0, 0.0])
    assert g.loglik(back, [[theta]])[0] == g.loglik(both, [[theta]])[0]
    assert np.isfinite(g.loglik(back, [[theta]])[0])


def test_fit_to_own_samples_recovers_theta():
    """Posterior of theta for 0.3 atom + 0.7 Erlang(2, theta) data.

    With a Gamma(a, b) prior the atom's terms are constant in theta and each
    positive t contributes theta^2 e^{-theta t}, so the posterior is exactly
    Gamma(a + 2m, b + sum t) (m positive observations): the Posterior's log
    density on a grid must differ from that Gamma's by a constant, and its
    mean must recover the true theta.
    """
    g, truth, a, b = atom_chain(), 1.5, 2.0, 1.0
    x = g.sample(2000, [truth], seed=8)
    pos = x[x > 0]
    post = Posterior(g, x, [Gamma(a, b)])  # z = log theta: log p(z) = log p(theta) + z
    grid = np.linspace(1.2, 1.8, 61)
    logp = post.evaluate(np.log(grid)[:, None]).logp - np.log(grid)
    exact = stats.gamma(a + 2 * pos.size, scale=1 / (b + pos.sum()))
    diff = logp - exact.logpdf(grid)
    np.testing.assert_allclose(diff, diff[0], rtol=0, atol=1e-9 * np.abs(logp).max())
    # Statistical: the posterior sd is ~0.028; the truth lies within 4 sd of
    # the posterior mean unless a 6e-5-probability draw happened (fixed seed).
    assert abs(exact.mean() - truth) < 4 * exact.std()
