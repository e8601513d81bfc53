"""``[data.sfs]`` and ``[[data.moments]]`` in a config: validation with key paths,
and the posterior build_density makes equals the one built by hand in Python
(same log density and gradient, bit for bit); a small SFS calibration study runs.

Oracles: the Posterior built directly from SFSData / MomentData / simulate_sfs
(themselves tested against closed forms in tests/model/test_sfs.py).
"""

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from phasic_mpi.config import validate_config
from phasic_mpi.config.loaders import build_density
from phasic_mpi.errors import ConfigError
from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.model import models
from phasic_mpi.model.sfs import SFSData, simulate_sfs
from phasic_mpi.model.terms import MomentData

ROOT = Path(__file__).resolve().parents[2]

RAW = {
    "model": {"name": "kingman", "options": {"n": 5}},
    "data": {
        "simulate": {"theta": [1.0], "n": 8, "seed": 2},
        "sfs": {"model": "block_counting", "options": {"n": 5},
                "simulate": {"theta": {"coal_rate": 1.0}, "theta_mut": 2.0, "n_loci": 30,
                             "seed": 5}},
        "moments": [{"value": 1.6, "se": 0.2}, {"kind": "variance", "value": 1.1, "se": 0.3}],
    },
    "prior": {"coal_rate": {"dist": "gamma", "shape": 2.0, "rate": 2.0},
              "theta_mut": {"dist": "lognormal", "mu": 1.0, "sigma": 1.0}},
    "map": {},
}


def validate(raw):
    return validate_config(raw, ROOT)


def test_sfs_and_moments_build_the_posterior_made_by_hand():
    cfg = validate(RAW)
    assert list(cfg["prior"]) == ["default", "coal_rate", "theta_mut"]
    assert cfg["data"]["sfs"]["simulate"]["theta"] == {"coal_rate": 1.0}
    assert validate(copy.deepcopy(cfg)) == cfg  # idempotent
    density, obs = build_density(cfg, ROOT)
    kingman, bc = models.kingman(5), models.block_counting(5)
    xi = simulate_sfs(bc, [1.0], 2.0, 30, 5)
    by_hand = Posterior(kingman, kingman.sample(8, [1.0], seed=2),
                        {"coal_rate": Gamma(2.0, 2.0), "theta_mut": LogNormal(1.0, 1.0)},
                        terms=[SFSData(bc, xi, n_loci=30), MomentData(kingman, 1.6, 0.2),
                               MomentData(kingman, 1.1, 0.3, kind="variance")])
    assert density.param_names == ("coal_rate", "theta_mut")
    z = np.array([[0.1, 0.5], [-0.3, 1.2]])
    a, b = density.evaluate(z), by_hand.evaluate(z)
    np.testing.assert_array_equal(a.logp, b.logp)
    np.testing.assert_array_equal(a.grad, b.grad)
    assert obs.exact.size == 8


def test_sfs_counts_alone_with_a_fixed_mutation_rate():
    raw = {"model": {"name": "block_counting", "options": {"n": 4}},
           "data": {"sfs": {"counts": [[3, 1, 0], [2, 2, 1]], "theta_mut": 1.5,
                            "likelihood": "poisson"}},
           "prior": {"coal_rate": {"dist": "gamma", "shape": 2.0, "rate": 1.0}}, "svgd": {}}
    density, obs = build_density(validate(raw), ROOT)
    by_hand = Posterior(models.block_counting(4), [], [Gamma(2.0, 1.0)],
                        terms=[SFSData(models.block_counting(4), [[3, 1, 0], [2, 2, 1]],
                                       theta_mut=1.5)])
    z = np.array([[0.2], [-0.4]])
    np.testing.assert_array_equal(density.evaluate(z).logp, by_hand.evaluate(z).logp)
    assert obs.n_observations == 0 and density.param_names == ("coal_rate",)


def _with(path, value):
    raw = copy.deepcopy(RAW)
    *parents, leaf = path
    node = raw
    for key in parents:
        node = node[key]
    if value is None:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


@pytest.mark.parametrize("path, value, message", [
    (("data", "sfs", "folded"), 1, "data.sfs.folded: expected true or false"),
    (("data", "sfs", "likelihood"), "binomial", "data.sfs.likelihood: expected one of"),
    (("data", "sfs", "counts"), [1, 2, 3, 4], "data.sfs: give exactly one of 'counts' or"),
    (("data", "sfs", "model"), "nope", "data.sfs.model: unknown built-in model"),
    (("data", "sfs", "options"), {"m": 3}, "data.sfs.options.m: unknown option"),
    (("data", "sfs", "theta_mut"), -1.0, "data.sfs.theta_mut: expected a positive number"),
    (("data", "sfs", "simulate", "theta_mut"), None,
     "data.sfs.simulate.theta_mut: required key missing"),
    (("data", "sfs", "simulate", "theta"), {"coal_rate": -1.0}, "data.sfs.simulate.theta"),
    (("data", "sfs", "simulate", "n_loci"), 0, "data.sfs.simulate.n_loci: expected an integer"),
    (("data", "moments"), [], "data.moments: expected a non-empty array"),
    (("data", "moments", 1, "se"), 0.0, "data.moments[1].se: expected a positive number"),
    (("data", "moments", 0, "kind"), "skew", "data.moments[0].kind: expected one of"),
    (("data", "moments", 0, "rewards"), [1, 2], "data.moments[0].rewards: expected 4 finite"),
    (("data", "moments", 0, "value"), [1.0, 2.0], "data.moments[0].value: expected 1 or 1"),
    (("data", "moments", 0, "extra"), 1, "data.moments[0].extra: unknown key"),
    (("prior", "theta_mu"), {"dist": "gamma", "shape": 1, "rate": 1},
     "prior.theta_mu: unknown parameter (model parameters: coal_rate, theta_mut)"),
])
def test_errors_name_the_key(path, value, message):
    with pytest.raises(ConfigError) as info:
        validate(_with(path, value))
    assert str(info.value).startswith(message), str(info.value)


def test_counts_must_match_the_number_of_classes():
    raw = _with(("data", "sfs", "simulate"), None)
    raw["data"]["sfs"]["counts"] = [4, 2, 1]
    with pytest.raises(ConfigError, match=r"data.sfs.counts: expected 4 classes"):
        validate(raw)
    raw["data"]["sfs"]["folded"] = True
    raw["data"]["sfs"]["counts"] = [4, 2]
    assert validate(raw)["data"]["sfs"]["counts"] == [4, 2]


def test_a_small_sfs_calibration_study_runs_and_records_the_truth(tmp_path):
    from phasic_mpi.io.studyfile import DONE, read_study
    from phasic_mpi.study.runner import run_study
    from phasic_mpi.study.spec import cell_config, load_study

    spec = load_study(ROOT / "examples" / "sfs_calibration_study.toml")
    spec = dataclasses.replace(spec, replicates=2, path=str(tmp_path / "sfs.h5"))
    assert spec.param_names == ("coal_rate", "theta_mut")
    result = run_study(spec)
    assert result.completed and result.n_done == spec.n_cells == 4
    sf = read_study(spec.path)
    assert np.all(sf.status == DONE)
    for cell, truth in zip(spec.cells, sf.cells["truth"]):
        cfg = cell_config(spec, cell, "x.h5")
        sim = cfg["data"]["sfs"]["simulate"]
        assert cfg["data"]["simulate"]["theta"] == [sim["theta"]["coal_rate"]]
        np.testing.assert_array_equal(truth, [sim["theta"]["coal_rate"], sim["theta_mut"]])
    q = sf.cells["truth_quantile"]
    assert np.all((q >= 0) & (q <= 1))
