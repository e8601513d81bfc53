"""``pt.cold_steps = "auto"`` (inference/ptcold.py): the setting, the probe's
correlation estimate against closed forms on synthetic draws, the cost rule by
hand, the chosen count on targets where the answer is known, and a conjugate
posterior sampled with the chosen count."""

import math

import numpy as np
import pytest

from phasic_mpi.errors import ConfigError
from phasic_mpi.inference.posterior import PosteriorEval
from phasic_mpi.inference.pt import PTSettings
from phasic_mpi.inference.ptcold import (CALL_ROWS, PROBE_MOVES, accumulate, choose, moves, probe_width, probing,
                                         tau_curve)

from pt_reference import cold_draws


def test_cold_steps_takes_auto_and_names_the_key_on_bad_values():
    assert PTSettings(cold_steps="auto").cold_steps == "auto"
    assert PTSettings(cold_steps=3).cold_steps == 3
    for bad in (-1, 1.5, True, "Auto", "fast", None):
        with pytest.raises(ConfigError, match=r"pt\.cold_steps: expected an integer >= 0 or \"auto\""):
            PTSettings(cold_steps=bad)


def test_the_last_warmup_round_probes():
    settings = PTSettings(rounds=9, warmup_rounds=7, cold_steps="auto")
    # round 6, the last of warm-up, holds scans 63..126
    assert [probing(s, settings) for s in (62, 63, 126, 127)] == [False, True, True, False]
    assert not probing(40, PTSettings(rounds=9, warmup_rounds=7, cold_steps=2))
    before, chosen = (type("S", (), {"cold_auto": np.array([k])})() for k in (0.0, 3.0))  # as ptcold keeps it
    assert [moves(before, s, settings) for s in (0, 62, 63, 126)] == [0, 0, PROBE_MOVES, PROBE_MOVES]
    assert moves(chosen, 127, settings) == 3
    assert moves(None, 40, PTSettings(cold_steps=2)) == 2


def synthetic_probe(n, d, c, kept, floor_scale=0.0, seed=0):
    """Probe sums of n scans with known correlations: a ~ N(0, I) (plus a mode
    offset s * floor_scale, s = +-1 kept for the whole scan), x_j = c_j a_w + sqrt(1 - c_j^2) e_j
    within the mode; ``kept`` scans keep x_K, the others end at an independent draw."""
    rng = np.random.default_rng(seed)
    probe = np.zeros((100, probe_width(d)))
    for _ in range(n // 100):
        s = rng.choice([-1.0, 1.0], (100, 1)) * floor_scale
        a = rng.standard_normal((100, d))
        trace = np.stack([c[j] * a + math.sqrt(1 - c[j] ** 2) * rng.standard_normal((100, d)) + s
                          for j in range(PROBE_MOVES + 1)], axis=1)
        keep = rng.uniform(size=100) < kept
        end = np.where(keep[:, None], trace[:, -1], rng.standard_normal((100, d)) + s)
        probe = accumulate(probe, np.arange(100), a + s, trace, end)
    return probe


def test_tau_is_the_lag1_time_of_the_scan_correlation():
    # oracle: rho_k = kept * c_k (a swapped state is independent) and tau(k) = (1 + rho_k) / (1 - rho_k)
    c = 0.6 ** np.arange(PROBE_MOVES + 1)
    kept = 0.75
    tau = tau_curve(synthetic_probe(20000, 2, c, kept).sum(axis=0), 2, None)
    rho = kept * c
    np.testing.assert_allclose(tau, (1 + rho) / (1 - rho), rtol=0.06)  # sd of a correlation ~ 1/sqrt(20000)
    assert np.all(np.diff(tau) < 0)


def test_tau_is_whitened_by_the_metric_factor():
    # the same draws scaled by a factor L: whitening with L gives the unscaled answer
    c = 0.7 ** np.arange(PROBE_MOVES + 1)
    probe = synthetic_probe(5000, 2, c, 1.0, seed=2)
    total = probe.sum(axis=0)
    scale = np.array([3.0, 0.5])
    d = 2
    scaled = total.copy()
    base, block = 1 + d + d * d, d + 2 * d * d
    outer = np.outer(scale, scale).ravel()
    scaled[1:1 + d] *= scale
    scaled[1 + d:base] *= outer
    for k in range(PROBE_MOVES + 1):  # per k: sum z, sum z z^T, sum a z^T
        at = base + k * block
        scaled[at:at + d] *= scale
        scaled[at + d:at + block] *= np.concatenate([outer, outer])
    np.testing.assert_allclose(tau_curve(scaled, d, scale), tau_curve(total, d, None), rtol=1e-10)
    np.testing.assert_allclose(tau_curve(scaled, d, np.diag(scale)), tau_curve(total, d, None), rtol=1e-10)


def test_moves_that_cannot_lower_the_scan_correlation_are_not_bought():
    # a mode at +-2 sd kept through the scan, the within-mode part already independent after the
    # local step (c_j = 0): rho_k = kept * 4/5 for every k, so tau is flat and no move pays
    c = np.zeros(PROBE_MOVES + 1)
    tau = tau_curve(synthetic_probe(20000, 1, c, 0.9, floor_scale=2.0, seed=3).sum(axis=0), 1, None)
    rho = 0.9 * 0.8 + 0.1 * 0.8  # kept: the mode; swapped: an independent draw in the same mode
    np.testing.assert_allclose(tau, (1 + rho) / (1 - rho), rtol=0.06)
    assert choose(tau, PTSettings(replicas=8, chains=2)) == 0


def test_choose_maximises_ess_per_row_by_hand():
    settings = PTSettings(replicas=8, chains=2, local_steps=1)
    tau = np.array([4.0, 2.5, 2.0, 1.9, 1.9])
    cost = (16 + CALL_ROWS) + np.arange(5) * (2 + CALL_ROWS)
    value = 1 / (tau * cost)
    assert choose(tau, settings) == min(k for k in range(5) if value[k] == value.max())
    assert choose(tau, settings) == 2  # 1/(2.0 * 26) beats 1/(2.5 * 22) and 1/(1.9 * 30)
    hmc = PTSettings(replicas=8, chains=2, local_move="hmc", leapfrog_steps=4)
    assert choose(tau, hmc) == 2  # every call costs leapfrog_steps alike: the same ratio
    assert choose(np.full(5, math.inf), settings) == 0


class NarrowGaussian:
    """Prior N(0, I), likelihood N(mu; z, s^2 I): posterior N(mu / (1 + s^2), s^2 / (1 + s^2) I)."""

    n_params = 2
    param_names = ("a", "b")
    mu, s = np.array([0.5, -0.3]), 0.1

    def evaluate(self, z, rows=None):
        z = np.asarray(z, float)[rows if rows is not None else slice(None)]
        r = (z - self.mu) / self.s
        logprior = -0.5 * (z * z).sum(1) - math.log(2 * math.pi)
        return PosteriorEval(-0.5 * (r * r).sum(1), -r / self.s, logprior, -z, np.zeros(len(z), bool))

    def sample_prior_z(self, rng, n):
        return rng.standard_normal((n, 2))

    def to_theta(self, z):
        return np.asarray(z)


class TwoModes:
    """Prior N(0, 3^2 I), likelihood an equal mixture of N(+-3 e_1, 0.3^2 I): two
    modes that no local move crosses."""

    n_params = 2
    param_names = ("a", "b")

    def evaluate(self, z, rows=None):
        z = np.asarray(z, float)[rows if rows is not None else slice(None)]
        s2 = 0.09
        l1, l2 = (-((z - [m, 0.0]) ** 2).sum(1) / (2 * s2) for m in (3.0, -3.0))
        top = np.maximum(l1, l2)
        w1, w2 = np.exp(l1 - top), np.exp(l2 - top)
        loglik = top + np.log(w1 + w2) - math.log(2)
        grad = (w1[:, None] * ([3.0, 0.0] - z) + w2[:, None] * ([-3.0, 0.0] - z)) / s2 / (w1 + w2)[:, None]
        logprior = -(z * z).sum(1) / 18 - math.log(2 * math.pi * 9)
        return PosteriorEval(loglik, grad, logprior, -z / 9, np.zeros(len(z), bool))

    def sample_prior_z(self, rng, n):
        return 3 * rng.standard_normal((n, 2))

    def to_theta(self, z):
        return np.asarray(z)


def test_auto_moves_the_cold_chains_more_where_moves_decorrelate():
    """A narrow Gaussian posterior: swaps bring little, each random-walk move
    decorrelates a little more (tau 2.5 -> 1.3 over 4 moves) -> k > 0, and the cold
    draws match the conjugate posterior."""
    settings = PTSettings(replicas=16, chains=2, rounds=10, warmup_rounds=7, local_move="rwm",
                          cold_steps="auto", seed=5)
    state, draws = cold_draws(settings, NarrowGaussian())
    k = int(state.cold_auto[0])
    assert k > 0
    assert state.report["pt/cold_steps"][0] == k  # the sampling rounds ran with it
    tau = state.cold_auto[1:]
    assert tau[k] < tau[0]
    s2 = NarrowGaussian.s ** 2
    mean, var = NarrowGaussian.mu / (1 + s2), s2 / (1 + s2)
    ess = len(draws) / 4  # at least (tau(k) < 2 above)
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=4 * math.sqrt(var / ess))
    np.testing.assert_allclose(draws.var(axis=0), [var, var], rtol=4 * math.sqrt(2 / ess))


def test_auto_spends_no_moves_where_modes_floor_the_correlation():
    settings = PTSettings(replicas=6, chains=2, rounds=9, warmup_rounds=7, cold_steps="auto", seed=1)
    state, draws = cold_draws(settings, TwoModes())
    assert int(state.cold_auto[0]) == 0
    assert np.all(state.cold_auto[1:] >= 1)  # tau estimated for every k
    # the posterior's symmetric mode weights (grid-free: exact 1/2 by symmetry), within 4 binomial sds
    # of the chains' effective draws (one switch per few scans: counted as len / 16)
    frac = np.mean(draws[:, 0] > 0)
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / (len(draws) / 16))
