"""The vectorised diagnostics against ArviZ itself (the oracle): ESS bulk and
tail, rank-normalized R-hat, MCSE of mean and sd, entry by entry, to 1e-10,
on autocorrelated, tied, constant, NaN, chain-constant and odd-length draws;
and ``summary`` without importing ArviZ."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest

from phasic_mpi.analysis.diagnostics import STATISTICS, diagnose
from phasic_mpi.analysis.fastdiag import statistics

az = pytest.importorskip("arviz")


def _arviz(x: np.ndarray) -> dict[str, np.ndarray]:
    logging.getLogger("arviz").setLevel(logging.ERROR)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        d = az.convert_to_dataset({"x": x})
        out = {"ess_bulk": az.ess(d, method="bulk"), "ess_tail": az.ess(d, method="tail"),
               "mcse_mean": az.mcse(d, method="mean"), "mcse_sd": az.mcse(d, method="sd")}
        if x.shape[0] > 1:
            out["rhat"] = az.rhat(d, method="rank")
    values = {k: np.asarray(v["x"].values, dtype=float) for k, v in out.items()}
    values.setdefault("rhat", np.full(x.shape[2], np.nan))
    return values


def _draws(rng: np.random.Generator, chains: int, draws: int, k: int) -> np.ndarray:
    """Random walks plus noise (autocorrelated), with the degenerate cases in front."""
    x = (rng.standard_normal((chains, draws, k)).cumsum(axis=1) * rng.uniform(0, 1, k)
         + rng.standard_normal((chains, draws, k)))
    x[:, :, 0] = 1.0                                   # constant
    x[:, :, 1] = np.round(x[:, :, 1])                  # many ties
    x[0, 0, 2] = np.nan                                # a NaN draw
    x[:, :, 3] = np.arange(chains)[:, None]            # each chain constant, chains differ
    x[:, :, 4] = x[:, :, 4] > 0.3                      # an indicator
    return x


@pytest.mark.parametrize("chains, draws", [(2, 48), (4, 101), (1, 200), (3, 7), (2, 5),
                                           (2, 1000), (2, 3)])
def test_equals_arviz_entry_by_entry(chains, draws):
    x = _draws(np.random.default_rng(chains * 1000 + draws), chains, draws, 40)
    ours, theirs = statistics(x, STATISTICS), _arviz(x)
    for stat in STATISTICS:
        a, b = ours[stat], theirs[stat]
        assert np.array_equal(np.isnan(a), np.isnan(b)), stat
        assert np.array_equal(np.isinf(a), np.isinf(b)), stat
        finite = np.isfinite(b)
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-10, atol=1e-12, err_msg=stat)


def test_diagnose_keeps_shapes_and_subsets():
    rng = np.random.default_rng(3)
    draws = {"a": rng.standard_normal((2, 30)), "w": rng.standard_normal((2, 30, 2, 3))}
    every = diagnose(draws)
    some = diagnose(draws, statistics=("rhat",))
    assert every["w"]["rhat"].shape == (2, 3) and np.isnan(some["w"]["ess_bulk"]).all()
    np.testing.assert_array_equal(some["w"]["rhat"], every["w"]["rhat"])
    oracle = _arviz(draws["w"].reshape(2, 30, 6))
    np.testing.assert_allclose(every["w"]["ess_tail"].ravel(), oracle["ess_tail"], rtol=1e-10)


def test_summary_does_not_import_arviz(tmp_path):
    """ArviZ's import costs seconds; summary and the plots' R-hat need none of it."""
    from phasic_mpi.io.store import RunWriter

    path = tmp_path / "r.h5"
    with RunWriter.create(path, algorithm="pt", config={}, param_names=["a"]) as w:
        w.write_posterior({"a": np.random.default_rng(0).standard_normal((2, 50))})
    code = ("import sys; from phasic_mpi.analysis.summary import summarize, format_summary; "
            f"format_summary(summarize({str(path)!r})); "
            "from phasic_mpi.plotting.run import load_view, shown_params; "
            "from phasic_mpi.io.runfile import read_run; "
            f"shown_params(load_view(read_run({str(path)!r})), limit=0); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('arviz', 'xarray')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
