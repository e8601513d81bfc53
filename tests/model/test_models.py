"""Built-in models: state spaces, rates, parameter names and closed forms."""

from functools import cache

import numpy as np
import pytest
from pyrun import run_python

from phasic_mpi import models
from phasic_mpi.model.graph import Graph


@cache
def partitions(n, largest=None):
    """Number of integer partitions of n with parts <= largest."""
    largest = n if largest is None else largest
    if n == 0:
        return 1
    return sum(partitions(n - k, k) for k in range(1, min(n, largest) + 1))


def test_exponential_and_erlang():
    g = models.exponential()
    assert g.n_states == 1 and g.param_names == ("rate",)
    np.testing.assert_array_equal(g.to_matrices([3.0])[1], [[-3.0]])
    e = models.erlang(3)
    assert e.states == ((3,), (2,), (1,))
    _, S, s = e.to_matrices([2.0])
    np.testing.assert_array_equal(S, [[-2, 2, 0], [0, -2, 2], [0, 0, -2]])
    np.testing.assert_array_equal(s, [0, 0, 2])


def test_kingman_rates():
    g = models.kingman(4)
    assert g.states == ((4,), (3,), (2,)) and g.param_names == ("coal_rate",)
    _, S, s = g.to_matrices([2.0])
    np.testing.assert_array_equal(np.diag(S), [-12.0, -6.0, -2.0])
    np.testing.assert_array_equal(s, [0.0, 0.0, 2.0])
    np.testing.assert_array_equal(g.alpha, [1.0, 0.0, 0.0])


@pytest.mark.parametrize("n, expected", [(2, 1), (4, 4), (6, 10), (10, 41)])
def test_block_counting_state_count(n, expected):
    g = models.block_counting(n)
    assert g.n_states == expected == partitions(n) - 1
    assert all(sum(i * c for i, c in enumerate(s, start=1)) == n for s in g.states)


def test_block_counting_rates_n4():
    g = models.block_counting(4)
    assert g.states == ((4, 0, 0), (2, 1, 0), (0, 2, 0), (1, 0, 1))
    _, S, s = g.to_matrices([1.0])
    expected = np.array([[-6, 6, 0, 0], [0, -3, 1, 2], [0, 0, -1, 0], [0, 0, 0, -1]])
    np.testing.assert_array_equal(S, expected)
    np.testing.assert_array_equal(s, [0, 0, 1, 1])


@pytest.mark.parametrize("n", [4, 10])
@pytest.mark.parametrize("theta", [1.0, 0.4])
def test_block_counting_sfs_expectations(n, theta):
    g = models.block_counting(n)
    rewards = models.sfs_rewards(g)
    assert rewards.shape == (g.n_states, n - 1)
    np.testing.assert_allclose(g.expectation([theta], rewards),
                               2 / (np.arange(1, n) * theta), rtol=1e-12)
    assert g.expectation([theta]) == pytest.approx(2 * (1 - 1 / n) / theta, rel=1e-12)


def test_sfs_rewards_rejects_other_graphs():
    with pytest.raises(ValueError, match="not block counts"):
        models.sfs_rewards(models.kingman(3))
    with pytest.raises(ValueError, match="needs a graph with state labels"):
        models.sfs_rewards(Graph([1.0], [0], [-1], [1.0]))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_rabbits_state_space(n):
    g = models.rabbits(n)
    assert g.n_states == (n + 1) * (n + 2) // 2 - 1
    assert set(g.states) == {(a, b) for a in range(n + 1) for b in range(n + 1 - a)} - {(0, 0)}
    assert g.states[0] == (n, 0) and g.param_names == ("jump", "flood_left", "flood_right")


def test_rabbits_rates():
    g = models.rabbits(2)
    theta = np.array([1.5, 2.0, 4.0])
    index = {s: i for i, s in enumerate(g.states)}
    _, S, s = g.to_matrices(theta)
    i = index[(1, 1)]
    assert S[i, index[(0, 2)]] == 1.5 and S[i, index[(2, 0)]] == 1.5
    assert S[i, index[(0, 1)]] == 2.0 and S[i, index[(1, 0)]] == 4.0
    assert S[index[(2, 0)], index[(1, 1)]] == 3.0 and s[index[(2, 0)]] == 2.0


def test_isolation_migration():
    g = models.isolation_migration(2, 1)
    assert g.param_names == ("coal_1", "coal_2", "mig_12", "mig_21")
    assert g.n_states == sum(m + 1 for m in range(2, 4))
    # One deme without migration: Kingman with that deme's rate.
    solo = models.isolation_migration(3, 0)
    assert solo.expectation([2.0, 5.0, 0.0, 1.0]) == pytest.approx(2 * (1 - 1 / 3) / 2.0,
                                                                   rel=1e-13)
    # Two lineages, symmetric migration m: E[T | same deme] = 2, E[T | (1,1)] = 2 + 1/(2m).
    pair = models.isolation_migration(2, 0)
    for m in (0.3, 1.7):
        assert pair.expectation([1.0, 1.0, m, m]) == pytest.approx(2.0, rel=1e-13)
        apart = models.isolation_migration(1, 1)
        assert apart.expectation([1.0, 1.0, m, m]) == pytest.approx(2 + 1 / (2 * m), rel=1e-13)


@pytest.mark.parametrize("factory, args, error, match", [
    (models.kingman, (1,), ValueError, "n must be >= 2, got 1"),
    (models.erlang, (0,), ValueError, "k must be >= 1, got 0"),
    (models.erlang, (2.5,), TypeError, "k must be an integer, got 2.5"),
    (models.block_counting, (1,), ValueError, "n must be >= 2"),
    (models.rabbits, (0,), ValueError, "n must be >= 1"),
    (models.isolation_migration, (1, 0), ValueError, "need at least 2 lineages"),
    (models.isolation_migration, (-1, 3), ValueError, "n1 must be >= 0"),
    (models.structured_block_counting, (1, 0), ValueError, "need at least 2 samples"),
])
def test_argument_errors(factory, args, error, match):
    with pytest.raises(error, match=match):
        factory(*args)


def test_models_registry_and_docstrings_name_the_parameters():
    example_args = {"exponential": (), "erlang": (2,), "kingman": (3,), "block_counting": (3,),
                    "rabbits": (1,), "isolation_migration": (1, 1),
                    "structured_block_counting": (1, 1)}
    assert set(models.MODELS) == set(example_args)
    for name, (factory, description) in models.MODELS.items():
        assert factory is getattr(models, name) and description
        graph = factory(*example_args[name])
        for param in graph.param_names:
            assert param in factory.__doc__, (name, param)


def test_package_exports_without_importing_mpi4py():
    code = ("import sys, phasic_mpi; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'; "
            "assert phasic_mpi.__version__ == '0.1.0'; "
            "assert all(hasattr(phasic_mpi, name) for name in phasic_mpi.__all__); "
            "assert {'Graph', 'Observations', 'kingman', 'rabbits'} <= set(phasic_mpi.__all__)")
    result = run_python(code)
    assert result.returncode == 0, result.stderr
