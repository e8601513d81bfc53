"""Diagnostics (ArviZ's, checked against an implementation from the paper and
closed forms), summaries of run files, parameter families, warnings, text."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import pytest

from phasic_mpi.io.store import RunWriter
from phasic_mpi.analysis import diagnostics as dg
from phasic_mpi.analysis.summary import (
    GroupSummary,
    ParameterSummary,
    Summary,
    ess_bulk,
    ess_tail,
    format_comparison,
    format_summary,
    rhat,
    summarize,
)
import diagnostics_reference as ref


def ar1(rng, n_chain: int, n_draw: int, phi: float, offset: float = 0.2) -> np.ndarray:
    """AR(1) chains with unit innovations, chain offsets to make R-hat interesting."""
    eps = rng.normal(size=(n_chain, n_draw))
    x = np.empty_like(eps)
    x[:, 0] = eps[:, 0] / math.sqrt(1 - phi**2)
    for t in range(1, n_draw):
        x[:, t] = phi * x[:, t - 1] + eps[:, t]
    return x + offset * rng.normal(size=(n_chain, 1))


@pytest.mark.parametrize("n_chain", [1, 2, 4])
@pytest.mark.parametrize("n_draw", [4, 7, 100, 501])
@pytest.mark.parametrize("phi", [-0.4, 0.0, 0.6, 0.97])
def test_against_the_paper(n_chain, n_draw, phi):
    x = ar1(np.random.default_rng(n_chain * 1000 + n_draw), n_chain, n_draw, phi)
    assert ess_bulk(x) == pytest.approx(ref.ess_bulk(x), rel=1e-8)
    assert ess_tail(x) == pytest.approx(ref.ess_tail(x), rel=1e-8)
    if n_chain > 1:
        assert rhat(x) == pytest.approx(ref.rhat(x), rel=1e-8)
    else:  # R-hat compares chains; ArviZ does not split a single one
        assert math.isnan(rhat(x))


def test_heavy_tails_and_ties():
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_cauchy((3, 200)), 1)  # many ties, extreme values
    assert ess_bulk(x) == pytest.approx(ref.ess_bulk(x), rel=1e-8)
    assert ess_tail(x) == pytest.approx(ref.ess_tail(x), rel=1e-8)
    assert rhat(x) == pytest.approx(ref.rhat(x), rel=1e-8)


def test_diagnose_keeps_every_entry_in_place():
    """Variables of any shape go through ArviZ stacked: each entry gets its own numbers."""
    rng = np.random.default_rng(5)
    draws = {"a": ar1(rng, 3, 80, 0.3), "v": rng.normal(size=(3, 80, 4)),
             "m": ar1(rng, 3, 80 * 6, 0.8).reshape(3, 6, 80).transpose(0, 2, 1).reshape(3, 80, 2, 3)}
    got = dg.diagnose(draws)
    for name, x in draws.items():
        for idx in np.ndindex(*x.shape[2:]):
            entry = x[(slice(None), slice(None), *idx)]
            for stat, oracle in (("ess_bulk", ref.ess_bulk), ("ess_tail", ref.ess_tail),
                                 ("rhat", ref.rhat)):
                assert got[name][stat][idx] == pytest.approx(oracle(entry), rel=1e-8), (name, idx)
    only = dg.diagnose(draws, statistics=("rhat",))
    assert np.array_equal(only["v"]["rhat"], got["v"]["rhat"])
    assert np.isnan(only["v"]["ess_bulk"]).all()


def test_ess_and_mcse_of_ar1_match_closed_forms():
    """AR(1), phi = 0.6, unit innovations: ESS = N (1 - phi) / (1 + phi) and the
    standard error of the mean sqrt(1 / ((1 - phi)^2 N)) (long-run variance).

    Across 30 seeds the estimates scatter by 4 % (ESS) and 2.2 % (MCSE) around
    these values; the tolerances are about four of those standard deviations.
    """
    phi, n_chain, n_draw = 0.6, 4, 5000
    x = ar1(np.random.default_rng(11), n_chain, n_draw, phi, offset=0.0)
    n = n_chain * n_draw
    assert ess_bulk(x) == pytest.approx(n * (1 - phi) / (1 + phi), rel=0.15)
    assert dg.mcse_mean(x) == pytest.approx(math.sqrt(1 / ((1 - phi) ** 2 * n)), rel=0.10)
    # sd of a normal with variance 1/(1-phi^2): its standard error is sd/sqrt(2 ESS_sd)
    assert dg.mcse_sd(x) > 0 and dg.rhat(x) < dg.RHAT_MAX


def test_independent_draws():
    x = np.random.default_rng(2).normal(size=(1, 64, 3))
    d = dg.diagnose({"x": x}, independent=True)["x"]
    assert (d["ess_bulk"] == 64).all() and (d["ess_tail"] == 64).all()
    assert np.isnan(d["rhat"]).all()
    np.testing.assert_allclose(d["mcse_mean"], x[0].std(axis=0, ddof=1) / 8.0, rtol=1e-12)
    assert dg.convergence_warnings({"x": x}, independent=True) == []


def test_degenerate_inputs_are_quiet(caplog):
    const = np.full((2, 50), 3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(rhat(const))
        assert ess_bulk(const) == ref.ess_bulk(const) == 100
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
    assert not [r for r in caplog.records if r.name.startswith("arviz")]
    with pytest.raises(ValueError, match="shape"):
        rhat(np.zeros((2, 3, 4)))


def test_warnings_name_the_worst_entry():
    rng = np.random.default_rng(4)
    good = rng.normal(size=(4, 500))
    apart = rng.normal(size=(4, 500, 3))
    apart[:, :, 1] += np.arange(4)[:, None]  # chains that disagree
    found = dg.convergence_warnings({"good": good, "v": apart})
    assert found[0].startswith("R-hat > 1.01 for 1 of 4 parameters")
    assert f"(max {rhat(apart[:, :, 1]):.3g} at v[1])" in found[0]
    assert len(found) == 2 and found[1].startswith("ESS < 100 per chain (400 in all) for 1 of 4")
    assert dg.convergence_warnings({"good": good}) == []
    sticky = ar1(rng, 2, 200, 0.97, offset=0.0)
    found = dg.convergence_warnings({"s": sticky})
    assert any(w.startswith("ESS < 100 per chain (200 in all) for 1 of 1 parameter ")
               for w in found)
    found = dg.convergence_warnings({"x": rng.normal(size=(1, 1000))})
    assert found == [found[0]] and found[0].startswith("1 chain: R-hat needs")


def test_round_trip_warning():
    draws = {"x": np.random.default_rng(0).normal(size=(2, 400))}
    assert dg.convergence_warnings(draws, round_trips=[12, 30]) == []
    assert dg.convergence_warnings(draws, round_trips=[[5, 20], [5, 20]]) == []  # summed
    (found,) = dg.convergence_warnings(draws, round_trips=[[2, 20], [3, 0]])
    assert found.startswith("parallel tempering: 5, 20 round trip(s) per chain")
    out = io.StringIO()
    assert dg.report_convergence(draws, round_trips=[0, 0], file=out) != []
    assert out.getvalue().startswith("phasic-mpi: warning: parallel tempering: 0, 0 round")
    assert out.getvalue().count("\n") == 1


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
    assert p.rhat == pytest.approx(ref.rhat(x), rel=1e-8)
    assert p.mcse_mean == dg.mcse_mean(x) and p.mcse_sd == dg.mcse_sd(x)
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
                             7.6, 1.0123, 0.001234, 2e-6),
        ),
        groups=(GroupSummary("w1", 500, (21.98, 22.0, 22.01), 12.4, 1.0234, 3),),
        warnings=("something is off",),
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

parameter        mean     sd  2.5%  25%  50%  75%  97.5%  mcse_mean  mcse_sd  ess_bulk  ess_tail  r_hat
jump            1.012   0.25   0.5  0.8    1  1.2    1.5          \u2014        \u2014        64        64      \u2014
flood_rate  1.235e+04  1e-05     1    2    3    4      5   0.001234    2e-06        10         8  1.012

parameter families (more than 10 entries; `phasic-mpi summary --all` lists every entry)
family  entries  |.| 5%  |.| 50%  |.| 95%  min ess_bulk  max r_hat  flagged
w1          500   21.98       22    22.01            12      1.023        3

warnings
  ! something is off

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


def _family_run(path, n_chain: int = 2, n_draw: int = 60) -> dict[str, np.ndarray]:
    """30 scalars w_0 ... w_29 (a family), sigma, and a (chain, draw, 12) variable."""
    rng = np.random.default_rng(8)
    names = [f"w_{i}" for i in range(30)] + ["sigma"]
    draws = {n: rng.normal(size=(n_chain, n_draw)) for n in names}
    draws["w_7"] = draws["w_7"] + np.arange(n_chain)[:, None] * 3.0  # one flagged entry
    with RunWriter.create(path, algorithm="pt", config={"pt": {"warmup_rounds": 2}},
                          param_names=names, seed=1) as w:
        w.write_posterior({**draws, "h": rng.normal(size=(n_chain, n_draw, 12))})
        for r, trips in enumerate([[9, 9], [9, 9], [3, 40], [4, 40]]):
            w.append_many({"pt/round": np.array([r]), "pt/round_trips": np.array([trips])})
    return draws


def test_families_are_one_row_each(tmp_path):
    draws = _family_run(tmp_path / "f.h5")
    s = summarize(tmp_path / "f.h5")
    assert [p.name for p in s.parameters] == ["sigma"]
    assert [(g.name, g.size) for g in s.groups] == [("w", 30), ("h", 12)]
    w = s.groups[0]
    values = np.stack([draws[f"w_{i}"].ravel() for i in range(30)], axis=1)
    np.testing.assert_allclose(w.norm_quantiles,
                               np.quantile(np.linalg.norm(values, axis=1), [0.05, 0.5, 0.95]))
    rhats = [ref.rhat(draws[f"w_{i}"]) for i in range(30)]
    bulk = [ref.ess_bulk(draws[f"w_{i}"]) for i in range(30)]
    assert w.rhat_max == pytest.approx(max(rhats), rel=1e-8)
    assert w.ess_bulk_min == pytest.approx(min(bulk), rel=1e-8)
    assert w.n_flagged == sum(r > 1.01 or e < 200 for r, e in zip(rhats, bulk)) >= 1
    # the sampling rounds (2 and 3) hold 7 and 80 round trips: chain 0 has too few
    assert any(x.startswith("parallel tempering: 7, 80 round trip(s)") for x in s.warnings)
    assert any(x.startswith("R-hat > 1.01") and "at w_7" in x for x in s.warnings)
    text = format_summary(s)
    rows = [line.split() for line in text.splitlines()]
    assert ["w", "30"] in [r[:2] for r in rows] and "\nwarnings\n  ! " in text
    every = summarize(tmp_path / "f.h5", group=False)
    assert every.groups == () and len(every.parameters) == 31 + 12
    assert [p.name for p in every.parameters][-12:] == [f"h[{j}]" for j in range(12)]
    h3 = every.parameters[31 + 3]
    assert h3.ess_tail == pytest.approx(ref.ess_tail(summarize_h(tmp_path)[:, :, 3]), rel=1e-8)


def summarize_h(tmp_path) -> np.ndarray:
    from phasic_mpi.io.runfile import read_run

    return read_run(tmp_path / "f.h5").posterior()["h"]


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such run file"),
    (lambda p: p.write_text("time\n1.0\n"), "not a phasic_mpi run file"),
])
def test_unreadable_run_files_are_user_errors(tmp_path, make, message):
    from phasic_mpi.errors import RunFileError

    path = tmp_path / "x.h5"
    make(path)
    with pytest.raises(RunFileError, match=f"^{path}: {message}"):
        summarize(path)


def test_sampling_round_trips():
    rounds, trips = [0, 1, 2, 3], [[9, 9], [9, 9], [3, 40], [4, 40]]
    np.testing.assert_array_equal(dg.sampling_round_trips(rounds, trips, 2), [[3, 40], [4, 40]])
    assert dg.sampling_round_trips(rounds, trips, 4) is None
    (found,) = dg.convergence_warnings({"x": np.random.default_rng(0).normal(size=(2, 400))},
                                       round_trips=dg.sampling_round_trips(rounds, trips, 2))
    assert found.startswith("parallel tempering: 7, 80 round trip(s) per chain")
