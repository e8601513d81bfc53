"""Refuse the impossible before any work: memory and time of the requested sizes.

An algorithm may say what a run will need with ``resources(n_params,
n_ranks, kept_iterations) -> Resources`` (SVGD and PT do): its largest arrays per rank, and a
*lower bound* of its time (work whose cost per unit is known from below,
such as the Stein kernel's pairs). :func:`check_feasible` compares them, on
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
import warnings
from typing import Any

from phasic_mpi.errors import InfeasibleError
from phasic_mpi.inference.protocol import Resources

__all__ = ["MAX_SECONDS", "WARN_SECONDS", "Resources", "available_memory", "check_feasible",
           "format_bytes", "format_seconds"]

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


def check_feasible(algorithm: Any, n_params: int, comm: Any,
                   kept_iterations: int = 0) -> Resources | None:
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

    Returns
    -------
    Resources or None
        The estimate (None if the algorithm gives none).
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
    name = algorithm.name
    if per_rank and need.bytes_per_rank > min(per_rank):
        raise InfeasibleError(
            f"{name}: {need.what} on {comm.size} rank(s) needs about "
            f"{format_bytes(need.bytes_per_rank)} per rank, but a rank may use "
            f"{format_bytes(min(per_rank))}; use fewer {_driver(name)} or more ranks/nodes")
    if not math.isfinite(need.min_seconds) or need.min_seconds > MAX_SECONDS:
        raise InfeasibleError(
            f"{name}: {need.what} on {comm.size} rank(s) needs at least "
            f"{format_seconds(need.min_seconds)} per rank (limit "
            f"{format_seconds(MAX_SECONDS)}); use fewer {_driver(name)} or more ranks")
    if comm.rank == 0 and need.min_seconds > WARN_SECONDS:
        warnings.warn(f"{name}: {need.what} on {comm.size} rank(s) needs at least "
                      f"{format_seconds(need.min_seconds)} per rank", RuntimeWarning,
                      stacklevel=3)
    return need


def _driver(name: str) -> str:
    return {"svgd": "particles", "pt": "rounds or replicas"}.get(name, "iterations")
