"""Shared pytest configuration.

MPI tests are marked ``@pytest.mark.mpi``; pytest-mpi skips them unless pytest
runs under mpiexec with ``--with-mpi`` (``make test-mpi NP=...``).
"""
