"""Graph construction, validation, matrices at theta, and delegation to libphase."""

import dataclasses
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.linalg
from randgraph import random_graph

from phasic_mpi import models
from phasic_mpi.model.graph import ABSORBING, Graph


def dense_from_edges(graph, theta):
    """Independent dense (S, s) built edge by edge."""
    theta = np.atleast_1d(np.asarray(theta, dtype=float)) if graph.n_params else np.zeros(0)
    n = graph.n_states
    S, s = np.zeros((n, n)), np.zeros(n)
    for i, j, b, c in zip(graph.edge_src, graph.edge_dst, graph.edge_base, graph.edge_coef):
        w = b + sum(ck * tk for ck, tk in zip(c, theta))
        if j == ABSORBING:
            s[i] += w
        else:
            S[i, j] += w
        S[i, i] -= w
    if graph.discrete:
        S += np.eye(n)
    return S, s


def chain(state):
    """0 -> 1 -> 2 (absorbing) with coefficient vectors of length 2."""
    k = state[0]
    return [((k + 1,), [1.0, 0.5])] if k < 2 else []


# ---------------------------------------------------------------- callback
def test_from_callback_explores_in_bfs_order_and_merges():
    def transitions(state):
        (k,) = state
        if k == 0:
            return [(2, 1.0, [1.0]), ([1], 0.0, [2.0]), ((2,), 0.5, [0.0]), (5, 0.0, [0.0])]
        if k in (1, 2):
            return [(3, 1.0)]  # both exit to absorbing state 3
        return []

    g = Graph.from_callback(transitions, 0, 1)
    assert g.states == ((0,), (2,), (1,))
    assert g.param_names == ("theta0",)
    assert g.n_edges == 4
    # (0)->(2): 1 + 0.5 base, coef 1; (0)->(1): coef 2; zero edge to 5 dropped.
    np.testing.assert_array_equal(g.edge_src, [0, 0, 1, 2])
    np.testing.assert_array_equal(g.edge_dst, [1, 2, ABSORBING, ABSORBING])
    np.testing.assert_array_equal(g.edge_base, [1.5, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(g.edge_coef[:, 0], [1.0, 2.0, 1.0, 1.0])


def test_from_callback_start_distribution_with_defect_and_absorbing_start():
    g = Graph.from_callback(chain, {(0,): 0.5, (1,): 0.25, (2,): 0.125}, 2)
    np.testing.assert_allclose(g.alpha, [0.5, 0.25])
    assert g.defect == pytest.approx(0.25)  # 0.125 defect + 0.125 on absorbing (2,)


def test_from_callback_constant_rates_with_no_params():
    g = Graph.from_callback(lambda s: [((1,), 3.0)] if s == (0,) else [], 0, 0)
    assert g.n_params == 0
    alpha, S, s = g.to_matrices()
    np.testing.assert_array_equal(S, [[-3.0]])
    np.testing.assert_array_equal(s, [3.0])


@pytest.mark.parametrize("transitions, n_params, error, match", [
    (lambda s: [((1,), [1.0, 2.0])] if s == (0,) else [], 1, ValueError,
     "has length 2, expected n_params=1"),
    (lambda s: [((1,), 1.0)] if s == (0,) else [], 2, ValueError,
     r"scalar 1.0 but the model has 2 parameters"),
    (lambda s: [((1,), -1.0, [1.0])] if s == (0,) else [], 1, ValueError,
     r"\(0,\) -> \(1,\) has negative base rate -1.0"),
    (lambda s: [((0,), 1.0)], 1, ValueError, r"from state \(0,\) to itself: self-loops"),
    (lambda s: [((1,), [np.inf])] if s == (0,) else [], 1, ValueError, "non-finite"),
    (lambda s: [((1,),)] if s == (0,) else [], 1, TypeError, "expected \\(child, coef\\)"),
    (lambda s: [("a", 1.0)] if s == (0,) else [], 1, TypeError, "state 'a' must be"),
    (lambda s: [((1,), 1.0)] if s == (0,) else [((0,), 1.0)], 1, ValueError,
     r"state \(0,\) cannot reach an absorbing state"),
    (lambda s: [((1,), 0.0)] if s == (0,) else [], 1, ValueError,
     r"state \(0,\) cannot reach an absorbing state"),
])
def test_from_callback_errors(transitions, n_params, error, match):
    with pytest.raises(error, match=match):
        Graph.from_callback(transitions, 0, n_params)


def test_from_callback_too_many_states():
    with pytest.raises(ValueError, match="more than max_states=10 states"):
        Graph.from_callback(lambda s: [((s[0] + 1,), 1.0)], 0, 1, max_states=10)


def test_from_callback_discrete_self_loop_message_mentions_implicit_stay():
    with pytest.raises(ValueError, match="probability of staying is implicit"):
        Graph.from_callback(lambda s: [((0,), 0.5)], 0, 1, discrete=True)


@pytest.mark.parametrize("start, match", [
    ({0: 0.7, 1: 0.4}, r"start probabilities sum to 1.1"),
    ({0: -0.1}, r"start probability of state \(0,\) is -0.1"),
])
def test_from_callback_bad_start(start, match):
    with pytest.raises(ValueError, match=match):
        Graph.from_callback(chain, start, 2)


def test_from_callback_all_starts_absorbing():
    with pytest.raises(ValueError, match="every start state is absorbing"):
        Graph.from_callback(chain, 2, 2)


# ------------------------------------------------------------- constructor
def test_graph_is_immutable_and_pickles_read_only():
    g = random_graph(6, 2, 0.3, seed=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.alpha = np.ones(6)
    for array in (g.alpha, g.edge_src, g.edge_dst, g.edge_base, g.edge_coef):
        assert not array.flags.writeable
    h = pickle.loads(pickle.dumps(g))
    assert not h.edge_coef.flags.writeable
    np.testing.assert_array_equal(h.to_matrices([0.3, 0.7])[1], g.to_matrices([0.3, 0.7])[1])
    assert hash(g) != hash(h)  # identity hashing, usable as a cache key


TWO_STATES = dict(edge_src=[0, 1], edge_dst=[1, -1])


@pytest.mark.parametrize("kwargs, match", [
    (dict(edge_src=[0, 0], edge_dst=[1, 1], edge_base=[1, 1]),
     r"duplicate edge state 0 -> state 1"),
    (dict(edge_src=[0, 1], edge_dst=[1, 1], edge_base=[1, 1]), r"self-loop on state 1"),
    (dict(edge_src=[0, 1], edge_dst=[2, -1], edge_base=[1, 1]),
     r"edge 0 \(0 -> 2\) has an index outside"),
    (dict(TWO_STATES, edge_base=[-1, 1]), r"state 0 -> state 1 has negative base rate -1"),
    (dict(TWO_STATES, edge_base=[1, 1], param_names=["a"]), r"param_names must be 0 strings"),
    (dict(edge_src=[0, 1], edge_dst=[1, 0], edge_base=[1, 1]),
     r"state 0 cannot reach an absorbing state \(2 such"),
    (dict(edge_src=[0], edge_dst=[1, -1], edge_base=[1, 1]), "edge arrays disagree in length"),
])
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Graph(alpha=[1.0, 0.0], **kwargs)


def test_constructor_alpha_errors():
    with pytest.raises(ValueError, match=r"start probabilities sum to 1.5"):
        Graph([1.0, 0.5], [0, 1], [1, -1], [1.0, 1.0])
    with pytest.raises(ValueError, match="non-negative"):
        Graph([-0.5, 0.5], [0, 1], [1, -1], [1.0, 1.0])


def test_from_edges_merges_duplicates_and_drops_zero_edges():
    g = Graph.from_edges([1.0, 0.0], [0, 1, 0, 0], [1, -1, 1, -1],
                         [1.0, 2.0, 0.5, 0.0], [[1.0], [0.0], [2.0], [0.0]])
    np.testing.assert_array_equal(g.edge_src, [0, 1])
    np.testing.assert_array_equal(g.edge_base, [1.5, 2.0])
    np.testing.assert_array_equal(g.edge_coef[:, 0], [3.0, 0.0])


# ---------------------------------------------------------------- matrices
@pytest.mark.parametrize("discrete", [False, True])
def test_to_matrices_and_sparse_match_edge_by_edge_construction(discrete):
    for seed in range(4):
        g = random_graph(12, 3, 0.25, seed=seed, discrete=discrete)
        theta = [0.3, 0.9, 0.5]
        alpha, S, s = g.to_matrices(theta)
        S_ref, s_ref = dense_from_edges(g, theta)
        np.testing.assert_allclose(S, S_ref, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(s, s_ref, rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(alpha, g.alpha)
        S_sparse, s_sparse = g.to_sparse(theta)
        np.testing.assert_array_equal(S_sparse.toarray(), S)
        np.testing.assert_array_equal(s_sparse, s)
        # Rows of [S s] sum to 0 (continuous) or 1 (discrete).
        np.testing.assert_allclose(S.sum(axis=1) + s, 1.0 if discrete else 0.0, atol=1e-14)


def test_rates_and_theta_validation():
    g = models.rabbits(2)
    rates = g.rates([1.0, 2.0, 4.0])
    np.testing.assert_array_equal(rates, g.edge_base + g.edge_coef @ [1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match=r"theta has 2 values but the graph has 3 parameters"):
        g.rates([1.0, 2.0])
    with pytest.raises(ValueError, match="theta is required"):
        g.rates()
    with pytest.raises(ValueError, match="theta must be finite"):
        g.rates([1.0, np.nan, 1.0])
    with pytest.raises(ValueError, match=r"state \(2, 0\) -> state \(1, 1\) has negative rate -2"):
        g.to_matrices([-1.0, 2.0, 4.0])


def test_negative_coefficients_are_allowed_until_the_rate_is_negative():
    g = Graph([1.0], [0], [-1], [2.0], [[-1.0]])
    np.testing.assert_array_equal(g.to_matrices([1.5])[2], [0.5])
    with pytest.raises(ValueError, match="negative rate"):
        g.to_matrices([3.0])


def test_discrete_out_probabilities_above_one():
    g = Graph([1.0], [0], [-1], [0.5], [[1.0]], discrete=True)
    with pytest.raises(ValueError, match=r"out-probabilities of state 0 sum to 1.5 > 1"):
        g.to_matrices([1.0])


# ----------------------------------------------------------- from_matrices
def test_from_matrices_constant_round_trip():
    rng = np.random.default_rng(3)
    S = rng.uniform(0, 1, (5, 5)) * (rng.random((5, 5)) < 0.6)
    np.fill_diagonal(S, 0)
    exits = rng.uniform(0.1, 1, 5)
    np.fill_diagonal(S, -(S.sum(axis=1) + exits))
    alpha = np.array([0.2, 0.3, 0.0, 0.1, 0.3])
    g = Graph.from_matrices(alpha, S)
    assert g.n_params == 0 and not g.discrete
    a, S2, s2 = g.to_matrices()
    np.testing.assert_allclose(S2, S, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(s2, exits, rtol=1e-12)
    assert g.defect == pytest.approx(0.1)


def test_from_matrices_parameterized_and_explicit_exits():
    S0 = np.array([[-1.0, 1.0], [0.5, -2.0]])
    S1 = np.array([[-3.0, 2.0], [0.0, -1.0]])
    g = Graph.from_matrices([1.0, 0.0], S0, [S1], param_names=["k"])
    theta = 0.7
    _, S, s = g.to_matrices([theta])
    np.testing.assert_allclose(S, S0 + theta * S1, rtol=1e-15)
    np.testing.assert_allclose(s, -(S0 + theta * S1).sum(axis=1), rtol=1e-15)
    h = Graph.from_matrices([1.0, 0.0], S0, [S1], exit_base=[0.0, 1.5], exit_coefs=[[1.0, 1.0]])
    _, S, s = h.to_matrices([theta])
    np.testing.assert_allclose(s, [theta, 1.5 + theta])
    off_diagonal = S0 + theta * S1 - np.diag(np.diag(S0 + theta * S1))
    np.testing.assert_allclose(S - np.diag(np.diag(S)), off_diagonal)
    np.testing.assert_allclose(np.diag(S), -(off_diagonal.sum(axis=1) + s))


def test_from_matrices_discrete():
    T = np.array([[0.2, 0.8], [0.0, 0.3]])  # oracle: defective discrete example
    g = Graph.from_matrices([0.75, 0.0], T, discrete=True)
    alpha, T2, t = g.to_matrices()
    np.testing.assert_allclose(T2, T, rtol=1e-15)
    np.testing.assert_allclose(t, [0.0, 0.7], atol=1e-15)
    assert g.defect == pytest.approx(0.25)


def test_from_matrices_errors():
    with pytest.raises(ValueError, match=r"row 1: the derived exit rate -S_base 1 is -0.5 < 0"):
        Graph.from_matrices([1.0, 0.0], [[-1.0, 1.0], [1.5, -1.0]])
    with pytest.raises(ValueError, match=r"S_coefs\[0\] has shape \(3, 3\), expected \(2, 2\)"):
        Graph.from_matrices([1.0, 0.0], [[-1.0, 1.0], [0.0, -1.0]], [np.eye(3)])
    with pytest.raises(ValueError, match=r"1 - T_base 1"):
        Graph.from_matrices([1.0], [[1.2]], discrete=True)


# ------------------------------------------------------ libphase delegation
@pytest.fixture
def fake_core(monkeypatch):
    import phasic_mpi.model

    calls = []
    core = types.SimpleNamespace(
        evaluate=lambda g, theta, pts, q, **kw: calls.append((g, theta, pts, q)) or "value",
        loglik=lambda g, data, thetas, grad, **kw: (calls.append((g, data, thetas, grad))
                                                   or ("ll", "grad", "status")),
    )
    monkeypatch.setitem(sys.modules, "phasic_mpi.model.native", core)
    monkeypatch.setattr(phasic_mpi.model, "native", core, raising=False)
    return calls


def test_density_methods_delegate_to_core(fake_core):
    g = models.exponential()
    for method, quantity in [("pdf", "pdf"), ("logpdf", "logpdf"), ("cdf", "cdf"),
                             ("survival", "survival"), ("logsurvival", "logsurvival")]:
        assert getattr(g, method)([1.0], [2.0]) == "value"
        assert fake_core[-1] == (g, [2.0], [1.0], quantity)
    d = Graph([1.0], [0], [-1], [0.5], discrete=True)
    assert d.pmf([1, 2]) == "value"
    assert fake_core[-1][3] == "pdf" and fake_core[-1][1].shape == (0,)
    assert d.logpmf([1]) == "value" and fake_core[-1][3] == "logpdf"
    assert g.loglik("data", "thetas") == "ll"
    assert fake_core[-1] == (g, "data", "thetas", False)
    assert g.loglik_and_grad("data", "thetas") == ("ll", "grad")
    assert fake_core[-1][3] is True


def test_pdf_and_pmf_refuse_the_wrong_kind_of_graph():
    with pytest.raises(ValueError, match=r"pmf\(\) is not defined for a continuous graph; use pdf"):
        models.exponential().pmf([1], [1.0])
    with pytest.raises(ValueError, match=r"pdf\(\) is not defined for a discrete graph; use pmf"):
        Graph([1.0], [0], [-1], [0.5], discrete=True).pdf([1.0])


def test_pdf_and_cdf_against_expm_oracle():
    pytest.importorskip("phasic_mpi.model.native")
    g = random_graph(8, 2, 0.3, seed=11)
    theta = np.array([0.4, 1.3])
    alpha, S, s = g.to_matrices(theta)
    times = np.array([0.1, 0.5, 1.0, 3.0])
    pdf_ref = [alpha @ scipy.linalg.expm(S * t) @ s for t in times]
    cdf_ref = [1 - alpha @ scipy.linalg.expm(S * t) @ np.ones(8) for t in times]
    np.testing.assert_allclose(g.pdf(times, theta), pdf_ref, rtol=1e-9)
    np.testing.assert_allclose(g.cdf(times, theta), cdf_ref, rtol=1e-9)
