"""Config validation (phasic_mpi.config) and model/data loading (phasic_mpi.config.loaders)."""

from __future__ import annotations

import copy
import json
import re
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from phasic_mpi import Graph, Observations
from phasic_mpi.config import (
    ALGORITHMS,
    MODEL,
    OUTPUT,
    PT,
    REQUIRED,
    SVGD,
    ConfigError,
    algorithm_name,
    dump_config,
    load_config,
    validate_config,
)
from phasic_mpi.config.loaders import load_data, load_density, load_model
from phasic_mpi.io.datafile import read_data_file, write_data
from phasic_mpi.model.models import MODELS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.toml")
                  if not p.stem.endswith("_study"))  # study files: tests/test_study.py
PT_EXAMPLES = ("rabbits_pt", "bnn")


def base_raw() -> dict:
    return {
        "model": {"name": "rabbits", "options": {"n": 2}},
        "data": {"simulate": {"theta": [1.0, 2.0, 4.0], "n": 20, "seed": 1}},
        "svgd": {"particles": 8},
    }


def validate(raw: dict, tmp_path: Path | None = None) -> dict:
    return validate_config(raw, tmp_path or ".")


# ----------------------------------------------------------------- examples
def test_every_builtin_has_an_example():
    assert {p.stem for p in EXAMPLES} >= set(MODELS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate_and_build(path):
    cfg = load_config(path)
    if "density" in cfg["model"]:
        density = load_density(cfg["model"])
        assert list(cfg) == ["model", *(a for a in ALGORITHMS if a in cfg), "output"]
        assert density.n_params == len(density.param_names) > 0
    else:
        graph = load_model(cfg["model"])
        assert isinstance(graph, Graph)
        assert set(cfg["prior"]) == {"default", *graph.param_names}
        assert list(cfg["transform"]) == list(graph.param_names)
    assert algorithm_name(cfg) == ("pt" if path.stem in PT_EXAMPLES
                                   else "map" if path.stem.endswith("_map") else "svgd")
    assert Path(cfg["output"]["path"]).is_absolute()
    assert Path(cfg["output"]["path"]).parent.parent == path.parent  # runs/<name>.h5
    assert validate_config(json.loads(dump_config(cfg))) == cfg  # idempotent


def test_pt_examples_use_every_pt_key():
    for name in ("rabbits_pt.toml", "bnn.toml"):
        text = (ROOT / "examples" / name).read_text()
        assert all(f"\n{key} = " in text for key in PT), name
    cfg = load_config(ROOT / "examples" / "rabbits_pt.toml")
    rabbits = load_config(ROOT / "examples" / "rabbits.toml")
    for section in ("model", "data", "prior", "transform"):
        assert cfg[section] == rabbits[section]
    assert (cfg["pt"]["replicas"], cfg["pt"]["chains"], cfg["pt"]["rounds"],
            cfg["pt"]["warmup_rounds"], cfg["pt"]["local_move"]) == (5, 4, 10, 7, "mala")
    assert cfg["output"]["path"].endswith("runs/rabbits_pt.h5")


def test_rabbits_example_structure():
    cfg = load_config(ROOT / "examples" / "rabbits.toml")
    assert cfg["model"] == {"name": "rabbits", "options": {"n": 2}, "max_states": 250_000}
    assert cfg["data"] == {"simulate": {"theta": [1.0, 2.0, 4.0], "n": 200, "seed": 1}}
    assert cfg["prior"]["jump"] == {"dist": "gamma", "shape": 2.0, "rate": 1.0}
    assert cfg["prior"]["flood_left"] == {"dist": "lognormal", "mu": 0.0, "sigma": 1.0}
    assert cfg["transform"] == {"jump": "log", "flood_left": "log", "flood_right": "log"}
    assert list(cfg) == ["model", "data", "prior", "transform", "svgd", "output"]


# ------------------------------------------------------------------ defaults
def test_defaults_filled(tmp_path):
    cfg = validate(base_raw(), tmp_path)
    assert cfg["svgd"] == {"particles": 8, "iterations": 1000, "seed": 0,
                           "optimizer": "adagrad", "step_size": 0.05, "decay": 0.01, "schedule": "inverse_time",
                           "bandwidth": "median_subset", "bandwidth_pairs": 4096, "history_every": 10,
                           "ksd_every": 50, "tolerance": 0.02, "convergence_window": 50,
                           "min_iterations": 100, "stop_early": True, "anneal_iterations": 0}
    assert cfg["output"] == {"path": str(tmp_path / "run.h5"), "checkpoint_every": 100,
                             "progress": "auto", "log_every": 10.0}
    assert cfg["prior"]["default"] == {"dist": "lognormal", "mu": 0.0, "sigma": 1.0}
    assert cfg["model"]["options"] == {"n": 2}
    assert isinstance(cfg["output"]["log_every"], float)


def test_defaults_come_from_the_tables():
    for table in (SVGD, PT, OUTPUT, MODEL):
        for key in table.values():
            if key.default is not REQUIRED:
                json.dumps(key.default)  # every default is JSON-serialisable


def test_canonical_prior_and_theta_by_name():
    raw = base_raw()
    raw["data"]["simulate"]["theta"] = {"flood_right": 4, "jump": 1, "flood_left": 2}
    raw["prior"] = {"jump": {"dist": "Gamma", "shape": 2, "scale": 0.5},
                    "flood_left": {"dist": "uniform", "low": 0, "high": 10}}
    raw["transform"] = {"flood_right": "default"}
    cfg = validate(raw)
    assert cfg["data"]["simulate"]["theta"] == [1.0, 2.0, 4.0]
    assert cfg["prior"]["jump"] == {"dist": "gamma", "shape": 2.0, "rate": 2.0}
    assert cfg["transform"] == {"jump": "log", "flood_left": "logit", "flood_right": "log"}


def test_pt_defaults_and_values():
    raw = base_raw()
    del raw["svgd"]
    raw["pt"] = {}
    cfg = validate(raw)
    assert algorithm_name(cfg) == "pt" and "svgd" not in cfg
    assert cfg["pt"] == {"replicas": 5, "chains": 4, "rounds": 10, "warmup_rounds": 6,
                         "local_move": "mala", "local_steps": 1, "leapfrog_steps": 4, "step_size": 0.5,
                         "target_accept": 0.0, "swap": "nonreversible",
                         "adapt_ladder": True, "mass_matrix": "auto", "cold_steps": 0, "seed": 0,
                         "reference": "prior", "variational_family": "diagonal", "stabilised": True}
    assert isinstance(cfg["pt"]["target_accept"], float)
    raw["pt"] = {"replicas": 2, "rounds": 1, "warmup_rounds": 0, "local_move": "rwm",
                 "step_size": 1, "target_accept": 0.3, "swap": "reversible",
                 "adapt_ladder": False, "chains": 4}
    cfg = validate(raw)
    assert cfg["pt"]["step_size"] == 1.0 and isinstance(cfg["pt"]["step_size"], float)
    assert (cfg["pt"]["target_accept"], cfg["pt"]["adapt_ladder"]) == (0.3, False)
    assert validate_config(json.loads(dump_config(cfg))) == cfg
    assert list(ALGORITHMS) == ["svgd", "pt", "map"] and list(PT) == list(validate(raw)["pt"])


def test_pt_settings_accept_the_validated_section():
    from phasic_mpi.inference import pt

    raw = _set(_set(base_raw(), "svgd", _DELETE), "pt", {"chains": 2})
    section = validate(raw)["pt"]
    settings = pt.PTSettings.from_config(section)
    assert {k: getattr(settings, k) for k in section} == section


def test_simulate_only_config_needs_no_algorithm(tmp_path):
    raw = base_raw()
    del raw["svgd"]
    with pytest.raises(ConfigError, match="exactly one algorithm section"):
        validate(raw)
    cfg = validate_config(raw, tmp_path, require_algorithm=False)
    assert algorithm_name(cfg) is None


def test_relative_paths_resolve_against_config_dir(tmp_path, monkeypatch):
    sub = tmp_path / "cfgdir"
    (sub / "models").mkdir(parents=True)
    (sub / "models" / "mine.py").write_text(textwrap.dedent("""
        from phasic_mpi.model.models import exponential
        def build(scale=1):
            return exponential()
    """))
    np.save(sub / "times.npy", np.array([0.5, 1.5]))
    (sub / "c.toml").write_text(textwrap.dedent("""
        [model]
        name = "models/mine.py:build"
        options = { scale = 2 }
        [data]
        file = "times.npy"
        [svgd]
        particles = 4
    """))
    monkeypatch.chdir(tmp_path)
    cfg = load_config("cfgdir/c.toml")
    assert cfg["model"]["name"] == f"{sub / 'models' / 'mine.py'}:build"
    assert cfg["data"] == {"file": str(sub / "times.npy")}
    assert cfg["output"]["path"] == str(sub / "c.h5")
    graph = load_model(cfg["model"])
    np.testing.assert_array_equal(load_data(cfg["data"], graph).exact, [0.5, 1.5])


# -------------------------------------------------------------------- errors
def _set(raw: dict, dotted: str, value) -> dict:
    raw = copy.deepcopy(raw)
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return raw


_DELETE = object()

ERRORS = [
    ("svgd.particles", 1, "svgd.particles: expected an integer >= 2, got 1"),
    ("svgd.particles", 64.0, "svgd.particles: expected an integer >= 2, got 64.0"),
    ("svgd.particles", True, "svgd.particles: expected an integer >= 2, got True"),
    ("svgd.iterations", -5, "svgd.iterations: expected an integer >= 1"),
    ("svgd.seed", -1, "svgd.seed: expected an integer >= 0"),
    ("svgd.optimizer", "sgd", "svgd.optimizer: expected one of 'adagrad', 'adam', got 'sgd'"),
    ("svgd.step_size", 0, "svgd.step_size: expected a positive number, got 0"),
    ("svgd.decay", -0.1, "svgd.decay: expected a number >= 0.0"),
    ("svgd.bandwidth", "mean", "svgd.bandwidth: expected 'median_subset', 'median' or a positive number"),
    ("svgd.bandwidth", -1.0, "svgd.bandwidth: expected 'median_subset', 'median' or a positive number"),
    ("svgd.history_every", -1, "svgd.history_every: expected an integer >= 0"),
    ("svgd.particle", 5, "svgd.particle: unknown key (known: particles, iterations"),
    ("svgd", 5, "svgd: expected a table, got 5"),
    ("pt", {}, "config: expected exactly one algorithm section (svgd or pt or map), got svgd, pt"),
    ("svgd", _DELETE, "config: expected exactly one algorithm section (svgd or pt or map), got none"),
    ("mcmc", {}, "mcmc: unknown section (known: model, data, prior, transform, svgd, pt"),
    ("output.progress", "fancy", "output.progress: expected one of 'auto', 'bar', 'log'"),
    ("output.log_every", 0, "output.log_every: expected a positive number, got 0"),
    ("output.checkpoint_every", -1, "output.checkpoint_every: expected an integer >= 0"),
    ("output.path", "", "output.path: expected a non-empty string"),
    ("model.name", _DELETE, ("model: give exactly one of 'name' (a phase-type model) or "
                             "'density' (a log-density)")),
    ("model.density", "phasic_mpi.model.models:rabbits", "model: give exactly one of 'name'"),
    ("model", _DELETE, "model: required section missing"),
    ("model.name", "rabbit", "model.name: unknown built-in model 'rabbit' (built-ins: "),
    ("model.name", "no/such/file.py:build", "model.name: model file not found: "),
    ("model.name", "mod-x:build", "model.name: 'mod-x' in 'mod-x:build' is not a module"),
    ("model.name", "phasic_mpi.model.models:no_such", ("model.name: 'phasic_mpi.model.models:no_such': "
                                                "module has no function 'no_such'")),
    ("model.name", "no_such_module_xyz:f", ("model.name: cannot import module "
                                           "'no_such_module_xyz'")),
    ("model", {"name": "phasic_mpi.model.models:erlang"},
     "model.options: phasic_mpi.model.models:erlang: missing a required argument: 'k'"),
    ("model.options", {"m": 2}, "model.options.m: unknown option of rabbits (accepted: n)"),
    ("model.options", {"n": 0}, "model.options: rabbits(n=0) failed: ValueError: n must be"),
    ("model.options", [1], "model.options: expected a table"),
    ("data", _DELETE, "data: required section missing"),
    ("data.file", "x.csv", "data: give exactly one of 'simulate' or 'file'"),
    ("data.simulate", _DELETE, "data: give exactly one of 'simulate' or 'file'"),
    ("data.simulate.theta", [1.0, 2.0],
     "data.simulate.theta: expected 3 values (jump, flood_left, flood_right), got 2"),
    ("data.simulate.theta", [-1.0, 2.0, 4.0], "data.simulate.theta: edge "),
    ("data.simulate.theta", [1.0, "a", 4.0], "data.simulate.theta[1]: expected a finite"),
    ("data.simulate.theta", {"jmp": 1}, "data.simulate.theta.jmp: unknown parameter"),
    ("data.simulate.theta", {"jump": 1}, ("data.simulate.theta: missing parameter(s) "
                                         "flood_left, flood_right")),
    ("data.simulate.n", 0, "data.simulate.n: expected an integer >= 1, got 0"),
    ("data.simulate.n", _DELETE, "data.simulate.n: required key missing"),
    ("data.simulate.sed", 1, "data.simulate.sed: unknown key"),
    ("data.dataset", "x", "data.dataset: only allowed with data.file"),
    ("data.extra", 1, "data.extra: unknown key (known: simulate, file, dataset, sfs, moments)"),
    ("prior.jmp", {"dist": "gamma", "shape": 1, "rate": 1},
     "prior.jmp: unknown parameter (model parameters: jump, flood_left, flood_right)"),
    ("prior.jump", {"dist": "gama", "shape": 1, "rate": 1}, "prior.jump: unknown dist 'gama'"),
    ("prior.jump", {"dist": "gamma", "shape": 1}, "prior.jump: missing key 'rate'"),
    ("prior.jump", {"dist": "normal", "mu": 0, "sigma": -1}, "prior.jump: sigma must be > 0"),
    ("prior.jump", {"dist": "uniform", "low": 2, "high": 1}, "prior.jump: need low < high"),
    ("prior.jump", 3.0, "prior.jump: expected a table like"),
    ("prior.default", {"dist": "lognormal", "mu": 0}, "prior.default: missing key 'sigma'"),
    ("transform.jmp", "log", "transform.jmp: unknown parameter (model parameters: jump"),
    ("transform.jump", "sqrt", "transform.jump: expected one of 'log', 'logit', 'identity'"),
    ("transform.jump", "logit", ("transform.jump: the logit transform needs a prior with a "
                                "finite support")),
    ("transform.jump", "identity", ("transform.jump: the identity transform maps onto "
                                   "(-inf, inf) but the prior")),
]


PT_ERRORS = [
    ("pt.replicas", 1, "pt.replicas: expected an integer >= 2, got 1"),
    ("pt.chains", 0, "pt.chains: expected an integer >= 1, got 0"),
    ("pt.rounds", 0, "pt.rounds: expected an integer >= 1, got 0"),
    ("pt.rounds", 3.0, "pt.rounds: expected an integer >= 1, got 3.0"),
    ("pt.warmup_rounds", 12, ("pt.warmup_rounds: expected an integer in [0, rounds), got 12 "
                              "(rounds = 10)")),
    ("pt.warmup_rounds", 10, "pt.warmup_rounds: expected an integer in [0, rounds), got 10"),
    ("pt.warmup_rounds", -1, "pt.warmup_rounds: expected an integer in [0, rounds), got -1"),
    ("pt.warmup_rounds", "6", "pt.warmup_rounds: expected an integer in [0, rounds), got '6'"),
    ("pt.local_move", "nuts", "pt.local_move: expected one of 'mala', 'rwm', 'hmc', got 'nuts'"),
    ("pt.leapfrog_steps", 0, "pt.leapfrog_steps: expected an integer >= 1, got 0"),
    ("pt.local_steps", 0, "pt.local_steps: expected an integer >= 1, got 0"),
    ("pt.step_size", 0.0, "pt.step_size: expected a positive number, got 0.0"),
    ("pt.step_size", float("inf"), "pt.step_size: expected a positive number, got inf"),
    ("pt.target_accept", 1.0, ("pt.target_accept: expected 0 (the default for local_move) "
                               "or a number in (0, 1), got 1.0")),
    ("pt.target_accept", -0.2, "pt.target_accept: expected 0 (the default for local_move)"),
    ("pt.target_accept", True, "pt.target_accept: expected 0"),
    ("pt.swap", "random", "pt.swap: expected one of 'nonreversible', 'reversible', got"),
    ("pt.adapt_ladder", 1, "pt.adapt_ladder: expected true or false, got 1"),
    ("pt.seed", -3, "pt.seed: expected an integer >= 0, got -3"),
    ("pt.temps", 3, "pt.temps: unknown key (known: replicas, chains, rounds, warmup_rounds"),
    ("pt", [1], "pt: expected a table, got [1]"),
]


@pytest.mark.parametrize("dotted, value, message", ERRORS + PT_ERRORS,
                         ids=[f"{d}={v!r}"[:40] for d, v, _ in ERRORS + PT_ERRORS])
def test_errors_name_the_key(dotted, value, message):
    raw = base_raw()
    if dotted.startswith("pt") and (dotted, value, message) in PT_ERRORS:
        raw = _set(_set(raw, "svgd", _DELETE), "pt", {})
    with pytest.raises(ConfigError) as info:
        validate(_set(raw, dotted, value))
    assert str(info.value).startswith(message), str(info.value)


def test_top_level_must_be_a_table():
    with pytest.raises(ConfigError, match="config: expected a table"):
        validate_config([1, 2])


def test_data_file_errors(tmp_path):
    raw = _set(_set(base_raw(), "data.simulate", _DELETE), "data.file", "missing.csv")
    with pytest.raises(ConfigError, match="data.file: no such file: .*missing.csv"):
        validate_config(raw, tmp_path)
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(ConfigError, match="data.file: unknown file type '.json'"):
        validate_config(_set(raw, "data.file", "x.json"), tmp_path)
    (tmp_path / "x.csv").write_text("1.0\n")
    with pytest.raises(ConfigError, match="data.dataset: only allowed with an HDF5"):
        validate_config(_set(_set(raw, "data.file", "x.csv"), "data.dataset", "d"), tmp_path)


def test_toml_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 1")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "none.toml")
    dated = tmp_path / "dated.toml"
    dated.write_text('[model]\nname = "rabbits"\noptions = { n = 2, when = 1979-05-27 }\n'
                     '[data]\nsimulate = { theta = [1, 2, 4], n = 5 }\n[svgd]\n')
    with pytest.raises(ConfigError, match="model.options.when: unsupported value"):
        load_config(dated)


def test_user_models(tmp_path):
    (tmp_path / "usermod_cfg_test.py").write_text(textwrap.dedent("""
        from phasic_mpi.model.models import erlang
        def build(k=2):
            return erlang(k)
        def not_a_graph():
            return [1, 2]
    """))
    assert load_model({"name": "phasic_mpi.model.models:rabbits", "options": {"n": 1}}).n_states == 2
    try:
        graph = load_model({"name": "usermod_cfg_test:build", "options": {"k": 3}}, tmp_path)
        assert graph.n_states == 3
        graph = load_model({"name": "./usermod_cfg_test.py:build"}, tmp_path)
        assert graph.n_states == 2
        with pytest.raises(ConfigError, match="returned list, expected a phasic_mpi.Graph"):
            load_model({"name": "usermod_cfg_test.py:not_a_graph"}, tmp_path)
    finally:
        sys.modules.pop("usermod_cfg_test", None)
    (tmp_path / "broken.py").write_text("def build(:\n")
    with pytest.raises(ConfigError, match="cannot load .*broken.py: SyntaxError"):
        load_model({"name": "broken.py:build"}, tmp_path)


def test_parameter_named_default_is_rejected(tmp_path):
    (tmp_path / "m.py").write_text(textwrap.dedent("""
        from phasic_mpi import Graph
        def build():
            return Graph.from_callback(lambda s: [((0,), [1.0])] if s == (1,) else [],
                                       (1,), 1, param_names=["default"])
    """))
    raw = {"model": {"name": "m.py:build"},
           "data": {"simulate": {"theta": [1.0], "n": 3}}, "svgd": {}}
    with pytest.raises(ConfigError, match="model: a parameter named 'default'"):
        validate_config(raw, tmp_path)


# ----------------------------------------------------------- density models
DENSITY_PY = textwrap.dedent("""
    import numpy as np
    from phasic_mpi.inference.posterior import FunctionDensity

    def make(mu=0.0):
        mu = float(mu)

        def loglik(theta):
            return -0.5 * np.sum((theta - mu) ** 2, axis=1), -(theta - mu)
        return FunctionDensity(loglik, ["a", "b"], priors=[{"dist": "normal", "mu": 0,
                                                          "sigma": 2}] * 2)

    class NoEvaluate:
        param_names = ("a",)
        n_params = 1
        def sample_prior_z(self, rng, n):
            return rng.normal(size=(n, 1))

    def partial():
        return NoEvaluate()

    def bad_names(names=("a", "a")):
        d = make()
        d.param_names = tuple(names) if isinstance(names, list) else names
        return d
""")


def density_raw(**model) -> dict:
    return {"model": {"density": "dens.py:make", **model}, "pt": {"rounds": 3,
                                                                 "warmup_rounds": 1}}


def test_density_model(tmp_path):
    from phasic_mpi.config.loaders import build_density
    from phasic_mpi.inference.posterior import FunctionDensity, LogDensity

    (tmp_path / "dens.py").write_text(DENSITY_PY)
    cfg = validate_config(density_raw(options={"mu": 1.5}), tmp_path)
    assert list(cfg) == ["model", "pt", "output"]
    assert cfg["model"] == {"density": f"{tmp_path / 'dens.py'}:make",
                            "options": {"mu": 1.5}}
    assert validate_config(json.loads(dump_config(cfg))) == cfg  # idempotent
    density, observations = build_density(cfg, tmp_path)
    assert observations is None and isinstance(density, (FunctionDensity, LogDensity))
    assert density is load_density(cfg["model"])  # built once (validation) and cached
    assert density.param_names == ("a", "b")
    ev = density.evaluate([[1.5, 1.5]])
    assert ev.loglik[0] == 0.0 and ev.grad.shape == (1, 2)
    svgd = validate_config({"model": {"density": "dens.py:make"}, "svgd": {}}, tmp_path)
    assert algorithm_name(svgd) == "svgd" and svgd["model"]["options"] == {}


def test_density_model_from_module_in_config_dir(tmp_path):
    (tmp_path / "dens_mod_cfg_test.py").write_text(DENSITY_PY)
    try:
        cfg = validate_config(density_raw(density="dens_mod_cfg_test:make"), tmp_path)
    finally:
        sys.modules.pop("dens_mod_cfg_test", None)
    assert cfg["model"]["density"] == "dens_mod_cfg_test:make"


@pytest.mark.parametrize("change, message", [
    ({"data": {"simulate": {"theta": [1.0], "n": 3}}},
     "data: not allowed with model.density (the log-density brings its own data"),
    ({"prior": {"a": {"dist": "normal", "mu": 0, "sigma": 1}}},
     "prior: not allowed with model.density"),
    ({"transform": {}}, "transform: not allowed with model.density"),
    ({"model": {"density": "make"}},
     "model.density: expected 'module:function' or 'path/file.py:function', got 'make'"),
    ({"model": {"density": "rabbits"}}, "model.density: expected 'module:function'"),
    ({"model": {"density": "nope.py:make"}}, "model.density: model file not found: "),
    ({"model": {"density": "dens.py:nope"}},
     "model.density: '{dir}/dens.py:nope': module has no function 'nope'"),
    ({"model": {"density": "dens.py:make", "options": {"sigma": 1}}},
     "model.options.sigma: unknown option of {dir}/dens.py:make (accepted: mu)"),
    ({"model": {"density": "dens.py:make", "options": {"mu": "x"}}},
     "model.options: {dir}/dens.py:make(mu='x') failed: ValueError"),
    ({"model": {"density": "dens.py:partial"}},
     ("model.density: {dir}/dens.py:partial returned NoEvaluate, which has no evaluate, "
      "to_theta (expected a phasic_mpi.inference.posterior.LogDensity, e.g. a FunctionDensity)")),
    ({"model": {"density": "dens.py:bad_names"}},
     ("model.density: {dir}/dens.py:bad_names: param_names must be distinct non-empty "
      "strings without '/', got ('a', 'a')")),
    ({"model": {"density": "dens.py:bad_names", "options": {"names": ["a", "b/c"]}}},
     "model.density: {dir}/dens.py:bad_names: param_names must be distinct"),
    ({"model": {"density": "dens.py:bad_names", "options": {"names": 3}}},
     "model.density: {dir}/dens.py:bad_names: param_names must be distinct"),
    ({"model": {"density": "dens.py:bad_names", "options": {"names": "ab"}}},
     "model.density: {dir}/dens.py:bad_names: param_names must be distinct"),
    ({"model": {"density": "phasic_mpi.model.models:rabbits", "options": {"n": 2}}},
     "model.density: phasic_mpi.model.models:rabbits returned Graph, which has no "),
])
def test_density_model_errors(tmp_path, change, message):
    (tmp_path / "dens.py").write_text(DENSITY_PY)
    raw = {**density_raw(), **change}
    with pytest.raises(ConfigError) as info:
        validate_config(raw, tmp_path)
    assert str(info.value).startswith(message.format(dir=tmp_path)), str(info.value)


# ---------------------------------------------------------------------- data
def test_simulated_data_matches_sample():
    cfg = validate(base_raw())
    graph = load_model(cfg["model"])
    obs = load_data(cfg["data"], graph)
    expected = graph.sample(20, [1.0, 2.0, 4.0], seed=1)
    assert obs.exact.tobytes() == expected.tobytes() and obs.weights is None


@pytest.mark.parametrize("text", [
    "0.5\n1.25\n3\n",
    "# comment\ntime\n0.5\n\n1.25\n3\n",
    "t\n0.5\n1.25\n3\n",
    "0.5 \n 1.25\n3.0\n",
])
def test_read_one_column(tmp_path, text):
    path = tmp_path / "d.csv"
    path.write_text(text)
    obs = read_data_file(path)
    np.testing.assert_array_equal(obs.exact, [0.5, 1.25, 3.0])
    assert obs.weights is None and obs.n_observations == 3


def test_read_censored_columns(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("kind,time,upper,weight\nexact,0.5,,2\nright,4.0,,1\n"
                    "interval,1,2,3\ninterval,2,inf,1\n")
    obs = read_data_file(path)
    np.testing.assert_array_equal(obs.exact, [0.5])
    np.testing.assert_array_equal(obs.weights, [2.0])
    np.testing.assert_array_equal(obs.right_censored, [4.0])
    np.testing.assert_array_equal(obs.interval_lo, [1.0, 2.0])
    np.testing.assert_array_equal(obs.interval_hi, [2.0, np.inf])
    np.testing.assert_array_equal(obs.interval_weights, [3.0, 1.0])
    ws = tmp_path / "w.txt"
    ws.write_text("time kind\n0.5 exact\n4 right\n")  # whitespace-separated, any order
    obs = read_data_file(ws)
    assert obs.exact.tolist() == [0.5] and obs.right_censored.tolist() == [4.0]


@pytest.mark.parametrize("text, message", [
    ("", "no data"),
    ("0.5,1\n", ":1: expected one time per line"),
    ("time\n0.5\nx\n", ":3: expected one time per line"),
    ("weight\n1\n", ":1: a one-column file holds times"),
    ("time,size\n1,2\n", "unknown column 'size'"),
    ("kind,upper\nexact,1\n", "including 'time'"),
    ("time,kind\n1,left\n", ":2: kind must be one of exact, right, interval"),
    ("time,kind,upper\n1,interval\n", ":2: 'upper' is required for interval rows"),
    ("time,kind,upper\n1,exact,3\n", ":2: 'upper' is required"),
    ("time,weight\n1,x\n", ":2: could not convert"),
    ("time\n1\n-2\n", "exact\\[1\\] = -2.0: times must be finite"),
    ("time,kind\n1,exact,3\n", ":2: 3 fields for 2 columns"),
])
def test_text_errors(tmp_path, text, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"^data.file: .*d.csv.*{message}"):
        read_data_file(path)


def test_npy_and_h5(tmp_path):
    import h5py

    times = np.array([0.1, 0.2, 0.7])
    np.save(tmp_path / "t.npy", times)
    assert read_data_file(tmp_path / "t.npy").exact.tolist() == times.tolist()
    np.save(tmp_path / "t2.npy", times.reshape(3, 1))
    with pytest.raises(ConfigError, match="expected a 1-D numeric array"):
        read_data_file(tmp_path / "t2.npy")
    with h5py.File(tmp_path / "run.h5", "w") as fh:
        group = fh.create_group("observed_data")
        group["exact"] = times
        group["weights"] = [1.0, 2.0, 1.0]
        group["right_censored"] = [5.0]
        group["interval_lo"] = [1.0]
        group["interval_hi"] = [2.0]
        fh["raw/times"] = times
        fh["matrix"] = np.ones((2, 2))
    obs = read_data_file(tmp_path / "run.h5")
    assert obs.exact.tolist() == times.tolist() and obs.weights.tolist() == [1, 2, 1]
    assert obs.right_censored.tolist() == [5.0] and obs.interval_hi.tolist() == [2.0]
    assert read_data_file(tmp_path / "run.h5", "raw/times").exact.tolist() == times.tolist()
    assert read_data_file(tmp_path / "run.h5", "raw").exact.tolist() == times.tolist()
    with pytest.raises(ConfigError, match="data.dataset: no 'nope'"):
        read_data_file(tmp_path / "run.h5", "nope")
    with pytest.raises(ConfigError, match="has shape \\(2, 2\\)"):
        read_data_file(tmp_path / "run.h5", "matrix")
    with h5py.File(tmp_path / "other.h5", "w") as fh:
        fh["x"] = times
    with pytest.raises(ConfigError, match="no 'observed_data' group.*top level: x"):
        read_data_file(tmp_path / "other.h5")


def test_write_data_round_trip_bitwise(tmp_path):
    rng = np.random.default_rng(3)
    times = rng.exponential(size=50) * 10.0 ** rng.integers(-8, 8, size=50)
    for name in ("t.csv", "t.txt", "t.npy"):
        write_data(tmp_path / name, times, comment="two\nlines")
        assert read_data_file(tmp_path / name).exact.tobytes() == times.tobytes()
    obs = Observations([0.1, 1 / 3], [2, 1], right_censored=[7.0],
                       interval=[[1.0, np.inf], [0.2, 0.3]])
    write_data(tmp_path / "c.csv", obs)
    back = read_data_file(tmp_path / "c.csv")
    for field, expected in (("exact", obs.exact), ("weights", [2.0, 1.0]),
                            ("right_censored", [7.0]), ("right_weights", [1.0]),
                            ("interval_lo", [1.0, 0.2]), ("interval_hi", [np.inf, 0.3]),
                            ("interval_weights", [1.0, 1.0])):
        assert getattr(back, field).tobytes() == np.asarray(expected).tobytes(), field
    with pytest.raises(ValueError, match=".npy holds exact unweighted"):
        write_data(tmp_path / "c.npy", obs)


def test_discrete_model_needs_integer_times(tmp_path):
    graph = Graph.from_callback(lambda s: [((0,), [1.0])] if s == (1,) else [],
                                (1,), 1, discrete=True, param_names=["p"])
    (tmp_path / "d.csv").write_text("1\n2.5\n")
    with pytest.raises(ConfigError, match="discrete, so the times must be integers"):
        load_data({"file": "d.csv"}, graph, tmp_path)
    (tmp_path / "d.csv").write_text("1\n2\n")
    assert load_data({"file": "d.csv"}, graph, tmp_path).exact.tolist() == [1.0, 2.0]


def test_docs_mention_every_key():
    text = (ROOT / "docs" / "config.md").read_text()
    for section, table in (("svgd", SVGD), ("pt", PT), ("output", OUTPUT), ("model", MODEL)):
        for key in table:
            assert f"`{key}`" in text, f"{section}.{key} undocumented"
    assert os.path.exists(ROOT / "docs" / "config.md")


def _docs_table(text: str, heading: str) -> dict[str, list[str]]:
    """The key rows of the table under a ``## `[section]` ...`` heading."""
    part = text[text.index(heading):]
    rows = {}
    for line in part.splitlines()[1:]:
        if line.startswith("## "):
            break
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
            rows[cells[0].strip("`")] = [c.replace("\\|", "|") for c in cells[1:]]
    return rows


@pytest.mark.parametrize("section", ["svgd", "pt", "map", "output"])
def test_docs_tables_match_the_typed_settings(section):
    """docs/config.md's key, type and default columns say what the schema says."""
    from phasic_mpi.inference.registry import settings_class
    from phasic_mpi.run.settings import OutputSettings
    from phasic_mpi.settings import describe

    cls = OutputSettings if section == "output" else settings_class(section)
    rows = _docs_table((ROOT / "docs" / "config.md").read_text(), f"## `[{section}]`")
    schema = describe(cls)
    assert list(rows) == [r["name"] for r in schema]
    for r in schema:
        what, default = rows[r["name"]][0], rows[r["name"]][1]
        assert what.replace("`", "") == r["what"].replace("`", ""), (section, r["name"], what)
        if r["default"] is not None:
            expected = json.dumps(r["default"])
            assert default == f"`{expected}`", (section, r["name"], default, expected)


