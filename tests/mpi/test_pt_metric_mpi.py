"""PT with an adapted metric and cold-only moves gives the serial bits at any rank count."""

import numpy as np
import pytest

from phasic_mpi.inference.pt import PTSettings

from test_pt_moves_mpi import assert_bitwise_serial


@pytest.mark.mpi
@pytest.mark.parametrize("move", [dict(mass_matrix="dense", cold_steps=2),
                                  dict(mass_matrix="diagonal", local_move="hmc", leapfrog_steps=2),
                                  dict(mass_matrix="dense", local_move="rwm", cold_steps=1, local_steps=2)])
def test_distributed_metric_adaptation_is_bitwise_serial(move):
    # warm-up rounds 0..5: the metric is re-estimated after rounds 3 and 4
    state = assert_bitwise_serial(PTSettings(replicas=5, chains=2, rounds=7, warmup_rounds=6, seed=4, **move))
    if state is not None:
        assert {"metric", "moments"} <= state.keys()
        unit = np.eye(2) if move["mass_matrix"] == "dense" else np.ones(2)
        assert not np.allclose(state["metric"][0], unit)  # the metric was adapted


@pytest.mark.mpi
@pytest.mark.parametrize("move", [dict(mass_matrix="dense", cold_steps="auto"),
                                  dict(mass_matrix="none", local_move="rwm", cold_steps="auto", local_steps=2)])
def test_distributed_auto_cold_steps_are_bitwise_serial(move):
    # warm-up rounds 0..5: round 5 probes, the count is chosen after it and used in round 6
    state = assert_bitwise_serial(PTSettings(replicas=5, chains=2, rounds=7, warmup_rounds=6, seed=4, **move))
    if state is not None:
        assert {"cold_auto", "probe"} <= state.keys()
        assert np.all(state["cold_auto"][1:] >= 1)  # the probe ran and gave a curve (0: not estimated)
        assert state["cold_auto"][0] == int(state["cold_auto"][0]) >= 0
