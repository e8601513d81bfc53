"""Observed absorption times: exact, right-censored and interval-censored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Observations", "as_observations"]


def _times(values: Any, name: str, *, allow_inf: bool = False) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
    bad = np.isnan(arr) | (arr < 0) | (~allow_inf & np.isinf(arr))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {float(arr[i])}: times must be finite and >= 0")
    return arr


def _lower_bounds(values: Any) -> np.ndarray:
    """Interval lower bounds: any number below +inf; negative means "T <= hi"."""
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
    bad = np.isnan(arr) | (arr == np.inf)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"interval lower bound[{i}] = {float(arr[i])}: must be a number "
                         "below +inf (negative, e.g. -inf, for T <= hi)")
    return arr


def _weights(values: Any, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.ascontiguousarray(np.asarray(values, dtype=np.float64).reshape(-1))
    if arr.shape != (n,):
        raise ValueError(f"{name} has {arr.size} entries for {n} observations")
    bad = ~np.isfinite(arr) | (arr < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{i}] = {float(arr[i])}: weights must be finite and >= 0")
    return arr


@dataclass(frozen=True, eq=False)
class Observations:
    """Independent observations of the absorption time.

    Parameters
    ----------
    exact : array_like, optional
        Observed absorption times; each contributes ``log f(t)`` (for a
        discrete graph, ``log P(T = k)`` and the times must be integers).
        An exact 0 of a graph with a defect contributes the atom's mass
        ``log(1 - sum(alpha))`` (see docs/likelihood.md, "The atom at zero").
    weights : array_like, optional
        Multiplicity of each exact time (non-negative; integers in the usual
        case of repeated values).
    right_censored : array_like, optional
        Times ``c >= 0`` at which the process had not yet been absorbed; each
        contributes ``log P(T > c)`` (which never includes the atom at 0).
    right_weights : array_like, optional
        Multiplicities of the right-censored times.
    interval : array_like of shape (m, 2), optional
        Rows ``(lo, hi)`` with absorption known to lie in ``(lo, hi]``; each
        contributes ``log(F(hi) - F(lo))``. ``hi`` may be ``inf``. A negative
        ``lo`` (``-inf`` included) means ``T <= hi`` and includes the atom at
        0; ``(0, hi]`` excludes it.
    interval_weights : array_like, optional
        Multiplicities of the intervals.

    Examples
    --------
    >>> obs = Observations([0.3, 1.2], right_censored=[5.0])
    >>> obs.n_observations
    3
    """

    exact: np.ndarray
    weights: np.ndarray | None
    right_censored: np.ndarray
    right_weights: np.ndarray | None
    interval_lo: np.ndarray
    interval_hi: np.ndarray
    interval_weights: np.ndarray | None

    def __init__(
        self,
        exact: Any = (),
        weights: Any = None,
        *,
        right_censored: Any = (),
        right_weights: Any = None,
        interval: Any = None,
        interval_weights: Any = None,
    ) -> None:
        ex = _times(exact, "exact")
        rc = _times(right_censored, "right_censored")
        if interval is None or np.size(interval) == 0:
            lo = hi = np.zeros(0)
        else:
            iv = np.asarray(interval, dtype=np.float64)
            if iv.ndim != 2 or iv.shape[1] != 2:
                raise ValueError(f"interval must have shape (m, 2), got {iv.shape}")
            lo = _lower_bounds(iv[:, 0])
            hi = _times(iv[:, 1], "interval upper bound", allow_inf=True)
            bad = ~(lo < hi)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"interval[{i}] = ({lo[i]}, {hi[i]}): need lo < hi")
        fields = {
            "exact": ex,
            "weights": _weights(weights, ex.size, "weights"),
            "right_censored": rc,
            "right_weights": _weights(right_weights, rc.size, "right_weights"),
            "interval_lo": lo,
            "interval_hi": hi,
            "interval_weights": _weights(interval_weights, lo.size, "interval_weights"),
        }
        for key, value in fields.items():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, key, value)

    @property
    def n_observations(self) -> int:
        """Number of rows (not weighted)."""
        return int(self.exact.size + self.right_censored.size + self.interval_lo.size)

    @property
    def total_weight(self) -> float:
        """Sum of the weights over all observations (each row counts 1 if unweighted)."""
        def w(arr: np.ndarray | None, n: int) -> float:
            return float(n if arr is None else arr.sum())

        return (
            w(self.weights, self.exact.size)
            + w(self.right_weights, self.right_censored.size)
            + w(self.interval_weights, self.interval_lo.size)
        )

    @classmethod
    def from_counts(cls, times: Any) -> "Observations":
        """Exact observations with repeated values collapsed into weights.

        Useful for discrete data or rounded times: the likelihood is evaluated
        once per distinct value.
        """
        values, counts = np.unique(_times(times, "times"), return_counts=True)
        return cls(values, counts.astype(np.float64))


def as_observations(data: Any) -> Observations:
    """Return ``data`` as :class:`Observations` (a 1-D array means exact times)."""
    if isinstance(data, Observations):
        return data
    return Observations(data)
