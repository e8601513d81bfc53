"""PT with a variational reference gives the serial bits at any rank count
(the fit pools the chains in chain order; the legs' b = 1 exchange crosses
ranks) and after a resume at another rank count (the reference and its moment
sums are in the checkpoint), also with an adapted metric on the variational path."""

import numpy as np
import pytest

from phasic_mpi.inference.pt import PTAlgorithm, PTSettings

from test_pt_mpi import Bimodal, run

CASES = [dict(reference="variational", variational_family="full", chains=2),  # stabilised
         dict(reference="variational", variational_family="diagonal", stabilised=False, chains=3,
              local_move="hmc", leapfrog_steps=2),
         # with an adapted metric (updated after warm-up round 3) and cold-only moves
         dict(reference="variational", chains=2, mass_matrix="diagonal", cold_steps=1, warmup_rounds=5)]


def resumed(comm, settings, stop):
    """Run ``stop`` scans on ``comm``, checkpoint, restore on ``comm`` and on
    COMM_SELF (rank 0), and run both to the end."""
    from mpi4py import MPI

    algorithm = PTAlgorithm(settings)
    ctx = algorithm.context(Bimodal(), comm)
    state = algorithm.start(ctx)
    while state.iteration < stop:
        state, _ = algorithm.step(state, ctx)
    arrays = comm.bcast(algorithm.checkpoint(state, ctx), root=0)
    out = []
    for c in (comm, MPI.COMM_SELF) if comm.rank == 0 else (comm,):
        ctx = algorithm.context(Bimodal(), c)
        state = algorithm.restore(arrays, stop, ctx)
        while state.iteration < algorithm.n_iterations:
            state, _ = algorithm.step(state, ctx)
        out.append((algorithm.checkpoint(state, ctx), algorithm.finish(state, ctx)))
    return out


def assert_same(a, b):
    (state, final), (other_state, other_final) = a, b
    assert state.keys() == other_state.keys()
    unequal = [k for k in state if not np.array_equal(state[k], other_state[k], equal_nan=True)]
    unequal += [k for k in final.draws if not np.array_equal(final.draws[k], other_final.draws[k])]
    assert not unequal


@pytest.mark.mpi
@pytest.mark.parametrize("case", CASES)
def test_variational_pt_is_bitwise_serial_and_resumes_at_any_rank_count(case):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        settings = PTSettings(**{"replicas": 5, "rounds": 6, "warmup_rounds": 4, "seed": 5, **case})
        state, final, reports = run(comm, settings)
        # 20 scans: inside warm-up round 4 (scans 15..30), moment sums half full
        after_resume = resumed(comm, settings, 20)
        if comm.rank == 0:
            serial_state, serial_final, _ = run(MPI.COMM_SELF, settings)
            assert serial_state["ref_active"] == 1.0  # the Gaussian was fitted and used
            if case.get("mass_matrix") == "diagonal":  # the metric was adapted, not the unit one
                assert not np.allclose(serial_state["metric"], 1.0)
            assert_same((state, final), (serial_state, serial_final))
            for got in after_resume:
                assert_same(got, (serial_state, serial_final))
            assert np.any(state["label"] != np.tile(np.arange(5), settings.chains))  # swaps moved replicas
    finally:
        comm.Free()
