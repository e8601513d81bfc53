"""MAP / maximum-likelihood fits with a Laplace approximation (serial).

Oracles: closed-form MLEs and standard errors (exponential: n / sum t and
theta_hat / sqrt(n); Erlang with known shape k: k n / sum t and
theta_hat / sqrt(k n); Watterson's estimator S / (L a_n) with se
theta_hat / sqrt(S) for an SFS), the conjugate Gamma posterior's mode in
z = log(rate) with sd 1 / sqrt(a + n), a Gaussian log-likelihood with known
precision, and second differences of the log density's values for the
Hessian of a cyclic model. The MPI version is tests/mpi/test_laplace_mpi.py.
"""

import numpy as np
import pytest
from pyrun import run_python

from phasic_mpi.inference.comm import SerialCommunicator
from phasic_mpi.inference.laplace import fit_map, fit_mle
from phasic_mpi.inference.posterior import FunctionDensity, Posterior
from phasic_mpi.inference.priors import Gamma, Normal
from phasic_mpi.model import models
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.sfs import SFSData, simulate_sfs


def test_exponential_mle_and_standard_error():
    t = np.random.default_rng(1).exponential(0.5, 40)
    fit = fit_mle(Posterior(models.exponential(), t, [Gamma(2.0, 1.0)]), starts=3)
    mle = t.size / t.sum()
    assert fit.kind == "mle" and fit.converged.all()
    assert fit.theta[0] == pytest.approx(mle, rel=1e-8)
    assert fit.se_theta[0] == pytest.approx(mle / np.sqrt(t.size), rel=1e-6)
    assert fit.se_z[0] == pytest.approx(1 / np.sqrt(t.size), rel=1e-6)  # z = log(rate)
    assert fit.value == pytest.approx(t.size * np.log(mle) - mle * t.sum(), rel=1e-12)


def test_erlang_known_shape_mle():
    k = 3
    t = np.random.default_rng(2).gamma(k, 1 / 2.0, 30)
    fit = fit_mle(Posterior(models.erlang(k), t, [Gamma(2.0, 1.0)]), starts=2, seed=5)
    mle = k * t.size / t.sum()
    assert fit.theta[0] == pytest.approx(mle, rel=1e-7)
    assert fit.se_theta[0] == pytest.approx(mle / np.sqrt(k * t.size), rel=1e-5)


def test_map_of_the_conjugate_gamma_posterior():
    """Posterior Gamma(a + n, b + sum t); its density in z = log(rate) is
    proportional to exp((a + n) z - (b + sum t) e^z): mode log((a + n) / (b + sum t)),
    curvature -(a + n)."""
    t = np.random.default_rng(3).exponential(2.0, 25)
    a, b = 2.0, 1.5
    fit = fit_map(Posterior(models.exponential(), t, [Gamma(a, b)]), starts=4)
    assert fit.kind == "map"
    assert fit.theta[0] == pytest.approx((a + t.size) / (b + t.sum()), rel=1e-8)
    assert fit.se_z[0] == pytest.approx(1 / np.sqrt(a + t.size), rel=1e-6)
    np.testing.assert_allclose(fit.hessian, [[-(a + t.size)]], rtol=1e-6)


def test_watterson_estimator_from_an_sfs():
    """A constant block-counting graph (coal_rate 1) and theta_mut free:
    loglik = sum_i xi_i log(L theta / i) - L theta a_n + const."""
    n, loci = 6, 20
    bc = models.block_counting(n)
    const = Graph.from_edges(bc.alpha, bc.edge_src, bc.edge_dst, bc.rates([1.0]), None,
                             states=bc.states)
    xi = simulate_sfs(bc, [1.0], 3.0, loci, seed=4)
    post = Posterior(const, [], {"theta_mut": Gamma(2.0, 0.5)},
                     terms=[SFSData(const, xi, n_loci=loci)])
    fit = fit_mle(post, starts=2)
    a_n = np.sum(1 / np.arange(1, n))
    watterson = xi.sum() / (loci * a_n)
    assert fit.theta[0] == pytest.approx(watterson, rel=1e-8)
    assert fit.se_theta[0] == pytest.approx(watterson / np.sqrt(xi.sum()), rel=1e-5)


def gaussian_density(mean, cov):
    prec = np.linalg.inv(cov)

    def fn(theta):
        r = theta - mean
        return -0.5 * np.einsum("pi,ij,pj->p", r, prec, r), -r @ prec

    return FunctionDensity(fn, ["a", "b"], priors=[Normal(0.0, 10.0)] * 2,
                           transforms="identity")


def test_gaussian_hessian_covariance_and_draws():
    mean = np.array([0.5, -1.0])
    cov = np.array([[0.4, 0.15], [0.15, 0.2]])
    fit = fit_mle(gaussian_density(mean, cov), starts=3, seed=2)
    np.testing.assert_allclose(fit.z, mean, atol=1e-8)
    np.testing.assert_allclose(fit.hessian, -np.linalg.inv(cov), rtol=1e-7)
    np.testing.assert_allclose(fit.cov_z, cov, rtol=1e-7)
    # 20 000 draws: means within 4.5 standard errors, covariances within 0.05
    # (their standard errors are below 0.005 here)
    draws = fit.sample_theta(20_000, seed=9)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4.5 * np.sqrt(np.diag(cov) / 20_000))
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.05 * 0.2)
    np.testing.assert_array_equal(draws, fit.sample_theta(20_000, seed=9))
    np.testing.assert_array_equal(fit.initial_points(5, seed=9), draws[:5])


def test_rabbits_hessian_against_second_differences_and_inference_data():
    g = models.rabbits(2)
    data = g.sample(150, [1.0, 2.0, 4.0], seed=2)
    post = Posterior(g, data, [Gamma(2.0, 1.0)] * 3)
    fit = fit_map(post, starts=3, seed=1)
    assert fit.converged.all() and np.max(np.abs(fit.grad)) < 1e-5
    h, d = 1e-4, 3
    hess = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            ei, ej = np.eye(d)[i] * h, np.eye(d)[j] * h
            pts = np.array([fit.z + ei + ej, fit.z + ei - ej, fit.z - ei + ej, fit.z - ei - ej])
            lp = post.evaluate(pts).logp
            hess[i, j] = (lp[0] - lp[1] - lp[2] + lp[3]) / (4 * h * h)
    np.testing.assert_allclose(fit.hessian, hess, rtol=1e-4, atol=1e-4)
    idata = fit.to_inference_data(200, seed=3, chains=2)
    assert idata.posterior["jump"].shape == (2, 200)
    assert idata.posterior.attrs["jump_hat"] == pytest.approx(fit.theta[0])
    np.testing.assert_array_equal(idata.posterior["flood_right"].values.ravel(),
                                  fit.sample_theta(400, seed=3)[:, 2])


def test_same_seed_same_bits_and_explicit_starts():
    post = Posterior(models.rabbits(1), [0.3, 0.9, 0.4, 1.6], [Gamma(2.0, 1.0)] * 3)
    a, b = fit_map(post, starts=4, seed=7), fit_map(post, starts=4, seed=7)
    for field in ("z", "hessian", "optima", "values", "starts"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    c = fit_map(post, starts=a.starts)
    np.testing.assert_array_equal(c.optima, a.optima)
    serial = fit_map(post, starts=4, seed=7, comm=SerialCommunicator())
    np.testing.assert_array_equal(serial.hessian, a.hessian)
    # ties go to the lowest start index
    twice = fit_map(post, starts=np.repeat(a.starts[2:3], 2, axis=0))
    assert twice.best == 0 and twice.values[0] == twice.values[1]


def test_flat_direction_has_no_laplace_approximation():
    def fn(theta):
        return -(theta[:, 0] - 1.0) ** 2, np.column_stack([-2 * (theta[:, 0] - 1.0),
                                                             np.zeros(len(theta))])

    dens = FunctionDensity(fn, ["x", "y"], priors=[Normal(0.0, 1.0)] * 2,
                           transforms="identity")
    fit = fit_mle(dens, starts=2)
    assert fit.theta[0] == pytest.approx(1.0, abs=1e-8) and not fit.laplace_ok
    assert np.all(np.isnan(fit.se_theta))
    np.testing.assert_array_equal(fit.initial_points(3), np.tile(fit.z, (3, 1)))
    with pytest.raises(ValueError, match="not negative definite"):
        fit.sample_z(3)


def test_errors():
    dens = FunctionDensity(lambda th: (np.full(len(th), -np.inf), np.zeros_like(th)),
                           ["x"], priors=[Normal(0.0, 1.0)], transforms="identity")
    with pytest.raises(ValueError, match="none of the 2 starts"):
        fit_map(dens, starts=2)
    with pytest.raises(ValueError, match="starts must be >= 1"):
        fit_map(dens, starts=0)
    with pytest.raises(ValueError, match="shape"):
        fit_map(dens, starts=np.zeros((2, 3)))


def test_serial_fit_never_imports_mpi4py():
    code = ("import sys; from phasic_mpi.inference.laplace import fit_map; "
            "from phasic_mpi.inference.posterior import Posterior; "
            "from phasic_mpi.inference.priors import Gamma; from phasic_mpi.model import models; "
            "fit = fit_map(Posterior(models.exponential(), [1.0, 2.0], [Gamma(2.0, 1.0)]), starts=2); "
            "assert abs(fit.theta[0] - 4 / 4) < 1e-8, fit.theta; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
