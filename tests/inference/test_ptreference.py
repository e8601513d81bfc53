"""PT with a variational reference (inference/ptreference.py): the Gaussian's
density, gradient and moment-matched fit against scipy/numpy, the path's MALA
acceptance against the scalar Metropolis-Hastings formula, and whole runs
against closed forms: a Gaussian posterior (the fitted reference and the
barrier Lambda of its path), a conjugate evidence, and the symmetric two-rate
hypoexponential's two modes (run serially; distributed in tests/mpi)."""

import math

import numpy as np
import pytest
from scipy.special import gammaln
from scipy.integrate import quad
from scipy.stats import multivariate_normal, norm

from phasic_mpi import models
from phasic_mpi.inference.counters import normals
from phasic_mpi.inference.posterior import Posterior, PosteriorEval
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.inference.pt import PTSettings
from phasic_mpi.inference.ptreference import (Path, accumulate, bridge, evidence, fit_reference,
                                              initial_reference, stepping_stone)
from phasic_mpi.inference.ptmoves import preconditioned_hmc, preconditioned_step
from phasic_mpi.inference.ptscan import STREAM_LOCAL, local_move
from phasic_mpi.model.graph import Graph
from phasic_mpi.errors import ConfigError

from test_pt import run_pt
from pt_reference import leapfrog_mh
from test_ptmoves import dense, preconditioned_mh, random_factors
from test_ptscan import gaussian_slots


def moment_sums(z, diagonal):
    sums = np.zeros((len(z), 1 + z.shape[1] + (z.shape[1] if diagonal else z.shape[1] ** 2)))
    accumulate(sums, z, np.arange(len(z)), diagonal)
    return sums.sum(axis=0)


@pytest.mark.parametrize("diagonal", [False, True])
def test_fitted_gaussian_density_and_gradient(diagonal):
    rng = np.random.default_rng(1)
    z = rng.normal(size=(400, 3)) @ np.array([[1.0, 0.0, 0.0], [0.6, 0.5, 0.0], [-0.3, 0.2, 2.0]]) + [1, -2, 0.5]
    ref = fit_reference(moment_sums(z, diagonal), 3, diagonal, initial_reference(3))
    cov = np.cov(z.T, bias=True)  # moment matching: the sample mean and (biased) covariance
    if diagonal:
        cov = np.diag(np.diag(cov))
    np.testing.assert_allclose(ref.mean, z.mean(axis=0), rtol=1e-12)
    inv_cov = ref.inv_chol.T @ ref.inv_chol
    np.testing.assert_allclose(np.linalg.inv(inv_cov), cov, rtol=1e-10, atol=1e-12)
    x = rng.normal(size=(7, 3))
    np.testing.assert_allclose(ref.log_q(x), multivariate_normal(z.mean(axis=0), cov).logpdf(x), rtol=1e-12)
    h = 1e-6
    fd = np.stack([(ref.log_q(x + h * e) - ref.log_q(x - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(ref.grad_log_q(x), fd, rtol=1e-6, atol=1e-8)
    # a row's value does not depend on the rows evaluated with it (cross-rank swaps rely on it)
    for i in range(len(x)):
        assert ref.log_q(x[i:i + 1])[0] == ref.log_q(x)[i]
        assert np.array_equal(ref.grad_log_q(x[i:i + 1])[0], ref.grad_log_q(x)[i])


def test_too_few_or_degenerate_draws_keep_the_previous_reference():
    previous = initial_reference(2)
    assert fit_reference(moment_sums(np.ones((2, 2)), False), 2, False, previous) is previous
    assert fit_reference(moment_sums(np.ones((10, 2)), True), 2, True, previous) is previous
    line = np.column_stack([np.arange(10.0), 2 * np.arange(10.0)])  # rank-1 covariance
    assert fit_reference(moment_sums(line, False), 2, False, previous) is previous


def variational_slots(settings, seed, steps):
    """Slots of the Gaussian test density on a path whose slots 0, 1, 3, 4, 5 are
    variational (reference fitted to 50 draws, full covariance), slot 2 prior-referenced."""
    ctx, state, slots, ids = gaussian_slots(settings, seed, steps)
    draws = np.random.default_rng(3).normal([0.4, -0.2], [0.5, 0.8], size=(50, 2))
    ref = fit_reference(moment_sums(draws, False), 2, False, initial_reference(2))
    var = np.array([True, True, False, True, True, True])
    slots.path = Path(ref, var)
    return ctx, state, slots, ids, ref, var


def path_log_pi(density, ref, variational, b):
    """z -> (log pi_b, its gradient) by hand: pi_0^(1-b) (prior L)^b with pi_0 = q
    (scipy's Gaussian) on a variational slot, prior L^b otherwise."""
    gauss = multivariate_normal(ref.mean, np.linalg.inv(ref.inv_chol.T @ ref.inv_chol))

    def log_pi(z):
        e = density.evaluate(z[None])
        if not variational:
            return b * e.loglik[0] + e.logprior[0], b * e.loglik_grad[0] + e.logprior_grad[0]
        target, grad = e.loglik[0] + e.logprior[0], e.loglik_grad[0] + e.logprior_grad[0]
        grad_q = -np.linalg.solve(gauss.cov, z - ref.mean)
        return (1 - b) * gauss.logpdf(z) + b * target, (1 - b) * grad_q + b * grad
    return log_pi


BETAS = np.array([1.0, 0.7, 0.4, 0.2, 0.05, 0.0])


def test_mala_acceptance_on_the_variational_path_is_the_metropolis_hastings_ratio():
    settings = PTSettings(replicas=6, chains=1, local_move="mala", seed=4)
    ctx, state, slots, ids, ref, var = variational_slots(settings, 5, (0.3, 1.5))
    x = state.x
    accept = local_move(slots, BETAS, ids, ctx)
    noise = normals(settings.seed, STREAM_LOCAL, ids, 2)
    for i in range(6):
        h, log_pi = state.step[i], path_log_pi(ctx.density, ref, var[i], BETAS[i])

        def log_prop(to, frm):
            return multivariate_normal.logpdf(to, frm + 0.5 * h * h * log_pi(frm)[1], h * h)

        z = x[i]
        prop = z + 0.5 * h * h * log_pi(z)[1] + h * noise[i]
        want = min(1.0, math.exp(log_pi(prop)[0] - log_pi(z)[0] + log_prop(z, prop) - log_prop(prop, z)))
        assert accept[i] == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
@pytest.mark.parametrize("move", ["mala", "rwm", "hmc"])
def test_preconditioned_moves_on_the_variational_path_accept_with_the_exact_ratio(kind, move):
    """pt.mass_matrix's whitened moves (ptmoves) follow the path's gradient and
    accept with the path's exact ratio: MALA's proposal N(z + h^2/2 M^-1 grad log pi_b,
    h^2 M^-1), HMC's textbook leapfrog with mass matrix M on log pi_b."""
    hmc = move == "hmc"
    settings = PTSettings(replicas=6, chains=1, local_move=move, leapfrog_steps=3, seed=8 if hmc else 4)
    ctx, state, slots, ids, ref, var = variational_slots(settings, 9 if hmc else 5, (0.2, 1.2) if hmc else (0.3, 1.5))
    x = state.x
    factor = random_factors(kind, 6, 2, 7 if hmc else 3)
    accept = (preconditioned_hmc if hmc else preconditioned_step)(slots, BETAS, ids, ctx, factor)
    noise = normals(settings.seed, STREAM_LOCAL, ids, 2)
    for i in range(6):
        log_pi, h, L = path_log_pi(ctx.density, ref, var[i], BETAS[i]), state.step[i], dense(factor)[i]
        want, end = leapfrog_mh(log_pi, x[i], h, L, noise[i], 3) if hmc else preconditioned_mh(log_pi, x[i], h, L,
                                                                                               noise[i], move)
        assert accept[i] == pytest.approx(want, rel=1e-9, abs=1e-14)
        assert np.array_equal(slots.x[i], x[i]) or np.allclose(slots.x[i], end, rtol=1e-12)
    assert np.count_nonzero(accept < 1) > 0 and np.count_nonzero(accept > 0) > 0


class GaussianPosterior:
    """Prior N(0, 3^2 I) and log L = -(z - m)^T A (z - m) / 2 in d = 2: the
    posterior is N(mu, P^-1) with P = A + I/9, mu = P^-1 A m."""

    n_params = 2
    param_names = ("a", "b")
    m = np.array([1.0, -2.0])
    A = np.array([[50.0, 20.0], [20.0, 30.0]])
    precision = A + np.eye(2) / 9
    mean = np.linalg.solve(precision, A @ m)

    def evaluate(self, z, rows=None):
        z = np.asarray(z, float)
        r = z - self.m
        ar = np.column_stack([self.A[0, 0] * r[:, 0] + self.A[0, 1] * r[:, 1],
                              self.A[1, 0] * r[:, 0] + self.A[1, 1] * r[:, 1]])
        loglik = -0.5 * (r[:, 0] * ar[:, 0] + r[:, 1] * ar[:, 1])
        logprior = -(z[:, 0] ** 2 + z[:, 1] ** 2) / 18 - math.log(2 * math.pi * 9)
        return PosteriorEval(loglik, -ar, logprior, -z / 9, np.zeros(len(z), bool))

    def sample_prior_z(self, rng, n):
        return 3 * rng.standard_normal((n, 2))

    def to_theta(self, z):
        return np.asarray(z)


def gaussian_barrier(mean_pi, prec_pi, mean_q, prec_q, n_beta=101, n_pairs=20_000):
    """Lambda = int_0^1 1/2 E|V(X) - V(X')| db, X, X' iid from pi_b ∝ q^(1-b) pi^b
    (a Gaussian), V = log pi - log q; Monte Carlo with exact draws."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n_pairs, len(mean_pi)))

    def potential(x):
        r, s = x - mean_pi, x - mean_q
        return -0.5 * np.einsum("ni,ij,nj->n", r, prec_pi, r) + 0.5 * np.einsum("ni,ij,nj->n", s, prec_q, s)

    local = []
    betas = np.linspace(0, 1, n_beta)
    for beta in betas:
        prec = (1 - beta) * prec_q + beta * prec_pi
        mean = np.linalg.solve(prec, (1 - beta) * prec_q @ mean_q + beta * prec_pi @ mean_pi)
        chol = np.linalg.cholesky(np.linalg.inv(prec))
        local.append(0.5 * np.abs(potential(mean + a @ chol.T) - potential(mean + b @ chol.T)).mean())
    return float(np.trapezoid(local, betas))


def test_variational_reference_converges_to_a_gaussian_posterior_and_removes_the_barrier():
    target = GaussianPosterior()
    settings = PTSettings(replicas=6, chains=2, rounds=10, warmup_rounds=8, local_steps=2, seed=0,
                          reference="variational", variational_family="full", stabilised=False)
    final, reports, state = run_pt(target, settings)
    ref = state.reference
    assert ref.active
    # the fit is from 2 x 128 correlated draws of the last warm-up round: within
    # ~3 standard errors in the posterior's own (whitened) units
    whiten = np.linalg.cholesky(target.precision).T
    assert np.all(np.abs(whiten @ (ref.mean - target.mean)) < 0.3)
    ratio = np.linalg.eigvals(np.linalg.solve(ref.inv_chol.T @ ref.inv_chol, target.precision))
    assert np.all((ratio > 0.7) & (ratio < 1.4))
    # PT's barrier estimate (sum of swap rejections) is the exact barrier of
    # the fitted reference's path, a small fraction of the prior's
    measured = np.mean([r["Lambda"][0] for r in reports if r["round"][0] >= settings.warmup_rounds])
    exact = gaussian_barrier(target.mean, target.precision, ref.mean, ref.inv_chol.T @ ref.inv_chol)
    prior = gaussian_barrier(target.mean, target.precision, np.zeros(2), np.eye(2) / 9)
    assert measured == pytest.approx(exact, rel=0.1, abs=0.01)
    assert exact < 0.05 * prior  # prior: 3.4
    draws = np.stack([final.draws["a"], final.draws["b"]], axis=-1).reshape(-1, 2)
    ess = len(draws) / 4  # at least; posterior variances are <= 0.05
    np.testing.assert_allclose(draws.mean(axis=0), target.mean, atol=4 * math.sqrt(0.05 / ess))


def test_conjugate_evidence_with_the_variational_reference():
    """The prior-referenced run of the same model is in test_pt.py."""
    graph = models.exponential()
    times = graph.sample(30, [2.0], seed=5)
    a, b = 2.0, 1.0
    density = Posterior(graph, times, [Gamma(a, b)])
    settings = PTSettings(replicas=6, chains=2, rounds=10, warmup_rounds=6, seed=4, step_size=0.5,
                          reference="variational", stabilised=False)
    final, reports, _ = run_pt(density, settings)
    shape, rate = a + times.size, b + times.sum()
    log_z = a * np.log(b) - gammaln(a) + gammaln(shape) - shape * np.log(rate)
    # chains' mean per direction, held to 4 of its reported standard errors
    estimate, se = reports[-1]["log_z"][0], reports[-1]["log_z_se"][0]
    combined = np.sqrt((se**2).sum(axis=0)) / len(estimate)
    assert np.all(np.abs(estimate.mean(axis=0) - log_z) < 4 * combined)
    assert np.all(combined < 0.02)  # measured 0.001-0.011 (12 seeds); the prior reference's is 0.03-0.05
    theta = final.draws["rate"] if "rate" in final.draws else next(iter(final.draws.values()))
    assert theta.mean() == pytest.approx(shape / rate, rel=0.02)


def gaussian_path_draws(rng, betas, scans, mu=1.0, s=0.2):
    """Exact iid draws of V = log L at each level of prior N(0, 1), L = exp(-(z - mu)^2 / (2 s^2)):
    pi_b = N(b mu / (s^2 + b), s^2 / (s^2 + b)), and log Z_b = log(s^2 / (s^2 + b)) / 2 - b mu^2 / (2 (s^2 + b))."""
    mean, var = betas * mu / (s**2 + betas), s**2 / (s**2 + betas)
    z = mean + np.sqrt(var) * rng.standard_normal((scans, betas.size))
    log_z = 0.5 * math.log(s**2 / (s**2 + 1)) - mu**2 / (2 * (s**2 + 1))
    return -((z - mu) ** 2) / (2 * s**2), log_z


def test_bridge_evidence_and_its_standard_error_on_exact_draws():
    # ∫ pi_0 L^c is finite iff c > -s^2 = -0.04: on this ladder the reverse weights
    # (c = 2 b_{j+1} - b_j = -0.4, -0.1, -0.04, -0.03) have infinite variance, the bridge's never
    betas = np.array([1.0, 0.3, 0.1, 0.03, 0.0])
    rng = np.random.default_rng(0)
    z_bridge, z_forward, z_reverse = [], [], []
    for _ in range(200):
        loglik, log_z = gaussian_path_draws(rng, betas, 2000)
        estimate, se = bridge(betas, loglik)
        forward, reverse, se_forward, se_reverse = stepping_stone(betas, loglik)
        z_bridge.append((estimate - log_z) / se)
        z_forward.append((forward - log_z) / se_forward)
        z_reverse.append((reverse - log_z) / se_reverse)
    integral = quad(lambda x: norm.pdf(x) * math.exp(-((x - 1.0) ** 2) / 0.08), -10, 10, points=[1.0])[0]
    assert math.log(integral) == pytest.approx(log_z, abs=1e-9)
    for z in (np.array(z_bridge), np.array(z_forward)):
        # calibrated: z ~ N(0, 1) (measured sd 0.95 and 0.91 here, 1.01 and 1.00 over 1000
        # replicates); 200 replicates: sd(mean) 0.07, sd(sd) ~0.072 (until the delta-method error,
        # 10 batch means made z a t_9, sd 1.134)
        assert abs(z.mean()) < 4 / math.sqrt(z.size)
        assert 1.0 - 4 * 0.072 < z.std(ddof=1) < 1.0 + 4 * 0.072
    # the reverse's error is too small here even on iid draws (measured: mean z 0.64, sd z 1.34;
    # 0.56 and 1.25 over 1000 replicates): why docs/inference.md holds it to no standard error
    assert np.mean(z_reverse) > 4 / math.sqrt(len(z_reverse))
    assert np.std(z_reverse, ddof=1) > 1.0 + 4 * 0.072
    # one level: nothing to bridge; constant V: exact, with zero error
    assert bridge(np.array([1.0, 0.0]), np.full((40, 2), -3.25)) == pytest.approx((-3.25, 0.0), abs=1e-12)


def ar1_columns(rng, rho, scans, columns):
    """Stationary Gaussian AR(1) columns: N(0, 1) margins, corr(x_s, x_t) = rho^|s - t|."""
    from scipy.signal import lfilter

    noise = rng.standard_normal((scans, columns))
    noise[0] /= math.sqrt(1 - rho**2)
    return lfilter([math.sqrt(1 - rho**2)], [1.0, -rho], noise, axis=0)


def log_mean_exp_variance(c, rho, scans):
    """Var(mean_t w_t) / E[w]^2 for w_t = exp(a V_t), V a Gaussian AR(1) with Var(a V) = c:
    Cov(w_s, w_t) = E[w]^2 (exp(c rho^|s-t|) - 1), summed over all pairs; to first order
    the variance of log mean_t w_t."""
    lag = np.arange(1, scans)
    return (scans * math.expm1(c) + 2 * np.sum((scans - lag) * np.expm1(c * rho**lag))) / scans**2


def test_standard_errors_on_autocorrelated_draws_of_known_variance():
    # V at each level an AR(1) with rho = 0.9 (integrated autocorrelation time 19 scans),
    # mean mu, sd s: the forward estimates log E[exp V] = mu + s^2/2, the bridge
    # log E[exp(V/2)] - log E[exp(-V/2)] = mu, each with a variance known in closed form.
    # The old standard error from 10 batch means had the right size on average but
    # 9 degrees of freedom (a t_9 has sd 1.134), so too wide a spread of z for the band below.
    betas, rho, scans, mu, s = np.array([1.0, 0.0]), 0.9, 2000, -2.0, 0.3
    rng = np.random.default_rng(3)
    sd_forward = math.sqrt(log_mean_exp_variance(s**2, rho, scans))
    sd_bridge = math.sqrt(2 * log_mean_exp_variance(s**2 / 4, rho, scans))
    errors, ses = [], []
    for _ in range(1000):
        loglik = mu + s * ar1_columns(rng, rho, scans, 2)
        forward, _, se_forward, _ = stepping_stone(betas, loglik)
        estimate, se_bridge = bridge(betas, loglik)
        errors.append((forward - mu - s**2 / 2, estimate - mu))
        ses.append((se_forward, se_bridge))
    errors, ses = np.array(errors), np.array(ses)
    band = 4 / math.sqrt(2 * len(errors))  # 4 sds of a sample sd of 1000 normal values
    # the oracle: the errors' spread is the closed form's
    np.testing.assert_allclose(errors.std(axis=0, ddof=1) / [sd_forward, sd_bridge], 1.0, atol=band)
    # the reported errors are right on average (rms against the closed form) ...
    np.testing.assert_allclose(np.sqrt(np.mean(ses**2, axis=0)) / [sd_forward, sd_bridge], 1.0, atol=band)
    # ... and per run: z = error / se is calibrated (measured sd 1.01 and 0.98; the old 10 batch
    # means gave 1.13 and 1.10 on these draws)
    z = errors / ses
    assert np.all(np.abs(z.mean(axis=0)) < 4 / math.sqrt(len(z)))
    assert np.all(np.abs(z.std(axis=0, ddof=1) - 1.0) < band)


def test_evidence_pools_the_autocorrelation_of_chains_that_share_a_ladder():
    # 8 chains of the AR(1) draws above as one group: the same estimates as each chain's
    # stepping_stone and bridge, standard errors of the right size and, with the
    # autocorrelation averaged over 8 chains, a smaller spread than one chain's (measured
    # relative sd 0.07 against 0.15; rms 0.99)
    betas, rho, scans, mu, s, k = np.array([1.0, 0.0]), 0.9, 2000, -2.0, 0.3, 8
    rng = np.random.default_rng(4)
    exact = math.sqrt(log_mean_exp_variance(s**2, rho, scans))
    pooled, single = [], []
    for _ in range(100):
        loglik = mu + s * ar1_columns(rng, rho, scans, 2 * k)  # (scans, K N), chain-major
        estimates, errors = evidence(np.tile(betas, (k, 1)), loglik.T, np.zeros(k, dtype=bool))
        for c in range(k):
            forward, reverse, se_forward, se_reverse = stepping_stone(betas, loglik[:, 2 * c:2 * c + 2])
            estimate, se_bridge = bridge(betas, loglik[:, 2 * c:2 * c + 2])
            assert list(estimates[c]) == [forward, reverse, estimate]
            single.append(se_forward)
        pooled += list(errors[:, 0])
    pooled, single = np.array(pooled) / exact, np.array(single) / exact
    # 800 chains, 100 independent groups: the rms within 4 sds of the groups' spread
    assert abs(np.sqrt(np.mean(pooled**2)) - 1.0) < 4 * pooled.std() / math.sqrt(100)
    assert pooled.std() < 0.6 * single.std()
    # one label per chain: no pooling, each chain's own standard errors
    estimates, errors = evidence(np.tile(betas, (2, 1)), loglik[:, :4].T, np.array([0, 1]))
    _, _, se_forward, se_reverse = stepping_stone(betas, loglik[:, 2:4])
    np.testing.assert_array_equal(errors[1], [se_forward, se_reverse, bridge(betas, loglik[:, 2:4])[1]])


def symmetric_hypoexponential(n):
    """T = Exp(a) then Exp(b), a, b ~ LogNormal(0, 1): mirror modes a < b and a > b of equal mass."""

    graph = Graph.from_edges([1.0, 0.0], [0, 1], [1, -1], [0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]],
                             param_names=["a", "b"])  # 1 -> 2 at a, 2 -> absorbed at b
    return Posterior(graph, graph.sample(n, [1.0, 5.0], seed=1), [LogNormal(0.0, 1.0), LogNormal(0.0, 1.0)])


def test_stabilised_variational_pt_keeps_both_modes_of_the_symmetric_hypoexponential():
    settings = PTSettings(replicas=6, chains=8, rounds=10, warmup_rounds=6, seed=0, reference="variational")
    final, reports, state = run_pt(symmetric_hypoexponential(100), settings)
    weights = (final.draws["a"] < final.draws["b"]).mean(axis=1).reshape(4, 2).mean(axis=1)  # per ensemble
    se = weights.std(ddof=1) / math.sqrt(weights.size)
    assert abs(weights.mean() - 0.5) < 3 * se
    assert se < 0.03  # so the check above is within ~0.1 of 0.5
    assert np.all((weights > 0.2) & (weights < 0.8))  # every ensemble visits both modes
    assert state.reference.active
    # the variational legs (odd chains) have the lower barrier
    last = reports[-1]["Lambda"][0]
    assert last[1::2].mean() < last[::2].mean()


def test_stabilised_needs_chains_in_pairs():
    with pytest.raises(ConfigError, match="pt.chains"):
        PTSettings(chains=3, reference="variational")
    assert PTSettings(chains=3, reference="variational", stabilised=False).chains == 3
    assert PTSettings(chains=3).reference == "prior"
