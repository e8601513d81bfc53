"""Configs: TOML files parsed and validated at the edge, and the loading of
the models and data they name (a config is as trusted as a script)."""

from phasic_mpi.config.validate import *  # noqa: F401,F403
from phasic_mpi.config.validate import __all__
