"""Site frequency spectra: expectations, the two-deme model, simulation and the
SFS / moment likelihood terms.

Oracles: the standard coalescent's E[xi_i] = theta_mut / (i coal_rate);
dense inverses U = (-S)^-1 (numpy) for the two-deme model and for variances;
lumping the two-deme block-counting chain onto isolation_migration; scipy's
Poisson, multinomial and normal log-pmfs/pdfs on those expectations; central
finite differences for every gradient; the simulator's sample mean and
variance against the exact mean and variance of the genealogy-and-mutation
process.
"""

import numpy as np
import pytest
from scipy import stats

from phasic_mpi.model import models
from phasic_mpi.model.sfs import SFSData, expected_sfs, fold_matrix, simulate_sfs
from phasic_mpi.model.terms import MomentData


def dense_mean_and_var(graph, theta, R):
    """E[Y_a] = alpha U r_a and Var[Y_a] = 2 alpha U D_a U r_a - E^2 (dense U)."""
    alpha, S, _ = graph.to_matrices(theta)
    U = np.linalg.inv(-S)
    mean = alpha @ U @ R
    second = np.array([2 * alpha @ U @ np.diag(R[:, a]) @ U @ R[:, a]
                       for a in range(R.shape[1])])
    return mean, second - mean**2


def central_difference(fn, theta, h=1e-6):
    """d fn / d theta (fn maps (d,) to a float) by central differences, relative steps."""
    theta = np.asarray(theta, dtype=np.float64)
    out = np.empty(theta.size)
    for k in range(theta.size):
        step = h * max(1.0, abs(theta[k]))
        up, down = theta.copy(), theta.copy()
        up[k] += step
        down[k] -= step
        out[k] = (fn(up) - fn(down)) / (2 * step)
    return out


def term_value(term):
    return lambda theta: float(term.loglik_and_grad(theta[None, :])[0][0])


# ----------------------------------------------------------------- expectations
@pytest.mark.parametrize("n", [2, 3, 5, 8])
@pytest.mark.parametrize("coal_rate, theta_mut", [(1.0, 1.0), (0.7, 3.5)])
def test_expected_sfs_standard_coalescent(n, coal_rate, theta_mut):
    g = models.block_counting(n)
    i = np.arange(1, n)
    closed = theta_mut / (i * coal_rate)
    np.testing.assert_allclose(expected_sfs(g, [coal_rate], theta_mut), closed, rtol=1e-12)
    np.testing.assert_allclose(expected_sfs(g, [coal_rate], theta_mut, folded=True),
                               closed @ fold_matrix(n), rtol=1e-12)


def test_fold_matrix():
    np.testing.assert_array_equal(fold_matrix(5), [[1, 0], [0, 1], [0, 1], [1, 0]])
    np.testing.assert_array_equal(fold_matrix(4), [[1, 0], [0, 1], [1, 0]])
    np.testing.assert_array_equal(fold_matrix(2), [[1]])
    with pytest.raises(ValueError, match="n must be"):
        fold_matrix(1)


def test_structured_block_counting_states_and_lumping():
    g = models.structured_block_counting(2, 2)
    assert g.n_states == 18
    theta = np.array([1.3, 0.6, 0.8, 2.1])
    R = models.sfs_rewards(g)
    mean, _ = dense_mean_and_var(g, theta, R)
    np.testing.assert_allclose(expected_sfs(g, theta, 2.0), mean, rtol=1e-12)
    # lumping by lineages per deme gives isolation_migration: same T_MRCA and
    # total branch length sum_i L_i = int (a + b) dt
    im = models.isolation_migration(2, 2)
    lineages = np.array(im.states, dtype=float).sum(axis=1)
    np.testing.assert_allclose(g.expectation(theta), im.expectation(theta), rtol=1e-12)
    np.testing.assert_allclose(mean.sum(), im.expectation(theta, lineages), rtol=1e-12)
    assert models.MODELS["structured_block_counting"][0] is models.structured_block_counting


def test_structured_matches_standard_when_demes_are_one():
    """Equal coalescence and very fast migration: the standard coalescent's
    SFS with coal_rate halved (lineages spread evenly over two demes)."""
    g = models.structured_block_counting(3, 2)
    mean = expected_sfs(g, [1.0, 1.0, 1e5, 1e5], 2.0)
    np.testing.assert_allclose(mean, 2.0 / (np.arange(1, 5) * 0.5), rtol=1e-3)


# ------------------------------------------------------------------ simulation
def test_simulate_sfs_mean_and_variance():
    """Per locus, xi_i | L ~ Poisson(theta_mut/2 L_i), so E[xi_i] = theta_mut/2 E[L_i]
    and Var[xi_i] = theta_mut/2 E[L_i] + (theta_mut/2)^2 Var[L_i] (dense U).
    With 40 000 loci the class means lie within 4.5 standard errors (two-sided
    p = 7e-6 per class) and the variances within 5 of their own estimated
    standard errors sqrt((m4 - s^4) / n) -- and the seed is fixed."""
    n, coal_rate, theta_mut, loci = 6, 1.4, 3.0, 40_000
    g = models.block_counting(n)
    xi = simulate_sfs(g, [coal_rate], theta_mut, loci, seed=11, per_locus=True)
    assert xi.shape == (loci, n - 1) and xi.dtype == np.int64
    mean_L, var_L = dense_mean_and_var(g, [coal_rate], models.sfs_rewards(g))
    np.testing.assert_allclose(mean_L, 2 / (np.arange(1, n) * coal_rate), rtol=1e-12)
    mu = theta_mut / 2 * mean_L
    var = mu + (theta_mut / 2) ** 2 * var_L
    assert np.all(np.abs(xi.mean(axis=0) - mu) < 4.5 * np.sqrt(var / loci))
    centred = xi - xi.mean(axis=0)
    sample_var = (centred**2).mean(axis=0)
    se_var = np.sqrt(((centred**4).mean(axis=0) - sample_var**2) / loci)
    assert np.all(np.abs(sample_var - var) < 5 * se_var)
    # overdispersion of linked sites: clearly above the Poisson variance
    assert np.all(sample_var[:2] > 1.5 * mu[:2])


def test_simulate_sfs_two_demes_mean():
    g = models.structured_block_counting(2, 3)
    theta, theta_mut, loci = [1.0, 2.0, 0.5, 1.5], 2.0, 30_000
    xi = simulate_sfs(g, theta, theta_mut, loci, seed=5, per_locus=True)
    mean_L, var_L = dense_mean_and_var(g, theta, models.sfs_rewards(g))
    mu = theta_mut / 2 * mean_L
    var = mu + (theta_mut / 2) ** 2 * var_L
    assert np.all(np.abs(xi.mean(axis=0) - mu) < 4.5 * np.sqrt(var / loci))


def test_simulate_sfs_reproducible_and_folded():
    g = models.block_counting(5)
    a = simulate_sfs(g, [1.0], 4.0, 50, seed=3, per_locus=True)
    np.testing.assert_array_equal(a, simulate_sfs(g, [1.0], 4.0, 50, seed=3, per_locus=True))
    assert not np.array_equal(a, simulate_sfs(g, [1.0], 4.0, 50, seed=4, per_locus=True))
    np.testing.assert_array_equal(simulate_sfs(g, [1.0], 4.0, 50, seed=3), a.sum(axis=0))
    np.testing.assert_array_equal(simulate_sfs(g, [1.0], 4.0, 50, seed=3, folded=True),
                                  a.sum(axis=0) @ fold_matrix(5).astype(int))
    with pytest.raises(ValueError, match="theta_mut"):
        simulate_sfs(g, [1.0], 0.0)


# ------------------------------------------------------------------ SFS term
@pytest.mark.parametrize("folded", [False, True])
def test_poisson_term_against_scipy(folded):
    n, loci = 7, 3
    g = models.block_counting(n)
    counts = np.array([9, 4, 4, 1, 2, 0])
    counts = counts @ fold_matrix(n) if folded else counts
    term = SFSData(g, counts, folded=folded, n_loci=loci)
    assert term.param_names == ("coal_rate", "theta_mut")
    thetas = np.array([[1.0, 2.0], [0.5, 7.0], [2.5, 0.3]])
    value, grad = term.loglik_and_grad(thetas)
    for p, (c, mut) in enumerate(thetas):
        lam = loci * mut / (np.arange(1, n) * c)
        lam = lam @ fold_matrix(n) if folded else lam
        assert value[p] == pytest.approx(stats.poisson.logpmf(counts, lam).sum(), rel=1e-12)
        np.testing.assert_allclose(grad[p], central_difference(term_value(term), thetas[p]),
                                   rtol=1e-6)


def test_poisson_term_fixed_theta_mut_and_two_demes():
    g = models.structured_block_counting(2, 2)
    counts = [5, 2, 1]
    term = SFSData(g, counts, theta_mut=1.5)
    assert term.param_names == g.param_names
    theta = np.array([1.3, 0.6, 0.8, 2.1])
    mean, _ = dense_mean_and_var(g, theta, models.sfs_rewards(g))
    value, grad = term.loglik_and_grad(theta)
    assert value[0] == pytest.approx(stats.poisson.logpmf(counts, 0.75 * mean).sum(),
                                     rel=1e-12)
    np.testing.assert_allclose(grad[0], central_difference(term_value(term), theta),
                               rtol=1e-6)


def test_multinomial_term_against_scipy():
    g = models.structured_block_counting(2, 2)
    counts = np.array([[3, 1, 1], [2, 2, 0]])  # two loci, summed
    term = SFSData(g, counts, likelihood="multinomial")
    assert term.n_loci == 2 and term.param_names == g.param_names
    theta = np.array([1.3, 0.6, 0.8, 2.1])
    mean, _ = dense_mean_and_var(g, theta, models.sfs_rewards(g))
    value, grad = term.loglik_and_grad(theta)
    expected = stats.multinomial.logpmf(counts.sum(axis=0), 9, mean / mean.sum())
    assert value[0] == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad[0], central_difference(term_value(term), theta),
                               rtol=1e-6, atol=1e-9)
    # the standard coalescent's class probabilities (1/i) / H do not depend on coal_rate
    bc = SFSData(models.block_counting(4), [3, 1, 1], likelihood="multinomial")
    v, gr = bc.loglik_and_grad([[0.5], [2.0]])
    p = 1 / np.arange(1, 4)
    assert v[0] == pytest.approx(stats.multinomial.logpmf([3, 1, 1], 5, p / p.sum()))
    np.testing.assert_allclose(gr, 0.0, atol=1e-10)


def test_sfs_term_invalid_rows_and_errors():
    g = models.block_counting(4)
    value, grad = SFSData(g, [1, 0, 2]).loglik_and_grad([[-1.0, 2.0], [1.0, -2.0]])
    assert np.all(value == -np.inf) and np.all(grad == 0)
    with pytest.raises(ValueError, match="3 classes"):
        SFSData(g, [1, 2])
    with pytest.raises(ValueError, match="non-negative integers"):
        SFSData(g, [1, 0.5, 2])
    with pytest.raises(ValueError, match="does not depend"):
        SFSData(g, [1, 0, 2], likelihood="multinomial", theta_mut=1.0)
    with pytest.raises(ValueError, match="also a parameter"):
        SFSData(g, [1, 0, 2], theta_mut_name="coal_rate")
    with pytest.raises(ValueError, match="rows"):
        SFSData(g, [[1, 0, 2]], n_loci=3)


# ------------------------------------------------------------------ moment term
def test_moment_term_against_closed_forms():
    g = models.exponential()
    thetas = np.array([[2.0], [0.7]])
    mean = MomentData(g, 0.6, 0.05)
    var = MomentData(g, 0.3, 0.1, kind="variance")
    for term, model in ((mean, 1 / thetas[:, 0]), (var, 1 / thetas[:, 0] ** 2)):
        value, grad = term.loglik_and_grad(thetas)
        np.testing.assert_allclose(value, stats.norm.logpdf(term.value[0], model,
                                                            term.se[0]), rtol=1e-12)
        for p in range(2):
            np.testing.assert_allclose(grad[p], central_difference(term_value(term),
                                                                   thetas[p]), rtol=1e-6)


def test_moment_term_rewards_cyclic_model():
    """Rabbits (cyclic, LU path): E[T] of oracles.md and a reward vector (dense U)."""
    g = models.rabbits(2)
    theta = np.array([1.0, 2.0, 4.0])
    right = np.array(g.states, dtype=float)[:, 1]
    R = np.column_stack([np.ones(g.n_states), right])
    term = MomentData(g, [0.45, 0.1], [0.02, 0.01], rewards=R)
    value, grad = term.loglik_and_grad(theta)
    model = dense_mean_and_var(g, theta, R)[0]
    assert model[0] == pytest.approx(0.5083056478405316, rel=1e-12)
    assert value[0] == pytest.approx(stats.norm.logpdf([0.45, 0.1], model,
                                                       [0.02, 0.01]).sum(), rel=1e-12)
    np.testing.assert_allclose(grad[0], central_difference(term_value(term), theta),
                               rtol=1e-6)
    bad, bad_grad = term.loglik_and_grad([[1.0, -2.0, 4.0]])
    assert bad[0] == -np.inf and np.all(bad_grad == 0)
    with pytest.raises(ValueError, match="standard errors"):
        MomentData(g, 0.5, 0.0)
    with pytest.raises(ValueError, match="kind"):
        MomentData(g, 0.5, 0.1, kind="skewness")


def test_sample_reward_matrix_follows_the_paths_of_each_column():
    """A reward matrix accumulates along the paths the single vectors see
    (the same seed draws the same holding times and jumps)."""
    g = models.structured_block_counting(2, 1)
    R = models.sfs_rewards(g)
    theta = [1.0, 0.5, 0.3, 0.8]
    both = g.sample(200, theta, seed=4, rewards=R)
    assert both.shape == (200, 2)
    for a in range(2):
        np.testing.assert_array_equal(both[:, a], g.sample(200, theta, seed=4, rewards=R[:, a]))
