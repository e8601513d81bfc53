"""Preconditioned PT moves (pt.mass_matrix): exact Metropolis-Hastings ratios
against hand computations with scipy, invariance of a known Gaussian target,
the pooled metric estimate against numpy, and a whole run's cold draws."""

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from phasic_mpi.inference.counters import normals
from phasic_mpi.inference.pt import PTSettings
from phasic_mpi.inference.ptmoves import (SHRINK, accumulate, adapt_clock, apply_factor, apply_factor_t,
                                          metric_rounds, moment_width, preconditioned_hmc,
                                          preconditioned_step, updated_metric)
from phasic_mpi.inference.ptscan import DRIFT_CAP, STREAM_LOCAL

from pt_reference import cold_draws, leapfrog_mh
from test_ptscan import Gaussian, gaussian_slots


def random_factors(kind, m, d, seed):
    """Per-slot metric factors: positive sds (m, d) or lower-triangular Cholesky factors (m, d, d)."""
    rng = np.random.default_rng(seed)
    if kind == "diagonal":
        return rng.uniform(0.3, 2.0, (m, d))
    factor = np.tril(rng.normal(0, 0.6, (m, d, d)))
    factor[:, np.arange(d), np.arange(d)] = rng.uniform(0.3, 2.0, (m, d))
    return factor


def dense(factor):
    """(m, d, d) matrices L of per-slot factors in either storage."""
    return np.stack([np.diag(f) for f in factor]) if factor.ndim == 2 else factor


def test_factor_products_are_the_matrix_products():
    for kind in ("diagonal", "dense"):
        factor = random_factors(kind, 5, 3, 1)
        v = np.random.default_rng(2).normal(size=(5, 3))
        np.testing.assert_allclose(apply_factor(factor, v), np.einsum("mij,mj->mi", dense(factor), v), rtol=1e-14)
        np.testing.assert_allclose(apply_factor_t(factor, v), np.einsum("mji,mj->mi", dense(factor), v), rtol=1e-14)


def tempered_log_pi(density, b):
    def log_pi(z):
        e = density.evaluate(z[None])
        return b * e.loglik[0] + e.logprior[0], b * e.loglik_grad[0] + e.logprior_grad[0]
    return log_pi


def truncated_drift(grad, h, L, cap=DRIFT_CAP):
    """MALA's whitened drift c = h^2/2 L^T grad, shortened to the norm cap h sqrt(d) where it is
    longer (truncated MALA); the z-drift is L c. Returns c and whether it was shortened."""
    c = 0.5 * h * h * L.T @ grad
    limit = cap * h * math.sqrt(len(c))
    norm = np.linalg.norm(c)
    return (c * limit / norm, True) if norm > limit else (c, False)


def preconditioned_mh(log_pi, z, h, L, noise, move):
    """(acceptance probability, proposal) of a MALA or RWM move from z with metric
    M^-1 = L L^T by hand: proposal N(z + L c(z), h^2 M^-1) with the truncated drift
    c (:func:`truncated_drift`; none for RWM)."""
    cov = h * h * L @ L.T

    def mean(frm):
        return frm + (L @ truncated_drift(log_pi(frm)[1], h, L)[0] if move == "mala" else 0.0)

    prop = mean(z) + h * L @ noise
    log_ratio = log_pi(prop)[0] - log_pi(z)[0]
    log_ratio += multivariate_normal.logpdf(z, mean(prop), cov) - multivariate_normal.logpdf(prop, mean(z), cov)
    return min(1.0, math.exp(log_ratio)), prop


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
@pytest.mark.parametrize("move", ["mala", "rwm"])
def test_preconditioned_acceptance_is_the_metropolis_hastings_ratio(kind, move):
    settings = PTSettings(replicas=6, chains=1, local_move=move, seed=4)
    ctx, state, slots, ids = gaussian_slots(settings, 5, (0.3, 1.5))
    density, x = ctx.density, state.x
    beta = np.array([1.0, 0.7, 0.4, 0.2, 0.05, 0.0])
    factor = random_factors(kind, 6, 2, 3)
    accept = preconditioned_step(slots, beta, ids, ctx, factor)
    noise = normals(settings.seed, STREAM_LOCAL, ids, 2)
    props = []
    for i in range(6):
        want, prop = preconditioned_mh(tempered_log_pi(density, beta[i]), x[i], state.step[i], dense(factor)[i],
                                       noise[i], move)
        props.append(prop)
        assert accept[i] == pytest.approx(want, rel=1e-10, abs=1e-15)
        assert np.array_equal(slots.x[i], x[i]) or np.allclose(slots.x[i], prop, rtol=1e-13)
    assert np.count_nonzero(accept < 1) > 0  # not only sure acceptances
    if move == "mala" and kind == "diagonal":  # a drift is truncated here (at a proposal, for the way back)
        assert any(truncated_drift(tempered_log_pi(density, beta[i])(z)[1], state.step[i], dense(factor)[i])[1]
                   for i in range(6) for z in (x[i], props[i]))


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
def test_preconditioned_hmc_acceptance_is_exp_of_minus_the_energy_error(kind):
    settings = PTSettings(replicas=5, chains=1, local_move="hmc", leapfrog_steps=3, seed=8)
    ctx, state, slots, ids = gaussian_slots(settings, 9, (0.2, 1.2))
    x = state.x
    beta = np.array([1.0, 0.6, 0.3, 0.1, 0.0])
    factor = random_factors(kind, 5, 2, 7)
    accept = preconditioned_hmc(slots, beta, ids, ctx, factor)
    xi = normals(settings.seed, STREAM_LOCAL, ids, 2)
    for i in range(5):
        want, z = leapfrog_mh(tempered_log_pi(ctx.density, beta[i]), x[i], state.step[i], dense(factor)[i], xi[i], 3)
        assert accept[i] == pytest.approx(want, rel=1e-9, abs=1e-14)
        assert np.array_equal(slots.x[i], x[i]) or np.allclose(slots.x[i], z, rtol=1e-12)
    assert np.count_nonzero(accept < 1) > 0


@pytest.mark.parametrize("move", ["mala", "rwm", "hmc"])
def test_preconditioned_moves_leave_the_tempered_gaussian_invariant(move):
    """4000 exact draws of pi_b (b = 1 and b = 0.3) moved 6 times with a badly
    matched dense metric and a large step: still N(b mu / (1 + b), I / (1 + b))."""
    m = 4000
    settings = PTSettings(replicas=m, chains=1, local_move=move, leapfrog_steps=3, seed=11)
    ctx, state, slots, ids = gaussian_slots(settings, 12, (0.9, 1.1))
    beta = np.where(np.arange(m) % 2 == 0, 1.0, 0.3)
    precision = 1.0 + beta  # pi_b(z) ∝ exp(-b |z - mu|^2 / 2 - |z|^2 / 2)
    mean = (beta / precision)[:, None] * Gaussian.mu
    rng = np.random.default_rng(13)
    slots.x = mean + rng.standard_normal((m, 2)) / np.sqrt(precision)[:, None]
    ev = ctx.density.evaluate(slots.x)
    slots.loglik, slots.logprior = ev.loglik, ev.logprior
    slots.grad_ll, slots.grad_lp = ev.loglik_grad, ev.logprior_grad
    factor = np.tile([[1.4, 0.0], [0.9, 0.35]], (m, 1, 1))
    kernel = preconditioned_hmc if move == "hmc" else preconditioned_step
    total = 0.0
    for step in range(6):
        ids[:, 2] = step
        total += kernel(slots, beta, ids, ctx, factor).mean()
    assert 0.2 < total / 6 < 0.95  # moves happen, and are rejected often enough to test the correction
    for b in (1.0, 0.3):
        pick = beta == b
        z = slots.x[pick]
        n, var = len(z), 1.0 / (1.0 + b)
        np.testing.assert_allclose(z.mean(axis=0), b / (1 + b) * Gaussian.mu, atol=4.5 * math.sqrt(var / n))
        np.testing.assert_allclose(z.var(axis=0), [var, var], atol=4.5 * var * math.sqrt(2 / n))
        assert abs(np.corrcoef(z.T)[0, 1]) < 4.5 / math.sqrt(n)


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
def test_updated_metric_is_the_pooled_covariance_shrunk_to_the_current_one(kind):
    chains, levels, d, scans = 3, 4, 3, 9
    rng = np.random.default_rng(5)
    draws = rng.normal(size=(scans, chains * levels, d)) * [1.0, 0.2, 3.0] + [0.0, 5.0, -2.0]
    moments = np.zeros((chains * levels, moment_width(kind, d)))
    for x in draws:
        moments = accumulate(moments, x, kind)
    current = random_factors(kind, levels, d, 6)
    new = updated_metric(current, moments, chains)
    for j in range(levels):
        pooled = draws[:, j::levels].reshape(-1, d)  # slots c * levels + j, all scans
        n = len(pooled)
        cov = np.cov(pooled.T, bias=True)
        c_now, c_new = dense(current)[j] @ dense(current)[j].T, dense(new)[j] @ dense(new)[j].T
        want = (n * cov + SHRINK * c_now) / (n + SHRINK)
        if kind == "diagonal":
            want = np.diag(np.diag(want))
        np.testing.assert_allclose(c_new, want, rtol=1e-12, atol=1e-14)


def test_adaptation_clock_restarts_after_each_metric_update():
    assert list(metric_rounds(7)) == [3, 4, 5]
    assert [adapt_clock(s, 7) for s in (0, 14, 15, 16, 31, 62, 63, 100)] == [0, 14, 0, 1, 0, 31, 0, 37]
    assert adapt_clock(100, 4) == 100  # no update in a 4-round warm-up: the global clock


@pytest.mark.parametrize("kind,cold_steps", [("dense", 0), ("diagonal", 2)])
def test_pt_with_an_adapted_metric_samples_the_gaussian_posterior(kind, cold_steps):
    """Cold draws of a whole run: posterior N(mu / 2, I / 2) of Gaussian(); the
    level-0 metric approaches that covariance."""
    settings = PTSettings(replicas=4, chains=4, rounds=10, warmup_rounds=7, mass_matrix=kind,
                          cold_steps=cold_steps, seed=3)
    state, draws = cold_draws(settings, Gaussian())
    ess = len(draws) / 4  # at least (measured: about half the 3584 draws)
    np.testing.assert_allclose(draws.mean(axis=0), Gaussian.mu / 2, atol=4 * math.sqrt(0.5 / ess))
    np.testing.assert_allclose(draws.var(axis=0), [0.5, 0.5], rtol=4 * math.sqrt(2 / ess))
    L = dense(state.metric[:1])[0]
    np.testing.assert_allclose(L @ L.T, 0.5 * np.eye(2), atol=0.2)  # 64 pooled draws of round 5
