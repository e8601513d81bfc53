"""Refuse the impossible before any work: memory and time of the requested sizes.

An algorithm may say what a run will need with ``resources(n_params,
n_ranks, kept_iterations) -> Resources`` (SVGD and PT do): its largest arrays per rank, and a
*lower bound* of its time (work whose cost per unit is known from below,
such as the Stein kernel's pairs), and how many density rows a rank
evaluates per iteration. Given the density, :func:`check_feasible` times it
on a few prior draws (:func:`density_cost`) and adds that share, and
libphase's workspace, to the estimate. It compares them, on
every rank alike, with the memory this rank may use (the least of the
cgroup limit, ``MemAvailable`` and ``RLIMIT_AS``, shared by the ranks of one
host) and with :data:`MAX_SECONDS`, and raises
:class:`~phasic_mpi.errors.InfeasibleError` with the numbers. Estimates are
deliberately optimistic (refusing a feasible run would be the worse error):
a run that passes may still be too large, but a refused one cannot fit.
"""

from __future__ import annotations

import math
import os
import resource
import socket
import time
import warnings
from typing import Any, NamedTuple

import numpy as np

from phasic_mpi.errors import InfeasibleError
from phasic_mpi.inference.protocol import Resources
from phasic_mpi.run.launch import RankExit

__all__ = ["MAX_SECONDS", "WARN_SECONDS", "DensityCost", "Resources", "available_memory",
           "check_feasible", "density_cost", "format_bytes", "format_seconds",
           "seconds_per_iteration"]

MAX_SECONDS = 365 * 86400.0  # a lower bound beyond a year of one rank's time is refused
WARN_SECONDS = 86400.0  # beyond a day: one line on rank 0 before the run starts


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory() -> int | None:
    """Bytes this process may still allocate on its host (None: unknown).

    The least of: the cgroup's limit minus its usage (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``), the host's ``MemAvailable`` and the
    ``RLIMIT_AS`` soft limit.
    """
    found = []
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap = _read_int(limit)
        if cap is not None and cap < 2**60:  # v1 writes a huge number for "no limit"
            found.append(max(cap - (_read_int(usage) or 0), 0))
    host = _meminfo_available()
    if host is not None:
        found.append(host)
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        found.append(soft)
    return min(found) if found else None


def format_bytes(n: float) -> str:
    """``74.5 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover


def format_seconds(s: float) -> str:
    """``3.2 h``, ``41 days``, ``1.2e+06 years``."""
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.3g} {unit}"
    return f"{s:.3g} s"


class DensityCost(NamedTuple):
    """The density's measured cost (rank 0's, shared by every rank)."""

    seconds_per_row: float  # mean over a few batches of prior draws (0: unknown)
    scratch_bytes: float  # libphase's workspace of one call (0: not a phase-type posterior)
    rows: int  # rows timed


PROBE_BATCHES = (8, 16, 32)  # rows per timed batch, cut at the rank's rows per call
PROBE_SECONDS = 0.1  # no further batch once this much was spent


def _clock() -> float:
    return time.perf_counter()


def _scratch_bytes(density: Any, z: np.ndarray) -> float:
    """Bytes libphase keeps during one call at ``z``: the reverse sweep's stored
    state vectors (``stored_vectors x n_states`` doubles, at most its
    ``memory_limit``) and the O(states + edges) sweep workspaces. One call
    evaluates its rows one after another in one workspace, so this does not
    grow with the rows."""
    graph, data = getattr(density, "graph", None), getattr(density, "data", None)
    if graph is None or data is None or not getattr(data, "n_observations", 0):
        return 0.0
    from phasic_mpi.model import native

    info: dict[str, np.ndarray] = {}
    native.loglik(graph, data, density.to_theta(z), grad=True, info=info)
    vectors = float(np.max(info["stored_vectors"], initial=0))
    return 8.0 * (vectors * graph.n_states + 8 * graph.n_states + 4 * graph.n_edges)


def density_cost(density: Any, rows_per_call: int, comm: Any) -> DensityCost:
    """Time the density on rank 0 and share the result; a collective call.

    One untimed call (one-time set-up such as compiling the graph) is followed
    by batches of :data:`PROBE_BATCHES` prior draws (at most ``rows_per_call``
    rows, until :data:`PROBE_SECONDS` are spent), drawn from a fixed stream
    that no run uses. Prior draws are where SVGD starts and what PT's hot
    replicas sample; moves far into the tails (PT's early proposals) cost more
    and are not seen here, so the figure stays on the optimistic side. A
    density that fails here is left to fail in the run (cost unknown: 0).
    """
    cost = None
    if comm.rank == 0:
        try:
            cost = _probe(density, max(1, int(rows_per_call)))
        except RankExit:  # os._exit in the model: a failure of the rank, not of the probe
            raise
        except Exception:  # noqa: BLE001 - the run reports it, with its context
            cost = DensityCost(0.0, 0.0, 0)
    return comm.bcast(cost, root=0)


def _probe(density: Any, rows_per_call: int) -> DensityCost:
    rng = np.random.default_rng(20260101)
    density.evaluate(density.sample_prior_z(rng, 1))  # set-up, untimed
    spent, timed, largest = 0.0, 0, None
    for size in sorted({min(b, rows_per_call) for b in PROBE_BATCHES}):
        z = density.sample_prior_z(rng, size)
        t0 = _clock()
        density.evaluate(z)
        spent += _clock() - t0
        timed += size
        largest = z
        if spent >= PROBE_SECONDS:
            break
    return DensityCost(spent / timed, _scratch_bytes(density, largest), timed)


def check_feasible(algorithm: Any, n_params: int, comm: Any,
                   kept_iterations: int = 0, density: Any = None) -> Resources | None:
    """Raise :class:`InfeasibleError` on every rank if the run cannot fit; a collective call.

    An algorithm's optional ``resources(n_params, n_ranks, kept_iterations)``
    gives a :class:`~phasic_mpi.inference.protocol.Resources`.

    Parameters
    ----------
    algorithm : Algorithm
        Checked if it has ``resources(n_params, n_ranks)``; otherwise nothing is.
    n_params : int
        Parameters of the density.
    comm : Communicator
    kept_iterations : int
        Iterations whose history rank 0 keeps in memory (``checkpoint_every``
        with a run file, every iteration without).
    density : LogDensity, optional
        Timed on rank 0 (:func:`density_cost`): its cost per row times the
        rows the algorithm evaluates per iteration is added to the time, and
        libphase's workspace of one call to the memory.

    Returns
    -------
    Resources or None
        The estimate (None if the algorithm gives none), the density's share
        included.
    """
    estimate = getattr(algorithm, "resources", None)
    need = estimate(n_params, comm.size, kept_iterations) if estimate is not None else None
    # Each rank reports its host and what it may allocate; ranks on one host
    # share the host's memory. Every rank computes the same verdict.
    reports = comm.allgather((socket.gethostname(), available_memory()))
    if need is None:
        return None
    per_rank = []
    for host, free in reports:
        if free is not None:
            per_rank.append(free / sum(1 for h, _ in reports if h == host))
    name, limit = algorithm.name, min(per_rank) if per_rank else None
    _check_memory(name, need, limit, comm)  # before evaluating anything
    if density is not None and need.rows_per_iteration:
        cost = density_cost(density, min(need.rows_per_iteration, max(PROBE_BATCHES)), comm)
        per_row = cost.seconds_per_row * need.row_cost_factor
        extra = need.iterations * need.rows_per_iteration * per_row if per_row > 0 else 0.0
        need = need._replace(bytes_per_rank=need.bytes_per_rank + cost.scratch_bytes,
                             min_seconds=need.min_seconds + extra)
        _check_memory(name, need, limit, comm)
    if not math.isfinite(need.min_seconds) or need.min_seconds > MAX_SECONDS:
        raise InfeasibleError(
            f"{name}: {need.what} on {comm.size} rank(s) needs at least "
            f"{format_seconds(need.min_seconds)} per rank{_per_iteration(need)} (limit "
            f"{format_seconds(MAX_SECONDS)}); use fewer {_driver(name)} or more ranks")
    if comm.rank == 0 and need.min_seconds > WARN_SECONDS:
        warnings.warn(f"{name}: {need.what} on {comm.size} rank(s) needs at least "
                      f"{format_seconds(need.min_seconds)} per rank{_per_iteration(need)}",
                      RuntimeWarning, stacklevel=3)
    return need


def _check_memory(name: str, need: Resources, limit: float | None, comm: Any) -> None:
    if limit is not None and need.bytes_per_rank > limit:
        raise InfeasibleError(
            f"{name}: {need.what} on {comm.size} rank(s) needs about "
            f"{format_bytes(need.bytes_per_rank)} per rank, but a rank may use "
            f"{format_bytes(limit)}; use fewer {_driver(name)} or more ranks/nodes")


def seconds_per_iteration(need: Resources) -> float:
    """The estimate of one iteration's time on one rank (NaN: no iterations known)."""
    if not need.iterations or not math.isfinite(need.iterations):
        return math.nan
    return need.min_seconds / need.iterations


def _per_iteration(need: Resources) -> str:
    per = seconds_per_iteration(need)
    return f" (about {format_seconds(per)} per iteration)" if math.isfinite(per) else ""


def _driver(name: str) -> str:
    return {"svgd": "particles", "pt": "rounds or replicas"}.get(name, "iterations")
