"""Priors against scipy.stats, transforms against finite differences and quadrature."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy import integrate, stats

from phasic_mpi.inference.priors import (
    Exponential,
    Gamma,
    HalfNormal,
    LogNormal,
    Normal,
    Prior,
    Uniform,
    make_prior,
)
from phasic_mpi.inference.transforms import (
    Identity,
    Log,
    Logit,
    default_transform,
    log_density_z,
    make_transform,
)

# (prior, the same distribution in scipy)
CASES = [
    (Normal(0.3, 1.7), stats.norm(0.3, 1.7)),
    (LogNormal(0.2, 0.8), stats.lognorm(s=0.8, scale=math.exp(0.2))),
    (Gamma(2.5, 1.5), stats.gamma(2.5, scale=1 / 1.5)),
    (Gamma(0.5, 2.0), stats.gamma(0.5, scale=0.5)),
    (Gamma(1.0, 2.0), stats.gamma(1.0, scale=0.5)),
    (Exponential(1.7), stats.expon(scale=1 / 1.7)),
    (HalfNormal(1.3), stats.halfnorm(scale=1.3)),
    (Uniform(-1.0, 2.5), stats.uniform(-1.0, 3.5)),
]
IDS = [str(p) for p, _ in CASES]


def interior(ref, shape=(3, 5)):
    """Points spread over the support by quantile, in a 2-D array."""
    q = np.linspace(0.001, 0.999, int(np.prod(shape))).reshape(shape)
    return ref.ppf(q)


@pytest.mark.parametrize(("prior", "ref"), CASES, ids=IDS)
def test_logpdf_matches_scipy(prior, ref):
    x = interior(ref)
    value = prior.logpdf(x)
    assert value.shape == x.shape
    np.testing.assert_allclose(value, ref.logpdf(x), rtol=1e-12, atol=1e-13)
    assert prior.logpdf(x[0, 0]).shape == ()
    # endpoints of the support: scipy's convention (e.g. log rate for exponential at 0)
    low, high = prior.support
    ends = np.array([e for e in (low, high) if math.isfinite(e)])
    np.testing.assert_array_equal(prior.logpdf(ends), ref.logpdf(ends))


@pytest.mark.parametrize(("prior", "ref"), CASES, ids=IDS)
def test_grad_matches_finite_differences(prior, ref):
    x = interior(ref).ravel()
    h = 1e-6 * np.where(x != 0, np.abs(x), 1.0)  # relative, so x - h stays in the support
    fd = (ref.logpdf(x + h) - ref.logpdf(x - h)) / (2 * h)
    np.testing.assert_allclose(prior.grad(x), fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("prior", "ref"), CASES, ids=IDS)
def test_outside_support_is_minus_inf_with_zero_grad(prior, ref):
    low, high = prior.support
    bad = [np.nan, -np.inf, np.inf]
    if math.isfinite(low):
        bad += [low - 1e-9, low - 5.0]
    if math.isfinite(high):
        bad += [high + 1e-9, high + 5.0]
    bad = np.array(bad)
    with np.errstate(all="raise"):  # no warnings either
        value, grad = prior.logpdf(bad), prior.grad(bad)
    assert np.all(value == -np.inf)
    assert np.all(grad == 0.0)


@pytest.mark.parametrize(("prior", "ref"), CASES, ids=IDS)
def test_moments_and_samples(prior, ref):
    assert prior.mean == pytest.approx(ref.mean(), rel=1e-12)
    assert prior.var == pytest.approx(ref.var(), rel=1e-12)
    n = 100_000
    draws = prior.sample(np.random.default_rng(7), n)
    assert draws.shape == (n,)
    low, high = prior.support
    assert np.all((draws >= low) & (draws <= high))
    # sample mean and variance within 5 standard errors
    assert abs(draws.mean() - prior.mean) < 5 * math.sqrt(prior.var / n)
    kurtosis = float(ref.stats(moments="k"))
    se_var = prior.var * math.sqrt((kurtosis + 2) / n)
    assert abs(draws.var() - prior.var) < 5 * se_var
    assert prior.sample(np.random.default_rng(1), (2, 3)).shape == (2, 3)
    np.testing.assert_array_equal(prior.sample(np.random.default_rng(3), 4),
                                  prior.sample(np.random.default_rng(3), 4))


@pytest.mark.parametrize(("prior", "ref"), CASES, ids=IDS)
def test_to_dict_round_trip(prior, ref):
    spec = json.loads(json.dumps(prior.to_dict()))
    assert make_prior(spec, "prior.x") == prior
    assert make_prior(prior) is prior


@pytest.mark.parametrize(("spec", "expected"), [
    ({"dist": "log-normal", "mu": 0, "sigma": 1}, LogNormal(0.0, 1.0)),
    ({"dist": "LogNormal", "mu": 0, "sigma": 1}, LogNormal(0.0, 1.0)),
    ({"dist": "half-normal", "sigma": 2}, HalfNormal(2.0)),
    ({"dist": "half_normal", "sigma": 2}, HalfNormal(2.0)),
    ({"dist": "gaussian", "mu": 1, "sigma": 2}, Normal(1.0, 2.0)),
    ({"dist": "gamma", "shape": 2, "scale": 0.5}, Gamma(2.0, 2.0)),
    ({"dist": "exponential", "scale": 4}, Exponential(0.25)),
    ({"dist": "uniform", "low": -1, "high": np.float32(2)}, Uniform(-1.0, 2.0)),
])
def test_make_prior_aliases(spec, expected):
    prior = make_prior(spec)
    assert prior == expected
    assert isinstance(prior, Prior)


@pytest.mark.parametrize(("spec", "message"), [
    ({"dist": "normal", "mu": 0, "sgima": 1},
     "prior.jump: unknown key 'sgima' (expected: dist, mu, sigma)"),
    ({"dist": "normal", "mu": 0},
     "prior.jump: missing key 'sigma' (expected: dist, mu, sigma)"),
    ({"dist": "gamma", "shape": 2},
     "prior.jump: missing key 'rate' (expected: dist, shape, rate (or scale))"),
    ({"dist": "gamma", "shape": 2, "rate": 1, "scale": 1},
     "prior.jump: give 'rate' or 'scale', not both"),
    ({"dist": "gamma", "shape": 2, "scale": 0},
     "prior.jump: scale must be finite and > 0, got 0"),
    ({"dist": "gamma", "shape": 2, "scale": "1"},
     "prior.jump: scale must be a number, got '1'"),
    ({"dist": "cauchy", "loc": 0},
     ("prior.jump: unknown dist 'cauchy' (expected one of: normal, lognormal, gamma, "
      "exponential, halfnormal, uniform)")),
    ({"dist": 3}, "prior.jump: unknown dist 3"),
    ({"mu": 0, "sigma": 1}, "prior.jump: missing key 'dist'"),
    ([1, 2], "prior.jump: expected a mapping with a 'dist' key, got [1, 2]"),
    ({"dist": "normal", "mu": 0, "sigma": 0}, "prior.jump: sigma must be > 0, got 0.0"),
    ({"dist": "halfnormal", "sigma": -1}, "prior.jump: sigma must be > 0, got -1.0"),
    ({"dist": "lognormal", "mu": 0, "sigma": float("nan")},
     "prior.jump: sigma must be finite, got nan"),
    ({"dist": "normal", "mu": float("inf"), "sigma": 1},
     "prior.jump: mu must be finite, got inf"),
    ({"dist": "exponential", "rate": 0}, "prior.jump: rate must be > 0, got 0.0"),
    ({"dist": "gamma", "shape": -1, "rate": 1}, "prior.jump: shape must be > 0, got -1.0"),
    ({"dist": "uniform", "low": 1, "high": 1},
     "prior.jump: need low < high, got low=1.0, high=1.0"),
    ({"dist": "uniform", "low": -math.inf, "high": 1},
     "prior.jump: low must be finite, got -inf"),
    ({"dist": "normal", "mu": "0", "sigma": 1}, "prior.jump: mu must be a number, got '0'"),
    ({"dist": "normal", "mu": True, "sigma": 1},
     "prior.jump: mu must be a number, got True"),
])
def test_make_prior_errors(spec, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        make_prior(spec, "prior.jump")


# ------------------------------------------------------------------- transforms
TRANSFORMS = [Identity(), Log(), Logit(-1.0, 2.5), Logit(0.0, 1.0)]
T_IDS = [repr(t) for t in TRANSFORMS]


@pytest.mark.parametrize("t", TRANSFORMS, ids=T_IDS)
def test_transform_round_trip(t):
    z = np.linspace(-12, 12, 49).reshape(7, 7)
    np.testing.assert_allclose(t.inverse(t.forward(z)), z, rtol=1e-10, atol=1e-12)
    if isinstance(t, Log):  # log(exp(z)) is accurate over the whole range
        wide = np.linspace(-700, 700, 101)
        np.testing.assert_allclose(t.inverse(t.forward(wide)), wide, rtol=1e-15, atol=1e-15)
    theta = t.forward(z)
    np.testing.assert_allclose(t.forward(t.inverse(theta)), theta, rtol=1e-14)


@pytest.mark.parametrize("t", TRANSFORMS, ids=T_IDS)
def test_transform_derivatives(t):
    z = np.linspace(-6, 6, 25)
    h = 1e-5
    fd = (t.forward(z + h) - t.forward(z - h)) / (2 * h)
    np.testing.assert_allclose(t.dtheta_dz(z), fd, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(t.log_abs_jacobian(z), np.log(np.abs(fd)), rtol=1e-8,
                               atol=1e-8)
    fd_logjac = (t.log_abs_jacobian(z + h) - t.log_abs_jacobian(z - h)) / (2 * h)
    np.testing.assert_allclose(t.dlogjac_dz(z), fd_logjac, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("t", TRANSFORMS, ids=T_IDS)
def test_transform_extreme_z(t):
    z = np.array([-700.0, 700.0])
    with np.errstate(all="raise"):
        for f in (t.forward, t.log_abs_jacobian, t.dtheta_dz, t.dlogjac_dz):
            assert np.all(np.isfinite(f(z))), f
    huge = np.array([-1e4, -800.0, 800.0, 1e4])
    with np.errstate(all="raise", under="ignore", over="ignore"):
        theta = t.forward(huge)
        logjac = t.log_abs_jacobian(huge)
        for f in (t.dtheta_dz, t.dlogjac_dz):
            assert not np.any(np.isnan(f(huge)))
    assert np.all(np.isfinite(logjac))
    low, high = t.image
    assert np.all((theta >= low) & (theta <= high))  # saturates onto an endpoint
    if isinstance(t, Logit):
        np.testing.assert_array_equal(theta, [low, low, high, high])
        np.testing.assert_allclose(logjac, math.log(high - low) - np.abs(huge), rtol=1e-15)


def test_transform_inverse_endpoints_and_outside():
    assert Log().inverse(0.0) == -np.inf
    np.testing.assert_array_equal(Logit(0, 1).inverse([0.0, 1.0]), [-np.inf, np.inf])
    with pytest.raises(ValueError, match=r"theta = -1.0 is outside the image \(0, inf\)"):
        Log().inverse([1.0, -1.0])
    with pytest.raises(ValueError, match="outside the image"):
        Logit(0, 1).inverse(np.nan)
    with pytest.raises(ValueError, match="finite low < high"):
        Logit(1, 0)


def test_default_and_make_transform():
    assert default_transform(Gamma(2, 1)) == Log()
    assert default_transform(HalfNormal(1)) == Log()
    assert default_transform(Normal(0, 1)) == Identity()
    assert default_transform(Uniform(-1, 3)) == Logit(-1.0, 3.0)
    assert make_transform(None, Exponential(1)) == Log()
    assert make_transform("default", Uniform(0, 2)) == Logit(0.0, 2.0)
    assert make_transform("logit", Uniform(0, 2)) == Logit(0.0, 2.0)
    assert make_transform("Log", LogNormal(0, 1)) == Log()
    assert make_transform(Identity(), Normal(0, 1)) == Identity()


@pytest.mark.parametrize(("name", "prior", "message"), [
    ("identity", Gamma(2, 1), ("parameter 'jump': the identity transform maps onto "
                               "(-inf, inf) but the prior gamma(shape=2, rate=1) has "
                               "support (0, inf)")),
    ("log", Uniform(0, 10), ("parameter 'jump': the log transform maps onto (0, inf) "
                             "but the prior uniform(low=0, high=10) has support (0, 10)")),
    (Logit(0, 5), Uniform(0, 10), "parameter 'jump': the logit transform maps onto (0, 5)"),
    ("log", Normal(0, 1), "parameter 'jump': the log transform maps onto (0, inf) but"),
    ("logit", Gamma(2, 1), ("parameter 'jump': the logit transform needs a prior with "
                            "a finite support")),
    ("softplus", Gamma(2, 1), "parameter 'jump': unknown transform 'softplus'"),
])
def test_make_transform_errors(name, prior, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        make_transform(name, prior, param="jump")


# ----------------------------------------------------------- change of variables
@pytest.mark.parametrize(("prior", "t"), [
    (Gamma(2.5, 1.5), Log()), (Gamma(0.5, 2.0), Log()), (LogNormal(0.2, 0.8), Log()),
    (Exponential(1.7), Log()), (HalfNormal(1.3), Log()),
    (Uniform(-1.0, 2.5), Logit(-1.0, 2.5)), (Normal(0.3, 1.7), Identity()),
])
def test_density_of_z_integrates_to_one(prior, t):
    def density(z):
        return math.exp(log_density_z(prior, t, z)[0])

    total = sum(integrate.quad(density, a, b, epsabs=1e-13, epsrel=1e-11, limit=200)[0]
                for a, b in [(-np.inf, -5), (-5, 0), (0, 5), (5, np.inf)])
    assert total == pytest.approx(1.0, abs=1e-9)
    z = np.linspace(-4, 4, 17)
    h = 1e-5
    fd = (log_density_z(prior, t, z + h)[0] - log_density_z(prior, t, z - h)[0]) / (2 * h)
    np.testing.assert_allclose(log_density_z(prior, t, z)[1], fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("prior", [p for p, _ in CASES if p.support == (0.0, math.inf)],
                         ids=str)
def test_log_closed_form_equals_chain_rule(prior):
    z = np.linspace(-20, 20, 81)
    theta = np.exp(z)
    value, grad = log_density_z(prior, Log(), z)
    np.testing.assert_allclose(value, prior.logpdf(theta) + z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, prior.grad(theta) * theta + 1, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("prior", "t"), [
    (Gamma(0.5, 2.0), Log()), (Gamma(3.0, 2.0), Log()), (LogNormal(0, 1), Log()),
    (HalfNormal(1.0), Log()), (Exponential(2.0), Log()),
    (Uniform(0.0, 1.0), Logit(0.0, 1.0)), (Uniform(3.0, 4.0), Logit(3.0, 4.0)),
    (Normal(0, 1), Identity()),
])
def test_density_of_z_at_extremes_never_nan(prior, t):
    z = np.array([-1e5, -800.0, -700.0, 700.0, 800.0, 1e5, np.inf, -np.inf, np.nan])
    with np.errstate(all="raise", under="ignore"):
        value, grad = log_density_z(prior, t, z)
    assert not np.any(np.isnan(value)) and not np.any(np.isnan(grad))
    assert np.all(value < np.inf) and np.all(np.isfinite(grad))
    assert np.all(grad[~np.isfinite(value)] == 0.0)
    assert np.all(value[-3:] == -np.inf)
    if isinstance(t, Logit):  # density of z is exactly -|z| + const far out
        np.testing.assert_allclose(value[:6], -np.abs(z[:6]), rtol=1e-15)
    if isinstance(prior, Gamma):  # shape * z for z -> -inf, no underflow of theta
        np.testing.assert_allclose(value[:2], prior.shape * z[:2]
                                   + prior.shape * math.log(prior.rate)
                                   - math.lgamma(prior.shape), rtol=1e-15)
