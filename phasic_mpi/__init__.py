"""phasic_mpi: exact phase-type distributions, likelihoods and gradients,
and Bayesian inference for their rates on one core or many MPI ranks.

Fit a model in a few lines (the same script runs under ``mpiexec``)::

    import phasic_mpi as pm
    result = pm.svgd(graph, times, priors={"rate": pm.Gamma(2.0, 1.0)})
    if result is not None:  # rank 0
        print(result.to_inference_data().posterior)

Importing the package does not import mpi4py (the parallel parts import it
when they run); the compiled libphase extension is loaded only by the
functions that evaluate densities.
"""

from phasic_mpi.version import __version__

from phasic_mpi.config import load_config
from phasic_mpi.errors import ConfigError, RunInterrupted
from phasic_mpi.model.data import Observations
from phasic_mpi.model.graph import Graph
from phasic_mpi.model import models
from phasic_mpi.model.models import (
    MODELS,
    block_counting,
    erlang,
    exponential,
    isolation_migration,
    kingman,
    rabbits,
    sfs_rewards,
    structured_block_counting,
)
from phasic_mpi.inference.posterior import FunctionDensity, LogDensity, Posterior, PosteriorEval
from phasic_mpi.inference.priors import Exponential, Gamma, HalfNormal, LogNormal, Normal, Prior, Uniform, make_prior
from phasic_mpi.inference.transforms import Identity, Log, Logit, Transform, make_transform

__all__ = [
    "__version__",
    "block_counting",
    "ConfigError",
    "erlang",
    "expected_sfs",
    "Exponential",
    "exponential",
    "fit_map",
    "fit_mle",
    "fold_matrix",
    "FunctionDensity",
    "Gamma",
    "Graph",
    "HalfNormal",
    "Identity",
    "isolation_migration",
    "kingman",
    "LikelihoodTerm",
    "load_config",
    "load_study",
    "Log",
    "LogDensity",
    "Logit",
    "LogNormal",
    "make_prior",
    "make_transform",
    "MapResult",
    "MODELS",
    "models",
    "MomentData",
    "Normal",
    "Observations",
    "OutputSettings",
    "Posterior",
    "posterior",
    "PosteriorEval",
    "Prior",
    "pt",
    "PTSettings",
    "rabbits",
    "read_run",
    "read_study",
    "register_algorithm",
    "Result",
    "run_study",
    "RunInterrupted",
    "sample",
    "SerialCommunicator",
    "sfs_rewards",
    "SFSData",
    "simulate_sfs",
    "structured_block_counting",
    "svgd",
    "SVGDSettings",
    "Transform",
    "Uniform",
]

# Studies are loaded on first use: they pull in the summaries (scipy.stats).
_LAZY = {"load_study": "phasic_mpi.study.spec", "read_study": "phasic_mpi.io.studyfile",
         "run_study": "phasic_mpi.study.runner",
         # the inference API and its settings (SVGD and PT pull in scipy)
         "svgd": "phasic_mpi.run.api", "pt": "phasic_mpi.run.api", "sample": "phasic_mpi.run.api",
         "posterior": "phasic_mpi.run.api", "Result": "phasic_mpi.run.result",
         "SVGDSettings": "phasic_mpi.inference.svgd", "PTSettings": "phasic_mpi.inference.pt",
         "OutputSettings": "phasic_mpi.run.settings",
         "SerialCommunicator": "phasic_mpi.inference.comm", "read_run": "phasic_mpi.io.runfile",
         "register_algorithm": "phasic_mpi.inference.registry",
         "fit_map": "phasic_mpi.run.api", "fit_mle": "phasic_mpi.run.api",
         "MapResult": "phasic_mpi.inference.laplace",
         "SFSData": "phasic_mpi.model.sfs", "simulate_sfs": "phasic_mpi.model.sfs",
         "expected_sfs": "phasic_mpi.model.sfs", "fold_matrix": "phasic_mpi.model.sfs",
         "MomentData": "phasic_mpi.model.terms", "LikelihoodTerm": "phasic_mpi.model.terms"}
_RENAMED = {"register_algorithm": "register"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'phasic_mpi' has no attribute {name!r}")
