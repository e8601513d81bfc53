"""HDF5 helpers of the run files: attribute encoding, atomic writes and the
netCDF-4 conventions (shared by :mod:`phasic_mpi.io.store` and
:mod:`phasic_mpi.io.runfile`; nothing here uses MPI)."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import h5py
import numpy as np

from phasic_mpi.io.files import commit_temp, discard_temp, exclusive_temp

T = TypeVar("T")

MANAGED_GROUPS = ("posterior", "sample_stats", "observed_data")  # ArviZ groups written here
CHUNK_BYTES = 256 * 1024  # target chunk size of history datasets
JSON_ATTRS = "json_attrs"  # per object: names of the attributes stored as JSON text
ROWS_ATTR = "rows"  # valid-row counter of a history dataset
_NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."
_HIDDEN_ATTRS = {JSON_ATTRS, "_NCProperties"}
_NAME_RE = re.compile(r"^[^/.\x00][^/\x00]*$")


# -- attributes -------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "isoformat"):  # TOML dates and times
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(name: str, value: Any) -> tuple[Any, bool]:
    """Return ``(value to store, stored as JSON)`` for one attribute."""
    small_array = isinstance(value, np.ndarray) and value.dtype.kind in "biuf" and (
        value.nbytes <= 32768)  # HDF5 limits attributes in the object header to 64 KiB
    if value is None or isinstance(value, (bool, np.bool_, Mapping, list, tuple)) or (
            isinstance(value, np.ndarray) and not small_array):  # JSON text has no size limit
        try:
            return json.dumps(value, default=_json_default), True
        except (TypeError, ValueError) as exc:
            raise TypeError(f"attribute {name!r}: {exc}") from None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value), False
    if isinstance(value, (int, np.integer)):
        if -(2**63) <= int(value) < 2**63:
            return (value if isinstance(value, np.integer) else np.int64(value)), False
        return json.dumps(int(value)), True  # e.g. 128-bit seeds
    if isinstance(value, (float, np.floating)) or small_array:
        return value, False
    raise TypeError(f"attribute {name!r}: cannot store a {type(value).__name__}")


def _json_names(obj: h5py.HLObject) -> set[str]:
    raw = obj.attrs.get(JSON_ATTRS)
    return set() if raw is None else set(json.loads(_text(raw)))


def _set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    json_names = _json_names(obj)
    for name, value in attrs.items():
        if not isinstance(name, str) or not name or name in _HIDDEN_ATTRS:
            raise ValueError(f"invalid attribute name {name!r}")
        stored, is_json = _encode(name, value)
        obj.attrs[name] = stored
        (json_names.add if is_json else json_names.discard)(name)
    if json_names:
        obj.attrs[JSON_ATTRS] = json.dumps(sorted(json_names))
    elif JSON_ATTRS in obj.attrs:
        del obj.attrs[JSON_ATTRS]


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _decode_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    json_names, out = _json_names(obj), {}
    for name, value in obj.attrs.items():
        if name not in _HIDDEN_ATTRS:
            value = _text(value)
            if name in json_names:
                value = json.loads(value)
            elif isinstance(value, np.generic):
                value = value.item()
            out[name] = value
    return out


# -- files ------------------------------------------------------------------


def _open(path: str, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except FileNotFoundError:
        raise FileNotFoundError(f"run file {path!r} does not exist") from None
    except OSError as exc:
        raise OSError(f"cannot open {path!r} (mode {mode!r}): {exc}") from exc


def atomic_write(path: str | os.PathLike, writer_fn: Callable[[h5py.File], T]) -> T:
    """Write a complete HDF5 file at ``path`` or leave ``path`` untouched.

    ``writer_fn`` fills a fresh temporary file created exclusively next to
    ``path`` (:func:`phasic_mpi.io.files.exclusive_temp`: never a planted file
    or symlink), which is then closed, fsynced and renamed over ``path``
    (``os.replace``: atomic on POSIX). HDF5 writes through the open file
    object, so no name is ever reopened. If ``writer_fn`` or a write fails
    (a full disk included), the temporary file is removed and an existing
    file at ``path`` is kept.

    Parameters
    ----------
    path : str or path-like
        Destination.
    writer_fn : callable
        Called with the open, writable :class:`h5py.File`.

    Returns
    -------
    object
        What ``writer_fn`` returns.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path!r}: directory {directory!r} does not exist")
    fh, tmp = exclusive_temp(path)
    try:
        try:
            f = h5py.File(fh, "w")
        except OSError as exc:
            raise OSError(f"cannot write {path!r} (creating {tmp!r}): {exc}") from exc
        try:
            result = writer_fn(f)
        finally:
            f.close()
        commit_temp(fh, tmp, path)
    except BaseException:
        discard_temp(fh, tmp)
        raise
    return result


# -- netCDF-4 structure ------------------------------------------------------


def _check_name(name: Any, what: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"invalid {what} {name!r}: need a non-empty name without '/'")


def _require_group(f: h5py.File, path: str) -> h5py.Group:
    """Create the groups along ``path``; they track link creation order so that
    xarray lists variables in the order they were written."""
    group = f["/"]
    for part in path.strip("/").split("/"):
        _check_name(part, "group name")
        if part not in group:
            gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
            gcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED)
            h5py.h5g.create(group.id, part.encode(), gcpl=gcpl)
        group = group[part]
        if not isinstance(group, h5py.Group):
            raise ValueError(f"{group.name!r} exists and is not a group")
    return group


def _is_scale(ds: h5py.Dataset) -> bool:
    return bool(h5py.h5ds.is_scale(ds.id))


def _is_history(obj: Any) -> bool:
    return isinstance(obj, h5py.Dataset) and ROWS_ATTR in obj.attrs


def _as_array(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind == "U":
        return arr.astype(h5py.string_dtype())
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"{name!r}: cannot store arrays of dtype {arr.dtype}")
    return arr


def _history_chunks(row_shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """~CHUNK_BYTES per chunk: many small rows, or one big row split along its largest axes."""
    row = [max(1, n) for n in row_shape]
    row_bytes = itemsize * math.prod(row)
    if row_bytes <= CHUNK_BYTES:
        return (CHUNK_BYTES // row_bytes, *row)
    while itemsize * math.prod(row) > CHUNK_BYTES and max(row) > 1:
        i = int(np.argmax(row))
        row[i] = (row[i] + 1) // 2
    return (1, *row)


# -- write failures ------------------------------------------------------------

_ERRNO_RE = re.compile(r"error message = '([^']*)'")
# Run in a fresh interpreter: this process's HDF5 library may still hold the
# broken file open (and locked), and would answer from its own cache.
_CHECK_READABLE = """
import sys, h5py
def visit(name, obj):
    if isinstance(obj, h5py.Dataset):
        n = int(obj.attrs.get("rows", obj.shape[0] if obj.ndim else 0))
        obj[:n] if obj.ndim else obj[()]
    dict(obj.attrs)
with h5py.File(sys.argv[1], "r") as f:
    dict(f.attrs)
    f.visititems(visit)
"""


def failure_reason(exc: BaseException) -> str:
    """The operating system's words for an HDF5 write failure, else the message's first line."""
    text = str(exc)
    found = _ERRNO_RE.search(text)
    return found.group(1) if found else (text.splitlines() or [type(exc).__name__])[0]


def close_detached(f: h5py.File) -> None:
    """Close a file whose writes failed, after pointing HDF5's descriptor at /dev/null.

    After a failed write HDF5 fails again on every flush, close and object
    release (h5py reports each, and freeing the objects later can crash the
    process). Writing to /dev/null instead lets HDF5 close cleanly, while the
    bytes already on disk stay as they were for :func:`salvage` to judge.
    """
    try:
        fd = f.id.get_vfd_handle()
        null = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    except Exception:  # noqa: BLE001 - e.g. a file-object driver: close as it is
        pass
    for _ in range(3):  # the first close may trip over the failed flush's cache state
        try:
            f.close()
            return
        except Exception:  # noqa: BLE001 - the original failure is what gets reported
            continue


def salvage(path: str) -> bool:
    """Keep ``path`` if it reads completely (valid so far), else remove it; True if kept."""
    import subprocess
    import sys

    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}
    try:
        done = subprocess.run([sys.executable, "-c", _CHECK_READABLE, path], env=env,
                              capture_output=True, timeout=300)
        readable = done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        readable = False
    if not readable and os.path.lexists(path):
        os.unlink(path)
    return readable
