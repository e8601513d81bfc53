"""Smoke test: mpi4py works under mpiexec (run with ``make test-mpi``)."""

import pytest


@pytest.mark.mpi
def test_mpi_collectives():
    import numpy as np
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        rank, size = comm.Get_rank(), comm.Get_size()
        assert 0 <= rank < size

        # buffer-based (uppercase) collectives
        total = np.zeros(1, dtype=np.int64)
        comm.Allreduce(np.array([rank], dtype=np.int64), total, op=MPI.SUM)
        assert total[0] == size * (size - 1) // 2

        ranks = np.empty(size, dtype=np.int64)
        comm.Allgather(np.array([rank], dtype=np.int64), ranks)
        assert ranks.tolist() == list(range(size))

        # pickle-based (lowercase) collectives
        assert comm.allreduce(rank, op=MPI.SUM) == size * (size - 1) // 2
        assert comm.allgather(rank) == list(range(size))
        assert comm.bcast("hello" if rank == 0 else None, root=0) == "hello"
        comm.Barrier()
    finally:
        comm.Free()
