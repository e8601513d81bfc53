"""Reading run files (no MPI needed): :func:`read_run` and :class:`RunFile`."""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from phasic_mpi.errors import RunFileError
from phasic_mpi.io.h5 import ROWS_ATTR, _decode_attrs, _is_history, _is_scale, _open
from phasic_mpi.model.data import Observations
from phasic_mpi.model.graph import Graph
from phasic_mpi.model.params import ParamLayout, param_layout
from phasic_mpi.model.termdata import term_from_arrays

__all__ = ["MODEL_GROUP", "SHAPES_ATTR", "RunFile", "read_run"]

MODEL_GROUP = "model"  # the compiled graph as data (RunWriter.write_model)
SHAPES_ATTR = "param_shapes"  # attribute of group model: the families of parameters


class RunFile:
    """Read-only view of a run file; every accessor opens the file briefly.

    Attributes
    ----------
    path : str
    attrs : dict
        Decoded root attributes (``config`` is a dict).
    algorithm : str
    param_names : tuple of str
    groups : tuple of str
        Paths of all groups, e.g. ``("observed_data", "posterior", "svgd", "svgd/final")``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        groups: list[str] = []
        with _open(self.path, "r") as f:
            if "phasic_mpi_version" not in f.attrs:
                raise RunFileError(f"{self.path!r} is not a phasic_mpi run file")
            self.attrs = _decode_attrs(f)
            f.visititems(lambda n, o: groups.append(n) if isinstance(o, h5py.Group) else None)
        self.groups = tuple(groups)
        self.algorithm: str = self.attrs.get("algorithm", "")
        self.param_names: tuple[str, ...] = tuple(self.attrs.get("param_names", ()))

    @property
    def config(self) -> dict[str, Any]:
        """The run configuration."""
        return self.attrs.get("config", {})

    def read_group(self, group: str) -> dict[str, np.ndarray]:
        """Data variables directly in ``group`` (history datasets: valid rows only)."""
        with _open(self.path, "r") as f:
            g = f.get(group)
            if not isinstance(g, h5py.Group):
                return {}
            return {k: _read(v) for k, v in g.items()
                    if isinstance(v, h5py.Dataset) and not _is_scale(v)}

    def group_attrs(self, group: str) -> dict[str, Any]:
        """Decoded attributes of ``group`` (empty if it does not exist)."""
        with _open(self.path, "r") as f:
            return _decode_attrs(f[group]) if group in f else {}

    def posterior(self) -> dict[str, np.ndarray]:
        """Posterior variables: name -> array (chain, draw, ...); empty until written.

        A family of parameters is one variable ``(chain, draw, *shape)``
        (:meth:`param_layout`); :meth:`flat_posterior` has one entry per parameter.
        """
        return self.read_group("posterior")

    def param_layout(self) -> ParamLayout:
        """How ``param_names`` form the posterior's variables (the stored ``param_shapes``)."""
        shapes = self.group_attrs(MODEL_GROUP).get(SHAPES_ATTR)
        try:
            return param_layout(self.param_names, shapes, detect=False)
        except ValueError as exc:
            raise RunFileError(f"{self.path}: the stored param_shapes do not fit "
                             f"param_names: {exc}") from None

    def flat_posterior(self) -> dict[str, np.ndarray]:
        """Posterior draws by parameter name: name -> array (chain, draw); empty until written."""
        post = self.posterior()
        return self.param_layout().unpack(post) if post else {}

    def sample_stats(self) -> dict[str, np.ndarray]:
        """Sample statistics: name -> array (chain, draw, ...)."""
        return self.read_group("sample_stats")

    def rows(self) -> dict[str, int]:
        """Valid rows of every history dataset."""
        out: dict[str, int] = {}
        with _open(self.path, "r") as f:
            f.visititems(lambda n, o: out.update({n: int(o.attrs[ROWS_ATTR])})
                         if _is_history(o) else None)
        return dict(sorted(out.items()))

    def history(self, name: str) -> np.ndarray:
        """The valid rows of history dataset ``name``, e.g. ``"svgd/particles"``."""
        with _open(self.path, "r") as f:
            ds = f.get(name)
            if not _is_history(ds):
                raise KeyError(f"{self.path!r} has no history dataset {name!r}")
            return _read(ds)

    def diagnostics(self) -> dict[str, Any]:
        """Run diagnostics: the attributes of group ``<algorithm>/diagnostics``."""
        return self.group_attrs(f"{self.algorithm}/diagnostics") if self.algorithm else {}

    def observations(self) -> Observations | None:
        """The data as :class:`~phasic_mpi.Observations` (None if not stored)."""
        v = self.read_group("observed_data")
        if not v:
            return None
        lo, hi = v.get("interval_lo", np.zeros(0)), v.get("interval_hi", np.zeros(0))
        return Observations(
            v.get("exact", ()), v.get("weights"),
            right_censored=v.get("right_censored", ()), right_weights=v.get("right_weights"),
            interval=np.column_stack([lo, hi]) if lo.size else None,
            interval_weights=v.get("interval_weights"),
        )

    def model(self) -> Graph | None:
        """The run's phase-type graph, rebuilt from the stored arrays alone.

        ``None`` if the file stores no graph (a log-density run, or a file
        written before graphs were stored). Nothing named in the file is
        imported or called: a crafted file can at worst raise
        :class:`~phasic_mpi.errors.RunFileError` (a ValueError).
        """
        arrays: dict[str, Any] = self.read_group(MODEL_GROUP)
        if not arrays:
            return None
        arrays.update({k: v for k, v in self.group_attrs(MODEL_GROUP).items()
                       if k != SHAPES_ATTR})
        try:
            return Graph.from_arrays(arrays)
        except (TypeError, ValueError) as exc:
            raise RunFileError(f"{self.path}: the stored model is not a valid graph: "
                               f"{exc}") from None

    def term_attrs(self) -> list[dict[str, Any]]:
        """Attributes of each stored likelihood term (``model/terms/<variable>``), in order."""
        with _open(self.path, "r") as f:
            g = f.get(f"{MODEL_GROUP}/terms")
            found = [_decode_attrs(v) for v in g.values()] if isinstance(g, h5py.Group) else []
        return sorted(found, key=lambda a: int(a.get("index", 0)))

    def terms(self) -> list[Any]:
        """The run's SFS and moment terms, rebuilt from the stored arrays alone.

        As for :meth:`model`, nothing named in the file is imported or
        called; invalid data raise :class:`~phasic_mpi.errors.RunFileError`.
        """
        out = []
        for attrs in self.term_attrs():
            where = f"{MODEL_GROUP}/terms/{attrs.get('variable')}"
            try:
                out.append(term_from_arrays(self.read_group(where), attrs))
            except (KeyError, TypeError, ValueError) as exc:
                raise RunFileError(f"{self.path}: the stored term {where!r} is not valid: "
                                 f"{exc}") from None
        return out

    def __repr__(self) -> str:
        return f"RunFile({self.path!r}, algorithm={self.algorithm!r})"


def _read(ds: h5py.Dataset) -> np.ndarray:
    if _is_history(ds):
        return ds[: int(ds.attrs[ROWS_ATTR])]
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[()], dtype=str)
    return np.asarray(ds[()])


def read_run(path: str | os.PathLike) -> RunFile:
    """Open a run file for reading (no MPI needed)."""
    return RunFile(path)
