"""A posterior with an SFS and moment terms gives the serial bits at any rank count.

SVGD over COMM_WORLD (run at 2 and 3 ranks: the particle blocks differ, so
each rank evaluates the terms on a different number of rows) writes a run
file; a serial run on rank 0 (no file) must give the same posterior,
pointwise log-likelihood, replicates and observed data, bit for bit.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest
from idata_checks import assert_same_groups

import phasic_mpi as pm
from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.model import models
from phasic_mpi.model.sfs import SFSData
from phasic_mpi.model.terms import MomentData


def _posterior():
    terms = [SFSData(models.block_counting(6), [11, 6, 2, 4, 1], n_loci=3),
             MomentData(models.kingman(5), [1.4, 1.0], [0.2, 0.4], kind="variance",
                        rewards=np.column_stack([np.ones(4), np.arange(4.0)]))]
    priors = {"coal_rate": Gamma(2.0, 2.0), "theta_mut": LogNormal(1.0, 1.0)}
    return Posterior(models.kingman(5), [0.8, 1.9, 1.1, 3.0, 0.7], priors, terms=terms)


@pytest.mark.mpi
@pytest.mark.filterwarnings("ignore:svgd did not converge")
def test_svgd_with_terms_is_bitwise_serial():
    import arviz as az
    from mpi4py import MPI

    comm = MPI.COMM_WORLD.Dup()
    try:
        folder = comm.bcast(tempfile.mkdtemp() if comm.rank == 0 else None, root=0)
        path = Path(folder) / "terms.h5"
        settings = dict(particles=13, iterations=25, seed=5, progress="none")
        pm.svgd(_posterior(), out=path, comm=comm, **settings)
        if comm.rank == 0:
            serial = pm.svgd(_posterior(), comm=MPI.COMM_SELF, **settings).to_inference_data()
            stored = az.from_netcdf(path)
            assert_same_groups(serial, stored)
            assert {"sfs", "moment"} <= set(stored.log_likelihood.data_vars)
        comm.barrier()
    finally:
        comm.Free()
