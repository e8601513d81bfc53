"""Feasibility limits (issue 12.8): the impossible is refused before any work.

Cases of the issue: ``particles = 1e12`` and sizes beyond a rank's memory
(refused with the numbers), ``theta = 1e300`` in ``data.simulate`` (refused
by the mean number of jumps, checked against a dense solve), an unbounded
state space (``model.max_states``), and SIGTERM during set-up. The memory
estimate is checked against tracemalloc's measured peak of a real run.
"""

import os
import signal
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import phasic_mpi as pm
from phasic_mpi.cli.main import main
from phasic_mpi.errors import InfeasibleError
from phasic_mpi.inference.posterior import FunctionDensity
from phasic_mpi.inference.priors import Normal
from phasic_mpi.model import models
from phasic_mpi.model.construct import StateLimitError, exploration_limit
from phasic_mpi.model.simulate import expected_jumps
from phasic_mpi.run import feasibility
from phasic_mpi.run.feasibility import available_memory, check_feasible
from phasic_mpi.inference.comm import SerialCommunicator
from phasic_mpi.inference.svgd import SVGDAlgorithm, SVGDSettings

GiB = 2.0**30

CONFIG = '''[model]
name = "{model}"
options = {options}
{model_extra}[data]
simulate = {{ theta = {theta}, n = 20, seed = 4 }}
[svgd]
particles = {particles}
iterations = {iterations}
[output]
progress = "none"
'''


def run_cli(tmp_path, capsys, model="exponential", options="{}", theta="[2.0]",
            particles=8, iterations=2, model_extra=""):
    (tmp_path / "run.toml").write_text(CONFIG.format(
        model=model, options=options, theta=theta, particles=particles, iterations=iterations,
        model_extra=model_extra))
    code = main(["run", str(tmp_path / "run.toml"), "--out", str(tmp_path / "run.h5")])
    return code, capsys.readouterr().err.strip().splitlines()


def density(d=1):
    return FunctionDensity(lambda th: (-0.5 * (th**2).sum(axis=1), -th),
                           [f"x{i}" for i in range(d)], priors=[Normal(0, 1)] * d)


# ----------------------------------------------------------------- memory
def test_a_trillion_particles_are_refused_with_the_numbers(tmp_path, capsys):
    code, err = run_cli(tmp_path, capsys, particles=10**12)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("phasic-mpi: error: svgd: 1000000000000 particles x 1 parameters "
                             "on 1 rank(s) needs about 429 TiB per rank, but a rank may use ")
    assert err[0].endswith("; use fewer particles or more ranks/nodes")
    assert not (tmp_path / "run.h5").exists()


def test_api_refuses_before_any_work(monkeypatch):
    monkeypatch.setattr(feasibility, "available_memory", lambda: int(GiB))
    # 2e5 particles x 50 parameters: 24 * 2e5 * 51 doubles + 1 snapshot of 2e5 * 50
    # (iterations 1, history_every 10, no run file) = 1.9 GiB > 1 GiB
    with pytest.raises(InfeasibleError, match=r"^svgd: 200000 particles x 50 parameters on 1 "
                                              r"rank\(s\) needs about 1\.9 GiB per rank, but "
                                              r"a rank may use 1 GiB"):
        pm.svgd(density(50), particles=200_000, iterations=1)


class FakeComm:
    """Three ranks, two on host a: what allgather would return."""

    rank, size = 0, 3

    def __init__(self, reports):
        self.reports = reports

    def allgather(self, obj):
        return self.reports


def test_ranks_of_one_host_share_its_memory():
    algorithm = SVGDAlgorithm(SVGDSettings(particles=100_000, iterations=1))
    need = algorithm.resources(10, 3).bytes_per_rank  # 8 (24 * 1e5 * 11 + 1e6) = 209 MiB
    fits = FakeComm([("a", int(2.1 * need)), ("a", int(2.1 * need)), ("b", int(need))])
    assert check_feasible(algorithm, 10, fits).bytes_per_rank == need
    crowded = FakeComm([("a", int(1.9 * need)), ("a", int(1.9 * need)), ("b", int(9 * need))])
    with pytest.raises(InfeasibleError, match="needs about 209 MiB per rank, but a rank may "
                                              "use 199 MiB"):
        check_feasible(algorithm, 10, crowded)


def test_memory_estimate_bounds_the_measured_peak():
    n, d, iterations = 4000, 6, 3
    settings = SVGDSettings(particles=n, iterations=iterations, ksd_every=1, history_every=1)
    # without a run file rank 0 keeps every iteration's snapshot: 4 of (n, d)
    estimate = SVGDAlgorithm(settings).resources(d, 1, iterations).bytes_per_rank
    target = density(d)
    pm.svgd(target, particles=64, iterations=2, progress="none")  # imports, caches
    tracemalloc.start()
    try:
        pm.sample(target, algorithm=settings, progress="none")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= estimate <= 1.5 * peak, (peak, estimate)


def test_time_lower_bound_beyond_a_year_is_refused():
    # 1e7 iterations x 1e10 pairs x 1.2 ns = 3.81 years of Stein kernel alone
    algorithm = SVGDAlgorithm(SVGDSettings(particles=10**5, iterations=10**7, history_every=0))
    with pytest.raises(InfeasibleError, match=r"^svgd: 100000 particles x 1 parameters on 1 "
                                              r"rank\(s\) needs at least 3\.81 years per rank "
                                              r"\(about 12 s per iteration\) \(limit 1 years\)"):
        check_feasible(algorithm, 1, SerialCommunicator())
    # the API adds the density's measured cost (1e12 rows): never less
    with pytest.raises(InfeasibleError, match=r"^svgd: 100000 particles x 1 parameters on 1 "
                                              r"rank\(s\) needs at least ([\d.e+]+) years per "
                                              r"rank \(about [\d.e+]+ (s|min|h) per iteration\) \(limit 1 "
                                              r"years\)") as info:
        pm.svgd(density(), particles=10**5, iterations=10**7, history_every=0)
    assert float(str(info.value).split("needs at least ")[1].split()[0]) >= 3.81


def test_pt_with_too_many_rounds_is_refused():
    with pytest.raises(InfeasibleError, match=r"^pt: 2\*\*60 - 1 scans x 20 replicas x 1 "
                                              r"parameters on 1 rank\(s\) needs about"):
        pm.pt(density(), rounds=60, warmup_rounds=2)


def test_available_memory_is_at_most_the_hosts():
    with open("/proc/meminfo") as fh:
        host = next(int(line.split()[1]) * 1024 for line in fh
                    if line.startswith("MemAvailable:"))
    free = available_memory()
    assert 0 < free <= host * 1.05  # MemAvailable moves between the two reads


# -------------------------------------------------------- simulation bound
def test_expected_jumps_against_a_dense_solve():
    for graph, theta in ((models.rabbits(3), [1.3, 0.7, 2.1]), (models.kingman(6), [0.8]),
                         (models.erlang(7), [2.0])):
        alpha, S, _ = graph.to_matrices(theta)
        out = -np.diag(S)
        jump = (S - np.diag(np.diag(S))) / out[:, None]  # the embedded chain, dense
        oracle = alpha @ np.linalg.solve(np.eye(len(alpha)) - jump, np.ones(len(alpha)))
        np.testing.assert_allclose(expected_jumps(graph, graph.rates(theta)), oracle,
                                   rtol=1e-12)
    assert expected_jumps(models.erlang(7), models.erlang(7).rates([2.0])) == pytest.approx(7)


def test_theta_1e300_is_refused_before_simulating(tmp_path, capsys):
    code, err = run_cli(tmp_path, capsys, model="rabbits", options="{ n = 2 }",
                        theta="[1e300, 2.0, 4.0]")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("phasic-mpi: error: data.simulate.theta: at this theta a walker "
                             "makes ")
    assert "more than max_jumps=1000000 (rates range from 2 to 2e+300)" in err[0]
    with pytest.raises(ValueError, match="on average before absorption, more than max_jumps"):
        models.rabbits(2).sample(5, [1e300, 2.0, 4.0])


# ------------------------------------------------------------ state space
UNBOUNDED = '''
from phasic_mpi import Graph

def make():
    return Graph.from_callback(lambda s: [((s[0] + 1,), [1.0]), ((0,), [1.0])] if s[0] else [],
                               (1,), 1, param_names=["r"])
'''


def test_unbounded_state_space_stops_at_model_max_states(tmp_path, capsys):
    (tmp_path / "unbounded.py").write_text(UNBOUNDED)
    code, err = run_cli(tmp_path, capsys, model="unbounded.py:make",
                        model_extra="max_states = 1000\n")
    assert code == 2
    assert err == [f"phasic-mpi: error: model.max_states: {tmp_path / 'unbounded.py'}:make: "
                   "more than max_states=1000 states reachable (last found: (1000,)); raise "
                   "model.max_states if the model is finite"]


def test_exploration_limit_and_explicit_max_states():
    with exploration_limit(5):
        with pytest.raises(StateLimitError, match="more than max_states=5 states"):
            models.kingman(10)
        assert models.kingman(5).n_states == 4  # 5 states with the absorbing one
    assert models.kingman(10).n_states == 9  # the limit ends with the block


# --------------------------------------------------------- SIGTERM in set-up
def test_sigterm_during_setup_ends_the_run(tmp_path):
    # 3e6 particles: the set-up draws one stream per particle (a minute or more);
    # the feasibility warning (> 1 day of Stein kernel) says set-up has begun
    (tmp_path / "run.toml").write_text(CONFIG.format(
        model="exponential", options="{}", theta="[2.0]", particles=3_000_000,
        iterations=1000, model_extra=""))
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "phasic_mpi.cli", "run",
                             str(tmp_path / "run.toml")], stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    guard = threading.Timer(120, proc.kill)  # without the fix: no warning line, no end
    guard.start()
    try:
        for line in proc.stderr:
            if "needs at least" in line:
                break
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)  # before the fix it ran set-up to the end (minutes), then on
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM
    assert not (tmp_path / "run.h5").exists()
