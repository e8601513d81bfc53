"""phasic-mpi jobscript: profiles, cluster files, errors, bash -n, run modes."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from phasic_mpi.slurm import jobscript
from phasic_mpi.cli import main


@pytest.mark.parametrize("profile", list(jobscript.PROFILES))
@pytest.mark.parametrize("algorithm", jobscript.ALGORITHMS)
def test_every_profile_renders_and_parses(profile, algorithm, tmp_path):
    text = jobscript.render(profile, algorithm=algorithm)
    p = jobscript.PROFILES[profile]
    assert f"#SBATCH --nodes={p['nodes']}\n" in text
    assert f"#SBATCH --ntasks-per-node={p['tasks_per_node']}\n" in text
    assert f"#SBATCH --time={p['time']}\n" in text
    assert "#SBATCH --requeue" in text and "#SBATCH --signal=TERM@" in text
    assert 'srun --mpi="$MPI_PLUGIN"' in text and "MPI_PLUGIN:-pmi2" in text
    assert "PYTHONUNBUFFERED=1" in text and "OMP_NUM_THREADS" in text
    if algorithm == "study":  # a rerun continues a study by itself
        assert '"$VENV/bin/phasic-mpi" study "$CONFIG" --out "$OUT"' in text
    else:
        assert 'if [ -e "$OUT.ckpt.npz" ]; then MODE=--resume' in text
        assert '"MODE=--force"' not in text and 'MODE=--force\n' in text  # only when requeued
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(script)], check=True)


def test_cluster_overrides(tmp_path):
    cfile = tmp_path / "cluster.toml"
    cfile.write_text('partition = "compute"\naccount = "proj1"\n'
                     'modules = ["openmpi/4.1", "python/3.11"]\nnodes = 3\n'
                     'tasks_per_node = 4\ncpus_per_task = 2\ntime = "1-00:00:00"\n'
                     'mem = "8G"\nmpi = "pmix"\nextra = ["--qos=long"]\n'
                     'venv = "/opt/venv"\n')
    text = jobscript.render("large", jobscript.load_cluster(str(cfile)),
                            config="my.toml", out="res/x.h5")
    for line in ["#SBATCH --partition=compute", "#SBATCH --account=proj1",
                 "module load openmpi/4.1", "module load python/3.11",
                 "#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --time=1-00:00:00",
                 "#SBATCH --mem=8G", "MPI_PLUGIN=${MPI_PLUGIN:-pmix}", "#SBATCH --qos=long",
                 "VENV=${VENV:-/opt/venv}", "CONFIG=${CONFIG:-my.toml}",
                 "OUT=${OUT:-res/x.h5}", "#SBATCH --job-name=phasic-my"]:
        assert line in text, line


@pytest.mark.parametrize("content, key", [
    ("nodes = 0", "nodes"), ('nodes = "2"', "nodes"), ("tasks_per_node = true", "tasks_per_node"),
    ('mpi = "openmpi"', "mpi"), ('time = "tomorrow"', "time"), ('mem = "lots"', "mem"),
    ('modules = "gcc"', "modules"), ("extra = [1]", "extra"), ("partitoin = 'x'", "partitoin"),
    ('account = ""', "account"), ('venv = "a\\nb"', "venv"),
])
def test_cluster_errors_name_the_key(content, key, tmp_path):
    cfile = tmp_path / "c.toml"
    cfile.write_text(content + "\n")
    with pytest.raises(jobscript.JobscriptError, match=f"^{key}: "):
        jobscript.load_cluster(str(cfile))


ROOT = Path(__file__).resolve().parents[2]


def test_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the default configs are examples/*.toml
    assert main(["jobscript", "--profile", "small"]) == 0
    assert "#SBATCH --ntasks-per-node=8" in capsys.readouterr().out
    out = tmp_path / "pt.sbatch"
    assert main(["jobscript", "--algorithm", "pt", "--out", str(out)]) == 0
    assert "examples/rabbits_pt.toml" in out.read_text()
    bad = tmp_path / "c.toml"
    bad.write_text("nodes = -1\n")
    assert main(["jobscript", "--cluster", str(bad)]) == 2
    assert "error: nodes: expected an integer >= 1" in capsys.readouterr().err
    assert main(["jobscript", "--cluster", str(tmp_path / "missing.toml")]) == 2
    assert main(["jobscript", "--profile", "huge"]) == 2


def test_the_algorithm_is_the_configs(tmp_path, capsys):
    config = str(ROOT / "examples" / "rabbits_pt.toml")
    assert main(["jobscript", "--config", config]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[1].startswith("# phasic-mpi pt job (profile debug)")
    assert main(["jobscript", "--config", config, "--algorithm", "svgd"]) == 2
    assert capsys.readouterr().err == (f"phasic-mpi: error: --algorithm: svgd, but {config} "
                                       "configures pt (leave --algorithm out to use the "
                                       "config's)\n")


@pytest.mark.parametrize("args, message", [
    (["--config", "{tmp}/nonexistent.toml"], "{tmp}/nonexistent.toml: no such config file"),
    (["--config", "{tmp}/bad.toml"], "svgd.particles: expected an integer >= 2, got 1"),
    (["--algorithm", "study", "--config", "{tmp}/none.toml"], "{tmp}/none.toml: no such study file"),
    (["--config", "{root}/examples/rabbits.toml", "--cluster", "{tmp}/nodes.toml"],
     "nodes: expected an integer >= 1, got 0"),
])
def test_bad_inputs_fail_before_writing(tmp_path, capsys, args, message):
    (tmp_path / "bad.toml").write_text((ROOT / "examples" / "rabbits.toml").read_text()
                                       .replace("particles = 64", "particles = 1"))
    (tmp_path / "nodes.toml").write_text("nodes = 0\n")
    script = tmp_path / "job.sbatch"
    fill = {"tmp": str(tmp_path), "root": str(ROOT)}
    argv = ["jobscript", *(a.format(**fill) for a in args), "--out", str(script)]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"phasic-mpi: error: {message.format(**fill)}\n"
    assert not script.exists()


def _run_script(tmp_path: Path, env: dict[str, str]) -> list[str]:
    """Run a rendered script with fake srun and phasic-mpi; the arguments of `run`."""
    fake = tmp_path / "bin"
    venv = tmp_path / "venv" / "bin"
    for d in (fake, venv):
        d.mkdir(parents=True, exist_ok=True)
    (fake / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (venv / "phasic-mpi").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$ARGS_FILE"\n')
    # the script's completeness check of the run file: "complete" (the fake run wrote none)
    (venv / "python").write_text("#!/bin/bash\nexit 0\n")
    for f in (fake / "srun", venv / "phasic-mpi", venv / "python"):
        f.chmod(0o755)
    script = tmp_path / "job.sbatch"
    script.write_text(jobscript.render("debug", config="c.toml", out="runs/r.h5"))
    args = tmp_path / "args.txt"
    outside = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "FORCE"}
    full = {**outside, "PATH": f"{fake}:{os.environ['PATH']}", "VENV": str(venv.parent),
            "ARGS_FILE": str(args), "SLURM_JOB_ID": "1", **env}
    subprocess.run(["bash", str(script)], check=True, cwd=tmp_path, env=full, timeout=60)
    return args.read_text().split()


def test_first_start_never_forces(tmp_path):
    """--force only in a requeued job (its own partial file) or with FORCE=1."""
    base = ["run", "c.toml", "--out", "runs/r.h5"]
    assert _run_script(tmp_path, {}) == base
    assert _run_script(tmp_path, {"FORCE": "1"}) == [*base, "--force"]
    assert _run_script(tmp_path, {"SLURM_RESTART_COUNT": "1"}) == [*base, "--force"]
    (tmp_path / "runs").mkdir(exist_ok=True)
    (tmp_path / "runs" / "r.h5.ckpt.npz").write_text("")
    assert _run_script(tmp_path, {"SLURM_RESTART_COUNT": "2"}) == [*base, "--resume"]


def test_shipped_scripts_are_current():
    """jobs/*.sbatch are what `phasic-mpi jobscript` writes."""
    import pathlib
    jobs = pathlib.Path(__file__).resolve().parents[2] / "jobs"
    assert (jobs / "svgd.sbatch").read_text() == jobscript.render(
        "debug", config="examples/rabbits.toml")
    assert (jobs / "pt.sbatch").read_text() == jobscript.render(
        "debug", config="examples/rabbits_pt.toml", algorithm="pt")
    assert (jobs / "array.sbatch").read_text() == jobscript.render("debug", algorithm="array")
    assert (jobs / "study.sbatch").read_text() == jobscript.render("small", algorithm="study")


HOSTILE = ["a$(touch PWNED).toml", "b`touch PWNED`.toml", "c'; touch PWNED; '.toml",
           'd" ; touch PWNED ; ".toml', "e $HOME *.toml", "f\\$(touch PWNED)"]


@pytest.mark.parametrize("algorithm", jobscript.ALGORITHMS)
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_quoted(value, algorithm, tmp_path):
    """Config, run file and venv paths reach the script's shell as literal strings."""
    text = jobscript.render("debug", {"venv": "/v " + value}, config=value,
                            algorithm=algorithm, out=None if algorithm == "array" else value)
    script = tmp_path / "job.sbatch"
    script.write_text(text)
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):  # SC2016 says "$(...) in single quotes stays literal": the aim
        subprocess.run(["shellcheck", "--exclude=SC2016", str(script)], check=True)
    # Run the settings block (everything up to the first command that acts) and
    # print what the shell made of each value.
    settings = text.split("# --- settings", 1)[1].split("\n", 1)[1].split("\nmodule purge")[0]
    settings = settings.split("# one BLAS/OpenMP", 1)[0]
    probe = settings + '\nprintf "%s\\n" "$CONFIG" "$OUT" "$VENV"\n'
    done = subprocess.run(["bash", "-c", "set -euo pipefail\nSLURM_ARRAY_TASK_ID=2\n" + probe],
                          cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    config, out, venv = done.stdout.split("\n")[:3]
    assert config == value and venv == "/v " + value
    stem = value.rsplit("/", 1)[-1].removesuffix(".toml")
    assert out == (f"runs/{stem}_seed2.h5" if algorithm == "array" else value)
    assert not (tmp_path / "PWNED").exists()
