"""Run files: one HDF5 file per inference run, readable by ArviZ and xarray.

Rank 0 owns a :class:`RunWriter`; nothing here uses MPI. Every object follows
the netCDF-4 conventions (dimension scales, ``_Netcdf4Dimid``,
``_Netcdf4Coordinates``, ``_NCProperties``), so ``arviz.from_netcdf`` and
``xarray.open_dataset(..., engine="h5netcdf")`` open every group, the
algorithm group included. Layout and conventions: ``docs/output.md``.

Whatever may differ between two runs of one configuration (timings, rank
count, host, netCDF dimension ids) lives in attributes only; datasets hold
only what the caller hands over, so they compare bitwise across runs.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from phasic_mpi.errors import RunFileError, RunFileWriteError
from phasic_mpi.io.h5 import (
    MANAGED_GROUPS,
    ROWS_ATTR,
    _NOT_A_VARIABLE,
    _as_array,
    _check_name,
    _decode_attrs,
    _history_chunks,
    _is_history,
    _is_scale,
    _open,
    _require_group,
    _set_attrs,
    atomic_write,
    close_detached,
    failure_reason,
    salvage,
)
from phasic_mpi.io.files import exclusive_temp, replace_synced
from phasic_mpi.model.data import Observations, as_observations
from phasic_mpi.io.runfile import RunFile, read_run
from phasic_mpi.io.runfile import MODEL_GROUP, SHAPES_ATTR
from phasic_mpi.model.params import param_layout
from phasic_mpi.io.modelgroups import ModelGroups, guarded

__all__ = ["COMPLETE_ATTR", "RunFile", "RunFileError", "RunFileWriteError", "RunWriter", "atomic_write",
           "is_complete", "read_run"]

COMPLETE_ATTR = "complete"  # root attribute: true once every rank finished the run

# -- writer -------------------------------------------------------------------


class RunWriter(ModelGroups):
    """Rank-0 writer of one run file: get one from :meth:`create` or :meth:`reopen`.

    A context manager; :meth:`close` flushes and closes the file.
    """

    def __init__(self, file: h5py.File) -> None:
        self._f = file
        self.path: str = file.filename
        # --force over an existing file: this writer fills a staging file, renamed
        # over ``_replaces`` by promote() (None: the file is already at its path)
        self._replaces: str | None = None
        root = _decode_attrs(file)
        self.algorithm: str = root.get("algorithm", "")
        self.param_names: tuple[str, ...] = tuple(root.get("param_names", ()))
        shapes = _decode_attrs(file[MODEL_GROUP]).get(SHAPES_ATTR) if MODEL_GROUP in file else None
        self.layout = param_layout(self.param_names, shapes, detect=False)
        found: dict[str, h5py.Dataset] = {}
        dimids = [-1]

        def visit(name: str, obj: Any) -> None:
            if _is_history(obj):
                found[name] = obj
            if isinstance(obj, h5py.Dataset) and "_Netcdf4Dimid" in obj.attrs:
                dimids.append(int(obj.attrs["_Netcdf4Dimid"]))

        file.visititems(visit)
        self._history = found
        self._next_dimid = max(dimids) + 1  # netCDF dimension ids are unique per file

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        algorithm: str,
        config: Mapping[str, Any],
        param_names: Sequence[str],
        observations: Observations | Any | None = None,
        seed: int | None = None,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        param_shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> RunWriter:
        """Create a run file and open it for appending.

        The skeleton (root attributes, ``observed_data``, the empty algorithm
        group) is written with :func:`atomic_write`, so ``path`` never holds a
        half-written file.

        Parameters
        ----------
        path : str or path-like
            Destination; an existing file is an error unless ``overwrite``.
        algorithm : str
            Name of the algorithm group: ``"svgd"``, ``"pt"``.
        config : mapping
            The full validated run configuration (stored as JSON text).
        param_names : sequence of str
            Model parameter names in order; the posterior variables.
        observations : Observations or array_like, optional
            The data, stored in ``observed_data``.
        seed : int, optional
            Root seed (root attribute ``seed``).
        attrs : mapping, optional
            Further root attributes: rank count, MPI library, host, timings...
        overwrite : bool
            Replace an existing file, but only once the new one is worth it:
            the new file is written under a temporary name next to ``path``
            and renamed over it by :meth:`promote` (or a clean :meth:`close`),
            so a run that fails before then (:meth:`abandon`, a write
            failure) leaves the earlier file exactly as it was.
        param_shapes : mapping of str to tuple of int, optional
            Families of parameters (see :func:`~phasic_mpi.model.params.param_layout`):
            each is written as one posterior variable ``(chain, draw, *shape)``;
            the shapes are stored as data, attribute ``param_shapes`` of group
            ``model``.
        """
        path = os.fspath(path)
        _check_name(algorithm, "algorithm")
        names = [str(n) for n in param_names]
        for n in names:
            _check_name(n, "parameter name")
        reserved = {"chain", "draw"} & set(names)
        if algorithm in MANAGED_GROUPS or reserved or len(set(names)) < len(names):
            raise ValueError(f"algorithm {algorithm!r} or parameter names {names}: "
                             "reserved or duplicate names")
        shapes = param_layout(names, param_shapes).shapes
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"run file {path!r} exists (pass overwrite=True to replace it)")
        # run_id binds checkpoints to this file; complete turns true only when
        # every rank has finished (mark_complete), so a file is never mistaken
        # for a finished run.
        fixed = {"config": dict(config), "phasic_mpi_version": _version(),
                 "algorithm": algorithm, "param_names": names, "run_id": uuid.uuid4().hex,
                 COMPLETE_ATTR: False}
        if seed is not None:
            fixed["seed"] = seed
        clash = sorted(set(attrs or {}) & set(fixed))
        if clash:
            raise ValueError(f"attrs must not set {clash}: they come from the arguments")

        def skeleton(f: h5py.File) -> None:
            nc = (f"version=2,phasic_mpi={_version()},hdf5={h5py.version.hdf5_version},"
                  f"h5py={h5py.__version__}")
            f.attrs["_NCProperties"] = np.array(nc, dtype=h5py.string_dtype("ascii", len(nc)))
            _set_attrs(f, {**(attrs or {}), **fixed})
            if observations is not None:
                cls(f)._write_observations(as_observations(observations))
            if shapes:
                _set_attrs(_require_group(f, MODEL_GROUP),
                           {SHAPES_ATTR: {k: list(v) for k, v in shapes.items()}})
            _require_group(f, algorithm)

        staged = os.path.lexists(path)  # overwrite: keep the earlier file for now
        if staged:
            fh, target = exclusive_temp(path)  # a name of our own, filled by atomic_write
            fh.close()
            try:
                atomic_write(target, skeleton)
            except BaseException:
                os.unlink(target)
                raise
        else:
            target = path
            atomic_write(path, skeleton)
        writer = cls(_open(target, "r+"))
        writer._replaces = path if staged else None
        return writer

    @classmethod
    def reopen(cls, path: str | os.PathLike, rows: Mapping[str, int] | None = None) -> RunWriter:
        """Reopen a run file for appending (``--resume``).

        Parameters
        ----------
        path : str or path-like
            An existing run file.
        rows : mapping of str to int, optional
            Valid rows per history dataset, as :meth:`rows` returned at the
            checkpoint. Every history dataset is truncated to its count;
            datasets missing from ``rows`` were created after the checkpoint
            and are deleted. ``None`` truncates each dataset to its own ``rows``
            counter (dropping an append that did not complete).
        """
        path = os.fspath(path)
        f = _open(path, "r+")
        try:
            if "phasic_mpi_version" not in f.attrs:
                raise RunFileError(f"{path!r} is not a phasic_mpi run file")
            writer = cls(f)
            writer._truncate(rows)
            _set_attrs(f, {COMPLETE_ATTR: False})
        except BaseException:
            f.close()
            raise
        return writer

    @guarded
    def _truncate(self, rows: Mapping[str, int] | None) -> None:
        unknown = sorted(set(rows or {}) - set(self._history))
        if unknown:
            raise ValueError(f"{self.path!r} has no history datasets {unknown}")
        for name, ds in list(self._history.items()):
            valid = int(ds.attrs[ROWS_ATTR])
            if rows is not None and name not in rows:
                self._delete(ds)
                del self._history[name]
                continue
            target = valid if rows is None else int(rows[name])
            if not 0 <= target <= valid:
                raise ValueError(f"{self.path!r}: history {name!r} has {valid} valid rows, "
                                 f"cannot resume at row {target}")
            self._resize(ds, target)
            ds.attrs.modify(ROWS_ATTR, np.int64(target))
        self._f.flush()

    # -- netCDF helpers

    def _dim(self, group: h5py.Group, name: str, size: int, *,
             coord: np.ndarray | None = None, unlimited: bool = False) -> h5py.Dataset:
        """Create a dimension scale: a coordinate variable if ``coord`` is given."""
        dimid = np.int32(self._next_dimid)
        self._next_dimid += 1
        if coord is not None:
            ds = group.create_dataset(name, data=coord)
            ds.make_scale(name)
            ds.attrs["_Netcdf4Coordinates"] = np.array([dimid], np.int32)
        else:  # netCDF stores zero-length dimensions as unlimited ones
            kw = {"maxshape": (None,), "chunks": (1024,)} if unlimited or size == 0 else {}
            ds = group.create_dataset(name, shape=(size,), dtype=">f4", **kw)
            ds.make_scale(f"{_NOT_A_VARIABLE}{size:10d}")
        ds.attrs["_Netcdf4Dimid"] = dimid
        return ds

    def _write_variable(self, group: h5py.Group, name: str, arr: np.ndarray,
                        dims: Sequence[h5py.Dataset] = (), **kw: Any) -> h5py.Dataset:
        """Write ``arr`` on ``dims`` plus private dims ``<name>_dim_0``... (ArviZ's naming)."""
        _check_name(name, "variable name")
        dims, lead = list(dims), len(dims)
        for axis in range(lead, arr.ndim):
            dims.append(self._dim(group, f"{name}_dim_{axis - lead}", arr.shape[axis],
                                  unlimited=bool(kw) and axis == 0))
        if 0 in arr.shape and not kw:
            kw = {"maxshape": (None,) * arr.ndim, "chunks": True}
        ds = group.create_dataset(name, data=arr, **kw)
        for axis, dim in enumerate(dims):
            ds.dims[axis].attach_scale(dim)
        if dims:
            ds.attrs["_Netcdf4Coordinates"] = np.array(
                [int(d.attrs["_Netcdf4Dimid"]) for d in dims], np.int32)
        return ds

    @staticmethod
    def _delete(ds: h5py.Dataset) -> None:
        """Delete a variable and its private dimensions."""
        group, leaf, ndim = ds.parent, ds.name.rsplit("/", 1)[-1], ds.ndim
        del group[leaf]
        for key in (f"{leaf}_dim_{axis}" for axis in range(ndim)):
            if key in group:
                del group[key]

    @staticmethod
    def _resize(ds: h5py.Dataset, n: int) -> None:
        ds.resize(n, axis=0)
        ds.dims[0][0].resize((n,))  # the row dimension scale follows its variable

    def _write_observations(self, obs: Observations) -> None:
        g = _require_group(self._f, "observed_data")
        parts = {
            "exact_obs": {"exact": obs.exact, "weights": obs.weights},
            "right_censored_obs": {"right_censored": obs.right_censored,
                                   "right_weights": obs.right_weights},
            "interval_obs": {"interval_lo": obs.interval_lo, "interval_hi": obs.interval_hi,
                             "interval_weights": obs.interval_weights},
        }
        for dim_name, arrays in parts.items():
            dim = self._dim(g, dim_name, next(iter(arrays.values())).size)
            for name, arr in arrays.items():
                if arr is not None:  # absent weights mean "all 1": keep the distinction
                    self._write_variable(g, name, np.asarray(arr, np.float64), [dim])

    # -- writing

    def append(self, name: str, rows: Any) -> None:
        """Append rows to history dataset ``name``, e.g. ``"svgd/particles"``.

        Created on first use with the rows' dtype and trailing shape, chunked
        (~256 KiB) and extendible along axis 0; later rows must have the same
        trailing shape and cast safely to that dtype. The data are flushed
        before the ``rows`` counter advances (and is flushed).
        """
        self.append_many({name: rows})

    @guarded
    def append_many(self, batch: Mapping[str, Any]) -> None:
        """Append to several history datasets, with one pair of flushes."""
        pending = []
        for name, rows in batch.items():
            arr = _as_array(name, rows)
            if arr.ndim == 0:
                raise ValueError(f"history {name!r}: need an array of rows, got a scalar")
            ds = self._history[name] if name in self._history else self._new_history(name, arr)
            if arr.shape[1:] != ds.shape[1:]:
                raise ValueError(f"history {name!r}: rows of shape {arr.shape[1:]}, "
                                 f"expected {ds.shape[1:]}")
            if not np.can_cast(arr.dtype, ds.dtype, "safe"):
                raise TypeError(f"history {name!r}: cannot append {arr.dtype} to {ds.dtype}")
            n = int(ds.attrs[ROWS_ATTR])
            self._resize(ds, n + arr.shape[0])
            ds[n:] = arr
            pending.append((ds, n + arr.shape[0]))
        self._f.flush()  # data first: a crash before the counter update keeps the old count
        for ds, total in pending:
            ds.attrs.modify(ROWS_ATTR, np.int64(total))
        self._f.flush()

    def _new_history(self, name: str, arr: np.ndarray) -> h5py.Dataset:
        parts = name.split("/")
        if len(parts) < 2 or parts[0] in MANAGED_GROUPS:
            raise ValueError(f"history name {name!r} must lie in a group such as "
                             f"'{self.algorithm or 'svgd'}/...', not in {MANAGED_GROUPS}")
        group = _require_group(self._f, "/".join(parts[:-1]))
        empty = np.empty((0, *arr.shape[1:]), arr.dtype)
        ds = self._write_variable(group, parts[-1], empty, maxshape=(None, *arr.shape[1:]),
                                  chunks=_history_chunks(arr.shape[1:], arr.dtype.itemsize))
        ds.attrs[ROWS_ATTR] = np.int64(0)
        self._history[name] = ds
        return ds

    @property
    def run_id(self) -> str | None:
        """The file's ``run_id`` (checkpoints carry it), or None for older files."""
        value = self._f.attrs.get("run_id")
        return value.decode() if isinstance(value, bytes) else value

    @guarded
    def mark_complete(self) -> None:
        """Record that the run finished on every rank (call after the final barrier)."""
        _set_attrs(self._f, {COMPLETE_ATTR: True})
        self._f.flush()

    def rows(self) -> dict[str, int]:
        """Valid rows of every history dataset (save these in checkpoints)."""
        return {name: int(ds.attrs[ROWS_ATTR]) for name, ds in sorted(self._history.items())}

    def history(self, name: str) -> np.ndarray:
        """The valid rows of history dataset ``name`` appended so far (KeyError if none)."""
        if name not in self._history:
            raise KeyError(name)
        ds = self._history[name]
        return ds[: int(ds.attrs[ROWS_ATTR])]

    @guarded
    def write_chains(self, group: str, arrays: Mapping[str, Any],
                     attrs: Mapping[str, Any] | None = None,
                     dims: Mapping[str, str] | None = None) -> None:
        """Write an ArviZ group of ``(chain, draw, ...)`` arrays, replacing the group.

        Dims are ``chain``, ``draw`` (coordinates 0, 1, ...) and, for further
        axes, ``<var>_dim_0``, ``<var>_dim_1``... as in ArviZ. For
        ``posterior``/``sample_stats`` use :meth:`write_posterior`; this serves
        other InferenceData groups, e.g. ``warmup_posterior``. Empty ``arrays``
        remove the group. ``dims`` names the third axis of some variables
        (``{"exact": "exact_obs"}`` for ``log_likelihood``), one dimension
        shared by every variable that names it, so ArviZ lines up the
        pointwise values and replicates with ``observed_data``.
        """
        _check_name(group, "group name")
        arrs = {name: _as_array(name, a) for name, a in arrays.items()}
        for name in arrs:
            _check_name(name, "variable name")
        shapes = {a.shape[:2] for a in arrs.values()}
        bad = {"chain", "draw"} & set(arrs) or any(a.ndim < 2 for a in arrs.values())
        if bad or len(shapes) > 1:
            got = {k: a.shape for k, a in arrs.items()}
            raise ValueError(f"{group}: need arrays of one (chain, draw, ...) shape, "
                             f"not named chain/draw; got {got}")
        if group in self._f:
            del self._f[group]
        if arrs:
            g = _require_group(self._f, group)
            (n_chain, n_draw), = shapes
            chain = self._dim(g, "chain", n_chain, coord=np.arange(n_chain, dtype=np.int64))
            draw = self._dim(g, "draw", n_draw, coord=np.arange(n_draw, dtype=np.int64))
            shared: dict[str, h5py.Dataset] = {}
            for name, arr in arrs.items():
                lead = [chain, draw]
                if dims and name in dims and arr.ndim >= 3:
                    if dims[name] not in shared:
                        shared[dims[name]] = self._dim(g, dims[name], arr.shape[2])
                    if shared[dims[name]].shape[0] != arr.shape[2]:
                        raise ValueError(f"{group}/{name}: {arr.shape[2]} entries on "
                                         f"{dims[name]!r}, which has {shared[dims[name]].shape[0]}")
                    lead.append(shared[dims[name]])
                self._write_variable(g, name, arr, lead)
            _set_attrs(g, {"inference_library": "phasic_mpi",
                           "inference_library_version": _version(), **(attrs or {})})
        self._f.flush()

    def write_posterior(
        self,
        draws: Mapping[str, Any],
        sample_stats: Mapping[str, Any] | None = None,
        *,
        draws_are_independent: bool = False,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``posterior`` and ``sample_stats``, replacing previous content.

        Parameters
        ----------
        draws : mapping of str to array (chain, draw)
            Every model parameter (written in ``param_names`` order, a family
            of them as one array variable); further entries are allowed.
        sample_stats : mapping of str to array (chain, draw, ...), optional
            E.g. ``lp``; ``None`` or empty removes the group.
        draws_are_independent : bool
            True for SVGD particles (1 chain): summaries then report ESS =
            number of draws and no R-hat.
        attrs : mapping, optional
            Further attributes of the ``posterior`` group.
        """
        missing = [n for n in self.param_names if n not in draws]
        if missing:
            raise ValueError(f"posterior draws missing for parameters {missing}")
        ordered = self.layout.pack(draws)
        stats = dict(sample_stats or {})
        shapes = {np.shape(a)[:2] for a in (*ordered.values(), *stats.values())}
        if len(shapes) > 1:
            raise ValueError(f"posterior and sample_stats differ in (chain, draw): {shapes}")
        meta = {"draws_are_independent": bool(draws_are_independent), **(attrs or {})}
        self.write_chains("posterior", ordered, meta)
        self.write_chains("sample_stats", stats)

    @guarded
    def write_group(self, group: str, arrays: Mapping[str, Any],
                    attrs: Mapping[str, Any] | None = None) -> None:
        """Write arrays (and attributes) into ``group``, e.g. ``"svgd/final"``.

        Each array replaces any variable of that name (dims ``<var>_dim_<i>``);
        other variables and subgroups are kept; history datasets cannot be
        overwritten.
        """
        if group.strip("/").split("/")[0] in MANAGED_GROUPS:
            raise ValueError(f"{group!r} is written by write_posterior/write_chains")
        g = _require_group(self._f, group)
        for name, value in arrays.items():
            arr = _as_array(name, value)
            if name in g:
                old = g[name]
                if not isinstance(old, h5py.Dataset) or _is_history(old) or _is_scale(old):
                    raise ValueError(f"{g.name}/{name} exists and is not a plain variable")
                self._delete(old)
            self._write_variable(g, name, arr)
        _set_attrs(g, attrs or {})
        self._f.flush()

    @guarded
    def set_attrs(self, attrs: Mapping[str, Any], group: str = "/") -> None:
        """Set attributes of the root (default) or of ``group`` (created if needed).

        Strings, numbers and numeric arrays up to 32 KiB are stored as such;
        dicts, lists, tuples, bools, None and other arrays as JSON text, listed
        in attribute ``json_attrs`` so that :func:`read_run` decodes them.
        """
        _set_attrs(self._f if group.strip("/") == "" else _require_group(self._f, group), attrs)
        self._f.flush()

    @guarded
    def flush(self) -> None:
        """Flush HDF5 buffers to the operating system."""
        self._f.flush()

    @guarded
    def promote(self) -> None:
        """Flush; if the file replaces an earlier one (``overwrite``), make it
        durable and rename it over that file now (the run loop calls this at
        every checkpoint and at the end; only the first call renames)."""
        self._f.flush()
        if self._replaces is None:
            return
        os.fsync(self._f.id.get_vfd_handle())
        replace_synced(self.path, self._replaces)
        self.path, self._replaces = self._replaces, None

    def abandon(self) -> None:
        """After a failure: remove a staging file not yet promoted (the earlier
        file stays as it was); otherwise the same as :meth:`close`."""
        if self._replaces is None:
            self.close()
            return
        if self._f.id.valid:
            close_detached(self._f)
        _remove(self.path)
        self._replaces = None

    @guarded
    def close(self) -> None:
        """Flush and close the file (idempotent), promoting it first (:meth:`promote`)."""
        if self._f.id.valid:
            self.promote()
            self._f.flush()
            self._f.close()

    def _write_failed(self, exc: BaseException) -> RunFileWriteError:
        """Close the file after a failed write, keep or remove it, and say which."""
        if not self._f.id.valid:
            return RunFileWriteError(f"run file {self.path}: {failure_reason(exc)}")
        self._history.clear()
        if self._replaces is not None:  # a --force run that never got going
            earlier = self._replaces
            self.abandon()
            return RunFileWriteError(f"run file {earlier}: write failed ({failure_reason(exc)}); "
                                "the new run's file was removed and the earlier file is "
                                "unchanged; any checkpoint is untouched")
        close_detached(self._f)
        kept = ("kept, valid up to its last complete append" if salvage(self.path)
                else "the half-written file was removed")
        return RunFileWriteError(f"run file {self.path}: write failed ({failure_reason(exc)}); "
                            f"{kept}; any checkpoint is untouched")

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is not None:
            self.abandon()  # an earlier file that this one was to replace stays
        else:
            self.close()


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def is_complete(path: str | os.PathLike) -> bool:
    """True if ``path`` is a run file whose run finished on every rank."""
    try:
        with h5py.File(path, "r") as f:
            return _decode_attrs(f).get(COMPLETE_ATTR) is True
    except OSError:
        return False


def _version() -> str:
    from phasic_mpi.version import __version__

    return __version__
