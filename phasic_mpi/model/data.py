"""Observed absorption times: exact, right-censored and interval-censored."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["COLUMNS", "ColumnError", "KINDS", "Observations", "as_observations",
           "observations_from_columns", "table_layout"]


# The shared value of an absent group (``()``, the default): read-only, so sharing is safe.
_EMPTY = np.zeros(0)
_EMPTY.setflags(write=False)


def _owned(values: Any) -> np.ndarray:
    """``values`` as a new C-contiguous float64 1-D array that owns its memory.

    A copy (not a view of the caller's array), so an Observations cannot
    change after its checks: the caller may reuse or modify its array, and
    the likelihood may keep C pointers to these arrays between calls.
    """
    if type(values) is tuple and not values:
        return _EMPTY
    arr = np.array(values, dtype=np.float64, order="C")
    return arr if arr.ndim == 1 else arr.reshape(-1)


def _times(values: Any, name: str, *, allow_inf: bool = False) -> np.ndarray:
    arr = _owned(values)
    # One cheap pass when all is well (min is NaN if any value is): the masks
    # below, which name the first bad entry, only run on bad data.
    if arr.size == 0 or (arr.min() >= 0.0 and (allow_inf or arr.max() < np.inf)):
        return arr
    bad = np.isnan(arr) | (arr < 0) | (~allow_inf & np.isinf(arr))
    i = int(np.flatnonzero(bad)[0])
    raise ValueError(f"{name}[{i}] = {float(arr[i])}: times must be finite and >= 0")


def _lower_bounds(values: Any) -> np.ndarray:
    """Interval lower bounds: any number below +inf; negative means "T <= hi"."""
    arr = _owned(values)
    bad = np.isnan(arr) | (arr == np.inf)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"interval lower bound[{i}] = {float(arr[i])}: must be a number "
                         "below +inf (negative, e.g. -inf, for T <= hi)")
    return arr


def _weights(values: Any, n: int, name: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = _owned(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} has {arr.size} entries for {n} observations")
    if n == 0 or (arr.min() >= 0.0 and arr.max() < np.inf):  # as in _times
        return arr
    bad = ~np.isfinite(arr) | (arr < 0)
    i = int(np.flatnonzero(bad)[0])
    raise ValueError(f"{name}[{i}] = {float(arr[i])}: weights must be finite and >= 0")


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

    Notes
    -----
    The arrays are read-only float64 copies of the inputs, checked once:
    changing the caller's arrays afterwards does not change an Observations.

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
            lo = hi = _EMPTY
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

    @classmethod
    def from_dataframe(cls, df: Any, **columns: str) -> "Observations":
        """Observations from a data frame (pandas, polars, or a dict of arrays).

        The columns are those of a data file (``docs/config.md``): survival
        data ``time`` with ``status`` (or ``event``; 1 = absorbed, 0 =
        right-censored), interval data ``lower``/``upper`` (a missing
        ``upper`` right-censors, a missing ``lower`` means ``T <= upper``,
        equal bounds are an exact time), or ``time`` with ``kind``/``upper``;
        each optionally with ``weight``. Missing values are NaN (or None).

        Parameters
        ----------
        df : data frame or mapping
            Anything with ``df[name]`` for its column names (``df.columns``
            or ``df.keys()``); pandas is not needed.
        **columns : str
            Which of ``df``'s columns plays a role, e.g.
            ``time="duration", status="dead"``; by default the columns named
            after the roles are used and all others ignored.

        Examples
        --------
        >>> Observations.from_dataframe({"time": [0.5, 2.0], "status": [1, 0]}).right_censored
        array([2.])
        """
        unknown = sorted(set(columns) - set(COLUMNS))
        if unknown:
            raise TypeError(f"unknown role {unknown[0]!r} (roles: {', '.join(COLUMNS)})")
        names = list(df.columns) if hasattr(df, "columns") else list(df.keys())
        lower = {str(n).lower(): n for n in names}
        picked = {}
        for role in COLUMNS:
            name = columns.get(role, role if role in lower else None)
            if name is None:
                continue
            key = lower.get(str(name).lower(), name)
            if key not in names:
                raise ValueError(f"{role}: no column {name!r} (columns: {names})")
            picked[role] = _values(df[key])
        return observations_from_columns(picked)


def _values(column: Any) -> np.ndarray:
    """A data-frame column as a numpy array (pandas' ``to_numpy``, else ``asarray``)."""
    to_numpy = getattr(column, "to_numpy", None)
    values = to_numpy() if callable(to_numpy) else column
    arr = np.asarray(values)
    if arr.dtype == object:  # None (missing) as NaN in otherwise numeric columns
        try:
            return np.array([np.nan if v is None else v for v in arr], dtype=np.float64)
        except (TypeError, ValueError):
            return arr  # a text column (kind, status)
    return arr


def as_observations(data: Any) -> Observations:
    """Return ``data`` as :class:`Observations` (a 1-D array means exact times)."""
    if isinstance(data, Observations):
        return data
    return Observations(data)


# -------------------------------------------------------------- table columns
#: Column names :func:`observations_from_columns` knows (lower case).
COLUMNS = ("time", "weight", "kind", "upper", "lower", "status", "event")
KINDS = ("exact", "right", "interval")
_STATUS = {"1": True, "0": False, "1.0": True, "0.0": False, "true": True, "false": False}


class ColumnError(ValueError):
    """A bad value in one row of a table (``row`` counts data rows from 0)."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row


def table_layout(names: Any) -> str:
    """Which of the three table layouts the column ``names`` are.

    * ``"survival"``: ``time`` and ``status`` (or ``event``): 1 = absorbed at
      ``time``, 0 = still running at ``time`` (right-censored);
    * ``"bounds"``: ``lower`` and ``upper``: absorbed in ``(lower, upper]``;
      ``lower == upper`` is an exact time, a missing (NaN) or infinite
      ``upper`` right-censors at ``lower``, a missing ``lower`` means
      ``T <= upper``;
    * ``"kind"``: ``time`` with optional ``kind`` (exact, right, interval)
      and ``upper`` (interval rows only).

    Each may add ``weight`` (multiplicity, default 1).

    Raises
    ------
    ValueError
        For unknown, repeated or mixed columns.
    """
    names = [str(n).lower() for n in names]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    if len(set(names)) != len(names):
        raise ValueError(f"repeated column in {names}")
    given = set(names) - {"weight"}
    if given & {"status", "event"}:
        if given not in ({"time", "status"}, {"time", "event"}):
            raise ValueError("survival columns are time and status (or event), and "
                             f"optionally weight; got {names}")
        return "survival"
    if "lower" in given:
        if given != {"lower", "upper"}:
            raise ValueError("interval columns are lower and upper, and optionally "
                             f"weight; got {names}")
        return "bounds"
    if "time" not in given:
        raise ValueError(f"the header must name distinct columns including 'time', got {names}")
    return "kind"


def _column(columns: Mapping[str, Any], name: str) -> np.ndarray:
    try:
        return np.asarray(columns[name], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"column {name!r}: expected numbers ({exc})") from None


def _rows_of_kinds(columns: Mapping[str, Any], layout: str, n: int) -> tuple[np.ndarray, ...]:
    """Per row: kind index into KINDS, time (or lower bound), upper bound (NaN if none)."""
    upper = _column(columns, "upper") if "upper" in columns else np.full(n, np.nan)
    if layout == "survival":
        name = "status" if "status" in columns else "event"
        flags = []
        for i, v in enumerate(np.asarray(columns[name], dtype=object).reshape(-1)):
            key = str(v).strip().lower()
            if key not in _STATUS:
                raise ColumnError(i, f"{name} must be 1 (absorbed at time) or 0 (censored: "
                                     f"not absorbed by time), got {v!r}")
            flags.append(_STATUS[key])
        return np.where(flags, 0, 1), _column(columns, "time"), upper
    if layout == "bounds":
        lower = _column(columns, "lower")
        for i in np.flatnonzero(np.isnan(lower) & np.isnan(upper)):
            raise ColumnError(int(i), "lower and upper are both missing")
        for i in np.flatnonzero(lower > upper):
            raise ColumnError(int(i), f"need lower <= upper, got ({lower[i]}, {upper[i]})")
        right = np.isnan(upper) | (upper == np.inf)
        kinds = np.where(lower == upper, 0, np.where(right, 1, 2))
        return kinds, np.where(np.isnan(lower), -np.inf, lower), upper
    kind_names = (np.asarray(columns["kind"], dtype=object).reshape(-1) if "kind" in columns
                  else np.full(n, "exact", dtype=object))
    kinds = np.empty(n, dtype=np.int64)
    for i, k in enumerate(kind_names):
        k = "exact" if k is None or str(k) in ("", "nan") else str(k).strip().lower()
        if k not in KINDS:
            raise ColumnError(i, f"kind must be one of {', '.join(KINDS)}, got {k!r}")
        kinds[i] = KINDS.index(k)
        if (k == "interval") == bool(np.isnan(upper[i])):
            raise ColumnError(i, "'upper' is required for interval rows and not allowed "
                                 "otherwise")
    return kinds, _column(columns, "time"), upper


def observations_from_columns(columns: Mapping[str, Any]) -> Observations:
    """Observations from named columns in one of the layouts of :func:`table_layout`.

    Parameters
    ----------
    columns : mapping of str to array_like
        Column name (case-insensitive) to values, all of one length; missing
        numbers are NaN.

    Raises
    ------
    ColumnError
        For a bad value, naming its row (counted from 0).
    ValueError
        For bad columns, or times the :class:`Observations` refuse.
    """
    columns = {str(k).lower(): v for k, v in columns.items()}
    layout = table_layout(columns)
    lengths = {k: int(np.size(v)) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of different lengths: {lengths}")
    n = next(iter(lengths.values()), 0)
    kinds, time, upper = _rows_of_kinds(columns, layout, n)
    weight = _column(columns, "weight") if "weight" in columns else None
    for i in np.flatnonzero(np.isnan(time) & (kinds != 2)):
        raise ColumnError(int(i), "time is missing")
    parts = [np.flatnonzero(kinds == k) for k in range(3)]

    def w(rows: np.ndarray) -> np.ndarray | None:
        return None if weight is None else weight[rows]

    ex, rc, iv = parts
    return Observations(time[ex], w(ex), right_censored=time[rc], right_weights=w(rc),
                        interval=np.column_stack([time[iv], upper[iv]]) if iv.size else None,
                        interval_weights=w(iv))
