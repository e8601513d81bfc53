"""Pointwise log-likelihood and replicated data sets (phasic_mpi.model.pointwise)
against closed forms (exponential), scipy.linalg.expm (rabbits) and libphase's
own total log-likelihood."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import expm

from phasic_mpi.model import models
from phasic_mpi.model.data import Observations
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.pointwise import pointwise_loglik, predictive_data, replicate_times

OBS = Observations([0.2, 0.5, 1.3, 3.0], [1.0, 2.0, 0.0, 3.0], right_censored=[0.7, 2.0],
                   right_weights=[2.0, 1.0],
                   interval=[[0.1, 0.4], [-np.inf, 0.3], [1.0, np.inf], [2.0, 3.0], [0.0, 9.0]],
                   interval_weights=[1.0, 2.0, 1.0, 1.0, 0.5])


def test_exponential_pointwise_values_equal_the_closed_forms():
    rate = np.random.default_rng(0).gamma(20.0, 0.1, size=(40, 1))
    pw = pointwise_loglik(models.exponential(), OBS, rate)
    assert set(pw) == {"exact", "right_censored", "interval"}
    r = rate  # (P, 1) broadcasts over rows
    want_exact = OBS.weights * (np.log(r) - r * OBS.exact)
    want_right = OBS.right_weights * (-r * OBS.right_censored)
    lo = np.maximum(OBS.interval_lo, 0.0)
    mass = np.exp(-r * lo) - np.exp(-r * OBS.interval_hi)
    want_interval = OBS.interval_weights * np.log(mass)
    np.testing.assert_allclose(pw["exact"], want_exact, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pw["right_censored"], want_right, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pw["interval"], want_interval, rtol=1e-12, atol=1e-14)
    assert np.all(pw["exact"][:, 2] == 0.0)  # weight 0: no contribution


def test_rabbits_pointwise_values_against_expm_and_the_oracle_table():
    g = models.rabbits(n=2)
    theta = np.array([[1.0, 2.0, 4.0], [1.5, 1.0, 3.0]])
    obs = Observations([0.5, 1.0, 2.0], right_censored=[0.4, 1.7], interval=[[0.3, 1.1]])
    pw = pointwise_loglik(g, obs, theta)
    # oracles.md: f(0.5), f(1), f(2) at theta = [1, 2, 4]
    np.testing.assert_allclose(np.exp(pw["exact"][0]),
                               [0.792306495213, 0.308695694599, 0.030444025387], rtol=1e-10)
    for p, th in enumerate(theta):
        alpha, S, s = g.to_matrices(th)
        surv = [alpha @ expm(S * t) @ np.ones(len(alpha)) for t in (0.4, 1.7, 0.3, 1.1)]
        np.testing.assert_allclose(pw["right_censored"][p], np.log(surv[:2]), rtol=1e-12)
        np.testing.assert_allclose(pw["interval"][p], [np.log(surv[2] - surv[3])], rtol=1e-12)
        np.testing.assert_allclose(pw["exact"][p],
                                   [np.log(alpha @ expm(S * t) @ s) for t in obs.exact],
                                   rtol=1e-12)


@pytest.mark.parametrize("model", ["exponential", "rabbits", "discrete"])
def test_pointwise_values_sum_to_libphase_total(model):
    if model == "exponential":
        g, theta = models.exponential(), np.array([[0.5], [2.0], [7.0]])
        obs = OBS
    elif model == "rabbits":
        g, theta = models.rabbits(n=2), np.array([[1.0, 2.0, 4.0], [3.0, 0.5, 1.0]])
        obs = OBS
    else:  # geometric with a defect: the atom at 0 and integer data
        g = Graph([0.8], [0], [-1], [0.0], [[1.0]], discrete=True, param_names=["p"])
        theta = np.array([[0.3], [0.6]])
        obs = Observations([0, 1, 4, 2], [2.0, 1.0, 1.0, 0.0], right_censored=[3.0],
                           interval=[[-1.0, 0.0], [1.0, 3.0]])
    pw = pointwise_loglik(g, obs, theta)
    total = sum(v.sum(axis=1) for v in pw.values())
    np.testing.assert_allclose(total, g.loglik(obs, theta), rtol=1e-12)


def test_invalid_theta_gives_minus_infinity_rows():
    g = Graph([1.0], [0], [-1], [0.0], [[1.0]], param_names=["rate"])
    pw = pointwise_loglik(g, Observations([0.5, 1.0], right_censored=[2.0]),
                          np.array([[1.0], [-1.0], [2.0]]))
    assert np.all(np.isneginf(pw["exact"][1])) and np.all(np.isneginf(pw["right_censored"][1]))
    np.testing.assert_allclose(pw["exact"][2], np.log(2.0) - 2.0 * np.array([0.5, 1.0]),
                               rtol=1e-12)


def test_replicated_data_follow_the_model_and_the_censoring():
    g = models.exponential()
    rate = np.array([[0.5], [2.0]])
    obs = Observations(np.ones(4000), right_censored=np.full(4000, 0.8),
                       interval=np.column_stack([np.full(3000, 0.5), np.full(3000, 1.5)]))
    pp = predictive_data(g, obs, rate, [7, 1])
    times = replicate_times(g, rate, 11000, [7, 1])  # the same stream: the times behind pp
    np.testing.assert_array_equal(pp["exact"], times[:, :4000])
    tr = times[:, 4000:8000]
    np.testing.assert_array_equal(pp["right_censored"], np.minimum(tr, 0.8))
    np.testing.assert_array_equal(pp["right_censored_event"], (tr <= 0.8).astype(float))
    ti = times[:, 8000:]
    assert np.all((pp["interval_lo"] < ti) & (ti <= pp["interval_hi"]))
    assert set(np.unique(pp["interval_lo"])) == {-np.inf, 0.5, 1.5}
    # Statistics with a fixed seed (deterministic): mean 1/rate within 5 standard errors,
    # event fraction 1 - exp(-0.8 rate) within 5 binomial standard errors.
    se = (1.0 / rate[:, 0]) / np.sqrt(4000)
    assert np.all(np.abs(pp["exact"].mean(axis=1) - 1.0 / rate[:, 0]) < 5 * se)
    p_event = 1.0 - np.exp(-0.8 * rate[:, 0])
    assert np.all(np.abs(pp["right_censored_event"].mean(axis=1) - p_event)
                  < 5 * np.sqrt(p_event * (1 - p_event) / 4000))


def test_replicated_times_match_the_moments_of_the_model():
    """Rabbits at theta = [1, 2, 4] (oracles.md: E[T] = 0.50830..., E[T^2] = 0.47429...)
    and a geometric graph with a defect (mean 0.8 / p); one seed, all rows at once,
    plus rows outside the domain (a negative rate) that come back NaN."""
    g = models.rabbits(n=2)
    theta = np.array([[1.0, 2.0, 4.0], [1.0, -2.0, 4.0], [1.0, 2.0, 4.0]])
    t = replicate_times(g, theta, 20000, [5, 5])
    assert np.all(np.isnan(t[1])) and not np.isnan(t[[0, 2]]).any()
    sd = np.sqrt(0.4742994006688668 - 0.5083056478405316 ** 2)
    assert np.all(np.abs(t[[0, 2]].mean(axis=1) - 0.5083056478405316) < 5 * sd / np.sqrt(20000))
    np.testing.assert_array_equal(t, replicate_times(g, theta, 20000, [5, 5]))
    geo = Graph([0.8], [0], [-1], [0.0], [[1.0]], discrete=True, param_names=["p"])
    k = replicate_times(geo, np.array([[0.25], [1.5]]), 20000, 3)
    assert np.all(np.isnan(k[1]))  # an out-probability above 1
    assert np.array_equal(k[0], np.round(k[0])) and (k[0] == 0).mean() > 0.18
    sd = np.sqrt(0.8 * (1 - 0.25) / 0.25 ** 2 + 0.8 * 0.2 / 0.25 ** 2)  # mixture variance
    assert abs(k[0].mean() - 0.8 / 0.25) < 5 * sd / np.sqrt(20000)
