"""Kaplan–Meier and Turnbull against published values and hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from phasic_mpi.analysis.survival import kaplan_meier, survival_curve, turnbull
from phasic_mpi.model.data import Observations

# Freireich et al. (1963), 6-MP arm: remission times in weeks, "+" = censored.
SIX_MP = "6 6 6 6+ 7 9+ 10 10+ 11+ 13 16 17+ 19+ 20+ 22 23 25+ 32+ 32+ 34+ 35+".split()
TIMES = np.array([float(s.rstrip("+")) for s in SIX_MP])
EVENTS = np.array([not s.endswith("+") for s in SIX_MP])
# The product-limit values by hand: 18/21, then x 16/17, 14/15, 11/12, 10/11, 6/7, 5/6
KM_6MP = {6: 18 / 21, 7: 18 / 21 * 16 / 17, 10: 18 / 21 * 16 / 17 * 14 / 15}
KM_6MP[13] = KM_6MP[10] * 11 / 12
KM_6MP[16] = KM_6MP[13] * 10 / 11
KM_6MP[22] = KM_6MP[16] * 6 / 7
KM_6MP[23] = KM_6MP[22] * 5 / 6


def test_kaplan_meier_of_the_6mp_data():
    t, s = kaplan_meier(TIMES, EVENTS)
    np.testing.assert_array_equal(t, sorted(KM_6MP))
    np.testing.assert_allclose(s, [KM_6MP[k] for k in sorted(KM_6MP)], rtol=1e-15)
    # published to 3 digits (e.g. Kleinbaum & Klein, Survival Analysis, table 2.1)
    np.testing.assert_allclose(s, [0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448], atol=6e-4)


def test_weights_count_as_copies():
    t1, s1 = kaplan_meier([1.0, 2.0, 3.0], [True, False, True], [2.0, 1.0, 3.0])
    t2, s2 = kaplan_meier([1, 1, 2, 3, 3, 3], [True, True, False, True, True, True])
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_allclose(s1, s2, rtol=1e-15)


def test_turnbull_equals_kaplan_meier_without_intervals():
    obs = Observations(TIMES[EVENTS], right_censored=TIMES[~EVENTS])
    t, s = turnbull(obs, tol=1e-13, max_iter=200_000)
    km = dict(zip(*kaplan_meier(TIMES, EVENTS)))
    at_events = np.isin(t, list(km))
    np.testing.assert_allclose(s[at_events], [km[x] for x in t[at_events]], atol=1e-8)
    assert survival_curve(obs)[2] == "Kaplan\u2013Meier"


def test_turnbull_of_exact_data_is_one_minus_the_ecdf():
    x = np.array([0.5, 1.5, 1.5, 3.0])
    t, s = turnbull(Observations(x))
    np.testing.assert_allclose(t, [0.5, 1.5, 3.0])
    np.testing.assert_allclose(s, [0.75, 0.25, 0.0], atol=1e-9)


@pytest.mark.parametrize("intervals, want", [
    # disjoint cells: the masses are the fractions, 1/4, 1/2, 1/4
    ([[0, 1], [1, 2], [1, 2], [2, np.inf]], {1.0: 0.75, 2.0: 0.25}),
    # overlapping (0, 2] and (1, 3]: all mass on the innermost interval (1, 2]
    ([[0, 2], [1, 3]], {2.0: 0.0, 3.0: 0.0}),
])
def test_turnbull_of_interval_data(intervals, want):
    t, s, name = survival_curve(Observations(interval=np.array(intervals, float)))
    assert name == "Turnbull"
    got = dict(zip(t, s))
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-8)
