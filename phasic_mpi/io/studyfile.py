"""Study files: one HDF5 file holding the summary of every cell of a study.

Written by one process (rank 0 of ``phasic-mpi study``), read without MPI.
Every dataset is created at full size (one row per cell) when the study
starts, with its storage allocated at once, so recording a finished cell only
overwrites bytes inside existing datasets: a crash at any moment leaves the
cells recorded before it intact. A cell's ``status`` is written after its
results, so a row counts only once its status says so.

Layout::

    /                      attributes: file_kind = "study", identity, study_type,
                           param_names, factors, levels, quantile_probs, n_cells,
                           base_config, methods, n_ranks, ...
    cells/                 one row per cell (datasets below)
    timing/wall_time_s     seconds per cell (differs between runs: kept apart)

Whatever can differ between two runs of one study (timings, rank count) is
in ``timing/`` or in attributes; ``cells/`` compares bitwise across runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from phasic_mpi.io.h5 import _decode_attrs, _set_attrs, atomic_write

__all__ = ["FAILED", "DONE", "PENDING", "QUANTILES", "StudyFile", "StudyWriter", "read_study"]

PENDING, DONE, FAILED = 0, 1, 2
QUANTILES = (0.025, 0.25, 0.5, 0.75, 0.975)  # probabilities of the stored quantiles
ERROR_BYTES = 1024  # error text kept per failed cell (fixed size: no heap writes)
FILE_KIND = "study"


def _columns(n: int, d: int, n_factors: int, n_levels: int) -> dict[str, tuple]:
    """Dataset name -> (shape, dtype, fill value)."""
    nan = np.nan
    return {
        "grid_index": ((n, n_factors), np.int32, -1),
        "replicate": ((n,), np.int32, -1),
        "status": ((n,), np.int8, PENDING),
        "error": ((n,), f"S{ERROR_BYTES}", b""),
        "data_seed": ((n,), np.int64, -1),
        "algorithm_seed": ((n,), np.int64, -1),
        "truth": ((n, d), np.float64, nan),
        "mean": ((n, d), np.float64, nan),
        "sd": ((n, d), np.float64, nan),
        "quantiles": ((n, d, len(QUANTILES)), np.float64, nan),
        "interval_lo": ((n, d, n_levels), np.float64, nan),
        "interval_hi": ((n, d, n_levels), np.float64, nan),
        "ess_bulk": ((n, d), np.float64, nan),
        "ess_tail": ((n, d), np.float64, nan),
        "rhat": ((n, d), np.float64, nan),
        "truth_quantile": ((n, d), np.float64, nan),
        "sbc_rank": ((n, d), np.int32, -1),
        "sbc_draws": ((n,), np.int32, 0),
        "n_draws": ((n,), np.int32, 0),
    }


def _create_dataset(group: h5py.Group, name: str, shape: tuple, dtype: Any, fill: Any) -> None:
    """A contiguous dataset with its storage allocated and filled now."""
    dtype = np.dtype(dtype)
    space = h5py.h5s.create_simple(shape)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    dcpl.set_fill_value(np.array(fill, dtype=dtype))
    h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(dtype), space, dcpl=dcpl)


class StudyWriter:
    """Rank-0 writer of a study file; get one from :meth:`open`."""

    def __init__(self, file: h5py.File) -> None:
        self._f = file
        self.path: str = file.filename

    @classmethod
    def open(cls, path: str, *, identity: str, attrs: Mapping[str, Any], n_cells: int,
             n_params: int, n_factors: int, n_levels: int, cells: Sequence[Any],
             force: bool = False) -> "StudyWriter":
        """Create the study file, or reopen it to continue (same ``identity`` only).

        Raises
        ------
        ValueError
            An existing file at ``path`` belongs to another study (or is not
            a study file) and ``force`` is not set.
        """
        if os.path.exists(path) and not force:
            try:
                with h5py.File(path, "r") as fh:
                    root = _decode_attrs(fh)
            except OSError as exc:
                raise ValueError(f"{path}: exists and is not a readable HDF5 file ({exc}); "
                                 "use --force to replace it") from None
            if root.get("file_kind") != FILE_KIND:
                raise ValueError(f"{path}: exists and is not a study file; use --force to "
                                 "replace it or choose another study.path")
            if root.get("identity") != identity:
                raise ValueError(f"{path}: holds a different study (its grid, base config, "
                                 "seed or levels differ); use --force to start again or "
                                 "choose another study.path")
            return cls(h5py.File(path, "r+"))

        def fill(fh: h5py.File) -> None:
            _set_attrs(fh, {"file_kind": FILE_KIND, "identity": identity, **attrs,
                            "quantile_probs": list(QUANTILES), "n_cells": n_cells})
            group = fh.create_group("cells")
            for name, (shape, dtype, value) in _columns(n_cells, n_params, n_factors,
                                                         n_levels).items():
                _create_dataset(group, name, shape, dtype, value)
            group["grid_index"][...] = np.array([c.grid_index for c in cells],
                                                dtype=np.int32).reshape(n_cells, n_factors)
            group["replicate"][...] = [c.replicate for c in cells]
            _create_dataset(fh.require_group("timing"), "wall_time_s", (n_cells,),
                            np.float64, np.nan)

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, fill)
        return cls(h5py.File(path, "r+"))

    def status(self) -> np.ndarray:
        return self._f["cells/status"][...]

    def record(self, cell_id: int, result: Mapping[str, Any]) -> None:
        """Write one cell's results, then its status; flushed to disk."""
        cells = self._f["cells"]
        for name, value in result.items():
            if name in ("status", "wall_time_s"):
                continue
            if name == "error":
                text = str(value).encode("utf-8", "replace")
                if len(text) > ERROR_BYTES:
                    text = text[:ERROR_BYTES - 3] + b"..."
                value = text
            cells[name][cell_id] = value
        self._f["timing/wall_time_s"][cell_id] = float(result.get("wall_time_s", np.nan))
        self._f.flush()
        cells["status"][cell_id] = result["status"]
        self._f.flush()

    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        _set_attrs(self._f, attrs)
        self._f.flush()

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> "StudyWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class StudyFile:
    """A study file read into memory (no MPI)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        with h5py.File(self.path, "r") as fh:
            self.attrs: dict[str, Any] = _decode_attrs(fh)
            if self.attrs.get("file_kind") != FILE_KIND:
                raise ValueError(f"{self.path}: not a study file")
            self.cells: dict[str, np.ndarray] = {k: v[...] for k, v in fh["cells"].items()}
            self.wall_time_s: np.ndarray = fh["timing/wall_time_s"][...]
        self.param_names: tuple[str, ...] = tuple(self.attrs["param_names"])
        self.levels: tuple[float, ...] = tuple(self.attrs["levels"])
        self.factors: list[tuple[str, list[Any]]] = [
            (name, list(values)) for name, values in self.attrs["factors"]]

    @property
    def status(self) -> np.ndarray:
        return self.cells["status"]

    def errors(self) -> dict[int, str]:
        """Cell id -> error text, for the failed cells."""
        failed = np.flatnonzero(self.status == FAILED)
        return {int(i): self.cells["error"][i].decode("utf-8", "replace") for i in failed}

    def factor_labels(self, factor: int) -> list[str]:
        values = self.factors[factor][1]
        return [v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
                for v in values]

    def __repr__(self) -> str:
        done = int(np.sum(self.status == DONE))
        return f"StudyFile({self.path!r}, {done}/{self.status.size} cells done)"


def read_study(path: str | os.PathLike) -> StudyFile:
    """Read a study file written by ``phasic-mpi study``."""
    return StudyFile(path)
