"""Configs: TOML files parsed and validated at the edge, and the loading of
the models and data they name (a config is as trusted as a script)."""

from phasic_mpi.config.validate import *  # noqa: F401,F403
from phasic_mpi.config.validate import __all__


def __getattr__(name: str):
    # the algorithm tables import their algorithm modules: on first use only
    if name in ("SVGD", "PT"):
        from phasic_mpi.config import schema

        return getattr(schema, name)
    raise AttributeError(f"module 'phasic_mpi.config' has no attribute {name!r}")
