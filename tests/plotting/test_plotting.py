"""``phasic-mpi plot``: figures of real SVGD and PT run files, the predictive
band against closed forms, skips, errors and the study dispatch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
from figures import assert_png

from phasic_mpi.cli import main
from phasic_mpi.model.data import Observations
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.models import exponential
from phasic_mpi.io.store import RunWriter, read_run

ROOT = Path(__file__).resolve().parents[2]

MODEL = """
[model]
name = "rabbits"
options = { n = 2 }
[data]
simulate = { theta = [1.0, 2.0, 4.0], n = 40, seed = 1 }
[prior]
default = { dist = "lognormal", mu = 0.0, sigma = 1.0 }
[output]
progress = "none"
"""
SVGD = "[svgd]\nparticles = 16\niterations = 40\nseed = 5\nhistory_every = 5\nksd_every = 10\n"
PT = ("[pt]\nreplicas = 4\nchains = 2\nrounds = 6\nwarmup_rounds = 3\nlocal_move = 'mala'\n"
      "seed = 4\n")

SVGD_FIGURES = {"marginals", "pairs", "svgd_trajectories", "svgd_diagnostics", "predictive"}
PT_FIGURES = {"marginals", "pairs", "pt_trace", "pt_ladder", "pt_swaps", "predictive"}


def make_run(directory: Path, name: str, section: str) -> Path:
    """A real run file of the rabbits model, one rank, in-process (MPI.COMM_SELF)."""
    mpi = pytest.importorskip("mpi4py.MPI")
    from phasic_mpi.config import load_config
    from phasic_mpi.config.loaders import build_density
    from phasic_mpi.run.driver import run

    cfg_path = directory / f"{name}.toml"
    cfg_path.write_text(MODEL + section)
    out = directory / f"{name}.h5"
    result = run(load_config(cfg_path), build=build_density, out=str(out), comm=mpi.COMM_SELF)
    assert result.completed
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("runs")
    return {"svgd": make_run(d, "svgd", SVGD), "pt": make_run(d, "pt", PT)}


def written(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.endswith(".png")]


def figure_names(paths: list[str]) -> set[str]:
    return {Path(p).stem for p in paths}


# ------------------------------------------------------------ real run files
def test_svgd_run_figures_in_the_default_directory(runs, capsys):
    assert main(["plot", str(runs["svgd"])]) == 0
    paths = written(capsys.readouterr().out)
    assert figure_names(paths) == SVGD_FIGURES
    default = str(runs["svgd"])[:-3] + "_plots"
    for p in paths:
        assert os.path.dirname(p) == default
        assert_png(p)


def test_pt_run_figures_and_one_subdirectory_per_file(runs, tmp_path, capsys):
    files = [str(runs["svgd"]), str(runs["pt"])]
    assert main(["plot", *files, "--out", str(tmp_path / "figs"), "--dpi", "80"]) == 0
    paths = written(capsys.readouterr().out)
    by_dir = {name: [p for p in paths if Path(p).parent == tmp_path / "figs" / name]
              for name in ("svgd", "pt")}
    assert len(paths) == len(SVGD_FIGURES) + len(PT_FIGURES)
    assert figure_names(by_dir["svgd"]) == SVGD_FIGURES
    assert figure_names(by_dir["pt"]) == PT_FIGURES
    for p in by_dir["pt"]:
        assert_png(p)


def test_plot_imports_no_mpi_and_needs_no_display(runs, tmp_path):
    probe = textwrap.dedent("""
        import sys
        from phasic_mpi.cli import main
        code = main(["plot", sys.argv[1], "--out", sys.argv[2]])
        import matplotlib
        assert "mpi4py" not in sys.modules, "plot imported mpi4py"
        assert matplotlib.get_backend().lower() == "agg", matplotlib.get_backend()
        sys.exit(code)
    """)
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    env["MPLBACKEND"] = "TkAgg"  # an interactive default must not be used
    done = subprocess.run([sys.executable, "-c", probe, str(runs["pt"]), str(tmp_path)],
                          check=False, env=env, capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert figure_names(written(done.stdout)) == PT_FIGURES


# -------------------------------------------------- the band against oracles
def test_density_and_cdf_bands_of_the_exponential_model():
    from phasic_mpi.plotting.predictive import BAND_PROBS, predictive_band

    rate = np.random.default_rng(3).gamma(20.0, 0.1, size=(37, 1))
    t = np.linspace(0.0, 6.0, 41)
    pdf = predictive_band(exponential(), rate, t, "pdf")
    cdf = predictive_band(exponential(), rate, t, "cdf")
    assert pdf.shape == cdf.shape == (3, t.size)
    want_pdf = np.quantile(rate * np.exp(-rate * t), BAND_PROBS, axis=0)
    want_cdf = np.quantile(1.0 - np.exp(-rate * t), BAND_PROBS, axis=0)
    np.testing.assert_allclose(pdf, want_pdf, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(cdf, want_cdf, rtol=1e-9, atol=1e-14)


def test_pmf_band_of_a_geometric_model():
    from phasic_mpi.plotting.predictive import predictive_band

    geometric = Graph([1.0], [0], [-1], [0.0], [[1.0]], discrete=True, param_names=["p"])
    p = np.random.default_rng(4).uniform(0.1, 0.6, size=(25, 1))
    k = np.arange(1.0, 15.0)
    band = predictive_band(geometric, p, k, "pdf", probs=(0.1, 0.9))
    want = np.quantile(p * (1.0 - p) ** (k - 1.0), (0.1, 0.9), axis=0)
    np.testing.assert_allclose(band, want, rtol=1e-9, atol=1e-14)


# ---------------------------------------------------- synthetic run files
def synthetic_run(path: Path, config: dict, draws: dict, observations=None,
                  algorithm: str = "pt", graph: Graph | None = None) -> Path:
    with RunWriter.create(path, algorithm=algorithm, config=config, param_names=list(draws),
                          observations=observations, seed=0) as w:
        w.write_posterior(draws)
        if graph is not None:
            w.write_model(graph)
    return path


def test_plotting_a_run_file_runs_no_code_named_in_its_config(tmp_path, capsys):
    """Results are data: the predictive check comes from the stored graph, and a
    config naming ``os:system`` (which building the model would run) stays inert."""
    from phasic_mpi.config.loaders import load_model

    marker = tmp_path / "pwned"
    cfg = {"model": {"name": "os:system", "options": {"command": f"touch {marker}"}}}
    with pytest.raises(Exception):  # the old path ran the command, then rejected the result
        load_model(cfg["model"])
    assert marker.exists()  # so the config below is a real attack
    marker.unlink()
    rate = np.random.default_rng(0).gamma(30.0, 1 / 15, size=(2, 50))
    run = synthetic_run(tmp_path / "crafted.h5", cfg, {"rate": rate},
                        Observations([0.2, 0.5, 0.7, 1.9]), graph=exponential())
    assert main(["plot", str(run)]) == 0
    assert "predictive" in figure_names(written(capsys.readouterr().out))
    assert not marker.exists()
    assert main(["summary", str(run)]) == 0
    assert not marker.exists()


def test_graph_round_trips_through_the_run_file(tmp_path):
    g = Graph([0.6, 0.3], [0, 0, 1], [1, -1, -1], [0.5, 0.0, 1.0], [[1.0, 0.0], [0.0, 2.0],
                                                                   [0.0, 0.0]],
              param_names=["a", "b"])
    run = synthetic_run(tmp_path / "g.h5", {}, {"a": np.ones((1, 3)), "b": np.ones((1, 3))},
                        graph=g)
    back = read_run(run).model()
    for key, value in g.to_arrays().items():
        got = back.to_arrays()[key]
        assert (np.array_equal(got, value) and np.asarray(got).dtype == np.asarray(value).dtype
                if isinstance(value, np.ndarray) else got == value), key
    t = np.array([0.1, 0.7, 2.0])
    np.testing.assert_array_equal(back.pdf(t, [0.3, 0.4]), g.pdf(t, [0.3, 0.4]))
    with h5py.File(run, "r+") as fh:  # a tampered graph is refused, not obeyed
        fh["model/edge_dst"][0] = 7
    with pytest.raises(ValueError, match="stored model is not a valid graph"):
        read_run(run).model()


def test_censored_data_are_shown_on_the_survival_scale_and_say_so(tmp_path, monkeypatch,
                                                                  capsys):
    from phasic_mpi.plotting import predictive

    obs = Observations([0.2, 0.5, 0.7], right_censored=[1.0, 1.0], interval=[[0.1, 0.3]])
    note = predictive.censoring_note(obs)
    assert note == ("3 exact and 2 right-censored and 1 interval-censored observations: "
                    "survival scale (Turnbull)")
    assert predictive.censoring_note(Observations([0.2, 0.5])) == ""
    cfg = {"model": {"name": "exponential", "options": {}}}
    rate = np.random.default_rng(0).gamma(30.0, 1 / 15, size=(2, 50))
    run = synthetic_run(tmp_path / "cens.h5", cfg, {"rate": rate}, obs, graph=exponential())
    titles = []
    from phasic_mpi.plotting import survival

    real_save = survival.save

    def spy(fig, out_dir, name, dpi, title=None, **kw):
        titles.append(title)
        return real_save(fig, out_dir, name, dpi, title, **kw)

    monkeypatch.setattr(survival, "save", spy)
    assert main(["plot", str(run)]) == 0
    paths = written(capsys.readouterr().out)
    assert figure_names(paths) == {"marginals", "pt_trace", "predictive"}  # no PT history
    assert len(titles) == 1 and note in titles[0]
    assert_png(next(p for p in paths if p.endswith("predictive.png")))


def test_a_log_density_run_skips_the_predictive_check(tmp_path, capsys):
    cfg = {"model": {"density": "somewhere.py:make", "options": {}}}
    rng = np.random.default_rng(1)
    run = synthetic_run(tmp_path / "dens.h5", cfg, {"a": rng.normal(size=(1, 40)),
                                                    "b": rng.normal(size=(1, 40))},
                        algorithm="svgd")
    assert main(["plot", str(run)]) == 0
    captured = capsys.readouterr()
    assert figure_names(written(captured.out)) == {"marginals", "pairs"}
    assert "dens.h5: no posterior-predictive check: the run uses a log-density" in captured.err


def test_pair_plot_is_capped_and_says_so(tmp_path, capsys):
    from phasic_mpi.plotting import run as run_figures

    names = [f"x{i}" for i in range(run_figures.MAX_PAIR_PARAMS + 2)]
    rng = np.random.default_rng(2)
    run = synthetic_run(tmp_path / "wide.h5", {}, {n: rng.normal(size=(1, 30)) for n in names})
    view = run_figures.load_view(read_run(run))
    path = run_figures.plot_pairs(view, str(tmp_path / "out"), 40)
    assert_png(path)
    assert "first 8 of 10" in run_figures.pair_title(view)


# --------------------------------------------------- errors and dispatch
def test_errors_name_the_file(tmp_path, capsys):
    missing = tmp_path / "missing.h5"
    assert main(["plot", str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    text = tmp_path / "notes.h5"
    text.write_text("not HDF5")
    assert main(["plot", str(text)]) == 2
    assert f"{text}: cannot read it as HDF5" in capsys.readouterr().err
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as fh:
        fh["x"] = np.arange(3)
    assert main(["plot", str(foreign)]) == 2
    assert f"{foreign}: not a phasic_mpi run or study file" in capsys.readouterr().err
    assert main(["plot", str(foreign), "--dpi", "0"]) == 2
    assert "--dpi" in capsys.readouterr().err
    assert not list(tmp_path.glob("*_plots"))


def test_study_files_go_to_the_study_module(tmp_path, monkeypatch, capsys):
    study = tmp_path / "grid.h5"
    with h5py.File(study, "w") as fh:
        fh.attrs["file_kind"] = "study"
    calls = []
    fake = types.ModuleType("phasic_mpi.plotting.study")

    def plot_study(path, out_dir, dpi):
        calls.append((path, out_dir, dpi))
        return [os.path.join(out_dir, "calibration.png")]

    fake.plot_study = plot_study
    monkeypatch.setitem(sys.modules, "phasic_mpi.plotting.study", fake)
    assert main(["plot", str(study), "--dpi", "90"]) == 0
    assert calls == [(str(study), str(tmp_path / "grid_plots"), 90)]
    assert capsys.readouterr().out.strip() == str(tmp_path / "grid_plots" / "calibration.png")

    monkeypatch.setitem(sys.modules, "phasic_mpi.plotting.study", None)  # not installed
    assert main(["plot", str(study)]) == 2
    assert "is a study file" in capsys.readouterr().err


# ------------------------------------------ capped figures and their legends
def _capture(monkeypatch, module):
    """Spy on ``module.save``: record (name, title, figure legends per axes)."""
    seen = []
    real_save = module.save

    def spy(fig, out_dir, name, dpi, title=None, **kw):
        legends = [[t.get_text() for t in ax.get_legend().get_texts()]
                   if ax.get_legend() else [] for ax in fig.axes]
        seen.append((name, title, legends, len([a for a in fig.axes if a.get_visible()])))
        return real_save(fig, out_dir, name, dpi, title, **kw)

    monkeypatch.setattr(module, "save", spy)
    return seen


def test_per_parameter_figures_are_capped_by_r_hat_and_say_so(tmp_path, monkeypatch):
    from phasic_mpi.plotting import pt as pt_figures
    from phasic_mpi.plotting import run as run_figures

    rng = np.random.default_rng(3)
    d = run_figures.MAX_PANELS + 18
    draws = {f"w{i}": rng.normal(size=(2, 200)) for i in range(d)}
    for bad in (4, 17, 29):  # chains that disagree: the highest R-hat
        draws[f"w{bad}"][1] += 3.0
    run = synthetic_run(tmp_path / "wide.h5", {}, draws)
    view = run_figures.load_view(read_run(run))
    shown, note = run_figures.shown_params(view)
    assert len(shown) == run_figures.MAX_PANELS and {4, 17, 29} <= set(shown)
    assert note == f"the {run_figures.MAX_PANELS} of {d} parameters with the highest R\u0302"
    seen = _capture(monkeypatch, pt_figures)
    assert_png(pt_figures.plot_trace(view, str(tmp_path / "out"), 40))
    (_, title, _, panels), = seen
    assert title.endswith(note) and panels == run_figures.MAX_PANELS  # no sample_stats here
    indep = synthetic_run(tmp_path / "svgd.h5", {}, {k: v[:1] for k, v in draws.items()},
                          algorithm="svgd")
    with h5py.File(indep, "r+") as fh:
        fh["posterior"].attrs["draws_are_independent"] = np.True_
    shown, note = run_figures.shown_params(run_figures.load_view(read_run(indep)))
    assert shown == list(range(run_figures.MAX_PANELS))
    assert note == f"the first {run_figures.MAX_PANELS} of {d} parameters"


def test_capped_titles_and_per_panel_truth_legends(tmp_path, monkeypatch):
    from phasic_mpi.plotting import pt as pt_figures
    from phasic_mpi.plotting import run as run_figures

    rng = np.random.default_rng(4)
    names = ["a", "b", "c"]
    cfg = {"data": {"simulate": {"theta": [1.0, 2.5, 7.0]}}}
    run = synthetic_run(tmp_path / "t.h5", cfg, {n: rng.normal(size=(2, 60)) for n in names})
    view = run_figures.load_view(read_run(run))
    seen = _capture(monkeypatch, pt_figures)
    assert_png(pt_figures.plot_trace(view, str(tmp_path / "out"), 60))
    (name, title, legends, _), = seen
    assert name == "pt_trace" and "parameters" not in title  # three shown: no cap note
    assert legends[:3] == [["true 1"], ["true 2.5"], ["true 7"]]

    wide = {f"x{i}": rng.normal(size=(2, 60)) for i in range(run_figures.MAX_PANELS + 5)}
    run = synthetic_run(tmp_path / "w.h5", {}, wide)
    seen = _capture(monkeypatch, run_figures)
    run_figures.plot_marginals(run_figures.load_view(read_run(run)), str(tmp_path / "o2"), 40)
    (_, title, _, panels), = seen
    assert title.endswith(f"the {run_figures.MAX_PANELS} of {len(wide)} parameters with the "
                          "highest R\u0302")
    assert panels == run_figures.MAX_PANELS
