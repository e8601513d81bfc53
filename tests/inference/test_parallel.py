"""Block layouts, layout-independent random streams and the launch check."""

from types import SimpleNamespace

import numpy as np
import pytest

from phasic_mpi.inference.parallel import block_layout, stream
from phasic_mpi.run.launch import LaunchError, check_launch, slurm_task_count


@pytest.mark.parametrize("n,size", [(13, 1), (13, 4), (5, 5), (3, 4), (100, 7)])
def test_blocks_are_contiguous_and_differ_by_at_most_one(n, size):
    layouts = [block_layout(n, size, r) for r in range(size)]
    counts = [lay.local_count for lay in layouts]
    assert sum(counts) == n and max(counts) - min(counts) <= 1
    starts = [lay.start for lay in layouts]
    assert starts == sorted(starts) and all(a.stop == b.start for a, b in zip(layouts, layouts[1:]))
    assert layouts[0].start == 0 and layouts[-1].stop == n


def test_streams_depend_only_on_their_ids():
    a = stream(7, 1, 42).normal(size=5)
    assert np.array_equal(a, stream(7, 1, 42).normal(size=5))
    assert not np.array_equal(a, stream(7, 1, 43).normal(size=5))
    assert not np.array_equal(a, stream(8, 1, 42).normal(size=5))


def test_launch_check_refuses_a_singleton_inside_a_many_task_srun_step():
    single = SimpleNamespace(size=1)
    with pytest.raises(LaunchError, match="--mpi=pmi2"):
        check_launch(single, {"SLURM_STEP_NUM_TASKS": "4"})
    check_launch(SimpleNamespace(size=4), {"SLURM_STEP_NUM_TASKS": "4"})  # a proper launch
    check_launch(single, {"SLURM_NTASKS": "4"})  # batch script, not an srun step: serial is allowed
    assert slurm_task_count({"SLURM_NTASKS": "8(x2)", "SLURM_STEP_ID": "0"}) == 8
    assert slurm_task_count({}) is None


def test_thread_limit_follows_cpus_per_task():
    from phasic_mpi.run.launch import cores_per_rank, launcher_name, limit_threads

    env = {"SLURM_CPUS_PER_TASK": "4"}
    assert cores_per_rank(env) == 4 and cores_per_rank({}) == 1
    env["OMP_NUM_THREADS"] = "2"  # the user's choice stands
    assert limit_threads(env, apply=False) == 4
    assert env["OMP_NUM_THREADS"] == "2" and env["OPENBLAS_NUM_THREADS"] == "4"
    assert launcher_name({"SLURM_STEP_ID": "0"}) == "srun"
    assert launcher_name({"PMI_RANK": "0"}) == "mpiexec (Hydra)"
    assert launcher_name({}) == "singleton"
