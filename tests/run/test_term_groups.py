"""Run files and InferenceData store the likelihood terms (SFS, moments) as data.

Oracles: scipy's Poisson, multinomial and normal log-densities on the closed
forms E[xi_i] = n_loci theta_mut / (i coal_rate) (standard coalescent) and
E[T] = 2 (1 - 1/n) / coal_rate (Kingman); the replicated counts' sample
means and variances against the Poisson / multinomial / normal moments
(within 5 standard errors); the per-draw total the sampler recorded.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from idata_checks import assert_same_groups
from scipy import stats

import phasic_mpi as pm
from phasic_mpi.analysis.summary import format_summary, summarize
from phasic_mpi.inference.posterior import Posterior
from phasic_mpi.inference.priors import Gamma, LogNormal
from phasic_mpi.io.store import RunWriter, read_run
from phasic_mpi.model import models
from phasic_mpi.model.sfs import SFSData, fold_matrix
from phasic_mpi.model.termdata import predictive_arrays, term_variables
from phasic_mpi.model.terms import MomentData
from phasic_mpi.plotting import plot_run
from phasic_mpi.run.results import write_model_results

az = pytest.importorskip("arviz")

TIMES = [0.8, 1.9, 1.1, 3.0]
COUNTS = np.array([7, 2, 3, 1])  # block-counting(5): 4 classes
I = np.arange(1, 5)


def _posterior(likelihood="poisson", times=TIMES):
    bc = models.block_counting(5)
    sfs = (SFSData(bc, COUNTS, n_loci=2) if likelihood == "poisson"
           else SFSData(bc, COUNTS, likelihood="multinomial"))
    terms = [sfs, MomentData(models.kingman(4), 1.4, 0.2)]
    priors = {"coal_rate": Gamma(2.0, 2.0)}
    if likelihood == "poisson":
        priors["theta_mut"] = LogNormal(1.0, 1.0)
    return Posterior(models.kingman(4), times, priors, terms=terms)


def _run(tmp_path, likelihood="poisson", times=TIMES):
    out = tmp_path / f"{likelihood}.h5"
    result = pm.pt(_posterior(likelihood, times), chains=2, replicas=4, rounds=4,
                   warmup_rounds=2, seed=3, out=out, progress="none")
    return result, out


@pytest.mark.parametrize("likelihood,times", [("poisson", TIMES), ("multinomial", [])])
def test_memory_and_file_hold_the_same_term_groups(tmp_path, likelihood, times):
    result, out = _run(tmp_path, likelihood, times)
    memory, stored = result.to_inference_data(), az.from_netcdf(out)
    assert_same_groups(memory, stored)
    assert {"sfs", "moment"} <= set(stored.log_likelihood.data_vars)
    assert {"sfs", "moment"} <= set(stored.posterior_predictive.data_vars)
    assert stored.observed_data["sfs"].dims == ("sfs_class",)
    np.testing.assert_array_equal(stored.observed_data["sfs"].values, COUNTS)
    assert stored.observed_data["moment"].values.tolist() == [1.4]
    assert stored.observed_data["moment_se"].values.tolist() == [0.2]
    # multinomial: one value per spectrum (the classes are not independent)
    loglik_dim = "sfs_class" if likelihood == "poisson" else "sfs_spectrum"
    assert stored.log_likelihood["sfs"].dims == ("chain", "draw", loglik_dim)
    # the pointwise values (times, every SFS class, every moment) sum to each draw's total
    total = sum(memory.log_likelihood[k].values.sum(axis=-1)
                for k in memory.log_likelihood.data_vars)
    np.testing.assert_allclose(total, memory.sample_stats["log_likelihood_total"].values,
                               rtol=1e-12)


def test_pointwise_values_against_scipy(tmp_path):
    _, out = _run(tmp_path)
    idata = az.from_netcdf(out)
    c = idata.posterior["coal_rate"].values.reshape(-1)
    mut = idata.posterior["theta_mut"].values.reshape(-1)
    sfs = idata.log_likelihood["sfs"].values.reshape(c.size, -1)
    moment = idata.log_likelihood["moment"].values.reshape(-1)
    for p in range(c.size):
        np.testing.assert_allclose(sfs[p], stats.poisson.logpmf(COUNTS, 2 * mut[p] / (I * c[p])),
                                   rtol=1e-12)
        assert moment[p] == pytest.approx(stats.norm.logpdf(1.4, 1.5 / c[p], 0.2), rel=1e-12)
    # az.loo over the SFS classes (independent under the Poisson random field); 24
    # draws are too few for a trustworthy Pareto fit, which ArviZ warns about
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert az.loo(idata, var_name="sfs").n_data_points == COUNTS.size


def test_replicates_follow_the_model(tmp_path):
    """Replicates at one θ repeated 4000 times: moments within 5 standard errors."""
    n = 4000
    bc = models.block_counting(5)
    terms = [SFSData(bc, COUNTS, n_loci=2), SFSData(bc, COUNTS, likelihood="multinomial"),
             SFSData(bc, COUNTS @ fold_matrix(5), folded=True, theta_mut=3.0),
             MomentData(models.kingman(4), 1.4, 0.2)]
    draws = {"coal_rate": np.full((1, n), 0.8), "theta_mut": np.full((1, n), 1.5)}
    draws["coal_rate"][0, :3] = -1.0  # outside the domain: NaN replicates
    arrays, dims = predictive_arrays(term_variables(terms), draws, [7, 1])
    assert set(arrays) == {"sfs", "sfs_1", "sfs_2", "moment"}
    assert dims["sfs_2"] == "sfs_2_class" and dims["moment"] == "moment_obs"
    for name in arrays:
        assert np.all(np.isnan(arrays[name][0, :3])) and np.all(np.isfinite(arrays[name][0, 3:]))
    rep = {k: v[0, 3:] for k, v in arrays.items()}
    m = n - 3
    lam = 2 * 1.5 / (I * 0.8)
    p = (1 / I) / (1 / I).sum()
    folded_lam = (3.0 / (I * 0.8)) @ fold_matrix(5)
    S = COUNTS.sum()
    for x, mean, var in ((rep["sfs"], lam, lam), (rep["sfs_1"], S * p, S * p * (1 - p)),
                         (rep["sfs_2"], folded_lam, folded_lam),
                         (rep["moment"], np.array([1.5 / 0.8]), np.array([0.04]))):
        assert np.all(np.abs(x.mean(axis=0) - mean) < 5 * np.sqrt(var / m))
        assert np.all(np.abs(x.var(axis=0) / var - 1) < 5 * np.sqrt(2 / m) * 1.5)
    assert np.all(rep["sfs_1"].sum(axis=1) == S)  # multinomial given the segregating sites
    assert np.all(rep["sfs"] == np.round(rep["sfs"]))
    again, _ = predictive_arrays(term_variables(terms), draws, [7, 1])
    assert all(again[k].tobytes() == arrays[k].tobytes() for k in arrays)


def test_stored_terms_rebuild_with_the_same_bits(tmp_path):
    bc = models.block_counting(6)
    terms = [SFSData(bc, [5, 3, 1], folded=True, theta_mut=2.0),
             SFSData(bc, [[4, 1, 1, 0, 2], [1, 2, 0, 1, 0]], likelihood="multinomial"),
             SFSData(bc, [9, 4, 2, 1, 1], theta_mut_name="mu"),
             MomentData(models.rabbits(2), [0.5, 0.25], [0.05, 0.1], kind="variance",
                        rewards=np.column_stack([np.ones(5), np.arange(5.0)]))]
    with RunWriter.create(tmp_path / "t.h5", algorithm="svgd", config={},
                          param_names=["coal_rate"], observations=[1.0]) as writer:
        writer.write_terms(terms)
        writer.write_terms(terms)  # a resumed run writes them again
    back = read_run(tmp_path / "t.h5").terms()
    assert [repr(t) for t in back] == [repr(t) for t in terms]
    thetas = {1: np.array([[0.7], [1.9]]), 3: np.array([[1.0, 2.0, 4.0], [0.5, 1.0, 3.0]])}
    for k, (old, new) in enumerate(zip(terms, back)):
        theta = thetas.get(k, np.array([[0.7, 1.1], [1.9, 3.0]])[:, :len(old.param_names)])
        for a, b in zip(old.loglik_and_grad(theta), new.loglik_and_grad(theta)):
            assert a.tobytes() == b.tobytes()
    stored = az.from_netcdf(tmp_path / "t.h5").observed_data
    assert stored["sfs"].dims == ("sfs_class",) and stored["sfs"].values.tolist() == [5, 3, 1]
    assert stored["sfs_1"].values.tolist() == [5, 3, 1, 1, 2]
    assert stored["moment_se"].values.tolist() == [0.05, 0.1]


def test_prior_predictive_has_the_term_replicates(tmp_path):
    post = _posterior()
    draws = {"coal_rate": np.array([[0.9, 1.1]]), "theta_mut": np.array([[2.0, 3.0]])}
    with RunWriter.create(tmp_path / "p.h5", algorithm="svgd", config={},
                          param_names=list(post.param_names), observations=TIMES) as writer:
        writer.write_posterior(draws)
        assert write_model_results(writer, post, draws, seed=4, prior_draws=50)
    idata = az.from_netcdf(tmp_path / "p.h5")
    assert idata.prior["theta_mut"].shape == (1, 50)
    assert idata.prior_predictive["sfs"].shape == (1, 50, 4)
    assert idata.prior_predictive["exact"].shape == (1, 50, len(TIMES))


def test_summary_and_plot_read_the_terms(tmp_path):
    _, out = _run(tmp_path)
    text = format_summary(summarize(out))
    assert ("likelihood term sfs: unfolded SFS, 4 classes, 13 segregating sites over 2 loci, "
            "poisson likelihood, theta_mut the parameter theta_mut") in text
    assert "likelihood term moment: 1 observed mean (1.4 \u00b1 0.2)" in text
    written = {p.rsplit("/", 1)[-1] for p in plot_run(out, tmp_path / "figs")}
    assert {"sfs_predictive.png", "predictive.png"} <= written


CONFIG = """
[model]
name = "kingman"
options = { n = 5 }

[data]
simulate = { theta = [1.0], n = 8, seed = 2 }

[data.sfs]
model = "block_counting"
options = { n = 5 }
folded = true
theta_mut = 2.0
simulate = { theta = { coal_rate = 1.0 }, n_loci = 30, seed = 5 }

[[data.moments]]
value = 1.6
se = 0.2

[[data.moments]]
kind = "variance"
value = 1.1
se = 0.3

[prior]
coal_rate = { dist = "gamma", shape = 2.0, rate = 2.0 }

[svgd]
particles = 8
iterations = 20
seed = 1
"""


@pytest.mark.filterwarnings("ignore:svgd did not converge")
def test_command_line_run_stores_the_config_terms(tmp_path, capsys):
    from phasic_mpi.cli import main

    (tmp_path / "c.toml").write_text(CONFIG)
    out = tmp_path / "c.h5"
    assert main(["run", str(tmp_path / "c.toml"), "--out", str(out)]) in (0, None)
    idata = az.from_netcdf(out)
    assert idata.observed_data["sfs"].dims == ("sfs_class",)
    assert idata.observed_data["sfs"].size == 2  # folded: floor(5 / 2) classes
    assert idata.observed_data["moment_1"].values.tolist() == [1.1]
    assert {"exact", "sfs", "moment", "moment_1"} == set(idata.log_likelihood.data_vars)
    total = sum(idata.log_likelihood[k].values.sum(axis=-1) for k in idata.log_likelihood.data_vars)
    np.testing.assert_allclose(total, idata.sample_stats["log_likelihood_total"].values,
                               rtol=1e-12)
    attrs = read_run(out).term_attrs()
    assert [(a["variable"], a["term"]) for a in attrs] == [("sfs", "sfs"), ("moment", "moment"),
                                                           ("moment_1", "moment")]
    assert attrs[0]["folded"] and attrs[0]["theta_mut"] == 2.0 and attrs[2]["kind"] == "variance"
    capsys.readouterr()
    assert main(["summary", str(out)]) in (0, None)
    text = capsys.readouterr().out
    assert "likelihood term sfs: folded SFS, 2 classes" in text and "theta_mut = 2" in text
    assert "likelihood term moment_1: 1 observed variance (1.1 \u00b1 0.3)" in text
    assert main(["plot", str(out), "--out", str(tmp_path / "figs")]) in (0, None)
    assert (tmp_path / "figs" / "sfs_predictive.png").stat().st_size > 0
