"""The Python inference API: conjugate posteriors, settings and their errors,
warm starts, schedules, and the same run files and bits as the command line
at any rank count, with checkpoints and resume."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

import phasic_mpi as pm
from phasic_mpi.config import validate_config
from phasic_mpi.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from test_run import MPIEXEC, assert_same_datasets, env, run_ranks  # noqa: E402
from idata_checks import assert_same_groups  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def exponential_data(n=200, rate=1.5, seed=3):
    graph = pm.models.exponential()
    return graph, graph.sample(n, [rate], seed=seed)


def test_svgd_matches_the_conjugate_gamma_posterior():
    """Exponential times with a Gamma(2, 1) prior: the posterior is Gamma(2 + n, 1 + sum x).

    128 particles give the mean to about sd/sqrt(128) ~ 0.09 sd of Monte Carlo
    error and the sd to ~6 % (particles are not independent draws but
    SVGD's error is of the same order); 0.25 sd and 15 % are > 2.5 of those.
    """
    graph, x = exponential_data()
    result = pm.svgd(graph, x, priors={"rate": pm.Gamma(2.0, 1.0)}, particles=128,
                     iterations=1500, decay=0.01, progress="none")
    exact = stats.gamma(2.0 + len(x), scale=1.0 / (1.0 + x.sum()))
    mean, sd = result.mean()["rate"], result.std()["rate"]
    assert abs(mean - exact.mean()) < 0.25 * exact.std()
    assert abs(sd / exact.std() - 1.0) < 0.15
    # the convergence check ends the run early (at a check, every 50 iterations)
    assert result.completed and result.path is None and result.iteration % 50 == 0
    assert result.diagnostics["converged_at"] == result.iteration < 1500
    assert result.draws["rate"].shape == (1, 128) and result.theta.shape == (128, 1)
    assert result.history["svgd/diagnostics/step_norm"].shape == (result.iteration,)
    idata = result.to_inference_data()
    assert idata.posterior["rate"].shape == (1, 128)
    assert float(idata.posterior["rate"].mean()) == mean
    assert idata.observed_data["exact"].values.tobytes() == x.tobytes()


def test_pt_matches_the_conjugate_gamma_posterior():
    """PT (2 chains, 2**9 - 1 scans, 2**9 - 2**6 kept per chain) on the same posterior.

    About 900 correlated draws (ESS of a few hundred): 0.3 sd and 20 % on the
    sd are beyond 3 standard errors.
    """
    graph, x = exponential_data()
    result = pm.pt(graph, x, priors={"rate": {"dist": "gamma", "shape": 2.0, "rate": 1.0}},
                   chains=2, rounds=9, warmup_rounds=6, seed=4, progress="none")
    exact = stats.gamma(2.0 + len(x), scale=1.0 / (1.0 + x.sum()))
    assert abs(result.mean()["rate"] - exact.mean()) < 0.3 * exact.std()
    assert abs(result.std()["rate"] / exact.std() - 1.0) < 0.2
    assert result.draws["rate"].shape == (2, 2**9 - 2**6)
    assert not result.independent and result.history["pt/betas"].shape[1:] == (2, 5)


def test_settings_have_the_config_defaults_and_its_messages(tmp_path):
    raw = {"model": {"name": "exponential"}, "data": {"simulate": {"theta": [1.0], "n": 5}},
           "svgd": {}}
    cfg = validate_config(raw, tmp_path)
    assert dataclasses.asdict(pm.SVGDSettings()) == cfg["svgd"]
    cfg = validate_config({**{k: v for k, v in raw.items() if k != "svgd"}, "pt": {}}, tmp_path)
    assert dataclasses.asdict(pm.PTSettings()) == cfg["pt"]
    assert dataclasses.asdict(pm.OutputSettings())["checkpoint_every"] == cfg["output"]["checkpoint_every"]
    graph, x = exponential_data(n=5)
    with pytest.raises(ConfigError, match=r"^svgd.particles: expected an integer >= 2, got 1$"):
        pm.svgd(graph, x, particles=1)
    with pytest.raises(ConfigError, match=r"^pt.warmup_rounds: expected an integer in \[0, rounds\)"):
        pm.pt(graph, x, rounds=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'particle'"):
        pm.svgd(graph, x, particle=10)
    with pytest.raises(ValueError, match="priors: unknown parameter 'rte'"):
        pm.svgd(graph, x, priors={"rte": pm.Gamma(2.0, 1.0)})
    with pytest.raises(ValueError, match="data: a Graph model needs observations"):
        pm.svgd(graph)


def test_schedules():
    s = pm.SVGDSettings(step_size=0.1, decay=0.5, iterations=10)
    assert s.step_size_at(2) == 0.1 / (1.0 + 0.5 * 2)
    assert dataclasses.replace(s, schedule="exponential").step_size_at(2) == 0.1 * np.exp(-1.0)
    assert dataclasses.replace(s, schedule="cosine").step_size_at(5) == pytest.approx(0.05, rel=1e-15)
    assert dataclasses.replace(s, schedule="constant").step_size_at(7) == 0.1
    assert dataclasses.replace(s, schedule=lambda t: 1.0 / (t + 1)).step_size_at(3) == 0.25
    with pytest.raises(ValueError, match="svgd.schedule: the callable gave step size -1.0"):
        dataclasses.replace(s, schedule=lambda t: -1.0).step_size_at(0)
    with pytest.raises(ConfigError, match="svgd.schedule: expected one of"):
        pm.SVGDSettings(schedule="linear")


def test_a_callable_schedule_equal_to_the_named_one_gives_the_same_bits():
    graph, x = exponential_data(n=30)
    named = pm.svgd(graph, x, particles=8, iterations=20, decay=0.1, progress="none")
    called = pm.svgd(graph, x, particles=8, iterations=20, progress="none",
                     schedule=lambda t: 0.05 / (1.0 + 0.1 * t))
    assert named.theta.tobytes() == called.theta.tobytes()


def test_warm_start_from_a_result_and_from_points():
    graph, x = exponential_data(n=50)
    first = pm.svgd(graph, x, particles=16, iterations=50, progress="none")
    # one SVGD iteration from the first run's particles moves them by one step only
    again = pm.svgd(graph, x, particles=16, iterations=1, init=first, progress="none",
                    step_size=1e-12)
    assert np.allclose(again.theta, first.theta, rtol=1e-9)
    chains = pm.pt(graph, x, chains=2, replicas=4, rounds=3, warmup_rounds=2,
                   init=first.theta[:3], progress="none")
    assert chains.draws["rate"].shape == (2, 4)
    with pytest.raises(ValueError, match="init: expected points of shape"):
        pm.svgd(graph, x, particles=4, iterations=1, init=np.ones((4, 2)))
    with pytest.raises(ValueError, match="svgd: init must hold at least 16 points"):
        pm.svgd(graph, x, particles=16, iterations=1, init=first.theta[:5])
    with pytest.raises(ValueError, match=r"theta = -1.0 is outside the image \(0, inf\)"):
        pm.svgd(graph, x, particles=2, iterations=1, init=[[-1.0], [1.0]])


def test_serial_communicator_gives_the_bits_of_mpi_self():
    from mpi4py import MPI

    graph, x = exponential_data(n=40)
    kw = dict(particles=10, iterations=15, progress="none", bandwidth="median")
    a = pm.svgd(graph, x, comm=pm.SerialCommunicator(), **kw)
    b = pm.svgd(graph, x, comm=MPI.COMM_SELF, **kw)
    assert a.theta.tobytes() == b.theta.tobytes()
    assert a.attrs["mpi_library"] == "none (serial)" and b.attrs["n_ranks"] == 1


def test_a_signal_without_a_file_returns_the_result_so_far():
    graph, x = exponential_data(n=40)

    def schedule(t):
        if t == 7:
            os.kill(os.getpid(), signal.SIGTERM)  # acted on at the end of this iteration
        return 0.05

    result = pm.svgd(graph, x, particles=6, iterations=100, schedule=schedule, progress="none")
    assert not result.completed and result.iteration == 8
    assert result.history["svgd/diagnostics/step_norm"].shape == (8,)


# The same rabbits run as tests/run/test_run.py's CONFIG, through the API.
API_SCRIPT = """
import sys
import phasic_mpi as pm

graph = pm.rabbits(n=2)
times = graph.sample(50, [1.0, 2.0, 4.0], seed=1)
out, iterations, checkpoint_every, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "resume"
result = pm.svgd(graph, times, particles=13, iterations=iterations, seed=5, stop_early=False, history_every=7,
                 ksd_every=10, out=out, checkpoint_every=checkpoint_every, resume=resume,
                 progress="log", log_every=0.5)
if result is not None:
    print("done", result.iteration, result.path)
"""


def api_command(tmp_path, n_ranks, out, iterations=30, checkpoint_every=10, mode="new"):
    script = tmp_path / "fit.py"
    script.write_text(API_SCRIPT)
    args = [sys.executable, str(script), str(out), str(iterations), str(checkpoint_every), mode]
    return args if n_ranks == 0 else [str(MPIEXEC), "-n", str(n_ranks), *args]


@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")
def test_api_run_files_equal_the_command_lines_at_any_rank_count(tmp_path):
    from test_run import write_config

    cli_out = tmp_path / "cli.h5"
    code, _, err = run_ranks(1, "run", write_config(tmp_path), "--out", cli_out)
    assert code == 0, err
    for n_ranks in (0, 2, 3):  # 0: plain python, no mpiexec
        out = tmp_path / f"api{n_ranks}.h5"
        proc = subprocess.run(api_command(tmp_path, n_ranks, out), env=env(), capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.count("done 30") == 1  # rank 0 only
        assert_same_datasets(cli_out, out)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")
def test_api_sigterm_and_resume_at_another_rank_count(tmp_path):
    from test_run import write_config

    reference = tmp_path / "reference.h5"
    code, _, err = run_ranks(1, "run", write_config(tmp_path, 3000, 25), "--out", reference,
                             timeout=300)
    assert code == 0, err
    out = tmp_path / "api.h5"
    ckpt = Path(str(out) + ".ckpt.npz")
    proc = subprocess.Popen(api_command(tmp_path, 2, out, 3000, 25), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint appeared"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "RunInterrupted: stopped by SIGTERM" in err, err
    resumed = subprocess.run(api_command(tmp_path, 3, out, 3000, 25, "resume"), env=env(),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert not ckpt.exists()
    assert_same_datasets(reference, out)


def test_progress_bar_and_log_lines(capsys):
    graph, x = exponential_data(n=20)
    pm.svgd(graph, x, particles=4, iterations=30, progress="bar")
    err = capsys.readouterr().err
    assert "30/30" in err and "step_norm" in err and "iteration" in err
    pm.pt(graph, x, replicas=3, rounds=3, warmup_rounds=1, progress="log", log_every=1e-9)
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("scan 7/7  round 2") and len(lines) == 7  # PT counts scans


def test_inference_data_has_the_run_files_groups(tmp_path):
    """In memory and in the run file: the same pointwise log-likelihood and predictive data."""
    import arviz as az

    graph, x = exponential_data(n=30)
    data = pm.Observations(x[x < 1.5], right_censored=np.full(np.sum(x >= 1.5), 1.5))
    result = pm.pt(graph, data, chains=2, replicas=4, rounds=5, warmup_rounds=2, seed=3,
                   out=tmp_path / "r.h5", progress="none")
    memory = result.to_inference_data()
    stored = az.from_netcdf(tmp_path / "r.h5")
    assert_same_groups(memory, stored)
    # the pointwise terms sum to each draw's total, which ArviZ's loo reads
    total = sum(memory.log_likelihood[k].values.sum(axis=-1) for k in memory.log_likelihood.data_vars)
    assert np.allclose(total, memory.sample_stats["log_likelihood_total"].values, rtol=1e-12)
    assert az.loo(memory, var_name="exact").n_data_points == data.exact.size


def test_map_laplace_warm_starts_svgd():
    """fit_map through the API, against the closed form.

    The mode is taken in z = log(rate), where the Gamma(2 + n, 1 + sum x)
    posterior's density gains the Jacobian rate: its mode is (2 + n)/(1 + sum x).
    """
    graph, x = exponential_data(n=100)
    mode = pm.fit_map(graph, x, priors={"rate": pm.Gamma(2.0, 1.0)})
    assert mode.theta[0] == pytest.approx((2.0 + x.size) / (1.0 + x.sum()), rel=1e-6)
    fit = pm.svgd(graph, x, priors={"rate": pm.Gamma(2.0, 1.0)}, init=mode, particles=16,
                  iterations=1, step_size=1e-12, progress="none")
    assert np.allclose(fit.theta[:, 0], np.exp(mode.initial_points(16)[:, 0]), rtol=1e-9)


def test_the_default_example_converges_near_the_grid_posterior(tmp_path, monkeypatch):
    # `make run`'s SVGD example must pass its own convergence check: with the old
    # AdaGrad 0.05 without decay it never did (net force ~0.06 even at 4000 iterations)
    import warnings

    from phasic_mpi.cli.main import main
    from phasic_mpi.errors import ConvergenceWarning
    from phasic_mpi.io.runfile import RunFile

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rabbits.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert main(["run", str(ROOT / "examples" / "rabbits.toml"), "--out", str(out)]) == 0
    run = RunFile(out)
    assert run.diagnostics()["converged"] is True
    draws = np.stack([run.posterior()[n].ravel() for n in ("jump", "flood_left", "flood_right")], axis=1)
    # posterior mean and sd of this example's data on a 182,280-point grid
    # (benchmarks/peers_reference.py, resolution error 2.4e-3 sd)
    mean, sd = np.array([2.2798, 2.0598, 3.6874]), np.array([1.4390, 0.3744, 2.1441])
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 0.25 * sd)
