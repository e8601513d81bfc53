"""Log-likelihoods and their exact gradients against independent oracles.

Oracles: ``scipy.linalg.expm_frechet`` (the derivative of exp(S t) in the
direction dS t), closed forms, central finite differences of the library's
own values (for censored terms), and the gradient tables of oracles.md.
"""

import numpy as np
import pytest
from scipy.linalg import expm, expm_frechet

from phasic_mpi import Graph, Observations, models
from phasic_mpi.model.native import Status, loglik
from randgraph import random_graph


def sub_intensity_derivatives(graph, theta):
    """dS/dtheta_m and ds/dtheta_m (dense), from the graph's linear rates."""
    n, d = graph.n_states, graph.n_params
    dS = np.zeros((d, n, n))
    ds = np.zeros((d, n))
    for e in range(graph.n_edges):
        i, j = graph.edge_src[e], graph.edge_dst[e]
        for m in range(d):
            c = graph.edge_coef[e, m]
            dS[m, i, i] -= c
            if j >= 0:
                dS[m, i, j] += c
            else:
                ds[m, i] += c
    return dS, ds


def expm_loglik_grad(graph, theta, times):
    """Sum of log f(t_i) and its gradient by Fréchet derivatives of expm."""
    alpha, S, s = graph.to_matrices(theta)
    dS, ds = sub_intensity_derivatives(graph, theta)
    total, grad = 0.0, np.zeros(graph.n_params)
    for t in times:
        E = expm(S * t)
        f = alpha @ E @ s
        total += np.log(f)
        for m in range(graph.n_params):
            _, L = expm_frechet(S * t, dS[m] * t)
            grad[m] += (alpha @ L @ s + alpha @ E @ ds[m]) / f
    return total, grad


@pytest.mark.parametrize("n,d,density,seed", [(4, 1, 0.5, 21), (10, 3, 0.3, 22), (30, 4, 0.15, 23)])
def test_gradient_against_expm_frechet(n, d, density, seed):
    graph = random_graph(n, d, density, seed)
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.3, 2.0, size=d)
    times = rng.exponential(graph.expectation(theta), size=12) + 1e-3
    ll, grad = graph.loglik_and_grad(times, theta[None, :])
    ll_ref, grad_ref = expm_loglik_grad(graph, theta, times)
    assert ll[0] == pytest.approx(ll_ref, rel=1e-11)
    np.testing.assert_allclose(grad[0], grad_ref, rtol=1e-8, atol=1e-10 * np.abs(grad_ref).max())


def test_stiff_coalescent_gradient():
    """Kingman n = 50 at rates up to 12250: where time-stepping + finite
    differences gets the sign wrong, the exact gradient matches Fréchet."""
    graph = models.kingman(50)
    theta = np.array([10.0])
    times = np.array([0.05, 0.12, 0.2, 0.31, 0.5])
    ll, grad = graph.loglik_and_grad(times, theta)
    ll_ref, grad_ref = expm_loglik_grad(graph, theta, times)
    assert ll[0] == pytest.approx(ll_ref, rel=1e-11)
    assert grad[0, 0] == pytest.approx(grad_ref[0], rel=1e-8)
    # scale identity: d/dtheta log f(t; theta) = (1 + t f'(t)/f(t)) / theta
    eps = 1e-6
    lp = graph.logpdf(times * (1 + eps), theta)
    lm = graph.logpdf(times * (1 - eps), theta)
    dlogf_dt = (lp - lm) / (2 * eps * times)
    assert grad[0, 0] == pytest.approx(np.sum((1 + times * dlogf_dt) / theta[0]), rel=1e-6)


def test_kingman_and_rabbits_gradient_tables():
    kingman = models.kingman(4)
    for t, df in zip([0.5, 1.0, 1.5], [0.761083869881, 0.283849897147, -0.085357414601]):
        ll, grad = kingman.loglik_and_grad([t], [1.0])
        assert grad[0, 0] * np.exp(ll[0]) == pytest.approx(df, abs=5e-13)
    rabbits = models.rabbits(2)
    table = {
        0.5: [0.075533616751, -0.008049328629, 0.026039258804],
        1.0: [0.005808255173, -0.141433031031, -0.016641301735],
        2.0: [-0.009622084039, -0.040721615094, -0.006776705730],
    }
    for t, df in table.items():
        ll, grad = rabbits.loglik_and_grad([t], [1, 2, 4])
        np.testing.assert_allclose(grad[0] * np.exp(ll[0]), df, rtol=0, atol=5e-13)




def test_exponential_closed_form_with_weights():
    graph = models.exponential()
    times = np.array([0.1, 0.5, 2.0])
    weights = np.array([3.0, 1.0, 2.0])
    thetas = np.array([[0.5], [1.0], [4.0]])
    ll, grad = graph.loglik_and_grad(Observations(times, weights), thetas)
    theta = thetas[:, 0]
    np.testing.assert_allclose(ll, weights.sum() * np.log(theta) - theta * (weights @ times), rtol=1e-13)
    np.testing.assert_allclose(grad[:, 0], weights.sum() / theta - weights @ times, rtol=1e-11)
    # integer weights are the same as repeated observations
    repeated = np.repeat(times, weights.astype(int))
    ll_rep, grad_rep = graph.loglik_and_grad(repeated, thetas)
    np.testing.assert_allclose(ll, ll_rep, rtol=1e-14)
    np.testing.assert_allclose(grad, grad_rep, rtol=1e-12)


def censored_data():
    return Observations(
        [0.05, 0.4, 1.1, 2.5],
        [1, 2, 1, 1],
        right_censored=[0.8, 3.0],
        right_weights=[2, 1],
        interval=[[0.0, 0.2], [0.3, 0.9], [1.0, np.inf]],
        interval_weights=[1, 1, 3],
    )


def test_censored_values_against_expm():
    graph = random_graph(9, 2, 0.35, seed=31)
    theta = np.array([0.8, 1.4])
    alpha, S, s = graph.to_matrices(theta)
    one = np.ones(graph.n_states)

    def surv(t):
        return 0.0 if np.isinf(t) else alpha @ expm(S * t) @ one

    data = censored_data()
    want = sum(w * np.log(alpha @ expm(S * t) @ s) for t, w in zip(data.exact, data.weights))
    want += sum(w * np.log(surv(c)) for c, w in zip(data.right_censored, data.right_weights))
    want += sum(
        w * np.log(surv(lo) - surv(hi))
        for lo, hi, w in zip(data.interval_lo, data.interval_hi, data.interval_weights)
    )
    assert graph.loglik(data, theta[None, :])[0] == pytest.approx(want, rel=1e-11)


@pytest.mark.parametrize("discrete", [False, True])
def test_censored_gradient_against_finite_differences(discrete):
    graph = random_graph(9, 3, 0.35, seed=32, discrete=discrete)
    theta = np.array([0.3, 0.2, 0.25]) if discrete else np.array([0.8, 1.4, 0.6])
    if discrete:
        data = Observations([1, 2, 5, 9], [1, 2, 1, 1], right_censored=[3, 12], interval=[[0, 2], [4, 8], [6, np.inf]])
    else:
        data = censored_data()
    ll, grad = graph.loglik_and_grad(data, theta[None, :])
    for m in range(graph.n_params):
        h = 1e-6 * theta[m]
        up, down = theta.copy(), theta.copy()
        up[m] += h
        down[m] -= h
        fd = (graph.loglik(data, up[None, :])[0] - graph.loglik(data, down[None, :])[0]) / (2 * h)
        assert grad[0, m] == pytest.approx(fd, rel=1e-6, abs=1e-8)


def test_checkpointed_reverse_sweep_equals_stored():
    graph = random_graph(20, 2, 0.25, seed=41)
    theta = np.array([[1.2, 0.9]])
    data = censored_data()
    _, full, _ = loglik(graph, data, theta, grad=True)
    _, small, _ = loglik(graph, data, theta, grad=True, memory_limit=3 * 8 * graph.n_states)
    np.testing.assert_allclose(small, full, rtol=1e-13)


def test_far_tail_observation_keeps_loglik_finite():
    graph = models.kingman(10)
    ll, grad = graph.loglik_and_grad([900.0, 1.0], [1.0])  # f(900) ~ e^-900 < smallest double
    assert np.isfinite(ll[0]) and np.isfinite(grad[0, 0])
    # at theta = 1 the tail term dominates: d/dtheta log f(900) ~ 1/theta - 900
    assert grad[0, 0] == pytest.approx(1 - 900 + graph.loglik_and_grad([1.0], [1.0])[1][0, 0], rel=1e-9)


def test_domain_and_zero_probability_statuses():
    graph = models.rabbits(2)
    thetas = np.array([[1, 2, 4], [1, -2, 4]], dtype=float)
    ll, grad, status = loglik(graph, [0.5, 1.0], thetas, grad=True)
    assert np.isfinite(ll[0]) and status[0] == Status.OK
    assert ll[1] == -np.inf and status[1] == Status.DOMAIN and not grad[1].any()
    # Erlang-2 cannot be absorbed at t = 0: f(0) = 0 -> -inf, status ZERO
    erlang = models.erlang(2)
    ll, grad, status = loglik(erlang, [0.0, 1.0], [[1.0]], grad=True)
    assert ll[0] == -np.inf and status[0] == Status.ZERO and grad[0, 0] == 0.0
    # ... unless that observation has weight zero
    assert np.isfinite(erlang.loglik(Observations([0.0, 1.0], [0.0, 1.0]), [[1.0]])[0])


def test_bad_observations_are_clear_errors():
    with pytest.raises(ValueError, match=r"exact\[1\] = -0.5"):
        Observations([1.0, -0.5])
    with pytest.raises(ValueError, match=r"interval\[0\].*lo < hi"):
        Observations(interval=[[2.0, 1.0]])
    with pytest.raises(ValueError, match="weights has 1 entries for 2"):
        Observations([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=r"weights\[0\]"):
        Observations([1.0], [-1.0])
    with pytest.raises(ValueError, match=r"non-negative integer"):
        Graph.from_matrices([1.0], [[0.5]], discrete=True).loglik([1.5], None)


def test_too_many_terms_is_a_range_status_not_a_crash():
    graph = models.exponential()
    ll, grad, status = loglik(graph, [1e7], [[1.0]], grad=True, memory_limit=1 << 20)
    assert status[0] == Status.RANGE and np.isnan(ll[0]) and grad[0, 0] == 0.0
    with pytest.raises(ValueError, match="memory_limit"):
        from phasic_mpi.model.native import evaluate

        evaluate(graph, [1.0], [1e7], "pdf", memory_limit=1 << 20)


def test_concurrent_calls_from_threads_give_the_serial_bits():
    """libphase keeps no global state and cffi releases the GIL."""
    from concurrent.futures import ThreadPoolExecutor

    graph = random_graph(15, 2, 0.3, seed=51)
    data = censored_data()
    thetas = np.random.default_rng(1).uniform(0.5, 2.0, size=(8, 2))
    serial = [graph.loglik_and_grad(data, t[None, :]) for t in thetas]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda t: graph.loglik_and_grad(data, t[None, :]), thetas))
    for (ll_s, g_s), (ll_t, g_t) in zip(serial, threaded):
        assert np.array_equal(ll_s, ll_t) and np.array_equal(g_s, g_t)


def test_all_mass_in_the_defect():
    # T = 0 surely: the density at 0 w.r.t. Lebesgue + unit mass at 0 is the atom, 1.
    graph = Graph.from_matrices([0.0, 0.0], [[-1.0, 1.0], [0.0, -2.0]])
    np.testing.assert_array_equal(graph.pdf([0.0, 1.0]), [1.0, 0.0])
    np.testing.assert_array_equal(graph.cdf([0.0, 1.0]), [1.0, 1.0])
    ll, _, status = loglik(graph, [1.0], np.zeros((1, 0)))
    assert ll[0] == -np.inf and status[0] == Status.ZERO
    ll, _, status = loglik(graph, [0.0, 0.0], np.zeros((1, 0)))
    assert ll[0] == 0.0 and status[0] == Status.OK


@pytest.mark.parametrize("d,seed", [(1, 61), (2, 62), (3, 63)])
def test_forward_and_reverse_modes_agree_with_frechet(d, seed):
    graph = random_graph(12, d, 0.3, seed)
    theta = np.random.default_rng(seed).uniform(0.5, 1.5, size=d)
    data = censored_data()
    info_f, info_r = {}, {}
    ll_f, g_f, _ = loglik(graph, data, theta[None, :], grad=True, gradient_mode="forward", info=info_f)
    ll_r, g_r, _ = loglik(graph, data, theta[None, :], grad=True, gradient_mode="reverse", info=info_r)
    assert info_f["gradient_mode"][0] == 2 and info_r["gradient_mode"][0] == 1
    assert ll_f[0] == ll_r[0]  # same values: only the derivative differs
    np.testing.assert_allclose(g_f, g_r, rtol=1e-10, atol=1e-12 * np.abs(g_r).max())
    exact = Observations(data.exact, data.weights)
    _, g_exact, _ = loglik(graph, exact, theta[None, :], grad=True, gradient_mode="forward")
    np.testing.assert_allclose(g_exact[0], expm_loglik_grad(graph, theta, np.repeat(data.exact, data.weights.astype(int)))[1], rtol=1e-8)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_gradient_through_an_edge_whose_rate_is_zero(mode):
    """At theta_0 = 0 state 1 is unreachable (v = 0 there) yet f depends on
    theta_0: the derivative must still flow through the zero-rate edge."""
    graph = Graph.from_edges([1.0, 0.0], [0, 0, 1], [1, -1, -1], [0.0, 1.0, 2.0], [[1.0], [0.0], [0.0]])
    theta = np.array([0.0])
    times = np.array([0.3, 1.2])
    _, grad, status = loglik(graph, times, theta[None, :], grad=True, gradient_mode=mode)
    assert status[0] == Status.OK
    assert grad[0, 0] == pytest.approx(expm_loglik_grad(graph, theta, times)[1][0], rel=1e-9)
    assert grad[0, 0] != 0.0


def test_prepared_loglik_call_has_the_bits_of_loglik():
    from phasic_mpi.model.native import LoglikCall, Status, loglik

    graph = models.rabbits(2)
    data = Observations(graph.sample(20, [1.0, 2.0, 4.0], seed=8), right_censored=[0.7, 1.9],
                        interval=([0.1, 0.5], [0.3, 2.0]))
    thetas = np.abs(np.random.default_rng(3).normal(1.5, 1.0, (11, 3)))
    thetas[4, 1] = -1.0  # a negative rate: a status, not an error
    call = LoglikCall(graph, data, tol=1e-10)
    for rows in (thetas, thetas[:1], thetas[:0]):
        rows = np.ascontiguousarray(rows)
        got, want = call(rows), loglik(graph, data, rows, grad=True, tol=1e-10)
        for a, b in zip(got, want):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert call(np.ascontiguousarray(thetas))[2][4] == Status.DOMAIN
