"""Censored data: simulate.censor against closed-form censoring fractions, and
Observations.from_dataframe for the data-frame forms users have."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phasic_mpi import models
from phasic_mpi.model.data import ColumnError, Observations
from phasic_mpi.model.simulate import censor

N = 40_000
LAM = 1.3


def within(count: int, n: int, p: float, z: float = 5.0) -> bool:
    """``count`` of ``n`` Bernoulli(p) trials within ``z`` binomial standard errors.

    z = 5: a correct simulation fails with probability < 6e-7 (two-sided normal
    tail; n p (1 - p) > 2000 here, so the normal approximation holds).
    """
    return abs(count - n * p) < z * math.sqrt(n * p * (1 - p))


@pytest.fixture(scope="module")
def times() -> np.ndarray:
    return models.exponential().sample(N, [LAM], seed=4)


def test_fixed_tau(times):
    """Exponential(λ) data censored at τ: a fraction e^{-λτ} is censored, all at τ."""
    tau = 0.8
    obs = censor(times, tau=tau)
    assert within(obs.right_censored.size, N, math.exp(-LAM * tau))
    assert (obs.right_censored == tau).all() and (obs.exact <= tau).all()
    assert obs.exact.tobytes() == times[times <= tau].tobytes()  # same times, same order
    assert obs.n_observations == N


@pytest.mark.parametrize("mu", [0.4, 2.5])
def test_exponential_censoring(times, mu):
    """C ~ Exponential(μ) independent of T ~ Exponential(λ): P(C < T) = μ / (λ + μ),
    and the censoring times given C < T are Exponential(λ + μ) (mean 1 / (λ + μ))."""
    obs = censor(times, random=("exponential", mu), seed=9)
    m = obs.right_censored.size
    assert within(m, N, mu / (LAM + mu))
    mean, se = obs.right_censored.mean(), 1 / (LAM + mu) / math.sqrt(m)
    assert abs(mean - 1 / (LAM + mu)) < 5 * se
    again = censor(times, random=("exponential", mu), seed=9)
    assert again.right_censored.tobytes() == obs.right_censored.tobytes()
    assert censor(times, random=("exponential", mu), seed=10).right_censored.size != m


def test_uniform_censoring_and_tau(times):
    """C = min(τ, U(0, b)): P(C < T) = ∫ P(T > c) dF_C(c) =
    (1 - e^{-λτ}) / (λ b) + (1 - τ / b) e^{-λτ} for τ < b."""
    b, tau = 3.0, 1.0
    p = (1 - math.exp(-LAM * tau)) / (LAM * b) + (1 - tau / b) * math.exp(-LAM * tau)
    obs = censor(times, tau=tau, random=("uniform", b), seed=2)
    assert within(obs.right_censored.size, N, p)
    assert obs.right_censored.max() == tau and (obs.right_censored <= tau).all()
    p_u = (1 - math.exp(-LAM * b)) / (LAM * b)
    assert within(censor(times, random=("uniform", b), seed=2).right_censored.size, N, p_u)


def test_discrete_times_are_censored_at_integers():
    """Geometric(p = 0.3) on 1, 2, ...: censored at floor(C); P(T > k) = (1 - p)^k."""
    from phasic_mpi.model.graph import Graph

    t = Graph.from_matrices([1.0], [[0.7]], discrete=True).sample(N, seed=1)
    obs = censor(t, tau=2.5, integer=True)
    assert (obs.right_censored == 2.0).all() and set(obs.exact) <= {1.0, 2.0}
    assert within(obs.right_censored.size, N, 0.7 ** 2)


@pytest.mark.parametrize("kwargs, message", [
    ({"tau": 0.0}, "tau must be finite and > 0"),
    ({"tau": math.inf}, "tau must be finite"),
    ({"random": ("weibull", 1.0)}, "must be one of exponential, uniform"),
    ({"random": ("exponential", -1.0)}, "the rate of exponential censoring"),
    ({"random": ("uniform", math.nan)}, "the upper bound of uniform censoring"),
])
def test_bad_schemes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        censor([1.0], **kwargs)


def test_no_scheme_keeps_every_time(times):
    obs = censor(times)
    assert obs.exact.tobytes() == times.tobytes() and obs.right_censored.size == 0


# --------------------------------------------------------------- data frames
class FakeFrame:
    """The duck type from_dataframe needs: ``columns`` and ``frame[name].to_numpy()``."""

    def __init__(self, data: dict) -> None:
        self._data = data
        self.columns = list(data)

    def __getitem__(self, name: str):
        return type("Column", (), {"to_numpy": lambda _: np.asarray(self._data[name])})()


def _expect(obs: Observations, exact, right, lo=(), hi=(), weights=None, right_weights=None):
    np.testing.assert_array_equal(obs.exact, exact)
    np.testing.assert_array_equal(obs.right_censored, right)
    np.testing.assert_array_equal(obs.interval_lo, lo)
    np.testing.assert_array_equal(obs.interval_hi, hi)
    if weights is not None:
        np.testing.assert_array_equal(obs.weights, weights)
        np.testing.assert_array_equal(obs.right_weights, right_weights)


@pytest.mark.parametrize("frame", [dict, FakeFrame])
def test_survival_columns(frame):
    obs = Observations.from_dataframe(frame({"time": [0.5, 2.0, 1.0], "status": [1, 0, 1],
                                             "weight": [1.0, 2.0, 3.0]}))
    _expect(obs, [0.5, 1.0], [2.0], weights=[1.0, 3.0], right_weights=[2.0])
    obs = Observations.from_dataframe(frame({"T": [3.0, 4.0], "Event": [True, False],
                                             "other": ["a", "b"]}), time="T", event="event")
    _expect(obs, [3.0], [4.0])
    assert obs.weights is None


def test_bounds_columns():
    obs = Observations.from_dataframe({"lower": [0.5, 2.0, None, 1.0, 3.0],
                                       "upper": [0.5, None, 3.0, 2.0, np.inf]})
    _expect(obs, [0.5], [2.0, 3.0], [-np.inf, 1.0], [3.0, 2.0])


def test_kind_columns():
    obs = Observations.from_dataframe({"time": [0.5, 4.0, 1.0], "kind": ["exact", "right",
                                                                        "interval"],
                                       "upper": [np.nan, np.nan, 2.0]})
    _expect(obs, [0.5], [4.0], [1.0], [2.0])


def test_pandas():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"time": [0.5, 2.0, 1.0], "status": [1, 0, 1]})
    _expect(Observations.from_dataframe(df), [0.5, 1.0], [2.0])
    df = pd.DataFrame({"lower": [1.0, 2.0], "upper": [2.0, None]})
    _expect(Observations.from_dataframe(df), [], [2.0], [1.0], [2.0])


@pytest.mark.parametrize("data, kwargs, error, message", [
    ({"time": [1.0, 2.0], "status": [1, 2]}, {}, ColumnError, "status must be 1 .* got 2"),
    ({"lower": [1.0, 3.0], "upper": [2.0, 2.5]}, {}, ColumnError, "need lower <= upper"),
    ({"lower": [None], "upper": [None]}, {}, ColumnError, "both missing"),
    ({"time": [1.0], "status": [1], "kind": ["exact"]}, {}, ValueError, "survival columns"),
    ({"time": [1.0]}, {"status": "dead"}, ValueError, "status: no column 'dead'"),
    ({"time": [1.0]}, {"censored": "x"}, TypeError, "unknown role 'censored'"),
    ({"time": [1.0, -1.0], "status": [1, 1]}, {}, ValueError, "times must be finite and >= 0"),
])
def test_dataframe_errors(data, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        Observations.from_dataframe(data, **kwargs)
    if error is ColumnError:
        assert info.value.row == len(data[next(iter(data))]) - 1
