"""fit_map over MPI gives the serial bits at any rank count (run at 2 and 3 ranks).

Each rank also runs the whole fit serially (comm=None) and compares: the
optimum, every start's optimum and value, the Hessian, the covariance and the
Laplace draws must be bitwise equal.
"""

import numpy as np
import pytest

from phasic_mpi.inference.comm import as_communicator
from phasic_mpi.inference.laplace import fit_map
from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.model import models
from phasic_mpi.model.sfs import SFSData

FIELDS = ("z", "theta", "grad", "hessian", "cov_z", "se_theta", "starts", "optima",
          "values", "converged", "n_iterations")


def rabbits_posterior():
    g = models.rabbits(2)
    return Posterior(g, g.sample(60, [1.0, 2.0, 4.0], seed=3), [Gamma(2.0, 1.0)] * 3)


def sfs_posterior():
    """Kingman times plus an SFS whose theta_mut is a parameter (a likelihood term)."""
    terms = [SFSData(models.block_counting(5), [11, 6, 2, 4], n_loci=3)]
    priors = {"coal_rate": Gamma(2.0, 2.0), "theta_mut": LogNormal(1.0, 1.0)}
    return Posterior(models.kingman(5), [0.8, 1.9, 1.1, 3.0, 0.7], priors, terms=terms)


@pytest.mark.mpi
@pytest.mark.parametrize("make, starts", [(rabbits_posterior, 7), (sfs_posterior, 5)])
def test_distributed_fit_map_is_bitwise_serial(make, starts):
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        post = make()
        parallel = fit_map(post, starts=starts, seed=13, comm=comm)
        serial = fit_map(post, starts=starts, seed=13)
        facade = fit_map(post, starts=starts, seed=13, comm=as_communicator(comm))
        for field in FIELDS:
            np.testing.assert_array_equal(getattr(parallel, field), getattr(serial, field),
                                          err_msg=field)
            np.testing.assert_array_equal(getattr(facade, field), getattr(serial, field),
                                          err_msg=field)
        assert parallel.best == serial.best and parallel.value == serial.value
        np.testing.assert_array_equal(parallel.sample_z(25, seed=2), serial.sample_z(25, seed=2))
        # every rank holds the same result
        everyone = comm.allgather(parallel.z.tobytes() + parallel.hessian.tobytes())
        assert len(set(everyone)) == 1
    finally:
        comm.Free()
