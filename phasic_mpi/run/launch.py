"""How the job was launched: refuse launches that cannot work, keep thread
pools within a rank's cores, and describe the launch for the run file.

mpi4py is imported lazily: importing this module never initialises MPI.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["LaunchError", "check_launch", "cores_per_rank", "launch_info", "launcher_name",
           "limit_threads", "slurm_task_count", "world"]


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
