"""The censored-data predictive check: Kaplan–Meier of data simulated from the
true θ inside the band of replicated Kaplan–Meier curves (and outside it for a
wrong model), and the figure itself."""

from __future__ import annotations

import numpy as np
import pytest
from figures import assert_png

from phasic_mpi.analysis.survival import kaplan_meier
from phasic_mpi.model.data import Observations
from phasic_mpi.model.models import erlang, exponential
from phasic_mpi.plotting.survival import replicated_survival_band, step_at


def _censored(rng: np.random.Generator, times: np.ndarray, scheme: str) -> Observations:
    c = np.full(times.size, 4.0) if scheme == "fixed" else rng.exponential(6.0, times.size)
    seen = times <= c
    return Observations(times[seen], right_censored=c[~seen])


def _coverage(graph, obs, draws, seed=0) -> float:
    grid = np.linspace(0.0, obs.right_censored.max(), 120)
    band = replicated_survival_band(graph, obs, draws, grid, seed=seed)
    km = step_at(*kaplan_meier(np.concatenate([obs.exact, obs.right_censored]),
                               np.arange(obs.n_observations) < obs.exact.size), grid)
    return float(((band[0] <= km) & (km <= band[2])).mean())


@pytest.mark.parametrize("scheme", ["fixed", "random"])
def test_kaplan_meier_of_data_from_the_true_theta_stays_in_the_band(scheme):
    """Exponential(0.6), 300 observations, censored at tau = 4 (about 27 censored, as
    in the issue) or at random; 200 draws of the exact posterior Gamma(a + events,
    b + total time at risk) with a Gamma(2, 1) prior."""
    rng = np.random.default_rng(12)
    obs = _censored(rng, rng.exponential(1 / 0.6, 300), scheme)
    at_risk = obs.exact.sum() + obs.right_censored.sum()
    draws = rng.gamma(2.0 + obs.exact.size, 1.0 / (1.0 + at_risk), size=(200, 1))
    assert _coverage(exponential(), obs, draws) >= 0.9
    # the same check has power: a model whose rate is off by a factor 1.5 fails it
    assert _coverage(exponential(), obs, draws * 1.5) < 0.5


def test_kaplan_meier_of_erlang_data_in_the_band_and_a_misfit_outside():
    rng = np.random.default_rng(5)
    times = rng.gamma(3.0, 1 / 1.2, 400)  # Erlang(3, 1.2)
    obs = _censored(rng, times, "fixed")
    draws = 1.2 * rng.gamma(400.0, 1 / 400.0, size=(200, 1))  # a tight posterior near 1.2
    assert _coverage(erlang(3), obs, draws) >= 0.9
    rate_fit = obs.exact.size / (obs.exact.sum() + obs.right_censored.sum())
    assert _coverage(exponential(), obs, np.full((200, 1), rate_fit)) < 0.5


def test_censored_predictive_figure(tmp_path):
    from phasic_mpi.plotting.survival import plot_censored

    rng = np.random.default_rng(1)
    obs = _censored(rng, rng.exponential(1 / 0.6, 200), "fixed")
    draws = rng.gamma(50.0, 0.6 / 50.0, size=(100, 1))
    assert_png(plot_censored("x.h5", exponential(), obs, draws, str(tmp_path), 60, "title"))
    iv = Observations([0.3, 1.2], interval=[[0.5, 1.0], [2.0, np.inf]])
    assert_png(plot_censored("y.h5", exponential(), iv, draws, str(tmp_path / "iv"), 60, "t"))
