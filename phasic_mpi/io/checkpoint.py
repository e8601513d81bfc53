"""Checkpoints: the full state of a run in one ``.npz`` file next to its run file.

Written by rank 0 only, atomically (an exclusive temporary file in the same
directory, fsync, rename: :mod:`phasic_mpi.io.files`), so the checkpoint path
holds either the previous checkpoint or the new one, never a half-written
file, and a planted symlink is never followed. The metadata (iteration,
history row counts of the run file, the run's settings, the run file's
``run_id``) is JSON text; no pickles are read back.

Reading verifies before anything is used or overwritten: a SHA-256 checksum
over the metadata and every array, the format, the iteration range, finite
values, and (given the run file) that the checkpoint belongs to that file and
that its row counts are ones the file holds; :func:`check_layout` then
compares the arrays' names, shapes and dtypes with the algorithm's
``checkpoint_layout`` (the driver does, after comparing the configs: whoever
edits a checkpoint can recompute its checksum, but not make a misshapen
state restorable). Any failure is one :class:`CheckpointError` line; no file
is touched by reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from phasic_mpi.errors import ConfigError, RunFileError
from phasic_mpi.io.files import commit_temp, discard_temp, exclusive_temp

__all__ = ["CheckpointError", "check_layout", "checkpoint_path", "read_checkpoint",
           "write_checkpoint"]

FORMAT = 2  # version of the layout below; 1 had neither checksum nor run_id
_META, _SUM = "__meta__", "__checksum__"
# The driver appends one row per iteration to every "<algorithm>/diagnostics/<x>"
# history dataset, so their counts in a checkpoint equal its iteration.
_PER_ITERATION = "/diagnostics/"
_KINDS = {"b": "bool", "i": "int", "u": "unsigned int", "f": "float"}


class CheckpointError(ConfigError, RunFileError):
    """A checkpoint that cannot be trusted: unreadable, tampered, or another run's."""


def checkpoint_path(path: str | os.PathLike) -> str:
    """The checkpoint file of run file ``path``."""
    return os.fspath(path) + ".ckpt.npz"


def _digest(meta: str, arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the metadata text and every array (name, dtype, shape, bytes)."""
    h = hashlib.sha256(meta.encode())
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{arr.dtype.str}\0{arr.shape}\0".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def write_checkpoint(path: str, iteration: int, arrays: dict[str, np.ndarray],
                     rows: dict[str, int], config: dict[str, Any],
                     run_id: str | None = None) -> None:
    """Atomically write the state ``arrays`` after ``iteration`` iterations.

    Parameters
    ----------
    path : str
        The checkpoint file (:func:`checkpoint_path` of the run file).
    iteration : int
        Iterations done.
    arrays : dict of str to ndarray
        The algorithm's state (numeric arrays; no reserved ``__`` names).
    rows : dict of str to int
        Valid rows of every history dataset of the run file at this point.
    config : dict
        The run's validated settings (compared on resume).
    run_id : str, optional
        The run file's ``run_id`` attribute: binds the checkpoint to that file.
    """
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    bad = [k for k, v in arrays.items() if k.startswith("__") or v.dtype.kind not in "biuf"]
    if bad:
        raise ValueError(f"checkpoint arrays {bad}: need numeric arrays without '__' names")
    meta = json.dumps({"format": FORMAT, "iteration": int(iteration),
                       "rows": {k: int(v) for k, v in rows.items()}, "config": config,
                       "run_id": run_id})
    fh, tmp = exclusive_temp(path)
    try:
        np.savez(fh, **{_META: np.array(meta), _SUM: np.array(_digest(meta, arrays))}, **arrays)
        commit_temp(fh, tmp, path)
    except BaseException:
        discard_temp(fh, tmp)
        raise


def read_checkpoint(path: str, *, n_iterations: int | None = None,
                    run_file: str | None = None) -> tuple[int, dict[str, np.ndarray],
                                                          dict[str, int], dict[str, Any]]:
    """``(iteration, arrays, rows, config)`` as :func:`write_checkpoint` stored them, verified.

    Parameters
    ----------
    path : str
        The checkpoint file.
    n_iterations : int, optional
        The run's length: the iteration must lie in ``[0, n_iterations]``.
    run_file : str, optional
        The run file to resume: it must carry the checkpoint's ``run_id`` and
        hold at least the checkpoint's rows of every history dataset.

    Raises
    ------
    CheckpointError
        One line saying what is wrong; nothing was modified.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: does not exist (nothing to resume)") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"checkpoint {path}: unreadable, truncated or not a checkpoint "
                              f"({type(exc).__name__}: {exc})") from None
    meta_text, digest = loaded.pop(_META, None), loaded.pop(_SUM, None)
    if meta_text is None or digest is None:
        raise CheckpointError(f"checkpoint {path}: no metadata or checksum (not a checkpoint "
                              "of this version); start again with --force")
    if str(digest) != _digest(str(meta_text), loaded):
        raise CheckpointError(f"checkpoint {path}: checksum mismatch (the file was modified "
                              "or damaged); start again with --force")
    meta = _parse_meta(path, str(meta_text))
    _check_values(path, meta, loaded, n_iterations)
    if run_file is not None:
        _check_run_file(path, meta, run_file)
    return meta["iteration"], loaded, meta["rows"], meta["config"]


def _shape_text(shape: tuple[int | None, ...]) -> str:
    """``(8, *, 4)``: None is an axis of any length."""
    dims = ["*" if n is None else str(n) for n in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def check_layout(path: str, arrays: Mapping[str, np.ndarray],
                 layout: Mapping[str, tuple[tuple[int | None, ...], str]]) -> None:
    """Raise :class:`CheckpointError` unless ``arrays`` are exactly ``layout``'s.

    Parameters
    ----------
    path : str
        The checkpoint file (named in the message).
    arrays : mapping of str to ndarray
        The checkpoint's arrays.
    layout : mapping of str to (shape, kinds)
        An algorithm's ``checkpoint_layout``: per array its shape (None: an
        axis of any length) and the numpy dtype kinds it may have ("f", "iu").
    """
    missing = sorted(set(layout) - set(arrays))
    if missing:
        shape = _shape_text(layout[missing[0]][0])
        raise CheckpointError(f"checkpoint {path}: array {missing[0]!r} is missing "
                              f"(expected shape {shape})")
    surplus = sorted(set(arrays) - set(layout))
    if surplus:
        raise CheckpointError(f"checkpoint {path}: unexpected array {surplus[0]!r} "
                              f"(shape {_shape_text(arrays[surplus[0]].shape)}) for this "
                              "algorithm")
    for name in sorted(layout):
        shape, kinds = layout[name]
        arr = arrays[name]
        if arr.dtype.kind not in kinds:
            expected = " or ".join(_KINDS.get(k, k) for k in kinds)
            raise CheckpointError(f"checkpoint {path}: array {name!r} has dtype {arr.dtype}, "
                                  f"expected {expected}")
        if arr.ndim != len(shape) or any(n is not None and n != m
                                         for n, m in zip(shape, arr.shape)):
            raise CheckpointError(f"checkpoint {path}: array {name!r} has shape "
                                  f"{_shape_text(arr.shape)}, expected {_shape_text(shape)}")


def _parse_meta(path: str, text: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    ok = (isinstance(meta, dict) and meta.get("format") == FORMAT
          and type(meta.get("iteration")) is int and isinstance(meta.get("config"), dict)
          and isinstance(meta.get("rows"), dict)
          and all(type(v) is int and v >= 0 for v in meta["rows"].values()))
    if not ok:
        raise CheckpointError(f"checkpoint {path}: malformed metadata (format {FORMAT} expected)")
    return meta


def _check_values(path: str, meta: dict[str, Any], arrays: Mapping[str, np.ndarray],
                  n_iterations: int | None) -> None:
    iteration = meta["iteration"]
    if iteration < 0 or (n_iterations is not None and iteration > n_iterations):
        raise CheckpointError(f"checkpoint {path}: iteration {iteration} outside "
                              f"[0, {n_iterations}] of this run")
    counts = {name: n for name, n in meta["rows"].items() if _PER_ITERATION in name}
    wrong = sorted(name for name, n in counts.items() if n != iteration)
    if wrong:
        raise CheckpointError(f"checkpoint {path}: iteration {iteration} disagrees with the "
                              f"history rows of {wrong[0]} ({counts[wrong[0]]})")
    for name, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise CheckpointError(f"checkpoint {path}: array {name!r} has dtype {arr.dtype}")
        if arr.dtype.kind == "f" and not _finite_enough(name, arr):
            raise CheckpointError(f"checkpoint {path}: array {name!r} holds NaN or infinite "
                                  "values")


def _finite_enough(name: str, arr: np.ndarray) -> bool:
    """No NaN or +inf anywhere; -inf only in log-density arrays (an invalid state);
    an all-NaN convergence-monitor array means "not measured yet"."""
    if name.startswith("monitor_") and arr.size and np.isnan(arr).all():
        return True
    if "log" in name or name == "samples":
        return not (np.isnan(arr).any() or np.isposinf(arr).any())
    return bool(np.isfinite(arr).all())


def _check_run_file(path: str, meta: dict[str, Any], run_file: str) -> None:
    import h5py

    try:
        with h5py.File(run_file, "r") as fh:
            run_id = fh.attrs.get("run_id")
            run_id = run_id.decode() if isinstance(run_id, bytes) else run_id
            held = {}
            for name in meta["rows"]:
                ds = fh.get(name)
                held[name] = int(ds.attrs.get("rows", -1)) if ds is not None else -1
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path}: its run file {run_file} cannot be read "
                              f"({exc}); start again with --force") from None
    if meta.get("run_id") != run_id:
        raise CheckpointError(f"checkpoint {path}: belongs to another run than {run_file} "
                              f"(run_id {meta.get('run_id')} vs {run_id}); start again with "
                              "--force")
    short = sorted(name for name, n in meta["rows"].items() if held[name] < n)
    if short:
        raise CheckpointError(f"checkpoint {path}: {run_file} holds fewer rows of "
                              f"{short[0]} ({held[short[0]]}) than the checkpoint "
                              f"({meta['rows'][short[0]]})")
