"""Batched log-likelihoods split over MPI ranks give the serial bits.

Each rank evaluates a contiguous block of the θ batch (block sizes differ by
at most one, as the distributed algorithms will use them), the blocks are
gathered with Allgatherv, and every rank compares with the whole batch
evaluated serially: the values must be bitwise identical, because libphase
evaluates each θ independently of its neighbours in the batch.
"""

import numpy as np
import pytest

from phasic_mpi import Observations, models


def block(n_items, size, rank):
    base, extra = divmod(n_items, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


@pytest.mark.mpi
def test_theta_blocks_over_ranks_are_bitwise_serial():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        graph = models.rabbits(3)
        rng = np.random.default_rng(5)
        thetas = np.exp(rng.normal(0, 0.3, size=(13, 3))) * [1.0, 2.0, 4.0]
        data = Observations(
            graph.sample(40, [1.0, 2.0, 4.0], seed=3), right_censored=[1.5], interval=[[0.2, 0.4]]
        )
        lo, hi = block(len(thetas), comm.size, comm.rank)
        ll_local, grad_local = graph.loglik_and_grad(data, thetas[lo:hi])

        counts = np.array([np.diff(block(len(thetas), comm.size, r))[0] for r in range(comm.size)])
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]])
        ll_all = np.empty(len(thetas))
        grad_all = np.empty((len(thetas), 3))
        comm.Allgatherv(ll_local, [ll_all, counts, displs, MPI.DOUBLE])
        comm.Allgatherv(grad_local, [grad_all, counts * 3, displs * 3, MPI.DOUBLE])

        ll_serial, grad_serial = graph.loglik_and_grad(data, thetas)
        assert np.array_equal(ll_all, ll_serial)
        assert np.array_equal(grad_all, grad_serial)
        assert np.all(np.isfinite(ll_serial))
    finally:
        comm.Free()
