"""Likelihood terms evaluated over rows: layout-independent bits, pointwise values.

A term is vectorised over rows (θ points); a rank evaluates its own block of
the global particle array, so every block of every rank layout must give
the bits of the whole batch. Pointwise values are checked against scipy's
Poisson, multinomial and normal log-densities on closed-form expectations
(E[xi_i] = theta_mut / (i coal_rate) for the standard coalescent, E[T] = 1/rate
and Var[T] = 1/rate^2 for the exponential).
"""

import numpy as np
import pytest
from scipy import stats

from phasic_mpi.model import models
from phasic_mpi.model.sfs import SFSData, fold_matrix
from phasic_mpi.model.terms import MomentData, ordered_sum

N = 7  # block-counting samples


def _terms():
    bc = models.block_counting(N)
    counts = np.array([9, 4, 4, 1, 2, 0])
    rewards = models.sfs_rewards(bc)
    return {
        "poisson, theta_mut a parameter": SFSData(bc, counts, n_loci=3),
        "poisson, folded, theta_mut fixed": SFSData(bc, counts @ fold_matrix(N), folded=True,
                                                    theta_mut=1.7),
        "multinomial": SFSData(bc, counts, likelihood="multinomial"),
        "mean, rewards": MomentData(bc, 2.0 / np.arange(1, N), 0.1, rewards=rewards),
        "variance": MomentData(models.exponential(), 0.3, 0.1, kind="variance"),
    }


def _thetas(term, n_rows, seed=0):
    """Random rows, a few of them outside the domain (a negative rate)."""
    rng = np.random.default_rng(seed)
    theta = np.exp(rng.normal(0.0, 0.7, (n_rows, len(term.param_names))))
    theta[::9, 0] *= -1.0
    return theta


def _blocks(n_rows, n_ranks):
    """Contiguous blocks of sizes differing by at most 1 (the particle layout)."""
    bounds = np.cumsum([0] + [n_rows // n_ranks + (r < n_rows % n_ranks)
                              for r in range(n_ranks)])
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("name", list(_terms()))
def test_every_rank_layout_gives_the_bits_of_the_whole_batch(name):
    term = _terms()[name]
    for n_rows in (1, 7, 37, 64):
        theta = _thetas(term, n_rows)
        value, grad = term.loglik_and_grad(theta)
        assert np.isfinite(value).sum() >= n_rows - (n_rows + 8) // 9
        assert np.all(value[::9] == -np.inf) and np.all(grad[::9] == 0)
        for n_ranks in (2, 3, 5, 16):
            for rows in _blocks(n_rows, n_ranks):
                part_value, part_grad = term.loglik_and_grad(theta[rows])
                assert part_value.tobytes() == value[rows].tobytes(), (name, n_rows, n_ranks)
                assert part_grad.tobytes() == grad[rows].tobytes(), (name, n_rows, n_ranks)


@pytest.mark.parametrize("name", list(_terms()))
def test_pointwise_values_sum_to_the_term(name):
    term = _terms()[name]
    theta = _thetas(term, 20, seed=1)
    value, _ = term.loglik_and_grad(theta)
    pointwise = term.pointwise(theta)
    finite = np.isfinite(value)
    assert np.all(np.isneginf(pointwise[~finite]))
    np.testing.assert_allclose(pointwise[finite].sum(axis=1), value[finite], rtol=1e-12)


def test_pointwise_against_scipy():
    terms = _terms()
    i = np.arange(1, N)
    theta = np.array([[1.3, 0.8], [0.4, 2.5]])
    poisson = terms["poisson, theta_mut a parameter"]
    for p, (c, mut) in enumerate(theta):
        np.testing.assert_allclose(poisson.pointwise(theta)[p],
                                   stats.poisson.logpmf(poisson.counts, 3 * mut / (i * c)),
                                   rtol=1e-12)
    folded = terms["poisson, folded, theta_mut fixed"]
    lam = (1.7 / (i * 0.6)) @ fold_matrix(N)
    np.testing.assert_allclose(folded.pointwise([[0.6]])[0],
                               stats.poisson.logpmf(folded.counts, lam), rtol=1e-12)
    multi = terms["multinomial"]  # one value per spectrum, free of coal_rate
    expected = stats.multinomial.logpmf(multi.counts, multi.counts.sum(), (1 / i) / (1 / i).sum())
    np.testing.assert_allclose(multi.pointwise([[0.6], [2.0]]), [[expected], [expected]],
                               rtol=1e-12)
    mean = terms["mean, rewards"]
    np.testing.assert_allclose(mean.pointwise([[0.8]])[0],
                               stats.norm.logpdf(2.0 / i, 2.0 / (i * 0.8), 0.1), rtol=1e-12)
    var = terms["variance"]
    np.testing.assert_allclose(var.pointwise([[2.0], [0.7]])[:, 0],
                               stats.norm.logpdf(0.3, 1 / np.array([2.0, 0.7]) ** 2, 0.1),
                               rtol=1e-12)


def test_ordered_sum_adds_columns_in_order():
    a = np.array([[1e16, 1.0, -1e16, 1.0]])  # (1e16 + 1) - 1e16 + 1 = 1 in this order
    assert ordered_sum(a)[0] == ((1e16 + 1.0) - 1e16) + 1.0
    b = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(ordered_sum(b), b.sum(axis=1))
