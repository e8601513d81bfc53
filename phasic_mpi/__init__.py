"""phasic_mpi: exact phase-type distributions, likelihoods and gradients.

Importing the package does not import mpi4py; the compiled libphase
extension is loaded only by the functions that evaluate densities.
"""

from phasic_mpi.data import Observations
from phasic_mpi.graph import Graph
from phasic_mpi.models import (
    MODELS,
    block_counting,
    erlang,
    exponential,
    isolation_migration,
    kingman,
    rabbits,
    sfs_rewards,
)

__version__ = "0.1.0"

__all__ = [
    "Graph",
    "MODELS",
    "Observations",
    "__version__",
    "block_counting",
    "erlang",
    "exponential",
    "isolation_migration",
    "kingman",
    "rabbits",
    "sfs_rewards",
]
