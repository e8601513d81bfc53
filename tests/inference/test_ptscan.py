"""The vectorised pieces of a PT scan: swap acceptance, the MALA acceptance
probability (against the scalar Metropolis-Hastings formula), and batched
density calls that give the same bits under every rank layout."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from phasic_mpi import models
from phasic_mpi._libphase import lib
from phasic_mpi.inference.counters import counter_ids, normals, uniforms
from phasic_mpi.inference.parallel import block_layout
from phasic_mpi.inference.posterior import Posterior, PosteriorEval
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.inference.pt import (STAT_REJ, STAT_SWAP_ACC, STAT_SWAP_N, STAT_TRIPS, PTContext, PTSettings, PTState,
                                    _Slots, swap_log_accept)
from phasic_mpi.inference.ptscan import (STREAM_LOCAL, STREAM_SWAP, evaluate_block, hmc_move, local_move,
                                         pairs_of, round_trips, swap_phase_arrays)

from pt_reference import cold_draws, leapfrog_mh


def _swap_slots(m, seed):
    rng = np.random.default_rng(seed)
    ll = rng.normal(-20, 5, m)
    ll[[2, 3]] = -np.inf  # a pair of states outside the support, and one next to a finite state
    return SimpleNamespace(x=rng.normal(size=(m, 2)), loglik=ll, logprior=rng.normal(size=m),
                           grad_ll=rng.normal(size=(m, 2)), grad_lp=rng.normal(size=(m, 2)),
                           label=np.arange(m, dtype=np.int64), last_end=rng.integers(-1, 2, m).astype(np.int64),
                           decisions=np.zeros((m, 4)), stats=np.zeros((m, 6)))


@pytest.mark.parametrize("parity", [0, 1])
def test_swap_phase_applies_the_scalar_rule_with_the_keyed_uniforms(parity):
    n, chains, scan, seed = 6, 2, 7, 5
    m = n * chains
    slots, before = _swap_slots(m, 3), _swap_slots(m, 3)
    betas = np.sort(np.random.default_rng(1).uniform(0, 1, (chains, n)))[:, ::-1].copy()
    pairs = pairs_of(n, m, 0, m, (parity,) * chains)
    v_low, v_high = slots.loglik[pairs.g], slots.loglik[pairs.g + 1]
    alpha, accepted = swap_phase_arrays(slots, pairs, betas, scan, v_low, v_high, seed)
    u = uniforms(seed, STREAM_SWAP, counter_ids(pairs.g // n, pairs.g % n, scan))[:, 0]
    want_x, want_label = before.x.copy(), before.label.copy()
    for k, g in enumerate(pairs.g):
        c, j = divmod(int(g), n)
        with np.errstate(invalid="ignore"):  # -inf - -inf in the scalar rule
            want_alpha = math.exp(swap_log_accept(betas[c, j], betas[c, j + 1], v_low[k], v_high[k]))
        assert alpha[k] == pytest.approx(want_alpha, rel=1e-15, abs=0)  # libm's exp against math.exp
        assert accepted[k] == (u[k] < alpha[k])
        if accepted[k]:
            want_x[[g, g + 1]], want_label[[g, g + 1]] = before.x[[g + 1, g]], before.label[[g + 1, g]]
        assert slots.decisions[g, 2:].tolist() == [scan, accepted[k]] == slots.decisions[g + 1, :2].tolist()
        assert slots.stats[g, 2:5].tolist() == [1.0 - alpha[k], accepted[k], 1.0]
    assert 0 < accepted.sum() < len(pairs.g) or parity == 1  # both decisions occur (parity 0)
    assert np.array_equal(slots.x, want_x) and np.array_equal(slots.label, want_label)
    for field in ("loglik", "logprior", "grad_ll", "grad_lp", "last_end"):  # each moved with its state
        assert np.array_equal(getattr(slots, field), getattr(before, field)[want_label])
    # a rank holding slots [3, 8) decides its pairs alike, cross-rank ones included
    part = _swap_slots(m, 3)
    part = SimpleNamespace(**{k: np.ascontiguousarray(v[3:8]) for k, v in vars(part).items()})
    sub = pairs_of(n, m, 3, 8, (parity,) * chains)
    got = swap_phase_arrays(part, sub, betas, scan, before.loglik[sub.g], before.loglik[sub.g + 1], seed)
    index = np.searchsorted(pairs.g, sub.g)
    assert got[0].tolist() == alpha[index].tolist() and got[1].tolist() == accepted[index].tolist()
    assert sub.cross and np.array_equal(part.label[1:4], slots.label[4:7])  # rows 4..6: both ends here


def test_round_trips_count_a_return_to_the_bottom_after_the_top():
    n, m = 4, 8
    slots = SimpleNamespace(last_end=np.array([1, 0, 1, 0, -1, 1, -1, -1], dtype=np.int64), stats=np.zeros((m, 6)))
    round_trips(slots, 0, n)
    assert slots.last_end.tolist() == [0, 0, 1, 1, 0, 1, -1, -1]  # level 0: bottom; level 3 after the bottom: top
    assert slots.stats[:, 5].tolist() == [1, 0, 0, 0, 0, 0, 0, 0]
    assert (lib.PHASE_PT_STAT_REJECTION, lib.PHASE_PT_STAT_SWAP_ACCEPTED, lib.PHASE_PT_STAT_SWAP_ATTEMPTS,
            lib.PHASE_PT_STAT_ROUND_TRIPS) == (STAT_REJ, STAT_SWAP_ACC, STAT_SWAP_N, STAT_TRIPS)


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
