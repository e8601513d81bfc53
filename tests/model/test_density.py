"""PDF / CDF / PMF of libphase against independent oracles.

Oracles: ``scipy.linalg.expm`` on the dense sub-intensity matrix, matrix
powers for discrete graphs, exact rational series and closed forms for far
tails, and the tables of shared/oracles.md.
"""

from fractions import Fraction
import math

import numpy as np
import pytest
from scipy.linalg import expm

from phasic_mpi import Graph, models
from randgraph import random_graph


def expm_pdf_cdf(graph, theta, times):
    alpha, S, s = graph.to_matrices(theta)
    f = np.array([alpha @ expm(S * t) @ s for t in times])
    F = np.array([1.0 - alpha @ expm(S * t) @ np.ones(len(alpha)) for t in times])
    return f, F


@pytest.mark.parametrize("n,d,density,seed", [(3, 1, 0.5, 1), (8, 2, 0.4, 2), (25, 3, 0.2, 3), (60, 2, 0.08, 4)])
def test_random_cyclic_against_expm(n, d, density, seed):
    graph = random_graph(n, d, density, seed)
    rng = np.random.default_rng(seed)
    theta = rng.uniform(0.3, 2.0, size=d)
    mean = graph.expectation(theta)
    times = np.concatenate([[0.0], np.linspace(0.01, 6 * mean, 40)])
    f_ref, F_ref = expm_pdf_cdf(graph, theta, times)
    # With a defect, the density at 0 (w.r.t. Lebesgue + unit mass at 0) is the atom.
    assert graph.defect > 0.01
    f_ref[0] = graph.defect
    f = graph.pdf(times, theta)
    F = graph.cdf(times, theta)
    S = graph.survival(times, theta)
    significant = f_ref > 1e-12 * f_ref.max()
    assert significant.sum() > 30
    np.testing.assert_allclose(f[significant], f_ref[significant], rtol=1e-10, atol=0)
    np.testing.assert_allclose(F, F_ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(S[F_ref < 0.9], 1 - F_ref[F_ref < 0.9], rtol=1e-10)
    # log versions agree with the logs of the values
    np.testing.assert_allclose(graph.logpdf(times[significant], theta), np.log(f_ref[significant]), rtol=1e-10, atol=1e-12)


def test_batched_thetas_equal_single_calls_bitwise():
    graph = random_graph(12, 3, 0.3, seed=7)
    thetas = np.random.default_rng(0).uniform(0.5, 2, size=(5, 3))
    times = np.linspace(0, 4, 17)
    batch = graph.pdf(times, thetas)
    assert batch.shape == (5, 17)
    for p in range(5):
        assert np.array_equal(batch[p], graph.pdf(times, thetas[p]))


def kingman_log_tail(n, theta, t):
    """log f(t) of the Kingman TMRCA for large t: the slowest phase dominates.

    f(t) = sum_k c_k l_k exp(-l_k t) (hypoexponential, l_k = theta k(k-1)/2);
    at t >= 50/theta the k >= 3 terms are below exp(-100) relative.
    """
    rates = [Fraction(k * (k - 1), 2) for k in range(2, n + 1)]
    c2 = Fraction(1)
    for lam in rates[1:]:
        c2 *= lam / (lam - rates[0])
    return math.log(c2 * rates[0]) + math.log(theta) - theta * t


@pytest.mark.parametrize("t", [50.0, 200.0, 700.0, 5000.0])
def test_far_right_tail_log_density(t):
    graph = models.kingman(10)
    theta = 1.0
    value = graph.logpdf([t], [theta])[0]
    assert np.isfinite(value)
    assert value == pytest.approx(kingman_log_tail(10, theta, t), rel=1e-12)
    # log survival in the same tail: S(t) = f(t) / theta for the slowest phase
    assert graph.logsurvival([t], [theta])[0] == pytest.approx(
        kingman_log_tail(10, theta, t) - math.log(theta), rel=1e-12
    )


def kingman_log_head(n, t):
    """log f(t) at small t (theta = 1) from the exact Taylor series in rationals.

    f(t) = sum_k t^k / k! alpha S^k s; for the chain the first n - 2 terms
    vanish and the rest are summed exactly until they are negligible.
    """
    rates = [Fraction(k * (k - 1), 2) for k in range(n, 1, -1)]  # state i has k = n - i
    m = len(rates)
    v = [Fraction(0)] * m
    v[0] = Fraction(1)
    total = Fraction(0)
    tq = Fraction(t).limit_denominator(10**12)
    assert float(tq) == t
    term_scale = Fraction(1)
    for k in range(0, n + 80):
        a = v[-1] * rates[-1]  # exit from the last state
        total += term_scale * a
        # v <- v S
        new = [Fraction(0)] * m
        for i in range(m):
            new[i] -= v[i] * rates[i]
            if i + 1 < m:
                new[i + 1] += v[i] * rates[i]
        v = new
        term_scale = term_scale * tq / (k + 1)
    return math.log(total.numerator) - math.log(total.denominator)


@pytest.mark.parametrize("t", [1e-3, 5e-3, 2e-2])
def test_far_left_tail_log_density(t):
    n = 30
    graph = models.kingman(n)
    value = graph.logpdf([t], [1.0])[0]
    assert np.isfinite(value)
    assert value == pytest.approx(kingman_log_head(n, t), rel=1e-11)


def test_kingman_oracle_table():
    table = {
        2: [0.6065306597, 0.3678794412, 0.2231301601],
        3: [0.5751007493, 0.4771385592, 0.3180317454],
        4: [0.4821091891, 0.5157962916, 0.3684553904],
        5: [0.4013375903, 0.5297895602, 0.3990203460],
        10: [0.2047220851, 0.5256929185, 0.4583102081],
    }
    for n, values in table.items():
        f = models.kingman(n).pdf([0.5, 1.0, 1.5], [1.0])
        np.testing.assert_allclose(f, values, rtol=0, atol=5e-11)  # table has 10 decimals


def fixed_rabbits():
    """Rabbits of oracles.md with fixed rates: jumps at 1 per island, floods 2 and 4."""

    def transitions(state):
        left, right = state
        out = []
        if left > 0:
            out += [((left - 1, right + 1), 1.0, []), ((0, right), 2.0, [])]
        if right > 0:
            out += [((left + 1, right - 1), 1.0, []), ((left, 0), 4.0, [])]
        return out

    return Graph.from_callback(transitions, (2, 0), 0)


def test_fixed_rabbits_oracle_table():
    graph = fixed_rabbits()
    np.testing.assert_allclose(graph.pdf([0.5, 1, 2]), [0.7630895194, 0.2948140771, 0.0330010293], atol=5e-11, rtol=0)
    np.testing.assert_allclose(graph.cdf([0.5, 1, 2]), [0.6146773575, 0.8639281222, 0.9859084534], atol=5e-11, rtol=0)


def test_parameterized_rabbits_oracle_table():
    graph = models.rabbits(2)
    f = graph.pdf([0.5, 1.0, 2.0], [1, 2, 4])
    np.testing.assert_allclose(f, [0.792306495213, 0.308695694599, 0.030444025387], rtol=0, atol=5e-13)


@pytest.mark.parametrize("seed", [11, 12])
def test_discrete_against_matrix_powers(seed):
    graph = random_graph(10, 2, 0.3, seed, discrete=True)
    theta = np.array([0.4, 0.7])
    alpha, T, t = graph.to_matrices(theta)
    ks = np.arange(0, 40)
    pmf_ref = np.array([1 - alpha.sum() if k == 0 else alpha @ np.linalg.matrix_power(T, k - 1) @ t for k in ks])
    cdf_ref = np.array([1 - alpha @ np.linalg.matrix_power(T, k) @ np.ones(len(alpha)) for k in ks])
    np.testing.assert_allclose(graph.pmf(ks, theta), pmf_ref, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(graph.cdf(ks, theta), cdf_ref, rtol=1e-12, atol=1e-15)


def test_geometric_and_defective_discrete_oracles():
    geometric = models.geometric() if hasattr(models, "geometric") else Graph.from_matrices([1.0], [[0.5]], discrete=True)
    theta = [0.5] if geometric.n_params else None
    np.testing.assert_allclose(geometric.pmf(np.arange(5), theta), [0, 0.5, 0.25, 0.125, 0.0625], rtol=1e-15)
    defective = Graph.from_matrices([0.75, 0.0], [[0.2, 0.8], [0.0, 0.3]], discrete=True)
    np.testing.assert_allclose(defective.pmf(np.arange(4)), [0.25, 0, 0.42, 0.21], rtol=1e-14, atol=1e-16)


def test_wrong_kind_and_bad_points_are_clear_errors():
    continuous = models.exponential()
    with pytest.raises(ValueError, match="pmf"):
        continuous.pmf([1], [1.0])
    with pytest.raises(ValueError, match=r"points\[1\] = -1"):
        continuous.pdf([0.5, -1.0], [1.0])
    with pytest.raises(ValueError, match="theta must have shape"):
        continuous.pdf([0.5], [1.0, 2.0])
    discrete = Graph.from_matrices([1.0], [[0.5]], discrete=True)
    with pytest.raises(ValueError, match="non-negative integer"):
        discrete.pmf([1.5])


def test_negative_rate_is_a_domain_error_naming_the_edge():
    graph = models.rabbits(2)
    with pytest.raises(ValueError, match=r"theta\[0\].*rate -1"):
        graph.pdf([1.0], [1.0, -1.0, 4.0])
