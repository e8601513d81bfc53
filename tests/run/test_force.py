"""``--force`` keeps the earlier run file until the new run's file is worth
keeping (issue 12, still-open item 4).

The new file is written under an exclusive temporary name and renamed over
the earlier one at the new run's first checkpoint or at its end
(``RunWriter.promote``). A run that fails before then (an exception in the
model, a full disk at the first history append) removes its own file and
leaves the earlier one byte for byte, still complete; after the rename the
new file is the run's, as before.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from phasic_mpi.io.store import RunFileWriteError, RunWriter, is_complete

sys.path.insert(0, str(Path(__file__).parent))
from test_faults import FILE_SIZE_LIMITED, MPIEXEC, cli, env  # noqa: E402


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def temporaries(directory):
    return [p.name for p in Path(directory).iterdir() if ".tmp." in p.name]


def run_id(path):
    with h5py.File(path, "r") as fh:
        return fh.attrs["run_id"]


KW = dict(algorithm="svgd", config={"a": 1}, param_names=["x"])


def earlier_file(tmp_path):
    path = tmp_path / "run.h5"
    with RunWriter.create(path, **KW) as w:
        w.append_many({"svgd/particles": np.ones((1, 3, 1))})
        w.mark_complete()
    return path


def test_the_earlier_file_stays_until_promote(tmp_path):
    path = earlier_file(tmp_path)
    before, old_id = digest(path), run_id(path)
    w = RunWriter.create(path, overwrite=True, **KW)
    w.append_many({"svgd/particles": np.zeros((2, 3, 1))})
    assert digest(path) == before and len(temporaries(tmp_path)) == 1
    w.promote()
    assert temporaries(tmp_path) == [] and run_id(path) != old_id
    w.promote()  # idempotent
    w.append_many({"svgd/particles": np.zeros((1, 3, 1))})  # the writer follows the rename
    w.close()
    with h5py.File(path, "r") as fh:
        assert fh["svgd/particles"].shape == (3, 3, 1)
    assert not is_complete(path)


def test_abandon_and_a_failing_block_keep_the_earlier_file(tmp_path):
    path = earlier_file(tmp_path)
    before = digest(path)
    w = RunWriter.create(path, overwrite=True, **KW)
    w.append_many({"svgd/particles": np.zeros((2, 3, 1))})
    w.abandon()
    assert digest(path) == before and temporaries(tmp_path) == []
    with pytest.raises(KeyError):
        with RunWriter.create(path, overwrite=True, **KW):
            raise KeyError("the run failed")
    assert digest(path) == before and temporaries(tmp_path) == [] and is_complete(path)
    with RunWriter.create(path, overwrite=True, **KW):  # a clean close replaces it
        pass
    assert digest(path) != before and not is_complete(path) and temporaries(tmp_path) == []


def test_a_failed_promote_reports_the_earlier_file_unchanged(tmp_path, monkeypatch):
    path = earlier_file(tmp_path)
    before = digest(path)
    w = RunWriter.create(path, overwrite=True, **KW)

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("phasic_mpi.io.store.replace_synced", full_disk)
    with pytest.raises(RunFileWriteError) as info:
        w.promote()
    assert str(info.value).startswith(f"run file {path}: write failed (")
    assert "No space left on device" in str(info.value)
    assert "the earlier file is unchanged" in str(info.value)
    assert digest(path) == before and temporaries(tmp_path) == []


# -- through the command line ----------------------------------------------------------

DENSITY = '''
import numpy as np
from phasic_mpi.inference.posterior import FunctionDensity
from phasic_mpi.inference.priors import Normal

def density(fail_after=0, rank=0):
    calls = [0]

    def loglik(theta):
        calls[0] += 1
        if fail_after and calls[0] > fail_after:
            from mpi4py import MPI
            if MPI.COMM_WORLD.rank == rank:
                raise RuntimeError(f"the model failed at call {calls[0]}")
        return -0.5 * (theta ** 2).sum(axis=1), -theta

    return FunctionDensity(loglik, ["a", "b"], priors=[Normal(0, 1), Normal(0, 1)])
'''

CONFIG = """
[model]
density = "dens.py:density"
options = {{ fail_after = {fail_after}, rank = {rank} }}
[svgd]
particles = {particles}
iterations = {iterations}
stop_early = false
history_every = 1
seed = 3
[output]
path = "out.h5"
progress = "none"
checkpoint_every = {every}
"""


def config(tmp_path, fail_after=0, rank=0, particles=6, iterations=40, every=20):
    (tmp_path / "dens.py").write_text(DENSITY)
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(fail_after=fail_after, rank=rank, particles=particles,
                                 iterations=iterations, every=every))
    return cfg


def earlier_run(tmp_path):
    """A complete run file out.h5 (and the config path, rewritten by each test)."""
    cfg = config(tmp_path)
    done = cli(tmp_path, "run", cfg)
    assert done.returncode == 0, done.stderr
    return cfg, tmp_path / "out.h5"


pytestmark = pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")


@pytest.mark.parametrize("ranks", [None, 2])
def test_force_run_that_fails_early_keeps_the_earlier_file(tmp_path, ranks):
    cfg, out = earlier_run(tmp_path)
    before = digest(out)
    # the new run fails on one rank at its 30th density call: long before its
    # first checkpoint (iteration 500)
    config(tmp_path, fail_after=30, rank=0 if ranks is None else 1, iterations=1000,
           every=500)
    done = cli(tmp_path, "run", cfg, "--force", ranks=ranks)
    assert done.returncode == 1, done.stderr
    assert "the model failed at call 31" in done.stderr
    assert digest(out) == before and is_complete(out)
    if ranks is None:  # a rank killed by MPI_Abort cannot clean up its staging file
        assert temporaries(tmp_path) == []


def test_force_run_promotes_at_its_first_checkpoint(tmp_path):
    cfg, out = earlier_run(tmp_path)
    old = run_id(out)
    # fails after its first checkpoint (iteration 20 of 6 particles: ~ call 25)
    config(tmp_path, fail_after=30, iterations=1000, every=20)
    done = cli(tmp_path, "run", cfg, "--force")
    assert done.returncode == 1, done.stderr
    assert run_id(out) != old and not is_complete(out)  # the new run's file, resumable
    ckpt = tmp_path / "out.h5.ckpt.npz"
    assert ckpt.exists() and temporaries(tmp_path) == []


def test_force_with_a_full_disk_at_the_first_history_append(tmp_path):
    cfg, out = earlier_run(tmp_path)
    before = digest(out)
    # 200 particles x 2 parameters x 1000 iterations of history: 3.2 MB at the
    # first append (iteration 1000), above the 3 MB file-size limit
    config(tmp_path, particles=200, iterations=2000, every=1000)
    limited = [sys.executable, "-c", FILE_SIZE_LIMITED, "run", str(cfg), "--force"]
    done = subprocess.run(limited, cwd=tmp_path, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stderr  # a RunFileWriteError: not a user error
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"phasic-mpi: error: run file {out}: write failed (File too large)")
    assert "the earlier file is unchanged" in lines[0]
    assert digest(out) == before and is_complete(out)
    assert temporaries(tmp_path) == [] and not os.path.exists(str(out) + ".ckpt.npz")
