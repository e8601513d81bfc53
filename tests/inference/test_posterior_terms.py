"""Posterior with extra likelihood terms (SFS, observed moments).

Oracles: scipy's exponential, Poisson and normal log-densities on closed-form
expectations; central finite differences of the log posterior in z; the
posterior without terms must give the same bits as before.
"""

import numpy as np
import pytest
from scipy import stats

from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.model import models
from phasic_mpi.model.sfs import SFSData
from phasic_mpi.model.terms import MomentData

Z = np.array([[0.1, 1.2], [-0.4, 0.5], [0.8, 2.0], [0.0, 0.0], [1.5, -0.3]])


def test_no_terms_gives_the_same_bits():
    g = models.exponential()
    z = np.linspace(-2, 2, 7)[:, None]
    plain = Posterior(g, [0.3, 1.1, 2.0], [Gamma(2.0, 1.0)]).evaluate(z)
    empty = Posterior(g, [0.3, 1.1, 2.0], [Gamma(2.0, 1.0)], terms=[]).evaluate(z)
    for a, b in zip(plain, empty):
        np.testing.assert_array_equal(a, b)


def sfs_posterior():
    """Kingman TMRCA times plus an SFS (theta_mut a parameter) plus an observed mean."""
    times = [0.8, 1.9, 1.1, 3.0]
    bc = models.block_counting(4)
    terms = [SFSData(bc, [7, 2, 3], n_loci=2), MomentData(models.kingman(4), 1.4, 0.2)]
    priors = {"coal_rate": Gamma(2.0, 2.0), "theta_mut": LogNormal(1.0, 1.0)}
    return Posterior(models.kingman(4), times, priors, terms=terms), times


def hypoexponential_pdf(t, rates):
    """Density of a sum of exponentials with distinct rates (Kingman's TMRCA)."""
    out = np.zeros_like(t)
    for i, li in enumerate(rates):
        others = np.delete(rates, i)
        out += li * np.prod(others / (others - li)) * np.exp(-li * t)
    return out


def test_terms_add_to_the_likelihood():
    post, times = sfs_posterior()
    assert post.param_names == ("coal_rate", "theta_mut")
    ev = post.evaluate(Z)
    theta = np.exp(Z)
    for p, (c, mut) in enumerate(theta):
        times_ll = np.log(hypoexponential_pdf(np.array(times), c * np.array([6.0, 3.0, 1.0]))).sum()
        sfs = stats.poisson.logpmf([7, 2, 3], 2 * mut / (np.arange(1, 4) * c)).sum()
        moment = stats.norm.logpdf(1.4, 2 * (1 - 1 / 4) / c, 0.2)
        assert ev.loglik[p] == pytest.approx(times_ll + sfs + moment, rel=1e-12)


def test_terms_gradient_in_z():
    post, _ = sfs_posterior()
    ev = post.evaluate(Z)
    h = 1e-6
    for k in range(2):
        step = np.zeros(2)
        step[k] = h
        fd = (post.evaluate(Z + step).logp - post.evaluate(Z - step).logp) / (2 * h)
        np.testing.assert_allclose(ev.grad[:, k], fd, rtol=1e-6, atol=1e-6)


def test_terms_rows_give_the_bits_of_the_whole_batch():
    post, _ = sfs_posterior()
    whole = post.evaluate(Z)
    for rows in (slice(1, 4), [4, 0], slice(2, 3)):
        part = post.evaluate(Z, rows=rows)
        for a, b in zip(part, whole):
            np.testing.assert_array_equal(a, b[rows])


def test_terms_need_priors_for_new_parameters():
    bc = models.block_counting(4)
    with pytest.raises(ValueError, match="theta_mut"):
        Posterior(bc, [], [Gamma(2.0, 1.0)], terms=[SFSData(bc, [1, 1, 1])])
    with pytest.raises(TypeError, match="loglik_and_grad"):
        Posterior(bc, [], [Gamma(2.0, 1.0)], terms=[object()])


def test_sfs_only_posterior_invalid_rows():
    bc = models.block_counting(4)
    post = Posterior(bc, [], [Gamma(2.0, 1.0)], terms=[SFSData(bc, [3, 1, 2], theta_mut=2.0)])
    ev = post.evaluate([[0.0], [np.inf]])
    assert np.isfinite(ev.loglik[0]) and ev.invalid.tolist() == [False, True]
    lam = 2.0 / np.arange(1, 4)
    assert ev.loglik[0] == pytest.approx(stats.poisson.logpmf([3, 1, 2], lam).sum(),
                                         rel=1e-12)
