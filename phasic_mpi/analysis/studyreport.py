"""``phasic-mpi study-report``: what a study found, per grid factor.

Everything is computed from the study file alone (no MPI):

* per factor value and parameter: cells done, bias and RMSE of the posterior
  mean, mean posterior sd, empirical coverage of each central credible
  level, mean wall time;
* calibration: coverage per level with its binomial standard error and a
  Clopper–Pearson 95 % interval (scipy), and the simulation-based-calibration (SBC)
  rank histogram with a χ² test of uniformity. For a calibration study
  (true θ drawn from the prior) an exact posterior covers the truth with
  probability equal to the level, and the SBC ranks are uniform.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from scipy import stats

from phasic_mpi.io.studyfile import DONE, FAILED, StudyFile, read_study

__all__ = ["Calibration", "FactorRow", "calibration", "covered", "factor_table",
           "format_report", "sbc_histogram"]


def covered(sf: StudyFile) -> np.ndarray:
    """Boolean ``(cell, parameter, level)``: truth inside the central interval."""
    c = sf.cells
    truth = c["truth"][:, :, None]
    return (c["interval_lo"] <= truth) & (truth <= c["interval_hi"])


def _known(sf: StudyFile) -> np.ndarray:
    """``(cell, parameter)``: the cell is done and its truth is known."""
    return (sf.status == DONE)[:, None] & np.isfinite(sf.cells["truth"])


@dataclass(frozen=True)
class FactorRow:
    """One line of a factor table: one value of one factor, one parameter."""

    factor: str
    value: str
    parameter: str
    n_done: int
    n_failed: int
    bias: float
    rmse: float
    mean_sd: float
    coverage: tuple[float, ...]  # at the study's levels
    mean_time_s: float


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else math.nan


def factor_table(sf: StudyFile, factor: int | None) -> list[FactorRow]:
    """Rows for every value of grid factor ``factor`` (``None``: all cells)."""
    c = sf.cells
    done = sf.status == DONE
    failed = sf.status == FAILED
    cov = covered(sf)
    known = _known(sf)
    err = c["mean"] - c["truth"]
    if factor is None:
        groups = [("all cells", "", np.ones(sf.status.size, dtype=bool))]
    else:
        name = sf.factors[factor][0]
        labels = sf.factor_labels(factor)
        groups = [(name, label, c["grid_index"][:, factor] == i) for i, label in enumerate(labels)]
    rows = []
    for name, label, sel in groups:
        for j, param in enumerate(sf.param_names):
            k = sel & known[:, j]
            rows.append(FactorRow(
                factor=name, value=label, parameter=param, n_done=int(np.sum(sel & done)),
                n_failed=int(np.sum(sel & failed)), bias=_mean(err[k, j]),
                rmse=math.sqrt(_mean(err[k, j] ** 2)) if k.any() else math.nan,
                mean_sd=_mean(c["sd"][sel & done, j]),
                coverage=tuple(_mean(cov[k, j, m].astype(float)) for m in range(len(sf.levels))),
                mean_time_s=_mean(sf.wall_time_s[sel & done])))
    return rows


@dataclass(frozen=True)
class Calibration:
    """Coverage of one parameter at one level, over a set of cells."""

    parameter: str
    level: float
    n: int
    covered: int

    @property
    def coverage(self) -> float:
        return self.covered / self.n if self.n else math.nan

    @property
    def se(self) -> float:
        """Binomial standard error at the nominal level."""
        return math.sqrt(self.level * (1 - self.level) / self.n) if self.n else math.nan

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Clopper–Pearson (exact) interval of the coverage (scipy's ``binomtest``)."""
        if not self.n:
            return (math.nan, math.nan)
        ci = stats.binomtest(self.covered, self.n).proportion_ci(confidence, method="exact")
        return float(ci.low), float(ci.high)

    def consistent(self, confidence: float = 0.99) -> bool:
        """Whether ``covered`` lies in the central ``confidence`` range of Binomial(n, level)."""
        a = (1 - confidence) / 2
        lo, hi = stats.binom.ppf([a, 1 - a], self.n, self.level)
        return bool(lo <= self.covered <= hi)


def calibration(sf: StudyFile, cells: np.ndarray | None = None) -> list[Calibration]:
    """Coverage per parameter and level over ``cells`` (a boolean mask; default all)."""
    sel = np.ones(sf.status.size, dtype=bool) if cells is None else np.asarray(cells)
    cov = covered(sf)
    known = _known(sf)
    out = []
    for j, param in enumerate(sf.param_names):
        k = sel & known[:, j]
        for m, level in enumerate(sf.levels):
            out.append(Calibration(param, level, int(k.sum()), int(cov[k, j, m].sum())))
    return out


def sbc_histogram(sf: StudyFile, parameter: int, cells: np.ndarray | None = None,
                  bins: int = 10) -> tuple[np.ndarray, np.ndarray, float]:
    """SBC rank counts in ``bins`` equal bins of the normalised rank.

    A rank ``r`` out of ``L`` draws is mapped to ``(r + 0.5) / (L + 1)`` so
    that cells with different ``L`` share the bins. Under calibration ``r``
    is uniform on ``0..L``; when ``bins`` does not divide ``L + 1`` the bins
    hold unequal numbers of ranks, so the expected counts are computed
    exactly rather than assumed equal.

    Returns
    -------
    counts, expected : ndarray (bins,)
    p_value : float
        χ² test of ``counts`` against ``expected`` (NaN with fewer than 5
        expected per bin).
    """
    sel = np.ones(sf.status.size, dtype=bool) if cells is None else np.asarray(cells)
    rank = sf.cells["sbc_rank"][:, parameter]
    n_sbc = sf.cells["sbc_draws"]
    k = sel & _known(sf)[:, parameter] & (rank >= 0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.histogram((rank[k] + 0.5) / (n_sbc[k] + 1.0), bins=edges)[0]
    expected = np.zeros(bins)
    for n_draws, n_cells in zip(*np.unique(n_sbc[k], return_counts=True)):
        every_rank = (np.arange(n_draws + 1) + 0.5) / (n_draws + 1.0)
        expected += n_cells * np.histogram(every_rank, bins=edges)[0] / (n_draws + 1.0)
    p = (float(stats.chisquare(counts, expected).pvalue)
         if counts.sum() and expected.min() >= 5 else math.nan)
    return counts, expected, p


# ------------------------------------------------------------------- text
def _f(x: float, spec: str = ".3g") -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else format(x, spec)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.rjust(w) if i else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def _factor_text(sf: StudyFile, factor: int | None) -> str:
    head = ["value", "param", "done", "failed", "bias", "rmse", "mean sd",
            *[f"cover {lv:g}" for lv in sf.levels], "time s"]
    rows = [head]
    for r in factor_table(sf, factor):
        rows.append([r.value or "-", r.parameter, str(r.n_done), str(r.n_failed), _f(r.bias),
                     _f(r.rmse), _f(r.mean_sd), *[_f(c, ".2f") for c in r.coverage],
                     _f(r.mean_time_s, ".2f")])
    title = "all cells" if factor is None else f"by {sf.factors[factor][0]}"
    return f"{title}:\n{_table(rows)}"


def _calibration_text(sf: StudyFile, label: str, cells: np.ndarray) -> str:
    rows = [["param", "level", "cells", "coverage", "± se", "95% interval", "consistent"]]
    for c in calibration(sf, cells):
        lo, hi = c.interval()
        rows.append([c.parameter, f"{c.level:g}", str(c.n), _f(c.coverage, ".3f"),
                     _f(c.se, ".3f"), f"[{_f(lo, '.3f')}, {_f(hi, '.3f')}]",
                     "yes" if c.consistent() else "NO"])
    lines = [f"calibration ({label}):", _table(rows)]
    for j, param in enumerate(sf.param_names):
        counts, _, p = sbc_histogram(sf, j, cells)
        lines.append(f"SBC ranks {param}: {' '.join(map(str, counts))}  (χ² p = {_f(p, '.3f')})")
    return "\n".join(lines)


def format_report(sf: StudyFile) -> str:
    """The text report of a study file (ends with a newline)."""
    status = sf.status
    n_done, n_failed = int(np.sum(status == DONE)), int(np.sum(status == FAILED))
    head = (f"{os.path.basename(sf.path)}: {sf.attrs.get('study_type', 'grid')} study, "
            f"{status.size} cells ({n_done} done, {n_failed} failed, "
            f"{status.size - n_done - n_failed} pending); parameters {', '.join(sf.param_names)}")
    parts = [head, _factor_text(sf, None)]
    parts += [_factor_text(sf, f) for f in range(len(sf.factors))]
    if np.isfinite(sf.cells["truth"]).any():
        parts.append("'consistent': the number of covering cells lies in the central 99 % "
                     "range of Binomial(cells, level).")
        method = next((i for i, (name, _) in enumerate(sf.factors) if name == "method"), None)
        if method is None:
            parts.append(_calibration_text(sf, "all cells", status == DONE))
        else:  # methods share their data sets: pooling them would count each twice
            for i, label in enumerate(sf.factor_labels(method)):
                parts.append(_calibration_text(
                    sf, f"method={label}", (status == DONE) & (sf.cells["grid_index"][:, method] == i)))
    errors = sf.errors()
    if errors:
        parts.append("failed cells:\n" + "\n".join(f"  cell {i}: {text}"
                                                   for i, text in errors.items()))
    return "\n\n".join(parts) + "\n"
