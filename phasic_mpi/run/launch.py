"""How the job was launched: refuse launches that cannot work, keep thread
pools within a rank's cores, and describe the launch for the run file.

mpi4py is imported lazily: importing this module never initialises MPI.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from phasic_mpi.errors import ConfigError, UserError

__all__ = ["LaunchError", "RankExit", "abort_on_failure", "check_launch", "cores_per_rank",
           "launch_info", "launcher_name", "limit_threads", "native_exit_guard", "output_lock",
           "slurm_task_count", "world"]


class LaunchError(RuntimeError):
    """The job was started in a way that cannot work (e.g. the wrong srun --mpi)."""


def world() -> Any:
    """The world communicator (MPI's, or the serial one where MPI cannot load)."""
    from phasic_mpi.inference.comm import world as comm_world

    return comm_world()


def slurm_task_count(environ: Any = None) -> int | None:
    """Number of tasks of the current srun step, or None outside an srun step.

    ``SLURM_NTASKS`` alone describes the allocation, not the step: a batch
    script may legitimately run a serial command in a many-task allocation.
    """
    env = os.environ if environ is None else environ
    keys = ["SLURM_STEP_NUM_TASKS"]
    if env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID"):
        keys.append("SLURM_NTASKS")
    for key in keys:
        value = env.get(key)
        if value:
            try:
                return int(value.split("(")[0])
            except ValueError:
                continue
    return None


def check_launch(comm: Any = None, environ: Any = None) -> None:
    """Refuse a launch that cannot be what the user meant.

    Under ``srun`` with several tasks, an MPI library that does not talk to
    SLURM's PMI starts every task as a singleton of size 1: each would run the
    whole job alone and they would overwrite each other's output.
    """
    comm = world() if comm is None else comm
    tasks = slurm_task_count(environ)
    if comm.size == 1 and tasks is not None and tasks > 1:
        raise LaunchError(
            f"MPI reports 1 process but SLURM started {tasks} tasks: every task would run "
            "the whole job alone. Launch with the PMI plugin of your MPI library, e.g. "
            "`srun --mpi=pmi2 phasic-mpi run ...` (MPICH) or `srun --mpi=pmix ...` (Open MPI)."
        )


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def cores_per_rank(environ: Any = None) -> int:
    """Cores this rank may use: ``SLURM_CPUS_PER_TASK`` under SLURM, else 1."""
    env = os.environ if environ is None else environ
    for key in ("SRUN_CPUS_PER_TASK", "SLURM_CPUS_PER_TASK"):
        try:
            return max(1, int(env.get(key, "")))
        except ValueError:
            continue
    return 1


def limit_threads(environ: Any = None, *, apply: bool = True) -> int:
    """Keep BLAS and OpenMP pools of this rank within its cores.

    Several ranks per node each starting a pool of all the node's cores
    oversubscribe it many times over. The environment variables are set for
    libraries loaded later (only where the user left them unset), and the
    pools already loaded (numpy's OpenBLAS) are limited with threadpoolctl
    (``apply=False`` only computes and sets the variables). Returns the limit.
    """
    env = os.environ if environ is None else environ
    n = cores_per_rank(env)
    for key in THREAD_VARIABLES:
        env.setdefault(key, str(n))
    if not apply:
        return n
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a declared dependency
        return n
    threadpool_limits(limits=n)
    return n


def launcher_name(environ: Any = None) -> str:
    """How the ranks were started, from the launcher's environment variables."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID"):
        return "srun"
    if any(k.startswith("OMPI_COMM_WORLD") for k in env):
        return "mpirun (Open MPI)"
    if env.get("PMI_RANK") is not None or env.get("HYDRA_CONTROL_FD") is not None:
        return "mpiexec (Hydra)"
    return "singleton"


def launch_info(comm: Any) -> dict[str, Any] | None:
    """Launcher, nodes and ranks per node (collective; the dict on rank 0)."""
    import platform

    hosts = comm.gather(platform.node(), root=0)
    if hosts is None:
        return None
    per_node: dict[str, int] = {}
    for host in hosts:
        per_node[host] = per_node.get(host, 0) + 1
    info = {
        "launcher": launcher_name(),
        "nodes": sorted(per_node),
        "ranks_per_node": dict(sorted(per_node.items())),
        "threads_per_rank": cores_per_rank(),
    }
    for key in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_CPUS_PER_TASK"):
        if os.environ.get(key):
            info[key.lower()] = os.environ[key]
    return info


# -- failures end the job loudly ------------------------------------------------


class RankExit(RuntimeError):
    """A rank's work tried to end its process (``sys.exit``, ``os._exit``) mid-run."""


def _initialised_world() -> Any:
    """COMM_WORLD if mpi4py is imported and MPI is initialised (never initialises it)."""
    MPI = sys.modules.get("mpi4py.MPI")
    try:
        if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized():
            return MPI.COMM_WORLD
    except Exception:  # noqa: BLE001 - a broken MPI must not hide the original failure
        pass
    return None


def failure_lines(exc: BaseException) -> list[str]:
    """What a rank says about ``exc``: one line for expected failures, else the traceback.

    Expected: errors in the user's input or files (ConfigError, OSError such
    as a full disk or a held lock), :class:`RankExit`, and what is not an
    ``Exception`` (``KeyboardInterrupt``). The last line is
    always ``<type>: <reason>``.
    """
    if isinstance(exc, (ConfigError, OSError, RankExit)) or not isinstance(exc, Exception):
        return [f"{type(exc).__name__}: {exc}" if str(exc) else
                f"{type(exc).__name__} raised during the run"]
    return "".join(traceback.format_exception(exc)).rstrip("\n").split("\n")


def _as_failure(exc: BaseException) -> BaseException:
    """SystemExit and os._exit from a rank's work are failures, whatever their status."""
    if isinstance(exc, SystemExit):
        return RankExit(f"sys.exit({exc.code!r}) was called during the run (by a user model?); "
                        "a run ends only by finishing, failing or a signal")
    return exc


@contextmanager
def _exit_guard() -> Iterator[None]:
    """Make ``os._exit`` in this process raise :class:`RankExit` instead.

    Under MPICH's mpiexec a rank that vanishes with status 0 makes the whole
    job exit 0 (the others are killed), so a user model calling ``os._exit(0)``
    would turn a failed run into a success. Forked children (multiprocessing)
    keep the real ``os._exit``.
    """
    real, pid = os._exit, os.getpid()

    def guarded(status: int) -> NoReturn:
        if os.getpid() != pid:
            real(status)
        raise RankExit(f"os._exit({status}) was called during the run (by a user model?)")

    os._exit = guarded  # type: ignore[assignment]
    try:
        yield
    finally:
        os._exit = real  # type: ignore[assignment]


def _mpi_abort_pointer(world_: Any) -> tuple[int, int]:
    """``(address of MPI_Abort, COMM_WORLD's handle)`` for the native exit guard,
    or ``(0, 0)`` where they cannot be found (the guard then ends with _exit(1))."""
    import ctypes

    MPI = sys.modules.get("mpi4py.MPI")
    try:
        # dlsym on mpi4py's extension module searches the MPI library it links
        address = ctypes.cast(ctypes.CDLL(MPI.__file__).MPI_Abort, ctypes.c_void_p).value
        return int(address or 0), int(MPI._handleof(world_))
    except Exception:  # noqa: BLE001 - no MPI, an unusual build: exit(1) alone
        return 0, 0


@contextmanager
def native_exit_guard() -> Iterator[None]:
    """While the block runs, a C ``exit()`` in this process (a compiled user
    extension, ``ctypes``' libc ``exit``) fails the job instead of ending it.

    Under MPICH's mpiexec a rank that exits with status 0 mid-run makes the
    whole job exit 0. The guard (``phasic_mpi._exitguard``, a C exit handler)
    prints ``phasic-mpi: error: rank R exited (status S) during a run`` and
    calls ``MPI_Abort(COMM_WORLD, 1)`` (``_exit(1)`` without MPI). Outside the
    block it does nothing. ``_exit()`` from native code, ``quick_exit()`` and
    ``kill -9`` run no exit handlers and cannot be intercepted: the run file's
    ``complete`` attribute, checked by the job scripts, tells them. Nested
    blocks keep the guard armed until the outermost one ends.
    """
    try:
        from phasic_mpi._exitguard import lib
    except ImportError:  # an old build without the helper: no guard
        yield
        return
    armed_before = bool(lib.exit_guard_is_armed())
    if not armed_before:
        world_ = _initialised_world()
        rank = world_.Get_rank() if world_ is not None else 0
        address, handle = _mpi_abort_pointer(world_) if world_ is not None else (0, 0)
        from phasic_mpi._exitguard import ffi

        lib.exit_guard_arm(rank, ffi.cast("void *", address), handle)
    try:
        yield
    finally:
        if not armed_before:
            lib.exit_guard_disarm()


@contextmanager
def abort_on_failure(comm: Any = None, *, grace: float = 0.3) -> Iterator[None]:
    """End the whole job when anything escapes a rank's work.

    Any ``BaseException`` but a :class:`~phasic_mpi.errors.UserError` (which
    every rank raises alike and the command line reports once; see
    ``cli.main._report``), ``SystemExit``, ``KeyboardInterrupt`` and
    ``os._exit`` from user code included, becomes, with more than one rank,
    ``[rank r] <reason>`` on stderr and ``comm.Abort(1)``: the job ends at once
    with status 1 instead of the other ranks waiting in a collective. On one
    rank (or before MPI is initialised) the exception propagates, with
    ``SystemExit`` turned into :class:`RankExit` so that ``sys.exit(0)`` in a
    model can never report success.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``COMM_WORLD`` once MPI is initialised (looked up at failure
        time: entering the block does not initialise MPI).
    grace : float
        Seconds to let the launcher forward the message before aborting.
    """
    try:
        with _exit_guard():
            yield
    except UserError:
        # raised alike on every rank (validation is collective): the command line
        # reports it once and exits 2, or aborts if the ranks do not all agree
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure must end the job
        failure = _as_failure(exc)
        world_ = comm if comm is not None else _initialised_world()
        if world_ is not None and world_.Get_size() > 1:
            rank = world_.Get_rank()
            sys.stderr.write("".join(f"[rank {rank}] {line}\n" for line in failure_lines(failure)))
            sys.stderr.flush()
            time.sleep(grace)  # Abort tears down the launcher's I/O forwarding with the job
            world_.Abort(1)
            os._exit(1)  # MPICH's Abort may return before the launcher kills this rank
        if failure is exc:
            raise
        raise failure from None


# -- one run per output ------------------------------------------------------------


@contextmanager
def output_lock(path: str | os.PathLike | None, comm: Any) -> Iterator[None]:
    """Hold the run lock of output ``path`` on rank 0 for the block (collective).

    Taken before the output's existence is checked and held until the run
    file is closed, so two runs on one path (and so one checkpoint) can never
    interleave: the second fails at once, on every rank alike, with a
    :class:`~phasic_mpi.errors.ConfigError` naming the path. Skipped for
    ``path=None`` (nothing is written) and where ``HDF5_USE_FILE_LOCKING=FALSE``
    says that locks do not work.
    """
    from phasic_mpi.io.files import RunLock, RunLockError, locking_disabled

    lock, problem = None, None
    if comm.rank == 0 and path is not None and not locking_disabled():
        path = os.path.abspath(os.fspath(path))
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lock = RunLock(path)
            lock.acquire()
        except (RunLockError, OSError) as exc:
            lock, problem = None, f"output.path: {exc}"
    problem = comm.bcast(problem, root=0)
    if problem:
        raise ConfigError(problem)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
