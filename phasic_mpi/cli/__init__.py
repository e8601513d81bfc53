"""The ``phasic-mpi`` command: a thin shell over the library."""

from phasic_mpi.cli.main import main

__all__ = ["main"]
