"""Posterior and FunctionDensity are row-wise: a block evaluated on its own has
the bits of the whole batch, for every offset and size (what lets SVGD and PT
evaluate a rank's block without an array of the global shape)."""

from __future__ import annotations

import numpy as np
import pytest

from phasic_mpi import Observations, models
from phasic_mpi.inference.posterior import FunctionDensity, Posterior
from phasic_mpi.inference.priors import Exponential, Gamma, HalfNormal, LogNormal, Normal, Uniform


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def special_rows(z, d):
    """Rows that leave the domain: NaN, inf, theta overflowing, a negative rate."""
    z[3] = np.nan
    z[7, 0] = np.inf
    z[11] = 800.0  # exp(z) overflows; logit saturates
    z[12, d - 1] = -800.0
    z[20, 0] = -3.0  # identity transform below: a negative rate for the rabbits model
    return z


def rabbits_posterior():
    graph = models.rabbits(2)
    data = Observations(graph.sample(15, [1.0, 2.0, 4.0], seed=3), right_censored=[1.5])
    # jump: normal on the identity (negative rates possible); logit; log with a closed form
    return Posterior(graph, data, [Normal(1.0, 1.0), Uniform(0.5, 10.0), Gamma(2.0, 1.5)],
                     check_domain=False)


def rowwise_fn(theta):
    """A likelihood computed row by row with elementwise numpy only."""
    value = -0.5 * np.sum(np.log1p(theta * theta), axis=1) + np.exp(-theta[:, 0])
    grad = -theta / (1.0 + theta * theta)
    grad[:, 0] -= np.exp(-theta[:, 0])
    return value, grad


def function_density():
    # 9 columns share one (prior, transform): a pairwise sum over 9 values per row
    priors = [LogNormal(0.0, 1.0)] * 9 + [HalfNormal(2.0), Exponential(0.5), Uniform(-1.0, 3.0),
                                          Normal(0.0, 2.0), Gamma(0.7, 1.0)]
    names = [f"p{k}" for k in range(len(priors))]
    return FunctionDensity(rowwise_fn, names, priors=priors,
                           transforms=["log"] * 9 + [None, None, "logit", "identity", "log"])


@pytest.mark.parametrize("make", [rabbits_posterior, function_density])
def test_every_block_has_the_bits_of_the_whole_batch(make):
    density = make()
    d = density.n_params
    n = 29
    z = special_rows(np.random.default_rng(5).normal(0.3, 1.5, (n, d)), d)
    whole = density.evaluate(z)
    assert whole.invalid[[3, 7, 11]].all() and not whole.invalid.all()
    if d == 3:
        assert whole.invalid[20]
    for start in range(n + 1):
        for stop in range(start, n + 1):
            alone = density.evaluate(z[start:stop].copy())
            picked = density.evaluate(z, rows=slice(start, stop))
            for name in whole._fields:
                want = getattr(whole, name)[start:stop]
                assert same_bits(getattr(alone, name), want), (name, start, stop)
                assert same_bits(getattr(picked, name), want), (name, start, stop)


@pytest.mark.parametrize("make", [rabbits_posterior, function_density])
def test_scattered_rows_and_layouts(make):
    """Index arrays in any order, strided and Fortran-ordered inputs, single rows."""
    density = make()
    d = density.n_params
    z = special_rows(np.random.default_rng(6).normal(0.0, 1.0, (40, d)), d)
    whole = density.evaluate(z)
    rng = np.random.default_rng(7)
    picks = [rng.permutation(40)[:k] for k in (1, 2, 5, 9, 17, 40)] + [np.arange(40)[::3]]
    for rows in picks:
        for block in (z[rows], np.asfortranarray(z[rows])):
            got = density.evaluate(block)
            for name in whole._fields:
                assert same_bits(getattr(got, name), getattr(whole, name)[rows]), (name, rows)
    wide = np.zeros((40, 2 * d))
    wide[:, ::2] = z  # a strided view
    got = density.evaluate(wide[:, ::2])
    for name in whole._fields:
        assert same_bits(getattr(got, name), getattr(whole, name))
    for i in range(40):
        one = density.evaluate(z[i])  # a (d,) point
        assert same_bits(one.logp, whole.logp[i:i + 1]) and same_bits(one.grad, whole.grad[i:i + 1])


def test_densities_declare_rowwise():
    assert rabbits_posterior().rowwise and function_density().rowwise


def general_path(density):
    """The same density with its fused hot path switched off (the reference)."""
    import copy

    ref = copy.copy(density)
    ref._fused = None
    return ref


def mixed_groups_posterior():
    # two columns share (Gamma, Log): fused groups with a column scatter
    return Posterior(models.rabbits(2), [0.4, 1.3, 0.2, 2.5],
                     [Gamma(2.0, 1.5), Exponential(0.7), Gamma(2.0, 1.5)])


def one_group_posterior():
    # one (LogNormal, Log) group over all columns: the no-scatter branch
    return Posterior(models.rabbits(2), [0.4, 1.3, 0.2, 2.5], [LogNormal(0.0, 0.3)] * 3)


@pytest.mark.parametrize("make", [rabbits_posterior, function_density, mixed_groups_posterior,
                                  one_group_posterior])
def test_fused_hot_path_has_the_bits_of_the_general_path(make):
    density = make()
    assert density._fused is not None  # the library's priors and transforms all fuse
    reference = general_path(density)
    d = density.n_params
    rng = np.random.default_rng(17)
    for n in (1, 2, 7, 8, 9, 16, 29):
        for scale in (0.5, 1.5, 6.0):
            z = rng.normal(0.2, scale, (n, d))
            if n == 29:
                z = special_rows(z, d)  # non-finite terms: the fused path hands over
                z[5] = -np.inf  # Log: theta = 0 is finite, the log prior is not
                z[6, d - 1] = np.inf
            got, want = density.evaluate(z), reference.evaluate(z)
            for field, a, b in zip(want._fields, got, want):
                assert same_bits(a, b), (make.__name__, n, scale, field)
    assert density.n_evaluations == reference.n_evaluations


def test_fused_hot_path_is_taken_and_hands_over_on_non_finite_terms(monkeypatch):
    density = one_group_posterior()
    seen = []
    fused = density._evaluate_fused
    monkeypatch.setattr(density, "_evaluate_fused", lambda z: seen.append(fused(z)) or seen[-1])
    density.evaluate(np.zeros((8, 3)))
    density.evaluate(np.array([[0.0, 0.0, 800.0]] * 8))  # exp overflows: the general path decides
    assert seen[0] is not None and seen[1] is None


def test_user_transform_or_prior_subclass_takes_the_general_path():
    class Shifted(LogNormal):
        pass

    density = Posterior(models.rabbits(2), [0.4, 1.3], [LogNormal(0.0, 1.0), Shifted(0.0, 1.0),
                                                        LogNormal(0.0, 1.0)])
    assert density._fused is None


def test_a_function_density_cannot_spoil_the_jacobian_by_writing_theta():
    def writes(theta):
        value, grad = (-(theta ** 2)).sum(axis=1), -2.0 * theta
        theta[:] = 123.0  # the general path hands it a copy: so must the hot path
        return value, grad

    def clean(theta):
        return (-(theta ** 2)).sum(axis=1), -2.0 * theta

    priors = [LogNormal(0.0, 1.0)] * 2
    z = np.random.default_rng(2).normal(size=(8, 2))
    got = FunctionDensity(writes, ["a", "b"], priors=priors).evaluate(z)
    want = FunctionDensity(clean, ["a", "b"], priors=priors).evaluate(z)
    assert all(same_bits(a, b) for a, b in zip(got, want))
