"""``[data.simulate] censoring``: censored simulated data for runs and studies.

Oracles: the closed-form censoring fractions of Exponential(λ) times (within
5 binomial standard errors, as for ``phasic-mpi simulate --censor-*``), and
:func:`phasic_mpi.model.simulate.censor` itself for the exact bits.
"""

from __future__ import annotations

import math

import pytest

from phasic_mpi.cli import main
from phasic_mpi.config import validate_config
from phasic_mpi.config.loaders import load_data, load_model
from phasic_mpi.errors import ConfigError
from phasic_mpi.model.models import exponential
from phasic_mpi.model.simulate import censor
from phasic_mpi.study.spec import cell_config, parse_study

N, LAM, SEED = 20_000, 1.3, 7


def within(count: int, n: int, p: float, z: float = 5.0) -> bool:
    """``count`` of ``n`` Bernoulli(p) trials within ``z`` binomial standard errors."""
    return abs(count - n * p) < z * math.sqrt(n * p * (1 - p))


def _raw(censoring: object) -> dict:
    return {"model": {"name": "exponential"},
            "data": {"simulate": {"theta": [LAM], "n": N, "seed": SEED,
                                  "censoring": censoring}},
            "svgd": {"particles": 8, "iterations": 5}}


def _load(censoring: object):
    cfg = validate_config(_raw(censoring))
    return load_data(cfg["data"], load_model(cfg["model"])), cfg


@pytest.mark.parametrize("censoring, p, args", [
    ({"kind": "fixed", "at": 0.8}, math.exp(-LAM * 0.8), {"tau": 0.8}),
    # C ~ Exponential(μ): P(C < T) = μ / (λ + μ)
    ({"kind": "exponential", "rate": 0.4}, 0.4 / (LAM + 0.4),
     {"random": ("exponential", 0.4)}),
    # C = min(τ, U(0, b)), τ < b: (1 - e^{-λτ}) / (λb) + (1 - τ/b) e^{-λτ}
    ({"kind": "uniform", "high": 3.0, "at": 1.0},
     (1 - math.exp(-LAM)) / (LAM * 3.0) + (1 - 1 / 3.0) * math.exp(-LAM),
     {"tau": 1.0, "random": ("uniform", 3.0)}),
])
def test_censored_fractions_and_bits(censoring, p, args):
    obs, cfg = _load(censoring)
    assert obs.n_observations == N
    assert within(obs.right_censored.size, N, p)
    times = exponential().sample(N, [LAM], seed=SEED)
    expected = censor(times, seed=SEED, **args)  # the same stream as simulate --censor-*
    assert obs.exact.tobytes() == expected.exact.tobytes()
    assert obs.right_censored.tobytes() == expected.right_censored.tobytes()


def test_no_censoring_keeps_the_config_and_the_data():
    cfg = validate_config({k: v for k, v in _raw(None).items()} | {
        "data": {"simulate": {"theta": [LAM], "n": 50, "seed": SEED}}})
    assert "censoring" not in cfg["data"]["simulate"]
    obs = load_data(cfg["data"], load_model(cfg["model"]))
    assert obs.right_censored.size == 0 and obs.n_observations == 50


@pytest.mark.parametrize("censoring, message", [
    ({"at": 4.0}, "data.simulate.censoring.kind: required key missing"),
    ({"kind": "weibull"}, "data.simulate.censoring.kind: expected one of 'fixed', "
                          "'exponential', 'uniform', got 'weibull'"),
    ({"kind": "fixed"}, "data.simulate.censoring.at: required key missing"),
    ({"kind": "fixed", "at": -1.0}, "data.simulate.censoring.at: expected a positive number"),
    ({"kind": "exponential", "rate": 1.0, "high": 2.0},
     "data.simulate.censoring.high: unknown key (known: kind, rate, at)"),
    ({"kind": "uniform", "high": "x"}, "data.simulate.censoring.high: expected a positive"),
    (4.0, "data.simulate.censoring: expected a table"),
])
def test_bad_censoring_names_the_key(censoring, message):
    with pytest.raises(ConfigError) as err:
        validate_config(_raw(censoring))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_cli_simulate_from_config(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[model]\nname = "exponential"\n[data]\nsimulate = { theta = [1.3], '
                      'n = 400, seed = 3, censoring = { kind = "fixed", at = 0.8 } }\n')
    out = tmp_path / "c.csv"
    assert main(["simulate", str(config), "--out", str(out)]) == 0
    times = exponential().sample(400, [1.3], seed=3)
    n_censored = int((times > 0.8).sum())
    assert capsys.readouterr().out == f"wrote 400 times ({n_censored} right-censored) to {out}\n"
    assert "# censoring kind 'fixed', at 0.8\n" in out.read_text()
    assert main(["simulate", str(config), "--out", str(out), "--censor-at", "1"]) == 2
    assert capsys.readouterr().err == ("phasic-mpi: error: data.simulate.censoring: give "
                                       "censoring in the config or by --censor-*, not both\n")


def test_calibration_study_cells_are_censored(tmp_path):
    raw = {"study": {"type": "calibration", "replicates": 2, "seed": 1},
           "model": {"name": "exponential"},
           "data": {"simulate": {"n": 2000, "censoring": {"kind": "fixed", "at": 0.5}}},
           "prior": {"rate": {"dist": "gamma", "shape": 3.0, "rate": 2.0}},
           "svgd": {"particles": 8, "iterations": 5}}
    spec = parse_study(raw, tmp_path)
    for cell in spec.cells:
        cfg = cell_config(spec, cell, str(tmp_path / f"{cell.id}.h5"))
        sim = cfg["data"]["simulate"]
        obs = load_data(cfg["data"], load_model(cfg["model"]))
        assert (obs.right_censored == 0.5).all() and (obs.exact <= 0.5).all()
        assert within(obs.right_censored.size, 2000, math.exp(-sim["theta"][0] * 0.5))
