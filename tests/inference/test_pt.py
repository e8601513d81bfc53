"""Parallel tempering: swap rule, ladder adaptation, evidence, and accuracy on
targets with closed forms (run serially on MPI.COMM_SELF; the distributed
runs are in tests/mpi/test_pt_mpi.py and tests/test_run.py)."""

import math

import numpy as np
import pytest
from scipy.special import gammaln
from scipy.stats import norm

from phasic_mpi import models
from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import Gamma
from phasic_mpi.inference.pt import (
    PTAlgorithm,
    PTSettings,
    _Slots,
    _swap_phase,
    respace_ladder,
    round_ends_after,
    round_of,
    stepping_stone,
    swap_log_accept,
)


def comm_self():
    from mpi4py import MPI

    return MPI.COMM_SELF


def run_pt(density, settings):
    """Run to the end; return the algorithm's final output and every round report."""
    algorithm = PTAlgorithm(settings)
    ctx = algorithm.context(density, comm_self())
    state = algorithm.start(ctx)
    reports = []
    while state.iteration < algorithm.n_iterations:
        state, _ = algorithm.step(state, ctx)
        if algorithm.history_due(state.iteration):
            reports.append(algorithm.history(state, ctx))
    return algorithm.finish(state, ctx), reports, state


def test_rounds_double():
    ends = [s for s in range(1, 64) if round_ends_after(s)]
    assert ends == [1, 3, 7, 15, 31, 63]
    assert [round_of(s) for s in (0, 1, 2, 3, 6, 7)] == [0, 1, 1, 2, 2, 3]


def test_swap_acceptance_is_the_metropolis_ratio_of_the_tempered_pair():
    rng = np.random.default_rng(0)
    for _ in range(50):
        b_low, b_high = sorted(rng.uniform(0, 1, 2))[::-1]
        l_low, l_high, p_low, p_high = rng.normal(0, 5, 4)

        def log_pi(beta, loglik, logprior):
            return beta * loglik + logprior

        direct = (log_pi(b_low, l_high, p_high) + log_pi(b_high, l_low, p_low)
                  - log_pi(b_low, l_low, p_low) - log_pi(b_high, l_high, p_high))
        assert swap_log_accept(b_low, b_high, l_low, l_high) == pytest.approx(min(0.0, direct), abs=1e-12)
    assert swap_log_accept(1.0, 0.5, -np.inf, -np.inf) == -np.inf
    assert swap_log_accept(1.0, 0.5, -np.inf, 0.0) == 0.0  # the state outside the support goes up
    assert swap_log_accept(1.0, 0.5, 0.0, -np.inf) == -np.inf


def test_swap_phase_only_permutes_states():
    class Flat:
        n_params = 2

    settings = PTSettings(replicas=6, chains=2, seed=3)
    algorithm = PTAlgorithm(settings)
    from phasic_mpi.inference.parallel import block_layout
    from phasic_mpi.inference.pt import PTContext, PTState

    layout = block_layout(12, 1, 0)
    ctx = PTContext(Flat(), settings, comm_self(), layout)
    rng = np.random.default_rng(4)
    m = 12
    state = PTState(0, np.tile(np.linspace(1, 0, 6), (2, 1)), rng.normal(size=(m, 2)), rng.normal(size=m),
                    rng.normal(size=m), rng.normal(size=(m, 2)), rng.normal(size=(m, 2)), np.arange(m),
                    np.full(m, -1), np.ones(m), np.zeros((m, 6)), np.tile([-1.0, 0, -1, 0], (m, 1)),
                    np.zeros((0, m)), np.zeros((2, 0, 4)), {})
    for scan in range(6):
        slots = _Slots(state._replace(iteration=scan))
        before = {int(lab): (x.tolist(), ll) for lab, x, ll in zip(slots.label, slots.x, slots.loglik)}
        _swap_phase(slots, state._replace(iteration=scan), ctx)
        after = {int(lab): (x.tolist(), ll) for lab, x, ll in zip(slots.label, slots.x, slots.loglik)}
        assert before == after  # the same states, only at other levels
        assert sorted(slots.label[:6] // 1) == sorted(state.label[:6])  # no state crosses chains
        state = state._replace(x=slots.x, loglik=slots.loglik, label=slots.label)
    assert algorithm.n_iterations == 2**settings.rounds - 1


def test_respace_ladder_equalises_a_known_barrier():
    """With rejection = barrier increments of Lambda(b) = b^2, the new ladder
    puts b_k = sqrt(k/(N-1)) (levels equally spaced in the barrier)."""
    n = 40
    betas = np.linspace(1, 0, n)
    for _ in range(3):
        rejection = betas[:-1] ** 2 - betas[1:] ** 2
        betas = respace_ladder(betas, rejection)
    want = np.sqrt(np.linspace(1, 0, n))
    np.testing.assert_allclose(betas, want, atol=0.02)
    assert betas[0] == 1.0 and betas[-1] == 0.0
    # unusable rates keep the ladder
    np.testing.assert_array_equal(respace_ladder(betas, np.full(n - 1, np.nan)), betas)


def test_stepping_stone_is_exact_for_a_constant_likelihood():
    betas = np.linspace(1, 0, 5)
    loglik = np.full((40, 5), -3.25)
    fwd, rev, se_f, se_r = stepping_stone(betas, loglik)
    assert fwd == pytest.approx(-3.25) and rev == pytest.approx(-3.25)
    assert se_f == pytest.approx(0.0, abs=1e-12) and se_r == pytest.approx(0.0, abs=1e-12)


class Mixture:
    """Prior N(0, 10^2) on z and L(z) = 0.3 N(z; -5, 0.5^2) + 0.7 N(z; 5, 0.5^2).

    The symmetric prior leaves the weights: the posterior has 0.3/0.7 in its
    two modes, and Z = N(5; 0, 100 + 0.25). (A direct LogDensity: the test
    needs many cheap evaluations.)
    """

    n_params = 1
    param_names = ("z",)

    def evaluate(self, z, rows=None):
        from phasic_mpi.inference.posterior import PosteriorEval

        z = np.asarray(z, float)[:, 0]
        log_norm = -np.log(0.5 * math.sqrt(2 * math.pi))
        a = math.log(0.3) + log_norm - 2.0 * (z + 5) ** 2
        b = math.log(0.7) + log_norm - 2.0 * (z - 5) ** 2
        top = np.maximum(a, b)
        loglik = top + np.log(np.exp(a - top) + np.exp(b - top))
        wa = np.exp(a - loglik)
        grad = wa * (-(z + 5) / 0.25) + (1 - wa) * (-(z - 5) / 0.25)
        logprior = -z * z / 200 - math.log(10 * math.sqrt(2 * math.pi))
        return PosteriorEval(loglik, grad[:, None], logprior, (-z / 100)[:, None], np.zeros(z.size, bool))

    def sample_prior_z(self, rng, n):
        return 10 * rng.standard_normal((n, 1))

    def to_theta(self, z):
        return np.asarray(z)


def test_bimodal_mixture_weight_evidence_and_equal_swap_rates():
    # 16 chains: with 8 the chains' standard error of the weight was >= 0.01 for 8 of 60 seeds
    # (seed 1 among them), with 16 for none (median 0.0056; benchmarks/bench_logz_calibration.py)
    settings = PTSettings(replicas=6, chains=16, rounds=12, warmup_rounds=9, local_steps=2, seed=1,
                          step_size=1.0)
    final, reports, _ = run_pt(Mixture(), settings)
    weights = (final.draws["z"] > 0).mean(axis=1)  # per independent chain
    assert abs(weights.mean() - 0.7) < 0.02
    assert weights.std(ddof=1) / np.sqrt(weights.size) < 0.01  # so 0.02 is >= 2 standard errors
    log_z = norm.logpdf(5.0, 0.0, math.sqrt(100.25))
    last = reports[-1]
    forward, reverse = last["log_z"][0].T  # per chain
    se_forward, se_reverse = last["log_z_se"][0].T
    bridge, se_bridge = last["log_z_bridge"][0], last["log_z_bridge_se"][0]
    assert abs(forward.mean() - log_z) < 0.1
    # The chains' mean at 4 of its reported standard errors: over 180 seeds z = error / se had
    # sd 1.10 forward, 1.08 bridge (1 and 0 seeds beyond 3), so 4 is >= 3.6 measured sds
    assert abs(forward.mean() - log_z) < 4 * np.sqrt(np.sum(se_forward**2)) / len(forward)
    assert abs(bridge.mean() - log_z) < 4 * np.sqrt(np.sum(se_bridge**2)) / len(bridge)
    # The reverse weights exp(-dB L) at level j have E_j[w^2] ∝ ∫ prior L^(2 b_{j+1} - b_j), infinite
    # for this Gaussian-tailed L under the N(0, 10^2) prior once 2 b_{j+1} - b_j < -1/400: true of
    # every pair of every adapted ladder measured, so the reverse has no standard error to be held
    # to (its reported one is too small: z sd 1.65, 31 of 180 seeds beyond 3); finiteness only
    ladder = last["betas"][0][0]
    assert np.all(2 * ladder[1:] - ladder[:-1] < -1 / 400)
    assert np.all(np.isfinite(reverse)) and np.all(np.isfinite(se_reverse))
    assert np.all(se_forward > 0) and np.all(se_bridge > 0)
    # the chains share one ladder: their pooled acceptance per pair is equalised
    accept = 1.0 - last["rejection"][0].mean(axis=0)
    assert np.all(np.abs(accept - accept.mean()) < 0.05)


def test_conjugate_exponential_gamma_posterior_and_evidence():
    graph = models.exponential()
    times = graph.sample(30, [2.0], seed=5)
    a, b = 2.0, 1.0
    density = Posterior(graph, times, [Gamma(a, b)])
    settings = PTSettings(replicas=6, chains=2, rounds=10, warmup_rounds=6, seed=9, step_size=0.5)
    final, reports, _ = run_pt(density, settings)
    theta = final.draws["rate"] if "rate" in final.draws else next(iter(final.draws.values()))
    shape, rate = a + times.size, b + times.sum()
    assert theta.mean() == pytest.approx(shape / rate, rel=0.02)
    assert theta.var() == pytest.approx(shape / rate**2, rel=0.10)
    log_z = a * np.log(b) - gammaln(a) + gammaln(shape) - shape * np.log(rate)
    # The chains' mean per direction, held to 4 of its reported standard errors;
    # a fixed bound (0.05 per chain) failed for ~1 seed in 8.
    estimate, se = reports[-1]["log_z"][0], reports[-1]["log_z_se"][0]
    combined = np.sqrt((se**2).sum(axis=0)) / len(estimate)
    # The reverse has a standard error only while its weights have finite variance:
    # ∫ Gamma(2, 1) L^c dλ with L = λ^30 e^(-λ S), S = 11.06, is finite iff c > -1/15 (at λ -> 0),
    # c = 2 b_{j+1} - b_j; 26 of 60 seeds' ladders break it somewhere, this one does not
    ladder = reports[-1]["betas"][0][0]
    assert np.all(2 * ladder[1:] - ladder[:-1] > -1 / 15)
    assert np.all(np.abs(estimate.mean(axis=0) - log_z) < 4 * combined)
    # the check above stays tight: over 300 seeds the delta-method errors measured forward
    # 0.024-0.045, reverse 0.034-0.111 (this seed 0.069: the reverse's weights are heavy-tailed
    # even where their variance is finite; its 10 batch means had given 0.048, too small)
    assert combined[0] < 0.05 and combined[1] < 0.08
    bridge, se_bridge = reports[-1]["log_z_bridge"][0], reports[-1]["log_z_bridge_se"][0]
    assert abs(bridge.mean() - log_z) < 4 * np.sqrt(np.sum(se_bridge**2)) / len(bridge)


class GaussianPath:
    """Prior N(0, 1) and log L(z) = -(z - mu)^2 / (2 s^2): every power posterior is
    Gaussian, so the communication barrier Lambda has a direct numerical value."""

    n_params = 1
    param_names = ("z",)

    def __init__(self, mu=1.0, s=0.2):
        self.mu, self.s = mu, s

    def evaluate(self, z, rows=None):
        from phasic_mpi.inference.posterior import PosteriorEval

        z = np.asarray(z, float)[:, 0]
        loglik = -((z - self.mu) ** 2) / (2 * self.s**2)
        logprior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        return PosteriorEval(loglik, (-(z - self.mu) / self.s**2)[:, None], logprior, (-z)[:, None],
                             np.zeros(z.size, bool))

    def sample_prior_z(self, rng, n):
        return rng.standard_normal((n, 1))

    def to_theta(self, z):
        return np.asarray(z)

    def barrier(self, n_beta=201, n_pairs=200_000):
        """Lambda = int_0^1 1/2 E|V(X) - V(X')| d beta, X, X' iid from pi_beta, V = -log L."""
        rng = np.random.default_rng(0)
        a, b = rng.standard_normal((2, n_pairs))
        betas = np.linspace(0, 1, n_beta)
        local = []
        for beta in betas:
            precision = 1 + beta / self.s**2
            mean, sd = beta * self.mu / self.s**2 / precision, precision**-0.5
            v = ((mean + sd * a - self.mu) ** 2 - (mean + sd * b - self.mu) ** 2) / (2 * self.s**2)
            local.append(0.5 * np.abs(v).mean())
        return float(np.trapezoid(local, betas))


def test_nonreversible_round_trip_rate_matches_theory_and_beats_reversible():
    path = GaussianPath()
    barrier = path.barrier()
    rates = {}
    for scheme in ("nonreversible", "reversible"):
        settings = PTSettings(replicas=24, chains=2, rounds=10, warmup_rounds=6, local_steps=3, seed=6,
                              step_size=0.5, swap=scheme)
        _, reports, _ = run_pt(path, settings)
        sampling = [r for r in reports if r["round"][0] >= settings.warmup_rounds]
        trips = sum(r["round_trips"][0].sum() for r in sampling)
        scans = sum(r["round_scans"][0] for r in sampling) * settings.chains
        rates[scheme] = trips / scans
    theory = 1.0 / (2.0 + 2.0 * barrier)
    assert abs(rates["nonreversible"] - theory) < 0.15 * theory
    assert rates["reversible"] < 0.6 * rates["nonreversible"]
