"""The Python inference API: a model and data in, a :class:`Result` out.

::

    import phasic_mpi as pm
    result = pm.svgd(graph, times, priors={"rate": pm.Gamma(2.0, 1.0)}, particles=128)
    if result is not None:                   # rank 0 (always, on one process)
        idata = result.to_inference_data()   # ArviZ

Every function is a collective call: run the same script on one process or
under ``mpiexec -n P`` / ``srun`` and the result has the same bits for any P.
Settings are the config's keys with the config's defaults
(:class:`~phasic_mpi.inference.svgd.SVGDSettings`,
:class:`~phasic_mpi.inference.pt.PTSettings`); a run file is written only when
``out`` is given, and then checkpoints, ``resume`` and SIGTERM behave as with
``phasic-mpi run``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from phasic_mpi.errors import RunInterrupted
from phasic_mpi.inference.comm import as_communicator
from phasic_mpi.inference.posterior import FunctionDensity, Posterior
from phasic_mpi.inference.priors import DEFAULT_PRIOR
from phasic_mpi.inference.registry import algorithm_class
from phasic_mpi.model.graph import Graph
from phasic_mpi.run.driver import execute
from phasic_mpi.run.result import Result
from phasic_mpi.run.settings import OutputSettings
from phasic_mpi.settings import to_dict

__all__ = ["fit_map", "fit_mle", "posterior", "pt", "sample", "svgd"]


def posterior(model: Any, data: Any = None, *, priors: Any = None, transforms: Any = None,
              param_names: Sequence[str] | None = None) -> Any:
    """The target density for a model, data, priors and transforms.

    Parameters
    ----------
    model : Graph, LogDensity or callable
        A phase-type :class:`~phasic_mpi.model.graph.Graph` (with ``data``);
        a ready :class:`~phasic_mpi.inference.posterior.LogDensity` (used as
        it is: no ``data``, ``priors`` or ``transforms``); or a log-likelihood
        ``fn(theta) -> (loglik, grad)`` over ``(P, d)`` arrays (with
        ``param_names``; see :class:`~phasic_mpi.inference.posterior.FunctionDensity`).
    data : array_like or Observations
        Absorption times (a Graph model only).
    priors : mapping or sequence, optional
        By parameter name (``{"rate": pm.Gamma(2, 1)}`` or
        ``{"rate": {"dist": "gamma", "shape": 2, "rate": 1}}``), with an
        optional ``"default"`` for the others; missing ones get the config's
        default, LogNormal(0, 1).
    transforms : mapping, str or Transform, optional
        As for :class:`~phasic_mpi.inference.posterior.Posterior` (default:
        from each prior's support).
    param_names : sequence of str
        Names of a callable model's parameters.
    """
    if isinstance(model, Graph):
        if data is None:
            raise ValueError("data: a Graph model needs observations (an array of times or "
                             "an Observations)")
        return Posterior(model, data, _priors(priors, model.param_names), transforms)
    if data is not None or priors is not None or transforms is not None:
        if hasattr(model, "evaluate"):
            raise ValueError("data, priors, transforms: not allowed with a LogDensity model "
                             "(it brings its own)")
    if hasattr(model, "evaluate") and hasattr(model, "param_names"):
        return model
    if callable(model):
        if not param_names:
            raise ValueError("param_names: a log-likelihood function needs the names of its "
                             "parameters")
        names = tuple(param_names)
        return FunctionDensity(model, names, priors=_priors(priors, names),
                               transforms=transforms)
    raise TypeError(f"model: expected a Graph, a LogDensity or a log-likelihood function, "
                    f"got {type(model).__name__}")


def _priors(priors: Any, names: Sequence[str]) -> Any:
    """Complete a prior mapping with its ``default`` (or the config's default)."""
    if priors is None:
        priors = {}
    if not isinstance(priors, Mapping):
        return priors  # a sequence: one per parameter, checked by the density
    default = priors.get("default", DEFAULT_PRIOR)
    unknown = sorted(set(priors) - set(names) - {"default"})
    if unknown:
        raise ValueError(f"priors: unknown parameter {unknown[0]!r} (model parameters: "
                         f"{', '.join(names)})")
    return {name: priors.get(name, default) for name in names}


def sample(model: Any, data: Any = None, *, algorithm: str | Any = "svgd", priors: Any = None,
           transforms: Any = None, param_names: Sequence[str] | None = None,
           init: Any = None, out: str | os.PathLike | None = None, resume: bool = False,
           overwrite: bool = False, comm: Any = None, progress: str = "auto",
           checkpoint_every: int = 100, log_every: float = 10.0,
           **settings: Any) -> Result | None:
    """Run an inference algorithm; a collective call.

    Parameters
    ----------
    model, data, priors, transforms, param_names
        See :func:`posterior`.
    algorithm : str or settings object
        A registered algorithm's name (``"svgd"``, ``"pt"``, ``"map"``; settings
        from ``**settings``), or a settings object such as
        ``SVGDSettings(particles=128)``.
    init : Result, MapResult or (k, d) array, optional
        Warm start: a previous :class:`Result` (its draws), a
        :func:`fit_map` result (Laplace draws), or k points in
        parameter space; SVGD needs at least one per particle (evenly spaced
        rows are taken when there are more), PT gives slot g row g mod k,
        MAP starts its optimisations from the rows. Read on rank 0 only (where a previous result lives; the other ranks
        may pass None) and broadcast.
    out : path-like, optional
        Write a run file (the command line's format) with checkpoints.
    resume, overwrite : bool
        Continue from ``out``'s checkpoint; replace an existing ``out``.
    comm : Communicator or mpi4py communicator, optional
        Default: MPI's world communicator, or the serial one without MPI.
    progress, checkpoint_every, log_every
        The ``[output]`` settings.
    **settings
        The algorithm's settings (``particles=128``, ``iterations=2000``,
        ``schedule=callable``...), checked with the config's messages.

    Returns
    -------
    Result or None
        The result on rank 0; None on the other ranks. Without ``out``, a
        SIGTERM/SIGINT ends the run early with the result so far
        (``completed=False``).

    Raises
    ------
    ConfigError
        A setting out of its bounds (``svgd.particles: expected an integer >= 2, got 1``),
        or an output that exists (use ``overwrite`` or ``resume``).
    RunInterrupted
        On every rank, when a signal stopped a run with ``out`` after its
        checkpoint: run the script again with ``resume=True``.
    """
    density = posterior(model, data, priors=priors, transforms=transforms,
                        param_names=param_names)
    if isinstance(algorithm, str):
        chosen = algorithm_class(algorithm)(algorithm_class(algorithm).Settings(**settings))
    else:
        if settings:
            raise TypeError(f"settings given both as {type(algorithm).__name__} and as "
                            f"keywords ({', '.join(settings)})")
        chosen = algorithm_class(algorithm.section)(algorithm)
    output = OutputSettings(path=None if out is None else os.fspath(out),
                            checkpoint_every=checkpoint_every, progress=progress,
                            log_every=log_every)
    observations = getattr(density, "data", None)
    facade = as_communicator(comm)
    z0 = _shared_init(init, density, _points_needed(chosen), facade)
    outcome = execute(chosen, density, observations=observations, comm=facade, out=out,
                      resume=resume, overwrite=overwrite, output=output,
                      record=_record(chosen, output, density, observations), init=z0,
                      stop_hint="continue with resume=True")
    if not outcome.completed and outcome.path is not None:
        raise RunInterrupted(outcome.path, outcome.iteration, outcome.signal_name)
    if outcome.final is None:
        return None
    final = outcome.final
    return Result(algorithm=chosen.name, param_names=tuple(density.param_names),
                  draws=final.draws, sample_stats=final.sample_stats,
                  diagnostics=final.diagnostics, history=outcome.history or {},
                  final_z=final.final_z, path=outcome.path, completed=outcome.completed,
                  iteration=outcome.iteration, settings=chosen.settings,
                  observations=observations, independent=final.independent,
                  attrs=outcome.attrs or {}, graph=getattr(density, "graph", None),
                  seed=chosen.settings.seed, tol=getattr(density, "tol", None),
                  param_shapes=getattr(density, "param_shapes", None) or {},
                  terms=tuple(getattr(density, "terms", ())))


def svgd(model: Any, data: Any = None, **kwargs: Any) -> Result | None:
    """Stein variational gradient descent: :func:`sample` with ``algorithm="svgd"``.

    Settings (defaults as in ``[svgd]``): ``particles=64``, ``iterations=1000``,
    ``seed=0``, ``optimizer="adagrad"``, ``step_size=0.05``, ``decay=0.0``,
    ``schedule="inverse_time"`` (or a callable), ``bandwidth="median_subset"``,
    ``bandwidth_pairs=4096``, ``history_every=10``, ``ksd_every=50``.
    """
    return sample(model, data, algorithm="svgd", **kwargs)


def pt(model: Any, data: Any = None, **kwargs: Any) -> Result | None:
    """Parallel tempering: :func:`sample` with ``algorithm="pt"``.

    Settings (defaults as in ``[pt]``): ``replicas=5``, ``chains=4``,
    ``rounds=10``, ``warmup_rounds=6``, ``local_move="mala"``,
    ``local_steps=1``, ``step_size=0.5``, ``target_accept=0.0``,
    ``swap="nonreversible"``, ``adapt_ladder=True``, ``mass_matrix="auto"``,
    ``cold_steps=0`` (or ``"auto"``: chosen in warm-up), ``seed=0``.
    """
    return sample(model, data, algorithm="pt", **kwargs)


def fit_map(model: Any, data: Any = None, *, priors: Any = None, transforms: Any = None,
            param_names: Sequence[str] | None = None, **kwargs: Any) -> Any:
    """Posterior mode with a Laplace approximation, for a model given as to :func:`svgd`.

    ``kwargs`` go to :func:`phasic_mpi.inference.laplace.fit_map` (``starts``,
    ``seed``, ``comm``...). The result's Laplace draws can start SVGD or PT:
    ``pm.svgd(graph, data, init=pm.fit_map(graph, data))``.
    """
    from phasic_mpi.inference import laplace

    density = posterior(model, data, priors=priors, transforms=transforms,
                        param_names=param_names)
    return laplace.fit_map(density, **kwargs)


def fit_mle(model: Any, data: Any = None, *, priors: Any = None, transforms: Any = None,
            param_names: Sequence[str] | None = None, **kwargs: Any) -> Any:
    """Maximum likelihood (the prior ignored but for starts and transforms) with standard errors."""
    from phasic_mpi.inference import laplace

    density = posterior(model, data, priors=priors, transforms=transforms,
                        param_names=param_names)
    return laplace.fit_mle(density, **kwargs)


def _points_needed(algorithm: Any) -> int:
    if hasattr(algorithm, "n_start_points"):
        return int(algorithm.n_start_points)
    s = algorithm.settings
    return s.particles if algorithm.name == "svgd" else getattr(s, "chains", 1) * getattr(s, "replicas", 1)


def _shared_init(init: Any, density: Any, needed: int, comm: Any) -> np.ndarray | None:
    """Rank 0's warm-start points on every rank (an error in them raised on every rank)."""
    payload = None
    if comm.rank == 0 and init is not None:
        try:
            payload = (_init_points(init, density, needed), None)
        except (ValueError, TypeError) as exc:
            payload = (None, str(exc))
    payload = comm.bcast(payload, root=0)
    if payload is not None and payload[1] is not None:
        raise ValueError(payload[1])
    return None if payload is None else payload[0]


def _init_points(init: Any, density: Any, needed: int) -> np.ndarray:
    """Warm-start points in z: at most ``needed`` evenly spaced rows."""
    if hasattr(init, "initial_points"):  # a MapResult: Laplace draws in z
        z = np.asarray(init.initial_points(needed), dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != density.n_params:
            raise ValueError(f"init: the MAP result has {z.shape[-1]} parameters, the model "
                             f"{density.n_params}")
        return z
    if isinstance(init, Result):
        if tuple(init.param_names) != tuple(density.param_names):
            raise ValueError(f"init: the result's parameters {init.param_names} are not the "
                             f"model's {tuple(density.param_names)}")
        theta = init.theta
    else:
        theta = np.asarray(init, dtype=np.float64)
        if theta.ndim == 1:
            theta = theta[None, :]
    if theta.ndim != 2 or theta.shape[1] != density.n_params or len(theta) == 0:
        raise ValueError(f"init: expected points of shape (k, {density.n_params}), "
                         f"got {theta.shape}")
    if len(theta) > needed:
        theta = theta[np.linspace(0, len(theta) - 1, needed).round().astype(int)]
    z = density.to_z(theta)
    if not np.all(np.isfinite(z)):
        raise ValueError("init: some points lie outside the parameters' support")
    return z


def _record(algorithm: Any, output: OutputSettings, density: Any, observations: Any) -> dict:
    """The run's description for the file and checkpoint (JSON-able)."""
    settings = {k: (f"callable {getattr(v, '__qualname__', repr(v))}" if callable(v) else v)
                for k, v in to_dict(algorithm.settings).items()}
    source: dict[str, Any] = {"api": "phasic_mpi", "density": repr(density)[:500],
                              "param_names": list(density.param_names)}
    if observations is not None:
        digest = hashlib.sha256()
        for arr in (observations.exact, observations.weights, observations.right_censored,
                    observations.right_weights, observations.interval_lo,
                    observations.interval_hi, observations.interval_weights):
            digest.update(b"-" if arr is None else np.ascontiguousarray(arr, np.float64).tobytes())
        source["observations_sha256"] = digest.hexdigest()
    return {algorithm.name: settings, "output": to_dict(output), "source": source}
