"""HMC and multi-step local moves give the serial bits at any rank count too."""

import numpy as np
import pytest

from phasic_mpi.inference.pt import PTSettings

from test_pt_mpi import run


@pytest.mark.mpi
@pytest.mark.parametrize("move", [dict(local_move="hmc", leapfrog_steps=3, local_steps=2),
                                  dict(local_move="rwm", local_steps=3)])
def test_distributed_local_moves_are_bitwise_serial(move):
    state = assert_bitwise_serial(PTSettings(replicas=5, chains=2, rounds=5, warmup_rounds=3, seed=4, **move))
    assert state is None or np.any(state["label"] != np.tile(np.arange(5), 2))  # swaps moved replicas


def assert_bitwise_serial(settings):
    """A run on all ranks equals a serial one on rank 0 in every checkpointed
    array and draw; returns the checkpoint arrays on rank 0, None elsewhere."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        state, final, _ = run(comm, settings)
        if comm.rank == 0:
            serial_state, serial_final, _ = run(MPI.COMM_SELF, settings)
            ours, serial = {**state, **final.draws}, {**serial_state, **serial_final.draws}
            assert ours.keys() == serial.keys()
            unequal = [k for k in ours if not np.array_equal(ours[k], serial[k], equal_nan=True)]
            assert not unequal
        return state
    finally:
        comm.Free()
