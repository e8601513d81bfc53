"""ESS / R-hat against ArviZ, summaries of run files and the text table."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from phasic_mpi.io.store import RunWriter
from phasic_mpi.analysis.summary import (
    ParameterSummary,
    Summary,
    ess_bulk,
    ess_tail,
    format_comparison,
    format_summary,
    rhat,
    summarize,
)


@pytest.fixture(scope="module")
def az():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ's refactor notice
        return pytest.importorskip("arviz")


def ar1(rng, n_chain: int, n_draw: int, phi: float) -> np.ndarray:
    """AR(1) chains with unit innovations, chain offsets to make R-hat interesting."""
    eps = rng.normal(size=(n_chain, n_draw))
    x = np.empty_like(eps)
    x[:, 0] = eps[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, n_draw):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x + 0.2 * rng.normal(size=(n_chain, 1))


@pytest.mark.parametrize("n_chain", [1, 2, 4])
@pytest.mark.parametrize("n_draw", [4, 7, 100, 501])
@pytest.mark.parametrize("phi", [-0.4, 0.0, 0.6, 0.97])
def test_against_arviz(az, n_chain, n_draw, phi):
    x = ar1(np.random.default_rng(n_chain * 1000 + n_draw), n_chain, n_draw, phi)
    assert ess_bulk(x) == pytest.approx(float(az.ess(x, method="bulk")), rel=1e-8)
    assert ess_tail(x) == pytest.approx(float(az.ess(x, method="tail")), rel=1e-8)
    if n_chain > 1:
        assert rhat(x) == pytest.approx(float(az.rhat(x, method="rank")), rel=1e-8)
    else:
        # ArviZ wants two chains; split-R-hat of one chain is that of its halves
        from arviz.stats.diagnostics import _rhat, _split_chains, _z_scale

        s = _split_chains(x)
        want = max(_rhat(_z_scale(s)), _rhat(_z_scale(np.abs(s - np.median(s)))))
        assert rhat(x) == pytest.approx(want, rel=1e-8)


def test_heavy_tails_and_ties(az):
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_cauchy((3, 200)), 1)  # many ties, extreme values
    assert ess_bulk(x) == pytest.approx(float(az.ess(x, method="bulk")), rel=1e-8)
    assert ess_tail(x) == pytest.approx(float(az.ess(x, method="tail")), rel=1e-8)
    assert rhat(x) == pytest.approx(float(az.rhat(x)), rel=1e-8)


def test_degenerate_inputs_are_quiet(az):
    const = np.full((2, 50), 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(rhat(const))
        assert ess_bulk(const) == float(az.ess(const, method="bulk")) == 100
        assert ess_tail(const) == 100
        assert math.isnan(rhat(np.full(50, 1.0)))  # one constant chain
        assert math.isnan(rhat(np.arange(3.0))) and math.isnan(ess_bulk(np.arange(3.0)))
        nan = np.arange(20.0).reshape(2, 10)
        nan[1, 3] = np.nan
        assert math.isnan(rhat(nan)) and math.isnan(ess_bulk(nan)) and math.isnan(ess_tail(nan))
        step = np.repeat([[0.0], [1.0]], 10, axis=1)  # each chain constant, chains differ
        assert rhat(step) == math.inf
        p = summarize_const()
        assert p.sd == 0.0 and math.isnan(p.rhat)
    with pytest.raises(ValueError, match="shape"):
        rhat(np.zeros((2, 3, 4)))


def summarize_const() -> ParameterSummary:
    from phasic_mpi.analysis.summary import summarize_draws

    return summarize_draws("c", np.full((2, 10), 1.5))


def _run(path, *, independent: bool, n_chain: int, n_draw: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(9)
    draws = {n: ar1(rng, n_chain, n_draw, 0.5) + i for i, n in enumerate(["a", "b"])}
    with RunWriter.create(path, algorithm="svgd", config={"x": 1}, param_names=["a", "b"],
                          observations=[0.5, 1.0], seed=1, attrs={"n_ranks": 2}) as w:
        w.append_many({"svgd/diagnostics/step_norm": np.array([1.0, 0.5, 0.25]),
                       "svgd/diagnostics/ksd": np.array([2.0, 1.0, np.nan]),
                       "svgd/diagnostics/all_nan": np.full(3, np.nan),
                       "svgd/diagnostics/n_bad": np.array([0, 3, 1]),
                       "svgd/particles": rng.normal(size=(3, 4, 2))})
        w.write_posterior(draws, draws_are_independent=independent)
        w.set_attrs({"ksd": 0.125, "n_invalid": 2, "converged": True}, group="svgd/diagnostics")
    return draws


def test_summarize_markov_chains(tmp_path):
    draws = _run(tmp_path / "r.h5", independent=False, n_chain=4, n_draw=100)
    s = summarize(tmp_path / "r.h5")
    assert (s.n_chains, s.n_draws, s.draws_are_independent) == (4, 100, False)
    assert [p.name for p in s.parameters] == ["a", "b"]
    p, x = s.parameters[1], draws["b"]
    assert p.mean == pytest.approx(x.mean()) and p.sd == pytest.approx(x.std(ddof=1))
    np.testing.assert_allclose(p.quantiles, np.quantile(x, [0.025, 0.25, 0.5, 0.75, 0.975]))
    assert (p.ess_bulk, p.ess_tail, p.rhat) == (ess_bulk(x), ess_tail(x), rhat(x))
    assert s.diagnostics == {"ksd": 0.125, "n_invalid": 2, "converged": True}
    assert s.last_values == {"step_norm": (0.25, 3, 3), "ksd": (1.0, 2, 3), "n_bad": (1, 3, 3)}
    assert s.observations == {"exact": 2, "right_censored": 0, "interval": 0}
    assert s.run_info["n_ranks"] == 2 and "config" not in s.run_info


def test_summarize_svgd_particles(tmp_path):
    _run(tmp_path / "r.h5", independent=True, n_chain=1, n_draw=64)
    s = summarize(tmp_path / "r.h5")
    assert s.draws_are_independent
    for p in s.parameters:
        assert p.ess_bulk == p.ess_tail == 64 and math.isnan(p.rhat)
    text = format_summary(s)
    assert "R-hat not applicable" in text and "\u2014" in text


def test_summarize_without_posterior(tmp_path):
    with RunWriter.create(tmp_path / "r.h5", algorithm="pt", config={}, param_names=["a"]):
        pass
    with pytest.raises(ValueError, match="no posterior draws"):
        summarize(tmp_path / "r.h5")


def test_format_snapshot():
    s = Summary(
        path="/somewhere/run.h5", algorithm="svgd", n_chains=1, n_draws=64,
        draws_are_independent=True,
        parameters=(
            ParameterSummary("jump", 1.0123456, 0.25, (0.5, 0.8, 1.0, 1.2, 1.5), 64.0, 64.0,
                             math.nan),
            ParameterSummary("flood_rate", 12345.678, 1e-5, (1.0, 2.0, 3.0, 4.0, 5.0), 10.4,
                             7.6, 1.0123),
        ),
        run_info={"seed": 7, "n_ranks": 4, "timings": {"total": 1.5}},
        observations={"exact": 3, "right_censored": 1, "interval": 0},
        diagnostics={"ksd": 0.0123, "n_invalid": 0, "converged": True},
        last_values={"step_norm": (0.00025, 500, 500), "ksd": (0.5, 450, 500)},
    )
    assert format_summary(s) == SNAPSHOT


def test_convergence_and_stranded_particles_get_a_line():
    from phasic_mpi.analysis.summary import _convergence_lines

    assert _convergence_lines({"converged": True, "converged_at": 450}) == [
        "converged at iteration 450"]
    assert _convergence_lines({"converged": False, "converged_at": None,
                               "stranded_particles": 0})[0].startswith("NOT converged")
    assert _convergence_lines({"stranded_particles": 38, "stranded_gap": 6.9077}) == [
        "38 particles more than 6.908 below the best log density: a separate mode? "
        "check with parallel tempering"]
    assert _convergence_lines({}) == []  # PT, or a run file of an older version


SNAPSHOT = """\
run.h5: svgd, 1 chain x 64 draws
draws are independent (particles): ESS = number of draws, R-hat not applicable
converged
observations: 3 exact, 1 right-censored, 0 interval-censored

parameter        mean     sd  2.5%  25%  50%  75%  97.5%  ess_bulk  ess_tail  r_hat
jump            1.012   0.25   0.5  0.8    1  1.2    1.5        64        64      \u2014
flood_rate  1.235e+04  1e-05     1    2    3    4      5        10         8  1.012

run diagnostics (svgd/diagnostics)
  ksd        0.0123
  n_invalid  0
  converged  True

last recorded values
  step_norm  0.00025  (row 500 of 500)
  ksd        0.5  (row 450 of 500)

run
  seed     7
  n_ranks  4
  timings  {"total": 1.5}
"""


def _summary(path: str, algorithm: str, params: dict[str, tuple[float, float]],
             truth: dict[str, float] | None = None) -> Summary:
    return Summary(
        path=path, algorithm=algorithm, n_chains=1, n_draws=10, draws_are_independent=False,
        parameters=tuple(ParameterSummary(n, m, sd, (m,) * 5, 10.0, 10.0, 1.0)
                         for n, (m, sd) in params.items()),
        true_values=truth or {})


def test_comparison_snapshot():
    truth = {"jump": 1.0, "flood_left": 2.0}
    a = _summary("/r/rabbits.h5", "svgd", {"jump": (1.0123456, 0.25), "flood_left": (2.5, 0.5)},
                 truth)
    b = _summary("/r/rabbits_pt.h5", "pt", {"jump": (0.98, 0.3), "flood_left": (12345.678, 1e-5),
                                            "extra": (3.0, 1.0)}, truth)
    assert format_comparison([a, b]) == COMPARISON


COMPARISON = """\
comparison (posterior mean \u00b1 sd)
  svgd: /r/rabbits.h5
  pt: /r/rabbits_pt.h5

parameter   true          svgd                 pt
jump           1  1.012 \u00b1 0.25         0.98 \u00b1 0.3
flood_left     2     2.5 \u00b1 0.5  1.235e+04 \u00b1 1e-05
extra          \u2014             \u2014              3 \u00b1 1
"""


def test_comparison_labels_and_no_truth():
    a = _summary("/x/run.h5", "pt", {"a": (1.0, 0.1)})
    b = _summary("/y/other.h5", "pt", {"a": (2.0, 0.2)})
    c = _summary("/z/run.h5", "pt", {"a": (3.0, 0.3)})
    text = format_comparison([a, b])
    head = text.splitlines()[4]
    assert head.split() == ["parameter", "run", "other"]  # same algorithm: file stems
    assert "true" not in text
    assert format_comparison([a, b, c]).splitlines()[1:4] == [
        "  run (1): /x/run.h5", "  other: /y/other.h5", "  run (2): /z/run.h5"]


def test_summarize_density_model_run(tmp_path):
    """A run of a model.density: no observed_data, no true values, no 'true' column."""
    cfg = {"model": {"density": "bnn.py:make_density", "options": {}}, "pt": {}}
    rng = np.random.default_rng(0)
    with RunWriter.create(tmp_path / "d.h5", algorithm="pt", config=cfg, param_names=["a", "b"],
                          observations=None, seed=0) as w:
        w.write_posterior({"a": rng.normal(size=(2, 20)), "b": rng.normal(size=(2, 20))})
    s = summarize(tmp_path / "d.h5")
    assert s.observations == {} and s.true_values == {} and s.n_chains == 2
    text = format_summary(s)
    assert "observations" not in text and "true" not in text.splitlines()[2]
    both = format_comparison([s, summarize(tmp_path / "d.h5")])
    assert "d (1)" in both and "d (2)" in both
