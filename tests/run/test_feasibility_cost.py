"""The feasibility estimate includes the density's own cost (issue 12, still-open
item 2): rank 0 times the density on a few prior draws, and the rows the
algorithm evaluates per iteration times that cost is added to the time, and
libphase's workspace of one call to the memory.

No test here measures time: the probe reads its clock through
``feasibility._clock``, which these tests replace by a clock that the density
itself advances (``n_obs`` microseconds per row), so every figure has an exact
oracle. The real predictive quality (estimate vs measured per-iteration time
on rabbits and Kingman(50)) is what ``benchmarks/bench_feasibility.py``
reports.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import phasic_mpi as pm
from phasic_mpi.errors import InfeasibleError
from phasic_mpi.inference.comm import SerialCommunicator
from phasic_mpi.inference.posterior import FunctionDensity
from phasic_mpi.inference.priors import Normal
from phasic_mpi.inference.pt import PTAlgorithm, PTSettings
from phasic_mpi.inference.resources import PT_ROW_COST_FACTOR, pt_resources, svgd_resources
from phasic_mpi.inference.svgd import SVGDAlgorithm, SVGDSettings
from phasic_mpi.model import models, native
from phasic_mpi.run import feasibility
from phasic_mpi.run.feasibility import check_feasible, density_cost, seconds_per_iteration

COMM = SerialCommunicator()


@pytest.fixture
def clock(monkeypatch):
    """A clock in seconds that only the densities below move."""
    now = [0.0]
    monkeypatch.setattr(feasibility, "_clock", lambda: now[0])
    return now


def costly(clock, n_obs, seconds_per_obs=1e-6, d=1):
    """A density whose every row costs ``n_obs * seconds_per_obs`` on ``clock``."""

    def loglik(theta):
        clock[0] += len(theta) * n_obs * seconds_per_obs
        return -0.5 * (theta ** 2).sum(axis=1), -theta

    return FunctionDensity(loglik, [f"x{i}" for i in range(d)], priors=[Normal(0, 1)] * d)


def svgd(particles, iterations=100):
    return SVGDAlgorithm(SVGDSettings(particles=particles, iterations=iterations))


def test_the_probe_reads_the_cost_per_row(clock):
    cost = density_cost(costly(clock, 50), 64, COMM)
    assert cost.seconds_per_row == pytest.approx(50e-6, rel=1e-12)
    assert cost.rows == 8 + 16 + 32 and cost.scratch_bytes == 0  # no libphase inside
    assert density_cost(costly(clock, 50), 5, COMM).rows == 5  # never more than a call's rows


def test_svgd_estimate_is_the_kernel_plus_rows_times_cost(clock):
    n, iterations, n_obs = 40, 100, 30
    need = check_feasible(svgd(n, iterations), 1, COMM, density=costly(clock, n_obs))
    kernel = svgd_resources(SVGDSettings(particles=n, iterations=iterations), 1, 1)
    assert need.min_seconds == pytest.approx(kernel.min_seconds + iterations * n * n_obs * 1e-6,
                                             rel=1e-12)
    assert seconds_per_iteration(need) == pytest.approx(need.min_seconds / iterations)


def test_estimate_grows_with_particles_observations_and_replicas(clock):
    def svgd_time(n, n_obs):
        return check_feasible(svgd(n), 1, COMM, density=costly(clock, n_obs)).min_seconds

    def pt_time(replicas, n_obs):
        algorithm = PTAlgorithm(PTSettings(replicas=replicas, chains=2, rounds=8))
        return check_feasible(algorithm, 1, COMM, density=costly(clock, n_obs)).min_seconds

    for time_of in (svgd_time, pt_time):
        grid = np.array([[time_of(n, n_obs) for n_obs in (1, 10, 100)] for n in (4, 16, 64)])
        assert (np.diff(grid, axis=0) > 0).all() and (np.diff(grid, axis=1) > 0).all(), grid


def test_pt_counts_one_call_per_local_step_and_leapfrog_step(clock):
    def rows(**kw):
        settings = PTSettings(replicas=4, chains=2, rounds=8, **kw)
        return pt_resources(settings, 2, 2).rows_per_iteration

    assert rows() == 4  # 8 slots on 2 ranks, one MALA step each
    assert rows(local_steps=3) == 12
    assert rows(local_move="hmc", leapfrog_steps=5, local_steps=2) == 40
    need = check_feasible(PTAlgorithm(PTSettings(replicas=4, chains=2, rounds=8)), 1, COMM,
                          density=costly(clock, 10))
    assert need.iterations == 2 ** 8  # scans
    floor = pt_resources(PTSettings(replicas=4, chains=2, rounds=8), 1, 1).min_seconds
    # PT's rows are proposals: PT_ROW_COST_FACTOR prior draws each
    assert need.min_seconds == pytest.approx(floor + 256 * 8 * PT_ROW_COST_FACTOR * 10e-6,
                                             rel=1e-12)


def test_an_expensive_density_is_refused_or_warned_about_with_its_share(clock):
    # 1 s per row: 1000 particles x 1e5 iterations = 1e8 s, more than a year
    with pytest.raises(InfeasibleError, match=r"^svgd: 1000 particles x 1 parameters on 1 "
                                              r"rank\(s\) needs at least 3\.17 years per rank "
                                              r"\(about 16\.7 min per iteration\)"):
        check_feasible(svgd(1000, 10**5), 1, COMM, density=costly(clock, 1, 1.0))
    with pytest.raises(InfeasibleError, match="needs at least 3.17 years"):  # and the API
        feasibility_clock_api(clock)
    with warnings.catch_warnings(record=True) as caught:  # 2 days: warned, not refused
        warnings.simplefilter("always")
        check_feasible(svgd(100, 1728), 1, COMM, density=costly(clock, 1, 1.0))
    said = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(said) == 1 and said[0].endswith("needs at least 2 days per rank (about 1.67 min "
                                               "per iteration)")


def feasibility_clock_api(clock):
    pm.svgd(costly(clock, 1, 1.0), particles=1000, iterations=10**5, progress="none")


def test_a_failing_density_leaves_the_cost_unknown(clock):
    def broken(theta):
        raise RuntimeError("the model's own error, reported by the run")

    bad = FunctionDensity(broken, ["x"], priors=[Normal(0, 1)])
    assert density_cost(bad, 16, COMM) == (0.0, 0.0, 0)
    need = check_feasible(svgd(10), 1, COMM, density=bad)
    assert need.min_seconds == svgd_resources(SVGDSettings(particles=10, iterations=100), 1,
                                              1).min_seconds


def test_libphase_scratch_memory_of_one_call_is_counted(clock):
    graph = models.rabbits(4)  # three parameters: the reverse sweep, which keeps vectors
    data = graph.sample(50, [1.0, 2.0, 4.0], seed=3)
    density = pm.posterior(graph, data, priors={"default": {"dist": "lognormal", "mu": 0.0,
                                                            "sigma": 1.0}})
    cost = density_cost(density, 16, COMM)  # the clock stands still: every batch runs
    rng = np.random.default_rng(20260101)  # the probe's draws: 1 untimed, 8, then 16
    for size in (1, 8):
        density.sample_prior_z(rng, size)
    info = {}
    native.loglik(graph, data, density.to_theta(density.sample_prior_z(rng, 16)), grad=True,
                  info=info)
    kept = info["stored_vectors"].max()
    assert kept > 0
    assert cost.scratch_bytes == 8.0 * (kept * graph.n_states + 8 * graph.n_states
                                        + 4 * graph.n_edges)
    need = check_feasible(svgd(16), 1, COMM, density=density)
    without = check_feasible(svgd(16), 1, COMM)
    assert need.bytes_per_rank == without.bytes_per_rank + cost.scratch_bytes


def test_the_run_file_records_the_estimate(tmp_path):
    result = pm.svgd(costly([0.0], 5), particles=8, iterations=3, progress="none",
                     out=tmp_path / "r.h5")
    estimate = result.attrs["estimated_seconds_per_iteration"]
    assert math.isfinite(estimate) and estimate > 0
    from phasic_mpi.io.store import read_run

    assert read_run(tmp_path / "r.h5").attrs["estimated_seconds_per_iteration"] == estimate


def test_pt_counts_the_extra_b1_moves_on_the_rank_with_most_b1_slots():
    def rows(n_ranks, **kw):
        return pt_resources(PTSettings(replicas=4, chains=3, rounds=8, **kw), 2, n_ranks).rows_per_iteration

    # 12 slots, b = 1 at slots 0, 4, 8
    assert rows(1, cold_steps=2) == 12 + 2 * 3
    assert rows(2, cold_steps=2) == 6 + 2 * 2  # slots 0-5 hold 0 and 4
    assert rows(3, cold_steps=1) == 4 + 1  # one b = 1 slot per block of 4
    assert rows(5, cold_steps=1) == 3 + 1  # blocks 0-2, 3-5, 6-7, 8-9, 10-11: at most one
    assert rows(2, cold_steps="auto") == 6 + 4 * 2  # the probe's 4 moves
    assert rows(2, cold_steps=1, local_move="hmc", leapfrog_steps=3) == (6 + 2) * 3
    assert rows(2) == 6
