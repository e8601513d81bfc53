"""Adaptive uniformization on stiff models against scipy's expm / expm_frechet.

Stiff models (Kingman n = 200: rates up to 19900 θ; block-counting n = 20;
a two-parameter Kingman whose fast and slow rates have their own
parameters) are cut into segments whose rate follows the states that hold
mass (libphase/src/chain.c). Oracles: ``scipy.linalg.expm`` of S t for pdf,
cdf, survival and the censored probabilities, ``expm_frechet`` for the
gradients; the single-rate path (``adaptive=False``) for the agreement of
the two paths and for the number of terms each needs.
"""

import numpy as np
import pytest
from scipy.linalg import expm, expm_frechet

from phasic_mpi import Observations, models
from phasic_mpi.model.native import Status, evaluate, loglik
from randgraph import two_rate_kingman

RTOL = 1e-10


CASES = [  # (name, factory, theta, exact times)
    ("kingman200", lambda: models.kingman(200), [0.8], [0.6, 1.3, 2.9, 5.5, 9.0]),
    ("block_counting10", lambda: models.block_counting(10), [1.0], [0.3, 1.2, 3.3, 9.0]),
    ("block_counting15", lambda: models.block_counting(15), [0.9], [0.4, 1.7, 4.1, 12.0]),
    ("block_counting20", lambda: models.block_counting(20), [1.1], [0.5, 1.6, 3.8, 7.0]),
    ("kingman150_two_rates", lambda: two_rate_kingman(150), [1.2, 0.7], [0.8, 2.0, 4.5, 8.0]),
]


def derivatives(graph):
    """dS/dθ_m (dense) and ds/dθ_m from the graph's linear rates."""
    n, d = graph.n_states, graph.n_params
    dS, ds = np.zeros((d, n, n)), np.zeros((d, n))
    for e in range(graph.n_edges):
        i, j = graph.edge_src[e], graph.edge_dst[e]
        dS[:, i, i] -= graph.edge_coef[e]
        if j >= 0:
            dS[:, i, j] += graph.edge_coef[e]
        else:
            ds[:, i] += graph.edge_coef[e]
    return dS, ds


def oracle(graph, theta, t):
    """f, S (survival) and their θ-gradients at t by expm / expm_frechet."""
    alpha, S, s = graph.to_matrices(theta)
    dS, ds = derivatives(graph)
    E = expm(S * t)
    f, surv = alpha @ E @ s, alpha @ E.sum(axis=1)
    df, dsurv = np.empty(graph.n_params), np.empty(graph.n_params)
    for m in range(graph.n_params):
        _, L = expm_frechet(S * t, dS[m] * t)
        df[m] = alpha @ L @ s + alpha @ E @ ds[m]
        dsurv[m] = alpha @ L.sum(axis=1)
    return f, surv, df, dsurv


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - b) / np.abs(b))


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def case(request):
    name, factory, theta, times = request.param
    graph, theta = factory(), np.asarray(theta)
    ref = {t: oracle(graph, theta, t) for t in sorted(set(times) | {0.9, 2.2, 4.0})}
    return graph, theta, np.asarray(times), ref


def test_values_against_expm(case):
    graph, theta, times, ref = case
    f = evaluate(graph, theta, times, "pdf")
    surv = evaluate(graph, theta, times, "survival")
    cdf = evaluate(graph, theta, times, "cdf")
    logsurv = evaluate(graph, theta, times, "logsurvival")
    assert rel(f, [ref[t][0] for t in times]) <= RTOL
    assert rel(surv, [ref[t][1] for t in times]) <= RTOL
    assert rel(cdf, [1 - ref[t][1] for t in times]) <= RTOL
    assert rel(logsurv, [np.log(ref[t][1]) for t in times]) <= RTOL


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_loglik_and_gradient_of_every_kind_of_observation(case, mode):
    graph, theta, times, ref = case
    data = Observations(times, right_censored=[2.2, 4.0], interval=([0.9, 2.2], [2.2, 4.0]))
    want_ll = sum(np.log(ref[t][0]) for t in times)
    want_grad = sum(ref[t][2] / ref[t][0] for t in times)
    for c in (2.2, 4.0):  # log S(c)
        want_ll += np.log(ref[c][1])
        want_grad += ref[c][3] / ref[c][1]
    for lo, hi in ((0.9, 2.2), (2.2, 4.0)):  # log(S(lo) - S(hi))
        mass = ref[lo][1] - ref[hi][1]
        want_ll += np.log(mass)
        want_grad += (ref[lo][3] - ref[hi][3]) / mass
    ll, grad, status = loglik(graph, data, theta[None], grad=True, gradient_mode=mode)
    assert status[0] == Status.OK
    assert ll[0] == pytest.approx(want_ll, rel=RTOL)
    np.testing.assert_allclose(grad[0], want_grad, rtol=RTOL)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_adaptive_needs_a_fraction_of_the_terms_and_agrees(case, mode):
    graph, theta, times, _ = case
    data = graph.sample(100, theta, seed=5)
    out = {}
    for adaptive in (True, False):
        info = {}
        ll, grad, status = loglik(graph, data, theta[None], grad=True, gradient_mode=mode,
                                  adaptive=adaptive, info=info)
        assert status[0] == Status.OK
        out[adaptive] = ll[0], grad[0], int(info["n_terms"][0])
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-12)
    np.testing.assert_allclose(out[True][1], out[False][1], rtol=RTOL)
    if out[False][2] >= 2048:  # below about MIN_TERMS (chain.c) one rate is kept
        assert out[True][2] * 2 < out[False][2]


def test_far_tail_point_gives_the_single_rate_bits():
    """A density far below the boundaries' error bound sends θ back to one rate."""
    graph, theta = models.kingman(80), np.array([1.0])
    points = np.array([0.7, 150.0])
    adaptive = evaluate(graph, theta, points, "logpdf")
    single = evaluate(graph, theta, points, "logpdf", adaptive=False)
    np.testing.assert_array_equal(adaptive, single)
    # Far right tail: f(t) -> C e^{-t}, the last merger (rate 1) alone, with
    # C = prod_{k >= 3} r_k / (r_k - 1), r_k = k (k - 1) / 2 (hypoexponential).
    r = np.array([k * (k - 1) / 2 for k in range(3, 81)])
    assert adaptive[1] == pytest.approx(np.sum(np.log(r / (r - 1))) - 150.0, rel=1e-12)


@pytest.mark.parametrize("mode", ["auto", "forward"])
@pytest.mark.parametrize("censored", [False, True])
def test_exact_and_right_censored_on_the_step_wise_path(case, mode, censored):
    """Exact (and right-censored) observations: step-wise adaptive uniformization
    (stepau.c) on the block-counting graphs (one step per level), the chain on
    Kingman's; both against expm / expm_frechet, the value bits the same with and
    without gradient."""
    graph, theta, times, ref = case
    exact = np.concatenate([times, times[:2]])  # repeated times too
    right = [2.2, 4.0] if censored else []
    data = Observations(exact, right_censored=right)
    want_ll = sum(np.log(ref[t][0]) for t in exact) + sum(np.log(ref[c][1]) for c in right)
    want_grad = (sum(ref[t][2] / ref[t][0] for t in exact)
                 + sum(ref[c][3] / ref[c][1] for c in right))
    info = {}
    ll, grad, status = loglik(graph, data, theta[None], grad=True, gradient_mode=mode, info=info)
    assert status[0] == Status.OK
    assert ll[0] == pytest.approx(want_ll, rel=RTOL)
    np.testing.assert_allclose(grad[0], want_grad, rtol=RTOL)
    value_only, _, _ = loglik(graph, data, theta[None])
    assert value_only[0] == ll[0]
    block_counting = graph.n_states in (41, 175, 626)  # n = 10, 15, 20: n - 1 levels
    assert (info["n_terms"][0] < 21) == block_counting
