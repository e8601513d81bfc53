"""The ladder's round-trip model and the too-few-replicas warning (inference/ptladder.py)."""

import math

import numpy as np
import pytest

from phasic_mpi.inference.ptladder import WARN_BELOW, replica_warning, round_trips_per_slot


def test_round_trips_per_slot_is_the_nonreversible_rate_over_the_slots():
    # N = 4 levels, rejections r_j: 1 / (N (2 + 2 sum r/(1-r))) by hand
    rej = np.array([0.2, 0.5, 0.75])
    by_hand = 1.0 / (4 * (2 + 2 * (0.25 + 1.0 + 3.0)))
    assert round_trips_per_slot(rej) == pytest.approx(by_hand, rel=1e-15)
    assert round_trips_per_slot(np.array([0.1, 1.0])) == 0.0  # a pair that never swaps: no round trip


@pytest.mark.parametrize("barrier", [1.0, 2.05, 5.0, 12.0])
def test_evenly_spread_barrier_is_cheapest_near_2_lambda_plus_1_levels(barrier):
    levels = np.arange(math.floor(barrier) + 2, 80)
    rate = [round_trips_per_slot(np.full(n - 1, barrier / (n - 1))) for n in levels]
    best = int(levels[int(np.argmax(rate))])
    assert abs(best - (2 * barrier + 1)) <= 1.0


def test_no_warning_when_the_ladder_has_enough_levels():
    assert replica_warning(np.full((4, 4), 2.05 / 4), 5) is None  # the hypoexponential's barrier at 5
    assert replica_warning(np.full((2, 7), 0.1), 8) is None
    assert replica_warning(np.full((2, 4), np.nan), 5) is None  # no swaps yet: nothing to say


def test_warning_names_the_barrier_and_the_replicas_to_set():
    rejection = np.full((4, 4), 0.9)  # Lambda = 3.6 at 5 levels
    message = replica_warning(rejection, 5)
    assert message is not None
    assert "Lambda = 3.6" in message and "pt.replicas = 9" in message and "90 %" in message
    # the threshold: the same barrier spread over the recommended 9 levels does WARN_BELOW better
    have = round_trips_per_slot(rejection[0])
    could = round_trips_per_slot(np.full(8, 3.6 / 8))
    assert have < WARN_BELOW * could
    # a pair that never swapped warns too (no round trip at all)
    assert replica_warning(np.array([[0.5, 1.0, 1.0, 0.5]]), 5) is not None


def test_a_moderate_shortfall_does_not_warn():
    # Lambda = 3 at 5 levels: 7 would be best, but 5 still gives 3/4 of its round trips per slot
    rejection = np.full((4, 4), 0.75)
    have, could = round_trips_per_slot(rejection[0]), round_trips_per_slot(np.full(6, 0.5))
    assert have / could == pytest.approx(0.7547, abs=1e-3)
    assert replica_warning(rejection, 5) is None


def test_a_run_with_too_few_replicas_says_so_and_the_default_does_not():
    import warnings

    import phasic_mpi as pm
    from phasic_mpi.errors import ConvergenceWarning
    from phasic_mpi.run.api import pt

    graph = pm.exponential()
    times = graph.sample(5000, [2.0], seed=1)  # a sharp posterior under a broad prior: Lambda ~ 2
    kwargs = dict(chains=2, rounds=6, warmup_rounds=4, seed=1, progress="none")
    with pytest.warns(ConvergenceWarning, match=r"calls for at least 5 replicas .* Set pt.replicas = 5"):
        pt(graph, times, replicas=3, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = pt(graph, times, **kwargs)  # the default 5 replicas
    assert result is not None
