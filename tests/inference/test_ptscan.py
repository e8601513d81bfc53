"""The vectorised pieces of a PT scan: swap acceptance, the MALA acceptance
probability (against the scalar Metropolis-Hastings formula), and batched
density calls that give the same bits under every rank layout."""

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from phasic_mpi import models
from phasic_mpi.inference.counters import normals, uniforms
from phasic_mpi.inference.parallel import block_layout
from phasic_mpi.inference.posterior import Posterior, PosteriorEval
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.inference.pt import PTContext, PTSettings, PTState, _Slots, swap_log_accept
from phasic_mpi.inference.ptscan import (STREAM_LOCAL, STREAM_SWAP, evaluate_block, hmc_move, local_move,
                                         swap_decisions)

from pt_reference import cold_draws, leapfrog_mh


def test_swap_decisions_are_the_scalar_rule_and_the_keyed_uniforms():
    rng = np.random.default_rng(2)
    low = np.concatenate([rng.normal(0, 5, 40), [-np.inf, -np.inf, 0.0, 3.0]])
    high = np.concatenate([rng.normal(0, 5, 40), [-np.inf, 0.0, -np.inf, np.inf]])
    b_low, b_high = rng.uniform(0.5, 1, 44), rng.uniform(0, 0.5, 44)
    ids = np.zeros((44, 4), dtype=np.uint64)
    ids[:, 0], ids[:, 1], ids[:, 2] = np.arange(44) % 3, np.arange(44), 17
    alpha, accepted = swap_decisions(b_low, b_high, low, high, 5, ids)
    with np.errstate(invalid="ignore"):  # -inf - -inf in the scalar rule
        want = np.array([math.exp(swap_log_accept(*args)) for args in zip(b_low, b_high, low, high)])
    assert np.allclose(alpha, want, rtol=1e-15, atol=0)  # libm's exp against math.exp
    assert alpha[-4:].tolist() == [0.0, 1.0, 0.0, 1.0]  # -inf both, up out of the support, down, +inf
    u = uniforms(5, STREAM_SWAP, ids)[:, 0]
    assert accepted.tolist() == (u < alpha).tolist()
    assert 0 < accepted.sum() < 44  # both decisions occur
    # a row's decision depends on its own inputs only (the layout-independence of cross-rank pairs)
    part = swap_decisions(b_low[7:9], b_high[7:9], low[7:9], high[7:9], 5, ids[7:9])
    assert part[0].tolist() == alpha[7:9].tolist() and part[1].tolist() == accepted[7:9].tolist()


class Gaussian:
    """Prior N(0, I) and log L = -|z - mu|^2 / 2 in d = 2 (as a LogDensity)."""

    n_params = 2
    param_names = ("a", "b")
    mu = np.array([1.0, -0.5])

    def evaluate(self, z, rows=None):
        z = np.asarray(z, float)[rows if rows is not None else slice(None)]
        logprior = -0.5 * (z * z).sum(1) - math.log(2 * math.pi)
        return PosteriorEval(-0.5 * ((z - self.mu) ** 2).sum(1), self.mu - z, logprior, -z, np.zeros(len(z), bool))

    def sample_prior_z(self, rng, n):
        return rng.standard_normal((n, 2))

    def to_theta(self, z):
        return np.asarray(z)


def gaussian_slots(settings, seed, steps):
    """A one-rank context on Gaussian() and a scan's slots at random points; their ids."""
    density, m = Gaussian(), settings.replicas
    ctx = PTContext(density, settings, None, block_layout(m, 1, 0))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, 2))
    ev = density.evaluate(x)
    state = PTState(0, None, x, ev.loglik, ev.logprior, ev.loglik_grad, ev.logprior_grad, np.arange(m),
                    np.full(m, -1), rng.uniform(*steps, m), np.zeros((m, 6)), np.zeros((m, 4)),
                    np.zeros((0, m)), None, {})
    ids = np.zeros((m, 4), dtype=np.uint64)
    ids[:, 1] = np.arange(m)
    return ctx, state, _Slots(state), ids


def test_mala_acceptance_is_the_metropolis_hastings_ratio():
    settings = PTSettings(replicas=6, chains=1, local_move="mala", seed=4)
    ctx, state, slots, ids = gaussian_slots(settings, 5, (0.3, 1.5))
    density, m, d, x = ctx.density, 6, 2, state.x
    beta = np.array([1.0, 0.7, 0.4, 0.2, 0.05, 0.0])
    accept = local_move(slots, beta, ids, ctx)
    noise = normals(settings.seed, STREAM_LOCAL, ids, d)
    for i in range(m):
        h, b = state.step[i], beta[i]

        def log_pi(z):
            e = density.evaluate(z[None])
            return b * e.loglik[0] + e.logprior[0], b * e.loglik_grad[0] + e.logprior_grad[0]

        def log_q(to, frm):  # MALA proposal density N(frm + h^2/2 grad, h^2 I)
            return multivariate_normal.logpdf(to, frm + 0.5 * h * h * log_pi(frm)[1], h * h)

        z = x[i]
        prop = z + 0.5 * h * h * log_pi(z)[1] + h * noise[i]
        want = min(1.0, math.exp(log_pi(prop)[0] - log_pi(z)[0] + log_q(z, prop) - log_q(prop, z)))
        assert accept[i] == pytest.approx(want, rel=1e-10)
        moved = not np.array_equal(slots.x[i], z)
        assert not moved or np.allclose(slots.x[i], prop, rtol=1e-14)
        assert slots.loglik[i] == density.evaluate(slots.x[i][None]).loglik[0]


def test_batched_density_calls_do_not_depend_on_the_layout():
    graph = models.rabbits(2)
    density = Posterior(graph, graph.sample(50, [1.0, 2.0, 4.0], seed=1),
                        [Gamma(2.0, 1.0), LogNormal(0.0, 1.0), LogNormal(0.0, 1.0)])
    n = 11
    z = density.to_z([[1.0, 2.0, 4.0]]) + np.random.default_rng(0).normal(0, 0.3, (n, 3))
    whole = evaluate_block(density, block_layout(n, 1, 0), z)
    for size in (2, 3, 5):
        for rank in range(size):
            layout = block_layout(n, size, rank)
            part = evaluate_block(density, layout, z[layout.rows])
            for got, want in zip(part, whole):
                assert np.array_equal(got, want[layout.rows])


def test_hmc_acceptance_is_exp_of_minus_the_energy_error():
    settings = PTSettings(replicas=5, chains=1, local_move="hmc", leapfrog_steps=3, seed=8)
    ctx, state, slots, ids = gaussian_slots(settings, 9, (0.2, 1.2))
    density, m, d, x = ctx.density, 5, 2, state.x
    beta = np.array([1.0, 0.6, 0.3, 0.1, 0.0])
    accept = hmc_move(slots, beta, ids, ctx)
    momenta = normals(settings.seed, STREAM_LOCAL, ids, d)
    for i in range(m):
        b = beta[i]

        def log_pi(z):  # the tempered target, written out: b/2 |z - mu|^2 + |z|^2/2, and its gradient
            return (-0.5 * b * np.sum((z - density.mu) ** 2) - 0.5 * np.sum(z * z),
                    b * (density.mu - z) - z)

        # the textbook leapfrog with unit mass (L = I: the momentum is the noise itself)
        want, z = leapfrog_mh(log_pi, x[i], state.step[i], np.eye(d), momenta[i], 3)
        assert accept[i] == pytest.approx(want, rel=1e-9, abs=1e-14)
        assert np.array_equal(slots.x[i], x[i]) or np.allclose(slots.x[i], z, rtol=1e-12)
    assert 0 < np.count_nonzero(accept < 1)  # the check is not only on accepted trajectories


def test_hmc_samples_the_tempered_gaussian():
    """Cold level of PT with HMC moves: posterior N(mu / 2, I / 2) of Gaussian()."""
    settings = PTSettings(replicas=4, chains=4, rounds=10, warmup_rounds=5, local_move="hmc",
                          leapfrog_steps=3, seed=3, step_size=0.5)
    _, draws = cold_draws(settings, Gaussian())
    ess = len(draws) / 2  # at least (measured: 2000-2400 of 3968 draws)
    np.testing.assert_allclose(draws.mean(axis=0), Gaussian.mu / 2, atol=4 * math.sqrt(0.5 / ess))
    np.testing.assert_allclose(draws.var(axis=0), [0.5, 0.5], rtol=3 * math.sqrt(2 / ess))
