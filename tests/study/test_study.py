"""Studies: cell expansion and seeds, the calibration of SVGD and PT against the
exact conjugate posterior, failure recording, resume after SIGTERM, and the
same study file at 1 and 3 ranks (real mpiexec)."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import stats

from phasic_mpi.errors import ConfigError
from phasic_mpi.config.loaders import load_data, load_model
from phasic_mpi.study.runner import run_study
from phasic_mpi.study.spec import cell_config, load_study
from phasic_mpi.io.studyfile import DONE, FAILED, PENDING, read_study
from phasic_mpi.analysis.studyreport import calibration, format_report

BIN = Path(sys.executable).parent
MPIEXEC = BIN / "mpiexec"
CLI = [sys.executable, "-m", "phasic_mpi.cli"]
needs_mpiexec = pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec")

# Exponential(rate) data with a Gamma(3, 2) prior: posterior Gamma(3 + n, 2 + Σt).
SHAPE, RATE = 3.0, 2.0
BASE = f"""
[model]
name = "exponential"
[data]
simulate = {{ n = 20 }}
[prior]
rate = {{ dist = "gamma", shape = {SHAPE}, rate = {RATE} }}
"""
METHODS = """
[study.methods.svgd]
svgd = { particles = 40, iterations = 300, optimizer = "adam", step_size = 0.1, history_every = 0, ksd_every = 0 }
[study.methods.pt]
pt = { replicas = 3, rounds = 6, warmup_rounds = 4 }
"""


def write_study(tmp_path, study, name="study.toml", base=BASE, methods=METHODS):
    path = tmp_path / name
    path.write_text(textwrap.dedent(study) + methods + base)
    return path


def env():
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPIEXEC_TIMEOUT="300",
             PYTHONUNBUFFERED="1")
    return e


def cells_equal(a, b):
    """Every dataset of the cells/ groups equal bit for bit (timings excluded)."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert sorted(fa["cells"]) == sorted(fb["cells"])
        for name in fa["cells"]:
            x, y = fa["cells"][name][...], fb["cells"][name][...]
            assert x.dtype == y.dtype and x.shape == y.shape, name
            assert x.tobytes() == y.tobytes(), name


# ------------------------------------------------------------ specification
@pytest.mark.parametrize("study, message", [
    ("[study]\nreplicates = 0\n", "study.replicates"),
    ('[study]\ngrid = { "data.simulate.n" = 5 }\n', 'study.grid."data.simulate.n"'),
    ('[study]\ngrid = { "svgd.seed" = [1, 2] }\n', "seeds are set per cell"),
    ('[study]\ngrid = { "foo.bar" = [1] }\n', 'study.grid."foo.bar"'),
    ('[study]\ntype = "calibration"\ngrid = { "data.simulate.theta" = [[1.0]] }\n',
     "draws θ from the prior"),
    ('[study]\nmethods = { a = { mcmc = {} } }\n', "study.methods.a.mcmc"),
    ("[study]\nlevels = [0.5, 1.5]\n", "study.levels"),
    ("[study]\nbogus = 1\n", "study.bogus"),
])
def test_bad_study_names_the_key(tmp_path, study, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_study(write_study(tmp_path, study, methods="" if "methods" in study else METHODS))


def test_base_config_error_fails_at_once(tmp_path):
    path = write_study(tmp_path, '[study]\ntype = "calibration"\n',
                       base=BASE.replace('"gamma"', '"gammma"'))
    with pytest.raises(ConfigError, match="prior.rate"):
        load_study(path)


def test_cells_order_and_common_random_numbers(tmp_path):
    spec = load_study(write_study(tmp_path, """
        [study]
        type = "calibration"
        replicates = 3
        seed = 9
        grid = { "data.simulate.n" = [5, 10], "svgd.particles" = [8, 16] }
        """, methods="", base=BASE + "[svgd]\niterations = 3\n"))
    cells = spec.cells
    assert spec.n_cells == len(cells) == 12
    assert [c.id for c in cells] == list(range(12))
    assert [c.grid_index for c in cells[:7:3]] == [(0, 0), (0, 1), (1, 0)]
    cfg = {c.id: cell_config(spec, c, str(tmp_path / "x.h5")) for c in cells}

    def data(c):
        return cfg[c.id]["data"]["simulate"]

    for a in cells:
        for b in cells:
            same_data = a.replicate == b.replicate and a.grid_index[0] == b.grid_index[0]
            assert (data(a)["seed"] == data(b)["seed"]) == same_data
            assert (data(a)["theta"] == data(b)["theta"]) == (a.replicate == b.replicate)
            assert (cfg[a.id]["svgd"]["seed"] == cfg[b.id]["svgd"]["seed"]) == (a.id == b.id)
    assert cfg[4]["svgd"]["particles"] == 16 and cfg[4]["data"]["simulate"]["n"] == 5
    # the truths are prior draws: Gamma(3, 2) has mean 1.5
    truths = [cell_config(spec, c, "x.h5")["data"]["simulate"]["theta"][0]
              for c in load_study(write_study(tmp_path, """
                  [study]
                  type = "calibration"
                  replicates = 400
                  """, name="many.toml", methods="", base=BASE + "[svgd]\n")).cells]
    assert stats.kstest(truths, stats.gamma(SHAPE, scale=1 / RATE).cdf).pvalue > 0.01


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "examples")
                                        .glob("*_study.toml")), ids=lambda p: p.name)
def test_example_studies_validate_in_every_cell(path, tmp_path):
    spec = load_study(path)
    assert Path(spec.path).parent.name == "runs"
    for cell in spec.cells:
        cfg = cell_config(spec, cell, str(tmp_path / "x.h5"))
        assert cfg["output"]["path"] == str(tmp_path / "x.h5")


# -------------------------------------------------------------- calibration
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "calibration_study.toml"


@pytest.fixture(scope="module")
def calibration_study(tmp_path_factory):
    """The example study, run serially: 50 replicates x n in (10, 40) x SVGD, PT."""
    spec = dataclasses.replace(load_study(EXAMPLE),
                               path=str(tmp_path_factory.mktemp("calibration") / "cal.h5"))
    result = run_study(spec)
    assert result.completed and result.n_done == spec.n_cells == 200
    return spec, read_study(spec.path)


def exact_posterior_quantile(spec, cell):
    cfg = cell_config(spec, cell, "x.h5")
    times = load_data(cfg["data"], load_model(cfg["model"])).exact
    truth = cfg["data"]["simulate"]["theta"][0]
    return stats.gamma.cdf(truth, SHAPE + times.size, scale=1 / (RATE + times.sum()))


def test_calibration_matches_the_conjugate_posterior(calibration_study):
    spec, sf = calibration_study
    exact = np.array([exact_posterior_quantile(spec, c) for c in spec.cells])
    found = sf.cells["truth_quantile"][:, 0]
    for m, method in enumerate(("svgd", "pt")):
        sel = sf.cells["grid_index"][:, 1] == m
        # each cell's posterior CDF at the truth, from finite draws, vs the exact one,
        # in units of its Monte Carlo error sqrt(u (1 - u) / ESS)
        diff = found[sel] - exact[sel]
        u = exact[sel]
        z = diff / np.sqrt(np.maximum(u * (1 - u), 1e-3) / sf.cells["ess_bulk"][sel, 0])
        assert np.mean(np.abs(z)) < 1.1 and np.max(np.abs(z)) < 4.5, (method, z)
        if method == "svgd":  # 40 particles place quantiles better than 40 iid draws
            assert np.mean(np.abs(diff)) < 0.02 and np.max(np.abs(diff)) < 0.1, diff
        for c in calibration(sf, sel & (sf.status == DONE)):
            assert c.n == 100
            if c.level == 0.9:
                assert c.consistent(0.99), (method, c)
                assert abs(c.coverage - 0.9) <= 2.6 * c.se, (method, c)


def test_report_text(calibration_study):
    _, sf = calibration_study
    text = format_report(sf)
    assert "200 cells (200 done, 0 failed, 0 pending)" in text
    assert "by method:" in text and "calibration (method=pt):" in text
    assert "SBC ranks rate:" in text


# ------------------------------------------------ failure, resume, ranks
GRID = """
[study]
replicates = 3
seed = 5
path = "grid.h5"
grid = { "data.simulate.n" = [15, 0] }
"""
GRID_BASE = BASE.replace("{ n = 20 }", "{ n = 20, theta = [1.3] }")


def test_failing_cell_is_recorded_and_others_complete(tmp_path):
    spec = load_study(write_study(tmp_path, GRID, base=GRID_BASE))
    result = run_study(spec)
    assert result.completed and (result.n_done, result.n_failed) == (6, 6)
    sf = read_study(spec.path)
    bad = sf.cells["grid_index"][:, 0] == 1
    assert np.all(sf.status[bad] == FAILED) and np.all(sf.status[~bad] == DONE)
    assert all("data.simulate.n" in text for text in sf.errors().values())
    assert np.all(sf.cells["truth"][~bad, 0] == 1.3)
    assert not os.path.exists(spec.path + ".cells")  # run files removed
    # running again does nothing; --retry-failed reruns only the failed cells
    before = sf.cells["mean"].copy()
    assert run_study(spec).n_done == 6
    assert run_study(spec, retry_failed=True).n_failed == 6
    np.testing.assert_array_equal(read_study(spec.path).cells["mean"], before)


def test_other_study_at_same_path_is_refused(tmp_path):
    spec = load_study(write_study(tmp_path, GRID, base=GRID_BASE))
    run_study(spec)
    other = load_study(write_study(tmp_path, GRID.replace("seed = 5", "seed = 6"), "b.toml",
                                   base=GRID_BASE))
    with pytest.raises(ConfigError, match="different study"):
        run_study(other)
    assert run_study(other, force=True).n_done == 6


@needs_mpiexec
def test_sigterm_then_rerun_equals_uninterrupted(tmp_path):
    long = GRID.replace("replicates = 3", "replicates = 8").replace(", 0]", ", 25]")
    path = write_study(tmp_path, long, base=GRID_BASE)
    ref = subprocess.run([*CLI, "study", str(path), "--out", str(tmp_path / "ref.h5")],
                         env=env(), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    cmd = [str(MPIEXEC), "-n", "2", *CLI, "study", str(path)]
    proc = subprocess.Popen(cmd, env=env(), stderr=subprocess.PIPE, text=True)
    done = 0
    for line in proc.stderr:  # stop it after a few cells
        done += ": done [" in line
        if done == 3:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 143, rest
    sf = read_study(tmp_path / "grid.h5")
    assert 3 <= np.sum(sf.status == DONE) < sf.status.size
    assert "run the same command to continue" in rest
    again = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert np.all(read_study(tmp_path / "grid.h5").status == DONE)
    cells_equal(tmp_path / "grid.h5", tmp_path / "ref.h5")


@needs_mpiexec
@pytest.mark.parametrize("ranks_per_task", [1, 2])
def test_same_study_file_at_1_and_3_ranks(tmp_path, ranks_per_task):
    study = GRID.replace(", 0]", ", 30]") + f"ranks_per_task = {ranks_per_task}\n"
    path = write_study(tmp_path, study, base=GRID_BASE)
    serial = subprocess.run([*CLI, "study", str(path), "--out", str(tmp_path / "one.h5")],
                            env=env(), capture_output=True, text=True, timeout=300)
    assert serial.returncode == 0, serial.stderr
    three = subprocess.run([str(MPIEXEC), "-n", "3", *CLI, "study", str(path), "--out",
                            str(tmp_path / "three.h5")],
                           env=env(), capture_output=True, text=True, timeout=300)
    assert three.returncode == 0, three.stderr
    cells_equal(tmp_path / "one.h5", tmp_path / "three.h5")
    sf = read_study(tmp_path / "three.h5")
    assert np.all(sf.status == DONE) and sf.attrs["n_ranks"] == 3
    assert not np.any(sf.status == PENDING)


# ---------------------------------------------------------------- figures
def test_study_report_writes_the_study_figures(calibration_study, tmp_path, capsys):
    from phasic_mpi.cli import main
    from figures import assert_png

    spec, _ = calibration_study
    assert main(["study-report", spec.path, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ["study_coverage", "study_sbc", "study_error", "study_time"]:
        assert f"wrote {tmp_path / name}.png" in out
        assert_png(tmp_path / f"{name}.png")


def test_study_figures_with_fixed_truth(tmp_path):
    from phasic_mpi.plotting.study import plot_study
    from figures import assert_png

    spec = load_study(write_study(tmp_path, GRID.replace(", 0]", ", 60]"), base=GRID_BASE))
    run_study(spec)
    figures = ["study_coverage", "study_sbc", "study_error", "study_time"]
    paths = plot_study(spec.path, tmp_path / "fig")
    assert [os.path.basename(p) for p in paths] == [f"{name}.png" for name in figures]
    for path in paths:
        assert_png(path)
    # the plot command dispatches study files to the same figures, without MPI
    script = ("import sys; from phasic_mpi.cli import main; rc = main(sys.argv[1:]); "
              "assert 'mpi4py' not in sys.modules; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", script, "plot", spec.path, "--out",
                           str(tmp_path / "cmd")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in figures:
        assert_png(tmp_path / "cmd" / f"{name}.png")


DENSITY = '''
import numpy as np
from phasic_mpi.inference.posterior import FunctionDensity

def make(fail=False):
    def loglik(theta):
        if fail:
            raise FloatingPointError("the model blew up")
        return -0.5 * np.sum(theta ** 2, axis=1), -theta
    return FunctionDensity(loglik, ["x"], priors={"x": {"dist": "normal", "mu": 0, "sigma": 1}})
'''


def test_cell_failing_inside_its_run_is_recorded(tmp_path):
    (tmp_path / "dens.py").write_text(DENSITY)
    spec = load_study(write_study(tmp_path, """
        [study]
        replicates = 2
        grid = { "model.options.fail" = [false, true] }
        """, methods="", base='[model]\ndensity = "dens.py:make"\n'
                            "[svgd]\nparticles = 8\niterations = 10\n"))
    result = run_study(spec)
    assert (result.n_done, result.n_failed) == (2, 2)
    sf = read_study(spec.path)
    assert list(sf.status) == [DONE, DONE, FAILED, FAILED]
    assert all(text.startswith("FloatingPointError: the model blew up")
               for text in sf.errors().values())
    assert np.all(np.isnan(sf.cells["truth"]))  # a log-density has no true θ
    report = format_report(sf)
    assert "calibration (" not in report  # nothing to calibrate against
    assert "cell 2: FloatingPointError: the model blew up" in report
