"""End-to-end runs of ``phasic-mpi run`` under real mpiexec.

Each test launches the command at several rank counts and compares every
dataset of the output files bit for bit (attributes such as timings, rank
count and host names may differ, datasets may not).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

BIN = Path(sys.executable).parent
MPIEXEC = BIN / "mpiexec"
CLI = [sys.executable, "-m", "phasic_mpi.cli"]

pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")

# model, data and prior shared by the SVGD and PT configs (str.format templates)
RABBITS = """
[model]
name = "rabbits"
options = {{ n = 2 }}
[data]
simulate = {{ theta = [1.0, 2.0, 4.0], n = 50, seed = 1 }}
[prior]
default = {{ dist = "lognormal", mu = 0.0, sigma = 1.0 }}
"""

CONFIG = RABBITS + """[svgd]
particles = 13
iterations = {iterations}
seed = 5
stop_early = false  # runs of a fixed length (stopped by signals)
history_every = 7
ksd_every = 10
[output]
path = "run.h5"
checkpoint_every = {checkpoint_every}
progress = "log"
log_every = 0.5
"""


def env():
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPIEXEC_TIMEOUT="120",
             PYTHONUNBUFFERED="1")
    return e


def write_config(tmp_path, iterations=30, checkpoint_every=10):
    path = tmp_path / "run.toml"
    path.write_text(CONFIG.format(iterations=iterations, checkpoint_every=checkpoint_every))
    return path


def launch(n_ranks, *args, **kwargs):
    return subprocess.Popen([str(MPIEXEC), "-n", str(n_ranks), *CLI, *map(str, args)], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def run_ranks(n_ranks, *args, timeout=120):
    proc = launch(n_ranks, *args)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def datasets(path):
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found[name] = obj[()]

    with h5py.File(path, "r") as fh:
        fh.visititems(visit)
    return found


def assert_same_datasets(a, b):
    da, db = datasets(a), datasets(b)
    assert sorted(da) == sorted(db)
    for name in da:
        x, y = np.asarray(da[name]), np.asarray(db[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        if x.dtype.kind == "f":
            assert np.array_equal(x, y, equal_nan=True), name
        else:
            assert np.array_equal(x, y), name


def stop_at_first_checkpoint(n_ranks, cfg, out):
    """Launch a run, SIGTERM mpiexec once a checkpoint exists; return (code, stderr).

    The job must be gone within 30 s of the signal (communicate's timeout
    fails the test otherwise): stopping never hangs."""
    ckpt = Path(str(out) + ".ckpt.npz")
    proc = launch(n_ranks, "run", cfg, "--out", out)
    deadline = time.monotonic() + 60
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert ckpt.exists(), "no checkpoint appeared"
    proc.send_signal(signal.SIGTERM)  # mpiexec forwards it to every rank
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_output_is_bitwise_identical_for_1_to_4_ranks(tmp_path):
    cfg = write_config(tmp_path)
    outputs = []
    for n_ranks in (1, 2, 3, 4):
        out = tmp_path / f"ranks{n_ranks}.h5"
        code, _, err = run_ranks(n_ranks, "run", cfg, "--out", out)
        assert code == 0, err
        outputs.append(out)
        with h5py.File(out, "r") as fh:
            assert fh.attrs["n_ranks"] == n_ranks
    for other in outputs[1:]:
        assert_same_datasets(outputs[0], other)
    found = datasets(outputs[0])
    assert found["posterior/jump"].shape == (1, 13)
    assert found["svgd/particles"].shape[1:] == (13, 3)


def test_sigterm_checkpoint_and_resume_at_another_rank_count(tmp_path):
    cfg = write_config(tmp_path, iterations=3000, checkpoint_every=25)
    reference = tmp_path / "reference.h5"
    code, _, err = run_ranks(1, "run", cfg, "--out", reference, timeout=300)
    assert code == 0, err

    out = tmp_path / "stopped.h5"
    ckpt = Path(str(out) + ".ckpt.npz")
    code, err = stop_at_first_checkpoint(2, cfg, out)
    assert code == 128 + signal.SIGTERM, err
    assert "continue with --resume" in err
    with np.load(ckpt) as state:
        assert state["particles"].shape == (13, 3)

    code, _, err = run_ranks(3, "run", cfg, "--out", out, "--resume", timeout=300)
    assert code == 0, err
    assert not ckpt.exists()
    assert_same_datasets(reference, out)
    with h5py.File(out, "r") as fh:
        assert fh.attrs["resumed"]


FAILING_MODEL = '''
from mpi4py import MPI
from phasic_mpi import models

def model():
    if MPI.COMM_WORLD.rank == 1:
        raise RuntimeError("model construction failed on rank 1 only")
    return models.exponential()
'''


def test_an_exception_on_one_rank_ends_the_job_quickly(tmp_path):
    (tmp_path / "failing.py").write_text(FAILING_MODEL)
    cfg = tmp_path / "fail.toml"
    cfg.write_text(
        "[model]\nname = 'failing.py:model'\n[data]\nsimulate = { theta = [1.0], n = 10, seed = 1 }\n"
        "[svgd]\nparticles = 4\niterations = 5\n[output]\npath = 'fail.h5'\nprogress = 'none'\n"
    )
    # Validation builds the model on a single process (rank 0 of its own), so
    # the failure happens inside the run, on rank 1 only.
    code, _, err = run_ranks(2, "run", cfg, timeout=30)  # a hang fails by timeout
    assert code != 0
    assert "model construction failed on rank 1 only" in err


def test_run_file_opens_in_arviz_and_summary_needs_no_mpi(tmp_path):
    az = pytest.importorskip("arviz")
    cfg = write_config(tmp_path)
    out = tmp_path / "one.h5"
    code, _, err = run_ranks(2, "run", cfg, "--out", out)
    assert code == 0, err
    idata = az.from_netcdf(out)
    assert set(idata.posterior.data_vars) == {"jump", "flood_left", "flood_right"}
    assert idata.posterior["jump"].shape == (1, 13)
    probe = (
        "import sys; from phasic_mpi.cli import main; code = main(['summary', sys.argv[1]]);"
        "assert 'mpi4py' not in sys.modules, 'summary imported mpi4py'; sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(out)], env=env(), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "flood_left" in done.stdout


PT_CONFIG = RABBITS + """[pt]
replicas = 5
chains = 2
rounds = {rounds}
warmup_rounds = 3
local_move = "mala"
seed = 4
[output]
path = "pt.h5"
checkpoint_every = {checkpoint_every}
progress = "log"
log_every = 0.5
"""


def write_pt_config(tmp_path, rounds=6, checkpoint_every=8):
    path = tmp_path / "pt.toml"
    path.write_text(PT_CONFIG.format(rounds=rounds, checkpoint_every=checkpoint_every))
    return path


def run_at_rank_counts(cfg, tmp_path, stem, rank_counts):
    """``phasic-mpi run cfg`` at each rank count; asserts the files' datasets agree."""
    outputs = []
    for n_ranks in rank_counts:
        out = tmp_path / f"{stem}{n_ranks}.h5"
        code, _, err = run_ranks(n_ranks, "run", cfg, "--out", out)
        assert code == 0, err
        outputs.append(out)
    for other in outputs[1:]:
        assert_same_datasets(outputs[0], other)
    return outputs


def test_pt_output_is_bitwise_identical_for_1_to_4_ranks(tmp_path):
    cfg = write_pt_config(tmp_path)  # 10 replicas: 3 and 4 ranks get uneven blocks
    outputs = run_at_rank_counts(cfg, tmp_path, "pt", (1, 2, 3, 4))
    found = datasets(outputs[0])
    assert found["posterior/jump"].shape == (2, 2**6 - 2**3)
    assert found["pt/betas"].shape == (6, 2, 5)


def test_pt_resume_after_sigterm_equals_an_uninterrupted_run(tmp_path):
    assert_resume_equals_uninterrupted(write_pt_config(tmp_path, rounds=11, checkpoint_every=16), tmp_path)


def assert_resume_equals_uninterrupted(cfg, tmp_path):
    """A 2-rank run; a 3-rank run of ``cfg`` stopped by SIGTERM at its first
    checkpoint, then resumed on 1 rank: the same datasets."""
    reference = tmp_path / "reference.h5"
    code, _, err = run_ranks(2, "run", cfg, "--out", reference, timeout=300)
    assert code == 0, err
    out = tmp_path / "stopped.h5"
    code, err = stop_at_first_checkpoint(3, cfg, out)
    assert code == 128 + signal.SIGTERM, err
    code, _, err = run_ranks(1, "run", cfg, "--out", out, "--resume", timeout=300)
    assert code == 0, err
    assert_same_datasets(reference, out)


FAILING_LATER = '''
import numpy as np
from mpi4py import MPI
from phasic_mpi.inference.posterior import FunctionDensity
from phasic_mpi.inference.priors import Normal

def density():
    calls = [0]

    def loglik(theta):
        calls[0] += 1
        if MPI.COMM_WORLD.rank == 1 and calls[0] > 40:
            raise FloatingPointError("likelihood blew up on rank 1 mid-run")
        return -0.5 * (theta ** 2).sum(axis=1), -theta

    return FunctionDensity(loglik, ["a", "b"], priors=[Normal(0, 1), Normal(0, 1)])
'''


def test_pt_exception_on_one_rank_mid_run_ends_the_job(tmp_path):
    (tmp_path / "later.py").write_text(FAILING_LATER)
    cfg = tmp_path / "later.toml"
    cfg.write_text("[model]\ndensity = 'later.py:density'\n[pt]\nreplicas = 4\nrounds = 8\n"
                   "[output]\npath = 'later.h5'\nprogress = 'none'\n")
    code, _, err = run_ranks(2, "run", cfg, timeout=30)  # a hang fails by timeout
    assert code != 0
    assert "likelihood blew up on rank 1 mid-run" in err
