"""Small probabilities keep their digits: F from 1e-300 to 1 - 1e-15.

Oracle: mpmath's matrix exponential of the sub-intensity matrix, at enough
digits that 1 - alpha exp(S t) 1 keeps 40 significant digits (the
cancellation costs about r * log10(1 / (Lambda t)) digits when the shortest
path from the start to absorption has r steps), and its gradients by
mpmath's numerical differentiation at that precision. Models: exponential,
Erlang(5), a hypoexponential (Kingman n = 4: rates 6, 3, 1 times theta) and
the cyclic parameterized rabbits (n = 2).
"""

import math

import mpmath as mp
import numpy as np
import pytest

from phasic_mpi import Observations, models
from phasic_mpi.model.native import loglik

# (name, graph factory, theta, steps from the start to absorption, smallest t:
# F(t) is just above 1e-300 there, ~ (rate t)^steps / steps!)
MODELS = [
    ("exponential", models.exponential, [1.0], 1, 1.0001e-300),
    ("erlang5", lambda: models.erlang(5), [1.0], 5, 3e-60),
    ("kingman4", lambda: models.kingman(4), [1.0], 3, 1e-100),
    ("rabbits2", lambda: models.rabbits(2), [1.0, 2.0, 4.0], 1, 1e-300),
]
F_RANGE = (1e-300, 1 - 1e-15)


class Oracle:
    """F, S, f of a graph at high precision, as functions of (theta, t)."""

    def __init__(self, graph, steps):
        self.graph, self.steps = graph, steps

    def digits(self, t):
        return 40 + int(self.steps * max(0.0, -math.log10(t)))

    def parts(self, theta, t):
        g = self.graph
        n = g.n_states
        rates = [mp.mpf(b) + mp.fsum(mp.mpf(c) * th for c, th in zip(row, theta))
                 for b, row in zip(g.edge_base, g.edge_coef)]
        S, s = mp.zeros(n, n), mp.zeros(n, 1)
        for e, w in enumerate(rates):
            i, j = int(g.edge_src[e]), int(g.edge_dst[e])
            S[i, i] -= w
            if j < 0:
                s[i] += w
            else:
                S[i, j] += w
        alpha = mp.matrix([[mp.mpf(a) for a in g.alpha]])
        E = mp.expm(S * t)
        surv = (alpha * E * mp.ones(n, 1))[0]
        return 1 - surv, surv, (alpha * E * s)[0]

    def at(self, theta, t, what):
        """Quantity 0 (F), 1 (S) or 2 (f) at theta, t (mp numbers)."""
        with mp.workdps(self.digits(t)):
            return self.parts([mp.mpf(x) for x in theta], mp.mpf(t))[what]

    def log_mass(self, theta, lo, hi):
        """log P(lo < T <= hi) at mp theta (lo < 0: T <= hi; hi = inf: T > lo)."""
        F_lo = self.parts(theta, mp.mpf(lo))[0] if lo >= 0 else mp.mpf(0)
        S_hi = self.parts(theta, mp.mpf(hi))[1] if np.isfinite(hi) else mp.mpf(0)
        return mp.log(1 - F_lo - S_hi)

    def censored(self, theta, lo, hi):
        """log P(lo < T <= hi) and its gradient (mpmath's differentiation)."""
        d = len(theta)
        small = min(t for t in (abs(lo), hi) if t > 0)
        with mp.workdps(self.digits(small)):
            x = [mp.mpf(v) for v in theta]

            def fn(*th):
                return self.log_mass(list(th), lo, hi)

            grad = [float(mp.diff(fn, x, tuple(int(k == m) for k in range(d))))
                    for m in range(d)]
            return float(fn(*x)), np.array(grad)


def survival_time(oracle, theta, target=3e-15):
    """t with P(T > t) = target (bisection in log t on the oracle)."""
    lo, hi = 0.0, 6.0  # log t
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if oracle.at(theta, math.exp(mid), 1) > target:
            lo = mid
        else:
            hi = mid
    return math.exp(hi)


def times_spanning_f(oracle, theta, t_lo, n):
    """n log-spaced times from t_lo and 4 near the top: F covers F_RANGE."""
    t_hi = survival_time(oracle, theta)
    ts = np.concatenate([np.geomspace(t_lo, t_hi / 4, n), np.linspace(t_hi / 3, t_hi, 4)])
    F = np.array([float(oracle.at(theta, t, 0)) for t in ts])
    assert F.min() >= F_RANGE[0] and F.min() < 1e-299
    assert F.max() <= F_RANGE[1] and F.max() > 1 - 1e-14
    return ts


@pytest.mark.parametrize("name,factory,theta,steps,t_lo", MODELS)
def test_pointwise_values_against_mpmath(name, factory, theta, steps, t_lo):
    g = factory()
    oracle = Oracle(g, steps)
    ts = times_spanning_f(oracle, theta, t_lo, 12)
    F = np.array([float(oracle.at(theta, t, 0)) for t in ts])
    S = np.array([float(oracle.at(theta, t, 1)) for t in ts])
    f = np.array([float(oracle.at(theta, t, 2)) for t in ts])
    logS = np.array([float(mp.log(oracle.at(theta, t, 1))) for t in ts])
    np.testing.assert_allclose(g.cdf(ts, theta), F, rtol=1e-10, atol=0)
    np.testing.assert_allclose(g.survival(ts, theta), S, rtol=1e-10, atol=0)
    np.testing.assert_allclose(g.logsurvival(ts, theta), logS, rtol=1e-10, atol=0)
    shown = f > 1e-300  # where the density itself is a normal double
    np.testing.assert_allclose(g.pdf(ts[shown], theta), f[shown], rtol=1e-10, atol=0)


@pytest.mark.parametrize("name,factory,theta,steps,t_lo", MODELS)
def test_censored_terms_and_gradients_against_mpmath(name, factory, theta, steps, t_lo):
    """(t, inf], (0, t], (-inf, t] and (t, 2t] at F from 1e-300 to 1 - 1e-15."""
    g = factory()
    oracle = Oracle(g, steps)
    for t in times_spanning_f(oracle, theta, t_lo, 5) / 2:
        for lo, hi in [(t, np.inf), (0.0, t), (-np.inf, t), (t, 2 * t)]:
            want, dwant = oracle.censored(theta, lo, hi)
            obs = Observations(interval=[[lo, hi]])
            for mode in ("forward", "reverse"):
                ll, grad, status = loglik(g, obs, [theta], grad=True, gradient_mode=mode)
                where = f"{name} ({lo}, {hi}] {mode}"
                # relative 1e-10 on the probability is absolute 1e-10 on its log;
                # a log near 0 (mass near 1) must keep 1e-10 of its own digits
                assert status[0] == 0 and abs(ll[0] - want) <= 1e-10 * min(1.0, abs(want)), \
                    (where, ll[0], want)
                # relative to the largest component (others may vanish to first order)
                np.testing.assert_allclose(grad[0], dwant, rtol=1e-9,
                                           atol=1e-12 * np.abs(dwant).max(), err_msg=where)
    # right-censoring is the same term as (c, inf]
    c = t_lo * 10
    assert g.loglik(Observations(right_censored=[c]), [theta])[0] == \
        g.loglik(Observations(interval=[[c, np.inf]]), [theta])[0]


def test_the_issue_examples():
    e = models.exponential()
    np.testing.assert_allclose(e.cdf([1e-9, 1e-20], [1.0]), [-math.expm1(-1e-9), 1e-20],
                               rtol=1e-15)
    # detection limit: absorbed in (0, 1e-12]
    t = mp.mpf(1e-12)
    with mp.workdps(60):
        want = float(mp.log(-mp.expm1(-t)))
        dwant = float(t * mp.exp(-t) / -mp.expm1(-t))
    ll, grad = e.loglik_and_grad(Observations(interval=[[0.0, 1e-12]]), [[1.0]])
    assert ll[0] == pytest.approx(want, rel=1e-13)
    assert grad[0, 0] == pytest.approx(dwant, rel=1e-11)
