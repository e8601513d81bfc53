"""A new algorithm, registered with ``pm.register_algorithm``, reaches plotting
and job scripts through the registry: ``plot`` draws the posterior figures
plus the ones the class names (a function plotting owns, added with
``plotting.register_figure``), and ``jobscript`` accepts its name."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pytest

import phasic_mpi as pm
from phasic_mpi import plotting
from phasic_mpi.cli import main
from phasic_mpi.inference import registry
from phasic_mpi.inference.comm import as_communicator
from phasic_mpi.inference.parallel import stream
from phasic_mpi.inference.protocol import FinalRecord
from phasic_mpi.io.runfile import read_run
from phasic_mpi.settings import check_settings, integer, setting
from phasic_mpi.slurm import jobscript


@dataclass(frozen=True)
class PriorSettings:
    section: ClassVar[str] = "prior_draws"

    draws: int = setting(integer(2), 20, "independent prior draws")
    seed: int = setting(integer(0), 0, "seed")

    def __post_init__(self) -> None:
        check_settings(self)


class PriorDraws:
    """Draws from the prior in one step: the smallest algorithm the run loop drives."""

    name = "prior_draws"
    Settings = PriorSettings
    iteration_label = "step"
    figures = ("prior_draw_index", "not_drawn_by_anyone")

    def __init__(self, settings):
        self.settings, self.n_iterations = settings, 1

    def context(self, density, comm):
        return _Context(density, as_communicator(comm))

    def start(self, ctx, init=None):
        return _State(0, None)

    def step(self, state, ctx):
        z = ctx.density.sample_prior_z(stream(self.settings.seed, 1), self.settings.draws)
        return _State(1, z), _Diag(1.0)

    def describe(self, diag):
        return ""

    def history_due(self, iteration):
        return False

    def history(self, state, ctx):
        return None

    def checkpoint(self, state, ctx):
        return {"z": state.z}

    def restore(self, arrays, iteration, ctx):
        return _State(iteration, arrays["z"])

    def finish(self, state, ctx):
        theta = ctx.density.to_theta(state.z)
        return FinalRecord({n: theta[None, :, m] for m, n in enumerate(ctx.density.param_names)},
                           {}, {}, {}, True, state.z)


class _Context(NamedTuple):
    density: Any
    comm: Any


class _State:
    def __init__(self, iteration, z):
        self.iteration, self.z = iteration, z


class _Diag(tuple):
    def __new__(cls, value):
        return super().__new__(cls, (value,))

    def _asdict(self):
        return {"done": self[0]}


@pytest.fixture
def registered(monkeypatch):
    """PriorDraws registered and a figure for it, both gone after the test."""
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    monkeypatch.setattr(plotting, "FIGURES", dict(plotting.FIGURES))
    pm.register_algorithm(PriorDraws)
    calls = []

    def draw_index(view, out_dir, dpi):
        calls.append(view.draws.shape)
        path = Path(out_dir) / "prior_draw_index.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
        return str(path)

    plotting.register_figure("prior_draw_index", draw_index)
    return calls


def test_a_registered_algorithm_gets_the_posterior_figures_and_its_own(registered, tmp_path,
                                                                         capsys):
    graph = pm.models.rabbits(2)
    data = graph.sample(30, theta=[1.0, 2.0, 4.0], seed=2)
    result = pm.sample(graph, data, algorithm="prior_draws", draws=12, out=tmp_path / "p.h5",
                       progress="none")
    assert all(v.shape == (1, 12) for v in result.draws.values()) and len(result.draws) == 3
    run = read_run(tmp_path / "p.h5")
    assert run.algorithm == "prior_draws"
    assert run.attrs["algorithm_figures"] == list(PriorDraws.figures)
    assert main(["plot", str(tmp_path / "p.h5"), "--out", str(tmp_path / "figs")]) == 0
    captured = capsys.readouterr()
    names = {Path(p).stem for p in captured.out.split()}
    assert names == {"marginals", "pairs", "predictive", "prior_draw_index"}
    assert registered == [(1, 12, 3)]  # its own figure saw the run's draws
    assert "not_drawn_by_anyone" in captured.err and "skipped" in captured.err


def test_the_built_in_algorithms_name_their_figures_and_plotting_has_them():
    for name in ("svgd", "pt", "map"):
        figures = registry.algorithm_class(name).figures
        assert all(f in plotting.FIGURES for f in figures), name
    assert registry.algorithm_class("map").figures == ()


def test_jobscript_accepts_any_registered_algorithm(registered, tmp_path, capsys):
    assert "prior_draws" not in jobscript.JOB_KINDS
    assert jobscript.ALGORITHMS == registry.algorithm_names() + ("array", "study")
    assert "prior_draws" in jobscript.ALGORITHMS
    text = jobscript.render("debug", algorithm="prior_draws", config="draws.toml")
    assert "# phasic-mpi prior_draws job" in text and "CONFIG=${CONFIG:-draws.toml}" in text
    assert "CONFIG=${CONFIG:-prior_draws.toml}" in jobscript.render("debug",
                                                                     algorithm="prior_draws")
    with pytest.raises(jobscript.JobscriptError, match="--algorithm: expected one of svgd, pt, "
                       "map, prior_draws, array, study, got 'nope'"):
        jobscript.render("debug", algorithm="nope")
    assert main(["jobscript", "--algorithm", "nope", "--out", str(tmp_path / "j.sh")]) == 2
    assert "--algorithm: expected one of svgd, pt, map, prior_draws" in capsys.readouterr().err
    assert not (tmp_path / "j.sh").exists()
