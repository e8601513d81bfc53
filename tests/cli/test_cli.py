"""The phasic-mpi command (phasic_mpi.cli), in-process and as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import phasic_mpi
from phasic_mpi.cli import main
from phasic_mpi.config import load_config
from phasic_mpi.config.loaders import load_data, load_model
from phasic_mpi.io.datafile import read_data_file
from phasic_mpi.model.models import MODELS, rabbits

ROOT = Path(__file__).resolve().parents[2]
RABBITS = ROOT / "examples" / "rabbits.toml"


def cli(*args: str, code: str = "") -> subprocess.CompletedProcess:
    """Run ``main(args)`` in a fresh interpreter (``code`` runs first)."""
    script = (f"import sys\n{code}\nfrom phasic_mpi.cli import main\n"
              "sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", script, *args], check=False,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


# --------------------------------------------------------------- subprocess
def test_help_and_version_subprocess():
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "simulate", "summary", "models"):
        assert command in result.stdout
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"phasic-mpi {phasic_mpi.__version__}"
    result = cli("simulate", "--help")
    assert result.returncode == 0 and "--theta" in result.stdout


def test_models_subprocess_does_not_import_mpi():
    result = cli("models", code="")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "options", "parameters"]
    for name in MODELS:
        assert any(line.startswith(name + " ") for line in lines)
    assert "jump, flood_left, flood_right" in result.stdout
    code = ("import sys, phasic_mpi.cli, phasic_mpi.config, phasic_mpi.config.loaders; "
            "from phasic_mpi.cli import main; main(['models']); "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    check = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_summary_subprocess_without_mpi(tmp_path):
    fake = textwrap.dedent("""
        import types
        fake = types.ModuleType("phasic_mpi.analysis.summary")
        fake.summarize = lambda path, **kw: {"path": path}
        fake.format_summary = lambda s: "SUMMARY " + s["path"]
        sys.modules["phasic_mpi.analysis.summary"] = fake
        import atexit
        atexit.register(lambda: sys.stderr.write("MPI4PY=%s" % ("mpi4py" in sys.modules)))
    """)
    result = cli("summary", "some.h5", code=fake)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SUMMARY some.h5"
    assert "MPI4PY=False" in result.stderr


def test_real_summary_module_does_not_import_mpi():
    import importlib.util

    if importlib.util.find_spec("phasic_mpi.analysis.summary") is None:
        pytest.skip("phasic_mpi.analysis.summary not written yet")
    code = ("import sys, phasic_mpi.analysis.summary; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    check = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_simulate_subprocess_bitwise(tmp_path):
    out = tmp_path / "times.csv"
    result = cli("simulate", str(RABBITS), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote 200 times" in result.stdout
    cfg = load_config(RABBITS)
    graph = load_model(cfg["model"])
    expected = load_data(cfg["data"], graph).exact
    got = load_data({"file": str(out)}, graph).exact
    assert got.tobytes() == expected.tobytes()


def test_config_error_subprocess(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(RABBITS.read_text().replace("particles = 64", "particles = 1"))
    result = cli("run", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == ("phasic-mpi: error: svgd.particles: expected an "
                                     "integer >= 2, got 1")
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- in-process
def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".npy", ".txt"])
def test_simulate_flags_bitwise(tmp_path, capsys, suffix):
    out = tmp_path / f"t{suffix}"
    status = main(["simulate", "--model", "rabbits", "--options", '{"n": 2}',
                   "--theta", "1,2,4", "--n", "50", "--seed", "3", "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    expected = rabbits(2).sample(50, [1.0, 2.0, 4.0], seed=3)
    assert read_data_file(out).exact.tobytes() == expected.tobytes()


def test_simulate_config_and_user_model(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(
        "from phasic_mpi.model.models import kingman\ndef build(n):\n    return kingman(n)\n")
    (tmp_path / "sim.toml").write_text(textwrap.dedent("""
        [model]
        name = "mine.py:build"
        options = { n = 5 }
        [data]
        simulate = { theta = { coal_rate = 2.0 }, n = 30, seed = 9 }
    """))  # no algorithm section: fine for simulate
    out = tmp_path / "sim.csv"
    assert main(["simulate", str(tmp_path / "sim.toml"), "--out", str(out)]) == 0
    assert out.read_text().startswith("# simulated by phasic-mpi: model ")
    expected = MODELS["kingman"][0](5).sample(30, [2.0], seed=9)
    assert read_data_file(out).exact.tobytes() == expected.tobytes()


@pytest.mark.parametrize("args, message", [
    (["--model", "rabbits", "--options", '{"n": 2}', "--theta", "1,2", "--n", "5"],
     "--theta: expected 3 values (jump, flood_left, flood_right), got 2"),
    (["--model", "rabbits", "--options", '{"n": 2', "--theta", "1,2,4", "--n", "5"],
     "--options: invalid JSON"),
    (["--model", "rabbits", "--options", '{"m": 2}', "--theta", "1,2,4", "--n", "5"],
     "--options.m: unknown option of rabbits"),
    (["--model", "rabbit", "--theta", "1", "--n", "5"], "--model: unknown built-in model"),
    (["--model", "exponential", "--theta", "1,x", "--n", "5"], "--theta: expected comma"),
    (["--model", "exponential", "--theta", "1", "--n", "0"], "--n: expected an integer >= 1"),
    (["--model", "exponential", "--theta", "1"], "simulate: without CONFIG, --n required"),
    ([str(RABBITS), "--model", "exponential"], "simulate: give either CONFIG or"),
])
def test_simulate_errors(tmp_path, capsys, args, message):
    assert main(["simulate", *args, "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"phasic-mpi: error: {message}"), err
    assert not (tmp_path / "x.csv").exists()


def test_simulate_needs_simulate_section(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("1.0\n")
    (tmp_path / "c.toml").write_text('[model]\nname = "exponential"\n[data]\nfile = "t.csv"\n')
    assert main(["simulate", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "data.simulate: required by" in capsys.readouterr().err


def test_summary_uses_summary_module(monkeypatch, capsys):
    fake = types.ModuleType("phasic_mpi.analysis.summary")
    calls = []
    fake.summarize = lambda path, **kw: calls.append(path) or {"n": 1}
    fake.format_summary = lambda summary: f"table {summary['n']}"
    monkeypatch.setitem(sys.modules, "phasic_mpi.analysis.summary", fake)
    assert main(["summary", "run.h5"]) == 0
    assert calls == ["run.h5"] and capsys.readouterr().out == "table 1\n"


def test_summary_of_several_files_adds_a_comparison(monkeypatch, capsys):
    fake = types.ModuleType("phasic_mpi.analysis.summary")
    fake.summarize = lambda path, **kw: {"path": path}
    fake.format_summary = lambda summary: f"table {summary['path']}\n"
    fake.format_comparison = lambda summaries: "compare " + ",".join(
        s["path"] for s in summaries) + "\n"
    monkeypatch.setitem(sys.modules, "phasic_mpi.analysis.summary", fake)
    assert main(["summary", "a.h5", "b.h5"]) == 0
    assert capsys.readouterr().out == "table a.h5\n\ntable b.h5\n\ncompare a.h5,b.h5\n\n"
    assert main(["summary"]) == 2  # at least one file


def test_summary_of_real_run_files(tmp_path, capsys):
    import numpy as np

    from phasic_mpi.io.store import RunWriter

    cfg = load_config(RABBITS)
    rng = np.random.default_rng(1)
    for name, algorithm in (("s.h5", "svgd"), ("p.h5", "pt")):
        draws = {n: rng.normal(loc=m, size=(2, 30)) for n, m in
                 zip(("jump", "flood_left", "flood_right"), (1.0, 2.0, 4.0))}
        with RunWriter.create(tmp_path / name, algorithm=algorithm, config=cfg,
                              param_names=list(draws), observations=[0.5], seed=0) as w:
            w.write_posterior(draws)
    assert main(["summary", str(tmp_path / "s.h5"), str(tmp_path / "p.h5")]) == 0
    out = capsys.readouterr().out
    assert out.count("s.h5: svgd") == 1 and out.count("p.h5: pt") == 1
    table = out[out.index("comparison (posterior mean"):].splitlines()
    assert table[4].split() == ["parameter", "true", "svgd", "pt"]
    assert table[5].split()[:2] == ["jump", "1"] and "\u00b1" in table[5]


def test_simulate_refuses_a_density_model(tmp_path, capsys):
    (tmp_path / "d.py").write_text(
        "from phasic_mpi.inference.posterior import FunctionDensity\n"
        "def make():\n"
        "    return FunctionDensity(lambda t: (-t[:, 0] ** 2, -2 * t), ['a'],\n"
        "                           priors=[{'dist': 'normal', 'mu': 0, 'sigma': 1}])\n")
    (tmp_path / "c.toml").write_text('[model]\ndensity = "d.py:make"\n')
    assert main(["simulate", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "model.density: 'phasic-mpi simulate' needs a phase-type" in capsys.readouterr().err


def test_run_and_summary_of_a_density_model(tmp_path):
    """model.density end to end (one rank): no observed_data, draws named by the density."""
    pytest.importorskip("mpi4py")
    (tmp_path / "d.py").write_text(textwrap.dedent("""
        import numpy as np
        from phasic_mpi.inference.posterior import FunctionDensity

        def make(mu=0.0):
            def loglik(theta):
                return -0.5 * np.sum((theta - mu) ** 2, axis=1), mu - theta
            return FunctionDensity(loglik, ["a", "b"],
                                   priors=[{"dist": "normal", "mu": 0, "sigma": 10}] * 2)
    """))
    (tmp_path / "c.toml").write_text(textwrap.dedent("""
        [model]
        density = "d.py:make"
        options = { mu = 1.5 }
        [svgd]
        particles = 8
        iterations = 20
        [output]
        path = "out.h5"
        progress = "none"
    """))
    result = cli("run", str(tmp_path / "c.toml"))
    assert result.returncode == 0, result.stderr
    import h5py

    with h5py.File(tmp_path / "out.h5", "r") as fh:
        assert "observed_data" not in fh and set(fh["posterior"]) >= {"a", "b"}
    result = cli("summary", str(tmp_path / "out.h5"), str(tmp_path / "out.h5"))
    assert result.returncode == 0, result.stderr
    assert "comparison (posterior mean" in result.stdout and "observations" not in result.stdout


def _fake_run_modules(monkeypatch, launch_error=None):
    calls = []
    launch = types.ModuleType("phasic_mpi.run.launch")

    def check_launch():
        calls.append("check_launch")
        if launch_error:
            raise launch_error

    launch.check_launch = check_launch
    driver = types.ModuleType("phasic_mpi.run.driver")
    def run(cfg, build, **kw):
        calls.append(("run", cfg["model"]["name"], kw))
        return types.SimpleNamespace(completed=True, signal_name=None)

    driver.run = run
    monkeypatch.setitem(sys.modules, "phasic_mpi.run.launch", launch)
    monkeypatch.setitem(sys.modules, "phasic_mpi.run.driver", driver)
    return calls


def test_run_calls_check_launch_then_driver(monkeypatch, tmp_path):
    calls = _fake_run_modules(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(RABBITS), "--out", "o.h5", "--resume"]) == 0
    assert calls == ["check_launch", ("run", "rabbits", {
        "out": str(tmp_path / "o.h5"), "resume": True, "overwrite": False})]
    calls.clear()
    assert main(["run", str(RABBITS), "--force"]) == 0
    assert calls[1][2] == {"out": None, "resume": False, "overwrite": True}


def test_run_config_error_before_launch_check(monkeypatch, tmp_path, capsys):
    calls = _fake_run_modules(monkeypatch)
    assert main(["run", str(tmp_path / "none.toml")]) == 2
    assert calls == [] and "no such config file" in capsys.readouterr().err


def test_run_other_errors_print_traceback(monkeypatch, capsys):
    calls = _fake_run_modules(monkeypatch, RuntimeError("SLURM says 4 tasks"))
    assert main(["run", str(RABBITS)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: SLURM says 4 tasks" in err
    assert calls == ["check_launch"]


class _Aborted(BaseException):
    """What the fake Abort raises: like MPI_Abort, nothing after it runs."""


class _FakeComm:
    def __init__(self, size: int, capsys: object = None) -> None:
        self.size, self.aborted, self.capsys, self.err = size, [], capsys, ""

    def Get_size(self) -> int:
        return self.size

    def Get_rank(self) -> int:
        return 1

    def Abort(self, code: int) -> None:
        if not self.aborted and self.capsys is not None:  # what was said before the job ended
            self.err = self.capsys.readouterr().err
        self.aborted.append(code)
        raise _Aborted(code)


@pytest.mark.parametrize("size", [1, 3])
def test_error_under_mpi_aborts_only_with_several_ranks(monkeypatch, capsys, size):
    comm = _FakeComm(size, capsys)
    mpi = types.SimpleNamespace(Is_initialized=lambda: True, Is_finalized=lambda: False,
                                COMM_WORLD=comm)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", mpi)
    _fake_run_modules(monkeypatch, ValueError("boom"))
    try:
        status = main(["run", str(RABBITS)])
    except _Aborted:  # a real Abort ends the process: nothing after the first one counts
        status = None
    err = capsys.readouterr().err
    if size == 1:
        assert status == 1 and comm.aborted == [] and err.startswith("Traceback")
    else:
        assert comm.aborted[0] == 1 and status is None
        lines = comm.err.rstrip("\n").split("\n")
        assert all(line.startswith("[rank 1] ") for line in lines)
        assert lines[0] == "[rank 1] Traceback (most recent call last):"
        assert lines[-1] == "[rank 1] ValueError: boom"


def test_models_in_process(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "isolation_migration" in out and "coal_1, coal_2, mig_12, mig_21" in out
    assert json.dumps(out)  # plain text
