"""The documentation runs: every Python block of docs/tutorial.md (one script)
and of the README is executed, so the docs cannot drift from the code.

The tutorial's script runs on one process without mpiexec, under mpiexec at
2 and 3 ranks, and from an installation without an MPI library; its printed
results and run files are bit for bit the same every time.
"""

from __future__ import annotations

import os
import re
from collections import Counter
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "run"))
from test_run import MPIEXEC, assert_same_datasets, env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> str:
    """The ```python blocks of a Markdown file, in order, as one script."""
    blocks = re.findall(r"^```python\n(.*?)^```", path.read_text(), re.S | re.M)
    assert blocks, f"{path} has no python blocks"
    return "\n".join(blocks)


def run_script(script: Path, cwd: Path, python: str = sys.executable, ranks: int = 0,
               timeout: int = 300) -> subprocess.CompletedProcess:
    args = [python, str(script)]
    if ranks:
        args = [str(MPIEXEC), "-n", str(ranks), *args]
    # block-buffered output: each rank writes its few lines in one piece at exit,
    # so the launcher cannot interleave two ranks' lines
    environ = {k: v for k, v in env().items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(args, cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=timeout)


def without_mpi(tmp_path: Path) -> str:
    """A Python whose packages are this environment's but which finds no MPI library.

    A venv whose site-packages adds ours (so numpy, mpi4py, phasic_mpi import)
    while the MPICH wheel's libmpi, installed into our prefix's lib/, is not
    on mpi4py's search path: exactly an installation without the ``mpi`` extra.
    """
    venv = tmp_path / "venv-without-mpi"
    subprocess.run([os.path.join(sys.base_prefix, "bin", "python3"), "-m", "venv",
                    "--without-pip", str(venv)], check=True, timeout=120)
    purelib = sysconfig.get_paths()["purelib"]
    target = subprocess.run([str(venv / "bin" / "python"), "-c",
                             "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            check=True, capture_output=True, text=True).stdout.strip()
    Path(target, "parent.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
    return str(venv / "bin" / "python")


@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")
def test_tutorial_runs_bitwise_alike_at_1_2_3_ranks_and_without_mpi(tmp_path):
    script = tmp_path / "fit_machine.py"
    script.write_text(python_blocks(ROOT / "docs" / "tutorial.md"))
    runs = {}
    for name, ranks, kwargs in (("serial", 1, {}), ("ranks2", 2, {"ranks": 2}),
                                ("ranks3", 3, {"ranks": 3}),
                                ("nompi", 1, {"python": without_mpi(tmp_path)})):
        cwd = tmp_path / name
        cwd.mkdir()
        proc = run_script(script, cwd, **kwargs)
        assert proc.returncode == 0, f"{name}:\n{proc.stderr}"
        runs[name] = (ranks, proc.stdout.splitlines(), cwd)
    _, lines, cwd = runs["serial"]
    assert any(line.startswith("SVGD mean") for line in lines)
    assert any(line.startswith("PT mean") for line in lines)
    assert any(line.startswith("R-hat") for line in lines)
    # lines before the first result are printed by every rank, results by rank 0
    first = next(i for i, line in enumerate(lines) if line.startswith("Result("))
    for name, (ranks, other, other_cwd) in runs.items():
        assert Counter(other) == Counter(lines[:first] * ranks + lines[first:]), name
        for file in ("machine_svgd.h5", "machine_pt.h5"):
            assert_same_datasets(cwd / file, other_cwd / file)


@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")
def test_without_mpi_several_ranks_fail_with_one_line_saying_how_to_install(tmp_path):
    python = without_mpi(tmp_path)
    script = tmp_path / "fit.py"
    script.write_text("import phasic_mpi as pm\n"
                      "g = pm.models.exponential()\n"
                      "pm.svgd(g, g.sample(20, [1.0], seed=1), particles=4, iterations=2)\n")
    proc = run_script(script, tmp_path, python=python, ranks=2, timeout=60)
    assert proc.returncode != 0
    assert "MPIUnavailableError: started as 2 MPI ranks, but no MPI library" in proc.stderr
    assert "pip install 'phasic-mpi[mpi]'" in proc.stderr
    # the command line: one process works, two say it in one line and exit 2
    config = tmp_path / "run.toml"
    config.write_text('[model]\nname = "exponential"\n[data]\nsimulate = { theta = [1.0], '
                      'n = 20 }\n[svgd]\nparticles = 4\niterations = 3\n')
    cli = [python, "-m", "phasic_mpi.cli", "run", str(config)]
    one = subprocess.run(cli, env=env(), capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([str(MPIEXEC), "-n", "2", *cli, "--out", str(tmp_path / "b.h5")],
                         env=env(), capture_output=True, text=True, timeout=120)
    lines = [line for line in two.stderr.splitlines() if line.strip()]
    assert two.returncode != 0 and lines and all(
        line.startswith("phasic-mpi: error: started as 2 MPI ranks") for line in lines), two.stderr


def test_readme_python_blocks_run(tmp_path):
    script = tmp_path / "readme.py"
    script.write_text(python_blocks(ROOT / "README.md"))
    proc = run_script(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
