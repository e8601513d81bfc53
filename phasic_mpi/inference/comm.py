"""The communicator facade: every collective the algorithms and the run loop use.

Two implementations with one interface: :class:`SerialCommunicator` (one
process, no MPI needed at all) and :class:`MPICommunicator` (wraps an mpi4py
communicator). Algorithms never import mpi4py; they call these methods, whose
results are deterministic: rows are gathered in global order and reduced
there, integer sums, minima and maxima are exact, so every result has the
same bits for any number of ranks.

:func:`world` picks the implementation: MPI's world communicator when
mpi4py and an MPI library load, the serial one otherwise; if the process was
started as one of several MPI ranks but MPI cannot load, it raises
:class:`MPIUnavailableError` with a one-line message saying how to install
an MPI library.

Every communicator also measures itself (measurement only, never in
results): :meth:`Communicator.traffic` gives the seconds spent in, the bytes
handed to, and the number of calls of each operation since it was made
(``perf_counter`` around each call of :class:`MPICommunicator`; zeros for
the serial one, which does not communicate).
"""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import numpy as np

from phasic_mpi.errors import MPIUnavailableError

__all__ = ["Communicator", "MPICommunicator", "MPIUnavailableError", "OPERATIONS",
           "SerialCommunicator", "Traffic", "as_communicator", "launched_ranks",
           "mpi_available", "traffic_report", "world"]

INSTALL_HINT = ("install one with pip install 'phasic-mpi[mpi]' (MPICH), or build mpi4py "
                "against the site MPI (pip install --no-binary mpi4py mpi4py)")


# The operations a communicator counts (the methods of the same names).
OPERATIONS = ("barrier", "bcast", "gather", "allgather", "allgather_rows", "gather_rows",
              "allgather_values", "allreduce_exact", "sendrecv")


class Traffic(NamedTuple):
    """One operation's use of a communicator (measurement only)."""

    seconds: float = 0.0  # wall time inside the calls
    bytes_sent: int = 0  # bytes of this rank's array argument (0 for pickled objects)
    calls: int = 0


F = TypeVar("F", bound=Callable[..., Any])


def _metered(payload: str | None = None) -> Callable[[F], F]:
    """Count a method's seconds, calls and bytes (the size of its argument ``payload``)."""

    def wrap(method: F) -> F:
        op = method.__name__
        where = list(inspect.signature(method).parameters).index(payload) - 1 if payload else -1

        @functools.wraps(method)
        def counted(self: "Communicator", *args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                value = args[where] if 0 <= where < len(args) else kwargs.get(payload or "")
                sent = 0 if value is None else np.asarray(value).nbytes
                seconds, total, calls = self._traffic.get(op, (0.0, 0, 0))
                self._traffic[op] = (seconds + time.perf_counter() - t0, total + sent, calls + 1)

        return counted  # type: ignore[return-value]

    return wrap


def traffic_report(per_rank: list[dict[str, Traffic]], prefix: str = "comm",
                   operations: tuple[str, ...] = OPERATIONS) -> dict[str, list]:
    """Run diagnostics from every rank's :meth:`Communicator.traffic`: per rank,
    ``<prefix>_time_s`` (seconds) and ``<prefix>_bytes_sent`` summed over ``operations``."""
    return {f"{prefix}_time_s": [sum(rank[op].seconds for op in operations) for rank in per_rank],
            f"{prefix}_bytes_sent": [sum(rank[op].bytes_sent for op in operations)
                                     for rank in per_rank]}


class Communicator:
    """What a collective step may do; see the two implementations."""

    rank: int = 0
    size: int = 1
    _traffic: dict[str, tuple[float, int, int]]

    # The run loop's stop request (a signal number, 0 for none) on this rank, for an
    # algorithm that carries it inside a collective it makes anyway (see stop_request).
    _stop_source: Callable[[], int | None] | None = None

    def watch_stop(self, source: Callable[[], int | None] | None) -> None:
        """Let :meth:`stop_request` read this rank's stop request from ``source`` (None: stop).

        The run loop sets it for the length of a run. An algorithm that
        gathers something every step anyway packs :meth:`stop_request` into
        that payload and hands the maximum over the ranks (the same on every
        rank: it was gathered) back to the loop, which then needs no
        collective of its own to agree on a signal.
        """
        self._stop_source = source

    def stop_request(self) -> int:
        """This rank's stop request now: a signal number, or 0 (no source, no signal)."""
        source = self._stop_source
        return int(source() or 0) if source is not None else 0

    def traffic(self) -> dict[str, Traffic]:
        """Seconds, bytes sent and calls of each of :data:`OPERATIONS` so far
        (this rank; a :meth:`dup` starts from zero)."""
        counted = getattr(self, "_traffic", {})
        return {op: Traffic(*counted.get(op, (0.0, 0, 0))) for op in OPERATIONS}

    def dup(self) -> "Communicator":
        """A duplicate to work on (free it with :meth:`free`)."""
        raise NotImplementedError

    def free(self) -> None:
        """Release a duplicate."""

    def barrier(self) -> None:
        """Wait until every rank arrives."""

    def bcast(self, obj: Any, root: int = 0) -> Any:
        """``root``'s object on every rank (pickled: small objects only)."""
        raise NotImplementedError

    def gather(self, obj: Any, root: int = 0) -> list | None:
        """Every rank's object in rank order on ``root``, None elsewhere."""
        raise NotImplementedError

    def allgather(self, obj: Any) -> list:
        """Every rank's object in rank order, on every rank."""
        raise NotImplementedError

    def allgather_rows(self, layout: Any, local: np.ndarray) -> np.ndarray:
        """Every rank's block of float64 rows, in global order, on every rank
        (one ``Allgather`` if the blocks are equal, else one ``Allgatherv``)."""
        raise NotImplementedError

    def gather_rows(self, layout: Any, local: np.ndarray, root: int = 0) -> np.ndarray | None:
        """Like :meth:`allgather_rows`, only ``root`` receives (None elsewhere)."""
        raise NotImplementedError

    def allgather_values(self, local: np.ndarray) -> np.ndarray:
        """Every rank's 1-D float64 array, concatenated in rank order."""
        raise NotImplementedError

    def allreduce_exact(self, values: Any, op: str) -> np.ndarray:
        """Element-wise exact ``"sum"`` (int64), ``"min"`` or ``"max"`` (float64)."""
        raise NotImplementedError

    def sendrecv(self, send: np.ndarray, peer: int, tag: int) -> np.ndarray:
        """Send float64 ``send`` to ``peer`` and receive as many values from it."""
        raise NotImplementedError

    def abort(self, code: int = 1) -> None:
        """End every rank of the job (MPI) or raise SystemExit (serial)."""
        raise SystemExit(code)

    def describe(self) -> dict[str, Any]:
        """Run-file attributes describing the communication library."""
        return {"n_ranks": self.size}


def _rows(local: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(local, dtype=np.float64)


class SerialCommunicator(Communicator):
    """One process: every collective is a copy (no MPI library needed)."""

    rank, size = 0, 1

    def dup(self) -> "SerialCommunicator":
        return self

    def bcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def gather(self, obj: Any, root: int = 0) -> list:
        return [obj]

    def allgather(self, obj: Any) -> list:
        return [obj]

    def allgather_rows(self, layout: Any, local: np.ndarray) -> np.ndarray:
        return _rows(local).copy()

    def gather_rows(self, layout: Any, local: np.ndarray, root: int = 0) -> np.ndarray:
        return _rows(local).copy()

    def allgather_values(self, local: np.ndarray) -> np.ndarray:
        return _rows(local).copy()

    def allreduce_exact(self, values: Any, op: str) -> np.ndarray:
        return np.array(values, dtype=np.int64 if op == "sum" else np.float64)

    def sendrecv(self, send: np.ndarray, peer: int, tag: int) -> np.ndarray:
        raise RuntimeError("sendrecv on a serial communicator: there is no other rank")

    def describe(self) -> dict[str, Any]:
        return {"n_ranks": 1, "mpi_library": "none (serial)"}


class MPICommunicator(Communicator):
    """An mpi4py communicator behind the facade's methods."""

    def __init__(self, comm: Any) -> None:
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._traffic = {}

    def dup(self) -> "MPICommunicator":
        return MPICommunicator(self.comm.Dup())

    def free(self) -> None:
        self.comm.Free()

    @_metered()
    def barrier(self) -> None:
        self.comm.Barrier()

    @_metered()
    def bcast(self, obj: Any, root: int = 0) -> Any:
        return self.comm.bcast(obj, root=root)

    @_metered()
    def gather(self, obj: Any, root: int = 0) -> list | None:
        return self.comm.gather(obj, root=root)

    @_metered()
    def allgather(self, obj: Any) -> list:
        return self.comm.allgather(obj)

    @_metered("local")
    def allgather_rows(self, layout: Any, local: np.ndarray) -> np.ndarray:
        local = _rows(local)
        width = int(np.prod(local.shape[1:], dtype=np.int64))
        out = np.empty((layout.n,) + local.shape[1:], dtype=np.float64)
        if np.all(layout.counts == layout.counts[0]):  # equal blocks: no counts to pass or check
            self.comm.Allgather(local, out)
        else:
            self.comm.Allgatherv(local, [out, layout.counts * width, layout.displs * width,
                                         self._MPI.DOUBLE])
        return out

    @_metered("local")
    def gather_rows(self, layout: Any, local: np.ndarray, root: int = 0) -> np.ndarray | None:
        local = _rows(local)
        width = int(np.prod(local.shape[1:], dtype=np.int64))
        if self.rank != root:
            self.comm.Gatherv(local, None, root=root)
            return None
        out = np.empty((layout.n,) + local.shape[1:], dtype=np.float64)
        self.comm.Gatherv(local, [out, layout.counts * width, layout.displs * width,
                                  self._MPI.DOUBLE], root=root)
        return out

    @_metered("local")
    def allgather_values(self, local: np.ndarray) -> np.ndarray:
        local = _rows(local)
        counts = np.array(self.comm.allgather(local.size), dtype=np.int64)
        out = np.empty(int(counts.sum()))
        displs = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self.comm.Allgatherv(local, [out, counts, displs, self._MPI.DOUBLE])
        return out

    @_metered("values")
    def allreduce_exact(self, values: Any, op: str) -> np.ndarray:
        MPI = self._MPI
        local = np.asarray(values, dtype=np.int64 if op == "sum" else np.float64)
        out = np.empty_like(local)
        self.comm.Allreduce(local, out, op={"sum": MPI.SUM, "min": MPI.MIN, "max": MPI.MAX}[op])
        return out

    @_metered("send")
    def sendrecv(self, send: np.ndarray, peer: int, tag: int) -> np.ndarray:
        send = _rows(send)
        recv = np.empty_like(send)
        self.comm.Sendrecv(send, dest=peer, sendtag=tag, recvbuf=[recv, self._MPI.DOUBLE],
                           source=peer, recvtag=tag)
        return recv

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)

    def describe(self) -> dict[str, Any]:
        import mpi4py

        return {"n_ranks": self.size,
                "mpi_library": self._MPI.Get_library_version().strip().splitlines()[0],
                "mpi4py_version": mpi4py.__version__}


# Environment variables through which launchers announce the number of ranks.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS",
                   "SLURM_STEP_NUM_TASKS")


def launched_ranks(environ: Any = None) -> int:
    """How many ranks the launcher started (1 if not started by one)."""
    env = os.environ if environ is None else environ
    for key in _SIZE_VARIABLES:
        try:
            value = int(env.get(key, ""))
        except ValueError:
            continue
        if value > 1:
            return value
    return 1


def mpi_available() -> bool:
    """Whether mpi4py and an MPI library load (initialises MPI if they do)."""
    try:
        from mpi4py import MPI  # noqa: F401
    except (ImportError, RuntimeError, OSError):
        return False
    return True


def world() -> Communicator:
    """The job's world communicator, or the serial one where MPI is absent.

    Raises
    ------
    MPIUnavailableError
        The launcher started several ranks but no MPI library loads.
    """
    if mpi_available():
        from mpi4py import MPI

        return MPICommunicator(MPI.COMM_WORLD)
    ranks = launched_ranks()
    if ranks > 1:
        raise MPIUnavailableError(f"started as {ranks} MPI ranks, but no MPI library could be "
                                  f"loaded: {INSTALL_HINT}")
    return SerialCommunicator()


def as_communicator(comm: Any = None) -> Communicator:
    """A facade for ``comm``: None means :func:`world`; mpi4py communicators are wrapped."""
    if comm is None:
        return world()
    if isinstance(comm, Communicator):
        return comm
    return MPICommunicator(comm)
