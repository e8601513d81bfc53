"""Distributed parallel tempering gives the serial bits at any rank count,
with cross-rank swaps by Sendrecv."""

import math

import numpy as np
import pytest

from phasic_mpi.inference.pt import PTAlgorithm, PTSettings


class Bimodal:
    """Prior N(0, 3^2) in z and a two-mode likelihood (exp/log only on (1, d) arrays)."""

    n_params = 2
    param_names = ("a", "b")

    def evaluate(self, z, rows=None):
        from phasic_mpi.inference.posterior import PosteriorEval

        z = np.asarray(z, float)
        r2 = (z * z).sum(axis=1)
        loglik = -((r2 - 4.0) ** 2) / 2.0  # a ring of radius 2
        grad = (-2.0 * (r2 - 4.0))[:, None] * 2.0 * z
        logprior = -r2 / 18.0 - math.log(2 * math.pi * 9.0)
        return PosteriorEval(loglik, grad, logprior, -z / 9.0, np.zeros(len(z), bool))

    def sample_prior_z(self, rng, n):
        return 3.0 * rng.standard_normal((n, 2))

    def to_theta(self, z):
        return np.asarray(z)


def run(comm, settings):
    algorithm = PTAlgorithm(settings)
    ctx = algorithm.context(Bimodal(), comm)
    state = algorithm.start(ctx)
    reports = []
    while state.iteration < algorithm.n_iterations:
        state, _ = algorithm.step(state, ctx)
        if algorithm.history_due(state.iteration):
            reports.append(state.report)
    return algorithm.checkpoint(state, ctx), algorithm.finish(state, ctx), reports


@pytest.mark.mpi
@pytest.mark.parametrize("swap", ["nonreversible", "reversible"])
def test_distributed_pt_is_bitwise_serial(swap):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        settings = PTSettings(replicas=5, chains=2, rounds=6, warmup_rounds=3, seed=9, swap=swap)
        state, final, reports = run(comm, settings)
        if comm.rank == 0:
            serial_state, serial_final, serial_reports = run(MPI.COMM_SELF, settings)
            for name, value in state.items():
                assert np.array_equal(value, serial_state[name], equal_nan=True), name
            for name, value in final.draws.items():
                assert np.array_equal(value, serial_final.draws[name]), name
            for mine, theirs in zip(reports, serial_reports):
                for key in mine:
                    assert np.array_equal(mine[key], theirs[key], equal_nan=True), key
            # every level still holds exactly one replica of its chain
            labels = state["label"].reshape(2, 5)
            assert all(sorted(row) == list(range(5)) for row in labels)
    finally:
        comm.Free()


@pytest.mark.mpi
def test_streamed_cold_draws_are_bitwise_serial_at_any_rank_count(tmp_path_factory):
    """The run loop drains the cold-chain draws into the history (pt/cold/*) and
    builds the posterior from them: the same bits as a serial hand-driven loop
    whose state kept every draw, with and without a run file."""
    from mpi4py import MPI

    from phasic_mpi.run.driver import execute
    from phasic_mpi.run.settings import OutputSettings

    comm = MPI.COMM_WORLD
    settings = PTSettings(replicas=5, chains=2, rounds=6, warmup_rounds=3, seed=9)
    tmp = comm.bcast(str(tmp_path_factory.mktemp("stream")) if comm.rank == 0 else None)
    output = OutputSettings(checkpoint_every=7, progress="none")
    memory = execute(PTAlgorithm(settings), Bimodal(), comm=comm, output=output)
    filed = execute(PTAlgorithm(settings), Bimodal(), comm=comm, out=f"{tmp}/pt.h5", output=output)
    if comm.rank != 0:
        assert memory.final is None and filed.final is None
        return
    _, serial, _ = run(MPI.COMM_SELF, settings)
    from phasic_mpi.io.runfile import read_run

    posterior = read_run(filed.path).posterior()
    for name, value in serial.draws.items():
        assert np.array_equal(memory.final.draws[name], value), name
        assert np.array_equal(filed.final.draws[name], value), name
        assert np.array_equal(posterior[name], value), name
    z = memory.history["pt/cold/z"]
    assert z.shape == (2**6 - 2**3, 2, 2)
    assert np.array_equal(np.array(z), read_run(filed.path).history("pt/cold/z"))
    assert np.array_equal(z[:, :, 0].T, serial.draws["a"])  # to_theta is the identity


@pytest.mark.mpi
def test_the_communicator_counts_the_cross_rank_swaps():
    """swap_bytes_sent per rank = (Sendrecvs of its cross-rank pairs) x 8 (6 + 3d):
    a pair (j, j+1) within a chain whose two slots sit on different ranks is
    tried on the scans of parity j (non-reversible swaps)."""
    from mpi4py import MPI

    from phasic_mpi.inference.parallel import block_layout
    from phasic_mpi.run.driver import execute
    from phasic_mpi.run.settings import OutputSettings

    comm = MPI.COMM_WORLD
    settings = PTSettings(replicas=5, chains=1, rounds=5, warmup_rounds=2, seed=9)  # a chain split
    outcome = execute(PTAlgorithm(settings), Bimodal(), comm=comm,
                      output=OutputSettings(progress="none"))
    if comm.rank != 0:
        return
    n, scans, d = settings.replicas, settings.n_scans, Bimodal.n_params
    expected = []
    for rank in range(comm.size):
        layout = block_layout(n * settings.chains, comm.size, rank)
        calls = 0
        for g in (layout.start - 1, layout.stop - 1):  # low slots of the pairs at its edges
            if 0 <= g and g + 1 < n * settings.chains and g // n == (g + 1) // n:
                calls += sum(1 for s in range(scans) if s % 2 == (g % n) % 2)
        expected.append(calls * 8 * (6 + 3 * d))
    diag = outcome.final.diagnostics
    assert diag["swap_bytes_sent"] == expected
    assert (sum(expected) > 0) == (comm.size > 1)
    assert len(diag["comm_time_s"]) == len(diag["swap_time_s"]) == comm.size
    assert all(c >= s for c, s in zip(diag["comm_time_s"], diag["swap_time_s"]))
