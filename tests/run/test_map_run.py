"""MAP / MLE with Laplace as an algorithm of the run loop: ``[map]``, ``phasic-mpi run``,
``pm.sample(..., algorithm="map")``, summary and ArviZ.

Oracles: the exponential MLE ``n / sum t`` with ``se = rate_hat / sqrt(n)``,
and the conjugate Gamma(a, b) posterior's mode in ``z = log(rate)``,
``log((a + n) / (b + sum t))`` with ``se_z = 1 / sqrt(a + n)``; the Laplace
draws are those of :func:`phasic_mpi.inference.laplace.fit_map` with the same
settings, bit for bit. The run file is bitwise the same at 1, 2 and 3 ranks.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import phasic_mpi as pm
from phasic_mpi.cli import main
from phasic_mpi.inference.laplace import fit_map

sys.path.insert(0, str(Path(__file__).parent))
from test_run import RABBITS, run_at_rank_counts  # noqa: E402


def test_pm_sample_map_gives_the_closed_form_mle_and_its_laplace_draws():
    graph = pm.models.exponential()
    t = graph.sample(40, [2.0], seed=5)
    prior = {"rate": pm.Gamma(2.0, 1.0)}
    result = pm.sample(graph, t, algorithm="map", priors=prior, objective="likelihood",
                       starts=3, seed=4, draws=200, chains=2, progress="none")
    mle = t.size / t.sum()
    diag = result.diagnostics
    assert diag["kind"] == "mle" and diag["n_converged"] == 3 and diag["laplace_ok"]
    assert diag["theta_hat"]["rate"] == pytest.approx(mle, rel=1e-8)
    assert diag["se_theta"]["rate"] == pytest.approx(mle / np.sqrt(t.size), rel=1e-6)
    assert result.independent and result.draws["rate"].shape == (2, 200)
    fit = fit_map(pm.posterior(graph, t, priors=prior), starts=3, seed=4, likelihood_only=True)
    np.testing.assert_array_equal(result.theta[:, 0], fit.sample_theta(400, seed=4)[:, 0])
    np.testing.assert_array_equal(result.final_z, fit.sample_z(400, seed=4))
    idata = result.to_inference_data()
    assert idata.posterior["rate"].shape == (2, 200)


def test_pm_sample_map_warm_starts_from_points():
    """Two given starts (theta) instead of prior draws; the conjugate mode in z = log(rate)."""
    graph = pm.models.exponential()
    t = graph.sample(30, [1.0], seed=2)
    a, b = 2.0, 0.5
    result = pm.sample(graph, t, algorithm="map", priors={"rate": pm.Gamma(a, b)},
                       init=[[0.5], [3.0]], draws=10, progress="none")
    assert result.diagnostics["n_starts"] == 2 and result.diagnostics["n_converged"] == 2
    mode = (a + t.size) / (b + t.sum())
    assert result.diagnostics["theta_hat"]["rate"] == pytest.approx(mode, rel=1e-8)
    assert result.diagnostics["se_theta"]["rate"] == pytest.approx(mode / np.sqrt(a + t.size),
                                                                   rel=1e-6)


def test_map_without_a_laplace_approximation_warns_and_gives_nan_draws():
    """The log-likelihood -(a - 1)^2 is flat in b: -H is singular."""
    from phasic_mpi.errors import ConvergenceWarning

    def loglik(theta):
        r = theta[:, 0] - 1.0
        return -r * r, np.column_stack([-2 * r, np.zeros(len(r))])

    with pytest.warns(ConvergenceWarning, match="no Laplace approximation"):
        result = pm.sample(loglik, param_names=["a", "b"], algorithm="map", draws=5,
                           objective="likelihood", progress="none")
    assert result.diagnostics["laplace_ok"] is False
    assert result.diagnostics["theta_hat"]["a"] == pytest.approx(1.0, rel=1e-6)
    assert np.isnan(result.theta).all()


MAP_CONFIG = """
[model]
name = "exponential"
[data]
simulate = {{ theta = [2.0], n = 50, seed = 4 }}
[prior]
rate = {{ dist = "gamma", shape = 3.0, rate = 1.5 }}
[map]
starts = 3
seed = 2
objective = "{objective}"
draws = 300
chains = 2
[output]
path = "map.h5"
progress = "none"
"""


@pytest.mark.parametrize("objective", ["posterior", "likelihood"])
def test_cli_map_run_file_closed_form_summary_and_arviz(tmp_path, objective, capsys):
    az = pytest.importorskip("arviz")
    cfg = tmp_path / "map.toml"
    cfg.write_text(MAP_CONFIG.format(objective=objective))
    out = tmp_path / "map.h5"
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    with h5py.File(out, "r") as fh:
        t = fh["observed_data/exact"][()]
        z_hat = fh["map/estimate/z"][()]
        se_z = fh["map/estimate/se_z"][()]
        se_theta = fh["map/estimate/se_theta"][()]
        assert fh["map/starts/optimum"].shape == (3, 1)
    n, total = t.size, t.sum()
    if objective == "likelihood":
        assert np.exp(z_hat[0]) == pytest.approx(n / total, rel=1e-8)
        assert se_theta[0] == pytest.approx(n / total / np.sqrt(n), rel=1e-6)
    else:
        a, b = 3.0, 1.5
        assert z_hat[0] == pytest.approx(np.log((a + n) / (b + total)), abs=1e-9)
        assert se_z[0] == pytest.approx(1 / np.sqrt(a + n), rel=1e-6)
    idata = az.from_netcdf(out)
    assert idata.posterior["rate"].shape == (2, 300)
    assert "log_likelihood" in idata.groups()
    assert main(["summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert "map, 2 chains x 300 draws" in text and "theta_hat" in text
    assert main(["plot", str(out), "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "marginals.png").exists()


def test_map_run_file_is_bitwise_identical_at_1_2_3_ranks(tmp_path):
    cfg = tmp_path / "rabbits_map.toml"
    cfg.write_text(RABBITS.format() + "[map]\nstarts = 5\nseed = 3\ndraws = 50\n"
                   "[output]\npath = \"m.h5\"\nprogress = \"none\"\n")
    outputs = run_at_rank_counts(cfg, tmp_path, "map", (1, 2, 3))
    with h5py.File(outputs[0], "r") as fh:
        assert fh["posterior/jump"].shape == (1, 50)
        assert fh["map/starts/value"].shape == (5,)
