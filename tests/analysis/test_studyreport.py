"""The Clopper–Pearson interval of a calibration row (scipy's binomtest)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from phasic_mpi.analysis.studyreport import Calibration


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The interval from its definition: quantiles of Beta(k, n - k + 1), Beta(k + 1, n - k)."""
    a = (1 - confidence) / 2
    lo = stats.beta.ppf(a, k, n - k + 1) if k else 0.0
    hi = stats.beta.ppf(1 - a, k + 1, n - k) if k < n else 1.0
    return float(lo), float(hi)


@pytest.mark.parametrize("n, k", [(1, 0), (1, 1), (10, 0), (10, 3), (10, 10), (40, 37),
                                  (200, 190), (1000, 1)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_interval_is_clopper_pearson(n, k, confidence):
    got = Calibration("a", 0.9, n, k).interval(confidence)
    assert got == pytest.approx(clopper_pearson(k, n, confidence), rel=1e-9, abs=1e-15)


def test_interval_without_cells():
    assert all(math.isnan(v) for v in Calibration("a", 0.9, 0, 0).interval())
