"""Refusals and empty results end the run on every rank alike (issue 12.6, 12.8).

Run under mpiexec (``make test-mpi NP=...``): a run with no valid final draw
raises :class:`EmptyResultError` on every rank with the same message, and a
rank that may use too little memory makes every rank refuse, with the same
numbers, before any work.
"""

import numpy as np
import pytest

from phasic_mpi.errors import EmptyResultError, InfeasibleError
from phasic_mpi.inference.posterior import FunctionDensity
from phasic_mpi.inference.priors import Normal


def nan_density():
    return FunctionDensity(lambda th: (np.full(len(th), np.nan), np.zeros_like(th)), ["a"],
                           priors=[Normal(0, 1)])


@pytest.mark.mpi
@pytest.mark.parametrize("algorithm, settings", [
    ("svgd", {"particles": 7, "iterations": 3}),
    ("pt", {"replicas": 3, "chains": 2, "rounds": 3, "warmup_rounds": 1}),
])
def test_empty_result_fails_on_every_rank(algorithm, settings):
    from mpi4py import MPI

    import phasic_mpi as pm

    comm = MPI.COMM_WORLD
    with pytest.raises(EmptyResultError) as info:
        pm.sample(nan_density(), algorithm=algorithm, comm=comm, progress="none", **settings)
    messages = comm.allgather(str(info.value))
    assert len(set(messages)) == 1 and messages[0].startswith(f"{algorithm}: all ")


@pytest.mark.mpi
def test_one_small_rank_makes_every_rank_refuse(monkeypatch):
    from mpi4py import MPI

    import phasic_mpi as pm
    from phasic_mpi.run import feasibility

    comm = MPI.COMM_WORLD
    last = comm.Get_size() - 1
    monkeypatch.setattr(feasibility, "available_memory",
                        lambda: 2**18 if comm.Get_rank() == last else 2**40)
    with pytest.raises(InfeasibleError) as info:
        pm.svgd(nan_density(), particles=1000, iterations=1, comm=comm, progress="none")
    messages = comm.allgather(str(info.value))
    assert len(set(messages)) == 1
    assert "but a rank may use" in messages[0] and "KiB" in messages[0]
