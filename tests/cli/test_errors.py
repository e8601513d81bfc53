"""One error style: ``phasic-mpi: error: <key or file>: <what>``, status 2, no
traceback for user errors (``--debug`` shows it), quiet on a closed pipe, one
line from rank 0 under MPI (fake communicators and real ``mpiexec -n 2``)."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from phasic_mpi.cli import main
from phasic_mpi.errors import ConfigError, InternalError, RunFileError, UserError
from phasic_mpi.io.store import RunWriter

CLI_MODULE = sys.modules["phasic_mpi.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
RABBITS = ROOT / "examples" / "rabbits.toml"
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def run_cli(*args: str, cwd: Path = ROOT, mpi: int = 0, shell: str | None = None,
            ) -> subprocess.CompletedProcess:
    """``phasic-mpi ARGS`` in a fresh interpreter (under ``mpiexec -n MPI`` if given)."""
    cmd = [sys.executable, "-m", "phasic_mpi.cli", *args]
    if mpi:
        cmd = [str(MPIEXEC), "-n", str(mpi), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPIEXEC_TIMEOUT": "120"}
    if shell is not None:
        return subprocess.run(shell, shell=True, check=False, capture_output=True, text=True,
                              timeout=180, cwd=cwd, env=env, executable="/bin/bash")
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180,
                          cwd=cwd, env=env)


def test_the_hierarchy():
    for cls in (ConfigError, RunFileError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError)
    assert not issubclass(InternalError, UserError)
    from phasic_mpi.slurm.jobscript import JobscriptError

    assert issubclass(JobscriptError, ConfigError)


# ---------------------------------------------------------------- one process
@pytest.mark.parametrize("make, message", [
    (None, "{path}: no such run file"),
    ("time\n1.0\n", "{path}: not a phasic_mpi run file (OSError: "),
])
def test_summary_of_a_file_that_is_not_a_run_file(tmp_path, make, message):
    path = tmp_path / ("nonexist.h5" if make is None else "data.csv")
    if make is not None:
        path.write_text(make)
    result = run_cli("summary", str(path))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("phasic-mpi: error: "
                                                   + message.format(path=path))
    debug = run_cli("--debug", "summary", str(path))
    assert debug.returncode == 2 and debug.stderr.startswith("Traceback")
    assert debug.stderr.splitlines()[-1] == lines[0]


def test_debug_is_accepted_anywhere(tmp_path, capsys):
    assert main(["summary", str(tmp_path / "x.h5"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith(f"phasic-mpi: error: {tmp_path}/x.h5: "
                                               "no such run file\n")


def test_config_error_and_internal_error(tmp_path, capsys, monkeypatch):
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert capsys.readouterr().err == f"phasic-mpi: error: {tmp_path}/none.toml: no such config file\n"
    boom = types.ModuleType("phasic_mpi.analysis.summary")

    def fail(path, **kw):
        raise InternalError("invariant broken")

    boom.summarize = fail
    monkeypatch.setitem(sys.modules, "phasic_mpi.analysis.summary", boom)
    assert main(["summary", "x.h5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("InternalError: invariant broken\n")


def _run_file(path: Path) -> None:
    names = [f"p{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    with RunWriter.create(path, algorithm="svgd", config={}, param_names=names, seed=1) as w:
        w.write_posterior({n: rng.normal(size=(1, 16)) for n in names},
                          draws_are_independent=True)


def test_closed_pipe_is_quiet(tmp_path):
    _run_file(tmp_path / "r.h5")
    files = " ".join([f"{tmp_path}/r.h5"] * 40)  # ~250 kB: more than a pipe buffers
    result = run_cli(shell=f"{sys.executable} -m phasic_mpi.cli summary --all {files} "
                           "| head -1; echo status ${PIPESTATUS[0]} >&2")
    assert result.stdout == "r.h5: svgd, 1 chain x 16 draws\n"
    assert result.stderr.splitlines() == ["status 141"]  # SIGPIPE's status, no traceback


# ---------------------------------------------------- fake MPI communicators
class _FakeComm:
    def __init__(self, rank: int, agree: bool) -> None:
        self.rank, self.agree, self.aborted = rank, agree, []

    def Get_size(self) -> int:
        return 2

    def Get_rank(self) -> int:
        return self.rank

    def Ibarrier(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(Test=lambda: self.agree)

    def Abort(self, code: int) -> None:
        self.aborted.append(code)


def _fake_mpi(monkeypatch, comm: _FakeComm) -> None:
    mpi = types.SimpleNamespace(Is_initialized=lambda: True, Is_finalized=lambda: False,
                                COMM_WORLD=comm)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", mpi)


@pytest.mark.parametrize("rank", [0, 1])
def test_user_error_on_every_rank_prints_once(monkeypatch, capsys, tmp_path, rank):
    comm = _FakeComm(rank, agree=True)
    _fake_mpi(monkeypatch, comm)
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    err = capsys.readouterr().err
    assert comm.aborted == []
    assert err == (f"phasic-mpi: error: {tmp_path}/none.toml: no such config file\n"
                   if rank == 0 else "")


def test_user_error_on_one_rank_aborts(monkeypatch, capsys, tmp_path):
    """If the other ranks never report the same, waiting would hang the job: abort."""
    comm = _FakeComm(1, agree=False)
    _fake_mpi(monkeypatch, comm)
    monkeypatch.setattr(CLI_MODULE, "AGREE_TIMEOUT_S", 0.05)
    monkeypatch.setattr(CLI_MODULE.time, "sleep", lambda s: None)
    main(["run", str(tmp_path / "none.toml")])
    assert comm.aborted == [2]
    assert capsys.readouterr().err == (f"[rank 1] phasic-mpi: error: {tmp_path}/none.toml: "
                                       "no such config file\n")


# ------------------------------------------------------------ real mpiexec
needs_mpiexec = pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")


@needs_mpiexec
@pytest.mark.parametrize("case", ["invalid", "missing", "exists"])
def test_run_config_errors_under_mpiexec(tmp_path, case):
    """Before MPI starts (validation) and after (the driver's refusal, broadcast):
    one line from rank 0, status 2 from mpiexec, no Abort."""
    bad = tmp_path / "bad.toml"
    bad.write_text(RABBITS.read_text().replace("particles = 64", "particles = 1"))
    out = tmp_path / "old.h5"
    out.write_text("an earlier run")
    args = {"invalid": [str(bad)], "missing": [str(tmp_path / "none.toml")],
            "exists": [str(RABBITS), "--out", str(out)]}[case]
    message = {"invalid": "svgd.particles: expected an integer >= 2, got 1",
               "missing": f"{tmp_path}/none.toml: no such config file",
               "exists": f"output.path: {out} exists; choose another path, remove it, "
                         "use --force to replace it, or --resume"}[case]
    result = run_cli("run", *args, mpi=2, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"phasic-mpi: error: {message}\n"
    assert out.read_text() == "an earlier run"


@pytest.mark.parametrize("variable", ["PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID"])
def test_before_mpi_starts_only_rank_0_reports(monkeypatch, capsys, tmp_path, variable):
    """Config errors come before MPI is initialised: the launcher's variables name the rank."""
    for name in CLI_MODULE._RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, "1")
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv(variable, "0")
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert capsys.readouterr().err.startswith("phasic-mpi: error: ")
