"""Posterior in z-space against the graph's likelihood, finite differences and a conjugate pair."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit

from phasic_mpi import Observations, models
from phasic_mpi.inference.posterior import FunctionDensity, LogDensity, Posterior, PosteriorEval
from phasic_mpi.inference.priors import (
    Exponential,
    Gamma,
    LogNormal,
    Normal,
    Uniform,
)
from phasic_mpi.inference.transforms import (
    Identity,
    Log,
    Logit,
)

THETA_TRUE = np.array([1.0, 2.0, 4.0])


@pytest.fixture(scope="module")
def graph():
    return models.rabbits(2)  # parameters jump, flood_left, flood_right


@pytest.fixture(scope="module")
def data(graph):
    return Observations(graph.sample(15, THETA_TRUE, seed=3), right_censored=[1.5])


@pytest.fixture(scope="module")
def post(graph, data):
    priors = {"jump": Gamma(2.0, 1.5), "flood_left": {"dist": "lognormal", "mu": 0.5,
                                                      "sigma": 1.0},
              "flood_right": Uniform(0.5, 10.0)}
    return Posterior(graph, data, priors)


def z_points(n, seed=0):
    return np.random.default_rng(seed).normal([0.0, 0.7, 0.0], 0.6, (n, 3))


def assert_no_nan(ev: PosteriorEval):
    for name, value in ev._asdict().items():
        assert not np.any(np.isnan(value)), name
    assert not np.any(np.isnan(ev.logp)) and np.all(np.isfinite(ev.grad))


def test_transforms_and_protocol(post):
    assert post.param_names == ("jump", "flood_left", "flood_right")
    assert post.n_params == 3
    assert post.transforms == (Log(), Log(), Logit(0.5, 10.0))
    assert isinstance(post, LogDensity)
    assert post.describe()["flood_right"] == {
        "prior": {"dist": "uniform", "low": 0.5, "high": 10.0}, "transform": "logit"}


def test_evaluate_matches_graph_and_chain_rule(post, graph, data):
    z = z_points(6)
    ev = post.evaluate(z)
    # independent map to theta and its derivative
    theta = np.column_stack([np.exp(z[:, 0]), np.exp(z[:, 1]),
                             0.5 + 9.5 * expit(z[:, 2])])
    dtheta = np.column_stack([theta[:, 0], theta[:, 1],
                              9.5 * expit(z[:, 2]) * expit(-z[:, 2])])
    ll, grad = graph.loglik_and_grad(data, theta)
    np.testing.assert_allclose(ev.loglik, ll, rtol=1e-12)
    np.testing.assert_allclose(ev.loglik_grad, grad * dtheta, rtol=1e-10, atol=1e-12)
    logprior = (stats.gamma(2.0, scale=1 / 1.5).logpdf(theta[:, 0]) + z[:, 0]
                + stats.lognorm(s=1.0, scale=math.exp(0.5)).logpdf(theta[:, 1]) + z[:, 1]
                + stats.uniform(0.5, 9.5).logpdf(theta[:, 2]) + np.log(dtheta[:, 2]))
    np.testing.assert_allclose(ev.logprior, logprior, rtol=1e-12)
    np.testing.assert_allclose(ev.logp, ll + logprior, rtol=1e-12)
    assert not ev.invalid.any()
    np.testing.assert_allclose(post.to_theta(z), theta, rtol=1e-14)
    np.testing.assert_allclose(post.to_z(theta), z, rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences(post):
    z = z_points(4, seed=1)
    grad = post.logp_and_grad(z)[1]
    h = 1e-5
    for m in range(3):
        step = np.zeros(3)
        step[m] = h
        fd = (post.logp_and_grad(z + step)[0] - post.logp_and_grad(z - step)[0]) / (2 * h)
        np.testing.assert_allclose(grad[:, m], fd, rtol=1e-6, atol=1e-7)
        fd_prior = (post.logprior(z + step)[0] - post.logprior(z - step)[0]) / (2 * h)
        np.testing.assert_allclose(post.evaluate(z).logprior_grad[:, m], fd_prior,
                                   rtol=1e-7, atol=1e-8)


def test_batch_equals_single_calls_bitwise(post):
    z = np.vstack([z_points(5, seed=2), [[800.0, 0.0, 0.0]], [[np.nan, 0.0, 0.0]]])
    batch = post.evaluate(z)
    for i in range(z.shape[0]):
        single = post.evaluate(z[i])
        for name in PosteriorEval._fields:
            np.testing.assert_array_equal(getattr(single, name), getattr(batch, name)[i:i + 1])


def test_invalid_theta_negative_rate(graph, data):
    post = Posterior(graph, data, [Normal(1.0, 1.0)] * 3, transforms="identity",
                     check_domain=False)  # negative rates reachable on purpose
    assert post.transforms == (Identity(),) * 3
    z = np.array([[1.0, 2.0, 4.0], [-0.5, 2.0, 4.0], [1.0, 2.0, -1e-3]])
    ev = post.evaluate(z)
    assert_no_nan(ev)
    np.testing.assert_array_equal(ev.invalid, [False, True, True])
    assert np.all(ev.loglik[1:] == -np.inf) and np.all(ev.loglik_grad[1:] == 0.0)
    assert np.all(ev.logp[1:] == -np.inf)
    # the prior is computed independently of the likelihood
    np.testing.assert_allclose(ev.logprior, stats.norm(1, 1).logpdf(z).sum(axis=1))
    np.testing.assert_allclose(ev.logprior_grad, -(z - 1.0))
    assert np.isfinite(ev.loglik[0])


def test_invalid_range_overflow_and_nonfinite_z(post):
    # jump = 1e10 needs too many terms (status RANGE, NaN from libphase);
    # z = 800 overflows theta to inf; non-finite z
    z = np.array([[math.log(1e10), 0.0, 0.0], [800.0, 0.0, 0.0], [0.0, 0.0, np.inf],
                  [np.nan, 0.0, 0.0], [0.0, -np.inf, 0.0], [0.0, 0.0, 0.0]])
    with np.errstate(all="raise", under="ignore"):
        ev = post.evaluate(z)
    assert_no_nan(ev)
    np.testing.assert_array_equal(ev.invalid, [True] * 5 + [False])
    assert np.all(ev.loglik[:5] == -np.inf) and np.all(ev.loglik_grad[:5] == 0.0)
    assert np.isfinite(ev.logprior[0])  # a valid prior point with an invalid likelihood
    assert np.all(ev.logprior[1:5] == -np.inf) and np.all(ev.logprior_grad[1:5] == 0.0)


def test_conjugate_exponential_gamma():
    a, b = 2.5, 1.5
    t = np.array([0.3, 1.1, 0.7, 2.4, 0.05, 0.9, 1.6])
    post = Posterior(models.exponential(), t, [Gamma(a, b)], transforms=[Log()])
    z = np.linspace(-2.0, 1.5, 8).reshape(-1, 1)
    logp, grad = post.logp_and_grad(z)
    # posterior Gamma(a + n, b + sum t) of theta = e^z, times the Jacobian e^z
    exact = stats.gamma(a + t.size, scale=1 / (b + t.sum())).logpdf(np.exp(z[:, 0])) + z[:, 0]
    np.testing.assert_allclose(logp - logp[0], exact - exact[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(grad[:, 0], a + t.size - (b + t.sum()) * np.exp(z[:, 0]),
                               rtol=1e-9, atol=1e-9)
    # the constant is the log evidence: log of the marginal likelihood, closed form
    log_evidence = (a * math.log(b) - math.lgamma(a) + math.lgamma(a + t.size)
                    - (a + t.size) * math.log(b + t.sum()))
    np.testing.assert_allclose(logp - exact, log_evidence, rtol=1e-10)


def test_sample_prior_z(post):
    z = post.sample_prior_z(np.random.default_rng(5), 20_000)
    assert z.shape == (20_000, 3) and np.all(np.isfinite(z))
    theta = post.to_theta(z)
    for m, prior in enumerate(post.priors):
        se = math.sqrt(prior.var / z.shape[0])
        assert abs(theta[:, m].mean() - prior.mean) < 5 * se
    np.testing.assert_array_equal(post.sample_prior_z(np.random.default_rng(9), 3),
                                  post.sample_prior_z(np.random.default_rng(9), 3))
    # a gamma with a tiny shape draws exact zeros; z must stay finite
    tiny = Posterior(models.exponential(), [1.0], [Gamma(0.005, 1.0)])
    assert np.all(np.isfinite(tiny.sample_prior_z(np.random.default_rng(0), 2000)))


def test_priors_by_sequence_or_mapping(graph, data, post):
    seq = Posterior(graph, data, [Gamma(2.0, 1.5), LogNormal(0.5, 1.0), Uniform(0.5, 10.0)],
                    transforms={"flood_right": "logit"})
    z = z_points(3)
    np.testing.assert_array_equal(seq.evaluate(z).logp, post.evaluate(z).logp)


@pytest.mark.parametrize(("priors", "transforms", "message"), [
    ([Gamma(1, 1)] * 2, None, r"priors: 2 priors for 3 parameters \(jump, flood_left"),
    ({"jump": Gamma(1, 1), "flood_left": Gamma(1, 1)}, None,
     "priors: no prior for parameter 'flood_right'"),
    ({"jump": Gamma(1, 1), "flood_left": Gamma(1, 1), "flood_right": Gamma(1, 1),
      "jmup": Gamma(1, 1)}, None, "priors: unknown parameter 'jmup'"),
    ({"jump": {"dist": "gamma", "shape": 1, "rtae": 1}, "flood_left": Gamma(1, 1),
      "flood_right": Gamma(1, 1)}, None, "prior.jump: unknown key 'rtae'"),
    ([Gamma(1, 1)] * 3, {"flood_left": "identity"},
     "parameter 'flood_left': the identity transform maps onto"),
    ([Gamma(1, 1)] * 3, {"fl": "log"}, "transforms: unknown parameter 'fl'"),
    ([Gamma(1, 1)] * 3, ["log", "log"], "transforms: 2 transforms for 3 parameters"),
])
def test_construction_errors(graph, data, priors, transforms, message):
    with pytest.raises(ValueError, match=message):
        Posterior(graph, data, priors, transforms)


def test_rows_selects_a_block(post):
    z = z_points(7, seed=4)
    full = post.evaluate(z)
    for rows in (slice(2, 5), range(2, 5), [2, 3, 4]):
        block = post.evaluate(z, rows=rows)
        for name in PosteriorEval._fields:
            np.testing.assert_array_equal(getattr(block, name), getattr(full, name)[2:5])


def test_empty_batch(post):
    ev = post.evaluate(np.zeros((0, 3)))  # a rank may own no particles
    assert ev.logp.shape == (0,) and ev.grad.shape == (0, 3) and ev.invalid.shape == (0,)


def test_shape_and_to_z_errors(post):
    with pytest.raises(ValueError, match=r"z must have shape \(P, 3\)"):
        post.evaluate(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="parameter 'flood_right': theta = 11.0 is outside"):
        post.to_z([1.0, 1.0, 11.0])
    with pytest.raises(ValueError, match="parameter 'jump': theta on the boundary"):
        post.to_z([0.0, 1.0, 1.0])


def exp_loglik(theta):
    """Exponential log-likelihood of the data below, in theta-space."""
    t = np.array([0.3, 1.1, 0.7, 2.4])
    rate = theta[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return t.size * np.log(rate) - rate * t.sum(), (t.size / rate - t.sum())[:, None]


def test_function_density_matches_posterior(tmp_path, monkeypatch):
    prior = [Exponential(0.7)]
    reference = Posterior(models.exponential(), [0.3, 1.1, 0.7, 2.4], prior)
    density = FunctionDensity(exp_loglik, ["rate"], priors=prior)
    assert isinstance(density, LogDensity)
    z = np.linspace(-2, 2, 5).reshape(-1, 1)
    for got, want in zip(density.evaluate(z), reference.evaluate(z)):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    # loaded as module:function
    (tmp_path / "user_model.py").write_text(textwrap.dedent("""
        import numpy as np
        def loglik(theta):
            return -0.5 * (theta ** 2).sum(axis=1), -theta
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = FunctionDensity("user_model:loglik", ["a", "b"], priors=[Normal(0, 1)] * 2)
    ev = loaded.evaluate([[0.5, -1.0]])
    np.testing.assert_allclose(ev.loglik, [-0.625])
    np.testing.assert_allclose(ev.loglik_grad, [[-0.5, 1.0]])


def test_function_density_invalid_values_and_shapes():
    def bad(theta):
        ll = np.array([np.nan, np.inf, 1.0, 2.0])
        grad = np.array([[1.0], [1.0], [np.nan], [3.0]])
        return ll, grad

    density = FunctionDensity(bad, ["x"], priors=[Normal(0, 1)])
    ev = density.evaluate(np.zeros((4, 1)))
    assert_no_nan(ev)
    np.testing.assert_array_equal(ev.invalid, [True, True, True, False])
    np.testing.assert_array_equal(ev.loglik, [-np.inf, -np.inf, -np.inf, 2.0])
    wrong = FunctionDensity(lambda th: (th[:, 0], th[:, 0]), ["x"], priors=[Normal(0, 1)])
    with pytest.raises(ValueError, match=r"fn returned loglik \(2,\) and grad \(2,\)"):
        wrong.evaluate(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="expected 'module:function'"):
        FunctionDensity("no_colon", ["x"], priors=[Normal(0, 1)])


def test_posterior_pickles_after_use_and_gives_the_same_bits():
    import pickle

    post = Posterior(models.rabbits(2), [0.4, 1.3, 0.2], [Gamma(2.0, 1.0)] * 3)
    z = np.random.default_rng(4).normal(size=(9, 3))
    first = post.evaluate(z)  # builds the prepared libphase call (C structs)
    again = pickle.loads(pickle.dumps(post)).evaluate(z)
    for a, b in zip(first, again):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
