"""Observation files: read ``.csv``/``.txt``, ``.npy`` and ``.h5``/``.hdf5``
into :class:`~phasic_mpi.model.data.Observations`, and write them back.

Problems with a file raise :class:`~phasic_mpi.errors.ConfigError` naming
``data.file`` (or ``data.dataset``), the file and, for text files, the line.
The formats are described in ``docs/config.md``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from phasic_mpi.errors import ConfigError
from phasic_mpi.model.data import (
    COLUMNS,
    ColumnError,
    Observations,
    as_observations,
    observations_from_columns,
    table_layout,
)

__all__ = ["read_data_file", "write_data"]


def read_data_file(path: str | os.PathLike, dataset: str | None = None) -> Observations:
    """Read observations from ``.csv``/``.txt``, ``.npy`` or ``.h5``/``.hdf5``.

    See ``docs/config.md`` for the formats. Errors are ConfigErrors naming
    ``data.file`` (or ``data.dataset``) and the file.
    """
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    if not os.path.isfile(path):
        raise ConfigError(f"data.file: no such file: {path}")
    try:
        if suffix in (".csv", ".txt"):
            return _read_text(path)
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 1 or arr.dtype.kind not in "iuf":
                raise ValueError(f"expected a 1-D numeric array, got shape {arr.shape}, "
                                 f"dtype {arr.dtype}")
            return Observations(arr)
        if suffix in (".h5", ".hdf5"):
            return _read_h5(path, dataset)
    except ConfigError:
        raise
    except (ValueError, OSError, EOFError) as exc:  # EOFError: an empty or cut .npy
        raise ConfigError(f"data.file: {path}: {exc or 'truncated file'}") from exc
    raise ConfigError(f"data.file: unknown file type {suffix!r} of {path}")


_TEXT_COLUMNS = ("kind", "status", "event")  # the others hold numbers


def _split(line: str) -> list[str]:
    return [f.strip() for f in line.split(",")] if "," in line else line.split()


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_text(path: str) -> Observations:
    rows = []
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                rows.append((lineno, _split(text)))
    if not rows:
        raise ConfigError(f"data.file: {path}: no data")
    where = f"data.file: {path}"
    header = None
    if not all(_is_float(f) for f in rows[0][1]):
        header_line, fields = rows.pop(0)
        header = [f.lower() for f in fields]
    if header is None or len(header) == 1:
        if header is not None and header[0] in COLUMNS and header[0] != "time":
            raise ConfigError(f"{where}:{header_line}: a one-column file holds times, "
                              f"not {header[0]!r}")
        times = []
        for lineno, fields in rows:
            if len(fields) != 1 or not _is_float(fields[0]):
                raise ConfigError(f"{where}:{lineno}: expected one time per line (or a "
                                  f"header naming the columns {', '.join(COLUMNS)}), "
                                  f"got {fields}")
            times.append(float(fields[0]))
        return _observations(where, exact=times)
    try:
        table_layout(header)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    columns = _columns(where, header, rows)
    try:
        return observations_from_columns(columns)
    except ColumnError as exc:
        raise ConfigError(f"{where}:{rows[exc.row][0]}: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _columns(where: str, header: list[str], rows: list[tuple[int, list[str]]]) -> dict:
    """The fields by column: text as is, numbers as floats (empty: NaN, weight 1)."""
    columns: dict[str, list] = {name: [] for name in header}
    for lineno, fields in rows:
        if len(fields) > len(header):
            raise ConfigError(f"{where}:{lineno}: {len(fields)} fields for "
                              f"{len(header)} columns")
        for name, field in zip(header, fields + [""] * (len(header) - len(fields))):
            if name in _TEXT_COLUMNS:
                columns[name].append(field)
                continue
            try:
                value = float(field) if field else (1.0 if name == "weight" else math.nan)
            except ValueError as exc:
                raise ConfigError(f"{where}:{lineno}: {exc}") from None
            columns[name].append(value)
    return columns


def _observations(where: str, **fields: Any) -> Observations:
    exact = fields.pop("exact", ())
    weights = fields.pop("weights", None)
    try:
        return Observations(exact, weights, **fields)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


_H5_FIELDS = ("exact", "weights", "right_censored", "right_weights",
              "interval_lo", "interval_hi", "interval_weights", "interval")


def _read_h5(path: str, dataset: str | None) -> Observations:
    import h5py

    where = f"data.file: {path}"
    with h5py.File(path, "r") as fh:
        name = dataset if dataset is not None else "observed_data"
        if name not in fh:
            if dataset is not None:
                raise ConfigError(f"data.dataset: no {dataset!r} in {path}")
            raise ConfigError(f"{where}: no 'observed_data' group; name a dataset with "
                              f"data.dataset (top level: {', '.join(fh)})")
        obj = fh[name]
        if isinstance(obj, h5py.Dataset):
            if obj.ndim != 1:
                raise ConfigError(f"{where}: dataset {name!r} has shape {obj.shape}, "
                                  "expected a 1-D array of times")
            return _observations(where, exact=np.asarray(obj[()]))
        present = {k: np.asarray(obj[k][()]) for k in _H5_FIELDS
                   if isinstance(obj.get(k), h5py.Dataset)}
        if not present:
            plain = [k for k, v in obj.items() if isinstance(v, h5py.Dataset)
                     and v.ndim == 1 and not v.is_scale]
            if len(plain) != 1:
                raise ConfigError(f"{where}: group {name!r} has no datasets named "
                                  f"{', '.join(_H5_FIELDS)} nor a single 1-D dataset")
            return _observations(where, exact=np.asarray(obj[plain[0]][()]))
    if "interval" not in present and "interval_lo" in present:
        present["interval"] = np.column_stack([present.pop("interval_lo"),
                                               present.pop("interval_hi", [])])
    return _observations(where, **present)


def write_data(path: str | os.PathLike, observations: Any, *,
               comment: str | None = None) -> None:
    """Write observations so that :func:`read_data_file` reads them back bitwise.

    ``.npy``: exact, unweighted times only. ``.csv``/``.txt``: header
    ``time`` for exact times only; ``time,status`` (1 = absorbed, 0 =
    right-censored) for exact and right-censored times, the usual form of
    survival data; ``kind,time,upper`` if there are intervals; plus
    ``weight`` if weighted. Values in shortest round-trip notation;
    ``comment`` becomes ``#`` lines at the top.
    """
    obs = as_observations(observations)
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    censored = obs.right_censored.size + obs.interval_lo.size > 0
    if suffix == ".npy":
        if censored or obs.weights is not None:
            raise ValueError(".npy holds exact unweighted times only; write a .csv")
        np.save(path, obs.exact)
        return
    if suffix not in (".csv", ".txt"):
        raise ValueError(f"cannot write data as {suffix!r} (use .csv, .txt or .npy)")
    weighted = any(w is not None for w in
                   (obs.weights, obs.right_weights, obs.interval_weights))

    def weights(w: np.ndarray | None, n: int) -> np.ndarray:
        return np.ones(n) if w is None else w

    def number(x: float) -> str:
        return "inf" if math.isinf(x) and x > 0 else repr(float(x))

    rows = [("exact", t, None, w) for t, w in
            zip(obs.exact, weights(obs.weights, obs.exact.size))]
    rows += [("right", t, None, w) for t, w in
             zip(obs.right_censored, weights(obs.right_weights, obs.right_censored.size))]
    rows += [("interval", lo, hi, w) for lo, hi, w in
             zip(obs.interval_lo, obs.interval_hi,
                 weights(obs.interval_weights, obs.interval_lo.size))]
    if obs.interval_lo.size:
        columns = ["kind", "time", "upper"]
    else:
        columns = ["time", "status"] if censored else ["time"]
    columns += ["weight"] if weighted else []
    lines = [f"# {line}" for line in (comment.splitlines() if comment else [])]
    lines.append(",".join(columns))
    for kind, time, upper, weight in rows:
        values = {"kind": kind, "time": number(time), "weight": number(weight),
                  "status": "1" if kind == "exact" else "0",
                  "upper": "" if upper is None else number(upper)}
        lines.append(",".join(values[c] for c in columns))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
